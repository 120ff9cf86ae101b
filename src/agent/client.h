/* client: the agent's side of the conversation with the coordinators: enrollment, heartbeats
 * that fail over between coordinators, and an optional blocking query for assignments.
 *
 * Failover. Each heartbeat has a deadline of a third of the agent timeout (the coordinator
 * marks an agent offline after three heartbeat intervals, so one interval). A connect error,
 * a passed deadline, a 5xx (503 no leader, 504 forward timeout) or a leader hint in the answer
 * moves the agent to the next coordinator, or to the hinted leader, at once: the heartbeat is
 * sent again there within the same interval. Every answer carries the coordinator list and the
 * leader's address; the list is kept fresh from it (the --coordinators seeds stay in it as the
 * last resort) and the next heartbeat goes to the leader, which saves the forwarding hop. When
 * no coordinator answers a whole round, the agent retries with a capped, jittered backoff (at
 * most one heartbeat interval, so it is back within an interval of the coordinators) and leaves
 * its replicas alone: they keep running.
 *
 * Enrollment happens at start and again whenever a heartbeat is answered 404 (the
 * coordinators do not know this agent: it was removed, or this is a new cluster).
 *
 * Identity (coordinators with --auth-file). An enrollment made with an `enroll` token
 * (--token) is answered with a secret for this agent ("agent~ID.SECRET"); the client keeps it
 * in <data dir>/agent-token (mode 0600, written atomically) and sends it on everything after,
 * enrollments after a restart included. A 401 to it (the agent was removed, which revokes the
 * secret, or this is another cluster) drops it and enrolls again with --token.
 *
 * Between heartbeats an assignments query (GET /v1/agents/{id}/assignments?index=N&wait=...,
 * served from the coordinator's local state) returns as soon as this agent's assignments
 * change, so new work starts without waiting for the next heartbeat. An answer older than one
 * already applied (a lagging follower) is ignored: answers are applied only in index order. */
#ifndef CLOUDLESS_AGENT_CLIENT_H
#define CLOUDLESS_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agent/wire.h"
#include "forward/forward.h"
#include "metrics/metrics.h"

struct agent_client;

struct agent_client_callbacks {
	/* The reports for the next heartbeat (valid until `reported` or the next call). */
	size_t (*report)(void *arg, const struct agent_report **out);
	/* The last heartbeat's reports reached the coordinator. */
	void (*reported)(void *arg);
	/* A newer answer: reconcile with it. */
	void (*assignments)(void *arg, const struct agent_answer *a);
	void *arg;
};

struct agent_client_options {
	uv_loop_t *loop;
	struct fwd *fwd;
	struct metrics *metrics;
	char *const *coordinators; /* --coordinators, host:port */
	size_t n_coordinators;
	const char *agent_id;
	const char *enrollment; /* the AgentEnrollment body */
	unsigned heartbeat_ms;  /* 0: the interval the coordinator gives */
	unsigned watch_wait_s;  /* wait of the assignments query; 0 = no query */
	const char *token;      /* --token (NAME.SECRET, an enroll token) or NULL */
	const char *data_dir;   /* where agent-token is kept; NULL: nowhere (tests) */
	struct agent_client_callbacks cb;
};

int agent_client_init(struct agent_client **out, const struct agent_client_options *o);
void agent_client_start(struct agent_client *c);
/* Something the next heartbeat reports changed: send it soon (AGENT_REPORT_SOON_MS, to gather
 * a burst of changes, and no sooner than AGENT_REPORT_GAP_MS after the previous heartbeat;
 * wire.h) instead of at its regular time; the regular cadence restarts from it. Only while
 * heartbeats are answered: enrolling, or failing over, keeps its own schedule. */
void agent_client_report_soon(struct agent_client *c);
/* Stops sending. The client is freed once its requests are done: close the fwd afterwards
 * to cancel them. */
void agent_client_close(struct agent_client *c);

struct agent_client_status {
	bool enrolled;
	bool connected;          /* the last heartbeat was answered */
	const char *coordinator; /* the one the next request goes to */
	unsigned interval_ms;
	uint64_t index; /* of the last answer applied */
	/* When the last answered heartbeat was sent (mono ms; 0 before the first): the
	 * coordinator saw the agent alive no earlier than this, which is what the fence counts
	 * from (replicas.h). */
	uint64_t contact_ms;
};

void agent_client_status(const struct agent_client *c, struct agent_client_status *out);

#endif
