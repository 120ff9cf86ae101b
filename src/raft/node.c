/* node: raft server lifecycle and state accessors (see node.h; the state watch is watch.c). */
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

static void copy_options(struct node *n, const struct node_options *o)
{
	n->opts = *o;
	n->opts.node_id = strdup(o->node_id);
	n->opts.raft_addr = strdup(o->raft_addr);
	n->opts.http_addr = strdup(o->http_addr);
	n->opts.data_dir = strdup(o->data_dir);
	n->opts.peer_token = NULL;
	if (o->peer_token != NULL) {
		char *v = malloc(strlen(o->peer_token) + 8);
		if (v == NULL)
			abort();
		sprintf(v, "Bearer %s", o->peer_token);
		n->opts.peer_token = v;
	}
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
	free((char *)n->opts.peer_token);
	for (size_t i = 0; i < n->opts.n_join; i++)
		free((char *)n->opts.join[i]);
	free((char **)n->opts.join);
}

size_t node_peer_auth(struct node *n, struct fwd_header *h, size_t nh)
{
	/* opts.peer_token holds the whole header value ("Bearer NAME.SECRET"). */
	if (n->opts.peer_token != NULL)
		h[nh++] = (struct fwd_header){"Authorization", n->opts.peer_token};
	return nh;
}

void node_peer_status_get(struct node *n, const char *http_addr, unsigned timeout_ms,
                          struct node_peer_get *g)
{
	snprintf(g->url, sizeof g->url, "%s://%s/raft/status", fwd_scheme(n->fwd), http_addr);
	g->req = (struct fwd_request){.method = "GET",
	                              .url = g->url,
	                              .headers = g->h,
	                              .n_headers = node_peer_auth(n, g->h, 0),
	                              .timeout_ms = timeout_ms};
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
	n->cluster_id_version = UINT64_MAX; /* compare once at start (watch.c) */

