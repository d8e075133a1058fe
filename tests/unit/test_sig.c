/*
 * test_sig.c - the signal protocol: every datagram round-trips, truncated,
 * extended and oversized ones are refused; the server's rooms, expiry,
 * owner tokens, room bound and per-address rate limits, driven with bytes
 * and a fake clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/wh_err.h"
#include "proto/wh_sig.h"
#include "signal/wh_rendezvous.h"
#include "signal/wh_sigdb.h"
#include "signal/wh_sigsrv.h"

#define T0 1700000000000ULL /* a wall-clock time in ms */

static struct wh_sig_addr v4(const char *ip, uint16_t port)
{
	struct wh_sig_addr a;

	memset(&a, 0, sizeof(a));
	a.family = 4;
	a.port = port;
	inet_pton(AF_INET, ip, a.ip);
	return a;
}

static socklen_t sa4(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	struct wh_sig_addr a = v4(ip, port);

	return wh_sig_addr_to_sa(&a, ss);
}

static struct wh_sig_msg sample(uint8_t type)
{
	struct wh_sig_msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	memset(m.txn, 0x11, sizeof(m.txn));
	switch (type) {
	case WH_SIG_REGISTER:
	case WH_SIG_UNREGISTER:
		memset(m.token, 0x22, sizeof(m.token));
		/* fall through */
	case WH_SIG_JOIN:
	case WH_SIG_PEER_JOIN:
	case WH_SIG_PUNCH:
		memset(m.room, 0x33, sizeof(m.room));
		break;
	}
	if (type == WH_SIG_REGISTERED || type == WH_SIG_PEERS)
		m.refl = v4("198.51.100.7", 40000);
	if (type == WH_SIG_REGISTERED)
		m.ttl_s = 120;
	if (type == WH_SIG_ERROR)
		m.code = WH_SIGE_NOROOM;
	if (type == WH_SIG_PUNCH)
		m.ack = true;
	if (type == WH_SIG_REGISTER || type == WH_SIG_JOIN ||
	    type == WH_SIG_PEERS || type == WH_SIG_PEER_JOIN) {
		m.ncand = WH_SIG_MAX_CANDS;
		for (unsigned i = 0; i < m.ncand; i++)
			m.cand[i] = v4("10.0.0.1", (uint16_t)(1000 + i));
		m.cand[3].family = 6;
		memset(m.cand[3].ip, 0xfe, 16);
	}
	return m;
}

static void test_roundtrip(void **state)
{
	uint8_t buf[WH_SIG_MAX_DGRAM + 8];

	(void)state;
	for (uint8_t t = WH_SIG_REGISTER; t <= WH_SIG_PUNCH; t++) {
		struct wh_sig_msg m = sample(t), d;
		int n = wh_sig_encode(&m, buf, sizeof(buf));

		assert_true(n > WH_SIG_MAGIC_LEN);
		assert_true(wh_sig_is_sig(buf, (size_t)n));
		/* never mistaken for QUIC: both top bits clear */
		assert_int_equal(buf[0] & 0xc0, 0);
		assert_int_equal(wh_sig_decode(buf, (size_t)n, &d), 0);
		assert_int_equal(d.type, t);
		assert_memory_equal(d.txn, m.txn, sizeof(m.txn));
		assert_memory_equal(d.room, m.room, sizeof(m.room));
		assert_int_equal(d.ncand, m.ncand);
		for (unsigned i = 0; i < m.ncand; i++)
			assert_true(wh_sig_addr_eq(&d.cand[i], &m.cand[i]));
		assert_int_equal(d.ttl_s, m.ttl_s);
		assert_int_equal(d.code, m.code);
		assert_int_equal(d.ack, m.ack);
		if (t == WH_SIG_REGISTER || t == WH_SIG_UNREGISTER)
			assert_memory_equal(d.token, m.token, sizeof(m.token));
		if (t == WH_SIG_REGISTERED || t == WH_SIG_PEERS)
			assert_true(wh_sig_addr_eq(&d.refl, &m.refl));
		/* every truncation and one extra byte are refused */
		for (int k = 0; k < n; k++)
			assert_int_equal(wh_sig_decode(buf, (size_t)k, &d),
					 WH_ERR_PROTO);
		buf[n] = 0;
		assert_int_equal(wh_sig_decode(buf, (size_t)n + 1, &d),
				 WH_ERR_PROTO);
	}
}

