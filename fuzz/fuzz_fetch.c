/*
 * fuzz_fetch.c - the client's handling of what a host answers to its data
 * plane (MANIFEST, MANIFEST_STREAM, CHUNK, GET_SMALL and READ replies, and
 * ERRORs), as src/fuse's reads drive it (src/client/wh_fetch.c).  The
 * host is a real share whose replies a hostile host or a broken link
 * changes: input byte 0 picks the capabilities the host agreed to, then
 * each call takes the next record of the input: tag % 4 == 0 the reply as
 * it is, 1 a u16 offset and a u8 length and that many bytes XORed into
 * it there, 2 a u16 length and that many bytes in its place (its req_id
 * made the request's), 3 the call failing (a timeout, a closed link).
 * Past the input's end, replies are as they are.  Whatever the replies,
 * nothing crashes, leaks or blocks past the timeouts, reads stay inside
 * what was asked, and every byte a read serves from chunks or RAM is the
 * file's (chunks and GET_SMALL entries are verified against their hash:
 * no tampering gets around that) unless a READ reply was changed (READ
 * data has no hash: the link's TLS is what keeps it whole).
 */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/wh_fetch.h"
#include "client/wh_rpc.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "host/wh_mcache.h"
#include "host/wh_share.h"
#include "proto/wh_proto.h"
#include "store/wh_ram.h"
#include "fuzz_tamper.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BIG ((8u << 20) + 300000) /* a manifest is asked past 8 MiB read */
#define STEP (128u * 1024)
#define NSMALL 3

static char base[64], sdir[128];
static struct wh_share *share;
static struct wh_mcache *mc;
static uint8_t *big;
static uint8_t small[NSMALL][3000];
static struct wh_version vbig, vsmall[NSMALL];

/* the tampering of this run: the input, read under |lock| */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fuzz_tamper tamper;
static uint64_t caps;
static bool read_changed; /* then file bytes cannot be checked */

static void rm_base(void)
{
	fuzz_rm_tree(base);
}

static void put_file(const char *name, const uint8_t *b, size_t n,
		     struct wh_version *v)
{
	char p[256];
	struct stat st;
	int f;

	snprintf(p, sizeof(p), "%s/%s", sdir, name);
	f = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (f < 0 || write(f, b, n) != (ssize_t)n || fstat(f, &st) != 0)
		abort();
	close(f);
	v->size = (uint64_t)st.st_size;
	v->mtime.sec = st.st_mtim.tv_sec;
	v->mtime.nsec = (uint32_t)st.st_mtim.tv_nsec;
	v->ctime.sec = st.st_ctim.tv_sec;
	v->ctime.nsec = (uint32_t)st.st_ctim.tv_nsec;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(base, sizeof(base), "/tmp/wh-fuzz-fetch-%d", (int)getpid());
	snprintf(sdir, sizeof(sdir), "%s/s", base);
	if (mkdir(base, 0700) != 0 || mkdir(sdir, 0700) != 0)
		abort();
	atexit(rm_base);
	wh_log_set_level(WH_LOG_ERROR);
	big = malloc(BIG);
	if (!big)
		abort();
	for (size_t i = 0; i < BIG; i++)
		big[i] = (uint8_t)((i * 2654435761u) >> 11);
	put_file("big", big, BIG, &vbig);
	for (int i = 0; i < NSMALL; i++) {
		char name[8];

		for (size_t j = 0; j < sizeof(small[i]); j++)
			small[i][j] = (uint8_t)("small file "[j % 11] + i);
		snprintf(name, sizeof(name), "s%d", i);
		put_file(name, small[i], sizeof(small[i]) - (size_t)i * 100,
			 &vsmall[i]);
	}
	/* a manifest cache in memory: the file is hashed once, not per run */
	if (wh_share_open(sdir, &share) != 0 || wh_mcache_open(NULL, &mc) != 0)
		abort();
	wh_share_set_mcache(share, mc);
	return 0;
}

static uint64_t get_caps(void *ctx)
{
	(void)ctx;
	return caps;
}

static int call(void *ctx, const uint8_t *req, size_t len,
		struct wh_buf *resp, int timeout_ms)
{
	uint16_t type;
	bool changed;
	int rv;

