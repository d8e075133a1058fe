/*
 * test_net.c - the transport interface on loopback, over QUIC and over
 * TLS/TCP alike: handshake and exporter agreement, large and many
 * concurrent streams (more than the peer allows at once), fairness of a
 * large reply towards small ones, resets, close with a reason and the idle
 * timeout; and the race picking QUIC when both work.  Both endpoints are
 * driven from this one thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/wh_err.h"
#include "common/wh_time.h"
#include "net/wh_net.h"

#include "net_pair.h"

#define NSTREAMS 300
#define BIG (3 * 1024 * 1024 + 17)
#define HUGE (24 * 1024 * 1024)
#define NSMALL 10

/* A request is echoed back, except "GIVE" + u32 n: n pattern bytes. */
struct side {
	struct wh_net_ep *ep;
	struct wh_net_conn *conn;
	bool handshake;
	bool closed;
	int close_err;
	char reason[128];
	size_t streams_opened, streams_closed;
	uint8_t exporter[32];
	size_t replies;
	size_t bytes_back;
	bool mismatch;
};

struct reply {
	size_t want;
	size_t got;
	bool done;
	bool keep; /* the test frees it, not c_sclose */
};

static struct side srv, cli;
static uint8_t *pattern;
static enum wh_net_transport transport;

/* ---------------------------------------------------------- server */

static void s_accept(struct wh_net_conn *c, void *ud)
{
	(void)ud;
	srv.conn = c;
	wh_net_conn_set_ud(c, &srv);
}

static void s_handshake(struct wh_net_conn *c, void *ud)
{
	(void)ud;
	srv.handshake = true;
	assert_int_equal(wh_net_conn_exporter(c, "EXPORTER-test", srv.exporter,
					      32), 0);
}

static void s_open(struct wh_net_conn *c, struct wh_net_stream *s, void *ud)
{
	(void)ud;
	srv.streams_opened++;
	wh_net_stream_set_ud(c, s, calloc(1, sizeof(struct np_buf)));
}

static int s_data(struct wh_net_conn *c, struct wh_net_stream *s,
		  const uint8_t *data, size_t len, bool fin, void *ud)
{
	struct np_buf *ss = wh_net_stream_ud(c, s);

	(void)ud;
	np_buf_add(ss, data, len);
	if (!fin)
		return 0;
	if (ss->len == 8 && memcmp(ss->buf, "GIVE", 4) == 0) {
		uint32_t n = (uint32_t)ss->buf[4] << 24 |
			     (uint32_t)ss->buf[5] << 16 |
			     (uint32_t)ss->buf[6] << 8 | ss->buf[7];

		assert_int_equal(wh_net_send(c, s, pattern, n, true, NULL), 0);
		free(ss->buf);
	} else {
		assert_int_equal(wh_net_send(c, s, ss->buf, ss->len, true,
					     free), 0);
	}
	ss->buf = NULL;
	ss->len = 0;
	return 0;
}

static void s_sclose(struct wh_net_conn *c, struct wh_net_stream *s,
		     void *ud)
{
	struct np_buf *ss = wh_net_stream_ud(c, s);

	(void)ud;
	if (ss) {
		free(ss->buf);
		free(ss);
	}
	srv.streams_closed++;
}

static void s_close(struct wh_net_conn *c, int err, const char *reason,
		    void *ud)
{
	(void)c;
	(void)reason;
	(void)ud;
	srv.closed = true;
	srv.close_err = err;
	srv.conn = NULL;
}

static const struct wh_net_cbs server_cbs = {
	.on_accept = s_accept,
	.on_handshake = s_handshake,
	.on_stream_open = s_open,
	.on_stream_data = s_data,
	.on_stream_close = s_sclose,
	.on_close = s_close,
};

/* ---------------------------------------------------------- client */

static void c_handshake(struct wh_net_conn *c, void *ud)
{
	(void)ud;
	cli.handshake = true;
	assert_int_equal(wh_net_conn_exporter(c, "EXPORTER-test", cli.exporter,
					      32), 0);
}

