/*
 * wh_probe.c - a misbehaving client for the end-to-end tests.
 *
 *   wh_probe --peer ADDR:PORT --code CODE --case NAME
 *   wh_probe --peer ADDR:PORT --code CODE --case hoard --path P --count N
 *
 * Authenticates like a real client, then sends one hand-made frame (built
 * byte by byte, not with the protocol encoder, so it can be wrong) and
 * prints exactly one line: "reply ERROR <errno>", "reply <TYPE>",
 * "closed", "timeout" or "auth-failed".  Exit 0 if it ran, 2 on bad usage.
 *
 * "hoard" is a client that asks for much and takes nothing: it prints
 * "ready" once authenticated, waits for a line on stdin (time for the test
 * to cut the path from the host to it), sends N READs of 1 MiB of P at
 * once (offsets 0, 1, 2 ... MiB, wrapping at --wrap MiB), prints "sent"
 * and sleeps until it is killed.
 *
 * "busy" sends N MANIFESTs of P at once (with --wrap W > 1, of P.0, P.1 ...
 * P.W-1 in turn; with --conns K, over K connections in turn), then a
 * GETATTR of the root on the last of them, and prints the types of the
 * replies in the order they came, on one line: "order GETATTR_REPLY
 * MANIFEST_REPLY ..." (a request that failed is "closed" or "timeout").
 *
 * "fair" opens two connections: on the first it sends N READs of 64 KiB of
 * P at once (offsets 0, 1, 2 ... MiB, wrapping at --wrap MiB), then a
 * GETATTR of the root on the second, and prints how many of the READs
 * were answered before the GETATTR: "before K of N".
 */
#include <getopt.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth/wh_code.h"
#include "client/wh_session.h"
#include "common/wh_err.h"
#include "proto/wh_proto.h"

static uint8_t frame[WH_FRAME_HDR_LEN + 8192];
static size_t flen;

static void put8(uint8_t v) { frame[flen++] = v; }
static void put16(uint16_t v) { put8((uint8_t)(v >> 8)); put8((uint8_t)v); }
static void put32(uint32_t v) { put16((uint16_t)(v >> 16)); put16((uint16_t)v); }
static void put64(uint64_t v) { put32((uint32_t)(v >> 32)); put32((uint32_t)v); }
static void putstr(const char *s, size_t n)
{
	put16((uint16_t)n);
	memcpy(frame + flen, s, n);
	flen += n;
}

/* header - start a frame; the length is patched by finish(). */
static void header(uint16_t type)
{
	flen = 0;
	put32(0);
	put16(type);
	put16(0);
	put32(7);
}

static void finish(void)
{
	uint32_t len = (uint32_t)(flen - WH_FRAME_HDR_LEN);

	frame[0] = (uint8_t)(len >> 24);
	frame[1] = (uint8_t)(len >> 16);
	frame[2] = (uint8_t)(len >> 8);
	frame[3] = (uint8_t)len;
}

static int build(const char *name)
{
	char longname[300];

	if (!strcmp(name, "ok")) {
		header(WH_MSG_GETATTR);
		putstr("", 0);
		finish();
	} else if (!strcmp(name, "dotdot")) {
		header(WH_MSG_GETATTR);
		putstr("../etc", 6);
		finish();
	} else if (!strcmp(name, "absolute")) {
		header(WH_MSG_GETATTR);
		putstr("/etc/passwd", 11);
		finish();
	} else if (!strcmp(name, "longname")) {
		memset(longname, 'a', sizeof(longname));
		header(WH_MSG_LOOKUP);
		putstr("", 0);
		putstr(longname, sizeof(longname));
		finish();
	} else if (!strcmp(name, "truncated")) {
		header(WH_MSG_GETATTR);
		putstr("0123456789", 10);
		frame[3] = 100; /* announces 100 bytes, sends 12 */
	} else if (!strcmp(name, "oversized")) {
		header(WH_MSG_READ);
		putstr("a", 1);
		put64(0);
		put32(4096);
		frame[0] = 0x04; /* 64 MiB */
		frame[1] = frame[2] = frame[3] = 0;
	} else if (!strcmp(name, "garbage")) {
		flen = 64;
		randombytes_buf(frame, flen);
	} else if (!strcmp(name, "replytype")) {
		header(WH_MSG_READ_REPLY);
		for (int i = 0; i < WH_VERSION_WIRE_LEN; i++)
			put8(0);
		put8(1);
		put32(0xdeadbeef);
		finish();
	} else {
		return -1;
	}
	return 0;
}

