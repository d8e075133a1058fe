/*
 * net_pair.c - see net_pair.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_time.h"
#include "net/wh_net.h"
#include "net/wh_quic.h"

#include "net_pair.h"

static int quic_fd(void *ep)
{
	return wh_quic_ep_fd(ep);
}

static int quic_timeout_ms(void *ep)
{
	return wh_quic_ep_timeout_ms(ep);
}

static void quic_service(void *ep, bool readable)
{
	if (readable)
		wh_quic_ep_read(ep);
	wh_quic_ep_expire(ep);
	wh_quic_ep_flush(ep);
}

const struct np_ops np_quic = {
	.fd = quic_fd,
	.timeout_ms = quic_timeout_ms,
	.service = quic_service,
};

static int net_fd(void *ep)
{
	return wh_net_ep_fd(ep);
}

static int net_timeout_ms(void *ep)
{
	return wh_net_ep_timeout_ms(ep);
}

static void net_service(void *ep, bool readable)
{
	if (readable)
		wh_net_ep_read(ep);
	wh_net_ep_expire(ep);
	wh_net_ep_flush(ep);
}

const struct np_ops np_net = {
	.fd = net_fd,
	.timeout_ms = net_timeout_ms,
	.service = net_service,
};

void np_drive(const struct np_ops *ops, void *a, void *b, int ms)
{
	void *eps[2] = { a, b };
	struct pollfd pfd[2];
	int n = b ? 2 : 1, timeout = ms;

	for (int i = 0; i < n; i++) {
		int t = ops->timeout_ms(eps[i]);

		pfd[i].fd = ops->fd(eps[i]);
		pfd[i].events = POLLIN;
		if (t >= 0 && t < timeout)
			timeout = t;
	}
	poll(pfd, (nfds_t)n, timeout);
	for (int i = 0; i < n; i++)
		ops->service(eps[i], pfd[i].revents & POLLIN);
}

void np_run_until(const struct np_ops *ops, void *a, void *b,
		  const bool *flag, int max_ms)
{
	uint64_t end = wh_now_ns() + (uint64_t)max_ms * WH_NS_PER_MS;

	while (!*flag && wh_now_ns() < end)
		np_drive(ops, a, b, 20);
}

void np_loopback(struct sockaddr_in *a)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

uint8_t *np_pattern(size_t len)
{
	uint8_t *p = malloc(len);

	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + (i >> 12));
	return p;
}

void np_buf_add(struct np_buf *b, const uint8_t *data, size_t len)
{
	b->buf = realloc(b->buf, b->len + len + 1);
	assert_non_null(b->buf);
	memcpy(b->buf + b->len, data, len);
	b->len += len;
}
