/*
 * cli.h - the wormhole command: one file per subcommand, dispatched from
 * the table in wormhole.c.  Each *_main() gets argv starting at the
 * subcommand's name and returns the process exit code: 0 success,
 * 1 runtime failure, 2 usage error.
 */
#ifndef WH_CLI_H
#define WH_CLI_H

#define WH_EXIT_OK 0
#define WH_EXIT_FAIL 1
#define WH_EXIT_USAGE 2

int cmd_host_main(int argc, char **argv);
int cmd_mount_main(int argc, char **argv);
int cmd_unmount_main(int argc, char **argv);
int cmd_get_main(int argc, char **argv);
int cmd_status_main(int argc, char **argv);
int cmd_signal_main(int argc, char **argv);
int cmd_doctor_main(int argc, char **argv);

/* cli_usage_error - print "wormhole CMD: MESSAGE" and a hint; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* cli_fail - print "wormhole CMD: MESSAGE"; returns 1. */
int cli_fail(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* cli_parse_int - strict decimal in [min, max]; false if not. */
#include <stdbool.h>
bool cli_parse_int(const char *s, long min, long max, long *out);
/* cli_wormhole_mounted - whether |path| is where a wormhole mount is
 * mounted now (/proc/self/mountinfo). */
bool cli_wormhole_mounted(const char *path);

/* cli_parse_code - the canonical join code of |in| into |out| (20 bytes):
 * 0, or the usage error printed and WH_EXIT_USAGE returned. */
int cli_parse_code(const char *cmd, const char *in, char *out);
/* cli_parse_transport - --transport's auto, quic or tcp into |*t|; and
 * cli_parse_timeout_ms - --timeout-ms, 100 to 600000: 0, or the usage
 * error printed and WH_EXIT_USAGE returned. */
#include "net/wh_net.h"
int cli_parse_transport(const char *cmd, const char *in,
			enum wh_net_transport *t);
int cli_parse_timeout_ms(const char *cmd, const char *in, long *ms);
/* cli_connect - the session of get and mount: wh_session_new to |peer|,
 * or through |signal|, by |transport|, with 10 s for the first
 * connection. */
struct wh_session;
int cli_connect(const char *code, const char *peer, const char *signal,
		enum wh_net_transport transport, struct wh_session **ps,
		char *err, size_t errlen);
/* cli_signal_server - the signal server's "ADDR:PORT": |opt| (--signal)
 * if given, else $WORMHOLE_SIGNAL, else the last "signal = ADDR:PORT"
 * line of $XDG_CONFIG_HOME/wormhole/config (~/.config/wormhole/config),
 * copied into |buf|; NULL if none. */
#include <stddef.h>
const char *cli_signal_server(const char *opt, char *buf, size_t size);
/* cli_client_route - how mount/get find the host: with |peer| directly
 * (*signal = NULL), else through the signal server cli_signal_server()
 * finds.  0, or (neither) the usage error printed and WH_EXIT_USAGE. */
int cli_client_route(const char *cmd, const char *peer, const char *opt,
		     const char **signal, char *buf, size_t size);

/* The options get and mount share: their getopt_long entries go first in
 * each command's table (CLI_CLIENT_OPTIONS), and cli_client_opt() takes
 * each option getopt_long returns. */
#define CLI_CLIENT_OPTIONS                                              \
	{ "peer", required_argument, NULL, 'p' },                       \
	{ "signal", required_argument, NULL, 's' },                     \
	{ "cache-dir", required_argument, NULL, 'C' },                  \
	{ "cache-mb", required_argument, NULL, 'M' },                   \
	{ "timeout-ms", required_argument, NULL, 't' },                 \
	{ "transport", required_argument, NULL, 'T' },                  \
	{ "verbose", no_argument, NULL, 'v' }
#define CLI_CLIENT_SHORTOPTS "p:v"
/* the chunk store is shared by get and mount: its limit (MiB) unless
 * --cache-mb says */
#define CLI_STORE_MB 10240

struct cli_client_opts {
	const char *peer;      /* --peer ADDR:PORT */
	const char *signal;    /* --signal ADDR:PORT */
	const char *cache_dir; /* --cache-dir DIR */
	long store_mb;         /* --cache-mb N: the chunk store's limit */
	long timeout_ms;       /* --timeout-ms N */
	enum wh_net_transport transport;
};
/* cli_client_opts_init - the defaults: no peer, signal or cache dir,
 * WH_NET_AUTO, a store of 10 GiB and a timeout of |timeout_ms|. */
void cli_client_opts_init(struct cli_client_opts *o, long timeout_ms);
/* cli_client_opt - option |c| with argument |arg| for command |cmd|
 * into |o|: 1 if it was one of the shared options, 0 if it is the
 * command's own, or -1 with the usage error printed (exit
 * WH_EXIT_USAGE). */
int cli_client_opt(const char *cmd, int c, const char *arg,
		   struct cli_client_opts *o);

#endif /* WH_CLI_H */
