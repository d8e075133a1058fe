/*
 * fuzz_mount.c - the FUSE layer (src/fuse/wh_fs.c) over a host whose
 * replies a hostile host or a broken link changes: a real FUSE mount in
 * this process, made afresh for each input, over a real share served in
 * process, walked as `cp -r` walks a tree (listings, lookups, whole
 * files, links, the counters), which also runs the small-file prefetch,
 * the listing of the next directory ahead and the learning of the walk
 * order.  Input byte 0 picks the capabilities the host agreed to, whether
 * every OPEN is answered and whether a directory is walked in its
 * listing's order (tar's) or by name (rsync's);
 * then each request the mount sends takes the next record of the input,
 * as in fuzz_fetch: tag % 4 == 0 the reply as it is, 1 a u16 offset, a u8
 * length and that many bytes XORed into it, 2 a u16 length and that many
 * bytes in its place (its req_id made the request's), 3 the request
 * failing (a timeout, a closed link).  Past the input's end, replies are
 * as they are.  Whatever the replies: nothing crashes, leaks or hangs, a
 * listing's names are single path components, and unless a READ or
 * READLINK reply was changed (their data has no hash: the link's TLS is
 * what keeps them whole) every file read through the mount is a prefix of
 * the share's file and every link target is the share's.  Needs root and
 * /dev/fuse: without them it exits 77, which ctest counts as skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "client/wh_rpc.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "fuse/wh_fs.h"
#include "host/wh_share.h"
#include "proto/wh_proto.h"
#include "fuzz_tamper.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIRS 4
#define FILES 6
#define BIG_SIZE 600000u    /* over the small-file limit: READs */
#define READ_MAX (1u << 20) /* read of one file through the mount */
#define WALK_MAX 64         /* entries looked at in one directory */
#define DEPTH_MAX 3

static char base[160], sdir[192], mnt[192];
static struct wh_share *share;

/* the tampering of this input, read under |lock| */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fuzz_tamper tamper;
static uint64_t caps;
static bool read_changed; /* then file bytes cannot be checked */
static bool link_changed; /* then link targets cannot be */

static void rm_base(void)
{
	fuzz_rm_tree(base);
}

static void put(const char *rel, size_t n, unsigned int seed)
{
	char p[256];
	uint8_t *b = malloc(n ? n : 1);

	if (!b)
		abort();
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)((i * 2654435761u + seed * 40503u) >> 9);
	snprintf(p, sizeof(p), "%s/%s", sdir, rel);
	fuzz_put_file(p, b, n);
	free(b);
}

static void mk(const char *rel)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", sdir, rel);
	if (mkdir(p, 0700) != 0)
		abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	char p[256], rel[64];

	(void)argc;
	(void)argv;
	if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
		fprintf(stderr, "fuzz_mount: skipped: needs root and "
			"/dev/fuse\n");
		exit(77);
	}
	/* under TMPDIR: scripts/test.sh unmounts what is left there */
	if (!tmp || !*tmp || strlen(tmp) > 100)
		tmp = "/tmp";
	snprintf(base, sizeof(base), "%s/wh-fuzz-mount-%d", tmp,
		 (int)getpid());
	snprintf(sdir, sizeof(sdir), "%s/s", base);
	snprintf(mnt, sizeof(mnt), "%s/mnt", base);
	if (mkdir(base, 0700) != 0 || mkdir(sdir, 0700) != 0 ||
	    mkdir(mnt, 0700) != 0)
		abort();
	atexit(rm_base);
	wh_log_set_level(WH_LOG_ERROR);
	mk("tree");
	for (int d = 0; d < DIRS; d++) {
		snprintf(rel, sizeof(rel), "tree/d%d", d);
		mk(rel);
		for (int f = 0; f < FILES; f++) {
			snprintf(rel, sizeof(rel), "tree/d%d/f%d", d, f);
			put(rel, 1u + (unsigned)(d * FILES + f) * 1499u,
			    (unsigned)(d * FILES + f));
		}
	}
	mk("tree/d1/sub");
	put("tree/d1/sub/deep", 5000, 99);
	put("tree/empty", 0, 0);
	put("tree/big", BIG_SIZE, 7);
	snprintf(p, sizeof(p), "%s/tree/link", sdir);
	if (symlink("d0/f0", p) != 0)
		abort();
	if (wh_share_open(sdir, &share) != 0)
		abort();
	return 0;
}

static uint64_t get_caps(void *ctx)
{
	(void)ctx;
	return caps;
}

static int call(void *ctx, const uint8_t *req, size_t len,
		struct wh_buf *resp, int timeout_ms)
{
	uint16_t type;
	bool changed;
	int rv;

	(void)ctx;
	(void)timeout_ms;
	rv = fuzz_serve(share, &tamper, &lock, req, len, resp, &type,
			&changed);
	if (rv == WH_ERR_PROTO)
		return WH_ERR_CLOSED; /* a host would close the connection */
	if (changed) {
		pthread_mutex_lock(&lock);
		if (type == WH_MSG_READ)
			read_changed = true;
		if (type == WH_MSG_READLINK)
			link_changed = true;
		pthread_mutex_unlock(&lock);
	}
	return rv;
}

static const struct wh_rpc_ops ops = { .call = call };

static bool changed(bool *flag)
{
	bool v;

	pthread_mutex_lock(&lock);
	v = *flag;
	pthread_mutex_unlock(&lock);
	return v;
}

