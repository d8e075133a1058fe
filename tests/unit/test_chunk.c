/*
 * test_chunk.c - content-defined chunking: determinism, size bounds,
 * resistance to shifts and local edits; BLAKE3 known answers; manifests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"

#define DATA_LEN (24 * 1024 * 1024)

static uint8_t *data;

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		p[i] = (uint8_t)(seed >> 56);
	}
}

/* cuts - chunk |p| fully; returns the number of chunks, lengths in |out| */
static size_t cuts(const uint8_t *p, size_t n, size_t *out, size_t max)
{
	size_t pos = 0, k = 0;

	while (pos < n) {
		size_t c = wh_cdc_cut(p + pos, n - pos, true);

		assert_true(c >= 1 && c <= n - pos);
		assert_true(k < max);
		out[k++] = c;
		pos += c;
	}
	return k;
}

static void hashes(const uint8_t *p, size_t n, uint8_t (*h)[32], size_t *nh)
{
	size_t lens[256], k = cuts(p, n, lens, 256), pos = 0;

	for (size_t i = 0; i < k; i++) {
		wh_blake3(p + pos, lens[i], h[i]);
		pos += lens[i];
	}
	*nh = k;
}

/* common - how many of |a|'s chunk hashes also appear in |b| */
static size_t common(uint8_t (*a)[32], size_t na, uint8_t (*b)[32], size_t nb)
{
	size_t same = 0;

	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			if (!memcmp(a[i], b[j], 32)) {
				same++;
				break;
			}
	return same;
}

static void test_bounds_and_determinism(void **state)
{
	size_t a[256], b[256], na, nb, total = 0;

	(void)state;
	na = cuts(data, DATA_LEN, a, 256);
	nb = cuts(data, DATA_LEN, b, 256);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na * sizeof(a[0]));
	for (size_t i = 0; i < na; i++) {
		if (i + 1 < na) {
			assert_true(a[i] >= WH_CDC_MIN);
			assert_true(a[i] <= WH_CDC_MAX);
		}
		total += a[i];
	}
	assert_int_equal(total, DATA_LEN);
	/* about 1 MiB on average: 24 MiB gives roughly 12 to 40 chunks */
	assert_true(na >= 12 && na <= 40);
	/* the same boundaries whatever the buffer size the data arrives in */
	assert_int_equal(wh_cdc_cut(data, WH_CDC_MIN / 2, false), 0);
	assert_int_equal(wh_cdc_cut(data, WH_CDC_MAX + 100, false), a[0]);
	assert_int_equal(wh_cdc_cut(data, 10, true), 10);
	assert_int_equal(wh_cdc_cut(data, 0, true), 0);
}

/* The boundaries are part of the wire format (two machines must cut a
 * file alike): any change to the gear table, masks or sizes breaks this
 * test on purpose.  Lengths for fill_random(seed 1), 24 MiB. */
static void test_golden_boundaries(void **state)
{
	static const size_t golden[] = {
		1079861, 1082697, 1056098, 1529213, 1158106, 1094276,
		1849027, 1209619, 1317985, 1057670, 1314278, 1242646,
		1263402, 986820,  1064220, 737960,  1411095, 598354,
		820191,  599870,  1097253, 1408499, 186684,
	};
	size_t lens[256], n;

	(void)state;
	n = cuts(data, DATA_LEN, lens, 256);
	assert_int_equal(n, sizeof(golden) / sizeof(golden[0]));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(lens[i], golden[i]);
}

static void test_insertion_at_start(void **state)
{
	static uint8_t ha[256][32], hb[256][32];
	uint8_t *shifted = malloc(DATA_LEN + 1);
	size_t na, nb;

	(void)state;
	shifted[0] = 0x42;
	memcpy(shifted + 1, data, DATA_LEN);
	hashes(data, DATA_LEN, ha, &na);
	hashes(shifted, DATA_LEN + 1, hb, &nb);
	/* at most the first two chunks change */
	assert_true(common(ha, na, hb, nb) + 2 >= na);
	free(shifted);
}

