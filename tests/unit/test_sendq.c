/*
 * test_sendq.c - the reply send queue both transports serve streams by:
 * small replies (at most 64 KiB when they join) first, each in the order
 * it joined, then the large ones in theirs; the head stays until it is
 * popped; a stream popped while blocked on its credit joins again by what
 * it has left when it is pushed again; a removed one leaves the order of
 * the others as it was.  Pure data structure: no I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "net/wh_sendq.h"

#define NSTREAM 8

struct stream {
	int id;
	uint64_t unsent;
	struct wh_sendq_item sq;
};

static struct stream st[NSTREAM];

static int setup(void **state)
{
	(void)state;
	for (int i = 0; i < NSTREAM; i++) {
		st[i] = (struct stream){0};
		st[i].id = i;
	}
	return 0;
}

static void push(struct wh_sendq *q, int id, uint64_t unsent)
{
	st[id].unsent = unsent;
	wh_sendq_push(q, &st[id].sq, unsent);
}

static int head_id(const struct wh_sendq *q)
{
	struct wh_sendq_item *it = wh_sendq_head(q);

	return it ? wh_sendq_entry(it, struct stream, sq)->id : -1;
}

static int pop_id(struct wh_sendq *q)
{
	struct wh_sendq_item *it = wh_sendq_pop(q);

	if (!it)
		return -1;
	assert_false(it->queued);
	assert_null(it->next);
	return wh_sendq_entry(it, struct stream, sq)->id;
}

/* pop everything: the ids must come in |want|'s order, then none */
static void assert_drains(struct wh_sendq *q, const int *want, int n)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(pop_id(q), want[i]);
	assert_int_equal(pop_id(q), -1);
	assert_null(q->head);
	assert_null(q->tail);
	assert_null(q->small);
}

static void test_empty(void **state)
{
	struct wh_sendq q = {0};

	(void)state;
	assert_int_equal(head_id(&q), -1);
	assert_int_equal(pop_id(&q), -1);
	wh_sendq_remove(&q, &st[0].sq); /* not queued: nothing */
	assert_int_equal(head_id(&q), -1);
}

/* the TCP test's case (test_tls_tcp.c, test_replies_in_order) and the
 * edges of "small": 64 KiB is small, one byte more is not, nothing (a
 * lone FIN) is */
static void test_small_first_in_order(void **state)
{
	struct wh_sendq q = {0};
	const int want[] = {3, 4, 6, 1, 2, 5};

	(void)state;
	push(&q, 1, 300000);
	push(&q, 2, 200000);
	push(&q, 3, 40000);
	push(&q, 4, WH_SENDQ_SMALL);
	push(&q, 5, WH_SENDQ_SMALL + 1);
	push(&q, 6, 0);
	assert_int_equal(head_id(&q), 3);
	assert_drains(&q, want, 6);
}

/* a second push of a queued stream changes nothing, even if what it has
 * to send has grown past small or shrunk below it */
static void test_push_twice(void **state)
{
	struct wh_sendq q = {0};
	const int want[] = {2, 1, 3};

	(void)state;
	push(&q, 1, 100000);
	push(&q, 2, 100);
	push(&q, 3, 200000);
	push(&q, 2, 500000);
	push(&q, 3, 10);
	push(&q, 1, 100000);
	assert_drains(&q, want, 3);
}

/* the head is served until popped: pushing large ones leaves it there; a
 * small one that comes while a large head is being served goes ahead of
 * it, after any other small ones */
static void test_head_stays_small_overtakes(void **state)
{
	struct wh_sendq q = {0};
	const int want[] = {4, 5, 1, 2, 3};

	(void)state;
	push(&q, 1, 1 << 20);
	push(&q, 2, 1 << 20);
	assert_int_equal(head_id(&q), 1);
	push(&q, 3, 1 << 20);
	assert_int_equal(head_id(&q), 1);
	push(&q, 4, 1000);
	assert_int_equal(head_id(&q), 4);
	push(&q, 5, 2000);
	assert_int_equal(head_id(&q), 4);
	assert_drains(&q, want, 5);
}

