/*
 * wh_quic.c - QUIC endpoints over ngtcp2 0.12 with the GnuTLS backend.
 *
 * One UDP socket per endpoint.  Received datagrams are read in batches
 * (with UDP GRO when the kernel offers it) and dispatched to connections by
 * destination connection ID; sent packets are batched per connection into
 * one sendmsg with UDP GSO.  Stream data is queued as segments owned by the
 * stream until acknowledged, so it is never copied on the send path.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "common/wh_trace.h"
#include "net/wh_addr.h"
#include "net/wh_quic.h"
#include "net/wh_sendq.h"
#include "net/wh_tls.h"
#include "proto/wh_proto.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define CID_LEN 16            /* our connection IDs, as a host */
/*
 * A client's connection IDs are empty.  A client endpoint has one
 * connection on its own (connected) socket, so it needs no ID to find it;
 * and the ID a host puts in every packet it sends is the ID the client
 * chose: 16 bytes of each 1.5 KB data packet, 1.1% of the link, for
 * nothing.  The host's IDs stay 16 bytes (it demultiplexes by them, and
 * the client's migration to a new address uses them).  A packet to a
 * client, with no ID, can never look like a raw datagram (new_cid()):
 * its first byte carries the QUIC bit (0x40: a client does not let the
 * host grease it, RFC 9287) and a raw datagram's first byte is 0.
 */
#define CLIENT_CID_LEN 0
#define CIDMAP_BUCKETS 1024
#define MAX_GSO_SEGS 64
#define TXBUF_LEN (64 * 1024)
#define RXBUF_LEN (64 * 1024)
/* largest packet to a peer on this host: one fills the send buffer */
#define LOCAL_PAYLOAD_MAX (TXBUF_LEN - 1024)
#define MAX_VECS 16
/*
 * Bytes per write.  ngtcp2's BBR sets a send quantum of one minimum RTT
 * of data at the pacing rate (at least 10 packets, at most 64 KiB), and
 * its pacing asks for the next write that long after.  Our timers have
 * millisecond resolution (epoll_wait; wh_quic_ep_timeout_ms rounds up),
 * so on a LAN, where the RTT is some 100 us, the host slept until the
 * client's next acknowledgement woke it, sent one quantum and slept
 * again: both sides woke once a quantum.  Where a quantum is less than
 * 1 ms at the pacing rate, the soonest our timer comes back, a write
 * sends WRITE_QUANTA of them (the congestion window still bounds it).
 * On a long path the quantum (64 KiB at 100 Mbit/s and 50 ms) is more
 * than a millisecond's worth and nothing changes.  Timers to the
 * microsecond (epoll_pwait2) were tried: with one quantum a write the
 * host then wrote quanta of 15-45 KB each on a wake of its own and both
 * sides spent half as much CPU again; with two, 4-10% more CPU and more
 * context switches for no faster get (bench/README.md, "Timers to the
 * microsecond"): on two shared cores a wake costs more than the wait.
 */
#define WRITE_QUANTA 2
#define MAX_CONN_CIDS 8

/*
 * Surviving an outage.  The idle timeout is long (30 s) so that a path
 * that goes away for a while does not end the connection; what makes
 * traffic resume promptly when it returns is below.
 *
 * A client that has received nothing for QUIET_MS (it sends a keep-alive
 * every 1 s, which the host acknowledges within a round trip) probes every
 * PROBE_EVERY_MS: it sends a CHECK datagram (a host that no longer knows
 * the connection, restarted say, answers UNKNOWN and the connection ends
 * at once instead of after the idle timeout), and when its loss-recovery
 * timer is further away than that (PTO backoff doubles with every probe
 * lost, to many seconds) it fires the timer now, so a packet goes out at
 * least every PROBE_EVERY_MS.  Either side that receives a packet while
 * its own data waits for a backed-off probe timer fires that timer at
 * once (at most every KICK_EVERY_MS): the path is back, so what is
 * unacknowledged is resent now rather than seconds later.  A host that
 * receives a CHECK for a connection it has does the same (the client may
 * have nothing of its own in flight, only acknowledgements to send).
 */
#define QUIET_MS 1500
#define PROBE_EVERY_MS 500
#define KICK_EVERY_MS 200

/*
 * Letting packets gather (a client receiving a bulk transfer on a long
 * path).  Where packets arrive one at a time (a WAN link: no GRO batches,
 * some 8,500 a second at 100 Mbit/s) the network thread woke, read,
 * decrypted and acknowledged per packet or two, and the wake-ups cost
 * more than the work.  A client that has read something in each of
 * HOLD_STREAK calls in a row, each within HOLD_GAP_MS of the one before,
 * on a connection whose smoothed RTT is at least HOLD_MIN_RTT_MS, stops
 * watching its socket for HOLD_MS after a read (wh_quic_ep_holding()),
 * then reads all that came meanwhile at once.  The hold adds at most
 * HOLD_MS to a round trip of HOLD_MIN_RTT_MS or more (5%), never touches
 * a short path (a LAN, loopback) and ends with the first read that finds
 * nothing: a request and its reply alone never wait.
 */
#define HOLD_STREAK 16
#define HOLD_GAP_MS 2
#define HOLD_MIN_RTT_MS 20
#define HOLD_MS 1

/*
 * Stream credit.  Every request is a stream the client opens, and ngtcp2
 * leaves it to us to allow another when one closes.  Allowing them one at
 * a time cost a MAX_STREAMS packet per request, and the client's
 * acknowledgement of it: two of the six packets of a small request/reply
 * on a LAN (where ngtcp2 acknowledges after an eighth of the RTT, i.e. at
 * once).  Handed back STREAM_CREDIT_BATCH at a time, the client always
 * has at least max_streams_bidi - STREAM_CREDIT_BATCH + 1 streams (113 of
 * 128): a client out of streams has that many open, whose closing
 * completes the batch.  (With fewer than 2 x STREAM_CREDIT_BATCH streams
 * configured, half of them make a batch.)
 */
#define STREAM_CREDIT_BATCH 16

/* CHECK and UNKNOWN: "\0WQ" version 1, a type, then a connection ID */
#define CHK_MARK2 0x51
#define CHK_VERSION 1
#define CHK_CHECK 1
#define CHK_UNKNOWN 2

struct seg {
	struct seg *next;
	uint8_t *data;
	size_t len;
	void (*free_fn)(void *);
};

/* the first two bytes of a datagram that is not QUIC (wh_quic_ep_set_raw) */
#define RAW_MARK0 0x00
#define RAW_MARK1 0x57

struct wh_quic_stream {
	int64_t id;
	void *ud;
	struct wh_quic_conn *conn;
	struct seg *head, *tail; /* unacknowledged and unsent segments */
	uint64_t head_off;       /* stream offset of head's first byte */
	uint64_t acked;          /* contiguous bytes acknowledged */
	struct seg *cur;         /* first segment with unsent bytes */
	size_t cur_off;          /* unsent position inside cur */
	bool fin_queued, fin_sent;
	bool blocked;
	uint64_t unsent;         /* bytes queued, not yet given to ngtcp2 */
	struct wh_quic_stream *prev, *next; /* every stream of the conn */
	struct wh_sendq_item sq;
};

struct wh_quic_conn {
	struct wh_quic_ep *ep;
	ngtcp2_conn *conn;
	gnutls_session_t tls;
	ngtcp2_crypto_conn_ref ref;
	void *ud;
	struct sockaddr_storage local, remote;
	socklen_t locallen, remotelen;
	char peer[WH_ADDRSTRLEN];
	struct wh_quic_stream *streams;
	struct wh_sendq sq; /* the streams with something to send */
	unsigned streams_closed; /* the peer's, credit not yet handed back */
	ngtcp2_cid odcid; /* server: the client's first DCID */
	bool handshake_done;
	bool close_requested;
	uint64_t close_err;
	char close_reason[128];
	bool dead;
	int dead_err;
	char dead_reason[128];
	ngtcp2_connection_close_error last_error;
	uint64_t last_rx_ns;   /* when a packet of ours last arrived */
	uint64_t held;         /* stream bytes queued, not yet acknowledged */
	uint64_t acked_ns;     /* when the peer last acknowledged some, or
				* the wait for it began (conn_stall_deadline) */
	uint64_t next_probe_ns; /* client: when to look at the silence */
	uint64_t last_kick_ns;
	struct wh_quic_conn *prev, *next;
};

struct cid_entry {
	struct cid_entry *next;
	ngtcp2_cid cid;
	struct wh_quic_conn *conn;
};

struct wh_quic_ep {
	int fd;
	FILE *wtrace;      /* WH_QUIC_WRITES: a line per write, for tuning */
	bool server;
	bool gso;          /* UDP_SEGMENT works */
	bool wildcard;     /* bound to a wildcard address: use PKTINFO */
	struct sockaddr_storage local;
	socklen_t locallen;
	struct wh_quic_config cfg;
	const struct wh_quic_cbs *cbs;
	void *ud;
	gnutls_certificate_credentials_t cred;
	struct wh_quic_conn *conns;
	size_t nconns;
	struct cid_entry *cidmap[CIDMAP_BUCKETS];
	int depth; /* >0 while inside a public entry point */
	wh_quic_raw_cb raw_cb; /* datagrams that are not QUIC */
	void *raw_ud;
	uint64_t last_rx_read_ns; /* client: the last read that got data */
	unsigned rx_streak;       /* such reads in a row, close together */
	uint64_t hold_until;      /* not watching the socket until then */
	uint8_t txbuf[TXBUF_LEN];
	uint8_t rxbuf[RXBUF_LEN];
};