static void test_local_edit(void **state)
{
	static uint8_t ha[256][32], hb[256][32];
	uint8_t *edited = malloc(DATA_LEN);
	size_t na, nb, same;

	(void)state;
	memcpy(edited, data, DATA_LEN);
	/* overwrite 10% in the middle */
	fill_random(edited + DATA_LEN / 2, DATA_LEN / 10, 99);
	hashes(data, DATA_LEN, ha, &na);
	hashes(edited, DATA_LEN, hb, &nb);
	same = common(ha, na, hb, nb);
	/* the chunks covering the edit (10% of the data, plus one at each
	 * edge) change; the rest stay */
	assert_true(same >= na - (na / 10 + 3));
	assert_true(same < na);
	free(edited);
}

/* wh_cdc_cut (the multi-lane scan) against wh_cdc_cut_ref (one byte at a
 * time) on random data, on low-entropy data and at the size edges, with
 * and without eof */
static void test_fast_cut_matches_reference(void **state)
{
	static const size_t edges[] = {
		0, 1, 63, 64, 65, WH_CDC_MIN - 1, WH_CDC_MIN, WH_CDC_MIN + 1,
		WH_CDC_MIN + 16383, WH_CDC_MIN + 16384, WH_CDC_MIN + 16385,
		WH_CDC_AVG - 1, WH_CDC_AVG, WH_CDC_AVG + 1, WH_CDC_AVG + 16384,
		WH_CDC_MAX - 1, WH_CDC_MAX, WH_CDC_MAX + 1, 2 * WH_CDC_MAX,
	};
	size_t n = 3 * WH_CDC_MAX;
	uint8_t *p = malloc(n);
	uint64_t seed = 12345;

	(void)state;
	assert_non_null(p);
	for (int kind = 0; kind < 4; kind++) {
		if (kind == 0)
			fill_random(p, n, 99);
		else if (kind == 1) /* four symbols: many repeated windows */
			for (size_t i = 0; i < n; i++)
				p[i] = data[i] & 3;
		else if (kind == 2) /* zeros: h is constant */
			memset(p, 0, n);
		else /* random with long runs of one byte */
			for (size_t i = 0; i < n; i++)
				p[i] = (i / 70000) & 1 ? 0x55 : data[i];
		for (size_t e = 0; e < sizeof(edges) / sizeof(edges[0]); e++)
			for (int eof = 0; eof < 2; eof++)
				assert_int_equal(wh_cdc_cut(p, edges[e], eof),
						 wh_cdc_cut_ref(p, edges[e],
								eof));
		for (int t = 0; t < 200; t++) {
			size_t off, len;

			seed = seed * 6364136223846793005ULL +
			       1442695040888963407ULL;
			off = (size_t)(seed >> 33) % (n / 2);
			len = (size_t)(seed >> 11) % (n - off + 1);
			assert_int_equal(wh_cdc_cut(p + off, len, t & 1),
					 wh_cdc_cut_ref(p + off, len, t & 1));
		}
	}
	/* whole streams, chunk by chunk, on many lengths of random data */
	for (size_t len = 1; len < (size_t)DATA_LEN; len = len * 3 + 4099) {
		size_t a = 0;

		while (a < len) {
			size_t c = wh_cdc_cut(data + a, len - a, true);

			assert_int_equal(c, wh_cdc_cut_ref(data + a, len - a,
							   true));
			a += c;
		}
	}
	free(p);
}

static void test_blake3_known_answers(void **state)
{
	/* from the BLAKE3 reference test vectors: input byte i = i % 251 */
	static const char *empty =
		"af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
	static const char *one =
		"2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213";
	static const char *k1024 =
		"42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7";
	uint8_t in[1024], h[32];
	char hex[65];

	(void)state;
	for (int i = 0; i < 1024; i++)
		in[i] = (uint8_t)(i % 251);
	wh_blake3(in, 0, h);
	wh_hash_hex(h, hex);
	assert_string_equal(hex, empty);
	wh_blake3(in, 1, h);
	wh_hash_hex(h, hex);
	assert_string_equal(hex, one);
	wh_blake3(in, 1024, h);
	wh_hash_hex(h, hex);
	assert_string_equal(hex, k1024);
}

