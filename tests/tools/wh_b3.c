/*
 * wh_b3.c - print the BLAKE3-256 of each file (or stdin) like b3sum, and
 * with --chunks the content-defined chunks of each file, one per line:
 * "OFFSET LENGTH HASH".  Used by the end-to-end tests against b3sum.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "chunk/wh_chunk.h"
#include "common/wh_err.h"

static int one(const char *path, int fd, int chunks)
{
	uint8_t h[WH_HASH_LEN];
	char hex[65];
	int rv;

	if (chunks) {
		struct wh_manifest m;

		wh_manifest_init(&m);
		rv = wh_manifest_build(fd, &m);
		for (size_t i = 0; rv == 0 && i < m.n; i++) {
			wh_hash_hex(m.chunks[i].hash, hex);
			printf("%llu %u %s\n",
			       (unsigned long long)m.chunks[i].offset,
			       m.chunks[i].length, hex);
		}
		wh_manifest_free(&m);
	} else {
		rv = wh_blake3_fd(fd, h);
		if (rv == 0) {
			wh_hash_hex(h, hex);
			printf("%s  %s\n", hex, path);
		}
	}
	if (rv < 0)
		fprintf(stderr, "wh_b3: %s: %s\n", path, wh_strerror(rv));
	return rv;
}

int main(int argc, char **argv)
{
	int chunks = 0, status = 0, i = 1;

	if (argc > 1 && !strcmp(argv[1], "--chunks")) {
		chunks = 1;
		i++;
	}
	if (i == argc)
		return one("-", STDIN_FILENO, chunks) < 0;
	for (; i < argc; i++) {
		int fd = open(argv[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			perror(argv[i]);
			status = 1;
			continue;
		}
		if (one(argv[i], fd, chunks) < 0)
			status = 1;
		close(fd);
	}
	return status;
}
