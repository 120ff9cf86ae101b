/* node: raft server lifecycle and the state watch (see node.h). */
#include "raft/node.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsm/command.h"
#include "log/log.h"
#include "util/clock.h"

/* How often the watch timer samples raft state. Small enough that a leadership change is
 * noticed well inside a heartbeat, cheap enough (a few field reads) to not matter. */
#define WATCH_INTERVAL_MS 5
/* How long a follower may hold received entries that it has not persisted, without its
 * persisted index moving at all, before we take its log writes to be stuck (see watch_cb). */
#define STUCK_APPEND_MS 10000

raft_id node_raft_id(const char *node_id)
{
	uint64_t h = command_hash(COMMAND_HASH_INIT, node_id, strlen(node_id));
	h &= 0x7fffffffffffffffULL;
	return h == 0 ? 1 : h;
}

static char *path_join(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);
	if (p != NULL)
		snprintf(p, len, "%s/%s", dir, name);
	return p;
}

static bool file_exists(const char *dir, const char *name)
{
	char *p = path_join(dir, name);
	bool ok = p != NULL && access(p, F_OK) == 0;
	free(p);
	return ok;
}

static int ensure_dir(const char *path, char *err, size_t errlen)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* identity.json pins a data dir to one node id and remembers whether it bootstrapped its own
 * cluster, which is what lets a restart refuse to silently join a different cluster. */
static int identity_load(struct node *n, char *err, size_t errlen)
{
	char *path = path_join(n->opts.data_dir, "identity.json");
	json_error_t jerr;
	json_t *o = json_load_file(path, 0, &jerr);
	int rv = 0;
	if (o != NULL) {
		const char *id = json_string_value(json_object_get(o, "node_id"));
		if (id != NULL && strcmp(id, n->opts.node_id) != 0) {
			snprintf(
			    err, errlen,
			    "--data-dir %s belongs to node \"%s\", not \"%s\" (use another data "
			    "dir or the original --node-id)",
			    n->opts.data_dir, id, n->opts.node_id);
			rv = -1;
		}
		n->bootstrapped_here = json_is_true(json_object_get(o, "bootstrapped"));
		json_decref(o);
	}
	free(path);
	return rv;
}

static int identity_save(struct node *n, char *err, size_t errlen)
{
	char *path = path_join(n->opts.data_dir, "identity.json");
	char *tmp = path_join(n->opts.data_dir, "identity.json.tmp");
	json_t *o = json_pack("{s:s, s:s, s:b}", "node_id", n->opts.node_id, "raft_addr",
	                      n->opts.raft_addr, "bootstrapped", n->bootstrapped_here);
	int rv = -1;
	if (o != NULL && json_dump_file(o, tmp, JSON_INDENT(2)) == 0 && rename(tmp, path) == 0)
		rv = 0;
	else
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
	json_decref(o);
	free(path);
	free(tmp);
	return rv;
}

static void copy_options(struct node *n, const struct node_options *o)
{
	n->opts = *o;
	n->opts.node_id = strdup(o->node_id);
	n->opts.raft_addr = strdup(o->raft_addr);
	n->opts.http_addr = strdup(o->http_addr);
	n->opts.data_dir = strdup(o->data_dir);
	char **join = calloc(o->n_join ? o->n_join : 1, sizeof *join);
	for (size_t i = 0; i < o->n_join; i++)
		join[i] = strdup(o->join[i]);
	n->opts.join = (const char *const *)join;
}

static void free_options(struct node *n)
{
	free((char *)n->opts.node_id);
	free((char *)n->opts.raft_addr);
	free((char *)n->opts.http_addr);
	free((char *)n->opts.data_dir);
	for (size_t i = 0; i < n->opts.n_join; i++)
		free((char *)n->opts.join[i]);
	free((char **)n->opts.join);
}

int node_init(struct node *n, uv_loop_t *loop, const struct node_options *opts, struct fwd *fwd,
              struct metrics *metrics, char *err, size_t errlen)
{
	int rv;
	memset(n, 0, sizeof *n);
	n->loop = loop;
	n->fwd = fwd;
	n->metrics = metrics;
	copy_options(n, opts);
	n->id = node_raft_id(opts->node_id);
	n->last_state = -1;

