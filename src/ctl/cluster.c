/* cluster: cloudlessctl's `cluster` verbs: status, leader, members, health (reads of
 * /raft/status and /raft/health) and join, remove, transfer (the membership changes of
 * /raft/join, /raft/remove and /raft/transfer-leader).
 *
 * Only the leader's /raft/status reports each server's match index and lag, so `status` and
 * `health` follow the answering member's leader hint to the leader when they reached a
 * follower. Each member's applied index and readiness are its own to report: those verbs also
 * ask every member directly, all at once. With -o json, `status` prints the leader's
 * /raft/status unchanged (the one a follower gave when the leader could not be reached),
 * `leader` and `members` its `leader` and `servers` members, and the changes their answers;
 * `health` prints a report of its own that holds each member's /raft/health answer unchanged:
 *
 *   {"healthy": bool, "voters": N, "healthy_voters": N, "failure_tolerance": N,
 *    "members": [{"node_id", "http_addr", "role", "healthy": bool,
 *                 "health": <the member's answer, 200 or 503> | "error": "<why none>"}]}
 *
 * Membership changes are idempotent on the leader, so they may be repeated at another
 * endpoint after an attempt whose outcome is unknown. --timeout is passed on as the change's
 * start deadline (?timeout); once a change started its answer is its outcome, which for a
 * join includes the node catching up, so the client waits CTL_CHANGE_WAIT_MS longer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "ctl/ctl.h"
#include "ctl/output.h"

/* A join may run for the coordinator's --catch-up-timeout-ms (60 s by default) plus a few
 * seconds once it started (api/raft_routes.c). */
#define CTL_CHANGE_WAIT_MS 70000u

static const char *const member_heads[] = {"ID", "RAFT ADDRESS", "HTTP ADDRESS", "ROLE"};

/* ---- renderers --------------------------------------------------------------------------- */

static const char *leader_id(const json_t *status)
{
	return ctl_json_str(json_object_get(status, "leader"), "node_id", "");
}

void ctl_render_cluster_status(const json_t *status, const json_t *members, struct buf *out)
{
	static const char *const heads[] = {"ID",    "RAFT ADDRESS", "HTTP ADDRESS", "ROLE",
	                                    "VOTER", "LEADER",       "APPLIED",      "LAG"};
	struct ctl_table t;
	const char *leader = leader_id(status);
	size_t i;
	json_t *s;

	ctl_table_init(&t, heads, 8);
	json_array_foreach(json_object_get(status, "servers"), i, s)
	{
		const char *id = ctl_json_str(s, "node_id", "");
		const char *role = ctl_json_str(s, "role", "");
		json_t *own = id[0] != '\0' ? json_object_get(members, id) : NULL;
		ctl_table_add_json(&t, json_object_get(s, "node_id"));
		ctl_table_add_json(&t, json_object_get(s, "raft_addr"));
		ctl_table_add_json(&t, json_object_get(s, "http_addr"));
		ctl_table_add_json(&t, json_object_get(s, "role"));
		ctl_table_add(&t, "%s", strcmp(role, "voter") == 0 ? "yes" : "no");
		ctl_table_add(&t, "%s", id[0] != '\0' && strcmp(id, leader) == 0 ? "yes" : "no");
		ctl_table_add_json(&t, json_object_get(own, "applied_index"));
		if (json_is_true(json_object_get(s, "lost_data")))
			ctl_table_add(&t, "%lld (lost data)",
			              (long long)json_integer_value(json_object_get(s, "lag")));
		else
			ctl_table_add_json(&t, json_object_get(s, "lag"));
	}
	ctl_table_render(&t, out);
	ctl_table_close(&t);
}

void ctl_render_cluster_leader(const json_t *status, struct buf *out)
{
	static const char *const heads[] = {"ID", "RAFT ADDRESS", "HTTP ADDRESS", "TERM"};
	const json_t *l = json_object_get(status, "leader");
	struct ctl_table t;
	if (!json_is_object(l))
		return;
	ctl_table_init(&t, heads, 4);
	ctl_table_add_json(&t, json_object_get(l, "node_id"));
	ctl_table_add_json(&t, json_object_get(l, "raft_addr"));
	ctl_table_add_json(&t, json_object_get(l, "http_addr"));
	ctl_table_add_json(&t, json_object_get(status, "term"));
	ctl_table_render(&t, out);
	ctl_table_close(&t);
}

