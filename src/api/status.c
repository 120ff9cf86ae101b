/* status: GET /raft/status (what this node knows about the cluster) and GET /raft/health
 * (readiness by default, ?mode=live for liveness).
 *
 * Both answer from local state only and never need a quorum: an operator must be able to ask
 * a cut-off node what it thinks. Readiness fails (503) when this node knows no leader, when
 * that leader is not in contact with a quorum (checked directly on the leader; on a follower,
 * by recent contact from the leader, which steps down without quorum contact), or when this
 * node's applied index trails the commit index by more than --health-max-lag. */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "http/problem.h"

static const char *role_name(int role)
{
	return role == RAFT_VOTER ? "voter" : role == RAFT_STANDBY ? "standby" : "spare";
}

static json_t *leader_json(struct node *n)
{
	const struct fsm_member *m = NULL;
	raft_id id;
	const char *addr;
	if (!node_leader(n, &m, &id, &addr))
		return json_null();
	return json_pack("{s:s, s:s, s:s}", "node_id", m ? m->node_id : "", "raft_addr", addr,
	                 "http_addr", m ? m->http_addr : "");
}

static json_t *servers_json(struct node *n)
{
	json_t *arr = json_array();
	bool leader = node_is_leader(n);
	raft_index last = raft_last_index(&n->raft);
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		struct raft_server *s = &n->raft.configuration.servers[i];
		const struct fsm_member *m = node_member_by_raft_id(n, s->id);
		json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "node_id", m ? m->node_id : "",
		                      "raft_addr", s->address, "http_addr", m ? m->http_addr : "",
		                      "role", role_name(s->role));
		if (leader) {
			raft_index match =
			    s->id == n->id ? last : n->raft.leader_state.progress[i].match_index;
			json_object_set_new(o, "match_index", json_integer((json_int_t)match));
			json_object_set_new(o, "lag", json_integer((json_int_t)(last - match)));
		}
		json_array_append_new(arr, o);
	}
	return arr;
}

void api_route_status(struct api *a, struct http_request *req)
{
	struct node *n = a->node;
	uint64_t lc = node_last_contact_ms(n);
	json_t *o = json_pack("{s:s, s:s, s:I, s:o, s:I, s:I, s:I, s:o, s:o, s:b, s:I}", "node_id",
	                      a->cfg->node_id, "state", node_state_name(n), "term",
	                      (json_int_t)n->raft.current_term, "leader", leader_json(n),
	                      "commit_index", (json_int_t)n->raft.commit_index, "applied_index",
	                      (json_int_t)n->raft.last_applied, "last_log_index",
	                      (json_int_t)raft_last_index(&n->raft), "last_contact_ms",
	                      lc == UINT64_MAX ? json_null() : json_integer((json_int_t)lc),
	                      "servers", servers_json(n), "leader_ready", node_is_ready_leader(n),
	                      "leader_changes", (json_int_t)n->leader_changes);
	json_object_set_new(o, "fsm_index", json_integer((json_int_t)n->fsm.applied_index));
	if (http_request_query(req, "digest") != NULL) {
		uint64_t keys;
		char hex[17];
		snprintf(hex, sizeof hex, "%016llx",
		         (unsigned long long)fsm_digest(&n->fsm, &keys));
		json_object_set_new(o, "state_digest", json_string(hex));
		json_object_set_new(o, "state_keys", json_integer((json_int_t)keys));
	}
	api_common_headers(a, req);
	http_respond_json(req, 200, o);
}

static json_t *check(json_t *checks, json_t *failing, const char *name, bool ok, const char *detail)
{
	json_object_set_new(checks, name, json_pack("{s:b, s:s}", "ok", ok, "detail", detail));
	if (!ok)
		json_array_append_new(failing, json_string(name));
	return checks;
}

void api_route_health(struct api *a, struct http_request *req)
{
	struct node *n = a->node;
	const char *mode = http_request_query(req, "mode");
	char d[160];
	if (mode != NULL && strcmp(mode, "live") == 0) {
		http_respond_json(req, 200,
		                  json_pack("{s:s, s:s, s:s}", "status", "ok", "mode", "live",
		                            "node_id", a->cfg->node_id));
		return;
	}
	if (mode != NULL && strcmp(mode, "ready") != 0) {
		http_problem(req, 400, "bad-parameter",
		             "mode must be \"ready\" (default) or \"live\"");
		return;
	}
	json_t *checks = json_object(), *failing = json_array();
	raft_id lid = 0;
	const char *laddr;
	raft_leader(&n->raft, &lid, &laddr);
	snprintf(d, sizeof d, lid ? "leader is %s" : "no leader known", lid ? laddr : "");
	check(checks, failing, "leader_known", lid != 0, d);

	bool contact;
	if (node_is_leader(n)) {
		unsigned reach = node_reachable_voters(n, 0, NULL), voters = node_voters(n);
		contact = reach >= voters / 2 + 1;
		snprintf(d, sizeof d, "%u of %u voters reachable", reach, voters);
	} else {
		uint64_t lc = node_last_contact_ms(n);
		contact = lc != UINT64_MAX && lc <= 2 * (uint64_t)a->cfg->election_ms;
		if (lc == UINT64_MAX)
			snprintf(d, sizeof d, "no contact with a leader");
		else
			snprintf(d, sizeof d, "last leader contact %llu ms ago",
			         (unsigned long long)lc);
	}
	check(checks, failing, "leader_quorum_contact", lid != 0 && contact, d);

	raft_index lag = n->raft.commit_index > n->raft.last_applied
	                     ? n->raft.commit_index - n->raft.last_applied
	                     : 0;
	snprintf(d, sizeof d, "applied index trails commit index by %llu (max %u)",
	         (unsigned long long)lag, a->cfg->health_max_lag);
	check(checks, failing, "applied_lag", lag <= a->cfg->health_max_lag, d);

	bool ok = json_array_size(failing) == 0;
	json_t *o =
	    json_pack("{s:s, s:s, s:s, s:o, s:o}", "status", ok ? "ok" : "unavailable", "mode",
	              "ready", "node_id", a->cfg->node_id, "checks", checks, "failing", failing);
	if (ok) {
		http_respond_json(req, 200, o);
		return;
	}
	/* Not ready is reported as a problem document that still names every check. */
	char first[64];
	snprintf(first, sizeof first, "%s", json_string_value(json_array_get(failing, 0)));
	http_response_header(req, "Retry-After", "1");
	http_problem_extra(req, 503, "not-ready", o, "readiness check failed: %s", first);
}
