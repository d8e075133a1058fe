/*
 * wh_host.c - the host's event loop: QUIC and TLS/TCP server (wh_net.h),
 * authentication, request service and change notifications.
 *
 * One thread.  epoll watches the network endpoint (UDP and TCP sockets),
 * the share's inotify fd and a signalfd; the timeout is the nearest
 * transport timer or the invalidation flush.  Requests are served by a small pool of worker threads (disk I/O
 * must not stall the network), whose replies come back to the loop through
 * an eventfd.  A connection moves NEW -> WAIT_AUTH -> AUTHED on its control
 * stream (the first stream the client opens); any other stream before
 * AUTHED closes the connection.  Malformed frames close only the
 * connection that sent them.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <sodium.h>

#include "auth/wh_pake.h"
#include "common/wh_buf.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "common/wh_trace.h"
#include "host/wh_hctrl.h"
#include "host/wh_host.h"
#include "host/wh_mcache.h"
#include "host/wh_share.h"
#include "host/wh_zhost.h"
#include "net/wh_addr.h"
#include "net/wh_net.h"
#include "proto/wh_proto.h"
#include "signal/wh_rendezvous.h"

#define HOST_CAPS (WH_CAP_INVAL | WH_CAP_READDIRPLUS | WH_CAP_CHUNKS | \
		   WH_CAP_MSTREAM | WH_CAP_SMALL)
#define PAKE_LABEL "EXPORTER-wormhole-pake"
#define INVAL_DELAY_MS 30   /* coalesce bursts of changes */
#define INVAL_MAX_PENDING 4096
#define APP_ERR_PROTO 1
#define APP_ERR_AUTH WH_HCTRL_APP_ERR
#define APP_ERR_SHUTDOWN 3
#define APP_ERR_BUSY 4
#define WORKERS 4           /* threads doing disk I/O for requests (a
			     * streamed MANIFEST may wait in one) */
#define LATER_MS 50         /* a MANIFEST not computed yet is looked at
			     * again after this (WH_SHARE_LATER) */

/*
 * Connections not yet authenticated: anyone who reaches the port can make
 * one (the TLS handshake asks for no secret), and a client keeps its
 * connection alive with PINGs, so 256 that never say HELLO would hold
 * every slot of the transport for as long as they like, and no client
 * with the code could connect.  So a connection must be authenticated
 * AUTH_MS after it was accepted, and at most UNAUTH_MAX wait at once: a
 * new one closes the one that has waited longest.
 */
#define AUTH_MS 10000
#define AUTH_SWEEP_MS 500 /* how often the deadline is checked */
#define UNAUTH_MAX 64

/*
 * Replies held: a reply handed to the transport stays in memory until the
 * client has acknowledged all of it (QUIC) or the kernel took it (TCP),
 * so a client that asks for much and takes nothing (stopped, or its path
 * back cut) would make the host hold every reply it asked for: 128 MiB
 * per connection of 1 MiB READs.  So each connection has a budget.  A
 * request being served counts at the most its reply can be (req_charge),
 * a reply sent at its size until its stream is done; a connection holding
 * HOLD_CONN_MAX or more, or HOLD_CONN_MIN or more while the connections
 * together hold HOLD_HOST_MAX, keeps its further requests waiting, in
 * order, until it holds less.  Every connection may hold HOLD_CONN_MIN,
 * so clients that stall cannot starve the others.  A bulk copy keeps its
 * requests in flight to cover the path's bandwidth-delay product (twice
 * it, wh_window.h), far less than HOLD_CONN_MAX on any link but a very
 * long fast one.
 */
#define HOLD_CONN_MIN (8u << 20)
#define HOLD_CONN_MAX (32u << 20)
#define HOLD_HOST_MAX (128u << 20)

struct host;

struct hconn {
	int refs;  /* the connection itself + one per job in flight */
	struct host *host;
	struct wh_net_conn *nc;
	struct wh_net_stream *ctrl;
	struct wh_hctrl auth; /* the control stream's state machine */
	uint64_t caps;        /* negotiated, once authenticated */
	unsigned id;
	uint64_t requests;  /* served, for the log */
	uint64_t bytes_out; /* reply bytes, for the log */
	struct wh_zrate zrate; /* delivery rate, for compression */
	uint64_t zsaved, zpacked; /* bytes compression saved, in replies */
	uint64_t accepted_ns; /* for the authentication deadline */
	bool unauthed;        /* counted in host->unauthed */
	uint64_t held;      /* replies held, requests served: see HOLD_* */
	uint64_t held_peak; /* the most it held, for the log */
	struct hstream *park_head, *park_tail; /* requests waiting, in order */
	uint64_t parked;    /* requests that had to wait, for the log */
	struct hconn *wait_next; /* in host->waiting, if parked */
	bool waiting;
	/* its jobs waiting for a worker, and its place in the pool's turn
	 * (it has one while it has jobs waiting): protected by the pool's
	 * lock */
	struct job *todo_head, *todo_tail;
	struct hconn *turn_next;
};

struct job;

struct hstream {
	struct wh_buf rx;
	bool answered;
	bool parked;        /* its request waits for the budget */
	struct hstream *park_next;
	struct wh_net_stream *stream;
	uint64_t charge;    /* what its request counts while it is served */
	uint64_t held;      /* its reply's bytes, held until the stream ends */
	struct job *job; /* request being served, if any */
	size_t reply_len; /* bytes of the reply sent, for the link rate */
	size_t reply_file; /* and the bytes it stands for, uncompressed */
};

/* A request handed to the workers.  Only |req|, |len|, |resp| and |rv| are
 * touched by a worker (and |zh|, |link| read, |zsaved| written);
 * everything else belongs to the loop thread. */
