/* watch: the node's 5 ms look at raft's state (libraft 0.15 has no state-change callback).
 *
 * Each tick notices elections (logs "Became leader" / "Lost leadership", counts leader
 * changes), makes a new leader commit a barrier before it serves reads and then record what
 * the replicated state must say about it (its member record with its incarnation, the
 * cluster id, the records of the other founders of a --bootstrap-expect cluster), fails the
 * node when raft or the store can no longer make progress, notices that this node was
 * removed, and has a follower re-announce itself when the replicated record of it is out of
 * date (a new HTTP address, an incarnation the record lacks). Everything runs on the loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/command.h"
#include "log/log.h"
#include "raft/node.h"
#include "util/clock.h"

/* How often the watch timer samples raft state. Small enough that a leadership change is
 * noticed well inside a heartbeat, cheap enough (a few field reads) to not matter. */
#define WATCH_INTERVAL_MS 5
/* How long a follower may hold received entries that it has not persisted, without its
 * persisted index moving at all, before we take its log writes to be stuck (see watch_cb). */
#define STUCK_APPEND_MS 10000

/* ---- what a new leader records ---- */

static void record_cb(struct node_propose *p, int status, void *result)
{
	(void)result;
	if (status != 0)
		log_warn("Recording cluster metadata failed", "status=%s", raft_strerror(status));
	free(p);
}

static void propose_record(struct node *n, const struct command *c)
{
	struct buf b;
	buf_init(&b);
	command_encode(c, &b);
	struct node_propose *p = calloc(1, sizeof *p);
	if (p == NULL)
		abort();
	p->cb = record_cb;
	if (node_propose(n, p, &b) != 0)
		free(p);
	buf_close(&b);
}

static bool record_matches(const struct fsm_member *m, raft_id id, const char *raft_addr,
                           const char *http_addr, const char *incarnation)
{
	return m != NULL && m->raft_id == id && strcmp(m->raft_addr, raft_addr) == 0 &&
	       strcmp(m->http_addr, http_addr) == 0 && strcmp(m->incarnation, incarnation) == 0;
}

static void propose_member_record(struct node *n, const char *node_id, const char *raft_addr,
                                  const char *http_addr, const char *incarnation)
{
	struct command c = {.type = COMMAND_MEMBER_PUT, .raft_id = node_raft_id(node_id)};
	c.node_id = (struct command_str){node_id, strlen(node_id)};
	c.raft_addr = (struct command_str){raft_addr, strlen(raft_addr)};
	c.http_addr = (struct command_str){http_addr, strlen(http_addr)};
	c.incarnation = (struct command_str){incarnation, strlen(incarnation)};
	propose_record(n, &c);
}

static void propose_member_delete(struct node *n, const struct fsm_member *m)
{
	struct command c = {.type = COMMAND_MEMBER_DEL, .raft_id = m->raft_id};
	c.node_id = (struct command_str){m->node_id, strlen(m->node_id)};
	log_info("Dropping the record of a node outside the configuration",
	         "node_id=%s raft_addr=%s", m->node_id, m->raft_addr);
	propose_record(n, &c);
}

/* A record whose node is not in the configuration is a leftover: a removal whose leader
 * lost leadership between raft_remove and the record's deletion, a join that failed between
 * the two the other way round, or - after `cloudless-coordinator recover` (raft/offline.c)
 * - every member but this one. Left there, followers would forward to and removal checks
 * ask nodes that are not members, and status would disagree with itself. A change that is
 * running or queued here writes its own subject's record, so that one is left to it. */
static void drop_stale_records(struct node *n)
{
	node_refresh_members(n);
	for (unsigned i = 0; i < n->n_members; i++) {
		const struct fsm_member *m = &n->members[i];
		if (node_server_index(n, m->raft_id) < 0 && !membership_changing(n, m->node_id))
			propose_member_delete(n, m);
	}
}

/* Our own record (HTTP address, incarnation) must be in the replicated member table for
 * followers to forward to us and for status to name us; the cluster id must be recorded
 * once (the first leader of a cluster, or of one from before cluster ids); the other
 * founders of a --bootstrap-expect cluster never joined, so their records come from the
 * founders list the bootstrap kept; and records of nodes outside the configuration go. */
