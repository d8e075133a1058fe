/*
 * test_mux.c - the TCP transport's multiplexing frames: every type
 * round-trips, truncations wait for more bytes, and each broken layout or
 * limit is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/wh_err.h"
#include "net/wh_mux.h"

static struct wh_mux_frame frame(uint8_t type, uint32_t stream,
				 uint32_t value)
{
	struct wh_mux_frame f;

	memset(&f, 0, sizeof(f));
	f.type = type;
	f.stream = stream;
	f.value = value;
	return f;
}

/* roundtrip - encode |f|, decode it back, check every prefix is short. */
static struct wh_mux_frame roundtrip(const struct wh_mux_frame *f,
				     uint8_t *buf, size_t cap)
{
	struct wh_mux_frame g;
	int n = wh_mux_encode(f, buf, cap);

	assert_true(n >= WH_MUX_HDR_LEN);
	for (int i = 0; i < n; i++)
		assert_int_equal(wh_mux_decode(buf, (size_t)i, &g),
				 WH_ERR_SHORT);
	assert_int_equal(wh_mux_decode(buf, (size_t)n, &g), n);
	assert_true(g.known);
	assert_int_equal(g.type, f->type);
	assert_int_equal(g.stream, f->stream);
	assert_int_equal(g.length, n - WH_MUX_HDR_LEN);
	return g;
}

static void test_roundtrip(void **state)
{
	uint8_t buf[WH_MUX_HDR_LEN + WH_MUX_MAX_REASON];
	struct wh_mux_frame f, g;

	(void)state;
	f = frame(WH_MUX_SETTINGS, 0, 0);
	f.max_streams = 128;
	f.stream_window = 2u << 20;
	f.conn_window = 16u << 20;
	g = roundtrip(&f, buf, sizeof(buf));
	assert_int_equal(g.max_streams, 128);
	assert_int_equal(g.stream_window, 2u << 20);
	assert_int_equal(g.conn_window, 16u << 20);

	f = frame(WH_MUX_RESET, 7, 3);
	assert_int_equal(roundtrip(&f, buf, sizeof(buf)).value, 3);
	f = frame(WH_MUX_CREDIT, 0, 65536);
	assert_int_equal(roundtrip(&f, buf, sizeof(buf)).value, 65536);
	f = frame(WH_MUX_CREDIT, 9, 1);
	assert_int_equal(roundtrip(&f, buf, sizeof(buf)).value, 1);
	f = frame(WH_MUX_STREAMS, 0, 0xffffffffu);
	assert_int_equal(roundtrip(&f, buf, sizeof(buf)).value, 0xffffffffu);

	f = frame(WH_MUX_PING, 0, 0);
	memcpy(f.ping, "\1\2\3\4\5\6\7\10", 8);
	f.flags = WH_MUX_FLAG_ACK;
	g = roundtrip(&f, buf, sizeof(buf));
	assert_memory_equal(g.ping, "\1\2\3\4\5\6\7\10", 8);
	assert_int_equal(g.flags, WH_MUX_FLAG_ACK);

	f = frame(WH_MUX_CLOSE, 0, 2);
	f.payload = (const uint8_t *)"wrong join code";
	f.length = 15;
	g = roundtrip(&f, buf, sizeof(buf));
	assert_int_equal(g.value, 2);
	assert_int_equal(g.length, 4 + 15);
	assert_memory_equal(g.payload + 4, "wrong join code", 15);
}

static void test_close_reason_cut(void **state)
{
	uint8_t buf[WH_MUX_HDR_LEN + WH_MUX_MAX_REASON], big[500];
	struct wh_mux_frame f = frame(WH_MUX_CLOSE, 0, 1), g;

	(void)state;
	memset(big, 'x', sizeof(big));
	f.payload = big;
	f.length = sizeof(big);
	g = roundtrip(&f, buf, sizeof(buf));
	assert_int_equal(g.length, WH_MUX_MAX_REASON);
	/* no room: refused, nothing written past |cap| */
	assert_int_equal(wh_mux_encode(&f, buf, 20), WH_ERR_TOOBIG);
}

