/* fuzz_store_compact.c - the chunk store's rewrite of its log (compact),
 * its sweep of chunks/ and its open scan, against on-disk state a crash,
 * an older binary or another program may leave: a log of thousands of
 * records (many dead, duplicated, torn, garbage or lying about lengths),
 * chunk files whose names or contents do not match, directories where
 * files belong, stray temporaries old and new; and a second store on the
 * same directory writing while the first rewrites its log.
 *
 * The input is a header of 8 bytes, then ops of 4 bytes, each one giving
 * a run of records, so that a small input makes a log long enough that
 * the rewrite runs (its trigger: more than 2 * live + 1024 records).
 * What a user relies on is checked: a chunk handed out hashes to its
 * name, every open (and reopen) works, old temporaries go in a sweep, and
 * once the store is rebuilt from its files alone it is within its limit
 * after a close. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "store/wh_store.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NKEY 32
#define MAXREC 4096
#define MAXLEN 1400

static char dir[96];
static uint8_t kbuf[NKEY][MAXLEN];
static uint32_t klen[NKEY];
static uint8_t khash[NKEY][WH_HASH_LEN];
static uint8_t logbuf[MAXREC * 128];

/* what the hook does while the log is rewritten */
static int hook_mode;
static struct wh_store *hook_s, *hook_s2;
static unsigned hook_n;
static __thread int in_hook;
/* held while the hook puts into the second store, and by the main thread
 * to take that store from it before closing it: the hook runs on the
 * first store's eviction thread, at any time */
static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;

/* drop_s2 - the hook no longer uses the second store */
static void drop_s2(void)
{
	pthread_mutex_lock(&hook_lock);
	hook_s2 = NULL;
	pthread_mutex_unlock(&hook_lock);
}

static void rm_dir(void)
{
	fuzz_rm_tree(dir);
}

/* the test hook: the rewrite given up, or chunks put meanwhile (by this
 * store or by a second one on the directory), so that the catch-up of
 * the records appended during the rewrite runs */
static int hook(struct wh_store *s, const char *what, const uint8_t *hash)
{
	uint8_t b[300], h[WH_HASH_LEN];
	struct wh_store *t;

	(void)hash;
	if (strcmp(what, "compact") != 0 || in_hook)
		return 0;
	if (hook_mode == 1)
		return -EIO;
	/* (a try: the second store's own rewrite may be what holds it) */
	if (hook_mode != 2 && pthread_mutex_trylock(&hook_lock) != 0)
		return 0;
	t = hook_mode == 2 ? s : hook_s2;
	in_hook = 1;
	for (int i = 0; t && i < 3; i++) {
		unsigned n = __atomic_fetch_add(&hook_n, 1, __ATOMIC_RELAXED);

		memset(b, 0xc0 + (int)(n & 63), sizeof(b));
		b[0] = (uint8_t)i;
		wh_blake3(b, sizeof(b), h);
		(void)wh_store_put(t, h, b, sizeof(b));
	}
	in_hook = 0;
	if (hook_mode != 2)
		pthread_mutex_unlock(&hook_lock);
	return 0;
}

static void key_path(int k, char *p, size_t n)
{
	char hex[65];

	wh_hash_hex(khash[k], hex);
	snprintf(p, n, "%s/chunks/%.2s", dir, hex);
	mkdir(p, 0700);
	snprintf(p, n, "%s/chunks/%.2s/%s", dir, hex, hex);
}

/* a file |age| seconds old */
static void put_old(const char *p, const uint8_t *b, size_t n, int age)
{
	struct timeval tv[2];

	fuzz_put_file(p, b, n);
	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec -= age;
	tv[1] = tv[0];
	utimes(p, tv);
}

/* every get of the pool: what comes back is the chunk */
static void check_gets(struct wh_store *s)
{
	static uint8_t out[MAXLEN + 64];
	uint8_t h[WH_HASH_LEN];

	for (int k = 0; k < NKEY; k++) {
		(void)wh_store_has(s, khash[k], klen[k]);
		if (wh_store_get(s, khash[k], out, klen[k]) == 0) {
			wh_blake3(out, klen[k], h);
			if (memcmp(h, khash[k], WH_HASH_LEN) != 0)
				abort();
		}
		/* the length a lying record gives */
		if (wh_store_get(s, khash[k], out, klen[k] + 7) == 0) {
			wh_blake3(out, klen[k] + 7, h);
			if (memcmp(h, khash[k], WH_HASH_LEN) != 0)
				abort();
		}
	}
}

