/*
 * cmd_mount.c - `wormhole mount CODE MOUNTPOINT --peer ADDR:PORT`.
 *
 * Unless --foreground, the command forks first (threads do not survive a
 * fork): the child connects, authenticates and mounts, then reports
 * through a pipe, so the parent returns only once the mount is live, or
 * exits 1 with the child's one-line error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/wh_code.h"
#include "cli/cli.h"
#include "client/wh_session.h"
#include "common/wh_err.h"
#include "common/wh_log.h"
#include "fuse/wh_fs.h"
#include "store/wh_store.h"

static const struct option mount_opts[] = {
	CLI_CLIENT_OPTIONS,
	{ "ram-cache-mb", required_argument, NULL, 'R' },
	{ "parallel", required_argument, NULL, 'P' },
	{ "foreground", no_argument, NULL, 'f' },
	{ "log", required_argument, NULL, 'L' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* session_caps - what the host agreed to, for the data plane */
static uint64_t session_caps(void *ctx)
{
	return wh_session_caps(ctx);
}

static void fs_inval(void *ud, const char *dir, size_t dir_len,
		     const char *name, size_t name_len)
{
	wh_fs_inval(ud, dir, dir_len, name, name_len);
}

static void fs_reconnect(void *ud)
{
	wh_fs_inval_all(ud);
}

/* report - tell the waiting parent (or the terminal) how it went. */
static void report(int fd, const char *msg)
{
	if (fd >= 0) {
		(void)!write(fd, msg, strlen(msg));
		close(fd);
	} else if (*msg != '0') {
		fprintf(stderr, "wormhole mount: %s\n", msg + 1);
	}
}

static int wait_child(int fd)
{
	char buf[1024];
	size_t len = 0;
	ssize_t n;

	while (len < sizeof(buf) - 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	if (len > 0 && buf[0] == '0')
		return WH_EXIT_OK;
	if (len > 1)
		return cli_fail("mount", "%s", buf + 1);
	return cli_fail("mount", "the mount process died before the mount "
			"was ready (run with --foreground -v to see why)");
}

static void daemon_stdio(const char *logfile)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC), log = -1;

	if (logfile)
		log = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			   0600);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(log >= 0 ? log : null, STDERR_FILENO);
		close(null);
	}
	if (log >= 0)
		close(log);
}

