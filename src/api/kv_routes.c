/* kv_routes: the replicated key-value namespace, /v1/kv/{key} and /v1/kv/?prefix=.
 *
 * Writes become one raft entry each (fsm/command.h) and are answered from the apply
 * callback; an Idempotency-Key makes a retried write return the first result, and so does
 * the internal key a follower gives a forwarded write without one (proxy.c), except that its
 * replay is not marked as one: the client never sent that key, and its answer must read
 * exactly like the first. Each entry carries this leader's --idempotency-ttl and
 * --idempotency-max, which the fsm applies it with on every replica. Reads are
 * linearizable by default (leader + barrier, see raft/reads.c) or ?consistency=stale (any
 * node, local state, with X-Cloudless-Last-Contact). Every response carries
 * X-Cloudless-Index: for a write the entry's index, for a key read its modify index, for a
 * miss or a listing the index the store reflects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "api/decode.h"
#include "fsm/command.h"
#include "http/problem.h"
#include "log/log.h"
#include "util/clock.h"
#include "util/text.h"

#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT     1000

static void set_index_header(struct http_request *req, uint64_t index)
{
	char v[24];
	snprintf(v, sizeof v, "%llu", (unsigned long long)index);
	http_response_header(req, CLOUDLESS_HDR_INDEX, v);
}

/* 1 stale, 0 linearizable, -1 after answering 400. ?stale is the short form of
 * ?consistency=stale ("", "true"; "false" means linearizable); giving both is a 400. */
static int parse_consistency(struct http_request *req)
{
	const char *c = http_request_query(req, "consistency");
	const char *st = http_request_query(req, "stale");
	if (c != NULL && st != NULL) {
		http_problem(req, 400, "bad-parameter", "give consistency or stale, not both");
		return -1;
	}
	if (st != NULL) {
		if (st[0] == '\0' || strcmp(st, "true") == 0)
			return 1;
		if (strcmp(st, "false") == 0)
			return 0;
		http_problem(req, 400, "bad-parameter", "stale takes no value, or true or false");
		return -1;
	}
	if (c == NULL)
		return 0;
	if (strcmp(c, "stale") == 0)
		return 1;
	if (strcmp(c, "linearizable") == 0 || strcmp(c, "consistent") == 0)
		return 0;
	http_problem(req, 400, "bad-parameter",
	             "consistency must be \"linearizable\" (default) or \"stale\"");
	return -1;
}

/* ---- writes ---- */

/* What a write's answer says: the entry that decided it, and for a failure the key's modify
 * index then (have_cur false: read it now). A replay passes the recorded ones. */
struct write_outcome {
	unsigned code;
	uint64_t index;
	bool have_cur;
	uint64_t cur_index;
	bool replay_header;
};

static void answer_write(struct api_op *op, const struct write_outcome *w)
{
	struct api *a = op->api;
	struct http_request *req = op->req;
	unsigned code = w->code;
	uint64_t index = w->index;
	api_common_headers(a, req);
	if (w->replay_header)
		http_response_header(req, CLOUDLESS_HDR_REPLAY, "true");
	if (code == FSM_OK_CREATED || code == FSM_OK_UPDATED || code == FSM_OK_DELETED) {
		set_index_header(req, index);
		json_t *o = json_pack("{s:s%, s:I}", "key", op->key, op->key_len, "index",
		                      (json_int_t)index);
		if (code == FSM_OK_DELETED)
			json_object_set_new(o, "deleted", json_true());
		else
			json_object_set_new(o, "created", json_boolean(code == FSM_OK_CREATED));
		http_respond_json(req, 200, o);
		return;
	}
	struct fsm_kv cur = {0};
	uint64_t cur_index = w->cur_index;
	if (!w->have_cur && fsm_kv_get(&a->node->fsm, op->key, op->key_len, &cur) == 0) {
		cur_index = cur.modify_index;
		fsm_kv_free(&cur);
	}
	set_index_header(req, cur_index ? cur_index : index);
	switch (code) {
	case FSM_NOT_FOUND:
		http_problem(req, 404, "not-found", "key not found");
		break;
	case FSM_CAS_MISMATCH:
		http_problem_extra(req, 409, "cas-mismatch",
		                   json_pack("{s:I}", "current_index", (json_int_t)cur_index),
		                   "compare-and-set failed: the key's current modify index is %llu",
		                   (unsigned long long)cur_index);
		break;
	case FSM_IDEM_MISMATCH:
		http_problem(req, 409, "idempotency-key-reused",
		             "this Idempotency-Key was already used for a different request");
		break;
	default:
		http_problem(req, 500, "internal", "the state machine rejected the command");
	}
}

