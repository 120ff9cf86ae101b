/* parse: a strict HTTP/1.1 request parser (RFC 9112), kept apart from the server so it can be
 * unit-tested and fuzzed on its own.
 *
 * Strict means that anything two HTTP implementations could read differently is refused
 * rather than repaired: a front proxy and this server must never disagree on where a request
 * ends (request smuggling). So: CRLF line ends only (no bare CR or LF), no whitespace before a
 * header's colon, no obsolete line folding, no control characters (NUL included) anywhere in
 * the head, exactly one Host in HTTP/1.1, at most one Content-Length (digits only, no lists),
 * Transfer-Encoding only "chunked" and never together with Content-Length, and Expect only
 * "100-continue". Each refusal comes with the status to answer (400, 413, 414, 417, 431, 501,
 * 505) and a one-line reason; the server always closes the connection after it, since the
 * rest of the byte stream can no longer be framed.
 *
 * http_parse_head works on a complete head (the caller finds the blank line first, see
 * http_head_end); http_head_framing interprets the fields that decide how the body is read;
 * http_chunked_feed decodes a chunked body incrementally. Nothing here allocates except
 * http_chunked_feed, which appends to a buf. */
#ifndef CLOUDLESS_HTTP_PARSE_H
#define CLOUDLESS_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Largest request target (414 beyond), whole head (431 beyond) and number of header fields
 * (431 beyond). 8 KiB of target is nginx's large_client_header_buffers; 32 KiB of head keeps a
 * header block far larger than any client of this API sends. */
#define HTTP_MAX_TARGET 8192
#define HTTP_MAX_HEAD   (32 * 1024)
#define HTTP_MAX_FIELDS 128

struct http_field {
	const char *name, *value; /* point into the parsed buffer; not NUL-terminated */
	size_t name_len, value_len;
};

struct http_head {
	const char *method, *target;
	size_t method_len, target_len;
	unsigned minor; /* HTTP/1.<minor>: 0 or 1 */
	struct http_field fields[HTTP_MAX_FIELDS];
	unsigned n_fields;
};

/* Why a request was refused: the status to answer and a reason for the problem detail. */
struct http_parse_error {
	unsigned status;
	char detail[160];
};

/* The search for the end of a head, kept between calls as more bytes arrive (zero it for
 * each new request). `start` is where the request line begins: empty lines before it are
 * skipped (RFC 9112 2.2). */
struct http_head_scan {
	size_t pos, line, start;
	unsigned empty;
};

/* Where the head ends: the offset just past its blank line, 0 while it is incomplete, or -1
 * (err filled) when what arrived can no longer become a valid head: too long (414/431), a bare
 * CR or LF, or too many empty lines before it. */
long http_head_end(const char *buf, size_t len, struct http_head_scan *sc,
                   struct http_parse_error *err);

/* Parses the head in buf[0..len) (the request line through the blank line). 0, or -1 with
 * err filled. */
int http_parse_head(const char *buf, size_t len, struct http_head *h, struct http_parse_error *err);

enum http_body_kind { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED };

struct http_framing {
	enum http_body_kind body;
	uint64_t length;      /* HTTP_BODY_LENGTH */
	bool expect_continue; /* Expect: 100-continue (HTTP/1.1) */
	bool keep_alive;      /* the connection may carry another request afterwards */
};

/* Checks the fields that frame the message and decides how the body is read. A declared
 * Content-Length over max_body is 413 here, before any of it is read. 0, or -1 with err. */
int http_head_framing(const struct http_head *h, size_t max_body, struct http_framing *f,
                      struct http_parse_error *err);

/* The first field named `name` (case-insensitive), and how many there are. */
const struct http_field *http_head_field(const struct http_head *h, const char *name,
                                         unsigned *count);

/* Incremental chunked-body decoder (RFC 9112 7.1); chunk extensions and trailer fields are
 * read, bounded and dropped. */
struct http_chunked {
	int state;
	uint64_t left; /* bytes left in the current chunk */
	unsigned digits;
	size_t line; /* bytes of the current extension or trailer line */
	size_t trailer;
};

void http_chunked_init(struct http_chunked *c);
/* Consumes bytes of in[0..len) and appends the data to out. Returns the bytes consumed
 * (everything unless the body ended inside the input), or -1 with err filled (400 malformed,
 * 413 once out would exceed max_body). *done is set once the last chunk and its trailers have
 * been read. */
long http_chunked_feed(struct http_chunked *c, const char *in, size_t len, struct buf *out,
                       size_t max_body, bool *done, struct http_parse_error *err);

/* Splits a request target into path and query. Origin form ("/p?q") and absolute form
 * ("http://host/p?q", RFC 9112 3.2.2: a server must accept it) are accepted; anything else
 * ("*", authority form) is -1. The path is still percent-encoded. */
int http_target_split(const char *t, size_t len, const char **path, size_t *path_len,
                      const char **query, size_t *query_len);

#endif
