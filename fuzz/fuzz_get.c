/*
 * fuzz_get.c - `wormhole get` (src/client/wh_get.c, wh_get_run_rpc) copying
 * a tree from a host whose replies a hostile host or a broken link changes.
 * The host is a real share (a few small files, an empty one, one of several
 * chunks, a sparse one, a symlink, a hard link pair, nested directories)
 * served in process; what changes its replies is the input.
 *
 * Input byte 0: bits 0-1 the capabilities the host agreed to, bits 2-3 what
 * is got (the root, "sub", "big" alone, "sub/deep"), bit 4 --parallel 1 or
 * 16, bit 5 a manifest cache, bit 6 a second get into the same destination
 * (else into a new one), bit 7 no second get.  Then records, each "rule"
 * naming the requests whose replies it changes; a reply takes the first
 * rule that matches its request.  A rule: byte A (A % 4 the action: 0 the
 * reply as it is, 1 a u16 offset, a u8 length and that many bytes XORed
 * into it there, 2 a u16 length and that many bytes in its place, its
 * req_id made the request's, 3 the call failing: one more byte picks
 * timeout, closed link, malformed reply, refused code; (A >> 2) % 8 the
 * request type: GETATTR, READDIR, MANIFEST, MANIFEST_STREAM, CHUNK,
 * GET_SMALL, READLINK, any; bit 5: from attempt N on, else at attempt N
 * only, N = A >> 6, an attempt being one sending of the same request),
 * byte K (0 any request of that type, else those whose bytes but the
 * req_id hash to K: 1 + FNV-1a % 255).  Matching by the request's content,
 * not by the order requests come in, makes what a reply becomes the same
 * whatever order the get's threads send them in (which requests are sent
 * may still vary: a failing get stops its other files where they are).
 *
 * Afterwards: nothing outside the destination changed (a sentinel
 * directory beside it stays empty, the share is untouched); no temporary
 * name is left unless a reply was changed or failed (only failures that
 * leave the host's file resumable keep one: wh_get.c's resumable()); an
 * error has a message; and every entry under a final name is the share's
 * (type, bytes, link target), unless a reply that tells what that entry
 * is (its listing, manifest, GET_SMALL entry, link target) was changed:
 * a host decides what its files are, but chunks and GET_SMALL data are
 * verified against their hash, so no change to those gets wrong bytes
 * in.  Then a second get from the unchanged host, with the same chunk
 * store, into the same destination (which resumes what the first left) or
 * a new one, must give exactly the share's tree: the store never hands
 * out wrong bytes.  Threads and descriptors are all given back.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "client/wh_get.h"
#include "client/wh_rpc.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "host/wh_mcache.h"
#include "io/wh_io.h"
#include "host/wh_share.h"
#include "proto/wh_proto.h"
#include "store/wh_store.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BIG (800u * 1024) /* three content-defined chunks (seed below) */
#define HOLES (64u * 1024) /* sparse: a hole, then a little data */
#define MAXREC 16
#define MAXTAINT 256

static char base[64], sdir[128], rdir[128], sentinel[160], cdir[160];

/* ------------------------------------------------------------ the share */

struct sent {
	char rel[64];
	mode_t type;
	uint8_t *data; /* regular files */
	size_t len;
	char target[64]; /* symlinks */
	struct stat st;  /* as built: the share must stay so */
};

static struct sent sents[32];
static int nsents;
static struct wh_share *share;
static struct wh_mcache *share_mc;

static void rm_base(void)
{
	fuzz_rm_tree(base);
}

static void mk(const char *rel, mode_t type, const uint8_t *b, size_t n,
	       const char *target)
{
	char p[256];
	struct sent *e = &sents[nsents++];

	snprintf(p, sizeof(p), "%s/%s", sdir, rel);
	snprintf(e->rel, sizeof(e->rel), "%s", rel);
	e->type = type;
	if (type == S_IFDIR) {
		if (mkdir(p, 0755) != 0)
			abort();
	} else if (type == S_IFLNK) {
		snprintf(e->target, sizeof(e->target), "%s", target);
		if (symlink(target, p) != 0)
			abort();
	} else if (target) { /* a hard link of |target| */
		char t[256];

		snprintf(t, sizeof(t), "%s/%s", sdir, target);
		if (link(t, p) != 0)
			abort();
		for (int i = 0; i < nsents - 1; i++)
			if (!strcmp(sents[i].rel, target)) {
				e->data = sents[i].data;
				e->len = sents[i].len;
			}
	} else {
		e->data = malloc(n ? n : 1);
		if (!e->data)
			abort();
		if (n)
			memcpy(e->data, b, n);
		e->len = n;
		fuzz_put_file(p, b, n);
	}
}