static int c_data(struct wh_net_conn *c, struct wh_net_stream *s,
		  const uint8_t *data, size_t len, bool fin, void *ud)
{
	struct reply *r = wh_net_stream_ud(c, s);

	(void)ud;
	if (!r)
		return 0;
	if (r->got + len > r->want ||
	    memcmp(data, pattern + r->got, len) != 0)
		cli.mismatch = true;
	r->got += len;
	cli.bytes_back += len;
	if (fin) {
		if (r->got != r->want)
			cli.mismatch = true;
		r->done = true;
		cli.replies++;
	}
	return 0;
}

static void c_sclose(struct wh_net_conn *c, struct wh_net_stream *s,
		     void *ud)
{
	struct reply *r = wh_net_stream_ud(c, s);

	(void)ud;
	if (r && !r->keep)
		free(r);
	cli.streams_closed++;
}

static void c_close(struct wh_net_conn *c, int err, const char *reason,
		    void *ud)
{
	(void)c;
	(void)ud;
	cli.closed = true;
	cli.close_err = err;
	snprintf(cli.reason, sizeof(cli.reason), "%s", reason);
	cli.conn = NULL;
}

static const struct wh_net_cbs client_cbs = {
	.on_handshake = c_handshake,
	.on_stream_data = c_data,
	.on_stream_close = c_sclose,
	.on_close = c_close,
};

/* ---------------------------------------------------------- driver */

/* one step of the client and, with n == 2, the server */
static void drive(int n, int ms)
{
	np_drive(&np_net, cli.ep, n == 2 ? srv.ep : NULL, ms);
}

static void run_until(bool *flag, int max_ms, bool drive_server)
{
	np_run_until(&np_net, cli.ep, drive_server ? srv.ep : NULL, flag,
		     max_ms);
}

static void setup_pair_as(uint64_t idle_ms, enum wh_net_transport t)
{
	struct sockaddr_in a;
	struct sockaddr_storage ss;
	socklen_t len;
	struct wh_quic_config cfg;

	memset(&srv, 0, sizeof(srv));
	memset(&cli, 0, sizeof(cli));
	np_loopback(&a);
	wh_quic_config_default(&cfg, true);
	cfg.idle_timeout_ms = idle_ms;
	assert_int_equal(wh_net_server_new((struct sockaddr *)&a, sizeof(a),
					   &cfg, &server_cbs, NULL, &srv.ep),
			 0);
	wh_net_ep_local_addr(srv.ep, &ss, &len);
	wh_quic_config_default(&cfg, false);
	cfg.idle_timeout_ms = idle_ms;
	cfg.keepalive_ms = idle_ms / 4;
	assert_int_equal(wh_net_client_new((struct sockaddr *)&ss, len, t, &cfg,
					   &client_cbs, NULL, &cli.ep,
					   &cli.conn),
			 0);
	run_until(&cli.handshake, 5000, true);
	assert_true(cli.handshake);
	run_until(&srv.handshake, 2000, true);
	assert_true(srv.handshake);
}

static void setup_pair(uint64_t idle_ms)
{
	setup_pair_as(idle_ms, transport);
	assert_int_equal(wh_net_conn_transport(cli.conn), transport);
	assert_int_equal(wh_net_conn_transport(srv.conn), transport);
}

static void teardown_pair(void)
{
	wh_net_ep_del(cli.ep);
	wh_net_ep_del(srv.ep);
}

static struct reply *request(const void *req, size_t len, size_t want,
			     bool keep)
{
	struct wh_net_stream *s;
	struct reply *r = calloc(1, sizeof(*r));

	r->want = want;
	r->keep = keep;
	assert_int_equal(wh_net_open_stream(cli.conn, r, &s), 0);
	/* static data: no free function */
	assert_int_equal(wh_net_send(cli.conn, s, (void *)req, len, true,
				     NULL), 0);
	return r;
}

static void give(uint8_t req[8], uint32_t n)
{
	memcpy(req, "GIVE", 4);
	req[4] = (uint8_t)(n >> 24);
	req[5] = (uint8_t)(n >> 16);
	req[6] = (uint8_t)(n >> 8);
	req[7] = (uint8_t)n;
}

/* ------------------------------------------------------------ tests */

static void test_handshake_and_exporter(void **state)
{
	(void)state;
	setup_pair(5000);
	assert_memory_equal(cli.exporter, srv.exporter, 32);
	teardown_pair();
	assert_true(cli.closed);
	assert_true(srv.closed);
}