static void test_manifest(void **state)
{
	char path[] = "/tmp/wh-manifest-XXXXXX";
	struct wh_manifest m;
	size_t lens[256], k;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, data, DATA_LEN), DATA_LEN);
	wh_manifest_init(&m);
	assert_int_equal(wh_manifest_build(fd, &m), 0);
	k = cuts(data, DATA_LEN, lens, 256);
	assert_int_equal(m.n, k);
	assert_int_equal(m.size, DATA_LEN);
	for (size_t i = 0, off = 0; i < k; i++) {
		uint8_t h[32];

		assert_int_equal(m.chunks[i].offset, off);
		assert_int_equal(m.chunks[i].length, lens[i]);
		wh_blake3(data + off, lens[i], h);
		assert_memory_equal(h, m.chunks[i].hash, 32);
		off += lens[i];
	}
	/* an empty file has no chunks */
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(wh_manifest_build(fd, &m), 0);
	assert_int_equal(m.n, 0);
	assert_int_equal(m.size, 0);
	wh_manifest_free(&m);
	close(fd);
}

static int collect(void *ud, const struct wh_chunk *c)
{
	struct wh_manifest *m = ud;

	if (m->n == m->cap)
		return -ENOSPC;
	m->chunks[m->n++] = *c;
	return 0;
}

/* a limit (the size at stat) sizes the read buffer: the chunks up to the
 * limit are the same as the whole file's, for small and large limits */
static void test_chunk_fd_limit(void **state)
{
	static const uint64_t limits[] = { 0, 1, 10240, WH_CDC_MIN - 1,
					   WH_CDC_MIN + 1, 3u << 20, DATA_LEN };
	char path[] = "/tmp/wh-limit-XXXXXX";
	struct wh_chunk store[256];
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, data, DATA_LEN), DATA_LEN);
	for (size_t t = 0; t < sizeof(limits) / sizeof(limits[0]); t++) {
		struct wh_manifest m = { .chunks = store, .cap = 256 };
		size_t lens[256], k;
		uint64_t size = 1;

		assert_int_equal(wh_chunk_fd(fd, limits[t], collect, &m,
					     &size),
				 0);
		assert_int_equal(size, limits[t]);
		k = cuts(data, (size_t)limits[t], lens, 256);
		assert_int_equal(m.n, k);
		for (size_t i = 0, off = 0; i < k; i++) {
			uint8_t h[32];

			assert_int_equal(store[i].offset, off);
			assert_int_equal(store[i].length, lens[i]);
			wh_blake3(data + off, lens[i], h);
			assert_memory_equal(h, store[i].hash, 32);
			off += lens[i];
		}
	}
	close(fd);
}

/* the gear table as the format defines it (wh_chunk.h): splitmix64 from
 * the seed "wormhole" */
static void gear_table(uint64_t g[256])
{
	uint64_t seed = 0x776f726d686f6c65ULL;

	for (int i = 0; i < 256; i++) {
		uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		g[i] = z ^ (z >> 31);
	}
}

/* a big file hashes on two threads: the same chunks as one thread, also
 * for content that clears the masks at every 64th byte (a 64-byte
 * pattern whose gear hash does, repeated), which the second thread gives
 * up listing */
