/* test_raft_fixture: our real fsm (RocksDB underneath) driven by libraft's deterministic
 * in-memory cluster fixture.
 *
 * Three servers, each with its own fsm in a mkdtemp directory and f->raft pointing at the
 * fixture's raft instance, as the raft layer wires it (through a thin synchronous-snapshot
 * adapter, see below). Commands go through
 * raft_apply on the leader as node_propose sends them (raft_malloc'd, zero-padded to a
 * multiple of 8), so this checks the whole apply path: iface_apply deriving the entry index
 * from raft's last_applied, results packed into the apply callback, and replicas converging
 * to equal digests. Then the leader is killed, another is elected and more entries go in;
 * with a small snapshot threshold the old leader, revived after the log was truncated past
 * it, has to catch up through InstallSnapshot (our snapshot/restore callbacks), and all
 * three must end up with the same digest again. */
#include <raft.h>
#include <raft/fixture.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "testlib.h"

#define N_SERVERS 3

struct proposal {
	struct raft_apply req;
	bool done;
	int status;
	void *result;
};

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct proposal *p = req->data;
	p->done = true;
	p->status = status;
	p->result = result;
}

static struct raft_fixture fx;
static struct fsm fsms[N_SERVERS];
static struct raft_fsm adapters[N_SERVERS];
static char dirs[N_SERVERS][64];

/* libraft 0.15 quirk: the fixture's in-memory raft_io is version 1 without async_work, and
 * raft_init refuses a version 3 fsm with snapshot_async on such an io ("async snapshot
 * requires io->version > 1"), so raft_fixture_grow fails with our iface as is. Each server
 * therefore gets a version 2 raft_fsm whose callbacks call our real ones in the order raft
 * uses for async snapshots (snapshot on the loop, snapshot_async, then snapshot_finalize),
 * just synchronously: apply, restore and the snapshot code under test are all ours. */
static int adapter_apply(struct raft_fsm *a, const struct raft_buffer *buf, void **result)
{
	struct fsm *f = a->data;
	return f->iface.apply(&f->iface, buf, result);
}

static int adapter_snapshot(struct raft_fsm *a, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct fsm *f = a->data;
	int rv = f->iface.snapshot(&f->iface, bufs, n_bufs);
	if (rv != 0)
		return rv;
	rv = f->iface.snapshot_async(&f->iface, bufs, n_bufs);
	if (rv != 0) {
		/* raft calls finalize after a failed async step; a failed version 2 snapshot
		 * gets no finalize, so release the pinned RocksDB snapshot here. */
		f->iface.snapshot_finalize(&f->iface, bufs, n_bufs);
		return rv;
	}
	return 0;
}

static int adapter_finalize(struct raft_fsm *a, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct fsm *f = a->data;
	return f->iface.snapshot_finalize(&f->iface, bufs, n_bufs);
}

static int adapter_restore(struct raft_fsm *a, struct raft_buffer *buf)
{
	struct fsm *f = a->data;
	return f->iface.restore(&f->iface, buf);
}

/* Proposes a KV_PUT on server `leader`; returns the index of the new entry (0 on failure). */
static raft_index propose_put(unsigned leader, struct proposal *p, const char *key,
                              const char *value, const char *idem, uint64_t ts)
{
	struct command c;
	struct buf enc;
	memset(&c, 0, sizeof c);
	c.type = COMMAND_KV_PUT;
	c.ts_ms = ts;
	c.idem_ttl_s = 60; /* the leader's --idempotency-ttl / --idempotency-max */
	c.idem_max = 1000;
	c.key.p = key;
	c.key.len = strlen(key);
	c.value.p = value;
	c.value.len = strlen(value);
	if (idem != NULL) {
		c.idem_key.p = idem;
		c.idem_key.len = strlen(idem);
	}
	buf_init(&enc);
	command_encode(&c, &enc);

	struct raft_buffer b;
	b.len = (enc.len + 7) & ~(size_t)7;
	b.base = raft_malloc(b.len);
	memcpy(b.base, enc.data, enc.len);
	memset((char *)b.base + enc.len, 0, b.len - enc.len);
	buf_close(&enc);

	memset(p, 0, sizeof *p);
	p->req.data = p;
	struct raft *r = raft_fixture_get(&fx, leader);
	int rv = raft_apply(r, &p->req, &b, 1, apply_cb);
	CHECK_EQ_INT(rv, 0);
	if (rv != 0) {
		raft_free(b.base);
		return 0;
	}
	return raft_last_index(r);
}

