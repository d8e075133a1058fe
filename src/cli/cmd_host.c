/* cmd_host.c - `wormhole host DIR`: share a folder. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "auth/wh_code.h"
#include "cli/cli.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "host/wh_host.h"

static const struct option host_opts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "code", required_argument, NULL, 'c' },
	{ "signal", required_argument, NULL, 's' },
	{ "no-signal", no_argument, NULL, 'n' },
	{ "writable", no_argument, NULL, 'w' },
	{ "cache-dir", required_argument, NULL, 'C' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

int cmd_host_main(int argc, char **argv)
{
	struct wh_host_opts ho;
	char code[WH_CODE_STRLEN + 1];
	const char *listen = "0.0.0.0:0", *given_code = NULL, *signal = NULL;
	const char *cache_dir = NULL;
	char signal_buf[256];
	bool no_signal = false;
	int c, rv;

	while ((c = getopt_long(argc, argv, "l:c:s:nvh", host_opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'l':
			listen = optarg;
			break;
		case 'c':
			given_code = optarg;
			break;
		case 's':
			signal = optarg;
			break;
		case 'n':
			no_signal = true;
			break;
		case 'C':
			cache_dir = optarg;
			break;
		case 'w':
			return cli_usage_error("host", "--writable is not "
					       "supported yet: shares are "
					       "read-only");
		case 'v':
			wh_log_set_level(WH_LOG_DEBUG);
			break;
		case 'h':
			printf("usage: wormhole host DIR [--listen ADDR:PORT] "
			       "[--code CODE] [--signal ADDR:PORT | "
			       "--no-signal] [--cache-dir DIR] [-v]\n");
			return WH_EXIT_OK;
		default:
			return cli_usage_error("host", "bad option");
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("host", "expected exactly one folder "
				       "to share");
	if (signal && no_signal)
		return cli_usage_error("host", "--signal and --no-signal "
				       "exclude each other");
	if (given_code) {
		if (cli_parse_code("host", given_code, code))
			return WH_EXIT_USAGE;
	} else {
		wh_code_generate(code);
	}
	if (!no_signal)
		signal = cli_signal_server(signal, signal_buf,
					   sizeof(signal_buf));
	if (!signal && !no_signal)
		wh_warn("no signal server is configured: peers must connect "
			"with --peer ADDR:PORT (pass --signal ADDR:PORT, set "
			"WORMHOLE_SIGNAL, or use --no-signal to silence "
			"this)");
	memset(&ho, 0, sizeof(ho));
	ho.dir = argv[optind];
	ho.listen = listen;
	ho.code = code;
	ho.cache_dir = cache_dir;
	ho.signal = signal;
	ho.out = stdout;
	rv = wh_host_run(&ho);
	return rv < 0 ? WH_EXIT_FAIL : WH_EXIT_OK;
}
