/* test_forward: the forward client against a real HTTP server on loopback.
 *
 * The server is libmicrohttpd with its own threads (one per connection, so a handler may
 * sleep to simulate a slow leader) on 127.0.0.1 and a kernel-chosen port. Its handler echoes
 * the request back: the body verbatim, and method, path, query and selected request headers
 * as X-Echo-* response headers. `?status=N` picks the status and `?sleep_ms=N` delays the
 * answer. The server counts accepted connections so the test can check keep-alive reuse.
 *
 * The forward client runs on a uv loop in the main thread, as it does in the coordinator. */
#include "forward/forward.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testlib.h"

/* ---- test server ---------------------------------------------------------------------- */

static atomic_int server_connections;
static atomic_int die_requests; /* requests for /die, which the server drops unanswered */

struct req_ctx {
	char *body;
	size_t len, cap;
};

struct echo_buf {
	char s[1024];
	size_t len;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	struct echo_buf *b = cls;
	(void)kind;
	int n = snprintf(b->s + b->len, sizeof b->s - b->len, "%s%s=%s", b->len ? "&" : "", key,
	                 value ? value : "");
	if (n > 0 && (size_t)n < sizeof b->s - b->len)
		b->len += (size_t)n;
	return MHD_YES;
}

struct header_echo {
	struct MHD_Response *resp;
};

static enum MHD_Result echo_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	struct header_echo *e = cls;
	(void)kind;
	static const char *const echoed[] = {"Idempotency-Key", "Authorization", "Content-Type",
	                                     "Content-Length",  "Expect",        "User-Agent"};
	bool want = strncasecmp(key, "X-Echo-", 7) == 0;
	for (size_t i = 0; !want && i < sizeof echoed / sizeof echoed[0]; i++)
		want = strcasecmp(key, echoed[i]) == 0;
	if (want) {
		char name[256];
		snprintf(name, sizeof name, "X-Got-%s", key);
		/* MHD refuses empty response header values. */
		MHD_add_response_header(e->resp, name, value && value[0] ? value : "(empty)");
	}
	return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
	struct req_ctx *ctx = *con_cls;
	(void)cls;
	(void)version;

	if (ctx == NULL) {
		ctx = calloc(1, sizeof *ctx);
		if (ctx == NULL)
			return MHD_NO;
		*con_cls = ctx;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		if (ctx->len + n > ctx->cap) {
			size_t cap = ctx->cap ? ctx->cap : 4096;
			while (cap < ctx->len + n)
				cap *= 2;
			char *p = realloc(ctx->body, cap);
			if (p == NULL)
				return MHD_NO;
			ctx->body = p;
			ctx->cap = cap;
		}
		memcpy(ctx->body + ctx->len, upload_data, n);
		ctx->len += n;
		*upload_data_size = 0;
		return MHD_YES;
	}

	if (strcmp(url, "/die") == 0) {
		/* A leader killed after reading the request: close without a response. */
		atomic_fetch_add(&die_requests, 1);
		return MHD_NO;
	}
	const char *sleep_ms = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "sleep_ms");
	if (sleep_ms != NULL)
		usleep((useconds_t)atoi(sleep_ms) * 1000);
	const char *status_s = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "status");
	unsigned status = status_s != NULL ? (unsigned)atoi(status_s) : 200;

	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    ctx->len, ctx->len ? ctx->body : (void *)"", MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	struct echo_buf query = {.len = 0};
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &query);
	char len_s[32];
	snprintf(len_s, sizeof len_s, "%zu", ctx->len);
	MHD_add_response_header(resp, "X-Echo-Method", method);
	MHD_add_response_header(resp, "X-Echo-Path", url);
	MHD_add_response_header(resp, "X-Echo-Query", query.s);
	MHD_add_response_header(resp, "X-Echo-Body-Len", len_s);
	MHD_add_response_header(resp, "X-Test", "v");
	struct header_echo he = {.resp = resp};
	MHD_get_connection_values(conn, MHD_HEADER_KIND, echo_header, &he);
	enum MHD_Result r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
	struct req_ctx *ctx = *con_cls;
	(void)cls;
	(void)conn;
	(void)toe;
	if (ctx != NULL) {
		free(ctx->body);
		free(ctx);
		*con_cls = NULL;
	}
}

static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
	(void)cls;
	(void)conn;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add(&server_connections, 1);
}

static struct MHD_Daemon *server_start(unsigned *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(
	    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0,
	    NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	    MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
	    notify_connection, NULL, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
	    MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
	if (d == NULL)
		return NULL;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	*port = info != NULL ? info->port : 0;
	return d;
}

/* A port nobody listens on: bind to port 0, read it back, close. */
static unsigned unused_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof sa;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		if (fd >= 0)
			close(fd);
		return 1; /* port 1 is privileged and unused on test machines */
	}
	close(fd);
	return ntohs(sa.sin_port);
}

/* ---- client helpers ------------------------------------------------------------------- */

static uv_loop_t loop;
static unsigned port;
static bool in_send; /* set around fwd_send: the callback must never see it true */

