/* log: structured single-line logging to stderr (see log.h). */
#include "log/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level current_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	if (strcmp(name, "warning") == 0)
		return LOG_WARN;
	return -1;
}

void log_set_level(enum log_level level)
{
	current_level = level;
}

int log_enabled(enum log_level level)
{
	return level >= current_level;
}

void log_write(enum log_level level, const char *msg, const char *kv_fmt, ...)
{
	if (!log_enabled(level))
		return;
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	char line[2048];
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                 tm.tm_sec, (long)tv.tv_usec / 1000, level_names[level], msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line - 2)
		n = sizeof line - 2;
	if (kv_fmt != NULL && kv_fmt[0] != '\0' && (size_t)n < sizeof line - 3) {
		line[n++] = ' ';
		va_list ap;
		va_start(ap, kv_fmt);
		int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, kv_fmt, ap);
		va_end(ap);
		if (m > 0)
			n += m;
		if ((size_t)n > sizeof line - 2)
			n = sizeof line - 2;
	}
	line[n++] = '\n';
	/* One write() per line so lines from a crash or from several nodes sharing a terminal
	 * never interleave mid-line. */
	fwrite(line, 1, (size_t)n, stderr);
	fflush(stderr);
}
