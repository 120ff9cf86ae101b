/* metrics: counters and histograms with labels, rendered in Prometheus text format 0.0.4.
 *
 * Families are declared once at start-up; series (label sets) are created on first use.
 * Gauges that mirror live raft state are not stored here: the /metrics handler writes them
 * at scrape time with metrics_write_gauge, next to the rendered families. Everything runs
 * on the loop thread, so there is no locking. */
#ifndef CLOUDLESS_METRICS_METRICS_H
#define CLOUDLESS_METRICS_METRICS_H

#include <stddef.h>

#include "util/buf.h"

struct metrics;

enum metrics_type { METRICS_COUNTER, METRICS_HISTOGRAM };

int metrics_init(struct metrics **out);
void metrics_close(struct metrics *m);

/* Declares a family. `buckets` (upper bounds, ascending, without +Inf) is for histograms
 * only; it is copied. Declaring the same name twice is a programming error (aborts). */
void metrics_define(struct metrics *m, const char *name, enum metrics_type type, const char *help,
                    const double *buckets, size_t n_buckets);

/* `labels` is the inside of the braces, already formatted and escaped, e.g.
 * `route="/v1/kv",code="200"`, or NULL/"" for none. Unknown family names abort. */
void metrics_counter_add(struct metrics *m, const char *name, const char *labels, double v);
/* Makes a counter series exist (at 0) so that it is exported before the first event. */
void metrics_counter_touch(struct metrics *m, const char *name, const char *labels);
void metrics_observe(struct metrics *m, const char *name, const char *labels, double v);
/* Current value of a counter series (0 when absent). For tests and status. */
double metrics_counter_get(struct metrics *m, const char *name, const char *labels);

/* Appends all families, sorted by name, with # HELP and # TYPE lines. */
void metrics_render(struct metrics *m, struct buf *out);

/* Writes one gauge family with a single series: HELP, TYPE and the sample line. */
void metrics_write_gauge(struct buf *out, const char *name, const char *help, const char *labels,
                         double value);
/* Writes the HELP/TYPE header of a gauge family, then call metrics_write_sample per series. */
void metrics_write_gauge_header(struct buf *out, const char *name, const char *help);
void metrics_write_sample(struct buf *out, const char *name, const char *labels, double value);
/* Escapes a label value (backslash, double quote, newline) into out. */
void metrics_escape_label(struct buf *out, const char *value);

#endif
