/* auth_check: who may call which route (issue 14; docs/operations.md "Authentication").
 *
 * The router calls api_authorize before any route runs, on the loop: one table walk, one
 * token lookup by name and one HMAC for a token seen before (auth.h). Everything is decided
 * from the method and path alone, before any body is looked at, so a denied request reaches
 * no handler and changes nothing.
 *
 * With an auth file every route but `/raft/health?mode=live`, `/raft/removed` (a notice this
 * node verifies with the leader before acting) and `/raft/forward` (a batch whose every item
 * carries its caller's Authorization and is checked here again, as its own request) needs a
 * token holding one of the route's scopes: 401 without a valid one, 403 with one that lacks
 * them. Without an auth file the node is in protected mode: loopback clients get everything,
 * others 403 (but for the liveness probe), unless --insecure. A follower forwards the caller's
 * Authorization, so the leader decides again on the same credential: forwarding cannot widen
 * anyone's rights.
 *
 * Agents. Enrollment with an `enroll` token answers a secret made for that agent
 * (agent_routes.c); the replicated agent record keeps only its salted hash. The agent then
 * sends `Bearer agent~ID.SECRET`, which may enroll that agent again, heartbeat as it and read
 * its assignments, nothing else, and never as another id (403). Deleting the agent deletes the
 * hash, so the secret stops working on every node as the deletion applies there. A follower
 * that cannot verify an agent's secret yet (its state lags the enrollment) lets a request the
 * leader serves through to the leader, which checks it against the newest state. */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "auth/auth.h"
#include "domain/spec.h"
#include "http/problem.h"
#include "util/clock.h"

/* Not a token scope: the agent itself, with its own secret (api_route_scopes). */
#define AUTH_AGENT (1u << 8)

/* Scopes any one of which lets a request through; 0 = open to anyone. */
static unsigned kv_scopes(const char *m)
{
	return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 ? AUTH_READ : AUTH_WRITE;
}

static unsigned agent_scopes(const char *m, const char *rest)
{
	bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
	if (rest[0] == '\0' || strcmp(rest, "/") == 0)
		return get ? AUTH_READ : AUTH_ENROLL | AUTH_AGENT;
	const char *slash = strchr(rest + 1, '/');
	const char *verb = slash ? slash + 1 : "";
	if (verb[0] == '\0')
		return get ? AUTH_READ : AUTH_OPERATOR;
	if (strcmp(verb, "heartbeat") == 0)
		return AUTH_AGENT;
	if (strcmp(verb, "assignments") == 0)
		return AUTH_READ | AUTH_AGENT;
	return get ? AUTH_READ : AUTH_OPERATOR; /* cordon, uncordon, drain */
}

unsigned api_route_scopes(const char *method, const char *path, const char *mode)
{
	if (strcmp(path, "/raft/health") == 0)
		return mode != NULL && strcmp(mode, "live") == 0 ? 0 : AUTH_READ | AUTH_METRICS;
	if (strcmp(path, "/metrics") == 0)
		return AUTH_METRICS;
	if (strcmp(path, "/raft/removed") == 0 || strcmp(path, "/raft/forward") == 0)
		return 0;
	/* Peers ask each other's status with their --join-token, an operator token. */
	if (strcmp(path, "/raft/status") == 0)
		return AUTH_READ | AUTH_OPERATOR;
	if (strncmp(path, "/raft/", 6) == 0 || strcmp(path, "/v1/snapshot") == 0)
		return AUTH_OPERATOR;
	if (strcmp(path, "/v1/agents") == 0 || strncmp(path, "/v1/agents/", 11) == 0)
		return agent_scopes(method, path + 10);
	/* kv, workloads, replicas, and anything unknown (a 404 is for token holders only). */
	return kv_scopes(method);
}

/* --rate-limit: a token bucket per token (and per coordinator), refilled at the limit per
 * second and holding at most a second's worth, so a client may burst that much. */
static bool rate_ok(struct api *a, struct http_request *req, struct auth_token *t, uint64_t now)
{
	double rate = a->cfg->rate_limit;
	if (rate <= 0)
		return true;
	if (t->bucket_ms == 0 || now < t->bucket_ms) {
		t->bucket = rate;
	} else {
		t->bucket += rate * (double)(now - t->bucket_ms) / 1000.0;
		if (t->bucket > rate)
			t->bucket = rate;
	}
	t->bucket_ms = now;
	if (t->bucket >= 1.0) {
		t->bucket -= 1.0;
		return true;
	}
	char after[24];
	unsigned secs = (unsigned)((1.0 - t->bucket) / rate + 0.999);
	snprintf(after, sizeof after, "%u", secs < 1 ? 1 : secs);
	http_response_header(req, "Retry-After", after);
	http_problem(
	    req, 429, "rate-limited",
	    "token %s sent more than %u requests a second (--rate-limit); retry after %s s",
	    t->name, a->cfg->rate_limit, after);
	return false;
}

static void unauthorized(struct http_request *req, const char *detail)
{
	http_response_header(req, "WWW-Authenticate", "Bearer realm=\"cloudless\"");
	http_problem(req, 401, "unauthorized", "%s", detail);
}

