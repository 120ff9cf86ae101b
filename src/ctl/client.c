/* client: endpoint failover for cloudlessctl on top of forward/ (see client.h).
 *
 * forward/ is asynchronous and made for the coordinator's loop; here every call sends its
 * request(s) and runs the client's private loop until each callback has fired, so a verb is
 * sequential code and a command is over when its loop is empty. Requests that must not run
 * twice go out with forward's at-most-once mode (curl's silent re-send on a reused
 * connection is refused), like the coordinator's own forwarded writes. */
#include "ctl/client.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "util/buf.h"

#ifndef CLOUDLESS_VERSION
#define CLOUDLESS_VERSION "dev"
#endif

/* Time past the request's own deadline (which the server is told with ?timeout) for the
 * server's 504 to reach us. */
#define CTL_GRACE_MS 1000u
/* A request that may move on to another endpoint after a silent one gives each endpoint a
 * share of --timeout, but not less than this (nor more than what is left). */
#define CTL_MIN_ATTEMPT_MS 250u
/* Leader hints followed in one call, beyond the endpoints themselves. */
#define CTL_MAX_HINTS 4

static int endpoint_split(const char *item, const char **scheme, char *hostport, size_t len,
                          char *why, size_t whylen)
{
	const char *hp = item;
	*scheme = "http";
	if (strncmp(item, "http://", 7) == 0) {
		hp = item + 7;
	} else if (strncmp(item, "https://", 8) == 0) {
		*scheme = "https";
		hp = item + 8;
	} else if (strstr(item, "://") != NULL) {
		snprintf(why, whylen,
		         "only http:// and https:// endpoints are supported, got \"%s\"", item);
		return -1;
	}
	size_t n = strlen(hp);
	if (n > 0 && hp[n - 1] == '/')
		n--;
	if (n >= len || memchr(hp, '/', n) != NULL) {
		snprintf(why, whylen, "an endpoint is host:port or http://host:port, got \"%s\"",
		         item);
		return -1;
	}
	memcpy(hostport, hp, n);
	hostport[n] = '\0';
	return flags_check_hostport(hostport, why, whylen);
}

int ctl_check_endpoint(const char *item, char *why, size_t whylen)
{
	const char *scheme;
	char hostport[300];
	return endpoint_split(item, &scheme, hostport, sizeof hostport, why, whylen);
}

int ctl_client_init(struct ctl_client *c, const struct flags_list *endpoints, unsigned timeout_ms,
                    char *err, size_t errlen)
{
	memset(c, 0, sizeof *c);
	c->timeout_ms = timeout_ms;
	c->bases = calloc(endpoints->n > 0 ? endpoints->n : 1, sizeof *c->bases);
	if (c->bases == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < endpoints->n; i++) {
		const char *scheme;
		char hostport[300], why[200], base[320];
		if (endpoint_split(endpoints->items[i], &scheme, hostport, sizeof hostport, why,
		                   sizeof why) != 0) {
			snprintf(err, errlen, "--endpoints: %s", why);
			ctl_client_close(c);
			return -1;
		}
		snprintf(base, sizeof base, "%s://%s", scheme, hostport);
		c->bases[c->n_bases] = strdup(base);
		if (c->bases[c->n_bases++] == NULL) {
			snprintf(err, errlen, "out of memory");
			ctl_client_close(c);
			return -1;
		}
	}
	int rc = uv_loop_init(&c->loop);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the event loop: %s", uv_strerror(rc));
		ctl_client_close(c);
		return -1;
	}
	c->loop_open = true;
	uv_timer_init(&c->loop, &c->pause);
	c->pause.data = c;
	if (fwd_init(&c->fwd, &c->loop) != 0 ||
	    fwd_set_user_agent(c->fwd, "cloudlessctl/" CLOUDLESS_VERSION) != 0) {
		snprintf(err, errlen, "cannot start the HTTP client");
		ctl_client_close(c);
		return -1;
	}
	return 0;
}

static void on_fwd_closed(void *arg)
{
	*(bool *)arg = true;
}

void ctl_client_close(struct ctl_client *c)
{
	if (c->fwd != NULL) {
		bool closed = false;
		fwd_close(c->fwd, on_fwd_closed, &closed);
		while (!closed)
			uv_run(&c->loop, UV_RUN_ONCE);
		c->fwd = NULL;
	}
	if (c->loop_open) {
		uv_close((uv_handle_t *)&c->pause, NULL);
		if (c->sigint_open)
			uv_close((uv_handle_t *)&c->sigint, NULL);
		uv_run(&c->loop, UV_RUN_DEFAULT); /* the handles closing above (and forward's,
		                                    when an interrupt closed it) */
		uv_loop_close(&c->loop);
	}
	for (size_t i = 0; i < c->n_bases; i++)
		free(c->bases[i]);
	free(c->bases);
	free(c->authorization);
	memset(c, 0, sizeof *c);
}