static void ensure_records(struct node *n)
{
	drop_stale_records(n);
	if (!record_matches(node_member_by_node_id(n, n->opts.node_id), n->id, n->opts.raft_addr,
	                    n->opts.http_addr, n->ident.incarnation))
		propose_member_record(n, n->opts.node_id, n->opts.raft_addr, n->opts.http_addr,
		                      n->ident.incarnation);
	char replicated[COMMAND_MAX_INCARNATION + 1];
	if (fsm_cluster_id(&n->fsm, replicated, sizeof replicated) == 1) {
		if (n->ident.cluster_id[0] == '\0' && identity_random_hex(n->ident.cluster_id) != 0)
			log_error("Cannot draw a random cluster id", "node_id=%s", n->opts.node_id);
		struct command c = {.type = COMMAND_CLUSTER_SET};
		c.cluster_id =
		    (struct command_str){n->ident.cluster_id, strlen(n->ident.cluster_id)};
		if (c.cluster_id.len > 0)
			propose_record(n, &c);
	}
	for (unsigned i = 0; i < n->ident.n_founders; i++) {
		const struct identity_founder *f = &n->ident.founders[i];
		if (strcmp(f->node_id, n->opts.node_id) == 0 ||
		    node_server_index(n, node_raft_id(f->node_id)) < 0 ||
		    node_member_by_node_id(n, f->node_id) != NULL)
			continue;
		propose_member_record(n, f->node_id, f->raft_addr, f->http_addr, f->incarnation);
	}
}

static void ready_barrier_cb(struct raft_barrier *req, int status)
{
	struct node *n = req->data;
	n->ready_barrier_active = false;
	if (status != 0 || n->closing)
		return;
	if (n->raft.state == RAFT_LEADER && n->raft.current_term == n->leader_term) {
		n->leader_ready = true;
		ensure_records(n);
	}
}

/* 0.15 appends no entry when a leader is elected: commit a barrier in our term before
 * serving reads, which also settles entries from earlier terms (the "Figure 8" hazard). */
static void start_ready_barrier(struct node *n)
{
	if (n->ready_barrier_active)
		return;
	n->ready_barrier.data = n;
	int rv = raft_barrier(&n->raft, &n->ready_barrier, ready_barrier_cb);
	if (rv == 0)
		n->ready_barrier_active = true;
	else
		log_warn("Leader barrier failed", "error=%s", raft_strerror(rv));
}

static void on_state_change(struct node *n, int old, int state)
{
	if (state == RAFT_LEADER) {
		n->leader_term = n->raft.current_term;
		n->leader_ready = false;
		peers_leader_reset(n);
		log_info("Became leader", "node_id=%s term=%llu", n->opts.node_id,
		         (unsigned long long)n->raft.current_term);
		start_ready_barrier(n);
	} else if (old == RAFT_LEADER) {
		n->leader_ready = false;
		log_info("Lost leadership", "node_id=%s term=%llu state=%s", n->opts.node_id,
		         (unsigned long long)n->raft.current_term, node_state_name(n));
		reads_fail_all(n, RAFT_LEADERSHIPLOST);
		membership_fail_all(n, 503, "leadership lost during the change");
	}
}

static void on_leader_change(struct node *n, raft_id leader)
{
	if (leader != 0) {
		n->leader_changes++;
		n->leader_since_ms = clock_mono_ms();
		const struct fsm_member *m = node_member_by_raft_id(n, leader);
		log_info("Leader detected", "node_id=%s leader_id=%s term=%llu", n->opts.node_id,
		         m ? m->node_id : "?", (unsigned long long)n->raft.current_term);
	} else {
		n->no_leader_since_ms = clock_mono_ms();
	}
}

/* The replicated cluster id is the truth; a data dir from before cluster ids (or a node
 * that joined before the first leader recorded one) learns it here. */
static void adopt_cluster_id(struct node *n)
{
	char cur[COMMAND_MAX_INCARNATION + 1], err[256];
	if (n->fsm.members_version == n->cluster_id_version)
		return;
	n->cluster_id_version = n->fsm.members_version;
	if (fsm_cluster_id(&n->fsm, cur, sizeof cur) != 0 || !identity_valid_hex(cur) ||
	    strcmp(cur, n->ident.cluster_id) == 0)
		return;
	if (n->ident.cluster_id[0] != '\0')
		log_error("This data dir names another cluster than the replicated state",
		          "node_id=%s data_dir_cluster_id=%s replicated_cluster_id=%s",
		          n->opts.node_id, n->ident.cluster_id, cur);
	snprintf(n->ident.cluster_id, sizeof n->ident.cluster_id, "%.*s", IDENTITY_HEX_LEN, cur);
	if (identity_save(&n->ident, n->opts.data_dir, err, sizeof err) != 0)
		log_error("Cannot record the cluster id", "error=\"%s\"", err);
}

/* A follower whose replicated record is out of date (restarted with a new --http-addr, or
 * the record predates incarnations) re-announces itself: otherwise only its own leadership
 * would ever correct it, and followers would keep forwarding to an old address. Only while
 * we are a voter or standby in the configuration: a joining node does this by joining. */
