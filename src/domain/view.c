/* view: the JSON documents the API answers with (see domain.h): records as stored, plus what
 * is derived from the mirror (an agent's allocated resources, a workload's status, a
 * replica's spec for the agent that runs it: assign.c). Lists are in id order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"
#include "store/store.h"

json_t *view_replica(struct domain *d, const struct dom_replica *r, bool with_spec)
{
	return assign_replica_doc(&d->node->fsm.domain, r, with_spec);
}

json_t *view_agent(struct domain *d, const struct dom_agent *a, bool with_replicas)
{
	json_t *o = json_deep_copy(a->doc);
	/* The hash of the agent's secret stays in the replicated record; no view shows it. */
	json_object_del(o, "secret_hash");
	json_object_set_new(o, "schedulable", json_boolean(!a->cordoned && !a->draining));
	json_object_set_new(o, "allocated",
	                    json_pack("{s:I, s:I}", "cpu_millicores", (json_int_t)a->used_cpu,
	                              "memory_bytes", (json_int_t)a->used_mem));
	if (with_replicas) {
		json_t *arr = json_array();
		size_t n;
		const struct dom_replica **list = assign_sorted(a, &n);
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, view_replica(d, list[i], false));
		free(list);
		json_object_set_new(o, "replicas", arr);
	}
	return o;
}

json_t *view_assignments(struct domain *d, const struct dom_agent *a)
{
	json_t *arr = json_array();
	size_t n;
	const struct dom_replica **list = assign_sorted(a, &n);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, view_replica(d, list[i], true));
	free(list);
	return arr;
}

static json_t *status(struct domain *d, const struct dom_workload *w)
{
	unsigned scheduled = 0, running = 0, pending = 0, failed = 0;
	const char *reason = "";
	for (unsigned s = 0; s < w->replicas; s++) {
		struct dom_replica *r = dom_slot_get(&d->node->fsm.domain, w->key, s);
		bool placed = r != NULL && r->run && r->on != NULL;
		if (!placed) {
			pending++;
			const char *why =
			    r != NULL ? json_string_value(json_object_get(r->doc, "pending_reason"))
			              : NULL;
			if (reason[0] == '\0' && why != NULL)
				reason = why;
			continue;
		}
		scheduled++;
		/* Only the copy its current agent reports with the current epoch counts: a stale
		 * copy elsewhere never makes a slot "running" twice. */
		if (r->on->ready && r->state == DOM_R_RUNNING)
			running++;
		if (r->state == DOM_R_FAILED)
			failed++;
	}
	const char *phase;
	if (w->replicas == 0)
		phase = "stopped";
	else if (running == w->replicas)
		phase = "running";
	else if (scheduled == 0)
		phase = "pending";
	else if (failed > 0 || pending > 0)
		phase = "degraded";
	else
		phase = "progressing";
	if (reason[0] == '\0' && failed > 0)
		reason = "a replica failed after its restart attempts; it is being placed again";
	return json_pack("{s:i, s:i, s:i, s:i, s:s, s:s}", "desired", (int)w->replicas, "scheduled",
	                 (int)scheduled, "running", (int)running, "pending", (int)pending, "phase",
	                 phase, "reason", reason);
}

static json_t *replica_list(struct domain *d, const struct dom_workload *w)
{
	char prefix[320];
	json_t *arr = json_array();
	struct store_iter it;
	dom_replica_prefix(prefix, sizeof prefix, w->key);
	store_iter_init(&it, &d->node->fsm.store, NULL, prefix, strlen(prefix), NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl;
		const char *k = store_iter_key(&it, &kl);
		char id[320];
		snprintf(id, sizeof id, "%s/%lu", w->key, strtoul(k + strlen(prefix), NULL, 10));
		struct dom_replica *r = dom_replica_get(&d->node->fsm.domain, id);
		if (r != NULL)
			json_array_append_new(arr, view_replica(d, r, false));
	}
	store_iter_close(&it);
	return arr;
}

json_t *view_workload(struct domain *d, const struct dom_workload *w, bool with_replicas)
{
	json_t *o = json_deep_copy(w->doc);
	json_object_set_new(o, "status", status(d, w));
	if (with_replicas)
		json_object_set_new(o, "replica_list", replica_list(d, w));
	return o;
}

json_t *view_coordinators(struct domain *d)
{
	json_t *arr = json_array();
	node_refresh_members(d->node);
	for (unsigned i = 0; i < d->node->n_members; i++)
		if (d->node->members[i].http_addr[0] != '\0')
			json_array_append_new(arr, json_string(d->node->members[i].http_addr));
	return arr;
}
