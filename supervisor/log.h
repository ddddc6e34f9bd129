/*
 * Logging for the supervisor: one line per event on stderr, led by the
 * time and level, then the ids, the event and key=value pairs, e.g.
 *   2026-12-04T20:01:02.123Z INFO flow_run=6c1... event=claimed pool=p
 * Callers never pass secrets.
 */
#ifndef DROVER_LOG_H
#define DROVER_LOG_H

enum log_level { LOG_DEBUG = 10, LOG_INFO = 20, LOG_WARN = 30, LOG_ERROR = 40 };

void log_set_level(enum log_level level);
int  log_enabled(enum log_level level);
void log_set_trace(int on);
int  log_trace_enabled(void);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Prints "drover: <message>" on stderr and exits with status 1.  For
 * start-up errors only. */
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
