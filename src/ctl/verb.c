/* verb: what every cloudlessctl verb does around its own logic (see ctl.h): send a request
 * and turn what came of it into an exit status and at most one line on stderr, print results,
 * escape keys into URLs. Kept apart from main.c so the verb groups (and their renderers'
 * unit test) link without the dispatcher. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "ctl/ctl.h"
#include "ctl/output.h"

/* The pauses of ctl_send_patient between attempts: doubling from the first to the second. */
#define CTL_BACKOFF_MIN_MS 100u
#define CTL_BACKOFF_MAX_MS 2000u
/* The most a verb reads from a file or stdin (kv put -, workload apply -f); the cluster's own
 * --max-body (512 KiB by default) is usually far lower and answers 413 with its limit. */
#define CTL_MAX_INPUT (64u * 1024 * 1024)
/* Items asked for per page of a listing: the API's maximum. */
#define CTL_LIST_PAGE 1000u

static void vfail(const char *fmt, va_list ap)
{
	struct buf line;
	buf_init(&line);
	buf_puts(&line, "cloudlessctl: ");
	buf_vprintf(&line, fmt, ap);
	buf_puts(&line, "\n");
	fwrite(line.data, 1, line.len, stderr);
	fflush(stderr);
	buf_close(&line);
}

int ctl_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	return code;
}

int ctl_usage_error(const struct ctl *c, const char *fmt, ...)
{
	struct buf msg;
	va_list ap;
	buf_init(&msg);
	va_start(ap, fmt);
	buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	ctl_fail(CTL_EXIT_USAGE, "%s %s: %s (see 'cloudlessctl %s %s --help')", c->group, c->verb,
	         msg.data, c->group, c->verb);
	buf_close(&msg);
	return CTL_EXIT_USAGE;
}

int ctl_report_answer(const struct ctl *c, const struct ctl_response *resp)
{
	struct buf line;
	(void)c;
	buf_init(&line);
	ctl_render_problem(resp->status, resp->body, resp->body_len, &line);
	ctl_fail(CTL_EXIT_ERROR, "%s", line.data);
	buf_close(&line);
	return CTL_EXIT_ERROR;
}

/* What came of a call: CTL_EXIT_OK with *resp a 2xx answer, or the error printed and its
 * exit status (an answered 4xx/5xx kept in *resp with keep_errors, else freed). */
static int outcome(struct ctl *c, enum ctl_result r, const char *why, struct ctl_response *resp,
                   bool keep_errors)
{
	switch (r) {
	case CTL_INTERRUPTED:
		return CTL_EXIT_INTERRUPTED;
	case CTL_UNREACHABLE:
		return ctl_fail(CTL_EXIT_UNREACHABLE, "no endpoint reachable: %s", why);
	case CTL_UNKNOWN:
		return ctl_fail(CTL_EXIT_UNREACHABLE,
		                "no answer: %s; the request may or may not have been applied", why);
	case CTL_ANSWERED:
		break;
	}
	if (resp->status >= 200 && resp->status < 300)
		return CTL_EXIT_OK;
	if (!keep_errors) {
		ctl_report_answer(c, resp);
		ctl_response_free(resp);
	}
	return CTL_EXIT_ERROR;
}

int ctl_send(struct ctl *c, const struct ctl_request *req, struct ctl_response *resp,
             bool keep_errors)
{
	char why[1024];
	enum ctl_result r = ctl_call(&c->client, req, resp, why, sizeof why);
	return outcome(c, r, why, resp, keep_errors);
}

/* Answers worth asking again for: no leader (an election), the leader's own deadline, too
 * many requests. */
static bool transient(enum ctl_result r, const struct ctl_response *resp)
{
	if (r == CTL_UNREACHABLE)
		return true;
	return r == CTL_ANSWERED &&
	       (resp->status == 503 || resp->status == 504 || resp->status == 429);
}

int ctl_send_patient(struct ctl *c, const struct ctl_request *req, struct ctl_response *resp,
                     bool keep_errors)
{
	char why[1024];
	uint64_t give_up = uv_hrtime() / 1000000u + c->g.timeout_ms;
	unsigned backoff = CTL_BACKOFF_MIN_MS;
	for (;;) {
		enum ctl_result r = ctl_call(&c->client, req, resp, why, sizeof why);
		if (!transient(r, resp) || uv_hrtime() / 1000000u + backoff >= give_up)
			return outcome(c, r, why, resp, keep_errors);
		ctl_response_free(resp);
		if (!ctl_client_pause(&c->client, backoff))
			return CTL_EXIT_INTERRUPTED;
		backoff = backoff * 2 < CTL_BACKOFF_MAX_MS ? backoff * 2 : CTL_BACKOFF_MAX_MS;
	}
}

