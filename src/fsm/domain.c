/* domain: applying domain entries to the store and the in-memory mirror (see domain.h).
 *
 * Every op follows the same shape: read what the op names from the mirror, decide (refusing
 * deterministically what no longer fits), then write each changed record to the batch and
 * replace it in the mirror. Nothing here reads a clock, a flag or the node's role: time comes
 * from the entry (ts_ms, the leader's clock when it proposed it), the epoch of a placement is
 * the entry's index. Mirror iteration order never matters: ops name their records, and the
 * only scan (a workload's replicas when it is deleted or scaled down) walks the store in key
 * order. */
#include "fsm/domain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "log/log.h"
#include "store/store.h"

#define DOM_MAX_FAILED_ON 8

const char *const dom_op_names[] = {
    "agent.enroll",   "agent.state",     "agent.flags",    "agent.drained", "agent.delete",
    "workload.put",   "workload.delete", "workload.scale", "replica.place", "replica.pending",
    "replica.report", "replica.forget",  "replica.stop",
};

unsigned dom_n_ops(void)
{
	return sizeof dom_op_names / sizeof dom_op_names[0];
}

static const char *const RSTATES[] = {"pending", "starting", "running",
                                      "exited",  "failed",   "stopped"};

const char *dom_rstate_name(enum dom_rstate s)
{
	return s < DOM_R_NSTATES ? RSTATES[s] : "pending";
}

int dom_rstate_parse(const char *s)
{
	for (int i = 0; s != NULL && i < DOM_R_NSTATES; i++)
		if (strcmp(s, RSTATES[i]) == 0)
			return i;
	return -1;
}

void dom_agent_key(char *out, size_t size, const char *id)
{
	snprintf(out, size, "a/%s", id);
}

void dom_workload_key(char *out, size_t size, const char *wkey)
{
	snprintf(out, size, "w/%s", wkey);
}

void dom_replica_prefix(char *out, size_t size, const char *wkey)
{
	snprintf(out, size, "r/%s/", wkey);
}

static void replica_store_key(char *out, size_t size, const char *wkey, unsigned slot)
{
	snprintf(out, size, "r/%s/%04u", wkey, slot);
}

/* ---- small JSON readers ---- */

static const char *jstr(json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));
	return s != NULL ? s : "";
}

static uint64_t juint(json_t *o, const char *name)
{
	json_int_t v = json_integer_value(json_object_get(o, name));
	return v > 0 ? (uint64_t)v : 0;
}

static bool jbool(json_t *o, const char *name)
{
	return json_is_true(json_object_get(o, name));
}

static void set_uint(json_t *o, const char *name, uint64_t v)
{
	json_object_set_new(o, name, json_integer((json_int_t)v));
}

