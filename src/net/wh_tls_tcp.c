/*
 * wh_tls_tcp.c - TLS 1.3 over TCP with multiplexed streams (wh_mux.h).
 *
 * Each connection has a nonblocking socket registered in the endpoint's
 * epoll set (level-triggered; EPOLLOUT only while output waits), a GnuTLS
 * session on it, an input buffer of decrypted bytes not yet parsed into
 * frames, and an output buffer of frames not yet handed to TLS.  Small
 * frames (SETTINGS, CREDIT, ...) go to the output buffer at once; stream
 * data is copied from the streams' queued segments into DATA frames when
 * the output buffer runs low, one frame per stream in turn.  Connections
 * that die are freed at the end of the public entry point (never under a
 * caller's feet); a connection we close sends CLOSE, then lingers briefly
 * reading and discarding so the kernel does not reset what we last wrote.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "net/wh_addr.h"
#include "net/wh_mux.h"
#include "net/wh_sendq.h"
#include "net/wh_tls.h"
#include "net/wh_tls_tcp.h"
#include "proto/wh_proto.h"

#define OUT_HIGH (256 * 1024)   /* stop making DATA frames above this */
#define OUT_MAX (1024 * 1024)   /* a peer that lets more pile up is gone */
#define RX_LEN (64 * 1024)
#define READS_PER_CALL 256
#define LINGER_MS 1000
#define SOCK_BUF (8 * 1024 * 1024)
#define APP_ERR_PROTO 1

enum tc_state {
	TC_CONNECTING, /* TCP connect in progress (client) */
	TC_HANDSHAKE,  /* TLS handshake */
	TC_OPEN,       /* TLS up; on_handshake once the peer's SETTINGS came */
	TC_LINGER,     /* CLOSE sent, the owner told; draining, then freed */
};

struct seg {
	struct seg *next;
	uint8_t *data;
	size_t len, off;
	void (*free_fn)(void *);
};

struct wh_tcp_stream {
	uint32_t id;
	void *ud;
	struct wh_tcp_conn *conn;
	struct seg *head, *tail;   /* unsent data */
	uint64_t send_credit;      /* bytes the peer lets us send */
	uint64_t recv_left;        /* bytes we let the peer send */
	uint64_t recv_unacked;     /* consumed, credit not yet returned */
	bool fin_queued, fin_sent, fin_recv, reset, closed;
	uint64_t unsent;           /* bytes queued, not yet in DATA frames */
	struct wh_tcp_stream *prev, *next; /* every stream of the conn */
	struct wh_sendq_item sq;
};

struct wh_tcp_conn {
	struct wh_tcp_ep *ep;
	int fd;
	bool server;
	enum tc_state state;
	gnutls_session_t tls;
	void *ud;
	char peer[WH_ADDRSTRLEN];
	struct wh_buf in;
	struct wh_buf out;
	size_t out_off;        /* bytes of out already written */
	size_t tls_pending;    /* bytes passed to a send that said AGAIN */
	bool want_out;         /* EPOLLOUT registered */
	bool shut;             /* lingering, our side shut down */
	bool rx_more;          /* stopped reading with data maybe left */
	bool settings_recv, handshake_told, streams_blocked;
	uint32_t peer_stream_window;
	uint32_t next_id;      /* next stream id we open */
	uint32_t open_limit;   /* highest id we may open */
	uint32_t last_peer_id; /* highest id the peer opened */
	uint32_t peer_limit;   /* highest id the peer may open */
	uint32_t peer_limit_sent;
	uint32_t max_streams;
	uint64_t send_credit, recv_left, recv_unacked;
	struct wh_tcp_stream *streams;
	struct wh_sendq sq; /* the streams with something to send */
	uint64_t last_recv, last_ping, deadline, linger_until;
	bool close_requested;
	uint64_t close_err;
	char close_reason[WH_MUX_MAX_REASON];
	bool dead;
	int dead_err;
	char dead_reason[128];
	struct wh_tcp_conn *prev, *next;
};

struct wh_tcp_ep {
	int epfd;
	int lfd;
	bool server;
	struct sockaddr_storage local;
	socklen_t locallen;
	struct wh_quic_config cfg;
	const struct wh_tcp_cbs *cbs;
	void *ud;
	gnutls_certificate_credentials_t cred;
	struct wh_tcp_conn *conns;
	size_t nconns; /* not counting lingering ones */
	wh_tcp_sink_fn sink; /* detached: where the output goes */
	void *sink_ud;
	int depth;
	uint8_t rxbuf[RX_LEN];
};

static void conn_kill(struct wh_tcp_conn *c, int err, const char *reason);
static void conn_fail(struct wh_tcp_conn *c, const char *why);
static void conn_write(struct wh_tcp_conn *c);

/* ------------------------------------------------------------- sockets */

/* The most time between two retransmissions of one segment (Linux 6.15 and
 * later; the kernel's default is 120 s).  TCP doubles the wait after each
 * lost retransmission, so after an outage of 8 s the next try came up to
 * 6 s after the path was back; capped at 1 s, it comes within a second,
 * at the cost of one segment a second while the path is down.  The
 * kernel's limit of retransmissions (tcp_retries2) would then end a
 * connection after some 13 s of outage instead of minutes: TCP_USER_TIMEOUT
 * sets that limit to the idle timeout instead, as QUIC has it. */
#ifndef TCP_RTO_MAX_MS
#define TCP_RTO_MAX_MS 44
#endif
#define RTO_MAX_MS 1000