struct result {
	int calls;
	enum fwd_result result;
	long status;
	char *body;
	size_t body_len;
	char *error;
	char *hdr_names[64];
	char *hdr_values[64];
	size_t n_headers;
	double seconds;
	uint64_t done_ns;
};

static void result_clear(struct result *r)
{
	free(r->body);
	free(r->error);
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->hdr_names[i]);
		free(r->hdr_values[i]);
	}
	memset(r, 0, sizeof *r);
}

static const char *result_header(const struct result *r, const char *name)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (strcasecmp(r->hdr_names[i], name) == 0)
			return r->hdr_values[i];
	return NULL;
}

/* Copies the response: it is freed when the callback returns. */
static void record_cb(const struct fwd_response *resp, void *arg)
{
	struct result *r = arg;
	CHECK(!in_send);
	if (r->calls++ > 0)
		return; /* counted; the CHECKs on calls catch it */
	r->result = resp->result;
	r->status = resp->status;
	r->seconds = resp->seconds;
	r->done_ns = uv_hrtime();
	CHECK(resp->body != NULL);
	if (resp->body != NULL) {
		CHECK_EQ_INT(resp->body[resp->body_len], '\0');
		r->body = malloc(resp->body_len + 1);
		memcpy(r->body, resp->body, resp->body_len + 1);
		r->body_len = resp->body_len;
	}
	if (resp->error != NULL)
		r->error = strdup(resp->error);
	CHECK(resp->result == FWD_OK || resp->error != NULL);
	for (size_t i = 0; i < resp->n_headers && i < 64; i++) {
		r->hdr_names[i] = strdup(resp->headers[i].name);
		r->hdr_values[i] = strdup(resp->headers[i].value);
		r->n_headers++;
	}
}

static int send_req(struct fwd *f, const struct fwd_request *req, fwd_cb cb, void *arg)
{
	in_send = true;
	int rc = fwd_send(f, req, cb, arg);
	in_send = false;
	return rc;
}

static void wake(uv_timer_t *t)
{
	(void)t; /* only there so uv_run(ONCE) returns regularly */
}

/* Runs the loop until *counter reaches target or timeout_ms passes. */
static bool run_until(const int *counter, int target, unsigned timeout_ms)
{
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, wake, 20, 20);
	uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
	while (*counter < target && uv_hrtime() < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return *counter >= target;
}

/* Returns a static buffer: only valid until the next call (fwd_send copies it). */
static char url_buf[256];
static const char *url(const char *path_and_query)
{
	snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%u%s", port, path_and_query);
	return url_buf;
}

/* Sends one request and waits for its answer. */
static void do_req(struct fwd *f, const struct fwd_request *req, struct result *r)
{
	result_clear(r);
	CHECK_EQ_INT(send_req(f, req, record_cb, r), 0);
	CHECK_EQ_INT(r->calls, 0);
	CHECK(run_until(&r->calls, 1, 10000));
	CHECK_EQ_INT(r->calls, 1);
}

/* ---- cases ---------------------------------------------------------------------------- */

static void test_methods_and_bodies(struct fwd *f)
{
	struct result r = {0};
	const char *methods[] = {"GET", "PUT", "POST", "DELETE"};
	static const char binary[] = {'a', 0, 'b', '\r', '\n', (char)0xff, 0, 'z'};

	for (size_t i = 0; i < 4; i++) {
		struct fwd_request req = {.method = methods[i],
		                          .url = url("/kv/some%20key?x=1&y=two"),
		                          .body = binary,
		                          .body_len = sizeof binary};
		do_req(f, &req, &r);
		CHECK_EQ_INT(r.result, FWD_OK);
		CHECK_EQ_INT(r.status, 200);
		CHECK_EQ_INT(r.body_len, sizeof binary);
		CHECK(r.body != NULL && memcmp(r.body, binary, sizeof binary) == 0);
		CHECK_EQ_STR(result_header(&r, "X-Echo-Method"), methods[i]);
		CHECK_EQ_STR(result_header(&r, "X-Echo-Path"), "/kv/some key");
		CHECK_EQ_STR(result_header(&r, "X-Echo-Query"), "x=1&y=two");
		/* No caller Content-Type: octet-stream, not curl's form default. */
		CHECK_EQ_STR(result_header(&r, "X-Got-Content-Type"), "application/octet-stream");
		CHECK(result_header(&r, "X-Got-Expect") == NULL);
		CHECK(r.seconds > 0 && r.seconds < 5);
	}

	/* GET without body, DELETE without body (sent with Content-Length: 0, no type). */
	struct fwd_request get = {.method = "GET", .url = url("/plain")};
	do_req(f, &get, &r);
	CHECK_EQ_INT(r.result, FWD_OK);
	CHECK_EQ_INT(r.body_len, 0);
	CHECK_EQ_STR(r.body, "");
	CHECK_EQ_STR(result_header(&r, "X-Echo-Method"), "GET");
	CHECK(result_header(&r, "X-Got-Content-Type") == NULL);

	struct fwd_request del = {.method = "DELETE", .url = url("/kv/a")};
	do_req(f, &del, &r);
	CHECK_EQ_INT(r.result, FWD_OK);
	CHECK_EQ_STR(result_header(&r, "X-Echo-Method"), "DELETE");
	CHECK_EQ_STR(result_header(&r, "X-Got-Content-Length"), "0");
	CHECK(result_header(&r, "X-Got-Content-Type") == NULL);

	/* HEAD: headers only. */
	struct fwd_request head = {.method = "HEAD", .url = url("/h")};
	do_req(f, &head, &r);
	CHECK_EQ_INT(r.result, FWD_OK);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_INT(r.body_len, 0);
	CHECK_EQ_STR(result_header(&r, "X-Echo-Method"), "HEAD");

	/* A 300 KiB body survives the round trip byte for byte. */
	size_t big_len = 300 * 1024;
	unsigned char *big = malloc(big_len);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (unsigned char)((i * 131u + (i >> 9)) & 0xff);
	struct fwd_request put = {
	    .method = "PUT", .url = url("/big"), .body = big, .body_len = big_len};
	do_req(f, &put, &r);
	CHECK_EQ_INT(r.result, FWD_OK);
	CHECK_EQ_INT(r.body_len, big_len);
	CHECK(r.body != NULL && r.body_len == big_len && memcmp(r.body, big, big_len) == 0);
	CHECK_EQ_STR(result_header(&r, "X-Echo-Body-Len"), "307200");
	free(big);
	result_clear(&r);
}

