/*
 * wh_net.c - one connection/stream interface over QUIC and TLS/TCP.
 *
 * A struct wh_net_conn wraps the backend connection: the host gets one per
 * accepted connection; a client gets one at the start, bound to a backend
 * when that backend's handshake completes (until then it may have a QUIC
 * and a TCP attempt under it).  Stream handles are the backends' own,
 * interpreted through their connection.  The epoll fd of the endpoint
 * watches the UDP socket and the TCP endpoint's epoll fd.  An attempt
 * that lost the race is deleted at the end of the public entry point, and
 * its callbacks are cut off at once (its user data is cleared).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <netinet/in.h>
#include <stdio.h>
#include <unistd.h>

#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "net/wh_addr.h"
#include "net/wh_net.h"
#include "net/wh_tls_tcp.h"

struct wh_net_conn {
	struct wh_net_ep *ep;
	enum wh_net_transport kind; /* WH_NET_AUTO while not bound */
	struct wh_quic_conn *qc;
	struct wh_tcp_conn *tc;
	void *ud;
	struct wh_net_conn *prev, *next;
};

struct wh_net_ep {
	int epfd;
	bool server;
	bool deleting;
	struct wh_quic_ep *q;
	struct wh_tcp_ep *t;
	struct wh_quic_config cfg;
	const struct wh_net_cbs *cbs;
	void *ud;
	struct wh_net_conn *conns;
	size_t nconns;
	/* client */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum wh_net_transport mode;
	uint64_t tcp_at;       /* ns: start the TCP attempt then (0: no) */
	uint64_t quic_at;      /* ns: the QUIC attempt started */
	uint64_t give_up_at;   /* ns: TCP failed; QUIC gets until then */
	bool quic_failed, tcp_failed;
	int quic_err, tcp_err;
	char quic_reason[128], tcp_reason[128];
	bool drop_q, drop_t;   /* delete the losing attempt */
	bool udp_held;         /* the UDP socket is not watched for now */
};

/* When the TCP attempt fails (refused, say) and QUIC has had no answer
 * for this long, UDP is most likely blocked as well: the attempt ends and
 * the owner retries, rather than QUIC waiting for its handshake timeout. */
#define QUIC_ALONE_MS (2 * WH_NET_RACE_MS)

static const struct wh_quic_cbs q_cbs;
static const struct wh_tcp_cbs t_cbs;

static void attempt_failed(struct wh_net_conn *w, bool quic, int err,
			   const char *reason);

/* ---------------------------------------------------------------- misc */

int wh_net_transport_parse(const char *s, enum wh_net_transport *t)
{
	if (strcmp(s, "auto") == 0)
		*t = WH_NET_AUTO;
	else if (strcmp(s, "quic") == 0)
		*t = WH_NET_QUIC;
	else if (strcmp(s, "tcp") == 0)
		*t = WH_NET_TCP;
	else
		return -EINVAL;
	return 0;
}

const char *wh_net_transport_name(enum wh_net_transport t)
{
	switch (t) {
	case WH_NET_QUIC:
		return "QUIC";
	case WH_NET_TCP:
		return "TCP";
	default:
		return "auto";
	}
}

static struct wh_net_conn *conn_new(struct wh_net_ep *ep)
{
	struct wh_net_conn *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->ep = ep;
	w->next = ep->conns;
	if (ep->conns)
		ep->conns->prev = w;
	ep->conns = w;
	ep->nconns++;
	return w;
}

static void conn_free(struct wh_net_conn *w)
{
	struct wh_net_ep *ep = w->ep;

	if (w->prev)
		w->prev->next = w->next;
	else
		ep->conns = w->next;
	if (w->next)
		w->next->prev = w->prev;
	ep->nconns--;
	free(w);
}

