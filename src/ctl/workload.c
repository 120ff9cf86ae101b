/* workload: cloudlessctl's `workload` verbs over /v1/workloads: apply, list, get, delete,
 * scale and watch.
 *
 * A workload is named NAMESPACE/NAME on the command line, as in the API's paths. `apply -f
 * FILE` sends the file unchanged with PUT /v1/workloads/{namespace}/{name} - create or
 * replace - taking the names from the file (namespace "default" when it has none, as the API
 * does), and says which of the two happened (201 or 200). `list` follows the listing's
 * continue tokens to its end. `get` shows the workload's status and its replicas. --if-version
 * is the API's If-Match (the version a workload's record shows; 0 on apply: only create),
 * --idempotency-key its Idempotency-Key (see ctl_send_write for when a write is repeated).
 *
 * `watch` is a loop of blocking queries: GET with ?index=<X-Cloudless-Index of the last
 * answer>&wait=, which the leader holds until the workload changes. Each answer that differs
 * from the last one printed is printed: as `get` prints it (changes a blank line apart), or
 * with -o json the API's document, one per line. A deletion is printed ("NS/NAME: deleted",
 * or the API's 404 problem document) and the watch goes on, printing the workload again
 * should it be created anew - as `kubectl get -w` keeps watching; a workload that does not
 * exist when the watch starts is an error. An election or a restarting member does not end
 * the watch (ctl_send_patient); SIGINT does, with exit status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "ctl/ctl.h"
#include "ctl/output.h"

/* How long the leader may hold one blocking query of `workload watch` (the API allows 5m). */
#define CTL_WATCH_WAIT_MS 60000u

/* ---- renderers --------------------------------------------------------------------------- */

static const char *const summary_heads[] = {"NAMESPACE", "NAME",   "READY", "PHASE",
                                            "VERSION",   "LABELS", "REASON"};
#define N_SUMMARY (sizeof summary_heads / sizeof summary_heads[0])

static void summary_row(struct ctl_table *t, const json_t *w)
{
	const json_t *st = json_object_get(w, "status");
	ctl_table_add_json(t, json_object_get(w, "namespace"));
	ctl_table_add_json(t, json_object_get(w, "name"));
	if (json_is_object(st))
		ctl_table_add(t, "%lld/%lld",
		              (long long)json_integer_value(json_object_get(st, "running")),
		              (long long)json_integer_value(json_object_get(st, "desired")));
	else
		ctl_table_add(t, "-");
	ctl_table_add_json(t, json_object_get(st, "phase"));
	ctl_table_add_json(t, json_object_get(w, "version"));
	ctl_table_add_labels(t, json_object_get(w, "labels"));
	ctl_table_add_json(t, json_object_get(st, "reason"));
}

void ctl_render_workload_list(const json_t *list, struct buf *out)
{
	ctl_render_rows(summary_heads, N_SUMMARY, json_object_get(list, "items"), summary_row, out);
}

void ctl_render_replicas(const json_t *replicas, bool of_workload, struct buf *out)
{
	static const char *const wl_heads[] = {"REPLICA",   "AGENT",         "EPOCH",
	                                       "DESIRED",   "STATE",         "RESTARTS",
	                                       "EXIT CODE", "PENDING REASON"};
	static const char *const agent_heads[] = {"REPLICA", "EPOCH",    "DESIRED",
	                                          "STATE",   "RESTARTS", "EXIT CODE"};
	struct ctl_table t;
	size_t i;
	json_t *r;
	if (json_array_size(replicas) == 0) {
		buf_puts(out, of_workload ? "No replicas.\n" : "No replicas assigned.\n");
		return;
	}
	ctl_table_init(&t, of_workload ? wl_heads : agent_heads, of_workload ? 8 : 6);
	json_array_foreach(replicas, i, r)
	{
		ctl_table_add_json(&t, json_object_get(r, "id"));
		if (of_workload)
			ctl_table_add_json(&t, json_object_get(r, "agent"));
		ctl_table_add_json(&t, json_object_get(r, "epoch"));
		ctl_table_add_json(&t, json_object_get(r, "desired"));
		ctl_table_add_json(&t, json_object_get(r, "state"));
		ctl_table_add_json(&t, json_object_get(r, "restarts"));
		ctl_table_add_json(&t, json_object_get(r, "exit_code"));
		if (of_workload)
			ctl_table_add_json(&t, json_object_get(r, "pending_reason"));
	}
	ctl_table_render(&t, out);
	ctl_table_close(&t);
}