	if (identity_load(n, err, errlen) != 0)
		goto err_opts;
	n->raft_dir = path_join(opts->data_dir, "raft");
	char *db_dir = path_join(opts->data_dir, "db");
	if (ensure_dir(n->raft_dir, err, errlen) != 0) {
		free(db_dir);
		goto err_dir;
	}
	n->had_state =
	    file_exists(n->raft_dir, "metadata1") || file_exists(n->raft_dir, "metadata2");
	rv = fsm_init(&n->fsm, db_dir, err, errlen);
	free(db_dir);
	if (rv != 0)
		goto err_dir;

	rv = transport_init(&n->transport, loop, &n->io);
	if (rv != 0) {
		snprintf(err, errlen, "raft transport init failed: %s", raft_strerror(rv));
		goto err_fsm;
	}
	rv = raft_uv_init(&n->io, loop, n->raft_dir, &n->transport.iface);
	if (rv != 0) {
		snprintf(err, errlen, "raft I/O init on %s failed: %s", n->raft_dir,
		         n->io.errmsg[0] ? n->io.errmsg : raft_strerror(rv));
		goto err_transport;
	}
	/* The default 1 s retry would stall a join or a restarted peer for a whole second. */
	raft_uv_set_connect_retry_delay(&n->io, opts->connect_retry_ms);
	/* 0.15's raft_uv implements async_work but reports io->version 1, which makes raft_init
	 * refuse our async (version 3) fsm; the capability is there, so say so. */
	n->io.version = 2;
	rv = raft_init(&n->raft, &n->io, &n->fsm.iface, n->id, opts->raft_addr);
	if (rv != 0) {
		snprintf(err, errlen, "raft init failed: %s", raft_errmsg(&n->raft));
		goto err_io;
	}
	n->raft.data = n;
	n->fsm.raft = &n->raft;
	raft_set_heartbeat_timeout(&n->raft, opts->heartbeat_ms);
	raft_set_election_timeout(&n->raft, opts->election_ms);
	raft_set_pre_vote(&n->raft, true);
	raft_set_snapshot_threshold(&n->raft, opts->snapshot_threshold);
	raft_set_snapshot_trailing(&n->raft, opts->snapshot_trailing);
	raft_set_install_snapshot_timeout(&n->raft, 30000);
	raft_set_max_catch_up_round_duration(&n->raft, 10 * opts->election_ms);
	return 0;

err_io:
	raft_uv_close(&n->io);
err_transport:
	transport_close(&n->transport);
err_fsm:
	fsm_close(&n->fsm);
err_dir:
	free(n->raft_dir);
err_opts:
	free_options(n);
	return -1;
}

static int bootstrap(struct node *n, char *err, size_t errlen)
{
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	int rv = raft_configuration_add(&conf, n->id, n->opts.raft_addr, RAFT_VOTER);
	if (rv == 0)
		rv = raft_bootstrap(&n->raft, &conf);
	raft_configuration_close(&conf);
	if (rv != 0) {
		snprintf(err, errlen, "bootstrap failed: %s", raft_errmsg(&n->raft));
		return -1;
	}
	n->bootstrapped_here = true;
	log_info("Bootstrapped Raft cluster", "node_id=%s raft_addr=%s", n->opts.node_id,
	         n->opts.raft_addr);
	return 0;
}

static void watch_cb(uv_timer_t *t);

/* Runs before the loop blocks for I/O, i.e. after every burst of requests and of applies
 * (libraft applies from its I/O callbacks): the commands proposed since go to raft together,
 * and the applies' WAL records reach the file with one write. */
static void flush_cb(uv_prepare_t *p)
{
	struct node *n = p->data;
	propose_flush(n);
	fsm_flush(&n->fsm);
}

static void applied_cb(void *arg, uint64_t index, void *result)
{
	node_propose_applied(arg, index, result);
}

