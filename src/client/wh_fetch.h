/*
 * wh_fetch.h - the mount's read-side data plane: sequential reads are
 * served from whole verified chunks fetched ahead of the reader, random
 * reads are left to small READ requests.
 *
 * Per open file the fetcher watches where reads land.  Once a large file
 * is read sequentially it asks the host for the file's manifest (in the
 * background: reads go on with READ meanwhile; manifests are kept per path
 * and file version), then serves reads from chunks.  With a host that has
 * WH_CAP_MSTREAM the manifest is streamed (MANIFEST_STREAM): its entries
 * arrive while the host hashes the file, and a read is served from chunks
 * as soon as the entries for its bytes are known; without it the old-form
 * MANIFEST is used (the whole manifest at once), and without WH_CAP_CHUNKS
 * every read is left to READ.  Each chunk is taken
 * from the RAM cache (struct wh_ram), else from the chunk store (verified;
 * a corrupt chunk is discarded and fetched again), else fetched with CHUNK,
 * verified against its BLAKE3 hash, put in the RAM cache and kept in the
 * store.  Chunks ahead of the reader are fetched by a pool of worker
 * threads, several in flight, up to a window that doubles, up to
 * |window_max|, whenever the reader has to wait.  A chunk needed by a read
 * goes before prefetches; chunks the reader got with READ before the
 * manifest came are fetched last (backfill), so that the store ends up
 * with the whole file.  The bytes of the current run that came with READ
 * (wh_fetch_got_read) are kept, up to a bound, until the manifest says
 * where their chunks are: a chunk they cover whole that hashes right goes
 * into the store from them, not over the wire a second time.  Random reads are served from chunks only when
 * the chunks are already in RAM; otherwise the caller sends a READ of just
 * the bytes asked (no waiting for whole chunks).
 *
 * Version rules: every chunk is asked for at the version the file was
 * opened at; the host answers ESTALE when the file changed, and a manifest
 * of another version means the same: the read fails with -ESTALE and the
 * caller tells its reader (EIO).  A streamed manifest whose parts change
 * version, or that the host ends with ESTALE, means the same; entries of
 * one version are never mixed with another's.  After wh_fetch_file_inval() the next read
 * is left to the caller (a READ, whose reply carries the current version),
 * so a change the host announced is noticed.
 *
 * Every wait has a deadline (|timeout_ms|); no allocation per chunk when
 * the RAM cache's pool has a block.  Thread-safe.
 */
#ifndef WH_FETCH_H
#define WH_FETCH_H

#include <stdint.h>
#include <sys/uio.h>

#include "client/wh_rpc.h"
#include "proto/wh_proto.h"
#include "store/wh_ram.h"
#include "store/wh_store.h"

struct wh_fetch;
struct wh_fetch_file;

struct wh_fetch_opts {
	int timeout_ms;       /* per request and per wait, e.g. 8000 */
	int workers;          /* chunk requests in flight; 0: default (8) */
	uint64_t window_max;  /* bytes requested ahead of a reader; 0: 64 MiB */
	uint64_t min_size;    /* smaller files always use READ; 0: 4 MiB */
	/* the capability bits the host agreed to (WH_CAP_*), asked before
	 * each manifest (a reconnect may reach another host); NULL: the
	 * host has WH_CAP_CHUNKS only */
	uint64_t (*caps)(void *ctx);
	void *caps_ctx;
	/* optional: a small file of wh_fetch_small() is in RAM, entry |e|
	 * (referenced for the call only: wh_ram_hold it to keep it).  Called
	 * from a worker (or from wh_fetch_small for a file in RAM already),
	 * without locks held; it must not block. */
	void (*small_done)(void *ctx, const char *path, size_t len,
			   const struct wh_version *v, struct wh_ram_ent *e);
	void *small_ctx;
};

struct wh_fetch_stats {
	uint64_t manifests;         /* manifests fetched from the host */
	uint64_t chunks_fetched;    /* CHUNK replies used */
	uint64_t bytes_fetched;     /* their bytes */
	uint64_t chunks_from_store; /* chunks read from the store */
	uint64_t chunks_bad;        /* CHUNK replies that failed verification */
	uint64_t reads_chunked;     /* reads served from chunks */
	uint64_t reads_ram;         /* of those, random reads served from RAM */
	uint64_t reads_passed;      /* reads left to the caller (READ) */
	uint64_t store_corrupt;     /* corrupt chunks found in the store */
	uint64_t mparts;            /* MANIFEST_PART replies used */
	uint64_t chunks_from_reads; /* chunks stored from READ replies */
	uint64_t bytes_from_reads;  /* their bytes */
	uint64_t busy;              /* jobs queued or running now */
	uint64_t bytes_wire;        /* file data received: CHUNK, READ and
				     * GET_SMALL replies, as sent (the zstd
				     * frame of a compressed one) */
	uint64_t small_queued;      /* small files queued by wh_fetch_small */
	uint64_t small_fetched;     /* of those, fetched whole into RAM */
	uint64_t small_bytes;       /* their bytes */
	uint64_t reads_small;       /* reads served from them */
	uint64_t small_batches;     /* GET_SMALL requests answered for them */
	uint64_t small_bad;         /* files in GET_SMALL replies that failed
				     * verification (never cached) */
};

