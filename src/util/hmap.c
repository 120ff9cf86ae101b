/* hmap: string-keyed open-addressing hash map (see hmap.h). */
#include "util/hmap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tombstone_mark;
#define HMAP_TOMBSTONE (&tombstone_mark)

static uint64_t hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

void hmap_init(struct hmap *m)
{
	memset(m, 0, sizeof *m);
}

void hmap_close(struct hmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key != NULL && m->slots[i].key != HMAP_TOMBSTONE)
			free(m->slots[i].key);
	free(m->slots);
	memset(m, 0, sizeof *m);
}

void hmap_clear(struct hmap *m, void (*free_value)(void *))
{
	for (size_t i = 0; free_value != NULL && i < m->cap; i++)
		if (m->slots[i].key != NULL && m->slots[i].key != HMAP_TOMBSTONE)
			free_value(m->slots[i].value);
	hmap_close(m);
	hmap_init(m);
}

/* The slot holding key (of hash h), or (insert) the first free one on its probe path. The
 * strings are compared only when the hashes are equal: a probe path through thousands of
 * similar ids ("agent-00042") was mostly strcmp (docs/benchmarks.md). */
static struct hmap_slot *find(const struct hmap *m, const char *key, uint64_t h, bool insert)
{
	if (m->cap == 0)
		return NULL;
	size_t mask = m->cap - 1, i = (size_t)h & mask;
	struct hmap_slot *free_slot = NULL;
	for (;;) {
		struct hmap_slot *s = &m->slots[i];
		if (s->key == NULL)
			return insert ? (free_slot != NULL ? free_slot : s) : NULL;
		if (s->key == HMAP_TOMBSTONE) {
			if (free_slot == NULL)
				free_slot = s;
		} else if (s->hash == h && strcmp(s->key, key) == 0) {
			return s;
		}
		i = (i + 1) & mask;
	}
}

static void grow(struct hmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	/* Rehash in place of tombstones when they, not live entries, fill the table. */
	if (m->cap != 0 && m->n * 2 < m->cap)
		cap = m->cap;
	struct hmap_slot *old = m->slots;
	size_t old_cap = m->cap;
	m->slots = calloc(cap, sizeof *m->slots);
	if (m->slots == NULL) {
		fprintf(stderr, "hmap: out of memory\n");
		abort();
	}
	m->cap = cap;
	m->used = m->n;
	for (size_t i = 0; i < old_cap; i++) {
		if (old[i].key == NULL || old[i].key == HMAP_TOMBSTONE)
			continue;
		/* The new table has no tombstones and no equal keys: the first empty slot. */
		size_t j = (size_t)old[i].hash & (cap - 1);
		while (m->slots[j].key != NULL)
			j = (j + 1) & (cap - 1);
		m->slots[j] = old[i];
	}
	free(old);
}

void *hmap_get(const struct hmap *m, const char *key)
{
	struct hmap_slot *s = find(m, key, hash(key), false);
	return s != NULL ? s->value : NULL;
}

void *hmap_put(struct hmap *m, const char *key, void *value)
{
	if ((m->used + 1) * 4 >= m->cap * 3)
		grow(m);
	uint64_t h = hash(key);
	struct hmap_slot *s = find(m, key, h, true);
	if (s->key != NULL && s->key != HMAP_TOMBSTONE) {
		void *prev = s->value;
		s->value = value;
		return prev;
	}
	if (s->key == NULL)
		m->used++;
	s->key = strdup(key);
	if (s->key == NULL) {
		fprintf(stderr, "hmap: out of memory\n");
		abort();
	}
	s->value = value;
	s->hash = h;
	m->n++;
	return NULL;
}

void *hmap_del(struct hmap *m, const char *key)
{
	struct hmap_slot *s = find(m, key, hash(key), false);
	if (s == NULL)
		return NULL;
	void *v = s->value;
	free(s->key);
	s->key = HMAP_TOMBSTONE;
	s->value = NULL;
	m->n--;
	return v;
}

size_t hmap_size(const struct hmap *m)
{
	return m->n;
}

bool hmap_next(const struct hmap *m, size_t *i, const char **key, void **value)
{
	for (; *i < m->cap; (*i)++) {
		struct hmap_slot *s = &m->slots[*i];
		if (s->key != NULL && s->key != HMAP_TOMBSTONE) {
			if (key != NULL)
				*key = s->key;
			if (value != NULL)
				*value = s->value;
			(*i)++;
			return true;
		}
	}
	return false;
}
