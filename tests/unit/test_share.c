/*
 * test_share.c - the host's share: nothing outside the share is reachable,
 * symlinks are never followed, special files are invisible, listings page
 * without loss, reads honour every edge, and changes are reported.
 *
 * With --refuse-openat2 every test runs again under a seccomp filter that
 * answers openat2 with EPERM (a container runtime older than it; a kernel
 * before 5.6 says ENOSYS, which takes the same path): the share then
 * resolves paths one component at a time, by the same rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "host/wh_mcache.h"
#include "host/wh_share.h"
#include "proto/wh_proto.h"

static char base[256], root[300];
static struct wh_share *share;
static struct wh_buf resp;
static struct wh_msg reply;

static void put_file(const char *rel, const void *data, size_t len)
{
	char p[1024];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static int setup(void **state)
{
	char p[1024];
	int s;
	struct sockaddr_un sa;

	(void)state;
	snprintf(base, sizeof(base), "/tmp/wh-share-test-XXXXXX");
	assert_non_null(mkdtemp(base));
	snprintf(root, sizeof(root), "%s/share", base);
	assert_int_equal(mkdir(root, 0755), 0);
	snprintf(p, sizeof(p), "%s/secret", base);
	{
		FILE *f = fopen(p, "w");

		fputs("outside\n", f);
		fclose(f);
	}
	put_file("hello", "hello world", 11);
	snprintf(p, sizeof(p), "%s/dir", root);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/many", root);
	mkdir(p, 0755);
	for (int i = 0; i < 2000; i++) {
		char n[64];

		snprintf(n, sizeof(n), "many/e%04d", i);
		put_file(n, "", 0);
	}
	snprintf(p, sizeof(p), "%s/abs", root);
	symlink("/etc", p);
	snprintf(p, sizeof(p), "%s/up", root);
	symlink("..", p);
	snprintf(p, sizeof(p), "%s/uplink", root);
	symlink("../secret", p);
	snprintf(p, sizeof(p), "%s/fifo", root);
	mkfifo(p, 0644);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(p, sizeof(p), "%s/sock", root);
	assert_true(strlen(p) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, p, strlen(p) + 1);
	bind(s, (struct sockaddr *)&sa, sizeof(sa));
	close(s);
	snprintf(p, sizeof(p), "%s/null", root);
	mknod(p, S_IFCHR | 0666, makedev(1, 3)); /* root only; fine to fail */
	assert_int_equal(wh_share_open(root, &share), 0);
	wh_buf_init(&resp);
	return 0;
}

static int teardown(void **state)
{
	char cmd[512];

	(void)state;
	wh_share_close(share);
	wh_buf_free(&resp);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	return system(cmd) == 0 ? 0 : -1;
}

/* serve - send |m|, decode the reply into |reply|; returns serve's rv */
static uint64_t client; /* whom serve() serves (0: nobody said) */

static int serve(struct wh_msg *m)
{
	uint8_t req[WH_FRAME_HDR_LEN + WH_MAX_REQ_FRAME];
	ssize_t n = wh_msg_encode(m, req, sizeof(req));
	int rv;

	assert_true(n > 0);
	wh_buf_reset(&resp);
	rv = wh_share_serve_from(share, client, req, (size_t)n, -1, &resp);
	assert_int_equal(wh_msg_decode(resp.data, resp.len, WH_MAX_REPLY_FRAME,
				       &reply), 0);
	assert_int_equal(reply.hdr.req_id, m->hdr.req_id);
	return rv;
}

static int getattr(const char *path)
{
	struct wh_msg m;

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GETATTR;
	m.hdr.req_id = 3;
	m.u.path.path.p = path;
	m.u.path.path.len = (uint16_t)strlen(path);
	assert_int_equal(serve(&m), 0);
	return reply.hdr.type == WH_MSG_ERROR ? reply.u.error.err : 0;
}

static int readfile(const char *path, uint64_t off, uint32_t len)
{
	struct wh_msg m;

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READ;
	m.hdr.req_id = 4;
	m.u.read.path.p = path;
	m.u.read.path.len = (uint16_t)strlen(path);
	m.u.read.offset = off;
	m.u.read.length = len;
	assert_int_equal(serve(&m), 0);
	return reply.hdr.type == WH_MSG_ERROR ? reply.u.error.err : 0;
}

/* mstream - one MANIFEST_STREAM; 0, or the errno of an ERROR reply */
static int mstream(const char *path, uint32_t start, uint32_t wait_ms)
{
	struct wh_msg m;

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST_STREAM;
	m.hdr.req_id = 9;
	m.u.manifest_stream.path.p = path;
	m.u.manifest_stream.path.len = (uint16_t)strlen(path);
	m.u.manifest_stream.start = start;
	m.u.manifest_stream.wait_ms = wait_ms;
	assert_int_equal(serve(&m), 0);
	if (reply.hdr.type == WH_MSG_ERROR)
		return reply.u.error.err;
	assert_int_equal(reply.hdr.type, WH_MSG_MANIFEST_PART);
	return 0;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		p[i] = (uint8_t)(seed >> 56);
	}
}

