/* spec: validating what clients send about workloads and agents, as pure functions.
 *
 * Each decoder takes a request body and returns the canonical JSON document the fsm will
 * store (unknown fields refused, defaults filled in, maps sorted by jansson's encoder), or
 * NULL with one message naming the field: "replicas must be 0-1000", "missing command",
 * "field \"zones\" must be an array of strings", "unknown field \"replica\"". Nothing is
 * changed when they fail, so every 400 leaves the state as it was. */
#ifndef CLOUDLESS_DOMAIN_SPEC_H
#define CLOUDLESS_DOMAIN_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPEC_MAX_REPLICAS 1000
#define SPEC_MAX_COMMAND  256 /* arguments */
#define SPEC_MAX_ARG      4096
#define SPEC_MAX_LABELS   64
#define SPEC_MAX_ENV      256
#define SPEC_MAX_VALUE    4096  /* env values */
#define SPEC_MAX_FENCE_S  86400 /* stop_after_disconnect_s */
/* All of a command's arguments, and all of an env's names and values: what an agent passes to
 * execve, kept far under the kernel's own limit (ARG_MAX, 2 MiB) and a raft entry's size. */
#define SPEC_MAX_COMMAND_BYTES 65536
#define SPEC_MAX_ENV_BYTES     65536

/* DNS label: 1-63 of [a-z0-9-], alphanumeric at both ends. */
bool spec_dns_label(const char *s);
/* Agent ids: 1-64 of [A-Za-z0-9._-] (the coordinator's node id rules). */
bool spec_agent_id(const char *s);

/* A workload spec for `ns`/`name` (the path; the body's own, if any, must match; NULL for
 * POST, where the body names it). */
json_t *spec_workload(const char *body, size_t len, const char *ns, const char *name, char *err,
                      size_t errlen);
/* An enrollment; heartbeat_ms is the interval to record when the body does not ask for one. */
json_t *spec_enrollment(const char *body, size_t len, unsigned heartbeat_ms, char *err,
                        size_t errlen);
/* A heartbeat body: the array of replica reports, and in *index the assignments index the
 * agent holds (the "index" of the answer it last applied; 0 when the body names none). */
json_t *spec_heartbeat(const char *body, size_t len, uint64_t *index, char *err, size_t errlen);
/* {"replicas": N} */
int spec_scale(const char *body, size_t len, unsigned *replicas, char *err, size_t errlen);
/* "k=v" (a ?selector value) into key and value; -1 when malformed. */
int spec_selector(const char *s, char *key, size_t klen, char *value, size_t vlen);

#endif
