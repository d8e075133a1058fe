/*
 * wh_window.c - the request window of a bulk copy (see wh_window.h).
 */
#include "client/wh_window.h"

#include <string.h>

#define GAIN 2
#define IVL_MIN_NS 20000000ULL /* 20 ms: enough completions to count */
#define IVL_RTTS 4             /* an interval is at least 4 RTTs */
#define NBEST (sizeof(((struct wh_window *)0)->best) / sizeof(uint64_t))

void wh_window_init(struct wh_window *w, unsigned min, unsigned max,
		    uint64_t max_bytes)
{
	memset(w, 0, sizeof(*w));
	if (max < 1)
		max = 1;
	if (min < 1)
		min = 1;
	if (min > max)
		min = max;
	w->min = min;
	w->max = max;
	w->max_bytes = max_bytes;
	w->cur = min;
}

static uint64_t best_rate(const struct wh_window *w)
{
	uint64_t r = 0;

	for (unsigned i = 0; i < w->nbest; i++)
		if (w->best[i] > r)
			r = w->best[i];
	return r;
}

static void update(struct wh_window *w)
{
	/* bytes in flight that cover GAIN x rate x rtt, in requests */
	unsigned __int128 want =
		(unsigned __int128)w->rate_bps * w->rtt_ns * GAIN / 1000000000U;
	uint64_t n, cap = w->max;

	if (w->avg_bytes == 0)
		return;
	n = (uint64_t)((want + w->avg_bytes - 1) / w->avg_bytes);
	if (w->max_bytes && w->max_bytes / w->avg_bytes < cap)
		cap = w->max_bytes / w->avg_bytes;
	if (n > cap)
		n = cap;
	if (n < w->min)
		n = w->min;
	w->cur = (unsigned)n;
}

void wh_window_sample(struct wh_window *w, uint64_t bytes,
		      uint64_t latency_ns, uint64_t now_ns)
{
	uint64_t ivl;

	if (latency_ns == 0)
		latency_ns = 1;
	if (w->rtt_ns == 0 || latency_ns < w->rtt_ns)
		w->rtt_ns = latency_ns;
	w->avg_bytes = w->avg_bytes ? (w->avg_bytes * 7 + bytes) / 8 : bytes;
	if (w->avg_bytes == 0)
		w->avg_bytes = 1;
	if (w->ivl_start_ns == 0) {
		/* the first interval starts when this request was sent */
		w->ivl_start_ns = now_ns > latency_ns ? now_ns - latency_ns : 1;
	}
	w->ivl_bytes += bytes;
	ivl = w->rtt_ns * IVL_RTTS;
	if (ivl < IVL_MIN_NS)
		ivl = IVL_MIN_NS;
	if (now_ns < w->ivl_start_ns + ivl)
		return;
	/* an interval ended: its delivery rate joins the last few */
	if (w->nbest == NBEST)
		memmove(w->best, w->best + 1, (NBEST - 1) * sizeof(w->best[0]));
	else
		w->nbest++;
	w->best[w->nbest - 1] =
		(uint64_t)((unsigned __int128)w->ivl_bytes * 1000000000U /
			   (now_ns - w->ivl_start_ns));
	w->rate_bps = best_rate(w);
	w->ivl_start_ns = now_ns;
	w->ivl_bytes = 0;
	update(w);
}