/* manifest_of - the reference manifest of |n| bytes */
static void manifest_of(const uint8_t *data, size_t n, struct wh_manifest *m)
{
	char p[512];
	int fd;

	snprintf(p, sizeof(p), "%s/ref", base);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	wh_manifest_init(m);
	assert_int_equal(wh_manifest_build(fd, m), 0);
	close(fd);
}

/* collect - poll MANIFEST_STREAM until done; 0 and the entries in |got|
 * (which must match |ref| so far), or the errno that ended it (ESTALE
 * also when a part comes for another version, as a client sees it) */
static int collect(const char *path, const struct wh_manifest *ref,
		   uint32_t wait_ms, size_t *got, void (*after_first)(void))
{
	struct wh_version v;

	*got = 0;
	for (int polls = 0; polls < 100000; polls++) {
		const struct wh_msg_manifest_part *mp = &reply.u.manifest_part;
		int rv = mstream(path, (uint32_t)*got, wait_ms);

		if (rv)
			return rv;
		if (polls == 0) {
			v = mp->version;
			if (after_first)
				after_first();
		}
		else if (v.size != mp->version.size ||
			 v.mtime.sec != mp->version.mtime.sec ||
			 v.mtime.nsec != mp->version.mtime.nsec ||
			 v.ctime.sec != mp->version.ctime.sec ||
			 v.ctime.nsec != mp->version.ctime.nsec)
			return ESTALE;
		assert_true(mp->start == *got || mp->count == 0);
		for (uint32_t i = 0; i < mp->count; i++) {
			struct wh_chunk c;

			assert_true(*got < ref->n);
			wh_manifest_part_entry(mp, i, &c.offset, &c.length,
					       c.hash);
			assert_true(c.offset == ref->chunks[*got].offset);
			assert_true(c.length == ref->chunks[*got].length);
			assert_memory_equal(c.hash, ref->chunks[*got].hash, 32);
			(*got)++;
		}
		if (mp->done && *got == mp->known)
			return 0;
	}
	fail_msg("the manifest never completed");
	return -1;
}

static uint8_t *rewrite_data;
static size_t rewrite_len;

/* rewrite_big2 - 1 MiB in the middle of big2 changes */
static void rewrite_big2(void)
{
	char p[1024];
	size_t n = rewrite_len;
	int fd;

	snprintf(p, sizeof(p), "%s/big2", root);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	memset(rewrite_data + n / 2, 0xab, 1 << 20);
	assert_int_equal(pwrite(fd, rewrite_data + n / 2, 1 << 20, n / 2),
			 1 << 20);
	close(fd);
}

static void test_streamed_manifest(void **state)
{
	const size_t n = 48u << 20; /* big enough to hash on a job thread */
	uint8_t *data = malloc(n);
	struct wh_manifest ref, ref2;
	struct wh_msg m;
	size_t got;
	char p[1024];
	int rv;

	(void)state;
	assert_non_null(data);
	fill_random(data, n, 7);
	manifest_of(data, n, &ref);
	put_file("big", data, n);
	/* polled without waiting, and with waits: the same entries */
	assert_int_equal(collect("big", &ref, 0, &got, NULL), 0);
	assert_int_equal(got, ref.n);
	assert_int_equal(collect("big", &ref, 1000, &got, NULL), 0);
	assert_int_equal(got, ref.n);
	/* a finished manifest: everything in the first part */
	assert_int_equal(mstream("big", 0, 0), 0);
	assert_true(reply.u.manifest_part.done &&
		    reply.u.manifest_part.count == ref.n &&
		    reply.u.manifest_part.version.size == n);
	/* past the end: nothing, at once */
	assert_int_equal(mstream("big", 100000, 5000), 0);
	assert_true(reply.u.manifest_part.done &&
		    reply.u.manifest_part.count == 0 &&
		    reply.u.manifest_part.start == ref.n);
	/* the old form still answers whole manifests */
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST;
	m.hdr.req_id = 10;
	m.u.manifest.path.p = "big";
	m.u.manifest.path.len = 3;
	assert_int_equal(serve(&m), 0);
	assert_int_equal(reply.hdr.type, WH_MSG_MANIFEST_REPLY);
	assert_true(reply.u.manifest_reply.total == ref.n &&
		    reply.u.manifest_reply.count == ref.n);
	/* small files, errors */
	assert_int_equal(mstream("hello", 0, 100), 0);
	assert_true(reply.u.manifest_part.done &&
		    reply.u.manifest_part.known == 1 &&
		    reply.u.manifest_part.count == 1);
	assert_int_equal(mstream("many/e0000", 0, 100), 0);
	assert_true(reply.u.manifest_part.done &&
		    reply.u.manifest_part.known == 0);
	assert_int_equal(mstream("nope", 0, 100), ENOENT);
	assert_int_equal(mstream("dir", 0, 100), EISDIR);
	assert_int_equal(mstream("uplink", 0, 100), EINVAL); /* a symlink */

	/* a file rewritten while it is hashed: ESTALE, or (if hashing won
	 * the race) the whole old manifest; never a mix */
	fill_random(data, n, 8);
	wh_manifest_free(&ref);
	manifest_of(data, n, &ref);
	put_file("big2", data, n);
	snprintf(p, sizeof(p), "%s/big2", root);
	{
		/* an old mtime, so the rewrite below surely changes it (the
		 * version is (size, mtime, ctime), at the clock's grain) */
		struct timespec t[2] = { { 1000, 0 }, { 1000, 0 } };

		assert_int_equal(utimensat(AT_FDCWD, p, t, 0), 0);
	}
	rewrite_data = data;
	rewrite_len = n;
	rv = collect("big2", &ref, 1000, &got, rewrite_big2);
	if (rv != 0) {
		assert_int_equal(rv, ESTALE);
		/* the next request sees the new version */
		manifest_of(data, n, &ref2);
		assert_int_equal(collect("big2", &ref2, 1000, &got, NULL), 0);
		assert_int_equal(got, ref2.n);
		wh_manifest_free(&ref2);
	}
	wh_manifest_free(&ref);
	free(data);
}

