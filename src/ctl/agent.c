/* agent: cloudlessctl's `agent` verbs over /v1/agents: list, get, cordon, uncordon, drain and
 * remove.
 *
 * The agents enroll and heartbeat themselves; an operator reads them and takes them out of
 * service. `cordon` stops new placements (what runs stays), `drain` moves every replica off,
 * `uncordon` ends either, `remove` deletes the record (its replicas are placed elsewhere at
 * once). Cordon, uncordon and drain are idempotent in the API (doing one again changes
 * nothing); like every write they take --idempotency-key (see ctl_send_write).
 *
 * `drain --wait` then reads the agent (GET /v1/agents/ID, which lists what is still assigned
 * to it) at its heartbeat interval until `drain_complete`: the leader sets it once nothing is
 * assigned and the agent's heartbeat reports none of the old processes running, which takes
 * a heartbeat, so reading faster would show nothing new (and GET of one agent is not a
 * blocking query). Each read whose progress differs from the last is printed: a line, or with
 * -o json the agent's document. The wait is bounded only by a --timeout given on the command
 * line (a drain may take as long as the replicas' kill timeouts); an uncordon meanwhile, which
 * ends the drain, or the agent's removal ends it with an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "ctl/output.h"

/* Bounds of the interval at which drain --wait reads the agent (its heartbeat interval). */
#define CTL_DRAIN_POLL_MIN_MS 100u
#define CTL_DRAIN_POLL_MAX_MS 2000u

/* ---- renderers --------------------------------------------------------------------------- */

static const char *const summary_heads[] = {"ID",         "NAME", "REGION", "ZONE",  "STATE",
                                            "SCHEDULING", "CPU",  "MEMORY", "LABELS"};
#define N_SUMMARY (sizeof summary_heads / sizeof summary_heads[0])

/* "512Mi", "1.5Gi": binary units, one decimal where it is not whole. */
static void put_bytes(struct buf *b, long long n)
{
	static const char *const units[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi"};
	size_t u = 0;
	double v = (double)n;
	while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
		v /= 1024;
		u++;
	}
	if (v == (double)(long long)v)
		buf_printf(b, "%lld%s", (long long)v, units[u]);
	else
		buf_printf(b, "%.1f%s", v, units[u]);
}

/* "allocated/capacity" of a resource. */
static void resource_cell(struct ctl_table *t, const json_t *agent, const char *field)
{
	long long used =
	    json_integer_value(json_object_get(json_object_get(agent, "allocated"), field));
	long long cap =
	    json_integer_value(json_object_get(json_object_get(agent, "capacity"), field));
	struct buf cell;
	buf_init(&cell);
	if (strcmp(field, "cpu_millicores") == 0) {
		buf_printf(&cell, "%lldm/%lldm", used, cap);
	} else {
		put_bytes(&cell, used);
		buf_puts(&cell, "/");
		put_bytes(&cell, cap);
	}
	ctl_table_add(t, "%s", cell.data);
	buf_close(&cell);
}

static const char *scheduling(const json_t *agent)
{
	if (json_is_true(json_object_get(agent, "drain_complete")))
		return "drained";
	if (json_is_true(json_object_get(agent, "draining")))
		return "draining";
	if (json_is_true(json_object_get(agent, "cordoned")))
		return "cordoned";
	return "eligible";
}

static void summary_row(struct ctl_table *t, const json_t *a)
{
	ctl_table_add_json(t, json_object_get(a, "id"));
	ctl_table_add_json(t, json_object_get(a, "name"));
	ctl_table_add_json(t, json_object_get(a, "region"));
	ctl_table_add_json(t, json_object_get(a, "zone"));
	ctl_table_add_json(t, json_object_get(a, "state"));
	ctl_table_add(t, "%s", scheduling(a));
	resource_cell(t, a, "cpu_millicores");
	resource_cell(t, a, "memory_bytes");
	ctl_table_add_labels(t, json_object_get(a, "labels"));
}

void ctl_render_agent_list(const json_t *list, struct buf *out)
{
	ctl_render_rows(summary_heads, N_SUMMARY, json_object_get(list, "items"), summary_row, out);
}