/* The path reaches the server as given: dot segments are a key's bytes, not directions. */
static void test_path_as_is(struct fwd *f)
{
	static const char *const paths[] = {"/kv/a/../b", "/kv/.", "/kv/..", "/kv/x/./y/"};
	struct result r = {0};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		struct fwd_request req = {
		    .method = "PUT", .url = url(paths[i]), .body = "v", .body_len = 1};
		do_req(f, &req, &r);
		CHECK_EQ_INT(r.result, FWD_OK);
		CHECK_EQ_STR(result_header(&r, "X-Echo-Path"), paths[i]);
	}
	result_clear(&r);
}

/* fwd_send copies everything: the caller's buffers may be gone right after it returns. */
static void test_request_copied(struct fwd *f)
{
	struct result r = {0};
	char *body = strdup("copied body");
	char *hname = strdup("X-Echo-Copy");
	char *hval = strdup("yes");
	char *u = strdup(url("/copy"));
	char *method = strdup("POST");
	struct fwd_header *h = malloc(sizeof *h);
	h->name = hname;
	h->value = hval;
	struct fwd_request *req = calloc(1, sizeof *req);
	req->method = method;
	req->url = u;
	req->headers = h;
	req->n_headers = 1;
	req->body = body;
	req->body_len = strlen(body);
	CHECK_EQ_INT(send_req(f, req, record_cb, &r), 0);
	memset(body, 'X', strlen(body));
	free(body);
	free(hname);
	free(hval);
	free(u);
	free(method);
	free(h);
	free(req);
	CHECK(run_until(&r.calls, 1, 10000));
	CHECK_EQ_INT(r.result, FWD_OK);
	CHECK_EQ_STR(r.body, "copied body");
	CHECK_EQ_STR(result_header(&r, "X-Echo-Method"), "POST");
	CHECK_EQ_STR(result_header(&r, "X-Got-X-Echo-Copy"), "yes");
	result_clear(&r);
}

static void test_headers_and_status(struct fwd *f)
{
	struct result r = {0};
	struct fwd_header hdrs[] = {
	    {"X-Echo-One", "1"},
	    {"Idempotency-Key", "abc-123"},
	    {"Authorization", "Bearer t0ken"},
	    {"Content-Type", "application/json"},
	    {"X-Echo-Empty", ""},
	};
	struct fwd_request req = {.method = "POST",
	                          .url = url("/kv/k?status=409"),
	                          .headers = hdrs,
	                          .n_headers = 5,
	                          .body = "{\"a\":1}",
	                          .body_len = 7,
	                          .timeout_ms = 5000};
	do_req(f, &req, &r);
	/* Any HTTP status is a response: FWD_OK carrying the status. */
	CHECK_EQ_INT(r.result, FWD_OK);
	CHECK_EQ_INT(r.status, 409);
	CHECK(r.error == NULL);
	CHECK_EQ_STR(r.body, "{\"a\":1}");
	CHECK_EQ_STR(result_header(&r, "X-Test"), "v");
	CHECK_EQ_STR(result_header(&r, "X-Got-X-Echo-One"), "1");
	CHECK_EQ_STR(result_header(&r, "X-Got-Idempotency-Key"), "abc-123");
	CHECK_EQ_STR(result_header(&r, "X-Got-Authorization"), "Bearer t0ken");
	CHECK_EQ_STR(result_header(&r, "X-Got-Content-Type"), "application/json");
	CHECK_EQ_STR(result_header(&r, "X-Got-X-Echo-Empty"), "(empty)");
	CHECK_EQ_STR(result_header(&r, "X-Echo-Query"), "status=409");
	CHECK(result_header(&r, "X-Got-User-Agent") != NULL &&
	      strncmp(result_header(&r, "X-Got-User-Agent"), "cloudless", 9) == 0);
	/* Values are trimmed and the status line is not a header. */
	for (size_t i = 0; i < r.n_headers; i++) {
		size_t vl = strlen(r.hdr_values[i]);
		CHECK(vl == 0 ||
		      (r.hdr_values[i][vl - 1] != '\r' && r.hdr_values[i][vl - 1] != ' '));
		CHECK(strncmp(r.hdr_names[i], "HTTP/", 5) != 0);
	}
	CHECK(result_header(&r, "Content-Length") != NULL);
	result_clear(&r);
}