/* conn_gone - tell the owner and free the wrapper. */
static void conn_gone(struct wh_net_conn *w, int err, const char *reason)
{
	const struct wh_net_cbs *cbs = w->ep->cbs;

	if (w->qc)
		wh_quic_conn_set_ud(w->qc, NULL);
	if (w->tc)
		wh_tcp_conn_set_ud(w->tc, NULL);
	if (cbs->on_close)
		cbs->on_close(w, err, reason ? reason : "", w->ud);
	conn_free(w);
}

static void watch(struct wh_net_ep *ep, int fd)
{
	struct epoll_event ev;

	ev.events = EPOLLIN;
	ev.data.fd = fd;
	epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void unwatch(struct wh_net_ep *ep, int fd)
{
	epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* ------------------------------------------------------------ the race */

static void start_tcp(struct wh_net_ep *ep, struct wh_net_conn *w)
{
	int rv;

	ep->tcp_at = 0;
	if (ep->t || ep->tcp_failed)
		return;
	wh_debug("connecting over TCP too");
	rv = wh_tcp_client_new((struct sockaddr *)&ep->addr, ep->addrlen,
			       &ep->cfg, &t_cbs, w, &ep->t, &w->tc);
	if (rv < 0) {
		ep->tcp_failed = true;
		ep->tcp_err = rv;
		snprintf(ep->tcp_reason, sizeof(ep->tcp_reason), "%s",
			 wh_strerror(rv));
		w->tc = NULL;
		return;
	}
	watch(ep, wh_tcp_ep_fd(ep->t));
}

/* quic_give_up - end the QUIC attempt of unbound |w| (TCP failed). */
static void quic_give_up(struct wh_net_ep *ep, struct wh_net_conn *w)
{
	ep->give_up_at = 0;
	if (!w->qc)
		return;
	wh_quic_conn_set_ud(w->qc, NULL);
	ep->drop_q = true;
	attempt_failed(w, true, WH_ERR_TIMEOUT, "no answer over UDP");
}

/* attempt_failed - an attempt of unbound |w| ended. */
static void attempt_failed(struct wh_net_conn *w, bool quic, int err,
			   const char *reason)
{
	struct wh_net_ep *ep = w->ep;
	bool q_over, t_over;

	if (quic) {
		w->qc = NULL;
		ep->quic_failed = true;
		ep->quic_err = err;
		snprintf(ep->quic_reason, sizeof(ep->quic_reason), "%s",
			 reason);
		wh_debug("QUIC attempt ended: %s%s%s", wh_strerror(err),
			 *reason ? ": " : "", reason);
		if (ep->mode == WH_NET_AUTO && !ep->deleting)
			start_tcp(ep, w);
	} else {
		w->tc = NULL;
		ep->tcp_failed = true;
		ep->tcp_err = err;
		snprintf(ep->tcp_reason, sizeof(ep->tcp_reason), "%s", reason);
		wh_debug("TCP attempt ended: %s%s%s", wh_strerror(err),
			 *reason ? ": " : "", reason);
		if (ep->mode == WH_NET_AUTO && !ep->quic_failed && w->qc &&
		    !ep->deleting) {
			uint64_t at = ep->quic_at +
				      QUIC_ALONE_MS * WH_NS_PER_MS;

			if (wh_now_ns() >= at) {
				quic_give_up(ep, w); /* frees |w| */
				return;
			}
			ep->give_up_at = at;
			return;
		}
	}
	q_over = ep->mode == WH_NET_TCP || ep->quic_failed;
	t_over = ep->mode == WH_NET_QUIC || ep->tcp_failed;
	if (ep->deleting || (q_over && t_over)) {
		/* report the more telling error: a refusal or a TLS failure
		 * over a plain timeout */
		if (ep->mode == WH_NET_TCP ||
		    (ep->mode == WH_NET_AUTO && ep->tcp_failed &&
		     ep->quic_err == WH_ERR_TIMEOUT &&
		     ep->tcp_err != WH_ERR_TIMEOUT))
			conn_gone(w, ep->tcp_err, ep->tcp_reason);
		else if (ep->quic_failed)
			conn_gone(w, ep->quic_err, ep->quic_reason);
		else
			conn_gone(w, err, reason);
	}
}

/* conn_bind - the handshake of |w|'s attempt by |kind| completed first. */
static void conn_bind(struct wh_net_conn *w, enum wh_net_transport kind)
{
	struct wh_net_ep *ep = w->ep;

	w->kind = kind;
	ep->tcp_at = 0;
	ep->give_up_at = 0;
	if (kind == WH_NET_QUIC && w->tc) {
		wh_tcp_conn_set_ud(w->tc, NULL);
		w->tc = NULL;
		ep->drop_t = true;
	} else if (kind == WH_NET_TCP && w->qc) {
		wh_quic_conn_set_ud(w->qc, NULL);
		w->qc = NULL;
		ep->drop_q = true;
	}
	wh_debug("the %s handshake completed first",
		 wh_net_transport_name(kind));
}

static void drop_losers(struct wh_net_ep *ep)
{
	if (ep->drop_q && ep->q) {
		unwatch(ep, wh_quic_ep_fd(ep->q));
		wh_quic_ep_del(ep->q);
		ep->q = NULL;
		ep->udp_held = false;
	}
	if (ep->drop_t && ep->t) {
		unwatch(ep, wh_tcp_ep_fd(ep->t));
		wh_tcp_ep_del(ep->t);
		ep->t = NULL;
	}
	ep->drop_q = ep->drop_t = false;
}

/* --------------------------------------------- transport callbacks
 *
 * What both transports' callbacks do once they have the connection:
 * pass the event on while the connection is of |kind| (a stream event
 * of the attempt that lost the race is dropped), bind a racing one to
 * the transport whose handshake completes first.
 */

static void on_handshake(struct wh_net_conn *w, enum wh_net_transport kind)
{
	if (!w)
		return;
	if (w->kind == WH_NET_AUTO)
		conn_bind(w, kind);
	if (w->ep->cbs->on_handshake)
		w->ep->cbs->on_handshake(w, w->ud);
}

static void on_stream_open(struct wh_net_conn *w, enum wh_net_transport kind,
			   struct wh_net_stream *s)
{
	if (w && w->kind == kind && w->ep->cbs->on_stream_open)
		w->ep->cbs->on_stream_open(w, s, w->ud);
}

static int on_stream_data(struct wh_net_conn *w, enum wh_net_transport kind,
			  struct wh_net_stream *s, const uint8_t *data,
			  size_t len, bool fin)
{
	if (!w || w->kind != kind)
		return 0;
	return w->ep->cbs->on_stream_data(w, s, data, len, fin, w->ud);
}

static void on_stream_close(struct wh_net_conn *w,
			    enum wh_net_transport kind,
			    struct wh_net_stream *s)
{
	if (w && w->kind == kind && w->ep->cbs->on_stream_close)
		w->ep->cbs->on_stream_close(w, s, w->ud);
}

static void on_streams_available(struct wh_net_conn *w,
				 enum wh_net_transport kind)
{
	if (w && w->kind == kind && w->ep->cbs->on_streams_available)
		w->ep->cbs->on_streams_available(w, w->ud);
}

static void on_close(struct wh_net_conn *w, bool quic, int err,
		     const char *reason)
{
	if (!w)
		return;
	if (w->kind == WH_NET_AUTO) {
		attempt_failed(w, quic, err, reason);
		return;
	}
	conn_gone(w, err, reason);
}

/* ------------------------------------------------------ QUIC callbacks */

static void q_accept(struct wh_quic_conn *qc, void *ud)
{
	struct wh_net_ep *ep = ud;
	struct wh_net_conn *w = conn_new(ep);

	if (!w) {
		wh_quic_conn_close(qc, 3, "out of memory");
		return;
	}
	w->kind = WH_NET_QUIC;
	w->qc = qc;
	wh_quic_conn_set_ud(qc, w);
	if (ep->cbs->on_accept)
		ep->cbs->on_accept(w, ep->ud);
}

static void q_handshake(struct wh_quic_conn *qc, void *ud)
{
	on_handshake(ud, WH_NET_QUIC);
}

static void q_stream_open(struct wh_quic_conn *qc, struct wh_quic_stream *s,
			  void *ud)
{
	on_stream_open(ud, WH_NET_QUIC, (struct wh_net_stream *)s);
}

static int q_stream_data(struct wh_quic_conn *qc, struct wh_quic_stream *s,
			 const uint8_t *data, size_t len, bool fin, void *ud)
{
	return on_stream_data(ud, WH_NET_QUIC, (struct wh_net_stream *)s,
			      data, len, fin);
}

static void q_stream_close(struct wh_quic_conn *qc, struct wh_quic_stream *s,
			   void *ud)
{
	on_stream_close(ud, WH_NET_QUIC, (struct wh_net_stream *)s);
}

static void q_streams_available(struct wh_quic_conn *qc, void *ud)
{
	on_streams_available(ud, WH_NET_QUIC);
}

static void q_path_change(struct wh_quic_conn *qc, const char *old,
			  const char *now, void *ud)
{
	struct wh_net_conn *w = ud;

	(void)qc;
	if (w && w->kind == WH_NET_QUIC && w->ep->cbs->on_path_change)
		w->ep->cbs->on_path_change(w, old, now, w->ud);
	else
		wh_info("quic: peer %s is now at %s", old, now);
}

static void q_close(struct wh_quic_conn *qc, int err, const char *reason,
		    void *ud)
{
	on_close(ud, true, err, reason);
}

static const struct wh_quic_cbs q_cbs = {
	.on_accept = q_accept,
	.on_handshake = q_handshake,
	.on_stream_open = q_stream_open,
	.on_stream_data = q_stream_data,
	.on_stream_close = q_stream_close,
	.on_streams_available = q_streams_available,
	.on_close = q_close,
	.on_path_change = q_path_change,
};

/* ------------------------------------------------------- TCP callbacks */

static void t_accept(struct wh_tcp_conn *tc, void *ud)
{
	struct wh_net_ep *ep = ud;
	struct wh_net_conn *w = conn_new(ep);

	if (!w) {
		wh_tcp_conn_close(tc, 3, "out of memory");
		return;
	}
	w->kind = WH_NET_TCP;
	w->tc = tc;
	wh_tcp_conn_set_ud(tc, w);
	if (ep->cbs->on_accept)
		ep->cbs->on_accept(w, ep->ud);
}

static void t_handshake(struct wh_tcp_conn *tc, void *ud)
{
	on_handshake(ud, WH_NET_TCP);
}

static void t_stream_open(struct wh_tcp_conn *tc, struct wh_tcp_stream *s,
			  void *ud)
{
	on_stream_open(ud, WH_NET_TCP, (struct wh_net_stream *)s);
}

static int t_stream_data(struct wh_tcp_conn *tc, struct wh_tcp_stream *s,
			 const uint8_t *data, size_t len, bool fin, void *ud)
{
	return on_stream_data(ud, WH_NET_TCP, (struct wh_net_stream *)s,
			      data, len, fin);
}

static void t_stream_close(struct wh_tcp_conn *tc, struct wh_tcp_stream *s,
			   void *ud)
{
	on_stream_close(ud, WH_NET_TCP, (struct wh_net_stream *)s);
}

static void t_streams_available(struct wh_tcp_conn *tc, void *ud)
{
	on_streams_available(ud, WH_NET_TCP);
}

static void t_close(struct wh_tcp_conn *tc, int err, const char *reason,
		    void *ud)
{
	on_close(ud, false, err, reason);
}

static const struct wh_tcp_cbs t_cbs = {
	.on_accept = t_accept,
	.on_handshake = t_handshake,
	.on_stream_open = t_stream_open,
	.on_stream_data = t_stream_data,
	.on_stream_close = t_stream_close,
	.on_streams_available = t_streams_available,
	.on_close = t_close,
};

/* ----------------------------------------------------------- endpoints */

static struct wh_net_ep *ep_alloc(const struct wh_quic_config *cfg,
				  const struct wh_net_cbs *cbs, void *ud,
				  bool server)
{
	struct wh_net_ep *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return NULL;
	if (cfg)
		ep->cfg = *cfg;
	else
		wh_quic_config_default(&ep->cfg, server);
	ep->cbs = cbs;
	ep->ud = ud;
	ep->server = server;
	ep->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ep->epfd < 0) {
		free(ep);
		return NULL;
	}
	return ep;
}

static void set_port(struct sockaddr_storage *ss, const struct sockaddr *from)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port =
			((const struct sockaddr_in *)from)->sin_port;
	else
		((struct sockaddr_in6 *)ss)->sin6_port =
			((const struct sockaddr_in6 *)from)->sin6_port;
}

