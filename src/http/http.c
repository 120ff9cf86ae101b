/* http: the coordinator's HTTP/1.1 server, libmicrohttpd run from the libuv loop (see http.h).
 *
 * How the two event systems meet: MHD is started in "external epoll" mode (no MHD threads).
 * Its epoll fd, which aggregates the listen socket, every connection socket and MHD's
 * inter-thread wakeup fd, is watched by one uv_poll_t; whenever it is readable we call
 * MHD_run(). After every MHD_run() one uv_timer_t is re-armed from MHD_get_timeout() so
 * connection timeouts and data MHD already holds in its buffers are processed even when no
 * socket becomes readable.
 *
 * Request life cycle (MHD 0.9.75 access-handler protocol):
 *   1. first call, *con_cls == NULL: allocate our request, reject an oversized Content-Length;
 *   2. calls with *upload_data_size > 0: append the chunk to the body buffer;
 *   3. call with *upload_data_size == 0: body complete, run the handler once. If it answered,
 *      queue the response right away; otherwise suspend the connection (it is then invisible
 *      to MHD's polling and timeouts) and count it as pending;
 *   4. http_respond() on a suspended request stores the response, resumes the connection and
 *      kicks the loop; MHD then calls the access handler again (step 3) and we queue it;
 *   5. MHD_OPTION_NOTIFY_COMPLETED: report to opts->complete and free the request.
 *
 * Everything here runs on the loop thread; nothing is locked. */
#include "http/http.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "log/log.h"
#include "util/buf.h"

/* How long http_server_close keeps running MHD so answered requests (including the 503s it
 * just produced) reach their clients before the daemon is stopped. */
#define HTTP_CLOSE_FLUSH_MS 1000
/* Upper bound of one MHD_run_wait() inside that flush. */
#define HTTP_CLOSE_STEP_MS 10
/* Each connection's memory pool (request line, headers, read and write buffers). MHD zeroes
 * the whole pool after every request on a kept-alive connection: at MHD's default of 32 KiB
 * that memset was the leader's largest single cost under write load (8% of its CPU). 16 KiB
 * still takes request header blocks up to about 9 KB (larger ones get 431); bodies are read
 * through it in chunks and are not limited by it. */
#define HTTP_CONNECTION_MEMORY (16 * 1024)
/* A chunked upload that overflows max_body is read and thrown away so the client still gets
 * its 413 (MHD 0.9.75 cannot queue a response while a body is being received). Past this
 * many bytes we stop being polite and drop the connection. */
#define HTTP_DISCARD_MIN (1024 * 1024)

struct http_header {
	char *name;
	char *value;
};

struct http_request {
	struct http_server *s;
	struct MHD_Connection *conn;
	char *method;
	char *path;
	char *query_string; /* built on first use */
	char peer[64];      /* "" until first use */
	struct buf body;
	uint64_t start_ns;
	const char *tag;
	void *data;

	/* The response: filled by http_respond, handed to MHD by queue_stored(). */
	struct http_header *headers;
	size_t nheaders;
	char *content_type;
	char *resp_body;
	size_t resp_len;
	unsigned status;
	struct MHD_Response *refused; /* built, but MHD refused it once; see queue_stored() */

	size_t discarded;       /* body bytes thrown away after overflowing max_body */
	unsigned queued_status; /* status actually queued to MHD, 0 if none */
	bool too_large;
	bool handled;   /* handler has been called */
	bool answered;  /* http_respond has been called */
	bool suspended; /* MHD_suspend_connection in effect; on the pending list */
	bool flushing;  /* answered but not yet completed (counted in s->inflight) */

	/* Pending (suspended) list, so close can answer them. */
	struct http_request *prev;
	struct http_request *next;

	/* A synthetic request (s and conn NULL, see http_request_synthetic) keeps what MHD
	 * would otherwise hold: its headers and decoded query arguments (value NULL for a bare
	 * "?flag"), and whom to tell when it is answered. */
	struct http_header *req_headers;
	size_t n_req_headers;
	struct http_header *args;
	size_t n_args;
	http_answered_fn on_answered;
	void *answered_arg;
};

