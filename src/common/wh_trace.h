/*
 * wh_trace.h - a cheap in-process event trace, for finding where a
 * request's time goes.  Off unless WH_TRACE=PREFIX is in the environment
 * when wh_trace_init() runs; then each event (CLOCK_MONOTONIC ns, thread
 * id, a name of up to 11 characters, a number) is stored in PREFIX.PID, a
 * file of fixed size mapped in memory: the first WH_TRACE_MAX events are
 * kept, and a process killed before it exits keeps its trace.  Processes
 * on one machine share the clock, so their traces line up (across
 * network namespaces too).  Off, an event costs one load and a branch.
 * bench/tracecat reads the files.
 */
#ifndef WH_TRACE_H
#define WH_TRACE_H

#include <stdint.h>

#define WH_TRACE_MAX (1u << 20)

/* the record in the file, little-endian: 32 bytes */
struct wh_trace_rec {
	uint64_t ns;
	uint64_t arg;
	uint32_t tid;
	char name[12];
};

extern struct wh_trace_rec *wh_trace_buf; /* NULL: tracing off */

void wh_trace_init(void);
void wh_trace_ev(const char *name, uint64_t arg);

static inline void wh_trace(const char *name, uint64_t arg)
{
	if (__builtin_expect(wh_trace_buf != NULL, 0))
		wh_trace_ev(name, arg);
}

#endif /* WH_TRACE_H */
