/* test_domain: the domain ops of src/fsm/domain.c applied through fsm_apply_entry, as raft
 * would: enrollment, workloads, placements re-checked against the state they land in
 * (stale epochs, offline or full agents refused), reports only from the current placement,
 * scale-down and deletion as stop records that go once the agent confirms, agent removal,
 * the mirror rebuilt from the store, and two fsms fed the same entries agreeing; and the
 * cached text of an agent's assignments (domain/assign.c) always the same JSON as a fresh
 * render, through every kind of change. */
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "domain/assign.h"
#include "fsm/fsm.h"
#include "testlib.h"

struct env {
	char dir[64];
	char db[96];
	struct fsm f;
	uint64_t index;
};

static void env_open(struct env *e)
{
	char err[512] = "";
	if (e->dir[0] == '\0') {
		snprintf(e->dir, sizeof e->dir, "/tmp/cloudless-test-domain-XXXXXX");
		if (mkdtemp(e->dir) == NULL) {
			perror("mkdtemp");
			exit(2);
		}
		snprintf(e->db, sizeof e->db, "%s/db", e->dir);
	}
	if (fsm_init(&e->f, e->db, err, sizeof err) != 0) {
		fprintf(stderr, "fsm_init: %s\n", err);
		exit(2);
	}
	e->index = e->f.applied_index;
}

static void env_close(struct env *e, bool remove_dir)
{
	fsm_close(&e->f);
	if (remove_dir)
		test_rmtree(e->dir);
}

/* Applies a domain op (JSON text) as the next entry, with an idempotency key when key is not
 * NULL (a follower's internal one when internal); returns the packed fsm result. */
static unsigned op_keyed(struct env *e, const char *json, const char *key, bool internal,
                         bool resent)
{
	struct command c = {.type = COMMAND_DOMAIN,
	                    .ts_ms = 1700000000000ULL + e->index,
	                    .idem_ttl_s = 86400,
	                    .idem_max = 100000};
	c.value = (struct command_str){json, strlen(json)};
	if (key != NULL) {
		c.idem_key = (struct command_str){key, strlen(key)};
		c.idem_internal = internal;
		c.resent = resent;
	}
	struct buf b;
	buf_init(&b);
	command_encode(&c, &b);
	while (b.len % 8 != 0)
		buf_put_u8(&b, 0);
	void *r = fsm_apply_entry(&e->f, ++e->index, b.data, b.len);
	buf_close(&b);
	CHECK(r != NULL);
	return r != NULL ? (unsigned)(uintptr_t)r : 0;
}

/* Applies a domain op without a key; returns the fsm code. */
static unsigned op(struct env *e, const char *json)
{
	return fsm_result_code((void *)(uintptr_t)op_keyed(e, json, NULL, false, false));
}