/* The member table of a `servers` or `cluster_peers` array, with a LEADER column when
 * `leader` is given. */
static void render_members(const json_t *servers, const char *leader, struct buf *out)
{
	static const char *const heads[] = {"ID", "RAFT ADDRESS", "HTTP ADDRESS", "ROLE", "LEADER"};
	struct ctl_table t;
	size_t i;
	json_t *s;
	ctl_table_init(&t, leader != NULL ? heads : member_heads, leader != NULL ? 5 : 4);
	json_array_foreach(servers, i, s)
	{
		const char *id = ctl_json_str(s, "node_id", "");
		ctl_table_add_json(&t, json_object_get(s, "node_id"));
		ctl_table_add_json(&t, json_object_get(s, "raft_addr"));
		ctl_table_add_json(&t, json_object_get(s, "http_addr"));
		ctl_table_add_json(&t, json_object_get(s, "role"));
		if (leader != NULL)
			ctl_table_add(&t, "%s",
			              id[0] != '\0' && strcmp(id, leader) == 0 ? "yes" : "no");
	}
	ctl_table_render(&t, out);
	ctl_table_close(&t);
}

void ctl_render_cluster_members(const json_t *status, struct buf *out)
{
	render_members(json_object_get(status, "servers"), NULL, out);
}

/* The failing checks of a readiness answer, "a,b", and the detail of the first one. */
static void health_failures(const json_t *health, struct buf *failing, const char **detail)
{
	size_t i;
	json_t *name;
	*detail = NULL;
	json_array_foreach(json_object_get(health, "failing"), i, name)
	{
		const char *n = json_string_value(name);
		if (n == NULL)
			continue;
		buf_printf(failing, "%s%s", failing->len > 0 ? "," : "", n);
		if (*detail == NULL)
			*detail = ctl_json_str(
			    json_object_get(json_object_get(health, "checks"), n), "detail", NULL);
	}
	if (failing->len == 0) {
		/* Not a readiness report (a removed or stopping node): its problem type. */
		const char *type = ctl_json_str(health, "type", "");
		size_t plen = strlen(CLOUDLESS_PROBLEM_BASE);
		if (strncmp(type, CLOUDLESS_PROBLEM_BASE, plen) == 0)
			buf_puts(failing, type + plen);
	}
	if (*detail == NULL)
		*detail = ctl_json_str(health, "detail", NULL);
}

void ctl_render_cluster_health(const json_t *report, struct buf *out)
{
	static const char *const heads[] = {"ID",      "HTTP ADDRESS", "ROLE",
	                                    "HEALTHY", "FAILING",      "DETAIL"};
	struct ctl_table t;
	size_t i;
	json_t *m;
	ctl_table_init(&t, heads, 6);
	json_array_foreach(json_object_get(report, "members"), i, m)
	{
		bool healthy = json_is_true(json_object_get(m, "healthy"));
		const char *error = ctl_json_str(m, "error", NULL);
		ctl_table_add_json(&t, json_object_get(m, "node_id"));
		ctl_table_add_json(&t, json_object_get(m, "http_addr"));
		ctl_table_add_json(&t, json_object_get(m, "role"));
		ctl_table_add(&t, "%s", healthy ? "yes" : "no");
		if (error != NULL) {
			ctl_table_add(&t, "unreachable");
			ctl_table_add(&t, "%s", error);
		} else if (healthy) {
			ctl_table_add(&t, "-");
			ctl_table_add(&t, "-");
		} else {
			struct buf failing;
			const char *detail;
			buf_init(&failing);
			health_failures(json_object_get(m, "health"), &failing, &detail);
			ctl_table_add(&t, "%s", failing.len > 0 ? failing.data : "-");
			ctl_table_add(&t, "%s", detail != NULL ? detail : "-");
			buf_close(&failing);
		}
	}
	ctl_table_render(&t, out);
	ctl_table_close(&t);
	buf_printf(out, "\nFailure tolerance: %lld (%lld of %lld voters healthy)\n",
	           (long long)json_integer_value(json_object_get(report, "failure_tolerance")),
	           (long long)json_integer_value(json_object_get(report, "healthy_voters")),
	           (long long)json_integer_value(json_object_get(report, "voters")));
}

