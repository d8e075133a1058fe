/* wormhole.c - entry point: dispatch to a subcommand from one table. */
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/wh_code.h"
#include "cli/cli.h"
#include "client/wh_session.h"
#include "common/wh_log.h"
#include "common/wh_trace.h"

static int version_main(int argc, char **argv);
static int help_main(int argc, char **argv);

static const struct {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *usage;
	const char *description;
} subcommands[] = {
	{ "host", cmd_host_main,
	  "DIR [--listen ADDR:PORT] [--code CODE] [--signal ADDR:PORT | "
	  "--no-signal] [--cache-dir DIR] [-v]",
	  "share DIR (read-only) and print its join code" },
	{ "mount", cmd_mount_main,
	  "CODE MOUNTPOINT [--peer ADDR:PORT | --signal ADDR:PORT] "
	  "[--cache-dir DIR] [--ram-cache-mb N] [--parallel N] "
	  "[--foreground] [--timeout-ms N] [--transport auto|quic|tcp] "
	  "[--log FILE] [-v]",
	  "mount a shared folder" },
	{ "unmount", cmd_unmount_main, "MOUNTPOINT",
	  "unmount a wormhole mount" },
	{ "get", cmd_get_main,
	  "CODE REMOTE_PATH [LOCAL_PATH] [--peer ADDR:PORT | --signal "
	  "ADDR:PORT] [--cache-dir DIR] [--json] [--parallel N] "
	  "[--transport auto|quic|tcp]",
	  "copy a file or a folder: verified, deduplicated, resumable" },
	{ "signal", cmd_signal_main,
	  "[--listen ADDR:PORT] [--db FILE] [--max-rooms N] [--ttl SECONDS] "
	  "[--rate PER_SECOND]",
	  "run a rendezvous server: pairs peers by code, never sees data" },
	{ "status", cmd_status_main, "", "list the active wormhole mounts" },
	{ "doctor", cmd_doctor_main, "",
	  "check that this machine can host and mount" },
	{ "version", version_main, "", "print the version" },
	{ "help", help_main, "", "print this help" },
};

#define NSUB (sizeof(subcommands) / sizeof(subcommands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: wormhole COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < NSUB; i++)
		fprintf(f, "  %-8s %s\n           wormhole %s %s\n",
			subcommands[i].name, subcommands[i].description,
			subcommands[i].name, subcommands[i].usage);
	fprintf(f, "\nexit codes: 0 success, 1 failure, 2 usage error\n");
}

static int version_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("wormhole %s\n", WH_VERSION);
	return WH_EXIT_OK;
}

static int help_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	usage(stdout);
	return WH_EXIT_OK;
}

/* "wormhole CMD: MESSAGE" then |tail| on stderr */
static void __attribute__((format(printf, 3, 0)))
say(const char *cmd, const char *tail, const char *fmt, va_list ap)
{
	fprintf(stderr, "wormhole %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fputs(tail, stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(cmd, " (see 'wormhole help')\n", fmt, ap);
	va_end(ap);
	return WH_EXIT_USAGE;
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(cmd, "\n", fmt, ap);
	va_end(ap);
	return WH_EXIT_FAIL;
}

bool cli_parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return false;
	v = strtol(s, &end, 10);
	if (*end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

int cli_parse_code(const char *cmd, const char *in, char *out)
{
	if (wh_code_parse(in, out) == 0)
		return 0;
	return cli_usage_error(cmd, "malformed join code '%s': expected 16 "
			       "symbols like 7KJM-XBCD-QRST-VWYZ", in);
}

int cli_parse_transport(const char *cmd, const char *in,
			enum wh_net_transport *t)
{
	if (wh_net_transport_parse(in, t) == 0)
		return 0;
	return cli_usage_error(cmd, "bad --transport '%s': expected auto, "
			       "quic or tcp", in);
}

int cli_parse_timeout_ms(const char *cmd, const char *in, long *ms)
{
	if (cli_parse_int(in, 100, 600000, ms))
		return 0;
	return cli_usage_error(cmd, "bad --timeout-ms '%s'", in);
}

int cli_connect(const char *code, const char *peer, const char *signal,
		enum wh_net_transport transport, struct wh_session **ps,
		char *err, size_t errlen)
{
	struct wh_session_opts so = {
		.code = code,
		.peer = peer,
		.signal = signal,
		.connect_timeout_ms = 10000,
		.transport = transport,
	};

	return wh_session_new(&so, ps, err, errlen);
}

const char *cli_signal_server(const char *opt, char *buf, size_t size)
{
	const char *env = getenv("WORMHOLE_SIGNAL"), *xdg, *home;
	char path[4096], line[512];
	const char *found = NULL;
	FILE *f;

	if (opt && *opt)
		return opt;
	if (env && *env)
		return env;
	xdg = getenv("XDG_CONFIG_HOME");
	home = getenv("HOME");
	if (xdg && *xdg)
		snprintf(path, sizeof(path), "%s/wormhole/config", xdg);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.config/wormhole/config",
			 home);
	else
		return NULL;
	f = fopen(path, "r");
	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		char key[64], val[448];

		/* "signal = ADDR:PORT"; '#' starts a comment */
		if (line[strspn(line, " \t")] == '#')
			continue;
		if (sscanf(line, " %63[a-z_] = %447s", key, val) == 2 &&
		    strcmp(key, "signal") == 0) {
			snprintf(buf, size, "%s", val);
			found = buf;
		}
	}
	fclose(f);
	return found;
}