/* fwd_response_header while the response is alive: any case, the first of its name. */
struct header_lookup {
	int calls;
	char test[16], echo_method[16];
	bool missing_is_null;
};

static void lookup_cb(const struct fwd_response *resp, void *arg)
{
	struct header_lookup *h = arg;
	const char *v = fwd_response_header(resp, "x-TEST");
	snprintf(h->test, sizeof h->test, "%s", v != NULL ? v : "(null)");
	v = fwd_response_header(resp, "X-Echo-Method");
	snprintf(h->echo_method, sizeof h->echo_method, "%s", v != NULL ? v : "(null)");
	h->missing_is_null = fwd_response_header(resp, "X-Not-There") == NULL &&
	                     fwd_response_header(NULL, "X-Test") == NULL;
	h->calls++;
}

static void test_response_header(struct fwd *f)
{
	struct header_lookup h = {0};
	struct fwd_request req = {.method = "DELETE", .url = url("/h")};
	CHECK_EQ_INT(send_req(f, &req, lookup_cb, &h), 0);
	CHECK(run_until(&h.calls, 1, 10000));
	CHECK_EQ_STR(h.test, "v");
	CHECK_EQ_STR(h.echo_method, "DELETE");
	CHECK(h.missing_is_null);
}

/* Another binary (cloudlessctl, the agent) names itself; a bad value changes nothing. */
static void test_user_agent(struct fwd *f)
{
	struct result r = {0};
	struct fwd_request req = {.method = "GET", .url = url("/ua")};
	CHECK_EQ_INT(fwd_set_user_agent(f, "cloudlessctl/test"), 0);
	do_req(f, &req, &r);
	CHECK_EQ_STR(result_header(&r, "X-Got-User-Agent"), "cloudlessctl/test");
	CHECK_EQ_INT(fwd_set_user_agent(f, "evil\r\nX-Echo-Injected: 1"), -1);
	CHECK_EQ_INT(fwd_set_user_agent(f, NULL), -1);
	do_req(f, &req, &r);
	CHECK_EQ_STR(result_header(&r, "X-Got-User-Agent"), "cloudlessctl/test");
	CHECK(result_header(&r, "X-Got-X-Echo-Injected") == NULL);
	result_clear(&r);
}

static void test_invalid_requests(struct fwd *f)
{
	struct result r = {0};
	struct fwd_header bad[] = {{"X-Bad", "a\r\nInjected: 1"}};
	struct fwd_request req = {.method = "GET", .url = url("/"), .headers = bad, .n_headers = 1};
	/* Refused up front: -1 and no callback. */
	CHECK_EQ_INT(send_req(f, &req, record_cb, &r), -1);
	struct fwd_request nobody = {.method = "PUT", .url = url("/"), .body_len = 3};
	CHECK_EQ_INT(send_req(f, &nobody, record_cb, &r), -1);
	struct fwd_request nourl = {.method = "GET"};
	CHECK_EQ_INT(send_req(f, &nourl, record_cb, &r), -1);
	CHECK_EQ_INT(fwd_inflight(f), 0);

	/* Failures curl detects are still reported from the loop, never inside fwd_send. */
	struct fwd_request ftp = {.method = "GET", .url = "ftp://127.0.0.1/x"};
	do_req(f, &ftp, &r);
	CHECK_EQ_INT(r.result, FWD_FAILED);
	CHECK(r.error != NULL && strlen(r.error) > 0);
	struct fwd_request junk = {.method = "GET", .url = "http://[::1"};
	do_req(f, &junk, &r);
	CHECK_EQ_INT(r.result, FWD_FAILED);
	result_clear(&r);
	run_until(&r.calls, 1, 50); /* no late second callback */
	CHECK_EQ_INT(r.calls, 0);
}

static void test_timeout(struct fwd *f)
{
	struct result r = {0};
	struct fwd_request req = {.method = "PUT",
	                          .url = url("/slow?sleep_ms=2000"),
	                          .body = "x",
	                          .body_len = 1,
	                          .timeout_ms = 200};
	uint64_t start = uv_hrtime();
	do_req(f, &req, &r);
	double elapsed = (double)(r.done_ns - start) / 1e9;
	CHECK_EQ_INT(r.result, FWD_TIMEOUT);
	CHECK(r.error != NULL && strstr(r.error, "imeout") != NULL);
	CHECK(elapsed >= 0.15);
	CHECK(elapsed < 1.5);
	CHECK(r.seconds >= 0.15 && r.seconds < 1.5);
	fprintf(stderr, "timeout after %.3f s: %s\n", elapsed, r.error ? r.error : "");
	result_clear(&r);
}

