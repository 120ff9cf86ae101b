/* metrics: agent metric families and the /metrics + /status listener (see metrics.h). */
#include "agent/metrics.h"

#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "http/problem.h"

struct agent_metrics_server {
	struct agent_metrics_options o;
	struct http_server *http;
};

void agent_metrics_define(struct metrics *m)
{
	metrics_define(m, "cloudless_agent_heartbeats_total", METRICS_COUNTER,
	               "Heartbeats a coordinator answered.", NULL, 0);
	metrics_define(m, "cloudless_agent_heartbeat_failures_total", METRICS_COUNTER,
	               "Heartbeat attempts that failed (connect error, deadline, 5xx, leader "
	               "hint); each moves the agent to another coordinator.",
	               NULL, 0);
	metrics_define(m, "cloudless_agent_coordinator_switches_total", METRICS_COUNTER,
	               "Times the coordinator answering the heartbeats changed.", NULL, 0);
	metrics_define(m, "cloudless_agent_replica_restarts_total", METRICS_COUNTER,
	               "Replica processes restarted by their restart policy.", NULL, 0);
	metrics_counter_touch(m, "cloudless_agent_heartbeats_total", NULL);
	metrics_counter_touch(m, "cloudless_agent_heartbeat_failures_total", NULL);
	metrics_counter_touch(m, "cloudless_agent_coordinator_switches_total", NULL);
	metrics_counter_touch(m, "cloudless_agent_replica_restarts_total", NULL);
}

static void handle(struct http_request *req, void *arg)
{
	struct agent_metrics_server *s = arg;
	const char *path = http_request_path(req);
	const char *method = http_request_method(req);
	bool metrics = strcmp(path, "/metrics") == 0, status = strcmp(path, "/status") == 0;
	if (!metrics && !status) {
		http_problem(req, 404, "not-found",
		             "this listener serves only /metrics and /status");
		return;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		http_response_header(req, "Allow", "GET, HEAD");
		http_problem(req, 405, "method-not-allowed", "%s %s: only GET", method, path);
		return;
	}
	if (status) {
		http_respond_json(req, 200, s->o.status(s->o.arg));
		return;
	}
	struct buf out;
	buf_init(&out);
	metrics_render(s->o.metrics, &out);
	s->o.gauges(&out, s->o.arg);
	http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
	buf_close(&out);
}

int agent_metrics_serve(struct agent_metrics_server **out, uv_loop_t *loop,
                        const struct agent_metrics_options *o, char *err, size_t errlen)
{
	struct agent_metrics_server *s = calloc(1, sizeof *s);
	if (s == NULL)
		abort();
	s->o = *o;
	struct http_server_options ho = {
	    .addr = o->addr, .max_body = 4096, .handler = handle, .arg = s};
	if (http_server_init(&s->http, loop, &ho, err, errlen) != 0) {
		free(s);
		return -1;
	}
	*out = s;
	return 0;
}

void agent_metrics_close(struct agent_metrics_server *s)
{
	if (s == NULL)
		return;
	http_server_close(s->http);
	free(s);
}
