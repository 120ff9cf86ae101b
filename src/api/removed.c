/* removed: what a node the cluster removed answers, and the leader's notice that makes a node
 * check whether it was.
 *
 * A removed node keeps its HTTP listeners (raft is closed, a->node may be NULL): liveness
 * stays 200 so a supervisor does not restart it in a loop, readiness and every other request
 * get 503 `removed` naming what to do, and /raft/status and /metrics say so. The state is
 * persisted (raft/identity.h), so a restart with the same data dir comes back here. */
#include <string.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "api/decode.h"
#include "http/problem.h"
#include "util/json.h"

static void removed_status(struct api *a, struct http_request *req)
{
	json_t *o = json_pack("{s:s, s:s, s:b, s:o, s:[]}", "node_id", a->cfg->node_id, "state",
	                      "removed", "removed", 1, "leader", json_null(), "servers");
	http_respond_json(req, 200, o);
}

static void removed_metrics(struct http_request *req)
{
	struct buf out;
	buf_init(&out);
	api_metrics_write_leadership(&out, false, false, true);
	http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
	buf_close(&out);
}

void api_route_removed_mode(struct api *a, struct http_request *req, bool metrics_only)
{
	const char *path = http_request_path(req);
	const char *mode = http_request_query(req, "mode");
	http_request_set_tag(req, "removed");
	if (strcmp(path, "/raft/health") == 0 && mode != NULL && strcmp(mode, "live") == 0) {
		http_respond_json(req, 200,
		                  json_pack("{s:s, s:s, s:s}", "status", "ok", "mode", "live",
		                            "node_id", a->cfg->node_id));
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		removed_metrics(req);
		return;
	}
	if (strcmp(path, "/raft/status") == 0 && !metrics_only) {
		removed_status(a, req);
		return;
	}
	http_response_header(req, "Retry-After", "1");
	http_problem(req, 503, "removed",
	             "this node was removed from the cluster and serves nothing; send requests to "
	             "another member. To add this machine again: stop it, delete its data dir (%s) "
	             "and start it with --join or its --bootstrap-expect command",
	             a->cfg->data_dir);
}

void api_route_removed_notice(struct api *a, struct http_request *req)
{
	static const char *const fields[] = {"node_id", "cluster_id", "by", NULL};
	char err[256];
	size_t len = 0;
	const char *body = http_request_body(req, &len);
	const char *id = NULL;
	json_t *o = json_parse_object(body, len, err, sizeof err);
	if (o == NULL || json_check_fields(o, fields, err, sizeof err) != 0 ||
	    json_get_string(o, "node_id", true, 1, 64, &id, err, sizeof err) != 0) {
		json_decref(o);
		http_problem(req, 400, "bad-request", "%s", err);
		return;
	}
	bool ours = strcmp(id, a->cfg->node_id) == 0;
	json_decref(o);
	if (!ours) {
		http_problem(req, 409, "conflict", "this is node %s, not the one named",
		             a->cfg->node_id);
		return;
	}
	/* Not taken on trust: the node asks the members whether a leader still lists it. */
	membership_check_removed(a->node, true);
	http_respond_json(req, 202, json_pack("{s:s}", "status", "checking"));
}