static void hoard_done(void *ud, int err, struct wh_buf *resp)
{
	(void)ud;
	(void)err;
	(void)resp;
}

/* hoard - the "hoard" case (see the top of the file) */
static int hoard(struct wh_session *s, const char *path, unsigned count,
		 unsigned wrap)
{
	char line[16];

	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (unsigned i = 0; i < count; i++) {
		header(WH_MSG_READ);
		putstr(path, strlen(path));
		put64((uint64_t)(i % wrap) << 20);
		put32(WH_MAX_READ);
		finish();
		if (wh_session_call_async(s, frame, flen, 600000, hoard_done,
					  NULL) < 0)
			return 1;
	}
	printf("sent\n");
	fflush(stdout);
	for (;;)
		pause();
}

static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t order_cv = PTHREAD_COND_INITIALIZER;
static char order[4096];
static unsigned replies;

static void busy_done(void *ud, int err, struct wh_buf *resp)
{
	struct wh_frame_hdr hdr;
	const char *what;
	size_t n;

	(void)ud;
	if (err == WH_ERR_TIMEOUT)
		what = "timeout";
	else if (err < 0)
		what = "closed";
	else if (wh_frame_hdr_decode(resp->data, resp->len, WH_MAX_REPLY_FRAME,
				     &hdr) < 0)
		what = "MALFORMED";
	else
		what = wh_msg_type_name(hdr.type);
	pthread_mutex_lock(&order_lock);
	n = strlen(order);
	snprintf(order + n, sizeof(order) - n, " %s", what);
	replies++;
	pthread_cond_signal(&order_cv);
	pthread_mutex_unlock(&order_lock);
}

static unsigned fair_reads, fair_before;
static bool fair_got;

static void fair_done(void *ud, int err, struct wh_buf *resp)
{
	(void)err;
	(void)resp;
	pthread_mutex_lock(&order_lock);
	if (ud) {
		fair_got = true;
	} else {
		fair_reads++;
		fair_before += !fair_got;
	}
	pthread_cond_signal(&order_cv);
	pthread_mutex_unlock(&order_lock);
}

/* fair - the "fair" case (see the top of the file) */
static int fair(struct wh_session *a, struct wh_session *b, const char *path,
		unsigned count, unsigned wrap)
{
	static int is_b = 1;

	for (unsigned i = 0; i < count; i++) {
		header(WH_MSG_READ);
		putstr(path, strlen(path));
		put64((uint64_t)(i % wrap) << 20);
		put32(64 << 10);
		finish();
		if (wh_session_call_async(a, frame, flen, 60000, fair_done,
					  NULL) < 0)
			return 1;
	}
	build("ok");
	if (wh_session_call_async(b, frame, flen, 60000, fair_done, &is_b) < 0)
		return 1;
	pthread_mutex_lock(&order_lock);
	while (!fair_got || fair_reads < count)
		pthread_cond_wait(&order_cv, &order_lock);
	pthread_mutex_unlock(&order_lock);
	printf("before %u of %u\n", fair_before, count);
	fflush(stdout);
	wh_session_del(b);
	wh_session_del(a);
	return 0;
}

/* busy - the "busy" case (see the top of the file), over the |nconns|
 * sessions |ss| */
