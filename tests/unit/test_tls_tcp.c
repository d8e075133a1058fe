/*
 * test_tls_tcp.c - the TCP transport's server against a hand-made TLS
 * client that breaks the multiplexing rules: each violation gets a CLOSE
 * frame with application error 1 and the connection ends, while the
 * server goes on serving; unknown frame types are skipped, a PING is
 * answered.  Replies are sent in order, small ones first, and a stream
 * blocked on its credit does not hold back the others.  The server runs
 * on its own thread; the client blocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "common/wh_err.h"
#include "net/wh_mux.h"
#include "net/wh_tls.h"
#include "net/wh_tls_tcp.h"
#include "proto/wh_proto.h"

static struct wh_tcp_ep *ep;
static struct sockaddr_storage srv_addr;
static socklen_t srv_len;
static pthread_t thread;
static atomic_bool stop;
static atomic_int accepted, closed, protocol_errors;

/* ---------------------------------------------------------- server */

static void s_accept(struct wh_tcp_conn *c, void *ud)
{
	(void)ud;
	wh_tcp_conn_set_ud(c, &accepted);
	accepted++;
}

static void s_open(struct wh_tcp_conn *c, struct wh_tcp_stream *s, void *ud)
{
	(void)c;
	(void)s;
	(void)ud;
}

/* s_data - "SEND" and a length (big-endian) with FIN asks for a reply of
 * that many bytes, each the stream id's low byte; anything else keeps the
 * stream open with no reply */
static int s_data(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
		  const uint8_t *data, size_t len, bool fin, void *ud)
{
	size_t n;
	uint8_t *reply;

	(void)ud;
	if (!fin || len != 8 || memcmp(data, "SEND", 4) != 0)
		return 0;
	n = (size_t)data[4] << 24 | (size_t)data[5] << 16 |
	    (size_t)data[6] << 8 | data[7];
	reply = malloc(n ? n : 1);
	if (!reply)
		return -1;
	memset(reply, (int)(wh_tcp_stream_id(s) & 0xff), n);
	wh_tcp_send(c, s, reply, n, true, free);
	return 0;
}

static void s_close(struct wh_tcp_conn *c, int err, const char *reason,
		    void *ud)
{
	(void)c;
	(void)reason;
	(void)ud;
	if (err == WH_ERR_PROTO)
		protocol_errors++;
	closed++;
}

static const struct wh_tcp_cbs cbs = {
	.on_accept = s_accept,
	.on_stream_open = s_open,
	.on_stream_data = s_data,
	.on_close = s_close,
};

static void *server_main(void *arg)
{
	(void)arg;
	while (!stop) {
		struct pollfd p = { .fd = wh_tcp_ep_fd(ep), .events = POLLIN };
		int t = wh_tcp_ep_timeout_ms(ep);

		poll(&p, 1, t < 0 || t > 20 ? 20 : t);
		wh_tcp_ep_read(ep);
		wh_tcp_ep_expire(ep);
		wh_tcp_ep_flush(ep);
	}
	return NULL;
}

static int setup(void **state)
{
	struct sockaddr_in a;
	struct wh_quic_config cfg;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	wh_quic_config_default(&cfg, true);
	if (wh_tcp_server_new((struct sockaddr *)&a, sizeof(a), &cfg, &cbs,
			      NULL, &ep) < 0)
		return -1;
	wh_tcp_ep_local_addr(ep, &srv_addr, &srv_len);
	return pthread_create(&thread, NULL, server_main, NULL);
}

static int teardown(void **state)
{
	(void)state;
	stop = true;
	pthread_join(thread, NULL);
	wh_tcp_ep_del(ep);
	return 0;
}

/* ---------------------------------------------------------- client */

struct raw {
	int fd;
	gnutls_session_t tls;
	gnutls_certificate_credentials_t cred;
	uint8_t in[WH_MUX_MAX_FRAME * 2];
	size_t inlen;
};

static void raw_connect(struct raw *r)
{
	gnutls_datum_t alpn = { (unsigned char *)WH_ALPN,
				(unsigned int)strlen(WH_ALPN) };
	struct timeval tv = { .tv_sec = 10 };
	int rv;

	memset(r, 0, sizeof(*r));
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(r->fd >= 0);
	setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(r->fd, (struct sockaddr *)&srv_addr,
				 srv_len), 0);
	assert_int_equal(gnutls_certificate_allocate_credentials(&r->cred), 0);
	assert_int_equal(gnutls_init(&r->tls, GNUTLS_CLIENT), 0);
	assert_int_equal(gnutls_priority_set_direct(r->tls,
						    wh_tls_priority(1), NULL),
			 0);
	gnutls_credentials_set(r->tls, GNUTLS_CRD_CERTIFICATE, r->cred);
	gnutls_alpn_set_protocols(r->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY);
	gnutls_transport_set_int(r->tls, r->fd);
	do {
		rv = gnutls_handshake(r->tls);
	} while (rv < 0 && !gnutls_error_is_fatal(rv));
	assert_int_equal(rv, 0);
}

