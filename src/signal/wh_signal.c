/* wh_signal.c - the rendezvous server's loop: socket, clock, database. */
#include "signal/wh_signal.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/wh_err.h"
#include "common/wh_log.h"
#include "net/wh_addr.h"
#include "signal/wh_sigdb.h"

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int restore_one(void *ud, const struct wh_sig_room *r)
{
	return wh_sigsrv_restore(ud, r, wall_ms());
}

int wh_signal_run(const struct wh_signal_opts *opts)
{
	struct wh_sigsrv_store store;
	struct wh_sigsrv *srv = NULL;
	struct wh_sigdb *db = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char abuf[WH_ADDRSTRLEN];
	sigset_t sigs;
	int fd = -1, sfd = -1, rv, one = 1;
	uint64_t next_expire = 0;
	unsigned long dropped = 0;

	rv = wh_addr_parse(opts->listen, &ss, &sslen);
	if (rv < 0) {
		wh_err("bad listen address '%s': expected ADDR:PORT",
		       opts->listen);
		return rv;
	}
	rv = wh_sigdb_open(opts->db, &db);
	if (rv < 0)
		return rv;
	wh_sigdb_store(db, &store);
	rv = wh_sigsrv_new(&opts->srv, &store, &srv);
	if (rv < 0)
		goto out;
	rv = wh_sigdb_load(db, wall_ms(), restore_one, srv);
	if (rv < 0) {
		wh_err("signal database '%s': cannot read the rooms",
		       opts->db);
		goto out;
	}
	if (rv > 0)
		wh_info("restored %d room(s) from %s", rv, opts->db);

	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		rv = -errno;
		goto out;
	}
	if (ss.ss_family == AF_INET6) {
		int off = 0;

		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
		rv = -errno;
		wh_err("cannot listen on %s: %s", opts->listen,
		       strerror(errno));
		goto out;
	}
	sslen = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sslen);

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		rv = -errno;
		goto out;
	}
	fprintf(opts->out, "listening: %s\n",
		wh_addr_str((struct sockaddr *)&ss, abuf, sizeof(abuf)));
	fflush(opts->out);
	wh_info("signal server on %s, rooms in %s", abuf, opts->db);

	for (;;) {
		struct pollfd pf[2] = { { .fd = fd, .events = POLLIN },
					{ .fd = sfd, .events = POLLIN } };
		uint64_t now;

		if (poll(pf, 2, 1000) < 0 && errno != EINTR) {
			rv = -errno;
			break;
		}
		if (pf[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				wh_info("received signal %u: shutting down",
					si.ssi_signo);
				rv = 0;
				break;
			}
		}
		for (int i = 0; i < 256 && (pf[0].revents & POLLIN); i++) {
			/* one byte more than allowed: a longer datagram is
			 * seen as too long, not truncated into a valid one */
			uint8_t buf[WH_SIG_MAX_DGRAM + 1];
			struct sockaddr_storage from;
			socklen_t fromlen = sizeof(from);
			struct wh_sigsrv_out out;
			ssize_t n;

			n = recvfrom(fd, buf, sizeof(buf), MSG_TRUNC,
				     (struct sockaddr *)&from, &fromlen);
			if (n < 0)
				break;
			rv = wh_sigsrv_handle(srv, wall_ms(),
					      (struct sockaddr *)&from,
					      fromlen, buf,
					      (size_t)n < sizeof(buf)
						      ? (size_t)n
						      : sizeof(buf),
					      &out);
			if (rv == WH_ERR_PROTO || rv == WH_ERR_TOOBIG) {
				if (dropped++ % 1000 == 0)
					wh_info("dropped a malformed datagram "
						"from %s (%lu so far)",
						wh_addr_str((struct sockaddr *)
							    &from, abuf,
							    sizeof(abuf)),
						dropped);
			}
			for (unsigned k = 0; k < out.n; k++)
				sendto(fd, out.d[k].data, out.d[k].len, 0,
				       (struct sockaddr *)&out.d[k].to,
				       out.d[k].tolen);
		}
		now = wall_ms();
		if (now >= next_expire) {
			wh_sigsrv_expire(srv, now);
			next_expire = now + 1000;
		}
	}
out:
	if (fd >= 0)
		close(fd);
	if (sfd >= 0)
		close(sfd);
	wh_sigsrv_del(srv);
	wh_sigdb_close(db);
	return rv;
}
