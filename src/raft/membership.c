/* membership: join, remove and leadership transfer, one configuration change at a time.
 *
 * Changes queue on the leader and run strictly in order as small state machines driven by
 * raft callbacks and a polling timer. A join adds the node as a spare, makes it a standby so
 * it receives the log (or a snapshot), waits until it has caught up, and only then promotes
 * it to voter, so a new empty node never weakens the quorum while it syncs. A spare or
 * standby that makes no catch-up progress for --catch-up-timeout-ms is removed again, and the
 * join's answer says so.
 *
 * Replacing an entry removes the old one first:
 *   - the same id with another incarnation (raft/identity.h): the member lost its data dir.
 *     It must not vote again before it has caught up, since it forgot entries it
 *     acknowledged, so it goes through the spare/standby path like a new node;
 *   - the same id and incarnation on a new raft address: the node moved (or was restarted
 *     with a new --raft-addr) and announces itself (autojoin.c's update mode);
 *   - another id on a raft address in use: allowed only when the member there is dead (it
 *     has not answered within an election timeout); a live one is never replaced by a typo
 *     of a port number, the join gets 409 naming it.
 * Any change that would leave fewer voters accepting appends than the new quorum is refused
 * with 409 instead of being attempted. A join whose cluster id differs from ours is refused.
 *
 * Every change has a start deadline (the request's ?timeout): one still queued then is
 * dropped and answered 504 "not applied"; one that started is answered with its outcome. At
 * most MAX_QUEUED wait behind the running one; more get 409 at once.
 *
 * Also here: how a removed node notices. 0.15 never tells it. The leader tells it once (POST
 * /raft/removed to its HTTP address, which makes it check at once); otherwise it notices a
 * committed configuration without itself, or, when it stops hearing from a leader, asks its
 * peers for /raft/status; it then stops serving (node_mark_removed). */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/command.h"
#include "log/log.h"
#include "raft/node.h"
#include "util/clock.h"

#define MAX_QUEUED             4 /* waiting behind the running change */
#define CATCHUP_POLL_MS        10
#define CATCHUP_SLACK          16 /* entries a standby may trail by and still be promoted */
#define RETRY_MS               20
#define REMOVAL_CHECK_EVERY_MS 1000
#define NOTIFY_TIMEOUT_MS      2000

/* A change advances with step++ when a raft callback completes, so each kind's steps must be
 * consecutive and its last step must be followed by a step its handler treats as done.
 * STEP_TRANSFER is only ever entered directly (and its callback finishes the change), so it
 * sits before the removal steps: after it, STEP_FORGET's step++ would run a transfer to the
 * node just removed and answer 409 for a removal that succeeded. */
enum step {
	STEP_START,
	STEP_REMOVE_OLD,
	STEP_FORGET_OLD,
	STEP_META,
	STEP_COMPACT, /* a snapshot first when the joiner would replay a long log (compact.c) */
	STEP_COMPACT_WAIT,
	STEP_ADD,
	STEP_STANDBY,
	STEP_CATCHUP,
	STEP_PROMOTE,
	STEP_TRANSFER,
	STEP_REMOVE,
	STEP_FORGET,
	STEP_REMOVED,
	STEP_DROP, /* a joiner that did not catch up: its entry goes again */
	STEP_DROP_FORGET,
	STEP_DROPPED,
	STEP_DONE,
};

static void run(struct node *n);
static void timer_cb(uv_timer_t *t);
static void retry_later(struct node *n, unsigned ms);

static void finish(struct node *n, struct node_change *c, unsigned status, bool changed,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static const char *default_slug(unsigned status)
{
	switch (status) {
	case 200:
		return NULL;
	case 404:
		return "unknown-node";
	case 409:
		return "conflict";
	case 504:
		return "not-applied";
	default:
		return "membership";
	}
}

static void notify_removed(struct node *n, const char *node_id, const char *http_addr);

static void finish(struct node *n, struct node_change *c, unsigned status, bool changed,
                   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof c->message, fmt, ap);
	va_end(ap);
	if (c->slug == NULL)
		c->slug = default_slug(status);
	c->http_status = status;
	c->changed = changed;
	c->step = STEP_DONE;
	node_compact_stop(n);
	if (n->mship.head == c) {
		n->mship.head = c->next;
		if (n->mship.head == NULL)
			n->mship.tail = NULL;
		n->mship.queued--;
		uv_timer_stop(&n->mship.timer);
	}
	if (status == 200 && changed && c->notify_http[0] != '\0')
		notify_removed(n, c->notify_id, c->notify_http);
	c->cb(c);
	/* Start the next change from the loop, not from here: finish() also runs inside raft
	 * callbacks, and libraft fails a stepping-down leader's requests from inside its
	 * conversion to follower, while raft.state still says RAFT_LEADER but the leader state is
	 * already freed; a change started then would crash in raft. */
	if (n->mship.head != NULL && !n->closing)
		uv_timer_start(&n->mship.timer, timer_cb, 0, 0);
}

