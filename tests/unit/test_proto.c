/*
 * test_proto.c - wire format: every message round-trips, every truncation
 * and every bad length is refused, and path rules hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "common/wh_err.h"
#include "proto/wh_proto.h"

static uint8_t buf[WH_FRAME_HDR_LEN + WH_MAX_REPLY_FRAME];

static struct wh_attr sample_attr(uint64_t ino)
{
	struct wh_attr a = {
		.ino = ino, .mode = 0100444, .nlink = 2, .uid = 1000,
		.gid = 100, .size = 1ULL << 40, .blocks = 8, .blksize = 4096,
		.atime = { 1700000000, 1 }, .mtime = { -5, 999999999 },
		.ctime = { 0, 0 },
	};

	return a;
}

static bool ts_eq(struct wh_timespec x, struct wh_timespec y)
{
	return x.sec == y.sec && x.nsec == y.nsec;
}

/* field by field: the structs have padding */
static bool attr_eq(const struct wh_attr *x, const struct wh_attr *y)
{
	return x->ino == y->ino && x->mode == y->mode && x->nlink == y->nlink &&
	       x->uid == y->uid && x->gid == y->gid && x->size == y->size &&
	       x->blocks == y->blocks && x->blksize == y->blksize &&
	       ts_eq(x->atime, y->atime) && ts_eq(x->mtime, y->mtime) &&
	       ts_eq(x->ctime, y->ctime);
}

static ssize_t encode(struct wh_msg *m)
{
	ssize_t n = wh_msg_encode(m, buf, sizeof(buf));

	assert_true(n >= WH_FRAME_HDR_LEN);
	return n;
}

/* every strict prefix of a valid frame must be refused cleanly */
static void check_truncations(size_t n, size_t max)
{
	struct wh_msg m;

	for (size_t i = 0; i < n; i++) {
		int rv = wh_msg_decode(buf, i, max, &m);

		assert_true(rv == WH_ERR_SHORT || rv == WH_ERR_PROTO);
	}
}

static void test_control_roundtrip(void **state)
{
	struct wh_msg m, d;
	ssize_t n;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_HELLO;
	m.hdr.req_id = 9;
	m.u.hello.min_version = 1;
	m.u.hello.max_version = 3;
	m.u.hello.caps = 0x8000000000000003ULL;
	memset(m.u.hello.pake_msg, 0xab, WH_PAKE_MSG_LEN);
	n = encode(&m);
	assert_int_equal(n, WH_FRAME_HDR_LEN + 44);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, 1024, &d), 0);
	assert_int_equal(d.hdr.req_id, 9);
	assert_int_equal(d.u.hello.max_version, 3);
	assert_true(d.u.hello.caps == m.u.hello.caps);
	assert_memory_equal(d.u.hello.pake_msg, m.u.hello.pake_msg, 32);
	check_truncations((size_t)n, 1024);
	/* min > max is nonsense */
	m.u.hello.min_version = 4;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, 1024, &d), WH_ERR_PROTO);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_HELLO_ACK;
	m.u.hello_ack.version = 1;
	m.u.hello_ack.caps = 3;
	memset(m.u.hello_ack.confirm, 7, 32);
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, 1024, &d), 0);
	assert_memory_equal(d.u.hello_ack.confirm, m.u.hello_ack.confirm, 32);
	check_truncations((size_t)n, 1024);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_AUTH_OK;
	n = encode(&m);
	assert_int_equal(n, WH_FRAME_HDR_LEN);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, 1024, &d), 0);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_INVAL;
	m.u.inval.dir.p = "a/b";
	m.u.inval.dir.len = 3;
	m.u.inval.name.p = "c d";
	m.u.inval.name.len = 3;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, 1024, &d), 0);
	assert_int_equal(d.u.inval.dir.len, 3);
	assert_memory_equal(d.u.inval.name.p, "c d", 3);
	check_truncations((size_t)n, 1024);
	m.u.inval.name.p = "..";
	m.u.inval.name.len = 2;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, 1024, &d), WH_ERR_PATH);
}

