/* proxy: getting a request to the leader.
 *
 * A request that must be served by the leader (writes, membership changes, linearizable
 * reads) runs locally when this node leads. Otherwise it is forwarded with libcurl to the
 * leader's advertised HTTP address, or answered 307 with ?redirect. With no known leader it
 * waits (bounded by three election timeouts and the request deadline) for one to emerge.
 *
 * Retrying is the delicate part. A request that never reached the leader (connection
 * refused, or the target answered "not-leader" before proposing anything) is always safe to
 * send again. One whose outcome is unknown (the connection broke after sending, or the leader
 * lost leadership before the entry committed) is re-sent only when that cannot apply it twice:
 * it carries an Idempotency-Key, or it is a compare-and-set on a non-zero index (modify
 * indexes only grow, so a re-sent CAS that meets its own change fails). A create-only CAS
 * (cas=0) is not safe by itself - a delete in between lets the re-send create the key again -
 * and neither is a plain write. So every forwarded write without a key of its own gets an
 * internal one (X-Cloudless-Forward-Key: this process incarnation's random name and a
 * counter), which the leader's fsm records like an Idempotency-Key, in a namespace of its
 * own: a re-sent attempt is answered with the first attempt's result, exactly as the first
 * answer would have been (no replay header), and is never applied twice. Whatever is not safe
 * gets 503 saying the outcome is unknown; a passed deadline is 504. Forwarded requests are
 * marked so a second non-leader never forwards again (no loops). Reads are always safe.
 *
 * Retries cannot multiply: one request is sent at most API_MAX_ATTEMPTS times, re-sent after
 * an unknown outcome at most API_MAX_UNKNOWN_RETRIES times, and a re-send to the same leader
 * waits a backoff that doubles from RETRY_BACKOFF_MS; only a change of leader skips the wait.
 * An answer from the leader (any 4xx included) is relayed, never retried. "May have been
 * applied" is said of writes only: a read changes nothing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "http/problem.h"
#include "log/log.h"
#include "util/clock.h"

/* How often a request waiting for a leader looks again. Short: after a leadership hand-over
 * the new leader is known within a heartbeat, and every millisecond here is a gap clients
 * of the followers see (graceful restart). */
#define LEADER_POLL_MS 3
/* Backoff between two sends of one request to the same leader. */
#define RETRY_BACKOFF_MS     5
#define RETRY_BACKOFF_MAX_MS 160
/* Sends of one request in all (a failover takes a few: the dead leader refuses, the next one
 * may still be electing), and re-sends after an unknown outcome among them. */
#define API_MAX_ATTEMPTS        8
#define API_MAX_UNKNOWN_RETRIES 2

static void count_forward(struct api *a, const char *result, double seconds)
{
	char labels[64];
	snprintf(labels, sizeof labels, "result=\"%s\"", result);
	metrics_counter_add(a->metrics, "cloudless_forward_requests_total", labels, 1);
	if (seconds >= 0)
		metrics_observe(a->metrics, "cloudless_forward_duration_seconds", NULL, seconds);
}

static const char MAYBE_APPLIED[] =
    "an earlier attempt may have been applied before leadership moved, and the retry cannot "
    "tell (retry with an Idempotency-Key to be safe)";

static void finish_problem(struct api_op *op, unsigned status, const char *slug, const char *detail)
{
	/* "no-leader" promises that nothing was applied, which stops being true of the request
	 * once an attempt with an unknown outcome was re-sent. */
	if (op->maybe_applied && status == 503 && strcmp(slug, "no-leader") == 0) {
		slug = "leadership-lost";
		detail = MAYBE_APPLIED;
	}
	api_common_headers(op->api, op->req);
	api_problem_leader(op->api, op->req, status, slug, detail);
	op->req = NULL;
	api_op_release(op);
}

static bool is_write(const struct api_op *op)
{
	return op->kind != API_OP_READ;
}

/* The request was (or may have been) received by a leader whose answer we lost: from now on
 * "nothing was applied" is no longer true of a write. */
static void note_unknown_outcome(struct api_op *op)
{
	op->unknown_retries++;
	if (is_write(op)) {
		op->maybe_applied = true;
		op->retried = true; /* X-Cloudless-Retry: "already done" is success (membership) */
	}
}

