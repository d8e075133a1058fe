/*
 * wh_quic.h - QUIC endpoints and connections (ngtcp2 + GnuTLS, TLS 1.3).
 *
 * An endpoint owns one UDP socket and the connections that use it: many for
 * a server (the host), one for a client.  It does no threading and owns no
 * loop: its owner polls wh_quic_ep_fd(), calls wh_quic_ep_read() when the
 * socket is readable, wh_quic_ep_expire() when wh_quic_ep_timeout_ms() has
 * passed, and wh_quic_ep_flush() after anything that may have queued data.
 *
 * Streams carry ordered bytes.  Data handed to wh_quic_send() is owned by
 * the endpoint until the peer acknowledges it (QUIC may retransmit it), then
 * released with the free function given.  Received data is delivered in
 * order through on_stream_data; flow-control credit is returned to the peer
 * as soon as the callback returns, so the owner must bound its own
 * buffering (and close a connection whose peer sends too much).
 *
 * Outages and moves: a connection outlives up to idle_timeout_ms of
 * silence, and of stream data of ours waiting on a peer that acknowledges
 * none of it (one that keeps sending but takes nothing is gone too).  A
 * client that hears nothing for 1.5 s probes every 0.5 s (its probe timer
 * fired early, and a CHECK datagram, docs/PROTOCOL.md); a side
 * that hears its peer again resends at once what waits for a backed-off
 * probe timer.  A host without the connection answers CHECK with UNKNOWN,
 * and the client's connection then ends with WH_ERR_CLOSED.  A client
 * whose address changes keeps its connection: the host sends every packet
 * to the address ngtcp2 gives for it.
 *
 * Callbacks run from inside wh_quic_ep_read/expire/flush.  From a callback
 * the owner may call wh_quic_send(), wh_quic_conn_close() and the accessors;
 * connections and streams are only ever freed outside the owner's callbacks
 * except through on_stream_close/on_close, after which the handle is gone.
 */
#ifndef WH_QUIC_H
#define WH_QUIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct wh_quic_ep;
struct wh_quic_conn;
struct wh_quic_stream;

struct wh_quic_cbs {
	/* A server accepted a new connection (before its handshake). */
	void (*on_accept)(struct wh_quic_conn *c, void *ud);
	/* The TLS handshake completed: the exporter is available. */
	void (*on_handshake)(struct wh_quic_conn *c, void *ud);
	/* The peer opened stream |s| (server side and client side). */
	void (*on_stream_open)(struct wh_quic_conn *c, struct wh_quic_stream *s,
			       void *ud);
	/* In-order data on |s|; |fin| marks the end of the peer's data.
	 * Return 0, or a negative error to close the whole connection. */
	int (*on_stream_data)(struct wh_quic_conn *c, struct wh_quic_stream *s,
			      const uint8_t *data, size_t len, bool fin,
			      void *ud);
	/* |s| is closed (both directions finished, or reset); the handle is
	 * freed when this returns. */
	void (*on_stream_close)(struct wh_quic_conn *c,
				struct wh_quic_stream *s, void *ud);
	/* More local bidirectional streams may be opened now. */
	void (*on_streams_available)(struct wh_quic_conn *c, void *ud);
	/* The connection is gone (|err|: 0 closed normally, WH_ERR_TIMEOUT
	 * idle or handshake timeout, WH_ERR_CLOSED closed by the peer, other
	 * negative errors); the handle is freed when this returns.  |reason|
	 * is the peer's close reason when it gave one, else "". */
	void (*on_close)(struct wh_quic_conn *c, int err, const char *reason,
			 void *ud);
	/* A server's peer answers at a new address now (NAT rebinding, a
	 * new network), |old| and |now| as wh_addr_str gives them; packets
	 * go there from now on.  Optional: without it the endpoint logs the
	 * change itself. */
	void (*on_path_change)(struct wh_quic_conn *c, const char *old,
			       const char *now, void *ud);
};

