/*
 * wh_get.c - bulk copy from a host: walk, manifests, chunks from the
 * store, the old destination or the wire, verified, renamed into place.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "chunk/wh_zstd.h"
#include "client/wh_get.h"
#include "client/wh_window.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "host/wh_mcache.h"
#include "io/wh_io.h"
#include "proto/wh_proto.h"

struct entry {
	char *rpath, *lpath;
	struct wh_attr attr;
	size_t parent; /* its directory's entry; SIZE_MAX for the top */
	size_t link_to; /* the file this one is a hard link of, SIZE_MAX if
			 * none: it is linked, not copied */
	bool made;     /* a directory this get created (so it was empty) */
};

struct ctx {
	struct wh_rpc rpc;            /* the host */
	uint64_t (*caps)(void *ctx); /* the capabilities it agreed to */
	void *caps_ctx;
	struct wh_store *store;
	const struct wh_get_opts *o;
	struct wh_get_stats *st;
	char *err;
	size_t errlen;
	struct entry *ents;
	size_t nents, cap;
	uint64_t total_bytes;
	uint64_t t0;
	uint64_t last_draw;     /* protected by lock */
	pthread_mutex_t lock;
	uint64_t done_bytes;    /* protected by lock */
	uint32_t next_req;      /* protected by lock */
	bool store_full_warned; /* protected by lock */
	size_t next_ent;        /* next entry for a file worker, under lock */
	int fetchers;           /* fetcher threads of all files, under lock */
	struct wh_window win;   /* chunk requests allowed in flight, under lock */
	unsigned inflight;      /* chunk requests in flight, under lock */
	unsigned waiting;       /* fetchers waiting for a slot, under lock */
	pthread_cond_t wcv;     /* the window opened, or a buffer came back */
	struct wh_buf bufs[WH_GET_MAX_PARALLEL]; /* reply buffers: the pool */
	struct wh_buf zbufs[WH_GET_MAX_PARALLEL]; /* where bufs[i]'s zstd
						    * payload is decoded */
	int freeidx[WH_GET_MAX_PARALLEL];        /* free ones, under lock */
	int nfree;
	int first_rv;           /* the first file that failed, under lock */
	mode_t umask;           /* the process's, read once */
	FILE *trace;            /* WH_GET_TRACE: a line per chunk, under lock */
};

/* trace_ev - WH_GET_TRACE: a line "TAG T0 T1 A B" (us since the start,
 * then two numbers of the event's own) for what is not a fetched chunk */
static void trace_ev(struct ctx *c, const char *tag, uint64_t t0,
		     uint64_t a, uint64_t b)
{
	uint64_t now;

	if (!c->trace)
		return;
	now = wh_now_ns();
	pthread_mutex_lock(&c->lock);
	fprintf(c->trace, "%s %llu %llu %llu %llu\n", tag,
		(unsigned long long)((t0 - c->t0) / 1000),
		(unsigned long long)((now - c->t0) / 1000),
		(unsigned long long)a, (unsigned long long)b);
	pthread_mutex_unlock(&c->lock);
}

static void fail(struct ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&c->lock);
	if (!c->err[0]) {
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&c->lock);
}

/* rpc_t - one request with its own deadline; 0, -errno from the host's
 * ERROR, or WH_ERR_*. */
static int rpc_t(struct ctx *c, struct wh_msg *m, uint16_t want,
		 struct wh_buf *resp, struct wh_msg *out, int timeout_ms)
{
	uint8_t req[WH_FRAME_HDR_LEN + WH_MAX_REQ_FRAME];
	ssize_t n;
	int rv;

	pthread_mutex_lock(&c->lock);
	m->hdr.req_id = ++c->next_req;
	pthread_mutex_unlock(&c->lock);
	n = wh_msg_encode(m, req, sizeof(req));
	if (n < 0)
		return -ENAMETOOLONG;
	rv = wh_rpc_call(&c->rpc, req, (size_t)n, resp, timeout_ms);
	if (rv < 0)
		return rv;
	rv = wh_msg_decode(resp->data, resp->len, WH_MAX_REPLY_FRAME, out);
	if (rv < 0)
		return WH_ERR_PROTO;
	if (out->hdr.type == WH_MSG_ERROR)
		return -out->u.error.err;
	if (out->hdr.type != want || out->hdr.req_id != m->hdr.req_id)
		return WH_ERR_PROTO;
	return 0;
}

static int rpc(struct ctx *c, struct wh_msg *m, uint16_t want,
	       struct wh_buf *resp, struct wh_msg *out)
{
	return rpc_t(c, m, want, resp, out, c->o->timeout_ms);
}

static char *join(const char *a, const char *b, size_t blen)
{
	size_t alen = strlen(a);
	char *p = malloc(alen + blen + 2);

	if (!p)
		return NULL;
	memcpy(p, a, alen);
	if (alen)
		p[alen++] = '/';
	memcpy(p + alen, b, blen);
	p[alen + blen] = '\0';
	return p;
}

/* ----------------------------------------------------------------- walk */

static int add_entry(struct ctx *c, char *rpath, char *lpath,
		     const struct wh_attr *a)
{
	if (c->nents == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 64;
		struct entry *ne = realloc(c->ents, ncap * sizeof(*ne));

		if (!ne) {
			free(rpath);
			free(lpath);
			return -ENOMEM;
		}
		c->ents = ne;
		c->cap = ncap;
	}
	c->ents[c->nents].rpath = rpath;
	c->ents[c->nents].lpath = lpath;
	c->ents[c->nents].attr = *a;
	c->ents[c->nents].parent = SIZE_MAX;
	c->ents[c->nents].link_to = SIZE_MAX;
	c->ents[c->nents].made = false;
	c->nents++;
	if (S_ISREG(a->mode))
		c->total_bytes += a->size;
	return 0;
}

/*
 * The walk lists directories several at once (WALKERS requests in
 * flight), since a tree of many directories would otherwise cost a round
 * trip per directory, one after the other.  An entry is added only after
 * its directory's own entry, so parents always come before their children
 * in the list.  Every field below is protected by c->lock.
 */
#define WALKERS 8

static bool grow(void **p, size_t *cap, size_t need, size_t elem);

struct walkq {
	size_t *dirs; /* entries that are directories still to list */
	size_t ndirs, cap, next;
	int busy;     /* walkers listing a directory now */
	int rv;       /* the first failure */
	pthread_cond_t cv;
};

/* list_dir - every entry of the directory |rp| (local |lp|, entry |dir|)
 * into the list, its subdirectories into the queue */
static int list_dir(struct ctx *c, struct walkq *q, size_t dir,
		    const char *rp, const char *lp)
{
	struct wh_buf resp;
	uint64_t cookie = 0;
	int rv = 0;

	wh_buf_init(&resp);
	for (;;) {
		struct wh_msg m, r;
		struct wh_dirent de;
		size_t pos = 0;
		int dr;

		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_READDIR;
		m.u.readdir.path.p = rp;
		m.u.readdir.path.len = (uint16_t)strlen(rp);
		m.u.readdir.cookie = cookie;
		m.u.readdir.max_entries = WH_MAX_READDIR_ENTRIES;
		rv = rpc(c, &m, WH_MSG_READDIR_REPLY, &resp, &r);
		if (rv < 0) {
			fail(c, "cannot list '%s': %s", rp, wh_strerror(rv));
			break;
		}
		while ((dr = wh_dirent_next(&r.u.readdir_reply, &pos, &de)) ==
		       1) {
			char *cr = join(rp, de.name.p, de.name.len);
			char *cl = join(lp, de.name.p, de.name.len);

			if (!cr || !cl) {
				free(cr);
				free(cl);
				rv = -ENOMEM;
				break;
			}
			pthread_mutex_lock(&c->lock);
			rv = add_entry(c, cr, cl, &de.attr);
			if (rv == 0)
				c->ents[c->nents - 1].parent = dir;
			if (rv == 0 && S_ISDIR(de.attr.mode)) {
				if (grow((void **)&q->dirs, &q->cap,
					 q->ndirs + 1, sizeof(*q->dirs))) {
					q->dirs[q->ndirs++] = c->nents - 1;
					pthread_cond_signal(&q->cv);
				} else {
					rv = -ENOMEM;
				}
			}
			pthread_mutex_unlock(&c->lock);
			if (rv < 0)
				break;
		}
		if (rv < 0 || dr < 0) {
			rv = rv < 0 ? rv : WH_ERR_PROTO;
			break;
		}
		if (r.u.readdir_reply.eof ||
		    r.u.readdir_reply.next_cookie == cookie)
			break;
		cookie = r.u.readdir_reply.next_cookie;
	}
	wh_buf_free(&resp);
	return rv;
}

struct walker_arg {
	struct ctx *c;
	struct walkq *q;
};