void ctl_render_membership(const json_t *result, struct buf *out)
{
	const char *message = ctl_json_str(result, "message", "done");
	const char *replaced = ctl_json_str(result, "replaced", NULL);
	ctl_put_oneline(out, message, strlen(message));
	if (!json_is_true(json_object_get(result, "changed")))
		buf_puts(out, " (nothing changed)");
	if (replaced != NULL) {
		buf_puts(out, " (replaced ");
		ctl_put_oneline(out, replaced, strlen(replaced));
		buf_puts(out, ")");
	}
	buf_puts(out, "\n\n");
	render_members(json_object_get(result, "cluster_peers"),
	               ctl_json_str(result, "leader_id", ""), out);
}

/* ---- reading the cluster's state --------------------------------------------------------- */

static const struct ctl_request status_req = {
    .method = "GET", .path = "/raft/status", .retry_unknown = true};

/* True when the answer came from the leader itself: it names itself as the leader. */
static bool answered_by_leader(const struct ctl_response *r)
{
	const char *by = ctl_response_header(r, CLOUDLESS_HDR_SERVED_BY);
	const char *leader = ctl_response_header(r, CLOUDLESS_HDR_LEADER);
	return by != NULL && leader != NULL && strcmp(by, leader) == 0;
}

/* The answer of addr to req, parsed, when it is a 200 with a JSON body (else NULL). */
static json_t *ask_one(struct ctl *c, const char *addr, const struct ctl_request *req,
                       struct ctl_response *resp)
{
	char why[256];
	ctl_call_each(&c->client, &addr, 1, req, resp, &why);
	json_t *doc = resp->status == 200 ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
	if (doc == NULL)
		ctl_response_free(resp);
	return doc;
}

static bool is_removed(const json_t *status)
{
	return json_is_true(json_object_get(status, "removed"));
}

/* Some member's /raft/status, the leader's when `leader` and it can be had. On success
 * *doc is the parsed answer and *raw the answer itself. A member the cluster removed answers
 * too (200, saying so) but knows nothing of the cluster: the other endpoints are asked. */
static int fetch_status(struct ctl *c, bool leader, json_t **doc, struct ctl_response *raw)
{
	int rc = ctl_send(c, &status_req, raw, false);
	if (rc != CTL_EXIT_OK)
		return rc;
	if ((*doc = ctl_parse_answer(raw)) == NULL) {
		ctl_response_free(raw);
		return CTL_EXIT_ERROR;
	}
	for (size_t i = 0; is_removed(*doc) && i < c->client.n_bases; i++) {
		const char *addr = strstr(c->client.bases[i], "://") + 3;
		struct ctl_response other;
		json_t *odoc =
		    strcmp(addr, raw->base) != 0 ? ask_one(c, addr, &status_req, &other) : NULL;
		if (odoc == NULL)
			continue;
		json_decref(*doc);
		ctl_response_free(raw);
		*doc = odoc;
		*raw = other;
	}
	if (is_removed(*doc)) {
		rc =
		    ctl_fail(CTL_EXIT_ERROR,
		             "%s was removed from the cluster and knows nothing of it: ask another "
		             "member (--endpoints)",
		             ctl_json_str(*doc, "node_id", raw->base));
		json_decref(*doc);
		ctl_response_free(raw);
		return rc;
	}
	const char *addr = ctl_json_str(json_object_get(*doc, "leader"), "http_addr", "");
	if (!leader || answered_by_leader(raw) || addr[0] == '\0')
		return CTL_EXIT_OK;
	/* A follower: its leader hint names the one that knows every server's lag. */
	struct ctl_response lr;
	json_t *ldoc = ask_one(c, addr, &status_req, &lr);
	if (ldoc != NULL && strcmp(ctl_json_str(ldoc, "state", ""), "leader") == 0) {
		json_decref(*doc);
		ctl_response_free(raw);
		*doc = ldoc;
		*raw = lr;
		return CTL_EXIT_OK;
	}
	if (ldoc != NULL) {
		json_decref(ldoc);
		ctl_response_free(&lr);
	}
	return CTL_EXIT_OK;
}

/* The HTTP addresses of the servers of `status`, "" for one whose address is not known. */
static const char **member_addrs(const json_t *status, size_t *n)
{
	const json_t *servers = json_object_get(status, "servers");
	*n = json_array_size(servers);
	const char **addrs = calloc(*n > 0 ? *n : 1, sizeof *addrs);
	if (addrs == NULL)
		abort();
	for (size_t i = 0; i < *n; i++)
		addrs[i] = ctl_json_str(json_array_get(servers, i), "http_addr", "");
	return addrs;
}

