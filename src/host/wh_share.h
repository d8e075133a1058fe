/*
 * wh_share.h - the shared folder: safe path resolution, request service,
 * and change watching.  No network code: the host loop hands it whole
 * request frames and sends back the response frames it builds.
 *
 * Safety: every path comes from the wire and is checked with
 * wh_path_valid(), then resolved with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) from the share's root fd, so
 * nothing outside the share is ever reached, and no symlink is ever followed
 * on the host (clients see symlinks as symlinks and resolve them
 * themselves).  Devices, fifos and sockets are invisible: not listed, and
 * ENOENT on lookup.  Regular files are opened for reading only after an
 * O_PATH open proved they are regular files (no open() side effects).
 * The share is read-only: nothing here writes to it.
 */
#ifndef WH_SHARE_H
#define WH_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wh_buf.h"
#include "proto/wh_proto.h"

struct wh_share;

/*
 * wh_share_open - open directory |dir| as a share.  Returns 0 with
 * *pshare set, or -errno (-ENOTDIR, -ENOENT, -EACCES...).  Free with
 * wh_share_close().
 */
int wh_share_open(const char *dir, struct wh_share **pshare);
/* wh_share_close - release everything; NULL is fine. */
void wh_share_close(struct wh_share *share);

struct wh_mcache;
/* wh_share_set_mcache - cache manifests there (borrowed; must outlive the
 * share).  Without one, manifests are kept in memory only. */
void wh_share_set_mcache(struct wh_share *share, struct wh_mcache *mc);

/*
 * wh_share_serve - serve one request frame (header + payload, |len| bytes)
 * and append exactly one response frame (the matching reply, or ERROR with
 * an errno) to |resp|.
 * Returns 0 when the connection may go on (including requests that got an
 * ERROR reply, such as an unsafe path or a missing file), or WH_ERR_PROTO
 * when the frame itself was malformed (unknown type, bad lengths, trailing
 * bytes, not a request type): |resp| then holds an ERROR (EPROTO) frame and
 * the caller should send it and close the connection.  -ENOMEM if |resp|
 * could not grow.
 * Thread-safe: may be called from several threads at once.
 */
int wh_share_serve(struct wh_share *share, const uint8_t *req, size_t len,
		   struct wh_buf *resp);

/*
 * wh_share_set_defer - with |defer|, a MANIFEST whose manifest is still
 * being computed (by the cache's hasher threads) is not waited for:
 * wh_share_serve and wh_share_serve_fd return WH_SHARE_LATER, append
 * nothing, and the caller serves the same request again later.  Without
 * (the default) they wait for it.
 */
#define WH_SHARE_LATER 1
void wh_share_set_defer(struct wh_share *share, bool defer);

/* READs at most this long may be answered by wh_share_read_nowait */
#define WH_SHARE_NOWAIT_MAX (16 * 1024)

/*
 * wh_share_read_nowait - answer a small READ at once if that cannot block:
 * the path in the dentry cache (openat2 RESOLVE_CACHED) and the bytes in
 * the page cache (preadv2 RWF_NOWAIT), so that the network thread can
 * answer it instead of handing it to a worker.
 * Returns 1 with the READ_REPLY appended to |resp|; 0 when it would block
 * or is not a READ of at most WH_SHARE_NOWAIT_MAX bytes (then |resp| is
 * unchanged; pass the request to wh_share_serve_fd() with *|fd|, which is
 * the file opened already, or -1); or -ENOMEM.  Errors of any kind (a
 * missing file, say) are left to wh_share_serve_fd().
 */
int wh_share_read_nowait(struct wh_share *share, const uint8_t *req,
			 size_t len, struct wh_buf *resp, int *fd);

/* wh_share_serve_fd - wh_share_serve(), with the file of a READ already
 * open as |fd| (from wh_share_read_nowait; closed here), or -1. */
int wh_share_serve_fd(struct wh_share *share, const uint8_t *req, size_t len,
		      int fd, struct wh_buf *resp);

/* wh_share_serve_from - wh_share_serve_fd(), for |client| (not 0): the
 * manifest cache's hashers take the files of different clients in turn */
int wh_share_serve_from(struct wh_share *share, uint64_t client,
			const uint8_t *req, size_t len, int fd,
			struct wh_buf *resp);

/*
 * Change watching (inotify).  Directories are watched once a client has
 * looked them up or listed them (wh_share_serve does this by itself), so
 * the cost follows what clients use, not the size of the share.
 *
 * wh_share_watch_fd - a pollable fd that becomes readable when events are
 * pending, or -1 if watching is unavailable.
 * wh_share_watch_drain - read pending events and call |cb| once per change
 * (|dir| relative to the root, "" for the root; |name| the entry that
 * changed, "" for the directory itself), coalescing duplicates within one
 * drain.  Never blocks.  Returns the number of callbacks or -errno.
 */
int wh_share_watch_fd(struct wh_share *share);
typedef void (*wh_share_change_cb)(void *ud, const char *dir, size_t dir_len,
				   const char *name, size_t name_len);
int wh_share_watch_drain(struct wh_share *share, wh_share_change_cb cb,
			 void *ud);

#endif /* WH_SHARE_H */
