/*
 * cmd_get.c - `wormhole get CODE REMOTE_PATH [LOCAL_PATH] --peer ADDR:PORT`:
 * bulk copy of a file or a tree, verified, deduplicated, resumable.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/wh_code.h"
#include "cli/cli.h"
#include "client/wh_get.h"
#include "client/wh_session.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "proto/wh_proto.h"
#include "host/wh_mcache.h"
#include "store/wh_store.h"

static const struct option get_opts[] = {
	CLI_CLIENT_OPTIONS,
	{ "json", no_argument, NULL, 'j' },
	{ "parallel", required_argument, NULL, 'P' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* normalize - "/a//b/" -> "a/b"; "." and "/" -> "" (the share's root) */
static int normalize(const char *in, char *out, size_t size)
{
	size_t o = 0;

	for (const char *p = in; *p;) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (n == 0)
			break;
		if (!(n == 1 && p[0] == '.')) {
			if (o + n + 2 > size)
				return -ENAMETOOLONG;
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p += n;
	}
	out[o] = '\0';
	return wh_path_valid(out, o) ? 0 : -EINVAL;
}

/* on_stop - SIGINT, SIGTERM, SIGHUP: say what becomes of the copy, then
 * die of the signal.  Stopping here is as safe as a kill -9, which the
 * store and the partial files are made for; the next get resumes. */
static volatile sig_atomic_t drawing; /* a progress line is on the terminal */

static void on_stop(int sig)
{
	static const char msg[] =
		"\nwormhole get: interrupted; what was copied is kept, and "
		"the same command resumes it\n";
	ssize_t n;

	n = write(STDERR_FILENO, msg + !drawing, sizeof(msg) - 1 - !drawing);
	(void)n;
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_stops(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction old;

		/* one ignored by whoever started us stays ignored */
		if (sigaction(sigs[i], NULL, &old) == 0 &&
		    old.sa_handler == SIG_IGN)
			continue;
		sigaction(sigs[i], &sa, NULL);
	}
}

