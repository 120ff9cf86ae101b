/* test_fsm: unit tests for src/fsm/fsm.c and src/fsm/snapshot.c (the replicated state
 * machine on RocksDB, and its raft snapshot image).
 *
 * Entries are fed straight into fsm_apply_entry (f->raft stays NULL), encoded and zero-padded
 * to 8 bytes exactly as node_propose does. Each test uses a fresh mkdtemp directory. Besides
 * result codes, the cases check the stored state itself (kv indexes and versions, the
 * idempotency records and their count, the age index) because the guarantees at stake are
 * about state: a restart never double-applies, a retried request is applied once, the
 * idempotency table stays bounded and its count matches the records, two replicas that
 * applied the same entries have the same digest, and a snapshot image either restores the
 * exact state or, when damaged, changes nothing. */
#include "fsm/fsm.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

/* ---- scaffolding ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

struct env {
	char dir[64];
	char db[96];
};

static void env_make(struct env *e)
{
	snprintf(e->dir, sizeof e->dir, "/tmp/cloudless-test-fsm-XXXXXX");
	if (mkdtemp(e->dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	snprintf(e->db, sizeof e->db, "%s/db", e->dir);
}

static void env_remove(struct env *e)
{
	nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void open_fsm(struct fsm *f, struct env *e, uint64_t ttl_s, uint64_t max)
{
	char err[512] = "";
	if (fsm_init(f, e->db, ttl_s, max, err, sizeof err) != 0) {
		fprintf(stderr, "fsm_init: %s\n", err);
		exit(2);
	}
}

static struct command_str S(const char *s) {
	struct command_str r = {s, s ? strlen(s) : 0};
	return r;
}

/* Encodes c, pads it with zeros to a multiple of 8 like node_propose, applies it. */
static unsigned
apply_cmd(struct fsm *f, uint64_t index, const struct command *c)
{
	struct buf b;
	buf_init(&b);
	command_encode(c, &b);
	while (b.len % 8 != 0)
		buf_put_u8(&b, 0);
	void *r = fsm_apply_entry(f, index, b.data, b.len);
	buf_close(&b);
	CHECK(r != NULL);
	return (unsigned)(uintptr_t)r;
}

struct kvreq {
	uint64_t ts;
	const char *idem; /* NULL = none */
	bool has_cas;
	uint64_t cas;
};

static unsigned put_x(struct fsm *f, uint64_t index, const char *key, const char *value,
                      struct kvreq q)
{
	struct command c;
	memset(&c, 0, sizeof c);
	c.type = COMMAND_KV_PUT;
	c.ts_ms = q.ts;
	c.idem_key = S(q.idem);
	c.has_cas = q.has_cas;
	c.cas = q.cas;
	c.key = S(key);
	c.value = S(value);
	return apply_cmd(f, index, &c);
}

static unsigned del_x(struct fsm *f, uint64_t index, const char *key, struct kvreq q)
{
	struct command c;
	memset(&c, 0, sizeof c);
	c.type = COMMAND_KV_DELETE;
	c.ts_ms = q.ts;
	c.idem_key = S(q.idem);
	c.has_cas = q.has_cas;
	c.cas = q.cas;
	c.key = S(key);
	return apply_cmd(f, index, &c);
}

static unsigned put(struct fsm *f, uint64_t index, const char *key, const char *value)
{
	return put_x(f, index, key, value, (struct kvreq){.ts = 1000});
}

static unsigned del(struct fsm *f, uint64_t index, const char *key)
{
	return del_x(f, index, key, (struct kvreq){.ts = 1000});
}

static unsigned member_set(struct fsm *f, uint64_t index, const char *id, uint64_t raft_id,
                           const char *raft_addr, const char *http_addr)
{
	struct command c;
	memset(&c, 0, sizeof c);
	c.type = COMMAND_MEMBER_SET;
	c.node_id = S(id);
	c.raft_id = raft_id;
	c.raft_addr = S(raft_addr);
	c.http_addr = S(http_addr);
	return apply_cmd(f, index, &c);
}

static unsigned member_del(struct fsm *f, uint64_t index, const char *id)
{
	struct command c;
	memset(&c, 0, sizeof c);
	c.type = COMMAND_MEMBER_DEL;
	c.node_id = S(id);
	return apply_cmd(f, index, &c);
}

#define REPLAY(code) ((code) | FSM_RESULT_REPLAY)

/* Checks a kv record: its indexes, version and value. */
#define CHECK_KV(f, key, ci, mi, ver, val)                           \
	do {                                                         \
		struct fsm_kv kv_ = {0};                             \
		int rv_ = fsm_kv_get((f), (key), strlen(key), &kv_); \
		CHECK_EQ_INT(rv_, 0);                                \
		if (rv_ == 0) {                                      \
			CHECK_EQ_INT(kv_.create_index, (ci));        \
			CHECK_EQ_INT(kv_.modify_index, (mi));        \
			CHECK_EQ_INT(kv_.version, (ver));            \
			CHECK_EQ_STR(kv_.value, (val));              \
			CHECK_EQ_INT(kv_.value_len, strlen(val));    \
			fsm_kv_free(&kv_);                           \
		}                                                    \
	} while (0)

static int kv_absent(struct fsm *f, const char *key)
{
	struct fsm_kv kv = {0};
	int rv = fsm_kv_get(f, key, strlen(key), &kv);
	if (rv == 0)
		fsm_kv_free(&kv);
	return rv == 1;
}

static int idem_absent(struct fsm *f, const char *key)
{
	struct fsm_idem rec;
	return fsm_idem_get(f, key, strlen(key), &rec) == 1;
}

static uint64_t count_prefix(struct fsm *f, const char *prefix)
{
	struct store_iter it;
	uint64_t n = 0;
	store_iter_init(&it, &f->store, NULL, prefix, strlen(prefix), NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it))
		n++;
	store_iter_close(&it);
	return n;
}

/* The idempotency bookkeeping is consistent: the count (in memory and in m/idem_count)
 * equals the number of records, and every record has exactly one age-index entry. */
static uint64_t stored_u64(struct fsm *f, const char *key)
{
	char *v;
	size_t len;
	uint64_t x = 0;
	if (store_get(&f->store, key, strlen(key), &v, &len) != 0)
		return 0;
	if (len == 8)
		for (int i = 0; i < 8; i++)
			x = x << 8 | (uint8_t)v[i];
	free(v);
	return x;
}

#define CHECK_IDEM_CONSISTENT(f)                                                       \
	do {                                                                           \
		uint64_t ni_ = count_prefix((f), "i/"), nt_ = count_prefix((f), "t/"); \
		CHECK_EQ_INT((f)->idem_count, ni_);                                    \
		CHECK_EQ_INT(nt_, ni_);                                                \
		CHECK_EQ_INT(stored_u64((f), "m/idem_count"), ni_);                    \
	} while (0)

static uint64_t digest(struct fsm *f)
{
	return fsm_digest(f, NULL);
}

/* ---- kv ---- */

