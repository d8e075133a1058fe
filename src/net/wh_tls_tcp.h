/*
 * wh_tls_tcp.h - the TCP transport: TLS 1.3 (GnuTLS) over TCP with the
 * stream multiplexing of wh_mux.h, for paths where UDP does not pass.
 *
 * Same model and semantics as wh_quic.h, so that wh_net.h can put either
 * under the same code: an endpoint owns a listening socket (server) or one
 * connection (client), does no threading and owns no loop.  Its owner
 * polls wh_tcp_ep_fd() (an epoll fd over the endpoint's sockets), calls
 * wh_tcp_ep_read() when it is readable, wh_tcp_ep_expire() when
 * wh_tcp_ep_timeout_ms() has passed, wh_tcp_ep_flush() after anything that
 * may have queued data.
 *
 * Differences from QUIC, all invisible to a stream's user: data handed to
 * wh_tcp_send() is released once it has been copied into TLS records (TCP
 * retransmits it, not us); a stream closes once our FIN is written and the
 * peer's has arrived, or on a reset; on_handshake runs when the TLS
 * handshake is done AND the peer's SETTINGS frame has arrived (only then
 * are its limits known).  Only the client opens streams.  Flow control is
 * per stream and per connection, credit returned as soon as
 * on_stream_data returns; the sender serves its streams in order, each
 * until it is done, a stream with at most 64 KiB to send ahead of the
 * large ones, and skips a stream that waits for credit.  The client sends a PING every keepalive_ms; a connection
 * that receives nothing for idle_timeout_ms is gone (WH_ERR_TIMEOUT).
 *
 * The sockets get TCP_NODELAY, the "bbr" congestion control where the
 * kernel offers it (silently the default otherwise), and large buffers
 * where the process may force them (autotuning otherwise).
 */
#ifndef WH_TLS_TCP_H
#define WH_TLS_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/wh_quic.h" /* struct wh_quic_config: the same knobs */

struct wh_tcp_ep;
struct wh_tcp_conn;
struct wh_tcp_stream;

/* The callbacks, with the meaning of struct wh_quic_cbs. */
struct wh_tcp_cbs {
	void (*on_accept)(struct wh_tcp_conn *c, void *ud);
	void (*on_handshake)(struct wh_tcp_conn *c, void *ud);
	void (*on_stream_open)(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
			       void *ud);
	int (*on_stream_data)(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
			      const uint8_t *data, size_t len, bool fin,
			      void *ud);
	void (*on_stream_close)(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
				void *ud);
	void (*on_streams_available)(struct wh_tcp_conn *c, void *ud);
	void (*on_close)(struct wh_tcp_conn *c, int err, const char *reason,
			 void *ud);
};

/* wh_tcp_server_new - listen on |addr| (TCP).  Ephemeral self-signed
 * certificate as for QUIC.  0 or a negative error (-EADDRINUSE, ...). */
int wh_tcp_server_new(const struct sockaddr *addr, socklen_t addrlen,
		      const struct wh_quic_config *cfg,
		      const struct wh_tcp_cbs *cbs, void *ud,
		      struct wh_tcp_ep **pep);

/* wh_tcp_client_new - start a connection to |addr| (nonblocking connect,
 * then the TLS handshake as the owner drives the endpoint).  The
 * connection's user data starts as |ud|. */
int wh_tcp_client_new(const struct sockaddr *addr, socklen_t addrlen,
		      const struct wh_quic_config *cfg,
		      const struct wh_tcp_cbs *cbs, void *ud,
		      struct wh_tcp_ep **pep, struct wh_tcp_conn **pconn);

/* wh_tcp_ep_del - close every connection (a CLOSE frame is attempted; the
 * usual callbacks run) and free; NULL is fine. */
void wh_tcp_ep_del(struct wh_tcp_ep *ep);

