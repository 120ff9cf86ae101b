/* The placement function as a pure function: a table of agents x requests -> the chosen agent
 * or the pending reason; spread over zones then agents, binpack, node selectors, zones,
 * capacity, failed-on avoidance; determinism (the same input twice, or shuffled, gives the
 * same plan); a whole workload placed slot by slot as the driver does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/place.h"
#include "testlib.h"

#define GB (1000ULL * 1000 * 1000)

static const struct sched_label SSD[] = {{"disk", "ssd"}};
static const struct sched_label HDD[] = {{"disk", "hdd"}};
static const struct sched_label SSD_GPU[] = {{"disk", "ssd"}, {"gpu", "yes"}};

static struct sched_agent agent(const char *id, const char *zone, uint64_t cpu, uint64_t mem)
{
	return (struct sched_agent){
	    .id = id, .zone = zone, .cpu = cpu, .mem = mem, .ready = true, .schedulable = true};
}

static const char *place_id(const struct sched_agent *a, size_t n, const struct sched_request *q,
                            struct sched_result *res)
{
	sched_place(a, n, q, res);
	return res->agent >= 0 ? a[res->agent].id : NULL;
}

static void test_filters_and_reasons(void)
{
	struct sched_agent a[6] = {
	    agent("a-offline", "z1", 4000, 8 * GB), agent("a-cordoned", "z1", 4000, 8 * GB),
	    agent("a-zone", "z9", 4000, 8 * GB),    agent("a-hdd", "z1", 4000, 8 * GB),
	    agent("a-cpu", "z1", 100, 8 * GB),      agent("a-mem", "z1", 4000, 1 * GB)};
	a[0].ready = false;
	a[1].schedulable = false;
	for (int i = 2; i < 6; i++) {
		a[i].labels = SSD;
		a[i].n_labels = 1;
	}
	a[3].labels = HDD;
	const char *zones[] = {"z1", "z2"};
	struct sched_request q = {.replica_id = "default/web/0",
	                          .cpu = 500,
	                          .mem = 2 * GB,
	                          .selector = SSD,
	                          .n_selector = 1,
	                          .zones = zones,
	                          .n_zones = 2};
	struct sched_result res;
	CHECK(place_id(a, 6, &q, &res) == NULL);
	CHECK_EQ_STR(res.reason, "0/6 agents fit: 1 not ready, 1 cordoned or draining, 1 zone "
	                         "mismatch, 1 node selector mismatch, 1 insufficient cpu, 1 "
	                         "insufficient memory");
	for (int f = 0; f < SCHED_N_FILTERS; f++)
		CHECK_EQ_INT(res.rejected[f], 1);
	/* Each agent is counted once, by its first failing filter. */
	a[5].ready = false;
	CHECK(place_id(a, 6, &q, &res) == NULL);
	CHECK_EQ_INT(res.rejected[SCHED_NOT_READY], 2);
	CHECK_EQ_INT(res.rejected[SCHED_MEMORY], 0);
	/* Resources larger than any agent: pending with the reason, never an error. */
	struct sched_agent b[3] = {agent("b1", "z1", 4000, 8 * GB), agent("b2", "z1", 4000, 8 * GB),
	                           agent("b3", "z2", 4000, 2 * GB)};
	struct sched_request huge = {.replica_id = "default/huge/0", .cpu = 1, .mem = 64 * GB};
	CHECK(place_id(b, 3, &huge, &res) == NULL);
	CHECK_EQ_STR(res.reason, "0/3 agents fit: 3 insufficient memory");
	/* No agents at all. */
	CHECK(place_id(b, 0, &huge, &res) == NULL);
	CHECK_EQ_STR(res.reason, "0/0 agents fit");
}

static void test_capacity_accounts_for_used(void)
{
	struct sched_agent a[2] = {agent("full", "z1", 1000, 4 * GB),
	                           agent("free", "z1", 1000, 4 * GB)};
	a[0].used_cpu = 900;
	struct sched_request q = {.replica_id = "ns/w/0", .cpu = 200, .mem = GB};
	struct sched_result res;
	CHECK_EQ_STR(place_id(a, 2, &q, &res), "free");
	a[1].used_mem = 3500000000ULL;
	CHECK(place_id(a, 2, &q, &res) == NULL);
	CHECK_EQ_STR(res.reason, "0/2 agents fit: 1 insufficient cpu, 1 insufficient memory");
	/* Exactly full fits. */
	a[0].used_cpu = 800;
	CHECK_EQ_STR(place_id(a, 2, &q, &res), "full");
	/* Over-committed (used > capacity) never underflows into "room". */
	a[0].used_cpu = 5000;
	CHECK(place_id(a, 1, &q, &res) == NULL);
}