static void test_big_stream(void **state)
{
	uint64_t end;

	(void)state;
	setup_pair(5000);
	request(pattern, BIG, BIG, false);
	end = wh_now_ns() + 20 * WH_NS_PER_S;
	while (cli.replies < 1 && wh_now_ns() < end)
		drive(2, 20);
	assert_int_equal(cli.replies, 1);
	assert_int_equal(cli.bytes_back, BIG);
	assert_false(cli.mismatch);
	teardown_pair();
}

static void test_many_streams(void **state)
{
	size_t opened = 0;
	uint64_t end;

	(void)state;
	setup_pair(5000);
	end = wh_now_ns() + 20 * WH_NS_PER_S;
	while (cli.replies < NSTREAMS && wh_now_ns() < end) {
		/* open as many as the peer allows; the rest wait for credit */
		while (opened < NSTREAMS) {
			struct wh_net_stream *s;
			struct reply *r = calloc(1, sizeof(*r));

			r->want = 1000 + opened;
			if (wh_net_open_stream(cli.conn, r, &s) != 0) {
				free(r);
				break;
			}
			wh_net_send(cli.conn, s, pattern, r->want, true, NULL);
			opened++;
		}
		drive(2, 20);
	}
	assert_int_equal(cli.replies, NSTREAMS);
	assert_false(cli.mismatch);
	/* both sides free every stream, once the last ACKs have crossed */
	end = wh_now_ns() + 5 * WH_NS_PER_S;
	while ((srv.streams_closed < NSTREAMS ||
		cli.streams_closed < NSTREAMS) && wh_now_ns() < end)
		drive(2, 20);
	assert_int_equal(srv.streams_closed, NSTREAMS);
	assert_int_equal(cli.streams_closed, NSTREAMS);
	teardown_pair();
}

/* A large reply queued first does not hold back small ones after it. */
static void test_small_replies_pass_a_large_one(void **state)
{
	static uint8_t big_req[8], small_req[8];
	struct reply *big;
	uint64_t end;
	size_t big_got_when_small_done = 0;
	bool small_done = false;

	(void)state;
	setup_pair(5000);
	give(big_req, HUGE);
	give(small_req, 9);
	big = request(big_req, 8, HUGE, true);
	drive(2, 20); /* the big request reaches the host first */
	{
		struct reply *small[NSMALL];

		for (int i = 0; i < NSMALL; i++)
			small[i] = request(small_req, 8, 9, true);
		end = wh_now_ns() + 30 * WH_NS_PER_S;
		while (!big->done && wh_now_ns() < end) {
			drive(2, 20);
			if (!small_done) {
				small_done = true;
				for (int i = 0; i < NSMALL; i++)
					small_done &= small[i]->done;
				if (small_done)
					big_got_when_small_done = big->got;
			}
		}
		for (int i = 0; i < NSMALL; i++) {
			assert_true(small[i]->done);
			free(small[i]);
		}
	}
	assert_true(big->done);
	assert_false(cli.mismatch);
	assert_true(small_done);
	assert_true(big_got_when_small_done < HUGE);
	free(big);
	teardown_pair();
}

static void test_reset(void **state)
{
	struct wh_net_stream *s;
	struct reply *r = calloc(1, sizeof(*r));
	(void)state;
	setup_pair(5000);
	r->want = 1;
	assert_int_equal(wh_net_open_stream(cli.conn, r, &s), 0);
	wh_net_send(cli.conn, s, pattern, 100, false, NULL);
	drive(2, 20);
	drive(2, 20);
	wh_net_stream_set_ud(cli.conn, s, NULL);
	free(r);
	wh_net_stream_reset(cli.conn, s, 5);
	for (int i = 0; i < 50 && srv.streams_closed < 1; i++)
		drive(2, 20);
	assert_int_equal(srv.streams_closed, 1);
	/* the connection goes on */
	request(pattern, 5000, 5000, false);
	for (int i = 0; i < 200 && cli.replies < 1; i++)
		drive(2, 20);
	assert_int_equal(cli.replies, 1);
	assert_false(cli.mismatch);
	assert_false(cli.closed);
	teardown_pair();
}