/* A failed attempt: try again after the backoff, or at once if the leader changes. */
static void retry_later(struct api_op *op)
{
	unsigned shift = op->attempts > 0 ? op->attempts - 1 : 0;
	uint64_t backoff = shift >= 6 ? RETRY_BACKOFF_MAX_MS : (uint64_t)RETRY_BACKOFF_MS << shift;
	if (backoff > RETRY_BACKOFF_MAX_MS)
		backoff = RETRY_BACKOFF_MAX_MS;
	op->resend_at = clock_mono_ms() + backoff;
	api_wait_for_leader(op);
}

static bool leader_changed_since_send(struct api_op *op)
{
	raft_id lid = 0;
	return node_leader(op->api->node, NULL, &lid, NULL) && lid != op->sent_to;
}

static void wait_cb(uv_timer_t *t)
{
	struct api_op *op = t->data;
	if (op->req != NULL && clock_mono_ms() < op->resend_at && !leader_changed_since_send(op)) {
		api_wait_for_leader(op);
		return;
	}
	api_dispatch_to_leader(op);
}

static void finish_timeout(struct api_op *op, const char *what)
{
	char detail[256];
	snprintf(detail, sizeof detail, "%s%s", what,
	         is_write(op) && (op->maybe_applied || op->attempts > 0)
	             ? "; the write may or may not have been applied (retry with an "
	               "Idempotency-Key to be safe)"
	             : "");
	count_forward(op->api, "timeout", -1);
	finish_problem(op, 504, "timeout", detail);
}

/* No usable leader right now: poll for one until our patience or the deadline runs out. */
void api_wait_for_leader(struct api_op *op)
{
	struct api *a = op->api;
	uint64_t now = clock_mono_ms();
	if (op->no_leader_until == 0)
		op->no_leader_until = now + 3 * (uint64_t)a->cfg->election_ms;
	if (now >= op->deadline_ms) {
		finish_timeout(op, "the request deadline passed while waiting for a leader");
		return;
	}
	if (now >= op->no_leader_until) {
		count_forward(a, "no_leader", -1);
		finish_problem(op, 503, "no-leader", "no leader is known; retry later");
		return;
	}
	if (op->attempts >= API_MAX_ATTEMPTS) {
		char detail[160];
		snprintf(detail, sizeof detail,
		         "the leader did not take the request in %u attempts; retry later",
		         op->attempts);
		count_forward(a, "gave_up", -1);
		finish_problem(op, 503, "no-leader", detail);
		return;
	}
	if (!op->timer_open) {
		uv_timer_init(a->loop, &op->timer);
		op->timer.data = op;
		op->timer_open = true;
	}
	uv_timer_start(&op->timer, wait_cb, LEADER_POLL_MS, 0);
}

static const char *const HOP_BY_HOP[] = {
    "connection",   "keep-alive", "transfer-encoding", "content-length", "date",
    "content-type", NULL};

static bool skip_header(const char *name)
{
	for (int i = 0; HOP_BY_HOP[i] != NULL; i++)
		if (strcasecmp(name, HOP_BY_HOP[i]) == 0)
			return true;
	return false;
}

static void relay(struct api_op *op, const struct fwd_response *r)
{
	const char *ctype = NULL;
	for (size_t i = 0; i < r->n_headers; i++) {
		if (strcasecmp(r->headers[i].name, "content-type") == 0)
			ctype = r->headers[i].value;
		else if (!skip_header(r->headers[i].name))
			http_response_header(op->req, r->headers[i].name, r->headers[i].value);
	}
	http_respond(op->req, (unsigned)r->status, ctype, r->body, r->body_len);
	op->req = NULL;
	api_op_release(op);
}

/* "not-leader" means the target refused before proposing anything. */
static bool refused_unapplied(const struct fwd_response *r)
{
	return r->status == 503 && r->body != NULL &&
	       strstr(r->body, CLOUDLESS_PROBLEM_BASE "not-leader") != NULL;
}