struct http_server {
	uv_loop_t *loop;
	struct MHD_Daemon *daemon;
	uv_poll_t poll;
	uv_timer_t timer;
	int open_handles; /* uv handles not yet closed; the struct is freed when this hits 0 */

	http_handler_fn handler;
	http_complete_fn complete;
	http_handler_fn prepare;
	void *arg;
	size_t max_body;
	unsigned port;

	struct http_request *pending_head;
	unsigned pending;
	unsigned inflight; /* answered, not completed: what close waits for */

	bool in_run;          /* inside MHD_run: MHD must not be re-entered */
	bool kick;            /* run MHD again as soon as possible */
	bool close_requested; /* http_server_close was called from inside MHD_run */
	bool closing;

	/* Last MHD diagnostic, so a failed start can say why (e.g. bind errors). */
	char mhd_msg[256];
};

static void server_arm(struct http_server *s);
static void server_shutdown(struct http_server *s);

/* ---- small helpers ------------------------------------------------------------------ */

static char *xstrdup(const char *str)
{
	char *p = strdup(str);
	if (p == NULL) {
		/* Same policy as buf.c: a coordinator that cannot allocate a header cannot make
		 * progress safely. */
		log_error("http out of memory", "bytes=%zu", strlen(str) + 1);
		abort();
	}
	return p;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL) {
		log_error("http out of memory", "bytes=%zu", n);
		abort();
	}
	return p;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct http_server *s = cls;
	char msg[sizeof s->mhd_msg];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	memcpy(s->mhd_msg, msg, n + 1);
	/* While MHD_start_daemon runs (no daemon yet) the message is only kept: a failed start
	 * reports it once in http_server_init's error, which the caller prints as the one line on
	 * stderr; a start that succeeds logs it afterwards. */
	if (s->daemon == NULL)
		return;
	/* MHD reports client misbehaviour (resets, malformed requests) here too; that is worth
	 * seeing but is not an error of ours. */
	log_warn("http library message", "port=%u msg=\"%s\"", s->port, msg);
}

/* ---- driving MHD from the loop ------------------------------------------------------ */

static void server_run(struct http_server *s)
{
	if (s->in_run || s->closing)
		return;
	s->in_run = true;
	s->kick = false;
	if (MHD_run(s->daemon) != MHD_YES)
		log_error("http MHD_run failed", "port=%u", s->port);
	s->in_run = false;
	if (s->close_requested) {
		server_shutdown(s);
		return;
	}
	server_arm(s);
}

static void on_timer(uv_timer_t *t)
{
	server_run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct http_server *s = p->data;
	(void)events;
	if (status < 0)
		/* Nothing sensible to do but keep running MHD: it sees the real socket errors. */
		log_error("http poll error", "port=%u err=%s", s->port, uv_strerror(status));
	server_run(s);
}

/* Re-arms the timer after MHD_run: MHD's own deadline, or "now" when kicked. */
static void server_arm(struct http_server *s)
{
	MHD_UNSIGNED_LONG_LONG ms = 0;
	if (!s->kick && MHD_get_timeout(s->daemon, &ms) != MHD_YES) {
		/* No timeout pending and nothing buffered: only socket activity matters. */
		uv_timer_stop(&s->timer);
		return;
	}
	if (s->kick)
		ms = 0;
	int rv = uv_timer_start(&s->timer, on_timer, (uint64_t)ms, 0);
	if (rv != 0)
		log_error("http timer start failed", "port=%u err=%s", s->port, uv_strerror(rv));
}

/* Makes sure MHD runs soon (after a resume, which MHD only acts on inside MHD_run). Inside
 * MHD_run only a flag is set: server_run re-arms the timer to 0 when MHD returns. */
static void server_kick(struct http_server *s)
{
	s->kick = true;
	if (s->in_run || s->closing)
		return;
	int rv = uv_timer_start(&s->timer, on_timer, 0, 0);
	if (rv != 0)
		log_error("http timer start failed", "port=%u err=%s", s->port, uv_strerror(rv));
}

/* ---- requests ----------------------------------------------------------------------- */

