/* raft_routes: POST /raft/join, /raft/remove and /raft/transfer-leader.
 *
 * Bodies are strict JSON (unknown fields, wrong types and bad addresses are 400 before
 * anything happens). Any member accepts them: proxy.c forwards to the leader, where
 * raft/membership.c runs one change at a time. Joins and removals are idempotent, so they are
 * retried on a new leader if leadership moves mid-change. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "fsm/command.h"
#include "http/problem.h"
#include "log/log.h"
#include "util/json.h"

static bool valid_node_id(const char *id)
{
	size_t len = strlen(id);
	if (len == 0 || len > COMMAND_MAX_ID)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

static bool valid_ipv4_hostport(const char *s)
{
	char host[256];
	unsigned port;
	struct in_addr a;
	return config_split_hostport(s, host, sizeof host, &port, false) == 0 &&
	       inet_pton(AF_INET, host, &a) == 1;
}

static json_t *peers_json(struct api *a)
{
	struct node *n = a->node;
	json_t *arr = json_array();
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		struct raft_server *s = &n->raft.configuration.servers[i];
		const struct fsm_member *m = node_member_by_raft_id(n, s->id);
		const char *role = s->role == RAFT_VOTER	 ? "voter"
				   : s->role == RAFT_STANDBY ? "standby"
							     : "spare";
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "node_id",
						     m ? m->node_id : "", "raft_addr", s->address,
						     "http_addr", m ? m->http_addr : "", "role", role));
	}
	return arr;
}

static void change_done(struct node_change *c)
{
	struct api_op *op = c->data;
	struct api *a = op->api;
	op->busy = false;
	if (op->req == NULL) {
		api_op_release(op);
		return;
	}
	if (c->http_status == 503 && !a->closing) {
		/* Not (or no longer) the leader: safe to retry there, all changes are idempotent. */
		api_wait_for_leader(op);
		return;
	}
	api_common_headers(a, op->req);
	if (c->http_status != 200) {
		const char *slug = c->http_status == 404 ? "unknown-node"
				   : c->http_status == 409 ? "conflict"
							   : "membership";
		api_problem_leader(a, op->req, c->http_status, slug, c->message);
	} else {
		const struct fsm_member *leader = NULL;
		node_leader(a->node, &leader, NULL, NULL);
		json_t *o = json_pack("{s:b, s:s, s:b, s:o, s:s}", "success", 1, "message", c->message,
				      "changed", c->changed, "cluster_peers", peers_json(a),
				      "leader_id", leader ? leader->node_id : "");
		if (leader != NULL)
			json_object_set_new(o, "leader_http_addr", json_string(leader->http_addr));
		http_respond_json(op->req, 200, o);
	}
	op->req = NULL;
	api_op_release(op);
}

static void change_local(struct api_op *op)
{
	op->busy = true;
	node_change_submit(op->api->node, &op->u.change);
}

static void submit(struct api *a, struct http_request *req, struct node_change *tmpl)
{
	uint64_t deadline;
	if (api_request_deadline(a, req, &deadline) != 0)
		return;
	/* Joins wait for the new node to catch up, which can take longer than a write. */
	if (tmpl->kind == NODE_CHANGE_JOIN)
		deadline += 60000;
	struct api_op *op = api_op_new(a, req, API_OP_CHANGE);
	op->u.change = *tmpl;
	op->u.change.cb = change_done;
	op->u.change.data = op;
	op->safe_to_retry = true;
	op->deadline_ms = deadline;
	op->local = change_local;
	api_dispatch_to_leader(op);
}

/* Parses the body as an object with only `allowed` fields; NULL after answering 400. An
 * empty body is an empty object when `empty_ok`. */
static json_t *parse_body(struct http_request *req, const char *const allowed[], bool empty_ok)
{
	char err[256];
	size_t len = 0;
	const char *body = http_request_body(req, &len);
	if (len == 0 && empty_ok)
		return json_object();
	json_t *o = json_parse_object(body, len, err, sizeof err);
	if (o == NULL || json_check_fields(o, allowed, err, sizeof err) != 0) {
		json_decref(o);
		http_problem(req, 400, "bad-request", "%s", err);
		return NULL;
	}
	return o;
}

void api_route_join(struct api *a, struct http_request *req)
{
	static const char *const fields[] = {"node_id", "raft_addr", "http_addr", NULL};
	char err[256];
	const char *id, *raddr, *haddr;
	json_t *o = parse_body(req, fields, false);
	if (o == NULL)
		return;
	if (json_get_string(o, "node_id", true, 1, COMMAND_MAX_ID, &id, err, sizeof err) != 0 ||
	    json_get_string(o, "raft_addr", true, 1, COMMAND_MAX_ADDR, &raddr, err, sizeof err) != 0 ||
	    json_get_string(o, "http_addr", true, 1, COMMAND_MAX_ADDR, &haddr, err, sizeof err) != 0) {
		http_problem(req, 400, "bad-request", "%s", err);
	} else if (!valid_node_id(id)) {
		http_problem(req, 400, "bad-request",
			     "node_id must be 1 to %d characters of [A-Za-z0-9._-]", COMMAND_MAX_ID);
	} else if (!valid_ipv4_hostport(raddr)) {
		http_problem(req, 400, "bad-request",
			     "raft_addr must be a numeric IPv4 address with a port, e.g. 10.0.0.1:7000");
	} else {
		char host[256];
		unsigned port;
		if (config_split_hostport(haddr, host, sizeof host, &port, false) != 0) {
			http_problem(req, 400, "bad-request",
				     "http_addr must be host:port with a port from 1 to 65535");
		} else {
			struct node_change c = {.kind = NODE_CHANGE_JOIN};
			snprintf(c.node_id, sizeof c.node_id, "%s", id);
			snprintf(c.raft_addr, sizeof c.raft_addr, "%s", raddr);
			snprintf(c.http_addr, sizeof c.http_addr, "%s", haddr);
			submit(a, req, &c);
		}
	}
	json_decref(o);
}

static void node_id_change(struct api *a, struct http_request *req, enum node_change_kind kind)
{
	static const char *const fields[] = {"node_id", NULL};
	char err[256];
	const char *id;
	bool required = kind == NODE_CHANGE_REMOVE;
	json_t *o = parse_body(req, fields, !required);
	if (o == NULL)
		return;
	if (json_get_string(o, "node_id", required, 1, COMMAND_MAX_ID, &id, err, sizeof err) != 0) {
		http_problem(req, 400, "bad-request", "%s", err);
	} else if (id != NULL && !valid_node_id(id)) {
		http_problem(req, 400, "bad-request",
			     "node_id must be 1 to %d characters of [A-Za-z0-9._-]", COMMAND_MAX_ID);
	} else {
		struct node_change c = {.kind = kind};
		snprintf(c.node_id, sizeof c.node_id, "%s", id ? id : "");
		submit(a, req, &c);
	}
	json_decref(o);
}

void api_route_remove(struct api *a, struct http_request *req)
{
	node_id_change(a, req, NODE_CHANGE_REMOVE);
}

void api_route_transfer(struct api *a, struct http_request *req)
{
	node_id_change(a, req, NODE_CHANGE_TRANSFER);
}
