/*
 * wh_chunk.c - FastCDC-style chunking, BLAKE3 hashing, manifests.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blake3.h"

#include "chunk/wh_chunk.h"
#include "io/wh_io.h"

/* Masks for normalized chunking around a 1 MiB average: 22 one-bits
 * (rarer cuts) before the average, 18 after (likelier cuts).  The bits are
 * spread over the word, as FastCDC suggests, so that the cut depends on a
 * window of about 64 bytes, not only the last few. */
#define MASK_S 0x00002aa5552aa555ULL /* 22 bits */
#define MASK_L 0x0000252525252525ULL /* 18 bits */

static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

/* splitmix64: a fixed, portable stream for the gear table */
static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void gear_fill(void)
{
	uint64_t seed = 0x776f726d686f6c65ULL; /* "wormhole" */

	for (int i = 0; i < 256; i++)
		gear[i] = splitmix64(&seed);
}

/* gear_init - the table filled, once, whichever threads first cut at
 * the same time */
static void gear_init(void)
{
	pthread_once(&gear_once, gear_fill);
}

size_t wh_cdc_cut_ref(const uint8_t *data, size_t len, bool eof)
{
	size_t i, normal, end;
	uint64_t h = 0;

	if (len == 0)
		return 0;
	gear_init();
	if (len <= WH_CDC_MIN)
		return eof ? len : 0;
	end = len < WH_CDC_MAX ? len : WH_CDC_MAX;
	normal = end < WH_CDC_AVG ? end : WH_CDC_AVG;
	/* the first WH_CDC_MIN bytes can never end a chunk: skip them, but
	 * warm the hash on the 64 bytes before the first candidate */
	i = WH_CDC_MIN - 64;
	for (; i < WH_CDC_MIN; i++)
		h = (h << 1) + gear[data[i]];
	for (; i < normal; i++) {
		h = (h << 1) + gear[data[i]];
		if (!(h & MASK_S))
			return i + 1;
	}
	for (; i < end; i++) {
		h = (h << 1) + gear[data[i]];
		if (!(h & MASK_L))
			return i + 1;
	}
	if (end == WH_CDC_MAX || eof)
		return end;
	return 0;
}

/*
 * The gear hash at position i, h(i) = sum over j in [i-63, i] of
 * gear[data[j]] << (i - j) (mod 2^64), depends on the 64 bytes ending at i
 * and nothing else: not on where the chunk began.  So a scan for the first
 * position whose hash clears a mask can run several independent lanes over
 * consecutive blocks at once (each lane warmed on the 64 bytes before its
 * block), which keeps the CPU's pipelines full where one lane waits on its
 * own shift-and-add chain.  When some lane hits, the group is rescanned
 * with one lane to find the first hit exactly.
 */
#define LANE_BLK 4096
#define LANES 4
/* one gear step of the four lanes h0..h3 at |j| of the block at |p| (of
 * first_hit and scan) */
#define GEAR_STEP(j)                                                  \
	do {                                                          \
		h0 = (h0 << 1) + gear[p[(j)]];                        \
		h1 = (h1 << 1) + gear[p[(j) + LANE_BLK]];             \
		h2 = (h2 << 1) + gear[p[(j) + 2 * LANE_BLK]];         \
		h3 = (h3 << 1) + gear[p[(j) + 3 * LANE_BLK]];         \
	} while (0)

/* first_hit1 - the first i in [from, to) with !(h(i) & mask), else |to|;
 * from >= 64. */
static size_t first_hit1(const uint8_t *d, size_t from, size_t to,
			 uint64_t mask)
{
	uint64_t h = 0;

	for (size_t i = from - 64; i < from; i++)
		h = (h << 1) + gear[d[i]];
	for (size_t i = from; i < to; i++) {
		h = (h << 1) + gear[d[i]];
		if (!(h & mask))
			return i;
	}
	return to;
}

static size_t first_hit(const uint8_t *d, size_t from, size_t to,
			uint64_t mask)
{
	while (to - from >= LANES * LANE_BLK) {
		const uint8_t *p = d + from;
		uint64_t h0 = 0, h1 = 0, h2 = 0, h3 = 0;
		size_t j;

		for (long w = -64; w < 0; w++)
			GEAR_STEP(w);
		for (j = 0; j < LANE_BLK; j++) {
			GEAR_STEP(j);
			if (__builtin_expect(!((h0 & mask) && (h1 & mask) &&
					       (h2 & mask) && (h3 & mask)),
					     0))
				break;
		}
		if (j < LANE_BLK)
			return first_hit1(d, from, from + LANES * LANE_BLK,
					  mask);
		from += LANES * LANE_BLK;
	}
	return first_hit1(d, from, to, mask);
}

size_t wh_cdc_cut(const uint8_t *data, size_t len, bool eof)
{
	size_t normal, end, i;

	if (len == 0)
		return 0;
	gear_init();
	if (len <= WH_CDC_MIN)
		return eof ? len : 0;
	end = len < WH_CDC_MAX ? len : WH_CDC_MAX;
	normal = end < WH_CDC_AVG ? end : WH_CDC_AVG;
	i = first_hit(data, WH_CDC_MIN, normal, MASK_S);
	if (i < normal)
		return i + 1;
	if (normal < end) {
		i = first_hit(data, normal, end, MASK_L);
		if (i < end)
			return i + 1;
	}
	if (end == WH_CDC_MAX || eof)
		return end;
	return 0;
}

