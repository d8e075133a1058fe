/*
 * test_store.c - the client's chunk store and the host's manifest cache:
 * what goes in comes out verified, corruption is detected and discarded,
 * the store stays under its limit, a reference to a file's bytes is used
 * only while that file still holds them, and a manifest is computed once
 * per file version, across restarts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "host/wh_mcache.h"
#include "store/wh_store.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/wh-store-test-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_put_get_corrupt(void **state)
{
	struct wh_store *s;
	uint8_t data[5000], h[32], out[5000], hex_path[300];
	char hex[65];
	FILE *f;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 31);
	wh_blake3(data, sizeof(data), h);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_false(wh_store_has(s, h, sizeof(data)));
	assert_int_equal(wh_store_put(s, h, data, sizeof(data)), 0);
	assert_true(wh_store_has(s, h, sizeof(data)));
	assert_false(wh_store_has(s, h, sizeof(data) - 1)); /* not that size */
	assert_int_equal(wh_store_put(s, h, data, sizeof(data)), 0); /* again */
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), 0);
	assert_memory_equal(out, data, sizeof(data));
	/* flip one byte on disk: detected, deleted, reported missing */
	wh_hash_hex(h, hex);
	snprintf((char *)hex_path, sizeof(hex_path), "%s/chunks/%.2s/%s", dir,
		 hex, hex);
	f = fopen((char *)hex_path, "r+b");
	assert_non_null(f);
	fseek(f, 10, SEEK_SET);
	fputc(data[10] ^ 1, f);
	fclose(f);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_int_equal(wh_store_corrupt(s), 1);
	assert_int_equal(access((char *)hex_path, F_OK), -1);
	wh_store_close(s);
}

static int direct_tries;

static int hook_refuse_direct(struct wh_store *s, const char *what,
			      const uint8_t *hash)
{
	(void)s;
	(void)hash;
	if (strcmp(what, "direct") != 0)
		return 0;
	direct_tries++;
	return 1;
}

/* takes_direct - |d| is on a file system that takes O_DIRECT writes and
 * keeps files outside the page cache (not tmpfs) */
static bool takes_direct(const char *d)
{
	char p[128];
	struct statfs sf;
	bool ok;
	int fd;

	if (statfs(d, &sf) != 0 || sf.f_type == TMPFS_MAGIC)
		return false;
	snprintf(p, sizeof(p), "%s/direct-probe", d);
	fd = open(p, O_WRONLY | O_CREAT | O_DIRECT, 0600);
	ok = fd >= 0;
	if (fd >= 0)
		close(fd);
	unlink(p);
	return ok;
}

/* first_page_cached - the first page of |path| is in the page cache */
static bool first_page_cached(const char *path)
{
	unsigned char vec = 0;
	int fd = open(path, O_RDONLY);
	void *m;

	assert_true(fd >= 0);
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mincore(m, 4096, &vec), 0);
	munmap(m, 4096);
	return vec & 1;
}

/* file_is - the file |path| holds exactly the |n| bytes at |data| */
static void file_is(const char *path, const uint8_t *data, size_t n)
{
	static uint8_t buf[WH_CDC_MAX + 1];
	int fd = open(path, O_RDONLY);
	ssize_t got;

	assert_true(fd >= 0);
	got = read(fd, buf, sizeof(buf));
	close(fd);
	assert_int_equal(got, (ssize_t)n);
	assert_memory_equal(buf, data, n);
}

/* chunks of every shape (under a block, whole blocks, a part block
 * after them, the largest) go to disk whole, whether the file system
 * takes O_DIRECT writes (for chunks of 64 KiB and more) or refuses them
 * (then the store stops trying) */
static void test_chunk_file_shapes(void **state)
{
	static const size_t sizes[] = { 1,    4095,	    4096,  4097,
					8191, 65536 + 123, 1 << 20,
					WH_CDC_MAX };
	static uint8_t data[WH_CDC_MAX], out[WH_CDC_MAX];
	struct wh_store *s;
	uint8_t h[32];
	char hex[65], path[300];
	bool direct = takes_direct(dir);

	(void)state;
	for (int refuse = 0; refuse < 2; refuse++) {
		direct_tries = 0;
		wh_store_test_hook = refuse ? hook_refuse_direct : NULL;
		assert_int_equal(wh_store_open(dir, 64 << 20, &s), 0);
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			size_t n = sizes[i];

			for (size_t k = 0; k < n; k++)
				data[k] = (uint8_t)(k * 7 + i + refuse * 3);
			wh_blake3(data, n, h);
			assert_int_equal(wh_store_put(s, h, data, n), 0);
			wh_hash_hex(h, hex);
			snprintf(path, sizeof(path), "%s/chunks/%.2s/%s", dir,
				 hex, hex);
			/* written past the page cache where it can be */
			if (n >= 64 * 1024 && !refuse && direct)
				assert_false(first_page_cached(path));
			memset(out, 0, n);
			assert_int_equal(wh_store_get(s, h, out, n), 0);
			assert_memory_equal(out, data, n);
			file_is(path, data, n);
		}
		/* refused once (the first chunk of 64 KiB or more): no
		 * more tries for that store */
		assert_int_equal(direct_tries, refuse ? 1 : 0);
		wh_store_close(s);
		wh_store_test_hook = NULL;
		/* and what was written reads back after a reopen */
		assert_int_equal(wh_store_open(dir, 64 << 20, &s), 0);
		assert_int_equal(wh_store_get(s, h, out, WH_CDC_MAX), 0);
		assert_memory_equal(out, data, WH_CDC_MAX);
		assert_int_equal(wh_store_corrupt(s), 0);
		wh_store_close(s);
	}
}

static void test_eviction(void **state)
{
	struct wh_store *s;
	uint8_t data[100000], h[40][32], out[100000];
	int kept = 0;

	(void)state;
	/* 40 chunks of 100 kB into a 1 MB store: the oldest go */
	assert_int_equal(wh_store_open(dir, 1000000, &s), 0);
	for (int i = 0; i < 40; i++) {
		memset(data, i, sizeof(data));
		wh_blake3(data, sizeof(data), h[i]);
		assert_int_equal(wh_store_put(s, h[i], data, sizeof(data)), 0);
	}
	wh_store_close(s);
	assert_int_equal(wh_store_open(dir, 1000000, &s), 0);
	for (int i = 0; i < 40; i++)
		if (wh_store_get(s, h[i], out, sizeof(out)) == 0)
			kept++;
	assert_true(kept > 0 && kept <= 10);
	assert_int_equal(wh_store_corrupt(s), 0);
	wh_store_close(s);
}

