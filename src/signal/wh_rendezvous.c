/* wh_rendezvous.c - room ids, candidates, registration, hole punching. */
#include "signal/wh_rendezvous.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/wh_code.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "net/wh_addr.h"
#include "net/wh_quic.h"

static const char room_label[] = "wormhole signal room v1";
static const char token_label[] = "wormhole signal owner v1";

int wh_rdv_derive(const char *code, uint8_t room[WH_SIG_ROOM_LEN],
		  uint8_t token[WH_SIG_TOKEN_LEN])
{
	char canon[WH_CODE_STRLEN + 1];

	if (wh_code_parse(code, canon) != 0)
		return WH_ERR_CODE;
	crypto_generichash(room, WH_SIG_ROOM_LEN, (const uint8_t *)canon,
			   WH_CODE_STRLEN, (const uint8_t *)room_label,
			   sizeof(room_label) - 1);
	crypto_generichash(token, WH_SIG_TOKEN_LEN, (const uint8_t *)canon,
			   WH_CODE_STRLEN, (const uint8_t *)token_label,
			   sizeof(token_label) - 1);
	sodium_memzero(canon, sizeof(canon));
	return 0;
}

static bool is_wildcard(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(
			&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

unsigned wh_rdv_local_cands(const struct sockaddr *bound, uint16_t port,
			    struct wh_sig_addr *out, unsigned max)
{
	struct ifaddrs *ifa, *i;
	unsigned n = 0;

	if (max == 0)
		return 0;
	if (!is_wildcard(bound)) {
		if (wh_sig_addr_from_sa(bound, &out[0]) != 0)
			return 0;
		out[0].port = port;
		return 1;
	}
	if (getifaddrs(&ifa) != 0)
		return 0;
	for (i = ifa; i && n < max; i = i->ifa_next) {
		struct wh_sig_addr a;

		if (!i->ifa_addr || !(i->ifa_flags & IFF_UP) ||
		    (i->ifa_flags & IFF_LOOPBACK))
			continue;
		/* a wildcard IPv6 socket is dual-stack (wh_quic.c) */
		if (i->ifa_addr->sa_family != bound->sa_family &&
		    !(bound->sa_family == AF_INET6 &&
		      i->ifa_addr->sa_family == AF_INET))
			continue;
		if (i->ifa_addr->sa_family == AF_INET6 &&
		    IN6_IS_ADDR_LINKLOCAL(
			    &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr))
			continue;
		/* the port of an interface address is 0: set ours first */
		if (i->ifa_addr->sa_family == AF_INET)
			((struct sockaddr_in *)i->ifa_addr)->sin_port =
				htons(port);
		else
			((struct sockaddr_in6 *)i->ifa_addr)->sin6_port =
				htons(port);
		if (wh_sig_addr_from_sa(i->ifa_addr, &a) == 0)
			out[n++] = a;
	}
	freeifaddrs(ifa);
	return n;
}

static bool sa_eq(const struct sockaddr *x, const struct sockaddr *y)
{
	struct wh_sig_addr a, b;

	return wh_sig_addr_from_sa(x, &a) == 0 &&
	       wh_sig_addr_from_sa(y, &b) == 0 && wh_sig_addr_eq(&a, &b);
}

static int send_msg(wh_rdv_send_fn send, void *ud, const struct sockaddr *to,
		    socklen_t tolen, const struct wh_sig_msg *m)
{
	uint8_t buf[WH_SIG_MAX_DGRAM];
	int n = wh_sig_encode(m, buf, sizeof(buf));

	if (n < 0)
		return n;
	return send(ud, to, tolen, buf, (size_t)n);
}

/* sa_for - |a| as an address a socket of |family| can send to (IPv4 as
 * v4-mapped IPv6 on an IPv6 socket); 0 if it cannot. */
static socklen_t sa_for(int family, const struct wh_sig_addr *a,
			struct sockaddr_storage *ss)
{
	socklen_t len = wh_sig_addr_to_sa(a, ss);
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	if (ss->ss_family == family)
		return len;
	if (family != AF_INET6 || a->family != 4)
		return 0;
	memset(ss, 0, sizeof(*ss));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(a->port);
	in6->sin6_addr.s6_addr[10] = 0xff;
	in6->sin6_addr.s6_addr[11] = 0xff;
	memcpy(in6->sin6_addr.s6_addr + 12, a->ip, 4);
	return sizeof(*in6);
}

/* ---------------------------------------------------------------- host */

struct punch {
	bool active;
	uint8_t txn[WH_SIG_TXN_LEN];
	uint8_t ncand;
	struct wh_sig_addr cand[WH_SIG_MAX_CANDS];
	uint64_t next_ns, end_ns;
};

struct wh_rdv_host {
	wh_rdv_send_fn send;
	void *ud;
	struct sockaddr_storage sig;
	socklen_t siglen;
	char sigstr[WH_ADDRSTRLEN];
	uint8_t room[WH_SIG_ROOM_LEN];
	uint8_t token[WH_SIG_TOKEN_LEN];
	uint8_t ncand;
	struct wh_sig_addr cand[WH_SIG_MAX_CANDS];
	uint8_t txn[WH_SIG_TXN_LEN];
	uint64_t next_reg_ns;
	unsigned retry_ms, unanswered;
	bool registered, warned, refused;
	struct wh_sig_addr refl;
	struct punch punches[WH_RDV_MAX_PUNCHES];
};

int wh_rdv_host_new(const char *code, const struct sockaddr *sig,
		    socklen_t siglen, const struct wh_sig_addr *cands,
		    unsigned ncand, wh_rdv_send_fn send, void *ud,
		    struct wh_rdv_host **ph)
{
	struct wh_rdv_host *h;

	if (siglen > sizeof(h->sig))
		return WH_ERR_ADDR;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	if (wh_rdv_derive(code, h->room, h->token) != 0) {
		free(h);
		return WH_ERR_CODE;
	}
	h->send = send;
	h->ud = ud;
	memcpy(&h->sig, sig, siglen);
	h->siglen = siglen;
	wh_addr_str(sig, h->sigstr, sizeof(h->sigstr));
	if (ncand > WH_SIG_MAX_CANDS - 1)
		ncand = WH_SIG_MAX_CANDS - 1;
	h->ncand = (uint8_t)ncand;
	if (ncand)
		memcpy(h->cand, cands, ncand * sizeof(*cands));
	h->retry_ms = WH_RDV_RETRY_MS;
	*ph = h;
	return 0;
}

static void host_register(struct wh_rdv_host *h, uint64_t now)
{
	struct wh_sig_msg m;

	memset(&m, 0, sizeof(m));
	m.type = WH_SIG_REGISTER;
	memcpy(m.room, h->room, sizeof(m.room));
	memcpy(m.token, h->token, sizeof(m.token));
	randombytes_buf(h->txn, sizeof(h->txn));
	memcpy(m.txn, h->txn, sizeof(m.txn));
	m.ncand = h->ncand;
	memcpy(m.cand, h->cand, sizeof(m.cand));
	send_msg(h->send, h->ud, (struct sockaddr *)&h->sig, h->siglen, &m);
	if (++h->unanswered == 4 && !h->warned) {
		wh_warn("the signal server %s does not answer: peers cannot "
			"join by code alone until it does (still trying; "
			"--peer works meanwhile)", h->sigstr);
		h->warned = true;
	}
	/* unanswered: retry 1, 2, 4, 5, 5... s; answered: WH_RDV_REFRESH_MS */
	h->next_reg_ns = now + h->retry_ms * WH_NS_PER_MS;
	if (h->retry_ms < 5000)
		h->retry_ms = h->retry_ms * 2 > 5000 ? 5000 : h->retry_ms * 2;
}

static void punch_send(struct wh_rdv_host *h, const struct wh_sig_addr *to,
		       const uint8_t *txn, bool ack)
{
	struct sockaddr_storage ss;
	socklen_t len = sa_for(h->sig.ss_family, to, &ss);
	struct wh_sig_msg m;

	if (len == 0)
		return; /* not reachable from our socket's family */
	memset(&m, 0, sizeof(m));
	m.type = WH_SIG_PUNCH;
	memcpy(m.room, h->room, sizeof(m.room));
	memcpy(m.txn, txn, WH_SIG_TXN_LEN);
	m.ack = ack;
	send_msg(h->send, h->ud, (struct sockaddr *)&ss, len, &m);
}

static void on_peer_join(struct wh_rdv_host *h, uint64_t now,
			 const struct wh_sig_msg *m)
{
	struct punch *p = NULL;
	char ab[WH_ADDRSTRLEN];

	for (unsigned i = 0; i < WH_RDV_MAX_PUNCHES; i++) {
		struct punch *q = &h->punches[i];

		if (q->active && memcmp(q->txn, m->txn, sizeof(q->txn)) == 0)
			return; /* a repeated JOIN: already punching */
		if (!q->active && !p)
			p = q;
	}
	if (!p) { /* all busy: replace the oldest */
		p = &h->punches[0];
		for (unsigned i = 1; i < WH_RDV_MAX_PUNCHES; i++)
			if (h->punches[i].end_ns < p->end_ns)
				p = &h->punches[i];
	}
	p->active = true;
	memcpy(p->txn, m->txn, sizeof(p->txn));
	p->ncand = m->ncand;
	memcpy(p->cand, m->cand, sizeof(p->cand));
	p->next_ns = now;
	p->end_ns = now + WH_RDV_PUNCH_MS * WH_NS_PER_MS;
	wh_info("signal: a peer is joining from %s: punching",
		m->ncand ? wh_sig_addr_str(&m->cand[0], ab, sizeof(ab)) : "?");
}

void wh_rdv_host_input(struct wh_rdv_host *h, uint64_t now_ns,
		       const uint8_t *data, size_t len,
		       const struct sockaddr *from, socklen_t fromlen)
{
	bool from_sig = sa_eq(from, (struct sockaddr *)&h->sig);
	struct wh_sig_msg m;
	char ab[WH_ADDRSTRLEN];

	if (wh_sig_decode(data, len, &m) != 0)
		return;
	switch (m.type) {
	case WH_SIG_REGISTERED:
		if (!from_sig || memcmp(m.txn, h->txn, sizeof(h->txn)) != 0)
			return;
		if (!h->registered || !wh_sig_addr_eq(&m.refl, &h->refl))
			wh_info("signal: registered at %s; seen as %s",
				h->sigstr,
				wh_sig_addr_str(&m.refl, ab, sizeof(ab)));
		else
			wh_debug("signal: registration refreshed");
		if (h->warned)
			wh_info("the signal server %s answers again",
				h->sigstr);
		h->registered = true;
		h->refused = false;
		h->warned = false;
		h->unanswered = 0;
		h->refl = m.refl;
		h->retry_ms = WH_RDV_RETRY_MS;
		{
			uint64_t every = WH_RDV_REFRESH_MS;

			/* refresh well within the server's lifetime */
			if (m.ttl_s && m.ttl_s * 1000ULL / 4 < every)
				every = m.ttl_s * 1000ULL / 4;
			h->next_reg_ns = now_ns + every * WH_NS_PER_MS;
		}
		break;
	case WH_SIG_ERROR:
		if (!from_sig || memcmp(m.txn, h->txn, sizeof(h->txn)) != 0)
			return;
		h->unanswered = 0;
		if (!h->refused)
			wh_warn("the signal server %s refuses this code: %s; "
				"retrying", h->sigstr,
				m.code == WH_SIGE_TAKEN
					? "another host holds it"
				: m.code == WH_SIGE_FULL
					? "it holds too many rooms"
					: "too many requests from here");
		h->refused = true;
		h->registered = false;
		break;
	case WH_SIG_PEER_JOIN:
		if (from_sig && memcmp(m.room, h->room, sizeof(h->room)) == 0)
			on_peer_join(h, now_ns, &m);
		break;
	case WH_SIG_PUNCH:
		if (memcmp(m.room, h->room, sizeof(h->room)) != 0)
			return;
		if (!m.ack) {
			struct wh_sig_addr fa;

			if (wh_sig_addr_from_sa(from, &fa) == 0)
				punch_send(h, &fa, m.txn, true);
		}
		/* the path works: this join needs no more punches */
		for (unsigned i = 0; i < WH_RDV_MAX_PUNCHES; i++)
			if (h->punches[i].active &&
			    memcmp(h->punches[i].txn, m.txn, WH_SIG_TXN_LEN) ==
				    0)
				h->punches[i].end_ns = now_ns + 500 *
								 WH_NS_PER_MS;
		break;
	default:
		break;
	}
	(void)fromlen;
}

void wh_rdv_host_tick(struct wh_rdv_host *h, uint64_t now_ns)
{
	if (now_ns >= h->next_reg_ns)
		host_register(h, now_ns);
	for (unsigned i = 0; i < WH_RDV_MAX_PUNCHES; i++) {
		struct punch *p = &h->punches[i];

		if (!p->active)
			continue;
		if (now_ns >= p->end_ns) {
			p->active = false;
			continue;
		}
		if (now_ns < p->next_ns)
			continue;
		for (unsigned k = 0; k < p->ncand; k++)
			punch_send(h, &p->cand[k], p->txn, false);
		p->next_ns = now_ns + WH_RDV_PUNCH_EVERY_MS * WH_NS_PER_MS;
	}
}

int wh_rdv_host_timeout_ms(const struct wh_rdv_host *h, uint64_t now_ns)
{
	uint64_t next = h->next_reg_ns;

	for (unsigned i = 0; i < WH_RDV_MAX_PUNCHES; i++) {
		const struct punch *p = &h->punches[i];

		if (p->active && p->next_ns < next)
			next = p->next_ns;
		if (p->active && p->end_ns < next)
			next = p->end_ns;
	}
	if (next <= now_ns)
		return 0;
	return (int)((next - now_ns) / WH_NS_PER_MS) + 1;
}

bool wh_rdv_host_registered(const struct wh_rdv_host *h)
{
	return h->registered;
}

void wh_rdv_host_del(struct wh_rdv_host *h)
{
	struct wh_sig_msg m;

	if (!h)
		return;
	if (h->registered) {
		memset(&m, 0, sizeof(m));
		m.type = WH_SIG_UNREGISTER;
		memcpy(m.room, h->room, sizeof(m.room));
		memcpy(m.token, h->token, sizeof(m.token));
		randombytes_buf(m.txn, sizeof(m.txn));
		send_msg(h->send, h->ud, (struct sockaddr *)&h->sig,
			 h->siglen, &m);
	}
	sodium_memzero(h, sizeof(*h));
	free(h);
}

static int ep_send(void *ud, const struct sockaddr *to, socklen_t tolen,
		   const void *data, size_t len)
{
	return wh_quic_ep_send_raw(ud, to, tolen, data, len);
}

static void ep_raw(void *ud, const uint8_t *data, size_t len,
		   const struct sockaddr *from, socklen_t fromlen)
{
	wh_rdv_host_input(ud, wh_now_ns(), data, len, from, fromlen);
}

int wh_rdv_host_attach(struct wh_quic_ep *ep, const char *signal,
		       const char *code, struct wh_rdv_host **ph)
{
	struct sockaddr_storage sig, local;
	socklen_t siglen, locallen = sizeof(local);
	struct wh_sig_addr cands[WH_SIG_MAX_CANDS - 1], la;
	unsigned n;
	int rv;

	rv = wh_addr_parse(signal, &sig, &siglen);
	if (rv < 0) {
		wh_warn("bad signal server address '%s': expected ADDR:PORT; "
			"peers must connect with --peer", signal);
		return rv;
	}
	rv = wh_quic_ep_local_addr(ep, &local, &locallen);
	if (rv < 0)
		return rv;
	if (local.ss_family == AF_INET6 && sig.ss_family == AF_INET) {
		/* a dual-stack socket reaches IPv4 as v4-mapped IPv6 */
		struct wh_sig_addr a;

		wh_sig_addr_from_sa((struct sockaddr *)&sig, &a);
		siglen = sa_for(AF_INET6, &a, &sig);
	}
	if (local.ss_family != sig.ss_family) {
		wh_warn("the signal server %s is not reachable from a socket "
			"listening on another address family: pass a --listen "
			"address of its family; peers must connect with "
			"--peer meanwhile", signal);
		return WH_ERR_ADDR;
	}
	wh_sig_addr_from_sa((struct sockaddr *)&local, &la);
	n = wh_rdv_local_cands((struct sockaddr *)&local, la.port, cands,
			       WH_SIG_MAX_CANDS - 1);
	rv = wh_rdv_host_new(code, (struct sockaddr *)&sig, siglen, cands, n,
			     ep_send, ep, ph);
	if (rv < 0)
		return rv;
	snprintf((*ph)->sigstr, sizeof((*ph)->sigstr), "%s", signal);
	wh_quic_ep_set_raw(ep, ep_raw, *ph);
	return 0;
}

/* -------------------------------------------------------------- client */

static int fd_send(void *ud, const struct sockaddr *to, socklen_t tolen,
		   const void *data, size_t len)
{
	int fd = *(int *)ud;

	return sendto(fd, data, len, 0, to, tolen) < 0 ? -errno : 0;
}

static int join_fail(char *err, size_t errlen, int rv, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int join_fail(char *err, size_t errlen, int rv, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rv;
}

/* The client's machine: JOIN until PEERS (or ERROR), then PUNCH every
 * candidate until one answers. */
struct wh_rdv_client {
	wh_rdv_send_fn send;
	void *ud;
	struct sockaddr_storage sig;
	socklen_t siglen;
	char sigstr[WH_ADDRSTRLEN];
	uint8_t room[WH_SIG_ROOM_LEN];
	struct wh_sig_msg join, peers;
	uint64_t deadline, next_send, punch_end;
	unsigned retry_ms;
	bool have_peers;
	int result; /* 0 while it goes on */
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char err[512];
};

static int client_end(struct wh_rdv_client *c, int rv, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int client_end(struct wh_rdv_client *c, int rv, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	c->result = rv;
	return rv;
}

int wh_rdv_client_new(const char *code, const struct sockaddr *sig,
		      socklen_t siglen, const struct wh_sig_addr *cands,
		      unsigned ncand, int timeout_ms, uint64_t now_ns,
		      wh_rdv_send_fn send, void *ud,
		      struct wh_rdv_client **pc)
{
	uint8_t token[WH_SIG_TOKEN_LEN];
	struct wh_rdv_client *c;

	if (siglen > sizeof(c->sig) || ncand > WH_SIG_MAX_CANDS - 1)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (wh_rdv_derive(code, c->room, token) != 0) {
		free(c);
		return WH_ERR_CODE;
	}
	sodium_memzero(token, sizeof(token));
	c->send = send;
	c->ud = ud;
	memcpy(&c->sig, sig, siglen);
	c->siglen = siglen;
	wh_addr_str(sig, c->sigstr, sizeof(c->sigstr));
	c->join.type = WH_SIG_JOIN;
	memcpy(c->join.room, c->room, sizeof(c->room));
	randombytes_buf(c->join.txn, sizeof(c->join.txn));
	c->join.ncand = (uint8_t)ncand;
	if (ncand)
		memcpy(c->join.cand, cands, ncand * sizeof(*cands));
	c->retry_ms = 500;
	c->next_send = now_ns;
	c->deadline = now_ns + (uint64_t)timeout_ms * WH_NS_PER_MS;
	*pc = c;
	return 0;
}

void wh_rdv_client_del(struct wh_rdv_client *c)
{
	free(c);
}

static int client_unreachable(struct wh_rdv_client *c)
{
	char list[256] = "", ab[WH_ADDRSTRLEN];
	size_t off = 0;

	for (unsigned i = 0; i < c->peers.ncand && off < sizeof(list); i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
					i ? ", " : "",
					wh_sig_addr_str(&c->peers.cand[i], ab,
							sizeof(ab)));
	return client_end(c, -EHOSTUNREACH,
			  "the host was found but none of its addresses (%s) "
			  "answered hole punching: a firewall may block UDP; "
			  "give a reachable address with --peer", list);
}

int wh_rdv_client_tick(struct wh_rdv_client *c, uint64_t now)
{
	const struct sockaddr *sig = (const struct sockaddr *)&c->sig;

	if (c->result)
		return c->result;
	if (c->have_peers && now >= c->punch_end)
		return client_unreachable(c);
	if (now >= c->deadline) {
		if (c->have_peers)
			return client_unreachable(c);
		return client_end(c, WH_ERR_TIMEOUT,
				  "the signal server %s did not answer: is it "
				  "running and reachable over UDP? (or give "
				  "the host's address with --peer)", c->sigstr);
	}
	if (now < c->next_send)
		return 0;
	if (!c->have_peers) {
		send_msg(c->send, c->ud, sig, c->siglen, &c->join);
		c->next_send = now + c->retry_ms * WH_NS_PER_MS;
		c->retry_ms = c->retry_ms < 2000 ? c->retry_ms * 2 : 2000;
		return 0;
	}
	for (unsigned i = 0; i < c->peers.ncand; i++) {
		struct sockaddr_storage ss;
		socklen_t l = wh_sig_addr_to_sa(&c->peers.cand[i], &ss);
		struct wh_sig_msg p;

		if (ss.ss_family != sig->sa_family)
			continue;
		memset(&p, 0, sizeof(p));
		p.type = WH_SIG_PUNCH;
		memcpy(p.room, c->room, sizeof(c->room));
		memcpy(p.txn, c->join.txn, sizeof(c->join.txn));
		send_msg(c->send, c->ud, (struct sockaddr *)&ss, l, &p);
	}
	c->next_send = now + WH_RDV_PUNCH_EVERY_MS * WH_NS_PER_MS;
	return 0;
}

int wh_rdv_client_timeout_ms(const struct wh_rdv_client *c, uint64_t now)
{
	if (c->result)
		return 0;
	return (int)((c->next_send > now ? c->next_send - now : 0) /
		     WH_NS_PER_MS) + 1;
}

int wh_rdv_client_input(struct wh_rdv_client *c, uint64_t now,
			const uint8_t *data, size_t len,
			const struct sockaddr *from, socklen_t fromlen)
{
	struct wh_sig_msg m;
	char ab[WH_ADDRSTRLEN];

	if (c->result)
		return c->result;
	if (wh_sig_decode(data, len, &m) != 0)
		return 0;
	if (memcmp(m.txn, c->join.txn, sizeof(c->join.txn)) != 0)
		return 0;
	if (m.type == WH_SIG_PUNCH &&
	    memcmp(m.room, c->room, sizeof(c->room)) == 0) {
		if (fromlen > sizeof(c->peer))
			return 0;
		if (!m.ack) {
			m.ack = true;
			send_msg(c->send, c->ud, from, fromlen, &m);
		}
		memcpy(&c->peer, from, fromlen);
		c->peerlen = fromlen;
		c->result = 1;
		return 1;
	}
	if (!sa_eq(from, (const struct sockaddr *)&c->sig))
		return 0;
	if (m.type == WH_SIG_ERROR) {
		if (m.code == WH_SIGE_NOROOM)
			return client_end(
				c, -ENOENT,
				"no host is registered for this code at the "
				"signal server %s: check the code, and that "
				"its host is running (a code expires about 2 "
				"minutes after its host stops)", c->sigstr);
		return client_end(c, -EBUSY,
				  "the signal server %s refused the request: "
				  "%s; try again later", c->sigstr,
				  m.code == WH_SIGE_RATE
					  ? "too many requests from this "
					    "address"
					  : "it is overloaded");
	}
	if (m.type == WH_SIG_PEERS && !c->have_peers) {
		c->peers = m;
		c->have_peers = true;
		c->punch_end = now + WH_RDV_PUNCH_MS * WH_NS_PER_MS;
		c->next_send = now;
		wh_debug("signal: seen as %s; host has %u candidate(s)",
			 wh_sig_addr_str(&m.refl, ab, sizeof(ab)), m.ncand);
	}
	return 0;
}

const struct sockaddr *wh_rdv_client_peer(const struct wh_rdv_client *c,
					  socklen_t *len)
{
	if (c->result != 1)
		return NULL;
	*len = c->peerlen;
	return (const struct sockaddr *)&c->peer;
}

const char *wh_rdv_client_error(const struct wh_rdv_client *c)
{
	return c->err;
}

int wh_rdv_join(const struct sockaddr *sig, socklen_t siglen,
		const char *code, int timeout_ms, int cancel_fd, int *pfd,
		struct sockaddr_storage *peer, socklen_t *peerlen, char *err,
		size_t errlen)
{
	uint8_t room[WH_SIG_ROOM_LEN], token[WH_SIG_TOKEN_LEN];
	struct wh_sig_addr cands[WH_SIG_MAX_CANDS - 1];
	struct wh_rdv_client *c;
	struct sockaddr_storage local;
	socklen_t locallen = sizeof(local);
	char ab[WH_ADDRSTRLEN];
	unsigned ncand;
	int fd, rv;

	if (wh_rdv_derive(code, room, token) != 0)
		return join_fail(err, errlen, WH_ERR_CODE, "bad join code");
	sodium_memzero(token, sizeof(token));
	fd = wh_quic_socket(sig->sa_family);
	if (fd < 0)
		return join_fail(err, errlen, fd, "cannot make a UDP socket: "
				 "%s", strerror(-fd));
	memset(&local, 0, sizeof(local));
	local.ss_family = sig->sa_family;
	if (bind(fd, (struct sockaddr *)&local,
		 sig->sa_family == AF_INET ? sizeof(struct sockaddr_in)
					   : sizeof(struct sockaddr_in6)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&local, &locallen) != 0) {
		rv = -errno;
		close(fd);
		return join_fail(err, errlen, rv, "cannot bind a UDP socket: "
				 "%s", strerror(-rv));
	}
	{
		struct wh_sig_addr la;

		wh_sig_addr_from_sa((struct sockaddr *)&local, &la);
		ncand = wh_rdv_local_cands((struct sockaddr *)&local, la.port,
					   cands, WH_SIG_MAX_CANDS - 1);
	}
	rv = wh_rdv_client_new(code, sig, siglen, cands, ncand, timeout_ms,
			       wh_now_ns(), fd_send, &fd, &c);
	if (rv < 0) {
		close(fd);
		return join_fail(err, errlen, rv, "%s", wh_strerror(rv));
	}
	for (;;) {
		struct pollfd pf[2] = { { .fd = fd, .events = POLLIN },
					{ .fd = cancel_fd, .events = POLLIN } };
		uint8_t buf[WH_SIG_MAX_DGRAM + 1];
		struct sockaddr_storage from;
		socklen_t fromlen;
		ssize_t n;

		rv = wh_rdv_client_tick(c, wh_now_ns());
		if (rv)
			break;
		if (poll(pf, cancel_fd >= 0 ? 2 : 1,
			 wh_rdv_client_timeout_ms(c, wh_now_ns())) <= 0)
			continue;
		if (pf[1].revents) {
			rv = -ECANCELED;
			break;
		}
		if (!(pf[0].revents & POLLIN))
			continue;
		fromlen = sizeof(from);
		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from,
			     &fromlen);
		if (n <= 0)
			continue;
		rv = wh_rdv_client_input(c, wh_now_ns(), buf, (size_t)n,
					 (struct sockaddr *)&from, fromlen);
		if (rv)
			break;
	}
	if (rv == 1) {
		const struct sockaddr *p = wh_rdv_client_peer(c, peerlen);

		memcpy(peer, p, *peerlen);
		wh_info("signal: a path to the host: %s",
			wh_addr_str(p, ab, sizeof(ab)));
		wh_rdv_client_del(c);
		*pfd = fd;
		return 0;
	}
	close(fd);
	if (rv == -ECANCELED)
		join_fail(err, errlen, rv, "cancelled");
	else
		join_fail(err, errlen, rv, "%s", wh_rdv_client_error(c));
	wh_rdv_client_del(c);
	return rv;
}