static void test_chunk_fd_two_threads(void **state)
{
	static const uint64_t mask_l = 0x0000252525252525ULL;
	const size_t len = 21u << 20;
	char path[] = "/tmp/wh-par-XXXXXX";
	uint8_t *d = malloc(len), w[64];
	static struct wh_chunk store[512];
	static size_t lens[512];
	uint64_t g[256], seed = 7;
	int fd = mkstemp(path);
	bool found = false;

	(void)state;
	assert_non_null(d);
	assert_true(fd >= 0);
	unlink(path);
	gear_table(g);
	while (!found) {
		uint64_t h = 0;

		fill_random(w, 63, seed++);
		for (int j = 0; j < 63; j++)
			h = (h << 1) + g[w[j]];
		for (int b = 0; b < 256 && !found; b++)
			if (!(((h << 1) + g[b]) & mask_l)) {
				w[63] = (uint8_t)b;
				found = true;
			}
	}
	fill_random(d, len, 99);
	for (size_t i = 5u << 20; i < (17u << 20); i += 64)
		memcpy(d + i, w, 64);
	for (size_t i = 19u << 20; i < (20u << 20); i += 64)
		memcpy(d + i, w, 64);
	assert_int_equal(write(fd, d, len), (ssize_t)len);
	for (int t = 0; t < 2; t++) {
		struct wh_manifest m = { .chunks = store, .cap = 512 };
		size_t k = cuts(d, len, lens, 512);
		uint64_t size = 0;

		if (t == 1)
			setenv("WH_HASH_THREADS", "1", 1);
		assert_int_equal(wh_chunk_fd(fd, UINT64_MAX, collect, &m,
					     &size),
				 0);
		unsetenv("WH_HASH_THREADS");
		assert_int_equal(size, len);
		assert_int_equal(m.n, k);
		for (size_t i = 0, off = 0; i < k; i++) {
			uint8_t h[32];

			assert_int_equal(store[i].offset, off);
			assert_int_equal(store[i].length, lens[i]);
			wh_blake3(d + off, lens[i], h);
			assert_memory_equal(h, store[i].hash, 32);
			off += lens[i];
		}
	}
	free(d);
	close(fd);
}

/* the callback of test_chunk_fd_changed: the file changes under the scan
 * once the first chunk is in (cut shorter, or grown by a MiB) */
struct change {
	int fd;
	bool grow;
	size_t n;
};

static int change_after_first(void *ud, const struct wh_chunk *c)
{
	struct change *ch = ud;
	static uint8_t more[1 << 20];

	(void)c;
	if (ch->n++ == 0) {
		if (ch->grow)
			assert_int_equal(pwrite(ch->fd, more, sizeof(more),
						40u << 20),
					 (ssize_t)sizeof(more));
		else
			assert_int_equal(ftruncate(ch->fd, 1u << 20), 0);
	}
	return 0;
}

/* a big file cut shorter while it is hashed: read through its mapping,
 * the bytes past its new end raise SIGBUS, which must end the scan with
 * -EAGAIN (read(), the scan ends early); one that grows: the bytes it
 * grew by are scanned too, as read() would */
static void test_chunk_fd_changed(void **state)
{
	const size_t len = 40u << 20;
	uint8_t *d = malloc(len);

	(void)state;
	assert_non_null(d);
	fill_random(d, len, 5);
	for (int t = 0; t < 4; t++) {
		char path[] = "/tmp/wh-chg-XXXXXX";
		int fd = mkstemp(path);
		struct change ch = { .fd = fd, .grow = t >= 2 };
		uint64_t size = 0;
		int rv;

		assert_true(fd >= 0);
		unlink(path);
		assert_int_equal(write(fd, d, len), (ssize_t)len);
		if (t % 2)
			setenv("WH_HASH_MMAP", "0", 1);
		rv = wh_chunk_fd(fd, UINT64_MAX, change_after_first, &ch, &size);
		unsetenv("WH_HASH_MMAP");
		if (ch.grow) {
			assert_int_equal(rv, 0);
			assert_int_equal(size, len + (1u << 20));
		} else if (t == 0) {
			assert_int_equal(rv, -EAGAIN);
		} else {
			assert_true(rv == -EAGAIN || (rv == 0 && size < len));
		}
		close(fd);
	}
	free(d);
}

/* the same through wh_chunk_fd_hint, with the manifest of a version whose
 * first MiB differed: cut shorter while it is hashed, the scan ends with
 * -EAGAIN through the mapping (its other thread at work in the same
 * bytes), and with read() early or with -EAGAIN; never a manifest of the
 * whole length */