/* Places n replicas of one workload as the driver does: after each, the chosen agent counts
 * it (same_workload, used). Returns the per-agent counts in counts[]. */
static void place_all(struct sched_agent *a, size_t na, struct sched_request *q, const char *wl,
                      unsigned n, unsigned *counts, const char **chosen)
{
	char ids[64][64];
	memset(counts, 0, na * sizeof *counts);
	for (unsigned s = 0; s < n; s++) {
		struct sched_result res;
		snprintf(ids[s], sizeof ids[s], "%s/%u", wl, s);
		q->replica_id = ids[s];
		sched_place(a, na, q, &res);
		chosen[s] = res.agent >= 0 ? a[res.agent].id : NULL;
		if (res.agent < 0)
			continue;
		a[res.agent].same_workload++;
		a[res.agent].used_cpu += q->cpu;
		a[res.agent].used_mem += q->mem;
		counts[res.agent]++;
	}
}

static void test_spread_over_zones_then_agents(void)
{
	/* Two zones, two agents in z1 and one in z2: three replicas go one per agent; six go two
	 * per agent; zone z2 gets as many as possible. */
	struct sched_agent a[3] = {agent("a1", "z1", 8000, 8 * GB), agent("a2", "z1", 8000, 8 * GB),
	                           agent("a3", "z2", 8000, 8 * GB)};
	struct sched_request q = {.cpu = 100, .mem = 100};
	unsigned counts[3];
	const char *chosen[64];
	place_all(a, 3, &q, "default/web", 3, counts, chosen);
	CHECK_EQ_INT(counts[0], 1);
	CHECK_EQ_INT(counts[1], 1);
	CHECK_EQ_INT(counts[2], 1);
	/* The first replica goes to the zone that is emptiest by agents too: spread balances
	 * zones first, so z2 (one agent) gets the second of three at the latest. */
	CHECK(strcmp(chosen[0], "a3") == 0 || strcmp(chosen[1], "a3") == 0);

	struct sched_agent b[4] = {agent("b1", "z1", 8000, 8 * GB), agent("b2", "z1", 8000, 8 * GB),
	                           agent("b3", "z1", 8000, 8 * GB),
	                           agent("b4", "z2", 8000, 8 * GB)};
	unsigned c4[4];
	place_all(b, 4, &q, "default/api", 4, c4, chosen);
	/* Zones first: z2's single agent takes 2 of 4 (zone loads 2 and 2). */
	CHECK_EQ_INT(c4[3], 2);
	CHECK_EQ_INT(c4[0] + c4[1] + c4[2], 2);
	CHECK(c4[0] <= 1 && c4[1] <= 1 && c4[2] <= 1);

	/* The same with every zone name in a buffer of its own: the zone table matches agents
	 * by pointer first (the plan interns zones) and must fall back to the names. */
	char zb[4][3] = {"z1", "z1", "z1", "z2"};
	for (int i = 0; i < 4; i++) {
		b[i].zone = zb[i];
		b[i].same_workload = 0;
		b[i].used_cpu = b[i].used_mem = 0;
	}
	place_all(b, 4, &q, "default/api", 4, c4, chosen);
	CHECK_EQ_INT(c4[3], 2);
	CHECK_EQ_INT(c4[0] + c4[1] + c4[2], 2);
}

static void test_binpack_fills_the_fullest(void)
{
	struct sched_agent a[3] = {agent("big", "z1", 8000, 8 * GB),
	                           agent("half", "z1", 8000, 8 * GB),
	                           agent("small", "z1", 2000, 2 * GB)};
	a[1].used_cpu = 4000;
	a[1].used_mem = 4 * GB;
	struct sched_request q = {
	    .replica_id = "ns/db/0", .cpu = 1000, .mem = GB, .strategy = SCHED_BINPACK};
	struct sched_result res;
	/* "small" after placing: 1/2 + 1/2 left = 1.0; "half": 3/8 + 3/8 = 0.75: fullest. */
	CHECK_EQ_STR(place_id(a, 3, &q, &res), "half");
	unsigned counts[3];
	const char *chosen[64];
	place_all(a, 3, &q, "ns/db", 6, counts, chosen);
	/* Binpack piles onto the fullest until it is full (half has room for 4 more). */
	CHECK_EQ_INT(counts[1], 4);
	CHECK_EQ_INT(counts[0] + counts[2], 2);
}

