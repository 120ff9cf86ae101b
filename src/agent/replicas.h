/* replicas: the replicas this agent holds, and their supervision.
 *
 * The table joins the other pieces: the coordinator's answers go through the reconciler
 * (reconcile.h) and its actions are carried out here with the process driver (driver.h);
 * exits go through the restart policy (restart.h); every change is written to the state file
 * (state.h) before anything else can observe it, so an agent killed at any instant finds its
 * processes again. Heartbeats report the table (agent_replicas_report).
 *
 * Confirmation. A replica that this agent run has not yet seen in an answer (every replica
 * loaded from the state file, until the first answer arrives) is run only if its process is
 * still there: a dead one is not restarted before the coordinator confirms it is still ours,
 * since while the agent was down it may have been placed elsewhere. Once confirmed, crashes
 * are restarted by the policy whether or not a coordinator answers.
 *
 * The fence. A replica whose spec sets stop_after_disconnect_s is stopped (as for `desired:
 * stop`) once no heartbeat sent in the last that many seconds was answered, and is not
 * started again (first start, restart, re-adoption) until one is: the next answer that
 * still assigns it starts it again with the same epoch. The clock starts at the send time of
 * the last answered heartbeat (agent_replicas_contact), never later than the moment the
 * coordinator last saw this agent, so the coordinator's own count (from that heartbeat's
 * arrival) can only run behind the agent's; an agent that just started counts from its
 * start. Without the field (the default) replicas keep running through any outage. */
#ifndef CLOUDLESS_AGENT_REPLICAS_H
#define CLOUDLESS_AGENT_REPLICAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agent/driver.h"
#include "agent/phase.h"
#include "agent/wire.h"
#include "metrics/metrics.h"

struct agent_replicas;

struct agent_replicas_options {
	uv_loop_t *loop;
	struct agent_driver *driver;
	struct metrics *metrics; /* cloudless_agent_replica_restarts_total is counted here */
	const char *data_dir;    /* state.json and replicas/<slot>/ */
	const char *agent_id;    /* CLOUDLESS_AGENT_ID */
	char *const *base_env;   /* inherited by every replica ("NAME=value", NULL-ended) */
	/* The state some replica reports changed (it started, exited, stopped): the next
	 * heartbeat has news, and need not wait for its regular time. May be NULL. */
	void (*changed)(void *arg);
	void *changed_arg;
};

int agent_replicas_init(struct agent_replicas **out, const struct agent_replicas_options *o);
/* Loads the state file and re-adopts the processes still there, then adopts the replicas of
 * this agent the file does not account for (orphans.h). -1 (with err) when the file was
 * unreadable: it was moved aside and only the processes found are held; the agent goes on. */
int agent_replicas_load(struct agent_replicas *r, char *err, size_t errlen);
/* A heartbeat sent at contact_ms (monotonic) was answered: the fence counts from there. */
void agent_replicas_contact(struct agent_replicas *r, uint64_t contact_ms);
/* Stops the replicas whose fence has fired (also run every AGENT_FENCE_TICK_MS). */
void agent_replicas_fence(struct agent_replicas *r);
#define AGENT_FENCE_TICK_MS 100

/* Reconciles with a coordinator's answer (heartbeat or assignments); an unchanged one
 * reconciles again with the last answer applied. */
void agent_replicas_apply(struct agent_replicas *r, const struct agent_answer *a);

/* The heartbeat's reports, valid until the next call that changes the table: call
 * agent_replicas_reported once that heartbeat was answered. */
size_t agent_replicas_report(struct agent_replicas *r, const struct agent_report **out);
void agent_replicas_reported(struct agent_replicas *r);

/* Replicas per reported state (the API's six, indexed by enum agent_phase's report name). */
void agent_replicas_count(const struct agent_replicas *r, unsigned by_phase[AGENT_PHASE_COUNT]);
size_t agent_replicas_size(const struct agent_replicas *r);

/* The table as JSON for GET /status: [{id, workload, epoch, state, phase, pid, restarts,
 * exit_code, confirmed}] (owned by the caller). */
json_t *agent_replicas_status(const struct agent_replicas *r);

/* Stops every process (as for `desired: stop`); `done` runs when all have exited. */
void agent_replicas_stop_all(struct agent_replicas *r, void (*done)(void *arg), void *arg);
/* Frees the table. Processes keep running (the driver is closed by its owner). */
void agent_replicas_close(struct agent_replicas *r);

/* For tests and logs: the record of one replica, NULL when not held. */
struct agent_replica_info {
	enum agent_phase phase;
	pid_t pid;
	unsigned restarts;
	bool has_exit_code;
	int exit_code;
	bool confirmed;
};
int agent_replicas_info(const struct agent_replicas *r, const char *id, uint64_t epoch,
                        struct agent_replica_info *out);

#endif