static void maybe_update_own_entry(struct node *n, uint64_t now)
{
	/* A new leader records what it knows first (ensure_records): give it a moment. */
	if (n->autojoin.active || n->autojoin.refused || now < n->autojoin.next_update_ms ||
	    node_server_index(n, n->id) < 0 ||
	    now - n->leader_since_ms < 4 * (uint64_t)n->opts.election_ms)
		return;
	node_refresh_members(n);
	if (record_matches(node_member_by_node_id(n, n->opts.node_id), n->id, n->opts.raft_addr,
	                   n->opts.http_addr, n->ident.incarnation))
		return;
	log_info("This node's replicated record is out of date; updating it",
	         "node_id=%s raft_addr=%s http_addr=%s", n->opts.node_id, n->opts.raft_addr,
	         n->opts.http_addr);
	n->autojoin.next_update_ms = now + 5000;
	autojoin_start(n, true);
}

static void watch_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	int state = n->raft.state;
	raft_id leader = 0;
	const char *addr;
	if (n->closing)
		return;
	raft_leader(&n->raft, &leader, &addr);
	if (state != n->last_state) {
		int old = n->last_state;
		n->last_state = state;
		on_state_change(n, old, state);
	}
	if (leader != n->last_leader) {
		n->last_leader = leader;
		on_leader_change(n, leader);
	}
	uint64_t now = clock_mono_ms();
	if (state == RAFT_LEADER) {
		if (!n->leader_ready && !n->ready_barrier_active)
			start_ready_barrier(n);
	}
	/* libraft 0.15 makes a node UNAVAILABLE for good when it cannot handle a message or a
	 * tick (a failed disk write or apply, e.g. on a full disk) and never leaves that state,
	 * while the process would go on looking alive. A restart reloads raft's state and the
	 * store from disk and recovers, so say why and leave with a failure status. */
	if (state == RAFT_UNAVAILABLE && !n->failed) {
		log_error("Raft stopped after an I/O error; exiting so that a restart recovers",
		          "node_id=%s error=\"%s\"", n->opts.node_id, raft_errmsg(&n->raft));
		node_fail(n, 1);
		return;
	}
	/* The same for a store write that failed: the fsm stopped taking writes (fsm.c). */
	if (n->fsm.failed && !n->failed) {
		log_error("Store write failed; exiting so that a restart recovers",
		          "node_id=%s applied_index=%llu", n->opts.node_id,
		          (unsigned long long)n->fsm.applied_index);
		node_fail(n, 1);
		return;
	}
	/* Also 0.15: when writing received entries fails (disk full), a follower keeps them in
	 * its in-memory log and never writes them again; the leader's retransmissions look
	 * already present, so it stays behind for good without noticing. Entries normally reach
	 * the disk in milliseconds: when the persisted index has not moved for STUCK_APPEND_MS
	 * with entries waiting, leave the same way (a restart reloads the log from disk and the
	 * leader sends the rest). A gap between two ticks (we were stopped or starved) restarts
	 * the count rather than counting as a stuck disk. */
	raft_index stored = n->raft.last_stored;
	if (state != RAFT_FOLLOWER || stored >= raft_last_index(&n->raft) ||
	    stored != n->unstored_at || now - n->last_watch_ms > 1000) {
		n->unstored_at = stored;
		n->unstored_since_ms = now;
	} else if (now - n->unstored_since_ms > STUCK_APPEND_MS && !n->failed) {
		log_error("Raft log writes are stuck; exiting so that a restart recovers",
		          "node_id=%s persisted_index=%llu last_index=%llu waited_ms=%llu",
		          n->opts.node_id, (unsigned long long)stored,
		          (unsigned long long)raft_last_index(&n->raft),
		          (unsigned long long)(now - n->unstored_since_ms));
		node_fail(n, 1);
		return;
	}
	n->last_watch_ms = now;
	/* A committed configuration that no longer lists us, received before the leader stopped
	 * replicating to us, means we were removed. "No longer": a joining node first installs a
	 * snapshot whose configuration predates its own admission, which is not a removal; and a
	 * node that re-announces itself at a new address passes through a configuration without
	 * its old entry on the way to one with the new one (autojoin active meanwhile). */
	if (node_server_index(n, n->id) >= 0)
		n->listed = true;
	if (!n->removed && n->listed && !n->autojoin.active && n->raft.configuration.n > 0 &&
	    node_server_index(n, n->id) < 0 && n->raft.configuration_uncommitted_index == 0 &&
	    state != RAFT_LEADER) {
		node_mark_removed(n, "the committed configuration no longer lists this node");
		return;
	}
	/* A node removed from the configuration is never told (0.15); once it has gone a while
	 * without a leader, ask the peers whether we are still a member. */
	if (leader == 0 && !n->autojoin.active && node_server_index(n, n->id) >= 0 &&
	    now - n->no_leader_since_ms > 3 * (uint64_t)n->opts.election_ms)
		membership_check_removed(n, false);
	adopt_cluster_id(n);
	if (state == RAFT_FOLLOWER && leader != 0) {
		maybe_update_own_entry(n, now);
		tolerance_poll(n);
	}
}

void node_watch_start(struct node *n)
{
	uv_timer_start(&n->watch, watch_cb, WATCH_INTERVAL_MS, WATCH_INTERVAL_MS);
}
