/* domain: the replicated workload domain (agents, workloads, replicas) inside the fsm.
 *
 * Records are JSON documents in the store, changed only by COMMAND_DOMAIN entries:
 *   a/<agent id>                 agent
 *   w/<namespace>/<name>         workload (its spec, version, spec_version)
 *   r/<namespace>/<name>/<NNNN>  replica of slot N (zero-padded so a workload's replicas list
 *                                in slot order); its id is "<namespace>/<name>/<N>"
 * An entry's payload is a JSON object {"op": ..., ...} (domain_ops.md-style list below). Apply
 * decides from the entry and the records only, so every node reaches the same records; a
 * command that no longer fits the state (a placement on an agent that went offline, a report
 * for an old epoch) is refused deterministically and changes nothing, which is how the
 * leader's optimistic scheduler stays correct (as Nomad's plan applier).
 *
 * Ops (the leader's api/ and scheduler/ layers build them, see domain/):
 *   agent.enroll   {agent: {...}}                 create, update, or nothing when equal
 *   agent.state    {id, state: ready|offline}     a liveness transition
 *   agent.flags    {id, cordon?, drain?}          cordon / uncordon / drain
 *   agent.drained  {id}                           the drain completed
 *   agent.delete   {id}                           its replicas become unplaced
 *   workload.put   {workload: {...}, if_version?, create?}
 *   workload.delete {key, if_version?}            its replicas are told to stop
 *   workload.scale {key, replicas, if_version?}
 *   replica.place  {id, epoch, agent}             (re)place a slot; epoch = the one it expects
 *   replica.pending {id, epoch, reason}           nothing fits: record why
 *   replica.report {reports: [{agent, id, epoch, state, exit_code, restarts}]}
 *   replica.forget {id, epoch}                    drop a stop record nobody can confirm
 *   replica.stop   {id, epoch}                    desired stop on its agent, kept there
 * A placement's epoch is the index of the entry that decided it.
 *
 * Besides the store, the fsm keeps every record parsed in memory (this mirror), rebuilt from
 * the store at start and after a snapshot install and updated by apply: O(1) lookups for
 * heartbeats and placement, per-agent assignment lists and allocated resources. */
#ifndef CLOUDLESS_FSM_DOMAIN_H
#define CLOUDLESS_FSM_DOMAIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/hmap.h"

struct fsm;
struct store_batch;

enum dom_rstate {
	DOM_R_PENDING,
	DOM_R_STARTING,
	DOM_R_RUNNING,
	DOM_R_EXITED,
	DOM_R_FAILED,
	DOM_R_STOPPED,
	DOM_R_NSTATES
};

struct dom_replica;

struct dom_agent {
	char *id;
	json_t *doc;                 /* the record as stored (owned) */
	const char *zone;            /* into doc */
	uint64_t cpu, mem;           /* capacity */
	uint64_t used_cpu, used_mem; /* resources of the replicas assigned here to run */
	bool ready, cordoned, draining, drain_complete;
	uint64_t version;
	uint64_t assign_index; /* index of the last change to its assignments */
	/* assign_index was set by an apply of this process, not rebuilt from the store (where a
	 * deleted replica's change leaves no record: a rebuilt index may be older). */
	bool assign_exact;
	struct dom_replica *replicas; /* assigned here (desired run or stop), a list */
	unsigned n_replicas;
};

struct dom_workload {
	char *key; /* "<namespace>/<name>" */
	json_t *doc;
	unsigned replicas;
	uint64_t cpu, mem; /* per replica */
	uint64_t version, spec_version;
	uint64_t index; /* last change to it or to one of its replicas (blocking queries) */
};

struct dom_replica {
	char *id;       /* "<ns>/<name>/<N>" */
	char *workload; /* "<ns>/<name>" */
	unsigned slot;
	json_t *doc;
	const char *agent; /* into doc; "" when unplaced */
	uint64_t epoch, version, spec_version;
	uint64_t cpu, mem; /* the requests it was placed with */
	bool run;          /* desired run (else stop) */
	enum dom_rstate state;
	struct dom_agent *on; /* the agent it is assigned to, when it exists */
	struct dom_replica *anext, *aprev;
};

/* What an apply touched, for the layers above (blocking queries, the scheduler). */
enum dom_event {
	DOM_EV_AGENT,      /* key: agent id (created, changed, deleted) */
	DOM_EV_WORKLOAD,   /* key: workload key (created, changed, deleted) */
	DOM_EV_REPLICA,    /* key: replica id; also reported for its workload and agents */
	DOM_EV_ASSIGNMENT, /* key: agent id whose assignment list changed */
};
typedef void (*dom_hook)(void *arg, enum dom_event ev, const char *key, uint64_t index);

struct dom_stats {
	uint64_t entries; /* domain entries applied */
	uint64_t refused; /* of them, refused as stale (FSM_CONFLICT) */
	uint64_t by_op[16];
};

struct fsm_domain {
	struct hmap agents, workloads, replicas;
	uint64_t index; /* last domain change */
	unsigned n_ready, n_offline;
	unsigned n_by_state[DOM_R_NSTATES];
	struct dom_stats stats;
	dom_hook hook;
	void *hook_arg;
};

/* The op names, in dom_stats.by_op order. */
extern const char *const dom_op_names[];
unsigned dom_n_ops(void);

void dom_init(struct fsm_domain *d);
void dom_close(struct fsm_domain *d);
/* Drops the mirror and reads every record from the store again. -1 on a store error. */
int dom_rebuild(struct fsm *f);
/* False when a store record under a domain prefix is not what dom_rebuild can load (a JSON
 * object): a snapshot image is checked with this before it replaces anything. */
bool dom_record_valid(const void *key, size_t klen, const void *value, size_t vlen);
/* Applies one domain payload (JSON text) as entry `index` at leader time `ts_ms`; puts its
 * changes into the batch and the mirror. Returns an FSM_* code. A store read error sets
 * *read_error (the caller stops the node). */
unsigned dom_apply(struct fsm *f, struct store_batch *b, uint64_t index, uint64_t ts_ms,
                   const char *payload, size_t len, bool *read_error);

/* Lookups (loop thread). */
struct dom_agent *dom_agent_get(struct fsm_domain *d, const char *id);
struct dom_workload *dom_workload_get(struct fsm_domain *d, const char *key);
struct dom_replica *dom_replica_get(struct fsm_domain *d, const char *id);
/* The replica of a workload's slot, or NULL. */
struct dom_replica *dom_slot_get(struct fsm_domain *d, const char *workload, unsigned slot);
/* Writes the id of a workload's slot ("<workload>/<slot>") to out, as snprintf would
 * (truncated to cap - 1 bytes). Without printf's machinery: the scheduler builds one for
 * every slot of every workload it plans, and snprintf was a twentieth of a busy leader. */
void dom_slot_id(char *out, size_t cap, const char *workload, unsigned slot);

const char *dom_rstate_name(enum dom_rstate s);
int dom_rstate_parse(const char *s); /* -1 when unknown */

/* Store keys. */
void dom_agent_key(char *out, size_t size, const char *id);
void dom_workload_key(char *out, size_t size, const char *wkey);
/* Prefix of a workload's replica keys ("r/<ns>/<name>/"). */
void dom_replica_prefix(char *out, size_t size, const char *wkey);

#endif
