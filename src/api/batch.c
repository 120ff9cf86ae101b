/* batch: forwarding writes from a follower to the leader many at a time.
 *
 * Forwarding each write on its own costs the follower a libcurl transfer and the leader a
 * full HTTP request (parse, suspend, resume, send) per write, which made writes through a
 * follower far slower than writes to the leader. So a follower sends its writes as soon as
 * fewer than BATCH_INFLIGHT batches are in flight, and otherwise queues them until one
 * comes back: under load the queue fills while the leader works, and the next batch carries
 * everything that arrived meanwhile (like group commit, nothing waits for a timer). A lone
 * write still goes out at once.
 *
 * The leader's POST /raft/forward runs every item through the ordinary router as a synthetic
 * request (http.h), so an item's response - status, headers, problem body - is exactly what
 * the write alone would have got, and proxy.c's forward callback handles it the same way:
 * retries when the leader refused or lost leadership, relays otherwise. A batch that fails
 * as a whole (connect error, timeout, broken connection) hands every item the same outcome,
 * which proxy.c already knows how to answer safely (only writes safe to retry are re-sent).
 * Every item is safe to re-send: proxy.c gives each write that has neither an
 * Idempotency-Key nor a CAS on a non-zero index an internal idempotency key before it gets
 * here, and the item carries it among its headers (api_forward_headers), so the leader's fsm
 * answers a re-sent item with its first result instead of applying it again.
 *
 * Only kv writes with the default deadline are batched; a write with its own ?timeout, a
 * large body, reads and membership changes are forwarded one by one. Wire format:
 * forward/batch.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "forward/batch.h"
#include "http/problem.h"
#include "log/log.h"
#include "util/clock.h"

#define BATCH_PATH "/raft/forward"
/* Batches in flight before new writes queue: two keep the leader busy while one returns. */
#define BATCH_INFLIGHT 2
/* Writes in one batch (the leader accepts up to FWD_BATCH_MAX_ITEMS). */
#define BATCH_MAX_ITEMS 512
/* An old leader without /raft/forward answered 404: forward one by one this long. */
#define BATCH_UNSUPPORTED_MS 60000

/* ---- follower side ---- */

struct batch_out {
	struct api *a;
	struct api_op **ops;
	uint32_t n;
	uint64_t leader;               /* raft id it went to */
	uint64_t xfer;                 /* its transfer (fwd_cancel) */
	struct batch_out *prev, *next; /* api_batcher.sent */
};

static void sent_add(struct api_batcher *q, struct batch_out *bo)
{
	bo->prev = NULL;
	bo->next = q->sent;
	if (q->sent != NULL)
		q->sent->prev = bo;
	q->sent = bo;
}

static void sent_remove(struct api_batcher *q, struct batch_out *bo)
{
	if (bo->prev != NULL)
		bo->prev->next = bo->next;
	else if (q->sent == bo)
		q->sent = bo->next;
	if (bo->next != NULL)
		bo->next->prev = bo->prev;
	bo->prev = bo->next = NULL;
}

/* The item's encoded size (encode_item), so a batch never exceeds the leader's --max-body
 * (assumed equal to ours): the leader would refuse the whole batch with 413. */
static size_t item_size(struct api_op *op)
{
	struct fwd_header h[API_FORWARD_HEADERS];
	size_t body_len = 0, nh = api_forward_headers(op, h);
	size_t size = 5 * 4 + strlen(http_request_method(op->req)) +
	              strlen(http_request_path(op->req)) +
	              strlen(http_request_query_string(op->req));
	http_request_body(op->req, &body_len);
	for (size_t i = 0; i < nh; i++)
		size += 8 + strlen(h[i].name) + strlen(h[i].value);
	return size + body_len;
}

/* Bytes of items one batch may carry: --max-body less the batch header. */
static size_t batch_budget(const struct api *a)
{
	return a->cfg->max_body > 5 ? a->cfg->max_body - 5 : 0;
}

/* Hands every op of the batch the same (batch-level) outcome. */
static void answer_all(struct batch_out *bo, const struct fwd_response *r)
{
	for (uint32_t i = 0; i < bo->n; i++)
		bo->a->batcher.cb(r, bo->ops[i]);
}