/* manifest_req - a MANIFEST of |path| from entry 0, encoded into |req|
 * (|cap| bytes); its length */
static size_t manifest_req(const char *path, uint8_t *req, size_t cap)
{
	struct wh_msg m;
	ssize_t len;

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST;
	m.hdr.req_id = 12;
	m.u.manifest.path.p = path;
	m.u.manifest.path.len = (uint16_t)strlen(path);
	len = wh_msg_encode(&m, req, cap);
	assert_true(len > 0);
	return (size_t)len;
}

/* serve_deferred - serve |req| (|len| bytes) on |sh| again and again while
 * it is put off (WH_SHARE_LATER, nothing appended), |pause_us| apart and
 * less than |most| times, then decode its reply into |reply|; how often it
 * was put off */
static int serve_deferred(struct wh_share *sh, const uint8_t *req,
			  size_t len, unsigned pause_us, int most)
{
	int rv, laters = 0;

	for (;;) {
		wh_buf_reset(&resp);
		rv = wh_share_serve(sh, req, len, &resp);
		if (rv != WH_SHARE_LATER)
			break;
		assert_int_equal(resp.len, 0);
		assert_true(++laters < most);
		usleep(pause_us);
	}
	assert_int_equal(rv, 0);
	assert_int_equal(wh_msg_decode(resp.data, resp.len, WH_MAX_REPLY_FRAME,
				       &reply), 0);
	return laters;
}

/* With defer set, a MANIFEST whose manifest is being computed is put off
 * (nothing appended) until it is done, then answered whole. */
static void test_deferred_manifest(void **state)
{
	const size_t n = 48u << 20;
	uint8_t *data = malloc(n);
	uint8_t req[256];
	struct wh_manifest ref;
	struct wh_msg m;
	size_t len;
	int laters;

	(void)state;
	assert_non_null(data);
	fill_random(data, n, 11);
	manifest_of(data, n, &ref);
	put_file("big3", data, n);
	len = manifest_req("big3", req, sizeof(req));
	wh_share_set_defer(share, true);
	laters = serve_deferred(share, req, len, 1000, 20000);
	wh_share_set_defer(share, false);
	assert_int_equal(reply.hdr.type, WH_MSG_MANIFEST_REPLY);
	/* 48 MiB take far longer to hash than the first call to return */
	assert_true(laters > 0);
	assert_true(reply.u.manifest_reply.total == ref.n &&
		    reply.u.manifest_reply.count == ref.n &&
		    reply.u.manifest_reply.version.size == n);
	for (uint32_t i = 0; i < reply.u.manifest_reply.count; i++) {
		struct wh_chunk c;

		wh_manifest_entry(&reply.u.manifest_reply, i, &c.offset,
				  &c.length, c.hash);
		assert_true(c.offset == ref.chunks[i].offset &&
			    c.length == ref.chunks[i].length);
		assert_memory_equal(c.hash, ref.chunks[i].hash, 32);
	}
	/* and a small file is never put off: hashed right away */
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST;
	m.hdr.req_id = 12;
	m.u.manifest.path.p = "hello";
	m.u.manifest.path.len = 5;
	wh_share_set_defer(share, true);
	assert_int_equal(serve(&m), 0);
	wh_share_set_defer(share, false);
	assert_int_equal(reply.hdr.type, WH_MSG_MANIFEST_REPLY);
	wh_manifest_free(&ref);
	free(data);
}

struct churn {
	int fd;
	bool stop;
};

/* churn_main - rewrite a byte of the file and move its size, again and
 * again until told to stop: a new version every 0.2 ms */
static void *churn_main(void *arg)
{
	struct churn *ch = arg;
	uint8_t b = 0;

	for (unsigned i = 0; !__atomic_load_n(&ch->stop, __ATOMIC_RELAXED);
	     i++) {
		b++;
		assert_int_equal(pwrite(ch->fd, &b, 1, (off_t)(i % 4096) * 4096),
				 1);
		assert_int_equal(ftruncate(ch->fd, (12 << 20) + (i % 2) * 4096),
				 0);
		usleep(200);
	}
	return NULL;
}