/* Our leader's process closed its end of our connection to it (transport.c): it exited or
 * crashed, so waiting out the election timeout (300-600 ms, checked on heartbeat ticks) would
 * only add to the failover gap. Instead the followers, all told at the same moment, campaign
 * one after the other: the one with the lowest raft id among the voters left at its next
 * tick, the next one two heartbeats later if no leader has appeared by then, and so on (all
 * at once, they split the vote and then all wait a whole timeout). Each also forgets the
 * leader, since a follower that still names one refuses every vote. Pre-vote keeps this
 * harmless when the leader is in fact still there (followers that hear from it refuse, no
 * term is bumped, and its next heartbeat makes us follow it again). A paused or partitioned
 * leader closes nothing and is still found out by the timeout. libraft 0.15 has no call to
 * start an election; both fields are public in struct raft (the leader's address stays
 * allocated: raft frees or replaces it as usual). */
static void peer_closed_cb(void *arg, raft_id id)
{
	struct node *n = arg;
	struct raft *r = &n->raft;
	if (n->closing || r->state != RAFT_FOLLOWER || r->follower_state.current_leader.id != id)
		return;
	unsigned rank = 0;
	for (unsigned i = 0; i < r->configuration.n; i++) {
		const struct raft_server *s = &r->configuration.servers[i];
		if (s->role == RAFT_VOTER && s->id != id && s->id < n->id)
			rank++;
	}
	raft_time now = n->io.time(&n->io);
	uint64_t timeout = r->follower_state.randomized_election_timeout;
	uint64_t wait = (uint64_t)rank * 2 * n->opts.heartbeat_ms;
	uint64_t elapsed = timeout > wait ? timeout - wait : 0;
	r->election_timer_start = now > elapsed ? now - elapsed : 0;
	r->follower_state.current_leader.id = 0;
	const struct fsm_member *m = node_member_by_raft_id(n, id);
	log_info("Leader's connection closed; starting an election", "node_id=%s leader_id=%s",
	         n->opts.node_id, m ? m->node_id : "?");
}

int node_start(struct node *n, char *err, size_t errlen)
{
	if (n->opts.bootstrap && !n->had_state && bootstrap(n, err, errlen) != 0)
		return -1;
	if (n->had_state)
		log_info("Restarting from existing raft state", "node_id=%s applied_index=%llu",
		         n->opts.node_id, (unsigned long long)n->fsm.applied_index);
	if (identity_save(n, err, errlen) != 0)
		return -1;
	int rv = raft_start(&n->raft);
	if (rv != 0) {
		/* raft_uv does not pass on its transport's message (e.g. the raft address is in
		 * use), so fall back to that, then to the code's. */
		const char *why = raft_errmsg(&n->raft);
		if (why == NULL || why[0] == '\0')
			why = n->transport.iface.errmsg[0] ? n->transport.iface.errmsg
			                                   : raft_strerror(rv);
		snprintf(err, errlen, "raft start failed on %s: %s", n->opts.raft_addr, why);
		return -1;
	}
	membership_init(n);
	propose_init(n);
	n->fsm.applied_hook = applied_cb;
	n->fsm.applied_hook_arg = n;
	n->transport.on_peer_closed = peer_closed_cb;
	n->transport.on_peer_closed_arg = n;
	uv_prepare_init(n->loop, &n->flush);
	n->flush.data = n;
	uv_prepare_start(&n->flush, flush_cb);
	uv_timer_init(n->loop, &n->watch);
	n->watch.data = n;
	uv_timer_start(&n->watch, watch_cb, WATCH_INTERVAL_MS, WATCH_INTERVAL_MS);
	uv_timer_init(n->loop, &n->autojoin.timer);
	n->autojoin.timer.data = n;
	n->no_leader_since_ms = clock_mono_ms();
	if (n->opts.n_join > 0) {
		if (!n->had_state)
			autojoin_start(n);
		else if (n->bootstrapped_here)
			log_warn("Refusing to join another cluster",
			         "node_id=%s reason=\"this data dir bootstrapped its own cluster; "
			         "wipe it to join another\"",
			         n->opts.node_id);
		else
			log_info("Not joining again", "node_id=%s reason=\"raft state exists\"",
			         n->opts.node_id);
	}
	return 0;
}

