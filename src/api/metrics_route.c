/* metrics_route: GET /metrics in Prometheus text format 0.0.4.
 *
 * Event counters and histograms live in the metrics registry; raft state is sampled at scrape
 * time and written as gauges. `cloudless_coordinator_is_leader 1|0` stays unlabelled because
 * existing HA scripts grep for that line, without anchors: no HELP text may therefore start
 * with a value (`# HELP cloudless_coordinator_is_leader 1 if ...` matched on every node), and
 * tests/cluster/test_observability.py checks every HELP line for a metric name followed by
 * one. Counters kept by lower layers (leader changes,
 * snapshots) are folded into the registry as deltas on each scrape. */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "fsm/command.h"

static const double LATENCY_BUCKETS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                         0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
static const double LAG_BUCKETS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
                                     0.1,   0.15,   0.2,   0.3,  0.5,   1,    2.5};

void api_metrics_define(struct metrics *m)
{
	size_t nb = sizeof LATENCY_BUCKETS / sizeof LATENCY_BUCKETS[0];
	metrics_define(m, "cloudless_http_requests_total", METRICS_COUNTER,
	               "HTTP requests served, by route and status code.", NULL, 0);
	metrics_define(m, "cloudless_http_request_duration_seconds", METRICS_HISTOGRAM,
	               "Time from request arrival to response, by route.", LATENCY_BUCKETS, nb);
	metrics_define(m, "cloudless_forward_requests_total", METRICS_COUNTER,
	               "Requests forwarded to the leader, by outcome.", NULL, 0);
	metrics_define(m, "cloudless_forward_batches_total", METRICS_COUNTER,
	               "Batches of writes sent to the leader (POST /raft/forward).", NULL, 0);
	metrics_define(m, "cloudless_forward_batch_items_total", METRICS_COUNTER,
	               "Writes sent to the leader inside batches.", NULL, 0);
	metrics_define(m, "cloudless_forward_duration_seconds", METRICS_HISTOGRAM,
	               "Round trip of requests forwarded to the leader.", LATENCY_BUCKETS, nb);
	metrics_define(m, "cloudless_raft_apply_latency_seconds", METRICS_HISTOGRAM,
	               "Time from proposing a write on the leader to its apply callback.",
	               LATENCY_BUCKETS, nb);
	metrics_define(m, "cloudless_raft_proposals_total", METRICS_COUNTER,
	               "Commands this node proposed to raft as leader.", NULL, 0);
	metrics_define(m, "cloudless_raft_proposal_batches_total", METRICS_COUNTER,
	               "raft_apply calls that carried them: the commands proposed in one loop "
	               "iteration go to raft together (group commit).",
	               NULL, 0);
	metrics_define(m, "cloudless_raft_snapshot_creation_total", METRICS_COUNTER,
	               "Raft snapshots taken, by result.", NULL, 0);
	metrics_define(m, "cloudless_raft_snapshot_restore_total", METRICS_COUNTER,
	               "Raft snapshots restored (installed from the leader), by result.", NULL, 0);
	metrics_define(m, "cloudless_raft_leader_changes_seen_total", METRICS_COUNTER,
	               "Leader changes this node has observed since it started.", NULL, 0);
	metrics_define(m, "cloudless_agent_heartbeats_total", METRICS_COUNTER,
	               "Agent heartbeats this node answered as leader (none of them a raft entry "
	               "unless something changed).",
	               NULL, 0);
	metrics_define(
	    m, "cloudless_agent_enrollments_total", METRICS_COUNTER,
	    "Agent enrollments answered, by result (created, updated, unchanged, invalid).", NULL,
	    0);
	metrics_define(m, "cloudless_scheduling_decisions_total", METRICS_COUNTER,
	               "Scheduler proposals answered, by result: placed, pending (nothing fits), "
	               "refused (the state moved under the plan; planned again).",
	               NULL, 0);
	metrics_define(m, "cloudless_liveness_held_seconds_total", METRICS_COUNTER,
	               "Time the leader's liveness clock was held back because the leader itself "
	               "was not running on time (its loop or process stalled): agents' deadlines "
	               "do not run out while the leader cannot hear them.",
	               NULL, 0);
	metrics_define(m, "cloudless_liveness_spared_total", METRICS_COUNTER,
	               "Liveness sweeps that left an expired agent ready because requests older "
	               "than its deadline were still queued for the leader's loop (its heartbeat "
	               "may be among them).",
	               NULL, 0);
	metrics_define(m, "cloudless_assignment_texts_total", METRICS_COUNTER,
	               "Replica documents the leader put in heartbeat answers, by source: cached "
	               "(the text kept since the replica and its workload last changed) or "
	               "rendered (built and encoded again).",
	               NULL, 0);
	metrics_define(m, "cloudless_scheduling_duration_seconds", METRICS_HISTOGRAM,
	               "Time one scheduler pass took on the leader.", LATENCY_BUCKETS, nb);
	metrics_define(m, "cloudless_raft_entries_total", METRICS_COUNTER,
	               "Raft entries this node applied, by type (kv_put, kv_delete, member, "
	               "cluster_id, and each domain op such as agent.state or replica.report).",
	               NULL, 0);
	metrics_counter_touch(m, "cloudless_agent_heartbeats_total", NULL);
	metrics_counter_touch(m, "cloudless_liveness_held_seconds_total", NULL);
	metrics_counter_touch(m, "cloudless_liveness_spared_total", NULL);
	static const char *const results[] = {"created", "updated", "unchanged", "invalid"};
	for (size_t i = 0; i < 4; i++) {
		char l[48];
		snprintf(l, sizeof l, "result=\"%s\"", results[i]);
		metrics_counter_touch(m, "cloudless_agent_enrollments_total", l);
	}
	metrics_counter_touch(m, "cloudless_raft_snapshot_creation_total", "result=\"success\"");
	metrics_counter_touch(m, "cloudless_raft_snapshot_creation_total", "result=\"failure\"");
	metrics_counter_touch(m, "cloudless_raft_snapshot_restore_total", "result=\"success\"");
	metrics_counter_touch(m, "cloudless_raft_snapshot_restore_total", "result=\"failure\"");
	metrics_counter_touch(m, "cloudless_raft_leader_changes_seen_total", NULL);
	metrics_counter_touch(m, "cloudless_raft_proposals_total", NULL);
	metrics_counter_touch(m, "cloudless_raft_proposal_batches_total", NULL);
	size_t nl = sizeof LAG_BUCKETS / sizeof LAG_BUCKETS[0];
	metrics_define(m, "cloudless_loop_lag_seconds", METRICS_HISTOGRAM,
	               "How late the event loop ran a 10 ms timer: time raft's timers and I/O "
	               "waited behind other work.",
	               LAG_BUCKETS, nl);
	metrics_define(m, "cloudless_raft_append_send_interval_seconds", METRICS_HISTOGRAM,
	               "Time between two AppendEntries (heartbeats included) sent to the same peer "
	               "while leader.",
	               LAG_BUCKETS, nl);
}

