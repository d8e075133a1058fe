/*
 * wh_net.h - one interface over both transports: QUIC (wh_quic.h) and TLS
 * over TCP (wh_tls_tcp.h).  The host and the client session are written
 * once against these connections and streams.
 *
 * The model and the callback rules are those of wh_quic.h: an endpoint
 * owns no loop; its owner polls wh_net_ep_fd() (one fd for all of the
 * endpoint's sockets), calls wh_net_ep_read() when it is readable,
 * wh_net_ep_expire() when wh_net_ep_timeout_ms() has passed and
 * wh_net_ep_flush() after queueing data.  Stream handles are only
 * meaningful with their connection.
 *
 * A server endpoint listens on UDP (QUIC) and TCP on the same address and
 * port.  A client endpoint makes one connection, by the transport asked
 * for; WH_NET_AUTO races them: QUIC first, TCP too if QUIC has not
 * completed its handshake within WH_NET_RACE_MS or the UDP path reports
 * an error (refused, unreachable), or at once after wh_net_race_now().
 * The first transport whose handshake completes becomes the connection
 * and the other attempt is dropped; as TCP starts later and needs more
 * round trips, QUIC wins whenever both work.  If TCP fails while QUIC has
 * had no answer for 2 * WH_NET_RACE_MS, the attempt fails.  on_close runs
 * once, when the connection is gone or every attempt has failed.
 */
#ifndef WH_NET_H
#define WH_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/wh_quic.h" /* struct wh_quic_config */

#define WH_NET_RACE_MS 1200

enum wh_net_transport {
	WH_NET_AUTO = 0,
	WH_NET_QUIC,
	WH_NET_TCP,
};

struct wh_net_ep;
struct wh_net_conn;
struct wh_net_stream;

struct wh_net_cbs {
	void (*on_accept)(struct wh_net_conn *c, void *ud);
	void (*on_handshake)(struct wh_net_conn *c, void *ud);
	void (*on_stream_open)(struct wh_net_conn *c, struct wh_net_stream *s,
			       void *ud);
	int (*on_stream_data)(struct wh_net_conn *c, struct wh_net_stream *s,
			      const uint8_t *data, size_t len, bool fin,
			      void *ud);
	void (*on_stream_close)(struct wh_net_conn *c, struct wh_net_stream *s,
				void *ud);
	void (*on_streams_available)(struct wh_net_conn *c, void *ud);
	void (*on_close)(struct wh_net_conn *c, int err, const char *reason,
			 void *ud);
	/* The peer answers at a new address (QUIC connection migration);
	 * optional, see wh_quic_cbs. */
	void (*on_path_change)(struct wh_net_conn *c, const char *old,
			       const char *now, void *ud);
};

/* wh_net_transport_parse - "auto", "quic" or "tcp".  0 or -EINVAL. */
int wh_net_transport_parse(const char *s, enum wh_net_transport *t);
const char *wh_net_transport_name(enum wh_net_transport t);

/* wh_net_server_new - QUIC on UDP and TLS on TCP, both on |addr|; with
 * port 0 both get the same ephemeral port.  0 or a negative error. */
int wh_net_server_new(const struct sockaddr *addr, socklen_t addrlen,
		      const struct wh_quic_config *cfg,
		      const struct wh_net_cbs *cbs, void *ud,
		      struct wh_net_ep **pep);

/* wh_net_client_new - start connecting to |addr| by |transport|.  The
 * connection is returned in *pconn; its user data starts as |ud|. */
int wh_net_client_new(const struct sockaddr *addr, socklen_t addrlen,
		      enum wh_net_transport transport,
		      const struct wh_quic_config *cfg,
		      const struct wh_net_cbs *cbs, void *ud,
		      struct wh_net_ep **pep, struct wh_net_conn **pconn);

/* wh_net_client_new_fd - the same, with QUIC on |udp_fd|, a UDP socket
 * the owner already used (NAT hole punching: QUIC then runs over the
 * mapping that was opened).  Takes ownership of |udp_fd|, also on failure
 * and when |transport| is WH_NET_TCP (then it is closed). */
int wh_net_client_new_fd(int udp_fd, const struct sockaddr *addr,
			 socklen_t addrlen, enum wh_net_transport transport,
			 const struct wh_quic_config *cfg,
			 const struct wh_net_cbs *cbs, void *ud,
			 struct wh_net_ep **pep, struct wh_net_conn **pconn);

/* wh_net_ep_quic - the QUIC endpoint inside |ep| (a server's, or a
 * client's while its QUIC attempt lives), or NULL: for owners that also
 * send datagrams of their own from its socket (the rendezvous). */
struct wh_quic_ep *wh_net_ep_quic(struct wh_net_ep *ep);

/* wh_net_race_now - a client racing (WH_NET_AUTO): start the TCP attempt
 * now rather than after WH_NET_RACE_MS (e.g. when the last connection had
 * to use TCP).  QUIC still wins when its handshake completes first. */
void wh_net_race_now(struct wh_net_ep *ep);

void wh_net_ep_del(struct wh_net_ep *ep);
int wh_net_ep_fd(struct wh_net_ep *ep);
int wh_net_ep_local_addr(struct wh_net_ep *ep, struct sockaddr_storage *ss,
			 socklen_t *len);
void wh_net_ep_read(struct wh_net_ep *ep);
void wh_net_ep_expire(struct wh_net_ep *ep);
void wh_net_ep_flush(struct wh_net_ep *ep);
int wh_net_ep_timeout_ms(struct wh_net_ep *ep);
size_t wh_net_ep_nconns(struct wh_net_ep *ep);
/* wh_net_ep_conns - a snapshot array of the live connections (caller
 * frees the array).  0 or -ENOMEM. */
int wh_net_ep_conns(struct wh_net_ep *ep, struct wh_net_conn ***pv,
		    size_t *pn);

void wh_net_conn_set_ud(struct wh_net_conn *c, void *ud);
void *wh_net_conn_ud(struct wh_net_conn *c);
const char *wh_net_conn_peer(struct wh_net_conn *c);
/* wh_net_conn_transport - WH_NET_QUIC or WH_NET_TCP once the handshake
 * is done (WH_NET_AUTO before). */
enum wh_net_transport wh_net_conn_transport(struct wh_net_conn *c);
int wh_net_conn_exporter(struct wh_net_conn *c, const char *label,
			 uint8_t *out, size_t len);
void wh_net_conn_close(struct wh_net_conn *c, uint64_t app_err,
		       const char *reason);
bool wh_net_conn_closing(struct wh_net_conn *c);

int wh_net_open_stream(struct wh_net_conn *c, void *stream_ud,
		       struct wh_net_stream **ps);
int64_t wh_net_stream_id(struct wh_net_conn *c, struct wh_net_stream *s);
void wh_net_stream_set_ud(struct wh_net_conn *c, struct wh_net_stream *s,
			  void *ud);
void *wh_net_stream_ud(struct wh_net_conn *c, struct wh_net_stream *s);
int wh_net_send(struct wh_net_conn *c, struct wh_net_stream *s, void *data,
		size_t len, bool fin, void (*free_fn)(void *));
void wh_net_stream_reset(struct wh_net_conn *c, struct wh_net_stream *s,
			 uint64_t app_err);

#endif /* WH_NET_H */