/*
 * Two threads for a big file.  The cut search is the larger part of the
 * work, and each cut waits on the one before, so it is split another
 * way: while the first thread cuts (and hashes) the chunks that start in
 * the first half of the newly read bytes, the second scans the second
 * half for every position whose hash clears either mask (h(i) depends on
 * the 64 bytes ending at i alone, see above); the chunks that start there
 * are then cut from that short sorted list by the same rule as
 * wh_cdc_cut, hashed on both threads, split by bytes, and everything is
 * handed to the callback in order.  Boundaries and hashes are those of
 * the one-thread loop (the unit tests compare them).  The scan also
 * covers the first WH_CDC_MIN bytes of the chunks in its half, which the
 * plain search skips (about a tenth more gear steps in all), in exchange
 * for both cores.
 *
 * Input crafted to clear the masks at many positions would make the list
 * long: a half with more than CAND_CAP candidates keeps none, and its
 * chunks are cut by wh_cdc_cut itself.
 */
#define PAR_MIN (16u << 20)        /* files from this size: two threads */
#define PAR_BUF (2 * WH_CDC_MAX)   /* read per round; 16 MiB took a third
				    * more CPU on a cold file (likely the
				    * bytes leave the cache between read,
				    * scan and hash) */
#define CAND_CAP 4096              /* candidates kept per half scanned */
#define CAND_S 1u                  /* the position clears MASK_S */
#define CAND_L 2u                  /* ... MASK_L */
#define MASK_BOTH (MASK_S & MASK_L) /* clear for either: a cheap filter */

static int by_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* scan - the candidates in [from, to) of |d| (64 bytes before |from|
 * readable), as (abs0 + i) << 2 | flags in ascending order into |out|;
 * false when more than |cap| (then |*n| is 0) */
static bool scan(const uint8_t *d, size_t from, size_t to, uint64_t abs0,
		 uint64_t *out, size_t cap, size_t *n)
{
	size_t k = 0;

#define CAND(h, i)                                                      \
	do {                                                            \
		unsigned f_ = (!((h) & MASK_S) ? CAND_S : 0) |          \
			      (!((h) & MASK_L) ? CAND_L : 0);           \
		if (f_) {                                               \
			if (k == cap) {                                 \
				*n = 0;                                 \
				return false;                           \
			}                                               \
			out[k++] = (abs0 + (i)) << 2 | f_;              \
		}                                                       \
	} while (0)
	while (to - from >= LANES * LANE_BLK) {
		const uint8_t *p = d + from;
		uint64_t h0 = 0, h1 = 0, h2 = 0, h3 = 0;

		for (long w = -64; w < 0; w++)
			GEAR_STEP(w);
		for (size_t j = 0; j < LANE_BLK; j++) {
			GEAR_STEP(j);
			if (__builtin_expect(
				    !((h0 & MASK_BOTH) && (h1 & MASK_BOTH) &&
				      (h2 & MASK_BOTH) && (h3 & MASK_BOTH)),
				    0)) {
				CAND(h0, from + j);
				CAND(h1, from + j + LANE_BLK);
				CAND(h2, from + j + 2 * LANE_BLK);
				CAND(h3, from + j + 3 * LANE_BLK);
			}
		}
#undef GEAR_STEP
		from += LANES * LANE_BLK;
	}
	if (from < to) {
		const uint8_t *q = d + from;
		uint64_t h = 0;

		for (long w = -64; w < 0; w++)
			h = (h << 1) + gear[q[w]];
		for (size_t i = from; i < to; i++) {
			h = (h << 1) + gear[d[i]];
			if (__builtin_expect(!(h & MASK_BOTH), 0))
				CAND(h, i);
		}
	}
#undef CAND
	/* the lanes found theirs interleaved */
	qsort(out, k, sizeof(*out), by_u64);
	*n = k;
	return true;
}

/*
 * fill - top up |buf| (|bufsz| bytes, the first |*have| of them the file's
 * bytes from |off|) with what follows, up to |limit|, in two reads in
 * flight when the backend allows it; sets |*eof| once the file or the
 * limit ends.  Nothing to do when |*eof| or the buffer is full.  0 or
 * -errno.
 */
static int fill(struct wh_io *io, int fd, uint8_t *buf, size_t bufsz,
		size_t *have, uint64_t off, uint64_t limit, bool *eof)
{
	uint64_t left = limit - (off + *have);
	size_t want = bufsz - *have, half;
	ssize_t n1 = 0, n2 = 0;

	if (*eof || *have >= bufsz)
		return 0;
	if (left < want)
		want = (size_t)left;
	half = want / 2;
	if (want > 0)
		wh_io_pread2(io, fd, buf + *have, half, off + *have,
			     buf + *have + half, want - half,
			     off + *have + half, &n1, &n2);
	if (n1 < 0 || n2 < 0)
		return n1 < 0 ? (int)n1 : (int)n2;
	/* ask the kernel for what comes next meanwhile, so that a cold disk
	 * reads while we hash */
	if (want > 0 && (size_t)n2 == want - half)
		posix_fadvise(fd, (off_t)(off + *have + want), (off_t)bufsz,
			      POSIX_FADV_WILLNEED);
	if ((size_t)n1 < half) {
		/* end of file inside the first half */
		*have += (size_t)n1;
		*eof = true;
	} else {
		*have += half + (size_t)n2;
		*eof = (size_t)n2 < want - half || off + *have == limit;
	}
	return 0;
}