void wh_tcp_tune_socket(int fd, uint64_t idle_timeout_ms)
{
	int one = 1, size = SOCK_BUF, rto_max = RTO_MAX_MS;
	unsigned user_timeout = idle_timeout_ms > UINT_MAX
					? UINT_MAX
					: (unsigned)idle_timeout_ms;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* BBR where the kernel has it; the default congestion control else */
	setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "bbr", 3);
	/* only forced sizes are large enough to help (the plain ones are
	 * capped at rmem_max and would switch autotuning off for less) */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
	/* older kernels refuse it (ENOPROTOOPT): then the default backoff */
	setsockopt(fd, IPPROTO_TCP, TCP_RTO_MAX_MS, &rto_max,
		   sizeof(rto_max));
	if (user_timeout)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
			   sizeof(user_timeout));
}

bool wh_tcp_bbr_available(void)
{
	char name[16];
	socklen_t len = sizeof(name);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "bbr", 3) == 0 &&
	     getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) == 0 &&
	     strncmp(name, "bbr", 3) == 0;
	close(fd);
	return ok;
}

static void ep_watch(struct wh_tcp_conn *c, bool out)
{
	struct epoll_event ev;

	if (c->fd < 0)
		return;
	ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	epoll_ctl(c->ep->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->want_out = out;
}

/* ------------------------------------------------------------- streams */

static struct wh_tcp_stream *stream_find(struct wh_tcp_conn *c, uint32_t id)
{
	for (struct wh_tcp_stream *s = c->streams; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static struct wh_tcp_stream *stream_new(struct wh_tcp_conn *c, uint32_t id)
{
	struct wh_tcp_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->id = id;
	s->conn = c;
	s->send_credit = c->peer_stream_window;
	s->recv_left = c->ep->cfg.stream_window;
	s->next = c->streams;
	if (c->streams)
		c->streams->prev = s;
	c->streams = s;
	return s;
}

static void stream_free_segs(struct wh_tcp_stream *s)
{
	struct seg *g;

	while ((g = s->head)) {
		s->head = g->next;
		if (g->free_fn)
			g->free_fn(g->data);
		free(g);
	}
	s->tail = NULL;
	s->unsent = 0;
}

/* stream_del - tell the owner and free |s|. */
static void stream_del(struct wh_tcp_conn *c, struct wh_tcp_stream *s)
{
	wh_sendq_remove(&c->sq, &s->sq);
	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	stream_free_segs(s);
	if (c->server && c->peer_limit < UINT32_MAX)
		c->peer_limit++; /* one more stream may be opened */
	if (c->ep->cbs->on_stream_close && c->state != TC_LINGER)
		c->ep->cbs->on_stream_close(c, s, c->ud);
	free(s);
}

/* stream_check_closed - free |s| if both directions are finished. */
static void stream_check_closed(struct wh_tcp_conn *c, struct wh_tcp_stream *s)
{
	if (s->reset || (s->fin_sent && s->fin_recv))
		stream_del(c, s);
}

/* ------------------------------------------------------- output frames */

static int out_frame(struct wh_tcp_conn *c, const struct wh_mux_frame *f)
{
	uint8_t buf[WH_MUX_HDR_LEN + WH_MUX_MAX_REASON];
	int n = wh_mux_encode(f, buf, sizeof(buf));

	if (n < 0)
		return n;
	if (!c->dead && c->out.len - c->out_off > OUT_MAX) {
		/* it sends (pings, say) but does not read the answers */
		conn_fail(c, "the peer does not read");
		return WH_ERR_CLOSED;
	}
	if (wh_buf_append(&c->out, buf, (size_t)n) < 0) {
		conn_kill(c, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static void out_small(struct wh_tcp_conn *c, uint8_t type, uint32_t stream,
		      uint32_t value)
{
	struct wh_mux_frame f;

	memset(&f, 0, sizeof(f));
	f.type = type;
	f.stream = stream;
	f.value = value;
	out_frame(c, &f);
}

static void out_settings(struct wh_tcp_conn *c)
{
	const struct wh_quic_config *cfg = &c->ep->cfg;
	struct wh_mux_frame f;

	memset(&f, 0, sizeof(f));
	f.type = WH_MUX_SETTINGS;
	f.max_streams = c->server ? c->max_streams : 0;
	f.stream_window = (uint32_t)cfg->stream_window;
	f.conn_window = (uint32_t)cfg->conn_window;
	out_frame(c, &f);
}

static void out_ping(struct wh_tcp_conn *c, const uint8_t *echo)
{
	struct wh_mux_frame f;

	memset(&f, 0, sizeof(f));
	f.type = WH_MUX_PING;
	if (echo) {
		f.flags = WH_MUX_FLAG_ACK;
		memcpy(f.ping, echo, 8);
	} else {
		uint64_t now = wh_now_ns();

		memcpy(f.ping, &now, 8);
	}
	out_frame(c, &f);
}

/* fill_data - turn queued stream data into DATA frames, the head of the
 * send queue (net/wh_sendq.h) first, while the output buffer is low and
 * credit lasts.  The head is served until it has sent everything or is
 * blocked on its own credit; then it leaves the queue until a CREDIT
 * frame brings it back, and the next one goes on. */
static void fill_data(struct wh_tcp_conn *c)
{
	struct wh_tcp_stream *s;

	if (c->state != TC_OPEN || !c->settings_recv)
		return;
	while (c->out.len - c->out_off < OUT_HIGH && wh_sendq_head(&c->sq)) {
		struct seg *g;
		size_t n = 0;
		uint8_t flags = 0;
		uint8_t *p;

		s = wh_sendq_entry(wh_sendq_head(&c->sq), struct wh_tcp_stream,
				   sq);
		g = s->head;
		if (g) {
			n = g->len - g->off;
			if (n > WH_MUX_MAX_DATA)
				n = WH_MUX_MAX_DATA;
			if (n > s->send_credit)
				n = (size_t)s->send_credit;
			if (n > c->send_credit)
				n = (size_t)c->send_credit;
			if (n == 0) {
				/* a connection-level block keeps it at the
				 * head; blocked on its own credit, it waits
				 * for a CREDIT frame to requeue it and the
				 * next one goes on */
				if (c->send_credit == 0 && s->send_credit)
					break;
				wh_sendq_pop(&c->sq);
				continue;
			}
		} else if (!s->fin_queued || s->fin_sent) {
			wh_sendq_pop(&c->sq);
			continue;
		}
		if (g && n == g->len - g->off && !g->next && s->fin_queued)
			flags = WH_MUX_FLAG_FIN;
		if (!g)
			flags = WH_MUX_FLAG_FIN;
		if (wh_buf_reserve(&c->out, WH_MUX_HDR_LEN + n) < 0) {
			conn_kill(c, -ENOMEM, "out of memory");
			return;
		}
		p = c->out.data + c->out.len;
		wh_mux_put_hdr(p, WH_MUX_DATA, flags, (uint16_t)n, s->id);
		if (n)
			memcpy(p + WH_MUX_HDR_LEN, g->data + g->off, n);
		c->out.len += WH_MUX_HDR_LEN + n;
		s->send_credit -= n;
		c->send_credit -= n;
		s->unsent = s->unsent > n ? s->unsent - n : 0;
		if (g) {
			g->off += n;
			if (g->off == g->len) {
				s->head = g->next;
				if (!s->head)
					s->tail = NULL;
				if (g->free_fn)
					g->free_fn(g->data);
				free(g);
			}
		}
		if (flags & WH_MUX_FLAG_FIN) {
			wh_sendq_pop(&c->sq);
			s->fin_sent = true;
			stream_check_closed(c, s);
			continue;
		}
		if (!s->head && !s->fin_queued)
			wh_sendq_pop(&c->sq); /* all sent; else the head goes on */
	}
}

/* -------------------------------------------------------- connections */

static struct wh_tcp_conn *conn_alloc(struct wh_tcp_ep *ep, int fd,
				      const struct sockaddr *remote)
{
	struct wh_tcp_conn *c = calloc(1, sizeof(*c));
	struct epoll_event ev;

	if (!c)
		return NULL;
	c->ep = ep;
	c->fd = fd;
	c->server = ep->server;
	c->max_streams = (uint32_t)ep->cfg.max_streams_bidi;
	c->peer_limit = c->server ? c->max_streams : 0;
	c->peer_limit_sent = c->peer_limit;
	c->next_id = 1;
	c->recv_left = ep->cfg.conn_window;
	c->last_recv = wh_now_ns();
	c->deadline = c->last_recv +
		      ep->cfg.handshake_timeout_ms * WH_NS_PER_MS;
	wh_buf_init(&c->in);
	wh_buf_init(&c->out);
	if (remote)
		wh_addr_str(remote, c->peer, sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "detached");
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	if (fd >= 0 && epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		free(c);
		return NULL;
	}
	c->next = ep->conns;
	if (ep->conns)
		ep->conns->prev = c;
	ep->conns = c;
	ep->nconns++;
	return c;
}

/* tls_push - GnuTLS's writes, without SIGPIPE when the peer is gone (a
 * library must not depend on the process ignoring it). */
static ssize_t tls_push(gnutls_transport_ptr_t p, const giovec_t *iov,
			int iovcnt)
{
	struct msghdr msg;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = (struct iovec *)iov;
	msg.msg_iovlen = (size_t)iovcnt;
	return sendmsg((int)(intptr_t)p, &msg, MSG_NOSIGNAL);
}

static int conn_tls_init(struct wh_tcp_conn *c)
{
	gnutls_datum_t alpn = { (unsigned char *)WH_ALPN,
				(unsigned int)strlen(WH_ALPN) };
	int rv;

	rv = gnutls_init(&c->tls, (c->server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
					  GNUTLS_NONBLOCK |
					  (c->server ? GNUTLS_NO_AUTO_SEND_TICKET
						     : 0));
	if (rv == 0)
		rv = gnutls_priority_set_direct(c->tls, wh_tls_priority(1),
						NULL);
	if (rv == 0)
		rv = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE,
					    c->ep->cred);
	if (rv == 0)
		rv = gnutls_alpn_set_protocols(c->tls, &alpn, 1,
					       GNUTLS_ALPN_MANDATORY);
	if (rv == 0 && !c->server)
		rv = gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS,
					    "wormhole", strlen("wormhole"));
	if (rv != 0) {
		wh_err("tls: session setup failed: %s", gnutls_strerror(rv));
		return WH_ERR_TLS;
	}
	gnutls_transport_set_int(c->tls, c->fd);
	gnutls_transport_set_vec_push_function(c->tls, tls_push);
	gnutls_handshake_set_timeout(c->tls, 0);
	return 0;
}

static void conn_free(struct wh_tcp_conn *c)
{
	struct wh_tcp_ep *ep = c->ep;

	while (c->streams) {
		struct wh_tcp_stream *s = c->streams;

		c->streams = s->next;
		stream_free_segs(s);
		free(s);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		ep->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->tls)
		gnutls_deinit(c->tls);
	if (c->fd >= 0) {
		epoll_ctl(ep->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	wh_buf_free(&c->in);
	wh_buf_free(&c->out);
	free(c);
}

/* conn_release - tell the owner the connection is gone; the object stays
 * only to linger (or is freed by the caller). */
static void conn_release(struct wh_tcp_conn *c)
{
	const struct wh_tcp_cbs *cbs = c->ep->cbs;

	while (c->streams)
		stream_del(c, c->streams);
	c->ep->nconns--;
	if (cbs->on_close)
		cbs->on_close(c, c->dead_err, c->dead_reason, c->ud);
	c->ud = NULL;
}

static void conn_kill(struct wh_tcp_conn *c, int err, const char *reason)
{
	if (c->dead)
		return;
	c->dead = true;
	c->dead_err = err;
	snprintf(c->dead_reason, sizeof(c->dead_reason), "%s",
		 reason ? reason : "");
}

/* conn_fail - a protocol violation by the peer: CLOSE and go. */
static void conn_fail(struct wh_tcp_conn *c, const char *why)
{
	wh_debug("tcp %s: %s", c->peer, why);
	if (!c->close_requested) {
		c->close_requested = true;
		c->close_err = APP_ERR_PROTO;
		snprintf(c->close_reason, sizeof(c->close_reason), "%s", why);
	}
	conn_kill(c, WH_ERR_PROTO, why);
}

/* conn_close_now - what was queued goes out, then CLOSE; the owner is
 * told, and the connection lingers until the peer closes or LINGER_MS. */
static void conn_close_now(struct wh_tcp_conn *c, uint64_t now)
{
	struct wh_mux_frame f;

	fill_data(c);
	memset(&f, 0, sizeof(f));
	f.type = WH_MUX_CLOSE;
	f.value = (uint32_t)c->close_err;
	f.payload = (const uint8_t *)c->close_reason;
	f.length = (uint16_t)strlen(c->close_reason);
	out_frame(c, &f);
	conn_release(c);
	c->state = TC_LINGER;
	c->dead = false;
	c->linger_until = now + LINGER_MS * WH_NS_PER_MS;
	conn_write(c);
}

static void ep_reap(struct wh_tcp_ep *ep)
{
	struct wh_tcp_conn *c, *n;
	uint64_t now;

	if (ep->depth > 0)
		return;
	now = wh_now_ns();
	for (c = ep->conns; c; c = n) {
		n = c->next;
		if (c->state == TC_LINGER) {
			if (c->dead || now >= c->linger_until)
				conn_free(c);
			continue;
		}
		if (!c->dead)
			continue;
		if (c->close_requested && c->state == TC_OPEN &&
		    (c->fd >= 0 || ep->sink)) {
			conn_close_now(c, now);
			continue;
		}
		conn_release(c);
		conn_free(c);
	}
}

/* --------------------------------------------------------- TLS driving */

/* sink_write - a detached connection's conn_write: all of the output
 * buffer to the sink at once, as if TLS took every byte. */
static void sink_write(struct wh_tcp_conn *c)
{
	for (;;) {
		if (c->state == TC_OPEN)
			fill_data(c);
		if (c->out.len == c->out_off || c->dead)
			break;
		c->ep->sink(c->ep->sink_ud, c->out.data + c->out_off,
			    c->out.len - c->out_off);
		c->out.len = 0;
		c->out_off = 0;
	}
}

/* conn_write - hand the output buffer to TLS until it would block. */
static void conn_write(struct wh_tcp_conn *c)
{
	if (c->dead || c->state < TC_OPEN)
		return;
	if (c->fd < 0) {
		if (c->ep->sink)
			sink_write(c);
		return;
	}
	for (;;) {
		ssize_t n;
		size_t len;

		if (c->state == TC_OPEN)
			fill_data(c);
		len = c->out.len - c->out_off;
		if (len == 0 && !c->tls_pending)
			break;
		if (c->tls_pending) {
			n = gnutls_record_send(c->tls, NULL, 0);
			len = c->tls_pending;
		} else {
			if (len > WH_MUX_MAX_FRAME * 4)
				len = WH_MUX_MAX_FRAME * 4;
			n = gnutls_record_send(c->tls, c->out.data + c->out_off,
					       len);
		}
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			c->tls_pending = len;
			if (!c->want_out)
				ep_watch(c, true);
			return;
		}
		if (n < 0) {
			conn_kill(c, WH_ERR_CLOSED, gnutls_strerror((int)n));
			return;
		}
		c->tls_pending = 0;
		c->out_off += (size_t)n;
		if (c->out_off == c->out.len) {
			c->out.len = 0;
			c->out_off = 0;
		} else if (c->out_off > OUT_HIGH) {
			wh_buf_consume(&c->out, c->out_off);
			c->out_off = 0;
		}
	}
	if (c->want_out)
		ep_watch(c, false);
	if (c->state == TC_LINGER && !c->shut) {
		c->shut = true;
		shutdown(c->fd, SHUT_WR);
	}
}

static void handle_data(struct wh_tcp_conn *c, const struct wh_mux_frame *f)
{
	const struct wh_tcp_cbs *cbs = c->ep->cbs;
	struct wh_tcp_stream *s;
	bool fin = f->flags & WH_MUX_FLAG_FIN;
	int rv;

	if (f->length > c->recv_left) {
		conn_fail(c, "connection flow control exceeded");
		return;
	}
	c->recv_left -= f->length;
	c->recv_unacked += f->length;
	s = stream_find(c, f->stream);
	if (!s) {
		if (!c->server && f->stream >= c->next_id) {
			conn_fail(c, "the host opened a stream");
			return;
		}
		if (!c->server || f->stream <= c->last_peer_id)
			return; /* a stream already gone: drop the bytes */
		if (f->stream != c->last_peer_id + 1) {
			conn_fail(c, "stream opened out of order");
			return;
		}
		if (f->stream > c->peer_limit) {
			conn_fail(c, "too many streams");
			return;
		}
		c->last_peer_id = f->stream;
		s = stream_new(c, f->stream);
		if (!s) {
			conn_kill(c, -ENOMEM, "out of memory");
			return;
		}
		if (cbs->on_stream_open)
			cbs->on_stream_open(c, s, c->ud);
		if (c->dead)
			return;
	}
	if (s->reset)
		return; /* reset here, freed at the next flush: its bytes are
			 * dropped, as QUIC drops them (the connection's
			 * credit comes back all the same) */
	if (s->fin_recv) {
		conn_fail(c, "data after the end of a stream");
		return;
	}
	if (f->length > s->recv_left) {
		conn_fail(c, "stream flow control exceeded");
		return;
	}
	s->recv_left -= f->length;
	s->recv_unacked += f->length;
	if (fin)
		s->fin_recv = true;
	rv = cbs->on_stream_data(c, s, f->payload, f->length, fin, c->ud);
	if (rv < 0) {
		conn_kill(c, rv, "stream data refused");
		return;
	}
	if (s->reset)
		return; /* freed at the next flush */
	if (!fin && s->recv_unacked >= c->ep->cfg.stream_window / 2) {
		out_small(c, WH_MUX_CREDIT, s->id, (uint32_t)s->recv_unacked);
		s->recv_left += s->recv_unacked;
		s->recv_unacked = 0;
	}
	if (fin)
		stream_check_closed(c, s);
}

static void handle_frame(struct wh_tcp_conn *c, const struct wh_mux_frame *f)
{
	const struct wh_tcp_cbs *cbs = c->ep->cbs;
	struct wh_tcp_stream *s;

	if (!c->settings_recv && f->type != WH_MUX_SETTINGS) {
		conn_fail(c, "the first frame is not SETTINGS");
		return;
	}
	switch (f->type) {
	case WH_MUX_SETTINGS:
		if (c->settings_recv) {
			conn_fail(c, "SETTINGS twice");
			return;
		}
		c->settings_recv = true;
		c->peer_stream_window = f->stream_window;
		c->send_credit = f->conn_window;
		c->open_limit = c->server ? 0 : f->max_streams;
		if (!c->handshake_told) {
			c->handshake_told = true;
			if (cbs->on_handshake)
				cbs->on_handshake(c, c->ud);
		}
		break;
	case WH_MUX_DATA:
		handle_data(c, f);
		break;
	case WH_MUX_RESET:
		s = stream_find(c, f->stream);
		if (s && !s->reset) {
			s->reset = true;
			stream_free_segs(s);
			stream_del(c, s);
		}
		break;
	case WH_MUX_CREDIT:
		if (f->stream == 0) {
			c->send_credit += f->value;
		} else if ((s = stream_find(c, f->stream))) {
			s->send_credit += f->value;
			if (s->head || (s->fin_queued && !s->fin_sent))
				wh_sendq_push(&c->sq, &s->sq, s->unsent);
		}
		break;
	case WH_MUX_STREAMS:
		if (!c->server && f->value > c->open_limit) {
			c->open_limit = f->value;
			if (c->streams_blocked) {
				c->streams_blocked = false;
				if (cbs->on_streams_available)
					cbs->on_streams_available(c, c->ud);
			}
		}
		break;
	case WH_MUX_PING:
		if (!(f->flags & WH_MUX_FLAG_ACK))
			out_ping(c, f->ping);
		break;
	case WH_MUX_CLOSE: {
		char reason[WH_MUX_MAX_REASON];
		size_t n = f->length - 4;

		memcpy(reason, f->payload + 4, n);
		reason[n] = '\0';
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)reason[i] < 0x20)
				reason[i] = '?';
		conn_kill(c, WH_ERR_CLOSED, reason);
		break;
	}
	default:
		break; /* unknown types are skipped */
	}
}

/* parse_input - every complete frame in c->in: everything the connection
 * does with the peer's plaintext once TLS decrypted it (conn_read
 * decrypts straight into c->in; wh_tcp_conn_input appends to it). */
static void parse_input(struct wh_tcp_conn *c)
{
	size_t off = 0;

	while (!c->dead && c->state == TC_OPEN) {
		struct wh_mux_frame f;
		int n = wh_mux_decode(c->in.data + off, c->in.len - off, &f);

		if (n == WH_ERR_SHORT)
			break;
		if (n < 0) {
			conn_fail(c, "malformed frame");
			break;
		}
		off += (size_t)n;
		handle_frame(c, &f);
	}
	if (off)
		wh_buf_consume(&c->in, off);
	if (!c->dead && c->recv_unacked >= c->ep->cfg.conn_window / 2) {
		out_small(c, WH_MUX_CREDIT, 0, (uint32_t)c->recv_unacked);
		c->recv_left += c->recv_unacked;
		c->recv_unacked = 0;
	}
}

/*
 * conn_read - decrypt what the socket holds straight into c->in (no copy
 * from a staging buffer) and parse it in batches of PARSE_AT bytes, not
 * after every record: a 16 KiB record rarely ends on a frame boundary,
 * and each parse moves the partial frame left over to the front of the
 * buffer, which per record was half a copy of every byte.  Whatever was
 * read is parsed before returning, so small messages wait for nothing.
 */
#define PARSE_AT (4 * RX_LEN)

static void conn_read(struct wh_tcp_conn *c)
{
	struct wh_tcp_ep *ep = c->ep;
	bool got = false, drained = false;

	c->rx_more = false;
	for (int i = 0; i < READS_PER_CALL; i++) {
		ssize_t n;

		if (c->state == TC_LINGER) {
			n = gnutls_record_recv(c->tls, ep->rxbuf,
					       sizeof(ep->rxbuf));
		} else {
			if (c->in.len > PARSE_AT + WH_MUX_MAX_FRAME) {
				conn_fail(c, "input overflow");
				return;
			}
			if (wh_buf_reserve(&c->in, RX_LEN) < 0) {
				conn_kill(c, -ENOMEM, "out of memory");
				return;
			}
			n = gnutls_record_recv(c->tls, c->in.data + c->in.len,
					       RX_LEN);
		}
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			drained = true;
			break;
		}
		if (n <= 0 && got) {
			/* what came before the end (a CLOSE, say) counts */
			parse_input(c);
			got = false;
			if (c->dead)
				return;
		}
		if (n == 0) {
			conn_kill(c, WH_ERR_CLOSED, "");
			return;
		}
		if (n < 0) {
			if (!gnutls_error_is_fatal((int)n))
				continue;
			conn_kill(c, WH_ERR_CLOSED, gnutls_strerror((int)n));
			return;
		}
		if (c->state == TC_LINGER)
			continue; /* draining */
		c->last_recv = wh_now_ns();
		c->in.len += (size_t)n;
		got = true;
		if (c->in.len >= PARSE_AT) {
			parse_input(c);
			got = false;
			if (c->dead)
				return;
		}
	}
	if (got)
		parse_input(c);
	if (!drained && !c->dead)
		c->rx_more = c->state == TC_OPEN;
}

static void conn_handshake(struct wh_tcp_conn *c)
{
	int rv = gnutls_handshake(c->tls);

	if (rv == GNUTLS_E_AGAIN || rv == GNUTLS_E_INTERRUPTED) {
		ep_watch(c, gnutls_record_get_direction(c->tls) == 1);
		return;
	}
	if (rv < 0) {
		if (!gnutls_error_is_fatal(rv))
			return;
		wh_debug("tcp %s: TLS handshake failed: %s", c->peer,
			 gnutls_strerror(rv));
		conn_kill(c, WH_ERR_TLS, gnutls_strerror(rv));
		return;
	}
	c->state = TC_OPEN;
	ep_watch(c, false);
	out_settings(c);
	c->last_ping = wh_now_ns();
	conn_write(c);
	conn_read(c); /* records that came with the handshake */
}

static void conn_event(struct wh_tcp_conn *c, uint32_t events)
{
	if (c->dead)
		return;
	if (c->state == TC_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			conn_kill(c, -err, strerror(err));
			return;
		}
		c->state = TC_HANDSHAKE;
	}
	if (c->state == TC_HANDSHAKE) {
		conn_handshake(c);
		return;
	}
	if (c->state == TC_LINGER && (events & (EPOLLERR | EPOLLHUP))) {
		conn_kill(c, 0, "");
		return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		conn_read(c);
	if (!c->dead && (events & EPOLLOUT))
		conn_write(c);
}

static void ep_accept(struct wh_tcp_ep *ep)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct wh_tcp_conn *c;
		int fd = accept4(ep->lfd, (struct sockaddr *)&ss, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		if (ep->nconns >= ep->cfg.max_conns) {
			close(fd);
			continue;
		}
		wh_tcp_tune_socket(fd, ep->cfg.idle_timeout_ms);
		c = conn_alloc(ep, fd, (struct sockaddr *)&ss);
		if (!c) {
			close(fd);
			continue;
		}
		c->state = TC_HANDSHAKE;
		c->ud = NULL;
		if (conn_tls_init(c) < 0) {
			conn_kill(c, WH_ERR_TLS, "TLS setup failed");
			continue;
		}
		if (ep->cbs->on_accept)
			ep->cbs->on_accept(c, ep->ud);
		if (!c->dead)
			conn_handshake(c);
	}
}

/* ----------------------------------------------------------- endpoints */

static struct wh_tcp_ep *ep_alloc(const struct wh_quic_config *cfg,
				  const struct wh_tcp_cbs *cbs, void *ud)
{
	struct wh_tcp_ep *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return NULL;
	ep->lfd = -1;
	if (cfg)
		ep->cfg = *cfg;
	else
		wh_quic_config_default(&ep->cfg, false);
	if (ep->cfg.stream_window > UINT32_MAX / 2)
		ep->cfg.stream_window = UINT32_MAX / 2;
	if (ep->cfg.conn_window > UINT32_MAX / 2)
		ep->cfg.conn_window = UINT32_MAX / 2;
	if (ep->cfg.stream_window < 2 * WH_MUX_MAX_DATA)
		ep->cfg.stream_window = 2 * WH_MUX_MAX_DATA;
	if (ep->cfg.conn_window < ep->cfg.stream_window)
		ep->cfg.conn_window = ep->cfg.stream_window;
	ep->cbs = cbs;
	ep->ud = ud;
	ep->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ep->epfd < 0) {
		free(ep);
		return NULL;
	}
	return ep;
}

int wh_tcp_server_new(const struct sockaddr *addr, socklen_t addrlen,
		      const struct wh_quic_config *cfg,
		      const struct wh_tcp_cbs *cbs, void *ud,
		      struct wh_tcp_ep **pep)
{
	struct wh_tcp_ep *ep = ep_alloc(cfg, cbs, ud);
	struct epoll_event ev;
	int one = 1, rv;

	if (!ep)
		return -ENOMEM;
	ep->server = true;
	ep->lfd = socket(addr->sa_family,
			 SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ep->lfd < 0) {
		rv = -errno;
		goto fail;
	}
	setsockopt(ep->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->sa_family == AF_INET6) {
		int off = 0;

		setsockopt(ep->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &off,
			   sizeof(off));
	}
	if (bind(ep->lfd, addr, addrlen) != 0 || listen(ep->lfd, 64) != 0) {
		rv = -errno;
		goto fail;
	}
	ep->locallen = sizeof(ep->local);
	getsockname(ep->lfd, (struct sockaddr *)&ep->local, &ep->locallen);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->lfd, &ev) != 0) {
		rv = -errno;
		goto fail;
	}
	rv = wh_tls_make_server_cred(&ep->cred);
	if (rv < 0)
		goto fail;
	*pep = ep;
	return 0;
