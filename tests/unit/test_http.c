/* test_http: the http module against real HTTP traffic.
 *
 * The server's handlers run on a uv loop on the main thread and its sockets on its own thread,
 * exactly as in the coordinator; a client thread drives it with libcurl (easy for sequential
 * cases, multi for the concurrency case). Handlers must only ever run on the loop thread, and
 * at most HTTP_DRAIN_MAX (64) of them per loop iteration, however many requests wait.
 * To keep testlib's counters single-threaded, the client thread does all CHECKs while the
 * main thread only records what the handlers saw; main checks those after joining. */
#include "http/http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "testlib.h"
#include "util/buf.h"

#define MAX_BODY    (200 * 1024)
#define CONCURRENT  200
#define ASYNC_DELAY 50 /* ms */

/* ---- server side (main thread) ------------------------------------------------------ */

static struct http_server *srv;
static uv_loop_t loop;
static uv_timer_t gather_timer, hold_timer;

/* What the handlers and complete callback observed, checked by main after the run. */
static struct {
	int calls_big;           /* handler calls on the paths that must get 413 */
	int completes;           /* complete callbacks */
	int complete_413;        /* completes with status 413 and no handler call */
	int complete_503_hold;   /* the held request completed with 503 */
	int bad_complete;        /* complete with a nonsensical status or duration */
	unsigned gather_pending; /* http_server_pending when all gather requests are in */
	uint64_t gather_backlog; /* http_server_backlog_ms after the first gather's stall */
	uint64_t hold_backlog;   /* and with nothing queued (the held request is handled) */
	int count_calls;         /* handler calls on /count */
	int count_gone;          /* /count completed 503 without its handler (client gone) */
	unsigned hold_pending;   /* http_server_pending just before close */
	int hold_answered;       /* http_request_answered(held) before close (must be 0) */
	char query[512];         /* what /query saw */
	int wrong_thread;        /* handler calls off the loop thread */
	unsigned max_per_iter;   /* most handler calls in one loop iteration */
} seen;

static pthread_t loop_thread;
static uv_check_t iter_check;
static unsigned iter, iter_seen, iter_calls;

/* Runs once per loop iteration: handler calls are counted per iteration. */
static void on_iter(uv_check_t *h)
{
	(void)h;
	iter++;
}

static atomic_int stalling; /* set by /stall's handler, read by the client thread */
static struct http_request *gathered[CONCURRENT];
static int ngathered;
static struct http_request *held;

struct delayed {
	uv_timer_t timer;
	struct http_request *req;
};

static void on_delayed_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_delayed(uv_timer_t *t)
{
	struct delayed *d = t->data;
	char body[64];
	int n = snprintf(body, sizeof body, "async %s",
	                 http_request_query(d->req, "i") ? http_request_query(d->req, "i") : "-");
	http_response_header(d->req, "X-Async", "1");
	http_respond(d->req, 200, "text/plain", body, (size_t)n);
	uv_close((uv_handle_t *)t, on_delayed_closed);
}

static void on_gather(uv_timer_t *t)
{
	(void)t;
	seen.gather_pending = http_server_pending(srv);
	for (int i = 0; i < ngathered; i++) {
		const char *id = http_request_query(gathered[i], "i");
		http_respond(gathered[i], 200, "text/plain", id, strlen(id));
	}
	ngathered = 0;
}

static void close_test_handles(void)
{
	uv_close((uv_handle_t *)&gather_timer, NULL);
	uv_close((uv_handle_t *)&hold_timer, NULL);
	uv_close((uv_handle_t *)&iter_check, NULL);
}

static void on_hold(uv_timer_t *t)
{
	(void)t;
	seen.hold_pending = http_server_pending(srv);
	seen.hold_backlog = http_server_backlog_ms(srv);
	seen.hold_answered = http_request_answered(held);
	/* The held request is still suspended: close must answer it with 503. */
	http_server_close(srv);
	srv = NULL;
	close_test_handles();
}