/* mkfile - |path| holding |n| bytes of |data| at |off|, its stat in |st| */
static void mkfile(const char *path, const uint8_t *data, size_t n, off_t off,
		   struct stat *st)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, n, off), (ssize_t)n);
	assert_int_equal(fstat(fd, st), 0);
	close(fd);
}

static void flip(const char *path, off_t off)
{
	uint8_t b;
	int fd = open(path, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void test_refs(void **state)
{
	struct wh_store *s;
	struct wh_store_loc loc;
	uint8_t data[70000], h[32], out[70000];
	char f[128], tmp[128], refp[300], hex[65];
	struct stat st;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + (i >> 8));
	wh_blake3(data, sizeof(data), h);
	wh_hash_hex(h, hex);
	snprintf(f, sizeof(f), "%s/dest", dir);
	snprintf(tmp, sizeof(tmp), "%s/.dest.part", dir);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);

	/* written under its temporary name: found there, then under the
	 * final one once renamed */
	mkfile(tmp, data, sizeof(data), 5000, &st);
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f, tmp, &st,
					  5000),
			 0);
	assert_true(wh_store_has(s, h, sizeof(data)));
	memset(out, 0, sizeof(out));
	assert_int_equal(wh_store_get_at(s, h, out, sizeof(out), &loc), 0);
	assert_memory_equal(out, data, sizeof(data));
	assert_int_equal(loc.ino, (uint64_t)st.st_ino);
	assert_int_equal(loc.dev, (uint64_t)st.st_dev);
	assert_int_equal(loc.offset, 5000);
	assert_int_equal(rename(tmp, f), 0);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), 0);
	/* another length is another chunk: not this one, and kept */
	assert_int_equal(wh_store_get(s, h, out, sizeof(out) - 1), -ENOENT);
	assert_true(wh_store_has(s, h, sizeof(data)));
	/* relative names are refused */
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), "dest", NULL,
					  &st, 5000),
			 -EINVAL);

	/* the bytes changed in place: detected, the reference dropped */
	flip(f, 5000 + 1234);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_int_equal(wh_store_corrupt(s), 1);
	assert_false(wh_store_has(s, h, sizeof(data)));
	assert_false(wh_store_has(s, h, sizeof(data)));

	/* another file under the name (other size): not trusted, dropped */
	mkfile(f, data, sizeof(data), 5000, &st);
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f, NULL, &st,
					  5000),
			 0);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), 0);
	mkfile(f, data, sizeof(data), 5001, &st);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_false(wh_store_has(s, h, sizeof(data)));
	/* a file that is gone: dropped */
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f, NULL, &st,
					  5001),
			 0);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), 0);
	unlink(f);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_false(wh_store_has(s, h, sizeof(data)));
	/* a reference past the end of its file, or one that does not
	 * parse: dropped, never read */
	mkfile(f, data, sizeof(data), 0, &st);
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f, NULL, &st,
					  10),
			 0);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_false(wh_store_has(s, h, sizeof(data)));
	assert_int_equal(wh_store_corrupt(s), 1);

	/* a stored chunk is preferred, and a corrupt one falls back on the
	 * reference */
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f, NULL, &st,
					  0),
			 0);
	assert_int_equal(wh_store_put(s, h, data, sizeof(data)), 0);
	assert_int_equal(wh_store_get_at(s, h, out, sizeof(out), &loc), 0);
	assert_int_equal(loc.ino, 0);
	snprintf(refp, sizeof(refp), "%s/chunks/%.2s/%s", dir, hex, hex);
	flip(refp, 77);
	assert_int_equal(wh_store_get_at(s, h, out, sizeof(out), &loc), 0);
	assert_memory_equal(out, data, sizeof(data));
	assert_int_equal(loc.ino, (uint64_t)st.st_ino);
	assert_int_equal(wh_store_corrupt(s), 2);
	wh_store_close(s);
}

static void test_refs_evicted(void **state)
{
	struct wh_store *s;
	static uint8_t all[64 * 1000];
	uint8_t h[64][32], out[1000];
	char f[128];
	struct stat st;
	int kept = 0;

	(void)state;
	snprintf(f, sizeof(f), "%s/dest", dir);
	/* 64 references take a block each (at least): over a store of 16
	 * blocks, the oldest go, though the bytes they name are not the
	 * store's */
	for (int i = 0; i < 64; i++)
		memset(all + i * 1000, i + 1, 1000);
	mkfile(f, all, sizeof(all), 0, &st);
	assert_int_equal(wh_store_open(dir, 16 * 4096, &s), 0);
	for (int i = 0; i < 64; i++) {
		wh_blake3(all + i * 1000, 1000, h[i]);
		assert_int_equal(wh_store_put_ref(s, h[i], 1000, f,
						  NULL, &st,
						  (uint64_t)i * 1000),
				 0);
	}
	wh_store_close(s);
	assert_int_equal(wh_store_open(dir, 16 * 4096, &s), 0);
	for (int i = 0; i < 64; i++)
		if (wh_store_get(s, h[i], out, sizeof(out)) == 0)
			kept++;
	assert_true(kept > 8 && kept <= 16);
	assert_int_equal(wh_store_corrupt(s), 0);
	wh_store_close(s);
}

/* logpath - the store's log */
static void logpath(char *buf, size_t size)
{
	snprintf(buf, size, "%s/chunks.log", dir);
}

static off_t fsize(const char *p)
{
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	return st.st_size;
}

/* a log cut short in a record (a crash or a full disk while writing),
 * or a record torn in the middle: the slots that do not check are
 * skipped, the others hold, and what is written next lands on a record
 * boundary */
