/* fuzz_snapshot: arbitrary bytes as a raft snapshot image handed to fsm_snapshot_restore.
 *
 * Input: one flag byte, then the image. With bit 0 of the flag set the harness rewrites the
 * image's trailing checksum to match (its version's: FNV-1a for v1, fsm_snapshot_sum for
 * v2), so the fuzzer gets past the checksum and reaches the record parser and the store
 * replacement; without it the checksum itself is fuzzed.
 *
 * Properties:
 *   - an error leaves the fsm exactly as it was (digest, applied index, idempotency count);
 *   - success with an index at or below the applied one (start-up skip) changes nothing;
 *   - any other success leaves the store holding exactly the image's records (the last one
 *     wins for a repeated key) plus m/applied = the image's index.
 * After a successful replacement the fsm is put back to its baseline by restoring the baseline
 * image, and that must reproduce the baseline digest: a restore replaces everything. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/command.h"
#include "fsm/fsm.h"
#include "fuzz_common.h"
#include "log/log.h"

#define BASE_INDEX 1000

static struct fsm fsm;
static char dir[4096];
static struct buf base_image;
static uint64_t base_digest, base_keys, base_idem;

static void teardown(void)
{
	buf_close(&base_image);
	fsm_close(&fsm);
	fuzz_rmtree(dir);
}

static void apply(uint64_t index, const struct command *cmd)
{
	struct buf b;
	struct command c = *cmd;
	if (c.type == COMMAND_KV_PUT || c.type == COMMAND_KV_DELETE) {
		c.idem_ttl_s = 3600; /* the limits a leader stamps into every kv entry */
		c.idem_max = 1000;
	}
	buf_init(&b);
	command_encode(&c, &b);
	FUZZ_ASSERT(fsm_apply_entry(&fsm, index, b.data, b.len) != NULL, "seed apply failed");
	buf_close(&b);
}

#define S(lit) ((struct command_str){lit, sizeof(lit) - 1})

/* A small but complete state: keys, a CAS'd update, a delete, idempotency records and
 * members, ending at BASE_INDEX. */
static void seed_state(void)
{
	uint64_t ts = 1700000000000ULL;
	apply(1, &(struct command){.type = COMMAND_MEMBER_SET,
	                           .node_id = S("n1"),
	                           .raft_id = 7,
	                           .raft_addr = S("127.0.0.1:7001"),
	                           .http_addr = S("127.0.0.1:8081")});
	apply(2, &(struct command){
	             .type = COMMAND_KV_PUT, .ts_ms = ts, .key = S("alpha"), .value = S("one")});
	apply(3, &(struct command){.type = COMMAND_KV_PUT,
	                           .ts_ms = ts + 1,
	                           .key = S("beta"),
	                           .value = S(""),
	                           .idem_key = S("req-1")});
	apply(4, &(struct command){.type = COMMAND_KV_PUT,
	                           .ts_ms = ts + 2,
	                           .key = S("alpha"),
	                           .value = S("two"),
	                           .has_cas = true,
	                           .cas = 2});
	apply(5, &(struct command){.type = COMMAND_KV_DELETE,
	                           .ts_ms = ts + 3,
	                           .key = S("beta"),
	                           .idem_key = S("req-2")});
	apply(BASE_INDEX, &(struct command){.type = COMMAND_MEMBER_SET,
	                                    .node_id = S("n2"),
	                                    .raft_id = 9,
	                                    .raft_addr = S("127.0.0.1:7002"),
	                                    .http_addr = S("127.0.0.1:8082")});
}

/* Opens a fresh fsm in a new directory and gives it the baseline state. */
static void open_fsm(void)
{
	char err[256];
	snprintf(dir, sizeof dir, "%s", fuzz_tmpdir("fuzz-snapshot"));
	if (fsm_init(&fsm, dir, err, sizeof err) != 0) {
		fprintf(stderr, "fsm_init: %s\n", err);
		abort();
	}
	seed_state();
}

static void setup(void)
{
	fuzz_log_setup();
	open_fsm();
	atexit(teardown);
	struct store_snap snap;
	store_snap_take(&snap, &fsm.store);
	buf_init(&base_image);
	FUZZ_ASSERT(fsm_snapshot_write(&snap, fsm.applied_index, &base_image, NULL) == 0,
	            "baseline image");
	store_snap_release(&snap);
	base_digest = fsm_digest(&fsm, &base_keys);
	base_idem = fsm.idem_count;
}

/* Every replacement leaves its keys behind as tombstones that later iterations (the digests)
 * must skip; a fresh database now and then keeps the per-input cost flat. */
