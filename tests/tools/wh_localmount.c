/*
 * wh_localmount - mount a local directory through the wormhole file
 * system, with no network: the rpc runs wh_share_serve() in-process.  For
 * end-to-end tests of the FUSE layer and the share together.
 *
 *     wh_localmount DIR MOUNTPOINT [--timeout-ms N] [--delay-ms N]
 *                   [--exit-after-ms N] [--cache-dir DIR]
 *                   [--ram-cache-mb N] [--debug] [-v]
 *
 * --delay-ms makes every request wait that long first; a delay of at
 * least --timeout-ms makes every request time out (EIO for the user).
 * --exit-after-ms calls wh_fs_exit() from another thread after that long
 * (the way a program stops its mount without a signal).
 * --cache-dir keeps fetched chunks in a chunk store there, as a mount does.
 * Prints "mounted" on stdout once the mount answers, and exits 0 when it
 * is unmounted (fusermount3 -u) or on SIGINT/SIGTERM; 1 on failure, 2 on
 * bad usage.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/wh_rpc.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "common/wh_time.h"
#include "fuse/wh_fs.h"
#include "host/wh_share.h"
#include "store/wh_store.h"

struct local {
	struct wh_share *share;
	struct wh_fs *fs;
	int delay_ms;
	int exit_after_ms;
	const char *mountpoint;
	int stop_fd; /* eventfd: the watcher must return */
};

static struct wh_share *kept_share; /* see the end of main() */

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * A request served on a thread of its own, so that the caller can give up
 * at its deadline as it would with a host (a MANIFEST of a big file takes
 * as long as hashing it).  Whoever is last of the two frees it.
 */
struct served {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct local *l;
	uint8_t *req;
	size_t req_len;
	struct wh_buf resp;
	int rv;
	bool done, abandoned;
};

static pthread_mutex_t helpers_lock = PTHREAD_MUTEX_INITIALIZER;
static int helpers; /* served requests still running */

static void served_free(struct served *sv)
{
	pthread_mutex_destroy(&sv->lock);
	pthread_cond_destroy(&sv->cv);
	free(sv->req);
	wh_buf_free(&sv->resp);
	free(sv);
}

static void *serve_main(void *arg)
{
	struct served *sv = arg;
	bool abandoned;
	int rv = wh_share_serve(sv->l->share, sv->req, sv->req_len, &sv->resp);

	pthread_mutex_lock(&sv->lock);
	sv->rv = rv;
	sv->done = true;
	abandoned = sv->abandoned;
	pthread_cond_signal(&sv->cv);
	pthread_mutex_unlock(&sv->lock);
	if (abandoned)
		served_free(sv);
	pthread_mutex_lock(&helpers_lock);
	helpers--;
	pthread_mutex_unlock(&helpers_lock);
	return NULL;
}

/* local_call - the rpc: serve the frame in this process, like a host
 * would, within the caller's deadline. */
static int local_call(void *ctx, const uint8_t *req, size_t req_len,
		      struct wh_buf *resp, int timeout_ms)
{
	struct local *l = ctx;
	struct served *sv;
	pthread_condattr_t attr;
	pthread_attr_t ta;
	pthread_t th;
	struct timespec ts;
	int rv;

	if (l->delay_ms > 0) {
		if (l->delay_ms >= timeout_ms) {
			sleep_ms(timeout_ms);
			return WH_ERR_TIMEOUT;
		}
		sleep_ms(l->delay_ms);
		timeout_ms -= l->delay_ms;
	}
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return -ENOMEM;
	sv->req = malloc(req_len ? req_len : 1);
	if (!sv->req) {
		free(sv);
		return -ENOMEM;
	}
	memcpy(sv->req, req, req_len);
	sv->req_len = req_len;
	sv->l = l;
	wh_buf_init(&sv->resp);
	pthread_mutex_init(&sv->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sv->cv, &attr);
	pthread_condattr_destroy(&attr);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&helpers_lock);
	helpers++;
	pthread_mutex_unlock(&helpers_lock);
	if (pthread_create(&th, &ta, serve_main, sv) != 0) {
		pthread_attr_destroy(&ta);
		pthread_mutex_lock(&helpers_lock);
		helpers--;
		pthread_mutex_unlock(&helpers_lock);
		served_free(sv);
		return -EAGAIN;
	}
	pthread_attr_destroy(&ta);
	wh_deadline_ms(&ts, timeout_ms);
	pthread_mutex_lock(&sv->lock);
	while (!sv->done)
		if (pthread_cond_timedwait(&sv->cv, &sv->lock, &ts) ==
		    ETIMEDOUT && !sv->done)
			break;
	if (!sv->done) {
		sv->abandoned = true; /* the helper frees it */
		pthread_mutex_unlock(&sv->lock);
		return WH_ERR_TIMEOUT;
	}
	pthread_mutex_unlock(&sv->lock);
	rv = sv->rv;
	wh_buf_reset(resp);
	if (rv == 0 || rv == WH_ERR_PROTO)
		rv = wh_buf_append(resp, sv->resp.data, sv->resp.len) < 0
			     ? -ENOMEM : rv;
	served_free(sv);
	if (rv == WH_ERR_PROTO)
		return WH_ERR_CLOSED; /* a host would close the connection */
	return rv;
}

