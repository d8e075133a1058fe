/*
 * test_tls_tcp.c - the TCP transport's server against a hand-made TLS
 * client that breaks the multiplexing rules: each violation gets a CLOSE
 * frame with application error 1 and the connection ends, while the
 * server goes on serving; unknown frame types are skipped, a PING is
 * answered.  The server runs on its own thread; the client blocks.
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

static int s_data(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
		  const uint8_t *data, size_t len, bool fin, void *ud)
{
	(void)c;
	(void)s;
	(void)data;
	(void)len;
	(void)fin;
	(void)ud;
	return 0; /* keeps every stream open: no reply */
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

static void raw_settings(struct raw *r)
{
	static const uint8_t p[12] = { 0, 0, 0, 0, 0, 0x20, 0, 0,
				       0, 0xf0, 0, 0 };

	raw_frame(r, WH_MUX_SETTINGS, 0, 0, p, sizeof(p));
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

static void hello(struct raw *r)
{
	struct wh_mux_frame f;

	raw_connect(r);
	assert_int_equal(raw_next(r, &f), 1);
	assert_int_equal(f.type, WH_MUX_SETTINGS);
	assert_int_equal(f.max_streams, 128);
	raw_settings(r);
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
		cmocka_unit_test(test_server_survives),
		cmocka_unit_test(test_socket_tuning),
	};

	signal(SIGPIPE, SIG_IGN); /* writes to a connection the host closed */
	return cmocka_run_group_tests(tests, setup, teardown);
}