static void renew_fsm(void)
{
	static unsigned replaced;
	if (++replaced % 16 != 0)
		return;
	fsm_close(&fsm);
	fuzz_rmtree(dir);
	open_fsm();
	uint64_t keys;
	FUZZ_ASSERT(fsm_digest(&fsm, &keys) == base_digest && keys == base_keys,
	            "baseline state not reproducible");
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct rec {
	const uint8_t *k, *v;
	uint32_t kl, vl;
};

/* The records of an image restore accepted (so it is well formed). */
static size_t image_records(const uint8_t *img, size_t len, struct rec **out)
{
	uint64_t count = be64(img + 16);
	size_t off = 24;
	/* Accepted, so every record has at least 9 bytes: count is bounded by the length. */
	struct rec *r = calloc(count ? count : 1, sizeof *r);
	FUZZ_ASSERT(r != NULL, "calloc");
	for (uint64_t i = 0; i < count; i++) {
		r[i].kl = be32(img + off);
		r[i].k = img + off + 4;
		off += 4 + (size_t)r[i].kl;
		r[i].vl = be32(img + off);
		r[i].v = img + off + 4;
		off += 4 + (size_t)r[i].vl;
	}
	FUZZ_ASSERT(off + 8 == len, "accepted image has trailing bytes");
	*out = r;
	return (size_t)count;
}

static void check_replaced(const uint8_t *img, size_t len, uint64_t index)
{
	struct rec *r;
	size_t n = image_records(img, len, &r);
	size_t distinct = 0;
	bool has_applied = false;
	for (size_t i = 0; i < n; i++) {
		bool last = true;
		for (size_t j = i + 1; j < n && last; j++)
			last = !(r[j].kl == r[i].kl && memcmp(r[j].k, r[i].k, r[i].kl) == 0);
		if (!last)
			continue;
		if (r[i].kl == 9 && memcmp(r[i].k, "m/applied", 9) == 0) {
			has_applied = true; /* overwritten by the header's index */
			continue;
		}
		distinct++;
		char *v;
		size_t vl;
		FUZZ_ASSERT(store_get(&fsm.store, r[i].k, r[i].kl, &v, &vl) == 0,
		            "record %zu of the image is missing from the store", i);
		FUZZ_ASSERT(vl == r[i].vl && memcmp(v, r[i].v, vl) == 0,
		            "record %zu has a different value in the store", i);
		free(v);
	}
	(void)has_applied;
	free(r);
	/* Nothing else may have survived. */
	size_t total = 0;
	struct store_iter it;
	store_iter_init(&it, &fsm.store, NULL, "", 0, NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it))
		total++;
	store_iter_close(&it);
	FUZZ_ASSERT(total == distinct + 1, "store holds %zu keys, image %zu (+ m/applied)", total,
	            distinct);
	FUZZ_ASSERT(fsm.applied_index == index, "applied index %llu, image %llu",
	            (unsigned long long)fsm.applied_index, (unsigned long long)index);
}

static void reset_to_baseline(void)
{
	char err[256];
	fsm.applied_index = 0; /* so the baseline image is newer and replaces everything */
	FUZZ_ASSERT(fsm_snapshot_restore(&fsm, base_image.data, base_image.len, err, sizeof err) ==
	                0,
	            "baseline restore: %s", err);
	uint64_t keys;
	uint64_t d = fsm_digest(&fsm, &keys);
	FUZZ_ASSERT(
	    d == base_digest && keys == base_keys && fsm.applied_index == BASE_INDEX &&
	        fsm.idem_count == base_idem,
	    "state after restoring the baseline image differs from the baseline (%llu keys, "
	    "baseline %llu): a restore did not replace everything",
	    (unsigned long long)keys, (unsigned long long)base_keys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256] = "";
	if (base_image.data == NULL)
		setup();
	if (size < 1)
		return 0;
	bool fix = data[0] & 1;
	size_t len = size - 1;
	/* An exact-size copy: ASan catches any read past the image. */
	uint8_t *img = malloc(len ? len : 1);
	memcpy(img, data + 1, len);
	if (fix && len >= 8) {
		/* The sum of the image's version (snapshot.c): v1 images are still read. */
		bool v1 = len >= 8 && memcmp(img, "CLSNAP01", 8) == 0;
		uint64_t h = v1 ? command_hash(COMMAND_HASH_INIT, img, len - 8)
		                : fsm_snapshot_sum(img, len - 8);
		for (int i = 0; i < 8; i++)
			img[len - 8 + i] = (uint8_t)(h >> (56 - 8 * i));
	}

	uint64_t keys0, keys1;
	uint64_t d0 = fsm_digest(&fsm, &keys0);
	uint64_t applied0 = fsm.applied_index, idem0 = fsm.idem_count;
	int rv = fsm_snapshot_restore(&fsm, img, len, err, sizeof err);
	if (rv != 0) {
		FUZZ_ASSERT(err[0] != '\0', "error without a message");
		uint64_t d1 = fsm_digest(&fsm, &keys1);
		FUZZ_ASSERT(d1 == d0 && keys1 == keys0 && fsm.applied_index == applied0 &&
		                fsm.idem_count == idem0,
		            "failed restore (%s) changed the state", err);
	} else {
		uint64_t index = be64(img + 8);
		if (index <= applied0) {
			uint64_t d1 = fsm_digest(&fsm, &keys1);
			FUZZ_ASSERT(d1 == d0 && keys1 == keys0 && fsm.applied_index == applied0,
			            "skipped restore changed the state");
		} else {
			check_replaced(img, len, index);
			reset_to_baseline();
			renew_fsm();
		}
	}
	free(img);
	return 0;
}
