/* kv: cloudlessctl's `kv` verbs over /v1/kv: get, put, del and ls.
 *
 * `kv get` prints the value's bytes as stored (a newline is added only on a terminal, so
 * `kv get k > file` gives back exactly what `kv put k - < file` stored); with -o json it
 * prints the key's metadata document (?json) unchanged. `kv put KEY -` reads the value from
 * stdin. `kv ls` follows the listing's `continue` tokens until the prefix is exhausted (or
 * --limit keys were listed) and with -o json prints one listing document of the API's shape,
 * {"items": [...], "continue": <token or null>}: a single page exactly as it came.
 *
 * --cas and --idempotency-key map to the API's `cas` and `Idempotency-Key`; --timeout is
 * passed on as `?timeout`, so a write the cluster could not finish in time is answered 504
 * rather than cut off. A write is repeated at another endpoint after an attempt whose
 * outcome is unknown only when it carries an Idempotency-Key (the leader then answers a
 * repeat with the first result); a compare-and-set repeated after its own success would
 * fail its comparison and report a conflict that is not one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloudless/protocol.h"
#include "ctl/ctl.h"
#include "ctl/output.h"
#include "util/text.h"

/* Value bytes shown in a listing's VALUE column. */
#define CTL_VALUE_COLUMN 60u

/* ---- renderers --------------------------------------------------------------------------- */

void ctl_render_kv_write(const json_t *result, struct buf *out)
{
	const char *key = ctl_json_str(result, "key", "");
	const char *what = json_is_true(json_object_get(result, "deleted"))   ? "deleted"
	                   : json_is_true(json_object_get(result, "created")) ? "created"
	                                                                      : "updated";
	ctl_put_oneline(out, key, strlen(key));
	buf_printf(out, ": %s (index %lld)\n", what,
	           (long long)json_integer_value(json_object_get(result, "index")));
}

/* A listing's VALUE cell: text as text (made one line, cut at CTL_VALUE_COLUMN bytes on a
 * character boundary), anything else by its size. */
static void value_cell(struct ctl_table *t, const char *b64)
{
	struct buf v;
	buf_init(&v);
	if (b64 == NULL || text_base64_decode(b64, strlen(b64), &v) != 0) {
		ctl_table_add(t, "-");
	} else if (!text_valid_utf8(v.data != NULL ? v.data : "", v.len)) {
		ctl_table_add(t, "<%zu bytes, not text>", v.len);
	} else {
		size_t n = v.len;
		bool cut = n > CTL_VALUE_COLUMN;
		if (cut) {
			n = CTL_VALUE_COLUMN;
			while (n > 0 && ((unsigned char)v.data[n] & 0xc0) == 0x80)
				n--;
		}
		ctl_table_add(t, "%.*s%s", (int)n, v.len > 0 ? v.data : "", cut ? "..." : "");
	}
	buf_close(&v);
}

void ctl_render_kv_list(const json_t *list, struct buf *out)
{
	static const char *const heads[] = {"KEY", "VERSION", "CREATE INDEX", "MODIFY INDEX",
	                                    "VALUE"};
	const json_t *items = json_object_get(list, "items");
	struct ctl_table t;
	size_t i;
	json_t *it;
	if (json_array_size(items) == 0)
		return; /* kv ls says so on stderr, as kubectl get does */
	ctl_table_init(&t, heads, 5);
	json_array_foreach(items, i, it)
	{
		ctl_table_add_json(&t, json_object_get(it, "key"));
		ctl_table_add_json(&t, json_object_get(it, "version"));
		ctl_table_add_json(&t, json_object_get(it, "create_index"));
		ctl_table_add_json(&t, json_object_get(it, "modify_index"));
		value_cell(&t, ctl_json_str(it, "value_b64", NULL));
	}
	ctl_table_render(&t, out);
	ctl_table_close(&t);
}

/* ---- requests ---------------------------------------------------------------------------- */

struct read_opts {
	bool stale;
	unsigned limit; /* kv ls only; 0 = all */
};

struct write_opts {
	struct flags_opt_u64 cas;
	char *idempotency_key;
};

/* "/v1/kv/KEY?" with the key escaped; the caller appends parameters joined by '&'. */
static void key_path(struct buf *b, const char *key)
{
	buf_puts(b, "/v1/kv/");
	ctl_put_escaped(b, key, strlen(key));
	buf_puts(b, "?");
}

static void timeout_param(struct buf *b, const struct ctl *c)
{
	buf_printf(b, "timeout=%ums", c->g.timeout_ms);
}

static int run_get(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct read_opts *o = opts;
	struct ctl_response resp;
	struct buf path;
	(void)n_args;
	if (args[0][0] == '\0')
		return ctl_usage_error(c, "the key must not be empty");
	buf_init(&path);
	key_path(&path, args[0]);
	timeout_param(&path, c);
	if (o->stale)
		buf_puts(&path, "&stale");
	if (c->output == CTL_OUTPUT_JSON)
		buf_puts(&path, "&json");
	struct ctl_request req = {.method = "GET", .path = path.data, .retry_unknown = true};
	int rc = ctl_send(c, &req, &resp, false);
	buf_close(&path);
	if (rc != CTL_EXIT_OK)
		return rc;
	bool newline =
	    c->output == CTL_OUTPUT_JSON ||
	    (isatty(STDOUT_FILENO) && (resp.body_len == 0 || resp.body[resp.body_len - 1] != '\n'));
	rc = ctl_print(resp.body, resp.body_len, newline);
	ctl_response_free(&resp);
	return rc;
}

