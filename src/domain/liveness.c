/* liveness: heartbeats on the leader (see domain.h).
 *
 * A heartbeat costs a hash lookup and a deadline update; it becomes a raft entry only when it
 * changes something: an offline agent is back (agent.state ready), or a replica's state,
 * exit code or restart count differs from the record. Those changes, from every agent, wait
 * in d->reports and go out as one replica.report entry per loop iteration (d->kick), with
 * at most one such entry in flight; a change already queued or sent is not queued again.
 * A new leader gives every agent a full timeout from its election (liveness_leader_start)
 * instead of a fixed grace.
 *
 * Deadlines. Every deadline is "now + agent timeout" when it is set, so moving an agent to the
 * tail of one queue on each heartbeat keeps the queue in deadline order: a sweep (every
 * SWEEP_MS) looks at the expired head only, and costs nothing for the agents that beat. An
 * expired agent that the records still call ready gets one agent.state offline.
 *
 * The leader's own lateness is not the agent's. Nomad's users lost whole fleets to a stalled
 * or overloaded leader that marked live clients down (hashicorp/nomad#3840, PR #14474), and a
 * first 10,000-agent run here cascaded the same way: heartbeats answered late, agents marked
 * offline, their replicas placed again, the leader loaded further. So deadlines run on a
 * liveness clock that stops while the leader cannot watch: a tick that runs late (the process
 * was stopped, swapped out, or the loop was held) holds the clock back by its lateness, and a
 * sweep leaves alone an agent whose deadline is younger than the oldest request still waiting
 * in the HTTP queue, which may be its heartbeat. A truly silent agent is found that much
 * later, which is the time the leader was not looking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"
#include "log/log.h"
#include "util/clock.h"

#define SWEEP_MS          100
#define REPORTS_PER_ENTRY 2000
/* Ticks this much later than DOMAIN_TICK_MS hold the liveness clock: below it is ordinary
 * timer jitter, which agents' timeouts absorb. */
#define TICK_SLACK_MS 20

struct live_prop {
	struct node_propose p;
	struct domain *d;
	char agent[80];
	bool reports; /* a replica.report entry */
};

static uint64_t live_now(const struct domain *d)
{
	return clock_mono_ms() - d->held_ms;
}

static void due_remove(struct domain *d, struct dom_live *l)
{
	if (!l->queued)
		return;
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		d->due_head = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	else
		d->due_tail = l->prev;
	l->prev = l->next = NULL;
	l->queued = false;
}

/* At the tail: its deadline is the latest (now + timeout). */
static void due_append(struct domain *d, struct dom_live *l)
{
	due_remove(d, l);
	l->prev = d->due_tail;
	if (d->due_tail != NULL)
		d->due_tail->next = l;
	else
		d->due_head = l;
	d->due_tail = l;
	l->queued = true;
}

/* At the head: an expired deadline to look at again in the next sweep. */
static void due_prepend(struct domain *d, struct dom_live *l)
{
	due_remove(d, l);
	l->next = d->due_head;
	if (d->due_head != NULL)
		d->due_head->prev = l;
	else
		d->due_tail = l;
	d->due_head = l;
	l->queued = true;
}

static struct dom_live *live_get(struct domain *d, const char *id, bool create)
{
	struct dom_live *l = hmap_get(&d->live, id);
	if (l == NULL && create) {
		size_t n = strlen(id) + 1;
		l = calloc(1, sizeof *l + n);
		if (l == NULL)
			abort();
		memcpy(l->id, id, n);
		l->last_ms = clock_mono_ms(); /* it may have reached someone until now */
		l->deadline_ms = live_now(d) + d->opts.agent_timeout_ms;
		hmap_put(&d->live, id, l);
		due_append(d, l);
	}
	return l;
}

static void live_free(void *v)
{
	struct dom_live *l = v;
	json_decref(l->reported);
	free(l);
}

static void live_free_all(struct domain *d)
{
	hmap_clear(&d->live, live_free);
	d->due_head = d->due_tail = NULL;
}