static bool port_is_zero(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_port == 0;
	return ((const struct sockaddr_in6 *)sa)->sin6_port == 0;
}

int wh_net_server_new(const struct sockaddr *addr, socklen_t addrlen,
		      const struct wh_quic_config *cfg,
		      const struct wh_net_cbs *cbs, void *ud,
		      struct wh_net_ep **pep)
{
	struct wh_net_ep *ep = ep_alloc(cfg, cbs, ud, true);
	bool any_port = port_is_zero(addr);
	int rv = -EADDRINUSE;

	if (!ep)
		return -ENOMEM;
	/* an ephemeral UDP port may be taken on TCP: try a few */
	for (int tries = 0; tries < 16 && rv == -EADDRINUSE; tries++) {
		struct sockaddr_storage ss, local;
		socklen_t len;
		char buf[WH_ADDRSTRLEN];

		rv = wh_quic_server_new(addr, addrlen, &ep->cfg, &q_cbs, ep,
					&ep->q);
		if (rv < 0)
			break;
		memcpy(&ss, addr, addrlen);
		wh_quic_ep_local_addr(ep->q, &local, &len);
		set_port(&ss, (struct sockaddr *)&local);
		rv = wh_tcp_server_new((struct sockaddr *)&ss, addrlen,
				       &ep->cfg, &t_cbs, ep, &ep->t);
		if (rv < 0 && !any_port) {
			/* the port the user chose: QUIC alone rather than
			 * nothing */
			wh_warn("cannot listen on TCP port %s too (%s): no TCP "
				"fallback for clients whose UDP is blocked",
				wh_addr_str((struct sockaddr *)&ss, buf,
					    sizeof(buf)),
				wh_strerror(rv));
			ep->t = NULL;
			rv = 0;
		} else if (rv < 0) {
			wh_quic_ep_del(ep->q);
			ep->q = NULL;
		}
	}
	if (rv < 0) {
		wh_net_ep_del(ep);
		return rv;
	}
	watch(ep, wh_quic_ep_fd(ep->q));
	if (ep->t)
		watch(ep, wh_tcp_ep_fd(ep->t));
	*pep = ep;
	return 0;
}

