/* buf: growable buffer and bounds-checked reader (see buf.h). */
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_close(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (p == NULL) {
		fprintf(stderr, "out of memory growing a buffer to %zu bytes\n", cap);
		abort();
	}
	b->data = p;
	b->cap = cap;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list copy;
	va_copy(copy, ap);
	char probe[1];
	int n = vsnprintf(probe, sizeof probe, fmt, copy);
	va_end(copy);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void buf_put_u8(struct buf *b, uint8_t v)
{
	buf_append(b, &v, 1);
}

void buf_put_u32(struct buf *b, uint32_t v)
{
	uint8_t s[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	buf_append(b, s, sizeof s);
}

void buf_put_u64(struct buf *b, uint64_t v)
{
	buf_put_u32(b, (uint32_t)(v >> 32));
	buf_put_u32(b, (uint32_t)v);
}

char *buf_detach(struct buf *b, size_t *len)
{
	char *p = b->data;
	if (len != NULL)
		*len = b->len;
	buf_init(b);
	return p;
}

void buf_reader_init(struct buf_reader *r, const void *data, size_t len)
{
	r->p = data;
	r->left = len;
	r->failed = 0;
}

int buf_get_bytes(struct buf_reader *r, size_t n, const uint8_t **p)
{
	if (r->failed || n > r->left) {
		r->failed = 1;
		return -1;
	}
	*p = r->p;
	r->p += n;
	r->left -= n;
	return 0;
}

int buf_get_str(struct buf_reader *r, size_t max, const char **p, size_t *len)
{
	uint32_t n;
	const uint8_t *bytes;
	if (buf_get_u32(r, &n) != 0)
		return -1;
	if (n > max) {
		r->failed = 1;
		return -1;
	}
	if (buf_get_bytes(r, n, &bytes) != 0)
		return -1;
	*p = (const char *)bytes;
	*len = n;
	return 0;
}

int buf_get_u8(struct buf_reader *r, uint8_t *v)
{
	const uint8_t *p;
	if (buf_get_bytes(r, 1, &p) != 0)
		return -1;
	*v = p[0];
	return 0;
}

int buf_get_u32(struct buf_reader *r, uint32_t *v)
{
	const uint8_t *p;
	if (buf_get_bytes(r, 4, &p) != 0)
		return -1;
	*v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	return 0;
}

int buf_get_u64(struct buf_reader *r, uint64_t *v)
{
	uint32_t hi, lo;
	if (buf_get_u32(r, &hi) != 0 || buf_get_u32(r, &lo) != 0)
		return -1;
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}