static bool all_done(struct raft_fixture *f, void *arg)
{
	(void)f;
	struct proposal *ps = arg;
	for (struct proposal *p = ps; p->req.data != NULL; p++)
		if (!p->done)
			return false;
	return true;
}

static bool other_leader(struct raft_fixture *f, void *arg)
{
	(void)arg;
	unsigned l = raft_fixture_leader_index(f);
	return l != 0 && l < raft_fixture_n(f);
}

/* Every alive server's fsm agrees with raft about the index and with server `ref` about
 * the data. */
static void check_converged(unsigned ref, const char *when)
{
	uint64_t want = fsm_digest(&fsms[ref], NULL);
	for (unsigned i = 0; i < N_SERVERS; i++) {
		if (!raft_fixture_alive(&fx, i))
			continue;
		uint64_t d = fsm_digest(&fsms[i], NULL);
		if (d != want)
			fprintf(stderr, "%s: server %u digest %016llx != server %u %016llx\n", when,
			        i, (unsigned long long)d, ref, (unsigned long long)want);
		CHECK(d == want);
		/* The fsm's index is the last command raft applied: raft's own may be ahead
		 * only by configuration/barrier entries, never behind. */
		CHECK(fsms[i].applied_index <= raft_last_applied(raft_fixture_get(&fx, i)));
	}
}

static void check_value(unsigned i, const char *key, const char *want_value, uint64_t want_version)
{
	struct fsm_kv kv = {0};
	int rv = fsm_kv_get(&fsms[i], key, strlen(key), &kv);
	CHECK_EQ_INT(rv, 0);
	if (rv == 0) {
		CHECK_EQ_STR(kv.value, want_value);
		CHECK_EQ_INT(kv.version, want_version);
		fsm_kv_free(&kv);
	}
}

