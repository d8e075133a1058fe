/* wormhole.c - entry point: dispatch to a subcommand from one table. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/wh_code.h"
#include "cli/cli.h"

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
	  "CODE MOUNTPOINT --peer ADDR:PORT [--foreground] [--timeout-ms N] "
	  "[--transport auto|quic|tcp] [--log FILE] [-v]",
	  "mount a shared folder" },
	{ "unmount", cmd_unmount_main, "MOUNTPOINT",
	  "unmount a wormhole mount" },
	{ "get", cmd_get_main,
	  "CODE REMOTE_PATH [LOCAL_PATH] --peer ADDR:PORT [--cache-dir DIR] "
	  "[--json] [--parallel N] [--transport auto|quic|tcp]",
	  "copy a file or a folder: verified, deduplicated, resumable" },
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

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "wormhole %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'wormhole help')\n");
	return WH_EXIT_USAGE;
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "wormhole %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
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

int cli_need_peer(const char *cmd, const char *peer)
{
	if (peer)
		return 0;
	return cli_usage_error(cmd, "no signal server is configured: give the "
			       "host's address with --peer ADDR:PORT");
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		usage(stderr);
		return WH_EXIT_USAGE;
	}
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