static unsigned opf(struct env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static unsigned opf(struct env *e, const char *fmt, ...)
{
	char json[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(json, sizeof json, fmt, ap);
	va_end(ap);
	return op(e, json);
}

static void enroll(struct env *e, const char *id, const char *zone, unsigned cpu, unsigned mem)
{
	unsigned code = opf(e,
	                    "{\"op\":\"agent.enroll\",\"agent\":{\"id\":\"%s\",\"name\":\"%s\","
	                    "\"region\":\"\",\"zone\":\"%s\",\"labels\":{},\"capacity\":{"
	                    "\"cpu_millicores\":%u,\"memory_bytes\":%u},\"heartbeat_interval_ms\":"
	                    "1000}}",
	                    id, id, zone, cpu, mem);
	CHECK(code == FSM_OK_CREATED || code == FSM_OK_UPDATED || code == FSM_OK_UNCHANGED);
}

static unsigned put_workload(struct env *e, const char *name, unsigned replicas, unsigned cpu,
                             const char *command)
{
	return opf(
	    e,
	    "{\"op\":\"workload.put\",\"workload\":{\"namespace\":\"default\",\"name\":\"%s\","
	    "\"command\":[\"%s\"],\"env\":{},\"image\":\"\",\"replicas\":%u,\"resources\":{"
	    "\"cpu_millicores\":%u,\"memory_bytes\":10},\"placement\":{\"node_selector\":{},"
	    "\"zones\":[],\"strategy\":\"spread\"},\"restart\":{\"policy\":\"always\","
	    "\"attempts\":3,\"interval_s\":300,\"delay_ms\":1000},\"kill_timeout_ms\":5000,"
	    "\"labels\":{}}}",
	    name, command, replicas, cpu);
}

static unsigned place(struct env *e, const char *id, uint64_t epoch, const char *agent)
{
	return opf(e, "{\"op\":\"replica.place\",\"id\":\"%s\",\"epoch\":%llu,\"agent\":\"%s\"}",
	           id, (unsigned long long)epoch, agent);
}

static unsigned report(struct env *e, const char *agent, const char *id, uint64_t epoch,
                       const char *state)
{
	return opf(e,
	           "{\"op\":\"replica.report\",\"reports\":[{\"agent\":\"%s\",\"id\":\"%s\","
	           "\"epoch\":%llu,\"state\":\"%s\",\"exit_code\":null,\"restarts\":0}]}",
	           agent, id, (unsigned long long)epoch, state);
}

static struct dom_replica *replica(struct env *e, const char *id)
{
	return dom_replica_get(&e->f.domain, id);
}

static void test_enroll_and_agent_state(void)
{
	struct env e = {0};
	env_open(&e);
	enroll(&e, "a1", "z1", 1000, 100);
	struct dom_agent *a = dom_agent_get(&e.f.domain, "a1");
	CHECK(a != NULL && a->ready && a->cpu == 1000 && a->version == e.index);
	uint64_t v = e.index;
	/* The same body again changes nothing; a new capacity updates the record. */
	CHECK_EQ_INT(opf(&e, "{\"op\":\"agent.enroll\",\"agent\":{\"id\":\"a1\",\"name\":\"a1\","
	                     "\"region\":\"\",\"zone\":\"z1\",\"labels\":{},\"capacity\":{"
	                     "\"cpu_millicores\":1000,\"memory_bytes\":100},"
	                     "\"heartbeat_interval_ms\":1000}}"),
	             FSM_OK_UNCHANGED);
	CHECK_EQ_INT(dom_agent_get(&e.f.domain, "a1")->version, v);
	enroll(&e, "a1", "z1", 2000, 100);
	CHECK_EQ_INT(dom_agent_get(&e.f.domain, "a1")->cpu, 2000);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"agent.state\",\"id\":\"a1\",\"state\":\"offline\"}"),
	             FSM_OK_UPDATED);
	CHECK(!dom_agent_get(&e.f.domain, "a1")->ready);
	CHECK_EQ_INT(e.f.domain.n_offline, 1);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"agent.state\",\"id\":\"a1\",\"state\":\"offline\"}"),
	             FSM_OK_UNCHANGED);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"agent.state\",\"id\":\"nope\",\"state\":\"ready\"}"),
	             FSM_NOT_FOUND);
	/* Re-enrolling an offline agent makes it ready. */
	enroll(&e, "a1", "z1", 2000, 100);
	CHECK(dom_agent_get(&e.f.domain, "a1")->ready);
	CHECK_EQ_INT(e.f.domain.n_ready, 1);
	CHECK_EQ_INT(op(&e, "not json"), FSM_BAD_COMMAND);
	CHECK_EQ_INT(op(&e, "{\"op\":\"agent.explode\"}"), FSM_BAD_COMMAND);
	env_close(&e, true);
}

