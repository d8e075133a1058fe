/*
 * test_zstd.c - the bounded zstd codec (src/chunk/wh_zstd.c), the wire
 * form of compressed replies (src/proto) and the host's policy
 * (src/host/wh_zhost.c): round trips, the length bound, corrupt input,
 * never expanding, skipped names, the link rate estimate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "chunk/wh_zstd.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "host/wh_zhost.h"
#include "proto/wh_proto.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)next();
}

/* text-like: words from a small vocabulary */
static void fill_text(uint8_t *p, size_t n)
{
	static const char *words[] = { "wormhole ", "chunk ", "stream ",
				       "host ", "client ", "manifest\n",
				       "the ", "of ", "verified " };
	size_t i = 0;

	while (i < n) {
		const char *w = words[next() % 9];
		size_t l = strlen(w);

		if (l > n - i)
			l = n - i;
		memcpy(p + i, w, l);
		i += l;
	}
}

static void test_round_trip(void **state)
{
	static const size_t sizes[] = { 2, 100, 4096, 65536, 1000003,
					WH_MAX_CHUNK };
	(void)state;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		uint8_t *src = malloc(n), *z = malloc(n), *back = malloc(n);
		ssize_t zl;

		assert_non_null(src);
		assert_non_null(z);
		assert_non_null(back);
		fill_text(src, n);
		for (int level = 1; level <= 6; level += 5) {
			zl = wh_zstd_compress(z, n, src, n, level);
			assert_true(zl >= 0 && (size_t)zl < n);
			if (n < 4096 && zl == 0)
				continue; /* too small to shrink: raw */
			assert_true(zl > 0);
			if (n >= 4096)
				assert_true((size_t)zl < n / 2);
			memset(back, 0, n);
			assert_int_equal(wh_zstd_decompress(back, n, z,
							    (size_t)zl), 0);
			assert_memory_equal(back, src, n);
		}
		free(src);
		free(z);
		free(back);
	}
}

static void test_never_expands(void **state)
{
	size_t n = 256 * 1024;
	uint8_t *src = malloc(n), *z = malloc(2 * n);

	(void)state;
	fill_random(src, n);
	/* random data: "not smaller" even with plenty of room */
	assert_int_equal(wh_zstd_compress(z, 2 * n, src, n, 3), 0);
	/* compressible data, but the room given is too small: raw */
	fill_text(src, n);
	assert_int_equal(wh_zstd_compress(z, 16, src, n, 1), 0);
	/* tiny inputs */
	assert_int_equal(wh_zstd_compress(z, 2 * n, src, 1, 1), 0);
	assert_int_equal(wh_zstd_compress(z, 2 * n, src, 0, 1), 0);
	free(src);
	free(z);
}

static void test_bound(void **state)
{
	size_t n = 1 << 20;
	uint8_t *src = calloc(1, n), *z = malloc(n), *out = malloc(n + 1);
	ssize_t zl;

	(void)state;
	/* 1 MiB of zeros: a few bytes of zstd (a decompression bomb, if the
	 * declared length were smaller) */
	zl = wh_zstd_compress(z, n, src, n, 3);
	assert_true(zl > 0 && zl < 1024);
	/* declared shorter than the frame's content: refused, and not a
	 * byte written past the declared length */
	memset(out, 0x5a, n + 1);
	assert_int_equal(wh_zstd_decompress(out, 4096, z, (size_t)zl),
			 WH_ERR_PROTO);
	for (size_t i = 4096; i < n + 1; i++)
		if (out[i] != 0x5a)
			fail_msg("byte %zu written past the bound", i);
	/* declared longer: refused too (the reply must be exact) */
	assert_int_equal(wh_zstd_decompress(out, n + 1, z, (size_t)zl),
			 WH_ERR_PROTO);
	/* exact: fine, and the context is usable after the failures */
	assert_int_equal(wh_zstd_decompress(out, n, z, (size_t)zl), 0);
	assert_memory_equal(out, src, n);
	free(src);
	free(z);
	free(out);
}

