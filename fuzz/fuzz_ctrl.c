/*
 * fuzz_ctrl.c - the control streams' state machines, the host's
 * (host/wh_hctrl.c: HELLO, AUTH) and the client's (client/wh_cctrl.c:
 * HELLO_ACK, AUTH_OK, INVAL, ERROR), talking to each other through a
 * hostile wire that delivers, splits, drops, repeats and injects bytes,
 * at every state of the handshake.  What must hold:
 *  - neither side authenticates the other unless both used the same join
 *    code; with the same code and an untouched wire, both get there;
 *  - the host answers only HELLO_ACK, AUTH_OK and ERROR, every frame well
 *    formed; after its ERROR (sent with the FIN) it says nothing more and
 *    closes once; a failed attempt is counted at most once a connection;
 *  - the client goes WAIT_ACK -> WAIT_OK -> READY in that order, INVAL
 *    only when READY, and once it closed or failed the connection, it
 *    does nothing more; what it sends is HELLO then AUTH, well formed.
 *
 * Input: u8 setup (bit 0: the client uses another join code; bit 1: the
 * host is locked; bit 2: the host compresses), then operations:
 *   0  the host takes everything on the wire to it     1  the client, its
 *   2  the host takes u8 bytes of it                   3  the client
 *   4  the host takes the next u8 bytes of the input   5  the client
 *   6  the wire to the host loses what it holds        7  to the client
 *   8  the client's stream ends (FIN at the host)
 *   9  the wire to the client delivers what it holds twice
 *  10  flip a bit of what the wire to the host holds: u8 where, u8 bit
 *  11  the same on the wire to the client
 * anything else ends the input; then both wires deliver what they hold.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/wh_cctrl.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "host/wh_hctrl.h"
#include "proto/wh_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char code[] = "7KJM-XBCD-QRST-VWYZ",
		  other[] = "7KJM-XBCD-QRST-VWY2";
static const uint8_t sid[32] = { 1, 2, 3, 4, 5, 6, 7, 8 };

struct fz {
	struct wh_hctrl h;
	struct wh_cctrl c;
	struct wh_buf to_host, to_client; /* the wires */
	bool tampered;  /* anything but whole deliveries happened */
	bool locked;

	/* host side, as the callbacks saw it */
	bool h_fin_sent, h_closed, h_authed, h_acked;
	unsigned h_failures;
	struct wh_buf h_parse; /* what the host sent, parsed as it comes */

	/* client side */
	enum wh_cctrl_phase phase;
	bool c_done, c_failed, c_authing, c_ready;
	unsigned c_sent; /* frames: HELLO, then AUTH */
	struct wh_buf c_parse;
};

/* parse - the frames in |b| (bytes one side sent): whole frames are
 * decoded, each must be, and is checked by |check|. */
static void parse(struct fz *z, struct wh_buf *b, const uint8_t *p, size_t n,
		  void (*check)(struct fz *, const struct wh_msg *))
{
	size_t off = 0;

	if (wh_buf_append(b, p, n) < 0)
		abort();
	for (;;) {
		struct wh_frame_hdr hdr;
		struct wh_msg m;
		int rv = wh_frame_hdr_decode(b->data + off, b->len - off,
					     WH_CCTRL_MAX, &hdr);

		if (rv == WH_ERR_SHORT)
			break;
		if (rv < 0)
			abort();
		if (b->len - off < WH_FRAME_HDR_LEN + hdr.length)
			break;
		if (wh_msg_decode(b->data + off, WH_FRAME_HDR_LEN + hdr.length,
				  WH_CCTRL_MAX, &m) < 0)
			abort();
		check(z, &m);
		off += WH_FRAME_HDR_LEN + hdr.length;
	}
	wh_buf_consume(b, off);
}

/* ------------------------------------------------------------- host */

static void host_frame(struct fz *z, const struct wh_msg *m)
{
	switch (m->hdr.type) {
	case WH_MSG_HELLO_ACK:
		if (z->h_acked)
			abort(); /* HELLO_ACK twice */
		z->h_acked = true;
		break;
	case WH_MSG_AUTH_OK:
		if (!z->h_acked)
			abort();
		break;
	case WH_MSG_ERROR:
		break;
	default:
		abort();
	}
}

static int h_send(void *ud, struct wh_buf *b, bool fin)
{
	struct fz *z = ud;

	if (z->h_fin_sent || z->h_closed)
		abort(); /* it speaks after its FIN or after closing */
	parse(z, &z->h_parse, b->data, b->len, host_frame);
	if (wh_buf_append(&z->to_client, b->data, b->len) < 0)
		abort();
	wh_buf_free(b);
	z->h_fin_sent = fin;
	return 0;
}

