/*
 * wh_share.c - the shared folder: every path from the wire is validated by
 * the decoder and resolved by the kernel beneath the share's root with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS),
 * so nothing outside the share can be reached and no symlink is followed.
 * Where openat2 is missing (a kernel before 5.6, or a seccomp filter that
 * refuses it) the same rules are applied one component at a time.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "host/wh_mcache.h"
#include "host/wh_share.h"
#include "io/wh_io.h"

#define MAX_WATCHES 65536
#define READ_RETRIES 3
#define DIRENT_BUDGET (WH_MAX_REPLY_FRAME - 4096)
/* bytes of entries in a GET_SMALL_REPLY: the frame, less room for an
 * ERROR entry for every file */
#define SMALL_BUDGET (WH_MAX_REPLY_FRAME - 2 - \
		      WH_MAX_SMALL_FILES * WH_SMALL_ENT_MAX_HDR)
#define WATCH_MASK                                                         \
	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY |  \
	 IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF |       \
	 IN_ONLYDIR)

struct watch {
	int wd;
	char *path; /* relative to the root, "" for the root */
};

struct wh_share {
	int root_fd;
	int ifd; /* inotify, -1 if unavailable */
	pthread_mutex_t lock;
	struct watch *watches; /* protected by lock */
	size_t nwatches, cap;  /* protected by lock */
	bool limit_logged;     /* protected by lock */
	struct wh_mcache *mc;  /* may be NULL */
	struct wh_mcache *own_mc; /* in memory, for streamed manifests
				   * when |mc| is NULL */
	int mwaiting;          /* MANIFEST_STREAMs waiting, atomic */
	int proc_fd;           /* /proc/self/fd, for reopening O_PATH
				* descriptors; -1 if unavailable */
	int no_openat2;        /* openat2 refused: walk (atomic) */
	bool defer;            /* MANIFEST may be WH_SHARE_LATER (atomic) */
};

/* MANIFEST_STREAMs that may wait at once: the others answer right away,
 * so that waits never take every worker from the CHUNK requests */
#define MAX_MSTREAM_WAITERS 2

/* ----------------------------------------------------------- resolution */

/* copy_path - NUL-terminated copy; "" becomes "." (the root itself). */
static void copy_path(char *dst, const char *p, size_t len)
{
	if (len == 0) {
		dst[0] = '.';
		dst[1] = '\0';
		return;
	}
	memcpy(dst, p, len);
	dst[len] = '\0';
}

#ifndef RESOLVE_CACHED
#define RESOLVE_CACHED 0x20 /* Linux 5.12 */
#endif

/* resolve_walk - resolve_how without openat2: |path| ("." or names
 * joined by '/', as the decoder lets through) one component at a time
 * from the root, each opened O_PATH | O_NOFOLLOW.  A symbolic link before
 * the last component is ELOOP, as with RESOLVE_NO_SYMLINKS; as the last
 * one it is the link itself; "." and ".." are refused (never followed:
 * the decoder refuses them first). */
static int resolve_walk(struct wh_share *sh, const char *path)
{
	const int base = O_PATH | O_NOFOLLOW | O_CLOEXEC;
	int fd = openat(sh->root_fd, ".", base | O_DIRECTORY);

	if (fd < 0)
		return -errno;
	if (strcmp(path, ".") == 0)
		return fd;
	for (const char *p = path; *p;) {
		char name[256];
		size_t n = strcspn(p, "/");
		struct stat st;
		int next;

		if (n == 0 || n >= sizeof(name) ||
		    (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.')) {
			close(fd);
			return -EINVAL;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		p += n;
		next = openat(fd, name, base);
		close(fd);
		if (next < 0)
			return -errno;
		fd = next;
		if (*p == '\0')
			break;
		p++; /* the '/' */
		if (fstat(fd, &st) != 0) {
			int err = errno;

			close(fd);
			return -err;
		}
		if (!S_ISDIR(st.st_mode)) {
			close(fd);
			return S_ISLNK(st.st_mode) ? -ELOOP : -ENOTDIR;
		}
	}
	return fd;
}

/* resolve_how - an O_PATH descriptor for |path|; with |cached|, only from
 * the dentry cache: -EAGAIN when the lookup would need the disk (and
 * -EINVAL from a kernel older than RESOLVE_CACHED; without openat2
 * always -EAGAIN). */
static int resolve_how(struct wh_share *sh, const char *path, bool cached)
{
	struct open_how how;
	long fd;

	if (__atomic_load_n(&sh->no_openat2, __ATOMIC_RELAXED))
		return cached ? -EAGAIN : resolve_walk(sh, path);
	memset(&how, 0, sizeof(how));
	how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		      RESOLVE_NO_MAGICLINKS | (cached ? RESOLVE_CACHED : 0);
	do {
		fd = syscall(SYS_openat2, sh->root_fd, path, &how, sizeof(how));
	} while (fd < 0 && errno == EAGAIN && !cached);
	if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
		/* EPERM: what seccomp filters of container runtimes older
		 * than openat2 answer; openat2 itself never says it for an
		 * O_PATH open */
		if (!__atomic_exchange_n(&sh->no_openat2, 1, __ATOMIC_RELAXED))
			wh_warn("openat2 is not available (%s): paths are "
				"resolved one component at a time",
				strerror(errno));
		return cached ? -EAGAIN : resolve_walk(sh, path);
	}
	return fd < 0 ? -errno : (int)fd;
}

static int resolve(struct wh_share *sh, const char *path)
{
	return resolve_how(sh, path, false);
}

static bool visible(const struct stat *st)
{
	return S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) ||
	       S_ISLNK(st->st_mode);
}

static void fill_attr(const struct stat *st, struct wh_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = st->st_ino;
	a->mode = st->st_mode & (S_IFMT | 07777);
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->blksize = (uint32_t)st->st_blksize;
	a->atime.sec = st->st_atim.tv_sec;
	a->atime.nsec = (uint32_t)st->st_atim.tv_nsec;
	a->mtime.sec = st->st_mtim.tv_sec;
	a->mtime.nsec = (uint32_t)st->st_mtim.tv_nsec;
	a->ctime.sec = st->st_ctim.tv_sec;
	a->ctime.nsec = (uint32_t)st->st_ctim.tv_nsec;
}

