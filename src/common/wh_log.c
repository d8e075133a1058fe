/* wh_log.c - leveled logging to stderr, one write(2) per line. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/wh_log.h"

static enum wh_log_level log_level = WH_LOG_INFO;

static const char *const level_names[] = {
	[WH_LOG_ERROR] = "error",
	[WH_LOG_WARN] = "warning",
	[WH_LOG_INFO] = "info",
	[WH_LOG_DEBUG] = "debug",
};

void wh_log_set_level(enum wh_log_level level)
{
	log_level = level;
}

enum wh_log_level wh_log_get_level(void)
{
	return log_level;
}

void wh_log(enum wh_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n, m;

	if (level > log_level)
		return;
	n = snprintf(line, sizeof(line), "wormhole[%d] %s: ", (int)getpid(),
		     level_names[level]);
	if (n < 0)
		return;
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
}