int wh_net_client_new(const struct sockaddr *addr, socklen_t addrlen,
		      enum wh_net_transport transport,
		      const struct wh_quic_config *cfg,
		      const struct wh_net_cbs *cbs, void *ud,
		      struct wh_net_ep **pep, struct wh_net_conn **pconn)
{
	return wh_net_client_new_fd(-1, addr, addrlen, transport, cfg, cbs,
				    ud, pep, pconn);
}

struct wh_quic_ep *wh_net_ep_quic(struct wh_net_ep *ep)
{
	return ep ? ep->q : NULL;
}

int wh_net_client_new_fd(int udp_fd, const struct sockaddr *addr,
			 socklen_t addrlen, enum wh_net_transport transport,
			 const struct wh_quic_config *cfg,
			 const struct wh_net_cbs *cbs, void *ud,
			 struct wh_net_ep **pep, struct wh_net_conn **pconn)
{
	struct wh_net_ep *ep = ep_alloc(cfg, cbs, ud, false);
	struct wh_net_conn *w;
	int rv;

	if (!ep) {
		if (udp_fd >= 0)
			close(udp_fd);
		return -ENOMEM;
	}
	memcpy(&ep->addr, addr, addrlen);
	ep->addrlen = addrlen;
	ep->mode = transport;
	w = conn_new(ep);
	if (!w) {
		if (udp_fd >= 0)
			close(udp_fd);
		wh_net_ep_del(ep);
		return -ENOMEM;
	}
	w->ud = ud;
	if (transport == WH_NET_TCP && udp_fd >= 0) {
		close(udp_fd);
		udp_fd = -1;
	}
	if (transport != WH_NET_TCP) {
		if (udp_fd >= 0)
			rv = wh_quic_client_new_fd(udp_fd, addr, addrlen,
						   &ep->cfg, &q_cbs, w,
						   &ep->q, &w->qc);
		else
			rv = wh_quic_client_new(addr, addrlen, &ep->cfg,
						&q_cbs, w, &ep->q, &w->qc);
		if (rv < 0) {
			ep->q = NULL;
			w->qc = NULL;
			ep->quic_failed = true;
			ep->quic_err = rv;
			if (transport == WH_NET_QUIC)
				goto fail;
		} else {
			ep->quic_at = wh_now_ns();
			watch(ep, wh_quic_ep_fd(ep->q));
		}
	}
	if (transport == WH_NET_TCP || ep->quic_failed) {
		start_tcp(ep, w);
		if (ep->tcp_failed) {
			rv = ep->tcp_err;
			goto fail;
		}
	} else if (transport == WH_NET_AUTO) {
		ep->tcp_at = wh_now_ns() + WH_NET_RACE_MS * WH_NS_PER_MS;
	}
	*pep = ep;
	*pconn = w;
	return 0;
fail:
	conn_free(w);
	wh_net_ep_del(ep);
	return rv;
}