static void test_request_roundtrip(void **state)
{
	struct wh_msg m, d;
	ssize_t n;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READ;
	m.hdr.req_id = 77;
	m.u.read.path.p = "dir/file";
	m.u.read.path.len = 8;
	m.u.read.offset = 1ULL << 33;
	m.u.read.length = WH_MAX_READ;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d), 0);
	assert_true(d.u.read.offset == 1ULL << 33);
	assert_int_equal(d.u.read.length, WH_MAX_READ);
	check_truncations((size_t)n, WH_MAX_REQ_FRAME);
	/* a length over the limit: refused both ways */
	m.u.read.length = WH_MAX_READ + 1;
	assert_int_equal(wh_msg_encode(&m, buf, sizeof(buf)), WH_ERR_TOOBIG);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_LOOKUP;
	m.u.lookup.dir.p = "";
	m.u.lookup.name.p = "x";
	m.u.lookup.name.len = 1;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d), 0);
	m.u.lookup.name.len = 0; /* LOOKUP needs a name */
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d),
			 WH_ERR_PATH);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READDIR;
	m.u.readdir.path.p = "a";
	m.u.readdir.path.len = 1;
	m.u.readdir.cookie = 12345;
	m.u.readdir.max_entries = 0;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d),
			 WH_ERR_PROTO);
	m.u.readdir.max_entries = WH_MAX_READDIR_ENTRIES;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d), 0);
	assert_true(d.u.readdir.cookie == 12345);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GETATTR;
	m.u.path.path.p = "../etc";
	m.u.path.path.len = 6;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d),
			 WH_ERR_PATH);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_STATFS;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d), 0);
}

static void test_reply_roundtrip(void **state)
{
	uint8_t ents[4096];
	struct wh_attr a = sample_attr(5), b = sample_attr(6);
	struct wh_msg m, d;
	struct wh_dirent de;
	size_t pos = 0, elen = 0;
	ssize_t n;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GETATTR_REPLY;
	m.u.attr.attr = a;
	n = encode(&m);
	assert_int_equal(n, WH_FRAME_HDR_LEN + WH_ATTR_WIRE_LEN);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d), 0);
	assert_true(attr_eq(&d.u.attr.attr, &a));
	check_truncations((size_t)n, WH_MAX_REPLY_FRAME);
	buf[WH_FRAME_HDR_LEN + 56 + 8] = 0xff; /* atime nsec >= 1e9 */
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 WH_ERR_PROTO);

	n = wh_dirent_encode("first", 5, &a, ents, sizeof(ents));
	assert_true(n > 0);
	elen += (size_t)n;
	n = wh_dirent_encode("second", 6, &b, ents + elen, sizeof(ents) - elen);
	assert_true(n > 0);
	elen += (size_t)n;
	assert_int_equal(wh_dirent_encode("..", 2, &a, ents, sizeof(ents)),
			 WH_ERR_TOOBIG);
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READDIR_REPLY;
	m.u.readdir_reply.next_cookie = 99;
	m.u.readdir_reply.eof = true;
	m.u.readdir_reply.count = 2;
	m.u.readdir_reply.entries = ents;
	m.u.readdir_reply.entries_len = elen;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d), 0);
	assert_int_equal(wh_dirent_next(&d.u.readdir_reply, &pos, &de), 1);
	assert_memory_equal(de.name.p, "first", 5);
	assert_int_equal(wh_dirent_next(&d.u.readdir_reply, &pos, &de), 1);
	assert_int_equal(de.attr.ino, 6);
	assert_int_equal(wh_dirent_next(&d.u.readdir_reply, &pos, &de), 0);
	check_truncations((size_t)n, WH_MAX_REPLY_FRAME);
	/* a count that does not match the entries */
	m.u.readdir_reply.count = 3;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 WH_ERR_PROTO);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_ERROR;
	m.u.error.err = 2;
	m.u.error.message.p = "gone";
	m.u.error.message.len = 4;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d), 0);
	assert_int_equal(d.u.error.err, 2);
	m.u.error.err = 0;
	assert_int_equal(wh_msg_encode(&m, buf, sizeof(buf)), WH_ERR_PROTO);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READLINK_REPLY;
	m.u.readlink_reply.target.p = "/etc/passwd";
	m.u.readlink_reply.target.len = 11;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d), 0);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_STATFS_REPLY;
	m.u.statfs_reply.blocks = 123;
	m.u.statfs_reply.namemax = 255;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d), 0);
	assert_true(d.u.statfs_reply.blocks == 123);
}

