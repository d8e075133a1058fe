/*
 * wh_fetch.c - sequential reads from verified chunks, fetched ahead.
 *
 * Locks: wh_fetch.lock protects the queue, the manifest cache, the files'
 * mutable fields and the counters; the RAM cache has its own lock, taken
 * under wh_fetch.lock but never the other way round.  Workers run one job
 * at a time without holding wh_fetch.lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "chunk/wh_zstd.h"
#include "client/wh_fetch.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"

#define DEFAULT_WORKERS 8
#define DEFAULT_WINDOW_MAX (64ULL << 20)
#define DEFAULT_MIN_SIZE (4ULL << 20)
#define WINDOW_START (8ULL << 20)  /* bytes ahead at first */
#define SEQ_SLACK (8ULL << 20)     /* how far from the last read a read may
				    * land and still count as sequential
				    * (the kernel's readahead reorders) */
#define NEAR (1ULL << 20)          /* a read this close continues a run */
#define SEQ_MIN 3                  /* reads in a run before chunks */
#define MANIFEST_AFTER (8ULL << 20) /* bytes of a run before a MANIFEST */
#define MAN_CACHE 16               /* manifests kept */
#define MAX_ENTRIES (1u << 22)     /* chunks in one manifest (16 TiB) */
#define BACKFILL_IDLE_MS 100       /* backfill once reads paused this long */
#define MSTREAM_WAIT_MS 2000       /* how long the host may hold a part */
#define MSTREAM_PAUSE_US 5000      /* after an empty part */
#define RG_BLOCK (1u << 20)        /* READ bytes kept in blocks of this */
#define RG_MAX (32u << 20)         /* at most this many bytes of a run */
#define RG_BLOCKS (RG_MAX / RG_BLOCK)
#define RG_EXTS 64                 /* disjoint ranges received */
#define RD_EXTS 64                 /* disjoint ranges READ in runs */
#define PRE_EXTS 16                /* ... by reads before a run */
#define SMALL_BATCH 16             /* small files one worker sends at
				    * once */
#define SMALL_GET_FILES WH_MAX_SMALL_FILES /* small files in one GET_SMALL */
#define SMALL_GET_BYTES (1u << 20)  /* bytes of them in one GET_SMALL */
#define SMALL_ENT_REQ (2 + 1)       /* a GET_SMALL entry less its path */

struct mchunk {
	uint64_t off;
	uint32_t len;
	uint8_t hash[WH_HASH_LEN];
};

/*
 * A file's manifest at one version.  A streamed one grows: entries are
 * appended (|c| may move) until |done|; n, cap, c, done and stale are
 * protected by wh_fetch.lock, and nobody keeps a pointer into |c| without
 * it.  An old-form one is complete when published.
 */
struct man {
	unsigned int refs; /* protected by wh_fetch.lock */
	bool cached;       /* in wh_fetch.mans; protected by lock */
	struct man *next;  /* wh_fetch.mans */
	char *path;
	size_t path_len;
	struct wh_version v;
	uint32_t n, cap;
	bool done;         /* every entry is known */
	bool stale;        /* the host says the file changed: void */
	bool ended;        /* no more entries will come (done, or failed) */
	uint64_t last_ns;  /* streamed: when the last entries came */
	uint64_t covered;  /* the entries known tile [0, covered) */
	struct mchunk *c;
};

/* A byte range [a, b); kept in sorted, disjoint arrays (ext_add). */
struct ext {
	uint64_t a, b;
};

/* The bytes of a sequential run that came with READ, kept until the
 * manifest says which chunks they make up. */
struct rgn {
	bool on;                    /* keeping bytes from |base| on */
	bool spent;                 /* the run went past what was kept */
	uint64_t base;              /* the run's start */
	uint8_t *blk[RG_BLOCKS];    /* RG_BLOCK bytes each, on demand */
	struct ext ext[RG_EXTS];    /* sorted, disjoint */
	int next;
};

enum man_state {
	MAN_NONE,    /* not asked for */
	MAN_PENDING, /* a worker is fetching it */
	MAN_READY,
	MAN_OFF,     /* unavailable (old host, error): READ only */
	MAN_STALE,   /* the file is no longer at the open's version */
};

struct wh_fetch_file {
	unsigned int refs;           /* the open, jobs; protected by lock */
	struct wh_version v;         /* immutable */
	char path[WH_MAX_PATH + 1];  /* protected by lock */
	size_t path_len;             /* protected by lock */
	enum man_state man_state;    /* protected by lock */
	struct man *man;             /* protected by lock; fixed once READY */
	uint64_t last_end;           /* protected by lock */
	uint64_t seq_start;          /* protected by lock: where the current
				      * sequential run began */
	uint64_t bf_end;             /* protected by lock: the bytes of this
				      * run before it are in chunks that
				      * are fetched or queued */
	unsigned int seq;            /* protected by lock */
	uint32_t pf_next;            /* protected by lock */
	uint64_t window;             /* protected by lock */
	struct rgn rg;               /* protected by lock */
	/* protected by lock: what sequential runs got with READ, for the
	 * backfill once the manifest is complete (a run the kernel's
	 * reordered reads cut in two has its own backfill lost otherwise) */
	struct ext rd[RD_EXTS];
	int nrd;
	/* protected by lock: what reads not (yet) part of a sequential run
	 * asked for with READ; taken into rd once a run near them is */
	struct ext pre[PRE_EXTS];
	int npre;
	bool pass_seq;               /* protected by lock: the last read left
				      * to the caller was sequential */
	bool closed;                 /* protected by lock */
	atomic_bool inval;
};

enum job_kind { J_CHUNK, J_BACKFILL, J_MANIFEST, J_MSTREAM, J_ASSEMBLE,
		J_SMALL };

struct job {
	struct job *next;
	enum job_kind kind;
	struct wh_fetch_file *ff; /* a reference; NULL for J_SMALL */
	struct wh_ram_ent *e;     /* J_CHUNK, J_SMALL: a reference */
	uint8_t *mem;             /* J_ASSEMBLE: the bytes; J_SMALL: the
				   * path, NUL-terminated (owned) */
	struct wh_version v;      /* J_SMALL: the version wanted */
	uint64_t off;
	uint32_t len;
	uint8_t hash[WH_HASH_LEN];
};

struct wh_fetch {
	struct wh_rpc *rpc;
	struct wh_store *store;
	struct wh_ram *ram;
	struct wh_fetch_opts o;
	atomic_uint next_req;

	pthread_mutex_t lock;
	pthread_cond_t cv;                /* work for the workers */
	struct job *qhead, *qtail;        /* protected by lock */
	struct job *bhead, *btail;        /* protected by lock: backfill,
					   * run when qhead is empty */
	unsigned long busy;               /* protected by lock: jobs queued
					   * or running */
	struct job *free_jobs;            /* protected by lock */
	struct man *mans;                 /* protected by lock; newest first */
	unsigned int nmans;               /* protected by lock */
	struct wh_fetch_stats st;         /* protected by lock */
	bool stop;                        /* protected by lock */
	uint64_t last_read_ns;            /* protected by lock: the last
					   * read */
	uint64_t small_bytes;             /* protected by lock: bytes of
					   * J_SMALL jobs queued or running */
	pthread_t *thr;
	int nthr;
};

/* ------------------------------------------------------------ helpers */

static bool version_eq(const struct wh_version *a, const struct wh_version *b)
{
	return a->size == b->size && a->mtime.sec == b->mtime.sec &&
	       a->mtime.nsec == b->mtime.nsec && a->ctime.sec == b->ctime.sec &&
	       a->ctime.nsec == b->ctime.nsec;
}

static void man_free(struct man *m)
{
	free(m->path);
	free(m->c);
	free(m);
}

/* man_unref - lock held */
static void man_unref(struct man *m)
{
	if (m && --m->refs == 0 && !m->cached)
		man_free(m);
}

/* rg_reset - drop the READ bytes kept; lock held */
/* ext_add - merge [a, b) into the sorted, disjoint ranges v[0..*n) (room
 * for |cap|): ranges it overlaps or touches become one.  Returns false,
 * changing nothing, when it needs a new slot and there is none. */
static bool ext_add(struct ext *v, int *n, int cap, uint64_t a, uint64_t b)
{
	int i, k;

	for (i = 0; i < *n && v[i].b < a; i++)
		;
	if (i == *n || v[i].a > b) {
		if (*n == cap)
			return false;
		memmove(&v[i + 1], &v[i], (size_t)(*n - i) * sizeof(v[0]));
		v[i].a = a;
		v[i].b = b;
		(*n)++;
		return true;
	}
	/* overlaps or touches v[i]: merge it and what follows */
	if (a < v[i].a)
		v[i].a = a;
	if (b > v[i].b)
		v[i].b = b;
	for (k = i + 1; k < *n && v[k].a <= v[i].b; k++)
		if (v[k].b > v[i].b)
			v[i].b = v[k].b;
	memmove(&v[i + 1], &v[k], (size_t)(*n - k) * sizeof(v[0]));
	*n -= k - i - 1;
	return true;
}

static void rg_reset(struct rgn *rg)
{
	for (unsigned int i = 0; i < RG_BLOCKS; i++) {
		free(rg->blk[i]);
		rg->blk[i] = NULL;
	}
	rg->on = false;
	rg->next = 0;
}

/* rg_start - keep READ bytes from |base| on; lock held */
static void rg_start(struct rgn *rg, uint64_t base)
{
	rg_reset(rg);
	rg->on = true;
	rg->base = base;
}

/* rg_has - [a, b) was received whole; lock held */
static bool rg_has(const struct rgn *rg, uint64_t a, uint64_t b)
{
	if (!rg->on || a < rg->base || b > rg->base + RG_MAX)
		return false;
	for (int i = 0; i < rg->next; i++)
		if (rg->ext[i].a <= a && b <= rg->ext[i].b)
			return true;
	return false;
}

/* rg_touches - some of [a, b) was received, and all of it could be;
 * lock held */
static bool rg_touches(const struct rgn *rg, uint64_t a, uint64_t b)
{
	if (!rg->on || a < rg->base || b > rg->base + RG_MAX)
		return false;
	for (int i = 0; i < rg->next; i++)
		if (rg->ext[i].a < b && a < rg->ext[i].b)
			return true;
	return false;
}

/* rg_add - keep the bytes of [off, off + len) that fit; lock held */
static void rg_add(struct rgn *rg, uint64_t off, const uint8_t *data,
		   size_t len)
{
	uint64_t a = off, b = off + len, lim = rg->base + RG_MAX;
	int i;

	if (a < rg->base) {
		data += rg->base - a;
		a = rg->base;
	}
	if (b > lim)
		b = lim;
	if (a >= b)
		return;
	/* where it goes: the first range that ends at or after a */
	for (i = 0; i < rg->next && rg->ext[i].b < a; i++)
		;
	if ((i == rg->next || rg->ext[i].a > b) && rg->next == RG_EXTS)
		return; /* too scattered to keep */
	for (uint64_t p = a; p < b;) {
		uint64_t rel = p - rg->base;
		unsigned int bi = (unsigned int)(rel / RG_BLOCK);
		size_t bo = (size_t)(rel % RG_BLOCK);
		size_t n = RG_BLOCK - bo;

		if (n > b - p)
			n = (size_t)(b - p);
		if (!rg->blk[bi]) {
			rg->blk[bi] = malloc(RG_BLOCK);
			if (!rg->blk[bi]) {
				rg_reset(rg);
				return;
			}
		}
		memcpy(rg->blk[bi] + bo, data + (p - a), n);
		p += n;
	}
	(void)ext_add(rg->ext, &rg->next, RG_EXTS, a, b); /* room checked */
}

/* rd_add - note that a run READ [a, b); lock held */
static void rd_add(struct wh_fetch_file *ff, uint64_t a, uint64_t b)
{
	/* a run too scattered to note is not backfilled */
	(void)ext_add(ff->rd, &ff->nrd, RD_EXTS, a, b);
}

/* pre_add - [a, b) was asked for with READ by a read that is not part of a
 * sequential run; lock held.  The kernel's readahead sends its first reads
 * out of order, so a run starts again and again at the start of a file
 * before it counts as one: those reads are backfilled once a run near
 * them does (pre_take).  When there are too many, the older go. */
static void pre_add(struct wh_fetch_file *ff, uint64_t a, uint64_t b)
{
	if (!ext_add(ff->pre, &ff->npre, PRE_EXTS, a, b)) {
		ff->npre = 0;
		(void)ext_add(ff->pre, &ff->npre, PRE_EXTS, a, b);
	}
}

/* pre_take - the reads of pre_add within SEQ_SLACK of the sequential run
 * now on are its own: into rd; lock held */
static void pre_take(struct wh_fetch_file *ff)
{
	uint64_t lo = ff->seq_start > SEQ_SLACK ? ff->seq_start - SEQ_SLACK : 0;
	uint64_t hi = ff->last_end + SEQ_SLACK;
	int k = 0;

	for (int i = 0; i < ff->npre; i++) {
		if (ff->pre[i].b >= lo && ff->pre[i].a <= hi)
			rd_add(ff, ff->pre[i].a, ff->pre[i].b);
		else
			ff->pre[k++] = ff->pre[i];
	}
	ff->npre = k;
}

/* rg_copy - the bytes of [a, b), which rg_has(); lock held */
static void rg_copy(const struct rgn *rg, uint64_t a, uint64_t b,
		    uint8_t *out)
{
	for (uint64_t p = a; p < b;) {
		uint64_t rel = p - rg->base;
		size_t bo = (size_t)(rel % RG_BLOCK);
		size_t n = RG_BLOCK - bo;

		if (n > b - p)
			n = (size_t)(b - p);
		memcpy(out + (p - a), rg->blk[rel / RG_BLOCK] + bo, n);
		p += n;
	}
}

/* ff_unref - lock held */
static void ff_unref(struct wh_fetch_file *ff)
{
	if (ff && --ff->refs == 0) {
		man_unref(ff->man);
		rg_reset(&ff->rg);
		free(ff);
	}
}

/* job_new - lock held; NULL when out of memory */
static struct job *job_new(struct wh_fetch *f)
{
	struct job *j = f->free_jobs;

	if (j) {
		f->free_jobs = j->next;
		memset(j, 0, sizeof(*j));
		return j;
	}
	return calloc(1, sizeof(*j));
}

/* enqueue - lock held; |front| for what a reader waits for */
static void enqueue(struct wh_fetch *f, struct job *j, bool front)
{
	f->busy++;
	j->next = NULL;
	if (front) {
		j->next = f->qhead;
		f->qhead = j;
		if (!f->qtail)
			f->qtail = j;
	} else {
		if (f->qtail)
			f->qtail->next = j;
		else
			f->qhead = j;
		f->qtail = j;
	}
	pthread_cond_signal(&f->cv);
}

/* promote - move the queued job for |e|, if any, to the front; lock
 * held. */
static void promote(struct wh_fetch *f, struct wh_ram_ent *e)
{
	struct job *prev = NULL, *j;

	for (j = f->qhead; j; prev = j, j = j->next)
		if ((j->kind == J_CHUNK || j->kind == J_SMALL) && j->e == e)
			break;
	if (!j || !prev)
		return;
	prev->next = j->next;
	if (f->qtail == j)
		f->qtail = prev;
	j->next = f->qhead;
	f->qhead = j;
}

/*
 * rpc - one request; 0 with the decoded reply in |out| (pointing into
 * |resp|), -errno from the host's ERROR, WH_ERR_* from the transport, or
 * WH_ERR_PROTO for an unexpected reply.
 */
static int reply_check(uint32_t req_id, uint16_t want,
		       const struct wh_buf *resp, struct wh_msg *out);

static int rpc(struct wh_fetch *f, struct wh_msg *m, uint16_t want,
	       struct wh_buf *resp, struct wh_msg *out, int timeout_ms)
{
	uint8_t req[WH_FRAME_HDR_LEN + WH_MAX_REQ_FRAME];
	ssize_t n;
	int rv;

	m->hdr.req_id = atomic_fetch_add(&f->next_req, 1) + 1;
	n = wh_msg_encode(m, req, sizeof(req));
	if (n < 0)
		return -ENAMETOOLONG;
	rv = wh_rpc_call(f->rpc, req, (size_t)n, resp, timeout_ms);
	if (rv < 0)
		return rv;
	return reply_check(m->hdr.req_id, want, resp, out);
}

/* reply_check - decode the reply to request |req_id| into |out|; as
 * rpc() */
static int reply_check(uint32_t req_id, uint16_t want,
		       const struct wh_buf *resp, struct wh_msg *out)
{
	int rv = wh_msg_decode(resp->data, resp->len, WH_MAX_REPLY_FRAME, out);

	if (rv < 0 || out->hdr.req_id != req_id)
		return WH_ERR_PROTO;
	if (out->hdr.type == WH_MSG_ERROR) {
		if (out->u.error.err < 1 || out->u.error.err > 4095)
			return WH_ERR_PROTO;
		return -out->u.error.err;
	}
	if (out->hdr.type != want)
		return WH_ERR_PROTO;
	return 0;
}

static void backfill(struct wh_fetch *f, struct wh_fetch_file *ff,
		     const struct man *mn, uint64_t upto, uint32_t first,
		     uint64_t covered);
static void backfill_reads(struct wh_fetch *f, struct wh_fetch_file *ff,
			   const struct man *mn);
static uint32_t find_chunk(const struct man *mn, uint64_t off);
static void prefetch(struct wh_fetch *f, struct wh_fetch_file *ff,
		     const struct man *mn, uint32_t last, uint64_t end);

/* host_caps - what the host agreed to now */
static uint64_t host_caps(struct wh_fetch *f)
{
	return f->o.caps ? f->o.caps(f->o.caps_ctx) : WH_CAP_CHUNKS;
}

/*
 * assemble - chunk |i| of |mn| is known; if READ brought all of its bytes,
 * have a worker check them against its hash and put them in the store, so
 * that it is never fetched.  Lock held.
 */
static void assemble(struct wh_fetch *f, struct wh_fetch_file *ff,
		     const struct man *mn, uint32_t i)
{
	const struct mchunk *c = &mn->c[i];
	struct job *j;
	uint8_t *mem;

	if (!f->store || !rg_has(&ff->rg, c->off, c->off + c->len))
		return;
	mem = malloc(c->len);
	if (!mem)
		return;
	j = job_new(f);
	if (!j) {
		free(mem);
		return;
	}
	rg_copy(&ff->rg, c->off, c->off + c->len, mem);
	j->kind = J_ASSEMBLE;
	j->ff = ff;
	ff->refs++;
	j->mem = mem;
	j->off = c->off;
	j->len = c->len;
	memcpy(j->hash, c->hash, WH_HASH_LEN);
	enqueue(f, j, false);
}

/* run_assemble - a chunk made of READ replies: verified, then stored. */
static void run_assemble(struct wh_fetch *f, struct job *j, const char *path)
{
	uint8_t h[WH_HASH_LEN];
	struct wh_ram_ent *e;
	int rv;

	/*
	 * Fetched meanwhile: that copy went to the store.  One on its way
	 * may yet fail (a timeout, the host gone), and nobody would then
	 * store the chunk: these bytes are, whatever becomes of it (the
	 * store keeps one copy if both come).
	 */
	if (wh_ram_acquire(f->ram, j->hash, false, &e) == 0) {
		bool ready = wh_ram_ready(f->ram, e);

		wh_ram_put(f->ram, e);
		if (ready)
			return;
	}
	if (wh_store_has(f->store, j->hash, j->len))
		return;
	wh_blake3(j->mem, j->len, h);
	if (memcmp(h, j->hash, WH_HASH_LEN) != 0) {
		/* not the manifest's bytes: the backfill fetches it */
		wh_debug("read bytes at %" PRIu64 " of '%s' do not match "
			 "their chunk", j->off, path);
		return;
	}
	rv = wh_store_put(f->store, j->hash, j->mem, j->len);
	if (rv < 0) {
		wh_debug("chunk store: %s", wh_strerror(rv));
		return;
	}
	pthread_mutex_lock(&f->lock);
	f->st.chunks_from_reads++;
	f->st.bytes_from_reads += j->len;
	pthread_mutex_unlock(&f->lock);
}

/* ---------------------------------------------------------------- jobs */

/* reply_room - the bytes of a CHUNK_REPLY frame carrying |len| bytes (the
 * zstd form's raw length included) */
static size_t reply_room(uint32_t len)
{
	return WH_CHUNK_REPLY_HDR_LEN + 4 + (size_t)len;
}

/* reply_free - a reply buffer not kept as an entry, back to the pool */
static void reply_free(struct wh_fetch *f, struct wh_buf *b)
{
	if (b->data)
		wh_ram_free(f->ram, b->data, b->cap);
	wh_buf_init(b);
}

/* unpack_chunk - a zstd chunk reply: decoded into a RAM cache block (at
 * most j->len bytes), verified, and made the entry, as run_chunk does with
 * raw data.  Frees |resp|.  0, -ENOMEM, or WH_ERR_PROTO when the payload
 * does not decode to the chunk. */
static int unpack_chunk(struct wh_fetch *f, struct job *j,
			const struct wh_msg_chunk_reply *cr,
			struct wh_buf *resp)
{
	uint8_t h[WH_HASH_LEN];
	size_t cap, wire = cr->data_len;
	void *mem = wh_ram_alloc(f->ram, j->len, &cap);
	int rv;

	if (!mem)
		return -ENOMEM;
	rv = wh_zstd_decompress(mem, j->len, cr->data, cr->data_len);
	if (rv == 0) {
		wh_blake3(mem, j->len, h);
		if (memcmp(h, j->hash, WH_HASH_LEN) != 0)
			rv = WH_ERR_PROTO;
	}
	if (rv < 0) {
		wh_ram_free(f->ram, mem, cap);
		return rv;
	}
	reply_free(f, resp);
	wh_ram_fill(f->ram, j->e, mem, cap, mem, j->len);
	pthread_mutex_lock(&f->lock);
	f->st.chunks_fetched++;
	f->st.bytes_fetched += j->len;
	f->st.bytes_wire += wire;
	pthread_mutex_unlock(&f->lock);
	if (f->store) {
		rv = wh_store_put(f->store, j->hash, wh_ram_data(j->e), j->len);
		if (rv < 0)
			wh_debug("chunk store: %s", wh_strerror(rv));
	}
	return 0;
}

/* run_chunk - produce the bytes of one chunk: store, else the wire. */
static void run_chunk(struct wh_fetch *f, struct job *j, const char *path,
		      size_t path_len)
{
	uint8_t h[WH_HASH_LEN];
	struct wh_msg m, r;
	struct wh_buf resp;
	int rv = 0;

	if (f->store) {
		size_t cap;
		void *mem = wh_ram_alloc(f->ram, j->len, &cap);

		if (!mem) {
			wh_ram_fail(f->ram, j->e, -ENOMEM);
			return;
		}
		if (wh_store_get(f->store, j->hash, mem, j->len) == 0) {
			wh_ram_fill(f->ram, j->e, mem, cap, mem, j->len);
			pthread_mutex_lock(&f->lock);
			f->st.chunks_from_store++;
			pthread_mutex_unlock(&f->lock);
			return;
		}
		wh_ram_free(f->ram, mem, cap);
	}
	/*
	 * The reply lands in a block the size of the whole frame, from the
	 * RAM cache's pool when an evicted entry left one (its pages are
	 * mapped already): the network thread copies the stream into it
	 * without growing it, and the entry is the chunk's size, not the
	 * next power of two.  A reply larger than that (a zstd frame that
	 * did not shrink) grows it as before.
	 */
	wh_buf_init(&resp);
	resp.data = wh_ram_alloc(f->ram, reply_room(j->len), &resp.cap);
	if (!resp.data)
		resp.cap = 0;
	for (int tries = 0; tries < 2; tries++) {
		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_CHUNK;
		m.u.chunk.path.p = path;
		m.u.chunk.path.len = (uint16_t)path_len;
		m.u.chunk.version = j->ff->v;
		m.u.chunk.offset = j->off;
		m.u.chunk.length = j->len;
		memcpy(m.u.chunk.hash, j->hash, WH_HASH_LEN);
		rv = rpc(f, &m, WH_MSG_CHUNK_REPLY, &resp, &r, f->o.timeout_ms);
		if (rv < 0)
			break;
		if (r.u.chunk_reply.zstd && r.u.chunk_reply.raw_len == j->len) {
			rv = unpack_chunk(f, j, &r.u.chunk_reply, &resp);
			if (rv == 0)
				return;
			if (rv == -ENOMEM)
				break;
		} else if (r.u.chunk_reply.data_len == j->len) {
			wh_blake3(r.u.chunk_reply.data, j->len, h);
			if (memcmp(h, j->hash, WH_HASH_LEN) == 0)
				break;
		}
		wh_warn("chunk at %" PRIu64 " of '%s' failed verification%s",
			j->off, path, tries ? "" : "; fetching it again");
		pthread_mutex_lock(&f->lock);
		f->st.chunks_bad++;
		pthread_mutex_unlock(&f->lock);
		rv = -EIO;
	}
	if (rv < 0) {
		wh_debug("chunk at %" PRIu64 " of '%s': %s", j->off, path,
			 wh_strerror(rv));
		wh_ram_fail(f->ram, j->e, rv);
		reply_free(f, &resp);
		return;
	}
	/* the reply buffer becomes the entry: no copy */
	wh_ram_fill(f->ram, j->e, resp.data, resp.cap, r.u.chunk_reply.data,
		    j->len);
	pthread_mutex_lock(&f->lock);
	f->st.chunks_fetched++;
	f->st.bytes_fetched += j->len;
	f->st.bytes_wire += j->len;
	pthread_mutex_unlock(&f->lock);
	/* our reference keeps the bytes alive while they are written */
	if (f->store) {
		rv = wh_store_put(f->store, j->hash, wh_ram_data(j->e), j->len);
		if (rv < 0)
			wh_debug("chunk store: %s", wh_strerror(rv));
	}
}

/* wait_other - wait for |e|, which another job produces, until it is
 * ready or failed: 0 when ready, the error it failed with, 1 when
 * |deadline_ns| came first (it is still on its way), -ECANCELED when the
 * fetcher stops.  In slices, so that a stopping fetcher is not held up. */
static int wait_other(struct wh_fetch *f, struct wh_ram_ent *e,
		      const uint8_t *hash, uint64_t deadline_ns)
{
	for (;;) {
		uint64_t now = wh_now_ns(), until = now + 100 * WH_NS_PER_MS;
		struct wh_ram_ent *cur;
		bool stop;
		int rv;

		if (until > deadline_ns)
			until = deadline_ns;
		if (now >= deadline_ns)
			return 1;
		rv = wh_ram_wait(f->ram, e, until);
		if (rv != WH_ERR_TIMEOUT)
			return rv;
		/* the slice ended, or the fetch failed with a timeout: a
		 * failed entry left the table */
		if (wh_ram_acquire(f->ram, hash, false, &cur) < 0)
			return WH_ERR_TIMEOUT;
		wh_ram_put(f->ram, cur);
		if (cur != e)
			return WH_ERR_TIMEOUT;
		pthread_mutex_lock(&f->lock);
		stop = f->stop;
		pthread_mutex_unlock(&f->lock);
		if (stop)
			return -ECANCELED;
	}
}

/* run_backfill - keep in the store a chunk whose bytes the reader got
 * with READ before the manifest came, so that the next read of the file
 * finds all of it there.  Through the RAM cache like any chunk, so that
 * it is fetched once even if a reader wants it meanwhile.  A fetch of it
 * already on its way is waited for: if it fails (a timeout, a reader's
 * fetch abandoned) the chunk is fetched here, else nobody would store
 * it.  Backfill runs only when no other job is queued, so whoever
 * produces that entry is running, not waiting behind this worker. */
static void run_backfill(struct wh_fetch *f, struct job *j, const char *path,
			 size_t path_len)
{
	uint64_t deadline = wh_now_ns() +
			    (uint64_t)f->o.timeout_ms * WH_NS_PER_MS;

	if (!f->store)
		return;
	for (int tries = 0; tries < 3; tries++) {
		int rv;

		if (wh_store_has(f->store, j->hash, j->len))
			return;
		rv = wh_ram_acquire(f->ram, j->hash, true, &j->e);
		if (rv < 0) {
			j->e = NULL;
			return;
		}
		if (rv == 1) {
			run_chunk(f, j, path, path_len); /* the worker drops
							  * j->e */
			return;
		}
		/* there (and stored by whoever fetched it), or on its way */
		rv = wh_ram_ready(f->ram, j->e) ? 0
						: wait_other(f, j->e, j->hash,
							     deadline);
		wh_ram_put(f->ram, j->e);
		j->e = NULL;
		if (rv >= 0 || rv == -ECANCELED)
			return; /* ready, or still on its way at the deadline */
		wh_debug("backfill at %" PRIu64 " of '%s': the fetch it "
			 "waited for failed (%s): fetching it", j->off, path,
			 wh_strerror(rv));
	}
}

/* check_manifest - the chunks tile [0, size) in order, each a valid
 * length. */
static bool check_manifest(const struct man *mn)
{
	uint64_t pos = 0;

	for (uint32_t i = 0; i < mn->n; i++) {
		if (mn->c[i].off != pos || mn->c[i].len == 0 ||
		    mn->c[i].len > WH_MAX_CHUNK)
			return false;
		pos += mn->c[i].len;
	}
	return pos == mn->v.size;
}

/* fetch_manifest - all pages of the manifest; 0, -ESTALE (not the
 * version |want|), or another error. */
static int fetch_manifest(struct wh_fetch *f, const char *path,
			  size_t path_len, const struct wh_version *want,
			  struct man **pm)
{
	/* a host that must hash a big file first may take longer: then this
	 * open reads with READ, and the next finds the manifest made */
	int timeout = f->o.timeout_ms;
	struct man *mn = calloc(1, sizeof(*mn));
	struct wh_buf resp;
	uint32_t have = 0, total = 0;
	int rv = 0;

	if (!mn)
		return -ENOMEM;
	wh_buf_init(&resp);
	do {
		struct wh_msg_manifest_reply *mr;
		struct wh_msg m, r;

		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_MANIFEST;
		m.u.manifest.path.p = path;
		m.u.manifest.path.len = (uint16_t)path_len;
		m.u.manifest.start = have;
		rv = rpc(f, &m, WH_MSG_MANIFEST_REPLY, &resp, &r, timeout);
		if (rv < 0)
			break;
		mr = &r.u.manifest_reply;
		if (!version_eq(&mr->version, want)) {
			rv = -ESTALE;
			break;
		}
		if (have == 0) {
			total = mr->total;
			if (total > MAX_ENTRIES) {
				rv = -EFBIG;
				break;
			}
			mn->c = calloc(total ? total : 1, sizeof(*mn->c));
			if (!mn->c) {
				rv = -ENOMEM;
				break;
			}
		}
		if (mr->total != total || mr->start != have ||
		    mr->count > total - have ||
		    (mr->count == 0 && have < total)) {
			rv = WH_ERR_PROTO;
			break;
		}
		for (uint32_t i = 0; i < mr->count; i++) {
			struct mchunk *c = &mn->c[have + i];

			wh_manifest_entry(mr, i, &c->off, &c->len, c->hash);
		}
		have += mr->count;
	} while (have < total);
	wh_buf_free(&resp);
	mn->n = have;
	mn->cap = have;
	mn->v = *want;
	mn->done = mn->ended = true;
	if (have > 0)
		mn->covered = mn->c[have - 1].off + mn->c[have - 1].len;
	if (rv == 0 && !check_manifest(mn))
		rv = WH_ERR_PROTO;
	if (rv == 0) {
		mn->path = malloc(path_len + 1);
		if (!mn->path)
			rv = -ENOMEM;
		else
			memcpy(mn->path, path, path_len + 1);
		mn->path_len = path_len;
	}
	if (rv < 0) {
		man_free(mn);
		return rv;
	}
	mn->refs = 1;
	*pm = mn;
	return 0;
}

/* man_cache_add - keep |mn| (lock held), dropping the oldest beyond
 * MAN_CACHE. */
static void man_cache_add(struct wh_fetch *f, struct man *mn)
{
	struct man **pp;
	unsigned int i = 0;

	mn->cached = true;
	mn->next = f->mans;
	f->mans = mn;
	f->nmans++;
	for (pp = &f->mans; *pp; i++) {
		struct man *m = *pp;

		if (i < MAN_CACHE) {
			pp = &m->next;
			continue;
		}
		*pp = m->next;
		m->cached = false;
		f->nmans--;
		if (m->refs == 0)
			man_free(m);
	}
}

/* man_cache_find - lock held; a new reference or NULL */
static struct man *man_cache_find(struct wh_fetch *f, const char *path,
				  size_t len, const struct wh_version *v)
{
	for (struct man *m = f->mans; m; m = m->next)
		if (m->path_len == len && memcmp(m->path, path, len) == 0 &&
		    version_eq(&m->v, v) && !m->stale) {
			m->refs++;
			return m;
		}
	return NULL;
}

static void run_manifest(struct wh_fetch *f, struct job *j, const char *path,
			 size_t path_len)
{
	struct man *mn = NULL;
	int rv = fetch_manifest(f, path, path_len, &j->ff->v, &mn);

	pthread_mutex_lock(&f->lock);
	if (rv == 0) {
		f->st.manifests++;
		man_cache_add(f, mn);
		j->ff->man = mn; /* the reference from fetch_manifest */
		j->ff->man_state = MAN_READY;
		/* what the run read meanwhile (perhaps all of the file) */
		if (j->ff->seq >= 2)
			backfill(f, j->ff, mn, j->ff->last_end, mn->n,
				 j->ff->last_end);
		backfill_reads(f, j->ff, mn);
	} else if (rv == -ESTALE) {
		j->ff->man_state = MAN_STALE;
	} else {
		j->ff->man_state = MAN_OFF;
	}
	pthread_mutex_unlock(&f->lock);
	if (rv == -ESTALE)
		wh_info("'%s' changed on the host while open", path);
	else if (rv < 0)
		wh_debug("no manifest for '%s' (%s): reading it with READ",
			 path, wh_strerror(rv));
}

/* man_uncache - take |mn| out of the cache; lock held (a reference is
 * held by the caller) */
static void man_uncache(struct wh_fetch *f, struct man *mn)
{
	for (struct man **pp = &f->mans; *pp; pp = &(*pp)->next)
		if (*pp == mn) {
			*pp = mn->next;
			mn->cached = false;
			f->nmans--;
			return;
		}
}

/*
 * mstream_add - append the entries of part |mp| to |mn|; lock held.  0 or
 * WH_ERR_PROTO (entries that do not tile the file), -ENOMEM, -EFBIG.
 */
static int mstream_add(struct man *mn, const struct wh_msg_manifest_part *mp)
{
	uint64_t covered = mn->covered;

	if (mp->count > MAX_ENTRIES - mn->n)
		return -EFBIG;
	if (mn->n + mp->count > mn->cap) {
		uint32_t cap = mn->cap ? mn->cap : 64;
		struct mchunk *c;

		while (cap < mn->n + mp->count)
			cap *= 2;
		c = realloc(mn->c, (size_t)cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		mn->c = c;
		mn->cap = cap;
	}
	for (uint32_t i = 0; i < mp->count; i++) {
		struct mchunk *c = &mn->c[mn->n + i];

		wh_manifest_part_entry(mp, i, &c->off, &c->len, c->hash);
		if (c->off != covered || c->len == 0 ||
		    c->len > WH_MAX_CHUNK || c->len > mn->v.size - covered)
			return WH_ERR_PROTO;
		covered += c->len;
	}
	mn->n += mp->count;
	mn->covered = covered;
	return 0;
}

/* mstream_end - no more parts will be asked for; lock held */
static void mstream_end(struct wh_fetch *f, struct wh_fetch_file *ff,
			struct man *mn, int rv)
{
	mn->ended = true;
	if (ff->closed)
		rg_reset(&ff->rg); /* kept for this manifest only */
	if (mn->done) {
		f->st.manifests++;
		return;
	}
	/* incomplete: not for later opens */
	if (mn->cached)
		man_uncache(f, mn);
	if (rv == -ESTALE)
		mn->stale = true;
}

/*
 * run_mstream - one part of a manifest fetched with MANIFEST_STREAM while
 * the host hashes the file; the entries are published at once: reads of
 * the bytes they cover are served from chunks, and chunks READ brought
 * whole go to the store.  Unless the manifest is complete, the file
 * changed (its readers get -ESTALE) or an error came (what is known stays
 * usable; the rest is read with READ), the next part is queued behind the
 * chunks, so a worker is never held for the whole stream.  It goes on
 * after the open closed: a reader faster than the host's hashing READ all
 * of the file, and the manifest then says what to backfill.
 */
static void run_mstream(struct wh_fetch *f, struct job *j, const char *path,
			size_t path_len)
{
	struct wh_fetch_file *ff = j->ff;
	uint64_t patience = 4ULL * (uint64_t)f->o.timeout_ms * WH_NS_PER_MS;
	const struct wh_msg_manifest_part *mp;
	struct wh_msg m, r;
	struct wh_buf resp;
	struct man *mn;
	uint32_t have;
	bool stop;
	int rv;

	pthread_mutex_lock(&f->lock);
	mn = ff->man;
	have = mn->n;
	stop = f->stop;
	if (mn->last_ns == 0)
		mn->last_ns = wh_now_ns();
	if (stop)
		mstream_end(f, ff, mn, -ECANCELED);
	pthread_mutex_unlock(&f->lock);
	if (stop)
		return;
	wh_buf_init(&resp);
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST_STREAM;
	m.u.manifest_stream.path.p = path;
	m.u.manifest_stream.path.len = (uint16_t)path_len;
	m.u.manifest_stream.start = have;
	m.u.manifest_stream.wait_ms = MSTREAM_WAIT_MS;
	rv = rpc(f, &m, WH_MSG_MANIFEST_PART, &resp, &r,
		 f->o.timeout_ms + MSTREAM_WAIT_MS);
	mp = &r.u.manifest_part;
	if (rv == 0 && !version_eq(&mp->version, &mn->v))
		rv = -ESTALE; /* another version: never mixed */
	if (rv == 0 && (mp->known < have || (mp->count && mp->start != have) ||
			mp->count > mp->known - have))
		rv = WH_ERR_PROTO;
	pthread_mutex_lock(&f->lock);
	if (rv == 0)
		rv = mstream_add(mn, mp);
	if (rv == 0) {
		f->st.mparts++;
		if (mp->done && mn->n == mp->known) {
			if (mn->covered == mn->v.size)
				mn->done = true;
			else
				rv = WH_ERR_PROTO;
		}
	}
	if (rv == 0 && mn->n > have) {
		/* chunks READ brought whole, and what the reader wants next */
		for (uint32_t i = have; i < mn->n; i++)
			assemble(f, ff, mn, i);
		if (ff->seq >= SEQ_MIN && ff->last_end > 0 &&
		    ff->last_end <= mn->covered)
			prefetch(f, ff, mn, find_chunk(mn, ff->last_end - 1),
				 ff->last_end);
		mn->last_ns = wh_now_ns();
	} else if (rv == 0 && !mn->done &&
		   wh_now_ns() - mn->last_ns > patience) {
		rv = WH_ERR_TIMEOUT; /* no entry for too long */
	}
	if (rv == 0 && mn->done) {
		/* what the runs READ beyond the chunks made of it */
		if (ff->seq >= 2)
			backfill(f, ff, mn, ff->last_end, mn->n,
				 ff->last_end);
		backfill_reads(f, ff, mn);
	}
	if (rv < 0 || mn->done) {
		mstream_end(f, ff, mn, rv);
	} else {
		struct job *n = job_new(f);

		if (n) {
			n->kind = J_MSTREAM;
			n->ff = ff;
			ff->refs++;
			n->off = mp->count == 0; /* pause first */
			enqueue(f, n, false);
		} else {
			mstream_end(f, ff, mn, -ENOMEM);
		}
	}
	pthread_mutex_unlock(&f->lock);
	wh_buf_free(&resp);
	if (rv == -ESTALE)
		wh_info("'%s' changed on the host while open", path);
	else if (rv < 0)
		wh_debug("manifest of '%s' stopped at %" PRIu32 " entries (%s): "
			 "the rest with READ", path, have, wh_strerror(rv));
}

/* small_key - the RAM cache's key for the whole file |path| at |v|:
 * a hash that no chunk's hash can equal (chunks are keyed by the hash of
 * their bytes) */
static void small_key(const char *path, size_t len,
		      const struct wh_version *v, uint8_t key[WH_HASH_LEN])
{
	uint8_t buf[16 + 5 * 8 + WH_MAX_PATH];
	uint64_t w[5] = { v->size, (uint64_t)v->mtime.sec, v->mtime.nsec,
			  (uint64_t)v->ctime.sec, v->ctime.nsec };

	memcpy(buf, "wormhole small\0\0", 16);
	memcpy(buf + 16, w, sizeof(w));
	memcpy(buf + 16 + sizeof(w), path, len);
	wh_blake3(buf, 16 + sizeof(w) + len, key);
}

/* unpack_small_read - the zstd READ_REPLY |rr| of small file |j| (of
 * j->v.size bytes, checked) decoded into its RAM entry.  0, -ENOMEM or
 * WH_ERR_PROTO. */
static int unpack_small_read(struct wh_fetch *f, struct job *j,
			     const struct wh_msg_read_reply *rr)
{
	size_t len = (size_t)j->v.size, cap;
	uint8_t *mem = wh_ram_alloc(f->ram, len, &cap);
	int rv;

	if (!mem)
		return -ENOMEM;
	rv = wh_zstd_decompress(mem, len, rr->data, rr->data_len);
	if (rv < 0) {
		wh_ram_free(f->ram, mem, cap);
		return rv;
	}
	wh_ram_fill(f->ram, j->e, mem, cap, mem, len);
	return 0;
}

/*
 * run_small - fetch the |n| small files of |js| whole into their RAM
 * entries, from a host without WH_CAP_SMALL: one READ each, all in
 * flight at once (with it, run_small_get).  A reply of
 * another version, or short, fails the entry with -ESTALE: the reader
 * then READs for itself and sees the change.
 */
static void run_small(struct wh_fetch *f, struct job **js, int n)
{
	const size_t slot = WH_FRAME_HDR_LEN + WH_MAX_REQ_FRAME;
	uint8_t *reqs = malloc((size_t)n * slot);
	const uint8_t *rp[SMALL_BATCH];
	struct wh_buf resps[SMALL_BATCH];
	size_t lens[SMALL_BATCH];
	uint32_t ids[SMALL_BATCH];
	int errs[SMALL_BATCH];

	for (int k = 0; k < n; k++) {
		struct job *j = js[k];
		struct wh_msg m;
		ssize_t len = -ENOMEM;

		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_READ;
		m.hdr.req_id = ids[k] = atomic_fetch_add(&f->next_req, 1) + 1;
		m.u.read.path.p = (const char *)j->mem;
		m.u.read.path.len = (uint16_t)j->len;
		m.u.read.offset = 0;
		m.u.read.length = (uint32_t)j->v.size;
		if (reqs)
			len = wh_msg_encode(&m, reqs + (size_t)k * slot, slot);
		/* one that cannot be sent goes to the end with nothing */
		rp[k] = reqs ? reqs + (size_t)k * slot : NULL;
		lens[k] = len < 0 ? 0 : (size_t)len;
		wh_buf_init(&resps[k]);
	}
	if (reqs) {
		/* the ones that could be encoded, packed (all, really: the
		 * paths came checked) */
		const uint8_t *sp[SMALL_BATCH];
		struct wh_buf sr[SMALL_BATCH];
		size_t sl[SMALL_BATCH];
		int se[SMALL_BATCH], ns = 0;

		for (int k = 0; k < n; k++) {
			if (!lens[k])
				continue;
			sp[ns] = rp[k];
			sl[ns] = lens[k];
			sr[ns] = resps[k];
			ns++;
		}
		wh_rpc_call_many(f->rpc, sp, sl, (size_t)ns, sr, se,
				 f->o.timeout_ms);
		for (int k = 0, i = 0; k < n; k++) {
			if (!lens[k])
				continue;
			resps[k] = sr[i];
			errs[k] = se[i];
			i++;
		}
	}
	for (int k = 0; k < n; k++) {
		struct job *j = js[k];
		struct wh_msg_read_reply *rr;
		struct wh_msg r;
		int rv = reqs && lens[k] ? errs[k] : -ENOMEM;

		if (rv == 0)
			rv = reply_check(ids[k], WH_MSG_READ_REPLY, &resps[k],
					 &r);
		rr = &r.u.read_reply;
		if (rv == 0 && (!version_eq(&rr->version, &j->v) ||
				rr->raw_len != j->v.size))
			rv = -ESTALE;
		if (rv == 0 && rr->zstd)
			rv = unpack_small_read(f, j, rr);
		if (rv < 0) {
			wh_debug("small file '%s': %s", (const char *)j->mem,
				 wh_strerror(rv));
			wh_ram_fail(f->ram, j->e, rv);
			wh_buf_free(&resps[k]);
			continue;
		}
		if (rr->zstd) {
			wh_buf_free(&resps[k]); /* decoded into the entry */
		} else {
			/* the reply buffer becomes the entry: no copy */
			wh_ram_fill(f->ram, j->e, resps[k].data, resps[k].cap,
				    rr->data, rr->data_len);
		}
		pthread_mutex_lock(&f->lock);
		f->st.small_fetched++;
		f->st.small_bytes += rr->raw_len;
		f->st.bytes_wire += rr->data_len;
		pthread_mutex_unlock(&f->lock);
		if (f->o.small_done)
			f->o.small_done(f->o.small_ctx, (const char *)j->mem,
					j->len, &j->v, j->e);
	}
	free(reqs);
}

/* small_put - the bytes of small file |j|, |data|, into its RAM entry (a
 * copy: the reply holds other files too); false when out of memory */
static bool small_put(struct wh_fetch *f, struct job *j, const uint8_t *data)
{
	size_t len = (size_t)j->v.size, cap;
	uint8_t *mem = wh_ram_alloc(f->ram, len, &cap);

	if (!mem)
		return false;
	memcpy(mem, data, len);
	wh_ram_fill(f->ram, j->e, mem, cap, mem, len);
	return true;
}

/* small_verified - the bytes of DATA entry |ent| hash to its hash */
static bool small_verified(const struct wh_small_ent *ent)
{
	uint8_t h[WH_HASH_LEN];

	wh_blake3(ent->data, (size_t)ent->version.size, h);
	return memcmp(h, ent->hash, WH_HASH_LEN) == 0;
}

/*
 * run_small_get - fetch the |n| small files of |js| whole in one GET_SMALL
 * (the host offers WH_CAP_SMALL).  A DATA entry fills its RAM entry when
 * it is at the listed version and its bytes hash to the hash it came
 * with; one with a bad hash is counted (small_bad) and never cached.
 * Anything else (another version, SAME, ERROR, a failed request) fails
 * the entry: the reader then READs for itself.
 */
static void run_small_get(struct wh_fetch *f, struct job **js, int n)
{
	uint8_t ents[WH_MAX_REQ_FRAME];
	struct wh_msg m, r;
	struct wh_buf resp;
	size_t elen = 0, pos = 0;
	uint64_t fetched = 0, bytes = 0, bad = 0, wire = 0, data = 0;
	uint64_t zwire = 0, zraw = 0;
	bool answered, zipped = false;
	int sent, rv;

	for (sent = 0; sent < n; sent++) {
		ssize_t w = wh_small_req_encode((const char *)js[sent]->mem,
						js[sent]->len, NULL,
						ents + elen,
						sizeof(ents) - 2 - elen);

		if (w < 0)
			break; /* run_small_jobs kept them within a frame */
		elen += (size_t)w;
	}
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GET_SMALL;
	m.u.get_small.count = (uint16_t)sent;
	m.u.get_small.entries = ents;
	m.u.get_small.entries_len = elen;
	wh_buf_init(&resp);
	rv = sent > 0 ? rpc(f, &m, WH_MSG_GET_SMALL_REPLY, &resp, &r,
			    f->o.timeout_ms)
		      : -ENOBUFS;
	if (rv == 0 && r.u.get_small_reply.zstd) {
		zipped = true;
		zwire = r.u.get_small_reply.data_len;
		zraw = r.u.get_small_reply.raw_len;
		rv = wh_zstd_small_unpack(&resp, &r);
		if (rv < 0)
			wire = zwire; /* crossed, and nothing of it decoded */
	}
	if (rv == 0 && r.u.get_small_reply.count != sent)
		rv = WH_ERR_PROTO;
	answered = rv == 0;
	if (rv < 0)
		wh_debug("GET_SMALL of %d files: %s", sent, wh_strerror(rv));
	for (int k = 0; k < n; k++) {
		struct job *j = js[k];
		struct wh_small_ent ent;
		int err = rv < 0 ? rv : -ENOBUFS;

		if (rv == 0 && k < sent) {
			int dr = wh_small_next(&r.u.get_small_reply, &pos,
					       &ent);

			if (dr == 1 && ent.status == WH_SMALL_DATA)
				data += ent.version.size;
			if (dr != 1)
				err = rv = WH_ERR_PROTO; /* and the rest */
			else if (ent.status == WH_SMALL_ERROR)
				err = -ent.err;
			else if (ent.status != WH_SMALL_DATA ||
				 !version_eq(&ent.version, &j->v))
				err = -ESTALE; /* SAME: no hash was sent */
			else if (!small_verified(&ent)) {
				wh_warn("small file '%s' failed verification",
					(const char *)j->mem);
				bad++;
				err = -EIO;
			} else {
				err = small_put(f, j, ent.data) ? 0 : -ENOMEM;
			}
		}
		if (err < 0) {
			if (rv == 0)
				wh_debug("small file '%s': %s",
					 (const char *)j->mem,
					 wh_strerror(err));
			wh_ram_fail(f->ram, j->e, err);
			continue;
		}
		fetched++;
		bytes += j->v.size;
		if (f->o.small_done)
			f->o.small_done(f->o.small_ctx, (const char *)j->mem,
					j->len, &j->v, j->e);
	}
	wh_buf_free(&resp);
	/* the files' data as it crossed, as `get --json` counts it: raw,
	 * their sizes; compressed, the frame's share of it by size (the
	 * entries' headers are protocol, in the frame or not) */
	if (zipped && zraw)
		wire += (uint64_t)((double)data * (double)zwire / (double)zraw);
	else
		wire += data;
	pthread_mutex_lock(&f->lock);
	if (answered)
		f->st.small_batches++;
	f->st.small_fetched += fetched;
	f->st.small_bytes += bytes;
	f->st.small_bad += bad;
	f->st.bytes_wire += wire;
	pthread_mutex_unlock(&f->lock);
}

/*
 * run_small_jobs - |j| and the small-file jobs queued right behind it, up
 * to SMALL_BATCH (READs), or with GET_SMALL up to SMALL_GET_FILES,
 * SMALL_GET_BYTES and a request frame, in one go; called without the
 * lock, returns without it, the jobs done and freed.
 */
static void run_small_jobs(struct wh_fetch *f, struct job *j)
{
	struct job *js[SMALL_GET_FILES];
	bool get = host_caps(f) & WH_CAP_SMALL;
	int n = 1, lim = get ? SMALL_GET_FILES : SMALL_BATCH;
	uint64_t bytes = j->v.size;
	size_t req = 2 + SMALL_ENT_REQ + j->len;

	js[0] = j;
	pthread_mutex_lock(&f->lock);
	while (n < lim && f->qhead && f->qhead->kind == J_SMALL) {
		if (get && (bytes + f->qhead->v.size > SMALL_GET_BYTES ||
			    req + SMALL_ENT_REQ + f->qhead->len >
				    WH_MAX_REQ_FRAME))
			break;
		bytes += f->qhead->v.size;
		req += SMALL_ENT_REQ + f->qhead->len;
		js[n++] = f->qhead;
		f->qhead = f->qhead->next;
		if (!f->qhead)
			f->qtail = NULL;
	}
	pthread_mutex_unlock(&f->lock);
	if (get)
		run_small_get(f, js, n);
	else
		run_small(f, js, n);
	for (int k = 0; k < n; k++) {
		wh_ram_put(f->ram, js[k]->e);
		js[k]->e = NULL;
		free(js[k]->mem);
		js[k]->mem = NULL;
	}
	pthread_mutex_lock(&f->lock);
	for (int k = 0; k < n; k++) {
		f->small_bytes -= js[k]->v.size;
		js[k]->next = f->free_jobs;
		f->free_jobs = js[k];
		f->busy--;
	}
	pthread_mutex_unlock(&f->lock);
}

static void *worker_main(void *arg)
{
	struct wh_fetch *f = arg;
	char path[WH_MAX_PATH + 1];

	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct job *j;
		size_t path_len;

		while (!f->stop && !f->qhead) {
			uint64_t now = wh_now_ns(), idle_at;
			struct timespec ts;

			if (!f->bhead) {
				pthread_cond_wait(&f->cv, &f->lock);
				continue;
			}
			/* backfill waits until the readers pause: it must
			 * not slow them down */
			idle_at = f->last_read_ns +
				  BACKFILL_IDLE_MS * WH_NS_PER_MS;
			if (now >= idle_at)
				break;
			ts.tv_sec = (time_t)(idle_at / WH_NS_PER_S);
			ts.tv_nsec = (long)(idle_at % WH_NS_PER_S);
			pthread_cond_timedwait(&f->cv, &f->lock, &ts);
		}
		if (f->stop)
			break;
		if (f->qhead) {
			j = f->qhead;
			f->qhead = j->next;
			if (!f->qhead)
				f->qtail = NULL;
		} else {
			j = f->bhead;
			f->bhead = j->next;
			if (!f->bhead)
				f->btail = NULL;
		}
		if (j->ff) {
			path_len = j->ff->path_len;
			memcpy(path, j->ff->path, path_len + 1);
		} else {
			path_len = j->len;
			memcpy(path, j->mem, path_len + 1);
		}
		pthread_mutex_unlock(&f->lock);

		if (j->kind == J_SMALL) {
			run_small_jobs(f, j);
			pthread_mutex_lock(&f->lock);
			continue;
		}
		if (j->kind == J_CHUNK)
			run_chunk(f, j, path, path_len);
		else if (j->kind == J_BACKFILL)
			run_backfill(f, j, path, path_len);
		else if (j->kind == J_MANIFEST)
			run_manifest(f, j, path, path_len);
		else if (j->kind == J_MSTREAM) {
			if (j->off) /* the last part was empty */
				usleep(MSTREAM_PAUSE_US);
			run_mstream(f, j, path, path_len);
		}
		else
			run_assemble(f, j, path);
		if (j->e)
			wh_ram_put(f->ram, j->e);
		free(j->mem);
		j->mem = NULL;

		pthread_mutex_lock(&f->lock);
		ff_unref(j->ff);
		j->next = f->free_jobs;
		f->free_jobs = j;
		f->busy--;
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

/* ----------------------------------------------------------------- API */

int wh_fetch_new(struct wh_rpc *rpc, struct wh_store *store,
		 struct wh_ram *ram, const struct wh_fetch_opts *opts,
		 struct wh_fetch **pf)
{
	struct wh_fetch *f;
	sigset_t all, old;
	int rv = 0;

	*pf = NULL;
	if (!rpc || !ram || !opts)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->rpc = rpc;
	f->store = store;
	f->ram = ram;
	f->o = *opts;
	if (f->o.timeout_ms <= 0)
		f->o.timeout_ms = 8000;
	if (f->o.workers <= 0)
		f->o.workers = DEFAULT_WORKERS;
	if (f->o.window_max == 0)
		f->o.window_max = DEFAULT_WINDOW_MAX;
	if (f->o.min_size == 0)
		f->o.min_size = DEFAULT_MIN_SIZE;
	pthread_mutex_init(&f->lock, NULL);
	{
		pthread_condattr_t attr;

		pthread_condattr_init(&attr);
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		pthread_cond_init(&f->cv, &attr);
		pthread_condattr_destroy(&attr);
	}
	f->thr = calloc((size_t)f->o.workers, sizeof(*f->thr));
	if (!f->thr) {
		wh_fetch_del(f);
		return -ENOMEM;
	}
	/* workers take no signals: they belong to the request loop */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < f->o.workers; i++) {
		rv = -pthread_create(&f->thr[i], NULL, worker_main, f);
		if (rv < 0)
			break;
		f->nthr++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv < 0) {
		wh_fetch_del(f);
		return rv;
	}
	*pf = f;
	return 0;
}

void wh_fetch_del(struct wh_fetch *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->lock);
	for (int i = 0; i < f->nthr; i++)
		pthread_join(f->thr[i], NULL);
	free(f->thr);
	if (f->btail) { /* one list to drain */
		f->btail->next = f->qhead;
		f->qhead = f->bhead;
	}
	while (f->qhead) {
		struct job *j = f->qhead;

		f->qhead = j->next;
		if (j->e) {
			wh_ram_fail(f->ram, j->e, -ECANCELED);
			wh_ram_put(f->ram, j->e);
		}
		free(j->mem);
		ff_unref(j->ff);
		free(j);
	}
	while (f->free_jobs) {
		struct job *j = f->free_jobs;

		f->free_jobs = j->next;
		free(j);
	}
	while (f->mans) {
		struct man *m = f->mans;

		f->mans = m->next;
		m->cached = false;
		if (m->refs == 0)
			man_free(m);
	}
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

int wh_fetch_open(struct wh_fetch *f, const char *path, size_t len,
		  const struct wh_version *v, struct wh_fetch_file **pff)
{
	struct wh_fetch_file *ff;

	*pff = NULL;
	if (len > WH_MAX_PATH)
		return -ENAMETOOLONG;
	ff = calloc(1, sizeof(*ff));
	if (!ff)
		return -ENOMEM;
	ff->refs = 1;
	ff->v = *v;
	memcpy(ff->path, path, len);
	ff->path[len] = '\0';
	ff->path_len = len;
	ff->window = WINDOW_START < f->o.window_max ? WINDOW_START
						    : f->o.window_max;
	atomic_init(&ff->inval, false);
	*pff = ff;
	return 0;
}

void wh_fetch_close(struct wh_fetch *f, struct wh_fetch_file *ff)
{
	if (!ff)
		return;
	pthread_mutex_lock(&f->lock);
	ff->closed = true;
	if (ff->man_state == MAN_READY && ff->man->done)
		backfill_reads(f, ff, ff->man);
	/* the READ bytes wait for a manifest on its way, not for more reads */
	if (ff->man_state != MAN_READY || ff->man->ended)
		rg_reset(&ff->rg);
	ff_unref(ff);
	pthread_mutex_unlock(&f->lock);
}

void wh_fetch_file_inval(struct wh_fetch_file *ff)
{
	atomic_store(&ff->inval, true);
}

/* find_chunk - the index of the chunk holding |off| (< size) */
static uint32_t find_chunk(const struct man *mn, uint64_t off)
{
	uint32_t lo = 0, hi = mn->n;

	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (mn->c[mid].off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/*
 * classify - note where this read landed; lock held.  A run starts at
 * any read (seq 1); a read that continues it (within NEAR of where the
 * last ended) counts up to SEQ_MIN, when the file is read sequentially;
 * from then on reads may land anywhere within SEQ_SLACK (the kernel's
 * readahead reorders its requests).  True if sequential.
 */
static bool classify(struct wh_fetch_file *ff, uint64_t off, size_t size)
{
	uint64_t end = off + size;
	uint64_t slack = ff->seq >= SEQ_MIN ? SEQ_SLACK : NEAR;

	if (ff->seq > 0 && off <= ff->last_end + slack &&
	    end + slack >= ff->last_end) {
		if (ff->seq < SEQ_MIN)
			ff->seq++;
		if (end > ff->last_end)
			ff->last_end = end;
	} else {
		ff->seq = 1;
		ff->seq_start = off;
		ff->last_end = end;
		ff->bf_end = off;
	}
	return ff->seq >= SEQ_MIN;
}

/* prefetch - start fetching the chunks after |last| up to the window
 * beyond |end|; lock held. */
static void prefetch(struct wh_fetch *f, struct wh_fetch_file *ff,
		     const struct man *mn, uint32_t last, uint64_t end)
{
	uint64_t limit = end + ff->window;
	uint32_t i = last + 1;

	/* carry on where the last prefetch stopped, unless the reader
	 * moved back */
	if (ff->pf_next > i && ff->pf_next < mn->n &&
	    mn->c[ff->pf_next - 1].off <= limit)
		i = ff->pf_next;
	for (; i < mn->n && mn->c[i].off < limit; i++) {
		struct wh_ram_ent *e;
		struct job *j;
		int rv;

		/* READ brought some of it: the reader READs the rest */
		if (rg_touches(&ff->rg, mn->c[i].off,
			       mn->c[i].off + mn->c[i].len))
			continue;
		rv = wh_ram_acquire(f->ram, mn->c[i].hash, true, &e);

		if (rv < 0)
			break;
		if (rv == 0) {
			wh_ram_put(f->ram, e); /* there, or on its way */
			continue;
		}
		j = job_new(f);
		if (!j) {
			wh_ram_fail(f->ram, e, -ENOMEM);
			wh_ram_put(f->ram, e);
			break;
		}
		j->kind = J_CHUNK;
		j->ff = ff;
		ff->refs++;
		j->e = e;
		j->off = mn->c[i].off;
		j->len = mn->c[i].len;
		memcpy(j->hash, mn->c[i].hash, WH_HASH_LEN);
		enqueue(f, j, false);
	}
	ff->pf_next = i;
}

/* queue_backfill - chunk |k| of |mn| is to be kept in the store, after
 * everything else; false when out of memory.  Lock held. */
static bool queue_backfill(struct wh_fetch *f, struct wh_fetch_file *ff,
			   const struct man *mn, uint32_t k)
{
	struct job *j;

	/* READ brought it whole: assembled, not fetched */
	if (rg_has(&ff->rg, mn->c[k].off, mn->c[k].off + mn->c[k].len))
		return true;
	j = job_new(f);
	if (!j)
		return false;
	j->kind = J_BACKFILL;
	j->ff = ff;
	ff->refs++;
	j->off = mn->c[k].off;
	j->len = mn->c[k].len;
	memcpy(j->hash, mn->c[k].hash, WH_HASH_LEN);
	j->next = NULL;
	if (f->btail)
		f->btail->next = j;
	else
		f->bhead = j;
	f->btail = j;
	f->busy++;
	pthread_cond_signal(&f->cv);
	return true;
}

/*
 * backfill - the current run read [bf_end, |upto|) with READ (before the
 * manifest came): queue the chunks holding those bytes, behind everything
 * else, so that the store ends up with all of the file; chunks from
 * |first| on are the reader's own.  Then the run is covered up to
 * |covered|.  Lock held.
 */
static void backfill(struct wh_fetch *f, struct wh_fetch_file *ff,
		     const struct man *mn, uint64_t upto, uint32_t first,
		     uint64_t covered)
{
	if (f->store && mn->n > 0 && ff->bf_end < upto &&
	    ff->bf_end < mn->v.size) {
		uint32_t from = find_chunk(mn, ff->bf_end);
		uint32_t to = upto >= mn->v.size ? mn->n
						 : find_chunk(mn, upto - 1) + 1;

		if (to > first)
			to = first;
		for (uint32_t k = from; k < to; k++)
			if (!queue_backfill(f, ff, mn, k))
				break;
	}
	if (covered > ff->bf_end)
		ff->bf_end = covered;
}

/* backfill_reads - the manifest is complete: queue the chunks holding
 * what sequential runs got with READ (rd_add), whatever became of the
 * runs; lock held */
static void backfill_reads(struct wh_fetch *f, struct wh_fetch_file *ff,
			   const struct man *mn)
{
	if (!f->store || mn->n == 0)
		return;
	for (int r = 0; r < ff->nrd; r++) {
		uint64_t a = ff->rd[r].a, b = ff->rd[r].b;

		if (b > mn->covered)
			b = mn->covered;
		if (a >= b)
			continue;
		for (uint32_t k = find_chunk(mn, a);
		     k < mn->n && mn->c[k].off < b; k++)
			if (!queue_backfill(f, ff, mn, k))
				return;
	}
	ff->nrd = 0;
}

static void release(struct wh_fetch *f, struct wh_fetch_reply *out)
{
	for (int i = 0; i < out->n; i++)
		wh_ram_put(f->ram, out->ents[i]);
	out->n = 0;
}

/* start_stream - a streamed manifest for |ff|, fetched by a worker; lock
 * held */
static void start_stream(struct wh_fetch *f, struct wh_fetch_file *ff,
			 const char *path, size_t len)
{
	struct man *mn = calloc(1, sizeof(*mn));
	struct job *j = mn ? job_new(f) : NULL;

	if (mn)
		mn->path = malloc(len + 1);
	if (!j || !mn->path) {
		if (j) {
			j->next = f->free_jobs;
			f->free_jobs = j;
		}
		if (mn)
			free(mn->path);
		free(mn);
		return; /* READ, and perhaps another try later */
	}
	memcpy(mn->path, path, len);
	mn->path[len] = '\0';
	mn->path_len = len;
	mn->v = ff->v;
	mn->refs = 1; /* |ff|'s */
	man_cache_add(f, mn);
	ff->man = mn;
	ff->man_state = MAN_READY;
	j->kind = J_MSTREAM;
	j->ff = ff;
	ff->refs++;
	enqueue(f, j, true);
}

/* rg_follow - keep the READ bytes of a sequential run until the manifest
 * says what chunks they are; lock held */
static void rg_follow(struct wh_fetch *f, struct wh_fetch_file *ff,
		      uint64_t off)
{
	struct rgn *rg = &ff->rg;

	if (!f->store || ff->v.size < f->o.min_size)
		return;
	/* another run: its own bytes, unless it starts where the kept ones
	 * can be added to (the kernel's first reads of a file come out of
	 * order, and each starts a run again) */
	if (rg->on && ff->seq_start >= rg->base &&
	    ff->seq_start < rg->base + RG_MAX) {
		/* kept */
	} else if ((rg->on || rg->spent) && rg->base != ff->seq_start) {
		rg_reset(rg);
		rg->spent = false;
	}
	if (!rg->on && !rg->spent && (ff->seq >= 2 || off == 0)) {
		rg_start(rg, ff->seq_start);
	} else if (rg->on && off >= rg->base + RG_MAX + SEQ_SLACK) {
		const struct man *mn =
			ff->man_state == MAN_READY ? ff->man : NULL;

		/* the reader is past them (and the READs that were in flight
		 * have come back): once their entries are known, or will never
		 * be, what could be made of them was */
		if (!mn || mn->ended || mn->covered >= rg->base + RG_MAX) {
			rg_reset(rg);
			rg->spent = true;
		}
	}
}

/* rg_wants - the chunk |c| is not in RAM or the store but part of it came
 * with READ: READ the rest too (it is then assembled, not fetched); lock
 * held */
static bool rg_wants(struct wh_fetch *f, struct wh_fetch_file *ff,
		     const struct mchunk *c)
{
	struct wh_ram_ent *e;
	int rv;

	if (!rg_touches(&ff->rg, c->off, c->off + c->len))
		return false;
	rv = wh_ram_acquire(f->ram, c->hash, false, &e);
	if (rv >= 0) {
		wh_ram_put(f->ram, e);
		return false;
	}
	return !wh_store_has(f->store, c->hash, c->len);
}

void wh_fetch_count_wire(struct wh_fetch *f, uint64_t n)
{
	pthread_mutex_lock(&f->lock);
	f->st.bytes_wire += n;
	pthread_mutex_unlock(&f->lock);
}

void wh_fetch_got_read(struct wh_fetch *f, struct wh_fetch_file *ff,
		       uint64_t off, const void *data, size_t len)
{
	struct man *mn;

	if (len == 0)
		return;
	pthread_mutex_lock(&f->lock);
	if (ff->pass_seq && f->store && ff->v.size >= f->o.min_size)
		rd_add(ff, off, off + len);
	if (!ff->rg.on) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	rg_add(&ff->rg, off, data, len);
	mn = ff->man_state == MAN_READY ? ff->man : NULL;
	if (mn && !mn->stale && off < mn->covered) {
		/* the known chunks these bytes may have completed */
		for (uint32_t i = find_chunk(mn, off);
		     i < mn->n && mn->c[i].off < off + len; i++)
			assemble(f, ff, mn, i);
	}
	pthread_mutex_unlock(&f->lock);
}

size_t wh_fetch_small(struct wh_fetch *f, const struct wh_fetch_small *v,
		      size_t n)
{
	/* files in RAM already: told to small_done again once unlocked
	 * (fetched before their reader knew their names, say) */
	struct wh_ram_ent **ready = NULL;
	size_t *ready_at = NULL;
	size_t queued = 0, nready = 0;

	if (f->o.small_done && n > 0) {
		ready = malloc(n * sizeof(*ready));
		ready_at = malloc(n * sizeof(*ready_at));
		if (!ready || !ready_at) {
			free(ready);
			free(ready_at);
			ready = NULL;
			ready_at = NULL;
		}
	}
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < n && !f->stop; i++) {
		uint8_t key[WH_HASH_LEN];
		struct wh_ram_ent *e;
		struct job *j;
		char *p;
		int rv;

		if (v[i].v.size == 0 || v[i].v.size > WH_FETCH_SMALL_MAX ||
		    v[i].len == 0 || v[i].len > WH_MAX_PATH)
			continue;
		if (f->small_bytes + v[i].v.size > f->o.window_max)
			break; /* enough on its way: the rest READ for itself */
		small_key(v[i].path, v[i].len, &v[i].v, key);
		rv = wh_ram_acquire(f->ram, key, true, &e);
		if (rv < 0)
			break;
		if (rv == 0) {
			/* there, or on its way */
			if (ready && wh_ram_ready(f->ram, e)) {
				ready[nready] = e;
				ready_at[nready++] = i;
			} else {
				wh_ram_put(f->ram, e);
			}
			continue;
		}
		j = job_new(f);
		p = malloc(v[i].len + 1);
		if (!j || !p) {
			wh_ram_fail(f->ram, e, -ENOMEM);
			wh_ram_put(f->ram, e);
			free(p);
			if (j) {
				j->next = f->free_jobs;
				f->free_jobs = j;
			}
			break;
		}
		memcpy(p, v[i].path, v[i].len);
		p[v[i].len] = '\0';
		j->kind = J_SMALL;
		j->e = e;
		j->mem = (uint8_t *)p;
		j->len = (uint32_t)v[i].len;
		j->v = v[i].v;
		f->small_bytes += v[i].v.size;
		f->st.small_queued++;
		enqueue(f, j, false);
		queued++;
	}
	pthread_mutex_unlock(&f->lock);
	for (size_t k = 0; k < nready; k++) {
		const struct wh_fetch_small *s = &v[ready_at[k]];

		if (wh_ram_len(ready[k]) == s->v.size)
			f->o.small_done(f->o.small_ctx, s->path, s->len, &s->v,
					ready[k]);
		wh_ram_put(f->ram, ready[k]);
	}
	free(ready);
	free(ready_at);
	return queued;
}

/*
 * read_small - serve the read from the whole file fetched by
 * wh_fetch_small, waiting for it if it is on its way.  1 with the bytes
 * in |out|, 0 when it is not there (or its fetch failed): the caller
 * READs.
 */
static int read_small(struct wh_fetch *f, struct wh_fetch_file *ff,
		      const char *path, size_t len, uint64_t off, size_t size,
		      struct wh_fetch_reply *out)
{
	uint8_t key[WH_HASH_LEN];
	struct wh_ram_ent *e;
	uint64_t end;

	small_key(path, len, &ff->v, key);
	if (wh_ram_acquire(f->ram, key, false, &e) != 0)
		return 0;
	if (!wh_ram_ready(f->ram, e)) {
		pthread_mutex_lock(&f->lock);
		promote(f, e); /* a reader waits for it: it goes first */
		pthread_mutex_unlock(&f->lock);
		if (wh_ram_wait(f->ram, e, wh_now_ns() +
				(uint64_t)f->o.timeout_ms * WH_NS_PER_MS) < 0) {
			wh_ram_put(f->ram, e);
			return 0;
		}
	}
	if (wh_ram_len(e) != ff->v.size) {
		wh_ram_put(f->ram, e);
		return 0;
	}
	end = off + size < ff->v.size ? off + size : ff->v.size;
	if (off >= end) {
		wh_ram_put(f->ram, e);
	} else {
		out->iov[0].iov_base = (void *)(wh_ram_data(e) + off);
		out->iov[0].iov_len = (size_t)(end - off);
		out->ents[0] = e;
		out->n = 1;
	}
	pthread_mutex_lock(&f->lock);
	f->st.reads_small++;
	f->last_read_ns = wh_now_ns();
	pthread_mutex_unlock(&f->lock);
	return 1;
}

int wh_fetch_read(struct wh_fetch *f, struct wh_fetch_file *ff,
		  const char *path, size_t len, uint64_t off, size_t size,
		  struct wh_fetch_reply *out)
{
	uint64_t coff[WH_FETCH_MAX_IOV];
	uint32_t clen[WH_FETCH_MAX_IOV];
	uint64_t end, deadline;
	struct man *mn;
	uint32_t first, i;
	bool seq, waited = false;
	int rv = 0;

	out->n = 0;
	if (atomic_exchange(&ff->inval, false) || len > WH_MAX_PATH ||
	    size == 0)
		goto pass_unlocked;
	if (ff->v.size > 0 && ff->v.size <= WH_FETCH_SMALL_MAX &&
	    read_small(f, ff, path, len, off, size, out))
		return 1;
	pthread_mutex_lock(&f->lock);
	if (ff->path_len != len || memcmp(ff->path, path, len) != 0) {
		memcpy(ff->path, path, len);
		ff->path[len] = '\0';
		ff->path_len = len;
	}
	seq = classify(ff, off, size);
	if (seq && ff->npre)
		pre_take(ff);
	rg_follow(f, ff, off);
	f->last_read_ns = wh_now_ns();
	if (ff->v.size < f->o.min_size)
		goto pass;
	/*
	 * The manifest: at once if we have it; from the host only once a run
	 * went beyond what the kernel's readahead reads for a peek at a file
	 * (the host may have to hash all of it first).
	 */
	if ((ff->seq >= 2 || off == 0) && ff->man_state == MAN_NONE) {
		mn = man_cache_find(f, path, len, &ff->v);
		if (mn) {
			ff->man = mn;
			ff->man_state = MAN_READY;
		} else if (ff->seq >= 2 &&
			   ff->last_end - ff->seq_start >= MANIFEST_AFTER) {
			uint64_t caps = host_caps(f);
			struct job *j = NULL;

			/* never a request the host did not agree to */
			if (!(caps & WH_CAP_CHUNKS))
				ff->man_state = MAN_OFF;
			else if (caps & WH_CAP_MSTREAM)
				start_stream(f, ff, path, len);
			else
				j = job_new(f);
			if (j) {
				j->kind = J_MANIFEST;
				j->ff = ff;
				ff->refs++;
				ff->man_state = MAN_PENDING;
				enqueue(f, j, true);
			}
		}
	}
	if (ff->man_state == MAN_STALE) {
		pthread_mutex_unlock(&f->lock);
		return -ESTALE;
	}
	if (ff->man_state != MAN_READY)
		goto pass;
	mn = ff->man;
	if (mn->stale) {
		ff->man_state = MAN_STALE;
		pthread_mutex_unlock(&f->lock);
		return -ESTALE;
	}
	if (off >= mn->v.size) {
		f->st.reads_chunked++;
		pthread_mutex_unlock(&f->lock);
		return 1; /* the end of the file: no bytes */
	}
	end = off + size < mn->v.size ? off + size : mn->v.size;
	if (end > mn->covered)
		goto pass; /* its entries are not known yet */
	first = find_chunk(mn, off);
	for (i = first; i < mn->n && mn->c[i].off < end; i++) {
		struct wh_ram_ent *e;

		if (out->n == WH_FETCH_MAX_IOV ||
		    (seq && ff->rg.on && rg_wants(f, ff, &mn->c[i]))) {
			release(f, out);
			goto pass;
		}
		rv = wh_ram_acquire(f->ram, mn->c[i].hash, seq, &e);
		if (rv == -ENOENT) {
			release(f, out);
			goto pass; /* random, not in RAM: a READ is faster */
		}
		if (rv < 0) {
			release(f, out);
			pthread_mutex_unlock(&f->lock);
			return rv;
		}
		if (rv == 1) {
			/* ours to produce: a worker does, before prefetches */
			struct job *j = job_new(f);

			if (!j) {
				wh_ram_fail(f->ram, e, -ENOMEM);
				wh_ram_put(f->ram, e);
				release(f, out);
				pthread_mutex_unlock(&f->lock);
				return -ENOMEM;
			}
			j->kind = J_CHUNK;
			j->ff = ff;
			ff->refs++;
			j->e = e;
			j->off = mn->c[i].off;
			j->len = mn->c[i].len;
			memcpy(j->hash, mn->c[i].hash, WH_HASH_LEN);
			wh_ram_hold(f->ram, e);
			enqueue(f, j, true);
		} else if (!wh_ram_ready(f->ram, e)) {
			if (!seq) {
				wh_ram_put(f->ram, e);
				release(f, out);
				goto pass; /* not waiting for a whole chunk */
			}
			promote(f, e);
		}
		coff[out->n] = mn->c[i].off;
		clen[out->n] = mn->c[i].len;
		out->ents[out->n++] = e;
	}
	if (seq)
		prefetch(f, ff, mn, i - 1, end);
	if (seq)
		backfill(f, ff, mn, off, first,
			 mn->c[i - 1].off + mn->c[i - 1].len);
	pthread_mutex_unlock(&f->lock);

	deadline = wh_now_ns() + (uint64_t)f->o.timeout_ms * WH_NS_PER_MS;
	for (int k = 0; k < out->n; k++) {
		struct wh_ram_ent *e = out->ents[k];
		uint64_t a, b;

		if (!wh_ram_ready(f->ram, e)) {
			waited = true;
			rv = wh_ram_wait(f->ram, e, deadline);
			if (rv < 0)
				break;
		}
		if (wh_ram_len(e) != clen[k]) {
			rv = -EIO; /* a manifest that lies about a length */
			break;
		}
		a = off > coff[k] ? off - coff[k] : 0;
		b = end < coff[k] + clen[k] ? end - coff[k] : clen[k];
		out->iov[k].iov_base = (void *)(wh_ram_data(e) + a);
		out->iov[k].iov_len = (size_t)(b - a);
	}
	pthread_mutex_lock(&f->lock);
	if (rv < 0) {
		pthread_mutex_unlock(&f->lock);
		release(f, out);
		return rv;
	}
	f->st.reads_chunked++;
	if (!seq)
		f->st.reads_ram++;
	if (waited && ff->window < f->o.window_max) {
		ff->window *= 2;
		if (ff->window > f->o.window_max)
			ff->window = f->o.window_max;
	}
	pthread_mutex_unlock(&f->lock);
	return 1;

pass:
	ff->pass_seq = seq;
	if (!seq && f->store && ff->v.size >= f->o.min_size &&
	    off < ff->v.size)
		pre_add(ff, off, off + size < ff->v.size ? off + size
							  : ff->v.size);
	f->st.reads_passed++;
	pthread_mutex_unlock(&f->lock);
	return 0;
pass_unlocked:
	pthread_mutex_lock(&f->lock);
	f->st.reads_passed++;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void wh_fetch_done(struct wh_fetch *f, struct wh_fetch_reply *out)
{
	release(f, out);
}

void wh_fetch_get_stats(struct wh_fetch *f, struct wh_fetch_stats *st)
{
	pthread_mutex_lock(&f->lock);
	*st = f->st;
	st->busy = f->busy;
	pthread_mutex_unlock(&f->lock);
	st->store_corrupt = f->store ? wh_store_corrupt(f->store) : 0;
}
