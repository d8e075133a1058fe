/*
 * wh_cctrl.h - the client's side of a connection's control stream: HELLO
 * with the PAKE's first message, the host's HELLO_ACK (its version, its
 * half of the PAKE and confirmation, the capabilities), AUTH, AUTH_OK,
 * then INVAL notifications and the host's ERRORs (docs/PROTOCOL.md,
 * "Session").
 *
 * No I/O and no state of the session's own: the session (wh_session.c)
 * says through |phase| where it is, and the machine acts through the
 * other callbacks; fuzz/fuzz_ctrl.c drives it with a model.  It takes the
 * stream's bytes as they come (frames split anywhere).  A malformed or
 * oversized frame is an error returned to the caller (the transport then
 * drops the connection); a frame out of order closes the connection; an
 * ERROR from the host fails the session for good (wrong code, locked,
 * version).  Once it closed or failed the connection, it takes nothing
 * more from it: what follows in the same bytes is dropped.
 */
#ifndef WH_CCTRL_H
#define WH_CCTRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/wh_pake.h"
#include "common/wh_buf.h"

#define WH_CCTRL_MAX (64 * 1024) /* longest control frame payload taken */

enum wh_cctrl_phase {
	WH_CCTRL_WAIT_ACK, /* HELLO sent */
	WH_CCTRL_WAIT_OK,  /* AUTH sent */
	WH_CCTRL_READY,
	WH_CCTRL_OTHER,    /* failed, or not connected */
};

struct wh_cctrl_ops {
	enum wh_cctrl_phase (*phase)(void *ud);
	/* |b|'s bytes onto the control stream (ownership moves; |b| is left
	 * empty).  0 or a negative error. */
	int (*send)(void *ud, struct wh_buf *b);
	void (*close)(void *ud, uint64_t app_err, const char *reason);
	/* the session failed for good (the host refused us, or cannot be
	 * trusted): |err| a WH_ERR_*, |msg| for the user */
	void (*fail)(void *ud, int err, const char *msg);
	/* the host's confirmation checked, AUTH sent: WAIT_OK with |caps|
	 * (what the host agreed to of what HELLO offered: nothing else, even
	 * from a host that claims more) */
	void (*authing)(void *ud, uint64_t caps);
	/* AUTH_OK: READY */
	void (*ready)(void *ud);
	/* INVAL: |dir| (|dlen| bytes) and |name| (|nlen|) changed */
	void (*inval)(void *ud, const char *dir, size_t dlen,
		      const char *name, size_t nlen);
};

struct wh_cctrl {
	const struct wh_cctrl_ops *ops;
	void *ud;
	bool done; /* closed or failed the connection */
	uint64_t offered; /* the capabilities HELLO offered */
	struct wh_buf rx;
	struct wh_pake pake;
};

void wh_cctrl_init(struct wh_cctrl *c, const struct wh_cctrl_ops *ops,
		   void *ud);

/* wh_cctrl_hello - a new connection: the PAKE for |code| bound to |sid|
 * starts and HELLO (offering |caps|) is sent.  0 or a negative error. */
int wh_cctrl_hello(struct wh_cctrl *c, const char *code, const uint8_t *sid,
		   size_t sid_len, uint64_t caps);

/* wh_cctrl_input - bytes of the control stream.  0, or a negative error:
 * the connection is to be dropped. */
int wh_cctrl_input(struct wh_cctrl *c, const uint8_t *data, size_t len);

/* wh_cctrl_reset - forget the connection (partial frame, PAKE) */
void wh_cctrl_reset(struct wh_cctrl *c);
void wh_cctrl_free(struct wh_cctrl *c);

#endif /* WH_CCTRL_H */