static void test_selector_and_zones(void)
{
	struct sched_agent a[3] = {agent("ssd", "z1", 4000, 4 * GB),
	                           agent("gpu", "z2", 4000, 4 * GB),
	                           agent("hdd", "z1", 4000, 4 * GB)};
	a[0].labels = SSD;
	a[0].n_labels = 1;
	a[1].labels = SSD_GPU;
	a[1].n_labels = 2;
	a[2].labels = HDD;
	a[2].n_labels = 1;
	struct sched_request q = {
	    .replica_id = "ns/w/0", .cpu = 1, .mem = 1, .selector = &SSD_GPU[1], .n_selector = 1};
	struct sched_result res;
	CHECK_EQ_STR(place_id(a, 3, &q, &res), "gpu");
	q.selector = SSD_GPU; /* both labels */
	q.n_selector = 2;
	CHECK_EQ_STR(place_id(a, 3, &q, &res), "gpu");
	const char *z1[] = {"z1"};
	q.zones = z1;
	q.n_zones = 1;
	CHECK(place_id(a, 3, &q, &res) == NULL);
	CHECK_EQ_STR(res.reason, "0/3 agents fit: 1 zone mismatch, 2 node selector mismatch");
	q.selector = SSD;
	q.n_selector = 1;
	CHECK_EQ_STR(place_id(a, 3, &q, &res), "ssd");
}

static void test_avoid_agents_it_failed_on(void)
{
	struct sched_agent a[2] = {agent("bad", "z1", 4000, 4 * GB),
	                           agent("good", "z1", 4000, 4 * GB)};
	a[1].used_cpu = 3000; /* "bad" would rank first for spread (more free memory: equal); */
	a[1].used_mem = 3 * GB;
	const char *avoid[] = {"bad"};
	struct sched_request q = {
	    .replica_id = "ns/crash/0", .cpu = 100, .mem = 100, .avoid = avoid, .n_avoid = 1};
	struct sched_result res;
	CHECK_EQ_STR(place_id(a, 2, &q, &res), "good");
	/* Only the avoided one fits: it is still better than nothing. */
	a[1].ready = false;
	CHECK_EQ_STR(place_id(a, 2, &q, &res), "bad");
}

static void test_deterministic(void)
{
	/* Many equal agents: the tie-break hash decides; the same input twice and the input
	 * shuffled give the same choices, and different replicas do not all pick one agent. */
	enum { N = 12 };
	struct sched_agent a[N], b[N];
	char ids[N][16];
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof ids[i], "agent-%02d", i);
		a[i] = agent(ids[i], i % 3 == 0 ? "z1" : i % 3 == 1 ? "z2" : "z3", 1000, GB);
	}
	for (int i = 0; i < N; i++)
		b[i] = a[(i * 7) % N]; /* a permutation */
	unsigned seen[N] = {0};
	for (int r = 0; r < 40; r++) {
		char rid[32];
		snprintf(rid, sizeof rid, "ns/w/%d", r);
		struct sched_request q = {.replica_id = rid, .cpu = 1, .mem = 1};
		struct sched_result r1, r2, r3;
		sched_place(a, N, &q, &r1);
		sched_place(a, N, &q, &r2);
		sched_place(b, N, &q, &r3);
		CHECK(r1.agent >= 0 && r1.agent == r2.agent);
		CHECK(r3.agent >= 0 && strcmp(a[r1.agent].id, b[r3.agent].id) == 0);
		seen[r1.agent]++;
	}
	unsigned distinct = 0;
	for (int i = 0; i < N; i++)
		distinct += seen[i] > 0;
	CHECK(distinct >= N / 2);
	CHECK(sched_tie_hash("a", "bc") != sched_tie_hash("ab", "c"));
}

/* The earliest replacement of an exclusive workload's replica: after the agent's fence (from
 * its last contact), its kill timeout and the margin; never before. */
static void test_replace_at(void)
{
	CHECK_EQ_INT(sched_replace_at(10000, 30, 5000, 1600), 10000 + 30000 + 5000 + 1600);
	CHECK_EQ_INT(sched_replace_at(0, 0, 0, 0), 0);
	/* Each term only moves it later. */
	uint64_t base = sched_replace_at(1000, 1, 100, 10);
	CHECK(sched_replace_at(1001, 1, 100, 10) > base);
	CHECK(sched_replace_at(1000, 2, 100, 10) > base);
	CHECK(sched_replace_at(1000, 1, 101, 10) > base);
	CHECK(sched_replace_at(1000, 1, 100, 11) > base);
}

int main(void)
{
	test_replace_at();
	test_filters_and_reasons();
	test_capacity_accounts_for_used();
	test_spread_over_zones_then_agents();
	test_binpack_fills_the_fullest();
	test_selector_and_zones();
	test_avoid_agents_it_failed_on();
	test_deterministic();
	TEST_DONE();
}