static void test_bad_datagrams(void **state)
{
	uint8_t buf[WH_SIG_MAX_DGRAM + 8];
	struct wh_sig_msg m = sample(WH_SIG_JOIN), d;
	int n;

	(void)state;
	assert_int_equal(wh_sig_decode(buf, WH_SIG_MAX_DGRAM + 1, &d),
			 WH_ERR_TOOBIG);
	n = wh_sig_encode(&m, buf, sizeof(buf));
	/* count of candidates over the limit */
	buf[WH_SIG_MAGIC_LEN + 1 + WH_SIG_ROOM_LEN + WH_SIG_TXN_LEN] =
		WH_SIG_MAX_CANDS + 1;
	assert_int_equal(wh_sig_decode(buf, (size_t)n, &d), WH_ERR_PROTO);
	n = wh_sig_encode(&m, buf, sizeof(buf));
	/* bad family of the first candidate */
	buf[WH_SIG_MAGIC_LEN + 1 + WH_SIG_ROOM_LEN + WH_SIG_TXN_LEN + 1] = 5;
	assert_int_equal(wh_sig_decode(buf, (size_t)n, &d), WH_ERR_PROTO);
	n = wh_sig_encode(&m, buf, sizeof(buf));
	buf[WH_SIG_MAGIC_LEN] = 99; /* unknown type */
	assert_int_equal(wh_sig_decode(buf, (size_t)n, &d), WH_ERR_PROTO);
	buf[0] = 0xc0; /* a QUIC long header */
	assert_false(wh_sig_is_sig(buf, (size_t)n));
	/* port 0 is never encoded */
	m.cand[0].port = 0;
	assert_int_equal(wh_sig_encode(&m, buf, sizeof(buf)), WH_ERR_PROTO);
	m = sample(WH_SIG_JOIN);
	assert_int_equal(wh_sig_encode(&m, buf, 10), WH_ERR_TOOBIG);
	m = sample(WH_SIG_PUNCH);
	n = wh_sig_encode(&m, buf, sizeof(buf));
	buf[n - 1] = 2; /* ack flag must be 0 or 1 */
	assert_int_equal(wh_sig_decode(buf, (size_t)n, &d), WH_ERR_PROTO);
}

static void test_derive(void **state)
{
	uint8_t r1[WH_SIG_ROOM_LEN], t1[WH_SIG_TOKEN_LEN];
	uint8_t r2[WH_SIG_ROOM_LEN], t2[WH_SIG_TOKEN_LEN];

	(void)state;
	assert_int_equal(wh_rdv_derive("7KJM-XBCD-QRST-VWYZ", r1, t1), 0);
	assert_int_equal(wh_rdv_derive("7kjmxbcdqrstvwyz", r2, t2), 0);
	assert_memory_equal(r1, r2, sizeof(r1));
	assert_memory_equal(t1, t2, sizeof(t1));
	assert_memory_not_equal(r1, t1, sizeof(r1));
	{
		/* BLAKE2b-128 keyed with the label (docs/PROTOCOL.md), the
		 * same as Python's hashlib.blake2b(code, digest_size=16,
		 * key=b"wormhole signal room v1") */
		static const uint8_t want[WH_SIG_ROOM_LEN] = {
			0xd6, 0xee, 0x4b, 0xb0, 0x4d, 0xb6, 0xbf, 0x80,
			0xc0, 0x0c, 0x29, 0x06, 0xaa, 0x7b, 0x7f, 0xab,
		};

		assert_memory_equal(r1, want, sizeof(want));
	}
	assert_int_equal(wh_rdv_derive("7KJM-XBCD-QRST-VWY0", r2, t2), 0);
	assert_memory_not_equal(r1, r2, sizeof(r1));
	assert_int_equal(wh_rdv_derive("not a code", r2, t2), WH_ERR_CODE);
}