struct job {
	struct job *next;
	struct hconn *hc;
	struct wh_net_stream *stream;
	struct hstream *hs; /* NULL once the stream went away */
	uint8_t *req;
	size_t len;
	struct wh_buf resp;
	int rv;
	int fd;              /* a READ's file, opened already, or -1 */
	struct wh_zhost *zh; /* compress the reply (WH_CAP_ZSTD), or NULL */
	struct wh_zlink link; /* the path, when the job was handed out */
	size_t zsaved;       /* bytes compression saved on the reply */
	uint64_t charge;     /* counted in hc->held while it is served */
	uint64_t due;        /* in pool->later: when to serve it again */
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	/* the connections with jobs waiting, each in turn: a worker takes
	 * the first one's oldest job and sends it to the back, so one
	 * client's many requests never make another's few wait behind them;
	 * protected by lock */
	struct hconn *turn_head, *turn_tail;
	struct job *later_head, *later_tail; /* served again at their |due|,
					      * protected by lock */
	struct job *done;                  /* protected by lock */
	bool stop;                         /* protected by lock */
	int donefd;
	struct wh_share *share;
	pthread_t threads[WORKERS];
	int nthreads;
};

struct inval {
	char *dir, *name;
};

struct host {
	const struct wh_host_opts *opts;
	struct wh_share *share;
	struct wh_mcache *mc;
	struct wh_zhost *zh; /* NULL: compression disabled */
	struct pool pool;
	struct wh_net_ep *ep;
	struct wh_rdv_host *rdv; /* NULL without a signal server */
	unsigned failures;
	bool locked;
	unsigned next_id;
	struct inval pending[INVAL_MAX_PENDING];
	size_t npending;
	bool overflow;
	uint64_t inval_due; /* ns; 0 if nothing pending */
	uint64_t busy_wall, busy_cpu; /* start of the CPU sample, ns */
	double net_busy; /* the loop's recent CPU share, for compression */
	unsigned unauthed; /* connections waiting to authenticate */
	uint64_t auth_ns;  /* how long they may (AUTH_MS) */
	uint64_t auth_next; /* the next look for those past it, ns */
	uint64_t held;   /* what all connections hold (HOLD_*) */
	struct hconn *waiting; /* connections with requests parked */
	bool resuming;
};

/* ------------------------------------------------------------ helpers */

/* send_buf - hand |b|'s bytes to the stream (ownership moves). */
static int send_buf(struct wh_net_conn *nc, struct wh_net_stream *s,
		    struct wh_buf *b, bool fin)
{
	int rv = wh_net_send(nc, s, b->data, b->len, fin, free);

	wh_buf_init(b);
	return rv;
}

static void count_failure(struct hconn *hc, const char *why)
{
	struct host *h = hc->host;

	h->failures++;
	wh_warn("client #%u (%s): %s (failed attempt %u of %u)", hc->id,
		wh_net_conn_peer(hc->nc), why, h->failures,
		WH_HOST_MAX_FAILURES);
	if (h->failures >= WH_HOST_MAX_FAILURES && !h->locked) {
		h->locked = true;
		wh_err("too many failed attempts for this join code: refusing "
		       "every further attempt; restart the host to get a new "
		       "code");
	}
}

/* ------------------------------------------------------ authentication */

/* host_caps - what this host offers; WH_HOST_NO_SMALL in the environment
 * withholds GET_SMALL, WH_HOST_NO_ZSMALL compressed GET_SMALL replies, so
 * that tests can play a host that predates them (ZSTD is added when
 * compression is on, see cb_accept; ZSMALL goes only with ZSTD and SMALL,
 * see host/wh_hctrl.c) */
static uint64_t host_caps(void)
{
	uint64_t caps = HOST_CAPS | WH_CAP_ZSMALL;

	if (getenv("WH_HOST_NO_SMALL"))
		caps &= ~WH_CAP_SMALL;
	if (getenv("WH_HOST_NO_ZSMALL"))
		caps &= ~WH_CAP_ZSMALL;
	return caps;
}

/* The control stream's machine (host/wh_hctrl.h) acts on the connection
 * through these. */
static int hctrl_send(void *ud, struct wh_buf *b, bool fin)
{
	struct hconn *hc = ud;

	if (!hc->ctrl) {
		wh_buf_free(b);
		return WH_ERR_CLOSED;
	}
	return send_buf(hc->nc, hc->ctrl, b, fin);
}

static void hctrl_close(void *ud, uint64_t app_err, const char *reason)
{
	struct hconn *hc = ud;

	wh_net_conn_close(hc->nc, app_err, reason);
}

static int hctrl_exporter(void *ud, uint8_t *out, size_t len)
{
	struct hconn *hc = ud;

	return wh_net_conn_exporter(hc->nc, PAKE_LABEL, out, len);
}

static void hctrl_failure(void *ud, const char *why)
{
	count_failure(ud, why);
}

static bool hctrl_locked(void *ud)
{
	struct hconn *hc = ud;

	return hc->host->locked;
}

/* unauth_end - |hc| no longer waits to authenticate (it did, or it is
 * closing) */
static void unauth_end(struct hconn *hc)
{
	if (hc->unauthed) {
		hc->unauthed = false;
		hc->host->unauthed--;
	}
}

static void hctrl_authed(void *ud)
{
	struct hconn *hc = ud;

	hc->caps = hc->auth.caps;
	unauth_end(hc);
	wh_info("client #%u (%s) authenticated", hc->id,
		wh_net_conn_peer(hc->nc));
}

/* unauth_close - close |hc|, not authenticated, for |why| */
static void unauth_close(struct hconn *hc, const char *why)
{
	wh_warn("client #%u (%s): %s: closing its connection", hc->id,
		wh_net_conn_peer(hc->nc), why);
	unauth_end(hc);
	wh_net_conn_close(hc->nc, APP_ERR_BUSY, why);
}

/* unauth_sweep - close the connections past the authentication deadline
 * and, if |room| and UNAUTH_MAX wait, the one that waited longest (so a
 * new one may wait) */
