/* wh_fsutil.c - mkdir -p and the cache directory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/wh_fsutil.h"

int wh_mkdirs(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

char *wh_cache_home(const char *sub)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char buf[4096];
	int n;

	if (xdg && *xdg)
		n = snprintf(buf, sizeof(buf), "%s/wormhole%s%s", xdg,
			     sub ? "/" : "", sub ? sub : "");
	else if (home && *home)
		n = snprintf(buf, sizeof(buf), "%s/.cache/wormhole%s%s", home,
			     sub ? "/" : "", sub ? sub : "");
	else
		return NULL;
	if (n < 0 || (size_t)n >= sizeof(buf))
		return NULL;
	return strdup(buf);
}
