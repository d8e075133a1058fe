/*
 * test_io.c - both disk I/O backends do the same thing: full reads and
 * writes at any offset, short reads only at end of file, two reads at
 * once, errors as -errno.  Each backend runs in its own child process,
 * since the choice is made once per process (WH_IO).  Copies between
 * files go both ways too: in the kernel and, under WH_IO_COPY=plain,
 * through a small bounce buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/wh_io.h"

#define LEN (5 * 1024 * 1024 + 123)

/* copies - wh_io_copy from |fd| (holding |a|, but "xyz" at 77) into a
 * second file: unaligned ranges, a bounce buffer smaller than the range,
 * a range past the source's end, a bad descriptor.  0 if all is well. */
static int copies(struct wh_io *io, int fd, const uint8_t *a)
{
	char path[] = "/tmp/wh-io-copy-XXXXXX";
	uint8_t bounce[4096], *d = malloc(LEN);
	int out = mkstemp(path), rv = 0;

	if (out < 0 || !d)
		return 1;
	unlink(path);
	if (wh_io_copy(io, fd, 1, out, 0, LEN - 1, bounce, sizeof(bounce)) !=
		    LEN - 1 ||
	    wh_io_pread(io, out, d, LEN, 0) != LEN - 1 ||
	    memcmp(d, a + 1, 76) || memcmp(d + 76, "xyz", 3) ||
	    memcmp(d + 79, a + 80, LEN - 80))
		rv = 2;
	/* into the middle of what is there */
	else if (wh_io_copy(io, fd, 3 << 20, out, 12345, 100000, bounce,
			    sizeof(bounce)) != 100000 ||
		 wh_io_pread(io, out, d, 100000, 12345) != 100000 ||
		 memcmp(d, a + (3 << 20), 100000))
		rv = 3;
	else if (wh_io_copy(io, fd, LEN - 10, out, 0, 20, bounce,
			    sizeof(bounce)) != -EIO)
		rv = 4;
	else if (wh_io_copy(io, -1, 0, out, 0, 20, bounce, sizeof(bounce)) !=
		 -EBADF)
		rv = 5;
	close(out);
	free(d);
	return rv;
}

/* exercise - exit status 0 if the backend behaves; prints its name */
static int exercise(void)
{
	char path[] = "/tmp/wh-io-test-XXXXXX";
	struct wh_io *io = wh_io_thread();
	uint8_t *a = malloc(LEN), *b = malloc(LEN), *c = malloc(LEN);
	ssize_t r1, r2;
	int fd = mkstemp(path);

	if (fd < 0 || !a || !b || !c)
		return 10;
	unlink(path);
	for (size_t i = 0; i < LEN; i++)
		a[i] = (uint8_t)(i * 13 + (i >> 11));
	if (wh_io_pwrite(io, fd, a, LEN, 0) != LEN)
		return 11;
	if (wh_io_pread(io, fd, b, LEN, 0) != LEN || memcmp(a, b, LEN))
		return 12;
	/* across the end: short, and only there */
	if (wh_io_pread(io, fd, b, 1000, LEN - 10) != 10 ||
	    memcmp(b, a + LEN - 10, 10))
		return 13;
	if (wh_io_pread(io, fd, b, 1000, LEN + 5) != 0)
		return 14;
	/* two at once */
	wh_io_pread2(io, fd, b, 1 << 20, 4096, c, 3 << 20, 2 << 20, &r1, &r2);
	if (r1 != 1 << 20 || r2 != 3 << 20 || memcmp(b, a + 4096, 1 << 20) ||
	    memcmp(c, a + (2 << 20), 3 << 20))
		return 15;
	wh_io_pread2(io, fd, b, 100, LEN - 50, c, 100, 0, &r1, &r2);
	if (r1 != 50 || r2 != 100 || memcmp(b, a + LEN - 50, 50))
		return 16;
	/* a write in the middle, then errors */
	if (wh_io_pwrite(io, fd, "xyz", 3, 77) != 3 ||
	    wh_io_pread(io, fd, b, 3, 77) != 3 || memcmp(b, "xyz", 3))
		return 17;
	if (wh_io_pread(io, -1, b, 10, 0) != -EBADF)
		return 18;
	if (copies(io, fd, a) != 0)
		return 19;
	printf("%s\n", wh_io_name(io));
	fflush(stdout);
	close(fd);
	free(a);
	free(b);
	free(c);
	return 0;
}

static void run_backend(const char *which, const char *copy,
			const char *expect)
{
	int pipefd[2], status;
	char name[32] = "";
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		setenv("WH_IO", which, 1);
		setenv("WH_IO_COPY", copy, 1);
		_exit(exercise());
	}
	close(pipefd[1]);
	n = read(pipefd[0], name, sizeof(name) - 1);
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(n > 0);
	name[n] = '\0';
	if (strchr(name, '\n'))
		*strchr(name, '\n') = '\0';
	assert_string_equal(name, expect);
}

static void test_posix(void **state)
{
	(void)state;
	run_backend("posix", "kernel", "posix");
	run_backend("posix", "plain", "posix");
}

static void test_uring(void **state)
{
	(void)state;
#ifdef HAVE_IO_URING
	run_backend("uring", "kernel", "io_uring");
	run_backend("uring", "plain", "io_uring");
#else
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_posix),
		cmocka_unit_test(test_uring),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
