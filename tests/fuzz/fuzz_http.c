/* fuzz_http: raw bytes from a TCP client into the coordinator's HTTP server.
 *
 * A real http_server (its socket thread, and handlers on a uv loop exactly as in the
 * coordinator) listens on 127.0.0.1 for the whole process. Each input is written as-is
 * over a fresh loopback connection; the loop runs until the server closes the connection or,
 * with everything sent, read by the server and nothing left to answer, the exchange has been
 * quiet for a few milliseconds; then the client resets the connection (no TIME_WAIT entries
 * piling up at thousands of connections a second). An input containing "reset"
 * resets the connection as soon as a request is waiting for its deferred answer, so the
 * answer goes to a dead connection. The handler is a stand-in for api/router.c that walks the
 * same validation path without a raft node: method checks with 405 + Allow, key validation
 * (kv_routes.c check_key), query parsing through http_request_query and
 * http_request_query_string (consistency, cas, timeout, prefix, limit, continue), the
 * Idempotency-Key header, and the real body decoders of the membership routes. PUTs, joins
 * and "?async" requests are answered from a later loop callback, so the suspend/resume path
 * runs too.
 *
 * Properties: no crash or leak; no request left unanswered for seconds; no descriptors piling
 * up; the handler sees exactly Content-Length body bytes; an answered request's response
 * reaches the client unless the client left first; the bytes received parse as a sequence of
 * whole HTTP/1.1 responses and nothing else (one status line, exactly one Content-Length, a
 * body of that length; no doubled head, no HTML page, no trailing bytes), each carrying the
 * X-Cloudless-* header, in request order with the status the server reports; every error is
 * problem+json; and every JSON response is well formed, a problem+json body being an object
 * with the numeric status of its status line. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "api/decode.h"
#include "fsm/command.h"
#include "fuzz_common.h"
#include "http/http.h"
#include "http/problem.h"
#include "log/log.h"
#include "util/buf.h"
#include "util/text.h"

#define MAX_BODY    1024 /* small, so fuzz inputs reach the 413 paths */
#define DEADLINE_MS 5000 /* a request still unanswered after this is a hang */
#define MAX_DONE    64
#define QUIET_NS    (3 * 1000 * 1000) /* see the top of the file */

static bool method_is(struct http_request *req, const char *m)
{
	return strcmp(http_request_method(req), m) == 0;
}
static uv_loop_t loop;
static struct http_server *srv;

/* What the server did with the current input's requests, in completion order (which is the
 * order of the responses on the connection). */
static struct {
	unsigned status;
	bool head;
} done[MAX_DONE];
static unsigned ndone;
static bool client_gone;   /* the client reset the connection */
static char cur_peer[64];  /* the client's address as http_request_peer prints it */
static unsigned ndeferred; /* answers scheduled on a timer, not yet sent */
static uint64_t activity;  /* uv_hrtime of the last thing that happened on the connection */

/* ---- server side: a router-like handler ------------------------------------------------ */

struct deferred {
	uv_timer_t timer;
	struct http_request *req;
	unsigned status;
	json_t *body;
};

static void deferred_closed(uv_handle_t *h)
{
	free(h->data);
}

static void deferred_fire(uv_timer_t *t)
{
	struct deferred *d = t->data;
	http_respond_json(d->req, d->status, d->body);
	ndeferred--;
	activity = uv_hrtime();
	uv_close((uv_handle_t *)t, deferred_closed);
}

/* Answers from a later loop iteration: the server suspends the connection meanwhile. */
static void respond_later(struct http_request *req, unsigned status, json_t *body)
{
	struct deferred *d = calloc(1, sizeof *d);
	FUZZ_ASSERT(d != NULL, "calloc");
	d->req = req;
	d->status = status;
	d->body = body;
	ndeferred++;
	uv_timer_init(&loop, &d->timer);
	d->timer.data = d;
	/* With "reset" the client drops the connection meanwhile (see the top of the file). */
	uv_timer_start(&d->timer, deferred_fire, http_request_query(req, "reset") ? 2 : 0, 0);
}