int cmd_get_main(int argc, char **argv)
{
	struct cli_client_opts co;
	struct wh_session *sess = NULL;
	struct wh_store *store = NULL;
	struct wh_mcache *mc = NULL;
	struct wh_get_opts go;
	struct wh_get_stats st;
	char code[WH_CODE_STRLEN + 1], remote[WH_MAX_PATH + 1], err[1024];
	char *local = NULL, *cache = NULL;
	const char *signal_srv = NULL, *base;
	char signal_buf[256];
	bool json = false;
	long parallel = 32;
	struct stat lst;
	int c, rv;

	/* quiet unless asked: the summary (or --json) says what happened */
	wh_log_set_level(WH_LOG_WARN);
	cli_client_opts_init(&co, 15000);
	while ((c = getopt_long(argc, argv, CLI_CLIENT_SHORTOPTS "h", get_opts,
				NULL)) != -1) {
		rv = cli_client_opt("get", c, optarg, &co);
		if (rv < 0)
			return WH_EXIT_USAGE;
		if (rv > 0)
			continue;
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'P':
			if (!cli_parse_int(optarg, 1, WH_GET_MAX_PARALLEL,
					   &parallel))
				return cli_usage_error("get", "bad --parallel "
						       "'%s' (1-64)", optarg);
			break;
		case 'h':
			printf("usage: wormhole get CODE REMOTE_PATH "
			       "[LOCAL_PATH] [--peer ADDR:PORT | --signal "
			       "ADDR:PORT] [--cache-dir DIR] [--cache-mb N] "
			       "[--json] "
			       "[--parallel N] [--transport auto|quic|tcp]\n");
			return WH_EXIT_OK;
		default:
			return cli_usage_error("get", "bad option");
		}
	}
	if (optind + 2 > argc || optind + 3 < argc)
		return cli_usage_error("get", "expected a join code, a remote "
				       "path and maybe a local path");
	if (cli_parse_code("get", argv[optind], code))
		return WH_EXIT_USAGE;
	if (normalize(argv[optind + 1], remote, sizeof(remote)) < 0)
		return cli_usage_error("get", "bad remote path '%s'",
				       argv[optind + 1]);
	if (cli_client_route("get", co.peer, co.signal, &signal_srv,
			     signal_buf, sizeof(signal_buf)))
		return WH_EXIT_USAGE;

	/* like cp: into an existing directory, or to the given name; the
	 * whole share ("." or "/") goes into LOCAL_PATH itself */
	base = strrchr(remote, '/') ? strrchr(remote, '/') + 1 : remote;
	if (!*base)
		base = "share";
	if (optind + 3 == argc) {
		const char *l = argv[optind + 2];

		if (remote[0] && stat(l, &lst) == 0 && S_ISDIR(lst.st_mode)) {
			size_t n = strlen(l) + strlen(base) + 2;

			local = malloc(n);
			if (local)
				snprintf(local, n, "%s/%s", l, base);
		} else {
			local = strdup(l);
		}
	} else {
		local = strdup(base);
	}
	if (!local)
		return cli_fail("get", "out of memory");
	/* the copy is renamed over its destination: never over a device,
	 * FIFO or socket (a get to /dev/null would replace the device) */
	if (lstat(local, &lst) == 0 && !S_ISREG(lst.st_mode) &&
	    !S_ISDIR(lst.st_mode) && !S_ISLNK(lst.st_mode)) {
		cli_fail("get", "'%s' is a device, FIFO or socket, which a "
			 "copy would replace: give a file or directory path",
			 local);
		free(local);
		return WH_EXIT_USAGE;
	}
	cache = co.cache_dir ? strdup(co.cache_dir) : wh_store_default_dir();
	if (!cache) {
		free(local);
		return cli_fail("get", "no cache directory: set --cache-dir "
				"or HOME");
	}
	rv = wh_store_open(cache, (uint64_t)co.store_mb << 20, &store);
	if (rv < 0) {
		cli_fail("get", "cannot use the cache directory '%s': %s",
			 cache, wh_strerror(rv));
		goto out;
	}
	{
		/* manifests of the files we write, so an unchanged
		 * destination is never read again to be compared */
		size_t n = strlen(cache) + sizeof("/manifests");
		char *mdir = malloc(n);

		if (mdir) {
			snprintf(mdir, n, "%s/manifests", cache);
			if (wh_mcache_open(mdir, &mc) < 0)
				mc = NULL;
			free(mdir);
		}
	}
	rv = cli_connect(code, co.peer, signal_srv, co.transport, &sess, err,
			 sizeof(err));
	if (rv < 0) {
		cli_fail("get", "%s", err);
		goto out;
	}
	memset(&go, 0, sizeof(go));
	go.remote = remote;
	go.local = local;
	go.parallel = (int)parallel;
	go.timeout_ms = (int)co.timeout_ms;
	go.progress = !json && isatty(STDERR_FILENO);
	go.mc = mc;
	drawing = go.progress;
	catch_stops();
	rv = wh_get_run(sess, store, &go, &st, err, sizeof(err));
	if (rv < 0) {
		cli_fail("get", "%s", err[0] ? err : wh_strerror(rv));
		goto out;
	}
	if (json)
		printf("{\"files\": %llu, \"bytes\": %llu, \"wire_bytes\": %llu, "
		       "\"chunks\": %llu, \"chunks_fetched\": %llu, "
		       "\"chunks_from_store\": %llu, "
		       "\"chunks_from_destination\": %llu, "
		       "\"hardlinks\": %llu, "
		       "\"chunks_resumed\": %llu, "
		       "\"corrupt_chunks_discarded\": %lu, "
		       "\"chunks_in_flight_max\": %u, "
		       "\"seconds\": %.3f}\n",
		       (unsigned long long)st.files,
		       (unsigned long long)st.bytes,
		       (unsigned long long)st.wire_bytes,
		       (unsigned long long)st.chunks,
		       (unsigned long long)st.chunks_fetched,
		       (unsigned long long)st.chunks_from_store,
		       (unsigned long long)st.chunks_from_dest,
		       (unsigned long long)st.hardlinks,
		       (unsigned long long)st.chunks_in_place,
		       wh_store_corrupt(store), st.inflight_max, st.seconds);
	else
		wh_info("got %llu files, %llu bytes (%llu chunks, %llu over "
			"the wire) in %.2f s", (unsigned long long)st.files,
			(unsigned long long)st.bytes,
			(unsigned long long)st.chunks,
			(unsigned long long)st.chunks_fetched, st.seconds);
out:
	wh_session_del(sess);
	wh_store_close(store);
	wh_mcache_close(mc);
	free(local);
	free(cache);
	return rv < 0 ? WH_EXIT_FAIL : WH_EXIT_OK;
}
