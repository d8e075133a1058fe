/*
 * wh_mcache.c - manifests by file version, in memory and on disk.
 *
 * On-disk format, one file per version, named by the hex BLAKE3 of the
 * key: "WHM1", the 40-byte key, u64 chunk count, then per chunk u64
 * offset, u32 length and the 32-byte hash (all little-endian), then the
 * BLAKE3 of everything before it.  A file that does not check out is
 * ignored (and recomputed), so a torn or corrupted entry costs a rehash,
 * never a wrong manifest.
 *
 * The whole-file hashes of small files are kept in one file, "small.whs":
 * "WHS1", u64 count, then per entry the 40-byte key and the 32-byte hash,
 * then the BLAKE3 of everything before it; written to a temporary name
 * and renamed, checked the same way when read.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/wh_buf.h"
#include "common/wh_fsutil.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "host/wh_mcache.h"

#define MEM_ENTRIES 256
#define MAGIC "WHM1"
#define INLINE_MAX (8ULL << 20) /* files up to this size: hash in the caller */
#define MAX_HASHERS 2           /* threads hashing queued jobs */
#define MAX_QUEUED 64           /* more: hashed by the caller */
/* a name whose versions changed while hashed CHANGING_MAX times in a row,
 * each within CHANGING_NS of the one before, starts no new job: "the file
 * keeps changing" (a caller that asks again and again, as a put-off
 * MANIFEST does, would otherwise never be answered) */
#define CHANGING_SLOTS 16
#define CHANGING_MAX 8
#define CHANGING_NS (2 * WH_NS_PER_S)
#define DISK_MIN WH_CDC_MIN     /* smaller files: not kept on disk */

struct key {
	uint64_t dev, ino, size, mtime_ns, ctime_ns;
};

struct entry {
	struct key key;
	struct wh_manifest m;
	uint64_t used; /* LRU clock */
};

/*
 * The version of each file name last seen, so that a new version is hashed
 * with the old one's manifest (wh_chunk_fd_hint): a table indexed by a
 * hash of the name, a later name taking the place of an earlier one.
 * Saved in the directory (NAMES_FILE) as the small-file hashes are, so a
 * file's first change after a restart is hashed with its old manifest
 * too; a stale or foreign entry only costs a hash per chunk.
 */
#define PREV_ENTRIES 4096 /* a power of two */
#define NAMES_FILE "names.whn"
#define NAMES_MAGIC "WHN1"
#define NAMES_ENT_LEN 48 /* tag, then the key */

struct prev {
	uint64_t tag;   /* the name's hash; 0: empty */
	struct key key; /* the version last seen under it */
};

/* the small-file hash table: HASH_WAYS entries per set */
#define HASH_WAYS 4
#define HASH_SETS (WH_MCACHE_HASHES / HASH_WAYS)
#define HASH_FILE "small.whs"
#define HASH_MAGIC "WHS1"
#define HASH_ENT_LEN (40 + WH_HASH_LEN)

struct hent {
	struct key key;
	uint8_t hash[WH_HASH_LEN];
	uint64_t used; /* 0: empty */
};

struct wh_mjob {
	struct wh_mcache *mc;
	struct key key;
	int fd;
	int refs;             /* protected by mc->lock */
	struct wh_mjob *next; /* in mc->jobs, protected by mc->lock */
	pthread_mutex_t lock;
	pthread_cond_t cv;    /* on CLOCK_MONOTONIC */
	struct wh_manifest m; /* protected by lock; fixed once done */
	bool done;            /* protected by lock */
	int err;              /* protected by lock */
	bool queued;          /* waiting for a hasher, under mc->lock */
	uint64_t seq;         /* arrival order, under mc->lock */
	uint64_t owner;       /* who asked for it first (0: nobody said) */
	uint64_t turn;        /* the hashers take the lowest, then the
			       * earliest: under mc->lock */
	uint64_t tag;         /* of the name it was asked by, or 0 */
	struct wh_manifest hint; /* the version before's, or empty */
};

/* a table the directory keeps in a file (small.whs, names.whn), saved
 * now and then while the cache is open and at close */
struct dsave {
	bool dirty;        /* changed since saved */
	bool saving;       /* a thread writes it now */
	uint64_t saved_ns; /* when last saved (0: not yet changed) */
};

struct wh_mcache {
	char *dir;
	pthread_mutex_t lock;
	struct entry mem[MEM_ENTRIES]; /* protected by lock */
	size_t nmem;                   /* protected by lock */
	uint64_t clock;                /* protected by lock */
	unsigned long computed, hits;  /* protected by lock */
	struct wh_mjob *jobs;          /* being computed, protected by lock */
	int threads;                   /* hasher threads alive, under lock */
	int nqueued;                   /* jobs waiting for one, under lock */
	uint64_t seq;                  /* under lock */
	uint64_t turn;                 /* of the job taken last, under lock */
	bool stopping;                 /* protected by lock */
	pthread_cond_t cv;             /* threads changed */
	struct hent *hashes;           /* small-file hashes, under lock */
	bool hashes_loaded;            /* read from dir (or tried), under lock */
	struct dsave hsave;            /* saving them, under lock */
	uint64_t hashes_every_ns;      /* how often to save them */
	uint64_t hclock;               /* under lock */
	unsigned long hhits, hmisses;  /* under lock */
	struct prev *prevs;            /* PREV_ENTRIES, under lock */
	struct dsave nsave;            /* saving them, under lock */
	unsigned long hinted;          /* hashed with a hint, under lock */
	uint64_t hint_kept;            /* bytes it kept, under lock */
	char *test_hold; /* WH_MCACHE_TEST_HOLD: the hasher threads start no
			  * job while this file does not exist (tests) */
	struct {
		uint64_t tag;     /* of the name, 0 for a free slot */
		unsigned n;       /* its versions in a row that changed */
		uint64_t last_ns; /* when the last of them did */
	} changing[CHANGING_SLOTS]; /* under lock */
};

