/*
 * test_fetch.c - the mount's data plane over an in-process share: a
 * sequential read is served from verified chunks that end up, all of
 * them, in the store; a second fetcher on the same store moves no chunk;
 * random reads are left to READ unless their chunks are in RAM; a file
 * that is not at the open's version gives -ESTALE; a host that never
 * answers gives an error at the deadline.  With MSTREAM the manifest comes
 * in parts and the chunks READ brought are stored from those bytes (the
 * file crosses the wire once); a part of another version gives -ESTALE;
 * hosts without MSTREAM, or without CHUNKS, never get those requests.
 * Small files fetched ahead (wh_fetch_small) are read from RAM at their
 * version and never at another, whether they came with READs or, from a
 * host with SMALL, several to a GET_SMALL; one whose bytes do not match
 * its hash is never cached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "client/wh_fetch.h"
#include "common/wh_err.h"
#include "host/wh_share.h"

#define FILE_SIZE (24u * 1024 * 1024 + 777)
#define MiB (1024u * 1024)

static char dir[64], share_dir[80];
static uint8_t *content;

struct local {
	struct wh_share *share;
	bool dead;       /* never answer: every call times out */
	uint64_t caps;   /* what this host agreed to */
	bool skew_parts; /* MANIFEST_PARTs claim another file version */
	bool hold_manifest; /* MANIFEST and MANIFEST_STREAM wait while set
			     * (a host that has hashed nothing yet) */
	uint64_t corrupt_size; /* GET_SMALL_REPLY: a DATA entry of this size
				* gets a byte flipped */
	unsigned int sent[64]; /* requests by type */
	unsigned int refused;  /* requests the caps do not allow */
};

static uint64_t local_caps(void *ctx)
{
	return ((struct local *)ctx)->caps;
}

/* skew - rewrite the MANIFEST_PART in |resp| with another version */
static void skew(struct wh_buf *resp)
{
	struct wh_msg r;
	struct wh_buf out;

	if (wh_msg_decode(resp->data, resp->len, WH_MAX_REPLY_FRAME, &r) < 0 ||
	    r.hdr.type != WH_MSG_MANIFEST_PART)
		return;
	r.u.manifest_part.version.mtime.nsec ^= 1;
	wh_buf_init(&out);
	assert_int_equal(wh_msg_append(&out, &r), 0);
	wh_buf_reset(resp);
	assert_int_equal(wh_buf_append(resp, out.data, out.len), 0);
	wh_buf_free(&out);
}

/* corrupt - flip the last byte of the DATA entry of |size| bytes in the
 * GET_SMALL_REPLY in |resp| (its hash then does not match) */
static void corrupt(struct wh_buf *resp, uint64_t size)
{
	struct wh_small_ent ent;
	struct wh_msg r;
	size_t pos = 0;

	if (wh_msg_decode(resp->data, resp->len, WH_MAX_REPLY_FRAME, &r) < 0 ||
	    r.hdr.type != WH_MSG_GET_SMALL_REPLY)
		return;
	while (wh_small_next(&r.u.get_small_reply, &pos, &ent) == 1)
		if (ent.status == WH_SMALL_DATA && ent.version.size == size)
			((uint8_t *)ent.data)[size - 1] ^= 1;
}

static int local_call(void *ctx, const uint8_t *req, size_t len,
		      struct wh_buf *resp, int timeout_ms)
{
	struct local *l = ctx;

