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

#include <stddef.h>
#include <stdint.h>

#include "common/wh_buf.h"

struct wh_rpc_ops {
	int (*call)(void *ctx, const uint8_t *req, size_t req_len,
		    struct wh_buf *resp, int timeout_ms);
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

#endif /* WH_RPC_H */
