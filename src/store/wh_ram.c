/* wh_ram.c - a bounded, single-flight RAM cache of chunks. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/wh_err.h"
#include "common/wh_time.h"
#include "store/wh_ram.h"

#define NBUCKETS 4096         /* a power of two */
#define POOL_MAX 8            /* spare blocks kept for reuse */
#define POOL_BYTES (24u << 20) /* at most this much in them */

enum { ENT_PENDING, ENT_READY };

struct wh_ram_ent {
	uint8_t key[WH_RAM_KEY_LEN];
	struct wh_ram_ent *hnext;        /* hash chain, while in_table */
	struct wh_ram_ent *lprev, *lnext; /* LRU list: ready, in_table */
	unsigned int refs;
	unsigned int waiters;  /* threads in wh_ram_wait on it */
	pthread_cond_t cv;     /* ready or failed; made on the first wait */
	bool has_cv;
	int state;
	int err;     /* set when failed */
	bool in_table;
	void *mem;   /* owned block */
	size_t cap;
	const uint8_t *data;
	size_t len;
};

struct pool_block {
	void *mem;
	size_t cap;
};

struct wh_ram {
	pthread_mutex_t lock;
	pthread_condattr_t cattr; /* CLOCK_MONOTONIC */
	uint64_t limit;
	struct wh_ram_ent *buckets[NBUCKETS];
	struct wh_ram_ent *lru_head, *lru_tail; /* head: most recent */
	struct pool_block pool[POOL_MAX];
	size_t npool, pool_bytes;
	struct wh_ram_stats st;
};

static size_t bucket_of(const uint8_t *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof(h)); /* a hash already */
	return (size_t)(h & (NBUCKETS - 1));
}

int wh_ram_new(uint64_t limit, struct wh_ram **pr)
{
	struct wh_ram *r = calloc(1, sizeof(*r));

	*pr = NULL;
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&r->cattr);
	pthread_condattr_setclock(&r->cattr, CLOCK_MONOTONIC);
	r->limit = limit;
	*pr = r;
	return 0;
}

/* pool_give - keep |mem| for reuse or free it; lock held. */
static void pool_give(struct wh_ram *r, void *mem, size_t cap)
{
	if (!mem)
		return;
	if (r->npool < POOL_MAX && r->pool_bytes + cap <= POOL_BYTES) {
		r->pool[r->npool].mem = mem;
		r->pool[r->npool].cap = cap;
		r->npool++;
		r->pool_bytes += cap;
		return;
	}
	free(mem);
}

static void lru_unlink(struct wh_ram *r, struct wh_ram_ent *e)
{
	if (e->lprev)
		e->lprev->lnext = e->lnext;
	else
		r->lru_head = e->lnext;
	if (e->lnext)
		e->lnext->lprev = e->lprev;
	else
		r->lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void lru_push(struct wh_ram *r, struct wh_ram_ent *e)
{
	e->lprev = NULL;
	e->lnext = r->lru_head;
	if (r->lru_head)
		r->lru_head->lprev = e;
	else
		r->lru_tail = e;
	r->lru_head = e;
}

/* table_remove - take |e| out of the table (and the LRU list); lock held. */
static void table_remove(struct wh_ram *r, struct wh_ram_ent *e)
{
	struct wh_ram_ent **pp = &r->buckets[bucket_of(e->key)];

	if (!e->in_table)
		return;
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	e->hnext = NULL;
	if (e->state == ENT_READY) {
		lru_unlink(r, e);
		r->st.bytes -= e->cap;
	}
	e->in_table = false;
	r->st.entries--;
}

static void ent_free(struct wh_ram *r, struct wh_ram_ent *e)
{
	pool_give(r, e->mem, e->cap);
	if (e->has_cv)
		pthread_cond_destroy(&e->cv);
	free(e);
}

/* wake - |e| is ready or failed; lock held */
static void wake(struct wh_ram_ent *e)
{
	if (e->waiters > 0)
		pthread_cond_broadcast(&e->cv);
}

/* shrink - evict unreferenced ready entries, oldest first, until under
 * the limit; lock held. */
static void shrink(struct wh_ram *r, uint64_t limit)
{
	struct wh_ram_ent *e = r->lru_tail, *prev;

	for (; e && r->st.bytes > limit; e = prev) {
		prev = e->lprev;
		if (e->refs > 0)
			continue;
		table_remove(r, e);
		r->st.evictions++;
		ent_free(r, e);
	}
}

int wh_ram_acquire(struct wh_ram *r, const uint8_t key[static WH_RAM_KEY_LEN],
		   bool create, struct wh_ram_ent **pe)
{
	size_t b = bucket_of(key);
	struct wh_ram_ent *e;

	*pe = NULL;
	pthread_mutex_lock(&r->lock);
	for (e = r->buckets[b]; e; e = e->hnext)
		if (memcmp(e->key, key, WH_RAM_KEY_LEN) == 0)
			break;
	if (e) {
		e->refs++;
		if (e->state == ENT_READY) {
			lru_unlink(r, e);
			lru_push(r, e);
		}
		r->st.hits++;
		pthread_mutex_unlock(&r->lock);
		*pe = e;
		return 0;
	}
	r->st.misses++;
	if (!create) {
		pthread_mutex_unlock(&r->lock);
		return -ENOENT;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&r->lock);
		return -ENOMEM;
	}
	memcpy(e->key, key, WH_RAM_KEY_LEN);
	e->refs = 1;
	e->state = ENT_PENDING;
	e->in_table = true;
	e->hnext = r->buckets[b];
	r->buckets[b] = e;
	r->st.entries++;
	pthread_mutex_unlock(&r->lock);
	*pe = e;
	return 1;
}