static void h_close(void *ud, uint64_t app_err, const char *reason)
{
	struct fz *z = ud;

	if (!reason || z->h_closed)
		abort(); /* closed twice */
	if (app_err != 0 && !z->h_fin_sent)
		abort(); /* failed without telling the client why */
	z->h_closed = true;
}

static int h_exporter(void *ud, uint8_t *out, size_t len)
{
	(void)ud;
	if (len != sizeof(sid))
		abort();
	memcpy(out, sid, len);
	return 0;
}

static void h_failure(void *ud, const char *why)
{
	struct fz *z = ud;

	if (!why || ++z->h_failures > 1)
		abort(); /* one attempt counted twice */
}

static bool h_locked(void *ud)
{
	return ((struct fz *)ud)->locked;
}

static void h_authed(void *ud)
{
	struct fz *z = ud;

	if (z->h_authed || !z->h_acked || z->locked)
		abort();
	z->h_authed = true;
}

static const struct wh_hctrl_ops h_ops = {
	.send = h_send,
	.close = h_close,
	.exporter = h_exporter,
	.failure = h_failure,
	.locked = h_locked,
	.authed = h_authed,
};

/* ----------------------------------------------------------- client */

static void client_frame(struct fz *z, const struct wh_msg *m)
{
	if (m->hdr.type != (z->c_sent == 0 ? WH_MSG_HELLO : WH_MSG_AUTH) ||
	    z->c_sent > 1)
		abort();
	z->c_sent++;
}

static enum wh_cctrl_phase c_phase(void *ud)
{
	return ((struct fz *)ud)->phase;
}

static int c_send(void *ud, struct wh_buf *b)
{
	struct fz *z = ud;

	if (z->c_done)
		abort();
	parse(z, &z->c_parse, b->data, b->len, client_frame);
	if (wh_buf_append(&z->to_host, b->data, b->len) < 0)
		abort();
	wh_buf_free(b);
	return 0;
}

static void c_close(void *ud, uint64_t app_err, const char *reason)
{
	struct fz *z = ud;

	(void)app_err;
	if (!reason || z->c_done)
		abort();
	z->c_done = true;
}

static void c_fail(void *ud, int err, const char *msg)
{
	struct fz *z = ud;

	if (err >= 0 || !msg || z->c_done || z->c_failed)
		abort();
	z->c_failed = true;
	z->phase = WH_CCTRL_OTHER;
}

static void c_authing(void *ud, uint64_t caps)
{
	struct fz *z = ud;

	(void)caps;
	if (z->c_done || z->phase != WH_CCTRL_WAIT_ACK || z->c_authing)
		abort();
	z->c_authing = true;
	z->phase = WH_CCTRL_WAIT_OK;
}

static void c_ready(void *ud)
{
	struct fz *z = ud;

	if (z->c_done || z->phase != WH_CCTRL_WAIT_OK || z->c_ready)
		abort();
	z->c_ready = true;
	z->phase = WH_CCTRL_READY;
}

static void c_inval(void *ud, const char *dir, size_t dlen,
		    const char *name, size_t nlen)
{
	struct fz *z = ud;

	if (z->c_done || z->phase != WH_CCTRL_READY ||
	    (dlen && !dir) || (nlen && !name))
		abort();
}

static const struct wh_cctrl_ops c_ops = {
	.phase = c_phase,
	.send = c_send,
	.close = c_close,
	.fail = c_fail,
	.authing = c_authing,
	.ready = c_ready,
	.inval = c_inval,
};

/* ------------------------------------------------------------- wire */

static void to_host(struct fz *z, const uint8_t *p, size_t n, bool fin)
{
	bool was_failed = z->h.state == WH_HCTRL_FAILED;

	if (z->h_closed && z->h.state != WH_HCTRL_FAILED)
		return; /* it left ("bye"): the transport delivers no more */
	if (wh_hctrl_input(&z->h, p, n, fin) < 0)
		abort();
	if (was_failed && z->h.state != WH_HCTRL_FAILED)
		abort();
}

static void to_client(struct fz *z, const uint8_t *p, size_t n)
{
	if (wh_cctrl_input(&z->c, p, n) < 0)
		z->c_done = true; /* the transport drops the connection */
}