static void answer_result(struct batch_out *bo, enum fwd_result result, const char *error,
                          double seconds)
{
	struct fwd_response r = {.result = result, .error = error, .seconds = seconds};
	answer_all(bo, &r);
}

/* One item's response as proxy.c expects it: NUL-terminated strings. */
static void answer_item(struct batch_out *bo, uint32_t i, const struct fwd_batch_item *it,
                        double seconds)
{
	struct fwd_header h[FWD_BATCH_MAX_HEADERS + 1];
	size_t off[2 * FWD_BATCH_MAX_HEADERS + 2];
	struct buf s;
	size_t n = 0;
	buf_init(&s);
	for (size_t k = 0; k < it->n_headers; k++) {
		off[2 * k] = s.len;
		buf_append(&s, it->headers[k].name.p, it->headers[k].name.len);
		buf_put_u8(&s, 0);
		off[2 * k + 1] = s.len;
		buf_append(&s, it->headers[k].value.p, it->headers[k].value.len);
		buf_put_u8(&s, 0);
	}
	size_t ct = s.len;
	buf_append(&s, it->content_type.p, it->content_type.len);
	buf_put_u8(&s, 0);
	size_t body = s.len;
	buf_append(&s, it->body.p, it->body.len);
	buf_put_u8(&s, 0);
	for (size_t k = 0; k < it->n_headers; k++)
		h[n++] = (struct fwd_header){s.data + off[2 * k], s.data + off[2 * k + 1]};
	if (it->content_type.len > 0)
		h[n++] = (struct fwd_header){"Content-Type", s.data + ct};
	struct fwd_response r = {.result = FWD_OK,
	                         .status = (long)it->status,
	                         .headers = h,
	                         .n_headers = n,
	                         .body = s.data + body,
	                         .body_len = it->body.len,
	                         .seconds = seconds};
	bo->a->batcher.cb(&r, bo->ops[i]);
	buf_close(&s);
}

/* Empties the queue; returns what it held (linked by batch_next). */
static struct api_op *queue_take(struct api_batcher *q)
{
	struct api_op *op = q->head;
	q->head = q->tail = NULL;
	q->n = 0;
	q->bytes = 0;
	return op;
}

static void batch_send(struct api *a);

static void batch_free(struct batch_out *bo)
{
	free(bo->ops);
	free(bo);
}

/* An old leader without the route: nothing ran; send each write again on its own. */
static void redispatch_all(struct batch_out *bo)
{
	log_warn("Leader does not take forwarded batches; forwarding one by one",
	         "retry_after_ms=%d", BATCH_UNSUPPORTED_MS);
	bo->a->batcher.unsupported_until = clock_mono_ms() + BATCH_UNSUPPORTED_MS;
	for (uint32_t i = 0; i < bo->n; i++) {
		struct api_op *op = bo->ops[i];
		op->busy = false;
		op->attempts--;
		api_dispatch_to_leader(op);
	}
}

static void batch_done(const struct fwd_response *r, void *arg)
{
	struct batch_out *bo = arg;
	struct api *a = bo->a;
	a->batcher.inflight--;
	sent_remove(&a->batcher, bo);
	if (r->result != FWD_OK || (r->status != 200 && r->status != 404)) {
		answer_all(bo, r);
	} else if (r->status == 404) {
		redispatch_all(bo);
	} else {
		struct buf_reader rd;
		struct fwd_batch_item it;
		uint32_t n = 0, i = 0;
		buf_reader_init(&rd, r->body, r->body_len);
		if (fwd_batch_read_begin(&rd, &n) != 0 || n != bo->n) {
			log_error("Malformed batch response from the leader", "items=%u bytes=%zu",
			          bo->n, r->body_len);
			answer_result(bo, FWD_FAILED, "malformed batch response", r->seconds);
		} else {
			for (; i < n && fwd_batch_read_response(&rd, &it) == 0; i++)
				answer_item(bo, i, &it, r->seconds);
			if (i < n) {
				/* The leader answered the first i; the rest are unknown. */
				log_error("Malformed batch response item", "item=%u items=%u", i,
				          n);
				struct fwd_response f = {.result = FWD_FAILED,
				                         .error = "malformed batch response",
				                         .seconds = r->seconds};
				for (; i < n; i++)
					a->batcher.cb(&f, bo->ops[i]);
			}
		}
	}
	batch_free(bo);
	if (a->batcher.n > 0 && !a->closing)
		batch_send(a);
}