/* Raft statuses that only mean "not the leader (any more)". */
static bool leadership_moved(int status)
{
	return status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER;
}

static unsigned quorum(unsigned voters)
{
	return voters / 2 + 1;
}

static struct raft_server *server_at(struct node *n, raft_id id)
{
	int i = node_server_index(n, id);
	return i < 0 ? NULL : &n->raft.configuration.servers[i];
}

static raft_id server_with_addr(struct node *n, const char *addr, raft_id except)
{
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		struct raft_server *s = &n->raft.configuration.servers[i];
		if (s->id != except && strcmp(s->address, addr) == 0)
			return s->id;
	}
	return 0;
}

/* Would the cluster still reach a quorum after removing `gone` (0 = none) and adding a
 * voter that is known to be reachable (`adding`)? Only voters that accept our appends count:
 * one that answers with rejections only (it lost its data) cannot help commit anything. */
static bool quorum_safe(struct node *n, raft_id gone, bool adding)
{
	struct raft_server *s = gone ? server_at(n, gone) : NULL;
	unsigned voters = node_voters(n);
	if (s != NULL && s->role == RAFT_VOTER)
		voters--;
	if (adding)
		voters++;
	unsigned reachable = node_acking_voters(n, gone) + (adding ? 1 : 0);
	return voters > 0 && reachable >= quorum(voters);
}

/* A leader elected less than an election timeout ago may not have heard from every voter
 * yet (a follower's match index counts from its first answer in this term): a quorum check
 * that fails then is asked again shortly instead of refusing a change that is safe. This is
 * what a removal of the old leader meets: it hands leadership over, and the removal is sent
 * again to the new leader at once. True when the caller should wait and retry. */
static bool quorum_not_known_yet(struct node *n)
{
	if (clock_mono_ms() - n->leader_since_ms >= n->opts.election_ms)
		return false;
	retry_later(n, RETRY_MS);
	return true;
}

/* A raft callback of the running change came back: on to the next step, or 503 (to be retried
 * on the new leader when leadership moved). */
static void step_done(struct node_change *c, int status, const char *what)
{
	struct node *n = c->node;
	c->waiting = false;
	if (c->step == STEP_DONE)
		return;
	if (status != 0) {
		c->retry_elsewhere = leadership_moved(status);
		finish(n, c, 503, false, "%s failed: %s", what, raft_strerror(status));
		return;
	}
	c->step++;
	run(n);
}

static void change_cb(struct raft_change *req, int status)
{
	step_done(req->data, status, "configuration change");
}

static void compact_cb(struct raft_barrier *req, int status)
{
	step_done(req->data, status, "the barrier before the joiner's snapshot");
}

static void propose_cb(struct node_propose *p, int status, void *result)
{
	(void)result;
	step_done(p->data, status, "recording member metadata");
}

static void timer_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	if (n->mship.head != NULL && !n->closing)
		run(n);
}

static void retry_later(struct node *n, unsigned ms)
{
	uv_timer_start(&n->mship.timer, timer_cb, ms, 0);
}

static void propose_member(struct node *n, struct node_change *c, bool del, const char *id,
                           raft_id rid)
{
	struct command cmd = {.type = del ? COMMAND_MEMBER_DEL : COMMAND_MEMBER_PUT};
	cmd.node_id = (struct command_str){id, strlen(id)};
	cmd.raft_id = rid;
	cmd.raft_addr = (struct command_str){c->raft_addr, strlen(c->raft_addr)};
	cmd.http_addr = (struct command_str){c->http_addr, strlen(c->http_addr)};
	cmd.incarnation = (struct command_str){c->incarnation, strlen(c->incarnation)};
	struct buf b;
	buf_init(&b);
	command_encode(&cmd, &b);
	c->propose.cb = propose_cb;
	c->propose.data = c;
	int rv = node_propose(n, &c->propose, &b);
	buf_close(&b);
	c->waiting = rv == 0;
	if (rv != 0) {
		c->retry_elsewhere = leadership_moved(rv);
		finish(n, c, 503, false, "cannot record member metadata: %s", raft_strerror(rv));
	}
}

static void handle_raft_rv(struct node *n, struct node_change *c, int rv, const char *what)
{
	c->waiting = rv == 0;
	if (rv == 0)
		return;
	if (rv == RAFT_CANTCHANGE && clock_mono_ms() < c->deadline_ms) {
		/* raft is still committing a previous configuration entry; try again shortly. */
		retry_later(n, RETRY_MS);
		return;
	}
	c->retry_elsewhere = leadership_moved(rv);
	finish(n, c, rv == RAFT_NOTLEADER ? 503 : 409, false, "%s failed: %s", what,
	       raft_strerror(rv));
}