/*
 * The bytes of a big file are read through a mapping of it, a window of
 * MAP_WIN bytes at a time, rather than copied out of the page cache by
 * read() (that copy was 23% of the samples of hashing a cached file; a
 * fifth less CPU with the mapping, 7% less on a cold file, whose bytes
 * miss the cache at their first touch either way).  A file cut shorter
 * meanwhile raises SIGBUS where the mapping passes its new end: a
 * handler, installed for the process (and again if something replaced
 * it), jumps back out of the scan on the thread that touched it (a
 * SIGBUS that is not ours goes to whatever handled it before), and the
 * scan ends with -EAGAIN, the error of a file that changed while it was
 * hashed; -EIO if the file is as long as before (a read error is a
 * SIGBUS too, through a mapping).  WH_HASH_MMAP=0 reads instead (for
 * comparisons); so does a file that cannot be mapped.
 */
#define MAP_WIN (16u << 20)

static __thread sigjmp_buf *volatile bus_jmp; /* this thread's way out */
static __thread uintptr_t bus_lo, bus_hi;     /* ... for faults in here */
static struct sigaction bus_prev;

static void bus_handler(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;

	(void)uc;
	if (bus_jmp && si->si_code > 0 && a >= bus_lo && a < bus_hi)
		siglongjmp(*bus_jmp, 1);
	/* not ours: as if we had never been here (a fault happens again
	 * on return, a signal sent is sent again) */
	sigaction(SIGBUS, &bus_prev, NULL);
	if (si->si_code <= 0)
		raise(sig);
}

/* bus_claim - our handler in place, with whatever was there before
 * (someone may have put theirs since: a test harness does) as the one
 * it passes other faults to; false if it cannot be */
static bool bus_claim(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct sigaction sa, cur;
	bool ok = true;

	pthread_mutex_lock(&lock);
	if (sigaction(SIGBUS, NULL, &cur) != 0) {
		ok = false;
	} else if (!(cur.sa_flags & SA_SIGINFO) ||
		   cur.sa_sigaction != bus_handler) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = bus_handler;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		bus_prev = cur;
		ok = sigaction(SIGBUS, &sa, NULL) == 0;
	}
	pthread_mutex_unlock(&lock);
	return ok;
}

/* map_ok - big files are mapped unless WH_HASH_MMAP=0 */
static bool map_ok(void)
{
	const char *env = getenv("WH_HASH_MMAP");

	if (env && !strcmp(env, "0"))
		return false;
	return bus_claim();
}

/* where a round's bytes come from: a buffer read() fills, or a mapping */
struct src {
	int fd;
	bool mapped;
	uint8_t *raw;  /* read: 64 bytes of history, then the buffer */
	uint8_t *buf;  /* the bytes from the current offset on */
	size_t bufsz;  /* at most this many at once */
	uint8_t *map;  /* mapped: the window, NULL before the first */
	uint64_t moff; /* its offset in the file */
	size_t mlen;
	uint64_t end;   /* where the file ends (limit or size, at the last
			 * look) */
	uint64_t limit;
};

/* map_fill - as fill, from the mapping: s->buf gets the bytes from |off|,
 * as many as there are up to s->bufsz */
static int map_fill(struct src *s, size_t *have, uint64_t off, bool *eof)
{
	const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t want, start;

	if (*eof || *have >= s->bufsz)
		return 0;
	want = off + s->bufsz;
	if (want > s->end && s->end < s->limit) {
		/* at the end seen so far: read() would see what the file
		 * grew by since */
		struct stat st;
		uint64_t size;

		if (fstat(s->fd, &st) != 0)
			return -errno;
		size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
		if (size < off + *have)
			return -EAGAIN; /* cut shorter: it changed */
		s->end = size < s->limit ? size : s->limit;
	}
	if (want > s->end)
		want = s->end;
	start = (off >= 64 ? off - 64 : 0) & ~(page - 1);
	if (!s->map || start < s->moff || want > s->moff + s->mlen) {
		uint64_t mend = start + MAP_WIN;
		void *m;

		if (mend > s->end)
			mend = s->end;
		if (s->map)
			munmap(s->map, s->mlen);
		s->map = NULL;
		m = mmap(NULL, (size_t)(mend - start), PROT_READ, MAP_SHARED,
			 s->fd, (off_t)start);
		if (m == MAP_FAILED)
			return -errno;
		s->map = m;
		s->moff = start;
		s->mlen = (size_t)(mend - start);
		madvise(s->map, s->mlen, MADV_SEQUENTIAL);
		bus_lo = (uintptr_t)s->map;
		bus_hi = bus_lo + s->mlen;
	}
	s->buf = s->map + (off - s->moff);
	*have = (size_t)(want - off);
	*eof = want == s->end;
	/* the kernel reads what comes next meanwhile, as in fill */
	if (!*eof)
		posix_fadvise(s->fd, (off_t)want, (off_t)s->bufsz,
			      POSIX_FADV_WILLNEED);
	return 0;
}

static int src_fill(struct src *s, struct wh_io *io, size_t *have,
		    uint64_t off, bool *eof)
{
	if (s->mapped)
		return map_fill(s, have, off, eof);
	return fill(io, s->fd, s->buf, s->bufsz, have, off, s->limit, eof);
}

/* src_consume - the first |pos| of the |*have| bytes are done with */
static void src_consume(struct src *s, size_t pos, size_t *have)
{
	if (pos == 0)
		return;
	if (s->mapped)
		s->buf += pos;
	else /* keep the rest and the 64 bytes before it */
		memmove(s->raw, s->buf + pos - 64, *have - pos + 64);
	*have -= pos;
}

/* src_open - |s| for |fd| up to |limit|: mapped when it can be, else a
 * buffer of |bufsz| (and 64 bytes of history before it).  0 or -ENOMEM. */
