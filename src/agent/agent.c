/* agent: wiring and shutdown of cloudless-agent (see agent.h). */
#include "agent/agent.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/client.h"
#include "agent/driver.h"
#include "agent/metrics.h"
#include "agent/replicas.h"
#include "agent/wire.h"
#include "forward/forward.h"
#include "log/log.h"
#include "metrics/metrics.h"

extern char **environ;

struct agent {
	uv_loop_t loop;
	const struct agent_config *cfg;
	struct metrics *metrics;
	struct fwd *fwd;
	struct agent_driver *driver;
	struct agent_replicas *replicas;
	struct agent_client *client;
	struct agent_metrics_server *http;
	uv_signal_t sigterm, sigint;
	char **base_env;
	char *enrollment;
	bool stopping, finished;
};

/* What every replica inherits from the agent's environment; everything else (the agent's
 * own CLOUDLESS_* settings above all) stays out. */
static const char *const inherited[] = {"PATH", "HOME", "LANG",    "LC_ALL",
                                        "TZ",   "USER", "LOGNAME", "TMPDIR"};

static char **base_env(void)
{
	size_t n = 0;
	char **env = calloc(sizeof inherited / sizeof inherited[0] + 2, sizeof *env);
	if (env == NULL)
		abort();
	for (size_t i = 0; i < sizeof inherited / sizeof inherited[0]; i++) {
		size_t len = strlen(inherited[i]);
		for (char **e = environ; e != NULL && *e != NULL; e++)
			if (strncmp(*e, inherited[i], len) == 0 && (*e)[len] == '=') {
				env[n++] = *e;
				break;
			}
	}
	if (getenv("PATH") == NULL)
		env[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
	return env;
}

/* ---- client callbacks ----------------------------------------------------------------- */

static size_t on_report(void *arg, const struct agent_report **out)
{
	struct agent *a = arg;
	return agent_replicas_report(a->replicas, out);
}

static void on_reported(void *arg)
{
	struct agent *a = arg;
	struct agent_client_status st = {0};
	agent_client_status(a->client, &st);
	agent_replicas_contact(a->replicas, st.contact_ms);
	agent_replicas_reported(a->replicas);
}

/* A replica started, exited or stopped: tell the coordinators now rather than at the next
 * regular heartbeat (0-1 interval later), so a replacement counts as running, and a drain as
 * done, as soon as it is (agent_client_report_soon). */
static void on_replica_changed(void *arg)
{
	struct agent *a = arg;
	if (a->client != NULL)
		agent_client_report_soon(a->client);
}

static void on_assignments(void *arg, const struct agent_answer *ans)
{
	struct agent *a = arg;
	agent_replicas_apply(a->replicas, ans);
}

/* ---- metrics listener ----------------------------------------------------------------- */

static void gauges(struct buf *out, void *arg)
{
	struct agent *a = arg;
	static const char *const states[] = {"pending", "starting", "running",
	                                     "exited",  "failed",   "stopped"};
	unsigned by_phase[AGENT_PHASE_COUNT], by_state[6] = {0};
	agent_replicas_count(a->replicas, by_phase);
	for (unsigned p = 0; p < AGENT_PHASE_COUNT; p++)
		for (size_t s = 0; s < 6; s++)
			if (strcmp(agent_phase_report((enum agent_phase)p), states[s]) == 0)
				by_state[s] += by_phase[p];
	metrics_write_gauge_header(out, "cloudless_agent_replicas",
	                           "Replicas this agent holds, by the state it reports.");
	for (size_t s = 0; s < 6; s++) {
		char labels[32];
		snprintf(labels, sizeof labels, "state=\"%s\"", states[s]);
		metrics_write_sample(out, "cloudless_agent_replicas", labels, by_state[s]);
	}
	struct agent_client_status st = {0};
	if (a->client != NULL)
		agent_client_status(a->client, &st);
	/* No HELP text starts with a value: an unanchored grep for `NAME 1` would match it. */
	metrics_write_gauge(out, "cloudless_agent_enrolled",
	                    "Whether a coordinator accepted this agent's enrollment (1) or not yet "
	                    "(0).",
	                    NULL, st.enrolled);
	metrics_write_gauge(out, "cloudless_agent_connected",
	                    "Whether the last heartbeat was answered (1) or not (0).", NULL,
	                    st.connected);
}

static json_t *status(void *arg)
{
	struct agent *a = arg;
	struct agent_client_status st = {.coordinator = ""};
	if (a->client != NULL)
		agent_client_status(a->client, &st);
	return json_pack("{s:s, s:s, s:b, s:b, s:s, s:i, s:I, s:o}", "id", a->cfg->node_id,
	                 "version", CLOUDLESS_VERSION, "enrolled", st.enrolled, "connected",
	                 st.connected, "coordinator", st.coordinator, "heartbeat_interval_ms",
	                 (int)st.interval_ms, "index", (json_int_t)st.index, "replicas",
	                 agent_replicas_status(a->replicas));
}

/* ---- shutdown ------------------------------------------------------------------------- */

static void finish(struct agent *a)
{
	if (a->finished)
		return;
	a->finished = true;
	agent_client_close(a->client);
	agent_replicas_close(a->replicas);
	agent_driver_close(a->driver, NULL, NULL);
	agent_metrics_close(a->http);
	if (a->fwd != NULL)
		fwd_close(a->fwd, NULL, NULL);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
	log_info("Agent stopped", "id=%s", a->cfg->node_id);
}

static void replicas_stopped(void *arg)
{
	struct agent *a = arg;
	log_info("Every replica stopped", "id=%s", a->cfg->node_id);
	finish(a);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct agent *a = h->data;
	if (a->stopping) {
		log_warn("Second signal: exiting without waiting for the replicas", "signal=%d",
		         signum);
		finish(a);
		return;
	}
	a->stopping = true;
	log_info("Stopping", "id=%s signal=%d replicas=%zu stop_replicas=%s", a->cfg->node_id,
	         signum, agent_replicas_size(a->replicas),
	         a->cfg->stop_replicas_on_exit ? "true" : "false (they keep running)");
	if (a->cfg->stop_replicas_on_exit) {
		/* Heartbeats go on meanwhile, so the coordinators see the replicas stop. */
		agent_replicas_stop_all(a->replicas, replicas_stopped, a);
	} else {
		finish(a);
	}
}

/* ---- start ---------------------------------------------------------------------------- */

static int start(struct agent *a)
{
	const struct agent_config *c = a->cfg;
	char err[512];
	uv_signal_init(&a->loop, &a->sigterm);
	uv_signal_init(&a->loop, &a->sigint);
	a->sigterm.data = a->sigint.data = a;
	if (metrics_init(&a->metrics) != 0 || fwd_init(&a->fwd, &a->loop) != 0 ||
	    fwd_set_user_agent(a->fwd, "cloudless-agent/" CLOUDLESS_VERSION) != 0)
		return -1;
	if (c->ca_file != NULL || c->cert_file != NULL) {
		struct fwd_tls tls = {c->ca_file, c->cert_file, c->key_file};
		if (fwd_set_tls(a->fwd, &tls) != 0)
			return -1;
	}
	agent_metrics_define(a->metrics);
	struct agent_driver_options dopts = {.log_max_bytes = c->replica_log_max_bytes,
	                                     .log_max_files = c->replica_log_max_files};
	if (agent_driver_init(&a->driver, &a->loop, &dopts) != 0)
		return -1;
	a->base_env = base_env();
	struct agent_replicas_options ropts = {.loop = &a->loop,
	                                       .driver = a->driver,
	                                       .metrics = a->metrics,
	                                       .data_dir = c->data_dir,
	                                       .agent_id = c->node_id,
	                                       .base_env = a->base_env,
	                                       .changed = on_replica_changed,
	                                       .changed_arg = a};
	if (agent_replicas_init(&a->replicas, &ropts) != 0)
		return -1;
	if (agent_replicas_load(a->replicas, err, sizeof err) != 0)
		log_error("Agent state file unreadable: starting with no replicas", "error=\"%s\"",
		          err);
	struct agent_enrollment e = {.id = c->node_id,
	                             .name = c->name,
	                             .region = c->region,
	                             .zone = c->zone,
	                             .label_keys = c->label_keys,
	                             .label_values = c->label_values,
	                             .n_labels = c->n_labels,
	                             .cpu_millicores = c->cpu_millicores,
	                             .memory_bytes = c->memory_bytes};
	size_t len;
	a->enrollment = agent_wire_enrollment(&e, &len);
	struct agent_client_options copts = {
	    .loop = &a->loop,
	    .fwd = a->fwd,
	    .metrics = a->metrics,
	    .coordinators = c->coordinators.items,
	    .n_coordinators = c->coordinators.n,
	    .agent_id = c->node_id,
	    .enrollment = a->enrollment,
	    .heartbeat_ms = c->heartbeat_ms,
	    .watch_wait_s = c->assignments_wait_s,
	    .token = c->token,
	    .data_dir = c->data_dir,
	    .cb = {on_report, on_reported, on_assignments, a},
	};
	if (agent_client_init(&a->client, &copts) != 0)
		return -1;
	if (c->metrics_addr != NULL) {
		struct agent_metrics_options mo = {.addr = c->metrics_addr,
		                                   .metrics = a->metrics,
		                                   .gauges = gauges,
		                                   .status = status,
		                                   .arg = a};
		if (agent_metrics_serve(&a->http, &a->loop, &mo, err, sizeof err) != 0) {
			log_error("Metrics listener failed", "addr=%s error=\"%s\"",
			          c->metrics_addr, err);
			return -1;
		}
	}
	uv_signal_start(&a->sigterm, on_signal, SIGTERM);
	uv_signal_start(&a->sigint, on_signal, SIGINT);
	agent_client_start(a->client);
	return 0;
}

int agent_run(const struct agent_config *cfg)
{
	struct agent a = {.cfg = cfg};
	char coords[1024];
	size_t n = 0;
	coords[0] = '\0';
	for (size_t i = 0; i < cfg->coordinators.n && n < sizeof coords - 1; i++)
		n += (size_t)snprintf(coords + n, sizeof coords - n, "%s%s", i ? "," : "",
		                      cfg->coordinators.items[i]);
	uv_loop_init(&a.loop);
	log_info("cloudless-agent starting",
	         "id=%s version=%s data_dir=%s coordinators=%s zone=%s cpu_millicores=%llu "
	         "memory_bytes=%llu",
	         cfg->node_id, CLOUDLESS_VERSION, cfg->data_dir, coords,
	         cfg->zone != NULL ? cfg->zone : "", (unsigned long long)cfg->cpu_millicores,
	         (unsigned long long)cfg->memory_bytes);
	int rc = 0;
	if (start(&a) != 0) {
		log_error("Agent start failed", "id=%s", cfg->node_id);
		rc = 1;
		a.stopping = true;
		finish(&a);
	}
	uv_run(&a.loop, UV_RUN_DEFAULT);
	uv_loop_close(&a.loop);
	metrics_close(a.metrics);
	free(a.base_env);
	free(a.enrollment);
	return rc;
}
