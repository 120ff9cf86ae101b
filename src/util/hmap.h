/* hmap: a string-keyed hash map of pointers (open addressing, linear probing, FNV-1a).
 *
 * The fsm keeps an in-memory mirror of the domain records (agents, workloads, replicas) for
 * O(1) lookups on the hot paths (heartbeats, placement); this is its index. Keys are copied
 * and owned by the map; values are borrowed. Iteration order is the table's, which depends on
 * the history of inserts and deletes: nothing that must be deterministic across nodes (the
 * fsm's apply, the scheduler's plan) may depend on it; they sort or look up by key. */
#ifndef CLOUDLESS_UTIL_HMAP_H
#define CLOUDLESS_UTIL_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hmap_slot {
	char *key; /* NULL: empty; HMAP_TOMBSTONE: deleted */
	void *value;
	uint64_t hash; /* of key: probes compare it before the strings, growth reuses it */
};

struct hmap {
	struct hmap_slot *slots;
	size_t cap;  /* power of two, 0 before the first insert */
	size_t n;    /* live entries */
	size_t used; /* live + tombstones */
};

void hmap_init(struct hmap *m);
/* Frees the keys and the table, not the values. */
void hmap_close(struct hmap *m);
/* Empties the map (usable again, as after hmap_init), passing every value to free_value
 * first when it is not NULL: for maps that own their values. */
void hmap_clear(struct hmap *m, void (*free_value)(void *));
void *hmap_get(const struct hmap *m, const char *key);
/* Inserts or replaces; returns the previous value (NULL if none). Aborts on OOM. */
void *hmap_put(struct hmap *m, const char *key, void *value);
/* Removes; returns the value (NULL if absent). */
void *hmap_del(struct hmap *m, const char *key);
size_t hmap_size(const struct hmap *m);
/* Iteration: for (size_t i = 0; hmap_next(m, &i, &k, &v);) ... (no inserts meanwhile). */
bool hmap_next(const struct hmap *m, size_t *i, const char **key, void **value);

#endif