/* Whether the server answered us within one election timeout: a member that does is alive,
 * and its entry is not handed to somebody else. */
static bool answered_lately(struct node *n, raft_id id)
{
	uint64_t heard = peers_last_recv_ms(n, id);
	return heard != 0 && heard + n->opts.election_ms >= clock_mono_ms();
}

/* The member is going away: remember where to tell it, once it is gone. */
static void plan_notify(struct node_change *c, const struct fsm_member *m)
{
	if (m == NULL || m->http_addr[0] == '\0')
		return;
	snprintf(c->notify_id, sizeof c->notify_id, "%s", m->node_id);
	snprintf(c->notify_http, sizeof c->notify_http, "%s", m->http_addr);
}

/* The other member on the raft address the joiner claims: refused while it is alive,
 * replaced (and later told) when it is dead. 0 when the join may go on. */
static int check_address_owner(struct node *n, struct node_change *c, raft_id other)
{
	const struct fsm_member *om = node_member_by_raft_id(n, other);
	char who[COMMAND_MAX_ID + 1];
	snprintf(who, sizeof who, "%s", om != NULL ? om->node_id : "(unnamed)");
	if (answered_lately(n, other)) {
		c->slug = "address-in-use";
		finish(n, c, 409, false,
		       "raft address %s belongs to member %s, which is alive (it answered within "
		       "the election timeout); remove it first or use another address",
		       c->raft_addr, who);
		return -1;
	}
	c->replace_id = other;
	snprintf(c->replaced, sizeof c->replaced, "%s", who);
	plan_notify(c, om);
	return 0;
}

static void join_start(struct node *n, struct node_change *c)
{
	struct raft_server *s = server_at(n, c->target);
	const struct fsm_member *m = node_member_by_node_id(n, c->node_id);
	raft_id other = server_with_addr(n, c->raft_addr, c->target);
	const char *cluster = node_cluster_id(n);
	if (c->cluster_id[0] != '\0' && cluster[0] != '\0' && strcmp(c->cluster_id, cluster) != 0) {
		c->slug = "other-cluster";
		finish(n, c, 409, false,
		       "node %s belongs to cluster %s, this is cluster %s: its data dir is another "
		       "cluster's (wipe it to join this one)",
		       c->node_id, c->cluster_id, cluster);
		return;
	}
	/* A join that names no incarnation (by hand, or from an older node) keeps the one on
	 * record: it cannot tell us the data was lost. */
	if (c->incarnation[0] == '\0' && m != NULL)
		snprintf(c->incarnation, sizeof c->incarnation, "%s", m->incarnation);
	c->new_incarnation = s != NULL && m != NULL && m->incarnation[0] != '\0' &&
	                     strcmp(m->incarnation, c->incarnation) != 0;
	bool same_addr = s != NULL && strcmp(s->address, c->raft_addr) == 0;
	bool meta_ok = m != NULL && strcmp(m->http_addr, c->http_addr) == 0 &&
	               strcmp(m->raft_addr, c->raft_addr) == 0 &&
	               strcmp(m->incarnation, c->incarnation) == 0;
	if (same_addr && s->role == RAFT_VOTER && other == 0 && meta_ok && !c->new_incarnation) {
		finish(n, c, 200, false, "node %s is already a voter", c->node_id);
		return;
	}
	if (other != 0 && check_address_owner(n, c, other) != 0)
		return;
	if (other == 0 && s != NULL && (!same_addr || c->new_incarnation)) {
		c->replace_id = c->target;
		snprintf(c->replaced, sizeof c->replaced, "%s", c->node_id);
	}
	if (c->replace_id != 0 && !quorum_safe(n, c->replace_id, false)) {
		if (quorum_not_known_yet(n))
			return;
		finish(n, c, 409, false,
		       "replacing the old entry of %s would leave the cluster without a quorum of "
		       "voters that accept appends",
		       c->replaced);
		return;
	}
	if (c->new_incarnation)
		log_warn("Replacing member",
		         "node_id=%s reason=\"new incarnation (its data was lost)\" "
		         "old_incarnation=%s new_incarnation=%s",
		         c->node_id, m->incarnation, c->incarnation);
	else if (c->replace_id != 0 && c->replace_id != c->target)
		log_warn("Replacing member",
		         "node_id=%s reason=\"dead member on the joiner's raft "
		         "address\" raft_addr=%s joiner=%s",
		         c->replaced, c->raft_addr, c->node_id);
	else if (c->replace_id != 0)
		log_info("Moving member", "node_id=%s old_raft_addr=%s new_raft_addr=%s",
		         c->node_id, s->address, c->raft_addr);
	c->step = c->replace_id != 0 ? STEP_REMOVE_OLD : STEP_META;
	c->progress_ms = clock_mono_ms();
	run(n);
}