static void test_workload_versions(void)
{
	struct env e = {0};
	env_open(&e);
	CHECK_EQ_INT(put_workload(&e, "web", 2, 100, "sleep"), FSM_OK_CREATED);
	struct dom_workload *w = dom_workload_get(&e.f.domain, "default/web");
	CHECK(w != NULL && w->replicas == 2 && w->version == e.index && w->spec_version == e.index);
	uint64_t v1 = w->version;
	/* Create-only fails when it exists; If-Match must name the version. */
	CHECK_EQ_INT(opf(&e, "{\"op\":\"workload.put\",\"create\":true,\"workload\":{\"namespace\":"
	                     "\"default\",\"name\":\"web\",\"command\":[\"x\"]}}"),
	             FSM_CAS_MISMATCH);
	CHECK_EQ_INT(opf(&e,
	                 "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":3,"
	                 "\"if_version\":%llu}",
	                 (unsigned long long)v1 + 100),
	             FSM_CAS_MISMATCH);
	CHECK_EQ_INT(opf(&e,
	                 "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":3,"
	                 "\"if_version\":%llu}",
	                 (unsigned long long)v1),
	             FSM_OK_UPDATED);
	w = dom_workload_get(&e.f.domain, "default/web");
	CHECK(w->replicas == 3 && w->spec_version == v1 && w->version == e.index);
	/* A new command is a new spec_version; a new replica count is not. */
	CHECK_EQ_INT(put_workload(&e, "web", 3, 100, "true"), FSM_OK_UPDATED);
	CHECK_EQ_INT(dom_workload_get(&e.f.domain, "default/web")->spec_version, e.index);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"workload.delete\",\"key\":\"default/nope\"}"),
	             FSM_NOT_FOUND);
	env_close(&e, true);
}

static void test_placement_rechecked(void)
{
	struct env e = {0};
	env_open(&e);
	enroll(&e, "a1", "z1", 300, 100);
	enroll(&e, "a2", "z2", 300, 100);
	put_workload(&e, "web", 3, 200, "sleep");
	CHECK_EQ_INT(place(&e, "default/web/0", 0, "a1"), FSM_OK_CREATED);
	struct dom_replica *r = replica(&e, "default/web/0");
	CHECK(r != NULL && r->epoch == e.index && strcmp(r->agent, "a1") == 0 && r->run);
	CHECK_EQ_INT(dom_agent_get(&e.f.domain, "a1")->used_cpu, 200);
	uint64_t epoch0 = r->epoch;
	/* a1 is full now; a stale epoch is refused; unknown agent and slot too. */
	CHECK_EQ_INT(place(&e, "default/web/1", 0, "a1"), FSM_CONFLICT);
	CHECK_EQ_INT(place(&e, "default/web/0", 0, "a2"), FSM_CONFLICT);
	CHECK_EQ_INT(place(&e, "default/web/1", 0, "ghost"), FSM_CONFLICT);
	CHECK_EQ_INT(place(&e, "default/web/7", 0, "a2"), FSM_CONFLICT);
	CHECK_EQ_INT(place(&e, "default/nope/0", 0, "a2"), FSM_CONFLICT);
	CHECK_EQ_INT(place(&e, "default/web/1", 0, "a2"), FSM_OK_CREATED);
	/* Offline and draining agents take nothing. */
	enroll(&e, "a3", "z1", 1000, 100);
	opf(&e, "{\"op\":\"agent.state\",\"id\":\"a3\",\"state\":\"offline\"}");
	CHECK_EQ_INT(place(&e, "default/web/2", 0, "a3"), FSM_CONFLICT);
	enroll(&e, "a3", "z1", 1000, 100);
	opf(&e, "{\"op\":\"agent.flags\",\"id\":\"a3\",\"drain\":true}");
	CHECK_EQ_INT(place(&e, "default/web/2", 0, "a3"), FSM_CONFLICT);
	opf(&e, "{\"op\":\"agent.flags\",\"id\":\"a3\",\"cordon\":false}");
	CHECK_EQ_INT(place(&e, "default/web/2", 0, "a3"), FSM_OK_CREATED);
	/* A move: the expected epoch, a new epoch, the old agent's share freed. */
	CHECK_EQ_INT(place(&e, "default/web/0", epoch0, "a3"), FSM_OK_UPDATED);
	r = replica(&e, "default/web/0");
	CHECK(r->epoch == e.index && strcmp(r->agent, "a3") == 0);
	CHECK_EQ_INT(dom_agent_get(&e.f.domain, "a1")->used_cpu, 0);
	CHECK_EQ_INT(dom_agent_get(&e.f.domain, "a3")->used_cpu, 400);
	CHECK_EQ_INT(dom_agent_get(&e.f.domain, "a1")->n_replicas, 0);
	CHECK_EQ_INT(dom_agent_get(&e.f.domain, "a1")->assign_index, e.index);
	/* Only the current placement speaks: the old agent's report is ignored. */
	CHECK_EQ_INT(report(&e, "a1", "default/web/0", epoch0, "running"), FSM_OK_UNCHANGED);
	CHECK_EQ_INT(report(&e, "a3", "default/web/0", r->epoch, "running"), FSM_OK_UPDATED);
	CHECK_EQ_INT(replica(&e, "default/web/0")->state, DOM_R_RUNNING);
	CHECK_EQ_INT(e.f.domain.n_by_state[DOM_R_RUNNING], 1);
	CHECK_EQ_INT(report(&e, "a3", "default/web/0", r->epoch, "running"), FSM_OK_UNCHANGED);
	env_close(&e, true);
}

