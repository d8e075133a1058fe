/*
 * test_get.c - `wormhole get` (wh_get_run_rpc) from an in-process share,
 * through a host whose directory listings can be made to lie: a listing
 * that names one entry twice must fail the get with a clear message and
 * leave nothing under a final name, where the honest listing copies the
 * tree whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/wh_get.h"
#include "client/wh_rpc.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "host/wh_share.h"
#include "proto/wh_proto.h"
#include "store/wh_store.h"

static char dir[64], share_dir[80], cache_dir[80];

struct host {
	struct wh_share *share;
	bool twice; /* every listing names its first entry twice */
};

/* twice - |resp|, a READDIR_REPLY, with its first entry once more */
static void twice(struct wh_buf *resp)
{
	struct wh_msg r;
	struct wh_dirent de;
	uint8_t ents[64 * 1024];
	size_t pos = 0, len;
	ssize_t n;

	assert_int_equal(wh_msg_decode(resp->data, resp->len,
				       WH_MAX_REPLY_FRAME, &r),
			 0);
	if (r.hdr.type != WH_MSG_READDIR_REPLY || !r.u.readdir_reply.count)
		return;
	len = r.u.readdir_reply.entries_len;
	assert_true(len < sizeof(ents) / 2);
	memcpy(ents, r.u.readdir_reply.entries, len);
	assert_int_equal(wh_dirent_next(&r.u.readdir_reply, &pos, &de), 1);
	n = wh_dirent_encode(de.name.p, de.name.len, &de.attr, ents + len,
			     sizeof(ents) - len);
	assert_true(n > 0);
	r.u.readdir_reply.entries = ents;
	r.u.readdir_reply.entries_len = len + (size_t)n;
	r.u.readdir_reply.count++;
	wh_buf_reset(resp);
	assert_int_equal(wh_msg_append(resp, &r), 0);
}

static int call(void *ctx, const uint8_t *req, size_t len,
		struct wh_buf *resp, int timeout_ms)
{
	struct host *h = ctx;
	int rv;

	(void)timeout_ms;
	wh_buf_reset(resp);
	rv = wh_share_serve(h->share, req, len, resp);
	if (rv == 0 && h->twice)
		twice(resp);
	return rv;
}

static const struct wh_rpc_ops ops = { .call = call };

static uint64_t caps(void *ctx)
{
	(void)ctx;
	return WH_CAP_READDIRPLUS | WH_CAP_CHUNKS | WH_CAP_MSTREAM |
	       WH_CAP_SMALL;
}

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void put(const char *rel, size_t n)
{
	char p[256];
	int fd;
	char *b = malloc(n);

	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (char)(i * 31 + n);
	snprintf(p, sizeof(p), "%s/%s", share_dir, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	close(fd);
	free(b);
}

static int setup(void **state)
{
	char p[256];

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/wh_test_get.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(share_dir, sizeof(share_dir), "%s/share", dir);
	snprintf(cache_dir, sizeof(cache_dir), "%s/cache", dir);
	assert_int_equal(mkdir(share_dir, 0755), 0);
	snprintf(p, sizeof(p), "%s/d", share_dir);
	assert_int_equal(mkdir(p, 0755), 0);
	put("d/a", 1000);
	put("d/b", 3000);
	put("d/c", 300 * 1024); /* by chunks, not whole */
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* get - "d" from the share into |out|; returns wh_get_run_rpc's result */
static int get(bool lie, const char *out, char *err, size_t errlen)
{
	struct host h = { .twice = lie };
	struct wh_rpc rpc = { &ops, &h };
	struct wh_store *store;
	struct wh_get_opts o = {
		.remote = "d", .local = out, .parallel = 8,
		.timeout_ms = 10000,
	};
	struct wh_get_stats st;
	int rv;

	assert_int_equal(wh_share_open(share_dir, &h.share), 0);
	assert_int_equal(wh_store_open(cache_dir, 64u << 20, &store), 0);
	rv = wh_get_run_rpc(&rpc, caps, NULL, store, &o, &st, err, errlen);
	wh_store_close(store);
	wh_share_close(h.share);
	return rv;
}

static bool exists(const char *out, const char *name)
{
	char p[256];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", out, name);
	return lstat(p, &st) == 0;
}

static void test_honest_listing(void **state)
{
	char out[128], err[256];

	(void)state;
	snprintf(out, sizeof(out), "%s/honest", dir);
	assert_int_equal(get(false, out, err, sizeof(err)), 0);
	assert_true(exists(out, "a") && exists(out, "b") && exists(out, "c"));
}

static void test_name_listed_twice(void **state)
{
	char out[128], err[256];
	DIR *d;
	struct dirent *e;

	(void)state;
	snprintf(out, sizeof(out), "%s/twice", dir);
	assert_true(get(true, out, err, sizeof(err)) < 0);
	/* whichever entry the share lists first */
	assert_non_null(strstr(err, "the host listed 'd/"));
	assert_non_null(strstr(err, "' twice"));
	/* nothing was written: no file, no partial file */
	d = opendir(out);
	if (d) {
		while ((e = readdir(d)))
			assert_true(!strcmp(e->d_name, ".") ||
				    !strcmp(e->d_name, ".."));
		closedir(d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_honest_listing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_name_listed_twice, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