int cmd_mount_main(int argc, char **argv)
{
	struct cli_client_opts co;
	struct wh_fs_opts fo;
	struct wh_session *sess = NULL;
	struct wh_fs *fs = NULL;
	struct wh_store *store = NULL;
	struct wh_rpc rpc;
	struct stat st;
	char code[WH_CODE_STRLEN + 1], err[512], msg[600];
	const char *signal_srv = NULL;
	char signal_buf[256];
	const char *logfile = NULL, *mnt;
	bool foreground = false;
	long ram_mb = 128, parallel = 8;
	char *cache = NULL;
	int c, rv, fd = -1, pipefd[2];

	cli_client_opts_init(&co, 8000);
	while ((c = getopt_long(argc, argv, CLI_CLIENT_SHORTOPTS "fh",
				mount_opts, NULL)) != -1) {
		rv = cli_client_opt("mount", c, optarg, &co);
		if (rv < 0)
			return WH_EXIT_USAGE;
		if (rv > 0)
			continue;
		switch (c) {
		case 'P':
			if (!cli_parse_int(optarg, 1, 64, &parallel))
				return cli_usage_error("mount", "bad --parallel "
						       "'%s'", optarg);
			break;
		case 'R':
			if (!cli_parse_int(optarg, 8, 65536, &ram_mb))
				return cli_usage_error("mount", "bad "
						       "--ram-cache-mb '%s'",
						       optarg);
			break;
		case 'f':
			foreground = true;
			break;
		case 'L':
			logfile = optarg;
			break;
		case 'h':
			printf("usage: wormhole mount CODE MOUNTPOINT [--peer "
			       "ADDR:PORT | --signal ADDR:PORT] [--cache-dir DIR] "
			       "[--cache-mb N] [--ram-cache-mb N] [--parallel N] "
			       "[--foreground] "
			       "[--timeout-ms N] [--transport auto|quic|tcp] "
			       "[--log FILE] [-v]\n");
			return WH_EXIT_OK;
		default:
			return cli_usage_error("mount", "bad option");
		}
	}
	if (optind + 2 != argc)
		return cli_usage_error("mount", "expected a join code and a "
				       "mount point");
	if (cli_parse_code("mount", argv[optind], code) ||
	    cli_client_route("mount", co.peer, co.signal, &signal_srv,
			     signal_buf, sizeof(signal_buf)))
		return WH_EXIT_USAGE;
	mnt = argv[optind + 1];
	if (stat(mnt, &st) != 0) {
		if (errno == ENOTCONN)
			return cli_fail("mount", "'%s' is a dead mount: unmount "
					"it first with 'wormhole unmount %s'",
					mnt, mnt);
		return cli_fail("mount", "mount point '%s': %s", mnt,
				strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return cli_fail("mount", "mount point '%s' is not a directory",
				mnt);
	/* a second mount on top would hide the first, and the next
	 * unmount would take away the wrong one */
	if (cli_wormhole_mounted(mnt))
		return cli_fail("mount", "'%s' is a wormhole mount already: "
				"unmount it first with 'wormhole unmount %s'",
				mnt, mnt);
	if (co.cache_dir && mkdir(co.cache_dir, 0700) != 0 && errno != EEXIST)
		return cli_fail("mount", "cannot create cache dir '%s': %s",
				co.cache_dir, strerror(errno));
	/* absolute: the daemon changes to "/" */
	cache = co.cache_dir ? realpath(co.cache_dir, NULL)
			     : wh_store_default_dir();
	if (!cache)
		return cli_fail("mount", "no cache directory: set HOME or "
				"XDG_CACHE_HOME, or pass --cache-dir DIR");

	if (!foreground) {
		pid_t pid;

		if (pipe2(pipefd, O_CLOEXEC) != 0) {
			free(cache);
			return cli_fail("mount", "pipe: %s", strerror(errno));
		}
		fflush(NULL);
		pid = fork();
		if (pid < 0) {
			free(cache);
			return cli_fail("mount", "fork: %s", strerror(errno));
		}
		if (pid > 0) {
			close(pipefd[1]);
			free(cache);
			return wait_child(pipefd[0]);
		}
		close(pipefd[0]);
		fd = pipefd[1];
		setsid();
	}
	signal(SIGPIPE, SIG_IGN);

	/* here, not before the fork: the parent must not hold it */
	rv = wh_store_open(cache, (uint64_t)co.store_mb << 20, &store);
	if (rv < 0) {
		snprintf(msg, sizeof(msg), "1cannot open the chunk store in "
			 "'%.400s': %s", cache, wh_strerror(rv));
		free(cache);
		report(fd, msg);
		return WH_EXIT_FAIL;
	}
	free(cache);

	rv = cli_connect(code, co.peer, signal_srv, co.transport, &sess, err,
			 sizeof(err));
	if (rv < 0) {
		snprintf(msg, sizeof(msg), "1%s", err);
		report(fd, msg);
		wh_store_close(store);
		return WH_EXIT_FAIL;
	}
	wh_session_rpc(sess, &rpc);
	memset(&fo, 0, sizeof(fo));
	fo.timeout_ms = (int)co.timeout_ms;
	fo.attr_timeout = 60.0;
	fo.entry_timeout = 60.0;
	fo.store = store;
	fo.ram_limit = (uint64_t)ram_mb << 20;
	fo.fetch_workers = (int)parallel;
	fo.caps = session_caps;
	fo.caps_ctx = sess;
	/* for tests and comparisons: the mode of kernels without no-open */
	fo.open_each = getenv("WH_MOUNT_OPEN_EACH") != NULL;
	rv = wh_fs_new(&rpc, &fo, &fs);
	if (rv == 0) {
		wh_session_set_handlers(sess, fs_inval, fs_reconnect, fs);
		rv = wh_fs_mount(fs, mnt);
	}
	if (rv < 0) {
		snprintf(msg, sizeof(msg), "1cannot mount on '%s': %s", mnt,
			 wh_strerror(rv));
		report(fd, msg);
		wh_session_set_handlers(sess, NULL, NULL, NULL);
		wh_fs_del(fs);
		wh_session_del(sess);
		wh_store_close(store);
		return WH_EXIT_FAIL;
	}
	wh_info("mounted %s on %s", co.peer ? co.peer : "the share", mnt);
	if (!foreground) {
		report(fd, "0");
		if (chdir("/") != 0)
			wh_debug("chdir /: %s", strerror(errno));
		daemon_stdio(logfile);
	}
	rv = wh_fs_run(fs);
	wh_session_set_handlers(sess, NULL, NULL, NULL);
	wh_fs_del(fs);
	wh_session_del(sess);
	wh_store_close(store);
	wh_info("unmounted %s", mnt);
	return rv < 0 ? WH_EXIT_FAIL : WH_EXIT_OK;
}