/* a head blocked on its own credit is popped and the next goes on; when
 * credit comes it is pushed again by what it has left: large, behind the
 * other large ones; small, with the small ones */
static void test_blocked_requeued(void **state)
{
	struct wh_sendq q = {0};
	const int want_large[] = {3, 2, 1};
	const int want_small[] = {3, 1, 2};

	(void)state;
	push(&q, 1, 200000);
	push(&q, 2, 200000);
	assert_int_equal(pop_id(&q), 1); /* blocked after its window */
	push(&q, 3, 30000);
	assert_int_equal(head_id(&q), 3);
	push(&q, 1, 200000 - 65536);
	assert_drains(&q, want_large, 3);

	push(&q, 1, 200000);
	push(&q, 2, 200000);
	assert_int_equal(pop_id(&q), 1);
	push(&q, 3, 30000);
	push(&q, 1, 20000); /* what it has left is small now */
	assert_drains(&q, want_small, 3);
}

/* a stream reset or closed leaves the queue from wherever it is; the
 * others keep their order and the small/large boundary stays right */
static void test_remove(void **state)
{
	struct wh_sendq q = {0};
	const int want_a[] = {1, 6, 4};
	const int want_b[] = {7, 1};

	(void)state;
	push(&q, 1, 10);     /* small */
	push(&q, 2, 20);     /* small, the last of them */
	push(&q, 3, 100000); /* large */
	push(&q, 4, 200000); /* large, the tail */
	wh_sendq_remove(&q, &st[2].sq);
	assert_false(st[2].sq.queued);
	assert_null(st[2].sq.next);
	wh_sendq_remove(&q, &st[2].sq); /* twice: nothing */
	push(&q, 6, 30);     /* small: after 1, where 2 was */
	wh_sendq_remove(&q, &st[3].sq); /* the middle of the large ones */
	assert_drains(&q, want_a, 3);

	push(&q, 1, 300000);
	push(&q, 2, 400000);
	wh_sendq_remove(&q, &st[2].sq); /* the tail */
	push(&q, 3, 40);
	wh_sendq_remove(&q, &st[3].sq); /* the only small one, the head */
	push(&q, 7, 50);
	assert_int_equal(head_id(&q), 7);
	assert_drains(&q, want_b, 2);

	push(&q, 5, 10);
	wh_sendq_remove(&q, &st[5].sq); /* the only one */
	assert_drains(&q, NULL, 0);
	push(&q, 5, 10); /* and all is as new */
	push(&q, 4, 1 << 20);
	assert_int_equal(pop_id(&q), 5);
	assert_int_equal(pop_id(&q), 4);
}

/* all small: the tail follows the last small one; then a large one goes
 * behind them all */
static void test_all_small_then_large(void **state)
{
	struct wh_sendq q = {0};
	const int want[] = {1, 2, 3, 4};

	(void)state;
	push(&q, 1, 1);
	push(&q, 2, 2);
	push(&q, 3, 3);
	assert_ptr_equal(q.tail, &st[3].sq);
	assert_ptr_equal(q.small, &st[3].sq);
	push(&q, 4, WH_SENDQ_SMALL * 2);
	assert_ptr_equal(q.tail, &st[4].sq);
	assert_ptr_equal(q.small, &st[3].sq);
	assert_drains(&q, want, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_empty, setup),
		cmocka_unit_test_setup(test_small_first_in_order, setup),
		cmocka_unit_test_setup(test_push_twice, setup),
		cmocka_unit_test_setup(test_head_stays_small_overtakes, setup),
		cmocka_unit_test_setup(test_blocked_requeued, setup),
		cmocka_unit_test_setup(test_remove, setup),
		cmocka_unit_test_setup(test_all_small_then_large, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
