/* command: the binary encoding of a raft entry's payload.
 *
 * Every change to replicated state is exactly one command in one raft entry. The encoding is
 * versioned, length-prefixed and big-endian; the decoder accepts any bytes (entries come off
 * disk and the network) and rejects anything malformed without reading out of bounds.
 *
 *   u8 version (1) | u8 type | fields by type:
 *   KV_PUT     u64 ts_ms | str idem_key | u8 has_cas | u64 cas | str key | str value
 *   KV_DELETE  u64 ts_ms | str idem_key | u8 has_cas | u64 cas | str key
 *   MEMBER_SET str node_id | u64 raft_id | str raft_addr | str http_addr
 *   MEMBER_DEL str node_id
 *   MEMBER_PUT str node_id | u64 raft_id | str raft_addr | str http_addr | str incarnation
 *   CLUSTER_SET str cluster_id
 *   DOMAIN     u64 ts_ms | str idem_key | str payload (a JSON op, fsm/domain.h)
 *   str = u32 length | bytes
 *   then zero padding to a multiple of 8 bytes
 *
 * ts_ms is the proposing leader's wall clock: it is part of the entry, so expiring
 * idempotency records by age stays deterministic on every replica.
 *
 * MEMBER_SET is what nodes before incarnations wrote (still decoded and applied, never
 * encoded any more); MEMBER_PUT carries the data dir's incarnation as well (raft/identity.h).
 * CLUSTER_SET records the cluster id once; a different one later is refused by the fsm. */
#ifndef CLOUDLESS_FSM_COMMAND_H
#define CLOUDLESS_FSM_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define COMMAND_VERSION  1
#define COMMAND_MAX_KEY  1024
#define COMMAND_MAX_IDEM 256
#define COMMAND_MAX_ID   64
#define COMMAND_MAX_ADDR 256

enum command_type {
	COMMAND_KV_PUT = 1,
	COMMAND_KV_DELETE = 2,
	COMMAND_MEMBER_SET = 3,
	COMMAND_MEMBER_DEL = 4,
	COMMAND_MEMBER_PUT = 5,
	COMMAND_CLUSTER_SET = 6,
	COMMAND_DOMAIN = 7,
};

/* A domain op's JSON payload: far more than any op the API builds needs. */
#define COMMAND_MAX_PAYLOAD (4u << 20)

#define COMMAND_MAX_INCARNATION 64

/* A byte string pointing into someone else's memory (the entry, or the caller's buffers). */
struct command_str {
	const char *p;
	size_t len;
};

struct command {
	enum command_type type;
	uint64_t ts_ms;
	struct command_str idem_key; /* empty = none */
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
 * the timestamp and the key of the idempotency record itself). */
uint64_t command_fingerprint(const struct command *c);
/* FNV-1a 64, used for fingerprints, raft ids and state digests. */
uint64_t command_hash(uint64_t h, const void *data, size_t len);
#define COMMAND_HASH_INIT 0xcbf29ce484222325ULL

#endif
