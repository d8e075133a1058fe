/*
 * wh_fs.c - FUSE low-level operations over a struct wh_rpc.
 *
 * Node table.  A FUSE node id is the address of a struct node {parent,
 * name} (FUSE_ROOT_ID for the root); the path sent to the host is rebuilt
 * from the ancestors for every request, so node ids stay meaningful across
 * reconnects to a restarted host.  Nodes are found by (parent, name) in a
 * hash table, so a second lookup of a name reuses its node.  A node lives
 * while the kernel holds lookups on it (nlookup: lookup and readdirplus add,
 * forget takes away), or while children, open files or remembered negative
 * entries point at it (refs).  Attributes show the host's st_ino; the node
 * id is ours.
 *
 * Caching.  Attributes from the host stay valid until the host says the
 * file changed (wh_fs_inval), so a stat rarely costs a round trip.  Every
 * invalidation bumps a generation counter; a reply is cached, and handed to
 * the kernel with the configured timeouts, only if no invalidation touched
 * the node (or its directory) since the request went out, which closes the
 * race between a reply in flight and a change on the host.  The kernel
 * keeps a file's pages across opens while the file's version (size, mtime,
 * ctime) is the one its pages were read at; a READ reply of another version
 * than the one the read is served at fails with EIO, so nobody gets a
 * silent mix.
 *
 * Opens.  When the kernel can do without, OPEN is declined (ENOSYS: the
 * kernel then opens and closes regular files without asking, keeping their
 * pages) and what an open held lives on the node: the version its reads
 * are served at (that of the attributes last given with its name, by
 * LOOKUP or READDIRPLUS, where every open begins), and the fetcher's read
 * state (struct rstate).  Otherwise each open carries them (struct
 * open_file).
 *
 * Kernel notifications run on a dedicated thread (the notifier): calling
 * into the kernel from a request handler, or from the thread that serves the
 * connection, could deadlock against a pending request.  The notifier also
 * wakes the request loop when wh_fs_exit() or a signal asks it to stop.
 *
 * Every handler ends in exactly one fuse_reply_*.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "chunk/wh_zstd.h"
#include "client/wh_fetch.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_trace.h"
#include "common/wh_time.h"
#include "fuse/wh_fs.h"
#include "proto/wh_proto.h"
#include "store/wh_ram.h"

#define TABLE_MIN_BUCKETS 1024     /* hash buckets; doubled as nodes come */
#define INVAL_QUEUE_MAX 4096       /* queued changes before "all changed" */
#define NEG_MAX 4096               /* negative entries we can take back */
#define DIR_MAX_ENTRIES (1u << 24) /* entries in one listing */
#define READAHEAD_KB "4096"        /* 4 reads of WH_MAX_READ in flight */
#define DIRENTPLUS_MIN 152         /* bytes of the smallest readdirplus
				    * entry: fuse_entry_out + fuse_dirent */
#define KICK_MS 100                /* period of wake-ups of a stopping loop */
#define NOTIFIER_JOIN_S 3          /* wait for the notifier at exit */
#define RAM_DEFAULT (128ULL << 20) /* RAM cache of chunks */
#define STATS_XATTR "user.wormhole.stats" /* on the root: the counters */
#define LINK_XATTR "user.wormhole.link" /* on the root: peer, transport */
#define LISTINGS_KEPT 128          /* directories whose listing is kept
				    * after closedir, for small files */
#define KEPT_ENTRIES_MAX 32768     /* entries in those listings, in all */
#define SMALL_AHEAD_MIN 16         /* small files fetched ahead at first */
#define SMALL_AHEAD_BYTES (1u << 20) /* ... or as many more as fit in this
				      * (one GET_SMALL's worth) */
#define SMALL_AHEAD_MAX 256        /* ... doubling up to this */
#define AHEAD_DIRS_MIN 2           /* subdirectories whose files were read
				    * before the next one is listed ahead */
#define AHEAD_SCAN 256             /* entries looked at for that one */
#define AHEAD_TTL_NS (2000ULL * WH_NS_PER_MS) /* an unused listing read
						* ahead is read again */
#define STORE_QUEUE_BYTES (16u << 20) /* small files waiting to be put
				       * in the kernel's page cache */
#define RSTATE_MAX 32              /* idle read states kept (no-open) */
#define WAKE_SIG SIGURG            /* interrupts the loop's wait; ignored by
				    * default, so a stray one is harmless */

/*
 * struct node - one name the kernel knows.  |parent|, |name| and
 * |name_len| never change after creation; every other field is protected by
 * wh_fs.lock.
 */
struct node {
	struct node *parent;   /* NULL for the root; counted in parent->refs */
	char *name;            /* NUL-terminated; NULL for the root */
	size_t name_len;
	struct node *hnext;    /* hash chain */
	uint64_t nlookup;      /* lookups the kernel holds on this node id */
	uint64_t refs;         /* children, open files, negative entries */
	uint64_t inval_gen;    /* wh_fs.gen at the last invalidation */
	struct wh_attr attr;   /* the host's attributes, last we heard */
	bool attr_valid;       /* |attr| is current: no invalidation since */
	bool cache_known;      /* |cache_version| is set */
	struct wh_version cache_version; /* what the kernel's pages hold */
	struct dir_handle *listing; /* a directory's last listing, kept
				     * (one reference) while it is in
				     * wh_fs.kept */
	bool ahead_busy;            /* its listing is being read ahead */
	/* no-open mode: what an open file holds otherwise */
	bool rd_known;              /* |rd_version| is set */
	bool rd_changed;            /* a read saw another version: reads
				     * fail until the name is looked up */
	struct wh_version rd_version; /* the version reads are served at */
	struct rstate *rs;          /* the read state, or NULL */
};

/* The read state of a node in no-open mode (under wh_fs.lock): the
 * fetcher's state for sequential reads at the node's rd_version.  Kept for
 * the nodes read last (at most RSTATE_MAX idle ones), dropped at the end
 * of the file (where a reader closes), when the version changes and when
 * the node goes. */
struct rstate {
	struct node *node;          /* NULL once detached from it */
	struct wh_fetch_file *ff;
	struct wh_version v;        /* the version |ff| reads at */
	unsigned int users;         /* reads using it now */
	struct rstate *prev, *next; /* wh_fs.rs_head, newest first, while
				     * attached */
};

struct dir_entry {
	char *name; /* NUL-terminated */
	size_t name_len;
	struct wh_attr attr;
};

/*
 * The order a reader walks a directory in, learnt from the reader: cp -r
 * sorts a directory by inode number (coreutils does, before copying it),
 * rsync by name, tar and find take the listing as it comes.  Every
 * listing starts in the mount's current guess (wh_fs.walk: inode order
 * until a reader shows another); the second small file read in a
 * directory tells: if it is not the next small file after the first in
 * that order but is in another, the guess becomes that one, for this
 * listing and every one after it.
 */
enum walk_order {
	WALK_INODE,
	WALK_NAME,
	WALK_LISTING,
};

/* An entry's place in a listing in walk order (dir_handle.ord: |i| in
 * dir_handle.ents), or, sorted by inode number, where it is in that
 * order (dir_handle.byino: |i| in dir_handle.ord). */
struct dir_ord {
	uint64_t ino;
	size_t i;
};

/* An open directory: the whole listing, read at opendir (immutable but
 * for the list links and the small-file fields, under wh_fs.lock).  Kept
 * after closedir on the directory's node (node.listing) for the
 * small-file prefetch: readers like cp -r list a directory, close it,
 * then open its files. */
struct dir_handle {
	struct dir_entry *ents;
	size_t n;
	uint64_t gen; /* wh_fs.gen when the listing was requested */
	struct dir_handle *prev, *next; /* wh_fs.dirs, under wh_fs.lock */
	unsigned int refs;  /* the open, node.listing; under wh_fs.lock */
	struct dir_ord *ord; /* in walk order (|order|); on demand */
	struct dir_ord *byino; /* the places in ord, by inode number */
	enum walk_order order;
	size_t first_read;  /* 1 + ents index of the first small file read */
	bool order_seen;    /* a second one told the walk order */
	size_t pf_upto;     /* small files queued up to ord[pf_upto] */
	size_t pf_ahead;    /* how far ahead the next top-up reaches */
	unsigned int dirs_read; /* subdirectories whose files were read */
	bool files_read;    /* small_batch saw a file of it */
	bool ahead;         /* read ahead of an opendir, none used it yet */
	bool walked;        /* an opendir used it so: a walk's next stop */
	uint64_t ahead_ns;  /* when that listing came */
};

/* What a request found to fetch ahead, done once it is answered. */
struct prefetch {
	struct wh_fetch_small *small; /* small files of a directory */
	char *buf;                    /* their paths */
	size_t n;
	struct node *dir; /* a directory to list ahead (ahead_busy set, one
			   * reference held) or NULL */
};

/* An open file (immutable but for the list links). */
struct open_file {
	struct node *node;         /* counted in node->refs */
	struct wh_version version; /* the version this open reads */
	struct wh_fetch_file *ff;  /* its sequential-read state */
	atomic_bool changed;       /* the file is no longer at |version| */
	struct open_file *prev, *next; /* wh_fs.files, under wh_fs.lock */
};

/* A negative entry handed to the kernel, kept so that "everything
 * changed" can take it back (the kernel cannot list them for us). */
struct neg_entry {
	struct node *dir; /* counted in dir->refs */
	char *name;
	size_t name_len;
	uint64_t expires_ns; /* when the kernel drops it by itself */
};

enum inval_kind {
	INVAL_NAME,  /* dir + name (name "" for the directory itself) */
	INVAL_INODE, /* one node id: drop its attributes and pages */
};

struct inval_item {
	struct inval_item *next;
	enum inval_kind kind;
	fuse_ino_t ino;          /* INVAL_INODE */
	size_t dir_len, name_len; /* INVAL_NAME */
	char str[];              /* INVAL_NAME: dir, NUL, name, NUL */
};

/* A small file fetched ahead, to put in the kernel's page cache. */
struct store_item {
	struct store_item *next;
	struct wh_ram_ent *e; /* referenced */
	struct wh_version v;
	size_t path_len;
	char path[]; /* NUL-terminated */
};

/* What inval_everything() tells the kernel, gathered under the lock. */
struct kernel_name {
	fuse_ino_t parent, ino; /* parent 0: no name (the root) */
	char *name;
	size_t name_len;
};

struct wh_fs {
	struct wh_rpc *rpc;
	struct wh_fs_opts opts;
	struct wh_ram *ram;         /* chunks in RAM */
	struct wh_fetch *fetch;     /* chunks from the store or the host */
	atomic_ulong reads_direct;  /* READ requests sent by op_read */
	atomic_uint areads;         /* async reads outstanding (struct aread) */
	atomic_ulong bytes_direct;  /* the bytes their replies brought */
	struct fuse_session *se;    /* set by wh_fs_mount */
	bool mounted;
	char *mountpoint;           /* absolute */
	bool have_dev;              /* the mount's device is known */
	unsigned int dev_major, dev_minor;
	atomic_bool live;           /* a request after INIT was seen */
	atomic_uint next_req;       /* request ids */
	atomic_bool no_open;        /* OPEN is declined (no-open mode) */
	atomic_ulong opens;         /* OPEN requests that came */

	/* the node table */
	pthread_mutex_t lock;
	/* open handles, freed at the end if the kernel never released them
	 * (a signal ends the session without RELEASE) */
	struct open_file *files;    /* protected by lock */
	struct dir_handle *dirs;    /* protected by lock */
	/* protected by lock: the attached read states, newest first */
	struct rstate *rs_head, *rs_tail;
	size_t rs_len;
	struct node root;           /* protected by lock */
	struct node **buckets;      /* protected by lock */
	size_t nbuckets, nnodes;    /* protected by lock */
	uint64_t gen;               /* protected by lock: invalidations */
	struct neg_entry neg[NEG_MAX]; /* protected by lock: a FIFO ring */
	size_t neg_head, neg_len;   /* protected by lock */
	/* protected by lock: directories whose listing is kept (counted in
	 * their refs), oldest first */
	struct node *kept[LISTINGS_KEPT];
	size_t kept_len;
	size_t kept_entries;        /* protected by lock: theirs, in all */
	enum walk_order walk;       /* protected by lock: readers' order */

	/* the notifier thread and its queue */
	pthread_t notifier;
	bool notifier_started;
	int wake_fd;                /* eventfd: work for the notifier */
	pthread_mutex_t qlock;
	struct inval_item *qhead, *qtail; /* protected by qlock */
	size_t qlen;                /* protected by qlock */
	bool qall;                  /* protected by qlock */
	struct store_item *shead, *stail; /* protected by qlock */
	size_t sbytes;              /* protected by qlock */
	atomic_ulong small_stored;  /* small files put in the page cache */
	atomic_ulong dirs_ahead;    /* listings read ahead of an opendir */
	atomic_ulong dirs_ahead_used; /* ... that an opendir then used */
	atomic_bool stop;           /* the notifier must return */

	/* wh_fs_run */
	pthread_mutex_t run_lock;
	pthread_t loop_thread;      /* protected by run_lock */
	bool running;               /* protected by run_lock */
	atomic_bool exit_pending;   /* wh_fs_exit() or a signal asked */
};

_Static_assert(sizeof(fuse_ino_t) >= sizeof(uintptr_t),
	       "fuse_ino_t must hold a pointer");

static void queue_inode(struct wh_fs *fs, fuse_ino_t ino);
static void rs_detach(struct wh_fs *fs, struct rstate *rs);

/* ------------------------------------------------------------ node table */

static size_t hash_key(const struct node *parent, const char *name,
		       size_t len, size_t nbuckets)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)parent;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)name[i]) * 1099511628211ULL;
	h ^= h >> 29;
	return (size_t)(h & (nbuckets - 1)); /* nbuckets: a power of two */
}

