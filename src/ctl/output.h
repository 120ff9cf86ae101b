/* output: how cloudlessctl prints results and errors.
 *
 * Everything here is a pure function into a struct buf, so every verb's table is
 * checked against golden files for fixed JSON documents (tests/unit/test_ctl_output.c):
 *   - tables aligned under upper-case headers, columns three spaces apart, no trailing
 *     blanks (the layout of `kubectl get`); every cell is made one line (controls and bytes
 *     that are not UTF-8 escaped), so a value can never forge a row;
 *   - the one-line error for an answer the cluster gave with a 4xx/5xx status: the problem
 *     document's title and detail, then its status and type, e.g.
 *     "Conflict: compare-and-set failed: ... (409 cas-mismatch)".
 * With -o json the verbs print the API's documents unchanged instead (see ctl.h). */
#ifndef CLOUDLESS_CTL_OUTPUT_H
#define CLOUDLESS_CTL_OUTPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

struct ctl_table {
	const char *const *heads;
	size_t ncols;
	char **cells; /* row-major, ncols per row */
	size_t n_cells, cap;
};

void ctl_table_init(struct ctl_table *t, const char *const *heads, size_t ncols);
/* Appends the next cell (rows fill left to right). */
void ctl_table_add(struct ctl_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A cell from a JSON value: a string as is ("-" when empty), an integer in decimal, true and
 * false as yes and no, anything else (absent, null) "-". */
void ctl_table_add_json(struct ctl_table *t, const json_t *v);
/* A cell of labels: k=v pairs by key, comma-separated ("-" when there are none). */
void ctl_table_add_labels(struct ctl_table *t, const json_t *labels);
void ctl_table_render(const struct ctl_table *t, struct buf *out);
void ctl_table_close(struct ctl_table *t);

/* A table with a row per item of the array `items`, `row` adding its cells; ctl_render_row
 * for one item. */
void ctl_render_rows(const char *const *heads, size_t ncols, const json_t *items,
                     void (*row)(struct ctl_table *, const json_t *), struct buf *out);
void ctl_render_row(const char *const *heads, size_t ncols, const json_t *item,
                    void (*row)(struct ctl_table *, const json_t *), struct buf *out);

/* Appends s[0..len) made one line: \n, \r, \t as such escapes, other controls and bytes that
 * are not UTF-8 as \xNN. */
void ctl_put_oneline(struct buf *out, const char *s, size_t len);
/* The message for an answer with a 4xx/5xx status (see the top); falls back to the status
 * and the body's first line when the body is not a problem document. */
void ctl_render_problem(long status, const char *body, size_t len, struct buf *out);

/* The line a workload or agent write prints: "KEY: ACTION (version V)" for an answer that is
 * the record, "KEY: ACTION (index N)" for a deletion's {deleted, index}, and for a retried
 * write whose record is gone since ({key, index, exists: false}) "KEY: ACTION (index N; it
 * no longer exists)". */
void ctl_render_write(const char *key, const char *action, const json_t *answer, struct buf *out);

/* A string member, or `def` when it is absent or not a string. */
const char *ctl_json_str(const json_t *obj, const char *key, const char *def);

#endif
