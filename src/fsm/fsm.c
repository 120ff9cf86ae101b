/* fsm: applying commands to RocksDB, and the raft_fsm interface (see fsm.h).
 *
 * The rule: whatever apply decides - the outcome of a command, what it writes, which
 * idempotency records it replays, replaces or prunes - comes from the entry and the
 * replicated state before it, and from nothing else: not this node's flags, not its clock,
 * not its role, not the order of anything unordered. Every replica applying the same log
 * then holds the same bytes (GET /raft/status?digest compares them). When apply cannot know
 * the state it would decide on (a store read fails, a record is malformed, memory runs out)
 * it decides nothing: the entry is not applied, m/applied does not move, the fsm is marked
 * failed and refuses every later apply, and the node exits (node.c) to be restarted - the
 * same fail stop as a failed write. Guessing ("no record", "absent") would let this replica
 * silently differ from the others.
 *
 * Audit of every input (fsm.c, snapshot.c, command.c), against that rule:
 *  - Time: idempotency expiry uses the entry's ts_ms (the proposing leader's wall clock,
 *    stamped into the command) against the record's ts_ms (an earlier entry's); the apply
 *    never reads a clock. uv_hrtime() only feeds stats.last_apply_seconds and log lines.
 *  - Limits: the idempotency TTL and record cap come from the entry (idem_ttl_s, idem_max,
 *    the proposing leader's --idempotency-ttl / --idempotency-max; version 1 entries use the
 *    fixed COMMAND_V1_IDEM_* defaults). The node's own flags never reach the fsm (fsm_init
 *    takes none); a node restarted with other values replays its log tail the same way.
 *  - Role: apply never asks whether this node leads. The applied hook (node.c) only answers
 *    local proposals from the result; f->raft is read for the entry index and, by the
 *    snapshot callback, for the image's label, never for a decision.
 *  - Iteration: pruning walks the t/ age index in RocksDB's byte order (oldest first, ties
 *    by key), fsm_members_each and the snapshot image walk keys in byte order; no hash
 *    table or other unordered structure is iterated. Member records are JSON with sorted
 *    keys.
 *  - Reads: every store read in apply (the kv record, the idempotency record, the prune
 *    iterator) either succeeds or fails the apply (fail stop, above); a record of the wrong
 *    size is corrupt state and fails it too. Snapshot restore takes the idempotency count
 *    from the image itself rather than reading it back.
 *  - Memory: an allocation that fails inside apply (a store read's copy, the member JSON)
 *    fails the apply the same way; buf aborts. A member record whose strings are not valid
 *    UTF-8 is refused as a bad command, deterministically, before JSON could fail on them.
 *  - Local-only state: applied_index and idem_count mirror m/applied and m/idem_count;
 *    internal_count, internal_first(_ts) are recomputed from the store at start-up and from
 *    the image at a restore, and kept exact by every apply, so they equal on every replica
 *    at the same index (the internal floor is replicated, m/idem_internal_floor, and part of
 *    the digest); idem_oldest_ts is a lower bound that only lets pruning skip or shorten a
 *    walk that would find nothing, so its value never changes an outcome. members_version
 *    and stats are caches and counters no decision reads, `failed` is fail stop. The
 *    snapshot start-up skip (image older than the store) compares two replicated indexes.
 *  - Decoding: command_decode is a pure function of the bytes; an undecodable entry applies
 *    nothing (FSM_BAD_COMMAND) on every replica alike.
 *  - Domain (domain.c): ops name the records they change and decide from them and the entry
 *    (its ts_ms, its index as a placement's epoch); the in-memory mirror is derived from the
 *    store (rebuilt at start-up and after a restore) and only serves lookups by key, never an
 *    iteration whose order could change an outcome; its one scan walks the store in key
 *    order. A read error there fails the apply like any other. The cluster id is set once,
 *    a different one refused. */
#include "fsm/fsm.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log/log.h"
#include "util/text.h"

static const char KEY_APPLIED[] = "m/applied";
static const char KEY_IDEM_COUNT[] = "m/idem_count";

/* Expired idempotency records removed per apply: bounded so one write never pays for a
 * large backlog, yet faster than records can be added (one per write). */
