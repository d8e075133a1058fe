/*
 * wh_rendezvous.h - the peers' side of the signal protocol: room ids,
 * candidate addresses, registration, and UDP hole punching.
 *
 * Room id and owner token come from the join code (wh_rdv_derive): keyed
 * BLAKE2b of the canonical code under two fixed labels, 16 bytes each.
 * The signal server sees the room id and a hash of the token, never the
 * code (docs/PROTOCOL.md discusses what an offline search of the room id
 * would cost).
 *
 * Host (struct wh_rdv_host): a state machine fed with datagrams and time,
 * sending through a callback (the host passes wh_quic_ep_send_raw, so
 * every datagram leaves from its QUIC socket and NAT mapping).  It
 * registers the room and its candidates, refreshes the registration every
 * WH_RDV_REFRESH_MS (retrying sooner when unanswered), and when the server
 * forwards a client's candidates (PEER_JOIN) it sends PUNCH datagrams to
 * each of them every WH_RDV_PUNCH_EVERY_MS for WH_RDV_PUNCH_MS, opening
 * its NAT towards the client.  It answers every PUNCH of its room with a
 * PUNCH ack.  wh_rdv_host_del() unregisters.
 *
 * Client (wh_rdv_join): blocking.  From a fresh UDP socket it sends JOIN
 * (room, its candidates) to the server until PEERS or ERROR comes back,
 * then sends PUNCH to every candidate of the host at the same rhythm; the
 * first candidate a PUNCH (probe or ack) of this join comes from is the
 * path.  The socket is returned for QUIC (wh_quic_client_new_fd), so the
 * QUIC packets use the punched mapping.  The PAKE, run over QUIC, still
 * decides whether the peer is the host: a forged PUNCH costs a failed
 * connection, not a wrong one.
 */
#ifndef WH_RENDEZVOUS_H
#define WH_RENDEZVOUS_H

#include <stdint.h>
#include <sys/socket.h>

#include "proto/wh_sig.h"

#define WH_RDV_REFRESH_MS 20000   /* host re-registers this often */
#define WH_RDV_RETRY_MS 1000      /* first retry of an unanswered request */
#define WH_RDV_PUNCH_EVERY_MS 100 /* punch rhythm */
#define WH_RDV_PUNCH_MS 5000      /* how long a punch runs */
#define WH_RDV_MAX_PUNCHES 16     /* host: concurrent punches */

/* wh_rdv_derive - room id and owner token of |code| (any spelling).
 * 0 or WH_ERR_CODE. */
int wh_rdv_derive(const char *code, uint8_t room[WH_SIG_ROOM_LEN],
		  uint8_t token[WH_SIG_TOKEN_LEN]);

/* wh_rdv_local_cands - the addresses of this machine's interfaces of
 * |bound|'s family that are up (not loopback, not IPv6 link-local), with
 * |port| (for a wildcard IPv6 |bound|, which wh_quic makes dual-stack,
 * the IPv4 ones too); when |bound| is a specific address, that address
 * alone.  At most |max|; returns the count. */
unsigned wh_rdv_local_cands(const struct sockaddr *bound, uint16_t port,
			    struct wh_sig_addr *out, unsigned max);

typedef int (*wh_rdv_send_fn)(void *ud, const struct sockaddr *to,
			      socklen_t tolen, const void *data, size_t len);

struct wh_rdv_host;

/* wh_rdv_host_new - for |code|, registering at |sig| the candidates
 * |cands| (|ncand| <= WH_SIG_MAX_CANDS - 1: the server adds the reflected
 * address).  Nothing is sent before the first wh_rdv_host_tick().  0,
 * WH_ERR_CODE or -ENOMEM. */
int wh_rdv_host_new(const char *code, const struct sockaddr *sig,
		    socklen_t siglen, const struct wh_sig_addr *cands,
		    unsigned ncand, wh_rdv_send_fn send, void *ud,
		    struct wh_rdv_host **ph);
/* wh_rdv_host_input - a datagram for the signal layer (any source). */
void wh_rdv_host_input(struct wh_rdv_host *h, uint64_t now_ns,
		       const uint8_t *data, size_t len,
		       const struct sockaddr *from, socklen_t fromlen);
