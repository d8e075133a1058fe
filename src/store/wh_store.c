/* wh_store.c - content-addressed chunks on disk, verified on every read,
 * found through an append-only log of fixed-size checksummed records. */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/wh_buf.h"
#include "common/wh_fsutil.h"
#include "common/wh_log.h"
#include "io/wh_io.h"
#include "store/wh_store.h"

/*
 * The log, <cache>/chunks.log: records of REC_SIZE bytes at multiples of
 * REC_SIZE, native byte order (the store is this machine's), each with a
 * checksum over the rest.  A DATA record says chunks/ab/<hash> holds the
 * chunk (it is appended before the file is written, so a crash leaves at
 * worst a record without its file), a REF record that the chunk is at
 * |offset| of a file named by the name file |name| (chunk-names/<hex>),
 * a DEL record that an earlier DATA or REF of that key is gone.  A later
 * record of a key supersedes an earlier one; the log's order is the LRU
 * order (a used entry in the older half is appended again).  Writers
 * append under an exclusive flock(2) at the next multiple of REC_SIZE,
 * so a torn record (a crash, a full disk) is one bad slot, skipped;
 * readers read new slots under a shared one.  When the log holds more
 * than twice its live records it is rewritten and renamed over (compact:
 * written without the lock, the last records copied and the rename under
 * it); a process holding the old one sees it unlinked (st_nlink 0) and
 * reads the new one.
 * Nothing read is trusted: a record whose checksum, magic, type or length
 * is wrong is skipped, and a store whose log had such a record is scanned
 * once for chunk files the log lost.
 */
#define LOG_MAGIC 0x314c4857u /* "WHL1" */
#define REC_SIZE 128
#define NAME_MAGIC "WHNAM01\n"
#define NAME_PATH_MAX 4095
#define REF_COST 4096 /* the least an entry counts against the limit */
#define NAME_GRACE 3600 /* an unreferenced name file kept this long (s) */
#define NONE UINT32_MAX
#define NCAND 8
#define NNAMES 16
#define NPIN 64 /* chunks being read at once, kept from eviction */
/* a chunk file's whole blocks are copied to an aligned buffer and written
 * from it in pieces of BOUNCE_LEN; buffers kept for the next ones: as many
 * as the fetch workers that write at once */
#define NBOUNCE 8
#define BOUNCE_LEN (1024 * 1024)
#define DIRECT_ALIGN 4096
/* smaller chunk files are written through the page cache: a direct write
 * waits for the disk, and for a few pages that wait is all it saves */
#define DIRECT_MIN (64 * 1024)
#define NZERO 1024 /* name files whose last reference went, to delete */
#define EVICT_BATCH 64 /* entries evicted per hold of the locks */
#define EVICT_GAP_MS 50 /* between two runs of the eviction thread */
#define SWEEP_GAP_MS 1000 /* between two steps of the sweep */
#define NSWEEP 256 /* files looked up per hold of the lock in a sweep */

enum { R_DATA = 1, R_REF = 2, R_DEL = 3 };

struct rec {
	uint32_t magic;
	uint8_t type, deltype, pad0[2];
	uint32_t len, pad1;
	uint8_t hash[WH_HASH_LEN];
	uint64_t offset, dev, ino, size;
	uint8_t name[16];
	uint8_t pad2[24];
	uint64_t sum;
};
_Static_assert(sizeof(struct rec) == REC_SIZE, "a record is 128 bytes");

struct ent {
	uint8_t hash[WH_HASH_LEN];
	uint8_t name[16];
	uint64_t offset, dev, ino, size;
	uint32_t len, next; /* next: an older entry of the same hash */
	uint8_t type;
	bool live;
};

/* the live references naming one name file */
struct nref {
	uint8_t id[16];
	uint32_t refs;
	bool used;
};

/* a parsed name file, kept: its content is named by its hash */
struct name {
	uint8_t id[16];
	bool used;
	uint64_t btime;
	char *path, *alt;
};

/* the index of a log: its entries in log order, the newest per hash, the
 * live references per name file */
struct idx {
	struct ent *ents;     /* in log order */
	uint32_t n, cap, cursor; /* cursor: no live entry before it */
	uint32_t *tab;        /* newest entry per hash, open addressing */
	uint32_t tabsize, tabused, live;
	uint64_t total; /* the live entries' cost, and their name files' */
	struct nref *ntab; /* name file -> live references, open addressing */
	uint32_t ntabsize, ntabused;
	/* the store whose list of name files to delete a reference's death
	 * feeds (NULL: an index being built by a compaction, whose deaths
	 * the store's own index sees too) */
	struct wh_store *own;
};

struct wh_store {
	char *dir;  /* .../chunks */
	char *logp; /* .../chunks.log */
	char *names; /* .../chunk-names */
	uint64_t limit;
	pthread_mutex_t lock; /* everything below */
	unsigned long corrupt, seq, bad;
	int fd;               /* the log */
	uint64_t read_off;    /* the log read up to here */
	unsigned long gen;    /* bumped when the index is replaced */
	struct idx ix;
	/* name files whose last live reference went: deleted at the next
	 * eviction (under the exclusive flock) if still unreferenced */
	uint8_t zero[NZERO][16];
	uint32_t nzero;
	bool zero_lost; /* the list overflowed: chunk-names/ is walked */
	bool names_due; /* walk chunk-names/ (scan_names) after this run */
	bool compacting;
	/* chunks being read (wh_store_get_at between its look-up and its
	 * read): eviction appends them again instead */
	struct {
		uint8_t hash[WH_HASH_LEN];
		unsigned n;
	} pin[NPIN];
	unsigned npin;
	/* chunks being written (wh_store_put after its record) */
	struct {
		uint8_t hash[WH_HASH_LEN];
		bool used;
	} fly[NPIN];
	pthread_cond_t fly_cond;
	/* eviction while the store is open: a thread started the first time
	 * the store passes its limit (or its log wants compacting) */
	pthread_t ev_thread;
	pthread_cond_t ev_cond;
	bool ev_started, ev_want, ev_stop, ev_busy;
	/* the sweep of chunks/ for files the log does not name: one of its
	 * 256 subdirectories at a time, on the eviction thread, at most
	 * every SWEEP_GAP_MS while the store is written */
	bool sweep_want;
	unsigned sweep_next;
	uint64_t sweep_at;
	uint64_t ev_last; /* when its last run ended (ms, monotonic) */
	unsigned long evictions; /* runs of the eviction thread */
	struct name nm[NNAMES];
	unsigned nm_next;
	/* the file of the last reference written, and its name file */
	char *last_path, *last_alt;
	uint64_t last_dev, last_ino, last_size, last_v[4];
	uint8_t last_name[16];
	/* chunk files are written with O_DIRECT from an aligned copy of
	 * their bytes (write_direct) until the file system refuses it */
	atomic_bool buffered;
	pthread_mutex_t bounce_lock; /* the spare buffers below */
	uint8_t *bounce[NBOUNCE];
	unsigned nbounce;
};

int (*wh_store_test_hook)(struct wh_store *s, const char *what,
			  const uint8_t *hash);

char *wh_store_default_dir(void)
{
	return wh_cache_home(NULL);
}

static uint64_t rec_sum(const struct rec *r)
{
	const uint8_t *p = (const uint8_t *)r;
	uint64_t h = 0x9e3779b97f4a7c15ull, w;

	for (size_t i = 0; i < offsetof(struct rec, sum); i += 8) {
		memcpy(&w, p + i, 8);
		h ^= w;
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 29;
	}
	return h;
}