static void test_kv_basic(void)
{
	struct env e;
	struct fsm f;
	env_make(&e);
	open_fsm(&f, &e, 60, 100);
	CHECK_EQ_INT(f.applied_index, 0);
	CHECK(kv_absent(&f, "a"));

	CHECK_EQ_INT(put(&f, 1, "a", "v1"), FSM_OK_CREATED);
	CHECK_EQ_INT(f.applied_index, 1);
	CHECK_KV(&f, "a", 1, 1, 1, "v1");

	CHECK_EQ_INT(put(&f, 2, "b", "other"), FSM_OK_CREATED);
	CHECK_EQ_INT(put(&f, 3, "a", "v2"), FSM_OK_UPDATED);
	CHECK_KV(&f, "a", 1, 3, 2, "v2");
	CHECK_EQ_INT(put(&f, 4, "a", ""), FSM_OK_UPDATED);
	CHECK_KV(&f, "a", 1, 4, 3, "");
	CHECK_KV(&f, "b", 2, 2, 1, "other");

	/* A binary value with NULs is stored byte-exact. */
	{
		static const char bin[] = "x\0y\0\xff";
		struct command c;
		memset(&c, 0, sizeof c);
		c.type = COMMAND_KV_PUT;
		c.ts_ms = 1000;
		c.key = S("bin");
		c.value.p = bin;
		c.value.len = sizeof bin - 1;
		CHECK_EQ_INT(apply_cmd(&f, 5, &c), FSM_OK_CREATED);
		struct fsm_kv kv = {0};
		CHECK_EQ_INT(fsm_kv_get(&f, "bin", 3, &kv), 0);
		CHECK_EQ_INT(kv.value_len, sizeof bin - 1);
		CHECK(kv.value_len == sizeof bin - 1 && memcmp(kv.value, bin, sizeof bin - 1) == 0);
		fsm_kv_free(&kv);
	}

	CHECK_EQ_INT(del(&f, 6, "a"), FSM_OK_DELETED);
	CHECK(kv_absent(&f, "a"));
	CHECK_EQ_INT(f.applied_index, 6);
	/* Deleting what is not there is reported, changes nothing, but consumes the index. */
	uint64_t d = digest(&f);
	CHECK_EQ_INT(del(&f, 7, "a"), FSM_NOT_FOUND);
	CHECK_EQ_INT(f.applied_index, 7);
	CHECK(digest(&f) == d);

	/* Re-creating starts a new life: new create_index, version back to 1. */
	CHECK_EQ_INT(put(&f, 8, "a", "v3"), FSM_OK_CREATED);
	CHECK_KV(&f, "a", 8, 8, 1, "v3");

	/* Keys are exact: a prefix or extension of a key is a different key. */
	CHECK(kv_absent(&f, ""));
	CHECK(kv_absent(&f, "aa"));
	CHECK_EQ_INT(put(&f, 9, "aa", "x"), FSM_OK_CREATED);
	CHECK_KV(&f, "a", 8, 8, 1, "v3");

	/* An undecodable entry is answered FSM_BAD_COMMAND, changes no data, but is applied
	 * (the index moves on) so every replica stays in step. */
	d = digest(&f);
	static const char junk[16] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
	void *r = fsm_apply_entry(&f, 10, junk, sizeof junk);
	CHECK_EQ_INT(fsm_result_code(r), FSM_BAD_COMMAND);
	CHECK_EQ_INT(f.applied_index, 10);
	CHECK(digest(&f) == d);
	CHECK_EQ_INT(stored_u64(&f, "m/applied"), 10);

	/* Nothing about idempotency was written by requests without a key. */
	CHECK_EQ_INT(count_prefix(&f, "i/"), 0);
	CHECK_EQ_INT(count_prefix(&f, "t/"), 0);
	CHECK_EQ_INT(f.idem_count, 0);
	CHECK_EQ_INT(f.stats.applies, 10);

	fsm_close(&f);
	env_remove(&e);
}

static void test_cas(void)
{
	struct env e;
	struct fsm f;
	env_make(&e);
	open_fsm(&f, &e, 60, 100);
	const struct kvreq create_only = {.ts = 1000, .has_cas = true, .cas = 0};

	/* cas=0: create only. */
	CHECK_EQ_INT(put_x(&f, 1, "k", "v1", create_only), FSM_OK_CREATED);
	CHECK_KV(&f, "k", 1, 1, 1, "v1");
	CHECK_EQ_INT(put_x(&f, 2, "k", "v2", create_only), FSM_CAS_MISMATCH);
	CHECK_KV(&f, "k", 1, 1, 1, "v1");
	CHECK_EQ_INT(f.applied_index, 2);

	CHECK_EQ_INT(put(&f, 3, "k", "v3"), FSM_OK_UPDATED); /* modify_index 3 */
	CHECK_KV(&f, "k", 1, 3, 2, "v3");

	/* A stale index (the create index, an older modify index), a future one: mismatch. */
	CHECK_EQ_INT(put_x(&f, 4, "k", "bad", (struct kvreq){.ts = 1, .has_cas = true, .cas = 1}),
	             FSM_CAS_MISMATCH);
	CHECK_EQ_INT(put_x(&f, 5, "k", "bad", (struct kvreq){.ts = 1, .has_cas = true, .cas = 2}),
	             FSM_CAS_MISMATCH);
	CHECK_EQ_INT(put_x(&f, 6, "k", "bad", (struct kvreq){.ts = 1, .has_cas = true, .cas = 99}),
	             FSM_CAS_MISMATCH);
	CHECK_KV(&f, "k", 1, 3, 2, "v3");

	/* The current modify index: applied. */
	CHECK_EQ_INT(put_x(&f, 7, "k", "v7", (struct kvreq){.ts = 1, .has_cas = true, .cas = 3}),
	             FSM_OK_UPDATED);
	CHECK_KV(&f, "k", 1, 7, 3, "v7");
	/* The same CAS again is now stale. */
	CHECK_EQ_INT(put_x(&f, 8, "k", "v8", (struct kvreq){.ts = 1, .has_cas = true, .cas = 3}),
	             FSM_CAS_MISMATCH);
	CHECK_KV(&f, "k", 1, 7, 3, "v7");

	/* CAS against an absent key with a non-zero index fails. */
	CHECK_EQ_INT(put_x(&f, 9, "n", "x", (struct kvreq){.ts = 1, .has_cas = true, .cas = 7}),
	             FSM_CAS_MISMATCH);
	CHECK(kv_absent(&f, "n"));

	/* has_cas=false ignores the cas field entirely. */
	CHECK_EQ_INT(put_x(&f, 10, "k", "v10", (struct kvreq){.ts = 1, .cas = 12345}),
	             FSM_OK_UPDATED);
	CHECK_KV(&f, "k", 1, 10, 4, "v10");

	/* Delete with CAS: wrong index keeps the key, right index removes it. */
	CHECK_EQ_INT(del_x(&f, 11, "k", (struct kvreq){.ts = 1, .has_cas = true, .cas = 7}),
	             FSM_CAS_MISMATCH);
	CHECK_KV(&f, "k", 1, 10, 4, "v10");
	CHECK_EQ_INT(del_x(&f, 12, "k", (struct kvreq){.ts = 1, .has_cas = true, .cas = 0}),
	             FSM_CAS_MISMATCH); /* "only if absent" on a present key */
	CHECK_KV(&f, "k", 1, 10, 4, "v10");
	CHECK_EQ_INT(del_x(&f, 13, "k", (struct kvreq){.ts = 1, .has_cas = true, .cas = 10}),
	             FSM_OK_DELETED);
	CHECK(kv_absent(&f, "k"));
	/* Delete with CAS on an absent key: cas=N mismatches, cas=0 holds (nothing to do). */
	CHECK_EQ_INT(del_x(&f, 14, "k", (struct kvreq){.ts = 1, .has_cas = true, .cas = 10}),
	             FSM_CAS_MISMATCH);
	CHECK_EQ_INT(del_x(&f, 15, "k", (struct kvreq){.ts = 1, .has_cas = true, .cas = 0}),
	             FSM_NOT_FOUND);
	/* Create-only after a delete works again. */
	CHECK_EQ_INT(put_x(&f, 16, "k", "again", create_only), FSM_OK_CREATED);
	CHECK_KV(&f, "k", 16, 16, 1, "again");
	CHECK_EQ_INT(f.applied_index, 16);

	fsm_close(&f);
	env_remove(&e);
}

