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
#include "raft/identity.h"
#include "raft/transport.h"
#include "util/buf.h"

/* A data dir (--data-dir) holds identity.json (identity.h), the raft log and snapshots under
 * NODE_RAFT_DIR (raft_uv) and the store under NODE_DB_DIR (RocksDB, whose LOCK file tells
 * whether a process has it open). raft/offline.c writes and rewrites the same layout. */
#define NODE_RAFT_DIR "raft"
#define NODE_DB_DIR   "db"

struct node_options {
	const char *node_id;
	const char *raft_addr;
	const char *http_addr; /* advertised HTTP address of this node */
	const char *data_dir;
	bool bootstrap;
	unsigned bootstrap_expect; /* form a cluster of this many founders (discovery.c) */
	const char *const *join;   /* HTTP addresses of existing members */
	size_t n_join;
	unsigned heartbeat_ms;
	unsigned election_ms;
	unsigned snapshot_threshold;
	unsigned snapshot_trailing;
	unsigned connect_retry_ms;
	unsigned catch_up_timeout_ms; /* a joiner without catch-up progress this long is dropped */
	unsigned health_max_lag; /* entries a voter may trail by and still count as caught up */
	/* --join-token (NAME.SECRET) or NULL: presented to the other coordinators on every
	 * request this node makes of its own (join, status, removal notice). Never added to a
	 * request forwarded for a client: that carries the client's own credential. */
	const char *peer_token;
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
	char incarnation[COMMAND_MAX_INCARNATION +
	                 1]; /* join: the joiner's data dir; "" = unknown */
	char cluster_id[COMMAND_MAX_INCARNATION +
	                1];   /* join: the cluster it belongs to, "" = none */
	uint64_t start_by_ms; /* a change not started by then is dropped (504); 0 = no limit */
	node_change_cb cb;
	void *data;
	/* outcome, filled before cb runs */
	unsigned http_status;              /* 200 ok, 404, 409, 503, 504, 500 */
	const char *slug;                  /* problem type for a failure (static string) */
	char replaced[COMMAND_MAX_ID + 1]; /* join: the member whose entry it replaced, "" = none */
	bool changed;                      /* false for an idempotent no-op */
	bool is_retry; /* in: re-sent after an unknown outcome; "already removed" is success */
	bool retry_elsewhere; /* failed only because this node stopped leading: safe to retry on
	                         the new leader (nothing half-done stays behind) */
	char message[256];
	/* internal */
	int step;
	bool waiting; /* a raft callback is pending */
	uint64_t deadline_ms;
	uint64_t progress_ms; /* catch-up: when the joiner's match index last moved */
	raft_index progress_match;
	bool new_incarnation; /* join: same id, another data dir: its old entry goes first */
	char notify_http[COMMAND_MAX_ADDR + 1]; /* tell this address it was removed, when done */
	char notify_id[COMMAND_MAX_ID + 1];
	raft_id target;
	raft_id replace_id;
	struct node *node;
	struct node_change *next;
	union {
		struct raft_change change;
		struct raft_transfer transfer;
		struct raft_barrier barrier; /* join: the apply that lets raft snapshot */
	} req;
	struct node_propose propose;
};

/* What raft's messages said about one server (peers.c). Times are monotonic ms, 0 = never. */
struct node_peer {
	raft_id id;
	uint64_t last_recv_ms;    /* any message from it */
	uint64_t last_answer_ms;  /* leader: an AppendEntries result in our term */
	uint64_t last_ok_ms;      /* leader: ... that accepted the entries */
	raft_index reported_last; /* its last log index in that result */
	bool lost_data;           /* it reported fewer entries than it had acknowledged */
};

#define NODE_MAX_PEERS 32

struct node_peers {
	struct node_peer v[NODE_MAX_PEERS];
	unsigned n;
	int (*io_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
	                raft_io_recv_cb recv); /* raft_uv's own */
	raft_io_recv_cb raft_recv;             /* raft's own */
	raft_index leader_commit;              /* follower: highest leader commit index seen */
};

struct node_membership {
	struct node_change *head, *tail; /* queue; head is running */
	unsigned queued;
	uv_timer_t timer;  /* drives catch-up polling and transfer waits */
	uv_timer_t expiry; /* answers queued changes whose start deadline passed */
};

