/* membership: join, remove and leadership transfer, one configuration change at a time.
 *
 * Changes queue on the leader and run strictly in order as small state machines driven by
 * raft callbacks and a polling timer. A join adds the node as a spare, makes it a standby so
 * it receives the log (or a snapshot), waits until it has caught up, and only then promotes
 * it to voter, so a new empty node never weakens the quorum while it syncs. Replacing an
 * entry (same id with a new address, or a new id on a used address) removes the old entry
 * first. Any change that would leave fewer reachable voters than the new quorum is refused
 * with 409 instead of being attempted.
 *
 * Also here: how a removed node notices. 0.15 never tells it; it stops hearing from the
 * leader, asks its peers for /raft/status, and leaves when a leader no longer lists it. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/command.h"
#include "log/log.h"
#include "raft/node.h"
#include "util/clock.h"

#define MAX_QUEUED             64
#define CATCHUP_POLL_MS        10
#define CATCHUP_TIMEOUT_MS     60000
#define CATCHUP_SLACK          16 /* entries a standby may trail by and still be promoted */
#define RETRY_MS               20
#define REMOVAL_CHECK_EVERY_MS 1000

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
	STEP_ADD,
	STEP_STANDBY,
	STEP_CATCHUP,
	STEP_PROMOTE,
	STEP_TRANSFER,
	STEP_REMOVE,
	STEP_FORGET,
	STEP_DONE,
};

static void run(struct node *n);
static void timer_cb(uv_timer_t *t);