static bool hashes_pack_locked(struct wh_mcache *mc, uint8_t **pbuf,
			       size_t *plen);
static bool names_pack_locked(struct wh_mcache *mc, uint8_t **pbuf,
			      size_t *plen);
static void dir_save(struct wh_mcache *mc, const char *name,
		     bool (*pack)(struct wh_mcache *, uint8_t **, size_t *));
static void names_read(struct wh_mcache *mc);
static void names_tick(struct wh_mcache *mc);

/* small-file hashes learned are saved this often while the cache is open
 * (and at close), so a process killed meanwhile loses at most this much;
 * WH_MCACHE_SAVE_MS sets it (tests) */
#define HASH_SAVE_MS 30000

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

/* name_tag - the prevs tag of |name| (FNV-1a), 0 for none */
static uint64_t name_tag(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	if (!name)
		return 0;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	return h ? h : 1;
}

/* prev_set_locked - |k| is the version of the name tagged |tag| now */
static void prev_set_locked(struct wh_mcache *mc, uint64_t tag,
			    const struct key *k)
{
	struct prev *p;

	if (!tag || !mc->prevs)
		return;
	p = &mc->prevs[tag & (PREV_ENTRIES - 1)];
	if (p->tag == tag && !memcmp(&p->key, k, sizeof(*k)))
		return;
	p->tag = tag;
	p->key = *k;
	mc->nsave.dirty = true;
}

/* prev_get_locked - the version seen before under |tag| if it is not |k| */
static bool prev_get_locked(struct wh_mcache *mc, uint64_t tag,
			    const struct key *k, struct key *out)
{
	struct prev *p;

	if (!tag || !mc->prevs)
		return false;
	p = &mc->prevs[tag & (PREV_ENTRIES - 1)];
	if (p->tag != tag || !memcmp(&p->key, k, sizeof(*k)))
		return false;
	*out = p->key;
	return true;
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
	pthread_cond_init(&mc->cv, NULL);
	/* (without it, new versions are hashed in full) */
	mc->prevs = wh_zalloc(PREV_ENTRIES, sizeof(*mc->prevs));
	if (getenv("WH_MCACHE_TEST_HOLD"))
		mc->test_hold = strdup(getenv("WH_MCACHE_TEST_HOLD"));
	{
		const char *e = getenv("WH_MCACHE_SAVE_MS");
		char *end;
		unsigned long ms = e ? strtoul(e, &end, 10) : HASH_SAVE_MS;

		if (e && (*end || end == e))
			ms = HASH_SAVE_MS;
		mc->hashes_every_ns = (uint64_t)ms * WH_NS_PER_MS;
	}
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
		if (mc->prevs)
			names_read(mc);
	}
	*pmc = mc;
	return 0;
}

