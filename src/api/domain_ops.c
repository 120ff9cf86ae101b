/* domain_ops: the request life cycle shared by the workload and agent routes (see api.h).
 *
 * Writes: the route validates the body (domain/spec.c) and builds the op; here it becomes a
 * COMMAND_DOMAIN entry proposed on the leader (a follower forwards the request, proxy.c) and
 * the route's answer function runs with the entry's fsm code and index once it applied. A
 * request with an Idempotency-Key is safe to retry after an unknown outcome, as KV writes are.
 *
 * Reads: linearizable by default (the leader renders after a barrier proposed after the
 * request arrived, reads.c), or ?consistency=stale (this node's mirror, with
 * X-Cloudless-Last-Contact). With ?index=N a read is a blocking query: while the topic's index
 * (watch.c) is not past N it waits, up to ?wait (default and at most 5 min), then renders.
 * The forwarding deadline of a blocking read covers its wait. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "api/decode.h"
#include "fsm/fsm.h"
#include "http/problem.h"
#include "util/clock.h"
#include "util/text.h"

#define WAIT_DEFAULT_MS (5 * 60 * 1000)
#define WAIT_MAX_MS     (5 * 60 * 1000)

static void set_topic_index(struct api_op *op)
{
	char v[24];
	snprintf(v, sizeof v, "%llu",
	         (unsigned long long)watch_topic_index(op->api->domain, op->dom_topic));
	http_response_header(op->req, CLOUDLESS_HDR_INDEX, v);
}

static void respond_headers(struct api_op *op)
{
	api_common_headers(op->api, op->req);
	/* A read of a topic says the topic's index (what ?index= compares), not the store's. */
	if (op->dom_topic[0] != '\0')
		set_topic_index(op);
}

void api_domain_respond(struct api_op *op, unsigned status, json_t *body)
{
	respond_headers(op);
	http_respond_json(op->req, status, body);
	op->req = NULL;
	api_op_release(op);
}

void api_domain_respond_text(struct api_op *op, unsigned status, char *text, size_t len)
{
	respond_headers(op);
	http_respond_take(op->req, status, "application/json", text, len);
	op->req = NULL;
	api_op_release(op);
}

