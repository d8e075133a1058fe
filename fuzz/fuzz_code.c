/* fuzz_code.c - join code parsing: whatever parses is canonical. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/wh_code.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[256], out[WH_CODE_STRLEN + 1], again[WH_CODE_STRLEN + 1];

	if (size >= sizeof(in))
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	if (wh_code_parse(in, out) != 0)
		return 0;
	if (strlen(out) != WH_CODE_STRLEN || wh_code_parse(out, again) != 0 ||
	    strcmp(out, again) != 0)
		abort();
	return 0;
}
