/*
 * fuzz_frame.c - gathering one frame from a stream's pieces
 * (wh_frame_gather, what the host does with each request stream and the
 * client with each reply stream), checked against a model written here.
 *
 * Input byte 0 picks the payload limit (16, 64, a request's, a reply's).
 * Then pieces, each a byte P and its bytes: P & 0x3f bytes, or with bit 7
 * a u16 length from the next two bytes; bit 6 ends the stream with them
 * (the FIN).  Every call must give what the model says of all the bytes
 * so far (0: more to come, 1: the whole frame, or which error), keep
 * exactly those bytes in the buffer while it has not failed, and have
 * room for the whole frame once the header is in.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_err.h"
#include "proto/wh_proto.h"

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* model - what gathering |n| bytes |s| should give so far */
static int model(const uint8_t *s, size_t n, bool fin, size_t max,
		 uint32_t *length, uint32_t *req_id)
{
	uint16_t type;

	*length = *req_id = 0;
	if (n > WH_FRAME_HDR_LEN + max)
		return WH_ERR_TOOBIG;
	if (n < WH_FRAME_HDR_LEN)
		return fin ? WH_ERR_PROTO : 0;
	type = (uint16_t)(s[4] << 8 | s[5]);
	*length = be32(s);
	*req_id = be32(s + 8);
	if (*length > max)
		return WH_ERR_TOOBIG;
	if (strcmp(wh_msg_type_name(type), "UNKNOWN") == 0) {
		*req_id = 0;
		return WH_ERR_PROTO;
	}
	if (n > WH_FRAME_HDR_LEN + (size_t)*length)
		return WH_ERR_PROTO;
	if (n < WH_FRAME_HDR_LEN + (size_t)*length)
		return fin ? WH_ERR_PROTO : 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t maxes[] = { 16, 64, WH_MAX_REQ_FRAME,
					WH_MAX_REPLY_FRAME };
	struct wh_frame_hdr hdr;
	struct wh_buf rx;
	uint8_t *seen;
	size_t pos = 1, n = 0, max;
	bool fin = false;
	int rv = 0;

	if (size < 1)
		return 0;
	max = maxes[data[0] % 4];
	seen = malloc(size);
	if (!seen)
		abort();
	wh_buf_init(&rx);
	while (!fin && rv >= 0 && pos < size) {
		const char *why = NULL;
		uint8_t p = data[pos++];
		size_t k = p & 0x3f;
		uint32_t length, req_id;
		int want;

		if ((p & 0x80) && pos + 2 <= size) {
			k = (size_t)data[pos] << 8 | data[pos + 1];
			pos += 2;
		}
		if (k > size - pos)
			k = size - pos;
		fin = p & 0x40;
		memcpy(seen + n, data + pos, k);
		n += k;
		rv = wh_frame_gather(&rx, k ? data + pos : NULL, k, fin, max,
				     &hdr, &why);
		pos += k;
		want = model(seen, n, fin, max, &length, &req_id);
		if (rv == -ENOMEM)
			abort();
		if (rv != want)
			abort();
		if (rv < 0) {
			if (!why || !*why)
				abort();
			/* a header that decoded names its request */
			if (hdr.req_id != req_id)
				abort();
			break;
		}
		if (rx.len != n || (n && memcmp(rx.data, seen, n) != 0))
			abort();
		if (n >= WH_FRAME_HDR_LEN) {
			if (hdr.length != length || hdr.req_id != req_id)
				abort();
			if (rx.cap < WH_FRAME_HDR_LEN + (size_t)length)
				abort();
		}
	}
	wh_buf_free(&rx);
	free(seen);
	return 0;
}