/* ----------------------------------------------------------- server */

struct fake_store {
	int puts, dels;
	struct wh_sig_room last;
};

static int fs_put(void *ud, const struct wh_sig_room *r)
{
	struct fake_store *f = ud;

	f->puts++;
	f->last = *r;
	return 0;
}

static void fs_del(void *ud, const uint8_t *room)
{
	struct fake_store *f = ud;

	(void)room;
	f->dels++;
}

static int send_msg(struct wh_sigsrv *s, uint64_t now, const char *ip,
		    uint16_t port, const struct wh_sig_msg *m,
		    struct wh_sigsrv_out *out)
{
	struct sockaddr_storage ss;
	socklen_t len = sa4(ip, port, &ss);
	uint8_t buf[WH_SIG_MAX_DGRAM];
	int n = wh_sig_encode(m, buf, sizeof(buf));

	assert_true(n > 0);
	return wh_sigsrv_handle(s, now, (struct sockaddr *)&ss, len, buf,
				(size_t)n, out);
}

static void decode_out(const struct wh_sigsrv_out *out, unsigned i,
		       struct wh_sig_msg *m)
{
	assert_true(i < out->n);
	assert_int_equal(wh_sig_decode(out->d[i].data, out->d[i].len, m), 0);
}

static void test_pairing(void **state)
{
	struct fake_store fs = { 0 };
	struct wh_sigsrv_store st = { &fs, fs_put, fs_del };
	struct wh_sigsrv_opts o;
	struct wh_sigsrv *s;
	struct wh_sigsrv_out out;
	struct wh_sig_msg reg = sample(WH_SIG_REGISTER), join, a;
	struct wh_sig_addr host_pub = v4("203.0.113.5", 5000);
	struct wh_sig_addr cli_pub = v4("198.51.100.9", 6000);
	char ab[64];

	(void)state;
	wh_sigsrv_opts_default(&o);
	assert_int_equal(wh_sigsrv_new(&o, &st, &s), 0);
	reg.ncand = 1;
	reg.cand[0] = v4("192.168.1.10", 5000);
	assert_int_equal(send_msg(s, T0, "203.0.113.5", 5000, &reg, &out), 0);
	decode_out(&out, 0, &a);
	assert_int_equal(out.n, 1);
	assert_int_equal(a.type, WH_SIG_REGISTERED);
	assert_true(wh_sig_addr_eq(&a.refl, &host_pub));
	assert_int_equal(a.ttl_s, 120);
	assert_int_equal(fs.puts, 1);
	assert_int_equal(wh_sigsrv_nrooms(s), 1);

	/* a client joins: it gets the host's candidates, reflected first,
	 * and the host gets the client's */
	join = sample(WH_SIG_JOIN);
	join.ncand = 2;
	join.cand[0] = v4("10.9.9.9", 6000);
	join.cand[1] = cli_pub; /* a duplicate of the reflected one */
	assert_int_equal(send_msg(s, T0 + 10, "198.51.100.9", 6000, &join,
				  &out), 0);
	assert_int_equal(out.n, 2);
	decode_out(&out, 0, &a);
	assert_int_equal(a.type, WH_SIG_PEERS);
	assert_memory_equal(a.txn, join.txn, sizeof(a.txn));
	assert_true(wh_sig_addr_eq(&a.refl, &cli_pub));
	assert_int_equal(a.ncand, 2);
	assert_true(wh_sig_addr_eq(&a.cand[0], &host_pub));
	assert_true(wh_sig_addr_eq(&a.cand[1], &reg.cand[0]));
	decode_out(&out, 1, &a);
	assert_int_equal(a.type, WH_SIG_PEER_JOIN);
	assert_memory_equal(a.room, reg.room, sizeof(a.room));
	assert_int_equal(a.ncand, 2);
	assert_true(wh_sig_addr_eq(&a.cand[0], &cli_pub));
	assert_true(wh_sig_addr_eq(&a.cand[1], &join.cand[0]));
	{
		struct wh_sig_addr to;

		assert_int_equal(wh_sig_addr_from_sa(
					 (struct sockaddr *)&out.d[1].to, &to),
				 0);
		assert_string_equal(wh_sig_addr_str(&to, ab, sizeof(ab)),
				    "203.0.113.5:5000");
	}

	/* another owner token cannot take the room over */
	{
		struct wh_sig_msg thief = reg;

		memset(thief.token, 0x99, sizeof(thief.token));
		assert_int_equal(send_msg(s, T0 + 20, "192.0.2.66", 1, &thief,
					  &out), 0);
		decode_out(&out, 0, &a);
		assert_int_equal(a.type, WH_SIG_ERROR);
		assert_int_equal(a.code, WH_SIGE_TAKEN);
		/* nor remove it */
		thief.type = WH_SIG_UNREGISTER;
		send_msg(s, T0 + 20, "192.0.2.66", 1, &thief, &out);
		assert_int_equal(out.n, 0);
		assert_non_null(wh_sigsrv_find(s, reg.room, T0 + 20));
	}

	/* the room expires on its own; a refresh moves the expiry */
	assert_int_equal(send_msg(s, T0 + 60000, "203.0.113.5", 5000, &reg,
				  &out), 0);
	assert_int_equal(fs.puts, 2);
	assert_int_equal(fs.last.expires_ms, T0 + 60000 + 120000);
	wh_sigsrv_expire(s, T0 + 170000);
	assert_int_equal(wh_sigsrv_nrooms(s), 1);
	wh_sigsrv_expire(s, T0 + 180000);
	assert_int_equal(wh_sigsrv_nrooms(s), 0);
	assert_int_equal(fs.dels, 1);
	assert_int_equal(send_msg(s, T0 + 180001, "198.51.100.9", 6000, &join,
				  &out), 0);
	decode_out(&out, 0, &a);
	assert_int_equal(a.type, WH_SIG_ERROR);
	assert_int_equal(a.code, WH_SIGE_NOROOM);

	/* unregister by the owner */
	send_msg(s, T0 + 200000, "203.0.113.5", 5000, &reg, &out);
	assert_int_equal(wh_sigsrv_nrooms(s), 1);
	reg.type = WH_SIG_UNREGISTER;
	send_msg(s, T0 + 200001, "203.0.113.5", 5000, &reg, &out);
	assert_int_equal(wh_sigsrv_nrooms(s), 0);

	/* a restored room works like a registered one */
	fs.last.expires_ms = T0 + 500000;
	assert_int_equal(wh_sigsrv_restore(s, &fs.last, T0 + 300000), 0);
	assert_int_equal(send_msg(s, T0 + 300001, "198.51.100.9", 6000, &join,
				  &out), 0);
	decode_out(&out, 0, &a);
	assert_int_equal(a.type, WH_SIG_PEERS);
	assert_int_equal(wh_sigsrv_restore(s, &fs.last, T0 + 600000),
			 -ESTALE);
	wh_sigsrv_del(s);
}