/* SIGINT: everything in flight is cancelled (forward runs their callbacks with FWD_CANCELED)
 * and forward closed; ctl_client_close() lets its handles finish closing. */
static void on_sigint(uv_signal_t *h, int signum)
{
	struct ctl_client *c = h->data;
	(void)signum;
	c->interrupted = true;
	uv_timer_stop(&c->pause);
	if (c->fwd != NULL) {
		struct fwd *f = c->fwd;
		c->fwd = NULL;
		fwd_close(f, NULL, NULL);
	}
}

int ctl_client_catch_interrupt(struct ctl_client *c)
{
	int rc = uv_signal_init(&c->loop, &c->sigint);
	if (rc != 0)
		return rc;
	c->sigint_open = true;
	c->sigint.data = c;
	return uv_signal_start(&c->sigint, on_sigint, SIGINT);
}

static void on_pause_done(uv_timer_t *t)
{
	((struct ctl_client *)t->data)->pause_done = true;
}

bool ctl_client_pause(struct ctl_client *c, unsigned ms)
{
	c->pause_done = false;
	if (!c->interrupted)
		uv_timer_start(&c->pause, on_pause_done, ms, 0);
	while (!c->pause_done && !c->interrupted)
		uv_run(&c->loop, UV_RUN_ONCE);
	return !c->interrupted;
}

void ctl_response_free(struct ctl_response *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_headers; i++)
		free((char *)r->headers[i].name); /* the value shares the block */
	free(r->headers);
	free(r->body);
	free(r->base);
	memset(r, 0, sizeof *r);
}

const char *ctl_response_header(const struct ctl_response *r, const char *name)
{
	struct fwd_response view = {.headers = r->headers, .n_headers = r->n_headers};
	return fwd_response_header(&view, name);
}

/* ---- one attempt ------------------------------------------------------------------------- */

struct attempt {
	struct ctl_response *resp;
	enum fwd_result result;
	char error[256];
	unsigned *pending;
};

static int copy_response(const struct fwd_response *r, struct ctl_response *out)
{
	out->status = r->status;
	out->body = malloc(r->body_len + 1);
	out->headers = calloc(r->n_headers > 0 ? r->n_headers : 1, sizeof *out->headers);
	if (out->body == NULL || out->headers == NULL)
		return -1;
	memcpy(out->body, r->body, r->body_len);
	out->body[r->body_len] = '\0';
	out->body_len = r->body_len;
	for (size_t i = 0; i < r->n_headers; i++) {
		size_t nl = strlen(r->headers[i].name), vl = strlen(r->headers[i].value);
		char *block = malloc(nl + vl + 2);
		if (block == NULL)
			return -1;
		memcpy(block, r->headers[i].name, nl + 1);
		memcpy(block + nl + 1, r->headers[i].value, vl + 1);
		out->headers[out->n_headers].name = block;
		out->headers[out->n_headers++].value = block + nl + 1;
	}
	return 0;
}

static void on_answer(const struct fwd_response *r, void *arg)
{
	struct attempt *a = arg;
	a->result = r->result;
	(*a->pending)--;
	if (r->result != FWD_OK) {
		/* forward's message is "<curl's name for the error>: <what happened>"; the
		 * second part says it all ("Failed to connect to ... : Connection refused"). */
		const char *e = r->error != NULL ? r->error : "failed";
		const char *detail = strstr(e, ": ");
		snprintf(a->error, sizeof a->error, "%s", detail != NULL ? detail + 2 : e);
		return;
	}
	if (copy_response(r, a->resp) != 0) {
		ctl_response_free(a->resp);
		a->result = FWD_FAILED;
		snprintf(a->error, sizeof a->error, "out of memory reading the answer");
	}
}

/* The most headers a request of a verb carries (Content-Type, Idempotency-Key, If-Match...). */
#define CTL_MAX_HEADERS 8

int ctl_client_set_token(struct ctl_client *c, const char *token)
{
	free(c->authorization);
	c->authorization = malloc(strlen(token) + 8);
	if (c->authorization == NULL)
		return -1;
	sprintf(c->authorization, "Bearer %s", token);
	return 0;
}