/* the block-rounded bytes of the chunk files in chunks/xx/ */
static uint64_t stored_bytes(void)
{
	char p[300];
	uint64_t total = 0;
	DIR *top, *dd;
	struct dirent *d, *f;

	snprintf(p, sizeof(p), "%s/chunks", dir);
	if (!(top = opendir(p)))
		return 0;
	while ((d = readdir(top))) {
		if (strlen(d->d_name) != 2)
			continue;
		snprintf(p, sizeof(p), "%s/chunks/%s", dir, d->d_name);
		if (!(dd = opendir(p)))
			continue;
		while ((f = readdir(dd))) {
			char q[400];
			struct stat st;

			if (strlen(f->d_name) != 64 ||
			    strspn(f->d_name, "0123456789abcdef") != 64)
				continue;
			snprintf(q, sizeof(q), "%s/%s", p, f->d_name);
			if (lstat(q, &st) == 0 && S_ISREG(st.st_mode))
				total += ((uint64_t)st.st_size + 4095) / 4096 *
					 4096;
		}
		closedir(dd);
	}
	closedir(top);
	return total;
}

/* one run of records of op (a, b, c, d) at logbuf + 128 * *nrec */
static void gen(const uint8_t op[4], size_t *nrec)
{
	unsigned kind = op[0] & 7, k = op[1] % NKEY;
	unsigned rep = (op[3] & 15) + 1;

	if (op[3] & 16)
		rep *= 16;
	for (unsigned i = 0; i < rep && *nrec < MAXREC; i++) {
		uint8_t *r = logbuf + 128 * (*nrec)++;
		uint32_t len = (op[0] & 8) ? klen[k] : op[2] * 17u + 1;
		uint64_t v;

		memset(r, 0, 128);
		r[4] = kind == 3 ? 2 : kind >= 4 && kind <= 5 ? 3 : 1;
		r[5] = kind == 4 ? 1 : kind == 5 ? 2 : 0;
		memcpy(r + 8, &len, 4);
		memcpy(r + 16, khash[k], WH_HASH_LEN);
		if (op[3] & 32) { /* a hash of its own: a phantom entry */
			r[16] ^= (uint8_t)i;
			r[17] ^= (uint8_t)(i >> 8);
			r[18] ^= op[2];
		}
		if (kind == 3) { /* a reference to no file we know */
			v = op[2];
			memcpy(r + 48, &v, 8);     /* offset */
			v = 1 + op[2];
			memcpy(r + 56, &v, 8);     /* dev */
			memcpy(r + 64, &v, 8);     /* ino */
			v = 4096;
			memcpy(r + 72, &v, 8);     /* size */
			r[80] = op[2];             /* name */
		}
		if (kind == 6) { /* garbage: not a record */
			for (int j = 0; j < 128; j++)
				r[j] = (uint8_t)(op[1] * 31 + op[2] * j + i);
			continue;
		}
		if (kind == 7) /* a sealed record of nonsense fields */
			r[4] = op[2], r[5] = op[1], memcpy(r + 8, op, 4);
		if (!(op[0] & 64))
			wh_store_seal_record(r);
		else if (op[0] & 128)
			r[127] ^= 1; /* the checksum wrong */
	}
}

