/* output: tables, one-line text and problem messages for cloudlessctl (see output.h). */
#include "ctl/output.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "util/text.h"

#define CTL_COLUMN_GAP 3

void ctl_table_init(struct ctl_table *t, const char *const *heads, size_t ncols)
{
	memset(t, 0, sizeof *t);
	t->heads = heads;
	t->ncols = ncols;
}

static void table_push(struct ctl_table *t, char *cell)
{
	if (t->n_cells == t->cap) {
		size_t cap = t->cap != 0 ? t->cap * 2 : 32;
		char **cells = realloc(t->cells, cap * sizeof *cells);
		if (cells == NULL)
			abort(); /* as util/buf does for the rest of our output */
		t->cells = cells;
		t->cap = cap;
	}
	t->cells[t->n_cells++] = cell;
}

void ctl_table_add(struct ctl_table *t, const char *fmt, ...)
{
	struct buf raw, cell;
	va_list ap;
	buf_init(&raw);
	buf_init(&cell);
	va_start(ap, fmt);
	buf_vprintf(&raw, fmt, ap);
	va_end(ap);
	ctl_put_oneline(&cell, raw.data != NULL ? raw.data : "", raw.len);
	buf_close(&raw);
	buf_append(&cell, "", 1); /* NUL: an empty cell still owns a string */
	table_push(t, buf_detach(&cell, NULL));
}

void ctl_table_add_json(struct ctl_table *t, const json_t *v)
{
	if (json_is_string(v) && json_string_length(v) > 0)
		ctl_table_add(t, "%s", json_string_value(v));
	else if (json_is_integer(v))
		ctl_table_add(t, "%lld", (long long)json_integer_value(v));
	else if (json_is_boolean(v))
		ctl_table_add(t, "%s", json_is_true(v) ? "yes" : "no");
	else
		ctl_table_add(t, "-");
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void ctl_table_add_labels(struct ctl_table *t, const json_t *labels)
{
	size_t n = json_object_size(labels), k = 0;
	const char **keys = calloc(n > 0 ? n : 1, sizeof *keys);
	const char *key;
	json_t *v;
	struct buf cell;
	if (keys == NULL)
		abort();
	json_object_foreach((json_t *)labels, key, v) keys[k++] = key;
	qsort(keys, k, sizeof *keys, cmp_keys);
	buf_init(&cell);
	for (size_t i = 0; i < k; i++)
		buf_printf(&cell, "%s%s=%s", i > 0 ? "," : "", keys[i],
		           ctl_json_str(labels, keys[i], ""));
	ctl_table_add(t, "%s", cell.len > 0 ? cell.data : "-");
	buf_close(&cell);
	free(keys);
}

/* Columns as a terminal shows them: UTF-8 continuation bytes take no column. */
static size_t display_width(const char *s)
{
	size_t w = 0;
	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void ctl_table_render(const struct ctl_table *t, struct buf *out)
{
	size_t rows = t->ncols > 0 ? t->n_cells / t->ncols : 0;
	size_t *width = calloc(t->ncols > 0 ? t->ncols : 1, sizeof *width);
	if (width == NULL)
		abort();
	for (size_t c = 0; c < t->ncols; c++)
		width[c] = display_width(t->heads[c]);
	for (size_t i = 0; i < rows * t->ncols; i++) {
		size_t w = display_width(t->cells[i]);
		if (w > width[i % t->ncols])
			width[i % t->ncols] = w;
	}
	for (size_t r = 0; r <= rows; r++) {
		size_t start = out->len;
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = r == 0 ? t->heads[c] : t->cells[(r - 1) * t->ncols + c];
			buf_puts(out, s);
			if (c + 1 < t->ncols)
				buf_printf(out, "%*s",
				           (int)(width[c] - display_width(s) + CTL_COLUMN_GAP), "");
		}
		/* Empty trailing cells leave only padding behind. */
		while (out->len > start && out->data[out->len - 1] == ' ')
			out->len--;
		buf_puts(out, "\n");
	}
	free(width);
}

void ctl_table_close(struct ctl_table *t)
{
	for (size_t i = 0; i < t->n_cells; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof *t);
}

void ctl_render_row(const char *const *heads, size_t ncols, const json_t *item,
                    void (*row)(struct ctl_table *, const json_t *), struct buf *out)
{
	struct ctl_table t;
	ctl_table_init(&t, heads, ncols);
	row(&t, item);
	ctl_table_render(&t, out);
	ctl_table_close(&t);
}

void ctl_render_rows(const char *const *heads, size_t ncols, const json_t *items,
                     void (*row)(struct ctl_table *, const json_t *), struct buf *out)
{
	struct ctl_table t;
	size_t i;
	json_t *item;
	ctl_table_init(&t, heads, ncols);
	json_array_foreach(items, i, item) row(&t, item);
	ctl_table_render(&t, out);
	ctl_table_close(&t);
}

void ctl_put_oneline(struct buf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned char ch = (unsigned char)s[i];
		size_t n = text_utf8_char_len(s + i, len - i);
		if (ch == '\n' || ch == '\r' || ch == '\t') {
			buf_puts(out, ch == '\n' ? "\\n" : ch == '\r' ? "\\r" : "\\t");
			i++;
		} else if (ch < 0x20 || ch == 0x7f || n == 0) {
			buf_printf(out, "\\x%02x", ch);
			i++;
		} else {
			buf_append(out, s + i, n);
			i += n;
		}
	}
}

const char *ctl_json_str(const json_t *obj, const char *key, const char *def)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s != NULL ? s : def;
}

void ctl_render_problem(long status, const char *body, size_t len, struct buf *out)
{
	json_t *doc = json_loadb(body, len, 0, NULL);
	const char *title = ctl_json_str(doc, "title", NULL);
	const char *detail = ctl_json_str(doc, "detail", NULL);
	const char *type = ctl_json_str(doc, "type", "");
	size_t plen = strlen(CLOUDLESS_PROBLEM_BASE);

	if (title != NULL || detail != NULL) {
		ctl_put_oneline(out, title != NULL ? title : "Error",
		                strlen(title ? title : "Error"));
		if (detail != NULL && detail[0] != '\0') {
			buf_puts(out, ": ");
			ctl_put_oneline(out, detail, strlen(detail));
		}
		buf_printf(out, " (%ld", status);
		if (strncmp(type, CLOUDLESS_PROBLEM_BASE, plen) == 0 && type[plen] != '\0') {
			buf_puts(out, " ");
			ctl_put_oneline(out, type + plen, strlen(type + plen));
		}
		buf_puts(out, ")");
	} else {
		/* Not a problem document (a proxy in between, say): the status and what it said. */
		size_t n = strcspn(body, "\r\n");
		buf_printf(out, "HTTP status %ld", status);
		if (n > 0) {
			buf_puts(out, ": ");
			ctl_put_oneline(out, body, n < 200 ? n : 200);
		}
	}
	json_decref(doc);
}

void ctl_render_write(const char *key, const char *action, const json_t *answer, struct buf *out)
{
	const json_t *version = json_object_get(answer, "version");
	const json_t *index = json_object_get(answer, "index");
	ctl_put_oneline(out, key, strlen(key));
	buf_printf(out, ": %s", action);
	if (json_is_false(json_object_get(answer, "exists")))
		buf_printf(out, " (index %lld; it no longer exists)",
		           (long long)json_integer_value(index));
	else if (json_is_integer(version))
		buf_printf(out, " (version %lld)", (long long)json_integer_value(version));
	else if (json_is_integer(index))
		buf_printf(out, " (index %lld)", (long long)json_integer_value(index));
	buf_puts(out, "\n");
}