static void fill_version(const struct stat *st, struct wh_version *v)
{
	v->size = (uint64_t)st->st_size;
	v->mtime.sec = st->st_mtim.tv_sec;
	v->mtime.nsec = (uint32_t)st->st_mtim.tv_nsec;
	v->ctime.sec = st->st_ctim.tv_sec;
	v->ctime.nsec = (uint32_t)st->st_ctim.tv_nsec;
}

static bool same_version(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* ------------------------------------------------------------- watches */

static struct watch *watch_find(struct wh_share *sh, int wd)
{
	for (size_t i = 0; i < sh->nwatches; i++)
		if (sh->watches[i].wd == wd)
			return &sh->watches[i];
	return NULL;
}

static void watch_forget(struct wh_share *sh, size_t i)
{
	free(sh->watches[i].path);
	sh->watches[i] = sh->watches[--sh->nwatches];
}

/* watch_dir - watch the directory |fd| (resolved from |path|). */
static void watch_dir(struct wh_share *sh, int fd, const char *path,
		      size_t len)
{
	char proc[64];
	struct watch *w;
	int wd;

	if (sh->ifd < 0)
		return;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	pthread_mutex_lock(&sh->lock);
	if (sh->nwatches >= MAX_WATCHES) {
		if (!sh->limit_logged)
			wh_warn("watching %d directories already: changes "
				"in more directories are not pushed",
				MAX_WATCHES);
		sh->limit_logged = true;
		goto out;
	}
	wd = inotify_add_watch(sh->ifd, proc, WATCH_MASK);
	if (wd < 0)
		goto out;
	w = watch_find(sh, wd);
	if (w) {
		/* same directory, maybe under a new name after a rename */
		if (strlen(w->path) != len || memcmp(w->path, path, len)) {
			char *np = strndup(path, len);

			if (np) {
				free(w->path);
				w->path = np;
			}
		}
		goto out;
	}
	if (sh->nwatches == sh->cap) {
		size_t ncap = sh->cap ? sh->cap * 2 : 64;
		struct watch *nw = realloc(sh->watches, ncap * sizeof(*nw));

		if (!nw) {
			inotify_rm_watch(sh->ifd, wd);
			goto out;
		}
		sh->watches = nw;
		sh->cap = ncap;
	}
	sh->watches[sh->nwatches].wd = wd;
	sh->watches[sh->nwatches].path = strndup(path, len);
	if (!sh->watches[sh->nwatches].path) {
		inotify_rm_watch(sh->ifd, wd);
		goto out;
	}
	sh->nwatches++;
out:
	pthread_mutex_unlock(&sh->lock);
}

void wh_share_set_defer(struct wh_share *sh, bool defer)
{
	__atomic_store_n(&sh->defer, defer, __ATOMIC_RELAXED);
}

void wh_share_set_mcache(struct wh_share *sh, struct wh_mcache *mc)
{
	sh->mc = mc;
}

int wh_share_watch_fd(struct wh_share *sh)
{
	return sh->ifd;
}

/* split - "a/b/c" -> dir "a/b", name "c"; "c" -> "", "c". */
static void split(const char *path, const char **dir, size_t *dlen,
		  const char **name)
{
	const char *slash = strrchr(path, '/');

	*dir = path;
	if (slash) {
		*dlen = (size_t)(slash - path);
		*name = slash + 1;
	} else {
		*dlen = 0;
		*name = path;
	}
}

/* drop_below - forget watches on |path| and everything under it (their
 * paths are stale once it moved or vanished). */
static void drop_below(struct wh_share *sh, const char *path, size_t len)
{
	for (size_t i = 0; i < sh->nwatches;) {
		const char *p = sh->watches[i].path;

		if (!strncmp(p, path, len) && (p[len] == '\0' || p[len] == '/')) {
			inotify_rm_watch(sh->ifd, sh->watches[i].wd);
			watch_forget(sh, i);
		} else {
			i++;
		}
	}
}

int wh_share_watch_drain(struct wh_share *sh, wh_share_change_cb cb, void *ud)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	char full[WH_MAX_PATH + WH_MAX_NAME + 2];
	int count = 0;

	if (sh->ifd < 0)
		return -EBADF;
	for (;;) {
		ssize_t n = read(sh->ifd, buf, sizeof(buf));

		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			struct watch *w;
			const char *dir, *name;
			size_t dlen;

			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				cb(ud, "", 0, "", 0);
				count++;
				continue;
			}
			pthread_mutex_lock(&sh->lock);
			w = watch_find(sh, ev->wd);
			if (!w) {
				pthread_mutex_unlock(&sh->lock);
				continue;
			}
			snprintf(full, sizeof(full), "%s", w->path);
			if (ev->mask & (IN_IGNORED | IN_DELETE_SELF |
					IN_MOVE_SELF)) {
				/* the directory itself went away or moved */
				if (ev->mask & IN_IGNORED)
					watch_forget(sh, (size_t)(w -
								  sh->watches));
				else
					drop_below(sh, full, strlen(full));
				pthread_mutex_unlock(&sh->lock);
				if (full[0] == '\0') {
					cb(ud, "", 0, "", 0);
				} else {
					split(full, &dir, &dlen, &name);
					cb(ud, dir, dlen, name, strlen(name));
				}
				count++;
				continue;
			}
			if (ev->len == 0 || ev->name[0] == '\0') {
				pthread_mutex_unlock(&sh->lock);
				cb(ud, full, strlen(full), "", 0);
				count++;
				continue;
			}
			if ((ev->mask & (IN_MOVED_FROM | IN_DELETE)) &&
			    (ev->mask & IN_ISDIR)) {
				char child[sizeof(full)];
				int m;

				m = snprintf(child, sizeof(child), "%s%s%s",
					     full, full[0] ? "/" : "",
					     ev->name);
				if (m > 0 && (size_t)m < sizeof(child))
					drop_below(sh, child, (size_t)m);
			}
			pthread_mutex_unlock(&sh->lock);
			cb(ud, full, strlen(full), ev->name, strlen(ev->name));
			count++;
		}
	}
	return count;
}

/* --------------------------------------------------------------- ops */

