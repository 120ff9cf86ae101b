/* wire: the coordinator API's documents the agent sends and reads (openapi.yaml:
 * AgentEnrollment, Heartbeat/ReplicaReport, HeartbeatAnswer, the assignments answer, Agent).
 *
 * Decoding is strict about what the agent relies on (ids, epochs, desired, the index) and
 * lenient about the rest, so that a coordinator that adds a field does not break agents. */
#ifndef CLOUDLESS_AGENT_WIRE_H
#define CLOUDLESS_AGENT_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* When a replica's reported state changes, cloudless-agent sends its next heartbeat this soon
 * (gathering the changes of a burst), and no sooner than AGENT_REPORT_GAP_MS after the previous
 * one (agent_client_report_soon); bench/fleet.c's simulated agents do the same. Early
 * heartbeats come from a budget (agent_early_take): AGENT_EARLY_BURST of them at once, then
 * AGENT_EARLY_PER_INTERVAL per interval. An agent that receives new work all the time (a burst
 * of thousands of placements) then beats at most three times per interval, not every
 * AGENT_REPORT_GAP_MS,
 * which multiplied the leader's heartbeat load by ten in such a burst; the two or three
 * pieces of news of a failover (replicas placed in consecutive plan runs) still all go early.
 */
#define AGENT_REPORT_SOON_MS     10
#define AGENT_REPORT_GAP_MS      100
#define AGENT_EARLY_BURST        3
#define AGENT_EARLY_PER_INTERVAL 2 /* the budget's refill */

struct agent_early {
	uint64_t last_ms;   /* the last take (0: never: the budget is full) */
	uint64_t credit_ms; /* one early heartbeat costs interval / AGENT_EARLY_PER_INTERVAL */
};
/* Whether an early heartbeat may go at now_ms (and counts it when it may): each costs
 * interval / AGENT_EARLY_PER_INTERVAL of credit, which time refills up to the burst. */
bool agent_early_take(struct agent_early *e, uint64_t now_ms, unsigned interval_ms);

/* One Replica of an answer. */
struct agent_assignment {
	char *id;
	char *workload;
	uint64_t epoch;
	bool run;     /* desired == "run" */
	json_t *spec; /* ReplicaSpec (a reference), NULL when absent */
};

struct agent_answer {
	struct agent_assignment *items;
	size_t n;
	uint64_t index;
	unsigned heartbeat_interval_ms; /* 0 when absent (the assignments answer) */
	char *leader;                   /* the leader's HTTP address, NULL when unknown */
	char **coordinators;            /* every coordinator's HTTP address */
	size_t n_coordinators;
	/* A heartbeat answer to an agent that named the current index: the assignments are
	 * those it holds (items is empty and means nothing). */
	bool unchanged;
};

/* POST /v1/agents/{id}/heartbeat answer (HeartbeatAnswer). */
int agent_wire_decode_heartbeat(const char *body, size_t len, struct agent_answer *out, char *err,
                                size_t errlen);
/* GET /v1/agents/{id}/assignments answer ({agent, assignments, index}). */
int agent_wire_decode_assignments(const char *body, size_t len, struct agent_answer *out, char *err,
                                  size_t errlen);
void agent_answer_close(struct agent_answer *a);

/* POST /v1/agents answer (Agent): the heartbeat interval it was given. */
int agent_wire_decode_agent(const char *body, size_t len, unsigned *heartbeat_interval_ms,
                            char *err, size_t errlen);

/* leader_http_addr of a problem document, NULL when it names none (malloc'd). */
char *agent_wire_leader_hint(const char *body, size_t len);

struct agent_enrollment {
	const char *id, *name, *region, *zone; /* name, region, zone: NULL or "" to omit */
	char *const *label_keys, *const *label_values;
	size_t n_labels;
	uint64_t cpu_millicores, memory_bytes;
};

/* The request bodies, compact JSON (free() them). */
char *agent_wire_enrollment(const struct agent_enrollment *e, size_t *len);

struct agent_report {
	const char *id;
	uint64_t epoch;
	const char *state; /* ReplicaReport.state */
	bool has_exit_code;
	int exit_code;
	unsigned restarts;
};

/* index: the "index" of the last answer the agent applied (0: none; it then gets the
 * assignments in full). */
char *agent_wire_heartbeat(const struct agent_report *r, size_t n, uint64_t index, size_t *len);

#endif