/* "leadership-lost", and "shutting-down" from a leader that is stopping (SIGTERM: it hands
 * leadership over, then answers what it still holds that way), mean the outcome is unknown:
 * the request may have been proposed. Retrying those that are safe to retry is what keeps a
 * graceful leader restart invisible to clients of the followers. */
static bool leadership_lost(const struct fwd_response *r)
{
	return r->status == 503 && r->body != NULL &&
	       (strstr(r->body, CLOUDLESS_PROBLEM_BASE "leadership-lost") != NULL ||
	        strstr(r->body, CLOUDLESS_PROBLEM_BASE "shutting-down") != NULL);
}

/* The leader says this attempt certainly was not applied. After an earlier attempt with an
 * unknown outcome that says nothing about the request: a re-sent CAS that finds its own
 * earlier attempt applied fails its comparison. With an idempotency key (the client's or an
 * internal one) a result of the fsm is the first attempt's recorded result instead, which is
 * the truth; "no-leader" and a full disk's 507 never are, they come from no apply. */
static bool refutes_only_this_attempt(const struct api_op *op, const struct fwd_response *r)
{
	if (!op->maybe_applied || r->body == NULL)
		return false;
	if ((r->status == 503 && strstr(r->body, CLOUDLESS_PROBLEM_BASE "no-leader") != NULL) ||
	    (r->status == 507 && strstr(r->body, CLOUDLESS_PROBLEM_BASE "storage") != NULL))
		return true;
	return r->status == 409 && op->idem_key == NULL && op->internal_key == NULL &&
	       strstr(r->body, CLOUDLESS_PROBLEM_BASE "cas-mismatch") != NULL;
}

/* The forward was canceled because another node leads now (api_follow_leader). */
static void leader_moved(struct api_op *op)
{
	op->leader_moved = false;
	count_forward(op->api, "leader_moved", -1);
	if (!is_write(op) || op->safe_to_retry) {
		if (is_write(op)) {
			op->maybe_applied = true;
			op->retried = true;
		}
		api_dispatch_to_leader(op);
		return;
	}
	finish_problem(op, 503, "leadership-lost",
	               "leadership moved while the request waited on the previous leader; it may "
	               "or may not have been applied (retry with an Idempotency-Key to be safe)");
}

static void forward_cb(const struct fwd_response *r, void *arg)
{
	struct api_op *op = arg;
	struct api *a = op->api;
	op->busy = false;
	op->fwd_single = false;
	if (op->req == NULL) {
		api_op_release(op);
		return;
	}
	bool may_retry = op->safe_to_retry && op->unknown_retries < API_MAX_UNKNOWN_RETRIES;
	switch (r->result) {
	case FWD_OK:
		if (refused_unapplied(r) || (leadership_lost(r) && may_retry)) {
			if (leadership_lost(r))
				note_unknown_outcome(op);
			count_forward(a, "retry", r->seconds);
			retry_later(op);
			return;
		}
		count_forward(a, "ok", r->seconds);
		if (refutes_only_this_attempt(op, r)) {
			api_fail_maybe_applied(op);
			return;
		}
		relay(op, r);
		return;
	case FWD_CONNECT_FAILED:
		count_forward(a, "connect_failed", r->seconds);
		retry_later(op);
		return;
	case FWD_TIMEOUT:
		finish_timeout(op, "forwarding to the leader timed out");
		return;
	case FWD_CANCELED:
		if (op->leader_moved) {
			leader_moved(op);
			return;
		}
		count_forward(a, "canceled", r->seconds);
		http_response_header(op->req, "Retry-After", "1");
		finish_problem(op, 503, "shutting-down", "the coordinator is shutting down");
		return;
	case FWD_FAILED:
	default:
		count_forward(a, "failed", r->seconds);
		if (!is_write(op) && op->unknown_retries < API_MAX_UNKNOWN_RETRIES) {
			op->unknown_retries++;
			retry_later(op);
			return;
		}
		if (!is_write(op)) {
			finish_problem(
			    op, 503, "no-leader",
			    "the connection to the leader broke before it answered; a read "
			    "changes nothing, so it is safe to retry");
			return;
		}
		if (may_retry) {
			note_unknown_outcome(op);
			retry_later(op);
			return;
		}
		finish_problem(
		    op, 503, "leadership-lost",
		    "the connection to the leader broke after the request was sent; it may "
		    "or may not have been applied (retry with an Idempotency-Key)");
	}
}

