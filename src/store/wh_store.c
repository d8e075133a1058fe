/* wh_store.c - content-addressed chunks on disk, verified on every read. */
#include <dirent.h>
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
#include "io/wh_io.h"
#include "store/wh_store.h"

struct wh_store {
	char *dir; /* .../chunks */
	uint64_t limit;
	pthread_mutex_t lock;
	unsigned long corrupt; /* protected by lock */
	unsigned long seq;     /* protected by lock */
};

char *wh_store_default_dir(void)
{
	return wh_cache_home(NULL);
}


static void chunk_path(struct wh_store *s, const uint8_t *hash, char *buf,
		       size_t size)
{
	char hex[65];

	wh_hash_hex(hash, hex);
	snprintf(buf, size, "%s/%.2s/%s", s->dir, hex, hex);
}

static void ref_path(struct wh_store *s, const uint8_t *hash, char *buf,
		     size_t size)
{
	char hex[65];

	wh_hash_hex(hash, hex);
	snprintf(buf, size, "%s/%.2s/%s.ref", s->dir, hex, hex);
}

/*
 * A reference on disk: this header, then the path and the other name
 * (plen and alen bytes, no NULs).  Native byte order: the store is this
 * machine's.  Read as untrusted all the same; one that does not parse is
 * deleted.
 */
#define REF_MAGIC "WHREF01\n"
#define REF_PATH_MAX 4095

struct ref {
	char magic[8];
	uint64_t offset, dev, ino, size; /* the file when it was written */
	uint32_t len;                    /* of the chunk */
	uint16_t plen, alen;
};

#define REF_MAX (sizeof(struct ref) + 2 * REF_PATH_MAX)
#define REF_COST 4096 /* the least a reference counts against the limit */

int wh_store_open(const char *dir, uint64_t limit, struct wh_store **ps)
{
	struct wh_store *s = calloc(1, sizeof(*s));
	char buf[4096];
	int rv;

	if (!s)
		return -ENOMEM;
	snprintf(buf, sizeof(buf), "%s/chunks", dir);
	rv = wh_mkdirs(buf);
	if (rv < 0) {
		free(s);
		return rv;
	}
	s->dir = strdup(buf);
	if (!s->dir) {
		free(s);
		return -ENOMEM;
	}
	s->limit = limit;
	pthread_mutex_init(&s->lock, NULL);
	*ps = s;
	return 0;
}

static void count_corrupt(struct wh_store *s)
{
	pthread_mutex_lock(&s->lock);
	s->corrupt++;
	pthread_mutex_unlock(&s->lock);
}

/* ref_open - the file a reference |r| (names in |names|) describes, open
 * for reading, or -1: no name opens a regular file of its identity */
static int ref_open(const struct ref *r, const char *names)
{
	char p[REF_PATH_MAX + 1];
	const char *name[2] = {names, names + r->plen};
	size_t nlen[2] = {r->plen, r->alen};

	for (int i = 0; i < 2; i++) {
		struct stat st;
		int fd;

		if (nlen[i] == 0)
			continue;
		memcpy(p, name[i], nlen[i]);
		p[nlen[i]] = '\0';
		fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_dev == r->dev &&
		    (uint64_t)st.st_ino == r->ino &&
		    (uint64_t)st.st_size == r->size)
			return fd;
		close(fd);
	}
	return -1;
}

/* ref_get - chunk |hash| through its reference, verified; -ENOENT if
 * there is none or it no longer holds (then it is deleted) */
