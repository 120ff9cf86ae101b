/* plan: the scheduler driver on the leader (see domain.h).
 *
 * Applies mark workloads dirty; soon after (domain.c's kick), plan_run walks the dirty ones in
 * key order and, for every slot that needs a placement, asks scheduler/place.c for an agent
 * and proposes replica.place, or replica.pending with the reason when nothing fits (only when
 * the reason changed, so a pending replica costs no entry per plan). A slot needs a placement
 * when it has no record, is unplaced, was told to stop, or its agent is gone, offline or
 * draining; when its replica failed after its restart attempts (placed elsewhere if
 * anything else fits: failed_on); or when the workload's spec changed since it was placed
 * (kept on its agent when that agent still fits). An exclusive workload's replica on an
 * offline agent waits until that agent's fence has stopped it (sched_replace_at, from the
 * agent's last heartbeat); the periodic full plan places it then; one on a draining agent is
 * told to stop there first (replica.stop) and placed once that agent reports it stopped.
 * Cordoned agents keep what they run. A slot with a proposal in flight is left alone until the
 * answer; a refused placement (the state moved under the plan) marks the workload dirty again.
 * Agents' free capacity is tracked across the run so one plan does not promise the same room twice.
 *
 * Also here: a drain completes (agent.drained) once nothing is assigned to the agent and its
 * last heartbeat reported no replica starting or running (or it is offline); stop records
 * of offline agents are forgotten (replica.forget: the agent stops anything unassigned when
 * it returns).
 *
 * Cost. A run is bounded in time (PLAN_BUDGET_NS; the rest goes on in the next loop
 * iteration, in the same key order), and a workload with nothing to decide costs one pass
 * over its slots, with no scan of the agents: a steady-state plan of every workload is
 * O(replicas). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"
#include "fsm/fsm.h"
#include "log/log.h"
#include "scheduler/place.h"
#include "util/clock.h"

/* One run places for at most this long, then yields the loop to heartbeats and raft and
 * goes on in the next iteration (domain.c's kick): with thousands of agents, each placement
 * scans every agent, and an unbounded run of a 50,000-replica burst held the loop for
 * seconds, long enough for heartbeats to time out and agents to be marked offline. */
#define PLAN_BUDGET_NS (10 * 1000000ULL)
#define FULL_RUN_MS    1000

struct plan_prop {
	struct node_propose p;
	struct domain *d;
	char key[320];      /* inflight key */
	char workload[300]; /* to plan again when refused */
	enum { P_PLACE, P_PENDING, P_OTHER } kind;
};

struct plan_run {
	struct domain *d;
	struct sched_agent *agents;
	struct sched_label **labels; /* per agent, owned */
	size_t n;
	struct hmap index;    /* agent id -> index + 1 */
	uint64_t deadline_ns; /* uv_hrtime() past which the run yields the loop */
	bool labels_built;
	uint64_t built_ms;     /* clock_mono_ms() of run_init */
	const char *zones[64]; /* one pointer per distinct zone name (see run_init) */
	size_t n_zones;
};

static void prop_cb(struct node_propose *p, int status, void *result)
{
	struct plan_prop *pp = p->data;
	struct domain *d = pp->d;
	hmap_del(&d->inflight, pp->key);
	if (status == 0) {
		unsigned code = fsm_result_code(result);
		if (code == FSM_CONFLICT) {
			d->decisions_refused++;
			plan_mark(d, pp->workload);
		} else if (pp->kind == P_PLACE) {
			d->decisions_placed++;
		} else if (pp->kind == P_PENDING) {
			d->decisions_pending++;
		}
	}
	free(pp);
}

static void propose(struct domain *d, json_t *op, const char *key, const char *workload, int kind)
{
	struct plan_prop *pp = calloc(1, sizeof *pp);
	struct buf b;
	if (pp == NULL)
		abort();
	pp->d = d;
	pp->kind = kind;
	snprintf(pp->key, sizeof pp->key, "%s", key);
	snprintf(pp->workload, sizeof pp->workload, "%s", workload ? workload : "");
	pp->p.cb = prop_cb;
	pp->p.data = pp;
	buf_init(&b);
	domain_encode(d, op, NULL, clock_wall_ms(), &b);
	if (node_propose(d->node, &pp->p, &b) == 0)
		hmap_put(&d->inflight, pp->key, pp);
	else
		free(pp);
	buf_close(&b);
}

