/* log: one line per event on stderr, `ts level msg key=value...`.
 *
 * Existing HA tooling counts some of our messages verbatim ("Became leader", "Node joined
 * cluster", ...), so the message is always the fixed first part of the line and everything
 * variable goes into key=value pairs after it. */
#ifndef CLOUDLESS_LOG_LOG_H
#define CLOUDLESS_LOG_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Returns -1 for an unknown name. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

/* `kv_fmt` formats the key=value tail (may be NULL). */
void log_write(enum log_level level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) log_write(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...)  log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...)  log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

#endif