void ctl_render_workload(const json_t *workload, struct buf *out)
{
	ctl_render_row(summary_heads, N_SUMMARY, workload, summary_row, out);
	buf_puts(out, "\n");
	ctl_render_replicas(json_object_get(workload, "replica_list"), true, out);
}

/* ---- requests ---------------------------------------------------------------------------- */

struct wl_opts {
	char *file;
	char *ns;
	char *selector;
	bool stale;
	unsigned replicas;
	struct flags_opt_u64 if_version;
	char *idempotency_key;
};

/* "/v1/workloads/NS/NAME", each part escaped (the API says what they may hold). */
static void put_path(struct buf *path, const char *ns, size_t ns_len, const char *name)
{
	buf_puts(path, "/v1/workloads/");
	ctl_put_escaped(path, ns, ns_len);
	buf_puts(path, "/");
	ctl_put_escaped(path, name, strlen(name));
}

/* put_path for the argument NS/NAME; a usage error when it is not two non-empty parts. */
static int workload_path(struct ctl *c, const char *arg, struct buf *path)
{
	const char *slash = strchr(arg, '/');
	if (slash == NULL || slash == arg || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
		return ctl_usage_error(c, "expected NAMESPACE/NAME, got \"%s\"", arg);
	put_path(path, arg, (size_t)(slash - arg), slash + 1);
	return CTL_EXIT_OK;
}

/* Sends a write of workload `key` and prints its answer: the API's JSON, or the line of
 * ctl_render_write with `action` (NULL: "created" on 201, else "updated"). */
static int write_workload(struct ctl *c, const struct wl_opts *o, struct ctl_write *w,
                          const char *key, const char *action)
{
	struct ctl_response resp;
	w->idempotency_key = o->idempotency_key;
	w->if_version = &o->if_version;
	int rc = ctl_send_write(c, w, &resp);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (action == NULL)
		action = resp.status == 201 ? "created" : "updated";
	return ctl_print_write(c, &resp, NULL, key, action);
}

/* The namespace and name of a workload file: its own, or "default" for a missing namespace
 * (as the API defaults it). The checks of what they may hold are the API's. */
static int file_names(const json_t *doc, const char *file, const char **ns, const char **name)
{
	const json_t *n = json_object_get(doc, "namespace"), *m = json_object_get(doc, "name");
	if (!json_is_object(doc))
		return ctl_fail(CTL_EXIT_ERROR, "%s: a workload is a JSON object", file);
	if (n != NULL && !json_is_string(n))
		return ctl_fail(CTL_EXIT_ERROR, "%s: \"namespace\" must be a string", file);
	if (!json_is_string(m))
		return ctl_fail(CTL_EXIT_ERROR, "%s: the workload has no \"name\" (a string)",
		                file);
	*ns = n != NULL ? json_string_value(n) : "default";
	*name = json_string_value(m);
	if ((*ns)[0] == '\0' || (*name)[0] == '\0')
		return ctl_fail(CTL_EXIT_ERROR, "%s: the namespace and name must not be empty",
		                file);
	return CTL_EXIT_OK;
}

static int run_apply(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct wl_opts *o = opts;
	const char *file = strcmp(o->file, "-") == 0 ? "stdin" : o->file, *ns = NULL, *name = NULL;
	struct buf in, path, key;
	json_error_t e;
	(void)args;
	(void)n_args;
	buf_init(&in);
	int rc = ctl_read_input(c, o->file, &in);
	if (rc != CTL_EXIT_OK) {
		buf_close(&in);
		return rc;
	}
	json_t *doc = json_loadb(in.data != NULL ? in.data : "", in.len, 0, &e);
	if (doc == NULL)
		rc = ctl_fail(CTL_EXIT_ERROR, "%s: not JSON: %s (line %d, column %d)", file, e.text,
		              e.line, e.column);
	else
		rc = file_names(doc, file, &ns, &name);
	if (rc == CTL_EXIT_OK) {
		buf_init(&path);
		buf_init(&key);
		buf_printf(&key, "%s/%s", ns, name);
		put_path(&path, ns, strlen(ns), name);
		struct ctl_write w = {.method = "PUT",
		                      .path = path.data,
		                      .body = in.data,
		                      .body_len = in.len,
		                      .json_body = true};
		rc = write_workload(c, o, &w, key.data, NULL);
		buf_close(&key);
		buf_close(&path);
	}
	json_decref(doc);
	buf_close(&in);
	return rc;
}

static int run_list(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct wl_opts *o = opts;
	struct buf path, none;
	(void)args;
	(void)n_args;
	if (o->selector != NULL) {
		const char *eq = strchr(o->selector, '=');
		if (eq == NULL || eq == o->selector)
			return ctl_usage_error(c, "--selector: expected KEY=VALUE, got \"%s\"",
			                       o->selector);
	}
	buf_init(&path);
	buf_printf(&path, "/v1/workloads?timeout=%ums", c->g.timeout_ms);
	if (o->ns != NULL) {
		buf_puts(&path, "&namespace=");
		ctl_put_escaped(&path, o->ns, strlen(o->ns));
	}
	if (o->selector != NULL) {
		buf_puts(&path, "&selector=");
		ctl_put_escaped(&path, o->selector, strlen(o->selector));
	}
	if (o->stale)
		buf_puts(&path, "&stale");
	buf_init(&none);
	buf_puts(&none, "No workloads found");
	if (o->ns != NULL)
		buf_printf(&none, " in namespace %s", o->ns);
	if (o->selector != NULL)
		buf_printf(&none, " with label %s", o->selector);
	buf_puts(&none, ".");
	int rc = ctl_list_show(c, path.data, 0, ctl_render_workload_list, none.data);
	buf_close(&none);
	buf_close(&path);
	return rc;
}

static int run_get(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct wl_opts *o = opts;
	struct ctl_response resp;
	struct buf path;
	(void)n_args;
	buf_init(&path);
	int rc = workload_path(c, args[0], &path);
	if (rc == CTL_EXIT_OK) {
		buf_printf(&path, "?timeout=%ums%s", c->g.timeout_ms, o->stale ? "&stale" : "");
		struct ctl_request req = {
		    .method = "GET", .path = path.data, .retry_unknown = true};
		rc = ctl_send(c, &req, &resp, false);
	}
	buf_close(&path);
	return rc != CTL_EXIT_OK ? rc : ctl_print_answer(c, &resp, ctl_render_workload);
}

static int run_delete(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct buf path;
	(void)n_args;
	buf_init(&path);
	int rc = workload_path(c, args[0], &path);
	struct ctl_write w = {.method = "DELETE", .path = path.data};
	if (rc == CTL_EXIT_OK)
		rc = write_workload(c, opts, &w, args[0], "deleted");
	buf_close(&path);
	return rc;
}

static int run_scale(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct wl_opts *o = opts;
	struct buf path, body, action;
	(void)n_args;
	buf_init(&path);
	buf_init(&body);
	buf_init(&action);
	int rc = workload_path(c, args[0], &path);
	buf_puts(&path, "/scale");
	buf_printf(&body, "{\"replicas\":%u}", o->replicas);
	buf_printf(&action, "scaled to %u replica%s", o->replicas, o->replicas == 1 ? "" : "s");
	struct ctl_write w = {.method = "POST",
	                      .path = path.data,
	                      .body = body.data,
	                      .body_len = body.len,
	                      .json_body = true};
	if (rc == CTL_EXIT_OK)
		rc = write_workload(c, o, &w, args[0], action.data);
	buf_close(&action);
	buf_close(&body);
	buf_close(&path);
	return rc;
}

/* ---- watch ------------------------------------------------------------------------------- */

struct watch {
	const char *key;
	char *last; /* the body printed last; NULL before the first and after a deletion */
	size_t last_len;
	bool printed, gone;
};

/* Prints a 200 answer unless it is the one printed last. */
static int watch_show(struct ctl *c, struct watch *w, const struct ctl_response *resp)
{
	int rc = CTL_EXIT_OK;
	if (w->last != NULL && w->last_len == resp->body_len &&
	    memcmp(w->last, resp->body, resp->body_len) == 0)
		return CTL_EXIT_OK;
	if (c->output == CTL_OUTPUT_JSON) {
		rc = ctl_print(resp->body, resp->body_len, true);
	} else {
		json_t *doc = ctl_parse_answer(resp);
		if (doc == NULL)
			return CTL_EXIT_ERROR;
		if (w->printed)
			rc = ctl_print("", 0, true); /* a blank line between changes */
		if (rc == CTL_EXIT_OK)
			rc = ctl_print_rendered(ctl_render_workload, doc);
		json_decref(doc);
	}
	free(w->last);
	w->last = malloc(resp->body_len + 1);
	if (w->last == NULL)
		return ctl_fail(CTL_EXIT_ERROR, "out of memory");
	memcpy(w->last, resp->body, resp->body_len + 1);
	w->last_len = resp->body_len;
	w->printed = true;
	w->gone = false;
	return rc;
}

/* Prints the deletion once (the 404's problem document with -o json). */
static int watch_gone(struct ctl *c, struct watch *w, const struct ctl_response *resp)
{
	int rc = CTL_EXIT_OK;
	if (w->gone)
		return CTL_EXIT_OK;
	if (c->output == CTL_OUTPUT_JSON) {
		rc = ctl_print(resp->body, resp->body_len, true);
	} else {
		struct buf line;
		buf_init(&line);
		buf_puts(&line, "\n"); /* a change like any other: a blank line apart */
		ctl_put_oneline(&line, w->key, strlen(w->key));
		buf_puts(&line, ": deleted\n");
		rc = ctl_print(line.data, line.len, false);
		buf_close(&line);
	}
	free(w->last);
	w->last = NULL;
	w->gone = true;
	return rc;
}

static int run_watch(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct watch w = {.key = args[0]};
	struct buf base, path;
	uint64_t index = 0;
	(void)opts;
	(void)n_args;
	buf_init(&base);
	buf_init(&path);
	int rc = workload_path(c, args[0], &base);
	if (rc == CTL_EXIT_OK && ctl_client_catch_interrupt(&c->client) != 0)
		rc = ctl_fail(CTL_EXIT_ERROR, "cannot catch SIGINT");
	while (rc == CTL_EXIT_OK) {
		struct ctl_response resp;
		buf_reset(&path);
		buf_printf(&path, "%s?timeout=%ums", base.data, c->g.timeout_ms);
		if (index > 0)
			buf_printf(&path, "&index=%llu&wait=%ums", (unsigned long long)index,
			           CTL_WATCH_WAIT_MS);
		struct ctl_request req = {.method = "GET",
		                          .path = path.data,
		                          .wait_ms = index > 0 ? CTL_WATCH_WAIT_MS : 0,
		                          .retry_unknown = true};
		rc = ctl_send_patient(c, &req, &resp, true);
		if (rc == CTL_EXIT_ERROR && resp.status == 404 && w.printed)
			rc = watch_gone(c, &w, &resp);
		else if (rc == CTL_EXIT_ERROR)
			ctl_report_answer(c, &resp);
		else if (rc == CTL_EXIT_OK)
			rc = watch_show(c, &w, &resp);
		if (rc == CTL_EXIT_OK) {
			const char *h = ctl_response_header(&resp, CLOUDLESS_HDR_INDEX);
			uint64_t next = h != NULL ? strtoull(h, NULL, 10) : 0;
			/* Without an index to wait past the next query would not block. */
			if (next == 0 && !ctl_client_pause(&c->client, 1000))
				rc = CTL_EXIT_INTERRUPTED;
			index = next;
		}
		ctl_response_free(&resp);
	}
	free(w.last);
	buf_close(&path);
	buf_close(&base);
	return rc == CTL_EXIT_INTERRUPTED ? CTL_EXIT_OK : rc;
}

/* ---- verbs ------------------------------------------------------------------------------- */

#define O(f)            offsetof(struct wl_opts, f)
#define IDEMPOTENCY_KEY CTL_OPT_IDEMPOTENCY_KEY(struct wl_opts, idempotency_key)
#define STALE           CTL_OPT_STALE(struct wl_opts, stale)
#define IF_VERSION(what)                                                                        \
	{                                                                                       \
		.flag = "--if-version", .kind = FLAGS_OPT_U64, .off = O(if_version),            \
		.metavar = "N",                                                                 \
		.help =                                                                         \
		    what " only while the workload's version is N (If-Match); otherwise a 412 " \
		         "names the current version."                                           \
	}

static const struct flags_option apply_opts[] = {
    {.flag = "--file",
     .short_name = 'f',
     .kind = FLAGS_STRING,
     .off = O(file),
     .metavar = "FILE",
     .required = true,
     .help = "The workload as JSON (the API's WorkloadSpec, with its namespace and name); "
             "- reads it from stdin."},
    IF_VERSION("Replace it (0: create it only if it does not exist)"),
    IDEMPOTENCY_KEY,
};

static const struct flags_option list_opts[] = {
    {.flag = "--namespace",
     .short_name = 'n',
     .kind = FLAGS_STRING,
     .off = O(ns),
     .metavar = "NAMESPACE",
     .help = "Only the workloads of this namespace (all namespaces without it)."},
    {.flag = "--selector",
     .short_name = 'l',
     .kind = FLAGS_STRING,
     .off = O(selector),
     .metavar = "KEY=VALUE",
     .help = "Only the workloads with this label."},
    STALE,
};

static const struct flags_option get_opts[] = {STALE};

static const struct flags_option delete_opts[] = {IF_VERSION("Delete it"), IDEMPOTENCY_KEY};

static const struct flags_option scale_opts[] = {
    {.flag = "--replicas",
     .kind = FLAGS_UINT,
     .off = O(replicas),
     .metavar = "N",
     .required = true,
     .help = "The number of replicas to run (0 stops them all; the API allows up to 1000)."},
    IF_VERSION("Scale it"),
    IDEMPOTENCY_KEY,
};
#undef O
#undef IDEMPOTENCY_KEY
#undef IF_VERSION
#undef STALE

#define OPTS(t) .opts = t, .n_opts = sizeof t / sizeof t[0], .opts_size = sizeof(struct wl_opts)
static const struct ctl_verb verbs[] = {
    {.name = "apply",
     .args = "-f FILE|-",
     .summary = "Create or update a workload from a JSON file, or stdin.",
     .help = "Creates the workload FILE describes, or replaces it when it exists (PUT\n"
             "/v1/workloads/NAMESPACE/NAME, the names taken from the file; namespace\n"
             "\"default\" when it has none), and prints which of the two it did and the\n"
             "workload's new version. A changed command, env, image, resources, placement\n"
             "or restart policy restarts every replica with the new spec; a changed replica\n"
             "count only adds or removes replicas. With -o json it prints the workload as\n"
             "the API answered (status 201 when it was created).",
     OPTS(apply_opts),
     .run = run_apply},
    {.name = "list",
     .args = "",
     .summary = "List workloads: readiness, phase, version, labels.",
     .help = "Lists the workloads (of one namespace with -n, with a label with -l) in\n"
             "namespace and name order, fetching page after page until the listing is\n"
             "complete: READY is running/desired replicas, REASON why some are not placed.",
     OPTS(list_opts),
     .run = run_list},
    {.name = "get",
     .args = "NAMESPACE/NAME",
     .summary = "Show a workload and its replicas.",
     .help = "Shows the workload's status and each of its replicas: the agent it is placed\n"
             "on, its epoch (the placement), desired and reported state, restarts, exit\n"
             "code, and for one that no agent can take, why. A workload that does not exist\n"
             "is an error (exit status 1).",
     OPTS(get_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_get},
    {.name = "delete",
     .args = "NAMESPACE/NAME",
     .summary = "Delete a workload (its replicas are stopped).",
     .help = "Deletes the workload; the agents stop its replicas. A workload that does not\n"
             "exist is an error (exit status 1).",
     OPTS(delete_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_delete},
    {.name = "scale",
     .args = "NAMESPACE/NAME --replicas N",
     .summary = "Change a workload's replica count.",
     .help = "Sets the number of replicas the workload runs; replicas are added or removed\n"
             "(the highest slots first), the others keep running as they are.",
     OPTS(scale_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_scale},
    {.name = "watch",
     .args = "NAMESPACE/NAME",
     .summary = "Print a workload, then each change to it, until interrupted.",
     .help = "Prints the workload as get does, then again each time it changes (its spec,\n"
             "replica count, or any replica's placement or state), changes a blank line\n"
             "apart; with -o json one API document per line. It waits with blocking\n"
             "queries, so changes show at once and nothing is polled. When the workload is\n"
             "deleted it prints \"NAMESPACE/NAME: deleted\" (with -o json the API's 404\n"
             "problem document) and keeps watching, printing it again should it be created\n"
             "anew (as kubectl get -w does). Elections and restarting members do not end\n"
             "it; --timeout bounds how long no member may answer. Ctrl-C (SIGINT) ends it\n"
             "with exit status 0. A workload that does not exist when the watch starts is\n"
             "an error (exit status 1).",
     .min_args = 1,
     .max_args = 1,
     .run = run_watch},
};
#undef OPTS

const struct ctl_group ctl_group_workload = {
    .name = "workload",
    .summary = "Workloads: what the agents run, and where each replica is.",
    .verbs = verbs,
    .n_verbs = sizeof verbs / sizeof verbs[0],
};