/* router.c api_request_deadline(). */
static bool check_timeout(struct http_request *req)
{
	unsigned ms;
	const char *t = http_request_query(req, "timeout");
	if (t != NULL && text_parse_duration_ms(t, &ms) != 0) {
		http_problem(req, 400, "bad-parameter",
		             "timeout must be a duration such as 500ms, 2s or 1m (max 1h)");
		return false;
	}
	return true;
}

static void route_kv(struct http_request *req, const char *key)
{
	uint64_t cas;
	if (!api_check_key(req, key))
		return;
	if (method_is(req, "PUT") || method_is(req, "DELETE")) {
		bool has_cas;
		if (!api_check_write_params(req, &has_cas, &cas))
			return;
		if (!check_timeout(req))
			return;
		size_t len;
		const char *body = http_request_body(req, &len);
		struct buf b64;
		buf_init(&b64);
		text_base64_encode(body, len, &b64);
		json_t *o =
		    json_pack("{s:s, s:s%, s:b}", "key", key, "value_b64", b64.data ? b64.data : "",
		              b64.len, "put", method_is(req, "PUT"));
		buf_close(&b64);
		http_response_header(req, "X-Cloudless-Index", "1");
		respond_later(req, 200, o);
		return;
	}
	const char *c = http_request_query(req, "consistency");
	if (c != NULL && strcmp(c, "stale") != 0 && strcmp(c, "linearizable") != 0 &&
	    strcmp(c, "consistent") != 0) {
		http_problem(req, 400, "bad-parameter",
		             "consistency must be \"linearizable\" (default) or \"stale\"");
		return;
	}
	if (!check_timeout(req))
		return;
	if (http_request_query(req, "json") != NULL)
		http_respond_json(req, 200, json_pack("{s:s}", "key", key));
	else
		http_respond(req, 200, "application/octet-stream", key, strlen(key));
}

/* kv_routes.c parse_list(). */
static void route_list(struct http_request *req)
{
	const char *limit = http_request_query(req, "limit");
	const char *cont = http_request_query(req, "continue");
	const char *prefix = http_request_query(req, "prefix");
	uint64_t n = 100;
	struct buf start;
	if (prefix == NULL)
		prefix = "";
	if (strlen(prefix) > COMMAND_MAX_KEY || !text_valid_utf8(prefix, strlen(prefix))) {
		http_problem(req, 400, "bad-parameter",
		             "prefix must be valid UTF-8 of at most %d bytes", COMMAND_MAX_KEY);
		return;
	}
	if (limit != NULL && (text_parse_u64(limit, &n) != 0 || n == 0 || n > 1000)) {
		http_problem(req, 400, "bad-parameter", "limit must be an integer from 1 to %d",
		             1000);
		return;
	}
	buf_init(&start);
	if (cont != NULL && api_decode_continue(cont, prefix, &start) != 0) {
		buf_close(&start);
		http_problem(req, 400, "bad-parameter", "continue is not a token this API issued");
		return;
	}
	json_t *o = json_pack("{s:[], s:n, s:s, s:I}", "items", "continue", "prefix", prefix,
	                      "start_len", (json_int_t)start.len);
	buf_close(&start);
	http_respond_json(req, 200, o);
}

static void route_change(struct http_request *req, int kind)
{
	char err[256];
	size_t len;
	const char *body = http_request_body(req, &len);
	struct node_change c;
	unsigned status = kind == NODE_CHANGE_JOIN
	                      ? api_decode_join(body, len, &c, err, sizeof err)
	                      : api_decode_node_id(body, len, kind, &c, err, sizeof err);
	if (status != 200) {
		http_problem(req, status, "bad-request", "%s", err);
		return;
	}
	if (!check_timeout(req))
		return;
	respond_later(req, 200,
	              json_pack("{s:b, s:s, s:s, s:s}", "success", 1, "node_id", c.node_id,
	                        "raft_addr", c.raft_addr, "http_addr", c.http_addr));
}

