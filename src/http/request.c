/* request: http_request accessors, responses and synthetic requests (see http.h).
 *
 * A request from a connection and a synthetic one are the same structure holding copies of
 * everything, so the accessors do not care where it came from; only http_respond does (a
 * synthetic request calls its creator back, a real one goes to the server, http.c). Runs on
 * the loop thread, except http_request_free and the builders http.c calls on its thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cloudless/protocol.h"
#include "http/internal.h"
#include "http/problem.h"
#include "log/log.h"
#include "util/text.h"

void *http_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL) {
		/* Same policy as buf.c: a coordinator that cannot allocate a header cannot make
		 * progress safely. */
		log_error("http out of memory", "bytes=%zu", n);
		abort();
	}
	return p;
}

char *http_dup_n(const char *p, size_t n)
{
	char *s = http_xmalloc(n + 1);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

char *http_xstrdup(const char *s)
{
	return http_dup_n(s, strlen(s));
}

struct http_request *http_request_alloc(void)
{
	struct http_request *req = calloc(1, sizeof *req);
	if (req == NULL) {
		log_error("http out of memory", "bytes=%zu", sizeof *req);
		abort();
	}
	buf_init(&req->body);
	req->start_ns = uv_hrtime();
	req->fd = -1;
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

void http_request_free(struct http_request *req)
{
	if (req == NULL)
		return;
	free_pairs(req->req_headers, req->n_req_headers);
	free_pairs(req->args, req->n_args);
	free_pairs(req->headers, req->nheaders);
	free(req->content_type);
	free(req->resp_body);
	free(req->out_head);
	free(req->query_string);
	free(req->method);
	free(req->path);
	buf_close(&req->body);
	free(req);
}

/* ---- decoding ---------------------------------------------------------------------- */

/* Percent-decodes s in place. "%00" becomes C0 80, an overlong encoding that is never valid
 * UTF-8, so key and prefix validation refuse it with 400 rather than "PUT /v1/kv/a%00b"
 * silently writing key "a". A '%' not followed by two hex digits stays as it is. */
static void unescape_no_nul(char *s)
{
	char *w = s;
	for (const char *r = s; *r != '\0';) {
		int hi = r[0] == '%' ? text_hex_value(r[1]) : -1;
		int lo = hi >= 0 ? text_hex_value(r[2]) : -1;
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
}

char *http_decode_path(const char *p, size_t n)
{
	char *s = http_dup_n(p, n);
	unescape_no_nul(s);
	return s;
}

/* One query component: '+' is a space, then percent escapes. */
static char *decode_component(const char *p, size_t n)
{
	char *s = http_dup_n(p, n);
	for (char *c = s; *c != '\0'; c++)
		if (*c == '+')
			*c = ' ';
	unescape_no_nul(s);
	return s;
}

void http_request_parse_query(struct http_request *req, const char *q, size_t len)
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

/* ---- accessors --------------------------------------------------------------------- */

const char *http_request_method(const struct http_request *req)
{
	return req->method;
}

const char *http_request_path(const struct http_request *req)
{
	return req->path;
}

/* The first pair named `name` (NULL when none) and how many there are. Query parameter names
 * are case-sensitive, header names are not. */
static const struct http_header *find_pair(const struct http_header *h, size_t n, const char *name,
                                           bool nocase, unsigned *count)
{
	const struct http_header *first = NULL;
	unsigned k = 0;
	for (size_t i = 0; i < n; i++)
		if ((nocase ? strcasecmp(h[i].name, name) : strcmp(h[i].name, name)) == 0) {
			if (first == NULL)
				first = &h[i];
			k++;
		}
	if (count != NULL)
		*count = k;
	return first;
}

const char *http_request_query(const struct http_request *req, const char *name)
{
	const struct http_header *a = find_pair(req->args, req->n_args, name, false, NULL);
	return a == NULL ? NULL : a->value != NULL ? a->value : "";
}

unsigned http_request_query_count(const struct http_request *req, const char *name)
{
	unsigned n;
	find_pair(req->args, req->n_args, name, false, &n);
	return n;
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

const char *http_request_query_string(struct http_request *req)
{
	if (req->query_string == NULL) {
		struct buf b;
		buf_init(&b);
		for (size_t i = 0; i < req->n_args; i++) {
			const struct http_header *a = &req->args[i];
			if (b.len > 0)
				buf_put_u8(&b, '&');
			percent_encode(&b, a->name, strlen(a->name));
			if (a->value != NULL) {
				buf_put_u8(&b, '=');
				percent_encode(&b, a->value, strlen(a->value));
			}
		}
		req->query_string = b.len > 0 ? buf_detach(&b, NULL) : http_xstrdup("");
		buf_close(&b);
	}
	return req->query_string;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	const struct http_header *h =
	    find_pair(req->req_headers, req->n_req_headers, name, true, NULL);
	return h != NULL ? h->value : NULL;
}

unsigned http_request_header_count(const struct http_request *req, const char *name)
{
	unsigned n;
	find_pair(req->req_headers, req->n_req_headers, name, true, &n);
	return n;
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
	if (req->peer[0] == '\0')
		snprintf(req->peer, sizeof req->peer, "%s",
		         req->s == NULL ? "synthetic" : "unknown");
	return req->peer;
}

bool http_request_is_synthetic(const struct http_request *req)
{
	return req->s == NULL;
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

bool http_request_answered(const struct http_request *req)
{
	return req->answered;
}

/* ---- responses --------------------------------------------------------------------- */

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
			char *v = http_xstrdup(value);
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
	h[req->nheaders].name = http_xstrdup(name);
	h[req->nheaders].value = http_xstrdup(value);
	req->nheaders++;
}

void http_respond_take(struct http_request *req, unsigned status, const char *content_type,
                       void *body, size_t len)
{
	if (req->answered) {
		log_warn("http duplicate respond ignored", "method=%s path=%s status=%u first=%u",
		         req->method, req->path, status, req->status);
		free(body);
		return;
	}
	req->answered = true;
	req->status = status;
	req->content_type = content_type != NULL ? http_xstrdup(content_type) : NULL;
	req->resp_body = len > 0 ? body : NULL;
	if (len == 0)
		free(body);
	req->resp_len = len;
	if (req->s == NULL) {
		req->on_answered(req, req->answered_arg);
		return;
	}
	http_server_answered(req);
}

void http_respond(struct http_request *req, unsigned status, const char *content_type,
                  const void *body, size_t len)
{
	void *copy = NULL;
	if (len > 0 && !req->answered) {
		copy = http_xmalloc(len);
		memcpy(copy, body, len);
	}
	http_respond_take(req, status, content_type, copy, req->answered ? 0 : len);
}

/* ---- the server's own answers ------------------------------------------------------ */

void http_date(char *out, size_t len)
{
	/* One strftime per second per thread. */
	static __thread time_t last;
	static __thread char cached[40];
	time_t now = time(NULL);
	if (now != last || cached[0] == '\0') {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		last = now;
	}
	snprintf(out, len, "%s", cached);
}

static void json_escape(struct buf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			buf_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			buf_put_u8(b, '?');
		else
			buf_put_u8(b, *p);
	}
}

void http_problem_body(struct buf *b, unsigned status, const char *slug, const char *detail)
{
	buf_printf(b,
	           "{\"type\":\"" CLOUDLESS_PROBLEM_BASE "%s\",\"title\":\"%s\",\"status\":%u,"
	           "\"detail\":\"",
	           slug, http_reason(status), status);
	json_escape(b, detail);
	buf_puts(b, "\"}");
}

/* ---- synthetic requests ------------------------------------------------------------ */

struct http_request *http_request_synthetic(const struct http_synthetic *in,
                                            http_answered_fn on_answered, void *arg)
{
	struct http_request *req = http_request_alloc();
	req->method = http_dup_n(in->method, in->method_len);
	req->path = http_dup_n(in->path, in->path_len);
	buf_append(&req->body, in->body, in->body_len);
	http_request_parse_query(req, in->query, in->query_len);
	if (in->n_headers > 0) {
		req->req_headers = http_xmalloc(in->n_headers * sizeof *req->req_headers);
		for (size_t i = 0; i < in->n_headers; i++) {
			req->req_headers[i].name =
			    http_dup_n(in->headers[i].name, in->headers[i].name_len);
			req->req_headers[i].value =
			    http_dup_n(in->headers[i].value, in->headers[i].value_len);
		}
		req->n_req_headers = in->n_headers;
	}
	req->on_answered = on_answered;
	req->answered_arg = arg;
	return req;
}

void http_request_synthetic_free(struct http_request *req)
{
	if (req != NULL && req->s == NULL)
		http_request_free(req);
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