static void *xcalloc(size_t n)
{
	void *p = calloc(1, n);
	if (p == NULL) {
		log_error("domain out of memory", "bytes=%zu", n);
		abort();
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (p == NULL) {
		log_error("domain out of memory", "bytes=%zu", strlen(s) + 1);
		abort();
	}
	return p;
}

/* ---- mirror: agents ---- */

static void agent_refresh(struct dom_agent *a)
{
	json_t *cap = json_object_get(a->doc, "capacity");
	a->zone = jstr(a->doc, "zone");
	a->cpu = juint(cap, "cpu_millicores");
	a->mem = juint(cap, "memory_bytes");
	a->ready = strcmp(jstr(a->doc, "state"), "ready") == 0;
	a->cordoned = jbool(a->doc, "cordoned");
	a->draining = jbool(a->doc, "draining");
	a->drain_complete = jbool(a->doc, "drain_complete");
	a->version = juint(a->doc, "version");
}

static void count_agent(struct fsm_domain *d, const struct dom_agent *a, int delta)
{
	if (a->ready)
		d->n_ready += (unsigned)delta;
	else
		d->n_offline += (unsigned)delta;
}

/* Takes doc. */
static struct dom_agent *agent_put(struct fsm_domain *d, json_t *doc)
{
	const char *id = jstr(doc, "id");
	struct dom_agent *a = hmap_get(&d->agents, id);
	if (a == NULL) {
		a = xcalloc(sizeof *a);
		a->id = xstrdup(id);
		hmap_put(&d->agents, a->id, a);
	} else {
		count_agent(d, a, -1);
		json_decref(a->doc);
	}
	a->doc = doc;
	agent_refresh(a);
	count_agent(d, a, 1);
	return a;
}

/* ---- mirror: replicas ---- */

static void replica_link(struct fsm_domain *d, struct dom_replica *r)
{
	struct dom_agent *a = r->agent[0] ? hmap_get(&d->agents, r->agent) : NULL;
	r->on = a;
	if (a == NULL)
		return;
	r->aprev = NULL;
	r->anext = a->replicas;
	if (a->replicas != NULL)
		a->replicas->aprev = r;
	a->replicas = r;
	a->n_replicas++;
	if (r->run) {
		a->used_cpu += r->cpu;
		a->used_mem += r->mem;
	}
}

static void replica_unlink(struct dom_replica *r)
{
	struct dom_agent *a = r->on;
	if (a == NULL)
		return;
	if (r->aprev != NULL)
		r->aprev->anext = r->anext;
	else
		a->replicas = r->anext;
	if (r->anext != NULL)
		r->anext->aprev = r->aprev;
	r->anext = r->aprev = NULL;
	a->n_replicas--;
	if (r->run) {
		a->used_cpu -= r->cpu;
		a->used_mem -= r->mem;
	}
	r->on = NULL;
}

static void replica_refresh(struct dom_replica *r)
{
	json_t *res = json_object_get(r->doc, "resources");
	r->agent = jstr(r->doc, "agent");
	r->slot = (unsigned)juint(r->doc, "slot");
	r->epoch = juint(r->doc, "epoch");
	r->version = juint(r->doc, "version");
	r->spec_version = juint(r->doc, "spec_version");
	r->cpu = juint(res, "cpu_millicores");
	r->mem = juint(res, "memory_bytes");
	r->run = strcmp(jstr(r->doc, "desired"), "stop") != 0;
	int st = dom_rstate_parse(jstr(r->doc, "state"));
	r->state = st < 0 ? DOM_R_PENDING : (enum dom_rstate)st;
}

/* Takes doc; replaces the record of the same id. */
static struct dom_replica *replica_put(struct fsm_domain *d, json_t *doc)
{
	const char *id = jstr(doc, "id");
	struct dom_replica *r = hmap_get(&d->replicas, id);
	if (r == NULL) {
		r = xcalloc(sizeof *r);
		r->id = xstrdup(id);
		r->workload = xstrdup(jstr(doc, "workload"));
		hmap_put(&d->replicas, r->id, r);
	} else {
		replica_unlink(r);
		d->n_by_state[r->state]--;
		json_decref(r->doc);
	}
	r->doc = doc;
	replica_refresh(r);
	d->n_by_state[r->state]++;
	replica_link(d, r);
	return r;
}

static void replica_free(struct dom_replica *r)
{
	json_decref(r->doc);
	free(r->id);
	free(r->workload);
	free(r);
}

static void replica_drop(struct fsm_domain *d, struct dom_replica *r)
{
	replica_unlink(r);
	d->n_by_state[r->state]--;
	hmap_del(&d->replicas, r->id);
	replica_free(r);
}

/* ---- mirror: workloads ---- */

static void workload_refresh(struct dom_workload *w)
{
	json_t *res = json_object_get(w->doc, "resources");
	w->replicas = (unsigned)juint(w->doc, "replicas");
	w->cpu = juint(res, "cpu_millicores");
	w->mem = juint(res, "memory_bytes");
	w->version = juint(w->doc, "version");
	w->spec_version = juint(w->doc, "spec_version");
}

static struct dom_workload *workload_put(struct fsm_domain *d, const char *key, json_t *doc)
{
	struct dom_workload *w = hmap_get(&d->workloads, key);
	if (w == NULL) {
		w = xcalloc(sizeof *w);
		w->key = xstrdup(key);
		hmap_put(&d->workloads, w->key, w);
	} else {
		json_decref(w->doc);
	}
	w->doc = doc;
	workload_refresh(w);
	return w;
}

static void workload_drop(struct fsm_domain *d, struct dom_workload *w)
{
	hmap_del(&d->workloads, w->key);
	json_decref(w->doc);
	free(w->key);
	free(w);
}

/* ---- lookups ---- */

struct dom_agent *dom_agent_get(struct fsm_domain *d, const char *id)
{
	return hmap_get(&d->agents, id);
}

struct dom_workload *dom_workload_get(struct fsm_domain *d, const char *key)
{
	return hmap_get(&d->workloads, key);
}

struct dom_replica *dom_replica_get(struct fsm_domain *d, const char *id)
{
	return hmap_get(&d->replicas, id);
}

void dom_slot_id(char *out, size_t cap, const char *workload, unsigned slot_in)
{
	unsigned slot = slot_in;
	char digits[12];
	size_t k = 0, n = strlen(workload);
	do {
		digits[k++] = (char)('0' + slot % 10);
		slot /= 10;
	} while (slot > 0);
	if (n + 1 + k >= cap) { /* longer than any id the specs allow: truncate as snprintf */
		snprintf(out, cap, "%s/%u", workload, slot_in);
		return;
	}
	memcpy(out, workload, n);
	out[n++] = '/';
	while (k > 0)
		out[n++] = digits[--k];
	out[n] = '\0';
}

struct dom_replica *dom_slot_get(struct fsm_domain *d, const char *workload, unsigned slot)
{
	char id[512];
	dom_slot_id(id, sizeof id, workload, slot);
	return hmap_get(&d->replicas, id);
}

/* ---- life cycle ---- */

void dom_init(struct fsm_domain *d)
{
	memset(d, 0, sizeof *d);
	hmap_init(&d->agents);
	hmap_init(&d->workloads);
	hmap_init(&d->replicas);
}

static void drop_all(struct fsm_domain *d)
{
	const char *k;
	void *v;
	for (size_t i = 0; hmap_next(&d->replicas, &i, &k, &v);)
		replica_free(v);
	for (size_t i = 0; hmap_next(&d->workloads, &i, &k, &v);) {
		struct dom_workload *w = v;
		json_decref(w->doc);
		free(w->key);
		free(w);
	}
	for (size_t i = 0; hmap_next(&d->agents, &i, &k, &v);) {
		struct dom_agent *a = v;
		json_decref(a->doc);
		free(a->id);
		free(a);
	}
	hmap_close(&d->replicas);
	hmap_close(&d->workloads);
	hmap_close(&d->agents);
}

void dom_close(struct fsm_domain *d)
{
	drop_all(d);
}

/* Loads every record under `prefix` with load(d, key, doc). */
static int load_prefix(struct fsm *f, const char *prefix,
                       void (*load)(struct fsm_domain *d, const char *key, json_t *doc))
{
	struct store_iter it;
	store_iter_init(&it, &f->store, NULL, prefix, strlen(prefix), NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl, vl;
		const char *k = store_iter_key(&it, &kl);
		const char *v = store_iter_value(&it, &vl);
		json_error_t jerr;
		json_t *doc = json_loadb(v, vl, 0, &jerr);
		if (doc == NULL || !json_is_object(doc)) {
			log_error("Corrupt domain record", "key=%.*s error=\"%s\"", (int)kl, k,
			          jerr.text);
			json_decref(doc);
			store_iter_close(&it);
			return -1;
		}
		char key[1100];
		snprintf(key, sizeof key, "%.*s", (int)(kl - 2), k + 2);
		load(&f->domain, key, doc);
	}
	return store_iter_close(&it);
}

bool dom_record_valid(const void *key, size_t klen, const void *value, size_t vlen)
{
	const char *k = key;
	if (klen < 2 || k[1] != '/' || (k[0] != 'a' && k[0] != 'w' && k[0] != 'r'))
		return true;
	json_error_t jerr;
	json_t *doc = json_loadb(value, vlen, 0, &jerr);
	bool ok = json_is_object(doc);
	json_decref(doc);
	return ok;
}

static void load_agent(struct fsm_domain *d, const char *key, json_t *doc)
{
	(void)key;
	agent_put(d, doc);
}

static void load_workload(struct fsm_domain *d, const char *key, json_t *doc)
{
	struct dom_workload *w = workload_put(d, key, doc);
	w->index = w->version;
	if (w->index > d->index)
		d->index = w->index;
}

static void load_replica(struct fsm_domain *d, const char *key, json_t *doc)
{
	(void)key;
	struct dom_replica *r = replica_put(d, doc);
	if (r->on != NULL && r->version > r->on->assign_index)
		r->on->assign_index = r->version;
	struct dom_workload *w = hmap_get(&d->workloads, r->workload);
	if (w != NULL && r->version > w->index)
		w->index = r->version;
	if (r->version > d->index)
		d->index = r->version;
}

int dom_rebuild(struct fsm *f)
{
	struct fsm_domain *d = &f->domain;
	dom_hook hook = d->hook;
	void *arg = d->hook_arg;
	struct dom_stats stats = d->stats;
	drop_all(d);
	dom_init(d);
	d->hook = hook;
	d->hook_arg = arg;
	d->stats = stats;
	/* Agents before replicas (a replica links to its agent), workloads before replicas
	 * (a replica's change index raises its workload's). */
	if (load_prefix(f, "a/", load_agent) != 0 || load_prefix(f, "w/", load_workload) != 0 ||
	    load_prefix(f, "r/", load_replica) != 0)
		return -1;
	return 0;
}

/* ---- writing records ---- */

static void emit(struct fsm_domain *d, enum dom_event ev, const char *key, uint64_t index)
{
	if (d->hook != NULL)
		d->hook(d->hook_arg, ev, key, index);
}

static void put_record(struct store_batch *b, const char *key, json_t *doc)
{
	char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	if (s == NULL) {
		log_error("domain out of memory", "key=%s", key);
		abort();
	}
	store_batch_put(b, key, strlen(key), s, strlen(s));
	free(s);
}

static void del_record(struct store_batch *b, const char *key)
{
	store_batch_delete(b, key, strlen(key));
}

struct ctx {
	struct fsm *f;
	struct fsm_domain *d;
	struct store_batch *b;
	uint64_t index, ts;
	bool *read_error;
};

static void write_agent(struct ctx *c, struct dom_agent *a)
{
	char key[128];
	dom_agent_key(key, sizeof key, a->id);
	put_record(c->b, key, a->doc);
	emit(c->d, DOM_EV_AGENT, a->id, c->index);
}

static void touch_assignments(struct ctx *c, struct dom_agent *a)
{
	if (a == NULL)
		return;
	a->assign_index = c->index;
	a->assign_exact = true;
	emit(c->d, DOM_EV_ASSIGNMENT, a->id, c->index);
}

static void touch_workload(struct ctx *c, const char *wkey)
{
	struct dom_workload *w = hmap_get(&c->d->workloads, wkey);
	if (w != NULL)
		w->index = c->index;
	emit(c->d, DOM_EV_WORKLOAD, wkey, c->index);
}

/* Writes (doc != NULL, taken) or deletes the replica r_id of workload/slot. */
static void write_replica(struct ctx *c, const char *wkey, unsigned slot, const char *id,
                          json_t *doc)
{
	char key[600];
	struct dom_replica *old = hmap_get(&c->d->replicas, id);
	struct dom_agent *before = old != NULL ? old->on : NULL;
	replica_store_key(key, sizeof key, wkey, slot);
	if (doc != NULL) {
		put_record(c->b, key, doc);
		struct dom_replica *r = replica_put(c->d, doc);
		if (r->on != before)
			touch_assignments(c, r->on);
	} else {
		del_record(c->b, key);
		if (old != NULL)
			replica_drop(c->d, old);
	}
	touch_assignments(c, before);
	touch_workload(c, wkey);
	emit(c->d, DOM_EV_REPLICA, id, c->index);
}

/* A copy of r's record to change and write back. */
static json_t *replica_copy(const struct dom_replica *r)
{
	json_t *doc = json_deep_copy(r->doc);
	if (doc == NULL)
		abort();
	return doc;
}

/* The replica must stop: told to its agent (desired stop) when it has one, dropped when
 * nobody runs it. */
static void replica_retire(struct ctx *c, struct dom_replica *r)
{
	char wkey[512];
	unsigned slot = r->slot;
	char id[600];
	snprintf(wkey, sizeof wkey, "%s", r->workload);
	snprintf(id, sizeof id, "%s", r->id);
	if (r->agent[0] == '\0') {
		write_replica(c, wkey, slot, id, NULL);
		return;
	}
	if (!r->run)
		return;
	json_t *doc = replica_copy(r);
	json_object_set_new(doc, "desired", json_string("stop"));
	set_uint(doc, "version", c->index);
	write_replica(c, wkey, slot, id, doc);
}

/* Retires the replicas of wkey with slot >= from (all of them for from = 0 on delete),
 * walking the store in key order. */
static int retire_from(struct ctx *c, const char *wkey, unsigned from)
{
	char prefix[600];
	char ids[64][600];
	dom_replica_prefix(prefix, sizeof prefix, wkey);
	for (;;) {
		/* Collect first: writing replaces mirror entries the iterator does not see. */
		unsigned n = 0;
		struct store_iter it;
		store_iter_init(&it, &c->f->store, NULL, prefix, strlen(prefix), NULL, 0);
		for (; store_iter_valid(&it) && n < 64; store_iter_next(&it)) {
			size_t kl;
			const char *k = store_iter_key(&it, &kl);
			unsigned slot = (unsigned)strtoul(k + strlen(prefix), NULL, 10);
			if (slot < from)
				continue;
			snprintf(ids[n], sizeof ids[n], "%s/%u", wkey, slot);
			struct dom_replica *r = hmap_get(&c->d->replicas, ids[n]);
			if (r != NULL && (r->run || r->agent[0] == '\0'))
				n++;
		}
		store_iter_close(&it);
		if (n == 0)
			return 0;
		for (unsigned i = 0; i < n; i++) {
			struct dom_replica *r = hmap_get(&c->d->replicas, ids[i]);
			if (r != NULL)
				replica_retire(c, r);
		}
		/* The batch is not visible to the iterator: the retired ones are now stop
		 * records or gone from the mirror, so the next pass skips them. */
		if (n < 64)
			return 0;
	}
}

/* ---- agent ops ---- */

static bool same_json(json_t *a, json_t *b)
{
	return json_equal(a, b) || (a == NULL && b == NULL);
}

static unsigned op_agent_enroll(struct ctx *c, json_t *op)
{
	json_t *in = json_object_get(op, "agent");
	const char *id = jstr(in, "id");
	if (id[0] == '\0')
		return FSM_BAD_COMMAND;
	struct dom_agent *a = hmap_get(&c->d->agents, id);
	static const char *const fields[] = {"name",   "region",   "zone",
	                                     "labels", "capacity", "heartbeat_interval_ms"};
	/* A new agent secret's hash (the coordinator made the secret and answers it once; only
	 * the hash is replicated). Absent: the agent enrolled again with its secret, which stays.
	 */
	const char *secret_hash = jstr(op, "secret_hash");
	if (a != NULL && a->ready && secret_hash[0] == '\0') {
		bool same = true;
		for (size_t i = 0; i < sizeof fields / sizeof fields[0] && same; i++)
			same = same_json(json_object_get(a->doc, fields[i]),
			                 json_object_get(in, fields[i]));
		if (same)
			return FSM_OK_UNCHANGED;
	}
	json_t *doc = a != NULL ? json_deep_copy(a->doc) : json_object();
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		json_t *v = json_object_get(in, fields[i]);
		if (v != NULL)
			json_object_set(doc, fields[i], v);
	}
	json_object_set_new(doc, "id", json_string(id));
	json_object_set_new(doc, "state", json_string("ready"));
	if (secret_hash[0] != '\0')
		json_object_set_new(doc, "secret_hash", json_string(secret_hash));
	if (a == NULL) {
		json_object_set_new(doc, "cordoned", json_false());
		json_object_set_new(doc, "draining", json_false());
		json_object_set_new(doc, "drain_complete", json_false());
		set_uint(doc, "enrolled_at", c->ts);
	}
	set_uint(doc, "version", c->index);
	bool created = a == NULL;
	write_agent(c, agent_put(c->d, doc));
	return created ? FSM_OK_CREATED : FSM_OK_UPDATED;
}

