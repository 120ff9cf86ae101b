/* test_buf: unit tests for src/util/buf (growable buffer, bounds-checked reader) and
 * src/util/text (UTF-8 validation, base64, strict number and duration parsing).
 *
 * The reader and the text codecs sit directly on untrusted input (raft entries, snapshot
 * images, HTTP query strings), so besides round trips every rejection path is pinned down:
 * a reader that ran past the end must stay failed, and each malformed UTF-8 / base64 /
 * number form must be refused. */
#include "util/buf.h"
#include "util/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static void test_append_printf_grow(void)
{
	struct buf b;
	buf_init(&b);
	CHECK(b.data == NULL);
	CHECK_EQ_INT(b.len, 0);

	buf_puts(&b, "hello");
	CHECK_EQ_INT(b.len, 5);
	CHECK_EQ_STR(b.data, "hello");
	buf_append(&b, ", ", 2);
	buf_printf(&b, "%s %d/%llu", "world", -7, 18446744073709551615ULL);
	CHECK_EQ_STR(b.data, "hello, world -7/18446744073709551615");
	CHECK_EQ_INT(b.len, strlen("hello, world -7/18446744073709551615"));

	/* Appending nothing still leaves a valid, terminated buffer. */
	buf_append(&b, NULL, 0);
	buf_printf(&b, "%s", "");
	CHECK_EQ_INT(b.len, strlen("hello, world -7/18446744073709551615"));
	CHECK_EQ_INT(b.data[b.len], '\0');

	/* Grow well past the initial capacity, with binary data, and check every byte. */
	buf_reset(&b);
	CHECK_EQ_INT(b.len, 0);
	CHECK_EQ_STR(b.data, "");
	for (int i = 0; i < 10000; i++) {
		uint8_t c = (uint8_t)(i * 7);
		buf_append(&b, &c, 1);
	}
	CHECK_EQ_INT(b.len, 10000);
	CHECK(b.cap > b.len);
	int bad = 0;
	for (int i = 0; i < 10000; i++)
		bad += (uint8_t)b.data[i] != (uint8_t)(i * 7);
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(b.data[b.len], '\0');

	/* A printf larger than the remaining capacity (and than any probe buffer). */
	buf_reset(&b);
	char big[3000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	buf_printf(&b, "<%s>", big);
	CHECK_EQ_INT(b.len, sizeof big + 1);
	CHECK_EQ_INT(b.data[0], '<');
	CHECK_EQ_INT(b.data[b.len - 1], '>');
	CHECK_EQ_INT(b.data[b.len], '\0');
	CHECK_EQ_INT(strlen(b.data), b.len);

	/* reserve guarantees room for extra bytes plus the terminator. */
	buf_reserve(&b, 100000);
	CHECK(b.cap >= b.len + 100000 + 1);

	/* detach hands over the memory and leaves the buf empty and reusable. */
	size_t len = 0;
	char *p = buf_detach(&b, &len);
	CHECK_EQ_INT(len, sizeof big + 1);
	CHECK(p != NULL && p[0] == '<');
	CHECK(b.data == NULL);
	CHECK_EQ_INT(b.len, 0);
	CHECK_EQ_INT(b.cap, 0);
	free(p);
	buf_puts(&b, "again");
	CHECK_EQ_STR(b.data, "again");
	buf_close(&b);
	CHECK(b.data == NULL);
	CHECK_EQ_INT(b.len, 0);
	buf_close(&b); /* idempotent */
}

static void test_integers_big_endian(void)
{
	struct buf b;
	buf_init(&b);
	buf_put_u8(&b, 0xab);
	buf_put_u32(&b, 0x01020304u);
	buf_put_u64(&b, 0x1122334455667788ULL);
	buf_put_u32(&b, 0);
	buf_put_u32(&b, UINT32_MAX);
	buf_put_u64(&b, UINT64_MAX);
	buf_put_u64(&b, 0);
	CHECK_EQ_INT(b.len, 1 + 4 + 8 + 4 + 4 + 8 + 8);

	static const uint8_t want[] = {0xab, 0x01, 0x02, 0x03, 0x04, 0x11, 0x22,
	                               0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
	CHECK(memcmp(b.data, want, sizeof want) == 0);

	struct buf_reader r;
	uint8_t u8 = 0;
	uint32_t u32 = 0;
	uint64_t u64 = 0;
	buf_reader_init(&r, b.data, b.len);
	CHECK_EQ_INT(buf_get_u8(&r, &u8), 0);
	CHECK_EQ_INT(u8, 0xab);
	CHECK_EQ_INT(buf_get_u32(&r, &u32), 0);
	CHECK_EQ_INT(u32, 0x01020304u);
	CHECK_EQ_INT(buf_get_u64(&r, &u64), 0);
	CHECK(u64 == 0x1122334455667788ULL);
	CHECK_EQ_INT(buf_get_u32(&r, &u32), 0);
	CHECK_EQ_INT(u32, 0);
	CHECK_EQ_INT(buf_get_u32(&r, &u32), 0);
	CHECK(u32 == UINT32_MAX);
	CHECK_EQ_INT(buf_get_u64(&r, &u64), 0);
	CHECK(u64 == UINT64_MAX);
	CHECK_EQ_INT(buf_get_u64(&r, &u64), 0);
	CHECK(u64 == 0);
	CHECK_EQ_INT(r.left, 0);
	CHECK_EQ_INT(r.failed, 0);

	/* A range of values round-trips exactly. */
	buf_reset(&b);
	for (int shift = 0; shift < 64; shift++) {
		buf_put_u64(&b, (1ULL << shift) | 1);
		buf_put_u32(&b, (uint32_t)((1ULL << (shift % 32)) - 1));
	}
	buf_reader_init(&r, b.data, b.len);
	int bad = 0;
	for (int shift = 0; shift < 64; shift++) {
		bad += buf_get_u64(&r, &u64) != 0 || u64 != ((1ULL << shift) | 1);
		bad += buf_get_u32(&r, &u32) != 0 || u32 != (uint32_t)((1ULL << (shift % 32)) - 1);
	}
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(r.left, 0);
	buf_close(&b);
}

static void test_reader_bounds(void)
{
	static const uint8_t data[] = {1, 2, 3, 4, 5, 6, 7};
	struct buf_reader r;
	uint8_t u8;
	uint32_t u32;
	uint64_t u64 = 42;
	const uint8_t *p = NULL;

	/* u64 needs 8 bytes; 7 are there: fails and nothing is consumed usefully after. */
	buf_reader_init(&r, data, sizeof data);
	CHECK_EQ_INT(buf_get_u64(&r, &u64), -1);
	CHECK_EQ_INT(r.failed, 1);
	/* Once failed, even reads that would fit fail. */
	CHECK_EQ_INT(buf_get_u8(&r, &u8), -1);
	CHECK_EQ_INT(buf_get_bytes(&r, 0, &p), -1);
	CHECK_EQ_INT(r.failed, 1);

	/* Exact consumption succeeds, one more byte fails and stays failed. */
	buf_reader_init(&r, data, sizeof data);
	CHECK_EQ_INT(buf_get_u32(&r, &u32), 0);
	CHECK_EQ_INT(u32, 0x01020304);
	CHECK_EQ_INT(buf_get_bytes(&r, 3, &p), 0);
	CHECK(p == data + 4);
	CHECK_EQ_INT(r.left, 0);
	CHECK_EQ_INT(buf_get_bytes(&r, 0, &p), 0); /* zero bytes at the end is fine */
	CHECK_EQ_INT(r.failed, 0);
	CHECK_EQ_INT(buf_get_u8(&r, &u8), -1);
	CHECK_EQ_INT(r.failed, 1);
	CHECK_EQ_INT(buf_get_bytes(&r, 0, &p), -1);

	/* A length far beyond the input (as a hostile length prefix would ask for). */
	buf_reader_init(&r, data, sizeof data);
	CHECK_EQ_INT(buf_get_u8(&r, &u8), 0);
	CHECK_EQ_INT(buf_get_bytes(&r, SIZE_MAX, &p), -1);
	CHECK_EQ_INT(buf_get_bytes(&r, 1, &p), -1);
	CHECK_EQ_INT(r.failed, 1);

	/* u32 with 3 bytes left. */
	buf_reader_init(&r, data, 3);
	CHECK_EQ_INT(buf_get_u32(&r, &u32), -1);
	CHECK_EQ_INT(buf_get_u8(&r, &u8), -1);

	/* Empty input. */
	buf_reader_init(&r, NULL, 0);
	CHECK_EQ_INT(buf_get_u8(&r, &u8), -1);
	CHECK_EQ_INT(r.failed, 1);
}

struct utf8_case {
	const char *name;
	const char *s;
	size_t len;
	bool valid;
};

#define U(name, lit, valid)                       \
	{                                         \
		name, lit, sizeof(lit) - 1, valid \
	}

static const struct utf8_case utf8_cases[] = {
    U("empty", "", true),
    U("ascii", "hello, world ~\x7f", true),
    U("embedded NUL", "a\0b", true),
    U("2-byte min U+0080", "\xc2\x80", true),
    U("2-byte e-acute", "caf\xc3\xa9", true),
    U("2-byte max U+07FF", "\xdf\xbf", true),
    U("3-byte min U+0800", "\xe0\xa0\x80", true),
    U("3-byte euro", "\xe2\x82\xac", true),
    U("3-byte U+D7FF", "\xed\x9f\xbf", true),
    U("3-byte U+E000", "\xee\x80\x80", true),
    U("3-byte U+FFFD", "\xef\xbf\xbd", true),
    U("3-byte max U+FFFF", "\xef\xbf\xbf", true),
    U("4-byte min U+10000", "\xf0\x90\x80\x80", true),
    U("4-byte emoji", "\xf0\x9f\x98\x80", true),
    U("4-byte max U+10FFFF", "\xf4\x8f\xbf\xbf", true),
    U("mixed", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", true),
    U("overlong NUL", "\xc0\x80", false),
    U("overlong 2-byte slash", "\xc0\xaf", false),
    U("overlong 2-byte C1", "\xc1\xbf", false),
    U("overlong 3-byte", "\xe0\x80\xaf", false),
    U("overlong 3-byte max", "\xe0\x9f\xbf", false),
    U("overlong 4-byte", "\xf0\x80\x80\xaf", false),
    U("overlong 4-byte max", "\xf0\x8f\xbf\xbf", false),
    U("surrogate D800", "\xed\xa0\x80", false),
    U("surrogate DBFF", "\xed\xaf\xbf", false),
    U("surrogate DC00", "\xed\xb0\x80", false),
    U("surrogate DFFF", "\xed\xbf\xbf", false),
    U("surrogate pair CESU", "\xed\xa0\xbd\xed\xb8\x80", false),
    U("U+110000", "\xf4\x90\x80\x80", false),
    U("F5 lead", "\xf5\x80\x80\x80", false),
    U("F7 lead", "\xf7\xbf\xbf\xbf", false),
    U("5-byte lead", "\xf8\x88\x80\x80\x80", false),
    U("6-byte lead", "\xfc\x84\x80\x80\x80\x80", false),
    U("FE", "\xfe", false),
    U("FF", "\xff", false),
    U("lone continuation", "\x80", false),
    U("continuation after ascii", "a\xbf", false),
    U("truncated 2-byte", "\xc3", false),
    U("truncated 2-byte mid", "a\xc3z", false),
    U("truncated 3-byte 1", "\xe2", false),
    U("truncated 3-byte 2", "\xe2\x82", false),
    U("truncated 3-byte then ascii", "\xe2\x82z", false),
    U("truncated 4-byte 1", "\xf0", false),
    U("truncated 4-byte 2", "\xf0\x9f", false),
    U("truncated 4-byte 3", "\xf0\x9f\x98", false),
    U("bad second byte", "\xc3\x28", false),
    U("bad third byte", "\xe2\x82\x28", false),
    U("bad fourth byte", "\xf0\x9f\x98\x28", false),
    U("valid then truncated", "ok\xf0\x9f\x98\x80\xf0\x9f\x98", false),
};

/* Length-prefixed strings: exactly max bytes pass, one more fails the reader, and a length
 * past the end of the input is refused without reading it. */
static void test_reader_strings(void)
{
	struct buf b;
	struct buf_reader r;
	const char *p = NULL;
	size_t len = 0;
	buf_init(&b);
	buf_put_u32(&b, 3);
	buf_append(&b, "abc", 3);
	buf_put_u32(&b, 0);
	buf_reader_init(&r, b.data, b.len);
	CHECK(buf_get_str(&r, 3, &p, &len) == 0 && len == 3 && memcmp(p, "abc", 3) == 0);
	CHECK(buf_get_str(&r, 0, &p, &len) == 0 && len == 0);
	CHECK(buf_get_str(&r, 10, &p, &len) == -1); /* input exhausted */
	buf_reader_init(&r, b.data, b.len);
	CHECK(buf_get_str(&r, 2, &p, &len) == -1); /* longer than max */
	CHECK(r.failed);
	CHECK(buf_get_u32(&r, &(uint32_t){0}) == -1); /* the reader stays failed */
	buf_reset(&b);
	buf_put_u32(&b, 100);
	buf_append(&b, "short", 5);
	buf_reader_init(&r, b.data, b.len);
	CHECK(buf_get_str(&r, SIZE_MAX, &p, &len) == -1);
	buf_close(&b);
}

static void test_utf8(void)
{
	for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
		const struct utf8_case *c = &utf8_cases[i];
		bool got = text_valid_utf8(c->s, c->len);
		if (got != c->valid)
			fprintf(stderr, "utf8 case \"%s\": got %d want %d\n", c->name, got,
			        c->valid);
		CHECK(got == c->valid);
	}
	/* The length is respected: a valid prefix of an invalid string is valid, and a
	 * multi-byte character cut by len is not. */
	CHECK(text_valid_utf8("abc\xff", 3));
	CHECK(!text_valid_utf8("\xe2\x82\xac", 2));
	CHECK(text_valid_utf8("\xe2\x82\xac", 0));

	/* One character at a time: its length, or 0 where no valid character starts. */
	CHECK_EQ_INT(text_utf8_char_len("a\xe2\x82\xac", 4), 1);
	CHECK_EQ_INT(text_utf8_char_len("\xe2\x82\xac!", 4), 3);
	CHECK_EQ_INT(text_utf8_char_len("\xc3\xa9", 2), 2);
	CHECK_EQ_INT(text_utf8_char_len("\xf0\x9f\x98\x80", 4), 4);
	CHECK_EQ_INT(text_utf8_char_len("\xe2\x82\xac", 2), 0); /* cut by len */
	CHECK_EQ_INT(text_utf8_char_len("\x82\xac", 2), 0);     /* a continuation byte */
	CHECK_EQ_INT(text_utf8_char_len("\xc0\xaf", 2), 0);     /* overlong */
	CHECK_EQ_INT(text_utf8_char_len("\xed\xa0\x80", 3), 0); /* surrogate */
	CHECK_EQ_INT(text_utf8_char_len("\xff", 1), 0);
	CHECK_EQ_INT(text_utf8_char_len("x", 0), 0);
}

static void test_base64(void)
{
	static const struct {
		const char *plain, *enc;
	} rfc[] = {
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	};
	for (size_t i = 0; i < sizeof rfc / sizeof rfc[0]; i++) {
		struct buf e, d;
		buf_init(&e);
		buf_init(&d);
		text_base64_encode(rfc[i].plain, strlen(rfc[i].plain), &e);
		CHECK_EQ_INT(e.len, strlen(rfc[i].enc));
		CHECK(e.len == 0 || strcmp(e.data, rfc[i].enc) == 0);
		CHECK_EQ_INT(text_base64_decode(rfc[i].enc, strlen(rfc[i].enc), &d), 0);
		CHECK_EQ_INT(d.len, strlen(rfc[i].plain));
		CHECK(d.len == 0 || memcmp(d.data, rfc[i].plain, d.len) == 0);
		buf_close(&e);
		buf_close(&d);
	}

	/* Every alphabet character and all byte values, lengths 0..7 and a long one. */
	uint8_t bytes[256];
	for (int i = 0; i < 256; i++)
		bytes[i] = (uint8_t)(255 - i);
	size_t lens[] = {0, 1, 2, 3, 4, 5, 6, 7, 254, 255, 256};
	for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
		size_t n = lens[li];
		struct buf e, d;
		buf_init(&e);
		buf_init(&d);
		text_base64_encode(bytes, n, &e);
		CHECK_EQ_INT(e.len, (n + 2) / 3 * 4);
		CHECK_EQ_INT(text_base64_decode(e.data, e.len, &d), 0);
		CHECK_EQ_INT(d.len, n);
		CHECK(n == 0 || memcmp(d.data, bytes, n) == 0);
		/* Padding count follows the length. */
		size_t pads = 0;
		for (size_t k = 0; k < e.len; k++)
			pads += e.data[k] == '=';
		CHECK_EQ_INT(pads, (3 - n % 3) % 3);
		buf_close(&e);
		buf_close(&d);
	}
	{
		struct buf e;
		buf_init(&e);
		text_base64_encode("\xfb\xff\xbf", 3, &e);
		CHECK_EQ_STR(e.data, "+/+/");
		buf_close(&e);
	}

	/* Decoding appends to what is already in the buffer. */
	{
		struct buf d;
		buf_init(&d);
		buf_puts(&d, "x:");
		CHECK_EQ_INT(text_base64_decode("Zm9v", 4, &d), 0);
		CHECK_EQ_STR(d.data, "x:foo");
		buf_close(&d);
	}

	static const char *invalid[] = {
	    "Z",           /* length not a multiple of 4 */
	    "Zg",          /* unpadded */
	    "Zg=",         /* short padding */
	    "Zm9vY",       /* 5 chars */
	    "Zg===",       /* too much padding, bad length */
	    "Z===",        /* padding in position 1 */
	    "====",        /* all padding */
	    "=Zg=",        /* padding first */
	    "Zg=a",        /* data after padding */
	    "Zg==Zm9v",    /* padding in a non-final quantum */
	    "Zm9v====",    /* padding-only final quantum */
	    "Zm9v!A==",    /* character outside the alphabet */
	    "Zm 9v",       /* whitespace (also bad length) */
	    "Zm9 ",        /* space */
	    "Zm9\n",       /* newline */
	    "Zm-_",        /* URL-safe alphabet is not accepted */
	    "Zm9\xc3\xa9", /* non-ASCII */
	};
	for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
		struct buf d;
		buf_init(&d);
		int rv = text_base64_decode(invalid[i], strlen(invalid[i]), &d);
		if (rv != -1)
			fprintf(stderr, "base64 \"%s\" was accepted\n", invalid[i]);
		CHECK_EQ_INT(rv, -1);
		buf_close(&d);
	}
	/* An embedded NUL is not an alphabet character (strchr would find the terminator). */
	{
		struct buf d;
		buf_init(&d);
		CHECK_EQ_INT(text_base64_decode("Zm\0v", 4, &d), -1);
		CHECK_EQ_INT(text_base64_decode("Zg=\0", 4, &d), -1);
		buf_close(&d);
	}
}