static const struct wh_rpc_ops local_ops = {
	.call = local_call,
};

static void on_change(void *ud, const char *dir, size_t dir_len,
		      const char *name, size_t name_len)
{
	struct local *l = ud;

	wh_fs_inval(l->fs, dir, dir_len, name, name_len);
}

/* watcher - forward the share's change notices to the file system, as the
 * session does with the host's INVAL frames. */
static void *watcher(void *arg)
{
	struct local *l = arg;
	struct pollfd pfd[2] = {
		{ .fd = l->stop_fd, .events = POLLIN },
		{ .fd = wh_share_watch_fd(l->share), .events = POLLIN },
	};

	for (;;) {
		int n = poll(pfd, pfd[1].fd >= 0 ? 2 : 1, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			wh_err("poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents) {
			int rv = wh_share_watch_drain(l->share, on_change, l);

			if (rv < 0)
				wh_warn("watch: %s", wh_strerror(rv));
		}
	}
	return NULL;
}

/* announcer - print "mounted" once the mount answers: a stat() of the
 * mount point waits until the request loop serves it. */
static void *announcer(void *arg)
{
	struct local *l = arg;
	struct stat st;

	if (stat(l->mountpoint, &st) == 0 || errno != ENOTCONN) {
		/* an error other than a dead mount (EIO after a timeout)
		 * still came from our loop */
		printf("mounted\n");
		fflush(stdout);
	}
	return NULL;
}

/* exiter - stop the mount from a plain thread after --exit-after-ms. */
static void *exiter(void *arg)
{
	struct local *l = arg;
	struct pollfd pfd = { .fd = l->stop_fd, .events = POLLIN };

	/* returns early if the mount ends first */
	if (poll(&pfd, 1, l->exit_after_ms) == 0)
		wh_fs_exit(l->fs);
	return NULL;
}

static bool parse_ms(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > INT_MAX)
		return false;
	*out = (int)v;
	return true;
}

static int usage(const char *msg)
{
	fprintf(stderr, "wh_localmount: %s\nusage: wh_localmount DIR "
		"MOUNTPOINT [--timeout-ms N] [--delay-ms N] [--exit-after-ms N]\n"
		"                     [--cache-dir DIR] [--ram-cache-mb N] "
		"[--debug] [-v]\n",
		msg);
	return 2;
}