static void test_log_torn(void **state)
{
	struct wh_store *s;
	uint8_t data[8][3000], h[8][32], out[3000];
	char lp[128];
	int fd;

	(void)state;
	logpath(lp, sizeof(lp));
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	for (int i = 0; i < 8; i++) {
		memset(data[i], 'a' + i, sizeof(data[i]));
		wh_blake3(data[i], sizeof(data[i]), h[i]);
		assert_int_equal(wh_store_put(s, h[i], data[i], 3000), 0);
	}
	wh_store_close(s);
	assert_int_equal(fsize(lp), 8 * 128);
	/* the last record cut in two, the third one's middle scribbled on */
	assert_int_equal(truncate(lp, 7 * 128 + 50), 0);
	fd = open(lp, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "garbage!", 8, 2 * 128 + 60), 8);
	close(fd);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	/* the files whose records were lost are found again (the store is
	 * scanned when its log was damaged) and every chunk verifies */
	for (int i = 0; i < 8; i++) {
		assert_true(wh_store_has(s, h[i], 3000));
		assert_int_equal(wh_store_get(s, h[i], out, 3000), 0);
		assert_memory_equal(out, data[i], 3000);
	}
	assert_int_equal(wh_store_corrupt(s), 0);
	wh_store_close(s);
	assert_int_equal(fsize(lp) % 128, 0);
	/* a log of nothing but garbage: never trusted, never a crash */
	fd = open(lp, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	for (int i = 0; i < 100; i++) {
		uint8_t junk[128];

		for (size_t k = 0; k < sizeof(junk); k++)
			junk[k] = (uint8_t)(i * 31 + k * 7);
		assert_int_equal(write(fd, junk, sizeof(junk)), 128);
	}
	close(fd);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(wh_store_get(s, h[i], out, 3000), 0);
	/* records of the right form that name what is not there */
	assert_int_equal(wh_store_apply_log(s, (const uint8_t *)data, 3000),
			 3000 / 128);
	wh_store_close(s);
}

/* the least recently used go first: a chunk read since it was put
 * outlives ones put before and after it; the limit holds, references
 * counting a block each */
static void test_eviction_order(void **state)
{
	struct wh_store *s;
	static uint8_t data[6][8192];
	uint8_t h[6][32], out[8192];
	char p[300], hex[65];
	int files = 0;

	(void)state;
	/* 6 chunks of two blocks into 10 blocks and a half (the log's
	 * 128-byte records count too): 5 fit.  The first is read after the
	 * fourth is put; the 6th puts the store over its limit, and the
	 * eviction (while open, down to 15/16 of the limit, or at close,
	 * down to it) takes the second, perhaps the third, never the first */
	assert_int_equal(wh_store_open(dir, 10 * 4096 + 2048, &s), 0);
	for (int i = 0; i < 6; i++) {
		memset(data[i], i + 1, sizeof(data[i]));
		wh_blake3(data[i], sizeof(data[i]), h[i]);
		assert_int_equal(wh_store_put(s, h[i], data[i], 8192), 0);
		if (i == 3)
			assert_int_equal(wh_store_get(s, h[0], out, 8192), 0);
	}
	wh_store_close(s);
	assert_int_equal(wh_store_open(dir, 10 * 4096 + 2048, &s), 0);
	assert_true(wh_store_has(s, h[0], 8192));
	assert_false(wh_store_has(s, h[1], 8192));
	for (int i = 3; i < 6; i++)
		assert_true(wh_store_has(s, h[i], 8192));
	wh_store_close(s);
	/* what was evicted is gone from the disk too */
	for (int i = 0; i < 6; i++) {
		wh_hash_hex(h[i], hex);
		snprintf(p, sizeof(p), "%s/chunks/%.2s/%s", dir, hex, hex);
		files += access(p, F_OK) == 0;
	}
	assert_true(files == 4 || files == 5);
}

/* du_dir - the bytes of the regular files under |d| (one level of
 * subdirectories: chunks/ab/...) */
static uint64_t du_dir(const char *d)
{
	char cmd[300];
	FILE *f;
	unsigned long long n = 0;

	snprintf(cmd, sizeof(cmd),
		 "find '%s' -type f -printf '%%s\\n' | awk '{s+=$1} END "
		 "{print s+0}'",
		 d);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%llu", &n), 1);
	pclose(f);
	return n;
}

/* files_in - how many files |d| holds */
static int files_in(const char *d)
{
	char cmd[300];
	FILE *f;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", d);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &n), 1);
	pclose(f);
	return n;
}

/* a store that is never closed (a mount) stays bounded: past its limit
 * it is evicted while open, and what it holds still reads right */
static void test_evicted_while_open(void **state)
{
	struct wh_store *s;
	static uint8_t data[400][8192];
	uint8_t h[400][32], out[8192];
	char cd[128];
	uint64_t limit = 256 * 1024, most = 0;
	int kept = 0;

	(void)state;
	snprintf(cd, sizeof(cd), "%s/chunks", dir);
	assert_int_equal(wh_store_open(dir, limit, &s), 0);
	/* 3.2 MB of chunks into 256 KiB */
	for (int i = 0; i < 400; i++) {
		memset(data[i], 0, sizeof(data[i]));
		memcpy(data[i], &i, sizeof(i));
		wh_blake3(data[i], sizeof(data[i]), h[i]);
		assert_int_equal(wh_store_put(s, h[i], data[i], 8192), 0);
		if (i % 50 == 49) {
			uint64_t du = du_dir(cd);

			most = du > most ? du : most;
		}
	}
	/* the eviction runs on its own thread: give it a moment */
	for (int t = 0; t < 500 && du_dir(cd) > limit; t++)
		usleep(10000);
	assert_true(wh_store_evictions(s) > 0);
	assert_true(du_dir(cd) <= limit);
	/* nor past twice the limit on the way, however far behind the
	 * eviction thread was: a put then evicts a batch itself */
	assert_true(most <= 2 * limit);
	for (int i = 0; i < 400; i++)
		if (wh_store_get(s, h[i], out, sizeof(out)) == 0) {
			assert_memory_equal(out, data[i], sizeof(out));
			kept++;
		}
	assert_true(kept >= 16 && kept <= 32);
	assert_true(wh_store_get(s, h[399], out, sizeof(out)) == 0);
	assert_int_equal(wh_store_corrupt(s), 0);
	wh_store_close(s);
}

struct reader {
	struct wh_store *s;
	uint8_t (*h)[32];
	int *upto, *stop; /* atomics */
	int got, wrong;
};

/* a reader of the chunks put lately, while they are evicted */
static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t out[8192];
	unsigned seed = 1;

	while (!__atomic_load_n(r->stop, __ATOMIC_ACQUIRE)) {
		int top = __atomic_load_n(r->upto, __ATOMIC_ACQUIRE), i;

		if (top < 1)
			continue;
		i = top - 1 - (int)(rand_r(&seed) % (top < 40 ? top : 40));
		if (wh_store_get(r->s, r->h[i], out, sizeof(out)) == 0) {
			int v;

			memcpy(&v, out, sizeof(v));
			r->got++;
			r->wrong += v != i;
		}
	}
	return NULL;
}

/* readers and a writer on one store past its limit: every read is right
 * or a miss, never another chunk's bytes nor a corrupt one */