/* wh_rdv_host_tick - send what is due at |now_ns|. */
void wh_rdv_host_tick(struct wh_rdv_host *h, uint64_t now_ns);
/* wh_rdv_host_timeout_ms - ms until the next tick is due (>= 0). */
int wh_rdv_host_timeout_ms(const struct wh_rdv_host *h, uint64_t now_ns);
/* wh_rdv_host_registered - true once the server confirmed the room. */
bool wh_rdv_host_registered(const struct wh_rdv_host *h);
/*
 * wh_rdv_host_attach - the host's glue: parse |signal| ("ADDR:PORT"),
 * gather the candidates of |ep|'s socket, create the state machine with
 * wh_quic_ep_send_raw as its send function and install its input as
 * |ep|'s raw datagram callback.  0, or an error with a warning logged
 * (the host then runs without the signal server).
 */
struct wh_quic_ep;
int wh_rdv_host_attach(struct wh_quic_ep *ep, const char *signal,
		       const char *code, struct wh_rdv_host **ph);

/* wh_rdv_host_del - send UNREGISTER and free; NULL is fine. */
void wh_rdv_host_del(struct wh_rdv_host *h);

/*
 * wh_rdv_join - find the host of |code| through the signal server |sig|
 * and punch a path to it within |timeout_ms|.  On success returns 0 with
 * *pfd a UDP socket (from wh_quic_socket) and the host's address in
 * |peer|; the caller owns the socket.  Errors, each with a one-line
 * explanation in |err|: WH_ERR_TIMEOUT (the server did not answer),
 * -ENOENT (no host registered for this code), -EBUSY (the server is
 * rate limiting us or is full), -EHOSTUNREACH (no candidate answered the
 * punch), -ECANCELED (|cancel_fd|, if not -1, became readable), WH_ERR_CODE,
 * or -errno.
 */
int wh_rdv_join(const struct sockaddr *sig, socklen_t siglen,
		const char *code, int timeout_ms, int cancel_fd, int *pfd,
		struct sockaddr_storage *peer, socklen_t *peerlen, char *err,
		size_t errlen);

/*
 * The client's side as a state machine, what wh_rdv_join runs on its
 * socket (and fuzz/fuzz_rdv.c on hostile replies): created for |code|,
 * the server |sig|, our candidates (|ncand| <= WH_SIG_MAX_CANDS - 1) and
 * a deadline |timeout_ms| after |now_ns|; it sends through |send|.
 * wh_rdv_client_tick sends what is due (JOIN to the server, backing off,
 * until PEERS; then PUNCH to each of the host's candidates of the
 * server's family); wh_rdv_client_input takes a datagram from any
 * source.  Both return 0 while it goes on, 1 once a PUNCH of this join
 * came (wh_rdv_client_peer: from where; a probe is acked), or the error
 * it ended with, as wh_rdv_join's, with wh_rdv_client_error's sentence:
 * -ENOENT, -EBUSY (an ERROR from the server's address), WH_ERR_TIMEOUT,
 * -EHOSTUNREACH.  Once ended it sends nothing more.  new: 0, WH_ERR_CODE,
 * -EINVAL or -ENOMEM.
 */
struct wh_rdv_client;
int wh_rdv_client_new(const char *code, const struct sockaddr *sig,
		      socklen_t siglen, const struct wh_sig_addr *cands,
		      unsigned ncand, int timeout_ms, uint64_t now_ns,
		      wh_rdv_send_fn send, void *ud,
		      struct wh_rdv_client **pc);
int wh_rdv_client_tick(struct wh_rdv_client *c, uint64_t now_ns);
int wh_rdv_client_input(struct wh_rdv_client *c, uint64_t now_ns,
			const uint8_t *data, size_t len,
			const struct sockaddr *from, socklen_t fromlen);
/* ms until the next tick is due (>= 0) */
int wh_rdv_client_timeout_ms(const struct wh_rdv_client *c, uint64_t now_ns);
const struct sockaddr *wh_rdv_client_peer(const struct wh_rdv_client *c,
					  socklen_t *len);
const char *wh_rdv_client_error(const struct wh_rdv_client *c);
void wh_rdv_client_del(struct wh_rdv_client *c);

#endif /* WH_RENDEZVOUS_H */