static void append_escaped_path(struct buf *out, const char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
			buf_append(out, p, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			buf_append(out, e, 3);
		}
	}
}

static void leader_url(struct buf *url, const struct api *a, const char *http_addr,
                       struct http_request *req)
{
	const char *q = http_request_query_string(req);
	buf_printf(url, "%s://%s", fwd_scheme(a->fwd), http_addr);
	append_escaped_path(url, http_request_path(req));
	if (q != NULL && q[0] != '\0')
		buf_printf(url, "?%s", q);
}

static void redirect(struct api_op *op, const struct fsm_member *leader)
{
	struct buf url;
	buf_init(&url);
	leader_url(&url, op->api, leader->http_addr, op->req);
	api_common_headers(op->api, op->req);
	http_response_header(op->req, "Location", url.data);
	http_problem(op->req, 307, "redirect", "the leader %s serves this request at %s",
	             leader->node_id, url.data);
	buf_close(&url);
	op->req = NULL;
	api_op_release(op);
}

/* Digits of an order-preserving base 64 (ascending in ASCII, all visible): fixed-width numbers
 * written with them sort like the numbers. */
static const char ORDERED64[] = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

static void put_ordered64(char *out, unsigned width, uint64_t v)
{
	for (unsigned i = width; i-- > 0; v >>= 6)
		out[i] = ORDERED64[v & 63];
}

void api_name_incarnation(struct api *a)
{
	uint8_t r[12];
	/* 96 random bits: nobody can guess another process's keys, and a restarted follower
	 * never meets its predecessor's records. */
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		log_warn("No random bytes for internal idempotency keys; using the clock",
		         "error=\"%s\"", strerror(errno));
		uint64_t t = uv_hrtime() ^ ((uint64_t)getpid() << 32), w = clock_wall_ms();
		for (int i = 0; i < 6; i++) {
			r[i] = (uint8_t)(t >> (8 * i));
			r[6 + i] = (uint8_t)(w >> (8 * i));
		}
	}
	for (int i = 0; i < 4; i++) /* 3 bytes = 4 digits */
		put_ordered64(a->incarnation + 4 * i, 4,
		              (uint64_t)r[3 * i] << 16 | (uint64_t)r[3 * i + 1] << 8 |
		                  r[3 * i + 2]);
	a->incarnation[16] = '\0';
}

/* A forwarded write that nothing else makes safe to re-send gets an internal idempotency key,
 * unique to this process and this write and kept for all its attempts (also one this node
 * serves itself after becoming leader): 30 characters, the creation time (wall ms, 7
 * digits), the incarnation (16) and a counter (7), in ORDERED64. Short, because it travels in
 * the entry; led by the time so that the fsm's internal records sort by age (fsm.c prunes
 * them from the first; any order would be safe, this one prunes the oldest). */
static void attach_internal_key(struct api_op *op)
{
	struct api *a = op->api;
	char key[API_INTERNAL_KEY_LEN + 1];
	if (op->kind != API_OP_WRITE || op->safe_to_retry)
		return;
	put_ordered64(key, 7, clock_wall_ms());
	memcpy(key + 7, a->incarnation, 16);
	put_ordered64(key + 23, 7, ++a->forward_keys);
	key[API_INTERNAL_KEY_LEN] = '\0';
	op->internal_key = strdup(key);
	if (op->internal_key == NULL)
		abort();
	op->safe_to_retry = true;
}