static void test_read_while_evicted(void **state)
{
	struct wh_store *s;
	static uint8_t data[8192], h[600][32];
	int upto = 0, stop = 0;
	struct reader r[3];
	pthread_t t[3];

	(void)state;
	assert_int_equal(wh_store_open(dir, 128 * 1024, &s), 0);
	for (int i = 0; i < 3; i++) {
		r[i] = (struct reader){s, h, &upto, &stop, 0, 0};
		assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]),
				 0);
	}
	for (int i = 0; i < 600; i++) {
		memset(data, 0, sizeof(data));
		memcpy(data, &i, sizeof(i));
		wh_blake3(data, sizeof(data), h[i]);
		assert_int_equal(wh_store_put(s, h[i], data, sizeof(data)), 0);
		__atomic_store_n(&upto, i + 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(r[i].wrong, 0);
		assert_true(r[i].got > 0);
	}
	assert_int_equal(wh_store_corrupt(s), 0);
	wh_store_close(s);
}

/* a name file counts against the limit, and goes with the last
 * reference that names it (evicted, or found not to hold), so that
 * chunk-names/ stays bounded however many files gets wrote */
static void test_name_files_bounded(void **state)
{
	struct wh_store *s;
	uint8_t data[1000], h[32], out[1000];
	char f[128], nd[128];
	struct stat st;
	int kept = 0;

	(void)state;
	snprintf(nd, sizeof(nd), "%s/chunk-names", dir);
	/* 200 files of a chunk each: a reference (a block), its name file
	 * (a block) and its record each, into 16 blocks: 7 at most fit */
	assert_int_equal(wh_store_open(dir, 16 * 4096, &s), 0);
	for (int i = 0; i < 200; i++) {
		snprintf(f, sizeof(f), "%s/dest%d", dir, i);
		memset(data, i + 1, sizeof(data));
		mkfile(f, data, sizeof(data), 0, &st);
		wh_blake3(data, sizeof(data), h);
		assert_int_equal(wh_store_put_ref(s, h, 1000, f, NULL, &st, 0),
				 0);
	}
	for (int t = 0; t < 500 && files_in(nd) > 8; t++)
		usleep(10000);
	assert_true(files_in(nd) <= 8);
	wh_store_close(s);
	assert_true(files_in(nd) <= 7);
	assert_int_equal(wh_store_open(dir, 16 * 4096, &s), 0);
	for (int i = 0; i < 200; i++) {
		memset(data, i + 1, sizeof(data));
		wh_blake3(data, sizeof(data), h);
		if (wh_store_get(s, h, out, sizeof(out)) == 0)
			kept++;
	}
	assert_true(kept >= 5 && kept <= 7);
	assert_int_equal(files_in(nd), kept);
	/* the files go: their references are found not to hold, and their
	 * name files go at the next eviction (here, the close) */
	for (int i = 0; i < 200; i++) {
		snprintf(f, sizeof(f), "%s/dest%d", dir, i);
		unlink(f);
		memset(data, i + 1, sizeof(data));
		wh_blake3(data, sizeof(data), h);
		assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	}
	wh_store_close(s);
	assert_int_equal(files_in(nd), 0);
}

/* chunk files the log does not name: a store of the older layout (one
 * file per chunk and per reference, no log), or chunks an older binary
 * put into a store the log indexes.  They are used, counted and evicted;
 * the older layout's references are dropped */
static void test_older_layout(void **state)
{
	struct wh_store *s;
	static uint8_t data[8][8192];
	uint8_t h[8][32], out[8192];
	char p[300], sub[200], hex[65], cd[128];

	(void)state;
	snprintf(cd, sizeof(cd), "%s/chunks", dir);
	for (int i = 0; i < 8; i++) {
		memset(data[i], 0x30 + i, sizeof(data[i]));
		wh_blake3(data[i], sizeof(data[i]), h[i]);
	}
	/* the older layout: two chunks and a reference, no log */
	mkdir(cd, 0700);
	for (int i = 0; i < 3; i++) {
		struct stat st;

		wh_hash_hex(h[i], hex);
		snprintf(sub, sizeof(sub), "%s/%.2s", cd, hex);
		mkdir(sub, 0700);
		snprintf(p, sizeof(p), "%s/%s%s", sub, hex, i == 2 ? ".ref" : "");
		mkfile(p, data[i], sizeof(data[i]), 0, &st);
	}
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	assert_int_equal(wh_store_get(s, h[0], out, sizeof(out)), 0);
	assert_memory_equal(out, data[0], sizeof(out));
	assert_true(wh_store_has(s, h[1], 8192));
	assert_false(wh_store_has(s, h[2], 8192));
	assert_int_equal(access(p, F_OK), -1); /* the .ref went */
	/* an older binary puts chunks into the store while it is open */
	for (int i = 3; i < 8; i++) {
		struct stat st;

		wh_hash_hex(h[i], hex);
		snprintf(sub, sizeof(sub), "%s/%.2s", cd, hex);
		mkdir(sub, 0700);
		snprintf(p, sizeof(p), "%s/%s", sub, hex);
		mkfile(p, data[i], sizeof(data[i]), 0, &st);
	}
	for (int i = 3; i < 8; i++)
		assert_true(wh_store_has(s, h[i], 8192));
	assert_int_equal(wh_store_get(s, h[7], out, sizeof(out)), 0);
	assert_memory_equal(out, data[7], sizeof(out));
	wh_store_close(s);
	/* they count against the limit: 3 of 7 fit in 7 blocks, the ones
	 * named last */
	assert_int_equal(wh_store_open(dir, 7 * 4096, &s), 0);
	wh_store_close(s);
	assert_int_equal(files_in(cd), 3);
	assert_int_equal(wh_store_open(dir, 7 * 4096, &s), 0);
	for (int i = 5; i < 8; i++)
		assert_int_equal(wh_store_get(s, h[i], out, sizeof(out)), 0);
	wh_store_close(s);
}

/* two stores on one directory (a mount and a get): one sees the other's
 * entries as they are written, and after the other rewrote its log */
