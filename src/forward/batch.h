/* batch: the wire format of a forwarded batch, many client requests in one HTTP exchange.
 *
 * Under load a follower forwards its clients' writes to the leader in batches (api/batch.c):
 * one POST /raft/forward carrying N requests, answered with N responses in the same order.
 * The leader runs every item through its ordinary routes, so an item's response is exactly
 * what the request alone would have got. This file only encodes and decodes; the decoders
 * accept any bytes (they come off the network) and never read out of bounds.
 *
 *   request   u8 version (1) | u32 n | n x (str method | str path | str query | headers | str body)
 *   response  u8 version (1) | u32 n | n x (u32 status | str content_type | headers | str body)
 *   headers   u32 count | count x (str name | str value)
 *   str       u32 length | bytes (big-endian lengths; strings are not NUL-terminated)
 *
 * path is percent-decoded (what the router sees), query is the encoded query string. */
#ifndef CLOUDLESS_FORWARD_BATCH_H
#define CLOUDLESS_FORWARD_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define FWD_BATCH_VERSION      1
#define FWD_BATCH_MAX_ITEMS    1024
#define FWD_BATCH_MAX_HEADERS  32
#define FWD_BATCH_CONTENT_TYPE "application/vnd.cloudless.batch"

struct fwd_bytes {
	const char *p;
	size_t len;
};

struct fwd_batch_pair {
	struct fwd_bytes name, value;
};

struct fwd_batch_item {
	/* requests */
	struct fwd_bytes method, path, query;
	/* responses */
	unsigned status;
	struct fwd_bytes content_type;
	/* both */
	struct fwd_batch_pair headers[FWD_BATCH_MAX_HEADERS];
	size_t n_headers;
	struct fwd_bytes body;
};

/* Encoding: begin with the item count, then put exactly that many items. */
void fwd_batch_begin(struct buf *b, uint32_t n);
void fwd_batch_put_request(struct buf *b, const struct fwd_batch_item *it);
void fwd_batch_put_response(struct buf *b, const struct fwd_batch_item *it);
/* Decoding: 0 on success (the item points into the input), -1 when malformed. */
int fwd_batch_read_begin(struct buf_reader *r, uint32_t *n);
int fwd_batch_read_request(struct buf_reader *r, struct fwd_batch_item *it);
int fwd_batch_read_response(struct buf_reader *r, struct fwd_batch_item *it);

#endif