void wh_mcache_close(struct wh_mcache *mc)
{
	if (!mc)
		return;
	/* hasher threads end soon once stopping is set: every job they
	 * still have fails at its next chunk */
	pthread_mutex_lock(&mc->lock);
	mc->stopping = true;
	pthread_cond_broadcast(&mc->cv);
	while (mc->threads > 0)
		pthread_cond_wait(&mc->cv, &mc->lock);
	pthread_mutex_unlock(&mc->lock);
	pthread_cond_destroy(&mc->cv);
	dir_save(mc, HASH_FILE, hashes_pack_locked);
	dir_save(mc, NAMES_FILE, names_pack_locked);
	free(mc->hashes);
	free(mc->prevs);
	for (size_t i = 0; i < mc->nmem; i++)
		wh_manifest_free(&mc->mem[i].m);
	free(mc->dir);
	free(mc->test_hold);
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

void wh_mcache_hint_stats(struct wh_mcache *mc, unsigned long *hinted,
			  uint64_t *kept)
{
	pthread_mutex_lock(&mc->lock);
	*hinted = mc->hinted;
	*kept = mc->hint_kept;
	pthread_mutex_unlock(&mc->lock);
}

/* ------------------------------------------------------------ memory */

/* mem_find_locked - |k|'s entry in memory, or NULL; mc->lock held */
static struct entry *mem_find_locked(struct wh_mcache *mc, const struct key *k)
{
	for (size_t i = 0; i < mc->nmem; i++)
		if (memcmp(&mc->mem[i].key, k, sizeof(*k)) == 0)
			return &mc->mem[i];
	return NULL;
}

/* mem_get_locked - |k|'s manifest into |out|, if in memory (a hit);
 * mc->lock held */
static bool mem_get_locked(struct wh_mcache *mc, const struct key *k,
			   struct wh_manifest *out, int *rv)
{
	struct entry *e = mem_find_locked(mc, k);

	if (!e)
		return false;
	e->used = ++mc->clock;
	*rv = copy_manifest(&e->m, out);
	mc->hits++;
	return true;
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

static void key_from_bytes(const uint8_t in[40], struct key *k)
{
	memset(k, 0, sizeof(*k));
	k->dev = get_le(in, 8);
	k->ino = get_le(in + 8, 8);
	k->size = get_le(in + 16, 8);
	k->mtime_ns = get_le(in + 24, 8);
	k->ctime_ns = get_le(in + 32, 8);
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
		/* what the chunker makes: a longer chunk is one no CHUNK
		 * request can fetch */
		if (out->chunks[i].offset != out->size ||
		    out->chunks[i].length == 0 ||
		    out->chunks[i].length > WH_CDC_MAX)
			goto out;
		out->size += out->chunks[i].length;
	}
	ok = out->size == k->size;
out:
	if (!ok)
		wh_manifest_free(out); /* nothing half read is handed on */
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

	/* a file smaller than a chunk's minimum is hashed again faster than
	 * a cache file is created: keep those in memory only */
	if (!mc->dir || k->size < DISK_MIN)
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

/* ---------------------------------------------------------------- jobs */

static struct wh_mjob *job_new(struct wh_mcache *mc, const struct key *k)
{
	struct wh_mjob *j = calloc(1, sizeof(*j));
	pthread_condattr_t ca;

	if (!j)
		return NULL;
	j->mc = mc;
	j->key = *k;
	j->fd = -1;
	j->refs = 1;
	wh_manifest_init(&j->m);
	wh_manifest_init(&j->hint);
	pthread_mutex_init(&j->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->cv, &ca);
	pthread_condattr_destroy(&ca);
	return j;
}

static void job_free(struct wh_mjob *j)
{
	if (j->fd >= 0)
		close(j->fd);
	wh_manifest_free(&j->m);
	wh_manifest_free(&j->hint);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cv);
	free(j);
}

void wh_mjob_put(struct wh_mjob *j)
{
	struct wh_mcache *mc;
	bool last;

	if (!j)
		return;
	mc = j->mc;
	pthread_mutex_lock(&mc->lock);
	last = --j->refs == 0;
	pthread_mutex_unlock(&mc->lock);
	if (last)
		job_free(j);
}

/* changing_note_locked - the job of the name tagged |tag| ended with
 * |rv|: one more version that changed while hashed, or (0) one that did
 * not */
static void changing_note_locked(struct wh_mcache *mc, uint64_t tag, int rv)
{
	uint64_t now = wh_now_ns();
	int slot = -1;

	if (!tag)
		return;
	for (int i = 0; i < CHANGING_SLOTS; i++) {
		if (mc->changing[i].tag == tag) {
			slot = i;
			break;
		}
		/* a free slot, else the one that changed longest ago */
		if (slot < 0 || (mc->changing[slot].tag &&
				 (!mc->changing[i].tag ||
				  mc->changing[i].last_ns <
					  mc->changing[slot].last_ns)))
			slot = i;
	}
	if (rv != -EAGAIN) {
		if (mc->changing[slot].tag == tag)
			mc->changing[slot].tag = 0;
		return;
	}
	if (mc->changing[slot].tag != tag ||
	    now - mc->changing[slot].last_ns > CHANGING_NS) {
		mc->changing[slot].tag = tag;
		mc->changing[slot].n = 0;
	}
	mc->changing[slot].n++;
	mc->changing[slot].last_ns = now;
}

/* changing_locked - the name tagged |tag| keeps changing (then it is
 * forgotten: the next request tries again) */
static bool changing_locked(struct wh_mcache *mc, uint64_t tag)
{
	for (int i = 0; tag && i < CHANGING_SLOTS; i++) {
		if (mc->changing[i].tag != tag)
			continue;
		if (mc->changing[i].n < CHANGING_MAX ||
		    wh_now_ns() - mc->changing[i].last_ns > CHANGING_NS)
			return false;
		mc->changing[i].tag = 0;
		return true;
	}
	return false;
}

/* job_add - one more chunk: publish it, unless the file changed */
static int job_add(void *ud, const struct wh_chunk *c)
{
	struct wh_mjob *j = ud;
	struct stat st;
	struct key k;
	bool stop;
	int rv = 0;

	pthread_mutex_lock(&j->mc->lock);
	stop = j->mc->stopping;
	pthread_mutex_unlock(&j->mc->lock);
	if (stop)
		return -ECANCELED;
	if (fstat(j->fd, &st) != 0)
		return -errno;
	key_of(&st, &k);
	if (memcmp(&k, &j->key, sizeof(k)) != 0)
		return -EAGAIN; /* changed under us: what we have is void */
	pthread_mutex_lock(&j->lock);
	if (j->m.n == j->m.cap) {
		size_t ncap = j->m.cap ? j->m.cap * 2 : 64;
		struct wh_chunk *nc = realloc(j->m.chunks, ncap * sizeof(*nc));

		if (!nc)
			rv = -ENOMEM;
		else {
			j->m.chunks = nc;
			j->m.cap = ncap;
		}
	}
	if (rv == 0) {
		j->m.chunks[j->m.n++] = *c;
		pthread_cond_broadcast(&j->cv);
	}
	pthread_mutex_unlock(&j->lock);
	return rv;
}

/* job_run - hash the file, publishing chunks as they come; then cache the
 * manifest and take the job off the list of those being computed */
static void job_run(struct wh_mjob *j)
{
	struct wh_mcache *mc = j->mc;
	struct wh_mjob **pp;
	struct stat after;
	struct key k2;
	uint64_t size = 0, kept = 0;
	int rv;

	rv = wh_chunk_fd_hint(j->fd, j->key.size, &j->hint, job_add, j, &size,
			      &kept);
	if (rv == 0 && fstat(j->fd, &after) != 0)
		rv = -errno;
	if (rv == 0) {
		key_of(&after, &k2);
		if (memcmp(&j->key, &k2, sizeof(k2)) != 0 ||
		    size != j->key.size)
			rv = -EAGAIN; /* changed while we read it */
	}
	if (rv == 0) {
		j->m.size = size; /* nobody reads m.size before done */
		pthread_mutex_lock(&mc->lock);
		mc->computed++;
		if (j->hint.n > 0) {
			mc->hinted++;
			mc->hint_kept += kept;
		}
		prev_set_locked(mc, j->tag, &j->key);
		pthread_mutex_unlock(&mc->lock);
		names_tick(mc);
		if (j->hint.n > 0)
			wh_debug("manifest: %llu of %llu bytes as in the version "
				 "before",
				 (unsigned long long)kept,
				 (unsigned long long)size);
		mem_put(mc, &j->key, &j->m);
	}
	pthread_mutex_lock(&j->lock);
	j->done = rv == 0;
	j->err = rv;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->lock);
	pthread_mutex_lock(&mc->lock);
	changing_note_locked(mc, j->tag, rv);
	for (pp = &mc->jobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	pthread_mutex_unlock(&mc->lock);
	wh_manifest_free(&j->hint); /* only the hashing reads it */
	if (rv == 0)
		disk_put(mc, &j->key, &j->m); /* m is fixed from here on */
}

/*
 * next_turn_locked - the turn of a new job of |owner|: the one after the
 * highest among its queued jobs, or after the job taken last, if that is
 * higher.  So each owner's jobs come one turn apart, and an owner arriving
 * with one job is served after at most one job of each of the others.
 */
static uint64_t next_turn_locked(struct wh_mcache *mc, uint64_t owner)
{
	uint64_t last = mc->turn;

	for (struct wh_mjob *q = mc->jobs; q; q = q->next)
		if (q->queued && q->owner == owner && q->turn > last)
			last = q->turn;
	return last + 1;
}

/* hasher_main - hash queued jobs, by turn, until none is left */
static void *hasher_main(void *arg)
{
	struct wh_mcache *mc = arg;

	pthread_mutex_lock(&mc->lock);
	for (;;) {
		struct wh_mjob *j = NULL;

		while (mc->test_hold && !mc->stopping &&
		       access(mc->test_hold, F_OK) != 0) {
			pthread_mutex_unlock(&mc->lock);
			usleep(10000);
			pthread_mutex_lock(&mc->lock);
		}
		for (struct wh_mjob *q = mc->jobs; q; q = q->next)
			if (q->queued &&
			    (!j || q->turn < j->turn ||
			     (q->turn == j->turn && q->seq < j->seq)))
				j = q;
		if (!j)
			break;
		j->queued = false;
		mc->nqueued--;
		mc->turn = j->turn;
		pthread_mutex_unlock(&mc->lock);
		job_run(j);
		wh_mjob_put(j); /* the queue's reference */
		pthread_mutex_lock(&mc->lock);
	}
	mc->threads--;
	pthread_cond_broadcast(&mc->cv);
	pthread_mutex_unlock(&mc->lock);
	return NULL;
}

static struct wh_mjob *find_job(struct wh_mcache *mc, const struct key *k)
{
	for (struct wh_mjob *j = mc->jobs; j; j = j->next)
		if (memcmp(&j->key, k, sizeof(*k)) == 0)
			return j;
	return NULL;
}

/* job_done - a finished job holding |m| (moved) */
static struct wh_mjob *job_done(struct wh_mcache *mc, const struct key *k,
				struct wh_manifest *m)
{
	struct wh_mjob *j = job_new(mc, k);

	if (!j)
		return NULL;
	j->m = *m;
	wh_manifest_init(m);
	j->done = true;
	return j;
}

/* old_manifest - the manifest of the version seen under |tag| before
 * |k|, if it is still known, into |out| */
static void old_manifest(struct wh_mcache *mc, uint64_t tag,
			 const struct key *k, struct wh_manifest *out)
{
	struct entry *e;
	struct key pk;
	bool known;

	pthread_mutex_lock(&mc->lock);
	known = prev_get_locked(mc, tag, k, &pk);
	e = known ? mem_find_locked(mc, &pk) : NULL;
	if (e) {
		if (copy_manifest(&e->m, out) < 0)
			wh_manifest_free(out);
		pthread_mutex_unlock(&mc->lock);
		return;
	}
	pthread_mutex_unlock(&mc->lock);
	if (known && !disk_get(mc, &pk, out))
		wh_manifest_free(out);
}

/* how find_or_start computes a manifest it has to start */
enum start_how {
	START_HERE,        /* hashed by the caller */
	START_QUEUED,      /* a big file queued for the hasher threads; hashed
			    * by the caller when MAX_QUEUED wait already */
	START_ONLY_QUEUED, /* the same, but then -EBUSY: nothing started */
};

/* find_or_start - the job for |st| (of the file named |name|, or NULL):
 * cached, joined, or new, started as |how| says (with the manifest of the
 * version seen under |name| before, if known) */
static int find_or_start(struct wh_mcache *mc, int fd, const struct stat *st,
			 const char *name, enum start_how how, uint64_t owner,
			 struct wh_mjob **pjob)
{
	struct wh_manifest man, hint;
	struct wh_mjob *j;
	struct key k;
	pthread_attr_t attr;
	pthread_t th;
	uint64_t tag = name_tag(name);
	bool background = how != START_HERE, spawn = false;
	int rv = 0;

	key_of(st, &k);
	wh_manifest_init(&man);
	wh_manifest_init(&hint);
	pthread_mutex_lock(&mc->lock);
	j = find_job(mc, &k);
	if (j) {
		j->refs++;
		pthread_mutex_unlock(&mc->lock);
		*pjob = j;
		return 0;
	}
	if (mem_get_locked(mc, &k, &man, &rv)) {
		prev_set_locked(mc, tag, &k);
		pthread_mutex_unlock(&mc->lock);
		if (rv < 0)
			return rv;
		j = job_done(mc, &k, &man);
		goto found;
	}
	pthread_mutex_unlock(&mc->lock);
	if (disk_get(mc, &k, &man)) {
		pthread_mutex_lock(&mc->lock);
		mc->hits++;
		prev_set_locked(mc, tag, &k);
		pthread_mutex_unlock(&mc->lock);
		names_tick(mc);
		mem_put(mc, &k, &man);
		j = job_done(mc, &k, &man);
		goto found;
	}
	/* big files only: a small one is hashed faster than its old
	 * manifest is found */
	if (k.size >= 2 * WH_CDC_MAX)
		old_manifest(mc, tag, &k, &hint);
	pthread_mutex_lock(&mc->lock);
	j = find_job(mc, &k); /* someone else may have started it */
	if (j) {
		j->refs++;
		pthread_mutex_unlock(&mc->lock);
		wh_manifest_free(&hint);
		*pjob = j;
		return 0;
	}
	if (changing_locked(mc, tag)) {
		pthread_mutex_unlock(&mc->lock);
		wh_manifest_free(&hint);
		return -EAGAIN;
	}
	if (how == START_ONLY_QUEUED && k.size > INLINE_MAX &&
	    mc->nqueued >= MAX_QUEUED) {
		pthread_mutex_unlock(&mc->lock);
		wh_manifest_free(&hint);
		return -EBUSY;
	}
	j = job_new(mc, &k);
	if (j) {
		j->tag = tag;
		j->hint = hint; /* the job's now */
		wh_manifest_init(&hint);
		j->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (j->fd < 0) {
			rv = -errno;
			pthread_mutex_unlock(&mc->lock);
			job_free(j);
			return rv;
		}
		j->next = mc->jobs;
		mc->jobs = j;
		if (background && k.size > INLINE_MAX &&
		    mc->nqueued < MAX_QUEUED) {
			j->queued = true;
			j->seq = ++mc->seq;
			j->owner = owner;
			j->turn = next_turn_locked(mc, owner);
			j->refs++; /* the queue's */
			mc->nqueued++;
			spawn = mc->threads < MAX_HASHERS;
			if (spawn)
				mc->threads++;
		} else {
			background = false;
		}
	}
	pthread_mutex_unlock(&mc->lock);
	wh_manifest_free(&hint);
	if (!j)
		return -ENOMEM;
	if (spawn) {
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, hasher_main, mc) != 0) {
			pthread_mutex_lock(&mc->lock);
			mc->threads--;
			if (mc->threads == 0 && j->queued) {
				/* no hasher will come: hash it here */
				j->queued = false;
				mc->nqueued--;
				j->refs--;
				background = false;
			}
			pthread_mutex_unlock(&mc->lock);
		}
		pthread_attr_destroy(&attr);
	}
	if (!background)
		job_run(j);
	*pjob = j;
	return 0;