static void test_data_plane_roundtrip(void **state)
{
	uint8_t ents[2 * WH_MANIFEST_ENTRY_LEN], h[32];
	struct wh_msg m, d;
	uint64_t off;
	uint32_t len;
	ssize_t n;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST;
	m.u.manifest.path.p = "a/b";
	m.u.manifest.path.len = 3;
	m.u.manifest.start = 7;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d), 0);
	assert_int_equal(d.u.manifest.start, 7);
	check_truncations((size_t)n, WH_MAX_REQ_FRAME);

	memset(h, 0x5a, sizeof(h));
	wh_manifest_entry_encode(0, 100, h, ents);
	wh_manifest_entry_encode(100, 50, h, ents + WH_MANIFEST_ENTRY_LEN);
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST_REPLY;
	m.u.manifest_reply.version.size = 150;
	m.u.manifest_reply.total = 2;
	m.u.manifest_reply.count = 2;
	m.u.manifest_reply.entries = ents;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d), 0);
	wh_manifest_entry(&d.u.manifest_reply, 1, &off, &len, h);
	assert_true(off == 100 && len == 50 && h[31] == 0x5a);
	check_truncations((size_t)n, WH_MAX_REPLY_FRAME);
	m.u.manifest_reply.total = 1; /* start + count > total */
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 WH_ERR_PROTO);

	/* streamed manifests */
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST_STREAM;
	m.u.manifest_stream.path.p = "a/b";
	m.u.manifest_stream.path.len = 3;
	m.u.manifest_stream.start = 9;
	m.u.manifest_stream.wait_ms = 1500;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d), 0);
	assert_int_equal(d.hdr.type, WH_MSG_MANIFEST_STREAM);
	assert_int_equal(d.u.manifest_stream.start, 9);
	assert_int_equal(d.u.manifest_stream.wait_ms, 1500);
	assert_memory_equal(d.u.manifest_stream.path.p, "a/b", 3);
	check_truncations((size_t)n, WH_MAX_REQ_FRAME);
	m.u.manifest_stream.path.p = "../x";
	m.u.manifest_stream.path.len = 4;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d),
			 WH_ERR_PATH);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST_PART;
	m.u.manifest_part.version.size = 1ULL << 40; /* total still unknown */
	m.u.manifest_part.version.mtime.nsec = 5;
	m.u.manifest_part.done = false;
	m.u.manifest_part.known = 3;
	m.u.manifest_part.start = 1;
	m.u.manifest_part.count = 2;
	m.u.manifest_part.entries = ents;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d), 0);
	assert_false(d.u.manifest_part.done);
	assert_true(d.u.manifest_part.known == 3 &&
		    d.u.manifest_part.start == 1 &&
		    d.u.manifest_part.count == 2 &&
		    d.u.manifest_part.version.size == 1ULL << 40 &&
		    d.u.manifest_part.version.mtime.nsec == 5);
	wh_manifest_part_entry(&d.u.manifest_part, 1, &off, &len, h);
	assert_true(off == 100 && len == 50 && h[0] == 0x5a);
	check_truncations((size_t)n, WH_MAX_REPLY_FRAME);
	m.u.manifest_part.done = true;
	m.u.manifest_part.count = 0; /* a finished manifest, nothing new */
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d), 0);
	assert_true(d.u.manifest_part.done && d.u.manifest_part.count == 0);
	m.u.manifest_part.count = 2;
	m.u.manifest_part.known = 2; /* start + count > known */
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 WH_ERR_PROTO);
	m.u.manifest_part.known = 3;
	n = encode(&m);
	buf[WH_FRAME_HDR_LEN + WH_VERSION_WIRE_LEN] = 2; /* done is a bool */
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 WH_ERR_PROTO);
	buf[WH_FRAME_HDR_LEN + WH_VERSION_WIRE_LEN] = 1;
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d), 0);
	m.u.manifest_part.count = WH_MAX_MANIFEST_ENTRIES + 1;
	assert_true(wh_msg_encode(&m, buf, sizeof(buf)) < 0);

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_CHUNK;
	m.u.chunk.path.p = "f";
	m.u.chunk.path.len = 1;
	m.u.chunk.offset = 1ULL << 35;
	m.u.chunk.length = WH_MAX_CHUNK;
	memset(m.u.chunk.hash, 3, 32);
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d), 0);
	assert_true(d.u.chunk.offset == 1ULL << 35 && d.u.chunk.hash[0] == 3);
	m.u.chunk.length = 0;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d),
			 WH_ERR_TOOBIG);

	n = wh_chunk_reply_hdr_encode(9, h, 4, buf, sizeof(buf));
	assert_int_equal(n, WH_CHUNK_REPLY_HDR_LEN);
	memcpy(buf + n, "data", 4);
	assert_int_equal(wh_msg_decode(buf, (size_t)n + 4, WH_MAX_REPLY_FRAME,
				       &d), 0);
	assert_int_equal(d.hdr.type, WH_MSG_CHUNK_REPLY);
	assert_int_equal(d.u.chunk_reply.data_len, 4);
	assert_memory_equal(d.u.chunk_reply.data, "data", 4);
}

