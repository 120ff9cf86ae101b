/* spec: what a replica runs (the API's ReplicaSpec), decoded from the coordinator's answers
 * and from the agent's own state file.
 *
 * The coordinator validated the workload when it was written, but the agent still checks
 * everything it will hand to execve (a command of non-empty strings, environment names
 * without '=') so that a malformed answer is one clear error instead of a crash. */
#ifndef CLOUDLESS_AGENT_SPEC_H
#define CLOUDLESS_AGENT_SPEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/restart.h"

struct agent_spec {
	char **argv; /* the command, NULL-terminated */
	size_t argc;
	char **env; /* "NAME=value", NULL-terminated, in the JSON's key order */
	size_t n_env;
	char *image; /* recorded, not run */
	uint64_t cpu_millicores, memory_bytes;
	struct agent_restart_policy restart;
	uint64_t kill_timeout_ms;
	uint64_t spec_version;
	/* The fence: stop the replica once no coordinator answered a heartbeat for this long
	 * (seconds; 0 = never, the default). */
	uint64_t stop_after_disconnect_s;
};

#define AGENT_SPEC_DEFAULT_KILL_TIMEOUT_MS 5000u

/* Decodes a ReplicaSpec object; fields the schema gives defaults for may be absent. On error
 * -1 with one line naming the field; *out is then empty. */
int agent_spec_decode(json_t *obj, struct agent_spec *out, char *err, size_t errlen);
void agent_spec_close(struct agent_spec *s);

#endif