#define WINDOW_NS (10ull * 1000 * 1000 * 1000)

static void window_roll(struct api_window_max *w, uint64_t now)
{
	if (now - w->since_ns < WINDOW_NS)
		return;
	w->prev = now - w->since_ns < 2 * WINDOW_NS ? w->cur : 0;
	w->cur = 0;
	w->since_ns = now;
}

void api_window_max_note(struct api_window_max *w, double v)
{
	window_roll(w, uv_hrtime());
	if (v > w->cur)
		w->cur = v;
}

double api_window_max_get(struct api_window_max *w)
{
	window_roll(w, uv_hrtime());
	return w->cur > w->prev ? w->cur : w->prev;
}

static void sync_counter(struct metrics *m, const char *name, const char *labels, double total)
{
	double have = metrics_counter_get(m, name, labels);
	if (total > have)
		metrics_counter_add(m, name, labels, total - have);
}

static int state_code(struct node *n)
{
	switch (n->raft.state) {
	case RAFT_FOLLOWER:
		return 0;
	case RAFT_CANDIDATE:
		return 1;
	case RAFT_LEADER:
		return 2;
	default:
		return 3;
	}
}

void api_metrics_write_leadership(struct buf *out, bool is_leader, bool has_leader, bool removed)
{
	metrics_write_gauge(out, "cloudless_coordinator_is_leader",
	                    "Whether this coordinator is the raft leader (1) or not (0).", NULL,
	                    is_leader);
	metrics_write_gauge(out, "cloudless_raft_has_leader",
	                    "Whether this node knows a raft leader (1) or not (0).", NULL,
	                    has_leader);
	metrics_write_gauge(out, "cloudless_raft_removed",
	                    "Whether the cluster removed this node (1: it serves nothing until its "
	                    "data dir is wiped) or not (0).",
	                    NULL, removed);
}