int wh_ram_wait(struct wh_ram *r, struct wh_ram_ent *e, uint64_t deadline_ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(deadline_ns / WH_NS_PER_S),
		.tv_nsec = (long)(deadline_ns % WH_NS_PER_S),
	};
	int rv = 0;

	pthread_mutex_lock(&r->lock);
	if (e->state == ENT_PENDING && e->err == 0 && !e->has_cv) {
		if (pthread_cond_init(&e->cv, &r->cattr) != 0) {
			pthread_mutex_unlock(&r->lock);
			return -ENOMEM;
		}
		e->has_cv = true;
	}
	e->waiters++;
	while (e->state == ENT_PENDING && e->err == 0) {
		if (pthread_cond_timedwait(&e->cv, &r->lock, &ts) == ETIMEDOUT &&
		    e->state == ENT_PENDING && e->err == 0) {
			rv = WH_ERR_TIMEOUT;
			break;
		}
	}
	e->waiters--;
	if (rv == 0 && e->state != ENT_READY)
		rv = e->err;
	pthread_mutex_unlock(&r->lock);
	return rv;
}

bool wh_ram_ready(struct wh_ram *r, struct wh_ram_ent *e)
{
	bool ready;

	pthread_mutex_lock(&r->lock);
	ready = e->state == ENT_READY;
	pthread_mutex_unlock(&r->lock);
	return ready;
}

void wh_ram_fill(struct wh_ram *r, struct wh_ram_ent *e, void *mem,
		 size_t cap, const uint8_t *data, size_t len)
{
	pthread_mutex_lock(&r->lock);
	e->mem = mem;
	e->cap = cap;
	e->data = data;
	e->len = len;
	e->state = ENT_READY;
	if (e->in_table) {
		r->st.bytes += cap;
		lru_push(r, e);
		shrink(r, r->limit);
	}
	wake(e);
	pthread_mutex_unlock(&r->lock);
}

void wh_ram_fail(struct wh_ram *r, struct wh_ram_ent *e, int err)
{
	pthread_mutex_lock(&r->lock);
	table_remove(r, e);
	e->err = err < 0 ? err : -EIO;
	wake(e);
	pthread_mutex_unlock(&r->lock);
}

void wh_ram_hold(struct wh_ram *r, struct wh_ram_ent *e)
{
	pthread_mutex_lock(&r->lock);
	e->refs++;
	pthread_mutex_unlock(&r->lock);
}

void wh_ram_put(struct wh_ram *r, struct wh_ram_ent *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&r->lock);
	if (--e->refs == 0) {
		if (!e->in_table)
			ent_free(r, e);
		else if (e->state == ENT_READY && r->st.bytes > r->limit)
			shrink(r, r->limit);
	}
	pthread_mutex_unlock(&r->lock);
}

const uint8_t *wh_ram_data(const struct wh_ram_ent *e)
{
	return e->data;
}

size_t wh_ram_len(const struct wh_ram_ent *e)
{
	return e->len;
}

void *wh_ram_alloc(struct wh_ram *r, size_t len, size_t *cap)
{
	void *mem = NULL;

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->npool; i++) {
		/* a block at most twice the need: no hoarding 4 MiB blocks
		 * for small chunks */
		if (r->pool[i].cap >= len && r->pool[i].cap / 2 <= len) {
			mem = r->pool[i].mem;
			*cap = r->pool[i].cap;
			r->pool_bytes -= *cap;
			r->pool[i] = r->pool[--r->npool];
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (!mem) {
		mem = malloc(len ? len : 1);
		*cap = len ? len : 1;
	}
	return mem;
}

void wh_ram_free(struct wh_ram *r, void *mem, size_t cap)
{
	pthread_mutex_lock(&r->lock);
	pool_give(r, mem, cap);
	pthread_mutex_unlock(&r->lock);
}

void wh_ram_drop_all(struct wh_ram *r)
{
	pthread_mutex_lock(&r->lock);
	shrink(r, 0);
	pthread_mutex_unlock(&r->lock);
}

void wh_ram_get_stats(struct wh_ram *r, struct wh_ram_stats *st)
{
	pthread_mutex_lock(&r->lock);
	*st = r->st;
	pthread_mutex_unlock(&r->lock);
}

void wh_ram_del(struct wh_ram *r)
{
	if (!r)
		return;
	for (size_t b = 0; b < NBUCKETS; b++) {
		struct wh_ram_ent *e = r->buckets[b], *next;

		for (; e; e = next) {
			next = e->hnext;
			free(e->mem);
			if (e->has_cv)
				pthread_cond_destroy(&e->cv);
			free(e);
		}
	}
	for (size_t i = 0; i < r->npool; i++)
		free(r->pool[i].mem);
	pthread_condattr_destroy(&r->cattr);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
