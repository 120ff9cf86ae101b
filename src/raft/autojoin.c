/* autojoin: joining an existing cluster at start-up (--join with an empty data dir).
 *
 * Posts /raft/join to each configured member in turn; any member accepts it (followers
 * forward it to the leader), and a refusal that names the leader is followed at once. After a
 * full pass without success it backs off exponentially, 100 ms doubling to 5 s, with +-20%
 * jitter so restarted nodes do not retry in lock-step. Runs until joined or shut down; a
 * node with raft state never gets here (node_start decides).
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

#define BACKOFF_START_MS 100
#define BACKOFF_MAX_MS   5000
/* The leader answers a join only once the node has caught up and been promoted. */
#define JOIN_TIMEOUT_MS 65000

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
	const char *target = aj->hint[0] ? aj->hint : n->opts.join[aj->next];
	json_error_t jerr;
	json_t *o = r->result == FWD_OK ? json_loadb(r->body, r->body_len, 0, &jerr) : NULL;
	const char *leader = json_string_value(json_object_get(o, "leader_id"));
	const char *hint = json_string_value(json_object_get(o, "leader_http_addr"));
	if (r->result == FWD_OK && r->status == 200 &&
	    json_is_true(json_object_get(o, "success"))) {
		aj->active = false;
		aj->joined = true;
		log_info("Joined raft cluster", "node_id=%s via=%s leader_id=%s attempts=%u",
		         n->opts.node_id, target, leader ? leader : "?", aj->attempts);
		json_decref(o);
		return;
	}
	const char *detail = json_string_value(json_object_get(o, "detail"));
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
	if (!was_hint)
		aj->next = (aj->next + 1) % n->opts.n_join;
	schedule(n, aj->next == 0 || was_hint);
}

static void attempt(struct node *n)
{
	struct node_autojoin *aj = &n->autojoin;
	const char *target = aj->hint[0] ? aj->hint : n->opts.join[aj->next];
	char url[COMMAND_MAX_ADDR + 32];
	snprintf(url, sizeof url, "http://%s/raft/join", target);
	json_t *body = json_pack("{s:s, s:s, s:s}", "node_id", n->opts.node_id, "raft_addr",
	                         n->opts.raft_addr, "http_addr", n->opts.http_addr);
	char *s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct fwd_header h[] = {{"Content-Type", "application/json"}};
	struct fwd_request req = {.method = "POST",
	                          .url = url,
	                          .headers = h,
	                          .n_headers = 1,
	                          .body = s,
	                          .body_len = s ? strlen(s) : 0,
	                          .timeout_ms = JOIN_TIMEOUT_MS};
	aj->attempts++;
	log_info("Join attempt", "node_id=%s target=%s attempt=%u", n->opts.node_id, target,
	         aj->attempts);
	if (s == NULL || fwd_send_cancellable(n->fwd, &req, reply_cb, n, &aj->xfer) != 0) {
		log_error("Cannot send join request", "target=%s", target);
		schedule(n, true);
	}
	free(s);
}

void autojoin_start(struct node *n)
{
	struct node_autojoin *aj = &n->autojoin;
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
