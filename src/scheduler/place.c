/* place: the placement function (see place.h). Pure: no I/O, no clock, no global state. */
#include "scheduler/place.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const FILTER_NAMES[SCHED_N_FILTERS] = {
    "not ready",        "cordoned or draining", "zone mismatch", "node selector mismatch",
    "insufficient cpu", "insufficient memory",
};

uint64_t sched_replace_at(uint64_t last_contact_ms, uint64_t fence_s, uint64_t kill_timeout_ms,
                          uint64_t margin_ms)
{
	return last_contact_ms + fence_s * 1000 + kill_timeout_ms + margin_ms;
}

uint64_t sched_tie_hash(const char *replica_id, const char *agent_id)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const char *p = replica_id; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	h = (h ^ 0xff) * 0x100000001b3ULL; /* separator: ("a","bc") differs from ("ab","c") */
	for (const char *p = agent_id; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	/* FNV's low bits mix poorly over short inputs; finish with a multiply-xorshift. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static bool has_label(const struct sched_agent *a, const struct sched_label *want)
{
	for (size_t i = 0; i < a->n_labels; i++)
		if (strcmp(a->labels[i].key, want->key) == 0)
			return strcmp(a->labels[i].value, want->value) == 0;
	return false;
}

static bool in_zones(const struct sched_request *req, const char *zone)
{
	if (req->n_zones == 0)
		return true;
	for (size_t i = 0; i < req->n_zones; i++)
		if (strcmp(req->zones[i], zone) == 0)
			return true;
	return false;
}

enum sched_filter sched_check(const struct sched_agent *a, const struct sched_request *req)
{
	if (!a->ready)
		return SCHED_NOT_READY;
	if (!a->schedulable)
		return SCHED_UNSCHEDULABLE;
	if (!in_zones(req, a->zone))
		return SCHED_ZONE;
	for (size_t i = 0; i < req->n_selector; i++)
		if (!has_label(a, &req->selector[i]))
			return SCHED_SELECTOR;
	if (a->used_cpu > a->cpu || req->cpu > a->cpu - a->used_cpu)
		return SCHED_CPU;
	if (a->used_mem > a->mem || req->mem > a->mem - a->used_mem)
		return SCHED_MEMORY;
	return SCHED_N_FILTERS;
}

static bool avoided(const struct sched_request *req, const char *id)
{
	for (size_t i = 0; i < req->n_avoid; i++)
		if (strcmp(req->avoid[i], id) == 0)
			return true;
	return false;
}

/* This workload's replicas per zone (over every agent, feasible or not), computed once per
 * placement: zones are few, agents many. zone[i] is agent i's zone as an index into name[]
 * and load[], so ranking compares integers and never a zone name again (with thousands of
 * agents, strcmp of zone names was the largest cost of a placement). */
#define MAX_ZONES 64
struct zones {
	const char *name[MAX_ZONES];
	unsigned load[MAX_ZONES + 1]; /* load[MAX_ZONES]: agents of zones past the table (0) */
	size_t n;
	unsigned *zone; /* per agent */
};

static void zones_build(struct zones *z, const struct sched_agent *agents, size_t n)
{
	z->n = 0;
	z->load[MAX_ZONES] = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		/* By pointer first: the plan gives agents of one zone the same pointer, so the
		 * names are compared only when the caller did not. */
		while (k < z->n && z->name[k] != agents[i].zone)
			k++;
		if (k == z->n)
			for (k = 0; k < z->n && strcmp(z->name[k], agents[i].zone) != 0;)
				k++;
		if (k == z->n) {
			if (z->n == MAX_ZONES) {
				z->zone[i] = MAX_ZONES; /* more zones than anyone runs: empty */
				continue;
			}
			z->name[z->n] = agents[i].zone;
			z->load[z->n++] = 0;
		}
		z->zone[i] = (unsigned)k;
		z->load[k] += agents[i].same_workload;
	}
}

/* Free capacity left after placing req, as a fraction of capacity (cpu + memory), scaled
 * to an integer so comparisons are exact. */