static void write_applied(struct node_propose *p, int status, void *result)
{
	struct api_op *op = p->data;
	op->busy = false;
	if (op->req == NULL) {
		api_op_release(op);
		return;
	}
	if (status != 0 && p->index == 0) {
		api_write_not_proposed(op, status); /* refused before anything was appended */
		return;
	}
	if (status != 0) {
		api_retry_or_fail(op, status);
		return;
	}
	metrics_observe(op->api->metrics, "cloudless_raft_apply_latency_seconds", NULL,
	                (double)(uv_hrtime() - p->start_ns) / 1e9);
	/* Applied just now: the store is at p->index, exactly the state that decided it. */
	struct write_outcome w = {.code = fsm_result_code(result), .index = p->index};
	bool replay = fsm_result_replayed(result);
	if (w.code == FSM_CAS_MISMATCH && op->maybe_applied && op->idem_key == NULL &&
	    op->internal_key == NULL) {
		/* Possibly our own earlier attempt that changed the index (see proxy.c). */
		api_fail_maybe_applied(op);
		return;
	}
	if (w.code == FSM_RESENT_UNKNOWN) {
		/* Not retried by the follower (unlike leadership-lost): nothing can tell. */
		api_common_headers(op->api, op->req);
		api_problem_leader(
		    op->api, op->req, 503, "outcome-unknown",
		    "an earlier attempt of this write may have been applied, and the "
		    "leader no longer holds its record: its outcome is unknown");
		op->req = NULL;
		api_op_release(op);
		return;
	}
	if (replay) {
		/* Answered as the first attempt was: its entry, and the index a failed CAS named
		 * then. Only a client's own key is told it was a replay. */
		struct fsm_idem rec;
		bool internal = op->idem_key == NULL;
		const char *k = internal ? op->internal_key : op->idem_key;
		if (fsm_idem_get(&op->api->node->fsm, k, strlen(k), internal, &rec) == 0) {
			w.index = rec.index;
			w.have_cur = rec.has_cur_index;
			w.cur_index = rec.cur_index;
		}
		w.replay_header = !internal;
	}
	answer_write(op, &w);
	op->req = NULL;
	api_op_release(op);
}

/* libraft 0.15 crashes when a full disk fails more than one queued leader append (each failed
 * append truncates the log from its own first index, and the second truncation runs past the
 * end of the already shortened log). So the leader stops taking writes while the data dir's
 * file system is short of --min-free-disk, before raft_uv needs space it cannot get. True when
 * there is room (or statvfs cannot tell). Logs each change of state once. */
static bool disk_has_room(struct api *a, uint64_t *free_bytes)
{
	struct statvfs st;
	/* One statvfs per loop tick at most (uv_now is the tick's cached time): under load that
	 * was a syscall per write, and --min-free-disk leaves far more room than the writes of a
	 * millisecond take. */
	uint64_t now = uv_now(a->loop);
	if (a->disk_checked && now == a->disk_checked_at) {
		*free_bytes = a->disk_free;
		return !a->disk_low;
	}
	if (statvfs(a->cfg->data_dir, &st) != 0)
		return true;
	a->disk_checked = true;
	a->disk_checked_at = now;
	a->disk_free = *free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
	bool low = *free_bytes < a->cfg->min_free_disk;
	if (low && !a->disk_low)
		log_warn("Refusing writes: disk almost full",
		         "data_dir=%s free_bytes=%llu min_free_bytes=%zu", a->cfg->data_dir,
		         (unsigned long long)*free_bytes, a->cfg->min_free_disk);
	else if (!low && a->disk_low)
		log_info("Accepting writes again: disk space recovered",
		         "data_dir=%s free_bytes=%llu", a->cfg->data_dir,
		         (unsigned long long)*free_bytes);
	a->disk_low = low;
	return !low;
}

