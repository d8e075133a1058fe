/* wh_code.c - join codes: 80 random bits as 16 Crockford base32 symbols. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "auth/wh_code.h"
#include "common/wh_err.h"

static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* format - 16 symbol values (0..31) into "XXXX-XXXX-XXXX-XXXX". */
static void format(const uint8_t sym[WH_CODE_SYMBOLS],
		   char out[static WH_CODE_STRLEN + 1])
{
	size_t o = 0;

	for (size_t i = 0; i < WH_CODE_SYMBOLS; i++) {
		if (i > 0 && i % 4 == 0)
			out[o++] = '-';
		out[o++] = alphabet[sym[i]];
	}
	out[o] = '\0';
}

int wh_code_generate(char out[static WH_CODE_STRLEN + 1])
{
	uint8_t raw[10], sym[WH_CODE_SYMBOLS];
	uint64_t acc = 0;
	int bits = 0;
	size_t n = 0;

	if (sodium_init() < 0)
		return -EIO;
	randombytes_buf(raw, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++) {
		acc = (acc << 8) | raw[i];
		bits += 8;
		while (bits >= 5) {
			sym[n++] = (uint8_t)((acc >> (bits - 5)) & 31);
			bits -= 5;
		}
	}
	format(sym, out);
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(sym, sizeof(sym));
	return 0;
}

/* symbol_value - Crockford decoding with the usual foldings; -1 if not a
 * symbol. */
static int symbol_value(char c)
{
	c = (char)toupper((unsigned char)c);
	if (c == 'O')
		c = '0';
	else if (c == 'I' || c == 'L')
		c = '1';
	for (int i = 0; i < 32; i++)
		if (alphabet[i] == c)
			return i;
	return -1;
}

int wh_code_parse(const char *in, char out[static WH_CODE_STRLEN + 1])
{
	uint8_t sym[WH_CODE_SYMBOLS];
	size_t n = 0;

	if (!in)
		return WH_ERR_CODE;
	for (const char *p = in; *p; p++) {
		int v;

		if (*p == '-' || *p == ' ')
			continue;
		v = symbol_value(*p);
		if (v < 0 || n == WH_CODE_SYMBOLS)
			return WH_ERR_CODE;
		sym[n++] = (uint8_t)v;
	}
	if (n != WH_CODE_SYMBOLS)
		return WH_ERR_CODE;
	format(sym, out);
	return 0;
}
