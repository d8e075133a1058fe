/* linkem.c - a userspace link emulator: an Ethernet bridge between two
 * interfaces that delays, rate-limits, drops at random and drop-tails.
 *
 *   linkem IF_A IF_B [--delay-ms D] [--rate-mbit R] [--loss PCT]
 *                    [--queue-bytes N | --queue-pkts N] [--seed S] [--rt]
 *
 * Run it in a "router" network namespace holding one end of two veth
 * pairs: every frame that arrives on IF_A leaves on IF_B and the other way
 * round, so ARP, IPv4, UDP and TCP all cross it.  Frames are read and
 * written with AF_PACKET raw sockets (recvmmsg / sendmmsg batches).  Each
 * direction is one thread with one FIFO ring, and models a link of its own:
 *
 *   arrival t  -> drop-tail: if the bytes (or frames) still waiting to be
 *                 serialised at t, plus this frame, exceed the queue limit,
 *                 drop it;
 *              -> random loss with probability PCT/100 (independent per frame);
 *              -> serialised at R: done = max(t, previous done) + len*8/R;
 *              -> released at done + D.
 *
 * Release times are monotonic within a direction (FIFO serialiser, one
 * fixed delay), so a ring suffices: no priority queue.  The thread sleeps
 * with ppoll until the next release or the next arrival, whichever is first.
 * The rate counts Ethernet frame bytes (header included, no preamble, FCS
 * or gap).  Frames longer than a slot (offloads left on: GSO/TSO frames)
 * are dropped and counted, so turn segmentation offloads off on the
 * senders.  On SIGINT/SIGTERM it prints one JSON line of counters to stdout
 * and exits 0, on SIGUSR1 the same line and goes on; "ready" is printed on
 * stdout once both sockets are bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOT 2048		/* bytes per ring slot: MTU 1500 frames fit */
#define BATCH 64		/* frames per recvmmsg / sendmmsg */

struct slot {
	uint64_t release;	/* ns, CLOCK_MONOTONIC */
	uint64_t done;		/* end of serialisation, ns */
	uint32_t len;
	unsigned char data[SLOT];
};

struct dir {
	const char *name;
	int in, out;			/* sockets */
	struct slot *ring;
	uint32_t nslots, head, tail;	/* [head, tail) queued; tail - head <= nslots */
	uint32_t ser;			/* first slot not yet serialised at "now" */
	uint64_t last_done;		/* ns */
	uint64_t backlog_bytes;		/* bytes in [ser, tail) */
	uint64_t rng;
	/* counters */
	uint64_t rx, rx_bytes, tx, tx_bytes, drop_queue, drop_loss, drop_ring,
		drop_big, send_err;
	/* how late frames went out against their release time (the thread
	 * woke late: a busy machine): more than 1 ms, more than 10 ms, and
	 * the worst, so a run can tell the emulator's lateness from the
	 * endpoints' */
	uint64_t late_1ms, late_10ms, late_max_ns;
	pthread_t th;
};

static double g_delay_ms, g_rate_mbit, g_loss_pct;
static uint64_t g_qbytes, g_qpkts;
static atomic_int g_stop, g_dump;
static int g_rt;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static int open_if(const char *ifname)
{
	unsigned int idx = if_nametoindex(ifname);
	int fd, one = 1, buf = 16 << 20;
	struct sockaddr_ll sll = { 0 };

	if (!idx) {
		fprintf(stderr, "linkem: no interface %s\n", ifname);
		return -1;
	}
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (fd < 0) {
		perror("linkem: socket(AF_PACKET)");
		return -1;
	}
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)idx;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		perror("linkem: bind");
		close(fd);
		return -1;
	}
	/* frames we send on this interface must not come back to us */
	if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)))
		perror("linkem: PACKET_IGNORE_OUTGOING (falling back to pkttype)");
	setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	return fd;
}

/* The bytes (or frames) still waiting for the serialiser at time t. */
static void advance_ser(struct dir *d, uint64_t t)
{
	while (d->ser != d->tail) {
		struct slot *s = &d->ring[d->ser % d->nslots];

		if (s->done > t)
			break;
		d->backlog_bytes -= s->len;
		d->ser++;
	}
}