fail:
	wh_tcp_ep_del(ep);
	return rv;
}

int wh_tcp_client_new(const struct sockaddr *addr, socklen_t addrlen,
		      const struct wh_quic_config *cfg,
		      const struct wh_tcp_cbs *cbs, void *ud,
		      struct wh_tcp_ep **pep, struct wh_tcp_conn **pconn)
{
	struct wh_tcp_ep *ep = ep_alloc(cfg, cbs, ud);
	struct wh_tcp_conn *c;
	int fd, rv;

	if (!ep)
		return -ENOMEM;
	rv = gnutls_certificate_allocate_credentials(&ep->cred);
	if (rv != 0) {
		ep->cred = NULL;
		rv = WH_ERR_TLS;
		goto fail;
	}
	fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		rv = -errno;
		goto fail;
	}
	wh_tcp_tune_socket(fd, ep->cfg.idle_timeout_ms);
	if (connect(fd, addr, addrlen) != 0 && errno != EINPROGRESS) {
		rv = -errno;
		close(fd);
		goto fail;
	}
	c = conn_alloc(ep, fd, addr);
	if (!c) {
		close(fd);
		rv = -ENOMEM;
		goto fail;
	}
	c->ud = ud;
	c->state = TC_CONNECTING;
	ep_watch(c, true);
	rv = conn_tls_init(c);
	if (rv < 0)
		goto fail;
	ep->locallen = sizeof(ep->local);
	getsockname(fd, (struct sockaddr *)&ep->local, &ep->locallen);
	*pep = ep;
	*pconn = c;
	return 0;