	if (l->dead) {
		struct timespec ts = { timeout_ms / 1000,
				       (timeout_ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
		return WH_ERR_TIMEOUT;
	}
	{
		struct wh_msg m;
		int rv;

		assert_int_equal(wh_msg_decode(req, len, WH_MAX_REQ_FRAME, &m),
				 0);
		__atomic_add_fetch(&l->sent[m.hdr.type & 63], 1,
				   __ATOMIC_RELAXED);
		if (((m.hdr.type == WH_MSG_MANIFEST ||
		      m.hdr.type == WH_MSG_CHUNK) &&
		     !(l->caps & WH_CAP_CHUNKS)) ||
		    (m.hdr.type == WH_MSG_MANIFEST_STREAM &&
		     !(l->caps & WH_CAP_MSTREAM)) ||
		    (m.hdr.type == WH_MSG_GET_SMALL &&
		     !(l->caps & WH_CAP_SMALL))) {
			/* what an old host says to a type it does not know */
			__atomic_add_fetch(&l->refused, 1, __ATOMIC_RELAXED);
			wh_buf_reset(resp);
			return wh_error_append(resp, m.hdr.req_id, EPROTO,
					       "not a request message");
		}
		while ((m.hdr.type == WH_MSG_MANIFEST_STREAM ||
			m.hdr.type == WH_MSG_MANIFEST) &&
		       __atomic_load_n(&l->hold_manifest, __ATOMIC_ACQUIRE))
			usleep(1000);
		wh_buf_reset(resp);
		rv = wh_share_serve(l->share, req, len, resp);
		if (rv == 0 && l->skew_parts)
			skew(resp);
		if (rv == 0 && l->corrupt_size)
			corrupt(resp, l->corrupt_size);
		return rv;
	}
}

static const struct wh_rpc_ops local_ops = { .call = local_call };

static int setup(void **state)
{
	char path[128];
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/wh-fetch-test-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(share_dir, sizeof(share_dir), "%s/share", dir);
	mkdir(share_dir, 0700);
	content = malloc(FILE_SIZE);
	if (!content)
		return -1;
	srand(9);
	for (size_t i = 0; i < FILE_SIZE; i++)
		content[i] = (uint8_t)(rand() >> 7);
	snprintf(path, sizeof(path), "%s/f.bin", share_dir);
	f = fopen(path, "wb");
	if (!f || fwrite(content, 1, FILE_SIZE, f) != FILE_SIZE)
		return -1;
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	free(content);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void version_of(const char *path, struct wh_version *v)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	v->size = (uint64_t)st.st_size;
	v->mtime.sec = st.st_mtim.tv_sec;
	v->mtime.nsec = (uint32_t)st.st_mtim.tv_nsec;
	v->ctime.sec = st.st_ctim.tv_sec;
	v->ctime.nsec = (uint32_t)st.st_ctim.tv_nsec;
}

/* A fetcher over the share, through the host |l| (set before fx_open),
 * with a RAM cache, a chunk store when asked for, and f.bin's version. */
struct fx {
	struct local l;
	struct wh_rpc rpc;
	struct wh_store *store;
	struct wh_ram *ram;
	struct wh_fetch *f;
	struct wh_version v;
};

/* fx_open - |o| (its caps_ctx, if any, &x->l); a chunk store in |sdir|
 * under the test's directory, none when NULL */
static void fx_open(struct fx *x, const struct wh_fetch_opts *o,
		    const char *sdir)
{
	char path[128];

	x->rpc = (struct wh_rpc){ &local_ops, &x->l };
	x->store = NULL;
	assert_int_equal(wh_share_open(share_dir, &x->l.share), 0);
	if (sdir) {
		snprintf(path, sizeof(path), "%s/%s", dir, sdir);
		assert_int_equal(wh_store_open(path, 1ULL << 30, &x->store),
				 0);
	}
	assert_int_equal(wh_ram_new(64 * MiB, &x->ram), 0);
	assert_int_equal(wh_fetch_new(&x->rpc, x->store, x->ram, o, &x->f), 0);
	snprintf(path, sizeof(path), "%s/f.bin", share_dir);
	version_of(path, &x->v);
}

static void fx_close(struct fx *x)
{
	wh_fetch_del(x->f);
	wh_ram_del(x->ram);
	if (x->store)
		wh_store_close(x->store);
	wh_share_close(x->l.share);
}

/* stored_file - every chunk of the share's |name| is in |store|: their
 * number */
static size_t stored_file(struct wh_store *store, const char *name)
{
	struct wh_manifest m;
	char path[128];
	size_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", share_dir, name);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	wh_manifest_init(&m);
	assert_int_equal(wh_manifest_build(fd, &m), 0);
	close(fd);
	for (size_t i = 0; i < m.n; i++)
		assert_true(wh_store_has(store, m.chunks[i].hash,
					 m.chunks[i].length));
	n = m.n;
	wh_manifest_free(&m);
	return n;
}

/* stored_all - every chunk of f.bin is in |store|: their number */
static size_t stored_all(struct wh_store *store)
{
	return stored_file(store, "f.bin");
}

/* gather - copy what a reply points at; the number of bytes */
static size_t gather(const struct wh_fetch_reply *fr, uint8_t *out)
{
	size_t n = 0;

	for (int i = 0; i < fr->n; i++) {
		memcpy(out + n, fr->iov[i].iov_base, fr->iov[i].iov_len);
		n += fr->iov[i].iov_len;
	}
	return n;
}

static void wait_idle(struct wh_fetch *f)
{
	struct wh_fetch_stats st;

	for (int i = 0; i < 1000; i++) {
		wh_fetch_get_stats(f, &st);
		if (st.busy == 0)
			return;
		usleep(10000);
	}
	fail_msg("the fetcher stays busy");
}

/* read_all - read the file sequentially in 1 MiB reads; the ones left to
 * the caller are "read" from |content| as a READ would */
static void read_all(struct wh_fetch *f, struct wh_fetch_file *ff,
		     unsigned int *chunked)
{
	static uint8_t buf[MiB];

	*chunked = 0;
	for (uint64_t off = 0; off < FILE_SIZE; off += MiB) {
		struct wh_fetch_reply fr;
		size_t want = FILE_SIZE - off < MiB ? FILE_SIZE - off : MiB;
		int rv = wh_fetch_read(f, ff, "f.bin", 5, off, MiB, &fr);

		assert_true(rv >= 0);
		if (rv == 0) {
			wait_idle(f); /* let the manifest come */
			continue;
		}
		(*chunked)++;
		assert_int_equal(gather(&fr, buf), want);
		assert_memory_equal(buf, content + off, want);
		wh_fetch_done(f, &fr);
	}
}

static void test_sequential_then_store(void **state)
{
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS } };
	struct wh_fetch_opts o = { .timeout_ms = 5000, .workers = 3 };
	struct wh_fetch_stats st;
	struct wh_fetch *f;
	struct wh_fetch_file *ff;
	struct wh_fetch_reply fr;
	unsigned int chunked;

