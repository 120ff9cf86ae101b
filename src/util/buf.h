/* buf: a growable byte buffer that owns its memory.
 *
 * Used wherever we assemble output piece by piece (metrics text, JSON bodies, snapshot
 * images). Allocation failure aborts: a coordinator that cannot allocate a few KiB cannot
 * make progress safely, and threading ENOMEM through every formatter buys nothing. */
#ifndef CLOUDLESS_UTIL_BUF_H
#define CLOUDLESS_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data; /* NUL-terminated whenever len < cap */
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_close(struct buf *b);
void buf_reset(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_put_u8(struct buf *b, uint8_t v);
void buf_put_u32(struct buf *b, uint32_t v); /* big endian */
void buf_put_u64(struct buf *b, uint64_t v); /* big endian */
/* Hands the memory to the caller (free() it); the buf is left empty. */
char *buf_detach(struct buf *b, size_t *len);

/* A bounds-checked reader over bytes we did not produce (raft entries, snapshots). Every
 * getter returns -1 once the input is exhausted and leaves the reader failed. */
struct buf_reader {
	const uint8_t *p;
	size_t left;
	int failed;
};

void buf_reader_init(struct buf_reader *r, const void *data, size_t len);
int buf_get_u8(struct buf_reader *r, uint8_t *v);
int buf_get_u32(struct buf_reader *r, uint32_t *v);
int buf_get_u64(struct buf_reader *r, uint64_t *v);
/* Points *p into the input; nothing is copied. */
int buf_get_bytes(struct buf_reader *r, size_t n, const uint8_t **p);
/* A string written as a u32 length and its bytes (at most max of them; -1 beyond): *p
 * points into the input. */
int buf_get_str(struct buf_reader *r, size_t max, const char **p, size_t *len);

#endif
