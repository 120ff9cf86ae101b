/* identity: what a data dir says about whose data it holds (<data-dir>/identity.json).
 *
 * Raft's safety assumes a voter never forgets an entry it acknowledged. A disk replaced, or a
 * `rm -rf` of the data dir, breaks that silently: the node comes back empty under the same id
 * and address, and the rest of the cluster cannot tell it from the member it was. So every
 * data dir carries, from the moment it is first initialised and before raft ever starts:
 *
 *   node_id      the --node-id it belongs to (a restart under another id is refused);
 *   incarnation  128 random bits, new for every new data dir: the same node id with another
 *                incarnation is a member that lost its data, and the leader replaces it (it
 *                must catch up as a non-voter before it votes again, see membership.c);
 *   cluster_id   the cluster this data dir belongs to ("" until it bootstrapped or joined
 *                one); a join into a cluster with another id is refused;
 *   bootstrapped this data dir created its cluster (plain --bootstrap, or as one of the
 *                --bootstrap-expect founders, who are listed with their incarnations);
 *   removed      the cluster removed this node: it stays out (server.c's removed mode) until
 *                the operator wipes the data dir.
 *
 * The file is replaced atomically (write, fsync, rename, fsync the directory), so a crash
 * leaves either the old or the new version, never a torn one. */
#ifndef CLOUDLESS_RAFT_IDENTITY_H
#define CLOUDLESS_RAFT_IDENTITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "fsm/command.h"

#define IDENTITY_HEX_LEN      32 /* incarnation and cluster ids: 128 bits as lower-case hex */
#define IDENTITY_MAX_FOUNDERS 16

struct identity_founder {
	char node_id[COMMAND_MAX_ID + 1];
	char raft_addr[COMMAND_MAX_ADDR + 1];
	char http_addr[COMMAND_MAX_ADDR + 1];
	char incarnation[IDENTITY_HEX_LEN + 1];
};

struct identity {
	char node_id[COMMAND_MAX_ID + 1];
	char raft_addr[COMMAND_MAX_ADDR + 1]; /* the --raft-addr it last ran with */
	char incarnation[IDENTITY_HEX_LEN + 1];
	char cluster_id[IDENTITY_HEX_LEN + 1]; /* "" = not known yet */
	bool bootstrapped;
	bool removed;
	struct identity_founder founders[IDENTITY_MAX_FOUNDERS];
	unsigned n_founders;
};

/* Reads <dir>/identity.json into *id. 0 when it was there, 1 when there is none (*id is then
 * a fresh identity for node_id with a new random incarnation, not yet saved), -1 with a
 * reason in err when it is unreadable or belongs to another node id. A file written before
 * incarnations existed gets one now: its data is intact, so it is the same member. */
int identity_load(struct identity *id, const char *dir, const char *node_id, char *err,
                  size_t errlen);
/* Writes it durably (see above). -1 with a reason in err. */
int identity_save(const struct identity *id, const char *dir, char *err, size_t errlen);
/* 128 random bits from the kernel as IDENTITY_HEX_LEN hex digits. -1 if getrandom fails. */
int identity_random_hex(char out[IDENTITY_HEX_LEN + 1]);
/* True for a well-formed incarnation or cluster id. */
bool identity_valid_hex(const char *s);

/* The founders as a JSON array of {node_id, raft_addr, http_addr, incarnation} (new). */
json_t *identity_founders_json(const struct identity *id);

#endif
