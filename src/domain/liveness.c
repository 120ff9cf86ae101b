/* liveness: heartbeats on the leader (see domain.h).
 *
 * A heartbeat costs a hash lookup and a deadline update; it becomes a raft entry only when it
 * changes something: an offline agent is back (agent.state ready), or a replica's state,
 * exit code or restart count differs from the record. Those changes, from every agent, wait
 * in d->reports and go out as one replica.report entry per loop iteration (d->kick), with
 * at most one such entry in flight; a change already queued or sent is not queued again.
 * Deadlines are checked every SWEEP_MS: an agent past its deadline that the records still
 * call ready gets one agent.state offline. A new leader gives every agent a full timeout
 * from its election (liveness_leader_start) instead of a fixed grace. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"
#include "log/log.h"
#include "util/clock.h"

#define SWEEP_MS          100
#define REPORTS_PER_ENTRY 2000

struct live_prop {
	struct node_propose p;
	struct domain *d;
	char agent[80];
	bool reports; /* a replica.report entry */
};

static struct dom_live *live_get(struct domain *d, const char *id, bool create)
{
	struct dom_live *l = hmap_get(&d->live, id);
	if (l == NULL && create) {
		l = calloc(1, sizeof *l);
		if (l == NULL)
			abort();
		l->last_ms = clock_mono_ms(); /* it may have reached someone until now */
		l->deadline_ms = l->last_ms + d->opts.agent_timeout_ms;
		hmap_put(&d->live, id, l);
	}
	return l;
}

static void live_free_all(struct domain *d)
{
	const char *k;
	void *v;
	for (size_t i = 0; hmap_next(&d->live, &i, &k, &v);) {
		struct dom_live *l = v;
		json_decref(l->reported);
		free(l);
	}
	hmap_close(&d->live);
	hmap_init(&d->live);
}

static void reported_clear(struct domain *d)
{
	const char *k;
	void *v;
	for (size_t i = 0; hmap_next(&d->reported, &i, &k, &v);)
		free(v);
	hmap_close(&d->reported);
	hmap_init(&d->reported);
}

static void prop_cb(struct node_propose *p, int status, void *result)
{
	struct live_prop *lp = p->data;
	struct domain *d = lp->d;
	(void)result;
	if (lp->reports) {
		d->reports_inflight = false;
		if (status != 0)
			reported_clear(d); /* lost with leadership: a new leader asks again */
		else if (d->leading && json_array_size(d->reports) > 0)
			liveness_flush_reports(d);
	} else {
		struct dom_live *l = d->leading ? live_get(d, lp->agent, false) : NULL;
		if (l != NULL)
			l->proposing = false;
	}
	free(lp);
}

static int propose(struct domain *d, json_t *op, const char *agent, bool reports)
{
	struct live_prop *lp = calloc(1, sizeof *lp);
	struct buf b;
	if (lp == NULL)
		abort();
	lp->d = d;
	lp->reports = reports;
	snprintf(lp->agent, sizeof lp->agent, "%s", agent ? agent : "");
	lp->p.cb = prop_cb;
	lp->p.data = lp;
	buf_init(&b);
	domain_encode(d, op, NULL, clock_wall_ms(), &b);
	int rv = node_propose(d->node, &lp->p, &b);
	buf_close(&b);
	if (rv != 0)
		free(lp);
	return rv;
}

static void propose_state(struct domain *d, const char *id, struct dom_live *l, const char *state)
{
	json_t *op = json_pack("{s:s, s:s, s:s}", "op", "agent.state", "id", id, "state", state);
	if (propose(d, op, id, false) == 0) {
		l->proposing = true;
		log_info(strcmp(state, "ready") == 0 ? "Agent ready again" : "Agent offline",
		         "agent_id=%s timeout_ms=%u", id, d->opts.agent_timeout_ms);
	}
	json_decref(op);
}

void liveness_leader_start(struct domain *d)
{
	const char *k;
	void *v;
	uint64_t deadline = clock_mono_ms() + d->opts.agent_timeout_ms;
	live_free_all(d);
	reported_clear(d);
	json_array_clear(d->reports);
	d->reports_inflight = false;
	/* Every agent gets one full timeout from now, our election: one that keeps beating is
	 * never marked offline because leadership moved, one that died with the old leader is
	 * found within election + timeout. */
	for (size_t i = 0; hmap_next(&d->node->fsm.domain.agents, &i, &k, &v);)
		live_get(d, k, true)->deadline_ms = deadline;
}

void liveness_leader_stop(struct domain *d)
{
	live_free_all(d);
	reported_clear(d);
	if (d->reports != NULL)
		json_array_clear(d->reports);
}

uint64_t liveness_last_contact(struct domain *d, const char *agent_id)
{
	return live_get(d, agent_id, true)->last_ms;
}

json_t *liveness_reported(struct domain *d, const char *agent_id)
{
	struct dom_live *l = hmap_get(&d->live, agent_id);
	return l != NULL ? l->reported : NULL;
}

void liveness_sweep(struct domain *d)
{
	uint64_t now = clock_mono_ms();
	const char *k;
	void *v;
	if (now - d->last_sweep_ms < SWEEP_MS)
		return;
	d->last_sweep_ms = now;
	for (size_t i = 0; hmap_next(&d->node->fsm.domain.agents, &i, &k, &v);) {
		struct dom_agent *a = v;
		struct dom_live *l = live_get(d, k, true); /* enrolled since: a full timeout */
		if (a->ready && !l->proposing && l->deadline_ms < now)
			propose_state(d, k, l, "offline");
	}
}

