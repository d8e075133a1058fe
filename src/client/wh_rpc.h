/*
 * wh_rpc.h - how the file system layer talks to a host, whatever carries
 * the bytes (a QUIC session, or an in-process share for tests).
 *
 * call() sends one encoded request frame and waits for the whole response
 * frame, at most |timeout_ms| milliseconds.  It returns 0 with the response
 * frame in |resp| (the caller decodes it and owns the buffer), or a negative
 * error: WH_ERR_TIMEOUT when no answer came in time, WH_ERR_CLOSED when
 * there is no connection right now.  It must be safe to call from many
 * threads at once.
 */
#ifndef WH_RPC_H
#define WH_RPC_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wh_buf.h"

/* the completion of a call_async: |err| and |resp| as call() would have
 * returned them (|resp| is the transport's; read it, do not keep it) */
typedef void (*wh_rpc_done_fn)(void *ud, int err, struct wh_buf *resp);

struct wh_rpc_ops {
	int (*call)(void *ctx, const uint8_t *req, size_t req_len,
		    struct wh_buf *resp, int timeout_ms);
	/* optional: |n| calls sent together, all in flight at once; errs[i]
	 * is what call() would have returned for reqs[i] */
	void (*call_many)(void *ctx, const uint8_t *const *reqs,
			  const size_t *lens, size_t n, struct wh_buf *resps,
			  int *errs, int timeout_ms);
	/* optional: describe the link in |buf| (|size| bytes) as lines of
	 * "name value" (peer, transport, state); returns the length, or a
	 * negative error */
	int (*describe)(void *ctx, char *buf, size_t size);
	/* optional: send |req| and return at once; |done| runs once, later,
	 * on the transport's own thread (so it must not block, nor call()),
	 * with what call() would have returned.  0, or a negative error
	 * (then |done| never runs). */
	int (*call_async)(void *ctx, const uint8_t *req, size_t req_len,
			  int timeout_ms, wh_rpc_done_fn done, void *ud);
	/* with call_async: complete every call_async still outstanding
	 * (WH_ERR_CLOSED), now or very soon */
	void (*cancel_async)(void *ctx);
};

struct wh_rpc {
	const struct wh_rpc_ops *ops;
	void *ctx;
};

static inline int wh_rpc_call(struct wh_rpc *rpc, const uint8_t *req,
			      size_t req_len, struct wh_buf *resp,
			      int timeout_ms)
{
	return rpc->ops->call(rpc->ctx, req, req_len, resp, timeout_ms);
}

/* wh_rpc_call_many - |n| calls in flight at once where the transport can,
 * one after the other where it cannot. */
static inline void wh_rpc_call_many(struct wh_rpc *rpc,
				    const uint8_t *const *reqs,
				    const size_t *lens, size_t n,
				    struct wh_buf *resps, int *errs,
				    int timeout_ms)
{
	if (rpc->ops->call_many) {
		rpc->ops->call_many(rpc->ctx, reqs, lens, n, resps, errs,
				    timeout_ms);
		return;
	}
	for (size_t i = 0; i < n; i++)
		errs[i] = rpc->ops->call(rpc->ctx, reqs[i], lens[i],
					 &resps[i], timeout_ms);
}

/* wh_rpc_describe - the link's description (see describe above), or
 * -ENOTSUP when the transport has none. */
static inline int wh_rpc_describe(struct wh_rpc *rpc, char *buf, size_t size)
{
	if (!rpc->ops->describe)
		return -ENOTSUP;
	return rpc->ops->describe(rpc->ctx, buf, size);
}

#endif /* WH_RPC_H */
