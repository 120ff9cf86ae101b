/* fsm: the replicated state machine, applying raft entries to the RocksDB store.
 *
 * Deterministic by construction: the result of applying an entry depends only on the entry
 * and the state before it (time and the idempotency limits come from the entry, never from
 * this node's clock or flags; the rule and its audit are at the top of fsm.c). A store read
 * that fails during apply stops the fsm like a failed write. Each apply is one WriteBatch
 * holding the change and the applied index ("m/applied"), so on restart we skip exactly the
 * entries already in RocksDB and never double-apply or skip one.
 *
 * Key layout (one namespace byte, then '/'):
 *   m/applied          u64 index of the last entry reflected in the store
 *   m/idem_count       u64 number of live idempotency records
 *   k/<key>            u64 create_index | u64 modify_index | u64 version | value bytes
 *   n/<node_id>        member metadata, JSON {node_id, raft_id, raft_addr, http_addr,
 *                      incarnation (absent in records from before incarnations)}
 *   g/cluster_id       the cluster's id (raft/identity.h), set once
 *   a/, w/, r/         agents, workloads, replicas (fsm/domain.h)
 *   i/<idem key>       u64 ts_ms | u64 index | u8 code | u64 fingerprint [| u64 cur_index]
 *   t/<u64 ts_ms><idem key>  age index used to expire idempotency records
 *   j/<internal key>   a follower's internal key (command.h): a record as under i/, no age
 *                      index (the keys sort by age, see fsm.c)
 *   m/idem_internal_floor  the last internal key pruning removed
 * cur_index (records of version 2 entries) is the key's modify index a failed CAS reported,
 * so a replay answers exactly what the first attempt did.
 *
 * Apply results travel back to the proposer packed into raft's `void *result` (see
 * fsm_result_*), so a follower never allocates a result nobody frees. */
#ifndef CLOUDLESS_FSM_FSM_H
#define CLOUDLESS_FSM_FSM_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

#include "fsm/command.h"
#include "fsm/domain.h"
#include "store/store.h"

enum fsm_code {
	FSM_OK_CREATED = 1,
	FSM_OK_UPDATED,
	FSM_OK_DELETED,
	FSM_NOT_FOUND,
	FSM_CAS_MISMATCH,
	FSM_IDEM_MISMATCH, /* the Idempotency-Key was used before for a different request */
	FSM_MEMBER_OK,
	FSM_BAD_COMMAND,
	FSM_SKIPPED, /* entry already in the store (replay after restart) */
	/* A follower's re-send whose record was pruned: its first attempt may have been applied,
	 * so it is not applied again, and its outcome is unknown (fsm.c, internal records). */
	FSM_RESENT_UNKNOWN,
	FSM_CONFLICT,     /* refused: contradicts the replicated state (another cluster id, a
	                     placement that no longer fits) */
	FSM_OK_UNCHANGED, /* a domain op that found the state already as asked */
};

#define FSM_RESULT_REPLAY 0x100u /* flag: answered from an idempotency record */

static inline void *fsm_result_pack(unsigned code)
{
	return (void *)(uintptr_t)code;
}
static inline unsigned fsm_result_code(void *result)
{
	return (unsigned)((uintptr_t)result & 0xff);
}
static inline bool fsm_result_replayed(void *result)
{
	return ((uintptr_t)result & FSM_RESULT_REPLAY) != 0;
}

struct fsm_kv {
	uint64_t create_index;
	uint64_t modify_index;
	uint64_t version;
	char *value; /* malloc'd, NUL-terminated for convenience */
	size_t value_len;
};

struct fsm_idem {
	uint64_t ts_ms;
	uint64_t index; /* entry that first carried the key */
	unsigned code;
	uint64_t fingerprint;
	bool has_cur_index; /* records of version 2 entries */
	uint64_t cur_index; /* FSM_CAS_MISMATCH: the key's modify index then (0: absent) */
};

struct fsm_member {
	char node_id[COMMAND_MAX_ID + 1];
	uint64_t raft_id;
	char raft_addr[COMMAND_MAX_ADDR + 1];
	char http_addr[COMMAND_MAX_ADDR + 1];
	char incarnation[COMMAND_MAX_INCARNATION + 1]; /* "" when the record predates them */
};

struct fsm_stats {
	uint64_t snapshots_ok, snapshots_failed;
	uint64_t restores_ok, restores_failed;
	uint64_t applies, apply_errors;
	double last_apply_seconds;
};

/* Told of each entry applied, with its index and packed result (the raft layer hands each
 * proposal its own entry's result this way); may be NULL. */
typedef void (*fsm_applied_hook)(void *arg, uint64_t index, void *result);

