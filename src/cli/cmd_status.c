/* cmd_status.c - `wormhole status`: list the wormhole mounts, each with
 * its host and how it is connected. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

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

/* link_field - the value of line "name value" of |text| into |out|. */
static void link_field(const char *text, const char *name, char *out,
		       size_t size)
{
	size_t len = strlen(name);
	const char *p = text;

	snprintf(out, size, "?");
	while (p && *p) {
		const char *eol = strchr(p, '\n');
		size_t n = eol ? (size_t)(eol - p) : strlen(p);

		if (n > len && strncmp(p, name, len) == 0 && p[len] == ' ') {
			snprintf(out, size, "%.*s", (int)(n - len - 1),
				 p + len + 1);
			return;
		}
		p = eol ? eol + 1 : NULL;
	}
}

/* print_mount - "MNT<TAB>peer ADDR, over QUIC" (or connecting, ...); the
 * path alone when the mount cannot say (an older daemon, or a dead one). */
static void print_mount(const char *mnt)
{
	char text[512], peer[256], transport[16], state[32];
	ssize_t n = getxattr(mnt, "user.wormhole.link", text,
			     sizeof(text) - 1);

	if (n <= 0) {
		printf("%s\n", mnt);
		return;
	}
	text[n] = '\0';
	link_field(text, "peer", peer, sizeof(peer));
	link_field(text, "transport", transport, sizeof(transport));
	link_field(text, "state", state, sizeof(state));
	if (strcmp(state, "connected") == 0)
		printf("%s\t%s, over %s\n", mnt, peer,
		       strcmp(transport, "quic") == 0  ? "QUIC"
		       : strcmp(transport, "tcp") == 0 ? "TLS over TCP"
						       : transport);
	else
		printf("%s\t%s, %s\n", mnt, peer, state);
}

/* each_mount - |fn|(path, ud) for every wormhole mount in
 * /proc/self/mountinfo until it returns true; the count of mounts seen,
 * or -1 if the table cannot be read */
static int each_mount(bool (*fn)(const char *mnt, void *ud), void *ud)
{
	char line[8192];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int n = 0;

	if (!f)
		return -1;
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
		n++;
		if (fn(mnt, ud))
			break;
	}
	fclose(f);
	return n;
}

static bool print_one(const char *mnt, void *ud)
{
	(void)ud;
	print_mount(mnt);
	return false;
}

static bool same_path(const char *mnt, void *ud)
{
	const char **want = ud;

	if (strcmp(mnt, *want) != 0)
		return false;
	*want = NULL;
	return true;
}

bool cli_wormhole_mounted(const char *path)
{
	char *abs = realpath(path, NULL);
	const char *want = abs;

	if (!abs)
		return false;
	each_mount(same_path, &want);
	free(abs);
	return want == NULL;
}

int cmd_status_main(int argc, char **argv)
{
	int n;

	(void)argv;
	if (argc != 1)
		return cli_usage_error("status", "takes no arguments");
	n = each_mount(print_one, NULL);
	if (n < 0)
		return cli_fail("status", "cannot read /proc/self/mountinfo");
	if (n == 0)
		fprintf(stderr, "no wormhole mounts\n");
	return WH_EXIT_OK;
}