void plan_mark(struct domain *d, const char *workload_key)
{
	if (d->leading)
		hmap_put(&d->dirty, workload_key, d);
}

void plan_mark_all(struct domain *d)
{
	if (d->leading)
		d->plan_all = true;
}

void plan_leader_stop(struct domain *d)
{
	plan_forget_agents(d);
	hmap_close(&d->dirty);
	hmap_init(&d->dirty);
	/* Proposals still out answer later; they only remove their own entry. */
	hmap_close(&d->inflight);
	hmap_init(&d->inflight);
	d->plan_all = false;
}

/* ---- the agents of one run ---- */

static struct sched_label *labels_of(json_t *obj, size_t *n)
{
	const char *k;
	json_t *v;
	size_t i = 0;
	*n = json_object_size(obj);
	struct sched_label *l = calloc(*n ? *n : 1, sizeof *l);
	if (l == NULL)
		abort();
	json_object_foreach(obj, k, v)
	{
		l[i].key = k;
		l[i].value = json_string_value(v) ? json_string_value(v) : "";
		i++;
	}
	return l;
}

/* Agents of one zone get the same zone pointer, so that the placement function's zone
 * table matches them by pointer and compares names only once per zone (place.c). */
static const char *zone_intern(struct plan_run *r, const char *zone)
{
	for (size_t i = 0; i < r->n_zones; i++)
		if (strcmp(r->zones[i], zone) == 0)
			return r->zones[i];
	if (r->n_zones < sizeof r->zones / sizeof r->zones[0])
		r->zones[r->n_zones++] = zone;
	return zone;
}

static void run_init(struct plan_run *r, struct domain *d)
{
	struct fsm_domain *dom = &d->node->fsm.domain;
	const char *k;
	void *v;
	memset(r, 0, sizeof *r);
	r->d = d;
	hmap_init(&r->index);
	r->built_ms = clock_mono_ms();
	r->agents = calloc(hmap_size(&dom->agents) + 1, sizeof *r->agents);
	r->labels = calloc(hmap_size(&dom->agents) + 1, sizeof *r->labels);
	if (r->agents == NULL || r->labels == NULL)
		abort();
	for (size_t i = 0; hmap_next(&dom->agents, &i, &k, &v);) {
		struct dom_agent *a = v;
		struct sched_agent *s = &r->agents[r->n];
		s->id = a->id;
		s->zone = zone_intern(r, a->zone);
		s->cpu = a->cpu;
		s->mem = a->mem;
		s->used_cpu = a->used_cpu;
		s->used_mem = a->used_mem;
		s->ready = a->ready;
		s->schedulable = !a->cordoned && !a->draining;
		r->n++;
		hmap_put(&r->index, a->id, (void *)(uintptr_t)r->n);
	}
}

/* The agents' labels, only for a workload with a node selector (the only filter that reads
 * them): building them walks every agent's JSON document, which with thousands of agents
 * was most of a run's cost when no workload asked for them. */
static void run_labels(struct plan_run *r)
{
	if (r->labels_built)
		return;
	r->labels_built = true;
	for (size_t i = 0; i < r->n; i++) {
		struct dom_agent *a = dom_agent_get(&r->d->node->fsm.domain, r->agents[i].id);
		r->labels[i] = labels_of(a != NULL ? json_object_get(a->doc, "labels") : NULL,
		                         &r->agents[i].n_labels);
		r->agents[i].labels = r->labels[i];
	}
}

static void run_close(struct plan_run *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->labels[i]);
	free(r->labels);
	free(r->agents);
	hmap_close(&r->index);
}

void plan_forget_agents(struct domain *d)
{
	if (d->plan_cache == NULL)
		return;
	run_close(d->plan_cache);
	free(d->plan_cache);
	d->plan_cache = NULL;
}

/* The agents of a run, kept across the runs of one burst: building them walks and indexes
 * every agent (with 10,000 agents, more than the placements of a 10 ms run). Kept only while
 * a run stops at its budget, for at most FULL_RUN_MS, and dropped when any agent changes
 * (plan_forget_agents from domain.c): the capacity it tracks includes the decisions of the
 * earlier runs, and what it misses (capacity freed since) only makes it conservative; apply
 * re-checks every placement anyway. */
static struct plan_run *run_get(struct domain *d)
{
	if (d->plan_cache != NULL && clock_mono_ms() - d->plan_cache->built_ms >= FULL_RUN_MS)
		plan_forget_agents(d);
	if (d->plan_cache == NULL) {
		d->plan_cache = calloc(1, sizeof *d->plan_cache);
		if (d->plan_cache == NULL)
			abort();
		run_init(d->plan_cache, d);
	}
	return d->plan_cache;
}

