/*
 * fuzz_proto.c - every frame decoder on arbitrary bytes.  Anything that
 * decodes must re-encode to a frame that decodes to the same message.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/wh_proto.h"

static uint8_t out[WH_FRAME_HDR_LEN + WH_MAX_REPLY_FRAME];

static void check(const uint8_t *data, size_t size, size_t max)
{
	struct wh_msg m, m2;
	ssize_t n;

	if (wh_msg_decode(data, size, max, &m) != 0)
		return;
	if (m.hdr.type == WH_MSG_READDIR_REPLY) {
		struct wh_dirent de;
		size_t pos = 0;
		uint32_t count = 0;

		while (wh_dirent_next(&m.u.readdir_reply, &pos, &de) == 1)
			count++;
		if (count != m.u.readdir_reply.count)
			abort();
	}
	if (m.hdr.type == WH_MSG_GET_SMALL) {
		struct wh_small_req q;
		size_t pos = 0;
		uint32_t count = 0;

		while (wh_small_req_next(&m.u.get_small, &pos, &q) == 1)
			count++;
		if (count != m.u.get_small.count)
			abort();
	}
	if (m.hdr.type == WH_MSG_GET_SMALL_REPLY) {
		struct wh_small_ent e;
		size_t pos = 0;
		uint32_t count = 0;

		while (wh_small_next(&m.u.get_small_reply, &pos, &e) == 1) {
			if (e.status == WH_SMALL_DATA &&
			    (e.version.size > WH_MAX_SMALL_FILE ||
			     e.data + e.version.size > data + size))
				abort();
			count++;
		}
		if (count != m.u.get_small_reply.count)
			abort();
	}
	n = wh_msg_encode(&m, out, sizeof(out));
	if (n < 0)
		abort();
	/* the encoder writes flags as 0; otherwise bytes must match */
	if ((size_t)n != size || memcmp(out, data, 6) != 0 ||
	    memcmp(out + 8, data + 8, size - 8) != 0)
		abort();
	if (wh_msg_decode(out, (size_t)n, max, &m2) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wh_frame_hdr h;

	check(data, size, WH_MAX_REQ_FRAME);
	check(data, size, WH_MAX_REPLY_FRAME);
	(void)wh_frame_hdr_decode(data, size, WH_MAX_REQ_FRAME, &h);
	(void)wh_path_valid((const char *)data, size);
	return 0;
}