static int do_getattr(struct wh_share *sh, uint32_t req_id, uint16_t type,
		      const char *path, size_t len, struct wh_buf *resp)
{
	char p[WH_MAX_PATH + WH_MAX_NAME + 2];
	struct wh_msg m;
	struct stat st;
	int fd;

	copy_path(p, path, len);
	fd = resolve(sh, p);
	if (fd < 0)
		return wh_error_append(resp, req_id, -fd, "");
	if (fstat(fd, &st) != 0) {
		int err = errno;

		close(fd);
		return wh_error_append(resp, req_id, err, "");
	}
	if (!visible(&st)) {
		close(fd);
		return wh_error_append(resp, req_id, ENOENT, "");
	}
	if (S_ISDIR(st.st_mode))
		watch_dir(sh, fd, path, len);
	close(fd);
	memset(&m, 0, sizeof(m));
	m.hdr.type = type;
	m.hdr.req_id = req_id;
	fill_attr(&st, &m.u.attr.attr);
	return wh_msg_append(resp, &m);
}

static int do_lookup(struct wh_share *sh, uint32_t req_id,
		     const struct wh_msg_lookup *l, struct wh_buf *resp)
{
	char p[WH_MAX_PATH + WH_MAX_NAME + 2];
	size_t len = 0;

	if (l->dir.len) {
		memcpy(p, l->dir.p, l->dir.len);
		len = l->dir.len;
		p[len++] = '/';
	}
	memcpy(p + len, l->name.p, l->name.len);
	len += l->name.len;
	return do_getattr(sh, req_id, WH_MSG_LOOKUP_REPLY, p, len, resp);
}

static int do_readlink(struct wh_share *sh, uint32_t req_id, const char *path,
		       size_t len, struct wh_buf *resp)
{
	char p[WH_MAX_PATH + 1], target[WH_MAX_PATH + 1];
	struct wh_msg m;
	ssize_t n;
	int fd;

	copy_path(p, path, len);
	fd = resolve(sh, p);
	if (fd < 0)
		return wh_error_append(resp, req_id, -fd, "");
	{
		struct stat st;

		/* readlinkat("") says ENOENT for a non-link; users expect
		 * readlink(2)'s EINVAL */
		if (fstat(fd, &st) == 0 && !S_ISLNK(st.st_mode)) {
			close(fd);
			return wh_error_append(resp, req_id,
					   visible(&st) ? EINVAL : ENOENT, "");
		}
	}
	n = readlinkat(fd, "", target, sizeof(target));
	close(fd);
	if (n < 0)
		return wh_error_append(resp, req_id, errno, "");
	if (n == 0 || (size_t)n > WH_MAX_PATH)
		return wh_error_append(resp, req_id, ENAMETOOLONG, "");
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READLINK_REPLY;
	m.hdr.req_id = req_id;
	m.u.readlink_reply.target.p = target;
	m.u.readlink_reply.target.len = (uint16_t)n;
	return wh_msg_append(resp, &m);
}

static int do_statfs(struct wh_share *sh, uint32_t req_id,
		     struct wh_buf *resp)
{
	struct statvfs sv;
	struct wh_msg m;

	if (fstatvfs(sh->root_fd, &sv) != 0)
		return wh_error_append(resp, req_id, errno, "");
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_STATFS_REPLY;
	m.hdr.req_id = req_id;
	m.u.statfs_reply.bsize = (uint32_t)sv.f_bsize;
	m.u.statfs_reply.frsize = (uint32_t)sv.f_frsize;
	m.u.statfs_reply.namemax = (uint32_t)sv.f_namemax;
	m.u.statfs_reply.blocks = sv.f_blocks;
	m.u.statfs_reply.bfree = sv.f_bfree;
	m.u.statfs_reply.bavail = sv.f_bavail;
	m.u.statfs_reply.files = sv.f_files;
	m.u.statfs_reply.ffree = sv.f_ffree;
	return wh_msg_append(resp, &m);
}

/* open_regular - a read fd for a regular file at |p|, opened only after an
 * O_PATH descriptor proved it is one (opening a fifo or a device could
 * block or have side effects). */
static int open_regular(struct wh_share *sh, const char *p, bool cached)
{
	char proc[64];
	struct stat st;
	int fd, rfd;

	fd = resolve_how(sh, p, cached);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) != 0) {
		rfd = -errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rfd = -EISDIR;
		goto out;
	}
	if (S_ISLNK(st.st_mode)) {
		rfd = -EINVAL;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rfd = -ENOENT;
		goto out;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	rfd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (rfd < 0)
		rfd = -errno;
out:
	close(fd);
	return rfd;
}

/*
 * read_fill - append the READ_REPLY for |r| read from |fd| (open on the
 * file) to |resp|: 0, also when the reply is an ERROR, or -ENOMEM.  With
 * |nowait| the bytes come only from the page cache (preadv2 RWF_NOWAIT):
 * 1, |resp| as it was, when some of them are not there.
 */
static int read_fill(int fd, uint32_t req_id, const struct wh_msg_read *r,
		     struct wh_buf *resp, bool nowait)
{
	struct stat before, after;
	struct wh_version v;
	size_t base = resp->len, got = 0;
	int rv, tries;

	rv = wh_buf_reserve(resp, WH_READ_REPLY_HDR_LEN + r->length);
	if (rv < 0)
		return rv;
	for (tries = 0; tries < READ_RETRIES; tries++) {
		uint8_t *dst = resp->data + base + WH_READ_REPLY_HDR_LEN;

		if (fstat(fd, &before) != 0)
			goto fail_errno;
		got = 0;
		if (r->offset <= (uint64_t)INT64_MAX - r->length) {
			ssize_t n;

			if (nowait) {
				struct iovec iov = { dst, r->length };

				n = preadv2(fd, &iov, 1, (off_t)r->offset,
					    RWF_NOWAIT);
				if (n < 0)
					return 1; /* EAGAIN, EOPNOTSUPP... */
			} else {
				n = wh_io_pread(wh_io_thread(), fd, dst,
						r->length, r->offset);
				if (n < 0) {
					errno = (int)-n;
					goto fail_errno;
				}
			}
			got = (size_t)n;
		}
		if (fstat(fd, &after) != 0)
			goto fail_errno;
		if (same_version(&before, &after))
			break;
		if (nowait)
			return 1; /* changing: the worker retries */
	}
	if (tries == READ_RETRIES)
		return wh_error_append(resp, req_id, EAGAIN,
				   "the file keeps changing");
	/* a short read from the cache before the end: the rest is not in it */
	if (nowait && got < r->length &&
	    r->offset + got < (uint64_t)after.st_size)
		return 1;
	fill_version(&after, &v);
	wh_read_reply_hdr_encode(req_id, &v,
				 r->offset + got >= (uint64_t)after.st_size,
				 (uint32_t)got, resp->data + base,
				 WH_READ_REPLY_HDR_LEN);
	resp->len = base + WH_READ_REPLY_HDR_LEN + got;
	return 0;
fail_errno:
	return wh_error_append(resp, req_id, errno, "");
}