/* A snapshot forced for a joiner (compact.c). */
struct node_compact {
	bool forced;       /* the snapshot threshold is lowered right now */
	raft_index target; /* the snapshot must cover this index */
	raft_index replay; /* entries the joiner would have replayed without it */
	uint64_t started_ms;
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
	bool update;             /* re-announcing our own entry (new address), not joining afresh */
	bool refused;            /* the cluster refused us for good (another cluster id) */
	uint64_t next_update_ms; /* earliest time for another self-update join */
	size_t next;
	unsigned delay_ms;
	unsigned attempts;
	char hint[COMMAND_MAX_ADDR + 1]; /* leader HTTP address learned from a refusal */
	uv_timer_t timer;
	uint64_t xfer; /* the join request in flight (fwd_cancel id), 0 when none */
};

/* --bootstrap-expect discovery and the --join check before a plain --bootstrap (discovery.c). */
struct node;
struct discovery_peer {
	struct node *node;
	char addr[COMMAND_MAX_ADDR + 1]; /* the --join address asked */
	bool answered;                   /* in the latest round */
	bool member;                     /* it belongs to a cluster */
	bool forming;                    /* it is forming one (--bootstrap-expect, no state) */
	char node_id[COMMAND_MAX_ID + 1];
	char raft_addr[COMMAND_MAX_ADDR + 1];
	char http_addr[COMMAND_MAX_ADDR + 1];
	char incarnation[IDENTITY_HEX_LEN + 1];
	char cluster_id[IDENTITY_HEX_LEN + 1];
	char seen[512];    /* forming: the node ids it sees forming, sorted, comma-joined */
	bool founder_here; /* member: its founders list us with our incarnation */
	struct identity_founder founders[IDENTITY_MAX_FOUNDERS];
	unsigned n_founders;
};

struct node_discovery {
	bool active;
	unsigned pending; /* status requests of the current round still out */
	struct discovery_peer peers[16];
	unsigned n_peers;
	char seen[512]; /* what we publish in /raft/status while forming */
	uint64_t last_note_ms;
	uv_timer_t timer;
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
	struct identity ident;  /* <data-dir>/identity.json (identity.h) */
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
	uint64_t leader_since_ms; /* when the current leader was first seen */
	struct node_peers peers;

	struct fsm_member *members; /* cache of n/ records, refreshed on change */
	unsigned n_members;
	uint64_t members_version;
	uint64_t cluster_id_version; /* members_version when the cluster id was last compared */

	struct node_membership mship;
	struct node_compact compact;
	struct node_reads reads;
	struct node_autojoin autojoin;
	struct node_removal_check removal;

	struct node_discovery discovery;
	bool raft_started; /* raft_start ran (not yet during discovery) */
	int fatal_code; /* exit status on_failed asks for (1 = restart may recover, 2 = config) */
	/* Follower's view of the leader's health figures (tolerance.c). */
	int leader_tolerance;
	unsigned leader_healthy_voters;
	uint64_t leader_view_ms;
	bool leader_view_pending;
	uint64_t leader_view_asked_ms;

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
	bool handles_closed; /* node_close got that far; the fsm goes when no hold is left */
	unsigned holds;      /* work off the loop still reading the store (node_hold) */
};

/* Derives the raft id (stable 63-bit hash) from the human node id. */
raft_id node_raft_id(const char *node_id);

/* Appends the Authorization header of --join-token (if any) to h (room for one more): the
 * number of headers now. */
size_t node_peer_auth(struct node *n, struct fwd_header *h, size_t nh);

/* A GET of a peer's /raft/status with this node's peer credentials, as discovery, the removal
 * check and the tolerance poll ask it; g is the caller's storage (fwd_send copies what it
 * needs, so g may live on the stack). */
struct node_peer_get {
	char url[COMMAND_MAX_ADDR + 32];
	struct fwd_header h[1];
	struct fwd_request req;
};
void node_peer_status_get(struct node *n, const char *http_addr, unsigned timeout_ms,
                          struct node_peer_get *g);

int node_init(struct node *n, uv_loop_t *loop, const struct node_options *opts, struct fwd *fwd,
              struct metrics *metrics, char *err, size_t errlen);
/* Bootstraps if asked and needed, starts raft, the watch timer and auto-join. */
int node_start(struct node *n, char *err, size_t errlen);
/* Closes raft (failing pending requests) and every handle; cb runs when all is released. */
void node_close(struct node *n, void (*cb)(struct node *n));
/* Work that reads the store off the loop (a backup image built on a uv worker) holds the
 * node: node_close then closes the fsm, and calls its cb, only once every hold is released
 * (on the loop). */
