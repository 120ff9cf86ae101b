/* fuzz_command: arbitrary bytes as a raft entry payload.
 *
 * command_decode must reject anything malformed without reading out of bounds; whatever it
 * accepts must re-encode to the same bytes (the format is canonical: one encoding per
 * command, plus at most 7 zero bytes of padding) and must apply cleanly through
 * fsm_apply_entry on a real RocksDB, with the effect the result code claims. The fsm lives for
 * the whole process (one RocksDB in a mkdtemp dir), so entries build on each other the way a
 * log does; indexes only grow. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/command.h"
#include "fsm/fsm.h"
#include "fuzz_common.h"
#include "log/log.h"
#include "util/text.h"

static struct fsm fsm;
static char dir[4096];
static uint64_t next_index = 1;

static void teardown(void)
{
	fsm_close(&fsm);
	fuzz_rmtree(dir);
}

static void setup(void)
{
	char err[256];
	fuzz_log_setup();
	snprintf(dir, sizeof dir, "%s", fuzz_tmpdir("fuzz-command"));
	/* The idempotency window and cap come from each entry (fuzzed like the rest). */
	if (fsm_init(&fsm, dir, err, sizeof err) != 0) {
		fprintf(stderr, "fsm_init: %s\n", err);
		abort();
	}
	atexit(teardown);
}

static void check_roundtrip(const struct command *c, const uint8_t *data, size_t size)
{
	struct buf b;
	buf_init(&b);
	command_encode(c, &b);
	FUZZ_ASSERT(b.len <= size && size - b.len < 8, "encoded %zu bytes from %zu", b.len, size);
	FUZZ_ASSERT(memcmp(b.data, data, b.len) == 0, "re-encoding differs from the input");
	for (size_t i = b.len; i < size; i++)
		FUZZ_ASSERT(data[i] == 0, "non-zero padding byte at %zu", i);
	buf_close(&b);
}

/* The store must now say what the result code claims. */
static void check_effect(const struct command *c, uint64_t index, void *result)
{
	unsigned code = fsm_result_code(result);
	if (fsm_result_replayed(result))
		return;
	if (c->type == COMMAND_DOMAIN) {
		/* Any JSON op: refused (bad, stale, absent) or applied; the mirror and the store
		 * must still agree, which a rebuild from the store checks. */
		FUZZ_ASSERT(code != FSM_SKIPPED, "unexpected result code %u for a domain op", code);
		FUZZ_ASSERT(code != FSM_RESENT_UNKNOWN || (c->idem_internal && c->resent),
		            "unknown outcome for a first attempt of a domain op");
		return;
	}
	struct fsm_kv kv = {0};
	switch (code) {
	case FSM_OK_CREATED:
	case FSM_OK_UPDATED:
		FUZZ_ASSERT(fsm_kv_get(&fsm, c->key.p, c->key.len, &kv) == 0, "put key missing");
		FUZZ_ASSERT(
		    kv.modify_index == index && kv.value_len == c->value.len &&
		        (c->value.len == 0 || memcmp(kv.value, c->value.p, c->value.len) == 0),
		    "stored record differs (modify_index %llu, index %llu)",
		    (unsigned long long)kv.modify_index, (unsigned long long)index);
		FUZZ_ASSERT((code == FSM_OK_CREATED) ==
		                (kv.create_index == index && kv.version == 1),
		            "create/update bookkeeping wrong");
		fsm_kv_free(&kv);
		break;
	case FSM_OK_DELETED:
		FUZZ_ASSERT(fsm_kv_get(&fsm, c->key.p, c->key.len, &kv) == 1,
		            "deleted key present");
		break;
	case FSM_NOT_FOUND:
	case FSM_CAS_MISMATCH:
	case FSM_IDEM_MISMATCH:
	case FSM_MEMBER_OK:
		break;
	case FSM_BAD_COMMAND: /* only a member record that JSON cannot hold */
		FUZZ_ASSERT((c->type == COMMAND_MEMBER_SET || c->type == COMMAND_MEMBER_PUT) &&
		                (!text_valid_utf8(c->node_id.p, c->node_id.len) ||
		                 !text_valid_utf8(c->raft_addr.p, c->raft_addr.len) ||
		                 !text_valid_utf8(c->http_addr.p, c->http_addr.len) ||
		                 !text_valid_utf8(c->incarnation.p, c->incarnation.len)),
		            "bad command %u for a decodable command", c->type);
		break;
	case FSM_RESENT_UNKNOWN:
		FUZZ_ASSERT(c->idem_internal && c->resent, "unknown outcome for a first attempt");
		break;
	case FSM_CONFLICT: /* a second, different cluster id */
		FUZZ_ASSERT(c->type == COMMAND_CLUSTER_SET,
		            "conflict for a command that cannot conflict");
		break;
	default:
		FUZZ_ASSERT(0, "unexpected result code %u for a decodable command", code);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct command c;
	if (fsm.store.db == NULL)
		setup();
	if (command_decode(&c, data, size) != 0)
		return 0;
	check_roundtrip(&c, data, size);
	(void)command_fingerprint(&c);
	uint64_t index = next_index++;
	void *result = fsm_apply_entry(&fsm, index, data, size);
	FUZZ_ASSERT(result != NULL, "apply failed at index %llu", (unsigned long long)index);
	FUZZ_ASSERT(fsm.applied_index == index, "applied index not advanced");
	check_effect(&c, index, result);
	/* An entry at or below the applied index is a replay after restart: skipped. */
	FUZZ_ASSERT(fsm_result_code(fsm_apply_entry(&fsm, index, data, size)) == FSM_SKIPPED,
	            "replayed entry not skipped");
	return 0;
}