static void test_scale_down_and_delete(void)
{
	struct env e = {0};
	env_open(&e);
	enroll(&e, "a1", "z1", 1000, 100);
	put_workload(&e, "web", 3, 100, "sleep");
	place(&e, "default/web/0", 0, "a1");
	place(&e, "default/web/1", 0, "a1");
	opf(&e, "{\"op\":\"replica.pending\",\"id\":\"default/web/2\",\"epoch\":0,\"reason\":\"0/1 "
	        "agents fit: 1 insufficient cpu\"}");
	CHECK(replica(&e, "default/web/2") != NULL &&
	      replica(&e, "default/web/2")->agent[0] == '\0');
	/* Scale to 1: the placed extra is told to stop, the unplaced one is dropped. */
	CHECK_EQ_INT(opf(&e, "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":1}"),
	             FSM_OK_UPDATED);
	CHECK(replica(&e, "default/web/0")->run);
	struct dom_replica *r1 = replica(&e, "default/web/1");
	CHECK(r1 != NULL && !r1->run);
	CHECK(replica(&e, "default/web/2") == NULL);
	/* A stop record no longer counts against capacity; once stopped it is gone. */
	CHECK_EQ_INT(dom_agent_get(&e.f.domain, "a1")->used_cpu, 100);
	CHECK_EQ_INT(report(&e, "a1", "default/web/1", r1->epoch, "stopped"), FSM_OK_UPDATED);
	CHECK(replica(&e, "default/web/1") == NULL);
	/* Delete: every replica told to stop; the workload record is gone. */
	CHECK_EQ_INT(opf(&e, "{\"op\":\"workload.delete\",\"key\":\"default/web\"}"),
	             FSM_OK_DELETED);
	CHECK(dom_workload_get(&e.f.domain, "default/web") == NULL);
	struct dom_replica *r0 = replica(&e, "default/web/0");
	CHECK(r0 != NULL && !r0->run);
	/* Forgetting needs the stop record's epoch. */
	CHECK_EQ_INT(opf(&e, "{\"op\":\"replica.forget\",\"id\":\"default/web/0\",\"epoch\":1}"),
	             FSM_CONFLICT);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"replica.forget\",\"id\":\"default/web/0\",\"epoch\":%llu}",
	                 (unsigned long long)r0->epoch),
	             FSM_OK_DELETED);
	CHECK_EQ_INT(dom_agent_get(&e.f.domain, "a1")->n_replicas, 0);
	env_close(&e, true);
}

/* replica.stop: desired stop where it is (an exclusive replica leaving a draining agent);
 * the record stays on its agent until that agent reports it stopped. */
