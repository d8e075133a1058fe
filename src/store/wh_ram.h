/*
 * wh_ram.h - a bounded RAM cache of chunks, keyed by their BLAKE3 hash,
 * with single-flight filling.
 *
 * An entry is either pending (someone is producing its bytes) or ready.
 * wh_ram_acquire() finds an entry or, if asked, creates a pending one that
 * the caller must then fill (wh_ram_fill) or fail (wh_ram_fail); everyone
 * else who asks for the same key meanwhile gets the same entry and waits
 * for it (wh_ram_wait), so a chunk is produced once however many readers
 * want it.  Every acquired entry holds a reference, dropped with
 * wh_ram_put(); an entry's bytes stay valid while it is referenced, even
 * if it was evicted meanwhile.
 *
 * The ready entries are kept under |limit| bytes by evicting the least
 * recently used unreferenced ones.  Referenced and pending entries are never
 * evicted, so the cache can go over its limit by what is in use; it comes
 * back under as references are dropped.  Buffers of evicted entries are
 * kept in a small pool and reused by wh_ram_alloc(), so a steady stream of
 * chunks does not allocate.  Thread-safe.
 */
#ifndef WH_RAM_H
#define WH_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WH_RAM_KEY_LEN 32

struct wh_ram;
struct wh_ram_ent;

struct wh_ram_stats {
	uint64_t bytes;     /* bytes of ready entries in the table */
	uint64_t entries;   /* entries in the table (ready or pending) */
	uint64_t hits;      /* acquires that found an entry */
	uint64_t misses;    /* acquires that did not */
	uint64_t evictions; /* ready entries dropped for room */
};

/* wh_ram_new - an empty cache of at most |limit| bytes.  0 or -ENOMEM. */
int wh_ram_new(uint64_t limit, struct wh_ram **pr);
/* wh_ram_del - free everything; no entry may still be referenced.  NULL
 * is fine. */
void wh_ram_del(struct wh_ram *r);

/*
 * wh_ram_acquire - the entry for |key|, referenced, in *pe.  Returns 0 if
 * it exists (ready or pending: see wh_ram_wait), 1 if it did not and
 * |create| made a pending one that the caller now owns filling, -ENOENT if
 * it did not and !|create|, -ENOMEM.
 */
int wh_ram_acquire(struct wh_ram *r, const uint8_t key[static WH_RAM_KEY_LEN],
		   bool create, struct wh_ram_ent **pe);

/*
 * wh_ram_wait - wait until |e| is ready or failed, at most until
 * |deadline_ns| (CLOCK_MONOTONIC, wh_now_ns()).  Returns 0 when ready, the
 * (negative) error passed to wh_ram_fail, or WH_ERR_TIMEOUT.
 */
int wh_ram_wait(struct wh_ram *r, struct wh_ram_ent *e, uint64_t deadline_ns);

/* wh_ram_ready - |e| holds its bytes (no waiting). */
bool wh_ram_ready(struct wh_ram *r, struct wh_ram_ent *e);

/*
 * wh_ram_fill - the bytes of pending entry |e|: |len| bytes at |data|,
 * inside the malloc'ed block |mem| of |cap| bytes, which the cache now
 * owns (freed or pooled when the entry goes).  Wakes the waiters.
 */
void wh_ram_fill(struct wh_ram *r, struct wh_ram_ent *e, void *mem,
		 size_t cap, const uint8_t *data, size_t len);

/* wh_ram_fail - pending entry |e| cannot be filled (|err| < 0): it leaves
 * the table, its waiters get |err|; a later acquire starts afresh. */
void wh_ram_fail(struct wh_ram *r, struct wh_ram_ent *e, int err);

/* wh_ram_hold - one more reference to |e|, which the caller holds. */
void wh_ram_hold(struct wh_ram *r, struct wh_ram_ent *e);

/* wh_ram_put - drop a reference from wh_ram_acquire (NULL is fine). */
void wh_ram_put(struct wh_ram *r, struct wh_ram_ent *e);

/* wh_ram_data, wh_ram_len - the bytes of a ready entry. */
const uint8_t *wh_ram_data(const struct wh_ram_ent *e);
size_t wh_ram_len(const struct wh_ram_ent *e);

/*
 * wh_ram_alloc - a block of at least |len| bytes for wh_ram_fill, from
 * the pool when one fits, else malloc; its size in *cap.  NULL when out
 * of memory.  wh_ram_free gives back one that was not used.
 */
void *wh_ram_alloc(struct wh_ram *r, size_t len, size_t *cap);
void wh_ram_free(struct wh_ram *r, void *mem, size_t cap);

/* wh_ram_drop_all - evict every unreferenced ready entry. */
void wh_ram_drop_all(struct wh_ram *r);

void wh_ram_get_stats(struct wh_ram *r, struct wh_ram_stats *st);

#endif /* WH_RAM_H */