static void encode_item(struct api_op *op, struct buf *b)
{
	struct fwd_header h[API_FORWARD_HEADERS];
	struct fwd_batch_item it = {0};
	size_t nh = api_forward_headers(op, h);
	const char *m = http_request_method(op->req), *p = http_request_path(op->req);
	const char *q = http_request_query_string(op->req);
	it.method = (struct fwd_bytes){m, strlen(m)};
	it.path = (struct fwd_bytes){p, strlen(p)};
	it.query = (struct fwd_bytes){q, strlen(q)};
	it.body.p = http_request_body(op->req, &it.body.len);
	for (size_t i = 0; i < nh; i++)
		it.headers[it.n_headers++] = (struct fwd_batch_pair){
		    {h[i].name, strlen(h[i].name)}, {h[i].value, strlen(h[i].value)}};
	fwd_batch_put_request(b, &it);
}

/* Sends everything queued as one batch. */
static void batch_send(struct api *a)
{
	struct api_batcher *q = &a->batcher;
	struct batch_out *bo = calloc(1, sizeof *bo);
	struct buf body, url;
	uint64_t now = clock_mono_ms(), deadline = UINT64_MAX;
	if (bo == NULL || (bo->ops = calloc(q->n, sizeof *bo->ops)) == NULL)
		abort();
	bo->a = a;
	buf_init(&body);
	buf_init(&url);
	fwd_batch_begin(&body, q->n);
	for (struct api_op *op = queue_take(q); op != NULL; op = op->batch_next) {
		bo->ops[bo->n++] = op;
		encode_item(op, &body);
		if (op->deadline_ms < deadline)
			deadline = op->deadline_ms;
	}
	buf_printf(&url, "%s://%s%s", fwd_scheme(a->fwd), q->leader_addr, BATCH_PATH);
	struct fwd_header h[] = {{"Content-Type", FWD_BATCH_CONTENT_TYPE},
	                         {CLOUDLESS_HDR_FORWARDED_BY, a->cfg->node_id}};
	struct fwd_request fr = {.method = "POST",
	                         .url = url.data,
	                         .headers = h,
	                         .n_headers = 2,
	                         .body = body.data,
	                         .body_len = body.len,
	                         .timeout_ms = deadline > now ? (unsigned)(deadline - now) : 1,
	                         /* Never re-sent by curl: see fwd_request. */
	                         .fresh_connection = true};
	q->inflight++;
	bo->leader = q->leader_id;
	sent_add(q, bo);
	metrics_counter_add(a->metrics, "cloudless_forward_batches_total", NULL, 1);
	metrics_counter_add(a->metrics, "cloudless_forward_batch_items_total", NULL, bo->n);
	if (fwd_send_cancellable(a->fwd, &fr, batch_done, bo, &bo->xfer) != 0) {
		q->inflight--;
		sent_remove(q, bo);
		answer_result(bo, FWD_CONNECT_FAILED, "cannot start the forward", 0);
		batch_free(bo);
	}
	buf_close(&body);
	buf_close(&url);
}

bool api_batch_forward(struct api_op *op, const struct fsm_member *leader, fwd_cb cb)
{
	struct api *a = op->api;
	struct api_batcher *q = &a->batcher;
	/* KV writes only (op->key): the leader's /raft/forward runs PUT/DELETE /v1/kv items. */
	if (op->kind != API_OP_WRITE || op->key == NULL ||
	    http_request_query(op->req, "timeout") != NULL ||
	    clock_mono_ms() < q->unsupported_until)
		return false;
	size_t size = item_size(op);
	/* Large writes go on their own: one would hold up the small ones batched with it. */
	if (size > batch_budget(a) / 4)
		return false;
	q->cb = cb;
	if (q->n > 0 && (strcmp(q->leader_addr, leader->http_addr) != 0 ||
	                 q->n >= BATCH_MAX_ITEMS || q->bytes + size > batch_budget(a)))
		batch_send(a);
	if (q->n == 0) {
		free(q->leader_addr);
		q->leader_addr = strdup(leader->http_addr);
		if (q->leader_addr == NULL)
			abort();
		q->leader_id = leader->raft_id;
	}
	op->attempts++;
	op->busy = true;
	op->batch_next = NULL;
	if (q->tail != NULL)
		q->tail->batch_next = op;
	else
		q->head = op;
	q->tail = op;
	q->n++;
	q->bytes += size;
	if (q->inflight < BATCH_INFLIGHT)
		batch_send(a);
	return true;
}