static void unauth_sweep(struct host *h, bool room, uint64_t now)
{
	struct wh_net_conn **v;
	struct hconn *oldest = NULL;
	size_t n;

	if (h->unauthed == 0 || wh_net_ep_conns(h->ep, &v, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct hconn *hc = wh_net_conn_ud(v[i]);

		if (!hc || !hc->unauthed || !hc->nc)
			continue;
		if (now - hc->accepted_ns >= h->auth_ns)
			unauth_close(hc, "not authenticated in time");
		else if (!oldest || hc->accepted_ns < oldest->accepted_ns)
			oldest = hc;
	}
	free(v);
	if (room && oldest && h->unauthed >= UNAUTH_MAX)
		unauth_close(oldest, "too many connections waiting to "
				     "authenticate");
}

static const struct wh_hctrl_ops hctrl_ops = {
	.send = hctrl_send,
	.close = hctrl_close,
	.exporter = hctrl_exporter,
	.failure = hctrl_failure,
	.locked = hctrl_locked,
	.authed = hctrl_authed,
};

/* ---------------------------------------------------------- worker pool */

static void hconn_unref(struct hconn *hc)
{
	if (--hc->refs > 0)
		return;
	wh_hctrl_free(&hc->auth);
	free(hc);
}

static void job_free(struct job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	free(j->req);
	wh_buf_free(&j->resp);
	free(j);
}

static void turn_push(struct pool *p, struct hconn *hc)
{
	hc->turn_next = NULL;
	if (p->turn_tail)
		p->turn_tail->turn_next = hc;
	else
		p->turn_head = hc;
	p->turn_tail = hc;
}

/* todo_push - |j| waits for a worker behind its connection's others (lock
 * held) */
static void todo_push(struct pool *p, struct job *j)
{
	struct hconn *hc = j->hc;

	j->next = NULL;
	if (hc->todo_tail) {
		hc->todo_tail->next = j;
	} else {
		hc->todo_head = j;
		turn_push(p, hc); /* it had nothing waiting: not in the turn */
	}
	hc->todo_tail = j;
}

/* todo_pop - the next job for a worker, or NULL (lock held): the oldest of
 * the connection whose turn it is */
static struct job *todo_pop(struct pool *p)
{
	struct hconn *hc = p->turn_head;
	struct job *j;

	if (!hc)
		return NULL;
	p->turn_head = hc->turn_next;
	if (!p->turn_head)
		p->turn_tail = NULL;
	j = hc->todo_head;
	hc->todo_head = j->next;
	if (!hc->todo_head)
		hc->todo_tail = NULL;
	else
		turn_push(p, hc);
	return j;
}

/* later_due - the jobs put off whose time came go to the end of the
 * queue (lock held); returns when the next is due, or UINT64_MAX */
static uint64_t later_due(struct pool *p)
{
	uint64_t now = wh_now_ns();
	struct job *j;

	while ((j = p->later_head) && j->due <= now) {
		p->later_head = j->next;
		if (!p->later_head)
			p->later_tail = NULL;
		todo_push(p, j);
	}
	return j ? j->due : UINT64_MAX;
}

/* later_push - put |j| off for LATER_MS (lock held): all are put off for
 * the same time, so the list is in the order they come due */
static void later_push(struct pool *p, struct job *j)
{
	j->due = wh_now_ns() + (uint64_t)LATER_MS * WH_NS_PER_MS;
	j->next = NULL;
	if (p->later_tail)
		p->later_tail->next = j;
	else
		p->later_head = j;
	p->later_tail = j;
}

static void *worker_main(void *arg)
{
	struct pool *p = arg;

	for (;;) {
		struct job *j;
		uint64_t one = 1;

		pthread_mutex_lock(&p->lock);
		for (;;) {
			uint64_t next = later_due(p);
			struct timespec ts;

			if (p->stop || p->turn_head)
				break;
			if (next == UINT64_MAX) {
				pthread_cond_wait(&p->cv, &p->lock);
				continue;
			}
			ts.tv_sec = (time_t)(next / WH_NS_PER_S);
			ts.tv_nsec = (long)(next % WH_NS_PER_S);
			pthread_cond_timedwait(&p->cv, &p->lock, &ts);
		}
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		j = todo_pop(p);
		pthread_mutex_unlock(&p->lock);

		wh_trace("w_start", 0);
		j->rv = wh_share_serve_from(p->share, j->hc->id, j->req,
					    j->len, j->fd, &j->resp);
		wh_trace("w_served", (uint64_t)(int64_t)j->rv);
		j->fd = -1; /* closed by wh_share_serve_from */
		if (j->rv == WH_SHARE_LATER) {
			/* its manifest is being computed: not in a worker */
			pthread_mutex_lock(&p->lock);
			later_push(p, j);
			pthread_mutex_unlock(&p->lock);
			continue;
		}
		if (j->rv == 0 && j->zh)
			j->zsaved = wh_zhost_pack(j->zh, j->req, j->len,
						  &j->resp, &j->link);

		pthread_mutex_lock(&p->lock);
		j->next = p->done;
		p->done = j;
		pthread_mutex_unlock(&p->lock);
		(void)!write(p->donefd, &one, sizeof(one));
	}
}

static int pool_start(struct pool *p, struct wh_share *share)
{
	pthread_condattr_t ca;

	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wh_now_ns's */
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	p->share = share;
	p->donefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->donefd < 0)
		return -errno;
	for (int i = 0; i < WORKERS; i++) {
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
			break;
		p->nthreads++;
	}
	return p->nthreads > 0 ? 0 : -EAGAIN;
}

static void pool_submit(struct pool *p, struct job *j)
{
	pthread_mutex_lock(&p->lock);
	todo_push(p, j);
	pthread_mutex_unlock(&p->lock);
	/* after the unlock: a worker woken under it would only wait for it */
	pthread_cond_signal(&p->cv);
}

