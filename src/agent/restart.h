/* restart: a workload's restart policy, decided as a pure function.
 *
 * When a replica's process exits, the agent asks agent_restart_decide what to do: restart it
 * after a delay, leave it `exited` (it finished the way its policy accepts), or give up and
 * report it `failed` so that the coordinator reschedules it (preferring another agent). The
 * policy is the workload's `restart` block: `always` restarts after any exit, `on-failure`
 * only after a non-zero exit or a signal, `never` never; at most `attempts` restarts within
 * any `interval_s` window, the first after `delay_ms` and each further one in the window
 * after twice the previous delay (capped). The history is wall-clock milliseconds so that it
 * survives an agent restart in the state file. */
#ifndef CLOUDLESS_AGENT_RESTART_H
#define CLOUDLESS_AGENT_RESTART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum agent_restart_mode {
	AGENT_RESTART_ALWAYS,
	AGENT_RESTART_ON_FAILURE,
	AGENT_RESTART_NEVER,
};

struct agent_restart_policy {
	enum agent_restart_mode mode;
	unsigned attempts;   /* restarts allowed within interval_s (0..1000) */
	unsigned interval_s; /* the window (1..86400) */
	uint64_t delay_ms;   /* first delay; doubles with each restart in the window */
};

/* The longest delay doubling reaches (unless delay_ms itself is longer): a crash loop then
 * retries at least every five minutes, as Kubernetes' CrashLoopBackOff does. */
#define AGENT_RESTART_MAX_DELAY_MS 300000u

/* The policy's defaults when a field is absent: the workload schema's. */
void agent_restart_policy_default(struct agent_restart_policy *p);
/* "always", "on-failure", "never"; -1 for anything else. */
int agent_restart_mode_parse(const char *name, enum agent_restart_mode *out);
const char *agent_restart_mode_name(enum agent_restart_mode mode);

/* The restarts of one replica: when each happened (wall ms, oldest first, only those that
 * may still fall into a window are kept) and how many there were in all. */
struct agent_restart_history {
	uint64_t *times;
	size_t n, cap;
	unsigned total;
};

void agent_restart_history_init(struct agent_restart_history *h);
void agent_restart_history_close(struct agent_restart_history *h);
/* Records a restart at `at` (for loading the state file: decide() records its own). */
void agent_restart_history_add(struct agent_restart_history *h, uint64_t at);

enum agent_restart_verdict {
	AGENT_RESTART_AFTER_DELAY, /* restart in *delay_ms; the restart is recorded */
	AGENT_RESTART_DONE,        /* exited as the policy accepts: leave it `exited` */
	AGENT_RESTART_FAILED,      /* out of attempts (or `never` after a failure): `failed` */
};

/* `success` is an exit with status 0 (a signal or an unknown status is a failure). */
enum agent_restart_verdict agent_restart_decide(const struct agent_restart_policy *p,
                                                struct agent_restart_history *h, bool success,
                                                uint64_t now_ms, uint64_t *delay_ms);

#endif