fail:
	wh_tcp_ep_del(ep);
	return rv;
}

void wh_tcp_ep_del(struct wh_tcp_ep *ep)
{
	if (!ep)
		return;
	ep->depth++;
	for (struct wh_tcp_conn *c = ep->conns; c; c = c->next) {
		if (c->state == TC_OPEN && !c->dead && !c->close_requested)
			wh_tcp_conn_close(c, 0, "");
		if (c->state != TC_LINGER)
			conn_kill(c, 0, "");
	}
	ep->depth--;
	ep_reap(ep);
	while (ep->conns) {
		if (ep->conns->state != TC_LINGER)
			conn_release(ep->conns);
		conn_free(ep->conns);
	}
	if (ep->lfd >= 0)
		close(ep->lfd);
	if (ep->epfd >= 0)
		close(ep->epfd);
	if (ep->cred)
		gnutls_certificate_free_credentials(ep->cred);
	free(ep);
}

int wh_tcp_ep_fd(struct wh_tcp_ep *ep)
{
	return ep->epfd;
}

int wh_tcp_ep_local_addr(struct wh_tcp_ep *ep, struct sockaddr_storage *ss,
			 socklen_t *len)
{
	memcpy(ss, &ep->local, ep->locallen);
	*len = ep->locallen;
	return 0;
}