static void test_two_processes_share_the_log(void **state)
{
	struct wh_store *a, *b;
	static uint8_t all[4000 * 1000];
	uint8_t h[4000][32], out[1000];
	char f[128];
	struct stat st;

	(void)state;
	snprintf(f, sizeof(f), "%s/dest", dir);
	for (int i = 0; i < 4000; i++)
		memset(all + i * 1000, i, 1000), all[i * 1000] = (uint8_t)(i >> 8);
	mkfile(f, all, sizeof(all), 0, &st);
	assert_int_equal(wh_store_open(dir, 1ull << 30, &a), 0);
	assert_int_equal(wh_store_open(dir, 1ull << 30, &b), 0);
	for (int i = 0; i < 4000; i++) {
		wh_blake3(all + i * 1000, 1000, h[i]);
		assert_int_equal(wh_store_put_ref(a, h[i], 1000, f, NULL, &st,
						  (uint64_t)i * 1000),
				 0);
	}
	assert_true(wh_store_has(b, h[17], 1000));
	assert_int_equal(wh_store_get(b, h[3999], out, 1000), 0);
	/* a's store shrinks to 100 blocks: its log is rewritten (most of
	 * it is dead) and b reads the new one */
	wh_store_close(a);
	assert_int_equal(wh_store_open(dir, 100 * 4096, &a), 0);
	wh_store_close(a);
	assert_true(fsize(f) > 0);
	assert_false(wh_store_has(b, h[0], 1000));
	assert_int_equal(wh_store_get(b, h[3999], out, 1000), 0);
	assert_memory_equal(out, all + 3999 * 1000, 1000);
	wh_store_close(b);
	{
		char lp[128];

		logpath(lp, sizeof(lp));
		assert_true(fsize(lp) < 200 * 128);
	}
}

/* the same chunk in two files: each is referred to, so deleting the
 * newer still leaves the older */
static void test_refs_to_two_copies(void **state)
{
	struct wh_store *s;
	uint8_t data[5000], h[32], out[5000];
	char f1[128], f2[128];
	struct stat st1, st2;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 5 + 1);
	wh_blake3(data, sizeof(data), h);
	snprintf(f1, sizeof(f1), "%s/one", dir);
	snprintf(f2, sizeof(f2), "%s/two", dir);
	mkfile(f1, data, sizeof(data), 0, &st1);
	mkfile(f2, data, sizeof(data), 100, &st2);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f1, NULL, &st1,
					  0), 0);
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f2, NULL, &st2,
					  100), 0);
	wh_store_close(s);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	unlink(f2);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), 0);
	assert_memory_equal(out, data, sizeof(data));
	unlink(f1);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_false(wh_store_has(s, h, sizeof(data)));
	assert_int_equal(wh_store_corrupt(s), 0);
	wh_store_close(s);
}

static void test_manifest_cache(void **state)
{
	char mdir[128], file[128];
	struct wh_mcache *mc;
	struct wh_manifest m;
	struct stat st;
	unsigned long computed, hits;
	uint8_t buf[300000];
	int fd;

	(void)state;
	snprintf(mdir, sizeof(mdir), "%s/manifests", dir);
	snprintf(file, sizeof(file), "%s/f", dir);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 9));
	fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
	fstat(fd, &st);
	wh_manifest_init(&m);
	assert_int_equal(wh_mcache_open(mdir, &mc), 0);
	assert_int_equal(wh_mcache_get(mc, fd, &st, NULL, &m), 0);
	assert_int_equal(m.size, sizeof(buf));
	assert_int_equal(wh_mcache_get(mc, fd, &st, NULL, &m), 0);
	wh_mcache_stats(mc, &computed, &hits);
	assert_int_equal(computed, 1);
	assert_int_equal(hits, 1);
	wh_mcache_close(mc);
	/* a restart finds it on disk */
	assert_int_equal(wh_mcache_open(mdir, &mc), 0);
	assert_int_equal(wh_mcache_get(mc, fd, &st, NULL, &m), 0);
	wh_mcache_stats(mc, &computed, &hits);
	assert_int_equal(computed, 0);
	assert_int_equal(hits, 1);
	/* a changed file is a new version: hashed again */
	assert_int_equal(pwrite(fd, "x", 1, 0), 1);
	fstat(fd, &st);
	assert_int_equal(wh_mcache_get(mc, fd, &st, NULL, &m), 0);
	wh_mcache_stats(mc, &computed, &hits);
	assert_int_equal(computed, 1);
	wh_mcache_close(mc);
	wh_manifest_free(&m);
	close(fd);
}

static void test_small_hashes(void **state)
{
	char mdir[128], path[200];
	struct wh_mcache *mc;
	struct stat st, other;
	uint8_t h[WH_HASH_LEN], got[WH_HASH_LEN];
	unsigned long hits, misses;
	FILE *f;

	(void)state;
	snprintf(mdir, sizeof(mdir), "%s/manifests", dir);
	memset(&st, 0, sizeof(st));
	st.st_dev = 7;
	st.st_ino = 42;
	st.st_size = 1000;
	st.st_mtim.tv_sec = 1000;
	st.st_ctim.tv_sec = 2000;
	memset(h, 0xab, sizeof(h));
	assert_int_equal(wh_mcache_open(mdir, &mc), 0);
	assert_false(wh_mcache_hash_get(mc, &st, got));
	wh_mcache_hash_put(mc, &st, h);
	assert_true(wh_mcache_hash_get(mc, &st, got));
	assert_memory_equal(got, h, sizeof(h));
	/* any other identity: a ctime moved, an inode reused */
	other = st;
	other.st_ctim.tv_nsec = 1;
	assert_false(wh_mcache_hash_get(mc, &other, got));
	other = st;
	other.st_ino = 43;
	assert_false(wh_mcache_hash_get(mc, &other, got));
	/* many more than fit: the table stays bounded, the newest stay */
	for (uint64_t i = 0; i < 3 * WH_MCACHE_HASHES; i++) {
		other = st;
		other.st_ino = 1000 + i;
		wh_mcache_hash_put(mc, &other, h);
	}
	assert_true(wh_mcache_hash_get(mc, &other, got));
	wh_mcache_hash_put(mc, &st, h);
	wh_mcache_close(mc);
	/* saved at close, read back by the next one */
	assert_int_equal(wh_mcache_open(mdir, &mc), 0);
	assert_true(wh_mcache_hash_get(mc, &st, got));
	assert_memory_equal(got, h, sizeof(h));
	assert_true(wh_mcache_hash_get(mc, &other, got));
	wh_mcache_hash_stats(mc, &hits, &misses);
	assert_int_equal(hits, 2);
	assert_int_equal(misses, 0);
	wh_mcache_close(mc);
	/* a damaged file is not believed */
	snprintf(path, sizeof(path), "%s/small.whs", mdir);
	f = fopen(path, "r+b");
	assert_non_null(f);
	fseek(f, 20, SEEK_SET);
	fputc(0x55, f);
	fclose(f);
	assert_int_equal(wh_mcache_open(mdir, &mc), 0);
	assert_false(wh_mcache_hash_get(mc, &st, got));
	wh_mcache_close(mc);
	/* two processes saving to one directory: both kept */
	{
		struct wh_mcache *a, *b;

		assert_int_equal(wh_mcache_open(mdir, &a), 0);
		assert_int_equal(wh_mcache_open(mdir, &b), 0);
		other = st;
		other.st_ino = 9;
		wh_mcache_hash_put(a, &st, h);
		wh_mcache_hash_put(b, &other, h);
		wh_mcache_close(a);
		wh_mcache_close(b);
		assert_int_equal(wh_mcache_open(mdir, &mc), 0);
		assert_true(wh_mcache_hash_get(mc, &st, got));
		assert_true(wh_mcache_hash_get(mc, &other, got));
		wh_mcache_close(mc);
	}
	/* saved while open, not only at close: a process killed meanwhile
	 * (here: one that has not closed its cache yet) loses little */
	{
		struct wh_mcache *a, *b2;

		setenv("WH_MCACHE_SAVE_MS", "0", 1);
		assert_int_equal(wh_mcache_open(mdir, &a), 0);
		unsetenv("WH_MCACHE_SAVE_MS");
		other = st;
		other.st_ino = 77;
		wh_mcache_hash_put(a, &other, h);
		assert_int_equal(wh_mcache_open(mdir, &mc), 0);
		assert_true(wh_mcache_hash_get(mc, &other, got));
		wh_mcache_close(mc);
		/* with the usual period, the first put saves nothing */
		assert_int_equal(wh_mcache_open(mdir, &mc), 0);
		other.st_ino = 78;
		wh_mcache_hash_put(mc, &other, h);
		assert_int_equal(wh_mcache_open(mdir, &b2), 0);
		assert_false(wh_mcache_hash_get(b2, &other, got));
		wh_mcache_close(b2);
		wh_mcache_close(mc);
		wh_mcache_close(a);
	}
	/* just changed, or in the future: racy */
	clock_gettime(CLOCK_REALTIME, &st.st_ctim);
	assert_true(wh_mcache_racy(&st));
	st.st_ctim.tv_sec -= 5;
	assert_false(wh_mcache_racy(&st));
	st.st_mtim.tv_sec = st.st_ctim.tv_sec + 3600;
	assert_true(wh_mcache_racy(&st));
}