void wh_net_race_now(struct wh_net_ep *ep)
{
	if (!ep->server && ep->tcp_at && ep->conns &&
	    ep->conns->kind == WH_NET_AUTO)
		start_tcp(ep, ep->conns);
	drop_losers(ep);
}

void wh_net_ep_del(struct wh_net_ep *ep)
{
	if (!ep)
		return;
	ep->deleting = true;
	if (ep->q)
		wh_quic_ep_del(ep->q);
	ep->q = NULL;
	if (ep->t)
		wh_tcp_ep_del(ep->t);
	ep->t = NULL;
	while (ep->conns)
		conn_gone(ep->conns, 0, "");
	if (ep->epfd >= 0)
		close(ep->epfd);
	free(ep);
}

int wh_net_ep_fd(struct wh_net_ep *ep)
{
	return ep->epfd;
}

int wh_net_ep_local_addr(struct wh_net_ep *ep, struct sockaddr_storage *ss,
			 socklen_t *len)
{
	if (ep->q)
		return wh_quic_ep_local_addr(ep->q, ss, len);
	if (ep->t)
		return wh_tcp_ep_local_addr(ep->t, ss, len);
	return -ENOTCONN;
}

/* udp_error - a client racing: did the UDP path report an error?  Then
 * QUIC cannot work there (no listener, no route, a firewall that says
 * so): give up on it and go to TCP now. */