/* do_read - READ of |r|, from |fd| when it is >= 0 (open on the file,
 * closed here), else opening the file. */
static int do_read(struct wh_share *sh, uint32_t req_id,
		   const struct wh_msg_read *r, int fd, struct wh_buf *resp)
{
	char p[WH_MAX_PATH + 1];
	int rv;

	if (fd < 0) {
		copy_path(p, r->path.p, r->path.len);
		fd = open_regular(sh, p, false);
		if (fd < 0)
			return wh_error_append(resp, req_id, -fd, "");
	}
	rv = read_fill(fd, req_id, r, resp, false);
	close(fd);
	return rv;
}

int wh_share_read_nowait(struct wh_share *sh, const uint8_t *req,
			 size_t len, struct wh_buf *resp, int *pfd)
{
	char p[WH_MAX_PATH + 1];
	struct wh_msg m;
	int fd, rv;

	*pfd = -1;
	if (wh_msg_decode(req, len, WH_MAX_REQ_FRAME, &m) < 0 ||
	    m.hdr.type != WH_MSG_READ ||
	    m.u.read.length > WH_SHARE_NOWAIT_MAX)
		return 0;
	copy_path(p, m.u.read.path.p, m.u.read.path.len);
	fd = open_regular(sh, p, true);
	if (fd < 0)
		return 0; /* not cached, or an error: the worker answers */
	rv = read_fill(fd, m.hdr.req_id, &m.u.read, resp, true);
	if (rv == 1) {
		*pfd = fd;
		return 0;
	}
	close(fd);
	return rv < 0 ? rv : 1;
}

/* job_entries - entries [start, start + count) of |j|, encoded for a
 * reply, into *|pents| (malloc'ed; NULL when |count| is 0).  0 or
 * -ENOMEM. */
static int job_entries(struct wh_mjob *j, uint32_t start, uint32_t count,
		       uint8_t **pents)
{
	struct wh_chunk *chunks;
	uint8_t *ents;

	*pents = NULL;
	if (count == 0)
		return 0;
	chunks = malloc((size_t)count * sizeof(*chunks));
	ents = malloc((size_t)count * WH_MANIFEST_ENTRY_LEN);
	if (!chunks || !ents) {
		free(chunks);
		free(ents);
		return -ENOMEM;
	}
	wh_mjob_copy(j, start, count, chunks);
	for (uint32_t i = 0; i < count; i++)
		wh_manifest_entry_encode(chunks[i].offset, chunks[i].length,
					 chunks[i].hash,
					 ents + (size_t)i * WH_MANIFEST_ENTRY_LEN);
	free(chunks);
	*pents = ents;
	return 0;
}

/* manifest_job - start or join the manifest job of the regular file
 * |path| (wh_mcache_stream with |may_wait| and |owner|), its fstat() in
 * |st|: 0, or a negative errno.  With no cache, or a file that cannot be
 * opened, 0 with *|open_err| the errno to answer with (else it is 0, and
 * *|pj| the job when 0 is returned). */
static int manifest_job(struct wh_share *sh, const struct wh_str *path,
			bool may_wait, uint64_t owner, struct stat *st,
			struct wh_mjob **pj, int *open_err)
{
	char p[WH_MAX_PATH + 1];
	struct wh_mcache *mc = sh->mc ? sh->mc : sh->own_mc;
	int fd, rv;

	*pj = NULL;
	*open_err = 0;
	if (!mc) {
		*open_err = ENOMEM;
		return 0;
	}
	copy_path(p, path->p, path->len);
	fd = open_regular(sh, p, false);
	if (fd < 0) {
		*open_err = -fd;
		return 0;
	}
	rv = fstat(fd, st) != 0 ? -errno
				: wh_mcache_stream(mc, fd, st, p, may_wait, owner,
						   pj);
	close(fd);
	return rv;
}

/*
 * do_manifest - a page of the whole manifest.  It is computed as the
 * streamed ones are, by the hasher threads (one job per file version,
 * whoever asks), so that a worker never spends a big file's hashing on
 * it: with the share's |defer| set, a manifest not finished yet is
 * WH_SHARE_LATER, and the caller serves the request again later; without,
 * the call waits for it.
 */
static int do_manifest(struct wh_share *sh, uint64_t owner, uint32_t req_id,
		       const struct wh_msg_manifest *mr, struct wh_buf *resp)
{
	struct wh_mjob *j;
	struct wh_msg m;
	struct stat st;
	uint8_t *ents = NULL;
	uint32_t count = 0;
	size_t known = 0;
	bool done = false;
	bool defer = __atomic_load_n(&sh->defer, __ATOMIC_RELAXED);
	int open_err, rv;

	rv = manifest_job(sh, &mr->path, !defer, owner, &st, &j, &open_err);
	if (open_err)
		return wh_error_append(resp, req_id, open_err, "");
	if (rv == 0)
		rv = wh_mjob_wait(j, SIZE_MAX, defer ? 0 : UINT64_MAX, &known,
				  &done);
	/* not finished, or not even started: the hashers have all they
	 * can queue */
	if ((rv == 0 && !done) || rv == -EBUSY) {
		wh_mjob_put(j);
		return WH_SHARE_LATER;
	}
	if (rv == 0 && known > UINT32_MAX)
		rv = -EFBIG;
	if (rv < 0) {
		wh_mjob_put(j);
		if (rv == -ENOMEM)
			return rv;
		return wh_error_append(resp, req_id, -rv,
				   rv == -EAGAIN ? "the file keeps changing"
						 : "");
	}
	if (mr->start < known) {
		count = (uint32_t)(known - mr->start);
		if (count > WH_MAX_MANIFEST_ENTRIES)
			count = WH_MAX_MANIFEST_ENTRIES;
	}
	rv = job_entries(j, mr->start, count, &ents);
	wh_mjob_put(j);
	if (rv < 0)
		return rv;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST_REPLY;
	m.hdr.req_id = req_id;
	fill_version(&st, &m.u.manifest_reply.version);
	m.u.manifest_reply.total = (uint32_t)known;
	m.u.manifest_reply.start = count ? mr->start : (uint32_t)known;
	m.u.manifest_reply.count = count;
	m.u.manifest_reply.entries = ents;
	rv = wh_msg_append(resp, &m);
	free(ents);
	return rv;
}

