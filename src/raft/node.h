/* node: one coordinator's raft server (libraft + raft_uv on the shared libuv loop).
 *
 * Owns the raft instance, its I/O and TCP transport, and the fsm. Because libraft 0.15 has no
 * state-change callback, a short uv_timer ("watch") polls raft's state to notice elections,
 * log "Became leader"/"Lost leadership", count leader changes, confirm a new leader with a
 * barrier before it serves reads, track which voters the leader still hears from, and let a
 * node that was removed from the cluster notice it. Everything here runs on the loop thread.
 *
 * Upper layers (api/) propose commands with node_propose, wait for linearizable reads with
 * node_read_barrier (reads.c) and change membership with node_join/node_remove/node_transfer
 * (membership.c). Auto-join at start-up lives in autojoin.c. */
#ifndef CLOUDLESS_RAFT_NODE_H
#define CLOUDLESS_RAFT_NODE_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "forward/forward.h"
#include "fsm/fsm.h"
#include "metrics/metrics.h"
#include "raft/transport.h"
#include "util/buf.h"

struct node_options {
	const char *node_id;
	const char *raft_addr;
	const char *http_addr; /* advertised HTTP address of this node */
	const char *data_dir;
	bool bootstrap;
	const char *const *join; /* HTTP addresses of existing members */
	size_t n_join;
	unsigned heartbeat_ms;
	unsigned election_ms;
	unsigned snapshot_threshold;
	unsigned snapshot_trailing;
	unsigned connect_retry_ms;
};

/* A proposed command in flight. */
struct node_propose;
typedef void (*node_propose_cb)(struct node_propose *p, int status, void *result);
struct node_propose {
	node_propose_cb cb;
	void *data;
	uint64_t start_ns;
	raft_index index;          /* the entry's index once handed to raft (propose.c) */
	raft_term term;            /* the term it was appended in */
	struct raft_buffer buf;    /* the padded command until raft owns it */
	struct node_propose *next; /* queue / in-flight list */
};

/* Group commit (propose.c): commands queued during a loop iteration, and those handed to raft
 * waiting for their entry to apply, in index order. */
struct node_proposals {
	struct node_propose *queued, *queued_tail;
	struct node_propose *inflight, *inflight_tail;
	uv_idle_t wake;    /* active while commands are queued: the loop must not block */
	uint64_t proposed; /* commands handed to raft (metrics) */
	uint64_t batches;  /* raft_apply calls that carried them */
};

/* A linearizable read waiting for leadership to be confirmed. */
struct node_read;
typedef void (*node_read_cb)(struct node_read *r, int status);
struct node_read {
	node_read_cb cb;
	void *data;
	struct node_read *next;
};

/* A membership operation (join, remove, transfer); see membership.c. */
struct node_change;
typedef void (*node_change_cb)(struct node_change *c);
enum node_change_kind { NODE_CHANGE_JOIN, NODE_CHANGE_REMOVE, NODE_CHANGE_TRANSFER };
struct node_change {
	enum node_change_kind kind;
	char node_id[COMMAND_MAX_ID + 1]; /* empty for "any voter" transfers */
	char raft_addr[COMMAND_MAX_ADDR + 1];
	char http_addr[COMMAND_MAX_ADDR + 1];
	node_change_cb cb;
	void *data;
	/* outcome, filled before cb runs */
	unsigned http_status; /* 200 ok, 404, 409, 503, 500 */
	bool changed;         /* false for an idempotent no-op */
	bool is_retry; /* in: re-sent after an unknown outcome; "already removed" is success */
	bool retry_elsewhere; /* failed only because this node stopped leading: safe to retry on
	                         the new leader (nothing half-done stays behind) */
	char message[256];
	/* internal */
	int step;
	bool waiting; /* a raft callback is pending */
	uint64_t deadline_ms;
	raft_id target;
	raft_id replace_id;
	struct node *node;
	struct node_change *next;
	union {
		struct raft_change change;
		struct raft_transfer transfer;
	} req;
	struct node_propose propose;
};

/* Per-voter contact tracking, refreshed by the watch timer while leader. */
struct node_contact {
	raft_id id;
	uint64_t last_recv_ms; /* monotonic */
};

struct node_membership {
	struct node_change *head, *tail; /* queue; head is running */
	unsigned queued;
	uv_timer_t timer; /* drives catch-up polling and transfer waits */
};

struct node_reads {
	struct node_read *waiting;  /* arrived after the barrier in flight was proposed */
	struct node_read *inflight; /* answered by the barrier in flight */
	struct raft_barrier barrier;
	bool barrier_active;
};

struct node_autojoin {
	bool active;
	bool joined;
	size_t next;
	unsigned delay_ms;
	unsigned attempts;
	char hint[COMMAND_MAX_ADDR + 1]; /* leader HTTP address learned from a refusal */
	uv_timer_t timer;
	uint64_t xfer; /* the join request in flight (fwd_cancel id), 0 when none */
};

struct node_removal_check {
	bool inflight;
	unsigned pending;
	uint64_t last_ms;
	uint64_t *xfers; /* the status requests of the current check (fwd_cancel ids) */
	unsigned n_xfers, cap_xfers;
};

typedef void (*node_event_cb)(void *arg);

struct node {
	uv_loop_t *loop;
	struct raft raft;
	struct raft_io io;
	struct transport transport;
	struct fsm fsm;
	struct fwd *fwd;          /* borrowed */
	struct metrics *metrics;  /* borrowed */
	struct node_options opts; /* strings owned (copied) */
	raft_id id;
	char *raft_dir;
	bool had_state;         /* raft state existed at start-up */
	bool bootstrapped_here; /* this data dir bootstrapped its own cluster */