static void conn_kill(struct wh_quic_conn *c, int err, const char *reason);
static void conn_write(struct wh_quic_conn *c);
static void ep_sendmsg(struct wh_quic_ep *ep, const struct sockaddr *remote,
		       socklen_t remotelen, const struct sockaddr *local,
		       const uint8_t *buf, size_t len, size_t gso);

/* ---------------------------------------------------------------- misc */

void wh_quic_config_default(struct wh_quic_config *cfg, bool role_server)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->idle_timeout_ms = 30000;
	cfg->keepalive_ms = role_server ? 0 : 1000;
	cfg->handshake_timeout_ms = 5000;
	cfg->max_streams_bidi = 128;
	cfg->stream_window = 2 * 1024 * 1024;
	cfg->conn_window = 16 * 1024 * 1024;
	cfg->max_conns = 256;
}

static void rand_cb(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *ctx)
{
	(void)ctx;
	(void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, destlen);
}

static int random_bytes(void *p, size_t n);

/* new_cid - a random connection ID of ours.  Its first byte is never
 * RAW_MARK1, so a QUIC short-header packet addressed to us (whose first
 * byte may have both top bits clear when the peer greases the QUIC bit,
 * RFC 9287) never starts with the two bytes of a raw datagram. */
static int new_cid(uint8_t *p, size_t n)
{
	if (random_bytes(p, n) != 0)
		return -1;
	if (n > 0 && p[0] == RAW_MARK1)
		p[0] ^= 0x80;
	return 0;
}

static int random_bytes(void *p, size_t n)
{
	return gnutls_rnd(GNUTLS_RND_RANDOM, p, n) == 0 ? 0 : -EIO;
}

/* ------------------------------------------------------------- cid map */

static size_t cid_hash(const uint8_t *data, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ data[i]) * 1099511628211ULL;
	return (size_t)(h % CIDMAP_BUCKETS);
}

static int cidmap_add(struct wh_quic_ep *ep, const ngtcp2_cid *cid,
		      struct wh_quic_conn *c)
{
	struct cid_entry *e = calloc(1, sizeof(*e));
	size_t b;

	if (!e)
		return -ENOMEM;
	e->cid = *cid;
	e->conn = c;
	b = cid_hash(cid->data, cid->datalen);
	e->next = ep->cidmap[b];
	ep->cidmap[b] = e;
	return 0;
}

static struct wh_quic_conn *cidmap_find(struct wh_quic_ep *ep,
					const uint8_t *data, size_t len)
{
	struct cid_entry *e;

	for (e = ep->cidmap[cid_hash(data, len)]; e; e = e->next)
		if (e->cid.datalen == len && memcmp(e->cid.data, data, len) == 0)
			return e->conn;
	return NULL;
}

static void cidmap_remove(struct wh_quic_ep *ep, const ngtcp2_cid *cid)
{
	struct cid_entry **pp = &ep->cidmap[cid_hash(cid->data, cid->datalen)];

	while (*pp) {
		struct cid_entry *e = *pp;

		if (e->cid.datalen == cid->datalen &&
		    memcmp(e->cid.data, cid->data, cid->datalen) == 0) {
			*pp = e->next;
			free(e);
			return;
		}
		pp = &e->next;
	}
}

static void cidmap_remove_conn(struct wh_quic_ep *ep, struct wh_quic_conn *c)
{
	for (size_t b = 0; b < CIDMAP_BUCKETS; b++) {
		struct cid_entry **pp = &ep->cidmap[b];

		while (*pp) {
			struct cid_entry *e = *pp;

			if (e->conn == c) {
				*pp = e->next;
				free(e);
			} else {
				pp = &e->next;
			}
		}
	}
}

/* ------------------------------------------------------------- streams */

/* The head of the send queue (net/wh_sendq.h) is served until it has
 * sent everything or is blocked by flow control; a blocked stream stays
 * out of the queue until cb_extend_max_stream_data brings it back. */
static void sendq_push(struct wh_quic_conn *c, struct wh_quic_stream *s)
{
	if (!s->blocked)
		wh_sendq_push(&c->sq, &s->sq, s->unsent);
}

static struct wh_quic_stream *sendq_head(struct wh_quic_conn *c)
{
	struct wh_sendq_item *it = wh_sendq_head(&c->sq);

	return it ? wh_sendq_entry(it, struct wh_quic_stream, sq) : NULL;
}

static void sendq_pop(struct wh_quic_conn *c)
{
	wh_sendq_pop(&c->sq);
}

static void sendq_remove(struct wh_quic_conn *c, struct wh_quic_stream *s)
{
	wh_sendq_remove(&c->sq, &s->sq);
}

static bool stream_has_pending(const struct wh_quic_stream *s)
{
	return s->cur != NULL || (s->fin_queued && !s->fin_sent);
}

static struct wh_quic_stream *stream_new(struct wh_quic_conn *c, int64_t id)
{
	struct wh_quic_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->id = id;
	s->conn = c;
	s->next = c->streams;
	if (c->streams)
		c->streams->prev = s;
	c->streams = s;
	return s;
}

static void stream_free_segs(struct wh_quic_stream *s)
{
	struct seg *g = s->head, *n;

	for (; g; g = n) {
		n = g->next;
		s->conn->held -= g->len;
		if (g->free_fn)
			g->free_fn(g->data);
		free(g);
	}
	s->head = s->tail = s->cur = NULL;
	s->cur_off = 0;
	s->unsent = 0;
}

static void stream_del(struct wh_quic_conn *c, struct wh_quic_stream *s)
{
	sendq_remove(c, s);
	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	stream_free_segs(s);
	free(s);
}

/* stream_close_notify - tell the owner, then free. */
static void stream_close_notify(struct wh_quic_conn *c,
				struct wh_quic_stream *s)
{
	if (c->ep->cbs->on_stream_close)
		c->ep->cbs->on_stream_close(c, s, c->ud);
	stream_del(c, s);
}

/* stream_advance - |n| more bytes of |s| were handed to ngtcp2. */
static void stream_advance(struct wh_quic_stream *s, size_t n)
{
	s->unsent = s->unsent > n ? s->unsent - n : 0;
	while (n > 0 && s->cur) {
		size_t left = s->cur->len - s->cur_off;

		if (n < left) {
			s->cur_off += n;
			return;
		}
		n -= left;
		s->cur = s->cur->next;
		s->cur_off = 0;
	}
}

int64_t wh_quic_stream_id(const struct wh_quic_stream *s)
{
	return s->id;
}

void wh_quic_stream_set_ud(struct wh_quic_stream *s, void *ud)
{
	s->ud = ud;
}

void *wh_quic_stream_ud(const struct wh_quic_stream *s)
{
	return s->ud;
}

int wh_quic_send(struct wh_quic_conn *c, struct wh_quic_stream *s,
		 void *data, size_t len, bool fin, void (*free_fn)(void *))
{
	struct seg *g;

	if (c->dead || s->fin_queued) {
		if (free_fn)
			free_fn(data);
		return c->dead ? WH_ERR_CLOSED : -EPIPE;
	}
	if (len > 0) {
		g = calloc(1, sizeof(*g));
		if (!g) {
			if (free_fn)
				free_fn(data);
			return -ENOMEM;
		}
		g->data = data;
		g->len = len;
		g->free_fn = free_fn;
		if (s->tail)
			s->tail->next = g;
		else
			s->head = g;
		s->tail = g;
		s->unsent += len;
		if (c->held == 0)
			c->acked_ns = wh_now_ns();
		c->held += len;
		if (!s->cur) {
			s->cur = g;
			s->cur_off = 0;
		}
	} else if (free_fn) {
		free_fn(data);
	}
	if (fin)
		s->fin_queued = true;
	sendq_push(c, s);
	return 0;
}

void wh_quic_stream_reset(struct wh_quic_conn *c, struct wh_quic_stream *s,
			  uint64_t app_err)
{
	sendq_remove(c, s);
	stream_free_segs(s);
	s->fin_queued = s->fin_sent = true;
	ngtcp2_conn_shutdown_stream(c->conn, s->id, app_err);
}

int wh_quic_open_stream(struct wh_quic_conn *c, void *stream_ud,
			struct wh_quic_stream **ps)
{
	struct wh_quic_stream *s;
	int64_t id;
	int rv;

	if (c->dead || c->close_requested || !c->handshake_done)
		return WH_ERR_CLOSED;
	s = stream_new(c, -1);
	if (!s)
		return -ENOMEM;
	rv = ngtcp2_conn_open_bidi_stream(c->conn, &id, s);
	if (rv != 0) {
		stream_del(c, s);
		return rv == NGTCP2_ERR_STREAM_ID_BLOCKED ? -EAGAIN : -EIO;
	}
	s->id = id;
	s->ud = stream_ud;
	*ps = s;
	return 0;
}

/* --------------------------------------------------- ngtcp2 callbacks */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
	struct wh_quic_conn *c = ref->user_data;

	return c->conn;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *user_data)
{
	struct wh_quic_conn *c = user_data;

	(void)conn;
	c->handshake_done = true;
	c->next_probe_ns = wh_now_ns() + QUIET_MS * WH_NS_PER_MS;
	wh_debug("quic: handshake completed with %s, %s", c->peer,
		 gnutls_cipher_get_name(gnutls_cipher_get(c->tls)));
	if (c->ep->cbs->on_handshake)
		c->ep->cbs->on_handshake(c, c->ud);
	return 0;
}