static void remove_start(struct node *n, struct node_change *c)
{
	struct raft_server *s = server_at(n, c->target);
	if (s == NULL && c->is_retry) {
		/* An earlier attempt whose outcome was unknown already removed it. */
		finish(n, c, 200, false, "node %s is no longer a member", c->node_id);
		return;
	}
	if (s == NULL) {
		finish(n, c, 404, false, "node %s is not a member of this cluster", c->node_id);
		return;
	}
	if (s->role == RAFT_VOTER && !quorum_safe(n, c->target, false)) {
		/* Checked before a leader hands over too: a refused removal must leave everything
		 * as it was, leadership included. */
		if (quorum_not_known_yet(n))
			return;
		finish(n, c, 409, false,
		       "removing %s would leave the cluster without a quorum of voters that accept "
		       "appends",
		       c->node_id);
		return;
	}
	if (c->target == n->id) {
		/* The leader cannot cleanly remove itself: hand leadership to another voter and
		 * let the api layer forward the removal to it. */
		c->step = STEP_TRANSFER;
		c->replace_id = 0;
		run(n);
		return;
	}
	plan_notify(c, node_member_by_raft_id(n, c->target));
	c->step = STEP_REMOVE;
	run(n);
}

/* Most caught-up voter other than us (transfers without a named target, and the hand-over
 * on shutdown), preferring voters we heard from recently: a transfer to a voter that is down
 * fails only after an election timeout, then the survivors need an election of their own and a
 * retry would pick it again (ties on match index go to the first voter in the configuration).
 * One not heard from is still better than none (e.g. just elected). 0 when there is no other
 * voter. Leader only. */
raft_id node_best_voter(struct node *n)
{
	raft_id best = 0;
	raft_index best_match = 0;
	bool best_heard = false;
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		struct raft_server *s = &n->raft.configuration.servers[i];
		if (s->role != RAFT_VOTER || s->id == n->id)
			continue;
		raft_index m = n->raft.leader_state.progress[i].match_index;
		bool heard = node_heard_from(n, s->id);
		if (best == 0 || (heard && !best_heard) ||
		    (heard == best_heard && m > best_match)) {
			best = s->id;
			best_match = m;
			best_heard = heard;
		}
	}
	return best;
}

static void transfer_cb(struct raft_transfer *req)
{
	struct node_change *c = req->data;
	struct node *n = c->node;
	raft_id leader = 0;
	const char *addr;
	c->waiting = false;
	if (c->step == STEP_DONE)
		return;
	raft_leader(&n->raft, &leader, &addr);
	if (c->kind == NODE_CHANGE_REMOVE) {
		/* Leadership moved (or an election is under way): the removal goes to the new
		 * leader through the api's forwarding. */
		c->retry_elsewhere = true;
		finish(n, c, 503, false,
		       "leadership handed over; retry the removal on the new leader");
		return;
	}
	if (leader != 0 && leader != n->id) {
		const struct fsm_member *m = node_member_by_raft_id(n, leader);
		finish(n, c, 200, true, "leadership transferred to %s", m ? m->node_id : "?");
		return;
	}
	finish(n, c, 503, false,
	       "leadership transfer did not complete within the election timeout");
}

static void transfer_start(struct node *n, struct node_change *c)
{
	if (c->node_id[0] != '\0') {
		struct raft_server *s = server_at(n, c->target);
		if (s == NULL) {
			finish(n, c, 404, false, "node %s is not a member of this cluster",
			       c->node_id);
			return;
		}
		if (s->role != RAFT_VOTER) {
			finish(n, c, 409, false, "node %s is not a voter", c->node_id);
			return;
		}
		if (c->target == n->id) {
			finish(n, c, 200, false, "node %s is already the leader", c->node_id);
			return;
		}
		if (!node_heard_from(n, c->target)) {
			/* raft would wait a whole election timeout for a voter that cannot answer.
			 */
			finish(
			    n, c, 409, false,
			    "node %s has not been heard from recently; it cannot take leadership",
			    c->node_id);
			return;
		}
	}
	c->step = STEP_TRANSFER;
	run(n);
}

static void do_transfer(struct node *n, struct node_change *c)
{
	raft_id target = c->target != 0 && c->target != n->id ? c->target : node_best_voter(n);
	if (target == 0) {
		finish(n, c, 409, false, "there is no other voter to transfer leadership to");
		return;
	}
	c->req.transfer.data = c;
	int rv = raft_transfer(&n->raft, &c->req.transfer, target, transfer_cb);
	c->waiting = rv == 0;
	if (rv != 0)
		finish(n, c, rv == RAFT_NOTLEADER ? 503 : 409, false,
		       "leadership transfer failed: %s", raft_strerror(rv));
}