/* do_manifest_stream - the entries known so far from |start| on, while the
 * manifest is computed (shared by every request for that file version) */
static int do_manifest_stream(struct wh_share *sh, uint64_t owner,
			      uint32_t req_id,
			      const struct wh_msg_manifest_stream *ms,
			      struct wh_buf *resp)
{
	struct wh_mjob *j;
	struct wh_msg m;
	struct stat st;
	uint8_t *ents = NULL;
	uint32_t start = ms->start, count = 0, wait;
	size_t known = 0;
	bool done = false;
	bool defer = __atomic_load_n(&sh->defer, __ATOMIC_RELAXED);
	int open_err, rv;

	rv = manifest_job(sh, &ms->path, !defer, owner, &st, &j, &open_err);
	if (open_err)
		return wh_error_append(resp, req_id, open_err, "");
	if (rv == -EBUSY) {
		/* the hashers have all they can queue: nothing is known yet,
		 * and the client asks again */
		rv = 0;
	} else if (rv == 0) {
		wait = ms->wait_ms < WH_MAX_MSTREAM_WAIT_MS
			       ? ms->wait_ms
			       : WH_MAX_MSTREAM_WAIT_MS;
		if (__atomic_add_fetch(&sh->mwaiting, 1, __ATOMIC_RELAXED) >
		    MAX_MSTREAM_WAITERS)
			wait = 0;
		rv = wh_mjob_wait(j, start,
				  wh_now_ns() + (uint64_t)wait * WH_NS_PER_MS,
				  &known, &done);
		__atomic_sub_fetch(&sh->mwaiting, 1, __ATOMIC_RELAXED);
	}
	if (rv == 0 && known > UINT32_MAX)
		rv = -EFBIG;
	if (rv < 0) {
		wh_mjob_put(j);
		if (rv == -EAGAIN)
			return wh_error_append(resp, req_id, ESTALE,
					   "the file changed while its "
					   "manifest was computed: ask again");
		return wh_error_append(resp, req_id, -rv, "");
	}
	if (start > known)
		start = (uint32_t)known;
	count = (uint32_t)(known - start);
	if (count > WH_MAX_MANIFEST_ENTRIES)
		count = WH_MAX_MANIFEST_ENTRIES;
	rv = job_entries(j, start, count, &ents);
	wh_mjob_put(j);
	if (rv < 0)
		return rv;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST_PART;
	m.hdr.req_id = req_id;
	fill_version(&st, &m.u.manifest_part.version);
	m.u.manifest_part.done = done;
	m.u.manifest_part.known = (uint32_t)known;
	m.u.manifest_part.start = start;
	m.u.manifest_part.count = count;
	m.u.manifest_part.entries = ents;
	rv = wh_msg_append(resp, &m);
	free(ents);
	return rv;
}

static bool version_matches(const struct stat *st, const struct wh_version *v)
{
	struct wh_version now;

	fill_version(st, &now);
	return now.size == v->size && now.mtime.sec == v->mtime.sec &&
	       now.mtime.nsec == v->mtime.nsec &&
	       now.ctime.sec == v->ctime.sec && now.ctime.nsec == v->ctime.nsec;
}

static int do_chunk(struct wh_share *sh, uint32_t req_id,
		    const struct wh_msg_chunk *c, struct wh_buf *resp)
{
	char p[WH_MAX_PATH + 1];
	struct stat before, after;
	size_t base = resp->len, got = 0;
	uint8_t *dst;
	int fd, rv;

	copy_path(p, c->path.p, c->path.len);
	fd = open_regular(sh, p, false);
	if (fd < 0)
		return wh_error_append(resp, req_id, -fd, "");
	if (fstat(fd, &before) != 0 || !version_matches(&before, &c->version) ||
	    c->offset > (uint64_t)before.st_size ||
	    c->length > (uint64_t)before.st_size - c->offset) {
		close(fd);
		return wh_error_append(resp, req_id, ESTALE,
				   "the file changed: ask for its manifest "
				   "again");
	}
	rv = wh_buf_reserve(resp, WH_CHUNK_REPLY_HDR_LEN + c->length);
	if (rv < 0) {
		close(fd);
		return rv;
	}
	dst = resp->data + base + WH_CHUNK_REPLY_HDR_LEN;
	{
		ssize_t n = wh_io_pread(wh_io_thread(), fd, dst, c->length,
					c->offset);

		got = n > 0 ? (size_t)n : 0;
	}
	rv = fstat(fd, &after);
	close(fd);
	if (got != c->length || rv != 0 || !version_matches(&after, &c->version))
		return wh_error_append(resp, req_id, ESTALE,
				   "the file changed: ask for its manifest "
				   "again");
	wh_chunk_reply_hdr_encode(req_id, c->hash, c->length, resp->data + base,
				  WH_CHUNK_REPLY_HDR_LEN);
	resp->len = base + WH_CHUNK_REPLY_HDR_LEN + got;
	return 0;
}

/* open_small - open_regular that also gives the file's fstat() (that of
 * the O_PATH descriptor: the same inode) */