static int cb_stream_open(ngtcp2_conn *conn, int64_t stream_id,
			  void *user_data)
{
	struct wh_quic_conn *c = user_data;
	struct wh_quic_stream *s;

	if (!ngtcp2_is_bidi_stream(stream_id)) {
		/* we never allow unidirectional streams; be defensive */
		return 0;
	}
	s = stream_new(c, stream_id);
	if (!s)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	ngtcp2_conn_set_stream_user_data(conn, stream_id, s);
	if (c->ep->cbs->on_stream_open)
		c->ep->cbs->on_stream_open(c, s, c->ud);
	return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags,
			       int64_t stream_id, uint64_t offset,
			       const uint8_t *data, size_t datalen,
			       void *user_data, void *stream_user_data)
{
	struct wh_quic_conn *c = user_data;
	struct wh_quic_stream *s = stream_user_data;
	bool fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
	int rv;

	(void)offset;
	ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
	ngtcp2_conn_extend_max_offset(conn, datalen);
	if (!s || c->close_requested || c->dead)
		return 0;
	rv = c->ep->cbs->on_stream_data(c, s, data, datalen, fin, c->ud);
	if (rv < 0 && !c->close_requested)
		wh_quic_conn_close(c, 1, wh_strerror(rv));
	return 0;
}

static int cb_acked_stream_data_offset(ngtcp2_conn *conn, int64_t stream_id,
				       uint64_t offset, uint64_t datalen,
				       void *user_data, void *stream_user_data)
{
	struct wh_quic_stream *s = stream_user_data;

	(void)conn;
	(void)stream_id;
	(void)user_data;
	if (!s)
		return 0;
	if (offset + datalen > s->acked) {
		s->acked = offset + datalen;
		s->conn->acked_ns = wh_now_ns();
	}
	while (s->head && s->head != s->cur &&
	       s->head_off + s->head->len <= s->acked) {
		struct seg *g = s->head;

		s->head = g->next;
		if (!s->head)
			s->tail = NULL;
		s->head_off += g->len;
		s->conn->held -= g->len;
		if (g->free_fn)
			g->free_fn(g->data);
		free(g);
	}
	return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags,
			   int64_t stream_id, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	struct wh_quic_conn *c = user_data;
	struct wh_quic_stream *s = stream_user_data;

	(void)flags;
	(void)app_error_code;
	/* ngtcp2 leaves stream credit to us: one closed, one more allowed,
	 * handed back STREAM_CREDIT_BATCH at a time (see there) */
	if (!ngtcp2_conn_is_local_stream(conn, stream_id) &&
	    ngtcp2_is_bidi_stream(stream_id) &&
	    (++c->streams_closed >= STREAM_CREDIT_BATCH ||
	     c->streams_closed * 2 >= c->ep->cfg.max_streams_bidi)) {
		ngtcp2_conn_extend_max_streams_bidi(conn, c->streams_closed);
		c->streams_closed = 0;
	}
	if (s)
		stream_close_notify(c, s);
	return 0;
}

static int cb_stream_reset(ngtcp2_conn *conn, int64_t stream_id,
			   uint64_t final_size, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	(void)final_size;
	(void)user_data;
	(void)stream_user_data;
	/* the peer abandoned its side: abandon ours too */
	ngtcp2_conn_shutdown_stream(conn, stream_id, app_error_code);
	return 0;
}

static int cb_extend_max_local_streams_bidi(ngtcp2_conn *conn,
					    uint64_t max_streams,
					    void *user_data)
{
	struct wh_quic_conn *c = user_data;

	(void)conn;
	(void)max_streams;
	if (c->handshake_done && c->ep->cbs->on_streams_available)
		c->ep->cbs->on_streams_available(c, c->ud);
	return 0;
}

static int cb_extend_max_stream_data(ngtcp2_conn *conn, int64_t stream_id,
				     uint64_t max_data, void *user_data,
				     void *stream_user_data)
{
	struct wh_quic_conn *c = user_data;
	struct wh_quic_stream *s = stream_user_data;

	(void)conn;
	(void)stream_id;
	(void)max_data;
	if (s && s->blocked) {
		s->blocked = false;
		if (stream_has_pending(s))
			sendq_push(c, s);
	}
	return 0;
}

static int cb_get_new_connection_id(ngtcp2_conn *conn, ngtcp2_cid *cid,
				    uint8_t *token, size_t cidlen,
				    void *user_data)
{
	struct wh_quic_conn *c = user_data;

	(void)conn;
	if (new_cid(cid->data, cidlen) != 0 ||
	    random_bytes(token, NGTCP2_STATELESS_RESET_TOKENLEN) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	cid->datalen = cidlen;
	if (c->ep->server && cidmap_add(c->ep, cid, c) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int cb_remove_connection_id(ngtcp2_conn *conn, const ngtcp2_cid *cid,
				   void *user_data)
{
	struct wh_quic_conn *c = user_data;

	(void)conn;
	if (c->ep->server)
		cidmap_remove(c->ep, cid);
	return 0;
}

static int cb_path_validation(ngtcp2_conn *conn, uint32_t flags,
			      const ngtcp2_path *path,
			      ngtcp2_path_validation_result res,
			      void *user_data)
{
	struct wh_quic_conn *c = user_data;
	char now[WH_ADDRSTRLEN], old[WH_ADDRSTRLEN];

	(void)conn;
	(void)flags;
	if (!c->ep->server || path->remote.addrlen > sizeof(c->remote))
		return 0;
	wh_addr_str(path->remote.addr, now, sizeof(now));
	if (res != NGTCP2_PATH_VALIDATION_RESULT_SUCCESS) {
		wh_debug("quic: %s: path to %s not validated", c->peer, now);
		return 0;
	}
	if (strcmp(now, c->peer) == 0)
		return 0;
	/* the peer's address changed (NAT rebinding, a new network): ngtcp2
	 * has checked that it answers there; packets go where it says */
	snprintf(old, sizeof(old), "%s", c->peer);
	memcpy(&c->remote, path->remote.addr, path->remote.addrlen);
	c->remotelen = (socklen_t)path->remote.addrlen;
	snprintf(c->peer, sizeof(c->peer), "%s", now);
	if (c->ep->cbs->on_path_change)
		c->ep->cbs->on_path_change(c, old, now, c->ud);
	else
		wh_info("quic: peer %s is now at %s", old, now);
	return 0;
}

static void fill_callbacks(ngtcp2_callbacks *cb, bool server)
{
	memset(cb, 0, sizeof(*cb));
	if (server) {
		cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
	} else {
		cb->client_initial = ngtcp2_crypto_client_initial_cb;
		cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
	}
	cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
	cb->handshake_completed = cb_handshake_completed;
	cb->encrypt = ngtcp2_crypto_encrypt_cb;
	cb->decrypt = ngtcp2_crypto_decrypt_cb;
	cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
	cb->recv_stream_data = cb_recv_stream_data;
	cb->acked_stream_data_offset = cb_acked_stream_data_offset;
	cb->stream_open = cb_stream_open;
	cb->stream_close = cb_stream_close;
	cb->extend_max_local_streams_bidi = cb_extend_max_local_streams_bidi;
	cb->rand = rand_cb;
	cb->get_new_connection_id = cb_get_new_connection_id;
	cb->remove_connection_id = cb_remove_connection_id;
	cb->update_key = ngtcp2_crypto_update_key_cb;
	cb->stream_reset = cb_stream_reset;
	cb->extend_max_stream_data = cb_extend_max_stream_data;
	cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
	cb->delete_crypto_cipher_ctx =
		ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
	cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
	cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
	cb->path_validation = cb_path_validation;
}

static void quic_log(void *user_data, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void quic_log(void *user_data, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	(void)user_data;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	wh_debug("ngtcp2: %s", line);
}

/*
 * local_payload - the UDP payload to send to |remote| when it is an address
 * of this host, 0 otherwise.
 *
 * QUIC's 1200..1452-byte packets are sized for paths whose MTU we do not
 * know.  A peer on this host is reached through the loopback device (MTU
 * 64 KiB here), where per-packet work, not bytes, bounds the rate: one
 * 64 KiB packet costs about as much as one of 1452 bytes.  The kernel
 * tells the route's MTU of a connected socket (IP_MTU), and whether an
 * address is ours (bind succeeds only on a local address); both checks
 * are cheap and done once per connection.  Any other path keeps the
 * default sizing and ngtcp2's path MTU discovery.
 */
static size_t local_payload(const struct sockaddr *remote)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, mtu = 0, hdr;
	size_t pl;

	if (!remote || (remote->sa_family != AF_INET &&
			remote->sa_family != AF_INET6))
		return 0;
	len = remote->sa_family == AF_INET ? sizeof(struct sockaddr_in)
					   : sizeof(struct sockaddr_in6);
	memcpy(&ss, remote, len);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
	    connect(fd, remote, len) != 0) {
		close(fd);
		return 0;
	}
	len = sizeof(mtu);
	if (ss.ss_family == AF_INET) {
		getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &len);
		hdr = 20 + 8;
	} else {
		getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &len);
		hdr = 40 + 8;
	}
	close(fd);
	if (mtu <= 1500)
		return 0;
	pl = (size_t)(mtu - hdr);
	if (pl > LOCAL_PAYLOAD_MAX)
		pl = LOCAL_PAYLOAD_MAX;
	return pl;
}

