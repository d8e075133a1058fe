/*
 * fuzz_mcache.c - the host's manifest cache files on disk, as a crash, a
 * full disk or another program may leave them.  Input: u8 mode, then the
 * bytes, which become the cache file of a real shared file (a little over
 * WH_CDC_MAX bytes).  Mode % 3 == 0: the bytes as they are; 1: they are
 * the entries part, framed with the magic, the file's own key and a right
 * checksum (so what follows the checksum is reached); 2: they are XORed
 * into the file the cache itself wrote (all zeros: that file unchanged).
 * Whatever the file holds, the cache opens, looks up and closes without a
 * crash or a leak; a manifest it hands out is well formed (chunks in
 * order, none empty or longer than WH_CDC_MAX, covering the file
 * exactly), and one read from a file without a right checksum made by us
 * is the file's real manifest.  (Hashing the file again when the lookup
 * finds nothing is tests/unit/test_mcache.c's: at this size it is too
 * slow for a fuzzer.)
 */
#include <dirent.h>
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

#define FILE_SIZE (WH_CDC_MAX + 54321) /* a chunk could be too long */
#define MAX_FILE (1 << 20)                /* the most cache bytes we write */

static char base[64], cdir[128], cpath[512];
static int fd = -1;
static struct stat st;
static struct wh_manifest real;
static uint8_t own[MAX_FILE]; /* the file the cache wrote */
static size_t own_len;
static uint8_t buf[MAX_FILE + 128];

static void rm_base(void)
{
	fuzz_rm_tree(base);
}

static bool same(const struct wh_manifest *a, const struct wh_manifest *b)
{
	if (a->n != b->n || a->size != b->size)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->chunks[i].offset != b->chunks[i].offset ||
		    a->chunks[i].length != b->chunks[i].length ||
		    memcmp(a->chunks[i].hash, b->chunks[i].hash, WH_HASH_LEN))
			return false;
	return true;
}

static void check_form(const struct wh_manifest *m)
{
	uint64_t off = 0;

	for (size_t i = 0; i < m->n; i++) {
		if (m->chunks[i].offset != off || m->chunks[i].length == 0 ||
		    m->chunks[i].length > WH_CDC_MAX)
			abort();
		off += m->chunks[i].length;
	}
	if (off != (uint64_t)st.st_size || m->size != off)
		abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct wh_mcache *mc;
	struct dirent *de;
	uint8_t *content;
	char p[256];
	DIR *d;
	int n = 0;

	(void)argc;
	(void)argv;
	snprintf(base, sizeof(base), "/tmp/wh-fuzz-mcache-%d", (int)getpid());
	if (mkdir(base, 0700) != 0)
		abort();
	atexit(rm_base);
	snprintf(cdir, sizeof(cdir), "%s/cache", base);
	/* a shared file of a few chunks' worth of varied bytes */
	content = malloc(FILE_SIZE);
	if (!content)
		abort();
	for (size_t i = 0; i < FILE_SIZE; i++)
		content[i] = (uint8_t)((i * 2654435761u) >> 13);
	snprintf(p, sizeof(p), "%s/f", base);
	fuzz_put_file(p, content, FILE_SIZE);
	free(content);
	fd = open(p, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) != 0)
		abort();
	wh_manifest_init(&real);
	if (wh_manifest_build(fd, &real) != 0)
		abort();
	/* the cache writes the one file it keeps for it: learn its name */
	if (wh_mcache_open(cdir, &mc) != 0 || wh_mcache_put(mc, &st, &real))
		abort();
	wh_mcache_close(mc);
	d = opendir(cdir);
	if (!d)
		abort();
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(cpath, sizeof(cpath), "%s/%s", cdir, de->d_name);
		n++;
	}
	closedir(d);
	if (n != 1)
		abort();
	{
		int f = open(cpath, O_RDONLY);

		ssize_t r = f < 0 ? -1 : read(f, own, sizeof(own));

		if (r < 44 + 8 + WH_HASH_LEN || (size_t)r == sizeof(own))
			abort();
		own_len = (size_t)r;
		close(f);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wh_manifest m;
	struct wh_mcache *mc;
	size_t n;
	bool sealed;
	int rv;

	if (size < 1 || size - 1 > MAX_FILE)
		return 0;
	sealed = data[0] % 3 == 1;
	if (sealed) {
		memcpy(buf, own, 44); /* "WHM1" and the key */
		memcpy(buf + 44, data + 1, size - 1);
		n = 44 + size - 1;
		wh_blake3(buf, n, buf + n);
		n += WH_HASH_LEN;
	} else if (data[0] % 3 == 2) {
		n = size - 1 > own_len ? size - 1 : own_len;
		memset(buf, 0, n);
		memcpy(buf, own, own_len);
		for (size_t i = 0; i + 1 < size; i++)
			buf[i] ^= data[1 + i];
	} else {
		n = size - 1;
		memcpy(buf, data + 1, n);
	}
	fuzz_put_file(cpath, buf, n);
	if (wh_mcache_open(cdir, &mc) != 0)
		abort();
	wh_manifest_init(&m);
	rv = wh_mcache_lookup(mc, &st, &m);
	if (rv == 0) {
		check_form(&m);
		if (!sealed && !same(&m, &real))
			abort(); /* an unchecked file was believed */
	} else if (rv != -ENOENT) {
		abort();
	}
	/* what was found is kept: asked again, the same */
	if (rv == 0) {
		struct wh_manifest again;

		wh_manifest_init(&again);
		if (wh_mcache_get(mc, fd, &st, NULL, &again) != 0 ||
		    !same(&m, &again))
			abort();
		wh_manifest_free(&again);
	}
	wh_manifest_free(&m);
	wh_mcache_close(mc);
	return 0;
}
