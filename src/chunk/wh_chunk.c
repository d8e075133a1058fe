/*
 * wh_chunk.c - FastCDC-style chunking, BLAKE3 hashing, manifests.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blake3.h"

#include "chunk/wh_chunk.h"
#include "io/wh_io.h"

/* Masks for normalized chunking around a 1 MiB average: 22 one-bits
 * (rarer cuts) before the average, 18 after (likelier cuts).  The bits are
 * spread over the word, as FastCDC suggests, so that the cut depends on a
 * window of about 64 bytes, not only the last few. */
#define MASK_S 0x00002aa5552aa555ULL /* 22 bits */
#define MASK_L 0x0000252525252525ULL /* 18 bits */

static uint64_t gear[256];
static bool gear_ready;

/* splitmix64: a fixed, portable stream for the gear table */
static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void gear_init(void)
{
	uint64_t seed = 0x776f726d686f6c65ULL; /* "wormhole" */

	if (gear_ready)
		return;
	for (int i = 0; i < 256; i++)
		gear[i] = splitmix64(&seed);
	__atomic_store_n(&gear_ready, true, __ATOMIC_RELEASE);
}

size_t wh_cdc_cut_ref(const uint8_t *data, size_t len, bool eof)
{
	size_t i, normal, end;
	uint64_t h = 0;

	if (len == 0)
		return 0;
	if (!__atomic_load_n(&gear_ready, __ATOMIC_ACQUIRE))
		gear_init();
	if (len <= WH_CDC_MIN)
		return eof ? len : 0;
	end = len < WH_CDC_MAX ? len : WH_CDC_MAX;
	normal = end < WH_CDC_AVG ? end : WH_CDC_AVG;
	/* the first WH_CDC_MIN bytes can never end a chunk: skip them, but
	 * warm the hash on the 64 bytes before the first candidate */
	i = WH_CDC_MIN - 64;
	for (; i < WH_CDC_MIN; i++)
		h = (h << 1) + gear[data[i]];
	for (; i < normal; i++) {
		h = (h << 1) + gear[data[i]];
		if (!(h & MASK_S))
			return i + 1;
	}
	for (; i < end; i++) {
		h = (h << 1) + gear[data[i]];
		if (!(h & MASK_L))
			return i + 1;
	}
	if (end == WH_CDC_MAX || eof)
		return end;
	return 0;
}

/*
 * The gear hash at position i, h(i) = sum over j in [i-63, i] of
 * gear[data[j]] << (i - j) (mod 2^64), depends on the 64 bytes ending at i
 * and nothing else: not on where the chunk began.  So a scan for the first
 * position whose hash clears a mask can run several independent lanes over
 * consecutive blocks at once (each lane warmed on the 64 bytes before its
 * block), which keeps the CPU's pipelines full where one lane waits on its
 * own shift-and-add chain.  When some lane hits, the group is rescanned
 * with one lane to find the first hit exactly.
 */
#define LANE_BLK 4096
#define LANES 4

/* first_hit1 - the first i in [from, to) with !(h(i) & mask), else |to|;
 * from >= 64. */
static size_t first_hit1(const uint8_t *d, size_t from, size_t to,
			 uint64_t mask)
{
	uint64_t h = 0;

	for (size_t i = from - 64; i < from; i++)
		h = (h << 1) + gear[d[i]];
	for (size_t i = from; i < to; i++) {
		h = (h << 1) + gear[d[i]];
		if (!(h & mask))
			return i;
	}
	return to;
}

static size_t first_hit(const uint8_t *d, size_t from, size_t to,
			uint64_t mask)
{
	while (to - from >= LANES * LANE_BLK) {
		const uint8_t *p = d + from;
		uint64_t h0 = 0, h1 = 0, h2 = 0, h3 = 0;
		size_t j;

#define GEAR_STEP(j)                                                  \
	do {                                                          \
		h0 = (h0 << 1) + gear[p[(j)]];                        \
		h1 = (h1 << 1) + gear[p[(j) + LANE_BLK]];             \
		h2 = (h2 << 1) + gear[p[(j) + 2 * LANE_BLK]];         \
		h3 = (h3 << 1) + gear[p[(j) + 3 * LANE_BLK]];         \
	} while (0)
		for (long w = -64; w < 0; w++)
			GEAR_STEP(w);
		for (j = 0; j < LANE_BLK; j++) {
			GEAR_STEP(j);
			if (__builtin_expect(!((h0 & mask) && (h1 & mask) &&
					       (h2 & mask) && (h3 & mask)),
					     0))
				break;
		}
#undef GEAR_STEP
		if (j < LANE_BLK)
			return first_hit1(d, from, from + LANES * LANE_BLK,
					  mask);
		from += LANES * LANE_BLK;
	}
	return first_hit1(d, from, to, mask);
}

size_t wh_cdc_cut(const uint8_t *data, size_t len, bool eof)
{
	size_t normal, end, i;

	if (len == 0)
		return 0;
	if (!__atomic_load_n(&gear_ready, __ATOMIC_ACQUIRE))
		gear_init();
	if (len <= WH_CDC_MIN)
		return eof ? len : 0;
	end = len < WH_CDC_MAX ? len : WH_CDC_MAX;
	normal = end < WH_CDC_AVG ? end : WH_CDC_AVG;
	i = first_hit(data, WH_CDC_MIN, normal, MASK_S);
	if (i < normal)
		return i + 1;
	if (normal < end) {
		i = first_hit(data, normal, end, MASK_L);
		if (i < end)
			return i + 1;
	}
	if (end == WH_CDC_MAX || eof)
		return end;
	return 0;
}

