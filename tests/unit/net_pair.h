/*
 * net_pair.h - what the endpoint tests (test_quic.c over wh_quic.h,
 * test_net.c over wh_net.h) share: a loopback address, the byte pattern
 * they send, a stream's gathered bytes, and the loop that drives one or
 * two endpoints of either kind from the test's one thread.
 */
#ifndef NET_PAIR_H
#define NET_PAIR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* how to drive an endpoint of one kind */
struct np_ops {
	int (*fd)(void *ep);
	int (*timeout_ms)(void *ep);
	/* read when |readable|, then run the due timers and send */
	void (*service)(void *ep, bool readable);
};

extern const struct np_ops np_quic; /* struct wh_quic_ep */
extern const struct np_ops np_net;  /* struct wh_net_ep */

/* np_drive - wait up to |ms| (less when a timer is due sooner) for |a|
 * or, unless NULL, |b|, then service both */
void np_drive(const struct np_ops *ops, void *a, void *b, int ms);
/* np_run_until - np_drive in steps of 20 ms until |*flag| or |max_ms| */
void np_run_until(const struct np_ops *ops, void *a, void *b,
		  const bool *flag, int max_ms);

/* np_loopback - 127.0.0.1, port 0 */
void np_loopback(struct sockaddr_in *a);

/* np_pattern - |len| bytes of the pattern the tests send and check;
 * the caller frees them */
uint8_t *np_pattern(size_t len);

/* the bytes of a stream gathered until its FIN */
struct np_buf {
	uint8_t *buf;
	size_t len;
};

void np_buf_add(struct np_buf *b, const uint8_t *data, size_t len);

#endif /* NET_PAIR_H */