static void *walker(void *arg)
{
	struct walker_arg *wa = arg;
	struct ctx *c = wa->c;
	struct walkq *q = wa->q;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		const char *rp, *lp;
		size_t idx;
		int rv;

		while (!q->rv && q->next == q->ndirs && q->busy > 0)
			pthread_cond_wait(&q->cv, &c->lock);
		if (q->rv || q->next == q->ndirs)
			break; /* failed, or nothing left and nobody listing */
		idx = q->dirs[q->next++];
		q->busy++;
		/* the strings stay put when the list grows */
		rp = c->ents[idx].rpath;
		lp = c->ents[idx].lpath;
		pthread_mutex_unlock(&c->lock);
		rv = list_dir(c, q, idx, rp, lp);
		pthread_mutex_lock(&c->lock);
		q->busy--;
		if (rv < 0 && !q->rv)
			q->rv = rv;
		pthread_cond_broadcast(&q->cv);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static int lpath_cmp(const void *pa, const void *pb)
{
	const struct entry *a = *(const struct entry *const *)pa;
	const struct entry *b = *(const struct entry *const *)pb;

	return strcmp(a->lpath, b->lpath);
}

/* check_names - a host that lists one name twice in a directory would
 * have two copies write one destination (and one partial file) at once:
 * refused, as any other malformed reply */
static int check_names(struct ctx *c)
{
	struct entry **v;
	int rv = 0;

	if (c->nents < 2)
		return 0;
	v = malloc(c->nents * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < c->nents; i++)
		v[i] = &c->ents[i];
	qsort(v, c->nents, sizeof(*v), lpath_cmp);
	for (size_t i = 1; i < c->nents; i++)
		if (strcmp(v[i - 1]->lpath, v[i]->lpath) == 0) {
			fail(c, "the host listed '%s' twice", v[i]->rpath);
			rv = WH_ERR_PROTO;
			break;
		}
	free(v);
	return rv;
}

/* walk - |rpath| (whose attributes are |a|) and, for a directory,
 * everything below it, into the list; the paths move to the list */
static int walk(struct ctx *c, char *rpath, char *lpath,
		const struct wh_attr *a)
{
	struct walker_arg wa;
	struct walkq q;
	pthread_t th[WALKERS - 1];
	int nth = 0, rv;

	rv = add_entry(c, rpath, lpath, a);
	if (rv < 0 || !S_ISDIR(a->mode))
		return rv;
	memset(&q, 0, sizeof(q));
	pthread_cond_init(&q.cv, NULL);
	if (!grow((void **)&q.dirs, &q.cap, 1, sizeof(*q.dirs))) {
		pthread_cond_destroy(&q.cv);
		return -ENOMEM;
	}
	q.dirs[q.ndirs++] = c->nents - 1;
	wa.c = c;
	wa.q = &q;
	/* the other walkers wait for directories to appear */
	for (int i = 0; i < WALKERS - 1; i++)
		if (pthread_create(&th[nth], NULL, walker, &wa) == 0)
			nth++;
	walker(&wa);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	pthread_cond_destroy(&q.cv);
	free(q.dirs);
	return q.rv;
}

/* ------------------------------------------------------------- progress */

static void human(uint64_t n, char *buf, size_t size)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void draw(struct ctx *c, bool final)
{
	char done[32], total[32], rate[32];
	uint64_t now = wh_now_ns(), bytes;
	double secs = (double)(now - c->t0) / 1e9;
	double r;

	if (!c->o->progress)
		return;
	pthread_mutex_lock(&c->lock);
	if (!final && now - c->last_draw < 200 * WH_NS_PER_MS) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	c->last_draw = now; /* several files draw: one line per 200 ms */
	bytes = c->done_bytes;
	pthread_mutex_unlock(&c->lock);
	r = secs > 0 ? (double)bytes / secs : 0;
	human(bytes, done, sizeof(done));
	human(c->total_bytes, total, sizeof(total));
	human((uint64_t)r, rate, sizeof(rate));
	if (r > 0 && bytes < c->total_bytes) {
		unsigned eta = (unsigned)((double)(c->total_bytes - bytes) / r);

		fprintf(stderr, "\r\033[K%s / %s  %s/s  ETA %u:%02u", done, total,
			rate, eta / 60, eta % 60);
	} else {
		fprintf(stderr, "\r\033[K%s / %s  %s/s", done, total, rate);
	}
	if (final)
		fputc('\n', stderr);
}

static void add_done(struct ctx *c, uint64_t n)
{
	pthread_mutex_lock(&c->lock);
	c->done_bytes += n;
	pthread_mutex_unlock(&c->lock);
}

/* ----------------------------------------------------------------- files */

struct oldidx {
	uint8_t hash[WH_HASH_LEN];
	uint64_t offset;
	uint32_t length;
};

static int by_hash(const void *a, const void *b)
{
	return memcmp(a, b, WH_HASH_LEN);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	/* compare with itself shifted: one pass, no table of zeros */
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* write_chunk - |len| bytes at |off| of |fd|; a sparse file keeps its
 * holes where the data is all zeros (made holes again with |punch|: a
 * partial file from an earlier run may have other bytes there).  0 or
 * -errno.  Plain pwrite, not wh_io: io_uring hands a buffered write on
 * ext4 to a worker thread, and those thread switches cost a get about 8%
 * of its CPU (a 512 MiB get, WH_IO=posix against io_uring, median of
 * four). */
static int write_chunk(int fd, bool sparse, bool punch, const uint8_t *data,
		       size_t len, uint64_t off)
{
	if (sparse && all_zero(data, len) &&
	    (!punch || fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				 (off_t)off, (off_t)len) == 0))
		return 0;
	while (len > 0) {
		ssize_t n = pwrite(fd, data, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		data += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/*
 * copy_plain - |len| bytes from |in| at |ioff| to |out| at |ooff| through
 * |buf| (at least COPY_PIECE bytes), COPY_PIECE at a time: len, -EIO if
 * |in| is shorter, or -errno.  A piece that stays in the core's cache
 * between the pread and the pwrite makes the second copy cheap: a cold
 * 256 MiB file copied one byte further on took 0.17-0.45 s of system
 * time 1 MiB at a time (median 0.27 of seven), 0.11-0.35 128 KiB at a
 * time (median 0.14) (bench/README.md, "bench/run-incrget").
 */
#define COPY_PIECE (128u << 10)

static ssize_t copy_plain(int in, uint64_t ioff, int out, uint64_t ooff,
			  size_t len, uint8_t *buf)
{
	size_t done = 0;

	while (done < len) {
		size_t want = len - done < COPY_PIECE ? len - done
						      : COPY_PIECE;
		ssize_t n = pread(in, buf, want, (off_t)(ioff + done));
		int rv;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if ((size_t)n < want)
			return -EIO;
		rv = write_chunk(out, false, false, buf, want, ooff + done);
		if (rv < 0)
			return rv;
		done += want;
	}
	return (ssize_t)len;
}

#define MSTREAM_WAIT_MS 2000 /* how long the host may hold a manifest part */
#define FILE_WORKERS 8       /* files in flight at once */
#define FILE_ATTEMPTS 3      /* a file that changes on the host is started
			      * again this many times in all */

/*
 * Threads copying the chunks of the old destination that a file keeps,
 * while the feeding thread goes on with its manifest: that thread alone
 * copied 0.9 GiB of a 1 GiB file with 10% changed in 3.7 s, and the
 * changed chunks after a copied stretch were asked for only once it was
 * copied.  Two, for the two halves of a copy's cost that can overlap on
 * two cores (the first writes to the new file's pages, and the reads).
 */
#define COPIERS 2

struct copy_task {
	size_t idx;    /* the chunk, in job.chunks */
	uint64_t from; /* its offset in the old destination */
};

/*
 * One file in flight.  The calling thread feeds the chunks of its
 * manifest in as they arrive (all at once from an old-form MANIFEST, part
 * by part from MANIFEST_STREAM while the host is still hashing): a chunk
 * found locally (the store, the old destination) is written right away,
 * one whose hash came earlier in the file waits until the first copy is
 * in the store, the others queue for the fetcher threads, which start as
 * work appears, up to --parallel.
 */
struct job {
	struct ctx *c;
	const struct entry *e;
	struct wh_version version;
	int fd;
	bool sparse; /* leave chunks of zeros as holes */
	bool reused; /* the partial file of an earlier run, kept */
	struct stat fst; /* of fd, once sized */
	/* the destination and its temporary name, absolute: the store keeps
	 * references to the chunks written into fd under these names, not
	 * their bytes (NULL: it keeps their bytes) */
	char *abs, *abs_tmp;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	/* protected by lock; only the feeding thread writes chunks/todo */
	struct wh_chunk *chunks;
	size_t nchunks, cap;
	size_t *todo, ntodo, todocap, next;
	bool fed; /* nothing more will be queued */
	bool streaming; /* the manifest is still coming in parts */
	int err;  /* the first failure, 0 if none */
	pthread_t th[64]; /* the fetchers, under lock (they start more) */
	int nth;
	/* chunks to copy from the old destination unread (copy_known), and
	 * the threads copying them, under lock; ccv: one was queued, or no
	 * more will be */
	struct copy_task *cq;
	size_t ncq, cqcap, cqnext;
	bool cq_fed;
	pthread_cond_t ccv;
	pthread_t cth[COPIERS];
	int ncth;
	/* the feeding thread's own */
	size_t *dups, ndups, dupcap;
	size_t *seen, seencap, nseen; /* open addressing: chunk index + 1 */
	uint8_t *buf;
	struct oldidx *old;
	size_t nold;
	int oldfd;
	/* the old destination's manifest was known for its identity |ost|
	 * (device, inode, size, mtime, ctime), not computed now: its chunks
	 * are copied without being read here (below) */
	bool old_known;
	struct stat ost;
	uint64_t from_store, from_dest, in_place;
	uint64_t copied; /* copied without a hash (not in from_dest), under
			  * lock */
};

static void job_fail(struct job *j, int rv)
{
	pthread_mutex_lock(&j->lock);
	if (!j->err)
		j->err = rv;
	pthread_cond_broadcast(&j->cv);
	pthread_cond_broadcast(&j->ccv);
	pthread_mutex_unlock(&j->lock);
}

static int job_err(struct job *j)
{
	int rv;

	pthread_mutex_lock(&j->lock);
	rv = j->err;
	pthread_mutex_unlock(&j->lock);
	return rv;
}

/*
 * The window: the chunk requests of all files together wait here while
 * as many as the window allows are in flight.  The window follows the
 * measured delivery rate and the time from a request to its whole reply
 * (wh_window.h), between WINDOW_MIN and --parallel requests and
 * WINDOW_MAX_BYTES.  A request leaves the window when its reply is in,
 * so the next one goes out while this thread verifies and writes the
 * chunk (that time is the client's, not the path's).  Each fetcher holds
 * a reply buffer from a pool (most recently used first) from its request
 * until the chunk is written, so buffers are allocated once, at most one
 * per fetcher (--parallel), and never per chunk.
 */
#define WINDOW_MIN 8
#define WINDOW_MAX_BYTES (64u << 20)

static struct wh_buf *window_enter(struct ctx *c)
{
	struct wh_buf *b;

	pthread_mutex_lock(&c->lock);
	c->waiting++;
	while (c->inflight >= wh_window_get(&c->win) || c->nfree == 0)
		pthread_cond_wait(&c->wcv, &c->lock);
	c->waiting--;
	c->inflight++;
	if (c->inflight > c->st->inflight_max)
		c->st->inflight_max = c->inflight;
	b = &c->bufs[c->freeidx[--c->nfree]];
	pthread_mutex_unlock(&c->lock);
	return b;
}

/* window_reply - the reply of a request sent at |t0| is in: its slot in
 * the window opens now, before the chunk is verified and written (that
 * is this thread's work, not the path's, and the next request should be
 * on its way meanwhile); |bytes| 0 for a failure, which says nothing of
 * the path and is not sampled.  True if a slot is open that no fetcher
 * waits for: one more fetcher would fill it. */
static bool window_reply(struct ctx *c, uint64_t bytes, uint64_t t0)
{
	uint64_t now = wh_now_ns();
	unsigned before;
	bool unfilled;

	pthread_mutex_lock(&c->lock);
	before = wh_window_get(&c->win);
	if (bytes)
		wh_window_sample(&c->win, bytes, now - t0, now);
	c->inflight--;
	/* one slot opened, unless the window grew: wake one waiter, not
	 * every fetcher of every file */
	if (wh_window_get(&c->win) > before)
		pthread_cond_broadcast(&c->wcv);
	else
		pthread_cond_signal(&c->wcv);
	unfilled = c->waiting == 0 && c->inflight < wh_window_get(&c->win);
	pthread_mutex_unlock(&c->lock);
	return unfilled;
}

/* window_again - a request is sent again (its reply failed
 * verification): in flight once more, without waiting for a slot */
static void window_again(struct ctx *c)
{
	pthread_mutex_lock(&c->lock);
	c->inflight++;
	pthread_mutex_unlock(&c->lock);
}

/* window_free - reply buffer |b| is free again.  With |bytes|, a chunk
 * of that many bytes, asked for at |t0| and whose reply came at
 * |t_reply|, has been written: a line of the timeline (WH_GET_TRACE) */
static void window_free(struct ctx *c, struct wh_buf *b, uint64_t bytes,
			uint64_t t0, uint64_t t_reply)
{
	uint64_t now = wh_now_ns();

	pthread_mutex_lock(&c->lock);
	/* times in us since the start: the request, its whole reply, the
	 * chunk written; its bytes; requests in flight and the window */
	if (c->trace && bytes)
		fprintf(c->trace, "%llu %llu %llu %llu %u %u\n",
			(unsigned long long)((t0 - c->t0) / 1000),
			(unsigned long long)((t_reply - c->t0) / 1000),
			(unsigned long long)((now - c->t0) / 1000),
			(unsigned long long)bytes, c->inflight,
			wh_window_get(&c->win));
	c->freeidx[c->nfree++] = (int)(b - c->bufs);
	pthread_cond_signal(&c->wcv);
	pthread_mutex_unlock(&c->lock);
}

/* window_leave - a request that failed before its reply: its slot and
 * buffer back */
static void window_leave(struct ctx *c, struct wh_buf *b, uint64_t t0)
{
	window_reply(c, 0, t0);
	window_free(c, b, 0, 0, 0);
}

/* chunk_data - the |len| bytes of chunk reply |cr|: its data, or its zstd
 * payload decoded into |zbuf| (never more than |len| bytes); NULL if they
 * are not |len| bytes or do not decode. */
static const uint8_t *chunk_data(const struct wh_msg_chunk_reply *cr,
				 uint32_t len, struct wh_buf *zbuf)
{
	if (cr->raw_len != len)
		return NULL;
	if (!cr->zstd)
		return cr->data;
	zbuf->len = 0;
	if (wh_buf_reserve(zbuf, len) < 0 ||
	    wh_zstd_decompress(zbuf->data, len, cr->data, cr->data_len) < 0)
		return NULL;
	return zbuf->data;
}

/* keep_warn - say once that the store cannot keep chunks (the copy goes
 * on without them) */
static void keep_warn(struct job *j, int rv)
{
	struct ctx *c = j->c;

	if (rv >= 0)
		return;
	pthread_mutex_lock(&c->lock);
	if (!c->store_full_warned) {
		c->store_full_warned = true;
		wh_warn("cannot keep chunks in the store: %s",
			wh_strerror(rv));
	}
	pthread_mutex_unlock(&c->lock);
}

/*
 * keep - chunk |ch| (|data|) is now in the partial file: the store keeps a
 * reference to it there (its bytes only when the destination has no
 * absolute name to refer to).  A file smaller than a minimum chunk is
 * kept by its destination alone: a store entry would double its cost.
 */
static int keep(struct job *j, const struct wh_chunk *ch, const uint8_t *data)
{
	if (j->version.size < WH_CDC_MIN)
		return 0;
	if (j->abs)
		return wh_store_put_ref(j->c->store, ch->hash, ch->length,
					j->abs, j->abs_tmp, &j->fst,
					ch->offset);
	return wh_store_put(j->c->store, ch->hash, data, ch->length);
}

static void start_fetcher(struct job *j, bool wanted);

static void *fetcher(void *arg)
{
	struct job *j = arg;
	struct ctx *c = j->c;

	for (;;) {
		struct wh_msg m, r;
		struct wh_chunk ch;
		uint8_t h[WH_HASH_LEN];
		struct wh_buf *resp, *zbuf;
		const uint8_t *data = NULL;
		uint64_t t0, t_reply = 0;
		int rv = 0, tries;
		bool unfilled;

		pthread_mutex_lock(&j->lock);
		while (!j->err && j->next == j->ntodo && !j->fed)
			pthread_cond_wait(&j->cv, &j->lock);
		if (j->err || j->next == j->ntodo) {
			pthread_mutex_unlock(&j->lock);
			break;
		}
		ch = j->chunks[j->todo[j->next++]];
		pthread_mutex_unlock(&j->lock);
		resp = window_enter(c);
		zbuf = &c->zbufs[resp - c->bufs];
		t0 = wh_now_ns();
		/* room for the whole reply: the buffer grows once, if at all */
		if (wh_buf_reserve(resp, WH_FRAME_HDR_LEN + WH_HASH_LEN +
					 ch.length) < 0) {
			window_leave(c, resp, t0);
			job_fail(j, -ENOMEM);
			break;
		}
		for (tries = 0; tries < 3; tries++) {
			if (tries > 0)
				window_again(c);
			memset(&m, 0, sizeof(m));
			m.hdr.type = WH_MSG_CHUNK;
			m.u.chunk.path.p = j->e->rpath;
			m.u.chunk.path.len = (uint16_t)strlen(j->e->rpath);
			m.u.chunk.version = j->version;
			m.u.chunk.offset = ch.offset;
			m.u.chunk.length = ch.length;
			memcpy(m.u.chunk.hash, ch.hash, WH_HASH_LEN);
			rv = rpc(c, &m, WH_MSG_CHUNK_REPLY, resp, &r);
			t_reply = wh_now_ns();
			unfilled = window_reply(c, rv < 0 ? 0 : ch.length, t0);
			if (rv < 0)
				break;
			/* the window grew past the fetchers (or they are all
			 * busy writing): one more takes the slot meanwhile */
			if (unfilled)
				start_fetcher(j, true);
			data = chunk_data(&r.u.chunk_reply, ch.length, zbuf);
			if (data) {
				wh_blake3(data, ch.length, h);
				if (!memcmp(h, ch.hash, WH_HASH_LEN))
					break;
			}
			wh_warn("chunk at %llu of '%s' failed verification; "
				"fetching it again",
				(unsigned long long)ch.offset, j->e->rpath);
			rv = WH_ERR_PROTO;
		}
		if (rv == 0)
			rv = write_chunk(j->fd, j->sparse, j->reused, data,
					 ch.length, ch.offset);
		if (rv < 0) {
			window_free(c, resp, 0, 0, 0);
			job_fail(j, rv);
			break;
		}
		rv = keep(j, &ch, data);
		window_free(c, resp, ch.length, t0, t_reply);
		pthread_mutex_lock(&c->lock);
		c->st->chunks_fetched++;
		c->st->wire_bytes += r.u.chunk_reply.data_len;
		pthread_mutex_unlock(&c->lock);
		keep_warn(j, rv);
		add_done(c, ch.length);
		draw(c, false);
	}
	return NULL;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *np;

	if (need <= *cap)
		return true;
	ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	np = realloc(*p, ncap * elem);
	if (!np)
		return false;
	*p = np;
	*cap = ncap;
	return true;
}

static uint64_t hash_key(const uint8_t *h)
{
	uint64_t k;

	memcpy(&k, h, sizeof(k)); /* BLAKE3 output: already uniform */
	return k;
}

/* seen_add - false if a chunk with |idx|'s hash was added before */
static int seen_add(struct job *j, size_t idx)
{
	const uint8_t *h = j->chunks[idx].hash;
	size_t mask, i;

	if ((j->nseen + 1) * 2 > j->seencap) {
		size_t ncap = j->seencap ? j->seencap * 2 : 256;
		size_t *ns = calloc(ncap, sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		for (size_t k = 0; k < j->seencap; k++) {
			if (!j->seen[k])
				continue;
			i = hash_key(j->chunks[j->seen[k] - 1].hash) &
			    (ncap - 1);
			while (ns[i])
				i = (i + 1) & (ncap - 1);
			ns[i] = j->seen[k];
		}
		free(j->seen);
		j->seen = ns;
		j->seencap = ncap;
	}
	mask = j->seencap - 1;
	for (i = hash_key(h) & mask; j->seen[i]; i = (i + 1) & mask)
		if (!memcmp(j->chunks[j->seen[i] - 1].hash, h, WH_HASH_LEN))
			return 0;
	j->seen[i] = idx + 1;
	j->nseen++;
	return 1;
}

/* start_fetcher - one more fetcher thread for |j| if it has chunks
 * waiting: always one for a file that has none (so that every file
 * moves), else while all the files' fetchers together are fewer than the
 * window allows in flight, or, when |wanted| (a slot of the window is
 * open and no fetcher waits for it), up to --parallel.  So they start as
 * the window grows, not all at its first request.  Called by the feeding
 * thread and by fetchers. */
static void start_fetcher(struct job *j, bool wanted)
{
	struct ctx *c = j->c;
	bool ok;

	pthread_mutex_lock(&j->lock);
	if (j->nth >= c->o->parallel || j->nth >= 64 || j->err ||
	    j->next == j->ntodo) {
		pthread_mutex_unlock(&j->lock);
		return;
	}
	pthread_mutex_lock(&c->lock);
	ok = j->nth == 0 ||
	     (c->fetchers < c->o->parallel &&
	      (wanted || (unsigned)c->fetchers < wh_window_get(&c->win)));
	if (ok)
		c->fetchers++;
	pthread_mutex_unlock(&c->lock);
	if (ok && pthread_create(&j->th[j->nth], NULL, fetcher, j) == 0) {
		j->nth++;
	} else if (ok) {
		pthread_mutex_lock(&c->lock);
		c->fetchers--;
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&j->lock);
}

/* job_fetchers - how many fetcher and copier threads |j| has */
static int job_fetchers(struct job *j)
{
	int n;

	pthread_mutex_lock(&j->lock);
	n = j->nth + j->ncth;
	pthread_mutex_unlock(&j->lock);
	return n;
}

/* queue - hand chunk |idx| to the fetchers */
static int queue(struct job *j, size_t idx)
{
	size_t pending;

	pthread_mutex_lock(&j->lock);
	if (!grow((void **)&j->todo, &j->todocap, j->ntodo + 1,
		  sizeof(*j->todo))) {
		pthread_mutex_unlock(&j->lock);
		return -ENOMEM;
	}
	j->todo[j->ntodo++] = idx;
	pending = j->ntodo - j->next;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->lock);
	/* the feeding thread fetches too once the manifest is in, so a file
	 * of one chunk needs no thread of its own */
	if (pending > 1 || j->streaming)
		start_fetcher(j, false);
	return 0;
}

/*
 * copy_known - chunk |ch| from the old destination (at |from| there) when
 * that file's identity is unchanged since its manifest was known (written
 * or hashed by a get): copied unhashed, the identity checked again before
 * the rename.  In the kernel where both sides are equally aligned (on NFS
 * a copy on the server), else through |buf| (COPY_PIECE bytes) in pieces
 * (copy_plain): an unaligned copy_file_range on ext4 costs twice the CPU
 * of pread and pwrite.  1 if copied, 0 if it must be verified instead, or
 * -errno.  Run by the copiers.
 */
static int copy_known(struct job *j, const struct wh_chunk *ch, uint64_t from,
		      uint8_t *buf)
{
	uint64_t t0 = wh_now_ns();
	ssize_t n;

	/* copy_file_range: a cold 256 MiB file at the same offsets took
	 * 0.08-0.23 s of system time, 128 KiB pieces through the buffer
	 * 0.09-0.22 (medians 0.09 and 0.14) */
	if ((from ^ ch->offset) % 4096 == 0)
		n = wh_io_copy(wh_io_thread(), j->oldfd, from, j->fd,
			       ch->offset, ch->length, buf, COPY_PIECE);
	else
		n = copy_plain(j->oldfd, from, j->fd, ch->offset, ch->length,
			       buf);
	if (n == -EIO) { /* shorter than it was: verify all */
		__atomic_store_n(&j->old_known, false, __ATOMIC_RELAXED);
		return 0;
	}
	if (n < 0)
		return (int)n;
	pthread_mutex_lock(&j->lock);
	j->copied++;
	pthread_mutex_unlock(&j->lock);
	trace_ev(j->c, "copy", t0, ch->offset, ch->length);
	add_done(j->c, ch->length);
	keep_warn(j, keep(j, ch, NULL));
	return 1;
}

/* copier - a thread copying the queued chunks of the old destination; a
 * chunk that cannot be copied after all (the old file got shorter) goes
 * to the fetchers */
static void *copier(void *arg)
{
	struct job *j = arg;
	uint8_t *buf = malloc(COPY_PIECE);

	if (!buf) {
		job_fail(j, -ENOMEM);
		return NULL;
	}
	for (;;) {
		struct copy_task t;
		struct wh_chunk ch;
		int rv;

		pthread_mutex_lock(&j->lock);
		while (!j->err && j->cqnext == j->ncq && !j->cq_fed)
			pthread_cond_wait(&j->ccv, &j->lock);
		if (j->err || j->cqnext == j->ncq) {
			pthread_mutex_unlock(&j->lock);
			break;
		}
		t = j->cq[j->cqnext++];
		ch = j->chunks[t.idx];
		pthread_mutex_unlock(&j->lock);
		rv = copy_known(j, &ch, t.from, buf);
		if (rv == 0)
			rv = queue(j, t.idx);
		if (rv < 0) {
			job_fail(j, rv);
			break;
		}
	}
	free(buf);
	return NULL;
}

/* queue_copy - hand chunk |idx| (at |from| in the old destination) to the
 * copiers, starting one more while there is a backlog */
static int queue_copy(struct job *j, size_t idx, uint64_t from)
{
	int rv = 0;

	pthread_mutex_lock(&j->lock);
	if (!grow((void **)&j->cq, &j->cqcap, j->ncq + 1, sizeof(*j->cq))) {
		pthread_mutex_unlock(&j->lock);
		return -ENOMEM;
	}
	j->cq[j->ncq++] = (struct copy_task){idx, from};
	pthread_cond_signal(&j->ccv);
	if (j->ncth < COPIERS && (j->ncth == 0 || j->ncq - j->cqnext > 1)) {
		if (pthread_create(&j->cth[j->ncth], NULL, copier, j) == 0)
			j->ncth++;
		else if (j->ncth == 0)
			rv = -EAGAIN;
	}
	if (rv < 0)
		j->ncq--;
	pthread_mutex_unlock(&j->lock);
	return rv;
}

/* copies_end - no more chunks to copy: wait for the copiers */
static void copies_end(struct job *j)
{
	pthread_mutex_lock(&j->lock);
	j->cq_fed = true;
	pthread_cond_broadcast(&j->ccv);
	while (j->ncth > 0) {
		pthread_t t = j->cth[--j->ncth];

		pthread_mutex_unlock(&j->lock);
		pthread_join(t, NULL);
		pthread_mutex_lock(&j->lock);
	}
	pthread_mutex_unlock(&j->lock);
}

/* feed - one more chunk of the manifest, checked by the caller */
static int feed(struct job *j, const struct wh_chunk *ch)
{
	struct ctx *c = j->c;
	struct oldidx *o;
	struct wh_store_loc loc = {0, 0, 0};
	uint8_t h[WH_HASH_LEN];
	uint64_t from_dest = j->from_dest, t0 = wh_now_ns();
	bool have = false;
	size_t idx;
	int rv;

	pthread_mutex_lock(&j->lock);
	if (!grow((void **)&j->chunks, &j->cap, j->nchunks + 1,
		  sizeof(*j->chunks))) {
		pthread_mutex_unlock(&j->lock);
		return -ENOMEM;
	}
	idx = j->nchunks;
	j->chunks[j->nchunks++] = *ch;
	pthread_mutex_unlock(&j->lock);
	/* the old destination first when it needs no hashing (but for a
	 * resumed partial file, whose chunks may be in place already) */
	if (__atomic_load_n(&j->old_known, __ATOMIC_RELAXED) && !j->reused &&
	    !j->sparse && j->abs &&
	    (o = bsearch(ch->hash, j->old, j->nold, sizeof(*j->old),
			 by_hash)) &&
	    o->length == ch->length)
		return queue_copy(j, idx, o->offset);
	/* files under a minimum chunk never go to the store */
	if (j->version.size >= WH_CDC_MIN &&
	    wh_store_get_at(c->store, ch->hash, j->buf, ch->length, &loc) ==
		    0) {
		/* already in place: the partial file an earlier run left */
		if (loc.ino == (uint64_t)j->fst.st_ino &&
		    loc.dev == (uint64_t)j->fst.st_dev &&
		    loc.offset == ch->offset) {
			j->in_place++;
			add_done(c, ch->length);
			return 0;
		}
		have = true;
		j->from_store++;
	} else if (j->old &&
		   (o = bsearch(ch->hash, j->old, j->nold, sizeof(*j->old),
				by_hash)) &&
		   o->length == ch->length) {
		if (pread(j->oldfd, j->buf, ch->length, (off_t)o->offset) ==
		    (ssize_t)ch->length) {
			wh_blake3(j->buf, ch->length, h);
			if (!memcmp(h, ch->hash, WH_HASH_LEN)) {
				have = true;
				j->from_dest++;
			}
		}
	}
	if (have) {
		rv = write_chunk(j->fd, j->sparse, j->reused, j->buf,
				 ch->length, ch->offset);
		if (rv < 0)
			return rv;
		trace_ev(c, loc.ino != 0 ? "store" : "hashed", t0, ch->offset,
			 ch->length);
		add_done(c, ch->length);
		/* the old destination goes when this file replaces it, and
		 * a store entry may name a file that does: refer to this
		 * copy (a stored chunk's bytes stay where they are) */
		if (loc.ino != 0 || j->from_dest > from_dest)
			keep_warn(j, keep(j, ch, j->buf));
		return 0;
	}
	/* a chunk that repeats in the file (runs of zeros, say) crosses
	 * the wire once */
	rv = seen_add(j, idx);
	if (rv < 0)
		return rv;
	if (rv == 0) {
		if (!grow((void **)&j->dups, &j->dupcap, j->ndups + 1,
			  sizeof(*j->dups)))
			return -ENOMEM;
		j->dups[j->ndups++] = idx;
		return 0;
	}
	return queue(j, idx);
}

/* drain - no more chunks: wait for the copiers (a chunk they cannot copy
 * goes to the fetchers), then for the fetchers (they draw progress) */
static void drain(struct job *j)
{
	int n;

	copies_end(j);
	pthread_mutex_lock(&j->lock);
	j->fed = true;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->lock);
	fetcher(j); /* help with what is left */
	/* a fetcher may start another before it ends: the one it started
	 * is in th[] by then */
	pthread_mutex_lock(&j->lock);
	for (int i = 0; i < j->nth; i++) {
		pthread_t t = j->th[i];

		pthread_mutex_unlock(&j->lock);
		pthread_join(t, NULL);
		pthread_mutex_lock(&j->lock);
	}
	n = j->nth;
	j->nth = 0;
	pthread_mutex_unlock(&j->lock);
	pthread_mutex_lock(&j->c->lock);
	j->c->fetchers -= n;
	pthread_mutex_unlock(&j->c->lock);
}

/* finish_dups - chunks repeated in the file, from the store now */
static void finish_dups(struct job *j)
{
	if (j->err || j->ndups == 0)
		return;
	pthread_mutex_lock(&j->lock);
	j->fed = false;
	pthread_mutex_unlock(&j->lock);
	for (size_t k = 0; k < j->ndups && !j->err; k++) {
		struct wh_chunk *ch = &j->chunks[j->dups[k]];

		if (wh_store_get(j->c->store, ch->hash, j->buf, ch->length) ==
			    0 &&
		    write_chunk(j->fd, j->sparse, j->reused, j->buf,
				ch->length, ch->offset) == 0) {
			j->from_store++;
			add_done(j->c, ch->length);
		} else if (queue(j, j->dups[k]) < 0) { /* store full: fetch */
			job_fail(j, -ENOMEM);
		}
	}
	drain(j);
}

static bool same_version(const struct wh_version *a,
			 const struct wh_version *b)
{
	return a->size == b->size && a->mtime.sec == b->mtime.sec &&
	       a->mtime.nsec == b->mtime.nsec && a->ctime.sec == b->ctime.sec &&
	       a->ctime.nsec == b->ctime.nsec;
}

static int manifest_timeout(struct ctx *c, uint64_t size)
{
	uint64_t ms = (uint64_t)c->o->timeout_ms + size / (50ULL * 1000);

	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* fetch_manifest - every chunk of |e| and the version they belong to */
static int fetch_manifest(struct ctx *c, const struct entry *e,
			  struct wh_version *v, struct wh_chunk **pchunks,
			  size_t *pn)
{
	struct wh_chunk *chunks = NULL;
	struct wh_buf resp;
	uint32_t total = 0, have = 0;
	uint64_t covered = 0;
	size_t cap = 0;
	int rv = 0;

	wh_buf_init(&resp);
	do {
		struct wh_msg m, r;

		memset(&m, 0, sizeof(m));
		m.hdr.type = WH_MSG_MANIFEST;
		m.u.manifest.path.p = e->rpath;
		m.u.manifest.path.len = (uint16_t)strlen(e->rpath);
		m.u.manifest.start = have;
		/* the host may have to read and hash the whole file first:
		 * allow for a slow disk (50 MB/s) on top of the usual wait */
		rv = rpc_t(c, &m, WH_MSG_MANIFEST_REPLY, &resp, &r,
			   manifest_timeout(c, e->attr.size));
		if (rv < 0)
			break;
		if (have == 0) {
			*v = r.u.manifest_reply.version;
			total = r.u.manifest_reply.total;
			/* every chunk holds a byte at least */
			if (total > v->size) {
				rv = WH_ERR_PROTO;
				break;
			}
		} else if (r.u.manifest_reply.total != total ||
			   r.u.manifest_reply.version.size != v->size ||
			   r.u.manifest_reply.version.mtime.nsec !=
				   v->mtime.nsec ||
			   r.u.manifest_reply.version.mtime.sec !=
				   v->mtime.sec) {
			rv = -ESTALE;
			break;
		}
		if (r.u.manifest_reply.start != have ||
		    (r.u.manifest_reply.count == 0 && have < total)) {
			rv = WH_ERR_PROTO;
			break;
		}
		/* room for the entries as they come, not for the total the
		 * host claims: memory follows what it sent */
		if (!grow((void **)&chunks, &cap,
			  (size_t)have + r.u.manifest_reply.count + 1,
			  sizeof(*chunks))) {
			rv = -ENOMEM;
			break;
		}
		for (uint32_t i = 0; i < r.u.manifest_reply.count; i++) {
			struct wh_chunk *ch = &chunks[have + i];

			wh_manifest_entry(&r.u.manifest_reply, i, &ch->offset,
					  &ch->length, ch->hash);
			if (ch->offset != covered || ch->length == 0 ||
			    ch->length > WH_MAX_CHUNK) {
				rv = WH_ERR_PROTO;
				break;
			}
			covered += ch->length;
		}
		have += r.u.manifest_reply.count;
	} while (rv == 0 && have < total);
	wh_buf_free(&resp);
	if (rv == 0 && covered != v->size)
		rv = WH_ERR_PROTO;
	if (rv < 0) {
		free(chunks);
		return rv;
	}
	*pchunks = chunks;
	*pn = total;
	return 0;
}

/* mpart - one MANIFEST_STREAM request: the entries from |start| on */
static int mpart(struct ctx *c, const struct entry *e, uint32_t start,
		 struct wh_buf *resp, struct wh_msg *r)
{
	struct wh_msg m;

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_MANIFEST_STREAM;
	m.u.manifest_stream.path.p = e->rpath;
	m.u.manifest_stream.path.len = (uint16_t)strlen(e->rpath);
	m.u.manifest_stream.start = start;
	m.u.manifest_stream.wait_ms = MSTREAM_WAIT_MS;
	return rpc_t(c, &m, WH_MSG_MANIFEST_PART, resp, r,
		     c->o->timeout_ms + MSTREAM_WAIT_MS);
}

/* stream_rest - feed the parts of a streamed manifest, |r| (in |resp|)
 * being the first, until the manifest is complete */
static int stream_rest(struct job *j, struct wh_buf *resp, struct wh_msg *r)
{
	struct ctx *c = j->c;
	uint64_t covered = 0, last = wh_now_ns(), t0;
	uint64_t patience = (uint64_t)manifest_timeout(c, j->version.size) *
			    WH_NS_PER_MS;
	uint32_t have = 0;
	int rv = 0;

	for (;;) {
		const struct wh_msg_manifest_part *mp = &r->u.manifest_part;

		if (!same_version(&mp->version, &j->version))
			return -ESTALE; /* a new version: start again */
		if (mp->known < have || (mp->count && mp->start != have))
			return WH_ERR_PROTO;
		for (uint32_t i = 0; i < mp->count; i++) {
			struct wh_chunk ch;

			wh_manifest_part_entry(mp, i, &ch.offset, &ch.length,
					       ch.hash);
			if (ch.offset != covered || ch.length == 0 ||
			    ch.length > WH_MAX_CHUNK ||
			    ch.length > j->version.size - covered)
				return WH_ERR_PROTO;
			covered += ch.length;
			rv = feed(j, &ch);
			if (rv < 0)
				return rv;
		}
		have += mp->count;
		if (mp->done && have == mp->known)
			break;
		rv = job_err(j);
		if (rv < 0)
			return rv;
		if (mp->count)
			last = wh_now_ns();
		else if (wh_now_ns() - last > patience)
			return WH_ERR_TIMEOUT;
		else
			usleep(5000); /* the host may answer empty at once */
		draw(c, false);
		t0 = wh_now_ns();
		rv = mpart(c, j->e, have, resp, r);
		if (rv < 0)
			return rv;
		trace_ev(c, "part", t0, r->u.manifest_part.start,
			 r->u.manifest_part.count);
	}
	return covered == j->version.size ? 0 : WH_ERR_PROTO;
}

/* old_index - the chunks of |m| sorted by hash, for lookups */
static struct oldidx *old_index(const struct wh_manifest *m, size_t *pn)
{
	struct oldidx *idx;

	*pn = 0;
	if (m->n == 0)
		return NULL;
	idx = calloc(m->n, sizeof(*idx));
	if (!idx)
		return NULL;
	for (size_t i = 0; i < m->n; i++) {
		memcpy(idx[i].hash, m->chunks[i].hash, WH_HASH_LEN);
		idx[i].offset = m->chunks[i].offset;
		idx[i].length = m->chunks[i].length;
	}
	qsort(idx, m->n, sizeof(*idx), by_hash);
	*pn = m->n;
	return idx;
}

static bool same_chunks(const struct wh_manifest *m,
			const struct wh_chunk *chunks, size_t n)
{
	if (m->n != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (m->chunks[i].offset != chunks[i].offset ||
		    m->chunks[i].length != chunks[i].length ||
		    memcmp(m->chunks[i].hash, chunks[i].hash, WH_HASH_LEN))
			return false;
	return true;
}

/* remember - the manifest of the file now at |path| is |chunks|, so the
 * next get finds it without reading the file */
static void remember(struct ctx *c, int fd, const struct wh_chunk *chunks,
		     size_t n, uint64_t size)
{
	struct wh_manifest m;
	struct stat st;

	if (!c->o->mc || fstat(fd, &st) != 0)
		return;
	m.chunks = (struct wh_chunk *)chunks;
	m.n = m.cap = n;
	m.size = size;
	wh_mcache_put(c->o->mc, &st, &m);
}

/* verify_local - WH_GET_VERIFY_LOCAL=1: hash the chunks of the old
 * destination even when its identity is the one its manifest was known
 * for */
static bool verify_local(void)
{
	const char *v = getenv("WH_GET_VERIFY_LOCAL");

	return v && !strcmp(v, "1");
}

/* test_pause - a test hook: with WH_GET_TEST_PAUSE=FILE, the copy of a
 * file whose old destination is to be copied unhashed stops before its
 * first chunk, creates FILE and waits (up to a minute) until it is gone,
 * so that a test can change that destination meanwhile */
static void test_pause(void)
{
	const char *f = getenv("WH_GET_TEST_PAUSE");
	int fd;

	if (!f || !*f)
		return;
	fd = open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	close(fd);
	for (int i = 0; i < 6000 && access(f, F_OK) == 0; i++)
		usleep(10000);
}

/* same_file - |fd| still has the identity |st|: device, inode, size,
 * mtime and ctime (no write through the file system changes its bytes
 * without moving ctime, which no call sets back) */
static bool same_file(int fd, const struct stat *st)
{
	struct stat now;

	return fstat(fd, &now) == 0 && now.st_dev == st->st_dev &&
	       now.st_ino == st->st_ino && now.st_size == st->st_size &&
	       now.st_mtim.tv_sec == st->st_mtim.tv_sec &&
	       now.st_mtim.tv_nsec == st->st_mtim.tv_nsec &&
	       now.st_ctim.tv_sec == st->st_ctim.tv_sec &&
	       now.st_ctim.tv_nsec == st->st_ctim.tv_nsec;
}

/* file_mode - the permission bits a file gets here: the host's, but for
 * its set-user-ID and set-group-ID bits, which would make a program from
 * the peer run with this machine's owner's rights (the mount is nosuid
 * for the same reason); the sticky bit stays */
static mode_t file_mode(const struct entry *e)
{
	return (mode_t)(e->attr.mode & 07777 & ~(S_ISUID | S_ISGID));
}

/* set_meta - mode and times of |fd| to the host's */
static int set_meta(int fd, const struct entry *e, const struct wh_version *v)
{
	struct timespec times[2];

	times[0].tv_sec = e->attr.atime.sec;
	times[0].tv_nsec = e->attr.atime.nsec;
	times[1].tv_sec = v->mtime.sec;
	times[1].tv_nsec = v->mtime.nsec;
	if (fchmod(fd, file_mode(e)) != 0 || futimens(fd, times) != 0)
		return -errno;
	return 0;
}

/* partial_name - the temporary name of |e|'s destination */
static void partial_name(const struct entry *e, char *buf, size_t size)
{
	const char *slash = strrchr(e->lpath, '/');

	if (slash)
		snprintf(buf, size, "%.*s/.%s.wh-partial",
			 (int)(slash - e->lpath), e->lpath, slash + 1);
	else
		snprintf(buf, size, ".%s.wh-partial", e->lpath);
}

/* open_partial - |tmp| for writing: the regular file an earlier run left
 * (|*reused|; its chunks the store refers to are checked before use), or
 * a new one.  An fd or -errno. */
static int open_partial(const char *tmp, bool *reused)
{
	struct stat st;
	int fd;

	*reused = false;
	if (lstat(tmp, &st) == 0) {
		if (S_ISREG(st.st_mode)) {
			fd = open(tmp, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0 && fstat(fd, &st) == 0 &&
			    S_ISREG(st.st_mode)) {
				*reused = true;
				return fd;
			}
			if (fd >= 0)
				close(fd);
		}
		unlink(tmp);
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	return fd < 0 ? -errno : fd;
}

/* create_failed - the message for |e|'s temporary file |tmp| that could
 * not be made (|rv|): a missing directory is named by the user's path */
static void create_failed(struct ctx *c, const struct entry *e,
			  const char *tmp, int rv)
{
	if (rv == -ENOENT)
		fail(c, "cannot create '%s': its directory does not exist",
		     e->lpath);
	else
		fail(c, "cannot create '%s': %s", tmp, strerror(-rv));
}

/* take_partial - open_partial, the file locked for this get: two gets
 * into one destination at once would write one partial file and rename
 * it twice.  -EBUSY when another get holds it.  A file system without
 * flock goes unlocked, as before. */
static int take_partial(const char *tmp, bool *reused)
{
	for (int i = 0; i < 8; i++) {
		struct stat a, b;
		int fd = open_partial(tmp, reused);

		if (fd < 0)
			return fd;
		if (flock(fd, LOCK_EX | LOCK_NB) != 0 &&
		    errno == EWOULDBLOCK) {
			close(fd);
			return -EBUSY;
		}
		/* still the file of that name: the get that held it may
		 * have finished and renamed it meanwhile */
		if (fstat(fd, &a) == 0 && lstat(tmp, &b) == 0 &&
		    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return fd;
		close(fd);
	}
	return -EBUSY;
}

/* dir_of - the directory |path| names an entry of, into |buf|; false if
 * it does not fit */
static bool dir_of(const char *path, char *buf, size_t size)
{
	const char *slash = strrchr(path, '/');
	int n = slash ? snprintf(buf, size, "%.*s",
				 slash == path ? 1 : (int)(slash - path), path)
		      : snprintf(buf, size, ".");

	return n >= 0 && (size_t)n < size;
}

/* abs_names - |lpath| and its temporary name |tmp| as absolute paths, for
 * store references; both NULL if the directory has none */
static void abs_names(const char *lpath, const char *tmp, char **pabs,
		      char **pabs_tmp)
{
	const char *slash = strrchr(lpath, '/');
	char dir[4200], *d;

	*pabs = *pabs_tmp = NULL;
	d = dir_of(lpath, dir, sizeof(dir)) ? realpath(dir, NULL) : NULL;
	if (!d)
		return;
	if (asprintf(pabs, "%s/%s", strcmp(d, "/") ? d : "",
		     slash ? slash + 1 : lpath) < 0)
		*pabs = NULL;
	if (asprintf(pabs_tmp, "%s/%s", strcmp(d, "/") ? d : "",
		     strrchr(tmp, '/') ? strrchr(tmp, '/') + 1 : tmp) < 0)
		*pabs_tmp = NULL;
	free(d);
	if (!*pabs || !*pabs_tmp) {
		free(*pabs);
		free(*pabs_tmp);
		*pabs = *pabs_tmp = NULL;
	}
}

/* resumable - a file that failed with |rv| keeps its partial file */
static bool resumable(int rv)
{
	return rv == -ESTALE || rv == WH_ERR_TIMEOUT || rv == WH_ERR_CLOSED;
}

/* get_file_once - one attempt at one file; -ESTALE when it changed on the
 * host meanwhile (the caller may start again), other errors reported */
static int get_file_once(struct ctx *c, const struct entry *e)
{
	struct job j;
	struct wh_chunk *all = NULL;
	struct wh_manifest oldman;
	struct wh_buf resp;
	struct wh_msg r;
	size_t nall = 0;
	char tmp[4200];
	bool streamed = c->caps(c->caps_ctx) & WH_CAP_MSTREAM;
	int fd = -1, rv;

	memset(&j, 0, sizeof(j));
	j.c = c;
	j.e = e;
	j.fd = -1;
	j.oldfd = -1;
	pthread_mutex_init(&j.lock, NULL);
	pthread_cond_init(&j.cv, NULL);
	pthread_cond_init(&j.ccv, NULL);
	wh_manifest_init(&oldman);
	wh_buf_init(&resp);
	tmp[0] = '\0';
	/* the manifest, or its first part while the host is still hashing */
	if (streamed) {
		uint64_t t0 = wh_now_ns();

		rv = mpart(c, e, 0, &resp, &r);
		if (rv == 0) {
			trace_ev(c, "part", t0, 0, r.u.manifest_part.count);
			j.version = r.u.manifest_part.version;
			if (r.u.manifest_part.done &&
			    r.u.manifest_part.count == r.u.manifest_part.known)
				streamed = false; /* all of it, at once */
		}
	} else {
		rv = fetch_manifest(c, e, &j.version, &all, &nall);
	}
	if (rv == 0 && streamed == false && !all) {
		/* a complete first part: take it as a whole manifest */
		uint64_t covered = 0;

		nall = r.u.manifest_part.count;
		all = calloc(nall ? nall : 1, sizeof(*all));
		if (!all)
			rv = -ENOMEM;
		for (size_t i = 0; rv == 0 && i < nall; i++) {
			wh_manifest_part_entry(&r.u.manifest_part, (uint32_t)i,
					       &all[i].offset, &all[i].length,
					       all[i].hash);
			if (all[i].offset != covered || all[i].length == 0 ||
			    all[i].length > WH_MAX_CHUNK)
				rv = WH_ERR_PROTO;
			covered += all[i].length;
		}
		if (rv == 0 && covered != j.version.size)
			rv = WH_ERR_PROTO;
	}
	if (rv < 0) {
		if (rv != -ESTALE)
			fail(c, "cannot get the manifest of '%s': %s", e->rpath,
			     wh_strerror(rv));
		goto out;
	}
	/* the file already at the destination, if any: its manifest comes
	 * from the local cache when it has not changed since it was known
	 * (O_NONBLOCK: a FIFO there must not block the open) */
	j.oldfd = open(e->lpath,
		       O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (j.oldfd >= 0) {
		struct stat ost;
		int orv = -EINVAL;

		bool reg = fstat(j.oldfd, &ost) == 0 && S_ISREG(ost.st_mode);

		if (reg && c->o->mc && !verify_local() &&
		    wh_mcache_lookup(c->o->mc, &ost, &oldman) == 0) {
			orv = 0;
			j.old_known = true;
			j.ost = ost;
		} else if (reg) {
			/* not changed in the second before it is read: a
			 * write from now on moves its ctime */
			bool settled = !verify_local() && !wh_mcache_racy(&ost);

			orv = c->o->mc ? wh_mcache_get(c->o->mc, j.oldfd, &ost,
						       NULL, &oldman)
				       : wh_manifest_build(j.oldfd, &oldman);
			/* hashed just now and unchanged since it was opened:
			 * as good as a manifest known for it (its chunks are
			 * copied unread, the identity checked before the
			 * rename) rather than read and hashed a second time */
			if (orv == 0 && settled && oldman.size ==
						     (uint64_t)ost.st_size &&
			    same_file(j.oldfd, &ost)) {
				j.old_known = true;
				j.ost = ost;
			}
		}
		if (orv == 0 && all && oldman.size == j.version.size &&
		    same_chunks(&oldman, all, nall)) {
			/* the same bytes already: at most the metadata
			 * differs, nothing to fetch or to write */
			rv = set_meta(j.oldfd, e, &j.version);
			if (rv < 0) {
				fail(c, "cannot update '%s': %s", e->lpath,
				     strerror(-rv));
				goto out;
			}
			remember(c, j.oldfd, all, nall, j.version.size);
			pthread_mutex_lock(&c->lock);
			c->st->files++;
			c->st->bytes += j.version.size;
			c->st->chunks += nall;
			c->st->chunks_from_dest += nall;
			pthread_mutex_unlock(&c->lock);
			add_done(c, j.version.size);
			goto out;
		}
		if (orv == 0)
			j.old = old_index(&oldman, &j.nold);
	}
	partial_name(e, tmp, sizeof(tmp));
	fd = take_partial(tmp, &j.reused);
	if (fd == -EBUSY) {
		rv = fd;
		fail(c, "another get is writing '%s' now (its partial file "
			"'%s' is in use)", e->lpath, tmp);
		tmp[0] = '\0'; /* that get's, not ours to remove */
		goto out;
	}
	if (fd < 0) {
		rv = fd;
		create_failed(c, e, tmp, rv);
		goto out;
	}
	j.fd = fd;
	/* preallocate, unless the host's file is sparse: then keep its holes
	 * (chunks of zeros are not written) */
	j.sparse = e->attr.blocks * 512 < e->attr.size;
	if (!j.sparse && j.version.size >= WH_CDC_MIN &&
	    posix_fallocate(fd, 0, (off_t)j.version.size) == ENOSPC) {
		/* (a file under a minimum chunk is one write: nothing to
		 * reserve ahead) */
		rv = -ENOSPC;
		fail(c, "no space left on the device for '%s' (%llu bytes)",
		     e->lpath, (unsigned long long)j.version.size);
		goto out;
	}
	/* its final size from the start (a kept one may be another
	 * version's): the identity store references record */
	if (ftruncate(fd, (off_t)j.version.size) != 0 ||
	    fstat(fd, &j.fst) != 0) {
		rv = -errno;
		fail(c, "cannot size '%s': %s", tmp, strerror(errno));
		goto out;
	}
	if (j.version.size >= WH_CDC_MIN)
		abs_names(e->lpath, tmp, &j.abs, &j.abs_tmp);
	j.buf = malloc(j.version.size < WH_MAX_CHUNK ? j.version.size + 1
						     : WH_MAX_CHUNK);
	if (!j.buf) {
		rv = -ENOMEM;
		fail(c, "out of memory");
		goto out;
	}
	rv = 0;
	if (j.old_known)
		test_pause();
	if (all) {
		for (size_t i = 0; i < nall && rv == 0; i++)
			rv = feed(&j, &all[i]);
	} else {
		j.streaming = true;
		rv = stream_rest(&j, &resp, &r);
		j.streaming = false;
	}
	if (rv < 0)
		job_fail(&j, rv);
	drain(&j);
	finish_dups(&j);
	rv = j.err;
	if (rv < 0) {
		if (rv == -ESTALE)
			;	/* the caller decides */
		else if (rv == -ENOSPC)
			fail(c, "no space left on the device writing '%s'",
			     e->lpath);
		else
			fail(c, "fetching '%s': %s%s", e->rpath, wh_strerror(rv),
			     resumable(rv) ? " (the partial copy is kept: "
					     "the same get resumes it)"
					   : "");
		goto out;
	}
	/* chunks copied from the old destination unread: it must still be
	 * the file whose manifest was known, or they may be other bytes */
	if (j.copied > 0 && !same_file(j.oldfd, &j.ost)) {
		rv = -EAGAIN;
		goto out;
	}
	rv = set_meta(fd, e, &j.version);
	if (rv < 0) {
		fail(c, "cannot finish '%s': %s", tmp, strerror(-rv));
		goto out;
	}
	if (rename(tmp, e->lpath) != 0) {
		rv = -errno;
		fail(c, "cannot rename '%s' to '%s': %s", tmp, e->lpath,
		     strerror(errno));
		goto out;
	}
	remember(c, fd, j.chunks, j.nchunks, j.version.size);
	pthread_mutex_lock(&c->lock);
	c->st->files++;
	c->st->bytes += j.version.size;
	c->st->chunks += j.nchunks;
	c->st->chunks_from_store += j.from_store;
	c->st->chunks_from_dest += j.from_dest + j.copied;
	c->st->chunks_in_place += j.in_place;
	pthread_mutex_unlock(&c->lock);
	rv = 0;
out:
	if (job_fetchers(&j) > 0) { /* an early exit with fetchers running */
		job_fail(&j, rv < 0 ? rv : -ECANCELED);
		drain(&j);
	}
	if (fd >= 0)
		close(fd);
	/* nothing half-written under any name, unless the host is gone
	 * (or the file changed there: get_file decides): the next run
	 * resumes from it, as after a kill */
	if (rv < 0 && tmp[0] && !resumable(rv))
		unlink(tmp);
	if (j.oldfd >= 0)
		close(j.oldfd);
	wh_manifest_free(&oldman);
	wh_buf_free(&resp);
	pthread_mutex_destroy(&j.lock);
	pthread_cond_destroy(&j.cv);
	pthread_cond_destroy(&j.ccv);
	free(j.cq);
	free(j.abs);
	free(j.abs_tmp);
	free(j.old);
	free(j.buf);
	free(j.todo);
	free(j.dups);
	free(j.seen);
	free(j.chunks);
	free(all);
	return rv;
}

/* get_file - one file; started again when it changes on the host during
 * the copy (the chunks already fetched are found in its partial file) */
static int get_file(struct ctx *c, const struct entry *e)
{
	int rv = -ESTALE;

	for (int attempt = 0;
	     attempt < FILE_ATTEMPTS && (rv == -ESTALE || rv == -EAGAIN);
	     attempt++) {
		if (attempt > 0 && rv == -ESTALE)
			wh_info("'%s' changed on the host; copying it again",
				e->rpath);
		else if (attempt > 0)
			wh_info("'%s' changed here during the copy; copying "
				"it again", e->lpath);
		rv = get_file_once(c, e);
	}
	if (rv == -EAGAIN) {
		fail(c, "'%s' keeps changing during the copy", e->lpath);
		return rv;
	}
	if (rv == -ESTALE) {
		char tmp[4200];

		partial_name(e, tmp, sizeof(tmp));
		unlink(tmp);
		fail(c, "'%s' changed on the host during the copy: run the "
			"get again", e->rpath);
	}
	return rv;
}

static int get_link(struct ctx *c, const struct entry *e)
{
	char target[WH_MAX_PATH + 1], tmp[4200];
	struct wh_msg m, r;
	struct wh_buf resp;
	int rv;

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_READLINK;
	m.u.path.path.p = e->rpath;
	m.u.path.path.len = (uint16_t)strlen(e->rpath);
	wh_buf_init(&resp);
	rv = rpc(c, &m, WH_MSG_READLINK_REPLY, &resp, &r);
	if (rv == 0) {
		memcpy(target, r.u.readlink_reply.target.p,
		       r.u.readlink_reply.target.len);
		target[r.u.readlink_reply.target.len] = '\0';
	}
	wh_buf_free(&resp);
	if (rv < 0) {
		fail(c, "cannot read the link '%s': %s", e->rpath,
		     wh_strerror(rv));
		return rv;
	}
	snprintf(tmp, sizeof(tmp), "%s.wh-link", e->lpath);
	unlink(tmp);
	if (symlink(target, tmp) != 0 || rename(tmp, e->lpath) != 0) {
		rv = -errno;
		unlink(tmp);
		fail(c, "cannot create the link '%s': %s", e->lpath,
		     strerror(errno));
	}
	return rv;
}

/* ------------------------------------------------------- small files */

/*
 * With a host that offers GET_SMALL, regular files of at most
 * WH_MAX_SMALL_FILE bytes (by the listing) go several to a request: up to
 * WH_MAX_SMALL_FILES, SMALL_BATCH_BYTES of data and a request frame's
 * worth of paths.  Each comes back whole with its version and hash; the
 * client verifies the hash and writes the file with plain writes (one
 * request and no store for a file that is one chunk at most).  For a file
 * already at the destination the request carries its hash, and the host
 * answers SAME instead of sending the bytes.  Anything else (a per-file
 * error, a file that grew, a bad hash, a whole request that failed) goes
 * through the per-file path, which knows how to handle and report it.
 */
#define SMALL_BATCH_BYTES (1u << 20)
/* a batch of files to fetch (in directories this get made: nothing old
 * to compare) stops growing past SMALL_BATCH_SOFT bytes once it has
 * SMALL_BATCH_MIN files: a worker writes its files only when the whole
 * reply is in, and replies are sent one after the other, so smaller ones
 * let the writing overlap the transfer (bench/README.md, "Small files on
 * the LAN").  Files that may be there already are answered SAME, without
 * their bytes, and keep the large batches. */
#define SMALL_BATCH_SOFT (80u << 10)
#define SMALL_BATCH_MIN 8
#define SMALL_ENT_REQ_MAX (2 + 1 + WH_HASH_LEN) /* a request entry less its
						  * path */

struct small_batch {
	struct entry *e[WH_MAX_SMALL_FILES];
	bool have[WH_MAX_SMALL_FILES];
	uint8_t hash[WH_MAX_SMALL_FILES][WH_HASH_LEN];
	struct stat ost[WH_MAX_SMALL_FILES]; /* the destination's, if have */
	size_t n;
};

static bool small_candidate(const struct ctx *c, const struct entry *e)
{
	return (c->caps(c->caps_ctx) & WH_CAP_SMALL) &&
	       S_ISREG(e->attr.mode) && e->attr.size <= WH_MAX_SMALL_FILE &&
	       /* a sparse file keeps its holes: the per-file path */
	       e->attr.blocks * 512 >= e->attr.size;
}

/* take_batch - small files from |c->next_ent| on (directories between them
 * are skipped: they are made already); under c->lock.  0 if the next entry
 * is not a small file. */
static size_t take_batch(struct ctx *c, struct small_batch *b)
{
	size_t bytes = 0, req = 2, fresh = 0;

	b->n = 0;
	while (c->next_ent < c->nents && b->n < WH_MAX_SMALL_FILES) {
		struct entry *e = &c->ents[c->next_ent];
		size_t plen;

		if (S_ISDIR(e->attr.mode) || e->link_to != SIZE_MAX) {
			c->next_ent++;
			continue;
		}
		if (!small_candidate(c, e))
			break;
		plen = strlen(e->rpath);
		if (b->n >= SMALL_BATCH_MIN && fresh >= SMALL_BATCH_SOFT)
			break;
		if (b->n > 0 && (bytes + e->attr.size > SMALL_BATCH_BYTES ||
				 req + SMALL_ENT_REQ_MAX + plen >
					 WH_MAX_REQ_FRAME))
			break;
		bytes += e->attr.size;
		if (e->parent != SIZE_MAX && c->ents[e->parent].made)
			fresh += e->attr.size;
		req += SMALL_ENT_REQ_MAX + plen;
		b->e[b->n++] = e;
		c->next_ent++;
	}
	return b->n;
}

/* same_identity - |a| and |b| are one version of one file: the manifest
 * cache's key */
static bool same_identity(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* old_hash - the BLAKE3 of the file at |e|'s destination, if it is a
 * regular file of the listed size (else it cannot be the same), and its
 * fstat() in |st|: from the manifest cache |mc| (may be NULL) when it knows
 * that identity, else read (and then remembered there) */
static bool old_hash(struct wh_mcache *mc, const struct entry *e,
		     uint8_t *buf, uint8_t hash[WH_HASH_LEN], struct stat *pst)
{
	struct stat st;
	size_t got = 0;
	ssize_t n;
	int fd;

	fd = open(e->lpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != e->attr.size) {
		close(fd);
		return false;
	}
	*pst = st;
	if (mc && !verify_local() && wh_mcache_hash_get(mc, &st, hash)) {
		close(fd);
		return true;
	}
	while (got < e->attr.size) {
		n = pread(fd, buf + got, e->attr.size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got == e->attr.size) {
		wh_blake3(buf, got, hash);
		/* what was read is the file as |st| only if no write came
		 * between; and a write in the same tick keeps the identity */
		if (mc && fstat(fd, &st) == 0 && same_identity(&st, pst) &&
		    !wh_mcache_racy(&st))
			wh_mcache_hash_put(mc, &st, hash);
	}
	close(fd);
	return got == e->attr.size;
}

static void small_count(struct ctx *c, uint64_t size, bool fetched)
{
	pthread_mutex_lock(&c->lock);
	c->st->files++;
	c->st->bytes += size;
	if (size) {
		c->st->chunks++;
		if (fetched) {
			c->st->chunks_fetched++;
			c->st->wire_bytes += size;
		} else {
			c->st->chunks_from_dest++;
		}
	}
	pthread_mutex_unlock(&c->lock);
	add_done(c, size);
}

/* small_times - the host's times on |fd| (its mode is right already) */
static int small_times(int fd, const struct entry *e,
		       const struct wh_version *v)
{
	struct timespec times[2];

	times[0].tv_sec = e->attr.atime.sec;
	times[0].tv_nsec = e->attr.atime.nsec;
	times[1].tv_sec = v->mtime.sec;
	times[1].tv_nsec = v->mtime.nsec;
	return futimens(fd, times) == 0 ? 0 : -errno;
}

/*
 * A small file is written unnamed (O_TMPFILE in its directory) and linked
 * under its final name once whole: one directory entry made instead of a
 * temporary name made and renamed (a quarter less CPU per file on ext4),
 * and a get killed meanwhile leaves nothing behind.  Where the file system
 * has no O_TMPFILE, or WH_GET_NO_TMPFILE is set, the file is written
 * under its temporary name and renamed.
 */
static bool tmpfile_off;      /* a file system here refused O_TMPFILE */
static bool empty_path_off;   /* linkat AT_EMPTY_PATH was refused */

static bool tmpfile_wanted(void)
{
	static int env = -1;
	const char *v;

	if (__atomic_load_n(&env, __ATOMIC_RELAXED) < 0) {
		v = getenv("WH_GET_NO_TMPFILE");
		__atomic_store_n(&env, v && v[0] && strcmp(v, "0") ? 1 : 0,
				 __ATOMIC_RELAXED);
	}
	return !__atomic_load_n(&env, __ATOMIC_RELAXED) &&
	       !__atomic_load_n(&tmpfile_off, __ATOMIC_RELAXED);
}

/* small_tmpfile - an unnamed file for |e| in its directory, or -errno */
static int small_tmpfile(const struct entry *e, mode_t mode)
{
	char dir[4200];
	int fd, err;

	if (!dir_of(e->lpath, dir, sizeof(dir)))
		return -ENAMETOOLONG;
	fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
	if (fd >= 0)
		return fd;
	err = errno;
	/* not supported by this file system or kernel */
	if (err == EOPNOTSUPP || err == EISDIR || err == EINVAL)
		__atomic_store_n(&tmpfile_off, true, __ATOMIC_RELAXED);
	return -err;
}

/* link_fd - give the unnamed file |fd| the name |path|; 0 or -errno */
static int link_fd(int fd, const char *path)
{
	char proc[32];

	if (!__atomic_load_n(&empty_path_off, __ATOMIC_RELAXED)) {
		if (linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0)
			return 0;
		if (errno != ENOENT)
			return -errno;
		/* without CAP_DAC_READ_SEARCH AT_EMPTY_PATH is ENOENT: the
		 * descriptor's /proc link does the same for anyone */
		__atomic_store_n(&empty_path_off, true, __ATOMIC_RELAXED);
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0
		       ? 0
		       : -errno;
}

/* small_name - put the whole file |fd| at |e|'s destination: linked there
 * if it was unnamed and the name is free, else through its temporary name
 * |tmp| (a rename replaces an old file in one step).  0 or -errno. */
static int small_name(int fd, bool unnamed, const char *tmp,
		      const struct entry *e)
{
	int rv;

	if (unnamed) {
		rv = link_fd(fd, e->lpath);
		if (rv != -EEXIST)
			return rv;
		rv = link_fd(fd, tmp);
		if (rv == -EEXIST && unlink(tmp) == 0)
			rv = link_fd(fd, tmp);
		if (rv < 0)
			return rv;
	}
	if (rename(tmp, e->lpath) == 0)
		return 0;
	rv = -errno;
	unlink(tmp);
	return rv;
}

/* small_write - |e| is |ent|'s bytes: written unnamed or under a
 * temporary name, given the host's mode and times, named.  0 or -errno
 * (reported). */
static int small_write(struct ctx *c, const struct entry *e,
		       const struct wh_small_ent *ent)
{
	char tmp[4200];
	size_t size = (size_t)ent->version.size, done = 0;
	mode_t mode = file_mode(e);
	/* created with its final mode when the umask keeps it and no write
	 * is refused by it (no owner write): one fchmod less */
	bool direct = (mode & S_IWUSR) &&
		      (mode & c->umask) == 0;
	bool unnamed = false;
	struct stat st;
	int fd = -1, rv = 0;

	partial_name(e, tmp, sizeof(tmp));
	if (tmpfile_wanted()) {
		fd = small_tmpfile(e, direct ? mode : 0600);
		unnamed = fd >= 0;
	}
	/* else a new file, so that it has that mode (an interrupted get
	 * may have left one behind) */
	if (fd < 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			  direct ? mode : 0600);
	if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			  direct ? mode : 0600);
	if (fd < 0) {
		rv = -errno;
		create_failed(c, e, tmp, rv);
		return rv;
	}
	while (done < size) {
		ssize_t n = write(fd, ent->data + done, size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rv = n < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)n;
	}
	if (rv == -ENOSPC)
		fail(c, "no space left on the device writing '%s'", e->lpath);
	else if (rv < 0)
		fail(c, "cannot write '%s': %s", e->lpath, strerror(-rv));
	if (rv == 0) {
		rv = direct ? small_times(fd, e, &ent->version)
			    : set_meta(fd, e, &ent->version);
		if (rv < 0)
			fail(c, "cannot finish '%s': %s", e->lpath,
			     strerror(-rv));
	}
	if (rv == 0) {
		rv = small_name(fd, unnamed, tmp, e);
		if (rv == -ENOSPC)
			fail(c, "no space left on the device writing '%s'",
			     e->lpath);
		else if (rv < 0)
			fail(c, "cannot put '%s' in place: %s", e->lpath,
			     strerror(-rv));
	}
	/* its hash, as the file is now (naming it changes its ctime) */
	if (rv == 0 && c->o->mc && fstat(fd, &st) == 0)
		wh_mcache_hash_put(c->o->mc, &st, ent->hash);
	close(fd);
	if (rv < 0) {
		if (!unnamed)
			unlink(tmp);
		return rv;
	}
	small_count(c, size, true);
	return 0;
}

/* small_same - the destination of |e|, hashed as |ost|, already holds the
 * host's bytes: only its metadata may differ.  1 when done, 0 when the
 * destination changed meanwhile (the caller fetches the file), -errno
 * (reported). */
static int small_same(struct ctx *c, const struct entry *e,
		      const struct wh_small_ent *ent, const struct stat *ost)
{
	struct stat st;
	int fd, rv;

	fd = open(e->lpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != ent->version.size ||
	    !same_identity(&st, ost)) {
		close(fd);
		return 0;
	}
	rv = set_meta(fd, e, &ent->version);
	if (rv == 0 && c->o->mc && fstat(fd, &st) == 0)
		wh_mcache_hash_put(c->o->mc, &st, ent->hash);
	close(fd);
	if (rv < 0) {
		fail(c, "cannot update '%s': %s", e->lpath, strerror(-rv));
		return rv;
	}
	small_count(c, ent->version.size, false);
	return 1;
}

/* get_small - the files of |b| in one GET_SMALL; |resp| is the caller's
 * reply buffer, |buf| WH_MAX_SMALL_FILE bytes of scratch.  0 or the first
 * error (reported). */
static int get_small(struct ctx *c, struct small_batch *b,
		     struct wh_buf *resp, uint8_t *buf)
{
	uint8_t ents[WH_MAX_REQ_FRAME];
	struct wh_msg m, r;
	struct wh_small_ent ent;
	size_t elen = 0, pos = 0, i;
	uint64_t zwire = 0, zraw = 0, written = 0;
	int rv = 0, dr = 0;

	for (i = 0; i < b->n; i++) {
		ssize_t w;

		const struct entry *e = b->e[i];

		/* nothing old to look at in a directory this get made */
		b->have[i] = !(e->parent != SIZE_MAX && c->ents[e->parent].made) &&
			     old_hash(c->o->mc, e, buf, b->hash[i],
				      &b->ost[i]);
		w = wh_small_req_encode(b->e[i]->rpath, strlen(b->e[i]->rpath),
					b->have[i] ? b->hash[i] : NULL,
					ents + elen, sizeof(ents) - 2 - elen);
		if (w < 0)
			break; /* take_batch kept the paths within a frame */
		elen += (size_t)w;
	}
	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GET_SMALL;
	m.u.get_small.count = (uint16_t)i;
	m.u.get_small.entries = ents;
	m.u.get_small.entries_len = elen;
	if (i > 0)
		rv = rpc(c, &m, WH_MSG_GET_SMALL_REPLY, resp, &r);
	if (i > 0 && rv == 0 && r.u.get_small_reply.zstd) {
		zwire = r.u.get_small_reply.data_len;
		zraw = r.u.get_small_reply.raw_len;
		rv = wh_zstd_small_unpack(resp, &r);
		if (rv == WH_ERR_PROTO)
			wh_warn("host sent a bad compressed GET_SMALL reply");
	}
	if (i == 0 || rv < 0 || r.u.get_small_reply.count != i) {
		if (rv < 0)
			wh_debug("GET_SMALL failed (%s): one file at a time",
				 wh_strerror(rv));
		i = 0; /* every file the per-file way */
	}
	for (size_t k = 0; k < b->n; k++) {
		const struct entry *e = b->e[k];
		bool done = false;

		if (k < i)
			dr = wh_small_next(&r.u.get_small_reply, &pos, &ent);
		if (k < i && dr == 1 && ent.status == WH_SMALL_DATA) {
			uint8_t h[WH_HASH_LEN];

			wh_blake3(ent.data, (size_t)ent.version.size, h);
			if (!memcmp(h, ent.hash, WH_HASH_LEN)) {
				rv = small_write(c, e, &ent);
				if (rv < 0)
					return rv;
				written += ent.version.size;
				done = true;
			} else {
				wh_warn("'%s' failed verification; fetching it "
					"again", e->rpath);
			}
		} else if (k < i && dr == 1 && ent.status == WH_SMALL_SAME &&
			   b->have[k] &&
			   !memcmp(ent.hash, b->hash[k], WH_HASH_LEN)) {
			rv = small_same(c, e, &ent, &b->ost[k]);
			if (rv < 0)
				return rv;
			done = rv == 1;
		} else if (k < i && dr == 1 && ent.status == WH_SMALL_ERROR) {
			wh_debug("GET_SMALL '%s': %s; by itself", e->rpath,
				 strerror(ent.err));
		}
		if (!done) {
			rv = get_file(c, e);
			if (rv < 0)
				return rv;
		}
	}
	if (zraw && written) {
		/* the files came compressed: count their share of the zstd
		 * frame on the wire, not their size (small_write did) */
		uint64_t share = (uint64_t)((double)written * (double)zwire /
					    (double)zraw);

		pthread_mutex_lock(&c->lock);
		c->st->wire_bytes -= written - (share < written ? share
							       : written);
		pthread_mutex_unlock(&c->lock);
	}
	draw(c, false);
	return 0;
}

/* file_worker - copy entries until none is left or one failed */
static void *file_worker(void *arg)
{
	struct ctx *c = arg;
	struct small_batch *b = malloc(sizeof(*b));
	uint8_t *buf = malloc(WH_MAX_SMALL_FILE);
	struct wh_buf resp;

	wh_buf_init(&resp);
	for (;;) {
		struct entry *e;
		size_t n = 0;
		int rv = 0;

		pthread_mutex_lock(&c->lock);
		if (c->first_rv < 0 || c->next_ent >= c->nents) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		if (b && buf)
			n = take_batch(c, b);
		e = n || c->next_ent >= c->nents ? NULL
						 : &c->ents[c->next_ent++];
		pthread_mutex_unlock(&c->lock);
		if (n)
			rv = get_small(c, b, &resp, buf);
		else if (!e || e->link_to != SIZE_MAX)
			;	/* only directories were left, or a hard link */
		else if (S_ISREG(e->attr.mode))
			rv = get_file(c, e);
		else if (S_ISLNK(e->attr.mode))
			rv = get_link(c, e);
		if (rv < 0) {
			pthread_mutex_lock(&c->lock);
			if (!c->first_rv)
				c->first_rv = rv;
			pthread_mutex_unlock(&c->lock);
			break;
		}
	}
	wh_buf_free(&resp);
	free(b);
	free(buf);
	return NULL;
}

/* ---------------------------------------------------------- hard links */

/*
 * Regular files that are hard links of one another on the host become one
 * file and hard links to it at the destination: the first of them by path
 * is copied, the others are linked to it once every file is in place (and
 * a partial file under their names, of an earlier get that copied one of
 * them when the host's links were others, removed).
 * The listing tells them by their attributes: a link count above one, the
 * same inode number and the same version (size, mtime, ctime).  The
 * version guards against a share that spans two file systems, where one
 * inode number may name two files.  Where the destination cannot hold a
 * hard link (EPERM, EXDEV, EMLINK...), the file is copied from its first
 * name instead.
 */
static int link_key_cmp(const struct entry *a, const struct entry *b)
{
	const struct wh_attr *x = &a->attr, *y = &b->attr;

	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	if (x->mtime.sec != y->mtime.sec)
		return x->mtime.sec < y->mtime.sec ? -1 : 1;
	if (x->mtime.nsec != y->mtime.nsec)
		return x->mtime.nsec < y->mtime.nsec ? -1 : 1;
	if (x->ctime.sec != y->ctime.sec)
		return x->ctime.sec < y->ctime.sec ? -1 : 1;
	if (x->ctime.nsec != y->ctime.nsec)
		return x->ctime.nsec < y->ctime.nsec ? -1 : 1;
	return 0;
}

/* link_cmp - by link key, then by path (not by place in the walk, which
 * its threads make differ from run to run: the file copied, whose partial
 * file a get that was cut off leaves, is the same in the next run), then
 * by place */
static int link_cmp(const void *pa, const void *pb)
{
	const struct entry *a = *(const struct entry *const *)pa;
	const struct entry *b = *(const struct entry *const *)pb;
	int k = link_key_cmp(a, b);

	if (k)
		return k;
	k = strcmp(a->rpath, b->rpath);
	if (k)
		return k;
	return a < b ? -1 : a > b;
}

static bool link_candidate(const struct entry *e)
{
	return S_ISREG(e->attr.mode) && e->attr.nlink > 1 && e->attr.ino != 0;
}

/* find_links - set link_to of every file that is a hard link of one
 * before it by path */
static int find_links(struct ctx *c)
{
	struct entry **v;
	size_t n = 0;

	for (size_t i = 0; i < c->nents; i++)
		if (link_candidate(&c->ents[i]))
			n++;
	if (n < 2)
		return 0;
	v = malloc(n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < c->nents; i++)
		if (link_candidate(&c->ents[i]))
			v[n++] = &c->ents[i];
	qsort(v, n, sizeof(*v), link_cmp);
	for (size_t i = 1, first = 0; i < n; i++) {
		if (link_key_cmp(v[first], v[i]) != 0) {
			first = i;
			continue;
		}
		v[i]->link_to = (size_t)(v[first] - c->ents);
		c->total_bytes -= v[i]->attr.size;
	}
	free(v);
	return 0;
}

static bool no_hard_link_here(int err)
{
	return err == EPERM || err == EXDEV || err == EMLINK ||
	       err == EOPNOTSUPP || err == ENOSYS;
}

/* copy_local - |from|'s bytes, mode and times into a new file |to| */
static int copy_local(const char *from, const char *to)
{
	struct stat st;
	struct timespec t[2];
	bool plain = false;
	int in, out, rv = 0;

	memset(&st, 0, sizeof(st));
	in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return -errno;
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		   0600);
	if (out < 0) {
		rv = -errno;
		close(in);
		return rv;
	}
	if (fstat(in, &st) != 0)
		rv = -errno;
	while (rv == 0) {
		ssize_t k;

		if (!plain) {
			k = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
			if (k < 0 && (errno == EXDEV || errno == EINVAL ||
				      errno == ENOSYS || errno == EOPNOTSUPP)) {
				plain = true;
				continue;
			}
		} else {
			char buf[65536];
			ssize_t w = 0;

			k = read(in, buf, sizeof(buf));
			while (k > 0 && w < k) {
				ssize_t d = write(out, buf + w,
						  (size_t)(k - w));

				if (d < 0 && errno != EINTR) {
					k = -1;
					break;
				}
				w += d > 0 ? d : 0;
			}
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			rv = -errno;
		if (k <= 0)
			break;
	}
	t[0] = st.st_atim;
	t[1] = st.st_mtim;
	if (rv == 0 && (fchmod(out, st.st_mode & 07777) != 0 ||
			futimens(out, t) != 0))
		rv = -errno;
	if (close(out) != 0 && rv == 0)
		rv = -errno;
	close(in);
	return rv;
}

/* make_link - |e| as a hard link of the file it was found to be one of */
static int make_link(struct ctx *c, const struct entry *e)
{
	const struct entry *first = &c->ents[e->link_to];
	struct stat a, b;
	char tmp[4200];
	int rv = 0;

	if (stat(first->lpath, &a) == 0 && lstat(e->lpath, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		goto done; /* an earlier get linked them */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.wh-link", e->lpath) >=
	    sizeof(tmp)) {
		rv = -ENAMETOOLONG;
		goto out;
	}
	unlink(tmp);
	if (link(first->lpath, tmp) != 0)
		rv = no_hard_link_here(errno) ? copy_local(first->lpath, tmp)
					      : -errno;
	if (rv == 0 && rename(tmp, e->lpath) != 0)
		rv = -errno;
out:
	if (rv < 0) {
		unlink(tmp);
		fail(c, "cannot create '%s' (a hard link of '%s'): %s",
		     e->lpath, first->lpath, wh_strerror(rv));
		return rv;
	}
done:
	/* a partial file an earlier get left under this name (when it was
	 * the one copied) is nobody's now */
	partial_name(e, tmp, sizeof(tmp));
	unlink(tmp);
	c->st->files++;
	c->st->hardlinks++;
	return 0;
}

static int make_links(struct ctx *c)
{
	for (size_t i = 0; i < c->nents; i++)
		if (c->ents[i].link_to != SIZE_MAX) {
			int rv = make_link(c, &c->ents[i]);

			if (rv < 0)
				return rv;
		}
	return 0;
}

/* copy_entries - files and links, several at once: a small file costs a
 * few round trips, which would otherwise be paid one file at a time */
static int copy_entries(struct ctx *c)
{
	pthread_t th[FILE_WORKERS];
	size_t nfiles = 0;
	int nth = 0;

	for (size_t i = 0; i < c->nents; i++)
		if ((S_ISREG(c->ents[i].attr.mode) ||
		     S_ISLNK(c->ents[i].attr.mode)) &&
		    c->ents[i].link_to == SIZE_MAX)
			nfiles++;
	/* --parallel bounds the files in flight too (1: one at a time) */
	for (size_t i = 1; i < FILE_WORKERS && i < nfiles &&
			   i < (size_t)c->o->parallel;
	     i++)
		if (pthread_create(&th[nth], NULL, file_worker, c) == 0)
			nth++;
	file_worker(c);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	return c->first_rv;
}

int wh_get_run_rpc(struct wh_rpc *host, uint64_t (*caps)(void *ctx),
		   void *caps_ctx, struct wh_store *store,
		   const struct wh_get_opts *o, struct wh_get_stats *st,
		   char *err, size_t errlen)
{
	struct ctx c;
	struct wh_msg m, r;
	struct wh_buf resp;
	char *rp, *lp;
	int rv;

	memset(&c, 0, sizeof(c));
	memset(st, 0, sizeof(*st));
	c.rpc = *host;
	c.caps = caps;
	c.caps_ctx = caps_ctx;
	c.store = store;
	c.o = o;
	c.st = st;
	c.err = err;
	c.errlen = errlen;
	err[0] = '\0';
	c.t0 = wh_now_ns();
	c.umask = umask(022);
	umask(c.umask);
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.wcv, NULL);
	wh_window_init(&c.win, WINDOW_MIN, (unsigned)o->parallel,
		       WINDOW_MAX_BYTES);
	if (getenv("WH_GET_TRACE") && getenv("WH_GET_TRACE")[0])
		c.trace = fopen(getenv("WH_GET_TRACE"), "we");
	for (int i = WH_GET_MAX_PARALLEL; i-- > 0;) {
		wh_buf_init(&c.bufs[i]);
		wh_buf_init(&c.zbufs[i]);
		c.freeidx[c.nfree++] = i;
	}

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_GETATTR;
	m.u.path.path.p = o->remote;
	m.u.path.path.len = (uint16_t)strlen(o->remote);
	wh_buf_init(&resp);
	rv = rpc(&c, &m, WH_MSG_GETATTR_REPLY, &resp, &r);
	if (rv < 0) {
		wh_buf_free(&resp);
		fail(&c, "'%s' on the host: %s", o->remote[0] ? o->remote : "/",
		     wh_strerror(rv));
		goto out;
	}
	rp = strdup(o->remote);
	lp = strdup(o->local);
	if (!rp || !lp) {
		free(rp);
		free(lp);
		wh_buf_free(&resp);
		rv = -ENOMEM;
		fail(&c, "out of memory");
		goto out;
	}
	{
		struct wh_attr a = r.u.attr.attr;

		wh_buf_free(&resp);
		rv = walk(&c, rp, lp, &a);
	}
	if (rv == 0)
		rv = check_names(&c);
	if (rv < 0) {
		if (!err[0])
			fail(&c, "listing the host's files: %s",
			     wh_strerror(rv));
		goto out;
	}
	rv = find_links(&c);
	if (rv < 0) {
		fail(&c, "out of memory");
		goto out;
	}
	/* directories first (parents before children), then contents */
	for (size_t i = 0; i < c.nents && rv == 0; i++) {
		struct entry *e = &c.ents[i];

		if (!S_ISDIR(e->attr.mode))
			continue;
		if (mkdir(e->lpath, 0700) == 0) {
			e->made = true; /* no old destination files in it */
		} else if (errno != EEXIST) {
			rv = -errno;
			fail(&c, "cannot create '%s': %s", e->lpath,
			     strerror(errno));
		} else if (e->parent != SIZE_MAX) {
			/* what is there must be a directory, not a symlink
			 * (an earlier get's: the host had one there) that
			 * would take this tree's files wherever it points;
			 * a symlink goes, as get replaces files and links.
			 * (The top is the user's path, and followed.) */
			struct stat dst;

			if (lstat(e->lpath, &dst) == 0 &&
			    S_ISLNK(dst.st_mode) && unlink(e->lpath) == 0 &&
			    mkdir(e->lpath, 0700) == 0) {
				e->made = true;
			} else if (lstat(e->lpath, &dst) != 0 ||
				   !S_ISDIR(dst.st_mode)) {
				rv = -ENOTDIR;
				fail(&c, "cannot create the directory '%s': "
					 "something else is in the way",
				     e->lpath);
			}
		} else {
			/* the top: the user's path, followed, but a
			 * directory */
			struct stat dst;

			if (stat(e->lpath, &dst) != 0 ||
			    !S_ISDIR(dst.st_mode)) {
				rv = -ENOTDIR;
				fail(&c, "cannot copy the directory '%s' onto "
					 "'%s': that is not a directory",
				     e->rpath[0] ? e->rpath : "/", e->lpath);
			}
		}
	}
	if (rv == 0)
		rv = copy_entries(&c);
	if (rv == 0)
		rv = make_links(&c);
	/* directory modes and times last: writing inside changes mtime */
	for (size_t i = c.nents; i-- > 0 && rv == 0;) {
		struct entry *e = &c.ents[i];
		struct timespec t[2] = {
			{ e->attr.atime.sec, e->attr.atime.nsec },
			{ e->attr.mtime.sec, e->attr.mtime.nsec },
		};

		if (!S_ISDIR(e->attr.mode))
			continue;
		chmod(e->lpath, e->attr.mode & 07777);
		utimensat(AT_FDCWD, e->lpath, t, AT_SYMLINK_NOFOLLOW);
	}
	draw(&c, true);
out:
	for (size_t i = 0; i < c.nents; i++) {
		free(c.ents[i].rpath);
		free(c.ents[i].lpath);
	}
	free(c.ents);
	wh_debug("chunk window: %u requests at the end, %u at most in flight "
		 "(delivery %.1f MB/s, round trip %.2f ms)",
		 wh_window_get(&c.win), st->inflight_max,
		 (double)c.win.rate_bps / 1e6, (double)c.win.rtt_ns / 1e6);
	for (int i = 0; i < WH_GET_MAX_PARALLEL; i++) {
		wh_buf_free(&c.bufs[i]);
		wh_buf_free(&c.zbufs[i]);
	}
	if (c.trace)
		fclose(c.trace);
	pthread_cond_destroy(&c.wcv);
	pthread_mutex_destroy(&c.lock);
	st->seconds = (double)(wh_now_ns() - c.t0) / 1e9;
	return rv < 0 ? rv : 0;
}

static uint64_t session_caps(void *s)
{
	return wh_session_caps(s);
}

int wh_get_run(struct wh_session *s, struct wh_store *store,
	       const struct wh_get_opts *o, struct wh_get_stats *st,
	       char *err, size_t errlen)
{
	struct wh_rpc rpc;

	wh_session_rpc(s, &rpc);
	return wh_get_run_rpc(&rpc, session_caps, s, store, o, st, err,
			      errlen);
}