	(void)state;
	fx_open(&x, &o, "store");
	f = x.f;
	assert_int_equal(wh_fetch_open(f, "f.bin", 5, &x.v, &ff), 0);
	read_all(f, ff, &chunked);
	assert_true(chunked > 0);
	/* a read at the end of the file: no bytes */
	assert_int_equal(wh_fetch_read(f, ff, "f.bin", 5, FILE_SIZE, MiB, &fr),
			 1);
	assert_int_equal(fr.n, 0);
	wh_fetch_close(f, ff);
	wait_idle(f);
	wh_fetch_get_stats(f, &st);
	assert_int_equal(st.manifests, 1);
	assert_int_equal(st.bytes_fetched, FILE_SIZE);
	assert_int_equal(st.chunks_bad, 0);

	/* the store holds every chunk of the file */
	assert_int_equal(st.chunks_fetched, stored_all(x.store));
	wh_fetch_del(f);
	wh_ram_del(x.ram);

	/* a new fetcher (a remount): everything from the store */
	assert_int_equal(wh_ram_new(64 * MiB, &x.ram), 0);
	assert_int_equal(wh_fetch_new(&x.rpc, x.store, x.ram, &o, &x.f), 0);
	f = x.f;
	assert_int_equal(wh_fetch_open(f, "f.bin", 5, &x.v, &ff), 0);
	read_all(f, ff, &chunked);
	assert_true(chunked > 0);
	wh_fetch_close(f, ff);
	wait_idle(f);
	wh_fetch_get_stats(f, &st);
	assert_int_equal(st.chunks_fetched, 0);
	assert_true(st.chunks_from_store > 0);

	/* random reads: from RAM when there, else left to READ */
	wh_ram_drop_all(x.ram);
	assert_int_equal(wh_fetch_open(f, "f.bin", 5, &x.v, &ff), 0);
	assert_int_equal(wh_fetch_read(f, ff, "f.bin", 5, 20 * MiB, 4096,
				       &fr), 0);
	assert_int_equal(wh_fetch_read(f, ff, "f.bin", 5, 3 * MiB, 4096,
				       &fr), 0);
	/* three reads in a row: sequential, served from chunks */
	for (uint64_t off = 9 * MiB; off < 12 * MiB; off += MiB / 2) {
		int rv = wh_fetch_read(f, ff, "f.bin", 5, off, MiB / 2, &fr);

		if (rv == 1) {
			static uint8_t buf[MiB];

			assert_int_equal(gather(&fr, buf), MiB / 2);
			assert_memory_equal(buf, content + off, MiB / 2);
			wh_fetch_done(f, &fr);
		}
	}
	wait_idle(f);
	/* far away again: random, but that chunk is in RAM now */
	assert_int_equal(wh_fetch_read(f, ff, "f.bin", 5, 0, 4096, &fr), 0);
	assert_int_equal(wh_fetch_read(f, ff, "f.bin", 5, 10 * MiB + 5, 4096,
				       &fr), 1);
	assert_true(fr.n >= 1);
	assert_memory_equal(fr.iov[0].iov_base, content + 10 * MiB + 5,
			    fr.iov[0].iov_len);
	wh_fetch_done(f, &fr);
	/* after a change notice the next read is left to READ */
	wh_fetch_file_inval(ff);
	assert_int_equal(wh_fetch_read(f, ff, "f.bin", 5, 3 * MiB, 4096,
				       &fr), 0);
	wh_fetch_close(f, ff);
	wh_fetch_get_stats(f, &st);
	assert_true(st.reads_ram >= 1);
	fx_close(&x);
}

/* a run read all with READ, before the manifest came: the chunks follow
 * into the store all the same */
