/* test_ctl_output: cloudlessctl's table output against golden files.
 *
 * Every renderer is a pure function of JSON documents (src/ctl/ctl.h), so each case feeds
 * tests/unit/golden/NAME.json (documents shaped as the coordinator answers them, several
 * taken from a live cluster) to its renderer and compares the text with NAME.txt byte for
 * byte. The inputs cover what makes tables go wrong: UTF-8 and control characters in keys and
 * values, binary and long values, members without a known address or ID, missing fields, and
 * every kind of problem document. The test also checks structural properties of every
 * table: each line's columns start where the header's do, and no line ends in a blank.
 *
 * The golden directory is argv[1] (meson passes it). With CLOUDLESS_UPDATE_GOLDEN=1 the .txt
 * files are rewritten from the current output instead: review the diff before committing. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "ctl/output.h"
#include "testlib.h"

static const char *golden_dir = "tests/unit/golden";
static bool update;

typedef void (*render_fn)(const json_t *input, struct buf *out);

static void render_status(const json_t *in, struct buf *out)
{
	ctl_render_cluster_status(json_object_get(in, "status"), json_object_get(in, "members"),
	                          out);
}

static void render_kv_writes(const json_t *in, struct buf *out)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(in, "results"), i, r) ctl_render_kv_write(r, out);
}

/* The lines of workload and agent writes: {key, action, answer} each. */
static void render_writes(const json_t *in, struct buf *out)
{
	size_t i;
	json_t *w;
	json_array_foreach(json_object_get(in, "writes"), i, w)
	    ctl_render_write(ctl_json_str(w, "key", ""), ctl_json_str(w, "action", ""),
	                     json_object_get(w, "answer"), out);
}

/* agent drain --wait's progress lines, one per state of the agent. */
static void render_drain_progress(const json_t *in, struct buf *out)
{
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(in, "agents"), i, a) ctl_render_drain_progress(a, out);
}

/* One error line per answer, as cloudlessctl prints them after "cloudlessctl: ". */
static void render_problems(const json_t *in, struct buf *out)
{
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(in, "problems"), i, p)
	{
		const char *body = ctl_json_str(p, "body", "");
		ctl_render_problem((long)json_integer_value(json_object_get(p, "status")), body,
		                   strlen(body), out);
		buf_puts(out, "\n");
	}
}

/* A case renders its input with `render`, or with `of` the input's member `member`. */
static const struct {
	const char *name;
	render_fn render;
	const char *member;
	render_fn of;
	bool table; /* output is aligned tables a blank line apart (checked structurally too) */
} cases[] = {
    {"cluster_status", render_status, NULL, NULL, true},
    {"cluster_status_follower", render_status, NULL, NULL, true},
    {"cluster_leader", NULL, "status", ctl_render_cluster_leader, true},
    {"cluster_members", NULL, "status", ctl_render_cluster_members, true},
    {"cluster_health", NULL, "report", ctl_render_cluster_health, false},
    {"membership_join", NULL, "result", ctl_render_membership, false},
    {"membership_noop", NULL, "result", ctl_render_membership, false},
    {"kv_write", render_kv_writes, NULL, NULL, false},
    {"kv_list", NULL, "list", ctl_render_kv_list, true},
    {"kv_list_empty", NULL, "list", ctl_render_kv_list, false},
    {"problems", render_problems, NULL, NULL, false},
    {"workload_list", NULL, "list", ctl_render_workload_list, true},
    {"workload_get", NULL, "workload", ctl_render_workload, true},
    {"workload_get_empty", NULL, "workload", ctl_render_workload, true},
    {"agent_list", NULL, "list", ctl_render_agent_list, true},
    {"agent_get", NULL, "agent", ctl_render_agent, true},
    {"agent_get_empty", NULL, "agent", ctl_render_agent, true},
    {"domain_writes", render_writes, NULL, NULL, false},
    {"drain_progress", render_drain_progress, NULL, NULL, false},
};

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[4096];
	size_t n;
	if (f == NULL)
		return NULL;
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	buf_append(&b, "", 1);
	char *s = buf_detach(&b, len);
	*len -= 1;
	return s;
}

/* Column starts of a table line: where a run of 3+ blanks ends (cells hold at most single
 * blanks between words, except the last column which may hold anything). */
static void column_starts(const char *line, size_t len, size_t *starts, size_t *n, size_t max)
{
	size_t col = 0, blanks = 0;
	*n = 0;
	starts[(*n)++] = 0;
	for (size_t i = 0; i < len && *n < max; i++) {
		unsigned char ch = (unsigned char)line[i];
		if ((ch & 0xc0) == 0x80)
			continue; /* a continuation byte takes no column */
		if (ch == ' ') {
			blanks++;
		} else {
			if (blanks >= 3)
				starts[(*n)++] = col;
			blanks = 0;
		}
		col++;
	}
}

