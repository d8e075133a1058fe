/* cmd_signal.c - `wormhole signal`: run the rendezvous server. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/wh_fsutil.h"
#include "common/wh_log.h"
#include "signal/wh_signal.h"

static const struct option signal_opts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "db", required_argument, NULL, 'd' },
	{ "max-rooms", required_argument, NULL, 'm' },
	{ "ttl", required_argument, NULL, 't' },
	{ "rate", required_argument, NULL, 'r' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* default_db - $XDG_STATE_HOME/wormhole/signal.db (~/.local/state/...);
 * the folder is created.  NULL if there is no home. */
static char *default_db(void)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	char dir[4096], *path;

	if (xdg && *xdg)
		snprintf(dir, sizeof(dir), "%s/wormhole", xdg);
	else if (home && *home)
		snprintf(dir, sizeof(dir), "%s/.local/state/wormhole", home);
	else
		return NULL;
	if (wh_mkdirs(dir) < 0)
		return NULL;
	path = malloc(strlen(dir) + sizeof("/signal.db"));
	if (path)
		sprintf(path, "%s/signal.db", dir);
	return path;
}

int cmd_signal_main(int argc, char **argv)
{
	struct wh_signal_opts so;
	char *dbpath = NULL;
	long v;
	int c, rv;

	memset(&so, 0, sizeof(so));
	so.listen = "0.0.0.0:7700";
	so.out = stdout;
	wh_sigsrv_opts_default(&so.srv);
	while ((c = getopt_long(argc, argv, "l:d:vh", signal_opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'l':
			so.listen = optarg;
			break;
		case 'd':
			so.db = optarg;
			break;
		case 'm':
			if (!cli_parse_int(optarg, 1, 10000000, &v))
				return cli_usage_error("signal", "--max-rooms "
						       "wants 1..10000000");
			so.srv.max_rooms = (size_t)v;
			break;
		case 't':
			if (!cli_parse_int(optarg, 10, 86400, &v))
				return cli_usage_error("signal", "--ttl wants "
						       "10..86400 seconds");
			so.srv.ttl_s = (unsigned)v;
			break;
		case 'r':
			if (!cli_parse_int(optarg, 1, 100000, &v))
				return cli_usage_error("signal", "--rate wants "
						       "1..100000 per second");
			so.srv.rate = (unsigned)v;
			so.srv.burst = (unsigned)v * 2;
			break;
		case 'v':
			wh_log_set_level(WH_LOG_DEBUG);
			break;
		case 'h':
			printf("usage: wormhole signal [--listen ADDR:PORT] "
			       "[--db FILE] [--max-rooms N] [--ttl SECONDS] "
			       "[--rate PER_SECOND] [-v]\n");
			return WH_EXIT_OK;
		default:
			return cli_usage_error("signal", "bad option");
		}
	}
	if (optind != argc)
		return cli_usage_error("signal", "unexpected argument '%s'",
				       argv[optind]);
	if (!so.db) {
		dbpath = default_db();
		if (!dbpath)
			return cli_fail("signal", "no place for the room "
					"database: pass --db FILE");
		so.db = dbpath;
	}
	rv = wh_signal_run(&so);
	free(dbpath);
	return rv < 0 ? WH_EXIT_FAIL : WH_EXIT_OK;
}
