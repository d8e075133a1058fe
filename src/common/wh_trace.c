/* wh_trace.c - see wh_trace.h. */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/wh_time.h"
#include "common/wh_trace.h"

struct wh_trace_rec *wh_trace_buf;
static atomic_uint next_rec;

void wh_trace_init(void)
{
	const char *prefix = getenv("WH_TRACE");
	size_t size = (size_t)WH_TRACE_MAX * sizeof(struct wh_trace_rec);
	char path[4096];
	void *p;
	int fd;

	if (!prefix || !prefix[0] || wh_trace_buf)
		return;
	if (snprintf(path, sizeof(path), "%s.%d", prefix, (int)getpid()) >=
	    (int)sizeof(path))
		return;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p != MAP_FAILED)
		wh_trace_buf = p;
}

void wh_trace_ev(const char *name, uint64_t arg)
{
	unsigned i = atomic_fetch_add_explicit(&next_rec, 1,
					       memory_order_relaxed);
	uint64_t now = wh_now_ns();
	struct wh_trace_rec *r;

	if (i >= WH_TRACE_MAX)
		return;
	r = &wh_trace_buf[i];
	r->arg = arg;
	r->tid = (uint32_t)gettid();
	strncpy(r->name, name, sizeof(r->name) - 1);
	r->ns = now; /* last: a record with ns 0 is unwritten */
}
