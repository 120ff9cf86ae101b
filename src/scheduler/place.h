/* place: choosing an agent for one replica, as a pure function.
 *
 * Feasibility first, then ranking (as Nomad and the Kubernetes scheduler do). An agent is
 * feasible when it is ready, schedulable (not cordoned, not draining), in one of the
 * workload's zones (any zone when none are named), carries every label of the node selector,
 * and has the free CPU and memory the replica requests (capacity minus what is placed there).
 * Among the feasible ones:
 *   spread  (default) the zone with the fewest replicas of this workload, then the agent with
 *           the fewest of them, then the most free memory;
 *   binpack the fullest agent that fits (least free capacity left, as a fraction of its
 *           capacity, CPU and memory summed).
 * Remaining ties go to the smallest stable hash of (replica id, agent id), so the same state
 * always gives the same choice, on any node, in any input order, while different replicas do
 * not all pile onto the same first agent. Agents in `avoid` (those the replica failed on) are
 * chosen only when no other agent is feasible.
 *
 * When nothing fits, the result says why in the form users know from Kubernetes: how many
 * agents each filter rejected, e.g. "0/3 agents fit: 2 insufficient memory, 1 zone mismatch"
 * (each agent counted once, by the first filter it fails in the order of enum sched_filter). */
#ifndef CLOUDLESS_SCHEDULER_PLACE_H
#define CLOUDLESS_SCHEDULER_PLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sched_strategy { SCHED_SPREAD, SCHED_BINPACK };

enum sched_filter {
	SCHED_NOT_READY,
	SCHED_UNSCHEDULABLE,
	SCHED_ZONE,
	SCHED_SELECTOR,
	SCHED_CPU,
	SCHED_MEMORY,
	SCHED_N_FILTERS
};

struct sched_label {
	const char *key, *value;
};

struct sched_agent {
	const char *id;
	const char *zone;
	const struct sched_label *labels;
	size_t n_labels;
	uint64_t cpu, mem;           /* capacity */
	uint64_t used_cpu, used_mem; /* placed there already */
	bool ready, schedulable;
	unsigned same_workload; /* replicas of this workload placed on it */
};

struct sched_request {
	const char *replica_id;
	uint64_t cpu, mem;
	const struct sched_label *selector;
	size_t n_selector;
	const char *const *zones; /* NULL / 0: any */
	size_t n_zones;
	enum sched_strategy strategy;
	const char *const *avoid; /* agents it failed on */
	size_t n_avoid;
};

struct sched_result {
	int agent; /* index into the agents array, -1 when none fits */
	unsigned rejected[SCHED_N_FILTERS];
	char reason[160]; /* when agent < 0 */
};

/* Chooses among agents[0..n). Deterministic; never fails. */
void sched_place(const struct sched_agent *agents, size_t n, const struct sched_request *req,
                 struct sched_result *out);
/* Why an agent is infeasible for req, SCHED_N_FILTERS when it is feasible. */
enum sched_filter sched_check(const struct sched_agent *a, const struct sched_request *req);
/* Exclusive workloads (placement.exclusive). The copy on an agent that stopped reaching the
 * coordinators is stopped by that agent's fence (stop_after_disconnect_s) counted from the
 * last heartbeat it had answered, sent no later than last_contact_ms (when the leader last
 * heard from it); the process is gone at most kill_timeout_ms after the fence fires. The
 * earliest moment its replacement may start elsewhere is therefore
 *   last_contact_ms + fence_s * 1000 + kill_timeout_ms + margin_ms,
 * with the margin covering the fence's own tick, a deposed leader's last answers and timer
 * slack (domain_options.fence_margin_ms). */
uint64_t sched_replace_at(uint64_t last_contact_ms, uint64_t fence_s, uint64_t kill_timeout_ms,
                          uint64_t margin_ms);

/* The stable tie-breaking hash. */
uint64_t sched_tie_hash(const char *replica_id, const char *agent_id);

#endif