/* With defer set, a MANIFEST of a big file that changes all the time is
 * answered "the file keeps changing" (EAGAIN), as it was when a worker
 * hashed it, instead of being put off for as long as the file changes:
 * each time it is served again it finds a new version to hash. */
static void test_deferred_manifest_of_a_changing_file(void **state)
{
	static struct churn ch; /* static: a failed assert leaves the thread */
	uint8_t req[256], *data;
	pthread_t th;
	size_t len;
	char p[512];

	(void)state;
	data = malloc(12 << 20);
	assert_non_null(data);
	fill_random(data, 12 << 20, 5); /* over what is hashed inline */
	put_file("churn", data, 12 << 20);
	free(data);
	snprintf(p, sizeof(p), "%s/churn", root);
	ch.fd = open(p, O_WRONLY);
	assert_true(ch.fd >= 0);
	ch.stop = false;
	assert_int_equal(pthread_create(&th, NULL, churn_main, &ch), 0);
	len = manifest_req("churn", req, sizeof(req));
	/* served again every 50 ms, as the host does: each time the job
	 * started the time before has found the file changed, and a new
	 * version is there to start one for.  Answered after about as many
	 * versions as it takes to give up (8), not when a job happened to
	 * fail before the serve that started it returned. */
	wh_share_set_defer(share, true);
	serve_deferred(share, req, len, 50000, 40);
	wh_share_set_defer(share, false);
	__atomic_store_n(&ch.stop, true, __ATOMIC_RELAXED);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(ftruncate(ch.fd, 12 << 20), 0);
	close(ch.fd);
	assert_int_equal(reply.hdr.type, WH_MSG_ERROR);
	assert_int_equal(reply.u.error.err, EAGAIN);
	/* once it holds still, the same request is answered */
	wh_share_set_defer(share, true);
	serve_deferred(share, req, len, 1000, 20000);
	wh_share_set_defer(share, false);
	assert_int_equal(reply.hdr.type, WH_MSG_MANIFEST_REPLY);
	assert_true(reply.u.manifest_reply.total > 0 &&
		    reply.u.manifest_reply.version.size == 12 << 20);
}

/* held_share - |files| sparse files of 9 MiB (over what is hashed inline)
 * named PREFIX00 on, and a share of its own whose hashers start nothing
 * until |flag| exists (WH_MCACHE_TEST_HOLD), put off when unfinished */
static struct wh_share *held_share(const char *prefix, int files,
				   const char *flag)
{
	struct wh_share *held;
	char p[512];
	int fd;

	for (int i = 0; i < files; i++) {
		snprintf(p, sizeof(p), "%s/%s%02d", root, prefix, i);
		fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 9 << 20), 0);
		close(fd);
	}
	setenv("WH_MCACHE_TEST_HOLD", flag, 1);
	assert_int_equal(wh_share_open(root, &held), 0); /* its own cache */
	unsetenv("WH_MCACHE_TEST_HOLD");
	wh_share_set_defer(held, true);
	return held;
}

/* With defer set, a big file past what the hashers queue (64, the hashers
 * held by WH_MCACHE_TEST_HOLD) is not hashed in the caller: its
 * MANIFEST_STREAM gets an empty part at once, its MANIFEST is put off;
 * both complete once the hashers go on. */
static void test_deferred_past_the_queue(void **state)
{
	enum { FILES = 66 };
	struct wh_share *held;
	struct wh_share *saved = share;
	char p[512], flag[512];
	int fd;

	(void)state;
	snprintf(flag, sizeof(flag), "%s/hashers-go", base);
	held = held_share("q", FILES, flag);
	share = held;
	for (int i = 0; i < FILES - 1; i++) {
		snprintf(p, sizeof(p), "q%02d", i);
		assert_int_equal(mstream(p, 0, 0), 0);
		/* nothing hashed while the hashers are held, none in here */
		assert_false(reply.u.manifest_part.done);
		assert_int_equal(reply.u.manifest_part.count, 0);
	}
	{
		uint8_t req[256];
		size_t len = manifest_req("q65", req, sizeof(req));

		wh_buf_reset(&resp);
		assert_int_equal(wh_share_serve(held, req, len, &resp),
				 WH_SHARE_LATER);
		assert_int_equal(resp.len, 0);
		/* the hashers go on: everything completes */
		fd = open(flag, O_WRONLY | O_CREAT, 0644);
		assert_true(fd >= 0);
		close(fd);
		serve_deferred(held, req, len, 1000, 20000);
		assert_int_equal(reply.hdr.type, WH_MSG_MANIFEST_REPLY);
		assert_true(reply.u.manifest_reply.total > 0 &&
			    reply.u.manifest_reply.version.size == 9 << 20);
	}
	for (int i = 0; i < FILES - 1; i++) {
		size_t got;

		snprintf(p, sizeof(p), "q%02d", i);
		for (got = 0;;) {
			assert_int_equal(mstream(p, 0, 100), 0);
			if (reply.u.manifest_part.done)
				break;
			assert_true(++got < 20000);
			usleep(1000);
		}
		assert_int_equal(reply.u.manifest_part.count,
				 reply.u.manifest_part.known);
	}
	share = saved;
	wh_share_close(held);
	for (int i = 0; i < FILES; i++) {
		snprintf(p, sizeof(p), "%s/q%02d", root, i);
		unlink(p);
	}
}