/* A joiner is promoted once it is within CATCHUP_SLACK entries. One whose match index stops
 * moving for --catch-up-timeout-ms (it never came up, or cannot keep up) is dropped again: a spare
 * or standby left behind would count as a peer forever and hold its address. */
static void catchup(struct node *n, struct node_change *c)
{
	int i = node_server_index(n, c->target);
	if (i < 0) {
		finish(n, c, 409, false, "node %s left the configuration while catching up",
		       c->node_id);
		return;
	}
	raft_index match = n->raft.leader_state.progress[i].match_index;
	raft_index last = raft_last_index(&n->raft);
	uint64_t now = clock_mono_ms();
	if (match + CATCHUP_SLACK >= last && match > 0) {
		c->step = STEP_PROMOTE;
		run(n);
		return;
	}
	if (match != c->progress_match) {
		c->progress_match = match;
		c->progress_ms = now;
	}
	if (now - c->progress_ms > (uint64_t)n->opts.catch_up_timeout_ms) {
		log_warn("Join did not catch up; removing its entry",
		         "node_id=%s match_index=%llu last_index=%llu stalled_ms=%u", c->node_id,
		         (unsigned long long)match, (unsigned long long)last,
		         n->opts.catch_up_timeout_ms);
		c->step = STEP_DROP;
		run(n);
		return;
	}
	retry_later(n, CATCHUP_POLL_MS);
}

static void step_drop(struct node *n, struct node_change *c)
{
	int rv;
	switch (c->step) {
	case STEP_DROP:
		if (server_at(n, c->target) == NULL) {
			c->step = STEP_DROP_FORGET;
			run(n);
			return;
		}
		c->req.change.data = c;
		rv = raft_remove(&n->raft, &c->req.change, c->target, change_cb);
		handle_raft_rv(n, c, rv, "removing the stalled joiner");
		return;
	case STEP_DROP_FORGET:
		propose_member(n, c, true, c->node_id, c->target);
		return;
	default:
		c->slug = "join-timeout";
		finish(n, c, 504, true,
		       "node %s made no catch-up progress for %d s (it is down or cannot keep up); "
		       "its entry was removed again%s%s",
		       c->node_id, (int)(n->opts.catch_up_timeout_ms / 1000),
		       c->replaced[0] ? ", as was the entry of " : "", c->replaced);
	}
}

static void join_done(struct node *n, struct node_change *c)
{
	log_info("Node joined cluster", "node_id=%s raft_addr=%s http_addr=%s replaced=%s",
	         c->node_id, c->raft_addr, c->http_addr, c->replaced[0] ? c->replaced : "none");
	if (c->replaced[0] != '\0' && strcmp(c->replaced, c->node_id) != 0)
		finish(n, c, 200, true,
		       "node %s joined the cluster as a voter, replacing dead member "
		       "%s",
		       c->node_id, c->replaced);
	else if (c->new_incarnation)
		finish(n, c, 200, true,
		       "node %s joined the cluster as a voter, replacing its old "
		       "incarnation (whose data was lost)",
		       c->node_id);
	else
		finish(n, c, 200, true, "node %s joined the cluster as a voter", c->node_id);
}

/* Before the joiner is added, so its first append already finds the log compacted (added
 * earlier, it might be sent the whole log from index 1 in one message). */
static void compact_begin(struct node *n, struct node_change *c, bool first)
{
	if (first && !node_compact_wanted(n)) {
		c->step = STEP_ADD;
		run(n);
		return;
	}
	if (first)
		c->progress_ms = clock_mono_ms(); /* compact_wait's deadline counts from here */
	c->req.barrier.data = c;
	int rv = node_compact_start(n, &c->req.barrier, compact_cb);
	c->waiting = rv == 0;
	if (rv == 0)
		return;
	if (leadership_moved(rv)) {
		c->retry_elsewhere = true;
		finish(n, c, 503, false, "cannot start the joiner's snapshot: %s",
		       raft_strerror(rv));
		return;
	}
	log_warn("Cannot snapshot for the joiner; it replays the log", "node_id=%s error=%s",
	         c->node_id, raft_strerror(rv));
	c->step = STEP_ADD;
	run(n);
}

/* A snapshot that does not finish within --catch-up-timeout-ms (a failing disk, say) is not
 * worth failing the join for: the joiner then replays the log as before. IDLE: a snapshot
 * taken for an older index was still running when the barrier applied, or one failed; raft
 * takes ours at its next apply, so propose one more barrier. */
static void compact_wait(struct node *n, struct node_change *c)
{
	enum node_compact_state st = node_compact_poll(n);
	if (st != NODE_COMPACT_DONE) {
		if (clock_mono_ms() - c->progress_ms <= (uint64_t)n->opts.catch_up_timeout_ms) {
			if (st == NODE_COMPACT_IDLE) {
				c->step = STEP_COMPACT;
				compact_begin(n, c, false);
				return;
			}
			retry_later(n, CATCHUP_POLL_MS);
			return;
		}
		log_warn("The joiner's snapshot did not complete in time; it replays the log",
		         "node_id=%s waited_ms=%u", c->node_id, n->opts.catch_up_timeout_ms);
	}
	node_compact_stop(n);
	c->step = STEP_ADD;
	run(n);
}