void wh_tcp_ep_read(struct wh_tcp_ep *ep)
{
	struct epoll_event evs[64];
	int n;

	ep->depth++;
	n = epoll_wait(ep->epfd, evs, 64, 0);
	for (int i = 0; i < n; i++) {
		if (!evs[i].data.ptr)
			ep_accept(ep);
		else
			conn_event(evs[i].data.ptr, evs[i].events);
	}
	ep->depth--;
	ep_reap(ep);
}

void wh_tcp_ep_expire(struct wh_tcp_ep *ep)
{
	uint64_t now = wh_now_ns();

	ep->depth++;
	for (struct wh_tcp_conn *c = ep->conns; c; c = c->next) {
		if (c->dead || c->state == TC_LINGER)
			continue;
		if (c->rx_more && c->state == TC_OPEN)
			conn_read(c);
		if (!c->handshake_told && now >= c->deadline) {
			conn_kill(c, WH_ERR_TIMEOUT, "handshake timeout");
			continue;
		}
		if (c->handshake_told &&
		    now >= c->last_recv +
				   c->ep->cfg.idle_timeout_ms * WH_NS_PER_MS) {
			conn_kill(c, WH_ERR_TIMEOUT, "idle timeout");
			continue;
		}
		if (c->handshake_told && c->ep->cfg.keepalive_ms &&
		    now >= c->last_ping +
				   c->ep->cfg.keepalive_ms * WH_NS_PER_MS) {
			c->last_ping = now;
			out_ping(c, NULL);
			conn_write(c);
		}
	}
	ep->depth--;
	ep_reap(ep);
}

