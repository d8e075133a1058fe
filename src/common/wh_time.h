/* wh_time.h - monotonic time in nanoseconds. */
#ifndef WH_TIME_H
#define WH_TIME_H

#include <stdint.h>
#include <time.h>

#define WH_NS_PER_MS 1000000ULL
#define WH_NS_PER_S 1000000000ULL

static inline uint64_t wh_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * WH_NS_PER_S + (uint64_t)ts.tv_nsec;
}

#endif /* WH_TIME_H */