void api_domain_problem(struct api_op *op, unsigned status, const char *slug, const char *fmt, ...)
{
	char detail[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	api_common_headers(op->api, op->req);
	http_problem(op->req, status, slug, "%s", detail);
	op->req = NULL;
	api_op_release(op);
}

void api_domain_gone(struct api_op *op, unsigned status, uint64_t index, const char *what)
{
	if (!op->dom_replayed) {
		api_domain_problem(op, 404, "not-found", "no %s %s", what, op->dom_key);
		return;
	}
	char v[24];
	snprintf(v, sizeof v, "%llu", (unsigned long long)index);
	http_response_header(op->req, CLOUDLESS_HDR_INDEX, v);
	api_domain_respond(op, status,
	                   json_pack("{s:s, s:I, s:b}", "key", op->dom_key, "index",
	                             (json_int_t)index, "exists", 0));
}

/* ---- writes ---- */

static void write_applied(struct node_propose *p, int status, void *result)
{
	struct api_op *op = p->data;
	op->busy = false;
	if (op->req == NULL) {
		api_op_release(op);
		return;
	}
	if (status != 0 && p->index == 0) {
		api_write_not_proposed(op, status);
		return;
	}
	if (status != 0) {
		api_retry_or_fail(op, status);
		return;
	}
	unsigned code = fsm_result_code(result);
	uint64_t index = p->index;
	if (code == FSM_RESENT_UNKNOWN) {
		/* As for KV (kv_routes.c): the follower does not retry this, nothing can tell. */
		api_domain_problem(
		    op, 503, "outcome-unknown",
		    "an earlier attempt of this write may have been applied, and the "
		    "leader no longer holds its record: its outcome is unknown");
		return;
	}
	if (code == FSM_IDEM_MISMATCH) {
		api_domain_problem(op, 409, "idempotency-key-reused",
		                   "this Idempotency-Key was already used for a different request");
		return;
	}
	if (fsm_result_replayed(result)) {
		/* Answered with the first attempt's index; only a client's own key is told. */
		op->dom_replayed = true;
		struct fsm_idem rec;
		bool internal = op->idem_key == NULL;
		const char *k = internal ? op->internal_key : op->idem_key;
		if (!internal)
			http_response_header(op->req, CLOUDLESS_HDR_REPLAY, "true");
		if (k != NULL &&
		    fsm_idem_get(&op->api->node->fsm, k, strlen(k), internal, &rec) == 0)
			index = rec.index;
	}
	op->dom_answer(op, code, index);
}

static void write_local(struct api_op *op)
{
	struct buf b;
	buf_init(&b);
	struct domain_idem idem = {.key = op->idem_key};
	if (op->idem_key == NULL && op->internal_key != NULL) {
		idem.key = op->internal_key;
		idem.internal = true;
		idem.resent = op->retried || op->maybe_applied; /* see kv_routes.c write_local */
	}
	domain_encode(op->api->domain, op->dom_op, idem.key ? &idem : NULL, clock_wall_ms(), &b);
	api_propose(op, &b, write_applied);
	buf_close(&b);
}

void api_domain_write(struct api *a, struct http_request *req, json_t *op_json, const char *key,
                      void (*answer)(struct api_op *op, unsigned code, uint64_t index))
{
	api_domain_write_token(a, req, op_json, key, answer, NULL);
}

void api_domain_write_token(struct api *a, struct http_request *req, json_t *op_json,
                            const char *key,
                            void (*answer)(struct api_op *op, unsigned code, uint64_t index),
                            const char *agent_token)
{
	uint64_t deadline;
	const char *idem = http_request_header(req, CLOUDLESS_HDR_IDEMPOTENCY_KEY), *internal;
	if (idem != NULL && !api_valid_idem_key(idem)) {
		json_decref(op_json);
		http_problem(req, 400, "bad-header",
		             "Idempotency-Key must be 1 to %d visible ASCII characters",
		             COMMAND_MAX_IDEM);
		return;
	}
	if (!api_forward_key(req, idem, &internal) ||
	    api_request_deadline(a, req, &deadline) != 0) {
		json_decref(op_json);
		return;
	}
	struct api_op *op = api_op_new(a, req, API_OP_WRITE);
	op->dom_op = op_json;
	op->dom_key = strdup(key);
	op->idem_key = idem ? strdup(idem) : NULL;
	op->internal_key = internal ? strdup(internal) : NULL;
	op->retried = internal != NULL && http_request_header(req, CLOUDLESS_HDR_RETRY) != NULL;
	op->safe_to_retry = idem != NULL || internal != NULL;
	op->deadline_ms = deadline;
	op->dom_answer = answer;
	op->agent_token = agent_token != NULL ? strdup(agent_token) : NULL;
	op->local = write_local;
	api_dispatch_to_leader(op);
}

/* ---- reads ---- */

static void render_now(struct api_op *op)
{
	if (op->dom_topic[0] != '\0')
		set_topic_index(op);
	op->dom_render(op);
}

static void watch_cb(struct dom_watch *w, bool fired)
{
	struct api_op *op = w->data;
	(void)fired;
	op->watch = NULL;
	op->busy = false;
	if (op->req == NULL) {
		api_op_release(op);
		return;
	}
	api_common_headers(op->api, op->req);
	render_now(op);
}

/* Renders now, or waits first when this is a blocking query whose topic has not moved. */
static void serve(struct api_op *op)
{
	struct domain *d = op->api->domain;
	if (op->dom_topic[0] != '\0' && op->dom_wait_ms > 0 &&
	    watch_topic_index(d, op->dom_topic) <= op->dom_index) {
		op->busy = true;
		op->watch =
		    watch_add(d, op->dom_topic, op->dom_index, op->dom_wait_ms, watch_cb, op);
		return;
	}
	api_common_headers(op->api, op->req);
	render_now(op);
}

static void read_local(struct api_op *op)
{
	api_read_barrier(op, serve);
}

/* ?index and ?wait; -1 after answering 400. */
static int blocking_params(struct http_request *req, uint64_t *index, uint64_t *wait_ms)
{
	const char *i = http_request_query(req, "index");
	const char *w = http_request_query(req, "wait");
	unsigned ms = WAIT_DEFAULT_MS;
	*index = 0;
	*wait_ms = 0;
	if (i == NULL) {
		if (w != NULL) {
			http_problem(req, 400, "bad-parameter",
			             "wait needs index (a blocking query)");
			return -1;
		}
		return 0;
	}
	if (text_parse_u64(i, index) != 0) {
		http_problem(req, 400, "bad-parameter", "index must be a non-negative integer");
		return -1;
	}
	if (w != NULL && (text_parse_duration_ms(w, &ms) != 0 || ms > WAIT_MAX_MS)) {
		http_problem(req, 400, "bad-parameter",
		             "wait must be a duration such as 30s or 5m (at most 5m)");
		return -1;
	}
	*wait_ms = *index > 0 ? ms : 0;
	return 0;
}

void api_domain_read(struct api *a, struct http_request *req, const char *key, const char *topic,
                     void (*render)(struct api_op *op))
{
	uint64_t deadline, index, wait_ms;
	int stale = api_parse_consistency(req);
	if (stale < 0 || blocking_params(req, &index, &wait_ms) != 0 ||
	    api_request_deadline(a, req, &deadline) != 0)
		return;
	struct api_op *op = api_op_new(a, req, API_OP_READ);
	op->dom_key = strdup(key != NULL ? key : "");
	op->dom_render = render;
	op->dom_index = index;
	op->dom_wait_ms = wait_ms;
	snprintf(op->dom_topic, sizeof op->dom_topic, "%s", topic != NULL ? topic : "");
	op->safe_to_retry = true;
	/* A blocking read may take its whole wait before it answers. */
	op->deadline_ms = deadline + wait_ms;
	op->local = read_local;
	if (stale) {
		api_last_contact_header(a, req);
		serve(op);
		return;
	}
	api_dispatch_to_leader(op);
}

void api_domain_leader_call(struct api *a, struct http_request *req, const char *key, json_t *body,
                            uint64_t index, void (*render)(struct api_op *op))
{
	uint64_t deadline;
	if (api_request_deadline(a, req, &deadline) != 0) {
		json_decref(body);
		return;
	}
	struct api_op *op = api_op_new(a, req, API_OP_WRITE);
	op->dom_key = strdup(key);
	op->dom_op = body;
	op->dom_index = index;
	op->safe_to_retry = true; /* nothing is proposed on its behalf that a retry repeats */
	op->deadline_ms = deadline;
	op->local = render;
	api_dispatch_to_leader(op);
}

/* ---- listing pages ---- */

int api_domain_page(struct http_request *req, const char *listing, unsigned *limit,
                    struct buf *start)
{
	const char *l = http_request_query(req, "limit");
	const char *c = http_request_query(req, "continue");
	uint64_t n = 100;
	buf_reset(start);
	if (l != NULL && (text_parse_u64(l, &n) != 0 || n == 0 || n > 1000)) {
		http_problem(req, 400, "bad-parameter", "limit must be an integer from 1 to 1000");
		return -1;
	}
	*limit = (unsigned)n;
	if (c == NULL)
		return 0;
	struct buf raw;
	buf_init(&raw);
	json_error_t jerr;
	json_t *tok = text_base64_decode(c, strlen(c), &raw) == 0
	                  ? json_loadb(raw.data ? raw.data : "", raw.len, 0, &jerr)
	                  : NULL;
	buf_close(&raw);
	const char *of = json_string_value(json_object_get(tok, "l"));
	const char *next = json_string_value(json_object_get(tok, "k"));
	if (of == NULL || next == NULL || strcmp(of, listing) != 0) {
		json_decref(tok);
		http_problem(
		    req, 400, "bad-parameter",
		    "continue is not a token of this listing (it came from another one, or "
		    "is garbled)");
		return -1;
	}
	buf_append(start, next, strlen(next));
	json_decref(tok);
	return 0;
}

json_t *api_domain_token(const char *listing, const char *next_key)
{
	if (next_key == NULL)
		return json_null();
	json_t *o = json_pack("{s:s, s:s}", "l", listing, "k", next_key);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	struct buf b64;
	buf_init(&b64);
	text_base64_encode(s, strlen(s), &b64);
	free(s);
	json_t *tok = json_stringn(b64.data ? b64.data : "", b64.len);
	buf_close(&b64);
	return tok;
}