static struct http_request *request_new(struct http_server *s, struct MHD_Connection *conn,
                                        const char *url, const char *method)
{
	struct http_request *req = calloc(1, sizeof *req);
	if (req == NULL) {
		log_error("http out of memory", "bytes=%zu", sizeof *req);
		abort();
	}
	req->s = s;
	req->conn = conn;
	req->method = xstrdup(method);
	req->path = xstrdup(url);
	req->start_ns = uv_hrtime();
	buf_init(&req->body);
	return req;
}

static void free_pairs(struct http_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	free(h);
}

static void request_free(struct http_request *req)
{
	free_pairs(req->req_headers, req->n_req_headers);
	free_pairs(req->args, req->n_args);
	for (size_t i = 0; i < req->nheaders; i++) {
		free(req->headers[i].name);
		free(req->headers[i].value);
	}
	free(req->headers);
	free(req->content_type);
	free(req->resp_body);
	if (req->refused != NULL)
		MHD_destroy_response(req->refused);
	free(req->query_string);
	free(req->method);
	free(req->path);
	buf_close(&req->body);
	free(req);
}

static void pending_remove(struct http_server *s, struct http_request *req)
{
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		s->pending_head = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
	s->pending--;
}

static void pending_add(struct http_server *s, struct http_request *req)
{
	req->prev = NULL;
	req->next = s->pending_head;
	if (s->pending_head != NULL)
		s->pending_head->prev = req;
	s->pending_head = req;
	s->pending++;
}

/* Answers with an RFC 7807 body. Only fixed ASCII strings and numbers go in, so no JSON
 * escaping is needed. */
static void respond_problem(struct http_request *req, unsigned status, const char *type,
                            const char *title, const char *detail)
{
	char body[512];
	int n = snprintf(body, sizeof body,
	                 "{\"type\":\"https://cloudless.dev/problems/%s\",\"title\":\"%s\","
	                 "\"status\":%u,\"detail\":\"%s\"}",
	                 type, title, status, detail);
	if (n < 0 || (size_t)n >= sizeof body)
		n = snprintf(body, sizeof body, "{\"status\":%u}", status);
	http_respond(req, status, "application/problem+json", body, (size_t)n);
}

static void respond_too_large(struct http_request *req)
{
	char detail[96];
	snprintf(detail, sizeof detail, "request body exceeds %zu bytes", req->s->max_body);
	respond_problem(req, 413, "too-large", "Payload Too Large", detail);
}

/* Hands the stored response to MHD. Only valid inside the access handler. */
static enum MHD_Result queue_stored(struct http_request *req)
{
	struct MHD_Response *resp = req->refused;
	bool retry = resp != NULL;
	req->refused = NULL;
	if (retry) {
		/* built on the refused attempt */
	} else if (req->resp_len > 0) {
		/* MHD takes ownership and free()s the body once sent. */
		resp = MHD_create_response_from_buffer(req->resp_len, req->resp_body,
		                                       MHD_RESPMEM_MUST_FREE);
		if (resp != NULL)
			req->resp_body = NULL;
	} else {
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	if (resp == NULL) {
		log_error("http create response failed", "method=%s path=%s status=%u len=%zu",
		          req->method, req->path, req->status, req->resp_len);
		return MHD_NO;
	}
	if (req->content_type != NULL && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                                                         req->content_type) != MHD_YES)
		log_error("http response header rejected", "method=%s path=%s name=%s", req->method,
		          req->path, MHD_HTTP_HEADER_CONTENT_TYPE);
	for (size_t i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		/* The content_type argument wins over a header set by hand. */
		if (req->content_type != NULL &&
		    strcasecmp(h->name, MHD_HTTP_HEADER_CONTENT_TYPE) == 0)
			continue;
		if (MHD_add_response_header(resp, h->name, h->value) != MHD_YES)
			log_error("http response header rejected", "method=%s path=%s name=%s",
			          req->method, req->path, h->name);
	}
	enum MHD_Result rv = MHD_queue_response(req->conn, req->status, resp);
	if (rv != MHD_YES && !retry) {
		/* MHD 0.9.75 also calls the access handler with *upload_data_size == 0 before the
		 * request is complete (after "100 Continue" for a request without a body when the
		 * next pipelined request is already buffered) and refuses a response in that state.
		 * It calls again once the request is complete: keep the response for that call
		 * (once) rather than drop the connection unanswered. */
		req->refused = resp;
		return MHD_YES;
	}
	/* The connection holds its own reference once queued. */
	MHD_destroy_response(resp);
	if (rv != MHD_YES) {
		log_error("http queue response failed", "method=%s path=%s status=%u", req->method,
		          req->path, req->status);
		return MHD_NO;
	}
	req->queued_status = req->status;
	return MHD_YES;
}