static void finish(struct node *n, struct node_change *c, unsigned status, bool changed,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void finish(struct node *n, struct node_change *c, unsigned status, bool changed,
                   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof c->message, fmt, ap);
	va_end(ap);
	c->http_status = status;
	c->changed = changed;
	c->step = STEP_DONE;
	if (n->mship.head == c) {
		n->mship.head = c->next;
		if (n->mship.head == NULL)
			n->mship.tail = NULL;
		n->mship.queued--;
		uv_timer_stop(&n->mship.timer);
	}
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
 * voter that is known to be reachable (`adding`)? */
static bool quorum_safe(struct node *n, raft_id gone, bool adding)
{
	struct raft_server *s = gone ? server_at(n, gone) : NULL;
	unsigned voters = node_voters(n);
	if (s != NULL && s->role == RAFT_VOTER)
		voters--;
	if (adding)
		voters++;
	unsigned reachable = node_reachable_voters(n, gone, NULL) + (adding ? 1 : 0);
	return voters > 0 && reachable >= quorum(voters);
}

static void change_cb(struct raft_change *req, int status)
{
	struct node_change *c = req->data;
	struct node *n = c->node;
	c->waiting = false;
	if (c->step == STEP_DONE)
		return;
	if (status != 0) {
		c->retry_elsewhere = leadership_moved(status);
		finish(n, c, 503, false, "configuration change failed: %s", raft_strerror(status));
		return;
	}
	c->step++;
	run(n);
}

static void propose_cb(struct node_propose *p, int status, void *result)
{
	struct node_change *c = p->data;
	struct node *n = c->node;
	(void)result;
	c->waiting = false;
	if (c->step == STEP_DONE)
		return;
	if (status != 0) {
		c->retry_elsewhere = leadership_moved(status);
		finish(n, c, 503, false, "recording member metadata failed: %s",
		       raft_strerror(status));
		return;
	}
	c->step++;
	run(n);
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
	struct command cmd = {.type = del ? COMMAND_MEMBER_DEL : COMMAND_MEMBER_SET};
	cmd.node_id = (struct command_str){id, strlen(id)};
	cmd.raft_id = rid;
	cmd.raft_addr = (struct command_str){c->raft_addr, strlen(c->raft_addr)};
	cmd.http_addr = (struct command_str){c->http_addr, strlen(c->http_addr)};
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

static void join_start(struct node *n, struct node_change *c)
{
	struct raft_server *s = server_at(n, c->target);
	const struct fsm_member *m = node_member_by_node_id(n, c->node_id);
	raft_id other = server_with_addr(n, c->raft_addr, c->target);
	bool same_addr = s != NULL && strcmp(s->address, c->raft_addr) == 0;
	bool meta_ok = m != NULL && strcmp(m->http_addr, c->http_addr) == 0 &&
	               strcmp(m->raft_addr, c->raft_addr) == 0;
	if (same_addr && s->role == RAFT_VOTER && other == 0 && meta_ok) {
		finish(n, c, 200, false, "node %s is already a voter", c->node_id);
		return;
	}
	if (other != 0)
		c->replace_id = other;
	else if (s != NULL && !same_addr)
		c->replace_id = c->target;
	if (c->replace_id != 0 && !quorum_safe(n, c->replace_id, false)) {
		finish(
		    n, c, 409, false,
		    "replacing the old entry would leave the cluster without a reachable quorum");
		return;
	}
	c->step = c->replace_id != 0 ? STEP_REMOVE_OLD : STEP_META;
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
	if (c->target == n->id) {
		/* The leader cannot cleanly remove itself: hand leadership to another voter and
		 * let the api layer forward the removal to it. */
		c->step = STEP_TRANSFER;
		c->replace_id = 0;
		run(n);
		return;
	}
	if (s->role == RAFT_VOTER && !quorum_safe(n, c->target, false)) {
		finish(n, c, 409, false,
		       "removing %s would leave the cluster without a reachable quorum",
		       c->node_id);
		return;
	}
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
	if (match + CATCHUP_SLACK >= last && match > 0) {
		c->step = STEP_PROMOTE;
		run(n);
		return;
	}
	if (clock_mono_ms() > c->deadline_ms) {
		finish(n, c, 503, false,
		       "node %s did not catch up in time (match %llu of %llu); it stays a standby",
		       c->node_id, (unsigned long long)match, (unsigned long long)last);
		return;
	}
	retry_later(n, CATCHUP_POLL_MS);
}

static void step_join(struct node *n, struct node_change *c)
{
	struct raft_server *s;
	int rv = 0;
	switch (c->step) {
	case STEP_REMOVE_OLD:
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
			c->step = STEP_DONE + 1;
			break;
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
		break;
	}
	log_info("Node joined cluster", "node_id=%s raft_addr=%s http_addr=%s", c->node_id,
	         c->raft_addr, c->http_addr);
	finish(n, c, 200, true, "node %s joined the cluster as a voter", c->node_id);
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
		c->deadline_ms = clock_mono_ms() + CATCHUP_TIMEOUT_MS;
		if (c->kind == NODE_CHANGE_JOIN)
			join_start(n, c);
		else if (c->kind == NODE_CHANGE_REMOVE)
			remove_start(n, c);
		else
			transfer_start(n, c);
		return;
	}
	if (c->kind == NODE_CHANGE_JOIN)
		step_join(n, c);
	else if (c->kind == NODE_CHANGE_REMOVE)
		step_remove(n, c);
	else
		do_transfer(n, c);
}

void node_change_submit(struct node *n, struct node_change *c)
{
	c->node = n;
	c->next = NULL;
	c->step = STEP_START;
	c->target = c->node_id[0] ? node_raft_id(c->node_id) : 0;
	c->replace_id = 0;
	c->retry_elsewhere = false;
	if (n->closing) {
		c->http_status = 503;
		snprintf(c->message, sizeof c->message, "node is shutting down");
		c->cb(c);
		return;
	}
	if (n->mship.queued >= MAX_QUEUED) {
		c->http_status = 409;
		snprintf(c->message, sizeof c->message,
		         "too many configuration changes queued (%d); retry later", MAX_QUEUED);
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
}

void membership_init(struct node *n)
{
	uv_timer_init(n->loop, &n->mship.timer);
	n->mship.timer.data = n;
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
	while (c != NULL) {
		struct node_change *next = c->next;
		c->http_status = status;
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
	membership_fail_all(n, 503, "node is shutting down");
	/* Their answers would read n->opts, which the node frees once closed (see autojoin.c). */
	for (unsigned i = 0; i < rc->n_xfers; i++)
		fwd_cancel(n->fwd, rc->xfers[i]);
	free(rc->xfers);
	rc->xfers = NULL;
	rc->n_xfers = rc->cap_xfers = 0;
}

/* ---- removal detection ---- */

static bool lists_node(json_t *servers, const char *node_id)
{
	size_t i;
	json_t *s;
	json_array_foreach(servers, i, s)
	{
		const char *id = json_string_value(json_object_get(s, "node_id"));
		if (id != NULL && strcmp(id, node_id) == 0)
			return true;
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
	bool removed = state != NULL && strcmp(state, "leader") == 0 && json_is_array(servers) &&
	               (raft_term)term >= n->raft.current_term &&
	               !lists_node(servers, n->opts.node_id);
	json_decref(o);
	if (!removed)
		return;
	n->removed = true;
	log_info("Node removed from cluster",
	         "node_id=%s reason=\"the leader's configuration no "
	         "longer lists this node\"",
	         n->opts.node_id);
	if (n->on_removed != NULL)
		n->on_removed(n->event_arg);
}

void membership_check_removed(struct node *n)
{
	uint64_t now = clock_mono_ms();
	struct node_removal_check *rc = &n->removal;
	if (n->closing || rc->pending > 0 || n->removed ||
	    now - rc->last_ms < REMOVAL_CHECK_EVERY_MS)
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
		char url[COMMAND_MAX_ADDR + 32];
		snprintf(url, sizeof url, "http://%s/raft/status", m->http_addr);
		struct fwd_request req = {.method = "GET", .url = url, .timeout_ms = 1000};
		if (fwd_send_cancellable(n->fwd, &req, removal_reply, n, &rc->xfers[rc->n_xfers]) ==
		    0) {
			rc->n_xfers++;
			rc->pending++;
		}
	}
}
