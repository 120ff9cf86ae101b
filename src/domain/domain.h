/* domain: the leader's side of workloads and agents, and what every node renders of them.
 *
 * The records live in the fsm (fsm/domain.h) and change only through raft entries. This layer
 * reads them and proposes commands; it never writes the store. Its parts:
 *
 *   liveness.c  heartbeats, on the leader: a deadline per agent in memory (O(1) per beat,
 *               and per sweep: the deadlines form a queue in expiry order), no raft entry for
 *               a steady-state heartbeat; only transitions are committed (ready -> offline
 *               after --agent-timeout-ms, and back) and replica states that changed, batched
 *               from every agent into one entry per loop iteration. A new leader starts every
 *               deadline at its election plus one full timeout, so agents that keep beating
 *               are never marked offline by a leader change, and one that died with the old
 *               leader is found within election + timeout. Time the leader itself lost (its
 *               loop or process stalled, requests still queued for it) does not count
 *               against agents.
 *   plan.c      the scheduler driver: workloads marked dirty by applies (and every second)
 *               are planned with scheduler/place.c against the mirror, and the placements
 *               proposed; the fsm re-checks each against the state it lands in and refuses the
 *               stale ones, which are simply planned again. Replicas of agents that went
 *               offline, were removed or are draining are placed elsewhere with new epochs
 *               (an exclusive workload's only once the offline agent's fence has stopped
 *               them: sched_replace_at);
 *               a drain completes only when nothing is assigned and the agent's heartbeats
 *               report none of the old processes.
 *   view.c      the JSON every node answers with (agents, workloads with status, replicas,
 *               heartbeat answers with each replica's spec).
 *   watch.c     blocking queries: suspended requests woken by the applies that change what
 *               they watch.
 * Everything runs on the loop thread. */
#ifndef CLOUDLESS_DOMAIN_DOMAIN_H
#define CLOUDLESS_DOMAIN_DOMAIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "domain/assign.h"
#include "fsm/domain.h"
#include "metrics/metrics.h"
#include "raft/node.h"
#include "util/buf.h"
#include "util/hmap.h"

struct domain_options {
	unsigned agent_timeout_ms; /* a silent agent goes offline after this */
	unsigned heartbeat_ms;     /* the interval agents are told to beat at */
	/* Exclusive workloads: how long past an agent's fence (and its kill timeout) its
	 * replicas wait before they are placed elsewhere (scheduler/place.h sched_replace_at). */
	unsigned fence_margin_ms;
	/* The idempotency limits every entry carries (--idempotency-ttl, --idempotency-max):
	 * the fsm prunes records by them on each apply, whatever proposed the entry. */
	uint32_t idem_ttl_s, idem_max;
	/* Optional: how long (ms) the oldest request not yet handed to a handler has waited in
	 * the HTTP server's queue (http_server_backlog_ms). An agent is not marked offline while
	 * its heartbeat may still be in that queue. */
	uint64_t (*backlog_ms)(void *arg);
	void *backlog_arg;
};

/* The domain's timer (leadership, liveness sweep, periodic planning) runs this often. */
#define DOMAIN_TICK_MS 50

/* Blocking queries (watch.c). */
struct dom_watch;
typedef void (*dom_watch_cb)(struct dom_watch *w, bool fired);
struct dom_watch {
	char topic[320];
	uint64_t index; /* answer once the topic's index is past this */
	dom_watch_cb cb;
	void *data;
	uv_timer_t timer;
	struct domain *d;
	struct dom_watch *prev, *next; /* in its topic's list */
	bool armed;
	bool fired; /* woken: answers on the timer pass after the apply that woke it */
};

struct dom_watches {
	struct hmap topics; /* topic -> first watcher */
	unsigned n;
};

/* Liveness of one agent, leader memory (liveness.c). */
struct dom_live {
	uint64_t deadline_ms; /* on the liveness clock (liveness.c) */
	uint64_t last_ms;     /* monotonic: its last heartbeat, or our election when none since */
	bool proposing;       /* a state transition is in flight */
	bool queued;          /* in the deadline queue */
	json_t *reported;     /* the replicas its last heartbeat listed */
	struct dom_live *prev, *next; /* the deadline queue, earliest first */
	char id[];
};

struct domain {
	uv_loop_t *loop;
	struct node *node;
	struct metrics *metrics;
	struct domain_options opts;
	bool leading; /* we are the ready leader and have set up the leader's state */

	/* liveness.c */
	struct hmap live;     /* agent id -> struct dom_live */
	json_t *reports;      /* replica reports waiting for the next entry */
	struct hmap reported; /* replica id -> the state last queued or sent for it */
	bool reports_inflight;
	uint64_t last_sweep_ms;
	/* Every deadline is now + timeout, so appending on each heartbeat keeps this queue in
	 * deadline order and a sweep looks only at the agents that expired. */
	struct dom_live *due_head, *due_tail;
	/* The liveness clock is the monotonic one minus held_ms: the time the leader lost (it
	 * only grows; /metrics reports it). */
	uint64_t held_ms;
	uint64_t last_tick_ms;      /* 0: no tick yet as leader */
	struct assign_cache assign; /* the text of heartbeat answers' assignments (assign.h) */