static void test_backfill_after_the_fact(void **state)
{
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS } };
	struct wh_fetch_opts o = { .timeout_ms = 5000 };
	struct wh_fetch_stats st;
	struct wh_fetch *f;
	struct wh_fetch_file *ff;

	(void)state;
	fx_open(&x, &o, "store2");
	f = x.f;
	assert_int_equal(wh_fetch_open(f, "f.bin", 5, &x.v, &ff), 0);
	for (uint64_t off = 0; off < FILE_SIZE; off += MiB) {
		struct wh_fetch_reply fr;

		if (wh_fetch_read(f, ff, "f.bin", 5, off, MiB, &fr) == 1)
			wh_fetch_done(f, &fr);
	}
	wh_fetch_close(f, ff);
	wait_idle(f);
	wh_fetch_get_stats(f, &st);
	assert_int_equal(st.bytes_fetched, FILE_SIZE);
	stored_all(x.store);
	fx_close(&x);
}

static void test_stale_version(void **state)
{
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS } };
	struct wh_fetch_opts o = { .timeout_ms = 5000 };
	struct wh_fetch *f;
	struct wh_fetch_file *ff;
	struct wh_fetch_reply fr;
	int rv = 0;

	(void)state;
	fx_open(&x, &o, NULL);
	f = x.f;
	x.v.mtime.nsec ^= 1; /* what the file was before a change */
	assert_int_equal(wh_fetch_open(f, "f.bin", 5, &x.v, &ff), 0);
	for (uint64_t off = 0; off < FILE_SIZE && rv == 0; off += MiB) {
		rv = wh_fetch_read(f, ff, "f.bin", 5, off, MiB, &fr);
		if (rv == 0)
			wait_idle(f);
	}
	assert_int_equal(rv, -ESTALE);
	wh_fetch_close(f, ff);
	fx_close(&x);
}

static void test_dead_host(void **state)
{
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS } };
	struct wh_fetch_opts o = { .timeout_ms = 200, .workers = 2,
				   .window_max = 2 * MiB };
	struct wh_fetch *f;
	struct wh_fetch_file *ff;
	struct wh_fetch_reply fr;
	int rv = 0;

	(void)state;
	fx_open(&x, &o, NULL);
	f = x.f;
	assert_int_equal(wh_fetch_open(f, "f.bin", 5, &x.v, &ff), 0);
	/* get into chunk mode, then the host goes silent */
	for (uint64_t off = 0; off < 10 * MiB; off += MiB) {
		rv = wh_fetch_read(f, ff, "f.bin", 5, off, MiB, &fr);
		if (rv == 1)
			wh_fetch_done(f, &fr);
		wait_idle(f);
	}
	x.l.dead = true;
	rv = 0;
	for (uint64_t off = 10 * MiB; off < FILE_SIZE && rv >= 0; off += MiB) {
		rv = wh_fetch_read(f, ff, "f.bin", 5, off, MiB, &fr);
		if (rv == 1)
			wh_fetch_done(f, &fr);
	}
	assert_true(rv < 0);
	wh_fetch_close(f, ff);
	fx_close(&x);
}

/*
 * read_file - read the share's |name| (|size| bytes of |data|)
 * sequentially in 1 MiB reads, those left to the caller "read" from |data|
 * as a READ would and handed back with wh_fetch_got_read; with |wait|,
 * waits once, at 8 MiB, until the host has hashed the file (as a host
 * hashing faster than the reader reads would have).  0 or the error of
 * the read that failed.  read_streamed: f.bin, waiting.
 */
static int read_file(struct wh_fetch *f, struct wh_fetch_file *ff,
		     const char *name, const uint8_t *data, uint64_t size,
		     bool wait, unsigned int *chunked, unsigned int *passed)
{
	static uint8_t buf[MiB];
	bool waited = !wait;

	*chunked = *passed = 0;
	for (uint64_t off = 0; off < size; off += MiB) {
		struct wh_fetch_reply fr;
		size_t want = size - off < MiB ? size - off : MiB;
		int rv = wh_fetch_read(f, ff, name, strlen(name), off, MiB,
				       &fr);

		if (rv < 0)
			return rv;
		if (rv == 0) {
			(*passed)++;
			wh_fetch_got_read(f, ff, off, data + off, want);
			if (off >= 8 * MiB && !waited) {
				struct wh_fetch_stats st;

				for (int i = 0; i < 500; i++) {
					wh_fetch_get_stats(f, &st);
					if (st.manifests > 0 || st.busy == 0)
						break;
					usleep(10000);
				}
				waited = true;
			}
			continue;
		}
		(*chunked)++;
		assert_int_equal(gather(&fr, buf), want);
		assert_memory_equal(buf, data + off, want);
		wh_fetch_done(f, &fr);
	}
	return 0;
}

static int read_streamed(struct wh_fetch *f, struct wh_fetch_file *ff,
			 unsigned int *chunked, unsigned int *passed)
{
	return read_file(f, ff, "f.bin", content, FILE_SIZE, true, chunked,
			 passed);
}

/* a cold file with a host that streams the manifest: chunks as soon as
 * their entries come, and the bytes READ brought are not fetched again */
