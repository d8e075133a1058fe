/*
 * wh_io_uring.c - the io_uring backend: one small ring per thread.  Short
 * transfers are completed by resubmitting the rest, like the portable
 * loop does; two reads can go in with one submission.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>
#include <unistd.h>

#include "io/wh_io_int.h"

#define RING_DEPTH 8

struct ring {
	struct io_uring ring;
	bool broken; /* the ring itself failed: use pread/pwrite */
};

/* one - submit one read or write of [buf, buf+len) at |off| and wait */
static ssize_t one(struct ring *r, bool write, int fd, void *buf, size_t len,
		   uint64_t off)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int rv, res;

	if (r->broken)
		goto fallback;
	sqe = io_uring_get_sqe(&r->ring);
	if (!sqe)
		goto broken;
	if (write)
		io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
	else
		io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
	rv = io_uring_submit_and_wait(&r->ring, 1);
	if (rv < 0)
		goto broken;
	rv = io_uring_wait_cqe(&r->ring, &cqe);
	if (rv < 0)
		goto broken;
	res = cqe->res;
	io_uring_cqe_seen(&r->ring, cqe);
	return res;
broken:
	/* a ring that cannot submit or complete is not trusted again; any
	 * completion still inside it is abandoned with it */
	r->broken = true;
fallback:
	if (write) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		return n < 0 ? -errno : n;
	} else {
		ssize_t n = pread(fd, buf, len, (off_t)off);

		return n < 0 ? -errno : n;
	}
}

static ssize_t uring_xfer(struct wh_io *io, bool write, int fd, void *buf,
			  size_t len, uint64_t off)
{
	struct ring *r = io->backend;
	size_t done = 0;

	while (done < len) {
		size_t want = len - done;
		ssize_t n;

		if (want > (1U << 30))
			want = 1U << 30;
		n = one(r, write, fd, (uint8_t *)buf + done, want, off + done);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n < 0)
			return n;
		if (n == 0) {
			if (write)
				return -EIO;
			break;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static ssize_t uring_pread(struct wh_io *io, int fd, void *buf, size_t len,
			   uint64_t off)
{
	return uring_xfer(io, false, fd, buf, len, off);
}

static ssize_t uring_pwrite(struct wh_io *io, int fd, const void *buf,
			    size_t len, uint64_t off)
{
	return uring_xfer(io, true, fd, (void *)buf, len, off);
}

static void uring_pread2(struct wh_io *io, int fd, void *b1, size_t l1,
			 uint64_t o1, void *b2, size_t l2, uint64_t o2,
			 ssize_t *r1, ssize_t *r2)
{
	struct ring *r = io->backend;
	struct io_uring_sqe *s1, *s2;
	ssize_t res[2] = { -EIO, -EIO };

	if (r->broken || l1 > (1U << 30) || l2 > (1U << 30) ||
	    io_uring_sq_space_left(&r->ring) < 2)
		goto one_by_one;
	s1 = io_uring_get_sqe(&r->ring);
	s2 = io_uring_get_sqe(&r->ring);
	io_uring_prep_read(s1, fd, b1, (unsigned)l1, o1);
	io_uring_sqe_set_data64(s1, 0);
	io_uring_prep_read(s2, fd, b2, (unsigned)l2, o2);
	io_uring_sqe_set_data64(s2, 1);
	if (io_uring_submit_and_wait(&r->ring, 2) < 0) {
		r->broken = true;
		goto one_by_one;
	}
	for (int k = 0; k < 2; k++) {
		struct io_uring_cqe *cqe;

		if (io_uring_wait_cqe(&r->ring, &cqe) < 0) {
			r->broken = true;
			goto one_by_one;
		}
		res[io_uring_cqe_get_data64(cqe) & 1] = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
	}
	/* finish short reads (end of file, signals) with ordinary calls */
	if (res[0] > 0 && (size_t)res[0] < l1) {
		ssize_t n = uring_pread(io, fd, (uint8_t *)b1 + res[0],
					l1 - (size_t)res[0],
					o1 + (uint64_t)res[0]);
		res[0] = n < 0 ? n : res[0] + n;
	}
	if (res[1] > 0 && (size_t)res[1] < l2) {
		ssize_t n = uring_pread(io, fd, (uint8_t *)b2 + res[1],
					l2 - (size_t)res[1],
					o2 + (uint64_t)res[1]);
		res[1] = n < 0 ? n : res[1] + n;
	}
	*r1 = res[0];
	*r2 = res[1];
	return;
one_by_one:
	*r1 = uring_pread(io, fd, b1, l1, o1);
	*r2 = uring_pread(io, fd, b2, l2, o2);
}

static void uring_del(struct wh_io *io)
{
	struct ring *r = io->backend;

	io_uring_queue_exit(&r->ring);
	free(r);
	free(io);
}

static const struct wh_io_ops uring_ops = {
	.name = "io_uring",
	.pread = uring_pread,
	.pwrite = uring_pwrite,
	.pread2 = uring_pread2,
	.del = uring_del,
};

int wh_io_uring_new(struct wh_io **pio)
{
	struct wh_io *io = calloc(1, sizeof(*io));
	struct ring *r = calloc(1, sizeof(*r));
	int rv;

	*pio = NULL;
	if (!io || !r) {
		free(io);
		free(r);
		return -ENOMEM;
	}
	rv = io_uring_queue_init(RING_DEPTH, &r->ring, 0);
	if (rv < 0) {
		free(io);
		free(r);
		return rv;
	}
	io->ops = &uring_ops;
	io->backend = r;
	*pio = io;
	return 0;
}
