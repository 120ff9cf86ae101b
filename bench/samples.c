/* samples: latency samples of the benchmark tools (see samples.h). */
#include "samples.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

uint64_t samples_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void samples_add(struct samples *s, uint64_t v)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 65536;
		s->v = realloc(s->v, s->cap * sizeof *s->v);
		if (s->v == NULL) {
			fprintf(stderr, "out of memory for latency samples\n");
			abort();
		}
	}
	s->v[s->n++] = v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

void samples_sort(struct samples *s)
{
	if (s->n > 0)
		qsort(s->v, s->n, sizeof *s->v, cmp_u64);
}

double samples_pct_ms(const struct samples *s, double p)
{
	if (s->n == 0)
		return 0;
	size_t rank = (size_t)ceil(p / 100.0 * (double)s->n);
	if (rank < 1)
		rank = 1;
	if (rank > s->n)
		rank = s->n;
	return (double)s->v[rank - 1] / 1e6;
}

double samples_max_ms(const struct samples *s)
{
	return s->n > 0 ? (double)s->v[s->n - 1] / 1e6 : 0;
}

void samples_close(struct samples *s)
{
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}