/* Every line of a table starts its columns where the header does, and none ends in a
 * blank. Only the header's column positions are compared with each row's first ones. An
 * empty line ends a table: what follows is another (its first line its header). */
static void check_table_shape(const char *name, const char *text)
{
	size_t head[16], nh = 0, row[16], nr;
	const char *line = text;
	bool first = true;
	while (*line != '\0') {
		const char *end = strchr(line, '\n');
		size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
		if (len == 0) {
			first = true;
			line += end != NULL ? 1 : 0;
			continue;
		}
		if (len > 0 && line[len - 1] == ' ') {
			fprintf(stderr, "%s: trailing blank in \"%.*s\"\n", name, (int)len, line);
			CHECK(0);
		}
		if (first) {
			column_starts(line, len, head, &nh, 16);
			first = false;
		} else {
			column_starts(line, len, row, &nr, 16);
			/* Renderers put "-" in cells without a value; only a last cell may be
			 * empty (an empty value), so a row has at least the header's columns but
			 * one, each starting where the header's does. */
			CHECK(nr + 1 >= nh);
			for (size_t i = 0; i < nh && i < nr; i++)
				if (row[i] != head[i]) {
					fprintf(
					    stderr,
					    "%s: column %zu of \"%.*s\" at %zu, header at %zu\n",
					    name, i, (int)len, line, row[i], head[i]);
					CHECK(0);
				}
		}
		line += len + (end != NULL ? 1 : 0);
	}
}

static void run_case(const char *name, render_fn render, const char *member, render_fn of,
                     bool table)
{
	char in_path[1024], out_path[1024];
	snprintf(in_path, sizeof in_path, "%s/%s.json", golden_dir, name);
	snprintf(out_path, sizeof out_path, "%s/%s.txt", golden_dir, name);
	json_error_t e;
	json_t *in = json_load_file(in_path, 0, &e);
	CHECK(in != NULL);
	if (in == NULL) {
		fprintf(stderr, "%s: %s (line %d)\n", in_path, e.text, e.line);
		return;
	}
	struct buf got;
	buf_init(&got);
	if (render != NULL)
		render(in, &got);
	else
		of(json_object_get(in, member), &got);
	buf_append(&got, "", 1);
	got.len--;

	if (update) {
		FILE *f = fopen(out_path, "wb");
		CHECK(f != NULL && fwrite(got.data, 1, got.len, f) == got.len && fclose(f) == 0);
		fprintf(stderr, "updated %s\n", out_path);
	} else {
		size_t want_len = 0;
		char *want = read_file(out_path, &want_len);
		CHECK(want != NULL);
		if (want != NULL && (want_len != got.len || memcmp(want, got.data, got.len) != 0)) {
			fprintf(stderr, "%s differs from %s:\n--- want\n%s--- got\n%s---\n", name,
			        out_path, want, got.data);
			CHECK(0);
		}
		free(want);
	}
	/* Whatever the input, the output is lines of text: no control bytes but the newline. */
	for (size_t i = 0; i < got.len; i++)
		CHECK((unsigned char)got.data[i] >= 0x20 || got.data[i] == '\n');
	if (table)
		check_table_shape(name, got.data);
	buf_close(&got);
	json_decref(in);
}

/* The table engine on its own: alignment by characters, not bytes, and cells made one line. */
static void test_table_engine(void)
{
	static const char *const heads[] = {"A", "BB"};
	struct ctl_table t;
	struct buf out;
	ctl_table_init(&t, heads, 2);
	ctl_table_add(&t, "%s", "h\xc3\xa9");   /* 2 columns, 3 bytes */
	ctl_table_add(&t, "%s", "x\ny\tz\x01"); /* escaped */
	ctl_table_add(&t, "%s", "\xff");        /* not UTF-8 */
	ctl_table_add_json(&t, NULL);
	buf_init(&out);
	ctl_table_render(&t, &out);
	CHECK_EQ_STR(out.data, "A      BB\n"
	                       "h\xc3\xa9     x\\ny\\tz\\x01\n"
	                       "\\xff   -\n");
	ctl_table_close(&t);
	buf_close(&out);
}

int main(int argc, char *argv[])
{
	if (argc > 1)
		golden_dir = argv[1];
	update = getenv("CLOUDLESS_UPDATE_GOLDEN") != NULL &&
	         strcmp(getenv("CLOUDLESS_UPDATE_GOLDEN"), "1") == 0;
	test_table_engine();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(cases[i].name, cases[i].render, cases[i].member, cases[i].of,
		         cases[i].table);
	TEST_DONE();
}