static void test_connect_refused(struct fwd *f)
{
	struct result r = {0};
	char u[128];
	snprintf(u, sizeof u, "http://127.0.0.1:%u/x", unused_port());
	struct fwd_request req = {.method = "POST", .url = u, .body = "a", .body_len = 1};
	do_req(f, &req, &r);
	CHECK_EQ_INT(r.result, FWD_CONNECT_FAILED);
	CHECK_EQ_INT(r.status, 0);
	CHECK(r.error != NULL);
	/* Resolution failure is a connect failure too. Where the configured DNS server is
	 * unreachable, resolving can instead run into the connect timeout, which curl (and so
	 * forward) reports as a timeout: accept that, but only for that reason. */
	struct fwd_request dns = {.method = "GET", .url = "http://no-such-host.invalid/x"};
	do_req(f, &dns, &r);
	CHECK(r.result == FWD_CONNECT_FAILED ||
	      (r.result == FWD_TIMEOUT && r.error != NULL && strstr(r.error, "Resolving") != NULL));
	result_clear(&r);
}

/* Each completion sends the next request from inside the callback. */
struct chain {
	struct fwd *f;
	int done;
	int ok;
	int target;
};

static void chain_cb(const struct fwd_response *resp, void *arg)
{
	struct chain *c = arg;
	CHECK(!in_send);
	if (resp->result == FWD_OK && resp->status == 200 && resp->body_len == 4 &&
	    memcmp(resp->body, "ping", 4) == 0)
		c->ok++;
	c->done++;
	if (c->done < c->target) {
		struct fwd_request req = {
		    .method = "POST", .url = url("/seq"), .body = "ping", .body_len = 4};
		CHECK_EQ_INT(send_req(c->f, &req, chain_cb, c), 0);
	}
}

static void test_connection_reuse(struct fwd *f)
{
	int before = atomic_load(&server_connections);
	struct chain c = {.f = f, .target = 20};
	struct fwd_request req = {
	    .method = "POST", .url = url("/seq"), .body = "ping", .body_len = 4};
	CHECK_EQ_INT(send_req(f, &req, chain_cb, &c), 0);
	CHECK(run_until(&c.done, 20, 20000));
	CHECK_EQ_INT(c.done, 20);
	CHECK_EQ_INT(c.ok, 20);
	int opened = atomic_load(&server_connections) - before;
	fprintf(stderr, "20 sequential requests opened %d connection(s)\n", opened);
	CHECK(opened <= 2);
}

/* A connection that dies after the request went out: with fresh_connection the request is
 * sent exactly once and reported as sent (outcome unknown). Without it libcurl re-sends it on
 * a new connection by itself when the dead connection was a reused keep-alive one, which for a
 * forwarded write means applying it twice (or, when the re-send cannot connect, reporting a
 * request that did reach the leader as never sent). */
static void test_fresh_connection(struct fwd *f)
{
	struct result r = {0};
	char warm_url[256], die_url[256];
	snprintf(warm_url, sizeof warm_url, "%s", url("/warm")); /* url() reuses one buffer */
	snprintf(die_url, sizeof die_url, "%s", url("/die"));
	struct fwd_request warm = {.method = "GET", .url = warm_url};
	struct fwd_request die = {.method = "PUT", .url = die_url, .body = "x", .body_len = 1};
	for (int fresh = 0; fresh < 2; fresh++) {
		do_req(f, &warm, &r); /* leaves a kept-alive connection in the pool */
		CHECK_EQ_INT(r.result, FWD_OK);
		result_clear(&r);
		int before = atomic_load(&die_requests);
		die.fresh_connection = fresh;
		do_req(f, &die, &r);
		int sent = atomic_load(&die_requests) - before;
		fprintf(stderr,
		        "dropped PUT with fresh_connection=%d: sent %d time(s), result %d\n", fresh,
		        sent, r.result);
		if (fresh) {
			CHECK_EQ_INT(sent, 1);
			CHECK_EQ_INT(r.result, FWD_FAILED);
		}
		result_clear(&r);
	}
}

/* A peer that answers one request on a kept-alive connection, reads the next and dies
 * unanswered: it closes its listening socket, then the connection. */
struct dying_peer {
	int lfd;
	unsigned port;
	atomic_int requests;
	pthread_t thread;
};

static bool read_request(int fd)
{
	char buf[4096];
	size_t got = 0;
	while (got < sizeof buf - 1) {
		ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
		if (r <= 0)
			return false;
		got += (size_t)r;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n") != NULL)
			return true; /* GET: no body */
	}
	return false;
}

