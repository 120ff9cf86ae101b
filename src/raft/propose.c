/* propose: commands proposed during one loop iteration become one multi-entry raft_apply.
 *
 * libraft 0.15 replicates each raft_apply on its own: one AppendEntries message to every
 * follower, which reads it, persists it and answers it. Under load that per-message work (the
 * kernel's loopback TCP on three processes, a wake-up per message on each follower) was the
 * largest cost of a write. So node_propose only queues the command; once per loop iteration,
 * before the loop waits for I/O (the node's uv_prepare), everything queued goes to raft as one
 * raft_apply of many entries: one append, one message per follower.
 *
 * 0.15 reports a single result per raft_apply (the first entry's), so results do not come from
 * raft's callback: the fsm calls node_propose_applied for every entry it applies, and the
 * proposal waiting for that index (kept in index order) gets the entry's own result. That
 * entry is the proposal's only while we still lead in the term we proposed it in (a leader
 * never loses entries of its own term; a later leader may replace them): once that is no
 * longer so, every proposal still waiting fails with RAFT_LEADERSHIPLOST (outcome unknown,
 * exactly as raft itself fails pending requests when a leader steps down). raft's callback
 * only reports failure (leadership lost, shutdown), which fails the batch's proposals not
 * applied yet. A uv_idle handle keeps the loop from blocking while commands are queued,
 * whatever phase queued them. Everything here runs on the loop thread. */
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "raft/node.h"

/* Entries per raft_apply: enough for any burst a loop iteration sees, small enough that one
 * AppendEntries message stays a few hundred KiB. */
#define PROPOSE_BATCH_MAX 512

struct propose_batch {
	struct raft_apply req;
	struct node *node;
	raft_index first;
	unsigned count;
};

static void wake_cb(uv_idle_t *h)
{
	(void)h; /* only there so that the loop does not block; the flush runs in node's prepare */
}

void propose_init(struct node *n)
{
	uv_idle_init(n->loop, &n->props.wake);
	n->props.wake.data = n;
}

/* Appends p to a singly linked list kept with its tail. */
static void list_push(struct node_propose **head, struct node_propose **tail,
                      struct node_propose *p)
{
	p->next = NULL;
	if (*tail != NULL)
		(*tail)->next = p;
	else
		*head = p;
	*tail = p;
}

int node_propose(struct node *n, struct node_propose *p, const struct buf *cmd)
{
	if (n->closing)
		return RAFT_SHUTDOWN;
	/* What raft_apply itself would refuse, refused now, so that the caller can send the
	 * client elsewhere knowing nothing was proposed. */
	if (n->raft.state != RAFT_LEADER || n->raft.transfer != NULL)
		return RAFT_NOTLEADER;
	/* raft_uv pads entry data to 8 bytes on disk and when decoding AppendEntries, but sends
	 * our buffer as is: an entry whose length is not a multiple of 8 shifts every entry after
	 * it in the same message on followers. Pad it ourselves (the decoder skips the zeros). */
	p->buf.len = (cmd->len + 7) & ~(size_t)7;
	p->buf.base = raft_malloc(p->buf.len);
	if (p->buf.base == NULL)
		return RAFT_NOMEM;
	memcpy(p->buf.base, cmd->data, cmd->len);
	memset((char *)p->buf.base + cmd->len, 0, p->buf.len - cmd->len);
	p->start_ns = uv_hrtime();
	p->index = 0;
	if (n->props.queued == NULL)
		uv_idle_start(&n->props.wake, wake_cb);
	list_push(&n->props.queued, &n->props.queued_tail, p);
	return 0;
}

static struct node_propose *inflight_pop(struct node *n)
{
	struct node_propose *p = n->props.inflight;
	n->props.inflight = p->next;
	if (n->props.inflight == NULL)
		n->props.inflight_tail = NULL;
	return p;
}

/* Fails the in-flight proposals with indexes in [first, first + count): they are contiguous in
 * the index-ordered list. */