static void pool_stop(struct pool *p)
{
	struct job *j;

	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	p->nthreads = 0;
	/* jobs never served or never collected: drop them */
	while ((j = todo_pop(p))) {
		hconn_unref(j->hc);
		job_free(j);
	}
	while ((j = p->later_head)) {
		p->later_head = j->next;
		hconn_unref(j->hc);
		job_free(j);
	}
	while ((j = p->done)) {
		p->done = j->next;
		hconn_unref(j->hc);
		job_free(j);
	}
	if (p->donefd >= 0)
		close(p->donefd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cv);
}

static void job_finish(struct job *j);
static int start_job(struct hconn *hc, struct hstream *hs);

/* ------------------------------------------------------------ budget */

/* req_charge - what the request |req| (|len| bytes, a whole frame of
 * |type|) counts while it is served: the most its reply can be */
static uint64_t req_charge(uint16_t type, const uint8_t *req, size_t len)
{
	const uint64_t most = WH_MAX_REPLY_FRAME + WH_FRAME_HDR_LEN;
	const uint64_t hdr = 64u << 10; /* a reply's fields, an ERROR */
	struct wh_msg m;
	uint64_t n;

	/* the sizes asked for; a request that does not decode gets an
	 * ERROR */
	if ((type == WH_MSG_READ || type == WH_MSG_CHUNK ||
	     type == WH_MSG_GET_SMALL) &&
	    wh_msg_decode(req, len, WH_MAX_REQ_FRAME, &m) < 0)
		return hdr;
	switch (type) {
	case WH_MSG_READ:
		return hdr + m.u.read.length;
	case WH_MSG_CHUNK:
		return hdr + m.u.chunk.length;
	case WH_MSG_GET_SMALL:
		n = hdr + (uint64_t)m.u.get_small.count *
				  (WH_MAX_SMALL_FILE + 128);
		return n < most ? n : most;
	case WH_MSG_MANIFEST:
	case WH_MSG_MANIFEST_STREAM:
		return hdr + (uint64_t)WH_MAX_MANIFEST_ENTRIES *
				     WH_MANIFEST_ENTRY_LEN;
	case WH_MSG_READDIR:
		return hdr + (uint64_t)WH_MAX_READDIR_ENTRIES *
				     (2 + WH_MAX_NAME + WH_ATTR_WIRE_LEN);
	default:
		return hdr; /* LOOKUP, GETATTR, READLINK, STATFS, unknown */
	}
}

/* hold, unhold - |n| more or fewer bytes held by |hc|; nothing once the
 * connection is gone (cb_close gave back all it held) */
static void hold(struct hconn *hc, uint64_t n)
{
	if (!hc->nc)
		return;
	hc->held += n;
	hc->host->held += n;
	if (hc->held > hc->held_peak)
		hc->held_peak = hc->held;
}

static void unhold(struct hconn *hc, uint64_t n)
{
	if (!hc->nc)
		return;
	n = n < hc->held ? n : hc->held;
	hc->held -= n;
	hc->host->held -= n;
}

static bool budget_ok(const struct hconn *hc)
{
	if (hc->held < HOLD_CONN_MIN)
		return true;
	if (hc->held >= HOLD_CONN_MAX)
		return false;
	return hc->host->held < HOLD_HOST_MAX;
}

/* park - |hs|'s request waits behind |hc|'s others */
static void park(struct hconn *hc, struct hstream *hs)
{
	struct host *h = hc->host;

	hs->parked = true;
	hs->park_next = NULL;
	if (hc->park_tail)
		hc->park_tail->park_next = hs;
	else
		hc->park_head = hs;
	hc->park_tail = hs;
	if (!hc->waiting) {
		hc->waiting = true;
		hc->wait_next = h->waiting;
		h->waiting = hc;
	}
	if (hc->parked++ == 0)
		wh_info("client #%u (%s): %llu MiB of its replies not yet "
			"taken (%llu MiB by all clients); its further "
			"requests wait", hc->id, wh_net_conn_peer(hc->nc),
			(unsigned long long)(hc->held >> 20),
			(unsigned long long)(h->held >> 20));
}

/* unpark - take |hs| out of |hc|'s waiting requests (its stream ended) */
static void unpark(struct hconn *hc, struct hstream *hs)
{
	struct hstream **pp = &hc->park_head, *prev = NULL;

	while (*pp && *pp != hs) {
		prev = *pp;
		pp = &(*pp)->park_next;
	}
	if (!*pp)
		return;
	*pp = hs->park_next;
	if (hc->park_tail == hs)
		hc->park_tail = prev;
	hs->parked = false;
	hs->park_next = NULL;
}

/* leave_waiting - take |hc| out of the host's list of connections with
 * requests waiting */
static void leave_waiting(struct hconn *hc)
{
	struct hconn **pp = &hc->host->waiting;

	while (*pp && *pp != hc)
		pp = &(*pp)->wait_next;
	if (*pp)
		*pp = hc->wait_next;
	hc->wait_next = NULL;
	hc->waiting = false;
}

/* resume - serve the waiting requests the budget now allows, each
 * connection's in order (loop thread) */
static void resume(struct host *h)
{
	bool again = true;

	if (h->resuming)
		return; /* a request served inline gave back: the loop below
			 * looks again */
	h->resuming = true;
	while (again) {
		struct hconn *hc, *next;

		again = false;
		for (hc = h->waiting; hc; hc = next) {
			next = hc->wait_next;
			while (hc->park_head && hc->nc &&
			       !wh_net_conn_closing(hc->nc) && budget_ok(hc)) {
				struct hstream *hs = hc->park_head;

				unpark(hc, hs);
				again = true;
				if (start_job(hc, hs) < 0) {
					wh_net_conn_close(hc->nc,
							  APP_ERR_SHUTDOWN,
							  "out of memory");
					break;
				}
			}
			if (!hc->park_head)
				leave_waiting(hc);
		}
	}
	h->resuming = false;
}

