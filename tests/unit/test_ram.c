/*
 * test_ram.c - the RAM chunk cache: single-flight filling, waiting with a
 * deadline, failure, LRU eviction under the limit, referenced entries kept,
 * block reuse, and many threads at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_err.h"
#include "common/wh_time.h"
#include "store/wh_ram.h"

static void key_of(unsigned int n, uint8_t key[WH_RAM_KEY_LEN])
{
	memset(key, 0, WH_RAM_KEY_LEN);
	for (int i = 0; i < WH_RAM_KEY_LEN; i++)
		key[i] = (uint8_t)(n * 131 + (unsigned int)i * 7 + (n >> 8));
	memcpy(key + 16, &n, sizeof(n));
}

/* fill_with - fill pending |e| with |len| bytes of |c| */
static void fill_with(struct wh_ram *r, struct wh_ram_ent *e, size_t len,
		      int c)
{
	size_t cap;
	uint8_t *mem = wh_ram_alloc(r, len, &cap);

	assert_non_null(mem);
	assert_true(cap >= len);
	memset(mem, c, len);
	wh_ram_fill(r, e, mem, cap, mem, len);
}

static void test_single_flight(void **state)
{
	struct wh_ram *r;
	struct wh_ram_ent *a, *b, *c;
	struct wh_ram_stats st;
	uint8_t k[WH_RAM_KEY_LEN];

	(void)state;
	key_of(1, k);
	assert_int_equal(wh_ram_new(1 << 20, &r), 0);
	assert_int_equal(wh_ram_acquire(r, k, false, &a), -ENOENT);
	assert_null(a);
	assert_int_equal(wh_ram_acquire(r, k, true, &a), 1); /* ours */
	assert_false(wh_ram_ready(r, a));
	assert_int_equal(wh_ram_acquire(r, k, true, &b), 0); /* same one */
	assert_ptr_equal(a, b);
	/* nobody fills it yet: the wait ends at its deadline */
	assert_int_equal(wh_ram_wait(r, b, wh_now_ns() + 20 * WH_NS_PER_MS),
			 WH_ERR_TIMEOUT);
	fill_with(r, a, 1000, 'x');
	assert_int_equal(wh_ram_wait(r, b, wh_now_ns()), 0);
	assert_true(wh_ram_ready(r, b));
	assert_int_equal(wh_ram_len(b), 1000);
	assert_int_equal(wh_ram_data(b)[999], 'x');
	assert_int_equal(wh_ram_acquire(r, k, false, &c), 0);
	assert_ptr_equal(c, a);
	wh_ram_put(r, a);
	wh_ram_put(r, b);
	wh_ram_put(r, c);
	wh_ram_put(r, NULL);
	wh_ram_get_stats(r, &st);
	assert_int_equal(st.entries, 1);
	assert_true(st.bytes >= 1000);
	assert_int_equal(st.hits, 2);
	wh_ram_del(r);
}

static void test_fail(void **state)
{
	struct wh_ram *r;
	struct wh_ram_ent *a, *b, *c;
	uint8_t k[WH_RAM_KEY_LEN];

	(void)state;
	key_of(2, k);
	assert_int_equal(wh_ram_new(1 << 20, &r), 0);
	assert_int_equal(wh_ram_acquire(r, k, true, &a), 1);
	assert_int_equal(wh_ram_acquire(r, k, true, &b), 0);
	wh_ram_fail(r, a, -ESTALE);
	assert_int_equal(wh_ram_wait(r, b, wh_now_ns() + WH_NS_PER_S),
			 -ESTALE);
	/* gone from the table: the next one starts afresh */
	assert_int_equal(wh_ram_acquire(r, k, true, &c), 1);
	assert_ptr_not_equal(c, a);
	wh_ram_put(r, a);
	wh_ram_put(r, b);
	fill_with(r, c, 10, 'y');
	wh_ram_put(r, c);
	wh_ram_del(r);
}