/* ---- restart ---- */

static void test_restart_never_double_applies(void)
{
	struct env e;
	struct fsm f;
	env_make(&e);
	open_fsm(&f, &e, 60, 100);
	CHECK_EQ_INT(put(&f, 1, "a", "1"), FSM_OK_CREATED);
	CHECK_EQ_INT(put(&f, 2, "a", "2"), FSM_OK_UPDATED);
	CHECK_EQ_INT(put_x(&f, 3, "b", "x", (struct kvreq){.ts = 5000, .idem = "req"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(member_set(&f, 4, "n1", 11, "r:1", "h:1"), FSM_MEMBER_OK);
	CHECK_EQ_INT(f.applied_index, 4);
	uint64_t d = digest(&f);
	fsm_close(&f);

	open_fsm(&f, &e, 60, 100);
	CHECK_EQ_INT(f.applied_index, 4);
	CHECK_EQ_INT(f.idem_count, 1);
	CHECK(digest(&f) == d);
	CHECK_KV(&f, "a", 1, 2, 2, "2");

	/* raft replays entries 1..4 after a restart: every one is skipped, nothing changes. */
	CHECK_EQ_INT(put(&f, 1, "a", "1"), FSM_SKIPPED);
	CHECK_EQ_INT(put(&f, 2, "a", "2"), FSM_SKIPPED);
	CHECK_EQ_INT(put_x(&f, 3, "b", "x", (struct kvreq){.ts = 5000, .idem = "req"}),
	             FSM_SKIPPED);
	CHECK_EQ_INT(member_set(&f, 4, "n1", 11, "r:1", "h:1"), FSM_SKIPPED);
	/* Even a different command at an old index is skipped, not applied. */
	CHECK_EQ_INT(put(&f, 4, "a", "overwrite"), FSM_SKIPPED);
	CHECK_EQ_INT(del(&f, 2, "a"), FSM_SKIPPED);
	CHECK_EQ_INT(f.applied_index, 4);
	CHECK_KV(&f, "a", 1, 2, 2, "2");
	CHECK(digest(&f) == d);
	CHECK_EQ_INT(stored_u64(&f, "m/applied"), 4);

	/* The next entry applies. */
	CHECK_EQ_INT(put(&f, 5, "a", "5"), FSM_OK_UPDATED);
	CHECK_KV(&f, "a", 1, 5, 3, "5");
	fsm_close(&f);

	/* And is itself persisted. */
	open_fsm(&f, &e, 60, 100);
	CHECK_EQ_INT(f.applied_index, 5);
	CHECK_EQ_INT(put(&f, 5, "a", "again"), FSM_SKIPPED);
	CHECK_KV(&f, "a", 1, 5, 3, "5");
	CHECK_IDEM_CONSISTENT(&f);
	fsm_close(&f);
	env_remove(&e);
}

/* ---- idempotency ---- */

static void test_idempotency(void)
{
	struct env e;
	struct fsm f;
	struct fsm_idem rec;
	env_make(&e);
	open_fsm(&f, &e, 60, 100); /* 60 s TTL */

	CHECK_EQ_INT(put_x(&f, 1, "a", "v1", (struct kvreq){.ts = 1000, .idem = "r1"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, &rec), 0);
	CHECK_EQ_INT(rec.index, 1);
	CHECK_EQ_INT(rec.ts_ms, 1000);
	CHECK_EQ_INT(rec.code, FSM_OK_CREATED);
	CHECK_EQ_INT(f.idem_count, 1);
	CHECK_IDEM_CONSISTENT(&f);

	/* A retry (same key, same request, later timestamp): answered from the record. */
	unsigned r = put_x(&f, 2, "a", "v1", (struct kvreq){.ts = 2000, .idem = "r1"});
	CHECK_EQ_INT(r, REPLAY(FSM_OK_CREATED));
	CHECK(fsm_result_replayed(fsm_result_pack(r)));
	CHECK_EQ_INT(fsm_result_code(fsm_result_pack(r)), FSM_OK_CREATED);
	CHECK_KV(&f, "a", 1, 1, 1, "v1"); /* not applied twice */
	CHECK_EQ_INT(f.applied_index, 2);
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, &rec), 0);
	CHECK_EQ_INT(rec.index, 1); /* the original entry */
	CHECK_EQ_INT(rec.ts_ms, 1000);
	CHECK_EQ_INT(f.idem_count, 1);

	/* Even after someone else changed the key, the retry still gets its own answer. */
	CHECK_EQ_INT(put(&f, 3, "a", "other"), FSM_OK_UPDATED);
	CHECK_EQ_INT(put_x(&f, 4, "a", "v1", (struct kvreq){.ts = 3000, .idem = "r1"}),
	             REPLAY(FSM_OK_CREATED));
	CHECK_KV(&f, "a", 1, 3, 2, "other");

	/* Same key, different request: refused, nothing applied or recorded. */
	CHECK_EQ_INT(put_x(&f, 5, "a", "v2", (struct kvreq){.ts = 3000, .idem = "r1"}),
	             FSM_IDEM_MISMATCH);
	CHECK_EQ_INT(put_x(&f, 6, "b", "v1", (struct kvreq){.ts = 3000, .idem = "r1"}),
	             FSM_IDEM_MISMATCH);
	CHECK_EQ_INT(del_x(&f, 7, "a", (struct kvreq){.ts = 3000, .idem = "r1"}),
	             FSM_IDEM_MISMATCH);
	CHECK_EQ_INT(
	    put_x(&f, 8, "a", "v1", (struct kvreq){.ts = 3000, .idem = "r1", .has_cas = true}),
	    FSM_IDEM_MISMATCH);
	CHECK_KV(&f, "a", 1, 3, 2, "other");
	CHECK(kv_absent(&f, "b"));
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, &rec), 0);
	CHECK_EQ_INT(rec.index, 1);
	CHECK_EQ_INT(f.idem_count, 1);

	/* The same request under another key is a new request. */
	CHECK_EQ_INT(put_x(&f, 9, "a", "v1", (struct kvreq){.ts = 3000, .idem = "r2"}),
	             FSM_OK_UPDATED);
	CHECK_KV(&f, "a", 1, 9, 3, "v1");
	CHECK_EQ_INT(f.idem_count, 2);
	CHECK_IDEM_CONSISTENT(&f);

	/* Failed outcomes are remembered too: a CAS mismatch replays as a mismatch even when
	 * the retry would now succeed. */
	const struct kvreq cas12 = {.ts = 4000, .idem = "r3", .has_cas = true, .cas = 12};
	CHECK_EQ_INT(put(&f, 10, "a", "moved"), FSM_OK_UPDATED);
	CHECK_EQ_INT(put_x(&f, 11, "a", "v-cas", cas12), FSM_CAS_MISMATCH);
	CHECK_EQ_INT(fsm_idem_get(&f, "r3", 2, &rec), 0);
	CHECK_EQ_INT(rec.code, FSM_CAS_MISMATCH);
	CHECK_EQ_INT(put(&f, 12, "a", "x"), FSM_OK_UPDATED);
	/* modify_index is 12 now, so re-evaluating the retry would succeed: it must not be. */
	CHECK_EQ_INT(put_x(&f, 13, "a", "v-cas", cas12), REPLAY(FSM_CAS_MISMATCH));
	CHECK_KV(&f, "a", 1, 12, 5, "x");

	/* Deletes: the retry of a delete does not delete a re-created key. */
	CHECK_EQ_INT(del_x(&f, 14, "a", (struct kvreq){.ts = 4000, .idem = "d1"}), FSM_OK_DELETED);
	CHECK_EQ_INT(put(&f, 15, "a", "reborn"), FSM_OK_CREATED);
	CHECK_EQ_INT(del_x(&f, 16, "a", (struct kvreq){.ts = 4500, .idem = "d1"}),
	             REPLAY(FSM_OK_DELETED));
	CHECK_KV(&f, "a", 15, 15, 1, "reborn");
	CHECK_EQ_INT(f.idem_count, 4);
	CHECK_IDEM_CONSISTENT(&f);

	/* Records survive a restart (count included). */
	fsm_close(&f);
	open_fsm(&f, &e, 60, 100);
	CHECK_EQ_INT(f.idem_count, 4);
	CHECK_EQ_INT(put_x(&f, 17, "a", "v1", (struct kvreq){.ts = 5000, .idem = "r1"}),
	             REPLAY(FSM_OK_CREATED));
	CHECK_KV(&f, "a", 15, 15, 1, "reborn");
	CHECK_IDEM_CONSISTENT(&f);

	fsm_close(&f);
	env_remove(&e);
}

