/* test_hmap: unit tests for src/util/hmap, the index of the fsm's domain mirror and of the
 * leader's liveness and assignment caches.
 *
 * Lookups must survive growth and tombstones (a replica deleted and its slot reused is the
 * common case), iteration must visit every live entry exactly once, and hmap_clear must hand
 * every owned value back exactly once and leave a map that works again. */
#include "util/hmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define N 5000

static int value_of(const struct hmap *m, const char *key)
{
	int *v = hmap_get(m, key);
	return v != NULL ? *v : -1;
}

static void test_put_get_del_grow(void)
{
	static int vals[N];
	struct hmap m;
	char key[32];
	hmap_init(&m);
	CHECK(hmap_get(&m, "absent") == NULL);
	CHECK(hmap_del(&m, "absent") == NULL);
	for (int i = 0; i < N; i++) {
		vals[i] = i;
		snprintf(key, sizeof key, "w/%d", i);
		CHECK(hmap_put(&m, key, &vals[i]) == NULL);
	}
	CHECK_EQ_INT(hmap_size(&m), N);
	int wrong = 0;
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof key, "w/%d", i);
		wrong += value_of(&m, key) != i;
	}
	CHECK_EQ_INT(wrong, 0);
	/* Replacing returns the previous value and keeps the size. */
	CHECK(hmap_put(&m, "w/7", &vals[8]) == &vals[7]);
	CHECK_EQ_INT(hmap_size(&m), N);
	CHECK_EQ_INT(value_of(&m, "w/7"), 8);
	/* Delete every other key, then put them back: tombstones are reused or skipped. */
	for (int i = 0; i < N; i += 2) {
		snprintf(key, sizeof key, "w/%d", i);
		wrong += hmap_del(&m, key) == NULL;
	}
	CHECK_EQ_INT(wrong, 0);
	CHECK_EQ_INT(hmap_size(&m), N / 2);
	CHECK_EQ_INT(value_of(&m, "w/2"), -1);
	CHECK_EQ_INT(value_of(&m, "w/3"), 3);
	for (int i = 0; i < N; i += 2) {
		snprintf(key, sizeof key, "w/%d", i);
		hmap_put(&m, key, &vals[i]);
	}
	CHECK_EQ_INT(hmap_size(&m), N);
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof key, "w/%d", i);
		wrong += value_of(&m, key) != (i == 7 ? 8 : i);
	}
	CHECK_EQ_INT(wrong, 0);
	hmap_close(&m);
}

static void test_iteration_visits_each_once(void)
{
	static int vals[N];
	static int seen[N];
	struct hmap m;
	char key[32];
	hmap_init(&m);
	for (int i = 0; i < N; i++) {
		vals[i] = i;
		snprintf(key, sizeof key, "r%d", i);
		hmap_put(&m, key, &vals[i]);
	}
	for (int i = 0; i < N; i += 3) {
		snprintf(key, sizeof key, "r%d", i);
		hmap_del(&m, key);
	}
	const char *k;
	void *v;
	size_t visited = 0;
	int bad = 0;
	for (size_t i = 0; hmap_next(&m, &i, &k, &v);) {
		int x = *(int *)v;
		snprintf(key, sizeof key, "r%d", x);
		bad += strcmp(key, k) != 0 || x % 3 == 0;
		seen[x]++;
		visited++;
	}
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(visited, hmap_size(&m));
	int twice = 0;
	for (int i = 0; i < N; i++)
		twice += seen[i] > 1;
	CHECK_EQ_INT(twice, 0);
	hmap_close(&m);
}

static int freed;

static void count_free(void *v)
{
	freed++;
	free(v);
}

static void test_clear_frees_each_value_once(void)
{
	struct hmap m;
	char key[32];
	hmap_init(&m);
	hmap_clear(&m, count_free); /* an empty map, never grown */
	CHECK_EQ_INT(freed, 0);
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof key, "t%d", i);
		int *v = malloc(sizeof *v);
		CHECK(v != NULL);
		*v = i;
		hmap_put(&m, key, v);
	}
	for (int i = 0; i < 10; i++) { /* deleted values are the caller's again */
		snprintf(key, sizeof key, "t%d", i);
		free(hmap_del(&m, key));
	}
	hmap_clear(&m, count_free);
	CHECK_EQ_INT(freed, 90);
	CHECK_EQ_INT(hmap_size(&m), 0);
	CHECK(hmap_get(&m, "t50") == NULL);
	/* Usable again; a NULL free_value leaves the values alone. */
	int kept = 42;
	hmap_put(&m, "again", &kept);
	CHECK_EQ_INT(value_of(&m, "again"), 42);
	hmap_clear(&m, NULL);
	CHECK_EQ_INT(freed, 90);
	CHECK_EQ_INT(kept, 42);
	CHECK(hmap_get(&m, "again") == NULL);
	hmap_close(&m);
}

int main(void)
{
	test_put_get_del_grow();
	test_iteration_visits_each_once();
	test_clear_frees_each_value_once();
	TEST_DONE();
}
