/* Logging to stderr with UTC timestamps; see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"

static enum log_level log_threshold = LOG_INFO;
static int log_trace_on;

void
log_set_level(enum log_level level)
{
    log_threshold = level;
}

int
log_enabled(enum log_level level)
{
    return level >= log_threshold;
}

void
log_set_trace(int on)
{
    log_trace_on = on;
}

int
log_trace_enabled(void)
{
    return log_trace_on;
}

static const char *
log_level_name(enum log_level level)
{
    switch (level) {
    case LOG_DEBUG: return "DEBUG";
    case LOG_INFO:  return "INFO";
    case LOG_WARN:  return "WARN";
    case LOG_ERROR: return "ERROR";
    }
    return "?";
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    struct timeval tv;
    struct tm tm;
    char stamp[32];
    char line[4096];
    va_list ap;

    if (level < log_threshold)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line keeps lines whole when several processes share stderr. */
    fprintf(stderr, "%s.%03ldZ %s %s\n", stamp, (long)(tv.tv_usec / 1000),
            log_level_name(level), line);
}

void
fatalx(const char *fmt, ...)
{
    char line[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "drover: %s\n", line);
    exit(1);
}
