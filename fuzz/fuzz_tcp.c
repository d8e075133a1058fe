/*
 * fuzz_tcp.c - the TCP transport's connection (wh_tls_tcp.c) on what a
 * hostile peer could send once TLS decrypted it: a detached connection,
 * client or server, is fed plaintext in pieces of any size (frames split
 * anywhere, for streams unknown, gone or not yet allowed, with credit it
 * never gave or oversized), between which its owner opens streams, sends,
 * resets, flushes, closes.  What it must hold:
 *  - everything it writes decodes, SETTINGS first, and it never sends
 *    more DATA than the peer's windows and credits allow, per stream and
 *    in all;
 *  - while it lives, the peer never got more DATA in than our window and
 *    the credit we had returned, the first frame was SETTINGS and every
 *    frame decoded; a stream's owner never got more than its window and
 *    the credit returned for it;
 *  - on_close runs once, nothing leaks (the endpoint is freed per input).
 *
 * Input: one byte of setup (bit 0: server; bits 1-2: how the streams'
 * owner behaves), then operations, each an opcode byte and its operands:
 *   0x00-0x7f  feed the next (op + 1) bytes as they are
 *   0x80       client: open a stream, send u8 * 64 bytes (+ FIN if odd)
 *   0x81       send u8 * 97 bytes on the u8-th open stream (FIN: bit 0)
 *   0x82       reset the u8-th open stream
 *   0x83       wh_tcp_ep_flush     0x84  wh_tcp_ep_expire
 *   0x85       wh_tcp_conn_close
 *   0x86       feed DATA frames in one piece: u8 stream, u8 flags, u16
 *              length, u8 count (1-4; its bit 7: the stream id + 1 each)
 *   0x87       feed SETTINGS: u32 max_streams, u32 stream/conn window (u16
 *              each, in KiB)
 *   0x88       feed CREDIT: u8 stream, u16 increment * 16
 * anything else ends the input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "net/wh_mux.h"
#include "net/wh_tls_tcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ID 64 /* stream ids followed by the checks */

/* one direction's frames as decoded from the bytes seen so far */
struct mirror {
	struct wh_buf buf;
	bool bad;         /* a frame did not decode */
	bool first_done;  /* a first frame came */
	bool first_settings;
	bool settings;
	uint32_t stream_window, conn_window, max_streams;
	uint32_t streams_max; /* the highest STREAMS value */
	uint64_t data_total;
	uint64_t data[MAX_ID + 1];   /* DATA bytes per stream */
	uint64_t credit0;            /* CREDIT on stream 0 */
	uint64_t credit[MAX_ID + 1]; /* CREDIT per stream */
};

struct fz {
	bool server;
	unsigned mode;
	struct wh_quic_config cfg;
	struct wh_tcp_ep *ep;
	struct wh_tcp_conn *c;
	bool closed; /* on_close ran */
	unsigned closes;
	struct wh_tcp_stream *st[MAX_ID + 1];
	bool reset[MAX_ID + 1]; /* its owner reset it */
	uint64_t delivered[MAX_ID + 1];
	struct mirror in, out; /* what we fed it; what it wrote */
	unsigned stream_closes;
};