/* Replaces an agent's record with doc (owned), at this entry's version. */
static unsigned agent_update(struct ctx *c, json_t *doc)
{
	set_uint(doc, "version", c->index);
	write_agent(c, agent_put(c->d, doc));
	return FSM_OK_UPDATED;
}

static unsigned op_agent_state(struct ctx *c, json_t *op)
{
	struct dom_agent *a = hmap_get(&c->d->agents, jstr(op, "id"));
	const char *state = jstr(op, "state");
	if (a == NULL)
		return FSM_NOT_FOUND;
	if (strcmp(state, "ready") != 0 && strcmp(state, "offline") != 0)
		return FSM_BAD_COMMAND;
	if (strcmp(jstr(a->doc, "state"), state) == 0)
		return FSM_OK_UNCHANGED;
	json_t *doc = json_deep_copy(a->doc);
	json_object_set_new(doc, "state", json_string(state));
	return agent_update(c, doc);
}

static unsigned op_agent_flags(struct ctx *c, json_t *op)
{
	struct dom_agent *a = hmap_get(&c->d->agents, jstr(op, "id"));
	if (a == NULL)
		return FSM_NOT_FOUND;
	json_t *doc = json_deep_copy(a->doc);
	json_t *cordon = json_object_get(op, "cordon");
	if (json_is_true(cordon)) {
		json_object_set_new(doc, "cordoned", json_true());
	} else if (json_is_false(cordon)) {
		/* uncordon ends a drain too */
		json_object_set_new(doc, "cordoned", json_false());
		json_object_set_new(doc, "draining", json_false());
		json_object_set_new(doc, "drain_complete", json_false());
	}
	if (json_is_true(json_object_get(op, "drain"))) {
		if (!a->draining)
			json_object_set_new(doc, "drain_complete", json_false());
		json_object_set_new(doc, "draining", json_true());
	}
	if (json_equal(doc, a->doc)) {
		json_decref(doc);
		return FSM_OK_UNCHANGED;
	}
	return agent_update(c, doc);
}

