/*
 * fuzz_smallhash.c - the manifest cache's file of small-file hashes,
 * "small.whs", as a crash, a full disk, another process or another
 * program may leave it.  Input: u8 mode, then the bytes.  Mode % 4 == 0:
 * the file is the bytes as they are; 1: they are the entries ("WHS1", the
 * count of whole 72-byte entries they hold, and those, and a right
 * checksum: the entries are reached); 2: they are everything between the
 * magic and the checksum (the count is theirs, the checksum right); 3:
 * they are XORed into the file the cache itself wrote (all zeros: that
 * file unchanged).
 *
 * Whatever the file holds, the cache opens, looks up, remembers one hash
 * of its own and closes without a crash or a leak, twice: once reading
 * the file when first asked (and merging it again when saving), once
 * finding it only when saving (another process saved it meanwhile).  A
 * hash it hands out was in the file, for exactly that key, and the file
 * was well formed with a right checksum; a file with at most HASH_WAYS
 * keys is believed whole.  The file it saves is well formed, holds each
 * key once, at most WH_MCACHE_HASHES of them, its own hash, and otherwise
 * only what the file it found held; read back, its own hash is there.
 */
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
#include "host/wh_mcache.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENT_LEN (40 + WH_HASH_LEN)
#define HEAD_LEN 12
#define WAYS 4                          /* entries per set, at least */
#define MAX_FILE (HEAD_LEN + (size_t)WH_MCACHE_HASHES * ENT_LEN + WH_HASH_LEN)
#define MAX_PROBES 256                  /* keys of the file asked for */

struct ent {
	uint64_t k[5]; /* dev, ino, size, mtime_ns, ctime_ns */
	uint8_t hash[WH_HASH_LEN];
};

static char base[256], cdir[300], hpath[400];
static uint8_t own[4096]; /* the file the cache wrote */
static size_t own_len;
static uint8_t *buf, *saved;
static struct ent *ents, *outs;

/* the cache's own hash, put in every run */
static const struct ent mine = {
	{ 77, 4242, 999, 1500000000123456789ULL, 1500000000987654321ULL },
	{ 0xa5, 1, 2, 3 },
};

static void rm_base(void)
{
	fuzz_rm_tree(base);
}

