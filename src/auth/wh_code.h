/*
 * wh_code.h - join codes.
 *
 * A join code is 16 symbols of Crockford base32 (80 bits) shown as four
 * dash-separated groups: "7KJM-XBCD-QRST-VWYZ".  Parsing is case-insensitive,
 * dashes (and spaces) are optional, and O->0, I/L->1 are folded.  U is not
 * in the alphabet.  The canonical form (upper case, dashes) is what the
 * PAKE is fed, so every spelling of a code authenticates the same way.
 */
#ifndef WH_CODE_H
#define WH_CODE_H

#include <stddef.h>

#define WH_CODE_SYMBOLS 16
#define WH_CODE_STRLEN 19 /* 16 symbols + 3 dashes, without the NUL */

/* wh_code_generate - a fresh code from the CSPRNG (libsodium).
 * |out| receives the canonical form, NUL-terminated. Returns 0. */
int wh_code_generate(char out[static WH_CODE_STRLEN + 1]);

/* wh_code_parse - normalize |in| into canonical form in |out|.
 * Returns 0 or WH_ERR_CODE if |in| is not 16 valid symbols. */
int wh_code_parse(const char *in, char out[static WH_CODE_STRLEN + 1]);

#endif /* WH_CODE_H */