static unsigned op_agent_drained(struct ctx *c, json_t *op)
{
	struct dom_agent *a = hmap_get(&c->d->agents, jstr(op, "id"));
	if (a == NULL)
		return FSM_NOT_FOUND;
	if (!a->draining || a->n_replicas > 0)
		return FSM_CONFLICT;
	if (a->drain_complete)
		return FSM_OK_UNCHANGED;
	json_t *doc = json_deep_copy(a->doc);
	json_object_set_new(doc, "drain_complete", json_true());
	return agent_update(c, doc);
}

static unsigned op_agent_delete(struct ctx *c, json_t *op)
{
	struct dom_agent *a = hmap_get(&c->d->agents, jstr(op, "id"));
	char key[128];
	if (a == NULL)
		return FSM_NOT_FOUND;
	/* Its replicas: the ones meant to run become unplaced (the scheduler places them
	 * elsewhere), the ones meant to stop are forgotten (nobody can confirm them now; should
	 * the machine come back, its first heartbeat answer lists nothing for it). */
	while (a->replicas != NULL) {
		struct dom_replica *r = a->replicas;
		char wkey[512], id[600];
		unsigned slot = r->slot;
		snprintf(wkey, sizeof wkey, "%s", r->workload);
		snprintf(id, sizeof id, "%s", r->id);
		if (!r->run) {
			write_replica(c, wkey, slot, id, NULL);
			continue;
		}
		json_t *doc = replica_copy(r);
		json_object_set_new(doc, "agent", json_string(""));
		json_object_set_new(doc, "state", json_string("pending"));
		json_object_set_new(doc, "pending_reason", json_string("its agent was removed"));
		set_uint(doc, "version", c->index);
		write_replica(c, wkey, slot, id, doc);
	}
	dom_agent_key(key, sizeof key, a->id);
	del_record(c->b, key);
	emit(c->d, DOM_EV_AGENT, a->id, c->index);
	count_agent(c->d, a, -1);
	hmap_del(&c->d->agents, a->id);
	json_decref(a->doc);
	free(a->id);
	free(a);
	return FSM_OK_DELETED;
}

