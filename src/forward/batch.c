/* batch: encoder and decoder of forwarded batches (see batch.h). */
#include "forward/batch.h"

#include <string.h>

static void put_str(struct buf *b, const char *p, size_t len)
{
	buf_put_u32(b, (uint32_t)len);
	buf_append(b, p, len);
}

static void put_bytes(struct buf *b, struct fwd_bytes s)
{
	put_str(b, s.p, s.len);
}

static void put_headers(struct buf *b, const struct fwd_batch_item *it)
{
	buf_put_u32(b, (uint32_t)it->n_headers);
	for (size_t i = 0; i < it->n_headers; i++) {
		put_bytes(b, it->headers[i].name);
		put_bytes(b, it->headers[i].value);
	}
}

void fwd_batch_begin(struct buf *b, uint32_t n)
{
	buf_put_u8(b, FWD_BATCH_VERSION);
	buf_put_u32(b, n);
}

void fwd_batch_put_request(struct buf *b, const struct fwd_batch_item *it)
{
	put_bytes(b, it->method);
	put_bytes(b, it->path);
	put_bytes(b, it->query);
	put_headers(b, it);
	put_bytes(b, it->body);
}

void fwd_batch_put_response(struct buf *b, const struct fwd_batch_item *it)
{
	buf_put_u32(b, it->status);
	put_bytes(b, it->content_type);
	put_headers(b, it);
	put_bytes(b, it->body);
}

static int get_str(struct buf_reader *r, struct fwd_bytes *s)
{
	return buf_get_str(r, SIZE_MAX, &s->p, &s->len);
}

static int get_headers(struct buf_reader *r, struct fwd_batch_item *it)
{
	uint32_t n;
	if (buf_get_u32(r, &n) != 0 || n > FWD_BATCH_MAX_HEADERS)
		return -1;
	for (uint32_t i = 0; i < n; i++)
		if (get_str(r, &it->headers[i].name) != 0 || get_str(r, &it->headers[i].value) != 0)
			return -1;
	it->n_headers = n;
	return 0;
}

int fwd_batch_read_begin(struct buf_reader *r, uint32_t *n)
{
	uint8_t version;
	if (buf_get_u8(r, &version) != 0 || version != FWD_BATCH_VERSION ||
	    buf_get_u32(r, n) != 0 || *n > FWD_BATCH_MAX_ITEMS)
		return -1;
	return 0;
}

int fwd_batch_read_request(struct buf_reader *r, struct fwd_batch_item *it)
{
	memset(it, 0, sizeof *it);
	if (get_str(r, &it->method) != 0 || get_str(r, &it->path) != 0 ||
	    get_str(r, &it->query) != 0 || get_headers(r, it) != 0 || get_str(r, &it->body) != 0)
		return -1;
	return 0;
}

int fwd_batch_read_response(struct buf_reader *r, struct fwd_batch_item *it)
{
	uint32_t status;
	memset(it, 0, sizeof *it);
	if (buf_get_u32(r, &status) != 0 || status < 100 || status > 599 ||
	    get_str(r, &it->content_type) != 0 || get_headers(r, it) != 0 ||
	    get_str(r, &it->body) != 0)
		return -1;
	it->status = status;
	return 0;
}
