/*
 * wh_store.h - the client's content-addressed chunk store.
 *
 * A stored chunk is a file named by its BLAKE3 hash (chunks/ab/abcd...),
 * written to a temporary name and renamed, so a crash leaves either the
 * whole chunk or nothing.  An entry may also be a reference to a byte
 * range of a file outside the store, one that `wormhole get` wrote: its
 * absolute path (and a second name the file may have instead, its
 * temporary one), the offset, and the file's identity (device, inode,
 * size, birth time) when the chunk was written.  A reference is used only
 * if one of the names opens a regular file of that identity.  Every read
 * is verified against the hash: bytes that do not hash to it are
 * discarded and reported missing, so they are fetched again, never used.
 * Every copy of a chunk may be referred to: one that no longer holds is
 * dropped and the next tried.
 *
 * The entries are indexed by an append-only log (chunks.log) of 128-byte
 * checksummed records, shared by every process using the directory: a
 * record one appends, another reads at its next look-up.  The log's order
 * is the LRU order.  The store is bounded: when the entries exceed the
 * limit, the least recently used go, a reference counting one 4 KiB
 * block, a name file one while a reference names it, a stored chunk its
 * blocks, and each live record its 128 bytes.  That runs on a thread of
 * the store's own while it is open (started the first time the store
 * passes its limit; down to 15/16 of it, a batch at a time), and at
 * close; a chunk being read is not evicted.  A chunk file the log does
 * not name (an older binary's, or one a crash or another process's
 * eviction left unnamed) is entered in it when asked for, or when a sweep
 * of chunks/ (a subdirectory a second while the store is written) meets
 * it.  A put's success means the bytes are on disk under their hash and
 * named, whoever else puts the same chunk at the same time.  The log is
 * rewritten with its live records, when it is mostly dead ones, without
 * holding the store's lock throughout.  Thread-safe.
 */
#ifndef WH_STORE_H
#define WH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunk/wh_chunk.h"

struct stat;

struct wh_store;

/* wh_store_open - a store in |dir| (created) holding at most |limit| bytes.
 * Returns 0 or -errno. */
int wh_store_open(const char *dir, uint64_t limit, struct wh_store **ps);
/* wh_store_close - stop the eviction thread, evict down to the limit,
 * then free; NULL is fine. */
void wh_store_close(struct wh_store *s);

/*
 * wh_store_get - read chunk |hash| of |len| bytes into |buf|.  Returns 0,
 * -ENOENT if absent (or corrupt: then it is deleted), or another -errno.
 */
int wh_store_get(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 uint8_t *buf, size_t len);

/* where wh_store_get_at found a chunk: a stored one (dev = ino = 0), or
 * |offset| of the file (dev, ino) a reference named */
struct wh_store_loc {
	uint64_t dev, ino, offset;
};

/* wh_store_get_at - wh_store_get, and where the bytes came from in |loc| */
int wh_store_get_at(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		    uint8_t *buf, size_t len, struct wh_store_loc *loc);

/*
 * wh_store_put_ref - chunk |hash| of |len| bytes is at |offset| of the
 * regular file |st| describes, named |path| or else |alt| (NULL: none);
 * both absolute.  Replaces an earlier reference for |hash|.  0 or -errno.
 */
int wh_store_put_ref(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		     size_t len, const char *path, const char *alt,
		     const struct stat *st, uint64_t offset);

/* wh_store_has - the store holds a chunk named |hash| of |len| bytes, or a
 * reference to one (not verified: wh_store_get verifies). */
bool wh_store_has(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		  size_t len);

/* wh_store_put - keep |len| bytes (which hash to |hash|).  0 or -errno;
 * -ENOSPC when the disk is full (the caller goes on without storing). */
int wh_store_put(struct wh_store *s, const uint8_t hash[static WH_HASH_LEN],
		 const uint8_t *data, size_t len);

/* wh_store_evictions - how many times the store, past its limit (or with
 * its log half dead), was evicted while open, for tests. */
unsigned long wh_store_evictions(struct wh_store *s);

/* wh_store_corrupt - chunks found corrupt and deleted so far. */
unsigned long wh_store_corrupt(struct wh_store *s);

/* wh_store_apply_log - read |len| bytes of log records (as the file
 * chunks.log holds them) into the index; the number of slots that were
 * not records.  For tests and the fuzzer. */
int wh_store_apply_log(struct wh_store *s, const uint8_t *buf, size_t len);

/* wh_store_seal_record - give the 128 bytes of a log record its magic and
 * a checksum that holds (the fuzzer's, to reach past the checksum). */
void wh_store_seal_record(uint8_t rec[128]);

/* wh_store_parse_name - a name file's |n| bytes, named |id|: the path and
 * other name ("" if none, both malloc'd) and the file's dev, ino, size
 * and birth time.
 * 0 or -EINVAL (-ENOMEM). */
int wh_store_parse_name(const uint8_t *buf, size_t n, const uint8_t id[16],
			char **path, char **alt, uint64_t ident[4]);

/* wh_store_sweep - enter in the log the chunk files it does not name in
 * the next |ndirs| of the 256 subdirectories of chunks/ (the eviction
 * thread does one every second while the store is written); how many. */
unsigned wh_store_sweep(struct wh_store *s, unsigned ndirs);

/* wh_store_test_hook - for tests: called without the store's lock where
 * a slow or failing step is to be injected: |what| "write" before the
 * file of chunk |hash| is written (a negative errno fails that write),
 * "direct" before a chunk file's O_DIRECT write, |hash| NULL (not 0: the
 * file system refuses it, as one without O_DIRECT would), "compact"
 * while the log is rewritten, its live entries written (a negative errno
 * gives the rewrite up).  NULL (the default): none. */
extern int (*wh_store_test_hook)(struct wh_store *s, const char *what,
				 const uint8_t *hash);

/* wh_store_default_dir - $XDG_CACHE_HOME/wormhole or ~/.cache/wormhole;
 * NULL if neither is known.  Caller frees. */
char *wh_store_default_dir(void);

#endif /* WH_STORE_H */