void ctl_render_agent(const json_t *agent, struct buf *out)
{
	ctl_render_row(summary_heads, N_SUMMARY, agent, summary_row, out);
	buf_puts(out, "\n");
	ctl_render_replicas(json_object_get(agent, "replicas"), false, out);
}

/* Where a drain stands, for progress lines and the error of a drain --wait that timed out. */
static void drain_state(const json_t *agent, struct buf *out)
{
	size_t n = json_array_size(json_object_get(agent, "replicas"));
	if (json_is_true(json_object_get(agent, "drain_complete")))
		buf_puts(out, "drain complete");
	else if (!json_is_true(json_object_get(agent, "draining")))
		buf_puts(out, "not draining");
	else if (n > 0)
		buf_printf(out, "draining, %zu replica%s still assigned", n, n == 1 ? "" : "s");
	else
		buf_puts(out, "draining, nothing assigned; waiting for the agent to report its "
		              "replicas stopped");
}

void ctl_render_drain_progress(const json_t *agent, struct buf *out)
{
	const char *id = ctl_json_str(agent, "id", "");
	ctl_put_oneline(out, id, strlen(id));
	buf_puts(out, ": ");
	drain_state(agent, out);
	buf_puts(out, "\n");
}

/* ---- requests ---------------------------------------------------------------------------- */

struct agent_opts {
	char *state, *zone;
	bool stale, wait;
	char *idempotency_key;
};

/* "/v1/agents/ID" (escaped); a usage error for an empty ID. */
static int agent_path(struct ctl *c, const char *id, struct buf *path)
{
	if (id[0] == '\0')
		return ctl_usage_error(c, "the agent ID must not be empty");
	buf_puts(path, "/v1/agents/");
	ctl_put_escaped(path, id, strlen(id));
	return CTL_EXIT_OK;
}

static int run_list(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct agent_opts *o = opts;
	struct buf path;
	(void)args;
	(void)n_args;
	buf_init(&path);
	buf_printf(&path, "/v1/agents?timeout=%ums", c->g.timeout_ms);
	if (o->state != NULL)
		buf_printf(&path, "&state=%s", o->state); /* one of the choices */
	if (o->zone != NULL) {
		buf_puts(&path, "&zone=");
		ctl_put_escaped(&path, o->zone, strlen(o->zone));
	}
	if (o->stale)
		buf_puts(&path, "&stale");
	int rc = ctl_list_show(c, path.data, 0, ctl_render_agent_list, "No agents found.");
	buf_close(&path);
	return rc;
}

/* GET of the agent; with `patient` through the failures an election brings. */
static int read_agent(struct ctl *c, const char *id, bool stale, bool patient,
                      struct ctl_response *resp)
{
	struct buf path;
	buf_init(&path);
	int rc = agent_path(c, id, &path);
	if (rc == CTL_EXIT_OK) {
		buf_printf(&path, "?timeout=%ums%s", c->g.timeout_ms, stale ? "&stale" : "");
		struct ctl_request req = {
		    .method = "GET", .path = path.data, .retry_unknown = true};
		rc = patient ? ctl_send_patient(c, &req, resp, false)
		             : ctl_send(c, &req, resp, false);
	}
	buf_close(&path);
	return rc;
}

static int run_get(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct agent_opts *o = opts;
	struct ctl_response resp;
	(void)n_args;
	int rc = read_agent(c, args[0], o->stale, false, &resp);
	return rc != CTL_EXIT_OK ? rc : ctl_print_answer(c, &resp, ctl_render_agent);
}

/* POST /v1/agents/ID/VERB or DELETE /v1/agents/ID; *doc (when not NULL) gets the answer. */
static int write_agent(struct ctl *c, const struct agent_opts *o, const char *method,
                       const char *id, const char *verb, const char *action, json_t **doc)
{
	struct ctl_response resp;
	struct buf path;
	buf_init(&path);
	int rc = agent_path(c, id, &path);
	if (verb != NULL)
		buf_printf(&path, "/%s", verb);
	struct ctl_write w = {
	    .method = method, .path = path.data, .idempotency_key = o->idempotency_key};
	if (rc == CTL_EXIT_OK)
		rc = ctl_send_write(c, &w, &resp);
	buf_close(&path);
	if (rc != CTL_EXIT_OK)
		return rc;
	json_t *answer = ctl_parse_answer(&resp);
	if (answer == NULL) {
		ctl_response_free(&resp);
		return CTL_EXIT_ERROR;
	}
	if (strcmp(action, "draining") == 0 &&
	    json_is_true(json_object_get(answer, "drain_complete")))
		action = "drained";
	rc = ctl_print_write(c, &resp, answer, id, action);
	if (doc != NULL)
		*doc = answer;
	else
		json_decref(answer);
	return rc;
}