static struct sched_agent *agent_of(struct plan_run *r, const char *id)
{
	uintptr_t i = (uintptr_t)hmap_get(&r->index, id);
	return i > 0 ? &r->agents[i - 1] : NULL;
}

/* ---- one workload ---- */

struct request {
	struct sched_request req;
	struct sched_label *selector;
	const char **zones;
	const char *avoid[16];
};

static void request_init(struct request *q, const struct dom_workload *w)
{
	json_t *pl = json_object_get(w->doc, "placement");
	json_t *zones = json_object_get(pl, "zones");
	memset(q, 0, sizeof *q);
	q->req.cpu = w->cpu;
	q->req.mem = w->mem;
	q->selector = labels_of(json_object_get(pl, "node_selector"), &q->req.n_selector);
	q->req.selector = q->selector;
	q->req.n_zones = json_array_size(zones);
	q->zones = calloc(q->req.n_zones + 1, sizeof *q->zones);
	if (q->zones == NULL)
		abort();
	for (size_t i = 0; i < q->req.n_zones; i++)
		q->zones[i] = json_string_value(json_array_get(zones, i));
	q->req.zones = q->zones;
	const char *strategy = json_string_value(json_object_get(pl, "strategy"));
	q->req.strategy =
	    strategy != NULL && strcmp(strategy, "binpack") == 0 ? SCHED_BINPACK : SCHED_SPREAD;
}

static void request_close(struct request *q)
{
	free(q->selector);
	free(q->zones);
}

/* Why slot's replica needs a (new) placement; NULL when it does not. */
static const char *needs_place(const struct dom_workload *w, const struct dom_replica *r)
{
	if (r == NULL)
		return "new";
	if (!r->run)
		return "told to stop";
	if (r->agent[0] == '\0')
		return "unplaced";
	if (r->on == NULL)
		return "agent removed";
	if (!r->on->ready)
		return "agent offline";
	if (r->on->draining)
		return "agent draining";
	if (r->state == DOM_R_FAILED)
		return "failed";
	if (r->spec_version < w->spec_version)
		return "spec changed";
	return NULL;
}

/* An exclusive workload's replica on a draining agent: told to stop there first
 * (replica.stop, proposed here) and placed elsewhere only once that agent reports it
 * stopped; also any stop record of it still reported running on a ready agent. True while
 * that is under way. (A failed replica has no process left; a new spec that still fits runs
 * on the same agent, which waits for the old process; a new spec that no longer fits there
 * is moved at once: see docs/architecture.md.) */
static bool exclusive_stop_first(struct domain *d, const struct dom_workload *w,
                                 const struct dom_replica *r)
{
	json_t *pl = json_object_get(w->doc, "placement");
	if (r == NULL || r->on == NULL || !r->on->ready || r->state == DOM_R_FAILED ||
	    !json_is_true(json_object_get(pl, "exclusive")))
		return false;
	if (!r->run) /* told already: wait for the agent to report it stopped */
		return r->state == DOM_R_RUNNING || r->state == DOM_R_STARTING;
	if (!r->on->draining)
		return false;
	json_t *op = json_pack("{s:s, s:s, s:I}", "op", "replica.stop", "id", r->id, "epoch",
	                       (json_int_t)r->epoch);
	propose(d, op, r->id, w->key, P_OTHER);
	json_decref(op);
	return true;
}

/* An exclusive workload's replica on an offline agent (told to stop or not): true while its
 * copy may still run there (the agent's fence has not stopped it yet). */
static bool fence_holds(struct domain *d, const struct dom_workload *w, const struct dom_replica *r)
{
	json_t *pl = json_object_get(w->doc, "placement");
	if (r == NULL || r->on == NULL || r->on->ready ||
	    !json_is_true(json_object_get(pl, "exclusive")))
		return false;
	json_t *f = json_object_get(w->doc, "stop_after_disconnect_s");
	json_t *k = json_object_get(w->doc, "kill_timeout_ms");
	uint64_t at = sched_replace_at(liveness_last_contact(d, r->agent),
	                               json_is_integer(f) ? (uint64_t)json_integer_value(f) : 0,
	                               json_is_integer(k) ? (uint64_t)json_integer_value(k) : 0,
	                               d->opts.fence_margin_ms);
	return clock_mono_ms() < at;
}