struct wh_quic_config {
	uint64_t idle_timeout_ms;      /* e.g. 6000 */
	uint64_t keepalive_ms;         /* 0: none (clients: e.g. 1000) */
	uint64_t handshake_timeout_ms; /* e.g. 5000 */
	uint64_t max_streams_bidi;     /* streams the peer may open at once */
	uint64_t stream_window;        /* initial per-stream receive window */
	uint64_t conn_window;          /* initial connection receive window */
	uint64_t max_conns;            /* server: connections at most */
};

/* wh_quic_config_default - sane values for |role_server| or client. */
void wh_quic_config_default(struct wh_quic_config *cfg, bool role_server);

/*
 * wh_quic_server_new - listen on |addr|.  Generates an ephemeral
 * self-signed certificate (peers authenticate with the PAKE, bound to the
 * TLS exporter, not with certificates).  Returns 0 or a negative error.
 */
int wh_quic_server_new(const struct sockaddr *addr, socklen_t addrlen,
		       const struct wh_quic_config *cfg,
		       const struct wh_quic_cbs *cbs, void *ud,
		       struct wh_quic_ep **pep);

/*
 * wh_quic_client_new - start a connection to |addr| from a fresh UDP
 * socket.  The handshake proceeds as the owner drives the endpoint; the
 * connection is returned in *pconn.  Returns 0 or a negative error.
 */
int wh_quic_client_new(const struct sockaddr *addr, socklen_t addrlen,
		       const struct wh_quic_config *cfg,
		       const struct wh_quic_cbs *cbs, void *ud,
		       struct wh_quic_ep **pep, struct wh_quic_conn **pconn);

/*
 * wh_quic_client_new_fd - like wh_quic_client_new, from |fd|, a UDP
 * socket made by wh_quic_socket() (bound or not; it is connected to
 * |addr| here).  Takes ownership of |fd|, also on failure.  This lets the
 * owner use the socket first (NAT hole punching) so that QUIC runs over
 * the NAT mapping that was opened.
 */
int wh_quic_client_new_fd(int fd, const struct sockaddr *addr,
			  socklen_t addrlen, const struct wh_quic_config *cfg,
			  const struct wh_quic_cbs *cbs, void *ud,
			  struct wh_quic_ep **pep,
			  struct wh_quic_conn **pconn);

/* wh_quic_socket - a non-blocking UDP socket of |family| with the options
 * the endpoints use (buffers, GRO, PKTINFO).  The fd, or -errno. */
int wh_quic_socket(int family);

/*
 * Datagrams that are not QUIC.  A received datagram that starts with the
 * two bytes 00 57 ("\0W") is not a QUIC packet for this endpoint: long
 * headers have the top bit set, and a short header starts with a
 * connection ID of ours, which this endpoint never begins with 0x57 (the
 * check holds when the peer greases the QUIC bit, RFC 9287, as ngtcp2
 * does).  The endpoint hands such a datagram to the raw callback (from
 * inside wh_quic_ep_read, |data| valid during the call only), or drops it
 * if there is none.  wh_quic_ep_send_raw sends one datagram from the
 * endpoint's socket, so it leaves through the same NAT
 * mapping as the QUIC packets.  The signal protocol uses both.
 */
typedef void (*wh_quic_raw_cb)(void *ud, const uint8_t *data, size_t len,
			       const struct sockaddr *from,
			       socklen_t fromlen);
void wh_quic_ep_set_raw(struct wh_quic_ep *ep, wh_quic_raw_cb cb, void *ud);
/* 0 or -errno (-EAGAIN when the socket buffer is full: drop it). */
int wh_quic_ep_send_raw(struct wh_quic_ep *ep, const struct sockaddr *to,
			socklen_t tolen, const void *data, size_t len);

/* wh_quic_ep_del - close every connection (CONNECTION_CLOSE sent; the
 * usual on_stream_close/on_close callbacks run) and free; NULL is fine. */
void wh_quic_ep_del(struct wh_quic_ep *ep);

