/* peers: what raft's own messages say about the other servers.
 *
 * libraft 0.15 keeps a match index per follower that never goes down, marks a follower
 * "recently heard from" on any answer (a rejection included) and ignores rejections at or
 * below the match index. So a voter that lost its data dir and came back empty under the same
 * address looks, to the leader, caught up forever: it answers every heartbeat (with a
 * rejection), and its lag reads 0. The cluster has silently lost a voter, and every signal
 * says all is well.
 *
 * raft_uv hands every decoded message to raft through the receive callback raft gave its
 * io->start. We put our own callback in between (io->start is wrapped once, before raft
 * starts): it looks at each message, records what it says, and passes it on unchanged, on
 * the loop thread, before raft sees it. Recorded per server id:
 *   - when anything last arrived from it (reachability, as recent_recv was used before);
 *   - on the leader, when it last accepted an AppendEntries and which index it then had;
 *     an answer whose last index is below the match index raft holds for it means it has
 *     forgotten entries it acknowledged (its effective match is then what it reports);
 *   - on a follower, the leader's commit index as the leader sends it, so a node can tell
 *     how far behind the leader's commit it really is (its own commit index only covers the
 *     entries it has).
 * Nothing here changes what raft does. */
#include <string.h>

#include "raft/node.h"
#include "util/clock.h"

static struct node_peer *peer_slot(struct node *n, raft_id id, bool create)
{
	struct node_peers *p = &n->peers;
	for (unsigned i = 0; i < p->n; i++)
		if (p->v[i].id == id)
			return &p->v[i];
	if (!create || p->n == NODE_MAX_PEERS)
		return NULL;
	struct node_peer *v = &p->v[p->n++];
	memset(v, 0, sizeof *v);
	v->id = id;
	return v;
}

static void observe_append_result(struct node *n, struct node_peer *v, uint64_t now,
                                  const struct raft_append_entries_result *res)
{
	if (n->raft.state != RAFT_LEADER || res->term != n->raft.current_term)
		return;
	int i = node_server_index(n, v->id);
	if (i < 0)
		return;
	raft_index match = n->raft.leader_state.progress[i].match_index;
	v->reported_last = res->last_log_index;
	v->last_answer_ms = now;
	if (res->rejected == 0) {
		v->last_ok_ms = now;
		v->lost_data = false;
	} else if (res->last_log_index < match) {
		/* It acknowledged entries up to `match` and now has fewer: its log is gone. */
		v->lost_data = true;
	}
}

static void recv_cb(struct raft_io *io, struct raft_message *m)
{
	struct raft *r = io->data;
	struct node *n = r->data;
	uint64_t now = clock_mono_ms();
	struct node_peer *v = peer_slot(n, m->server_id, true);
	if (v != NULL) {
		v->last_recv_ms = now;
		if (m->type == RAFT_IO_APPEND_ENTRIES_RESULT)
			observe_append_result(n, v, now, &m->append_entries_result);
	}
	if (m->type == RAFT_IO_APPEND_ENTRIES && m->append_entries.term >= r->current_term &&
	    m->append_entries.leader_commit > n->peers.leader_commit)
		n->peers.leader_commit = m->append_entries.leader_commit;
	n->peers.raft_recv(io, m);
}

static int start_cb(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
	struct raft *r = io->data;
	struct node *n = r->data;
	n->peers.raft_recv = recv;
	return n->peers.io_start(io, msecs, tick, recv_cb);
}

void peers_init(struct node *n)
{
	memset(&n->peers, 0, sizeof n->peers);
	n->peers.io_start = n->io.start;
	n->io.start = start_cb;
}

void peers_leader_reset(struct node *n)
{
	for (unsigned i = 0; i < n->peers.n; i++) {
		struct node_peer *v = &n->peers.v[i];
		v->last_ok_ms = v->last_answer_ms = 0;
		v->reported_last = 0;
		v->lost_data = false;
	}
}

uint64_t peers_last_recv_ms(struct node *n, raft_id id)
{
	struct node_peer *v = peer_slot(n, id, false);
	return v != NULL ? v->last_recv_ms : 0;
}

raft_index peers_confirmed_match(struct node *n, unsigned i)
{
	const struct raft_server *s = &n->raft.configuration.servers[i];
	raft_index last = raft_last_index(&n->raft);
	if (s->id == n->id)
		return last;
	if (n->raft.state != RAFT_LEADER)
		return 0;
	raft_index match = n->raft.leader_state.progress[i].match_index;
	struct node_peer *v = peer_slot(n, s->id, false);
	uint64_t window = 2 * (uint64_t)n->opts.election_ms;
	uint64_t now = clock_mono_ms();
	if (v == NULL || v->last_answer_ms == 0 || v->last_answer_ms + window < now)
		return 0; /* it has not answered lately: nothing is confirmed */
	if (v->lost_data)
		return v->reported_last < match ? v->reported_last : match;
	if (v->last_ok_ms + window < now)
		return 0; /* it answers, but only with rejections */
	return match;
}

bool peers_lost_data(struct node *n, raft_id id)
{
	struct node_peer *v = peer_slot(n, id, false);
	return v != NULL && v->lost_data;
}

raft_index peers_leader_commit(const struct node *n)
{
	return n->peers.leader_commit;
}