static void test_parse_u64(void)
{
	uint64_t v = 7;
	CHECK_EQ_INT(text_parse_u64("0", &v), 0);
	CHECK(v == 0);
	CHECK_EQ_INT(text_parse_u64("42", &v), 0);
	CHECK(v == 42);
	CHECK_EQ_INT(text_parse_u64("000123", &v), 0);
	CHECK(v == 123);
	CHECK_EQ_INT(text_parse_u64("18446744073709551615", &v), 0);
	CHECK(v == UINT64_MAX);
	CHECK_EQ_INT(text_parse_u64("18446744073709551614", &v), 0);
	CHECK(v == UINT64_MAX - 1);

	v = 99;
	static const char *bad[] = {
	    "",
	    "18446744073709551616",  /* UINT64_MAX + 1 */
	    "18446744073709551620",  /* last digit overflows */
	    "28446744073709551615",  /* first digit overflows */
	    "99999999999999999999",  /* 20 digits */
	    "184467440737095516150", /* 21 digits */
	    "-1",
	    "+1",
	    " 1",
	    "1 ",
	    "1a",
	    "a1",
	    "0x10",
	    "1.0",
	    "1e3",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rv = text_parse_u64(bad[i], &v);
		if (rv != -1)
			fprintf(stderr, "text_parse_u64 accepted \"%s\"\n", bad[i]);
		CHECK_EQ_INT(rv, -1);
	}
	CHECK_EQ_INT(text_parse_u64(NULL, &v), -1);
	CHECK(v == 99); /* failures leave the output alone */
}