static void test_corrupt(void **state)
{
	size_t n = 200000;
	uint8_t *src = malloc(n), *z = malloc(n), *out = malloc(n);
	uint8_t *bad = malloc(n);
	ssize_t zl;
	int ok = 0;

	(void)state;
	fill_text(src, n);
	zl = wh_zstd_compress(z, n, src, n, 3);
	assert_true(zl > 0);
	/* empty, truncated, trailing garbage, not zstd at all */
	assert_int_equal(wh_zstd_decompress(out, n, z, 0), WH_ERR_PROTO);
	assert_int_equal(wh_zstd_decompress(out, n, z, (size_t)zl - 1),
			 WH_ERR_PROTO);
	memcpy(bad, z, (size_t)zl);
	bad[zl] = 0x42;
	assert_int_equal(wh_zstd_decompress(out, n, bad, (size_t)zl + 1),
			 WH_ERR_PROTO);
	fill_random(bad, 1000);
	assert_int_equal(wh_zstd_decompress(out, n, bad, 1000), WH_ERR_PROTO);
	/* flipped bytes: an error or wrong bytes (BLAKE3 catches those),
	 * never a crash or a write past the bound */
	for (int t = 0; t < 200; t++) {
		memcpy(bad, z, (size_t)zl);
		bad[next() % (uint64_t)zl] ^= (uint8_t)(1 + next() % 255);
		if (wh_zstd_decompress(out, n, bad, (size_t)zl) == 0)
			ok++;
	}
	assert_true(ok < 200);
	free(src);
	free(z);
	free(out);
	free(bad);
}

static void test_sample_and_names(void **state)
{
	size_t n = 1 << 20;
	uint8_t *p = malloc(n);

	(void)state;
	fill_random(p, n);
	assert_true(wh_zstd_sample_ratio(p, n, NULL) > 0.95);
	fill_text(p, n);
	assert_true(wh_zstd_sample_ratio(p, n, NULL) < 0.5);
	assert_true(wh_zstd_sample_ratio(p, 100, NULL) < 1.01);
	free(p);
	assert_true(wh_zstd_skip_name("a/b/movie.MP4", 13));
	assert_true(wh_zstd_skip_name("x.tar.zst", 9));
	assert_true(wh_zstd_skip_name("photo.jpg", 9));
	assert_true(wh_zstd_skip_name("archive.zip", 11));
	assert_false(wh_zstd_skip_name("notes.txt", 9));
	assert_false(wh_zstd_skip_name("zip", 3));
	assert_false(wh_zstd_skip_name("a.zip/readme", 12));
	assert_false(wh_zstd_skip_name("file.", 5));
	assert_false(wh_zstd_skip_name("", 0));
}

/* a CHUNK request and its raw reply, as the host builds them */
static void chunk_pair(const char *path, const uint8_t *data, uint32_t len,
		       struct wh_buf *req, struct wh_buf *resp)
{
	struct wh_msg m;

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_CHUNK;
	m.hdr.req_id = 7;
	m.u.chunk.path.p = path;
	m.u.chunk.path.len = (uint16_t)strlen(path);
	m.u.chunk.offset = 0;
	m.u.chunk.length = len;
	memset(m.u.chunk.hash, 0x33, 32);
	assert_int_equal(wh_msg_append(req, &m), 0);
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_CHUNK_REPLY;
	m.hdr.req_id = 7;
	memset(m.u.chunk_reply.hash, 0x33, 32);
	m.u.chunk_reply.data = data;
	m.u.chunk_reply.data_len = len;
	assert_int_equal(wh_msg_append(resp, &m), 0);
}