static void write_local(struct api_op *op)
{
	struct api *a = op->api;
	uint64_t free_bytes = 0;
	if (!disk_has_room(a, &free_bytes)) {
		if (op->maybe_applied) {
			api_fail_maybe_applied(op);
			return;
		}
		api_common_headers(a, op->req);
		http_problem(
		    op->req, 507, "storage",
		    "the leader's data disk has %llu bytes free, less than --min-free-disk "
		    "(%zu): writes are refused until space is freed",
		    (unsigned long long)free_bytes, a->cfg->min_free_disk);
		op->req = NULL;
		api_op_release(op);
		return;
	}
	struct command c = {.type = op->change_kind,
	                    .ts_ms = clock_wall_ms(),
	                    .idem_ttl_s = a->cfg->idempotency_ttl_s,
	                    .idem_max = a->cfg->idempotency_max};
	size_t body_len = 0;
	const char *body = http_request_body(op->req, &body_len);
	const char *cas = http_request_query(op->req, "cas");
	c.key = (struct command_str){op->key, op->key_len};
	if (op->change_kind == COMMAND_KV_PUT)
		c.value = (struct command_str){body ? body : "", body_len};
	if (op->idem_key != NULL) {
		c.idem_key = (struct command_str){op->idem_key, strlen(op->idem_key)};
	} else if (op->internal_key != NULL) {
		c.idem_key = (struct command_str){op->internal_key, strlen(op->internal_key)};
		c.idem_internal = true;
		/* Re-sent by the follower that forwarded it, or by this node, which forwarded it
		 * before it became leader. */
		c.resent = op->retried || op->maybe_applied;
	}
	if (cas != NULL) {
		c.has_cas = true;
		text_parse_u64(cas, &c.cas);
	}
	struct buf b;
	buf_init(&b);
	command_encode(&c, &b);
	api_propose(op, &b, write_applied);
	buf_close(&b);
}

static void kv_write(struct api *a, struct http_request *req, const char *key, bool put)
{
	uint64_t cas, deadline;
	bool has_cas;
	const char *idem = http_request_header(req, CLOUDLESS_HDR_IDEMPOTENCY_KEY), *internal;
	if (!api_check_key(req, key) || !api_check_write_params(req, &has_cas, &cas) ||
	    !api_forward_key(req, idem, &internal))
		return;
	if (api_request_deadline(a, req, &deadline) != 0)
		return;
	struct api_op *op = api_op_new(a, req, API_OP_WRITE);
	op->key_len = strlen(key);
	op->key = strdup(key);
	op->idem_key = idem ? strdup(idem) : NULL;
	op->internal_key = internal ? strdup(internal) : NULL;
	/* A follower's re-send: an earlier attempt may have been applied (see write_local). */
	op->retried = internal != NULL && http_request_header(req, CLOUDLESS_HDR_RETRY) != NULL;
	/* See api_op.safe_to_retry; a follower makes the rest safe when it forwards them. */
	op->safe_to_retry = idem != NULL || internal != NULL || (has_cas && cas != 0);
	op->deadline_ms = deadline;
	op->change_kind = put ? COMMAND_KV_PUT : COMMAND_KV_DELETE;
	op->local = write_local;
	api_dispatch_to_leader(op);
}

/* ---- reads ---- */

