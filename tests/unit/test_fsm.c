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

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

/* ---- scaffolding ---- */

struct env {
	char dir[64];
	char db[96];
};

static void set_limits(uint32_t ttl_s, uint32_t max);

/* Also resets the stamped limits to 60 s / 100 records. */
static void env_make(struct env *e)
{
	set_limits(60, 100);
	snprintf(e->dir, sizeof e->dir, "/tmp/cloudless-test-fsm-XXXXXX");
	if (mkdtemp(e->dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	snprintf(e->db, sizeof e->db, "%s/db", e->dir);
}

static void env_remove(struct env *e)
{
	test_rmtree(e->dir);
}

/* The idempotency limits the simulated leader stamps into the entries put_x and del_x build
 * (the fsm itself takes none: see fsm.c). */
static uint32_t limit_ttl_s = 60, limit_max = 100;

static void set_limits(uint32_t ttl_s, uint32_t max)
{
	limit_ttl_s = ttl_s;
	limit_max = max;
}

static void open_fsm(struct fsm *f, struct env *e)
{
	char err[512] = "";
	if (fsm_init(f, e->db, err, sizeof err) != 0) {
		fprintf(stderr, "fsm_init: %s\n", err);
		exit(2);
	}
}

/* n replicas, each with its own store. */
static void open_replicas(struct env *e, struct fsm *f, int n)
{
	for (int i = 0; i < n; i++) {
		env_make(&e[i]);
		open_fsm(&f[i], &e[i]);
	}
}

static void close_replicas(struct env *e, struct fsm *f, int n)
{
	for (int i = 0; i < n; i++) {
		fsm_close(&f[i]);
		env_remove(&e[i]);
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
	bool internal;   /* idem is an internal (follower) key */
	bool resent;     /* ...re-sent after an attempt with an unknown outcome */
	uint8_t version; /* 0 = COMMAND_VERSION; 1 = an entry written before version 2 */
};

static void kv_command(struct command *c, enum command_type type, const char *key, struct kvreq q)
{
	memset(c, 0, sizeof *c);
	c->version = q.version;
	c->type = type;
	c->ts_ms = q.ts;
	c->idem_ttl_s = limit_ttl_s;
	c->idem_max = limit_max;
	c->idem_key = S(q.idem);
	c->idem_internal = q.internal;
	c->resent = q.resent;
	c->has_cas = q.has_cas;
	c->cas = q.cas;
	c->key = S(key);
}

static unsigned put_x(struct fsm *f, uint64_t index, const char *key, const char *value,
                      struct kvreq q)
{
	struct command c;
	kv_command(&c, COMMAND_KV_PUT, key, q);
	c.value = S(value);
	return apply_cmd(f, index, &c);
}

static unsigned del_x(struct fsm *f, uint64_t index, const char *key, struct kvreq q)
{
	struct command c;
	kv_command(&c, COMMAND_KV_DELETE, key, q);
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
	return fsm_idem_get(f, key, strlen(key), false, &rec) == 1;
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

/* ...and the internal records (j/) match the count and first key the fsm keeps for them. */
static void check_internal_state(struct fsm *f, const char *file, int line)
{
	struct store_iter it;
	uint64_t n = 0, first_ts = 0;
	char first[COMMAND_MAX_IDEM + 1] = "";
	store_iter_init(&it, &f->store, NULL, "j/", 2, NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl, vl;
		const char *k = store_iter_key(&it, &kl);
		const char *v = store_iter_value(&it, &vl);
		if (n++ == 0) {
			snprintf(first, sizeof first, "%.*s", (int)(kl - 2), k + 2);
			for (int i = 0; i < 8 && vl >= 8; i++)
				first_ts = first_ts << 8 | (uint8_t)v[i];
		}
	}
	store_iter_close(&it);
	bool ok = f->internal_count == n && f->internal_first.len == strlen(first) &&
	          (n == 0 || (memcmp(f->internal_first.data, first, strlen(first)) == 0 &&
	                      f->internal_first_ts == first_ts));
	testlib_checks++;
	if (!ok) {
		testlib_failures++;
		fprintf(
		    stderr,
		    "%s:%d: internal records: %llu kept as %llu, first \"%s\" kept as \"%.*s\"\n",
		    file, line, (unsigned long long)n, (unsigned long long)f->internal_count, first,
		    (int)f->internal_first.len,
		    f->internal_first.data ? f->internal_first.data : "");
	}
}

#define CHECK_IDEM_CONSISTENT(f)                                                       \
	do {                                                                           \
		uint64_t ni_ = count_prefix((f), "i/"), nt_ = count_prefix((f), "t/"); \
		CHECK_EQ_INT((f)->idem_count, ni_);                                    \
		CHECK_EQ_INT(nt_, ni_);                                                \
		CHECK_EQ_INT(stored_u64((f), "m/idem_count"), ni_);                    \
		check_internal_state((f), __FILE__, __LINE__);                         \
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
	open_fsm(&f, &e);
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
		kv_command(&c, COMMAND_KV_PUT, "bin", (struct kvreq){.ts = 1000});
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
	open_fsm(&f, &e);
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
	open_fsm(&f, &e);
	CHECK_EQ_INT(put(&f, 1, "a", "1"), FSM_OK_CREATED);
	CHECK_EQ_INT(put(&f, 2, "a", "2"), FSM_OK_UPDATED);
	CHECK_EQ_INT(put_x(&f, 3, "b", "x", (struct kvreq){.ts = 5000, .idem = "req"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(member_set(&f, 4, "n1", 11, "r:1", "h:1"), FSM_MEMBER_OK);
	CHECK_EQ_INT(f.applied_index, 4);
	uint64_t d = digest(&f);
	fsm_close(&f);

	open_fsm(&f, &e);
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
	open_fsm(&f, &e);
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
	open_fsm(&f, &e); /* 60 s TTL */

	CHECK_EQ_INT(put_x(&f, 1, "a", "v1", (struct kvreq){.ts = 1000, .idem = "r1"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, false, &rec), 0);
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
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, false, &rec), 0);
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
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, false, &rec), 0);
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
	CHECK_EQ_INT(fsm_idem_get(&f, "r3", 2, false, &rec), 0);
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
	open_fsm(&f, &e);
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
	open_fsm(&f, &e); /* 60 s TTL */
	const uint64_t t0 = 1700000000000ULL;

	CHECK_EQ_INT(put_x(&f, 1, "k", "v", (struct kvreq){.ts = t0, .idem = "r1"}),
	             FSM_OK_CREATED);
	/* Exactly at the TTL the record still answers. */
	CHECK_EQ_INT(put_x(&f, 2, "k", "v", (struct kvreq){.ts = t0 + 60000, .idem = "r1"}),
	             REPLAY(FSM_OK_CREATED));
	CHECK_KV(&f, "k", 1, 1, 1, "v");
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, false, &rec), 0);

	/* Past the TTL the key is free again: the request applies anew, and the record now
	 * describes the new entry. */
	CHECK_EQ_INT(put_x(&f, 3, "k", "v", (struct kvreq){.ts = t0 + 60001, .idem = "r1"}),
	             FSM_OK_UPDATED);
	CHECK_KV(&f, "k", 1, 3, 2, "v");
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, false, &rec), 0);
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
	CHECK_EQ_INT(fsm_idem_get(&f, "r1", 2, false, &rec), 0);
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
	CHECK_EQ_INT(fsm_idem_get(&f, "old-b", 5, false, &rec), 0); /* t1+1+60000 is not past yet */
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
	set_limits(3600, 3);
	open_fsm(&f, &e); /* long TTL: only the count bound prunes */

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
	CHECK_EQ_INT(fsm_idem_get(&f, "req-17", 6, false, &rec), 0);
	CHECK_EQ_INT(fsm_idem_get(&f, "req-18", 6, false, &rec), 0);
	CHECK_EQ_INT(fsm_idem_get(&f, "req-19", 6, false, &rec), 0);
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

	/* The bound holds when later entries carry a smaller limit (their leader restarted with
	 * another --idempotency-max): the excess is trimmed a few records per apply until the
	 * count is back within the bound. */
	fsm_close(&f);
	set_limits(3600, 1);
	open_fsm(&f, &e);
	CHECK_EQ_INT(f.idem_count, 3);
	CHECK_EQ_INT(put_x(&f, ++index, "z", "1", (struct kvreq){.ts = 3000, .idem = "new"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(f.idem_count, 1);
	CHECK_EQ_INT(fsm_idem_get(&f, "new", 3, false, &rec), 0); /* the newest is kept */
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
	open_fsm(&f, &e);

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
	open_fsm(&f, &e);
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
	open_fsm(&a, &ea);
	open_fsm(&b, &eb);
	open_fsm(&c, &ec);

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
	open_fsm(&d, &ed);
	apply_history(&d, 100, 0);
	CHECK(fsm_digest(&d, NULL) != da);
	fsm_close(&d);
	env_remove(&ed);

	/* A reopened store digests the same. */
	fsm_close(&b);
	open_fsm(&b, &eb);
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
	CHECK_EQ_INT(fsm_snapshot_write(&snap, f->applied_index, img, NULL), 0);
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
	open_fsm(&a, &ea);
	open_fsm(&b, &eb);

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
	CHECK_EQ_INT(fsm_idem_get(&b, "idem-19", 7, false, &rec), 0);
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
	open_fsm(&b, &eb);
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
	open_fsm(&c, &ec);
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

/* Image helpers for hand-built images. They are version 1 images (CLSNAP01, byte-wise FNV-1a)
 * on purpose: what fsm_snapshot_write makes is version 2, so the tests below that restore
 * these keep the read path of older backups covered. */
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
	open_fsm(&a, &ea);
	open_fsm(&b, &eb);

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
		open_fsm(&s, &es);
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

	/* Keys out of order, or one twice: an image we never write, and one whose derived
	 * state (counts, first records) would differ from what a restart derives from the
	 * store it leaves. */
	img_begin(&h, 7, 2);
	img_record(&h, "k/b", 3, "0123456789012345678901234", 25);
	img_record(&h, "k/a", 3, "0123456789012345678901234", 25);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	CHECK(strstr(err, "malformed") != NULL);
	CHECK_B_UNCHANGED();
	img_begin(&h, 7, 2);
	img_record(&h, "j/x", 3, "0123456789012345678901234567890123", 33);
	img_record(&h, "j/x", 3, "0123456789012345678901234567890123", 33);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	CHECK_B_UNCHANGED();

	/* Bad magic. */
	img_begin(&h, 7, 1);
	h.data[7] = '9'; /* CLSNAP09: no such version */
	img_record(&h, "k/x", 3, "0123456789012345678901234", 25);
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_restore(&b, h.data, h.len, err, sizeof err), -1);
	CHECK(strstr(err, "not a Cloudless snapshot image") != NULL);
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
/* A file an operator hands to `restore` is checked without any store: every kind of damage is
 * refused with its own message, and a good image gives its index and record count. */
static void test_snapshot_check(void)
{
	struct env e;
	struct fsm f;
	env_make(&e);
	open_fsm(&f, &e);
	put(&f, 1, "k1", "v1");
	put(&f, 2, "k2", "v2");
	member_set(&f, 3, "n", 1, "r", "h");
	struct buf img;
	snapshot_image(&f, &img);
	char err[256] = "";
	uint64_t index = 0, count = 0;
	CHECK_EQ_INT(fsm_snapshot_check(img.data, img.len, &index, &count, err, sizeof err), 0);
	CHECK_EQ_INT(index, 3);
	CHECK_EQ_INT(count, 3); /* k1, k2, n/n (m/applied travels in the header) */
	struct {
		size_t len;
		size_t flip; /* flip the byte at this offset, SIZE_MAX: none */
		const char *magic;
		const char *says;
	} cases[] = {
	    {0, SIZE_MAX, NULL, "is empty"},
	    {5, SIZE_MAX, NULL, "not a Cloudless snapshot image"},
	    {20, SIZE_MAX, NULL, "too short"},
	    {img.len - 1, SIZE_MAX, NULL, "checksum mismatch"},
	    {img.len, img.len / 2, NULL, "checksum mismatch"},
	    {img.len, img.len - 1, NULL, "checksum mismatch"},
	    {img.len, SIZE_MAX, "CLSNAP03", "not a Cloudless snapshot image"},
	    /* a v2 image relabelled v1: the other checksum, so it does not verify */
	    {img.len, SIZE_MAX, "CLSNAP01", "checksum mismatch"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *copy = malloc(img.len);
		memcpy(copy, img.data, img.len);
		if (cases[i].flip != SIZE_MAX)
			copy[cases[i].flip] ^= 0x01;
		if (cases[i].magic != NULL)
			memcpy(copy, cases[i].magic, 8);
		err[0] = '\0';
		CHECK_EQ_INT(
		    fsm_snapshot_check(copy, cases[i].len, &index, &count, err, sizeof err), -1);
		CHECK(strstr(err, cases[i].says) != NULL);
		free(copy);
	}
	/* Records that are wrong although the checksum is right: the same check as restore's. */
	struct buf h;
	buf_init(&h);
	img_begin(&h, 9, 2);
	img_record(&h, "k/b", 3, "x", 1);
	img_record(&h, "k/a", 3, "x", 1); /* out of order */
	img_seal(&h);
	CHECK_EQ_INT(fsm_snapshot_check(h.data, h.len, &index, &count, err, sizeof err), -1);
	CHECK(strstr(err, "malformed") != NULL);
	buf_close(&h);
	buf_close(&img);
	fsm_close(&f);
	env_remove(&e);
}

/* The data digest leaves out exactly the cluster's own records (n/, g/); an image's digests
 * are those of the store it was written from; and resetting a store for a new cluster changes
 * n/ and g/ only, in one batch, keeping the applied index and the data digest. */
static void test_data_digest_and_reset(void)
{
	struct env e;
	struct fsm f;
	env_make(&e);
	open_fsm(&f, &e);
	put(&f, 1, "k1", "v1");
	struct fsm_digest d0, d1, d2;
	fsm_digests(&f, &d0);
	CHECK(d0.state == fsm_digest(&f, NULL) && d0.state == d0.data);
	CHECK_EQ_INT(d0.state_keys, 1);
	member_set(&f, 2, "n1", 1, "r1", "h1");
	struct command c;
	memset(&c, 0, sizeof c);
	c.type = COMMAND_CLUSTER_SET;
	c.cluster_id = S("0123456789abcdef0123456789abcdef");
	CHECK_EQ_INT(apply_cmd(&f, 3, &c), FSM_MEMBER_OK);
	fsm_digests(&f, &d1);
	CHECK(d1.state != d0.state && d1.data == d0.data);
	CHECK_EQ_INT(d1.state_keys, 3);
	CHECK_EQ_INT(d1.data_keys, 1);
	put(&f, 4, "k2", "v2");
	fsm_digests(&f, &d2);
	CHECK(d2.data != d1.data && d2.state != d1.state);

	struct store_snap snap;
	struct buf img;
	struct fsm_digest di;
	buf_init(&img);
	store_snap_take(&snap, &f.store);
	CHECK_EQ_INT(fsm_snapshot_write(&snap, f.applied_index, &img, &di), 0);
	store_snap_release(&snap);
	CHECK(di.state == d2.state && di.data == d2.data && di.state_keys == d2.state_keys &&
	      di.data_keys == d2.data_keys);

	char err[256] = "", id[COMMAND_MAX_INCARNATION + 1];
	uint64_t version = f.members_version;
	CHECK_EQ_INT(fsm_reset_cluster(&f, "fedcba9876543210fedcba9876543210", err, sizeof err), 0);
	CHECK(f.members_version != version);
	CHECK_EQ_INT(f.applied_index, 4);
	CHECK_EQ_INT(count_prefix(&f, "n/"), 0);
	CHECK_EQ_INT(fsm_cluster_id(&f, id, sizeof id), 0);
	CHECK_EQ_STR(id, "fedcba9876543210fedcba9876543210");
	struct fsm_digest d3;
	fsm_digests(&f, &d3);
	CHECK(d3.data == d2.data && d3.state != d2.state);
	CHECK_EQ_INT(stored_u64(&f, "m/applied"), 4);
	/* It survives a reopen (a synced batch). */
	fsm_close(&f);
	open_fsm(&f, &e);
	struct fsm_digest d4;
	fsm_digests(&f, &d4);
	CHECK(d4.state == d3.state && f.applied_index == 4);
	buf_close(&img);
	fsm_close(&f);
	env_remove(&e);
}

static void test_snapshot_iface(void)
{
	struct env ea, eb;
	struct fsm a, b;
	env_make(&ea);
	env_make(&eb);
	open_fsm(&a, &ea);
	open_fsm(&b, &eb);
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
	open_fsm(&a, &ea);
	open_fsm(&b, &eb);
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

/* ---- the idempotency limits come from the entries ---- */

/* The issue this guards against: nodes used their own --idempotency-ttl, so a key reused
 * after the leader's (short) TTL was applied anew on the leader and replayed on followers
 * with the default TTL. Now the leader's limits travel in each entry: two replicas applying
 * the same entries decide the same, and a later entry's own TTL is what counts. */
static void test_limits_from_entries(void)
{
	struct env e[2];
	struct fsm r[2];
	struct fsm_idem rec;
	open_replicas(e, r, 2);
	const uint64_t t0 = 1700000000000ULL;

	for (int i = 0; i < 2; i++) {
		struct fsm *f = &r[i];
		set_limits(1, 100); /* a leader with --idempotency-ttl 1 */
		CHECK_EQ_INT(put_x(f, 1, "k", "v1", (struct kvreq){.ts = t0, .idem = "K"}),
		             FSM_OK_CREATED);
		/* 2.5 s later the same key for another request: expired under the entry's TTL. */
		CHECK_EQ_INT(put_x(f, 2, "k", "v2", (struct kvreq){.ts = t0 + 2500, .idem = "K"}),
		             FSM_OK_UPDATED);
		CHECK_KV(f, "k", 1, 2, 2, "v2");
		/* An entry from a leader with a long TTL keeps that record alive. */
		set_limits(3600, 100);
		CHECK_EQ_INT(put_x(f, 3, "k", "v3", (struct kvreq){.ts = t0 + 5000, .idem = "K"}),
		             FSM_IDEM_MISMATCH);
		CHECK_EQ_INT(put_x(f, 4, "k", "v2", (struct kvreq){.ts = t0 + 6000, .idem = "K"}),
		             REPLAY(FSM_OK_UPDATED));
		CHECK_EQ_INT(fsm_idem_get(f, "K", 1, false, &rec), 0);
		CHECK_EQ_INT(rec.index, 2);
		/* The cap too: entries with a cap of 1 trim the table to one record. */
		CHECK_EQ_INT(put_x(f, 5, "x", "1", (struct kvreq){.ts = t0 + 7000, .idem = "X1"}),
		             FSM_OK_CREATED);
		CHECK_EQ_INT(f->idem_count, 2);
		set_limits(3600, 1);
		CHECK_EQ_INT(put_x(f, 6, "x", "2", (struct kvreq){.ts = t0 + 8000, .idem = "X2"}),
		             FSM_OK_UPDATED);
		CHECK_EQ_INT(f->idem_count, 1);
		CHECK(idem_absent(f, "K"));
		CHECK(idem_absent(f, "X1"));
		CHECK_IDEM_CONSISTENT(f);
	}
	CHECK(fsm_digest(&r[0], NULL) == fsm_digest(&r[1], NULL));
	CHECK_EQ_INT(r[0].applied_index, r[1].applied_index);

	/* Reopening (a restart, with whatever flags) changes nothing: the fsm takes none. */
	fsm_close(&r[0]);
	open_fsm(&r[0], &e[0]);
	CHECK(fsm_digest(&r[0], NULL) == fsm_digest(&r[1], NULL));
	close_replicas(e, r, 2);
}

static size_t stored_len(struct fsm *f, const char *key, size_t klen)
{
	char *v;
	size_t len = 0;
	if (store_get(&f->store, key, klen, &v, &len) != 0)
		return 0;
	free(v);
	return len;
}

/* Entries written before the limits travelled in them (version 1) are applied with the fixed
 * defaults (86400 s, 100000 records), never with the limits of anything else, and keep the
 * record format nodes of that time wrote. */
static void test_version1_entries(void)
{
	struct env e;
	struct fsm f;
	struct fsm_idem rec;
	env_make(&e);
	open_fsm(&f, &e);
	const uint64_t t0 = 1700000000000ULL, day = 86400000ULL;
	set_limits(1, 1); /* ignored by version 1 entries */

	const struct kvreq v1 = {.ts = t0, .idem = "old", .version = 1};
	CHECK_EQ_INT(put_x(&f, 1, "k", "v1", v1), FSM_OK_CREATED);
	CHECK_EQ_INT(stored_len(&f, "i/old", 5), 25);
	CHECK_EQ_INT(fsm_idem_get(&f, "old", 3, false, &rec), 0);
	CHECK(!rec.has_cur_index);
	/* A day later (exactly the default TTL) the record still answers. */
	CHECK_EQ_INT(
	    put_x(&f, 2, "k", "other", (struct kvreq){.ts = t0 + day, .idem = "old", .version = 1}),
	    FSM_IDEM_MISMATCH);
	CHECK_EQ_INT(
	    put_x(&f, 3, "k", "v1", (struct kvreq){.ts = t0 + day, .idem = "old", .version = 1}),
	    REPLAY(FSM_OK_CREATED));
	/* More records than a cap of 1 stay: the default cap applies. */
	CHECK_EQ_INT(
	    put_x(&f, 4, "a", "1", (struct kvreq){.ts = t0 + day, .idem = "a", .version = 1}),
	    FSM_OK_CREATED);
	CHECK_EQ_INT(
	    put_x(&f, 5, "b", "1", (struct kvreq){.ts = t0 + day, .idem = "b", .version = 1}),
	    FSM_OK_CREATED);
	CHECK_EQ_INT(f.idem_count, 3);
	CHECK_IDEM_CONSISTENT(&f);
	/* Past the default TTL the key is free again. */
	CHECK_EQ_INT(put_x(&f, 6, "k", "v2",
	                   (struct kvreq){.ts = t0 + day + 1, .idem = "old", .version = 1}),
	             FSM_OK_UPDATED);
	CHECK_KV(&f, "k", 1, 6, 2, "v2");
	CHECK_EQ_INT(f.idem_count, 3);
	CHECK_IDEM_CONSISTENT(&f);

	/* A version 2 entry after them applies its own limits (cap 1: trimmed to its own
	 * record) and writes the longer record. */
	CHECK_EQ_INT(put_x(&f, 7, "c", "1", (struct kvreq){.ts = t0 + day + 2, .idem = "new"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(f.idem_count, 1);
	CHECK_EQ_INT(stored_len(&f, "i/new", 5), 33);
	CHECK_IDEM_CONSISTENT(&f);

	/* Two replicas applying the same version 1 entries end equal, whatever limits anything
	 * else would stamp: the format of what is stored depends on the entry alone. */
	struct env e2[2];
	struct fsm g[2];
	open_replicas(e2, g, 2);
	for (int r = 0; r < 2; r++) {
		set_limits(r ? 3600 : 5, r ? 100000 : 5); /* ignored by version 1 entries */
		for (uint64_t i = 1; i <= 3; i++) {
			char key[8];
			snprintf(key, sizeof key, "r%llu", (unsigned long long)i);
			CHECK_EQ_INT(put_x(&g[r], i, key, "v",
			                   (struct kvreq){.ts = t0 + i, .idem = key, .version = 1}),
			             FSM_OK_CREATED);
		}
	}
	CHECK(fsm_digest(&g[0], NULL) == fsm_digest(&g[1], NULL));
	close_replicas(e2, g, 2);
	fsm_close(&f);
	env_remove(&e);
}

/* A follower's internal keys (a forwarded write's own retries) live apart from clients'
 * keys, replay exactly, and are bounded like them without taking clients' room. */
static void test_internal_keys(void)
{
	struct env e;
	struct fsm f;
	struct fsm_idem rec;
	open_replicas(&e, &f, 1);
	const uint64_t t0 = 1700000000000ULL;

	/* The same key string as a client's key and as an internal one: two requests. */
	CHECK_EQ_INT(put_x(&f, 1, "a", "1", (struct kvreq){.ts = t0, .idem = "abc"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(
	    put_x(&f, 2, "b", "2", (struct kvreq){.ts = t0, .idem = "abc", .internal = true}),
	    FSM_OK_CREATED);
	CHECK_EQ_INT(f.idem_count, 1);
	CHECK_EQ_INT(f.internal_count, 1);
	CHECK_EQ_INT(fsm_idem_get(&f, "abc", 3, false, &rec), 0);
	CHECK_EQ_INT(rec.index, 1);
	CHECK_EQ_INT(fsm_idem_get(&f, "abc", 3, true, &rec), 0);
	CHECK_EQ_INT(rec.index, 2);
	CHECK_EQ_INT(count_prefix(&f, "j/"), 1);
	CHECK_IDEM_CONSISTENT(&f);
	/* Each replays its own request. */
	CHECK_EQ_INT(
	    put_x(&f, 3, "b", "2", (struct kvreq){.ts = t0 + 1, .idem = "abc", .internal = true}),
	    REPLAY(FSM_OK_CREATED));
	CHECK_EQ_INT(put_x(&f, 4, "a", "1", (struct kvreq){.ts = t0 + 1, .idem = "abc"}),
	             REPLAY(FSM_OK_CREATED));
	CHECK_KV(&f, "b", 2, 2, 1, "2");

	/* The create-only CAS: applied, deleted by someone else, then the follower's
	 * retry arrives. It replays "created" and must not create the key again. */
	const struct kvreq create = {
	    .ts = t0 + 2, .idem = "f.1", .internal = true, .has_cas = true, .cas = 0};
	CHECK_EQ_INT(put_x(&f, 5, "c", "mine", create), FSM_OK_CREATED);
	CHECK_EQ_INT(del(&f, 6, "c"), FSM_OK_DELETED);
	struct kvreq resend = create;
	resend.resent = true;
	CHECK_EQ_INT(put_x(&f, 7, "c", "mine", resend), REPLAY(FSM_OK_CREATED));
	CHECK(kv_absent(&f, "c"));
	CHECK_EQ_INT(fsm_idem_get(&f, "f.1", 3, true, &rec), 0);
	CHECK_EQ_INT(rec.index, 5);

	/* A failed create-only CAS records the index it met, so the replay names the same. */
	CHECK_EQ_INT(put(&f, 8, "d", "1"), FSM_OK_CREATED);
	const struct kvreq create_d = {
	    .ts = t0 + 3, .idem = "f.2", .internal = true, .has_cas = true, .cas = 0};
	CHECK_EQ_INT(put_x(&f, 9, "d", "mine", create_d), FSM_CAS_MISMATCH);
	CHECK_EQ_INT(put(&f, 10, "d", "2"), FSM_OK_UPDATED);
	CHECK_EQ_INT(put_x(&f, 11, "d", "mine", create_d), REPLAY(FSM_CAS_MISMATCH));
	CHECK_EQ_INT(fsm_idem_get(&f, "f.2", 3, true, &rec), 0);
	CHECK_EQ_INT(rec.code, FSM_CAS_MISMATCH);
	CHECK(rec.has_cur_index);
	CHECK_EQ_INT(rec.cur_index, 8);
	CHECK_EQ_INT(rec.index, 9);
	/* ...a mismatch on an absent key records 0. */
	CHECK_EQ_INT(
	    put_x(&f, 12, "none", "x",
	          (struct kvreq){
	              .ts = t0 + 3, .idem = "f.3", .internal = true, .has_cas = true, .cas = 5}),
	    FSM_CAS_MISMATCH);
	CHECK_EQ_INT(fsm_idem_get(&f, "f.3", 3, true, &rec), 0);
	CHECK(rec.has_cur_index && rec.cur_index == 0);
	CHECK_EQ_INT(f.internal_count, 4);
	CHECK_IDEM_CONSISTENT(&f);
	/* A first attempt (not re-sent) whose record is absent is simply applied. */
	CHECK_EQ_INT(
	    put_x(&f, 13, "g", "1",
	          (struct kvreq){.ts = t0 + 4, .idem = "f.4", .internal = true, .resent = true}),
	    FSM_OK_CREATED);
	CHECK_IDEM_CONSISTENT(&f);
	close_replicas(&e, &f, 1);
}

/* Internal records are bounded by the entries' TTL and cap, pruned a batch at a time, never
 * at the expense of clients' records; a re-send whose record was pruned is not applied again
 * but answered "unknown"; one whose key sorts past everything pruned was never applied. */
static void test_internal_pruning(void)
{
	struct env e;
	struct fsm f;
	struct fsm_idem rec;
	open_replicas(&e, &f, 1);
	const uint64_t t0 = 1700000000000ULL;
	char key[32];
	uint64_t index = 0;
	set_limits(3600, 3);
	/* Three clients' records at the cap. */
	for (int i = 0; i < 3; i++) {
		snprintf(key, sizeof key, "client-%d", i);
		CHECK_EQ_INT(put_x(&f, ++index, "c", key, (struct kvreq){.ts = t0, .idem = key}),
		             i == 0 ? FSM_OK_CREATED : FSM_OK_UPDATED);
	}
	/* Many forwarded writes: keys sort by creation time like a follower's. */
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof key, "%016llx.f.%04d", (unsigned long long)(t0 + i), i);
		put_x(&f, ++index, "k", "v",
		      (struct kvreq){.ts = t0 + i, .idem = key, .internal = true});
		CHECK(f.internal_count <= 3 + 3); /* the cap, and a slack as small as the cap */
	}
	CHECK_EQ_INT(f.idem_count, 3);
	for (int i = 0; i < 3; i++) {
		snprintf(key, sizeof key, "client-%d", i);
		CHECK_EQ_INT(fsm_idem_get(&f, key, strlen(key), false, &rec), 0);
	}
	CHECK_IDEM_CONSISTENT(&f);
	/* The newest survive; the floor is the last one pruned. */
	snprintf(key, sizeof key, "%016llx.f.%04d", (unsigned long long)(t0 + 199), 199);
	CHECK_EQ_INT(fsm_idem_get(&f, key, strlen(key), true, &rec), 0);
	snprintf(key, sizeof key, "%016llx.f.%04d", (unsigned long long)t0, 0);
	CHECK_EQ_INT(fsm_idem_get(&f, key, strlen(key), true, &rec), 1);
	CHECK(f.internal_floor.len > 0);
	char floor[64];
	snprintf(floor, sizeof floor, "%.*s", (int)f.internal_floor.len, f.internal_floor.data);
	CHECK(strcmp(floor, key) >= 0);
	CHECK(strcmp(floor, f.internal_first.data) < 0);

	/* A re-send of a pruned key (its first attempt applied long ago): not applied again. */
	uint64_t d = fsm_digest(&f, NULL);
	CHECK_EQ_INT(
	    put_x(&f, ++index, "k", "other",
	          (struct kvreq){.ts = t0 + 300, .idem = key, .internal = true, .resent = true}),
	    FSM_RESENT_UNKNOWN);
	CHECK_KV(&f, "k", 4, 203, 200, "v");
	CHECK_EQ_INT(fsm_idem_get(&f, key, strlen(key), true, &rec), 1);
	CHECK(fsm_digest(&f, NULL) == d);
	/* The same key as a first attempt, or a re-send past the floor, is applied. */
	snprintf(key, sizeof key, "%016llx.f.%04d", (unsigned long long)(t0 + 500), 500);
	CHECK_EQ_INT(
	    put_x(&f, ++index, "k", "new",
	          (struct kvreq){.ts = t0 + 500, .idem = key, .internal = true, .resent = true}),
	    FSM_OK_UPDATED);
	snprintf(key, sizeof key, "%016llx.f.%04d", (unsigned long long)t0, 0);
	CHECK_EQ_INT(put_x(&f, ++index, "k", "first",
	                   (struct kvreq){.ts = t0 + 501, .idem = key, .internal = true}),
	             FSM_OK_UPDATED);
	CHECK_IDEM_CONSISTENT(&f);

	/* Expiry: with a short TTL the walk (every 64 entries) removes what expired. */
	set_limits(1, 1000);
	uint64_t t1 = t0 + 10000;
	for (int i = 0; i < 130; i++)
		put_x(&f, ++index, "p", "v", (struct kvreq){.ts = t1 + i});
	CHECK_EQ_INT(f.internal_count, 0);
	CHECK_EQ_INT(f.internal_first.len, 0);
	CHECK_IDEM_CONSISTENT(&f);
	/* The floor survives a restart (it is replicated state) and the derived state is
	 * rebuilt from the store. */
	snprintf(floor, sizeof floor, "%.*s", (int)f.internal_floor.len, f.internal_floor.data);
	fsm_close(&f);
	open_fsm(&f, &e);
	CHECK_EQ_INT(f.internal_floor.len, strlen(floor));
	CHECK(f.internal_floor.len == strlen(floor) &&
	      memcmp(f.internal_floor.data, floor, strlen(floor)) == 0);
	CHECK_IDEM_CONSISTENT(&f);
	close_replicas(&e, &f, 1);
}

/* ---- fail stop on read errors ---- */

/* Fails the reads of one kind whose key starts with `prefix`, while on. */
struct fault {
	bool on;
	enum store_fault_op op;
	const char *prefix;
	int hits;
};

static int fault_cb(void *arg, enum store_fault_op op, const void *key, size_t klen)
{
	struct fault *ft = arg;
	size_t pl = strlen(ft->prefix);
	if (!ft->on || op != ft->op || klen < pl || memcmp(key, ft->prefix, pl) != 0)
		return 0;
	ft->hits++;
	return 1;
}

/* Captures what is logged (stderr) between begin and end. */
static int saved_stderr = -1;
static char capture_path[64];

static void capture_begin(void)
{
	snprintf(capture_path, sizeof capture_path, "/tmp/cloudless-test-fsm-log-XXXXXX");
	int fd = mkstemp(capture_path);
	fflush(stderr);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
}

static char *capture_end(void)
{
	static char text[8192];
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	FILE *fp = fopen(capture_path, "r");
	size_t n = fp ? fread(text, 1, sizeof text - 1, fp) : 0;
	text[n] = '\0';
	if (fp)
		fclose(fp);
	unlink(capture_path);
	fputs(text, stderr); /* still part of the test's output */
	return text;
}

/* One read failing during apply: the entry is not applied, the fsm stops with a line naming
 * the entry and what could not be read, and after a restart (no fault) the same entry
 * applies. `prepare` sets up the state the entry meets. */
static void check_read_fault(enum store_fault_op op, const char *prefix, const char *what,
                             void (*prepare)(struct fsm *f, uint64_t *index), const struct kvreq q)
{
	struct env e;
	struct fsm f;
	struct fault ft = {.op = op, .prefix = prefix};
	uint64_t index = 0;
	env_make(&e);
	open_fsm(&f, &e);
	prepare(&f, &index);
	uint64_t before = f.applied_index, count = f.idem_count, d = fsm_digest(&f, NULL);
	store_set_fault_hook(&f.store, fault_cb, &ft);
	ft.on = true;

	struct command c;
	kv_command(&c, COMMAND_KV_PUT, "key", q);
	c.value = S("value");
	struct buf b;
	buf_init(&b);
	command_encode(&c, &b);
	capture_begin();
	void *r = fsm_apply_entry(&f, index + 1, b.data, b.len);
	char *log = capture_end();
	CHECK(r == NULL);
	CHECK(ft.hits > 0);
	CHECK(f.failed);
	CHECK_EQ_INT(f.stats.apply_errors, 1);
	CHECK_EQ_INT(f.applied_index, before);
	CHECK_EQ_INT(stored_u64(&f, "m/applied"), before);
	CHECK_EQ_INT(f.idem_count, count);
	CHECK(strstr(log, "error Store read failed during apply; stopping") != NULL);
	char want[64];
	snprintf(want, sizeof want, "index=%llu ", (unsigned long long)(index + 1));
	CHECK(strstr(log, want) != NULL);
	CHECK(strstr(log, what) != NULL);
	if (strstr(log, what) == NULL)
		fprintf(stderr, "wanted \"%s\" in the log above\n", what);
	/* Fail stop: later entries are refused too, with or without the fault. */
	ft.on = false;
	CHECK(fsm_apply_entry(&f, index + 1, b.data, b.len) == NULL);
	CHECK(fsm_apply_entry(&f, index + 2, b.data, b.len) == NULL);
	CHECK_EQ_INT(f.applied_index, before);
	CHECK(fsm_digest(&f, NULL) == d);
	/* The restart the node exits for: the entry applies. */
	fsm_close(&f);
	open_fsm(&f, &e);
	CHECK(!f.failed);
	CHECK_EQ_INT(f.applied_index, before);
	void *r2 = fsm_apply_entry(&f, index + 1, b.data, b.len);
	CHECK(r2 != NULL);
	CHECK_EQ_INT(f.applied_index, index + 1);
	CHECK_KV(&f, "key", f.applied_index, f.applied_index, 1, "value");
	CHECK_IDEM_CONSISTENT(&f);
	buf_close(&b);
	fsm_close(&f);
	env_remove(&e);
}

static void prepare_plain(struct fsm *f, uint64_t *index)
{
	CHECK_EQ_INT(put(f, ++*index, "other", "1"), FSM_OK_CREATED);
}

static void prepare_records(struct fsm *f, uint64_t *index)
{
	CHECK_EQ_INT(put_x(f, ++*index, "other", "1", (struct kvreq){.ts = 1000, .idem = "r"}),
	             FSM_OK_CREATED);
	CHECK_EQ_INT(f->idem_count, 1);
}

/* Writes a raw record behind the fsm's back (corrupt state). */
static void store_raw(struct fsm *f, const char *key, const char *value, size_t vlen)
{
	char err[256];
	struct store_batch b;
	store_batch_init(&b);
	store_batch_put(&b, key, strlen(key), value, vlen);
	CHECK_EQ_INT(store_write(&f->store, &b, false, err, sizeof err), 0);
	store_batch_close(&b);
}

static void check_corrupt_record(const char *key, const char *idem, const char *what)
{
	struct env e;
	struct fsm f;
	env_make(&e);
	open_fsm(&f, &e);
	CHECK_EQ_INT(put(&f, 1, "x", "1"), FSM_OK_CREATED);
	store_raw(&f, key, "short", 5);
	struct command c;
	kv_command(&c, COMMAND_KV_PUT, "key", (struct kvreq){.ts = 2000, .idem = idem});
	c.value = S("v");
	struct buf b;
	buf_init(&b);
	command_encode(&c, &b);
	capture_begin();
	void *r = fsm_apply_entry(&f, 2, b.data, b.len);
	char *log = capture_end();
	CHECK(r == NULL);
	CHECK(f.failed);
	CHECK_EQ_INT(f.applied_index, 1);
	CHECK_EQ_INT(stored_u64(&f, "m/applied"), 1);
	CHECK(strstr(log, "Store read failed during apply; stopping index=2 ") != NULL);
	CHECK(strstr(log, what) != NULL);
	buf_close(&b);
	fsm_close(&f);
	env_remove(&e);
}

static void test_read_errors_stop(void)
{
	/* The key's record cannot be read: no guessing "absent". */
	check_read_fault(STORE_FAULT_GET, "k/key", "cannot read the kv record", prepare_plain,
	                 (struct kvreq){.ts = 2000});
	check_read_fault(STORE_FAULT_GET, "k/key", "cannot read the kv record", prepare_plain,
	                 (struct kvreq){.ts = 2000, .has_cas = true, .cas = 0});
	/* The idempotency record cannot be read: no guessing "no record". */
	check_read_fault(STORE_FAULT_GET, "i/", "cannot read the idempotency record",
	                 prepare_records, (struct kvreq){.ts = 2000, .idem = "r2"});
	check_read_fault(STORE_FAULT_GET, "j/", "cannot read the internal idempotency record",
	                 prepare_plain,
	                 (struct kvreq){.ts = 2000, .idem = "f.1", .internal = true});
	/* The age index cannot be walked (the record of prepare_records expired by then):
	 * pruning would silently skip. */
	check_read_fault(STORE_FAULT_ITER, "t/", "cannot read the idempotency age index",
	                 prepare_records, (struct kvreq){.ts = 1000 + 60001});
	/* Malformed records are corrupt state, not absent ones. */
	check_corrupt_record("k/key", NULL, "cannot read the kv record");
	check_corrupt_record("i/r", "r", "cannot read the idempotency record");
	check_corrupt_record("i/r", "r", "Corrupt idempotency record");
}

/* Counts iterators over the age index (fails none). */
static int count_age_walks(void *arg, enum store_fault_op op, const void *key, size_t klen)
{
	if (op == STORE_FAULT_ITER && klen >= 2 && memcmp(key, "t/", 2) == 0)
		(*(int *)arg)++;
	return 0;
}

/* Pruning walks the age index only when its first record can go, and then starts at the
 * oldest live record: a write while the records are all young and within the cap costs no
 * iterator. */
static void test_prune_walks_only_when_needed(void)
{
	struct env e;
	struct fsm f;
	int walks = 0;
	env_make(&e);
	open_fsm(&f, &e);
	store_set_fault_hook(&f.store, count_age_walks, &walks);
	const uint64_t t0 = 1700000000000ULL;
	set_limits(60, 5);
	uint64_t i = 0;
	char idem[16];
	for (; i < 5; i++) {
		snprintf(idem, sizeof idem, "w%llu", (unsigned long long)i);
		put_x(&f, i + 1, "k", "v", (struct kvreq){.ts = t0 + i, .idem = idem});
	}
	CHECK_EQ_INT(walks, 0);
	CHECK_EQ_INT(f.idem_count, 5);
	CHECK_EQ_INT(f.idem_oldest_ts, t0);
	/* Past the cap: one walk per entry, each removing the oldest. */
	for (; i < 8; i++) {
		snprintf(idem, sizeof idem, "w%llu", (unsigned long long)i);
		put_x(&f, i + 1, "k", "v", (struct kvreq){.ts = t0 + i, .idem = idem});
	}
	CHECK_EQ_INT(walks, 3);
	CHECK_EQ_INT(f.idem_count, 5);
	CHECK_EQ_INT(f.idem_oldest_ts, t0 + 3);
	CHECK_IDEM_CONSISTENT(&f);
	/* Plain writes while nothing is expired: no walk. */
	walks = 0;
	for (; i < 12; i++)
		put_x(&f, i + 1, "p", "v", (struct kvreq){.ts = t0 + 1000});
	CHECK_EQ_INT(walks, 0);
	/* Once the oldest expires, walks resume and drain the expired ones. */
	for (; i < 16; i++)
		put_x(&f, i + 1, "p", "v", (struct kvreq){.ts = t0 + 60004 + i});
	CHECK(walks > 0);
	CHECK_EQ_INT(f.idem_count, 0);
	CHECK_EQ_INT(f.idem_oldest_ts, UINT64_MAX);
	CHECK_IDEM_CONSISTENT(&f);
	store_set_fault_hook(&f.store, NULL, NULL);
	fsm_close(&f);
	env_remove(&e);
}

/* The oldest age entry in the store (UINT64_MAX: none). */
static uint64_t exact_oldest(struct fsm *f)
{
	struct store_iter it;
	uint64_t oldest = UINT64_MAX;
	store_iter_init(&it, &f->store, NULL, "t/", 2, NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl;
		const char *k = store_iter_key(&it, &kl);
		uint64_t ts = 0;
		for (int i = 0; i < 8; i++)
			ts = ts << 8 | (uint8_t)k[2 + i];
		if (ts < oldest)
			oldest = ts;
	}
	store_iter_close(&it);
	return oldest;
}

/* The bound is kept in memory only: replicas that reopened (bound recomputed from the
 * store), restored a snapshot (bound from the image) or ran on (bound carried along, looser
 * after replacements) must decide the same for a long random history of keyed writes with
 * shifting limits and a clock that sometimes goes back. */
static void test_prune_bound_never_changes_outcomes(void)
{
	/* [0] runs on, [1] restarts now and then, [2] installs [0]'s snapshot now and then. */
	struct env e[3];
	struct fsm f[3];
	open_replicas(e, f, 3);
	uint64_t seed = 42, ts = 1700000000000ULL;
	static const uint32_t ttls[] = {1, 2, 5, 3600}, caps[] = {2, 3, 7, 100};
	for (uint64_t index = 1; index <= 600; index++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		uint32_t r = (uint32_t)(seed >> 33);
		if (index % 50 == 0)
			set_limits(ttls[r % 4], caps[(r >> 2) % 4]);
		ts += (r >> 4) % 3 == 0 ? 0 : (r >> 6) % 700;
		if ((r >> 8) % 40 == 0)
			ts -= 1500; /* a new leader whose clock is behind */
		char idem[16], key[8], val[8];
		snprintf(idem, sizeof idem, "id%u", (r >> 10) % 12);
		snprintf(key, sizeof key, "k%u", (r >> 14) % 5);
		snprintf(val, sizeof val, "v%u", (r >> 17) % 3);
		struct kvreq q = {
		    .ts = ts, .idem = (r >> 20) % 4 ? idem : NULL, .internal = (r >> 22) % 2};
		q.resent = q.idem != NULL && q.internal && (r >> 23) % 2;
		unsigned want = put_x(&f[0], index, key, val, q);
		for (int i = 1; i < 3; i++)
			CHECK_EQ_INT(put_x(&f[i], index, key, val, q), want);
		if (index % 37 == 0) {
			fsm_close(&f[1]);
			open_fsm(&f[1], &e[1]);
		}
		if (index % 53 == 0) {
			struct buf img;
			snapshot_image(&f[0], &img);
			fsm_close(&f[2]);
			env_remove(&e[2]);
			env_make(&e[2]);
			open_fsm(&f[2], &e[2]);
			CHECK_EQ_INT(restore(&f[2], img.data, img.len), 0);
			buf_close(&img);
		}
		for (int i = 0; i < 3 && (index % 25 == 0 || index == 600); i++) {
			CHECK(fsm_digest(&f[i], NULL) == fsm_digest(&f[0], NULL));
			CHECK_IDEM_CONSISTENT(&f[i]);
			CHECK(f[i].idem_oldest_ts <= exact_oldest(&f[i]));
		}
	}
	close_replicas(e, f, 3);
}

int main(void)
{
	test_kv_basic();
	test_cas();
	test_restart_never_double_applies();
	test_idempotency();
	test_idempotency_ttl();
	test_idempotency_count_bound();
	test_limits_from_entries();
	test_version1_entries();
	test_internal_keys();
	test_internal_pruning();
	test_read_errors_stop();
	test_prune_walks_only_when_needed();
	test_prune_bound_never_changes_outcomes();
	test_members();
	test_digest();
	test_snapshot_round_trip();
	test_snapshot_corruption();
	test_snapshot_check();
	test_data_digest_and_reset();
	test_snapshot_iface();
	test_snapshot_store_ahead_of_raft();
	TEST_DONE();
}