/* ---- workload ops ---- */

/* What replicas run: every field but the count, the labels and the bookkeeping. */
static bool same_spec(json_t *a, json_t *b)
{
	/* The fence is part of what the agent runs: changing it is a rolling restart, as for
	 * any other field the agents are given. */
	static const char *const fields[] = {
	    "command",   "env",     "image",           "resources",
	    "placement", "restart", "kill_timeout_ms", "stop_after_disconnect_s"};
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		if (!same_json(json_object_get(a, fields[i]), json_object_get(b, fields[i])))
			return false;
	return true;
}

/* 0 when the op's if_version (if any) matches w's version (0 = must not exist). */
static int check_version(json_t *op, struct dom_workload *w)
{
	json_t *want = json_object_get(op, "if_version");
	if (want == NULL || json_is_null(want))
		return 0;
	uint64_t v = (uint64_t)json_integer_value(want);
	return (v == 0 && w == NULL) || (w != NULL && w->version == v) ? 0 : -1;
}

static unsigned op_workload_put(struct ctx *c, json_t *op)
{
	json_t *in = json_object_get(op, "workload");
	char key[300];
	const char *ns = jstr(in, "namespace"), *name = jstr(in, "name");
	if (ns[0] == '\0' || name[0] == '\0')
		return FSM_BAD_COMMAND;
	snprintf(key, sizeof key, "%s/%s", ns, name);
	struct dom_workload *w = hmap_get(&c->d->workloads, key);
	if ((w != NULL && jbool(op, "create")) || check_version(op, w) != 0)
		return FSM_CAS_MISMATCH;
	json_t *doc = json_deep_copy(in);
	bool same = w != NULL && same_spec(w->doc, in);
	set_uint(doc, "version", c->index);
	set_uint(doc, "spec_version", same ? w->spec_version : c->index);
	set_uint(doc, "created_at", w != NULL ? juint(w->doc, "created_at") : c->ts);
	set_uint(doc, "updated_at", c->ts);
	bool created = w == NULL;
	unsigned before = w != NULL ? w->replicas : 0;
	char skey[320];
	dom_workload_key(skey, sizeof skey, key);
	put_record(c->b, skey, doc);
	w = workload_put(c->d, key, doc);
	w->index = c->index;
	emit(c->d, DOM_EV_WORKLOAD, key, c->index);
	if (w->replicas < before && retire_from(c, key, w->replicas) != 0)
		*c->read_error = true;
	return created ? FSM_OK_CREATED : FSM_OK_UPDATED;
}

