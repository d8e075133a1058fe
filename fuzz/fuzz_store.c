/* fuzz_store.c - the chunk store's on-disk index: a log (chunks.log) and
 * name files as a crash, a full disk or another program may leave them.
 * Whatever they hold, the store opens, answers, evicts and closes without
 * a crash or a leak, and hands out no byte it has not verified. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "store/wh_store.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

/* the store's directory goes when the fuzzer ends */
static void rm_dir(void)
{
	fuzz_rm_tree(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t log[64 * 128];
	uint8_t out[4096], h[WH_HASH_LEN];
	struct wh_store *s;
	char p[200], *path, *alt;
	uint64_t ident[4];
	size_t n;

	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/wh-fuzz-store-%d",
			 (int)getpid());
		mkdir(dir, 0700);
		atexit(rm_dir);
	}
	if (size < 1)
		return 0;
	if (data[0] & 1) { /* a name file: its 16-byte name, then its bytes */
		if (size < 17)
			return 0;
		if (wh_store_parse_name(data + 17, size - 17, data + 1, &path,
					&alt, ident) == 0) {
			if (path[0] != '/' || (alt[0] && alt[0] != '/'))
				abort();
			free(path);
			free(alt);
		}
		return 0;
	}
	/* a log: as is, or with each record's checksum made right (so what
	 * follows the checksum is reached) */
	n = size - 1 < sizeof(log) ? size - 1 : sizeof(log);
	memcpy(log, data + 1, n);
	if (data[0] & 2)
		for (size_t off = 0; off + 128 <= n; off += 128)
			wh_store_seal_record(log + off);
	snprintf(p, sizeof(p), "%s/chunks.log", dir);
	fuzz_put_file(p, log, n);
	if (wh_store_open(dir, (uint64_t)(data[0] >> 2) * 4096, &s) != 0)
		abort();
	/* ask for what the records name, at what lengths they say */
	for (size_t off = 0; off + 128 <= n; off += 128) {
		uint32_t len;

		memcpy(&len, log + off + 8, 4);
		if (len > sizeof(out))
			len = sizeof(out);
		if (len == 0)
			continue;
		(void)wh_store_has(s, log + off + 16, len);
		if (wh_store_get(s, log + off + 16, out, len) == 0) {
			wh_blake3(out, len, h);
			if (memcmp(h, log + off + 16, WH_HASH_LEN) != 0)
				abort(); /* an unverified chunk */
		}
	}
	memset(out, 0x5a, 1000);
	wh_blake3(out, 1000, h);
	/* the newest entry outlives an eviction while open (down to 15/16
	 * of the limit) when it fits in that alone */
	if (wh_store_put(s, h, out, 1000) != 0 ||
	    (wh_store_get(s, h, out, 1000) != 0 && data[0] >> 2 >= 2))
		abort();
	/* references into files of its own, past the limit (the name files
	 * counted, evicted while open): what comes back is verified */
	for (int i = 0; i < 4; i++) {
		struct stat st;

		snprintf(p, sizeof(p), "%s/dest%d", dir, i);
		memset(out, 0x20 + i, 1000);
		fuzz_put_file(p, out, 1000);
		if (stat(p, &st) != 0)
			abort();
		wh_blake3(out, 1000, h);
		if (wh_store_put_ref(s, h, 1000, p, NULL, &st, 0) != 0)
			abort();
		memset(out, 0, 1000);
		if (wh_store_get(s, h, out, 1000) == 0 &&
		    (out[0] != 0x20 + i || out[999] != 0x20 + i))
			abort();
	}
	wh_store_close(s);
	return 0;
}
