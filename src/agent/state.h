/* state: the agent's record of its replicas under --data-dir, so that it survives itself.
 *
 * For every replica it holds (slot id, epoch, the spec it runs, its phase), the file keeps the
 * process identity: pid and the kernel's start time of that pid (proc.h). An agent that
 * restarts, even after SIGKILL, loads the file and re-adopts each process that is still the
 * same process (same pid AND same start time, and still the leader of its own process group);
 * a pid that now names another process, or none, means the replica's process is gone.
 *
 * The file is JSON, rewritten whole on every change (they are rare: a start, an exit, a
 * stop) and atomically: written to a temporary file, fsynced, renamed over the old one, and the
 * directory fsynced, so a crash at any instant leaves either the old or the new record. */
#ifndef CLOUDLESS_AGENT_STATE_H
#define CLOUDLESS_AGENT_STATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/phase.h"

struct agent_state_replica {
	char *id;       /* the slot, namespace/name/N */
	char *workload; /* namespace/name */
	uint64_t epoch;
	json_t *spec; /* the ReplicaSpec it runs, as the coordinator sent it */
	enum agent_phase phase;
	pid_t pid;           /* 0 when no process */
	uint64_t start_time; /* of pid (proc.h) */
	bool has_exit_code;
	int exit_code;
	unsigned restarts;       /* in all, with this epoch */
	uint64_t *restart_times; /* wall ms of the recent restarts (restart.h) */
	size_t n_restart_times;
};

struct agent_state {
	char *agent_id;
	struct agent_state_replica *replicas;
	size_t n;
};

#define AGENT_STATE_FILE "state.json"

/* Loads dir/state.json. A missing file is an empty state (0). A file that cannot be parsed
 * is moved aside to state.json.corrupt-<time> and -1 is returned with the reason: the caller
 * logs it and starts empty rather than run replicas it cannot account for twice. */
int agent_state_load(const char *dir, struct agent_state *st, char *err, size_t errlen);
/* Writes dir/state.json atomically (see above). Borrows everything in st. */
int agent_state_save(const char *dir, const struct agent_state *st, char *err, size_t errlen);
/* Frees what agent_state_load allocated. */
void agent_state_close(struct agent_state *st);
/* True when r's process still runs: the same pid with the same start time, alive, and the
 * leader of its own process group (every replica is started in a session of its own). */
bool agent_state_adoptable(const struct agent_state_replica *r);

#endif
