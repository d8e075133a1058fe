/*
 * fuzz_tamper.h - a hostile host or a broken link, as the targets that
 * drive a client over a real share (fuzz_fetch, fuzz_mount) play it: each
 * reply takes the next record of the input.  tag % 4 == 0: the reply as
 * it is; 1: a u16 offset, a u8 length and that many bytes XORed into it
 * there; 2: a u16 length and that many bytes in its place (its req_id
 * made the request's); 3: the request fails (the caller's to play).  Past
 * the input's end, replies are as they are.
 */
#ifndef FUZZ_TAMPER_H
#define FUZZ_TAMPER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_buf.h"

struct fuzz_tamper {
	const uint8_t *in;
	size_t len, pos;
};

/* take |n| bytes of the input, or fewer at its end */
static inline const uint8_t *fuzz_take(struct fuzz_tamper *t, size_t n,
				       size_t *got)
{
	const uint8_t *p = t->in + t->pos;

	*got = t->len - t->pos < n ? t->len - t->pos : n;
	t->pos += *got;
	return p;
}

/* fuzz_tamper_reply - change |resp|, the reply to request |req_id|, by
 * the next record; returns its tag (3: the caller fails the request) */
static inline int fuzz_tamper_reply(struct fuzz_tamper *t, uint32_t req_id,
				    struct wh_buf *resp)
{
	const uint8_t *p;
	size_t got, n;
	int tag = 0;

	if (t->pos < t->len)
		tag = t->in[t->pos++] % 4;
	if (tag == 1) { /* XOR bytes in */
		p = fuzz_take(t, 3, &got);
		if (got == 3) {
			size_t off = ((size_t)p[0] << 8 | p[1]) %
				     (resp->len + 1);
			size_t cnt = p[2];

			p = fuzz_take(t, cnt, &n);
			for (size_t i = 0; i < n && off + i < resp->len; i++)
				resp->data[off + i] ^= p[i];
		}
	} else if (tag == 2) { /* another reply in its place */
		p = fuzz_take(t, 2, &got);
		if (got == 2) {
			p = fuzz_take(t, (size_t)p[0] << 8 | p[1], &n);
			wh_buf_reset(resp);
			if (wh_buf_append(resp, p, n) != 0)
				abort();
			if (n >= 12) { /* the request's req_id */
				resp->data[8] = (uint8_t)(req_id >> 24);
				resp->data[9] = (uint8_t)(req_id >> 16);
				resp->data[10] = (uint8_t)(req_id >> 8);
				resp->data[11] = (uint8_t)req_id;
			}
		}
	}
	return tag;
}

#endif
