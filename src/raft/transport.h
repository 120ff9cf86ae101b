/* transport: raft_uv's TCP transport, with outgoing connections to a dead peer noticed at once.
 *
 * libraft 0.15's uv client only ever writes to its outgoing connection to a peer, never reads
 * it, so when the peer's process exits the connection still looks healthy: the next message
 * raft writes to it is silently lost (the peer's kernel answers with a reset), the one after
 * fails, and only then does raft_uv reconnect. Followers send each other nothing outside
 * elections, so after a node restarts, the first election or leadership transfer that needs it
 * loses its first messages, and the new leader, probing that follower at most once per
 * heartbeat tick, waits up to two ticks before its first commit: 60-100 ms without writes
 * after a graceful hand-over that followed a restart (docs/benchmarks.md, round 4).
 *
 * This wrapper delegates everything to raft_uv_tcp and watches each outgoing connection for the
 * peer's close, through a duplicate of the socket's descriptor polled on the loop (reading
 * raft_uv's own stream would make libuv refuse every later write on it synchronously, which
 * raft treats as fatal). When the peer has closed it, and raft_uv still holds the socket, the
 * watcher shuts the socket's write side and sends one placeholder message through raft_io: the
 * write fails locally (nothing reaches the peer), so raft_uv drops the stream and reconnects in
 * the background, retrying every --connect-retry-ms, long before raft next needs the peer.
 * The node is told too (on_peer_closed): when the peer is its leader, it need not wait out the
 * election timeout. Runs on the loop thread only. */
#ifndef CLOUDLESS_RAFT_TRANSPORT_H
#define CLOUDLESS_RAFT_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <uv.h>

struct transport_watch; /* transport.c */

/* The peer `id` closed the connection raft_uv held to it (its process exited or restarted). */
typedef void (*transport_peer_closed_cb)(void *arg, raft_id id);
/* An AppendEntries (heartbeat or entries) went to peer `id`, `since_ns` after the previous one
 * to it (0 for the first). */
typedef void (*transport_sent_cb)(void *arg, raft_id id, uint64_t since_ns);

struct transport {
	struct raft_uv_transport iface; /* what raft_uv_init is given */
	struct raft_uv_transport tcp;   /* the real transport (raft_uv_tcp) */
	uv_loop_t *loop;
	struct raft_io *io; /* borrowed: where the placeholder message is sent */
	raft_uv_accept_cb accept_cb;
	raft_uv_transport_close_cb close_cb;
	struct transport_watch *watches;         /* at most one per peer: its current connection */
	transport_peer_closed_cb on_peer_closed; /* optional */
	void *on_peer_closed_arg;
	bool stopped; /* raft_io is closing: watch and send nothing more */
	/* transport_watch_sends: the real io->send, and whom to tell about AppendEntries sends. */
	int (*io_send)(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
	               raft_io_send_cb cb);
	transport_sent_cb on_append_sent;
	void *on_append_sent_arg;
	struct transport_last_send {
		raft_id id;
		uint64_t at_ns;
	} last_send[16];
};

/* Initialise the wrapper around a fresh raft_uv_tcp transport on the loop; io is the raft_io
 * that will be given &t->iface (it need not be initialised yet). Returns a raft error code. */
int transport_init(struct transport *t, uv_loop_t *loop, struct raft_io *io);

/* Stop watching (the duplicated descriptors would keep closed sockets open) and sending
 * placeholders: call before raft_close. */
void transport_stop(struct transport *t);

/* Reports every AppendEntries raft sends through io (call after raft_init): how regularly the
 * leader's heartbeats go out is what keeps followers from electing another leader, so it is
 * worth watching (cloudless_raft_append_send_interval_seconds). */
void transport_watch_sends(struct transport *t, transport_sent_cb cb, void *arg);

/* Release everything; call after raft_uv_close has completed (like raft_uv_tcp_close). */
void transport_close(struct transport *t);

#endif