static void test_replica_stop(void)
{
	struct env e = {0};
	env_open(&e);
	enroll(&e, "a1", "z1", 1000, 100);
	put_workload(&e, "web", 1, 100, "sleep");
	place(&e, "default/web/0", 0, "a1");
	struct dom_replica *r = replica(&e, "default/web/0");
	CHECK(r != NULL && r->run);
	uint64_t epoch = r->epoch;
	CHECK_EQ_INT(opf(&e, "{\"op\":\"replica.stop\",\"id\":\"default/web/0\",\"epoch\":%llu}",
	                 (unsigned long long)epoch + 1),
	             FSM_CONFLICT);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"replica.stop\",\"id\":\"default/web/9\",\"epoch\":1}"),
	             FSM_NOT_FOUND);
	CHECK(replica(&e, "default/web/0")->run);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"replica.stop\",\"id\":\"default/web/0\",\"epoch\":%llu}",
	                 (unsigned long long)epoch),
	             FSM_OK_UPDATED);
	r = replica(&e, "default/web/0");
	CHECK(r != NULL && !r->run && strcmp(r->agent, "a1") == 0 && r->epoch == epoch);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"replica.stop\",\"id\":\"default/web/0\",\"epoch\":%llu}",
	                 (unsigned long long)epoch),
	             FSM_OK_UNCHANGED);
	CHECK_EQ_INT(report(&e, "a1", "default/web/0", epoch, "stopped"), FSM_OK_UPDATED);
	CHECK(replica(&e, "default/web/0") == NULL);
	env_close(&e, true);
}

static void test_agent_delete_and_drain(void)
{
	struct env e = {0};
	env_open(&e);
	enroll(&e, "a1", "z1", 1000, 100);
	put_workload(&e, "web", 2, 100, "sleep");
	place(&e, "default/web/0", 0, "a1");
	place(&e, "default/web/1", 0, "a1");
	opf(&e, "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":1}");
	/* A drain completes only with nothing assigned. */
	opf(&e, "{\"op\":\"agent.flags\",\"id\":\"a1\",\"drain\":true}");
	CHECK_EQ_INT(opf(&e, "{\"op\":\"agent.drained\",\"id\":\"a1\"}"), FSM_CONFLICT);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"agent.delete\",\"id\":\"a1\"}"), FSM_OK_DELETED);
	CHECK(dom_agent_get(&e.f.domain, "a1") == NULL);
	struct dom_replica *r0 = replica(&e, "default/web/0");
	CHECK(r0 != NULL && r0->agent[0] == '\0' && r0->run && r0->on == NULL);
	CHECK(replica(&e, "default/web/1") == NULL); /* its stop record went with it */
	CHECK_EQ_INT(e.f.domain.n_ready + e.f.domain.n_offline, 0);
	enroll(&e, "a2", "z1", 1000, 100);
	opf(&e, "{\"op\":\"agent.flags\",\"id\":\"a2\",\"drain\":true}");
	CHECK_EQ_INT(opf(&e, "{\"op\":\"agent.drained\",\"id\":\"a2\"}"), FSM_OK_UPDATED);
	CHECK(dom_agent_get(&e.f.domain, "a2")->drain_complete);
	opf(&e, "{\"op\":\"agent.flags\",\"id\":\"a2\",\"cordon\":false}");
	struct dom_agent *a2 = dom_agent_get(&e.f.domain, "a2");
	CHECK(!a2->draining && !a2->drain_complete && !a2->cordoned);
	env_close(&e, true);
}