static bool content_length_too_large(struct http_request *req)
{
	const char *cl =
	    MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl == NULL)
		return false;
	/* MHD has already rejected a malformed Content-Length with 400; an overflow means
	 * "huge". */
	errno = 0;
	char *end;
	unsigned long long n = strtoull(cl, &end, 10);
	if (errno == ERANGE)
		return true;
	return n > req->s->max_body;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
	struct http_server *s = cls;
	struct http_request *req = *con_cls;
	(void)version;

	if (req == NULL) {
		req = request_new(s, conn, url, method);
		*con_cls = req;
		if (s->prepare != NULL)
			s->prepare(req, s->arg);
		if (content_length_too_large(req)) {
			/* Answering before the body is read makes MHD skip it (and close the
			 * connection afterwards); with "Expect: 100-continue" the client never
			 * sends it at all. */
			req->too_large = true;
			respond_too_large(req);
			return queue_stored(req);
		}
		return MHD_YES;
	}

	if (*upload_data_size != 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (!req->too_large && n > s->max_body - req->body.len) {
			req->too_large = true;
			req->discarded = req->body.len;
			buf_close(&req->body);
		}
		if (!req->too_large) {
			buf_append(&req->body, upload_data, n);
			return MHD_YES;
		}
		req->discarded += n;
		size_t cap = s->max_body > HTTP_DISCARD_MIN ? s->max_body : HTTP_DISCARD_MIN;
		if (req->discarded - s->max_body > cap) {
			log_warn("http oversized upload dropped",
			         "method=%s path=%s peer=%s bytes=%zu", req->method, req->path,
			         http_request_peer(req), req->discarded);
			return MHD_NO;
		}
		return MHD_YES;
	}

	/* The body is complete (or we were resumed). */
	if (req->queued_status != 0)
		return MHD_YES;
	if (!req->answered) {
		if (req->too_large) {
			respond_too_large(req);
		} else if (s->closing) {
			/* No new work once close has begun: a handler that suspended now would
			 * leave a connection MHD_stop_daemon cannot deal with. */
			respond_problem(req, 503, "unavailable", "Service Unavailable",
			                "server shutting down");
		} else if (!req->handled) {
			req->handled = true;
			s->handler(req, s->arg);
		}
	}
	if (req->answered)
		return queue_stored(req);
	if (!req->suspended) {
		MHD_suspend_connection(conn);
		req->suspended = true;
		pending_add(s, req);
	}
	return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct http_server *s = cls;
	struct http_request *req = *con_cls;
	(void)conn;
	if (req == NULL)
		return;
	*con_cls = NULL;
	if (req->suspended) {
		/* Cannot happen (MHD never completes a suspended connection); keep the
		 * bookkeeping right anyway rather than leave a dangling list entry. */
		log_error("http suspended request completed", "method=%s path=%s toe=%d",
		          req->method, req->path, (int)toe);
		pending_remove(s, req);
	}
	if (req->flushing)
		s->inflight--;
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		log_debug("http request terminated", "method=%s path=%s status=%u toe=%d",
		          req->method, req->path, req->queued_status, (int)toe);
	if (s->complete != NULL) {
		double secs = (double)(uv_hrtime() - req->start_ns) / 1e9;
		s->complete(req, req->queued_status, secs, s->arg);
	}
	request_free(req);
}

/* MHD's own unescaping turns "%00" into a NUL byte, and the path reaches us as a C string:
 * "PUT /v1/kv/a%00b" would silently write key "a" (a query value would be cut short the same
 * way). Decode "%00" instead as C0 80, an overlong encoding that is never valid UTF-8, so key
 * and prefix validation refuse it with 400. Everything else decodes as in MHD_http_unescape
 * (a '%' not followed by two hex digits stays as it is). */