static void test_room_bound(void **state)
{
	struct wh_sigsrv_opts o;
	struct wh_sigsrv *s;
	struct wh_sigsrv_out out;
	struct wh_sig_msg reg = sample(WH_SIG_REGISTER), a;

	(void)state;
	wh_sigsrv_opts_default(&o);
	o.max_rooms = 3;
	o.rate = 1000;
	o.burst = 1000;
	assert_int_equal(wh_sigsrv_new(&o, NULL, &s), 0);
	for (int i = 0; i < 4; i++) {
		reg.room[0] = (uint8_t)i;
		assert_int_equal(send_msg(s, T0, "203.0.113.5", 5000, &reg,
					  &out), 0);
		decode_out(&out, 0, &a);
		assert_int_equal(a.type, i < 3 ? WH_SIG_REGISTERED
					       : WH_SIG_ERROR);
	}
	assert_int_equal(a.code, WH_SIGE_FULL);
	assert_int_equal(wh_sigsrv_nrooms(s), 3);
	/* once the others expired there is room again */
	assert_int_equal(send_msg(s, T0 + 121000, "203.0.113.5", 5000, &reg,
				  &out), 0);
	decode_out(&out, 0, &a);
	assert_int_equal(a.type, WH_SIG_REGISTERED);
	assert_int_equal(wh_sigsrv_nrooms(s), 1);
	wh_sigsrv_del(s);
}