bool api_agent_credential(const struct auth_bearer *b, char id[API_AGENT_ID_MAX])
{
	if (b->name_len <= 6 || memcmp(b->name, "agent~", 6) != 0 ||
	    b->name_len - 6 >= API_AGENT_ID_MAX)
		return false;
	memcpy(id, b->name + 6, b->name_len - 6);
	id[b->name_len - 6] = '\0';
	return spec_agent_id(id);
}

/* The {id} of /v1/agents/{id}/..., "" for any other path. */
static void path_agent(const char *path, char id[API_AGENT_ID_MAX])
{
	id[0] = '\0';
	if (strncmp(path, "/v1/agents/", 11) != 0)
		return;
	const char *p = path + 10; /* after "/v1/agents" */
	p++;
	size_t n = strcspn(p, "/");
	if (n < API_AGENT_ID_MAX) {
		memcpy(id, p, n);
		id[n] = '\0';
	}
}

static bool agent_authorize(struct api *a, struct http_request *req, const struct auth_bearer *b,
                            const char *id, unsigned need)
{
	const char *path = http_request_path(req);
	const char *stored = NULL;
	if (a->node != NULL) {
		struct dom_agent *ag = dom_agent_get(&a->node->fsm.domain, id);
		if (ag != NULL)
			stored = json_string_value(json_object_get(ag->doc, "secret_hash"));
	}
	bool ok = auth_agent_secret_ok(stored, b->secret, b->secret_len);
	bool to_leader = strcmp(http_request_method(req), "POST") == 0;
	if (!ok && !(to_leader && a->node != NULL && !node_is_leader(a->node))) {
		unauthorized(req,
		             "unknown agent or wrong agent secret (an agent removed with DELETE "
		             "/v1/agents/{id} must be enrolled again)");
		return false;
	}
	char target[API_AGENT_ID_MAX];
	path_agent(path, target);
	if ((need & AUTH_AGENT) == 0) {
		http_problem(
		    req, 403, "forbidden",
		    "an agent's secret may only enroll that agent, heartbeat as it and read "
		    "its assignments; %s %s needs a token",
		    http_request_method(req), path);
		return false;
	}
	if (target[0] != '\0' && strcmp(target, id) != 0) {
		http_problem(req, 403, "forbidden", "the secret of agent %s cannot act as agent %s",
		             id, target);
		return false;
	}
	return true;
}

bool api_authorize(struct api *a, struct http_request *req)
{
	const char *path = http_request_path(req);
	unsigned need =
	    api_route_scopes(http_request_method(req), path, http_request_query(req, "mode"));
	if (a->auth == NULL) {
		/* Protected mode. A synthetic request (a forwarded batch's item) came inside one
		 * that passed this check already. */
		if (a->cfg->insecure || http_request_is_synthetic(req) ||
		    auth_peer_is_loopback(http_request_peer(req)))
			return true;
		/* Only the liveness probe is open to everyone: the other open routes (a forwarded
		 * batch above all, whose items are not checked again here) are the cluster's own.
		 */
		if (strcmp(path, "/raft/health") == 0 && need == 0)
			return true;
		http_problem(
		    req, 403, "protected-mode",
		    "this coordinator has no --auth-file and answers loopback clients only; "
		    "start it with --auth-file (or --insecure)");
		return false;
	}
	if (need == 0)
		return true;
	const char *h = http_request_header(req, "Authorization");
	if (http_request_header_count(req, "Authorization") > 1) {
		unauthorized(req, "the Authorization header is given more than once");
		return false;
	}
	if (h == NULL) {
		unauthorized(req,
		             "this route needs a token: send Authorization: Bearer NAME.SECRET");
		return false;
	}
	struct auth_bearer b;
	const char *why = NULL;
	if (auth_parse_bearer(h, &b, &why) != 0) {
		unauthorized(req, why);
		return false;
	}
	char agent[API_AGENT_ID_MAX];
	if (api_agent_credential(&b, agent))
		return agent_authorize(a, req, &b, agent, need);
	struct auth_token *t = NULL;
	uint64_t now = clock_mono_ms();
	switch (auth_check(a->auth, &b, now, &t)) {
	case AUTH_OK:
		break;
	case AUTH_BUSY:
		http_response_header(req, "Retry-After", "1");
		http_problem(req, 429, "rate-limited",
		             "too many new secrets tried for token %.*s this second; retry later",
		             (int)b.name_len, b.name);
		return false;
	default:
		unauthorized(req, "unknown token or wrong secret");
		return false;
	}
	if (need == AUTH_AGENT) {
		http_problem(
		    req, 403, "forbidden",
		    "%s %s is for the agent itself: send the secret its enrollment answered "
		    "(Bearer agent~ID.SECRET)",
		    http_request_method(req), path);
		return false;
	}
	if ((t->scopes & need) == 0) {
		char want[64], have[64];
		auth_format_scopes(need & AUTH_ALL_SCOPES, want, sizeof want);
		auth_format_scopes(t->scopes, have, sizeof have);
		http_problem(req, 403, "forbidden", "token %s has scopes %s; %s %s needs one of %s",
		             t->name, have, http_request_method(req), path, want);
		return false;
	}
	/* After the scope check: a refused request costs no handler, and counting it would let
	 * a client's mistakes use up its own budget. */
	return rate_ok(a, req, t, now);
}