static void test_pack(void **state)
{
	uint32_t n = 1 << 20;
	uint8_t *p = malloc(n), *back = malloc(n);
	struct wh_zlink slow = { .rate = 12.5e6, .net_busy = 0.1 };
	struct wh_zlink fast = { .rate = 2e9, .net_busy = 0.1 };
	struct wh_zlink busy = { .rate = 12.5e6, .net_busy = 0.9 };
	struct wh_zlink held = { .rate = 12.5e6, .net_busy = 0.1, .hold = true };
	struct wh_zlink unknown = { 0 };
	struct wh_buf req, resp;
	struct wh_zhost *z;
	struct wh_msg r;
	size_t saved;

	(void)state;
	unsetenv("WORMHOLE_ZSTD");
	assert_int_equal(wh_zhost_new(&z), 0);
	assert_non_null(z);
	fill_text(p, n);

	/* text on a slow link: compressed, flagged, decodes to the chunk */
	wh_buf_init(&req);
	wh_buf_init(&resp);
	chunk_pair("docs/a.txt", p, n, &req, &resp);
	saved = wh_zhost_pack(z, req.data, req.len, &resp, &slow);
	assert_true(saved > n / 2);
	assert_int_equal(resp.data[7], WH_FLAG_ZSTD);
	assert_int_equal(wh_msg_decode(resp.data, resp.len, WH_MAX_REPLY_FRAME,
				       &r), 0);
	assert_true(r.u.chunk_reply.zstd);
	assert_int_equal(r.u.chunk_reply.raw_len, n);
	assert_int_equal(r.u.chunk_reply.data_len, n - saved);
	assert_int_equal(wh_zstd_decompress(back, n, r.u.chunk_reply.data,
					    r.u.chunk_reply.data_len), 0);
	assert_memory_equal(back, p, n);
	/* packing a packed reply again does nothing */
	assert_int_equal(wh_zhost_pack(z, req.data, req.len, &resp, &slow), 0);
	wh_buf_free(&req);
	wh_buf_free(&resp);

	/* the same text raw: a name of a compressed format, a fast link, a
	 * busy network thread, a link not measured yet */
	{
		const struct { const char *path; struct wh_zlink *l; } raw[] = {
			{ "v/movie.mkv", &slow }, { "a.txt", &fast },
			{ "a.txt", &busy }, { "a.txt", &unknown },
			{ "a.txt", &held },
		};

		for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
			size_t before;

			wh_buf_init(&req);
			wh_buf_init(&resp);
			chunk_pair(raw[i].path, p, n, &req, &resp);
			before = resp.len;
			assert_int_equal(wh_zhost_pack(z, req.data, req.len,
						       &resp, raw[i].l), 0);
			assert_int_equal(resp.len, before);
			assert_int_equal(resp.data[7], 0);
			wh_buf_free(&req);
			wh_buf_free(&resp);
		}
	}
	/* random data: raw, on any link */
	fill_random(p, n);
	wh_buf_init(&req);
	wh_buf_init(&resp);
	chunk_pair("r.bin", p, n, &req, &resp);
	assert_int_equal(wh_zhost_pack(z, req.data, req.len, &resp, &slow), 0);
	assert_int_equal(resp.len, WH_CHUNK_REPLY_HDR_LEN + n);
	wh_buf_free(&req);
	wh_buf_free(&resp);
	wh_zhost_del(z);

	/* disabled */
	setenv("WORMHOLE_ZSTD", "off", 1);
	assert_int_equal(wh_zhost_new(&z), 0);
	assert_null(z);
	assert_false(wh_zstd_enabled());
	/* forced level: compresses even on a fast link */
	setenv("WORMHOLE_ZSTD", "3", 1);
	assert_true(wh_zstd_enabled());
	assert_int_equal(wh_zhost_new(&z), 0);
	fill_text(p, n);
	wh_buf_init(&req);
	wh_buf_init(&resp);
	chunk_pair("a.txt", p, n, &req, &resp);
	assert_true(wh_zhost_pack(z, req.data, req.len, &resp, &fast) > 0);
	wh_buf_free(&req);
	wh_buf_free(&resp);
	wh_zhost_del(z);
	unsetenv("WORMHOLE_ZSTD");
	free(p);
	free(back);
}

/* a GET_SMALL for |n| files named |names| and its raw reply: DATA entries
 * of |len| bytes each from |data| + i * len */