static void test_lru_and_refs(void **state)
{
	struct wh_ram *r;
	struct wh_ram_ent *e, *held;
	struct wh_ram_stats st;
	uint8_t k[WH_RAM_KEY_LEN];

	(void)state;
	/* room for four 1000-byte entries */
	assert_int_equal(wh_ram_new(4000, &r), 0);
	for (unsigned int i = 0; i < 4; i++) {
		key_of(100 + i, k);
		assert_int_equal(wh_ram_acquire(r, k, true, &e), 1);
		fill_with(r, e, 1000, (int)i);
		wh_ram_put(r, e);
	}
	/* touch the oldest, hold the second */
	key_of(100, k);
	assert_int_equal(wh_ram_acquire(r, k, false, &e), 0);
	wh_ram_put(r, e);
	key_of(101, k);
	assert_int_equal(wh_ram_acquire(r, k, false, &held), 0);
	/* two more: the least recently used unheld ones go (102, 103) */
	for (unsigned int i = 4; i < 6; i++) {
		key_of(100 + i, k);
		assert_int_equal(wh_ram_acquire(r, k, true, &e), 1);
		fill_with(r, e, 1000, (int)i);
		wh_ram_put(r, e);
	}
	wh_ram_get_stats(r, &st);
	assert_int_equal(st.evictions, 2);
	assert_true(st.bytes <= 4000);
	key_of(102, k);
	assert_int_equal(wh_ram_acquire(r, k, false, &e), -ENOENT);
	key_of(103, k);
	assert_int_equal(wh_ram_acquire(r, k, false, &e), -ENOENT);
	key_of(100, k);
	assert_int_equal(wh_ram_acquire(r, k, false, &e), 0);
	wh_ram_put(r, e);
	/* a held entry stays readable even when everything is dropped */
	wh_ram_drop_all(r);
	assert_int_equal(wh_ram_data(held)[0], 1);
	assert_int_equal(wh_ram_len(held), 1000);
	wh_ram_get_stats(r, &st);
	assert_int_equal(st.entries, 1);
	wh_ram_put(r, held);
	wh_ram_drop_all(r);
	wh_ram_get_stats(r, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	wh_ram_del(r);
}

static void test_pool_reuse(void **state)
{
	struct wh_ram *r;
	struct wh_ram_ent *e;
	uint8_t k[WH_RAM_KEY_LEN];
	size_t cap, cap2;
	void *first, *again, *big;

	(void)state;
	assert_int_equal(wh_ram_new(1 << 20, &r), 0);
	key_of(7, k);
	assert_int_equal(wh_ram_acquire(r, k, true, &e), 1);
	first = wh_ram_alloc(r, 100000, &cap);
	assert_non_null(first);
	wh_ram_fill(r, e, first, cap, first, 100000);
	wh_ram_put(r, e);
	wh_ram_drop_all(r); /* the block goes to the pool ... */
	again = wh_ram_alloc(r, 90000, &cap2); /* ... and comes back */
	assert_ptr_equal(again, first);
	assert_int_equal(cap2, cap);
	wh_ram_free(r, again, cap2);
	/* not for a need of less than half its size */
	big = wh_ram_alloc(r, 10000, &cap2);
	assert_ptr_not_equal(big, first);
	free(big);
	wh_ram_del(r);
}

struct race {
	struct wh_ram *r;
	int made; /* entries this thread filled */
};

static void *racer(void *arg)
{
	struct race *x = arg;
	uint8_t k[WH_RAM_KEY_LEN];

	for (unsigned int i = 0; i < 2000; i++) {
		struct wh_ram_ent *e;
		int rv;

		key_of(i % 64, k);
		rv = wh_ram_acquire(x->r, k, true, &e);
		if (rv == 1) {
			fill_with(x->r, e, 512 + (i % 64), (int)(i % 64));
			x->made++;
		} else if (rv != 0) {
			return (void *)1;
		}
		if (wh_ram_wait(x->r, e, wh_now_ns() + 5 * WH_NS_PER_S) != 0 ||
		    wh_ram_len(e) != 512 + (i % 64) ||
		    wh_ram_data(e)[0] != (uint8_t)(i % 64)) {
			wh_ram_put(x->r, e);
			return (void *)1;
		}
		wh_ram_put(x->r, e);
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct race x[4];
	pthread_t t[4];
	struct wh_ram *r;
	struct wh_ram_stats st;

	(void)state;
	/* small: entries come and go while others wait for them */
	assert_int_equal(wh_ram_new(16 * 1024, &r), 0);
	for (int i = 0; i < 4; i++) {
		x[i].r = r;
		x[i].made = 0;
		assert_int_equal(pthread_create(&t[i], NULL, racer, &x[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *rv;

		pthread_join(t[i], &rv);
		assert_null(rv);
	}
	wh_ram_get_stats(r, &st);
	assert_true(st.bytes <= 16 * 1024);
	wh_ram_del(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_flight),
		cmocka_unit_test(test_fail),
		cmocka_unit_test(test_lru_and_refs),
		cmocka_unit_test(test_pool_reuse),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
