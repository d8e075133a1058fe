/*
 * wh_get.h - `wormhole get`: copy a file or a tree from a host, chunk by
 * chunk, every chunk verified, nothing fetched twice.
 *
 * For each file the host sends its manifest (content-defined chunks and
 * their BLAKE3 hashes).  A chunk is taken, in this order, from the local
 * chunk store (any earlier session, any file), from the file already at
 * the destination (an older version of it), or from the host; chunks from
 * the host are verified and written to the destination once: the store
 * keeps a reference to them there (wh_store_put_ref), not a second copy.
 * A killed or disconnected get leaves its partial file, and the next run
 * resumes in it: each chunk the store says is there is verified at its
 * offset and left in place (files smaller than a minimum chunk skip the
 * store: the destination is their copy).  Several
 * chunks are in flight at once (a window sized from the measured delivery
 * rate and round trip, at most |parallel| for all files together), and
 * several files: up to eight, at most |parallel|.  With a host that
 * streams manifests (WH_CAP_MSTREAM) chunks are fetched as soon as their
 * entries arrive, while the host is still hashing the file; a file that
 * changes on the host meanwhile is started again, at most three times in
 * all.  A file is written under a temporary name next to its destination
 * and renamed into place only when complete, with the host's mode and
 * mtime.  Files that are hard links of one another on the host (by the
 * listing's inode number, link count and version) are copied once and
 * hard-linked at the destination.
 */
#ifndef WH_GET_H
#define WH_GET_H

#include <stdbool.h>
#include <stdint.h>

#include "client/wh_rpc.h"
#include "client/wh_session.h"
#include "store/wh_store.h"

struct wh_mcache;

#define WH_GET_MAX_PARALLEL 64 /* the most chunk requests in flight */

struct wh_get_opts {
	const char *remote;   /* safe relative path on the host, "" = root */
	const char *local;    /* destination path */
	int parallel;         /* the most chunks in flight, all files together
			       * (1..WH_GET_MAX_PARALLEL); the window is
			       * sized from the measured rate and round
			       * trip, up to this */
	int timeout_ms;       /* per request */
	bool progress;        /* draw a progress line on stderr */
	struct wh_mcache *mc; /* manifests of local files, or NULL */
};

struct wh_get_stats {
	uint64_t files, bytes, wire_bytes, chunks, chunks_fetched;
	uint64_t chunks_from_store, chunks_from_dest;
	uint64_t hardlinks; /* files made as a hard link of another (counted
			     * in |files| too) */
	uint64_t chunks_in_place; /* found in the partial file a killed or
				   * disconnected get left, where they go */
	unsigned inflight_max; /* the most chunk requests that were in flight */
	double seconds;
};

/*
 * wh_get_run - copy |opts->remote| to |opts->local|.  Returns 0, or a
 * negative error with a one-line explanation in |err|.
 */
int wh_get_run(struct wh_session *s, struct wh_store *store,
	       const struct wh_get_opts *opts, struct wh_get_stats *st,
	       char *err, size_t errlen);

/*
 * wh_get_run_rpc - wh_get_run over any transport: requests go through
 * |host| (only its call() is used), and |caps|(|caps_ctx|) says, whenever
 * asked, which capabilities the host agreed to (a session's may change
 * when it reconnects).  wh_get_run is this with the session's own.  For
 * the fuzzer, which plays the host in process.
 */
int wh_get_run_rpc(struct wh_rpc *host, uint64_t (*caps)(void *ctx),
		   void *caps_ctx, struct wh_store *store,
		   const struct wh_get_opts *opts, struct wh_get_stats *st,
		   char *err, size_t errlen);

#endif /* WH_GET_H */