void api_batch_follow_leader(struct api *a, raft_id leader)
{
	struct api_batcher *q = &a->batcher;
	/* Queued writes were never sent: dispatch them again, they go to the new leader. */
	if (q->n > 0 && q->leader_id != leader) {
		struct api_op *op = queue_take(q);
		while (op != NULL) {
			struct api_op *next = op->batch_next;
			op->busy = false;
			op->attempts--;
			api_dispatch_to_leader(op);
			op = next;
		}
	}
	/* Batches in flight to another leader: collected first (by transfer id, which a batch
	 * freed meanwhile cannot alias), each cancel may send more. */
	unsigned n = 0;
	for (struct batch_out *bo = q->sent; bo != NULL; bo = bo->next)
		n += bo->leader != leader;
	if (n == 0)
		return;
	uint64_t *moved = calloc(n, sizeof *moved);
	if (moved == NULL)
		abort();
	unsigned k = 0;
	for (struct batch_out *bo = q->sent; bo != NULL && k < n; bo = bo->next)
		if (bo->leader != leader) {
			for (uint32_t i = 0; i < bo->n; i++)
				bo->ops[i]->leader_moved = true;
			moved[k++] = bo->xfer;
		}
	for (unsigned i = 0; i < k; i++)
		fwd_cancel(a->fwd, moved[i]);
	free(moved);
}

void api_batch_cancel(struct api *a)
{
	struct api_batcher *q = &a->batcher;
	struct fwd_response r = {.result = FWD_CANCELED, .error = "shutting down"};
	struct api_op *op = queue_take(q);
	while (op != NULL) {
		struct api_op *next = op->batch_next;
		q->cb(&r, op);
		op = next;
	}
	free(q->leader_addr);
	q->leader_addr = NULL;
}

/* ---- leader side: POST /raft/forward ---- */

struct batch_in {
	struct api *a;
	struct http_request *outer;
	struct http_request **items;
	uint32_t n, remaining;
	uint64_t start_ns;
};

static void batch_in_finish(struct batch_in *b)
{
	struct buf out;
	buf_init(&out);
	fwd_batch_begin(&out, b->n);
	for (uint32_t i = 0; i < b->n; i++) {
		struct http_request *req = b->items[i];
		struct fwd_batch_item it = {0};
		const char *ct = http_response_content_type(req);
		it.status = http_response_status(req);
		it.content_type = (struct fwd_bytes){ct ? ct : "", ct ? strlen(ct) : 0};
		it.body.p = http_response_body(req, &it.body.len);
		size_t nh = http_response_header_count(req);
		for (size_t k = 0; k < nh && it.n_headers < FWD_BATCH_MAX_HEADERS; k++) {
			const char *name, *value;
			http_response_header_at(req, k, &name, &value);
			it.headers[it.n_headers++] =
			    (struct fwd_batch_pair){{name, strlen(name)}, {value, strlen(value)}};
		}
		fwd_batch_put_response(&out, &it);
	}
	http_respond(b->outer, 200, FWD_BATCH_CONTENT_TYPE, out.data, out.len);
	buf_close(&out);
	for (uint32_t i = 0; i < b->n; i++)
		http_request_synthetic_free(b->items[i]);
	free(b->items);
	free(b);
}

/* Each item counts in the route metrics like a request of its own. */
static void item_answered(struct http_request *req, void *arg)
{
	struct batch_in *b = arg;
	api_request_complete(req, http_response_status(req),
	                     (double)(uv_hrtime() - b->start_ns) / 1e9, b->a);
	if (--b->remaining == 0)
		batch_in_finish(b);
}

static bool has_nul(struct fwd_bytes s)
{
	return memchr(s.p, 0, s.len) != NULL;
}

static bool is_method(struct fwd_bytes m, const char *name)
{
	return m.len == strlen(name) && memcmp(m.p, name, m.len) == 0;
}

