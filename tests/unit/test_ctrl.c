/*
 * test_ctrl.c - the control streams' state machines (host/wh_hctrl.c,
 * client/wh_cctrl.c) talking to each other without a connection: an
 * honest run, a wrong code, a locked host, frames out of order, and a
 * client that takes nothing more once it closed the connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/wh_cctrl.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "host/wh_hctrl.h"
#include "proto/wh_proto.h"

static const char code[] = "7KJM-XBCD-QRST-VWYZ",
		  other[] = "7KJM-XBCD-QRST-VWY2";
static const uint8_t sid[32] = { 9, 8, 7 };

struct pair {
	struct wh_hctrl h;
	struct wh_cctrl c;
	struct wh_buf to_host, to_client;
	bool locked;
	unsigned h_closes, h_failures, h_authed;
	uint64_t h_close_err;
	enum wh_cctrl_phase phase;
	unsigned c_closes, c_fails, c_sends, c_invals;
	uint64_t c_caps; /* what the client took the host to agree to */
	int c_err;
};

static int h_send(void *ud, struct wh_buf *b, bool fin)
{
	struct pair *p = ud;

	(void)fin;
	assert_int_equal(wh_buf_append(&p->to_client, b->data, b->len), 0);
	wh_buf_free(b);
	return 0;
}

static void h_close(void *ud, uint64_t app_err, const char *reason)
{
	struct pair *p = ud;

	(void)reason;
	p->h_closes++;
	p->h_close_err = app_err;
}

static int h_exporter(void *ud, uint8_t *out, size_t len)
{
	(void)ud;
	memcpy(out, sid, len);
	return 0;
}

static void h_failure(void *ud, const char *why)
{
	(void)why;
	((struct pair *)ud)->h_failures++;
}

static bool h_locked(void *ud)
{
	return ((struct pair *)ud)->locked;
}

static void h_authed(void *ud)
{
	((struct pair *)ud)->h_authed++;
}

static const struct wh_hctrl_ops h_ops = {
	.send = h_send, .close = h_close, .exporter = h_exporter,
	.failure = h_failure, .locked = h_locked, .authed = h_authed,
};

static enum wh_cctrl_phase c_phase(void *ud)
{
	return ((struct pair *)ud)->phase;
}

static int c_send(void *ud, struct wh_buf *b)
{
	struct pair *p = ud;

	p->c_sends++;
	assert_int_equal(wh_buf_append(&p->to_host, b->data, b->len), 0);
	wh_buf_free(b);
	return 0;
}

static void c_close(void *ud, uint64_t app_err, const char *reason)
{
	(void)app_err;
	(void)reason;
	((struct pair *)ud)->c_closes++;
}

static void c_fail(void *ud, int err, const char *msg)
{
	struct pair *p = ud;

	(void)msg;
	p->c_fails++;
	p->c_err = err;
	p->phase = WH_CCTRL_OTHER;
}

static void c_authing(void *ud, uint64_t caps)
{
	((struct pair *)ud)->c_caps = caps;
	((struct pair *)ud)->phase = WH_CCTRL_WAIT_OK;
}

static void c_ready(void *ud)
{
	((struct pair *)ud)->phase = WH_CCTRL_READY;
}

static void c_inval(void *ud, const char *dir, size_t dlen,
		    const char *name, size_t nlen)
{
	(void)dir;
	(void)dlen;
	(void)name;
	(void)nlen;
	((struct pair *)ud)->c_invals++;
}

static const struct wh_cctrl_ops c_ops = {
	.phase = c_phase, .send = c_send, .close = c_close, .fail = c_fail,
	.authing = c_authing, .ready = c_ready, .inval = c_inval,
};

static void pair_init(struct pair *p, const char *client_code)
{
	memset(p, 0, sizeof(*p));
	wh_buf_init(&p->to_host);
	wh_buf_init(&p->to_client);
	wh_hctrl_init(&p->h, &h_ops, p, code,
		      WH_CAP_INVAL | WH_CAP_SMALL | WH_CAP_ZSMALL, "client #1");
	wh_cctrl_init(&p->c, &c_ops, p);
	p->phase = WH_CCTRL_WAIT_ACK;
	assert_int_equal(wh_cctrl_hello(&p->c, client_code, sid, sizeof(sid),
					WH_CAP_INVAL | WH_CAP_ZSTD |
						WH_CAP_SMALL | WH_CAP_ZSMALL),
			 0);
}