static void test_rate_limit(void **state)
{
	struct wh_sigsrv_opts o;
	struct wh_sigsrv *s;
	struct wh_sigsrv_out out;
	struct wh_sig_msg join = sample(WH_SIG_JOIN), a;
	uint8_t junk[WH_SIG_MAX_DGRAM + 1];
	struct sockaddr_storage ss;
	socklen_t len;
	int limited = 0, errors = 0;

	(void)state;
	wh_sigsrv_opts_default(&o);
	o.rate = 10;
	o.burst = 20;
	o.max_sources = 16;
	assert_int_equal(wh_sigsrv_new(&o, NULL, &s), 0);
	/* a burst of 100 from one address in one millisecond: 20 pass */
	for (int i = 0; i < 100; i++) {
		int rv = send_msg(s, T0, "192.0.2.1", (uint16_t)(1000 + i),
				  &join, &out);

		if (rv == -EAGAIN) {
			limited++;
			if (out.n) {
				decode_out(&out, 0, &a);
				assert_int_equal(a.code, WH_SIGE_RATE);
				errors++;
			}
		} else {
			assert_int_equal(rv, 0);
		}
	}
	assert_int_equal(limited, 80);
	assert_int_equal(errors, 1); /* the RATE answer is itself limited */
	/* another address is not affected */
	assert_int_equal(send_msg(s, T0, "192.0.2.2", 1000, &join, &out), 0);
	/* tokens come back at the rate: 1 s later, 10 more pass */
	limited = 0;
	for (int i = 0; i < 20; i++)
		limited += send_msg(s, T0 + 1000, "192.0.2.1", 1, &join,
				    &out) == -EAGAIN;
	assert_int_equal(limited, 10);
	/* malformed and oversized datagrams are dropped, cost more, and
	 * are never answered */
	memset(junk, 0, sizeof(junk));
	len = sa4("192.0.2.3", 7, &ss);
	assert_int_equal(wh_sigsrv_handle(s, T0, (struct sockaddr *)&ss, len,
					  junk, sizeof(junk), &out),
			 WH_ERR_TOOBIG);
	assert_int_equal(out.n, 0);
	assert_int_equal(wh_sigsrv_handle(s, T0, (struct sockaddr *)&ss, len,
					  junk, 30, &out),
			 WH_ERR_PROTO);
	assert_int_equal(out.n, 0);
	/* 2 bad ones cost 10 of 20 tokens: 10 good ones pass, then no more */
	limited = 0;
	for (int i = 0; i < 11; i++)
		limited += send_msg(s, T0, "192.0.2.3", 7, &join, &out) ==
			   -EAGAIN;
	assert_int_equal(limited, 1);
	/* many sources: the table stays bounded and keeps working */
	for (int i = 0; i < 1000; i++) {
		char ip[32];

		snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 250, i % 250);
		assert_int_equal(send_msg(s, T0 + 2000, ip, 9, &join, &out),
				 0);
	}
	wh_sigsrv_del(s);
}