static void test_rebuild_and_agreement(void)
{
	struct env a = {0}, b = {0};
	env_open(&a);
	env_open(&b);
	for (int k = 0; k < 2; k++) {
		struct env *e = k == 0 ? &a : &b;
		enroll(e, "a1", "z1", 1000, 100);
		enroll(e, "a2", "z2", 1000, 100);
		put_workload(e, "web", 3, 100, "sleep");
		place(e, "default/web/0", 0, "a1");
		place(e, "default/web/1", 0, "a2");
		place(e, "default/web/2", 0, "a1");
		report(e, "a1", "default/web/0", replica(e, "default/web/0")->epoch, "running");
		opf(e, "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":2}");
		opf(e, "{\"op\":\"agent.state\",\"id\":\"a2\",\"state\":\"offline\"}");
	}
	uint64_t ka, kb;
	CHECK(fsm_digest(&a.f, &ka) == fsm_digest(&b.f, &kb) && ka == kb);
	/* Reopened, the mirror is what apply had built. */
	uint64_t used = dom_agent_get(&a.f.domain, "a1")->used_cpu;
	unsigned n = dom_agent_get(&a.f.domain, "a1")->n_replicas;
	uint64_t windex = dom_workload_get(&a.f.domain, "default/web")->index;
	env_close(&a, false);
	env_open(&a);
	CHECK_EQ_INT(dom_agent_get(&a.f.domain, "a1")->used_cpu, used);
	CHECK_EQ_INT(dom_agent_get(&a.f.domain, "a1")->n_replicas, n);
	CHECK(!dom_agent_get(&a.f.domain, "a2")->ready);
	CHECK_EQ_INT(dom_workload_get(&a.f.domain, "default/web")->index, windex);
	CHECK_EQ_INT(a.f.domain.n_by_state[DOM_R_RUNNING], 1);
	CHECK(!replica(&a, "default/web/2")->run);
	/* A snapshot image of one installs the same mirror in the other. */
	struct store_snap snap;
	struct buf img;
	buf_init(&img);
	store_snap_take(&snap, &a.f.store);
	CHECK_EQ_INT(fsm_snapshot_write(&snap, a.f.applied_index + 10, &img, NULL), 0);
	store_snap_release(&snap);
	struct env c = {0};
	env_open(&c);
	char err[256];
	CHECK_EQ_INT(fsm_snapshot_restore(&c.f, img.data, img.len, err, sizeof err), 0);
	CHECK_EQ_INT(dom_agent_get(&c.f.domain, "a1")->used_cpu, used);
	CHECK(dom_workload_get(&c.f.domain, "default/web") != NULL);
	buf_close(&img);
	env_close(&a, true);
	env_close(&b, true);
	env_close(&c, true);
}

/* A keyed domain write applies once: its retry is answered from the record (replayed, no new
 * version), the same key on another op is a mismatch, and a follower's internal key for a
 * forwarded write works the same way, apart from the client's records. */
static void test_idempotent_ops(void)
{
	struct env e = {0};
	env_open(&e);
	CHECK_EQ_INT(put_workload(&e, "web", 2, 100, "sleep"), FSM_OK_CREATED);
	const char *scale = "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":3}";
	unsigned r = op_keyed(&e, scale, "scale-1", false, false);
	CHECK_EQ_INT(fsm_result_code((void *)(uintptr_t)r), FSM_OK_UPDATED);
	CHECK(!fsm_result_replayed((void *)(uintptr_t)r));
	uint64_t v = dom_workload_get(&e.f.domain, "default/web")->version;
	r = op_keyed(&e, scale, "scale-1", false, false);
	CHECK_EQ_INT(fsm_result_code((void *)(uintptr_t)r), FSM_OK_UPDATED);
	CHECK(fsm_result_replayed((void *)(uintptr_t)r));
	CHECK_EQ_INT(dom_workload_get(&e.f.domain, "default/web")->version, v);
	struct fsm_idem rec;
	CHECK_EQ_INT(fsm_idem_get(&e.f, "scale-1", 7, false, &rec), 0);
	CHECK_EQ_INT(rec.index, v);
	r = op_keyed(&e, "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":9}",
	             "scale-1", false, false);
	CHECK_EQ_INT(fsm_result_code((void *)(uintptr_t)r), FSM_IDEM_MISMATCH);
	CHECK_EQ_INT(dom_workload_get(&e.f.domain, "default/web")->replicas, 3);
	/* A follower's re-send of a forwarded scale after an unknown outcome. */
	const char *down = "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":1}";
	const char *ik = "-5cQ9g-AbCdEfGhIjKlMnOp-----01";
	r = op_keyed(&e, down, ik, true, false);
	CHECK_EQ_INT(fsm_result_code((void *)(uintptr_t)r), FSM_OK_UPDATED);
	v = dom_workload_get(&e.f.domain, "default/web")->version;
	r = op_keyed(&e, down, ik, true, true);
	CHECK(fsm_result_replayed((void *)(uintptr_t)r));
	CHECK_EQ_INT(dom_workload_get(&e.f.domain, "default/web")->version, v);
	CHECK_EQ_INT(fsm_idem_get(&e.f, ik, strlen(ik), true, &rec), 0);
	CHECK_EQ_INT(fsm_idem_get(&e.f, ik, strlen(ik), false, &rec), 1);
	env_close(&e, true);
}