static void mirror_feed(struct mirror *m, const uint8_t *p, size_t n,
			bool ours)
{
	size_t off = 0;

	if (m->bad || n == 0)
		return;
	if (wh_buf_append(&m->buf, p, n) < 0)
		abort();
	for (;;) {
		struct wh_mux_frame f;
		int r = wh_mux_decode(m->buf.data + off, m->buf.len - off, &f);

		if (r == WH_ERR_SHORT)
			break;
		if (r < 0) {
			if (ours)
				abort(); /* it wrote a malformed frame */
			m->bad = true;
			break;
		}
		off += (size_t)r;
		if (ours && !f.known)
			abort();
		if (!m->first_done) {
			m->first_done = true;
			m->first_settings = f.type == WH_MUX_SETTINGS;
			if (ours && !m->first_settings)
				abort();
		}
		switch (f.type) {
		case WH_MUX_SETTINGS:
			if (ours && m->settings)
				abort();
			if (!m->settings) {
				m->settings = true;
				m->stream_window = f.stream_window;
				m->conn_window = f.conn_window;
				m->max_streams = f.max_streams;
			}
			break;
		case WH_MUX_DATA:
			m->data_total += f.length;
			if (f.stream <= MAX_ID)
				m->data[f.stream] += f.length;
			break;
		case WH_MUX_STREAMS:
			if (f.value > m->streams_max)
				m->streams_max = f.value;
			break;
		case WH_MUX_CREDIT:
			if (f.stream == 0)
				m->credit0 += f.value;
			else if (f.stream <= MAX_ID)
				m->credit[f.stream] += f.value;
			break;
		default:
			break;
		}
	}
	wh_buf_consume(&m->buf, off);
}

/* check_out - what it sent stays within what we (the peer) allowed */
static void check_out(struct fz *z)
{
	struct mirror *o = &z->out, *in = &z->in;

	/* a server lets one more stream open per stream closed */
	if (o->streams_max > z->cfg.max_streams_bidi + z->stream_closes)
		abort();
	if (o->data_total == 0)
		return;
	if (!in->settings)
		abort(); /* DATA before it knew our windows */
	if (o->data_total > (uint64_t)in->conn_window + in->credit0)
		abort();
	for (unsigned i = 1; i <= MAX_ID; i++)
		if (o->data[i] > (uint64_t)in->stream_window + in->credit[i])
			abort();
}

static void sink(void *ud, const uint8_t *p, size_t n)
{
	struct fz *z = ud;

	mirror_feed(&z->out, p, n, true);
	check_out(z);
}

static int slot_of(struct fz *z, struct wh_tcp_stream *s)
{
	int64_t id = wh_tcp_stream_id(s);

	if (id < 1 || id > MAX_ID)
		return -1;
	return (int)id;
}

static void send_some(struct fz *z, struct wh_tcp_stream *s, size_t n,
		      bool fin)
{
	uint8_t *b = n ? malloc(n) : NULL;

	if (n && !b)
		abort();
	if (b)
		memset(b, 0x5a, n);
	wh_tcp_send(z->c, s, b, n, fin, free);
}

static void owner_reset(struct fz *z, struct wh_tcp_stream *s)
{
	int i = slot_of(z, s);

	if (i > 0)
		z->reset[i] = true;
	wh_tcp_stream_reset(z->c, s, 7);
}

static void cb_accept(struct wh_tcp_conn *c, void *ud)
{
	wh_tcp_conn_set_ud(c, ud);
}

static void cb_handshake(struct wh_tcp_conn *c, void *ud)
{
	(void)c;
	(void)ud;
}

static void cb_stream_open(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
			   void *ud)
{
	struct fz *z = ud;
	int i = slot_of(z, s);

	if (!z->server)
		abort(); /* only the client opens streams */
	if (i > 0)
		z->st[i] = s;
	if ((z->mode & 1) && wh_tcp_stream_id(s) % 3 == 0)
		owner_reset(z, s);
}

static int cb_stream_data(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
			  const uint8_t *data, size_t len, bool fin, void *ud)
{
	struct fz *z = ud;
	int i = slot_of(z, s);

	if (i > 0) {
		if (z->st[i] != s)
			abort(); /* data for a stream it did not announce */
		if (z->reset[i])
			abort(); /* data for a stream its owner reset */
		z->delivered[i] += len;
	}
	if (len && data[0] == 0xee && (z->mode & 2))
		return WH_ERR_PROTO;
	if (len && data[0] == 0xcc && (z->mode & 4))
		wh_tcp_conn_close(c, 9, "owner closes");
	if (fin && z->server)
		send_some(z, s, (size_t)(wh_tcp_stream_id(s) * 1237 % 40000),
			  true);
	return 0;
}