/* GET path on every member of `status` at once; resps/whys have one entry per server. */
static void ask_members(struct ctl *c, const json_t *status, const char *path,
                        struct ctl_response **resps, char (**whys)[256], size_t *n)
{
	const char **addrs = member_addrs(status, n);
	struct ctl_request req = {.method = "GET", .path = path, .retry_unknown = true};
	*resps = calloc(*n > 0 ? *n : 1, sizeof **resps);
	*whys = calloc(*n > 0 ? *n : 1, sizeof **whys);
	if (*resps == NULL || *whys == NULL)
		abort();
	/* Members without a known address are left out of the fan-out. */
	size_t k = 0;
	for (size_t i = 0; i < *n; i++)
		if (addrs[i][0] != '\0')
			addrs[k++] = addrs[i];
	struct ctl_response *got = calloc(k > 0 ? k : 1, sizeof *got);
	char(*gwhy)[256] = calloc(k > 0 ? k : 1, sizeof *gwhy);
	if (got == NULL || gwhy == NULL)
		abort();
	ctl_call_each(&c->client, addrs, k, &req, got, gwhy);
	const json_t *servers = json_object_get(status, "servers");
	for (size_t i = 0, j = 0; i < *n; i++) {
		if (ctl_json_str(json_array_get(servers, i), "http_addr", "")[0] == '\0') {
			snprintf((*whys)[i], sizeof(*whys)[i], "no HTTP address known");
			continue;
		}
		(*resps)[i] = got[j];
		memcpy((*whys)[i], gwhy[j], sizeof gwhy[j]);
		j++;
	}
	free(got);
	free(gwhy);
	free(addrs);
}

static void free_answers(struct ctl_response *resps, char (*whys)[256], size_t n)
{
	for (size_t i = 0; i < n; i++)
		ctl_response_free(&resps[i]);
	free(resps);
	free(whys);
}

/* ---- verbs ------------------------------------------------------------------------------- */

static int run_status(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct ctl_response raw;
	json_t *status;
	(void)opts;
	(void)args;
	(void)n_args;
	int rc = fetch_status(c, true, &status, &raw);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (c->output == CTL_OUTPUT_JSON) {
		rc = ctl_print(raw.body, raw.body_len, true);
	} else {
		/* Every member's own applied index. */
		struct ctl_response *resps;
		char(*whys)[256];
		size_t n;
		json_t *members = json_object();
		ask_members(c, status, "/raft/status", &resps, &whys, &n);
		for (size_t i = 0; i < n; i++) {
			json_t *doc = resps[i].status == 200
			                  ? json_loadb(resps[i].body, resps[i].body_len, 0, NULL)
			                  : NULL;
			const char *id = ctl_json_str(doc, "node_id", NULL);
			if (id != NULL)
				json_object_set(members, id, doc);
			json_decref(doc);
		}
		free_answers(resps, whys, n);
		struct buf out;
		buf_init(&out);
		ctl_render_cluster_status(status, members, &out);
		rc = ctl_print(out.data, out.len, false);
		buf_close(&out);
		json_decref(members);
	}
	json_decref(status);
	ctl_response_free(&raw);
	return rc;
}

/* Prints member `key` of some member's /raft/status with -o json (or `render` of the whole
 * document); `missing` is the error when that member is null (%s: the answering node). */
static int show_status(struct ctl *c, const char *key, const char *missing,
                       void (*render)(const json_t *, struct buf *))
{
	struct ctl_response raw;
	json_t *status;
	int rc = fetch_status(c, false, &status, &raw);
	if (rc != CTL_EXIT_OK)
		return rc;
	const json_t *member = json_object_get(status, key);
	if (member == NULL || json_is_null(member))
		rc = ctl_fail(CTL_EXIT_ERROR, missing, ctl_json_str(status, "node_id", raw.base));
	else if (c->output == CTL_OUTPUT_JSON)
		rc = ctl_print_json(member);
	else
		rc = ctl_print_rendered(render, status);
	json_decref(status);
	ctl_response_free(&raw);
	return rc;
}