static void raw_close(struct raw *r)
{
	gnutls_deinit(r->tls);
	gnutls_certificate_free_credentials(r->cred);
	close(r->fd);
}

static void raw_send(struct raw *r, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t k = gnutls_record_send(r->tls, b, n);

		if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
			continue;
		if (k < 0)
			return; /* the server may have closed already */
		b += k;
		n -= (size_t)k;
	}
}

static void raw_frame(struct raw *r, uint8_t type, uint8_t flags,
		      uint32_t stream, const void *payload, uint16_t len)
{
	uint8_t buf[WH_MUX_MAX_FRAME];

	wh_mux_put_hdr(buf, type, flags, len, stream);
	if (len)
		memcpy(buf + WH_MUX_HDR_LEN, payload, len);
	raw_send(r, buf, WH_MUX_HDR_LEN + (size_t)len);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* raw_settings_window - SETTINGS letting the server send |stream_window|
 * bytes per stream, 15 MiB in all */
static void raw_settings_window(struct raw *r, uint32_t stream_window)
{
	uint8_t p[12];

	put32(p, 0);
	put32(p + 4, stream_window);
	put32(p + 8, 0xf00000);
	raw_frame(r, WH_MUX_SETTINGS, 0, 0, p, sizeof(p));
}

static void raw_settings(struct raw *r)
{
	raw_settings_window(r, 0x200000);
}

/* raw_next - the next frame from the server: 1, 0 at the end. */
static int raw_next(struct raw *r, struct wh_mux_frame *f)
{
	for (;;) {
		int n = wh_mux_decode(r->in, r->inlen, f);
		ssize_t k;

		if (n > 0) {
			/* keep the payload readable: copy it out first */
			static uint8_t payload[WH_MUX_MAX_DATA];

			memcpy(payload, f->payload, f->length);
			f->payload = payload;
			memmove(r->in, r->in + n, r->inlen - (size_t)n);
			r->inlen -= (size_t)n;
			return 1;
		}
		assert_int_equal(n, WH_ERR_SHORT);
		k = gnutls_record_recv(r->tls, r->in + r->inlen,
				       sizeof(r->in) - r->inlen);
		if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
			return 0; /* the receive timeout */
		if (k <= 0)
			return 0;
		r->inlen += (size_t)k;
	}
}

/* expect_close - frames until CLOSE; returns its application error. */
static long expect_close(struct raw *r)
{
	struct wh_mux_frame f;

	while (raw_next(r, &f))
		if (f.type == WH_MUX_CLOSE)
			return f.value;
	return -1;
}

static void hello_window(struct raw *r, uint32_t stream_window)
{
	struct wh_mux_frame f;

	raw_connect(r);
	assert_int_equal(raw_next(r, &f), 1);
	assert_int_equal(f.type, WH_MUX_SETTINGS);
	assert_int_equal(f.max_streams, 128);
	raw_settings_window(r, stream_window);
}

static void hello(struct raw *r)
{
	hello_window(r, 0x200000);
}

/* put_request - a request for |n| bytes on |stream| into |p| (one frame) */
static size_t put_request(uint8_t *p, uint32_t stream, uint32_t n)
{
	wh_mux_put_hdr(p, WH_MUX_DATA, WH_MUX_FLAG_FIN, 8, stream);
	memcpy(p + WH_MUX_HDR_LEN, "SEND", 4);
	put32(p + WH_MUX_HDR_LEN + 4, n);
	return WH_MUX_HDR_LEN + 8;
}

/* The DATA frames received, as runs: a run is one stream's frames back to
 * back, its bytes, and whether the last of them had FIN. */
struct run {
	uint32_t stream;
	size_t bytes;
	bool fin;
};

/* read_runs - DATA frames into runs[] until |fins| streams have ended or
 * |limit| bytes came; returns the number of runs. */
static size_t read_runs(struct raw *r, struct run *runs, size_t max,
			int fins, size_t limit)
{
	struct wh_mux_frame f;
	size_t nrun = 0, total = 0;

	while (fins > 0 && total < limit) {
		assert_int_equal(raw_next(r, &f), 1);
		if (f.type != WH_MUX_DATA)
			continue;
		for (size_t i = 0; i < f.length; i++)
			assert_int_equal(f.payload[i], f.stream & 0xff);
		if (nrun == 0 || runs[nrun - 1].stream != f.stream ||
		    runs[nrun - 1].fin) {
			assert_true(nrun < max);
			runs[nrun].stream = f.stream;
			runs[nrun].bytes = 0;
			runs[nrun].fin = false;
			nrun++;
		}
		runs[nrun - 1].bytes += f.length;
		total += f.length;
		if (f.flags & WH_MUX_FLAG_FIN) {
			runs[nrun - 1].fin = true;
			fins--;
		}
	}
	return nrun;
}

static void assert_run(const struct run *run, uint32_t stream, size_t bytes,
		       bool fin)
{
	assert_int_equal(run->stream, stream);
	assert_int_equal(run->bytes, bytes);
	assert_int_equal(run->fin, fin);
}

/* ----------------------------------------------------------- tests */

static void test_first_frame_not_settings(void **state)
{
	struct raw r;

	(void)state;
	raw_connect(&r);
	raw_frame(&r, WH_MUX_DATA, 0, 1, "x", 1);
	assert_int_equal(expect_close(&r), 1);
	raw_close(&r);
}

static void test_settings_twice(void **state)
{
	struct raw r;

	(void)state;
	hello(&r);
	raw_settings(&r);
	assert_int_equal(expect_close(&r), 1);
	raw_close(&r);
}

static void test_oversized_frame(void **state)
{
	struct raw r;
	uint8_t hdr[WH_MUX_HDR_LEN];

	(void)state;
	hello(&r);
	wh_mux_put_hdr(hdr, WH_MUX_DATA, 0, WH_MUX_MAX_DATA + 1, 1);
	raw_send(&r, hdr, sizeof(hdr));
	assert_int_equal(expect_close(&r), 1);
	raw_close(&r);
}

static void test_bad_flags(void **state)
{
	struct raw r;

	(void)state;
	hello(&r);
	raw_frame(&r, WH_MUX_DATA, 0x80, 1, "x", 1);
	assert_int_equal(expect_close(&r), 1);
	raw_close(&r);
}

static void test_stream_out_of_order(void **state)
{
	struct raw r;

	(void)state;
	hello(&r);
	raw_frame(&r, WH_MUX_DATA, 0, 2, "x", 1);
	assert_int_equal(expect_close(&r), 1);
	raw_close(&r);
}

static void test_too_many_streams(void **state)
{
	struct raw r;

	(void)state;
	hello(&r);
	for (uint32_t id = 1; id <= 129; id++)
		raw_frame(&r, WH_MUX_DATA, 0, id, "x", 1);
	assert_int_equal(expect_close(&r), 1);
	raw_close(&r);
}

static void test_zero_credit(void **state)
{
	struct raw r;

	(void)state;
	hello(&r);
	raw_frame(&r, WH_MUX_CREDIT, 0, 0, "\0\0\0\0", 4);
	assert_int_equal(expect_close(&r), 1);
	raw_close(&r);
}

static void test_unknown_skipped_ping_answered(void **state)
{
	struct raw r;
	struct wh_mux_frame f;
	int got;

	(void)state;
	hello(&r);
	raw_frame(&r, 0x77, 0x55, 9, "future", 6);
	raw_frame(&r, WH_MUX_PING, 0, 0, "12345678", 8);
	do {
		got = raw_next(&r, &f);
	} while (got && f.type != WH_MUX_PING);
	assert_int_equal(got, 1);
	assert_int_equal(f.flags, WH_MUX_FLAG_ACK);
	assert_memory_equal(f.ping, "12345678", 8);
	raw_close(&r);
}

/* A client that sends pings but never reads the answers is dropped once
 * they pile up, instead of growing the host's memory. */
static void test_pings_not_read(void **state)
{
	static uint8_t burst[16 * 4096];
	int before = protocol_errors;
	struct raw r;

	(void)state;
	hello(&r);
	for (size_t i = 0; i < sizeof(burst); i += 16) {
		wh_mux_put_hdr(burst + i, WH_MUX_PING, 0, 8, 0);
		memset(burst + i + 8, 'p', 8);
	}
	/* 32 MiB of pings: far more answers than the socket buffers hold */
	for (int i = 0; i < 512 && protocol_errors == before; i++)
		raw_send(&r, burst, sizeof(burst));
	for (int i = 0; i < 250 && protocol_errors == before; i++)
		usleep(20000);
	assert_int_equal(protocol_errors, before + 1);
	raw_close(&r);
}

/* Two large replies and a small one asked for at once (one TLS record, so
 * the server queues all three before it sends): the small one comes first
 * although asked for last, then each large one whole, in the order asked,
 * not a frame of each in turn. */
static void test_replies_in_order(void **state)
{
	uint8_t req[3 * (WH_MUX_HDR_LEN + 8)];
	struct run runs[8];
	size_t len = 0, nrun;
	struct raw r;

	(void)state;
	hello(&r);
	len += put_request(req + len, 1, 300000);
	len += put_request(req + len, 2, 200000);
	len += put_request(req + len, 3, 40000);
	raw_send(&r, req, len);
	nrun = read_runs(&r, runs, 8, 3, SIZE_MAX);
	assert_int_equal(nrun, 3);
	assert_run(&runs[0], 3, 40000, true);
	assert_run(&runs[1], 1, 300000, true);
	assert_run(&runs[2], 2, 200000, true);
	raw_close(&r);
}

/* A large reply blocked on its stream's credit does not hold back a small
 * one; when credit comes together with another small request, the small
 * reply goes ahead of the rest of the large one. */
static void test_blocked_stream_skipped(void **state)
{
	uint8_t req[2 * (WH_MUX_HDR_LEN + 8)];
	struct run runs[8];
	size_t len, nrun;
	struct raw r;

	(void)state;
	hello_window(&r, 65536);
	len = put_request(req, 1, 200000);
	raw_send(&r, req, len);
	nrun = read_runs(&r, runs, 8, 1, 65536);
	assert_int_equal(nrun, 1);
	assert_run(&runs[0], 1, 65536, false); /* its window, then blocked */

	len = put_request(req, 2, 30000);
	raw_send(&r, req, len);
	nrun = read_runs(&r, runs, 8, 1, SIZE_MAX);
	assert_int_equal(nrun, 1);
	assert_run(&runs[0], 2, 30000, true);

	/* the rest of stream 1's credit, then a small request, one record */
	wh_mux_put_hdr(req, WH_MUX_CREDIT, 0, 4, 1);
	put32(req + WH_MUX_HDR_LEN, 200000 - 65536);
	len = WH_MUX_HDR_LEN + 4;
	len += put_request(req + len, 3, 20000);
	raw_send(&r, req, len);
	nrun = read_runs(&r, runs, 8, 2, SIZE_MAX);
	assert_int_equal(nrun, 2);
	assert_run(&runs[0], 3, 20000, true);
	assert_run(&runs[1], 1, 200000 - 65536, true);
	raw_close(&r);
}

static void test_server_survives(void **state)
{
	struct raw r;
	int before = protocol_errors;

	(void)state;
	/* every violation above was one connection's protocol error */
	assert_true(before >= 8);
	hello(&r);
	raw_frame(&r, WH_MUX_DATA, WH_MUX_FLAG_FIN, 1, "ok", 2);
	raw_frame(&r, WH_MUX_CLOSE, 0, 0, "\0\0\0\0bye", 7);
	assert_int_equal(expect_close(&r), -1); /* it just goes */
	raw_close(&r);
	assert_int_equal(protocol_errors, before);
}

/* every connection's socket sends at once, gives up on unacknowledged data
 * after the idle timeout, and retransmits at most a second apart where the
 * kernel lets it choose (TCP_RTO_MAX_MS, Linux 6.15) */
static void test_socket_tuning(void **state)
{
#ifndef TCP_RTO_MAX_MS
#define TCP_RTO_MAX_MS 44
#endif
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), v = 0;
	socklen_t len = sizeof(v);

	(void)state;
	assert_true(fd >= 0);
	wh_tcp_tune_socket(fd, 30000);
	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
	assert_int_not_equal(v, 0);
	len = sizeof(v);
	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, &len),
			 0);
	assert_int_equal(v, 30000);
	len = sizeof(v);
	if (getsockopt(fd, IPPROTO_TCP, TCP_RTO_MAX_MS, &v, &len) != 0) {
		close(fd);
		skip(); /* an older kernel: its default backoff */
	}
	assert_int_equal(v, 1000);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_frame_not_settings),
		cmocka_unit_test(test_settings_twice),
		cmocka_unit_test(test_oversized_frame),
		cmocka_unit_test(test_bad_flags),
		cmocka_unit_test(test_stream_out_of_order),
		cmocka_unit_test(test_too_many_streams),
		cmocka_unit_test(test_zero_credit),
		cmocka_unit_test(test_unknown_skipped_ping_answered),
		cmocka_unit_test(test_pings_not_read),
		cmocka_unit_test(test_replies_in_order),
		cmocka_unit_test(test_blocked_stream_skipped),
		cmocka_unit_test(test_server_survives),
		cmocka_unit_test(test_socket_tuning),
	};

	signal(SIGPIPE, SIG_IGN); /* writes to a connection the host closed */
	return cmocka_run_group_tests(tests, setup, teardown);
}
