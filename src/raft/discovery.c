/* discovery: forming a cluster with --bootstrap-expect N, and looking before a plain
 * --bootstrap that also names --join peers.
 *
 * The goal (as with Consul's and Nomad's bootstrap_expect) is one command per node that is
 * always safe to run again: the first time, N nodes started with the same --join list form
 * one cluster; later, the same command on a restarted or wiped node joins the cluster that
 * exists, and never creates a second one. No node is special.
 *
 * A node with an empty data dir asks every --join address for GET /raft/status, every
 * ROUND_MS (+-20%), and decides from the answers:
 *   - a peer belongs to a cluster (its configuration is not empty): if that peer's founders
 *     list names us with our incarnation, our fellow founders bootstrapped before we did and
 *     we bootstrap with exactly their configuration (raft needs our vote); otherwise we join
 *     (autojoin.c; a member whose data was lost is replaced there, membership.c);
 *   - otherwise, the peers forming (empty, started with --bootstrap-expect) and we make the
 *     candidate founders. Each forming node publishes the node ids it sees forming. Once
 *     exactly N are forming and every one of them reports the same set, each of them
 *     bootstraps with that set as its voters, sorted by node id: every founder writes the
 *     same first entry, so they form one cluster whose id is derived from the founders'
 *     ids and incarnations. More than N forming nodes is a misconfiguration: we wait and
 *     say so.
 *   - nobody answers (peers down, paused, or not started): we wait. A wiped node whose
 *     peers are unreachable therefore never starts a cluster of its own.
 * With plain --bootstrap and --join, a peer that belongs to a cluster makes the node refuse
 * to start (exit 2) rather than create a second cluster; once every peer has answered and
 * none belongs to one, it bootstraps alone as --bootstrap always did.
 *
 * Raft does not run during discovery (it is started by node_begin once decided); the HTTP
 * server does, since the peers ask us the same questions. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "raft/node.h"
#include "util/clock.h"

#define ROUND_MS       300
#define ASK_TIMEOUT_MS 1000
#define NOTE_EVERY_MS  5000

static void round_start(struct node *n);

static void timer_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	if (n->discovery.active && !n->closing)
		round_start(n);
}

static void schedule(struct node *n)
{
	unsigned span = ROUND_MS / 5;
	unsigned wait = ROUND_MS - span + (unsigned)(rand() % (int)(2 * span + 1));
	uv_timer_start(&n->discovery.timer, timer_cb, wait, 0);
}

static void copy_json_str(char *dst, size_t size, json_t *o, const char *name)
{
	const char *v = json_string_value(json_object_get(o, name));
	snprintf(dst, size, "%s", v != NULL ? v : "");
}

static void read_founders(struct node *n, struct discovery_peer *p, json_t *arr)
{
	size_t i;
	json_t *f;
	p->n_founders = 0;
	p->founder_here = false;
	json_array_foreach(arr, i, f)
	{
		if (p->n_founders == IDENTITY_MAX_FOUNDERS)
			break;
		struct identity_founder *d = &p->founders[p->n_founders++];
		copy_json_str(d->node_id, sizeof d->node_id, f, "node_id");
		copy_json_str(d->raft_addr, sizeof d->raft_addr, f, "raft_addr");
		copy_json_str(d->http_addr, sizeof d->http_addr, f, "http_addr");
		copy_json_str(d->incarnation, sizeof d->incarnation, f, "incarnation");
		if (strcmp(d->node_id, n->opts.node_id) == 0 &&
		    strcmp(d->incarnation, n->ident.incarnation) == 0)
			p->founder_here = true;
	}
}

static void read_status(struct node *n, struct discovery_peer *p, json_t *o)
{
	json_t *servers = json_object_get(o, "servers");
	json_t *forming = json_object_get(o, "forming");
	copy_json_str(p->node_id, sizeof p->node_id, o, "node_id");
	copy_json_str(p->raft_addr, sizeof p->raft_addr, o, "raft_addr");
	copy_json_str(p->http_addr, sizeof p->http_addr, o, "http_addr");
	copy_json_str(p->incarnation, sizeof p->incarnation, o, "incarnation");
	copy_json_str(p->cluster_id, sizeof p->cluster_id, o, "cluster_id");
	p->member = json_array_size(servers) > 0;
	p->forming = !p->member && json_is_object(forming);
	p->seen[0] = '\0';
	if (p->forming) {
		/* "seen" is a JSON array of node ids, sorted by the sender. */
		size_t i, len = 0;
		json_t *id;
		json_array_foreach(json_object_get(forming, "seen"), i, id) len += (size_t)snprintf(
		    p->seen + len, len < sizeof p->seen ? sizeof p->seen - len : 0, "%s%s",
		    i ? "," : "", json_string_value(id) ? json_string_value(id) : "");
	}
	read_founders(n, p, json_object_get(o, "founders"));
	p->answered = p->node_id[0] != '\0';
}