static int run_leader(struct ctl *c, void *opts, char **args, size_t n_args)
{
	(void)opts;
	(void)args;
	(void)n_args;
	return show_status(c, "leader", "no leader: %s knows none (an election may be running)",
	                   ctl_render_cluster_leader);
}

static int run_members(struct ctl *c, void *opts, char **args, size_t n_args)
{
	(void)opts;
	(void)args;
	(void)n_args;
	return show_status(c, "servers", "%s reports no configuration", ctl_render_cluster_members);
}

/* The -o json document of `cluster health` (see the top of the file). */
static json_t *health_report(const json_t *status, struct ctl_response *resps, char (*whys)[256],
                             size_t n)
{
	json_t *members = json_array();
	bool all = n > 0;
	for (size_t i = 0; i < n; i++) {
		const json_t *s = json_array_get(json_object_get(status, "servers"), i);
		json_t *m = json_pack("{s:s, s:s, s:s}", "node_id", ctl_json_str(s, "node_id", ""),
		                      "http_addr", ctl_json_str(s, "http_addr", ""), "role",
		                      ctl_json_str(s, "role", ""));
		json_t *doc = resps[i].status != 0
		                  ? json_loadb(resps[i].body, resps[i].body_len, 0, NULL)
		                  : NULL;
		bool healthy = resps[i].status == 200 && doc != NULL;
		if (resps[i].status == 0)
			json_object_set_new(m, "error", json_string(whys[i]));
		else if (doc == NULL)
			json_object_set_new(m, "error", json_string("the answer is not JSON"));
		else
			json_object_set_new(m, "health", doc);
		json_object_set_new(m, "healthy", json_boolean(healthy));
		json_array_append_new(members, m);
		all = all && healthy;
	}
	return json_pack("{s:b, s:O?, s:O?, s:O?, s:o}", "healthy", all, "voters",
	                 json_object_get(status, "voters"), "healthy_voters",
	                 json_object_get(status, "healthy_voters"), "failure_tolerance",
	                 json_object_get(status, "failure_tolerance"), "members", members);
}

static int run_health(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct ctl_response raw, *resps;
	char(*whys)[256];
	json_t *status;
	size_t n;
	(void)opts;
	(void)args;
	(void)n_args;
	int rc = fetch_status(c, true, &status, &raw);
	if (rc != CTL_EXIT_OK)
		return rc;
	ask_members(c, status, "/raft/health", &resps, &whys, &n);
	json_t *report = health_report(status, resps, whys, n);
	free_answers(resps, whys, n);
	if (c->output == CTL_OUTPUT_JSON)
		rc = ctl_print_json(report);
	else
		rc = ctl_print_rendered(ctl_render_cluster_health, report);
	if (rc == CTL_EXIT_OK && !json_is_true(json_object_get(report, "healthy")))
		rc = CTL_EXIT_ERROR;
	json_decref(report);
	json_decref(status);
	ctl_response_free(&raw);
	return rc;
}

/* POSTs a membership change with body `doc` (stolen) and prints its answer. */
static int change(struct ctl *c, const char *path, json_t *doc)
{
	static const struct fwd_header json_type[] = {{"Content-Type", "application/json"}};
	struct buf url;
	struct ctl_response resp;
	char *body = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (body == NULL)
		return ctl_fail(CTL_EXIT_ERROR, "out of memory");
	buf_init(&url);
	buf_printf(&url, "%s?timeout=%ums", path, c->g.timeout_ms);
	struct ctl_request req = {.method = "POST",
	                          .path = url.data,
	                          .headers = json_type,
	                          .n_headers = 1,
	                          .body = body,
	                          .body_len = strlen(body),
	                          .wait_ms = CTL_CHANGE_WAIT_MS,
	                          .retry_unknown = true};
	int rc = ctl_send(c, &req, &resp, false);
	free(body);
	buf_close(&url);
	return rc != CTL_EXIT_OK ? rc : ctl_print_answer(c, &resp, ctl_render_membership);
}

struct join_opts {
	char *node_id, *raft_addr, *http_addr;
};

static int run_join(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct join_opts *o = opts;
	(void)args;
	(void)n_args;
	return change(c, "/raft/join",
	              json_pack("{s:s, s:s, s:s}", "node_id", o->node_id, "raft_addr", o->raft_addr,
	                        "http_addr", o->http_addr));
}

