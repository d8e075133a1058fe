/*
 * wh_io.h - disk I/O behind one small interface, with two backends:
 * io_uring (liburing) and portable pread/pwrite.
 *
 * Each thread has its own context (wh_io_thread()), so no locking is
 * needed.  The backend is chosen once per process: the environment
 * variable WH_IO=uring or WH_IO=posix forces one; otherwise io_uring is
 * used when the kernel allows it, and pread/pwrite when io_uring_setup
 * fails (ENOSYS on old kernels, EPERM where it is forbidden, ENOMEM under
 * a tight memlock limit).  Builds without liburing get the portable
 * backend only.
 */
#ifndef WH_IO_H
#define WH_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct wh_io;

/* wh_io_thread - this thread's context (made on first use, freed when the
 * thread exits).  Never NULL: falls back to the portable backend. */
struct wh_io *wh_io_thread(void);

/* wh_io_name - "io_uring" or "posix". */
const char *wh_io_name(const struct wh_io *io);

/*
 * wh_io_pread - read |len| bytes at |off|, retrying short reads, stopping
 * early only at end of file.  Returns the bytes read or -errno.
 */
ssize_t wh_io_pread(struct wh_io *io, int fd, void *buf, size_t len,
		    uint64_t off);

/* wh_io_pwrite - write all |len| bytes at |off|.  Returns len or -errno. */
ssize_t wh_io_pwrite(struct wh_io *io, int fd, const void *buf, size_t len,
		     uint64_t off);

/*
 * wh_io_pread2 - two independent reads at once (the backend may run them
 * in parallel: io_uring submits both with one system call).  Each result
 * as for wh_io_pread in |r1| and |r2|.
 */
void wh_io_pread2(struct wh_io *io, int fd, void *b1, size_t l1, uint64_t o1,
		  void *b2, size_t l2, uint64_t o2, ssize_t *r1, ssize_t *r2);

/*
 * wh_io_copy - copy |len| bytes of |in| at |ioff| to |out| at |ooff|.
 * Inside the kernel (copy_file_range: no pass through user space, a
 * reflink where the file system shares blocks) when it can; where it
 * cannot (EXDEV, EOPNOTSUPP, ENOSYS, EINVAL: other file systems, old
 * kernels, special files) through |bounce| (|bsize| bytes, at least one)
 * with the backend's reads and writes.  WH_IO_COPY=plain forces the
 * second way (for tests).  Returns len, -EIO if |in| ends inside the
 * range, or -errno.
 */
ssize_t wh_io_copy(struct wh_io *io, int in, uint64_t ioff, int out,
		   uint64_t ooff, size_t len, void *bounce, size_t bsize);

/* wh_io_copy_in_kernel - whether wh_io_copy tries copy_file_range at all
 * (false under WH_IO_COPY=plain or without the system call). */
bool wh_io_copy_in_kernel(void);

#endif /* WH_IO_H */