/* ------------------------------------------------------------- host */

struct sent {
	unsigned n;
	struct wh_sig_msg m[64];
	struct sockaddr_storage to[64];
};

static int capture(void *ud, const struct sockaddr *to, socklen_t tolen,
		   const void *data, size_t len)
{
	struct sent *s = ud;

	if (s->n < 64) {
		assert_int_equal(wh_sig_decode(data, len, &s->m[s->n]), 0);
		memcpy(&s->to[s->n], to, tolen);
		s->n++;
	}
	return 0;
}

static void feed(struct wh_rdv_host *h, uint64_t now, const char *ip,
		 uint16_t port, const struct wh_sig_msg *m)
{
	struct sockaddr_storage ss;
	socklen_t len = sa4(ip, port, &ss);
	uint8_t buf[WH_SIG_MAX_DGRAM];
	int n = wh_sig_encode(m, buf, sizeof(buf));

	assert_true(n > 0);
	wh_rdv_host_input(h, now, buf, (size_t)n, (struct sockaddr *)&ss, len);
}

#define MS 1000000ULL

static void test_host_machine(void **state)
{
	static const char code[] = "7KJM-XBCD-QRST-VWYZ";
	struct wh_sig_addr local = v4("10.1.0.2", 5000), to;
	struct sockaddr_storage sig;
	socklen_t siglen = sa4("203.0.113.10", 7700, &sig);
	uint8_t room[WH_SIG_ROOM_LEN], token[WH_SIG_TOKEN_LEN];
	struct wh_rdv_host *h;
	struct wh_sig_msg m;
	struct sent out;
	uint64_t t = 1000 * MS;
	char ab[64];

	(void)state;
	memset(&out, 0, sizeof(out));
	assert_int_equal(wh_rdv_derive(code, room, token), 0);
	assert_int_equal(wh_rdv_host_new(code, (struct sockaddr *)&sig, siglen,
					 &local, 1, capture, &out, &h), 0);
	/* the first tick registers; unanswered, it retries after 1, 2 s */
	wh_rdv_host_tick(h, t);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.m[0].type, WH_SIG_REGISTER);
	assert_memory_equal(out.m[0].room, room, sizeof(room));
	assert_memory_equal(out.m[0].token, token, sizeof(token));
	assert_int_equal(out.m[0].ncand, 1);
	assert_true(wh_sig_addr_eq(&out.m[0].cand[0], &local));
	assert_int_equal(wh_rdv_host_timeout_ms(h, t), 1001);
	wh_rdv_host_tick(h, t + 999 * MS);
	assert_int_equal(out.n, 1);
	wh_rdv_host_tick(h, t + 1000 * MS);
	assert_int_equal(out.n, 2);
	t += 1000 * MS;
	assert_int_equal(wh_rdv_host_timeout_ms(h, t), 2001);
	assert_false(wh_rdv_host_registered(h));

	/* an answer with another txn, or from elsewhere, is ignored */
	memset(&m, 0, sizeof(m));
	m.type = WH_SIG_REGISTERED;
	m.ttl_s = 40;
	m.refl = v4("203.0.113.1", 5000);
	feed(h, t, "203.0.113.10", 7700, &m);
	assert_false(wh_rdv_host_registered(h));
	memcpy(m.txn, out.m[1].txn, sizeof(m.txn));
	feed(h, t, "203.0.113.66", 7700, &m);
	assert_false(wh_rdv_host_registered(h));
	feed(h, t, "203.0.113.10", 7700, &m);
	assert_true(wh_rdv_host_registered(h));
	/* refreshed every ttl/4 = 10 s when that is under 20 s */
	assert_int_equal(wh_rdv_host_timeout_ms(h, t), 10001);

	/* a client joins: punches to each candidate every 100 ms */
	memset(&m, 0, sizeof(m));
	m.type = WH_SIG_PEER_JOIN;
	memcpy(m.room, room, sizeof(room));
	memset(m.txn, 0x42, sizeof(m.txn));
	m.ncand = 2;
	m.cand[0] = v4("203.0.113.2", 6000);
	m.cand[1] = v4("10.2.0.2", 6000);
	feed(h, t, "203.0.113.66", 7700, &m); /* not from the server */
	out.n = 0;
	wh_rdv_host_tick(h, t);
	assert_int_equal(out.n, 0);
	feed(h, t, "203.0.113.10", 7700, &m);
	assert_int_equal(wh_rdv_host_timeout_ms(h, t), 0);
	wh_rdv_host_tick(h, t);
	assert_int_equal(out.n, 2);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(out.m[i].type, WH_SIG_PUNCH);
		assert_false(out.m[i].ack);
		assert_memory_equal(out.m[i].txn, m.txn, sizeof(m.txn));
		wh_sig_addr_from_sa((struct sockaddr *)&out.to[i], &to);
		assert_true(wh_sig_addr_eq(&to, &m.cand[i]));
	}
	wh_rdv_host_tick(h, t + 50 * MS);
	assert_int_equal(out.n, 2);
	wh_rdv_host_tick(h, t + 100 * MS);
	assert_int_equal(out.n, 4);
	/* the same JOIN forwarded twice starts no second punch */
	feed(h, t + 100 * MS, "203.0.113.10", 7700, &m);
	wh_rdv_host_tick(h, t + 100 * MS);
	assert_int_equal(out.n, 4);

	/* a probe from the client gets an ack to where it came from, and
	 * the punch ends 500 ms later */
	memset(&m, 0, sizeof(m));
	m.type = WH_SIG_PUNCH;
	memcpy(m.room, room, sizeof(room));
	memset(m.txn, 0x42, sizeof(m.txn));
	out.n = 0;
	feed(h, t + 150 * MS, "203.0.113.2", 6001, &m);
	assert_int_equal(out.n, 1);
	assert_true(out.m[0].ack);
	wh_sig_addr_from_sa((struct sockaddr *)&out.to[0], &to);
	assert_string_equal(wh_sig_addr_str(&to, ab, sizeof(ab)),
			    "203.0.113.2:6001");
	/* a probe for another room is ignored */
	m.room[0] ^= 1;
	feed(h, t + 150 * MS, "203.0.113.2", 6001, &m);
	assert_int_equal(out.n, 1);
	wh_rdv_host_tick(h, t + 200 * MS);
	assert_int_equal(out.n, 3);
	wh_rdv_host_tick(h, t + 650 * MS);
	assert_int_equal(out.n, 3); /* over */

	/* an ERROR (room held by someone else) keeps it retrying */
	wh_rdv_host_tick(h, t + 10000 * MS);
	assert_int_equal(out.n, 4);
	assert_int_equal(out.m[3].type, WH_SIG_REGISTER);
	memset(&m, 0, sizeof(m));
	m.type = WH_SIG_ERROR;
	m.code = WH_SIGE_TAKEN;
	memcpy(m.txn, out.m[3].txn, sizeof(m.txn));
	feed(h, t + 10000 * MS, "203.0.113.10", 7700, &m);
	assert_false(wh_rdv_host_registered(h));
	assert_true(wh_rdv_host_timeout_ms(h, t + 10000 * MS) <= 1001);

	/* garbage changes nothing */
	{
		uint8_t junk[40];
		struct sockaddr_storage ss;
		socklen_t len = sa4("203.0.113.10", 7700, &ss);

		memset(junk, 0, sizeof(junk));
		junk[1] = 'W';
		out.n = 0;
		wh_rdv_host_input(h, t, junk, sizeof(junk),
				  (struct sockaddr *)&ss, len);
		assert_int_equal(out.n, 0);
	}

	/* registered again, then deleted: UNREGISTER with the token */
	wh_rdv_host_tick(h, t + 20000 * MS);
	memset(&m, 0, sizeof(m));
	m.type = WH_SIG_REGISTERED;
	m.refl = v4("203.0.113.1", 5000);
	memcpy(m.txn, out.m[out.n - 1].txn, sizeof(m.txn));
	feed(h, t + 20000 * MS, "203.0.113.10", 7700, &m);
	assert_true(wh_rdv_host_registered(h));
	out.n = 0;
	wh_rdv_host_del(h);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.m[0].type, WH_SIG_UNREGISTER);
	assert_memory_equal(out.m[0].token, token, sizeof(token));
}