static void test_get_small(void **state)
{
	uint8_t ents[1024], h[32];
	struct wh_version v = { 5, { 1, 2 }, { 3, 4 } };
	struct wh_small_req q;
	struct wh_small_ent e;
	struct wh_msg m, d;
	size_t elen = 0, pos = 0;
	ssize_t n;

	(void)state;
	memset(h, 0x33, sizeof(h));
	n = wh_small_req_encode("a/b", 3, NULL, ents, sizeof(ents));
	assert_int_equal(n, 2 + 3 + 1);
	elen += (size_t)n;
	n = wh_small_req_encode("c", 1, h, ents + elen, sizeof(ents) - elen);
	assert_int_equal(n, 2 + 1 + 1 + 32);
	elen += (size_t)n;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GET_SMALL;
	m.u.get_small.count = 2;
	m.u.get_small.entries = ents;
	m.u.get_small.entries_len = elen;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d), 0);
	assert_int_equal(d.u.get_small.count, 2);
	assert_int_equal(wh_small_req_next(&d.u.get_small, &pos, &q), 1);
	assert_true(q.path.len == 3 && !memcmp(q.path.p, "a/b", 3) && !q.have);
	assert_int_equal(wh_small_req_next(&d.u.get_small, &pos, &q), 1);
	assert_true(q.have && q.hash[0] == 0x33 && q.path.len == 1);
	assert_int_equal(wh_small_req_next(&d.u.get_small, &pos, &q), 0);
	check_truncations((size_t)n, WH_MAX_REQ_FRAME);
	/* the count must match the entries, both ways */
	m.u.get_small.count = 3;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d),
			 WH_ERR_PROTO);
	m.u.get_small.count = 1;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d),
			 WH_ERR_PROTO);
	/* an unsafe path anywhere: the request's path error */
	elen = (size_t)wh_small_req_encode("ok", 2, NULL, ents, sizeof(ents));
	elen += (size_t)wh_small_req_encode("../x", 4, NULL, ents + elen,
					    sizeof(ents) - elen);
	m.u.get_small.count = 2;
	m.u.get_small.entries_len = elen;
	n = encode(&m);
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REQ_FRAME, &d),
			 WH_ERR_PATH);
	/* no files, or too many */
	m.u.get_small.count = 0;
	assert_true(wh_msg_encode(&m, buf, sizeof(buf)) < 0);
	m.u.get_small.count = WH_MAX_SMALL_FILES + 1;
	assert_true(wh_msg_encode(&m, buf, sizeof(buf)) < 0);

	/* the reply: DATA, SAME, ERROR */
	elen = 0;
	n = wh_small_reply_ent_encode(WH_SMALL_DATA, &v, h, 0, ents,
				      sizeof(ents));
	assert_int_equal(n, WH_SMALL_ENT_MAX_HDR);
	memcpy(ents + n, "hello", 5);
	elen = (size_t)n + 5;
	n = wh_small_reply_ent_encode(WH_SMALL_SAME, &v, h, 0, ents + elen,
				      sizeof(ents) - elen);
	elen += (size_t)n;
	n = wh_small_reply_ent_encode(WH_SMALL_ERROR, NULL, NULL, ENOENT,
				      ents + elen, sizeof(ents) - elen);
	assert_int_equal(n, 5);
	elen += (size_t)n;
	n = wh_small_reply_hdr_encode(9, 3, elen, buf, sizeof(buf));
	assert_int_equal(n, WH_SMALL_REPLY_HDR_LEN);
	memcpy(buf + n, ents, elen);
	n += (ssize_t)elen;
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 0);
	assert_true(d.hdr.type == WH_MSG_GET_SMALL_REPLY && d.hdr.req_id == 9 &&
		    d.u.get_small_reply.count == 3);
	pos = 0;
	assert_int_equal(wh_small_next(&d.u.get_small_reply, &pos, &e), 1);
	assert_true(e.status == WH_SMALL_DATA && e.version.size == 5 &&
		    e.version.ctime.nsec == 4 && e.hash[0] == 0x33 &&
		    !memcmp(e.data, "hello", 5));
	assert_int_equal(wh_small_next(&d.u.get_small_reply, &pos, &e), 1);
	assert_true(e.status == WH_SMALL_SAME && e.data == NULL);
	assert_int_equal(wh_small_next(&d.u.get_small_reply, &pos, &e), 1);
	assert_true(e.status == WH_SMALL_ERROR && e.err == ENOENT);
	assert_int_equal(wh_small_next(&d.u.get_small_reply, &pos, &e), 0);
	check_truncations((size_t)n, WH_MAX_REPLY_FRAME);
	/* a DATA length other than the version's size */
	buf[WH_SMALL_REPLY_HDR_LEN + 1] ^= 1; /* version.size high byte */
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 WH_ERR_PROTO);
	buf[WH_SMALL_REPLY_HDR_LEN + 1] ^= 1;
	/* an unknown status */
	buf[WH_SMALL_REPLY_HDR_LEN] = 7;
	assert_int_equal(wh_msg_decode(buf, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 WH_ERR_PROTO);
	/* DATA over the limit is refused by the encoder */
	v.size = WH_MAX_SMALL_FILE + 1;
	assert_true(wh_small_reply_ent_encode(WH_SMALL_DATA, &v, h, 0, ents,
					      sizeof(ents)) < 0);
}