int wh_tcp_ep_fd(struct wh_tcp_ep *ep);
int wh_tcp_ep_local_addr(struct wh_tcp_ep *ep, struct sockaddr_storage *ss,
			 socklen_t *len);
void wh_tcp_ep_read(struct wh_tcp_ep *ep);
void wh_tcp_ep_expire(struct wh_tcp_ep *ep);
void wh_tcp_ep_flush(struct wh_tcp_ep *ep);
int wh_tcp_ep_timeout_ms(struct wh_tcp_ep *ep);
size_t wh_tcp_ep_nconns(struct wh_tcp_ep *ep);

void wh_tcp_conn_set_ud(struct wh_tcp_conn *c, void *ud);
void *wh_tcp_conn_ud(struct wh_tcp_conn *c);
const char *wh_tcp_conn_peer(struct wh_tcp_conn *c);
int wh_tcp_conn_exporter(struct wh_tcp_conn *c, const char *label,
			 uint8_t *out, size_t len);
void wh_tcp_conn_close(struct wh_tcp_conn *c, uint64_t app_err,
		       const char *reason);
bool wh_tcp_conn_closing(struct wh_tcp_conn *c);

int wh_tcp_open_stream(struct wh_tcp_conn *c, void *stream_ud,
		       struct wh_tcp_stream **ps);
int64_t wh_tcp_stream_id(const struct wh_tcp_stream *s);
void wh_tcp_stream_set_ud(struct wh_tcp_stream *s, void *ud);
void *wh_tcp_stream_ud(const struct wh_tcp_stream *s);
int wh_tcp_send(struct wh_tcp_conn *c, struct wh_tcp_stream *s, void *data,
		size_t len, bool fin, void (*free_fn)(void *));
void wh_tcp_stream_reset(struct wh_tcp_conn *c, struct wh_tcp_stream *s,
			 uint64_t app_err);

/* wh_tcp_tune_socket - the options every connection's socket gets: no
 * Nagle, BBR where available, large buffers, retransmissions at most a
 * second apart (Linux 6.15+), so a path back from an outage is used within
 * a second, and unacknowledged data given up on after |idle_timeout_ms|
 * (TCP_USER_TIMEOUT; 0: the kernel's default). */
void wh_tcp_tune_socket(int fd, uint64_t idle_timeout_ms);

/* wh_tcp_bbr_available - whether a TCP socket accepts the "bbr"
 * congestion control here (for `wormhole doctor`). */
bool wh_tcp_bbr_available(void);

/*
 * A detached connection: no socket and no TLS, for driving the frame
 * handling with plaintext (the fuzz target fuzz/fuzz_tcp.c, tests).  It
 * starts as a live one does once its TLS handshake is done: on_accept
 * first on the server side (with |ud|; on the client the connection's user
 * data is |ud|), then its SETTINGS go to |sink|, as will every byte it
 * would hand to TLS.  wh_tcp_conn_input gives it what TLS would have
 * decrypted from the peer, taken exactly as a live connection takes it
 * (the same parsing, limits and callbacks); a connection that died is
 * reaped at the end of the call, as after wh_tcp_ep_read (on_close has
 * run: |c| is not to be used again).  The endpoint's other calls work on
 * it as usual (wh_tcp_ep_flush, _expire, wh_tcp_ep_del to free it);
 * wh_tcp_conn_exporter refuses (no TLS).
 */
typedef void (*wh_tcp_sink_fn)(void *ud, const uint8_t *data, size_t len);
int wh_tcp_detached_new(bool server, const struct wh_quic_config *cfg,
			const struct wh_tcp_cbs *cbs, void *ud,
			wh_tcp_sink_fn sink, void *sink_ud,
			struct wh_tcp_ep **pep, struct wh_tcp_conn **pconn);
void wh_tcp_conn_input(struct wh_tcp_conn *c, const uint8_t *data,
		       size_t len);

#endif /* WH_TLS_TCP_H */