static void handle(struct http_request *req, void *arg)
{
	const char *path = http_request_path(req);
	(void)arg;
	activity = uv_hrtime();
	(void)http_request_query_string(req);
	(void)http_request_peer(req);
	/* The handler sees the whole body: exactly Content-Length bytes. */
	const char *cl = http_request_header(req, "Content-Length");
	uint64_t want;
	size_t got;
	http_request_body(req, &got);
	if (cl != NULL && http_request_header(req, "Transfer-Encoding") == NULL &&
	    text_parse_u64(cl, &want) == 0)
		FUZZ_ASSERT(got == want, "body of %zu bytes, Content-Length %s", got, cl);
	if (strcmp(path, "/metrics") == 0 || strcmp(path, "/raft/health") == 0 ||
	    strcmp(path, "/raft/status") == 0) {
		http_request_set_tag(req, "/raft/status");
		if (!api_allow_method(req, "GET"))
			return;
		json_t *o = json_pack("{s:s, s:s}", "status", "ok", "query",
		                      http_request_query_string(req));
		if (http_request_query(req, "async") != NULL)
			respond_later(req, 200, o);
		else
			http_respond_json(req, 200, o);
	} else if (strcmp(path, "/raft/join") == 0) {
		if (api_allow_method(req, "POST"))
			route_change(req, NODE_CHANGE_JOIN);
	} else if (strcmp(path, "/raft/remove") == 0) {
		if (api_allow_method(req, "POST"))
			route_change(req, NODE_CHANGE_REMOVE);
	} else if (strcmp(path, "/raft/transfer-leader") == 0) {
		if (api_allow_method(req, "POST"))
			route_change(req, NODE_CHANGE_TRANSFER);
	} else if (strcmp(path, "/v1/kv/") == 0 || strcmp(path, "/v1/kv") == 0) {
		if (api_allow_method(req, "GET"))
			route_list(req);
	} else if (strncmp(path, "/v1/kv/", 7) == 0) {
		if (api_allow_method(req, "GET, PUT, DELETE"))
			route_kv(req, path + 7);
	} else {
		http_request_set_tag(req, "other");
		http_problem(req, 404, "not-found", "no route for %s %s", http_request_method(req),
		             path);
	}
	activity = uv_hrtime(); /* the handler itself may be slow (first getnameinfo) */
}

static void prepare(struct http_request *req, void *arg)
{
	(void)arg;
	/* Like api_prepare: a header on every response, set before anything else runs. */
	http_response_header(req, "X-Cloudless-Served-By", "fuzz");
}

static void complete(struct http_request *req, unsigned status, double seconds, void *arg)
{
	(void)arg;
	FUZZ_ASSERT(seconds >= 0 && seconds < 60, "request took %f s", seconds);
	activity = uv_hrtime();
	/* Only this input's connection: one reset earlier may complete late. */
	if (strcmp(http_request_peer(req), cur_peer) != 0)
		return;
	/* An answer must reach the client unless the client went away first. */
	FUZZ_ASSERT(status != 0 || !http_request_answered(req) || client_gone,
	            "%s %s was answered but the connection ended without the response",
	            http_request_method(req), http_request_path(req));
	if (status == 0 || ndone == MAX_DONE)
		return;
	done[ndone].status = status;
	done[ndone].head = method_is(req, "HEAD");
	ndone++;
}

static void teardown(void)
{
	http_server_close(srv);
	uv_run(&loop, UV_RUN_DEFAULT);
	FUZZ_ASSERT(uv_loop_close(&loop) == 0, "handles left open on the loop");
}

static void setup(void)
{
	char err[256];
	fuzz_log_setup();
	uv_loop_init(&loop);
	struct http_server_options o = {.addr = "127.0.0.1:0",
	                                .max_body = MAX_BODY,
	                                .handler = handle,
	                                .complete = complete,
	                                .prepare = prepare};
	if (http_server_init(&srv, &loop, &o, err, sizeof err) != 0) {
		fprintf(stderr, "http_server_init: %s\n", err);
		abort();
	}
	/* What the server thread's own answers carry, as api_publish_headers publishes it. */
	static const char *const pub[] = {"X-Cloudless-Served-By", "fuzz"};
	http_server_set_headers(srv, pub, 1);
	atexit(teardown);
}

