/*
 * wh_zhost.c - when and how hard the host compresses a reply (see
 * wh_zhost.h for the rule).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "chunk/wh_zstd.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "host/wh_zhost.h"
#include "proto/wh_proto.h"

#define CACHE_SLOTS 4096        /* chunks remembered as incompressible */
#define SAMPLE_MAX_RATIO 0.92   /* a sample over this: send raw */
#define GAIN_MIN 1.20           /* compressing must beat raw by this */
#define NET_BUSY_MAX 0.5        /* a network thread busier: CPU-bound */
#define RATE_SAMPLE_NS (50 * WH_NS_PER_MS) /* busy time per rate sample */
#define RATE_SAMPLE_BYTES (256 * 1024)

/* the levels tried, their speed per core on text before any measurement
 * (bytes/s; the measured speed scales them all) and how much smaller than
 * level 1 they make data that compresses well */
static const struct level {
	int level;
	double speed;
	double gain;
} levels[] = {
	{ 1, 250e6, 1.00 },
	{ 3, 130e6, 0.85 },
	{ 6, 45e6, 0.80 },
};
#define NLEVELS (sizeof(levels) / sizeof(levels[0]))

struct wh_zhost {
	int forced;     /* a level from $WORMHOLE_ZSTD, 0 for auto */
	int cores;      /* cores compression may use */
	pthread_mutex_t lock;
	double factor;  /* measured / nominal speed, protected by lock */
	uint64_t keys[CACHE_SLOTS]; /* incompressible chunks, under lock */
	uint64_t packed, raw_in, z_out; /* statistics, under lock */
};