static void evaluate(struct node *n);

static void ask_reply(const struct fwd_response *r, void *arg)
{
	struct discovery_peer *p = arg;
	struct node *n = p->node;
	n->discovery.pending--;
	if (!n->discovery.active || n->closing)
		return;
	json_error_t jerr;
	json_t *o = r->result == FWD_OK && r->status == 200
	                ? json_loadb(r->body, r->body_len, 0, &jerr)
	                : NULL;
	if (o != NULL)
		read_status(n, p, o);
	json_decref(o);
	if (n->discovery.pending == 0)
		evaluate(n);
}

static void round_start(struct node *n)
{
	struct node_discovery *d = &n->discovery;
	d->pending = 0;
	for (unsigned i = 0; i < d->n_peers; i++) {
		struct discovery_peer *p = &d->peers[i];
		struct node_peer_get g;
		p->answered = false;
		node_peer_status_get(n, p->addr, ASK_TIMEOUT_MS, &g);
		if (fwd_send(n->fwd, &g.req, ask_reply, p) == 0)
			d->pending++;
	}
	if (d->pending == 0)
		evaluate(n);
}

/* Rate-limited progress line, so an operator sees why a node waits. */
static void note(struct node *n, const char *msg, const char *detail)
{
	uint64_t now = clock_mono_ms();
	if (now - n->discovery.last_note_ms < NOTE_EVERY_MS)
		return;
	n->discovery.last_note_ms = now;
	log_info(msg, "node_id=%s %s", n->opts.node_id, detail);
}

static int cmp_founder(const void *a, const void *b)
{
	return strcmp(((const struct identity_founder *)a)->node_id,
	              ((const struct identity_founder *)b)->node_id);
}

/* The founders agree on the id without talking about it: a hash of their sorted ids and
 * incarnations, as two independent FNV-1a words. */
static void founders_cluster_id(const struct identity *id, char out[IDENTITY_HEX_LEN + 1])
{
	uint64_t h1 = COMMAND_HASH_INIT, h2 = COMMAND_HASH_INIT ^ 0x9e3779b97f4a7c15ULL;
	for (unsigned i = 0; i < id->n_founders; i++) {
		const struct identity_founder *f = &id->founders[i];
		h1 = command_hash(h1, f->node_id, strlen(f->node_id) + 1);
		h1 = command_hash(h1, f->incarnation, strlen(f->incarnation) + 1);
		h2 = command_hash(h2, f->incarnation, strlen(f->incarnation) + 1);
		h2 = command_hash(h2, f->node_id, strlen(f->node_id) + 1);
	}
	snprintf(out, IDENTITY_HEX_LEN + 1, "%016llx%016llx", (unsigned long long)h1,
	         (unsigned long long)h2);
}

/* Bootstraps with the founders in n->ident (sorted), all voters. */
static void bootstrap_founders(struct node *n, const char *cluster_id)
{
	char err[512];
	struct raft_configuration conf;
	struct identity *id = &n->ident;
	qsort(id->founders, id->n_founders, sizeof id->founders[0], cmp_founder);
	if (cluster_id != NULL && cluster_id[0] != '\0')
		snprintf(id->cluster_id, sizeof id->cluster_id, "%s", cluster_id);
	else
		founders_cluster_id(id, id->cluster_id);
	raft_configuration_init(&conf);
	int rv = 0;
	for (unsigned i = 0; i < id->n_founders && rv == 0; i++)
		rv = raft_configuration_add(&conf, node_raft_id(id->founders[i].node_id),
		                            id->founders[i].raft_addr, RAFT_VOTER);
	n->discovery.active = false;
	uv_timer_stop(&n->discovery.timer);
	if (rv != 0)
		snprintf(err, sizeof err, "cannot build the founders' configuration: %s",
		         raft_strerror(rv));
	if (rv != 0 || node_begin(n, &conf, false, err, sizeof err) != 0) {
		log_error("Cannot form the cluster", "node_id=%s error=\"%s\"", n->opts.node_id,
		          err);
		node_fail(n, 1);
	}
	raft_configuration_close(&conf);
}