struct fsm {
	struct raft_fsm iface; /* handed to raft_init; data points back here */
	struct store store;
	struct raft *raft; /* set by the raft layer: the entry index is last_applied + 1 */
	uint64_t applied_index;
	uint64_t idem_count;
	/* No live idempotency record is older than this (UINT64_MAX: none); a lower bound kept
	 * from the store, so apply can skip the age index when nothing can be expired, and seek
	 * past the pruned part of it when something is (fsm.c). */
	uint64_t idem_oldest_ts;
	/* Internal records (j/, fsm.c), derived from the store: how many, the first in key order
	 * and its timestamp, and the last key pruning removed (m/idem_internal_floor). */
	uint64_t internal_count;
	struct buf internal_first;
	uint64_t internal_first_ts;
	struct buf internal_floor;
	uint64_t members_version;    /* bumped whenever n/ changes, so callers can refresh caches */
	struct fsm_domain domain;    /* the domain records, mirrored in memory (domain.h) */
	uint64_t entries_by_type[8]; /* applied entries by command type (metrics) */
	struct fsm_stats stats;
	bool failed; /* a store read or write failed: no more applies (fail stop, see fsm.c) */
	fsm_applied_hook applied_hook;
	void *applied_hook_arg;
	/* The snapshot being taken: a RocksDB snapshot pinned on the loop thread and streamed
	 * on a uv worker thread. */
	struct store_snap snap;
	uint64_t snap_index;
	size_t snap_size; /* bytes of the last image: the next one starts with that much room */
	uint64_t snap_ns; /* how long serialising it took (worker thread), for the log */
	bool snap_active;
};

/* Opens <dir> as the store and reads the applied index. Takes no settings: everything apply
 * decides comes from the entries (see fsm.c). */
int fsm_init(struct fsm *f, const char *dir, char *err, size_t errlen);
void fsm_close(struct fsm *f);

/* Applies one encoded command as entry `index` (exposed for tests; raft calls it through the
 * iface). Returns the packed result, or NULL when the fsm failed (a store read or write
 * failed, now or before: fail stop; the entry was not applied). */
void *fsm_apply_entry(struct fsm *f, uint64_t index, const void *data, size_t len);
/* Writes the WAL records of the applies since the last call to the file (see store_write):
 * called once per loop iteration, so a burst of applies costs one write(). A failure is
 * handled like a failed apply: fail stop. */
void fsm_flush(struct fsm *f);

/* Reads. 0 found, 1 absent, -1 error (a malformed record too). */
int fsm_kv_get(struct fsm *f, const char *key, size_t klen, struct fsm_kv *out);
void fsm_kv_free(struct fsm_kv *kv);
/* internal: key is a follower's internal key (its own namespace, see above). */
int fsm_idem_get(struct fsm *f, const char *key, size_t klen, bool internal, struct fsm_idem *out);
int fsm_member_get(struct fsm *f, const char *node_id, struct fsm_member *out);
/* The replicated cluster id into out (size > COMMAND_MAX_INCARNATION): 0, 1 when none is
 * recorded yet, -1 on a read error. */
int fsm_cluster_id(struct fsm *f, char *out, size_t size);
/* Calls fn for every member in node_id order; stops early when fn returns non-zero. */
void fsm_members_each(struct fsm *f, int (*fn)(const struct fsm_member *m, void *arg), void *arg);
/* Digests of the replicated state, excluding what m/ says the rest implies (applied index,
 * counts), so nodes at the same index compare equal:
 *   state  every record: kv, members, cluster id, idempotency records, domain;
 *   data   the same without the cluster's own member records and id (n/, g/): what a backup
 *          carries into the cluster restored from it (raft/offline.c gives that one new
 *          members and a new id), so a restored cluster's data digest equals its backup's.
 * fsm_digest_add takes every record in key order (it skips m/ itself). */
struct fsm_digest {
	uint64_t state, data;
	uint64_t state_keys, data_keys; /* records each covers */
};
void fsm_digest_init(struct fsm_digest *d);
void fsm_digest_add(struct fsm_digest *d, const char *k, size_t kl, const char *v, size_t vl);
/* Both digests of the live store (walks all of it). */
void fsm_digests(struct fsm *f, struct fsm_digest *out);
/* The state digest alone, and how many records it covers (n_keys may be NULL). */
uint64_t fsm_digest(struct fsm *f, uint64_t *n_keys);

/* Makes the store the first state of a new cluster (a restore, raft/offline.c): every member
 * record is deleted and the cluster id becomes `cluster_id`, in one synced batch. The applied
 * index and everything else stay, so the data digest does not change. -1 with a reason. */
int fsm_reset_cluster(struct fsm *f, const char *cluster_id, char *err, size_t errlen);

/* Snapshot image codec (snapshot.c): writes every key of `snap` after a header carrying the
 * index, and with `digest` (may be NULL) computes the digests of exactly what it wrote; safe
 * on any thread (RocksDB reads of a pinned snapshot). check validates an untrusted image
 * completely (header, checksum, every record) and gives its index and record count; restore
 * checks it the same way before anything is changed. */
int fsm_snapshot_write(const struct store_snap *snap, uint64_t index, struct buf *out,
                       struct fsm_digest *digest);
int fsm_snapshot_check(const void *data, size_t len, uint64_t *index, uint64_t *count, char *err,
                       size_t errlen);
int fsm_snapshot_restore(struct fsm *f, const void *data, size_t len, char *err, size_t errlen);
/* The checksum a version 2 image ends with, over every byte before it (snapshot.c). */
uint64_t fsm_snapshot_sum(const void *data, size_t len);

#endif