static unsigned op_workload_delete(struct ctx *c, json_t *op)
{
	const char *key = jstr(op, "key");
	struct dom_workload *w = hmap_get(&c->d->workloads, key);
	char skey[320], wkey[300];
	if (w == NULL)
		return FSM_NOT_FOUND;
	if (check_version(op, w) != 0)
		return FSM_CAS_MISMATCH;
	snprintf(wkey, sizeof wkey, "%s", key);
	dom_workload_key(skey, sizeof skey, wkey);
	del_record(c->b, skey);
	workload_drop(c->d, w);
	emit(c->d, DOM_EV_WORKLOAD, wkey, c->index);
	if (retire_from(c, wkey, 0) != 0)
		*c->read_error = true;
	return FSM_OK_DELETED;
}

static unsigned op_workload_scale(struct ctx *c, json_t *op)
{
	const char *key = jstr(op, "key");
	struct dom_workload *w = hmap_get(&c->d->workloads, key);
	json_t *n = json_object_get(op, "replicas");
	char skey[320], wkey[300];
	if (!json_is_integer(n) || json_integer_value(n) < 0 || json_integer_value(n) > 1000)
		return FSM_BAD_COMMAND;
	if (w == NULL)
		return FSM_NOT_FOUND;
	if (check_version(op, w) != 0)
		return FSM_CAS_MISMATCH;
	unsigned before = w->replicas;
	json_t *doc = json_deep_copy(w->doc);
	json_object_set(doc, "replicas", n);
	set_uint(doc, "version", c->index);
	set_uint(doc, "updated_at", c->ts);
	snprintf(wkey, sizeof wkey, "%s", key);
	dom_workload_key(skey, sizeof skey, wkey);
	put_record(c->b, skey, doc);
	w = workload_put(c->d, wkey, doc);
	w->index = c->index;
	emit(c->d, DOM_EV_WORKLOAD, wkey, c->index);
	if (w->replicas < before && retire_from(c, wkey, w->replicas) != 0)
		*c->read_error = true;
	return FSM_OK_UPDATED;
}

/* ---- replica ops ---- */

/* Splits "<ns>/<name>/<N>" into the workload key and the slot. */
static int split_replica_id(const char *id, char *wkey, size_t size, unsigned *slot)
{
	const char *last = strrchr(id, '/');
	if (last == NULL || last == id || last[1] == '\0' || (size_t)(last - id) >= size)
		return -1;
	char *end;
	unsigned long s = strtoul(last + 1, &end, 10);
	if (*end != '\0' || s >= 1000)
		return -1;
	memcpy(wkey, id, (size_t)(last - id));
	wkey[last - id] = '\0';
	*slot = (unsigned)s;
	return 0;
}