static int run_cordon(struct ctl *c, void *opts, char **args, size_t n_args)
{
	(void)n_args;
	return write_agent(c, opts, "POST", args[0], "cordon", "cordoned", NULL);
}

static int run_uncordon(struct ctl *c, void *opts, char **args, size_t n_args)
{
	(void)n_args;
	return write_agent(c, opts, "POST", args[0], "uncordon", "uncordoned", NULL);
}

static int run_remove(struct ctl *c, void *opts, char **args, size_t n_args)
{
	(void)n_args;
	return write_agent(c, opts, "DELETE", args[0], NULL, "removed", NULL);
}

static unsigned poll_interval(const json_t *agent)
{
	json_int_t ms = json_integer_value(json_object_get(agent, "heartbeat_interval_ms"));
	if (ms < CTL_DRAIN_POLL_MIN_MS)
		return CTL_DRAIN_POLL_MIN_MS;
	return ms > CTL_DRAIN_POLL_MAX_MS ? CTL_DRAIN_POLL_MAX_MS : (unsigned)ms;
}

/* drain --wait: reads the agent until its drain completed (see the top). `agent` is the
 * drain's answer (already printed), and is freed. */
static int wait_drained(struct ctl *c, const char *id, json_t *agent)
{
	uint64_t deadline = uv_hrtime() / 1000000u + c->g.timeout_ms;
	struct buf last, line;
	int rc = CTL_EXIT_OK;
	buf_init(&last);
	buf_init(&line);
	ctl_render_drain_progress(agent, &last);
	if (c->output == CTL_OUTPUT_TABLE)
		rc = ctl_print(last.data, last.len, false);
	while (rc == CTL_EXIT_OK && !json_is_true(json_object_get(agent, "drain_complete"))) {
		struct ctl_response resp;
		uint64_t now = uv_hrtime() / 1000000u;
		unsigned pause = poll_interval(agent);
		if (!json_is_true(json_object_get(agent, "draining"))) {
			rc = ctl_fail(CTL_EXIT_ERROR,
			              "%s: no longer draining (uncordoned meanwhile)", id);
			break;
		}
		if (c->timeout_given && now >= deadline) {
			buf_reset(&line);
			drain_state(agent, &line);
			rc = ctl_fail(CTL_EXIT_ERROR,
			              "%s: the drain did not complete within --timeout (%s)", id,
			              line.data);
			break;
		}
		if (c->timeout_given && now + pause > deadline)
			pause = (unsigned)(deadline - now);
		if (!ctl_client_pause(&c->client, pause))
			break;
		if ((rc = read_agent(c, id, false, true, &resp)) != CTL_EXIT_OK)
			break;
		json_t *doc = ctl_parse_answer(&resp);
		if (doc == NULL) {
			ctl_response_free(&resp);
			rc = CTL_EXIT_ERROR;
			break;
		}
		json_decref(agent);
		agent = doc;
		buf_reset(&line);
		ctl_render_drain_progress(agent, &line);
		if (strcmp(line.data, last.data) != 0) {
			rc = c->output == CTL_OUTPUT_JSON
			         ? ctl_print(resp.body, resp.body_len, true)
			         : ctl_print(line.data, line.len, false);
			buf_reset(&last);
			buf_puts(&last, line.data);
		}
		ctl_response_free(&resp);
	}
	buf_close(&line);
	buf_close(&last);
	json_decref(agent);
	return rc;
}

static int run_drain(struct ctl *c, void *opts, char **args, size_t n_args)
{
	struct agent_opts *o = opts;
	json_t *agent = NULL;
	(void)n_args;
	int rc = write_agent(c, o, "POST", args[0], "drain", "draining", o->wait ? &agent : NULL);
	if (rc != CTL_EXIT_OK || !o->wait) {
		json_decref(agent);
		return rc;
	}
	return wait_drained(c, args[0], agent);
}