void wh_tcp_ep_flush(struct wh_tcp_ep *ep)
{
	ep->depth++;
	for (struct wh_tcp_conn *c = ep->conns; c; c = c->next) {
		struct wh_tcp_stream *s, *n;

		if (c->dead || c->state != TC_OPEN)
			continue;
		/* streams reset locally go now */
		for (s = c->streams; s; s = n) {
			n = s->next;
			if (s->reset)
				stream_del(c, s);
		}
		if (c->close_requested) {
			conn_kill(c, 0, c->close_reason);
			continue;
		}
		if (c->peer_limit != c->peer_limit_sent) {
			c->peer_limit_sent = c->peer_limit;
			out_small(c, WH_MUX_STREAMS, 0, c->peer_limit);
		}
		conn_write(c);
	}
	ep->depth--;
	ep_reap(ep);
}

int wh_tcp_ep_timeout_ms(struct wh_tcp_ep *ep)
{
	uint64_t now = wh_now_ns(), next = UINT64_MAX;

	for (struct wh_tcp_conn *c = ep->conns; c; c = c->next) {
		uint64_t t;

		if (c->dead || c->rx_more)
			return 0;
		if (c->state == TC_LINGER) {
			t = c->linger_until;
		} else if (!c->handshake_told) {
			t = c->deadline;
		} else {
			t = c->last_recv +
			    ep->cfg.idle_timeout_ms * WH_NS_PER_MS;
			if (ep->cfg.keepalive_ms) {
				uint64_t k = c->last_ping +
					     ep->cfg.keepalive_ms * WH_NS_PER_MS;

				if (k < t)
					t = k;
			}
		}
		if (t < next)
			next = t;
	}
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return (int)((next - now) / WH_NS_PER_MS) + 1;
}

