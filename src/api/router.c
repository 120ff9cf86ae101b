/* router: request dispatch, op lifecycle and helpers shared by the route files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "api/decode.h"
#include "http/problem.h"
#include "log/log.h"
#include "util/clock.h"
#include "util/text.h"

void api_init(struct api *a, uv_loop_t *loop, struct node *node, struct fwd *fwd,
              struct metrics *metrics, const struct config *cfg)
{
	memset(a, 0, sizeof *a);
	a->loop = loop;
	a->node = node;
	a->fwd = fwd;
	a->metrics = metrics;
	a->cfg = cfg;
	a->start_ms = clock_mono_ms();
	api_name_incarnation(a);
}

struct api_op *api_op_new(struct api *a, struct http_request *req, enum api_op_kind kind)
{
	struct api_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		abort();
	op->api = a;
	op->req = req;
	op->kind = kind;
	op->next = a->ops;
	if (a->ops != NULL)
		a->ops->prev = op;
	a->ops = op;
	a->n_ops++;
	return op;
}

static void op_free(struct api_op *op)
{
	free(op->key);
	free(op->idem_key);
	json_decref(op->dom_op);
	free(op->dom_key);
	free(op->internal_key);
	if (op->agent_token != NULL)
		memset(op->agent_token, 0, strlen(op->agent_token));
	free(op->agent_token);
	free(op);
}

static void timer_closed(uv_handle_t *h)
{
	op_free(h->data);
}

void api_op_release(struct api_op *op)
{
	struct api *a = op->api;
	if (op->prev != NULL)
		op->prev->next = op->next;
	else if (a->ops == op)
		a->ops = op->next;
	if (op->next != NULL)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
	a->n_ops--;
	if (op->watch != NULL) {
		watch_cancel(op->watch);
		op->watch = NULL;
	}
	if (op->timer_open) {
		op->timer.data = op;
		uv_close((uv_handle_t *)&op->timer, timer_closed);
		return;
	}
	op_free(op);
}

static void answer_all(struct api *a, const char *slug, const char *detail)
{
	api_batch_cancel(a);
	struct api_op *op = a->ops;
	while (op != NULL) {
		struct api_op *next = op->next;
		if (op->req != NULL) {
			http_response_header(op->req, "Retry-After", "1");
			http_problem(op->req, 503, slug, "%s", detail);
			op->req = NULL;
		}
		if (!op->busy)
			api_op_release(op);
		op = next;
	}
}

void api_cancel_all(struct api *a)
{
	a->closing = true;
	answer_all(a, "shutting-down", "the coordinator is shutting down");
}

void api_enter_removed(struct api *a)
{
	a->removed = true;
	answer_all(a, "removed",
	           "this node was removed from the cluster; send the request to another member");
}

void api_common_headers(struct api *a, struct http_request *req)
{
	const struct fsm_member *m = NULL;
	raft_id id = 0;
	char index[24];
	bool known = node_leader(a->node, &m, &id, NULL);
	http_response_header(req, CLOUDLESS_HDR_KNOWN_LEADER, known ? "true" : "false");
	if (known && m != NULL)
		http_response_header(req, CLOUDLESS_HDR_LEADER, m->node_id);
	http_response_header(req, CLOUDLESS_HDR_SERVED_BY, a->cfg->node_id);
	/* The index the local store reflects; kv routes replace it with a more specific one. */
	snprintf(index, sizeof index, "%llu", (unsigned long long)a->node->fsm.applied_index);
	http_response_header(req, CLOUDLESS_HDR_INDEX, index);
}

void api_last_contact_header(struct api *a, struct http_request *req)
{
	char v[24];
	uint64_t lc = node_last_contact_ms(a->node);
	snprintf(v, sizeof v, "%lld", lc == UINT64_MAX ? -1LL : (long long)lc);
	http_response_header(req, CLOUDLESS_HDR_LAST_CONTACT, v);
}

void api_prepare(struct http_request *req, void *arg)
{
	struct api *a = arg;
	/* Every response carries the common headers, including the ones answered before any
	 * route runs (400 on bad input, 404, 405, and the HTTP server's own refusals). */
	if (a->removed) {
		/* The node is closed: nothing to read from it. */
		http_response_header(req, CLOUDLESS_HDR_SERVED_BY, a->cfg->node_id);
		http_response_header(req, CLOUDLESS_HDR_KNOWN_LEADER, "false");
		http_response_header(req, CLOUDLESS_HDR_INDEX, "0");
		return;
	}
	api_common_headers(a, req);
}