/* pool_collect - send the replies the workers finished (loop thread). */
static void pool_collect(struct pool *p)
{
	struct job *j, *list;
	uint64_t v;

	(void)!read(p->donefd, &v, sizeof(v));
	pthread_mutex_lock(&p->lock);
	list = p->done;
	p->done = NULL;
	pthread_mutex_unlock(&p->lock);
	wh_trace("h_collect", 0);
	while ((j = list)) {
		list = j->next;
		job_finish(j);
	}
}

/* job_finish - send the reply of a job served (loop thread), free it. */
static void job_finish(struct job *j)
{
	struct hconn *hc = j->hc;

	unhold(hc, j->charge);
	if (j->hs && hc->nc && !wh_net_conn_closing(hc->nc)) {
		j->hs->job = NULL;
		if (j->rv == -ENOMEM) {
			wh_net_conn_close(hc->nc, APP_ERR_SHUTDOWN,
					   "out of memory");
		} else {
			hc->requests++;
			hc->bytes_out += j->resp.len;
			hc->zsaved += j->zsaved;
			hc->zpacked += j->zsaved > 0;
			if (j->resp.len > 0) {
				j->hs->reply_len = j->resp.len;
				j->hs->reply_file = j->resp.len +
						    j->zsaved;
				wh_zrate_sent(&hc->zrate, j->resp.len,
					      j->hs->reply_file,
					      wh_now_ns());
				j->hs->held = j->resp.len;
				hold(hc, j->hs->held);
				send_buf(hc->nc, j->stream, &j->resp,
					 true);
			}
			if (j->rv == WH_ERR_PROTO) {
				wh_warn("client #%u (%s): malformed "
					"request: closing its "
					"connection", hc->id,
					wh_net_conn_peer(hc->nc));
				wh_net_conn_close(hc->nc,
						   APP_ERR_PROTO,
						   "malformed request");
			}
		}
	} else if (j->hs) {
		j->hs->job = NULL;
	}
	if (hc->host->waiting)
		resume(hc->host);
	hconn_unref(hc);
	job_free(j);
}

/* ------------------------------------------------------------ requests */

static void proto_fail(struct hconn *hc, struct wh_net_stream *s,
		       struct hstream *hs, uint32_t req_id, const char *why)
{
	struct wh_buf b;

	wh_warn("client #%u (%s): %s: closing its connection", hc->id,
		wh_net_conn_peer(hc->nc), why);
	wh_buf_init(&b);
	if (!hs->answered && wh_error_append(&b, req_id, EPROTO, why) == 0)
		send_buf(hc->nc, s, &b, true);
	wh_buf_free(&b);
	hs->answered = true;
	wh_net_conn_close(hc->nc, APP_ERR_PROTO, why);
}

static int on_request_data(struct hconn *hc, struct wh_net_stream *s,
			   struct hstream *hs, const uint8_t *data,
			   size_t len, bool fin)
{
	struct wh_frame_hdr hdr;
	const char *why = NULL;
	char msg[64];
	int rv;

	if (hs->answered) {
		if (len > 0)
			proto_fail(hc, s, hs, 0, "data after a request");
		return 0;
	}
	hs->stream = s;
	rv = wh_frame_gather(&hs->rx, data, len, fin, WH_MAX_REQ_FRAME, &hdr,
			     &why);
	if (rv == -ENOMEM)
		return rv;
	if (rv < 0) {
		snprintf(msg, sizeof(msg), "request: %s", why);
		proto_fail(hc, s, hs, hdr.req_id, msg);
		return 0;
	}
	if (rv == 0)
		return 0;
	hs->answered = true;
	hs->charge = req_charge(hdr.type, hs->rx.data, hs->rx.len);
	if (hc->park_head || !budget_ok(hc)) {
		park(hc, hs);
		resume(hc->host);
		return 0;
	}
	return start_job(hc, hs);
}

/* start_job - serve the request gathered in |hs|: here, if it is a small
 * READ from the page cache, else by a worker */
static int start_job(struct hconn *hc, struct hstream *hs)
{
	struct job *job;
	size_t flen;
	int rv;

	flen = hs->rx.len;
	job = calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	/* the request buffer moves to the job */
	job->req = hs->rx.data;
	job->len = flen;
	wh_buf_init(&hs->rx);
	wh_buf_init(&job->resp);
	job->hc = hc;
	job->stream = hs->stream;
	job->hs = hs;
	job->fd = -1;
	job->charge = hs->charge;
	hold(hc, job->charge);
	if (hc->caps & WH_CAP_ZSTD) {
		job->zh = hc->host->zh;
		job->link.rate = wh_zrate_get(&hc->zrate);
		job->link.net_busy = hc->host->net_busy;
		job->link.hold = !wh_zrate_allow(&hc->zrate, wh_now_ns());
		job->link.small = hc->caps & WH_CAP_ZSMALL;
	}
	hc->refs++;
	hs->job = job;
	/* a small READ from the page cache: answered here, in this turn of
	 * the loop (the acknowledgement of the request rides with the reply)
	 * instead of two thread hand-offs later; else to a worker, with the
	 * file opened already */
	wh_trace("h_req", job->len);
	rv = wh_share_read_nowait(hc->host->share, job->req, job->len,
				  &job->resp, &job->fd);
	wh_trace("h_nowait", (uint64_t)(int64_t)rv);
	if (rv == 1) {
		job->rv = 0;
		if (job->zh)
			job->zsaved = wh_zhost_pack(job->zh, job->req,
						    job->len, &job->resp,
						    &job->link);
		job_finish(job);
		return 0;
	}
	if (rv < 0)
		job->resp.len = 0;
	pool_submit(&hc->host->pool, job);
	return 0;
}

/* ---------------------------------------------------- network callbacks */

