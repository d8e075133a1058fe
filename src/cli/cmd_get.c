/*
 * cmd_get.c - `wormhole get CODE REMOTE_PATH [LOCAL_PATH] --peer ADDR:PORT`:
 * bulk copy of a file or a tree, verified, deduplicated, resumable.
 */
#include <errno.h>
#include <getopt.h>
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

#define DEFAULT_STORE_MB 10240 /* the chunk store's limit, MiB */

static const struct option get_opts[] = {
	{ "peer", required_argument, NULL, 'p' },
	{ "signal", required_argument, NULL, 's' },
	{ "cache-dir", required_argument, NULL, 'C' },
	{ "cache-mb", required_argument, NULL, 'M' },
	{ "json", no_argument, NULL, 'j' },
	{ "parallel", required_argument, NULL, 'P' },
	{ "timeout-ms", required_argument, NULL, 't' },
	{ "transport", required_argument, NULL, 'T' },
	{ "verbose", no_argument, NULL, 'v' },
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

int cmd_get_main(int argc, char **argv)
{
	enum wh_net_transport transport = WH_NET_AUTO;
	struct wh_session *sess = NULL;
	struct wh_store *store = NULL;
	struct wh_mcache *mc = NULL;
	struct wh_get_opts go;
	struct wh_get_stats st;
	char code[WH_CODE_STRLEN + 1], remote[WH_MAX_PATH + 1], err[1024];
	char *local = NULL, *cache = NULL;
	const char *signal_opt = NULL, *signal_srv = NULL;
	char signal_buf[256];
	const char *peer = NULL, *cache_dir = NULL, *base;
	bool json = false;
	long parallel = 32, timeout_ms = 15000, store_mb = DEFAULT_STORE_MB;
	struct stat lst;
	int c, rv;

	/* quiet unless asked: the summary (or --json) says what happened */
	wh_log_set_level(WH_LOG_WARN);
	while ((c = getopt_long(argc, argv, "p:vh", get_opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			peer = optarg;
			break;
		case 's':
			signal_opt = optarg;
			break;
		case 'C':
			cache_dir = optarg;
			break;
		case 'M':
			if (!cli_parse_int(optarg, 1, 1L << 30, &store_mb))
				return cli_usage_error("get", "bad --cache-mb "
						       "'%s'", optarg);
			break;
		case 'j':
			json = true;
			break;
		case 'P':
			if (!cli_parse_int(optarg, 1, WH_GET_MAX_PARALLEL,
					   &parallel))
				return cli_usage_error("get", "bad --parallel "
						       "'%s' (1-64)", optarg);
			break;
		case 'T':
			if (cli_parse_transport("get", optarg, &transport))
				return WH_EXIT_USAGE;
			break;
		case 't':
			if (cli_parse_timeout_ms("get", optarg, &timeout_ms))
				return WH_EXIT_USAGE;
			break;
		case 'v':
			wh_log_set_level(WH_LOG_DEBUG);
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
	if (cli_client_route("get", peer, signal_opt, &signal_srv,
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
	cache = cache_dir ? strdup(cache_dir) : wh_store_default_dir();
	if (!cache) {
		free(local);
		return cli_fail("get", "no cache directory: set --cache-dir "
				"or HOME");
	}
	rv = wh_store_open(cache, (uint64_t)store_mb << 20, &store);
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
	rv = cli_connect(code, peer, signal_srv, transport, &sess, err,
			 sizeof(err));
	if (rv < 0) {
		cli_fail("get", "%s", err);
		goto out;
	}
	memset(&go, 0, sizeof(go));
	go.remote = remote;
	go.local = local;
	go.parallel = (int)parallel;
	go.timeout_ms = (int)timeout_ms;
	go.progress = !json && isatty(STDERR_FILENO);
	go.mc = mc;
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