static void udp_error(struct wh_net_ep *ep)
{
	struct wh_net_conn *w = ep->conns;
	int err = 0;
	socklen_t len = sizeof(err);

	if (ep->server || !ep->tcp_at || !w || w->kind != WH_NET_AUTO ||
	    !w->qc)
		return;
	if (getsockopt(wh_quic_ep_fd(ep->q), SOL_SOCKET, SO_ERROR, &err,
		       &len) != 0 || !err)
		return;
	if (err != ECONNREFUSED && err != EHOSTUNREACH &&
	    err != ENETUNREACH && err != EACCES && err != EPERM)
		return;
	wh_quic_conn_set_ud(w->qc, NULL);
	ep->drop_q = true;
	attempt_failed(w, true, -err, strerror(err));
}

/* sync_hold - watch the UDP socket, or not while the QUIC client lets
 * packets gather (wh_quic_ep_holding); its timer ends the hold. */
static void sync_hold(struct wh_net_ep *ep)
{
	struct epoll_event ev;
	bool hold;

	if (!ep->q || ep->drop_q)
		return;
	hold = wh_quic_ep_holding(ep->q);
	if (hold == ep->udp_held)
		return;
	ev.events = hold ? 0 : EPOLLIN;
	ev.data.fd = wh_quic_ep_fd(ep->q);
	if (epoll_ctl(ep->epfd, EPOLL_CTL_MOD, ev.data.fd, &ev) == 0)
		ep->udp_held = hold;
}

