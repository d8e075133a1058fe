/*
 * wh_fs.c - FUSE low-level operations over a struct wh_rpc.
 *
 * Node ids are pointers to refcounted struct node {parent, name}; a node's
 * path is rebuilt from its ancestors for each request, so ids stay valid
 * across reconnects to a restarted host.  A node lives while the kernel
 * holds lookups on it (nlookup), while children point at it, or while it
 * is open.  Every handler ends in exactly one fuse_reply_*.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "common/wh_err.h"
#include "common/wh_log.h"
#include "fuse/wh_fs.h"
#include "proto/wh_proto.h"

#define NBUCKETS 65536
#define INVAL_QUEUE_MAX 1024
#define READDIR_PAGE WH_MAX_READDIR_ENTRIES
#define WH_READAHEAD_KB "4096" /* 4 reads of WH_MAX_READ in flight */

struct node {
	struct node *parent;  /* NULL for the root */
	char *name;           /* NULL for the root */
	size_t name_len;
	uint64_t nlookup;     /* kernel references */
	uint64_t refs;        /* children + open handles */
	struct node *hnext;   /* hash chain */
	bool attr_valid;      /* attr is current (no invalidation since) */
	struct wh_attr attr;
};

struct dir_entry {
	char *name;
	size_t name_len;
	struct wh_attr attr;
};

struct dir_handle {
	struct dir_entry *ents;
	size_t n;
};

struct fhandle {
	struct node *node;
	struct wh_version version;
	bool keep_cache;
	bool served; /* a read reply went out */
	pthread_mutex_t lock;
};

struct inval_item {
	struct inval_item *next;
	char *dir, *name; /* NULL dir: everything */
};

struct wh_fs {
	struct wh_rpc *rpc;
	struct wh_fs_opts opts;
	struct fuse_session *se;
	bool mounted;
	char *mountpoint;
	pthread_mutex_t lock;
	struct node root;              /* protected by lock */
	struct node **table;           /* protected by lock */
	uint32_t next_req;             /* protected by lock */

	pthread_t notifier;
	bool notifier_started;
	pthread_mutex_t qlock;
	pthread_cond_t qcv;
	struct inval_item *qhead, *qtail; /* protected by qlock */
	size_t qlen;                      /* protected by qlock */
	bool qall, qstop;                 /* protected by qlock */
};

_Static_assert(sizeof(fuse_ino_t) >= sizeof(uintptr_t),
	       "fuse_ino_t must hold a pointer");

/* ------------------------------------------------------------ node table */

static size_t hash_key(const struct node *parent, const char *name, size_t len)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)parent;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)name[i]) * 1099511628211ULL;
	return (size_t)(h % NBUCKETS);
}