found:
	wh_manifest_free(&man);
	if (!j)
		return -ENOMEM;
	*pjob = j;
	return 0;
}

int wh_mcache_stream(struct wh_mcache *mc, int fd, const struct stat *st,
		     const char *name, bool may_wait, uint64_t owner,
		     struct wh_mjob **pjob)
{
	return find_or_start(mc, fd, st, name,
			     may_wait ? START_QUEUED : START_ONLY_QUEUED, owner,
			     pjob);
}

int wh_mjob_wait(struct wh_mjob *j, size_t start, uint64_t deadline_ns,
		 size_t *known, bool *done)
{
	struct timespec ts = {
		.tv_sec = (time_t)(deadline_ns / WH_NS_PER_S),
		.tv_nsec = (long)(deadline_ns % WH_NS_PER_S),
	};
	int rv;

	pthread_mutex_lock(&j->lock);
	while (!j->done && j->err == 0 && j->m.n <= start &&
	       wh_now_ns() < deadline_ns)
		pthread_cond_timedwait(&j->cv, &j->lock, &ts);
	*known = j->m.n;
	*done = j->done;
	rv = j->err;
	pthread_mutex_unlock(&j->lock);
	return rv;
}

void wh_mjob_copy(struct wh_mjob *j, size_t start, size_t n,
		  struct wh_chunk *out)
{
	pthread_mutex_lock(&j->lock);
	if (start <= j->m.n && n <= j->m.n - start)
		memcpy(out, j->m.chunks + start, n * sizeof(*out));
	pthread_mutex_unlock(&j->lock);
}

