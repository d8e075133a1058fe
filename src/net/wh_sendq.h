/*
 * wh_sendq.h - the order a connection's streams send their replies in,
 * shared by both transports (wh_quic.c, wh_tls_tcp.c).
 *
 * A stream with little to send (at most WH_SENDQ_SMALL bytes when it joins
 * the queue: a small READ's reply, a control frame) goes ahead of every
 * large one, after the small ones before it; a large one joins the end.
 * The transport serves the head until it has sent everything or is
 * blocked on its own flow-control credit; then it pops it (a blocked
 * stream is pushed again when credit comes) and the next one goes on.  So
 * large replies go one after another, not a packet of each in turn: with
 * eight 1 MiB chunks in flight, round robin finished all eight together
 * at the end of the 8 MiB, and the client, which verifies, writes and
 * asks for the next chunk only when one is complete, had nothing to do
 * until then and then everything at once while the path went idle; in
 * order, one completes every eighth of the time and its successor is
 * asked for while the others are still coming.
 *
 * Intrusive: a stream embeds a struct wh_sendq_item and gets back to
 * itself with wh_sendq_entry().  No allocation; a push or pop is O(1), a
 * remove walks the queue.
 */
#ifndef WH_SENDQ_H
#define WH_SENDQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WH_SENDQ_SMALL (64u * 1024) /* bytes a small reply has at most */

struct wh_sendq_item {
	struct wh_sendq_item *next;
	bool queued;
};

/* All zero is an empty queue. */
struct wh_sendq {
	struct wh_sendq_item *head, *tail;
	struct wh_sendq_item *small; /* the last small one, NULL if none */
};

/* the struct of type |type| whose member |member| is |item| (not NULL) */
#define wh_sendq_entry(item, type, member) \
	((type *)(void *)((char *)(item) - offsetof(type, member)))

/* wh_sendq_push - queue |it|, which has |unsent| bytes to send, by the
 * policy above; nothing if it is queued already. */
void wh_sendq_push(struct wh_sendq *q, struct wh_sendq_item *it,
		   uint64_t unsent);

/* wh_sendq_pop - take the head off the queue; returns it, NULL if the
 * queue is empty. */
struct wh_sendq_item *wh_sendq_pop(struct wh_sendq *q);

/* wh_sendq_remove - take |it| off the queue wherever it is; nothing if it
 * is not queued. */
void wh_sendq_remove(struct wh_sendq *q, struct wh_sendq_item *it);

/* the stream to serve next, NULL if none */
static inline struct wh_sendq_item *wh_sendq_head(const struct wh_sendq *q)
{
	return q->head;
}

#endif