static void reported_clear(struct domain *d)
{
	hmap_clear(&d->reported, free);
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
		if (l != NULL) {
			l->proposing = false;
			/* An offline entry that failed while we still lead: the next sweep asks
			 * again (a ready one is asked again by the agent's next heartbeat). */
			if (status != 0 && !l->queued)
				due_prepend(d, l);
		}
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

static bool propose_state(struct domain *d, const char *id, struct dom_live *l, const char *state)
{
	json_t *op = json_pack("{s:s, s:s, s:s}", "op", "agent.state", "id", id, "state", state);
	if (propose(d, op, id, false) == 0) {
		l->proposing = true;
		log_info(strcmp(state, "ready") == 0 ? "Agent ready again" : "Agent offline",
		         "agent_id=%s timeout_ms=%u", id, d->opts.agent_timeout_ms);
	}
	json_decref(op);
	return l->proposing;
}

void liveness_leader_start(struct domain *d)
{
	const char *k;
	void *v;
	live_free_all(d);
	reported_clear(d);
	json_array_clear(d->reports);
	d->reports_inflight = false;
	d->last_tick_ms = 0;
	/* Every agent gets one full timeout from now, our election: one that keeps beating is
	 * never marked offline because leadership moved, one that died with the old leader is
	 * found within election + timeout. */
	for (size_t i = 0; hmap_next(&d->node->fsm.domain.agents, &i, &k, &v);)
		live_get(d, k, true);
}

void liveness_leader_stop(struct domain *d)
{
	live_free_all(d);
	reported_clear(d);
	assign_cache_clear(&d->assign);
	if (d->reports != NULL)
		json_array_clear(d->reports);
}

void liveness_track(struct domain *d, const char *agent_id)
{
	live_get(d, agent_id, true);
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

/* A tick later than it should have been: the leader was not looking for that long. */
static void hold_clock(struct domain *d, uint64_t mono)
{
	if (d->last_tick_ms != 0 && mono - d->last_tick_ms > DOMAIN_TICK_MS + TICK_SLACK_MS) {
		uint64_t late = mono - d->last_tick_ms - DOMAIN_TICK_MS;
		d->held_ms += late;
		if (late >= d->opts.agent_timeout_ms / 4)
			log_warn("Liveness clock held: the leader was not running",
			         "late_ms=%llu agent_timeout_ms=%u", (unsigned long long)late,
			         d->opts.agent_timeout_ms);
	}
	d->last_tick_ms = mono;
}

void liveness_sweep(struct domain *d)
{
	uint64_t mono = clock_mono_ms();
	hold_clock(d, mono);
	if (mono - d->last_sweep_ms < SWEEP_MS)
		return;
	d->last_sweep_ms = mono;
	uint64_t now = mono - d->held_ms;
	uint64_t backlog = d->opts.backlog_ms != NULL ? d->opts.backlog_ms(d->opts.backlog_arg) : 0;
	struct dom_live *l;
	while ((l = d->due_head) != NULL && l->deadline_ms < now) {
		/* Its transition commits within moments; it is looked at again after that. */
		if (l->proposing)
			break;
		if (l->deadline_ms + backlog >= now) {
			/* A heartbeat that arrived before its deadline may be among the queued
			 * requests; every later deadline is younger still. */
			d->live_spared++;
			break;
		}
		due_remove(d, l);
		struct dom_agent *a = dom_agent_get(&d->node->fsm.domain, l->id);
		if (a == NULL) {
			hmap_del(&d->live, l->id); /* removed: nothing to watch */
			live_free(l);
		} else if (a->ready && !propose_state(d, l->id, l, "offline")) {
			due_prepend(d, l); /* raft refused it (no longer leader?): next sweep */
			break;
		}
		/* Offline already: its next heartbeat queues it again. */
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

int domain_heartbeat(struct domain *d, const char *agent_id, json_t *reports, uint64_t known_index,
                     char **answer, size_t *len)
{
	struct dom_agent *a = dom_agent_get(&d->node->fsm.domain, agent_id);
	*answer = NULL;
	*len = 0;
	if (a == NULL)
		return 404;
	d->heartbeats++;
	struct dom_live *l = live_get(d, agent_id, true);
	l->deadline_ms = live_now(d) + d->opts.agent_timeout_ms;
	l->last_ms = clock_mono_ms();
	due_append(d, l);
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
	json_t *head =
	    json_pack("{s:I, s:I, s:o, s:o}", "index", (json_int_t)a->assign_index,
	              "heartbeat_interval_ms", hb > 0 ? hb : (json_int_t)d->opts.heartbeat_ms,
	              "leader", leader != NULL ? json_string(leader->http_addr) : json_null(),
	              "coordinators", view_coordinators(d));
	/* The agent already applied the assignments of this index: rendering them again (every
	 * replica with its spec, every beat) was most of a heartbeat's cost once agents ran
	 * dozens of replicas. Only an index this node's applies set counts (assign_exact): one
	 * rebuilt from the store may be older than a change the agent has seen. Otherwise the
	 * list is joined from each replica's cached text (assign.h). */
	if (known_index != 0 && known_index == a->assign_index && a->assign_exact) {
		json_object_set_new(head, "unchanged", json_true());
		*answer = json_dumps(head, JSON_COMPACT);
		json_decref(head);
		*len = *answer != NULL ? strlen(*answer) : 0;
	} else {
		*answer = assign_answer_text(&d->assign, &d->node->fsm.domain, head, a, len);
	}
	return *answer != NULL ? 0 : 500;
}

void liveness_flush_reports(struct domain *d)
{
	if (d->reports_inflight || json_array_size(d->reports) == 0 || !d->leading)
		return;
	json_t *batch = d->reports;
	if (json_array_size(batch) > REPORTS_PER_ENTRY) {
		/* One pass: removing the tail one report at a time moved the rest each time. */
		json_t *all = batch, *rest = json_array();
		batch = json_array();
		for (size_t i = 0; i < json_array_size(all); i++)
			json_array_append(i < REPORTS_PER_ENTRY ? batch : rest,
			                  json_array_get(all, i));
		json_decref(all);
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
