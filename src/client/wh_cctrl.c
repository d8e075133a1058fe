/*
 * wh_cctrl.c - the client's control-stream state machine (wh_cctrl.h);
 * was wh_session.c's ctrl_data/ctrl_msg/ctrl_error, moved out so that it
 * can be driven without a connection.
 */
#include <errno.h>
#include <string.h>

#include "client/wh_cctrl.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "proto/wh_proto.h"

void wh_cctrl_init(struct wh_cctrl *c, const struct wh_cctrl_ops *ops,
		   void *ud)
{
	memset(c, 0, sizeof(*c));
	c->ops = ops;
	c->ud = ud;
	wh_buf_init(&c->rx);
}

void wh_cctrl_reset(struct wh_cctrl *c)
{
	wh_buf_reset(&c->rx);
	wh_pake_wipe(&c->pake);
	c->done = false;
}

void wh_cctrl_free(struct wh_cctrl *c)
{
	wh_buf_free(&c->rx);
	wh_pake_wipe(&c->pake);
}

static int send_msg(struct wh_cctrl *c, const struct wh_msg *m)
{
	struct wh_buf b;
	int rv;

	wh_buf_init(&b);
	rv = wh_msg_append(&b, m);
	if (rv < 0) {
		wh_buf_free(&b);
		return rv;
	}
	rv = c->ops->send(c->ud, &b);
	wh_buf_free(&b);
	return rv;
}

int wh_cctrl_hello(struct wh_cctrl *c, const char *code, const uint8_t *sid,
		   size_t sid_len, uint64_t caps)
{
	struct wh_msg m;
	int rv;

	wh_cctrl_reset(c);
	memset(&m, 0, sizeof(m));
	rv = wh_pake_start(&c->pake, WH_PAKE_CLIENT, code, sid, sid_len,
			   m.u.hello.pake_msg);
	if (rv < 0)
		return rv;
	m.hdr.type = WH_MSG_HELLO;
	m.u.hello.min_version = WH_PROTO_MIN_VERSION;
	m.u.hello.max_version = WH_PROTO_VERSION;
	m.u.hello.caps = caps;
	c->offered = caps;
	return send_msg(c, &m);
}

static void fail(struct wh_cctrl *c, int err, const char *msg,
		 uint64_t app_err, const char *reason)
{
	c->done = true;
	c->ops->fail(c->ud, err, msg);
	c->ops->close(c->ud, app_err, reason);
}

static void close_conn(struct wh_cctrl *c, uint64_t app_err,
		       const char *reason)
{
	c->done = true;
	c->ops->close(c->ud, app_err, reason);
}

static void ctrl_error(struct wh_cctrl *c, const struct wh_msg_error *e)
{
	char msg[WH_MAX_ERRMSG + 1];
	size_t n = e->message.len;
	int err;

	if (n > WH_MAX_ERRMSG)
		n = WH_MAX_ERRMSG;
	memcpy(msg, e->message.p, n);
	msg[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)msg[i] < 0x20)
			msg[i] = '?';
	if (strstr(msg, "too many"))
		err = WH_ERR_LOCKED;
	else if (e->err == EACCES)
		err = WH_ERR_AUTH;
	else if (e->err == EPROTONOSUPPORT)
		err = WH_ERR_VERSION;
	else
		err = WH_ERR_PROTO;
	wh_err("the host refused us: %s", msg[0] ? msg : wh_strerror(err));
	fail(c, err, msg[0] ? msg : wh_strerror(err), 0, "refused");
}

static void ctrl_msg(struct wh_cctrl *c, const struct wh_msg *m)
{
	enum wh_cctrl_phase st = c->ops->phase(c->ud);
	struct wh_msg out;

	if (m->hdr.type == WH_MSG_ERROR) {
		ctrl_error(c, &m->u.error);
		return;
	}
	memset(&out, 0, sizeof(out));
	if (st == WH_CCTRL_WAIT_ACK && m->hdr.type == WH_MSG_HELLO_ACK) {
		if (m->u.hello_ack.version < WH_PROTO_MIN_VERSION ||
		    m->u.hello_ack.version > WH_PROTO_VERSION) {
			fail(c, WH_ERR_VERSION,
			     "the host speaks another protocol version", 1,
			     "version");
			return;
		}
		if (wh_pake_finish(&c->pake, m->u.hello_ack.pake_msg,
				   out.u.auth.confirm) < 0 ||
		    wh_pake_verify(&c->pake, m->u.hello_ack.confirm) < 0) {
			wh_pake_wipe(&c->pake);
			fail(c, WH_ERR_AUTH,
			     "wrong join code (the host could not confirm it)",
			     2, "wrong join code");
			return;
		}
		wh_pake_wipe(&c->pake);
		out.hdr.type = WH_MSG_AUTH;
		if (send_msg(c, &out) < 0) {
			close_conn(c, 1, "internal error");
			return;
		}
		{
			/* never more than was offered (a hostile or broken
			 * host's claim of, say, ZSTD to a client that turned
			 * compression off), and ZSMALL only with both of what
			 * it extends, as the host decides it */
			uint64_t caps = m->u.hello_ack.caps & c->offered;

			if (!(caps & WH_CAP_ZSTD) || !(caps & WH_CAP_SMALL))
				caps &= ~WH_CAP_ZSMALL;
			c->ops->authing(c->ud, caps);
		}
		return;
	}
	if (st == WH_CCTRL_WAIT_OK && m->hdr.type == WH_MSG_AUTH_OK) {
		c->ops->ready(c->ud);
		return;
	}
	if (st == WH_CCTRL_READY && m->hdr.type == WH_MSG_INVAL) {
		c->ops->inval(c->ud, m->u.inval.dir.p, m->u.inval.dir.len,
			      m->u.inval.name.p, m->u.inval.name.len);
		return;
	}
	wh_warn("unexpected %s from the host", wh_msg_type_name(m->hdr.type));
	close_conn(c, 1, "unexpected control message");
}

int wh_cctrl_input(struct wh_cctrl *c, const uint8_t *data, size_t len)
{
	struct wh_frame_hdr hdr;
	struct wh_msg m;
	size_t flen;
	int rv;

	if (c->done)
		return 0;
	if (c->rx.len + len > WH_CCTRL_MAX)
		return WH_ERR_TOOBIG;
	if (wh_buf_append(&c->rx, data, len) < 0)
		return -ENOMEM;
	for (;;) {
		rv = wh_frame_hdr_decode(c->rx.data, c->rx.len, WH_CCTRL_MAX,
					 &hdr);
		if (rv == WH_ERR_SHORT)
			return 0;
		if (rv < 0)
			return rv;
		flen = WH_FRAME_HDR_LEN + hdr.length;
		if (c->rx.len < flen)
			return 0;
		rv = wh_msg_decode(c->rx.data, flen, WH_CCTRL_MAX, &m);
		if (rv < 0)
			return rv;
		ctrl_msg(c, &m);
		wh_buf_consume(&c->rx, flen);
		if (c->done)
			return 0;
	}
}
