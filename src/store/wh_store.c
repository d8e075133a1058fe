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

int wh_store_get(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 uint8_t *buf, size_t len)
{
	char path[4200];
	uint8_t h[WH_HASH_LEN];
	struct stat st;
	int fd;

	chunk_path(s, hash, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || (size_t)st.st_size != len ||
	    wh_io_pread(wh_io_thread(), fd, buf, len, 0) != (ssize_t)len)
		goto corrupt;
	wh_blake3(buf, len, h);
	if (memcmp(h, hash, WH_HASH_LEN) != 0)
		goto corrupt;
	futimens(fd, NULL); /* recently used: evicted last */
	close(fd);
	return 0;
corrupt:
	close(fd);
	unlink(path);
	pthread_mutex_lock(&s->lock);
	s->corrupt++;
	pthread_mutex_unlock(&s->lock);
	wh_warn("chunk store: %s was corrupt and is discarded", path);
	return -ENOENT;
}

bool wh_store_has(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		  size_t len)
{
	char path[4200];
	struct stat st;

	chunk_path(s, hash, path, sizeof(path));
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	       (size_t)st.st_size == len;
}

int wh_store_put(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 const uint8_t *data, size_t len)
{
	char path[4200], tmp[4300], sub[4200];
	unsigned long seq;
	ssize_t n;
	int fd, rv = 0;

	chunk_path(s, hash, path, sizeof(path));
	if (access(path, F_OK) == 0)
		return 0;
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
			items[n].size = st.st_size;
			items[n].used = st.st_mtim;
			if (items[n].path) {
				total += (uint64_t)st.st_size;
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