static void test_peer_close(void **state)
{
	(void)state;
	setup_pair(5000);
	wh_net_conn_close(srv.conn, 7, "bye now");
	run_until(&cli.closed, 3000, true);
	assert_true(cli.closed);
	assert_int_equal(cli.close_err, WH_ERR_CLOSED);
	assert_string_equal(cli.reason, "bye now");
	teardown_pair();
}

static void test_idle_timeout(void **state)
{
	(void)state;
	setup_pair(600);
	/* stop driving the server: the client must notice by itself */
	run_until(&cli.closed, 5000, false);
	assert_true(cli.closed);
	assert_int_equal(cli.close_err, WH_ERR_TIMEOUT);
	teardown_pair();
}

static void test_race_prefers_quic(void **state)
{
	(void)state;
	setup_pair_as(5000, WH_NET_AUTO);
	assert_int_equal(wh_net_conn_transport(cli.conn), WH_NET_QUIC);
	assert_int_equal(wh_net_ep_nconns(srv.ep), 1);
	request(pattern, 1000, 1000, false);
	for (int i = 0; i < 100 && cli.replies < 1; i++)
		drive(2, 20);
	assert_int_equal(cli.replies, 1);
	teardown_pair();
}

static void test_connect_refused(void **state)
{
	struct sockaddr_in a;
	int fd;
	socklen_t len = sizeof(a);

	(void)state;
	memset(&cli, 0, sizeof(cli));
	/* a port with nobody behind it (bound, then closed) */
	np_loopback(&a);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(fd, (struct sockaddr *)&a, &len);
	close(fd);
	assert_int_equal(wh_net_client_new((struct sockaddr *)&a, sizeof(a),
					   WH_NET_AUTO, NULL, &client_cbs,
					   NULL, &cli.ep, &cli.conn),
			 0);
	run_until(&cli.closed, 10000, false);
	/* QUIC hears ICMP port unreachable, TCP is refused: both fail fast
	 * (well before QUIC's 5 s handshake timeout) */
	assert_true(cli.closed);
	assert_false(cli.handshake);
	assert_int_equal(cli.close_err, -ECONNREFUSED);
	wh_net_ep_del(cli.ep);
}

/* UDP silently dropped and TCP refused: the attempt ends once QUIC has had
 * its share of the race, long before QUIC's own handshake timeout. */
static void test_udp_silent_tcp_refused(void **state)
{
	struct sockaddr_in a;
	struct wh_quic_config cfg;
	socklen_t len = sizeof(a);
	int ufd;

	(void)state;
	memset(&cli, 0, sizeof(cli));
	np_loopback(&a);
	/* a UDP socket that never reads: no ICMP, no answer; nobody listens
	 * on TCP at that port */
	ufd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_int_equal(bind(ufd, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(ufd, (struct sockaddr *)&a, &len);
	wh_quic_config_default(&cfg, false);
	cfg.handshake_timeout_ms = 120000;
	assert_int_equal(wh_net_client_new((struct sockaddr *)&a, sizeof(a),
					   WH_NET_AUTO, &cfg, &client_cbs,
					   NULL, &cli.ep, &cli.conn),
			 0);
	run_until(&cli.closed, 60000, false);
	assert_true(cli.closed);
	assert_false(cli.handshake);
	assert_int_equal(cli.close_err, -ECONNREFUSED);
	wh_net_ep_del(cli.ep);
	close(ufd);
}

static int use_quic(void **state)
{
	(void)state;
	transport = WH_NET_QUIC;
	return 0;
}

static int use_tcp(void **state)
{
	(void)state;
	transport = WH_NET_TCP;
	return 0;
}

#define BOTH(fn)                                                             \
	cmocka_unit_test_setup(fn, use_quic), cmocka_unit_test_setup(fn, use_tcp)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_handshake_and_exporter),
		BOTH(test_big_stream),
		BOTH(test_many_streams),
		BOTH(test_small_replies_pass_a_large_one),
		BOTH(test_reset),
		BOTH(test_peer_close),
		BOTH(test_idle_timeout),
		cmocka_unit_test(test_race_prefers_quic),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_udp_silent_tcp_refused),
	};
	int rv;

	pattern = np_pattern(HUGE);
	rv = cmocka_run_group_tests(tests, NULL, NULL);
	free(pattern);
	return rv;
}