static struct node *node_of(struct wh_fs *fs, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &fs->root;
	return (struct node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct wh_fs *fs, const struct node *n)
{
	return n == &fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

/* find_child - the node for (parent, name) or NULL; lock held. */
static struct node *find_child(struct wh_fs *fs, const struct node *parent,
			       const char *name, size_t len)
{
	struct node *n;

	n = fs->buckets[hash_key(parent, name, len, fs->nbuckets)];
	for (; n; n = n->hnext)
		if (n->parent == parent && n->name_len == len &&
		    memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
}

/* table_grow - double the buckets; lock held.  Failure is harmless (the
 * chains just get longer). */
static void table_grow(struct wh_fs *fs)
{
	size_t nb = fs->nbuckets * 2;
	struct node **b = wh_zalloc(nb, sizeof(*b)); /* read first */

	if (!b)
		return;
	for (size_t i = 0; i < fs->nbuckets; i++) {
		struct node *n = fs->buckets[i], *next;

		for (; n; n = next) {
			size_t k = hash_key(n->parent, n->name, n->name_len, nb);

			next = n->hnext;
			n->hnext = b[k];
			b[k] = n;
		}
	}
	free(fs->buckets);
	fs->buckets = b;
	fs->nbuckets = nb;
}

/* get_child - find or create the node for (parent, name); lock held.
 * NULL when out of memory. */
static struct node *get_child(struct wh_fs *fs, struct node *parent,
			      const char *name, size_t len)
{
	struct node *n = find_child(fs, parent, name, len);
	size_t k;

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
	if (fs->nnodes >= fs->nbuckets)
		table_grow(fs);
	k = hash_key(parent, name, len, fs->nbuckets);
	n->hnext = fs->buckets[k];
	fs->buckets[k] = n;
	fs->nnodes++;
	return n;
}

/* node_maybe_free - free |n| if nothing holds it any more, then its
 * ancestors that this leaves unused; lock held. */
static void node_maybe_free(struct wh_fs *fs, struct node *n)
{
	while (n && n != &fs->root && n->nlookup == 0 && n->refs == 0) {
		struct node *parent = n->parent, **pp;

		pp = &fs->buckets[hash_key(parent, n->name, n->name_len,
					   fs->nbuckets)];
		while (*pp && *pp != n)
			pp = &(*pp)->hnext;
		if (*pp)
			*pp = n->hnext;
		if (n->rs)
			rs_detach(fs, n->rs);
		fs->nnodes--;
		free(n->name);
		free(n);
		parent->refs--;
		n = parent;
	}
}

/* forget_locked - the kernel dropped |count| lookups of |n|; lock held. */
static void forget_locked(struct wh_fs *fs, struct node *n, uint64_t count)
{
	if (n == &fs->root)
		return;
	if (n->nlookup < count) {
		wh_warn("kernel forgot %" PRIu64 " lookups of '%s', which has "
			"%" PRIu64, count, n->name, n->nlookup);
		count = n->nlookup;
	}
	n->nlookup -= count;
	node_maybe_free(fs, n);
}

/* mark_stale - |n|'s cached attributes can no longer be trusted; lock
 * held. */
static void mark_stale(struct wh_fs *fs, struct node *n)
{
	n->attr_valid = false;
	n->inval_gen = ++fs->gen;
}

/* node_path - write |n|'s path (NUL-terminated) into |buf|, which holds
 * WH_MAX_PATH + 1 bytes; lock held.  Returns the length or -ENAMETOOLONG. */
static ssize_t node_path(struct wh_fs *fs, const struct node *n, char *buf)
{
	const struct node *m;
	size_t len = 0, pos;

	for (m = n; m != &fs->root; m = m->parent) {
		len += m->name_len + (m->parent != &fs->root ? 1 : 0);
		if (len > WH_MAX_PATH)
			return -ENAMETOOLONG;
	}
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

/* path_of - |n|'s path, and the generation before the request that will
 * use it (|gen| may be NULL). */
static ssize_t path_of(struct wh_fs *fs, const struct node *n, char *buf,
		       uint64_t *gen)
{
	ssize_t len;

	pthread_mutex_lock(&fs->lock);
	len = node_path(fs, n, buf);
	if (gen)
		*gen = fs->gen;
	pthread_mutex_unlock(&fs->lock);
	return len;
}

/* ------------------------------------------------------------------ rpc */

static int reply_of(const struct wh_msg *m, int rv, uint16_t want,
		    struct wh_buf *resp, struct wh_msg *out);

/*
 * call - encode |m|, send it, decode the reply into |out| (pointing into
 * |resp|).  Returns 0, or a positive errno for the kernel: the host's own
 * errno for ERROR replies, EIO for transport failures (timeout, no
 * connection) and for malformed or unexpected replies.
 */
static int call(struct wh_fs *fs, struct wh_msg *m, uint16_t want,
		struct wh_buf *resp, struct wh_msg *out)
{
	uint8_t req[WH_FRAME_HDR_LEN + WH_MAX_REQ_FRAME];
	ssize_t n;
	int rv;

	m->hdr.req_id = atomic_fetch_add(&fs->next_req, 1) + 1;
	n = wh_msg_encode(m, req, sizeof(req));
	if (n < 0)
		return ENAMETOOLONG; /* only a path can be too big */
	wh_buf_reset(resp);
	rv = wh_rpc_call(fs->rpc, req, (size_t)n, resp, fs->opts.timeout_ms);
	return reply_of(m, rv, want, resp, out);
}

/* reply_of - the reply |resp| to |m| decoded into |out|, |rv| what the
 * transport said: 0 or an errno value, as call(). */
static int reply_of(const struct wh_msg *m, int rv, uint16_t want,
		    struct wh_buf *resp, struct wh_msg *out)
{
	if (rv < 0) {
		wh_debug("%s: %s", wh_msg_type_name(m->hdr.type),
			 wh_strerror(rv));
		return EIO;
	}
	rv = wh_msg_decode(resp->data, resp->len, WH_MAX_REPLY_FRAME, out);
	if (rv < 0) {
		wh_warn("malformed reply to %s from the host: %s",
			wh_msg_type_name(m->hdr.type), wh_strerror(rv));
		return EIO;
	}
	if (out->hdr.req_id != m->hdr.req_id) {
		wh_warn("reply to %s has request id %" PRIu32 ", not %" PRIu32,
			wh_msg_type_name(m->hdr.type), out->hdr.req_id,
			m->hdr.req_id);
		return EIO;
	}
	if (out->hdr.type == WH_MSG_ERROR) {
		int err = out->u.error.err;

		if (err < 1 || err > 4095) {
			wh_warn("host sent error %d to %s", err,
				wh_msg_type_name(m->hdr.type));
			return EIO;
		}
		return err;
	}
	if (out->hdr.type != want) {
		wh_warn("unexpected %s in reply to %s",
			wh_msg_type_name(out->hdr.type),
			wh_msg_type_name(m->hdr.type));
		return EIO;
	}
	return 0;
}

/* attr_ok - only regular files, directories and symlinks exist here. */
static bool attr_ok(const struct wh_attr *a)
{
	return S_ISREG(a->mode) || S_ISDIR(a->mode) || S_ISLNK(a->mode);
}

static void attr_to_stat(const struct wh_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = (ino_t)a->ino;
	/* the mount is read-only; a symlink's mode means nothing */
	st->st_mode = S_ISLNK(a->mode) ? a->mode : a->mode & ~0222u;
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

/* ------------------------------------------------ read states (no-open) */

/* rs_free_unused - free |rs| once it is detached and no read uses it; lock
 * held. */
static void rs_free_unused(struct wh_fs *fs, struct rstate *rs)
{
	if (rs->node || rs->users > 0)
		return;
	wh_fetch_close(fs->fetch, rs->ff);
	free(rs);
}

/* rs_detach - |rs| is no longer its node's (freed once its reads are
 * done); lock held. */
static void rs_detach(struct wh_fs *fs, struct rstate *rs)
{
	if (rs->prev)
		rs->prev->next = rs->next;
	else
		fs->rs_head = rs->next;
	if (rs->next)
		rs->next->prev = rs->prev;
	else
		fs->rs_tail = rs->prev;
	rs->prev = rs->next = NULL;
	fs->rs_len--;
	rs->node->rs = NULL;
	rs->node = NULL;
	rs_free_unused(fs, rs);
}

/* rs_trim - keep at most RSTATE_MAX read states, dropping the idle ones
 * read longest ago; lock held. */
static void rs_trim(struct wh_fs *fs)
{
	struct rstate *rs = fs->rs_tail;

	while (fs->rs_len > RSTATE_MAX && rs) {
		struct rstate *prev = rs->prev;

		if (rs->users == 0)
			rs_detach(fs, rs);
		rs = prev;
	}
}

/*
 * rd_seen - the kernel is given |n|'s fresh attributes |a| with its name
 * (LOOKUP, READDIRPLUS): that is where an open begins in no-open mode, so
 * the reads of |n| are served at their version from now on.  A change
 * clears the mark a read that saw it left, drops the read state of the
 * old version, and the kernel's pages if they hold another version (the
 * kernel drops them by itself when it sees a new size or mtime, as it
 * does with auto_inval_data; this covers a change of ctime alone).  Lock
 * held.
 */
static void rd_seen(struct wh_fs *fs, struct node *n, const struct wh_attr *a)
{
	struct wh_version v;

	if (!atomic_load_explicit(&fs->no_open, memory_order_relaxed) ||
	    !S_ISREG(a->mode))
		return;
	version_of(a, &v);
	if (n->rd_known && !n->rd_changed && version_eq(&n->rd_version, &v))
		return;
	if (n->rs)
		rs_detach(fs, n->rs);
	if (n->cache_known && !version_eq(&n->cache_version, &v)) {
		n->cache_known = false;
		queue_inode(fs, ino_of(fs, n));
	}
	n->rd_known = true;
	n->rd_version = v;
	n->rd_changed = false;
}

/* fetch_attr - GETATTR for |n|; caches the result unless an invalidation
 * came while it was in flight (*fresh tells which).  0 or an errno. */
static int fetch_attr(struct wh_fs *fs, struct node *n, struct wh_attr *out,
		      bool *fresh)
{
	char path[WH_MAX_PATH + 1];
	struct wh_msg m, r;
	struct wh_buf resp;
	uint64_t gen;
	ssize_t len;
	int err;

	len = path_of(fs, n, path, &gen);
	if (len < 0)
		return ENAMETOOLONG;
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GETATTR;
	m.u.path.path.p = path;
	m.u.path.path.len = (uint16_t)len;
	wh_buf_init(&resp);
	err = call(fs, &m, WH_MSG_GETATTR_REPLY, &resp, &r);
	if (err)
		goto out;
	if (!attr_ok(&r.u.attr.attr) ||
	    (n == &fs->root && !S_ISDIR(r.u.attr.attr.mode))) {
		wh_warn("host sent a bad file type for '%s'", path);
		err = EIO;
		goto out;
	}
	*out = r.u.attr.attr;
	pthread_mutex_lock(&fs->lock);
	*fresh = n->inval_gen <= gen;
	if (*fresh) {
		n->attr = *out;
		n->attr_valid = true;
	}
	pthread_mutex_unlock(&fs->lock);
out:
	wh_buf_free(&resp);
	return err;
}

/* fill_entry - the reply for node |n| with attributes |a|. */
static void fill_entry(struct wh_fs *fs, const struct node *n,
		       const struct wh_attr *a, bool fresh,
		       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino_of(fs, n);
	e->generation = 0;
	attr_to_stat(a, &e->attr);
	e->attr_timeout = fresh ? fs->opts.attr_timeout : 0;
	e->entry_timeout = fresh ? fs->opts.entry_timeout : 0;
}

/* make_entry_locked - find or create the child |name| of |dir| with
 * attributes |a| from a request sent at generation |gen|, count one kernel
 * lookup, fill |e|.  Lock held.  NULL when out of memory. */
static struct node *make_entry_locked(struct wh_fs *fs, struct node *dir,
				      const char *name, size_t len,
				      const struct wh_attr *a, uint64_t gen,
				      struct fuse_entry_param *e)
{
	struct node *n = get_child(fs, dir, name, len);
	bool fresh;

	if (!n)
		return NULL;
	n->nlookup++;
	fresh = dir->inval_gen <= gen && n->inval_gen <= gen;
	if (fresh) {
		n->attr = *a;
		n->attr_valid = true;
		rd_seen(fs, n, a);
	} else if (atomic_load_explicit(&fs->no_open, memory_order_relaxed) &&
		   S_ISREG(a->mode)) {
		/* a reply that raced a change: the next read asks the host
		 * for the version */
		if (n->rs)
			rs_detach(fs, n->rs);
		n->rd_known = false;
		n->rd_changed = false;
	}
	fill_entry(fs, n, a, fresh, e);
	return n;
}

/* ------------------------------------------------------ negative entries */

static void neg_pop(struct wh_fs *fs)
{
	struct neg_entry *ne = &fs->neg[fs->neg_head];
	struct node *dir = ne->dir;

	free(ne->name);
	memset(ne, 0, sizeof(*ne));
	fs->neg_head = (fs->neg_head + 1) % NEG_MAX;
	fs->neg_len--;
	dir->refs--;
	node_maybe_free(fs, dir);
}

/* neg_remember - note that the kernel may cache "|name| is not in |dir|"
 * until now + entry_timeout; lock held.  False when it cannot be noted
 * (the entry must then not be cached). */
static bool neg_remember(struct wh_fs *fs, struct node *dir,
			 const char *name, size_t len)
{
	uint64_t now = wh_now_ns();
	struct neg_entry *ne;
	char *copy;

	while (fs->neg_len > 0 && fs->neg[fs->neg_head].expires_ns <= now)
		neg_pop(fs);
	if (fs->neg_len == NEG_MAX)
		return false;
	copy = malloc(len + 1);
	if (!copy)
		return false;
	memcpy(copy, name, len);
	copy[len] = '\0';
	ne = &fs->neg[(fs->neg_head + fs->neg_len) % NEG_MAX];
	ne->dir = dir;
	ne->name = copy;
	ne->name_len = len;
	/* a little margin: the kernel counts from when it got the reply */
	ne->expires_ns = now + (uint64_t)(fs->opts.entry_timeout *
					  (double)WH_NS_PER_S) + WH_NS_PER_S;
	fs->neg_len++;
	dir->refs++;
	return true;
}

/* ------------------------------------------------------------ operations */

/*
 * raise_readahead - the kernel caps a FUSE mount's readahead at 128 KiB
 * whatever INIT asks; more means fewer, larger reads in flight, which is
 * what a remote file needs.  Only root may change it (through the mount's
 * bdi in sysfs); others keep the default.  Runs once, at the first request
 * after INIT, because the kernel applies INIT's limit when it processes
 * our INIT reply.
 */
static void raise_readahead(struct wh_fs *fs)
{
	char path[128];
	int fd;

	if (!fs->have_dev)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb",
		 fs->dev_major, fs->dev_minor);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		wh_debug("readahead stays at the kernel's default: %s: %s",
			 path, strerror(errno));
		return;
	}
	if (write(fd, READAHEAD_KB, strlen(READAHEAD_KB)) < 0)
		wh_debug("cannot raise readahead: %s", strerror(errno));
	close(fd);
}

/* fs_of - the file system of a request (and the one-time work that must
 * wait for the first request after INIT). */
static struct wh_fs *fs_of(fuse_req_t req)
{
	struct wh_fs *fs = fuse_req_userdata(req);

	if (!atomic_load_explicit(&fs->live, memory_order_relaxed) &&
	    !atomic_exchange(&fs->live, true))
		raise_readahead(fs);
	return fs;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct wh_fs *fs = userdata;
	bool no_open = !fs->opts.open_each &&
		       (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT);

	/* 1 MiB requests: the kernel raises max_pages to match */
	conn->max_write = WH_MAX_READ;
	conn->max_readahead = WH_MAX_READ;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* always readdirplus: with "auto" the kernel sends plain READDIR
	 * after the first page of a listing unless lookups came meanwhile,
	 * and readers that list a whole directory before they look at it
	 * (cp -r, tar, rsync) then LOOKUP every other name over the wire */
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* pages are dropped when the host says so (or the version at open
	 * differs), not whenever the kernel sees a new mtime; without opens
	 * the kernel keeps them across opens, and dropping them when it sees
	 * a new mtime or size is what the check at open did */
	if (no_open && (conn->capable & FUSE_CAP_AUTO_INVAL_DATA))
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	else
		conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	/* OPEN is declined from the first one on (op_open) */
	atomic_store(&fs->no_open, no_open);
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE | FUSE_CAP_WRITEBACK_CACHE);
	conn->time_gran = 1;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct wh_fs *fs = fs_of(req);
	struct node *dir = node_of(fs, parent), *n;
	char path[WH_MAX_PATH + 1];
	struct fuse_entry_param e;
	struct wh_msg m, r;
	struct wh_buf resp;
	size_t nlen = strlen(name);
	uint64_t gen;
	ssize_t dlen;
	int err;

	if (!wh_name_valid(name, nlen)) {
		fuse_reply_err(req, nlen > WH_MAX_NAME ? ENAMETOOLONG : ENOENT);
		return;
	}
	dlen = path_of(fs, dir, path, &gen);
	if (dlen < 0 || (size_t)dlen + 1 + nlen > WH_MAX_PATH) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_LOOKUP;
	m.u.lookup.dir.p = path;
	m.u.lookup.dir.len = (uint16_t)dlen;
	m.u.lookup.name.p = name;
	m.u.lookup.name.len = (uint16_t)nlen;
	wh_buf_init(&resp);
	err = call(fs, &m, WH_MSG_LOOKUP_REPLY, &resp, &r);
	if (err == ENOENT) {
		/* a negative entry: cached until the host says the name
		 * changed (or "everything" did, hence neg_remember) */
		memset(&e, 0, sizeof(e));
		pthread_mutex_lock(&fs->lock);
		if (dir->inval_gen <= gen && fs->opts.entry_timeout > 0 &&
		    neg_remember(fs, dir, name, nlen))
			e.entry_timeout = fs->opts.entry_timeout;
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_entry(req, &e);
	} else if (err) {
		fuse_reply_err(req, err);
	} else if (!attr_ok(&r.u.attr.attr)) {
		wh_warn("host sent a bad file type for '%s' in '%s'", name,
			path);
		fuse_reply_err(req, EIO);
	} else {
		pthread_mutex_lock(&fs->lock);
		n = make_entry_locked(fs, dir, name, nlen, &r.u.attr.attr, gen,
				      &e);
		pthread_mutex_unlock(&fs->lock);
		if (!n) {
			fuse_reply_err(req, ENOMEM);
		} else if (fuse_reply_entry(req, &e) != 0) {
			/* the kernel never saw it: take the lookup back */
			pthread_mutex_lock(&fs->lock);
			forget_locked(fs, n, 1);
			pthread_mutex_unlock(&fs->lock);
		}
	}
	wh_buf_free(&resp);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct wh_fs *fs = fuse_req_userdata(req);

	pthread_mutex_lock(&fs->lock);
	forget_locked(fs, node_of(fs, ino), nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct wh_fs *fs = fuse_req_userdata(req);

	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < count; i++)
		forget_locked(fs, node_of(fs, forgets[i].ino),
			      forgets[i].nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct wh_fs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	struct wh_attr a;
	struct stat st;
	bool fresh;
	int err = 0;

	(void)fi;
	pthread_mutex_lock(&fs->lock);
	fresh = n->attr_valid;
	a = n->attr;
	pthread_mutex_unlock(&fs->lock);
	if (!fresh)
		err = fetch_attr(fs, n, &a, &fresh);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, fresh ? fs->opts.attr_timeout : 0);
}

static void dir_handle_free(struct dir_handle *dh)
{
	if (!dh)
		return;
	for (size_t i = 0; i < dh->n; i++)
		free(dh->ents[i].name);
	free(dh->ents);
	free(dh->ord);
	free(dh->byino);
	free(dh);
}

/* dir_unref - lock held (or no other thread left) */
static void dir_unref(struct dir_handle *dh)
{
	if (dh && --dh->refs == 0)
		dir_handle_free(dh);
}

/* unkeep - stop keeping the listing of fs->kept[i]; lock held */
static void unkeep(struct wh_fs *fs, size_t i)
{
	struct node *d = fs->kept[i];

	memmove(&fs->kept[i], &fs->kept[i + 1],
		(fs->kept_len - i - 1) * sizeof(fs->kept[0]));
	fs->kept_len--;
	fs->kept_entries -= d->listing->n;
	dir_unref(d->listing);
	d->listing = NULL;
	d->refs--;
	node_maybe_free(fs, d);
}

/* keep_listing - |dh| is |d|'s newest listing: keep it after closedir,
 * dropping the oldest kept ones beyond LISTINGS_KEPT listings or
 * KEPT_ENTRIES_MAX entries; lock held. */
static void keep_listing(struct wh_fs *fs, struct node *d,
			 struct dir_handle *dh)
{
	if (d->listing) {
		for (size_t i = 0; i < fs->kept_len; i++)
			if (fs->kept[i] == d) {
				d->refs++; /* |d| is in use: not freed */
				unkeep(fs, i);
				d->refs--;
				break;
			}
	}
	if (dh->n > KEPT_ENTRIES_MAX)
		return; /* too big to keep after closedir */
	while (fs->kept_len > 0 &&
	       (fs->kept_len == LISTINGS_KEPT ||
		fs->kept_entries + dh->n > KEPT_ENTRIES_MAX))
		unkeep(fs, 0);
	dh->refs++;
	fs->kept_entries += dh->n;
	fs->kept[fs->kept_len++] = d;
	d->refs++;
	d->listing = dh;
}

static int ord_cmp(const void *a, const void *b)
{
	const struct dir_ord *x = a, *y = b;

	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* name_before - whether entry |x| comes before |y| in name order (bytes,
 * a prefix first; rsync's within a directory), the listing's order on a
 * tie */
static bool name_before(const struct dir_entry *ents, size_t x, size_t y)
{
	const struct dir_entry *a = &ents[x], *b = &ents[y];
	size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
	int c = memcmp(a->name, b->name, n);

	if (c != 0)
		return c < 0;
	if (a->name_len != b->name_len)
		return a->name_len < b->name_len;
	return x < y;
}

/* before - whether entry |x| comes before |y| in order |o| */
static bool before(const struct dir_handle *dh, enum walk_order o, size_t x,
		   size_t y)
{
	const struct wh_attr *a = &dh->ents[x].attr, *b = &dh->ents[y].attr;

	switch (o) {
	case WALK_INODE:
		return a->ino != b->ino ? a->ino < b->ino : x < y;
	case WALK_NAME:
		return name_before(dh->ents, x, y);
	default:
		return x < y;
	}
}

struct walk_sort {
	const struct dir_handle *dh;
	enum walk_order o;
};

/* walk_cmp - for qsort_r of a listing's entries (dir_ord.i) into the
 * order of |ctx| (a struct walk_sort) */
static int walk_cmp(const void *a, const void *b, void *ctx)
{
	const struct dir_ord *x = a, *y = b;
	const struct walk_sort *w = ctx;

	if (x->i == y->i)
		return 0;
	return before(w->dh, w->o, x->i, y->i) ? -1 : 1;
}

/* listing_order - put |dh| in walk order |o| (dh->ord, dh->byino) unless
 * it is already; lock held.  False when out of memory.  A listing put in
 * another order starts its small files' fetching afresh. */
static bool listing_order(struct dir_handle *dh, enum walk_order o)
{
	struct walk_sort w = { dh, o };
	struct dir_ord *ord, *byino;

	if (dh->ord && dh->order == o)
		return true;
	ord = malloc((dh->n ? dh->n : 1) * sizeof(*ord));
	byino = malloc((dh->n ? dh->n : 1) * sizeof(*byino));
	if (!ord || !byino) {
		free(ord);
		free(byino);
		return false;
	}
	for (size_t i = 0; i < dh->n; i++) {
		ord[i].ino = dh->ents[i].attr.ino;
		ord[i].i = i;
	}
	if (o != WALK_LISTING) /* the listing is in its own order */
		qsort_r(ord, dh->n, sizeof(*ord), walk_cmp, &w);
	for (size_t k = 0; k < dh->n; k++) {
		byino[k].ino = ord[k].ino;
		byino[k].i = k;
	}
	qsort(byino, dh->n, sizeof(*byino), ord_cmp);
	free(dh->ord);
	free(dh->byino);
	dh->ord = ord;
	dh->byino = byino;
	dh->order = o;
	dh->pf_upto = 0;
	dh->pf_ahead = SMALL_AHEAD_MIN;
	return true;
}

/* ord_find - the place in dh->ord of the entry |name| with inode number
 * |ino|, or dh->n if the listing has none; lock held. */
static size_t ord_find(const struct dir_handle *dh, uint64_t ino,
		       const char *name, size_t len)
{
	size_t lo = 0, hi = dh->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (dh->byino[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < dh->n && dh->byino[lo].ino == ino; lo++) {
		size_t k = dh->byino[lo].i;
		const struct dir_entry *ent = &dh->ents[dh->ord[k].i];

		if (ent->name_len == len && memcmp(ent->name, name, len) == 0)
			return k;
	}
	return dh->n;
}

/* small_entry - whether a listing entry is a file small_batch fetches */
static bool small_entry(const struct dir_entry *ent)
{
	return S_ISREG(ent->attr.mode) &&
	       ent->attr.size <= WH_FETCH_SMALL_MAX;
}

/* next_small - the small file after entry |x| (ents index) in order |o|,
 * or dh->n; lock held.  One pass, without sorting. */
static size_t next_small(const struct dir_handle *dh, enum walk_order o,
			 size_t x)
{
	size_t best = dh->n;

	for (size_t i = 0; i < dh->n; i++) {
		if (i == x || !small_entry(&dh->ents[i]) ||
		    !before(dh, o, x, i))
			continue;
		if (best == dh->n || before(dh, o, i, best))
			best = i;
	}
	return best;
}

/* learn_order - the second small file read in |dh|, entry |y|, after |x|:
 * the walk order they show, if the current one does not (see enum
 * walk_order); lock held. */
static void learn_order(struct wh_fs *fs, struct dir_handle *dh, size_t x,
			size_t y)
{
	static const enum walk_order all[] = { WALK_INODE, WALK_NAME,
					       WALK_LISTING };
	static const char *const names[] = { "inode", "name", "listing" };

	dh->order_seen = true;
	if (next_small(dh, fs->walk, x) == y)
		return;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (all[i] != fs->walk && next_small(dh, all[i], x) == y) {
			wh_debug("readers walk directories in %s order",
				 names[all[i]]);
			fs->walk = all[i];
			return;
		}
	}
}

/* first_span - how many entries from ord[from] a directory's first
 * queueing covers: SMALL_AHEAD_MIN files, or as many as fit in
 * SMALL_AHEAD_BYTES if more do (a directory of 10 KiB files: about a
 * hundred, one or two requests); lock held. */
static size_t first_span(const struct dir_handle *dh, size_t from)
{
	size_t cap = dh->n - from < SMALL_AHEAD_MAX ? dh->n - from
						    : SMALL_AHEAD_MAX;
	uint64_t sum = 0;
	size_t m = 0;

	while (m < cap) {
		const struct wh_attr *ea = &dh->ents[dh->ord[from + m].i].attr;

		if (S_ISREG(ea->mode) && ea->size <= WH_FETCH_SMALL_MAX)
			sum += ea->size;
		if (m >= SMALL_AHEAD_MIN && sum > SMALL_AHEAD_BYTES)
			break;
		m++;
	}
	return m > SMALL_AHEAD_MIN ? m : SMALL_AHEAD_MIN;
}

/* batch_paths - the small files among ord[from, to) of |d|'s listing |dh|
 * that did not change since it was read, into pf->small (their paths in
 * pf->buf); lock held. */
static void batch_paths(struct wh_fs *fs, struct node *d,
			struct dir_handle *dh, size_t from, size_t to,
			struct prefetch *pf)
{
	char dpath[WH_MAX_PATH + 1];
	struct wh_fetch_small *v;
	size_t cnt = 0, bytes = 0, pos = 0;
	ssize_t dlen;
	char *buf;

	dlen = node_path(fs, d, dpath);
	if (dlen < 0 || from >= to)
		return;
	for (size_t i = from; i < to; i++)
		bytes += (size_t)dlen + 1 + dh->ents[dh->ord[i].i].name_len;
	v = malloc((to - from) * sizeof(*v));
	buf = malloc(bytes ? bytes : 1);
	if (!v || !buf) {
		free(v);
		free(buf);
		return;
	}
	for (size_t i = from; i < to; i++) {
		const struct dir_entry *ent = &dh->ents[dh->ord[i].i];
		struct node *c;
		size_t plen = (size_t)dlen + (dlen ? 1 : 0) + ent->name_len;

		if (!S_ISREG(ent->attr.mode) || ent->attr.size == 0 ||
		    ent->attr.size > WH_FETCH_SMALL_MAX || plen > WH_MAX_PATH)
			continue;
		c = find_child(fs, d, ent->name, ent->name_len);
		if (c && c->inval_gen > dh->gen)
			continue; /* changed since the listing */
		v[cnt].path = buf + pos;
		memcpy(buf + pos, dpath, (size_t)dlen);
		pos += (size_t)dlen;
		if (dlen)
			buf[pos++] = '/';
		memcpy(buf + pos, ent->name, ent->name_len);
		pos += ent->name_len;
		v[cnt].len = plen;
		version_of(&ent->attr, &v[cnt].v);
		cnt++;
	}
	if (cnt == 0) {
		free(v);
		free(buf);
		return;
	}
	pf->small = v;
	pf->buf = buf;
	pf->n = cnt;
}

/* kept_touch - |d|'s kept listing is in use: the last to be dropped; lock
 * held. */
static void kept_touch(struct wh_fs *fs, struct node *d)
{
	for (size_t i = 0; i < fs->kept_len; i++)
		if (fs->kept[i] == d) {
			memmove(&fs->kept[i], &fs->kept[i + 1],
				(fs->kept_len - i - 1) * sizeof(fs->kept[0]));
			fs->kept[fs->kept_len - 1] = d;
			return;
		}
}

/*
 * pick_ahead - the files of directory |d| are being read for the first
 * time since it was listed: if its parent's listing is kept and current,
 * and files of AHEAD_DIRS_MIN of its subdirectories were read (a walk of
 * the tree, as cp -r's: `ls` reads none), the subdirectory after |d| in
 * the parent's inode order (cp -r's) is the one to list ahead, with its
 * first files, so that its opendir and first reads find them here.  That
 * node (ahead_busy set, one reference held) or NULL; lock held.
 */
static struct node *pick_ahead(struct wh_fs *fs, struct node *d)
{
	struct node *p = d->parent;
	struct dir_handle *pl = p ? p->listing : NULL;
	size_t k, seen;

	if (!pl || p->inval_gen > pl->gen || !listing_order(pl, fs->walk))
		return NULL;
	kept_touch(fs, p); /* walked: keep it for the next subdirectory */
	if (++pl->dirs_read < AHEAD_DIRS_MIN)
		return NULL;
	k = ord_find(pl, d->attr.ino, d->name, d->name_len);
	for (k++, seen = 0; k < pl->n && seen < AHEAD_SCAN; k++, seen++) {
		const struct dir_entry *ent = &pl->ents[pl->ord[k].i];
		struct node *y;

		if (!S_ISDIR(ent->attr.mode))
			continue;
		y = find_child(fs, p, ent->name, ent->name_len);
		if (!y || y->nlookup == 0 || y->ahead_busy ||
		    y->inval_gen > pl->gen ||
		    (y->listing && y->inval_gen <= y->listing->gen))
			return NULL; /* unknown, changed or listed already */
		y->ahead_busy = true;
		y->refs++;
		return y;
	}
	return NULL;
}

/*
 * small_batch - |n| (attributes |a|) is being opened: the small files of
 * its directory to fetch ahead, if its listing is kept and current.  In
 * inode order (cp -r's: coreutils sorts a directory by inode number
 * before copying it), from the file after |n|'s place, a few at first and
 * twice as many with each top-up as the reader keeps coming, so that one
 * look at one file costs little.  The first time also picks the next
 * directory to list ahead (pick_ahead).  Into |pf|, to run once the
 * request is answered (prefetch_run); lock held.
 */
static void small_batch(struct wh_fs *fs, struct node *n,
			const struct wh_attr *a, struct prefetch *pf)
{
	struct node *d = n->parent;
	struct dir_handle *dh = d ? d->listing : NULL;
	size_t k, to;

	memset(pf, 0, sizeof(*pf));
	if (!dh || d->inval_gen > dh->gen || a->size > WH_FETCH_SMALL_MAX ||
	    dh->n == 0 || !listing_order(dh, fs->walk))
		return;
	/* |n|'s place: the first entry with its inode number and name */
	k = ord_find(dh, a->ino, n->name, n->name_len);
	if (k == dh->n)
		return; /* not in this listing */
	if (!dh->order_seen && dh->first_read == 0) {
		dh->first_read = dh->ord[k].i + 1;
	} else if (!dh->order_seen && dh->first_read != dh->ord[k].i + 1) {
		learn_order(fs, dh, dh->first_read - 1, dh->ord[k].i);
		if (!listing_order(dh, fs->walk))
			return;
		k = ord_find(dh, a->ino, n->name, n->name_len);
	}
	if (!dh->files_read) {
		dh->files_read = true;
		pf->dir = pick_ahead(fs, d);
	}
	if (dh->pf_upto > k + 1 + dh->pf_ahead / 2)
		return; /* far enough ahead */
	if (dh->pf_upto == 0) {
		dh->pf_ahead = first_span(dh, k + 1);
	} else if (dh->pf_ahead < SMALL_AHEAD_MAX) {
		dh->pf_ahead = 2 * dh->pf_ahead < SMALL_AHEAD_MAX
				       ? 2 * dh->pf_ahead
				       : SMALL_AHEAD_MAX;
	}
	if (dh->pf_upto < k + 1)
		dh->pf_upto = k + 1;
	to = k + 1 + dh->pf_ahead < dh->n ? k + 1 + dh->pf_ahead : dh->n;
	if (dh->pf_upto >= to)
		return;
	batch_paths(fs, d, dh, dh->pf_upto, to, pf);
	dh->pf_upto = to;
}

/* handle lists: lock held */
static void dir_link(struct wh_fs *fs, struct dir_handle *dh)
{
	dh->prev = NULL;
	dh->next = fs->dirs;
	if (fs->dirs)
		fs->dirs->prev = dh;
	fs->dirs = dh;
}

static void dir_unlink(struct wh_fs *fs, struct dir_handle *dh)
{
	if (dh->prev)
		dh->prev->next = dh->next;
	else
		fs->dirs = dh->next;
	if (dh->next)
		dh->next->prev = dh->prev;
}

static void file_link(struct wh_fs *fs, struct open_file *fh)
{
	fh->prev = NULL;
	fh->next = fs->files;
	if (fs->files)
		fs->files->prev = fh;
	fs->files = fh;
}

static void file_unlink(struct wh_fs *fs, struct open_file *fh)
{
	if (fh->prev)
		fh->prev->next = fh->next;
	else
		fs->files = fh->next;
	if (fh->next)
		fh->next->prev = fh->prev;
}

/* dir_add - append one entry to |dh| (|cap| slots).  0 or an errno. */
static int dir_add(struct dir_handle *dh, size_t *cap,
		   const struct wh_dirent *de)
{
	struct dir_entry *ent;

	if (dh->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct dir_entry *ne = realloc(dh->ents, ncap * sizeof(*ne));

		if (!ne)
			return ENOMEM;
		dh->ents = ne;
		*cap = ncap;
	}
	ent = &dh->ents[dh->n];
	ent->name = malloc(de->name.len + 1u);
	if (!ent->name)
		return ENOMEM;
	memcpy(ent->name, de->name.p, de->name.len);
	ent->name[de->name.len] = '\0';
	ent->name_len = de->name.len;
	ent->attr = de->attr;
	dh->n++;
	return 0;
}

/* read_listing - READDIR |path| page by page into |dh|.  0 or errno. */
static int read_listing(struct wh_fs *fs, const char *path, size_t len,
			struct dir_handle *dh)
{
	struct wh_buf resp;
	uint64_t cookie = 0;
	size_t cap = 0;
	int err = 0;

	wh_buf_init(&resp);
	for (;;) {
		struct wh_msg_readdir_reply *rr;
		struct wh_msg m, r;
		struct wh_dirent de;
		size_t pos = 0;
		int rv;

		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_READDIR;
		m.u.readdir.path.p = path;
		m.u.readdir.path.len = (uint16_t)len;
		m.u.readdir.cookie = cookie;
		m.u.readdir.max_entries = WH_MAX_READDIR_ENTRIES;
		err = call(fs, &m, WH_MSG_READDIR_REPLY, &resp, &r);
		if (err)
			break;
		rr = &r.u.readdir_reply;
		if (rr->count > WH_MAX_READDIR_ENTRIES ||
		    dh->n + rr->count > DIR_MAX_ENTRIES) {
			wh_warn("listing of '%s' is too long", path);
			err = EIO;
			break;
		}
		while ((rv = wh_dirent_next(rr, &pos, &de)) == 1) {
			if (!attr_ok(&de.attr)) {
				wh_debug("skipping '%.*s' in '%s': not a "
					 "file, directory or symlink",
					 (int)de.name.len, de.name.p, path);
				continue;
			}
			err = dir_add(dh, &cap, &de);
			if (err)
				break;
		}
		if (err)
			break;
		if (rv < 0) {
			wh_warn("malformed listing of '%s' from the host",
				path);
			err = EIO;
			break;
		}
		if (rr->eof)
			break;
		if (rr->count == 0 || rr->next_cookie == cookie) {
			/* no progress and no end: the host is confused */
			wh_warn("listing of '%s' does not advance", path);
			err = EIO;
			break;
		}
		cookie = rr->next_cookie;
	}
	wh_buf_free(&resp);
	return err;
}

/*
 * dir_ahead - list directory |y| (ahead_busy set by pick_ahead, one
 * reference held) ahead of its opendir, keep the listing for it, and
 * queue its first small files: a walk like cp -r's then finds them
 * fetched when it gets there.  Run once the request that picked it is
 * answered; a failure only means the opendir reads the listing itself.
 */
static void dir_ahead(struct wh_fs *fs, struct node *y)
{
	struct dir_handle *dh = calloc(1, sizeof(*dh));
	char path[WH_MAX_PATH + 1];
	struct prefetch pf;
	int err = ENOMEM;

	memset(&pf, 0, sizeof(pf));
	if (dh) {
		ssize_t len = path_of(fs, y, path, &dh->gen);

		dh->refs = 1; /* ours, until it is kept */
		err = len < 0 ? ENAMETOOLONG
			      : read_listing(fs, path, (size_t)len, dh);
		if (err)
			wh_debug("listing '%s' ahead: %s", path,
				 strerror(err));
	}
	pthread_mutex_lock(&fs->lock);
	if (!err && y->inval_gen <= dh->gen &&
	    !(y->listing && y->listing->gen >= dh->gen) &&
	    dh->n <= KEPT_ENTRIES_MAX && listing_order(dh, fs->walk)) {
		dh->ahead = true;
		dh->ahead_ns = wh_now_ns();
		keep_listing(fs, y, dh);
		/* from its first file on; the reader's first open of one
		 * queues the rest (small_batch) */
		batch_paths(fs, y, dh, 0, dh->n < first_span(dh, 0)
					       ? dh->n : first_span(dh, 0),
			    &pf);
		atomic_fetch_add_explicit(&fs->dirs_ahead, 1,
					  memory_order_relaxed);
	}
	dir_unref(dh);
	y->ahead_busy = false;
	y->refs--;
	node_maybe_free(fs, y);
	pthread_mutex_unlock(&fs->lock);
	if (pf.n > 0)
		wh_fetch_small(fs->fetch, pf.small, pf.n);
	free(pf.small);
	free(pf.buf);
}

/* prefetch_run - do what small_batch found; without the lock */
static void prefetch_run(struct wh_fs *fs, struct prefetch *pf)
{
	if (pf->n > 0)
		wh_fetch_small(fs->fetch, pf->small, pf->n);
	free(pf->small);
	free(pf->buf);
	if (pf->dir)
		dir_ahead(fs, pf->dir);
	memset(pf, 0, sizeof(*pf));
}

/* ahead_take - |d|'s listing read ahead, for an opendir, if it is still
 * current and recent (then referenced for the open), else NULL; lock
 * held. */
static struct dir_handle *ahead_take(struct wh_fs *fs, struct node *d)
{
	struct dir_handle *dh = d->listing;

	if (!dh || !dh->ahead || d->inval_gen > dh->gen ||
	    wh_now_ns() - dh->ahead_ns > AHEAD_TTL_NS)
		return NULL;
	dh->ahead = false;
	dh->walked = true;
	dh->refs++;
	kept_touch(fs, d);
	atomic_fetch_add_explicit(&fs->dirs_ahead_used, 1,
				  memory_order_relaxed);
	return dh;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct wh_fs *fs = fs_of(req);
	char path[WH_MAX_PATH + 1];
	struct node *next = NULL;
	struct dir_handle *dh;
	ssize_t len;
	int err;

	pthread_mutex_lock(&fs->lock);
	dh = ahead_take(fs, node_of(fs, ino));
	if (dh) {
		/* the walk came here: the next stop is listed meanwhile */
		dir_link(fs, dh);
		dh->files_read = true;
		next = pick_ahead(fs, node_of(fs, ino));
	}
	pthread_mutex_unlock(&fs->lock);
	if (dh)
		goto reply;
	dh = calloc(1, sizeof(*dh));
	if (!dh) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	dh->refs = 1;
	len = path_of(fs, node_of(fs, ino), path, &dh->gen);
	if (len < 0) {
		dir_handle_free(dh);
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	/* the whole listing now: a consistent snapshot for this open */
	err = read_listing(fs, path, (size_t)len, dh);
	if (err) {
		dir_handle_free(dh);
		fuse_reply_err(req, err);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	dir_link(fs, dh);
	keep_listing(fs, node_of(fs, ino), dh);
	pthread_mutex_unlock(&fs->lock);
reply:
	fi->fh = (uint64_t)(uintptr_t)dh;
	if (fuse_reply_open(req, fi) != 0) {
		/* no releasedir will come */
		pthread_mutex_lock(&fs->lock);
		dir_unlink(fs, dh);
		dir_unref(dh);
		pthread_mutex_unlock(&fs->lock);
	}
	if (next)
		dir_ahead(fs, next);
}

/* dot_stat - attributes shown for "." and ".." (no lookup is counted for
 * them: the kernel resolves those names itself). */
static void dot_stat(const struct node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->attr.ino ? (ino_t)n->attr.ino : 1;
	st->st_mode = S_IFDIR;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct wh_fs *fs = fs_of(req);
	struct dir_handle *dh = (struct dir_handle *)(uintptr_t)fi->fh;
	struct node *dir = node_of(fs, ino);
	struct node **counted = NULL;
	size_t used = 0, ncounted = 0, max_counted;
	struct prefetch pf = { 0 };
	bool dir_stale;
	char *buf;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	buf = malloc(size ? size : 1);
	/* room for a lookup per entry that can fit in the reply */
	max_counted = size / DIRENTPLUS_MIN + 1;
	if (plus)
		counted = malloc(max_counted * sizeof(*counted));
	if (!buf || (plus && !counted)) {
		free(buf);
		free(counted);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	/* entries changed since the listing was read: give names only */
	dir_stale = dir->inval_gen > dh->gen;
	/* offsets: 0 ".", 1 "..", 2 + i the listing's entry i */
	for (size_t i = (size_t)off; i < dh->n + 2; i++) {
		struct fuse_entry_param e;
		struct node *n = NULL;
		const char *name;
		size_t need;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			name = i == 0 ? "." : "..";
			dot_stat(i == 0 || dir == &fs->root ? dir :
				 dir->parent, &e.attr);
		} else {
			struct dir_entry *ent = &dh->ents[i - 2];

			name = ent->name;
			attr_to_stat(&ent->attr, &e.attr);
			if (plus && !dir_stale) {
				n = find_child(fs, dir, ent->name,
					       ent->name_len);
				if (n && n->inval_gen > dh->gen)
					n = NULL; /* changed since: no attrs */
				else if (ncounted < max_counted)
					n = make_entry_locked(fs, dir,
							      ent->name,
							      ent->name_len,
							      &ent->attr,
							      dh->gen, &e);
				else
					n = NULL;
			}
		}
		if (plus)
			need = fuse_add_direntry_plus(req, buf + used,
						      size - used, name, &e,
						      (off_t)(i + 1));
		else
			need = fuse_add_direntry(req, buf + used, size - used,
						 name, &e.attr,
						 (off_t)(i + 1));
		if (need > size - used) {
			/* did not fit: the kernel will not count it */
			if (n)
				forget_locked(fs, n, 1);
			break;
		}
		used += need;
		if (n)
			counted[ncounted++] = n;
	}
	if (plus && !dir_stale && (size_t)off >= dh->n + 2 && dh->walked &&
	    dh->pf_upto == 0 && listing_order(dh, fs->walk)) {
		/* the end of a listing read ahead for a walk: the kernel has
		 * all its names now, so the files fetched ahead can go into
		 * its page cache before the reader opens them */
		size_t span = first_span(dh, 0);

		dh->pf_upto = dh->pf_ahead = span < dh->n ? span : dh->n;
		batch_paths(fs, dir, dh, 0, dh->pf_upto, &pf);
	}
	pthread_mutex_unlock(&fs->lock);
	if (fuse_reply_buf(req, buf, used) != 0 && ncounted > 0) {
		/* the kernel never saw them: take the lookups back */
		pthread_mutex_lock(&fs->lock);
		for (size_t k = 0; k < ncounted; k++)
			forget_locked(fs, counted[k], 1);
		pthread_mutex_unlock(&fs->lock);
	}
	prefetch_run(fs, &pf);
	free(counted);
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
	struct wh_fs *fs = fs_of(req);
	struct dir_handle *dh = (struct dir_handle *)(uintptr_t)fi->fh;

	(void)ino;
	pthread_mutex_lock(&fs->lock);
	dir_unlink(fs, dh);
	dir_unref(dh);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_err(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct wh_fs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	struct prefetch pf = { 0 };
	struct open_file *fh;
	struct wh_version v;
	struct wh_attr a;
	bool valid, keep;
	int err = 0;

	atomic_fetch_add_explicit(&fs->opens, 1, memory_order_relaxed);
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (atomic_load_explicit(&fs->no_open, memory_order_relaxed)) {
		/* the kernel takes ENOSYS as success and sends no OPEN or
		 * RELEASE of a file again; its reads come with fh 0 and are
		 * served at the node's version (rs_get) */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	valid = n->attr_valid;
	a = n->attr;
	pthread_mutex_unlock(&fs->lock);
	/* a version we can trust: the cached one unless the host said the
	 * file changed since, else one round trip */
	if (!valid)
		err = fetch_attr(fs, n, &a, &valid);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	if (!S_ISREG(a.mode)) {
		fuse_reply_err(req, S_ISDIR(a.mode) ? EISDIR : ELOOP);
		return;
	}
	fh = calloc(1, sizeof(*fh));
	if (!fh) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	version_of(&a, &v);
	{
		char path[WH_MAX_PATH + 1];
		ssize_t plen = path_of(fs, n, path, NULL);

		err = plen < 0 ? ENAMETOOLONG
			       : -wh_fetch_open(fs->fetch, path, (size_t)plen,
						&v, &fh->ff);
	}
	if (err) {
		free(fh);
		fuse_reply_err(req, err);
		return;
	}
	fh->node = n;
	fh->version = v;
	pthread_mutex_lock(&fs->lock);
	/* keep the kernel's pages only if they were read at this version;
	 * otherwise the kernel drops them now and refills them at |v| */
	keep = valid && n->cache_known && version_eq(&n->cache_version, &v);
	n->cache_known = true;
	n->cache_version = v;
	n->refs++;
	file_link(fs, fh);
	/* a small file of a directory just listed: its neighbours next */
	if (valid && !keep)
		small_batch(fs, n, &a, &pf);
	pthread_mutex_unlock(&fs->lock);
	fi->fh = (uint64_t)(uintptr_t)fh;
	fi->keep_cache = keep;
	if (fuse_reply_open(req, fi) != 0) {
		/* no release will come */
		pthread_mutex_lock(&fs->lock);
		file_unlink(fs, fh);
		n->refs--;
		node_maybe_free(fs, n);
		pthread_mutex_unlock(&fs->lock);
		wh_fetch_close(fs->fetch, fh->ff);
		free(fh);
	}
	/* after the reply: the opener need not wait for the queueing */
	prefetch_run(fs, &pf);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct wh_fs *fs = fuse_req_userdata(req);
	struct open_file *fh = (struct open_file *)(uintptr_t)fi->fh;

	(void)ino;
	pthread_mutex_lock(&fs->lock);
	file_unlink(fs, fh);
	fh->node->refs--;
	node_maybe_free(fs, fh->node);
	pthread_mutex_unlock(&fs->lock);
	wh_fetch_close(fs->fetch, fh->ff);
	free(fh);
	fuse_reply_err(req, 0);
}

/* file_changed - a READ showed a version other than the open's: the
 * cached attributes and pages are stale.  The kernel is told from the
 * notifier (never from a request handler). */
static void file_changed(struct wh_fs *fs, struct open_file *fh,
			 fuse_ino_t ino, const char *path)
{
	if (atomic_exchange(&fh->changed, true))
		return; /* told already */
	wh_info("'%s' changed on the host while open: EIO", path);
	pthread_mutex_lock(&fs->lock);
	mark_stale(fs, fh->node);
	fh->node->cache_known = false;
	pthread_mutex_unlock(&fs->lock);
	queue_inode(fs, ino);
}

/* unpack_read - a zstd READ_REPLY decoded into |zb| (at most |want|
 * bytes), |rr| then points at the bytes.  0 or a negative error. */
static int unpack_read(struct wh_msg_read_reply *rr, size_t want,
		       struct wh_buf *zb)
{
	int rv;

	if (rr->raw_len > want)
		return WH_ERR_PROTO;
	zb->len = 0;
	rv = wh_buf_reserve(zb, rr->raw_len);
	if (rv < 0)
		return rv;
	rv = wh_zstd_decompress(zb->data, rr->raw_len, rr->data, rr->data_len);
	if (rv < 0)
		return rv;
	rr->data = zb->data;
	rr->data_len = rr->raw_len;
	rr->zstd = false;
	return 0;
}

/* What one read works with: an open file's, or in no-open mode the node's
 * read state (held for the read). */
struct reader {
	struct node *node;
	struct wh_fetch_file *ff;
	struct wh_version v;      /* the version the read is served at */
	struct open_file *fh;     /* or NULL: */
	struct rstate *rs;
};

/*
 * rs_get - the read state for a read of |n| in no-open mode, held for the
 * read (rs_put).  The first read of |n| at a version also queues its
 * neighbours, if it is a small file of a directory just listed (into
 * |pf|, as small_batch: to fetch once the read is answered).
 * 0 or an errno: EIO once a read saw the file change under its readers.
 */
static int rs_get(struct wh_fs *fs, struct node *n, struct reader *r,
		  struct prefetch *pf)
{
	struct rstate *rs;
	struct wh_attr a;
	bool fresh;
	int err;

	memset(pf, 0, sizeof(*pf));
	pthread_mutex_lock(&fs->lock);
	if (!n->rd_known && !n->rd_changed) {
		/* given to the kernel without a version we could trust (a
		 * reply that raced a change): the host's current one */
		pthread_mutex_unlock(&fs->lock);
		err = fetch_attr(fs, n, &a, &fresh);
		if (err)
			return err;
		if (!S_ISREG(a.mode))
			return EIO;
		pthread_mutex_lock(&fs->lock);
		if (!n->rd_known && !n->rd_changed) {
			n->rd_known = true;
			version_of(&a, &n->rd_version);
		}
	}
	if (n->rd_changed) {
		pthread_mutex_unlock(&fs->lock);
		return EIO;
	}
	rs = n->rs;
	if (!rs) {
		char path[WH_MAX_PATH + 1];
		ssize_t plen = node_path(fs, n, path);
		bool first;

		rs = calloc(1, sizeof(*rs));
		err = !rs ? ENOMEM : plen < 0 ? ENAMETOOLONG :
		      -wh_fetch_open(fs->fetch, path, (size_t)plen,
				     &n->rd_version, &rs->ff);
		if (err) {
			pthread_mutex_unlock(&fs->lock);
			free(rs);
			return err;
		}
		rs->node = n;
		rs->v = n->rd_version;
		n->rs = rs;
		rs->next = fs->rs_head;
		if (fs->rs_head)
			fs->rs_head->prev = rs;
		else
			fs->rs_tail = rs;
		fs->rs_head = rs;
		fs->rs_len++;
		/* the kernel's pages fill at this version now; if they did
		 * not hold it, this is where the open used to queue the
		 * neighbours */
		first = !n->cache_known ||
			!version_eq(&n->cache_version, &rs->v);
		n->cache_known = true;
		n->cache_version = rs->v;
		if (first && n->attr_valid) {
			struct wh_version av;

			version_of(&n->attr, &av);
			if (version_eq(&av, &rs->v)) {
				a = n->attr;
				small_batch(fs, n, &a, pf);
			}
		}
	} else if (rs != fs->rs_head) {
		rs->prev->next = rs->next;
		if (rs->next)
			rs->next->prev = rs->prev;
		else
			fs->rs_tail = rs->prev;
		rs->prev = NULL;
		rs->next = fs->rs_head;
		fs->rs_head->prev = rs;
		fs->rs_head = rs;
	}
	rs->users++;
	n->refs++;
	rs_trim(fs);
	pthread_mutex_unlock(&fs->lock);
	r->node = n;
	r->ff = rs->ff;
	r->v = rs->v;
	r->fh = NULL;
	r->rs = rs;
	return 0;
}

/* rs_put - the read with |r| is done; |at_end|: it reached the end of the
 * file, where readers close, so the state goes (the fetcher's close: the
 * backfill of what came with READ). */
static void rs_put(struct wh_fs *fs, struct reader *r, bool at_end)
{
	struct rstate *rs = r->rs;

	pthread_mutex_lock(&fs->lock);
	rs->users--;
	if (at_end && rs->node)
		rs_detach(fs, rs);
	else
		rs_free_unused(fs, rs);
	r->node->refs--;
	node_maybe_free(fs, r->node);
	pthread_mutex_unlock(&fs->lock);
}

/*
 * reader_changed - a read showed a version other than the one it is
 * served at: the cached attributes and pages are stale, and this read and
 * every later one of the same readers fail.  For an open file that is its
 * own flag; without opens it is the node's, until the kernel looks the
 * name up again, so the name is expired as a change notice from the host
 * would (from the notifier, never from a request handler): the next open
 * looks it up and reads the new version.
 */
static void reader_changed(struct wh_fs *fs, struct reader *r,
			   fuse_ino_t ino, const char *path)
{
	char dir[WH_MAX_PATH + 1];
	struct node *n = r->node;
	ssize_t dlen = -1;

	if (r->fh) {
		file_changed(fs, r->fh, ino, path);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	if (r->rs->node != n || n->rd_changed) {
		/* told already, or looked up again since */
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	n->rd_changed = true;
	mark_stale(fs, n);
	n->cache_known = false;
	rs_detach(fs, r->rs);
	dlen = node_path(fs, n->parent, dir);
	pthread_mutex_unlock(&fs->lock);
	wh_info("'%s' changed on the host while read: EIO", path);
	if (dlen >= 0)
		wh_fs_inval(fs, dir, (size_t)dlen, n->name, n->name_len);
	else
		queue_inode(fs, ino);
}

/* read_reply - take the READ_REPLY |rr| to a READ of |want| bytes at
 * |off| for |r| (decompressed into |zb| if it came packed): 0, with
 * rr->data and rr->data_len the bytes, or an errno. */
static int read_reply(struct wh_fs *fs, struct reader *r, fuse_ino_t ino,
		      const char *path, uint64_t off, size_t want,
		      struct wh_msg_read_reply *rr, struct wh_buf *zb)
{
	wh_fetch_count_wire(fs->fetch, rr->data_len);
	if (rr->zstd && unpack_read(rr, want, zb) < 0) {
		wh_warn("host sent a bad compressed read of '%s'", path);
		return EIO;
	}
	if (rr->data_len > want) {
		wh_warn("host sent %" PRIu32 " bytes for a read of %zu",
			rr->data_len, want);
		return EIO;
	}
	if (!version_eq(&r->v, &rr->version)) {
		reader_changed(fs, r, ino, path);
		return EIO;
	}
	atomic_fetch_add_explicit(&fs->bytes_direct, rr->data_len,
				  memory_order_relaxed);
	wh_fetch_got_read(fs->fetch, r->ff, off, rr->data, rr->data_len);
	return 0;
}

/*
 * A read of an open file that goes to the host as READ requests, sent
 * without waiting (the transport's call_async): the FUSE thread sends the
 * request and goes back to the kernel, and the transport's network thread,
 * which receives the reply, answers the kernel itself (aread_done), and
 * in no-open mode lets the reader go (rs_put) after it.  The
 * wait for the reply cost the FUSE thread a sleep and a wake-up by the
 * network thread; on a busy machine that wake-up is what now and then
 * waits milliseconds for a CPU.  A reply short of the end of the file
 * (a file shrinking) sends a READ for the rest, as do_read's loop does.
 */
struct aread {
	struct wh_fs *fs;
	fuse_req_t req;
	fuse_ino_t ino;
	struct reader r;
	uint64_t off;
	size_t size, got;
	uint8_t *out; /* the bytes so far, when the reply came in pieces */
	struct wh_msg m; /* the READ in flight */
	char path[WH_MAX_PATH + 1];
};

static void aread_done(void *ud, int err, struct wh_buf *resp);

/* aread_send - the READ for the rest of |a|: 0 or a negative error */
static int aread_send(struct aread *a)
{
	uint8_t req[WH_FRAME_HDR_LEN + WH_MAX_REQ_FRAME];
	struct wh_fs *fs = a->fs;
	size_t want = a->size - a->got;
	ssize_t n;

	if (want > WH_MAX_READ)
		want = WH_MAX_READ;
	a->m.u.read.offset = a->off + a->got;
	a->m.u.read.length = (uint32_t)want;
	a->m.hdr.req_id = atomic_fetch_add(&fs->next_req, 1) + 1;
	n = wh_msg_encode(&a->m, req, sizeof(req));
	if (n < 0)
		return (int)n;
	atomic_fetch_add_explicit(&fs->reads_direct, 1, memory_order_relaxed);
	wh_trace("f_read", a->m.u.read.offset);
	return fs->rpc->ops->call_async(fs->rpc->ctx, req, (size_t)n,
					fs->opts.timeout_ms, aread_done, a);
}

static void aread_free(struct aread *a)
{
	struct wh_fs *fs = a->fs;

	free(a->out);
	free(a);
	atomic_fetch_sub(&fs->areads, 1);
}

static void aread_done(void *ud, int err, struct wh_buf *resp)
{
	struct aread *a = ud;
	struct wh_msg_read_reply *rr;
	struct wh_msg rm;
	struct wh_buf zb;
	size_t want = a->m.u.read.length;
	bool at_end = a->off + a->size >= a->r.v.size;

	wh_buf_init(&zb);
	err = reply_of(&a->m, err, WH_MSG_READ_REPLY, resp, &rm);
	if (!err)
		err = read_reply(a->fs, &a->r, a->ino, a->path,
				 a->m.u.read.offset, want, &rm.u.read_reply,
				 &zb);
	if (err)
		goto fail;
	rr = &rm.u.read_reply;
	if (a->got == 0 && !a->out && (rr->data_len == a->size || rr->eof)) {
		/* the common case: one reply holds it all */
		fuse_reply_buf(a->req, (const char *)rr->data, rr->data_len);
		wh_trace("f_replied", 0);
		at_end = at_end || rr->eof;
		goto out;
	}
	if (!a->out) {
		a->out = malloc(a->size);
		if (!a->out) {
			err = ENOMEM;
			goto fail;
		}
	}
	memcpy(a->out + a->got, rr->data, rr->data_len);
	a->got += rr->data_len;
	if (rr->eof || a->got == a->size) {
		fuse_reply_buf(a->req, (const char *)a->out, a->got);
		goto out;
	}
	if (rr->data_len == 0) {
		wh_warn("host sent no data and no end of file for '%s'",
			a->path);
		err = EIO;
		goto fail;
	}
	if (aread_send(a) == 0) {
		wh_buf_free(&zb);
		return; /* aread_done again, for the rest */
	}
	err = EIO;
fail:
	fuse_reply_err(a->req, err);
	at_end = false;
out:
	wh_buf_free(&zb);
	if (a->r.rs)
		rs_put(a->fs, &a->r, at_end);
	aread_free(a);
}

/* aread_start - serve the read with an aread: 0 once the request went (the
 * kernel gets its answer from aread_done), or a negative error (nothing
 * sent, nothing answered). */
static int aread_start(struct wh_fs *fs, fuse_req_t req, fuse_ino_t ino,
		       size_t size, off_t off, const struct reader *r,
		       const char *path, size_t len)
{
	struct aread *a = malloc(sizeof(*a));
	int rv;

	if (!a)
		return -ENOMEM;
	a->fs = fs;
	a->req = req;
	a->ino = ino;
	a->r = *r;
	a->off = (uint64_t)off;
	a->size = size;
	a->got = 0;
	a->out = NULL;
	memcpy(a->path, path, len);
	a->path[len] = '\0';
	memset(&a->m, 0, sizeof(a->m));
	a->m.hdr.type = WH_MSG_READ;
	a->m.u.read.path.p = a->path;
	a->m.u.read.path.len = (uint16_t)len;
	atomic_fetch_add(&fs->areads, 1);
	rv = aread_send(a);
	if (rv < 0)
		aread_free(a);
	return rv;
}

#define READ_ASYNC 2 /* do_read: an aread took the read, and the reader */

/* do_read - serve one read with |r|: 1 when it reached the end of the
 * file, else 0, or READ_ASYNC (the aread answers, and lets |r| go). */
static int do_read(struct wh_fs *fs, fuse_req_t req, fuse_ino_t ino,
		   size_t size, off_t off, struct reader *r)
{
	char path[WH_MAX_PATH + 1];
	struct wh_fetch_reply fr;
	struct wh_buf resp, zb;
	uint8_t *out = NULL;
	bool at_end = (uint64_t)off + size >= r->v.size;
	size_t got = 0;
	ssize_t len;
	int err = 0;

	len = path_of(fs, r->node, path, NULL);
	if (len < 0) {
		fuse_reply_err(req, ENAMETOOLONG);
		return false;
	}
	/* sequential reads, and chunks already in RAM: from whole chunks */
	err = wh_fetch_read(fs->fetch, r->ff, path, (size_t)len,
			    (uint64_t)off, size, &fr);
	if (err > 0) {
		if (fr.n == 0)
			fuse_reply_buf(req, NULL, 0);
		else
			fuse_reply_iov(req, fr.iov, fr.n);
		wh_fetch_done(fs->fetch, &fr);
		return at_end;
	}
	if (err < 0) {
		if (err == -ESTALE)
			reader_changed(fs, r, ino, path);
		else
			wh_debug("read of '%s': %s", path, wh_strerror(err));
		fuse_reply_err(req, err == -ENOMEM ? ENOMEM : EIO);
		return false;
	}
	/* an open file's read, when the transport can: answered by its
	 * network thread (see struct aread) */
	if (fs->rpc->ops->call_async &&
	    aread_start(fs, req, ino, size, off, r, path, (size_t)len) == 0)
		return READ_ASYNC;
	wh_buf_init(&resp);
	wh_buf_init(&zb);
	/* at most WH_MAX_READ per request; the kernel's reads are never
	 * larger (max_write), so this loop normally runs once */
	while (got < size) {
		struct wh_msg_read_reply *rr;
		struct wh_msg m, rm;
		size_t want = size - got;

		if (want > WH_MAX_READ)
			want = WH_MAX_READ;
		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_READ;
		m.u.read.path.p = path;
		m.u.read.path.len = (uint16_t)len;
		m.u.read.offset = (uint64_t)off + got;
		m.u.read.length = (uint32_t)want;
		atomic_fetch_add_explicit(&fs->reads_direct, 1,
					  memory_order_relaxed);
		wh_trace("f_read", m.u.read.offset);
		err = call(fs, &m, WH_MSG_READ_REPLY, &resp, &rm);
		wh_trace("f_got", (uint64_t)err);
		if (err)
			break;
		rr = &rm.u.read_reply;
		err = read_reply(fs, r, ino, path, (uint64_t)off + got, want,
				 rr, &zb);
		if (err)
			break;
		if (got == 0 && !out && (rr->data_len == size || rr->eof)) {
			/* the common case: one reply holds it all */
			fuse_reply_buf(req, (const char *)rr->data,
				       rr->data_len);
			wh_trace("f_replied", 0);
			wh_buf_free(&resp);
			wh_buf_free(&zb);
			return at_end || rr->eof;
		}
		if (!out) {
			out = malloc(size);
			if (!out) {
				err = ENOMEM;
				break;
			}
		}
		memcpy(out + got, rr->data, rr->data_len);
		got += rr->data_len;
		if (rr->eof)
			break; /* a short read only at the end of the file */
		if (rr->data_len == 0) {
			wh_warn("host sent no data and no end of file for "
				"'%s'", path);
			err = EIO;
			break;
		}
	}
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, (const char *)out, got);
	free(out);
	wh_buf_free(&resp);
	wh_buf_free(&zb);
	return !err && at_end;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct wh_fs *fs = fs_of(req);
	struct open_file *fh = (struct open_file *)(uintptr_t)fi->fh;
	struct prefetch pf;
	struct reader r;
	int err, rv;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (fh) {
		/* once changed, always changed: no old bytes after new ones */
		if (atomic_load(&fh->changed)) {
			fuse_reply_err(req, EIO);
			return;
		}
		r.node = fh->node;
		r.ff = fh->ff;
		r.v = fh->version;
		r.fh = fh;
		r.rs = NULL;
		do_read(fs, req, ino, size, off, &r);
		return;
	}
	/* no-open mode: the kernel opened the file without asking */
	err = rs_get(fs, node_of(fs, ino), &r, &pf);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	rv = do_read(fs, req, ino, size, off, &r);
	if (rv != READ_ASYNC)
		rs_put(fs, &r, rv == 1);
	/* after the reply: the reader need not wait for the queueing */
	prefetch_run(fs, &pf);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct wh_fs *fs = fs_of(req);
	char path[WH_MAX_PATH + 1], *target;
	struct wh_msg m, r;
	struct wh_buf resp;
	ssize_t len;
	int err;

	len = path_of(fs, node_of(fs, ino), path, NULL);
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
		goto out;
	}
	target = strndup(r.u.readlink_reply.target.p,
			 r.u.readlink_reply.target.len);
	if (!target) {
		fuse_reply_err(req, ENOMEM);
		goto out;
	}
	if (strlen(target) != r.u.readlink_reply.target.len)
		fuse_reply_err(req, EIO); /* a NUL byte inside */
	else
		fuse_reply_readlink(req, target);
	free(target);
out:
	wh_buf_free(&resp);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct wh_fs *fs = fs_of(req);
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

/* stats_text - the fetcher's counters, one "name value" per line. */
static int stats_text(struct wh_fs *fs, char *buf, size_t size)
{
	struct wh_fetch_stats st;
	struct wh_ram_stats rs;

	wh_fetch_get_stats(fs->fetch, &st);
	wh_ram_get_stats(fs->ram, &rs);
	return snprintf(buf, size,
			"reads_direct %lu\nbytes_direct %lu\n"
			"reads_chunked %" PRIu64 "\n"
			"reads_ram %" PRIu64 "\nmanifests %" PRIu64 "\n"
			"chunks_fetched %" PRIu64 "\nbytes_fetched %" PRIu64
			"\nchunks_from_store %" PRIu64 "\nchunks_bad %" PRIu64
			"\nstore_corrupt %" PRIu64 "\nram_bytes %" PRIu64
			"\nram_hits %" PRIu64 "\nram_evictions %" PRIu64
			"\nmanifest_parts %" PRIu64 "\nchunks_from_reads %"
			PRIu64 "\nbytes_from_reads %" PRIu64
			"\nfetch_busy %" PRIu64 "\nbytes_wire %" PRIu64
			"\nsmall_queued %" PRIu64
			"\nsmall_fetched %" PRIu64 "\nsmall_bytes %" PRIu64
			"\nreads_small %" PRIu64 "\nsmall_stored %lu"
			"\nsmall_batches %" PRIu64 "\nsmall_bad %" PRIu64
			"\nopens %lu\nno_open %d\ndirs_ahead %lu\n"
			"dirs_ahead_used %lu\n",
			atomic_load(&fs->reads_direct),
			atomic_load(&fs->bytes_direct), st.reads_chunked,
			st.reads_ram, st.manifests, st.chunks_fetched,
			st.bytes_fetched, st.chunks_from_store, st.chunks_bad,
			st.store_corrupt, rs.bytes, rs.hits, rs.evictions,
			st.mparts, st.chunks_from_reads, st.bytes_from_reads,
			st.busy, st.bytes_wire,
			st.small_queued, st.small_fetched,
			st.small_bytes, st.reads_small,
			atomic_load(&fs->small_stored), st.small_batches,
			st.small_bad, atomic_load(&fs->opens),
			atomic_load(&fs->no_open) ? 1 : 0,
			atomic_load(&fs->dirs_ahead),
			atomic_load(&fs->dirs_ahead_used));
}

/* op_getxattr - the root has two attributes: the data plane's counters
 * (for scripts and tests: `getfattr -n user.wormhole.stats MNT`) and the
 * link (peer, transport, state: what `wormhole status` shows). */
static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct wh_fs *fs = fs_of(req);
	char buf[2048];
	int n;

	if (ino == FUSE_ROOT_ID && strcmp(name, LINK_XATTR) == 0) {
		n = wh_rpc_describe(fs->rpc, buf, sizeof(buf));
		if (n < 0) {
			fuse_reply_err(req, -n);
			return;
		}
	} else if (ino != FUSE_ROOT_ID || strcmp(name, STATS_XATTR) != 0) {
		fuse_reply_err(req, ino == FUSE_ROOT_ID ? ENODATA : ENOTSUP);
		return;
	} else {
		n = stats_text(fs, buf, sizeof(buf));
	}
	if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else if (size < (size_t)n)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

/* The counters are not listed, so that cp -a and tar --xattrs do not copy
 * them: they are read by name. */
static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	fuse_reply_err(req, ENOTSUP);
}

/* Everything that would write: the share is read-only.  (The mount is
 * "ro" too, so the kernel refuses most of these before they come here.) */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EROFS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	fuse_reply_err(req, EROFS);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			 off_t offset, off_t length, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static const struct fuse_lowlevel_ops wh_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.release = op_release,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
};

/* ---------------------------------------------------------- invalidation */

/* kernel_ready - the kernel listens to notifications only while the
 * request loop runs (before INIT it cannot; after the loop, nobody would
 * answer the requests a notification may wait for). */
static bool kernel_ready(struct wh_fs *fs)
{
	bool r;

	pthread_mutex_lock(&fs->run_lock);
	r = fs->running;
	pthread_mutex_unlock(&fs->run_lock);
	return r && !atomic_load(&fs->stop);
}

static void tell_inode(struct wh_fs *fs, fuse_ino_t ino)
{
	int rv = fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);

	/* ENOENT: the kernel had nothing cached for it */
	if (rv < 0 && rv != -ENOENT)
		wh_debug("inval inode: %s", strerror(-rv));
}

/*
 * tell_entry - the kernel must check |name| in |parent| again before it
 * uses it.  It is expired rather than dropped: a dropped dentry would cut
 * off processes whose working directory is below it and detach mounts
 * there, while an expired one is looked up again at its next use (and
 * dropped then if it is gone).  Kernels before 6.2 ignore the flag and
 * drop it.
 */
static void tell_entry(struct wh_fs *fs, fuse_ino_t parent, const char *name,
		       size_t len)
{
	int rv = fuse_lowlevel_notify_expire_entry(fs->se, parent, name, len,
						   FUSE_LL_EXPIRE_ONLY);

	if (rv < 0 && rv != -ENOENT)
		wh_debug("expire entry '%s': %s", name, strerror(-rv));
}

/* resolve_dir - the node for directory path |dir| if the kernel may know
 * it, else NULL; lock held. */
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

/* inval_one - |name| in |dir| changed ("" name: the directory itself). */
static void inval_one(struct wh_fs *fs, const char *dir, const char *name,
		      size_t name_len)
{
	struct node *d, *c;
	fuse_ino_t dino, cino = 0;

	pthread_mutex_lock(&fs->lock);
	d = resolve_dir(fs, dir);
	if (!d) {
		/* the kernel cannot have anything cached below it */
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	/* the directory's listing, size and times change with its names */
	mark_stale(fs, d);
	dino = ino_of(fs, d);
	if (name_len > 0) {
		c = find_child(fs, d, name, name_len);
		if (c) {
			mark_stale(fs, c);
			c->cache_known = false;
			cino = ino_of(fs, c);
			/* its readers check the version with their next read */
			for (struct open_file *fh = fs->files; fh;
			     fh = fh->next)
				if (fh->node == c)
					wh_fetch_file_inval(fh->ff);
			if (c->rs)
				wh_fetch_file_inval(c->rs->ff);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	/* the node ids are only passed on, never dereferenced: if a node
	 * was forgotten meanwhile the kernel answers ENOENT */
	if (!kernel_ready(fs))
		return;
	if (name_len > 0)
		tell_entry(fs, dino, name, name_len);
	if (cino)
		tell_inode(fs, cino);
	tell_inode(fs, dino);
}

/* gather - append (parent, ino, name) to |v| (*n used of *cap); false
 * when out of memory. */
static bool gather(struct kernel_name **v, size_t *n, size_t *cap,
		   fuse_ino_t parent, fuse_ino_t ino, const char *name,
		   size_t len)
{
	struct kernel_name *k;

	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 256;
		struct kernel_name *nv = realloc(*v, ncap * sizeof(*nv));

		if (!nv)
			return false;
		*v = nv;
		*cap = ncap;
	}
	k = &(*v)[*n];
	k->parent = parent;
	k->ino = ino;
	k->name = NULL;
	k->name_len = len;
	if (name) {
		k->name = malloc(len + 1);
		if (!k->name)
			return false;
		memcpy(k->name, name, len);
		k->name[len] = '\0';
	}
	(*n)++;
	return true;
}

/* inval_everything - forget every cached fact: all attributes, all
 * names (positive and negative), all pages. */
static void inval_everything(struct wh_fs *fs)
{
	struct kernel_name *v = NULL;
	size_t n = 0, cap = 0;
	bool ok = true;

	pthread_mutex_lock(&fs->lock);
	mark_stale(fs, &fs->root);
	ok = gather(&v, &n, &cap, 0, FUSE_ROOT_ID, NULL, 0);
	for (size_t b = 0; b < fs->nbuckets; b++) {
		for (struct node *m = fs->buckets[b]; m; m = m->hnext) {
			mark_stale(fs, m);
			m->cache_known = false;
			if (ok)
				ok = gather(&v, &n, &cap,
					    ino_of(fs, m->parent),
					    ino_of(fs, m), m->name,
					    m->name_len);
		}
	}
	for (struct open_file *fh = fs->files; fh; fh = fh->next)
		wh_fetch_file_inval(fh->ff);
	for (struct rstate *rs = fs->rs_head; rs; rs = rs->next)
		wh_fetch_file_inval(rs->ff);
	while (fs->neg_len > 0) {
		struct neg_entry *ne = &fs->neg[fs->neg_head];

		if (ok)
			ok = gather(&v, &n, &cap, ino_of(fs, ne->dir), 0,
				    ne->name, ne->name_len);
		neg_pop(fs);
	}
	pthread_mutex_unlock(&fs->lock);
	if (!ok)
		wh_warn("out of memory: some cached names may stay until "
			"they time out");
	if (kernel_ready(fs)) {
		for (size_t i = 0; i < n; i++)
			if (v[i].name)
				tell_entry(fs, v[i].parent, v[i].name,
					   v[i].name_len);
		for (size_t i = 0; i < n; i++)
			if (v[i].ino)
				tell_inode(fs, v[i].ino);
	}
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

static void wake_notifier(struct wh_fs *fs)
{
	uint64_t one = 1;
	int saved = errno;

	/* only fails when the counter is saturated: awake anyway */
	if (write(fs->wake_fd, &one, sizeof(one)) < 0)
		errno = saved;
	errno = saved;
}

static void free_items(struct inval_item *it)
{
	while (it) {
		struct inval_item *next = it->next;

		free(it);
		it = next;
	}
}

/* enqueue - add |it| (NULL: out of memory) to the queue, or collapse the
 * queue into "everything changed" when it is full. */
static void enqueue(struct wh_fs *fs, struct inval_item *it)
{
	struct inval_item *drop = NULL;

	pthread_mutex_lock(&fs->qlock);
	if (!it || fs->qlen >= INVAL_QUEUE_MAX || fs->qall) {
		if (!fs->qall)
			wh_debug("invalidation queue full: invalidating "
				 "everything");
		fs->qall = true;
		drop = fs->qhead;
		fs->qhead = fs->qtail = NULL;
		fs->qlen = 0;
		free(it);
	} else {
		if (fs->qtail)
			fs->qtail->next = it;
		else
			fs->qhead = it;
		fs->qtail = it;
		fs->qlen++;
	}
	pthread_mutex_unlock(&fs->qlock);
	free_items(drop);
	wake_notifier(fs);
}

static void queue_inode(struct wh_fs *fs, fuse_ino_t ino)
{
	struct inval_item *it = calloc(1, sizeof(*it));

	if (it) {
		it->kind = INVAL_INODE;
		it->ino = ino;
	}
	enqueue(fs, it);
}

void wh_fs_inval(struct wh_fs *fs, const char *dir, size_t dir_len,
		 const char *name, size_t name_len)
{
	struct inval_item *it;

	if (dir_len == 0 && name_len == 0) {
		wh_fs_inval_all(fs);
		return;
	}
	if (!wh_path_valid(dir, dir_len) ||
	    (name_len > 0 && !wh_name_valid(name, name_len))) {
		wh_debug("change notice with a bad path: invalidating "
			 "everything");
		wh_fs_inval_all(fs);
		return;
	}
	it = calloc(1, sizeof(*it) + dir_len + name_len + 2);
	if (it) {
		it->kind = INVAL_NAME;
		it->dir_len = dir_len;
		it->name_len = name_len;
		memcpy(it->str, dir, dir_len);
		it->str[dir_len] = '\0';
		memcpy(it->str + dir_len + 1, name, name_len);
		it->str[dir_len + 1 + name_len] = '\0';
	}
	enqueue(fs, it);
}

void wh_fs_inval_all(struct wh_fs *fs)
{
	pthread_mutex_lock(&fs->qlock);
	fs->qall = true;
	pthread_mutex_unlock(&fs->qlock);
	wake_notifier(fs);
}

/* kick_loop - interrupt the request loop's wait so that it sees it must
 * exit.  Repeated by the notifier until the loop is gone: a wake-up that
 * lands just before the loop starts waiting would otherwise be lost. */
static bool kick_loop(struct wh_fs *fs)
{
	bool running;

	pthread_mutex_lock(&fs->run_lock);
	running = fs->running;
	if (running)
		pthread_kill(fs->loop_thread, WAKE_SIG);
	pthread_mutex_unlock(&fs->run_lock);
	return running;
}

/*
 * on_small_done - a small file fetched ahead is in RAM: queue it for the
 * notifier, which puts it in the kernel's page cache (bounded: beyond
 * STORE_QUEUE_BYTES it is left in RAM, where the reader's READ finds it).
 */
static void on_small_done(void *ctx, const char *path, size_t len,
			  const struct wh_version *v, struct wh_ram_ent *e)
{
	struct wh_fs *fs = ctx;
	struct store_item *it;
	bool ok = false;

	it = malloc(sizeof(*it) + len + 1);
	if (!it)
		return;
	memcpy(it->path, path, len);
	it->path[len] = '\0';
	it->path_len = len;
	it->v = *v;
	it->e = e;
	it->next = NULL;
	pthread_mutex_lock(&fs->qlock);
	/* none once the mount is going: wh_fs_del frees the queue while
	 * the fetch workers may still finish files */
	if (!atomic_load(&fs->stop) &&
	    fs->sbytes + v->size <= STORE_QUEUE_BYTES) {
		wh_ram_hold(fs->ram, e);
		fs->sbytes += v->size;
		if (fs->stail)
			fs->stail->next = it;
		else
			fs->shead = it;
		fs->stail = it;
		ok = true;
	}
	pthread_mutex_unlock(&fs->qlock);
	if (ok)
		wake_notifier(fs);
	else
		free(it);
}

/*
 * do_store - put a small file fetched ahead in the kernel's page cache,
 * so that its reader's open keeps the pages (keep_cache) and its reads
 * never come here.  Only for a node the kernel knows, whose attributes
 * are current and at the file's version; on the notifier thread, which
 * also runs every invalidation, so none can come between the check and
 * the store (one that comes after drops the pages again).
 */
static void do_store(struct wh_fs *fs, struct store_item *it)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(wh_ram_len(it->e));
	char *slash = memrchr(it->path, '/', it->path_len);
	const char *name = slash ? slash + 1 : it->path;
	size_t nlen = it->path_len - (size_t)(name - it->path);
	struct wh_version have;
	struct node *d, *n = NULL;
	uint64_t gen = 0;
	int rv;

	pthread_mutex_lock(&fs->lock);
	if (slash)
		*slash = '\0';
	d = slash ? resolve_dir(fs, it->path) : &fs->root;
	if (d)
		n = find_child(fs, d, name, nlen);
	if (n) {
		version_of(&n->attr, &have);
		if (n->nlookup == 0 || !n->attr_valid ||
		    !S_ISREG(n->attr.mode) || !version_eq(&have, &it->v) ||
		    (n->cache_known && version_eq(&n->cache_version, &it->v)))
			n = NULL; /* unknown, changed, or opened already */
		else if (atomic_load(&fs->no_open) &&
			 (!n->rd_known || n->rd_changed ||
			  !version_eq(&n->rd_version, &it->v)))
			n = NULL; /* its reads are served at another version */
	}
	if (n) {
		n->refs++;
		gen = fs->gen;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!n)
		return;
	rv = -EAGAIN;
	if (kernel_ready(fs)) {
		bv.buf[0].mem = (void *)wh_ram_data(it->e);
		rv = fuse_lowlevel_notify_store(fs->se, ino_of(fs, n), 0, &bv,
						0);
	}
	pthread_mutex_lock(&fs->lock);
	if (rv == 0 && n->inval_gen <= gen && !n->cache_known) {
		n->cache_known = true;
		n->cache_version = it->v;
		atomic_fetch_add_explicit(&fs->small_stored, 1,
					  memory_order_relaxed);
	}
	n->refs--;
	node_maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

/* free_stores - drop queued small files (the qlock not held) */
static void free_stores(struct wh_fs *fs, struct store_item *it)
{
	while (it) {
		struct store_item *next = it->next;

		wh_ram_put(fs->ram, it->e);
		free(it);
		it = next;
	}
}

static void *notifier_main(void *arg)
{
	struct wh_fs *fs = arg;

	while (!atomic_load(&fs->stop)) {
		struct pollfd pfd = { .fd = fs->wake_fd, .events = POLLIN };
		struct inval_item *list;
		struct store_item *stores;
		bool all, kicking = false;
		uint64_t v;

		if (atomic_load(&fs->exit_pending))
			kicking = kick_loop(fs);
		pthread_mutex_lock(&fs->qlock);
		list = fs->qhead;
		all = fs->qall;
		fs->qhead = fs->qtail = NULL;
		fs->qlen = 0;
		fs->qall = false;
		stores = fs->shead;
		fs->shead = fs->stail = NULL;
		fs->sbytes = 0;
		pthread_mutex_unlock(&fs->qlock);
		if (all)
			inval_everything(fs);
		for (struct inval_item *it = list; it && !all; it = it->next) {
			if (atomic_load(&fs->stop))
				break;
			if (it->kind == INVAL_NAME)
				inval_one(fs, it->str,
					  it->str + it->dir_len + 1,
					  it->name_len);
			else if (kernel_ready(fs))
				tell_inode(fs, it->ino);
		}
		free_items(list);
		/* after the invalidations that came with them */
		for (struct store_item *it = stores; it; it = it->next)
			if (!atomic_load(&fs->stop))
				do_store(fs, it);
		free_stores(fs, stores);
		if (list || all || stores)
			continue; /* more may have come meanwhile */
		if (poll(&pfd, 1, kicking ? KICK_MS : -1) > 0 &&
		    read(fs->wake_fd, &v, sizeof(v)) < 0)
			wh_debug("notifier: %s", strerror(errno));
	}
	return NULL;
}

/* -------------------------------------------------------------- lifetime */

int wh_fs_new(struct wh_rpc *rpc, const struct wh_fs_opts *opts,
	      struct wh_fs **pfs)
{
	sigset_t all, old;
	struct wh_fs *fs;
	int rv;

	*pfs = NULL;
	if (!rpc || !rpc->ops || !rpc->ops->call || !opts)
		return -EINVAL;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->wake_fd = -1;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->qlock, NULL);
	pthread_mutex_init(&fs->run_lock, NULL);
	fs->nbuckets = TABLE_MIN_BUCKETS;
	fs->buckets = calloc(fs->nbuckets, sizeof(*fs->buckets));
	if (!fs->buckets) {
		rv = -ENOMEM;
		goto out;
	}
	fs->rpc = rpc;
	fs->opts = *opts;
	if (fs->opts.timeout_ms <= 0)
		fs->opts.timeout_ms = 8000;
	if (!(fs->opts.attr_timeout >= 0))
		fs->opts.attr_timeout = 0;
	if (!(fs->opts.entry_timeout >= 0))
		fs->opts.entry_timeout = 0;
	fs->root.nlookup = 1;
	rv = wh_ram_new(opts->ram_limit ? opts->ram_limit : RAM_DEFAULT,
			&fs->ram);
	if (rv < 0)
		goto out;
	{
		struct wh_fetch_opts fo = {
			.timeout_ms = fs->opts.timeout_ms,
			.workers = opts->fetch_workers,
			.caps = opts->caps,
			.caps_ctx = opts->caps_ctx,
			.small_done = on_small_done,
			.small_ctx = fs,
		};
		uint64_t ram = opts->ram_limit ? opts->ram_limit : RAM_DEFAULT;

		/* what is fetched ahead must fit in RAM with room to spare */
		fo.window_max = ram / 4 < (64ULL << 20) ? ram / 4 : 64ULL << 20;
		if (fo.window_max < (4ULL << 20))
			fo.window_max = 4ULL << 20;
		rv = wh_fetch_new(rpc, opts->store, fs->ram, &fo, &fs->fetch);
		if (rv < 0)
			goto out;
	}
	fs->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fs->wake_fd < 0) {
		rv = -errno;
		goto out;
	}
	/* the notifier takes no signals: they belong to the loop's thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rv = -pthread_create(&fs->notifier, NULL, notifier_main, fs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv < 0)
		goto out;
	fs->notifier_started = true;
	*pfs = fs;
	return 0;
out:
	wh_fs_del(fs);
	return rv;
}

/* unescape_mountinfo - undo the octal escapes (\040...) of a mountinfo
 * field, in place. */
static void unescape_mountinfo(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' &&
		    r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 +
				      (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* next_field - the next space-separated field at *p, NUL-terminated in
 * place, or NULL at the end of the line. */
static char *next_field(char **p)
{
	char *s = *p, *e;

	while (*s == ' ')
		s++;
	if (*s == '\0' || *s == '\n')
		return NULL;
	e = s + strcspn(s, " \n");
	if (*e != '\0')
		*e++ = '\0';
	*p = e;
	return s;
}

/* find_dev - the device of our mount, from /proc/self/mountinfo (a stat()
 * of the mount point would wait for the request loop). */
static void find_dev(struct wh_fs *fs)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;

	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		char *p = line, *dev, *mnt, *fld, *type = NULL;
		unsigned int maj, min;

		/* id parent maj:min root mountpoint opts [optional...] -
		 * type source superopts */
		if (!next_field(&p) || !next_field(&p))
			continue;
		dev = next_field(&p);
		if (!dev || !next_field(&p))
			continue;
		mnt = next_field(&p);
		while (mnt && (fld = next_field(&p)) != NULL) {
			if (strcmp(fld, "-") == 0) {
				type = next_field(&p);
				break;
			}
		}
		if (!type || strncmp(type, "fuse", 4) != 0 ||
		    sscanf(dev, "%u:%u", &maj, &min) != 2)
			continue;
		unescape_mountinfo(mnt);
		if (strcmp(mnt, fs->mountpoint) == 0) {
			/* the last one wins: mounts stack */
			fs->have_dev = true;
			fs->dev_major = maj;
			fs->dev_minor = min;
		}
	}
	free(line);
	fclose(f);
}

int wh_fs_mount(struct wh_fs *fs, const char *mountpoint)
{
	/* nosuid, nodev: a host's set-id bits and device files are shown as
	 * they are, never acted on here */
	char *argv[] = { "wormhole", "-o",
			 "ro,nosuid,nodev,default_permissions,"
			 "fsname=wormhole,subtype=wormhole",
			 NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);

	if (fs->se) {
		wh_err("already mounted");
		return -EBUSY;
	}
	/* absolute, resolved before the mount hides the directory */
	fs->mountpoint = realpath(mountpoint, NULL);
	if (!fs->mountpoint) {
		int rv = -errno;

		wh_err("mount point '%s': %s", mountpoint, strerror(errno));
		return rv;
	}
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
	if (fuse_session_mount(fs->se, fs->mountpoint) != 0) {
		wh_err("cannot mount on '%s' (is /dev/fuse available, and "
		       "fusermount3 installed?)", fs->mountpoint);
		fuse_session_destroy(fs->se);
		fs->se = NULL;
		return -EIO;
	}
	fs->mounted = true;
	find_dev(fs);
	return 0;
}

static struct wh_fs *_Atomic sig_fs; /* whose wh_fs_run takes signals */

/* on_signal - SIGINT, SIGTERM, SIGHUP: stop the loop.  Async-signal-safe:
 * a store, atomics and write(2); the notifier does the rest. */
static void on_signal(int sig)
{
	struct wh_fs *fs = atomic_load(&sig_fs);

	(void)sig;
	if (!fs)
		return;
	fuse_session_exit(fs->se);
	atomic_store(&fs->exit_pending, true);
	wake_notifier(fs);
}

/* on_wake - its only purpose is to interrupt the loop's sem_wait(). */
static void on_wake(int sig)
{
	(void)sig;
}

int wh_fs_run(struct wh_fs *fs)
{
	static const int stop_sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction sa, old_stop[3], old_pipe, old_wake;
	struct fuse_loop_config *cfg;
	struct wh_fs *none = NULL;
	sigset_t wake, oldmask;
	bool own_signals;
	int rv;

	if (!fs->se)
		return -EINVAL;
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	fuse_loop_cfg_set_idle_threads(cfg, 10);
	fuse_loop_cfg_set_max_threads(cfg, 32);

	/* no SA_RESTART: the signals must interrupt the loop's wait */
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_wake;
	sigaction(WAKE_SIG, &sa, &old_wake);
	own_signals = atomic_compare_exchange_strong(&sig_fs, &none, fs);
	if (own_signals) {
		sa.sa_handler = on_signal;
		for (size_t i = 0; i < 3; i++)
			sigaction(stop_sigs[i], &sa, &old_stop[i]);
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, &old_pipe);
	}
	sigemptyset(&wake);
	sigaddset(&wake, WAKE_SIG);
	pthread_sigmask(SIG_UNBLOCK, &wake, &oldmask);

	pthread_mutex_lock(&fs->run_lock);
	fs->loop_thread = pthread_self();
	fs->running = true;
	pthread_mutex_unlock(&fs->run_lock);
	if (atomic_load(&fs->exit_pending))
		fuse_session_exit(fs->se);
	wake_notifier(fs); /* changes queued before the loop can go now */

	rv = fuse_session_loop_mt(fs->se, cfg);

	pthread_mutex_lock(&fs->run_lock);
	fs->running = false;
	pthread_mutex_unlock(&fs->run_lock);
	atomic_store(&fs->exit_pending, false);

	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	if (own_signals) {
		for (size_t i = 0; i < 3; i++)
			sigaction(stop_sigs[i], &old_stop[i], NULL);
		sigaction(SIGPIPE, &old_pipe, NULL);
		atomic_store(&sig_fs, NULL);
	}
	sigaction(WAKE_SIG, &old_wake, NULL);
	fuse_loop_cfg_destroy(cfg);
	/* > 0: the loop stopped on a signal, which is a normal exit */
	return rv < 0 ? rv : 0;
}

void wh_fs_exit(struct wh_fs *fs)
{
	if (!fs || !fs->se)
		return;
	fuse_session_exit(fs->se);
	atomic_store(&fs->exit_pending, true);
	wake_notifier(fs);
}

/* join_notifier - wait a bounded time for the notifier: a notification
 * can wait in the kernel for a request nobody will answer any more.
 * False if it did not return. */
static bool join_notifier(struct wh_fs *fs)
{
	struct timespec ts;

	atomic_store(&fs->stop, true);
	wake_notifier(fs);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += NOTIFIER_JOIN_S;
	return pthread_timedjoin_np(fs->notifier, NULL, &ts) == 0;
}

void wh_fs_del(struct wh_fs *fs)
{
	struct store_item *stores;

	if (!fs)
		return;
	/* the reads the transport still answers: before anything they use
	 * (the notifier, the session with the kernel) goes */
	if (fs->rpc && fs->rpc->ops->cancel_async)
		fs->rpc->ops->cancel_async(fs->rpc->ctx);
	while (atomic_load(&fs->areads) > 0)
		usleep(1000);
	if (fs->notifier_started && !join_notifier(fs)) {
		/* it still uses |fs| and the session: leave both */
		wh_err("the kernel does not answer: leaving the mount on "
		       "'%s' behind (unmount it with fusermount3 -u -z)",
		       fs->mountpoint ? fs->mountpoint : "?");
		return;
	}
	atomic_store(&fs->stop, true); /* no more stores queued */
	pthread_mutex_lock(&fs->qlock);
	stores = fs->shead;
	fs->shead = fs->stail = NULL;
	pthread_mutex_unlock(&fs->qlock);
	free_items(fs->qhead);
	free_stores(fs, stores);
	if (fs->se) {
		if (fs->mounted)
			fuse_session_unmount(fs->se);
		fuse_session_destroy(fs->se);
	}
	while (fs->neg_len > 0)
		neg_pop(fs);
	while (fs->kept_len > 0) {
		struct node *d = fs->kept[--fs->kept_len];

		dir_unref(d->listing);
		d->listing = NULL;
		d->refs--;
	}
	/* handles the kernel never released (the session ended on a
	 * signal); the nodes they point to are freed below */
	while (fs->files) {
		struct open_file *fh = fs->files;

		fs->files = fh->next;
		wh_fetch_close(fs->fetch, fh->ff);
		free(fh);
	}
	while (fs->rs_head)
		rs_detach(fs, fs->rs_head);
	if (fs->fetch) {
		char buf[2048];

		stats_text(fs, buf, sizeof(buf));
		for (char *p = buf; *p; p++)
			if (*p == '\n')
				*p = p[1] ? ',' : '\0';
		wh_info("data plane: %s", buf);
	}
	wh_fetch_del(fs->fetch);
	/* what the workers finished after the notifier stopped */
	free_stores(fs, fs->shead);
	fs->shead = NULL;
	wh_ram_del(fs->ram);
	while (fs->dirs) {
		struct dir_handle *dh = fs->dirs;

		fs->dirs = dh->next;
		dir_unref(dh);
	}
	if (fs->buckets) {
		size_t held = 0;

		for (size_t b = 0; b < fs->nbuckets; b++) {
			struct node *n = fs->buckets[b], *next;

			for (; n; n = next) {
				next = n->hnext;
				held += n->nlookup > 0;
				free(n->name);
				free(n);
			}
		}
		/* the kernel forgets nothing at unmount: only after it
		 * dropped its caches does 0 prove the lookups balance */
		wh_debug("file system freed: %zu of %zu nodes had lookups",
			 held, fs->nnodes);
	}
	free(fs->buckets);
	free(fs->mountpoint);
	if (fs->wake_fd >= 0)
		close(fs->wake_fd);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->qlock);
	pthread_mutex_destroy(&fs->run_lock);
	free(fs);
}
