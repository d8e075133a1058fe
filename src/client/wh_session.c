/*
 * wh_session.c - the client's network thread: connect, authenticate,
 * multiplex requests over streams, reconnect.
 *
 * Locking: s->lock guards the pending queue, every struct call, the state
 * and the handlers.  s->ep_lock guards the network endpoint and the fields
 * marked "network thread": the network thread holds it except while it
 * sleeps in epoll_wait, and a caller that finds it free puts its request on
 * the wire itself (kick()).  Lock order: ep_lock, then lock.  Callers
 * block on their call's condition variable.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sodium.h>

#include "auth/wh_pake.h"
#include "chunk/wh_zstd.h"
#include "client/wh_cctrl.h"
#include "client/wh_session.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "common/wh_trace.h"
#include "net/wh_addr.h"
#include "net/wh_net.h"
#include "proto/wh_proto.h"
#include "signal/wh_rendezvous.h"

#define PAKE_LABEL "EXPORTER-wormhole-pake"
#define CLIENT_CAPS (WH_CAP_INVAL | WH_CAP_READDIRPLUS | WH_CAP_CHUNKS | \
		     WH_CAP_MSTREAM | WH_CAP_SMALL)
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 1000
/* A first connection that the peer refuses this many times in a row (on
 * every transport tried: nothing listens on that port) fails at once
 * instead of retrying until the connect timeout.  Once connected, a
 * refusal (a restarting host) is retried as any other loss. */
#define REFUSED_MAX 3
#define RDV_TIMEOUT_MS 8000 /* one rendezvous, signal server and punch */
/*
 * An idle client holds back what a reply made it owe (its acknowledgement)
 * for up to ACK_HOLD_MS, so that the next request carries it.  ngtcp2
 * acknowledges after an eighth of the RTT, at once on a LAN: one READ
 * after another cost a packet more each way (the acknowledgement, and the
 * host's wake-up to read it).  Only with no request stream open (a bulk
 * transfer keeps its acknowledgements flowing), over QUIC, and never for
 * longer than ACK_HOLD_MS in a row: well within the 25 ms the peer allows.
 */
#define ACK_HOLD_MS 1

enum sess_state {
	SS_CONNECTING,
	SS_WAIT_ACK,  /* HELLO sent */
	SS_WAIT_OK,   /* AUTH sent */
	SS_READY,
	SS_FAILED,    /* permanent: wrong code, locked, or no_reconnect */
};

struct call {
	struct call *next;
	int refs;
	uint8_t *req;
	size_t req_len;
	struct wh_buf resp;
	int err;
	bool done, abandoned, in_flight;
	pthread_cond_t cv; /* a caller waits on it; not for an async call */
	/* an async call (wh_session_call_async): no caller waits; it is on
	 * the session's async list until it completes, then on its done
	 * list until |done_fn| ran (see run_done) */
	wh_rpc_done_fn done_fn;
	void *done_ud;
	uint64_t deadline; /* ns */
	struct call *anext, *aprev;
};

struct wh_session {
	struct wh_session_opts opts;
	char code[32];
	char peer[256];
	char signal[256];
	struct sockaddr_storage sigaddr; /* when signal[0] */
	socklen_t sigaddrlen;
	struct sockaddr_storage addr;
	socklen_t addrlen;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t ep_lock;
	pthread_mutex_t lock;
	pthread_cond_t state_cv;
	int wakefd, epfd;
	int stopfd; /* readable once wh_session_del() began */

	/* protected by lock */
	struct call *pend_head, *pend_tail;
	struct call *async_head;          /* async calls outstanding */
	struct call *done_head, *done_tail; /* async calls completed */
	enum sess_state state;
	int fail_err;
	char fail_msg[WH_MAX_ERRMSG + 64];
	bool ever_ready, stop;
	enum wh_net_transport transport; /* of the current connection */
	enum wh_net_transport last;      /* of the last one that worked */
	uint64_t caps; /* negotiated, atomic */
	wh_session_inval_cb on_inval;
	wh_session_reconnect_cb on_reconnect;
	void *handler_ud;

	/* network thread (or whoever holds ep_lock) */
	uint64_t sleep_until; /* when its epoll_wait returns at the latest */
	struct wh_net_ep *ep;
	struct wh_net_conn *nc;
	struct wh_net_stream *ctrl;
	struct wh_cctrl cc; /* the control stream's state machine */
	bool conn_dead;
	bool streams_blocked;
	unsigned streams_open; /* request streams */
	uint64_t next_attempt;
	unsigned retry_ms;
	unsigned refused;     /* attempts in a row the peer refused */
};

/* ---------------------------------------------------------------- calls */

static void call_unref(struct call *c)
{
	if (--c->refs > 0)
		return;
	free(c->req);
	wh_buf_free(&c->resp);
	if (!c->done_fn)
		pthread_cond_destroy(&c->cv);
	free(c);
}

/* call_finish - complete |c| with |err|; lock held.  A caller waiting is
 * woken; an async call goes to the done list, for run_done. */
