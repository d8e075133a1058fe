/*
 * wh_session.h - a client's authenticated session with a host.
 *
 * A session owns one network thread that keeps a connection to the host
 * (QUIC, or TLS over TCP where UDP does not pass: see wh_net.h): it authenticates with the join code (PAKE), sends each request on
 * its own stream, routes replies back to the waiting callers, forwards the
 * host's INVAL frames, and reconnects by itself when the connection is lost
 * (requests waiting at that moment are sent again once reconnected, as all
 * requests are idempotent reads; each still fails at its own deadline).
 */
#ifndef WH_SESSION_H
#define WH_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/wh_rpc.h"
#include "common/wh_buf.h"
#include "net/wh_net.h"

struct wh_session;

typedef void (*wh_session_inval_cb)(void *ud, const char *dir, size_t dir_len,
				    const char *name, size_t name_len);
typedef void (*wh_session_reconnect_cb)(void *ud);

struct wh_session_opts {
	const char *code;       /* canonical join code */
	const char *peer;       /* "ADDR:PORT" of the host, or NULL: */
	const char *signal;     /* find it through this signal server
				 * (wh_rdv_join), on every (re)connect */
	int connect_timeout_ms; /* for the first connection; e.g. 10000 */
	bool no_reconnect;      /* fail in-flight calls when the link drops
				 * and never reconnect (test tools) */
	enum wh_net_transport transport; /* WH_NET_AUTO: race QUIC and TCP */
};

/*
 * wh_session_new - connect and authenticate.  Returns 0 once the session
 * is ready, or WH_ERR_AUTH (wrong join code), WH_ERR_LOCKED (the host
 * refuses the code), WH_ERR_TIMEOUT (no answer), WH_ERR_ADDR, ... with a
 * one-line explanation in |err| (|errlen| bytes).
 */
int wh_session_new(const struct wh_session_opts *opts, struct wh_session **ps,
		   char *err, size_t errlen);

/* wh_session_set_handlers - where INVAL frames and reconnects are
 * reported (called on the network thread; must not block). */
void wh_session_set_handlers(struct wh_session *s, wh_session_inval_cb inval,
			     wh_session_reconnect_cb reconnect, void *ud);

/*
 * wh_session_call - send |req| (one request frame, or any bytes) on a new
 * stream and wait for the host's reply frame, at most |timeout_ms|.
 * Returns 0 with the reply in |resp| (its memory reused when it is big
 * enough; on failure |resp| is left empty), WH_ERR_TIMEOUT,
 * WH_ERR_CLOSED (no_reconnect sessions: the connection is gone),
 * WH_ERR_AUTH (the host no longer accepts our code) or WH_ERR_PROTO (the
 * reply was malformed or too large).  Thread-safe.
 */
int wh_session_call(struct wh_session *s, const uint8_t *req, size_t len,
		    struct wh_buf *resp, int timeout_ms);

/* wh_session_caps - the capability bits the host agreed to (WH_CAP_*). */
uint64_t wh_session_caps(struct wh_session *s);

/* wh_session_rpc - a struct wh_rpc backed by this session. */
/*
 * wh_session_call_async - wh_session_call without the wait: |done| runs
 * once, on the session's network thread (it must not block, nor make a
 * wh_session_call), with what wh_session_call would have returned; 0, or
 * a negative error (then |done| never runs).  Saves the caller a sleep and
 * a wake-up per call.  wh_session_cancel_async completes every one still
 * outstanding with WH_ERR_CLOSED (those of them completing elsewhere at
 * that moment may still be running their |done| when it returns).
 */
int wh_session_call_async(struct wh_session *s, const uint8_t *req,
			  size_t len, int timeout_ms, wh_rpc_done_fn done,
			  void *ud);
void wh_session_cancel_async(struct wh_session *s);

void wh_session_rpc(struct wh_session *s, struct wh_rpc *rpc);

/* wh_session_transport - the transport of the current connection
 * (WH_NET_AUTO while there is none). */
enum wh_net_transport wh_session_transport(struct wh_session *s);

/* wh_session_del - close and free; NULL is fine. */
void wh_session_del(struct wh_session *s);

#endif /* WH_SESSION_H */