static void cb_accept(struct wh_net_conn *nc, void *ud)
{
	struct host *h = ud;
	struct hconn *hc = calloc(1, sizeof(*hc));
	char name[sizeof(hc->auth.name)];

	if (!hc) {
		wh_net_conn_close(nc, APP_ERR_SHUTDOWN, "out of memory");
		return;
	}
	hc->refs = 1;
	hc->host = h;
	hc->nc = nc;
	hc->id = ++h->next_id;
	snprintf(name, sizeof(name), "client #%u (%s)", hc->id,
		 wh_net_conn_peer(nc));
	wh_hctrl_init(&hc->auth, &hctrl_ops, hc, h->opts->code,
		      host_caps() | (h->zh ? WH_CAP_ZSTD : 0), name);
	hc->accepted_ns = wh_now_ns();
	if (h->unauthed >= UNAUTH_MAX)
		unauth_sweep(h, true, hc->accepted_ns);
	hc->unauthed = true;
	h->unauthed++;
	wh_net_conn_set_ud(nc, hc);
	wh_info("client #%u connecting from %s over %s", hc->id,
		wh_net_conn_peer(nc),
		wh_net_transport_name(wh_net_conn_transport(nc)));
}

static void cb_stream_open(struct wh_net_conn *nc, struct wh_net_stream *s,
			   void *ud)
{
	struct hconn *hc = ud;
	struct hstream *hs;

	if (!hc)
		return;
	if (!hc->ctrl) {
		hc->ctrl = s;
		wh_net_stream_set_ud(nc, s, NULL);
		return;
	}
	if (hc->auth.state != WH_HCTRL_AUTHED) {
		wh_warn("client #%u (%s): request before authentication",
			hc->id, wh_net_conn_peer(nc));
		hc->auth.state = WH_HCTRL_FAILED;
		wh_net_conn_close(nc, APP_ERR_AUTH, "not authenticated");
		return;
	}
	hs = calloc(1, sizeof(*hs));
	if (!hs) {
		wh_net_conn_close(nc, APP_ERR_SHUTDOWN, "out of memory");
		return;
	}
	wh_buf_init(&hs->rx);
	wh_net_stream_set_ud(nc, s, hs);
}

static int cb_stream_data(struct wh_net_conn *nc, struct wh_net_stream *s,
			  const uint8_t *data, size_t len, bool fin, void *ud)
{
	struct hconn *hc = ud;
	struct hstream *hs = wh_net_stream_ud(nc, s);

	(void)nc;
	if (!hc)
		return 0;
	if (s == hc->ctrl)
		return wh_hctrl_input(&hc->auth, data, len, fin);
	if (!hs)
		return 0; /* refused stream; the connection is closing */
	return on_request_data(hc, s, hs, data, len, fin);
}

static void cb_stream_close(struct wh_net_conn *nc, struct wh_net_stream *s,
			    void *ud)
{
	struct hconn *hc = ud;
	struct hstream *hs = wh_net_stream_ud(nc, s);

	(void)nc;
	if (hc && s == hc->ctrl) {
		hc->ctrl = NULL;
		return;
	}
	if (hs) {
		if (hs->reply_len && hc)
			wh_zrate_done(&hc->zrate, hs->reply_len,
				      hs->reply_file, wh_now_ns());
		if (hc && hs->parked)
			unpark(hc, hs);
		if (hc && hs->held) {
			unhold(hc, hs->held);
			if (hc->host->waiting)
				resume(hc->host);
		}
		if (hs->job)
			hs->job->hs = NULL; /* its reply has nowhere to go */
		wh_buf_free(&hs->rx);
		free(hs);
		wh_net_stream_set_ud(nc, s, NULL);
	}
}

/* cb_path_change - the client moved (its NAT rebound, it changed
 * networks) and kept its connection: say where it is now, by its number,
 * since every later line names it by the new address */
static void cb_path_change(struct wh_net_conn *nc, const char *old,
			   const char *now, void *ud)
{
	struct hconn *hc = ud;

	(void)nc;
	if (hc)
		wh_info("client #%u (%s) is now at %s", hc->id, old, now);
	else
		wh_info("quic: peer %s is now at %s", old, now);
}

static void cb_close(struct wh_net_conn *nc, int err, const char *reason,
		     void *ud)
{
	struct hconn *hc = ud;

	if (!hc)
		return;
	wh_hctrl_gone(&hc->auth);
	unauth_end(hc);
	unhold(hc, hc->held); /* what it held goes with it */
	while (hc->park_head)
		unpark(hc, hc->park_head);
	if (hc->waiting)
		leave_waiting(hc);
	if (hc->parked)
		wh_info("client #%u: %llu of its requests waited for its "
			"replies to be taken", hc->id,
			(unsigned long long)hc->parked);
	if (err == 0 || err == WH_ERR_CLOSED)
		wh_info("client #%u (%s) disconnected%s%s (%llu requests, "
			"%llu bytes sent, at most %.1f MiB of its reply "
			"budget used)", hc->id, wh_net_conn_peer(nc),
			*reason ? ": " : "", reason,
			(unsigned long long)hc->requests,
			(unsigned long long)hc->bytes_out,
			hc->held_peak / 1048576.0);
	else
		wh_info("client #%u (%s) lost: %s%s%s (%llu requests, %llu "
			"bytes sent, at most %.1f MiB of its reply budget "
			"used)", hc->id, wh_net_conn_peer(nc), wh_strerror(err),
			*reason ? ": " : "", reason,
			(unsigned long long)hc->requests,
			(unsigned long long)hc->bytes_out,
			hc->held_peak / 1048576.0);
	if ((hc->caps & WH_CAP_ZSTD) && hc->zpacked > 0)
		wh_info("client #%u: zstd saved %llu bytes in %llu replies "
			"(delivery rate %.1f MB/s)", hc->id,
			(unsigned long long)hc->zsaved,
			(unsigned long long)hc->zpacked,
			wh_zrate_get(&hc->zrate) / 1e6);
	hc->nc = NULL;
	hc->ctrl = NULL;
	wh_net_conn_set_ud(nc, NULL);
	if (hc->host->waiting)
		resume(hc->host);
	hconn_unref(hc);
}

