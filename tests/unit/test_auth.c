/*
 * test_auth.c - join codes and the PAKE: formats and foldings, agreement
 * with the right code, refusal with a wrong code, a different session (a
 * man in the middle), or tampered messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "auth/wh_code.h"
#include "auth/wh_pake.h"
#include "common/wh_err.h"

static void test_generate(void **state)
{
	char a[WH_CODE_STRLEN + 1], b[WH_CODE_STRLEN + 1];
	char seen[200][WH_CODE_STRLEN + 1];

	(void)state;
	for (int i = 0; i < 200; i++) {
		assert_int_equal(wh_code_generate(a), 0);
		assert_int_equal(strlen(a), WH_CODE_STRLEN);
		assert_true(a[4] == '-' && a[9] == '-' && a[14] == '-');
		assert_int_equal(wh_code_parse(a, b), 0);
		assert_string_equal(a, b);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(a, seen[j]);
		memcpy(seen[i], a, sizeof(a));
	}
}

static void test_parse(void **state)
{
	static const struct {
		const char *in, *out;
	} ok[] = {
		{ "7KJM-XBCD-QRST-VWYZ", "7KJM-XBCD-QRST-VWYZ" },
		{ "7kjmxbcdqrstvwyz", "7KJM-XBCD-QRST-VWYZ" },
		{ " 7kjm xbcd-qrst vwyz ", "7KJM-XBCD-QRST-VWYZ" },
		{ "OoIi-LlAB-CDEF-GHJK", "0011-11AB-CDEF-GHJK" },
	};
	static const char *bad[] = {
		"", "7KJM", "7KJM-XBCD-QRST-VWY", "7KJM-XBCD-QRST-VWYZ0",
		"7KJM-XBCD-QRST-VWYU", "7KJM-XBCD-QRST-VWY!", "7KJM_XBCD_QRST_VWYZ",
		"7KJM-XBCD-QRST-VWÿZ",
	};
	char out[WH_CODE_STRLEN + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(wh_code_parse(ok[i].in, out), 0);
		assert_string_equal(out, ok[i].out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(wh_code_parse(bad[i], out), WH_ERR_CODE);
}

/* run - a full exchange; returns the client's and host's verify results */
static void run(const char *ccode, const char *hcode, const uint8_t *csid,
		const uint8_t *hsid, int *cres, int *hres, bool tamper_tag)
{
	struct wh_pake c, h;
	uint8_t cmsg[32], hmsg[32], ctag[32], htag[32];

	assert_int_equal(wh_pake_start(&c, WH_PAKE_CLIENT, ccode, csid, 32,
				       cmsg), 0);
	assert_int_equal(wh_pake_start(&h, WH_PAKE_HOST, hcode, hsid, 32, hmsg),
			 0);
	assert_int_equal(wh_pake_finish(&h, cmsg, htag), 0);
	assert_int_equal(wh_pake_finish(&c, hmsg, ctag), 0);
	if (tamper_tag)
		htag[3] ^= 1;
	*cres = wh_pake_verify(&c, htag);
	*hres = wh_pake_verify(&h, ctag);
	if (*cres == 0 && *hres == 0)
		assert_memory_equal(c.key, h.key, 32);
	wh_pake_wipe(&c);
	wh_pake_wipe(&h);
}

static void test_pake(void **state)
{
	uint8_t sid[32], sid2[32];
	int cr, hr;

	(void)state;
	memset(sid, 1, sizeof(sid));
	memset(sid2, 2, sizeof(sid2));
	run("7KJM-XBCD-QRST-VWYZ", "7KJM-XBCD-QRST-VWYZ", sid, sid, &cr, &hr,
	    false);
	assert_int_equal(cr, 0);
	assert_int_equal(hr, 0);
	/* wrong code */
	run("7KJM-XBCD-QRST-VWYZ", "7KJM-XBCD-QRST-VWY0", sid, sid, &cr, &hr,
	    false);
	assert_int_equal(cr, WH_ERR_AUTH);
	assert_int_equal(hr, WH_ERR_AUTH);
	/* right code, two different TLS sessions: a man in the middle */
	run("7KJM-XBCD-QRST-VWYZ", "7KJM-XBCD-QRST-VWYZ", sid, sid2, &cr, &hr,
	    false);
	assert_int_equal(cr, WH_ERR_AUTH);
	assert_int_equal(hr, WH_ERR_AUTH);
	/* a tampered tag */
	run("7KJM-XBCD-QRST-VWYZ", "7KJM-XBCD-QRST-VWYZ", sid, sid, &cr, &hr,
	    true);
	assert_int_equal(cr, WH_ERR_AUTH);
}

static void test_pake_bad_inputs(void **state)
{
	struct wh_pake p, q;
	uint8_t sid[32] = { 0 }, msg[32], msg2[32], tag[32], zero[32] = { 0 };

	(void)state;
	/* out of order */
	memset(&p, 0, sizeof(p));
	assert_int_equal(wh_pake_finish(&p, zero, tag), -EINVAL);
	assert_int_equal(wh_pake_verify(&p, tag), -EINVAL);
	assert_int_equal(wh_pake_start(&p, WH_PAKE_CLIENT, "C", sid, 0, msg),
			 -EINVAL);
	/* the identity element and a non-canonical encoding are refused */
	assert_int_equal(wh_pake_start(&p, WH_PAKE_CLIENT, "CODE", sid, 32,
				       msg), 0);
	assert_int_equal(wh_pake_finish(&p, zero, tag), WH_ERR_AUTH);
	memset(msg2, 0xff, sizeof(msg2));
	assert_int_equal(wh_pake_finish(&p, msg2, tag), WH_ERR_AUTH);
	/* fresh randomness: the same inputs give different messages */
	assert_int_equal(wh_pake_start(&q, WH_PAKE_CLIENT, "CODE", sid, 32,
				       msg2), 0);
	assert_memory_not_equal(msg, msg2, 32);
	wh_pake_wipe(&p);
	wh_pake_wipe(&q);
	for (size_t i = 0; i < sizeof(p); i++)
		assert_int_equal(((uint8_t *)&p)[i], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_pake),
		cmocka_unit_test(test_pake_bad_inputs),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
