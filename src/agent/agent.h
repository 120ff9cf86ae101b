/* agent: process wiring of cloudless-agent: the loop, the pieces, signals and shutdown.
 *
 * One libuv loop runs everything: the coordinator client (forward/ over libcurl), the
 * process driver (pidfd polls and timers), the replica table and the optional metrics
 * listener. SIGTERM and SIGINT end the agent and leave its replicas running (a restarted
 * agent re-adopts them), unless --stop-replicas-on-exit asks it to stop them first. */
#ifndef CLOUDLESS_AGENT_AGENT_H
#define CLOUDLESS_AGENT_AGENT_H

#include "agent/config.h"

/* Runs until a signal ends it. Returns the process exit status. */
int agent_run(const struct agent_config *cfg);

#endif
