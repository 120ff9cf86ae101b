/* status: GET /raft/status (what this node knows about the cluster) and GET /raft/health
 * (readiness by default, ?mode=live for liveness).
 *
 * Both answer from local state only and never need a quorum: an operator must be able to ask
 * a cut-off node what it thinks. Readiness fails (503) when this node is not (yet) a member
 * of the configuration (still forming or joining, e.g. with an empty data dir), when it
 * knows no leader, when that leader is not in contact with a quorum (checked directly on the
 * leader; on a follower, by recent contact from the leader, which steps down without quorum
 * contact), or when this node's applied index trails the leader's commit index by more than
 * --health-max-lag. A follower takes the leader's commit index from the leader's own
 * messages (raft/peers.c): its own commit index only covers the entries it has, so an empty
 * node would otherwise look caught up.
 *
 * On the leader, each server's match index and lag are what the server has confirmed
 * (peers.c): one that has not accepted an append within two election timeouts, or that
 * answers only with rejections, counts as holding nothing it has not re-confirmed, so a
 * member that lost its data shows as lagging instead of "lag 0". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "http/problem.h"
#include "util/clock.h"

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
	uint64_t now = clock_mono_ms();
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		struct raft_server *s = &n->raft.configuration.servers[i];
		const struct fsm_member *m = node_member_by_raft_id(n, s->id);
		json_t *o =
		    json_pack("{s:s, s:s, s:s, s:s, s:s}", "node_id", m ? m->node_id : "",
		              "raft_addr", s->address, "http_addr", m ? m->http_addr : "", "role",
		              role_name(s->role), "incarnation", m ? m->incarnation : "");
		if (leader) {
			raft_index match = peers_confirmed_match(n, i);
			uint64_t heard = peers_last_recv_ms(n, s->id);
			json_object_set_new(o, "match_index", json_integer((json_int_t)match));
			json_object_set_new(o, "lag", json_integer((json_int_t)(last - match)));
			json_object_set_new(o, "lost_data",
			                    json_boolean(peers_lost_data(n, s->id)));
			json_object_set_new(o, "last_contact_ms",
			                    s->id == n->id ? json_integer(0)
			                    : heard == 0   ? json_null()
			                                 : json_integer((json_int_t)(now - heard)));
		}
		json_array_append_new(arr, o);
	}
	return arr;
}

/* While forming (--bootstrap-expect, raft not started): what the other candidates compare. */
static json_t *forming_json(struct node *n)
{
	json_t *seen = json_array();
	char ids[sizeof n->discovery.seen];
	snprintf(ids, sizeof ids, "%s", n->discovery.seen);
	for (char *save, *id = strtok_r(ids, ",", &save); id; id = strtok_r(NULL, ",", &save))
		json_array_append_new(seen, json_string(id));
	return json_pack("{s:i, s:o}", "expect", (int)n->opts.bootstrap_expect, "seen", seen);
}

void api_route_status(struct api *a, struct http_request *req)
{
	struct node *n = a->node;
	uint64_t lc = node_last_contact_ms(n);
	json_t *o = json_pack("{s:s, s:s, s:I, s:o, s:I, s:I, s:I, s:o, s:o, s:b, s:I}", "node_id",
	                      a->cfg->node_id, "state", node_state_name(n), "term",
	                      (json_int_t)n->raft.current_term, "leader", leader_json(n),
	                      "commit_index", (json_int_t)node_commit_index(n), "applied_index",
	                      (json_int_t)node_applied_index(n), "last_log_index",
	                      (json_int_t)raft_last_index(&n->raft), "last_contact_ms",
	                      lc == UINT64_MAX ? json_null() : json_integer((json_int_t)lc),
	                      "servers", servers_json(n), "leader_ready", node_is_ready_leader(n),
	                      "leader_changes", (json_int_t)n->leader_changes);
	json_object_set_new(o, "fsm_index", json_integer((json_int_t)n->fsm.applied_index));
	json_object_set_new(o, "raft_addr", json_string(n->opts.raft_addr));
	json_object_set_new(o, "http_addr", json_string(n->opts.http_addr));
	json_object_set_new(o, "incarnation", json_string(n->ident.incarnation));
	json_object_set_new(o, "cluster_id", json_string(node_cluster_id(n)));
	json_object_set_new(o, "voters", json_integer(node_voters(n)));
	json_object_set_new(o, "healthy_voters", json_integer(node_healthy_voters(n)));
	json_object_set_new(o, "failure_tolerance", json_integer(node_failure_tolerance(n)));
	if (!node_is_leader(n))
		json_object_set_new(o, "leader_commit_index",
		                    json_integer((json_int_t)peers_leader_commit(n)));
	if (n->ident.n_founders > 0)
		json_object_set_new(o, "founders", identity_founders_json(&n->ident));
	if (n->discovery.active && n->opts.bootstrap_expect > 0)
		json_object_set_new(o, "forming", forming_json(n));
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
	int self = node_server_index(n, n->id);
	bool member = n->raft_started && self >= 0 &&
	              n->raft.configuration.servers[self].role != RAFT_SPARE &&
	              !(n->autojoin.active && !n->autojoin.update) && !n->removed;
	if (n->discovery.active)
		snprintf(d, sizeof d, "forming or looking for the cluster (raft not started)");
	else if (n->autojoin.active && !n->autojoin.update)
		snprintf(d, sizeof d, "joining the cluster");
	else if (self < 0)
		snprintf(d, sizeof d, "not in the configuration this node has");
	else
		snprintf(d, sizeof d, "%s in the configuration",
		         role_name(n->raft.configuration.servers[self].role));
	check(checks, failing, "member", member, d);
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

	/* Against the leader's commit index: a follower's own only covers what it has. */
	raft_index commit = node_commit_index(n);
	if (!node_is_leader(n) && peers_leader_commit(n) > commit)
		commit = peers_leader_commit(n);
	raft_index applied = node_applied_index(n);
	raft_index lag = commit > applied ? commit - applied : 0;
	snprintf(d, sizeof d,
	         "applied index %llu trails the leader's commit index %llu by %llu "
	         "(max %u)",
	         (unsigned long long)applied, (unsigned long long)commit, (unsigned long long)lag,
	         a->cfg->health_max_lag);
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