static void test_idempotency_ttl(void)
{
	struct env e;
	struct fsm f;
	struct fsm_idem rec;
	env_make(&e);
	open_fsm(&f, &e, 60, 100); /* 60 s TTL */
	const uint64_t t0 = 1700000000000ULL;

	CHECK_EQ_INT(put_x(&f, 1, "k", "v", (struct kvreq){.ts = t0, .idem = "r1"}),
	             FSM_OK_CREATED);
	/* Exactly at the TTL the record still answers. */
	CHECK_EQ_INT(put_x(&f, 2, "k", "v", (struct kvreq){.ts = t0 + 60000, .idem = "r1"}),
	             REPLAY(FSM_OK_CREATED));
	CHECK_KV(&f, "k", 1, 1, 1, "v");
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, &rec), 0);

	/* Past the TTL the key is free again: the request applies anew, and the record now
	 * describes the new entry. */
	CHECK_EQ_INT(put_x(&f, 3, "k", "v", (struct kvreq){.ts = t0 + 60001, .idem = "r1"}),
	             FSM_OK_UPDATED);
	CHECK_KV(&f, "k", 1, 3, 2, "v");
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, &rec), 0);
	CHECK_EQ_INT(rec.index, 3);
	CHECK_EQ_INT(rec.ts_ms, t0 + 60001);
	CHECK_EQ_INT(rec.code, FSM_OK_UPDATED);
	CHECK_EQ_INT(f.idem_count, 1); /* replaced, not double-counted */
	CHECK_IDEM_CONSISTENT(&f);

	/* ...and protects retries of that new request for another TTL. */
	CHECK_EQ_INT(put_x(&f, 4, "k", "v", (struct kvreq){.ts = t0 + 60002, .idem = "r1"}),
	             REPLAY(FSM_OK_UPDATED));
	CHECK_KV(&f, "k", 1, 3, 2, "v");
	CHECK_EQ_INT(put_x(&f, 5, "k", "v", (struct kvreq){.ts = t0 + 120001, .idem = "r1"}),
	             REPLAY(FSM_OK_UPDATED));
	CHECK_KV(&f, "k", 1, 3, 2, "v");
	CHECK_EQ_INT(f.idem_count, 1);
	CHECK_IDEM_CONSISTENT(&f);

	/* An expired key reused for a different request is not a mismatch. */
	CHECK_EQ_INT(put_x(&f, 6, "other", "x", (struct kvreq){.ts = t0 + 200000, .idem = "r1"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, &rec), 0);
	CHECK_EQ_INT(rec.index, 6);
	CHECK_IDEM_CONSISTENT(&f);

	/* Expired records of other keys are pruned as time (carried by entries) moves on. */
	const uint64_t t1 = t0 + 1000000;
	CHECK_EQ_INT(put_x(&f, 7, "a", "1", (struct kvreq){.ts = t1, .idem = "old-a"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(put_x(&f, 8, "b", "1", (struct kvreq){.ts = t1 + 1, .idem = "old-b"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(f.idem_count, 2); /* r1 (ts t0+200000) expired and went with these */
	CHECK(idem_absent(&f, "r1"));
	CHECK_IDEM_CONSISTENT(&f);
	/* An entry without an idempotency key also advances time and prunes. */
	CHECK_EQ_INT(put_x(&f, 9, "c", "1", (struct kvreq){.ts = t1 + 60001}), FSM_OK_CREATED);
	CHECK(idem_absent(&f, "old-a"));
	CHECK_EQ_INT(fsm_idem_get(&f, "old-b", 5, &rec), 0); /* t1+1+60000 is not past yet */
	CHECK_EQ_INT(f.idem_count, 1);
	CHECK_IDEM_CONSISTENT(&f);
	/* A pruned key applies again. */
	CHECK_EQ_INT(put_x(&f, 10, "a", "1", (struct kvreq){.ts = t1 + 60002, .idem = "old-a"}),
	             FSM_OK_UPDATED);
	CHECK(idem_absent(&f, "old-b"));
	CHECK_EQ_INT(f.idem_count, 1);
	CHECK_IDEM_CONSISTENT(&f);

	fsm_close(&f);
	env_remove(&e);
}

static void test_idempotency_count_bound(void)
{
	struct env e;
	struct fsm f;
	struct fsm_idem rec;
	env_make(&e);
	open_fsm(&f, &e, 3600, 3); /* long TTL: only the count bound prunes */

	char key[16], val[16];
	uint64_t index = 0;
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof key, "req-%02d", i);
		snprintf(val, sizeof val, "v%d", i);
		CHECK_EQ_INT(
		    put_x(&f, ++index, "k", val, (struct kvreq){.ts = 1000 + i, .idem = key}),
		    i == 0 ? FSM_OK_CREATED : FSM_OK_UPDATED);
		CHECK(f.idem_count <= 3);
		CHECK_EQ_INT(f.idem_count, i + 1 < 3 ? i + 1 : 3);
		CHECK_IDEM_CONSISTENT(&f);
	}
	/* The newest three survive, the oldest went first. */
	CHECK(idem_absent(&f, "req-00"));
	CHECK(idem_absent(&f, "req-16"));
	CHECK_EQ_INT(fsm_idem_get(&f, "req-17", 6, &rec), 0);
	CHECK_EQ_INT(fsm_idem_get(&f, "req-18", 6, &rec), 0);
	CHECK_EQ_INT(fsm_idem_get(&f, "req-19", 6, &rec), 0);
	CHECK_EQ_INT(rec.index, 20);
	/* A retry of a live one replays; of a pruned one applies again. */
	CHECK_EQ_INT(put_x(&f, ++index, "k", "v19", (struct kvreq){.ts = 2000, .idem = "req-19"}),
	             REPLAY(FSM_OK_UPDATED));
	CHECK_KV(&f, "k", 1, 20, 20, "v19");
	CHECK_EQ_INT(put_x(&f, ++index, "k", "v0", (struct kvreq){.ts = 2001, .idem = "req-00"}),
	             FSM_OK_UPDATED);
	CHECK_KV(&f, "k", 1, 22, 21, "v0");
	CHECK_EQ_INT(f.idem_count, 3);
	CHECK_IDEM_CONSISTENT(&f);

	/* The bound holds across a restart with a smaller limit: the excess is trimmed a few
	 * records per apply until the count is back within the bound. */
	fsm_close(&f);
	open_fsm(&f, &e, 3600, 1);
	CHECK_EQ_INT(f.idem_count, 3);
	CHECK_EQ_INT(put_x(&f, ++index, "z", "1", (struct kvreq){.ts = 3000, .idem = "new"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(f.idem_count, 1);
	CHECK_EQ_INT(fsm_idem_get(&f, "new", 3, &rec), 0); /* the newest is kept */
	CHECK(idem_absent(&f, "req-19"));
	CHECK_IDEM_CONSISTENT(&f);

	fsm_close(&f);
	env_remove(&e);
}

/* ---- members ---- */

struct collected {
	char ids[256];
	int n;
	int stop_after;
};

static int collect_member(const struct fsm_member *m, void *arg)
{
	struct collected *c = arg;
	size_t at = strlen(c->ids);
	snprintf(c->ids + at, sizeof c->ids - at, "%s%s=%llu@%s/%s", at ? "|" : "", m->node_id,
	         (unsigned long long)m->raft_id, m->raft_addr, m->http_addr);
	c->n++;
	return c->stop_after > 0 && c->n >= c->stop_after;
}

static void test_members(void)
{
	struct env e;
	struct fsm f;
	struct fsm_member m;
	env_make(&e);
	open_fsm(&f, &e, 60, 100);

	uint64_t mv = f.members_version;
	CHECK_EQ_INT(member_set(&f, 1, "n2", 2, "10.0.0.2:7000", "10.0.0.2:8080"), FSM_MEMBER_OK);
	CHECK(f.members_version > mv);
	CHECK_EQ_INT(member_set(&f, 2, "n1", 1, "10.0.0.1:7000", "10.0.0.1:8080"), FSM_MEMBER_OK);
	CHECK_EQ_INT(member_set(&f, 3, "n3", UINT64_MAX, "r3", ""), FSM_MEMBER_OK);
	CHECK_EQ_INT(f.applied_index, 3);

	CHECK_EQ_INT(fsm_member_get(&f, "n1", &m), 0);
	CHECK_EQ_STR(m.node_id, "n1");
	CHECK_EQ_INT(m.raft_id, 1);
	CHECK_EQ_STR(m.raft_addr, "10.0.0.1:7000");
	CHECK_EQ_STR(m.http_addr, "10.0.0.1:8080");
	CHECK_EQ_INT(fsm_member_get(&f, "n3", &m), 0);
	CHECK(m.raft_id == UINT64_MAX);
	CHECK_EQ_STR(m.http_addr, "");
	CHECK_EQ_INT(fsm_member_get(&f, "n4", &m), 1);

	struct collected c = {"", 0, 0};
	fsm_members_each(&f, collect_member, &c);
	CHECK_EQ_STR(c.ids, "n1=1@10.0.0.1:7000/10.0.0.1:8080|n2=2@10.0.0.2:7000/10.0.0.2:8080|"
	                    "n3=18446744073709551615@r3/");
	CHECK_EQ_INT(c.n, 3);
	struct collected first = {"", 0, 1};
	fsm_members_each(&f, collect_member, &first);
	CHECK_EQ_INT(first.n, 1);
	CHECK_EQ_STR(first.ids, "n1=1@10.0.0.1:7000/10.0.0.1:8080");

	/* Update in place, then delete. */
	mv = f.members_version;
	CHECK_EQ_INT(member_set(&f, 4, "n1", 1, "10.0.0.9:7000", "10.0.0.9:8080"), FSM_MEMBER_OK);
	CHECK(f.members_version > mv);
	CHECK_EQ_INT(fsm_member_get(&f, "n1", &m), 0);
	CHECK_EQ_STR(m.raft_addr, "10.0.0.9:7000");
	mv = f.members_version;
	CHECK_EQ_INT(member_del(&f, 5, "n2"), FSM_MEMBER_OK);
	CHECK(f.members_version > mv);
	CHECK_EQ_INT(fsm_member_get(&f, "n2", &m), 1);
	CHECK_EQ_INT(member_del(&f, 6, "n2"), FSM_MEMBER_OK); /* deleting again is harmless */
	struct collected after = {"", 0, 0};
	fsm_members_each(&f, collect_member, &after);
	CHECK_EQ_STR(after.ids, "n1=1@10.0.0.9:7000/10.0.0.9:8080|n3=18446744073709551615@r3/");

	/* Characters JSON must escape survive the round trip. */
	CHECK_EQ_INT(member_set(&f, 7, "q\"\\", 7, "a\"b", "c\\d"), FSM_MEMBER_OK);
	CHECK_EQ_INT(fsm_member_get(&f, "q\"\\", &m), 0);
	CHECK_EQ_STR(m.raft_addr, "a\"b");
	CHECK_EQ_STR(m.http_addr, "c\\d");

	/* Members live in their own namespace: a kv key "n1" is unrelated. */
	CHECK_EQ_INT(put(&f, 8, "n1", "kv"), FSM_OK_CREATED);
	CHECK_EQ_INT(fsm_member_get(&f, "n1", &m), 0);
	CHECK_EQ_STR(m.raft_addr, "10.0.0.9:7000");

	/* And persist. */
	fsm_close(&f);
	open_fsm(&f, &e, 60, 100);
	struct collected again = {"", 0, 0};
	fsm_members_each(&f, collect_member, &again);
	CHECK_EQ_INT(again.n, 3);
	CHECK_EQ_INT(fsm_member_get(&f, "n3", &m), 0);
	CHECK(m.raft_id == UINT64_MAX);
	fsm_close(&f);
	env_remove(&e);
}

/* ---- digest ---- */

/* A mixed history; `variant` changes one value so histories can differ. */
static void apply_history(struct fsm *f, uint64_t base, int variant)
{
	put(f, base + 1, "a", "1");
	put(f, base + 2, "b", variant ? "2'" : "2");
	put_x(f, base + 3, "c", "3", (struct kvreq){.ts = 5000, .idem = "r1"});
	del(f, base + 4, "a");
	member_set(f, base + 5, "n1", 1, "r1", "h1");
	put_x(f, base + 6, "c", "3", (struct kvreq){.ts = 6000, .idem = "r1"}); /* replay */
	put_x(f, base + 7, "d", "4", (struct kvreq){.ts = 7000, .has_cas = true, .cas = 0});
}

static void test_digest(void)
{
	struct env ea, eb, ec;
	struct fsm a, b, c;
	env_make(&ea);
	env_make(&eb);
	env_make(&ec);
	open_fsm(&a, &ea, 60, 100);
	open_fsm(&b, &eb, 60, 100);
	open_fsm(&c, &ec, 60, 100);

	uint64_t n0 = 99;
	uint64_t empty = fsm_digest(&a, &n0);
	CHECK_EQ_INT(n0, 0);
	CHECK(empty == fsm_digest(&b, NULL));

	apply_history(&a, 0, 0);
	apply_history(&b, 0, 0);
	apply_history(&c, 0, 1);
	uint64_t na = 0, nb = 0, nc = 0;
	uint64_t da = fsm_digest(&a, &na), db = fsm_digest(&b, &nb), dc = fsm_digest(&c, &nc);
	CHECK(da == db);
	CHECK_EQ_INT(na, nb);
	/* b, c, d, n1, i/r1, t/... */
	CHECK_EQ_INT(na, 6);
	CHECK(da != empty);
	CHECK(da != dc);
	CHECK_EQ_INT(nc, na);

	/* Not a function of the applied index: an entry that changes no data (a delete of an
	 * absent key, an undecodable entry) moves b's index but not its digest. */
	CHECK_EQ_INT(del(&b, 8, "zzz"), FSM_NOT_FOUND);
	static const char junk[8] = {1, 77, 0, 0, 0, 0, 0, 0};
	CHECK_EQ_INT(fsm_result_code(fsm_apply_entry(&b, 9, junk, sizeof junk)), FSM_BAD_COMMAND);
	CHECK(b.applied_index != a.applied_index);
	CHECK(fsm_digest(&b, NULL) == da);

	/* Any change of data changes it: a value, a member, an idempotency record. */
	CHECK_EQ_INT(put(&a, 8, "b", "2"), FSM_OK_UPDATED); /* same value, new version */
	CHECK(fsm_digest(&a, NULL) != da);
	uint64_t d2 = fsm_digest(&a, NULL);
	CHECK_EQ_INT(member_set(&a, 9, "n2", 2, "r2", "h2"), FSM_MEMBER_OK);
	CHECK(fsm_digest(&a, NULL) != d2);
	uint64_t d3 = fsm_digest(&a, NULL);
	CHECK_EQ_INT(put_x(&a, 10, "b", "2", (struct kvreq){.ts = 8000, .idem = "r9"}),
	             FSM_OK_UPDATED);
	CHECK(fsm_digest(&a, NULL) != d3);

	/* The same commands at different indexes are different states (create/modify
	 * indexes are data). */
	struct env ed;
	struct fsm d;
	env_make(&ed);
	open_fsm(&d, &ed, 60, 100);
	apply_history(&d, 100, 0);
	CHECK(fsm_digest(&d, NULL) != da);
	fsm_close(&d);
	env_remove(&ed);

	/* A reopened store digests the same. */
	fsm_close(&b);
	open_fsm(&b, &eb, 60, 100);
	CHECK(fsm_digest(&b, NULL) == da);

	fsm_close(&a);
	fsm_close(&b);
	fsm_close(&c);
	env_remove(&ea);
	env_remove(&eb);
	env_remove(&ec);
}

/* ---- snapshots ---- */

static void snapshot_image(struct fsm *f, struct buf *img)
{
	struct store_snap snap;
	buf_init(img);
	store_snap_take(&snap, &f->store);
	CHECK_EQ_INT(fsm_snapshot_write(&snap, f->applied_index, img), 0);
	store_snap_release(&snap);
}

static int restore(struct fsm *f, const void *data, size_t len)
{
	char err[256] = "";
	return fsm_snapshot_restore(f, data, len, err, sizeof err);
}

static void test_snapshot_round_trip(void)
{
	struct env ea, eb;
	struct fsm a, b;
	struct fsm_idem rec;
	env_make(&ea);
	env_make(&eb);
	open_fsm(&a, &ea, 60, 100);
	open_fsm(&b, &eb, 60, 100);

	/* A: a mix of everything (30 entries). */
	uint64_t index = 0;
	char key[32], val[32], idem[32];
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof key, "key-%d", i % 7);
		snprintf(val, sizeof val, "value-%d", i);
		snprintf(idem, sizeof idem, "idem-%d", i);
		put_x(&a, ++index, key, val,
		      (struct kvreq){.ts = 10000 + (uint64_t)i, .idem = i % 3 ? idem : NULL});
	}
	del(&a, ++index, "key-3");
	member_set(&a, ++index, "n1", 1, "r1", "h1");
	member_set(&a, ++index, "n2", 2, "r2", "h2");
	member_del(&a, ++index, "n1");
	while (index < 30)
		put(&a, ++index, "tail", "x");
	CHECK_EQ_INT(a.applied_index, 30);
	uint64_t na;
	uint64_t da = fsm_digest(&a, &na);
	CHECK(a.idem_count > 0);

	/* B: a history of its own, at lower indexes. */
	CHECK_EQ_INT(put(&b, 1, "only-b", "b"), FSM_OK_CREATED);
	CHECK_EQ_INT(member_set(&b, 2, "nb", 9, "rb", "hb"), FSM_MEMBER_OK);
	CHECK_EQ_INT(put_x(&b, 3, "x", "y", (struct kvreq){.ts = 9, .idem = "b-idem"}),
	             FSM_OK_CREATED);

	struct buf img;
	snapshot_image(&a, &img);
	/* Changes to A after the snapshot was taken are not in the image. */
	CHECK_EQ_INT(put(&a, 31, "later", "z"), FSM_OK_CREATED);

	uint64_t mv = b.members_version;
	CHECK_EQ_INT(restore(&b, img.data, img.len), 0);
	uint64_t nb;
	CHECK(fsm_digest(&b, &nb) == da);
	CHECK_EQ_INT(nb, na);
	CHECK_EQ_INT(b.applied_index, 30);
	CHECK_EQ_INT(stored_u64(&b, "m/applied"), 30);
	CHECK(b.members_version != mv);
	CHECK(kv_absent(&b, "only-b"));
	CHECK(kv_absent(&b, "x"));
	CHECK(kv_absent(&b, "later"));
	CHECK(idem_absent(&b, "b-idem"));
	struct fsm_member m;
	CHECK_EQ_INT(fsm_member_get(&b, "nb", &m), 1);
	CHECK_EQ_INT(fsm_member_get(&b, "n1", &m), 1);
	CHECK_EQ_INT(fsm_member_get(&b, "n2", &m), 0);
	CHECK_EQ_INT(b.idem_count, a.idem_count);
	CHECK_IDEM_CONSISTENT(&b);
	CHECK_EQ_INT(fsm_idem_get(&b, "idem-19", 7, &rec), 0);
	CHECK_EQ_INT(rec.index, 20);
	CHECK(idem_absent(&b, "idem-18")); /* 18 % 3 == 0: sent without a key */
	CHECK_EQ_INT(b.stats.restores_ok, 1);

	/* B continues exactly like A: the next entry applies identically, an idempotent
	 * retry replays on both. */
	CHECK_EQ_INT(put(&b, 31, "later", "z"), FSM_OK_CREATED);
	CHECK(fsm_digest(&b, NULL) == fsm_digest(&a, NULL));
	CHECK_EQ_INT(
	    put_x(&a, 32, "key-5", "value-19", (struct kvreq){.ts = 10019, .idem = "idem-19"}),
	    REPLAY(FSM_OK_UPDATED));
	CHECK_EQ_INT(
	    put_x(&b, 32, "key-5", "value-19", (struct kvreq){.ts = 10019, .idem = "idem-19"}),
	    REPLAY(FSM_OK_UPDATED));
	CHECK(fsm_digest(&b, NULL) == fsm_digest(&a, NULL));

	/* The restored state is durable. */
	uint64_t db = fsm_digest(&b, NULL);
	uint64_t ic = b.idem_count;
	fsm_close(&b);
	open_fsm(&b, &eb, 60, 100);
	CHECK_EQ_INT(b.applied_index, 32);
	CHECK_EQ_INT(b.idem_count, ic);
	CHECK(fsm_digest(&b, NULL) == db);

	/* An image at or below the applied index is a no-op (raft's start-up restore when the
	 * store is already ahead): success, nothing changed. */
	CHECK_EQ_INT(restore(&b, img.data, img.len), 0); /* index 30 < 32 */
	CHECK_EQ_INT(b.applied_index, 32);
	CHECK(fsm_digest(&b, NULL) == db);
	CHECK(!kv_absent(&b, "later"));
	struct buf img32;
	snapshot_image(&b, &img32); /* index 32 == 32 */
	CHECK_EQ_INT(put(&b, 33, "after", "1"), FSM_OK_CREATED);
	uint64_t db33 = fsm_digest(&b, NULL);
	CHECK_EQ_INT(restore(&b, img32.data, img32.len), 0);
	CHECK_EQ_INT(b.applied_index, 33);
	CHECK(fsm_digest(&b, NULL) == db33);

	/* Restoring into a fresh store works from an image of a restored store too. */
	struct env ec;
	struct fsm c;
	env_make(&ec);
	open_fsm(&c, &ec, 60, 100);
	CHECK_EQ_INT(restore(&c, img32.data, img32.len), 0);
	CHECK_EQ_INT(c.applied_index, 32);
	CHECK(fsm_digest(&c, NULL) == db);
	fsm_close(&c);
	env_remove(&ec);

	buf_close(&img);
	buf_close(&img32);
	fsm_close(&a);
	fsm_close(&b);
	env_remove(&ea);
	env_remove(&eb);
}

/* Image helpers for hand-built images. */
static void img_begin(struct buf *b, uint64_t index, uint64_t count)
{
	buf_reset(b);
	buf_append(b, "CLSNAP01", 8);
	buf_put_u64(b, index);
	buf_put_u64(b, count);
}

static void img_record(struct buf *b, const void *k, size_t kl, const void *v, size_t vl)
{
	buf_put_u32(b, (uint32_t)kl);
	buf_append(b, k, kl);
	buf_put_u32(b, (uint32_t)vl);
	buf_append(b, v, vl);
}

static void img_seal(struct buf *b)
{
	buf_put_u64(b, command_hash(COMMAND_HASH_INIT, b->data, b->len));
}

static void test_snapshot_corruption(void)
{
	struct env ea, eb;
	struct fsm a, b;
	env_make(&ea);
	env_make(&eb);
	open_fsm(&a, &ea, 60, 100);
	open_fsm(&b, &eb, 60, 100);

	/* A small image of A at index 5. */
	put(&a, 1, "k1", "v1");
	put_x(&a, 2, "k2", "v2", (struct kvreq){.ts = 100, .idem = "i"});
	member_set(&a, 3, "n", 1, "r", "h");
	put(&a, 4, "k1", "v1b");
	del(&a, 5, "k2");
	struct buf img;
	snapshot_image(&a, &img);

	/* B has its own state at index 2, so any accepted image would visibly replace it. */
	put(&b, 1, "mine", "b");
	put_x(&b, 2, "mine2", "b", (struct kvreq){.ts = 50, .idem = "bi"});
	const uint64_t db = fsm_digest(&b, NULL);
	const uint64_t bic = b.idem_count;
#define CHECK_B_UNCHANGED()                        \
	do {                                       \
		CHECK(fsm_digest(&b, NULL) == db); \
		CHECK_EQ_INT(b.applied_index, 2);  \
		CHECK_EQ_INT(b.idem_count, bic);   \
	} while (0)

	uint8_t *copy = malloc(img.len);
	int accepted = 0;
	/* Every single-byte flip anywhere (header, records, checksum). */
	for (size_t i = 0; i < img.len; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			memcpy(copy, img.data, img.len);
			copy[i] ^= (uint8_t)(1u << bit);
			if (restore(&b, copy, img.len) == 0) {
				fprintf(stderr, "image with byte %zu bit %d flipped accepted\n", i,
				        bit);
				accepted++;
			}
		}
	}
	CHECK_EQ_INT(accepted, 0);
	CHECK_B_UNCHANGED();

	/* Every truncation, on an exact-size heap copy so overreads would be caught. */
	accepted = 0;
	for (size_t len = 0; len < img.len; len++) {
		uint8_t *t = malloc(len ? len : 1);
		memcpy(t, img.data, len);
		if (restore(&b, t, len) == 0)
			accepted++;
		free(t);
	}
	CHECK_EQ_INT(accepted, 0);
	/* Appended garbage, too. */
	{
		struct buf x;
		buf_init(&x);
		buf_append(&x, img.data, img.len);
		buf_put_u8(&x, 0);
		CHECK_EQ_INT(restore(&b, x.data, x.len), -1);
		buf_close(&x);
	}
	CHECK_B_UNCHANGED();

	/* Hand-built images with a valid checksum but bad structure. */
	struct buf h;
	buf_init(&h);
	char err[256] = "";

	/* The baseline: a well-formed hand-built image is accepted (so the rejections below
	 * are about the one thing each changes). Restored into a scratch fsm. */
	{
		struct env es;
		struct fsm s;
		env_make(&es);
		open_fsm(&s, &es, 60, 100);
		uint8_t rec[24 + 2] = {0};
		rec[7] = 3;  /* create_index */
		rec[15] = 4; /* modify_index */
		rec[23] = 2; /* version */
		rec[24] = 'o';
		rec[25] = 'k';
		img_begin(&h, 7, 2);
		img_record(&h, "k/hand", 6, rec, sizeof rec);
		img_record(&h, "m/idem_count", 12, "\0\0\0\0\0\0\0\0", 8);
		img_seal(&h);
		CHECK_EQ_INT(fsm_snapshot_restore(&s, h.data, h.len, err, sizeof err), 0);
		CHECK_EQ_INT(s.applied_index, 7);
		CHECK_KV(&s, "hand", 3, 4, 2, "ok");
		/* An empty image (count 0) is valid and empties the store. */
		img_begin(&h, 8, 0);
		img_seal(&h);
		CHECK_EQ_INT(h.len, 32);
		CHECK_EQ_INT(fsm_snapshot_restore(&s, h.data, h.len, err, sizeof err), 0);
		CHECK_EQ_INT(s.applied_index, 8);
		CHECK(kv_absent(&s, "hand"));
		uint64_t n = 1;
		fsm_digest(&s, &n);
		CHECK_EQ_INT(n, 0);
		fsm_close(&s);
		env_remove(&es);
	}

	/* Bad magic. */
	img_begin(&h, 7, 1);
	h.data[7] = '2';
	img_record(&h, "k/x", 3, "0123456789012345678901234", 25);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	CHECK(strstr(err, "header") != NULL);
	/* Bad checksum (a correct image with the checksum off by one). */
	memcpy(copy, img.data, img.len);
	copy[img.len - 1] ^= 0x80;
	CHECK_EQ_INT(fsm_snapshot_restore(&b, copy, img.len, err, sizeof err), -1);
	CHECK(strstr(err, "checksum") != NULL);
	/* Count larger than the records present. */
	img_begin(&h, 7, 2);
	img_record(&h, "k/x", 3, "0123456789012345678901234", 25);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	img_begin(&h, 7, UINT64_MAX);
	img_record(&h, "k/x", 3, "0123456789012345678901234", 25);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	/* Count smaller than the records present (trailing bytes). */
	img_begin(&h, 7, 1);
	img_record(&h, "k/x", 3, "0123456789012345678901234", 25);
	img_record(&h, "k/y", 3, "0123456789012345678901234", 25);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	/* An empty key. */
	img_begin(&h, 7, 1);
	img_record(&h, "", 0, "v", 1);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	/* A key or value length pointing past the end. */
	img_begin(&h, 7, 1);
	buf_put_u32(&h, 0xffffffffu);
	buf_append(&h, "k/x", 3);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	img_begin(&h, 7, 1);
	buf_put_u32(&h, 3);
	buf_append(&h, "k/x", 3);
	buf_put_u32(&h, 100);
	buf_append(&h, "short", 5);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	/* A record cut in the middle of its value length. */
	img_begin(&h, 7, 1);
	buf_put_u32(&h, 3);
	buf_append(&h, "k/x", 3);
	buf_append(&h, "\0\0", 2);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	/* Too short for even a header and a checksum. */
	CHECK_EQ_INT(fsm_snapshot_restore(&b, "CLSNAP01", 8, err, sizeof err), -1);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, NULL, 0, err, sizeof err), -1);
	CHECK_B_UNCHANGED();
	CHECK_EQ_INT(b.stats.restores_ok, 0);

	/* Well-formed images at or below B's applied index (2) are skipped: B keeps its own
	 * state even though the image differs from it. */
	for (uint64_t idx = 1; idx <= 2; idx++) {
		uint8_t rec[24 + 1] = {0};
		rec[7] = rec[15] = rec[23] = 1;
		rec[24] = 'z';
		img_begin(&h, idx, 1);
		img_record(&h, "k/hand", 6, rec, sizeof rec);
		img_seal(&h);
		CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), 0);
		CHECK(kv_absent(&b, "hand"));
		CHECK_B_UNCHANGED();
	}
	CHECK_EQ_INT(b.stats.restores_ok, 0);

	/* After all that, the genuine image still restores. */
	CHECK_EQ_INT(restore(&b, img.data, img.len), 0);
	CHECK(fsm_digest(&b, NULL) == fsm_digest(&a, NULL));
	CHECK_EQ_INT(b.applied_index, 5);

	free(copy);
	buf_close(&h);
	buf_close(&img);
	fsm_close(&a);
	fsm_close(&b);
	env_remove(&ea);
	env_remove(&eb);
#undef CHECK_B_UNCHANGED
}

