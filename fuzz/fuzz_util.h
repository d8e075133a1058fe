/*
 * fuzz_util.h - what the fuzz targets that work on files share: a
 * directory tree removed when the target ends, a file written whole.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static inline int fuzz_rm_one(const char *path, const struct stat *st,
			      int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* fuzz_rm_tree - |dir| and everything in it, links not followed */
static inline void fuzz_rm_tree(const char *dir)
{
	nftw(dir, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* fuzz_put_file - |path| holding exactly the |n| bytes at |b|; aborts
 * (the harness is broken, not the code under test) if it cannot */
static inline void fuzz_put_file(const char *path, const uint8_t *b,
				 size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		abort();
	if (n && write(fd, b, n) != (ssize_t)n)
		abort();
	close(fd);
}

#endif