static int src_open(struct src *s, int fd, uint64_t limit, size_t bufsz)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->bufsz = bufsz;
	s->limit = limit;
	if (map_ok() && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size >= PAR_MIN) {
		size_t have = 0;
		bool eof = false;

		/* the first window now: a file system that cannot map
		 * files is read instead */
		s->mapped = true;
		s->end = (uint64_t)st.st_size < limit ? (uint64_t)st.st_size
						       : limit;
		if (map_fill(s, &have, 0, &eof) == 0)
			return 0;
		memset(s, 0, sizeof(*s));
		s->fd = fd;
		s->bufsz = bufsz;
		s->limit = limit;
	}
	s->raw = malloc(64 + bufsz);
	if (!s->raw)
		return -ENOMEM;
	memset(s->raw, 0, 64);
	s->buf = s->raw + 64;
	return 0;
}

static void src_close(struct src *s)
{
	if (s->map)
		munmap(s->map, s->mlen);
	free(s->raw);
}

/* the second thread's work, one piece at a time */
enum { PW_NONE, PW_SCAN, PW_HASH, PW_QUIT };

struct par {
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int work;  /* PW_*, under lock; PW_NONE once done */
	bool fault; /* a piece of work met SIGBUS in the mapping */
	bool mapped;
	uintptr_t lo, hi; /* the mapping, when mapped */
	/* PW_SCAN */
	const uint8_t *d;
	size_t from, to;
	uint64_t abs0;
	uint64_t *out;
	size_t nout;
	bool ok;
	uint64_t scan_ns; /* the thread's CPU time for the scan */
	/* PW_HASH: chunks[i] for i in [h0, h1), data from |d| at offset -
	 * abs0 */
	struct wh_chunk *chunks;
	size_t h0, h1;
};

static void hash_chunks(const uint8_t *d, uint64_t abs0, struct wh_chunk *ch,
			size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		wh_blake3(d + (ch[i].offset - abs0), ch[i].length, ch[i].hash);
}

/* cpu_ns - this thread's CPU time */
static uint64_t cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* par_work - one piece of work |w|; true if it met SIGBUS in the mapping
 * (then it was left half done) */
static bool par_work(struct par *p, int w)
{
	sigjmp_buf jb;

	if (p->mapped) {
		if (sigsetjmp(jb, 1) != 0) {
			bus_jmp = NULL;
			return true;
		}
		bus_lo = p->lo;
		bus_hi = p->hi;
		bus_jmp = &jb;
	}
	if (w == PW_SCAN) {
		uint64_t t0 = cpu_ns();

		p->ok = scan(p->d, p->from, p->to, p->abs0, p->out, CAND_CAP,
			     &p->nout);
		p->scan_ns = cpu_ns() - t0;
	} else
		hash_chunks(p->d, p->abs0, p->chunks, p->h0, p->h1);
	bus_jmp = NULL;
	return false;
}

static void *par_main(void *arg)
{
	struct par *p = arg;
	sigset_t bus;

	/* a fault must reach the handler, whatever the thread that
	 * started this one blocked */
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
	for (;;) {
		bool fault;
		int w;

		pthread_mutex_lock(&p->lock);
		while (p->work == PW_NONE)
			pthread_cond_wait(&p->cv, &p->lock);
		w = p->work;
		pthread_mutex_unlock(&p->lock);
		if (w == PW_QUIT)
			break;
		fault = par_work(p, w);
		pthread_mutex_lock(&p->lock);
		p->fault |= fault;
		p->work = PW_NONE;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

static void par_post(struct par *p, int work)
{
	pthread_mutex_lock(&p->lock);
	p->work = work;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
}

/* par_wait - the posted work is done; false if it met SIGBUS */
static bool par_wait(struct par *p)
{
	bool ok;

	pthread_mutex_lock(&p->lock);
	while (p->work != PW_NONE)
		pthread_cond_wait(&p->cv, &p->lock);
	ok = !p->fault;
	pthread_mutex_unlock(&p->lock);
	return ok;
}

/* par_start - the second thread, for work in a mapping if |mapped|;
 * false (nothing to stop) if it cannot be had */
static bool par_start(struct par *p, bool mapped)
{
	p->mapped = mapped;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->th, NULL, par_main, p) == 0)
		return true;
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->lock);
	return false;
}

/* par_stop - the thread par_start started, gone */
static void par_stop(struct par *p)
{
	par_post(p, PW_QUIT);
	pthread_join(p->th, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->lock);
}

/* the candidates found by the second thread in one round, and whether
 * they were too many to keep */
struct cands {
	uint64_t *v;
	size_t n, next;
	bool dense;
};

/* cands_cut - wh_cdc_cut(d, len, eof) for the chunk starting at absolute
 * offset |s|, whose search lies in the bytes scanned for |cs| */
static size_t cands_cut(struct cands *cs, const uint8_t *d, size_t len,
			bool eof, uint64_t s)
{
	size_t end, normal;

	if (cs->dense || len <= WH_CDC_MIN)
		return wh_cdc_cut(d, len, eof);
	end = len < WH_CDC_MAX ? len : WH_CDC_MAX;
	normal = end < WH_CDC_AVG ? end : WH_CDC_AVG;
	/* the chunks go forward: what lies before this one's first
	 * possible cut is of no more use */
	while (cs->next < cs->n && (cs->v[cs->next] >> 2) < s + WH_CDC_MIN)
		cs->next++;
	for (size_t i = cs->next; i < cs->n; i++) {
		uint64_t p = cs->v[i] >> 2;

		if (p >= s + end)
			break;
		if (p < s + normal ? (cs->v[i] & CAND_S) : (cs->v[i] & CAND_L))
			return (size_t)(p - s) + 1;
	}
	if (end == WH_CDC_MAX || eof)
		return end;
	return 0;
}