int cli_client_route(const char *cmd, const char *peer, const char *opt,
		     const char **signal, char *buf, size_t size)
{
	*signal = NULL;
	if (peer)
		return 0;
	*signal = cli_signal_server(opt, buf, size);
	if (*signal)
		return 0;
	return cli_usage_error(cmd, "no signal server is configured: pass "
			       "--signal ADDR:PORT (or set WORMHOLE_SIGNAL, "
			       "or 'signal = ADDR:PORT' in "
			       "~/.config/wormhole/config), or give the "
			       "host's address with --peer ADDR:PORT");
}

void cli_client_opts_init(struct cli_client_opts *o, long timeout_ms)
{
	memset(o, 0, sizeof(*o));
	o->store_mb = CLI_STORE_MB;
	o->timeout_ms = timeout_ms;
	o->transport = WH_NET_AUTO;
}

int cli_client_opt(const char *cmd, int c, const char *arg,
		   struct cli_client_opts *o)
{
	switch (c) {
	case 'p':
		o->peer = arg;
		return 1;
	case 's':
		o->signal = arg;
		return 1;
	case 'C':
		o->cache_dir = arg;
		return 1;
	case 'M':
		if (!cli_parse_int(arg, 1, 1L << 30, &o->store_mb)) {
			cli_usage_error(cmd, "bad --cache-mb '%s'", arg);
			return -1;
		}
		return 1;
	case 't':
		return cli_parse_timeout_ms(cmd, arg, &o->timeout_ms) ? -1 : 1;
	case 'T':
		return cli_parse_transport(cmd, arg, &o->transport) ? -1 : 1;
	case 'v':
		wh_log_set_level(WH_LOG_DEBUG);
		return 1;
	default:
		return 0;
	}
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		usage(stderr);
		return WH_EXIT_USAGE;
	}
	/* One malloc arena for every thread, set before any thread starts.
	 * glibc gives threads arenas of their own, each keeping the buffers
	 * its thread freed: a mount that had copied 256 MiB held 183 MB of
	 * RSS, 44 MB more than with one arena (139 MB, of which 128 MB is its
	 * RAM cache).  Buffers are pooled, so the one lock is rarely taken. */
	mallopt(M_ARENA_MAX, 1);
	wh_trace_init();
	cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
		return help_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "--version"))
		return version_main(argc - 1, argv + 1);
	for (size_t i = 0; i < NSUB; i++)
		if (!strcmp(cmd, subcommands[i].name))
			return subcommands[i].main(argc - 1, argv + 1);
	fprintf(stderr, "wormhole: unknown command '%s' (see 'wormhole help')\n",
		cmd);
	return WH_EXIT_USAGE;
}