/* ---- state watch ---- */

bool node_is_leader(const struct node *n)
{
	return n->raft.state == RAFT_LEADER;
}

bool node_is_ready_leader(const struct node *n)
{
	return n->raft.state == RAFT_LEADER && n->leader_ready &&
	       n->leader_term == n->raft.current_term;
}

const char *node_state_name(const struct node *n)
{
	switch (n->raft.state) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	default:
		return "unavailable";
	}
}

int node_server_index(const struct node *n, raft_id id)
{
	for (unsigned i = 0; i < n->raft.configuration.n; i++)
		if (n->raft.configuration.servers[i].id == id)
			return (int)i;
	return -1;
}

unsigned node_voters(const struct node *n)
{
	unsigned v = 0;
	for (unsigned i = 0; i < n->raft.configuration.n; i++)
		v += n->raft.configuration.servers[i].role == RAFT_VOTER;
	return v;
}

static struct node_contact *contact_slot(struct node *n, raft_id id)
{
	for (unsigned i = 0; i < n->n_contacts; i++)
		if (n->contacts[i].id == id)
			return &n->contacts[i];
	if (n->n_contacts == sizeof n->contacts / sizeof n->contacts[0])
		return NULL;
	n->contacts[n->n_contacts].id = id;
	n->contacts[n->n_contacts].last_recv_ms = 0;
	return &n->contacts[n->n_contacts++];
}

/* recent_recv is set on every reply from a follower and cleared by raft once per election
 * timeout, so sampling it tells us, to within one election timeout, when we last heard from
 * each voter. */
static void track_contacts(struct node *n, uint64_t now)
{
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		struct raft_server *s = &n->raft.configuration.servers[i];
		struct node_contact *c = contact_slot(n, s->id);
		if (c == NULL)
			continue;
		if (s->id == n->id || n->raft.leader_state.progress[i].recent_recv)
			c->last_recv_ms = now;
	}
}

unsigned node_reachable_voters(struct node *n, raft_id exclude, bool *self_counted)
{
	uint64_t now = clock_mono_ms();
	uint64_t window = 2 * (uint64_t)n->opts.election_ms;
	unsigned count = 0;
	if (self_counted != NULL)
		*self_counted = false;
	if (n->raft.state != RAFT_LEADER)
		return 0;
	for (unsigned i = 0; i < n->raft.configuration.n; i++) {
		struct raft_server *s = &n->raft.configuration.servers[i];
		if (s->role != RAFT_VOTER || s->id == exclude)
			continue;
		struct node_contact *c = contact_slot(n, s->id);
		if (s->id == n->id || (c != NULL && c->last_recv_ms + window >= now)) {
			count++;
			if (s->id == n->id && self_counted != NULL)
				*self_counted = true;
		}
	}
	return count;
}

bool node_heard_from(struct node *n, raft_id id)
{
	if (n->raft.state != RAFT_LEADER)
		return false;
	if (id == n->id)
		return true;
	struct node_contact *c = contact_slot(n, id);
	return c != NULL && c->last_recv_ms + 2 * (uint64_t)n->opts.election_ms >= clock_mono_ms();
}

uint64_t node_last_contact_ms(struct node *n)
{
	if (n->raft.state == RAFT_LEADER)
		return 0;
	if (n->raft.state != RAFT_FOLLOWER || n->raft.follower_state.current_leader.id == 0)
		return UINT64_MAX;
	/* A follower restarts its election timer whenever the leader's AppendEntries arrives. */
	raft_time now = n->io.time(&n->io);
	return now >= n->raft.election_timer_start ? now - n->raft.election_timer_start : 0;
}

struct member_list {
	struct fsm_member *items;
	unsigned n, cap;
};