static void test_chunk_fd_hint_changed(void **state)
{
	const size_t len = 40u << 20;
	uint8_t *d = malloc(len);
	struct wh_manifest old;

	(void)state;
	assert_non_null(d);
	fill_random(d, len, 6);
	wh_manifest_init(&old);
	for (int t = 0; t < 2; t++) {
		char path[] = "/tmp/wh-hchg-XXXXXX";
		int fd = mkstemp(path);
		struct change ch = { .fd = fd };
		uint64_t size = 0, kept = 0;
		int rv;

		assert_true(fd >= 0);
		unlink(path);
		assert_int_equal(write(fd, d, len), (ssize_t)len);
		if (t == 0) {
			assert_int_equal(wh_manifest_build(fd, &old), 0);
			assert_true(old.n > 2);
			/* this version's first MiB is other bytes */
			for (size_t i = 0; i < (1u << 20); i += 4096)
				d[i] ^= 0x5a;
			assert_int_equal(pwrite(fd, d, 1u << 20, 0), 1 << 20);
		}
		if (t == 1)
			setenv("WH_HASH_MMAP", "0", 1);
		rv = wh_chunk_fd_hint(fd, UINT64_MAX, &old, change_after_first,
				      &ch, &size, &kept);
		unsetenv("WH_HASH_MMAP");
		if (t == 0)
			assert_int_equal(rv, -EAGAIN);
		else
			assert_true(rv == -EAGAIN || (rv == 0 && size < len));
		assert_true(ch.n > 0);
		close(fd);
	}
	wh_manifest_free(&old);
	free(d);
}

/* manifest_of - wh_chunk_fd, or with |old| wh_chunk_fd_hint, of the |n|
 * bytes at |p|, into |m| (|cap| chunks) */
static uint64_t kept; /* of the last manifest_of with |old| */

static void manifest_of(const uint8_t *p, size_t n,
			const struct wh_manifest *old, struct wh_manifest *m)
{
	char path[] = "/tmp/wh-hint-XXXXXX";
	int fd = mkstemp(path);
	uint64_t size = 1;

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	m->n = 0;
	if (old)
		assert_int_equal(wh_chunk_fd_hint(fd, UINT64_MAX, old, collect,
						  m, &size, &kept),
				 0);
	else
		assert_int_equal(wh_chunk_fd(fd, UINT64_MAX, collect, m,
					     &size),
				 0);
	assert_int_equal(size, n);
	close(fd);
}

static void assert_same_manifest(const struct wh_manifest *a,
				 const struct wh_manifest *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->chunks[i].offset, b->chunks[i].offset);
		assert_int_equal(a->chunks[i].length, b->chunks[i].length);
		assert_memory_equal(a->chunks[i].hash, b->chunks[i].hash, 32);
	}
}

/* hashing a new version with the old one's manifest gives the chunks of
 * hashing it afresh, whatever the change: none, an overwrite in the
 * middle, bytes inserted or removed at the start, appended, cut off at
 * the end or inside the last chunk, another file altogether, a small
 * file; and an old manifest with chunks no file has (empty, too long,
 * wrong hashes, out of order) changes nothing either */
