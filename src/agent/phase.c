/* phase: names and properties of replica phases (see phase.h). */
#include "agent/phase.h"

#include <string.h>

static const char *const names[AGENT_PHASE_COUNT] = {
    "pending", "backoff", "running", "stopping", "exited", "failed", "stopped",
};

static const char *const reports[AGENT_PHASE_COUNT] = {
    "pending", "starting", "running", "running", "exited", "failed", "stopped",
};

const char *agent_phase_name(enum agent_phase p)
{
	return (unsigned)p < AGENT_PHASE_COUNT ? names[p] : "?";
}

int agent_phase_parse(const char *name, enum agent_phase *out)
{
	for (unsigned i = 0; i < AGENT_PHASE_COUNT; i++)
		if (strcmp(name, names[i]) == 0) {
			*out = (enum agent_phase)i;
			return 0;
		}
	return -1;
}

const char *agent_phase_report(enum agent_phase p)
{
	return (unsigned)p < AGENT_PHASE_COUNT ? reports[p] : "pending";
}

bool agent_phase_has_process(enum agent_phase p)
{
	return p == AGENT_PHASE_RUNNING || p == AGENT_PHASE_STOPPING;
}

bool agent_phase_final(enum agent_phase p)
{
	return p == AGENT_PHASE_EXITED || p == AGENT_PHASE_FAILED || p == AGENT_PHASE_STOPPED;
}
