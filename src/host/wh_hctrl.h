/*
 * wh_hctrl.h - the host's side of a connection's control stream: HELLO,
 * the PAKE, AUTH, capability negotiation (docs/PROTOCOL.md, "Session").
 *
 * A state machine with no I/O of its own: it takes the control stream's
 * bytes as they come (frames split anywhere) and acts through the
 * callbacks its owner gives (wh_host.c: the connection; fuzz/fuzz_ctrl.c:
 * a model).  NEW -(HELLO)-> WAIT_AUTH -(AUTH)-> AUTHED.  Anything else (a
 * frame out of order, a repeat, a malformed or oversized one, a wrong
 * code) sends an ERROR with the stream's FIN, closes the connection and
 * leaves it FAILED, where every further byte is ignored.
 */
#ifndef WH_HCTRL_H
#define WH_HCTRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/wh_pake.h"
#include "common/wh_buf.h"

#define WH_HCTRL_MAX 1024 /* longest control frame payload taken */
#define WH_HCTRL_APP_ERR 2 /* the close code of a failed authentication */

enum wh_hctrl_state {
	WH_HCTRL_NEW,       /* waiting for HELLO */
	WH_HCTRL_WAIT_AUTH, /* HELLO_ACK sent, waiting for AUTH */
	WH_HCTRL_AUTHED,
	WH_HCTRL_FAILED,
};

struct wh_hctrl_ops {
	/* |b|'s bytes onto the control stream (ownership moves; |b| is left
	 * empty); |fin|: the last.  0 or a negative error. */
	int (*send)(void *ud, struct wh_buf *b, bool fin);
	/* close the connection with |app_err| */
	void (*close)(void *ud, uint64_t app_err, const char *reason);
	/* the TLS exporter the PAKE is bound to, |len| bytes; 0 or < 0 */
	int (*exporter)(void *ud, uint8_t *out, size_t len);
	/* a failed attempt at the code, counted once per connection */
	void (*failure)(void *ud, const char *why);
	/* whether the host refuses every attempt now (too many failed) */
	bool (*locked)(void *ud);
	/* AUTH verified, AUTH_OK sent */
	void (*authed)(void *ud);
};

struct wh_hctrl {
	enum wh_hctrl_state state;
	uint64_t caps; /* negotiated, once HELLO_ACK went */
	bool attempt_counted;
	const struct wh_hctrl_ops *ops;
	void *ud;
	const char *code; /* canonical join code */
	uint64_t offer;   /* what the host offers: WH_CAP_ZSTD only when it
			   * compresses */
	char name[96];    /* for the log: "client #3 (1.2.3.4:5)" */
	struct wh_buf rx;
	struct wh_pake pake;
};

void wh_hctrl_init(struct wh_hctrl *a, const struct wh_hctrl_ops *ops,
		   void *ud, const char *code, uint64_t offer,
		   const char *name);

/* wh_hctrl_input - bytes of the control stream; |fin|: its end (the
 * client leaves: the connection is closed, "bye").  0, or -ENOMEM. */
int wh_hctrl_input(struct wh_hctrl *a, const uint8_t *data, size_t len,
		   bool fin);

/* wh_hctrl_gone - the connection is gone: leaving while the PAKE runs
 * counts as a failed attempt (a client with the wrong code sees that
 * the host's confirmation fails and leaves) */
void wh_hctrl_gone(struct wh_hctrl *a);

void wh_hctrl_free(struct wh_hctrl *a);

#endif /* WH_HCTRL_H */
