/* transport: raft_uv_tcp with dead outgoing connections noticed at once (see transport.h). */
#include "raft/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"

/* One outstanding connect through the wrapper: raft_uv's request and callback, and the
 * request the real transport is given in their place. */
struct transport_connect {
	struct transport *t;
	struct raft_uv_connect *req;
	raft_uv_connect_cb cb;
	raft_id id;
	char *address;
	struct raft_uv_connect inner;
};

static struct transport *outer_of(struct raft_uv_transport *iface)
{
	return (struct transport *)((char *)iface - offsetof(struct transport, iface));
}

static struct transport *owner_of_tcp(struct raft_uv_transport *tcp)
{
	return (struct transport *)((char *)tcp - offsetof(struct transport, tcp));
}

static void copy_errmsg(struct transport *t)
{
	memcpy(t->iface.errmsg, t->tcp.errmsg, sizeof t->iface.errmsg);
}

/* One outgoing connection being watched: a duplicate of raft_uv's socket descriptor, polled
 * for the peer's close. Lives in t->watches until its first event, a newer connection to the
 * same peer, or transport_stop. */
struct transport_watch {
	struct transport *t;
	struct transport_watch *next;
	raft_id id;
	char *address;
	int raft_fd; /* raft_uv's descriptor: compared, never used for I/O */
	int fd;      /* our duplicate */
	dev_t dev;   /* the socket's identity, to tell whether raft_uv still holds it */
	ino_t ino;
	uv_poll_t poll;
};

static void watch_closed(uv_handle_t *h)
{
	struct transport_watch *w = h->data;
	close(w->fd);
	free(w->address);
	free(w);
}

static void watch_close(struct transport_watch *w)
{
	struct transport_watch **pp = &w->t->watches;
	while (*pp != NULL && *pp != w)
		pp = &(*pp)->next;
	if (*pp == w)
		*pp = w->next;
	uv_close((uv_handle_t *)&w->poll, watch_closed);
}

/* raft_uv may have closed its descriptor since (after a failed write, say) and the number may
 * now belong to another file: only the same socket counts. */