/* the state of chunk_fd_par, kept out of the function that may be
 * jumped back to */
struct parrun {
	struct src src;
	struct par p;
	struct wh_chunk *cut;
	size_t ncutcap;
	wh_chunk_cb cb;
	void *ud;
	uint64_t off;
	/* this thread's share of a round's new bytes, in 1/1024: it maps
	 * them (and asks the kernel for the next ones) and cuts while the
	 * other thread scans, and usually gets less than half; set after
	 * each round from both threads' CPU time (balance) */
	unsigned share;
};

/* balance - the share of the next round, after one in which this thread
 * took |c1| ns for its |b1| bytes and the other |c2| ns to scan |b2|: the
 * split that would have made them equal, if each cost is in proportion
 * to its bytes, halfway from the last one, within 1/5 and 4/5 */
static unsigned balance(unsigned share, uint64_t c1, uint64_t b1,
			uint64_t c2, uint64_t b2)
{
	double r1, r2, f;

	if (c1 == 0 || c2 == 0 || b1 == 0 || b2 == 0)
		return share;
	r1 = (double)c1 / (double)b1;
	r2 = (double)c2 / (double)b2;
	f = r2 / (r1 + r2) * 1024.0;
	f = (f + share) / 2;
	if (f < 205)
		f = 205;
	if (f > 819)
		f = 819;
	return (unsigned)f;
}

/*
 * One round: read up to PAR_BUF, hand the later part of the new bytes to
 * the other thread to scan, cut the chunks that start in the earlier part
 * meanwhile (the plain search, which skips each chunk's first WH_CDC_MIN
 * bytes), then cut the rest from the candidates, hash them all on both
 * threads, half of the bytes each, and hand everything to |cb| in order.
 * Where the parts meet follows both threads' CPU time of the round before
 * (r->share), so that neither waits long for the other.  A chunk whose
 * search starts before the scanned part is cut the plain way, so the
 * bytes left over from the last round need no candidates.
 */
static int par_rounds(void *arg)
{
	struct parrun *r = arg;
	struct wh_io *io = wh_io_thread();
	struct par *p = &r->p;
	struct wh_chunk *cut = r->cut;
	size_t have = 0, ncutcap = r->ncutcap;
	bool eof = false;
	int rv = 0;

	while (!eof || have > 0) {
		size_t pos = 0, ncut = 0, nplain, old = have, mid;
		uint64_t total = 0, half = 0, off = r->off;
		struct cands cs = { 0 };
		const uint8_t *buf;
		bool scanning;
		uint64_t t0 = cpu_ns(), c1;

		rv = src_fill(&r->src, io, &have, off, &eof);
		if (rv < 0)
			return rv;
		buf = r->src.buf;
		p->lo = (uintptr_t)r->src.map;
		p->hi = p->lo + r->src.mlen;
		/* the later part of the new bytes to the other thread; a
		 * short tail is not worth it */
		mid = old + (size_t)((uint64_t)(have - old) * r->share / 1024);
		scanning = have - mid >= 2 * WH_CDC_MAX / 4;
		if (scanning) {
			p->d = buf;
			p->from = mid;
			p->to = have;
			p->abs0 = off;
			par_post(p, PW_SCAN);
		} else {
			mid = have;
		}
		/* the chunks whose search starts before |mid|, cut and hashed
		 * here meanwhile */
		while (pos < have && pos + WH_CDC_MIN < mid && ncut < ncutcap) {
			size_t c = wh_cdc_cut(buf + pos, have - pos, eof);

			if (c == 0)
				break;
			cut[ncut].offset = off + pos;
			cut[ncut].length = (uint32_t)c;
			total += c;
			ncut++;
			pos += c;
		}
		nplain = ncut;
		c1 = cpu_ns() - t0;
		if (scanning) {
			if (!par_wait(p))
				return -EFAULT;
			cs.v = p->out;
			cs.n = p->nout;
			cs.dense = !p->ok;
			r->share = balance(r->share, c1, pos, p->scan_ns,
					   have - mid);
		}
		/* the others, from the candidates (none are needed when the
		 * loop above stopped for want of data) */
		while (pos < have && ncut < ncutcap &&
		       (pos + WH_CDC_MIN >= mid || ncut > nplain)) {
			size_t c = scanning ? cands_cut(&cs, buf + pos,
							have - pos, eof,
							off + pos)
					    : wh_cdc_cut(buf + pos, have - pos,
							 eof);

			if (c == 0)
				break;
			cut[ncut].offset = off + pos;
			cut[ncut].length = (uint32_t)c;
			total += c;
			ncut++;
			pos += c;
		}
		/* the hashes of them all: the later ones on the other
		 * thread, about half of the bytes (cutting is the part
		 * whose split is balanced) */
		if (ncut > 0) {
			size_t k = ncut;

			/* (each chunk to the other thread that brings its
			 * part nearer to half) */
			while (k > 1 && 2 * half + cut[k - 1].length < total)
				half += cut[--k].length;
			p->chunks = cut;
			p->h0 = k;
			p->h1 = ncut;
			p->d = buf;
			p->abs0 = off;
			if (k < ncut)
				par_post(p, PW_HASH);
			hash_chunks(buf, off, cut, 0, k);
			if (k < ncut && !par_wait(p))
				return -EFAULT;
		}
		for (size_t i = 0; i < ncut; i++) {
			rv = r->cb(r->ud, &cut[i]);
			if (rv < 0)
				return rv;
		}
		r->off = off + pos;
		src_consume(&r->src, pos, &have);
		if (eof && have == 0)
			break;
	}
	return 0;
}