void wh_net_ep_read(struct wh_net_ep *ep)
{
	struct epoll_event evs[4];
	bool udp = false, tcp = false;
	int n;

	/* which of the two is ready (the set is level-triggered: nothing to
	 * drain); each backend then reads its own sockets */
	n = epoll_wait(ep->epfd, evs, 4, 0);
	for (int i = 0; i < n; i++) {
		if (ep->q && evs[i].data.fd == wh_quic_ep_fd(ep->q))
			udp = true;
		else if (ep->t && evs[i].data.fd == wh_tcp_ep_fd(ep->t))
			tcp = true;
	}
	if (udp) {
		udp_error(ep);
		if (ep->q && !ep->drop_q)
			wh_quic_ep_read(ep->q);
	}
	if (tcp && ep->t)
		wh_tcp_ep_read(ep->t);
	sync_hold(ep);
	drop_losers(ep);
}

void wh_net_ep_expire(struct wh_net_ep *ep)
{
	uint64_t now = wh_now_ns();

	if (ep->tcp_at && now >= ep->tcp_at && ep->conns &&
	    ep->conns->kind == WH_NET_AUTO)
		start_tcp(ep, ep->conns);
	if (ep->give_up_at && now >= ep->give_up_at && ep->conns &&
	    ep->conns->kind == WH_NET_AUTO)
		quic_give_up(ep, ep->conns);
	if (ep->q)
		wh_quic_ep_expire(ep->q);
	if (ep->t)
		wh_tcp_ep_expire(ep->t);
	sync_hold(ep);
	drop_losers(ep);
}

void wh_net_ep_flush(struct wh_net_ep *ep)
{
	if (ep->q)
		wh_quic_ep_flush(ep->q);
	if (ep->t)
		wh_tcp_ep_flush(ep->t);
	drop_losers(ep);
}