#define IDEM_PRUNE_PER_APPLY 4
/* An idempotency record: u64 ts_ms | u64 index | u8 code | u64 fingerprint, then (records
 * of version 2 entries) u64 cur_index. */
#define IDEM_REC_V1 25
#define IDEM_REC_V2 33
/* Internal records (see "internal records" below) are pruned once per this many entries, or
 * when the count passes the entry's cap by this much (less for a smaller cap). */
#define INTERNAL_PRUNE_EVERY 64
/* ...removing at most this many at a time. */
#define INTERNAL_PRUNE_MAX 256
static const char KEY_INTERNAL_FLOOR[] = "m/idem_internal_floor";
static const char KEY_CLUSTER_ID[] = "g/cluster_id";

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

/* Byte order of two keys (what RocksDB sorts by). */
static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = al == 0 || bl == 0 ? 0 : memcmp(a, b, al < bl ? al : bl);
	return c != 0 ? c : (al < bl ? -1 : al > bl);
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

int fsm_idem_get(struct fsm *f, const char *key, size_t klen, bool internal, struct fsm_idem *out)
{
	struct buf k;
	char *v;
	size_t len;
	buf_init(&k);
	make_key(&k, internal ? 'j' : 'i', key, klen);
	int rv = store_get(&f->store, k.data, k.len, &v, &len);
	buf_close(&k);
	if (rv != 0)
		return rv;
	if (len != IDEM_REC_V1 && len != IDEM_REC_V2) {
		free(v);
		log_error("Corrupt idempotency record", "key_len=%zu record_len=%zu", klen, len);
		return -1;
	}
	memset(out, 0, sizeof *out);
	out->ts_ms = be64(v);
	out->index = be64(v + 8);
	out->code = (uint8_t)v[16];
	out->fingerprint = be64(v + 17);
	out->has_cur_index = len == IDEM_REC_V2;
	if (out->has_cur_index)
		out->cur_index = be64(v + 25);
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
		/* m/ holds what the rest implies (index, count), except the internal floor. */
		if (kl >= 2 && k[0] == 'm' && k[1] == '/' &&
		    key_cmp(k, kl, KEY_INTERNAL_FLOOR, sizeof KEY_INTERNAL_FLOOR - 1) != 0)
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

/* ---- apply ---- */

/* One entry being applied: what it stages, and why it could not be applied if it cannot. */
struct apply {
	struct fsm *f;
	uint64_t index;
	const struct command *c;
	struct store_batch b;
	uint64_t idem_count;
	uint64_t idem_oldest_ts; /* fsm.idem_oldest_ts once this entry is applied */
	uint64_t inserted_ts;    /* the record this entry adds (UINT64_MAX: none) */
	struct buf replaced;     /* age entry of an expired idempotency record replaced here */
	/* Internal records: the fsm's values once this entry is applied (first and floor only
	 * when changed), and the last key its pruning removed. */
	uint64_t internal_count;
	bool first_changed, floor_changed;
	struct buf first, floor, pruned_last;
	uint64_t first_ts;
	unsigned pruned;
	const char *failed; /* what could not be read or built: the entry is not applied */
	enum command_type type;
};

/* Whether a record made at ts_ms has expired by now_ms under ttl_ms. Written without sums:
 * timestamps come from entries, and ts + ttl must not wrap. A clock that went back (a new
 * leader's) expires nothing. */
static bool idem_expired(uint64_t ts_ms, uint64_t now_ms, uint64_t ttl_ms)
{
	return now_ms > ts_ms && now_ms - ts_ms > ttl_ms;
}

/* The timestamp of the first live age entry at or after the iterator (skipping `replaced`,
 * which this apply deletes), UINT64_MAX when there is none. */
static uint64_t first_live_ts(struct store_iter *it, const struct buf *replaced)
{
	for (; store_iter_valid(it); store_iter_next(it)) {
		size_t kl;
		const char *k = store_iter_key(it, &kl);
		if (kl >= 10 && !(replaced->len == kl && memcmp(replaced->data, k, kl) == 0))
			return be64(k + 2);
	}
	return UINT64_MAX;
}

/* Removes up to IDEM_PRUNE_PER_APPLY records that are older than the entry's TTL as of its
 * timestamp, or the oldest ones while more than the entry's cap are live. ap->replaced (may
 * be empty) is the age entry of a record this apply already replaced: the iterator still
 * sees it (the batch is not written yet), but pruning it would delete the new record under
 * the same key and count it twice.
 *
 * fsm.idem_oldest_ts (no live record is older) spares the walk whenever its first record
 * would stop it: with the count within the cap and that bound not expired, nothing is. Else
 * the walk starts at the bound instead of at "t/", past the pruned records whose deletions
 * RocksDB would otherwise step over on every seek until they are compacted away. Both only
 * skip what the walk would find nothing in, so the outcome is the same on every replica
 * whatever its bound. */
static void idem_prune(struct apply *ap)
{
	const struct command *c = ap->c;
	uint64_t ttl_ms = (uint64_t)c->idem_ttl_s * 1000, oldest = ap->f->idem_oldest_ts;
	struct store_iter it;
	uint8_t start[10] = {'t', '/'};
	int removed = 0;
	if (ap->idem_count == 0 ||
	    (ap->idem_count <= c->idem_max && !idem_expired(oldest, c->ts_ms, ttl_ms)))
		return;
	put_be64(start + 2, oldest == UINT64_MAX ? 0 : oldest);
	store_iter_init(&it, &ap->f->store, NULL, "t/", 2, start, sizeof start);
	for (; store_iter_valid(&it) && removed < IDEM_PRUNE_PER_APPLY; store_iter_next(&it)) {
		size_t kl;
		const char *k = store_iter_key(&it, &kl);
		if (kl < 10)
			continue;
		if (ap->replaced.len == kl && memcmp(ap->replaced.data, k, kl) == 0)
			continue;
		bool expired = idem_expired(be64(k + 2), c->ts_ms, ttl_ms);
		if (!expired && ap->idem_count <= c->idem_max)
			break;
		struct buf ik;
		buf_init(&ik);
		make_key(&ik, 'i', k + 10, kl - 10);
		store_batch_delete(&ap->b, ik.data, ik.len);
		store_batch_delete(&ap->b, k, kl);
		buf_close(&ik);
		ap->idem_count--;
		removed++;
	}
	ap->idem_oldest_ts = first_live_ts(&it, &ap->replaced);
	if (store_iter_close(&it) != 0)
		ap->failed = "the idempotency age index";
}

/* fsm.idem_oldest_ts from the store: at start-up, and after a snapshot restore. */
static int load_oldest(struct fsm *f)
{
	struct store_iter it;
	struct buf none;
	buf_init(&none);
	store_iter_init(&it, &f->store, NULL, "t/", 2, NULL, 0);
	f->idem_oldest_ts = first_live_ts(&it, &none);
	buf_close(&none);
	return store_iter_close(&it);
}

/* The age-index key of a record: "t/" u64 ts_ms, then the stored idempotency key. */
static void age_key(struct buf *out, uint64_t ts_ms, const struct command *c)
{
	uint8_t ts[8];
	put_be64(ts, ts_ms);
	buf_reset(out);
	buf_append(out, "t/", 2);
	buf_append(out, ts, 8);
	buf_append(out, c->idem_key.p, c->idem_key.len);
}

/* The record of c's outcome: cur_index is the key's modify index the answer to a failed CAS
 * names; version 2 records keep it, so that a replay answers exactly what the first attempt
 * did. Version 1 entries keep the version 1 record (25 bytes), byte for byte what nodes that
 * predate version 2 store for them. Returns its length. */
static size_t idem_encode(const struct apply *ap, unsigned code, uint64_t cur_index,
                          uint8_t rec[IDEM_REC_V2])
{
	const struct command *c = ap->c;
	put_be64(rec, c->ts_ms);
	put_be64(rec + 8, ap->index);
	rec[16] = (uint8_t)code;
	put_be64(rec + 17, command_fingerprint(c));
	put_be64(rec + 25, cur_index);
	return c->version == 1 ? IDEM_REC_V1 : IDEM_REC_V2;
}

/* Records c's outcome under its client's idempotency key, with its age entry. */
static void idem_record(struct apply *ap, unsigned code, uint64_t cur_index)
{
	const struct command *c = ap->c;
	struct buf k;
	uint8_t rec[IDEM_REC_V2];
	buf_init(&k);
	make_key(&k, 'i', c->idem_key.p, c->idem_key.len);
	store_batch_put(&ap->b, k.data, k.len, rec, idem_encode(ap, code, cur_index, rec));
	age_key(&k, c->ts_ms, c);
	store_batch_put(&ap->b, k.data, k.len, "", 0);
	buf_close(&k);
	ap->idem_count++;
	if (c->ts_ms < ap->inserted_ts)
		ap->inserted_ts = c->ts_ms;
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

/* Applies c to its key; *cur_index is the key's modify index before (0 when absent). 0 (and
 * ap->failed) when the record cannot be read. */
static unsigned apply_domain(struct apply *ap)
{
	const struct command *c = ap->c;
	bool read_error = false;
	unsigned code =
	    dom_apply(ap->f, &ap->b, ap->index, c->ts_ms, c->value.p, c->value.len, &read_error);
	if (read_error)
		ap->failed = "a domain record";
	return code;
}

static unsigned apply_kv(struct apply *ap, uint64_t *cur_index)
{
	if (ap->c->type == COMMAND_DOMAIN)
		return apply_domain(ap); /* the same idempotency handling, another body */
	const struct command *c = ap->c;
	struct fsm_kv cur = {0};
	int found = fsm_kv_get(ap->f, c->key.p, c->key.len, &cur);
	if (found < 0) {
		ap->failed = "the kv record";
		return 0;
	}
	found = found == 0;
	*cur_index = found ? cur.modify_index : 0;
	unsigned code = kv_decide(c, found, &cur);
	struct buf k;
	buf_init(&k);
	make_key(&k, 'k', c->key.p, c->key.len);
	if (code == FSM_OK_DELETED) {
		store_batch_delete(&ap->b, k.data, k.len);
	} else if (code == FSM_OK_CREATED || code == FSM_OK_UPDATED) {
		struct buf rec;
		buf_init(&rec);
		buf_put_u64(&rec, found ? cur.create_index : ap->index);
		buf_put_u64(&rec, ap->index);
		buf_put_u64(&rec, found ? cur.version + 1 : 1);
		buf_append(&rec, c->value.p, c->value.len);
		store_batch_put(&ap->b, k.data, k.len, rec.data, rec.len);
		buf_close(&rec);
	}
	buf_close(&k);
	if (found)
		fsm_kv_free(&cur);
	return code;
}

/* ---- internal records ----
 *
 * A follower's internal keys (its own re-sends of forwarded writes, command.h) are kept as
 * one record each, "j/<key>", apart from clients' records, whose room they never take: the
 * two are counted and capped separately, by the same limits from the entry. There is no age
 * index: followers make keys that start with their creation time (api/proxy.c), so key order
 * is about age order, and pruning walks j/ from the first record, removing expired records,
 * and the first ones while the count is past the cap. A forwarded write thus costs one read
 * (a record from an earlier attempt?) and one put; the walk runs once every
 * INTERNAL_PRUNE_EVERY entries, or when the count passes the cap by a slack, so its iterator
 * and deletions are shared by many writes. The count, the first record and its timestamp
 * live in memory, derived from the store (at start-up, and from a snapshot image), so they
 * are the same on every replica at the same index.
 *
 * What pruning removes is always a prefix of j/ in key order, and m/idem_internal_floor keeps
 * the last key it removed. So a re-sent write (command.h: resent) whose record is absent was
 * never applied when its key sorts above the floor, and is applied; at or below it, its first
 * attempt may have been applied and pruned since, and it gets FSM_RESENT_UNKNOWN instead of
 * being applied twice. */

static void internal_seek_key(struct buf *out, const struct fsm *f)
{
	make_key(out, 'j', f->internal_first.data, f->internal_first.len);
}

/* Prunes internal records when due; stages the deletions and what they change. `adding`: this
 * entry will add a record (counted towards the cap). */
static void internal_prune(struct apply *ap, bool adding)
{
	struct fsm *f = ap->f;
	const struct command *c = ap->c;
	uint64_t ttl_ms = (uint64_t)c->idem_ttl_s * 1000, max = c->idem_max;
	uint64_t slack = max < INTERNAL_PRUNE_EVERY ? max : INTERNAL_PRUNE_EVERY;
	uint64_t count = f->internal_count + (adding ? 1 : 0);
	if (f->internal_count == 0)
		return;
	bool due = ap->index % INTERNAL_PRUNE_EVERY == 0 &&
	           (count > max || idem_expired(f->internal_first_ts, c->ts_ms, ttl_ms));
	if (!due && count <= max + slack)
		return;
	struct store_iter it;
	struct buf start;
	buf_init(&start);
	internal_seek_key(&start, f);
	/* Starts at the first record: past the deletions of earlier walks, which RocksDB would
	 * otherwise step over on every seek until they are compacted away. */
	store_iter_init(&it, &f->store, NULL, "j/", 2, start.data, start.len);
	buf_close(&start);
	for (; store_iter_valid(&it) && ap->pruned < INTERNAL_PRUNE_MAX; store_iter_next(&it)) {
		size_t kl, vl;
		const char *k = store_iter_key(&it, &kl);
		const char *v = store_iter_value(&it, &vl);
		uint64_t ts = vl >= 8 ? be64(v) : 0; /* a malformed record is as good as expired */
		if (count <= max && !idem_expired(ts, c->ts_ms, ttl_ms))
			break;
		store_batch_delete(&ap->b, k, kl);
		buf_reset(&ap->pruned_last);
		buf_append(&ap->pruned_last, k + 2, kl - 2);
		count--;
		ap->pruned++;
	}
	ap->first_changed = true;
	buf_reset(&ap->first);
	ap->first_ts = 0;
	if (store_iter_valid(&it)) {
		size_t kl, vl;
		const char *k = store_iter_key(&it, &kl);
		const char *v = store_iter_value(&it, &vl);
		buf_append(&ap->first, k + 2, kl - 2);
		ap->first_ts = vl >= 8 ? be64(v) : 0;
	}
	if (store_iter_close(&it) != 0) {
		ap->failed = "the internal idempotency records";
		return;
	}
	ap->internal_count -= ap->pruned;
	if (ap->pruned > 0 && key_cmp(ap->pruned_last.data, ap->pruned_last.len,
	                              f->internal_floor.data, f->internal_floor.len) > 0) {
		ap->floor_changed = true;
		buf_reset(&ap->floor);
		buf_append(&ap->floor, ap->pruned_last.data, ap->pruned_last.len);
		store_batch_put(&ap->b, KEY_INTERNAL_FLOOR, sizeof KEY_INTERNAL_FLOOR - 1,
		                ap->floor.data, ap->floor.len);
	}
}

/* Records c's outcome under its internal key (after internal_prune: a record it deleted is
 * written again). `existed`: an expired record with that key was there. */
static void internal_record(struct apply *ap, unsigned code, uint64_t cur_index, bool existed)
{
	struct fsm *f = ap->f;
	const struct command *c = ap->c;
	const char *key = c->idem_key.p;
	size_t klen = c->idem_key.len;
	struct buf k;
	uint8_t rec[IDEM_REC_V2];
	buf_init(&k);
	make_key(&k, 'j', key, klen);
	store_batch_put(&ap->b, k.data, k.len, rec, idem_encode(ap, code, cur_index, rec));
	buf_close(&k);
	if (!existed ||
	    (ap->pruned > 0 && key_cmp(key, klen, ap->pruned_last.data, ap->pruned_last.len) <= 0))
		ap->internal_count++;
	const struct buf *first = ap->first_changed ? &ap->first : &f->internal_first;
	int cmp = first->len == 0 ? -1 : key_cmp(key, klen, first->data, first->len);
	if (cmp < 0) {
		ap->first_changed = true;
		buf_reset(&ap->first);
		buf_append(&ap->first, key, klen);
		ap->first_ts = c->ts_ms;
	} else if (cmp == 0) {
		if (!ap->first_changed) {
			ap->first_changed = true;
			buf_reset(&ap->first);
			buf_append(&ap->first, key, klen);
		}
		ap->first_ts = c->ts_ms;
	}
}

/* The fsm's internal-record state from the store (start-up). */
static int internal_load(struct fsm *f)
{
	struct store_iter it;
	char *v;
	size_t vl;
	f->internal_count = 0;
	f->internal_first_ts = 0;
	buf_reset(&f->internal_first);
	buf_reset(&f->internal_floor);
	store_iter_init(&it, &f->store, NULL, "j/", 2, NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		if (f->internal_count++ == 0) {
			size_t kl;
			const char *k = store_iter_key(&it, &kl);
			const char *val = store_iter_value(&it, &vl);
			buf_append(&f->internal_first, k + 2, kl - 2);
			f->internal_first_ts = vl >= 8 ? be64(val) : 0;
		}
	}
	if (store_iter_close(&it) != 0)
		return -1;
	int rv = store_get(&f->store, KEY_INTERNAL_FLOOR, sizeof KEY_INTERNAL_FLOOR - 1, &v, &vl);
	if (rv < 0)
		return -1;
	if (rv == 0) {
		buf_append(&f->internal_floor, v, vl);
		free(v);
	}
	return 0;
}

/* A write with an internal key: answered from its live record, refused when a re-send finds
 * its record pruned (see above), or applied and recorded. */
static unsigned apply_internal(struct apply *ap)
{
	struct fsm *f = ap->f;
	const struct command *c = ap->c;
	struct fsm_idem old;
	uint64_t cur_index = 0;
	int rv = fsm_idem_get(f, c->idem_key.p, c->idem_key.len, true, &old);
	if (rv < 0) {
		ap->failed = "the internal idempotency record";
		return 0;
	}
	bool live = rv == 0 && !idem_expired(old.ts_ms, c->ts_ms, (uint64_t)c->idem_ttl_s * 1000);
	bool unknown = rv == 1 && c->resent && f->internal_floor.len > 0 &&
	               key_cmp(c->idem_key.p, c->idem_key.len, f->internal_floor.data,
	                       f->internal_floor.len) <= 0;
	internal_prune(ap, rv == 1 && !unknown);
	if (ap->failed != NULL)
		return 0;
	if (unknown)
		return FSM_RESENT_UNKNOWN;
	if (live)
		return old.fingerprint != command_fingerprint(c) ? FSM_IDEM_MISMATCH
		                                                 : old.code | FSM_RESULT_REPLAY;
	unsigned code = apply_kv(ap, &cur_index);
	if (ap->failed == NULL)
		internal_record(ap, code, code == FSM_CAS_MISMATCH ? cur_index : 0, rv == 0);
	return code;
}

/* A KV command: answered from its live idempotency record, or applied (and recorded when it
 * carries a key). One read of the record serves both the check and the replacement of an
 * expired one. 0 (and ap->failed) when something cannot be read. */
static unsigned apply_kv_command(struct apply *ap)
{
	const struct command *c = ap->c;
	struct fsm_idem old;
	int have_old = 1;
	uint64_t cur_index = 0;
	if (c->idem_key.len > 0) {
		have_old = fsm_idem_get(ap->f, c->idem_key.p, c->idem_key.len, false, &old);
		if (have_old < 0) {
			ap->failed = "the idempotency record";
			return 0;
		}
		if (have_old == 0 &&
		    !idem_expired(old.ts_ms, c->ts_ms, (uint64_t)c->idem_ttl_s * 1000)) {
			if (old.fingerprint != command_fingerprint(c))
				return FSM_IDEM_MISMATCH;
			return old.code | FSM_RESULT_REPLAY;
		}
		/* Absent, or expired and pruning has not reached it yet: applied anew. */
	}
	unsigned code = apply_kv(ap, &cur_index);
	if (ap->failed != NULL || c->idem_key.len == 0)
		return code;
	if (have_old == 0) {
		/* The expired record is replaced, not double-counted; its age entry goes too, or
		 * pruning would later take the new record. */
		age_key(&ap->replaced, old.ts_ms, c);
		store_batch_delete(&ap->b, ap->replaced.data, ap->replaced.len);
		ap->idem_count--;
	}
	idem_record(ap, code, code == FSM_CAS_MISMATCH ? cur_index : 0);
	return code;
}

static unsigned apply_member(struct apply *ap)
{
	const struct command *c = ap->c;
	struct buf k;
	/* The record is JSON, which needs UTF-8: anything else is refused the same way on every
	 * replica (and stores nothing, as before), so that a failed json_pack below can only
	 * mean memory ran out. */
	if (c->type != COMMAND_MEMBER_DEL &&
	    (!text_valid_utf8(c->node_id.p, c->node_id.len) ||
	     !text_valid_utf8(c->raft_addr.p, c->raft_addr.len) ||
	     !text_valid_utf8(c->http_addr.p, c->http_addr.len) ||
	     !text_valid_utf8(c->incarnation.p, c->incarnation.len)))
		return FSM_BAD_COMMAND;
	buf_init(&k);
	make_key(&k, 'n', c->node_id.p, c->node_id.len);
	if (c->type == COMMAND_MEMBER_DEL) {
		store_batch_delete(&ap->b, k.data, k.len);
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
			store_batch_put(&ap->b, k.data, k.len, s, strlen(s));
		else
			ap->failed = "the member record (out of memory)";
		free(s);
		json_decref(o);
	}
	buf_close(&k);
	return FSM_MEMBER_OK;
}

/* The cluster id is set once: every node of a cluster must agree on it (raft/identity.h), so
 * a different one later is refused, the same one again is a no-op. */
static unsigned apply_cluster_id(struct apply *ap)
{
	const struct command *c = ap->c;
	char cur[COMMAND_MAX_INCARNATION + 1];
	int rv = fsm_cluster_id(ap->f, cur, sizeof cur);
	if (rv < 0) {
		ap->failed = "the cluster id";
		return 0;
	}
	if (rv == 0)
		return strlen(cur) == c->cluster_id.len &&
		               memcmp(cur, c->cluster_id.p, c->cluster_id.len) == 0
		           ? FSM_MEMBER_OK
		           : FSM_CONFLICT;
	store_batch_put(&ap->b, KEY_CLUSTER_ID, strlen(KEY_CLUSTER_ID), c->cluster_id.p,
	                c->cluster_id.len);
	return FSM_MEMBER_OK;
}

/* Decodes and stages one entry; the packed code, or 0 with ap->failed set. */
static unsigned apply_stage(struct apply *ap, const void *data, size_t len)
{
	struct command c;
	unsigned code;
	if (command_decode(&c, data, len) != 0) {
		/* Only a bug or corruption gets here; applying nothing keeps every replica equal.
		 */
		char hex[2 * 32 + 1] = "";
		for (size_t i = 0; i < len && i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)data)[i]);
		log_error("Undecodable raft entry", "index=%llu len=%zu head=%s",
		          (unsigned long long)ap->index, len, hex);
		return FSM_BAD_COMMAND;
	}
	ap->c = &c;
	ap->type = c.type;
	if (c.type == COMMAND_MEMBER_SET || c.type == COMMAND_MEMBER_DEL ||
	    c.type == COMMAND_MEMBER_PUT) {
		code = apply_member(ap);
	} else if (c.type == COMMAND_CLUSTER_SET) {
		code = apply_cluster_id(ap);
	} else if (c.idem_internal) {
		code = apply_internal(ap);
		if (ap->failed == NULL && c.ts_ms > 0)
			idem_prune(ap);
	} else {
		code = apply_kv_command(ap);
		if (ap->failed == NULL && c.ts_ms > 0)
			idem_prune(ap);
		if (ap->failed == NULL && c.ts_ms > 0)
			internal_prune(ap, false);
	}
	ap->c = NULL;
	return code;
}