static void fill_settings(struct wh_quic_ep *ep, ngtcp2_settings *st,
			  ngtcp2_transport_params *tp,
			  const struct sockaddr *remote)
{
	const struct wh_quic_config *cfg = &ep->cfg;
	size_t pl = getenv("WH_QUIC_NO_LOCAL_MTU") ? 0 : local_payload(remote);

	ngtcp2_settings_default(st);
	if (pl > 0) {
		st->max_tx_udp_payload_size = pl;
		st->no_tx_udp_payload_size_shaping = 1;
		wh_debug("quic: peer is on this host, %zu-byte packets", pl);
	}
	st->initial_ts = wh_now_ns();
	st->cc_algo = NGTCP2_CC_ALGO_BBR;
	if (getenv("WH_QUIC_CC")) { /* tuning experiments */
		const char *a = getenv("WH_QUIC_CC");
		if (!strcmp(a, "bbr2"))
			st->cc_algo = NGTCP2_CC_ALGO_BBR2;
		else if (!strcmp(a, "cubic"))
			st->cc_algo = NGTCP2_CC_ALGO_CUBIC;
	}
	st->max_window = 256ULL * 1024 * 1024;
	st->max_stream_window = 64ULL * 1024 * 1024;
	st->handshake_timeout = cfg->handshake_timeout_ms * NGTCP2_MILLISECONDS;
	if (getenv("WH_QUIC_TRACE"))
		st->log_printf = quic_log;

	ngtcp2_transport_params_default(tp);
	tp->initial_max_stream_data_bidi_local = cfg->stream_window;
	tp->initial_max_stream_data_bidi_remote = cfg->stream_window;
	tp->initial_max_stream_data_uni = 0;
	tp->initial_max_data = cfg->conn_window;
	tp->initial_max_streams_bidi = cfg->max_streams_bidi;
	tp->initial_max_streams_uni = 0;
	tp->max_idle_timeout = cfg->idle_timeout_ms * NGTCP2_MILLISECONDS;
	tp->active_connection_id_limit = 4;
	if (!ep->server)
		tp->grease_quic_bit = 0; /* see CLIENT_CID_LEN */
}

/* ----------------------------------------------------------------- TLS */

static int conn_tls_init(struct wh_quic_conn *c, bool server)
{
	gnutls_datum_t alpn = { (unsigned char *)WH_ALPN,
				(unsigned int)strlen(WH_ALPN) };
	int rv;

	rv = gnutls_init(&c->tls, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
					  GNUTLS_NO_END_OF_EARLY_DATA |
					  (server ? GNUTLS_NO_AUTO_SEND_TICKET
						  : 0));
	if (rv != 0)
		goto out;
	if (server)
		rv = ngtcp2_crypto_gnutls_configure_server_session(c->tls);
	else
		rv = ngtcp2_crypto_gnutls_configure_client_session(c->tls);
	if (rv != 0) {
		rv = GNUTLS_E_INTERNAL_ERROR;
		goto out;
	}
	rv = gnutls_priority_set_direct(c->tls, wh_tls_priority(0), NULL);
	if (rv != 0)
		goto out;
	rv = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE,
				    c->ep->cred);
	if (rv != 0)
		goto out;
	rv = gnutls_alpn_set_protocols(c->tls, &alpn, 1,
				       GNUTLS_ALPN_MANDATORY);
	if (rv != 0)
		goto out;
	if (!server)
		gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, "wormhole",
				       strlen("wormhole"));
	c->ref.get_conn = get_conn;
	c->ref.user_data = c;
	gnutls_session_set_ptr(c->tls, &c->ref);
	ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
out:
	if (rv != 0) {
		wh_err("tls: session setup failed: %s", gnutls_strerror(rv));
		return WH_ERR_TLS;
	}
	return 0;
}

int wh_quic_conn_exporter(struct wh_quic_conn *c, const char *label,
			  uint8_t *out, size_t len)
{
	int rv;

	if (!c->handshake_done)
		return -EINVAL;
	rv = gnutls_prf_rfc5705(c->tls, strlen(label), label, 0, NULL, len,
				(char *)out);
	if (rv != 0) {
		wh_err("tls: exporter failed: %s", gnutls_strerror(rv));
		return WH_ERR_TLS;
	}
	return 0;
}

/* ---------------------------------------------------------- connections */

static struct wh_quic_conn *conn_alloc(struct wh_quic_ep *ep,
				       const struct sockaddr *local,
				       socklen_t locallen,
				       const struct sockaddr *remote,
				       socklen_t remotelen)
{
	struct wh_quic_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->ep = ep;
	c->last_rx_ns = wh_now_ns();
	memcpy(&c->local, local, locallen);
	c->locallen = locallen;
	memcpy(&c->remote, remote, remotelen);
	c->remotelen = remotelen;
	wh_addr_str(remote, c->peer, sizeof(c->peer));
	ngtcp2_connection_close_error_default(&c->last_error);
	c->next = ep->conns;
	if (ep->conns)
		ep->conns->prev = c;
	ep->conns = c;
	ep->nconns++;
	return c;
}

static void conn_free(struct wh_quic_conn *c)
{
	struct wh_quic_ep *ep = c->ep;

	while (c->streams)
		stream_del(c, c->streams);
	if (ep->server)
		cidmap_remove_conn(ep, c);
	if (c->conn)
		ngtcp2_conn_del(c->conn);
	if (c->tls)
		gnutls_deinit(c->tls);
	if (c->prev)
		c->prev->next = c->next;
	else
		ep->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ep->nconns--;
	free(c);
}

/* conn_release - notify the owner (streams first, then the connection)
 * and free. */
static void conn_release(struct wh_quic_conn *c)
{
	const struct wh_quic_cbs *cbs = c->ep->cbs;

	while (c->streams)
		stream_close_notify(c, c->streams);
	if (cbs->on_close)
		cbs->on_close(c, c->dead_err, c->dead_reason, c->ud);
	conn_free(c);
}

static void conn_kill(struct wh_quic_conn *c, int err, const char *reason)
{
	if (c->dead)
		return;
	c->dead = true;
	c->dead_err = err;
	snprintf(c->dead_reason, sizeof(c->dead_reason), "%s",
		 reason ? reason : "");
}

/* ep_reap - free connections that died, outside ngtcp2's callbacks. */
static void ep_reap(struct wh_quic_ep *ep)
{
	struct wh_quic_conn *c, *n;

	if (ep->depth > 0)
		return;
	for (c = ep->conns; c; c = n) {
		n = c->next;
		if (c->dead)
			conn_release(c);
	}
}

static int conn_server_new(struct wh_quic_ep *ep, const ngtcp2_pkt_hd *hd,
			   const struct sockaddr *local, socklen_t locallen,
			   const struct sockaddr *remote, socklen_t remotelen,
			   struct wh_quic_conn **pc)
{
	struct wh_quic_conn *c;
	ngtcp2_callbacks cbs;
	ngtcp2_settings st;
	ngtcp2_transport_params tp;
	ngtcp2_cid scid;
	ngtcp2_path path;
	int rv;

	c = conn_alloc(ep, local, locallen, remote, remotelen);
	if (!c)
		return -ENOMEM;
	fill_callbacks(&cbs, true);
	fill_settings(ep, &st, &tp, remote);
	tp.original_dcid = hd->dcid;
	tp.stateless_reset_token_present = 1;
	scid.datalen = CID_LEN;
	if (random_bytes(tp.stateless_reset_token,
			 sizeof(tp.stateless_reset_token)) != 0 ||
	    new_cid(scid.data, CID_LEN) != 0) {
		rv = -EIO;
		goto fail;
	}
	path.local.addr = (struct sockaddr *)&c->local;
	path.local.addrlen = c->locallen;
	path.remote.addr = (struct sockaddr *)&c->remote;
	path.remote.addrlen = c->remotelen;
	path.user_data = NULL;
	rv = ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, &path,
				    hd->version, &cbs, &st, &tp, NULL, c);
	if (rv != 0) {
		wh_warn("quic: cannot accept %s: %s", c->peer,
			ngtcp2_strerror(rv));
		rv = -EIO;
		goto fail;
	}
	rv = conn_tls_init(c, true);
	if (rv < 0)
		goto fail;
	c->odcid = hd->dcid;
	if (cidmap_add(ep, &scid, c) != 0 || cidmap_add(ep, &hd->dcid, c) != 0) {
		rv = -ENOMEM;
		goto fail;
	}
	*pc = c;
	if (ep->cbs->on_accept)
		ep->cbs->on_accept(c, ep->ud);
	return 0;
fail:
	conn_free(c);
	return rv;
}

static void conn_handle_liberr(struct wh_quic_conn *c, int rv)
{
	if (rv == NGTCP2_ERR_CRYPTO)
		ngtcp2_connection_close_error_set_transport_error_tls_alert(
			&c->last_error, ngtcp2_conn_get_tls_alert(c->conn),
			NULL, 0);
	else
		ngtcp2_connection_close_error_set_transport_error_liberr(
			&c->last_error, rv, NULL, 0);
}

