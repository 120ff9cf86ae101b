/* internal: what http.c (the server) and request.c (requests and responses) share. Not for
 * use outside src/http/. */
#ifndef CLOUDLESS_HTTP_INTERNAL_H
#define CLOUDLESS_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http.h"
#include "util/buf.h"

struct http_header {
	char *name;
	char *value; /* NULL for a query parameter without "=" */
};

struct http_conn;

/* A request owns copies of everything (nothing points into a connection's buffers), so the
 * loop can use it while the server thread reads the next bytes. Ownership moves: the server
 * thread builds it, the loop runs its handler and answers it, the server thread writes the
 * answer and frees it. */
struct http_request {
	struct http_server *s;  /* NULL for a synthetic request */
	struct http_conn *conn; /* the connection it came on (server thread's) */
	char *method;
	char *path;
	char *query_string; /* built on first use */
	char peer[64];
	struct buf body;
	uint64_t start_ns;
	const char *tag;
	void *data;
	struct http_header *req_headers;
	size_t n_req_headers;
	struct http_header *args;
	size_t n_args;

	/* The response, filled by http_respond. */
	struct http_header *headers;
	size_t nheaders;
	char *content_type;
	char *resp_body;
	size_t resp_len;
	unsigned status;
	bool answered;
	bool head;       /* a HEAD request: the answer goes without its body */
	bool keep_alive; /* the client may send another request on the connection */
	bool early;      /* refused by the server thread: only complete runs on the loop */
	bool on_loop;    /* handed to the loop, not answered yet (in s->pending) */

	/* The response serialized by the loop for the server thread. */
	char *out_head;
	size_t out_head_len;
	/* The connection's socket, which the loop may write the answer to itself (http.c,
	 * "direct write"), -1 when it may not; and how much of the answer it wrote. */
	int fd;
	size_t sent;

	struct http_request *prev, *next; /* the loop's pending list */
	struct http_request *qnext;       /* the queues between the threads */
	uint64_t queued_ns;               /* when it joined the loop's queue (uv_hrtime) */

	http_answered_fn on_answered; /* synthetic requests */
	void *answered_arg;
};

struct http_request *http_request_alloc(void);
void http_request_free(struct http_request *req);
/* Decodes a query string into req->args as libmicrohttpd did ('+' is a space, percent
 * escapes, "%00" as C0 80) and a path (percent escapes, "%00" as C0 80). */
void http_request_parse_query(struct http_request *req, const char *q, size_t len);
char *http_decode_path(const char *p, size_t n);
void *http_xmalloc(size_t n);
char *http_xstrdup(const char *s);
char *http_dup_n(const char *p, size_t n);
/* http.c: a connection request was answered on the loop (http_respond). */
void http_server_answered(struct http_request *req);
/* "Date: ..." value for now, RFC 9110 IMF-fixdate. */
void http_date(char *out, size_t len);
/* "{type,title,status,detail}" for the server's own answers; detail is JSON-escaped. */
void http_problem_body(struct buf *b, unsigned status, const char *slug, const char *detail);

#endif
