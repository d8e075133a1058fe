/*
 * wh_hctrl.c - the host's control-stream state machine (wh_hctrl.h); was
 * the host's on_hello/on_auth/on_ctrl_data, moved out of wh_host.c
 * unchanged so that it can be driven without a connection.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/wh_err.h"
#include "common/wh_log.h"
#include "host/wh_hctrl.h"
#include "proto/wh_proto.h"

#define CTRL_MAX (WH_FRAME_HDR_LEN + WH_HCTRL_MAX)

void wh_hctrl_init(struct wh_hctrl *a, const struct wh_hctrl_ops *ops,
		   void *ud, const char *code, uint64_t offer,
		   const char *name)
{
	memset(a, 0, sizeof(*a));
	a->state = WH_HCTRL_NEW;
	a->ops = ops;
	a->ud = ud;
	a->code = code;
	a->offer = offer;
	snprintf(a->name, sizeof(a->name), "%s", name ? name : "client");
	wh_buf_init(&a->rx);
}

void wh_hctrl_free(struct wh_hctrl *a)
{
	wh_pake_wipe(&a->pake);
	wh_buf_free(&a->rx);
}

static void ctrl_fail(struct wh_hctrl *a, int err, const char *message)
{
	struct wh_buf b;

	wh_buf_init(&b);
	if (wh_error_append(&b, 0, err, message) == 0)
		a->ops->send(a->ud, &b, true);
	wh_buf_free(&b);
	a->state = WH_HCTRL_FAILED;
	a->ops->close(a->ud, WH_HCTRL_APP_ERR, message);
}

static void count_failure(struct wh_hctrl *a, const char *why)
{
	if (a->attempt_counted)
		return;
	a->attempt_counted = true;
	a->ops->failure(a->ud, why);
}

/* send_ctrl - one frame on the control stream; on failure the
 * connection is failed.  0 or a negative error. */
static int send_ctrl(struct wh_hctrl *a, const struct wh_msg *m)
{
	struct wh_buf b;
	int rv;

	wh_buf_init(&b);
	rv = wh_msg_append(&b, m);
	if (rv < 0) {
		wh_buf_free(&b);
		ctrl_fail(a, rv == -ENOMEM ? ENOMEM : EIO, "internal error");
		return rv;
	}
	a->ops->send(a->ud, &b, false);
	wh_buf_free(&b);
	return 0;
}

static void on_hello(struct wh_hctrl *a, const struct wh_msg_hello *hello)
{
	uint8_t sid[32], tag[WH_PAKE_TAG_BYTES];
	struct wh_msg m;
	uint16_t version;

	if (a->ops->locked(a->ud)) {
		wh_warn("%s: refused: too many failed attempts for this join "
			"code", a->name);
		ctrl_fail(a, EACCES, "too many failed attempts: the host "
				     "refuses this join code");
		return;
	}
	version = hello->max_version < WH_PROTO_VERSION ? hello->max_version
							: WH_PROTO_VERSION;
	if (version < hello->min_version || version < WH_PROTO_MIN_VERSION) {
		wh_warn("%s: no common protocol version (%u..%u)", a->name,
			hello->min_version, hello->max_version);
		ctrl_fail(a, EPROTONOSUPPORT, "no common protocol version");
		return;
	}
	if (a->ops->exporter(a->ud, sid, sizeof(sid)) < 0 ||
	    wh_pake_start(&a->pake, WH_PAKE_HOST, a->code, sid, sizeof(sid),
			  m.u.hello_ack.pake_msg) < 0) {
		ctrl_fail(a, EIO, "key exchange failed");
		return;
	}
	if (wh_pake_finish(&a->pake, hello->pake_msg, tag) < 0) {
		count_failure(a, "invalid key exchange message");
		ctrl_fail(a, EACCES, "wrong join code");
		return;
	}
	m.hdr.type = WH_MSG_HELLO_ACK;
	m.hdr.req_id = 0;
	m.hdr.flags = 0;
	m.u.hello_ack.version = version;
	a->caps = hello->caps & a->offer & ~WH_CAP_ZSMALL;
	/* compressed GET_SMALL replies: only with both of what it extends */
	if ((a->caps & WH_CAP_ZSTD) && (a->caps & WH_CAP_SMALL))
		a->caps |= hello->caps & a->offer & WH_CAP_ZSMALL;
	m.u.hello_ack.caps = a->caps;
	memcpy(m.u.hello_ack.confirm, tag, sizeof(tag));
	if (send_ctrl(a, &m) == 0)
		a->state = WH_HCTRL_WAIT_AUTH;
}

static void on_auth(struct wh_hctrl *a, const struct wh_msg_auth *auth)
{
	struct wh_msg m;

	if (wh_pake_verify(&a->pake, auth->confirm) < 0) {
		wh_pake_wipe(&a->pake);
		count_failure(a, "wrong join code");
		ctrl_fail(a, EACCES, "wrong join code");
		return;
	}
	wh_pake_wipe(&a->pake);
	a->attempt_counted = true; /* a success is not a failure */
	a->state = WH_HCTRL_AUTHED;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_AUTH_OK;
	if (send_ctrl(a, &m) < 0)
		return;
	a->ops->authed(a->ud);
}

int wh_hctrl_input(struct wh_hctrl *a, const uint8_t *data, size_t len,
		   bool fin)
{
	struct wh_frame_hdr hdr;
	struct wh_msg msg;
	size_t flen;
	int rv;

	if (a->state == WH_HCTRL_FAILED)
		return 0;
	if (a->rx.len + len > CTRL_MAX) {
		ctrl_fail(a, EPROTO, "control frame too large");
		return 0;
	}
	if (wh_buf_append(&a->rx, data, len) < 0)
		return -ENOMEM;
	for (;;) {
		rv = wh_frame_hdr_decode(a->rx.data, a->rx.len, WH_HCTRL_MAX,
					 &hdr);
		if (rv == WH_ERR_SHORT)
			break;
		if (rv < 0) {
			ctrl_fail(a, EPROTO, "malformed control frame");
			return 0;
		}
		flen = WH_FRAME_HDR_LEN + hdr.length;
		if (a->rx.len < flen)
			break;
		rv = wh_msg_decode(a->rx.data, flen, WH_HCTRL_MAX, &msg);
		if (rv < 0) {
			ctrl_fail(a, EPROTO, "malformed control frame");
			return 0;
		}
		if (a->state == WH_HCTRL_NEW && msg.hdr.type == WH_MSG_HELLO) {
			on_hello(a, &msg.u.hello);
		} else if (a->state == WH_HCTRL_WAIT_AUTH &&
			   msg.hdr.type == WH_MSG_AUTH) {
			on_auth(a, &msg.u.auth);
		} else {
			ctrl_fail(a, EPROTO, "unexpected control message");
			return 0;
		}
		wh_buf_consume(&a->rx, flen);
		if (a->state == WH_HCTRL_FAILED)
			return 0;
	}
	if (fin && a->state != WH_HCTRL_FAILED) {
		/* the client ended its control stream: it is leaving */
		a->ops->close(a->ud, 0, "bye");
	}
	return 0;
}

void wh_hctrl_gone(struct wh_hctrl *a)
{
	if (a->state == WH_HCTRL_WAIT_AUTH && !a->attempt_counted)
		count_failure(a, "left during authentication (wrong join "
				 "code?)");
}