static void step_join(struct node *n, struct node_change *c)
{
	struct raft_server *s;
	int rv = 0;
	switch (c->step) {
	case STEP_REMOVE_OLD:
		if (server_at(n, c->replace_id) == NULL) { /* a retry: already gone */
			c->step = STEP_FORGET_OLD;
			run(n);
			return;
		}
		c->req.change.data = c;
		rv = raft_remove(&n->raft, &c->req.change, c->replace_id, change_cb);
		handle_raft_rv(n, c, rv, "removing the old entry");
		return;
	case STEP_FORGET_OLD: {
		const struct fsm_member *old = node_member_by_raft_id(n, c->replace_id);
		if (old != NULL && strcmp(old->node_id, c->node_id) != 0) {
			char id[COMMAND_MAX_ID + 1];
			snprintf(id, sizeof id, "%s", old->node_id);
			propose_member(n, c, true, id, c->replace_id);
			return;
		}
		c->step = STEP_META;
	}
		/* fall through */
	case STEP_META:
		propose_member(n, c, false, c->node_id, c->target);
		return;
	case STEP_COMPACT:
		compact_begin(n, c, true);
		return;
	case STEP_COMPACT_WAIT:
		compact_wait(n, c);
		return;
	case STEP_ADD:
		if (server_at(n, c->target) != NULL) {
			c->step = STEP_STANDBY;
			run(n);
			return;
		}
		c->req.change.data = c;
		rv = raft_add(&n->raft, &c->req.change, c->target, c->raft_addr, change_cb);
		handle_raft_rv(n, c, rv, "adding the node");
		return;
	case STEP_STANDBY:
		s = server_at(n, c->target);
		if (s != NULL && s->role != RAFT_SPARE) {
			c->step = STEP_CATCHUP;
			c->progress_ms = clock_mono_ms();
			run(n);
			return;
		}
		c->req.change.data = c;
		rv = raft_assign(&n->raft, &c->req.change, c->target, RAFT_STANDBY, change_cb);
		handle_raft_rv(n, c, rv, "making the node a standby");
		return;
	case STEP_CATCHUP:
		catchup(n, c);
		return;
	case STEP_PROMOTE:
		s = server_at(n, c->target);
		if (s != NULL && s->role == RAFT_VOTER) {
			join_done(n, c);
			return;
		}
		if (!quorum_safe(n, 0, true)) {
			finish(n, c, 409, false,
			       "promoting %s would leave the cluster without a reachable quorum",
			       c->node_id);
			return;
		}
		c->req.change.data = c;
		rv = raft_assign(&n->raft, &c->req.change, c->target, RAFT_VOTER, change_cb);
		handle_raft_rv(n, c, rv, "promoting the node to voter");
		return;
	default:
		join_done(n, c);
	}
}

static void step_remove(struct node *n, struct node_change *c)
{
	int rv;
	switch (c->step) {
	case STEP_REMOVE:
		c->req.change.data = c;
		rv = raft_remove(&n->raft, &c->req.change, c->target, change_cb);
		handle_raft_rv(n, c, rv, "removing the node");
		return;
	case STEP_FORGET:
		propose_member(n, c, true, c->node_id, c->target);
		return;
	case STEP_TRANSFER:
		do_transfer(n, c);
		return;
	default:
		log_info("Node removed from cluster", "node_id=%s by=%s", c->node_id,
		         n->opts.node_id);
		finish(n, c, 200, true, "node %s removed from the cluster", c->node_id);
	}
}

static void run(struct node *n)
{
	struct node_change *c = n->mship.head;
	if (c == NULL)
		return;
	if (!node_is_leader(n)) {
		c->retry_elsewhere = true;
		finish(n, c, 503, false, "this node is not the leader");
		return;
	}
	if (c->step == STEP_START) {
		if (c->start_by_ms != 0 && clock_mono_ms() > c->start_by_ms) {
			finish(n, c, 504, false,
			       "not applied: the change could not start before its deadline");
			return;
		}
		c->deadline_ms = clock_mono_ms() + (uint64_t)n->opts.catch_up_timeout_ms;
		if (c->kind == NODE_CHANGE_JOIN)
			join_start(n, c);
		else if (c->kind == NODE_CHANGE_REMOVE)
			remove_start(n, c);
		else
			transfer_start(n, c);
		return;
	}
	if (c->step >= STEP_DROP)
		step_drop(n, c);
	else if (c->kind == NODE_CHANGE_JOIN)
		step_join(n, c);
	else if (c->kind == NODE_CHANGE_REMOVE)
		step_remove(n, c);
	else
		do_transfer(n, c);
}