static void test_chunk_fd_hint(void **state)
{
	enum { CAP = 512 };
	const size_t n = 10u << 20;
	uint8_t *v = malloc(n + 4096);
	struct wh_manifest old = { .chunks = calloc(CAP, sizeof(struct wh_chunk)),
				   .cap = CAP };
	struct wh_manifest a = { .chunks = calloc(CAP, sizeof(struct wh_chunk)),
				 .cap = CAP };
	struct wh_manifest b = { .chunks = calloc(CAP, sizeof(struct wh_chunk)),
				 .cap = CAP };

	(void)state;
	assert_non_null(v);
	manifest_of(data, n, NULL, &old);
	assert_true(old.n > 5);
	for (int t = 0; t < 11; t++) {
		size_t len = n, maxc;

		memcpy(v, data, n);
		switch (t) {
		case 0: /* unchanged */
			break;
		case 1: /* a tenth overwritten, from the middle */
			fill_random(v + n / 2 + 12345, n / 10, 99);
			break;
		case 2: /* one byte inserted at the start */
			v[0] = 0x5a;
			memcpy(v + 1, data, n);
			len = n + 1;
			break;
		case 3: /* 100 bytes gone from the start */
			memcpy(v, data + 100, n - 100);
			len = n - 100;
			break;
		case 4: /* 4 KiB appended */
			fill_random(v + n, 4096, 7);
			len = n + 4096;
			break;
		case 5: /* cut off inside the last chunk */
			len = n - 1000;
			break;
		case 6: /* cut off where a chunk of the middle ends */
			len = old.chunks[old.n / 2].offset +
			      old.chunks[old.n / 2].length;
			break;
		case 7: /* another file */
			fill_random(v, n, 12);
			break;
		case 8: /* a file under a chunk's minimum */
			len = 1000;
			break;
		case 9: /* one byte changed in every other chunk */
			for (size_t i = 0; i < old.n; i += 2)
				v[old.chunks[i].offset + old.chunks[i].length / 2] ^= 1;
			break;
		case 10: /* bytes swapped between the first two chunks */
			memcpy(v, data + old.chunks[1].offset,
			       old.chunks[1].length);
			memcpy(v + old.chunks[1].length, data,
			       old.chunks[0].length);
			break;
		}
		manifest_of(v, len, NULL, &a);
		manifest_of(v, len, &old, &b);
		assert_same_manifest(&a, &b);
		/* and the unchanged stretches were taken from the old
		 * manifest: all but the chunks the change touched and the
		 * one after each (found by a search, then looked up) */
		maxc = 0;
		for (size_t i = 0; i < a.n; i++)
			if (a.chunks[i].length > maxc)
				maxc = a.chunks[i].length;
		if (t == 0)
			assert_int_equal(kept, n);
		if (t == 1)
			assert_true(kept + n / 10 + 3 * maxc >= len);
		if (t == 2 || t == 3 || t == 4)
			assert_true(kept + 2 * maxc >= len);
		if (t == 6)
			assert_int_equal(kept, len);
		if (t == 7)
			assert_int_equal(kept, 0);
	}
	/* a manifest no file of ours has: empty, too long, out of order,
	 * and a hash that is not its bytes' */
	{
		struct wh_manifest bad = { .chunks = calloc(CAP, sizeof(struct wh_chunk)),
					   .cap = CAP };

		bad.n = old.n;
		memcpy(bad.chunks, old.chunks, old.n * sizeof(*old.chunks));
		bad.chunks[0].length = 0;
		bad.chunks[2].length = WH_CDC_MAX + 1;
		bad.chunks[3] = old.chunks[5];
		bad.chunks[4].hash[0] ^= 1;
		bad.chunks[bad.n - 1].length = UINT32_MAX;
		manifest_of(data, n, NULL, &a);
		manifest_of(data, n, &bad, &b);
		assert_same_manifest(&a, &b);
		/* the old first chunk, cut short: its bytes are a prefix */
		bad.n = 1;
		bad.chunks[0] = old.chunks[0];
		bad.chunks[0].length = WH_CDC_MIN / 2;
		wh_blake3(data, bad.chunks[0].length, bad.chunks[0].hash);
		manifest_of(data, WH_CDC_MIN / 2, NULL, &a);
		manifest_of(data, WH_CDC_MIN / 2, &bad, &b);
		assert_same_manifest(&a, &b);
		manifest_of(data, n, &bad, &b);
		manifest_of(data, n, NULL, &a);
		assert_same_manifest(&a, &b);
		free(bad.chunks);
	}
	free(old.chunks);
	free(a.chunks);
	free(b.chunks);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds_and_determinism),
		cmocka_unit_test(test_golden_boundaries),
		cmocka_unit_test(test_insertion_at_start),
		cmocka_unit_test(test_local_edit),
		cmocka_unit_test(test_fast_cut_matches_reference),
		cmocka_unit_test(test_blake3_known_answers),
		cmocka_unit_test(test_manifest),
		cmocka_unit_test(test_chunk_fd_limit),
		cmocka_unit_test(test_chunk_fd_two_threads),
		cmocka_unit_test(test_chunk_fd_changed),
		cmocka_unit_test(test_chunk_fd_hint_changed),
		cmocka_unit_test(test_chunk_fd_hint),
	};
	int rv;

	data = malloc(DATA_LEN);
	fill_random(data, DATA_LEN, 1);
	rv = cmocka_run_group_tests(tests, NULL, NULL);
	free(data);
	return rv;
}