static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static size_t unescape_no_nul(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	char *w = s;
	for (const char *r = s; *r != '\0';) {
		int hi = r[0] == '%' ? hex_value(r[1]) : -1;
		int lo = hi >= 0 ? hex_value(r[2]) : -1;
		if (lo < 0) {
			*w++ = *r++;
			continue;
		}
		unsigned char c = (unsigned char)(hi << 4 | lo);
		if (c == 0) {
			/* Fits: three input bytes become two. */
			*w++ = (char)0xC0;
			*w++ = (char)0x80;
		} else {
			*w++ = (char)c;
		}
		r += 3;
	}
	*w = '\0';
	return (size_t)(w - s);
}

/* ---- server life cycle -------------------------------------------------------------- */

/* Splits "host:port" / "[v6]:port" / ":port" and resolves it for bind(). */
static int parse_addr(const char *addr, struct addrinfo **out, char *err, size_t errlen)
{
	const char *colon = strrchr(addr, ':');
	if (colon == NULL) {
		snprintf(err, errlen, "listen address \"%s\" is not host:port", addr);
		return -1;
	}
	char host[256];
	size_t hlen = (size_t)(colon - addr);
	const char *h = addr;
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen >= sizeof host) {
		snprintf(err, errlen, "listen address \"%s\" has a host name too long", addr);
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';

	const char *port = colon + 1;
	char *end;
	errno = 0;
	unsigned long p = strtoul(port, &end, 10);
	if (port[0] == '\0' || port[0] == '-' || port[0] == '+' || *end != '\0' || errno != 0 ||
	    p > 65535) {
		snprintf(err, errlen, "listen address \"%s\" has a bad port", addr);
		return -1;
	}

	struct addrinfo hints = {0};
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rv = getaddrinfo(hlen ? host : NULL, port, &hints, out);
	if (rv != 0) {
		snprintf(err, errlen, "cannot resolve listen address \"%s\": %s", addr,
		         gai_strerror(rv));
		return -1;
	}
	return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct http_server *s = h->data;
	if (--s->open_handles == 0)
		free(s);
}

int http_server_init(struct http_server **out, uv_loop_t *loop,
                     const struct http_server_options *opts, char *err, size_t errlen)
{
	*out = NULL;
	if (opts->handler == NULL || opts->addr == NULL) {
		snprintf(err, errlen, "http server needs an address and a handler");
		return -1;
	}
	struct addrinfo *ai;
	if (parse_addr(opts->addr, &ai, err, errlen) != 0)
		return -1;

	struct http_server *s = calloc(1, sizeof *s);
	if (s == NULL) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->loop = loop;
	s->handler = opts->handler;
	s->complete = opts->complete;
	s->prepare = opts->prepare;
	s->arg = opts->arg;
	s->max_body = opts->max_body;

	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6; /* MHD picks the socket family from the flags */
	uint16_t port = 0;
	if (ai->ai_family == AF_INET)
		port = ntohs(((struct sockaddr_in *)ai->ai_addr)->sin_port);
	else if (ai->ai_family == AF_INET6)
		port = ntohs(((struct sockaddr_in6 *)ai->ai_addr)->sin6_port);
	/* The logger goes first: MHD only routes messages about later options through it. */
	s->daemon = MHD_start_daemon(
	    flags, port, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
	    MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)10000,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)HTTP_CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	    MHD_OPTION_UNESCAPE_CALLBACK, unescape_no_nul, NULL, MHD_OPTION_END);
	freeaddrinfo(ai);
	if (s->daemon == NULL) {
		snprintf(err, errlen, "cannot start http server on %s: %s", opts->addr,
		         s->mhd_msg[0] ? s->mhd_msg : "libmicrohttpd refused to start");
		free(s);
		return -1;
	}

	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
	s->port = info != NULL ? info->port : port;
	if (s->mhd_msg[0] != '\0')
		log_warn("http library message", "port=%u msg=\"%s\"", s->port, s->mhd_msg);
	info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	int efd = info != NULL ? info->epoll_fd : -1;
	if (efd < 0) {
		snprintf(err, errlen, "http server on %s: no epoll fd from libmicrohttpd",
		         opts->addr);
		MHD_stop_daemon(s->daemon);
		free(s);
		return -1;
	}

	/* uv_poll_init leaves nothing registered when it fails, so a plain free is enough. */
	int rv = uv_poll_init(loop, &s->poll, efd);
	if (rv != 0) {
		snprintf(err, errlen, "http server on %s: uv_poll_init: %s", opts->addr,
		         uv_strerror(rv));
		MHD_stop_daemon(s->daemon);
		free(s);
		return -1;
	}
	s->poll.data = s;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	s->open_handles = 2;

	rv = uv_poll_start(&s->poll, UV_READABLE, on_poll);
	if (rv != 0) {
		snprintf(err, errlen, "http server on %s: uv_poll_start: %s", opts->addr,
		         uv_strerror(rv));
		s->closing = true;
		MHD_stop_daemon(s->daemon);
		/* Freed by on_handle_closed once the loop runs. */
		uv_close((uv_handle_t *)&s->poll, on_handle_closed);
		uv_close((uv_handle_t *)&s->timer, on_handle_closed);
		return -1;
	}
	/* MHD may already want to run (it has a deadline for the first accept). */
	server_arm(s);
	log_info("http server listening", "addr=%s port=%u", opts->addr, s->port);
	*out = s;
	return 0;
}