static void set_avoid(struct request *q, const struct dom_replica *r)
{
	json_t *failed = r != NULL ? json_object_get(r->doc, "failed_on") : NULL;
	q->req.n_avoid = 0;
	for (size_t i = 0; i < json_array_size(failed) && q->req.n_avoid < 15; i++)
		q->avoid[q->req.n_avoid++] = json_string_value(json_array_get(failed, i));
	if (r != NULL && r->state == DOM_R_FAILED && r->agent[0] != '\0')
		q->avoid[q->req.n_avoid++] = r->agent;
	q->req.avoid = q->avoid;
}

static void place_slot(struct plan_run *run, const struct dom_workload *w, struct request *q,
                       unsigned slot)
{
	struct domain *d = run->d;
	struct dom_replica *r = dom_slot_get(&d->node->fsm.domain, w->key, slot);
	char id[320];
	dom_slot_id(id, sizeof id, w->key, slot);
	if (hmap_get(&d->inflight, id) != NULL || needs_place(w, r) == NULL ||
	    fence_holds(d, w, r) || exclusive_stop_first(d, w, r))
		return;
	q->req.replica_id = id;
	set_avoid(q, r);
	struct sched_agent *cur = r != NULL && r->on != NULL ? agent_of(run, r->agent) : NULL;
	/* It leaves its agent (or runs there again with a new spec): its own share there is
	 * free for this decision. */
	if (cur != NULL && r->run) {
		cur->used_cpu -= r->cpu;
		cur->used_mem -= r->mem;
		if (cur->same_workload > 0)
			cur->same_workload--;
	}
	int chosen = -1;
	if (cur != NULL && r->state != DOM_R_FAILED && sched_check(cur, &q->req) == SCHED_N_FILTERS)
		chosen = (int)(cur - run->agents); /* a new spec, same agent */
	struct sched_result res = {.agent = -1};
	if (chosen < 0) {
		sched_place(run->agents, run->n, &q->req, &res);
		chosen = res.agent;
	}
	uint64_t epoch = r != NULL ? r->epoch : 0;
	json_t *op;
	if (chosen >= 0) {
		struct sched_agent *a = &run->agents[chosen];
		a->used_cpu += q->req.cpu;
		a->used_mem += q->req.mem;
		a->same_workload++;
		op = json_pack("{s:s, s:s, s:I, s:s}", "op", "replica.place", "id", id, "epoch",
		               (json_int_t)epoch, "agent", a->id);
		propose(d, op, id, w->key, P_PLACE);
	} else {
		if (cur != NULL && r->run) { /* it stays where it is for now */
			cur->used_cpu += r->cpu;
			cur->used_mem += r->mem;
			cur->same_workload++;
		}
		const char *have =
		    r != NULL ? json_string_value(json_object_get(r->doc, "pending_reason")) : NULL;
		if (have != NULL && strcmp(have, res.reason) == 0)
			return;
		op = json_pack("{s:s, s:s, s:I, s:s}", "op", "replica.pending", "id", id, "epoch",
		               (json_int_t)epoch, "reason", res.reason);
		propose(d, op, id, w->key, P_PENDING);
	}
	json_decref(op);
}

/* Whether any slot of w needs a decision (O(slots), no agent scan): a workload whose
 * replicas are all where they belong costs the plan nothing more. */
static bool needs_work(struct domain *d, const struct dom_workload *w)
{
	struct fsm_domain *dom = &d->node->fsm.domain;
	char id[320];
	for (unsigned s = 0; s < w->replicas; s++) {
		struct dom_replica *r = dom_slot_get(dom, w->key, s);
		if (needs_place(w, r) == NULL)
			continue;
		dom_slot_id(id, sizeof id, w->key, s);
		if (hmap_get(&d->inflight, id) == NULL)
			return true;
	}
	return false;
}

/* false when the run's time budget ran out before every slot was seen: w is planned again
 * in the next run. */
static bool plan_workload(struct plan_run *run, const struct dom_workload *w)
{
	struct fsm_domain *dom = &run->d->node->fsm.domain;
	struct request q;
	if (!needs_work(run->d, w))
		return true;
	for (size_t i = 0; i < run->n; i++)
		run->agents[i].same_workload = 0;
	for (unsigned s = 0; s < w->replicas; s++) {
		struct dom_replica *r = dom_slot_get(dom, w->key, s);
		struct sched_agent *a = r != NULL && r->run ? agent_of(run, r->agent) : NULL;
		if (a != NULL)
			a->same_workload++;
	}
	request_init(&q, w);
	if (q.req.n_selector > 0)
		run_labels(run);
	bool done = true;
	for (unsigned s = 0; s < w->replicas && done; s++) {
		place_slot(run, w, &q, s);
		done = uv_hrtime() < run->deadline_ns;
	}
	request_close(&q);
	return done;
}