/* Items are kv writes as a follower sends them: anything else is refused with the batch. */
static const char *item_problem(const struct fwd_batch_item *it)
{
	if (!is_method(it->method, "PUT") && !is_method(it->method, "DELETE"))
		return "batch items must be PUT or DELETE";
	if (it->path.len <= 7 || memcmp(it->path.p, "/v1/kv/", 7) != 0)
		return "batch items must address /v1/kv/{key}";
	if (has_nul(it->path) || has_nul(it->query))
		return "batch item path or query contains a NUL byte";
	for (size_t k = 0; k < it->n_headers; k++)
		if (it->headers[k].name.len == 0 || has_nul(it->headers[k].name) ||
		    has_nul(it->headers[k].value))
			return "batch item header is empty or contains a NUL byte";
	return NULL;
}

/* Reads and checks every item: the item count, or -1 after answering 400. */
static int batch_check(struct http_request *req, const char *body, size_t len)
{
	struct buf_reader rd;
	struct fwd_batch_item it;
	uint32_t n;
	buf_reader_init(&rd, body, len);
	if (fwd_batch_read_begin(&rd, &n) != 0 || n == 0) {
		http_problem(req, 400, "bad-batch",
		             "not a forwarded batch (version %d, 1 to %d items)", FWD_BATCH_VERSION,
		             FWD_BATCH_MAX_ITEMS);
		return -1;
	}
	for (uint32_t i = 0; i < n; i++) {
		const char *why = NULL;
		if (fwd_batch_read_request(&rd, &it) != 0)
			why = "item is truncated or malformed";
		else
			why = item_problem(&it);
		if (why != NULL) {
			http_problem(req, 400, "bad-batch", "item %u: %s", i, why);
			return -1;
		}
	}
	if (rd.left != 0) {
		http_problem(req, 400, "bad-batch", "%zu bytes after the last item", rd.left);
		return -1;
	}
	return (int)n;
}

static struct http_request *item_request(const struct fwd_batch_item *it, struct batch_in *b)
{
	struct http_synthetic_header h[FWD_BATCH_MAX_HEADERS];
	for (size_t k = 0; k < it->n_headers; k++)
		h[k] = (struct http_synthetic_header){it->headers[k].name.p, it->headers[k].value.p,
		                                      it->headers[k].name.len,
		                                      it->headers[k].value.len};
	struct http_synthetic s = {.method = it->method.p,
	                           .method_len = it->method.len,
	                           .path = it->path.p,
	                           .path_len = it->path.len,
	                           .query = it->query.p,
	                           .query_len = it->query.len,
	                           .body = it->body.p,
	                           .body_len = it->body.len,
	                           .headers = h,
	                           .n_headers = it->n_headers};
	return http_request_synthetic(&s, item_answered, b);
}

void api_route_forward_batch(struct api *a, struct http_request *req)
{
	size_t len = 0;
	const char *body = http_request_body(req, &len);
	const char *ct = http_request_header(req, "Content-Type");
	if (ct == NULL || strcmp(ct, FWD_BATCH_CONTENT_TYPE) != 0) {
		http_problem(req, 415, "unsupported-media-type",
		             "a forwarded batch is sent as " FWD_BATCH_CONTENT_TYPE);
		return;
	}
	int n = batch_check(req, body, len);
	if (n < 0)
		return;
	struct batch_in *b = calloc(1, sizeof *b);
	if (b == NULL || (b->items = calloc((size_t)n, sizeof *b->items)) == NULL)
		abort();
	b->a = a;
	b->outer = req;
	b->n = (uint32_t)n;
	b->start_ns = uv_hrtime();
	struct buf_reader rd;
	struct fwd_batch_item it;
	uint32_t count;
	buf_reader_init(&rd, body, len);
	fwd_batch_read_begin(&rd, &count);
	for (uint32_t i = 0; i < b->n; i++) {
		fwd_batch_read_request(&rd, &it);
		b->items[i] = item_request(&it, b);
	}
	/* Items may be answered while we dispatch (bad input, 503): hold one count until every
	 * item has been started. */
	b->remaining = b->n + 1;
	for (uint32_t i = 0; i < b->n; i++) {
		api_prepare(b->items[i], a);
		api_handle(b->items[i], a);
	}
	if (--b->remaining == 0)
		batch_in_finish(b);
}
