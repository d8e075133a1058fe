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
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
	FILE *fp;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + (i >> 8));
	wh_blake3(data, sizeof(data), h);
	wh_hash_hex(h, hex);
	snprintf(f, sizeof(f), "%s/dest", dir);
	snprintf(tmp, sizeof(tmp), "%s/.dest.part", dir);
	assert_int_equal(wh_store_open(dir, 1 << 20, &s), 0);
	snprintf(refp, sizeof(refp), "%s/chunks/%.2s/%s.ref", dir, hex, hex);

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
	assert_int_equal(access(refp, F_OK), 0);
	/* relative names are refused */
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), "dest", NULL,
					  &st, 5000),
			 -EINVAL);

	/* the bytes changed in place: detected, the reference dropped */
	flip(f, 5000 + 1234);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_int_equal(wh_store_corrupt(s), 1);
	assert_int_equal(access(refp, F_OK), -1);
	assert_false(wh_store_has(s, h, sizeof(data)));

	/* another file under the name (other size): not trusted, dropped */
	mkfile(f, data, sizeof(data), 5000, &st);
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f, NULL, &st,
					  5000),
			 0);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), 0);
	mkfile(f, data, sizeof(data), 5001, &st);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_int_equal(access(refp, F_OK), -1);
	/* a file that is gone: dropped */
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f, NULL, &st,
					  5001),
			 0);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), 0);
	unlink(f);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_int_equal(access(refp, F_OK), -1);
	/* a reference past the end of its file, or one that does not
	 * parse: dropped, never read */
	mkfile(f, data, sizeof(data), 0, &st);
	assert_int_equal(wh_store_put_ref(s, h, sizeof(data), f, NULL, &st,
					  10),
			 0);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_int_equal(access(refp, F_OK), -1);
	fp = fopen(refp, "wb");
	assert_non_null(fp);
	fputs("WHREF01\nnot a reference", fp);
	fclose(fp);
	assert_int_equal(wh_store_get(s, h, out, sizeof(out)), -ENOENT);
	assert_int_equal(access(refp, F_OK), -1);
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
	assert_int_equal(wh_mcache_get(mc, fd, &st, &m), 0);
	assert_int_equal(m.size, sizeof(buf));
	assert_int_equal(wh_mcache_get(mc, fd, &st, &m), 0);
	wh_mcache_stats(mc, &computed, &hits);
	assert_int_equal(computed, 1);
	assert_int_equal(hits, 1);
	wh_mcache_close(mc);
	/* a restart finds it on disk */
	assert_int_equal(wh_mcache_open(mdir, &mc), 0);
	assert_int_equal(wh_mcache_get(mc, fd, &st, &m), 0);
	wh_mcache_stats(mc, &computed, &hits);
	assert_int_equal(computed, 0);
	assert_int_equal(hits, 1);
	/* a changed file is a new version: hashed again */
	assert_int_equal(pwrite(fd, "x", 1, 0), 1);
	fstat(fd, &st);
	assert_int_equal(wh_mcache_get(mc, fd, &st, &m), 0);
	wh_mcache_stats(mc, &computed, &hits);
	assert_int_equal(computed, 1);
	wh_mcache_close(mc);
	wh_manifest_free(&m);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_corrupt, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs_evicted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_manifest_cache, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
