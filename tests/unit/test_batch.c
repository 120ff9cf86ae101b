/* test_batch: unit tests for src/forward/batch (the wire format of forwarded batches).
 *
 * A batch comes off the network, so the decoders must take exactly what the encoders write
 * and refuse everything else without reading out of bounds: every strict prefix of a valid
 * encoding, other versions, too many items or headers, statuses outside 100-599. Decodes run
 * on a malloc'd copy of exactly the bytes under test, so ASan flags any overread. */
#include "forward/batch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static struct fwd_bytes B(const char *s) {
	struct fwd_bytes b = {s, strlen(s)};
	return b;
}

static bool
bytes_eq(struct fwd_bytes a, const char *s, size_t n)
{
	return a.len == n && (n == 0 || memcmp(a.p, s, n) == 0);
}

static void request_item(struct fwd_batch_item *it, const char *key)
{
	memset(it, 0, sizeof *it);
	it->method = B("PUT");
	it->path = B(key);
	it->query = B("cas=3&flag");
	it->headers[0] = (struct fwd_batch_pair){B("Idempotency-Key"), B("k-1")};
	it->headers[1] = (struct fwd_batch_pair){B("X-Cloudless-Forwarded-By"), B("n2")};
	it->n_headers = 2;
	it->body = (struct fwd_bytes){"v\0x", 3}; /* binary values survive */
}

static void encode_requests(struct buf *b, uint32_t n)
{
	struct fwd_batch_item it;
	fwd_batch_begin(b, n);
	for (uint32_t i = 0; i < n; i++) {
		request_item(&it, i % 2 ? "/v1/kv/b" : "/v1/kv/a");
		fwd_batch_put_request(b, &it);
	}
}

/* Decodes a whole request batch from a private copy; the item count, or -1. */
static int decode_requests(const char *data, size_t len)
{
	char *copy = malloc(len ? len : 1);
	struct buf_reader r;
	struct fwd_batch_item it;
	uint32_t n = 0;
	int rv = -1;
	memcpy(copy, data, len);
	buf_reader_init(&r, copy, len);
	if (fwd_batch_read_begin(&r, &n) != 0)
		goto out;
	for (uint32_t i = 0; i < n; i++)
		if (fwd_batch_read_request(&r, &it) != 0)
			goto out;
	rv = r.left == 0 ? (int)n : -1;
out:
	free(copy);
	return rv;
}

static void test_request_round_trip(void)
{
	struct buf b;
	struct buf_reader r;
	struct fwd_batch_item it;
	uint32_t n = 0;
	buf_init(&b);
	encode_requests(&b, 3);
	buf_reader_init(&r, b.data, b.len);
	CHECK(fwd_batch_read_begin(&r, &n) == 0);
	CHECK_EQ_INT(n, 3);
	for (uint32_t i = 0; i < n; i++) {
		CHECK(fwd_batch_read_request(&r, &it) == 0);
		CHECK(bytes_eq(it.method, "PUT", 3));
		CHECK(bytes_eq(it.path, i % 2 ? "/v1/kv/b" : "/v1/kv/a", 8));
		CHECK(bytes_eq(it.query, "cas=3&flag", 10));
		CHECK_EQ_INT(it.n_headers, 2);
		CHECK(bytes_eq(it.headers[0].name, "Idempotency-Key", 15));
		CHECK(bytes_eq(it.headers[0].value, "k-1", 3));
		CHECK(bytes_eq(it.headers[1].value, "n2", 2));
		CHECK(bytes_eq(it.body, "v\0x", 3));
	}
	CHECK_EQ_INT(r.left, 0);
	buf_close(&b);
}

