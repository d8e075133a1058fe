/* cmd_unmount.c - `wormhole unmount MOUNTPOINT`. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"

int cmd_unmount_main(int argc, char **argv)
{
	pid_t pid;
	int status;

	if (argc != 2 || argv[1][0] == '-')
		return cli_usage_error("unmount", "expected one mount point");
	/* fusermount3 works for everyone; root can also umount directly */
	pid = fork();
	if (pid < 0)
		return cli_fail("unmount", "fork: %s", strerror(errno));
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "--", argv[1],
		       (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return cli_fail("unmount", "waitpid: %s", strerror(errno));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return WH_EXIT_OK;
	if (geteuid() == 0 && umount2(argv[1], 0) == 0)
		return WH_EXIT_OK;
	return cli_fail("unmount", "could not unmount '%s' (is it a wormhole "
			"mount? if it is busy, close the programs using it)",
			argv[1]);
}