int wh_mcache_get(struct wh_mcache *mc, int fd, const struct stat *st,
		  const char *name, struct wh_manifest *out)
{
	struct wh_mjob *j;
	size_t known;
	bool done;
	int rv;

	rv = find_or_start(mc, fd, st, name, START_HERE, 0, &j);
	if (rv < 0)
		return rv;
	rv = wh_mjob_wait(j, SIZE_MAX, UINT64_MAX, &known, &done);
	if (rv == 0) {
		pthread_mutex_lock(&j->lock);
		rv = copy_manifest(&j->m, out);
		pthread_mutex_unlock(&j->lock);
	}
	wh_mjob_put(j);
	return rv;
}

int wh_mcache_lookup(struct wh_mcache *mc, const struct stat *st,
		     struct wh_manifest *out)
{
	struct wh_manifest man;
	struct key k;
	int rv = 0;

	key_of(st, &k);
	pthread_mutex_lock(&mc->lock);
	if (mem_get_locked(mc, &k, out, &rv)) {
		pthread_mutex_unlock(&mc->lock);
		return rv;
	}
	pthread_mutex_unlock(&mc->lock);
	wh_manifest_init(&man);
	if (!disk_get(mc, &k, &man)) {
		wh_manifest_free(&man);
		return -ENOENT;
	}
	pthread_mutex_lock(&mc->lock);
	mc->hits++;
	pthread_mutex_unlock(&mc->lock);
	mem_put(mc, &k, &man);
	rv = copy_manifest(&man, out);
	wh_manifest_free(&man);
	return rv;
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

/* ------------------------------------------------- small-file hashes */

bool wh_mcache_racy(const struct stat *st)
{
	struct timespec now;
	int64_t t, c, m;

	if (clock_gettime(CLOCK_REALTIME, &now) != 0)
		return true;
	t = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
	c = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
	m = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
	return c > t - 1000000000LL || m > t;
}

static size_t hash_set(const struct key *k)
{
	uint64_t h = k->dev * 0x9e3779b97f4a7c15ULL;

	h ^= k->ino + 0x632be59bd9b4e019ULL + (h << 6) + (h >> 2);
	h ^= k->size + (h << 6) + (h >> 2);
	h ^= k->mtime_ns + (h << 6) + (h >> 2);
	h ^= k->ctime_ns + (h << 6) + (h >> 2);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)(h % HASH_SETS);
}