static void respond_value(struct api *a, struct http_request *req, const char *key, bool stale)
{
	struct fsm_kv kv;
	api_common_headers(a, req);
	if (stale) {
		char v[24];
		uint64_t lc = node_last_contact_ms(a->node);
		if (lc == UINT64_MAX)
			snprintf(v, sizeof v, "-1");
		else
			snprintf(v, sizeof v, "%llu", (unsigned long long)lc);
		http_response_header(req, CLOUDLESS_HDR_LAST_CONTACT, v);
	}
	int rv = fsm_kv_get(&a->node->fsm, key, strlen(key), &kv);
	if (rv != 0) {
		set_index_header(req, a->node->fsm.applied_index);
		if (rv > 0)
			http_problem(req, 404, "not-found", "key not found");
		else
			http_problem(req, 500, "storage", "cannot read the key");
		return;
	}
	set_index_header(req, kv.modify_index);
	if (http_request_query(req, "json") != NULL) {
		struct buf b64;
		buf_init(&b64);
		text_base64_encode(kv.value, kv.value_len, &b64);
		json_t *o = json_pack(
		    "{s:s, s:s%, s:I, s:I, s:I}", "key", key, "value_b64", b64.data ? b64.data : "",
		    b64.len, "create_index", (json_int_t)kv.create_index, "modify_index",
		    (json_int_t)kv.modify_index, "version", (json_int_t)kv.version);
		buf_close(&b64);
		http_respond_json(req, 200, o);
	} else {
		/* The value fsm_kv_get allocated goes out as it is: no second copy of 512 KiB. */
		http_respond_take(req, 200, "application/octet-stream", kv.value, kv.value_len);
		kv.value = NULL;
	}
	fsm_kv_free(&kv);
}

static void respond_list(struct api *a, struct http_request *req, bool stale);

static void read_confirmed(struct node_read *r, int status)
{
	struct api_op *op = r->data;
	op->busy = false;
	if (op->req == NULL) {
		api_op_release(op);
		return;
	}
	if (status != 0) {
		/* Reads have no side effects: always safe to try the new leader. */
		api_wait_for_leader(op);
		return;
	}
	if (op->key != NULL)
		respond_value(op->api, op->req, op->key, false);
	else
		respond_list(op->api, op->req, false);
	op->req = NULL;
	api_op_release(op);
}

static void read_local(struct api_op *op)
{
	api_read_barrier(op, read_confirmed);
}

static void kv_read(struct api *a, struct http_request *req, const char *key)
{
	uint64_t deadline;
	int stale = parse_consistency(req);
	if (stale < 0 || (key != NULL && !api_check_key(req, key)))
		return;
	if (stale) {
		if (key != NULL)
			respond_value(a, req, key, true);
		else
			respond_list(a, req, true);
		return;
	}
	if (api_request_deadline(a, req, &deadline) != 0)
		return;
	struct api_op *op = api_op_new(a, req, API_OP_READ);
	if (key != NULL) {
		op->key = strdup(key);
		op->key_len = strlen(key);
	}
	op->safe_to_retry = true;
	op->deadline_ms = deadline;
	op->local = read_local;
	api_dispatch_to_leader(op);
}

void api_route_kv(struct api *a, struct http_request *req, const char *key)
{
	const char *m = http_request_method(req);
	if (strcmp(m, "PUT") == 0)
		kv_write(a, req, key, true);
	else if (strcmp(m, "DELETE") == 0)
		kv_write(a, req, key, false);
	else
		kv_read(a, req, key);
}

/* ---- listing ---- */

struct list_params {
	const char *prefix;
	uint64_t limit;
	struct buf start; /* decoded continue token */
};

