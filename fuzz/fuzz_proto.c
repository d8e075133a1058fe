/*
 * fuzz_proto.c - every frame decoder on arbitrary bytes, and the entry
 * walkers over what they decode (READDIR_REPLY, GET_SMALL and its reply,
 * MANIFEST_REPLY and MANIFEST_PART).  Anything that decodes must
 * re-encode to a frame that decodes to the same message.
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
	if (m.hdr.type == WH_MSG_MANIFEST_REPLY ||
	    m.hdr.type == WH_MSG_MANIFEST_PART) {
		/* every entry is read from inside the frame, and re-encodes
		 * to its own bytes */
		const bool part = m.hdr.type == WH_MSG_MANIFEST_PART;
		const uint8_t *ents = part ? m.u.manifest_part.entries
					   : m.u.manifest_reply.entries;
		uint32_t count = part ? m.u.manifest_part.count
				      : m.u.manifest_reply.count;
		uint8_t hash[32], e[WH_MANIFEST_ENTRY_LEN];
		uint64_t off;
		uint32_t len;

		if (count && (ents < data || ents + (size_t)count *
						   WH_MANIFEST_ENTRY_LEN >
					   data + size))
			abort();
		for (uint32_t i = 0; i < count; i++) {
			if (part)
				wh_manifest_part_entry(&m.u.manifest_part, i,
						       &off, &len, hash);
			else
				wh_manifest_entry(&m.u.manifest_reply, i, &off,
						  &len, hash);
			wh_manifest_entry_encode(off, len, hash, e);
			if (memcmp(e, ents + (size_t)i * WH_MANIFEST_ENTRY_LEN,
				   sizeof(e)))
				abort();
		}
	}
	if (strcmp(wh_msg_type_name(m.hdr.type), "UNKNOWN") == 0)
		abort(); /* decoded, so known */
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
