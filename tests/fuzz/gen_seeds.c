/* gen_seeds: writes the binary seed corpora of fuzz_command and fuzz_snapshot.
 *
 *   build-fuzz/tests/fuzz/gen_seeds tests/fuzz/corpus
 *
 * Commands are produced by command_encode (one of every type, with and without the optional
 * parts, padded as node_propose pads them, in the current format and as version 1 entries
 * written before it); snapshot images by fsm_snapshot_write from a real
 * fsm after applying some of those commands. The checked-in seeds came from this program;
 * rerun it after a format change. The old-v1-* seeds are what it wrote before command version
 * 2 (entries and images as existing logs and snapshots hold them): keep them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsm/command.h"
#include "fsm/fsm.h"
#include "fuzz_common.h"

static const char *root;

static void write_file(const char *target, const char *name, const void *data, size_t len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", root, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

#define S(lit) ((struct command_str){lit, sizeof(lit) - 1})
#define INTERNAL_CREATE                                                                    \
	.type = COMMAND_KV_PUT, .ts_ms = 1800000000001ULL, .idem_ttl_s = 1, .idem_max = 4, \
	.key = S("lock2"), .value = S("owner-2"), .has_cas = true, .cas = 0,               \
	.idem_key = S("-5cQ9g-AbCdEfGhIjKlMnOp-----01"), .idem_internal = true

static const struct {
	const char *name;
	struct command c;
} commands[] = {
    {"put",
     {.type = COMMAND_KV_PUT, .ts_ms = 1700000000000ULL, .key = S("hello"), .value = S("world")}},
    {"put-empty-value",
     {.type = COMMAND_KV_PUT, .ts_ms = 1700000000001ULL, .key = S("e"), .value = S("")}},
    {"put-idem",
     {.type = COMMAND_KV_PUT,
      .ts_ms = 1700000000002ULL,
      .key = S("config/a"),
      .value = S("{\"x\":1}"),
      .idem_key = S("req-0001")}},
    {"put-cas-create",
     {.type = COMMAND_KV_PUT,
      .ts_ms = 1700000000003ULL,
      .key = S("lock"),
      .value = S("owner-1"),
      .has_cas = true,
      .cas = 0}},
    {"put-cas-update",
     {.type = COMMAND_KV_PUT,
      .ts_ms = 1700000000004ULL,
      .key = S("hello"),
      .value = S("again"),
      .has_cas = true,
      .cas = 1,
      .idem_key = S("k2")}},
    {"put-utf8-key",
     {.type = COMMAND_KV_PUT,
      .ts_ms = 1700000000005ULL,
      .key = S("caf\xc3\xa9/\xe2\x82\xac"),
      .value = S("\x00\x01\xff")}},
    {"delete", {.type = COMMAND_KV_DELETE, .ts_ms = 1700000000006ULL, .key = S("e")}},
    {"delete-cas-idem",
     {.type = COMMAND_KV_DELETE,
      .ts_ms = 1700000000007ULL,
      .key = S("lock"),
      .has_cas = true,
      .cas = 4,
      .idem_key = S("del-1")}},
    {"member-set",
     {.type = COMMAND_MEMBER_SET,
      .node_id = S("node-2"),
      .raft_id = 42,
      .raft_addr = S("10.0.0.2:7000"),
      .http_addr = S("10.0.0.2:8080")}},
    {"member-set-host",
     {.type = COMMAND_MEMBER_SET,
      .node_id = S("c3"),
      .raft_id = 0xfedcba9876543210ULL,
      .raft_addr = S("127.0.0.1:7003"),
      .http_addr = S("coordinator-3.example:8080")}},
    {"member-del", {.type = COMMAND_MEMBER_DEL, .node_id = S("node-2")}},
    {"member-put",
     {.type = COMMAND_MEMBER_PUT,
      .node_id = S("node-3"),
      .raft_id = 77,
      .raft_addr = S("10.0.0.3:7000"),
      .http_addr = S("10.0.0.3:8080"),
      .incarnation = S("00112233445566778899aabbccddeeff")}},
    {"cluster-set",
     {.type = COMMAND_CLUSTER_SET, .cluster_id = S("0123456789abcdef0123456789abcdef")}},
    /* an old idempotency record next to a new write: exercises expiry */
    {"put-late",
     {.type = COMMAND_KV_PUT,
      .ts_ms = 1800000000000ULL,
      .key = S("later"),
      .value = S("v"),
      .idem_key = S("req-9")}},
    /* a follower's internal key for a forwarded create-only write, under a short TTL, and
     * the follower's re-send of it */
    {"put-internal-key", {INTERNAL_CREATE}},
    {"put-internal-resent", {INTERNAL_CREATE, .resent = true}},
    /* domain ops (fsm/domain.h): a client's keyed workload write, a forwarded scale with a
     * follower's internal key, and the leader's own placement */
    {"domain-workload-put",
     {.type = COMMAND_DOMAIN,
      .ts_ms = 1800000000004ULL,
      .idem_key = S("wl-1"),
      .value = S("{\"op\":\"workload.put\",\"workload\":{\"command\":[\"/bin/sleep\",\"60\"],"
                 "\"name\":\"web\",\"namespace\":\"default\",\"replicas\":2,"
                 "\"resources\":{\"cpu\":100,\"memory_mb\":64}}}")}},
    {"domain-agent-enroll",
     {.type = COMMAND_DOMAIN,
      .ts_ms = 1800000000005ULL,
      .value = S("{\"agent\":{\"capacity\":{\"cpu\":2000,\"memory_mb\":1024},\"id\":\"a1\","
                 "\"name\":\"w1\"},\"op\":\"agent.enroll\"}")}},
    {"domain-scale-internal",
     {.type = COMMAND_DOMAIN,
      .ts_ms = 1800000000006ULL,
      .idem_key = S("-5cQ9g-AbCdEfGhIjKlMnOp-----02"),
      .idem_internal = true,
      .resent = true,
      .value = S("{\"key\":\"default/web\",\"op\":\"workload.scale\",\"replicas\":3}")}},
    /* version 1 entries (written before the limits were stamped into entries) */
    {"v1-put-idem",
     {.version = 1,
      .type = COMMAND_KV_PUT,
      .ts_ms = 1800000000002ULL,
      .key = S("old"),
      .value = S("format"),
      .idem_key = S("req-v1")}},
    {"v1-delete-cas",
     {.version = 1,
      .type = COMMAND_KV_DELETE,
      .ts_ms = 1800000000003ULL,
      .key = S("old"),
      .has_cas = true,
      .cas = 15}},
    {"v1-member-del", {.version = 1, .type = COMMAND_MEMBER_DEL, .node_id = S("c3")}},
};