int main(void)
{
	char err[512];
	for (unsigned i = 0; i < N_SERVERS; i++) {
		snprintf(dirs[i], sizeof dirs[i], "/tmp/cloudless-test-raft-XXXXXX");
		if (mkdtemp(dirs[i]) == NULL) {
			perror("mkdtemp");
			return 2;
		}
		char db[256];
		snprintf(db, sizeof db, "%s/db", dirs[i]);
		if (fsm_init(&fsms[i], db, err, sizeof err) != 0) {
			fprintf(stderr, "fsm_init: %s\n", err);
			return 2;
		}
	}

	CHECK_EQ_INT(raft_fixture_initialize(&fx), 0);
	for (unsigned i = 0; i < N_SERVERS; i++) {
		adapters[i] = (struct raft_fsm){.version = 2,
		                                .data = &fsms[i],
		                                .apply = adapter_apply,
		                                .snapshot = adapter_snapshot,
		                                .restore = adapter_restore,
		                                .snapshot_finalize = adapter_finalize};
		CHECK_EQ_INT(raft_fixture_grow(&fx, &adapters[i]), 0);
		fsms[i].raft = raft_fixture_get(&fx, i);
		/* Small enough that the entries below force snapshots and log truncation. */
		raft_set_snapshot_threshold(fsms[i].raft, 8);
		raft_set_snapshot_trailing(fsms[i].raft, 2);
	}
	struct raft_configuration conf;
	CHECK_EQ_INT(raft_fixture_configuration(&fx, N_SERVERS, &conf), 0);
	CHECK_EQ_INT(raft_fixture_bootstrap(&fx, &conf), 0);
	raft_configuration_close(&conf);
	CHECK_EQ_INT(raft_fixture_start(&fx), 0);

	raft_fixture_elect(&fx, 0);
	CHECK_EQ_INT(raft_fixture_leader_index(&fx), 0);

	/* Phase 1: five puts through leader 0, one idempotent retry. */
	static struct proposal p1[8];
	raft_index last = 0;
	char key[32], val[32];
	for (int i = 0; i < 5; i++) {
		snprintf(key, sizeof key, "key-%d", i % 3);
		snprintf(val, sizeof val, "v%d", i);
		last = propose_put(0, &p1[i], key, val, i == 1 ? "idem-1" : NULL, 1000 + i);
	}
	/* The retry of request idem-1 (key-1 = v1): answered from the record, not applied. */
	last = propose_put(0, &p1[5], "key-1", "v1", "idem-1", 1010);
	CHECK(last > 0);
	CHECK(raft_fixture_step_until(&fx, all_done, p1, 5000));
	CHECK(raft_fixture_step_until_applied(&fx, N_SERVERS, last, 5000));
	for (int i = 0; i < 6; i++) {
		CHECK(p1[i].done);
		CHECK_EQ_INT(p1[i].status, 0);
	}
	CHECK_EQ_INT(fsm_result_code(p1[0].result), FSM_OK_CREATED);
	CHECK_EQ_INT(fsm_result_code(p1[1].result), FSM_OK_CREATED);
	CHECK_EQ_INT(fsm_result_code(p1[3].result), FSM_OK_UPDATED); /* key-0 again */
	CHECK(!fsm_result_replayed(p1[1].result));
	CHECK(fsm_result_replayed(p1[5].result));
	CHECK_EQ_INT(fsm_result_code(p1[5].result), FSM_OK_CREATED);
	for (unsigned i = 0; i < N_SERVERS; i++) {
		CHECK_EQ_INT(fsms[i].applied_index, last);
		check_value(i, "key-0", "v3", 2);
		check_value(i, "key-1", "v4", 2); /* v1 then v4; the retry did not bump it */
		check_value(i, "key-2", "v2", 1);
		CHECK_EQ_INT(fsms[i].idem_count, 1);
	}
	check_converged(0, "after phase 1");

	/* Phase 2: the leader dies; another one takes over and keeps going. */
	raft_fixture_kill(&fx, 0);
	/* Not raft_fixture_step_until_has_leader: the fixture only notices the dead leader at
	 * its next step, so that would return at once with server 0 still recorded. */
	CHECK(raft_fixture_step_until(&fx, other_leader, NULL, 10000));
	unsigned leader = raft_fixture_leader_index(&fx);
	CHECK(leader == 1 || leader == 2);
	if (leader != 1 && leader != 2) {
		fprintf(stderr, "no new leader (index %u)\n", leader);
		goto out;
	}
	static struct proposal p2[32];
	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof key, "key-%d", i % 4);
		snprintf(val, sizeof val, "w%d", i);
		last = propose_put(leader, &p2[i], key, val, NULL, 2000 + i);
	}
	CHECK(last > 0);
	CHECK(raft_fixture_step_until(&fx, all_done, p2, 10000));
	CHECK(raft_fixture_step_until_applied(&fx, 1, last, 10000));
	CHECK(raft_fixture_step_until_applied(&fx, 2, last, 10000));
	for (int i = 0; i < 30; i++)
		CHECK_EQ_INT(p2[i].status, 0);
	CHECK_EQ_INT(fsms[1].applied_index, last);
	CHECK_EQ_INT(fsms[2].applied_index, last);
	check_converged(leader, "after failover");
	/* key-3 only existed from phase 2: created at i=3, then i=7..27 step 4 */
	check_value(1, "key-3", "w27", 7);
	/* The surviving servers snapshotted and truncated their logs past what server 0 has. */
	CHECK(fsms[leader].stats.snapshots_ok > 0);
	CHECK(raft_fixture_get(&fx, leader)->log.offset > fsms[0].applied_index);

	/* Phase 3: the old leader comes back behind a truncated log: it must catch up by
	 * installing a snapshot (our restore), then by entries, and converge. */
	raft_fixture_revive(&fx, 0);
	static struct proposal p3[2];
	last = propose_put(leader, &p3[0], "after-revive", "x", "idem-z", 3000);
	CHECK(raft_fixture_step_until(&fx, all_done, p3, 10000));
	CHECK(raft_fixture_step_until_applied(&fx, N_SERVERS, last, 20000));
	CHECK_EQ_INT(fsm_result_code(p3[0].result), FSM_OK_CREATED);
	CHECK_EQ_INT(fsms[0].applied_index, last);
	CHECK(fsms[0].stats.restores_ok > 0);
	CHECK_EQ_INT(fsms[0].stats.restores_failed, 0);
	check_converged(leader, "after revive");
	check_value(0, "key-3", "w27", 7);
	check_value(0, "key-1", "w29", 10); /* v1, v4, then w1..w29 step 4 (8 puts) */
	for (unsigned i = 0; i < N_SERVERS; i++)
		CHECK_EQ_INT(fsms[i].idem_count, 2);

out:
	raft_fixture_close(&fx);
	for (unsigned i = 0; i < N_SERVERS; i++) {
		fsm_close(&fsms[i]);
		test_rmtree(dirs[i]);
	}
	TEST_DONE();
}