static void setup_dir(void)
{
	char p[300];

	fuzz_rm_tree(dir);
	mkdir(dir, 0700);
	snprintf(p, sizeof(p), "%s/chunks", dir);
	mkdir(p, 0700);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wh_store *s = NULL, *s2 = NULL;
	char p[400], oldtmp[400], logtmp[400];
	uint8_t flags, cut, stray;
	uint32_t plant;
	uint64_t limit;
	size_t nrec = 0, n;

	if (!dir[0]) {
		struct stat st;
		const char *base = stat("/dev/shm", &st) == 0 ? "/dev/shm"
							       : "/tmp";

		snprintf(dir, sizeof(dir), "%s/wh-fuzz-storec-%d", base,
			 (int)getpid());
		atexit(rm_dir);
		for (int k = 0; k < NKEY; k++) {
			klen[k] = 64 + 41 * (uint32_t)k;
			for (uint32_t j = 0; j < klen[k]; j++)
				kbuf[k][j] = (uint8_t)(k * 7 + j * 13);
			wh_blake3(kbuf[k], klen[k], khash[k]);
		}
		wh_store_test_hook = hook;
	}
	if (size < 8)
		return 0;
	flags = data[0];
	memcpy(&plant, data + 1, 4);
	cut = data[5];
	stray = data[6];
	limit = (uint64_t)(flags >> 4) * 16384;
	setup_dir();

	/* the chunk files: right, wrong bytes, wrong length, a directory */
	for (int k = 0; k < NKEY; k++) {
		if (!(plant & (1u << k)))
			continue;
		key_path(k, p, sizeof(p));
		switch ((data[7] + k) & 3) {
		case 0:
			fuzz_put_file(p, kbuf[k], klen[k]);
			break;
		case 1:
			fuzz_put_file(p, kbuf[(k + 1) % NKEY], klen[k]);
			break;
		case 2:
			fuzz_put_file(p, kbuf[k], klen[k] - 1);
			break;
		default:
			mkdir(p, 0700);
		}
	}
	/* strays: temporaries an hour old and new, names not of a chunk */
	snprintf(p, sizeof(p), "%s/chunks/%02x", dir, stray);
	mkdir(p, 0700);
	snprintf(oldtmp, sizeof(oldtmp), "%s/chunks/%02x/x.1.2.3.tmp", dir,
		 stray);
	if (stray & 1)
		put_old(oldtmp, kbuf[0], 10, 7200);
	snprintf(p, sizeof(p), "%s/chunks/%02x/not-a-chunk", dir, stray);
	if (stray & 2)
		put_old(p, kbuf[1], 20, 7200);
	snprintf(logtmp, sizeof(logtmp), "%s/chunks.log.9.9.tmp", dir);
	if (stray & 4)
		put_old(logtmp, logbuf, 128, 7200);
	snprintf(p, sizeof(p), "%s/chunks/%02x/%064x", dir, stray, 0);
	if (stray & 8) /* all zeros: no chunk of ours, a valid name */
		put_old(p, kbuf[2], 30, 10);

	/* the log */
	for (size_t off = 8; off + 4 <= size; off += 4)
		gen(data + off, &nrec);
	n = nrec * 128;
	if (cut && n >= cut)
		n -= cut;
	snprintf(p, sizeof(p), "%s/chunks.log", dir);
	fuzz_put_file(p, logbuf, n);

	hook_mode = flags & 3;
	hook_n = 0;
	if (wh_store_open(dir, limit, &s) != 0)
		abort();
	hook_s = s;
	if ((flags & 4) && wh_store_open(dir, limit, &s2) != 0)
		abort();
	pthread_mutex_lock(&hook_lock);
	hook_s2 = s2;
	pthread_mutex_unlock(&hook_lock);
	check_gets(s);
	(void)wh_store_sweep(s, 256);
	if ((stray & 1) && access(oldtmp, F_OK) == 0)
		abort(); /* an hour-old temporary outlived a full sweep */
	check_gets(s);
	/* puts of the pool (some over a file that is wrong) */
	for (int k = 0; k < NKEY; k += 1 + (flags >> 6))
		(void)wh_store_put(k & 1 && s2 ? s2 : s, khash[k], kbuf[k],
				   klen[k]);
	check_gets(s);
	if (s2)
		check_gets(s2);
	if (flags & 8)
		drop_s2(), wh_store_close(s2), s2 = NULL;
	wh_store_close(s); /* evicts, and rewrites the log if mostly dead */
	hook_s = NULL;
	if (s2) {
		check_gets(s2);
		(void)wh_store_sweep(s2, 256);
		drop_s2();
		wh_store_close(s2);
	}

	/* reopened after all of it */
	hook_mode = 0;
	if (wh_store_open(dir, limit, &s) != 0)
		abort();
	check_gets(s);
	wh_store_close(s);

	/* rebuilt from its files alone (the log gone): every chunk file is
	 * entered and counted, and a close brings it within its limit */
	snprintf(p, sizeof(p), "%s/chunks.log", dir);
	unlink(p);
	if (wh_store_open(dir, limit, &s) != 0)
		abort();
	check_gets(s);
	wh_store_close(s);
	if (stored_bytes() > limit)
		abort();
	return 0;
}