static void call_finish(struct wh_session *s, struct call *c, int err)
{
	if (c->done)
		return;
	c->done = true;
	c->err = err;
	if (!c->done_fn) {
		pthread_cond_signal(&c->cv);
		return;
	}
	if (c->aprev)
		c->aprev->anext = c->anext;
	else
		s->async_head = c->anext;
	if (c->anext)
		c->anext->aprev = c->aprev;
	c->anext = c->aprev = NULL;
	if (s->done_tail)
		s->done_tail->anext = c;
	else
		s->done_head = c;
	s->done_tail = c;
}

/* run_done - run the completions of the async calls that completed (lock
 * not held): on the network thread, or a caller that failed its own. */
static void run_done(struct wh_session *s)
{
	for (;;) {
		struct call *c;

		pthread_mutex_lock(&s->lock);
		c = s->done_head;
		if (c) {
			s->done_head = c->anext;
			if (!s->done_head)
				s->done_tail = NULL;
			c->anext = NULL;
		}
		pthread_mutex_unlock(&s->lock);
		if (!c)
			return;
		c->done_fn(c->done_ud, c->err, &c->resp);
		pthread_mutex_lock(&s->lock);
		call_unref(c);
		pthread_mutex_unlock(&s->lock);
	}
}

/* expire_async - time out the async calls past their deadline, and the
 * ms until the next one's (-1: none); lock held. */
static int expire_async(struct wh_session *s, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	struct call *c = s->async_head, *n;

	for (; c; c = n) {
		n = c->anext;
		if (now >= c->deadline) {
			c->abandoned = true;
			call_finish(s, c, WH_ERR_TIMEOUT);
		} else if (c->deadline < next) {
			next = c->deadline;
		}
	}
	if (next == UINT64_MAX)
		return -1;
	return (int)((next - now) / WH_NS_PER_MS) + 1;
}

static void pend_push_front(struct wh_session *s, struct call *c)
{
	c->next = s->pend_head;
	s->pend_head = c;
	if (!s->pend_tail)
		s->pend_tail = c;
}

static void pend_push_back(struct wh_session *s, struct call *c)
{
	c->next = NULL;
	if (s->pend_tail)
		s->pend_tail->next = c;
	else
		s->pend_head = c;
	s->pend_tail = c;
}

static struct call *pend_pop(struct wh_session *s)
{
	struct call *c = s->pend_head;

	if (c) {
		s->pend_head = c->next;
		if (!s->pend_head)
			s->pend_tail = NULL;
		c->next = NULL;
	}
	return c;
}

/* fail_all_pending - lock held. */
static void fail_all_pending(struct wh_session *s, int err)
{
	struct call *c;

	while ((c = pend_pop(s))) {
		call_finish(s, c, err);
		call_unref(c);
	}
}