static void expiry_cb(uv_timer_t *t);

/* Arms the expiry timer for the earliest start deadline among the changes still waiting. */
static void arm_expiry(struct node *n)
{
	uint64_t first = 0;
	for (struct node_change *c = n->mship.head ? n->mship.head->next : NULL; c; c = c->next)
		if (c->start_by_ms != 0 && (first == 0 || c->start_by_ms < first))
			first = c->start_by_ms;
	if (first == 0 || n->closing) {
		uv_timer_stop(&n->mship.expiry);
		return;
	}
	uint64_t now = clock_mono_ms();
	uv_timer_start(&n->mship.expiry, expiry_cb, first > now ? first - now + 1 : 0, 0);
}

/* Answers (504, nothing was done) the waiting changes whose start deadline passed. The one
 * running is left alone: it is answered with its outcome. */
static void expiry_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	uint64_t now = clock_mono_ms();
	struct node_change *prev = n->mship.head;
	struct node_change *c = prev != NULL ? prev->next : NULL;
	while (c != NULL) {
		struct node_change *next = c->next;
		if (c->start_by_ms != 0 && now > c->start_by_ms) {
			prev->next = next;
			if (n->mship.tail == c)
				n->mship.tail = prev;
			n->mship.queued--;
			c->http_status = 504;
			c->slug = "not-applied";
			c->step = STEP_DONE;
			snprintf(c->message, sizeof c->message,
			         "not applied: another membership change was still running at the "
			         "request's deadline");
			c->cb(c);
		} else {
			prev = c;
		}
		c = next;
	}
	arm_expiry(n);
}

void node_change_submit(struct node *n, struct node_change *c)
{
	c->node = n;
	c->next = NULL;
	c->step = STEP_START;
	c->target = c->node_id[0] ? node_raft_id(c->node_id) : 0;
	c->replace_id = 0;
	c->retry_elsewhere = false;
	c->slug = NULL;
	c->replaced[0] = c->notify_http[0] = c->notify_id[0] = '\0';
	c->new_incarnation = false;
	c->progress_match = 0;
	if (n->closing) {
		c->http_status = 503;
		c->slug = "shutting-down";
		snprintf(c->message, sizeof c->message, "node is shutting down");
		c->cb(c);
		return;
	}
	if (n->mship.queued > MAX_QUEUED) {
		c->http_status = 409;
		c->slug = "change-in-progress";
		snprintf(c->message, sizeof c->message,
		         "another membership change is running and %d more are waiting; retry "
		         "later",
		         MAX_QUEUED);
		c->cb(c);
		return;
	}
	if (n->mship.tail != NULL)
		n->mship.tail->next = c;
	else
		n->mship.head = c;
	n->mship.tail = c;
	n->mship.queued++;
	if (n->mship.head == c)
		run(n);
	else
		arm_expiry(n);
}

bool membership_changing(struct node *n, const char *node_id)
{
	for (struct node_change *c = n->mship.head; c != NULL; c = c->next)
		if (strcmp(c->node_id, node_id) == 0 || strcmp(c->replaced, node_id) == 0)
			return true;
	return false;
}

void membership_init(struct node *n)
{
	uv_timer_init(n->loop, &n->mship.timer);
	n->mship.timer.data = n;
	uv_timer_init(n->loop, &n->mship.expiry);
	n->mship.expiry.data = n;
}

/* Fails every queued change, and the running one unless a raft callback is pending for it
 * (that callback finishes it). */
void membership_fail_all(struct node *n, unsigned status, const char *why)
{
	struct node_change *head = n->mship.head;
	if (head == NULL)
		return;
	struct node_change *c = head->next;
	head->next = NULL;
	n->mship.tail = head;
	n->mship.queued = 1;
	uv_timer_stop(&n->mship.expiry);
	while (c != NULL) {
		struct node_change *next = c->next;
		c->http_status = status;
		c->slug = n->closing ? "shutting-down" : "membership";
		c->step = STEP_DONE;
		c->retry_elsewhere = !n->closing; /* leadership moved; nothing of it ran here */
		snprintf(c->message, sizeof c->message, "%s", why);
		c->cb(c);
		c = next;
	}
	if (!head->waiting) {
		head->retry_elsewhere = !n->closing;
		finish(n, head, status, false, "%s", why);
	}
}

void membership_close(struct node *n)
{
	struct node_removal_check *rc = &n->removal;
	uv_timer_stop(&n->mship.timer);
	uv_timer_stop(&n->mship.expiry);
	membership_fail_all(n, 503, "node is shutting down");
	/* Their answers would read n->opts, which the node frees once closed (see autojoin.c). */
	for (unsigned i = 0; i < rc->n_xfers; i++)
		fwd_cancel(n->fwd, rc->xfers[i]);
	free(rc->xfers);
	rc->xfers = NULL;
	rc->n_xfers = rc->cap_xfers = 0;
}