void api_publish_headers(struct api *a, struct http_server *const *servers, size_t n)
{
	const struct fsm_member *m = NULL;
	raft_id id = 0;
	/* A removed node has nothing to say about the cluster (api_prepare). */
	bool known = !a->removed && node_leader(a->node, &m, &id, NULL);
	uint64_t index = a->removed ? 0 : a->node->fsm.applied_index;
	if (a->published && known == a->pub_known && id == a->pub_leader && index == a->pub_index)
		return;
	a->published = true;
	a->pub_known = known;
	a->pub_leader = id;
	a->pub_index = index;
	char idx[24];
	snprintf(idx, sizeof idx, "%llu", (unsigned long long)index);
	const char *pairs[8];
	size_t k = 0;
	pairs[k++] = CLOUDLESS_HDR_KNOWN_LEADER;
	pairs[k++] = known ? "true" : "false";
	if (known && m != NULL) {
		pairs[k++] = CLOUDLESS_HDR_LEADER;
		pairs[k++] = m->node_id;
	}
	pairs[k++] = CLOUDLESS_HDR_SERVED_BY;
	pairs[k++] = a->cfg->node_id;
	pairs[k++] = CLOUDLESS_HDR_INDEX;
	pairs[k++] = idx;
	for (size_t i = 0; i < n; i++)
		if (servers[i] != NULL)
			http_server_set_headers(servers[i], pairs, k / 2);
}

void api_problem_leader(struct api *a, struct http_request *req, unsigned status, const char *slug,
                        const char *detail)
{
	const struct fsm_member *m = NULL;
	json_t *extra = json_object();
	if (node_leader(a->node, &m, NULL, NULL) && m != NULL) {
		json_object_set_new(extra, "leader_id", json_string(m->node_id));
		json_object_set_new(extra, "leader_http_addr", json_string(m->http_addr));
	}
	if (status == 503)
		http_response_header(req, "Retry-After", "1");
	http_problem_extra(req, status, slug, extra, "%s", detail);
}

void api_respond_raft_error(struct api *a, struct http_request *req, int rv, bool applied_unknown)
{
	char detail[256];
	switch (rv) {
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST:
	case RAFT_SHUTDOWN:
	case RAFT_CANCELED:
		snprintf(detail, sizeof detail, "%s%s", raft_strerror(rv),
		         applied_unknown ? "; the write may or may not have been applied (retry "
		                           "with an Idempotency-Key to be safe)"
		                         : "");
		api_problem_leader(a, req, 503, "no-leader", detail);
		return;
	case RAFT_NOSPACE:
	case RAFT_IOERR:
		http_problem(req, 507, "storage", "storage error: %s", raft_strerror(rv));
		return;
	case RAFT_TOOBIG:
		http_problem(req, 413, "too-large", "entry too large: %s", raft_strerror(rv));
		return;
	default:
		http_problem(req, 500, "internal", "raft error: %s", raft_strerror(rv));
	}
}

int api_request_deadline(struct api *a, struct http_request *req, uint64_t *deadline_ms)
{
	unsigned ms = a->cfg->forward_timeout_ms;
	const char *t = http_request_query(req, "timeout");
	if (t != NULL && text_parse_duration_ms(t, &ms) != 0) {
		http_problem(req, 400, "bad-parameter",
		             "timeout must be a duration such as 500ms, 2s or 1m (max 1h)");
		return -1;
	}
	*deadline_ms = clock_mono_ms() + ms;
	return 0;
}

/* Parameters and headers the API reads: each may be given once. "First one wins" would let
 * two parties read one request differently (?cas=1&cas=67 passed where ?cas=67&cas=1 did
 * not), so a repeat is a 400 naming it, whatever the route. */
static const char *const SINGLE_PARAMS[] = {
    "timeout",  "consistency", "stale",  "cas",   "prefix",   "limit", "continue",
    "json",     "redirect",    "digest", "mode",  "index",    "wait",  "namespace",
    "selector", "state",       "zone",   "agent", "workload", NULL};
static const char *const SINGLE_HEADERS[] = {"Content-Type",
                                             "Authorization",
                                             "If-Match",
                                             CLOUDLESS_HDR_IDEMPOTENCY_KEY,
                                             CLOUDLESS_HDR_FORWARDED_BY,
                                             CLOUDLESS_HDR_FORWARD_KEY,
                                             CLOUDLESS_HDR_START_BY,
                                             CLOUDLESS_HDR_RETRY,
                                             NULL};

static bool check_repeats(struct http_request *req)
{
	for (int i = 0; SINGLE_PARAMS[i] != NULL; i++)
		if (http_request_query_count(req, SINGLE_PARAMS[i]) > 1) {
			http_problem(req, 400, "bad-parameter",
			             "parameter %s is given more than once", SINGLE_PARAMS[i]);
			return false;
		}
	for (int i = 0; SINGLE_HEADERS[i] != NULL; i++)
		if (http_request_header_count(req, SINGLE_HEADERS[i]) > 1) {
			http_problem(req, 400, "bad-header", "header %s is given more than once",
			             SINGLE_HEADERS[i]);
			return false;
		}
	return true;
}

