/* cmd_status.c - `wormhole status`: list the wormhole mounts. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* unescape_octal - /proc/self/mountinfo writes spaces etc. as \040 */
static void unescape_octal(char *s)
{
	char *w = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
		    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 4;
		} else {
			*w++ = *s++;
		}
	}
	*w = '\0';
}

int cmd_status_main(int argc, char **argv)
{
	char line[8192];
	FILE *f;
	int n = 0;

	(void)argv;
	if (argc != 1)
		return cli_usage_error("status", "takes no arguments");
	f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return cli_fail("status", "cannot read /proc/self/mountinfo");
	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root mountpoint opts [optional...] -
		 * fstype source superopts */
		char *sep = strstr(line, " - "), *p = line, *mnt = NULL;

		if (!sep || strncmp(sep + 3, "fuse.wormhole ", 14) != 0)
			continue;
		*sep = '\0';
		for (int i = 0; i < 5 && p; i++) {
			mnt = p;
			p = strchr(p, ' ');
			if (p)
				*p++ = '\0';
		}
		if (!mnt)
			continue;
		unescape_octal(mnt);
		printf("%s\n", mnt);
		n++;
	}
	fclose(f);
	if (n == 0)
		fprintf(stderr, "no wormhole mounts\n");
	return WH_EXIT_OK;
}