/* ---- client side -------------------------------------------------------------------- */

struct client {
	int fd;
	struct sockaddr_in local; /* our end, to find the server's end of the connection */
	int server_fd;            /* the server's end once accepted, else -1 */
	uv_poll_t poll;
	const uint8_t *out;
	size_t out_left;
	bool sent; /* every input byte written */
	bool eof;  /* server closed (or reset) the connection */
	struct buf in;
};

static void on_client(uv_poll_t *p, int status, int events)
{
	struct client *c = p->data;
	if (status < 0) {
		c->eof = true;
		return;
	}
	if ((events & UV_WRITABLE) && !c->sent) {
		while (c->out_left > 0) {
			ssize_t n = send(c->fd, c->out, c->out_left, MSG_NOSIGNAL);
			if (n < 0)
				break;
			c->out += n;
			c->out_left -= (size_t)n;
			activity = uv_hrtime();
		}
		if (c->out_left == 0 || (errno != EAGAIN && errno != EINTR)) {
			c->sent = true;
			uv_poll_start(&c->poll, UV_READABLE, on_client);
		}
	}
	if (events & UV_READABLE) {
		char chunk[16384];
		for (;;) {
			ssize_t n = recv(c->fd, chunk, sizeof chunk, 0);
			if (n > 0) {
				activity = uv_hrtime();
				buf_append(&c->in, chunk, (size_t)n);
				continue;
			}
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				c->eof = true;
			break;
		}
	}
}

/* Reset rather than close: the server drops its end at once and neither side keeps a
 * TIME_WAIT entry (at thousands of connections a second they would exhaust the ports). */
static void client_reset(struct client *c)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(c->fd);
	client_gone = true;
	activity = uv_hrtime();
}

/* Bytes of the input the server has not read yet, or -1 when it has not accepted the
 * connection. Server and client share the process, so the server's socket is found among our
 * descriptors by its peer address (our local one). */
static int server_unread(struct client *c)
{
	struct sockaddr_in peer;
	socklen_t len = sizeof peer;
	if (c->server_fd >= 0 && (getpeername(c->server_fd, (struct sockaddr *)&peer, &len) != 0 ||
	                          memcmp(&peer, &c->local, sizeof peer) != 0))
		c->server_fd = -1; /* closed by the server (maybe reused) */
	if (c->server_fd < 0) {
		DIR *d = opendir("/proc/self/fd");
		struct dirent *e;
		while (d != NULL && c->server_fd < 0 && (e = readdir(d)) != NULL) {
			int fd = atoi(e->d_name);
			len = sizeof peer;
			if (fd > 2 && fd != c->fd &&
			    getpeername(fd, (struct sockaddr *)&peer, &len) == 0 &&
			    len == sizeof peer && memcmp(&peer, &c->local, sizeof peer) == 0)
				c->server_fd = fd;
		}
		if (d != NULL)
			closedir(d);
		if (c->server_fd < 0)
			return -1;
	}
	int n = 0;
	if (ioctl(c->server_fd, FIONREAD, &n) != 0)
		return -1;
	return n;
}

static void on_tick(uv_timer_t *t)
{
	(void)t; /* only wakes the loop so the quiet period is noticed */
}

/* ---- response checks ---------------------------------------------------------------- */

static const char *find_header(const char *head, size_t len, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = head, *end = head + len;
	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (v < eol && *v == ' ')
				v++;
			*vlen = (size_t)(eol - v);
			return v;
		}
		p = eol + 2;
	}
	return NULL;
}