static void write_raft_gauges(struct api *a, struct buf *out)
{
	struct node *n = a->node;
	char labels[160];
	struct buf esc;
	raft_id lid = 0;
	const char *laddr;
	raft_leader(&n->raft, &lid, &laddr);
	unsigned voters = node_voters(n);

	api_metrics_write_leadership(out, node_is_leader(n), lid != 0, false);
	metrics_write_gauge(out, "cloudless_raft_term", "Current raft term.", NULL,
	                    (double)n->raft.current_term);
	metrics_write_gauge(out, "cloudless_loop_lag_max_seconds",
	                    "Longest event loop lag (see cloudless_loop_lag_seconds) in the last "
	                    "10-20 s.",
	                    NULL, api_window_max_get(&a->loop_lag_max));
	metrics_write_gauge(
	    out, "cloudless_raft_append_send_interval_max_seconds",
	    "Longest time between two AppendEntries to one peer in the last 10-20 s.", NULL,
	    api_window_max_get(&a->append_interval_max));
	metrics_write_gauge(out, "cloudless_raft_commit_index",
	                    "Highest log index this node knows to be committed (at least what its "
	                    "store has applied, also right after a restart).",
	                    NULL, (double)node_commit_index(n));
	metrics_write_gauge(out, "cloudless_raft_last_log_index", "Index of the last log entry.",
	                    NULL, (double)raft_last_index(&n->raft));
	metrics_write_gauge(out, "cloudless_coordinator_raft_applied_index",
	                    "Highest log index applied to the state machine (the store's own "
	                    "record, so a restart does not report a drop).",
	                    NULL, (double)node_applied_index(n));
	buf_init(&esc);
	metrics_escape_label(&esc, a->cfg->node_id);
	snprintf(labels, sizeof labels, "node_id=\"%s\"", esc.data ? esc.data : "");
	metrics_write_gauge(out, "cloudless_raft_node_state",
	                    "Raft state: 0 follower, 1 candidate, 2 leader, 3 unavailable.", labels,
	                    state_code(n));
	metrics_write_gauge(out, "cloudless_raft_peers",
	                    "Servers in this node's raft configuration (voters, standbys, spares).",
	                    NULL, n->raft.configuration.n);
	metrics_write_gauge(out, "cloudless_raft_voters",
	                    "Voters in this node's raft configuration.", NULL, voters);
	metrics_write_gauge(out, "cloudless_raft_healthy_voters",
	                    "Voters caught up within --health-max-lag that accepted the leader's "
	                    "appends within two election timeouts, as the leader counts them; a "
	                    "follower reports the leader's count while in touch with it, else only "
	                    "what it can confirm (itself, the leader).",
	                    NULL, node_healthy_voters(n));
	metrics_write_gauge(out, "cloudless_raft_failure_tolerance",
	                    "Healthy voters beyond the quorum: how many more may fail before the "
	                    "cluster loses it (cloudless_raft_healthy_voters minus the quorum, at "
	                    "least 0).",
	                    NULL, node_failure_tolerance(n));
	if (node_is_leader(n)) {
		metrics_write_gauge_header(
		    out, "cloudless_raft_follower_replication_lag_entries",
		    "Entries each follower trails the leader's log by, counting "
		    "only what it confirmed: one that has not accepted an "
		    "append within two election timeouts, or only rejects "
		    "(its data was lost), trails by the whole log.");
		raft_index last = raft_last_index(&n->raft);
		for (unsigned i = 0; i < n->raft.configuration.n; i++) {
			struct raft_server *s = &n->raft.configuration.servers[i];
			if (s->id == n->id)
				continue;
			const struct fsm_member *m = node_member_by_raft_id(n, s->id);
			buf_reset(&esc);
			metrics_escape_label(&esc, m ? m->node_id : s->address);
			snprintf(labels, sizeof labels, "follower_id=\"%s\"",
			         esc.data ? esc.data : "");
			raft_index match = peers_confirmed_match(n, i);
			metrics_write_sample(out, "cloudless_raft_follower_replication_lag_entries",
			                     labels, (double)(last - match));
		}
	}
	buf_close(&esc);
	metrics_write_gauge(out, "cloudless_build_info", "Build information.",
	                    "version=\"" CLOUDLESS_VERSION "\"", 1);
}

static void sync_entries(struct api *a)
{
	static const struct {
		int type;
		const char *name;
	} kinds[] = {{COMMAND_KV_PUT, "kv_put"},     {COMMAND_KV_DELETE, "kv_delete"},
	             {COMMAND_MEMBER_SET, "member"}, {COMMAND_MEMBER_DEL, "member_delete"},
	             {COMMAND_MEMBER_PUT, "member"}, {COMMAND_CLUSTER_SET, "cluster_id"}};
	struct fsm *f = &a->node->fsm;
	char labels[80];
	uint64_t member = 0;
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		uint64_t v = f->entries_by_type[kinds[i].type];
		if (strcmp(kinds[i].name, "member") == 0) {
			member += v;
			if (kinds[i].type != COMMAND_MEMBER_PUT)
				continue;
			v = member;
		}
		snprintf(labels, sizeof labels, "type=\"%s\"", kinds[i].name);
		sync_counter(a->metrics, "cloudless_raft_entries_total", labels, v);
	}
	for (unsigned i = 0; i < dom_n_ops(); i++) {
		snprintf(labels, sizeof labels, "type=\"%s\"", dom_op_names[i]);
		sync_counter(a->metrics, "cloudless_raft_entries_total", labels,
		             f->domain.stats.by_op[i]);
	}
}

