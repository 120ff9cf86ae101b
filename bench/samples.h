/* samples: latency samples of the benchmark tools (cloudless-loadgen, cloudless-fleet): a
 * growable array of nanosecond values, sorted once at the end and read as nearest-rank
 * percentiles. A leaf of bench/, linked by both tools. */
#ifndef CLOUDLESS_BENCH_SAMPLES_H
#define CLOUDLESS_BENCH_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

struct samples {
	uint64_t *v;
	size_t n, cap;
};

/* CLOCK_MONOTONIC in nanoseconds (the clock Python's time.monotonic() reads). */
uint64_t samples_now_ns(void);
/* Aborts when out of memory. */
void samples_add(struct samples *s, uint64_t v);
void samples_sort(struct samples *s);
/* Nearest-rank percentile of sorted samples, in milliseconds (0 when empty). */
double samples_pct_ms(const struct samples *s, double p);
/* The largest of sorted samples, in milliseconds. */
double samples_max_ms(const struct samples *s);
void samples_close(struct samples *s);

#endif