/* The hashers take the clients in turn: one client's 16 big files queued
 * first do not hold back another client's one behind all of them. */
static void test_hashers_take_clients_in_turn(void **state)
{
	enum { FILES = 16 };
	struct wh_share *saved = share;
	char p[512], flag[512];
	int fd, ahead = 0, polls = 0;

	(void)state;
	snprintf(flag, sizeof(flag), "%s/hashers-go-2", base);
	share = held_share("t", FILES + 1, flag);
	client = 1; /* its 16, queued while the hashers are held */
	for (int i = 0; i < FILES; i++) {
		snprintf(p, sizeof(p), "t%02d", i);
		assert_int_equal(mstream(p, 0, 0), 0);
		assert_int_equal(reply.u.manifest_part.count, 0);
	}
	client = 2; /* its one, after them */
	snprintf(p, sizeof(p), "t%02d", FILES);
	assert_int_equal(mstream(p, 0, 0), 0);
	fd = open(flag, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	do {
		assert_true(++polls < 20000);
		usleep(200);
		assert_int_equal(mstream(p, 0, 0), 0);
	} while (!reply.u.manifest_part.done);
	/* how many of the first client's were done by then (each takes
	 * longer to hash than these 16 requests take) */
	client = 1;
	for (int i = 0; i < FILES; i++) {
		snprintf(p, sizeof(p), "t%02d", i);
		assert_int_equal(mstream(p, 0, 0), 0);
		ahead += reply.u.manifest_part.done;
	}
	/* two hashers: its first one and ours, then its second... */
	assert_true(ahead <= 4);
	client = 0;
	wh_share_close(share);
	share = saved;
	for (int i = 0; i <= FILES; i++) {
		snprintf(p, sizeof(p), "%s/t%02d", root, i);
		unlink(p);
	}
	unlink(flag);
}

static void test_getattr(void **state)
{
	(void)state;
	assert_int_equal(getattr(""), 0);
	assert_true(S_ISDIR(reply.u.attr.attr.mode));
	assert_int_equal(getattr("hello"), 0);
	assert_int_equal(reply.u.attr.attr.size, 11);
	assert_int_equal(getattr("abs"), 0); /* the link itself */
	assert_true(S_ISLNK(reply.u.attr.attr.mode));
	assert_int_equal(getattr("missing"), ENOENT);
}

/* get_small - one GET_SMALL of |n| paths (hashes[i] NULL: no copy);
 * the reply's entries in |ents| */
static void get_small(const char *const *paths, const uint8_t *const *hashes,
		      size_t n, struct wh_small_ent *ents)
{
	uint8_t e[WH_MAX_REQ_FRAME];
	struct wh_msg m;
	size_t len = 0, pos = 0;

	for (size_t i = 0; i < n; i++) {
		ssize_t w = wh_small_req_encode(paths[i], strlen(paths[i]),
						hashes ? hashes[i] : NULL,
						e + len, sizeof(e) - 2 - len);

		assert_true(w > 0);
		len += (size_t)w;
	}
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GET_SMALL;
	m.hdr.req_id = 12;
	m.u.get_small.count = (uint16_t)n;
	m.u.get_small.entries = e;
	m.u.get_small.entries_len = len;
	assert_int_equal(serve(&m), 0);
	assert_int_equal(reply.hdr.type, WH_MSG_GET_SMALL_REPLY);
	assert_int_equal(reply.u.get_small_reply.count, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(wh_small_next(&reply.u.get_small_reply, &pos,
					       &ents[i]), 1);
}

static void test_get_small(void **state)
{
	static const char *const paths[] = {
		"hello", "many/e0001", "nope", "dir", "fifo", "null", "sock",
		"uplink", "abs/passwd", "up/secret", "big", "edge",
	};
	static uint8_t big[WH_MAX_SMALL_FILE + 1];
	const size_t n = sizeof(paths) / sizeof(paths[0]);
	struct wh_small_ent ents[sizeof(paths) / sizeof(paths[0])];
	const uint8_t *hashes[sizeof(paths) / sizeof(paths[0])] = { 0 };
	uint8_t h[WH_HASH_LEN], wrong[WH_HASH_LEN];
	struct wh_msg m;
	struct stat st;
	char p[1024];

	(void)state;
	fill_random(big, sizeof(big), 7);
	put_file("big", big, sizeof(big));              /* one byte over */
	put_file("edge", big, WH_MAX_SMALL_FILE);       /* at the limit */
	get_small(paths, NULL, n, ents);
	assert_int_equal(ents[0].status, WH_SMALL_DATA);
	assert_true(ents[0].version.size == 11 &&
		    !memcmp(ents[0].data, "hello world", 11));
	wh_blake3("hello world", 11, h);
	assert_memory_equal(ents[0].hash, h, WH_HASH_LEN);
	snprintf(p, sizeof(p), "%s/hello", root);
	assert_int_equal(stat(p, &st), 0);
	assert_true(ents[0].version.mtime.sec == st.st_mtim.tv_sec &&
		    ents[0].version.mtime.nsec ==
			    (uint32_t)st.st_mtim.tv_nsec);
	/* an empty file */
	assert_true(ents[1].status == WH_SMALL_DATA &&
		    ents[1].version.size == 0);
	/* vanished, wrong types, special files, symlinks: per-file errors,
	 * never the bytes of anything else */
	assert_true(ents[2].status == WH_SMALL_ERROR && ents[2].err == ENOENT);
	assert_true(ents[3].status == WH_SMALL_ERROR && ents[3].err == EISDIR);
	for (int i = 4; i <= 6; i++)
		assert_true(ents[i].status == WH_SMALL_ERROR &&
			    ents[i].err == ENOENT);
	assert_true(ents[7].status == WH_SMALL_ERROR && ents[7].err == EINVAL);
	assert_true(ents[8].status == WH_SMALL_ERROR && ents[8].err == ELOOP);
	assert_true(ents[9].status == WH_SMALL_ERROR && ents[9].err == ELOOP);
	/* over the limit (it grew since it was listed) */
	assert_true(ents[10].status == WH_SMALL_ERROR && ents[10].err == EFBIG);
	assert_true(ents[11].status == WH_SMALL_DATA &&
		    ents[11].version.size == WH_MAX_SMALL_FILE &&
		    !memcmp(ents[11].data, big, WH_MAX_SMALL_FILE));
	/* the client's copy: SAME when its hash matches, else the data */
	memset(wrong, 0, sizeof(wrong));
	hashes[0] = h;
	hashes[1] = wrong;
	get_small(paths, hashes, 2, ents);
	assert_true(ents[0].status == WH_SMALL_SAME && ents[0].data == NULL);
	assert_memory_equal(ents[0].hash, h, WH_HASH_LEN);
	assert_true(ents[1].status == WH_SMALL_DATA);
	/* 64 files of 256 KiB do not fit one reply: the rest get ENOBUFS */
	{
		const char *many[WH_MAX_SMALL_FILES];
		static struct wh_small_ent e64[WH_MAX_SMALL_FILES];
		size_t data = 0, nobufs = 0;

		for (int i = 0; i < WH_MAX_SMALL_FILES; i++)
			many[i] = "edge";
		get_small(many, NULL, WH_MAX_SMALL_FILES, e64);
		for (int i = 0; i < WH_MAX_SMALL_FILES; i++) {
			if (e64[i].status == WH_SMALL_DATA)
				data++;
			else if (e64[i].status == WH_SMALL_ERROR &&
				 e64[i].err == ENOBUFS)
				nobufs++;
		}
		assert_true(data >= 15 && data + nobufs == WH_MAX_SMALL_FILES);
		assert_true(resp.len <= WH_FRAME_HDR_LEN + WH_MAX_REPLY_FRAME);
	}
	/* an unsafe path anywhere refuses the whole request */
	{
		uint8_t e[64];
		size_t len = 0;

		len += (size_t)wh_small_req_encode("hello", 5, NULL, e, 64);
		len += (size_t)wh_small_req_encode("../secret", 9, NULL,
						   e + len, 64 - len);
		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_GET_SMALL;
		m.u.get_small.count = 2;
		m.u.get_small.entries = e;
		m.u.get_small.entries_len = len;
		assert_int_equal(serve(&m), 0);
		assert_true(reply.hdr.type == WH_MSG_ERROR &&
			    reply.u.error.err == EINVAL);
	}
	snprintf(p, sizeof(p), "%s/big", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/edge", root);
	unlink(p);
}

static void test_nothing_outside(void **state)
{
	(void)state;
	/* symlinks are never followed by the host */
	assert_int_equal(getattr("abs/passwd"), ELOOP);
	assert_int_equal(getattr("up/secret"), ELOOP);
	assert_int_equal(readfile("uplink", 0, 100), EINVAL);
	assert_int_equal(readfile("abs/passwd", 0, 100), ELOOP);
	/* the decoder refuses .. and absolute paths: EINVAL, connection ok */
	assert_int_equal(getattr("../secret"), EINVAL);
	assert_int_equal(getattr("/etc/passwd"), EINVAL);
	assert_int_equal(getattr("dir/../../secret"), EINVAL);
}

static void test_special_files(void **state)
{
	struct wh_msg m;
	struct wh_dirent de;
	size_t pos = 0;

	(void)state;
	assert_int_equal(getattr("fifo"), ENOENT);
	assert_int_equal(getattr("sock"), ENOENT);
	assert_int_equal(getattr("null"), ENOENT);
	/* reading a fifo must not block, and gives nothing */
	assert_int_equal(readfile("fifo", 0, 10), ENOENT);
	assert_int_equal(readfile("null", 0, 10), ENOENT);
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READDIR;
	m.u.readdir.path.p = "";
	m.u.readdir.max_entries = 100;
	assert_int_equal(serve(&m), 0);
	assert_int_equal(reply.hdr.type, WH_MSG_READDIR_REPLY);
	assert_true(reply.u.readdir_reply.eof);
	while (wh_dirent_next(&reply.u.readdir_reply, &pos, &de) == 1) {
		assert_false(de.name.len == 4 && !memcmp(de.name.p, "fifo", 4));
		assert_false(de.name.len == 4 && !memcmp(de.name.p, "sock", 4));
		assert_false(de.name.len == 4 && !memcmp(de.name.p, "null", 4));
		assert_false(de.name.len == 1 && de.name.p[0] == '.');
	}
	assert_int_equal(reply.u.readdir_reply.count, 6); /* hello dir many abs up uplink */
}

static void test_readdir_paging(void **state)
{
	static bool seen[2000];
	uint64_t cookie = 0;
	int total = 0, pages = 0;

	(void)state;
	memset(seen, 0, sizeof(seen));
	for (;;) {
		struct wh_msg m;
		struct wh_dirent de;
		size_t pos = 0;
		bool eof;

		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_READDIR;
		m.u.readdir.path.p = "many";
		m.u.readdir.path.len = 4;
		m.u.readdir.cookie = cookie;
		m.u.readdir.max_entries = 100;
		assert_int_equal(serve(&m), 0);
		assert_int_equal(reply.hdr.type, WH_MSG_READDIR_REPLY);
		assert_true(reply.u.readdir_reply.count <= 100);
		while (wh_dirent_next(&reply.u.readdir_reply, &pos, &de) == 1) {
			int i = atoi(de.name.p + 1);

			assert_false(seen[i]);
			seen[i] = true;
			total++;
		}
		eof = reply.u.readdir_reply.eof;
		cookie = reply.u.readdir_reply.next_cookie;
		pages++;
		if (eof)
			break;
		assert_true(pages < 100);
	}
	assert_int_equal(total, 2000);
}

static void test_read_edges(void **state)
{
	(void)state;
	assert_int_equal(readfile("hello", 0, 5), 0);
	assert_int_equal(reply.u.read_reply.data_len, 5);
	assert_memory_equal(reply.u.read_reply.data, "hello", 5);
	assert_false(reply.u.read_reply.eof);
	assert_int_equal(readfile("hello", 6, 100), 0); /* across EOF */
	assert_int_equal(reply.u.read_reply.data_len, 5);
	assert_memory_equal(reply.u.read_reply.data, "world", 5);
	assert_true(reply.u.read_reply.eof);
	assert_int_equal(reply.u.read_reply.version.size, 11);
	assert_int_equal(readfile("hello", 11, 10), 0); /* at EOF */
	assert_int_equal(reply.u.read_reply.data_len, 0);
	assert_true(reply.u.read_reply.eof);
	assert_int_equal(readfile("hello", 1ULL << 40, 10), 0); /* past */
	assert_int_equal(reply.u.read_reply.data_len, 0);
	assert_int_equal(readfile("hello", 0, 0), 0);
	assert_int_equal(reply.u.read_reply.data_len, 0);
	assert_int_equal(readfile("hello", 0, WH_MAX_READ), 0);
	assert_int_equal(reply.u.read_reply.data_len, 11);
	assert_int_equal(readfile("dir", 0, 10), EISDIR);
}

static void test_readlink_statfs(void **state)
{
	struct wh_msg m;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READLINK;
	m.u.path.path.p = "uplink";
	m.u.path.path.len = 6;
	assert_int_equal(serve(&m), 0);
	assert_int_equal(reply.hdr.type, WH_MSG_READLINK_REPLY);
	assert_int_equal(reply.u.readlink_reply.target.len, 9);
	assert_memory_equal(reply.u.readlink_reply.target.p, "../secret", 9);
	m.u.path.path.p = "hello";
	m.u.path.path.len = 5;
	assert_int_equal(serve(&m), 0);
	assert_int_equal(reply.u.error.err, EINVAL);
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_STATFS;
	assert_int_equal(serve(&m), 0);
	assert_int_equal(reply.hdr.type, WH_MSG_STATFS_REPLY);
	assert_true(reply.u.statfs_reply.blocks > 0);
}

static void test_malformed(void **state)
{
	uint8_t req[64] = { 0, 0, 0, 100, 0, WH_MSG_GETATTR, 0, 0, 0, 0, 0, 9 };
	struct wh_msg m;
	ssize_t n;

	(void)state;
	/* truncated: announces 100 bytes, has 4 */
	wh_buf_reset(&resp);
	assert_int_equal(wh_share_serve(share, req, 16, &resp), WH_ERR_PROTO);
	assert_int_equal(wh_msg_decode(resp.data, resp.len, WH_MAX_REPLY_FRAME,
				       &reply), 0);
	assert_int_equal(reply.u.error.err, EPROTO);
	assert_int_equal(reply.hdr.req_id, 9);
	/* a reply type sent as a request */
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_AUTH_OK;
	n = wh_msg_encode(&m, req, sizeof(req));
	wh_buf_reset(&resp);
	assert_int_equal(wh_share_serve(share, req, (size_t)n, &resp),
			 WH_ERR_PROTO);
	/* garbage */
	memset(req, 0xee, sizeof(req));
	wh_buf_reset(&resp);
	assert_int_equal(wh_share_serve(share, req, sizeof(req), &resp),
			 WH_ERR_PROTO);
}

struct seen {
	char items[64][300];
	int n;
};

static void on_change(void *ud, const char *dir, size_t dlen, const char *name,
		      size_t nlen)
{
	struct seen *s = ud;

	if (s->n < 64)
		snprintf(s->items[s->n++], 300, "%.*s|%.*s", (int)dlen, dir,
			 (int)nlen, name);
}

static bool wait_change(struct seen *s, const char *want)
{
	struct pollfd pfd = { wh_share_watch_fd(share), POLLIN, 0 };

	for (int tries = 0; tries < 20; tries++) {
		for (int i = 0; i < s->n; i++)
			if (!strcmp(s->items[i], want))
				return true;
		if (poll(&pfd, 1, 100) > 0)
			wh_share_watch_drain(share, on_change, s);
	}
	return false;
}

static void test_watch(void **state)
{
	struct seen s;
	struct wh_msg m;
	char a[1024], b[1024];

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_true(wh_share_watch_fd(share) >= 0);
	wh_share_watch_drain(share, on_change, &s);
	memset(&s, 0, sizeof(s));
	/* the root is watched from the start */
	put_file("new-in-root", "x", 1);
	assert_true(wait_change(&s, "|new-in-root"));
	/* a directory is watched once a client has seen it */
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_LOOKUP;
	m.u.lookup.name.p = "dir";
	m.u.lookup.name.len = 3;
	assert_int_equal(serve(&m), 0);
	put_file("dir/inner", "y", 1);
	assert_true(wait_change(&s, "dir|inner"));
	snprintf(a, sizeof(a), "%s/dir/inner", root);
	snprintf(b, sizeof(b), "%s/dir/renamed", root);
	assert_int_equal(rename(a, b), 0);
	assert_true(wait_change(&s, "dir|inner"));
	assert_true(wait_change(&s, "dir|renamed"));
	assert_int_equal(unlink(b), 0);
	memset(&s, 0, sizeof(s));
	assert_true(wait_change(&s, "dir|renamed"));
}

/* refuse_openat2 - openat2 fails with EPERM in this process from now on
 * (threads started later inherit the filter) */
static void refuse_openat2(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
		perror("seccomp");
		exit(1);
	}
	if (syscall(SYS_openat2, AT_FDCWD, ".", NULL, 0) != -1 ||
	    errno != EPERM) {
		fprintf(stderr, "the seccomp filter does not refuse openat2\n");
		exit(1);
	}
}

/* A small file whose hash the manifest cache knows for its version is
 * served with that hash, not hashed again; a new version is hashed. */
static void test_get_small_known_hash(void **state)
{
	static const char *const paths[] = { "aged" };
	struct wh_small_ent ents[1];
	struct wh_mcache *mc;
	unsigned long hits, hits2, misses;
	uint8_t h[WH_HASH_LEN];

	(void)state;
	assert_int_equal(wh_mcache_open(NULL, &mc), 0);
	wh_share_set_mcache(share, mc);
	put_file("aged", "old bytes", 9);
	usleep(1100 * 1000); /* a second old: sure of its identity */
	get_small(paths, NULL, 1, ents);
	wh_blake3("old bytes", 9, h);
	assert_true(ents[0].status == WH_SMALL_DATA &&
		    !memcmp(ents[0].data, "old bytes", 9));
	assert_memory_equal(ents[0].hash, h, WH_HASH_LEN);
	wh_mcache_hash_stats(mc, &hits, &misses);
	get_small(paths, NULL, 1, ents);
	wh_mcache_hash_stats(mc, &hits2, &misses);
	assert_int_equal(hits2, hits + 1); /* from the cache */
	assert_true(ents[0].status == WH_SMALL_DATA &&
		    !memcmp(ents[0].data, "old bytes", 9));
	assert_memory_equal(ents[0].hash, h, WH_HASH_LEN);
	/* rewritten, same size: its own hash, never the old one */
	put_file("aged", "new bytes", 9);
	get_small(paths, NULL, 1, ents);
	wh_blake3("new bytes", 9, h);
	assert_true(ents[0].status == WH_SMALL_DATA &&
		    !memcmp(ents[0].data, "new bytes", 9));
	assert_memory_equal(ents[0].hash, h, WH_HASH_LEN);
	wh_share_set_mcache(share, NULL);
	wh_mcache_close(mc);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_getattr),
		cmocka_unit_test(test_nothing_outside),
		cmocka_unit_test(test_special_files),
		cmocka_unit_test(test_readdir_paging),
		cmocka_unit_test(test_read_edges),
		cmocka_unit_test(test_readlink_statfs),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_streamed_manifest),
		cmocka_unit_test(test_deferred_manifest),
		cmocka_unit_test(test_deferred_past_the_queue),
		cmocka_unit_test(test_deferred_manifest_of_a_changing_file),
		cmocka_unit_test(test_hashers_take_clients_in_turn),
		cmocka_unit_test(test_get_small),
		cmocka_unit_test(test_get_small_known_hash),
	};

	if (argc > 1 && strcmp(argv[1], "--refuse-openat2") == 0)
		refuse_openat2();
	return cmocka_run_group_tests(tests, setup, teardown);
}