static void check_json_body(unsigned status, bool problem, const char *body, size_t len)
{
	json_error_t jerr;
	json_t *v = json_loadb(body, len, 0, &jerr);
	FUZZ_ASSERT(v != NULL, "status %u: response body is not JSON (%s): %.*s", status, jerr.text,
	            (int)(len > 300 ? 300 : len), body);
	if (problem) {
		json_t *st = json_object_get(v, "status");
		FUZZ_ASSERT(json_is_object(v) && json_is_integer(st) &&
		                json_integer_value(st) == (json_int_t)status &&
		                json_is_string(json_object_get(v, "type")) &&
		                json_is_string(json_object_get(v, "title")) &&
		                json_is_string(json_object_get(v, "detail")),
		            "status %u: not a problem document: %.*s", status,
		            (int)(len > 300 ? 300 : len), body);
	}
	json_decref(v);
}

static unsigned header_count(const char *head, size_t len, const char *name)
{
	unsigned n = 0;
	size_t vl;
	const char *p = head, *end = head + len, *v;
	while (p < end && (v = find_header(p, (size_t)(end - p), name, &vl)) != NULL) {
		n++;
		p = v + vl;
	}
	return n;
}

/* Walks the responses on the connection: every byte must belong to one whole response, each
 * matched in order with a request the server completed. `complete` when the client stayed to
 * the end (nothing may be cut off then). */
static void check_responses(const char *p, size_t len, bool whole)
{
	size_t pos = 0;
	unsigned idx = 0;
	while (pos < len) {
		const char *hend = memmem(p + pos, len - pos, "\r\n\r\n", 4);
		FUZZ_ASSERT(hend != NULL || !whole, "%zu bytes that are not a response head: %.*s",
		            len - pos, (int)(len - pos > 120 ? 120 : len - pos), p + pos);
		if (hend == NULL)
			break;
		size_t hlen = (size_t)(hend - (p + pos));
		const char *h = p + pos;
		unsigned status = 0;
		FUZZ_ASSERT(hlen >= 12 && memcmp(h, "HTTP/1.1 ", 9) == 0 &&
		                sscanf(h + 9, "%3u", &status) == 1 && h[12] == ' ',
		            "bad status line: %.*s", (int)(hlen > 80 ? 80 : hlen), h);
		pos += hlen + 4;
		if (status < 200)
			continue; /* 100 Continue */
		FUZZ_ASSERT(header_count(h, hlen, "Content-Length") == 1 &&
		                header_count(h, hlen, "Transfer-Encoding") == 0,
		            "status %u: not exactly one Content-Length: %.*s", status,
		            (int)(hlen > 300 ? 300 : hlen), h);
		FUZZ_ASSERT(header_count(h, hlen, "X-Cloudless-Served-By") == 1,
		            "status %u without X-Cloudless-Served-By: %.*s", status,
		            (int)(hlen > 300 ? 300 : hlen), h);
		size_t vl = 0, bl = 0;
		const char *ct = find_header(h, hlen, "Content-Type", &vl);
		bool json =
		    ct != NULL && ((vl == 16 && memcmp(ct, "application/json", 16) == 0) ||
		                   (vl == 24 && memcmp(ct, "application/problem+json", 24) == 0));
		bool problem = json && vl == 24;
		FUZZ_ASSERT(status < 400 || problem, "error %u is not problem+json: %.*s", status,
		            (int)(hlen > 300 ? 300 : hlen), h);
		const char *cl = find_header(h, hlen, "Content-Length", &vl);
		if (cl != NULL)
			bl = strtoul(cl, NULL, 10);
		bool head = false;
		/* (A completion may trail its last byte; past MAX_DONE none are kept.) */
		if (idx < ndone) {
			FUZZ_ASSERT(done[idx].status == status,
			            "response %u has status %u, server says %u", idx, status,
			            done[idx].status);
			head = done[idx].head;
		}
		idx++;
		if (head || status == 204 || status == 304)
			bl = 0;
		FUZZ_ASSERT(bl <= len - pos || !whole, "status %u: body cut off (%zu of %zu bytes)",
		            status, len - pos, bl);
		if (bl > len - pos)
			break; /* cut off */
		if (json && !head)
			check_json_body(status, problem, p + pos, bl);
		pos += bl;
	}
}