void node_hold(struct node *n);
void node_release(struct node *n);

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
/* Whether a change queued or running here is about node_id (as the node joining, leaving or
 * moving, or the member a join replaces): its member record is that change's to write. */
bool membership_changing(struct node *n, const char *node_id);
void membership_init(struct node *n);
void membership_fail_all(struct node *n, unsigned status, const char *why);
void membership_close(struct node *n);

/* Snapshot before a far-behind join (compact.c), leader only. wanted: the joiner would
 * replay more than --snapshot-trailing entries. start: lowers the snapshot threshold and
 * proposes the barrier whose apply lets raft take the snapshot (cb as raft_barrier's; again
 * after IDLE, keeping the first call's target and clock). poll: DONE once a snapshot covering
 * the index at the first start is stored. stop: the threshold back (idempotent; every way
 * out of a join calls it). */
enum node_compact_state {
	NODE_COMPACT_BUSY, /* a snapshot is being taken */
	NODE_COMPACT_IDLE, /* none is, and none covers the target: raft needs another apply */
	NODE_COMPACT_DONE,
};
bool node_compact_wanted(const struct node *n);
int node_compact_start(struct node *n, struct raft_barrier *req, raft_barrier_cb cb);
enum node_compact_state node_compact_poll(struct node *n);
void node_compact_stop(struct node *n);

/* State watch (watch.c). */
void node_watch_start(struct node *n);
/* After a restart with state: announce a changed raft address (node.c). */
void node_check_own_address(struct node *n);

/* Auto-join (autojoin.c). update: re-announce our own entry (a new address) rather than
 * join afresh. */
void autojoin_start(struct node *n, bool update);
void autojoin_close(struct node *n);

/* Removal detection (membership.c): asks peers whether we are still in the configuration.
 * `now`: at once (the leader told us), not rate-limited. */
void membership_check_removed(struct node *n, bool now);
/* Marks this node removed for good (persisted) and tells the server (on_removed). */
void node_mark_removed(struct node *n, const char *reason);

/* Discovery (discovery.c): decides between bootstrapping, joining and waiting, then starts
 * raft through node_begin. */
void discovery_start(struct node *n);
void discovery_close(struct node *n);
/* Starts raft: bootstraps `conf` first when non-NULL; then joins when `join`. */
int node_begin(struct node *n, const struct raft_configuration *conf, bool join, char *err,
               size_t errlen);
/* Stops the node for a reason a restart cannot fix (exit status 2) or can (1). */
void node_fail(struct node *n, int code);
/* Plain --bootstrap: a new one-voter cluster with a random id, then raft starts. */
int node_bootstrap_alone(struct node *n, char *err, size_t errlen);

/* Failure tolerance and healthy voters as the leader computes them (tolerance.c); on a
 * follower, the leader's figures when it answered lately, else what this node can confirm
 * (itself and the leader it hears from). */
unsigned node_healthy_voters(struct node *n);
int node_failure_tolerance(struct node *n);
/* Voters that accepted our appends within two election timeouts, us included (leader). */
unsigned node_acking_voters(struct node *n, raft_id exclude);
/* Follower: ask the leader for its figures now and then (watch timer). */
void tolerance_poll(struct node *n);
/* The applied and commit index as this node knows them: after a restart the store already
 * reflects entries raft has not re-delivered yet. */
raft_index node_applied_index(const struct node *n);
raft_index node_commit_index(const struct node *n);
/* The cluster id this node belongs to ("" = none yet). */
const char *node_cluster_id(const struct node *n);

/* Peer observation (peers.c): wraps io->start so raft's messages are seen on the way in. */
void peers_init(struct node *n);
/* A new leadership: forget what earlier terms' answers said. */
void peers_leader_reset(struct node *n);
uint64_t peers_last_recv_ms(struct node *n, raft_id id);
/* Leader: the index server i (configuration index) is known to hold: its match index while
 * it answers, what it reports when that is less (it lost data), 0 when it has not answered
 * within two election timeouts or only rejects. Our own last index for ourselves. */
raft_index peers_confirmed_match(struct node *n, unsigned i);
bool peers_lost_data(struct node *n, raft_id id);
/* Follower: the leader's commit index as last sent to us. */
raft_index peers_leader_commit(const struct node *n);

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
