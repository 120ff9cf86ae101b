/* reads: the linearizable-read gate.
 *
 * libraft 0.15 has no ReadIndex or lease reads, so a leader proves it still leads by
 * committing a barrier entry: once a barrier proposed after a read arrived is applied, the
 * store reflects every write acknowledged before that read, and a quorum has just confirmed
 * our term. Reads that arrive while a barrier is in flight wait for the next one (the one in
 * flight may have been proposed before they arrived), so a burst of reads costs at most two
 * barriers, not one each. */
#include "raft/node.h"

#include "log/log.h"

static void fail_list(struct node_read *r, int status)
{
	while (r != NULL) {
		struct node_read *next = r->next;
		r->cb(r, status);
		r = next;
	}
}

static void barrier_cb(struct raft_barrier *req, int status);

static void start_barrier(struct node *n)
{
	n->reads.inflight = n->reads.waiting;
	n->reads.waiting = NULL;
	n->reads.barrier.data = n;
	int rv = raft_barrier(&n->raft, &n->reads.barrier, barrier_cb);
	if (rv != 0) {
		struct node_read *failed = n->reads.inflight;
		n->reads.inflight = NULL;
		fail_list(failed, rv);
		return;
	}
	n->reads.barrier_active = true;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	struct node *n = req->data;
	struct node_read *done = n->reads.inflight;
	n->reads.inflight = NULL;
	n->reads.barrier_active = false;
	if (status == 0 && !node_is_leader(n))
		status = RAFT_LEADERSHIPLOST;
	while (done != NULL) {
		struct node_read *next = done->next;
		done->cb(done, status);
		done = next;
	}
	if (n->reads.waiting != NULL && !n->closing) {
		/* A failed barrier means leadership is going: libraft fails a stepping-down
		 * leader's requests from inside its conversion to follower, while raft.state still
		 * says RAFT_LEADER but the leader state is already freed, so a barrier proposed
		 * from here crashes. Fail the reads that waited too; the api retries them on the
		 * new leader. */
		if (status == 0 && node_is_leader(n))
			start_barrier(n);
		else
			reads_fail_all(n, status != 0 ? status : RAFT_NOTLEADER);
	}
}

int node_read_barrier(struct node *n, struct node_read *r)
{
	if (n->closing)
		return RAFT_SHUTDOWN;
	if (!node_is_leader(n))
		return RAFT_NOTLEADER;
	r->next = n->reads.waiting;
	n->reads.waiting = r;
	if (!n->reads.barrier_active)
		start_barrier(n);
	return 0;
}

void reads_fail_all(struct node *n, int status)
{
	struct node_read *a = n->reads.waiting, *b = n->reads.inflight;
	n->reads.waiting = NULL;
	n->reads.inflight = NULL;
	fail_list(a, status);
	fail_list(b, status);
}

void reads_close(struct node *n)
{
	reads_fail_all(n, RAFT_SHUTDOWN);
}