/* Starts req at base; on failure to start, the attempt is already complete (not sent). */
static void attempt_start(struct ctl_client *c, const char *base, const struct ctl_request *req,
                          unsigned timeout_ms, struct attempt *a)
{
	struct buf url;
	buf_init(&url);
	buf_printf(&url, "%s%s", base, req->path);
	struct fwd_header h[CTL_MAX_HEADERS + 1];
	size_t nh = 0;
	for (size_t i = 0; i < req->n_headers && i < CTL_MAX_HEADERS; i++)
		h[nh++] = req->headers[i];
	if (c->authorization != NULL)
		h[nh++] = (struct fwd_header){"Authorization", c->authorization};
	struct fwd_request fr = {.method = req->method,
	                         .url = url.data,
	                         .headers = h,
	                         .n_headers = nh,
	                         .body = req->body,
	                         .body_len = req->body_len,
	                         .timeout_ms = timeout_ms,
	                         .fresh_connection = !req->retry_unknown};
	if (c->fwd == NULL) {
		a->result = FWD_CANCELED;
		snprintf(a->error, sizeof a->error, "interrupted");
		buf_close(&url);
		return;
	}
	(*a->pending)++;
	if (fwd_send(c->fwd, &fr, on_answer, a) != 0) {
		(*a->pending)--;
		a->result = FWD_CONNECT_FAILED;
		snprintf(a->error, sizeof a->error,
		         "the request could not be sent (bad URL or header)");
	}
	buf_close(&url);
}

static void run_until_done(struct ctl_client *c, const unsigned *pending)
{
	while (*pending > 0)
		uv_run(&c->loop, UV_RUN_ONCE);
}

static const char *display(const char *base)
{
	const char *p = strstr(base, "://");
	return p != NULL ? p + 3 : base;
}

static const char *scheme_of(const struct ctl_client *c)
{
	return c->n_bases > 0 && strncmp(c->bases[0], "https:", 6) == 0 ? "https" : "http";
}

void ctl_call_each(struct ctl_client *c, const char *const *addrs, size_t n,
                   const struct ctl_request *req, struct ctl_response *resps, char (*whys)[256])
{
	unsigned pending = 0;
	struct attempt *at = calloc(n > 0 ? n : 1, sizeof *at);
	if (at == NULL)
		abort(); /* as util/buf does: a CLI that cannot allocate this cannot go on */
	for (size_t i = 0; i < n; i++) {
		char base[320];
		memset(&resps[i], 0, sizeof resps[i]);
		whys[i][0] = '\0';
		at[i] = (struct attempt){.resp = &resps[i], .pending = &pending};
		snprintf(base, sizeof base, "%s://%s", scheme_of(c), addrs[i]);
		/* No grace: these ask members for their own state, with no deadline of the
		 * server's to wait for. */
		attempt_start(c, base, req, c->timeout_ms + req->wait_ms, &at[i]);
	}
	run_until_done(c, &pending);
	for (size_t i = 0; i < n; i++)
		if (at[i].result != FWD_OK) {
			ctl_response_free(&resps[i]);
			snprintf(whys[i], sizeof whys[i], "%s", at[i].error);
		} else {
			resps[i].base = strdup(addrs[i]);
		}
	free(at);
}

/* ---- failover ---------------------------------------------------------------------------- */

/* The problem type's slug and the leader hint of a 503, if any (copied into the buffers). */
static void problem_hints(const struct ctl_response *r, char *slug, size_t slen, char *leader,
                          size_t llen)
{
	slug[0] = leader[0] = '\0';
	json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
	if (doc == NULL)
		return;
	const char *type = json_string_value(json_object_get(doc, "type"));
	const char *addr = json_string_value(json_object_get(doc, "leader_http_addr"));
	size_t plen = strlen(CLOUDLESS_PROBLEM_BASE);
	if (type != NULL && strncmp(type, CLOUDLESS_PROBLEM_BASE, plen) == 0)
		snprintf(slug, slen, "%s", type + plen);
	if (addr != NULL)
		snprintf(leader, llen, "%s", addr);
	json_decref(doc);
}

struct queue {
	char *items[64];
	size_t n, next;
	char *tried[64];
	size_t n_tried;
};

static void queue_push(struct queue *q, size_t at, const char *base)
{
	if (q->n == sizeof q->items / sizeof q->items[0])
		return;
	char *copy = strdup(base);
	if (copy == NULL)
		return;
	memmove(&q->items[at + 1], &q->items[at], (q->n - at) * sizeof q->items[0]);
	q->items[at] = copy;
	q->n++;
}