static void hex_n(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static void chunk_path(struct wh_store *s, const uint8_t *hash, char *buf,
		       size_t size)
{
	char hex[65];

	wh_hash_hex(hash, hex);
	snprintf(buf, size, "%s/%.2s/%s", s->dir, hex, hex);
}

static void name_path(struct wh_store *s, const uint8_t *id, char *buf,
		      size_t size)
{
	char hex[33];

	hex_n(id, 16, hex);
	snprintf(buf, size, "%s/%s", s->names, hex);
}

static uint64_t cost(const struct ent *e)
{
	if (e->type == R_DATA)
		return ((uint64_t)e->len + REF_COST - 1) / REF_COST * REF_COST;
	return REF_COST;
}

static uint32_t slot0(const struct idx *x, const uint8_t *hash)
{
	uint64_t k;

	memcpy(&k, hash, 8);
	return (uint32_t)(k & (x->tabsize - 1));
}

/* tab_find - the slot of |hash| in the table, or the empty one it takes */
static uint32_t tab_find(const struct idx *x, const uint8_t *hash)
{
	uint32_t i = slot0(x, hash);

	while (x->tab[i] != NONE &&
	       memcmp(x->ents[x->tab[i]].hash, hash, WH_HASH_LEN) != 0)
		i = (i + 1) & (x->tabsize - 1);
	return i;
}

static int tab_grow(struct idx *x)
{
	uint32_t size = x->tabsize ? x->tabsize * 2 : 1024;
	uint32_t *old = x->tab, oldsize = x->tabsize;

	x->tab = malloc((size_t)size * sizeof(*x->tab));
	if (!x->tab) {
		x->tab = old;
		return -ENOMEM;
	}
	memset(x->tab, 0xff, (size_t)size * sizeof(*x->tab));
	x->tabsize = size;
	for (uint32_t i = 0; i < oldsize; i++)
		if (old[i] != NONE)
			x->tab[tab_find(x, x->ents[old[i]].hash)] = old[i];
	free(old);
	return 0;
}

static bool same_key(const struct ent *e, uint8_t type, const uint8_t *name,
		     uint64_t offset)
{
	return e->type == type &&
	       (type == R_DATA ||
		(e->offset == offset && memcmp(e->name, name, 16) == 0));
}

static uint32_t ntab_find(const struct idx *x, const uint8_t *id)
{
	uint64_t k;
	uint32_t i;

	memcpy(&k, id, 8);
	i = (uint32_t)(k & (x->ntabsize - 1));
	while (x->ntab[i].used && memcmp(x->ntab[i].id, id, 16) != 0)
		i = (i + 1) & (x->ntabsize - 1);
	return i;
}

static int ntab_grow(struct idx *x)
{
	uint32_t size = x->ntabsize ? x->ntabsize * 2 : 256;
	struct nref *old = x->ntab;
	uint32_t oldsize = x->ntabsize;

	x->ntab = wh_zalloc(size, sizeof(*x->ntab)); /* read first */
	if (!x->ntab) {
		x->ntab = old;
		return -ENOMEM;
	}
	x->ntabsize = size;
	for (uint32_t i = 0; i < oldsize; i++)
		if (old[i].used)
			x->ntab[ntab_find(x, old[i].id)] = old[i];
	free(old);
	return 0;
}

/* name_refs - how many live references name the name file |id| */
static uint32_t name_refs(const struct idx *x, const uint8_t *id)
{
	uint32_t i;

	if (!x->ntabsize)
		return 0;
	i = ntab_find(x, id);
	return x->ntab[i].used ? x->ntab[i].refs : 0;
}

/* name_ref - one more live reference (|d| > 0) or one fewer names |id|.
 * A name file counts one block against the limit while it is named;
 * one whose last reference went is noted for deletion. */
static void name_ref(struct idx *x, const uint8_t *id, int d)
{
	uint32_t i;

	if (d > 0 && (x->ntabused + 1) * 2 > x->ntabsize &&
	    ntab_grow(x) < 0 && x->ntabused + 1 >= x->ntabsize)
		return; /* out of memory: not counted */
	if (!x->ntabsize)
		return;
	i = ntab_find(x, id);
	if (d > 0) {
		if (!x->ntab[i].used) {
			memcpy(x->ntab[i].id, id, 16);
			x->ntab[i].used = true;
			x->ntabused++;
		}
		if (x->ntab[i].refs++ == 0)
			x->total += REF_COST;
		return;
	}
	if (!x->ntab[i].used || x->ntab[i].refs == 0)
		return;
	if (--x->ntab[i].refs > 0)
		return;
	x->total -= REF_COST;
	if (!x->own)
		return;
	if (x->own->nzero < NZERO)
		memcpy(x->own->zero[x->own->nzero++], id, 16);
	else
		x->own->zero_lost = true;
}

/* ent_live, ent_dead - entry |e| becomes live, or is no longer */
static void ent_live(struct idx *x, struct ent *e)
{
	e->live = true;
	x->live++;
	x->total += cost(e);
	if (e->type == R_REF)
		name_ref(x, e->name, 1);
}

static void ent_dead(struct idx *x, struct ent *e)
{
	e->live = false;
	x->live--;
	x->total -= cost(e);
	if (e->type == R_REF)
		name_ref(x, e->name, -1);
}

/* kill_key - the live entry of this key (if any) is no longer */
static void kill_key(struct idx *x, uint32_t head, uint8_t type,
		     const uint8_t *name, uint64_t offset)
{
	for (uint32_t i = head; i != NONE; i = x->ents[i].next) {
		struct ent *e = &x->ents[i];

		if (e->live && same_key(e, type, name, offset)) {
			ent_dead(x, e);
			return;
		}
	}
}

/* rec_ok - a record that parses (checked, never trusted further) */
static bool rec_ok(const struct rec *r)
{
	if (r->magic != LOG_MAGIC || r->sum != rec_sum(r))
		return false;
	if (r->type == R_DEL)
		return r->deltype == R_DATA || r->deltype == R_REF;
	if (r->type != R_DATA && r->type != R_REF)
		return false;
	return r->len > 0 && r->len <= WH_CDC_MAX;
}

/* apply - one slot of the log; false if it is not a record */
static bool apply(struct idx *x, const struct rec *r)
{
	uint32_t t, i;
	struct ent *e;

	if (!rec_ok(r))
		return false;
	if ((x->tabused + 1) * 2 > x->tabsize && tab_grow(x) < 0)
		return true; /* out of memory: forgotten, not wrong */
	t = tab_find(x, r->hash);
	if (r->type == R_DEL) {
		if (x->tab[t] != NONE)
			kill_key(x, x->tab[t], r->deltype, r->name, r->offset);
		return true;
	}
	if (x->n == x->cap) {
		uint32_t ncap = x->cap ? x->cap * 2 : 1024;
		struct ent *ne = realloc(x->ents, (size_t)ncap * sizeof(*ne));

		if (!ne)
			return true;
		x->ents = ne;
		x->cap = ncap;
	}
	if (x->tab[t] != NONE)
		kill_key(x, x->tab[t], r->type, r->name, r->offset);
	i = x->n++;
	e = &x->ents[i];
	memcpy(e->hash, r->hash, WH_HASH_LEN);
	memcpy(e->name, r->name, 16);
	e->offset = r->offset;
	e->dev = r->dev;
	e->ino = r->ino;
	e->size = r->size;
	e->len = r->len;
	e->type = r->type;
	e->next = x->tab[t];
	if (x->tab[t] == NONE)
		x->tabused++;
	x->tab[t] = i;
	ent_live(x, e);
	return true;
}

int wh_store_apply_log(struct wh_store *s, const uint8_t *buf, size_t len)
{
	int bad = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t off = 0; off + REC_SIZE <= len; off += REC_SIZE) {
		struct rec r;

		memcpy(&r, buf + off, REC_SIZE);
		if (!apply(&s->ix, &r))
			bad++;
	}
	s->bad += (unsigned long)bad;
	pthread_mutex_unlock(&s->lock);
	return bad;
}

void wh_store_seal_record(uint8_t rec[128])
{
	struct rec r;

	memcpy(&r, rec, sizeof(r));
	r.magic = LOG_MAGIC;
	r.sum = rec_sum(&r);
	memcpy(rec, &r, sizeof(r));
}

static void index_reset(struct idx *x)
{
	free(x->ents);
	free(x->tab);
	free(x->ntab);
	x->ents = NULL;
	x->tab = NULL;
	x->ntab = NULL;
	x->ntabsize = x->ntabused = 0;
	x->n = x->cap = x->cursor = x->tabsize = x->tabused = x->live = 0;
	x->total = 0;
}

/* reserve - room for |n| records read into an empty index, so that the
 * table is not rehashed as a whole log is read (a failure is no error:
 * apply grows them as it goes) */
static void reserve(struct idx *x, uint64_t n)
{
	uint32_t cap = 1024, size = 1024;
	struct ent *ne;
	uint32_t *nt;

	if (n > (1u << 26))
		n = 1u << 26;
	while (cap < n)
		cap *= 2;
	while (size < 2 * n + 2)
		size *= 2;
	if (cap > x->cap && (ne = realloc(x->ents, (size_t)cap * sizeof(*ne)))) {
		x->ents = ne;
		x->cap = cap;
	}
	if (size > x->tabsize && x->tabused == 0 &&
	    (nt = malloc((size_t)size * sizeof(*nt)))) {
		memset(nt, 0xff, (size_t)size * sizeof(*nt));
		free(x->tab);
		x->tab = nt;
		x->tabsize = size;
	}
}

/* read_new - apply the slots past read_off, under a shared lock (a writer
 * holds an exclusive one while it writes) unless the caller holds the
 * exclusive one (|locked|); with s->lock held */
static void read_new(struct wh_store *s, uint64_t size, bool locked)
{
	static const size_t BLK = 64 * REC_SIZE;
	uint8_t buf[64 * REC_SIZE];

	if (size / REC_SIZE * REC_SIZE <= s->read_off)
		return;
	if (s->ix.n == 0)
		reserve(&s->ix, size / REC_SIZE);
	if (!locked)
		flock(s->fd, LOCK_SH);
	for (;;) {
		ssize_t got = pread(s->fd, buf, BLK, (off_t)s->read_off);
		size_t whole;

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		whole = (size_t)got / REC_SIZE * REC_SIZE;
		if (whole == 0)
			break; /* a record still being written, or torn */
		for (size_t off = 0; off < whole; off += REC_SIZE) {
			struct rec r;

			memcpy(&r, buf + off, REC_SIZE);
			if (!apply(&s->ix, &r))
				s->bad++;
		}
		s->read_off += whole;
	}
	if (!locked)
		flock(s->fd, LOCK_UN);
}