	int found = identity_load(&n->ident, opts->data_dir, opts->node_id, err, errlen);
	if (found < 0)
		goto err_opts;
	n->bootstrapped_here = n->ident.bootstrapped;
	n->raft_dir = path_join(opts->data_dir, NODE_RAFT_DIR);
	char *db_dir = path_join(opts->data_dir, NODE_DB_DIR);
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
	peers_init(n);
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

/* Starts raft (see node.h). The identity is on disk, fsynced, before raft writes anything. */
int node_begin(struct node *n, const struct raft_configuration *conf, bool join, char *err,
               size_t errlen)
{
	if (conf != NULL) {
		n->bootstrapped_here = n->ident.bootstrapped = true;
		if (identity_save(&n->ident, n->opts.data_dir, err, errlen) != 0)
			return -1;
		int rv = raft_bootstrap(&n->raft, conf);
		if (rv != 0) {
			snprintf(err, errlen, "bootstrap failed: %s", raft_errmsg(&n->raft));
			return -1;
		}
		log_info("Bootstrapped Raft cluster",
		         "node_id=%s raft_addr=%s voters=%u cluster_id=%s", n->opts.node_id,
		         n->opts.raft_addr, conf->n, n->ident.cluster_id);
	}
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
	n->raft_started = true;
	n->no_leader_since_ms = clock_mono_ms();
	node_watch_start(n);
	if (n->had_state)
		node_check_own_address(n);
	else if (join)
		autojoin_start(n, false);
	return 0;
}

/* A plain --bootstrap: this node is the only voter of a new cluster with a new id. */
static int bootstrap_alone(struct node *n, char *err, size_t errlen)
{
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	if (identity_random_hex(n->ident.cluster_id) != 0) {
		snprintf(err, errlen, "cannot draw a random cluster id");
		return -1;
	}
	int rv = raft_configuration_add(&conf, n->id, n->opts.raft_addr, RAFT_VOTER);
	if (rv != 0) {
		raft_configuration_close(&conf);
		snprintf(err, errlen, "bootstrap failed: %s", raft_strerror(rv));
		return -1;
	}
	rv = node_begin(n, &conf, false, err, errlen);
	raft_configuration_close(&conf);
	return rv;
}

int node_start(struct node *n, char *err, size_t errlen)
{
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
	uv_timer_init(n->loop, &n->autojoin.timer);
	n->autojoin.timer.data = n;
	uv_timer_init(n->loop, &n->discovery.timer);
	n->discovery.timer.data = n;
	n->no_leader_since_ms = clock_mono_ms();

	/* The incarnation must survive a crash during discovery: peers may already have seen
	 * it. */
	snprintf(n->ident.raft_addr, sizeof n->ident.raft_addr, "%s", n->opts.raft_addr);
	n->ident.bootstrapped = n->bootstrapped_here;
	if (identity_save(&n->ident, n->opts.data_dir, err, errlen) != 0)
		return -1;
	if (n->had_state) {
		log_info("Restarting from existing raft state",
		         "node_id=%s applied_index=%llu incarnation=%s cluster_id=%s",
		         n->opts.node_id, (unsigned long long)n->fsm.applied_index,
		         n->ident.incarnation,
		         n->ident.cluster_id[0] ? n->ident.cluster_id : "unknown");
		return node_begin(n, NULL, false, err, errlen);
	}
	if (n->opts.bootstrap_expect > 0 || (n->opts.bootstrap && n->opts.n_join > 0)) {
		discovery_start(n);
		return 0;
	}
	if (n->opts.bootstrap)
		return bootstrap_alone(n, err, errlen);
	return node_begin(n, NULL, n->opts.n_join > 0, err, errlen);
}

int node_bootstrap_alone(struct node *n, char *err, size_t errlen)
{
	return bootstrap_alone(n, err, errlen);
}

/* A restart with state: our entry in the configuration names the address we ran with. One
 * that differs (--raft-addr changed, or the node moved) is announced to the cluster, which
 * updates it; without that the node would campaign forever at an address nobody dials. */
void node_check_own_address(struct node *n)
{
	int i = node_server_index(n, n->id);
	if (i >= 0 && strcmp(n->raft.configuration.servers[i].address, n->opts.raft_addr) != 0) {
		log_info("Raft address changed; asking the cluster to update this node's entry",
		         "node_id=%s old_raft_addr=%s new_raft_addr=%s", n->opts.node_id,
		         n->raft.configuration.servers[i].address, n->opts.raft_addr);
		autojoin_start(n, true);
		return;
	}
	if (n->opts.n_join == 0)
		return;
	if (n->bootstrapped_here && n->opts.bootstrap_expect == 0 && !n->opts.bootstrap)
		log_warn("Refusing to join another cluster",
		         "node_id=%s reason=\"this data dir bootstrapped its own cluster; "
		         "wipe it to join another\"",
		         n->opts.node_id);
	else
		log_info("Not joining again", "node_id=%s reason=\"raft state exists\"",
		         n->opts.node_id);
}

void node_fail(struct node *n, int code)
{
	if (n->failed)
		return;
	n->failed = true;
	n->fatal_code = code;
	if (n->on_failed != NULL)
		n->on_failed(n->event_arg);
}

void node_mark_removed(struct node *n, const char *reason)
{
	char err[256];
	if (n->removed)
		return;
	n->removed = true;
	n->ident.removed = true;
	if (identity_save(&n->ident, n->opts.data_dir, err, sizeof err) != 0)
		log_error("Cannot record the removal in the data dir", "error=\"%s\"", err);
	log_info("Node removed from cluster", "node_id=%s reason=\"%s\"", n->opts.node_id, reason);
	log_warn("This node no longer serves",
	         "node_id=%s hint=\"it stays removed across "
	         "restarts; to add this machine again stop it, delete --data-dir %s and start it "
	         "with --join (or its --bootstrap-expect command); --join alone with this data "
	         "dir will not help\"",
	         n->opts.node_id, n->opts.data_dir);
	if (n->on_removed != NULL)
		n->on_removed(n->event_arg);
}

raft_index node_applied_index(const struct node *n)
{
	return n->raft.last_applied > n->fsm.applied_index ? n->raft.last_applied
	                                                   : n->fsm.applied_index;
}

raft_index node_commit_index(const struct node *n)
{
	raft_index applied = node_applied_index(n);
	return n->raft.commit_index > applied ? n->raft.commit_index : applied;
}

const char *node_cluster_id(const struct node *n)
{
	return n->ident.cluster_id;
}

/* ---- state accessors ---- */

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
		uint64_t heard = peers_last_recv_ms(n, s->id);
		if (s->id == n->id || (heard != 0 && heard + window >= now)) {
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
	uint64_t heard = peers_last_recv_ms(n, id);
	return heard != 0 && heard + 2 * (uint64_t)n->opts.election_ms >= clock_mono_ms();
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

/* ---- shutdown ---- */

static void finish_close(struct node *n)
{
	fsm_close(&n->fsm);
	free(n->members);
	n->members = NULL;
	free(n->raft_dir);
	free_options(n);
	if (n->close_cb != NULL)
		n->close_cb(n);
}

static void handle_closed(uv_handle_t *h)
{
	struct node *n = h->data;
	if (--n->closing_handles > 0)
		return;
	n->handles_closed = true;
	if (n->holds == 0)
		finish_close(n);
}

void node_hold(struct node *n)
{
	n->holds++;
}

void node_release(struct node *n)
{
	if (--n->holds == 0 && n->handles_closed)
		finish_close(n);
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
	close_handle(n, (uv_handle_t *)&n->mship.expiry);
	close_handle(n, (uv_handle_t *)&n->discovery.timer);
}

void node_close(struct node *n, void (*cb)(struct node *n))
{
	n->closing = true;
	n->close_cb = cb;
	uv_timer_stop(&n->watch);
	discovery_close(n);
	autojoin_close(n);
	membership_close(n);
	reads_close(n);
	propose_close(n);
	transport_stop(&n->transport);
	raft_close(&n->raft, raft_closed);
}