/* Fail stop: nothing of this entry was applied, and nothing more will be. After a failed
 * write RocksDB 7.8 cannot be trusted with the next one: its NoSpace auto-recovery resumes
 * writes with the failed WAL writer still in place (the next append aborts the process), and
 * without a WAL it lost memtable data. After a failed read this replica does not know the
 * state it would decide on. raft keeps retrying this entry, so every apply from now on is
 * refused without touching the store, and the node leaves (node.c) to be restarted: RocksDB
 * then reopens from its WAL and raft applies again whatever came after. */
static void *fail_stop(struct fsm *f, const char *what, uint64_t index, const char *err)
{
	f->stats.apply_errors++;
	f->failed = true;
	log_error(what, "index=%llu applied_index=%llu error=\"%s\"", (unsigned long long)index,
	          (unsigned long long)f->applied_index, err);
	return NULL;
}

void fsm_flush(struct fsm *f)
{
	char err[256];
	if (f->failed || store_flush_wal(&f->store, err, sizeof err) == 0)
		return;
	/* The applies since the last flush may be lost from the store on a crash, and the next
	 * write cannot be trusted (see fail_stop): stop, and let the restart re-apply them from
	 * the raft log. */
	f->stats.apply_errors++;
	f->failed = true;
	log_error("Store WAL flush failed", "applied_index=%llu error=\"%s\"",
	          (unsigned long long)f->applied_index, err);
}