static void enqueue(struct dir *d, uint32_t len, uint64_t t)
{
	struct slot *s;
	uint64_t start, ser_ns = 0;

	d->rx++;
	d->rx_bytes += len;
	if (len > SLOT) {
		d->drop_big++;
		return;
	}
	advance_ser(d, t);
	if (g_qbytes && d->backlog_bytes + len > g_qbytes) {
		d->drop_queue++;
		return;
	}
	if (g_qpkts && d->tail - d->ser + 1 > g_qpkts) {
		d->drop_queue++;
		return;
	}
	if (g_loss_pct > 0 &&
	    (double)(xorshift(&d->rng) >> 11) * (1.0 / 9007199254740992.0) * 100.0 <
		    g_loss_pct) {
		d->drop_loss++;
		return;
	}
	if (d->tail - d->head >= d->nslots) {
		d->drop_ring++;
		return;
	}
	/* the frame was received into the tail slot already */
	s = &d->ring[d->tail % d->nslots];
	if (g_rate_mbit > 0)
		ser_ns = (uint64_t)((double)len * 8.0 * 1000.0 / g_rate_mbit);
	start = d->last_done > t ? d->last_done : t;
	s->done = start + ser_ns;
	s->release = s->done + (uint64_t)(g_delay_ms * 1e6);
	s->len = len;
	d->last_done = s->done;
	d->backlog_bytes += len;
	d->tail++;
}

