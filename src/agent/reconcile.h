/* reconcile: what the agent must do to run exactly what the coordinator assigned it, as a
 * pure function of the assignments and of what it holds.
 *
 * The rules (the heartbeat answer's contract in openapi.yaml):
 *  - A replica held with the epoch it is assigned with is kept, whatever its phase: a healthy
 *    process is never restarted because an answer arrived (after a coordinator failover, after
 *    every coordinator was down, after the agent restarted and re-adopted it).
 *  - Anything held that is not assigned with its epoch (another epoch, `desired: stop`, not
 *    listed at all: scaled down, deleted, moved by a drain or while this agent was offline) is
 *    stopped; once stopped and reported, it is forgotten unless still listed.
 *  - An assignment to run that is not held is started, but never while a process of the same
 *    slot (an older epoch being stopped) still runs: it waits as `pending`, so one slot never
 *    has two processes here.
 * Actions come out stops first, in input order, so the same input gives the same plan. */
#ifndef CLOUDLESS_AGENT_RECONCILE_H
#define CLOUDLESS_AGENT_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/phase.h"

/* One entry of the coordinator's answer. */
struct agent_want {
	const char *id;
	uint64_t epoch;
	bool run; /* desired: run (else stop) */
};

/* One replica the agent holds. */
struct agent_have {
	const char *id;
	uint64_t epoch;
	enum agent_phase phase;
	bool reported; /* its current phase reached the coordinator in a heartbeat */
};

enum agent_action_kind {
	AGENT_ACT_KEEP,   /* have: leave it as it is */
	AGENT_ACT_START,  /* want (and have when a record exists): start its process now */
	AGENT_ACT_PEND,   /* want: record it pending; its slot is still busy */
	AGENT_ACT_STOP,   /* have: stop its process (or cancel its pending start or restart) */
	AGENT_ACT_FORGET, /* have: drop the record */
};

struct agent_action {
	enum agent_action_kind kind;
	size_t want; /* index into wants, or SIZE_MAX */
	size_t have; /* index into haves, or SIZE_MAX */
};

/* Writes at most n_wants + n_haves actions to out and returns how many. */
size_t agent_reconcile(const struct agent_want *wants, size_t n_wants,
                       const struct agent_have *haves, size_t n_haves, struct agent_action *out);

const char *agent_action_name(enum agent_action_kind k);

#endif