/* hash_insert_locked - |k| -> |hash| into the table (allocated); over the
 * least recently used entry of its set when that is full */
static void hash_insert_locked(struct wh_mcache *mc, const struct key *k,
			       const uint8_t *hash)
{
	struct hent *set = mc->hashes + hash_set(k) * HASH_WAYS, *e = NULL;

	for (int w = 0; w < HASH_WAYS && !e; w++)
		if (set[w].used && !memcmp(&set[w].key, k, sizeof(*k)))
			e = &set[w];
	for (int w = 0; w < HASH_WAYS && !e; w++)
		if (!set[w].used)
			e = &set[w];
	if (!e) {
		e = &set[0];
		for (int w = 1; w < HASH_WAYS; w++)
			if (set[w].used < e->used)
				e = &set[w];
	}
	e->key = *k;
	memcpy(e->hash, hash, WH_HASH_LEN);
	e->used = ++mc->hclock;
}

/* hash_free_insert_locked - |k| -> |hash| only into a free entry of its
 * set, if it is not there already */
static void hash_free_insert_locked(struct wh_mcache *mc, const struct key *k,
				    const uint8_t *hash)
{
	struct hent *set = mc->hashes + hash_set(k) * HASH_WAYS;

	for (int w = 0; w < HASH_WAYS; w++)
		if (set[w].used && !memcmp(&set[w].key, k, sizeof(*k)))
			return;
	for (int w = 0; w < HASH_WAYS; w++) {
		if (!set[w].used) {
			set[w].key = *k;
			memcpy(set[w].hash, hash, WH_HASH_LEN);
			set[w].used = ++mc->hclock;
			return;
		}
	}
}

/* dir_read - the directory's file |name|, if it is whole: |magic|, a
 * count of at most |max| entries of |ent_len| bytes, the entries, and a
 * BLAKE3 of all that; the buffer (to be freed) and *|pn|, or NULL (none,
 * torn or foreign: not believed) */
