/*
 * fuzz_tamper.h - a hostile host or a broken link, as the targets that
 * drive a client over a real share (fuzz_fetch, fuzz_mount) play it: each
 * reply takes the next record of the input.  tag % 4 == 0: the reply as
 * it is; 1: a u16 offset, a u8 length and that many bytes XORed into it
 * there; 2: a u16 length and that many bytes in its place (its req_id
 * made the request's); 3: the request fails (a timeout or a closed link).
 * Past the input's end, replies are as they are.
 */
#ifndef FUZZ_TAMPER_H
#define FUZZ_TAMPER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "host/wh_share.h"
#include "proto/wh_proto.h"

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

/* fuzz_serve - answer |req| from |share| as a host would, then change
 * the reply by the next record of |t| (under |lock|, which guards |t|).
 * Returns the call's result; *type is the request's, *changed whether its
 * reply was changed (tags 1 and 2). */
static inline int fuzz_serve(struct wh_share *share, struct fuzz_tamper *t,
			     pthread_mutex_t *lock, const uint8_t *req,
			     size_t len, struct wh_buf *resp, uint16_t *type,
			     bool *changed)
{
	struct wh_frame_hdr h;
	int rv, tag;

	if (wh_frame_hdr_decode(req, len, WH_MAX_REQ_FRAME, &h) != 0)
		abort(); /* the client sends what a host can read */
	*type = h.type;
	*changed = false;
	wh_buf_reset(resp);
	rv = wh_share_serve(share, req, len, resp);
	if (rv != 0)
		return rv;
	pthread_mutex_lock(lock);
	tag = fuzz_tamper_reply(t, h.req_id, resp);
	if (tag == 3)
		rv = (t->pos & 1) ? WH_ERR_TIMEOUT : WH_ERR_CLOSED;
	pthread_mutex_unlock(lock);
	*changed = tag == 1 || tag == 2;
	return rv;
}

#endif
