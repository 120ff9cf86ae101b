/* api: the coordinator's HTTP routes on top of the raft node.
 *
 * router.c dispatches by path and method (404 / 405 with Allow), attaches the headers every
 * response carries and records per-route metrics. Writes and linearizable reads are served
 * by the leader: on a follower proxy.c forwards them (libcurl multi, on the same loop), waits
 * for a leader when there is none, retries only when that is safe, and answers 503/504
 * honestly otherwise. Each asynchronous request is an api_op linked into the api so shutdown
 * can answer every one of them before the HTTP server goes away. */
#ifndef CLOUDLESS_API_API_H
#define CLOUDLESS_API_API_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "domain/domain.h"
#include "forward/forward.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "raft/node.h"

/* A maximum over a sliding window of 10-20 s (this one and the previous 10 s): what a scrape
 * right after a burst should see, without one bad second standing for ever. */
struct api_window_max {
	double cur, prev;
	uint64_t since_ns;
};
void api_window_max_note(struct api_window_max *w, double v);
double api_window_max_get(struct api_window_max *w);

/* Writes a follower holds while earlier batches to the leader are in flight (batch.c). */
struct api_batcher {
	struct api_op *head, *tail; /* queued, in arrival order (api_op.batch_next) */
	unsigned n;
	size_t bytes;               /* encoded size of the queued items, roughly */
	char *leader_addr;          /* where the queued items go */
	uint64_t leader_id;         /* and the raft id of that leader */
	unsigned inflight;          /* batches sent, not yet answered */
	uint64_t unsupported_until; /* the leader answered 404: forward one by one until then */
	fwd_cb cb;                  /* each item's answer goes here (proxy.c's forward callback) */
	struct batch_out *sent;     /* batches in flight (batch.c) */
};

struct auth_file;

struct api {
	uv_loop_t *loop;
	struct node *node;
	struct fwd *fwd;
	struct metrics *metrics;
	const struct config *cfg;
	/* --auth-file as last loaded (the server owns it and swaps it on SIGHUP); NULL: protected
	 * mode (auth_check.c). */
	struct auth_file *auth;
	struct http_server *http; /* the API listener, for its queue gauges (NULL until set) */
	struct api_op *ops;       /* every op still holding an http_request */
	unsigned n_ops;
	bool closing;
	bool removed;      /* the cluster removed this node: everything answers so (removed.c) */
	bool disk_low;     /* writes are refused: free space under --min-free-disk (kv_routes.c) */
	bool disk_checked; /* disk_free and disk_checked_at are set */
	uint64_t disk_checked_at; /* uv_now() of the last statvfs */
	uint64_t disk_free;       /* bytes free then */
	uint64_t start_ms;
	struct api_batcher batcher;
	struct domain *domain; /* workloads and agents (set by the server) */
	/* Internal idempotency keys for forwarded writes (proxy.c): this process incarnation's
	 * random name, and a counter. */
	char incarnation[17];
	uint64_t forward_keys;
	/* What api_publish_headers last published. */
	bool published, pub_known;
	raft_id pub_leader;
	uint64_t pub_index;
	raft_id followed; /* the leader api_follow_leader last saw */
	/* GET /v1/snapshot (snapshot_route.c): one image is built at a time, the other
	 * requests wait in order. */
	bool snap_building;
	struct api_op *snap_head, *snap_tail;
	/* The longest loop lag and AppendEntries send interval of the last 10-20 s
	 * (cloudless_loop_lag_max_seconds, cloudless_raft_append_send_interval_max_seconds). */
	struct api_window_max loop_lag_max, append_interval_max;
};

enum api_op_kind { API_OP_WRITE, API_OP_READ, API_OP_CHANGE, API_OP_FORWARD };

