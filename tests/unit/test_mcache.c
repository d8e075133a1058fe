/*
 * test_mcache.c - the host's manifest cache files on disk
 * (src/host/wh_mcache.c): a file with a right checksum but a manifest the
 * chunker cannot have made is not believed; the file is hashed again.  A
 * new version of a file is hashed with the old version's manifest, to the
 * same chunks as hashed afresh, and across names it is not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "host/wh_mcache.h"

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* the one file in |dir| */
static void only_file(const char *dir, char *out, size_t size)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(out, size, "%s/%s", dir, de->d_name);
		n++;
	}
	closedir(d);
	assert_int_equal(n, 1);
}

/* a cache file with one chunk longer than WH_CDC_MAX, checksum right */
static void test_overlong_chunk(void **state)
{
	char dir[] = "/tmp/wh-test-mcache-XXXXXX", p[256], cdir[300],
	     cpath[600];
	uint8_t buf[52 + 44 + WH_HASH_LEN];
	struct wh_manifest real, m;
	struct wh_mcache *mc;
	struct stat st;
	int fd, cfd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/f", dir);
	snprintf(cdir, sizeof(cdir), "%s/cache", dir);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, WH_CDC_MAX + 4096), 0);
	assert_int_equal(fstat(fd, &st), 0);
	wh_manifest_init(&real);
	wh_manifest_init(&m);
	assert_int_equal(wh_manifest_build(fd, &real), 0);
	assert_true(real.n >= 2);

	assert_int_equal(wh_mcache_open(cdir, &mc), 0);
	assert_int_equal(wh_mcache_put(mc, &st, &real), 0);
	wh_mcache_close(mc);
	only_file(cdir, cpath, sizeof(cpath));

	/* keep the magic and the key, say one chunk covers the file */
	cfd = open(cpath, O_RDWR);
	assert_true(cfd >= 0);
	assert_int_equal(read(cfd, buf, 44), 44);
	put_le(buf + 44, 1, 8);
	put_le(buf + 52, 0, 8);
	put_le(buf + 60, (uint64_t)st.st_size, 4);
	memcpy(buf + 64, real.chunks[0].hash, WH_HASH_LEN);
	wh_blake3(buf, 96, buf + 96);
	assert_int_equal(pwrite(cfd, buf, sizeof(buf), 0), sizeof(buf));
	assert_int_equal(ftruncate(cfd, sizeof(buf)), 0);
	close(cfd);

	assert_int_equal(wh_mcache_open(cdir, &mc), 0);
	assert_int_equal(wh_mcache_lookup(mc, &st, &m), -ENOENT);
	assert_int_equal(wh_mcache_get(mc, fd, &st, NULL, &m), 0);
	assert_int_equal(m.n, real.n);
	for (size_t i = 0; i < m.n; i++) {
		assert_true(m.chunks[i].length <= WH_CDC_MAX);
		assert_memory_equal(m.chunks[i].hash, real.chunks[i].hash,
				    WH_HASH_LEN);
	}
	wh_mcache_close(mc);

	wh_manifest_free(&m);
	wh_manifest_free(&real);
	close(fd);
	unlink(cpath);
	rmdir(cdir);
	unlink(p);
	rmdir(dir);
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		p[i] = (uint8_t)(seed >> 56);
	}
}

static void assert_same(const struct wh_manifest *a,
			const struct wh_manifest *b)
{
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->size, b->size);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->chunks[i].offset, b->chunks[i].offset);
		assert_int_equal(a->chunks[i].length, b->chunks[i].length);
		assert_memory_equal(a->chunks[i].hash, b->chunks[i].hash,
				    WH_HASH_LEN);
	}
}

/* the manifest of |fd| through the cache under |name|, checked against
 * hashing it afresh; the file is given an mtime of its own first (two
 * writes within a clock tick may leave it the same) */