static void add_founder(struct identity *id, const char *node_id, const char *raft_addr,
                        const char *http_addr, const char *incarnation)
{
	if (id->n_founders == IDENTITY_MAX_FOUNDERS)
		return;
	struct identity_founder *f = &id->founders[id->n_founders++];
	snprintf(f->node_id, sizeof f->node_id, "%s", node_id);
	snprintf(f->raft_addr, sizeof f->raft_addr, "%s", raft_addr);
	snprintf(f->http_addr, sizeof f->http_addr, "%s", http_addr);
	snprintf(f->incarnation, sizeof f->incarnation, "%s", incarnation);
}

static void start_raft(struct node *n, bool join)
{
	char err[512];
	n->discovery.active = false;
	uv_timer_stop(&n->discovery.timer);
	if (node_begin(n, NULL, join, err, sizeof err) != 0) {
		log_error("Cannot start raft", "node_id=%s error=\"%s\"", n->opts.node_id, err);
		node_fail(n, 1);
	}
}

/* A peer already belongs to a cluster. */
static void found_cluster(struct node *n, const struct discovery_peer *member)
{
	if (n->opts.bootstrap) {
		log_error(
		    "Refusing to bootstrap a second cluster",
		    "node_id=%s peer=%s peer_node_id=%s cluster_id=%s hint=\"a --join peer "
		    "already belongs to a cluster: start this node without --bootstrap to join "
		    "it\"",
		    n->opts.node_id, member->addr, member->node_id, member->cluster_id);
		n->discovery.active = false;
		uv_timer_stop(&n->discovery.timer);
		node_fail(n, 2);
		return;
	}
	if (member->founder_here) {
		/* Our fellow founders bootstrapped first; their configuration needs our vote. */
		n->ident.n_founders = 0;
		for (unsigned i = 0; i < member->n_founders; i++)
			add_founder(&n->ident, member->founders[i].node_id,
			            member->founders[i].raft_addr, member->founders[i].http_addr,
			            member->founders[i].incarnation);
		log_info("Founders already bootstrapped; bootstrapping with them",
		         "node_id=%s via=%s cluster_id=%s", n->opts.node_id, member->addr,
		         member->cluster_id);
		bootstrap_founders(n, member->cluster_id);
		return;
	}
	log_info("Joining the existing cluster", "node_id=%s via=%s cluster_id=%s", n->opts.node_id,
	         member->addr, member->cluster_id);
	start_raft(n, true);
}

/* The sorted, comma-joined node ids of the forming peers that answered, and us. */
static unsigned forming_set(struct node *n, char *out, size_t size)
{
	/* Fully initialised: only ids[0..k) is ever read, but at -O3 gcc inlines this into
	 * evaluate() and cannot prove that the dedup loop stays below k (-Wmaybe-uninitialized
	 * broke release builds with -Werror). */
	const char *ids[IDENTITY_MAX_FOUNDERS + 1] = {n->opts.node_id};
	unsigned k = 1;
	for (unsigned i = 0; i < n->discovery.n_peers && k <= IDENTITY_MAX_FOUNDERS; i++) {
		struct discovery_peer *p = &n->discovery.peers[i];
		bool dup = false;
		if (!p->answered || !p->forming)
			continue;
		for (unsigned j = 0; j < k; j++)
			dup = dup || strcmp(ids[j], p->node_id) == 0;
		if (!dup)
			ids[k++] = p->node_id;
	}
	for (unsigned i = 1; i < k; i++) /* insertion sort: a handful of ids */
		for (unsigned j = i; j > 0 && strcmp(ids[j - 1], ids[j]) > 0; j--) {
			const char *t = ids[j];
			ids[j] = ids[j - 1];
			ids[j - 1] = t;
		}
	size_t len = 0;
	out[0] = '\0';
	for (unsigned i = 0; i < k; i++)
		len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%s%s",
		                        i ? "," : "", ids[i]);
	return k;
}

