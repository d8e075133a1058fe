/*
 * wh_log.h - one line per event on stderr.
 *
 * Lines look like "wormhole[PID] LEVEL: message".  The level threshold is
 * set once at startup (-v raises it to debug).  Thread-safe: each line is
 * written with a single write(2).
 */
#ifndef WH_LOG_H
#define WH_LOG_H

enum wh_log_level {
	WH_LOG_ERROR = 0,
	WH_LOG_WARN = 1,
	WH_LOG_INFO = 2,
	WH_LOG_DEBUG = 3,
};

void wh_log_set_level(enum wh_log_level level);
enum wh_log_level wh_log_get_level(void);
void wh_log(enum wh_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define wh_err(...)   wh_log(WH_LOG_ERROR, __VA_ARGS__)
#define wh_warn(...)  wh_log(WH_LOG_WARN, __VA_ARGS__)
#define wh_info(...)  wh_log(WH_LOG_INFO, __VA_ARGS__)
#define wh_debug(...) wh_log(WH_LOG_DEBUG, __VA_ARGS__)

#endif /* WH_LOG_H */