size_t wh_tcp_ep_nconns(struct wh_tcp_ep *ep)
{
	return ep->nconns;
}

/* --------------------------------------------------------- connections */

void wh_tcp_conn_set_ud(struct wh_tcp_conn *c, void *ud)
{
	c->ud = ud;
}

void *wh_tcp_conn_ud(struct wh_tcp_conn *c)
{
	return c->ud;
}

const char *wh_tcp_conn_peer(struct wh_tcp_conn *c)
{
	return c->peer;
}

int wh_tcp_conn_exporter(struct wh_tcp_conn *c, const char *label,
			 uint8_t *out, size_t len)
{
	int rv;

	if (c->state != TC_OPEN || !c->tls)
		return -EINVAL;
	rv = gnutls_prf_rfc5705(c->tls, strlen(label), label, 0, NULL, len,
				(char *)out);
	if (rv != 0) {
		wh_err("tls: exporter failed: %s", gnutls_strerror(rv));
		return WH_ERR_TLS;
	}
	return 0;
}

void wh_tcp_conn_close(struct wh_tcp_conn *c, uint64_t app_err,
		       const char *reason)
{
	if (c->close_requested || c->dead)
		return;
	c->close_requested = true;
	c->close_err = app_err;
	snprintf(c->close_reason, sizeof(c->close_reason), "%s",
		 reason ? reason : "");
	if (c->state != TC_OPEN)
		conn_kill(c, 0, c->close_reason);
}