static uint8_t *dir_read(struct wh_mcache *mc, const char *name,
			 const char *magic, size_t ent_len, size_t max,
			 size_t *pn)
{
	char path[4200];
	struct stat st;
	uint8_t *buf = NULL, h[WH_HASH_LEN];
	size_t len, n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", mc->dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_size < 12 + WH_HASH_LEN ||
	    (uint64_t)st.st_size > 12 + WH_HASH_LEN + (uint64_t)max * ent_len)
		goto bad;
	len = (size_t)st.st_size;
	buf = malloc(len);
	if (!buf || pread(fd, buf, len, 0) != (ssize_t)len)
		goto bad;
	n = (size_t)get_le(buf + 4, 8);
	wh_blake3(buf, len - WH_HASH_LEN, h);
	if (memcmp(buf, magic, 4) || n > max ||
	    12 + n * ent_len + WH_HASH_LEN != len ||
	    memcmp(h, buf + len - WH_HASH_LEN, WH_HASH_LEN))
		goto bad;
	close(fd);
	*pn = n;
	return buf;
bad:
	free(buf);
	close(fd);
	return NULL;
}

/* hashes_read - the entries of the directory's file into the table: all
 * of them, or with |merge| only into free entries (those this process
 * has win) */
static void hashes_read(struct wh_mcache *mc, bool merge)
{
	size_t n;
	uint8_t *buf = dir_read(mc, HASH_FILE, HASH_MAGIC, HASH_ENT_LEN,
				WH_MCACHE_HASHES, &n);

	if (!buf)
		return;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = buf + 12 + i * HASH_ENT_LEN;
		struct key k;

		key_from_bytes(e, &k);
		if (merge)
			hash_free_insert_locked(mc, &k, e + 40);
		else
			hash_insert_locked(mc, &k, e + 40);
	}
	free(buf);
}

/* hashes_load_locked - the table there (allocated), with what the
 * directory has; false if it cannot be allocated */
static bool hashes_load_locked(struct wh_mcache *mc)
{
	if (!mc->hashes) {
		/* read before written: see wh_zalloc (65-85 ms of TLB
		 * flushes on each side for 10,000 files' first entries) */
		mc->hashes = wh_zalloc(WH_MCACHE_HASHES, sizeof(*mc->hashes));
		if (!mc->hashes)
			return false;
	}
	if (!mc->hashes_loaded && mc->dir)
		hashes_read(mc, false);
	mc->hashes_loaded = true;
	return true;
}

/* dir_seal - |buf|, |n| entries of |ent_len| bytes after room for its
 * head, made a file dir_read believes: the head (|magic|, |n|) before
 * them and a BLAKE3 of it all after; the file's length */
static size_t dir_seal(uint8_t *buf, const char *magic, size_t n,
		       size_t ent_len)
{
	size_t len = 12 + n * ent_len;

	memcpy(buf, magic, 4);
	put_le(buf + 4, n, 8);
	wh_blake3(buf, len, buf + len);
	return len + WH_HASH_LEN;
}

/* hashes_pack_locked - the table as the file's bytes (checksum
 * included) into |*pbuf| (|*plen|), with what another process (a host
 * and a get sharing the directory, two gets) saved there meanwhile in
 * what room is left; the table is then clean.  false if it has no news
 * or there is no memory. */
static bool hashes_pack_locked(struct wh_mcache *mc, uint8_t **pbuf,
			       size_t *plen)
{
	uint8_t *buf;
	size_t n = 0;

	if (!mc->dir || !mc->hashes || !mc->hsave.dirty)
		return false;
	hashes_read(mc, true);
	buf = malloc(12 + (size_t)WH_MCACHE_HASHES * HASH_ENT_LEN +
		     WH_HASH_LEN);
	if (!buf)
		return false;
	/* set by set: read back, each entry lands in its own set again */
	for (size_t i = 0; i < WH_MCACHE_HASHES; i++) {
		uint8_t *e = buf + 12 + n * HASH_ENT_LEN;

		if (!mc->hashes[i].used)
			continue;
		key_bytes(&mc->hashes[i].key, e);
		memcpy(e + 40, mc->hashes[i].hash, WH_HASH_LEN);
		n++;
	}
	*pbuf = buf;
	*plen = dir_seal(buf, HASH_MAGIC, n, HASH_ENT_LEN);
	mc->hsave.dirty = false;
	return true;
}

/* dir_write - |len| bytes as the directory's file |name|: written to a
 * temporary name and renamed, so a reader sees the old file or the new
 * one (one writer per process and file at a time) */
static bool dir_write(struct wh_mcache *mc, const char *name,
		      const uint8_t *buf, size_t len)
{
	char path[4200], tmp[4300];
	bool ok = false;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", mc->dir, name);
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd >= 0) {
		ok = write(fd, buf, len) == (ssize_t)len;
		close(fd);
		ok = ok && rename(tmp, path) == 0;
		if (!ok)
			unlink(tmp);
	}
	if (!ok)
		wh_debug("cannot store %s in %s", name, mc->dir);
	return ok;
}

/* dir_tick_locked - the table |s| (the directory's file |name|, packed by
 * |pack|) saved if it has news and was last saved a while ago, so that a
 * process killed by a signal loses little; the clock starts at the first
 * call (|now|).  The file is written outside the lock, which is dropped
 * and taken again. */