/* The raft_fsm callbacks as raft drives them (f->raft NULL: the index is applied_index). */
static void test_snapshot_iface(void)
{
	struct env ea, eb;
	struct fsm a, b;
	env_make(&ea);
	env_make(&eb);
	open_fsm(&a, &ea, 60, 100);
	open_fsm(&b, &eb, 60, 100);
	put(&a, 1, "k", "v");
	put_x(&a, 2, "j", "w", (struct kvreq){.ts = 7, .idem = "id"});
	member_set(&a, 3, "n1", 1, "r", "h");

	struct raft_buffer *bufs = NULL;
	unsigned n = 0;
	CHECK_EQ_INT(a.iface.snapshot(&a.iface, &bufs, &n), 0);
	CHECK(a.snap_active);
	/* A second snapshot while one is in flight is refused. */
	struct raft_buffer *bufs2 = NULL;
	unsigned n2 = 0;
	CHECK_EQ_INT(a.iface.snapshot(&a.iface, &bufs2, &n2), RAFT_BUSY);
	/* Applies between the snapshot and its async copy do not leak into it. */
	put(&a, 4, "k", "later");
	CHECK_EQ_INT(a.iface.snapshot_async(&a.iface, &bufs, &n), 0);
	CHECK_EQ_INT(n, 1);

	/* Restore takes ownership of a raft_malloc'd copy of the image. */
	struct raft_buffer rb;
	rb.len = bufs[0].len;
	rb.base = raft_malloc(rb.len);
	memcpy(rb.base, bufs[0].base, rb.len);
	CHECK_EQ_INT(b.iface.restore(&b.iface, &rb), 0);
	CHECK_EQ_INT(b.applied_index, 3);
	CHECK_KV(&b, "k", 1, 1, 1, "v");
	CHECK_EQ_INT(b.idem_count, 1);

	CHECK_EQ_INT(a.iface.snapshot_finalize(&a.iface, &bufs, &n), 0);
	CHECK(bufs == NULL);
	CHECK(!a.snap_active);
	CHECK_EQ_INT(a.stats.snapshots_ok, 1);

	/* A damaged image through the iface: RAFT_CORRUPT, counted, state kept. */
	CHECK_EQ_INT(a.iface.snapshot(&a.iface, &bufs, &n), 0);
	CHECK_EQ_INT(a.iface.snapshot_async(&a.iface, &bufs, &n), 0);
	rb.len = bufs[0].len;
	rb.base = raft_malloc(rb.len);
	memcpy(rb.base, bufs[0].base, rb.len);
	((char *)rb.base)[rb.len / 2] ^= 1;
	uint64_t d = fsm_digest(&b, NULL);
	CHECK_EQ_INT(b.iface.restore(&b.iface, &rb), RAFT_CORRUPT);
	CHECK_EQ_INT(b.stats.restores_failed, 1);
	CHECK(fsm_digest(&b, NULL) == d);
	CHECK_EQ_INT(a.iface.snapshot_finalize(&a.iface, &bufs, &n), 0);

	/* Applying through the iface needs raft's last_applied; covered by
	 * test_raft_fixture. */
	fsm_close(&a);
	fsm_close(&b);
	env_remove(&ea);
	env_remove(&eb);
}

