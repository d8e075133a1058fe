/* wh_sigsrv.c - the signal server's rooms and rate limits (no I/O). */
#include "signal/wh_sigsrv.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/wh_err.h"

#define PROBE 8 /* rate-limit table: slots tried per source */

struct room_node {
	struct room_node *next;
	struct wh_sig_room r;
};

struct source {
	bool used;
	uint8_t family;
	uint8_t ip[16];
	uint64_t last_ms;      /* last refill */
	uint64_t last_err_ms;  /* last ERROR RATE answer */
	uint64_t milli_tokens; /* tokens * 1000 */
};

struct wh_sigsrv {
	struct wh_sigsrv_opts o;
	struct wh_sigsrv_store store;
	uint8_t hkey[crypto_shorthash_KEYBYTES];
	struct room_node **buckets;
	size_t nbuckets; /* power of two */
	size_t nrooms;
	struct source *src;
	size_t nsrc; /* power of two */
};

void wh_sigsrv_opts_default(struct wh_sigsrv_opts *o)
{
	o->max_rooms = 10000;
	o->ttl_s = 120;
	o->rate = 20;
	o->burst = 40;
	o->max_sources = 16384;
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 16;

	while (p < n)
		p <<= 1;
	return p;
}

int wh_sigsrv_new(const struct wh_sigsrv_opts *o,
		  const struct wh_sigsrv_store *store, struct wh_sigsrv **ps)
{
	struct wh_sigsrv *s;

	if (sodium_init() < 0)
		return -EIO;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	if (s->o.max_rooms == 0)
		s->o.max_rooms = 1;
	if (s->o.burst == 0)
		s->o.burst = 1;
	if (store)
		s->store = *store;
	randombytes_buf(s->hkey, sizeof(s->hkey));
	s->nbuckets = pow2_at_least(s->o.max_rooms);
	s->nsrc = pow2_at_least(s->o.max_sources);
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	s->src = calloc(s->nsrc, sizeof(*s->src));
	if (!s->buckets || !s->src) {
		wh_sigsrv_del(s);
		return -ENOMEM;
	}
	*ps = s;
	return 0;
}

void wh_sigsrv_del(struct wh_sigsrv *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->buckets && i < s->nbuckets; i++) {
		struct room_node *n = s->buckets[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(n);
		}
	}
	free(s->buckets);
	free(s->src);
	free(s);
}

static uint64_t keyed(const struct wh_sigsrv *s, const void *data, size_t len)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, data, len, s->hkey);
	memcpy(&v, h, sizeof(v));
	return v;
}

/* ------------------------------------------------------------- rooms */

