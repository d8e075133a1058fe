/*
 * fuzz_serve.c - the host's request service on arbitrary frames, against
 * a small real share, the way src/host/wh_host.c takes a request: first
 * wh_share_read_nowait (a small READ answered on the network thread), then,
 * unless that answered it, wh_share_serve_fd with the file it may have
 * opened.  Every input must produce exactly one well-formed reply frame,
 * never anything from outside the share, and no file left open.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk/wh_zstd.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "host/wh_share.h"
#include "host/wh_zhost.h"
#include "proto/wh_proto.h"
#include "fuzz_util.h"

static struct wh_share *share;
static int cold_fd = -1; /* s/c, evicted from the page cache before each run */
static struct wh_zhost *zh; /* replies also go through compression */
static uint8_t unz[WH_MAX_CHUNK];
static char base[] = "/tmp/wh-fuzz-serve-XXXXXX";

/* the share's directory goes when the fuzzer ends */
static void rm_base(void)
{
	fuzz_rm_tree(base);
}

static void ignore_change(void *ud, const char *dir, size_t dlen,
			  const char *name, size_t nlen)
{
	(void)ud;
	(void)dir;
	(void)dlen;
	(void)name;
	(void)nlen;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char p[256];

	(void)argc;
	(void)argv;
	if (!mkdtemp(base))
		abort();
	atexit(rm_base);
	snprintf(p, sizeof(p), "%s/outside-secret", base);
	put(p, "SECRET-OUTSIDE");
	snprintf(p, sizeof(p), "%s/s", base);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/s/a", base);
	put(p, "file a");
	snprintf(p, sizeof(p), "%s/s/d", base);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/s/d/b", base);
	put(p, "file b");
	snprintf(p, sizeof(p), "%s/s/t", base);
	{
		static char big[8192];

		for (size_t i = 0; i + 1 < sizeof(big); i++)
			big[i] = "compressible text "[i % 18];
		put(p, big);
	}
	snprintf(p, sizeof(p), "%s/s/l", base);
	symlink("../outside-secret", p);
	snprintf(p, sizeof(p), "%s/s/f", base);
	mkfifo(p, 0644);
	/* a file out of the page cache: a small READ of it is not answered
	 * at once, and its worker is handed the file already open */
	snprintf(p, sizeof(p), "%s/s/c", base);
	cold_fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (cold_fd < 0)
		abort();
	{
		static char cold[256 * 1024];

		memset(cold, 'c', sizeof(cold));
		if (write(cold_fd, cold, sizeof(cold)) != (ssize_t)sizeof(cold) ||
		    fsync(cold_fd) != 0)
			abort();
	}
	snprintf(p, sizeof(p), "%s/s", base);
	if (wh_share_open(p, &share) != 0)
		abort();
	setenv("WORMHOLE_ZSTD", "1", 1);
	if (wh_zhost_new(&zh) != 0 || !zh)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wh_buf resp;
	struct wh_msg m;
	int fd = -1, rv;

	wh_buf_init(&resp);
	posix_fadvise(cold_fd, 0, 0, POSIX_FADV_DONTNEED);
	rv = wh_share_read_nowait(share, data, size, &resp, &fd);
	if (rv == 1) {
		if (fd != -1)
			abort(); /* answered: nothing left open for a worker */
		rv = 0;
	} else {
		if (rv < 0)
			resp.len = 0; /* what the host does before a worker */
		else if (resp.len != 0)
			abort(); /* not answered, yet something written */
		rv = wh_share_serve_fd(share, data, size, fd, &resp);
		/* the worker's call closes the file the first one opened */
		if (fd >= 0 && fcntl(fd, F_GETFD) != -1)
			abort();
	}
	if (rv != 0 && rv != WH_ERR_PROTO)
		abort();
	if (rv == 0) {
		struct wh_zlink link = { .rate = 1e6, .net_busy = 0,
					 .small = true };

		wh_zhost_pack(zh, data, size, &resp, &link);
	}
	if (wh_msg_decode(resp.data, resp.len, WH_MAX_REPLY_FRAME, &m) != 0)
		abort();
	/* a compressed reply decodes to exactly what it declares */
	if (m.hdr.type == WH_MSG_CHUNK_REPLY && m.u.chunk_reply.zstd &&
	    wh_zstd_decompress(unz, m.u.chunk_reply.raw_len,
			       m.u.chunk_reply.data,
			       m.u.chunk_reply.data_len) != 0)
		abort();
	if (m.hdr.type == WH_MSG_READ_REPLY && m.u.read_reply.zstd) {
		if (wh_zstd_decompress(unz, m.u.read_reply.raw_len,
				       m.u.read_reply.data,
				       m.u.read_reply.data_len) != 0 ||
		    memmem(unz, m.u.read_reply.raw_len, "SECRET-OUTSIDE", 14))
			abort();
	}
	if (m.hdr.type == WH_MSG_READ_REPLY &&
	    memmem(m.u.read_reply.data, m.u.read_reply.data_len,
		   "SECRET-OUTSIDE", 14))
		abort();
	/* GET_SMALL: compressed whole, it unpacks to a well-formed reply */
	if (m.hdr.type == WH_MSG_GET_SMALL_REPLY &&
	    (wh_zstd_small_unpack(&resp, &m) != 0 ||
	     m.hdr.type != WH_MSG_GET_SMALL_REPLY ||
	     memmem(m.u.get_small_reply.entries,
		    m.u.get_small_reply.entries_len, "SECRET-OUTSIDE", 14)))
		abort();
	wh_buf_free(&resp);
	/* keep inotify from filling up across millions of runs */
	wh_share_watch_drain(share, ignore_change, NULL);
	return 0;
}