static json_t *failed_on_after(const struct dom_replica *r)
{
	json_t *list = r != NULL ? json_deep_copy(json_object_get(r->doc, "failed_on")) : NULL;
	if (!json_is_array(list)) {
		json_decref(list);
		list = json_array();
	}
	if (r == NULL || r->state != DOM_R_FAILED || r->agent[0] == '\0')
		return list;
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) if (strcmp(json_string_value(v), r->agent) == 0) return list;
	json_array_append_new(list, json_string(r->agent));
	while (json_array_size(list) > DOM_MAX_FAILED_ON)
		json_array_remove(list, 0);
	return list;
}

static unsigned op_replica_place(struct ctx *c, json_t *op)
{
	const char *id = jstr(op, "id");
	char wkey[300];
	unsigned slot;
	if (split_replica_id(id, wkey, sizeof wkey, &slot) != 0)
		return FSM_BAD_COMMAND;
	struct dom_workload *w = hmap_get(&c->d->workloads, wkey);
	struct dom_replica *r = hmap_get(&c->d->replicas, id);
	struct dom_agent *a = hmap_get(&c->d->agents, jstr(op, "agent"));
	/* Re-check the plan against the state it lands in (optimistic scheduling). */
	if (w == NULL || slot >= w->replicas || (r != NULL ? r->epoch : 0) != juint(op, "epoch") ||
	    a == NULL || !a->ready || a->cordoned || a->draining)
		return FSM_CONFLICT;
	uint64_t own_cpu = 0, own_mem = 0;
	if (r != NULL && r->on == a && r->run) {
		own_cpu = r->cpu;
		own_mem = r->mem;
	}
	if (a->used_cpu - own_cpu + w->cpu > a->cpu || a->used_mem - own_mem + w->mem > a->mem)
		return FSM_CONFLICT;
	json_t *doc = json_object();
	json_object_set_new(doc, "id", json_string(id));
	json_object_set_new(doc, "workload", json_string(wkey));
	set_uint(doc, "slot", slot);
	json_object_set_new(doc, "agent", json_string(a->id));
	set_uint(doc, "epoch", c->index);
	json_object_set_new(doc, "desired", json_string("run"));
	json_object_set_new(doc, "state", json_string("pending"));
	set_uint(doc, "restarts", 0);
	json_object_set_new(doc, "exit_code", json_null());
	json_object_set_new(doc, "pending_reason", json_string(""));
	json_object_set_new(doc, "failed_on", failed_on_after(r));
	set_uint(doc, "version", c->index);
	set_uint(doc, "spec_version", w->spec_version);
	json_object_set_new(doc, "resources",
	                    json_pack("{s:I, s:I}", "cpu_millicores", (json_int_t)w->cpu,
	                              "memory_bytes", (json_int_t)w->mem));
	bool created = r == NULL;
	write_replica(c, wkey, slot, id, doc);
	return created ? FSM_OK_CREATED : FSM_OK_UPDATED;
}

static unsigned op_replica_pending(struct ctx *c, json_t *op)
{
	const char *id = jstr(op, "id");
	char wkey[300];
	unsigned slot;
	if (split_replica_id(id, wkey, sizeof wkey, &slot) != 0)
		return FSM_BAD_COMMAND;
	struct dom_workload *w = hmap_get(&c->d->workloads, wkey);
	struct dom_replica *r = hmap_get(&c->d->replicas, id);
	const char *reason = jstr(op, "reason");
	if (w == NULL || slot >= w->replicas || (r != NULL ? r->epoch : 0) != juint(op, "epoch"))
		return FSM_CONFLICT;
	if (r != NULL && strcmp(jstr(r->doc, "pending_reason"), reason) == 0)
		return FSM_OK_UNCHANGED;
	json_t *doc;
	if (r != NULL) {
		doc = replica_copy(r);
	} else {
		doc = json_object();
		json_object_set_new(doc, "id", json_string(id));
		json_object_set_new(doc, "workload", json_string(wkey));
		set_uint(doc, "slot", slot);
		json_object_set_new(doc, "agent", json_string(""));
		set_uint(doc, "epoch", 0);
		json_object_set_new(doc, "desired", json_string("run"));
		json_object_set_new(doc, "state", json_string("pending"));
		set_uint(doc, "restarts", 0);
		json_object_set_new(doc, "exit_code", json_null());
		json_object_set_new(doc, "failed_on", json_array());
		set_uint(doc, "spec_version", w->spec_version);
		json_object_set_new(
		    doc, "resources",
		    json_pack("{s:i, s:i}", "cpu_millicores", 0, "memory_bytes", 0));
	}
	json_object_set_new(doc, "pending_reason", json_string(reason));
	set_uint(doc, "version", c->index);
	bool created = r == NULL;
	write_replica(c, wkey, slot, id, doc);
	return created ? FSM_OK_CREATED : FSM_OK_UPDATED;
}

