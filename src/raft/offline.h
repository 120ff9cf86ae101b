/* offline: what is done to a data dir while no coordinator runs on it - seeding a new cluster
 * from a backup image (`cloudless-coordinator restore`) and making a lone survivor the only
 * voter after the rest of its cluster was lost for good (`recover`). coordinator/offline.c
 * is the command line; this file knows the data dir's layout (node.h) and writes raft's files
 * through libraft's own raft_uv I/O, on a private loop, so they are exactly what raft writes
 * and reads itself.
 *
 * Restore. The image (fsm/snapshot.c) is the store at its applied index N, and the fsm skips
 * every entry at or below the applied index it holds, so the new data dir's raft log must
 * start after N: it gets a raft snapshot at index N, term 1, whose configuration is the new
 * node alone as a voter and whose data is the image, and no log entries. Started normally,
 * raft loads that snapshot (the store, restored here already, is not touched again), the node
 * elects itself and its first entries are N+1, N+2, ...; a node that joins receives the same
 * snapshot. A restored cluster is a new cluster: a new cluster id (in identity.json, marked
 * bootstrapped, and in the image's g/cluster_id, so the replicated truth says the same) and a
 * new incarnation, so that nothing of the backed-up cluster - still running, or its old
 * members' data dirs - can be taken for part of it (a join from it is refused
 * `409 other-cluster`). The image's member records are the old cluster's members and are
 * dropped from the image before it is written (its first leader records itself, watch.c);
 * that changes only n/ and g/, so the data digest (fsm.h) stays the backup's.
 *
 * Recover. raft_uv's recover (what raft_recover calls) appends, as the last entry of the
 * existing log, a configuration naming only this node as a voter; every entry the node had
 * (committed or not, snapshot included) stays, and its applied index and the store are not
 * touched. Started normally, the node is the only voter, elects itself, and its leader
 * barrier commits all of it; its first leadership then drops the records of the members the
 * configuration no longer lists (watch.c). The cluster id and incarnation stay: it is the same
 * cluster, continued. 0.15 gives that configuration entry term 1 whatever the terms before
 * it; raft only compares the terms of entries at the same index, and nobody else holds this
 * log's tail, so it does no harm. */
#ifndef CLOUDLESS_RAFT_OFFLINE_H
#define CLOUDLESS_RAFT_OFFLINE_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fsm/fsm.h"
#include "raft/identity.h"

struct offline_restore {
	/* in */
	const void *image;
	size_t image_len;
	const char *data_dir; /* must not exist, or be empty */
	const char *node_id;
	const char *raft_addr;
	/* out */
	uint64_t index;                  /* the image's applied index: the raft snapshot's */
	uint64_t records;                /* in the image as written (members dropped) */
	struct fsm_digest backup_digest; /* of the image as given: its X-Cloudless-*-Digest */
	struct fsm_digest digest;        /* of the image as written: the same data digest */
	char cluster_id[IDENTITY_HEX_LEN + 1];
	char incarnation[IDENTITY_HEX_LEN + 1];
};

/* Checks the image completely first (a corrupt, truncated or foreign file writes nothing),
 * builds the data dir in a temporary directory beside data_dir and renames it into place at
 * the end, so data_dir is either absent/empty as before or complete. -1 with a reason. */
int offline_restore(struct offline_restore *r, char *err, size_t errlen);

struct offline_server {
	raft_id id;
	char node_id[COMMAND_MAX_ID + 1]; /* from the member records; "" when none names it */
	char raft_addr[COMMAND_MAX_ADDR + 1];
	int role; /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE */
};

#define OFFLINE_MAX_SERVERS 64

struct offline_recover {
	/* in */
	const char *data_dir;
	/* out, also on most failures (whatever was read by then) */
	pid_t running_pid; /* refused: this process has the data dir open (0: none) */
	struct identity ident;
	raft_term term;            /* raft's current term */
	raft_index snapshot_index; /* 0: no snapshot */
	raft_index last_index;     /* the last entry kept */
	raft_term last_term;
	uint64_t applied_index; /* what the store reflects */
	struct offline_server old_conf[OFFLINE_MAX_SERVERS];
	unsigned n_old;
	struct offline_server new_conf; /* this node alone, as a voter */
	raft_index conf_index;          /* the new configuration's entry (0: nothing written) */
	bool unchanged;                 /* already the only voter: nothing to do */
};

/* Refuses while a process has the data dir open (RocksDB's LOCK, whose holder's pid is
 * reported), when it is not a coordinator's data dir, when its node was removed, and when its
 * node is not a voter of its last configuration. -1 with a reason. */
int offline_recover(struct offline_recover *r, char *err, size_t errlen);

/* A configuration entry's payload in libraft 0.15's encoding (its configuration.c, format 1),
 * for which it exports an encoder but no decoder: u8 format | u64 n | n x (u64 id | address
 * NUL-terminated | u8 role), little endian, then padding. Servers are added to c (initialised
 * by the caller). -1 when malformed or of another format. Exposed for tests. */
int offline_decode_configuration(const struct raft_buffer *buf, struct raft_configuration *c);

#endif
