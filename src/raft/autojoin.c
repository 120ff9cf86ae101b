/* autojoin: asking the cluster to admit this node, or to update its entry.
 *
 * Posts /raft/join (our id, addresses, the data dir's incarnation and cluster id) to each
 * target in turn: the --join addresses, then the members our own state knows; any member
 * accepts it (followers forward it to the leader), and a refusal that names the leader is
 * followed at once. After a full pass without success it backs off exponentially, 100 ms
 * doubling to 5 s, with +-20% jitter so restarted nodes do not retry in lock-step.
 *
 * Two uses: joining with an empty data dir (--join, or --bootstrap-expect when the peers
 * already form a cluster; a node whose data was lost is replaced that way, see
 * membership.c), and the "update" mode, in which a member restarted with another raft or
 * HTTP address re-announces itself so every node's view follows (node.c decides). Runs until
 * it succeeds, is refused for good (another cluster), or the node shuts down..
 *
 * Ownership: a join request reads the node's options (the targets, our own addresses) when
 * its answer comes back, and the leader may hold it open for up to a minute while we catch
 * up. The node frees its options once it has closed, so autojoin_close (run by node_close,
 * before anything is freed) cancels the request in flight, whose callback then returns at
 * once: nothing that can still call back into the node outlives what it points to. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "raft/node.h"
#include "util/clock.h"

#define BACKOFF_START_MS 100
#define BACKOFF_MAX_MS   5000
/* The leader answers a join only once the node has caught up and been promoted, or after
 * --catch-up-timeout-ms without progress; a little more than that. */
#define JOIN_TIMEOUT_SLACK_MS 10000

static void attempt(struct node *n);

static void timer_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	if (n->autojoin.active && !n->closing)
		attempt(n);
}

static unsigned jitter(unsigned ms)
{
	unsigned span = ms / 5;
	return span == 0 ? ms : ms - span + (unsigned)(rand() % (int)(2 * span + 1));
}

/* Targets: the --join addresses, then the HTTP addresses of the members we know. */
static unsigned n_targets(struct node *n)
{
	node_refresh_members(n);
	return (unsigned)n->opts.n_join + n->n_members;
}

static const char *target_at(struct node *n, unsigned i)
{
	if (i < n->opts.n_join)
		return n->opts.join[i];
	i -= (unsigned)n->opts.n_join;
	if (i < n->n_members && strcmp(n->members[i].node_id, n->opts.node_id) != 0)
		return n->members[i].http_addr;
	return NULL;
}

static const char *current_target(struct node *n)
{
	struct node_autojoin *aj = &n->autojoin;
	return aj->hint[0] ? aj->hint : target_at(n, (unsigned)aj->next);
}

/* The cluster told us which id it has: it is ours from now on. */
static void adopt_cluster_id(struct node *n, const char *cluster)
{
	char err[256];
	if (cluster == NULL || !identity_valid_hex(cluster) ||
	    strcmp(cluster, n->ident.cluster_id) == 0)
		return;
	snprintf(n->ident.cluster_id, sizeof n->ident.cluster_id, "%s", cluster);
	if (identity_save(&n->ident, n->opts.data_dir, err, sizeof err) != 0)
		log_error("Cannot record the cluster id", "error=\"%s\"", err);
}

static void schedule(struct node *n, bool pass_done)
{
	unsigned wait = 0;
	if (pass_done) {
		wait = jitter(n->autojoin.delay_ms);
		n->autojoin.delay_ms *= 2;
		if (n->autojoin.delay_ms > BACKOFF_MAX_MS)
			n->autojoin.delay_ms = BACKOFF_MAX_MS;
	}
	uv_timer_start(&n->autojoin.timer, timer_cb, wait, 0);
}