void *fsm_apply_entry(struct fsm *f, uint64_t index, const void *data, size_t len)
{
	struct apply ap = {.f = f,
	                   .index = index,
	                   .idem_count = f->idem_count,
	                   .idem_oldest_ts = f->idem_oldest_ts,
	                   .inserted_ts = UINT64_MAX,
	                   .internal_count = f->internal_count};
	uint64_t t0 = uv_hrtime();
	char err[256];

	if (f->failed)
		return NULL; /* fail stop, see fail_stop */
	if (index <= f->applied_index)
		return fsm_result_pack(FSM_SKIPPED);

	store_batch_init(&ap.b);
	buf_init(&ap.replaced);
	buf_init(&ap.first);
	buf_init(&ap.floor);
	buf_init(&ap.pruned_last);
	unsigned code = apply_stage(&ap, data, len);
	buf_close(&ap.replaced);
	buf_close(&ap.pruned_last);
	if (ap.failed != NULL) {
		buf_close(&ap.first);
		buf_close(&ap.floor);
		store_batch_close(&ap.b);
		snprintf(err, sizeof err, "cannot read %s", ap.failed);
		return fail_stop(f, "Store read failed during apply; stopping", index, err);
	}
	if (ap.idem_count != f->idem_count)
		batch_put_u64(&ap.b, KEY_IDEM_COUNT, ap.idem_count);
	if (ap.inserted_ts < ap.idem_oldest_ts)
		ap.idem_oldest_ts = ap.inserted_ts;
	if (ap.idem_count == 0)
		ap.idem_oldest_ts = UINT64_MAX;
	batch_put_u64(&ap.b, KEY_APPLIED, index);
	int rv = store_write(&f->store, &ap.b, false, err, sizeof err);
	store_batch_close(&ap.b);
	if (rv != 0) {
		buf_close(&ap.first);
		buf_close(&ap.floor);
		return fail_stop(f, "Apply failed", index, err);
	}
	f->internal_count = ap.internal_count;
	if (ap.first_changed) {
		buf_close(&f->internal_first);
		f->internal_first = ap.first;
		f->internal_first_ts = ap.first_ts;
	} else {
		buf_close(&ap.first);
	}
	if (ap.floor_changed) {
		buf_close(&f->internal_floor);
		f->internal_floor = ap.floor;
	} else {
		buf_close(&ap.floor);
	}
	f->applied_index = index;
	f->idem_count = ap.idem_count;
	f->idem_oldest_ts = ap.idem_oldest_ts;
	if (code == FSM_MEMBER_OK)
		f->members_version++;
	if (code != FSM_BAD_COMMAND &&
	    (size_t)ap.type < sizeof f->entries_by_type / sizeof f->entries_by_type[0])
		f->entries_by_type[ap.type]++;
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

int fsm_init(struct fsm *f, const char *dir, char *err, size_t errlen)
{
	memset(f, 0, sizeof *f);
	if (store_open(&f->store, dir, err, errlen) != 0)
		return -1;
	if (read_u64(f, KEY_APPLIED, &f->applied_index) != 0 ||
	    read_u64(f, KEY_IDEM_COUNT, &f->idem_count) != 0 || load_oldest(f) != 0 ||
	    internal_load(f) != 0) {
		snprintf(err, errlen, "cannot read the applied index from %s", dir);
		store_close(&f->store);
		buf_close(&f->internal_first);
		buf_close(&f->internal_floor);
		return -1;
	}
	dom_init(&f->domain);
	if (dom_rebuild(f) != 0) {
		snprintf(err, errlen, "cannot read the domain records from %s", dir);
		dom_close(&f->domain);
		store_close(&f->store);
		buf_close(&f->internal_first);
		buf_close(&f->internal_floor);
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
	buf_close(&f->internal_first);
	buf_close(&f->internal_floor);
}