/* fault_err - the error for a SIGBUS in the mapping of |s|: -EAGAIN if
 * the file is shorter than the bytes mapped now (it changed), else -EIO
 * (a read error, which is also a SIGBUS through a mapping) */
static int fault_err(const struct src *s)
{
	struct stat st;

	if (fstat(s->fd, &st) != 0)
		return -errno;
	return (uint64_t)st.st_size < s->moff + s->mlen ? -EAGAIN : -EIO;
}

/* guarded - fn(arg), with a SIGBUS in the mapping of |s| turned into
 * fault_err: one on this thread (then |p|'s thread, if any, is waited
 * for first: it may still be at work in the same bytes), or one on |p|'s
 * thread, which fn reports as -EFAULT */
static int guarded(struct src *s, struct par *p, int (*fn)(void *),
		   void *arg)
{
	sigjmp_buf jb;
	sigset_t bus, oldmask;
	int rv;

	if (!s->mapped) {
		rv = fn(arg);
		return rv == -EFAULT ? fault_err(s) : rv;
	}
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, &oldmask);
	if (sigsetjmp(jb, 1) != 0) {
		bus_jmp = NULL;
		if (p)
			par_wait(p);
		rv = fault_err(s);
	} else {
		bus_jmp = &jb;
		rv = fn(arg);
		bus_jmp = NULL;
		if (rv == -EFAULT)
			rv = fault_err(s);
	}
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	return rv;
}

/* chunk_fd_par - as wh_chunk_fd; 1 (nothing done yet) when no thread
 * could be started */
static int chunk_fd_par(int fd, uint64_t limit, wh_chunk_cb cb, void *ud,
			uint64_t *psize)
{
	struct parrun r;
	int rv;

	*psize = 0;
	gear_init();
	memset(&r, 0, sizeof(r));
	r.cb = cb;
	r.ud = ud;
	r.share = 512;
	r.ncutcap = PAR_BUF / WH_CDC_MIN + 2;
	r.cut = malloc(r.ncutcap * sizeof(*r.cut));
	r.p.out = malloc(CAND_CAP * sizeof(*r.p.out));
	if (!r.cut || !r.p.out || src_open(&r.src, fd, limit, PAR_BUF) < 0) {
		rv = -ENOMEM;
		goto out_free;
	}
	if (!par_start(&r.p, r.src.mapped)) {
		rv = 1; /* no thread to be had: the caller goes on alone */
		goto out_free;
	}
	rv = guarded(&r.src, &r.p, par_rounds, &r);
	if (rv == 0)
		*psize = r.off;
	par_stop(&r.p);
out_free:
	src_close(&r.src);
	free(r.cut);
	free(r.p.out);
	return rv;
}

/*
 * Hashing a file again after a change, with the manifest of the version
 * before.  A chunk's end depends on its own bytes alone (the gear hash is
 * warmed inside the chunk, from its WH_CDC_MIN - 64th byte), so where the
 * bytes at a chunk's start are those of a chunk of the old version, of its
 * length, the cut there is the old one: one BLAKE3 of those bytes decides
 * it, and equal hashes mean equal bytes.  So the old chunk expected next is
 * checked first; when it differs, the cut is searched the usual way, and the
 * chunk found is looked up among the old ones: the old chunk after it is
 * the one expected next.  An old last chunk ended with its file, not at a
 * cut, so it is taken only where the new file ends with it too.  Unchanged
 * stretches cost a BLAKE3 pass and no cut search (the larger cost: 0.70
 * against 0.45 s/GB, bench/README.md), on two threads in a file of more
 * than a round (hint_batch); boundaries and hashes are those of
 * wh_chunk_fd (the unit tests compare them).  A wrong |old| (a manifest of
 * another file, or none of this format) costs a hash per chunk and is
 * otherwise harmless: a chunk is only taken where its bytes hash to its
 * hash, and every chunk handed out has the hash of its bytes.
 */
struct hint {
	uint8_t hash[WH_HASH_LEN];
	size_t idx; /* in the old manifest */
};

static int by_hint(const void *a, const void *b)
{
	return memcmp(a, b, WH_HASH_LEN);
}

#define NO_HINT SIZE_MAX

/* the state of wh_chunk_fd_hint, kept out of the function that may be
 * jumped back to (as parrun) */
struct hintrun {
	struct src src;
	const struct wh_manifest *old;
	struct hint *hints; /* old's chunks by hash */
	size_t next;        /* the old chunk expected next, or NO_HINT */
	wh_chunk_cb cb;
	void *ud;
	uint64_t off, kept;
	bool two;           /* a second thread (p) checks chunks too */
	struct par p;
	struct wh_chunk spec[PAR_BUF / WH_CDC_MIN + 1];
};

/* hint_cut - the chunk at |d| (|avail| bytes, |eof|) into |c|: the old
 * chunk expected there if it is that one, else as wh_cdc_cut cuts it; 0
 * when more bytes decide it */
