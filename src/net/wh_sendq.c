/*
 * wh_sendq.c - the reply send queue: small ones first, each in the order
 * it came (wh_sendq.h).
 */
#include "net/wh_sendq.h"

void wh_sendq_push(struct wh_sendq *q, struct wh_sendq_item *it,
		   uint64_t unsent)
{
	if (it->queued)
		return;
	it->queued = true;
	it->next = NULL;
	if (unsent <= WH_SENDQ_SMALL) {
		struct wh_sendq_item **pp = q->small ? &q->small->next
						     : &q->head;

		it->next = *pp;
		*pp = it;
		if (q->tail == q->small)
			q->tail = it;
		q->small = it;
		return;
	}
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
}

struct wh_sendq_item *wh_sendq_pop(struct wh_sendq *q)
{
	struct wh_sendq_item *it = q->head;

	if (!it)
		return NULL;
	q->head = it->next;
	if (!q->head)
		q->tail = NULL;
	if (q->small == it)
		q->small = NULL; /* the small ones come first */
	it->next = NULL;
	it->queued = false;
	return it;
}

void wh_sendq_remove(struct wh_sendq *q, struct wh_sendq_item *it)
{
	struct wh_sendq_item **pp = &q->head, *prev = NULL;

	if (!it->queued)
		return;
	while (*pp && *pp != it) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp) {
		*pp = it->next;
		if (q->tail == it)
			q->tail = prev;
		if (q->small == it)
			q->small = prev;
	}
	it->next = NULL;
	it->queued = false;
}
