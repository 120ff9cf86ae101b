/* metrics: counters and histograms with labels, rendered in Prometheus text format 0.0.4.
 *
 * The registry is two levels of sorted arrays: families sorted by name, and inside each family
 * its series sorted by label string. Lookups are binary searches, inserts shift the tail. We
 * expect tens of families and at most a few hundred series, created once and then only
 * updated, so sorted arrays beat a hash table here: they are small, cache friendly, and the
 * scrape walks them in exactly the order the exposition format wants without sorting.
 *
 * The /metrics handler (src/api/metrics_route.c) calls metrics_render() and then appends the
 * live raft gauges with the metrics_write_* helpers, so both halves share one number format.
 *
 * Misuse (an unknown family, a family used as the wrong type, a bad name) is a programming
 * error and aborts with a message: silently dropping a sample would hide the bug until
 * someone wonders why a dashboard is empty. Allocation failure aborts too, as in util/buf. */
#include "metrics/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
	char *labels;     /* "" when the series has no labels */
	double value;     /* counters: the value; histograms: the sum of observations */
	uint64_t count;   /* histograms: number of observations */
	uint64_t *bucket; /* histograms: observations per bucket, NOT cumulative */
};

struct family {
	char *name;
	char *help;
	enum metrics_type type;
	double *bounds; /* histogram upper bounds, ascending, without +Inf */
	size_t n_bounds;
	struct series *series; /* sorted by labels */
	size_t n_series;
	size_t cap_series;
};

struct metrics {
	struct family *families; /* sorted by name */
	size_t n_families;
	size_t cap_families;
};

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("metrics: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

static void *xrealloc(void *p, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		die("allocation of %zu elements of %zu bytes overflows", n, size);
	void *q = realloc(p, n * size);
	if (q == NULL && n * size != 0)
		die("out of memory");
	return q;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		die("out of memory");
	return d;
}

/* Metric names per the data model: [a-zA-Z_:][a-zA-Z0-9_:]*. We check at define time so a typo
 * fails at start-up instead of producing an exposition Prometheus rejects at every scrape. */
static bool valid_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		char ch = *p;
		bool alpha =
		    (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == ':';
		bool digit = ch >= '0' && ch <= '9';
		if (!alpha && !(digit && p != s))
			return false;
	}
	return true;
}