bool wh_tcp_conn_closing(struct wh_tcp_conn *c)
{
	return c->close_requested || c->dead || c->state == TC_LINGER;
}

/* ------------------------------------------------------------- streams */

int wh_tcp_open_stream(struct wh_tcp_conn *c, void *stream_ud,
		       struct wh_tcp_stream **ps)
{
	struct wh_tcp_stream *s;

	if (c->server || c->dead || c->close_requested ||
	    c->state != TC_OPEN)
		return -EINVAL;
	if (!c->settings_recv || c->next_id > c->open_limit) {
		c->streams_blocked = true;
		return -EAGAIN;
	}
	s = stream_new(c, c->next_id);
	if (!s)
		return -ENOMEM;
	c->next_id++;
	s->ud = stream_ud;
	*ps = s;
	return 0;
}

int64_t wh_tcp_stream_id(const struct wh_tcp_stream *s)
{
	return s->id;
}

void wh_tcp_stream_set_ud(struct wh_tcp_stream *s, void *ud)
{
	s->ud = ud;
}

void *wh_tcp_stream_ud(const struct wh_tcp_stream *s)
{
	return s->ud;
}

int wh_tcp_send(struct wh_tcp_conn *c, struct wh_tcp_stream *s, void *data,
		size_t len, bool fin, void (*free_fn)(void *))
{
	struct seg *g = NULL;

	if (s->reset || s->fin_queued || c->dead || c->close_requested) {
		if (free_fn && data)
			free_fn(data);
		return WH_ERR_CLOSED;
	}
	if (len > 0) {
		g = calloc(1, sizeof(*g));
		if (!g) {
			if (free_fn)
				free_fn(data);
			return -ENOMEM;
		}
		g->data = data;
		g->len = len;
		g->free_fn = free_fn;
		s->unsent += len;
		if (s->tail)
			s->tail->next = g;
		else
			s->head = g;
		s->tail = g;
	} else if (free_fn && data) {
		free_fn(data);
	}
	if (fin)
		s->fin_queued = true;
	if (g || fin)
		wh_sendq_push(&c->sq, &s->sq, s->unsent);
	return 0;
}

void wh_tcp_stream_reset(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
			 uint64_t app_err)
{
	if (s->reset)
		return;
	s->reset = true;
	stream_free_segs(s);
	wh_sendq_remove(&c->sq, &s->sq);
	if (c->state == TC_OPEN && !c->dead)
		out_small(c, WH_MUX_RESET, s->id, (uint32_t)app_err);
}

/* -------------------------------------------------------- detached */

int wh_tcp_detached_new(bool server, const struct wh_quic_config *cfg,
			const struct wh_tcp_cbs *cbs, void *ud,
			wh_tcp_sink_fn sink, void *sink_ud,
			struct wh_tcp_ep **pep, struct wh_tcp_conn **pconn)
{
	struct wh_tcp_ep *ep = ep_alloc(cfg, cbs, ud);
	struct wh_tcp_conn *c;

	if (!ep)
		return -ENOMEM;
	ep->server = server;
	ep->sink = sink;
	ep->sink_ud = sink_ud;
	c = conn_alloc(ep, -1, NULL);
	if (!c) {
		wh_tcp_ep_del(ep);
		return -ENOMEM;
	}
	c->ud = server ? NULL : ud;
	*pep = ep;
	*pconn = c;
	ep->depth++;
	if (server && cbs->on_accept)
		cbs->on_accept(c, ud);
	if (!c->dead) {
		/* what conn_handshake does once TLS is up */
		c->state = TC_OPEN;
		out_settings(c);
		c->last_ping = wh_now_ns();
		conn_write(c);
	}
	ep->depth--;
	return 0;
}

void wh_tcp_conn_input(struct wh_tcp_conn *c, const uint8_t *data,
		       size_t len)
{
	struct wh_tcp_ep *ep = c->ep;

	ep->depth++;
	if (!c->dead && c->state == TC_OPEN && len) {
		if (c->in.len + len > PARSE_AT + WH_MUX_MAX_FRAME + RX_LEN)
			conn_fail(c, "input overflow");
		else if (wh_buf_append(&c->in, data, len) < 0)
			conn_kill(c, -ENOMEM, "out of memory");
		else {
			c->last_recv = wh_now_ns();
			parse_input(c);
		}
	}
	if (!c->dead)
		conn_write(c);
	ep->depth--;
	ep_reap(ep);
}
