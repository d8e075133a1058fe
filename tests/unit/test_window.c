/*
 * test_window.c - the request window of a bulk copy, driven against a
 * simulated path: a bottleneck of B bytes/s (replies serialized one after
 * the other) and a base round trip T.  The copy keeps as many requests in
 * flight as the window says; the window must fill the path (the delivered
 * rate comes close to B) without growing far past the bandwidth-delay
 * product, and must respect its limits.  Simulated time: deterministic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "client/wh_window.h"

#define NS 1000000000ULL
#define MAXQ 1024

struct sim {
	double bw;       /* bytes per second at the bottleneck */
	double rtt;      /* seconds */
	uint64_t size;   /* bytes per reply */
	double link_free;
	double sent[MAXQ], done[MAXQ];
	unsigned n;
	unsigned peak;   /* the largest window used */
};

/* send one request at |now|: it reaches the host after rtt/2, its reply
 * waits for the bottleneck, takes size/bw on it, and arrives rtt/2 later */
static void sim_send(struct sim *s, double now)
{
	double arrive = now + s->rtt / 2, start, fin;

	start = arrive > s->link_free ? arrive : s->link_free;
	fin = start + (double)s->size / s->bw;
	s->link_free = fin;
	s->sent[s->n] = now;
	s->done[s->n] = fin + s->rtt / 2;
	s->n++;
}

/* run - copy for |secs| simulated seconds; returns the delivered rate over
 * the second half (bytes/s) */
static double run(struct sim *s, struct wh_window *w, double secs)
{
	double now = 0, half = secs / 2;
	uint64_t bytes_late = 0;

	s->n = 0;
	s->link_free = 0;
	s->peak = 0;
	while (now < secs) {
		unsigned want = wh_window_get(w), k = 0;

		if (want > s->peak)
			s->peak = want;
		while (s->n < want && s->n < MAXQ)
			sim_send(s, now);
		/* the earliest completion */
		for (unsigned i = 1; i < s->n; i++)
			if (s->done[i] < s->done[k])
				k = i;
		now = s->done[k];
		wh_window_sample(w, s->size,
				 (uint64_t)((s->done[k] - s->sent[k]) * NS),
				 (uint64_t)(now * NS) + 1);
		if (now >= half)
			bytes_late += s->size;
		s->n--;
		s->sent[k] = s->sent[s->n];
		s->done[k] = s->done[s->n];
	}
	return (double)bytes_late / (secs - half);
}

static void check_path(double bw, double rtt, uint64_t size, unsigned max)
{
	struct sim s = { .bw = bw, .rtt = rtt, .size = size };
	struct wh_window w;
	double rate, bdp_reqs;
	unsigned last;

	wh_window_init(&w, 2, max, 0);
	rate = run(&s, &w, 20);
	bdp_reqs = bw * rtt / (double)size;
	last = wh_window_get(&w);
	print_message("bw %.0f MB/s rtt %.1f ms size %llu: %.1f%% of the "
		      "path, window %u (peak %u), bdp %.1f requests\n",
		      bw / 1e6, rtt * 1e3, (unsigned long long)size,
		      100 * rate / bw, last, s.peak, bdp_reqs);
	/* the path is full */
	assert_true(rate >= 0.9 * bw);
	/* and the window is not much more than needed: twice the bdp in
	 * requests, plus the one being serialized, plus rounding */
	assert_true(last <= 2 * bdp_reqs + 4);
	assert_true(s.peak <= max);
}

static void test_fills_paths(void **state)
{
	(void)state;
	/* 100 Mbit/s, 50 ms, 1 MiB chunks (the WAN of the benchmarks) */
	check_path(12.5e6, 0.050, 1 << 20, 64);
	/* 1 Gbit/s, 1 ms */
	check_path(125e6, 0.001, 1 << 20, 64);
	/* a fast LAN, 0.2 ms (host disk latency included) */
	check_path(1.2e9, 0.0002, 1 << 20, 64);
	/* small files on the WAN: the window must grow to many requests */
	check_path(12.5e6, 0.050, 10 << 10, 256);
	/* 100 Mbit/s, 200 ms: a long fat path */
	check_path(12.5e6, 0.200, 1 << 20, 64);
}

static void test_limits(void **state)
{
	struct sim s = { .bw = 12.5e6, .rtt = 0.050, .size = 10 << 10 };
	struct wh_window w;

	(void)state;
	/* the count limit: the path wants ~61 requests, it gets 16 */
	wh_window_init(&w, 2, 16, 0);
	run(&s, &w, 10);
	assert_true(s.peak <= 16);
	assert_int_equal(wh_window_get(&w), 16);
	/* the byte limit: 100 KiB of 10 KiB requests */
	wh_window_init(&w, 2, 64, 100 << 10);
	run(&s, &w, 10);
	assert_true(s.peak <= 10);
	/* never under the minimum, even with nothing measured */
	wh_window_init(&w, 4, 64, 0);
	assert_int_equal(wh_window_get(&w), 4);
	wh_window_init(&w, 0, 0, 0);
	assert_int_equal(wh_window_get(&w), 1);
}

static void test_shrinks_when_path_slows(void **state)
{
	struct sim s = { .bw = 125e6, .rtt = 0.010, .size = 1 << 20 };
	struct wh_window w;
	unsigned fast;

	(void)state;
	wh_window_init(&w, 2, 64, 0);
	run(&s, &w, 10);
	fast = wh_window_get(&w);
	/* the same path at a tenth of the rate: the window follows down */
	s.bw = 12.5e6;
	run(&s, &w, 20);
	assert_true(wh_window_get(&w) < fast);
	assert_true(wh_window_get(&w) <= 2 * (12.5e6 * 0.010) / (1 << 20) + 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fills_paths),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_shrinks_when_path_slows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