/* Server-side connections must not pile up: the process's open descriptors stay bounded. */
static void check_fds(void)
{
	static unsigned runs;
	if (++runs % 512 != 0)
		return;
	unsigned n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	FUZZ_ASSERT(n < 256, "%u open descriptors: connections are leaking", n);
}

/* libFuzzer's timeout check is a periodic SIGALRM, which can interrupt a blocking connect.
 * The handshake then goes on by itself: wait for it and read its outcome (calling connect
 * again would fail with EALREADY). */
static int connect_loopback(int fd, const struct sockaddr_in *sa)
{
	if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
		return 0;
	if (errno != EINTR)
		return -1;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int err = 0;
	socklen_t len = sizeof err;
	while (poll(&p, 1, 5000) < 0)
		if (errno != EINTR)
			return -1;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return -1;
	errno = err;
	return err == 0 ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (srv == NULL)
		setup();
	ndone = 0;
	client_gone = false;
	activity = uv_hrtime();

	struct client c = {.out = data, .out_left = size};
	buf_init(&c.in);
	c.fd = socket(AF_INET, SOCK_STREAM, 0);
	FUZZ_ASSERT(c.fd >= 0, "socket: %s", strerror(errno));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(http_server_port(srv))};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* Blocking connect: on loopback the kernel completes the handshake from the backlog. */
	FUZZ_ASSERT(connect_loopback(c.fd, &sa) == 0, "connect: %s", strerror(errno));
	socklen_t sl = sizeof c.local;
	getsockname(c.fd, (struct sockaddr *)&c.local, &sl);
	c.server_fd = -1;
	snprintf(cur_peer, sizeof cur_peer, "127.0.0.1:%u", ntohs(c.local.sin_port));
	fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
	uv_poll_init(&loop, &c.poll, c.fd);
	c.poll.data = &c;
	uv_poll_start(&c.poll, UV_READABLE | UV_WRITABLE, on_client);

	/* See the top of the file for when an exchange is over. */
	bool reset_early = memmem(data, size, "reset", 5) != NULL, reset = false;
	uv_timer_t tick;
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 1, 1);
	uint64_t deadline = uv_hrtime() + (uint64_t)DEADLINE_MS * 1000000u;
	for (;;) {
		uv_run(&loop, UV_RUN_ONCE);
		unsigned pending = http_server_pending(srv);
		if (reset_early && !reset && c.sent && (pending > 0 || ndeferred > 0)) {
			/* The handle goes first: libuv must not watch a closed descriptor. */
			uv_close((uv_handle_t *)&c.poll, NULL);
			client_reset(&c);
			reset = true;
		}
		uint64_t now = uv_hrtime();
		bool quiet = c.sent && now - activity >= QUIET_NS && server_unread(&c) == 0;
		if ((c.eof || reset || quiet) && pending == 0 && ndeferred == 0)
			break;
		FUZZ_ASSERT(now < deadline,
		            "no end after %d ms (%zu bytes unsent, %u pending, %u deferred, "
		            "%u answered, %zu bytes received)",
		            DEADLINE_MS, c.out_left, pending, ndeferred, ndone, c.in.len);
	}
	uv_timer_stop(&tick);
	uv_close((uv_handle_t *)&tick, NULL);
	if (!reset) {
		uv_close((uv_handle_t *)&c.poll, NULL);
		client_reset(&c);
	}
	/* Runs the close callbacks (the handles live in this frame) and lets the server clean
	 * up the reset connection. */
	uv_run(&loop, UV_RUN_NOWAIT);
	uv_run(&loop, UV_RUN_NOWAIT);

	if (getenv("FUZZ_HTTP_DUMP") != NULL) /* when reproducing: what the client received */
		fprintf(stderr, "---- %zu bytes received%s\n%.*s\n----\n", c.in.len,
		        c.eof ? ", closed by the server" : "", (int)c.in.len,
		        c.in.data ? c.in.data : "");
	check_responses(c.in.data, c.in.len, !reset);
	buf_close(&c.in);
	check_fds();
	return 0;
}