static void dir_tick_locked(struct wh_mcache *mc, struct dsave *s,
			    const char *name,
			    bool (*pack)(struct wh_mcache *, uint8_t **,
					 size_t *),
			    uint64_t now)
{
	uint8_t *buf;
	size_t len;
	bool ok;

	if (!s->saved_ns)
		s->saved_ns = now;
	if (s->saving || now - s->saved_ns < mc->hashes_every_ns ||
	    !pack(mc, &buf, &len))
		return;
	s->saving = true;
	pthread_mutex_unlock(&mc->lock);
	ok = dir_write(mc, name, buf, len);
	free(buf);
	pthread_mutex_lock(&mc->lock);
	s->saving = false;
	if (!ok)
		s->dirty = true; /* again at close, or later */
	s->saved_ns = wh_now_ns();
}

/* dir_save - the table packed by |pack|, as the directory's file |name|,
 * if it has news (at close: no other thread uses |mc|) */
static void dir_save(struct wh_mcache *mc, const char *name,
		     bool (*pack)(struct wh_mcache *, uint8_t **, size_t *))
{
	uint8_t *buf;
	size_t len;

	if (pack(mc, &buf, &len)) {
		dir_write(mc, name, buf, len);
		free(buf);
	}
}

/* names_read - the names' versions saved in the directory into the
 * table (at open: no other thread has |mc| yet) */
static void names_read(struct wh_mcache *mc)
{
	size_t n;
	uint8_t *buf = dir_read(mc, NAMES_FILE, NAMES_MAGIC, NAMES_ENT_LEN,
				PREV_ENTRIES, &n);

	if (!buf)
		return;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = buf + 12 + i * NAMES_ENT_LEN;
		uint64_t tag = get_le(e, 8);
		struct prev *p = &mc->prevs[tag & (PREV_ENTRIES - 1)];

		if (!tag)
			continue;
		p->tag = tag;
		key_from_bytes(e + 8, &p->key);
	}
	free(buf);
}

/* names_pack_locked - the table as the file's bytes into |*pbuf|
 * (|*plen|), and clean; false if it has no news or no memory */
static bool names_pack_locked(struct wh_mcache *mc, uint8_t **pbuf,
			      size_t *plen)
{
	uint8_t *buf;
	size_t n = 0;

	if (!mc->dir || !mc->prevs || !mc->nsave.dirty)
		return false;
	buf = malloc(12 + (size_t)PREV_ENTRIES * NAMES_ENT_LEN + WH_HASH_LEN);
	if (!buf)
		return false;
	for (size_t i = 0; i < PREV_ENTRIES; i++) {
		uint8_t *e = buf + 12 + n * NAMES_ENT_LEN;

		if (!mc->prevs[i].tag)
			continue;
		put_le(e, mc->prevs[i].tag, 8);
		key_bytes(&mc->prevs[i].key, e + 8);
		n++;
	}
	*pbuf = buf;
	*plen = dir_seal(buf, NAMES_MAGIC, n, NAMES_ENT_LEN);
	mc->nsave.dirty = false;
	return true;
}

/* names_tick - the names' table saved now and then (dir_tick_locked) */
static void names_tick(struct wh_mcache *mc)
{
	pthread_mutex_lock(&mc->lock);
	dir_tick_locked(mc, &mc->nsave, NAMES_FILE, names_pack_locked,
			wh_now_ns());
	pthread_mutex_unlock(&mc->lock);
}

bool wh_mcache_hash_get(struct wh_mcache *mc, const struct stat *st,
			uint8_t hash[WH_HASH_LEN])
{
	struct hent *set;
	struct key k;
	bool found = false;

	key_of(st, &k);
	pthread_mutex_lock(&mc->lock);
	if (hashes_load_locked(mc)) {
		set = mc->hashes + hash_set(&k) * HASH_WAYS;
		for (int w = 0; w < HASH_WAYS && !found; w++) {
			if (set[w].used &&
			    !memcmp(&set[w].key, &k, sizeof(k))) {
				memcpy(hash, set[w].hash, WH_HASH_LEN);
				set[w].used = ++mc->hclock;
				found = true;
			}
		}
	}
	if (found)
		mc->hhits++;
	else
		mc->hmisses++;
	pthread_mutex_unlock(&mc->lock);
	return found;
}

void wh_mcache_hash_put(struct wh_mcache *mc, const struct stat *st,
			const uint8_t hash[WH_HASH_LEN])
{
	uint64_t now = wh_now_ns();
	struct key k;

	key_of(st, &k);
	pthread_mutex_lock(&mc->lock);
	if (hashes_load_locked(mc)) {
		hash_insert_locked(mc, &k, hash);
		mc->hsave.dirty = true;
	}
	dir_tick_locked(mc, &mc->hsave, HASH_FILE, hashes_pack_locked, now);
	pthread_mutex_unlock(&mc->lock);
}

void wh_mcache_hash_stats(struct wh_mcache *mc, unsigned long *hits,
			  unsigned long *misses)
{
	pthread_mutex_lock(&mc->lock);
	*hits = mc->hhits;
	*misses = mc->hmisses;
	pthread_mutex_unlock(&mc->lock);
}