static void get_checked(struct wh_mcache *mc, int fd, const char *name)
{
	static time_t t = 1000000000;
	struct timespec ts[2] = { { t, 0 }, { t, 0 } };
	struct wh_manifest m, fresh;
	struct stat st;

	t++;
	assert_int_equal(futimens(fd, ts), 0);
	wh_manifest_init(&m);
	wh_manifest_init(&fresh);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(wh_mcache_get(mc, fd, &st, name, &m), 0);
	assert_int_equal(wh_manifest_build(fd, &fresh), 0);
	assert_same(&m, &fresh);
	wh_manifest_free(&m);
	wh_manifest_free(&fresh);
}

/* a file changed in place (a tenth overwritten), then replaced by a copy
 * with one byte inserted at its start (a new inode under the same name),
 * is hashed with the manifest of the version before, which gives most of
 * its bytes; the same file under another name is hashed in full; after a
 * restart the versions before are not known */
static void test_new_version_hinted(void **state)
{
	const size_t n = 24u << 20;
	char dir[] = "/tmp/wh-test-mcache-XXXXXX", p[256], p2[256], cdir[300];
	uint8_t *d = malloc(n + 1);
	struct wh_mcache *mc;
	unsigned long hinted;
	uint64_t kept;
	int fd;

	(void)state;
	assert_non_null(d);
	assert_non_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/f", dir);
	snprintf(p2, sizeof(p2), "%s/f.new", dir);
	snprintf(cdir, sizeof(cdir), "%s/cache", dir);
	fill_random(d, n, 5);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, d, n), (ssize_t)n);
	assert_int_equal(wh_mcache_open(cdir, &mc), 0);
	get_checked(mc, fd, "f");
	wh_mcache_hint_stats(mc, &hinted, &kept);
	assert_int_equal(hinted, 0);

	fill_random(d + n / 3, n / 10, 6);
	assert_int_equal(pwrite(fd, d + n / 3, n / 10, n / 3), (ssize_t)(n / 10));
	get_checked(mc, fd, "f");
	wh_mcache_hint_stats(mc, &hinted, &kept);
	assert_int_equal(hinted, 1);
	assert_true(kept >= n / 2 && kept < n - n / 10);
	close(fd);

	fd = open(p2, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(write(fd, d, n), (ssize_t)n);
	assert_int_equal(rename(p2, p), 0);
	get_checked(mc, fd, "f");
	wh_mcache_hint_stats(mc, &hinted, &kept);
	assert_int_equal(hinted, 2);
	assert_true(kept >= n / 2 + (n - 3 * WH_CDC_MAX));

	/* another name has no version before */
	assert_int_equal(pwrite(fd, "y", 1, 0), 1);
	get_checked(mc, fd, "g");
	wh_mcache_hint_stats(mc, &hinted, &kept);
	assert_int_equal(hinted, 2);
	wh_mcache_close(mc);
	/* the names outlive a restart: the first change after it is
	 * hashed with the old manifest too */
	assert_int_equal(pwrite(fd, "z", 1, 0), 1);
	assert_int_equal(wh_mcache_open(cdir, &mc), 0);
	get_checked(mc, fd, "g");
	wh_mcache_hint_stats(mc, &hinted, &kept);
	assert_int_equal(hinted, 1);
	assert_true(kept >= n - 2 * WH_CDC_MAX);
	wh_mcache_close(mc);
	/* a torn or foreign names file is not believed: nothing hinted */
	{
		char np[400];
		int nfd;

		snprintf(np, sizeof(np), "%s/names.whn", cdir);
		nfd = open(np, O_WRONLY);
		assert_true(nfd >= 0);
		assert_int_equal(pwrite(nfd, "X", 1, 20), 1);
		close(nfd);
	}
	assert_int_equal(pwrite(fd, "w", 1, 0), 1);
	assert_int_equal(wh_mcache_open(cdir, &mc), 0);
	get_checked(mc, fd, "g");
	wh_mcache_hint_stats(mc, &hinted, &kept);
	assert_int_equal(hinted, 0);
	wh_mcache_close(mc);

	close(fd);
	unlink(p);
	free(d);
	{
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cdir);
		assert_int_equal(system(cmd), 0);
	}
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_overlong_chunk),
		cmocka_unit_test(test_new_version_hinted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