static void handler(struct http_request *req, void *arg)
{
	const char *path = http_request_path(req);
	(void)arg;
	if (!pthread_equal(pthread_self(), loop_thread))
		seen.wrong_thread++;
	if (iter != iter_seen) {
		iter_seen = iter;
		iter_calls = 0;
	}
	if (++iter_calls > seen.max_per_iter)
		seen.max_per_iter = iter_calls;
	http_request_set_tag(req, path[0] == '/' ? "route" : "odd");

	if (strcmp(path, "/sync") == 0) {
		const char *h = http_request_header(req, "x-CUSTOM-thing");
		http_response_header(req, "X-Test", "yes");
		http_response_header(req, "X-Echo", h ? h : "(none)");
		http_response_header(req, "X-Peer", http_request_peer(req));
		http_respond(req, 201, "text/plain", "hello", 5);
	} else if (strcmp(path, "/async") == 0) {
		struct delayed *d = malloc(sizeof *d);
		if (d == NULL)
			abort();
		d->req = req;
		uv_timer_init(&loop, &d->timer);
		d->timer.data = d;
		uv_timer_start(&d->timer, on_delayed, ASYNC_DELAY, 0);
	} else if (strcmp(path, "/echo") == 0) {
		size_t len;
		const char *body = http_request_body(req, &len);
		http_respond(req, 200, "application/octet-stream", body, len);
	} else if (strcmp(path, "/big") == 0 || strcmp(path, "/big-chunked") == 0) {
		seen.calls_big++;
		http_respond(req, 200, "text/plain", "should not happen", 17);
	} else if (strcmp(path, "/query") == 0) {
		const char *a = http_request_query(req, "a");
		const char *flag = http_request_query(req, "flag");
		const char *b = http_request_query(req, "b");
		const char *zz = http_request_query(req, "zz");
		snprintf(seen.query, sizeof seen.query, "a=[%s] flag=[%s] b=[%s] zz=[%s] qs=[%s]",
		         a ? a : "NULL", flag ? flag : "NULL", b ? b : "NULL", zz ? zz : "NULL",
		         http_request_query_string(req));
		http_respond(req, 200, "text/plain", seen.query, strlen(seen.query));
	} else if (strcmp(path, "/replace") == 0) {
		/* Replaces the header the prepare hook set (names compare case-insensitively). */
		http_response_header(req, "x-prepared", "replaced");
		http_respond(req, 200, "text/plain", "r", 1);
	} else if (strcmp(path, "/nul\xC0\x80x") == 0) {
		/* "%00" decodes to the invalid UTF-8 pair C0 80, never to a string-ending NUL. */
		const char *v = http_request_query(req, "v");
		http_respond(req, 200, "text/plain", v ? v : "", v ? strlen(v) : 0);
	} else if (strcmp(path, "/noquery") == 0) {
		const char *qs = http_request_query_string(req);
		http_respond(req, 200, "text/plain", qs[0] ? qs : "<empty>",
		             qs[0] ? strlen(qs) : 7);
	} else if (strcmp(path, "/method") == 0) {
		const char *m = http_request_method(req);
		http_respond(req, 200, "text/plain", m, strlen(m));
	} else if (strcmp(path, "/gather") == 0) {
		/* Keep the loop busy once, so the other requests pile up in the queue meanwhile:
		 * the drain must still hand them to handlers at most 64 per iteration. */
		if (ngathered == 0) {
			usleep(300 * 1000);
			/* The others have waited in the queue meanwhile, and it says so. */
			seen.gather_backlog = http_server_backlog_ms(srv);
		}
		gathered[ngathered++] = req;
		if (ngathered == CONCURRENT)
			uv_timer_start(&gather_timer, on_gather, 0, 0);
	} else if (strcmp(path, "/stall") == 0) {
		/* Holds the loop while requests queue behind it (test_gone_client). */
		atomic_store(&stalling, 1);
		usleep(300 * 1000);
		http_respond(req, 200, "text/plain", "s", 1);
	} else if (strcmp(path, "/count") == 0) {
		seen.count_calls++;
		http_respond(req, 200, "text/plain", "c", 1);
	} else if (strcmp(path, "/hold") == 0) {
		held = req;
		http_request_set_tag(req, "hold");
		uv_timer_start(&hold_timer, on_hold, 30, 0);
	} else if (strcmp(path, "/close-inside") == 0) {
		/* Closing from inside a handler must be deferred until MHD_run returns. */
		http_request_set_tag(req, "hold");
		http_server_close(srv);
		srv = NULL;
	} else {
		http_respond(req, 404, NULL, NULL, 0);
	}
}