void wh_blake3(const void *data, size_t len, uint8_t out[static WH_HASH_LEN])
{
	blake3_hasher h;

	blake3_hasher_init(&h);
	blake3_hasher_update(&h, data, len);
	blake3_hasher_finalize(&h, out, WH_HASH_LEN);
}

int wh_blake3_fd(int fd, uint8_t out[static WH_HASH_LEN])
{
	const size_t bufsz = 1 << 20;
	uint8_t *buf = malloc(bufsz);
	blake3_hasher h;
	int rv = 0;

	if (!buf)
		return -ENOMEM;
	blake3_hasher_init(&h);
	for (;;) {
		ssize_t n = read(fd, buf, bufsz);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rv = -errno;
			break;
		}
		if (n == 0)
			break;
		blake3_hasher_update(&h, buf, (size_t)n);
	}
	if (rv == 0)
		blake3_hasher_finalize(&h, out, WH_HASH_LEN);
	free(buf);
	return rv;
}

void wh_hash_hex(const uint8_t hash[static WH_HASH_LEN], char out[static 65])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < WH_HASH_LEN; i++) {
		out[2 * i] = hex[hash[i] >> 4];
		out[2 * i + 1] = hex[hash[i] & 15];
	}
	out[64] = '\0';
}

void wh_manifest_init(struct wh_manifest *m)
{
	memset(m, 0, sizeof(*m));
}

void wh_manifest_free(struct wh_manifest *m)
{
	free(m->chunks);
	wh_manifest_init(m);
}

static int manifest_add(void *ud, const struct wh_chunk *c)
{
	struct wh_manifest *m = ud;

	if (m->n == m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		struct wh_chunk *nc = realloc(m->chunks, ncap * sizeof(*nc));

		if (!nc)
			return -ENOMEM;
		m->chunks = nc;
		m->cap = ncap;
	}
	m->chunks[m->n++] = *c;
	return 0;
}

int wh_manifest_build(int fd, struct wh_manifest *m)
{
	uint64_t size = 0;
	int rv;

	m->n = 0;
	m->size = 0;
	rv = wh_chunk_fd(fd, UINT64_MAX, manifest_add, m, &size);
	if (rv == 0)
		m->size = size;
	return rv;
}

int wh_chunk_fd(int fd, uint64_t limit, wh_chunk_cb cb, void *ud,
		uint64_t *psize)
{
	/* twice the largest chunk: there is always a whole chunk to cut;
	 * no more than |limit| though, which is read at once: an 8 MiB
	 * buffer for a small file is an mmap, page faults and a munmap
	 * (a TLB shootdown on every CPU) per file */
	const size_t bufsz = limit < 2 * WH_CDC_MAX ? (size_t)limit + 1
						    : 2 * WH_CDC_MAX;
	struct wh_io *io = wh_io_thread();
	uint8_t *buf;
	size_t have = 0;
	uint64_t off = 0;
	bool eof = false;
	int rv = 0;

	*psize = 0;
	buf = malloc(bufsz);
	if (!buf)
		return -ENOMEM;
	while (!eof || have > 0) {
		size_t pos = 0;

		if (!eof && have < bufsz) {
			/* two reads in flight when the backend allows it */
			uint64_t left = limit - (off + have);
			size_t want = bufsz - have, half;
			ssize_t n1, n2;

			if (left < want)
				want = (size_t)left;
			half = want / 2;
			n1 = n2 = 0;
			if (want > 0)
				wh_io_pread2(io, fd, buf + have, half,
					     off + have, buf + have + half,
					     want - half, off + have + half,
					     &n1, &n2);
			if (n1 < 0 || n2 < 0) {
				rv = n1 < 0 ? (int)n1 : (int)n2;
				goto out;
			}
			/* ask the kernel for what comes next meanwhile, so
			 * that a cold disk reads while we hash */
			if (!eof && want > 0 && (size_t)n2 == want - half)
				posix_fadvise(fd, (off_t)(off + have + want),
					      (off_t)bufsz, POSIX_FADV_WILLNEED);
			if ((size_t)n1 < half) {
				/* end of file inside the first half */
				have += (size_t)n1;
				eof = true;
			} else {
				have += half + (size_t)n2;
				eof = (size_t)n2 < want - half ||
				      off + have == limit;
			}
		}
		for (;;) {
			size_t cut = wh_cdc_cut(buf + pos, have - pos, eof);
			struct wh_chunk c;

			if (cut == 0)
				break;
			c.offset = off;
			c.length = (uint32_t)cut;
			wh_blake3(buf + pos, cut, c.hash);
			rv = cb(ud, &c);
			if (rv < 0)
				goto out;
			pos += cut;
			off += cut;
			if (pos == have)
				break;
		}
		memmove(buf, buf + pos, have - pos);
		have -= pos;
		if (eof && have == 0)
			break;
	}
	*psize = off;
out:
	free(buf);
	return rv;
}
