/* agent_routes: /v1/agents (openapi/openapi.yaml, tag agents).
 *
 * Enrollment, cordon / uncordon / drain and removal are entries (domain_ops.c); the
 * heartbeat is not: it runs on the leader against its in-memory liveness table and answers at
 * once with the agent's assignments (domain/liveness.c), so a steady-state heartbeat costs no
 * raft entry. Followers forward heartbeats like any leader request. The assignments of one
 * agent are also a blocking query (?index, ?wait). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "api/decode.h"
#include "auth/auth.h"
#include "domain/spec.h"
#include "fsm/fsm.h"
#include "http/problem.h"
#include "store/store.h"

static void respond_agent(struct api_op *op, unsigned status, uint64_t index)
{
	struct domain *d = op->api->domain;
	struct dom_agent *ag = dom_agent_get(&d->node->fsm.domain, op->dom_key);
	if (ag == NULL) {
		api_domain_gone(op, status, index, "agent");
		return;
	}
	json_t *v = view_agent(d, ag, true);
	/* The new secret, answered this once (a replay from the idempotency record cannot know
	 * it: the record's hash belongs to the first attempt's secret). */
	if (op->agent_token != NULL && !op->dom_replayed)
		json_object_set_new(v, "token", json_string(op->agent_token));
	api_domain_respond(op, status, v);
}

static void count_enrollment(struct api *a, const char *result)
{
	char labels[64];
	snprintf(labels, sizeof labels, "result=\"%s\"", result);
	metrics_counter_add(a->metrics, "cloudless_agent_enrollments_total", labels, 1);
}

static void answer_enroll(struct api_op *op, unsigned code, uint64_t index)
{
	switch (code) {
	case FSM_OK_CREATED:
		count_enrollment(op->api, "created");
		respond_agent(op, 201, index);
		break;
	case FSM_OK_UPDATED:
		count_enrollment(op->api, "updated");
		respond_agent(op, 200, index);
		break;
	case FSM_OK_UNCHANGED:
		count_enrollment(op->api, "unchanged");
		respond_agent(op, 200, index);
		break;
	default:
		api_domain_problem(op, 500, "internal", "the state machine refused the enrollment");
	}
}

static void answer_agent(struct api_op *op, unsigned code, uint64_t index)
{
	if (code == FSM_NOT_FOUND)
		api_domain_problem(op, 404, "not-found", "no agent %s", op->dom_key);
	else if (code == FSM_OK_UPDATED || code == FSM_OK_UNCHANGED)
		respond_agent(op, 200, index);
	else
		api_domain_problem(op, 500, "internal", "the state machine refused the change");
}

static void answer_delete(struct api_op *op, unsigned code, uint64_t index)
{
	if (code == FSM_NOT_FOUND) {
		api_domain_problem(op, 404, "not-found", "no agent %s", op->dom_key);
		return;
	}
	if (code != FSM_OK_DELETED) {
		api_domain_problem(op, 500, "internal", "the state machine refused the removal");
		return;
	}
	api_domain_respond(op, 200,
	                   json_pack("{s:b, s:I}", "deleted", 1, "index", (json_int_t)index));
}

/* With an auth file: an agent enrolling again with its own secret keeps it (and may enroll
 * only itself); otherwise (an enroll token, auth_check.c) a new secret is made here, its hash
 * goes into the entry and the secret into the answer (token). -1 after answering 403. */
static int enroll_identity(struct http_request *req, const char *id, json_t *op, char *token,
                           size_t token_len)
{
	const char *h = http_request_header(req, "Authorization"), *why;
	struct auth_bearer b;
	char cred[API_AGENT_ID_MAX], secret[AUTH_AGENT_SECRET_LEN + 1], hash[AUTH_AGENT_HASH_LEN];
	if (h != NULL && auth_parse_bearer(h, &b, &why) == 0 && api_agent_credential(&b, cred)) {
		if (strcmp(cred, id) == 0)
			return 0;
		http_problem(req, 403, "forbidden", "the secret of agent %s cannot enroll agent %s",
		             cred, id);
		return -1;
	}
	if (auth_agent_secret_new(secret, hash) != 0) {
		http_problem(req, 500, "internal", "no randomness for the agent's secret");
		return -1;
	}
	json_object_set_new(op, "secret_hash", json_string(hash));
	snprintf(token, token_len, "agent~%s.%s", id, secret);
	memset(secret, 0, sizeof secret);
	return 0;
}

