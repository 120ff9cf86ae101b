/* phase: where one replica is in the agent's hands.
 *
 * The API knows six replica states (pending, starting, running, exited, failed, stopped);
 * the agent needs two more to do the right thing: a process that is being stopped is still
 * running (and is reported so, since it is), and one whose restart is scheduled is reported
 * `starting`. The state file records the phase by its own name. */
#ifndef CLOUDLESS_AGENT_PHASE_H
#define CLOUDLESS_AGENT_PHASE_H

#include <stdbool.h>

enum agent_phase {
	AGENT_PHASE_PENDING,  /* assigned, not started yet (the slot is busy or unconfirmed) */
	AGENT_PHASE_BACKOFF,  /* exited, restart scheduled by the policy */
	AGENT_PHASE_RUNNING,  /* its process runs */
	AGENT_PHASE_STOPPING, /* its process runs and is being stopped */
	AGENT_PHASE_EXITED,   /* exited the way its policy accepts; not restarted */
	AGENT_PHASE_FAILED,   /* out of restart attempts */
	AGENT_PHASE_STOPPED,  /* stopped by the agent */
};

#define AGENT_PHASE_COUNT 7

/* The phase's own name (state file, logs): pending, backoff, running, stopping, ... */
const char *agent_phase_name(enum agent_phase p);
int agent_phase_parse(const char *name, enum agent_phase *out);
/* The API state reported in heartbeats (ReplicaReport.state). */
const char *agent_phase_report(enum agent_phase p);
/* True while a process of the replica may exist. */
bool agent_phase_has_process(enum agent_phase p);
/* True for the phases nothing follows unless the coordinator asks (exited, failed, stopped). */
bool agent_phase_final(enum agent_phase p);

#endif