static const struct sent *share_find(const char *rel)
{
	for (int i = 0; i < nsents; i++)
		if (!strcmp(sents[i].rel, rel))
			return &sents[i];
	return NULL;
}

/* the share as it was built: get never writes there */
static void share_same(void)
{
	for (int i = 0; i < nsents; i++) {
		char p[256];
		struct stat st;
		const struct stat *o = &sents[i].st;

		snprintf(p, sizeof(p), "%s/%s", sdir, sents[i].rel);
		if (lstat(p, &st) != 0 || st.st_ino != o->st_ino ||
		    st.st_size != o->st_size || st.st_nlink != o->st_nlink ||
		    st.st_mtim.tv_sec != o->st_mtim.tv_sec ||
		    st.st_mtim.tv_nsec != o->st_mtim.tv_nsec ||
		    st.st_ctim.tv_sec != o->st_ctim.tv_sec ||
		    st.st_ctim.tv_nsec != o->st_ctim.tv_nsec)
			abort();
	}
}

/* --------------------------------------------------- the tampering host */

struct rule {
	uint8_t act, type, key, attempt, fail;
	bool from;
	const uint8_t *p; /* XOR: offset, length, bytes; replace: the reply */
	size_t n;
	uint16_t off;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[MAXREC];
static int nrules;
static bool honest;   /* the second get: no rule applies */
static bool changed;  /* a reply was changed */
static bool resumed;  /* a reply changed, or a failure that may keep a
		       * partial file (wh_get.c's resumable()) */
static bool failed;   /* a call was failed */
static uint64_t caps;
/* requests seen: a content hash and how many times it was sent */
static struct { uint64_t h; unsigned n; } seen[4096];
static size_t nseen;
/* paths whose entry a changed reply told of: "T" + path, the entry itself,
 * or "C" + path, the entries of that directory */
static char taint[MAXTAINT][WH_MAX_PATH + 2];
static size_t ntaint;
static bool taint_full; /* too many: nothing is checked for content */

static void taint_add(char kind, const char *p, size_t n)
{
	if (ntaint == MAXTAINT) {
		taint_full = true;
		return;
	}
	taint[ntaint][0] = kind;
	memcpy(taint[ntaint] + 1, p, n);
	taint[ntaint][n + 1] = '\0';
	ntaint++;
}

/* taint_req - the reply to |req| was changed: what it tells of */
static void taint_req(const uint8_t *req, size_t len)
{
	struct wh_msg m;

	if (wh_msg_decode(req, len, WH_MAX_REQ_FRAME, &m) != 0)
		abort(); /* the client sends what a host can read */
	switch (m.hdr.type) {
	case WH_MSG_GETATTR:
	case WH_MSG_READLINK:
		taint_add('T', m.u.path.path.p, m.u.path.path.len);
		break;
	case WH_MSG_READDIR:
		taint_add('C', m.u.readdir.path.p, m.u.readdir.path.len);
		break;
	case WH_MSG_MANIFEST:
		taint_add('T', m.u.manifest.path.p, m.u.manifest.path.len);
		break;
	case WH_MSG_MANIFEST_STREAM:
		taint_add('T', m.u.manifest_stream.path.p,
			  m.u.manifest_stream.path.len);
		break;
	case WH_MSG_GET_SMALL: {
		struct wh_small_req e;
		size_t pos = 0;

		while (wh_small_req_next(&m.u.get_small, &pos, &e) == 1)
			taint_add('T', e.path.p, e.path.len);
		break;
	}
	default: /* CHUNK: verified against the manifest's hash */
		break;
	}
}

static bool tainted(const char *rel)
{
	const char *slash = strrchr(rel, '/');
	size_t plen = slash ? (size_t)(slash - rel) : 0;

	if (taint_full)
		return true;
	for (size_t i = 0; i < ntaint; i++) {
		if (taint[i][0] == 'T' && !strcmp(taint[i] + 1, rel))
			return true;
		if (taint[i][0] == 'C' && rel[0] &&
		    strlen(taint[i] + 1) == plen &&
		    !memcmp(taint[i] + 1, rel, plen))
			return true;
	}
	return false;
}

static uint64_t req_hash(const uint8_t *req, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		if (i >= 8 && i < 12)
			continue; /* the req_id */
		h = (h ^ req[i]) * 1099511628211ULL;
	}
	return h;
}