static void test_mstream_cold(void **state)
{
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS | WH_CAP_MSTREAM } };
	struct wh_fetch_opts o = { .timeout_ms = 5000, .caps = local_caps,
				   .caps_ctx = &x.l };
	struct wh_fetch_stats st;
	struct wh_fetch *f;
	struct wh_fetch_file *ff;
	unsigned int chunked, passed;

	(void)state;
	fx_open(&x, &o, "store3");
	f = x.f;
	assert_int_equal(wh_fetch_open(f, "f.bin", 5, &x.v, &ff), 0);
	assert_int_equal(read_streamed(f, ff, &chunked, &passed), 0);
	assert_true(chunked > 0);
	assert_true(passed > 0);
	wh_fetch_close(f, ff);
	wait_idle(f);
	wh_fetch_get_stats(f, &st);
	assert_int_equal(x.l.sent[WH_MSG_MANIFEST], 0);
	assert_true(x.l.sent[WH_MSG_MANIFEST_STREAM] > 0);
	assert_int_equal(x.l.refused, 0);
	assert_true(st.mparts > 0);
	assert_int_equal(st.manifests, 1);
	assert_int_equal(st.chunks_bad, 0);
	/* what READ brought whole went to the store from those bytes: each
	 * byte of the file came over the wire once */
	assert_true(st.bytes_from_reads > 0);
	assert_int_equal(st.bytes_fetched + st.bytes_from_reads, FILE_SIZE);
	assert_int_equal(st.chunks_fetched + st.chunks_from_reads,
			 stored_all(x.store));
	fx_close(&x);
}

/* let_manifest_come - the host held back the manifest of |ff| (open):
 * it comes now, while the file is still open; then the file is closed,
 * everything done, and the stats in |st| (one good manifest, no bad
 * chunk) */
static void let_manifest_come(struct fx *x, struct wh_fetch_file *ff,
			      struct wh_fetch_stats *st)
{
	__atomic_store_n(&x->l.hold_manifest, false, __ATOMIC_RELEASE);
	wait_idle(x->f);
	wh_fetch_close(x->f, ff);
	wait_idle(x->f);
	wh_fetch_get_stats(x->f, st);
	assert_int_equal(st->manifests, 1);
	assert_int_equal(st->chunks_bad, 0);
}

/* the kernel's readahead sends a file's first reads out of order (seen:
 * 0, 1, 5, 3, 2, 6, 4, 7 MiB), so the run starts again at each before it
 * counts as sequential.  The bytes READ brought are still kept for the
 * manifest (held by the host until every read was a READ, here): each
 * chunk is made of them, none is fetched, and the store ends with the
 * whole file */
static void test_mstream_reordered_start(void **state)
{
	static const unsigned int first[] = { 0, 1, 5, 3, 2, 6, 4, 7 };
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS | WH_CAP_MSTREAM,
			       .hold_manifest = true } };
	struct wh_fetch_opts o = { .timeout_ms = 5000, .caps = local_caps,
				   .caps_ctx = &x.l };
	struct wh_fetch_stats st;
	struct wh_fetch_file *ff;

	(void)state;
	fx_open(&x, &o, "store-reorder");
	assert_int_equal(wh_fetch_open(x.f, "f.bin", 5, &x.v, &ff), 0);
	for (uint64_t off = 0; off < FILE_SIZE; off += MiB) {
		uint64_t at = off < 8 * MiB ? first[off / MiB] * MiB : off;
		size_t want = FILE_SIZE - at < MiB ? FILE_SIZE - at : MiB;
		struct wh_fetch_reply fr;

		assert_int_equal(wh_fetch_read(x.f, ff, "f.bin", 5, at, MiB,
					       &fr),
				 0);
		wh_fetch_got_read(x.f, ff, at, content + at, want);
	}
	let_manifest_come(&x, ff, &st);
	assert_int_equal(st.bytes_fetched, 0);
	assert_int_equal(st.bytes_from_reads, FILE_SIZE);
	assert_int_equal(st.chunks_from_reads, stored_all(x.store));
	fx_close(&x);
}

/* a host that hashes slower than the reader reads: the reader is far
 * past the READ bytes the mount keeps (32 MiB) before the manifest's first
 * part comes.  They are still made into chunks once it does, not fetched
 * again (dropped, they would all cross the wire twice). */
