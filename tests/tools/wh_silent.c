/*
 * wh_silent.c - clients that connect and never authenticate, for the
 * end-to-end tests.
 *
 *   wh_silent --peer ADDR:PORT --count N [--transport quic|tcp]
 *             [--seconds S]
 *
 * Makes N connections to the host one after another (each finishes its
 * TLS handshake, then says nothing: no HELLO, no stream, only the
 * transport's own keep-alives), prints "up U" once every attempt has
 * either finished its handshake or failed and a second more has passed
 * (U: how many are up), then keeps them up to S seconds (default 30) or
 * until the host has closed them all, and prints "closed C" (C: how many
 * the host closed).  Exit 0 if it ran, 2 on bad usage, 1 if it could not
 * start.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "common/wh_time.h"
#include "net/wh_addr.h"
#include "net/wh_net.h"
#include "net/wh_quic.h"

struct silent {
	struct wh_net_ep *ep;
	struct wh_net_conn *nc;
	bool up, ended;
};

static unsigned n_up, n_ended, n_closed_up;

static void on_handshake(struct wh_net_conn *c, void *ud)
{
	struct silent *s = ud;

	(void)c;
	s->up = true;
	n_up++;
}

static void on_close(struct wh_net_conn *c, int err, const char *reason,
		     void *ud)
{
	struct silent *s = ud;

	(void)c;
	(void)err;
	(void)reason;
	if (s->ended)
		return;
	s->ended = true;
	n_ended++;
	if (s->up)
		n_closed_up++;
}

static const struct wh_net_cbs cbs = {
	.on_handshake = on_handshake,
	.on_close = on_close,
};

/* run - drive the first |n| endpoints until |until_ns|, or until |last|
 * is up or ended (NULL: until all have ended) */
static void run(struct silent *v, unsigned n, int epfd, uint64_t until_ns,
		const struct silent *last)
{
	struct epoll_event evs[64];

	while (wh_now_ns() < until_ns &&
	       !(last ? last->up || last->ended : n_ended >= n)) {
		int timeout = 100, k;

		for (unsigned i = 0; i < n; i++) {
			int t;

			if (!v[i].ep)
				continue;
			t = wh_net_ep_timeout_ms(v[i].ep);
			if (t >= 0 && t < timeout)
				timeout = t;
		}
		k = epoll_wait(epfd, evs, 64, timeout);
		for (int e = 0; e < k; e++)
			wh_net_ep_read(v[evs[e].data.u32].ep);
		for (unsigned i = 0; i < n; i++) {
			if (!v[i].ep)
				continue;
			wh_net_ep_expire(v[i].ep);
			wh_net_ep_flush(v[i].ep);
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "peer", required_argument, NULL, 'p' },
		{ "count", required_argument, NULL, 'n' },
		{ "transport", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	enum wh_net_transport transport = WH_NET_QUIC;
	const char *peer = NULL;
	unsigned count = 0, seconds = 30;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct wh_quic_config cfg;
	struct silent *v;
	int c, epfd;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': peer = optarg; break;
		case 'n': count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': seconds = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't':
			if (wh_net_transport_parse(optarg, &transport) < 0 ||
			    transport == WH_NET_AUTO)
				return 2;
			break;
		default: return 2;
		}
	}
	if (!peer || count == 0 || count > 4096 ||
	    wh_addr_parse(peer, &ss, &sslen) < 0) {
		fprintf(stderr, "usage: wh_silent --peer ADDR:PORT --count N "
			"[--transport quic|tcp] [--seconds S]\n");
		return 2;
	}
	v = calloc(count, sizeof(*v));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!v || epfd < 0)
		return 1;
	wh_quic_config_default(&cfg, false);
	for (unsigned i = 0; i < count; i++) {
		struct epoll_event ev = { .events = EPOLLIN };

		if (wh_net_client_new((struct sockaddr *)&ss, sslen, transport,
				      &cfg, &cbs, &v[i], &v[i].ep,
				      &v[i].nc) < 0) {
			v[i].ep = NULL;
			v[i].ended = true;
			n_ended++;
			continue;
		}
		ev.data.u32 = i;
		epoll_ctl(epfd, EPOLL_CTL_ADD, wh_net_ep_fd(v[i].ep), &ev);
		wh_net_ep_flush(v[i].ep);
		/* one at a time, as a patient attacker would: the host sees
		 * each new one while the others wait */
		run(v, i + 1, epfd, wh_now_ns() + 2000 * WH_NS_PER_MS, &v[i]);
	}
	/* a second for the host's closes of the last ones to arrive */
	run(v, count, epfd, wh_now_ns() + 1000 * WH_NS_PER_MS, NULL);
	printf("up %u\n", n_up - n_closed_up);
	fflush(stdout);
	run(v, count, epfd, wh_now_ns() + (uint64_t)seconds * 1000 *
				   WH_NS_PER_MS, NULL);
	printf("closed %u\n", n_closed_up);
	fflush(stdout);
	for (unsigned i = 0; i < count; i++)
		if (v[i].ep)
			wh_net_ep_del(v[i].ep);
	free(v);
	return 0;
}
