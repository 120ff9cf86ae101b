/* tolerance: how many voters are healthy, and how many more may fail before the cluster
 * loses its quorum.
 *
 * Only the leader can know: it is the one that hears from every voter. A voter counts as
 * healthy when it accepted our appends within two election timeouts and trails our log by at
 * most --health-max-lag entries (peers.c's confirmed match: a voter that lost its data, or
 * only answers with rejections, is not healthy however often it answers). The leader counts
 * itself.
 *
 * A follower asks the leader once a second (GET /raft/status, which reports these figures)
 * and reports what it was told while that answer is fresh. Without a fresh answer it counts
 * only what it can confirm itself: itself when caught up with the leader's commit index, and
 * the leader when it heard from it within two election timeouts; that is never more than
 * the truth. So every node reports the leader's figure while it is in touch with the leader,
 * and a node cut off from it reports less (0 for a lone survivor). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "log/log.h"
#include "raft/node.h"
#include "util/clock.h"

#define POLL_EVERY_MS 1000
#define FRESH_MS      3000

static unsigned quorum_of(unsigned voters)
{
	return voters / 2 + 1;
}

unsigned node_acking_voters(struct node *n, raft_id exclude)
{
	unsigned count = 0;
	if (n->raft.state != RAFT_LEADER)
		return 0;
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		const struct raft_server *s = &n->raft.configuration.servers[i];
		if (s->role == RAFT_VOTER && s->id != exclude &&
		    (s->id == n->id || peers_confirmed_match(n, i) > 0))
			count++;
	}
	return count;
}

static unsigned leader_healthy(struct node *n)
{
	raft_index last = raft_last_index(&n->raft);
	unsigned count = 0;
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		const struct raft_server *s = &n->raft.configuration.servers[i];
		if (s->role != RAFT_VOTER)
			continue;
		raft_index m = peers_confirmed_match(n, i);
		if (s->id == n->id || (m > 0 && last - m <= n->opts.health_max_lag))
			count++;
	}
	return count;
}

/* What a follower can confirm on its own. */
static unsigned local_healthy(struct node *n)
{
	unsigned count = 0;
	raft_index commit = peers_leader_commit(n);
	raft_index applied = node_applied_index(n);
	int self = node_server_index(n, n->id);
	if (self >= 0 && n->raft.configuration.servers[self].role == RAFT_VOTER && commit > 0 &&
	    (applied >= commit || commit - applied <= n->opts.health_max_lag))
		count++;
	uint64_t lc = node_last_contact_ms(n);
	if (lc != UINT64_MAX && lc <= 2 * (uint64_t)n->opts.election_ms)
		count++;
	return count;
}

unsigned node_healthy_voters(struct node *n)
{
	if (n->raft.state == RAFT_LEADER)
		return leader_healthy(n);
	if (n->leader_view_ms != 0 && n->leader_view_ms + FRESH_MS >= clock_mono_ms() &&
	    node_last_contact_ms(n) <= 2 * (uint64_t)n->opts.election_ms)
		return n->leader_healthy_voters;
	return local_healthy(n);
}

int node_failure_tolerance(struct node *n)
{
	int t = (int)node_healthy_voters(n) - (int)quorum_of(node_voters(n));
	return t < 0 ? 0 : t;
}

static void view_reply(const struct fwd_response *r, void *arg)
{
	struct node *n = arg;
	n->leader_view_pending = false;
	if (n->closing || r->result != FWD_OK || r->status != 200)
		return;
	json_error_t jerr;
	json_t *o = json_loadb(r->body, r->body_len, 0, &jerr);
	const char *state = json_string_value(json_object_get(o, "state"));
	json_t *healthy = json_object_get(o, "healthy_voters");
	if (state != NULL && strcmp(state, "leader") == 0 && json_is_integer(healthy)) {
		n->leader_healthy_voters = (unsigned)json_integer_value(healthy);
		n->leader_view_ms = clock_mono_ms();
	}
	json_decref(o);
}

void tolerance_poll(struct node *n)
{
	uint64_t now = clock_mono_ms();
	const struct fsm_member *m = NULL;
	if (n->leader_view_pending || now - n->leader_view_asked_ms < POLL_EVERY_MS ||
	    !node_leader(n, &m, NULL, NULL) || m == NULL || m->http_addr[0] == '\0')
		return;
	struct node_peer_get g;
	node_peer_status_get(n, m->http_addr, 1000, &g);
	n->leader_view_asked_ms = now;
	if (fwd_send(n->fwd, &g.req, view_reply, n) == 0)
		n->leader_view_pending = true;
}