static bool raft_still_holds(const struct transport_watch *w)
{
	struct stat st;
	return fstat(w->raft_fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == w->dev &&
	       st.st_ino == w->ino;
}

static void placeholder_sent(struct raft_io_send *req, int status)
{
	(void)status; /* expected to fail: that failure is what makes raft_uv reconnect */
	free(req);
}

/* The peer closed the connection raft_uv still writes to. Make raft_uv's next write on it fail
 * locally (write side shut) and give it one to make now: a term-0 AppendEntries result, which
 * no server would act on even if it were delivered (a lower term is ignored). */
static void expose_dead_connection(struct transport_watch *w)
{
	struct transport *t = w->t;
	if (t->stopped)
		return;
	if (t->on_peer_closed != NULL)
		t->on_peer_closed(t->on_peer_closed_arg, w->id);
	if (!raft_still_holds(w))
		return; /* raft_uv found out by itself and is reconnecting already */
	if (shutdown(w->fd, SHUT_WR) != 0 && errno != ENOTCONN) {
		log_warn("Could not shut a closed raft connection", "peer_addr=%s error=\"%s\"",
		         w->address, strerror(errno));
		return;
	}
	struct raft_io_send *req = calloc(1, sizeof *req);
	if (req == NULL)
		return;
	struct raft_message m;
	memset(&m, 0, sizeof m);
	m.type = RAFT_IO_APPEND_ENTRIES_RESULT;
	m.server_id = w->id;
	m.server_address = w->address;
	int rv = t->io->send(t->io, req, &m, placeholder_sent);
	if (rv != 0) {
		free(req);
		log_warn("Could not refresh a closed raft connection", "peer_addr=%s error=\"%s\"",
		         w->address, raft_strerror(rv));
	}
}

static void watch_event(uv_poll_t *h, int status, int events)
{
	(void)events;
	struct transport_watch *w = h->data;
	if (status == 0) {
		char c;
		ssize_t n = recv(w->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return; /* spurious wake-up */
		if (n > 0) {
			/* raft never answers on this connection; stop rather than spin on bytes
			 * nobody will read */
			watch_close(w);
			return;
		}
	}
	expose_dead_connection(w);
	watch_close(w);
}

static void watch_start(struct transport *t, raft_id id, const char *address, uv_stream_t *s)
{
	for (struct transport_watch *w = t->watches; w != NULL; w = w->next) {
		if (w->id == id) {
			watch_close(w); /* its connection was replaced by this one */
			break;
		}
	}
	uv_os_fd_t raft_fd;
	struct stat st;
	if (uv_fileno((const uv_handle_t *)s, &raft_fd) != 0 || fstat(raft_fd, &st) != 0)
		return;
	struct transport_watch *w = calloc(1, sizeof *w);
	if (w == NULL)
		return;
	w->address = strdup(address);
	w->fd = fcntl(raft_fd, F_DUPFD_CLOEXEC, 0);
	if (w->address == NULL || w->fd < 0)
		goto err;
	w->t = t;
	w->id = id;
	w->raft_fd = raft_fd;
	w->dev = st.st_dev;
	w->ino = st.st_ino;
	int rv = uv_poll_init_socket(t->loop, &w->poll, w->fd);
	if (rv != 0)
		goto err;
	w->poll.data = w;
	w->next = t->watches;
	t->watches = w;
	rv = uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, watch_event);
	if (rv != 0) {
		log_warn("Could not watch a raft connection", "peer_addr=%s error=\"%s\"", address,
		         uv_strerror(rv));
		watch_close(w);
	}
	return;
err:
	if (w->fd >= 0)
		close(w->fd);
	free(w->address);
	free(w);
}

/* raft_uv leaves Nagle's algorithm on. Each connection carries one direction only (the answers
 * come back on the peer's own connection), so the receiver never has data to piggyback its
 * ACK on and delays it (40 ms): a message written while the previous one is unacknowledged
 * then waits for that timer. Under load that held AppendEntries back 40-45 ms at a time. */
static void no_delay(uv_stream_t *s, const char *address)
{
	int rv = uv_tcp_nodelay((uv_tcp_t *)s, 1);
	if (rv != 0)
		log_warn("Could not disable Nagle on a raft connection",
		         "peer_addr=%s error=\"%s\"", address, uv_strerror(rv));
}

static void connect_done(struct raft_uv_connect *inner, uv_stream_t *stream, int status)
{
	struct transport_connect *c = inner->data;
	struct transport *t = c->t;
	if (status == 0 && stream != NULL) {
		no_delay(stream, c->address);
		if (!t->stopped)
			watch_start(t, c->id, c->address, stream);
	}
	struct raft_uv_connect *req = c->req;
	raft_uv_connect_cb cb = c->cb;
	free(c->address);
	free(c);
	cb(req, stream, status);
}

static int iface_init(struct raft_uv_transport *iface, raft_id id, const char *address)
{
	struct transport *t = outer_of(iface);
	t->tcp.data = iface->data;
	int rv = t->tcp.init(&t->tcp, id, address);
	if (rv != 0)
		copy_errmsg(t);
	return rv;
}

static void accepted(struct raft_uv_transport *tcp, raft_id id, const char *address,
                     uv_stream_t *stream)
{
	struct transport *t = owner_of_tcp(tcp);
	no_delay(stream, address);
	t->accept_cb(&t->iface, id, address, stream);
}

static int iface_listen(struct raft_uv_transport *iface, raft_uv_accept_cb cb)
{
	struct transport *t = outer_of(iface);
	t->accept_cb = cb;
	int rv = t->tcp.listen(&t->tcp, accepted);
	if (rv != 0)
		copy_errmsg(t);
	return rv;
}

static int iface_connect(struct raft_uv_transport *iface, struct raft_uv_connect *req, raft_id id,
                         const char *address, raft_uv_connect_cb cb)
{
	struct transport *t = outer_of(iface);
	struct transport_connect *c = calloc(1, sizeof *c);
	if (c == NULL)
		return RAFT_NOMEM;
	c->address = strdup(address);
	if (c->address == NULL) {
		free(c);
		return RAFT_NOMEM;
	}
	c->t = t;
	c->req = req;
	c->cb = cb;
	c->id = id;
	c->inner.data = c;
	req->cb = cb;
	int rv = t->tcp.connect(&t->tcp, &c->inner, id, address, connect_done);
	if (rv != 0) {
		copy_errmsg(t);
		free(c->address);
		free(c);
	}
	return rv;
}

static void tcp_closed(struct raft_uv_transport *tcp)
{
	struct transport *t = owner_of_tcp(tcp);
	if (t->close_cb != NULL)
		t->close_cb(&t->iface);
}

static void iface_close(struct raft_uv_transport *iface, raft_uv_transport_close_cb cb)
{
	struct transport *t = outer_of(iface);
	transport_stop(t);
	t->close_cb = cb;
	t->tcp.close(&t->tcp, tcp_closed);
}

/* raft_io has no user pointer free for us (raft_uv uses impl, raft may use data): the few
 * transports of a process that watch their sends are found by their io. */
static struct transport *watched[4];

static int watched_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                        raft_io_send_cb cb)
{
	struct transport *t = NULL;
	for (size_t i = 0; i < sizeof watched / sizeof watched[0] && t == NULL; i++)
		if (watched[i] != NULL && watched[i]->io == io)
			t = watched[i];
	if (t == NULL)
		abort(); /* io->send was replaced for this io only */
	if (m->type == RAFT_IO_APPEND_ENTRIES && t->on_append_sent != NULL && !t->stopped) {
		uint64_t now = uv_hrtime(), since = 0;
		struct transport_last_send *slot = NULL;
		for (size_t i = 0; i < sizeof t->last_send / sizeof t->last_send[0]; i++) {
			struct transport_last_send *l = &t->last_send[i];
			if (l->id == m->server_id || (slot == NULL && l->id == 0))
				slot = l;
			if (l->id == m->server_id)
				break;
		}
		if (slot != NULL) {
			since = slot->id == m->server_id ? now - slot->at_ns : 0;
			slot->id = m->server_id;
			slot->at_ns = now;
		}
		t->on_append_sent(t->on_append_sent_arg, m->server_id, since);
	}
	return t->io_send(io, req, m, cb);
}