static void test_read_reply_header(void **state)
{
	struct wh_version v = { 10, { 1, 2 }, { 3, 4 } };
	struct wh_msg d;
	ssize_t n;

	(void)state;
	n = wh_read_reply_hdr_encode(5, &v, true, 10, buf, sizeof(buf));
	assert_int_equal(n, WH_READ_REPLY_HDR_LEN);
	memcpy(buf + n, "0123456789", 10);
	assert_int_equal(wh_msg_decode(buf, (size_t)n + 10, WH_MAX_REPLY_FRAME,
				       &d), 0);
	assert_int_equal(d.hdr.type, WH_MSG_READ_REPLY);
	assert_int_equal(d.u.read_reply.data_len, 10);
	assert_true(d.u.read_reply.eof);
	assert_memory_equal(d.u.read_reply.data, "0123456789", 10);
	assert_true(d.u.read_reply.version.size == 10);
	/* trailing garbage after the frame */
	assert_int_equal(wh_msg_decode(buf, (size_t)n + 11, WH_MAX_REPLY_FRAME,
				       &d), WH_ERR_PROTO);
}

static void test_header_limits(void **state)
{
	struct wh_frame_hdr h;
	uint8_t hdr[WH_FRAME_HDR_LEN] = { 0x04, 0, 0, 0, 0, WH_MSG_READ, 0, 0,
					  0, 0, 0, 1 };

	(void)state;
	assert_int_equal(wh_frame_hdr_decode(hdr, 11, WH_MAX_REQ_FRAME, &h),
			 WH_ERR_SHORT);
	assert_int_equal(wh_frame_hdr_decode(hdr, 12, WH_MAX_REQ_FRAME, &h),
			 WH_ERR_TOOBIG);
	hdr[0] = 0;
	hdr[5] = 200; /* unknown type */
	assert_int_equal(wh_frame_hdr_decode(hdr, 12, WH_MAX_REQ_FRAME, &h),
			 WH_ERR_PROTO);
	assert_string_equal(wh_msg_type_name(WH_MSG_READ), "READ");
	assert_string_equal(wh_msg_type_name(200), "UNKNOWN");
}

