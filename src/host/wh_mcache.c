/*
 * wh_mcache.c - manifests by file version, in memory and on disk.
 *
 * On-disk format, one file per version, named by the hex BLAKE3 of the
 * key: "WHM1", the 40-byte key, u64 chunk count, then per chunk u64
 * offset, u32 length and the 32-byte hash (all little-endian), then the
 * BLAKE3 of everything before it.  A file that does not check out is
 * ignored (and recomputed), so a torn or corrupted entry costs a rehash,
 * never a wrong manifest.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/wh_fsutil.h"
#include "common/wh_log.h"
#include "host/wh_mcache.h"

#define MEM_ENTRIES 256
#define MAGIC "WHM1"

struct key {
	uint64_t dev, ino, size, mtime_ns, ctime_ns;
};

struct entry {
	struct key key;
	struct wh_manifest m;
	uint64_t used; /* LRU clock */
};

struct wh_mcache {
	char *dir;
	pthread_mutex_t lock;
	struct entry mem[MEM_ENTRIES]; /* protected by lock */
	size_t nmem;                   /* protected by lock */
	uint64_t clock;                /* protected by lock */
	unsigned long computed, hits;  /* protected by lock */
};

static void key_of(const struct stat *st, struct key *k)
{
	memset(k, 0, sizeof(*k));
	k->dev = st->st_dev;
	k->ino = st->st_ino;
	k->size = (uint64_t)st->st_size;
	k->mtime_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000ULL +
		      (uint64_t)st->st_mtim.tv_nsec;
	k->ctime_ns = (uint64_t)st->st_ctim.tv_sec * 1000000000ULL +
		      (uint64_t)st->st_ctim.tv_nsec;
}

static int copy_manifest(const struct wh_manifest *src, struct wh_manifest *dst)
{
	struct wh_chunk *c = NULL;

	if (src->n) {
		c = malloc(src->n * sizeof(*c));
		if (!c)
			return -ENOMEM;
		memcpy(c, src->chunks, src->n * sizeof(*c));
	}
	free(dst->chunks);
	dst->chunks = c;
	dst->n = dst->cap = src->n;
	dst->size = src->size;
	return 0;
}

char *wh_mcache_default_dir(void)
{
	return wh_cache_home("manifests");
}


int wh_mcache_open(const char *dir, struct wh_mcache **pmc)
{
	struct wh_mcache *mc = calloc(1, sizeof(*mc));
	int rv;

	if (!mc)
		return -ENOMEM;
	pthread_mutex_init(&mc->lock, NULL);
	if (dir) {
		rv = wh_mkdirs(dir);
		if (rv < 0) {
			wh_mcache_close(mc);
			return rv;
		}
		mc->dir = strdup(dir);
		if (!mc->dir) {
			wh_mcache_close(mc);
			return -ENOMEM;
		}
	}
	*pmc = mc;
	return 0;
}

void wh_mcache_close(struct wh_mcache *mc)
{
	if (!mc)
		return;
	for (size_t i = 0; i < mc->nmem; i++)
		wh_manifest_free(&mc->mem[i].m);
	free(mc->dir);
	pthread_mutex_destroy(&mc->lock);
	free(mc);
}

void wh_mcache_stats(struct wh_mcache *mc, unsigned long *computed,
		     unsigned long *hits)
{
	pthread_mutex_lock(&mc->lock);
	*computed = mc->computed;
	*hits = mc->hits;
	pthread_mutex_unlock(&mc->lock);
}

/* ------------------------------------------------------------ memory */

static bool mem_get(struct wh_mcache *mc, const struct key *k,
		    struct wh_manifest *out, int *rv)
{
	bool found = false;

	pthread_mutex_lock(&mc->lock);
	for (size_t i = 0; i < mc->nmem; i++) {
		if (memcmp(&mc->mem[i].key, k, sizeof(*k)) == 0) {
			mc->mem[i].used = ++mc->clock;
			*rv = copy_manifest(&mc->mem[i].m, out);
			mc->hits++;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&mc->lock);
	return found;
}

static void mem_put(struct wh_mcache *mc, const struct key *k,
		    const struct wh_manifest *m)
{
	struct entry *e = NULL;

	pthread_mutex_lock(&mc->lock);
	for (size_t i = 0; i < mc->nmem; i++)
		if (memcmp(&mc->mem[i].key, k, sizeof(*k)) == 0)
			e = &mc->mem[i];
	if (!e && mc->nmem < MEM_ENTRIES) {
		e = &mc->mem[mc->nmem++];
		wh_manifest_init(&e->m);
	} else if (!e) {
		e = &mc->mem[0];
		for (size_t i = 1; i < mc->nmem; i++)
			if (mc->mem[i].used < e->used)
				e = &mc->mem[i];
	}
	e->key = *k;
	e->used = ++mc->clock;
	if (copy_manifest(m, &e->m) < 0) {
		/* keep the table consistent: forget this slot */
		memset(&e->key, 0xff, sizeof(e->key));
	}
	pthread_mutex_unlock(&mc->lock);
}

/* -------------------------------------------------------------- disk */

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void key_bytes(const struct key *k, uint8_t out[40])
{
	put_le(out, k->dev, 8);
	put_le(out + 8, k->ino, 8);
	put_le(out + 16, k->size, 8);
	put_le(out + 24, k->mtime_ns, 8);
	put_le(out + 32, k->ctime_ns, 8);
}

static void disk_path(struct wh_mcache *mc, const struct key *k, char *buf,
		      size_t size)
{
	uint8_t kb[40], h[WH_HASH_LEN];
	char hex[65];

	key_bytes(k, kb);
	wh_blake3(kb, sizeof(kb), h);
	wh_hash_hex(h, hex);
	snprintf(buf, size, "%s/%s", mc->dir, hex);
}

static bool disk_get(struct wh_mcache *mc, const struct key *k,
		     struct wh_manifest *out)
{
	char path[4200];
	uint8_t kb[40], h[WH_HASH_LEN], *buf = NULL;
	struct stat st;
	size_t len, n;
	bool ok = false;
	int fd;

