/*
 * wh_window.h - how many requests to keep in flight, from what is
 * measured.
 *
 * A bulk copy wants enough bytes in flight to cover the bandwidth-delay
 * product of the path (plus the host's disk and hashing latency, which
 * look the same from here), and no more: more only fills buffers and
 * memory.  The window follows two estimates, as BBR does for packets:
 *
 *   rtt   the smallest latency of any request (request sent to whole reply
 *         received), over the whole copy;
 *   rate  the best delivery rate seen over recent intervals of a few RTTs
 *         (bytes completed / interval).
 *
 * and keeps  window = gain x rate x rtt  bytes in flight, with gain 2: a
 * window too small to fill the path measures a rate of about window / rtt,
 * so the next window doubles, until the rate stops growing because the
 * path is full; it then settles near twice the bandwidth-delay product.
 * Requests are counted in units of the average reply size seen.  The
 * window never goes under |min| requests nor over |max| requests or
 * |max_bytes| bytes.
 *
 * Pure arithmetic on the caller's timestamps: no clock, no threads (the
 * caller locks).  Unit-tested against a simulated path.
 */
#ifndef WH_WINDOW_H
#define WH_WINDOW_H

#include <stdint.h>

struct wh_window {
	/* limits (set by wh_window_init) */
	unsigned min, max;
	uint64_t max_bytes;
	/* estimates */
	uint64_t rtt_ns;      /* smallest latency seen; 0 = none yet */
	uint64_t rate_bps;    /* best recent delivery rate, bytes/s */
	uint64_t avg_bytes;   /* moving average of reply sizes */
	/* the current rate interval */
	uint64_t ivl_start_ns;
	uint64_t ivl_bytes;
	/* best rates of the last intervals (a short max filter) */
	uint64_t best[4];
	unsigned nbest;
	unsigned cur;         /* the window, in requests */
};

/* wh_window_init - start at |min| requests in flight (at least 1, at most
 * |max|); |max_bytes| 0 means no byte limit. */
void wh_window_init(struct wh_window *w, unsigned min, unsigned max,
		    uint64_t max_bytes);

/* wh_window_sample - a request of |bytes| completed at |now_ns| after
 * |latency_ns|; updates the estimates and the window. */
void wh_window_sample(struct wh_window *w, uint64_t bytes,
		      uint64_t latency_ns, uint64_t now_ns);

/* wh_window_get - requests that may be in flight now. */
static inline unsigned wh_window_get(const struct wh_window *w)
{
	return w->cur;
}

#endif /* WH_WINDOW_H */
