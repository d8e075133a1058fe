/*
 * wh_fs.h - the mounted file system: FUSE low-level operations over a
 * struct wh_rpc (normally a QUIC session to the host).
 *
 * The client keeps its own inode table: each FUSE node id is a refcounted
 * node {parent, name} whose path is sent in requests, so node ids survive
 * a reconnect to a restarted host.  Attributes and entries are cached for a
 * long time because the host pushes invalidations (wh_fs_inval); the kernel
 * page cache is kept across opens while a file's version is unchanged.  A
 * read that sees a file version different from the one it is served at
 * fails with EIO, so a reader never gets a silent mix of old and new bytes.
 *
 * Opens: when the kernel offers it, OPEN is declined (FUSE's no-open mode:
 * the kernel then opens and closes files without asking), and the version
 * a file's reads are served at lives on its node: it is the version the
 * kernel was last given when it looked the name up (LOOKUP, READDIRPLUS).
 * Otherwise (or with |open_each|) every open is answered and carries it.
 *
 * Reads go through the data plane (client/wh_fetch.h): a file read
 * sequentially is served from whole verified chunks, taken from RAM, the
 * chunk store or the host and fetched ahead of the reader; random reads
 * send READ requests for just the bytes asked, unless their chunks are
 * already in RAM.  The root's extended attribute "user.wormhole.stats"
 * shows the counters (READ requests and bytes, chunks fetched, from the
 * store, made of READ replies, ...).
 */
#ifndef WH_FS_H
#define WH_FS_H

#include <stdbool.h>
#include <stddef.h>

#include "client/wh_rpc.h"
#include "store/wh_store.h"

struct wh_fs;

struct wh_fs_opts {
	int timeout_ms;        /* per request, e.g. 8000 */
	double attr_timeout;   /* seconds the kernel may cache attributes */
	double entry_timeout;  /* seconds the kernel may cache names */
	bool debug;            /* libfuse debug output */
	struct wh_store *store; /* chunk store (borrowed), or NULL */
	uint64_t ram_limit;    /* bytes of chunks kept in RAM; 0: 128 MiB */
	int fetch_workers;     /* chunk requests in flight; 0: default */
	/* the capability bits the host agreed to now (WH_CAP_*); NULL: the
	 * host has WH_CAP_CHUNKS only */
	uint64_t (*caps)(void *ctx);
	void *caps_ctx;
	/* answer every OPEN even when the kernel could do without (the
	 * mode of kernels without no-open support) */
	bool open_each;
};

/* wh_fs_new - a file system over |rpc| (borrowed: must outlive it). */
int wh_fs_new(struct wh_rpc *rpc, const struct wh_fs_opts *opts,
	      struct wh_fs **pfs);

/*
 * wh_fs_mount - mount on |mountpoint| (read-only, fsname "wormhole",
 * subtype "wormhole").  Returns 0 or a negative error with a message
 * logged.
 */
int wh_fs_mount(struct wh_fs *fs, const char *mountpoint);

/*
 * wh_fs_run - serve requests with a pool of threads until unmounted or
 * wh_fs_exit() is called.  Returns 0 or a negative error.
 */
int wh_fs_run(struct wh_fs *fs);
/* wh_fs_exit - make wh_fs_run return (signal-safe is not required). */
void wh_fs_exit(struct wh_fs *fs);

/*
 * wh_fs_inval - the host says |name| in directory |dir| changed ("" name:
 * the directory itself).  Drops cached attributes, names and pages for it
 * and tells the kernel.  Never blocks on the kernel: notifications are
 * queued to a dedicated thread (calling the kernel from the thread that
 * serves the connection could deadlock against a pending request).
 */
void wh_fs_inval(struct wh_fs *fs, const char *dir, size_t dir_len,
		 const char *name, size_t name_len);
/* wh_fs_inval_all - after a reconnect: forget every cached fact. */
void wh_fs_inval_all(struct wh_fs *fs);

/* wh_fs_del - unmount if needed and free; NULL is fine. */
void wh_fs_del(struct wh_fs *fs);

#endif /* WH_FS_H */