/* Runs for every request before anything answers it, 413s included. */
static void prepare(struct http_request *req, void *arg)
{
	(void)arg;
	http_response_header(req, "X-Prepared", "yes");
}

static void complete(struct http_request *req, unsigned status, double seconds, void *arg)
{
	const char *tag = http_request_tag(req);
	(void)arg;
	seen.completes++;
	if (seconds < 0 || seconds > 60 || status > 599)
		seen.bad_complete++;
	if (status == 413 && tag == NULL)
		seen.complete_413++;
	if (status == 503 && tag != NULL && strcmp(tag, "hold") == 0)
		seen.complete_503_hold++;
	if (status == 503 && tag != NULL && strcmp(tag, "gone") == 0 &&
	    strcmp(http_request_path(req), "/count") == 0)
		seen.count_gone++;
}

/* ---- client side (its own thread) --------------------------------------------------- */

static unsigned port;
static int requests_sent;

struct resp {
	long status;
	struct buf body;
	struct buf headers;
	char ctype[128];
	long connects;
	double seconds;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	buf_append(ud, p, size * n);
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	buf_append(ud, p, size * n);
	return size * n;
}

/* Value of response header `name` (first match), copied into out; "" when absent. */
static const char *resp_header(const struct resp *r, const char *name, char *out, size_t len)
{
	size_t nl = strlen(name);
	const char *p = r->headers.data;
	out[0] = '\0';
	while (p != NULL && *p != '\0') {
		const char *eol = strstr(p, "\r\n");
		if (eol == NULL)
			break;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ')
				v++;
			size_t vl = (size_t)(eol - v);
			if (vl >= len)
				vl = len - 1;
			memcpy(out, v, vl);
			out[vl] = '\0';
			break;
		}
		p = eol + 2;
	}
	return out;
}

/* How many times response header `name` occurs. */
static int header_count(const struct resp *r, const char *name)
{
	size_t nl = strlen(name);
	int n = 0;
	for (const char *p = r->headers.data; p != NULL && *p != '\0';) {
		const char *eol = strstr(p, "\r\n");
		if (eol == NULL)
			break;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':')
			n++;
		p = eol + 2;
	}
	return n;
}

static void resp_init(struct resp *r)
{
	memset(r, 0, sizeof *r);
	buf_init(&r->body);
	buf_init(&r->headers);
}

static void resp_close(struct resp *r)
{
	buf_close(&r->body);
	buf_close(&r->headers);
}

static void easy_setup(CURL *c, const char *path, struct resp *r)
{
	char url[512];
	snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
}

static CURLcode easy_finish(CURL *c, struct resp *r)
{
	requests_sent++;
	CURLcode rc = curl_easy_perform(c);
	char *ct = NULL;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->connects);
	curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->seconds);
	curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
	snprintf(r->ctype, sizeof r->ctype, "%s", ct ? ct : "");
	if (rc != CURLE_OK)
		fprintf(stderr, "curl: %s\n", curl_easy_strerror(rc));
	return rc;
}

static void get(CURL *c, const char *path, struct resp *r)
{
	curl_easy_reset(c);
	easy_setup(c, path, r);
	CHECK_EQ_INT(easy_finish(c, r), CURLE_OK);
}

