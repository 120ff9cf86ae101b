/* http: the coordinator's HTTP/1.1 server. Sockets are served on a thread of their own; every
 * handler runs on the caller's libuv loop (the raft loop).
 *
 * The server thread runs its own libuv loop: it accepts connections, reads and strictly parses
 * requests (http/parse.h), buffers each whole body, and answers by itself whatever it refuses
 * (400, 408, 413, 414, 417, 431, 501, 503, 505: problem+json with the headers last published by
 * http_server_set_headers, then a close). A complete request is handed to the loop through a
 * queue and a uv_async; the loop runs at most a bounded amount of handler work per iteration,
 * so a flood of requests never keeps raft's timers and I/O waiting. A handler either answers
 * at once (http_respond inside the handler) or later from any loop callback (apply, barrier,
 * forward); no thread ever blocks on a commit. A connection carries one request at a time:
 * the next pipelined request is parsed once the previous answer is on its way, and nothing
 * more is read meanwhile, so a client cannot make the server buffer without bound.
 *
 * Everything in this header is called on the loop thread, except http_server_set_headers,
 * which may be called from any thread. */
#ifndef CLOUDLESS_HTTP_HTTP_H
#define CLOUDLESS_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_server;
struct http_request;
struct http_tls;

typedef void (*http_handler_fn)(struct http_request *req, void *arg);
/* Called on the loop once per request when it is answered (the answer is then on its way to
 * the client), also for requests the server thread refused by itself. */
typedef void (*http_complete_fn)(struct http_request *req, unsigned status, double seconds,
                                 void *arg);

struct http_server_options {
	const char *addr; /* "host:port"; port 0 picks a free port */
	size_t max_body;  /* bytes; larger uploads get 413 */
	http_handler_fn handler;
	http_complete_fn complete; /* optional */
	/* Optional: called on the loop for every request just before its handler, so headers it
	 * adds reach every answer the handler gives. (Answers the server thread gives itself carry
	 * the http_server_set_headers headers instead.) */
	http_handler_fn prepare;
	void *arg; /* passed to handler, complete and prepare */

	/* Limits; 0 takes the default shown. */
	unsigned max_connections;        /* 10000; more are closed at once */
	unsigned max_connections_per_ip; /* 1024; more from one address are closed at once */
	size_t max_buffered; /* 64 MiB: request bodies over 64 KiB share this; one that does not
	                        fit is refused with 503 before it is read */
	unsigned header_timeout_ms; /* 10000: a request head must arrive within this (408) */
	unsigned body_timeout_ms;   /* 10000: and its body within this after the head (408) */
	unsigned idle_timeout_ms;   /* 120000: an idle keep-alive connection is closed after */

	/* NULL: plain HTTP. Otherwise every connection is TLS with these credentials (http/tls.h;
	 * not owned: they must outlive the server), read and written by the server thread. */
	struct http_tls *tls;
};

/* Binds and starts serving. On failure returns -1 and writes a one-line reason to err. */
int http_server_init(struct http_server **out, uv_loop_t *loop,
                     const struct http_server_options *opts, char *err, size_t errlen);
/* Answers every request still held with 503 shutting-down (Retry-After, Connection: close),
 * then closes the listener, lets connections that are in the middle of a request get their
 * 503 too (bounded by about a second), closes the rest and frees the server. The caller must
 * not touch any http_request afterwards. */
void http_server_close(struct http_server *s);
/* The port actually bound (useful with port 0). */
unsigned http_server_port(const struct http_server *s);
/* Requests whose handler has run but which have not been answered yet. */
unsigned http_server_pending(const struct http_server *s);
/* How long (ms) the oldest request not yet handed to a handler has waited for the loop; 0
 * when none waits. A loop that falls behind shows here first (the domain's liveness reads it
 * so that a heartbeat queued in time is not taken for a silent agent). */
