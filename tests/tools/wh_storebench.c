/*
 * wh_storebench.c - how long the chunk store's lock is held at most while
 * its log is compacted, seen from a thread that keeps asking the store
 * for a chunk it does not hold (each look-up takes the lock once).
 *
 *   wh_storebench DIR [N]
 *
 * A store in DIR (emptied first) bounded at N references (100000 by
 * default) is given 4N references to one file, so that the eviction
 * deletes the oldest 3N and the log, full of dead records, is rewritten
 * several times.  Prints the look-ups' longest and 99.9th percentile
 * wait, the puts' longest, and how many times the log was rewritten.
 * References, not stored chunks: no chunk file is written, so what is
 * measured is the lock, not the disk.  Timing belongs here, never in a
 * test.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/wh_store.h"

#define NBUCKET 4096 /* microseconds, one bucket each; the last: more */

static struct wh_store *s;
static int stop;
static uint64_t hist[NBUCKET], probes, probe_max;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void fake_hash(uint64_t i, uint8_t h[WH_HASH_LEN])
{
	memset(h, 0, WH_HASH_LEN);
	/* spread over the table: the store hashes by the first 8 bytes */
	i = (i + 1) * 0x9e3779b97f4a7c15ull;
	memcpy(h, &i, sizeof(i));
	h[31] = 1;
}

static void *prober(void *arg)
{
	uint8_t h[WH_HASH_LEN];
	uint64_t k = 0;

	(void)arg;
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		uint64_t t0, d;

		fake_hash(~0ull - (k++ % 1000), h);
		t0 = now_us();
		(void)wh_store_has(s, h, 1000);
		d = now_us() - t0;
		hist[d < NBUCKET ? d : NBUCKET - 1]++;
		probes++;
		if (d > probe_max)
			probe_max = d;
		usleep(50);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
	uint64_t put_max = 0, t0, rewrites = 0, acc = 0, p999 = 0;
	char f[4096], real[4096], lp[4096], cmd[4200];
	struct stat st, ls;
	ino_t log_ino = 0;
	pthread_t t;
	int fd;

	if (argc < 2 || n == 0) {
		fprintf(stderr, "usage: wh_storebench DIR [N]\n");
		return 2;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", argv[1]);
	if (system(cmd) != 0 || mkdir(argv[1], 0700) != 0) {
		perror(argv[1]);
		return 1;
	}
	snprintf(f, sizeof(f), "%s/dest", argv[1]);
	snprintf(lp, sizeof(lp), "%s/chunks.log", argv[1]);
	fd = open(f, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 1 << 20) != 0 || fstat(fd, &st) != 0) {
		perror(f);
		return 1;
	}
	close(fd);
	if (realpath(f, real) == NULL) {
		perror(f);
		return 1;
	}
	/* a reference counts a block and its record 128 bytes; one block
	 * more for the name file */
	if (wh_store_open(argv[1], n * (4096 + 128) + 4096, &s) != 0) {
		fprintf(stderr, "wh_storebench: cannot open the store\n");
		return 1;
	}
	pthread_create(&t, NULL, prober, NULL);
	t0 = now_us();
	for (uint64_t i = 0; i < 4 * n; i++) {
		uint8_t h[WH_HASH_LEN];
		uint64_t a = now_us(), d;

		fake_hash(i, h);
		int rv = wh_store_put_ref(s, h, 1000, real, NULL, &st, i % 1000);

		if (rv != 0) {
			fprintf(stderr, "wh_storebench: put %llu failed: %s\n",
				(unsigned long long)i, strerror(-rv));
			return 1;
		}
		d = now_us() - a;
		if (d > put_max)
			put_max = d;
		if (i % 1024 == 0 && stat(lp, &ls) == 0) {
			if (log_ino && ls.st_ino != log_ino)
				rewrites++;
			log_ino = ls.st_ino;
		}
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	for (int i = 0; i < NBUCKET; i++) {
		acc += hist[i];
		if (acc * 1000 >= probes * 999) {
			p999 = (uint64_t)i;
			break;
		}
	}
	printf("entries %llu puts %llu in %.2f s; log rewritten %llu times "
	       "(seen)\n",
	       (unsigned long long)n, (unsigned long long)(4 * n),
	       (double)(now_us() - t0) / 1e6, (unsigned long long)rewrites);
	printf("look-ups %llu: longest %llu us, 99.9%% under %llu us; "
	       "longest put %llu us\n",
	       (unsigned long long)probes, (unsigned long long)probe_max,
	       (unsigned long long)p999, (unsigned long long)put_max);
	wh_store_close(s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", argv[1]);
	return system(cmd) == 0 ? 0 : 1;
}