/* Binary search; returns the index of the match or, with *found false, where to insert. */
static size_t find_family(const struct metrics *m, const char *name, bool *found)
{
	size_t lo = 0, hi = m->n_families;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(m->families[mid].name, name);
		if (cmp == 0) {
			*found = true;
			return mid;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static size_t find_series(const struct family *f, const char *labels, bool *found)
{
	size_t lo = 0, hi = f->n_series;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(f->series[mid].labels, labels);
		if (cmp == 0) {
			*found = true;
			return mid;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static const char *type_name(enum metrics_type type)
{
	return type == METRICS_HISTOGRAM ? "histogram" : "counter";
}

/* Looks up a family that the caller is about to use as `type`; aborts on misuse. */
static struct family *get_family(struct metrics *m, const char *name, enum metrics_type type)
{
	bool found;
	if (name == NULL)
		die("metric name is NULL");
	size_t i = find_family(m, name, &found);
	if (!found)
		die("unknown metric family %s (not declared with metrics_define)", name);
	struct family *f = &m->families[i];
	if (f->type != type)
		die("metric family %s is a %s", name, type_name(f->type));
	return f;
}

/* Returns the series for `labels`, creating it (at zero) when absent. */
static struct series *get_series(struct family *f, const char *labels)
{
	bool found;
	if (labels == NULL)
		labels = "";
	size_t i = find_series(f, labels, &found);
	if (found)
		return &f->series[i];
	if (f->n_series == f->cap_series) {
		size_t cap = f->cap_series ? f->cap_series * 2 : 8;
		f->series = xrealloc(f->series, cap, sizeof *f->series);
		f->cap_series = cap;
	}
	memmove(&f->series[i + 1], &f->series[i], (f->n_series - i) * sizeof *f->series);
	f->n_series++;
	struct series *s = &f->series[i];
	memset(s, 0, sizeof *s);
	s->labels = xstrdup(labels);
	if (f->type == METRICS_HISTOGRAM && f->n_bounds > 0) {
		s->bucket = calloc(f->n_bounds, sizeof *s->bucket);
		if (s->bucket == NULL)
			die("out of memory");
	}
	return s;
}

int metrics_init(struct metrics **out)
{
	struct metrics *m = calloc(1, sizeof *m);
	if (m == NULL)
		return -1;
	*out = m;
	return 0;
}

void metrics_close(struct metrics *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n_families; i++) {
		struct family *f = &m->families[i];
		for (size_t j = 0; j < f->n_series; j++) {
			free(f->series[j].labels);
			free(f->series[j].bucket);
		}
		free(f->series);
		free(f->bounds);
		free(f->name);
		free(f->help);
	}
	free(m->families);
	free(m);
}

void metrics_define(struct metrics *m, const char *name, enum metrics_type type, const char *help,
                    const double *buckets, size_t n_buckets)
{
	bool found;
	if (name == NULL || !valid_name(name))
		die("invalid metric name \"%s\"", name ? name : "(null)");
	if (type != METRICS_COUNTER && type != METRICS_HISTOGRAM)
		die("metric family %s has an unknown type %d", name, (int)type);
	if (type == METRICS_COUNTER && n_buckets > 0)
		die("counter %s given histogram buckets", name);
	if (n_buckets > 0 && buckets == NULL)
		die("histogram %s: buckets is NULL", name);
	/* +Inf is implicit and NaN compares false with everything, so both would break the
	 * cumulative counts; unsorted bounds would make the bucket search wrong. */
	for (size_t i = 0; i < n_buckets; i++) {
		if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
			die("histogram %s: buckets must be finite and strictly ascending", name);
	}

	size_t i = find_family(m, name, &found);
	if (found)
		die("metric family %s defined twice", name);
	if (m->n_families == m->cap_families) {
		size_t cap = m->cap_families ? m->cap_families * 2 : 16;
		m->families = xrealloc(m->families, cap, sizeof *m->families);
		m->cap_families = cap;
	}
	memmove(&m->families[i + 1], &m->families[i], (m->n_families - i) * sizeof *m->families);
	m->n_families++;

	struct family *f = &m->families[i];
	memset(f, 0, sizeof *f);
	f->name = xstrdup(name);
	f->help = xstrdup(help != NULL ? help : "");
	f->type = type;
	if (n_buckets > 0) {
		f->bounds = xrealloc(NULL, n_buckets, sizeof *f->bounds);
		memcpy(f->bounds, buckets, n_buckets * sizeof *f->bounds);
		f->n_bounds = n_buckets;
	}
}

void metrics_counter_add(struct metrics *m, const char *name, const char *labels, double v)
{
	struct family *f = get_family(m, name, METRICS_COUNTER);
	/* A counter that goes down (or becomes NaN) makes rate() report a reset or garbage for
	 * the rest of the process's life; dropping the bad increment is the lesser harm. The
	 * check is written so that NaN fails it too. */
	if (!(v >= 0)) {
		fprintf(stderr,
		        "metrics: ignoring increment %g of counter %s{%s}: counters only go up\n",
		        v, name, labels != NULL ? labels : "");
		return;
	}
	get_series(f, labels)->value += v;
}

void metrics_counter_touch(struct metrics *m, const char *name, const char *labels)
{
	get_series(get_family(m, name, METRICS_COUNTER), labels);
}

void metrics_observe(struct metrics *m, const char *name, const char *labels, double v)
{
	struct family *f = get_family(m, name, METRICS_HISTOGRAM);
	/* A NaN would poison _sum forever and belongs to no bucket. */
	if (isnan(v)) {
		fprintf(stderr, "metrics: ignoring NaN observation of histogram %s{%s}\n", name,
		        labels != NULL ? labels : "");
		return;
	}
	struct series *s = get_series(f, labels);
	/* First bound >= v (buckets are "less than or equal"); past the end means +Inf only. */
	size_t lo = 0, hi = f->n_bounds;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->bounds[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < f->n_bounds)
		s->bucket[lo]++;
	s->count++;
	s->value += v;
}

double metrics_counter_get(struct metrics *m, const char *name, const char *labels)
{
	struct family *f = get_family(m, name, METRICS_COUNTER);
	bool found;
	size_t i = find_series(f, labels != NULL ? labels : "", &found);
	return found ? f->series[i].value : 0;
}

/* Formats a sample value or bucket bound the way Prometheus parses it back exactly: integers
 * (below 2^53, where doubles are still exact) without exponent or decimal point, special
 * values as +Inf/-Inf/NaN, and anything else in the shortest %g form that round-trips, so
 * bounds come out as 0.005 rather than 0.0050000000000000001. */
static void put_number(struct buf *out, double v)
{
	if (isnan(v)) {
		buf_puts(out, "NaN");
		return;
	}
	if (isinf(v)) {
		buf_puts(out, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		/* + 0.0 turns -0 into 0 */
		buf_printf(out, "%.0f", v + 0.0);
		return;
	}
	char tmp[40];
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, v);
		if (prec == 17 || strtod(tmp, NULL) == v)
			break;
	}
	buf_puts(out, tmp);
}

/* HELP text escaping per the format: only backslash and newline. */
static void put_help(struct buf *out, const char *name, const char *help, const char *type)
{
	buf_printf(out, "# HELP %s", name);
	if (help != NULL && help[0] != '\0')
		buf_puts(out, " ");
	for (const char *p = help != NULL ? help : ""; *p != '\0'; p++) {
		if (*p == '\\')
			buf_puts(out, "\\\\");
		else if (*p == '\n')
			buf_puts(out, "\\n");
		else
			buf_append(out, p, 1);
	}
	buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

/* `name{labels} value`, or `name value`, optionally with an extra le="..." label. */
static void put_sample(struct buf *out, const char *name, const char *suffix, const char *labels,
                       const double *le, double value)
{
	bool has_labels = labels != NULL && labels[0] != '\0';
	buf_puts(out, name);
	buf_puts(out, suffix);
	if (has_labels || le != NULL) {
		buf_puts(out, "{");
		if (has_labels)
			buf_puts(out, labels);
		if (le != NULL) {
			buf_puts(out, has_labels ? ",le=\"" : "le=\"");
			put_number(out, *le);
			buf_puts(out, "\"");
		}
		buf_puts(out, "}");
	}
	buf_puts(out, " ");
	put_number(out, value);
	buf_puts(out, "\n");
}

static void render_histogram(struct buf *out, const struct family *f, const struct series *s)
{
	static const double inf = INFINITY;
	uint64_t cumulative = 0;
	for (size_t i = 0; i < f->n_bounds; i++) {
		cumulative += s->bucket[i];
		put_sample(out, f->name, "_bucket", s->labels, &f->bounds[i], (double)cumulative);
	}
	put_sample(out, f->name, "_bucket", s->labels, &inf, (double)s->count);
	put_sample(out, f->name, "_sum", s->labels, NULL, s->value);
	put_sample(out, f->name, "_count", s->labels, NULL, (double)s->count);
}

void metrics_render(struct metrics *m, struct buf *out)
{
	for (size_t i = 0; i < m->n_families; i++) {
		const struct family *f = &m->families[i];
		put_help(out, f->name, f->help, type_name(f->type));
		for (size_t j = 0; j < f->n_series; j++) {
			const struct series *s = &f->series[j];
			if (f->type == METRICS_HISTOGRAM)
				render_histogram(out, f, s);
			else
				put_sample(out, f->name, "", s->labels, NULL, s->value);
		}
	}
}

void metrics_write_gauge(struct buf *out, const char *name, const char *help, const char *labels,
                         double value)
{
	metrics_write_gauge_header(out, name, help);
	metrics_write_sample(out, name, labels, value);
}

void metrics_write_gauge_header(struct buf *out, const char *name, const char *help)
{
	put_help(out, name, help, "gauge");
}

void metrics_write_sample(struct buf *out, const char *name, const char *labels, double value)
{
	put_sample(out, name, "", labels, NULL, value);
}

void metrics_escape_label(struct buf *out, const char *value)
{
	for (const char *p = value != NULL ? value : ""; *p != '\0'; p++) {
		if (*p == '\\')
			buf_puts(out, "\\\\");
		else if (*p == '"')
			buf_puts(out, "\\\"");
		else if (*p == '\n')
			buf_puts(out, "\\n");
		else
			buf_append(out, p, 1);
	}
}