/* After a restart raft re-delivers entries the store already holds (the fsm skips them), so
 * for a while raft's last_applied trails the store. A snapshot taken then must be labelled
 * with the index the store state really reflects: an image carrying state X' under an older
 * index X would make whoever installs it apply X+1..X' a second time. */
static void test_snapshot_store_ahead_of_raft(void)
{
	struct env ea, eb;
	struct fsm a, b;
	env_make(&ea);
	env_make(&eb);
	open_fsm(&a, &ea, 60, 100);
	open_fsm(&b, &eb, 60, 100);
	for (uint64_t i = 1; i <= 10; i++)
		put(&a, i, "counter", "x"); /* version == number of applies */
	CHECK_KV(&a, "counter", 1, 10, 10, "x");

	static struct raft fake_raft; /* only last_applied is read */
	fake_raft.last_applied = 5;   /* replaying: raft is at 5, the store at 10 */
	a.raft = &fake_raft;
	struct raft_buffer *bufs = NULL;
	unsigned n = 0;
	CHECK_EQ_INT(a.iface.snapshot(&a.iface, &bufs, &n), 0);
	CHECK_EQ_INT(a.iface.snapshot_async(&a.iface, &bufs, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(restore(&b, bufs[0].base, bufs[0].len), 0);
	CHECK_EQ_INT(a.iface.snapshot_finalize(&a.iface, &bufs, &n), 0);
	a.raft = NULL;

	/* B's raft resumes from the snapshot's raft index (5) and delivers 6..10: none of them
	 * may change B, which already holds their effect. */
	for (uint64_t i = 6; i <= 10; i++)
		put(&b, i, "counter", "x");
	CHECK_KV(&b, "counter", 1, 10, 10, "x");
	CHECK(fsm_digest(&b, NULL) == fsm_digest(&a, NULL));
	CHECK_EQ_INT(b.applied_index, 10);

	/* The other way round (raft ahead because its last entries were not commands, e.g.
	 * configuration changes) labels the image with raft's index: nothing in between
	 * changes the store. */
	fake_raft.last_applied = 12;
	a.raft = &fake_raft;
	CHECK_EQ_INT(a.iface.snapshot(&a.iface, &bufs, &n), 0);
	CHECK_EQ_INT(a.snap_index, 12);
	CHECK_EQ_INT(a.iface.snapshot_finalize(&a.iface, &bufs, &n), 0);
	a.raft = NULL;

	fsm_close(&a);
	fsm_close(&b);
	env_remove(&ea);
	env_remove(&eb);
}

int main(void)
{
	test_kv_basic();
	test_cas();
	test_restart_never_double_applies();
	test_idempotency();
	test_idempotency_ttl();
	test_idempotency_count_bound();
	test_members();
	test_digest();
	test_snapshot_round_trip();
	test_snapshot_corruption();
	test_snapshot_iface();
	test_snapshot_store_ahead_of_raft();
	TEST_DONE();
}