int wh_quic_ep_fd(struct wh_quic_ep *ep);
/* wh_quic_ep_local_addr - the socket's bound address (real port). */
int wh_quic_ep_local_addr(struct wh_quic_ep *ep, struct sockaddr_storage *ss,
			  socklen_t *len);
/* wh_quic_ep_read - receive and process every pending datagram. */
void wh_quic_ep_read(struct wh_quic_ep *ep);
/* wh_quic_ep_expire - run the timers that are due. */
void wh_quic_ep_expire(struct wh_quic_ep *ep);
/* wh_quic_ep_flush - send what every connection can send now; performs
 * requested closes. */
void wh_quic_ep_flush(struct wh_quic_ep *ep);
/* wh_quic_ep_holding - true after a read when a client lets packets
 * gather for a moment (a bulk transfer on a long path, see wh_quic.c):
 * its owner need not poll the socket until wh_quic_ep_timeout_ms() has
 * passed; wh_quic_ep_expire() then reads.  Reading earlier is harmless. */
bool wh_quic_ep_holding(struct wh_quic_ep *ep);

/* wh_quic_conn_srtt_ns - the connection's smoothed round-trip time. */
uint64_t wh_quic_conn_srtt_ns(struct wh_quic_conn *c);
/* wh_quic_ep_timeout_ms - milliseconds until the next timer, -1 if none. */
int wh_quic_ep_timeout_ms(struct wh_quic_ep *ep);
/* wh_quic_ep_nconns - live connections. */
size_t wh_quic_ep_nconns(struct wh_quic_ep *ep);
/* wh_quic_ep_conns - a snapshot array of the live connections (caller
 * frees the array, not the connections).  0 or -ENOMEM. */
int wh_quic_ep_conns(struct wh_quic_ep *ep, struct wh_quic_conn ***pv,
		     size_t *pn);

void wh_quic_conn_set_ud(struct wh_quic_conn *c, void *ud);
void *wh_quic_conn_ud(struct wh_quic_conn *c);
/* wh_quic_conn_peer - "ADDR:PORT" of the peer; the string lives as long
 * as the connection and is rewritten when the peer's address changes. */
const char *wh_quic_conn_peer(struct wh_quic_conn *c);
/* wh_quic_conn_exporter - TLS exporter (RFC 8446 7.5) with |label| and an
 * empty context, |len| bytes.  Only after on_handshake.  0 or an error. */
int wh_quic_conn_exporter(struct wh_quic_conn *c, const char *label,
			  uint8_t *out, size_t len);
/* wh_quic_conn_close - close with application error |app_err| and
 * |reason| at the next flush (the peer gets a CONNECTION_CLOSE). */
void wh_quic_conn_close(struct wh_quic_conn *c, uint64_t app_err,
			const char *reason);
bool wh_quic_conn_closing(struct wh_quic_conn *c);

/* wh_quic_open_stream - open a bidirectional stream.  Returns 0, or
 * -EAGAIN when the peer allows no more streams right now (wait for
 * on_streams_available), or another negative error. */
int wh_quic_open_stream(struct wh_quic_conn *c, void *stream_ud,
			struct wh_quic_stream **ps);
int64_t wh_quic_stream_id(const struct wh_quic_stream *s);
void wh_quic_stream_set_ud(struct wh_quic_stream *s, void *ud);
void *wh_quic_stream_ud(const struct wh_quic_stream *s);

/*
 * wh_quic_send - queue |len| bytes at |data| on |s|, then FIN if |fin|.
 * Takes ownership of |data|: it is released with |free_fn| (may be NULL
 * for static data) once acknowledged, or when the stream or connection
 * goes away.  Returns 0 or a negative error (|data| is released then too).
 */
int wh_quic_send(struct wh_quic_conn *c, struct wh_quic_stream *s,
		 void *data, size_t len, bool fin, void (*free_fn)(void *));

/* wh_quic_stream_reset - abandon |s| both ways with |app_err|. */
void wh_quic_stream_reset(struct wh_quic_conn *c, struct wh_quic_stream *s,
			  uint64_t app_err);

#endif /* WH_QUIC_H */