int main(int argc, char **argv)
{
	struct local l = { .stop_fd = -1 };
	struct wh_fs_opts fo = {
		.timeout_ms = 8000,
		.attr_timeout = 60.0,
		.entry_timeout = 60.0,
	};
	struct wh_rpc rpc = { .ops = &local_ops, .ctx = &l };
	pthread_t watch_th, announce_th, exit_th;
	bool watching = false, announcing = false, exiting = false;
	const char *dir = NULL, *cache_dir = NULL;
	struct wh_store *store = NULL;
	sigset_t block, old;
	uint64_t one = 1;
	int rv, status = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--timeout-ms") == 0 && i + 1 < argc) {
			if (!parse_ms(argv[++i], &fo.timeout_ms) ||
			    fo.timeout_ms == 0)
				return usage("bad --timeout-ms");
		} else if (strcmp(a, "--delay-ms") == 0 && i + 1 < argc) {
			if (!parse_ms(argv[++i], &l.delay_ms))
				return usage("bad --delay-ms");
		} else if (strcmp(a, "--exit-after-ms") == 0 && i + 1 < argc) {
			if (!parse_ms(argv[++i], &l.exit_after_ms) ||
			    l.exit_after_ms == 0)
				return usage("bad --exit-after-ms");
		} else if (strcmp(a, "--cache-dir") == 0 && i + 1 < argc) {
			cache_dir = argv[++i];
		} else if (strcmp(a, "--ram-cache-mb") == 0 && i + 1 < argc) {
			int mb;

			if (!parse_ms(argv[++i], &mb) || mb < 1)
				return usage("bad --ram-cache-mb");
			fo.ram_limit = (uint64_t)mb << 20;
		} else if (strcmp(a, "--debug") == 0) {
			fo.debug = true;
		} else if (strcmp(a, "-v") == 0) {
			wh_log_set_level(WH_LOG_DEBUG);
		} else if (a[0] == '-') {
			return usage("unknown option");
		} else if (!dir) {
			dir = a;
		} else if (!l.mountpoint) {
			l.mountpoint = a;
		} else {
			return usage("too many arguments");
		}
	}
	if (!dir || !l.mountpoint)
		return usage("expected a directory and a mount point");

	rv = wh_share_open(dir, &l.share);
	if (rv < 0) {
		fprintf(stderr, "wh_localmount: cannot share '%s': %s\n", dir,
			wh_strerror(rv));
		return 1;
	}
	if (cache_dir) {
		rv = wh_store_open(cache_dir, 10ULL << 30, &store);
		if (rv < 0) {
			fprintf(stderr, "wh_localmount: chunk store '%s': %s\n",
				cache_dir, wh_strerror(rv));
			goto out;
		}
		fo.store = store;
	}
	l.stop_fd = eventfd(0, EFD_CLOEXEC);
	if (l.stop_fd < 0) {
		fprintf(stderr, "wh_localmount: eventfd: %s\n",
			strerror(errno));
		goto out;
	}
	rv = wh_fs_new(&rpc, &fo, &l.fs);
	if (rv < 0) {
		fprintf(stderr, "wh_localmount: %s\n", wh_strerror(rv));
		goto out;
	}
	rv = wh_fs_mount(l.fs, l.mountpoint);
	if (rv < 0) {
		fprintf(stderr, "wh_localmount: cannot mount on '%s': %s\n",
			l.mountpoint, wh_strerror(rv));
		goto out;
	}

	/* helper threads take no signals: wh_fs_run handles them */
	sigfillset(&block);
	pthread_sigmask(SIG_SETMASK, &block, &old);
	watching = pthread_create(&watch_th, NULL, watcher, &l) == 0;
	announcing = pthread_create(&announce_th, NULL, announcer, &l) == 0;
	if (l.exit_after_ms > 0)
		exiting = pthread_create(&exit_th, NULL, exiter, &l) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!watching || !announcing || (l.exit_after_ms > 0 && !exiting)) {
		fprintf(stderr, "wh_localmount: cannot start threads\n");
		goto out;
	}

	rv = wh_fs_run(l.fs);
	if (rv < 0)
		fprintf(stderr, "wh_localmount: %s\n", wh_strerror(rv));
	else
		status = 0;
out:
	if ((watching || exiting) &&
	    write(l.stop_fd, &one, sizeof(one)) < 0)
		wh_warn("stopping the helper threads: %s", strerror(errno));
	if (watching)
		pthread_join(watch_th, NULL);
	if (exiting)
		pthread_join(exit_th, NULL);
	/* unmounts: a stat() still waiting in the announcer returns then */
	wh_fs_del(l.fs);
	if (announcing)
		pthread_join(announce_th, NULL);
	if (l.stop_fd >= 0)
		close(l.stop_fd);
	/* a request given up on may still use the share: then leave it to
	 * the exit (it is still referenced, so not a leak) */
	pthread_mutex_lock(&helpers_lock);
	if (helpers == 0) {
		wh_share_close(l.share);
		l.share = NULL;
	} else {
		kept_share = l.share;
	}
	pthread_mutex_unlock(&helpers_lock);
	wh_store_close(store);
	return status;
}