static void set_failed(struct wh_session *s, int err, const char *msg)
{
	pthread_mutex_lock(&s->lock);
	s->state = SS_FAILED;
	s->fail_err = err;
	snprintf(s->fail_msg, sizeof(s->fail_msg), "%s", msg);
	fail_all_pending(s, err);
	pthread_cond_broadcast(&s->state_cv);
	pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------- control stream */

/* The control stream's machine (client/wh_cctrl.h) acts on the session
 * through these. */
static enum wh_cctrl_phase cc_phase(void *ud)
{
	struct wh_session *s = ud;
	enum sess_state st;

	pthread_mutex_lock(&s->lock);
	st = s->state;
	pthread_mutex_unlock(&s->lock);
	return st == SS_WAIT_ACK ? WH_CCTRL_WAIT_ACK
	       : st == SS_WAIT_OK ? WH_CCTRL_WAIT_OK
	       : st == SS_READY	  ? WH_CCTRL_READY
				  : WH_CCTRL_OTHER;
}

static int cc_send(void *ud, struct wh_buf *b)
{
	struct wh_session *s = ud;
	int rv;

	if (!s->ctrl) {
		wh_buf_free(b);
		return WH_ERR_CLOSED;
	}
	/* the stream owns the bytes from here */
	rv = wh_net_send(s->nc, s->ctrl, b->data, b->len, false, free);
	wh_buf_init(b);
	return rv;
}

static void cc_close(void *ud, uint64_t app_err, const char *reason)
{
	struct wh_session *s = ud;

	wh_net_conn_close(s->nc, app_err, reason);
}

static void cc_fail(void *ud, int err, const char *msg)
{
	set_failed(ud, err, msg);
}

static void cc_authing(void *ud, uint64_t caps)
{
	struct wh_session *s = ud;

	__atomic_store_n(&s->caps, caps, __ATOMIC_RELEASE);
	pthread_mutex_lock(&s->lock);
	s->state = SS_WAIT_OK;
	pthread_mutex_unlock(&s->lock);
}

static void cc_ready(void *ud)
{
	struct wh_session *s = ud;
	wh_session_reconnect_cb reconnect;
	void *hud;
	bool again;

	pthread_mutex_lock(&s->lock);
	again = s->ever_ready;
	s->state = SS_READY;
	s->last = s->transport;
	s->ever_ready = true;
	s->retry_ms = RETRY_MIN_MS;
	reconnect = s->on_reconnect;
	hud = s->handler_ud;
	pthread_cond_broadcast(&s->state_cv);
	pthread_mutex_unlock(&s->lock);
	if (again) {
		wh_info("reconnected to %s over %s", s->peer,
			wh_net_transport_name(s->transport));
		if (reconnect)
			reconnect(hud);
	} else {
		wh_info("connected to %s over %s", s->peer,
			wh_net_transport_name(s->transport));
	}
}

static void cc_inval(void *ud, const char *dir, size_t dlen,
		     const char *name, size_t nlen)
{
	struct wh_session *s = ud;
	wh_session_inval_cb inval;
	void *hud;

	pthread_mutex_lock(&s->lock);
	inval = s->on_inval;
	hud = s->handler_ud;
	pthread_mutex_unlock(&s->lock);
	if (inval)
		inval(hud, dir, dlen, name, nlen);
}

static const struct wh_cctrl_ops cc_ops = {
	.phase = cc_phase,
	.send = cc_send,
	.close = cc_close,
	.fail = cc_fail,
	.authing = cc_authing,
	.ready = cc_ready,
	.inval = cc_inval,
};

static void on_handshake(struct wh_net_conn *nc, void *ud)
{
	struct wh_session *s = ud;
	uint8_t sid[32];
	int rv;

	rv = wh_net_conn_exporter(nc, PAKE_LABEL, sid, sizeof(sid));
	if (rv == 0)
		rv = wh_net_open_stream(nc, NULL, &s->ctrl);
	if (rv == 0)
		rv = wh_cctrl_hello(&s->cc, s->code, sid, sizeof(sid),
				    CLIENT_CAPS |
					    (wh_zstd_enabled()
						     ? WH_CAP_ZSTD | WH_CAP_ZSMALL
						     : 0));
	if (rv < 0) {
		wh_err("cannot start authentication: %s", wh_strerror(rv));
		wh_net_conn_close(nc, 1, "internal error");
		return;
	}
	pthread_mutex_lock(&s->lock);
	s->state = SS_WAIT_ACK;
	s->transport = wh_net_conn_transport(nc);
	pthread_mutex_unlock(&s->lock);
	wh_debug("%s handshake with %s done: authenticating",
		 wh_net_transport_name(s->transport), s->peer);
}

/* ---------------------------------------------------- network callbacks */

static int on_stream_data(struct wh_net_conn *nc, struct wh_net_stream *st,
			  const uint8_t *data, size_t len, bool fin, void *ud)
{
	struct wh_session *s = ud;
	struct call *c = wh_net_stream_ud(nc, st);
	struct wh_frame_hdr hdr;
	const char *why = NULL;
	int g;

	(void)nc;
	if (st == s->ctrl)
		return wh_cctrl_input(&s->cc, data, len);
	if (!c)
		return 0;
	pthread_mutex_lock(&s->lock);
	if (c->done || c->abandoned)
		goto out;
	/* room for the whole frame is made once its header is in, so a 1 MiB
	 * reply is not grown (and copied) step by step */
	g = wh_frame_gather(&c->resp, data, len, fin, WH_MAX_REPLY_FRAME,
			    &hdr, &why);
	if (g < 0) {
		wh_debug("reply: %s", g == -ENOMEM ? "out of memory" : why);
		call_finish(s, c, g == -ENOMEM ? -ENOMEM : WH_ERR_PROTO);
		goto out;
	}
	if (fin) {
		/* the caller is woken after the unlock, so that it does not
		 * wake only to wait for the lock we hold; the stream's
		 * reference keeps |c| alive until on_stream_close */
		wh_trace("n_reply", c->resp.len);
		if (c->done_fn) {
			call_finish(s, c, 0);
			goto out;
		}
		c->done = true;
		c->err = 0;
		pthread_mutex_unlock(&s->lock);
		pthread_cond_signal(&c->cv);
		return 0;
	}
out:
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void on_stream_close(struct wh_net_conn *nc, struct wh_net_stream *st,
			    void *ud)
{
	struct wh_session *s = ud;
	struct call *c = wh_net_stream_ud(nc, st);

	(void)nc;
	if (st == s->ctrl) {
		s->ctrl = NULL;
		return;
	}
	if (s->streams_open > 0)
		s->streams_open--;
	if (!c)
		return;
	wh_net_stream_set_ud(nc, st, NULL);
	pthread_mutex_lock(&s->lock);
	c->in_flight = false;
	if (c->done || c->abandoned) {
		call_unref(c);
	} else if (s->opts.no_reconnect || s->state == SS_FAILED) {
		call_finish(s, c, s->state == SS_FAILED && s->fail_err
				       ? s->fail_err
				       : WH_ERR_CLOSED);
		call_unref(c);
	} else {
		/* the stream died with the connection: send it again later */
		wh_buf_reset(&c->resp);
		pend_push_front(s, c);
	}
	pthread_mutex_unlock(&s->lock);
}

static void on_streams_available(struct wh_net_conn *nc, void *ud)
{
	struct wh_session *s = ud;

	(void)nc;
	s->streams_blocked = false;
}

static void on_close(struct wh_net_conn *nc, int err, const char *reason,
		     void *ud)
{
	struct wh_session *s = ud;
	bool was_ready;

	(void)nc;
	s->conn_dead = true;
	s->ctrl = NULL;
	pthread_mutex_lock(&s->lock);
	was_ready = s->state == SS_READY && !s->stop;
	s->transport = WH_NET_AUTO;
	if (s->state != SS_FAILED)
		s->state = SS_CONNECTING;
	pthread_mutex_unlock(&s->lock);
	if (was_ready && (err == 0 || err == WH_ERR_CLOSED))
		wh_warn("the host %s closed the connection%s%s; reconnecting",
			s->peer, *reason ? ": " : "", reason);
	else if (was_ready)
		wh_warn("connection to %s lost: %s%s%s; reconnecting", s->peer,
			wh_strerror(err), *reason ? ": " : "", reason);
	else
		wh_debug("connection attempt to %s ended: %s%s%s", s->peer,
			 wh_strerror(err), *reason ? ": " : "", reason);
	if (s->opts.no_reconnect && s->state != SS_FAILED)
		set_failed(s, WH_ERR_CLOSED, "connection closed by the host");
	s->refused = err == -ECONNREFUSED ? s->refused + 1 : 0;
	if (!s->ever_ready && s->refused >= REFUSED_MAX &&
	    s->state != SS_FAILED) {
		char msg[512];

		snprintf(msg, sizeof(msg),
			 "%.200s refused the connection (tried %s): nothing "
			 "listens on that port; is the host running, and is "
			 "the address right?", s->peer,
			 s->opts.transport == WH_NET_QUIC ? "QUIC over UDP"
			 : s->opts.transport == WH_NET_TCP
				 ? "TLS over TCP"
				 : "QUIC over UDP and TLS over TCP");
		set_failed(s, -ECONNREFUSED, msg);
	}
}

static const struct wh_net_cbs session_cbs = {
	.on_handshake = on_handshake,
	.on_stream_data = on_stream_data,
	.on_stream_close = on_stream_close,
	.on_streams_available = on_streams_available,
	.on_close = on_close,
};

/* -------------------------------------------------------- the thread */

static void conn_teardown(struct wh_session *s)
{
	if (s->ep) {
		int fd = wh_net_ep_fd(s->ep);

		epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
		wh_net_ep_del(s->ep);
	}
	s->ep = NULL;
	s->nc = NULL;
	s->ctrl = NULL;
	s->conn_dead = false;
	s->streams_open = 0;
	wh_cctrl_reset(&s->cc);
}

/* rendezvous - find the host through the signal server and punch a path
 * (blocking, bounded): the socket to run QUIC on, with s->addr set; or a
 * negative error.  Before the first connection, a failure fails the
 * session with its explanation; later ones are retried (a restarting
 * host registers again). */
static int rendezvous(struct wh_session *s)
{
	char err[WH_MAX_ERRMSG];
	int fd, rv;

	rv = wh_rdv_join((struct sockaddr *)&s->sigaddr, s->sigaddrlen,
			 s->code, RDV_TIMEOUT_MS, s->stopfd, &fd, &s->addr,
			 &s->addrlen,
			 err, sizeof(err));
	if (rv < 0) {
		bool ever;

		pthread_mutex_lock(&s->lock);
		ever = s->ever_ready;
		pthread_mutex_unlock(&s->lock);
		if (!ever)
			set_failed(s, rv, err);
		else
			wh_debug("%s", err);
		return rv;
	}
	pthread_mutex_lock(&s->lock);
	wh_addr_str((struct sockaddr *)&s->addr, s->peer, sizeof(s->peer));
	pthread_mutex_unlock(&s->lock);
	return fd;
}

static void conn_start(struct wh_session *s)
{
	struct wh_quic_config cfg;
	struct epoll_event ev;
	int rv;

	wh_quic_config_default(&cfg, false);
	if (s->signal[0]) {
		rv = rendezvous(s);
		if (rv < 0) {
			s->ep = NULL;
			return;
		}
		rv = wh_net_client_new_fd(rv, (struct sockaddr *)&s->addr,
					  s->addrlen, s->opts.transport, &cfg,
					  &session_cbs, s, &s->ep, &s->nc);
	} else {
		rv = wh_net_client_new((struct sockaddr *)&s->addr,
				       s->addrlen, s->opts.transport, &cfg,
				       &session_cbs, s, &s->ep, &s->nc);
	}
	if (rv < 0) {
		wh_debug("cannot connect to %s: %s", s->peer,
			 wh_strerror(rv));
		s->ep = NULL;
		return;
	}
	if (s->opts.transport == WH_NET_AUTO && s->last == WH_NET_TCP) {
		/* UDP did not pass last time: race both at once this time */
		wh_debug("the last connection used TCP: trying TCP at once");
		wh_net_race_now(s->ep);
	}
	s->streams_blocked = false;
	ev.events = EPOLLIN;
	ev.data.u32 = 1;
	epoll_ctl(s->epfd, EPOLL_CTL_ADD, wh_net_ep_fd(s->ep), &ev);
	pthread_mutex_lock(&s->lock);
	if (s->state != SS_FAILED)
		s->state = SS_CONNECTING;
	pthread_mutex_unlock(&s->lock);
}

/* dispatch - put pending calls on streams (network thread); returns how
 * many were sent. */
static int dispatch(struct wh_session *s)
{
	struct call *c;
	int sent = 0;

	pthread_mutex_lock(&s->lock);
	if (s->state != SS_READY || !s->nc) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	while (!s->streams_blocked && (c = pend_pop(s))) {
		struct wh_net_stream *st;
		uint8_t *copy;
		int rv;

		if (c->abandoned || c->done) {
			call_unref(c);
			continue;
		}
		rv = wh_net_open_stream(s->nc, c, &st);
		if (rv == 0)
			s->streams_open++; /* less again in on_stream_close */
		if (rv == -EAGAIN) {
			s->streams_blocked = true;
			pend_push_front(s, c);
			break;
		}
		if (rv < 0) {
			pend_push_front(s, c);
			break;
		}
		copy = malloc(c->req_len ? c->req_len : 1);
		if (!copy) {
			call_finish(s, c, -ENOMEM);
			wh_net_stream_set_ud(s->nc, st, NULL);
			wh_net_stream_reset(s->nc, st, 0);
			call_unref(c);
			continue;
		}
		memcpy(copy, c->req, c->req_len);
		c->in_flight = true;
		sent++;
		wh_net_send(s->nc, st, copy, c->req_len, true, free);
	}
	pthread_mutex_unlock(&s->lock);
	return sent;
}

/* ack_hold - whether this turn's flush may wait (see ACK_HOLD_MS): packets
 * came in, nothing went out, no request is open. */
static bool ack_hold(struct wh_session *s, bool got, int sent)
{
	bool ready;

	if (!got || sent > 0 || s->streams_open > 0 || s->conn_dead)
		return false;
	pthread_mutex_lock(&s->lock);
	ready = s->state == SS_READY && s->transport == WH_NET_QUIC &&
		!s->pend_head;
	pthread_mutex_unlock(&s->lock);
	return ready;
}

static void *session_thread(void *arg)
{
	struct wh_session *s = arg;
	struct epoll_event evs[4];
	uint64_t held = 0; /* when the flush held back began, or 0 */

	pthread_mutex_lock(&s->ep_lock);
	for (;;) {
		int timeout, n, sent = 0;
		uint64_t now;
		bool stop, failed, got = false;

		pthread_mutex_lock(&s->lock);
		stop = s->stop;
		failed = s->state == SS_FAILED;
		pthread_mutex_unlock(&s->lock);
		if (stop)
			break;
		now = wh_now_ns();
		if (!s->ep && !failed && now >= s->next_attempt) {
			conn_start(s);
			s->next_attempt = now + s->retry_ms * WH_NS_PER_MS;
			if (s->retry_ms < RETRY_MAX_MS)
				s->retry_ms *= 2;
		}
		if (s->ep && !held)
			wh_net_ep_flush(s->ep);
		timeout = s->ep ? wh_net_ep_timeout_ms(s->ep) : -1;
		if (held)
			timeout = ACK_HOLD_MS; /* then flush, whatever is due */
		pthread_mutex_lock(&s->lock);
		if (s->async_head) {
			int t = expire_async(s, now);

			if (t >= 0 && (timeout < 0 || t < timeout))
				timeout = t;
		}
		pthread_mutex_unlock(&s->lock);
		run_done(s); /* those timed out, failed or cancelled */
		if (!s->ep && !failed) {
			int t = (int)((s->next_attempt > now
					       ? s->next_attempt - now
					       : 0) /
				      WH_NS_PER_MS) + 1;

			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		__atomic_store_n(&s->sleep_until,
				 timeout < 0 ? UINT64_MAX
					     : wh_now_ns() + (uint64_t)timeout *
								 WH_NS_PER_MS,
				 __ATOMIC_RELAXED);
		pthread_mutex_unlock(&s->ep_lock);
		wh_trace("n_sleep", (uint64_t)(int64_t)timeout);
		n = epoll_wait(s->epfd, evs, 4, timeout);
		wh_trace("n_epoll", (uint64_t)n);
		pthread_mutex_lock(&s->ep_lock);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u32 == 0) {
				uint64_t v;

				(void)!read(s->wakefd, &v, sizeof(v));
			} else if (s->ep) {
				wh_net_ep_read(s->ep);
				got = true;
			}
		}
		if (s->ep && !s->conn_dead)
			sent = dispatch(s);
		run_done(s); /* the replies that came, at once */
		/* and what their callers asked for next meanwhile (they could
		 * not send it: this thread holds ep_lock): it goes now, with
		 * the acknowledgement of those replies, not in a packet after
		 * the acknowledgement's own */
		if (s->ep && !s->conn_dead)
			sent += dispatch(s);
		now = wh_now_ns();
		if (s->ep && n > 0 && ack_hold(s, got, sent) &&
		    (!held || now - held < ACK_HOLD_MS * WH_NS_PER_MS)) {
			/* the timers too: the acknowledgement's is due at once */
			if (!held)
				held = now;
			wh_trace("n_hold", 0);
		} else {
			held = 0;
			if (s->ep)
				wh_net_ep_expire(s->ep);
			if (s->ep && !s->conn_dead)
				wh_net_ep_flush(s->ep);
		}
		if (s->ep && s->conn_dead)
			conn_teardown(s);
	}
	conn_teardown(s);
	pthread_mutex_unlock(&s->ep_lock);
	run_done(s);
	return NULL;
}

static void wake(struct wh_session *s)
{
	uint64_t one = 1;

	(void)!write(s->wakefd, &one, sizeof(one));
}

/*
 * kick - get the calls just queued on the wire (s->lock not held).  When
 * the network thread sleeps, the caller sends them itself: no hand-off
 * before the request leaves.  The network thread is woken only when it
 * must do something sooner than it planned to (a retransmission timer
 * for the new request earlier than its wake-up, a dead connection), or
 * when it is busy, or the calls could not go out (it sends them then).
 */
static void kick(struct wh_session *s)
{
	bool need = true;

	if (pthread_mutex_trylock(&s->ep_lock) == 0) {
		if (s->ep && !s->conn_dead && dispatch(s) > 0) {
			int t;

			wh_trace("k_sent", 0);
			wh_net_ep_flush(s->ep);
			wh_trace("k_flushed", 0);
			/* 0 right after a send is the pacer's next slot: the
			 * network thread's next turn serves it */
			t = wh_net_ep_timeout_ms(s->ep);
			if (t == 0)
				t = 1;
			need = s->conn_dead || s->streams_blocked ||
			       (t > 0 && wh_now_ns() + (uint64_t)t *
							WH_NS_PER_MS <
					 s->sleep_until);
			/* and anything still queued: the network thread */
			pthread_mutex_lock(&s->lock);
			need = need || s->pend_head;
			pthread_mutex_unlock(&s->lock);
		}
		pthread_mutex_unlock(&s->ep_lock);
		run_done(s); /* calls dispatch failed */
	}
	if (need) {
		wh_trace("k_wake", 0);
		wake(s);
	}
}

/* ----------------------------------------------------------------- API */

/* call_new - a call carrying a copy of |req|, with two references: its
 * owner's (the caller or the completion) and the queue's (then the
 * stream's); NULL without memory */
static struct call *call_new(const uint8_t *req, size_t len)
{
	struct call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->req = malloc(len ? len : 1);
	if (!c->req) {
		free(c);
		return NULL;
	}
	memcpy(c->req, req, len);
	c->req_len = len;
	c->refs = 2;
	return c;
}

int wh_session_call(struct wh_session *s, const uint8_t *req, size_t len,
		    struct wh_buf *resp, int timeout_ms)
{
	struct call *c = call_new(req, len); /* the caller's reference */
	struct timespec ts;
	int rv = 0;

	if (!c)
		return -ENOMEM;
	/* the reply lands in the caller's buffer, which keeps its capacity
	 * from one call to the next: no allocation per reply once warm */
	c->resp = *resp;
	wh_buf_init(resp);
	wh_buf_reset(&c->resp);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &attr);
	pthread_condattr_destroy(&attr);

	wh_deadline_ms(&ts, timeout_ms);

	pthread_mutex_lock(&s->lock);
	if (s->state == SS_FAILED) {
		rv = s->fail_err ? s->fail_err : WH_ERR_CLOSED;
		c->refs = 1;
		goto out;
	}
	pend_push_back(s, c);
	/* outside the lock: the network thread would wake only to wait for
	 * it, and the lock order is ep_lock first */
	pthread_mutex_unlock(&s->lock);
	kick(s);
	pthread_mutex_lock(&s->lock);
	while (!c->done) {
		if (pthread_cond_timedwait(&c->cv, &s->lock, &ts) ==
		    ETIMEDOUT && !c->done) {
			c->abandoned = true;
			rv = WH_ERR_TIMEOUT;
			goto out;
		}
	}
	wh_trace("c_woke", 0);
	rv = c->err;
	if (rv == 0) {
		struct wh_buf tmp = *resp;

		*resp = c->resp;
		c->resp = tmp;
		wh_buf_reset(&c->resp);
	}
out:
	call_unref(c);
	pthread_mutex_unlock(&s->lock);
	return rv;
}