static int ref_get(struct wh_store *s, const uint8_t *hash, uint8_t *buf,
		   size_t len, struct wh_store_loc *loc)
{
	char path[4200];
	uint8_t rec[REF_MAX + 1], h[WH_HASH_LEN];
	struct ref r;
	ssize_t n;
	int fd, dfd;

	ref_path(s, hash, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, rec, sizeof(rec));
	if (n < (ssize_t)sizeof(r))
		goto drop;
	memcpy(&r, rec, sizeof(r));
	if (memcmp(r.magic, REF_MAGIC, sizeof(r.magic)) != 0 ||
	    r.plen == 0 || r.plen > REF_PATH_MAX || r.alen > REF_PATH_MAX ||
	    (size_t)n != sizeof(r) + r.plen + r.alen ||
	    memchr(rec + sizeof(r), '\0', (size_t)r.plen + r.alen))
		goto drop;
	if (r.len != len) { /* not the chunk asked for: leave it */
		close(fd);
		return -ENOENT;
	}
	dfd = ref_open(&r, (const char *)rec + sizeof(r));
	if (dfd < 0) {
		wh_debug("chunk store: the file of %s changed or is gone",
			 path);
		goto drop;
	}
	if (r.offset > r.size || len > r.size - r.offset ||
	    wh_io_pread(wh_io_thread(), dfd, buf, len, (off_t)r.offset) !=
		    (ssize_t)len) {
		close(dfd);
		goto drop;
	}
	close(dfd);
	wh_blake3(buf, len, h);
	if (memcmp(h, hash, WH_HASH_LEN) != 0) {
		count_corrupt(s);
		wh_warn("chunk store: the bytes %s refers to changed; "
			"it is discarded", path);
		goto drop;
	}
	futimens(fd, NULL); /* recently used: evicted last */
	close(fd);
	if (loc) {
		loc->dev = r.dev;
		loc->ino = r.ino;
		loc->offset = r.offset;
	}
	return 0;
drop:
	close(fd);
	unlink(path);
	return -ENOENT;
}

int wh_store_get_at(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		    uint8_t *buf, size_t len, struct wh_store_loc *loc)
{
	char path[4200];
	uint8_t h[WH_HASH_LEN];
	struct stat st;
	int fd;

	chunk_path(s, hash, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			return -errno;
		return ref_get(s, hash, buf, len, loc);
	}
	if (fstat(fd, &st) != 0 || (size_t)st.st_size != len ||
	    wh_io_pread(wh_io_thread(), fd, buf, len, 0) != (ssize_t)len)
		goto corrupt;
	wh_blake3(buf, len, h);
	if (memcmp(h, hash, WH_HASH_LEN) != 0)
		goto corrupt;
	futimens(fd, NULL); /* recently used: evicted last */
	close(fd);
	if (loc)
		memset(loc, 0, sizeof(*loc));
	return 0;
corrupt:
	close(fd);
	unlink(path);
	count_corrupt(s);
	wh_warn("chunk store: %s was corrupt and is discarded", path);
	return ref_get(s, hash, buf, len, loc);
}

int wh_store_get(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 uint8_t *buf, size_t len)
{
	return wh_store_get_at(s, hash, buf, len, NULL);
}

bool wh_store_has(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		  size_t len)
{
	char path[4200];
	struct stat st;

	chunk_path(s, hash, path, sizeof(path));
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	    (size_t)st.st_size == len)
		return true;
	ref_path(s, hash, path, sizeof(path));
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* write_entry - |len| bytes as the file |path|, through a temporary name
 * (a crash leaves the whole entry or none); replaces one there */