static int min_timeout(int a, int b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

static int ms_until(uint64_t when)
{
	uint64_t now = wh_now_ns();

	return when <= now ? 0 : (int)((when - now) / WH_NS_PER_MS) + 1;
}

int wh_net_ep_timeout_ms(struct wh_net_ep *ep)
{
	int t = -1;

	if (ep->q)
		t = min_timeout(t, wh_quic_ep_timeout_ms(ep->q));
	if (ep->t)
		t = min_timeout(t, wh_tcp_ep_timeout_ms(ep->t));
	if (ep->tcp_at)
		t = min_timeout(t, ms_until(ep->tcp_at));
	if (ep->give_up_at)
		t = min_timeout(t, ms_until(ep->give_up_at));
	return t;
}

size_t wh_net_ep_nconns(struct wh_net_ep *ep)
{
	return ep->nconns;
}

int wh_net_ep_conns(struct wh_net_ep *ep, struct wh_net_conn ***pv,
		    size_t *pn)
{
	struct wh_net_conn **v;
	size_t n = 0;

	*pv = NULL;
	*pn = 0;
	if (!ep->nconns)
		return 0;
	v = calloc(ep->nconns, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (struct wh_net_conn *w = ep->conns; w && n < ep->nconns;
	     w = w->next)
		v[n++] = w;
	*pv = v;
	*pn = n;
	return 0;
}

/* --------------------------------------------------------- connections */

void wh_net_conn_set_ud(struct wh_net_conn *c, void *ud)
{
	c->ud = ud;
}

void *wh_net_conn_ud(struct wh_net_conn *c)
{
	return c->ud;
}

const char *wh_net_conn_peer(struct wh_net_conn *c)
{
	if (c->qc)
		return wh_quic_conn_peer(c->qc);
	if (c->tc)
		return wh_tcp_conn_peer(c->tc);
	return "";
}

enum wh_net_transport wh_net_conn_transport(struct wh_net_conn *c)
{
	return c->kind;
}

int wh_net_conn_exporter(struct wh_net_conn *c, const char *label,
			 uint8_t *out, size_t len)
{
	if (c->kind == WH_NET_QUIC)
		return wh_quic_conn_exporter(c->qc, label, out, len);
	if (c->kind == WH_NET_TCP)
		return wh_tcp_conn_exporter(c->tc, label, out, len);
	return -EINVAL;
}

void wh_net_conn_close(struct wh_net_conn *c, uint64_t app_err,
		       const char *reason)
{
	if (c->qc)
		wh_quic_conn_close(c->qc, app_err, reason);
	if (c->tc)
		wh_tcp_conn_close(c->tc, app_err, reason);
}

bool wh_net_conn_closing(struct wh_net_conn *c)
{
	if (c->kind == WH_NET_QUIC)
		return wh_quic_conn_closing(c->qc);
	if (c->kind == WH_NET_TCP)
		return wh_tcp_conn_closing(c->tc);
	return false;
}

int wh_net_open_stream(struct wh_net_conn *c, void *stream_ud,
		       struct wh_net_stream **ps)
{
	if (c->kind == WH_NET_QUIC)
		return wh_quic_open_stream(c->qc, stream_ud,
					   (struct wh_quic_stream **)ps);
	if (c->kind == WH_NET_TCP)
		return wh_tcp_open_stream(c->tc, stream_ud,
					  (struct wh_tcp_stream **)ps);
	return -ENOTCONN;
}

int64_t wh_net_stream_id(struct wh_net_conn *c, struct wh_net_stream *s)
{
	if (c->kind == WH_NET_QUIC)
		return wh_quic_stream_id((struct wh_quic_stream *)s);
	return wh_tcp_stream_id((struct wh_tcp_stream *)s);
}

void wh_net_stream_set_ud(struct wh_net_conn *c, struct wh_net_stream *s,
			  void *ud)
{
	if (c->kind == WH_NET_QUIC)
		wh_quic_stream_set_ud((struct wh_quic_stream *)s, ud);
	else
		wh_tcp_stream_set_ud((struct wh_tcp_stream *)s, ud);
}

void *wh_net_stream_ud(struct wh_net_conn *c, struct wh_net_stream *s)
{
	if (c->kind == WH_NET_QUIC)
		return wh_quic_stream_ud((struct wh_quic_stream *)s);
	return wh_tcp_stream_ud((struct wh_tcp_stream *)s);
}

int wh_net_send(struct wh_net_conn *c, struct wh_net_stream *s, void *data,
		size_t len, bool fin, void (*free_fn)(void *))
{
	if (c->kind == WH_NET_QUIC)
		return wh_quic_send(c->qc, (struct wh_quic_stream *)s, data,
				    len, fin, free_fn);
	if (c->kind == WH_NET_TCP)
		return wh_tcp_send(c->tc, (struct wh_tcp_stream *)s, data, len,
				   fin, free_fn);
	if (free_fn && data)
		free_fn(data);
	return -ENOTCONN;
}

void wh_net_stream_reset(struct wh_net_conn *c, struct wh_net_stream *s,
			 uint64_t app_err)
{
	if (c->kind == WH_NET_QUIC)
		wh_quic_stream_reset(c->qc, (struct wh_quic_stream *)s,
				     app_err);
	else if (c->kind == WH_NET_TCP)
		wh_tcp_stream_reset(c->tc, (struct wh_tcp_stream *)s, app_err);
}