int wh_session_call_async(struct wh_session *s, const uint8_t *req,
			  size_t len, int timeout_ms, wh_rpc_done_fn done,
			  void *ud)
{
	uint64_t deadline = wh_now_ns() + (uint64_t)timeout_ms * WH_NS_PER_MS;
	struct call *c = call_new(req, len); /* the completion's reference */
	int rv;

	if (!c)
		return -ENOMEM;
	c->done_fn = done;
	c->done_ud = ud;
	c->deadline = deadline;
	wh_buf_init(&c->resp);
	pthread_mutex_lock(&s->lock);
	if (s->state == SS_FAILED) {
		rv = s->fail_err ? s->fail_err : WH_ERR_CLOSED;
		pthread_mutex_unlock(&s->lock);
		free(c->req);
		free(c);
		return rv;
	}
	c->anext = s->async_head;
	if (s->async_head)
		s->async_head->aprev = c;
	s->async_head = c;
	pend_push_back(s, c);
	pthread_mutex_unlock(&s->lock);
	kick(s);
	/* the network thread's wait is bounded by the deadlines: it must
	 * wake for this one if it sleeps longer (|c| may be gone by now) */
	if (__atomic_load_n(&s->sleep_until, __ATOMIC_RELAXED) > deadline)
		wake(s);
	return 0;
}