static int parse_list(struct http_request *req, struct list_params *p)
{
	const char *limit = http_request_query(req, "limit");
	const char *cont = http_request_query(req, "continue");
	p->prefix = http_request_query(req, "prefix");
	if (p->prefix == NULL)
		p->prefix = "";
	p->limit = LIST_DEFAULT_LIMIT;
	buf_init(&p->start);
	if (strlen(p->prefix) > COMMAND_MAX_KEY || !text_valid_utf8(p->prefix, strlen(p->prefix))) {
		http_problem(req, 400, "bad-parameter",
		             "prefix must be valid UTF-8 of at most %d bytes", COMMAND_MAX_KEY);
		return -1;
	}
	if (limit != NULL &&
	    (text_parse_u64(limit, &p->limit) != 0 || p->limit == 0 || p->limit > LIST_MAX_LIMIT)) {
		http_problem(req, 400, "bad-parameter", "limit must be an integer from 1 to %d",
		             LIST_MAX_LIMIT);
		return -1;
	}
	if (cont != NULL && api_decode_continue(cont, p->prefix, &p->start) != 0) {
		buf_close(&p->start);
		http_problem(req, 400, "bad-parameter",
		             "continue is not a token this API issued for this listing (prefix "
		             "\"%s\")",
		             p->prefix);
		return -1;
	}
	return 0;
}

static void respond_list(struct api *a, struct http_request *req, bool stale)
{
	struct list_params p;
	if (parse_list(req, &p) != 0)
		return;
	api_common_headers(a, req);
	set_index_header(req, a->node->fsm.applied_index);
	struct buf prefix, start;
	buf_init(&prefix);
	buf_init(&start);
	buf_printf(&prefix, "k/%s", p.prefix);
	if (p.start.len > 0) {
		buf_append(&start, "k/", 2);
		buf_append(&start, p.start.data, p.start.len);
	}
	json_t *items = json_array();
	struct store_iter it;
	store_iter_init(&it, &a->node->fsm.store, NULL, prefix.data, prefix.len, start.data,
	                start.len);
	uint64_t n = 0;
	json_t *next = json_null();
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl, vl;
		const char *k = store_iter_key(&it, &kl);
		const char *v = store_iter_value(&it, &vl);
		if (n == p.limit) {
			/* The next page starts exactly at this key. */
			struct buf tok;
			buf_init(&tok);
			api_encode_continue(p.prefix, k + 2, kl - 2, &tok);
			next = json_stringn(tok.data, tok.len);
			buf_close(&tok);
			break;
		}
		if (vl < 24)
			continue;
		struct buf b64;
		buf_init(&b64);
		text_base64_encode(v + 24, vl - 24, &b64);
		uint64_t ci = 0, mi = 0, ver = 0;
		for (int i = 0; i < 8; i++) {
			ci = ci << 8 | (uint8_t)v[i];
			mi = mi << 8 | (uint8_t)v[8 + i];
			ver = ver << 8 | (uint8_t)v[16 + i];
		}
		json_array_append_new(items,
		                      json_pack("{s:s%, s:s%, s:I, s:I, s:I}", "key", k + 2, kl - 2,
		                                "value_b64", b64.data ? b64.data : "", b64.len,
		                                "create_index", (json_int_t)ci, "modify_index",
		                                (json_int_t)mi, "version", (json_int_t)ver));
		buf_close(&b64);
		n++;
	}
	store_iter_close(&it);
	if (stale) {
		char v[24];
		uint64_t lc = node_last_contact_ms(a->node);
		snprintf(v, sizeof v, "%lld", lc == UINT64_MAX ? -1LL : (long long)lc);
		http_response_header(req, CLOUDLESS_HDR_LAST_CONTACT, v);
	}
	http_respond_json(req, 200, json_pack("{s:o, s:o}", "items", items, "continue", next));
	buf_close(&prefix);
	buf_close(&start);
	buf_close(&p.start);
}

void api_route_kv_list(struct api *a, struct http_request *req)
{
	/* Validate before we possibly forward, so bad input never costs a round trip. */
	struct list_params p;
	if (parse_list(req, &p) != 0)
		return;
	buf_close(&p.start);
	kv_read(a, req, NULL);
}
