/* parse: strict HTTP/1.1 request parsing (see parse.h).
 *
 * Written against RFC 9112 rather than taken from libmicrohttpd: 0.9.75 accepts a NUL inside a
 * header value (it stores the value with strlen, so the rest silently disappears), joins folded
 * lines, keeps "Content-Length : 5" as a header named "Content-Length " (and frames the body as
 * empty), uses the first of two Content-Lengths, ignores Content-Length next to any
 * Transfer-Encoding, and answers what it refuses itself in text/html - twice over for a bad
 * Content-Length (docs/architecture.md, "HTTP server"). */
#include "http/parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/text.h"

static void fail(struct http_parse_error *err, unsigned status, const char *detail)
{
	err->status = status;
	snprintf(err->detail, sizeof err->detail, "%s", detail);
}

/* tchar (RFC 9110 5.6.2). */
static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP and HTAB (RFC 9110 5.5): everything but controls and DEL. */
static bool is_field_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* What a request target may hold: RFC 3986's characters, i.e. visible ASCII. Raw bytes
 * above 0x7f must be percent-encoded; a fragment is never sent. */
static bool is_target_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '#';
}

#define HTTP_MAX_EMPTY_LINES 4

long http_head_end(const char *buf, size_t len, struct http_head_scan *sc,
                   struct http_parse_error *err)
{
	size_t i = sc->pos;
	if (sc->line < sc->start)
		sc->line = sc->start;
	for (; i < len; i++) {
		char c = buf[i];
		if (c == '\r') {
			if (i + 1 == len)
				break; /* decide once the next byte is here */
			if (buf[i + 1] != '\n') {
				fail(err, 400, "bare CR in the request head");
				return -1;
			}
			continue;
		}
		if (c != '\n') {
			if (sc->line == sc->start && i - sc->start > HTTP_MAX_TARGET + 32) {
				fail(err, 414, "the request target is longer than 8192 bytes");
				return -1;
			}
			continue;
		}
		if (i == 0 || buf[i - 1] != '\r') {
			fail(err, 400, "bare LF in the request head");
			return -1;
		}
		bool empty = i - 1 == sc->line;
		if (empty && sc->line == sc->start) {
			/* An empty line before the request line. */
			if (++sc->empty > HTTP_MAX_EMPTY_LINES) {
				fail(err, 400, "too many empty lines before the request line");
				return -1;
			}
			sc->start = sc->line = i + 1;
			continue;
		}
		if (empty) {
			if (i + 1 - sc->start > HTTP_MAX_HEAD) {
				fail(err, 431, "the request head is larger than 32768 bytes");
				return -1;
			}
			sc->pos = i + 1;
			return (long)(i + 1);
		}
		sc->line = i + 1;
	}
	sc->pos = i;
	if (len - sc->start > HTTP_MAX_HEAD) {
		fail(err, 431, "the request head is larger than 32768 bytes");
		return -1;
	}
	return 0;
}

static int parse_version(const char *p, size_t n, unsigned *minor, struct http_parse_error *err)
{
	if (n == 8 && memcmp(p, "HTTP/1.", 7) == 0 && (p[7] == '0' || p[7] == '1')) {
		*minor = (unsigned)(p[7] - '0');
		return 0;
	}
	if (n == 8 && memcmp(p, "HTTP/", 5) == 0 && p[5] >= '0' && p[5] <= '9' && p[6] == '.' &&
	    p[7] >= '0' && p[7] <= '9') {
		fail(err, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
		return -1;
	}
	fail(err, 400, "the request line must end with HTTP/1.1 or HTTP/1.0");
	return -1;
}

static int parse_request_line(struct http_head *h, const char *p, size_t n,
                              struct http_parse_error *err)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ' ') {
		fail(err, 400, "malformed request line: expected METHOD SP target SP HTTP/1.1");
		return -1;
	}
	h->method = p;
	h->method_len = i;
	size_t t = ++i;
	while (i < n && is_target_char((unsigned char)p[i]))
		i++;
	if (i == t || i == n || p[i] != ' ') {
		fail(err, 400,
		     "malformed request target: one space on each side, visible ASCII only "
		     "(percent-encode the rest)");
		return -1;
	}
	if (i - t > HTTP_MAX_TARGET) {
		fail(err, 414, "the request target is longer than 8192 bytes");
		return -1;
	}
	h->target = p + t;
	h->target_len = i - t;
	i++;
	return parse_version(p + i, n - i, &h->minor, err);
}