static int open_small(struct wh_share *sh, const char *p, struct stat *st)
{
	char proc[64];
	int fd, rfd;

	fd = resolve(sh, p);
	if (fd < 0)
		return fd;
	if (fstat(fd, st) != 0)
		rfd = -errno;
	else if (S_ISDIR(st->st_mode))
		rfd = -EISDIR;
	else if (S_ISLNK(st->st_mode))
		rfd = -EINVAL;
	else if (!S_ISREG(st->st_mode))
		rfd = -ENOENT;
	else if (sh->proc_fd >= 0) {
		/* one component to look up, not the whole /proc path */
		snprintf(proc, sizeof(proc), "%d", fd);
		rfd = openat(sh->proc_fd, proc, O_RDONLY | O_CLOEXEC |
						       O_NOCTTY);
		if (rfd < 0)
			rfd = -errno;
	} else {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		rfd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (rfd < 0)
			rfd = -errno;
	}
	close(fd);
	return rfd;
}

/*
 * The files of one GET_SMALL are read one after the other.  When one is
 * not in the page cache (a read with RWF_NOWAIT says so), the reads of all
 * the files after it are started at once (POSIX_FADV_WILLNEED), so that a
 * cold disk has them all to read, not one after the other; a warm cache
 * costs nothing more.
 */
struct small_ahead {
	const int *fds;
	const struct stat *st;
	const bool *skip; /* answered without a read */
	size_t next, n; /* the files not read yet */
	bool done;      /* started already, or not worth it */
};

static void small_ahead_start(struct small_ahead *ra)
{
	if (!ra || ra->done)
		return;
	ra->done = true;
	for (size_t i = ra->next; i < ra->n; i++)
		if (ra->fds[i] >= 0 && !ra->skip[i] && ra->st[i].st_size > 0 &&
		    ra->st[i].st_size <= WH_MAX_SMALL_FILE)
			posix_fadvise(ra->fds[i], 0, ra->st[i].st_size,
				      POSIX_FADV_WILLNEED);
}

/*
 * small_one - one file of a GET_SMALL (|fd| from open_small, whose fstat
 * is |before|, or -errno), appended to |resp| as a reply entry if it fits
 * in |budget| bytes of entries: the whole file read between two fstat()s
 * that agree (retried a few times), hashed; SAME without the data when the
 * client's copy has that hash.  A failure is an ERROR entry.  Closes |fd|;
 * returns 0, or -ENOMEM when |resp| cannot grow.  The hash of a file read
 * goes to |mc|, unless the file changed too recently to be sure of it
 * (wh_mcache_racy), and comes from there when it is known.
 */
static int small_one(struct wh_mcache *mc, const struct wh_small_req *q,
		     int fd, struct stat before, size_t budget,
		     struct small_ahead *ra, struct wh_buf *resp)
{
	struct stat after;
	struct wh_version v;
	uint8_t hash[WH_HASH_LEN], *dst;
	size_t base = resp->len, got = 0;
	int err = 0, tries;
	bool nowait;
	ssize_t n;

	memset(&v, 0, sizeof(v));
	memset(hash, 0, sizeof(hash));
	if (fd < 0) {
		err = -fd;
		goto error;
	}
	for (tries = 0; tries < READ_RETRIES; tries++) {
		if (tries > 0 && fstat(fd, &before) != 0) {
			err = errno;
			goto error;
		}
		if (before.st_size > WH_MAX_SMALL_FILE) {
			err = EFBIG; /* grew since it was listed */
			goto error;
		}
		if (WH_SMALL_ENT_MAX_HDR + (size_t)before.st_size > budget) {
			err = ENOBUFS; /* no room left in this reply */
			goto error;
		}
		if (wh_buf_reserve(resp, WH_SMALL_ENT_MAX_HDR +
						 (size_t)before.st_size + 1) < 0) {
			close(fd);
			return -ENOMEM;
		}
		/* one byte more than the size: a file that grew shows */
		dst = resp->data + base + WH_SMALL_ENT_MAX_HDR;
		got = 0;
		nowait = ra && !ra->done && before.st_size > 0;
		while (got <= (size_t)before.st_size) {
			size_t want = (size_t)before.st_size + 1 - got;
			bool was_nowait = nowait;

			if (nowait) {
				struct iovec iov = { dst + got, want };

				n = preadv2(fd, &iov, 1, (off_t)got,
					    RWF_NOWAIT);
				nowait = false;
				if (n < 0 && errno != EINTR) {
					/* not cached (or no RWF_NOWAIT) */
					small_ahead_start(ra);
					continue;
				}
			} else {
				n = pread(fd, dst + got, want, (off_t)got);
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				err = errno;
				goto error;
			}
			got += (size_t)n;
			/* a regular file reads short only at its end; a
			 * RWF_NOWAIT read also where the cache ends */
			if ((size_t)n < want &&
			    (got == (size_t)before.st_size || !was_nowait))
				break;
			if (was_nowait && (size_t)n < want)
				small_ahead_start(ra);
		}
		if (fstat(fd, &after) != 0) {
			err = errno;
			goto error;
		}
		if (got == (size_t)before.st_size &&
		    same_version(&before, &after))
			break;
	}
	close(fd);
	fd = -1;
	if (tries == READ_RETRIES) {
		err = EAGAIN; /* it kept changing while it was read */
		goto error;
	}
	fill_version(&after, &v);
	/* a version the cache has the hash of is those bytes (any write
	 * since it was put moved the ctime): not hashed again */
	if (!mc || wh_mcache_racy(&after))
		wh_blake3(dst, got, hash);
	else if (!wh_mcache_hash_get(mc, &after, hash)) {
		wh_blake3(dst, got, hash);
		wh_mcache_hash_put(mc, &after, hash);
	}
	if (q->have && !memcmp(q->hash, hash, WH_HASH_LEN)) {
		n = wh_small_reply_ent_encode(WH_SMALL_SAME, &v, hash, 0,
					      resp->data + base,
					      WH_SMALL_ENT_MAX_HDR);
		resp->len = base + (size_t)n;
		return 0;
	}
	n = wh_small_reply_ent_encode(WH_SMALL_DATA, &v, hash, 0,
				      resp->data + base, WH_SMALL_ENT_MAX_HDR);
	/* the header is WH_SMALL_ENT_MAX_HDR bytes exactly for DATA */
	resp->len = base + (size_t)n + got;
	return 0;
error:
	if (fd >= 0)
		close(fd);
	if (wh_buf_reserve(resp, WH_SMALL_ENT_MAX_HDR) < 0)
		return -ENOMEM;
	n = wh_small_reply_ent_encode(WH_SMALL_ERROR, &v, hash, err,
				      resp->data + base, WH_SMALL_ENT_MAX_HDR);
	resp->len = base + (size_t)n;
	return 0;
}