static int run_remove(struct ctl *c, void *opts, char **args, size_t n_args)
{
	(void)opts;
	(void)n_args;
	return change(c, "/raft/remove", json_pack("{s:s}", "node_id", args[0]));
}

static int run_transfer(struct ctl *c, void *opts, char **args, size_t n_args)
{
	(void)opts;
	return change(c, "/raft/transfer-leader",
	              n_args > 0 ? json_pack("{s:s}", "node_id", args[0]) : json_object());
}

#define J(f) offsetof(struct join_opts, f)
static const struct flags_option join_opts[] = {
    {.flag = "--node-id",
     .kind = FLAGS_STRING,
     .off = J(node_id),
     .metavar = "ID",
     .required = true,
     .help = "The new member's --node-id."},
    {.flag = "--raft-addr",
     .kind = FLAGS_HOSTPORT,
     .off = J(raft_addr),
     .metavar = "IP:PORT",
     .required = true,
     .help = "Its --raft-addr: the numeric IPv4 address and port its raft listens on."},
    {.flag = "--http-addr",
     .kind = FLAGS_HOSTPORT,
     .off = J(http_addr),
     .metavar = "HOST:PORT",
     .required = true,
     .help = "The address it serves HTTP at (its advertised address)."},
};
#undef J

static const struct ctl_verb verbs[] = {
    {.name = "status",
     .args = "",
     .summary = "Members with raft and HTTP address, role, applied index, lag and leader.",
     .help = "Shows every member of the configuration: its raft and HTTP address, role\n"
             "(voter, standby, spare), whether it votes and leads, its applied index (asked\n"
             "of each member) and how far it lags the leader's log (as the leader counts\n"
             "what it confirmed; \"-\" when no leader could be asked). With -o json it\n"
             "prints the leader's /raft/status unchanged.",
     .run = run_status},
    {.name = "leader",
     .args = "",
     .summary = "The leader: ID, addresses and term.",
     .help = "Shows the leader as the answering member knows it; exit status 1 when it\n"
             "knows none (an election is running, or the cluster has lost its quorum).",
     .run = run_leader},
    {.name = "members",
     .args = "",
     .summary = "The configuration: ID, addresses and role of every member.",
     .help = "Lists the members of the configuration as the answering member has it.",
     .run = run_members},
    {.name = "health",
     .args = "",
     .summary = "Readiness of every member; exit status 1 unless all are healthy.",
     .help = "Asks every member for its readiness (/raft/health): it is a member of the\n"
             "configuration, knows a leader in contact with a quorum, and its applied index\n"
             "is close to the leader's commit index. Prints each member's failing checks and\n"
             "the cluster's failure tolerance; exit status 1 when any member is unhealthy or\n"
             "unreachable.",
     .run = run_health},
    {.name = "join",
     .args = "--node-id ID --raft-addr IP:PORT --http-addr HOST:PORT",
     .summary = "Add a node: it catches up as a non-voter, then votes.",
     .help = "Asks the cluster to admit a node (POST /raft/join): the leader adds it as a\n"
             "standby, waits until it has caught up, then promotes it to voter, and answers\n"
             "when that is done. Joining a node that is already a voter with the same\n"
             "addresses changes nothing. (A coordinator started with --join does this\n"
             "itself.)",
     .opts = join_opts,
     .n_opts = sizeof join_opts / sizeof join_opts[0],
     .opts_size = sizeof(struct join_opts),
     .run = run_join},
    {.name = "remove",
     .args = "ID",
     .summary = "Remove a member (the leader hands over leadership first).",
     .help = "Removes member ID from the configuration (POST /raft/remove). Refused when\n"
             "the voters left would not hold a quorum that accepts appends. The removed node\n"
             "stops serving (503 removed) until its data dir is wiped.",
     .min_args = 1,
     .max_args = 1,
     .run = run_remove},
    {.name = "transfer",
     .args = "[ID]",
     .summary = "Hand leadership to member ID, or to the most caught-up voter.",
     .help = "Asks the leader to hand leadership over (POST /raft/transfer-leader): to voter\n"
             "ID, or without it to the most caught-up other voter.",
     .max_args = 1,
     .run = run_transfer},
};

const struct ctl_group ctl_group_cluster = {
    .name = "cluster",
    .summary = "Membership, leadership and health of the coordinators.",
    .verbs = verbs,
    .n_verbs = sizeof verbs / sizeof verbs[0],
};
