/* http: an HTTP/1.1 server (libmicrohttpd) driven entirely from a libuv loop.
 *
 * libmicrohttpd runs in its "external epoll" mode: its epoll fd is watched with a uv_poll
 * handle and MHD_run() is called from the loop, so every handler runs on the loop thread
 * and may call raft directly. A handler either answers at once (http_respond inside the
 * handler) or returns without answering: the connection is then suspended and resumed when
 * http_respond is called later from any loop callback (apply, barrier, forward). No thread
 * ever blocks on a commit.
 *
 * The server buffers the whole request body (up to max_body; larger bodies are answered 413
 * problem+json by the server itself, the handler never sees them). */
#ifndef CLOUDLESS_HTTP_HTTP_H
#define CLOUDLESS_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct http_server;
struct http_request;

typedef void (*http_handler_fn)(struct http_request *req, void *arg);
/* Called once per request after its response is sent (or the connection died). `status` is
 * 0 when no response was ever queued. */
typedef void (*http_complete_fn)(struct http_request *req, unsigned status, double seconds,
                                 void *arg);

struct http_server_options {
	const char *addr; /* "host:port"; port 0 picks a free port */
	size_t max_body;  /* bytes; larger uploads get 413 */
	http_handler_fn handler;
	http_complete_fn complete; /* optional */
	/* Optional: called once per request as soon as its headers are in, before the body is
	 * read, the handler runs or the server answers by itself (413, 503 while closing), so
	 * headers it adds reach every response. */
	http_handler_fn prepare;
	void *arg; /* passed to handler, complete and prepare */
};

/* Binds and starts serving. On failure returns -1 and writes a one-line reason to err. */
int http_server_init(struct http_server **out, uv_loop_t *loop,
                     const struct http_server_options *opts, char *err, size_t errlen);
/* Answers every still-pending request with 503, stops listening and frees the server. The
 * caller must not touch any http_request afterwards. */
void http_server_close(struct http_server *s);
/* The port actually bound (useful with port 0). */
unsigned http_server_port(const struct http_server *s);
/* Requests whose handler has run but which have not been answered yet. */
unsigned http_server_pending(const struct http_server *s);

/* Request accessors: valid from the handler call until the request completes. */
const char *http_request_method(const struct http_request *req);
/* The path, percent-decoded, without the query string. */
const char *http_request_path(const struct http_request *req);
/* A decoded query parameter; NULL when absent, "" when present without a value. */
const char *http_request_query(const struct http_request *req, const char *name);
/* The query string re-encoded ("a=1&b"), "" when there is none. Owned by the request. */
const char *http_request_query_string(struct http_request *req);
/* Case-insensitive header lookup; NULL when absent. */
const char *http_request_header(const struct http_request *req, const char *name);
const char *http_request_body(const struct http_request *req, size_t *len);
/* Peer address as "ip:port" (for logs). */
const char *http_request_peer(struct http_request *req);

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
 * later from any callback on the loop thread; extra calls are ignored. */
void http_respond(struct http_request *req, unsigned status, const char *content_type,
                  const void *body, size_t len);
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