/* conn_peer_reason - the peer's CONNECTION_CLOSE reason, if any. */
static void conn_peer_reason(struct wh_quic_conn *c, char *buf, size_t size)
{
	ngtcp2_connection_close_error ccerr;
	size_t n;

	ngtcp2_conn_get_connection_close_error(c->conn, &ccerr);
	n = ccerr.reasonlen < size - 1 ? ccerr.reasonlen : size - 1;
	if (ccerr.reason && n)
		memcpy(buf, ccerr.reason, n);
	buf[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
}

static void conn_send_close(struct wh_quic_conn *c);

/* conn_expiry_error - an error from ngtcp2_conn_handle_expiry: the
 * connection is gone. */
static void conn_expiry_error(struct wh_quic_conn *c, int rv)
{
	if (rv == NGTCP2_ERR_IDLE_CLOSE) {
		conn_kill(c, WH_ERR_TIMEOUT, "idle timeout");
	} else if (rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
		conn_kill(c, WH_ERR_TIMEOUT, "handshake timeout");
	} else {
		conn_handle_liberr(c, rv);
		conn_send_close(c);
		conn_kill(c, WH_ERR_PROTO, ngtcp2_strerror(rv));
	}
}

/* conn_idle_ns - the idle timeout in force: ours, or the peer's if it
 * asked for less. */
static uint64_t conn_idle_ns(struct wh_quic_conn *c)
{
	const ngtcp2_transport_params *rp;
	uint64_t idle = c->ep->cfg.idle_timeout_ms * WH_NS_PER_MS;

	rp = ngtcp2_conn_get_remote_transport_params(c->conn);
	if (rp && rp->max_idle_timeout && rp->max_idle_timeout < idle)
		idle = rp->max_idle_timeout;
	return idle;
}

/*
 * conn_kick - fire the loss-recovery (probe) timer now if it is backed off
 * to more than |min_wait_ns| from |now| (see QUIET_MS).  ngtcp2 0.12 has no
 * call for this: its timers run when handle_expiry is given a time at or
 * past them, so it is given the timer's own deadline.  Never when that
 * would pass the idle deadline.  Returns true when it fired.
 */
static bool conn_kick(struct wh_quic_conn *c, uint64_t now,
		      uint64_t min_wait_ns)
{
	ngtcp2_conn_stat st;
	uint64_t idle;
	int rv;

	if (!c->handshake_done || c->dead || c->close_requested ||
	    ngtcp2_conn_is_in_closing_period(c->conn) ||
	    ngtcp2_conn_is_in_draining_period(c->conn))
		return false;
	ngtcp2_conn_get_conn_stat(c->conn, &st);
	if (st.pto_count == 0 || st.loss_detection_timer == UINT64_MAX ||
	    st.loss_detection_timer <= now + min_wait_ns)
		return false;
	idle = conn_idle_ns(c);
	if (st.loss_detection_timer + WH_NS_PER_S >= c->last_rx_ns + idle)
		return false;
	c->last_kick_ns = now;
	rv = ngtcp2_conn_handle_expiry(c->conn, st.loss_detection_timer);
	if (rv != 0) {
		conn_expiry_error(c, rv);
		return false;
	}
	conn_write(c);
	return true;
}

/* conn_send_check - ask the host whether it still knows our connection
 * (the CHECK datagram, docs/PROTOCOL.md). */
static void conn_send_check(struct wh_quic_conn *c)
{
	const ngtcp2_cid *dcid = ngtcp2_conn_get_dcid(c->conn);
	uint8_t buf[6 + NGTCP2_MAX_CIDLEN];

	if (dcid->datalen == 0 || dcid->datalen > NGTCP2_MAX_CIDLEN)
		return;
	buf[0] = RAW_MARK0;
	buf[1] = RAW_MARK1;
	buf[2] = CHK_MARK2;
	buf[3] = CHK_VERSION;
	buf[4] = CHK_CHECK;
	buf[5] = (uint8_t)dcid->datalen;
	memcpy(buf + 6, dcid->data, dcid->datalen);
	if (send(c->ep->fd, buf, 6 + dcid->datalen, 0) < 0)
		wh_debug("quic: check to %s: %s", c->peer, strerror(errno));
}

/* conn_probe - the client's silence timer (QUIET_MS). */
static void conn_probe(struct wh_quic_conn *c, uint64_t now)
{
	uint64_t quiet = QUIET_MS * WH_NS_PER_MS;

	if (now < c->last_rx_ns + quiet) {
		c->next_probe_ns = c->last_rx_ns + quiet;
		return;
	}
	c->next_probe_ns = now + PROBE_EVERY_MS * WH_NS_PER_MS;
	wh_debug("quic: nothing from %s for %llu ms: probing", c->peer,
		 (unsigned long long)((now - c->last_rx_ns) / WH_NS_PER_MS));
	conn_send_check(c);
	conn_kick(c, now, PROBE_EVERY_MS * WH_NS_PER_MS);
}

/* chk_input - a CHECK (host) or UNKNOWN (client) datagram. */
static void chk_input(struct wh_quic_ep *ep, const struct sockaddr *local,
		      const struct sockaddr *remote, socklen_t remotelen,
		      const uint8_t *data, size_t len)
{
	struct wh_quic_conn *c = ep->conns;
	const ngtcp2_cid *dcid;
	uint8_t reply[6 + NGTCP2_MAX_CIDLEN];

	if (len < 6 || data[3] != CHK_VERSION || data[5] > NGTCP2_MAX_CIDLEN ||
	    len != 6 + (size_t)data[5])
		return;
	if (ep->server) {
		uint64_t now = wh_now_ns();

		if (data[4] != CHK_CHECK)
			return;
		c = cidmap_find(ep, data + 6, data[5]);
		if (c) {
			/* the client is there again (it may have nothing of
			 * its own in flight to tell us): resend now what
			 * waits for a backed-off probe */
			if (!c->dead &&
			    now >= c->last_kick_ns + KICK_EVERY_MS * WH_NS_PER_MS)
				conn_kick(c, now, 0);
			return;
		}
		/* not ours (any more): say so, no bigger than the question */
		memcpy(reply, data, len);
		reply[4] = CHK_UNKNOWN;
		ep_sendmsg(ep, remote, remotelen, local, reply, len, len);
		return;
	}
	if (data[4] != CHK_UNKNOWN || !c || c->dead || !c->handshake_done)
		return;
	/* a connection that hears from its host ignores it */
	if (wh_now_ns() < c->last_rx_ns + QUIET_MS * WH_NS_PER_MS)
		return;
	dcid = ngtcp2_conn_get_dcid(c->conn);
	if (dcid->datalen != data[5] ||
	    memcmp(dcid->data, data + 6, dcid->datalen) != 0)
		return;
	wh_debug("quic: %s does not know this connection", c->peer);
	conn_kill(c, WH_ERR_CLOSED,
		  "the host does not know this connection (restarted?)");
}

static void conn_read_pkt(struct wh_quic_conn *c, const struct sockaddr *local,
			  socklen_t locallen, const struct sockaddr *remote,
			  socklen_t remotelen, const uint8_t *data, size_t len)
{
	ngtcp2_path path;
	ngtcp2_pkt_info pi = { 0 };
	char reason[128];
	uint64_t now;
	int rv;

	if (c->dead)
		return;
	path.local.addr = (struct sockaddr *)local;
	path.local.addrlen = locallen;
	path.remote.addr = (struct sockaddr *)remote;
	path.remote.addrlen = remotelen;
	path.user_data = NULL;
	now = wh_now_ns();
	rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, data, len, now);
	if (rv == 0) {
		c->last_rx_ns = now;
		/* the peer hears us again: resend what waits for a probe */
		if (now >= c->last_kick_ns + KICK_EVERY_MS * WH_NS_PER_MS)
			conn_kick(c, now, 0);
		return;
	}
	switch (rv) {
	case NGTCP2_ERR_DRAINING:
		conn_peer_reason(c, reason, sizeof(reason));
		conn_kill(c, WH_ERR_CLOSED, reason);
		return;
	case NGTCP2_ERR_DROP_CONN:
		conn_kill(c, WH_ERR_CLOSED, "");
		return;
	case NGTCP2_ERR_DISCARD_PKT:
		return;
	default:
		wh_debug("quic: %s: %s", c->peer, ngtcp2_strerror(rv));
		conn_handle_liberr(c, rv);
		conn_send_close(c);
		conn_kill(c, rv == NGTCP2_ERR_CRYPTO ? WH_ERR_TLS : WH_ERR_PROTO,
			  ngtcp2_strerror(rv));
		return;
	}
}

/* ------------------------------------------------------------- sending */