/* "epoch:state:exit:restarts", to recognise a change already queued. */
static void signature(char *out, size_t size, json_t *rep)
{
	json_t *ec = json_object_get(rep, "exit_code");
	snprintf(out, size, "%lld:%s:%s%lld:%lld",
	         (long long)json_integer_value(json_object_get(rep, "epoch")),
	         json_string_value(json_object_get(rep, "state")), json_is_integer(ec) ? "" : "n",
	         (long long)json_integer_value(ec),
	         (long long)json_integer_value(json_object_get(rep, "restarts")));
}

static void queue(struct domain *d, const char *agent, json_t *rep)
{
	char sig[128];
	const char *id = json_string_value(json_object_get(rep, "id"));
	signature(sig, sizeof sig, rep);
	char *prev = hmap_get(&d->reported, id);
	if (prev != NULL && strcmp(prev, sig) == 0)
		return;
	char *copy = strdup(sig);
	if (copy == NULL)
		abort();
	free(hmap_put(&d->reported, id, copy));
	json_t *item = json_deep_copy(rep);
	json_object_set_new(item, "agent", json_string(agent));
	json_array_append_new(d->reports, item);
}

/* Whether the report differs from the record (what an entry would change). */
static bool differs(const struct dom_replica *r, json_t *rep)
{
	int state = dom_rstate_parse(json_string_value(json_object_get(rep, "state")));
	json_t *ec = json_object_get(rep, "exit_code"),
	       *have = json_object_get(r->doc, "exit_code");
	json_int_t restarts = json_integer_value(json_object_get(rep, "restarts"));
	if (!r->run)
		return state == DOM_R_STOPPED || state == DOM_R_EXITED || state == DOM_R_FAILED;
	return state != (int)r->state ||
	       restarts != json_integer_value(json_object_get(r->doc, "restarts")) ||
	       json_is_integer(ec) != json_is_integer(have) ||
	       (json_is_integer(ec) && json_integer_value(ec) != json_integer_value(have));
}

static bool listed(json_t *reports, const char *id)
{
	size_t i;
	json_t *rep;
	json_array_foreach(reports, i, rep)
	{
		const char *rid = json_string_value(json_object_get(rep, "id"));
		if (rid != NULL && strcmp(rid, id) == 0)
			return true;
	}
	return false;
}

static void compare_reports(struct domain *d, struct dom_agent *a, json_t *reports)
{
	struct fsm_domain *dom = &d->node->fsm.domain;
	size_t i;
	json_t *rep;
	json_array_foreach(reports, i, rep)
	{
		struct dom_replica *r =
		    dom_replica_get(dom, json_string_value(json_object_get(rep, "id")));
		if (r == NULL || r->on != a ||
		    r->epoch != (uint64_t)json_integer_value(json_object_get(rep, "epoch")))
			continue; /* not (or no longer) its own: the answer tells it to stop it */
		if (differs(r, rep))
			queue(d, a->id, rep);
	}
	/* A replica told to stop that the agent no longer mentions has stopped. */
	for (struct dom_replica *r = a->replicas; r != NULL; r = r->anext) {
		if (r->run || listed(reports, r->id))
			continue;
		json_t *rep =
		    json_pack("{s:s, s:I, s:s, s:n, s:i}", "id", r->id, "epoch",
		              (json_int_t)r->epoch, "state", "stopped", "exit_code", "restarts", 0);
		queue(d, a->id, rep);
		json_decref(rep);
	}
}

int domain_heartbeat(struct domain *d, const char *agent_id, json_t *reports, json_t **answer)
{
	struct dom_agent *a = dom_agent_get(&d->node->fsm.domain, agent_id);
	*answer = NULL;
	if (a == NULL)
		return 404;
	d->heartbeats++;
	struct dom_live *l = live_get(d, agent_id, true);
	uint64_t now = clock_mono_ms();
	l->deadline_ms = now + d->opts.agent_timeout_ms;
	l->last_ms = now;
	json_decref(l->reported);
	l->reported = json_incref(reports);
	if (!a->ready && !l->proposing)
		propose_state(d, agent_id, l, "ready");
	compare_reports(d, a, reports);
	if (json_array_size(d->reports) > 0)
		liveness_flush_reports(d);
	const struct fsm_member *leader = NULL;
	node_leader(d->node, &leader, NULL, NULL);
	json_int_t hb = json_integer_value(json_object_get(a->doc, "heartbeat_interval_ms"));
	*answer = json_pack("{s:o, s:I, s:I, s:o, s:o}", "assignments", view_assignments(d, a),
	                    "index", (json_int_t)a->assign_index, "heartbeat_interval_ms",
	                    hb > 0 ? hb : (json_int_t)d->opts.heartbeat_ms, "leader",
	                    leader != NULL ? json_string(leader->http_addr) : json_null(),
	                    "coordinators", view_coordinators(d));
	return 0;
}

void liveness_flush_reports(struct domain *d)
{
	if (d->reports_inflight || json_array_size(d->reports) == 0 || !d->leading)
		return;
	json_t *batch = d->reports;
	if (json_array_size(batch) > REPORTS_PER_ENTRY) {
		json_t *rest = json_array();
		while (json_array_size(batch) > REPORTS_PER_ENTRY) {
			json_array_append(rest, json_array_get(batch, REPORTS_PER_ENTRY));
			json_array_remove(batch, REPORTS_PER_ENTRY);
		}
		d->reports = rest;
	} else {
		d->reports = json_array();
	}
	json_t *op = json_pack("{s:s, s:o}", "op", "replica.report", "reports", batch);
	if (propose(d, op, NULL, true) == 0)
		d->reports_inflight = true;
	else
		reported_clear(d);
	json_decref(op);
	/* The map of what was sent must not outgrow the replicas it describes. */
	if (hmap_size(&d->reported) > 2 * hmap_size(&d->node->fsm.domain.replicas) + 1024)
		reported_clear(d);
}
