/* snapshot_route: GET /v1/snapshot, a backup of the replicated state.
 *
 * The answer is the fsm image (fsm/snapshot.c: every record at one applied index, with a
 * checksum) that `cloudless-coordinator restore` (raft/offline.c) seeds a new cluster with,
 * with its index in X-Cloudless-Index and the digests of exactly that content:
 * X-Cloudless-State-Digest is the state_digest /raft/status?digest reports at that index,
 * X-Cloudless-Data-Digest the data_digest the cluster restored from it reports. Linearizable
 * by default: the leader serves it after a read barrier proposed after the request arrived,
 * so it holds every write acknowledged before (a follower forwards it, proxy.c); ?stale
 * (?consistency=stale) takes this node's own store as it is, on any node, with
 * X-Cloudless-Last-Contact.
 *
 * Pinning the RocksDB snapshot is cheap and happens on the loop between applies, so the image
 * is the state at exactly the applied index. Serialising it walks the whole store, so it runs
 * on a uv worker thread, reading the pinned snapshot while the loop goes on with raft; the
 * answer goes out from the loop when it is done, without another copy (http_respond_take).
 * One image is built at a time: requests arriving meanwhile wait in order (each image is
 * pinned when its turn comes, still after its request's barrier) until their ?timeout (504).
 * A build holds the node (node_hold), so a shutdown closes the store only after the worker is
 * done with it. */
#include <stdio.h>
#include <stdlib.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "api/decode.h"
#include "http/problem.h"
#include "log/log.h"
#include "util/clock.h"

struct snapshot_job {
	uv_work_t work;
	struct api_op *op;
	struct store_snap snap;
	uint64_t index;
	size_t reserve; /* the last raft snapshot's size: room for the image at once */
	struct buf image;
	struct fsm_digest digest;
	int rv;
	uint64_t ns;
};

static void start_next(struct api *a);

static void snapshot_problem(struct api_op *op, unsigned status, const char *slug,
                             const char *detail)
{
	api_common_headers(op->api, op->req);
	http_problem(op->req, status, slug, "%s", detail);
	op->req = NULL;
	api_op_release(op);
}

/* On a uv worker: only the pinned snapshot is read. */
static void build_work(uv_work_t *w)
{
	struct snapshot_job *job = w->data;
	uint64_t t0 = uv_hrtime();
	buf_init(&job->image);
	if (job->reserve > 0)
		buf_reserve(&job->image, job->reserve + job->reserve / 8);
	job->rv = fsm_snapshot_write(&job->snap, job->index, &job->image, &job->digest);
	job->ns = uv_hrtime() - t0;
}

static void respond(struct api_op *op, struct snapshot_job *job)
{
	struct http_request *req = op->req;
	char v[64];
	api_common_headers(op->api, req);
	if (api_parse_consistency(req) == 1)
		api_last_contact_header(op->api, req);
	snprintf(v, sizeof v, "%llu", (unsigned long long)job->index);
	http_response_header(req, CLOUDLESS_HDR_INDEX, v);
	snprintf(v, sizeof v, "%016llx", (unsigned long long)job->digest.state);
	http_response_header(req, CLOUDLESS_HDR_STATE_DIGEST, v);
	snprintf(v, sizeof v, "%016llx", (unsigned long long)job->digest.data);
	http_response_header(req, CLOUDLESS_HDR_DATA_DIGEST, v);
	snprintf(v, sizeof v, "attachment; filename=\"cloudless-snapshot-%llu.snap\"",
	         (unsigned long long)job->index);
	http_response_header(req, "Content-Disposition", v);
	size_t len;
	char *body = buf_detach(&job->image, &len);
	log_info("Backup snapshot served",
	         "index=%llu bytes=%zu records=%llu build_ms=%.1f peer=%s",
	         (unsigned long long)job->index, len, (unsigned long long)job->digest.state_keys,
	         (double)job->ns / 1e6, http_request_peer(req));
	http_respond_take(req, 200, "application/octet-stream", body, len);
	op->req = NULL;
	api_op_release(op);
}

static void build_done(uv_work_t *w, int status)
{
	struct snapshot_job *job = w->data;
	struct api_op *op = job->op;
	struct api *a = op->api;
	store_snap_release(&job->snap);
	a->snap_building = false;
	op->busy = false;
	if (op->req == NULL) {
		api_op_release(op); /* answered by shutdown or removal meanwhile */
	} else if (status != 0 || job->rv != 0) {
		log_error("Backup snapshot failed", "index=%llu", (unsigned long long)job->index);
		snapshot_problem(op, 500, "storage", "cannot read the store for the snapshot");
	} else {
		respond(op, job);
	}
	buf_close(&job->image);
	free(job);
	node_release(a->node); /* last: it may close the fsm (shutdown) */
	start_next(a);
}

/* Pins the store at its applied index and hands the image to a worker. */
static void build(struct api_op *op)
{
	struct api *a = op->api;
	struct node *n = a->node;
	struct snapshot_job *job = calloc(1, sizeof *job);
	if (job == NULL)
		abort();
	job->op = op;
	job->work.data = job;
	store_snap_take(&job->snap, &n->fsm.store);
	job->index = n->fsm.applied_index;
	job->reserve = n->fsm.snap_size;
	int rv = uv_queue_work(a->loop, &job->work, build_work, build_done);
	if (rv != 0) {
		store_snap_release(&job->snap);
		free(job);
		snapshot_problem(op, 500, "internal", "cannot start building the snapshot");
		return;
	}
	node_hold(n);
	a->snap_building = true;
	op->busy = true;
}

static void start_next(struct api *a)
{
	while (!a->snap_building && a->snap_head != NULL) {
		struct api_op *op = a->snap_head;
		a->snap_head = op->snap_next;
		if (a->snap_head == NULL)
			a->snap_tail = NULL;
		op->snap_next = NULL;
		op->busy = false;
		if (op->req == NULL || a->closing || a->removed) {
			api_op_release(op);
		} else if (clock_mono_ms() >= op->deadline_ms) {
			snapshot_problem(
			    op, 504, "timeout",
			    "the request deadline passed while waiting for the snapshot "
			    "being built before it");
		} else {
			build(op);
		}
	}
}

/* The barrier committed (or ?stale): the image is built in turn. Busy while it waits, so
 * shutdown answers it but leaves freeing it to start_next. */
static void enqueue(struct api_op *op)
{
	struct api *a = op->api;
	op->busy = true;
	op->snap_next = NULL;
	if (a->snap_tail != NULL)
		a->snap_tail->snap_next = op;
	else
		a->snap_head = op;
	a->snap_tail = op;
	start_next(a);
}

static void snapshot_local(struct api_op *op)
{
	api_read_barrier(op, enqueue);
}

void api_route_snapshot(struct api *a, struct http_request *req)
{
	uint64_t deadline;
	/* Operator-only once auth exists (issue 14): the image is the whole replicated state,
	 * so the authorisation check goes here, before any work and before forwarding. */
	int stale = api_parse_consistency(req);
	if (stale < 0 || api_request_deadline(a, req, &deadline) != 0)
		return;
	struct api_op *op = api_op_new(a, req, API_OP_READ);
	op->safe_to_retry = true;
	op->deadline_ms = deadline;
	op->local = snapshot_local;
	if (stale)
		enqueue(op);
	else
		api_dispatch_to_leader(op);
}
