/* metrics: the agent's Prometheus families and its optional HTTP listener (--metrics-addr).
 *
 * The listener serves GET /metrics (Prometheus text 0.0.4: the counters of the registry and
 * gauges sampled at scrape time, cloudless_agent_replicas{state} above all) and GET /status
 * (JSON: the agent's id, its coordinator, and each replica with its pid), which is what an
 * operator or a test asks a machine "what do you run?". It is the coordinator's http/ server
 * and metrics/ registry; nothing here is specific to HTTP. */
#ifndef CLOUDLESS_AGENT_METRICS_H
#define CLOUDLESS_AGENT_METRICS_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "metrics/metrics.h"
#include "util/buf.h"

/* Declares the agent's counter families (at 0, so they are exported before any event). */
void agent_metrics_define(struct metrics *m);

struct agent_metrics_server;

struct agent_metrics_options {
	const char *addr; /* host:port */
	struct metrics *metrics;
	void (*gauges)(struct buf *out, void *arg); /* appends gauge families */
	json_t *(*status)(void *arg);               /* the /status document (owned by caller) */
	void *arg;
};

int agent_metrics_serve(struct agent_metrics_server **out, uv_loop_t *loop,
                        const struct agent_metrics_options *o, char *err, size_t errlen);
void agent_metrics_close(struct agent_metrics_server *s);

#endif