static void cb_stream_close(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
			    void *ud)
{
	struct fz *z = ud;
	int i = slot_of(z, s);

	(void)c;
	z->stream_closes++;
	if (i > 0) {
		if (z->st[i] != s)
			abort();
		z->st[i] = NULL;
		z->reset[i] = false;
	}
}

static void cb_streams_available(struct wh_tcp_conn *c, void *ud)
{
	(void)c;
	(void)ud;
}

static void cb_close(struct wh_tcp_conn *c, int err, const char *reason,
		     void *ud)
{
	struct fz *z = ud;

	(void)c;
	(void)err;
	if (!reason)
		abort();
	z->closes++;
	z->closed = true;
	for (unsigned i = 0; i <= MAX_ID; i++)
		if (z->st[i])
			abort(); /* a stream was not closed first */
}

static const struct wh_tcp_cbs cbs = {
	.on_accept = cb_accept,
	.on_handshake = cb_handshake,
	.on_stream_open = cb_stream_open,
	.on_stream_data = cb_stream_data,
	.on_stream_close = cb_stream_close,
	.on_streams_available = cb_streams_available,
	.on_close = cb_close,
};

static struct wh_tcp_stream *nth_stream(struct fz *z, unsigned k)
{
	unsigned n = 0;

	for (unsigned i = 1; i <= MAX_ID; i++)
		if (z->st[i])
			n++;
	if (!n)
		return NULL;
	k %= n;
	for (unsigned i = 1; i <= MAX_ID; i++)
		if (z->st[i] && k-- == 0)
			return z->st[i];
	return NULL;
}

/* check_in - after a feed, alive means what came in was acceptable */
static void check_in(struct fz *z, uint64_t credit_before)
{
	struct mirror *in = &z->in;

	if (z->closed)
		return;
	if (in->bad || (in->first_done && !in->first_settings))
		abort(); /* it took a malformed frame, or no SETTINGS first */
	if (in->data_total > z->cfg.conn_window + credit_before)
		abort(); /* connection flow control not enforced */
	for (unsigned i = 1; i <= MAX_ID; i++)
		if (z->delivered[i] >
		    z->cfg.stream_window + z->out.credit[i])
			abort(); /* stream flow control not enforced */
}

static void feed(struct fz *z, const uint8_t *p, size_t n)
{
	uint64_t credit = z->out.credit0;

	if (z->closed)
		return;
	mirror_feed(&z->in, p, n, false);
	wh_tcp_conn_input(z->c, p, n);
	check_in(z, credit);
}