static void pair_free(struct pair *p)
{
	wh_hctrl_free(&p->h);
	wh_cctrl_free(&p->c);
	wh_buf_free(&p->to_host);
	wh_buf_free(&p->to_client);
}

/* run - deliver what the wires hold, byte by byte, until quiet */
static void run(struct pair *p)
{
	for (int round = 0; round < 4; round++) {
		struct wh_buf b;

		b = p->to_host;
		wh_buf_init(&p->to_host);
		for (size_t i = 0; i < b.len; i++)
			assert_int_equal(
				wh_hctrl_input(&p->h, b.data + i, 1, false), 0);
		wh_buf_free(&b);
		b = p->to_client;
		wh_buf_init(&p->to_client);
		for (size_t i = 0; i < b.len; i++)
			wh_cctrl_input(&p->c, b.data + i, 1);
		wh_buf_free(&b);
	}
}

static void frame(struct wh_buf *b, uint16_t type, const void *payload,
		  size_t len)
{
	uint8_t hdr[WH_FRAME_HDR_LEN] = { 0 };

	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
	hdr[4] = (uint8_t)(type >> 8);
	hdr[5] = (uint8_t)type;
	assert_int_equal(wh_buf_append(b, hdr, sizeof(hdr)), 0);
	if (len)
		assert_int_equal(wh_buf_append(b, payload, len), 0);
}

static void test_honest(void **state)
{
	struct pair p;

	(void)state;
	pair_init(&p, code);
	run(&p);
	assert_int_equal(p.h.state, WH_HCTRL_AUTHED);
	assert_int_equal(p.h_authed, 1);
	assert_int_equal(p.phase, WH_CCTRL_READY);
	assert_int_equal(p.h_closes + p.c_closes + p.c_fails, 0);
	/* ZSMALL only with ZSTD, which this host does not offer */
	assert_int_equal(p.h.caps, WH_CAP_INVAL | WH_CAP_SMALL);
	assert_int_equal(p.c_caps, p.h.caps);
	pair_free(&p);
}

/* a host whose HELLO_ACK claims capabilities the client never offered
 * (CHUNKS, unknown bits) or ZSMALL without ZSTD: the client takes only
 * what it offered and what makes sense together */
static void test_caps_beyond_the_offer(void **state)
{
	struct pair p;
	struct wh_buf out;
	struct wh_msg m;

	(void)state;
	pair_init(&p, code);
	assert_int_equal(wh_hctrl_input(&p.h, p.to_host.data, p.to_host.len,
					false),
			 0);
	wh_buf_reset(&p.to_host);
	assert_int_equal(wh_msg_decode(p.to_client.data, p.to_client.len,
				       WH_CCTRL_MAX, &m),
			 0);
	assert_int_equal(m.hdr.type, WH_MSG_HELLO_ACK);
	m.u.hello_ack.caps = WH_CAP_INVAL | WH_CAP_CHUNKS | WH_CAP_ZSMALL |
			     (1ULL << 40);
	wh_buf_init(&out);
	assert_int_equal(wh_msg_append(&out, &m), 0);
	wh_buf_reset(&p.to_client);
	assert_int_equal(wh_cctrl_input(&p.c, out.data, out.len), 0);
	assert_int_equal(p.phase, WH_CCTRL_WAIT_OK);
	assert_int_equal(p.c_caps, WH_CAP_INVAL);
	wh_buf_free(&out);
	pair_free(&p);
}

static void test_wrong_code(void **state)
{
	struct pair p;

	(void)state;
	pair_init(&p, other);
	run(&p);
	assert_int_not_equal(p.h.state, WH_HCTRL_AUTHED);
	assert_int_equal(p.c_fails, 1);
	assert_int_equal(p.c_err, WH_ERR_AUTH);
	assert_int_equal(p.c_closes, 1);
	/* the client left while the PAKE ran: one failed attempt */
	wh_hctrl_gone(&p.h);
	assert_int_equal(p.h_failures, 1);
	pair_free(&p);
}