static void reply_cb(const struct fwd_response *r, void *arg)
{
	struct node *n = arg;
	struct node_autojoin *aj = &n->autojoin;
	aj->xfer = 0;
	if (!aj->active || n->closing || r->result == FWD_CANCELED)
		return;
	const char *target = current_target(n);
	if (target == NULL)
		target = "?";
	json_error_t jerr;
	json_t *o = r->result == FWD_OK ? json_loadb(r->body, r->body_len, 0, &jerr) : NULL;
	const char *leader = json_string_value(json_object_get(o, "leader_id"));
	const char *hint = json_string_value(json_object_get(o, "leader_http_addr"));
	if (r->result == FWD_OK && r->status == 200 &&
	    json_is_true(json_object_get(o, "success"))) {
		aj->active = false;
		aj->joined = true;
		adopt_cluster_id(n, json_string_value(json_object_get(o, "cluster_id")));
		if (aj->update)
			log_info("Updated own entry in the cluster",
			         "node_id=%s raft_addr=%s http_addr=%s via=%s", n->opts.node_id,
			         n->opts.raft_addr, n->opts.http_addr, target);
		else
			log_info("Joined raft cluster",
			         "node_id=%s via=%s leader_id=%s attempts=%u", n->opts.node_id,
			         target, leader ? leader : "?", aj->attempts);
		aj->update = false;
		aj->next_update_ms = clock_mono_ms() + 5000;
		json_decref(o);
		return;
	}
	const char *detail = json_string_value(json_object_get(o, "detail"));
	const char *type = json_string_value(json_object_get(o, "type"));
	if (r->result == FWD_OK && r->status == 409 && type != NULL &&
	    strstr(type, "/other-cluster") != NULL) {
		/* Retrying cannot help: this data dir is another cluster's. */
		log_error("Refusing to join: the cluster belongs elsewhere",
		          "node_id=%s target=%s cluster_id=%s error=\"%s\"", n->opts.node_id,
		          target, n->ident.cluster_id, detail ? detail : "");
		aj->active = false;
		aj->refused = true;
		json_decref(o);
		return;
	}
	log_warn("Join attempt failed", "node_id=%s target=%s status=%ld error=\"%s\"",
	         n->opts.node_id, target, r->status,
	         r->result != FWD_OK ? (r->error ? r->error : "transport error")
	                             : (detail ? detail : "unexpected response"));
	bool follow = hint != NULL && hint[0] != '\0' && strcmp(hint, target) != 0 &&
	              strlen(hint) < sizeof aj->hint;
	if (follow) {
		snprintf(aj->hint, sizeof aj->hint, "%s", hint);
		json_decref(o);
		schedule(n, false);
		return;
	}
	json_decref(o);
	bool was_hint = aj->hint[0] != '\0';
	aj->hint[0] = '\0';
	unsigned total = n_targets(n);
	if (!was_hint)
		aj->next = total > 0 ? (aj->next + 1) % total : 0;
	schedule(n, aj->next == 0 || was_hint);
}

static void attempt(struct node *n)
{
	struct node_autojoin *aj = &n->autojoin;
	unsigned total = n_targets(n);
	const char *target = NULL;
	/* Skip our own entry among the members (target_at answers NULL for it). */
	for (unsigned tries = 0; tries <= total && (target = current_target(n)) == NULL; tries++)
		aj->next = total > 0 ? (aj->next + 1) % total : 0;
	if (target == NULL) {
		log_warn("Nobody to ask for admission",
		         "node_id=%s reason=\"no --join address and no "
		         "known member\"",
		         n->opts.node_id);
		schedule(n, true);
		return;
	}
	char url[COMMAND_MAX_ADDR + 32];
	snprintf(url, sizeof url, "%s://%s/raft/join", fwd_scheme(n->fwd), target);
	json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "node_id", n->opts.node_id, "raft_addr",
	                         n->opts.raft_addr, "http_addr", n->opts.http_addr, "incarnation",
	                         n->ident.incarnation);
	if (body != NULL && n->ident.cluster_id[0] != '\0')
		json_object_set_new(body, "cluster_id", json_string(n->ident.cluster_id));
	char *s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct fwd_header h[2] = {{"Content-Type", "application/json"}};
	struct fwd_request req = {.method = "POST",
	                          .url = url,
	                          .headers = h,
	                          .n_headers = node_peer_auth(n, h, 1),
	                          .body = s,
	                          .body_len = s ? strlen(s) : 0,
	                          .timeout_ms =
	                              n->opts.catch_up_timeout_ms + JOIN_TIMEOUT_SLACK_MS};
	aj->attempts++;
	log_info("Join attempt", "node_id=%s target=%s attempt=%u", n->opts.node_id, target,
	         aj->attempts);
	if (s == NULL || fwd_send_cancellable(n->fwd, &req, reply_cb, n, &aj->xfer) != 0) {
		log_error("Cannot send join request", "target=%s", target);
		schedule(n, true);
	}
	free(s);
}

void autojoin_start(struct node *n, bool update)
{
	struct node_autojoin *aj = &n->autojoin;
	if (aj->active || aj->refused)
		return;
	aj->update = update;
	aj->attempts = 0;
	aj->active = true;
	aj->delay_ms = BACKOFF_START_MS;
	aj->next = 0;
	aj->hint[0] = '\0';
	srand((unsigned)uv_hrtime() ^ (unsigned)n->id);
	attempt(n);
}

void autojoin_close(struct node *n)
{
	struct node_autojoin *aj = &n->autojoin;
	aj->active = false;
	uv_timer_stop(&aj->timer);
	/* The answer would read n->opts, which the node frees once closed: cancel it now (its
	 * callback runs here and returns at once). */
	if (aj->xfer != 0)
		fwd_cancel(n->fwd, aj->xfer);
	aj->xfer = 0;
}
