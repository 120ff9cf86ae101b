/* test_agent_reconcile: the reconciler as a pure function, as a table.
 *
 * Each row gives what the coordinator assigns (wants) and what the agent holds (haves), and
 * the exact actions expected, in order. The rows that matter most: a replica held with the
 * epoch it is assigned with is never touched (zero restarts after failovers, outages and
 * agent restarts), anything else held is stopped, and a slot never gets a second process. */
#include "agent/reconcile.h"

#include <stdio.h>
#include <string.h>

#include "testlib.h"

#define R AGENT_PHASE_RUNNING
#define S AGENT_PHASE_STOPPING
#define P AGENT_PHASE_PENDING
#define B AGENT_PHASE_BACKOFF
#define X AGENT_PHASE_EXITED
#define F AGENT_PHASE_FAILED
#define T AGENT_PHASE_STOPPED

#define W(id, ep, run)      \
	{                   \
		id, ep, run \
	}
#define H(id, ep, ph, rep)      \
	{                       \
		id, ep, ph, rep \
	}
#define END                    \
	{                      \
		NULL, 0, false \
	}
#define HEND                      \
	{                         \
		NULL, 0, 0, false \
	}

struct row {
	const char *what;
	struct agent_want wants[6];
	struct agent_have haves[6];
	const char *want_plan; /* "kind:w:h ..." with - for none */
};

static const struct row rows[] = {
    {"nothing assigned, nothing held", {END}, {HEND}, ""},
    {"new assignments start",
     {W("a/w/0", 5, true), W("a/w/1", 6, true), END},
     {HEND},
     "start:0:- start:1:-"},
    {"held with its epoch: kept, whatever its phase",
     {W("a/w/0", 5, true), W("a/w/1", 6, true), W("a/w/2", 7, true), W("a/w/3", 8, true), END},
     {H("a/w/0", 5, R, true), H("a/w/1", 6, B, false), H("a/w/2", 7, F, true),
      H("a/w/3", 8, X, false), HEND},
     ""},
    {"the same answer twice changes nothing (zero restarts)",
     {W("a/w/0", 5, true), END},
     {H("a/w/0", 5, R, true), HEND},
     ""},
    {"not listed: stopped", {END}, {H("a/w/0", 5, R, true), HEND}, "stop:-:0"},
    {"desired stop: stopped",
     {W("a/w/0", 5, false), END},
     {H("a/w/0", 5, R, true), HEND},
     "stop:0:0"},
    {"stale epoch: old stopped, new waits for the slot",
     {W("a/w/0", 9, true), END},
     {H("a/w/0", 5, R, true), HEND},
     "stop:-:0 pend:0:-"},
    {"stale epoch being stopped: still waiting, recorded once",
     {W("a/w/0", 9, true), END},
     {H("a/w/0", 5, S, true), H("a/w/0", 9, P, false), HEND},
     ""},
    {"stale epoch gone: the pending one starts",
     {W("a/w/0", 9, true), END},
     {H("a/w/0", 5, T, false), H("a/w/0", 9, P, false), HEND},
     "start:0:1"},
    {"stale epoch that has no process does not block",
     {W("a/w/0", 9, true), END},
     {H("a/w/0", 5, B, true), HEND},
     "stop:-:0 start:0:-"},
    {"stopping and not listed: left to finish", {END}, {H("a/w/0", 5, S, true), HEND}, ""},
    {"pending or in backoff and not listed: cancelled",
     {END},
     {H("a/w/0", 5, P, false), H("a/w/1", 5, B, true), HEND},
     "stop:-:0 stop:-:1"},
    {"final and reported, not listed: forgotten",
     {END},
     {H("a/w/0", 5, T, true), H("a/w/1", 6, F, true), H("a/w/2", 7, X, true), HEND},
     "forget:-:0 forget:-:1 forget:-:2"},
    {"final but not reported yet: kept until reported", {END}, {H("a/w/0", 5, T, false), HEND}, ""},
    {"final and still listed as stop: kept",
     {W("a/w/0", 5, false), END},
     {H("a/w/0", 5, T, true), HEND},
     ""},
    {"stopped and wanted again with its epoch: started again",
     {W("a/w/0", 5, true), END},
     {H("a/w/0", 5, T, true), HEND},
     "start:0:0"},
    {"desired stop for something not held: nothing", {W("a/w/0", 5, false), END}, {HEND}, ""},
    {"unconfirmed pending after an agent restart, confirmed: started",
     {W("a/w/0", 5, true), END},
     {H("a/w/0", 5, P, false), HEND},
     "start:0:0"},
    {"mixed: stops first, then starts, in input order",
     {W("b/x/0", 3, true), W("a/w/1", 4, true), W("a/w/0", 2, false), END},
     {H("a/w/0", 2, R, true), H("z/z/0", 1, R, true), H("a/w/1", 4, R, true), HEND},
     "stop:2:0 stop:-:1 start:0:-"},
};

static void plan_text(const struct agent_action *a, size_t n, char *out, size_t outlen)
{
	size_t len = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char w[24] = "-", h[24] = "-";
		if (a[i].want != SIZE_MAX)
			snprintf(w, sizeof w, "%zu", a[i].want);
		if (a[i].have != SIZE_MAX)
			snprintf(h, sizeof h, "%zu", a[i].have);
		len += (size_t)snprintf(out + len, outlen - len, "%s%s:%s:%s", i ? " " : "",
		                        agent_action_name(a[i].kind), w, h);
	}
}

static void check_row(const struct row *r)
{
	size_t nw = 0, nh = 0;
	while (r->wants[nw].id != NULL)
		nw++;
	while (r->haves[nh].id != NULL)
		nh++;
	struct agent_action acts[12], again[12];
	size_t n = agent_reconcile(r->wants, nw, r->haves, nh, acts);
	char got[512];
	plan_text(acts, n, got, sizeof got);
	if (strcmp(got, r->want_plan) != 0)
		fprintf(stderr, "row \"%s\"\n", r->what);
	CHECK_EQ_STR(got, r->want_plan);
	CHECK(n <= nw + nh);
	/* Deterministic: the same input gives the same plan. */
	size_t n2 = agent_reconcile(r->wants, nw, r->haves, nh, again);
	char got2[512];
	plan_text(again, n2, got2, sizeof got2);
	CHECK_EQ_STR(got2, got);
}

/* Never two processes for one slot: over every phase of an old epoch, a new epoch is started
 * only when the old one has no process. */
static void test_one_process_per_slot(void)
{
	for (int ph = 0; ph < AGENT_PHASE_COUNT; ph++) {
		struct agent_want w[] = {{"a/w/0", 9, true}};
		struct agent_have h[] = {{"a/w/0", 5, (enum agent_phase)ph, true}};
		struct agent_action acts[4];
		size_t n = agent_reconcile(w, 1, h, 1, acts);
		bool started = false;
		for (size_t i = 0; i < n; i++)
			started |= acts[i].kind == AGENT_ACT_START;
		CHECK(started == !agent_phase_has_process((enum agent_phase)ph));
	}
}

int main(void)
{
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		check_row(&rows[i]);
	test_one_process_per_slot();
	TEST_DONE();
}