static void enroll(struct api *a, struct http_request *req)
{
	char err[256];
	size_t len = 0;
	const char *body = http_request_body(req, &len);
	json_t *spec = spec_enrollment(body, len, a->cfg->agent_heartbeat_ms, err, sizeof err);
	if (spec == NULL) {
		count_enrollment(a, "invalid");
		http_problem(req, 400, "bad-enrollment", "%s", err);
		return;
	}
	char id[80], token[API_AGENT_ID_MAX + AUTH_AGENT_SECRET_LEN + 8] = "";
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(spec, "id")));
	json_t *op = json_pack("{s:s, s:o}", "op", "agent.enroll", "agent", spec);
	if (a->auth != NULL && enroll_identity(req, id, op, token, sizeof token) != 0) {
		json_decref(op);
		return;
	}
	api_domain_write_token(a, req, op, id, answer_enroll, token[0] ? token : NULL);
}

static void render_agent(struct api_op *op)
{
	respond_agent(op, 200, 0);
}

static void render_list(struct api_op *op)
{
	struct domain *d = op->api->domain;
	const char *state = http_request_query(op->req, "state");
	const char *zone = http_request_query(op->req, "zone");
	char listing[200];
	unsigned limit;
	struct buf start, from;
	buf_init(&start);
	buf_init(&from);
	snprintf(listing, sizeof listing, "agents|%s|%s", state ? state : "", zone ? zone : "");
	if (api_domain_page(op->req, listing, &limit, &start) != 0) {
		buf_close(&start);
		op->req = NULL;
		api_op_release(op);
		return;
	}
	if (start.len > 0)
		buf_printf(&from, "a/%.*s", (int)start.len, start.data);
	json_t *items = json_array(), *next = json_null();
	struct store_iter it;
	store_iter_init(&it, &d->node->fsm.store, NULL, "a/", 2, from.data, from.len);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl;
		const char *k = store_iter_key(&it, &kl);
		char id[80];
		snprintf(id, sizeof id, "%.*s", (int)(kl - 2), k + 2);
		struct dom_agent *ag = dom_agent_get(&d->node->fsm.domain, id);
		if (ag == NULL ||
		    (state != NULL && strcmp(state, ag->ready ? "ready" : "offline") != 0) ||
		    (zone != NULL && strcmp(zone, ag->zone) != 0))
			continue;
		if (json_array_size(items) == limit) {
			json_decref(next);
			next = api_domain_token(listing, id);
			break;
		}
		json_array_append_new(items, view_agent(d, ag, false));
	}
	store_iter_close(&it);
	buf_close(&from);
	buf_close(&start);
	api_domain_respond(op, 200, json_pack("{s:o, s:o}", "items", items, "continue", next));
}

static void render_assignments(struct api_op *op)
{
	struct domain *d = op->api->domain;
	struct dom_agent *ag = dom_agent_get(&d->node->fsm.domain, op->dom_key);
	if (ag == NULL) {
		api_domain_problem(op, 404, "not-found", "no agent %s (enroll it first)",
		                   op->dom_key);
		return;
	}
	char topic[128];
	snprintf(topic, sizeof topic, "agent:%s", ag->id);
	api_domain_respond(op, 200,
	                   json_pack("{s:s, s:o, s:I}", "agent", ag->id, "assignments",
	                             view_assignments(d, ag), "index",
	                             (json_int_t)watch_topic_index(d, topic)));
}

/* On the leader, with the reports heartbeat() parsed (op->dom_op) and the index they name. */
static void heartbeat_local(struct api_op *op)
{
	char *answer;
	size_t len;
	metrics_counter_add(op->api->metrics, "cloudless_agent_heartbeats_total", NULL, 1);
	int rv = domain_heartbeat(op->api->domain, op->dom_key, op->dom_op, op->dom_index, &answer,
	                          &len);
	if (rv == 404) {
		api_domain_problem(op, 404, "not-found",
		                   "agent %s is not enrolled: enroll it again", op->dom_key);
		return;
	}
	if (rv != 0) {
		api_domain_problem(op, 500, "internal", "cannot encode the heartbeat answer");
		return;
	}
	api_domain_respond_text(op, 200, answer, len);
}