static int log_open(struct wh_store *s)
{
	int fd = open(s->logp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = fd;
	index_reset(&s->ix);
	s->read_off = 0;
	s->gen++;
	return 0;
}

/* catch_up - the index knows every record in the log; with s->lock held.
 * One fstat when nothing is new. */
static void catch_up(struct wh_store *s)
{
	struct stat st;

	if (fstat(s->fd, &st) != 0)
		return;
	if (st.st_nlink == 0) { /* rewritten: read the new one */
		if (log_open(s) < 0 || fstat(s->fd, &st) != 0)
			return;
	}
	read_new(s, (uint64_t)st.st_size, false);
}

static void rec_fill(struct rec *r, const struct ent *e, uint8_t type)
{
	memset(r, 0, sizeof(*r));
	r->magic = LOG_MAGIC;
	r->type = type;
	memcpy(r->hash, e->hash, WH_HASH_LEN);
	memcpy(r->name, e->name, 16);
	r->offset = e->offset;
	r->dev = e->dev;
	r->ino = e->ino;
	r->size = e->size;
	r->len = e->len;
	if (type == R_DEL) {
		r->deltype = e->type;
		r->len = 0;
	}
	r->sum = rec_sum(r);
}

/* write_at - |n| records at |*at| (then past them); the caller holds
 * s->lock and the exclusive flock on s->fd, which is the current log */
static int write_at(struct wh_store *s, const struct rec *r, size_t n,
		    uint64_t *at)
{
	size_t len = n * REC_SIZE, done = 0;

	while (done < len) {
		ssize_t w = pwrite(s->fd, (const uint8_t *)r + done, len - done,
				   (off_t)(*at + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* a torn slot, if any, skipped: the next record
			 * goes at a boundary */
			*at = (*at + done + REC_SIZE - 1) / REC_SIZE * REC_SIZE;
			return w < 0 ? -errno : -EIO;
		}
		done += (size_t)w;
	}
	*at += len;
	return 0;
}

/* lock_log - the exclusive flock on the current log, every record in it
 * read; in |*end| where the next record goes (a torn last slot, if any,
 * skipped).  With s->lock held. */
static int lock_log(struct wh_store *s, uint64_t *end)
{
	for (int tries = 0; tries < 8; tries++) {
		struct stat st;

		if (flock(s->fd, LOCK_EX) != 0)
			return -errno;
		if (fstat(s->fd, &st) != 0) {
			flock(s->fd, LOCK_UN);
			return -errno;
		}
		if (st.st_nlink > 0) {
			read_new(s, (uint64_t)st.st_size, true);
			*end = ((uint64_t)st.st_size + REC_SIZE - 1) /
			       REC_SIZE * REC_SIZE;
			return 0;
		}
		flock(s->fd, LOCK_UN);
		if (log_open(s) < 0)
			return -EIO;
	}
	return -EAGAIN;
}

/* log_end - the records up to |end| are known (those written under the
 * lock were applied as written; a torn slot counts as a bad one) */
static void log_end(struct wh_store *s, uint64_t end)
{
	if (end > s->read_off) {
		s->bad += (unsigned long)((end - s->read_off + REC_SIZE - 1) /
					  REC_SIZE);
		s->read_off = end;
	}
}

/* append_locked - one record at |*at|, into the log and the index; with
 * s->lock and the exclusive flock held (lock_log) */
static int append_locked(struct wh_store *s, const struct ent *e,
			 uint8_t type, uint64_t *at)
{
	struct rec r;
	int rv;

	rec_fill(&r, e, type);
	log_end(s, *at);
	rv = write_at(s, &r, 1, at);
	if (rv == 0) {
		apply(&s->ix, &r);
		s->read_off = *at;
	}
	return rv;
}

static void maybe_evict(struct wh_store *s);
static void maybe_sweep(struct wh_store *s);
static bool evict_batch(struct wh_store *s, uint64_t target);

/* keep_up - a writer that finds the store past twice its limit (the
 * eviction thread is behind) evicts a batch itself, so the store stays
 * within twice its limit however the threads are scheduled; with s->lock
 * held */
static void keep_up(struct wh_store *s)
{
	if (s->limit < UINT64_MAX / 2 &&
	    s->ix.total + (uint64_t)s->ix.live * REC_SIZE > 2 * s->limit)
		evict_batch(s, s->limit);
}

/* append - one record, into the log and the index; with s->lock held.
 * Costs an flock, an fstat and a pwrite (and the records others wrote
 * since, if any). */
static int append(struct wh_store *s, const struct ent *e, uint8_t type)
{
	uint64_t at;
	int rv = lock_log(s, &at);

	if (rv < 0)
		return rv;
	rv = append_locked(s, e, type, &at);
	flock(s->fd, LOCK_UN);
	if (rv == 0) {
		maybe_evict(s);
		maybe_sweep(s);
	}
	return rv;
}

static void scan_files(struct wh_store *s);
static uint64_t now_ms(void);

int wh_store_open(const char *dir, uint64_t limit, struct wh_store **ps)
{
	struct wh_store *s = calloc(1, sizeof(*s));
	char buf[4096];
	struct stat st;
	bool fresh;
	int rv;

	if (!s)
		return -ENOMEM;
	s->fd = -1;
	s->ix.own = s;
	snprintf(buf, sizeof(buf), "%s/chunks", dir);
	rv = wh_mkdirs(buf);
	if (rv == 0)
		s->dir = strdup(buf);
	snprintf(buf, sizeof(buf), "%s/chunk-names", dir);
	if (rv == 0)
		rv = wh_mkdirs(buf);
	if (rv == 0)
		s->names = strdup(buf);
	snprintf(buf, sizeof(buf), "%s/chunks.log", dir);
	s->logp = strdup(buf);
	if (rv == 0 && (!s->dir || !s->names || !s->logp))
		rv = -ENOMEM;
	fresh = stat(buf, &st) != 0;
	if (rv == 0)
		rv = log_open(s);
	if (rv < 0) {
		free(s->dir);
		free(s->names);
		free(s->logp);
		free(s);
		return rv;
	}
	s->limit = limit;
	s->sweep_next = ((unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL)) & 255;
	s->sweep_at = now_ms() + SWEEP_GAP_MS;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->bounce_lock, NULL);
	pthread_cond_init(&s->ev_cond, NULL);
	pthread_cond_init(&s->fly_cond, NULL);
	pthread_mutex_lock(&s->lock);
	catch_up(s);
	pthread_mutex_unlock(&s->lock);
	/* a store of the older layout (no log), or a log that lost records:
	 * find the chunk files it does not name */
	if (fresh || s->bad)
		scan_files(s);
	*ps = s;
	return 0;
}

static void name_free(struct name *n)
{
	free(n->path);
	free(n->alt);
	memset(n, 0, sizeof(*n));
}

/* name_id - what names a file's names and identity */
static void name_id(const char *path, const char *alt,
		    const uint64_t ident[4], uint8_t id[16])
{
	size_t plen = strlen(path), alen = alt ? strlen(alt) : 0;
	uint8_t *b = malloc(plen + alen + 34), h[WH_HASH_LEN];

	if (!b) {
		memset(id, 0, 16);
		return;
	}
	memcpy(b, ident, 32);
	memcpy(b + 32, path, plen + 1);
	if (alen)
		memcpy(b + 33 + plen, alt, alen);
	b[33 + plen + alen] = '\0';
	wh_blake3(b, plen + alen + 34, h);
	free(b);
	memcpy(id, h, 16);
}

/*
 * A name file: magic, then dev, ino, size and birth time (u64: ns, 0 if
 * the file system keeps none; it tells a file from a later one that got
 * the same inode number), plen, alen (u16), the
 * path and the other name (no NULs).  It is named by name_id of what it
 * holds, so one that does not parse or does not hash to its name is
 * ignored (and deleted).
 */
int wh_store_parse_name(const uint8_t *buf, size_t n, const uint8_t id[16],
			char **path, char **alt, uint64_t ident[4])
{
	uint16_t plen, alen;
	uint8_t got[16];
	size_t hdr = 8 + 32 + 4;

	if (n < hdr || memcmp(buf, NAME_MAGIC, 8) != 0)
		return -EINVAL;
	memcpy(ident, buf + 8, 32);
	memcpy(&plen, buf + 40, 2);
	memcpy(&alen, buf + 42, 2);
	if (plen == 0 || plen > NAME_PATH_MAX || alen > NAME_PATH_MAX ||
	    n != hdr + plen + alen || buf[hdr] != '/' ||
	    (alen && buf[hdr + plen] != '/') ||
	    memchr(buf + hdr, '\0', (size_t)plen + alen))
		return -EINVAL;
	*path = strndup((const char *)buf + hdr, plen);
	*alt = strndup((const char *)buf + hdr + plen, alen);
	if (!*path || !*alt) {
		free(*path);
		free(*alt);
		return -ENOMEM;
	}
	name_id(*path, alen ? *alt : NULL, ident, got);
	if (memcmp(got, id, 16) != 0) {
		free(*path);
		free(*alt);
		return -EINVAL;
	}
	return 0;
}

/* name_get - the names of |id| into |p| and |a| (a may be ""); false if
 * the name file is gone or bad.  Without s->lock. */
static bool name_get(struct wh_store *s, const uint8_t *id, char *p,
		     char *a, uint64_t *btime)
{
	uint8_t buf[44 + 2 * NAME_PATH_MAX + 1];
	char np[4200], *path, *alt;
	uint64_t ident[4];
	ssize_t got;
	int fd;
	struct name *slot;

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < NNAMES; i++)
		if (s->nm[i].used && memcmp(s->nm[i].id, id, 16) == 0) {
			strcpy(p, s->nm[i].path);
			strcpy(a, s->nm[i].alt);
			*btime = s->nm[i].btime;
			pthread_mutex_unlock(&s->lock);
			return true;
		}
	pthread_mutex_unlock(&s->lock);
	name_path(s, id, np, sizeof(np));
	fd = open(np, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	got = read(fd, buf, sizeof(buf));
	close(fd);
	if (got < 0 || wh_store_parse_name(buf, (size_t)got, id, &path, &alt,
					   ident) < 0) {
		unlink(np);
		return false;
	}
	strcpy(p, path);
	strcpy(a, alt);
	*btime = ident[3];
	pthread_mutex_lock(&s->lock);
	slot = &s->nm[s->nm_next++ % NNAMES];
	name_free(slot);
	memcpy(slot->id, id, 16);
	slot->path = path;
	slot->alt = alt;
	slot->btime = ident[3];
	slot->used = true;
	pthread_mutex_unlock(&s->lock);
	return true;
}

/* birth - the birth time (ns) of |path| (relative to |fd|), 0 if the file
 * system keeps none */
static uint64_t birth(int fd, const char *path)
{
	struct statx sx;

	if (statx(fd, path, path[0] ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH,
		  STATX_BTIME, &sx) != 0 ||
	    !(sx.stx_mask & STATX_BTIME))
		return 0;
	return (uint64_t)sx.stx_btime.tv_sec * 1000000000u +
	       sx.stx_btime.tv_nsec;
}

/* ref_open - the file reference |e| describes, open for reading, or -1:
 * no name opens a regular file of its identity */
static int ref_open(struct wh_store *s, const struct ent *e)
{
	static _Thread_local char name[2][NAME_PATH_MAX + 1];
	uint64_t btime;

	if (!name_get(s, e->name, name[0], name[1], &btime))
		return -1;
	for (int i = 0; i < 2; i++) {
		struct stat st;
		int fd;

		if (name[i][0] == '\0')
			continue;
		fd = open(name[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
					   O_NONBLOCK);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_dev == e->dev &&
		    (uint64_t)st.st_ino == e->ino &&
		    (uint64_t)st.st_size == e->size && birth(fd, "") == btime)
			return fd;
		close(fd);
	}
	return -1;
}

/* try_ent - chunk |e| into |buf|, verified: 0, or -ENOENT (it no longer
 * holds), or 1 (corrupt) */
static int try_ent(struct wh_store *s, const struct ent *e, uint8_t *buf,
		   size_t len)
{
	uint8_t h[WH_HASH_LEN];
	char path[4200];
	struct stat st;
	int fd;

	if (e->type == R_DATA) {
		chunk_path(s, e->hash, path, sizeof(path));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -ENOENT;
		if (fstat(fd, &st) != 0 || (size_t)st.st_size != len ||
		    wh_io_pread(wh_io_thread(), fd, buf, len, 0) !=
			    (ssize_t)len) {
			close(fd);
			unlink(path);
			return 1;
		}
		close(fd);
		wh_blake3(buf, len, h);
		if (memcmp(h, e->hash, WH_HASH_LEN) != 0) {
			unlink(path);
			wh_warn("chunk store: %s was corrupt and is discarded",
				path);
			return 1;
		}
		return 0;
	}
	fd = ref_open(s, e);
	if (fd < 0)
		return -ENOENT;
	if (e->offset > e->size || len > e->size - e->offset ||
	    wh_io_pread(wh_io_thread(), fd, buf, len, (off_t)e->offset) !=
		    (ssize_t)len) {
		close(fd);
		return -ENOENT;
	}
	close(fd);
	wh_blake3(buf, len, h);
	if (memcmp(h, e->hash, WH_HASH_LEN) != 0) {
		wh_warn("chunk store: the bytes a reference names changed; "
			"it is discarded");
		return 1;
	}
	return 0;
}

/* candidates - the live entries of |hash| and |len|: a stored chunk
 * first, then references newest first; with s->lock held */
static int candidates(struct wh_store *s, const uint8_t *hash, size_t len,
		      struct ent *c, uint32_t *idx)
{
	int n = 0;
	uint32_t t;

	if (!s->ix.tabsize)
		return 0;
	t = tab_find(&s->ix, hash);
	for (uint32_t i = s->ix.tab[t]; i != NONE && n < NCAND;
	     i = s->ix.ents[i].next) {
		const struct ent *e = &s->ix.ents[i];

		if (!e->live || e->len != len)
			continue;
		if (e->type == R_DATA && n > 0) {
			c[n] = c[0];
			idx[n] = idx[0];
			c[0] = *e;
			idx[0] = i;
		} else {
			c[n] = *e;
			idx[n] = i;
		}
		n++;
	}
	return n;
}

/* pin, unpin - chunk |hash| is being read (with s->lock held): an
 * eviction meeting it appends it again rather than deleting it.  -1 when
 * every slot is taken (not pinned: a read that loses its chunk fetches it
 * again). */
static int pin(struct wh_store *s, const uint8_t *hash)
{
	int free_slot = -1;

	for (int i = 0; i < NPIN; i++) {
		if (s->pin[i].n == 0) {
			if (free_slot < 0)
				free_slot = i;
		} else if (memcmp(s->pin[i].hash, hash, WH_HASH_LEN) == 0) {
			s->pin[i].n++;
			s->npin++;
			return i;
		}
	}
	if (free_slot >= 0) {
		memcpy(s->pin[free_slot].hash, hash, WH_HASH_LEN);
		s->pin[free_slot].n = 1;
		s->npin++;
	}
	return free_slot;
}

static void unpin(struct wh_store *s, int slot)
{
	if (slot < 0)
		return;
	s->pin[slot].n--;
	s->npin--;
}

static bool pinned(const struct wh_store *s, const uint8_t *hash)
{
	for (int i = 0; i < NPIN; i++)
		if (s->pin[i].n &&
		    memcmp(s->pin[i].hash, hash, WH_HASH_LEN) == 0)
			return true;
	return false;
}

/* lookup - candidates() after reading what other processes appended to
 * the log, the chunk pinned in |*slot| if |slot| and there are some; the
 * lock is not held on return. */
static int lookup(struct wh_store *s, const uint8_t *hash, size_t len,
		  struct ent *c, uint32_t *idx, int *slot)
{
	int n;

	pthread_mutex_lock(&s->lock);
	catch_up(s);
	n = candidates(s, hash, len, c, idx);
	if (slot)
		*slot = n > 0 ? pin(s, hash) : -1;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/*
 * adopt - a chunk file of |hash| and |len| that the log does not name
 * (one an older binary, which kept no log, wrote into a shared store) is
 * entered in the log, so that it is used, counted and evicted.  False if
 * there is none.  Costs a stat when there is none.
 */
static bool adopt(struct wh_store *s, const uint8_t *hash, size_t len)
{
	char path[4200];
	struct stat st;
	struct ent e, c[NCAND];
	uint32_t idx[NCAND];
	uint64_t at;
	bool done = false;

	chunk_path(s, hash, path, sizeof(path));
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != len)
		return false;
	memset(&e, 0, sizeof(e));
	memcpy(e.hash, hash, WH_HASH_LEN);
	e.type = R_DATA;
	e.len = (uint32_t)len;
	pthread_mutex_lock(&s->lock);
	if (lock_log(s, &at) == 0) {
		int n = candidates(s, hash, len, c, idx);

		/* again under the lock: an eviction may have just taken it */
		if ((n > 0 && c[0].type == R_DATA) ||
		    (stat(path, &st) == 0 && (uint64_t)st.st_size == len &&
		     append_locked(s, &e, R_DATA, &at) == 0))
			done = true;
		flock(s->fd, LOCK_UN);
		if (done)
			maybe_evict(s);
	}
	pthread_mutex_unlock(&s->lock);
	return done;
}

int wh_store_get_at(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		    uint8_t *buf, size_t len, struct wh_store_loc *loc)
{
	struct ent c[NCAND];
	uint32_t idx[NCAND];
	int n, slot;

	n = lookup(s, hash, len, c, idx, &slot);
	if (n == 0 && len > 0 && len <= WH_CDC_MAX && adopt(s, hash, len))
		n = lookup(s, hash, len, c, idx, &slot);
	for (int i = 0; i < n; i++) {
		int rv = try_ent(s, &c[i], buf, len);

		pthread_mutex_lock(&s->lock);
		if (rv == 0) {
			/* recently used: evicted last (appended again when
			 * in the older half of the log's entries) */
			if (idx[i] < s->ix.n && s->ix.ents[idx[i]].live &&
			    idx[i] < s->ix.cursor + (s->ix.n - s->ix.cursor) / 2)
				append(s, &c[i], c[i].type);
			unpin(s, slot);
			pthread_mutex_unlock(&s->lock);
			if (loc) {
				loc->dev = c[i].type == R_REF ? c[i].dev : 0;
				loc->ino = c[i].type == R_REF ? c[i].ino : 0;
				loc->offset =
					c[i].type == R_REF ? c[i].offset : 0;
			}
			return 0;
		}
		if (rv > 0)
			s->corrupt++;
		append(s, &c[i], R_DEL);
		pthread_mutex_unlock(&s->lock);
	}
	if (n > 0) {
		pthread_mutex_lock(&s->lock);
		unpin(s, slot);
		pthread_mutex_unlock(&s->lock);
	}
	return -ENOENT;
}

int wh_store_get(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 uint8_t *buf, size_t len)
{
	return wh_store_get_at(s, hash, buf, len, NULL);
}

bool wh_store_has(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		  size_t len)
{
	struct ent c[NCAND];
	uint32_t idx[NCAND];
	int n;

	n = lookup(s, hash, len, c, idx, NULL);
	if (n == 0 && len > 0 && len <= WH_CDC_MAX)
		return adopt(s, hash, len);
	return n > 0;
}

/* has_data - a live DATA entry of |hash| and |len|; with s->lock held */
static bool has_data(struct wh_store *s, const uint8_t *hash, uint32_t len)
{
	struct ent c[NCAND];
	uint32_t idx[NCAND];
	int n = candidates(s, hash, len, c, idx);

	return n > 0 && c[0].type == R_DATA;
}

/* bounce_take - an aligned buffer of BOUNCE_LEN bytes, or NULL */
static uint8_t *bounce_take(struct wh_store *s)
{
	uint8_t *p = NULL;

	pthread_mutex_lock(&s->bounce_lock);
	if (s->nbounce > 0)
		p = s->bounce[--s->nbounce];
	pthread_mutex_unlock(&s->bounce_lock);
	if (!p && posix_memalign((void **)&p, DIRECT_ALIGN, BOUNCE_LEN) != 0)
		return NULL;
	return p;
}

static void bounce_give(struct wh_store *s, uint8_t *p)
{
	pthread_mutex_lock(&s->bounce_lock);
	if (s->nbounce < NBOUNCE) {
		s->bounce[s->nbounce++] = p;
		p = NULL;
	}
	pthread_mutex_unlock(&s->bounce_lock);
	free(p);
}

/* write_all - |len| bytes of |buf| to |fd|: 0 or -errno */
static int write_all(int fd, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t w = write(fd, (const uint8_t *)buf + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		done += (size_t)w;
	}
	return 0;
}

/*
 * write_direct - a chunk's bytes into |fd|, opened with O_DIRECT: the
 * whole blocks from an aligned copy, straight to the disk, the last part
 * block through the page cache.  A stored chunk is read again only once
 * it has left the RAM cache and the kernel's cache of the file it came
 * from, so caching it a third time would only take memory from others;
 * and each page the page cache grows by costs more than the copy here,
 * most of all in a virtual machine (bench/README.md, "The store's
 * writes past the page cache").  A file system that refuses the direct
 * write (EINVAL) gets this chunk, from its start, and every later one
 * through the page cache.  0 or -errno.
 */
static int write_direct(struct wh_store *s, int fd, const uint8_t *data,
			size_t len)
{
	size_t whole = len & ~(size_t)(DIRECT_ALIGN - 1);
	uint8_t *b;
	int rv = 0;

	if (wh_store_test_hook && wh_store_test_hook(s, "direct", NULL) != 0) {
		rv = -EINVAL;
	} else if (whole > 0) {
		b = bounce_take(s);
		if (!b)
			return -ENOMEM;
		for (size_t off = 0; off < whole && rv == 0;) {
			size_t n = whole - off < BOUNCE_LEN ? whole - off
							    : BOUNCE_LEN;

			memcpy(b, data + off, n);
			rv = write_all(fd, b, n);
			off += n;
		}
		bounce_give(s, b);
	}
	if (rv == -EINVAL) {
		atomic_store(&s->buffered, true);
		if (lseek(fd, 0, SEEK_SET) != 0 || ftruncate(fd, 0) != 0)
			return -errno;
		whole = 0;
		rv = 0;
	}
	if (rv == 0 && whole < len) {
		if (fcntl(fd, F_SETFL, 0) != 0)
			return -errno;
		rv = write_all(fd, data + whole, len - whole);
	}
	return rv;
}

/* write_tmp - |len| bytes into a new temporary file beside |path|, its
 * name in |tmp| (gone again on failure); |chunk|: a chunk's bytes, which
 * write_direct writes */
static int write_tmp(struct wh_store *s, const char *path, const uint8_t *data,
		     size_t len, bool chunk, char tmp[4300])
{
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
	char sub[4200];
	unsigned long seq;
	int fd, rv;

	if (chunk && len >= DIRECT_MIN && !atomic_load(&s->buffered))
		flags |= O_DIRECT;
	seq = __atomic_add_fetch(&s->seq, 1, __ATOMIC_RELAXED);
	snprintf(tmp, 4300, "%s.%d.%lx.%lu.tmp", path, (int)getpid(),
		 (unsigned long)(uintptr_t)s & 0xffffff, seq);
	fd = open(tmp, flags, 0600);
	if (fd < 0 && errno == ENOENT) {
		snprintf(sub, sizeof(sub), "%s", path);
		*strrchr(sub, '/') = '\0';
		if (mkdir(sub, 0700) != 0 && errno != EEXIST)
			return -errno;
		fd = open(tmp, flags, 0600);
	}
	if (fd < 0 && errno == EINVAL && (flags & O_DIRECT)) {
		/* a file system without O_DIRECT (some refuse the open) */
		atomic_store(&s->buffered, true);
		flags &= ~O_DIRECT;
		fd = open(tmp, flags, 0600);
	}
	if (fd < 0)
		return -errno;
	/* plain writes: io_uring would hand them to a worker thread (see
	 * write_chunk in wh_get.c) */
	if (flags & O_DIRECT)
		rv = write_direct(s, fd, data, len);
	else
		rv = write_all(fd, data, len);
	if (close(fd) != 0 && rv == 0)
		rv = -errno;
	if (rv < 0)
		unlink(tmp);
	return rv;
}

/* write_entry - |len| bytes as the file |path|, through a temporary name
 * (a crash leaves the whole entry or none); replaces one there */
static int write_entry(struct wh_store *s, const char *path,
		       const uint8_t *data, size_t len)
{
	char tmp[4300];
	int rv = write_tmp(s, path, data, len, false, tmp);

	if (rv == 0 && rename(tmp, path) != 0) {
		rv = -errno;
		unlink(tmp);
	}
	return rv;
}

/* file_ok - the chunk file |path| is there, |len| bytes (a chunk file is
 * renamed into place whole; its bytes are verified when read) */
static bool file_ok(const char *path, size_t len)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	       (uint64_t)st.st_size == len;
}

