/* command: the binary encoding of a raft entry's payload.
 *
 * Every change to replicated state is exactly one command in one raft entry. The encoding is
 * versioned, length-prefixed and big-endian; the decoder accepts any bytes (entries come off
 * disk and the network) and rejects anything malformed without reading out of bounds.
 *
 *   u8 version (2, or 1 for entries written before it) | u8 type | fields by type:
 *   KV_PUT     kv header | str value
 *   KV_DELETE  kv header
 *   MEMBER_SET str node_id | u64 raft_id | str raft_addr | str http_addr
 *   MEMBER_DEL str node_id
 *   MEMBER_PUT str node_id | u64 raft_id | str raft_addr | str http_addr | str incarnation
 *   CLUSTER_SET str cluster_id
 *   DOMAIN     (version 2 only) u64 ts_ms | u32 idem_ttl_s | u32 idem_max | str idem_key |
 *              u8 flags | str payload     flags: bit 1 idem_internal, bit 2 resent; the
 *              payload is a JSON op (fsm/domain.h)
 *   kv header, version 2:
 *              u64 ts_ms | u32 idem_ttl_s | u32 idem_max | str idem_key | u8 flags | u64 cas |
 *              str key            flags: bit 0 has_cas, bit 1 idem_internal, bit 2 resent
 *                                 (only with idem_internal); no other bits
 *   kv header, version 1:
 *              u64 ts_ms | str idem_key | u8 has_cas (0 or 1) | u64 cas | str key
 *   str = u32 length | bytes
 *   then zero padding to a multiple of 8 bytes
 *
 * ts_ms is the proposing leader's wall clock, and idem_ttl_s / idem_max are the leader's
 * --idempotency-ttl and --idempotency-max when it proposed the entry: everything the fsm
 * decides about idempotency records (replay or apply anew, which records to prune) comes
 * from the entry, never from the applying node's own clock or flags, so every replica decides
 * the same. A version 1 entry carries neither limit; it is applied with the fixed defaults
 * COMMAND_V1_IDEM_TTL_S and COMMAND_V1_IDEM_MAX (the flags' defaults when version 1 was
 * current), whatever the applying node's flags say.
 *
 * An idempotency key is 1..COMMAND_MAX_IDEM visible ASCII bytes (0x21-0x7e). idem_internal
 * marks a key a follower made up for its own retries of a forwarded write (api/proxy.c); the
 * fsm keeps those records apart from clients' keys, so the two can never collide. resent
 * says an earlier attempt with that key may have been applied (the follower did not learn
 * its outcome): if its record is gone, the fsm must not take it for a first attempt.
 *
 * MEMBER_SET is what nodes before incarnations wrote (still decoded and applied, never
 * encoded any more); MEMBER_PUT carries the data dir's incarnation as well (raft/identity.h).
 * CLUSTER_SET records the cluster id once; a different one later is refused by the fsm.
 *
 * The encoding is canonical: a decoded command re-encodes to the same bytes (its version
 * included), so command_encode writes c->version (0 means COMMAND_VERSION). */
#ifndef CLOUDLESS_FSM_COMMAND_H
#define CLOUDLESS_FSM_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define COMMAND_VERSION 2
/* The idempotency limits a version 1 entry is applied with (see above). */
#define COMMAND_V1_IDEM_TTL_S 86400u
#define COMMAND_V1_IDEM_MAX   100000u
#define COMMAND_MAX_KEY       1024
#define COMMAND_MAX_IDEM      256
#define COMMAND_MAX_ID        64
#define COMMAND_MAX_ADDR      256

enum command_type {
	COMMAND_KV_PUT = 1,
	COMMAND_KV_DELETE = 2,
	COMMAND_MEMBER_SET = 3,
	COMMAND_MEMBER_DEL = 4,
	COMMAND_MEMBER_PUT = 5,
	COMMAND_CLUSTER_SET = 6,
	COMMAND_DOMAIN = 7,
};

#define COMMAND_MAX_INCARNATION 64
/* A domain op's JSON payload: far more than any op the API builds needs. */
#define COMMAND_MAX_PAYLOAD (4u << 20)

/* A byte string pointing into someone else's memory (the entry, or the caller's buffers). */
struct command_str {
	const char *p;
	size_t len;
};

struct command {
	uint8_t version; /* 0 = COMMAND_VERSION when encoding; what the entry said when decoded */
	enum command_type type;
	uint64_t ts_ms;
	uint32_t idem_ttl_s; /* the leader's limits (version 1: the fixed defaults) */
	uint32_t idem_max;
	struct command_str idem_key; /* empty = none */
	bool idem_internal;          /* idem_key is a follower's internal key (version 2 only) */
	bool resent; /* internal key only: an earlier attempt's outcome is unknown to the sender */
	bool has_cas;
	uint64_t cas;
	struct command_str key;
	struct command_str value; /* KV_PUT: the value; DOMAIN: the JSON op */
	/* members */
	struct command_str node_id;
	uint64_t raft_id;
	struct command_str raft_addr;
	struct command_str http_addr;
	struct command_str incarnation; /* MEMBER_PUT; may be empty */
	struct command_str cluster_id;  /* CLUSTER_SET */
};

void command_encode(const struct command *c, struct buf *out);
/* 0 on success (fields point into data), -1 when malformed. */
int command_decode(struct command *c, const void *data, size_t len);
/* A hash of everything that makes two requests "the same" for idempotency (all fields but
 * the timestamp, the limits, the resent flag and the key of the idempotency record). */
uint64_t command_fingerprint(const struct command *c);
/* FNV-1a 64, used for fingerprints, raft ids and state digests. */
uint64_t command_hash(uint64_t h, const void *data, size_t len);
#define COMMAND_HASH_INIT 0xcbf29ce484222325ULL

#endif
