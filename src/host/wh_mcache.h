/*
 * wh_mcache.h - the host's manifest cache.
 *
 * A file's manifest (its content-defined chunks and their BLAKE3 hashes)
 * is computed once per version of the file, where a version is the key
 * (device, inode, size, mtime, ctime), and kept in memory (the most recent
 * ones) and on disk (every one of a file of at least WH_CDC_MIN bytes, one
 * small file each, written atomically; smaller files hash faster than a
 * cache file is made),
 * so an unchanged file is never hashed twice, across host restarts too.  A
 * changed file has a new key: it is hashed again, never served from a
 * stale manifest.  Thread-safe.
 */
#ifndef WH_MCACHE_H
#define WH_MCACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "chunk/wh_chunk.h"

struct wh_mcache;

/*
 * wh_mcache_open - a cache persisted in |dir| (created if missing), or in
 * memory only if |dir| is NULL.  Returns 0 or -errno.
 */
int wh_mcache_open(const char *dir, struct wh_mcache **pmc);
void wh_mcache_close(struct wh_mcache *mc);

/*
 * wh_mcache_get - the manifest of the regular file open as |fd|, whose
 * fstat() is |st|, copied into |out| (reset first).  Computes it when not
 * cached: with |name| (the file's path, or NULL), from the manifest of the
 * version last seen under that name if it is still known, which makes the
 * stretches that did not change cheaper to hash (wh_chunk_fd_hint).
 * Returns 0, -EAGAIN if the file changed while it was hashed, or another
 * -errno.
 */
int wh_mcache_get(struct wh_mcache *mc, int fd, const struct stat *st,
		  const char *name, struct wh_manifest *out);

/*
 * wh_mcache_lookup - like wh_mcache_get, but only a manifest already
 * known (in memory or on disk) for exactly this identity |st| (device,
 * inode, size, mtime and ctime): it never reads the file.  0, -ENOENT if
 * not known, or another -errno.
 */
int wh_mcache_lookup(struct wh_mcache *mc, const struct stat *st,
		     struct wh_manifest *out);

/*
 * wh_mcache_put - remember that the file whose fstat() is |st| has
 * manifest |m| (a client that just wrote the file knows it).  0 or -errno.
 */
int wh_mcache_put(struct wh_mcache *mc, const struct stat *st,
		  const struct wh_manifest *m);

/*
 * Streamed manifests.  A job is one file version's manifest, complete (from
 * the cache) or being computed.  Every request for the same version while
 * it is computed joins the same job, so a file is hashed once however many
 * clients ask; the finished manifest goes to the cache as with
 * wh_mcache_get.  Big files are queued for two hasher threads (oldest
 * first; past 64 waiting, the caller hashes it itself or is told to ask
 * again, see |may_wait|), small ones are hashed right in the caller.
 * WH_MCACHE_TEST_HOLD=FILE in the environment (tests) holds the hasher
 * threads back until FILE exists.
 *
 * wh_mcache_stream - a reference to the job for the file open as |fd|
 * (fstat() |st|, |name| as for wh_mcache_get; the job keeps its own
 * descriptor), asked for by |owner| (a client; 0 for none).  0 or -errno.
 * The hashers take the owners of queued jobs in turn, so one owner's many
 * big files do not hold back another's one.  A big file that would have
 * to be hashed by the caller (64 queued already) is, if |may_wait|; else
 * that is -EBUSY and nothing is started: ask again later.
 * wh_mjob_wait - wait until the job has more than |start| entries, is
 * finished, or |deadline_ns| (wh_now_ns() clock) passed; then |*known| is
 * the number of entries computed so far and |*done| whether that is all.
 * Returns 0, -EAGAIN if the file changed while it was hashed (the entries
 * already handed out are void), or another -errno from hashing.
 * wh_mjob_copy - entries [start, start + n) of the job (n <= known).
 * wh_mjob_put - drop a reference.
 */
struct wh_mjob;
int wh_mcache_stream(struct wh_mcache *mc, int fd, const struct stat *st,
		     const char *name, bool may_wait, uint64_t owner,
		     struct wh_mjob **pjob);
int wh_mjob_wait(struct wh_mjob *j, size_t start, uint64_t deadline_ns,
		 size_t *known, bool *done);
void wh_mjob_copy(struct wh_mjob *j, size_t start, size_t n,
		  struct wh_chunk *out);
void wh_mjob_put(struct wh_mjob *j);

/*
 * Whole-file hashes of small files (those GET_SMALL sends), by the same
 * identity (device, inode, size, mtime, ctime): a fixed table of
 * WH_MCACHE_HASHES entries (the least recently used of a few go when a new
 * one comes), in memory, and for a cache with a directory saved there in
 * one file when the cache is closed and, while it is open, by the first
 * put 30 s after the last save (read back when first needed), since a
 * cache file per small file costs more than hashing it again.
 *
 * wh_mcache_hash_get - the BLAKE3 of the whole file whose fstat() is |st|,
 * if known for exactly that identity: true, or false (nothing read).
 * wh_mcache_hash_put - remember it.  A caller that hashed bytes it read
 * itself should check wh_mcache_racy() first.
 * wh_mcache_racy - whether |st| was changed so recently (within a second
 * of now, or in the future) that a write in the same timestamp tick could
 * still follow without changing its identity: such a file is not
 * remembered.
 */
#define WH_MCACHE_HASHES 65536
bool wh_mcache_hash_get(struct wh_mcache *mc, const struct stat *st,
			uint8_t hash[WH_HASH_LEN]);
void wh_mcache_hash_put(struct wh_mcache *mc, const struct stat *st,
			const uint8_t hash[WH_HASH_LEN]);
bool wh_mcache_racy(const struct stat *st);

/* wh_mcache_hash_stats - small-file hashes served / missed. */
void wh_mcache_hash_stats(struct wh_mcache *mc, unsigned long *hits,
			  unsigned long *misses);

/* wh_mcache_stats - how many manifests were computed / served cached. */
void wh_mcache_stats(struct wh_mcache *mc, unsigned long *computed,
		     unsigned long *hits);
/* wh_mcache_hint_stats - how many of those computed were hashed with the
 * manifest of the version before, and how many bytes it gave. */
void wh_mcache_hint_stats(struct wh_mcache *mc, unsigned long *hinted,
			  uint64_t *kept);

/* wh_mcache_default_dir - $XDG_CACHE_HOME/wormhole/manifests, or
 * $HOME/.cache/wormhole/manifests; NULL if neither is set.  Caller frees. */
char *wh_mcache_default_dir(void);

#endif /* WH_MCACHE_H */
