/* domain: wiring of the domain layer (see domain.h): the timers, leadership transitions, the
 * fsm's apply hook, and the entry encoding shared by the API and the scheduler. */
#include "domain/domain.h"

#include <stdlib.h>
#include <string.h>

#include "fsm/command.h"
#include "log/log.h"
#include "util/clock.h"

#define FULL_PLAN_MS 1000

static void kick_cb(uv_timer_t *t)
{
	struct domain *d = t->data;
	d->kicked = false;
	if (!d->leading)
		return;
	liveness_flush_reports(d);
	uint64_t t0 = uv_hrtime();
	if (plan_run(d)) {
		/* The rest after as long as this run took (at least 1 ms): a burst of placements
		 * takes at most half of the loop, and heartbeats and raft get the other half. Not
		 * 0 ms: a 0 ms timer started from a timer callback would run in the same pass of
		 * the loop's timers, before any I/O is served. */
		uint64_t ms = (uv_hrtime() - t0) / 1000000;
		d->kicked = true;
		uv_timer_start(&d->kick, kick_cb, ms > 0 ? ms : 1, 0);
	}
}

/* Soon, once: applies come in bursts; one plan and one report entry serve them all. */
static void kick(struct domain *d)
{
	if (d->kicked || !d->leading)
		return;
	d->kicked = true;
	uv_timer_start(&d->kick, kick_cb, 0, 0);
}

static void leadership(struct domain *d)
{
	bool ready = node_is_ready_leader(d->node) && !d->node->closing;
	if (ready == d->leading)
		return;
	d->leading = ready;
	if (ready) {
		log_info("Domain leadership started", "agents=%zu workloads=%zu replicas=%zu",
		         hmap_size(&d->node->fsm.domain.agents),
		         hmap_size(&d->node->fsm.domain.workloads),
		         hmap_size(&d->node->fsm.domain.replicas));
		liveness_leader_start(d);
		plan_mark_all(d);
		kick(d);
	} else {
		liveness_leader_stop(d);
		plan_leader_stop(d);
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct domain *d = t->data;
	leadership(d);
	if (!d->leading)
		return;
	liveness_sweep(d);
	uint64_t now = clock_mono_ms();
	if (now - d->last_full_plan_ms >= FULL_PLAN_MS) {
		/* Pending replicas are retried, and anything a missed event left behind is
		 * caught, at least once a second. */
		d->last_full_plan_ms = now;
		plan_mark_all(d);
	}
	kick(d);
}

void domain_on_apply(void *arg, enum dom_event ev, const char *key, uint64_t index)
{
	struct domain *d = arg;
	char buf[320];
	switch (ev) {
	case DOM_EV_WORKLOAD: {
		const char *slash = strchr(key, '/');
		snprintf(buf, sizeof buf, "workload:%s", key);
		watch_fire(d, buf, index);
		snprintf(buf, sizeof buf, "workloads:%.*s", slash ? (int)(slash - key) : 0, key);
		watch_fire(d, buf, index);
		watch_fire(d, "workloads:*", index);
		plan_mark(d, key);
		break;
	}
	case DOM_EV_ASSIGNMENT:
		snprintf(buf, sizeof buf, "agent:%s", key);
		watch_fire(d, buf, index);
		break;
	case DOM_EV_AGENT:
		/* Ready, offline, cordoned, draining, removed, new capacity: any of them may
		 * change where replicas can go. */
		if (d->leading)
			liveness_track(d, key);
		plan_forget_agents(d);
		plan_mark_all(d);
		break;
	case DOM_EV_REPLICA: {
		/* Its own workload is planned again. Not every workload: each placement and each
		 * reported state is a replica event, and planning everything on each of them made
		 * a burst of N placements cost N full plans. Capacity a stopped or moved replica
		 * frees reaches other workloads' pending replicas by the periodic full plan (at
		 * most FULL_PLAN_MS later). */
		const char *slash = strrchr(key, '/');
		if (slash != NULL) {
			snprintf(buf, sizeof buf, "%.*s", (int)(slash - key), key);
			plan_mark(d, buf);
		}
		break;
	}
	}
	kick(d);
}

void domain_init(struct domain *d, uv_loop_t *loop, struct node *node, struct metrics *metrics,
                 const struct domain_options *opts)
{
	memset(d, 0, sizeof *d);
	d->loop = loop;
	d->node = node;
	d->metrics = metrics;
	d->opts = *opts;
	hmap_init(&d->live);
	hmap_init(&d->reported);
	hmap_init(&d->dirty);
	hmap_init(&d->inflight);
	assign_cache_init(&d->assign);
	hmap_init(&d->watches.topics);
	d->reports = json_array();
	uv_timer_init(loop, &d->tick);
	d->tick.data = d;
	uv_timer_init(loop, &d->kick);
	d->kick.data = d;
	uv_timer_start(&d->tick, tick_cb, DOMAIN_TICK_MS, DOMAIN_TICK_MS);
	node->fsm.domain.hook = domain_on_apply;
	node->fsm.domain.hook_arg = d;
}

void domain_close(struct domain *d)
{
	uv_timer_stop(&d->tick);
	uv_timer_stop(&d->kick);
	uv_close((uv_handle_t *)&d->tick, NULL);
	uv_close((uv_handle_t *)&d->kick, NULL);
	d->node->fsm.domain.hook = NULL;
	watch_close_all(d);
	liveness_leader_stop(d);
	plan_leader_stop(d);
	hmap_close(&d->live);
	hmap_close(&d->reported);
	hmap_close(&d->dirty);
	assign_cache_close(&d->assign);
	hmap_close(&d->inflight);
	hmap_close(&d->watches.topics);
	json_decref(d->reports);
	d->reports = NULL;
}

void domain_encode(const struct domain *d, json_t *op, const struct domain_idem *idem,
                   uint64_t ts_ms, struct buf *out)
{
	char *s = json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS);
	if (s == NULL) {
		log_error("domain out of memory", "what=\"encoding an op\"");
		abort();
	}
	struct command c = {.type = COMMAND_DOMAIN,
	                    .ts_ms = ts_ms,
	                    .idem_ttl_s = d->opts.idem_ttl_s,
	                    .idem_max = d->opts.idem_max};
	c.value = (struct command_str){s, strlen(s)};
	if (idem != NULL) {
		c.idem_key = (struct command_str){idem->key, strlen(idem->key)};
		c.idem_internal = idem->internal;
		c.resent = idem->resent;
	}
	command_encode(&c, out);
	free(s);
}
