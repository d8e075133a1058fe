/*
 * wh_store.h - the client's content-addressed chunk store.
 *
 * One file per chunk, named by its BLAKE3 hash (chunks/ab/abcd...), written
 * to a temporary name and renamed, so a crash leaves either the whole
 * chunk or nothing.  Every read is verified against the name: a chunk
 * whose bytes do not hash to its name is deleted and reported missing, so
 * it is fetched again and never used.  The store is bounded: when it grows
 * past its limit, the least recently used chunks (by mtime, refreshed on
 * every use) are evicted.  The directory itself is the persistent index.
 * Thread-safe.
 */
#ifndef WH_STORE_H
#define WH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunk/wh_chunk.h"

struct wh_store;

/* wh_store_open - a store in |dir| (created) holding at most |limit| bytes.
 * Returns 0 or -errno. */
int wh_store_open(const char *dir, uint64_t limit, struct wh_store **ps);
/* wh_store_close - evict down to the limit, then free; NULL is fine. */
void wh_store_close(struct wh_store *s);

/*
 * wh_store_get - read chunk |hash| of |len| bytes into |buf|.  Returns 0,
 * -ENOENT if absent (or corrupt: then it is deleted), or another -errno.
 */
int wh_store_get(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 uint8_t *buf, size_t len);

/* wh_store_has - the store holds a chunk named |hash| of |len| bytes (not
 * verified: wh_store_get verifies). */
bool wh_store_has(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		  size_t len);

/* wh_store_put - keep |len| bytes (which hash to |hash|).  0 or -errno;
 * -ENOSPC when the disk is full (the caller goes on without storing). */
int wh_store_put(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 const uint8_t *data, size_t len);

/* wh_store_corrupt - chunks found corrupt and deleted so far. */
unsigned long wh_store_corrupt(struct wh_store *s);

/* wh_store_default_dir - $XDG_CACHE_HOME/wormhole or ~/.cache/wormhole;
 * NULL if neither is known.  Caller frees. */
char *wh_store_default_dir(void);

#endif /* WH_STORE_H */
