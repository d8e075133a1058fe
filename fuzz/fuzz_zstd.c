/*
 * fuzz_zstd.c - the client's decode path for compressed replies on
 * arbitrary bytes.  Input: u8 mode, u32 declared length (big-endian), then
 * the payload.  Mode 0: the payload as a zstd frame that must decode to
 * exactly the declared length (at most WH_MAX_CHUNK) into a buffer of that
 * size; mode 1: the whole input as a reply frame, decoded and, when it
 * carries WH_FLAG_ZSTD, decompressed as wh_get does (a GET_SMALL_REPLY
 * through wh_zstd_small_unpack, whose result must be a well-formed raw
 * reply that fits what it declared); mode 2: the payload
 * compressed, which must never expand and must decode back to itself.
 * A decode that succeeds must have written exactly the declared bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "chunk/wh_zstd.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "proto/wh_proto.h"

static uint8_t out[WH_MAX_CHUNK + 1];
static uint8_t back[WH_MAX_CHUNK];

/* small_reply - a compressed GET_SMALL_REPLY (the frame at |p|, |n|
 * bytes, decoded into |m|) unpacked as the clients do */
static void small_reply(const uint8_t *p, size_t n, struct wh_msg *m)
{
	const uint32_t raw_len = m->u.get_small_reply.raw_len;
	struct wh_small_ent e;
	struct wh_buf b;
	size_t pos = 0;
	uint32_t count = 0;
	int rv;

	if (m->u.get_small_reply.data_len >= raw_len ||
	    raw_len > WH_MAX_REPLY_FRAME)
		abort(); /* the decoder lets no expansion by */
	wh_buf_init(&b);
	if (wh_buf_append(&b, p, n) != 0)
		abort();
	if (wh_msg_decode(b.data, b.len, WH_MAX_REPLY_FRAME, m) != 0)
		abort(); /* (points into b now) */
	rv = wh_zstd_small_unpack(&b, m);
	if (rv != 0 && rv != WH_ERR_PROTO)
		abort();
	if (rv == 0) {
		if (m->hdr.type != WH_MSG_GET_SMALL_REPLY ||
		    m->u.get_small_reply.zstd ||
		    b.len != WH_FRAME_HDR_LEN + (size_t)raw_len)
			abort();
		while (wh_small_next(&m->u.get_small_reply, &pos, &e) == 1)
			count++;
		if (count != m->u.get_small_reply.count || count == 0)
			abort();
	}
	wh_buf_free(&b);
}

static void decode_into(uint32_t raw_len, const uint8_t *p, size_t n)
{
	if (raw_len > WH_MAX_CHUNK)
		return;
	/* a guard byte after the bound: a write past it is a bug */
	out[raw_len] = 0xa5;
	(void)wh_zstd_decompress(out, raw_len, p, n);
	if (out[raw_len] != 0xa5)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wh_msg m;
	uint32_t raw_len;
	ssize_t z;

	if (size < 5)
		return 0;
	raw_len = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 |
		  (uint32_t)data[3] << 8 | data[4];
	switch (data[0] % 3) {
	case 0:
		decode_into(raw_len % (WH_MAX_CHUNK + 1), data + 5, size - 5);
		break;
	case 1:
		if (wh_msg_decode(data + 5, size - 5, WH_MAX_REPLY_FRAME, &m) != 0)
			break;
		if (m.hdr.type == WH_MSG_CHUNK_REPLY && m.u.chunk_reply.zstd) {
			if (m.u.chunk_reply.data_len >= m.u.chunk_reply.raw_len)
				abort(); /* the decoder lets no expansion by */
			decode_into(m.u.chunk_reply.raw_len,
				    m.u.chunk_reply.data,
				    m.u.chunk_reply.data_len);
		} else if (m.hdr.type == WH_MSG_READ_REPLY &&
			   m.u.read_reply.zstd) {
			if (m.u.read_reply.data_len >= m.u.read_reply.raw_len ||
			    m.u.read_reply.raw_len > WH_MAX_READ)
				abort();
			decode_into(m.u.read_reply.raw_len, m.u.read_reply.data,
				    m.u.read_reply.data_len);
		} else if (m.hdr.type == WH_MSG_GET_SMALL_REPLY &&
			   m.u.get_small_reply.zstd) {
			small_reply(data + 5, size - 5, &m);
		}
		break;
	case 2:
		size -= 5;
		if (size > WH_MAX_CHUNK)
			size = WH_MAX_CHUNK;
		z = wh_zstd_compress(out, sizeof(out), data + 5, size,
				     (int)(raw_len % 4) + 1);
		if (z < 0)
			break;
		if (z > 0) {
			if ((size_t)z >= size)
				abort();
			if (wh_zstd_decompress(back, size, out, (size_t)z) != 0 ||
			    memcmp(back, data + 5, size) != 0)
				abort();
		}
		break;
	}
	return 0;
}