static struct node *node_of(struct wh_fs *fs, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &fs->root;
	return (struct node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct wh_fs *fs, struct node *n)
{
	return n == &fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

/* find_child - lock held. */
static struct node *find_child(struct wh_fs *fs, struct node *parent,
			       const char *name, size_t len)
{
	struct node *n = fs->table[hash_key(parent, name, len)];

	for (; n; n = n->hnext)
		if (n->parent == parent && n->name_len == len &&
		    memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
}

/* get_child - find or create; lock held.  NULL if out of memory. */
static struct node *get_child(struct wh_fs *fs, struct node *parent,
			      const char *name, size_t len)
{
	struct node *n = find_child(fs, parent, name, len);
	size_t b;

	if (n)
		return n;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->name = malloc(len + 1);
	if (!n->name) {
		free(n);
		return NULL;
	}
	memcpy(n->name, name, len);
	n->name[len] = '\0';
	n->name_len = len;
	n->parent = parent;
	parent->refs++;
	b = hash_key(parent, name, len);
	n->hnext = fs->table[b];
	fs->table[b] = n;
	return n;
}

/* node_maybe_free - free |n| (and ancestors that become unused); lock
 * held. */
static void node_maybe_free(struct wh_fs *fs, struct node *n)
{
	while (n && n != &fs->root && n->nlookup == 0 && n->refs == 0) {
		struct node *parent = n->parent, **pp;

		pp = &fs->table[hash_key(parent, n->name, n->name_len)];
		while (*pp && *pp != n)
			pp = &(*pp)->hnext;
		if (*pp)
			*pp = n->hnext;
		free(n->name);
		free(n);
		parent->refs--;
		n = parent;
	}
}

/* node_path - write |n|'s path into |buf| (cap bytes, NUL-terminated);
 * lock held.  Returns the length or -ENAMETOOLONG. */
static ssize_t node_path(struct wh_fs *fs, struct node *n, char *buf,
			 size_t cap)
{
	size_t len = 0, pos;
	struct node *m;

	for (m = n; m != &fs->root; m = m->parent)
		len += m->name_len + (m->parent != &fs->root ? 1 : 0);
	if (len > WH_MAX_PATH || len + 1 > cap)
		return -ENAMETOOLONG;
	buf[len] = '\0';
	pos = len;
	for (m = n; m != &fs->root; m = m->parent) {
		pos -= m->name_len;
		memcpy(buf + pos, m->name, m->name_len);
		if (m->parent != &fs->root)
			buf[--pos] = '/';
	}
	return (ssize_t)len;
}

static ssize_t path_of(struct wh_fs *fs, fuse_ino_t ino, char *buf, size_t cap)
{
	ssize_t n;

	pthread_mutex_lock(&fs->lock);
	n = node_path(fs, node_of(fs, ino), buf, cap);
	pthread_mutex_unlock(&fs->lock);
	return n;
}

/* ------------------------------------------------------------------ rpc */

static uint32_t next_req_id(struct wh_fs *fs)
{
	uint32_t id;

	pthread_mutex_lock(&fs->lock);
	id = ++fs->next_req;
	pthread_mutex_unlock(&fs->lock);
	return id;
}

/*
 * call - encode |m|, send it, decode the reply into |out| (which points
 * into |resp|).  Returns 0, or a positive errno for the kernel: the
 * host's own errno for ERROR replies, EIO for transport failures and
 * malformed or unexpected replies.
 */
static int call(struct wh_fs *fs, struct wh_msg *m, uint16_t want,
		struct wh_buf *resp, struct wh_msg *out)
{
	uint8_t req[WH_FRAME_HDR_LEN + WH_MAX_REQ_FRAME];
	ssize_t n;
	int rv;

	m->hdr.req_id = next_req_id(fs);
	n = wh_msg_encode(m, req, sizeof(req));
	if (n < 0)
		return ENAMETOOLONG;
	rv = wh_rpc_call(fs->rpc, req, (size_t)n, resp, fs->opts.timeout_ms);
	if (rv < 0) {
		wh_debug("%s failed: %s", wh_msg_type_name(m->hdr.type),
			 wh_strerror(rv));
		return EIO;
	}
	rv = wh_msg_decode(resp->data, resp->len, WH_MAX_REPLY_FRAME, out);
	if (rv < 0) {
		wh_warn("malformed %s reply from the host: %s",
			wh_msg_type_name(m->hdr.type), wh_strerror(rv));
		return EIO;
	}
	if (out->hdr.type == WH_MSG_ERROR)
		return out->u.error.err;
	if (out->hdr.type != want || out->hdr.req_id != m->hdr.req_id) {
		wh_warn("unexpected %s in reply to %s",
			wh_msg_type_name(out->hdr.type),
			wh_msg_type_name(m->hdr.type));
		return EIO;
	}
	return 0;
}

static void attr_to_stat(const struct wh_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode & ~0222u; /* the mount is read-only */
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_blksize = (blksize_t)a->blksize;
	st->st_atim.tv_sec = a->atime.sec;
	st->st_atim.tv_nsec = a->atime.nsec;
	st->st_mtim.tv_sec = a->mtime.sec;
	st->st_mtim.tv_nsec = a->mtime.nsec;
	st->st_ctim.tv_sec = a->ctime.sec;
	st->st_ctim.tv_nsec = a->ctime.nsec;
}

static void version_of(const struct wh_attr *a, struct wh_version *v)
{
	v->size = a->size;
	v->mtime = a->mtime;
	v->ctime = a->ctime;
}

static bool version_eq(const struct wh_version *a, const struct wh_version *b)
{
	return a->size == b->size && a->mtime.sec == b->mtime.sec &&
	       a->mtime.nsec == b->mtime.nsec && a->ctime.sec == b->ctime.sec &&
	       a->ctime.nsec == b->ctime.nsec;
}

/* ------------------------------------------------------------ operations */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_write = WH_MAX_READ;
	conn->max_readahead = WH_MAX_READ;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* we invalidate pages ourselves when the host says so */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
}

/* reply_entry_for - look up or create the node for |attr| under |parent|,
 * count one kernel lookup, fill |e|.  Returns 0 or ENOMEM. */
static int make_entry(struct wh_fs *fs, struct node *parent, const char *name,
		      size_t len, const struct wh_attr *attr,
		      struct fuse_entry_param *e)
{
	struct node *n;

	pthread_mutex_lock(&fs->lock);
	n = get_child(fs, parent, name, len);
	if (!n) {
		pthread_mutex_unlock(&fs->lock);
		return ENOMEM;
	}
	n->nlookup++;
	n->attr = *attr;
	n->attr_valid = true;
	pthread_mutex_unlock(&fs->lock);
	memset(e, 0, sizeof(*e));
	e->ino = ino_of(fs, n);
	e->generation = 0;
	attr_to_stat(attr, &e->attr);
	e->attr_timeout = fs->opts.attr_timeout;
	e->entry_timeout = fs->opts.entry_timeout;
	return 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	char dir[WH_MAX_PATH + 1];
	struct fuse_entry_param e;
	struct wh_msg m, r;
	struct wh_buf resp;
	size_t nlen = strlen(name);
	ssize_t dlen;
	int err;

	if (nlen > WH_MAX_NAME) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	dlen = path_of(fs, parent, dir, sizeof(dir));
	if (dlen < 0) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_LOOKUP;
	m.u.lookup.dir.p = dir;
	m.u.lookup.dir.len = (uint16_t)dlen;
	m.u.lookup.name.p = name;
	m.u.lookup.name.len = (uint16_t)nlen;
	wh_buf_init(&resp);
	err = call(fs, &m, WH_MSG_LOOKUP_REPLY, &resp, &r);
	if (err == ENOENT) {
		/* remember the absence; an INVAL for this name drops it */
		memset(&e, 0, sizeof(e));
		e.ino = 0;
		e.entry_timeout = fs->opts.entry_timeout;
		fuse_reply_entry(req, &e);
	} else if (err) {
		fuse_reply_err(req, err);
	} else {
		err = make_entry(fs, node_of(fs, parent), name, nlen,
				 &r.u.attr.attr, &e);
		if (err)
			fuse_reply_err(req, err);
		else
			fuse_reply_entry(req, &e);
	}
	wh_buf_free(&resp);
}

static void forget_one(struct wh_fs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n = node_of(fs, ino);

	if (n == &fs->root)
		return;
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	node_maybe_free(fs, n);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct wh_fs *fs = fuse_req_userdata(req);

	pthread_mutex_lock(&fs->lock);
	forget_one(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct wh_fs *fs = fuse_req_userdata(req);

	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < count; i++)
		forget_one(fs, forgets[i].ino, forgets[i].nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

/* fetch_attr - GETATTR for |ino|, caching the result.  0 or errno. */
static int fetch_attr(struct wh_fs *fs, fuse_ino_t ino, struct wh_attr *out)
{
	char path[WH_MAX_PATH + 1];
	struct wh_msg m, r;
	struct wh_buf resp;
	ssize_t len;
	int err;

	len = path_of(fs, ino, path, sizeof(path));
	if (len < 0)
		return ENAMETOOLONG;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GETATTR;
	m.u.path.path.p = path;
	m.u.path.path.len = (uint16_t)len;
	wh_buf_init(&resp);
	err = call(fs, &m, WH_MSG_GETATTR_REPLY, &resp, &r);
	if (!err) {
		struct node *n = node_of(fs, ino);

		*out = r.u.attr.attr;
		pthread_mutex_lock(&fs->lock);
		n->attr = *out;
		n->attr_valid = true;
		pthread_mutex_unlock(&fs->lock);
	}
	wh_buf_free(&resp);
	return err;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	struct node *n = node_of(fs, ino);
	struct wh_attr a;
	struct stat st;
	bool cached;
	int err = 0;

	(void)fi;
	pthread_mutex_lock(&fs->lock);
	cached = n->attr_valid;
	a = n->attr;
	pthread_mutex_unlock(&fs->lock);
	if (!cached)
		err = fetch_attr(fs, ino, &a);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, fs->opts.attr_timeout);
}

static void dir_handle_free(struct dir_handle *dh)
{
	if (!dh)
		return;
	for (size_t i = 0; i < dh->n; i++)
		free(dh->ents[i].name);
	free(dh->ents);
	free(dh);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	char path[WH_MAX_PATH + 1];
	struct dir_handle *dh;
	struct wh_buf resp;
	uint64_t cookie = 0;
	size_t cap = 0;
	ssize_t len;
	int err = 0;

	len = path_of(fs, ino, path, sizeof(path));
	if (len < 0) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	dh = calloc(1, sizeof(*dh));
	if (!dh) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	wh_buf_init(&resp);
	/* read the whole listing now: a consistent snapshot for this open */
	for (;;) {
		struct wh_msg m, r;
		struct wh_dirent de;
		size_t pos = 0;
		int rv;

		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_READDIR;
		m.u.readdir.path.p = path;
		m.u.readdir.path.len = (uint16_t)len;
		m.u.readdir.cookie = cookie;
		m.u.readdir.max_entries = READDIR_PAGE;
		err = call(fs, &m, WH_MSG_READDIR_REPLY, &resp, &r);
		if (err)
			break;
		while ((rv = wh_dirent_next(&r.u.readdir_reply, &pos, &de)) ==
		       1) {
			struct dir_entry *ent;

			if (dh->n == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct dir_entry *ne =
					realloc(dh->ents, ncap * sizeof(*ne));

				if (!ne) {
					err = ENOMEM;
					break;
				}
				dh->ents = ne;
				cap = ncap;
			}
			ent = &dh->ents[dh->n];
			ent->name = malloc(de.name.len + 1);
			if (!ent->name) {
				err = ENOMEM;
				break;
			}
			memcpy(ent->name, de.name.p, de.name.len);
			ent->name[de.name.len] = '\0';
			ent->name_len = de.name.len;
			ent->attr = de.attr;
			dh->n++;
		}
		if (err)
			break;
		if (rv < 0) {
			err = EIO;
			break;
		}
		if (r.u.readdir_reply.eof ||
		    r.u.readdir_reply.next_cookie == cookie)
			break;
		cookie = r.u.readdir_reply.next_cookie;
	}
	wh_buf_free(&resp);
	if (err) {
		dir_handle_free(dh);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)dh;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_handle_free(dh);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	struct dir_handle *dh = (struct dir_handle *)(uintptr_t)fi->fh;
	struct node *parent = node_of(fs, ino);
	char *buf;
	size_t used = 0;

	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < dh->n; i++) {
		struct dir_entry *ent = &dh->ents[i];
		size_t need;

		if (plus) {
			struct fuse_entry_param e;

			if (make_entry(fs, parent, ent->name, ent->name_len,
				       &ent->attr, &e) != 0)
				break;
			need = fuse_add_direntry_plus(req, buf + used,
						      size - used, ent->name,
						      &e, (off_t)(i + 1));
			if (need > size - used) {
				/* did not fit: take the lookup back */
				pthread_mutex_lock(&fs->lock);
				forget_one(fs, e.ino, 1);
				pthread_mutex_unlock(&fs->lock);
				break;
			}
		} else {
			struct stat st;

			attr_to_stat(&ent->attr, &st);
			need = fuse_add_direntry(req, buf + used, size - used,
						 ent->name, &st,
						 (off_t)(i + 1));
			if (need > size - used)
				break;
		}
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	(void)ino;
	dir_handle_free((struct dir_handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	struct node *n = node_of(fs, ino);
	struct fhandle *fh;
	struct wh_version before, now;
	struct wh_attr a;
	bool had;
	int err;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	had = n->attr_valid;
	version_of(&n->attr, &before);
	pthread_mutex_unlock(&fs->lock);
	/* one round trip per open buys a version we can trust */
	err = fetch_attr(fs, ino, &a);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	if (!S_ISREG(a.mode)) {
		fuse_reply_err(req, S_ISDIR(a.mode) ? EISDIR : EINVAL);
		return;
	}
	version_of(&a, &now);
	fh = calloc(1, sizeof(*fh));
	if (!fh) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&fh->lock, NULL);
	fh->node = n;
	fh->version = now;
	fh->keep_cache = had && version_eq(&before, &now);
	pthread_mutex_lock(&fs->lock);
	n->refs++;
	pthread_mutex_unlock(&fs->lock);
	fi->fh = (uint64_t)(uintptr_t)fh;
	fi->keep_cache = fh->keep_cache;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		pthread_mutex_lock(&fs->lock);
		n->refs--;
		node_maybe_free(fs, n);
		pthread_mutex_unlock(&fs->lock);
		pthread_mutex_destroy(&fh->lock);
		free(fh);
	}
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	struct fhandle *fh = (struct fhandle *)(uintptr_t)fi->fh;

	(void)ino;
	pthread_mutex_lock(&fs->lock);
	fh->node->refs--;
	node_maybe_free(fs, fh->node);
	pthread_mutex_unlock(&fs->lock);
	pthread_mutex_destroy(&fh->lock);
	free(fh);
	fuse_reply_err(req, 0);
}

/* stale - the file changed under an open handle: drop what the kernel
 * cached, so the next open sees the new content. */
static void mark_stale(struct wh_fs *fs, struct node *n, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs->lock);
	n->attr_valid = false;
	pthread_mutex_unlock(&fs->lock);
	(void)ino;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	struct fhandle *fh = (struct fhandle *)(uintptr_t)fi->fh;
	char path[WH_MAX_PATH + 1];
	struct wh_buf resp;
	uint8_t *out = NULL;
	size_t got = 0;
	ssize_t len;
	int err = 0;

	len = path_of(fs, ino, path, sizeof(path));
	if (len < 0) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (size > WH_MAX_READ) {
		out = malloc(size);
		if (!out) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	wh_buf_init(&resp);
	while (got < size) {
		struct wh_msg m, r;
		size_t want = size - got;
		bool adopt;

		if (want > WH_MAX_READ)
			want = WH_MAX_READ;
		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_READ;
		m.u.read.path.p = path;
		m.u.read.path.len = (uint16_t)len;
		m.u.read.offset = (uint64_t)off + got;
		m.u.read.length = (uint32_t)want;
		err = call(fs, &m, WH_MSG_READ_REPLY, &resp, &r);
		if (err)
			break;
		if (r.u.read_reply.data_len > want) {
			err = EIO;
			break;
		}
		pthread_mutex_lock(&fh->lock);
		if (!version_eq(&fh->version, &r.u.read_reply.version)) {
			/* a handle that has shown nothing yet, and whose
			 * open dropped the kernel's pages, may move on to
			 * the new version; any other reader must be told */
			adopt = !fh->served && !fh->keep_cache && got == 0;
			if (adopt)
				fh->version = r.u.read_reply.version;
		} else {
			adopt = true;
		}
		if (adopt)
			fh->served = true;
		pthread_mutex_unlock(&fh->lock);
		if (!adopt) {
			wh_info("'%s' changed on the host while open: EIO",
				path);
			mark_stale(fs, fh->node, ino);
			err = EIO;
			break;
		}
		if (!out && r.u.read_reply.data_len == size - got && got == 0) {
			/* the common case: one reply holds it all */
			fuse_reply_buf(req, (const char *)r.u.read_reply.data,
				       r.u.read_reply.data_len);
			wh_buf_free(&resp);
			return;
		}
		if (!out) {
			out = malloc(size);
			if (!out) {
				err = ENOMEM;
				break;
			}
		}
		memcpy(out + got, r.u.read_reply.data, r.u.read_reply.data_len);
		got += r.u.read_reply.data_len;
		if (r.u.read_reply.data_len < want)
			break; /* end of file */
	}
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, (const char *)out, got);
	free(out);
	wh_buf_free(&resp);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	char path[WH_MAX_PATH + 1], target[WH_MAX_PATH + 1];
	struct wh_msg m, r;
	struct wh_buf resp;
	ssize_t len;
	int err;

	len = path_of(fs, ino, path, sizeof(path));
	if (len < 0) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READLINK;
	m.u.path.path.p = path;
	m.u.path.path.len = (uint16_t)len;
	wh_buf_init(&resp);
	err = call(fs, &m, WH_MSG_READLINK_REPLY, &resp, &r);
	if (err) {
		fuse_reply_err(req, err);
	} else {
		memcpy(target, r.u.readlink_reply.target.p,
		       r.u.readlink_reply.target.len);
		target[r.u.readlink_reply.target.len] = '\0';
		fuse_reply_readlink(req, target);
	}
	wh_buf_free(&resp);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	struct wh_msg m, r;
	struct wh_buf resp;
	struct statvfs sv;
	int err;

	(void)ino;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_STATFS;
	wh_buf_init(&resp);
	err = call(fs, &m, WH_MSG_STATFS_REPLY, &resp, &r);
	if (err) {
		fuse_reply_err(req, err);
	} else {
		memset(&sv, 0, sizeof(sv));
		sv.f_bsize = r.u.statfs_reply.bsize;
		sv.f_frsize = r.u.statfs_reply.frsize;
		sv.f_blocks = r.u.statfs_reply.blocks;
		sv.f_bfree = r.u.statfs_reply.bfree;
		sv.f_bavail = r.u.statfs_reply.bavail;
		sv.f_files = r.u.statfs_reply.files;
		sv.f_ffree = r.u.statfs_reply.ffree;
		sv.f_favail = r.u.statfs_reply.ffree;
		sv.f_namemax = r.u.statfs_reply.namemax;
		sv.f_flag = ST_RDONLY;
		fuse_reply_statfs(req, &sv);
	}
	wh_buf_free(&resp);
}

static const struct fuse_lowlevel_ops wh_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.open = op_open,
	.release = op_release,
	.read = op_read,
	.readlink = op_readlink,
	.statfs = op_statfs,
};

/* ---------------------------------------------------------- invalidation */

/* resolve_dir - the node for |dir| if the kernel may know it; lock held. */
static struct node *resolve_dir(struct wh_fs *fs, const char *dir)
{
	struct node *n = &fs->root;
	const char *p = dir;

	while (n && *p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		n = find_child(fs, n, p, len);
		p += len;
		if (*p == '/')
			p++;
	}
	return n;
}

static void inval_everything(struct wh_fs *fs)
{
	fuse_ino_t *ids = NULL;
	size_t n = 0, cap = 0;

	pthread_mutex_lock(&fs->lock);
	fs->root.attr_valid = false;
	for (size_t b = 0; b < NBUCKETS; b++) {
		for (struct node *m = fs->table[b]; m; m = m->hnext) {
			m->attr_valid = false;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 256;
				fuse_ino_t *nids =
					realloc(ids, ncap * sizeof(*nids));

				if (!nids)
					continue;
				ids = nids;
				cap = ncap;
			}
			ids[n++] = ino_of(fs, m);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_lowlevel_notify_inval_inode(fs->se, FUSE_ROOT_ID, 0, 0);
	for (size_t i = 0; i < n; i++)
		fuse_lowlevel_notify_inval_inode(fs->se, ids[i], 0, 0);
	free(ids);
}

static void inval_one(struct wh_fs *fs, const char *dir, const char *name)
{
	struct node *d, *c = NULL;
	fuse_ino_t dino, cino = 0;

	pthread_mutex_lock(&fs->lock);
	d = resolve_dir(fs, dir);
	if (!d) {
		pthread_mutex_unlock(&fs->lock);
		return; /* the kernel cannot have it cached */
	}
	d->attr_valid = false;
	dino = ino_of(fs, d);
	if (*name) {
		c = find_child(fs, d, name, strlen(name));
		if (c) {
			c->attr_valid = false;
			cino = ino_of(fs, c);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	/* the nodes may be forgotten meanwhile; the kernel then answers
	 * ENOENT, which is harmless: we never dereference them here */
	fuse_lowlevel_notify_inval_inode(fs->se, dino, 0, 0);
	if (*name) {
		fuse_lowlevel_notify_inval_entry(fs->se, dino, name,
						 strlen(name));
		if (cino)
			fuse_lowlevel_notify_inval_inode(fs->se, cino, 0, 0);
	}
}

/*
 * raise_readahead - the kernel gives a FUSE mount 128 KiB of readahead
 * whatever we ask in init; more means fewer, larger reads in flight at
 * once, which is what a remote file needs.  Only root may change it
 * (through the mount's bdi in sysfs); others keep the default.
 */
static void raise_readahead(const char *mountpoint)
{
	char path[128];
	struct stat st;
	int fd;

	if (stat(mountpoint, &st) != 0)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb",
		 major(st.st_dev), minor(st.st_dev));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		wh_debug("readahead stays at the kernel's default: %s: %s",
			 path, strerror(errno));
		return;
	}
	if (write(fd, WH_READAHEAD_KB, strlen(WH_READAHEAD_KB)) < 0)
		wh_debug("cannot raise readahead: %s", strerror(errno));
	close(fd);
}

static void *notifier_main(void *arg)
{
	struct wh_fs *fs = arg;

	/* stat() of the mount point waits for the request loop: do it here,
	 * not in wh_fs_mount, which runs before the loop */
	if (fs->mountpoint)
		raise_readahead(fs->mountpoint);

	for (;;) {
		struct inval_item *list;
		bool all;

		pthread_mutex_lock(&fs->qlock);
		while (!fs->qstop && !fs->qhead && !fs->qall)
			pthread_cond_wait(&fs->qcv, &fs->qlock);
		if (fs->qstop) {
			pthread_mutex_unlock(&fs->qlock);
			break;
		}
		list = fs->qhead;
		all = fs->qall;
		fs->qhead = fs->qtail = NULL;
		fs->qlen = 0;
		fs->qall = false;
		pthread_mutex_unlock(&fs->qlock);

		if (all)
			inval_everything(fs);
		while (list) {
			struct inval_item *it = list;

			list = it->next;
			if (!all)
				inval_one(fs, it->dir, it->name);
			free(it->dir);
			free(it->name);
			free(it);
		}
	}
	return NULL;
}

void wh_fs_inval(struct wh_fs *fs, const char *dir, size_t dir_len,
		 const char *name, size_t name_len)
{
	struct inval_item *it;

	if (dir_len == 0 && name_len == 0) {
		wh_fs_inval_all(fs);
		return;
	}
	it = calloc(1, sizeof(*it));
	if (it) {
		it->dir = strndup(dir, dir_len);
		it->name = strndup(name, name_len);
	}
	pthread_mutex_lock(&fs->qlock);
	if (!it || !it->dir || !it->name || fs->qlen >= INVAL_QUEUE_MAX) {
		fs->qall = true; /* cannot keep track: drop everything */
		if (it) {
			free(it->dir);
			free(it->name);
			free(it);
		}
	} else {
		if (fs->qtail)
			fs->qtail->next = it;
		else
			fs->qhead = it;
		fs->qtail = it;
		fs->qlen++;
	}
	pthread_cond_signal(&fs->qcv);
	pthread_mutex_unlock(&fs->qlock);
}

void wh_fs_inval_all(struct wh_fs *fs)
{
	pthread_mutex_lock(&fs->qlock);
	fs->qall = true;
	pthread_cond_signal(&fs->qcv);
	pthread_mutex_unlock(&fs->qlock);
}

/* -------------------------------------------------------------- lifetime */

int wh_fs_new(struct wh_rpc *rpc, const struct wh_fs_opts *opts,
	      struct wh_fs **pfs)
{
	struct wh_fs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return -ENOMEM;
	fs->table = calloc(NBUCKETS, sizeof(*fs->table));
	if (!fs->table) {
		free(fs);
		return -ENOMEM;
	}
	fs->rpc = rpc;
	fs->opts = *opts;
	if (fs->opts.timeout_ms <= 0)
		fs->opts.timeout_ms = 8000;
	fs->root.nlookup = 1;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->qlock, NULL);
	pthread_cond_init(&fs->qcv, NULL);
	*pfs = fs;
	return 0;
}

int wh_fs_mount(struct wh_fs *fs, const char *mountpoint)
{
	char *argv[] = { "wormhole", "-o",
			 "ro,default_permissions,fsname=wormhole,"
			 "subtype=wormhole",
			 NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	int rv;

	if (fs->opts.debug) {
		argv[3] = "-d";
		args.argc = 4;
	}
	fs->se = fuse_session_new(&args, &wh_ops, sizeof(wh_ops), fs);
	fuse_opt_free_args(&args);
	if (!fs->se) {
		wh_err("cannot create the FUSE session");
		return -EIO;
	}
	if (fuse_session_mount(fs->se, mountpoint) != 0) {
		wh_err("cannot mount on '%s' (is /dev/fuse available, and "
		       "fusermount3 installed?)", mountpoint);
		fuse_session_destroy(fs->se);
		fs->se = NULL;
		return -EIO;
	}
	fs->mounted = true;
	/* absolute: a daemon changes its directory to / */
	fs->mountpoint = realpath(mountpoint, NULL);
	rv = pthread_create(&fs->notifier, NULL, notifier_main, fs);
	if (rv != 0)
		return -rv;
	fs->notifier_started = true;
	return 0;
}

int wh_fs_run(struct wh_fs *fs)
{
	struct fuse_loop_config *cfg;
	int rv;

	if (fuse_set_signal_handlers(fs->se) != 0)
		return -EIO;
	cfg = fuse_loop_cfg_create();
	if (!cfg) {
		fuse_remove_signal_handlers(fs->se);
		return -ENOMEM;
	}
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	fuse_loop_cfg_set_idle_threads(cfg, 10);
	fuse_loop_cfg_set_max_threads(cfg, 32);
	rv = fuse_session_loop_mt(fs->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	fuse_remove_signal_handlers(fs->se);
	return rv < 0 ? rv : 0;
}

void wh_fs_exit(struct wh_fs *fs)
{
	if (fs->se)
		fuse_session_exit(fs->se);
}

void wh_fs_del(struct wh_fs *fs)
{
	if (!fs)
		return;
	if (fs->notifier_started) {
		pthread_mutex_lock(&fs->qlock);
		fs->qstop = true;
		pthread_cond_signal(&fs->qcv);
		pthread_mutex_unlock(&fs->qlock);
		pthread_join(fs->notifier, NULL);
	}
	while (fs->qhead) {
		struct inval_item *it = fs->qhead;

		fs->qhead = it->next;
		free(it->dir);
		free(it->name);
		free(it);
	}
	if (fs->se) {
		if (fs->mounted)
			fuse_session_unmount(fs->se);
		fuse_session_destroy(fs->se);
	}
	for (size_t b = 0; b < NBUCKETS; b++) {
		struct node *n = fs->table[b], *next;

		for (; n; n = next) {
			next = n->hnext;
			free(n->name);
			free(n);
		}
	}
	free(fs->table);
	free(fs->mountpoint);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->qlock);
	pthread_cond_destroy(&fs->qcv);
	free(fs);
}