/* One agent's report about one replica; true when it changed the record. */
static bool apply_report(struct ctx *c, json_t *rep)
{
	const char *id = jstr(rep, "id");
	struct dom_replica *r = hmap_get(&c->d->replicas, id);
	int state = dom_rstate_parse(jstr(rep, "state"));
	/* Only the agent holding the current placement speaks for the replica. */
	if (r == NULL || state < 0 || strcmp(r->agent, jstr(rep, "agent")) != 0 ||
	    r->epoch != juint(rep, "epoch") || r->agent[0] == '\0')
		return false;
	char wkey[512], rid[600];
	unsigned slot = r->slot;
	snprintf(wkey, sizeof wkey, "%s", r->workload);
	snprintf(rid, sizeof rid, "%s", r->id);
	bool done = state == DOM_R_STOPPED || state == DOM_R_EXITED || state == DOM_R_FAILED;
	if (!r->run && done) {
		write_replica(c, wkey, slot, rid, NULL); /* it stopped as told */
		return true;
	}
	json_t *exit_code = json_object_get(rep, "exit_code");
	json_t *doc = replica_copy(r);
	json_object_set_new(doc, "state", json_string(dom_rstate_name((enum dom_rstate)state)));
	json_object_set(doc, "exit_code", json_is_integer(exit_code) ? exit_code : json_null());
	set_uint(doc, "restarts", juint(rep, "restarts"));
	if (json_equal(doc, r->doc)) {
		json_decref(doc);
		return false;
	}
	set_uint(doc, "version", c->index);
	write_replica(c, wkey, slot, rid, doc);
	return true;
}

static unsigned op_replica_report(struct ctx *c, json_t *op)
{
	json_t *reports = json_object_get(op, "reports");
	size_t i;
	json_t *rep;
	unsigned changed = 0;
	if (!json_is_array(reports))
		return FSM_BAD_COMMAND;
	json_array_foreach(reports, i, rep) changed += apply_report(c, rep);
	return changed > 0 ? FSM_OK_UPDATED : FSM_OK_UNCHANGED;
}

static unsigned op_replica_forget(struct ctx *c, json_t *op)
{
	struct dom_replica *r = hmap_get(&c->d->replicas, jstr(op, "id"));
	if (r == NULL)
		return FSM_NOT_FOUND;
	if (r->run || r->epoch != juint(op, "epoch"))
		return FSM_CONFLICT;
	char wkey[512], rid[600];
	unsigned slot = r->slot;
	snprintf(wkey, sizeof wkey, "%s", r->workload);
	snprintf(rid, sizeof rid, "%s", r->id);
	write_replica(c, wkey, slot, rid, NULL);
	return FSM_OK_DELETED;
}

/* An exclusive workload's replica leaving a ready agent: told to stop there first, so its
 * replacement is placed only once that agent reports it gone (domain/plan.c). */
static unsigned op_replica_stop(struct ctx *c, json_t *op)
{
	struct dom_replica *r = hmap_get(&c->d->replicas, jstr(op, "id"));
	if (r == NULL)
		return FSM_NOT_FOUND;
	if (r->epoch != juint(op, "epoch") || r->agent[0] == '\0')
		return FSM_CONFLICT;
	if (!r->run)
		return FSM_OK_UNCHANGED;
	replica_retire(c, r);
	return FSM_OK_UPDATED;
}

/* ---- dispatch ---- */

typedef unsigned (*op_fn)(struct ctx *c, json_t *op);

static const op_fn OPS[] = {
    op_agent_enroll,   op_agent_state,     op_agent_flags,    op_agent_drained, op_agent_delete,
    op_workload_put,   op_workload_delete, op_workload_scale, op_replica_place, op_replica_pending,
    op_replica_report, op_replica_forget,  op_replica_stop,
};

unsigned dom_apply(struct fsm *f, struct store_batch *b, uint64_t index, uint64_t ts_ms,
                   const char *payload, size_t len, bool *read_error)
{
	struct fsm_domain *d = &f->domain;
	json_error_t jerr;
	json_t *op = json_loadb(payload, len, 0, &jerr);
	const char *name = jstr(op, "op");
	unsigned code = FSM_BAD_COMMAND;
	d->stats.entries++;
	for (unsigned i = 0; op != NULL && i < dom_n_ops(); i++) {
		if (strcmp(name, dom_op_names[i]) != 0)
			continue;
		struct ctx c = {f, d, b, index, ts_ms, read_error};
		d->stats.by_op[i]++;
		code = OPS[i](&c, op);
		break;
	}
	if (code == FSM_CONFLICT)
		d->stats.refused++;
	if (code != FSM_BAD_COMMAND && code != FSM_CONFLICT && code != FSM_OK_UNCHANGED &&
	    code != FSM_NOT_FOUND && code != FSM_CAS_MISMATCH)
		d->index = index;
	json_decref(op);
	return code;
}
