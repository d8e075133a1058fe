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

/* wh_deadline_ms - the CLOCK_MONOTONIC time |ms| from now, for
 * pthread_cond_timedwait on a condition variable using that clock. */
static inline void wh_deadline_ms(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

#endif /* WH_TIME_H */