static void test_mstream_late(void **state)
{
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS | WH_CAP_MSTREAM,
			       .hold_manifest = true } };
	struct wh_fetch_opts o = { .timeout_ms = 5000, .caps = local_caps,
				   .caps_ctx = &x.l };
	const uint64_t size = 44 * MiB + 999;
	struct wh_fetch_stats st;
	struct wh_fetch_file *ff;
	struct wh_version v;
	unsigned int chunked, passed;
	uint8_t *data = malloc(size);
	char path[128];
	FILE *fp;

	(void)state;
	assert_non_null(data);
	srand(17);
	for (size_t i = 0; i < size; i++)
		data[i] = (uint8_t)(rand() >> 7);
	snprintf(path, sizeof(path), "%s/late.bin", share_dir);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, size, fp), size);
	assert_int_equal(fclose(fp), 0);
	version_of(path, &v);
	fx_open(&x, &o, "store-late");
	assert_int_equal(wh_fetch_open(x.f, "late.bin", 8, &v, &ff), 0);
	assert_int_equal(read_file(x.f, ff, "late.bin", data, size, false,
				   &chunked, &passed), 0);
	/* every read was a READ: the manifest never came meanwhile */
	assert_int_equal(chunked, 0);
	/* the manifest comes while the file is still open */
	let_manifest_come(&x, ff, &st);
	/* the first 32 MiB READ brought (less the chunk it ends within)
	 * became chunks; the rest was fetched, once */
	assert_true(st.bytes_from_reads >= 24 * MiB);
	assert_int_equal(st.bytes_fetched + st.bytes_from_reads, size);
	assert_int_equal(st.chunks_fetched + st.chunks_from_reads,
			 stored_file(x.store, "late.bin"));
	fx_close(&x);
	unlink(path);
	free(data);
}

/* chunk0 - the hash and length of f.bin's first chunk */
static void chunk0(uint8_t hash[WH_HASH_LEN], uint32_t *len)
{
	struct wh_manifest m;
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/f.bin", share_dir);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	wh_manifest_init(&m);
	assert_int_equal(wh_manifest_build(fd, &m), 0);
	close(fd);
	memcpy(hash, m.chunks[0].hash, WH_HASH_LEN);
	*len = m.chunks[0].length;
	wh_manifest_free(&m);
}

/* open_beside_pending - the fixture open on |store|, f.bin's first chunk
 * held pending in the RAM cache as if a fetch of it were on its way (its
 * entry in |e|), and f.bin open in |ff| */
static void open_beside_pending(struct fx *x, struct wh_fetch_opts *o,
				const char *store, struct wh_ram_ent **e,
				struct wh_fetch_file **ff)
{
	uint8_t h[WH_HASH_LEN];
	uint32_t len;

	chunk0(h, &len);
	fx_open(x, o, store);
	assert_int_equal(wh_ram_acquire(x->ram, h, true, e), 1);
	assert_int_equal(wh_fetch_open(x->f, "f.bin", 5, &x->v, ff), 0);
}

/* a fetch of the first chunk is on its way (the test holds its RAM entry
 * pending) while READ brings the chunk whole; that fetch then fails: the
 * READ bytes still go to the store, else it would end a chunk short */
static void test_assemble_beside_a_failed_fetch(void **state)
{
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS | WH_CAP_MSTREAM } };
	struct wh_fetch_opts o = { .timeout_ms = 5000, .caps = local_caps,
				   .caps_ctx = &x.l };
	struct wh_fetch_stats st;
	struct wh_fetch_file *ff;
	struct wh_ram_ent *e;
	unsigned int chunked, passed;

	(void)state;
	open_beside_pending(&x, &o, "store5", &e, &ff);
	assert_int_equal(read_streamed(x.f, ff, &chunked, &passed), 0);
	wh_fetch_close(x.f, ff);
	wait_idle(x.f);
	wh_ram_fail(x.ram, e, WH_ERR_TIMEOUT);
	wh_ram_put(x.ram, e);
	wh_fetch_get_stats(x.f, &st);
	assert_true(st.chunks_from_reads > 0);
	stored_all(x.store);
	/* and it came once: from the READ bytes */
	assert_int_equal(st.bytes_fetched + st.bytes_from_reads, FILE_SIZE);
	fx_close(&x);
}

/* the same for a chunk the backfill wants: it waits for the fetch on
 * its way and, when that fails, fetches the chunk itself */
static void test_backfill_beside_a_failed_fetch(void **state)
{
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS } };
	struct wh_fetch_opts o = { .timeout_ms = 5000 };
	struct wh_ram_stats rs;
	struct wh_fetch_file *ff;
	struct wh_ram_ent *e;
	uint64_t hits;

	(void)state;
	open_beside_pending(&x, &o, "store6", &e, &ff);
	for (uint64_t off = 0; off < FILE_SIZE; off += MiB) {
		struct wh_fetch_reply fr;

		if (wh_fetch_read(x.f, ff, "f.bin", 5, off, MiB, &fr) == 1)
			wh_fetch_done(x.f, &fr);
	}
	wh_ram_get_stats(x.ram, &rs);
	hits = rs.hits;
	wh_fetch_close(x.f, ff);
	/* the backfill, once the reads paused, finds the entry on its way
	 * (if it ran before |hits| was taken, this waits the 2 s out) */
	for (int i = 0; i < 200 && rs.hits == hits; i++) {
		usleep(10000);
		wh_ram_get_stats(x.ram, &rs);
	}
	wh_ram_fail(x.ram, e, WH_ERR_TIMEOUT);
	wh_ram_put(x.ram, e);
	wait_idle(x.f);
	stored_all(x.store);
	fx_close(&x);
}

