/*
 * fuzz_pake.c - the PAKE's handling of what the peer sends (the 32-byte
 * message in HELLO / HELLO_ACK and the 32-byte confirmation tag in
 * HELLO_ACK / AUTH) on arbitrary bytes.  Input: u8 mode, a 32-byte
 * message, a 32-byte tag, then the session id (1..64 bytes; missing bytes
 * are zeros).  Mode bit 0 picks the side that takes the hostile message,
 * bit 1 whether the honest peer used the same join code.  Whatever the
 * bytes, finish gives 0 or WH_ERR_AUTH, a tag nobody derived from the key
 * is never accepted, a run that failed never verifies, and an honest run
 * succeeds exactly when both sides used the same code.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/wh_pake.h"
#include "common/wh_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char code[] = "7KJM-XBCD-QRST-VWYZ",
			  other[] = "7KJM-XBCD-QRST-VWY2";
	uint8_t in[1 + 32 + 32 + 64], sid[64], m_a[32], m_b[32], t_a[32],
		t_b[32];
	const uint8_t *msg = in + 1, *tg = in + 33;
	struct wh_pake a, b; /* a takes the hostile bytes, b is honest */
	enum wh_pake_role ra, rb;
	size_t sid_len;
	bool same;
	int rv;

	if (size < 1)
		return 0;
	memset(in, 0, sizeof(in));
	memcpy(in, data, size < sizeof(in) ? size : sizeof(in));
	sid_len = size > 65 ? size - 65 : 1;
	if (sid_len > sizeof(sid))
		sid_len = sizeof(sid);
	memcpy(sid, in + 65, sid_len);
	ra = (in[0] & 1) ? WH_PAKE_HOST : WH_PAKE_CLIENT;
	rb = ra == WH_PAKE_HOST ? WH_PAKE_CLIENT : WH_PAKE_HOST;
	same = !(in[0] & 2);

	/* the hostile message */
	if (wh_pake_start(&a, ra, code, sid, sid_len, m_a) != 0)
		abort();
	rv = wh_pake_finish(&a, msg, t_a);
	if (rv == 0) {
		if (wh_pake_verify(&a, tg) != WH_ERR_AUTH)
			abort(); /* a tag that does not come from the key */
	} else if (rv != WH_ERR_AUTH || wh_pake_verify(&a, tg) == 0) {
		abort();
	}
	wh_pake_wipe(&a);

	/* an honest run, then the hostile tag where the honest one goes */
	if (wh_pake_start(&a, ra, code, sid, sid_len, m_a) != 0 ||
	    wh_pake_start(&b, rb, same ? code : other, sid, sid_len, m_b) != 0 ||
	    wh_pake_finish(&a, m_b, t_a) != 0 ||
	    wh_pake_finish(&b, m_a, t_b) != 0)
		abort();
	if ((memcmp(tg, t_b, 32) == 0) != (wh_pake_verify(&a, tg) == 0))
		abort();
	wh_pake_wipe(&a);
	if (wh_pake_start(&a, ra, code, sid, sid_len, m_a) != 0 ||
	    wh_pake_finish(&b, m_a, t_b) != -EINVAL) /* b is finished */
		abort();
	wh_pake_wipe(&b);
	if (wh_pake_start(&b, rb, same ? code : other, sid, sid_len, m_b) != 0 ||
	    wh_pake_finish(&a, m_b, t_a) != 0 ||
	    wh_pake_finish(&b, m_a, t_b) != 0)
		abort();
	if ((wh_pake_verify(&a, t_b) == 0) != same ||
	    (wh_pake_verify(&b, t_a) == 0) != same)
		abort();
	wh_pake_wipe(&a);
	wh_pake_wipe(&b);
	return 0;
}