int ctl_print(const char *data, size_t len, bool newline)
{
	if (len > 0)
		fwrite(data, 1, len, stdout);
	if (newline)
		fputc('\n', stdout);
	if (fflush(stdout) != 0 || ferror(stdout))
		return ctl_fail(CTL_EXIT_ERROR, "cannot write the output");
	return CTL_EXIT_OK;
}

int ctl_print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s == NULL)
		return ctl_fail(CTL_EXIT_ERROR, "cannot encode the output");
	int rc = ctl_print(s, strlen(s), true);
	free(s);
	return rc;
}

int ctl_print_rendered(void (*render)(const json_t *, struct buf *), const json_t *doc)
{
	struct buf out;
	buf_init(&out);
	render(doc, &out);
	int rc = ctl_print(out.data, out.len, false);
	buf_close(&out);
	return rc;
}

json_t *ctl_parse_answer(const struct ctl_response *resp)
{
	json_error_t e;
	json_t *doc = json_loadb(resp->body, resp->body_len, 0, &e);
	if (doc == NULL)
		ctl_fail(CTL_EXIT_ERROR, "%s answered something that is not JSON: %s", resp->base,
		         e.text);
	return doc;
}

void ctl_put_escaped(struct buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '~') {
			buf_append(b, s + i, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			buf_append(b, e, 3);
		}
	}
}

int ctl_print_answer(const struct ctl *c, struct ctl_response *resp,
                     void (*render)(const json_t *, struct buf *))
{
	int rc;
	if (c->output == CTL_OUTPUT_JSON) {
		rc = ctl_print(resp->body, resp->body_len, true);
	} else {
		json_t *doc = ctl_parse_answer(resp);
		rc = doc != NULL ? ctl_print_rendered(render, doc) : CTL_EXIT_ERROR;
		json_decref(doc);
	}
	ctl_response_free(resp);
	return rc;
}

int ctl_read_input(struct ctl *c, const char *path, struct buf *out)
{
	bool std_in = strcmp(path, "-") == 0;
	FILE *f = std_in ? stdin : fopen(path, "rb");
	char chunk[65536];
	size_t n;
	int rc = CTL_EXIT_OK;
	if (f == NULL)
		return ctl_fail(CTL_EXIT_ERROR, "cannot open %s: %s", path, strerror(errno));
	while (rc == CTL_EXIT_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (out->len + n > CTL_MAX_INPUT)
			rc = ctl_usage_error(c, "%s is larger than %u MiB",
			                     std_in ? "the input on stdin" : path,
			                     CTL_MAX_INPUT >> 20);
		else
			buf_append(out, chunk, n);
	}
	if (rc == CTL_EXIT_OK && ferror(f))
		rc = ctl_fail(CTL_EXIT_ERROR, "cannot read %s: %s", std_in ? "stdin" : path,
		              strerror(errno));
	if (!std_in)
		fclose(f);
	return rc;
}

/* A listing as it is read. */
struct listing {
	json_t *items;             /* of every page */
	char *token;               /* the continue token where it stopped (NULL: complete) */
	struct ctl_response first; /* the first page's answer */
	size_t pages;
};

/* One page: its items appended to l->items, its continue token kept. */
static int list_page(struct ctl *c, const char *path, unsigned limit, struct listing *l)
{
	struct ctl_response resp;
	struct buf url;
	buf_init(&url);
	buf_printf(&url, "%s&limit=%u", path, limit);
	if (l->token != NULL) {
		buf_puts(&url, "&continue=");
		ctl_put_escaped(&url, l->token, strlen(l->token));
	}
	struct ctl_request req = {.method = "GET", .path = url.data, .retry_unknown = true};
	int rc = ctl_send(c, &req, &resp, false);
	buf_close(&url);
	if (rc != CTL_EXIT_OK)
		return rc;
	json_t *page = ctl_parse_answer(&resp);
	if (page == NULL || !json_is_array(json_object_get(page, "items"))) {
		json_decref(page);
		ctl_response_free(&resp);
		return page == NULL ? CTL_EXIT_ERROR
		                    : ctl_fail(CTL_EXIT_ERROR, "the listing has no items");
	}
	json_array_extend(l->items, json_object_get(page, "items"));
	const char *cont = ctl_json_str(page, "continue", NULL);
	free(l->token);
	l->token = cont != NULL ? strdup(cont) : NULL;
	json_decref(page);
	if (l->pages++ == 0)
		l->first = resp;
	else
		ctl_response_free(&resp);
	return CTL_EXIT_OK;
}