/* the test hooks' state: flags the test and a store's thread share */
static int hk_in, hk_go, hk_stalled, hk_calls;
static uint8_t hk_hash[32];

static void hk_reset(const uint8_t *hash)
{
	__atomic_store_n(&hk_in, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&hk_go, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&hk_stalled, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&hk_calls, 0, __ATOMIC_SEQ_CST);
	if (hash)
		memcpy(hk_hash, hash, 32);
}

/* hk_wait - until |*flag| is set, or |ms| passed: whether it was set */
static bool hk_wait(int *flag, int ms)
{
	for (int i = 0; i < ms && !__atomic_load_n(flag, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	return __atomic_load_n(flag, __ATOMIC_SEQ_CST) != 0;
}

/* the rewrite of the log stops after its live entries are written until
 * the test has used the store (10 s at most: then it was stalled) */
static int hook_compact(struct wh_store *s, const char *what,
			const uint8_t *hash)
{
	(void)s;
	(void)hash;
	if (strcmp(what, "compact") != 0 ||
	    __atomic_fetch_add(&hk_calls, 1, __ATOMIC_SEQ_CST) > 0)
		return 0;
	__atomic_store_n(&hk_in, 1, __ATOMIC_SEQ_CST);
	if (!hk_wait(&hk_go, 10000))
		__atomic_store_n(&hk_stalled, 1, __ATOMIC_SEQ_CST);
	return 0;
}

static void fake(int i, uint8_t h[32])
{
	memset(h, 0, 32);
	memcpy(h, &i, sizeof(i));
	h[31] = 0x5a;
}

/* while the log is rewritten, look-ups and puts go on (the rewrite does
 * not hold the store's lock throughout), and what they append meanwhile
 * is in the new log */
static void test_compaction_does_not_stall(void **state)
{
	struct wh_store *s;
	static uint8_t file[1000], data[6000], out[6000];
	uint8_t h[32], dh[32];
	char f[128], lp[128], crashed[200];
	struct timespec ago[2];
	struct stat st;

	(void)state;
	snprintf(f, sizeof(f), "%s/dest", dir);
	logpath(lp, sizeof(lp));
	mkfile(f, file, sizeof(file), 0, &st);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	wh_blake3(data, sizeof(data), dh);
	/* what a rewrite a crash cut short an hour ago left */
	snprintf(crashed, sizeof(crashed), "%s.77.1.tmp", lp);
	close(open(crashed, O_WRONLY | O_CREAT, 0600));
	clock_gettime(CLOCK_REALTIME, &ago[0]);
	ago[0].tv_sec -= 7200;
	ago[1] = ago[0];
	assert_int_equal(utimensat(AT_FDCWD, crashed, ago, 0), 0);
	hk_reset(NULL);
	wh_store_test_hook = hook_compact;
	/* 1000 references fit: 4000 leave the log mostly dead records */
	assert_int_equal(wh_store_open(dir, 1000 * (4096 + 128) + 4096, &s), 0);
	for (int i = 0; i < 4000; i++) {
		fake(i, h);
		assert_int_equal(wh_store_put_ref(s, h, 1000, f, NULL, &st,
						  (uint64_t)i),
				 0);
	}
	assert_true(hk_wait(&hk_in, 10000)); /* the rewrite began */
	/* the store answers while it is being rewritten */
	fake(3999, h);
	assert_true(wh_store_has(s, h, 1000));
	assert_int_equal(wh_store_put(s, dh, data, sizeof(data)), 0);
	assert_int_equal(wh_store_get(s, dh, out, sizeof(out)), 0);
	fake(4000, h);
	assert_int_equal(wh_store_put_ref(s, h, 1000, f, NULL, &st, 4000), 0);
	__atomic_store_n(&hk_go, 1, __ATOMIC_SEQ_CST);
	wh_store_close(s);
	wh_store_test_hook = NULL;
	assert_int_equal(hk_stalled, 0);
	assert_int_equal(access(crashed, F_OK), -1);
	/* the new log: small, and with what came during the rewrite */
	assert_true(fsize(lp) < 3000 * 128);
	assert_int_equal(wh_store_open(dir, 1000 * (4096 + 128) + 4096, &s), 0);
	assert_int_equal(wh_store_get(s, dh, out, sizeof(out)), 0);
	assert_memory_equal(out, data, sizeof(data));
	fake(4000, h);
	assert_true(wh_store_has(s, h, 1000));
	fake(3990, h);
	assert_true(wh_store_has(s, h, 1000));
	fake(0, h);
	assert_false(wh_store_has(s, h, 1000));
	wh_store_close(s);
}

/* the first write of chunk hk_hash waits until the test's second put of
 * it returned (1 s at most), then fails as a full disk would */
static int hook_fail_first(struct wh_store *s, const char *what,
			   const uint8_t *hash)
{
	(void)s;
	if (strcmp(what, "write") != 0 || memcmp(hash, hk_hash, 32) != 0 ||
	    __atomic_fetch_add(&hk_calls, 1, __ATOMIC_SEQ_CST) > 0)
		return 0;
	__atomic_store_n(&hk_in, 1, __ATOMIC_SEQ_CST);
	hk_wait(&hk_go, 1000);
	return -ENOSPC;
}

struct putter {
	struct wh_store *s;
	const uint8_t *h, *data;
	size_t len;
	int rv;
};

static void *put_main(void *arg)
{
	struct putter *p = arg;

	p->rv = wh_store_put(p->s, p->h, p->data, p->len);
	return NULL;
}

/* two puts of one chunk, the first of which fails to write it: the
 * second's success means the bytes are stored, in one process (it waits
 * for the first's outcome) or two (it writes them itself) */
static void second_writer(bool two)
{
	struct wh_store *a, *b;
	static uint8_t data[7000], out[7000];
	uint8_t h[32];
	struct putter p;
	pthread_t t;
	int rv;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + (two ? 1 : 2));
	wh_blake3(data, sizeof(data), h);
	hk_reset(h);
	wh_store_test_hook = hook_fail_first;
	assert_int_equal(wh_store_open(dir, 1 << 20, &a), 0);
	b = a;
	if (two)
		assert_int_equal(wh_store_open(dir, 1 << 20, &b), 0);
	p = (struct putter){a, h, data, sizeof(data), 1};
	assert_int_equal(pthread_create(&t, NULL, put_main, &p), 0);
	assert_true(hk_wait(&hk_in, 10000)); /* the first is writing */
	rv = wh_store_put(b, h, data, sizeof(data));
	__atomic_store_n(&hk_go, 1, __ATOMIC_SEQ_CST);
	pthread_join(t, NULL);
	wh_store_test_hook = NULL;
	assert_int_equal(rv, 0);
	/* in one process the first failed; in two, it found the second's */
	assert_int_equal(p.rv, two ? 0 : -ENOSPC);
	assert_int_equal(wh_store_get(b, h, out, sizeof(out)), 0);
	assert_memory_equal(out, data, sizeof(data));
	assert_int_equal(wh_store_get(a, h, out, sizeof(out)), 0);
	if (two)
		wh_store_close(b);
	wh_store_close(a);
	assert_int_equal(wh_store_open(dir, 1 << 20, &a), 0);
	assert_int_equal(wh_store_get(a, h, out, sizeof(out)), 0);
	wh_store_close(a);
}

static void test_second_writer_waits(void **state)
{
	(void)state;
	second_writer(false);
}

static void test_second_writer_in_another_process(void **state)
{
	(void)state;
	second_writer(true);
}

/* the write of chunk hk_hash waits until the test lets it go (10 s) */
static int hook_pause(struct wh_store *s, const char *what,
		      const uint8_t *hash)
{
	(void)s;
	if (strcmp(what, "write") != 0 || memcmp(hash, hk_hash, 32) != 0)
		return 0;
	__atomic_store_n(&hk_in, 1, __ATOMIC_SEQ_CST);
	hk_wait(&hk_go, 10000);
	return 0;
}

/* another process evicts a chunk between its record and its file (a get
 * and a mount on one cache directory): the file is not left outside the
 * log, where no eviction would see it */
static void test_put_evicted_by_another_process(void **state)
{
	struct wh_store *a, *b;
	static uint8_t data[9000], out[9000];
	uint8_t h[32];
	char cd[128];
	struct putter p;
	pthread_t t;

	(void)state;
	snprintf(cd, sizeof(cd), "%s/chunks", dir);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 17 + 5);
	wh_blake3(data, sizeof(data), h);
	hk_reset(h);
	wh_store_test_hook = hook_pause;
	assert_int_equal(wh_store_open(dir, 1 << 20, &a), 0);
	p = (struct putter){a, h, data, sizeof(data), 1};
	assert_int_equal(pthread_create(&t, NULL, put_main, &p), 0);
	assert_true(hk_wait(&hk_in, 10000)); /* its record is written */
	/* the other process holds nothing: it evicts every entry */
	assert_int_equal(wh_store_open(dir, 0, &b), 0);
	wh_store_close(b);
	__atomic_store_n(&hk_go, 1, __ATOMIC_SEQ_CST);
	pthread_join(t, NULL);
	wh_store_test_hook = NULL;
	assert_int_equal(p.rv, 0);
	wh_store_close(a);
	assert_int_equal(files_in(cd), 1);
	/* the log names it: a store of no size evicts it */
	assert_int_equal(wh_store_open(dir, 0, &b), 0);
	wh_store_close(b);
	assert_int_equal(files_in(cd), 0);
	assert_int_equal(wh_store_open(dir, 1 << 20, &a), 0);
	assert_int_equal(wh_store_get(a, h, out, sizeof(out)), -ENOENT);
	wh_store_close(a);
}