/* One asynchronous request. */
struct api_op {
	struct api *api;
	struct http_request *req; /* NULL once answered (e.g. by api_cancel_all) */
	struct api_op *prev, *next;
	enum api_op_kind kind;
	uint64_t deadline_ms;     /* monotonic */
	uint64_t no_leader_until; /* give up waiting for a leader after this (503) */
	uv_timer_t timer;         /* waiting for a leader */
	bool timer_open;
	/* May be re-sent after an attempt with an unknown outcome, because that cannot apply it
	 * twice: an Idempotency-Key, a CAS with a non-zero index (modify indexes only grow), or
	 * an internal key (internal_key). A create-only CAS (cas=0) is not: a delete in between
	 * lets a retry create the key again. */
	bool safe_to_retry;
	bool maybe_applied; /* an earlier attempt was re-sent after an unknown outcome (writes) */
	unsigned attempts;  /* sends to a leader (proxy.c caps them, with backoff) */
	unsigned unknown_retries; /* re-sends after an attempt whose outcome is unknown */
	uint64_t resend_at;       /* no re-send to the same leader before this (backoff) */
	raft_id sent_to;          /* the leader the latest attempt went to */
	bool fwd_single;          /* forwarded on its own (not in a batch), transfer in flight */
	uint64_t fwd_id;          /* that transfer (fwd_cancel) */
	bool leader_moved;        /* its forward was canceled because leadership moved on */
	bool busy;                /* a raft/forward/membership callback is still outstanding */
	/* Re-sent after an attempt whose outcome is unknown (X-Cloudless-Retry): a membership
	 * change, or on the leader a follower's internally keyed write. */
	bool retried;
	void (*local)(struct api_op *op);          /* serve on this node once it is the leader */
	void (*read_confirmed)(struct api_op *op); /* api_read_barrier: the barrier committed */
	struct api_op *snap_next;                  /* waiting for its backup image (snapshot) */
	char *key;                                 /* kv key (decoded) for kv ops */
	size_t key_len;
	char *idem_key;
	/* Writes: the internal idempotency key (X-Cloudless-Forward-Key) of a write without one
	 * of its own: made up here when forwarding it, or the forwarding follower's. */
	char *internal_key;
	/* An enrollment's new agent secret, as the agent sends it ("agent~ID.SECRET"): answered
	 * once, never in an entry (agent_routes.c). */
	char *agent_token;
	unsigned change_kind;
	struct api_op *batch_next; /* in api_batcher's queue */
	char start_by_wall[24];    /* X-Cloudless-Start-By of a forwarded change */
	/* Domain requests (domain_ops.c): the op to propose, how to answer once applied or
	 * read, and a blocking query's watcher. */
	json_t *dom_op;
	char *dom_key;     /* what the answer is about: agent id, workload key, ... */
	bool dom_replayed; /* answered from an idempotency record (a retry of an applied write) */
	void (*dom_answer)(struct api_op *op, unsigned code, uint64_t index);
	void (*dom_render)(struct api_op *op);
	char dom_topic[320]; /* blocking query: the topic, "" when not blocking */
	uint64_t dom_index;
	uint64_t dom_wait_ms;
	struct dom_watch *watch;
	union {
		struct node_propose propose;
		struct node_read read;
		struct node_change change;
	} u;
};

void api_init(struct api *a, uv_loop_t *loop, struct node *node, struct fwd *fwd,
              struct metrics *metrics, const struct config *cfg);
/* Answers every pending request with 503 (shutting down). */
void api_cancel_all(struct api *a);
/* The cluster removed this node: pending requests are answered so, and from now on every
 * request is answered by removed.c without touching the node (a->node may be NULL). */
void api_enter_removed(struct api *a);
void api_route_removed_mode(struct api *a, struct http_request *req, bool metrics_only);
/* POST /raft/removed: the leader says we were removed; we check with it (membership.c). */
void api_route_removed_notice(struct api *a, struct http_request *req);

/* http handlers: the main listener, and the optional metrics-only listener. */
void api_handle(struct http_request *req, void *arg);
void api_handle_metrics_listener(struct http_request *req, void *arg);
void api_request_complete(struct http_request *req, unsigned status, double seconds, void *arg);
/* http prepare hook: the common headers on every response (see api_common_headers). */
void api_prepare(struct http_request *req, void *arg);
/* The common headers for the answers the HTTP servers' own threads give (400, 413, 503...):
 * published when leader or applied index changed. Called once per loop iteration. */
void api_publish_headers(struct api *a, struct http_server *const *servers, size_t n);

