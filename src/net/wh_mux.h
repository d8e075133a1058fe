/*
 * wh_mux.h - the stream multiplexing frames of the TLS-over-TCP transport
 * (docs/PROTOCOL.md, "TCP fallback").  Pure encoding and decoding: no I/O,
 * no state.  wh_tls_tcp.c is the only user on the wire.
 *
 * Every frame: u8 type, u8 flags, u16 length, u32 stream, then |length|
 * payload bytes (big-endian).  Decoding checks each frame against its
 * type's layout and the hard limits below; a frame that breaks them is a
 * protocol error that closes the connection.  Unknown types are decoded
 * (so they can be skipped) and reported as such.
 */
#ifndef WH_MUX_H
#define WH_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WH_MUX_HDR_LEN 8
#define WH_MUX_MAX_DATA 16384   /* payload of one DATA frame at most */
#define WH_MUX_MAX_REASON 128   /* bytes of a CLOSE reason at most */
#define WH_MUX_MAX_FRAME (WH_MUX_HDR_LEN + WH_MUX_MAX_DATA)

enum wh_mux_type {
	WH_MUX_SETTINGS = 1, /* stream 0: u32 max_streams, u32 stream_window,
			      * u32 conn_window */
	WH_MUX_DATA = 2,     /* stream > 0: bytes; flag FIN */
	WH_MUX_RESET = 3,    /* stream > 0: u32 app_err */
	WH_MUX_CREDIT = 4,   /* stream 0 (connection) or > 0: u32 increment */
	WH_MUX_STREAMS = 5,  /* stream 0: u32 highest stream id allowed */
	WH_MUX_PING = 6,     /* stream 0: 8 opaque bytes; flag ACK answers */
	WH_MUX_CLOSE = 7,    /* stream 0: u32 app_err, reason */
};

#define WH_MUX_FLAG_FIN 0x01 /* DATA: the sender's last bytes */
#define WH_MUX_FLAG_ACK 0x01 /* PING: this is the answer */

struct wh_mux_frame {
	uint8_t type;
	uint8_t flags;
	uint32_t stream;
	uint16_t length;
	const uint8_t *payload; /* into the decoded buffer */
	/* decoded fields, per type */
	uint32_t max_streams, stream_window, conn_window; /* SETTINGS */
	uint32_t value; /* RESET/CLOSE app_err, CREDIT increment, STREAMS */
	uint8_t ping[8];
	bool known; /* type is one of the above */
};

/*
 * wh_mux_decode - decode the frame at the start of |buf|.  Returns the
 * bytes it takes (> 0), WH_ERR_SHORT if |len| is not enough yet, or
 * WH_ERR_PROTO (bad layout, a limit exceeded, a stream id not allowed for
 * the type, an unknown flag, a zero credit increment).
 */
int wh_mux_decode(const uint8_t *buf, size_t len, struct wh_mux_frame *f);

/* wh_mux_put_hdr - write a frame header to |out| (8 bytes). */
void wh_mux_put_hdr(uint8_t *out, uint8_t type, uint8_t flags,
		    uint16_t length, uint32_t stream);

/*
 * wh_mux_encode - encode a frame without bulk data (every type but DATA;
 * DATA is a header from wh_mux_put_hdr followed by its bytes) into |out|
 * of |cap| bytes.  Uses the fields of |f| its type needs (a CLOSE reason
 * is |f->payload|, |f->length| bytes, cut at WH_MUX_MAX_REASON - 4).
 * Returns the bytes written, or WH_ERR_TOOBIG / WH_ERR_PROTO.
 */
int wh_mux_encode(const struct wh_mux_frame *f, uint8_t *out, size_t cap);

#endif /* WH_MUX_H */