/* small_known - whether |mc| knows the whole-file hash of the identity
 * |st| of the file open as |fd| (not an error), and it is the client's */
static bool small_known(struct wh_mcache *mc, const struct wh_small_req *q,
			int fd, const struct stat *st)
{
	uint8_t hash[WH_HASH_LEN];

	return mc && fd >= 0 && q->have && st->st_size <= WH_MAX_SMALL_FILE &&
	       wh_mcache_hash_get(mc, st, hash) &&
	       memcmp(q->hash, hash, WH_HASH_LEN) == 0;
}

/* small_same - a SAME entry for |q|'s file, known to have the client's
 * hash as |st| (small_known), without reading it; closes |fd|.  0 or
 * -ENOMEM. */
static int small_same(const struct wh_small_req *q, int fd,
		      const struct stat *st, struct wh_buf *resp)
{
	struct wh_version v;
	ssize_t n;

	close(fd);
	if (wh_buf_reserve(resp, WH_SMALL_ENT_MAX_HDR) < 0)
		return -ENOMEM;
	memset(&v, 0, sizeof(v));
	fill_version(st, &v);
	n = wh_small_reply_ent_encode(WH_SMALL_SAME, &v, q->hash, 0,
				      resp->data + resp->len,
				      WH_SMALL_ENT_MAX_HDR);
	resp->len += (size_t)n;
	return 0;
}

/* do_get_small - several small files whole, each with its version and
 * hash, in one reply of at most WH_MAX_REPLY_FRAME bytes; those whose
 * hash the manifest cache knows for the identity they have now, and the
 * client has too, without reading them */
static int do_get_small(struct wh_share *sh, uint32_t req_id,
			const struct wh_msg_get_small *g, struct wh_buf *resp)
{
	struct wh_small_req q[WH_MAX_SMALL_FILES];
	struct stat st[WH_MAX_SMALL_FILES];
	int fds[WH_MAX_SMALL_FILES];
	bool known[WH_MAX_SMALL_FILES];
	struct wh_mcache *mc = sh->mc ? sh->mc : sh->own_mc;
	struct small_ahead ra;
	size_t base = resp->len, pos = 0, body, n = 0;
	int rv;

	while (n < WH_MAX_SMALL_FILES &&
	       (rv = wh_small_req_next(g, &pos, &q[n])) == 1)
		n++;
	if (n != g->count) /* the decoder checked every entry already */
		return wh_error_append(resp, req_id, EPROTO,
				       "malformed request");
	/* every file open first, so that their reads can be started
	 * together (struct small_ahead) */
	for (size_t i = 0; i < n; i++) {
		char p[WH_MAX_PATH + 1];

		copy_path(p, q[i].path.p, q[i].path.len);
		fds[i] = open_small(sh, p, &st[i]);
		known[i] = small_known(mc, &q[i], fds[i], &st[i]);
	}
	ra.fds = fds;
	ra.st = st;
	ra.skip = known;
	ra.n = n;
	ra.done = n < 2;
	rv = wh_buf_reserve(resp, WH_SMALL_REPLY_HDR_LEN);
	for (size_t i = 0; rv < 0 && i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (rv < 0)
		return rv;
	resp->len += WH_SMALL_REPLY_HDR_LEN;
	body = resp->len;
	for (size_t i = 0; i < n; i++) {
		size_t used = resp->len - body;

		if (rv < 0) { /* out of memory: the rest only closed */
			if (fds[i] >= 0)
				close(fds[i]);
			continue;
		}
		/* room kept for an ERROR entry for every file */
		ra.next = i + 1;
		if (known[i])
			rv = small_same(&q[i], fds[i], &st[i], resp);
		else
			rv = small_one(mc, &q[i], fds[i], st[i], SMALL_BUDGET - used,
			       &ra, resp);
	}
	if (rv < 0) {
		resp->len = base;
		return rv;
	}
	wh_small_reply_hdr_encode(req_id, g->count, resp->len - body,
				  resp->data + base, WH_SMALL_REPLY_HDR_LEN);
	return 0;
}

static int do_readdir(struct wh_share *sh, uint32_t req_id,
		      const struct wh_msg_readdir *rd, struct wh_buf *resp)
{
	char p[WH_MAX_PATH + 1], dbuf[32768];
	struct wh_buf ents;
	struct wh_msg m;
	uint64_t next = rd->cookie;
	uint32_t count = 0;
	bool eof = false, full = false;
	int fd, dfd, rv;

	copy_path(p, rd->path.p, rd->path.len);
	fd = resolve(sh, p);
	if (fd < 0)
		return wh_error_append(resp, req_id, -fd, "");
	dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rv = errno;
		close(fd);
		return wh_error_append(resp, req_id, rv, "");
	}
	watch_dir(sh, fd, rd->path.p, rd->path.len);
	close(fd);
	if (rd->cookie && lseek(dfd, (off_t)rd->cookie, SEEK_SET) < 0) {
		rv = errno;
		close(dfd);
		return wh_error_append(resp, req_id, rv, "");
	}
	wh_buf_init(&ents);
	while (!full) {
		long n = syscall(SYS_getdents64, dfd, dbuf, sizeof(dbuf));

		if (n < 0) {
			rv = errno;
			close(dfd);
			wh_buf_free(&ents);
			return wh_error_append(resp, req_id, rv, "");
		}
		if (n == 0) {
			eof = true;
			break;
		}
		for (long off = 0; off < n;) {
			struct linux_dirent64 {
				uint64_t d_ino;
				int64_t d_off;
				unsigned short d_reclen;
				unsigned char d_type;
				char d_name[];
			} *d = (void *)(dbuf + off);
			struct stat st;
			struct wh_attr a;
			size_t nlen = strlen(d->d_name);
			ssize_t w;

			off += d->d_reclen;
			if ((nlen == 1 && d->d_name[0] == '.') ||
			    (nlen == 2 && !strcmp(d->d_name, ".."))) {
				next = (uint64_t)d->d_off;
				continue;
			}
			if (fstatat(dfd, d->d_name, &st,
				    AT_SYMLINK_NOFOLLOW) != 0 ||
			    !visible(&st) || !wh_name_valid(d->d_name, nlen)) {
				next = (uint64_t)d->d_off;
				continue;
			}
			if (ents.len + 2 + nlen + WH_ATTR_WIRE_LEN >
			    DIRENT_BUDGET) {
				full = true;
				break;
			}
			fill_attr(&st, &a);
			if (wh_buf_reserve(&ents, 2 + nlen + WH_ATTR_WIRE_LEN) <
			    0) {
				close(dfd);
				wh_buf_free(&ents);
				return -ENOMEM;
			}
			w = wh_dirent_encode(d->d_name, nlen, &a,
					     ents.data + ents.len,
					     ents.cap - ents.len);
			if (w < 0) {
				next = (uint64_t)d->d_off;
				continue;
			}
			ents.len += (size_t)w;
			next = (uint64_t)d->d_off;
			if (++count == rd->max_entries) {
				full = true;
				break;
			}
		}
	}
	close(dfd);
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READDIR_REPLY;
	m.hdr.req_id = req_id;
	m.u.readdir_reply.next_cookie = next;
	m.u.readdir_reply.eof = eof;
	m.u.readdir_reply.count = count;
	m.u.readdir_reply.entries = ents.data;
	m.u.readdir_reply.entries_len = ents.len;
	rv = wh_msg_append(resp, &m);
	wh_buf_free(&ents);
	return rv;
}

