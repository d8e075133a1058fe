/* wh_io_int.h - what the I/O backends share; not for other modules. */
#ifndef WH_IO_INT_H
#define WH_IO_INT_H

#include <errno.h>

#include "io/wh_io.h"

struct wh_io_ops {
	const char *name;
	ssize_t (*pread)(struct wh_io *io, int fd, void *buf, size_t len,
			 uint64_t off);
	ssize_t (*pwrite)(struct wh_io *io, int fd, const void *buf,
			  size_t len, uint64_t off);
	void (*pread2)(struct wh_io *io, int fd, void *b1, size_t l1,
		       uint64_t o1, void *b2, size_t l2, uint64_t o2,
		       ssize_t *r1, ssize_t *r2);
	void (*del)(struct wh_io *io);
};

struct wh_io {
	const struct wh_io_ops *ops;
	void *backend; /* the backend's own state */
};

#ifdef HAVE_IO_URING
/* wh_io_uring_new - an io_uring context, or -errno (io_uring_setup's). */
int wh_io_uring_new(struct wh_io **pio);
#else
static inline int wh_io_uring_new(struct wh_io **pio)
{
	*pio = NULL;
	return -ENOTSUP;
}
#endif

#endif /* WH_IO_INT_H */
