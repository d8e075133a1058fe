/*
 * wh_sig.h - the signal (rendezvous) protocol: pure encode and decode of
 * its UDP datagrams, no I/O.  docs/PROTOCOL.md ("Signal protocol") is the
 * normative description; this header is its C face.
 *
 * Every datagram starts with the 4-byte magic 00 'W' 'S' 01 and a type
 * byte.  No QUIC packet addressed to a wormhole endpoint starts with
 * 00 57 (wh_quic.h explains why), so signal datagrams share the QUIC
 * socket and the endpoint hands them to its owner.
 *
 *   REGISTER    host -> server   room, owner token, txn, candidates
 *   REGISTERED  server -> host   txn, ttl (s), the host's reflected address
 *   UNREGISTER  host -> server   room, owner token, txn
 *   JOIN        client -> server room, txn, candidates
 *   PEERS       server -> client txn, the client's reflected address,
 *                                the host's candidates (reflected first)
 *   PEER_JOIN   server -> host   room, txn, the client's candidates
 *                                (reflected first)
 *   ERROR       server -> peer   txn, code
 *   PUNCH       peer -> peer     room, txn, ack flag
 *
 * Integers are big-endian.  An address is u8 family (4 or 6), u16 port
 * (never 0), then 4 or 16 bytes.  A candidate list is u8 count (at most
 * WH_SIG_MAX_CANDS) and that many addresses.  Decoders never read past
 * |len|, reject trailing bytes, unknown types, bad families, port 0 and
 * datagrams longer than WH_SIG_MAX_DGRAM.
 */
#ifndef WH_SIG_H
#define WH_SIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WH_SIG_MAGIC_LEN 4
#define WH_SIG_MAX_CANDS 8
#define WH_SIG_MAX_DGRAM 512 /* longer datagrams are malformed */
#define WH_SIG_ROOM_LEN 16
#define WH_SIG_TOKEN_LEN 16
#define WH_SIG_TXN_LEN 8

enum wh_sig_type {
	WH_SIG_REGISTER = 1,
	WH_SIG_REGISTERED = 2,
	WH_SIG_UNREGISTER = 3,
	WH_SIG_JOIN = 4,
	WH_SIG_PEERS = 5,
	WH_SIG_PEER_JOIN = 6,
	WH_SIG_ERROR = 7,
	WH_SIG_PUNCH = 8,
};

enum wh_sig_errcode {
	WH_SIGE_NOROOM = 1,  /* no host is registered for this room */
	WH_SIGE_TAKEN = 2,   /* the room belongs to another owner token */
	WH_SIGE_FULL = 3,    /* the server holds as many rooms as it may */
	WH_SIGE_RATE = 4,    /* this address sends too fast */
};

struct wh_sig_addr {
	uint8_t family; /* 4 or 6 */
	uint16_t port;
	uint8_t ip[16]; /* 4 bytes used for family 4 */
};

struct wh_sig_msg {
	uint8_t type;                      /* enum wh_sig_type */
	uint8_t room[WH_SIG_ROOM_LEN];     /* REGISTER UNREGISTER JOIN
					    * PEER_JOIN PUNCH */
	uint8_t token[WH_SIG_TOKEN_LEN];   /* REGISTER UNREGISTER */
	uint8_t txn[WH_SIG_TXN_LEN];       /* every type */
	uint16_t ttl_s;                    /* REGISTERED */
	uint8_t code;                      /* ERROR */
	bool ack;                          /* PUNCH */
	struct wh_sig_addr refl;           /* REGISTERED PEERS */
	uint8_t ncand;                     /* REGISTER JOIN PEERS PEER_JOIN */
	struct wh_sig_addr cand[WH_SIG_MAX_CANDS];
};

/* wh_sig_is_sig - true if |data| starts with the signal magic (any type):
 * the datagram is for the signal layer, not QUIC. */
bool wh_sig_is_sig(const uint8_t *data, size_t len);

/* wh_sig_encode - |m| into |out| (|cap| bytes).  Returns the length, or
 * WH_ERR_TOOBIG if |cap| is too small, WH_ERR_PROTO if |m| is invalid
 * (unknown type, too many candidates, a bad address). */
int wh_sig_encode(const struct wh_sig_msg *m, uint8_t *out, size_t cap);

/* wh_sig_decode - parse one datagram.  0, WH_ERR_TOOBIG (longer than
 * WH_SIG_MAX_DGRAM) or WH_ERR_PROTO (anything else wrong). */
int wh_sig_decode(const uint8_t *data, size_t len, struct wh_sig_msg *m);

/* Conversions between the wire address and a socket address.  from_sa
 * returns WH_ERR_ADDR for a family other than AF_INET/AF_INET6 or port 0;
 * an IPv4-mapped IPv6 address becomes family 4. */
int wh_sig_addr_from_sa(const struct sockaddr *sa, struct wh_sig_addr *a);
socklen_t wh_sig_addr_to_sa(const struct wh_sig_addr *a,
			    struct sockaddr_storage *ss);
bool wh_sig_addr_eq(const struct wh_sig_addr *a, const struct wh_sig_addr *b);
/* wh_sig_addr_str - "1.2.3.4:5" or "[::1]:5". */
char *wh_sig_addr_str(const struct wh_sig_addr *a, char *buf, size_t size);

#endif /* WH_SIG_H */
