/* reconcile: assignments + held replicas -> actions (see reconcile.h). Pure: no I/O, no
 * clock, no allocation. Quadratic in the number of replicas of one agent, which is small
 * (hundreds at most) next to a heartbeat's round trip. */
#include "agent/reconcile.h"

#include <string.h>

static size_t find_want(const struct agent_want *w, size_t n, const char *id, uint64_t epoch)
{
	for (size_t i = 0; i < n; i++)
		if (w[i].epoch == epoch && strcmp(w[i].id, id) == 0)
			return i;
	return SIZE_MAX;
}

static size_t find_have(const struct agent_have *h, size_t n, const char *id, uint64_t epoch)
{
	for (size_t i = 0; i < n; i++)
		if (h[i].epoch == epoch && strcmp(h[i].id, id) == 0)
			return i;
	return SIZE_MAX;
}

/* True when another epoch of the slot still has (or may still have) a process here after
 * this round: stops take time, so a slot being stopped stays busy. */
static bool slot_busy(const struct agent_have *h, size_t n, const char *id, uint64_t epoch)
{
	for (size_t i = 0; i < n; i++)
		if (h[i].epoch != epoch && agent_phase_has_process(h[i].phase) &&
		    strcmp(h[i].id, id) == 0)
			return true;
	return false;
}

/* What to do with a replica held: nothing, stop it, or forget it. */
static enum agent_action_kind judge_have(const struct agent_have *h, const struct agent_want *w)
{
	if (w != NULL && w->run)
		return AGENT_ACT_KEEP; /* assigned with this epoch: START below if it waits */
	switch (h->phase) {
	case AGENT_PHASE_RUNNING:
	case AGENT_PHASE_PENDING:
	case AGENT_PHASE_BACKOFF:
		return AGENT_ACT_STOP;
	case AGENT_PHASE_STOPPING:
		return AGENT_ACT_KEEP; /* already on its way out */
	case AGENT_PHASE_EXITED:
	case AGENT_PHASE_FAILED:
	case AGENT_PHASE_STOPPED:
		/* Listed (desired stop): keep reporting it. Not listed: forget it once the
		 * coordinator has heard how it ended. */
		return w == NULL && h->reported ? AGENT_ACT_FORGET : AGENT_ACT_KEEP;
	}
	return AGENT_ACT_KEEP;
}

size_t agent_reconcile(const struct agent_want *wants, size_t n_wants,
                       const struct agent_have *haves, size_t n_haves, struct agent_action *out)
{
	size_t n = 0;
	/* Pass 1: stops and forgets. */
	for (size_t i = 0; i < n_haves; i++) {
		size_t wi = find_want(wants, n_wants, haves[i].id, haves[i].epoch);
		enum agent_action_kind k =
		    judge_have(&haves[i], wi != SIZE_MAX ? &wants[wi] : NULL);
		if (k != AGENT_ACT_KEEP)
			out[n++] = (struct agent_action){k, wi, i};
	}
	/* Pass 2: what to run. A held replica of the same epoch is left alone unless it only
	 * waits for its slot (pending, or stopped and wanted again). */
	for (size_t i = 0; i < n_wants; i++) {
		if (!wants[i].run)
			continue;
		size_t hi = find_have(haves, n_haves, wants[i].id, wants[i].epoch);
		if (hi != SIZE_MAX && haves[hi].phase != AGENT_PHASE_PENDING &&
		    haves[hi].phase != AGENT_PHASE_STOPPED)
			continue;
		bool busy = slot_busy(haves, n_haves, wants[i].id, wants[i].epoch);
		if (busy && hi != SIZE_MAX && haves[hi].phase == AGENT_PHASE_PENDING)
			continue; /* still waiting, already recorded */
		out[n++] = (struct agent_action){busy ? AGENT_ACT_PEND : AGENT_ACT_START, i, hi};
	}
	return n;
}

const char *agent_action_name(enum agent_action_kind k)
{
	switch (k) {
	case AGENT_ACT_KEEP:
		return "keep";
	case AGENT_ACT_START:
		return "start";
	case AGENT_ACT_PEND:
		return "pend";
	case AGENT_ACT_STOP:
		return "stop";
	case AGENT_ACT_FORGET:
		return "forget";
	}
	return "?";
}