static void route(struct api *a, struct http_request *req, bool metrics_only)
{
	const char *path = http_request_path(req);
	/* Before anything that reads the request (a removed node's answers included). The tag
	 * goes on first: a refusal is answered inside api_authorize, and the HTTP thread may
	 * free an answered request at once. */
	http_request_set_tag(req, "denied");
	if (!api_authorize(a, req))
		return;
	http_request_set_tag(req, NULL);
	if (a->removed) {
		api_route_removed_mode(a, req, metrics_only);
		return;
	}
	if (!check_repeats(req))
		return;
	if (a->closing) {
		http_response_header(req, "Retry-After", "1");
		http_problem(req, 503, "shutting-down", "the coordinator is shutting down");
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		http_request_set_tag(req, "/metrics");
		if (api_allow_method(req, "GET"))
			api_route_metrics(a, req);
		return;
	}
	if (strcmp(path, "/raft/health") == 0) {
		http_request_set_tag(req, "/raft/health");
		if (api_allow_method(req, "GET"))
			api_route_health(a, req);
		return;
	}
	if (metrics_only) {
		http_request_set_tag(req, "other");
		http_problem(req, 404, "not-found",
		             "this listener serves only /metrics and /raft/health");
		return;
	}
	if (strcmp(path, "/raft/status") == 0) {
		http_request_set_tag(req, "/raft/status");
		if (api_allow_method(req, "GET"))
			api_route_status(a, req);
	} else if (strcmp(path, "/raft/join") == 0) {
		http_request_set_tag(req, "/raft/join");
		if (api_allow_method(req, "POST"))
			api_route_join(a, req);
	} else if (strcmp(path, "/raft/remove") == 0) {
		http_request_set_tag(req, "/raft/remove");
		if (api_allow_method(req, "POST"))
			api_route_remove(a, req);
	} else if (strcmp(path, "/raft/forward") == 0) {
		http_request_set_tag(req, "/raft/forward");
		if (api_allow_method(req, "POST"))
			api_route_forward_batch(a, req);
	} else if (strcmp(path, "/raft/removed") == 0) {
		http_request_set_tag(req, "/raft/removed");
		if (api_allow_method(req, "POST"))
			api_route_removed_notice(a, req);
	} else if (strcmp(path, "/raft/transfer-leader") == 0) {
		http_request_set_tag(req, "/raft/transfer-leader");
		if (api_allow_method(req, "POST"))
			api_route_transfer(a, req);
	} else if (strcmp(path, "/v1/kv/") == 0 || strcmp(path, "/v1/kv") == 0) {
		http_request_set_tag(req, "/v1/kv/");
		if (api_allow_method(req, "GET"))
			api_route_kv_list(a, req);
	} else if (strcmp(path, "/v1/agents") == 0 || strncmp(path, "/v1/agents/", 11) == 0) {
		api_route_agents(a, req, path + 10);
	} else if (strcmp(path, "/v1/workloads") == 0 || strncmp(path, "/v1/workloads/", 14) == 0) {
		api_route_workloads(a, req, path + 13);
	} else if (strcmp(path, "/v1/snapshot") == 0) {
		http_request_set_tag(req, "/v1/snapshot");
		if (api_allow_method(req, "GET"))
			api_route_snapshot(a, req);
	} else if (strcmp(path, "/v1/replicas") == 0) {
		api_route_replicas(a, req);
	} else if (strncmp(path, "/v1/kv/", 7) == 0) {
		http_request_set_tag(req, "/v1/kv/{key}");
		if (api_allow_method(req, "GET, PUT, DELETE"))
			api_route_kv(a, req, path + 7);
	} else {
		http_request_set_tag(req, "other");
		http_problem(req, 404, "not-found", "no route for %s %s", http_request_method(req),
		             path);
	}
}

void api_handle(struct http_request *req, void *arg)
{
	route(arg, req, false);
}

void api_handle_metrics_listener(struct http_request *req, void *arg)
{
	route(arg, req, true);
}

void api_request_complete(struct http_request *req, unsigned status, double seconds, void *arg)
{
	struct api *a = arg;
	const char *tag = http_request_tag(req);
	char labels[128];
	if (tag == NULL)
		tag = "other";
	snprintf(labels, sizeof labels, "route=\"%s\",code=\"%u\"", tag, status);
	metrics_counter_add(a->metrics, "cloudless_http_requests_total", labels, 1);
	snprintf(labels, sizeof labels, "route=\"%s\"", tag);
	metrics_observe(a->metrics, "cloudless_http_request_duration_seconds", labels, seconds);
}