static void server_shutdown(struct http_server *s)
{
	s->closing = true;
	s->close_requested = false;
	/* The poll must go before MHD closes its epoll fd; the run below needs neither. */
	uv_close((uv_handle_t *)&s->poll, on_handle_closed);
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, on_handle_closed);

	/* Stop accepting; the caller of MHD_quiesce_daemon owns the returned socket. */
	MHD_socket lfd = MHD_quiesce_daemon(s->daemon);

	unsigned answered = s->pending;
	while (s->pending_head != NULL)
		respond_problem(s->pending_head, 503, "unavailable", "Service Unavailable",
		                "server shutting down");

	/* Let MHD send what is queued, resumed or still being written, bounded so a slow
	 * client cannot hold up shutdown. MHD_stop_daemon asserts if any connection is still
	 * suspended; none is: every pending one was just resumed and nothing new can suspend
	 * (the access handler answers 503 itself while closing). */
	s->in_run = true;
	uint64_t deadline = uv_hrtime() + (uint64_t)HTTP_CLOSE_FLUSH_MS * 1000000u;
	while (s->inflight > 0 && uv_hrtime() < deadline)
		if (MHD_run_wait(s->daemon, HTTP_CLOSE_STEP_MS) != MHD_YES) {
			log_error("http MHD_run_wait failed", "port=%u", s->port);
			break;
		}
	if (s->inflight > 0)
		log_warn("http responses cut off by shutdown", "port=%u count=%u", s->port,
		         s->inflight);
	MHD_stop_daemon(s->daemon);
	s->daemon = NULL;
	s->in_run = false;
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	log_info("http server stopped", "port=%u answered_pending=%u", s->port, answered);
}

void http_server_close(struct http_server *s)
{
	if (s == NULL || s->closing)
		return;
	if (s->in_run) {
		/* Called from a handler or complete callback: MHD cannot be stopped from inside
		 * MHD_run, so finish once it returns. */
		s->close_requested = true;
		return;
	}
	server_shutdown(s);
}

unsigned http_server_port(const struct http_server *s)
{
	return s->port;
}

unsigned http_server_pending(const struct http_server *s)
{
	return s->pending;
}

/* ---- request accessors -------------------------------------------------------------- */

const char *http_request_method(const struct http_request *req)
{
	return req->method;
}

const char *http_request_path(const struct http_request *req)
{
	return req->path;
}