static void *dying_peer_run(void *arg)
{
	struct dying_peer *p = arg;
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	int c = accept(p->lfd, NULL, NULL);
	if (c >= 0 && read_request(c)) {
		atomic_fetch_add(&p->requests, 1);
		if (send(c, ok, sizeof ok - 1, 0) == (ssize_t)(sizeof ok - 1) && read_request(c))
			atomic_fetch_add(&p->requests, 1);
	}
	close(p->lfd);
	if (c >= 0)
		close(c);
	return NULL;
}

/* The second request reached the peer, which died before answering, and curl's own re-send
 * of it on a new connection was refused. That is "sent, outcome unknown" (FWD_FAILED) for
 * every request, not FWD_CONNECT_FAILED: callers retry a "not sent" request anywhere, and a
 * follower reported an idempotent write that had been applied as never sent ("no-leader"). */
static void test_resend_refused_after_send(struct fwd *f)
{
	struct dying_peer p = {.lfd = socket(AF_INET, SOCK_STREAM, 0)};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof sa;
	CHECK(p.lfd >= 0 && bind(p.lfd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	      listen(p.lfd, 8) == 0 && getsockname(p.lfd, (struct sockaddr *)&sa, &len) == 0);
	p.port = ntohs(sa.sin_port);
	CHECK_EQ_INT(pthread_create(&p.thread, NULL, dying_peer_run, &p), 0);
	char u1[128], u2[128];
	snprintf(u1, sizeof u1, "http://127.0.0.1:%u/warm", p.port);
	snprintf(u2, sizeof u2, "http://127.0.0.1:%u/dies", p.port);
	struct result r = {0};
	struct fwd_request warm = {.method = "GET", .url = u1};
	do_req(f, &warm, &r);
	CHECK_EQ_INT(r.result, FWD_OK);
	result_clear(&r);
	struct fwd_request req = {.method = "GET", .url = u2};
	do_req(f, &req, &r);
	pthread_join(p.thread, NULL);
	CHECK_EQ_INT(atomic_load(&p.requests), 2);
	CHECK_EQ_INT(r.result, FWD_FAILED);
	result_clear(&r);
}

struct many {
	int done;
	int ok;
};

struct one {
	struct many *m;
	int i;
};

static void many_cb(const struct fwd_response *resp, void *arg)
{
	struct one *o = arg;
	char want[32];
	CHECK(!in_send);
	snprintf(want, sizeof want, "body-%d", o->i);
	if (resp->result == FWD_OK && resp->status == 200 && resp->body_len == strlen(want) &&
	    strcmp(resp->body, want) == 0)
		o->m->ok++;
	else
		fprintf(stderr, "request %d: result=%d status=%ld body=%s\n", o->i,
		        (int)resp->result, resp->status, resp->body);
	o->m->done++;
}

static void test_concurrent(struct fwd *f)
{
	enum { N = 200 };
	static struct one ones[N];
	static char bodies[N][32];
	struct many m = {0};
	for (int i = 0; i < N; i++) {
		ones[i] = (struct one){.m = &m, .i = i};
		snprintf(bodies[i], sizeof bodies[i], "body-%d", i);
		char path[64];
		snprintf(path, sizeof path, "/c/%d%s", i, i % 10 == 0 ? "?sleep_ms=50" : "");
		struct fwd_request req = {.method = "PUT",
		                          .url = url(path),
		                          .body = bodies[i],
		                          .body_len = strlen(bodies[i])};
		CHECK_EQ_INT(send_req(f, &req, many_cb, &ones[i]), 0);
	}
	CHECK_EQ_INT(fwd_inflight(f), N);
	CHECK(run_until(&m.done, N, 30000));
	CHECK_EQ_INT(m.done, N);
	CHECK_EQ_INT(m.ok, N);
	CHECK_EQ_INT(fwd_inflight(f), 0);
}

/* ---- close ---------------------------------------------------------------------------- */

static int closed_calls;
static void on_closed(void *arg)
{
	int *n = arg;
	(*n)++;
}

struct cancel_rec {
	int calls;
	int canceled;
	struct fwd *f;
	int resend_rc;
};

static void cancel_cb(const struct fwd_response *resp, void *arg)
{
	struct cancel_rec *c = arg;
	CHECK(!in_send);
	c->calls++;
	if (resp->result == FWD_CANCELED)
		c->canceled++;
	CHECK(resp->error != NULL);
	CHECK(resp->body != NULL);
	/* A closing client refuses new work. */
	struct fwd_request req = {.method = "GET", .url = url("/again")};
	c->resend_rc = fwd_send(c->f, &req, cancel_cb, c);
}

struct closer {
	struct fwd *f;
	struct cancel_rec *recs;
	int n;
	int calls_at_return;
	int fired;
};

static void close_from_timer(uv_timer_t *t)
{
	struct closer *cl = t->data;
	CHECK_EQ_INT(fwd_inflight(cl->f), (unsigned)cl->n);
	fwd_close(cl->f, on_closed, &closed_calls);
	/* Every callback ran before fwd_close returned. */
	for (int i = 0; i < cl->n; i++)
		cl->calls_at_return += cl->recs[i].calls;
	cl->fired = 1;
	uv_close((uv_handle_t *)t, NULL);
}

static void test_close_inflight(void)
{
	enum { N = 8 };
	struct fwd *f;
	CHECK_EQ_INT(fwd_init(&f, &loop), 0);
	struct cancel_rec recs[N] = {0};
	for (int i = 0; i < N; i++) {
		recs[i].f = f;
		recs[i].resend_rc = 99;
		struct fwd_request req = {.method = "POST",
		                          .url = url("/slow?sleep_ms=1000"),
		                          .body = "zz",
		                          .body_len = 2,
		                          .timeout_ms = 5000};
		CHECK_EQ_INT(send_req(f, &req, cancel_cb, &recs[i]), 0);
	}
	/* Close once the requests are on the wire (the server is sleeping on them). */
	closed_calls = 0;
	uv_timer_t t;
	struct closer cl = {.f = f, .recs = recs, .n = N};
	uv_timer_init(&loop, &t);
	t.data = &cl;
	uv_timer_start(&t, close_from_timer, 200, 0);
	uint64_t start = uv_hrtime();
	uv_run(&loop, UV_RUN_DEFAULT); /* returns once every handle is closed */
	double elapsed = (double)(uv_hrtime() - start) / 1e9;
	CHECK_EQ_INT(cl.fired, 1);
	CHECK_EQ_INT(cl.calls_at_return, N);
	for (int i = 0; i < N; i++) {
		CHECK_EQ_INT(recs[i].calls, 1);
		CHECK_EQ_INT(recs[i].canceled, 1);
		CHECK_EQ_INT(recs[i].resend_rc, -1);
	}
	CHECK_EQ_INT(closed_calls, 1);
	CHECK(elapsed < 0.9); /* did not wait for the server */
	CHECK_EQ_INT(uv_loop_alive(&loop), 0);
}

/* Close right after sending, before the loop ever ran: nothing started yet. */
static void test_close_before_run(void)
{
	struct fwd *f;
	CHECK_EQ_INT(fwd_init(&f, &loop), 0);
	struct cancel_rec rec = {.f = f, .resend_rc = 99};
	struct fwd_request req = {.method = "GET", .url = url("/x")};
	CHECK_EQ_INT(send_req(f, &req, cancel_cb, &rec), 0);
	CHECK_EQ_INT(fwd_inflight(f), 1);
	closed_calls = 0;
	fwd_close(f, on_closed, &closed_calls);
	CHECK_EQ_INT(rec.calls, 1);
	CHECK_EQ_INT(rec.canceled, 1);
	CHECK_EQ_INT(closed_calls, 0); /* handles still closing */
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(closed_calls, 1);
	CHECK_EQ_INT(uv_loop_alive(&loop), 0);
}

/* fwd_close from inside a completion callback, with other requests still in flight. */
struct self_close {
	struct fwd *f;
	int calls;
	int ok;
	int canceled;
};

static void self_close_cb(const struct fwd_response *resp, void *arg)
{
	struct self_close *s = arg;
	s->calls++;
	if (resp->result == FWD_OK) {
		s->ok++;
		if (s->ok == 1)
			fwd_close(s->f, on_closed, &closed_calls);
	} else if (resp->result == FWD_CANCELED) {
		s->canceled++;
	}
}

static void test_close_from_callback(void)
{
	struct fwd *f;
	CHECK_EQ_INT(fwd_init(&f, &loop), 0);
	struct self_close s = {.f = f};
	char fast_url[256], slow_url[256];
	snprintf(fast_url, sizeof fast_url, "%s", url("/fast"));
	snprintf(slow_url, sizeof slow_url, "%s", url("/slow?sleep_ms=1500"));
	struct fwd_request fast = {.method = "GET", .url = fast_url};
	struct fwd_request slow = {.method = "GET", .url = slow_url};
	uint64_t start = uv_hrtime();
	CHECK_EQ_INT(send_req(f, &fast, self_close_cb, &s), 0);
	CHECK_EQ_INT(send_req(f, &slow, self_close_cb, &s), 0);
	CHECK_EQ_INT(send_req(f, &slow, self_close_cb, &s), 0);
	closed_calls = 0;
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK((double)(uv_hrtime() - start) / 1e9 < 1.0); /* the slow ones were cut short */
	CHECK_EQ_INT(s.calls, 3);
	CHECK_EQ_INT(s.ok, 1);
	CHECK_EQ_INT(s.canceled, 2);
	CHECK_EQ_INT(closed_calls, 1);
	CHECK_EQ_INT(uv_loop_alive(&loop), 0);
}

/* fwd_cancel: one request by id, its callback inside the call, the others untouched. This is
 * what lets an owner (auto-join, removal checks) free what its callbacks point to. */
struct cancel_one {
	int calls;
	enum fwd_result result;
	bool cancel_returned; /* set right after fwd_cancel returned: must still be false */
	char error[64];
};

static void cancel_one_cb(const struct fwd_response *resp, void *arg)
{
	struct cancel_one *c = arg;
	CHECK(!in_send);
	CHECK(!c->cancel_returned);
	c->calls++;
	c->result = resp->result;
	snprintf(c->error, sizeof c->error, "%s", resp->error ? resp->error : "");
}

static void test_cancel(struct fwd *f)
{
	struct cancel_one a = {0}, b = {0}, early = {0};
	struct result other = {0};
	uint64_t ida = 0, idb = 0, ide = 0;
	char slow[256];
	snprintf(slow, sizeof slow, "%s", url("/slow?sleep_ms=600"));
	struct fwd_request req = {.method = "POST", .url = slow, .body = "x", .body_len = 1};

	/* Cancelled before the loop ever ran (nothing sent yet). */
	CHECK_EQ_INT(fwd_send_cancellable(f, &req, cancel_one_cb, &early, &ide), 0);
	CHECK(ide != 0);
	CHECK(fwd_cancel(f, ide));
	early.cancel_returned = true;
	CHECK_EQ_INT(early.calls, 1);
	CHECK_EQ_INT(early.result, FWD_CANCELED);
	CHECK_EQ_STR(early.error, "canceled");

	/* Cancelled while the server holds it (on the wire). */
	in_send = true;
	CHECK_EQ_INT(fwd_send_cancellable(f, &req, cancel_one_cb, &a, &ida), 0);
	CHECK_EQ_INT(fwd_send_cancellable(f, &req, cancel_one_cb, &b, &idb), 0);
	CHECK_EQ_INT(fwd_send(f, &req, record_cb, &other), 0);
	in_send = false;
	CHECK(ida != 0 && idb != 0 && ida != idb && ida != ide && idb != ide);
	int never = 0;
	run_until(&never, 1, 150);
	CHECK_EQ_INT(fwd_inflight(f), 3);
	uint64_t t0 = uv_hrtime();
	CHECK(fwd_cancel(f, ida));
	a.cancel_returned = true;
	CHECK_EQ_INT(a.calls, 1);
	CHECK_EQ_INT(a.result, FWD_CANCELED);
	CHECK_EQ_INT(b.calls, 0);
	CHECK_EQ_INT(fwd_inflight(f), 2);
	/* Done already, never issued, 0: nothing happens. */
	CHECK(!fwd_cancel(f, ida));
	CHECK(!fwd_cancel(f, ide));
	CHECK(!fwd_cancel(f, 0));
	CHECK(!fwd_cancel(f, idb + 1000));
	CHECK_EQ_INT(a.calls, 1);
	/* The others complete normally. */
	CHECK(run_until(&other.calls, 1, 5000));
	CHECK(run_until(&b.calls, 1, 5000));
	CHECK_EQ_INT(other.result, FWD_OK);
	CHECK_EQ_INT(other.status, 200);
	CHECK_EQ_INT(b.result, FWD_OK);
	CHECK((double)(uv_hrtime() - t0) / 1e9 < 5.0);
	/* Once answered it cannot be cancelled; the callback ran once. */
	CHECK(!fwd_cancel(f, idb));
	CHECK_EQ_INT(b.calls, 1);
	/* The client works on: the cancelled request's connection is gone, others are not. */
	struct result r = {0};
	struct fwd_request get = {.method = "GET", .url = url("/after-cancel")};
	do_req(f, &get, &r);
	CHECK_EQ_INT(r.result, FWD_OK);
	CHECK_EQ_INT(r.status, 200);
	result_clear(&r);
	result_clear(&other);
}

int main(void)
{
	/* The client must ignore any proxy configured in the environment. */
	setenv("http_proxy", "http://127.0.0.1:9/", 1);
	setenv("HTTP_PROXY", "http://127.0.0.1:9/", 1);
	setenv("all_proxy", "http://127.0.0.1:9/", 1);

	struct MHD_Daemon *d = server_start(&port);
	CHECK(d != NULL);
	if (d == NULL)
		TEST_DONE();
	CHECK_EQ_INT(uv_loop_init(&loop), 0);

	struct fwd *f;
	CHECK_EQ_INT(fwd_init(&f, &loop), 0);
	test_methods_and_bodies(f);
	test_request_copied(f);
	test_path_as_is(f);
	test_headers_and_status(f);
	test_response_header(f);
	test_invalid_requests(f);
	test_timeout(f);
	test_connect_refused(f);
	test_connection_reuse(f);
	test_fresh_connection(f);
	test_resend_refused_after_send(f);
	test_concurrent(f);
	test_cancel(f);
	test_user_agent(f);
	/* Idle pooled connections and all: closing releases every handle. */
	closed_calls = 0;
	fwd_close(f, on_closed, &closed_calls);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(closed_calls, 1);
	CHECK_EQ_INT(uv_loop_alive(&loop), 0);

	test_close_inflight();
	test_close_before_run();
	test_close_from_callback();

	CHECK_EQ_INT(uv_loop_close(&loop), 0);
	MHD_stop_daemon(d);
	TEST_DONE();
}