void wh_session_cancel_async(struct wh_session *s)
{
	pthread_mutex_lock(&s->lock);
	while (s->async_head) {
		s->async_head->abandoned = true;
		call_finish(s, s->async_head, WH_ERR_CLOSED);
	}
	pthread_mutex_unlock(&s->lock);
	run_done(s);
}

static int rpc_call_async(void *ctx, const uint8_t *req, size_t req_len,
			  int timeout_ms, wh_rpc_done_fn done, void *ud)
{
	return wh_session_call_async(ctx, req, req_len, timeout_ms, done, ud);
}

static void rpc_cancel_async(void *ctx)
{
	wh_session_cancel_async(ctx);
}

static int rpc_call(void *ctx, const uint8_t *req, size_t req_len,
		    struct wh_buf *resp, int timeout_ms)
{
	return wh_session_call(ctx, req, req_len, resp, timeout_ms);
}

#define MANY_MAX 64 /* calls queued by one call_many */

/*
 * rpc_call_many - like |n| wh_session_call()s from as many threads: all
 * queued at once and sent together (one kick()), then waited for
 * in order (the later ones are usually done by then: no sleep each).
 */
static void rpc_call_many(void *ctx, const uint8_t *const *reqs,
			  const size_t *lens, size_t n, struct wh_buf *resps,
			  int *errs, int timeout_ms)
{
	struct wh_session *s = ctx;
	struct call *cs[MANY_MAX];
	pthread_condattr_t attr;
	struct timespec ts;
	size_t k = 0;

	for (; n > MANY_MAX; n -= MANY_MAX, reqs += MANY_MAX,
	     lens += MANY_MAX, resps += MANY_MAX, errs += MANY_MAX)
		rpc_call_many(ctx, reqs, lens, MANY_MAX, resps, errs,
			      timeout_ms);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	for (size_t i = 0; i < n; i++) {
		struct call *c = calloc(1, sizeof(*c));

		cs[i] = c;
		errs[i] = -ENOMEM;
		if (!c)
			continue;
		c->req = malloc(lens[i] ? lens[i] : 1);
		if (!c->req) {
			free(c);
			cs[i] = NULL;
			continue;
		}
		memcpy(c->req, reqs[i], lens[i]);
		c->req_len = lens[i];
		c->refs = 2;
		c->resp = resps[i];
		wh_buf_init(&resps[i]);
		wh_buf_reset(&c->resp);
		pthread_cond_init(&c->cv, &attr);
	}
	pthread_condattr_destroy(&attr);
	wh_deadline_ms(&ts, timeout_ms);
	pthread_mutex_lock(&s->lock);
	if (s->state == SS_FAILED) {
		for (size_t i = 0; i < n; i++) {
			if (!cs[i])
				continue;
			errs[i] = s->fail_err ? s->fail_err : WH_ERR_CLOSED;
			cs[i]->refs = 1;
			call_unref(cs[i]);
		}
		pthread_mutex_unlock(&s->lock);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (cs[i])
			pend_push_back(s, cs[i]);
	pthread_mutex_unlock(&s->lock);
	kick(s);
	pthread_mutex_lock(&s->lock);
	for (k = 0; k < n; k++) {
		struct call *c = cs[k];

		if (!c)
			continue;
		while (!c->done) {
			if (pthread_cond_timedwait(&c->cv, &s->lock, &ts) ==
			    ETIMEDOUT && !c->done) {
				c->abandoned = true;
				break;
			}
		}
		if (!c->done) {
			errs[k] = WH_ERR_TIMEOUT;
		} else {
			errs[k] = c->err;
			if (c->err == 0) {
				struct wh_buf tmp = resps[k];

				resps[k] = c->resp;
				c->resp = tmp;
				wh_buf_reset(&c->resp);
			}
		}
		call_unref(c);
	}
	pthread_mutex_unlock(&s->lock);
}

/* rpc_describe - "peer", "transport" (quic, tcp, or none while there
 * is no connection) and "state" lines, for `wormhole status`. */
static int rpc_describe(void *ctx, char *buf, size_t size)
{
	struct wh_session *s = ctx;
	enum wh_net_transport t;
	const char *state;
	int n;

	pthread_mutex_lock(&s->lock);
	t = s->state == SS_READY ? s->transport : WH_NET_AUTO;
	state = s->state == SS_READY	? "connected"
		: s->state == SS_FAILED ? "failed"
					: "connecting";
	n = snprintf(buf, size, "peer %s\ntransport %s\nstate %s\n", s->peer,
		     t == WH_NET_QUIC ? "quic"
		     : t == WH_NET_TCP ? "tcp"
				       : "none",
		     state);
	pthread_mutex_unlock(&s->lock);
	if (n < 0 || (size_t)n >= size)
		return -ENOBUFS;
	return n;
}

static const struct wh_rpc_ops session_rpc_ops = {
	.call = rpc_call,
	.call_many = rpc_call_many,
	.describe = rpc_describe,
	.call_async = rpc_call_async,
	.cancel_async = rpc_cancel_async,
};

uint64_t wh_session_caps(struct wh_session *s)
{
	return __atomic_load_n(&s->caps, __ATOMIC_ACQUIRE);
}

void wh_session_rpc(struct wh_session *s, struct wh_rpc *rpc)
{
	rpc->ops = &session_rpc_ops;
	rpc->ctx = s;
}

enum wh_net_transport wh_session_transport(struct wh_session *s)
{
	enum wh_net_transport t;

	pthread_mutex_lock(&s->lock);
	t = s->state == SS_READY ? s->transport : WH_NET_AUTO;
	pthread_mutex_unlock(&s->lock);
	return t;
}

void wh_session_set_handlers(struct wh_session *s, wh_session_inval_cb inval,
			     wh_session_reconnect_cb reconnect, void *ud)
{
	pthread_mutex_lock(&s->lock);
	s->on_inval = inval;
	s->on_reconnect = reconnect;
	s->handler_ud = ud;
	pthread_mutex_unlock(&s->lock);
}

int wh_session_new(const struct wh_session_opts *opts, struct wh_session **ps,
		   char *err, size_t errlen)
{
	struct wh_session *s;
	struct epoll_event ev;
	struct timespec ts;
	int rv;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "cannot initialize the crypto library");
		return -EIO;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->opts = *opts;
	s->wakefd = s->epfd = s->stopfd = -1;
	snprintf(s->code, sizeof(s->code), "%s", opts->code);
	snprintf(s->peer, sizeof(s->peer), "%s",
		 opts->peer ? opts->peer : "");
	s->opts.code = s->code;
	s->opts.peer = s->peer;
	s->retry_ms = RETRY_MIN_MS;
	wh_cctrl_init(&s->cc, &cc_ops, s);
	pthread_mutex_init(&s->ep_lock, NULL);
	pthread_mutex_init(&s->lock, NULL);
	{
		pthread_condattr_t attr;

		pthread_condattr_init(&attr);
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		pthread_cond_init(&s->state_cv, &attr);
		pthread_condattr_destroy(&attr);
	}
	if (!opts->peer && opts->signal) {
		snprintf(s->signal, sizeof(s->signal), "%s", opts->signal);
		snprintf(s->peer, sizeof(s->peer), "the host (through %s)",
			 opts->signal);
		s->opts.signal = s->signal;
		rv = wh_addr_parse(opts->signal, &s->sigaddr, &s->sigaddrlen);
		if (rv < 0)
			snprintf(err, errlen, "bad signal server address '%s': "
				 "expected ADDR:PORT", opts->signal);
	} else {
		rv = wh_addr_parse(opts->peer ? opts->peer : "", &s->addr,
				   &s->addrlen);
		if (rv < 0)
			snprintf(err, errlen, "bad peer address '%s': "
				 "expected ADDR:PORT",
				 opts->peer ? opts->peer : "");
	}
	if (rv < 0) {
		goto fail;
	}
	s->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->wakefd < 0 || s->stopfd < 0 || s->epfd < 0) {
		rv = -errno;
		snprintf(err, errlen, "%s", strerror(errno));
		goto fail;
	}
	ev.events = EPOLLIN;
	ev.data.u32 = 0;
	epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wakefd, &ev);
	s->state = SS_CONNECTING;
	rv = pthread_create(&s->thread, NULL, session_thread, s);
	if (rv != 0) {
		rv = -rv;
		snprintf(err, errlen, "cannot start a thread: %s",
			 strerror(-rv));
		goto fail;
	}
	s->thread_started = true;

	wh_deadline_ms(&ts, opts->connect_timeout_ms);
	pthread_mutex_lock(&s->lock);
	while (s->state != SS_READY && s->state != SS_FAILED) {
		if (pthread_cond_timedwait(&s->state_cv, &s->lock, &ts) ==
		    ETIMEDOUT)
			break;
	}
	if (s->state == SS_READY) {
		rv = 0;
	} else if (s->state == SS_FAILED) {
		rv = s->fail_err;
		snprintf(err, errlen, "%s", s->fail_msg);
	} else {
		rv = WH_ERR_TIMEOUT;
		snprintf(err, errlen,
			 "no answer from %s within %d s (tried %s): is the "
			 "host running and its port reachable?", s->peer,
			 opts->connect_timeout_ms / 1000,
			 opts->transport == WH_NET_QUIC ? "QUIC over UDP"
			 : opts->transport == WH_NET_TCP
				 ? "TLS over TCP"
				 : "QUIC over UDP and TLS over TCP");
	}
	pthread_mutex_unlock(&s->lock);
	if (rv < 0)
		goto fail;
	*ps = s;
	return 0;
fail:
	wh_session_del(s);
	return rv;
}

void wh_session_del(struct wh_session *s)
{
	if (!s)
		return;
	if (s->thread_started) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_mutex_unlock(&s->lock);
		{
			uint64_t one = 1;

			/* a rendezvous in progress gives up at once */
			(void)!write(s->stopfd, &one, sizeof(one));
		}
		wake(s);
		pthread_join(s->thread, NULL);
	}
	pthread_mutex_lock(&s->lock);
	fail_all_pending(s, WH_ERR_CLOSED);
	pthread_mutex_unlock(&s->lock);
	wh_session_cancel_async(s);
	wh_cctrl_free(&s->cc);
	if (s->wakefd >= 0)
		close(s->wakefd);
	if (s->stopfd >= 0)
		close(s->stopfd);
	if (s->epfd >= 0)
		close(s->epfd);
	pthread_cond_destroy(&s->state_cv);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->ep_lock);
	sodium_memzero(s->code, sizeof(s->code));
	free(s);
}
