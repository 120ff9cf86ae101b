/* test_store: unit tests for src/store (the RocksDB wrapper under the fsm).
 *
 * Each test opens a database in its own mkdtemp directory and removes it afterwards. The
 * cases pin down what the fsm relies on: batched puts/deletes land atomically and read back
 * byte-exact (binary keys and values included), delete_all clears every key we write,
 * prefix iteration is in unsigned byte order and stops at the prefix end, a store_snap is a
 * frozen view, and data survives close/reopen. The fault hook (tests of callers' read-error
 * paths) fails exactly the reads it is asked to and nothing once removed. */
#include "store/store.h"
#include "util/buf.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

static void rm_rf(const char *dir)
{
	test_rmtree(dir);
}

struct tmp {
	char dir[64];
	char db[96];
};

static void tmp_make(struct tmp *t)
{
	snprintf(t->dir, sizeof t->dir, "/tmp/cloudless-test-store-XXXXXX");
	if (mkdtemp(t->dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	snprintf(t->db, sizeof t->db, "%s/db", t->dir);
}

static void tmp_open(struct tmp *t, struct store *s)
{
	char err[512] = "";
	int rv = store_open(s, t->db, err, sizeof err);
	if (rv != 0) {
		fprintf(stderr, "store_open: %s\n", err);
		exit(2);
	}
}

static void put1(struct store *s, const char *k, size_t kl, const char *v, size_t vl)
{
	struct store_batch b;
	char err[256];
	store_batch_init(&b);
	store_batch_put(&b, k, kl, v, vl);
	CHECK_EQ_INT(store_write(s, &b, false, err, sizeof err), 0);
	store_batch_close(&b);
}

/* 1 when key holds exactly want (binary-safe), 0 otherwise. */
static int has(struct store *s, const char *k, size_t kl, const char *want, size_t wl)
{
	char *v = NULL;
	size_t vl = 0;
	int rv = store_get(s, k, kl, &v, &vl);
	if (rv != 0)
		return 0;
	int ok = vl == wl && memcmp(v, want, wl) == 0 && v[vl] == '\0';
	free(v);
	return ok;
}

static int absent(struct store *s, const char *k, size_t kl)
{
	char *v = NULL;
	size_t vl = 0;
	int rv = store_get(s, k, kl, &v, &vl);
	if (rv == 0)
		free(v);
	return rv == 1;
}

#define HAS(s, k, v) has(s, k, sizeof(k) - 1, v, sizeof(v) - 1)
#define ABSENT(s, k) absent(s, k, sizeof(k) - 1)
#define PUT(s, k, v) put1(s, k, sizeof(k) - 1, v, sizeof(v) - 1)

/* Collects the keys an iterator yields, joined by '|', into out. */
static void collect(struct store *s, const struct store_snap *snap, const char *prefix, size_t plen,
                    const char *start, size_t slen, struct buf *out)
{
	struct store_iter it;
	buf_reset(out);
	buf_puts(out, "");
	store_iter_init(&it, s, snap, prefix, plen, start, slen);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl, vl;
		const char *k = store_iter_key(&it, &kl);
		const char *v = store_iter_value(&it, &vl);
		(void)v;
		if (out->len > 0)
			buf_puts(out, "|");
		for (size_t i = 0; i < kl; i++) {
			unsigned char c = (unsigned char)k[i];
			if (c >= 0x20 && c < 0x7f)
				buf_append(out, &k[i], 1);
			else
				buf_printf(out, "\\x%02x", c);
		}
	}
	store_iter_close(&it);
}

static void test_put_get_delete(void)
{
	struct tmp t;
	struct store s;
	tmp_make(&t);
	tmp_open(&t, &s);

	CHECK(ABSENT(&s, "k/a"));
	PUT(&s, "k/a", "1");
	CHECK(HAS(&s, "k/a", "1"));
	PUT(&s, "k/a", "22"); /* overwrite */
	CHECK(HAS(&s, "k/a", "22"));

	/* Binary keys and values, including NULs and an empty value. */
	PUT(&s, "k/\0\xff", "v\0w\xfe");
	CHECK(HAS(&s, "k/\0\xff", "v\0w\xfe"));
	CHECK(ABSENT(&s, "k/")); /* not a prefix match */
	PUT(&s, "k/empty", "");
	CHECK(HAS(&s, "k/empty", ""));

	/* A batch applies several operations together, in order. */
	struct store_batch b;
	char err[256];
	store_batch_init(&b);
	store_batch_put(&b, "k/b", 3, "b", 1);
	store_batch_put(&b, "k/c", 3, "c", 1);
	store_batch_delete(&b, "k/a", 3);
	store_batch_put(&b, "k/c", 3, "c2", 2); /* later op wins */
	store_batch_put(&b, "k/d", 3, "d", 1);
	store_batch_delete(&b, "k/d", 3);
	CHECK(ABSENT(&s, "k/b")); /* nothing visible before the write */
	CHECK_EQ_INT(store_write(&s, &b, true, err, sizeof err), 0);
	store_batch_close(&b);
	store_batch_close(&b); /* idempotent */
	CHECK(ABSENT(&s, "k/a"));
	CHECK(HAS(&s, "k/b", "b"));
	CHECK(HAS(&s, "k/c", "c2"));
	CHECK(ABSENT(&s, "k/d"));

	/* Deleting an absent key is fine. */
	store_batch_init(&b);
	store_batch_delete(&b, "k/nope", 6);
	CHECK_EQ_INT(store_write(&s, &b, false, err, sizeof err), 0);
	store_batch_close(&b);

	/* delete_all clears every namespace; puts after it in the same batch survive. */
	PUT(&s, "m/applied", "12345678");
	PUT(&s, "n/node", "{}");
	PUT(&s, "t/\x00\x01", "");
	PUT(&s, "~", "tilde");
	PUT(&s, "\x01", "low");
	store_batch_init(&b);
	store_batch_delete_all(&b);
	store_batch_put(&b, "k/new", 5, "fresh", 5);
	CHECK_EQ_INT(store_write(&s, &b, false, err, sizeof err), 0);
	store_batch_close(&b);
	struct buf keys;
	buf_init(&keys);
	collect(&s, NULL, "", 0, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "k/new");
	CHECK(HAS(&s, "k/new", "fresh"));
	CHECK(ABSENT(&s, "k/b"));
	CHECK(ABSENT(&s, "m/applied"));
	CHECK(ABSENT(&s, "~"));
	CHECK(ABSENT(&s, "\x01"));
	buf_close(&keys);

	store_close(&s);
	store_close(&s); /* closing twice is harmless */
	rm_rf(t.dir);
}

static void test_iterate(void)
{
	struct tmp t;
	struct store s;
	tmp_make(&t);
	tmp_open(&t, &s);

	/* Written out of order; includes bytes >= 0x80, which sort after ASCII (unsigned). */
	PUT(&s, "p/b", "2");
	PUT(&s, "q/a", "x");
	PUT(&s, "p/\xff", "5");
	PUT(&s, "p/a", "1");
	PUT(&s, "o/z", "x");
	PUT(&s, "p/\x80", "4");
	PUT(&s, "p/ba", "3");
	PUT(&s, "p/", "0");
	PUT(&s, "p", "x");
	PUT(&s, "p0", "x");

	struct buf keys;
	buf_init(&keys);
	collect(&s, NULL, "p/", 2, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "p/|p/a|p/b|p/ba|p/\\x80|p/\\xff");

	/* From a start key inside the prefix (inclusive). */
	collect(&s, NULL, "p/", 2, "p/b", 3, &keys);
	CHECK_EQ_STR(keys.data, "p/b|p/ba|p/\\x80|p/\\xff");
	/* From a start key that does not exist: the next one up. */
	collect(&s, NULL, "p/", 2, "p/bb", 4, &keys);
	CHECK_EQ_STR(keys.data, "p/\\x80|p/\\xff");
	/* From past the last key of the prefix: nothing (no spill into q/). */
	collect(&s, NULL, "p/", 2, "p/\xff\xff", 4, &keys);
	CHECK_EQ_STR(keys.data, "");

	/* Values come with the keys. */
	struct store_iter it;
	store_iter_init(&it, &s, NULL, "p/b", 3, NULL, 0);
	CHECK(store_iter_valid(&it));
	size_t vl = 0;
	const char *v = store_iter_value(&it, &vl);
	CHECK(vl == 1 && v[0] == '2');
	store_iter_next(&it);
	CHECK(store_iter_valid(&it));
	v = store_iter_value(&it, &vl);
	CHECK(vl == 1 && v[0] == '3');
	store_iter_next(&it);
	CHECK(!store_iter_valid(&it)); /* "p/\x80" does not start with "p/b" */
	store_iter_close(&it);

	/* Empty prefix: the whole database in byte order. */
	collect(&s, NULL, "", 0, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "o/z|p|p/|p/a|p/b|p/ba|p/\\x80|p/\\xff|p0|q/a");
	collect(&s, NULL, "", 0, "p0", 2, &keys);
	CHECK_EQ_STR(keys.data, "p0|q/a");
	/* A prefix with no keys, and one sorting after everything. */
	collect(&s, NULL, "r/", 2, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "");
	collect(&s, NULL, "\xff", 1, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "");

	buf_close(&keys);
	store_close(&s);
	rm_rf(t.dir);
}

static void test_snapshot_isolation(void)
{
	struct tmp t;
	struct store s;
	tmp_make(&t);
	tmp_open(&t, &s);

	PUT(&s, "k/1", "one");
	PUT(&s, "k/2", "two");
	struct store_snap snap;
	store_snap_take(&snap, &s);

	/* Later writes: update, delete, insert, even a delete_all. */
	PUT(&s, "k/1", "ONE");
	struct store_batch b;
	char err[256];
	store_batch_init(&b);
	store_batch_delete(&b, "k/2", 3);
	store_batch_put(&b, "k/3", 3, "three", 5);
	CHECK_EQ_INT(store_write(&s, &b, false, err, sizeof err), 0);
	store_batch_close(&b);

	struct buf keys;
	buf_init(&keys);
	collect(&s, &snap, "k/", 2, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "k/1|k/2");
	collect(&s, NULL, "k/", 2, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "k/1|k/3");

	/* The snapshot's values are the old ones. */
	struct store_iter it;
	store_iter_init(&it, &s, &snap, "k/1", 3, NULL, 0);
	CHECK(store_iter_valid(&it));
	size_t vl = 0;
	const char *v = store_iter_value(&it, &vl);
	CHECK(vl == 3 && memcmp(v, "one", 3) == 0);
	store_iter_close(&it);
	CHECK(HAS(&s, "k/1", "ONE"));

	store_batch_init(&b);
	store_batch_delete_all(&b);
	CHECK_EQ_INT(store_write(&s, &b, false, err, sizeof err), 0);
	store_batch_close(&b);
	collect(&s, &snap, "", 0, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "k/1|k/2");
	collect(&s, NULL, "", 0, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "");

	/* A second snapshot sees the state at its own time. */
	PUT(&s, "k/9", "nine");
	struct store_snap snap2;
	store_snap_take(&snap2, &s);
	PUT(&s, "k/10", "ten");
	collect(&s, &snap2, "", 0, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "k/9");

	store_snap_release(&snap);
	store_snap_release(&snap); /* idempotent */
	store_snap_release(&snap2);
	collect(&s, NULL, "", 0, NULL, 0, &keys);
	CHECK_EQ_STR(keys.data, "k/10|k/9");
	buf_close(&keys);
	store_close(&s);
	rm_rf(t.dir);
}

static void test_reopen(void)
{
	struct tmp t;
	struct store s;
	tmp_make(&t);
	tmp_open(&t, &s);
	PUT(&s, "k/keep", "kept");
	PUT(&s, "k/bin", "\0\1\2");
	PUT(&s, "k/drop", "x");
	struct store_batch b;
	char err[256];
	store_batch_init(&b);
	store_batch_delete(&b, "k/drop", 6);
	CHECK_EQ_INT(store_write(&s, &b, false, err, sizeof err), 0); /* not synced */
	store_batch_close(&b);
	store_close(&s);
	CHECK(s.db == NULL);

	tmp_open(&t, &s);
	CHECK(HAS(&s, "k/keep", "kept"));
	CHECK(HAS(&s, "k/bin", "\0\1\2"));
	CHECK(ABSENT(&s, "k/drop"));
	CHECK_EQ_STR(s.path, t.db);
	store_close(&s);

	/* A second open of the same database while it is open fails (RocksDB's LOCK) with a
	 * message naming the path, and leaves nothing to close. */
	tmp_open(&t, &s);
	struct store s2;
	char msg[512] = "";
	CHECK_EQ_INT(store_open(&s2, t.db, msg, sizeof msg), -1);
	CHECK(strstr(msg, t.db) != NULL);
	CHECK(s2.db == NULL);
	store_close(&s2);
	store_close(&s);

	/* A path that cannot be a directory. */
	char file[128];
	snprintf(file, sizeof file, "%s/plain", t.dir);
	FILE *fp = fopen(file, "w");
	CHECK(fp != NULL);
	if (fp != NULL)
		fclose(fp);
	char sub[160];
	snprintf(sub, sizeof sub, "%s/db", file);
	CHECK_EQ_INT(store_open(&s2, sub, msg, sizeof msg), -1);
	CHECK(strstr(msg, "cannot open RocksDB") != NULL);
	rm_rf(t.dir);
}

/* Fails reads whose key starts with "k/f", of the kinds in `ops`. */
struct hook_state {
	unsigned ops; /* 1 << STORE_FAULT_GET | 1 << STORE_FAULT_ITER */
	int calls;
};

static int hook(void *arg, enum store_fault_op op, const void *key, size_t klen)
{
	struct hook_state *h = arg;
	h->calls++;
	return (h->ops & (1u << op)) != 0 && klen >= 3 && memcmp(key, "k/f", 3) == 0;
}

static void test_fault_hook(void)
{
	struct tmp t;
	struct store s;
	struct buf out;
	buf_init(&out);
	tmp_make(&t);
	tmp_open(&t, &s);
	PUT(&s, "k/fail", "1");
	PUT(&s, "k/fine", "2");
	PUT(&s, "k/ok", "3");
	struct hook_state h = {.ops = 1u << STORE_FAULT_GET};
	store_set_fault_hook(&s, hook, &h);
	char *v = NULL;
	size_t vl;
	CHECK_EQ_INT(store_get(&s, "k/fail", 6, &v, &vl), -1);
	CHECK_EQ_INT(store_get(&s, "k/fx", 4, &v, &vl), -1); /* absent, but the read fails */
	CHECK(HAS(&s, "k/ok", "3"));
	CHECK(ABSENT(&s, "k/none"));
	CHECK_EQ_INT(h.calls, 4);
	/* Iterators over the prefix still work while only gets fail. */
	collect(&s, NULL, "k/f", 3, NULL, 0, &out);
	CHECK_EQ_STR(out.data, "k/fail|k/fine");
	/* A failing iterator yields nothing and says so when closed. */
	h.ops = 1u << STORE_FAULT_ITER;
	struct store_iter it;
	store_iter_init(&it, &s, NULL, "k/f", 3, NULL, 0);
	CHECK(!store_iter_valid(&it));
	CHECK_EQ_INT(store_iter_close(&it), -1);
	store_iter_init(&it, &s, NULL, "k/", 2, NULL, 0); /* another prefix: fine */
	CHECK(store_iter_valid(&it));
	CHECK_EQ_INT(store_iter_close(&it), 0);
	CHECK(HAS(&s, "k/fail", "1"));
	/* Removed: inert. */
	store_set_fault_hook(&s, NULL, NULL);
	h.ops = ~0u;
	int before = h.calls;
	CHECK(HAS(&s, "k/fail", "1"));
	collect(&s, NULL, "k/f", 3, NULL, 0, &out);
	CHECK_EQ_STR(out.data, "k/fail|k/fine");
	CHECK_EQ_INT(h.calls, before);
	buf_close(&out);
	store_close(&s);
	rm_rf(t.dir);
}

int main(void)
{
	test_put_get_delete();
	test_iterate();
	test_snapshot_isolation();
	test_reopen();
	test_fault_hook();
	TEST_DONE();
}