size_t api_forward_headers(struct api_op *op, struct fwd_header *h)
{
	static const char *const pass[] = {"Content-Type", "Authorization",
	                                   CLOUDLESS_HDR_IDEMPOTENCY_KEY, "Accept", "If-Match"};
	size_t nh = 0;
	for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++) {
		const char *v = http_request_header(op->req, pass[i]);
		if (v != NULL)
			h[nh++] = (struct fwd_header){pass[i], v};
	}
	h[nh++] = (struct fwd_header){CLOUDLESS_HDR_FORWARDED_BY, op->api->cfg->node_id};
	if (op->internal_key != NULL)
		h[nh++] = (struct fwd_header){CLOUDLESS_HDR_FORWARD_KEY, op->internal_key};
	/* A re-send of an internally keyed write says so: should its record be gone, the fsm
	 * must not take it for a first attempt (fsm.c, internal records). */
	if (op->retried || (op->internal_key != NULL && op->maybe_applied))
		h[nh++] = (struct fwd_header){CLOUDLESS_HDR_RETRY, "true"};
	if (op->kind == API_OP_CHANGE && op->u.change.start_by_ms != 0) {
		uint64_t now = clock_mono_ms();
		uint64_t left = op->u.change.start_by_ms > now ? op->u.change.start_by_ms - now : 0;
		snprintf(op->start_by_wall, sizeof op->start_by_wall, "%llu",
		         (unsigned long long)(clock_wall_ms() + left));
		h[nh++] = (struct fwd_header){CLOUDLESS_HDR_START_BY, op->start_by_wall};
	}
	return nh;
}

static void forward(struct api_op *op, const struct fsm_member *leader)
{
	struct api *a = op->api;
	struct fwd_header h[API_FORWARD_HEADERS];
	attach_internal_key(op);
	op->sent_to = leader->raft_id;
	if (api_batch_forward(op, leader, forward_cb))
		return;
	size_t nh = api_forward_headers(op, h);
	struct buf url;
	buf_init(&url);
	leader_url(&url, op->api, leader->http_addr, op->req);
	size_t body_len = 0;
	const char *body = http_request_body(op->req, &body_len);
	uint64_t now = clock_mono_ms();
	/* HEAD goes as GET: the leader's answer then carries the body whose length HEAD must
	 * report, and the HTTP server drops the body itself. */
	const char *method = http_request_method(op->req);
	if (strcmp(method, "HEAD") == 0)
		method = "GET";
	struct fwd_request fr = {.method = method,
	                         .url = url.data,
	                         .headers = h,
	                         .n_headers = nh,
	                         .body = body,
	                         .body_len = body_len,
	                         .timeout_ms = (unsigned)(op->deadline_ms - now),
	                         /* A write without an Idempotency-Key reaches the leader at most
	                          * once: curl's silent re-send on a dead kept-alive connection
	                          * would hide that it was sent at all (and, for a CAS, let a
	                          * re-send that meets its own change look like a plain
	                          * mismatch). */
	                         .fresh_connection =
	                             op->kind == API_OP_WRITE && op->idem_key == NULL};
	op->attempts++;
	op->busy = true;
	op->fwd_single = true;
	if (fwd_send_cancellable(a->fwd, &fr, forward_cb, op, &op->fwd_id) != 0) {
		op->busy = false;
		op->fwd_single = false;
		finish_problem(op, 503, "no-leader", "cannot forward the request to the leader");
	}
	buf_close(&url);
}

void api_dispatch_to_leader(struct api_op *op)
{
	struct api *a = op->api;
	struct node *n = a->node;
	if (op->req == NULL) {
		api_op_release(op);
		return;
	}
	if (clock_mono_ms() >= op->deadline_ms) {
		finish_timeout(op, "the request deadline passed");
		return;
	}
	if (node_is_leader(n)) {
		op->local(op);
		return;
	}
	if (http_request_header(op->req, CLOUDLESS_HDR_FORWARDED_BY) != NULL) {
		/* Forwarded to us by a node that thought we lead: bounce it back rather than
		 * forwarding twice; nothing was proposed, so the sender may retry. */
		finish_problem(op, 503, "not-leader", "this node is not the leader");
		return;
	}
	const struct fsm_member *leader = NULL;
	raft_id lid = 0;
	if (!node_leader(n, &leader, &lid, NULL) || leader == NULL || lid == n->id) {
		api_wait_for_leader(op);
		return;
	}
	if (http_request_query(op->req, "redirect") != NULL) {
		redirect(op, leader);
		return;
	}
	forward(op, leader);
}