const char *http_request_query(const struct http_request *req, const char *name)
{
	const char *value = NULL;
	if (req->conn == NULL) {
		for (size_t i = 0; i < req->n_args; i++)
			if (strcmp(req->args[i].name, name) == 0)
				return req->args[i].value != NULL ? req->args[i].value : "";
		return NULL;
	}
	/* The _n variant tells "?flag" (present, NULL value) apart from absent. */
	if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name),
	                                  &value, NULL) != MHD_YES)
		return NULL;
	return value != NULL ? value : "";
}

static void percent_encode(struct buf *b, const char *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			buf_put_u8(b, c);
		} else {
			char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
			buf_append(b, esc, sizeof esc);
		}
	}
}

static enum MHD_Result add_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size)
{
	struct buf *b = cls;
	(void)kind;
	if (b->len > 0)
		buf_put_u8(b, '&');
	percent_encode(b, key, key_size);
	if (value != NULL) {
		buf_put_u8(b, '=');
		percent_encode(b, value, value_size);
	}
	return MHD_YES;
}

const char *http_request_query_string(struct http_request *req)
{
	if (req->query_string == NULL) {
		struct buf b;
		buf_init(&b);
		if (req->conn == NULL)
			for (size_t i = 0; i < req->n_args; i++)
				add_query_arg(&b, MHD_GET_ARGUMENT_KIND, req->args[i].name,
				              strlen(req->args[i].name), req->args[i].value,
				              req->args[i].value ? strlen(req->args[i].value) : 0);
		else
			MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, add_query_arg,
			                            &b);
		req->query_string = b.len > 0 ? buf_detach(&b, NULL) : xstrdup("");
		buf_close(&b);
	}
	return req->query_string;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	if (req->conn == NULL) {
		for (size_t i = 0; i < req->n_req_headers; i++)
			if (strcasecmp(req->req_headers[i].name, name) == 0)
				return req->req_headers[i].value;
		return NULL;
	}
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_request_body(const struct http_request *req, size_t *len)
{
	if (len != NULL)
		*len = req->body.len;
	/* buf keeps its data NUL-terminated, so text bodies can be used as strings. */
	return req->body.data != NULL ? req->body.data : "";
}

const char *http_request_peer(struct http_request *req)
{
	if (req->peer[0] != '\0')
		return req->peer;
	if (req->conn == NULL) {
		snprintf(req->peer, sizeof req->peer, "synthetic");
		return req->peer;
	}
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
	char host[INET6_ADDRSTRLEN], serv[8];
	socklen_t salen = 0;
	if (sa != NULL && sa->sa_family == AF_INET)
		salen = sizeof(struct sockaddr_in);
	else if (sa != NULL && sa->sa_family == AF_INET6)
		salen = sizeof(struct sockaddr_in6);
	if (salen == 0 || getnameinfo(sa, salen, host, sizeof host, serv, sizeof serv,
	                              NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(req->peer, sizeof req->peer, "unknown");
		return req->peer;
	}
	if (sa->sa_family == AF_INET6)
		snprintf(req->peer, sizeof req->peer, "[%s]:%s", host, serv);
	else
		snprintf(req->peer, sizeof req->peer, "%s:%s", host, serv);
	return req->peer;
}

void http_request_set_tag(struct http_request *req, const char *tag)
{
	req->tag = tag;
}

const char *http_request_tag(const struct http_request *req)
{
	return req->tag;
}

void http_request_set_data(struct http_request *req, void *data)
{
	req->data = data;
}

void *http_request_data(const struct http_request *req)
{
	return req->data;
}

/* ---- responses ---------------------------------------------------------------------- */

void http_response_header(struct http_request *req, const char *name, const char *value)
{
	if (req->answered) {
		log_warn("http header after respond ignored", "method=%s path=%s name=%s",
		         req->method, req->path, name);
		return;
	}
	/* Replace rather than repeat: the api sets its common headers when a request arrives
	 * and again, with fresher values, when it answers (or relays the leader's). */
	for (size_t i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, name) == 0) {
			char *v = xstrdup(value);
			free(req->headers[i].value);
			req->headers[i].value = v;
			return;
		}
	}
	struct http_header *h = realloc(req->headers, (req->nheaders + 1) * sizeof *h);
	if (h == NULL) {
		log_error("http out of memory", "bytes=%zu", (req->nheaders + 1) * sizeof *h);
		abort();
	}
	req->headers = h;
	h[req->nheaders].name = xstrdup(name);
	h[req->nheaders].value = xstrdup(value);
	req->nheaders++;
}