static size_t hint_cut(struct hintrun *r, const uint8_t *d, size_t avail,
		       bool eof, struct wh_chunk *c)
{
	const struct wh_manifest *old = r->old;
	struct hint *h;
	size_t cut;

	if (r->next < old->n) {
		const struct wh_chunk *o = &old->chunks[r->next];
		bool last = r->next + 1 == old->n;

		if (o->length == 0 || o->length > WH_CDC_MAX) {
			r->next = NO_HINT; /* no chunk of ours */
		} else if (!eof &&
			   (o->length > avail || (last && o->length == avail))) {
			return 0; /* more bytes decide it */
		} else if (o->length > avail || (last && o->length != avail)) {
			r->next = NO_HINT;
		} else {
			wh_blake3(d, o->length, c->hash);
			if (!memcmp(c->hash, o->hash, WH_HASH_LEN)) {
				r->next++;
				r->kept += o->length;
				return o->length;
			}
			r->next = NO_HINT;
		}
	}
	cut = wh_cdc_cut(d, avail, eof);
	if (cut == 0)
		return 0;
	wh_blake3(d, cut, c->hash);
	h = bsearch(c->hash, r->hints, old->n, sizeof(*r->hints), by_hint);
	r->next = h ? h->idx + 1 : NO_HINT;
	return cut;
}

/*
 * hint_batch - with two threads: the old chunks expected from |pos| on, laid
 * end to end as they were, that lie whole in the |have| bytes (but the old
 * last one, which hint_cut decides), hashed on both threads at once, half
 * of the bytes each; those that match, up to the first that does not, are
 * handed to |cb| as hint_cut would have, one by one.  At a chunk that
 * differs, r->next becomes NO_HINT, so that hint_cut searches the cut
 * there without hashing the expected chunk again; the chunks hashed after
 * it are wasted (at most a round's bytes per change).  Returns the bytes
 * taken (0: fewer than two chunks to check, left to hint_cut), or a
 * negative error (-EFAULT: SIGBUS on the other thread).
 */
static ssize_t hint_batch(struct hintrun *r, size_t pos, size_t have)
{
	const struct wh_manifest *old = r->old;
	struct wh_chunk *spec = r->spec;
	uint64_t total = 0, half = 0;
	size_t k = 0, split, end = pos, taken = 0;

	while (r->next + k + 1 < old->n &&
	       k < sizeof(r->spec) / sizeof(r->spec[0])) {
		const struct wh_chunk *o = &old->chunks[r->next + k];

		if (o->length == 0 || o->length > WH_CDC_MAX ||
		    o->length > have - end)
			break;
		spec[k].offset = r->off + (end - pos);
		spec[k].length = o->length;
		total += o->length;
		end += o->length;
		k++;
	}
	if (k < 2)
		return 0;
	split = k;
	while (split > 1 && 2 * half + spec[split - 1].length < total)
		half += spec[--split].length;
	r->p.chunks = spec;
	r->p.h0 = split;
	r->p.h1 = k;
	r->p.d = r->src.buf + pos;
	r->p.abs0 = r->off;
	if (r->src.mapped) {
		r->p.lo = (uintptr_t)r->src.map;
		r->p.hi = r->p.lo + r->src.mlen;
	}
	par_post(&r->p, PW_HASH);
	hash_chunks(r->src.buf + pos, r->off, spec, 0, split);
	if (!par_wait(&r->p))
		return -EFAULT;
	for (size_t i = 0; i < k; i++) {
		int rv;

		if (memcmp(spec[i].hash, old->chunks[r->next].hash,
			   WH_HASH_LEN)) {
			r->next = NO_HINT;
			break;
		}
		rv = r->cb(r->ud, &spec[i]);
		if (rv < 0)
			return rv;
		r->next++;
		r->kept += spec[i].length;
		r->off += spec[i].length;
		taken += spec[i].length;
	}
	return (ssize_t)taken;
}

static int hint_rounds(void *arg)
{
	struct hintrun *r = arg;
	struct wh_io *io = wh_io_thread();
	size_t have = 0;
	bool eof = false;
	int rv;

	while (!eof || have > 0) {
		size_t pos = 0;

		rv = src_fill(&r->src, io, &have, r->off, &eof);
		if (rv < 0)
			return rv;
		while (pos < have) {
			struct wh_chunk c;
			size_t cut;

			if (r->two && r->next < r->old->n) {
				ssize_t t = hint_batch(r, pos, have);

				if (t < 0)
					return (int)t;
				pos += (size_t)t;
				if (t > 0)
					continue;
			}
			cut = hint_cut(r, r->src.buf + pos, have - pos, eof,
				       &c);
			if (cut == 0)
				break;
			c.offset = r->off;
			c.length = (uint32_t)cut;
			rv = r->cb(r->ud, &c);
			if (rv < 0)
				return rv;
			pos += cut;
			r->off += cut;
		}
		src_consume(&r->src, pos, &have);
		if (eof && have == 0)
			break;
	}
	return 0;
}