static struct room_node **room_slot(const struct wh_sigsrv *s,
				    const uint8_t *room)
{
	struct room_node **pp = &s->buckets[keyed(s, room, WH_SIG_ROOM_LEN) &
					    (s->nbuckets - 1)];

	while (*pp && memcmp((*pp)->r.room, room, WH_SIG_ROOM_LEN) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void room_remove(struct wh_sigsrv *s, struct room_node **pp)
{
	struct room_node *n = *pp;

	*pp = n->next;
	s->nrooms--;
	if (s->store.del)
		s->store.del(s->store.ud, n->r.room);
	free(n);
}

const struct wh_sig_room *wh_sigsrv_find(const struct wh_sigsrv *s,
					 const uint8_t room[WH_SIG_ROOM_LEN],
					 uint64_t now_ms)
{
	struct room_node *n = *room_slot(s, room);

	return n && n->r.expires_ms > now_ms ? &n->r : NULL;
}

size_t wh_sigsrv_nrooms(const struct wh_sigsrv *s)
{
	return s->nrooms;
}

void wh_sigsrv_expire(struct wh_sigsrv *s, uint64_t now_ms)
{
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct room_node **pp = &s->buckets[i];

		while (*pp) {
			if ((*pp)->r.expires_ms <= now_ms)
				room_remove(s, pp);
			else
				pp = &(*pp)->next;
		}
	}
}

static struct room_node *room_insert(struct wh_sigsrv *s,
				     struct room_node **pp)
{
	struct room_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	*pp = n;
	s->nrooms++;
	return n;
}

int wh_sigsrv_restore(struct wh_sigsrv *s, const struct wh_sig_room *r,
		      uint64_t now_ms)
{
	struct room_node **pp, *n;

	if (r->expires_ms <= now_ms)
		return -ESTALE;
	if (r->ncand > WH_SIG_MAX_CANDS)
		return -EINVAL;
	pp = room_slot(s, r->room);
	if (*pp) {
		(*pp)->r = *r;
		return 0;
	}
	if (s->nrooms >= s->o.max_rooms)
		return -ENOSPC;
	n = room_insert(s, pp);
	if (!n)
		return -ENOMEM;
	n->r = *r;
	return 0;
}

/* ------------------------------------------------------- rate limits */

static struct source *source_get(struct wh_sigsrv *s, const struct sockaddr *sa)
{
	struct wh_sig_addr a;
	struct source *victim = NULL;
	size_t iplen, h;

	if (wh_sig_addr_from_sa(sa, &a) != 0) {
		/* port 0 or an odd family: limit it as one source */
		memset(&a, 0, sizeof(a));
		a.family = 0;
	}
	iplen = a.family == 4 ? 4 : 16;
	{
		uint8_t key[17];

		key[0] = a.family;
		memcpy(key + 1, a.ip, 16);
		h = keyed(s, key, 1 + iplen);
	}
	for (unsigned i = 0; i < PROBE; i++) {
		struct source *e = &s->src[(h + i) & (s->nsrc - 1)];

		if (e->used && e->family == a.family &&
		    memcmp(e->ip, a.ip, iplen) == 0)
			return e;
		if (!e->used) {
			if (!victim || victim->used)
				victim = e;
		} else if (!victim ||
			   (victim->used && e->last_ms < victim->last_ms)) {
			victim = e;
		}
	}
	memset(victim, 0, sizeof(*victim));
	victim->used = true;
	victim->family = a.family;
	memcpy(victim->ip, a.ip, iplen);
	victim->last_ms = 0;
	victim->milli_tokens = (uint64_t)s->o.burst * 1000;
	return victim;
}

/* take - spend |cost| tokens of |e| at |now_ms|; false if it has not. */
static bool take(struct wh_sigsrv *s, struct source *e, uint64_t now_ms,
		 unsigned cost)
{
	uint64_t cap = (uint64_t)s->o.burst * 1000;

	if (e->last_ms == 0 || now_ms < e->last_ms) {
		e->last_ms = now_ms;
	} else {
		uint64_t add = (now_ms - e->last_ms) * s->o.rate;

		e->milli_tokens = e->milli_tokens + add > cap
					  ? cap : e->milli_tokens + add;
		e->last_ms = now_ms;
	}
	if (e->milli_tokens < (uint64_t)cost * 1000)
		return false;
	e->milli_tokens -= (uint64_t)cost * 1000;
	return true;
}

/* ------------------------------------------------------------ answers */

static void emit(struct wh_sigsrv_out *out, const struct sockaddr *to,
		 socklen_t tolen, const struct wh_sig_msg *m)
{
	struct wh_sigsrv_dgram *d = &out->d[out->n];
	int n = wh_sig_encode(m, d->data, sizeof(d->data));

	if (n < 0 || tolen > sizeof(d->to))
		return;
	memcpy(&d->to, to, tolen);
	d->tolen = tolen;
	d->len = (size_t)n;
	out->n++;
}

static void emit_error(struct wh_sigsrv_out *out, const struct sockaddr *to,
		       socklen_t tolen, const uint8_t *txn, uint8_t code)
{
	struct wh_sig_msg m;

	memset(&m, 0, sizeof(m));
	m.type = WH_SIG_ERROR;
	memcpy(m.txn, txn, WH_SIG_TXN_LEN);
	m.code = code;
	emit(out, to, tolen, &m);
}

/* cand_list - |first| then |n| of |cands| without duplicates, at most
 * WH_SIG_MAX_CANDS, into |m|. */
static void cand_list(struct wh_sig_msg *m, const struct wh_sig_addr *first,
		      const struct wh_sig_addr *cands, unsigned n)
{
	m->ncand = 0;
	m->cand[m->ncand++] = *first;
	for (unsigned i = 0; i < n && m->ncand < WH_SIG_MAX_CANDS; i++) {
		bool dup = false;

		for (unsigned j = 0; j < m->ncand; j++)
			dup = dup || wh_sig_addr_eq(&m->cand[j], &cands[i]);
		if (!dup)
			m->cand[m->ncand++] = cands[i];
	}
}

static void on_register(struct wh_sigsrv *s, uint64_t now_ms,
			const struct sockaddr *from, socklen_t fromlen,
			const struct wh_sig_addr *fa,
			const struct wh_sig_msg *m, struct wh_sigsrv_out *out)
{
	uint8_t th[WH_SIG_TOKEN_LEN];
	struct room_node **pp = room_slot(s, m->room), *n = *pp;
	struct wh_sig_msg a;

	crypto_generichash(th, sizeof(th), m->token, sizeof(m->token), NULL,
			   0);
	if (n && n->r.expires_ms > now_ms &&
	    sodium_memcmp(n->r.token_hash, th, sizeof(th)) != 0) {
		emit_error(out, from, fromlen, m->txn, WH_SIGE_TAKEN);
		return;
	}
	if (!n && s->nrooms >= s->o.max_rooms) {
		wh_sigsrv_expire(s, now_ms);
		pp = room_slot(s, m->room);
		if (s->nrooms >= s->o.max_rooms) {
			emit_error(out, from, fromlen, m->txn, WH_SIGE_FULL);
			return;
		}
	}
	if (!n) {
		n = room_insert(s, pp);
		if (!n)
			return;
	}
	memcpy(n->r.room, m->room, WH_SIG_ROOM_LEN);
	memcpy(n->r.token_hash, th, sizeof(th));
	n->r.host = *fa;
	n->r.ncand = m->ncand;
	memcpy(n->r.cand, m->cand, sizeof(n->r.cand));
	n->r.expires_ms = now_ms + (uint64_t)s->o.ttl_s * 1000;
	if (s->store.put)
		s->store.put(s->store.ud, &n->r);
	memset(&a, 0, sizeof(a));
	a.type = WH_SIG_REGISTERED;
	memcpy(a.txn, m->txn, WH_SIG_TXN_LEN);
	a.ttl_s = (uint16_t)(s->o.ttl_s > 65535 ? 65535 : s->o.ttl_s);
	a.refl = *fa;
	emit(out, from, fromlen, &a);
}

static void on_unregister(struct wh_sigsrv *s, const struct wh_sig_msg *m)
{
	uint8_t th[WH_SIG_TOKEN_LEN];
	struct room_node **pp = room_slot(s, m->room);

	if (!*pp)
		return;
	crypto_generichash(th, sizeof(th), m->token, sizeof(m->token), NULL,
			   0);
	if (sodium_memcmp((*pp)->r.token_hash, th, sizeof(th)) == 0)
		room_remove(s, pp);
}

static void on_join(struct wh_sigsrv *s, uint64_t now_ms,
		    const struct sockaddr *from, socklen_t fromlen,
		    const struct wh_sig_addr *fa, const struct wh_sig_msg *m,
		    struct wh_sigsrv_out *out)
{
	const struct wh_sig_room *r = wh_sigsrv_find(s, m->room, now_ms);
	struct sockaddr_storage hss;
	socklen_t hlen;
	struct wh_sig_msg a;

	if (!r) {
		emit_error(out, from, fromlen, m->txn, WH_SIGE_NOROOM);
		return;
	}
	memset(&a, 0, sizeof(a));
	a.type = WH_SIG_PEERS;
	memcpy(a.txn, m->txn, WH_SIG_TXN_LEN);
	a.refl = *fa;
	cand_list(&a, &r->host, r->cand, r->ncand);
	emit(out, from, fromlen, &a);

	memset(&a, 0, sizeof(a));
	a.type = WH_SIG_PEER_JOIN;
	memcpy(a.room, m->room, WH_SIG_ROOM_LEN);
	memcpy(a.txn, m->txn, WH_SIG_TXN_LEN);
	cand_list(&a, fa, m->cand, m->ncand);
	hlen = wh_sig_addr_to_sa(&r->host, &hss);
	emit(out, (struct sockaddr *)&hss, hlen, &a);
}

int wh_sigsrv_handle(struct wh_sigsrv *s, uint64_t now_ms,
		     const struct sockaddr *from, socklen_t fromlen,
		     const uint8_t *data, size_t len,
		     struct wh_sigsrv_out *out)
{
	struct source *src = source_get(s, from);
	struct wh_sig_addr fa;
	struct wh_sig_msg m;
	int rv;

	out->n = 0;
	rv = wh_sig_decode(data, len, &m);
	if (rv == 0 && (m.type == WH_SIG_REGISTER ||
			m.type == WH_SIG_UNREGISTER || m.type == WH_SIG_JOIN)) {
		if (!take(s, src, now_ms, 1)) {
			if (now_ms >= src->last_err_ms + 1000) {
				src->last_err_ms = now_ms;
				emit_error(out, from, fromlen, m.txn,
					   WH_SIGE_RATE);
			}
			return -EAGAIN;
		}
	} else {
		/* malformed, or a type a server never receives */
		take(s, src, now_ms, WH_SIGSRV_BAD_COST);
		return rv < 0 ? rv : WH_ERR_PROTO;
	}
	if (wh_sig_addr_from_sa(from, &fa) != 0)
		return WH_ERR_PROTO;
	switch (m.type) {
	case WH_SIG_REGISTER:
		on_register(s, now_ms, from, fromlen, &fa, &m, out);
		break;
	case WH_SIG_UNREGISTER:
		on_unregister(s, &m);
		break;
	case WH_SIG_JOIN:
		on_join(s, now_ms, from, fromlen, &fa, &m, out);
		break;
	}
	return 0;
}