int wh_zhost_new(struct wh_zhost **pz)
{
	const char *env = getenv("WORMHOLE_ZSTD");
	struct wh_zhost *z;
	long ncpu;

	*pz = NULL;
	if (!wh_zstd_enabled())
		return 0;
	z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	if (env && strcasecmp(env, "auto") != 0) {
		char *end;
		long l = strtol(env, &end, 10);

		if (*env && !*end && l >= 1 && l <= WH_ZSTD_MAX_LEVEL)
			z->forced = (int)l;
		else
			wh_warn("WORMHOLE_ZSTD='%s' not understood (off, auto "
				"or a level 1..%d): using auto", env,
				WH_ZSTD_MAX_LEVEL);
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	/* one core is the network thread's */
	z->cores = ncpu > 2 ? (int)(ncpu - 1) : 1;
	if (z->cores > 4)
		z->cores = 4;
	z->factor = 1.0;
	pthread_mutex_init(&z->lock, NULL);
	*pz = z;
	return 0;
}

void wh_zhost_del(struct wh_zhost *z)
{
	if (!z)
		return;
	if (z->packed)
		wh_info("zstd: %llu replies compressed, %llu bytes sent as %llu",
			(unsigned long long)z->packed,
			(unsigned long long)z->raw_in,
			(unsigned long long)z->z_out);
	pthread_mutex_destroy(&z->lock);
	free(z);
}

/* ------------------------------------------------------------ caching */

static uint64_t key_of(const uint8_t *hash)
{
	uint64_t k;

	memcpy(&k, hash, sizeof(k));
	return k | 1; /* never 0, the empty slot */
}

static bool cached_raw(struct wh_zhost *z, const uint8_t *hash)
{
	uint64_t k = key_of(hash);
	bool hit;

	pthread_mutex_lock(&z->lock);
	hit = z->keys[k % CACHE_SLOTS] == k;
	pthread_mutex_unlock(&z->lock);
	return hit;
}

static void remember_raw(struct wh_zhost *z, const uint8_t *hash)
{
	uint64_t k = key_of(hash);

	pthread_mutex_lock(&z->lock);
	z->keys[k % CACHE_SLOTS] = k;
	pthread_mutex_unlock(&z->lock);
}

/* ------------------------------------------------------------- policy */

/* link_allows - whether any data could be worth compressing on |link|:
 * checked before the sample, so that a fast link costs no sampling */
static bool link_allows(struct wh_zhost *z, const struct wh_zlink *link)
{
	double factor;

	if (z->forced)
		return true;
	if (link->net_busy > NET_BUSY_MAX || link->rate <= 0 || link->hold)
		return false;
	pthread_mutex_lock(&z->lock);
	factor = z->factor;
	pthread_mutex_unlock(&z->lock);
	/* even data that shrinks to nothing moves at most the fastest
	 * level's speed */
	return levels[0].speed * factor * z->cores >= link->rate * GAIN_MIN;
}

/* choose - the level for data of sample ratio |ratio| on |link|, or 0
 * for raw */
static int choose(struct wh_zhost *z, double ratio,
		  const struct wh_zlink *link)
{
	double factor, best_t = 0, rate = link->rate;
	int best = 0;

	if (ratio > SAMPLE_MAX_RATIO)
		return 0;
	if (z->forced)
		return z->forced;
	if (link->net_busy > NET_BUSY_MAX)
		return 0;
	if (rate <= 0)
		return 0; /* not measured yet: raw replies measure it */
	pthread_mutex_lock(&z->lock);
	factor = z->factor;
	pthread_mutex_unlock(&z->lock);
	for (size_t i = 0; i < NLEVELS; i++) {
		/* data near incompressible gains nothing from harder levels */
		double r = ratio < 0.5 ? ratio * levels[i].gain : ratio;
		double cpu = levels[i].speed * factor * z->cores;
		double wire = rate / r;
		double t = cpu < wire ? cpu : wire;

		if (t > best_t * 1.03) { /* a harder level must really win */
			best_t = t;
			best = levels[i].level;
		}
	}
	return best_t >= rate * GAIN_MIN ? best : 0;
}

static void measured(struct wh_zhost *z, int level, size_t raw, size_t zlen,
		     uint64_t ns)
{
	double nominal = 0, f;

	for (size_t i = 0; i < NLEVELS; i++)
		if (levels[i].level == level)
			nominal = levels[i].speed;
	pthread_mutex_lock(&z->lock);
	if (nominal > 0 && ns > 0 && raw >= 64 * 1024) {
		f = ((double)raw * 1e9 / (double)ns) / nominal;
		if (f < 0.05)
			f = 0.05;
		if (f > 8)
			f = 8;
		z->factor = z->factor * 0.8 + f * 0.2;
	}
	if (zlen) {
		z->packed++;
		z->raw_in += raw;
		z->z_out += zlen;
	}
	pthread_mutex_unlock(&z->lock);
}

/* all_skip_names - every file of the GET_SMALL |g| has the name of an
 * already compressed format */
static bool all_skip_names(const struct wh_msg_get_small *g)
{
	struct wh_small_req e;
	size_t pos = 0;
	int rv;

	while ((rv = wh_small_req_next(g, &pos, &e)) == 1)
		if (!wh_zstd_skip_name(e.path.p, e.path.len))
			return false;
	return rv == 0;
}

size_t wh_zhost_pack(struct wh_zhost *z, const uint8_t *req, size_t len,
		     struct wh_buf *resp, const struct wh_zlink *link)
{
	uint8_t hdr[WH_ZREPLY_HDR_MAX];
	const uint8_t *hash = NULL, *data;
	struct wh_msg m, r;
	struct wh_str path;
	struct wh_buf out;
	size_t off, raw;
	ssize_t hlen, zlen;
	uint64_t t0;
	double ratio;
	int level;

	if (!z || wh_msg_decode(req, len, WH_MAX_REQ_FRAME, &m) < 0)
		return 0;
	if (m.hdr.type == WH_MSG_CHUNK) {
		path = m.u.chunk.path;
	} else if (m.hdr.type == WH_MSG_READ) {
		path = m.u.read.path;
	} else if (m.hdr.type == WH_MSG_GET_SMALL && link->small &&
		 !all_skip_names(&m.u.get_small)) {
		path.p = ""; /* no one name decides */
		path.len = 0;
	} else {
		return 0;
	}
	if (wh_msg_decode(resp->data, resp->len, WH_MAX_REPLY_FRAME, &r) < 0)
		return 0;
	if (r.hdr.type == WH_MSG_CHUNK_REPLY && !r.u.chunk_reply.zstd) {
		data = r.u.chunk_reply.data;
		raw = r.u.chunk_reply.data_len;
		hash = m.u.chunk.hash;
	} else if (r.hdr.type == WH_MSG_READ_REPLY && !r.u.read_reply.zstd) {
		data = r.u.read_reply.data;
		raw = r.u.read_reply.data_len;
	} else if (r.hdr.type == WH_MSG_GET_SMALL_REPLY &&
		   m.hdr.type == WH_MSG_GET_SMALL && !r.u.get_small_reply.zstd) {
		/* the whole payload: the files and their entries */
		data = resp->data + WH_FRAME_HDR_LEN;
		raw = resp->len - WH_FRAME_HDR_LEN;
	} else {
		return 0; /* an ERROR */
	}
	if (raw < WH_ZSTD_MIN_LEN || wh_zstd_skip_name(path.p, path.len))
		return 0;
	if (!link_allows(z, link) || (hash && cached_raw(z, hash)))
		return 0;
	ratio = raw > 3 * WH_ZSTD_SAMPLE_LEN ? wh_zstd_sample_ratio(data, raw,
								      NULL)
					      : 0.5; /* small: just try */
	level = choose(z, ratio, link);
	if (level == 0) {
		if (hash && ratio > SAMPLE_MAX_RATIO)
			remember_raw(z, hash);
		return 0;
	}
	hlen = wh_zreply_hdr_encode(resp->data, resp->len, 1, hdr, sizeof(hdr),
				    &off);
	if (hlen < 0)
		return 0;
	wh_buf_init(&out);
	if (wh_buf_reserve(&out, (size_t)hlen + raw - 1) < 0)
		return 0;
	t0 = wh_now_ns();
	zlen = wh_zstd_compress(out.data + hlen, raw - 1, data, raw, level);
	measured(z, level, raw, zlen > 0 ? (size_t)zlen : 0, wh_now_ns() - t0);
	if (zlen <= 0 ||
	    wh_zreply_hdr_encode(resp->data, resp->len, (uint32_t)zlen,
				 out.data, (size_t)hlen, &off) != hlen) {
		if (zlen == 0 && hash)
			remember_raw(z, hash);
		wh_buf_free(&out);
		return 0;
	}
	out.len = (size_t)hlen + (size_t)zlen;
	wh_buf_free(resp);
	*resp = out;
	return raw - (size_t)zlen;
}

/* ---------------------------------------------------------- link rate */

#define HOLD_MIN_NS (4 * WH_NS_PER_S)
#define HOLD_MAX_NS (64 * WH_NS_PER_S)

/* account - the time since the last event counts if the link was
 * backlogged all along */
static bool account(struct wh_zrate *r, uint64_t now)
{
	bool backlogged = r->outstanding >= WH_ZRATE_BACKLOG;

	if (backlogged && now > r->last)
		r->busy_ns += now - r->last;
	r->last = now;
	return backlogged;
}

static void end_trial(struct wh_zrate *r, uint64_t hold, uint64_t now)
{
	r->trying = false;
	r->fresh = false;
	r->busy_ns = 0;
	r->bytes = 0;
	r->w_start = 0;
	r->w_file = 0;
	r->hold_until = hold ? now + hold : 0;
}

/* window - file bytes per second of wall time since the first delivery
 * of the window; true with *rate set once a window of TRIAL is full */
static bool window(struct wh_zrate *r, size_t file, uint64_t now,
		   double *rate)
{
	if (!r->w_start) {
		r->w_start = now; /* count from here */
		r->w_file = 0;
		return false;
	}
	r->w_file += file;
	if (now - r->w_start < WH_ZRATE_TRIAL_MS * WH_NS_PER_MS)
		return false;
	*rate = (double)r->w_file * 1e9 / (double)(now - r->w_start);
	r->w_start = now;
	r->w_file = 0;
	return true;
}

void wh_zrate_sent(struct wh_zrate *r, size_t wire, size_t file,
		   uint64_t now)
{
	account(r, now);
	r->outstanding += wire;
	if (file > wire && !r->trying) {
		r->trying = true;
		r->w_start = 0;
		r->w_file = 0;
		r->z_since = now;
	}
}

void wh_zrate_done(struct wh_zrate *r, size_t wire, size_t file,
		   uint64_t now)
{
	bool backlogged = account(r, now);
	double sample;

	r->outstanding -= wire < r->outstanding ? wire : r->outstanding;
	if (r->trying) {
		if ((file == wire && !r->w_start) || !window(r, file, now, &sample))
			return; /* (the trial counts from a compressed reply) */
		if (sample < r->raw_wall * 1.1) {
			/* compressing made it slower, or not faster */
			if (r->hold_ns < HOLD_MIN_NS)
				r->hold_ns = HOLD_MIN_NS;
			end_trial(r, r->hold_ns, now);
			if (r->hold_ns < HOLD_MAX_NS)
				r->hold_ns *= 2;
			return;
		}
		r->hold_ns = 0;
		if (now - r->z_since >= WH_ZRATE_REFRESH_MS * WH_NS_PER_MS)
			end_trial(r, 0, now); /* measure raw again */
		return;
	}
	/* raw: the same wall-clock measure, for the trial to beat */
	if (window(r, file, now, &sample)) {
		r->raw_wall = sample;
		r->fresh = true;
	}
	if (backlogged && file == wire)
		r->bytes += wire;
	if (r->busy_ns < RATE_SAMPLE_NS || r->bytes < RATE_SAMPLE_BYTES)
		return;
	sample = (double)r->bytes * 1e9 / (double)r->busy_ns;
	r->rate = sample > r->rate ? sample : r->rate * 0.5 + sample * 0.5;
	r->bytes = 0;
	r->busy_ns = 0;
}

double wh_zrate_get(const struct wh_zrate *r)
{
	return r->rate;
}

bool wh_zrate_allow(const struct wh_zrate *r, uint64_t now)
{
	return r->rate > 0 && (r->fresh || r->trying) && now >= r->hold_until;
}
