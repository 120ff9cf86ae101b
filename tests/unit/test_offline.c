/* test_offline: unit tests for src/raft/offline.c, the data-dir work behind
 * `cloudless-coordinator restore` and `recover`.
 *
 * The configuration decoder is checked against libraft's own encoder (it reads the format
 * libraft writes into its log, which 0.15 has no decoder for). Restore is checked end to end
 * on disk: from an image of a real store, the new data dir holds identity.json (a new cluster
 * and incarnation, bootstrapped), a store at the image's index without the old member records
 * and with the new cluster id, and a raft snapshot at that index that raft_uv loads back with
 * this node alone as a voter; a bad image or an occupied target writes nothing, not even a
 * temporary directory. Recover on that data dir finds it already the only voter and changes
 * nothing, and refuses a directory that is not a data dir. (Making a three-voter survivor the
 * only voter, and the process checks, run against real clusters in
 * tests/cluster/test_recover.py.) */
#include "raft/offline.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "raft/node.h"
#include "testlib.h"

static void make_tmp(char *dir, size_t size)
{
	snprintf(dir, size, "/tmp/cloudless-test-offline-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
}

static int entries_in(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void test_decode_configuration(void)
{
	struct raft_configuration in, out;
	struct raft_buffer buf;
	raft_configuration_init(&in);
	CHECK_EQ_INT(raft_configuration_add(&in, 7, "127.0.0.1:7001", RAFT_VOTER), 0);
	CHECK_EQ_INT(
	    raft_configuration_add(&in, 0x7fffffffffffffffULL, "10.0.0.2:7000", RAFT_STANDBY), 0);
	CHECK_EQ_INT(raft_configuration_add(&in, 9, "x", RAFT_SPARE), 0);
	CHECK_EQ_INT(raft_configuration_encode(&in, &buf), 0);
	raft_configuration_init(&out);
	CHECK_EQ_INT(offline_decode_configuration(&buf, &out), 0);
	CHECK_EQ_INT(out.n, 3);
	for (unsigned i = 0; i < out.n && i < in.n; i++) {
		CHECK(out.servers[i].id == in.servers[i].id);
		CHECK_EQ_STR(out.servers[i].address, in.servers[i].address);
		CHECK_EQ_INT(out.servers[i].role, in.servers[i].role);
	}
	raft_configuration_close(&out);
	/* Cut short anywhere before the last role byte: refused, never read past the end (the
	 * padding after it is not needed). */
	size_t need = 1 + 8;
	for (unsigned i = 0; i < in.n; i++)
		need += 8 + strlen(in.servers[i].address) + 1 + 1;
	CHECK(buf.len >= need && buf.len < need + 8);
	for (size_t cut = 0; cut <= buf.len; cut++) {
		struct raft_buffer b = {.base = buf.base, .len = cut};
		raft_configuration_init(&out);
		CHECK_EQ_INT(offline_decode_configuration(&b, &out), cut < need ? -1 : 0);
		raft_configuration_close(&out);
	}
	((unsigned char *)buf.base)[0] = 2;
	raft_configuration_init(&out);
	CHECK_EQ_INT(offline_decode_configuration(&buf, &out), -1);
	raft_configuration_close(&out);
	raft_free(buf.base);
	raft_configuration_close(&in);
}

/* An image of a small store: two keys, two member records, a cluster id. */
static void make_image(const char *dir, struct buf *img, uint64_t *index)
{
	char db[256], err[256];
	struct fsm f;
	snprintf(db, sizeof db, "%s/src-db", dir);
	CHECK_EQ_INT(fsm_init(&f, db, err, sizeof err), 0);
	struct command cs[] = {
	    {.type = COMMAND_KV_PUT, .ts_ms = 1, .key = {"a", 1}, .value = {"1", 1}},
	    {.type = COMMAND_KV_PUT, .ts_ms = 1, .key = {"b", 1}, .value = {"2", 1}},
	    {.type = COMMAND_MEMBER_PUT,
	     .node_id = {"old-1", 5},
	     .raft_id = 1,
	     .raft_addr = {"r", 1},
	     .http_addr = {"h", 1}},
	    {.type = COMMAND_MEMBER_PUT,
	     .node_id = {"old-2", 5},
	     .raft_id = 2,
	     .raft_addr = {"r2", 2},
	     .http_addr = {"h2", 2}},
	    {.type = COMMAND_CLUSTER_SET, .cluster_id = {"00112233445566778899aabbccddeeff", 32}},
	};
	for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
		struct buf b;
		buf_init(&b);
		cs[i].idem_ttl_s = 60;
		cs[i].idem_max = 100;
		command_encode(&cs[i], &b);
		while (b.len % 8 != 0)
			buf_put_u8(&b, 0);
		CHECK(fsm_apply_entry(&f, i + 1, b.data, b.len) != NULL);
		buf_close(&b);
	}
	struct store_snap snap;
	store_snap_take(&snap, &f.store);
	buf_init(img);
	CHECK_EQ_INT(fsm_snapshot_write(&snap, f.applied_index, img, NULL), 0);
	store_snap_release(&snap);
	*index = f.applied_index;
	fsm_close(&f);
}

static void check_restored_store(const char *data_dir, const struct offline_restore *r)
{
	char db[256], err[256], id[COMMAND_MAX_INCARNATION + 1];
	struct fsm f;
	snprintf(db, sizeof db, "%s/%s", data_dir, NODE_DB_DIR);
	CHECK_EQ_INT(fsm_init(&f, db, err, sizeof err), 0);
	CHECK_EQ_INT(f.applied_index, r->index);
	struct fsm_member m;
	CHECK_EQ_INT(fsm_member_get(&f, "old-1", &m), 1);
	CHECK_EQ_INT(fsm_member_get(&f, "old-2", &m), 1);
	CHECK_EQ_INT(fsm_cluster_id(&f, id, sizeof id), 0);
	CHECK_EQ_STR(id, r->cluster_id);
	struct fsm_kv kv;
	CHECK_EQ_INT(fsm_kv_get(&f, "b", 1, &kv), 0);
	CHECK_EQ_STR(kv.value, "2");
	fsm_kv_free(&kv);
	struct fsm_digest d;
	fsm_digests(&f, &d);
	CHECK(d.state == r->digest.state && d.data == r->backup_digest.data);
	fsm_close(&f);
}

static void check_restored_identity(const char *data_dir, const struct offline_restore *r)
{
	struct identity id;
	char err[256];
	CHECK_EQ_INT(identity_load(&id, data_dir, "new-1", err, sizeof err), 0);
	CHECK_EQ_STR(id.cluster_id, r->cluster_id);
	CHECK_EQ_STR(id.incarnation, r->incarnation);
	CHECK_EQ_STR(id.raft_addr, "127.0.0.1:7100");
	CHECK(id.bootstrapped && !id.removed);
	CHECK(strcmp(r->cluster_id, "00112233445566778899aabbccddeeff") != 0);
}

static void test_restore_then_recover(void)
{
	char dir[64], target[128], err[512] = "";
	make_tmp(dir, sizeof dir);
	struct buf img;
	uint64_t index;
	make_image(dir, &img, &index);
	CHECK_EQ_INT(index, 5);
	snprintf(target, sizeof target, "%s/restored/node", dir);

	/* Damaged: refused before anything exists. */
	struct offline_restore bad = {.image = img.data,
	                              .image_len = img.len - 1,
	                              .data_dir = target,
	                              .node_id = "new-1",
	                              .raft_addr = "127.0.0.1:7100"};
	CHECK_EQ_INT(offline_restore(&bad, err, sizeof err), -1);
	CHECK(strstr(err, "checksum mismatch") != NULL);
	CHECK(access(target, F_OK) != 0);

	struct offline_restore r = {.image = img.data,
	                            .image_len = img.len,
	                            .data_dir = target,
	                            .node_id = "new-1",
	                            .raft_addr = "127.0.0.1:7100"};
	CHECK_EQ_INT(offline_restore(&r, err, sizeof err), 0);
	CHECK_EQ_INT(r.index, 5);
	CHECK_EQ_INT(r.records, 3); /* a, b and the new cluster id */
	CHECK(r.digest.data == r.backup_digest.data && r.digest.state != r.backup_digest.state);
	CHECK_EQ_INT(entries_in(target), 3); /* db, raft, identity.json */
	char parent[160];
	snprintf(parent, sizeof parent, "%s/restored", dir);
	CHECK_EQ_INT(entries_in(parent), 1); /* no temporary directory left */
	check_restored_store(target, &r);
	check_restored_identity(target, &r);

	/* Restoring again into it is refused, and leaves it alone. */
	struct offline_restore again = r;
	CHECK_EQ_INT(offline_restore(&again, err, sizeof err), -1);
	CHECK(strstr(err, "is not empty") != NULL);
	CHECK_EQ_INT(entries_in(parent), 1);

	/* raft_uv reads back a snapshot at the image's index, this node the only voter: so
	 * recover has nothing to do. */
	struct offline_recover rec = {.data_dir = target};
	CHECK_EQ_INT(offline_recover(&rec, err, sizeof err), 0);
	CHECK(rec.unchanged && rec.conf_index == 0);
	CHECK_EQ_INT(rec.snapshot_index, 5);
	CHECK_EQ_INT(rec.last_index, 5);
	CHECK_EQ_INT(rec.last_term, 1);
	CHECK_EQ_INT(rec.term, 1);
	CHECK_EQ_INT(rec.applied_index, 5);
	CHECK_EQ_INT(rec.n_old, 1);
	CHECK(rec.old_conf[0].id == node_raft_id("new-1") && rec.old_conf[0].role == RAFT_VOTER);
	CHECK_EQ_STR(rec.old_conf[0].raft_addr, "127.0.0.1:7100");
	CHECK_EQ_INT(rec.running_pid, 0);
	CHECK_EQ_STR(rec.ident.node_id, "new-1");

	/* Not a data dir: refused, saying why. */
	struct offline_recover none = {.data_dir = parent};
	CHECK_EQ_INT(offline_recover(&none, err, sizeof err), -1);
	CHECK(strstr(err, "holds no raft state") != NULL);

	buf_close(&img);
	test_rmtree(dir);
}

int main(void)
{
	test_decode_configuration();
	test_restore_then_recover();
	TEST_DONE();
}