static void fail_range(struct node *n, raft_index first, unsigned count, int status)
{
	struct node_propose **pp = &n->props.inflight;
	struct node_propose *prev = NULL;
	while (*pp != NULL && (*pp)->index < first) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	while (*pp != NULL && (*pp)->index < first + count) {
		struct node_propose *p = *pp;
		*pp = p->next;
		if (n->props.inflight_tail == p)
			n->props.inflight_tail = prev;
		p->cb(p, status, NULL);
	}
}

static void batch_cb(struct raft_apply *req, int status, void *result)
{
	(void)result; /* the first entry's, already delivered by node_propose_applied */
	struct propose_batch *b = req->data;
	if (status != 0)
		fail_range(b->node, b->first, b->count, status);
	free(b);
}

/* Fails a list of proposals raft never took: their buffers are still ours, and index 0 tells
 * the callbacks that nothing was appended. */
static void fail_unproposed(struct node_propose *list, int status)
{
	while (list != NULL) {
		struct node_propose *p = list;
		list = p->next;
		raft_free(p->buf.base);
		p->cb(p, status, NULL);
	}
}

/* Takes up to PROPOSE_BATCH_MAX queued proposals off the queue and proposes them together. */
static void flush_some(struct node *n)
{
	struct raft_buffer bufs[PROPOSE_BATCH_MAX];
	struct node_propose *taken = n->props.queued;
	unsigned count = 0;
	struct node_propose *p = taken;
	struct node_propose *last = NULL;
	for (; p != NULL && count < PROPOSE_BATCH_MAX; p = p->next) {
		bufs[count++] = p->buf;
		last = p;
	}
	n->props.queued = p;
	if (p == NULL)
		n->props.queued_tail = NULL;
	last->next = NULL;

	struct propose_batch *b = calloc(1, sizeof *b);
	int rv = b == NULL ? RAFT_NOMEM : 0;
	if (rv == 0) {
		b->node = n;
		b->count = count;
		b->req.data = b;
		rv = raft_apply(&n->raft, &b->req, bufs, count, batch_cb);
	}
	if (rv != 0) {
		free(b);
		fail_unproposed(taken, rv); /* nothing was appended */
		return;
	}
	b->first = b->req.index;
	n->props.batches++;
	n->props.proposed += count;
	for (unsigned i = 0; taken != NULL; i++) {
		struct node_propose *q = taken;
		taken = q->next;
		q->index = b->first + i;
		q->term = n->raft.current_term;
		q->buf.base = NULL; /* raft's now */
		list_push(&n->props.inflight, &n->props.inflight_tail, q);
	}
}

/* True while the entry p was given is certainly p's: we still lead in the term we appended
 * it in. */
static bool still_ours(const struct node *n, const struct node_propose *p)
{
	return n->raft.state == RAFT_LEADER && n->raft.current_term == p->term;
}

static void fail_inflight(struct node *n, int status)
{
	while (n->props.inflight != NULL) {
		struct node_propose *p = inflight_pop(n);
		p->cb(p, status, NULL);
	}
}

void propose_flush(struct node *n)
{
	if (n->props.inflight != NULL && !still_ours(n, n->props.inflight))
		fail_inflight(n, RAFT_LEADERSHIPLOST);
	while (n->props.queued != NULL)
		flush_some(n);
	uv_idle_stop(&n->props.wake);
}

void node_propose_applied(struct node *n, raft_index index, void *result)
{
	struct node_propose *p = n->props.inflight;
	if (p == NULL)
		return;
	if (!still_ours(n, p)) {
		fail_inflight(n, RAFT_LEADERSHIPLOST);
		return;
	}
	/* Older ones cannot be waiting (entries apply in order, and each of ours is applied
	 * while we lead), but a proposal must never wait forever. */
	while (p != NULL && p->index < index) {
		inflight_pop(n);
		p->cb(p, RAFT_LEADERSHIPLOST, NULL);
		p = n->props.inflight;
	}
	if (p == NULL || p->index != index)
		return;
	inflight_pop(n);
	p->cb(p, 0, result);
}

void propose_close(struct node *n)
{
	struct node_propose *queued = n->props.queued;
	uv_idle_stop(&n->props.wake);
	n->props.queued = n->props.queued_tail = NULL;
	fail_unproposed(queued, RAFT_SHUTDOWN);
	fail_inflight(n, RAFT_SHUTDOWN);
}
