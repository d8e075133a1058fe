/*
 * wh_io.c - the backend choice and the portable pread/pwrite backend.  The
 * io_uring backend is in wh_io_uring.c (built when liburing is found).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/wh_log.h"
#include "io/wh_io.h"
#include "io/wh_io_int.h"

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int forced; /* 0 auto, 1 uring, 2 posix */
static bool copy_plain; /* WH_IO_COPY=plain: no copy_file_range */

/* posix_xfer - all |len| bytes at |off|, resuming short transfers; a
 * read stops early only at end of file.  Bytes or -errno. */
static ssize_t posix_xfer(bool write, int fd, void *buf, size_t len,
			  uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		uint8_t *p = (uint8_t *)buf + done;
		ssize_t n = write ? pwrite(fd, p, len - done, (off_t)(off + done))
				  : pread(fd, p, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			if (write)
				return -EIO;
			break;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static ssize_t posix_pread(struct wh_io *io, int fd, void *buf, size_t len,
			   uint64_t off)
{
	(void)io;
	return posix_xfer(false, fd, buf, len, off);
}

static ssize_t posix_pwrite(struct wh_io *io, int fd, const void *buf,
			    size_t len, uint64_t off)
{
	(void)io;
	return posix_xfer(true, fd, (void *)buf, len, off);
}

static void posix_pread2(struct wh_io *io, int fd, void *b1, size_t l1,
			 uint64_t o1, void *b2, size_t l2, uint64_t o2,
			 ssize_t *r1, ssize_t *r2)
{
	*r1 = posix_pread(io, fd, b1, l1, o1);
	*r2 = posix_pread(io, fd, b2, l2, o2);
}

static void posix_del(struct wh_io *io)
{
	free(io);
}

static const struct wh_io_ops posix_ops = {
	.name = "posix",
	.pread = posix_pread,
	.pwrite = posix_pwrite,
	.pread2 = posix_pread2,
	.del = posix_del,
};

static struct wh_io *posix_new(void)
{
	struct wh_io *io = calloc(1, sizeof(*io));

	if (io)
		io->ops = &posix_ops;
	return io;
}

static void thread_exit(void *p)
{
	struct wh_io *io = p;

	io->ops->del(io);
}

static void init_once(void)
{
	const char *e = getenv("WH_IO");

	const char *c = getenv("WH_IO_COPY");

	pthread_key_create(&key, thread_exit);
	if (c && !strcmp(c, "plain"))
		copy_plain = true;
	else if (c && *c && strcmp(c, "kernel"))
		wh_warn("WH_IO_COPY='%s' is neither 'kernel' nor 'plain': "
			"copying in the kernel where it can", c);
	if (e && !strcmp(e, "uring"))
		forced = 1;
	else if (e && !strcmp(e, "posix"))
		forced = 2;
	else if (e && *e)
		wh_warn("WH_IO='%s' is neither 'uring' nor 'posix': choosing "
			"by myself", e);
}

struct wh_io *wh_io_thread(void)
{
	static struct wh_io fallback = { .ops = &posix_ops };
	static bool logged;
	struct wh_io *io;
	int err = 0;

	pthread_once(&once, init_once);
	io = pthread_getspecific(key);
	if (io)
		return io;
	if (forced != 2) {
		err = wh_io_uring_new(&io);
		if (err < 0 && forced == 1 &&
		    !__atomic_load_n(&logged, __ATOMIC_RELAXED))
			wh_warn("WH_IO=uring, but io_uring is unavailable (%s): "
				"using pread/pwrite", strerror(-err));
	}
	if (!io)
		io = posix_new();
	if (!io)
		return &fallback; /* out of memory: still usable */
	/* threads make theirs at once: one of them says which it is */
	if (!__atomic_exchange_n(&logged, true, __ATOMIC_RELAXED)) {
		wh_debug("disk I/O: %s%s%s", io->ops->name,
			 err < 0 ? ", io_uring unavailable: " : "",
			 err < 0 ? strerror(-err) : "");
	}
	pthread_setspecific(key, io);
	return io;
}

const char *wh_io_name(const struct wh_io *io)
{
	return io->ops->name;
}

ssize_t wh_io_pread(struct wh_io *io, int fd, void *buf, size_t len,
		    uint64_t off)
{
	return io->ops->pread(io, fd, buf, len, off);
}

ssize_t wh_io_pwrite(struct wh_io *io, int fd, const void *buf, size_t len,
		     uint64_t off)
{
	return io->ops->pwrite(io, fd, buf, len, off);
}

void wh_io_pread2(struct wh_io *io, int fd, void *b1, size_t l1, uint64_t o1,
		  void *b2, size_t l2, uint64_t o2, ssize_t *r1, ssize_t *r2)
{
	io->ops->pread2(io, fd, b1, l1, o1, b2, l2, o2, r1, r2);
}

bool wh_io_copy_in_kernel(void)
{
	pthread_once(&once, init_once);
#ifdef __linux__
	return !copy_plain;
#else
	return false;
#endif
}

/* plain_copy - |len| bytes through |bounce|, the backend's reads and
 * writes */
static ssize_t plain_copy(struct wh_io *io, int in, uint64_t ioff, int out,
			  uint64_t ooff, size_t len, void *bounce,
			  size_t bsize)
{
	size_t done = 0;

	while (done < len) {
		size_t want = len - done < bsize ? len - done : bsize;
		ssize_t n = io->ops->pread(io, in, bounce, want, ioff + done);

		if (n < 0)
			return n;
		if ((size_t)n < want)
			return -EIO; /* the source ends inside the range */
		n = io->ops->pwrite(io, out, bounce, want, ooff + done);
		if (n < 0)
			return n;
		done += want;
	}
	return (ssize_t)len;
}

ssize_t wh_io_copy(struct wh_io *io, int in, uint64_t ioff, int out,
		   uint64_t ooff, size_t len, void *bounce, size_t bsize)
{
	size_t done = 0;

	if (bsize == 0)
		return -EINVAL;
#ifdef __linux__
	/* io_uring has no operation for it: both backends make the system
	 * call, and fall back to their own reads and writes */
	while (wh_io_copy_in_kernel() && done < len) {
		loff_t so = (loff_t)(ioff + done), oo = (loff_t)(ooff + done);
		ssize_t n = copy_file_range(in, &so, out, &oo, len - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP ||
			      errno == ENOSYS || errno == EINVAL ||
			      errno == ETXTBSY || errno == EPERM))
			break; /* the rest the plain way */
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the source ends inside the range */
		done += (size_t)n;
	}
#endif
	if (done < len) {
		ssize_t n = plain_copy(io, in, ioff + done, out, ooff + done,
				       len - done, bounce, bsize);

		if (n < 0)
			return n;
	}
	return (ssize_t)len;
}