static int collect_member(const struct fsm_member *m, void *arg)
{
	struct member_list *l = arg;
	if (l->n == l->cap) {
		unsigned cap = l->cap ? l->cap * 2 : 8;
		struct fsm_member *p = realloc(l->items, cap * sizeof *p);
		if (p == NULL)
			return 1;
		l->items = p;
		l->cap = cap;
	}
	l->items[l->n++] = *m;
	return 0;
}

void node_refresh_members(struct node *n)
{
	if (n->members != NULL && n->members_version == n->fsm.members_version)
		return;
	struct member_list l = {0};
	fsm_members_each(&n->fsm, collect_member, &l);
	if (l.items == NULL)
		l.items = calloc(1, sizeof *l.items); /* non-NULL marks the cache as loaded */
	free(n->members);
	n->members = l.items;
	n->n_members = l.n;
	n->members_version = n->fsm.members_version;
}

const struct fsm_member *node_member_by_raft_id(struct node *n, raft_id id)
{
	node_refresh_members(n);
	for (unsigned i = 0; i < n->n_members; i++)
		if (n->members[i].raft_id == id)
			return &n->members[i];
	return NULL;
}

const struct fsm_member *node_member_by_node_id(struct node *n, const char *node_id)
{
	node_refresh_members(n);
	for (unsigned i = 0; i < n->n_members; i++)
		if (strcmp(n->members[i].node_id, node_id) == 0)
			return &n->members[i];
	return NULL;
}

bool node_leader(struct node *n, const struct fsm_member **m, raft_id *id, const char **raft_addr)
{
	raft_id lid = 0;
	const char *addr = NULL;
	raft_leader(&n->raft, &lid, &addr);
	if (lid == 0)
		return false;
	if (id != NULL)
		*id = lid;
	if (raft_addr != NULL)
		*raft_addr = addr;
	if (m != NULL)
		*m = node_member_by_raft_id(n, lid);
	return true;
}

/* Our own metadata (HTTP address) must be in the replicated member table for followers to
 * forward to us and for status to name us; the leader keeps its own record current. */
static void own_member_cb(struct node_propose *p, int status, void *result)
{
	(void)result;
	if (status != 0)
		log_warn("Recording own member metadata failed", "status=%s",
		         raft_strerror(status));
	free(p);
}

static void ensure_own_member(struct node *n)
{
	const struct fsm_member *m = node_member_by_node_id(n, n->opts.node_id);
	if (m != NULL && m->raft_id == n->id && strcmp(m->raft_addr, n->opts.raft_addr) == 0 &&
	    strcmp(m->http_addr, n->opts.http_addr) == 0)
		return;
	struct command c = {.type = COMMAND_MEMBER_SET, .raft_id = n->id};
	c.node_id = (struct command_str){n->opts.node_id, strlen(n->opts.node_id)};
	c.raft_addr = (struct command_str){n->opts.raft_addr, strlen(n->opts.raft_addr)};
	c.http_addr = (struct command_str){n->opts.http_addr, strlen(n->opts.http_addr)};
	struct buf b;
	buf_init(&b);
	command_encode(&c, &b);
	struct node_propose *p = calloc(1, sizeof *p);
	p->cb = own_member_cb;
	if (node_propose(n, p, &b) != 0)
		free(p);
	buf_close(&b);
}