/* auth_check.c: true when the caller may use the route; otherwise answered 401/403. */
bool api_authorize(struct api *a, struct http_request *req);
/* The scopes (auth.h) any one of which a route needs; 0 when it is open. */
unsigned api_route_scopes(const char *method, const char *path, const char *mode);
/* An agent's credential ("agent~ID.SECRET", auth_check.c): true with its id (not verified). */
#define API_AGENT_ID_MAX 80
struct auth_bearer;
bool api_agent_credential(const struct auth_bearer *b, char id[API_AGENT_ID_MAX]);

/* ---- shared between route files ---- */

struct api_op *api_op_new(struct api *a, struct http_request *req, enum api_op_kind kind);
/* Detaches the op from its request (after answering) and frees it unless callbacks still
 * reference it: ops are freed by whoever runs last (see api_op_release). */
void api_op_release(struct api_op *op);
/* Sets X-Cloudless-Leader, X-Cloudless-Known-Leader, X-Cloudless-Served-By and
 * X-Cloudless-Index (the applied index). */
void api_common_headers(struct api *a, struct http_request *req);
/* X-Cloudless-Last-Contact of a stale read: ms since this node heard from the leader (0 on
 * the leader, -1 when it knows none). */
void api_last_contact_header(struct api *a, struct http_request *req);
/* Problem response with leader hint members (leader_id, leader_http_addr) when known. */
void api_problem_leader(struct api *a, struct http_request *req, unsigned status, const char *slug,
                        const char *detail);
/* Maps a raft error from a failed proposal to a response. */
void api_respond_raft_error(struct api *a, struct http_request *req, int rv, bool applied_unknown);
/* Parses ?timeout (default cfg forward timeout); -1 after answering 400. */
int api_request_deadline(struct api *a, struct http_request *req, uint64_t *deadline_ms);

/* proxy.c: forwards that wait on a leader that is no longer the one this node knows are
 * canceled: re-sent at once when safe (Idempotency-Key, CAS, reads), answered 503
 * leadership-lost otherwise, instead of waiting out the forward timeout on a leader that is
 * paused or cut off. Called once per loop iteration. */
void api_follow_leader(struct api *a);
/* proxy.c: run op->local here if we lead, else forward / redirect / wait for a leader. */
void api_dispatch_to_leader(struct api_op *op);
/* Polls for a (new) leader, then dispatches again; 503/504 when none comes in time. */
void api_wait_for_leader(struct api_op *op);
/* For ops that failed on this node with an unknown outcome after leadership moved. */
void api_retry_or_fail(struct api_op *op, int raft_status);
/* Answers 503 leadership-lost for an op whose earlier attempt may have been applied although
 * the latest one definitely was not (e.g. a re-sent CAS that meets its own change). */
void api_fail_maybe_applied(struct api_op *op);
/* A write raft refused (node_propose's answer, or its group commit's when it handed the
 * command to raft): nothing was appended, so this attempt cannot have been applied. */
void api_write_not_proposed(struct api_op *op, int rv);
/* On the leader: proposes the entry for op (cb with op in p->data once applied or failed);
 * answers itself when raft refuses it at once. The entry is copied. */
void api_propose(struct api_op *op, const struct buf *entry,
                 void (*cb)(struct node_propose *p, int status, void *result));
/* On the leader: confirms leadership with a read barrier proposed now, then calls
 * confirmed(op), which answers and releases it. An op answered meanwhile (shutdown) is
 * released; a leadership lost on the way sends it to the new leader (reads are safe to
 * retry); a barrier that cannot start is answered here. */
void api_read_barrier(struct api_op *op, void (*confirmed)(struct api_op *op));

/* Names this process incarnation for internal idempotency keys (random, never reused). */
#define API_INTERNAL_KEY_LEN 30
void api_name_incarnation(struct api *a);
/* The request headers a forwarded request carries (both single and batched forwarding);
 * returns how many were written to h (at most API_FORWARD_HEADERS). */
#define API_FORWARD_HEADERS 10
size_t api_forward_headers(struct api_op *op, struct fwd_header *h);