static void test_response_round_trip(void)
{
	struct buf b;
	struct buf_reader r;
	struct fwd_batch_item it = {0}, out;
	uint32_t n = 0;
	buf_init(&b);
	fwd_batch_begin(&b, 2);
	it.status = 200;
	it.content_type = B("application/json");
	it.headers[0] = (struct fwd_batch_pair){B("X-Cloudless-Index"), B("42")};
	it.n_headers = 1;
	it.body = B("{\"key\":\"a\",\"index\":42}");
	fwd_batch_put_response(&b, &it);
	it.status = 409;
	it.content_type = B("");
	it.n_headers = 0;
	it.body = B("");
	fwd_batch_put_response(&b, &it);
	buf_reader_init(&r, b.data, b.len);
	CHECK(fwd_batch_read_begin(&r, &n) == 0 && n == 2);
	CHECK(fwd_batch_read_response(&r, &out) == 0);
	CHECK_EQ_INT(out.status, 200);
	CHECK(bytes_eq(out.content_type, "application/json", 16));
	CHECK_EQ_INT(out.n_headers, 1);
	CHECK(bytes_eq(out.headers[0].value, "42", 2));
	CHECK(bytes_eq(out.body, "{\"key\":\"a\",\"index\":42}", 22));
	CHECK(fwd_batch_read_response(&r, &out) == 0);
	CHECK_EQ_INT(out.status, 409);
	CHECK_EQ_INT(out.content_type.len, 0);
	CHECK_EQ_INT(out.body.len, 0);
	CHECK_EQ_INT(r.left, 0);
	buf_close(&b);
}

/* Every strict prefix of a valid batch is refused. */
static void test_truncations(void)
{
	struct buf b;
	buf_init(&b);
	encode_requests(&b, 2);
	CHECK_EQ_INT(decode_requests(b.data, b.len), 2);
	for (size_t len = 0; len < b.len; len++)
		if (decode_requests(b.data, len) != -1) {
			CHECK(!"a truncated batch decoded");
			break;
		}
	buf_close(&b);
}

static void test_malformed(void)
{
	struct buf b;
	struct buf_reader r;
	struct fwd_batch_item it;
	uint32_t n;

	/* other versions */
	buf_init(&b);
	encode_requests(&b, 1);
	b.data[0] = 2;
	CHECK_EQ_INT(decode_requests(b.data, b.len), -1);
	buf_close(&b);

	/* more items than a batch may hold */
	buf_init(&b);
	fwd_batch_begin(&b, FWD_BATCH_MAX_ITEMS + 1);
	buf_reader_init(&r, b.data, b.len);
	CHECK(fwd_batch_read_begin(&r, &n) == -1);
	buf_close(&b);

	/* a string length past the end */
	buf_init(&b);
	fwd_batch_begin(&b, 1);
	buf_put_u32(&b, 0xffffffffu);
	buf_append(&b, "PUT", 3);
	CHECK_EQ_INT(decode_requests(b.data, b.len), -1);
	buf_close(&b);

	/* too many headers */
	buf_init(&b);
	fwd_batch_begin(&b, 1);
	for (int i = 0; i < 3; i++) {
		buf_put_u32(&b, 1);
		buf_append(&b, "x", 1);
	}
	buf_put_u32(&b, FWD_BATCH_MAX_HEADERS + 1);
	CHECK_EQ_INT(decode_requests(b.data, b.len), -1);
	buf_close(&b);

	/* trailing bytes after the last item */
	buf_init(&b);
	encode_requests(&b, 1);
	buf_put_u8(&b, 0);
	CHECK_EQ_INT(decode_requests(b.data, b.len), -1);
	buf_close(&b);

	/* response statuses outside 100-599 */
	unsigned bad[] = {0, 99, 600, 0xffffffffu};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		buf_init(&b);
		buf_put_u32(&b, bad[i]);
		buf_put_u32(&b, 0); /* content type */
		buf_put_u32(&b, 0); /* headers */
		buf_put_u32(&b, 0); /* body */
		buf_reader_init(&r, b.data, b.len);
		CHECK(fwd_batch_read_response(&r, &it) == -1);
		buf_close(&b);
	}
}

int main(void)
{
	test_request_round_trip();
	test_response_round_trip();
	test_truncations();
	test_malformed();
	TEST_DONE();
}
