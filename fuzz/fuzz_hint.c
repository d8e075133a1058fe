/*
 * fuzz_hint.c - hashing a file with the manifest of another version
 * (wh_chunk_fd_hint) against hashing it afresh (wh_chunk_fd): the chunks
 * must be the same, whatever the change between the versions and whatever
 * the old manifest says.  The input describes the versions: bytes 0-7 seed
 * the old version's bytes, byte 8 its size (in 256 KiB steps up to 3 MiB,
 * or, one time in eight, 16 MiB more, big enough to be read through a
 * mapping and checked on two threads), then records of four bytes, each
 * an edit of the new version (overwrite, insert, remove, cut off, append,
 * copy a stretch from elsewhere) or of the old manifest (an entry
 * dropped, its length or hash changed, two swapped, the list cut short),
 * by their first byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STEP (256u * 1024)
#define MAX_SIZE ((16u << 20) + 12 * STEP)
#define MAX_EDIT (MAX_SIZE + 8u * STEP)

static int add(void *ud, const struct wh_chunk *c)
{
	struct wh_manifest *m = ud;

	if (m->n == m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		struct wh_chunk *nc = realloc(m->chunks, ncap * sizeof(*nc));

		if (!nc)
			abort();
		m->chunks = nc;
		m->cap = ncap;
	}
	m->chunks[m->n++] = *c;
	return 0;
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		memcpy(p + i, &seed, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)(seed >> (8 * (i % 8)));
}

/* chunks - the manifest of |n| bytes at |p| as a file, with |old| as the
 * hint if not NULL */
static void chunks(const uint8_t *p, size_t n, const struct wh_manifest *old,
		   struct wh_manifest *out)
{
	int fd = memfd_create("fuzz_hint", MFD_CLOEXEC);
	uint64_t got = 0, kept = 0;
	int rv;

	if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n))
		abort();
	out->n = 0;
	rv = old ? wh_chunk_fd_hint(fd, UINT64_MAX, old, add, out, &got, &kept)
		 : wh_chunk_fd(fd, UINT64_MAX, add, out, &got);
	if (rv != 0 || got != n || kept > n)
		abort();
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *a, *b;
	struct wh_manifest old = { 0 }, fresh = { 0 }, hinted = { 0 };
	uint64_t seed = 0;
	size_t n, len;

	if (size < 9)
		return 0;
	if (!a) {
		a = malloc(MAX_EDIT);
		b = malloc(MAX_EDIT);
		if (!a || !b)
			abort();
	}
	memcpy(&seed, data, 8);
	n = (size_t)(data[8] % 13) * STEP + data[8] * 97u;
	if ((data[8] & 0xe0) == 0xe0)
		n += 16u << 20;
	fill(a, n, seed);
	chunks(a, n, NULL, &old);
	memcpy(b, a, n);
	len = n;
	for (size_t i = 9; i + 4 <= size; i += 4) {
		const uint8_t *r = data + i;
		size_t at = len ? ((size_t)r[1] << 8 | r[2]) * (len / 65536 + 1) % (len + 1) : 0;
		size_t k = (size_t)r[3] * 257 + 1;

		switch (r[0] % 10) {
		case 0: /* overwrite */
			if (at + k > len)
				k = len - at;
			fill(b + at, k, seed + i);
			break;
		case 1: /* insert */
			if (len + k > MAX_EDIT)
				break;
			memmove(b + at + k, b + at, len - at);
			fill(b + at, k, seed + i);
			len += k;
			break;
		case 2: /* remove */
			if (at + k > len)
				k = len - at;
			memmove(b + at, b + at + k, len - at - k);
			len -= k;
			break;
		case 3: /* cut off */
			len = at;
			break;
		case 4: /* a stretch from elsewhere in the old version */
			if (n && at + k <= len) {
				size_t from = (size_t)r[3] * 65537 % n;

				if (from + k <= n)
					memcpy(b + at, a + from, k);
			}
			break;
		case 5: /* an entry dropped */
			if (old.n) {
				size_t e = at % old.n;

				memmove(old.chunks + e, old.chunks + e + 1,
					(old.n - e - 1) * sizeof(*old.chunks));
				old.n--;
			}
			break;
		case 6: /* a length changed */
			if (old.n)
				old.chunks[at % old.n].length =
					(uint32_t)((size_t)r[3] << (r[1] % 24));
			break;
		case 7: /* a hash changed */
			if (old.n)
				old.chunks[at % old.n].hash[r[3] % 32] ^= 1;
			break;
		case 8: /* two swapped */
			if (old.n > 1) {
				struct wh_chunk t = old.chunks[at % old.n];

				old.chunks[at % old.n] = old.chunks[r[3] % old.n];
				old.chunks[r[3] % old.n] = t;
			}
			break;
		case 9: /* the list cut short */
			old.n = old.n ? at % old.n : 0;
			break;
		}
	}
	chunks(b, len, NULL, &fresh);
	chunks(b, len, &old, &hinted);
	if (fresh.n != hinted.n)
		abort();
	for (size_t i = 0; i < fresh.n; i++)
		if (fresh.chunks[i].offset != hinted.chunks[i].offset ||
		    fresh.chunks[i].length != hinted.chunks[i].length ||
		    memcmp(fresh.chunks[i].hash, hinted.chunks[i].hash,
			   WH_HASH_LEN))
			abort();
	free(old.chunks);
	free(fresh.chunks);
	free(hinted.chunks);
	return 0;
}