/* make_temporaries - empty files |old| (written two hours ago) and
 * |fresh| (now), as puts that died long ago and one in progress leave */
static void make_temporaries(const char *old, const char *fresh)
{
	struct timespec ago[2];

	close(open(old, O_WRONLY | O_CREAT, 0600));
	close(open(fresh, O_WRONLY | O_CREAT, 0600));
	clock_gettime(CLOCK_REALTIME, &ago[0]);
	ago[0].tv_sec -= 7200;
	ago[1] = ago[0];
	assert_int_equal(utimensat(AT_FDCWD, old, ago, 0), 0);
}

/* chunk files the log does not name (a process that died between the
 * eviction of its record and naming its file again, a log that lost its
 * tail) are found by the sweep without being asked for, counted and
 * evicted; a temporary file a crash left an hour ago goes */
static void test_sweep(void **state)
{
	struct wh_store *s;
	static uint8_t data[6][5000];
	uint8_t h[6][32];
	char p[300], sub[200], hex[65], cd[128], old[400], fresh[400];

	(void)state;
	snprintf(cd, sizeof(cd), "%s/chunks", dir);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	assert_int_equal(wh_store_put(s, (uint8_t[32]){0}, data[0], 10),
			 0); /* any chunk: the log is there */
	wh_store_close(s);
	for (int i = 0; i < 6; i++) {
		struct stat st;

		memset(data[i], 0x60 + i, sizeof(data[i]));
		wh_blake3(data[i], sizeof(data[i]), h[i]);
		wh_hash_hex(h[i], hex);
		snprintf(sub, sizeof(sub), "%s/%.2s", cd, hex);
		mkdir(sub, 0700);
		snprintf(p, sizeof(p), "%s/%s", sub, hex);
		mkfile(p, data[i], sizeof(data[i]), 0, &st);
	}
	snprintf(old, sizeof(old), "%s.1.2.3.tmp", p);
	snprintf(fresh, sizeof(fresh), "%s.1.2.4.tmp", p);
	make_temporaries(old, fresh);
	/* a store of no size evicts what the log names: not these */
	assert_int_equal(wh_store_open(dir, 0, &s), 0);
	wh_store_close(s);
	assert_int_equal(files_in(cd), 8);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	assert_int_equal(wh_store_sweep(s, 256), 6);
	assert_int_equal(wh_store_sweep(s, 256), 0); /* named now */
	wh_store_close(s);
	assert_int_equal(access(old, F_OK), -1);
	assert_int_equal(access(fresh, F_OK), 0);
	unlink(fresh);
	assert_int_equal(wh_store_open(dir, 0, &s), 0);
	wh_store_close(s);
	assert_int_equal(files_in(cd), 0);
}