/* frame - a header of |type| announcing |length| bytes, then that many */
static size_t frame(uint8_t *f, uint16_t type, uint32_t length,
		    uint32_t req_id)
{
	f[0] = length >> 24;
	f[1] = length >> 16;
	f[2] = length >> 8;
	f[3] = length;
	f[4] = type >> 8;
	f[5] = type;
	f[6] = f[7] = 0;
	f[8] = req_id >> 24;
	f[9] = req_id >> 16;
	f[10] = req_id >> 8;
	f[11] = req_id;
	for (uint32_t i = 0; i < length; i++)
		f[WH_FRAME_HDR_LEN + i] = (uint8_t)(i * 7);
	return WH_FRAME_HDR_LEN + length;
}

/* gather - |n| bytes of |f| in pieces of |step|, the last with |fin|;
 * the first result that is not 0, or 0 */
static int gather(struct wh_buf *rx, const uint8_t *f, size_t n, size_t step,
		  bool fin, struct wh_frame_hdr *h, const char **why)
{
	size_t off = 0;
	int rv = 0;

	do {
		size_t k = n - off < step ? n - off : step;

		rv = wh_frame_gather(rx, f + off, k, fin && off + k == n, 64,
				     h, why);
		off += k;
	} while (rv == 0 && off < n);
	return rv;
}