static void receive(struct dir *d)
{
	struct mmsghdr mm[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_ll from[BATCH];
	static __thread unsigned char scratch[65536];
	static __thread char ctl[BATCH][CMSG_SPACE(sizeof(struct timespec))];
	int n, i, room;

	for (;;) {
		room = (int)(d->nslots - (d->tail - d->head));
		if (room > BATCH)
			room = BATCH;
		memset(mm, 0, sizeof(mm));
		for (i = 0; i < BATCH; i++) {
			/* when the ring is full, read into scratch to count drops */
			if (i < room)
				iov[i].iov_base = d->ring[(d->tail + (uint32_t)i) %
							  d->nslots].data;
			else
				iov[i].iov_base = scratch;
			iov[i].iov_len = SLOT;
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
			mm[i].msg_hdr.msg_name = &from[i];
			mm[i].msg_hdr.msg_namelen = sizeof(from[i]);
			mm[i].msg_hdr.msg_control = ctl[i];
			mm[i].msg_hdr.msg_controllen = sizeof(ctl[i]);
		}
		n = recvmmsg(d->in, mm, room > 0 ? (unsigned)room : 1,
			     MSG_DONTWAIT | MSG_TRUNC, NULL);
		if (n <= 0)
			return;
		/* arrival = the kernel's receive timestamp (CLOCK_REALTIME),
		 * moved onto CLOCK_MONOTONIC: a late wake-up of this thread
		 * must not bunch frames that arrived spaced out */
		uint64_t mono = now_ns();
		struct timespec rt;

		clock_gettime(CLOCK_REALTIME, &rt);
		int64_t off = (int64_t)((uint64_t)rt.tv_sec * 1000000000u +
					(uint64_t)rt.tv_nsec) - (int64_t)mono;
		for (i = 0; i < n; i++) {
			uint32_t len = mm[i].msg_len;
			uint64_t t = mono;
			struct cmsghdr *c = CMSG_FIRSTHDR(&mm[i].msg_hdr);

			for (; c; c = CMSG_NXTHDR(&mm[i].msg_hdr, c))
				if (c->cmsg_level == SOL_SOCKET &&
				    c->cmsg_type == SCM_TIMESTAMPNS) {
					struct timespec ts;
					int64_t k;

					memcpy(&ts, CMSG_DATA(c), sizeof(ts));
					k = (int64_t)((uint64_t)ts.tv_sec * 1000000000u +
						      (uint64_t)ts.tv_nsec) - off;
					if (k > 0 && (uint64_t)k < mono)
						t = (uint64_t)k;
				}

			if (from[i].sll_pkttype == PACKET_OUTGOING)
				continue;
			if (room <= 0) {
				d->rx++;
				d->rx_bytes += len;
				d->drop_ring++;
				continue;
			}
			/* enqueue() takes the frame at d->tail: if an earlier
			 * frame of this batch was dropped, move this one down */
			unsigned char *at = iov[i].iov_base;
			unsigned char *want = d->ring[d->tail % d->nslots].data;

			if (at != want && len <= SLOT)
				memcpy(want, at, len);
			enqueue(d, len, t);
		}
		if (n < BATCH)
			return;
	}
}

static void transmit(struct dir *d, uint64_t t)
{
	struct mmsghdr mm[BATCH];
	struct iovec iov[BATCH];
	int n, sent;

	for (;;) {
		n = 0;
		while (n < BATCH && d->head + (uint32_t)n != d->tail) {
			struct slot *s = &d->ring[(d->head + (uint32_t)n) % d->nslots];

			if (s->release > t)
				break;
			iov[n].iov_base = s->data;
			iov[n].iov_len = s->len;
			memset(&mm[n], 0, sizeof(mm[n]));
			mm[n].msg_hdr.msg_iov = &iov[n];
			mm[n].msg_hdr.msg_iovlen = 1;
			n++;
		}
		if (!n)
			return;
		for (int i = 0; i < n; i++) {
			uint64_t rel = d->ring[(d->head + (uint32_t)i) % d->nslots].release;
			uint64_t late = t > rel ? t - rel : 0;

			if (late > 1000000u)
				d->late_1ms++;
			if (late > 10000000u)
				d->late_10ms++;
			if (late > d->late_max_ns)
				d->late_max_ns = late;
		}
		sent = 0;
		while (sent < n) {
			int r = sendmmsg(d->out, mm + sent, (unsigned)(n - sent), 0);

			if (r < 0) {
				if (errno == EINTR)
					continue;
				/* ENOBUFS and the like: the frame is lost, as on a wire */
				d->send_err++;
				sent++;
				continue;
			}
			for (int i = sent; i < sent + r; i++) {
				d->tx++;
				d->tx_bytes += iov[i].iov_len;
			}
			sent += r;
		}
		/* the serialiser pointer never lags behind the head */
		advance_ser(d, t);
		d->head += (uint32_t)n;
		if (d->ser - d->head > d->nslots) /* wrapped: ser was behind head */
			d->ser = d->head;
		if (n < BATCH)
			return;
	}
}

static void *run(void *arg)
{
	struct dir *d = arg;
	struct pollfd pfd = { .fd = d->in, .events = POLLIN };

	prctl(PR_SET_TIMERSLACK, 1UL);
	if (g_rt) {
		/* a real-time priority keeps wake-ups on time on a busy
		 * machine; the loop always sleeps, and the kernel's RT
		 * throttling bounds it anyway */
		struct sched_param sp = { .sched_priority = 10 };

		if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp))
			fprintf(stderr, "linkem: no SCHED_FIFO, timing will be looser\n");
	}
	while (!atomic_load(&g_stop)) {
		uint64_t t = now_ns();
		struct timespec to, *top = NULL;

		transmit(d, t);
		if (d->head != d->tail) {
			uint64_t rel = d->ring[d->head % d->nslots].release;
			uint64_t wait = rel > t ? rel - t : 0;

			to.tv_sec = (time_t)(wait / 1000000000u);
			to.tv_nsec = (long)(wait % 1000000000u);
			top = &to;
		} else {
			to.tv_sec = 0;
			to.tv_nsec = 200000000; /* to notice g_stop */
			top = &to;
		}
		int r = ppoll(&pfd, 1, top, NULL);

		if (r > 0)
			receive(d);
	}
	return NULL;
}

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		atomic_store(&g_dump, 1);
	else
		atomic_store(&g_stop, 1);
}

static void print_dir(const struct dir *d, int last)
{
	printf("\"%s\": {\"rx\": %llu, \"rx_bytes\": %llu, \"tx\": %llu, "
	       "\"tx_bytes\": %llu, \"drop_queue\": %llu, \"drop_loss\": %llu, "
	       "\"drop_ring\": %llu, \"drop_oversize\": %llu, \"send_err\": %llu, "
	       "\"late_1ms\": %llu, \"late_10ms\": %llu, \"late_max_us\": %llu}%s",
	       d->name, (unsigned long long)d->rx, (unsigned long long)d->rx_bytes,
	       (unsigned long long)d->tx, (unsigned long long)d->tx_bytes,
	       (unsigned long long)d->drop_queue, (unsigned long long)d->drop_loss,
	       (unsigned long long)d->drop_ring, (unsigned long long)d->drop_big,
	       (unsigned long long)d->send_err, (unsigned long long)d->late_1ms,
	       (unsigned long long)d->late_10ms,
	       (unsigned long long)(d->late_max_ns / 1000), last ? "" : ", ");
}