static uint64_t left_after(const struct sched_agent *a, const struct sched_request *req)
{
	uint64_t f = 0;
	if (a->cpu > 0)
		f += (a->cpu - a->used_cpu - req->cpu) * 1000000 / a->cpu;
	if (a->mem > 0)
		f += (uint64_t)((double)(a->mem - a->used_mem - req->mem) * 1e6 / (double)a->mem);
	return f;
}

/* An agent's rank for req, smallest first: the strategy's keys, then the tie hash (computed
 * only when the keys tie: with a uniform fleet they always do, and it is then computed once
 * per agent), then the id. */
struct rank {
	size_t i;
	uint64_t k1, k2, k3;
	bool hashed;
	uint64_t hash;
};

static void rank_of(const struct sched_agent *agents, const struct zones *z,
                    const struct sched_request *req, size_t i, struct rank *r)
{
	const struct sched_agent *a = &agents[i];
	r->i = i;
	r->hashed = false;
	if (req->strategy == SCHED_SPREAD) {
		r->k1 = z->load[z->zone[i]];
		r->k2 = a->same_workload;
		r->k3 = UINT64_MAX - (a->mem - a->used_mem); /* most free memory first */
	} else {
		r->k1 = left_after(a, req);
		r->k2 = r->k3 = 0;
	}
}

static uint64_t rank_hash(const struct sched_agent *agents, const struct sched_request *req,
                          struct rank *r)
{
	if (!r->hashed) {
		r->hash = sched_tie_hash(req->replica_id, agents[r->i].id);
		r->hashed = true;
	}
	return r->hash;
}

/* Negative when x ranks before y. */
static int compare(const struct sched_agent *agents, const struct sched_request *req,
                   struct rank *x, struct rank *y)
{
	if (x->k1 != y->k1)
		return x->k1 < y->k1 ? -1 : 1;
	if (x->k2 != y->k2)
		return x->k2 < y->k2 ? -1 : 1;
	if (x->k3 != y->k3)
		return x->k3 < y->k3 ? -1 : 1;
	uint64_t hx = rank_hash(agents, req, x), hy = rank_hash(agents, req, y);
	if (hx != hy)
		return hx < hy ? -1 : 1;
	return strcmp(agents[x->i].id, agents[y->i].id); /* a hash collision: ids differ */
}

static void explain(const struct sched_result *out, size_t n, char *reason, size_t size)
{
	size_t len = (size_t)snprintf(reason, size, "0/%zu agents fit", n);
	const char *sep = ": ";
	for (int f = 0; f < SCHED_N_FILTERS && len < size; f++) {
		if (out->rejected[f] == 0)
			continue;
		len += (size_t)snprintf(reason + len, size - len, "%s%u %s", sep, out->rejected[f],
		                        FILTER_NAMES[f]);
		sep = ", ";
	}
}

void sched_place(const struct sched_agent *agents, size_t n, const struct sched_request *req,
                 struct sched_result *out)
{
	struct zones z;
	memset(out, 0, sizeof *out);
	out->agent = -1;
	z.zone = malloc((n ? n : 1) * sizeof *z.zone);
	if (z.zone == NULL)
		abort();
	zones_build(&z, agents, n);
	struct rank best = {0}, best_avoided = {0}, cand;
	bool have = false, have_avoided = false;
	for (size_t i = 0; i < n; i++) {
		enum sched_filter f = sched_check(&agents[i], req);
		if (f != SCHED_N_FILTERS) {
			out->rejected[f]++;
			continue;
		}
		bool av = avoided(req, agents[i].id);
		struct rank *slot = av ? &best_avoided : &best;
		bool *filled = av ? &have_avoided : &have;
		rank_of(agents, &z, req, i, &cand);
		if (!*filled || compare(agents, req, &cand, slot) < 0) {
			*slot = cand;
			*filled = true;
		}
	}
	free(z.zone);
	out->agent = have ? (int)best.i : have_avoided ? (int)best_avoided.i : -1;
	if (out->agent < 0)
		explain(out, n, out->reason, sizeof out->reason);
}