/* The JSON of a's assignments rendered afresh, as assign_list_text must give it. */
static char *fresh_list(struct env *e, const char *agent)
{
	struct dom_agent *a = dom_agent_get(&e->f.domain, agent);
	json_t *arr = json_array();
	size_t n;
	const struct dom_replica **list = assign_sorted(a, &n);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, assign_replica_doc(&e->f.domain, list[i], true));
	free(list);
	char *s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return s;
}

/* Whether the cached list of agent is exactly the fresh render; *text gets the list. */
static bool cached_is_fresh(struct env *e, struct assign_cache *c, const char *agent,
                            struct buf *text)
{
	buf_reset(text);
	assign_list_text(c, &e->f.domain, dom_agent_get(&e->f.domain, agent), text);
	buf_put_u8(text, '\0');
	char *want = fresh_list(e, agent);
	bool same = want != NULL && strcmp(text->data, want) == 0;
	if (!same)
		fprintf(stderr, "cached %s\nfresh  %s\n", text->data, want);
	free(want);
	return same;
}

static void test_assignment_texts(void)
{
	struct env e = {0};
	struct assign_cache c;
	struct buf t;
	buf_init(&t);
	assign_cache_init(&c);
	env_open(&e);
	enroll(&e, "a1", "z1", 1000, 100);
	enroll(&e, "a2", "z1", 1000, 100);
	put_workload(&e, "web", 3, 100, "sleep");
	put_workload(&e, "api", 1, 100, "true");
	CHECK(cached_is_fresh(&e, &c, "a1", &t) && strcmp(t.data, "[]") == 0);
	place(&e, "default/web/0", 0, "a1");
	place(&e, "default/web/1", 0, "a1");
	place(&e, "default/api/0", 0, "a1");
	CHECK(cached_is_fresh(&e, &c, "a1", &t));
	CHECK(strstr(t.data, "\"default/api/0\"") <
	      strstr(t.data, "\"default/web/0\"")); /* id order */
	CHECK_EQ_INT(c.misses, 3);
	CHECK(cached_is_fresh(&e, &c, "a1", &t)); /* nothing changed: every text from the cache */
	CHECK_EQ_INT(c.misses, 3);
	CHECK_EQ_INT(c.hits, 3);

	/* A report changes one record: only its text is rendered again. */
	struct dom_replica *r = dom_replica_get(&e.f.domain, "default/web/0");
	CHECK_EQ_INT(report(&e, "a1", "default/web/0", r->epoch, "running"), FSM_OK_UPDATED);
	CHECK(cached_is_fresh(&e, &c, "a1", &t) && strstr(t.data, "\"running\"") != NULL);
	CHECK_EQ_INT(c.misses, 4);
	/* A new spec of web: both of its replicas get it, api's text stays. */
	put_workload(&e, "web", 3, 100, "sleep-v2");
	CHECK(cached_is_fresh(&e, &c, "a1", &t) && strstr(t.data, "sleep-v2") != NULL);
	CHECK_EQ_INT(c.misses, 6);
	/* A scale that changes only the workload record renders its replicas again too. */
	CHECK_EQ_INT(opf(&e, "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":4}"),
	             FSM_OK_UPDATED);
	CHECK(cached_is_fresh(&e, &c, "a1", &t));
	/* A move: gone from a1's list, in a2's with its new epoch. */
	r = dom_replica_get(&e.f.domain, "default/web/1");
	CHECK_EQ_INT(place(&e, "default/web/1", r->epoch, "a2"), FSM_OK_UPDATED);
	CHECK(cached_is_fresh(&e, &c, "a1", &t) && strstr(t.data, "default/web/1") == NULL);
	CHECK(cached_is_fresh(&e, &c, "a2", &t) && strstr(t.data, "default/web/1") != NULL);
	/* Told to stop (scale down), then the workload deleted: no spec any more. */
	CHECK_EQ_INT(opf(&e, "{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":1}"),
	             FSM_OK_UPDATED);
	CHECK(cached_is_fresh(&e, &c, "a2", &t) && strstr(t.data, "\"stop\"") != NULL);
	CHECK_EQ_INT(opf(&e, "{\"op\":\"workload.delete\",\"key\":\"default/web\"}"),
	             FSM_OK_DELETED);
	CHECK(cached_is_fresh(&e, &c, "a1", &t) && strstr(t.data, "sleep-v2") == NULL);

	/* The answer: the head's fields, then the list, as one object. */
	size_t len;
	char *ans =
	    assign_answer_text(&c, &e.f.domain, json_pack("{s:i, s:n}", "index", 7, "leader"),
	                       dom_agent_get(&e.f.domain, "a1"), &len);
	json_error_t jerr;
	json_t *doc = ans != NULL ? json_loadb(ans, len, 0, &jerr) : NULL;
	char *want = fresh_list(&e, "a1");
	json_t *list = json_loads(want, 0, &jerr);
	CHECK(doc != NULL && json_integer_value(json_object_get(doc, "index")) == 7 &&
	      json_is_null(json_object_get(doc, "leader")) && json_object_size(doc) == 3 &&
	      json_equal(json_object_get(doc, "assignments"), list));
	CHECK_EQ_INT(len, ans != NULL ? strlen(ans) : 0);
	free(ans);
	json_decref(doc);
	ans = assign_answer_text(&c, &e.f.domain, json_object(), dom_agent_get(&e.f.domain, "a1"),
	                         &len);
	doc = ans != NULL ? json_loadb(ans, len, 0, &jerr) : NULL;
	CHECK(doc != NULL && json_object_size(doc) == 1 &&
	      json_equal(json_object_get(doc, "assignments"), list));
	free(ans);
	json_decref(doc);
	json_decref(list);
	free(want);

	/* Cleared (leadership ended): the next list renders every text again, the same. */
	assign_cache_clear(&c);
	uint64_t misses = c.misses;
	CHECK(cached_is_fresh(&e, &c, "a1", &t));
	CHECK(c.misses > misses);
	assign_cache_close(&c);
	buf_close(&t);
	env_close(&e, true);
}

/* dom_slot_id writes what snprintf("%s/%u") would, truncation included. */
static void test_slot_ids(void)
{
	const char *keys[] = {"", "default/web", "ns/a-very-long-workload-name-of-many-letters"};
	unsigned slots[] = {0, 7, 10, 99, 100, 65535, 4294967295u};
	size_t caps[] = {1, 2, 5, 12, 13, 14, 40, 64, 512};
	for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
		for (size_t s = 0; s < sizeof slots / sizeof *slots; s++)
			for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) {
				char want[512], got[512];
				memset(got, 'x', sizeof got);
				snprintf(want, caps[c], "%s/%u", keys[k], slots[s]);
				dom_slot_id(got, caps[c], keys[k], slots[s]);
				CHECK_EQ_STR(got, want);
			}
}

int main(void)
{
	test_enroll_and_agent_state();
	test_workload_versions();
	test_placement_rechecked();
	test_scale_down_and_delete();
	test_replica_stop();
	test_agent_delete_and_drain();
	test_rebuild_and_agreement();
	test_idempotent_ops();
	test_assignment_texts();
	test_slot_ids();
	TEST_DONE();
}