static int write_entry(struct wh_store *s, const char *path,
		       const uint8_t *data, size_t len)
{
	char tmp[4300], sub[4200];
	unsigned long seq;
	ssize_t n;
	int fd, rv = 0;

	snprintf(sub, sizeof(sub), "%s", path);
	*strrchr(sub, '/') = '\0';
	if (mkdir(sub, 0700) != 0 && errno != EEXIST)
		return -errno;
	pthread_mutex_lock(&s->lock);
	seq = ++s->seq;
	pthread_mutex_unlock(&s->lock);
	snprintf(tmp, sizeof(tmp), "%s.%d.%lu.tmp", path, (int)getpid(), seq);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* plain write: io_uring would hand it to a worker thread (see
	 * write_chunk in wh_get.c) */
	for (size_t done = 0; done < len && rv == 0;) {
		n = write(fd, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rv = n < 0 ? -errno : -EIO;
		else
			done += (size_t)n;
	}
	if (close(fd) != 0 && rv == 0)
		rv = -errno;
	if (rv == 0 && rename(tmp, path) != 0)
		rv = -errno;
	if (rv < 0)
		unlink(tmp);
	return rv;
}

int wh_store_put(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 const uint8_t *data, size_t len)
{
	char path[4200];

	chunk_path(s, hash, path, sizeof(path));
	if (access(path, F_OK) == 0)
		return 0;
	return write_entry(s, path, data, len);
}

int wh_store_put_ref(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		     size_t len, const char *path, const char *alt,
		     const struct stat *st, uint64_t offset)
{
	uint8_t rec[REF_MAX];
	struct ref r;
	char rp[4200];
	size_t plen = strlen(path), alen = alt ? strlen(alt) : 0;

	if (plen == 0 || plen > REF_PATH_MAX || alen > REF_PATH_MAX ||
	    path[0] != '/' || (alt && alt[0] != '/') || len > UINT32_MAX)
		return -EINVAL;
	memset(&r, 0, sizeof(r));
	memcpy(r.magic, REF_MAGIC, sizeof(r.magic));
	r.offset = offset;
	r.dev = (uint64_t)st->st_dev;
	r.ino = (uint64_t)st->st_ino;
	r.size = (uint64_t)st->st_size;
	r.len = (uint32_t)len;
	r.plen = (uint16_t)plen;
	r.alen = (uint16_t)alen;
	memcpy(rec, &r, sizeof(r));
	memcpy(rec + sizeof(r), path, plen);
	if (alen)
		memcpy(rec + sizeof(r) + plen, alt, alen);
	ref_path(s, hash, rp, sizeof(rp));
	return write_entry(s, rp, rec, sizeof(r) + plen + alen);
}

unsigned long wh_store_corrupt(struct wh_store *s)
{
	unsigned long n;

	pthread_mutex_lock(&s->lock);
	n = s->corrupt;
	pthread_mutex_unlock(&s->lock);
	return n;
}

struct item {
	char *path;
	off_t size;
	struct timespec used;
};

static int by_age(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
	if (x->used.tv_nsec != y->used.tv_nsec)
		return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
	return 0;
}

/* evict - delete the least recently used chunks until under the limit */
static void evict(struct wh_store *s)
{
	struct item *items = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = 0;
	DIR *top = opendir(s->dir);
	struct dirent *d;

	if (!top)
		return;
	while ((d = readdir(top))) {
		char sub[4200];
		DIR *dd;
		struct dirent *e;

		if (d->d_name[0] == '.' || strlen(d->d_name) != 2)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", s->dir, d->d_name);
		dd = opendir(sub);
		if (!dd)
			continue;
		while ((e = readdir(dd))) {
			char p[4500];
			struct stat st;

			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", sub, e->d_name);
			if (stat(p, &st) != 0)
				continue;
			if (strstr(e->d_name, ".tmp")) {
				unlink(p); /* left by a crash */
				continue;
			}
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 1024;
				struct item *ni =
					realloc(items, ncap * sizeof(*ni));

				if (!ni)
					break;
				items = ni;
				cap = ncap;
			}
			items[n].path = strdup(p);
			/* a reference: what it takes on the disk, a block
			 * at least (its inode, when the data is inline) */
			items[n].size = st.st_size;
			if (strstr(e->d_name, ".ref"))
				items[n].size = st.st_blocks * 512 > REF_COST
							? st.st_blocks * 512
							: REF_COST;
			items[n].used = st.st_mtim;
			if (items[n].path) {
				total += (uint64_t)items[n].size;
				n++;
			}
		}
		closedir(dd);
	}
	closedir(top);
	if (total > s->limit) {
		qsort(items, n, sizeof(*items), by_age);
		for (size_t i = 0; i < n && total > s->limit; i++) {
			if (unlink(items[i].path) == 0)
				total -= (uint64_t)items[i].size;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(items[i].path);
	free(items);
}

void wh_store_close(struct wh_store *s)
{
	if (!s)
		return;
	evict(s);
	free(s->dir);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
