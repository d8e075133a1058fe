/* wh_err.c - messages for negative errno and WH_ERR_* codes. */
#include <string.h>

#include "common/wh_err.h"

const char *wh_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case WH_ERR_PROTO:
		return "protocol error (malformed message)";
	case WH_ERR_SHORT:
		return "message truncated";
	case WH_ERR_TOOBIG:
		return "message too large";
	case WH_ERR_VERSION:
		return "no common protocol version with the peer";
	case WH_ERR_AUTH:
		return "wrong join code";
	case WH_ERR_LOCKED:
		return "the host refuses this code: too many failed attempts";
	case WH_ERR_CODE:
		return "malformed join code";
	case WH_ERR_TIMEOUT:
		return "the peer did not answer in time";
	case WH_ERR_CLOSED:
		return "connection closed";
	case WH_ERR_TLS:
		return "secure handshake failed";
	case WH_ERR_ADDR:
		return "bad address";
	case WH_ERR_PATH:
		return "unsafe path";
	case WH_ERR_NOMEM:
		return "out of memory";
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}