static unsigned attempt_of(uint64_t h)
{
	for (size_t i = 0; i < nseen; i++)
		if (seen[i].h == h)
			return seen[i].n++;
	if (nseen < sizeof(seen) / sizeof(seen[0])) {
		seen[nseen].h = h;
		seen[nseen++].n = 1;
	}
	return 0;
}

static const uint16_t type_of[8] = {
	WH_MSG_GETATTR,		WH_MSG_READDIR, WH_MSG_MANIFEST,
	WH_MSG_MANIFEST_STREAM, WH_MSG_CHUNK,	WH_MSG_GET_SMALL,
	WH_MSG_READLINK,	0,
};

static const struct rule *rule_for(uint16_t type, uint64_t h, unsigned att)
{
	for (int i = 0; i < nrules; i++) {
		const struct rule *r = &rules[i];

		if (type_of[r->type] && type_of[r->type] != type)
			continue;
		if (r->key && 1 + h % 255 != r->key)
			continue;
		if (r->from ? att < r->attempt : att != r->attempt)
			continue;
		return r;
	}
	return NULL;
}

static uint64_t get_caps(void *ctx)
{
	(void)ctx;
	return caps;
}

static int call(void *ctx, const uint8_t *req, size_t len,
		struct wh_buf *resp, int timeout_ms)
{
	static const int fails[4] = { WH_ERR_TIMEOUT, WH_ERR_CLOSED,
				      WH_ERR_PROTO, WH_ERR_AUTH };
	struct wh_frame_hdr hdr;
	const struct rule *r;
	int rv;

	(void)ctx;
	(void)timeout_ms;
	if (wh_frame_hdr_decode(req, len, WH_MAX_REQ_FRAME, &hdr) != 0)
		abort();
	wh_buf_reset(resp);
	rv = wh_share_serve(share, req, len, resp);
	if (rv != 0)
		abort(); /* the client sent what the host cannot read */
	pthread_mutex_lock(&lock);
	if (!honest) {
		uint64_t h = req_hash(req, len);

		r = rule_for(hdr.type, h, attempt_of(h));
	} else {
		r = NULL;
	}
	if (r && (r->act == 1 || r->act == 2)) {
		changed = true;
		taint_req(req, len);
	}
	if (r && r->act == 1) {
		size_t off = r->off % (resp->len + 1);

		for (size_t i = 0; i < r->n && off + i < resp->len; i++)
			resp->data[off + i] ^= r->p[i];
		resumed = true; /* it may now be an ERROR of a timeout */
	} else if (r && r->act == 2) {
		wh_buf_reset(resp);
		if (wh_buf_append(resp, r->p, r->n) != 0)
			abort();
		if (r->n >= 12) {
			resp->data[8] = (uint8_t)(hdr.req_id >> 24);
			resp->data[9] = (uint8_t)(hdr.req_id >> 16);
			resp->data[10] = (uint8_t)(hdr.req_id >> 8);
			resp->data[11] = (uint8_t)hdr.req_id;
		}
		resumed = true;
	} else if (r && r->act == 3) {
		rv = fails[r->fail % 4];
		failed = true;
		wh_buf_reset(resp);
		if (rv == WH_ERR_TIMEOUT || rv == WH_ERR_CLOSED)
			resumed = true;
	}
	pthread_mutex_unlock(&lock);
	return rv;
}

static const struct wh_rpc_ops ops = { .call = call };

