/*
 * wh_mcache.h - the host's manifest cache.
 *
 * A file's manifest (its content-defined chunks and their BLAKE3 hashes)
 * is computed once per version of the file, where a version is the key
 * (device, inode, size, mtime, ctime), and kept in memory (the most recent
 * ones) and on disk (every one, one small file each, written atomically),
 * so an unchanged file is never hashed twice, across host restarts too.  A
 * changed file has a new key: it is hashed again, never served from a
 * stale manifest.  Thread-safe.
 */
#ifndef WH_MCACHE_H
#define WH_MCACHE_H

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
 * cached.  Returns 0, -EAGAIN if the file changed while it was hashed, or
 * another -errno.
 */
int wh_mcache_get(struct wh_mcache *mc, int fd, const struct stat *st,
		  struct wh_manifest *out);

/*
 * wh_mcache_put - remember that the file whose fstat() is |st| has
 * manifest |m| (a client that just wrote the file knows it).  0 or -errno.
 */
int wh_mcache_put(struct wh_mcache *mc, const struct stat *st,
		  const struct wh_manifest *m);

/* wh_mcache_stats - how many manifests were computed / served cached. */
void wh_mcache_stats(struct wh_mcache *mc, unsigned long *computed,
		     unsigned long *hits);

/* wh_mcache_default_dir - $XDG_CACHE_HOME/wormhole/manifests, or
 * $HOME/.cache/wormhole/manifests; NULL if neither is set.  Caller frees. */
char *wh_mcache_default_dir(void);

#endif /* WH_MCACHE_H */