	/* plan.c */
	struct hmap dirty;    /* workload keys to plan */
	bool plan_all;        /* every workload (capacity changed, new leader, periodic) */
	struct hmap inflight; /* replica ids and agent ids with a proposal in flight */
	uint64_t last_full_plan_ms;
	struct plan_run *plan_cache; /* the agents of a plan stopped at its budget */

	struct dom_watches watches;
	uv_timer_t tick; /* leadership, liveness sweep, periodic planning */
	uv_timer_t kick; /* plan and flush reports soon after applies */
	bool kicked;

	/* counters for /metrics */
	uint64_t heartbeats;
	uint64_t live_spared; /* sweeps that stopped at an agent whose beat may be queued */
	uint64_t decisions_placed, decisions_pending, decisions_refused;
	uint64_t enroll_created, enroll_updated, enroll_unchanged, enroll_invalid;
	double last_plan_seconds;
	uint64_t plans;
	double plan_seconds_total;
};

void domain_init(struct domain *d, uv_loop_t *loop, struct node *node, struct metrics *metrics,
                 const struct domain_options *opts);
/* Stops timers, fails blocking queries (cb with fired=false). */
void domain_close(struct domain *d);

/* The idempotency key of a domain entry (fsm/command.h): a client's key, or a follower's
 * internal key for a forwarded write. */
struct domain_idem {
	const char *key;
	bool internal;
	bool resent;
};

/* Builds the entry for a domain op (JSON object, borrowed) with d's idempotency limits; idem
 * is NULL for the leader's own proposals (liveness and placement). */
void domain_encode(const struct domain *d, json_t *op, const struct domain_idem *idem,
                   uint64_t ts_ms, struct buf *out);

/* ---- liveness.c ---- */
/* A heartbeat on the leader: 0 and *answer, its compact JSON text (malloc'd, *len bytes,
 * NUL-terminated; the caller frees it), when the agent is known; 404 when it is not enrolled,
 * 500 when the answer cannot be encoded. reports is borrowed. known_index is the assignments
 * index the agent holds (0: none): when it is the current one, the answer leaves the
 * assignments out ("unchanged": true). */
int domain_heartbeat(struct domain *d, const char *agent_id, json_t *reports, uint64_t known_index,
                     char **answer, size_t *len);
void liveness_leader_start(struct domain *d);
void liveness_leader_stop(struct domain *d);
/* Every DOMAIN_TICK_MS on the leader: holds the liveness clock back by however late the tick
 * ran, and (every SWEEP_MS) marks the expired agents offline. */
void liveness_sweep(struct domain *d);
/* An agent was enrolled, changed or removed: it has a deadline from now if it had none. */
void liveness_track(struct domain *d, const char *agent_id);
void liveness_flush_reports(struct domain *d);
/* When the leader last heard from the agent (mono ms): its last heartbeat, or the leader's
 * election (or the agent's enrollment) when none arrived since. */
uint64_t liveness_last_contact(struct domain *d, const char *agent_id);
/* The replicas an agent last reported, NULL when unknown (leader memory). */
json_t *liveness_reported(struct domain *d, const char *agent_id);

/* ---- plan.c ---- */
void plan_mark(struct domain *d, const char *workload_key);
void plan_mark_all(struct domain *d);
/* true when the run stopped at its time budget with workloads left to plan. */
bool plan_run(struct domain *d);
void plan_leader_stop(struct domain *d);
/* An agent changed (enrolled, ready, offline, cordoned, draining, removed): a plan that goes
 * on rebuilds its view of the agents. */
void plan_forget_agents(struct domain *d);

/* ---- view.c ---- */
json_t *view_agent(struct domain *d, const struct dom_agent *a, bool with_replicas);
json_t *view_workload(struct domain *d, const struct dom_workload *w, bool with_replicas);
json_t *view_replica(struct domain *d, const struct dom_replica *r, bool with_spec);
/* The replicas assigned to an agent, in id order, with their specs. */
json_t *view_assignments(struct domain *d, const struct dom_agent *a);
/* The coordinators' HTTP addresses, for agents to keep their list fresh. */
json_t *view_coordinators(struct domain *d);

/* ---- watch.c ---- */
/* Topics: "agent:<id>" (its assignments), "workload:<ns>/<name>", "workloads:<ns>",
 * "workloads:*". The current index of a topic: */
uint64_t watch_topic_index(struct domain *d, const char *topic);
/* A watcher that calls cb once: fired=true when topic's index passes index (on the loop's
 * next timer pass, after the apply that passed it returned), false after wait_ms or on close. The
 * watcher is freed after cb (do not keep it); watch_cancel instead drops it without calling cb. */
struct dom_watch *watch_add(struct domain *d, const char *topic, uint64_t index, uint64_t wait_ms,
                            dom_watch_cb cb, void *data);
void watch_cancel(struct dom_watch *w);
void watch_fire(struct domain *d, const char *topic, uint64_t index);
void watch_close_all(struct domain *d);

/* Called by the fsm for everything an apply touched (all nodes). */
void domain_on_apply(void *arg, enum dom_event ev, const char *key, uint64_t index);

#endif