/* parse_rules - the records of the input into |rules| */
static void parse_rules(const uint8_t *p, size_t n)
{
	size_t i = 0;

	nrules = 0;
	while (i + 2 <= n && nrules < MAXREC) {
		struct rule *r = &rules[nrules];

		memset(r, 0, sizeof(*r));
		r->act = p[i] % 4;
		r->type = (p[i] >> 2) % 8;
		r->from = p[i] & 0x20;
		r->attempt = p[i] >> 6;
		r->key = p[i + 1];
		i += 2;
		if (r->act == 1) {
			if (i + 3 > n)
				break;
			r->off = (uint16_t)(p[i] << 8 | p[i + 1]);
			r->n = p[i + 2];
			i += 3;
			if (r->n > n - i)
				r->n = n - i;
			r->p = p + i;
			i += r->n;
		} else if (r->act == 2) {
			if (i + 2 > n)
				break;
			r->n = (size_t)(p[i] << 8 | p[i + 1]);
			i += 2;
			if (r->n > n - i)
				r->n = n - i;
			r->p = p + i;
			i += r->n;
		} else if (r->act == 3) {
			if (i < n)
				r->fail = p[i++];
		}
		nrules++;
	}
}

/* ---------------------------------------------------------- the checks */

static size_t count_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	if (!d)
		abort();
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static bool is_partial(const char *name)
{
	size_t n = strlen(name), s = strlen(".wh-partial");

	return name[0] == '.' && n > s + 1 && !strcmp(name + n - s,
						      ".wh-partial");
}

static bool ends_with(const char *name, const char *suf)
{
	size_t n = strlen(name), s = strlen(suf);

	return n >= s && !strcmp(name + n - s, suf);
}

/* outside - the run directory holds the destinations, the store, the
 * sentinel (empty) and, beside a destination that is a file, its partial
 * file if |partial_d| or |partial_e|; the base holds the share and the run directory */
static void outside(bool partial_d, bool partial_e)
{
	DIR *d = opendir(rdir);
	struct dirent *de;

	if (!d)
		abort();
	while ((de = readdir(d))) {
		const char *n = de->d_name;

		if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "d") ||
		    !strcmp(n, "e") || !strcmp(n, "c") ||
		    !strcmp(n, "sentinel"))
			continue;
		if ((partial_d && !strcmp(n, ".d.wh-partial")) ||
		    (partial_e && !strcmp(n, ".e.wh-partial")))
			continue;
		abort(); /* written outside the destination */
	}
	closedir(d);
	if (count_dir(sentinel) != 0 || count_dir(base) != 2)
		abort();
	share_same();
}

static bool same_bytes(const char *path, const uint8_t *b, size_t n)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	uint8_t buf[65536];
	size_t got = 0;
	bool ok = true;

	if (fd < 0)
		return false;
	for (;;) {
		ssize_t k = read(fd, buf, sizeof(buf));

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			ok = false;
			break;
		}
		if (k == 0)
			break;
		if (got + (size_t)k > n || memcmp(buf, b + got, (size_t)k))
			ok = false;
		got += (size_t)k;
		if (!ok)
			break;
	}
	close(fd);
	return ok && got == n;
}

/* the destination being checked */
static struct {
	const char *dest, *remote;
	bool strict;   /* every share entry, exactly, and nothing else */
	bool partial;  /* partial files may be left */
	bool foreign;  /* entries the share has not may be there */
	ino_t bad_ino[64]; /* files a tainted name also names */
	int nbad;
	int pass;
} ck;

static void share_rel(const char *path, char *out, size_t size)
{
	const char *rel = path + strlen(ck.dest);

	if (*rel == '/')
		rel++;
	if (ck.remote[0] && rel[0])
		snprintf(out, size, "%s/%s", ck.remote, rel);
	else
		snprintf(out, size, "%s", ck.remote[0] ? ck.remote : rel);
}

static bool bad_ino(ino_t ino)
{
	for (int i = 0; i < ck.nbad; i++)
		if (ck.bad_ino[i] == ino)
			return true;
	return false;
}

static int check_one(const char *path, const struct stat *st, int flag,
		     struct FTW *ftw)
{
	const char *name = path + ftw->base;
	char rel[WH_MAX_PATH + 64];
	const struct sent *e;
	bool t;

