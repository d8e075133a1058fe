/* wh_sig.c - signal protocol datagrams: encode and decode. */
#include "proto/wh_sig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "common/wh_err.h"

static const uint8_t sig_magic[WH_SIG_MAGIC_LEN] = { 0x00, 'W', 'S', 0x01 };

bool wh_sig_is_sig(const uint8_t *data, size_t len)
{
	return len >= WH_SIG_MAGIC_LEN &&
	       memcmp(data, sig_magic, WH_SIG_MAGIC_LEN) == 0;
}

/* ------------------------------------------------------------ writer */

struct wr {
	uint8_t *p;
	size_t cap, len;
	bool over;
};

static void put(struct wr *w, const void *data, size_t n)
{
	if (w->over || w->cap - w->len < n) {
		w->over = true;
		return;
	}
	memcpy(w->p + w->len, data, n);
	w->len += n;
}

static void put_u8(struct wr *w, uint8_t v)
{
	put(w, &v, 1);
}

static void put_u16(struct wr *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put(w, b, 2);
}

static bool addr_valid(const struct wh_sig_addr *a)
{
	return (a->family == 4 || a->family == 6) && a->port != 0;
}

static bool put_addr(struct wr *w, const struct wh_sig_addr *a)
{
	if (!addr_valid(a))
		return false;
	put_u8(w, a->family);
	put_u16(w, a->port);
	put(w, a->ip, a->family == 4 ? 4 : 16);
	return true;
}

static bool put_cands(struct wr *w, const struct wh_sig_msg *m)
{
	if (m->ncand > WH_SIG_MAX_CANDS)
		return false;
	put_u8(w, m->ncand);
	for (unsigned i = 0; i < m->ncand; i++)
		if (!put_addr(w, &m->cand[i]))
			return false;
	return true;
}

int wh_sig_encode(const struct wh_sig_msg *m, uint8_t *out, size_t cap)
{
	struct wr w = { .p = out, .cap = cap < WH_SIG_MAX_DGRAM
						? cap : WH_SIG_MAX_DGRAM };
	bool ok = true;

	put(&w, sig_magic, sizeof(sig_magic));
	put_u8(&w, m->type);
	switch (m->type) {
	case WH_SIG_REGISTER:
		put(&w, m->room, WH_SIG_ROOM_LEN);
		put(&w, m->token, WH_SIG_TOKEN_LEN);
		put(&w, m->txn, WH_SIG_TXN_LEN);
		ok = put_cands(&w, m);
		break;
	case WH_SIG_REGISTERED:
		put(&w, m->txn, WH_SIG_TXN_LEN);
		put_u16(&w, m->ttl_s);
		ok = put_addr(&w, &m->refl);
		break;
	case WH_SIG_UNREGISTER:
		put(&w, m->room, WH_SIG_ROOM_LEN);
		put(&w, m->token, WH_SIG_TOKEN_LEN);
		put(&w, m->txn, WH_SIG_TXN_LEN);
		break;
	case WH_SIG_JOIN:
	case WH_SIG_PEER_JOIN:
		put(&w, m->room, WH_SIG_ROOM_LEN);
		put(&w, m->txn, WH_SIG_TXN_LEN);
		ok = put_cands(&w, m);
		break;
	case WH_SIG_PEERS:
		put(&w, m->txn, WH_SIG_TXN_LEN);
		ok = put_addr(&w, &m->refl) && put_cands(&w, m);
		break;
	case WH_SIG_ERROR:
		put(&w, m->txn, WH_SIG_TXN_LEN);
		put_u8(&w, m->code);
		break;
	case WH_SIG_PUNCH:
		put(&w, m->room, WH_SIG_ROOM_LEN);
		put(&w, m->txn, WH_SIG_TXN_LEN);
		put_u8(&w, m->ack ? 1 : 0);
		break;
	default:
		return WH_ERR_PROTO;
	}
	if (!ok)
		return WH_ERR_PROTO;
	if (w.over)
		return WH_ERR_TOOBIG;
	return (int)w.len;
}

/* ------------------------------------------------------------ reader */

struct rd {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static void get(struct rd *r, void *out, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		memset(out, 0, n);
		return;
	}
	memcpy(out, r->p + r->off, n);
	r->off += n;
}

static uint8_t get_u8(struct rd *r)
{
	uint8_t v;

	get(r, &v, 1);
	return v;
}