static void test_parse_duration(void)
{
	static const struct {
		const char *s;
		int rv;
		unsigned ms;
	} cases[] = {
	    {"250", 0, 250},
	    {"1", 0, 1},
	    {"250ms", 0, 250},
	    {"1ms", 0, 1},
	    {"2s", 0, 2000},
	    {"1m", 0, 60000},
	    {"60m", 0, 3600000},
	    {"3600s", 0, 3600000},
	    {"3600000", 0, 3600000},
	    {"3600000ms", 0, 3600000},
	    {"0007s", 0, 7000},
	    {"0", -1, 0},
	    {"0ms", -1, 0},
	    {"0s", -1, 0},
	    {"0m", -1, 0},
	    {"3600001", -1, 0},
	    {"3600001ms", -1, 0},
	    {"3601s", -1, 0},
	    {"61m", -1, 0},
	    {"99999999999999999999999999", -1, 0}, /* longer than any u64 */
	    {"18446744073709551616ms", -1, 0},
	    {"4294967296", -1, 0}, /* would wrap an unsigned */
	    {"", -1, 0},
	    {"ms", -1, 0},
	    {"s", -1, 0},
	    {"1h", 0, 3600000},
	    {"2h", -1, 0},
	    {"1 s", -1, 0},
	    {" 1s", -1, 0},
	    {"1s ", -1, 0},
	    {"1S", -1, 0},
	    {"1msx", -1, 0},
	    {"1sm", -1, 0},
	    {"1mss", -1, 0},
	    {"1.5s", -1, 0},
	    {"-1", -1, 0},
	    {"+1s", -1, 0},
	    {"1us", -1, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		unsigned got = 12345;
		int rv = text_parse_duration_ms(cases[i].s, &got);
		if (rv != cases[i].rv || (rv == 0 && got != cases[i].ms))
			fprintf(stderr, "duration \"%s\": rv=%d ms=%u\n", cases[i].s, rv, got);
		CHECK_EQ_INT(rv, cases[i].rv);
		if (cases[i].rv == 0)
			CHECK_EQ_INT(got, cases[i].ms);
		else
			CHECK_EQ_INT(got, 12345);
	}
}

int main(void)
{
	test_reader_strings();
	test_append_printf_grow();
	test_integers_big_endian();
	test_reader_bounds();
	test_utf8();
	test_base64();
	test_parse_u64();
	test_parse_duration();
	TEST_DONE();
}