static void test_locked(void **state)
{
	struct pair p;

	(void)state;
	pair_init(&p, code);
	p.locked = true;
	run(&p);
	assert_int_equal(p.h.state, WH_HCTRL_FAILED);
	assert_int_equal(p.h_close_err, WH_HCTRL_APP_ERR);
	assert_int_equal(p.c_err, WH_ERR_LOCKED);
	pair_free(&p);
}

static void test_auth_first(void **state)
{
	struct pair p;
	struct wh_buf b;
	uint8_t confirm[32] = { 0 };

	(void)state;
	pair_init(&p, code);
	wh_buf_init(&b);
	frame(&b, WH_MSG_AUTH, confirm, sizeof(confirm));
	assert_int_equal(wh_hctrl_input(&p.h, b.data, b.len, false), 0);
	assert_int_equal(p.h.state, WH_HCTRL_FAILED);
	assert_int_equal(p.h_closes, 1);
	/* FAILED takes nothing more */
	assert_int_equal(wh_hctrl_input(&p.h, p.to_host.data, p.to_host.len,
					false),
			 0);
	assert_int_equal(p.h_closes, 1);
	wh_buf_free(&b);
	pair_free(&p);
}

/* A frame out of order closes the connection, and what came with it in
 * the same bytes is not acted on: the HELLO_ACK after an early AUTH_OK
 * once went on to run the PAKE and send AUTH on a connection being
 * closed. */
static void test_nothing_after_close(void **state)
{
	struct pair p;
	struct wh_buf b, ack;

	(void)state;
	pair_init(&p, code);
	run(&p); /* through: READY */
	pair_free(&p);

	pair_init(&p, code);
	/* the host's honest HELLO_ACK, kept back */
	assert_int_equal(wh_hctrl_input(&p.h, p.to_host.data, p.to_host.len,
					false),
			 0);
	wh_buf_reset(&p.to_host);
	ack = p.to_client;
	wh_buf_init(&p.to_client);
	wh_buf_init(&b);
	frame(&b, WH_MSG_AUTH_OK, NULL, 0);
	assert_int_equal(wh_buf_append(&b, ack.data, ack.len), 0);
	assert_int_equal(p.c_sends, 1); /* HELLO */
	assert_int_equal(wh_cctrl_input(&p.c, b.data, b.len), 0);
	assert_int_equal(p.c_closes, 1);
	assert_int_equal(p.c_sends, 1); /* no AUTH */
	assert_int_equal(p.phase, WH_CCTRL_WAIT_ACK);
	/* nor later */
	assert_int_equal(wh_cctrl_input(&p.c, ack.data, ack.len), 0);
	assert_int_equal(p.c_sends, 1);
	/* a new connection starts afresh */
	wh_cctrl_reset(&p.c);
	assert_int_equal(wh_cctrl_input(&p.c, ack.data, ack.len), 0);
	wh_buf_free(&b);
	wh_buf_free(&ack);
	pair_free(&p);
}

static void test_oversized(void **state)
{
	struct pair p;
	struct wh_buf b;
	uint8_t junk[WH_HCTRL_MAX + 1];

	(void)state;
	pair_init(&p, code);
	memset(junk, 0, sizeof(junk));
	wh_buf_init(&b);
	frame(&b, WH_MSG_HELLO, junk, sizeof(junk));
	assert_int_equal(wh_hctrl_input(&p.h, b.data, b.len, false), 0);
	assert_int_equal(p.h.state, WH_HCTRL_FAILED);
	wh_buf_reset(&b);
	/* the client: more than WH_CCTRL_MAX held is an error */
	for (size_t i = 0; i < WH_CCTRL_MAX / sizeof(junk) + 2; i++)
		assert_int_equal(wh_buf_append(&b, junk, sizeof(junk)), 0);
	b.data[0] = 0x7f; /* a length beyond any frame */
	assert_true(wh_cctrl_input(&p.c, b.data, b.len) < 0);
	wh_buf_free(&b);
	pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_honest),
		cmocka_unit_test(test_caps_beyond_the_offer),
		cmocka_unit_test(test_wrong_code),
		cmocka_unit_test(test_locked),
		cmocka_unit_test(test_auth_first),
		cmocka_unit_test(test_nothing_after_close),
		cmocka_unit_test(test_oversized),
	};

	wh_log_set_level(WH_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
