/*
 * wh_sigsrv.h - the signal server's state machine: rooms and rate limits.
 *
 * No sockets and no clock: wh_sigsrv_handle() takes one datagram, the
 * address it came from and the wall-clock time in milliseconds, and
 * returns the datagrams to send (at most two: the answer to the sender
 * and, for a JOIN, the PEER_JOIN to the room's host).  The loop that owns
 * the socket (wh_signal.c) and the unit tests drive it the same way.
 *
 * A room is what a host registered: its room id, a hash of its owner
 * token, its reflected address, its candidates and an expiry time.  A
 * room lives ttl seconds after its last REGISTER; at most max_rooms exist.
 * A client's JOIN is answered and forwarded, then forgotten.  Each source
 * IP address has a token bucket (rate per second, burst); a malformed
 * datagram costs WH_SIGSRV_BAD_COST tokens.  The source table is bounded:
 * when full, the least recently seen source of a probe window is reused.
 *
 * Persistence goes through |store| (may be NULL): put() after a room is
 * created or refreshed, del() after it is removed or expired; rooms are
 * given back at start with wh_sigsrv_restore().  Rooms expire by the wall
 * clock, so a restart keeps their lifetimes.
 *
 * Not thread-safe: one loop owns a server.
 */
#ifndef WH_SIGSRV_H
#define WH_SIGSRV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/wh_sig.h"

#define WH_SIGSRV_BAD_COST 5

struct wh_sigsrv_opts {
	size_t max_rooms;   /* e.g. 10000 */
	unsigned ttl_s;     /* room lifetime after a REGISTER, e.g. 120 */
	unsigned rate;      /* datagrams per second per source IP, e.g. 20 */
	unsigned burst;     /* bucket size, e.g. 40 */
	size_t max_sources; /* rate-limit table entries, e.g. 16384 */
};

struct wh_sig_room {
	uint8_t room[WH_SIG_ROOM_LEN];
	uint8_t token_hash[WH_SIG_TOKEN_LEN];
	struct wh_sig_addr host; /* as the server saw it */
	uint8_t ncand;
	struct wh_sig_addr cand[WH_SIG_MAX_CANDS];
	uint64_t expires_ms; /* wall clock */
};

struct wh_sigsrv_store {
	void *ud;
	int (*put)(void *ud, const struct wh_sig_room *r);
	void (*del)(void *ud, const uint8_t room[WH_SIG_ROOM_LEN]);
};

struct wh_sigsrv_dgram {
	struct sockaddr_storage to;
	socklen_t tolen;
	size_t len;
	uint8_t data[WH_SIG_MAX_DGRAM];
};

struct wh_sigsrv_out {
	unsigned n;
	struct wh_sigsrv_dgram d[2];
};

struct wh_sigsrv;

void wh_sigsrv_opts_default(struct wh_sigsrv_opts *o);
/* wh_sigsrv_new - 0 or -ENOMEM.  |store| is copied. */
int wh_sigsrv_new(const struct wh_sigsrv_opts *o,
		  const struct wh_sigsrv_store *store, struct wh_sigsrv **ps);
void wh_sigsrv_del(struct wh_sigsrv *s);

/* wh_sigsrv_restore - add a persisted room (no store->put).  Expired rooms
 * and rooms beyond max_rooms are refused with -ENOSPC / -ESTALE. */
int wh_sigsrv_restore(struct wh_sigsrv *s, const struct wh_sig_room *r,
		      uint64_t now_ms);

/*
 * wh_sigsrv_handle - one datagram from |from|.  Fills |out| (out->n may be
 * 0).  Returns 0 if it was handled, -EAGAIN if the source is over its rate
 * (out holds an ERROR RATE answer at most once per second per source), or
 * WH_ERR_PROTO / WH_ERR_TOOBIG if it was malformed (dropped, no answer).
 */
int wh_sigsrv_handle(struct wh_sigsrv *s, uint64_t now_ms,
		     const struct sockaddr *from, socklen_t fromlen,
		     const uint8_t *data, size_t len,
		     struct wh_sigsrv_out *out);

/* wh_sigsrv_expire - drop rooms whose time has come (store->del each). */
void wh_sigsrv_expire(struct wh_sigsrv *s, uint64_t now_ms);

size_t wh_sigsrv_nrooms(const struct wh_sigsrv *s);
/* wh_sigsrv_find - the live room with id |room|, or NULL. */
const struct wh_sig_room *wh_sigsrv_find(const struct wh_sigsrv *s,
					 const uint8_t room[WH_SIG_ROOM_LEN],
					 uint64_t now_ms);

#endif /* WH_SIGSRV_H */