/*
 * wh_fetch_new - a fetcher over |rpc|, |store| (NULL: none) and |ram|,
 * all borrowed: they must outlive it.  0 or -errno.
 */
int wh_fetch_new(struct wh_rpc *rpc, struct wh_store *store,
		 struct wh_ram *ram, const struct wh_fetch_opts *opts,
		 struct wh_fetch **pf);
/* wh_fetch_del - stop the workers (each finishes its request, bounded by
 * the timeout) and free; no file may still be open.  NULL is fine. */
void wh_fetch_del(struct wh_fetch *f);

/* wh_fetch_open - state for one reader of the file at |path| (|len|
 * bytes) at version |v|: an open, or without opens a node's read state
 * (src/fuse).  0 or -ENOMEM. */
int wh_fetch_open(struct wh_fetch *f, const char *path, size_t len,
		  const struct wh_version *v, struct wh_fetch_file **pff);
/* wh_fetch_close - the open ended; NULL is fine. */
void wh_fetch_close(struct wh_fetch *f, struct wh_fetch_file *ff);
/* wh_fetch_file_inval - the host said the file changed (or may have). */
void wh_fetch_file_inval(struct wh_fetch_file *ff);

#define WH_FETCH_MAX_IOV 8 /* a READ of WH_MAX_READ spans at most 6 chunks */

/* The chunks that serve one read; release with wh_fetch_done(). */
struct wh_fetch_reply {
	struct iovec iov[WH_FETCH_MAX_IOV];
	struct wh_ram_ent *ents[WH_FETCH_MAX_IOV];
	int n;
};

/*
 * wh_fetch_read - serve |size| bytes at |off| of the file (|path|, |len|:
 * its current path) from chunks.  Returns 1 with the bytes in |out|
 * (fewer than |size| only at the end of the file), 0 when the caller must
 * send a READ itself, -ESTALE when the file is no longer at the open's
 * version, or another negative error (WH_ERR_TIMEOUT, -EIO, ...).
 */
int wh_fetch_read(struct wh_fetch *f, struct wh_fetch_file *ff,
		  const char *path, size_t len, uint64_t off, size_t size,
		  struct wh_fetch_reply *out);
/* wh_fetch_count_wire - the caller's own READ reply carried |n| bytes of
 * data on the wire (its zstd frame when compressed): counted in
 * bytes_wire. */
void wh_fetch_count_wire(struct wh_fetch *f, uint64_t n);

/*
 * wh_fetch_got_read - the caller's READ of |off| got |len| bytes at |data|
 * at the open's version (it checked the reply's version).  The fetcher may
 * copy them to store their chunks without fetching them again.
 */
void wh_fetch_got_read(struct wh_fetch *f, struct wh_fetch_file *ff,
		       uint64_t off, const void *data, size_t len);
/* wh_fetch_done - release what wh_fetch_read returned 1 with. */
void wh_fetch_done(struct wh_fetch *f, struct wh_fetch_reply *out);

/* Files at most this big are fetched whole by wh_fetch_small(). */
#define WH_FETCH_SMALL_MAX (256u * 1024)

/* A small file to fetch whole ahead of its reader. */
struct wh_fetch_small {
	const char *path; /* not NUL-terminated; borrowed for the call */
	size_t len;
	struct wh_version v; /* the version its reader will open */
};

/*
 * wh_fetch_small - fetch the |n| files of |v| whole, in the background,
 * several requests in flight (the workers), into the RAM cache under a
 * key made of the path and the version, so that a later open at that
 * version reads them without a round trip (wh_fetch_read).  Empty files,
 * files over WH_FETCH_SMALL_MAX and files already in RAM or on their way
 * are skipped (those in RAM are told to small_done again, before the
 * return: their reader may know their names only now); so are the rest once |window_max| bytes of small files are
 * queued or in flight (bounded memory).  A reply of another version than
 * the one asked for is dropped (the reader then sends its own READ, which
 * sees the change).  With a host that offers WH_CAP_SMALL they go
 * several to a GET_SMALL, each checked against its hash (one that fails
 * is never cached); otherwise each file is one READ of its whole length.
 * Returns how many files were queued.
 */
size_t wh_fetch_small(struct wh_fetch *f, const struct wh_fetch_small *v,
		      size_t n);

void wh_fetch_get_stats(struct wh_fetch *f, struct wh_fetch_stats *st);

#endif /* WH_FETCH_H */