	(void)flag;
	if (is_partial(name)) {
		if (!ck.partial || !S_ISREG(st->st_mode)) {
			/* a partial file left where none may be */
			fprintf(stderr, "fuzz_get: partial file left: %s\n",
				path);
			abort();
		}
		return 0;
	}
	if (ends_with(name, ".wh-link"))
		abort(); /* never left */
	share_rel(path, rel, sizeof(rel));
	t = !ck.strict && tainted(rel);
	if (ck.pass == 0) { /* the files a tainted name also names */
		if (t && S_ISREG(st->st_mode) && st->st_nlink > 1 &&
		    ck.nbad < 64)
			ck.bad_ino[ck.nbad++] = st->st_ino;
		return 0;
	}
	e = share_find(rel);
	if (t)
		return 0;
	if (!rel[0]) { /* the share's root */
		if (!S_ISDIR(st->st_mode))
			abort();
		return 0;
	}
	if (!e) {
		if (!ck.foreign)
			abort(); /* an entry the host does not have */
		return 0;
	}
	if (S_ISREG(st->st_mode) && st->st_nlink > 1 && bad_ino(st->st_ino))
		return 0;
	if ((st->st_mode & S_IFMT) != e->type)
		abort();
	if (S_ISREG(st->st_mode) && !same_bytes(path, e->data, e->len))
		abort(); /* a final name with other bytes than the host's */
	if (S_ISLNK(st->st_mode)) {
		char tg[128];
		ssize_t n = readlink(path, tg, sizeof(tg) - 1);

		if (n < 0 || (tg[n] = '\0', strcmp(tg, e->target)))
			abort();
	}
	return 0;
}

/* check_dest - |dest|, a get of |remote|: see ck */
static void check_dest(const char *dest, const char *remote, bool strict,
		       bool partial, bool foreign)
{
	size_t rl = strlen(remote);
	struct stat st;

	ck.dest = dest;
	ck.remote = remote;
	ck.strict = strict;
	ck.partial = partial;
	ck.foreign = foreign;
	ck.nbad = 0;
	if (lstat(dest, &st) != 0) {
		if (strict)
			abort();
		return;
	}
	for (ck.pass = 0; ck.pass < 2; ck.pass++)
		if (nftw(dest, check_one, 16, FTW_PHYS) != 0)
			abort();
	if (!strict)
		return;
	for (int i = 0; i < nsents; i++) { /* every entry of the share too */
		const char *r = sents[i].rel;
		char p[512];

		if (!rl)
			snprintf(p, sizeof(p), "%s/%s", dest, r);
		else if (!strcmp(r, remote))
			snprintf(p, sizeof(p), "%s", dest);
		else if (!strncmp(r, remote, rl) && r[rl] == '/')
			snprintf(p, sizeof(p), "%s/%s", dest, r + rl + 1);
		else
			continue;
		if (lstat(p, &st) != 0)
			abort(); /* the get said done, and this is not there */
	}
}

/* ----------------------------------------------------------- the runs */

static struct wh_rpc rpc = { &ops, NULL };

static int get(const char *remote, const char *dest, struct wh_store *store,
	       struct wh_mcache *mc, int parallel)
{
	struct wh_get_opts o;
	struct wh_get_stats st;
	char err[512];
	int rv;

	memset(&o, 0, sizeof(o));
	o.remote = remote;
	o.local = dest;
	o.parallel = parallel;
	o.timeout_ms = 20;
	o.mc = mc;
	memset(err, 'x', sizeof(err));
	rv = wh_get_run_rpc(&rpc, get_caps, NULL, store, &o, &st, err,
			    sizeof(err));
	if (rv > 0 || (rv < 0 && !err[0]) || !memchr(err, '\0', sizeof(err)))
		abort(); /* an error says what it is */
	return rv;
}

static const char *const remotes[4] = { "", "sub", "big", "sub/deep" };
static const uint64_t cap_of[4] = {
	WH_CAP_CHUNKS | WH_CAP_MSTREAM | WH_CAP_SMALL,
	WH_CAP_CHUNKS,
	WH_CAP_CHUNKS | WH_CAP_MSTREAM,
	WH_CAP_CHUNKS | WH_CAP_SMALL,
};

static void fresh_run_dir(void)
{
	fuzz_rm_tree(rdir);
	if (mkdir(rdir, 0700) != 0 || mkdir(sentinel, 0700) != 0)
		abort();
}