static void ep_sendmsg(struct wh_quic_ep *ep, const struct sockaddr *remote,
		       socklen_t remotelen, const struct sockaddr *local,
		       const uint8_t *buf, size_t len, size_t gso)
{
	struct iovec iov = { (void *)buf, len };
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t)) +
			 CMSG_SPACE(sizeof(struct in6_pktinfo))];
		struct cmsghdr align;
	} u;
	struct msghdr msg;
	struct cmsghdr *cm;
	size_t clen = 0;
	ssize_t n;

	memset(&msg, 0, sizeof(msg));
	memset(&u, 0, sizeof(u));
	if (!ep->server) {
		msg.msg_name = NULL; /* connected socket */
	} else {
		msg.msg_name = (void *)remote;
		msg.msg_namelen = remotelen;
	}
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	cm = CMSG_FIRSTHDR(&msg);
	if (len > gso) {
		uint16_t seg = (uint16_t)gso;

		cm->cmsg_level = SOL_UDP;
		cm->cmsg_type = UDP_SEGMENT;
		cm->cmsg_len = CMSG_LEN(sizeof(seg));
		memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
		clen += CMSG_SPACE(sizeof(seg));
		cm = CMSG_NXTHDR(&msg, cm);
	}
	if (ep->wildcard && local && cm) {
		if (local->sa_family == AF_INET) {
			struct in_pktinfo pk;

			memset(&pk, 0, sizeof(pk));
			pk.ipi_spec_dst =
				((const struct sockaddr_in *)local)->sin_addr;
			cm->cmsg_level = IPPROTO_IP;
			cm->cmsg_type = IP_PKTINFO;
			cm->cmsg_len = CMSG_LEN(sizeof(pk));
			memcpy(CMSG_DATA(cm), &pk, sizeof(pk));
			clen += CMSG_SPACE(sizeof(pk));
		} else if (local->sa_family == AF_INET6) {
			struct in6_pktinfo pk;

			memset(&pk, 0, sizeof(pk));
			pk.ipi6_addr =
				((const struct sockaddr_in6 *)local)->sin6_addr;
			cm->cmsg_level = IPPROTO_IPV6;
			cm->cmsg_type = IPV6_PKTINFO;
			cm->cmsg_len = CMSG_LEN(sizeof(pk));
			memcpy(CMSG_DATA(cm), &pk, sizeof(pk));
			clen += CMSG_SPACE(sizeof(pk));
		}
	}
	msg.msg_controllen = clen;
	if (clen == 0)
		msg.msg_control = NULL;
	wh_trace("q_send", len);
	do {
		n = sendmsg(ep->fd, &msg, 0);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return;
	if (len > gso && (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT)) {
		/* the device cannot segment: fall back to one packet a call */
		wh_debug("quic: UDP GSO unavailable (%s), sending packets singly",
			 strerror(errno));
		ep->gso = false;
		for (size_t off = 0; off < len; off += gso)
			ep_sendmsg(ep, remote, remotelen, local, buf + off,
				   len - off < gso ? len - off : gso,
				   len - off < gso ? len - off : gso);
		return;
	}
	/* EAGAIN, ENOBUFS, ECONNREFUSED...: the packets are lost; QUIC's loss
	 * recovery resends what matters */
	wh_debug("quic: sendmsg: %s", strerror(errno));
}

/* conn_send_close - write and send a CONNECTION_CLOSE with last_error. */
static void conn_send_close(struct wh_quic_conn *c)
{
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;
	ngtcp2_ssize n;

	if (!c->conn || ngtcp2_conn_is_in_closing_period(c->conn) ||
	    ngtcp2_conn_is_in_draining_period(c->conn))
		return;
	ngtcp2_path_storage_zero(&ps);
	n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi,
					       c->ep->txbuf, TXBUF_LEN,
					       &c->last_error, wh_now_ns());
	if (n > 0)
		ep_sendmsg(c->ep, ps.path.remote.addr, ps.path.remote.addrlen,
			   ps.path.local.addr, c->ep->txbuf, (size_t)n,
			   (size_t)n);
}

/* stream_vecs - describe |s|'s unsent bytes as up to MAX_VECS vectors;
 * *pall is set when they cover everything queued. */
static size_t stream_vecs(struct wh_quic_stream *s, ngtcp2_vec *v, bool *pall)
{
	struct seg *g = s->cur;
	size_t n = 0, off = s->cur_off;

	while (g && n < MAX_VECS) {
		v[n].base = g->data + off;
		v[n].len = g->len - off;
		n++;
		off = 0;
		g = g->next;
	}
	*pall = (g == NULL);
	return n;
}

/* send_batch - |len| bytes of packets of |gso| bytes each (the last may be
 * shorter) on |path|, in one sendmsg. */
static void send_batch(struct wh_quic_ep *ep, const ngtcp2_path *path,
		       const uint8_t *buf, size_t len, size_t gso)
{
	ep_sendmsg(ep, path->remote.addr, path->remote.addrlen,
		   path->local.addr, buf, len, gso);
}

static void conn_write(struct wh_quic_conn *c)
{
	struct wh_quic_ep *ep = c->ep;
	ngtcp2_path_storage ps, bps; /* this packet's path, the batch's */
	ngtcp2_pkt_info pi;
	ngtcp2_vec vecs[MAX_VECS];
	uint64_t ts = wh_now_ns();
	size_t mtu, quantum, tick, off = 0, gso = 0, nseg = 0, sent = 0;
	ngtcp2_conn_stat st;
	uint8_t *buf = ep->txbuf;

	if (c->dead)
		return;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_path_storage_zero(&bps);
	mtu = ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
	if (mtu == 0 || mtu > 65527)
		mtu = 1452;
	ngtcp2_conn_get_conn_stat(c->conn, &st);
	quantum = st.send_quantum;
	tick = st.pacing_rate > 0 ? (size_t)(st.pacing_rate * WH_NS_PER_MS)
				  : 0;
	if (tick > quantum)
		quantum *= WRITE_QUANTA;
	if (quantum < mtu)
		quantum = mtu;

	for (;;) {
		struct wh_quic_stream *s = sendq_head(c);
		ngtcp2_ssize n, ndata = -1;
		uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
		size_t nv = 0;
		bool all = true;
		int64_t sid = -1;

		while (s && s->blocked) {
			sendq_pop(c);
			s = sendq_head(c);
		}
		if (s) {
			sid = s->id;
			nv = stream_vecs(s, vecs, &all);
			if (all && s->fin_queued)
				flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
		}
		if (off + mtu > TXBUF_LEN || nseg >= MAX_GSO_SEGS ||
		    (!ep->gso && nseg > 0)) {
			send_batch(ep, &bps.path, buf, off, gso);
			off = nseg = gso = 0;
		}
		/* no packet past the budget: BBR's quantum is 64 KiB on a fast
		 * path, 45 full packets, the most one GSO batch holds
		 * (TXBUF_LEN); one more would go out alone in a sendmsg of
		 * its own and wake the peer for a single packet */
		if (sent + mtu > quantum)
			break;
		n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, buf + off,
					      mtu, &ndata, flags, sid, vecs, nv,
					      ts);
		if (n < 0) {
			switch (n) {
			case NGTCP2_ERR_WRITE_MORE:
				stream_advance(s, (size_t)ndata);
				if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) &&
				    s->cur == NULL)
					s->fin_sent = true;
				if (!stream_has_pending(s))
					sendq_pop(c);
				continue;
			case NGTCP2_ERR_STREAM_DATA_BLOCKED:
				s->blocked = true;
				sendq_pop(c);
				continue;
			case NGTCP2_ERR_STREAM_SHUT_WR:
			case NGTCP2_ERR_STREAM_NOT_FOUND:
				sendq_pop(c);
				s->cur = NULL;
				s->unsent = 0;
				s->fin_sent = true;
				continue;
			default:
				wh_debug("quic: write to %s: %s", c->peer,
					 ngtcp2_strerror((int)n));
				conn_handle_liberr(c, (int)n);
				conn_send_close(c);
				conn_kill(c, WH_ERR_PROTO,
					  ngtcp2_strerror((int)n));
				return;
			}
		}
		if (s && ndata >= 0) {
			stream_advance(s, (size_t)ndata);
			if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) &&
			    s->cur == NULL)
				s->fin_sent = true;
			/* the head goes on until it is done (sendq_push) */
			if (!stream_has_pending(s) && sendq_head(c) == s)
				sendq_pop(c);
		}
		if (n == 0)
			break;
		if (nseg > 0 && ((size_t)n > gso ||
				 !ngtcp2_path_eq(&ps.path, &bps.path))) {
			/* a bigger packet cannot join this GSO batch, nor
			 * one to another address (a path being validated:
			 * each packet goes where ngtcp2 says) */
			send_batch(ep, &bps.path, buf, off, gso);
			memmove(buf, buf + off, (size_t)n);
			off = nseg = 0;
		}
		if (nseg == 0) {
			gso = (size_t)n;
			ngtcp2_path_copy(&bps.path, &ps.path);
		}
		off += (size_t)n;
		nseg++;
		sent += (size_t)n;
		if ((size_t)n < gso) {
			send_batch(ep, &bps.path, buf, off, gso);
			off = nseg = gso = 0;
		}
	}
	if (off > 0)
		send_batch(ep, &bps.path, buf, off, gso);
	ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
	if (ep->wtrace && sent > 0) {
		/* what ended the write: the budget (q), the congestion window
		 * (c), pacing or flow control with data left (p), nothing more
		 * to send (e); then the state after it */
		ngtcp2_conn_get_conn_stat(c->conn, &st);
		fprintf(ep->wtrace, "%llu %zu %c %llu %llu %llu %llu %llu %llu\n",
			(unsigned long long)(ts / 1000), sent,
			sent + mtu > quantum ? 'q'
			: st.bytes_in_flight + mtu > st.cwnd ? 'c'
			: sendq_head(c) ? 'p' : 'e',
			(unsigned long long)st.cwnd,
			(unsigned long long)st.bytes_in_flight,
			(unsigned long long)(st.smoothed_rtt / 1000),
			(unsigned long long)(st.min_rtt / 1000),
			(unsigned long long)(st.pacing_rate * 1e9),
			(unsigned long long)st.latest_rtt);
	}
	if (c->close_requested) {
		/* what was queued before the close went out above (a final
		 * ERROR reply, say); now say goodbye */
		ngtcp2_connection_close_error_set_application_error(
			&c->last_error, c->close_err,
			(const uint8_t *)c->close_reason,
			strlen(c->close_reason));
		conn_send_close(c);
		conn_kill(c, 0, c->close_reason);
	}
}