/* deliver - the first |n| bytes of |w| to its side */
static void deliver(struct fz *z, struct wh_buf *w, size_t n)
{
	uint8_t *copy;

	if (n > w->len)
		n = w->len;
	if (!n)
		return;
	/* the side may send onto the other wire while taking these */
	copy = malloc(n);
	if (!copy)
		abort();
	memcpy(copy, w->data, n);
	wh_buf_consume(w, n);
	if (w == &z->to_host)
		to_host(z, copy, n, false);
	else if (!z->c_done)
		to_client(z, copy, n);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz z;
	size_t off = 1;
	bool same;

	if (size < 1)
		return 0;
	wh_log_set_level(getenv("FUZZ_VERBOSE") ? WH_LOG_DEBUG
						: WH_LOG_ERROR);
	memset(&z, 0, sizeof(z));
	wh_buf_init(&z.to_host);
	wh_buf_init(&z.to_client);
	wh_buf_init(&z.h_parse);
	wh_buf_init(&z.c_parse);
	same = !(data[0] & 1);
	z.locked = data[0] & 2;
	wh_hctrl_init(&z.h, &h_ops, &z, code,
		      WH_CAP_INVAL | WH_CAP_CHUNKS | WH_CAP_SMALL |
			      WH_CAP_ZSMALL | ((data[0] & 4) ? WH_CAP_ZSTD : 0),
		      "client #1 (fuzz)");
	wh_cctrl_init(&z.c, &c_ops, &z);
	z.phase = WH_CCTRL_WAIT_ACK;
	if (wh_cctrl_hello(&z.c, same ? code : other, sid, sizeof(sid),
			   WH_CAP_INVAL | WH_CAP_SMALL | WH_CAP_ZSTD |
				   WH_CAP_ZSMALL) != 0)
		abort();

	while (off < size) {
		uint8_t op = data[off++];
		size_t n;

		if (op >= 12)
			break;
		if ((op >= 2 && op <= 5) && off >= size)
			break;
		if (op >= 10 && size - off < 2)
			break;
		switch (op) {
		case 0:
			deliver(&z, &z.to_host, z.to_host.len);
			break;
		case 1:
			deliver(&z, &z.to_client, z.to_client.len);
			break;
		case 2:
		case 3:
			z.tampered = true; /* a split, not yet a change */
			deliver(&z, op == 2 ? &z.to_host : &z.to_client,
				data[off++]);
			break;
		case 4:
		case 5:
			z.tampered = true;
			n = data[off++];
			if (n > size - off)
				n = size - off;
			if (op == 4)
				to_host(&z, data + off, n, false);
			else if (!z.c_done)
				to_client(&z, data + off, n);
			off += n;
			break;
		case 6:
			z.tampered = true;
			wh_buf_reset(&z.to_host);
			break;
		case 7:
			z.tampered = true;
			wh_buf_reset(&z.to_client);
			break;
		case 8:
			z.tampered = true;
			to_host(&z, NULL, 0, true);
			break;
		case 10:
		case 11: {
			struct wh_buf *w = op == 10 ? &z.to_host : &z.to_client;

			z.tampered = true;
			if (w->len)
				w->data[data[off] % w->len] ^=
					(uint8_t)(1u << (data[off + 1] & 7));
			off += 2;
			break;
		}
		case 9: {
			struct wh_buf twice;

			z.tampered = true;
			wh_buf_init(&twice);
			if (wh_buf_append(&twice, z.to_client.data,
					  z.to_client.len) < 0 ||
			    wh_buf_append(&twice, z.to_client.data,
					  z.to_client.len) < 0)
				abort();
			wh_buf_reset(&z.to_client);
			deliver(&z, &twice, twice.len);
			wh_buf_free(&twice);
			break;
		}
		}
	}
	/* the wires deliver what they hold, until both are quiet */
	for (int i = 0; i < 4; i++) {
		deliver(&z, &z.to_host, z.to_host.len);
		deliver(&z, &z.to_client, z.to_client.len);
	}

	if (!same && (z.h_authed || z.c_authing))
		abort(); /* authenticated without the code */
	if (z.locked && z.h_acked)
		abort(); /* a locked host ran the PAKE */
	if (same && !z.locked && !z.tampered &&
	    (!z.h_authed || !z.c_ready || z.c_done || z.h_closed))
		abort(); /* an honest run did not get through */
	/* the host agrees to nothing it did not offer; nor, on an untouched
	 * wire, to anything the client did not (a bit flipped in HELLO's
	 * capabilities is a HELLO that offered them: TLS, not the PAKE,
	 * protects them in real life) */
	if (z.h_authed && z.h.caps & ~(WH_CAP_INVAL | WH_CAP_CHUNKS |
				       WH_CAP_SMALL | WH_CAP_ZSMALL |
				       WH_CAP_ZSTD))
		abort();
	if (z.h_authed && !z.tampered &&
	    z.h.caps & ~(WH_CAP_INVAL | WH_CAP_SMALL | WH_CAP_ZSTD |
			 WH_CAP_ZSMALL))
		abort(); /* a capability one side did not offer */
	if (z.h_authed && (z.h.caps & WH_CAP_ZSMALL) &&
	    !(z.h.caps & WH_CAP_ZSTD))
		abort();
	wh_hctrl_gone(&z.h);
	wh_hctrl_free(&z.h);
	wh_cctrl_free(&z.c);
	wh_buf_free(&z.to_host);
	wh_buf_free(&z.to_client);
	wh_buf_free(&z.h_parse);
	wh_buf_free(&z.c_parse);
	return 0;
}