/* ---- agents: drains and stop records ---- */

static bool still_running(json_t *reported)
{
	size_t i;
	json_t *rep;
	json_array_foreach(reported, i, rep)
	{
		const char *st = json_string_value(json_object_get(rep, "state"));
		if (st != NULL && (strcmp(st, "running") == 0 || strcmp(st, "starting") == 0))
			return true;
	}
	return false;
}

static void tend_agents(struct domain *d)
{
	const char *k;
	void *v;
	char key[320];
	for (size_t i = 0; hmap_next(&d->node->fsm.domain.agents, &i, &k, &v);) {
		struct dom_agent *a = v;
		if (!a->ready) {
			for (struct dom_replica *r = a->replicas; r != NULL; r = r->anext) {
				struct dom_workload *w =
				    dom_workload_get(&d->node->fsm.domain, r->workload);
				if (r->run || hmap_get(&d->inflight, r->id) != NULL ||
				    (w != NULL && fence_holds(d, w, r)))
					continue; /* forgetting it would let its slot be placed */
				json_t *op = json_pack("{s:s, s:s, s:I}", "op", "replica.forget",
				                       "id", r->id, "epoch", (json_int_t)r->epoch);
				propose(d, op, r->id, r->workload, P_OTHER);
				json_decref(op);
			}
		}
		/* Every run walks every agent: the key is built only for a drain that may be
		 * complete (an snprintf per agent was a tenth of a 10,000-agent leader). */
		if (!a->draining || a->drain_complete || a->n_replicas > 0)
			continue;
		snprintf(key, sizeof key, "drained:%s", a->id);
		if (hmap_get(&d->inflight, key) != NULL)
			continue;
		if (a->ready && (liveness_reported(d, a->id) == NULL ||
		                 still_running(liveness_reported(d, a->id))))
			continue; /* its old processes have not been reported gone yet */
		json_t *op = json_pack("{s:s, s:s}", "op", "agent.drained", "id", a->id);
		propose(d, op, key, NULL, P_OTHER);
		json_decref(op);
		log_info("Drain complete", "agent_id=%s", a->id);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool plan_run(struct domain *d)
{
	struct fsm_domain *dom = &d->node->fsm.domain;
	struct hmap *src = d->plan_all ? &dom->workloads : &d->dirty;
	size_t n = hmap_size(src);
	if (!d->leading || (n == 0 && !d->plan_all))
		return false;
	uint64_t t0 = uv_hrtime();
	const char **keys = calloc(n + 1, sizeof *keys);
	const char *k;
	if (keys == NULL)
		abort();
	n = 0;
	for (size_t i = 0; hmap_next(src, &i, &k, NULL);)
		keys[n++] = k;
	qsort(keys, n, sizeof *keys, cmp_str); /* the same order on any leader */
	struct plan_run *run = run_get(d);
	run->deadline_ns = t0 + PLAN_BUDGET_NS;
	size_t i = 0;
	while (i < n) {
		struct dom_workload *w = dom_workload_get(dom, keys[i]);
		if (w != NULL && !plan_workload(run, w))
			break; /* out of time: keys[i] itself is planned again */
		i++;
		if (uv_hrtime() >= run->deadline_ns)
			break;
	}
	if (i == n)
		plan_forget_agents(d); /* done: the next burst starts from the records */
	/* What is left (keys[i..n)) is the next run's dirty set; keys point into src, so copy
	 * them before src is reset. */
	struct hmap rest;
	hmap_init(&rest);
	for (size_t j = i; j < n; j++)
		hmap_put(&rest, keys[j], d);
	free(keys);
	tend_agents(d);
	hmap_close(&d->dirty);
	d->dirty = rest;
	d->plan_all = false;
	double secs = (double)(uv_hrtime() - t0) / 1e9;
	d->plans++;
	d->plan_seconds_total += secs;
	d->last_plan_seconds = secs;
	metrics_observe(d->metrics, "cloudless_scheduling_duration_seconds", NULL, secs);
	return hmap_size(&d->dirty) > 0;
}
