/* cmd_doctor.c - `wormhole doctor`: can this machine host and mount? */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "auth/wh_code.h"
#include "cli/cli.h"
#include "common/wh_err.h"
#include "net/wh_addr.h"
#include "net/wh_tls_tcp.h"
#include "signal/wh_rendezvous.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

static int problems;

static void check(bool ok, const char *what, const char *fix)
{
	printf("%-7s %s%s%s\n", ok ? "ok" : "PROBLEM", what, ok ? "" : ": ",
	       ok ? "" : fix);
	if (!ok)
		problems++;
}

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[4096];

	if (!path)
		path = "/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
		if (access(buf, X_OK) == 0)
			return true;
		path += n;
		if (*path == ':')
			path++;
	}
	return false;
}

/* check_signal - is the configured signal server there?  A JOIN for a
 * fresh random code must come back "no such room". */
static void check_signal(void)
{
	char buf[256], code[WH_CODE_STRLEN + 1], err[512], what[600];
	const char *sig = cli_signal_server(NULL, buf, sizeof(buf));
	struct sockaddr_storage ss, peer;
	socklen_t sslen, peerlen;
	int rv, fd;

	if (!sig) {
		printf("%-7s no signal server configured (WORMHOLE_SIGNAL or "
		       "~/.config/wormhole/config): peers need --peer\n",
		       "info");
		return;
	}
	if (wh_addr_parse(sig, &ss, &sslen) < 0) {
		snprintf(what, sizeof(what), "the signal server address "
			 "'%s' parses", sig);
		check(false, what, "expected ADDR:PORT");
		return;
	}
	wh_code_generate(code);
	rv = wh_rdv_join((struct sockaddr *)&ss, sslen, code, 3000, -1, &fd,
			 &peer, &peerlen, err, sizeof(err));
	if (rv == 0)
		close(fd); /* a host with a random code: unlikely, but fine */
	snprintf(what, sizeof(what), "the signal server %s answers", sig);
	check(rv == 0 || rv == -ENOENT || rv == -EBUSY, what, err);
}

int cmd_doctor_main(int argc, char **argv)
{
	struct open_how how;
	int fd, one = 1, seg = 1200;
	long rv;

	(void)argv;
	if (argc != 1)
		return cli_usage_error("doctor", "takes no arguments");
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	check(fd >= 0, "/dev/fuse can be opened (needed to mount)",
	      "load the fuse module (modprobe fuse) or run where FUSE is "
	      "allowed");
	if (fd >= 0)
		close(fd);
	check(in_path("fusermount3"), "fusermount3 is installed",
	      "apt-get install fuse3");
	memset(&how, 0, sizeof(how));
	how.flags = O_PATH | O_CLOEXEC;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
	rv = syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof(how));
	if (rv >= 0) {
		printf("%-7s openat2(RESOLVE_BENEATH) resolves the share's "
		       "paths\n", "ok");
		close((int)rv);
	} else {
		printf("%-7s openat2 is not available (%s): a host resolves "
		       "paths one component at a time, a little slower\n",
		       "info", strerror(errno));
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	check(fd >= 0, "UDP sockets can be created", strerror(errno));
	if (fd >= 0) {
		bool gso = setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg,
				      sizeof(seg)) == 0;

		printf("%-7s UDP segmentation offload (GSO) %s\n", "info",
		       gso ? "available" : "unavailable: slower sending");
		(void)one;
		close(fd);
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	check(fd >= 0, "TCP sockets can be created (the fallback where UDP "
		       "is blocked)", strerror(errno));
	if (fd >= 0)
		close(fd);
	printf("%-7s BBR congestion control for TCP %s\n", "info",
	       wh_tcp_bbr_available() ? "available"
				      : "unavailable: the kernel's default "
					"is used (modprobe tcp_bbr)");
	check_signal();
	printf("%d problem%s found\n", problems, problems == 1 ? "" : "s");
	return problems ? WH_EXIT_FAIL : WH_EXIT_OK;
}