/* flying, fly_add, fly_del - the chunks this process is writing (with
 * s->lock held): a second put of one waits for the first's outcome */
static bool flying(const struct wh_store *s, const uint8_t *hash)
{
	for (int i = 0; i < NPIN; i++)
		if (s->fly[i].used &&
		    memcmp(s->fly[i].hash, hash, WH_HASH_LEN) == 0)
			return true;
	return false;
}

static int fly_add(struct wh_store *s, const uint8_t *hash)
{
	for (int i = 0; i < NPIN; i++)
		if (!s->fly[i].used) {
			memcpy(s->fly[i].hash, hash, WH_HASH_LEN);
			s->fly[i].used = true;
			return i;
		}
	return -1; /* a second put then writes the chunk too */
}

static void fly_del(struct wh_store *s, int slot)
{
	if (slot < 0)
		return;
	s->fly[slot].used = false;
	pthread_cond_broadcast(&s->fly_cond);
}

/*
 * wh_store_put - the record first, then the file: a crash leaves a record
 * without its file, never a file the log does not name.  Success means
 * the bytes are on disk under their hash and the log names them:
 *  - a put of a chunk this process is writing waits for that write's
 *    outcome (and writes it itself if that failed);
 *  - a chunk the log names whose file is not there (another process is
 *    writing it, or it was lost) is written too, and renamed into place
 *    under the exclusive flock unless the file came meanwhile; a writer
 *    whose write failed appends its DEL under that lock only if no file
 *    came, so that one does not take away what the other stored;
 *  - a chunk whose record another process evicted while it was written
 *    (its file not there yet) is named again once its file is in place.
 */