void transport_watch_sends(struct transport *t, transport_sent_cb cb, void *arg)
{
	for (size_t i = 0; i < sizeof watched / sizeof watched[0]; i++)
		if (watched[i] == NULL || watched[i] == t) {
			watched[i] = t;
			t->on_append_sent = cb;
			t->on_append_sent_arg = arg;
			if (t->io->send != watched_send) {
				t->io_send = t->io->send;
				t->io->send = watched_send;
			}
			return;
		}
}

int transport_init(struct transport *t, uv_loop_t *loop, struct raft_io *io)
{
	memset(t, 0, sizeof *t);
	int rv = raft_uv_tcp_init(&t->tcp, loop);
	if (rv != 0)
		return rv;
	t->loop = loop;
	t->io = io;
	t->iface.init = iface_init;
	t->iface.listen = iface_listen;
	t->iface.connect = iface_connect;
	t->iface.close = iface_close;
	return 0;
}

void transport_stop(struct transport *t)
{
	t->stopped = true;
	while (t->watches != NULL)
		watch_close(t->watches);
}

void transport_close(struct transport *t)
{
	for (size_t i = 0; i < sizeof watched / sizeof watched[0]; i++)
		if (watched[i] == t)
			watched[i] = NULL;
	if (t->io_send != NULL && t->io->send == watched_send)
		t->io->send = t->io_send;
	transport_stop(t);
	raft_uv_tcp_close(&t->tcp);
}
