/* compact: a fresh snapshot on the leader before a joiner far behind starts to sync.
 *
 * A new (or wiped) member starts with an empty log. libraft sends it the leader's log from
 * index 1 when that is still there, and a snapshot only when the entries it needs were
 * compacted away. Below --snapshot-threshold (131072 by default, config.c says why it is
 * that high) a joiner therefore replays up to that many entries one apply each, which for
 * 100k keys took twice as long as etcd's snapshot catch-up (docs/benchmarks.md). Replaying
 * more entries than --snapshot-trailing is exactly what a restarted follower is spared (it
 * gets a snapshot instead), so a join that would replay more than that makes the leader take
 * a snapshot first: the snapshot threshold drops to 1, a barrier entry gives raft an apply
 * after which it checks the threshold, and once the snapshot has started the threshold is
 * put back. When the snapshot is stored, raft has compacted the log below the trailing
 * entries, and the joiner receives that snapshot plus the few entries after it.
 *
 * Only the leader does this, only for a join (membership.c, STEP_COMPACT), and never two at
 * once: membership changes run one at a time. Every way out of a join puts the threshold
 * back (node_compact_stop from membership.c's finish). */
#include "raft/node.h"

#include "log/log.h"
#include "util/clock.h"

/* Entries a joiner would replay from the leader's log: from the snapshot on when the log
 * starts after index 1 (raft sends the snapshot then anyway), all of them otherwise. */
static raft_index replay_entries(const struct node *n)
{
	raft_index last = raft_last_index((struct raft *)&n->raft);
	raft_index snap = n->raft.log.snapshot.last_index;
	bool compacted = n->raft.log.offset > 0;
	return compacted && last > snap ? last - snap : compacted ? 0 : last;
}

bool node_compact_wanted(const struct node *n)
{
	raft_index trailing = n->opts.snapshot_trailing;
	raft_index last = raft_last_index((struct raft *)&n->raft);
	/* With the log no longer than the trailing entries, a snapshot compacts nothing below the
	 * joiner: it would get the whole log anyway. */
	return last > trailing && replay_entries(n) > trailing;
}

int node_compact_start(struct node *n, struct raft_barrier *req, raft_barrier_cb cb)
{
	if (!n->compact.forced) {
		n->compact.target = raft_last_index(&n->raft);
		n->compact.replay = replay_entries(n);
		n->compact.started_ms = clock_mono_ms();
		raft_set_snapshot_threshold(&n->raft, 1);
		n->compact.forced = true;
	}
	int rv = raft_barrier(&n->raft, req, cb);
	if (rv != 0)
		node_compact_stop(n);
	return rv;
}

enum node_compact_state node_compact_poll(struct node *n)
{
	const struct raft_snapshot *p = &n->raft.snapshot.pending;
	bool pending = p->term != 0;
	bool taken = n->raft.log.snapshot.last_index >= n->compact.target;
	/* One snapshot is enough: the threshold goes back as soon as one covering the target
	 * started. One that started earlier (for an older index) does not count. */
	if (taken || (pending && p->index >= n->compact.target))
		node_compact_stop(n);
	if (pending)
		return NODE_COMPACT_BUSY;
	if (!taken)
		return NODE_COMPACT_IDLE;
	log_info("Snapshot taken for a joiner; it installs it instead of replaying the log",
	         "snapshot_index=%llu entries_spared=%llu ms=%llu",
	         (unsigned long long)n->raft.log.snapshot.last_index,
	         (unsigned long long)n->compact.replay,
	         (unsigned long long)(clock_mono_ms() - n->compact.started_ms));
	return NODE_COMPACT_DONE;
}

void node_compact_stop(struct node *n)
{
	if (!n->compact.forced)
		return;
	n->compact.forced = false;
	raft_set_snapshot_threshold(&n->raft, n->opts.snapshot_threshold);
}