static uint64_t le(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* the stat whose identity is |k| (every key has one) */
static void stat_of(const uint64_t k[5], struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_dev = (dev_t)k[0];
	st->st_ino = (ino_t)k[1];
	st->st_size = (off_t)k[2];
	st->st_mtim.tv_sec = (time_t)(k[3] / 1000000000ULL);
	st->st_mtim.tv_nsec = (long)(k[3] % 1000000000ULL);
	st->st_ctim.tv_sec = (time_t)(k[4] / 1000000000ULL);
	st->st_ctim.tv_nsec = (long)(k[4] % 1000000000ULL);
}

static size_t get_file(const char *path, uint8_t *b, size_t cap)
{
	int f = open(path, O_RDONLY);
	ssize_t r;

	if (f < 0)
		abort();
	r = read(f, b, cap);
	close(f);
	if (r < 0 || (size_t)r == cap)
		abort();
	return (size_t)r;
}

/* parse - the entries of |b| as the format has them (as many whole ones
 * as there are, up to the count, when it does not check out), and whether
 * it checks out */
static bool parse(const uint8_t *b, size_t len, struct ent *out, size_t *pn)
{
	uint8_t h[WH_HASH_LEN];
	uint64_t n;
	size_t have;
	bool ok;

	*pn = 0;
	if (len < HEAD_LEN + WH_HASH_LEN)
		return false;
	n = le(b + 4);
	have = (len - HEAD_LEN - WH_HASH_LEN) / ENT_LEN;
	wh_blake3(b, len - WH_HASH_LEN, h);
	ok = !memcmp(b, "WHS1", 4) && n <= WH_MCACHE_HASHES &&
	     HEAD_LEN + n * ENT_LEN + WH_HASH_LEN == len &&
	     !memcmp(h, b + len - WH_HASH_LEN, WH_HASH_LEN);
	if (n < have)
		have = (size_t)n;
	for (size_t i = 0; i < have; i++) {
		const uint8_t *e = b + HEAD_LEN + i * ENT_LEN;

		for (int j = 0; j < 5; j++)
			out[i].k[j] = le(e + 8 * j);
		memcpy(out[i].hash, e + 40, WH_HASH_LEN);
	}
	*pn = have;
	return ok;
}

static bool same_key(const struct ent *a, const struct ent *b)
{
	return !memcmp(a->k, b->k, sizeof(a->k));
}

/* in - whether |e|'s key and hash are among |v|'s (with |any_hash|: its
 * key alone) */
static bool in(const struct ent *v, size_t n, const struct ent *e,
	       bool any_hash)
{
	for (size_t i = 0; i < n; i++)
		if (same_key(&v[i], e) &&
		    (any_hash || !memcmp(v[i].hash, e->hash, WH_HASH_LEN)))
			return true;
	return false;
}

static int cmp_key(const void *a, const void *b)
{
	return memcmp(((const struct ent *)a)->k, ((const struct ent *)b)->k,
		      sizeof(((const struct ent *)a)->k));
}

static size_t distinct_keys(const struct ent *v, size_t n)
{
	size_t d = 0;

	for (size_t i = 0; i < n; i++) {
		size_t j = 0;

		while (j < i && !same_key(&v[j], &v[i]))
			j++;
		d += j == i;
		if (d > WAYS)
			break;
	}
	return d;
}

/* check_saved - what the cache saved: well formed, each key once, its own
 * hash, and otherwise only pairs of the |n| entries |v| */
static void check_saved(const struct ent *v, size_t n)
{
	size_t len = get_file(hpath, saved, MAX_FILE + 1), m;
	bool have_mine = false;

	if (!parse(saved, len, outs, &m) || m > WH_MCACHE_HASHES)
		abort();
	for (size_t i = 0; i < m; i++) {
		if (same_key(&outs[i], &mine)) {
			if (memcmp(outs[i].hash, mine.hash, WH_HASH_LEN))
				abort(); /* its own hash replaced */
			have_mine = true;
		} else if (!in(v, n, &outs[i], false)) {
			abort(); /* a pair from nowhere */
		}
	}
	if (!have_mine)
		abort();
	qsort(outs, m, sizeof(*outs), cmp_key);
	for (size_t i = 1; i < m; i++)
		if (same_key(&outs[i - 1], &outs[i]))
			abort(); /* a key twice */
}

/* reread - a fresh cache on what was saved finds its own hash */
static void reread(void)
{
	struct wh_mcache *mc;
	struct stat st;
	uint8_t h[WH_HASH_LEN];

	if (wh_mcache_open(cdir, &mc) != 0)
		abort();
	stat_of(mine.k, &st);
	if (!wh_mcache_hash_get(mc, &st, h) ||
	    memcmp(h, mine.hash, WH_HASH_LEN))
		abort();
	wh_mcache_close(mc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	struct wh_mcache *mc;

	(void)argc;
	(void)argv;
	buf = malloc(MAX_FILE + 1);
	saved = malloc(MAX_FILE + 1);
	ents = malloc((size_t)WH_MCACHE_HASHES * sizeof(*ents));
	outs = malloc((size_t)WH_MCACHE_HASHES * sizeof(*outs));
	if (!buf || !saved || !ents || !outs)
		abort();
	snprintf(base, sizeof(base), "%s/wh-fuzz-smallhash-%d",
		 tmp && *tmp ? tmp : "/tmp", (int)getpid());
	if (mkdir(base, 0700) != 0)
		abort();
	atexit(rm_base);
	snprintf(cdir, sizeof(cdir), "%s/cache", base);
	snprintf(hpath, sizeof(hpath), "%s/small.whs", cdir);
	/* the file the cache writes for a few hashes */
	if (wh_mcache_open(cdir, &mc) != 0)
		abort();
	for (int i = 0; i < 6; i++) {
		struct ent e = mine;
		struct stat st;

		e.k[1] += (uint64_t)i + 1;
		e.k[3] += (uint64_t)i * 1000;
		e.hash[0] = (uint8_t)i;
		stat_of(e.k, &st);
		wh_mcache_hash_put(mc, &st, e.hash);
	}
	wh_mcache_close(mc);
	own_len = get_file(hpath, own, sizeof(own));
	if (own_len != HEAD_LEN + 6 * ENT_LEN + WH_HASH_LEN)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wh_mcache *mc;
	struct stat st;
	uint8_t h[WH_HASH_LEN];
	size_t n, ne, probes;
	bool ok, whole;

	if (size < 1 || size - 1 > MAX_FILE - HEAD_LEN - WH_HASH_LEN)
		return 0;
	switch (data[0] % 4) {
	case 1:
		ne = (size - 1) / ENT_LEN;
		memcpy(buf, "WHS1", 4);
		put64(buf + 4, ne);
		memcpy(buf + HEAD_LEN, data + 1, ne * ENT_LEN);
		n = HEAD_LEN + ne * ENT_LEN;
		wh_blake3(buf, n, buf + n);
		n += WH_HASH_LEN;
		break;
	case 2:
		memcpy(buf, "WHS1", 4);
		memcpy(buf + 4, data + 1, size - 1);
		n = 4 + size - 1;
		wh_blake3(buf, n, buf + n);
		n += WH_HASH_LEN;
		break;
	case 3:
		n = size - 1 > own_len ? size - 1 : own_len;
		memset(buf, 0, n);
		memcpy(buf, own, own_len);
		for (size_t i = 0; i + 1 < size; i++)
			buf[i] ^= data[1 + i];
		break;
	default:
		n = size - 1;
		memcpy(buf, data + 1, n);
		break;
	}
	ok = parse(buf, n, ents, &ne);
	whole = ok && distinct_keys(ents, ne) <= WAYS;

	/* 1: read when first asked, merged again at save */
	fuzz_put_file(hpath, buf, n);
	if (wh_mcache_open(cdir, &mc) != 0)
		abort();
	probes = ne < MAX_PROBES ? ne : MAX_PROBES;
	for (size_t i = 0; i < probes; i++) {
		struct ent other = ents[i];

		stat_of(ents[i].k, &st);
		if (wh_mcache_hash_get(mc, &st, h)) {
			size_t last = ne;

			if (!ok)
				abort(); /* a file not checking out believed */
			while (last-- > 0 && !same_key(&ents[last], &ents[i]))
				;
			if (memcmp(h, ents[last].hash, WH_HASH_LEN))
				abort(); /* not the file's hash for it */
		} else if (whole) {
			abort(); /* lost with room to spare */
		}
		/* a key next to it that the file does not hold */
		other.k[i % 5] ^= 1;
		if (!in(ents, ok ? ne : 0, &other, true)) {
			stat_of(other.k, &st);
			if (wh_mcache_hash_get(mc, &st, h))
				abort();
		}
	}
	stat_of(mine.k, &st);
	if (wh_mcache_hash_get(mc, &st, h)) {
		struct ent got = mine;

		memcpy(got.hash, h, WH_HASH_LEN);
		if (!ok || !in(ents, ne, &got, false))
			abort();
	} else if (whole && in(ents, ne, &mine, true)) {
		abort();
	}
	wh_mcache_hash_put(mc, &st, mine.hash);
	wh_mcache_close(mc);
	check_saved(ents, ok ? ne : 0);
	reread();

	/* 2: the table is read before the file is there, merged at save */
	unlink(hpath);
	if (wh_mcache_open(cdir, &mc) != 0)
		abort();
	stat_of(mine.k, &st);
	if (wh_mcache_hash_get(mc, &st, h))
		abort();
	wh_mcache_hash_put(mc, &st, mine.hash);
	fuzz_put_file(hpath, buf, n);
	wh_mcache_close(mc);
	check_saved(ents, ok ? ne : 0);
	reread();
	unlink(hpath);
	return 0;
}