/* parts of another version than the open's: -ESTALE, never a mix */
static void test_mstream_other_version(void **state)
{
	struct fx x = { .l = { .caps = WH_CAP_CHUNKS | WH_CAP_MSTREAM,
			       .skew_parts = true } };
	struct wh_fetch_opts o = { .timeout_ms = 5000, .caps = local_caps,
				   .caps_ctx = &x.l };
	struct wh_fetch_stats st;
	struct wh_fetch *f;
	struct wh_fetch_file *ff;
	unsigned int chunked, passed;
	int rv = 0;

	(void)state;
	fx_open(&x, &o, NULL);
	f = x.f;
	assert_int_equal(wh_fetch_open(f, "f.bin", 5, &x.v, &ff), 0);
	rv = read_streamed(f, ff, &chunked, &passed);
	assert_int_equal(rv, -ESTALE);
	assert_int_equal(chunked, 0);
	wh_fetch_close(f, ff);
	wait_idle(f);
	wh_fetch_get_stats(f, &st);
	assert_int_equal(st.chunks_fetched, 0);
	assert_int_equal(st.manifests, 0);
	fx_close(&x);
}

/* a host without MSTREAM gets MANIFEST; one without CHUNKS only READ */
static void test_old_hosts(void **state)
{
	struct wh_fetch_stats st;
	struct wh_fetch_file *ff;
	unsigned int chunked, passed;

	(void)state;
	for (int k = 0; k < 2; k++) {
		struct fx x = { .l = { .caps = k == 0 ? WH_CAP_CHUNKS : 0 } };
		struct local *l = &x.l;
		struct wh_fetch_opts o = { .timeout_ms = 5000,
					   .caps = local_caps,
					   .caps_ctx = &x.l };
		struct wh_fetch *f;

		fx_open(&x, &o, NULL);
		f = x.f;
		assert_int_equal(wh_fetch_open(f, "f.bin", 5, &x.v, &ff), 0);
		assert_int_equal(read_streamed(f, ff, &chunked, &passed), 0);
		wh_fetch_close(f, ff);
		wait_idle(f);
		wh_fetch_get_stats(f, &st);
		assert_int_equal(l->refused, 0);
		assert_int_equal(l->sent[WH_MSG_MANIFEST_STREAM], 0);
		if (k == 0) {
			assert_true(l->sent[WH_MSG_MANIFEST] > 0);
			assert_int_equal(st.manifests, 1);
		} else {
			assert_int_equal(l->sent[WH_MSG_MANIFEST], 0);
			assert_int_equal(l->sent[WH_MSG_CHUNK], 0);
			assert_int_equal(chunked, 0);
			assert_int_equal(passed, (FILE_SIZE + MiB - 1) / MiB);
		}
		fx_close(&x);
	}
}

static unsigned int small_done_calls;

static void count_small(void *ctx, const char *path, size_t len,
			const struct wh_version *v, struct wh_ram_ent *e)
{
	(void)ctx;
	(void)path;
	(void)len;
	assert_int_equal(wh_ram_len(e), v->size);
	/* (from the fetcher's worker threads, several at once) */
	__atomic_add_fetch(&small_done_calls, 1, __ATOMIC_RELAXED);
}

/* small_files - with a host of |caps|; |bad|: one file's bytes come
 * corrupted in GET_SMALL replies */