static int list_print(const struct ctl *c, const struct listing *l,
                      void (*render)(const json_t *, struct buf *), const char *none)
{
	json_t *list = json_pack("{s:O, s:s?}", "items", l->items, "continue", l->token);
	int rc;
	if (list == NULL)
		return ctl_fail(CTL_EXIT_ERROR, "out of memory");
	if (c->output == CTL_OUTPUT_JSON && l->pages == 1)
		rc = ctl_print(l->first.body, l->first.body_len, true);
	else if (c->output == CTL_OUTPUT_JSON)
		rc = ctl_print_json(list);
	else if (json_array_size(l->items) == 0)
		rc = fprintf(stderr, "%s\n", none) < 0 ? CTL_EXIT_ERROR : CTL_EXIT_OK;
	else
		rc = ctl_print_rendered(render, list);
	json_decref(list);
	return rc;
}

int ctl_list_show(struct ctl *c, const char *path, unsigned max,
                  void (*render)(const json_t *, struct buf *), const char *none)
{
	struct listing l = {.items = json_array()};
	int rc;
	do {
		unsigned limit = CTL_LIST_PAGE;
		if (max > 0 && max - json_array_size(l.items) < limit)
			limit = max - (unsigned)json_array_size(l.items);
		rc = list_page(c, path, limit, &l);
	} while (rc == CTL_EXIT_OK && l.token != NULL &&
	         (max == 0 || json_array_size(l.items) < max));
	if (rc == CTL_EXIT_OK)
		rc = list_print(c, &l, render, none);
	json_decref(l.items);
	free(l.token);
	ctl_response_free(&l.first);
	return rc;
}

int ctl_send_write(struct ctl *c, const struct ctl_write *w, struct ctl_response *resp)
{
	struct fwd_header h[3];
	size_t n = 0;
	char version[32];
	struct buf url;
	for (const char *p = w->idempotency_key; p != NULL && *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return ctl_usage_error(c,
			                       "--idempotency-key: use visible ASCII characters");
	if (w->idempotency_key != NULL)
		h[n++] = (struct fwd_header){CLOUDLESS_HDR_IDEMPOTENCY_KEY, w->idempotency_key};
	if (w->if_version != NULL && w->if_version->set) {
		snprintf(version, sizeof version, "\"%llu\"",
		         (unsigned long long)w->if_version->value);
		h[n++] = (struct fwd_header){"If-Match", version};
	}
	if (w->json_body)
		h[n++] = (struct fwd_header){"Content-Type", "application/json"};
	buf_init(&url);
	buf_printf(&url, "%s%stimeout=%ums", w->path, strchr(w->path, '?') != NULL ? "&" : "?",
	           c->g.timeout_ms);
	struct ctl_request req = {.method = w->method,
	                          .path = url.data,
	                          .headers = n > 0 ? h : NULL,
	                          .n_headers = n,
	                          .body = w->body,
	                          .body_len = w->body_len,
	                          .retry_unknown = w->idempotency_key != NULL};
	int rc = ctl_send(c, &req, resp, false);
	buf_close(&url);
	return rc;
}

int ctl_print_write(const struct ctl *c, struct ctl_response *resp, const json_t *answer,
                    const char *key, const char *action)
{
	json_t *parsed = NULL;
	int rc;
	if (c->output == CTL_OUTPUT_JSON) {
		rc = ctl_print(resp->body, resp->body_len, true);
	} else if (answer == NULL && (answer = parsed = ctl_parse_answer(resp)) == NULL) {
		rc = CTL_EXIT_ERROR;
	} else {
		struct buf line;
		buf_init(&line);
		ctl_render_write(key, action, answer, &line);
		rc = ctl_print(line.data, line.len, false);
		buf_close(&line);
	}
	json_decref(parsed);
	ctl_response_free(resp);
	return rc;
}