/* read_check - read |rel| through the mount: a prefix of the share's */
static void read_check(const char *rel)
{
	static uint8_t got[READ_MAX], want[READ_MAX];
	char mp[PATH_MAX], sp[PATH_MAX];
	size_t n = 0, have = 0;
	struct stat st;
	int fd, sfd;

	snprintf(mp, sizeof(mp), "%s/%s", mnt, rel);
	fd = open(mp, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while (n < READ_MAX) {
		ssize_t r = read(fd, got + n, READ_MAX - n < 65536
						      ? READ_MAX - n : 65536);

		if (r <= 0)
			break; /* the end, or an error: EIO, ETIMEDOUT, ... */
		n += (size_t)r;
	}
	close(fd);
	snprintf(sp, sizeof(sp), "%s/%s", sdir, rel);
	sfd = open(sp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (sfd < 0)
		return; /* a name a changed listing made up */
	if (fstat(sfd, &st) == 0 && S_ISREG(st.st_mode)) {
		while (have < READ_MAX) {
			ssize_t r = read(sfd, want + have, READ_MAX - have);

			if (r <= 0)
				break;
			have += (size_t)r;
		}
		if (!changed(&read_changed) &&
		    (n > have || memcmp(got, want, n) != 0)) {
			fprintf(stderr, "fuzz_mount: '%s' read %zu bytes, not "
				"a prefix of the share's %zu\n", rel, n, have);
			abort();
		}
	}
	close(sfd);
}

static void link_check(const char *rel)
{
	char mp[PATH_MAX], sp[PATH_MAX], got[PATH_MAX], want[PATH_MAX];
	ssize_t n, m;

	snprintf(mp, sizeof(mp), "%s/%s", mnt, rel);
	snprintf(sp, sizeof(sp), "%s/%s", sdir, rel);
	n = readlink(mp, got, sizeof(got));
	m = readlink(sp, want, sizeof(want));
	if (n < 0 || m < 0 || changed(&link_changed))
		return;
	if (n != m || memcmp(got, want, (size_t)n) != 0) {
		fprintf(stderr, "fuzz_mount: link '%s' reads '%.*s', not "
			"'%.*s'\n", rel, (int)n, got, (int)m, want);
		abort();
	}
}

static bool walk_by_name; /* rsync's order, else the listing's (tar's) */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* walk - list |rel| (relative to the mount, "" for its root), then look
 * at each entry as cp -r does, in the listing's order or by name */
static void walk(const char *rel, int depth)
{
	char names[WALK_MAX][NAME_MAX + 1], mp[PATH_MAX];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(mp, sizeof(mp), "%s%s%s", mnt, *rel ? "/" : "", rel);
	d = opendir(mp);
	if (!d)
		return;
	while (n < WALK_MAX && (de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (len == 0 || len > NAME_MAX || strchr(de->d_name, '/')) {
			fprintf(stderr, "fuzz_mount: bad name in '%s'\n", rel);
			abort();
		}
		memcpy(names[n++], de->d_name, len + 1);
	}
	closedir(d);
	if (walk_by_name)
		qsort(names, (size_t)n, sizeof(names[0]), name_cmp);
	for (int i = 0; i < n; i++) {
		char crel[PATH_MAX], cmp[PATH_MAX];
		struct stat st;

		if ((size_t)snprintf(crel, sizeof(crel), "%s%s%s", rel,
				     *rel ? "/" : "", names[i]) >=
		    sizeof(crel) - 1 - sizeof(mnt))
			continue;
		snprintf(cmp, sizeof(cmp), "%s/%s", mnt, crel);
		if (lstat(cmp, &st) != 0)
			continue;
		if (S_ISREG(st.st_mode))
			read_check(crel);
		else if (S_ISLNK(st.st_mode))
			link_check(crel);
		else if (S_ISDIR(st.st_mode) && depth < DEPTH_MAX)
			walk(crel, depth + 1);
	}
}

struct runner {
	struct wh_fs *fs;
	int rv;
};

static void *run_main(void *arg)
{
	struct runner *r = arg;

	r->rv = wh_fs_run(r->fs);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t cap_of[4] = {
		WH_CAP_CHUNKS | WH_CAP_MSTREAM | WH_CAP_SMALL,
		WH_CAP_CHUNKS,
		WH_CAP_CHUNKS | WH_CAP_MSTREAM | WH_CAP_SMALL | WH_CAP_ZSTD |
			WH_CAP_ZSMALL,
		WH_CAP_CHUNKS | WH_CAP_SMALL,
	};
	struct wh_rpc rpc = { &ops, NULL };
	struct wh_fs_opts fo;
	struct runner r = { 0 };
	char stats[2048];
	pthread_t th;

	if (size < 1 || size > 65536)
		return 0;
	pthread_mutex_lock(&lock);
	tamper.in = data + 1;
	tamper.len = size - 1;
	tamper.pos = 0;
	read_changed = false;
	link_changed = false;
	caps = cap_of[data[0] % 4];
	pthread_mutex_unlock(&lock);
	memset(&fo, 0, sizeof(fo));
	fo.timeout_ms = 500;
	fo.attr_timeout = 60.0;
	fo.entry_timeout = 60.0;
	fo.ram_limit = 8u << 20;
	fo.fetch_workers = 2;
	fo.caps = get_caps;
	fo.open_each = (data[0] >> 2) & 1;
	walk_by_name = (data[0] >> 3) & 1;
	if (wh_fs_new(&rpc, &fo, &r.fs) != 0 || wh_fs_mount(r.fs, mnt) != 0 ||
	    pthread_create(&th, NULL, run_main, &r) != 0)
		abort();

	walk("", 0);
	/* the tree again: what the first walk left in the caches */
	walk("tree", 1);
	(void)getxattr(mnt, "user.wormhole.stats", stats, sizeof(stats));

	wh_fs_exit(r.fs);
	pthread_join(th, NULL);
	if (r.rv < 0)
		abort(); /* the loop failed, not the replies */
	wh_fs_del(r.fs); /* unmounts */
	return 0;
}