static void small_pair(const char *const *names, int n, const uint8_t *data,
		       uint32_t len, struct wh_buf *req, struct wh_buf *resp)
{
	uint8_t ents[WH_MAX_REQ_FRAME];
	struct wh_version v = { .size = len };
	uint8_t hash[32] = { 0 };
	struct wh_msg m;
	size_t elen = 0;
	ssize_t w;

	for (int i = 0; i < n; i++) {
		w = wh_small_req_encode(names[i], strlen(names[i]), NULL,
					ents + elen, sizeof(ents) - elen);
		assert_true(w > 0);
		elen += (size_t)w;
	}
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GET_SMALL;
	m.hdr.req_id = 9;
	m.u.get_small.count = (uint16_t)n;
	m.u.get_small.entries = ents;
	m.u.get_small.entries_len = elen;
	assert_int_equal(wh_msg_append(req, &m), 0);
	assert_int_equal(wh_buf_reserve(resp, WH_SMALL_REPLY_HDR_LEN +
					      (size_t)n * (WH_SMALL_ENT_MAX_HDR + len)),
			 0);
	resp->len = WH_SMALL_REPLY_HDR_LEN;
	for (int i = 0; i < n; i++) {
		w = wh_small_reply_ent_encode(WH_SMALL_DATA, &v, hash, 0,
					      resp->data + resp->len,
					      WH_SMALL_ENT_MAX_HDR);
		assert_true(w > 0);
		resp->len += (size_t)w;
		memcpy(resp->data + resp->len, data + (size_t)i * len, len);
		resp->len += len;
	}
	assert_int_equal(wh_small_reply_hdr_encode(9, (uint16_t)n,
						   resp->len -
							   WH_SMALL_REPLY_HDR_LEN,
						   resp->data,
						   WH_SMALL_REPLY_HDR_LEN),
			 WH_SMALL_REPLY_HDR_LEN);
}

/* GET_SMALL replies (WH_CAP_ZSMALL): compressed whole under the same
 * rule, unpacked to exactly the raw frame; raw without the capability,
 * for compressed formats' names and for random data; a lying length is
 * refused and leaves the reply as it was */
static void test_pack_small(void **state)
{
	static const char *const text[] = { "a.txt", "b.txt", "d/c.log" };
	static const char *const zst[] = { "a.zst", "b.jpg", "c.mp4" };
	const uint32_t len = 20000;
	uint8_t *p = malloc(3 * len);
	struct wh_zlink slow = { .rate = 12.5e6, .net_busy = 0.1,
				 .small = true };
	struct wh_zlink nocap = { .rate = 12.5e6, .net_busy = 0.1 };
	struct wh_buf req, resp, orig;
	struct wh_small_ent e;
	struct wh_zhost *z;
	struct wh_msg r;
	size_t saved, pos = 0;

	(void)state;
	unsetenv("WORMHOLE_ZSTD");
	assert_int_equal(wh_zhost_new(&z), 0);
	fill_text(p, 3 * len);
	wh_buf_init(&req);
	wh_buf_init(&resp);
	wh_buf_init(&orig);
	small_pair(text, 3, p, len, &req, &resp);
	assert_int_equal(wh_buf_append(&orig, resp.data, resp.len), 0);
	saved = wh_zhost_pack(z, req.data, req.len, &resp, &slow);
	assert_true(saved > orig.len / 2);
	assert_int_equal(resp.data[7], WH_FLAG_ZSTD);
	assert_int_equal(resp.len, orig.len - saved + 4);
	assert_int_equal(wh_msg_decode(resp.data, resp.len, WH_MAX_REPLY_FRAME,
				       &r), 0);
	assert_true(r.u.get_small_reply.zstd);
	assert_int_equal(r.u.get_small_reply.count, 0);
	assert_int_equal(r.u.get_small_reply.raw_len,
			 orig.len - WH_FRAME_HDR_LEN);
	/* a lying length: refused, the reply untouched */
	r.u.get_small_reply.raw_len--;
	assert_int_equal(wh_zstd_small_unpack(&resp, &r), WH_ERR_PROTO);
	assert_true(r.u.get_small_reply.zstd);
	r.u.get_small_reply.raw_len++;
	assert_int_equal(wh_zstd_small_unpack(&resp, &r), 0);
	assert_int_equal(resp.len, orig.len);
	assert_memory_equal(resp.data, orig.data, orig.len);
	assert_int_equal(r.u.get_small_reply.count, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(wh_small_next(&r.u.get_small_reply, &pos, &e),
				 1);
		assert_int_equal(e.version.size, len);
		assert_memory_equal(e.data, p + (size_t)i * len, len);
	}
	/* a raw reply: nothing to do */
	assert_int_equal(wh_zstd_small_unpack(&resp, &r), 0);
	assert_int_equal(resp.len, orig.len);
	wh_buf_free(&resp);
	wh_buf_init(&resp);
	/* no ZSMALL: raw */
	assert_int_equal(wh_buf_append(&resp, orig.data, orig.len), 0);
	assert_int_equal(wh_zhost_pack(z, req.data, req.len, &resp, &nocap), 0);
	assert_int_equal(resp.len, orig.len);
	wh_buf_free(&req);
	wh_buf_free(&resp);
	wh_buf_free(&orig);
	/* every name a compressed format's: raw */
	wh_buf_init(&req);
	wh_buf_init(&resp);
	small_pair(zst, 3, p, len, &req, &resp);
	saved = resp.len;
	assert_int_equal(wh_zhost_pack(z, req.data, req.len, &resp, &slow), 0);
	assert_int_equal(resp.len, saved);
	wh_buf_free(&req);
	wh_buf_free(&resp);
	/* random bytes: raw */
	fill_random(p, 3 * len);
	wh_buf_init(&req);
	wh_buf_init(&resp);
	small_pair(text, 3, p, len, &req, &resp);
	saved = resp.len;
	assert_int_equal(wh_zhost_pack(z, req.data, req.len, &resp, &slow), 0);
	assert_int_equal(resp.len, saved);
	assert_int_equal(resp.data[7], 0);
	wh_buf_free(&req);
	wh_buf_free(&resp);
	wh_zhost_del(z);
	free(p);
}