static void try_form(struct node *n)
{
	struct node_discovery *d = &n->discovery;
	char detail[640];
	unsigned expect = n->opts.bootstrap_expect;
	unsigned k = forming_set(n, d->seen, sizeof d->seen);
	if (k > expect) {
		snprintf(detail, sizeof detail, "expect=%u forming=\"%s\"", expect, d->seen);
		note(n, "More nodes are forming a cluster than --bootstrap-expect; waiting",
		     detail);
		return;
	}
	bool agreed = k == expect;
	for (unsigned i = 0; i < d->n_peers && agreed; i++) {
		struct discovery_peer *p = &d->peers[i];
		if (p->answered && p->forming && strcmp(p->node_id, n->opts.node_id) != 0)
			agreed = strcmp(p->seen, d->seen) == 0;
	}
	if (!agreed) {
		snprintf(detail, sizeof detail, "expect=%u forming=\"%s\"", expect, d->seen);
		note(n, "Waiting for the cluster's founders", detail);
		return;
	}
	n->ident.n_founders = 0;
	add_founder(&n->ident, n->opts.node_id, n->opts.raft_addr, n->opts.http_addr,
	            n->ident.incarnation);
	for (unsigned i = 0; i < d->n_peers; i++) {
		struct discovery_peer *p = &d->peers[i];
		bool dup = false;
		if (!p->answered || !p->forming)
			continue;
		for (unsigned j = 0; j < n->ident.n_founders; j++)
			dup = dup || strcmp(n->ident.founders[j].node_id, p->node_id) == 0;
		if (!dup)
			add_founder(&n->ident, p->node_id, p->raft_addr, p->http_addr,
			            p->incarnation);
	}
	log_info("Forming the cluster", "node_id=%s founders=\"%s\"", n->opts.node_id, d->seen);
	bootstrap_founders(n, NULL);
}

static void evaluate(struct node *n)
{
	struct node_discovery *d = &n->discovery;
	unsigned answered = 0, ours = 0;
	for (unsigned i = 0; i < d->n_peers; i++) {
		struct discovery_peer *p = &d->peers[i];
		if (!p->answered)
			continue;
		if (strcmp(p->node_id, n->opts.node_id) == 0) {
			ours++; /* our own address is in the list */
			continue;
		}
		answered++;
		if (p->member) {
			found_cluster(n, p);
			return;
		}
	}
	if (n->opts.bootstrap_expect > 0) {
		try_form(n);
	} else if (answered + ours >= d->n_peers) {
		/* Plain --bootstrap: everybody answered and nobody belongs to a cluster. */
		char err[512];
		d->active = false;
		uv_timer_stop(&d->timer);
		if (node_bootstrap_alone(n, err, sizeof err) != 0) {
			log_error("Cannot bootstrap", "node_id=%s error=\"%s\"", n->opts.node_id,
			          err);
			node_fail(n, 1);
		}
		return;
	} else {
		char detail[64];
		snprintf(detail, sizeof detail, "answered=%u of=%zu", answered, n->opts.n_join);
		note(n, "Waiting for every --join peer to answer before bootstrapping", detail);
	}
	if (d->active)
		schedule(n);
}

void discovery_start(struct node *n)
{
	struct node_discovery *d = &n->discovery;
	d->active = true;
	d->n_peers = 0;
	for (size_t i = 0; i < n->opts.n_join && d->n_peers < sizeof d->peers / sizeof d->peers[0];
	     i++) {
		struct discovery_peer *p = &d->peers[d->n_peers++];
		memset(p, 0, sizeof *p);
		p->node = n;
		snprintf(p->addr, sizeof p->addr, "%s", n->opts.join[i]);
	}
	snprintf(d->seen, sizeof d->seen, "%s", n->opts.node_id);
	srand((unsigned)uv_hrtime() ^ (unsigned)n->id);
	log_info(n->opts.bootstrap ? "Asking --join peers before bootstrapping"
	                           : "Looking for the cluster's founders",
	         "node_id=%s expect=%u peers=%zu incarnation=%s", n->opts.node_id,
	         n->opts.bootstrap_expect, n->opts.n_join, n->ident.incarnation);
	round_start(n);
}

void discovery_close(struct node *n)
{
	n->discovery.active = false;
	uv_timer_stop(&n->discovery.timer);
}