/* ------------------------------------------------------------- receive */

static void ep_handle_packet(struct wh_quic_ep *ep,
			     const struct sockaddr *local, socklen_t locallen,
			     const struct sockaddr *remote,
			     socklen_t remotelen, const uint8_t *data,
			     size_t len)
{
	ngtcp2_version_cid vc;
	struct wh_quic_conn *c;
	ngtcp2_pkt_hd hd;
	int rv;

	if (len >= 2 && data[0] == RAW_MARK0 && data[1] == RAW_MARK1) {
		/* not QUIC: see new_cid() */
		if (len >= 3 && data[2] == CHK_MARK2) {
			chk_input(ep, local, remote, remotelen, data, len);
			return;
		}
		if (ep->raw_cb)
			ep->raw_cb(ep->raw_ud, data, len, remote, remotelen);
		return;
	}
	if (!ep->server) {
		if (ep->conns)
			conn_read_pkt(ep->conns, local, locallen, remote,
				      remotelen, data, len);
		return;
	}
	rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, CID_LEN);
	if (rv != 0)
		return; /* includes version negotiation: we speak only v1 */
	c = cidmap_find(ep, vc.dcid, vc.dcidlen);
	if (!c) {
		if (ngtcp2_accept(&hd, data, len) != 0)
			return;
		if (ep->nconns >= ep->cfg.max_conns) {
			wh_warn("quic: refusing %s: %zu connections already",
				"a new peer", ep->nconns);
			return;
		}
		if (conn_server_new(ep, &hd, local, locallen, remote,
				    remotelen, &c) != 0)
			return;
	}
	conn_read_pkt(c, local, locallen, remote, remotelen, data, len);
}

/* ep_hold_check - after a read (|got|: it received something): start a
 * hold when a client's bulk transfer on a long path calls for it (see
 * HOLD_STREAK). */
static void ep_hold_check(struct wh_quic_ep *ep, bool got)
{
	uint64_t now;
	ngtcp2_conn_stat st;

	if (ep->server || !ep->conns || ep->conns->dead ||
	    !ep->conns->handshake_done)
		return;
	if (!got) {
		ep->rx_streak = 0;
		return;
	}
	now = wh_now_ns();
	if (ep->rx_streak > 0 &&
	    now - ep->last_rx_read_ns <= HOLD_GAP_MS * WH_NS_PER_MS) {
		if (ep->rx_streak < HOLD_STREAK)
			ep->rx_streak++;
	} else {
		ep->rx_streak = 1;
	}
	ep->last_rx_read_ns = now;
	if (ep->rx_streak < HOLD_STREAK)
		return;
	ngtcp2_conn_get_conn_stat(ep->conns->conn, &st);
	if (st.smoothed_rtt >= HOLD_MIN_RTT_MS * NGTCP2_MILLISECONDS)
		ep->hold_until = now + HOLD_MS * WH_NS_PER_MS;
}

uint64_t wh_quic_conn_srtt_ns(struct wh_quic_conn *c)
{
	ngtcp2_conn_stat st;

	ngtcp2_conn_get_conn_stat(c->conn, &st);
	return st.smoothed_rtt;
}

bool wh_quic_ep_holding(struct wh_quic_ep *ep)
{
	return ep->hold_until != 0;
}

void wh_quic_ep_read(struct wh_quic_ep *ep)
{
	struct sockaddr_storage remote, local;
	union {
		char buf[CMSG_SPACE(sizeof(int)) +
			 CMSG_SPACE(sizeof(struct in6_pktinfo))];
		struct cmsghdr align;
	} u;
	struct iovec iov;
	struct msghdr msg;
	struct cmsghdr *cm;
	int rounds;

	ep->depth++;
	ep->hold_until = 0;
	for (rounds = 0; rounds < 128; rounds++) {
		ssize_t n;
		size_t gso = 0;
		socklen_t locallen = ep->locallen;

		memset(&msg, 0, sizeof(msg));
		iov.iov_base = ep->rxbuf;
		iov.iov_len = RXBUF_LEN;
		msg.msg_name = &remote;
		msg.msg_namelen = sizeof(remote);
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		n = recvmsg(ep->fd, &msg, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break; /* EAGAIN, or an ICMP error: nothing to do */
		}
		wh_trace("q_recv", (uint64_t)n);
		memcpy(&local, &ep->local, ep->locallen);
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level == SOL_UDP &&
			    cm->cmsg_type == UDP_GRO) {
				int v;

				memcpy(&v, CMSG_DATA(cm), sizeof(v));
				if (v > 0)
					gso = (size_t)v;
			} else if (cm->cmsg_level == IPPROTO_IP &&
				   cm->cmsg_type == IP_PKTINFO &&
				   local.ss_family == AF_INET) {
				struct in_pktinfo pk;

				memcpy(&pk, CMSG_DATA(cm), sizeof(pk));
				((struct sockaddr_in *)&local)->sin_addr =
					pk.ipi_addr;
			} else if (cm->cmsg_level == IPPROTO_IPV6 &&
				   cm->cmsg_type == IPV6_PKTINFO &&
				   local.ss_family == AF_INET6) {
				struct in6_pktinfo pk;

				memcpy(&pk, CMSG_DATA(cm), sizeof(pk));
				((struct sockaddr_in6 *)&local)->sin6_addr =
					pk.ipi6_addr;
			}
		}
		if (gso == 0)
			gso = (size_t)n;
		for (size_t off = 0; off < (size_t)n; off += gso) {
			size_t len = (size_t)n - off < gso ? (size_t)n - off
							    : gso;

			ep_handle_packet(ep, (struct sockaddr *)&local,
					 locallen, (struct sockaddr *)&remote,
					 msg.msg_namelen, ep->rxbuf + off,
					 len);
		}
	}
	ep_hold_check(ep, rounds > 0);
	ep->depth--;
	ep_reap(ep);
}

/* -------------------------------------------------------------- timers */

/*
 * conn_stall_deadline - when a connection holding stream data its peer has
 * not acknowledged is given up on, or UINT64_MAX.  ngtcp2's idle timer
 * restarts on every packet received, so a peer that sends (keep-alives,
 * retransmissions of its own) but acknowledges nothing we send, or never
 * opens its flow-control window again, would have us hold its data for
 * ever: a host would keep the replies a client asked for and cannot take
 * (its path back cut) as long as the client cares to go on sending.  So a
 * connection whose held data saw no acknowledgement for an idle timeout is
 * gone, as one that heard nothing would be.  A peer that is there
 * acknowledges within round trips, however slow its link.
 */
static uint64_t conn_stall_deadline(struct wh_quic_conn *c)
{
	if (c->held == 0 || !c->handshake_done)
		return UINT64_MAX;
	return c->acked_ns + conn_idle_ns(c);
}

void wh_quic_ep_expire(struct wh_quic_ep *ep)
{
	uint64_t now = wh_now_ns();
	struct wh_quic_conn *c;

	if (ep->hold_until && now >= ep->hold_until)
		wh_quic_ep_read(ep); /* what gathered; it may hold again */

	ep->depth++;
	for (c = ep->conns; c; c = c->next) {
		int rv;

		if (c->dead)
			continue;
		if (!ep->server && c->handshake_done &&
		    c->next_probe_ns <= now)
			conn_probe(c, now);
		if (!c->dead && conn_stall_deadline(c) <= now) {
			char why[96];

			snprintf(why, sizeof(why),
				 "nothing of %llu bytes acknowledged for %.1f s",
				 (unsigned long long)c->held,
				 (double)conn_idle_ns(c) / WH_NS_PER_S);
			wh_debug("quic: %s: %s", c->peer, why);
			conn_kill(c, WH_ERR_TIMEOUT, why);
		}
		if (c->dead || ngtcp2_conn_get_expiry(c->conn) > now)
			continue;
		rv = ngtcp2_conn_handle_expiry(c->conn, now);
		if (rv == 0)
			conn_write(c);
		else
			conn_expiry_error(c, rv);
	}
	ep->depth--;
	ep_reap(ep);
}

int wh_quic_ep_timeout_ms(struct wh_quic_ep *ep)
{
	uint64_t now = wh_now_ns(), min = UINT64_MAX;
	struct wh_quic_conn *c;

	for (c = ep->conns; c; c = c->next) {
		uint64_t t;

		if (c->dead || c->close_requested)
			return 0;
		t = ngtcp2_conn_get_expiry(c->conn);
		if (t < min)
			min = t;
		t = conn_stall_deadline(c);
		if (t < min)
			min = t;
		if (!ep->server && c->handshake_done && c->next_probe_ns < min)
			min = c->next_probe_ns;
	}
	if (ep->hold_until && ep->hold_until < min)
		min = ep->hold_until;
	if (min == UINT64_MAX)
		return -1;
	if (min <= now)
		return 0;
	min = (min - now + WH_NS_PER_MS - 1) / WH_NS_PER_MS;
	return min > 60000 ? 60000 : (int)min;
}

void wh_quic_ep_flush(struct wh_quic_ep *ep)
{
	struct wh_quic_conn *c;

	ep->depth++;
	for (c = ep->conns; c; c = c->next)
		conn_write(c);
	ep->depth--;
	ep_reap(ep);
}

/* ----------------------------------------------------------- endpoints */

static bool probe_gso(int fd)
{
	int seg = 1200;

	if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg)) != 0)
		return false;
	seg = 0;
	setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg));
	return true;
}

