/*
 * fuzz_sig.c - signal datagrams: whatever decodes re-encodes to the same
 * bytes, and the server state machine takes any datagram from any address
 * without crashing or answering a malformed one, and so does the host's
 * rendezvous machine (as if the datagram came from the signal server).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wh_sig.h"
#include "signal/wh_rendezvous.h"
#include "signal/wh_sigsrv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int discard(void *ud, const struct sockaddr *to, socklen_t tolen,
		   const void *data, size_t len)
{
	struct wh_sig_msg m;

	/* whatever the host machine sends is well formed */
	if (wh_sig_decode(data, len, &m) != 0)
		abort();
	(void)ud;
	(void)to;
	(void)tolen;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct wh_sigsrv *srv;
	static struct wh_rdv_host *host;
	static struct sockaddr_in sig;
	static uint64_t now = 1700000000000ULL;
	uint8_t again[WH_SIG_MAX_DGRAM];
	struct wh_sig_msg m;
	struct wh_sigsrv_out out;
	struct sockaddr_in from;
	int n, rv;

	if (!srv) {
		struct wh_sigsrv_opts o;

		wh_sigsrv_opts_default(&o);
		o.max_rooms = 64;
		o.max_sources = 64;
		if (wh_sigsrv_new(&o, NULL, &srv) != 0)
			abort();
		sig.sin_family = AF_INET;
		sig.sin_port = htons(7700);
		sig.sin_addr.s_addr = htonl(0x7f000001);
		if (wh_rdv_host_new("7KJM-XBCD-QRST-VWYZ", (struct sockaddr *)&sig,
				    sizeof(sig), NULL, 0, discard, NULL,
				    &host) != 0)
			abort();
	}
	if (wh_sig_decode(data, size, &m) == 0) {
		n = wh_sig_encode(&m, again, sizeof(again));
		if (n < 0 || (size_t)n != size || memcmp(again, data, size))
			abort();
	}
	memset(&from, 0, sizeof(from));
	from.sin_family = AF_INET;
	from.sin_port = htons((uint16_t)(1 + (size & 0xff)));
	from.sin_addr.s_addr = htonl(0x0a000000u | (size & 0x3));
	now += 37;
	rv = wh_sigsrv_handle(srv, now, (struct sockaddr *)&from,
			      sizeof(from), data, size, &out);
	if (rv < 0 && rv != -EAGAIN && out.n != 0)
		abort();
	for (unsigned i = 0; i < out.n; i++)
		if (wh_sig_decode(out.d[i].data, out.d[i].len, &m) != 0)
			abort();
	if (now % 100 == 0)
		wh_sigsrv_expire(srv, now);
	wh_rdv_host_input(host, now * 1000000ULL, data, size,
			  (struct sockaddr *)&sig, sizeof(sig));
	wh_rdv_host_tick(host, now * 1000000ULL);
	return 0;
}