static unsigned long long sock_drops(int fd)
{
	struct tpacket_stats st;
	socklen_t l = sizeof(st);

	if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &l))
		return 0;
	return st.tp_drops;
}

static void print_all(const struct dir *d, int fa, int fb)
{
	printf("{\"t\": %.6f, ", (double)now_ns() / 1e9);
	print_dir(&d[0], 0);
	print_dir(&d[1], 0);
	printf("\"sock_drops_a\": %llu, \"sock_drops_b\": %llu}\n", sock_drops(fa),
	       sock_drops(fb));
	fflush(stdout);
}

static int usage(void)
{
	fprintf(stderr,
		"usage: linkem IF_A IF_B [--delay-ms D] [--rate-mbit R] "
		"[--loss PCT] [--queue-bytes N | --queue-pkts N] [--seed S] [--rt]\n"
		"  --rt: run the two forwarding threads at SCHED_FIFO priority 10\n"
		"  D: one-way delay in each direction (ms, fractions allowed)\n"
		"  R: rate of each direction (Mbit/s of Ethernet frames; 0: unlimited)\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct dir d[2];
	uint64_t seed = 1;
	int fa, fb;

	if (argc < 3)
		return usage();
	for (int i = 3; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;
		double x;

		if (!strcmp(o, "--rt")) {
			g_rt = 1;
			continue;
		}
		if (!v)
			return usage();
		errno = 0;
		x = strtod(v, &end);
		if (errno || end == v || *end || x < 0) {
			fprintf(stderr, "linkem: %s wants a non-negative number, not '%s'\n",
				o, v);
			return 2;
		}
		if (!strcmp(o, "--delay-ms"))
			g_delay_ms = x;
		else if (!strcmp(o, "--rate-mbit"))
			g_rate_mbit = x;
		else if (!strcmp(o, "--loss")) {
			if (x > 100) {
				fprintf(stderr, "linkem: --loss is a percentage (0-100)\n");
				return 2;
			}
			g_loss_pct = x;
		}
		else if (!strcmp(o, "--queue-bytes"))
			g_qbytes = (uint64_t)x;
		else if (!strcmp(o, "--queue-pkts"))
			g_qpkts = (uint64_t)x;
		else if (!strcmp(o, "--seed"))
			seed = (uint64_t)x;
		else
			return usage();
		i++;
	}
	fa = open_if(argv[1]);
	fb = open_if(argv[2]);
	if (fa < 0 || fb < 0)
		return 1;

	/* the ring holds what is in flight on the wire (rate x delay) plus the
	 * queue: size it for that with a generous floor */
	double inflight = g_rate_mbit > 0 ? g_rate_mbit * 1e6 / 8 * (g_delay_ms / 1e3) / 60
					  : 1e9 / 8 * (g_delay_ms / 1e3) / 60 * 10;
	uint64_t want = (uint64_t)inflight + (g_qpkts ? g_qpkts : g_qbytes / 60) + 4096;
	if (want > (1u << 20))
		want = 1u << 20;

	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (int k = 0; k < 2; k++) {
		memset(&d[k], 0, sizeof(d[k]));
		d[k].name = k ? "b_to_a" : "a_to_b";
		d[k].in = k ? fb : fa;
		d[k].out = k ? fa : fb;
		d[k].nslots = (uint32_t)want;
		d[k].ring = calloc(want, sizeof(struct slot));
		d[k].rng = seed * 0x9e3779b97f4a7c15ull + (uint64_t)k + 1;
		if (!d[k].ring) {
			fprintf(stderr, "linkem: out of memory for %llu slots\n",
				(unsigned long long)want);
			return 1;
		}
	}
	/* signals go to the main thread only (the workers poll g_stop) */
	sigset_t set, old;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	for (int k = 0; k < 2; k++)
		if (pthread_create(&d[k].th, NULL, run, &d[k])) {
			fprintf(stderr, "linkem: cannot start a thread\n");
			return 1;
		}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	printf("ready\n");
	fflush(stdout);
	/* SIGUSR1: print the counters so far (read racily: they are
	 * monotonic, a snapshot is off by at most a batch) */
	while (!atomic_load(&g_stop)) {
		pause();
		if (atomic_exchange(&g_dump, 0))
			print_all(d, fa, fb);
	}
	for (int k = 0; k < 2; k++)
		pthread_join(d[k].th, NULL);
	print_all(d, fa, fb);
	return 0;
}
