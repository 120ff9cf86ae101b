/* place: the placement function (see place.h). Pure: no I/O, no clock, no global state. */
#include "scheduler/place.h"

#include <stdio.h>
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
 * placement: zones are few, agents many. */
#define MAX_ZONES 64
struct zones {
	const char *name[MAX_ZONES];
	unsigned load[MAX_ZONES];
	size_t n;
};

static void zones_build(struct zones *z, const struct sched_agent *agents, size_t n)
{
	z->n = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (k < z->n && strcmp(z->name[k], agents[i].zone) != 0)
			k++;
		if (k == z->n) {
			if (z->n == MAX_ZONES)
				continue; /* more zones than anyone runs: they count as empty */
			z->name[z->n] = agents[i].zone;
			z->load[z->n++] = 0;
		}
		z->load[k] += agents[i].same_workload;
	}
}

static unsigned zone_load(const struct zones *z, const char *zone)
{
	for (size_t k = 0; k < z->n; k++)
		if (strcmp(z->name[k], zone) == 0)
			return z->load[k];
	return 0;
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

/* Negative when a ranks before b. */
static int compare(const struct sched_agent *agents, const struct zones *z,
                   const struct sched_request *req, size_t a, size_t b)
{
	const struct sched_agent *x = &agents[a], *y = &agents[b];
	if (req->strategy == SCHED_SPREAD) {
		unsigned zx = zone_load(z, x->zone), zy = zone_load(z, y->zone);
		if (zx != zy)
			return zx < zy ? -1 : 1;
		if (x->same_workload != y->same_workload)
			return x->same_workload < y->same_workload ? -1 : 1;
		uint64_t fx = x->mem - x->used_mem, fy = y->mem - y->used_mem;
		if (fx != fy)
			return fx > fy ? -1 : 1;
	} else {
		uint64_t lx = left_after(x, req), ly = left_after(y, req);
		if (lx != ly)
			return lx < ly ? -1 : 1;
	}
	uint64_t hx = sched_tie_hash(req->replica_id, x->id);
	uint64_t hy = sched_tie_hash(req->replica_id, y->id);
	if (hx != hy)
		return hx < hy ? -1 : 1;
	return strcmp(x->id, y->id); /* a hash collision: the ids still differ */
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
	zones_build(&z, agents, n);
	int best = -1, best_avoided = -1;
	for (size_t i = 0; i < n; i++) {
		enum sched_filter f = sched_check(&agents[i], req);
		if (f != SCHED_N_FILTERS) {
			out->rejected[f]++;
			continue;
		}
		int *slot = avoided(req, agents[i].id) ? &best_avoided : &best;
		if (*slot < 0 || compare(agents, &z, req, i, (size_t)*slot) < 0)
			*slot = (int)i;
	}
	out->agent = best >= 0 ? best : best_avoided;
	if (out->agent < 0)
		explain(out, n, out->reason, sizeof out->reason);
}