	(void)ctx;
	(void)timeout_ms;
	rv = fuzz_serve(share, &tamper, &lock, req, len, resp, &type,
			&changed);
	if (changed && type == WH_MSG_READ) {
		pthread_mutex_lock(&lock);
		read_changed = true;
		pthread_mutex_unlock(&lock);
	}
	return rv;
}

static const struct wh_rpc_ops ops = { .call = call };

/* check - the bytes of |fr| are the file's at |off| */
static void check(const struct wh_fetch_reply *fr, const uint8_t *file,
		  uint64_t fsize, uint64_t off, size_t size)
{
	size_t n = 0;

	for (int i = 0; i < fr->n; i++) {
		if (off + n + fr->iov[i].iov_len > fsize)
			abort();
		if (!read_changed && memcmp(fr->iov[i].iov_base,
					    file + off + n,
					    fr->iov[i].iov_len))
			abort();
		n += fr->iov[i].iov_len;
	}
	if (n > size)
		abort();
}

static void pause_ms(long ms)
{
	struct timespec ts = { 0, ms * 1000000L };

	nanosleep(&ts, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t cap_of[4] = {
		WH_CAP_CHUNKS | WH_CAP_MSTREAM | WH_CAP_SMALL,
		WH_CAP_CHUNKS,
		WH_CAP_CHUNKS | WH_CAP_MSTREAM | WH_CAP_SMALL | WH_CAP_ZSTD |
			WH_CAP_ZSMALL,
		WH_CAP_CHUNKS | WH_CAP_SMALL,
	};
	struct wh_fetch_opts o;
	struct wh_fetch_small sm[NSMALL];
	struct wh_fetch_file *ff;
	struct wh_fetch *f;
	struct wh_ram *ram;
	struct wh_rpc rpc = { &ops, NULL };

	if (size < 1 || size > 65536)
		return 0;
	tamper.in = data + 1;
	tamper.len = size - 1;
	tamper.pos = 0;
	read_changed = false;
	caps = cap_of[data[0] % 4];
	memset(&o, 0, sizeof(o));
	o.timeout_ms = 200;
	o.workers = 2;
	o.min_size = 1;
	o.window_max = 1u << 20; /* little ahead of the reads */
	o.caps = get_caps;
	if (wh_ram_new(16u << 20, &ram) != 0 ||
	    wh_fetch_new(&rpc, NULL, ram, &o, &f) != 0)
		abort();

	/* small files fetched ahead, then read */
	for (int i = 0; i < NSMALL; i++) {
		static const char *names[NSMALL] = { "s0", "s1", "s2" };

		sm[i].path = names[i];
		sm[i].len = 2;
		sm[i].v = vsmall[i];
	}
	(void)wh_fetch_small(f, sm, NSMALL);

	/* the big file read from the start (the reader's own READs are not
	 * sent: nothing here needs their bytes), which makes the fetcher ask
	 * for its manifest; then its last part, until chunks serve it */
	if (wh_fetch_open(f, "big", 3, &vbig, &ff) != 0)
		abort();
	for (uint64_t off = 0, tries = 0; off < BIG && tries < 40;) {
		struct wh_fetch_reply fr;
		int rv = wh_fetch_read(f, ff, "big", 3, off, STEP, &fr);

		if (rv == 1) {
			check(&fr, big, BIG, off, STEP);
			wh_fetch_done(f, &fr);
		}
		if (rv < 0 || (rv == 1 && off + STEP >= BIG))
			break; /* done, or -ESTALE, a timeout, a lying manifest */
		if (off < (8u << 20) || rv == 1) {
			off += STEP;
		} else {
			tries++;
			pause_ms(1);
		}
	}
	wh_fetch_close(f, ff);
	for (int i = 0; i < NSMALL; i++) {
		struct wh_fetch_reply fr;

		if (wh_fetch_open(f, sm[i].path, 2, &vsmall[i], &ff) != 0)
			abort();
		if (wh_fetch_read(f, ff, sm[i].path, 2, 0, 4096, &fr) == 1) {
			check(&fr, small[i], vsmall[i].size, 0, 4096);
			wh_fetch_done(f, &fr);
		}
		wh_fetch_close(f, ff);
	}
	wh_fetch_del(f);
	wh_ram_del(ram);
	return 0;
}