static void test_data(void **state)
{
	static uint8_t buf[WH_MUX_MAX_FRAME + 1];
	struct wh_mux_frame g;

	(void)state;
	wh_mux_put_hdr(buf, WH_MUX_DATA, WH_MUX_FLAG_FIN, WH_MUX_MAX_DATA,
		       0x01020304);
	memset(buf + WH_MUX_HDR_LEN, 0xab, WH_MUX_MAX_DATA);
	assert_int_equal(wh_mux_decode(buf, WH_MUX_MAX_FRAME - 1, &g),
			 WH_ERR_SHORT);
	assert_int_equal(wh_mux_decode(buf, sizeof(buf), &g),
			 WH_MUX_MAX_FRAME);
	assert_int_equal(g.stream, 0x01020304);
	assert_int_equal(g.flags, WH_MUX_FLAG_FIN);
	assert_ptr_equal(g.payload, buf + WH_MUX_HDR_LEN);
	/* an empty DATA with FIN ends a stream */
	wh_mux_put_hdr(buf, WH_MUX_DATA, WH_MUX_FLAG_FIN, 0, 5);
	assert_int_equal(wh_mux_decode(buf, WH_MUX_HDR_LEN, &g),
			 WH_MUX_HDR_LEN);
	/* DATA is never encoded by wh_mux_encode (bytes follow a header) */
	g = frame(WH_MUX_DATA, 1, 0);
	assert_int_equal(wh_mux_encode(&g, buf, sizeof(buf)), WH_ERR_PROTO);
}

static void test_refused(void **state)
{
	uint8_t buf[64];
	struct wh_mux_frame g;

	(void)state;
	memset(buf, 0, sizeof(buf));
	/* over the frame limit: refused from the header alone */
	wh_mux_put_hdr(buf, WH_MUX_DATA, 0, WH_MUX_MAX_DATA + 1, 1);
	assert_int_equal(wh_mux_decode(buf, WH_MUX_HDR_LEN, &g),
			 WH_ERR_PROTO);
	/* DATA and RESET need a stream; the connection frames need 0 */
	wh_mux_put_hdr(buf, WH_MUX_DATA, 0, 1, 0);
	assert_int_equal(wh_mux_decode(buf, 9, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_RESET, 0, 4, 0);
	assert_int_equal(wh_mux_decode(buf, 12, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_SETTINGS, 0, 12, 1);
	assert_int_equal(wh_mux_decode(buf, 20, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_STREAMS, 0, 4, 3);
	assert_int_equal(wh_mux_decode(buf, 12, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_PING, 0, 8, 3);
	assert_int_equal(wh_mux_decode(buf, 16, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_CLOSE, 0, 4, 3);
	assert_int_equal(wh_mux_decode(buf, 12, &g), WH_ERR_PROTO);
	/* wrong lengths for fixed layouts */
	wh_mux_put_hdr(buf, WH_MUX_SETTINGS, 0, 11, 0);
	assert_int_equal(wh_mux_decode(buf, 19, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_CREDIT, 0, 5, 0);
	assert_int_equal(wh_mux_decode(buf, 13, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_PING, 0, 7, 0);
	assert_int_equal(wh_mux_decode(buf, 15, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_CLOSE, 0, 3, 0);
	assert_int_equal(wh_mux_decode(buf, 11, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_CLOSE, 0, WH_MUX_MAX_REASON + 1, 0);
	assert_int_equal(wh_mux_decode(buf, sizeof(buf), &g), WH_ERR_SHORT);
	/* unknown flags */
	wh_mux_put_hdr(buf, WH_MUX_DATA, 0x02, 0, 1);
	assert_int_equal(wh_mux_decode(buf, 8, &g), WH_ERR_PROTO);
	wh_mux_put_hdr(buf, WH_MUX_CREDIT, 0x01, 4, 0);
	buf[11] = 1;
	assert_int_equal(wh_mux_decode(buf, 12, &g), WH_ERR_PROTO);
	/* a zero credit increment */
	wh_mux_put_hdr(buf, WH_MUX_CREDIT, 0, 4, 0);
	memset(buf + 8, 0, 4);
	assert_int_equal(wh_mux_decode(buf, 12, &g), WH_ERR_PROTO);
	g = frame(WH_MUX_CREDIT, 0, 0);
	assert_int_equal(wh_mux_encode(&g, buf, sizeof(buf)), WH_ERR_PROTO);
	g = frame(WH_MUX_RESET, 0, 1);
	assert_int_equal(wh_mux_encode(&g, buf, sizeof(buf)), WH_ERR_PROTO);
}

static void test_unknown_skipped(void **state)
{
	uint8_t buf[32];
	struct wh_mux_frame g;

	(void)state;
	wh_mux_put_hdr(buf, 0x42, 0xff, 3, 77);
	memcpy(buf + 8, "abc", 3);
	assert_int_equal(wh_mux_decode(buf, 11, &g), 11);
	assert_false(g.known);
	assert_int_equal(g.type, 0x42);
	assert_int_equal(g.length, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_close_reason_cut),
		cmocka_unit_test(test_data),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_unknown_skipped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
