/*
 * wh_err.h - the one error convention of wormhole.
 *
 * Every function that can fail returns 0 (or a non-negative count) on
 * success and a negative value on failure: either -errno (-ENOENT, -EIO...)
 * for system errors, or one of the WH_ERR_* codes below for errors that have
 * no errno.  wh_strerror() turns either kind into a message.
 */
#ifndef WH_ERR_H
#define WH_ERR_H

#include <stdbool.h>

#define WH_ERR_PROTO     -1001 /* malformed frame or message */
#define WH_ERR_SHORT     -1002 /* more bytes are needed to decode */
#define WH_ERR_TOOBIG    -1003 /* a length exceeds a hard limit */
#define WH_ERR_VERSION   -1004 /* no common protocol version */
#define WH_ERR_AUTH      -1005 /* wrong join code (key confirmation failed) */
#define WH_ERR_LOCKED    -1006 /* host refuses: too many failed attempts */
#define WH_ERR_CODE      -1007 /* a join code is malformed */
#define WH_ERR_TIMEOUT   -1008 /* the peer did not answer in time */
#define WH_ERR_CLOSED    -1009 /* the connection is gone */
#define WH_ERR_TLS       -1010 /* TLS or QUIC handshake failure */
#define WH_ERR_ADDR      -1011 /* an address could not be parsed/resolved */
#define WH_ERR_PATH      -1012 /* a path is not a safe relative path */
#define WH_ERR_NOMEM     -1013 /* allocation failed */

/* wh_strerror - message for |err| (negative errno or WH_ERR_*). Never NULL. */
const char *wh_strerror(int err);

#endif /* WH_ERR_H */