static const struct wh_net_cbs host_cbs = {
	.on_accept = cb_accept,
	.on_stream_open = cb_stream_open,
	.on_stream_data = cb_stream_data,
	.on_stream_close = cb_stream_close,
	.on_close = cb_close,
	.on_path_change = cb_path_change,
};

/* ------------------------------------------------------- invalidations */

static void on_change(void *ud, const char *dir, size_t dir_len,
		      const char *name, size_t name_len)
{
	struct host *h = ud;
	struct inval *iv;

	if (h->overflow)
		return;
	for (size_t i = 0; i < h->npending; i++) {
		iv = &h->pending[i];
		if (strlen(iv->dir) == dir_len && strlen(iv->name) == name_len &&
		    memcmp(iv->dir, dir, dir_len) == 0 &&
		    memcmp(iv->name, name, name_len) == 0)
			return;
	}
	if (h->npending == INVAL_MAX_PENDING) {
		h->overflow = true;
		return;
	}
	iv = &h->pending[h->npending];
	iv->dir = strndup(dir, dir_len);
	iv->name = strndup(name, name_len);
	if (!iv->dir || !iv->name) {
		free(iv->dir);
		free(iv->name);
		h->overflow = true;
		return;
	}
	h->npending++;
	if (!h->inval_due)
		h->inval_due = wh_now_ns() + INVAL_DELAY_MS * WH_NS_PER_MS;
}

static int encode_inval(struct wh_buf *b, const char *dir, const char *name)
{
	struct wh_msg m;

	memset(&m, 0, sizeof(m));
	m.hdr.type = WH_MSG_INVAL;
	m.u.inval.dir.p = dir;
	m.u.inval.dir.len = (uint16_t)strlen(dir);
	m.u.inval.name.p = name;
	m.u.inval.name.len = (uint16_t)strlen(name);
	return wh_msg_append(b, &m);
}

static void flush_invals(struct host *h, struct wh_net_conn *const *conns,
			 size_t nconns)
{
	struct wh_buf b;

	wh_buf_init(&b);
	if (h->overflow) {
		encode_inval(&b, "", "");
	} else {
		for (size_t i = 0; i < h->npending; i++) {
			if (strlen(h->pending[i].dir) > WH_MAX_PATH ||
			    strlen(h->pending[i].name) > WH_MAX_NAME)
				continue;
			encode_inval(&b, h->pending[i].dir,
				     h->pending[i].name);
		}
	}
	for (size_t i = 0; i < h->npending; i++) {
		free(h->pending[i].dir);
		free(h->pending[i].name);
	}
	h->npending = 0;
	h->overflow = false;
	h->inval_due = 0;
	for (size_t i = 0; i < nconns && b.len > 0; i++) {
		struct hconn *hc = wh_net_conn_ud(conns[i]);
		uint8_t *copy;

		if (!hc || hc->auth.state != WH_HCTRL_AUTHED || !hc->ctrl ||
		    !(hc->caps & WH_CAP_INVAL))
			continue;
		copy = malloc(b.len);
		if (!copy)
			continue;
		memcpy(copy, b.data, b.len);
		wh_net_send(hc->nc, hc->ctrl, copy, b.len, false, free);
	}
	wh_buf_free(&b);
}

/* ----------------------------------------------------------------- loop */

/* sample_cpu - how much of the time the loop thread runs (every 100 ms):
 * a busy network thread means the transfer is bound by CPU, not by the
 * link, and compression would only slow it down */
static void sample_cpu(struct host *h)
{
	struct timespec ts;
	uint64_t now = wh_now_ns(), cpu;
	double share;

	if (now - h->busy_wall < 100 * WH_NS_PER_MS)
		return;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	cpu = (uint64_t)ts.tv_sec * WH_NS_PER_S + (uint64_t)ts.tv_nsec;
	if (h->busy_wall) {
		share = (double)(cpu - h->busy_cpu) / (double)(now - h->busy_wall);
		h->net_busy = h->net_busy * 0.5 + share * 0.5;
	}
	h->busy_wall = now;
	h->busy_cpu = cpu;
}