static uint16_t get_u16(struct rd *r)
{
	uint8_t b[2];

	get(r, b, 2);
	return (uint16_t)(b[0] << 8 | b[1]);
}

static void get_addr(struct rd *r, struct wh_sig_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = get_u8(r);
	a->port = get_u16(r);
	if (r->bad || !addr_valid(a)) {
		r->bad = true;
		return;
	}
	get(r, a->ip, a->family == 4 ? 4 : 16);
}

static void get_cands(struct rd *r, struct wh_sig_msg *m)
{
	m->ncand = get_u8(r);
	if (m->ncand > WH_SIG_MAX_CANDS) {
		r->bad = true;
		return;
	}
	for (unsigned i = 0; i < m->ncand && !r->bad; i++)
		get_addr(r, &m->cand[i]);
}

int wh_sig_decode(const uint8_t *data, size_t len, struct wh_sig_msg *m)
{
	struct rd r = { .p = data, .len = len };
	uint8_t flag;

	memset(m, 0, sizeof(*m));
	if (len > WH_SIG_MAX_DGRAM)
		return WH_ERR_TOOBIG;
	if (!wh_sig_is_sig(data, len))
		return WH_ERR_PROTO;
	r.off = WH_SIG_MAGIC_LEN;
	m->type = get_u8(&r);
	switch (m->type) {
	case WH_SIG_REGISTER:
		get(&r, m->room, WH_SIG_ROOM_LEN);
		get(&r, m->token, WH_SIG_TOKEN_LEN);
		get(&r, m->txn, WH_SIG_TXN_LEN);
		get_cands(&r, m);
		break;
	case WH_SIG_REGISTERED:
		get(&r, m->txn, WH_SIG_TXN_LEN);
		m->ttl_s = get_u16(&r);
		get_addr(&r, &m->refl);
		break;
	case WH_SIG_UNREGISTER:
		get(&r, m->room, WH_SIG_ROOM_LEN);
		get(&r, m->token, WH_SIG_TOKEN_LEN);
		get(&r, m->txn, WH_SIG_TXN_LEN);
		break;
	case WH_SIG_JOIN:
	case WH_SIG_PEER_JOIN:
		get(&r, m->room, WH_SIG_ROOM_LEN);
		get(&r, m->txn, WH_SIG_TXN_LEN);
		get_cands(&r, m);
		break;
	case WH_SIG_PEERS:
		get(&r, m->txn, WH_SIG_TXN_LEN);
		get_addr(&r, &m->refl);
		get_cands(&r, m);
		break;
	case WH_SIG_ERROR:
		get(&r, m->txn, WH_SIG_TXN_LEN);
		m->code = get_u8(&r);
		break;
	case WH_SIG_PUNCH:
		get(&r, m->room, WH_SIG_ROOM_LEN);
		get(&r, m->txn, WH_SIG_TXN_LEN);
		flag = get_u8(&r);
		if (flag > 1)
			r.bad = true;
		m->ack = flag == 1;
		break;
	default:
		return WH_ERR_PROTO;
	}
	if (r.bad || r.off != len)
		return WH_ERR_PROTO;
	return 0;
}

/* --------------------------------------------------------- addresses */

int wh_sig_addr_from_sa(const struct sockaddr *sa, struct wh_sig_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		a->family = 4;
		a->port = ntohs(in->sin_port);
		memcpy(a->ip, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		a->port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			a->family = 4;
			memcpy(a->ip, in6->sin6_addr.s6_addr + 12, 4);
		} else {
			a->family = 6;
			memcpy(a->ip, &in6->sin6_addr, 16);
		}
	} else {
		return WH_ERR_ADDR;
	}
	return a->port ? 0 : WH_ERR_ADDR;
}

socklen_t wh_sig_addr_to_sa(const struct wh_sig_addr *a,
			    struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == 4) {
		struct sockaddr_in *in = (void *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->ip, 4);
		return sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (void *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		memcpy(&in6->sin6_addr, a->ip, 16);
		return sizeof(*in6);
	}
}

bool wh_sig_addr_eq(const struct wh_sig_addr *a, const struct wh_sig_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       memcmp(a->ip, b->ip, a->family == 4 ? 4 : 16) == 0;
}

char *wh_sig_addr_str(const struct wh_sig_addr *a, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->ip, ip, sizeof(ip));
	if (a->family == 4)
		snprintf(buf, size, "%s:%u", ip, a->port);
	else
		snprintf(buf, size, "[%s]:%u", ip, a->port);
	return buf;
}