uint64_t http_server_backlog_ms(struct http_server *s);
/* Headers ("Name", "value" pairs) the server thread adds to the answers it gives by itself.
 * Copied; replaces the previous set. Thread-safe. */
void http_server_set_headers(struct http_server *s, const char *const *pairs, size_t n);

/* Request accessors: valid from the handler call until the request is answered. */
const char *http_request_method(const struct http_request *req);
/* The path, percent-decoded, without the query string. */
const char *http_request_path(const struct http_request *req);
/* A decoded query parameter (the first of that name); NULL when absent, "" when present
 * without a value. */
const char *http_request_query(const struct http_request *req, const char *name);
/* How many times query parameter `name` occurs. */
unsigned http_request_query_count(const struct http_request *req, const char *name);
/* The query string re-encoded ("a=1&b"), "" when there is none. Owned by the request. */
const char *http_request_query_string(struct http_request *req);
/* Case-insensitive header lookup (the first of that name); NULL when absent. */
const char *http_request_header(const struct http_request *req, const char *name);
/* How many header fields are named `name` (case-insensitive). */
unsigned http_request_header_count(const struct http_request *req, const char *name);
const char *http_request_body(const struct http_request *req, size_t *len);
/* Peer address as "ip:port" (for logs, and protected mode's loopback check). */
const char *http_request_peer(struct http_request *req);
/* True for a request made by http_request_synthetic (it has no connection of its own). */
bool http_request_is_synthetic(const struct http_request *req);

/* A static string (route name for metrics) the api layer attaches; read back in complete. */
void http_request_set_tag(struct http_request *req, const char *tag);
const char *http_request_tag(const struct http_request *req);
/* One pointer of caller data that lives as long as the request. */
void http_request_set_data(struct http_request *req, void *data);
void *http_request_data(const struct http_request *req);

/* Sets a response header, replacing one of the same name (case-insensitive) set earlier;
 * call before http_respond. Both strings are copied. */
void http_response_header(struct http_request *req, const char *name, const char *value);
/* Sends the response (body copied). Call exactly once per request, from the handler or
 * later from any callback on the loop thread; extra calls are ignored. The request must not
 * be used afterwards. A HEAD request gets the headers of this response without its body. */
void http_respond(struct http_request *req, unsigned status, const char *content_type,
                  const void *body, size_t len);
/* The same, taking ownership of a malloc'd body (freed with free()): no copy of a large
 * value. */
void http_respond_take(struct http_request *req, unsigned status, const char *content_type,
                       void *body, size_t len);
/* True once http_respond has been called. */
bool http_request_answered(const struct http_request *req);

/* ---- synthetic requests ----
 *
 * A request that arrived inside another one (a batch of writes a follower forwarded, see
 * api/batch.c) runs through the same handlers as one read from a connection. Nothing is
 * sent anywhere: http_respond stores the response and calls on_answered (possibly from
 * inside the handler), after which the http_response_* getters read it back. The creator
 * frees it with http_request_synthetic_free. */
struct http_synthetic_header {
	const char *name, *value; /* not NUL-terminated */
	size_t name_len, value_len;
};

struct http_synthetic {
	const char *method, *path, *query, *body; /* path percent-decoded; query encoded */
	size_t method_len, path_len, query_len, body_len;
	const struct http_synthetic_header *headers;
	size_t n_headers;
};

typedef void (*http_answered_fn)(struct http_request *req, void *arg);

/* Everything is copied. */
struct http_request *http_request_synthetic(const struct http_synthetic *in,
                                            http_answered_fn on_answered, void *arg);
void http_request_synthetic_free(struct http_request *req);
unsigned http_response_status(const struct http_request *req);
const char *http_response_content_type(const struct http_request *req); /* NULL: none */
const char *http_response_body(const struct http_request *req, size_t *len);
size_t http_response_header_count(const struct http_request *req);
void http_response_header_at(const struct http_request *req, size_t i, const char **name,
                             const char **value);

#endif