static void ready_barrier_cb(struct raft_barrier *req, int status)
{
	struct node *n = req->data;
	n->ready_barrier_active = false;
	if (status != 0 || n->closing)
		return;
	if (n->raft.state == RAFT_LEADER && n->raft.current_term == n->leader_term) {
		n->leader_ready = true;
		ensure_own_member(n);
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
		n->n_contacts = 0;
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
		const struct fsm_member *m = node_member_by_raft_id(n, leader);
		log_info("Leader detected", "node_id=%s leader_id=%s term=%llu", n->opts.node_id,
		         m ? m->node_id : "?", (unsigned long long)n->raft.current_term);
	} else {
		n->no_leader_since_ms = clock_mono_ms();
	}
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
		track_contacts(n, now);
		if (!n->leader_ready && !n->ready_barrier_active)
			start_ready_barrier(n);
	}
	/* libraft 0.15 makes a node UNAVAILABLE for good when it cannot handle a message or a
	 * tick (a failed disk write or apply, e.g. on a full disk) and never leaves that state,
	 * while the process would go on looking alive. A restart reloads raft's state and the
	 * store from disk and recovers, so say why and leave with a failure status. */
	if (state == RAFT_UNAVAILABLE && !n->failed) {
		n->failed = true;
		log_error("Raft stopped after an I/O error; exiting so that a restart recovers",
		          "node_id=%s error=\"%s\"", n->opts.node_id, raft_errmsg(&n->raft));
		if (n->on_failed != NULL)
			n->on_failed(n->event_arg);
		return;
	}
	/* The same for a store write that failed: the fsm stopped taking writes (fsm.c). */
	if (n->fsm.failed && !n->failed) {
		n->failed = true;
		log_error("Store write failed; exiting so that a restart recovers",
		          "node_id=%s applied_index=%llu", n->opts.node_id,
		          (unsigned long long)n->fsm.applied_index);
		if (n->on_failed != NULL)
			n->on_failed(n->event_arg);
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
		n->failed = true;
		log_error("Raft log writes are stuck; exiting so that a restart recovers",
		          "node_id=%s persisted_index=%llu last_index=%llu waited_ms=%llu",
		          n->opts.node_id, (unsigned long long)stored,
		          (unsigned long long)raft_last_index(&n->raft),
		          (unsigned long long)(now - n->unstored_since_ms));
		if (n->on_failed != NULL)
			n->on_failed(n->event_arg);
		return;
	}
	n->last_watch_ms = now;
	/* A committed configuration that no longer lists us, received before the leader stopped
	 * replicating to us, means we were removed. "No longer": a joining node first installs a
	 * snapshot whose configuration predates its own admission, which is not a removal. */
	if (node_server_index(n, n->id) >= 0)
		n->listed = true;
	if (!n->removed && n->listed && n->raft.configuration.n > 0 &&
	    node_server_index(n, n->id) < 0 && n->raft.configuration_uncommitted_index == 0 &&
	    state != RAFT_LEADER) {
		n->removed = true;
		log_info(
		    "Node removed from cluster",
		    "node_id=%s reason=\"the committed configuration no longer lists this node\"",
		    n->opts.node_id);
		if (n->on_removed != NULL)
			n->on_removed(n->event_arg);
		return;
	}
	/* A node removed from the configuration is never told (0.15); once it has gone a while
	 * without a leader, ask the peers whether we are still a member. */
	if (leader == 0 && !n->autojoin.active && node_server_index(n, n->id) >= 0 &&
	    now - n->no_leader_since_ms > 3 * (uint64_t)n->opts.election_ms)
		membership_check_removed(n);
}

/* ---- shutdown ---- */

static void handle_closed(uv_handle_t *h)
{
	struct node *n = h->data;
	if (--n->closing_handles > 0)
		return;
	fsm_close(&n->fsm);
	free(n->members);
	n->members = NULL;
	free(n->raft_dir);
	free_options(n);
	if (n->close_cb != NULL)
		n->close_cb(n);
}

static void close_handle(struct node *n, uv_handle_t *h)
{
	n->closing_handles++;
	h->data = n;
	uv_close(h, handle_closed);
}

static void raft_closed(struct raft *r)
{
	struct node *n = r->data;
	raft_uv_close(&n->io);
	transport_close(&n->transport);
	close_handle(n, (uv_handle_t *)&n->watch);
	close_handle(n, (uv_handle_t *)&n->flush);
	close_handle(n, (uv_handle_t *)&n->props.wake);
	close_handle(n, (uv_handle_t *)&n->autojoin.timer);
	close_handle(n, (uv_handle_t *)&n->mship.timer);
}

void node_close(struct node *n, void (*cb)(struct node *n))
{
	n->closing = true;
	n->close_cb = cb;
	uv_timer_stop(&n->watch);
	autojoin_close(n);
	membership_close(n);
	reads_close(n);
	propose_close(n);
	transport_stop(&n->transport);
	raft_close(&n->raft, raft_closed);
}
