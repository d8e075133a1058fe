/*
 * test_tcp_detached.c - the TCP transport's connection with no socket or
 * TLS (wh_tcp_detached_new), fed plaintext: a request fed whole or a byte
 * at a time is served alike, SETTINGS first; a stream its owner reset
 * gets no more data (as with QUIC), the connection going on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "net/wh_mux.h"
#include "net/wh_tls_tcp.h"

struct t {
	struct wh_tcp_conn *c;
	struct wh_buf out;
	bool reset_new; /* the owner resets every stream it is given */
	unsigned opens, closes, conn_closes;
	char got[64];
	size_t got_len;
	bool fin;
};

static void sink(void *ud, const uint8_t *p, size_t n)
{
	struct t *t = ud;

	assert_int_equal(wh_buf_append(&t->out, p, n), 0);
}

static void cb_accept(struct wh_tcp_conn *c, void *ud)
{
	wh_tcp_conn_set_ud(c, ud);
}

static void cb_open(struct wh_tcp_conn *c, struct wh_tcp_stream *s, void *ud)
{
	struct t *t = ud;

	t->opens++;
	if (t->reset_new)
		wh_tcp_stream_reset(c, s, 4);
}

static int cb_data(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
		   const uint8_t *data, size_t len, bool fin, void *ud)
{
	struct t *t = ud;

	assert_true(t->got_len + len <= sizeof(t->got));
	memcpy(t->got + t->got_len, data, len);
	t->got_len += len;
	if (fin) {
		char *reply = strdup("ok");

		t->fin = true;
		assert_int_equal(wh_tcp_send(c, s, reply, 2, true, free), 0);
	}
	return 0;
}

static void cb_sclose(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
		      void *ud)
{
	(void)c;
	(void)s;
	((struct t *)ud)->closes++;
}

static void cb_close(struct wh_tcp_conn *c, int err, const char *reason,
		     void *ud)
{
	(void)c;
	(void)err;
	(void)reason;
	((struct t *)ud)->conn_closes++;
}

static const struct wh_tcp_cbs cbs = {
	.on_accept = cb_accept,
	.on_stream_open = cb_open,
	.on_stream_data = cb_data,
	.on_stream_close = cb_sclose,
	.on_close = cb_close,
};

static void put(struct wh_buf *b, uint8_t type, uint8_t flags,
		uint32_t stream, const void *payload, uint16_t len)
{
	uint8_t hdr[WH_MUX_HDR_LEN];

	wh_mux_put_hdr(hdr, type, flags, len, stream);
	assert_int_equal(wh_buf_append(b, hdr, sizeof(hdr)), 0);
	if (len)
		assert_int_equal(wh_buf_append(b, payload, len), 0);
}

static void put_settings(struct wh_buf *b)
{
	uint8_t p[12] = { 0, 0, 0, 8, 0, 1, 0, 0, 0, 4, 0, 0 };

	put(b, WH_MUX_SETTINGS, 0, 0, p, sizeof(p));
}

/* frames - the frames in |b|: their types, at most |max|, and for DATA
 * on stream 1 the payload into |data| */
static size_t frames(const struct wh_buf *b, uint8_t *types, size_t max,
		     char *data, size_t *data_len)
{
	size_t off = 0, n = 0;

	*data_len = 0;
	while (off < b->len && n < max) {
		struct wh_mux_frame f;
		int r = wh_mux_decode(b->data + off, b->len - off, &f);

		assert_true(r > 0);
		types[n++] = f.type;
		if (f.type == WH_MUX_DATA && f.stream == 1) {
			memcpy(data + *data_len, f.payload, f.length);
			*data_len += f.length;
		}
		off += (size_t)r;
	}
	assert_int_equal(off, b->len);
	return n;
}

/* detached - a server connection on no socket for |t| (set up by the
 * caller), its output in t->out; |in| made empty for the input */
static struct wh_tcp_ep *detached(struct t *t, struct wh_buf *in)
{
	struct wh_quic_config cfg;
	struct wh_tcp_ep *ep;

	wh_buf_init(&t->out);
	wh_buf_init(in);
	wh_quic_config_default(&cfg, true);
	assert_int_equal(wh_tcp_detached_new(true, &cfg, &cbs, t, sink, t,
					     &ep, &t->c),
			 0);
	return ep;
}

static void serve_one(bool bytewise)
{
	struct wh_tcp_ep *ep;
	struct wh_buf in;
	struct t t;
	uint8_t types[8];
	char data[16];
	size_t n, dlen;

	memset(&t, 0, sizeof(t));
	ep = detached(&t, &in);
	put_settings(&in);
	put(&in, WH_MUX_DATA, WH_MUX_FLAG_FIN, 1, "hello", 5);
	if (bytewise)
		for (size_t i = 0; i < in.len; i++)
			wh_tcp_conn_input(t.c, in.data + i, 1);
	else
		wh_tcp_conn_input(t.c, in.data, in.len);
	wh_tcp_ep_flush(ep);
	assert_int_equal(t.opens, 1);
	assert_int_equal(t.got_len, 5);
	assert_memory_equal(t.got, "hello", 5);
	assert_true(t.fin);
	n = frames(&t.out, types, 8, data, &dlen);
	assert_true(n >= 2);
	assert_int_equal(types[0], WH_MUX_SETTINGS);
	assert_int_equal(dlen, 2);
	assert_memory_equal(data, "ok", 2);
	assert_int_equal(t.closes, 1); /* both FINs: the stream is done */
	assert_int_equal(t.conn_closes, 0);
	wh_tcp_ep_del(ep);
	assert_int_equal(t.conn_closes, 1);
	wh_buf_free(&in);
	wh_buf_free(&t.out);
}

static void test_serve_whole(void **state)
{
	(void)state;
	serve_one(false);
}

static void test_serve_bytewise(void **state)
{
	(void)state;
	serve_one(true);
}

static void test_no_data_after_reset(void **state)
{
	struct wh_tcp_ep *ep;
	struct wh_buf in;
	struct t t;

	(void)state;
	memset(&t, 0, sizeof(t));
	t.reset_new = true;
	ep = detached(&t, &in);
	put_settings(&in);
	put(&in, WH_MUX_DATA, 0, 1, "a", 1);
	put(&in, WH_MUX_DATA, 0, 1, "b", 1);
	wh_tcp_conn_input(t.c, in.data, in.len);
	wh_buf_reset(&in);
	put(&in, WH_MUX_DATA, WH_MUX_FLAG_FIN, 1, "c", 1);
	wh_tcp_conn_input(t.c, in.data, in.len);
	assert_int_equal(t.opens, 1);
	assert_int_equal(t.got_len, 0); /* nothing after the reset */
	assert_int_equal(t.conn_closes, 0);
	wh_tcp_ep_flush(ep); /* the reset stream goes */
	assert_int_equal(t.closes, 1);
	/* and what comes for it now is dropped as for any stream gone */
	wh_tcp_conn_input(t.c, in.data, in.len);
	assert_int_equal(t.got_len, 0);
	assert_int_equal(t.conn_closes, 0);
	wh_tcp_ep_del(ep);
	assert_int_equal(t.conn_closes, 1);
	wh_buf_free(&in);
	wh_buf_free(&t.out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serve_whole),
		cmocka_unit_test(test_serve_bytewise),
		cmocka_unit_test(test_no_data_after_reset),
	};

	wh_log_set_level(WH_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