void http_respond(struct http_request *req, unsigned status, const char *content_type,
                  const void *body, size_t len)
{
	struct http_server *s = req->s;
	if (req->answered) {
		log_warn("http duplicate respond ignored", "method=%s path=%s status=%u first=%u",
		         req->method, req->path, status, req->status);
		return;
	}
	req->answered = true;
	req->status = status;
	req->content_type = content_type != NULL ? xstrdup(content_type) : NULL;
	if (len > 0) {
		req->resp_body = xmalloc(len);
		memcpy(req->resp_body, body, len);
	}
	req->resp_len = len;
	if (s == NULL) {
		req->on_answered(req, req->answered_arg);
		return;
	}
	req->flushing = true;
	s->inflight++;
	if (req->suspended) {
		/* Queued when MHD calls the access handler again after the resume. */
		req->suspended = false;
		pending_remove(s, req);
		MHD_resume_connection(req->conn);
		server_kick(s);
	}
}

bool http_request_answered(const struct http_request *req)
{
	return req->answered;
}

/* ---- synthetic requests ------------------------------------------------------------- */

static char *dup_n(const char *p, size_t n)
{
	char *s = xmalloc(n + 1);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* One query component, decoded as MHD decodes GET arguments ('+' is a space, then percent
 * escapes, "%00" as in unescape_no_nul). */
static char *decode_component(const char *p, size_t n)
{
	char *s = dup_n(p, n);
	for (char *c = s; *c != '\0'; c++)
		if (*c == '+')
			*c = ' ';
	unescape_no_nul(NULL, NULL, s);
	return s;
}

static void parse_query(struct http_request *req, const char *q, size_t len)
{
	const char *end = q + len;
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *stop = amp != NULL ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(stop - q));
		if (stop > q) {
			struct http_header *a = realloc(req->args, (req->n_args + 1) * sizeof *a);
			if (a == NULL)
				abort();
			req->args = a;
			a[req->n_args].name = decode_component(q, (size_t)((eq ? eq : stop) - q));
			a[req->n_args].value =
			    eq != NULL ? decode_component(eq + 1, (size_t)(stop - eq - 1)) : NULL;
			req->n_args++;
		}
		q = stop + 1;
	}
}

struct http_request *http_request_synthetic(const struct http_synthetic *in,
                                            http_answered_fn on_answered, void *arg)
{
	struct http_request *req = calloc(1, sizeof *req);
	if (req == NULL)
		abort();
	req->method = dup_n(in->method, in->method_len);
	req->path = dup_n(in->path, in->path_len);
	req->start_ns = uv_hrtime();
	buf_init(&req->body);
	buf_append(&req->body, in->body, in->body_len);
	parse_query(req, in->query, in->query_len);
	if (in->n_headers > 0) {
		req->req_headers = xmalloc(in->n_headers * sizeof *req->req_headers);
		for (size_t i = 0; i < in->n_headers; i++) {
			req->req_headers[i].name =
			    dup_n(in->headers[i].name, in->headers[i].name_len);
			req->req_headers[i].value =
			    dup_n(in->headers[i].value, in->headers[i].value_len);
		}
		req->n_req_headers = in->n_headers;
	}
	req->on_answered = on_answered;
	req->answered_arg = arg;
	return req;
}

void http_request_synthetic_free(struct http_request *req)
{
	if (req != NULL && req->conn == NULL)
		request_free(req);
}

unsigned http_response_status(const struct http_request *req)
{
	return req->status;
}

const char *http_response_content_type(const struct http_request *req)
{
	return req->content_type;
}

const char *http_response_body(const struct http_request *req, size_t *len)
{
	*len = req->resp_len;
	return req->resp_body != NULL ? req->resp_body : "";
}

size_t http_response_header_count(const struct http_request *req)
{
	return req->nheaders;
}

void http_response_header_at(const struct http_request *req, size_t i, const char **name,
                             const char **value)
{
	*name = req->headers[i].name;
	*value = req->headers[i].value;
}