int wh_store_put(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 const uint8_t *data, size_t len)
{
	struct ent e;
	char path[4200], tmp[4300];
	bool second = false;
	int rv = 0, slot, fslot;
	uint64_t at;

	if (len == 0 || len > WH_CDC_MAX)
		return -EINVAL;
	memset(&e, 0, sizeof(e));
	memcpy(e.hash, hash, WH_HASH_LEN);
	e.type = R_DATA;
	e.len = (uint32_t)len;
	chunk_path(s, hash, path, sizeof(path));
	pthread_mutex_lock(&s->lock);
	catch_up(s);
	while (has_data(s, hash, e.len)) {
		if (flying(s, hash)) {
			pthread_cond_wait(&s->fly_cond, &s->lock);
			catch_up(s);
			continue;
		}
		if (file_ok(path, len)) {
			pthread_mutex_unlock(&s->lock);
			return 0;
		}
		second = true;
		break;
	}
	/* pinned until the file is written, so that this process's
	 * eviction does not take the record first */
	slot = pin(s, hash);
	fslot = fly_add(s, hash);
	if (!second) {
		rv = append(s, &e, R_DATA);
		if (rv == 0)
			keep_up(s);
	}
	pthread_mutex_unlock(&s->lock);
	if (rv == 0 && wh_store_test_hook)
		rv = wh_store_test_hook(s, "write", hash);
	if (rv == 0)
		rv = write_tmp(s, path, data, len, true, tmp);
	if (rv == 0 && !second && rename(tmp, path) != 0) {
		rv = -errno;
		unlink(tmp);
	}
	pthread_mutex_lock(&s->lock);
	if (second) {
		/* renamed under the lock: the first writer, failing, sees the
		 * file or appends its DEL first (then this names it again) */
		if (rv == 0 && lock_log(s, &at) < 0) {
			unlink(tmp);
			rv = -EIO;
		} else if (rv == 0) {
			bool named = false;

			if (file_ok(path, len)) {
				unlink(tmp); /* the first writer's came */
			} else {
				if (!has_data(s, hash, e.len))
					named = append_locked(s, &e, R_DATA,
							      &at) == 0;
				if (rename(tmp, path) != 0) {
					rv = -errno;
					unlink(tmp);
					if (named)
						append_locked(s, &e, R_DEL, &at);
				}
			}
			if (rv == 0 && !has_data(s, hash, e.len))
				append_locked(s, &e, R_DATA, &at);
			flock(s->fd, LOCK_UN);
			maybe_evict(s);
		}
	} else if (rv == 0) {
		/* evicted by another process before the file was there (its
		 * eviction found none to delete): named again */
		catch_up(s);
		if (!has_data(s, hash, e.len) && lock_log(s, &at) == 0) {
			if (!has_data(s, hash, e.len) && file_ok(path, len))
				append_locked(s, &e, R_DATA, &at);
			flock(s->fd, LOCK_UN);
		}
	} else if (lock_log(s, &at) == 0) {
		/* failed: the record goes, unless another writer's file came */
		if (file_ok(path, len)) {
			rv = 0;
			if (!has_data(s, hash, e.len))
				append_locked(s, &e, R_DATA, &at);
		} else if (has_data(s, hash, e.len)) {
			append_locked(s, &e, R_DEL, &at);
		}
		flock(s->fd, LOCK_UN);
	}
	fly_del(s, fslot);
	unpin(s, slot);
	pthread_mutex_unlock(&s->lock);
	return rv;
}

/* name_put - the name file for |id|, written if it is not there (and its
 * time refreshed if it is: a compaction's walk keeps a recent one) */