/* the decoder refuses compressed replies that expand or lie */
static void test_wire(void **state)
{
	uint8_t frame[256], out[256];
	struct wh_msg m, d;
	ssize_t n;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_CHUNK_REPLY;
	m.hdr.req_id = 3;
	m.u.chunk_reply.data = (const uint8_t *)"abcdef";
	m.u.chunk_reply.data_len = 6;
	m.u.chunk_reply.zstd = true;
	m.u.chunk_reply.raw_len = 100;
	n = wh_msg_encode(&m, frame, sizeof(frame));
	assert_int_equal(n, WH_FRAME_HDR_LEN + 32 + 4 + 6);
	assert_int_equal(wh_msg_decode(frame, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 0);
	assert_true(d.u.chunk_reply.zstd);
	assert_int_equal(d.u.chunk_reply.raw_len, 100);
	assert_int_equal(d.u.chunk_reply.data_len, 6);
	/* raw_len not larger than the payload: protocol error */
	frame[WH_FRAME_HDR_LEN + 32 + 3] = 6;
	assert_int_equal(wh_msg_decode(frame, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 WH_ERR_PROTO);
	/* raw_len over the largest chunk */
	frame[WH_FRAME_HDR_LEN + 32] = 0x7f;
	assert_int_equal(wh_msg_decode(frame, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 WH_ERR_TOOBIG);
	/* the encoder refuses to expand too */
	m.u.chunk_reply.raw_len = 6;
	assert_true(wh_msg_encode(&m, out, sizeof(out)) < 0);
	/* a READ_REPLY: same rules, bounded by WH_MAX_READ */
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READ_REPLY;
	m.u.read_reply.data = (const uint8_t *)"xyz";
	m.u.read_reply.data_len = 3;
	m.u.read_reply.zstd = true;
	m.u.read_reply.raw_len = WH_MAX_READ + 1;
	assert_true(wh_msg_encode(&m, out, sizeof(out)) < 0);
	m.u.read_reply.raw_len = WH_MAX_READ;
	n = wh_msg_encode(&m, out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(wh_msg_decode(out, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 0);
	assert_true(d.u.read_reply.zstd);
	assert_int_equal(d.u.read_reply.raw_len, WH_MAX_READ);
	/* without the flag the same bytes are a raw reply */
	out[7] = 0;
	assert_int_equal(wh_msg_decode(out, (size_t)n, WH_MAX_REPLY_FRAME, &d),
			 0);
	assert_false(d.u.read_reply.zstd);
	assert_int_equal(d.u.read_reply.raw_len, d.u.read_reply.data_len);
}

static void test_rate(void **state)
{
	struct wh_zrate r;
	uint64_t t = 1000000000ULL, ms = 1000000ULL;

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_true(wh_zrate_get(&r) == 0);
	assert_false(wh_zrate_allow(&r, t));
	/* backlogged: 8 raw replies of 1 MiB, one delivered every 80 ms
	 * (12.5 MB/s): the rate is the link's */
	for (int i = 0; i < 8; i++)
		wh_zrate_sent(&r, 1 << 20, 1 << 20, t);
	for (int i = 0; i < 40; i++) {
		t += 80 * ms;
		wh_zrate_done(&r, 1 << 20, 1 << 20, t);
		wh_zrate_sent(&r, 1 << 20, 1 << 20, t);
	}
	assert_true(wh_zrate_get(&r) > 11e6 && wh_zrate_get(&r) < 15e6);
	assert_true(wh_zrate_allow(&r, t));

	/* a trial that pays: replies of 1 MiB of file in 350 KiB, one every
	 * 28 ms (3x the file rate): compression stays allowed */
	for (int i = 0; i < 100; i++) {
		t += 28 * ms;
		wh_zrate_sent(&r, 350 << 10, 1 << 20, t);
		wh_zrate_done(&r, 350 << 10, 1 << 20, t);
		if (i < 80) /* before the refresh */
			assert_true(wh_zrate_allow(&r, t));
	}

	/* a trial that does not: the same replies, one every 200 ms (a
	 * client busy decoding): held off, then allowed again after the
	 * hold once the raw rate was measured afresh */
	memset(&r, 0, sizeof(r));
	for (int i = 0; i < 8; i++)
		wh_zrate_sent(&r, 1 << 20, 1 << 20, t);
	for (int i = 0; i < 40; i++) {
		t += 80 * ms;
		wh_zrate_done(&r, 1 << 20, 1 << 20, t);
		wh_zrate_sent(&r, 1 << 20, 1 << 20, t);
	}
	for (int i = 0; i < 8; i++) { /* the raw replies drain */
		t += 80 * ms;
		wh_zrate_done(&r, 1 << 20, 1 << 20, t);
	}
	assert_true(wh_zrate_allow(&r, t));
	for (int i = 0; i < 12 && wh_zrate_allow(&r, t); i++) {
		t += 200 * ms;
		wh_zrate_sent(&r, 350 << 10, 1 << 20, t);
		wh_zrate_done(&r, 350 << 10, 1 << 20, t);
	}
	assert_false(wh_zrate_allow(&r, t));
	assert_false(wh_zrate_allow(&r, t + 3000 * ms));
	/* raw again: the rate is measured, and after the hold it may try
	 * again */
	for (int i = 0; i < 8; i++)
		wh_zrate_sent(&r, 1 << 20, 1 << 20, t);
	for (int i = 0; i < 60; i++) {
		t += 80 * ms;
		wh_zrate_done(&r, 1 << 20, 1 << 20, t);
		wh_zrate_sent(&r, 1 << 20, 1 << 20, t);
	}
	assert_true(wh_zrate_allow(&r, t));

	/* app-limited: one small raw reply at a time, slowly: no estimate */
	memset(&r, 0, sizeof(r));
	for (int i = 0; i < 100; i++) {
		wh_zrate_sent(&r, 4096, 4096, t);
		t += 50 * ms;
		wh_zrate_done(&r, 4096, 4096, t);
	}
	assert_true(wh_zrate_get(&r) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_never_expands),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_sample_and_names),
		cmocka_unit_test(test_pack),
		cmocka_unit_test(test_pack_small),
		cmocka_unit_test(test_wire),
		cmocka_unit_test(test_rate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