static int busy(struct wh_session **ss, unsigned nconns, const char *path,
		unsigned count, unsigned wrap)
{
	for (unsigned i = 0; i <= count; i++) {
		struct wh_session *s = ss[i < count ? i % nconns : nconns - 1];

		if (i < count) {
			char name[4200];

			if (wrap > 1)
				snprintf(name, sizeof(name), "%s.%u", path,
					 i % wrap);
			else
				snprintf(name, sizeof(name), "%s", path);
			header(WH_MSG_MANIFEST);
			putstr(name, strlen(name));
			put32(0);
			finish();
		} else {
			build("ok");
		}
		if (wh_session_call_async(s, frame, flen, 120000, busy_done,
					  NULL) < 0)
			return 1;
	}
	pthread_mutex_lock(&order_lock);
	while (replies <= count)
		pthread_cond_wait(&order_cv, &order_lock);
	pthread_mutex_unlock(&order_lock);
	printf("order%s\n", order);
	fflush(stdout);
	for (unsigned i = 0; i < nconns; i++)
		wh_session_del(ss[i]);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "peer", required_argument, NULL, 'p' },
		{ "code", required_argument, NULL, 'c' },
		{ "case", required_argument, NULL, 'k' },
		{ "transport", required_argument, NULL, 't' },
		{ "path", required_argument, NULL, 'f' },
		{ "count", required_argument, NULL, 'n' },
		{ "wrap", required_argument, NULL, 'w' },
		{ "conns", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	const char *peer = NULL, *code_in = NULL, *kase = NULL, *path = NULL;
	unsigned count = 0, wrap = 1, nconns = 1;
	char code[WH_CODE_STRLEN + 1], err[512];
	struct wh_session_opts so;
	enum wh_net_transport transport = WH_NET_AUTO;
	struct wh_session *s;
	struct wh_frame_hdr hdr;
	struct wh_msg msg;
	struct wh_buf resp;
	int c, rv;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': peer = optarg; break;
		case 'c': code_in = optarg; break;
		case 'k': kase = optarg; break;
		case 'f': path = optarg; break;
		case 'n': count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'w': wrap = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'C': nconns = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't':
			if (wh_net_transport_parse(optarg, &transport) < 0)
				return 2;
			break;
		default: return 2;
		}
	}
	if (kase && (!strcmp(kase, "hoard") || !strcmp(kase, "busy") ||
		     !strcmp(kase, "fair")) &&
	    path && strlen(path) < 4096 && count > 0 && wrap > 0 &&
	    (strcmp(kase, "busy") != 0 || count < 100) && nconns > 0 &&
	    nconns <= 8)
		build("ok");
	else
		path = NULL;
	if (!peer || !code_in || !kase || wh_code_parse(code_in, code) < 0 ||
	    sodium_init() < 0 || (!path && build(kase) < 0)) {
		fprintf(stderr, "usage: wh_probe --peer ADDR:PORT --code CODE "
			"--case ok|dotdot|absolute|longname|truncated|"
			"oversized|garbage|replytype "
			"[--transport auto|quic|tcp]\n"
			"       wh_probe --peer ADDR:PORT --code CODE --case hoard "
			"--path P --count N [--wrap MIB] [--transport ...]\n"
			"       wh_probe --peer ADDR:PORT --code CODE --case busy "
			"--path P --count N [--wrap W] [--conns K] "
			"[--transport ...]\n"
			"       wh_probe --peer ADDR:PORT --code CODE --case fair "
			"--path P --count N [--wrap MIB] [--transport ...]\n");
		return 2;
	}
	memset(&so, 0, sizeof(so));
	so.code = code;
	so.peer = peer;
	so.connect_timeout_ms = 10000;
	so.no_reconnect = true;
	so.transport = transport;
	rv = wh_session_new(&so, &s, err, sizeof(err));
	if (rv < 0) {
		fprintf(stderr, "wh_probe: %s\n", err);
		printf("auth-failed\n");
		return 0;
	}
	if (path && (!strcmp(kase, "busy") || !strcmp(kase, "fair"))) {
		struct wh_session *ss[8] = { s };
		unsigned n = !strcmp(kase, "fair") ? 2 : nconns;

		for (unsigned i = 1; i < n; i++) {
			rv = wh_session_new(&so, &ss[i], err, sizeof(err));
			if (rv < 0) {
				fprintf(stderr, "wh_probe: %s\n", err);
				return 1;
			}
		}
		if (!strcmp(kase, "fair"))
			return fair(ss[0], ss[1], path, count, wrap);
		return busy(ss, n, path, count, wrap);
	}
	if (path)
		return hoard(s, path, count, wrap);
	wh_buf_init(&resp);
	rv = wh_session_call(s, frame, flen, &resp, 5000);
	if (rv == WH_ERR_TIMEOUT) {
		printf("timeout\n");
	} else if (rv < 0) {
		printf("closed\n");
	} else if (wh_frame_hdr_decode(resp.data, resp.len, WH_MAX_REPLY_FRAME,
				       &hdr) < 0) {
		printf("reply MALFORMED\n");
	} else if (hdr.type == WH_MSG_ERROR &&
		   wh_msg_decode(resp.data, resp.len, WH_MAX_REPLY_FRAME,
				 &msg) == 0) {
		printf("reply ERROR %d\n", msg.u.error.err);
	} else {
		printf("reply %s\n", wh_msg_type_name(hdr.type));
	}
	fflush(stdout);
	wh_buf_free(&resp);
	wh_session_del(s);
	return 0;
}