/* --------------------------------------------------------- database */

static int collect(void *ud, const struct wh_sig_room *r)
{
	struct fake_store *f = ud;

	f->puts++;
	f->last = *r;
	return 0;
}

static void test_database(void **state)
{
	char dir[] = "/tmp/wh-sigdb-XXXXXX", path[64];
	struct wh_sigsrv_store st;
	struct wh_sigdb *db;
	struct wh_sig_room r, old;
	struct fake_store got = { 0 };

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/signal.db", dir);
	assert_int_equal(wh_sigdb_open(path, &db), 0);
	wh_sigdb_store(db, &st);
	memset(&r, 0, sizeof(r));
	memset(r.room, 0xab, sizeof(r.room));
	memset(r.token_hash, 0xcd, sizeof(r.token_hash));
	r.host = v4("203.0.113.1", 5000);
	r.ncand = 2;
	r.cand[0] = v4("10.1.0.2", 5000);
	r.cand[1].family = 6;
	r.cand[1].port = 5000;
	memset(r.cand[1].ip, 0x20, 16);
	r.expires_ms = T0 + 1000;
	assert_int_equal(st.put(st.ud, &r), 0);
	old = r;
	memset(old.room, 0x01, sizeof(old.room));
	old.expires_ms = T0 - 1;
	assert_int_equal(st.put(st.ud, &old), 0);
	r.expires_ms = T0 + 2000; /* a refresh replaces the row */
	assert_int_equal(st.put(st.ud, &r), 0);
	wh_sigdb_close(db);

	/* reopened: the live room comes back whole, the expired one not */
	assert_int_equal(wh_sigdb_open(path, &db), 0);
	assert_int_equal(wh_sigdb_load(db, T0, collect, &got), 1);
	assert_int_equal(got.puts, 1);
	assert_memory_equal(got.last.room, r.room, sizeof(r.room));
	assert_memory_equal(got.last.token_hash, r.token_hash,
			    sizeof(r.token_hash));
	assert_true(wh_sig_addr_eq(&got.last.host, &r.host));
	assert_int_equal(got.last.ncand, 2);
	assert_true(wh_sig_addr_eq(&got.last.cand[0], &r.cand[0]));
	assert_true(wh_sig_addr_eq(&got.last.cand[1], &r.cand[1]));
	assert_int_equal(got.last.expires_ms, T0 + 2000);
	wh_sigdb_store(db, &st);
	st.del(st.ud, r.room);
	got.puts = 0;
	assert_int_equal(wh_sigdb_load(db, T0, collect, &got), 0);
	wh_sigdb_close(db);
	/* not a database: an error, no crash */
	{
		char cmd[256];
		FILE *f;

		snprintf(cmd, sizeof(cmd), "rm -f %s-wal %s-shm", path, path);
		assert_int_equal(system(cmd), 0);
		f = fopen(path, "w");
		assert_non_null(f);
		for (int i = 0; i < 64; i++)
			fputs("this is not an SQLite database\n", f);
		fclose(f);
		assert_int_equal(wh_sigdb_open(path, &db), -EIO);
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_bad_datagrams),
		cmocka_unit_test(test_derive),
		cmocka_unit_test(test_pairing),
		cmocka_unit_test(test_room_bound),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_host_machine),
		cmocka_unit_test(test_database),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
