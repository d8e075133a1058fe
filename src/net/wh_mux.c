/* wh_mux.c - encode and decode the TCP transport's multiplexing frames. */
#include <string.h>

#include "common/wh_err.h"
#include "net/wh_mux.h"

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void wh_mux_put_hdr(uint8_t *out, uint8_t type, uint8_t flags,
		    uint16_t length, uint32_t stream)
{
	out[0] = type;
	out[1] = flags;
	out[2] = (uint8_t)(length >> 8);
	out[3] = (uint8_t)length;
	put32(out + 4, stream);
}

int wh_mux_decode(const uint8_t *buf, size_t len, struct wh_mux_frame *f)
{
	const uint8_t *p;
	bool conn_level;

	if (len < WH_MUX_HDR_LEN)
		return WH_ERR_SHORT;
	memset(f, 0, sizeof(*f));
	f->type = buf[0];
	f->flags = buf[1];
	f->length = (uint16_t)(buf[2] << 8 | buf[3]);
	f->stream = get32(buf + 4);
	/* the limit is checked before waiting for the payload */
	if (f->length > WH_MUX_MAX_DATA)
		return WH_ERR_PROTO;
	if (len < WH_MUX_HDR_LEN + (size_t)f->length)
		return WH_ERR_SHORT;
	p = f->payload = buf + WH_MUX_HDR_LEN;
	conn_level = f->stream == 0;
	f->known = true;
	switch (f->type) {
	case WH_MUX_SETTINGS:
		if (!conn_level || f->flags || f->length != 12)
			return WH_ERR_PROTO;
		f->max_streams = get32(p);
		f->stream_window = get32(p + 4);
		f->conn_window = get32(p + 8);
		break;
	case WH_MUX_DATA:
		if (conn_level || (f->flags & ~WH_MUX_FLAG_FIN))
			return WH_ERR_PROTO;
		break;
	case WH_MUX_RESET:
		if (conn_level || f->flags || f->length != 4)
			return WH_ERR_PROTO;
		f->value = get32(p);
		break;
	case WH_MUX_CREDIT:
		if (f->flags || f->length != 4)
			return WH_ERR_PROTO;
		f->value = get32(p);
		if (f->value == 0)
			return WH_ERR_PROTO;
		break;
	case WH_MUX_STREAMS:
		if (!conn_level || f->flags || f->length != 4)
			return WH_ERR_PROTO;
		f->value = get32(p);
		break;
	case WH_MUX_PING:
		if (!conn_level || (f->flags & ~WH_MUX_FLAG_ACK) ||
		    f->length != 8)
			return WH_ERR_PROTO;
		memcpy(f->ping, p, 8);
		break;
	case WH_MUX_CLOSE:
		if (!conn_level || f->flags || f->length < 4 ||
		    f->length > WH_MUX_MAX_REASON)
			return WH_ERR_PROTO;
		f->value = get32(p);
		break;
	default:
		f->known = false;
		break;
	}
	return (int)(WH_MUX_HDR_LEN + f->length);
}

int wh_mux_encode(const struct wh_mux_frame *f, uint8_t *out, size_t cap)
{
	uint8_t body[WH_MUX_MAX_REASON];
	size_t n = 0;

	switch (f->type) {
	case WH_MUX_SETTINGS:
		put32(body, f->max_streams);
		put32(body + 4, f->stream_window);
		put32(body + 8, f->conn_window);
		n = 12;
		break;
	case WH_MUX_RESET:
	case WH_MUX_CREDIT:
	case WH_MUX_STREAMS:
		if ((f->type == WH_MUX_CREDIT && f->value == 0) ||
		    (f->type == WH_MUX_RESET && f->stream == 0))
			return WH_ERR_PROTO;
		put32(body, f->value);
		n = 4;
		break;
	case WH_MUX_PING:
		memcpy(body, f->ping, 8);
		n = 8;
		break;
	case WH_MUX_CLOSE:
		put32(body, f->value);
		n = f->length;
		if (n > WH_MUX_MAX_REASON - 4)
			n = WH_MUX_MAX_REASON - 4;
		if (n)
			memcpy(body + 4, f->payload, n);
		n += 4;
		break;
	default:
		return WH_ERR_PROTO;
	}
	if (cap < WH_MUX_HDR_LEN + n)
		return WH_ERR_TOOBIG;
	wh_mux_put_hdr(out, f->type, f->flags, (uint16_t)n, f->stream);
	memcpy(out + WH_MUX_HDR_LEN, body, n);
	return (int)(WH_MUX_HDR_LEN + n);
}