void api_retry_or_fail(struct api_op *op, int raft_status)
{
	struct api *a = op->api;
	bool forwarded = http_request_header(op->req, CLOUDLESS_HDR_FORWARDED_BY) != NULL;
	if (op->safe_to_retry && !forwarded && !a->closing && clock_mono_ms() < op->deadline_ms &&
	    op->unknown_retries < API_MAX_UNKNOWN_RETRIES) {
		log_info("Retrying write after leadership change", "attempt=%u status=%s",
		         op->attempts, raft_strerror(raft_status));
		note_unknown_outcome(op);
		api_wait_for_leader(op);
		return;
	}
	char detail[256];
	snprintf(detail, sizeof detail,
	         "%s before the write committed; it may or may not have been applied (retry with "
	         "an Idempotency-Key to be safe)",
	         raft_strerror(raft_status));
	finish_problem(op, 503, "leadership-lost", detail);
}

void api_fail_maybe_applied(struct api_op *op)
{
	finish_problem(op, 503, "leadership-lost", MAYBE_APPLIED);
}

void api_write_not_proposed(struct api_op *op, int rv)
{
	if (rv == RAFT_NOTLEADER) {
		api_wait_for_leader(op);
		return;
	}
	if (op->maybe_applied) {
		api_fail_maybe_applied(op);
		return;
	}
	api_common_headers(op->api, op->req);
	api_respond_raft_error(op->api, op->req, rv, false);
	op->req = NULL;
	api_op_release(op);
}

void api_propose(struct api_op *op, const struct buf *entry,
                 void (*cb)(struct node_propose *p, int status, void *result))
{
	op->u.propose.cb = cb;
	op->u.propose.data = op;
	op->busy = true;
	int rv = node_propose(op->api->node, &op->u.propose, entry);
	if (rv == 0)
		return;
	op->busy = false;
	api_write_not_proposed(op, rv);
}

static void barrier_done(struct node_read *r, int status)
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
	op->read_confirmed(op);
}

void api_read_barrier(struct api_op *op, void (*confirmed)(struct api_op *op))
{
	op->read_confirmed = confirmed;
	op->u.read.cb = barrier_done;
	op->u.read.data = op;
	op->busy = true;
	int rv = node_read_barrier(op->api->node, &op->u.read);
	if (rv == 0)
		return;
	op->busy = false;
	if (rv == RAFT_NOTLEADER) {
		api_wait_for_leader(op);
		return;
	}
	api_common_headers(op->api, op->req);
	api_respond_raft_error(op->api, op->req, rv, false);
	op->req = NULL;
	api_op_release(op);
}

static bool moves_with_leader(const struct api_op *op, raft_id leader)
{
	return op->fwd_single && op->sent_to != leader && op->kind != API_OP_CHANGE;
}

void api_follow_leader(struct api *a)
{
	raft_id lid = 0;
	if (a->closing || a->removed || !node_leader(a->node, NULL, &lid, NULL) ||
	    lid == a->followed)
		return;
	a->followed = lid;
	/* Collected first, by transfer id: a canceled op may be answered and freed, or sent
	 * again (a new transfer, which a stale id cannot cancel). Membership
	 * changes are left to finish where they went: the old leader hands leadership over
	 * itself and then answers "retry elsewhere" (membership.c), and a new leader asked at
	 * once, before it heard from its voters, would refuse for want of a reachable quorum. */
	unsigned n = 0;
	for (struct api_op *op = a->ops; op != NULL; op = op->next)
		n += moves_with_leader(op, lid);
	if (n > 0) {
		uint64_t *moved = calloc(n, sizeof *moved);
		if (moved == NULL)
			abort();
		unsigned k = 0;
		for (struct api_op *op = a->ops; op != NULL && k < n; op = op->next)
			if (moves_with_leader(op, lid)) {
				op->leader_moved = true;
				moved[k++] = op->fwd_id;
			}
		log_info("Leader changed: moving forwards off the previous leader", "forwards=%u",
		         k);
		for (unsigned i = 0; i < k; i++)
			fwd_cancel(a->fwd, moved[i]);
		free(moved);
	}
	api_batch_follow_leader(a, lid);
}