/* tmp_dir - /dev/shm when it has room (a memory file system: a run makes
 * and removes some hundred files, which on a disk's costs more than the
 * get), else /tmp */
static const char *tmp_dir(void)
{
	struct statvfs sv;

	if (statvfs("/dev/shm", &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize >= (256u << 20) &&
	    access("/dev/shm", W_OK) == 0)
		return "/dev/shm";
	return "/tmp";
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t *b = malloc(BIG);
	uint8_t small[5000];
	struct wh_manifest m;
	uint32_t x = 34; /* xorshift: cuts at 268072 and 786451 */
	char p[256];
	int fd;

	(void)argc;
	(void)argv;
	/* a host may claim any size, and get preallocates what it claims:
	 * no file here grows past what the share needs (EFBIG instead) */
	{
		struct rlimit rl = { 64u << 20, 64u << 20 };

		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			abort();
	}
	unsetenv("WH_GET_TRACE");
	unsetenv("WH_GET_TEST_PAUSE");
	unsetenv("WH_GET_VERIFY_LOCAL");
	snprintf(base, sizeof(base), "%s/wh-fuzz-get-%d", tmp_dir(),
		 (int)getpid());
	snprintf(sdir, sizeof(sdir), "%s/s", base);
	snprintf(rdir, sizeof(rdir), "%s/r", base);
	snprintf(sentinel, sizeof(sentinel), "%s/sentinel", rdir);
	snprintf(cdir, sizeof(cdir), "%s/c", rdir);
	if (!b || mkdir(base, 0700) != 0 || mkdir(sdir, 0755) != 0)
		abort();
	atexit(rm_base);
	wh_log_set_level(WH_LOG_ERROR);
	for (size_t i = 0; i < BIG; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (uint8_t)x;
	}
	for (size_t i = 0; i < sizeof(small); i++)
		small[i] = (uint8_t)("a small file\n"[i % 13] + i / 13 % 7);
	mk("s0", S_IFREG, small, 3000, NULL);
	mk("empty", S_IFREG, NULL, 0, NULL);
	mk("big", S_IFREG, b, BIG, NULL);
	mk("ln", S_IFLNK, NULL, 0, "s0");
	mk("h1", S_IFREG, small + 7, 2000, NULL);
	mk("sub", S_IFDIR, NULL, 0, NULL);
	mk("sub/h2", S_IFREG, NULL, 0, "h1");
	mk("sub/s2", S_IFREG, small + 100, 100, NULL);
	/* a link out of the destination: get makes it, never follows it */
	mk("sub/lnk", S_IFLNK, NULL, 0, "../../sentinel");
	mk("sub/deep", S_IFDIR, NULL, 0, NULL);
	mk("sub/deep/s3", S_IFREG, small, 5000, NULL);
	free(b);
	/* sparse: a hole, then a little data */
	snprintf(p, sizeof(p), "%s/sub/deep/holes", sdir);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || pwrite(fd, small, 100, HOLES - 100) != 100)
		abort();
	close(fd);
	sents[nsents].data = calloc(1, HOLES);
	if (!sents[nsents].data)
		abort();
	memcpy(sents[nsents].data + HOLES - 100, small, 100);
	sents[nsents].len = HOLES;
	sents[nsents].type = S_IFREG;
	snprintf(sents[nsents].rel, sizeof(sents[nsents].rel),
		 "sub/deep/holes");
	nsents++;
	for (int i = 0; i < nsents; i++) {
		snprintf(p, sizeof(p), "%s/%s", sdir, sents[i].rel);
		if (lstat(p, &sents[i].st) != 0)
			abort();
	}
	/* the big file has several chunks (else the harness tests less) */
	snprintf(p, sizeof(p), "%s/big", sdir);
	fd = open(p, O_RDONLY);
	wh_manifest_init(&m);
	if (fd < 0 || wh_manifest_build(fd, &m) != 0 || m.n < 3)
		abort();
	close(fd);
	wh_manifest_free(&m);
	/* this thread's I/O context made now, not counted as a leak later */
	(void)wh_io_thread();
	/* manifests cached once: no run waits for the host to hash */
	if (wh_share_open(sdir, &share) != 0 ||
	    wh_mcache_open(NULL, &share_mc) != 0)
		abort();
	wh_share_set_mcache(share, share_mc);
	/* and the harness's own check of an honest get */
	for (int k = 0; k < 4; k++) {
		struct wh_store *store;

		fresh_run_dir();
		if (wh_store_open(cdir, 64u << 20, &store) != 0)
			abort();
		honest = true;
		caps = cap_of[k];
		snprintf(p, sizeof(p), "%s/d", rdir);
		if (get("", p, store, NULL, 4) != 0)
			abort();
		wh_store_close(store);
		check_dest(p, "", true, false, false);
		outside(false, false);
	}
	return 0;
}

