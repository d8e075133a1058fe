/*
 * fuzz_mux.c - the TCP transport's frame decoder on arbitrary bytes: a
 * stream of frames is decoded until it stops, every frame stays inside
 * the input, and every known frame but DATA re-encodes to the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "common/wh_err.h"
#include "net/wh_mux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[WH_MUX_HDR_LEN + WH_MUX_MAX_REASON];
	size_t off = 0;

	while (off < size) {
		struct wh_mux_frame f, g;
		int n = wh_mux_decode(data + off, size - off, &f), m;

		if (n == WH_ERR_SHORT || n == WH_ERR_PROTO)
			break;
		if (n < WH_MUX_HDR_LEN || (size_t)n > size - off ||
		    (size_t)n != WH_MUX_HDR_LEN + f.length ||
		    f.length > WH_MUX_MAX_DATA)
			abort();
		if (f.known && f.type != WH_MUX_DATA) {
			m = wh_mux_encode(&f, out, sizeof(out));
			if (f.type == WH_MUX_CLOSE) {
				/* the reason is what follows the error code */
				g = f;
				g.payload = f.payload + 4;
				g.length = (uint16_t)(f.length - 4);
				m = wh_mux_encode(&g, out, sizeof(out));
			}
			if (m != n || memcmp(out, data + off, (size_t)n) != 0)
				abort();
			if (wh_mux_decode(out, (size_t)m, &g) != m)
				abort();
		}
		off += (size_t)n;
	}
	return 0;
}