static int name_put(struct wh_store *s, const uint8_t *id, const char *path,
		    const char *alt, const uint64_t v[4])
{
	size_t plen = strlen(path), alen = alt ? strlen(alt) : 0;
	uint8_t buf[44 + 2 * NAME_PATH_MAX];
	uint16_t l;
	char np[4200];

	name_path(s, id, np, sizeof(np));
	if (utimensat(AT_FDCWD, np, NULL, 0) == 0)
		return 0;
	memcpy(buf, NAME_MAGIC, 8);
	memcpy(buf + 8, v, 32);
	l = (uint16_t)plen;
	memcpy(buf + 40, &l, 2);
	l = (uint16_t)alen;
	memcpy(buf + 42, &l, 2);
	memcpy(buf + 44, path, plen);
	if (alen)
		memcpy(buf + 44 + plen, alt, alen);
	return write_entry(s, np, buf, 44 + plen + alen);
}

int wh_store_put_ref(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		     size_t len, const char *path, const char *alt,
		     const struct stat *st, uint64_t offset)
{
	size_t plen = strlen(path), alen = alt ? strlen(alt) : 0;
	struct ent c[NCAND], e;
	uint32_t idx[NCAND];
	uint64_t v[4], at;
	bool known;
	int n, rv;

	if (plen == 0 || plen > NAME_PATH_MAX || alen > NAME_PATH_MAX ||
	    path[0] != '/' || (alt && alt[0] != '/') || len == 0 ||
	    len > WH_CDC_MAX)
		return -EINVAL;
	memset(&e, 0, sizeof(e));
	memcpy(e.hash, hash, WH_HASH_LEN);
	e.type = R_REF;
	e.len = (uint32_t)len;
	e.offset = offset;
	e.dev = (uint64_t)st->st_dev;
	e.ino = (uint64_t)st->st_ino;
	e.size = (uint64_t)st->st_size;
	/* the file named as in the last call: its name is known */
	pthread_mutex_lock(&s->lock);
	known = s->last_path && s->last_dev == e.dev && s->last_ino == e.ino &&
		s->last_size == e.size && strcmp(s->last_path, path) == 0 &&
		strcmp(s->last_alt, alt ? alt : "") == 0;
	if (known) {
		memcpy(e.name, s->last_name, 16);
		memcpy(v, s->last_v, sizeof(v));
	}
	pthread_mutex_unlock(&s->lock);
	if (!known) {
		struct stat now;

		v[0] = e.dev;
		v[1] = e.ino;
		v[2] = e.size;
		v[3] = 0;
		/* which name it has now: the one whose inode it is */
		if (stat(path, &now) == 0 && (uint64_t)now.st_ino == e.ino &&
		    (uint64_t)now.st_dev == e.dev)
			v[3] = birth(AT_FDCWD, path);
		else if (alen)
			v[3] = birth(AT_FDCWD, alt);
		name_id(path, alen ? alt : NULL, v, e.name);
		pthread_mutex_lock(&s->lock);
		free(s->last_path);
		free(s->last_alt);
		s->last_path = strdup(path);
		s->last_alt = strdup(alt ? alt : "");
		if (!s->last_alt) {
			free(s->last_path);
			s->last_path = NULL;
		}
		s->last_dev = e.dev;
		s->last_ino = e.ino;
		s->last_size = e.size;
		memcpy(s->last_v, v, sizeof(v));
		memcpy(s->last_name, e.name, 16);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_lock(&s->lock);
	catch_up(s);
	n = candidates(s, hash, len, c, idx);
	for (int i = 0; i < n; i++)
		if (c[i].type == R_REF && same_key(&c[i], R_REF, e.name, offset) &&
		    c[i].dev == e.dev && c[i].ino == e.ino &&
		    c[i].size == e.size) {
			pthread_mutex_unlock(&s->lock);
			return 0; /* already there */
		}
	rv = lock_log(s, &at);
	if (rv == 0) {
		/* an eviction deletes a name file no live reference names,
		 * under the exclusive lock: under it, one that none names yet
		 * is made sure of, then named */
		if (name_refs(&s->ix, e.name) == 0)
			rv = name_put(s, e.name, path, alen ? alt : NULL, v);
		if (rv == 0)
			rv = append_locked(s, &e, R_REF, &at);
		flock(s->fd, LOCK_UN);
		if (rv == 0) {
			maybe_evict(s);
			keep_up(s);
		}
	}
	pthread_mutex_unlock(&s->lock);
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

static bool hex_parse(const char *h, uint8_t *out)
{
	if (strlen(h) != 2 * WH_HASH_LEN)
		return false;
	for (int i = 0; i < 2 * WH_HASH_LEN; i++) {
		int v = h[i] >= '0' && h[i] <= '9'   ? h[i] - '0'
			: h[i] >= 'a' && h[i] <= 'f' ? h[i] - 'a' + 10
						     : -1;

		if (v < 0)
			return false;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return true;
}


/* scan_files - add a DATA record for each chunk file the log does not
 * name, delete what crashes left (temporary files over an hour old, as
 * the sweep does: a younger one may be another process's put in progress;
 * references of the older layout).  Costs a walk of the store: only when
 * the log is new or was found damaged. */
static void scan_files(struct wh_store *s)
{
	DIR *top = opendir(s->dir);
	struct dirent *d;
	time_t now = time(NULL);

	if (!top)
		return;
	while ((d = readdir(top))) {
		char sub[4200];
		DIR *dd;
		struct dirent *f;

		if (d->d_name[0] == '.' || strlen(d->d_name) != 2)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", s->dir, d->d_name);
		dd = opendir(sub);
		if (!dd)
			continue;
		while ((f = readdir(dd))) {
			char p[4500];
			struct stat st;
			struct ent e;

			if (f->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", sub, f->d_name);
			if (!hex_parse(f->d_name, e.hash)) {
				if (strstr(f->d_name, ".ref") ||
				    (strstr(f->d_name, ".tmp") &&
				     lstat(p, &st) == 0 &&
				     st.st_mtime + NAME_GRACE < now))
					unlink(p);
				continue;
			}
			/* a chunk's name in another's subdirectory: not where
			 * the store looks for it (nor evicts it from), so no
			 * chunk of ours; entered, it would count and never go */
			if (memcmp(f->d_name, d->d_name, 2) != 0) {
				unlink(p);
				continue;
			}
			if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
				continue;
			if (st.st_size <= 0 || st.st_size > WH_CDC_MAX) {
				unlink(p);
				continue;
			}
			memset(e.name, 0, sizeof(e.name));
			e.offset = e.dev = e.ino = e.size = 0;
			e.len = (uint32_t)st.st_size;
			e.type = R_DATA;
			pthread_mutex_lock(&s->lock);
			if (!has_data(s, e.hash, e.len))
				append(s, &e, R_DATA);
			pthread_mutex_unlock(&s->lock);
		}
		closedir(dd);
	}
	closedir(top);
}

/* scan_names - delete the name files no live reference names (and not
 * written lately: a binary of an earlier version names its file before
 * the reference, outside the lock), and temporary ones a crash left.
 * Costs a walk of chunk-names/ (after a compaction, or when the list of
 * name files to delete overflowed), done without the store's lock: the
 * old enough files are collected NSCAN at a time, then looked up and
 * deleted under the lock and the exclusive flock, one hold per batch.
 * With s->lock held; drops it meanwhile. */
#define NSCAN 256
static void scan_names(struct wh_store *s)
{
	uint8_t (*ids)[16] = malloc(NSCAN * sizeof(*ids));
	time_t now = time(NULL);
	struct dirent *d;
	bool end = false;
	DIR *dd;

	s->names_due = false;
	s->zero_lost = false;
	if (!ids)
		return;
	pthread_mutex_unlock(&s->lock);
	dd = opendir(s->names);
	while (dd && !end) {
		unsigned nids = 0;
		uint64_t at;

		while (nids < NSCAN) {
			uint8_t id[16];
			char p[4500];
			struct stat st;
			bool ok = true;

			if (!(d = readdir(dd))) {
				end = true;
				break;
			}
			if (d->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", s->names, d->d_name);
			if (strstr(d->d_name, ".tmp")) {
				if (stat(p, &st) == 0 &&
				    st.st_mtime + NAME_GRACE < now)
					unlink(p);
				continue;
			}
			if (strlen(d->d_name) != 32)
				continue;
			for (int i = 0; i < 16 && ok; i++) {
				unsigned v;

				ok = sscanf(d->d_name + 2 * i, "%2x", &v) == 1;
				id[i] = (uint8_t)v;
			}
			if (ok && stat(p, &st) == 0 &&
			    st.st_mtime + NAME_GRACE < now)
				memcpy(ids[nids++], id, 16);
		}
		if (nids == 0)
			continue;
		pthread_mutex_lock(&s->lock);
		if (lock_log(s, &at) == 0) {
			for (unsigned i = 0; i < nids; i++) {
				char np[4200];
				struct stat st;

				name_path(s, ids[i], np, sizeof(np));
				/* again under the lock: a reference that names
				 * it makes sure of it (and its time) first */
				if (name_refs(&s->ix, ids[i]) == 0 &&
				    stat(np, &st) == 0 &&
				    st.st_mtime + NAME_GRACE < now)
					unlink(np);
			}
			flock(s->fd, LOCK_UN);
		}
		pthread_mutex_unlock(&s->lock);
	}
	if (dd)
		closedir(dd);
	free(ids);
	pthread_mutex_lock(&s->lock);
}

/* drop_names - delete the name files whose last live reference went, if
 * none names them again; with s->lock and the exclusive flock held, the
 * log read to its end (wh_store_put_ref makes sure of its name file under
 * that lock when no live reference names it) */
static void drop_names(struct wh_store *s)
{
	for (uint32_t i = 0; i < s->nzero; i++)
		if (name_refs(&s->ix, s->zero[i]) == 0) {
			char np[4200];

			name_path(s, s->zero[i], np, sizeof(np));
			unlink(np);
		}
	s->nzero = 0;
	if (s->zero_lost)
		s->names_due = true; /* scan_names, after this run */
}

#define CBATCH 256 /* records per hold of the lock while compacting */

/* copy_recs - the records of the log |fd| from |*from| to |to| (whole
 * slots; the ones that do not check are left out) onto the end of the
 * new log |tfd| (|*wrote| bytes so far) and into its index |nx| */
static int copy_recs(int fd, uint64_t *from, uint64_t to, int tfd,
		     uint64_t *wrote, struct idx *nx, struct rec *buf)
{
	while (*from + REC_SIZE <= to) {
		uint64_t want = (to - *from) / REC_SIZE;
		size_t nb = 0, whole;
		ssize_t got;
		int rv;

		if (want > CBATCH)
			want = CBATCH;
		got = pread(fd, buf, (size_t)want * REC_SIZE, (off_t)*from);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		whole = (size_t)got / REC_SIZE;
		if (whole == 0)
			return -EIO; /* shorter than it was: not this log */
		for (size_t i = 0; i < whole; i++)
			if (rec_ok(&buf[i])) {
				buf[nb] = buf[i];
				apply(nx, &buf[nb++]);
			}
		rv = write_all(tfd, buf, nb * REC_SIZE);
		if (rv < 0)
			return rv;
		*wrote += nb * REC_SIZE;
		*from += whole * REC_SIZE;
	}
	return 0;
}

static unsigned long compact_seq;

/* old_tmps - delete the temporary logs of rewrites a crash cut short (an
 * hour old: a rewrite in flight is younger) beside the log |logp| */
static void old_tmps(const char *logp)
{
	char d[4200], p[4500];
	const char *base = strrchr(logp, '/');
	size_t blen;
	time_t now = time(NULL);
	struct dirent *f;
	DIR *dd;

	if (!base)
		return;
	snprintf(d, sizeof(d), "%.*s", (int)(base - logp), logp);
	base++;
	blen = strlen(base);
	if (!(dd = opendir(d)))
		return;
	while ((f = readdir(dd))) {
		struct stat st;
		size_t n = strlen(f->d_name);

		if (n <= blen + 5 || strncmp(f->d_name, base, blen) != 0 ||
		    f->d_name[blen] != '.' ||
		    strcmp(f->d_name + n - 4, ".tmp") != 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", d, f->d_name);
		if (stat(p, &st) == 0 && st.st_mtime + NAME_GRACE < now)
			unlink(p);
	}
	closedir(dd);
}

/*
 * compact - rewrite the log with its live entries only, oldest first, and
 * rename it over; with s->lock held, which it drops while it writes:
 *  1. the live entries as the index holds them once the log is read up to
 *     |from| are written to a temporary file, CBATCH per hold of the
 *     lock (one that dies meanwhile is left out: what killed it is a
 *     record past |from|), and read into a second index, |nx|;
 *  2. the records past |from| this process has read (they are whole and
 *     no longer change) are copied after them, without the lock, and the
 *     file is synced;
 *  3. under the lock and the exclusive flock, the records appended since
 *     are copied too (the log can grow no more), the file renamed over
 *     the log, and |nx| becomes the index: the same live entries in the
 *     same order, so that nothing is read again.
 * Replaying the new log gives the index replaying the old one gives: the
 * state at |from|, then the same records.  A crash at any step leaves the
 * old log (and a temporary file, deleted an hour later) or the new one,
 * whole.  Another process that rewrote the log meanwhile (the index was
 * read again: s->gen moved) makes this one give up.  Then the name files
 * no live reference names are deleted.
 */
static void compact(struct wh_store *s)
{
	struct idx nx;
	struct rec *buf;
	char tmp[4300];
	unsigned long gen = s->gen;
	uint64_t from = s->read_off, wrote = 0, at;
	uint32_t i = s->ix.cursor, hi = s->ix.n, live = s->ix.live;
	int tfd = -1, ofd, rv = 0;
	bool done = false;

	if (s->compacting)
		return;
	buf = malloc(CBATCH * sizeof(*buf));
	ofd = buf ? fcntl(s->fd, F_DUPFD_CLOEXEC, 0) : -1; /* to read the
							    * old log from */
	if (ofd < 0) {
		free(buf);
		return;
	}
	s->compacting = true;
	memset(&nx, 0, sizeof(nx));
	snprintf(tmp, sizeof(tmp), "%s.%d.%lu.tmp", s->logp, (int)getpid(),
		 __atomic_add_fetch(&compact_seq, 1, __ATOMIC_RELAXED));
	pthread_mutex_unlock(&s->lock);
	old_tmps(s->logp);
	/* room for what the log takes until it is rewritten again (twice
	 * its live records): no rehash under the lock on the way */
	reserve(&nx, 2 * (uint64_t)live + 1024);
	tfd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	pthread_mutex_lock(&s->lock);
	if (tfd < 0)
		rv = -errno;
	while (rv == 0 && i < hi) {
		size_t nb = 0;

		if (s->gen != gen) {
			rv = -EAGAIN;
			break;
		}
		for (; i < hi && nb < CBATCH; i++) {
			const struct ent *e = &s->ix.ents[i];

			if (e->live)
				rec_fill(&buf[nb++], e, e->type);
		}
		pthread_mutex_unlock(&s->lock);
		for (size_t k = 0; k < nb; k++)
			apply(&nx, &buf[k]);
		rv = write_all(tfd, buf, nb * REC_SIZE);
		wrote += nb * REC_SIZE;
		pthread_mutex_lock(&s->lock);
	}
	if (rv == 0 && wh_store_test_hook) {
		pthread_mutex_unlock(&s->lock);
		rv = wh_store_test_hook(s, "compact", NULL);
		pthread_mutex_lock(&s->lock);
	}
	/* what came meanwhile, without the lock; synced; then again */
	for (int round = 0; rv == 0 && round < 3; round++) {
		uint64_t to = s->read_off;

		if (s->gen != gen) {
			rv = -EAGAIN;
			break;
		}
		pthread_mutex_unlock(&s->lock);
		rv = copy_recs(ofd, &from, to, tfd, &wrote, &nx, buf);
		if (rv == 0 && round == 1 && fdatasync(tfd) != 0)
			rv = -errno;
		pthread_mutex_lock(&s->lock);
	}
	if (rv == 0 && s->gen == gen && lock_log(s, &at) == 0) {
		int old = s->fd;

		/* lock_log read the log to its end; a rewrite by another
		 * process meanwhile read the new one (and moved s->gen) */
		if (s->gen == gen &&
		    copy_recs(old, &from, at, tfd, &wrote, &nx, buf) == 0 &&
		    rename(tmp, s->logp) == 0) {
			struct idx was = s->ix;

			s->ix = nx;
			s->ix.own = s;
			nx = was; /* freed without the lock */
			nx.own = NULL;
			s->fd = tfd;
			tfd = -1;
			s->read_off = wrote;
			s->gen++;
			s->names_due = true;
			done = true;
		}
		flock(old, LOCK_UN);
		if (done)
			close(old); /* whoever waits for its flock finds it
				     * unlinked and reads the new one */
	}
	if (!done) {
		if (tfd >= 0)
			close(tfd);
		unlink(tmp);
	}
	pthread_mutex_unlock(&s->lock);
	close(ofd);
	index_reset(&nx);
	free(buf);
	pthread_mutex_lock(&s->lock);
	s->compacting = false;
}

/* over - the store holds more than |limit|, the log counted as what its
 * live records take (it is rewritten with only them) */
static bool over(const struct wh_store *s, uint64_t limit)
{
	return s->ix.total + (uint64_t)s->ix.live * REC_SIZE > limit;
}

/* log_dead - more than half the log is dead records: compact it */
static bool log_dead(const struct wh_store *s)
{
	return s->read_off / REC_SIZE > 2 * (uint64_t)s->ix.live + 1024;
}

/*
 * evict_batch - delete up to EVICT_BATCH of the least recently used
 * entries (the log's oldest) while the store holds more than |target|;
 * a chunk being read is appended again instead (it is in use).  When
 * done, delete the name files no longer named and rewrite the log if
 * more than half of it is dead.  With s->lock held; takes the exclusive
 * flock for as long as it runs.  True if there is more to evict.
 */
static bool evict_batch(struct wh_store *s, uint64_t target)
{
	struct rec del[EVICT_BATCH];
	size_t nd = 0;
	uint32_t end, done = 0;
	uint64_t at;
	bool more, stuck = false;

	if (lock_log(s, &at) < 0)
		return false;
	log_end(s, at);
	end = s->ix.n; /* what is appended again is not met twice */
	while (s->ix.cursor < end && done < EVICT_BATCH &&
	       (!s->ix.ents[s->ix.cursor].live || over(s, target))) {
		uint32_t i = s->ix.cursor++;
		struct ent e = s->ix.ents[i];
		struct rec r;

		if (!e.live)
			continue;
		done++;
		if (s->npin && pinned(s, e.hash)) {
			rec_fill(&r, &e, e.type);
			if (write_at(s, &r, 1, &at) == 0)
				apply(&s->ix, &r); /* the newest now */
			if (s->ix.ents[i].live) { /* it was not: stop here */
				s->ix.cursor = i;
				stuck = true; /* until the next run */
				break;
			}
			continue;
		}
		if (e.type == R_DATA) {
			char p[4200];

			chunk_path(s, e.hash, p, sizeof(p));
			unlink(p);
		}
		ent_dead(&s->ix, &s->ix.ents[i]);
		rec_fill(&del[nd++], &e, R_DEL);
	}
	if (nd)
		write_at(s, del, nd, &at);
	s->read_off = at; /* what the records say is done */
	more = !stuck && s->ix.cursor < end && over(s, target);
	if (!more)
		drop_names(s);
	flock(s->fd, LOCK_UN);
	return more;
}

/* has_any_data - a live DATA entry of |hash|, of any length; with
 * s->lock held */
static bool has_any_data(struct wh_store *s, const uint8_t *hash)
{
	if (!s->ix.tabsize)
		return false;
	for (uint32_t i = s->ix.tab[tab_find(&s->ix, hash)]; i != NONE;
	     i = s->ix.ents[i].next)
		if (s->ix.ents[i].live && s->ix.ents[i].type == R_DATA)
			return true;
	return false;
}

/*
 * sweep_dir - enter in the log the chunk files of chunks/<sub> it does
 * not name: a put whose record another process evicted before its file
 * was there and which died before naming it again, a log that lost its
 * tail in a power cut, an older binary's puts.  Without them a file
 * would count against no limit and never be evicted until asked for.
 * Deletes the temporary files a crash left there (an hour old).  Costs a
 * readdir of the subdirectory, a look-up per file (NSWEEP per hold of
 * the lock) and a stat per file the log does not name.  Without
 * s->lock.  The number of files entered.
 */
static unsigned sweep_dir(struct wh_store *s, unsigned sub)
{
	struct {
		uint8_t hash[WH_HASH_LEN];
		uint32_t len;
	} *c;
	char d[4200];
	time_t now = time(NULL);
	unsigned adopted = 0;
	bool end = false;
	DIR *dd;

	snprintf(d, sizeof(d), "%s/%02x", s->dir, sub & 255);
	dd = opendir(d);
	if (!dd)
		return 0;
	c = malloc(NSWEEP * sizeof(*c));
	while (c && !end) {
		unsigned nc = 0, nnew = 0;
		struct dirent *f;
		uint64_t at;

		while (nc < NSWEEP) {
			if (!(f = readdir(dd))) {
				end = true;
				break;
			}
			if (f->d_name[0] == '.')
				continue;
			if (!hex_parse(f->d_name, c[nc].hash)) {
				char p[4500];
				struct stat st;

				snprintf(p, sizeof(p), "%s/%s", d, f->d_name);
				if (strstr(f->d_name, ".tmp") &&
				    stat(p, &st) == 0 &&
				    st.st_mtime + NAME_GRACE < now)
					unlink(p);
				continue;
			}
			if (c[nc].hash[0] != (sub & 255)) {
				char p[4500];

				/* in the wrong subdirectory: none of ours (as in
				 * scan_files) */
				snprintf(p, sizeof(p), "%s/%s", d, f->d_name);
				unlink(p);
				continue;
			}
			c[nc++].len = 0;
		}
		if (nc == 0)
			continue;
		pthread_mutex_lock(&s->lock);
		catch_up(s);
		for (unsigned i = 0; i < nc; i++)
			if (has_any_data(s, c[i].hash))
				c[i].len = UINT32_MAX; /* named */
		pthread_mutex_unlock(&s->lock);
		for (unsigned i = 0; i < nc; i++) {
			char p[4200];
			struct stat st;

			if (c[i].len == UINT32_MAX)
				continue;
			chunk_path(s, c[i].hash, p, sizeof(p));
			if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
				c[i].len = UINT32_MAX;
				continue;
			}
			if (st.st_size <= 0 || st.st_size > WH_CDC_MAX) {
				unlink(p); /* no chunk of ours */
				c[i].len = UINT32_MAX;
				continue;
			}
			c[i].len = (uint32_t)st.st_size;
			nnew++;
		}
		if (nnew == 0)
			continue;
		pthread_mutex_lock(&s->lock);
		if (lock_log(s, &at) == 0) {
			for (unsigned i = 0; i < nc; i++) {
				char p[4200];
				struct ent e;

				if (c[i].len == UINT32_MAX)
					continue;
				chunk_path(s, c[i].hash, p, sizeof(p));
				/* again under the lock: an eviction may have
				 * just deleted it, a put named it */
				if (has_data(s, c[i].hash, c[i].len) ||
				    !file_ok(p, c[i].len))
					continue;
				memset(&e, 0, sizeof(e));
				memcpy(e.hash, c[i].hash, WH_HASH_LEN);
				e.type = R_DATA;
				e.len = c[i].len;
				if (append_locked(s, &e, R_DATA, &at) == 0)
					adopted++;
			}
			flock(s->fd, LOCK_UN);
			maybe_evict(s);
		}
		pthread_mutex_unlock(&s->lock);
	}
	free(c);
	closedir(dd);
	return adopted;
}

unsigned wh_store_sweep(struct wh_store *s, unsigned ndirs)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ndirs; i++) {
		unsigned sub;

		pthread_mutex_lock(&s->lock);
		sub = s->sweep_next++ & 255;
		pthread_mutex_unlock(&s->lock);
		n += sweep_dir(s, sub);
	}
	return n;
}

/* after_evict - what an eviction run leaves to do without holding the
 * lock throughout: the log rewritten if more than half of it is dead, and
 * chunk-names/ walked if due.  With s->lock held; drops it meanwhile. */
static void after_evict(struct wh_store *s)
{
	if (log_dead(s))
		compact(s);
	if (s->names_due)
		scan_names(s);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * ev_main - the eviction thread: woken when the store passes its limit,
 * it evicts down to 15/16 of it (so that it does not run for every chunk
 * put), a batch per hold of the lock, so that look-ups and puts go on
 * between batches.
 */
static void *ev_main(void *arg)
{
	struct wh_store *s = arg;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		uint64_t target;

		while (!s->ev_want && !s->sweep_want && !s->ev_stop)
			pthread_cond_wait(&s->ev_cond, &s->lock);
		if (s->sweep_want && !s->ev_stop) {
			unsigned sub = s->sweep_next++ & 255;

			s->sweep_want = false;
			pthread_mutex_unlock(&s->lock);
			sweep_dir(s, sub);
			pthread_mutex_lock(&s->lock);
			continue;
		}
		/* not more often than every EVICT_GAP_MS */
		while (!s->ev_stop && s->ev_last &&
		       now_ms() < s->ev_last + EVICT_GAP_MS) {
			struct timespec ts;
			uint64_t ns;

			clock_gettime(CLOCK_REALTIME, &ts);
			ns = (uint64_t)ts.tv_nsec + EVICT_GAP_MS * 1000000ull;
			ts.tv_sec += (time_t)(ns / 1000000000u);
			ts.tv_nsec = (long)(ns % 1000000000u);
			pthread_cond_timedwait(&s->ev_cond, &s->lock, &ts);
		}
		if (s->ev_stop)
			break;
		s->ev_want = false;
		s->ev_busy = true;
		s->evictions++;
		target = over(s, s->limit) ? s->limit - s->limit / 16
					   : s->limit;
		while (!s->ev_stop && evict_batch(s, target)) {
			pthread_mutex_unlock(&s->lock);
			sched_yield();
			pthread_mutex_lock(&s->lock);
		}
		after_evict(s);
		s->ev_last = now_ms();
		s->ev_busy = false;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ev_start - the eviction thread, started if it was not; with s->lock
 * held.  False if it cannot be (the store is evicted at close). */
static bool ev_start(struct wh_store *s)
{
	sigset_t all, old;
	int rv;

	if (s->ev_started)
		return true;
	/* it takes no signals: they belong to the caller's loop */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rv = pthread_create(&s->ev_thread, NULL, ev_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0)
		return false;
	s->ev_started = true;
	return true;
}

/* maybe_evict - wake the eviction thread (started the first time) if
 * the store is past its limit or its log wants compacting (it runs at
 * most every EVICT_GAP_MS); with s->lock held */
static void maybe_evict(struct wh_store *s)
{
	if (s->ev_want || s->ev_busy || s->ev_stop ||
	    (!over(s, s->limit) && !log_dead(s)))
		return;
	if (!ev_start(s))
		return;
	s->ev_want = true;
	pthread_cond_signal(&s->ev_cond);
}

/* maybe_sweep - a step of the sweep is due (every SWEEP_GAP_MS while the
 * store is written): wake the eviction thread for it; with s->lock held */
static void maybe_sweep(struct wh_store *s)
{
	uint64_t now = now_ms();

	if (now < s->sweep_at || s->ev_stop)
		return;
	s->sweep_at = now + SWEEP_GAP_MS;
	if (!ev_start(s))
		return;
	s->sweep_want = true;
	pthread_cond_signal(&s->ev_cond);
}

unsigned long wh_store_evictions(struct wh_store *s)
{
	unsigned long n;

	pthread_mutex_lock(&s->lock);
	n = s->evictions;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void wh_store_close(struct wh_store *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->ev_stop = true;
	pthread_cond_signal(&s->ev_cond);
	pthread_mutex_unlock(&s->lock);
	if (s->ev_started)
		pthread_join(s->ev_thread, NULL);
	pthread_mutex_lock(&s->lock);
	while (evict_batch(s, s->limit))
		;
	after_evict(s);
	pthread_mutex_unlock(&s->lock);
	if (s->fd >= 0)
		close(s->fd);
	index_reset(&s->ix);
	for (int i = 0; i < NNAMES; i++)
		name_free(&s->nm[i]);
	free(s->last_path);
	free(s->last_alt);
	free(s->dir);
	free(s->names);
	free(s->logp);
	for (unsigned i = 0; i < s->nbounce; i++)
		free(s->bounce[i]);
	pthread_mutex_destroy(&s->bounce_lock);
	pthread_cond_destroy(&s->ev_cond);
	pthread_cond_destroy(&s->fly_cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
