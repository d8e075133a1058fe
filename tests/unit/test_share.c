/*
 * test_share.c - the host's share: nothing outside the share is reachable,
 * symlinks are never followed, special files are invisible, listings page
 * without loss, reads honour every edge, and changes are reported.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/wh_buf.h"
#include "common/wh_err.h"
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
static int serve(struct wh_msg *m)
{
	uint8_t req[WH_FRAME_HDR_LEN + WH_MAX_REQ_FRAME];
	ssize_t n = wh_msg_encode(m, req, sizeof(req));
	int rv;

	assert_true(n > 0);
	wh_buf_reset(&resp);
	rv = wh_share_serve(share, req, (size_t)n, &resp);
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

int main(void)
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
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