static bool queue_tried(const struct queue *q, const char *base)
{
	for (size_t i = 0; i < q->n_tried; i++)
		if (strcmp(q->tried[i], base) == 0)
			return true;
	return false;
}

static void queue_free(struct queue *q)
{
	for (size_t i = 0; i < q->n; i++)
		free(q->items[i]);
}

/* This attempt's budget. A request that may move on after a silent endpoint shares what is
 * left of --timeout with the endpoints still to try, so a paused member cannot eat all of it;
 * any other gets all of it, plus the time the server may hold it and the grace for the
 * server's own 504. */
static unsigned attempt_budget(const struct ctl_request *req, uint64_t remaining, size_t untried)
{
	uint64_t ms;
	if (req->retry_unknown && req->wait_ms == 0 && untried > 0) {
		ms = remaining / (untried + 1);
		if (ms < CTL_MIN_ATTEMPT_MS)
			ms = remaining < CTL_MIN_ATTEMPT_MS ? remaining : CTL_MIN_ATTEMPT_MS;
	} else {
		ms = remaining + req->wait_ms + CTL_GRACE_MS;
	}
	return ms > UINT32_MAX ? UINT32_MAX : (unsigned)ms;
}

enum ctl_result ctl_call(struct ctl_client *c, const struct ctl_request *req,
                         struct ctl_response *resp, char *why, size_t whylen)
{
	uint64_t deadline = uv_hrtime() / 1000000u + c->timeout_ms;
	struct queue q = {.n = 0};
	struct ctl_response last503 = {0};
	struct buf log;
	enum ctl_result result = CTL_UNREACHABLE;
	size_t hints = 0;

	memset(resp, 0, sizeof *resp);
	buf_init(&log);
	for (size_t i = 0; i < c->n_bases; i++)
		queue_push(&q, q.n, c->bases[(c->first + i) % c->n_bases]);

	while (q.next < q.n) {
		const char *base = q.items[q.next++];
		if (queue_tried(&q, base))
			continue;
		q.tried[q.n_tried++] = (char *)base;
		uint64_t now = uv_hrtime() / 1000000u;
		if (now >= deadline) {
			buf_printf(&log, "%s%s: not tried, --timeout passed", log.len ? "; " : "",
			           display(base));
			continue;
		}
		unsigned pending = 0;
		struct ctl_response r = {0};
		struct attempt a = {.resp = &r, .pending = &pending};
		attempt_start(c, base, req, attempt_budget(req, deadline - now, q.n - q.next), &a);
		run_until_done(c, &pending);
		if (a.result == FWD_CANCELED || c->interrupted) {
			ctl_response_free(&r);
			result = CTL_INTERRUPTED;
			break;
		}

		if (a.result == FWD_OK && r.status == 503) {
			char slug[64], leader[300];
			problem_hints(&r, slug, sizeof slug, leader, sizeof leader);
			ctl_response_free(&last503);
			last503 = r;
			last503.base = strdup(display(base));
			if (!req->retry_unknown && strcmp(slug, "leadership-lost") == 0)
				break; /* it may have been applied: that is the answer */
			if (leader[0] != '\0' && hints < CTL_MAX_HINTS) {
				char hinted[320];
				snprintf(hinted, sizeof hinted, "%s://%s", scheme_of(c), leader);
				if (!queue_tried(&q, hinted)) {
					queue_push(&q, q.next, hinted);
					hints++;
				}
			}
			continue;
		}
		if (a.result == FWD_OK) {
			for (size_t i = 0; i < c->n_bases; i++)
				if (strcmp(c->bases[i], base) == 0)
					c->first = i;
			ctl_response_free(&last503);
			*resp = r;
			resp->base = strdup(display(base));
			result = CTL_ANSWERED;
			goto out;
		}
		buf_printf(&log, "%s%s: %s", log.len ? "; " : "", display(base), a.error);
		if (a.result != FWD_CONNECT_FAILED && !req->retry_unknown) {
			result = CTL_UNKNOWN;
			break;
		}
	}
	if (result == CTL_UNREACHABLE && last503.status != 0) {
		*resp = last503;
		last503 = (struct ctl_response){0};
		result = CTL_ANSWERED;
	}
out:
	ctl_response_free(&last503);
	snprintf(why, whylen, "%s", log.len > 0 ? log.data : "no endpoint to try");
	buf_close(&log);
	queue_free(&q);
	return result;
}
