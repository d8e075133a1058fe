/*
 * test_mcache.c - the host's manifest cache files on disk
 * (src/host/wh_mcache.c): a file with a right checksum but a manifest the
 * chunker cannot have made is not believed; the file is hashed again.
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
	assert_int_equal(wh_mcache_get(mc, fd, &st, &m), 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_overlong_chunk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
