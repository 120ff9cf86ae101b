/* errmsg: the one-line error messages functions hand back in a caller's buffer.
 *
 * Validation and I/O helpers report what went wrong as `char *err, size_t errlen`: one line,
 * naming the field or file, that the caller logs or answers with. errmsg_set fills it and
 * returns -1, so error paths read `return errmsg_set(err, errlen, "...", ...)`. */
#ifndef CLOUDLESS_UTIL_ERRMSG_H
#define CLOUDLESS_UTIL_ERRMSG_H

#include <stddef.h>

/* err may be NULL or errlen 0 (then nothing is written). Always returns -1. */
int errmsg_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