static void encode_padded(const struct command *cmd, struct buf *b, bool pad)
{
	struct command c = *cmd;
	/* The leader's default flags, unless the seed says otherwise. */
	if (c.idem_ttl_s == 0)
		c.idem_ttl_s = 86400;
	if (c.idem_max == 0)
		c.idem_max = 100000;
	buf_reset(b);
	command_encode(&c, b);
	/* node_propose pads entries to 8 bytes with zeros (see docs/architecture.md). */
	while (pad && b->len % 8 != 0)
		buf_put_u8(b, 0);
}

static void snapshot_seed(struct fsm *f, const char *name)
{
	struct store_snap snap;
	struct buf img;
	buf_init(&img);
	buf_put_u8(&img, 0); /* fuzz_snapshot's flag byte: keep the checksum as written */
	store_snap_take(&snap, &f->store);
	fsm_snapshot_write(&snap, f->applied_index, &img);
	store_snap_release(&snap);
	write_file("fuzz_snapshot", name, img.data, img.len);
	/* The same image with the "fix the checksum" flag, whose mutations stay parseable. */
	((uint8_t *)img.data)[0] = 1;
	char fixed[256];
	snprintf(fixed, sizeof fixed, "%s-fixsum", name);
	write_file("fuzz_snapshot", fixed, img.data, img.len);
	buf_close(&img);
}

/* A hand-made image (flag byte 0, valid checksum) holding the given records. */
static void raw_image(const char *name, uint64_t index, const char *const kv[], size_t n)
{
	struct buf img;
	buf_init(&img);
	buf_put_u8(&img, 0);
	buf_append(&img, "CLSNAP01", 8);
	buf_put_u64(&img, index);
	buf_put_u64(&img, n);
	for (size_t i = 0; i < n; i++) {
		const char *k = kv[2 * i], *v = kv[2 * i + 1];
		buf_put_u32(&img, (uint32_t)strlen(k));
		buf_append(&img, k, strlen(k));
		buf_put_u32(&img, (uint32_t)strlen(v));
		buf_append(&img, v, strlen(v));
	}
	buf_put_u64(&img, command_hash(COMMAND_HASH_INIT, img.data + 1, img.len - 1));
	write_file("fuzz_snapshot", name, img.data, img.len);
	buf_close(&img);
}

int main(int argc, char **argv)
{
	char err[256];
	struct buf b;
	struct fsm f;
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_ROOT\n", argv[0]);
		return 2;
	}
	root = argv[1];
	fuzz_log_setup();
	const char *dir = fuzz_tmpdir("gen-seeds");
	if (fsm_init(&f, dir, err, sizeof err) != 0) {
		fprintf(stderr, "fsm_init: %s\n", err);
		return 1;
	}
	snapshot_seed(&f, "image-empty");
	buf_init(&b);
	uint64_t index = 1;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		char name[128];
		encode_padded(&commands[i].c, &b, true);
		snprintf(name, sizeof name, "%s", commands[i].name);
		write_file("fuzz_command", name, b.data, b.len);
		if (fsm_apply_entry(&f, index++, b.data, b.len) == NULL) {
			fprintf(stderr, "apply %s failed\n", name);
			return 1;
		}
		if (i == 5)
			snapshot_seed(&f, "image-kv");
	}
	encode_padded(&commands[0].c, &b, false);
	write_file("fuzz_command", "put-unpadded", b.data, b.len);
	snapshot_seed(&f, "image-full");
	/* Regression: a key past the range store_batch_delete_all covers used to be accepted and
	 * then survived every later restore. Restore must refuse the image. */
	static const char *const outside[] = {"k/a", "1", "\xff\xff\xff\xff\xff\xff\xff\xff\x01",
	                                      "x"};
	raw_image("regress-key-outside-delete-range", 5000, outside, 2);
	/* Regression: a domain record that is not JSON used to be installed, and the mirror
	 * rebuilt from it failed after the store had changed. Restore must refuse the image. */
	static const char *const bad_domain[] = {"a/k2", "[", "k/a", "1"};
	raw_image("regress-domain-record-not-json", 5000, bad_domain, 2);
	static const char *const control[] = {"k/a", "1", "n/x", "{}"};
	raw_image("image-handmade", 5000, control, 2);
	buf_close(&b);
	fsm_close(&f);
	fuzz_rmtree(dir);
	return 0;
}