/* batch.c: forwarding writes to the leader in batches (follower side), and the leader's
 * POST /raft/forward that runs them. api_batch_forward takes the op like fwd_send would and
 * calls cb(response, op) exactly once, with the item's own response; false (and nothing
 * taken) for an op that is forwarded on its own: not a kv write, its own ?timeout, or
 * larger than a quarter of --max-body. */
bool api_batch_forward(struct api_op *op, const struct fsm_member *leader, fwd_cb cb);
/* Shutdown: answers queued ops through their callback with FWD_CANCELED. */
void api_batch_cancel(struct api *a);
/* Leadership moved to `leader`: queued writes (never sent) are dispatched again, batches in
 * flight to another leader are canceled (their ops see FWD_CANCELED with leader_moved). */
void api_batch_follow_leader(struct api *a, raft_id leader);
void api_route_forward_batch(struct api *a, struct http_request *req);

/* route files */
void api_route_kv(struct api *a, struct http_request *req, const char *key);
void api_route_kv_list(struct api *a, struct http_request *req);
void api_route_join(struct api *a, struct http_request *req);
void api_route_remove(struct api *a, struct http_request *req);
void api_route_transfer(struct api *a, struct http_request *req);
void api_route_status(struct api *a, struct http_request *req);
void api_route_health(struct api *a, struct http_request *req);
void api_route_metrics(struct api *a, struct http_request *req);
void api_route_agents(struct api *a, struct http_request *req, const char *rest);
void api_route_workloads(struct api *a, struct http_request *req, const char *rest);
void api_route_replicas(struct api *a, struct http_request *req);
void api_route_snapshot(struct api *a, struct http_request *req);

/* domain_ops.c: what every workload and agent route does. A write proposes `op_json` (taken)
 * and calls answer(op, fsm code, entry index) once applied, on the leader (followers
 * forward); a read renders on the leader after a barrier, or here with ?consistency=stale,
 * and with ?index= waits on `topic` first (blocking query). Both answer 400 themselves for
 * bad common parameters. */
void api_domain_write(struct api *a, struct http_request *req, json_t *op_json, const char *key,
                      void (*answer)(struct api_op *op, unsigned code, uint64_t index));
/* The same for an enrollment whose answer carries a new agent secret (agent_token, copied;
 * never part of the entry). */
void api_domain_write_token(struct api *a, struct http_request *req, json_t *op_json,
                            const char *key,
                            void (*answer)(struct api_op *op, unsigned code, uint64_t index),
                            const char *agent_token);
void api_domain_read(struct api *a, struct http_request *req, const char *key, const char *topic,
                     void (*render)(struct api_op *op));
/* Runs on the leader (no raft entry): heartbeats. body is the request body as the route
 * already parsed it (taken; op->dom_op, with its index in op->dom_index), so the leader does
 * not parse it again when it serves the request itself. */
void api_domain_leader_call(struct api *a, struct http_request *req, const char *key, json_t *body,
                            uint64_t index, void (*render)(struct api_op *op));
/* Answers op (a JSON value, taken) with the common headers, then releases it. */
void api_domain_respond(struct api_op *op, unsigned status, json_t *body);
/* The same with a JSON document already encoded (a malloc'd text of len bytes, taken). */
void api_domain_respond_text(struct api_op *op, unsigned status, char *text, size_t len);
void api_domain_problem(struct api_op *op, unsigned status, const char *slug, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The answer to a write that rendered a resource now gone: only a retried write (dom_replayed)
 * whose resource was deleted after its first attempt meets this. The first attempt's status
 * and index, with {key, index, exists: false}; 404 for anything else. */
void api_domain_gone(struct api_op *op, unsigned status, uint64_t index, const char *what);
/* ?limit and ?continue for domain listings; the token is bound to `listing`. -1 after
 * answering 400. start gets the key to resume at ("" = the first). */
int api_domain_page(struct http_request *req, const char *listing, unsigned *limit,
                    struct buf *start);
json_t *api_domain_token(const char *listing, const char *next_key);
void api_metrics_define(struct metrics *m);
/* The leadership gauges every scrape starts with, the removed mode's included (it has no
 * raft, hence the plain values). */
void api_metrics_write_leadership(struct buf *out, bool is_leader, bool has_leader, bool removed);

#endif
