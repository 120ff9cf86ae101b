/* assign: the documents an agent is given for the replicas assigned to it, and their text.
 *
 * A replica's document is its record's public fields plus, for the agent that runs it, the
 * workload's spec (what it runs: command, env, resources, restart policy, ...). The heartbeat
 * answer and the blocking assignments query list every replica of the agent; in a placement
 * burst every agent's list changes between two of its beats, so the list is rendered again
 * at nearly every beat, and building those objects and encoding them was most of a busy
 * leader's time (docs/benchmarks.md). The text of each document is therefore kept, per
 * replica, for as long as neither the replica's record nor its workload changed: every change
 * of either sets its version to the entry's index (fsm/domain.c), so (replica version,
 * workload version) names the text exactly, and a list is the cached texts joined.
 *
 * The cache is leader memory (followers answer no heartbeats) and bounded: it is emptied when
 * it holds many more texts than there are replicas (the texts of deleted replicas are not
 * looked for), and when leadership ends. Only depends on the fsm's records, so it can be
 * checked against fresh renders without a cluster (tests/unit/test_domain.c). */
#ifndef CLOUDLESS_DOMAIN_ASSIGN_H
#define CLOUDLESS_DOMAIN_ASSIGN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "fsm/domain.h"
#include "util/buf.h"
#include "util/hmap.h"

struct assign_cache {
	struct hmap texts;     /* replica id -> struct assign_text */
	uint64_t hits, misses; /* texts served from the cache, rendered (/metrics) */
};

void assign_cache_init(struct assign_cache *c);
void assign_cache_close(struct assign_cache *c);
/* Drops every text (leadership ended: nothing here will be asked for). */
void assign_cache_clear(struct assign_cache *c);

/* A replica's document (new reference): the record's public fields, and with_spec its
 * workload's spec under "spec" (none when the workload is gone). */
json_t *assign_replica_doc(struct fsm_domain *dom, const struct dom_replica *r, bool with_spec);
/* The replicas assigned to a, in id order (workload key, then slot): a malloc'd array of n
 * entries (free() it). */
const struct dom_replica **assign_sorted(const struct dom_agent *a, size_t *n);
/* Appends to out the JSON array of a's documents with their specs, in id order: the same
 * JSON as encoding the array of assign_replica_doc(.., true), from the cached texts. */
void assign_list_text(struct assign_cache *c, struct fsm_domain *dom, const struct dom_agent *a,
                      struct buf *out);
/* The compact JSON text of the object head (taken) with "assignments" added as a's list
 * (assign_list_text): a malloc'd, NUL-terminated string of *len bytes, or NULL when head
 * cannot be encoded. */
char *assign_answer_text(struct assign_cache *c, struct fsm_domain *dom, json_t *head,
                         const struct dom_agent *a, size_t *len);

#endif
