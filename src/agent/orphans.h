/* orphans: finding this agent's replicas without its state file.
 *
 * The state file is how a restarted agent finds its processes. Should it be lost (a data dir
 * wiped by hand, a corrupt file moved aside), the replicas would run on unmanaged, and the
 * agent, told by the coordinator to run the same slots, would start a second copy of each:
 * the one duplicate the design must never allow. But every replica carries its identity in
 * its environment (CLOUDLESS_AGENT_ID, CLOUDLESS_REPLICA_ID, CLOUDLESS_WORKLOAD,
 * CLOUDLESS_EPOCH), leads a session of its own and works in <data-dir>/replicas/...; so at
 * start the agent looks through /proc for such processes and adopts those it has no record
 * of. Processes of other users (unreadable), of another agent id or working elsewhere are
 * never touched. */
#ifndef CLOUDLESS_AGENT_ORPHANS_H
#define CLOUDLESS_AGENT_ORPHANS_H

#include <stdint.h>
#include <sys/types.h>

struct agent_orphan {
	pid_t pid;
	uint64_t start_time;
	char replica_id[256];
	char workload[256];
	uint64_t epoch;
};

/* Calls found() for every live session leader whose environment names agent_id and whose
 * working directory is under replicas_dir. Returns how many it found. */
unsigned agent_orphans_scan(const char *agent_id, const char *replicas_dir,
                            void (*found)(const struct agent_orphan *o, void *arg), void *arg);

#endif