static int parse_field(struct http_head *h, const char *p, size_t n, struct http_parse_error *err)
{
	if (p[0] == ' ' || p[0] == '\t') {
		fail(err, 400, "obsolete line folding in the request head");
		return -1;
	}
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == n || p[i] != ':') {
		fail(err, 400,
		     i < n && (p[i] == ' ' || p[i] == '\t')
		         ? "whitespace between a header name and its colon"
		         : "a header line without a name and colon, or with a character a name "
		           "cannot hold");
		return -1;
	}
	if (i == 0) {
		fail(err, 400, "a header line with an empty name");
		return -1;
	}
	if (h->n_fields == HTTP_MAX_FIELDS) {
		fail(err, 431, "more than 128 header fields");
		return -1;
	}
	size_t v = i + 1, end = n;
	while (v < end && (p[v] == ' ' || p[v] == '\t'))
		v++;
	while (end > v && (p[end - 1] == ' ' || p[end - 1] == '\t'))
		end--;
	for (size_t k = v; k < end; k++)
		if (!is_field_char((unsigned char)p[k])) {
			snprintf(err->detail, sizeof err->detail,
			         "header %.*s contains a control character (byte 0x%02x)",
			         (int)(i > 64 ? 64 : i), p, (unsigned char)p[k]);
			err->status = 400;
			return -1;
		}
	struct http_field *f = &h->fields[h->n_fields++];
	f->name = p;
	f->name_len = i;
	f->value = p + v;
	f->value_len = end - v;
	return 0;
}

int http_parse_head(const char *buf, size_t len, struct http_head *h, struct http_parse_error *err)
{
	memset(h, 0, sizeof *h);
	size_t pos = 0;
	bool first = true;
	while (pos < len) {
		const char *eol = memchr(buf + pos, '\r', len - pos);
		if (eol == NULL || (size_t)(eol - buf) + 1 >= len || eol[1] != '\n') {
			fail(err, 400, "the request head does not end with an empty line");
			return -1;
		}
		size_t n = (size_t)(eol - (buf + pos));
		if (n == 0)
			return first ? (fail(err, 400, "empty request line"), -1) : 0;
		int rv = first ? parse_request_line(h, buf + pos, n, err)
		               : parse_field(h, buf + pos, n, err);
		if (rv != 0)
			return -1;
		first = false;
		pos += n + 2;
	}
	fail(err, 400, "the request head does not end with an empty line");
	return -1;
}