static void small_files(uint64_t caps, bool bad)
{
	enum { N = 40, BIG = N - 1, EMPTY = N - 2, SKEW = 3, BAD = 5 };
	struct fx x = { .l = { .caps = caps } };
	struct local *l = &x.l;
	bool get = caps & WH_CAP_SMALL;
	unsigned int failed = bad ? 2 : 1; /* fetches that fail */
	struct wh_fetch_opts o = { .timeout_ms = 5000, .caps = local_caps,
				   .caps_ctx = &x.l, .small_done = count_small };
	struct wh_fetch_small v[N];
	char names[N][16], path[160];
	static uint8_t data[N][WH_FETCH_SMALL_MAX + 1];
	size_t sizes[N];
	struct wh_fetch_stats st;
	struct wh_fetch *f;

	for (int i = 0; i < N; i++) {
		FILE *fp;

		sizes[i] = i == BIG ? WH_FETCH_SMALL_MAX + 1
			   : i == EMPTY ? 0 : 100u + (size_t)i * 997u;
		for (size_t k = 0; k < sizes[i]; k++)
			data[i][k] = (uint8_t)(i * 31 + k);
		snprintf(names[i], sizeof(names[i]), "s%02d", i);
		snprintf(path, sizeof(path), "%s/%s", share_dir, names[i]);
		fp = fopen(path, "wb");
		assert_non_null(fp);
		assert_int_equal(fwrite(data[i], 1, sizes[i], fp), sizes[i]);
		fclose(fp);
		v[i].path = names[i];
		v[i].len = strlen(names[i]);
		version_of(path, &v[i].v);
	}
	v[SKEW].v.mtime.nsec ^= 1; /* listed before a change */
	if (bad)
		l->corrupt_size = sizes[BAD];
	fx_open(&x, &o, NULL);
	f = x.f;
	__atomic_store_n(&small_done_calls, 0, __ATOMIC_RELAXED);
	assert_int_equal(wh_fetch_small(f, v, N), N - 2);
	wait_idle(f);
	/* asked again: only the ones whose fetch failed go again */
	assert_int_equal(wh_fetch_small(f, v, N), failed);
	wait_idle(f);
	wh_fetch_get_stats(f, &st);
	assert_int_equal(st.small_queued, N - 2 + failed);
	assert_int_equal(st.small_fetched, N - 2 - failed);
	/* once as each came, and once more for those asked again while in
	 * RAM (their reader may know their names only now) */
	assert_int_equal(__atomic_load_n(&small_done_calls, __ATOMIC_RELAXED),
			 2 * (N - 2 - failed));
	assert_int_equal(st.small_bad, bad ? 2 : 0);
	if (get) {
		/* several files to a request, and no READ */
		assert_int_equal(l->sent[WH_MSG_READ], 0);
		assert_int_equal(st.small_batches, l->sent[WH_MSG_GET_SMALL]);
		assert_true(st.small_batches > 0 &&
			    st.small_batches < st.small_fetched);
	} else {
		assert_int_equal(l->sent[WH_MSG_READ], N - 2 + failed);
		assert_int_equal(l->sent[WH_MSG_GET_SMALL], 0);
		assert_int_equal(st.small_batches, 0);
	}
	assert_int_equal(l->refused, 0);
	for (int i = 0; i < N; i++) {
		struct wh_fetch_file *ff;
		struct wh_fetch_reply fr;
		static uint8_t got[WH_FETCH_SMALL_MAX + 1];
		int rv;

		if (i == EMPTY)
			continue;
		assert_int_equal(wh_fetch_open(f, names[i], v[i].len, &v[i].v,
					       &ff), 0);
		rv = wh_fetch_read(f, ff, names[i], v[i].len, 0, 128 * 1024,
				   &fr);
		if (i == BIG || i == SKEW || (bad && i == BAD)) {
			/* not fetched, not at this version, or corrupt: a
			 * READ */
			assert_int_equal(rv, 0);
		} else {
			size_t want = sizes[i] < 128 * 1024 ? sizes[i]
							    : 128 * 1024;

			assert_int_equal(rv, 1);
			assert_int_equal(gather(&fr, got), want);
			assert_memory_equal(got, data[i], want);
			wh_fetch_done(f, &fr);
			/* past the end: nothing */
			assert_int_equal(wh_fetch_read(f, ff, names[i],
						       v[i].len, sizes[i],
						       4096, &fr), 1);
			assert_int_equal(fr.n, 0);
		}
		wh_fetch_close(f, ff);
	}
	wh_fetch_get_stats(f, &st);
	assert_int_equal(st.reads_small, 2 * (N - 2 - failed));
	/* no request went out for the reads */
	assert_int_equal(l->sent[WH_MSG_READ], get ? 0 : N - 2 + failed);
	fx_close(&x);
}

static void test_small_files(void **state)
{
	(void)state;
	small_files(WH_CAP_CHUNKS, false);
}

static void test_small_files_get_small(void **state)
{
	(void)state;
	small_files(WH_CAP_CHUNKS | WH_CAP_SMALL, false);
}

static void test_small_files_corrupt(void **state)
{
	(void)state;
	small_files(WH_CAP_CHUNKS | WH_CAP_SMALL, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sequential_then_store),
		cmocka_unit_test(test_backfill_after_the_fact),
		cmocka_unit_test(test_stale_version),
		cmocka_unit_test(test_dead_host),
		cmocka_unit_test(test_mstream_cold),
		cmocka_unit_test(test_mstream_reordered_start),
		cmocka_unit_test(test_mstream_other_version),
		cmocka_unit_test(test_mstream_late),
		cmocka_unit_test(test_assemble_beside_a_failed_fetch),
		cmocka_unit_test(test_backfill_beside_a_failed_fetch),
		cmocka_unit_test(test_old_hosts),
		cmocka_unit_test(test_small_files),
		cmocka_unit_test(test_small_files_get_small),
		cmocka_unit_test(test_small_files_corrupt),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