	if (!mc->dir)
		return false;
	disk_path(mc, k, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) != 0 || st.st_size < 4 + 40 + 8 + WH_HASH_LEN ||
	    st.st_size > (1LL << 31))
		goto out;
	len = (size_t)st.st_size;
	buf = malloc(len);
	if (!buf || pread(fd, buf, len, 0) != (ssize_t)len)
		goto out;
	key_bytes(k, kb);
	wh_blake3(buf, len - WH_HASH_LEN, h);
	if (memcmp(buf, MAGIC, 4) || memcmp(buf + 4, kb, 40) ||
	    memcmp(h, buf + len - WH_HASH_LEN, WH_HASH_LEN))
		goto out;
	n = (size_t)get_le(buf + 44, 8);
	if (n > (len - 52 - WH_HASH_LEN) / 44 ||
	    52 + n * 44 + WH_HASH_LEN != len)
		goto out;
	free(out->chunks);
	out->chunks = n ? calloc(n, sizeof(*out->chunks)) : NULL;
	if (n && !out->chunks)
		goto out;
	out->n = out->cap = n;
	out->size = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = buf + 52 + i * 44;

		out->chunks[i].offset = get_le(e, 8);
		out->chunks[i].length = (uint32_t)get_le(e + 8, 4);
		memcpy(out->chunks[i].hash, e + 12, WH_HASH_LEN);
		if (out->chunks[i].offset != out->size ||
		    out->chunks[i].length == 0)
			goto out;
		out->size += out->chunks[i].length;
	}
	ok = out->size == k->size;
out:
	free(buf);
	close(fd);
	return ok;
}

static void disk_put(struct wh_mcache *mc, const struct key *k,
		     const struct wh_manifest *m)
{
	char path[4200], tmp[4300];
	size_t len = 52 + m->n * 44 + WH_HASH_LEN;
	uint8_t *buf;
	int fd;

	if (!mc->dir)
		return;
	buf = malloc(len);
	if (!buf)
		return;
	memcpy(buf, MAGIC, 4);
	key_bytes(k, buf + 4);
	put_le(buf + 44, m->n, 8);
	for (size_t i = 0; i < m->n; i++) {
		uint8_t *e = buf + 52 + i * 44;

		put_le(e, m->chunks[i].offset, 8);
		put_le(e + 8, m->chunks[i].length, 4);
		memcpy(e + 12, m->chunks[i].hash, WH_HASH_LEN);
	}
	wh_blake3(buf, len - WH_HASH_LEN, buf + len - WH_HASH_LEN);
	disk_path(mc, k, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.%d.%lu.tmp", path, (int)getpid(),
		 (unsigned long)pthread_self());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		bool ok = write(fd, buf, len) == (ssize_t)len;

		close(fd);
		if (!ok || rename(tmp, path) != 0) {
			unlink(tmp);
			wh_debug("cannot store a manifest in %s", mc->dir);
		}
	}
	free(buf);
}

int wh_mcache_get(struct wh_mcache *mc, int fd, const struct stat *st,
		  struct wh_manifest *out)
{
	struct stat after;
	struct key k, k2;
	int rv = 0;

	key_of(st, &k);
	if (mem_get(mc, &k, out, &rv))
		return rv;
	if (disk_get(mc, &k, out)) {
		pthread_mutex_lock(&mc->lock);
		mc->hits++;
		pthread_mutex_unlock(&mc->lock);
		mem_put(mc, &k, out);
		return 0;
	}
	rv = wh_manifest_build(fd, out);
	if (rv < 0)
		return rv;
	if (fstat(fd, &after) != 0)
		return -errno;
	key_of(&after, &k2);
	if (memcmp(&k, &k2, sizeof(k)) != 0 || out->size != k.size)
		return -EAGAIN; /* changed while we read it */
	pthread_mutex_lock(&mc->lock);
	mc->computed++;
	pthread_mutex_unlock(&mc->lock);
	mem_put(mc, &k, out);
	disk_put(mc, &k, out);
	return 0;
}

int wh_mcache_put(struct wh_mcache *mc, const struct stat *st,
		  const struct wh_manifest *m)
{
	struct key k;

	key_of(st, &k);
	if (m->size != k.size)
		return -EINVAL;
	mem_put(mc, &k, m);
	disk_put(mc, &k, m);
	return 0;
}
