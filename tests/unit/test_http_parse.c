/* test_http_parse: the strict HTTP/1.1 parser (http/parse.h) on its own: heads, framing,
 * chunked bodies and request targets, with the status each refusal must carry. */
#include "http/parse.h"

#include <stdio.h>
#include <string.h>

#include "testlib.h"

/* Runs a whole request head through http_head_end, http_parse_head and http_head_framing;
 * returns 0 when accepted, else the refusal's status. */
static unsigned head_status(const char *raw, size_t max_body, struct http_framing *f)
{
	struct http_head_scan sc = {0};
	struct http_parse_error err = {0};
	struct http_head h;
	struct http_framing dummy;
	size_t len = strlen(raw);
	long end = http_head_end(raw, len, &sc, &err);
	if (end < 0)
		return err.status;
	if (end == 0)
		return 1; /* incomplete */
	if (http_parse_head(raw + sc.start, (size_t)end - sc.start, &h, &err) != 0)
		return err.status;
	if (http_head_framing(&h, max_body, f != NULL ? f : &dummy, &err) != 0)
		return err.status;
	return 0;
}

static void test_heads(void)
{
	static const struct {
		const char *raw;
		unsigned status;
	} cases[] = {
	    {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0},
	    {"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 0}, /* empty lines before: skipped */
	    {"GET / HTTP/1.0\r\n\r\n", 0},                    /* 1.0 needs no Host */
	    {"GET / HTTP/1.1\r\n\r\n", 400},                  /* 1.1 does */
	    {"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: x\r\nX : y\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400},
	    {"GET / HTTP/1.1\nHost: x\n\n", 400},
	    {"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400},
	    {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
	    {"GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400},
	    {"GET / http/1.1\r\nHost: x\r\n\r\n", 400},
	    {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	    {"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	    {"GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	    {"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	    {"GET /\r\n\r\n", 400},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\n", 400},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", 400},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", 400},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n", 413},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", 0},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
	     400},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 501},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
	    {"PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 1\r\n\r\n", 417},
	    {"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", 0},
	    {"GET / HTTP/1.1\r\nHost: x", 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		unsigned st = head_status(cases[i].raw, 100, NULL);
		if (st != cases[i].status)
			fprintf(stderr, "case %zu: %u, want %u\n", i, st, cases[i].status);
		CHECK_EQ_INT(st, cases[i].status);
	}
	/* A NUL inside a value (strlen would have hidden it). */
	static const char nul[] = "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n";
	struct http_head_scan sc = {0};
	struct http_parse_error err = {0};
	struct http_head h;
	long end = http_head_end(nul, sizeof nul - 1, &sc, &err);
	CHECK_EQ_INT(end, (long)(sizeof nul - 1));
	CHECK_EQ_INT(http_parse_head(nul, (size_t)end, &h, &err), -1);
	CHECK_EQ_INT(err.status, 400);
	CHECK(strstr(err.detail, "0x00") != NULL);
}

static void test_limits(void)
{
	char big[HTTP_MAX_HEAD + 4096];
	/* Target over 8 KiB: 414, even before the line ends. */
	memset(big, 'a', sizeof big);
	memcpy(big, "GET /", 5);
	big[HTTP_MAX_TARGET + 100] = '\0';
	CHECK_EQ_INT(head_status(big, 0, NULL), 414);
	snprintf(big, sizeof big, "GET /%0*d HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_MAX_TARGET, 0);
	CHECK_EQ_INT(head_status(big, 0, NULL), 414);
	/* Head over 32 KiB: 431. */
	int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: x\r\nX: ");
	memset(big + n, 'b', HTTP_MAX_HEAD);
	big[n + HTTP_MAX_HEAD] = '\0';
	CHECK_EQ_INT(head_status(big, 0, NULL), 431);
	/* More than 128 fields: 431. */
	n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: x\r\n");
	for (int i = 0; i < HTTP_MAX_FIELDS; i++)
		n += snprintf(big + n, sizeof big - (size_t)n, "X%d: v\r\n", i);
	snprintf(big + n, sizeof big - (size_t)n, "\r\n");
	CHECK_EQ_INT(head_status(big, 0, NULL), 431);
}

static void test_framing(void)
{
	struct http_framing f;
	CHECK_EQ_INT(head_status("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 10, &f), 0);
	CHECK(f.keep_alive && f.body == HTTP_BODY_NONE && !f.expect_continue);
	CHECK_EQ_INT(
	    head_status("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n", 10,
	                &f),
	    0);
	CHECK(!f.keep_alive);
	CHECK_EQ_INT(head_status("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 10, &f), 0);
	CHECK(f.keep_alive);
	CHECK_EQ_INT(head_status("GET / HTTP/1.0\r\n\r\n", 10, &f), 0);
	CHECK(!f.keep_alive);
	CHECK_EQ_INT(head_status("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n"
	                         "Expect: 100-continue\r\n\r\n",
	                         10, &f),
	             0);
	CHECK(f.body == HTTP_BODY_LENGTH && f.length == 7 && f.expect_continue);
	CHECK_EQ_INT(head_status("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
	                         "Expect: 100-continue\r\n\r\n",
	                         10, &f),
	             0);
	CHECK(f.body == HTTP_BODY_NONE && !f.expect_continue);
}

static long feed_all(const char *in, size_t len, size_t max, struct buf *out, bool *done,
                     unsigned *status)
{
	struct http_chunked c;
	struct http_parse_error err = {0};
	http_chunked_init(&c);
	long total = 0;
	/* One byte at a time: the decoder must not care where reads end. */
	for (size_t i = 0; i < len && !*done; i++) {
		long n = http_chunked_feed(&c, in + i, 1, out, max, done, &err);
		if (n < 0) {
			*status = err.status;
			return -1;
		}
		total += n;
	}
	return total;
}

static void test_chunked(void)
{
	static const struct {
		const char *in;
		unsigned status; /* 0: accepted */
		const char *body;
	} cases[] = {
	    {"5\r\nhello\r\n0\r\n\r\n", 0, "hello"},
	    {"2;ext=1\r\nhi\r\n3 ; x\r\n!!!\r\n0\r\nTrailer: t\r\n\r\n", 0, "hi!!!"},
	    {"A\r\n0123456789\r\n0\r\n\r\n", 0, "0123456789"},
	    {"zz\r\n", 400, NULL},
	    {"\r\n", 400, NULL},
	    {"2\r\nabcd\r\n", 400, NULL},
	    {"2\nab\r\n", 400, NULL},
	    {"11\r\n", 413, NULL},                 /* 17 > max 16 */
	    {"8\r\n12345678\r\n9\r\n", 413, NULL}, /* 8 + 9 > 16 */
	    {"10000000000000000\r\n", 413, NULL},  /* 17 hex digits */
	    {"1\r\na\r\n0\r\nX: \x01\r\n\r\n", 400, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf out;
		bool done = false;
		unsigned status = 0;
		buf_init(&out);
		long n = feed_all(cases[i].in, strlen(cases[i].in), 16, &out, &done, &status);
		if (cases[i].status == 0) {
			CHECK_EQ_INT(n, (long)strlen(cases[i].in));
			CHECK(done);
			CHECK_EQ_STR(out.data ? out.data : "", cases[i].body);
		} else {
			CHECK_EQ_INT(n, -1);
			CHECK_EQ_INT(status, cases[i].status);
		}
		buf_close(&out);
	}
	/* The body ends inside the input: the rest is the next request's. */
	struct http_chunked c;
	struct http_parse_error err;
	struct buf out;
	bool done = false;
	static const char two[] = "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
	buf_init(&out);
	http_chunked_init(&c);
	CHECK_EQ_INT(http_chunked_feed(&c, two, sizeof two - 1, &out, 16, &done, &err), 11);
	CHECK(done);
	buf_close(&out);
}

static void test_targets(void)
{
	const char *p, *q;
	size_t pl, ql;
	CHECK_EQ_INT(http_target_split("/v1/kv/a?b=1", 12, &p, &pl, &q, &ql), 0);
	CHECK(pl == 8 && memcmp(p, "/v1/kv/a", 8) == 0 && ql == 3 && memcmp(q, "b=1", 3) == 0);
	CHECK_EQ_INT(http_target_split("http://h:1/v1/kv/x?y", 20, &p, &pl, &q, &ql), 0);
	CHECK(pl == 8 && memcmp(p, "/v1/kv/x", 8) == 0 && ql == 1 && q[0] == 'y');
	CHECK_EQ_INT(http_target_split("HTTPS://h", 9, &p, &pl, &q, &ql), 0);
	CHECK(pl == 1 && p[0] == '/' && ql == 0);
	CHECK_EQ_INT(http_target_split("*", 1, &p, &pl, &q, &ql), -1);
	CHECK_EQ_INT(http_target_split("example.com:443", 15, &p, &pl, &q, &ql), -1);
}

int main(void)
{
	test_heads();
	test_limits();
	test_framing();
	test_chunked();
	test_targets();
	TEST_DONE();
}