static bool name_is(const struct http_field *f, const char *name)
{
	return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static bool value_is(const struct http_field *f, const char *v)
{
	return f->value_len == strlen(v) && strncasecmp(f->value, v, f->value_len) == 0;
}

const struct http_field *http_head_field(const struct http_head *h, const char *name,
                                         unsigned *count)
{
	const struct http_field *first = NULL;
	unsigned n = 0;
	for (unsigned i = 0; i < h->n_fields; i++)
		if (name_is(&h->fields[i], name)) {
			if (first == NULL)
				first = &h->fields[i];
			n++;
		}
	if (count != NULL)
		*count = n;
	return first;
}

/* Does the comma-separated list in f hold `token` (case-insensitive)? */
static bool list_has(const struct http_field *f, const char *token)
{
	size_t tl = strlen(token), i = 0;
	while (i < f->value_len) {
		while (i < f->value_len &&
		       (f->value[i] == ' ' || f->value[i] == '\t' || f->value[i] == ','))
			i++;
		size_t s = i;
		while (i < f->value_len && f->value[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (f->value[e - 1] == ' ' || f->value[e - 1] == '\t'))
			e--;
		if (e - s == tl && strncasecmp(f->value + s, token, tl) == 0)
			return true;
	}
	return false;
}

static int framing_length(const struct http_field *cl, size_t max_body, struct http_framing *f,
                          struct http_parse_error *err)
{
	uint64_t v = 0;
	bool big = false;
	if (cl->value_len == 0) {
		fail(err, 400, "Content-Length must be a decimal number");
		return -1;
	}
	for (size_t i = 0; i < cl->value_len; i++) {
		char c = cl->value[i];
		if (c < '0' || c > '9') {
			fail(err, 400, "Content-Length must be a decimal number");
			return -1;
		}
		if (v > (UINT64_MAX - 9) / 10)
			big = true;
		else
			v = v * 10 + (uint64_t)(c - '0');
	}
	if (big || v > max_body) {
		snprintf(err->detail, sizeof err->detail, "request body exceeds %zu bytes",
		         max_body);
		err->status = 413;
		return -1;
	}
	f->body = v > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	f->length = v;
	return 0;
}

int http_head_framing(const struct http_head *h, size_t max_body, struct http_framing *f,
                      struct http_parse_error *err)
{
	unsigned n_host, n_cl, n_te, n_expect;
	memset(f, 0, sizeof *f);
	http_head_field(h, "Host", &n_host);
	const struct http_field *cl = http_head_field(h, "Content-Length", &n_cl);
	const struct http_field *te = http_head_field(h, "Transfer-Encoding", &n_te);
	const struct http_field *ex = http_head_field(h, "Expect", &n_expect);
	if (n_host > 1 || (h->minor == 1 && n_host == 0)) {
		fail(err, 400,
		     n_host > 1 ? "more than one Host header"
		                : "an HTTP/1.1 request needs a Host header");
		return -1;
	}
	if (n_cl > 1) {
		fail(err, 400, "more than one Content-Length header");
		return -1;
	}
	if (n_te > 0) {
		if (h->minor == 0) {
			fail(err, 400, "Transfer-Encoding in an HTTP/1.0 request");
			return -1;
		}
		if (n_cl > 0) {
			fail(err, 400, "both Content-Length and Transfer-Encoding");
			return -1;
		}
		if (n_te > 1 || !value_is(te, "chunked")) {
			fail(err, 501, "Transfer-Encoding other than chunked is not supported");
			return -1;
		}
		f->body = HTTP_BODY_CHUNKED;
	} else if (n_cl == 1 && framing_length(cl, max_body, f, err) != 0) {
		return -1;
	}
	if (n_expect > 1 || (n_expect == 1 && !value_is(ex, "100-continue"))) {
		fail(err, 417, "only Expect: 100-continue is supported");
		return -1;
	}
	/* A 1.0 client does not know 100 Continue (RFC 9110 10.1.1). */
	f->expect_continue = n_expect == 1 && h->minor == 1 && f->body != HTTP_BODY_NONE;
	f->keep_alive = h->minor == 1;
	for (unsigned i = 0; i < h->n_fields; i++) {
		const struct http_field *c = &h->fields[i];
		if (!name_is(c, "Connection"))
			continue;
		if (list_has(c, "close"))
			f->keep_alive = false;
		else if (h->minor == 0 && list_has(c, "keep-alive"))
			f->keep_alive = true;
	}
	return 0;
}

/* ---- chunked bodies ---- */

enum {
	CH_SIZE,
	CH_EXT,
	CH_SIZE_LF,
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER,
	CH_TRAILER_LINE,
	CH_TRAILER_LF,
	CH_END_LF,
	CH_DONE,
};

/* A chunk extension or trailer line longer than this is not something a client sends. */
#define CH_MAX_LINE    4096
#define CH_MAX_TRAILER (16 * 1024)

void http_chunked_init(struct http_chunked *c)
{
	memset(c, 0, sizeof *c);
}

static long chunk_fail(struct http_parse_error *err, const char *detail)
{
	fail(err, 400, detail);
	return -1;
}

long http_chunked_feed(struct http_chunked *c, const char *in, size_t len, struct buf *out,
                       size_t max_body, bool *done, struct http_parse_error *err)
{
	size_t i = 0;
	*done = c->state == CH_DONE;
	while (i < len && c->state != CH_DONE) {
		char ch = in[i];
		switch (c->state) {
		case CH_SIZE: {
			int d = text_hex_value(ch);
			if (d >= 0) {
				if (++c->digits > 16 || c->left > (UINT64_MAX >> 4)) {
					snprintf(err->detail, sizeof err->detail,
					         "request body exceeds %zu bytes", max_body);
					err->status = 413;
					return -1;
				}
				c->left = c->left << 4 | (uint64_t)d;
			} else if (c->digits == 0) {
				return chunk_fail(err, "malformed chunk size");
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				c->state = CH_EXT;
				c->line = 0;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else {
				return chunk_fail(err, "malformed chunk size");
			}
			i++;
			break;
		}
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (!is_field_char((unsigned char)ch) || ++c->line > CH_MAX_LINE)
				return chunk_fail(err, "malformed chunk extension");
			i++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return chunk_fail(err, "bare CR after a chunk size");
			i++;
			c->digits = 0;
			if (c->left == 0) {
				c->state = CH_TRAILER;
				c->trailer = 0;
			} else if (out->len + c->left > max_body) {
				snprintf(err->detail, sizeof err->detail,
				         "request body exceeds %zu bytes", max_body);
				err->status = 413;
				return -1;
			} else {
				c->state = CH_DATA;
			}
			break;
		case CH_DATA: {
			size_t n = len - i;
			if (n > c->left)
				n = (size_t)c->left;
			buf_append(out, in + i, n);
			c->left -= n;
			i += n;
			if (c->left == 0)
				c->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch != '\r')
				return chunk_fail(err, "chunk data longer than its size");
			c->state = CH_DATA_LF;
			i++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return chunk_fail(err, "bare CR after chunk data");
			c->state = CH_SIZE;
			i++;
			break;
		case CH_TRAILER:
			if (ch == '\r') {
				c->state = CH_END_LF;
				i++;
				break;
			}
			c->state = CH_TRAILER_LINE;
			c->line = 0;
			break;
		case CH_TRAILER_LINE:
			if (ch == '\r')
				c->state = CH_TRAILER_LF;
			else if (!is_field_char((unsigned char)ch) || ++c->line > CH_MAX_LINE ||
			         ++c->trailer > CH_MAX_TRAILER)
				return chunk_fail(err, "malformed trailer field");
			i++;
			break;
		case CH_TRAILER_LF:
			if (ch != '\n')
				return chunk_fail(err, "bare CR in the trailer section");
			c->state = CH_TRAILER;
			i++;
			break;
		case CH_END_LF:
			if (ch != '\n')
				return chunk_fail(err, "bare CR at the end of a chunked body");
			c->state = CH_DONE;
			i++;
			break;
		}
	}
	*done = c->state == CH_DONE;
	return (long)i;
}

int http_target_split(const char *t, size_t len, const char **path, size_t *path_len,
                      const char **query, size_t *query_len)
{
	size_t start = 0;
	if (len > 0 && t[0] == '/') {
		start = 0;
	} else {
		size_t skip = len >= 7 && strncasecmp(t, "http://", 7) == 0    ? 7
		              : len >= 8 && strncasecmp(t, "https://", 8) == 0 ? 8
		                                                               : 0;
		if (skip == 0)
			return -1;
		const char *slash = memchr(t + skip, '/', len - skip);
		const char *q = memchr(t + skip, '?', len - skip);
		if (slash == NULL || (q != NULL && q < slash)) {
			/* "http://host" or "http://host?q": the path is "/". */
			*path = "/";
			*path_len = 1;
			*query = q != NULL ? q + 1 : t + len;
			*query_len = q != NULL ? (size_t)(t + len - q - 1) : 0;
			return 0;
		}
		start = (size_t)(slash - t);
	}
	const char *q = memchr(t + start, '?', len - start);
	*path = t + start;
	*path_len = (q != NULL ? (size_t)(q - t) : len) - start;
	*query = q != NULL ? q + 1 : t + len;
	*query_len = q != NULL ? (size_t)(t + len - q - 1) : 0;
	return 0;
}