static int write_key(struct ctl *c, const char *method, const struct write_opts *o, const char *key,
                     const void *value, size_t len)
{
	struct ctl_response resp;
	struct buf path;
	if (key[0] == '\0')
		return ctl_usage_error(c, "the key must not be empty");
	buf_init(&path);
	buf_puts(&path, "/v1/kv/");
	ctl_put_escaped(&path, key, strlen(key));
	if (o->cas.set)
		buf_printf(&path, "?cas=%llu", (unsigned long long)o->cas.value);
	struct ctl_write w = {.method = method,
	                      .path = path.data,
	                      .body = value,
	                      .body_len = len,
	                      .idempotency_key = o->idempotency_key};
	int rc = ctl_send_write(c, &w, &resp);
	buf_close(&path);
	return rc != CTL_EXIT_OK ? rc : ctl_print_answer(c, &resp, ctl_render_kv_write);
}

static int run_put(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct buf value;
	(void)n_args;
	buf_init(&value);
	int rc = CTL_EXIT_OK;
	if (strcmp(args[1], "-") == 0)
		rc = ctl_read_input(c, "-", &value);
	else
		buf_puts(&value, args[1]);
	if (rc == CTL_EXIT_OK)
		rc = write_key(c, "PUT", opts, args[0], value.data != NULL ? value.data : "",
		               value.len);
	buf_close(&value);
	return rc;
}

static int run_del(struct ctl *c, void *opts, char **args, size_t n_args)
{
	(void)n_args;
	return write_key(c, "DELETE", opts, args[0], NULL, 0);
}

static int run_ls(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct read_opts *o = opts;
	const char *prefix = n_args > 0 ? args[0] : "";
	struct buf path, none;
	buf_init(&path);
	buf_puts(&path, "/v1/kv/?");
	timeout_param(&path, c);
	buf_puts(&path, "&prefix=");
	ctl_put_escaped(&path, prefix, strlen(prefix));
	if (o->stale)
		buf_puts(&path, "&stale");
	buf_init(&none);
	buf_printf(&none, "No keys found%s%s.", prefix[0] ? " under " : "", prefix);
	int rc = ctl_list_show(c, path.data, o->limit, ctl_render_kv_list, none.data);
	buf_close(&none);
	buf_close(&path);
	return rc;
}

#define R(f) offsetof(struct read_opts, f)
#define W(f) offsetof(struct write_opts, f)
static const struct flags_option get_opts[] = {CTL_OPT_STALE(struct read_opts, stale)};

static const struct flags_option ls_opts[] = {
    {.flag = "--stale",
     .kind = FLAGS_BOOL,
     .off = R(stale),
     .help = "List from the answering member's local state instead of through the leader."},
    {.flag = "--limit",
     .kind = FLAGS_UINT,
     .off = R(limit),
     .metavar = "N",
     .def = "0",
     .help = "List at most N keys (0: all of them). With -o json the listing's continue "
             "token then says where the rest begins."},
};

static const struct flags_option write_opts[] = {
    {.flag = "--cas",
     .kind = FLAGS_OPT_U64,
     .off = W(cas),
     .metavar = "INDEX",
     .help = "Compare-and-set: only when the key's modify index is INDEX (0: only when "
             "the key does not exist). A mismatch is a 409 conflict naming the current "
             "index."},
    CTL_OPT_IDEMPOTENCY_KEY(struct write_opts, idempotency_key),
};
#undef R
#undef W

static const struct ctl_verb verbs[] = {
    {.name = "get",
     .args = "KEY",
     .summary = "Print a key's value (with -o json: its metadata).",
     .help = "Prints the value of KEY byte for byte (on a terminal followed by a newline).\n"
             "With -o json it prints the key's document instead: key, value_b64,\n"
             "create_index, modify_index (the --cas of the next write) and version. A key\n"
             "that does not exist is an error (exit status 1).",
     .opts = get_opts,
     .n_opts = sizeof get_opts / sizeof get_opts[0],
     .opts_size = sizeof(struct read_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_get},
    {.name = "put",
     .args = "KEY VALUE|-",
     .summary = "Write a key; - reads the value from stdin.",
     .help = "Stores VALUE under KEY, or with - the bytes read from stdin until its end.\n"
             "Prints whether the key was created or updated and the write's raft index.\n"
             "Arguments after -- are never flags: kv put -- KEY -5 stores \"-5\".",
     .opts = write_opts,
     .n_opts = sizeof write_opts / sizeof write_opts[0],
     .opts_size = sizeof(struct write_opts),
     .min_args = 2,
     .max_args = 2,
     .run = run_put},
    {.name = "del",
     .args = "KEY",
     .summary = "Delete a key.",
     .help = "Deletes KEY. A key that does not exist is an error (exit status 1).",
     .opts = write_opts,
     .n_opts = sizeof write_opts / sizeof write_opts[0],
     .opts_size = sizeof(struct write_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_del},
    {.name = "ls",
     .args = "[PREFIX]",
     .summary = "List keys (all, or those starting with PREFIX).",
     .help = "Lists the keys starting with PREFIX (all keys without it) in byte order, with\n"
             "version, create and modify index and the start of the value, fetching page\n"
             "after page until the listing is complete.",
     .opts = ls_opts,
     .n_opts = sizeof ls_opts / sizeof ls_opts[0],
     .opts_size = sizeof(struct read_opts),
     .max_args = 1,
     .run = run_ls},
};

const struct ctl_group ctl_group_kv = {
    .name = "kv",
    .summary = "The replicated key-value store.",
    .verbs = verbs,
    .n_verbs = sizeof verbs / sizeof verbs[0],
};