static void test_frame_gather(void **state)
{
	static const size_t steps[] = { 1, 5, 12, 13, 1000 };
	uint8_t f[WH_FRAME_HDR_LEN + 100];
	struct wh_frame_hdr h;
	const char *why;
	struct wh_buf rx;
	size_t n;

	(void)state;
	n = frame(f, WH_MSG_READ, 40, 77);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		/* whole, in any pieces, with or without the FIN */
		for (int fin = 0; fin < 2; fin++) {
			wh_buf_init(&rx);
			assert_int_equal(gather(&rx, f, n, steps[i], fin, &h,
						&why), 1);
			assert_int_equal(rx.len, n);
			assert_memory_equal(rx.data, f, n);
			assert_int_equal(h.req_id, 77);
			assert_int_equal(h.length, 40);
			/* a FIN alone afterwards changes nothing; a byte
			 * more is refused */
			assert_int_equal(wh_frame_gather(&rx, NULL, 0, true,
							 64, &h, &why), 1);
			assert_int_equal(wh_frame_gather(&rx, f, 1, false, 64,
							 &h, &why),
					 WH_ERR_PROTO);
			assert_string_equal(why,
					    "trailing bytes after the frame");
			wh_buf_free(&rx);
		}
		/* cut short by the FIN, in the header or in the payload */
		wh_buf_init(&rx);
		assert_int_equal(gather(&rx, f, 7, steps[i], true, &h, &why),
				 WH_ERR_PROTO);
		assert_string_equal(why, "truncated frame");
		assert_int_equal(h.req_id, 0);
		wh_buf_free(&rx);
		wh_buf_init(&rx);
		assert_int_equal(gather(&rx, f, n - 1, steps[i], true, &h,
					&why), WH_ERR_PROTO);
		assert_string_equal(why, "truncated frame");
		assert_int_equal(h.req_id, 77);
		wh_buf_free(&rx);
		/* the next frame's bytes in the same stream */
		memcpy(f + n, f, 10);
		wh_buf_init(&rx);
		assert_int_equal(gather(&rx, f, n + 10, steps[i], false, &h,
					&why),
				 n % steps[i] == 0 ? 1 : WH_ERR_PROTO);
		wh_buf_free(&rx);
	}
	/* a header announcing more than the limit: refused at once */
	n = frame(f, WH_MSG_READ, 65, 9);
	wh_buf_init(&rx);
	assert_int_equal(wh_frame_gather(&rx, f, WH_FRAME_HDR_LEN, false, 64,
					 &h, &why), WH_ERR_TOOBIG);
	assert_int_equal(h.req_id, 9);
	wh_buf_free(&rx);
	/* more bytes than the limit in one piece, whatever they say */
	wh_buf_init(&rx);
	assert_int_equal(wh_frame_gather(&rx, f, WH_FRAME_HDR_LEN + 65, false,
					 64, &h, &why), WH_ERR_TOOBIG);
	assert_int_equal(rx.len, 0);
	wh_buf_free(&rx);
	/* an unknown type: refused, its req_id not trusted */
	n = frame(f, 200, 4, 9);
	wh_buf_init(&rx);
	assert_int_equal(gather(&rx, f, n, 3, false, &h, &why), WH_ERR_PROTO);
	assert_string_equal(why, "malformed frame header");
	assert_int_equal(h.req_id, 0);
	wh_buf_free(&rx);
	/* a stream that ends with nothing in it */
	wh_buf_init(&rx);
	assert_int_equal(wh_frame_gather(&rx, NULL, 0, true, 64, &h, &why),
			 WH_ERR_PROTO);
	wh_buf_free(&rx);
	/* an empty payload is a whole frame once its header is in */
	n = frame(f, WH_MSG_STATFS, 0, 3);
	wh_buf_init(&rx);
	assert_int_equal(gather(&rx, f, n, 1, false, &h, &why), 1);
	wh_buf_free(&rx);
}

static void test_paths(void **state)
{
	static const struct {
		const char *p;
		size_t len;
		bool ok;
	} cases[] = {
		{ "", 0, true },       { "a", 1, true },
		{ "a/b", 3, true },    { "a b/\xff\xfe", 6, true },
		{ "/a", 2, false },    { "a/", 2, false },
		{ "a//b", 4, false },  { ".", 1, false },
		{ "..", 2, false },    { "a/../b", 6, false },
		{ "a/./b", 5, false }, { "a\0b", 3, false },
		{ "...", 3, true },    { ".hidden", 7, true },
	};
	char longc[300], longp[WH_MAX_PATH + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(wh_path_valid(cases[i].p, cases[i].len),
				 cases[i].ok);
	memset(longc, 'x', sizeof(longc));
	assert_true(wh_path_valid(longc, 255));
	assert_false(wh_path_valid(longc, 256));
	assert_true(wh_name_valid(longc, 255));
	assert_false(wh_name_valid(longc, 256));
	assert_false(wh_name_valid("a/b", 3));
	/* total length limit: components of 100 bytes joined by '/' */
	for (size_t i = 0; i < sizeof(longp); i++)
		longp[i] = (i % 101 == 100) ? '/' : 'y';
	assert_true(wh_path_valid(longp, 4000));
	assert_false(wh_path_valid(longp, WH_MAX_PATH + 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control_roundtrip),
		cmocka_unit_test(test_request_roundtrip),
		cmocka_unit_test(test_reply_roundtrip),
		cmocka_unit_test(test_data_plane_roundtrip),
		cmocka_unit_test(test_get_small),
		cmocka_unit_test(test_read_reply_header),
		cmocka_unit_test(test_header_limits),
		cmocka_unit_test(test_frame_gather),
		cmocka_unit_test(test_paths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