static int count_fds(void)
{
	return (int)count_dir("/proc/self/fd");
}

/* count_threads - this process's threads but the kernel's io_uring
 * workers ("iou-wrk-N"), which come and go with the rings' work */
static int count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;

	if (!d)
		abort();
	while ((de = readdir(d))) {
		char p[300], comm[32] = "";
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/self/task/%s/comm", de->d_name);
		f = fopen(p, "re");
		if (f) {
			if (!fgets(comm, sizeof(comm), f))
				comm[0] = '\0';
			fclose(f);
		}
		if (!f && errno == ENOENT)
			continue; /* gone meanwhile */
		if (strncmp(comm, "iou-", 4) != 0)
			n++;
	}
	closedir(d);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wh_store *store;
	struct wh_mcache *mc = NULL;
	char d[192], e[192];
	const char *remote, *second;
	int fds, threads, parallel, rv;
	uint8_t b;

	if (size > 8192)
		return 0;
	b = size ? data[0] : 0; /* empty: an honest get of everything */
	caps = cap_of[b & 3];
	remote = remotes[(b >> 2) & 3];
	parallel = (b & 16) ? 16 : 1;
	parse_rules(data + 1, size ? size - 1 : 0);
	fresh_run_dir();
	fds = count_fds();
	threads = count_threads();
	snprintf(d, sizeof(d), "%s/d", rdir);
	snprintf(e, sizeof(e), "%s/e", rdir);
	if (wh_store_open(cdir, 64u << 20, &store) != 0)
		abort();
	if ((b & 32) && wh_mcache_open(NULL, &mc) != 0)
		abort();
	pthread_mutex_lock(&lock);
	honest = false;
	changed = resumed = failed = taint_full = false;
	nseen = ntaint = 0;
	pthread_mutex_unlock(&lock);

	/* the tampered get: what it made is the share's, unless a reply
	 * said otherwise; all of it if it succeeded and no reply changed */
	rv = get(remote, d, store, mc, parallel);
	check_dest(d, remote, !changed && rv == 0, resumed, changed);
	outside(resumed, false);
	if (rv != 0 && !changed && !failed)
		abort(); /* an honest host, and it failed */

	/* the second get, from the honest host, the same store */
	if (!(b & 128)) {
		struct stat st;
		/* into the same destination, unless the first made it a
		 * symlink: the destination the user names may be one, and
		 * get writes where it points */
		bool same = (b & 64) && !(lstat(d, &st) == 0 &&
					  S_ISLNK(st.st_mode));

		pthread_mutex_lock(&lock);
		honest = true;
		pthread_mutex_unlock(&lock);
		second = same ? d : e;
		rv = get(remote, second, store, mc, parallel);
		/* a changed reply may have left something in the way (a
		 * directory where the host has a file); else it works */
		if (rv != 0 && !(same && changed))
			abort();
		if (rv == 0)
			check_dest(second, remote, true, same && changed,
				   same && changed);
		outside(same ? changed || rv != 0 : resumed, false);
	}
	wh_store_close(store);
	wh_mcache_close(mc);
	if (count_fds() != fds) {
		fprintf(stderr, "fuzz_get: descriptors %d, were %d\n",
			count_fds(), fds);
		abort(); /* a descriptor left open */
	}
	for (int i = 0; count_threads() != threads; i++) {
		/* a joined thread may take a moment to leave the list */
		struct timespec ts = { 0, 1000000 };

		if (i == 1000) {
			fprintf(stderr, "fuzz_get: threads %d, were %d\n",
				count_threads(), threads);
			abort(); /* a thread left running */
		}
		nanosleep(&ts, NULL);
	}
	return 0;
}
