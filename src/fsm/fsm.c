/* fsm: applying commands to RocksDB, and the raft_fsm interface (see fsm.h). */
#include "fsm/fsm.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log/log.h"

static const char KEY_APPLIED[] = "m/applied";
static const char KEY_IDEM_COUNT[] = "m/idem_count";
static const char KEY_CLUSTER_ID[] = "g/cluster_id";

/* Expired idempotency records removed per apply: bounded so one write never pays for a
 * large backlog, yet faster than records can be added (one per write). */
#define IDEM_PRUNE_PER_APPLY 4

static uint64_t be64(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static void put_be64(void *p, uint64_t v)
{
	uint8_t *b = p;
	for (int i = 7; i >= 0; i--) {
		b[i] = (uint8_t)v;
		v >>= 8;
	}
}

static int read_u64(struct fsm *f, const char *key, uint64_t *out)
{
	char *v;
	size_t len;
	int rv = store_get(&f->store, key, strlen(key), &v, &len);
	if (rv != 0) {
		*out = 0;
		return rv < 0 ? -1 : 0;
	}
	*out = len == 8 ? be64(v) : 0;
	free(v);
	return 0;
}

static void batch_put_u64(struct store_batch *b, const char *key, uint64_t v)
{
	uint8_t raw[8];
	put_be64(raw, v);
	store_batch_put(b, key, strlen(key), raw, sizeof raw);
}

/* Builds "<ns>/<bytes>" into out (a buf the caller closes). */
static void make_key(struct buf *out, char ns, const char *p, size_t len)
{
	buf_reset(out);
	char head[2] = {ns, '/'};
	buf_append(out, head, 2);
	buf_append(out, p, len);
}

int fsm_kv_get(struct fsm *f, const char *key, size_t klen, struct fsm_kv *out)
{
	struct buf k;
	char *v;
	size_t len;
	buf_init(&k);
	make_key(&k, 'k', key, klen);
	int rv = store_get(&f->store, k.data, k.len, &v, &len);
	buf_close(&k);
	if (rv != 0)
		return rv;
	if (len < 24) {
		free(v);
		log_error("Corrupt kv record", "key_len=%zu record_len=%zu", klen, len);
		return -1;
	}
	out->create_index = be64(v);
	out->modify_index = be64(v + 8);
	out->version = be64(v + 16);
	out->value_len = len - 24;
	memmove(v, v + 24, out->value_len);
	v[out->value_len] = '\0';
	out->value = v;
	return 0;
}

void fsm_kv_free(struct fsm_kv *kv)
{
	free(kv->value);
	kv->value = NULL;
}

int fsm_idem_get(struct fsm *f, const char *key, size_t klen, struct fsm_idem *out)
{
	struct buf k;
	char *v;
	size_t len;
	buf_init(&k);
	make_key(&k, 'i', key, klen);
	int rv = store_get(&f->store, k.data, k.len, &v, &len);
	buf_close(&k);
	if (rv != 0)
		return rv;
	if (len != 25) {
		free(v);
		return -1;
	}
	out->ts_ms = be64(v);
	out->index = be64(v + 8);
	out->code = (uint8_t)v[16];
	out->fingerprint = be64(v + 17);
	free(v);
	return 0;
}

static int member_from_json(const char *data, size_t len, struct fsm_member *m)
{
	json_error_t jerr;
	json_t *o = json_loadb(data, len, 0, &jerr);
	if (o == NULL)
		return -1;
	const char *id = json_string_value(json_object_get(o, "node_id"));
	const char *ra = json_string_value(json_object_get(o, "raft_addr"));
	const char *ha = json_string_value(json_object_get(o, "http_addr"));
	const char *inc = json_string_value(json_object_get(o, "incarnation"));
	json_t *rid = json_object_get(o, "raft_id");
	int rv = -1;
	if (id != NULL && ra != NULL && ha != NULL && json_is_string(rid)) {
		memset(m, 0, sizeof *m);
		snprintf(m->node_id, sizeof m->node_id, "%s", id);
		snprintf(m->raft_addr, sizeof m->raft_addr, "%s", ra);
		snprintf(m->http_addr, sizeof m->http_addr, "%s", ha);
		snprintf(m->incarnation, sizeof m->incarnation, "%s", inc != NULL ? inc : "");
		m->raft_id = strtoull(json_string_value(rid), NULL, 10);
		rv = 0;
	}
	json_decref(o);
	return rv;
}

int fsm_member_get(struct fsm *f, const char *node_id, struct fsm_member *out)
{
	struct buf k;
	char *v;
	size_t len;
	buf_init(&k);
	make_key(&k, 'n', node_id, strlen(node_id));
	int rv = store_get(&f->store, k.data, k.len, &v, &len);
	buf_close(&k);
	if (rv != 0)
		return rv;
	rv = member_from_json(v, len, out);
	free(v);
	return rv;
}

int fsm_cluster_id(struct fsm *f, char *out, size_t size)
{
	char *v;
	size_t len;
	out[0] = '\0';
	int rv = store_get(&f->store, KEY_CLUSTER_ID, strlen(KEY_CLUSTER_ID), &v, &len);
	if (rv != 0)
		return rv;
	snprintf(out, size, "%.*s", (int)len, v);
	free(v);
	return 0;
}

void fsm_members_each(struct fsm *f, int (*fn)(const struct fsm_member *m, void *arg), void *arg)
{
	struct store_iter it;
	store_iter_init(&it, &f->store, NULL, "n/", 2, NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t len;
		const char *v = store_iter_value(&it, &len);
		struct fsm_member m;
		if (member_from_json(v, len, &m) != 0)
			continue;
		if (fn(&m, arg) != 0)
			break;
	}
	store_iter_close(&it);
}

uint64_t fsm_digest(struct fsm *f, uint64_t *n_keys)
{
	uint64_t h = COMMAND_HASH_INIT;
	uint64_t n = 0;
	struct store_iter it;
	store_iter_init(&it, &f->store, NULL, "", 0, NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl, vl;
		const char *k = store_iter_key(&it, &kl);
		if (kl >= 2 && k[0] == 'm' && k[1] == '/')
			continue;
		const char *v = store_iter_value(&it, &vl);
		uint8_t lens[16];
		put_be64(lens, kl);
		put_be64(lens + 8, vl);
		h = command_hash(h, lens, sizeof lens);
		h = command_hash(h, k, kl);
		h = command_hash(h, v, vl);
		n++;
	}
	store_iter_close(&it);
	if (n_keys != NULL)
		*n_keys = n;
	return h;
}

/* Removes up to IDEM_PRUNE_PER_APPLY records that are older than the TTL as of `now_ms`, or
 * the oldest ones while more than idem_max are live. `replaced` (may be empty) is the age entry
 * of a record this apply already replaced: the iterator still sees it (the batch is not
 * written yet), but pruning it would delete the new record under the same key and count it
 * twice. */
static void idem_prune(struct fsm *f, struct store_batch *b, uint64_t now_ms, uint64_t *count,
                       const struct buf *replaced)
{
	struct store_iter it;
	int removed = 0;
	/* No live record, nothing to prune: skip the iterator, which costs more than the rest of
	 * a plain write's apply (a RocksDB iterator is created and destroyed per entry). */
	if (*count == 0)
		return;
	store_iter_init(&it, &f->store, NULL, "t/", 2, NULL, 0);
	for (; store_iter_valid(&it) && removed < IDEM_PRUNE_PER_APPLY; store_iter_next(&it)) {
		size_t kl;
		const char *k = store_iter_key(&it, &kl);
		if (kl < 10)
			continue;
		if (replaced->len == kl && memcmp(replaced->data, k, kl) == 0)
			continue;
		uint64_t ts = be64(k + 2);
		bool expired = ts + f->idem_ttl_ms < now_ms;
		if (!expired && *count <= f->idem_max)
			break;
		struct buf ik;
		buf_init(&ik);
		make_key(&ik, 'i', k + 10, kl - 10);
		store_batch_delete(b, ik.data, ik.len);
		store_batch_delete(b, k, kl);
		buf_close(&ik);
		(*count)--;
		removed++;
	}
	store_iter_close(&it);
}

static void idem_record(struct fsm *f, struct store_batch *b, const struct command *c,
                        uint64_t index, unsigned code, uint64_t *count)
{
	struct buf k;
	uint8_t rec[25];
	buf_init(&k);
	put_be64(rec, c->ts_ms);
	put_be64(rec + 8, index);
	rec[16] = (uint8_t)code;
	put_be64(rec + 17, command_fingerprint(c));
	make_key(&k, 'i', c->idem_key.p, c->idem_key.len);
	store_batch_put(b, k.data, k.len, rec, sizeof rec);
	buf_reset(&k);
	buf_append(&k, "t/", 2);
	uint8_t ts[8];
	put_be64(ts, c->ts_ms);
	buf_append(&k, ts, 8);
	buf_append(&k, c->idem_key.p, c->idem_key.len);
	store_batch_put(b, k.data, k.len, "", 0);
	buf_close(&k);
	(*count)++;
	(void)f;
}

/* The outcome of a KV command against the current record (no side effects). */
static unsigned kv_decide(const struct command *c, int found, const struct fsm_kv *cur)
{
	if (c->has_cas) {
		bool ok = c->cas == 0 ? !found : (found && cur->modify_index == c->cas);
		if (!ok)
			return FSM_CAS_MISMATCH;
	}
	if (c->type == COMMAND_KV_DELETE)
		return found ? FSM_OK_DELETED : FSM_NOT_FOUND;
	return found ? FSM_OK_UPDATED : FSM_OK_CREATED;
}

static unsigned apply_kv(struct fsm *f, struct store_batch *b, const struct command *c,
                         uint64_t index)
{
	struct fsm_kv cur = {0};
	int found = fsm_kv_get(f, c->key.p, c->key.len, &cur);
	if (found < 0)
		return FSM_BAD_COMMAND;
	found = found == 0;
	unsigned code = kv_decide(c, found, &cur);
	struct buf k;
	buf_init(&k);
	make_key(&k, 'k', c->key.p, c->key.len);
	if (code == FSM_OK_DELETED) {
		store_batch_delete(b, k.data, k.len);
	} else if (code == FSM_OK_CREATED || code == FSM_OK_UPDATED) {
		struct buf rec;
		buf_init(&rec);
		buf_put_u64(&rec, found ? cur.create_index : index);
		buf_put_u64(&rec, index);
		buf_put_u64(&rec, found ? cur.version + 1 : 1);
		buf_append(&rec, c->value.p, c->value.len);
		store_batch_put(b, k.data, k.len, rec.data, rec.len);
		buf_close(&rec);
	}
	buf_close(&k);
	if (found)
		fsm_kv_free(&cur);
	return code;
}

static unsigned apply_member(struct fsm *f, struct store_batch *b, const struct command *c)
{
	struct buf k;
	buf_init(&k);
	make_key(&k, 'n', c->node_id.p, c->node_id.len);
	if (c->type == COMMAND_MEMBER_DEL) {
		store_batch_delete(b, k.data, k.len);
	} else {
		char rid[24];
		snprintf(rid, sizeof rid, "%llu", (unsigned long long)c->raft_id);
		json_t *o =
		    json_pack("{s:s%, s:s, s:s%, s:s%}", "node_id", c->node_id.p, c->node_id.len,
		              "raft_id", rid, "raft_addr", c->raft_addr.p, c->raft_addr.len,
		              "http_addr", c->http_addr.p, c->http_addr.len);
		if (o != NULL && c->type == COMMAND_MEMBER_PUT && c->incarnation.len > 0)
			json_object_set_new(o, "incarnation",
			                    json_stringn(c->incarnation.p, c->incarnation.len));
		char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		if (s != NULL)
			store_batch_put(b, k.data, k.len, s, strlen(s));
		free(s);
		json_decref(o);
	}
	buf_close(&k);
	f->members_version++;
	return FSM_MEMBER_OK;
}

/* The cluster id is set once: every node of a cluster must agree on it (raft/identity.h), so
 * a different one later is refused, the same one again is a no-op. */
static unsigned apply_cluster_id(struct fsm *f, struct store_batch *b, const struct command *c)
{
	char cur[COMMAND_MAX_INCARNATION + 1];
	int rv = fsm_cluster_id(f, cur, sizeof cur);
	if (rv < 0)
		return FSM_BAD_COMMAND;
	if (rv == 0)
		return strlen(cur) == c->cluster_id.len &&
		               memcmp(cur, c->cluster_id.p, c->cluster_id.len) == 0
		           ? FSM_MEMBER_OK
		           : FSM_CONFLICT;
	store_batch_put(b, KEY_CLUSTER_ID, strlen(KEY_CLUSTER_ID), c->cluster_id.p,
	                c->cluster_id.len);
	f->members_version++;
	return FSM_MEMBER_OK;
}

/* Checks the idempotency record for c; returns 0 when the command must run, or the packed
 * result to answer with instead. */
static unsigned idem_check(struct fsm *f, const struct command *c)
{
	struct fsm_idem rec;
	if (c->idem_key.len == 0 || fsm_idem_get(f, c->idem_key.p, c->idem_key.len, &rec) != 0)
		return 0;
	if (rec.ts_ms + f->idem_ttl_ms < c->ts_ms)
		return 0; /* expired: pruning just has not reached it yet */
	if (rec.fingerprint != command_fingerprint(c))
		return FSM_IDEM_MISMATCH;
	return rec.code | FSM_RESULT_REPLAY;
}

void fsm_flush(struct fsm *f)
{
	char err[256];
	if (f->failed || store_flush_wal(&f->store, err, sizeof err) == 0)
		return;
	/* The applies since the last flush may be lost from the store on a crash, and the next
	 * write cannot be trusted (see fsm_apply_entry): stop, and let the restart re-apply them
	 * from the raft log. */
	f->stats.apply_errors++;
	f->failed = true;
	log_error("Store WAL flush failed", "applied_index=%llu error=\"%s\"",
	          (unsigned long long)f->applied_index, err);
}

void *fsm_apply_entry(struct fsm *f, uint64_t index, const void *data, size_t len)
{
	struct command c;
	struct store_batch b;
	struct buf replaced; /* age entry of an expired idempotency record replaced here */
	unsigned code;
	uint64_t idem_count = f->idem_count;
	uint64_t t0 = uv_hrtime();

	if (f->failed)
		return NULL; /* fail stop, see below */
	if (index <= f->applied_index)
		return fsm_result_pack(FSM_SKIPPED);

	store_batch_init(&b);
	buf_init(&replaced);
	if (command_decode(&c, data, len) != 0) {
		/* Only a bug or corruption gets here; applying nothing keeps every replica equal.
		 */
		char hex[2 * 32 + 1] = "";
		for (size_t i = 0; i < len && i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)data)[i]);
		log_error("Undecodable raft entry", "index=%llu len=%zu head=%s",
		          (unsigned long long)index, len, hex);
		code = FSM_BAD_COMMAND;
	} else if (c.type == COMMAND_MEMBER_SET || c.type == COMMAND_MEMBER_DEL ||
	           c.type == COMMAND_MEMBER_PUT) {
		code = apply_member(f, &b, &c);
	} else if (c.type == COMMAND_CLUSTER_SET) {
		code = apply_cluster_id(f, &b, &c);
	} else if ((code = idem_check(f, &c)) == 0) {
		if (c.type == COMMAND_DOMAIN) {
			bool read_error = false;
			code =
			    dom_apply(f, &b, index, c.ts_ms, c.value.p, c.value.len, &read_error);
			if (read_error) {
				/* Fail stop, as on a write error: a replica that took a read error
				 * for "absent" would silently differ from the others. */
				store_batch_close(&b);
				buf_close(&replaced);
				f->stats.apply_errors++;
				f->failed = true;
				log_error("Store read failed during apply", "index=%llu",
				          (unsigned long long)index);
				return NULL;
			}
		} else {
			code = apply_kv(f, &b, &c, index);
		}
		if (c.idem_key.len > 0) {
			/* An expired record with the same key is replaced, not double-counted;
			 * its age entry goes too, or pruning would later take the new record. */
			struct fsm_idem old;
			if (fsm_idem_get(f, c.idem_key.p, c.idem_key.len, &old) == 0) {
				uint8_t ts[8];
				put_be64(ts, old.ts_ms);
				buf_append(&replaced, "t/", 2);
				buf_append(&replaced, ts, 8);
				buf_append(&replaced, c.idem_key.p, c.idem_key.len);
				store_batch_delete(&b, replaced.data, replaced.len);
				idem_count--;
			}
			idem_record(f, &b, &c, index, code, &idem_count);
		}
	}
	if (code != FSM_BAD_COMMAND && c.ts_ms > 0)
		idem_prune(f, &b, c.ts_ms, &idem_count, &replaced);
	buf_close(&replaced);
	if (idem_count != f->idem_count)
		batch_put_u64(&b, KEY_IDEM_COUNT, idem_count);
	batch_put_u64(&b, KEY_APPLIED, index);

	char err[256];
	if (store_write(&f->store, &b, false, err, sizeof err) != 0) {
		/* Nothing was applied, and nothing more will be: fail stop. After a failed write
		 * RocksDB 7.8 cannot be trusted with the next one: its NoSpace auto-recovery
		 * resumes writes with the failed WAL writer still in place (the next append
		 * aborts the process), and without a WAL it lost memtable data. raft keeps
		 * retrying this entry, so every apply from now on is refused without touching the
		 * store, and the node leaves (node.c) to be restarted: RocksDB then reopens from
		 * its WAL and raft applies again whatever came after. */
		store_batch_close(&b);
		f->stats.apply_errors++;
		f->failed = true;
		log_error("Apply failed", "index=%llu error=\"%s\"", (unsigned long long)index,
		          err);
		return NULL;
	}
	store_batch_close(&b);
	if (code != FSM_BAD_COMMAND &&
	    c.type < sizeof f->entries_by_type / sizeof f->entries_by_type[0])
		f->entries_by_type[c.type]++;
	f->applied_index = index;
	f->idem_count = idem_count;
	f->stats.applies++;
	f->stats.last_apply_seconds = (double)(uv_hrtime() - t0) / 1e9;
	return fsm_result_pack(code);
}