static void heartbeat(struct api *a, struct http_request *req, const char *id)
{
	char err[256];
	size_t len = 0;
	const char *body = http_request_body(req, &len);
	/* Validated here, so a bad body never costs a forward; a follower forwards the body
	 * as it came, and the leader serves the parsed reports (parsing each heartbeat twice
	 * was a tenth of a busy leader's time). */
	uint64_t index;
	json_t *reports = spec_heartbeat(body, len, &index, err, sizeof err);
	if (reports == NULL) {
		http_problem(req, 400, "bad-heartbeat", "%s", err);
		return;
	}
	api_domain_leader_call(a, req, id, reports, index, heartbeat_local);
}

static void flag(struct api *a, struct http_request *req, const char *id, const char *which)
{
	json_t *op = json_pack("{s:s, s:s}", "op", "agent.flags", "id", id);
	if (strcmp(which, "cordon") == 0)
		json_object_set_new(op, "cordon", json_true());
	else if (strcmp(which, "uncordon") == 0)
		json_object_set_new(op, "cordon", json_false());
	else
		json_object_set_new(op, "drain", json_true());
	api_domain_write(a, req, op, id, answer_agent);
}

/* rest: what follows "/v1/agents". */
void api_route_agents(struct api *a, struct http_request *req, const char *rest)
{
	const char *m = http_request_method(req);
	char id[80], topic[120];
	if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
		http_request_set_tag(req, "/v1/agents");
		if (!api_allow_method(req, "GET, POST"))
			return;
		if (strcmp(m, "POST") == 0) {
			enroll(a, req);
			return;
		}
		const char *state = http_request_query(req, "state");
		if (state != NULL && strcmp(state, "ready") != 0 && strcmp(state, "offline") != 0) {
			http_problem(req, 400, "bad-parameter",
			             "state must be \"ready\" or \"offline\"");
			return;
		}
		api_domain_read(a, req, NULL, NULL, render_list);
		return;
	}
	const char *p = rest + 1, *slash = strchr(p, '/');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);
	const char *verb = slash ? slash + 1 : "";
	if (n == 0 || n >= sizeof id) {
		http_request_set_tag(req, "other");
		http_problem(req, 404, "not-found", "no route for %s /v1/agents%s", m, rest);
		return;
	}
	memcpy(id, p, n);
	id[n] = '\0';
	if (!spec_agent_id(id)) {
		http_request_set_tag(req, "/v1/agents/{id}");
		http_problem(req, 400, "bad-parameter",
		             "agent ids are 1-64 characters of [A-Za-z0-9._-]");
		return;
	}
	if (verb[0] == '\0') {
		http_request_set_tag(req, "/v1/agents/{id}");
		if (!api_allow_method(req, "GET, DELETE"))
			return;
		if (strcmp(m, "DELETE") == 0)
			api_domain_write(a, req,
			                 json_pack("{s:s, s:s}", "op", "agent.delete", "id", id),
			                 id, answer_delete);
		else
			api_domain_read(a, req, id, NULL, render_agent);
	} else if (strcmp(verb, "heartbeat") == 0) {
		http_request_set_tag(req, "/v1/agents/{id}/heartbeat");
		if (api_allow_method(req, "POST"))
			heartbeat(a, req, id);
	} else if (strcmp(verb, "assignments") == 0) {
		http_request_set_tag(req, "/v1/agents/{id}/assignments");
		snprintf(topic, sizeof topic, "agent:%s", id);
		if (api_allow_method(req, "GET"))
			api_domain_read(a, req, id, topic, render_assignments);
	} else if (strcmp(verb, "cordon") == 0 || strcmp(verb, "uncordon") == 0 ||
	           strcmp(verb, "drain") == 0) {
		static char tags[3][40] = {"/v1/agents/{id}/cordon", "/v1/agents/{id}/uncordon",
		                           "/v1/agents/{id}/drain"};
		http_request_set_tag(req, verb[0] == 'c'   ? tags[0]
		                          : verb[0] == 'u' ? tags[1]
		                                           : tags[2]);
		if (api_allow_method(req, "POST"))
			flag(a, req, id, verb);
	} else {
		http_request_set_tag(req, "other");
		http_problem(req, 404, "not-found", "no route for %s /v1/agents%s", m, rest);
	}
}
