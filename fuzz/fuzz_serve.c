/*
 * fuzz_serve.c - the host's request service on arbitrary frames, against
 * a small real share.  Every input must produce exactly one well-formed
 * reply frame, and never anything from outside the share.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "host/wh_share.h"
#include "proto/wh_proto.h"

static struct wh_share *share;

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
	char base[] = "/tmp/wh-fuzz-serve-XXXXXX", p[256];

	(void)argc;
	(void)argv;
	if (!mkdtemp(base))
		abort();
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
	snprintf(p, sizeof(p), "%s/s/l", base);
	symlink("../outside-secret", p);
	snprintf(p, sizeof(p), "%s/s/f", base);
	mkfifo(p, 0644);
	snprintf(p, sizeof(p), "%s/s", base);
	if (wh_share_open(p, &share) != 0)
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
	if (wh_msg_decode(resp.data, resp.len, WH_MAX_REPLY_FRAME, &m) != 0)
		abort();
	if (m.hdr.type == WH_MSG_READ_REPLY &&
	    memmem(m.u.read_reply.data, m.u.read_reply.data_len,
		   "SECRET-OUTSIDE", 14))
		abort();
	wh_buf_free(&resp);
	/* keep inotify from filling up across millions of runs */
	wh_share_watch_drain(share, ignore_change, NULL);
	return 0;
}