static int udp_socket(int family, bool *gso_ok)
{
	int fd, one = 1, size = 8 * 1024 * 1024;

	fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* larger buffers absorb bursts; the kernel caps them at rmem_max */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
	setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
	if (family == AF_INET) {
		setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
		/* don't fragment: QUIC sizes its own packets */
		int pmtu = IP_PMTUDISC_PROBE;

		setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu,
			   sizeof(pmtu));
	} else {
		setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one,
			   sizeof(one));
	}
	*gso_ok = probe_gso(fd);
	return fd;
}

int wh_quic_socket(int family)
{
	bool gso;

	return udp_socket(family, &gso);
}

void wh_quic_ep_set_raw(struct wh_quic_ep *ep, wh_quic_raw_cb cb, void *ud)
{
	ep->raw_cb = cb;
	ep->raw_ud = ud;
}

int wh_quic_ep_send_raw(struct wh_quic_ep *ep, const struct sockaddr *to,
			socklen_t tolen, const void *data, size_t len)
{
	if (sendto(ep->fd, data, len, 0, to, tolen) < 0)
		return -errno;
	return 0;
}

static struct wh_quic_ep *ep_alloc(const struct wh_quic_config *cfg,
				   const struct wh_quic_cbs *cbs, void *ud)
{
	struct wh_quic_ep *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return NULL;
	ep->fd = -1;
	if (getenv("WH_QUIC_WRITES") && getenv("WH_QUIC_WRITES")[0]) {
		char p[4096];

		/* one file per process: the prefix, a dot, the pid */
		snprintf(p, sizeof(p), "%s.%d", getenv("WH_QUIC_WRITES"),
			 (int)getpid());
		ep->wtrace = fopen(p, "we");
	}
	if (cfg)
		ep->cfg = *cfg;
	else
		wh_quic_config_default(&ep->cfg, false);
	ep->cbs = cbs;
	ep->ud = ud;
	return ep;
}

int wh_quic_server_new(const struct sockaddr *addr, socklen_t addrlen,
		       const struct wh_quic_config *cfg,
		       const struct wh_quic_cbs *cbs, void *ud,
		       struct wh_quic_ep **pep)
{
	struct wh_quic_ep *ep = ep_alloc(cfg, cbs, ud);
	int rv;

	if (!ep)
		return -ENOMEM;
	ep->server = true;
	rv = udp_socket(addr->sa_family, &ep->gso);
	if (rv < 0)
		goto fail;
	ep->fd = rv;
	if (addr->sa_family == AF_INET6) {
		int off = 0;

		setsockopt(ep->fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	}
	if (bind(ep->fd, addr, addrlen) != 0) {
		rv = -errno;
		goto fail;
	}
	ep->locallen = sizeof(ep->local);
	if (getsockname(ep->fd, (struct sockaddr *)&ep->local,
			&ep->locallen) != 0) {
		rv = -errno;
		goto fail;
	}
	if (addr->sa_family == AF_INET)
		ep->wildcard = ((const struct sockaddr_in *)addr)->sin_addr.s_addr ==
			       htonl(INADDR_ANY);
	else
		ep->wildcard = memcmp(&((const struct sockaddr_in6 *)addr)->sin6_addr,
				      &in6addr_any, sizeof(in6addr_any)) == 0;
	rv = wh_tls_make_server_cred(&ep->cred);
	if (rv < 0)
		goto fail;
	*pep = ep;
	return 0;
fail:
	wh_quic_ep_del(ep);
	return rv;
}

int wh_quic_client_new(const struct sockaddr *addr, socklen_t addrlen,
		       const struct wh_quic_config *cfg,
		       const struct wh_quic_cbs *cbs, void *ud,
		       struct wh_quic_ep **pep, struct wh_quic_conn **pconn)
{
	bool gso;
	int fd = udp_socket(addr->sa_family, &gso);

	if (fd < 0)
		return fd;
	return wh_quic_client_new_fd(fd, addr, addrlen, cfg, cbs, ud, pep,
				     pconn);
}

int wh_quic_client_new_fd(int fd, const struct sockaddr *addr,
			  socklen_t addrlen, const struct wh_quic_config *cfg,
			  const struct wh_quic_cbs *cbs, void *ud,
			  struct wh_quic_ep **pep,
			  struct wh_quic_conn **pconn)
{
	struct wh_quic_ep *ep = ep_alloc(cfg, cbs, ud);
	struct wh_quic_conn *c;
	ngtcp2_callbacks ncb;
	ngtcp2_settings st;
	ngtcp2_transport_params tp;
	ngtcp2_cid dcid, scid;
	ngtcp2_path path;
	int rv;

	if (!ep) {
		close(fd);
		return -ENOMEM;
	}
	ep->fd = fd;
	ep->gso = probe_gso(fd);
	if (connect(ep->fd, addr, addrlen) != 0) {
		rv = -errno;
		goto fail;
	}
	ep->locallen = sizeof(ep->local);
	if (getsockname(ep->fd, (struct sockaddr *)&ep->local,
			&ep->locallen) != 0) {
		rv = -errno;
		goto fail;
	}
	rv = gnutls_certificate_allocate_credentials(&ep->cred);
	if (rv != 0) {
		rv = WH_ERR_TLS;
		goto fail;
	}
	c = conn_alloc(ep, (struct sockaddr *)&ep->local, ep->locallen, addr,
		       addrlen);
	if (!c) {
		rv = -ENOMEM;
		goto fail;
	}
	c->ud = ud;
	fill_callbacks(&ncb, false);
	fill_settings(ep, &st, &tp, addr);
	dcid.datalen = 18;
	scid.datalen = CLIENT_CID_LEN;
	if (random_bytes(dcid.data, dcid.datalen) != 0 ||
	    new_cid(scid.data, scid.datalen) != 0) {
		rv = -EIO;
		goto fail;
	}
	path.local.addr = (struct sockaddr *)&c->local;
	path.local.addrlen = c->locallen;
	path.remote.addr = (struct sockaddr *)&c->remote;
	path.remote.addrlen = c->remotelen;
	path.user_data = NULL;
	rv = ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path,
				    NGTCP2_PROTO_VER_V1, &ncb, &st, &tp, NULL,
				    c);
	if (rv != 0) {
		wh_err("quic: cannot create a connection: %s",
		       ngtcp2_strerror(rv));
		rv = -EIO;
		goto fail;
	}
	if (ep->cfg.keepalive_ms)
		ngtcp2_conn_set_keep_alive_timeout(
			c->conn, ep->cfg.keepalive_ms * NGTCP2_MILLISECONDS);
	rv = conn_tls_init(c, false);
	if (rv < 0)
		goto fail;
	*pep = ep;
	*pconn = c;
	return 0;
fail:
	wh_quic_ep_del(ep);
	return rv;
}

void wh_quic_ep_del(struct wh_quic_ep *ep)
{
	if (!ep)
		return;
	ep->depth++;
	while (ep->conns) {
		struct wh_quic_conn *c = ep->conns;

		if (!c->dead && c->conn && c->handshake_done) {
			ngtcp2_connection_close_error_set_application_error(
				&c->last_error, 0, (const uint8_t *)"shutdown",
				8);
			conn_send_close(c);
		}
		if (!c->dead)
			conn_kill(c, 0, "shutdown");
		conn_release(c);
	}
	for (size_t b = 0; b < CIDMAP_BUCKETS; b++) {
		while (ep->cidmap[b]) {
			struct cid_entry *e = ep->cidmap[b];

			ep->cidmap[b] = e->next;
			free(e);
		}
	}
	if (ep->cred)
		gnutls_certificate_free_credentials(ep->cred);
	if (ep->fd >= 0)
		close(ep->fd);
	if (ep->wtrace)
		fclose(ep->wtrace);
	free(ep);
}

int wh_quic_ep_fd(struct wh_quic_ep *ep)
{
	return ep->fd;
}

int wh_quic_ep_local_addr(struct wh_quic_ep *ep, struct sockaddr_storage *ss,
			  socklen_t *len)
{
	memcpy(ss, &ep->local, ep->locallen);
	*len = ep->locallen;
	return 0;
}

size_t wh_quic_ep_nconns(struct wh_quic_ep *ep)
{
	return ep->nconns;
}

int wh_quic_ep_conns(struct wh_quic_ep *ep, struct wh_quic_conn ***pv,
		     size_t *pn)
{
	struct wh_quic_conn **v, *c;
	size_t n = 0;

	*pv = NULL;
	*pn = 0;
	if (ep->nconns == 0)
		return 0;
	v = calloc(ep->nconns, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (c = ep->conns; c && n < ep->nconns; c = c->next)
		if (!c->dead)
			v[n++] = c;
	*pv = v;
	*pn = n;
	return 0;
}

void wh_quic_conn_set_ud(struct wh_quic_conn *c, void *ud)
{
	c->ud = ud;
}

void *wh_quic_conn_ud(struct wh_quic_conn *c)
{
	return c->ud;
}

const char *wh_quic_conn_peer(struct wh_quic_conn *c)
{
	return c->peer;
}

void wh_quic_conn_close(struct wh_quic_conn *c, uint64_t app_err,
			const char *reason)
{
	if (c->close_requested || c->dead)
		return;
	c->close_requested = true;
	c->close_err = app_err;
	snprintf(c->close_reason, sizeof(c->close_reason), "%s",
		 reason ? reason : "");
}

bool wh_quic_conn_closing(struct wh_quic_conn *c)
{
	return c->close_requested || c->dead;
}