static void sync_domain(struct api *a)
{
	struct domain *d = a->domain;
	if (d == NULL)
		return;
	sync_counter(a->metrics, "cloudless_scheduling_decisions_total", "result=\"placed\"",
	             d->decisions_placed);
	sync_counter(a->metrics, "cloudless_scheduling_decisions_total", "result=\"pending\"",
	             d->decisions_pending);
	sync_counter(a->metrics, "cloudless_scheduling_decisions_total", "result=\"refused\"",
	             d->decisions_refused);
	sync_counter(a->metrics, "cloudless_liveness_spared_total", NULL, d->live_spared);
	sync_counter(a->metrics, "cloudless_assignment_texts_total", "result=\"cached\"",
	             (double)d->assign.hits);
	sync_counter(a->metrics, "cloudless_assignment_texts_total", "result=\"rendered\"",
	             (double)d->assign.misses);
	sync_counter(a->metrics, "cloudless_liveness_held_seconds_total", NULL,
	             (double)d->held_ms / 1000.0);
	sync_entries(a);
}

static void write_domain_gauges(struct api *a, struct buf *out)
{
	struct fsm_domain *dom = &a->node->fsm.domain;
	char labels[64];
	metrics_write_gauge_header(out, "cloudless_agents", "Enrolled agents, by state.");
	metrics_write_sample(out, "cloudless_agents", "state=\"ready\"", dom->n_ready);
	metrics_write_sample(out, "cloudless_agents", "state=\"offline\"", dom->n_offline);
	metrics_write_gauge(out, "cloudless_workloads", "Workloads.", NULL,
	                    (double)hmap_size(&dom->workloads));
	metrics_write_gauge_header(out, "cloudless_replicas",
	                           "Replica records, by the state their agent last reported.");
	for (int i = 0; i < DOM_R_NSTATES; i++) {
		snprintf(labels, sizeof labels, "state=\"%s\"",
		         dom_rstate_name((enum dom_rstate)i));
		metrics_write_sample(out, "cloudless_replicas", labels, dom->n_by_state[i]);
	}
	if (a->domain != NULL)
		metrics_write_gauge(out, "cloudless_blocking_queries_waiting",
		                    "Blocking queries (?index) this member holds until what they "
		                    "watch changes or their wait runs out.",
		                    NULL, (double)a->domain->watches.n);
}

/* How far the API listener is behind: an overloaded loop shows here before anywhere else. */
static void write_http_gauges(struct api *a, struct buf *out)
{
	if (a->http == NULL)
		return;
	metrics_write_gauge(out, "cloudless_http_queue_oldest_seconds",
	                    "How long the oldest request not yet handed to a handler has waited "
	                    "for the loop (0 when none waits).",
	                    NULL, (double)http_server_backlog_ms(a->http) / 1000.0);
	metrics_write_gauge(out, "cloudless_http_requests_in_progress",
	                    "Requests whose handler has run and that wait for their answer (a "
	                    "commit, a forward, a blocking query).",
	                    NULL, (double)http_server_pending(a->http));
}

void api_route_metrics(struct api *a, struct http_request *req)
{
	struct node *n = a->node;
	struct buf out;
	sync_domain(a);
	sync_counter(a->metrics, "cloudless_raft_leader_changes_seen_total", NULL,
	             n->leader_changes);
	sync_counter(a->metrics, "cloudless_raft_proposals_total", NULL, n->props.proposed);
	sync_counter(a->metrics, "cloudless_raft_proposal_batches_total", NULL, n->props.batches);
	sync_counter(a->metrics, "cloudless_raft_snapshot_creation_total", "result=\"success\"",
	             n->fsm.stats.snapshots_ok);
	sync_counter(a->metrics, "cloudless_raft_snapshot_creation_total", "result=\"failure\"",
	             n->fsm.stats.snapshots_failed);
	sync_counter(a->metrics, "cloudless_raft_snapshot_restore_total", "result=\"success\"",
	             n->fsm.stats.restores_ok);
	sync_counter(a->metrics, "cloudless_raft_snapshot_restore_total", "result=\"failure\"",
	             n->fsm.stats.restores_failed);
	buf_init(&out);
	metrics_render(a->metrics, &out);
	write_raft_gauges(a, &out);
	write_domain_gauges(a, &out);
	write_http_gauges(a, &out);
	http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
	buf_close(&out);
}