int wh_share_serve(struct wh_share *sh, const uint8_t *req, size_t len,
		   struct wh_buf *resp)
{
	return wh_share_serve_fd(sh, req, len, -1, resp);
}

int wh_share_serve_fd(struct wh_share *sh, const uint8_t *req, size_t len,
		      int fd, struct wh_buf *resp)
{
	return wh_share_serve_from(sh, 0, req, len, fd, resp);
}

int wh_share_serve_from(struct wh_share *sh, uint64_t client,
			const uint8_t *req, size_t len, int fd,
			struct wh_buf *resp)
{
	struct wh_frame_hdr hdr;
	struct wh_msg m;
	uint32_t req_id = 0;
	int rv;

	if (fd >= 0) {
		rv = wh_msg_decode(req, len, WH_MAX_REQ_FRAME, &m);
		if (rv == 0 && m.hdr.type == WH_MSG_READ)
			return do_read(sh, m.hdr.req_id, &m.u.read, fd, resp);
		close(fd); /* not what wh_share_read_nowait opened it for */
	}

	if (wh_frame_hdr_decode(req, len, WH_MAX_REQ_FRAME, &hdr) == 0)
		req_id = hdr.req_id;
	rv = wh_msg_decode(req, len, WH_MAX_REQ_FRAME, &m);
	if (rv == WH_ERR_PATH)
		return wh_error_append(resp, req_id, EINVAL,
				   "unsafe or invalid path");
	if (rv < 0) {
		rv = wh_error_append(resp, req_id, EPROTO, "malformed request");
		return rv < 0 ? rv : WH_ERR_PROTO;
	}
	switch (m.hdr.type) {
	case WH_MSG_LOOKUP:
		return do_lookup(sh, req_id, &m.u.lookup, resp);
	case WH_MSG_GETATTR:
		return do_getattr(sh, req_id, WH_MSG_GETATTR_REPLY,
				  m.u.path.path.p, m.u.path.path.len, resp);
	case WH_MSG_READDIR:
		return do_readdir(sh, req_id, &m.u.readdir, resp);
	case WH_MSG_READ:
		return do_read(sh, req_id, &m.u.read, -1, resp);
	case WH_MSG_READLINK:
		return do_readlink(sh, req_id, m.u.path.path.p,
				   m.u.path.path.len, resp);
	case WH_MSG_STATFS:
		return do_statfs(sh, req_id, resp);
	case WH_MSG_MANIFEST:
		return do_manifest(sh, client, req_id, &m.u.manifest, resp);
	case WH_MSG_CHUNK:
		return do_chunk(sh, req_id, &m.u.chunk, resp);
	case WH_MSG_MANIFEST_STREAM:
		return do_manifest_stream(sh, client, req_id,
					  &m.u.manifest_stream, resp);
	case WH_MSG_GET_SMALL:
		return do_get_small(sh, req_id, &m.u.get_small, resp);
	default:
		rv = wh_error_append(resp, req_id, EPROTO,
				 "not a request message");
		return rv < 0 ? rv : WH_ERR_PROTO;
	}
}

/* ------------------------------------------------------------ lifetime */

int wh_share_open(const char *dir, struct wh_share **pshare)
{
	struct wh_share *sh;
	struct stat st;

	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	pthread_mutex_init(&sh->lock, NULL);
	sh->ifd = -1;
	sh->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
	sh->root_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (sh->root_fd < 0) {
		int err = -errno;

		wh_share_close(sh);
		return err;
	}
	if (fstat(sh->root_fd, &st) != 0 || !S_ISDIR(st.st_mode)) {
		wh_share_close(sh);
		return -ENOTDIR;
	}
	sh->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (sh->ifd >= 0)
		watch_dir(sh, sh->root_fd, "", 0);
	if (wh_mcache_open(NULL, &sh->own_mc) < 0)
		sh->own_mc = NULL; /* streamed manifests get ENOMEM */
	*pshare = sh;
	return 0;
}

void wh_share_close(struct wh_share *sh)
{
	if (!sh)
		return;
	for (size_t i = 0; i < sh->nwatches; i++)
		free(sh->watches[i].path);
	free(sh->watches);
	if (sh->ifd >= 0)
		close(sh->ifd);
	if (sh->root_fd >= 0)
		close(sh->root_fd);
	if (sh->proc_fd >= 0)
		close(sh->proc_fd);
	wh_mcache_close(sh->own_mc);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}