/* ---- telling a removed node ---- */

static void notify_reply(const struct fwd_response *r, void *arg)
{
	(void)arg;
	if (r->result != FWD_OK)
		log_debug("Removal notice not delivered", "error=\"%s\"",
		          r->error ? r->error : "?");
}

/* libraft 0.15 never tells a removed server; a member whose address was taken over may even
 * keep receiving heartbeats meant for its successor. So the leader says it once, best
 * effort; the node does not take our word for it but checks the leader's status at once. */
static void notify_removed(struct node *n, const char *node_id, const char *http_addr)
{
	char url[COMMAND_MAX_ADDR + 32];
	snprintf(url, sizeof url, "%s://%s/raft/removed", fwd_scheme(n->fwd), http_addr);
	json_t *o = json_pack("{s:s, s:s, s:s}", "node_id", node_id, "cluster_id",
	                      node_cluster_id(n), "by", n->opts.node_id);
	char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	struct fwd_header h[2] = {{"Content-Type", "application/json"}};
	struct fwd_request req = {.method = "POST",
	                          .url = url,
	                          .headers = h,
	                          .n_headers = node_peer_auth(n, h, 1),
	                          .body = body,
	                          .body_len = body ? strlen(body) : 0,
	                          .timeout_ms = NOTIFY_TIMEOUT_MS};
	if (body == NULL || fwd_send(n->fwd, &req, notify_reply, NULL) != 0)
		log_warn("Cannot send removal notice", "node_id=%s http_addr=%s", node_id,
		         http_addr);
	free(body);
}

/* ---- removal detection ---- */

/* Whether a leader's server list still holds this data dir: our node id, with our
 * incarnation when it names one (another incarnation means we were replaced). */
static bool lists_us(struct node *n, json_t *servers)
{
	size_t i;
	json_t *s;
	json_array_foreach(servers, i, s)
	{
		const char *id = json_string_value(json_object_get(s, "node_id"));
		const char *inc = json_string_value(json_object_get(s, "incarnation"));
		if (id == NULL || strcmp(id, n->opts.node_id) != 0)
			continue;
		return inc == NULL || inc[0] == '\0' || strcmp(inc, n->ident.incarnation) == 0;
	}
	return false;
}

static void removal_reply(const struct fwd_response *r, void *arg)
{
	struct node *n = arg;
	n->removal.pending--;
	if (n->closing || n->removed || r->result != FWD_OK || r->status != 200)
		return;
	json_error_t jerr;
	json_t *o = json_loadb(r->body, r->body_len, 0, &jerr);
	if (o == NULL)
		return;
	const char *state = json_string_value(json_object_get(o, "state"));
	json_int_t term = json_integer_value(json_object_get(o, "term"));
	json_t *servers = json_object_get(o, "servers");
	const char *cluster = json_string_value(json_object_get(o, "cluster_id"));
	bool ours = cluster == NULL || cluster[0] == '\0' || node_cluster_id(n)[0] == '\0' ||
	            strcmp(cluster, node_cluster_id(n)) == 0;
	bool removed = state != NULL && strcmp(state, "leader") == 0 && json_is_array(servers) &&
	               (raft_term)term >= n->raft.current_term && ours && !lists_us(n, servers);
	json_decref(o);
	if (removed)
		node_mark_removed(n, "the leader's configuration no longer lists this node");
}

void membership_check_removed(struct node *n, bool at_once)
{
	uint64_t now = clock_mono_ms();
	struct node_removal_check *rc = &n->removal;
	if (n->closing || rc->pending > 0 || n->removed ||
	    (!at_once && now - rc->last_ms < REMOVAL_CHECK_EVERY_MS))
		return;
	rc->last_ms = now;
	rc->n_xfers = 0; /* the last check's requests have all been answered */
	node_refresh_members(n);
	if (rc->cap_xfers < n->n_members) {
		uint64_t *x = realloc(rc->xfers, n->n_members * sizeof *x);
		if (x == NULL)
			return;
		rc->xfers = x;
		rc->cap_xfers = n->n_members;
	}
	for (unsigned i = 0; i < n->n_members; i++) {
		const struct fsm_member *m = &n->members[i];
		if (strcmp(m->node_id, n->opts.node_id) == 0)
			continue;
		struct node_peer_get g;
		node_peer_status_get(n, m->http_addr, 1000, &g);
		if (fwd_send_cancellable(n->fwd, &g.req, removal_reply, n,
		                         &rc->xfers[rc->n_xfers]) == 0) {
			rc->n_xfers++;
			rc->pending++;
		}
	}
}