static uint16_t u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz z;
	size_t off = 1;
	static uint8_t frame[4 * WH_MUX_MAX_FRAME];

	if (size < 1)
		return 0;
	wh_log_set_level(getenv("FUZZ_VERBOSE") ? WH_LOG_DEBUG : WH_LOG_ERROR);
	memset(&z, 0, sizeof(z));
	wh_buf_init(&z.in.buf);
	wh_buf_init(&z.out.buf);
	z.server = data[0] & 1;
	z.mode = (data[0] >> 1) & 7;
	wh_quic_config_default(&z.cfg, z.server);
	/* small windows, so that inputs reach them (the endpoint raises them
	 * to its minimum, 2 DATA frames a stream) */
	z.cfg.stream_window = 2 * WH_MUX_MAX_DATA;
	z.cfg.conn_window = (data[0] & 0x10) ? 2 * WH_MUX_MAX_DATA
					     : 6 * WH_MUX_MAX_DATA;
	z.cfg.max_streams_bidi = 8;
	if (wh_tcp_detached_new(z.server, &z.cfg, &cbs, &z, sink, &z, &z.ep,
				&z.c) != 0)
		abort();
	while (off < size && !z.closed) {
		uint8_t op = data[off++];
		const uint8_t *a = data + off;
		size_t left = size - off;
		struct wh_tcp_stream *s;

		if (op < 0x80) {
			size_t n = (size_t)op + 1 < left ? (size_t)op + 1 : left;

			feed(&z, a, n);
			off += n;
			continue;
		}
		switch (op) {
		case 0x80:
			if (left < 1)
				goto done;
			off += 1;
			if (!z.server &&
			    wh_tcp_open_stream(z.c, NULL, &s) == 0) {
				int i = slot_of(&z, s);
				uint32_t lim = z.in.max_streams > z.in.streams_max
						       ? z.in.max_streams
						       : z.in.streams_max;

				if (wh_tcp_stream_id(s) > lim)
					abort(); /* beyond what the host allows */
				if (i > 0)
					z.st[i] = s;
				else
					wh_tcp_stream_reset(z.c, s, 0);
				send_some(&z, s, (size_t)a[0] * 64, a[0] & 1);
			}
			break;
		case 0x81:
			if (left < 2)
				goto done;
			off += 2;
			if ((s = nth_stream(&z, a[0])))
				send_some(&z, s, (size_t)a[1] * 97, a[1] & 1);
			break;
		case 0x82:
			if (left < 1)
				goto done;
			off += 1;
			if ((s = nth_stream(&z, a[0])))
				owner_reset(&z, s);
			break;
		case 0x83:
			wh_tcp_ep_flush(z.ep);
			break;
		case 0x84:
			wh_tcp_ep_expire(z.ep);
			break;
		case 0x85:
			wh_tcp_conn_close(z.c, 3, "bye");
			wh_tcp_ep_flush(z.ep);
			break;
		case 0x86: {
			uint16_t n;
			size_t k = 0, cnt;

			if (left < 5)
				goto done;
			off += 5;
			n = u16(a + 2);
			if (n > WH_MUX_MAX_DATA)
				n = WH_MUX_MAX_DATA;
			cnt = (a[4] & 3) + 1;
			for (size_t i = 0; i < cnt; i++) {
				uint32_t id = a[0] + ((a[4] & 0x80) ? i : 0);

				wh_mux_put_hdr(frame + k, WH_MUX_DATA, a[1], n,
					       id);
				memset(frame + k + WH_MUX_HDR_LEN, 0xab, n);
				k += WH_MUX_HDR_LEN + (size_t)n;
			}
			feed(&z, frame, k);
			break;
		}
		case 0x87: {
			struct wh_mux_frame f;
			int n;

			if (left < 8)
				goto done;
			off += 8;
			memset(&f, 0, sizeof(f));
			f.type = WH_MUX_SETTINGS;
			f.max_streams = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 |
					(uint32_t)a[2] << 8 | a[3];
			f.stream_window = (uint32_t)u16(a + 4) * 1024;
			f.conn_window = (uint32_t)u16(a + 6) * 1024;
			n = wh_mux_encode(&f, frame, sizeof(frame));
			if (n > 0)
				feed(&z, frame, (size_t)n);
			break;
		}
		case 0x88: {
			struct wh_mux_frame f;
			int n;

			if (left < 3)
				goto done;
			off += 3;
			memset(&f, 0, sizeof(f));
			f.type = WH_MUX_CREDIT;
			f.stream = a[0];
			f.value = (uint32_t)u16(a + 1) * 16;
			n = wh_mux_encode(&f, frame, sizeof(frame));
			if (n > 0)
				feed(&z, frame, (size_t)n);
			break;
		}
		default:
			goto done;
		}
		if (z.closed)
			break;
		if (!z.closed)
			wh_tcp_ep_flush(z.ep);
	}
done:
	wh_tcp_ep_del(z.ep);
	if (z.closes != 1)
		abort(); /* on_close once, whatever happened */
	wh_buf_free(&z.in.buf);
	wh_buf_free(&z.out.buf);
	return 0;
}