int wh_chunk_fd_hint(int fd, uint64_t limit, const struct wh_manifest *old,
		     wh_chunk_cb cb, void *ud, uint64_t *psize,
		     uint64_t *pkept)
{
	const size_t bufsz = limit < PAR_BUF ? (size_t)limit + 1 : PAR_BUF;
	struct hintrun r;
	struct stat st;
	int rv;

	*psize = 0;
	if (pkept)
		*pkept = 0;
	if (!old || old->n == 0)
		return wh_chunk_fd(fd, limit, cb, ud, psize);
	gear_init();
	memset(&r, 0, sizeof(r));
	r.old = old;
	r.cb = cb;
	r.ud = ud;
	r.hints = malloc(old->n * sizeof(*r.hints));
	if (!r.hints || src_open(&r.src, fd, limit, bufsz) < 0) {
		free(r.hints);
		return -ENOMEM;
	}
	for (size_t i = 0; i < old->n; i++) {
		memcpy(r.hints[i].hash, old->chunks[i].hash, WH_HASH_LEN);
		r.hints[i].idx = i;
	}
	qsort(r.hints, old->n, sizeof(*r.hints), by_hint);
	/* a file of more than a round's bytes: checked on two threads */
	r.two = fstat(fd, &st) == 0 && (uint64_t)st.st_size > PAR_BUF &&
		limit > PAR_BUF && par_start(&r.p, r.src.mapped);
	rv = guarded(&r.src, r.two ? &r.p : NULL, hint_rounds, &r);
	if (rv == 0) {
		*psize = r.off;
		if (pkept)
			*pkept = r.kept;
	}
	if (r.two)
		par_stop(&r.p);
	src_close(&r.src);
	free(r.hints);
	return rv;
}

void wh_blake3(const void *data, size_t len, uint8_t out[static WH_HASH_LEN])
{
	blake3_hasher h;

	blake3_hasher_init(&h);
	blake3_hasher_update(&h, data, len);
	blake3_hasher_finalize(&h, out, WH_HASH_LEN);
}

int wh_blake3_fd(int fd, uint8_t out[static WH_HASH_LEN])
{
	const size_t bufsz = 1 << 20;
	uint8_t *buf = malloc(bufsz);
	blake3_hasher h;
	int rv = 0;

	if (!buf)
		return -ENOMEM;
	blake3_hasher_init(&h);
	for (;;) {
		ssize_t n = read(fd, buf, bufsz);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rv = -errno;
			break;
		}
		if (n == 0)
			break;
		blake3_hasher_update(&h, buf, (size_t)n);
	}
	if (rv == 0)
		blake3_hasher_finalize(&h, out, WH_HASH_LEN);
	free(buf);
	return rv;
}

void wh_hash_hex(const uint8_t hash[static WH_HASH_LEN], char out[static 65])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < WH_HASH_LEN; i++) {
		out[2 * i] = hex[hash[i] >> 4];
		out[2 * i + 1] = hex[hash[i] & 15];
	}
	out[64] = '\0';
}

void wh_manifest_init(struct wh_manifest *m)
{
	memset(m, 0, sizeof(*m));
}

void wh_manifest_free(struct wh_manifest *m)
{
	free(m->chunks);
	wh_manifest_init(m);
}

static int manifest_add(void *ud, const struct wh_chunk *c)
{
	struct wh_manifest *m = ud;

	if (m->n == m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		struct wh_chunk *nc = realloc(m->chunks, ncap * sizeof(*nc));

		if (!nc)
			return -ENOMEM;
		m->chunks = nc;
		m->cap = ncap;
	}
	m->chunks[m->n++] = *c;
	return 0;
}

int wh_manifest_build(int fd, struct wh_manifest *m)
{
	uint64_t size = 0;
	int rv;

	m->n = 0;
	m->size = 0;
	rv = wh_chunk_fd(fd, UINT64_MAX, manifest_add, m, &size);
	if (rv == 0)
		m->size = size;
	return rv;
}

/* parallel_ok - |fd| is big enough to be worth a second thread, and
 * WH_HASH_THREADS does not ask for one thread */
static bool parallel_ok(int fd, uint64_t limit)
{
	const char *env = getenv("WH_HASH_THREADS");
	struct stat st;
	uint64_t size = limit;

	if (env && !strcmp(env, "1"))
		return false;
	if (size == UINT64_MAX)
		size = fstat(fd, &st) == 0 && st.st_size > 0
			       ? (uint64_t)st.st_size
			       : 0;
	return size >= PAR_MIN;
}

int wh_chunk_fd(int fd, uint64_t limit, wh_chunk_cb cb, void *ud,
		uint64_t *psize)
{
	/* twice the largest chunk: there is always a whole chunk to cut;
	 * no more than |limit| though, which is read at once: an 8 MiB
	 * buffer for a small file is an mmap, page faults and a munmap
	 * (a TLB shootdown on every CPU) per file */
	const size_t bufsz = limit < 2 * WH_CDC_MAX ? (size_t)limit + 1
						    : 2 * WH_CDC_MAX;
	struct wh_io *io = wh_io_thread();
	uint8_t *buf;
	size_t have = 0;
	uint64_t off = 0;
	bool eof = false;
	int rv = 0;

	*psize = 0;
	if (parallel_ok(fd, limit)) {
		rv = chunk_fd_par(fd, limit, cb, ud, psize);
		if (rv <= 0)
			return rv;
		rv = 0;
	}
	buf = malloc(bufsz);
	if (!buf)
		return -ENOMEM;
	while (!eof || have > 0) {
		size_t pos = 0;

		rv = fill(io, fd, buf, bufsz, &have, off, limit, &eof);
		if (rv < 0)
			goto out;
		for (;;) {
			size_t cut = wh_cdc_cut(buf + pos, have - pos, eof);
			struct wh_chunk c;

			if (cut == 0)
				break;
			c.offset = off;
			c.length = (uint32_t)cut;
			wh_blake3(buf + pos, cut, c.hash);
			rv = cb(ud, &c);
			if (rv < 0)
				goto out;
			pos += cut;
			off += cut;
			if (pos == have)
				break;
		}
		memmove(buf, buf + pos, have - pos);
		have -= pos;
		if (eof && have == 0)
			break;
	}
	*psize = off;
out:
	free(buf);
	return rv;
}
