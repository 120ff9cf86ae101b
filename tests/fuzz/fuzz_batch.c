/* fuzz_batch: arbitrary bytes as a forwarded batch (src/forward/batch.h).
 *
 * Batches arrive over the network from other nodes (or anyone who can reach the HTTP port).
 * The decoders must reject anything malformed without reading out of bounds, and whatever
 * they accept must re-encode to exactly the input bytes (the format is canonical). The input
 * is tried both as a request batch and as a response batch. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forward/batch.h"
#include "fuzz_common.h"

typedef int (*read_fn)(struct buf_reader *r, struct fwd_batch_item *it);
typedef void (*put_fn)(struct buf *b, const struct fwd_batch_item *it);

static void try_decode(const uint8_t *data, size_t size, read_fn read, put_fn put)
{
	struct buf_reader r;
	struct fwd_batch_item it;
	struct buf b;
	uint32_t n;
	buf_reader_init(&r, data, size);
	if (fwd_batch_read_begin(&r, &n) != 0)
		return;
	buf_init(&b);
	fwd_batch_begin(&b, n);
	for (uint32_t i = 0; i < n; i++) {
		if (read(&r, &it) != 0) {
			buf_close(&b);
			return;
		}
		FUZZ_ASSERT(it.n_headers <= FWD_BATCH_MAX_HEADERS, "%zu headers", it.n_headers);
		put(&b, &it);
	}
	size_t used = size - r.left;
	FUZZ_ASSERT(b.len == used, "re-encoded %zu bytes from %zu", b.len, used);
	FUZZ_ASSERT(memcmp(b.data, data, used) == 0, "re-encoding differs from the input");
	buf_close(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	try_decode(data, size, fwd_batch_read_request, fwd_batch_put_request);
	try_decode(data, size, fwd_batch_read_response, fwd_batch_put_response);
	return 0;
}