/* the open's scan (a new log) deletes the temporary files crashes left,
 * but not one written in the last hour: that may be another process's put
 * in progress, which would fail */
static void test_scan_keeps_young_temporaries(void **state)
{
	struct wh_store *s;
	char sub[200], cd[128], old[400], fresh[400];

	(void)state;
	snprintf(cd, sizeof(cd), "%s/chunks", dir);
	mkdir(cd, 0700);
	snprintf(sub, sizeof(sub), "%s/ab", cd);
	mkdir(sub, 0700);
	snprintf(old, sizeof(old), "%s/ab%062d.1.2.3.tmp", sub, 0);
	snprintf(fresh, sizeof(fresh), "%s/ab%062d.1.2.4.tmp", sub, 0);
	make_temporaries(old, fresh);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	wh_store_close(s);
	assert_int_equal(access(old, F_OK), -1);
	assert_int_equal(access(fresh, F_OK), 0);
	unlink(fresh);
}

/* a file with a chunk's name in another chunk's subdirectory (no put
 * writes one there; a copy or a restore that moved files may) is not
 * entered at open nor by the sweep, where the store would count it
 * against its limit but look for it, and evict it, elsewhere: it goes */
static void test_misplaced_chunk_file(void **state)
{
	struct wh_store *s;
	static uint8_t data[3000];
	uint8_t h[32], out[3000];
	char p[300], sub[200], hex[65], cd[128];
	struct stat st;

	(void)state;
	snprintf(cd, sizeof(cd), "%s/chunks", dir);
	memset(data, 0x41, sizeof(data));
	wh_blake3(data, sizeof(data), h);
	wh_hash_hex(h, hex);
	for (int pass = 0; pass < 2; pass++) {
		/* pass 0: found by the open's scan (no log yet); pass 1: by
		 * the sweep (the log there, whole) */
		mkdir(cd, 0700);
		snprintf(sub, sizeof(sub), "%s/%02x", cd, (h[0] + 1) & 255);
		mkdir(sub, 0700);
		snprintf(p, sizeof(p), "%s/%s", sub, hex);
		mkfile(p, data, sizeof(data), 0, &st);
		assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
		if (pass == 1)
			assert_int_equal(wh_store_sweep(s, 256), 0);
		assert_false(wh_store_has(s, h, sizeof(data)));
		assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
		wh_store_close(s);
		assert_int_equal(access(p, F_OK), -1);
		/* the store of no size is empty */
		assert_int_equal(wh_store_open(dir, 0, &s), 0);
		wh_store_close(s);
		assert_int_equal(files_in(cd), 0);
	}
}

/* a process that dies while it rewrites the log (its new log written in
 * part) leaves the old log, whole: the next one reads every entry */
static int hook_die(struct wh_store *s, const char *what, const uint8_t *hash)
{
	(void)s;
	(void)hash;
	if (strcmp(what, "compact") == 0)
		_exit(3);
	return 0;
}

static void test_compaction_crash(void **state)
{
	struct wh_store *s;
	static uint8_t file[1000];
	uint8_t h[32];
	char f[128];
	struct stat st;
	int status, *last;
	pid_t pid;

	(void)state;
	snprintf(f, sizeof(f), "%s/dest", dir);
	mkfile(f, file, sizeof(file), 0, &st);
	last = mmap(NULL, sizeof(*last), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(last != MAP_FAILED);
	*last = -1;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		wh_store_test_hook = hook_die;
		if (wh_store_open(dir, 1000 * (4096 + 128) + 4096, &s) != 0)
			_exit(1);
		for (int i = 0; i < 4000; i++) {
			fake(i, h);
			if (wh_store_put_ref(s, h, 1000, f, NULL, &st,
					     (uint64_t)i) != 0)
				_exit(2);
			__atomic_store_n(last, i, __ATOMIC_SEQ_CST);
			if (i == 3999)
				sleep(10); /* the rewrite comes */
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 3);
	/* every reference put before the crash that was not evicted */
	assert_true(*last > 2000);
	assert_int_equal(wh_store_open(dir, 1000 * (4096 + 128) + 4096, &s), 0);
	for (int i = *last; i > *last - 900; i--) {
		fake(i, h);
		assert_true(wh_store_has(s, h, 1000));
	}
	fake(0, h);
	assert_false(wh_store_has(s, h, 1000));
	munmap(last, sizeof(*last));
	wh_store_close(s);
	/* and this one's rewrite went through */
	{
		char lp[128];

		logpath(lp, sizeof(lp));
		assert_true(fsize(lp) < 3000 * 128);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_corrupt, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_chunk_file_shapes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs_evicted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_log_torn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eviction_order, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_evicted_while_open, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_read_while_evicted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_name_files_bounded, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_older_layout, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_two_processes_share_the_log,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs_to_two_copies, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_small_hashes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_manifest_cache, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_compaction_does_not_stall,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_writer_waits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_second_writer_in_another_process, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_put_evicted_by_another_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction_crash, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_keeps_young_temporaries,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_misplaced_chunk_file, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