static int iface_apply(struct raft_fsm *iface, const struct raft_buffer *buf, void **result)
{
	struct fsm *f = iface->data;
	uint64_t index = f->raft->last_applied + 1;
	void *r = fsm_apply_entry(f, index, buf->base, buf->len);
	if (r == NULL)
		return RAFT_IOERR;
	*result = r;
	if (f->applied_hook != NULL)
		f->applied_hook(f->applied_hook_arg, index, r);
	return 0;
}

static int iface_snapshot(struct raft_fsm *iface, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct fsm *f = iface->data;
	if (f->snap_active)
		return RAFT_BUSY;
	/* Runs on the loop thread between applies, so the RocksDB snapshot is exactly the state
	 * at applied_index; the copy happens later on a worker thread. The image must carry that
	 * index even when raft's last_applied trails it (raft re-delivering entries the store
	 * already holds after a restart): labelled with raft's older index, whoever installs the
	 * image would apply the entries in between a second time. Raft may also be ahead (its
	 * last entries were not commands); its index is then as good and keeps the labels equal.
	 */
	store_snap_take(&f->snap, &f->store);
	f->snap_index = f->applied_index;
	if (f->raft != NULL && f->raft->last_applied > f->snap_index)
		f->snap_index = f->raft->last_applied;
	f->snap_active = true;
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

static int iface_snapshot_async(struct raft_fsm *iface, struct raft_buffer *bufs[],
                                unsigned *n_bufs)
{
	struct fsm *f = iface->data;
	struct buf out;
	uint64_t t0 = uv_hrtime();
	buf_init(&out);
	/* Images run to tens of MB: growing one by doubling copies it again at every step and
	 * briefly holds two copies. The state changes little between snapshots. */
	if (f->snap_size > 0)
		buf_reserve(&out, f->snap_size + f->snap_size / 8);
	if (fsm_snapshot_write(&f->snap, f->snap_index, &out) != 0) {
		buf_close(&out);
		return RAFT_IOERR;
	}
	struct raft_buffer *b = raft_malloc(sizeof *b);
	if (b == NULL) {
		buf_close(&out);
		return RAFT_NOMEM;
	}
	b->len = out.len;
	f->snap_size = out.len;
	f->snap_ns = uv_hrtime() - t0;
	b->base = buf_detach(&out, NULL);
	*bufs = b;
	*n_bufs = 1;
	return 0;
}

static int iface_snapshot_finalize(struct raft_fsm *iface, struct raft_buffer *bufs[],
                                   unsigned *n_bufs)
{
	struct fsm *f = iface->data;
	if (*bufs != NULL) {
		for (unsigned i = 0; i < *n_bufs; i++)
			free((*bufs)[i].base);
		raft_free(*bufs);
		f->stats.snapshots_ok++;
		log_info("Snapshot taken", "index=%llu bytes=%zu serialize_ms=%.1f",
		         (unsigned long long)f->snap_index, f->snap_size, (double)f->snap_ns / 1e6);
	} else {
		f->stats.snapshots_failed++;
		log_warn("Snapshot failed", "index=%llu", (unsigned long long)f->snap_index);
	}
	*bufs = NULL;
	*n_bufs = 0;
	store_snap_release(&f->snap);
	f->snap_active = false;
	return 0;
}

static int iface_restore(struct raft_fsm *iface, struct raft_buffer *buf)
{
	struct fsm *f = iface->data;
	char err[256];
	if (f->failed) { /* fail stop: no more writes (fsm_apply_entry) */
		raft_free(buf->base);
		return RAFT_IOERR;
	}
	int rv = fsm_snapshot_restore(f, buf->base, buf->len, err, sizeof err);
	raft_free(buf->base);
	if (rv != 0) {
		f->stats.restores_failed++;
		log_error("Snapshot restore failed", "error=\"%s\"", err);
		return RAFT_CORRUPT;
	}
	return 0;
}

int fsm_init(struct fsm *f, const char *dir, uint64_t idem_ttl_s, uint64_t idem_max, char *err,
             size_t errlen)
{
	memset(f, 0, sizeof *f);
	if (store_open(&f->store, dir, err, errlen) != 0)
		return -1;
	if (read_u64(f, KEY_APPLIED, &f->applied_index) != 0 ||
	    read_u64(f, KEY_IDEM_COUNT, &f->idem_count) != 0) {
		snprintf(err, errlen, "cannot read the applied index from %s", dir);
		store_close(&f->store);
		return -1;
	}
	f->idem_ttl_ms = idem_ttl_s * 1000;
	f->idem_max = idem_max;
	dom_init(&f->domain);
	if (dom_rebuild(f) != 0) {
		snprintf(err, errlen, "cannot read the domain records from %s", dir);
		dom_close(&f->domain);
		store_close(&f->store);
		return -1;
	}
	f->iface.version = 3;
	f->iface.data = f;
	f->iface.apply = iface_apply;
	f->iface.snapshot = iface_snapshot;
	f->iface.restore = iface_restore;
	f->iface.snapshot_finalize = iface_snapshot_finalize;
	f->iface.snapshot_async = iface_snapshot_async;
	return 0;
}

void fsm_close(struct fsm *f)
{
	dom_close(&f->domain);
	store_snap_release(&f->snap);
	store_close(&f->store);
}
