/*
 * fuzz_serve.c - the host's request service on arbitrary frames, against
 * a small real share.  Every input must produce exactly one well-formed
 * reply frame, and never anything from outside the share.
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
	int rv;

	wh_buf_init(&resp);
	rv = wh_share_serve(share, data, size, &resp);
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
