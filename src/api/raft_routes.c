/* raft_routes: POST /raft/join, /raft/remove and /raft/transfer-leader.
 *
 * Bodies are strict JSON (unknown fields, wrong types and bad addresses are 400 before
 * anything happens; the decoders live in decode.c). Any member accepts them: proxy.c forwards
 * to the leader, where raft/membership.c runs one change at a time. Joins and removals are
 * idempotent, so they are retried on a new leader if leadership moves mid-change. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "api/decode.h"
#include "fsm/command.h"
#include "http/problem.h"
#include "log/log.h"
#include "util/clock.h"
#include "util/text.h"

/* How long a membership change may run once it started, beyond its start deadline: the
 * follower that forwards one must wait that long for the leader's answer, which is the
 * outcome (membership.c answers a change that started with what came of it). A join waits
 * for the node to catch up: it is dropped after --catch-up-timeout-ms without progress. */
static uint64_t max_run_ms(struct api *a, enum node_change_kind kind)
{
	if (kind == NODE_CHANGE_JOIN)
		return (uint64_t)a->cfg->catch_up_timeout_ms + 5000;
	return 2 * (uint64_t)a->cfg->election_ms + 1000;
}

/* A change forwarded by a follower carries the wall-clock time it must start by; the
 * earlier of that and our own deadline holds (a leader that was paused reads it late). */
static uint64_t forwarded_start_by(struct http_request *req, uint64_t start_by)
{
	const char *h = http_request_header(req, CLOUDLESS_HDR_START_BY);
	uint64_t wall;
	if (h == NULL || text_parse_u64(h, &wall) != 0)
		return start_by;
	uint64_t now_wall = clock_wall_ms(), now = clock_mono_ms();
	uint64_t theirs = wall > now_wall ? now + (wall - now_wall) : 1; /* 1: long past */
	return theirs < start_by ? theirs : start_by;
}

static json_t *peers_json(struct api *a)
{
	struct node *n = a->node;
	json_t *arr = json_array();
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		struct raft_server *s = &n->raft.configuration.servers[i];
		const struct fsm_member *m = node_member_by_raft_id(n, s->id);
		const char *role = s->role == RAFT_VOTER     ? "voter"
		                   : s->role == RAFT_STANDBY ? "standby"
		                                             : "spare";
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s}", "node_id",
		                                     m ? m->node_id : "", "raft_addr", s->address,
		                                     "http_addr", m ? m->http_addr : "", "role",
		                                     role, "incarnation", m ? m->incarnation : ""));
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
	if (c->http_status == 503 && !a->closing && c->retry_elsewhere) {
		/* Not (or no longer) the leader: safe to retry there, all changes are idempotent.
		 * A 503 while we still lead (a transfer that did not complete) is the answer. */
		op->retried = true;
		api_wait_for_leader(op);
		return;
	}
	api_common_headers(a, op->req);
	if (c->http_status != 200) {
		api_problem_leader(a, op->req, c->http_status, c->slug ? c->slug : "membership",
		                   c->message);
	} else {
		const struct fsm_member *leader = NULL;
		node_leader(a->node, &leader, NULL, NULL);
		json_t *o = json_pack("{s:b, s:s, s:b, s:o, s:s, s:s}", "success", 1, "message",
		                      c->message, "changed", c->changed, "cluster_peers",
		                      peers_json(a), "leader_id", leader ? leader->node_id : "",
		                      "cluster_id", node_cluster_id(a->node));
		if (leader != NULL)
			json_object_set_new(o, "leader_http_addr", json_string(leader->http_addr));
		if (c->replaced[0] != '\0')
			json_object_set_new(o, "replaced", json_string(c->replaced));
		http_respond_json(op->req, 200, o);
	}
	op->req = NULL;
	api_op_release(op);
}

static void change_local(struct api_op *op)
{
	op->u.change.is_retry =
	    op->retried || http_request_header(op->req, CLOUDLESS_HDR_RETRY) != NULL;
	op->busy = true;
	node_change_submit(op->api->node, &op->u.change);
}

static void submit(struct api *a, struct http_request *req, struct node_change *tmpl)
{
	uint64_t deadline;
	if (api_request_deadline(a, req, &deadline) != 0)
		return;
	struct api_op *op = api_op_new(a, req, API_OP_CHANGE);
	op->u.change = *tmpl;
	/* ?timeout is the deadline for the change to start; once it runs, its outcome is the
	 * answer, so the request as a whole may take up to max_run_ms longer. */
	op->u.change.start_by_ms = forwarded_start_by(req, deadline);
	deadline += max_run_ms(a, tmpl->kind);
	op->u.change.cb = change_done;
	op->u.change.data = op;
	op->safe_to_retry = true;
	op->deadline_ms = deadline;
	op->local = change_local;
	api_dispatch_to_leader(op);
}

void api_route_join(struct api *a, struct http_request *req)
{
	char err[256];
	size_t len = 0;
	const char *body = http_request_body(req, &len);
	struct node_change c;
	unsigned status = api_decode_join(body, len, &c, err, sizeof err);
	if (status != 200) {
		http_problem(req, status, "bad-request", "%s", err);
		return;
	}
	submit(a, req, &c);
}

static void node_id_change(struct api *a, struct http_request *req, enum node_change_kind kind)
{
	char err[256];
	size_t len = 0;
	const char *body = http_request_body(req, &len);
	struct node_change c;
	unsigned status = api_decode_node_id(body, len, kind, &c, err, sizeof err);
	if (status != 200) {
		http_problem(req, status, "bad-request", "%s", err);
		return;
	}
	submit(a, req, &c);
}

void api_route_remove(struct api *a, struct http_request *req)
{
	node_id_change(a, req, NODE_CHANGE_REMOVE);
}

void api_route_transfer(struct api *a, struct http_request *req)
{
	node_id_change(a, req, NODE_CHANGE_TRANSFER);
}