static int setup_signals(sigset_t *set)
{
	int fd;

	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, set, NULL) != 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	fd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int wh_host_run(const struct wh_host_opts *opts)
{
	struct host h;
	struct wh_quic_config cfg;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char addrbuf[WH_ADDRSTRLEN];
	struct epoll_event ev, evs[8];
	sigset_t sigs;
	int epfd = -1, sfd = -1, wfd, rv;
	bool running = true;

	memset(&h, 0, sizeof(h));
	h.opts = opts;
	h.auth_ns = (uint64_t)AUTH_MS * WH_NS_PER_MS;
	if (getenv("WH_HOST_AUTH_MS")) /* the tests' shorter deadline */
		h.auth_ns = strtoull(getenv("WH_HOST_AUTH_MS"), NULL, 10) *
			    WH_NS_PER_MS;
	if (sodium_init() < 0)
		return -EIO;
	/* keep 1 MiB read buffers in the heap instead of mmap'ing each, and
	 * keep freed ones there: with the default trim threshold (128 KiB,
	 * fixed once the mmap threshold is set) every freed reply was given
	 * back to the kernel and the next one faulted in zeroed pages again */
	mallopt(M_MMAP_THRESHOLD, 8 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	/* one arena: buffers freed by one thread are reused by the others.
	 * With an arena per thread (glibc's default, up to 8 per core) each
	 * worker and the network thread kept its own free buffers, and a cold
	 * 1 GiB get left the host at 47-56 MB of RSS; with one, 28 MB, at the
	 * same speed (buffers are pooled, so the arena lock is rarely taken) */
	mallopt(M_ARENA_MAX, 1);

	rv = wh_addr_parse(opts->listen, &ss, &sslen);
	if (rv < 0) {
		wh_err("bad listen address '%s': expected ADDR:PORT",
		       opts->listen);
		return rv;
	}
	rv = wh_share_open(opts->dir, &h.share);
	if (rv < 0) {
		wh_err("cannot share '%s': %s", opts->dir, wh_strerror(rv));
		return rv;
	}
	{
		char *dir = opts->cache_dir ? strdup(opts->cache_dir)
					    : wh_mcache_default_dir();

		rv = wh_mcache_open(dir, &h.mc);
		if (rv < 0) {
			wh_warn("manifest cache '%s' unusable (%s): manifests "
				"are kept in memory only", dir ? dir : "",
				wh_strerror(rv));
			rv = wh_mcache_open(NULL, &h.mc);
		}
		free(dir);
		if (rv < 0)
			goto out;
		wh_share_set_mcache(h.share, h.mc);
		/* workers never wait for a MANIFEST's hashing */
		wh_share_set_defer(h.share, true);
	}
	rv = wh_zhost_new(&h.zh);
	if (rv < 0)
		goto out;
	wh_quic_config_default(&cfg, true);
	if (getenv("WH_HOST_IDLE_MS")) /* the tests' shorter idle timeout */
		cfg.idle_timeout_ms = strtoull(getenv("WH_HOST_IDLE_MS"), NULL,
					       10);
	rv = wh_net_server_new((struct sockaddr *)&ss, sslen, &cfg, &host_cbs,
				&h, &h.ep);
	if (rv < 0) {
		wh_err("cannot listen on %s: %s", opts->listen,
		       wh_strerror(rv));
		goto out;
	}
	/* block the signals before any thread exists, so that every thread
	 * inherits the mask and they reach only the signalfd */
	rv = setup_signals(&sigs);
	if (rv < 0)
		goto out;
	sfd = rv;
	rv = pool_start(&h.pool, h.share);
	if (rv < 0) {
		wh_err("cannot start worker threads: %s", wh_strerror(rv));
		goto out;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		rv = -errno;
		goto out;
	}
	ev.events = EPOLLIN;
	ev.data.fd = wh_net_ep_fd(h.ep);
	epoll_ctl(epfd, EPOLL_CTL_ADD, ev.data.fd, &ev);
	ev.data.fd = sfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.fd = h.pool.donefd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, h.pool.donefd, &ev);
	wfd = wh_share_watch_fd(h.share);
	if (wfd >= 0) {
		ev.data.fd = wfd;
		epoll_ctl(epfd, EPOLL_CTL_ADD, wfd, &ev);
	} else {
		wh_warn("change notifications unavailable: clients will see "
			"host-side changes only when their caches expire");
	}

	if (opts->signal)
		wh_rdv_host_attach(wh_net_ep_quic(h.ep), opts->signal,
				   opts->code, &h.rdv);

	wh_net_ep_local_addr(h.ep, &ss, &sslen);
	fprintf(opts->out, "join code: %s\n", opts->code);
	fprintf(opts->out, "listening: %s\n",
		wh_addr_str((struct sockaddr *)&ss, addrbuf, sizeof(addrbuf)));
	fflush(opts->out);
	wh_info("sharing '%s' (read-only) on %s", opts->dir, addrbuf);

	while (running) {
		int timeout = wh_net_ep_timeout_ms(h.ep), n;

		if (h.inval_due) {
			uint64_t now = wh_now_ns();
			int t = h.inval_due <= now
					? 0
					: (int)((h.inval_due - now) /
						WH_NS_PER_MS) + 1;

			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		if (h.rdv) {
			int t = wh_rdv_host_timeout_ms(h.rdv, wh_now_ns());

			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		if (h.unauthed && (timeout < 0 || timeout > AUTH_SWEEP_MS))
			timeout = AUTH_SWEEP_MS;
		wh_trace("h_sleep", (uint64_t)(int64_t)timeout);
		n = epoll_wait(epfd, evs, 8, timeout);
		wh_trace("h_epoll", (uint64_t)n);
		if (n < 0 && errno != EINTR) {
			rv = -errno;
			wh_err("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == sfd) {
				struct signalfd_siginfo si;

				if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					wh_info("received signal %u: shutting "
						"down", si.ssi_signo);
					running = false;
				}
			} else if (fd == h.pool.donefd) {
				pool_collect(&h.pool);
			} else if (fd == wfd) {
				wh_share_watch_drain(h.share, on_change, &h);
			} else {
				wh_net_ep_read(h.ep);
			}
		}
		wh_net_ep_expire(h.ep);
		if (h.unauthed) {
			uint64_t now = wh_now_ns();

			if (now >= h.auth_next) {
				h.auth_next = now + AUTH_SWEEP_MS * WH_NS_PER_MS;
				unauth_sweep(&h, false, now);
			}
		}
		if (h.rdv)
			wh_rdv_host_tick(h.rdv, wh_now_ns());
		if (h.inval_due && h.inval_due <= wh_now_ns()) {
			struct wh_net_conn **conns = NULL;
			size_t nconns = 0;

			wh_net_ep_conns(h.ep, &conns, &nconns);
			flush_invals(&h, conns, nconns);
			free(conns);
		}
		wh_net_ep_flush(h.ep);
		wh_trace("h_flushed", 0);
		if (h.zh)
			sample_cpu(&h);
	}
	rv = 0;
out:
	wh_rdv_host_del(h.rdv);
	wh_net_ep_del(h.ep);
	if (h.pool.nthreads > 0 || h.pool.donefd > 0)
		pool_stop(&h.pool);
	for (size_t i = 0; i < h.npending; i++) {
		free(h.pending[i].dir);
		free(h.pending[i].name);
	}
	wh_share_close(h.share);
	wh_mcache_close(h.mc);
	wh_zhost_del(h.zh);
	if (epfd >= 0)
		close(epfd);
	if (sfd >= 0)
		close(sfd);
	return rv;
}