static void test_sync_and_keepalive(void)
{
	CURL *c = curl_easy_init();
	struct resp r;
	char h[128];

	resp_init(&r);
	curl_easy_reset(c);
	easy_setup(c, "/sync", &r);
	struct curl_slist *hdrs = curl_slist_append(NULL, "X-Custom-Thing: abc");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	CHECK_EQ_INT(easy_finish(c, &r), CURLE_OK);
	curl_slist_free_all(hdrs);
	CHECK_EQ_INT(r.status, 201);
	CHECK_EQ_INT(r.body.len, 5);
	CHECK_EQ_STR(r.body.data, "hello");
	CHECK_EQ_STR(r.ctype, "text/plain");
	CHECK_EQ_STR(resp_header(&r, "x-test", h, sizeof h), "yes");
	CHECK_EQ_STR(resp_header(&r, "X-Echo", h, sizeof h), "abc");
	CHECK(strncmp(resp_header(&r, "X-Peer", h, sizeof h), "127.0.0.1:", 10) == 0);
	CHECK_EQ_STR(resp_header(&r, "X-Prepared", h, sizeof h), "yes");
	CHECK_EQ_INT(r.connects, 1);
	resp_close(&r);

	/* A header set again replaces the earlier one instead of repeating it. */
	resp_init(&r);
	get(c, "/replace", &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_INT(header_count(&r, "X-Prepared"), 1);
	CHECK_EQ_STR(resp_header(&r, "X-Prepared", h, sizeof h), "replaced");
	resp_close(&r);

	/* Same easy handle: the connection must be reused. */
	resp_init(&r);
	get(c, "/sync", &r);
	CHECK_EQ_INT(r.status, 201);
	CHECK_EQ_INT(r.connects, 0);
	CHECK_EQ_STR(resp_header(&r, "X-Echo", h, sizeof h), "(none)");
	resp_close(&r);

	/* An asynchronous answer on the kept-alive connection, then a sync one after it: a
	 * resumed connection must go back to normal keep-alive service. */
	resp_init(&r);
	get(c, "/async?i=7", &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_STR(r.body.data, "async 7");
	CHECK_EQ_STR(resp_header(&r, "X-Async", h, sizeof h), "1");
	CHECK_EQ_INT(r.connects, 0);
	CHECK(r.seconds >= ASYNC_DELAY / 1000.0 * 0.9);
	/* The resume must be processed promptly, not at the next MHD timeout. */
	CHECK(r.seconds < 1.0);
	resp_close(&r);

	resp_init(&r);
	get(c, "/sync", &r);
	CHECK_EQ_INT(r.status, 201);
	CHECK_EQ_INT(r.connects, 0);
	resp_close(&r);

	/* Unknown paths and any method reach the handler. */
	resp_init(&r);
	get(c, "/nowhere", &r);
	CHECK_EQ_INT(r.status, 404);
	CHECK_EQ_INT(r.body.len, 0);
	resp_close(&r);

	resp_init(&r);
	curl_easy_reset(c);
	easy_setup(c, "/method", &r);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "BREW");
	CHECK_EQ_INT(easy_finish(c, &r), CURLE_OK);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_STR(r.body.data, "BREW");
	resp_close(&r);

	curl_easy_cleanup(c);
}

static void post(CURL *c, const char *path, const void *data, size_t len, struct resp *r)
{
	curl_easy_reset(c);
	easy_setup(c, path, r);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	CHECK_EQ_INT(easy_finish(c, r), CURLE_OK);
}

struct chunked_src {
	size_t left;
};

static size_t on_read(char *p, size_t size, size_t n, void *ud)
{
	struct chunked_src *src = ud;
	size_t k = size * n < src->left ? size * n : src->left;
	memset(p, 'z', k);
	src->left -= k;
	return k;
}

static void test_bodies(void)
{
	CURL *c = curl_easy_init();
	struct resp r;

	/* Small binary body with NULs and high bytes. */
	static const char small[] = {'a', 0, 'b', (char)0xff, 0, '\r', '\n', (char)0x80};
	resp_init(&r);
	post(c, "/echo", small, sizeof small, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_INT(r.body.len, sizeof small);
	CHECK(r.body.len == sizeof small && memcmp(r.body.data, small, sizeof small) == 0);
	CHECK_EQ_STR(r.ctype, "application/octet-stream");
	resp_close(&r);

	/* 100 KiB arrives in many upload chunks; every byte value appears. */
	size_t big = 100 * 1024;
	unsigned char *data = malloc(big);
	for (size_t i = 0; i < big; i++)
		data[i] = (unsigned char)((i * 131u + (i >> 8)) & 0xff);
	resp_init(&r);
	post(c, "/echo", data, big, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_INT(r.body.len, big);
	CHECK(r.body.len == big && memcmp(r.body.data, data, big) == 0);
	resp_close(&r);

	/* Exactly max_body is still accepted. */
	unsigned char *edge = calloc(1, MAX_BODY);
	resp_init(&r);
	post(c, "/echo", edge, MAX_BODY, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_INT(r.body.len, MAX_BODY);
	resp_close(&r);
	free(edge);

	/* An empty POST is a zero-length body, not an error. */
	resp_init(&r);
	post(c, "/echo", "", 0, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_INT(r.body.len, 0);
	resp_close(&r);

	/* Content-Length over max_body: rejected before the body is read. */
	size_t over = MAX_BODY + 100 * 1024;
	unsigned char *huge = calloc(1, over);
	resp_init(&r);
	post(c, "/big", huge, over, &r);
	CHECK_EQ_INT(r.status, 413);
	CHECK_EQ_STR(r.ctype, "application/problem+json");
	CHECK(strstr(r.body.data ? r.body.data : "",
	             "\"type\":\"https://cloudless.dev/problems/too-large\"") != NULL);
	CHECK(strstr(r.body.data ? r.body.data : "", "\"status\":413") != NULL);
	CHECK(strstr(r.body.data ? r.body.data : "", "request body exceeds 204800 bytes") != NULL);
	{
		/* The server's own 413 still went through the prepare hook. */
		char h[16];
		CHECK_EQ_STR(resp_header(&r, "X-Prepared", h, sizeof h), "yes");
	}
	resp_close(&r);
	free(huge);

	/* Chunked upload (no Content-Length) that overflows while streaming. */
	struct chunked_src src = {.left = over};
	resp_init(&r);
	curl_easy_reset(c);
	easy_setup(c, "/big-chunked", &r);
	struct curl_slist *hdrs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(c, CURLOPT_READDATA, &src);
	CHECK_EQ_INT(easy_finish(c, &r), CURLE_OK);
	curl_slist_free_all(hdrs);
	CHECK_EQ_INT(r.status, 413);
	CHECK_EQ_STR(r.ctype, "application/problem+json");
	CHECK(strstr(r.body.data ? r.body.data : "", "Payload Too Large") != NULL);
	resp_close(&r);

	/* The server is still fine afterwards. */
	resp_init(&r);
	post(c, "/echo", "ok", 2, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_STR(r.body.data, "ok");
	resp_close(&r);

	free(data);
	curl_easy_cleanup(c);
}

static void test_query(void)
{
	CURL *c = curl_easy_init();
	struct resp r;

	resp_init(&r);
	get(c, "/query?a=1&flag&b=x%20y", &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_STR(r.body.data, "a=[1] flag=[] b=[x y] zz=[NULL] qs=[a=1&flag&b=x%20y]");
	resp_close(&r);

	/* Re-encoding keeps unreserved characters and escapes everything else. */
	resp_init(&r);
	get(c, "/query?a=%2F%26%3D~-._&b=%C3%A9", &r);
	CHECK_EQ_STR(r.body.data, "a=[/&=~-._] flag=[NULL] b=[\xc3\xa9] zz=[NULL] "
	                          "qs=[a=%2F%26%3D~-._&b=%C3%A9]");
	resp_close(&r);

	resp_init(&r);
	get(c, "/noquery", &r);
	CHECK_EQ_STR(r.body.data, "<empty>");
	resp_close(&r);

	/* %00 in the path or a query value does not cut the string short. */
	resp_init(&r);
	get(c, "/nul%00x?v=a%00b%zz%4", &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_STR(r.body.data, "a\xC0\x80"
	                          "b%zz%4");
	resp_close(&r);

	curl_easy_cleanup(c);
}

/* A synthetic request (a batch item) reads like one from a connection: the query decoded as
 * MHD decodes it, headers case-insensitive, the body as sent; http_respond calls back with
 * the response stored for the getters. */
static unsigned answered_calls;

static void on_answered(struct http_request *req, void *arg)
{
	(void)req;
	CHECK(arg == &answered_calls);
	answered_calls++;
}

static void test_synthetic(void)
{
	static const char q[] = "a=1&flag&b=x%20y+z&v=a%00b%zz%4&e=";
	struct http_synthetic_header h[] = {{"Idempotency-Key", "k1", 15, 2},
	                                    {"Content-Type", "text/plain", 12, 10}};
	struct http_synthetic in = {.method = "PUT",
	                            .method_len = 3,
	                            .path = "/v1/kv/a b",
	                            .path_len = 10,
	                            .query = q,
	                            .query_len = sizeof q - 1,
	                            .body = "v\0x",
	                            .body_len = 3,
	                            .headers = h,
	                            .n_headers = 2};
	struct http_request *req = http_request_synthetic(&in, on_answered, &answered_calls);
	size_t len = 0;
	CHECK_EQ_STR(http_request_method(req), "PUT");
	CHECK_EQ_STR(http_request_path(req), "/v1/kv/a b");
	CHECK_EQ_STR(http_request_query(req, "a"), "1");
	CHECK_EQ_STR(http_request_query(req, "flag"), "");
	CHECK_EQ_STR(http_request_query(req, "b"), "x y z");
	CHECK_EQ_STR(http_request_query(req, "v"), "a\xC0\x80"
	                                           "b%zz%4");
	CHECK_EQ_STR(http_request_query(req, "e"), "");
	CHECK(http_request_query(req, "zz") == NULL);
	CHECK_EQ_STR(http_request_query_string(req), "a=1&flag&b=x%20y%20z&v=a%C0%80b%25zz%254&e=");
	CHECK_EQ_STR(http_request_header(req, "idempotency-key"), "k1");
	CHECK(http_request_header(req, "Accept") == NULL);
	CHECK(memcmp(http_request_body(req, &len), "v\0x", 3) == 0 && len == 3);
	CHECK_EQ_STR(http_request_peer(req), "synthetic");

	answered_calls = 0;
	http_response_header(req, "X-One", "1");
	http_response_header(req, "x-one", "2"); /* replaces */
	http_respond(req, 409, "application/problem+json", "{}", 2);
	http_respond(req, 200, NULL, NULL, 0); /* ignored */
	CHECK_EQ_INT(answered_calls, 1);
	CHECK(http_request_answered(req));
	CHECK_EQ_INT(http_response_status(req), 409);
	CHECK_EQ_STR(http_response_content_type(req), "application/problem+json");
	CHECK(memcmp(http_response_body(req, &len), "{}", 2) == 0 && len == 2);
	CHECK_EQ_INT(http_response_header_count(req), 1);
	const char *name = NULL, *value = NULL;
	http_response_header_at(req, 0, &name, &value);
	CHECK_EQ_STR(name, "X-One");
	CHECK_EQ_STR(value, "2");
	http_request_synthetic_free(req);
}

static void test_concurrent(void)
{
	CURLM *m = curl_multi_init();
	CURL *easy[CONCURRENT];
	struct resp resps[CONCURRENT];
	char path[64];

	for (int i = 0; i < CONCURRENT; i++) {
		resp_init(&resps[i]);
		easy[i] = curl_easy_init();
		snprintf(path, sizeof path, "/gather?i=%d", i);
		easy_setup(easy[i], path, &resps[i]);
		curl_easy_setopt(easy[i], CURLOPT_PRIVATE, &resps[i]);
		curl_multi_add_handle(m, easy[i]);
		requests_sent++;
	}
	int running = 1;
	while (running) {
		if (curl_multi_perform(m, &running) != CURLM_OK)
			break;
		if (running)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	int ok = 0, msgs;
	CURLMsg *msg;
	while ((msg = curl_multi_info_read(m, &msgs)) != NULL)
		if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK)
			ok++;
	CHECK_EQ_INT(ok, CONCURRENT);
	int right = 0;
	for (int i = 0; i < CONCURRENT; i++) {
		long status = 0;
		curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
		snprintf(path, sizeof path, "%d", i);
		if (status == 200 && resps[i].body.data != NULL &&
		    strcmp(resps[i].body.data, path) == 0)
			right++;
		curl_multi_remove_handle(m, easy[i]);
		curl_easy_cleanup(easy[i]);
		resp_close(&resps[i]);
	}
	CHECK_EQ_INT(right, CONCURRENT);
	curl_multi_cleanup(m);
}

static int raw_connect(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	return fd;
}

static void raw_send(int fd, const char *path)
{
	char req[128];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
	CHECK(send(fd, req, (size_t)n, MSG_NOSIGNAL) == n);
	requests_sent++;
}

/* The status of the one answer on fd (0 when none came within 5 s). */
static int raw_status(int fd)
{
	char buf[512];
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
	int status = 0;
	if (n > 0) {
		buf[n] = '\0';
		sscanf(buf, "HTTP/1.1 %d", &status);
	}
	return status;
}

/* While the loop is held (/stall), two requests queue behind it: the client of one closes
 * its connection, the other waits. The first is not run (503 client-gone, tag "gone"); the
 * second is, and is answered. */
static void test_gone_client(void)
{
	int stall = raw_connect(), gone = raw_connect(), waits = raw_connect();
	atomic_store(&stalling, 0);
	raw_send(stall, "/stall");
	for (int i = 0; i < 500 && !atomic_load(&stalling); i++)
		usleep(1000);
	CHECK(atomic_load(&stalling));
	raw_send(gone, "/count");
	raw_send(waits, "/count");
	close(gone);
	CHECK_EQ_INT(raw_status(stall), 200);
	CHECK_EQ_INT(raw_status(waits), 200);
	close(stall);
	close(waits);
}

/* The last request: left pending until the server closes, so it must get a 503. */
static void test_close_with_pending(const char *path)
{
	CURL *c = curl_easy_init();
	struct resp r;
	resp_init(&r);
	get(c, path, &r);
	CHECK_EQ_INT(r.status, 503);
	CHECK_EQ_STR(r.ctype, "application/problem+json");
	CHECK(strstr(r.body.data ? r.body.data : "", "shutting down") != NULL);
	{
		/* Told when to come back, and that this connection is done. */
		char h[32];
		CHECK_EQ_STR(resp_header(&r, "Retry-After", h, sizeof h), "1");
		CHECK_EQ_STR(resp_header(&r, "Connection", h, sizeof h), "close");
	}
	resp_close(&r);
	curl_easy_cleanup(c);
}

static void *client_main(void *arg)
{
	(void)arg;
	test_sync_and_keepalive();
	test_bodies();
	test_query();
	test_concurrent();
	test_gone_client();
	test_close_with_pending("/hold");
	return NULL;
}

static void *client_close_inside(void *arg)
{
	(void)arg;
	test_close_with_pending("/close-inside");
	return NULL;
}

/* ---- main --------------------------------------------------------------------------- */

static void test_init_errors(void)
{
	struct http_server *s = NULL;
	char err[256];
	struct http_server_options o = {.max_body = 10, .handler = handler};

	uv_loop_t l;
	CHECK_EQ_INT(uv_loop_init(&l), 0);
	o.addr = "no-port-here";
	CHECK_EQ_INT(http_server_init(&s, &l, &o, err, sizeof err), -1);
	CHECK(s == NULL);
	CHECK(strstr(err, "no-port-here") != NULL);
	o.addr = "127.0.0.1:99999";
	CHECK_EQ_INT(http_server_init(&s, &l, &o, err, sizeof err), -1);
	CHECK(strstr(err, "bad port") != NULL);
	o.addr = "127.0.0.1:x";
	CHECK_EQ_INT(http_server_init(&s, &l, &o, err, sizeof err), -1);

	/* A port already taken is reported, not crashed on. */
	o.addr = "127.0.0.1:0";
	CHECK_EQ_INT(http_server_init(&s, &l, &o, err, sizeof err), 0);
	CHECK(s != NULL && http_server_port(s) != 0);
	char taken[64];
	snprintf(taken, sizeof taken, "127.0.0.1:%u", s ? http_server_port(s) : 0);
	struct http_server *s2 = NULL;
	o.addr = taken;
	CHECK_EQ_INT(http_server_init(&s2, &l, &o, err, sizeof err), -1);
	CHECK(s2 == NULL);
	CHECK(strstr(err, taken) != NULL);
	fprintf(stderr, "expected bind failure: %s\n", err);

	/* IPv6 loopback, when the host has it. */
	struct http_server *s6 = NULL;
	o.addr = "[::1]:0";
	if (http_server_init(&s6, &l, &o, err, sizeof err) == 0) {
		CHECK(http_server_port(s6) != 0);
		http_server_close(s6);
	} else {
		fprintf(stderr, "no IPv6 loopback, skipped: %s\n", err);
	}

	/* Closing an idle server frees everything once the loop runs. */
	http_server_close(s);
	CHECK_EQ_INT(uv_run(&l, UV_RUN_DEFAULT), 0);
	CHECK_EQ_INT(uv_loop_close(&l), 0);
}

static void run_scenario(void *(*client)(void *), const char *name)
{
	char err[256];
	struct http_server_options o = {
	    .addr = "127.0.0.1:0",
	    .max_body = MAX_BODY,
	    .handler = handler,
	    .complete = complete,
	    .prepare = prepare,
	};

	memset(&seen, 0, sizeof seen);
	requests_sent = 0;
	CHECK_EQ_INT(uv_loop_init(&loop), 0);
	int rv = http_server_init(&srv, &loop, &o, err, sizeof err);
	CHECK_EQ_INT(rv, 0);
	if (rv != 0) {
		fprintf(stderr, "%s: %s\n", name, err);
		return;
	}
	port = http_server_port(srv);
	CHECK(port != 0);
	/* What the server thread's own answers (413 and the like) carry. */
	static const char *const pub[] = {"X-Prepared", "yes"};
	http_server_set_headers(srv, pub, 1);
	uv_timer_init(&loop, &gather_timer);
	uv_timer_init(&loop, &hold_timer);
	uv_check_init(&loop, &iter_check);
	uv_check_start(&iter_check, on_iter);
	loop_thread = pthread_self();
	if (client == client_close_inside)
		/* Unused in this scenario, and nothing else would close them. */
		close_test_handles();

	pthread_t th;
	CHECK_EQ_INT(pthread_create(&th, NULL, client, NULL), 0);
	/* Returns only once the server and every test handle are closed. */
	CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
	CHECK_EQ_INT(pthread_join(th, NULL), 0);
	CHECK(srv == NULL);
	CHECK_EQ_INT(uv_loop_close(&loop), 0);

	/* What the server side saw. */
	fprintf(stderr, "%s: %d requests, %d completions\n", name, requests_sent, seen.completes);
	CHECK_EQ_INT(seen.completes, requests_sent);
	CHECK_EQ_INT(seen.bad_complete, 0);
	CHECK_EQ_INT(seen.complete_503_hold, 1);
	CHECK_EQ_INT(seen.wrong_thread, 0);
	CHECK(seen.max_per_iter >= 1 && seen.max_per_iter <= 64);
	if (client == client_main) {
		CHECK_EQ_INT(seen.calls_big, 0);
		CHECK_EQ_INT(seen.complete_413, 2);
		CHECK_EQ_INT(seen.gather_pending, CONCURRENT);
		CHECK(seen.gather_backlog >= 100 && seen.gather_backlog < 5000);
		CHECK_EQ_INT(seen.hold_backlog, 0);
		CHECK_EQ_INT(seen.count_calls, 1); /* the client that waited, not the one gone */
		CHECK_EQ_INT(seen.count_gone, 1);
		CHECK_EQ_INT(seen.max_per_iter, 64);
		CHECK_EQ_INT(seen.hold_pending, 1);
		CHECK_EQ_INT(seen.hold_answered, 0);
	}
}

int main(void)
{
	test_synthetic();
	/* A hang is a failure, not a reason to wait for meson's timeout. */
	alarm(100);
	CHECK_EQ_INT(curl_global_init(CURL_GLOBAL_DEFAULT), 0);
	test_init_errors();
	run_scenario(client_main, "main");
	run_scenario(client_close_inside, "close-inside");
	curl_global_cleanup();
	TEST_DONE();
}