	uv_timer_t watch;
	uv_prepare_t flush; /* once per loop iteration: propose_flush, fsm_flush */
	struct node_proposals props;
	int last_state;
	raft_id last_leader;
	raft_term leader_term; /* term in which we became leader */
	bool leader_ready;     /* our barrier in leader_term committed */
	struct raft_barrier ready_barrier;
	bool ready_barrier_active;
	uint64_t leader_changes;
	uint64_t no_leader_since_ms;
	struct node_contact contacts[16];
	unsigned n_contacts;

	struct fsm_member *members; /* cache of n/ records, refreshed on change */
	unsigned n_members;
	uint64_t members_version;

	struct node_membership mship;
	struct node_reads reads;
	struct node_autojoin autojoin;
	struct node_removal_check removal;

	bool removed;
	/* Some configuration this process saw listed us: until then a configuration without us
	 * is one from before we joined (e.g. in the snapshot a joining node installs), not a
	 * removal. */
	bool listed;
	bool closing;
	node_event_cb on_removed; /* the node learned it is no longer a member */
	node_event_cb on_failed;  /* raft stopped for good (RAFT_UNAVAILABLE); restart to recover */
	bool failed;
	raft_index unstored_at;     /* stuck-append watch (watch_cb): last_stored seen ... */
	uint64_t unstored_since_ms; /* ... unchanged since, with entries waiting to be stored */
	uint64_t last_watch_ms;     /* previous watch tick */
	void *event_arg;
	void (*close_cb)(struct node *n);
	unsigned closing_handles;
};

/* Derives the raft id (stable 63-bit hash) from the human node id. */
raft_id node_raft_id(const char *node_id);

int node_init(struct node *n, uv_loop_t *loop, const struct node_options *opts, struct fwd *fwd,
              struct metrics *metrics, char *err, size_t errlen);
/* Bootstraps if asked and needed, starts raft, the watch timer and auto-join. */
int node_start(struct node *n, char *err, size_t errlen);
/* Closes raft (failing pending requests) and every handle; cb runs when all is released. */
void node_close(struct node *n, void (*cb)(struct node *n));

/* Copies `cmd` into a raft buffer and proposes it with the other commands of this loop
 * iteration (propose.c). 0, or a raft error code (RAFT_NOTLEADER, RAFT_NOMEM, ...) in which
 * case cb will not run. cb gets the entry's own fsm result once it is applied, or a raft
 * error: with p->index still 0 raft refused the command when it was handed over (nothing was
 * appended, as if node_propose had returned that error), otherwise the outcome is unknown. */
int node_propose(struct node *n, struct node_propose *p, const struct buf *cmd);
void propose_init(struct node *n);
/* Hands the queued commands to raft; called once per loop iteration (node's prepare). */
void propose_flush(struct node *n);
/* The fsm applied `index` with `result` (fsm applied_hook). */
void node_propose_applied(struct node *n, raft_index index, void *result);
/* Fails every queued and waiting proposal with RAFT_SHUTDOWN. */
void propose_close(struct node *n);

/* Linearizable-read gate (reads.c): cb(0) once a barrier proposed after this call commits
 * in our leadership; non-zero raft status otherwise. Concurrent reads share a barrier. */
int node_read_barrier(struct node *n, struct node_read *r);
void reads_fail_all(struct node *n, int status);
void reads_close(struct node *n);

/* Membership (membership.c). The change struct must stay alive until its cb runs. */
void node_change_submit(struct node *n, struct node_change *c);
/* Leader only: the voter a leadership transfer should target, 0 when there is none. */
raft_id node_best_voter(struct node *n);
void membership_init(struct node *n);
void membership_fail_all(struct node *n, unsigned status, const char *why);
void membership_close(struct node *n);

/* Auto-join (autojoin.c). */
void autojoin_start(struct node *n);
void autojoin_close(struct node *n);

/* Removal detection (membership.c): asks peers whether we are still in the configuration. */
void membership_check_removed(struct node *n);

/* State accessors for status/health/metrics. */
bool node_is_leader(const struct node *n);
/* Leader that has confirmed its term with a committed barrier: safe to serve reads. */
bool node_is_ready_leader(const struct node *n);
const char *node_state_name(const struct node *n);
/* Current leader's metadata; false when no leader is known. */
bool node_leader(struct node *n, const struct fsm_member **m, raft_id *id, const char **raft_addr);
const struct fsm_member *node_member_by_raft_id(struct node *n, raft_id id);
const struct fsm_member *node_member_by_node_id(struct node *n, const char *node_id);
/* Milliseconds since this node last heard from the leader (0 on the leader; UINT64_MAX when
 * never). */
uint64_t node_last_contact_ms(struct node *n);
/* Voters (including us when leader) heard from within two election timeouts. */
unsigned node_reachable_voters(struct node *n, raft_id exclude, bool *self_counted);
/* Whether we lead and heard from voter `id` within that same window (always true for us). */
bool node_heard_from(struct node *n, raft_id id);
unsigned node_voters(const struct node *n);
/* Index in configuration.servers of id, or -1. */
int node_server_index(const struct node *n, raft_id id);
/* Refreshes the member cache if the fsm changed it. */
void node_refresh_members(struct node *n);

#endif