/* ---- verbs ------------------------------------------------------------------------------- */

static const char *const state_choices[] = {"ready", "offline", NULL};

#define O(f)            offsetof(struct agent_opts, f)
#define STALE           CTL_OPT_STALE(struct agent_opts, stale)
#define IDEMPOTENCY_KEY CTL_OPT_IDEMPOTENCY_KEY(struct agent_opts, idempotency_key)

static const struct flags_option list_opts[] = {
    {.flag = "--state",
     .kind = FLAGS_CHOICE,
     .off = O(state),
     .metavar = "STATE",
     .choices = state_choices,
     .help = "Only agents in this state: ready (heartbeating) or offline."},
    {.flag = "--zone",
     .kind = FLAGS_STRING,
     .off = O(zone),
     .metavar = "ZONE",
     .help = "Only agents in this zone."},
    STALE,
};

static const struct flags_option get_opts[] = {STALE};

static const struct flags_option write_opts[] = {IDEMPOTENCY_KEY};

static const struct flags_option drain_opts[] = {
    {.flag = "--wait",
     .kind = FLAGS_BOOL,
     .off = O(wait),
     .help = "Return only once the drain completed (nothing assigned, and the agent "
             "reported its replicas stopped), printing its progress; bounded by --timeout "
             "only when that is given."},
    IDEMPOTENCY_KEY,
};
#undef O
#undef STALE
#undef IDEMPOTENCY_KEY

#define OPTS(t) .opts = t, .n_opts = sizeof t / sizeof t[0], .opts_size = sizeof(struct agent_opts)
static const struct ctl_verb verbs[] = {
    {.name = "list",
     .args = "",
     .summary = "List agents: zone, state, scheduling, allocated/capacity.",
     .help = "Lists the enrolled agents in ID order: region and zone, state (ready while it\n"
             "heartbeats, offline when it stopped), SCHEDULING (eligible, cordoned, draining\n"
             "or drained), and the CPU and memory its replicas take of its capacity.",
     OPTS(list_opts),
     .run = run_list},
    {.name = "get",
     .args = "ID",
     .summary = "Show an agent and the replicas assigned to it.",
     .help = "Shows the agent as agent list does, then every replica assigned to it: its\n"
             "epoch, desired and reported state, restarts and exit code. An agent that is\n"
             "not enrolled is an error (exit status 1).",
     OPTS(get_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_get},
    {.name = "cordon",
     .args = "ID",
     .summary = "Place no new replicas on an agent (what runs stays).",
     .help = "Marks the agent unschedulable: no new replica is placed on it, those it runs\n"
             "keep running. Cordoning a cordoned agent changes nothing.",
     OPTS(write_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_cordon},
    {.name = "uncordon",
     .args = "ID",
     .summary = "Let an agent take work again (ends a cordon or a drain).",
     .help = "Makes the agent schedulable again, ending a cordon or a drain.",
     OPTS(write_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_uncordon},
    {.name = "drain",
     .args = "ID [--wait]",
     .summary = "Move every replica off an agent; --wait until that is done.",
     .help = "Marks the agent draining: it takes no new work and its replicas are placed\n"
             "elsewhere (new epochs), the agent stopping its copies. The drain is complete\n"
             "once nothing is assigned to it and its heartbeat reports none of them running.\n"
             "With --wait it prints each step until then (with -o json the agent's document\n"
             "at each step); an uncordon meanwhile ends the wait with exit status 1, as does\n"
             "a --timeout given on the command line that passes first.",
     OPTS(drain_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_drain},
    {.name = "remove",
     .args = "ID",
     .summary = "Remove an agent's record (its replicas are placed elsewhere).",
     .help = "Deletes the agent: its replicas are placed elsewhere at once. Should it come\n"
             "back it must enroll again, and it is told to stop what it still runs.",
     OPTS(write_opts),
     .min_args = 1,
     .max_args = 1,
     .run = run_remove},
};
#undef OPTS

const struct ctl_group ctl_group_agent = {
    .name = "agent",
    .summary = "Agents: the worker machines, and taking them out of service.",
    .verbs = verbs,
    .n_verbs = sizeof verbs / sizeof verbs[0],
};
