/* http: the HTTP/1.1 server (see http.h): sockets on a thread of its own, handlers on the
 * caller's loop.
 *
 * Two threads, two libuv loops. The server thread owns the listener and every connection:
 * it reads, parses strictly (parse.c), buffers the body and refuses by itself what it must
 * (problem+json with the published headers, then a lingering close). The loop thread owns the
 * handlers: a complete request crosses to it through `in` (a list under `mu`) and the `wake`
 * uv_async; its answer crosses back through `out` and `hwake`. A request is owned by exactly
 * one side at a time (internal.h), so nothing but the two lists and a few flags is shared.
 *
 * Why a thread: handlers run on the raft loop, and with the sockets on that loop too a burst
 * of large pipelined reads kept it busy for seconds, long enough for the followers to elect a
 * new leader (issue 18, docs/architecture.md). Now the loop only runs handlers, at most
 * HTTP_DRAIN_MAX of them or HTTP_DRAIN_NS of work per wakeup; the rest wait for the next
 * iteration, after raft's timers and I/O had their turn. Why not libmicrohttpd any more: see
 * parse.c and docs/architecture.md.
 *
 * A connection carries one request at a time. While the loop holds its request the server
 * stops reading it; the next pipelined request is parsed once the answer is written. So the
 * memory a connection pins is its head buffer (at most HTTP_MAX_HEAD), one body (at most
 * max_body; bodies over HTTP_SMALL_BODY share max_buffered) and one answer.
 *
 * Direct write: while the loop holds a request, nothing on the server thread touches its
 * connection (not reading, no write queued, no timer, never closed: a failure found then only
 * marks it `broken`), so the loop writes the answer to the socket itself, non-blocking, and
 * hands the server thread only what did not fit. That takes the second thread hop off every
 * answer's latency (at one client, writes through a follower cross four of them); the server
 * thread then only frees the request and resumes reading. */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http/internal.h"
#include "http/parse.h"
#include "http/problem.h"
#include "http/tls.h"
#include "log/log.h"

/* Loop-side budget per wakeup: requests handed to handlers, and time spent on them. */
#define HTTP_DRAIN_MAX 64
#define HTTP_DRAIN_NS  (2 * 1000 * 1000)
/* A request that waited this long for the loop is checked for a client that gave up on it
 * (see client_gone): below it, checking would cost a syscall for nothing. */
#define HTTP_STALE_NS (100 * 1000 * 1000ULL)
/* Bodies up to this size are not charged to max_buffered: a KV write is never refused because
 * large uploads fill the budget. */
#define HTTP_SMALL_BODY (64 * 1024)
/* The head buffer grows in steps of this. */
#define HTTP_READ_STEP 4096
/* Lingering close (as nginx's lingering_close): after the last answer the write side is shut
 * and what the client still sends is read and dropped for a while, so that its unread bytes do
 * not make the kernel reset the connection and destroy the answer before it is read. */
#define HTTP_LINGER_MS    1000
#define HTTP_LINGER_BYTES (1024 * 1024)
/* Shutdown: how long connections in the middle of a request get to receive their 503, and how
 * long an idle one must have been quiet to be closed before that. */
#define HTTP_CLOSE_FLUSH_MS 1000
#define HTTP_CLOSE_IDLE_MS  100
/* Client errors are logged once per this interval, with how many were not. */
#define HTTP_LOG_EVERY_MS 10000
#define HTTP_IP_BUCKETS   1024
/* TLS connections read their ciphertext into one buffer of the server thread's, which the
 * session consumes at once (tls.h): an idle TLS connection pins no read buffer of its own. */
#define HTTP_TLS_SCRATCH (64 * 1024)

enum conn_state {
	C_IDLE,   /* between requests (or before the first) */
	C_HEAD,   /* reading a request head */
	C_BODY,   /* reading its body */
	C_WAIT,   /* the loop holds the request */
	C_WRITE,  /* writing the answer */
	C_LINGER, /* answered for the last time: draining before the close */
};

struct http_ip {
	struct http_ip *next;
	int family;
	unsigned char addr[16];
	unsigned count;
};

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_shutdown_t shut;
	struct http_server *s;
	struct http_conn *prev, *next;
	struct http_ip *ip;
	enum conn_state state;
	char *rbuf;
	size_t rlen, rcap;
	struct http_head_scan scan;
	struct http_request *req; /* being read, or held by the loop (C_WAIT) */
	struct http_framing fr;
	struct http_chunked chunk;
	uint64_t body_left;
	size_t reserved;   /* bytes of req's body charged to s->buffered */
	uint64_t state_ms; /* uv_now when the state began */
	size_t lingered;
	unsigned handles; /* uv handles not closed yet */
	unsigned writes;  /* uv_write requests in flight */
	bool broken;      /* a write failed while the loop held the request: close on its answer */
	bool closing;     /* conn_close ran */
	bool dead;        /* closed while the loop held its request: freed with the answer */
	struct http_tls_conn *tls; /* NULL: plain HTTP */
	bool tls_fed;              /* the first bytes arrived (a plain HTTP request is told so) */
	char peer[64];
};

struct http_write {
	uv_write_t w;
	struct http_conn *c;
	struct http_request *req; /* an answer from the loop: freed when written */
	char *data;               /* an answer of the server thread's own, or TLS records */
	bool close;
};

struct http_server {
	/* ---- fixed after init ---- */
	uv_loop_t *loop;
	struct http_server_options o;
	unsigned port;
	char addr[128];

	/* ---- loop thread ---- */
	uv_async_t wake;
	struct http_request *pending_head;
	unsigned pending;
	bool in_drain;
	bool close_requested;
	bool closed;

	/* ---- shared, under mu ---- */
	pthread_mutex_t mu;
	struct http_request *in_head, *in_tail;   /* to the loop */
	struct http_request *out_head, *out_tail; /* to the server thread */
	char *snap;   /* "Name: value\r\n" lines for the server thread's own answers */
	bool closing; /* new requests get 503 shutting-down, answers close their connection */
	bool stop;    /* the server thread winds down */

	/* ---- server thread ---- */
	pthread_t thread;
	uv_loop_t hloop;
	uv_async_t hwake;
	uv_tcp_t listener;
	uv_check_t unlisten;
	uv_timer_t stop_timer;
	bool stopping;
	uint64_t stop_ms;
	struct http_conn *conns;
	unsigned n_conns;
	struct http_ip *ips[HTTP_IP_BUCKETS];
	size_t buffered;
	char *tls_scratch; /* HTTP_TLS_SCRATCH bytes when o.tls is set */
	uint64_t err_logged_ms;
	unsigned err_suppressed;
	bool err_logged;
};

static void conn_process(struct http_conn *c);
static void conn_close(struct http_conn *c);
static void conn_read_start(struct http_conn *c);

/* ---- the two queues --------------------------------------------------------------- */

static void queue_push(struct http_request **head, struct http_request **tail,
                       struct http_request *req)
{
	req->qnext = NULL;
	if (*tail != NULL)
		(*tail)->qnext = req;
	else
		*head = req;
	*tail = req;
}

static struct http_request *queue_pop(struct http_request **head, struct http_request **tail)
{
	struct http_request *req = *head;
	if (req != NULL) {
		*head = req->qnext;
		if (*head == NULL)
			*tail = NULL;
		req->qnext = NULL;
	}
	return req;
}

/* Server thread: hands a request to the loop. */
static void to_loop(struct http_server *s, struct http_request *req)
{
	req->queued_ns = uv_hrtime();
	pthread_mutex_lock(&s->mu);
	queue_push(&s->in_head, &s->in_tail, req);
	pthread_mutex_unlock(&s->mu);
	uv_async_send(&s->wake);
}

static bool server_closing(struct http_server *s)
{
	pthread_mutex_lock(&s->mu);
	bool closing = s->closing;
	pthread_mutex_unlock(&s->mu);
	return closing;
}

void http_server_set_headers(struct http_server *s, const char *const *pairs, size_t n)
{
	struct buf b;
	buf_init(&b);
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s: %s\r\n", pairs[2 * i], pairs[2 * i + 1]);
	char *snap = b.len > 0 ? buf_detach(&b, NULL) : NULL;
	buf_close(&b);
	pthread_mutex_lock(&s->mu);
	char *old = s->snap;
	s->snap = snap;
	pthread_mutex_unlock(&s->mu);
	free(old);
}

/* ---- server thread: logging and limits --------------------------------------------- */

/* Client misbehaviour is worth seeing but must not flood the log: one line per
 * HTTP_LOG_EVERY_MS, saying how many were not logged. */
static void client_error(struct http_server *s, const struct http_conn *c, unsigned status,
                         const char *detail)
{
	uint64_t now = uv_now(&s->hloop);
	if (s->err_logged && now - s->err_logged_ms < HTTP_LOG_EVERY_MS) {
		s->err_suppressed++;
		return;
	}
	log_warn("http client error", "port=%u peer=%s status=%u detail=\"%s\" not_logged=%u",
	         s->port, c != NULL ? c->peer : "-", status, detail, s->err_suppressed);
	s->err_logged = true;
	s->err_logged_ms = now;
	s->err_suppressed = 0;
}

static unsigned ip_hash(const struct sockaddr_storage *ss, int *family, unsigned char *addr)
{
	size_t n = 0;
	*family = ss->ss_family;
	memset(addr, 0, 16);
	if (ss->ss_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		n = 4;
	} else if (ss->ss_family == AF_INET6) {
		memcpy(addr, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
		n = 16;
	}
	unsigned h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ addr[i]) * 16777619u;
	return h % HTTP_IP_BUCKETS;
}

static struct http_ip *ip_get(struct http_server *s, const struct sockaddr_storage *ss)
{
	int family;
	unsigned char addr[16];
	unsigned h = ip_hash(ss, &family, addr);
	for (struct http_ip *ip = s->ips[h]; ip != NULL; ip = ip->next)
		if (ip->family == family && memcmp(ip->addr, addr, 16) == 0)
			return ip;
	struct http_ip *ip = calloc(1, sizeof *ip);
	if (ip == NULL)
		abort();
	ip->family = family;
	memcpy(ip->addr, addr, 16);
	ip->next = s->ips[h];
	s->ips[h] = ip;
	return ip;
}

static void ip_put(struct http_server *s, struct http_ip *ip)
{
	if (--ip->count > 0)
		return;
	struct sockaddr_storage ss = {.ss_family = (sa_family_t)ip->family};
	if (ip->family == AF_INET)
		memcpy(&((struct sockaddr_in *)&ss)->sin_addr, ip->addr, 4);
	else if (ip->family == AF_INET6)
		memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, ip->addr, 16);
	int family;
	unsigned char addr[16];
	struct http_ip **p = &s->ips[ip_hash(&ss, &family, addr)];
	while (*p != ip)
		p = &(*p)->next;
	*p = ip->next;
	free(ip);
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "unknown";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		uv_ip4_name(a, host, sizeof host);
		port = ntohs(a->sin_port);
		snprintf(out, len, "%s:%u", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		uv_ip6_name(a, host, sizeof host);
		port = ntohs(a->sin6_port);
		snprintf(out, len, "[%s]:%u", host, port);
	} else {
		snprintf(out, len, "unknown");
	}
}

/* Bodies over HTTP_SMALL_BODY are charged to max_buffered; false when `total` bytes of body
 * (the declared length, or what a chunked body reached) would not fit. */
static bool charge(struct http_conn *c, size_t total)
{
	struct http_server *s = c->s;
	size_t want = total > HTTP_SMALL_BODY ? total : 0;
	if (want <= c->reserved)
		return true;
	if (s->buffered - c->reserved + want > s->o.max_buffered)
		return false;
	s->buffered += want - c->reserved;
	c->reserved = want;
	return true;
}

static void uncharge(struct http_conn *c)
{
	c->s->buffered -= c->reserved;
	c->reserved = 0;
}

/* ---- server thread: connections ---------------------------------------------------- */

static void arm(struct http_conn *c, enum conn_state state, unsigned ms);

static void conn_free(struct http_conn *c)
{
	http_tls_conn_free(c->tls);
	free(c->rbuf);
	free(c);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	if (--c->handles > 0 || c->dead)
		return;
	conn_free(c);
}

/* Unlinks the connection and closes its handles; the struct goes with the last close
 * callback, or with the loop's answer when the loop still holds its request. */
static void conn_close(struct http_conn *c)
{
	struct http_server *s = c->s;
	if (c->closing)
		return;
	if (c->state == C_WAIT && !s->stopping) {
		/* The loop may be writing to the socket: close when its answer comes back. */
		c->broken = true;
		return;
	}
	c->closing = true;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	s->n_conns--;
	if (c->ip != NULL)
		ip_put(s, c->ip);
	c->ip = NULL;
	if (c->state == C_WAIT) {
		c->dead = true; /* the request is the loop's; the answer frees both */
	} else {
		uncharge(c);
		http_request_free(c->req);
		c->req = NULL;
	}
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
	(void)r;
	(void)status;
}

/* ---- server thread: TLS ------------------------------------------------------------ */

static void on_tls_written(uv_write_t *w, int status)
{
	struct http_write *wr = (struct http_write *)w;
	struct http_conn *c = wr->c;
	c->writes--;
	free(wr->data);
	free(wr);
	if (status < 0 && !c->closing)
		conn_close(c);
}

/* Writes what the session produced outside an answer: handshake messages, a 100 Continue,
 * TLS 1.3 key updates and tickets, alerts. libuv keeps writes in order, and every call into
 * the session is followed by this or by conn_write, so records leave in the order made. */
static void tls_send_pending(struct http_conn *c)
{
	size_t len;
	char *data = http_tls_conn_take(c->tls, &len);
	if (data == NULL)
		return;
	struct http_write *wr = calloc(1, sizeof *wr);
	if (wr == NULL)
		abort();
	wr->c = c;
	wr->data = data;
	uv_buf_t b = uv_buf_init(data, (unsigned)len);
	if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_tls_written) != 0) {
		free(data);
		free(wr);
		conn_close(c);
		return;
	}
	c->writes++;
}

static void linger(struct http_conn *c)
{
	c->state = C_LINGER;
	c->lingered = 0;
	c->rlen = 0;
	arm(c, C_LINGER, HTTP_LINGER_MS);
	if (c->tls != NULL) {
		/* close_notify goes out before the write side is shut (uv_shutdown waits for the
		 * writes queued before it), so the client can tell the end from a truncation. */
		http_tls_conn_bye(c->tls);
		tls_send_pending(c);
		if (c->closing)
			return;
	}
	if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
		conn_close(c);
		return;
	}
	conn_read_start(c);
}

/* A write is over (done, failed or never started): what it carried goes. */
static void write_free(struct http_conn *c, struct http_write *wr)
{
	if (wr->req != NULL) {
		uncharge(c);
		http_request_free(wr->req);
		if (c->req == wr->req)
			c->req = NULL;
	}
	free(wr->data);
	free(wr);
}

static void answer_done(struct http_conn *c, bool close, int status);
static void tls_pump(struct http_conn *c);

static void on_write(uv_write_t *w, int status)
{
	struct http_write *wr = (struct http_write *)w;
	struct http_conn *c = wr->c;
	bool close = wr->close;
	c->writes--;
	write_free(c, wr);
	answer_done(c, close, status);
}

/* The answer is out: the next request, or the close. */
static void answer_done(struct http_conn *c, bool close, int status)
{
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (close || c->s->stopping) {
		linger(c);
		return;
	}
	c->state = C_IDLE;
	memset(&c->scan, 0, sizeof c->scan);
	arm(c, C_IDLE, c->s->o.idle_timeout_ms);
	conn_read_start(c);
	conn_process(c);
	/* A TLS session may hold the next pipelined request still encrypted: no read event
	 * would come for it. */
	if (c->tls != NULL)
		tls_pump(c);
}

static void conn_write(struct http_conn *c, struct http_write *wr, uv_buf_t *bufs, unsigned n)
{
	uv_buf_t records;
	if (c->tls != NULL) {
		/* Encrypted here, on the server thread, in as few records as fit: the answer's
		 * plaintext stays with wr until the write is over, only its records go out. */
		for (unsigned i = 0; i < n; i++)
			http_tls_conn_write(c->tls, bufs[i].base, bufs[i].len);
		http_tls_conn_flush(c->tls);
		size_t len;
		free(wr->data);
		wr->data = http_tls_conn_take(c->tls, &len);
		records = uv_buf_init(wr->data, (unsigned)len);
		bufs = &records;
		n = 1;
	}
	wr->c = c;
	c->state = C_WRITE;
	uv_read_stop((uv_stream_t *)&c->tcp);
	/* A client that does not read its answers is cut off like an idle one. */
	arm(c, C_WRITE, c->s->o.idle_timeout_ms);
	int rv = uv_write(&wr->w, (uv_stream_t *)&c->tcp, bufs, n, on_write);
	if (rv != 0) {
		write_free(c, wr);
		conn_close(c);
		return;
	}
	c->writes++;
}

/* The server thread's own answer: problem+json, the published headers, then a close. The
 * request (or a stand-in when the head could not be parsed) goes to the loop for complete. */
static void conn_refuse(struct http_conn *c, unsigned status, const char *slug, const char *detail)
{
	struct http_server *s = c->s;
	struct buf body, out;
	char date[48];
	client_error(s, c, status, detail);
	buf_init(&body);
	buf_init(&out);
	http_problem_body(&body, status, slug, detail);
	http_date(date, sizeof date);
	buf_printf(&out,
	           "HTTP/1.1 %u %s\r\nDate: %s\r\nContent-Type: application/problem+json\r\n"
	           "Content-Length: %zu\r\nConnection: close\r\n",
	           status, http_reason(status), date, body.len);
	if (status == 503)
		buf_puts(&out, "Retry-After: 1\r\n");
	pthread_mutex_lock(&s->mu);
	if (s->snap != NULL)
		buf_puts(&out, s->snap);
	pthread_mutex_unlock(&s->mu);
	buf_puts(&out, "\r\n");
	struct http_request *req = c->req;
	bool head = req != NULL && req->head;
	if (!head)
		buf_append(&out, body.data, body.len);
	buf_close(&body);
	c->req = NULL;
	uncharge(c);
	if (req == NULL) {
		req = http_request_alloc();
		req->method = http_xstrdup("");
		req->path = http_xstrdup("");
		snprintf(req->peer, sizeof req->peer, "%s", c->peer);
	}
	req->s = s;
	req->early = true;
	req->answered = true;
	req->status = status;
	to_loop(s, req);

	struct http_write *wr = calloc(1, sizeof *wr);
	if (wr == NULL)
		abort();
	wr->close = true;
	size_t len = out.len;
	wr->data = buf_detach(&out, NULL);
	buf_close(&out);
	uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
	conn_write(c, wr, &b, 1);
}

static void refuse_err(struct http_conn *c, const struct http_parse_error *err)
{
	const char *slug = err->status == 413   ? "too-large"
	                   : err->status == 414 ? "uri-too-long"
	                   : err->status == 431 ? "header-too-large"
	                   : err->status == 417 ? "expectation-failed"
	                   : err->status == 501 ? "not-implemented"
	                   : err->status == 505 ? "http-version"
	                                        : "bad-request";
	conn_refuse(c, err->status, slug, err->detail);
}

static void on_conn_timer(uv_timer_t *t)
{
	struct http_conn *c = t->data;
	struct http_server *s = c->s;
	char detail[128];
	bool head = c->state == C_HEAD;
	switch (c->state) {
	case C_HEAD:
	case C_BODY:
		snprintf(detail, sizeof detail, "the request %s did not arrive within %u ms (%s)",
		         head ? "head" : "body",
		         head ? s->o.header_timeout_ms : s->o.body_timeout_ms,
		         head ? "--http-header-timeout-ms" : "--http-body-timeout-ms");
		conn_refuse(c, 408, "request-timeout", detail);
		return;
	case C_WAIT:
		return;
	case C_IDLE:
		if (c->tls != NULL && !http_tls_conn_established(c->tls) && c->tls_fed) {
			snprintf(detail, sizeof detail,
			         "the TLS handshake did not complete within %u ms "
			         "(--http-header-timeout-ms)",
			         s->o.header_timeout_ms);
			client_error(s, c, 0, detail);
		} else if (c->tls != NULL && http_tls_conn_established(c->tls)) {
			linger(c); /* with close_notify */
			return;
		}
		conn_close(c);
		return;
	case C_WRITE:
	case C_LINGER:
		conn_close(c);
		return;
	}
}

static void arm(struct http_conn *c, enum conn_state state, unsigned ms)
{
	(void)state;
	c->state_ms = uv_now(&c->s->hloop);
	uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

static void dispatch(struct http_conn *c)
{
	if (c->s->stopping) {
		/* The loop handed back what it had not seen (begin_stop) and takes no more: a
		 * body that completes now would reach it after its last drain, with no thread
		 * left to carry the answer. */
		conn_refuse(c, 503, "shutting-down", "the coordinator is shutting down");
		return;
	}
	c->state = C_WAIT;
	uv_timer_stop(&c->timer);
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->req->on_loop = false;
	/* Direct write only with nothing queued on the socket (a 100 Continue not yet out). */
	uv_os_fd_t fd = -1;
	if (c->writes == 0 && uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
		fd = -1;
	/* Not for TLS: the loop would have to encrypt, and large answers are the reason the
	 * sockets have a thread of their own. */
	c->req->fd = c->writes == 0 && c->tls == NULL ? fd : -1;
	to_loop(c->s, c->req);
}

static void on_continue_written(uv_write_t *w, int status)
{
	struct http_conn *c = w->data;
	free(w);
	c->writes--;
	if (status < 0 && !c->closing)
		conn_close(c);
}

/* Not conn_write: the connection goes on reading the body meanwhile. */
static void send_continue(struct http_conn *c)
{
	static char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
	if (c->tls != NULL) {
		http_tls_conn_write(c->tls, msg, sizeof msg - 1);
		http_tls_conn_flush(c->tls);
		tls_send_pending(c);
		return;
	}
	uv_write_t *w = calloc(1, sizeof *w);
	if (w == NULL)
		abort();
	w->data = c;
	uv_buf_t b = uv_buf_init(msg, sizeof msg - 1);
	if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written) != 0) {
		free(w);
		conn_close(c);
		return;
	}
	c->writes++;
}

/* Builds the request from a parsed head; the head's bytes stay valid until consumed. */
static struct http_request *build_request(struct http_conn *c, const struct http_head *h,
                                          const char *path, size_t path_len, const char *query,
                                          size_t query_len)
{
	struct http_request *req = http_request_alloc();
	req->s = c->s;
	req->conn = c;
	req->method = http_dup_n(h->method, h->method_len);
	req->path = http_decode_path(path, path_len);
	req->head = h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0;
	snprintf(req->peer, sizeof req->peer, "%s", c->peer);
	http_request_parse_query(req, query, query_len);
	if (h->n_fields > 0) {
		req->req_headers = http_xmalloc(h->n_fields * sizeof *req->req_headers);
		for (unsigned i = 0; i < h->n_fields; i++) {
			req->req_headers[i].name =
			    http_dup_n(h->fields[i].name, h->fields[i].name_len);
			req->req_headers[i].value =
			    http_dup_n(h->fields[i].value, h->fields[i].value_len);
		}
		req->n_req_headers = h->n_fields;
	}
	return req;
}

static void consume(struct http_conn *c, size_t n)
{
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
}

/* Makes room for exactly the declared body (buf_reserve would round up to a power of 2). */
static void reserve_body(struct http_request *req, size_t len)
{
	if (req->body.cap >= len + 1)
		return;
	char *p = realloc(req->body.data, len + 1);
	if (p == NULL)
		abort();
	req->body.data = p;
	req->body.cap = len + 1;
	p[req->body.len] = '\0';
}

/* false when the connection was refused or closed. */
static bool head_complete(struct http_conn *c, size_t end)
{
	struct http_server *s = c->s;
	struct http_head h;
	struct http_parse_error err = {0};
	const char *path, *query;
	size_t path_len, query_len;
	size_t start = c->scan.start;
	if (http_parse_head(c->rbuf + start, end - start, &h, &err) != 0) {
		refuse_err(c, &err);
		return false;
	}
	if (http_target_split(h.target, h.target_len, &path, &path_len, &query, &query_len) != 0) {
		err.status = 400;
		snprintf(err.detail, sizeof err.detail,
		         "the request target must be a path (/...) or an absolute http URL");
		refuse_err(c, &err);
		return false;
	}
	c->req = build_request(c, &h, path, path_len, query, query_len);
	int fr = http_head_framing(&h, s->o.max_body, &c->fr, &err);
	consume(c, end);
	if (fr != 0) {
		refuse_err(c, &err);
		return false;
	}
	c->req->keep_alive = c->fr.keep_alive;
	if (server_closing(s)) {
		conn_refuse(c, 503, "shutting-down", "the coordinator is shutting down");
		return false;
	}
	if (c->fr.body == HTTP_BODY_NONE) {
		dispatch(c);
		return true;
	}
	size_t declared = c->fr.body == HTTP_BODY_LENGTH ? (size_t)c->fr.length : 0;
	if (!charge(c, declared)) {
		conn_refuse(c, 503, "server-busy",
		            "the server holds too much request data (--http-max-buffered); retry "
		            "later");
		return false;
	}
	c->state = C_BODY;
	arm(c, C_BODY, s->o.body_timeout_ms);
	if (c->fr.expect_continue && c->rlen == 0)
		send_continue(c);
	if (c->fr.body == HTTP_BODY_LENGTH) {
		reserve_body(c->req, declared);
		size_t n = c->rlen < declared ? c->rlen : declared;
		buf_append(&c->req->body, c->rbuf, n);
		consume(c, n);
		c->body_left = declared - n;
		if (c->body_left == 0)
			dispatch(c);
		return true;
	}
	http_chunked_init(&c->chunk);
	return true;
}

/* Chunked bodies come through rbuf; Content-Length ones straight into the body (alloc_cb). */
static bool body_progress(struct http_conn *c)
{
	if (c->fr.body == HTTP_BODY_LENGTH)
		return false; /* read_cb completes it */
	struct http_parse_error err = {0};
	bool done = false;
	long n = http_chunked_feed(&c->chunk, c->rbuf, c->rlen, &c->req->body, c->s->o.max_body,
	                           &done, &err);
	if (n < 0) {
		refuse_err(c, &err);
		return false;
	}
	consume(c, (size_t)n);
	if (!charge(c, c->req->body.len)) {
		conn_refuse(c, 503, "server-busy",
		            "the server holds too much request data (--http-max-buffered); retry "
		            "later");
		return false;
	}
	if (done)
		dispatch(c);
	return false;
}

static void conn_process(struct http_conn *c)
{
	struct http_parse_error err = {0};
	while (!c->closing) {
		switch (c->state) {
		case C_IDLE:
			if (c->rlen == 0)
				return;
			c->state = C_HEAD;
			memset(&c->scan, 0, sizeof c->scan);
			arm(c, C_HEAD, c->s->o.header_timeout_ms);
			break;
		case C_HEAD: {
			long end = http_head_end(c->rbuf, c->rlen, &c->scan, &err);
			if (end < 0) {
				refuse_err(c, &err);
				return;
			}
			if (end == 0 || !head_complete(c, (size_t)end))
				return;
			break;
		}
		case C_BODY:
			if (!body_progress(c))
				return;
			break;
		default:
			return;
		}
	}
}

/* Makes room after rbuf's bytes for the next read; false when memory ran out. */
static bool rbuf_room(struct http_conn *c)
{
	if (c->rcap - c->rlen < HTTP_READ_STEP) {
		size_t cap = c->rcap + HTTP_READ_STEP * (c->rcap < 4 * HTTP_READ_STEP ? 1 : 4);
		char *p = realloc(c->rbuf, cap);
		if (p == NULL)
			return false;
		c->rbuf = p;
		c->rcap = cap;
	}
	return true;
}

static bool body_direct(const struct http_conn *c)
{
	return c->state == C_BODY && c->fr.body == HTTP_BODY_LENGTH && c->req != NULL;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct http_conn *c = h->data;
	(void)suggested;
	if (c->tls != NULL && c->state != C_LINGER) {
		*b = uv_buf_init(c->s->tls_scratch, HTTP_TLS_SCRATCH);
		return;
	}
	if (body_direct(c)) {
		struct buf *body = &c->req->body;
		*b = uv_buf_init(body->data + body->len, (unsigned)c->body_left);
		return;
	}
	if (c->state == C_LINGER)
		c->rlen = 0;
	if (!rbuf_room(c)) {
		*b = uv_buf_init(NULL, 0);
		return;
	}
	*b = uv_buf_init(c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

/* n bytes of a Content-Length body arrived in place. */
static void body_received(struct http_conn *c, size_t n)
{
	struct buf *body = &c->req->body;
	body->len += n;
	body->data[body->len] = '\0';
	c->body_left -= (uint64_t)n;
	if (c->body_left == 0)
		dispatch(c);
}

static void left_mid_request(struct http_conn *c, const char *why)
{
	if (c->state == C_HEAD || c->state == C_BODY)
		log_debug("http client left mid-request", "peer=%s error=%s", c->peer, why);
	conn_close(c);
}

/* Decrypts into the head buffer or the body, as a plain read would have filled them, while
 * the connection reads. */
static void tls_pump(struct http_conn *c)
{
	while (c->tls != NULL && !c->closing &&
	       (c->state == C_IDLE || c->state == C_HEAD || c->state == C_BODY)) {
		bool direct = body_direct(c);
		long n;
		if (direct) {
			struct buf *body = &c->req->body;
			n = http_tls_conn_read(c->tls, body->data + body->len,
			                       (size_t)c->body_left);
		} else if (rbuf_room(c)) {
			n = http_tls_conn_read(c->tls, c->rbuf + c->rlen, c->rcap - c->rlen);
		} else {
			conn_close(c);
			return;
		}
		tls_send_pending(c);
		if (n == HTTP_TLS_AGAIN || c->closing)
			return;
		if (n == HTTP_TLS_CLOSED) {
			left_mid_request(c, "close_notify");
			return;
		}
		if (n < 0) {
			client_error(c->s, c, 0, http_tls_conn_error(c->tls));
			conn_close(c);
			return;
		}
		if (direct) {
			body_received(c, (size_t)n);
		} else {
			c->rlen += (size_t)n;
			conn_process(c);
		}
	}
}

/* A plain HTTP request on the TLS port is told so in plain HTTP (as nginx does), not left to
 * guess at a dropped connection. */
static void tls_refuse_plain(struct http_conn *c)
{
	http_tls_conn_free(c->tls);
	c->tls = NULL;
	conn_refuse(c, 400, "tls-required",
	            "this port serves HTTPS: send the request over TLS (https://)");
}

/* The handshake is done when the client's Finished arrived, and in TLS 1.3 the server has
 * nothing to send back for it: the kernel delays its ACK (40 ms), and a client that leaves
 * Nagle on holds its first request, written just behind Finished, until that ACK comes.
 * TCP_QUICKACK sends the pending ACK now. */
static void ack_now(struct http_conn *c)
{
	uv_os_fd_t fd;
	int one = 1;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

static void tls_received(struct http_conn *c, const char *data, size_t n)
{
	struct http_tls_conn *t = c->tls;
	if (!c->tls_fed) {
		c->tls_fed = true;
		/* 0x16: a TLS handshake record. A letter: the method of a plain request. */
		if (data[0] >= 'A' && data[0] <= 'Z') {
			tls_refuse_plain(c);
			return;
		}
	}
	http_tls_conn_feed(t, data, n);
	if (!http_tls_conn_established(t)) {
		enum http_tls_status st = http_tls_conn_handshake(t);
		tls_send_pending(c); /* the alert too, when it failed */
		if (c->closing)
			return;
		if (st == HTTP_TLS_ERROR) {
			client_error(c->s, c, 0, http_tls_conn_error(t));
			linger(c);
			return;
		}
		if (st == HTTP_TLS_AGAIN)
			return;
		ack_now(c);
	}
	tls_pump(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct http_conn *c = st->data;
	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		left_mid_request(c, uv_strerror((int)nread));
		return;
	}
	if (c->state == C_LINGER) {
		c->lingered += (size_t)nread;
		c->rlen = 0;
		if (c->lingered > HTTP_LINGER_BYTES)
			conn_close(c);
		return;
	}
	if (c->tls != NULL) {
		tls_received(c, b->base, (size_t)nread);
		return;
	}
	if (body_direct(c)) {
		body_received(c, (size_t)nread);
		return;
	}
	c->rlen += (size_t)nread;
	conn_process(c);
}

static void conn_read_start(struct http_conn *c)
{
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_close(c);
}

static void on_connection(uv_stream_t *l, int status)
{
	struct http_server *s = l->data;
	if (status < 0) {
		log_warn("http accept failed", "port=%u error=%s", s->port, uv_strerror(status));
		return;
	}
	struct http_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		abort();
	c->s = s;
	uv_tcp_init(&s->hloop, &c->tcp);
	uv_timer_init(&s->hloop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	struct sockaddr_storage ss;
	int len = sizeof ss;
	memset(&ss, 0, sizeof ss);
	uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
	peer_name(&ss, c->peer, sizeof c->peer);
	c->ip = ip_get(s, &ss);
	c->ip->count++;
	const char *why = NULL;
	if (s->n_conns > s->o.max_connections)
		why = "too many connections (--http-max-connections)";
	else if (c->ip->count > s->o.max_connections_per_ip)
		why = "too many connections from one address (--http-max-connections-per-ip)";
	if (why != NULL) {
		/* Refused at once: a client over the limit learns it now instead of waiting. */
		client_error(s, c, 0, why);
		conn_close(c);
		return;
	}
	if (s->o.tls != NULL && (c->tls = http_tls_conn_new(s->o.tls)) == NULL) {
		client_error(s, c, 0, "cannot start a TLS session");
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->state = C_IDLE;
	/* A new connection must start its request within the header timeout. */
	arm(c, C_IDLE, s->o.header_timeout_ms);
	conn_read_start(c);
}

/* ---- server thread: answers from the loop, shutdown -------------------------------- */

static bool answer_has_body(const struct http_request *req)
{
	return !req->head && req->resp_len > 0 && req->status != 204 && req->status != 304;
}

static void write_answer(struct http_request *req)
{
	struct http_conn *c = req->conn;
	if (c->dead) {
		c->s->buffered -= c->reserved;
		http_request_free(req);
		conn_free(c);
		return;
	}
	c->req = NULL;
	size_t body_len = answer_has_body(req) ? req->resp_len : 0;
	size_t total = req->out_head_len + body_len, sent = req->sent;
	if (c->broken || sent == total) {
		/* Written by the loop already (or the connection failed meanwhile). */
		bool close = !req->keep_alive;
		uncharge(c);
		http_request_free(req);
		c->state = C_WRITE;
		answer_done(c, close, c->broken ? UV_EPIPE : 0);
		return;
	}
	struct http_write *wr = calloc(1, sizeof *wr);
	if (wr == NULL)
		abort();
	wr->req = req; /* the write owns it now */
	wr->close = !req->keep_alive;
	uv_buf_t b[2];
	unsigned n = 0;
	if (sent < req->out_head_len)
		b[n++] = uv_buf_init(req->out_head + sent, (unsigned)(req->out_head_len - sent));
	if (body_len > 0) {
		size_t off = sent > req->out_head_len ? sent - req->out_head_len : 0;
		b[n++] = uv_buf_init(req->resp_body + off, (unsigned)(body_len - off));
	}
	conn_write(c, wr, b, n);
}

static void stop_tick(uv_timer_t *t)
{
	struct http_server *s = t->data;
	uint64_t now = uv_now(&s->hloop);
	bool late = now - s->stop_ms >= HTTP_CLOSE_FLUSH_MS;
	for (struct http_conn *c = s->conns, *next; c != NULL; c = next) {
		next = c->next;
		uint64_t since = c->state_ms > s->stop_ms ? c->state_ms : s->stop_ms;
		if (late ||
		    (c->state == C_IDLE && c->rlen == 0 && now - since >= HTTP_CLOSE_IDLE_MS))
			conn_close(c);
	}
	if (s->conns != NULL)
		return;
	uv_close((uv_handle_t *)&s->stop_timer, NULL);
	uv_close((uv_handle_t *)&s->hwake, NULL);
}

static void unlisten(uv_check_t *h)
{
	struct http_server *s = h->data;
	uv_close((uv_handle_t *)&s->listener, NULL);
	uv_close((uv_handle_t *)&s->unlisten, NULL);
}

/* The loop answered everything it held before it set `stop`; what it has not even seen yet
 * is answered here, then the listener goes (after this iteration's accepts) and connections
 * get their last chance to send a request and be told 503 (stop_tick). */
static void begin_stop(struct http_server *s)
{
	s->stopping = true;
	s->stop_ms = uv_now(&s->hloop);
	struct http_request *keep_head = NULL, *keep_tail = NULL, *back_head = NULL,
	                    *back_tail = NULL, *req;
	pthread_mutex_lock(&s->mu);
	while ((req = queue_pop(&s->in_head, &s->in_tail)) != NULL)
		queue_push(req->early ? &keep_head : &back_head,
		           req->early ? &keep_tail : &back_tail, req);
	s->in_head = keep_head;
	s->in_tail = keep_tail;
	pthread_mutex_unlock(&s->mu);
	while ((req = queue_pop(&back_head, &back_tail)) != NULL) {
		struct http_conn *c = req->conn;
		if (c->dead) {
			s->buffered -= c->reserved;
			http_request_free(req);
			conn_free(c);
			continue;
		}
		c->state = C_BODY; /* so conn_refuse treats it as the connection's request */
		c->req = req;
		conn_refuse(c, 503, "shutting-down", "the coordinator is shutting down");
	}
	uv_check_init(&s->hloop, &s->unlisten);
	s->unlisten.data = s;
	uv_check_start(&s->unlisten, unlisten);
	uv_timer_init(&s->hloop, &s->stop_timer);
	s->stop_timer.data = s;
	uv_timer_start(&s->stop_timer, stop_tick, 10, 10);
}

static void on_hwake(uv_async_t *a)
{
	struct http_server *s = a->data;
	struct http_request *head, *tail, *req;
	pthread_mutex_lock(&s->mu);
	head = s->out_head;
	tail = s->out_tail;
	s->out_head = s->out_tail = NULL;
	bool stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	while ((req = queue_pop(&head, &tail)) != NULL)
		write_answer(req);
	if (stop && !s->stopping)
		begin_stop(s);
}

static void *thread_main(void *arg)
{
	struct http_server *s = arg;
	sigset_t all;
	/* Signals are the loop thread's business; a write to a dead peer is EPIPE here. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	uv_run(&s->hloop, UV_RUN_DEFAULT);
	return NULL;
}

/* ---- loop thread --------------------------------------------------------------------- */

static void pending_remove(struct http_server *s, struct http_request *req)
{
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		s->pending_head = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
	req->on_loop = false;
	s->pending--;
}

static void pending_add(struct http_server *s, struct http_request *req)
{
	req->prev = NULL;
	req->next = s->pending_head;
	if (s->pending_head != NULL)
		s->pending_head->prev = req;
	s->pending_head = req;
	req->on_loop = true;
	s->pending++;
}

static void complete(struct http_server *s, struct http_request *req)
{
	if (s->o.complete != NULL)
		s->o.complete(req, req->status, (double)(uv_hrtime() - req->start_ns) / 1e9,
		              s->o.arg);
}

static bool skip_header(const char *name)
{
	static const char *const mine[] = {"Content-Length", "Connection", "Transfer-Encoding",
	                                   "Date", NULL};
	for (int i = 0; mine[i] != NULL; i++)
		if (strcasecmp(name, mine[i]) == 0)
			return true;
	return false;
}

void http_server_answered(struct http_request *req)
{
	struct http_server *s = req->s;
	char date[48];
	if (req->on_loop)
		pending_remove(s, req);
	if (server_closing(s))
		req->keep_alive = false;
	struct buf h;
	buf_init(&h);
	http_date(date, sizeof date);
	buf_printf(&h, "HTTP/1.1 %u %s\r\nDate: %s\r\n", req->status, http_reason(req->status),
	           date);
	if (req->content_type != NULL)
		buf_printf(&h, "Content-Type: %s\r\n", req->content_type);
	if (req->status != 204 && req->status != 304)
		buf_printf(&h, "Content-Length: %zu\r\n", req->resp_len);
	for (size_t i = 0; i < req->nheaders; i++) {
		const struct http_header *x = &req->headers[i];
		if (skip_header(x->name) ||
		    (req->content_type != NULL && strcasecmp(x->name, "Content-Type") == 0))
			continue;
		buf_printf(&h, "%s: %s\r\n", x->name, x->value);
	}
	if (!req->keep_alive)
		buf_puts(&h, "Connection: close\r\n");
	buf_puts(&h, "\r\n");
	req->out_head_len = h.len;
	req->out_head = buf_detach(&h, NULL);
	buf_close(&h);
	if (req->fd >= 0) {
		/* Direct write (see the top of the file). */
		struct iovec iov[2] = {{req->out_head, req->out_head_len},
		                       {req->resp_body, req->resp_len}};
		struct msghdr m = {.msg_iov = iov, .msg_iovlen = answer_has_body(req) ? 2 : 1};
		ssize_t n = sendmsg(req->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		req->sent = n > 0 ? (size_t)n : 0;
	}
	/* Before the hand-over: the request belongs to the server thread afterwards. */
	complete(s, req);
	pthread_mutex_lock(&s->mu);
	queue_push(&s->out_head, &s->out_tail, req);
	pthread_mutex_unlock(&s->mu);
	uv_async_send(&s->hwake);
}

static void respond_shutting_down(struct http_request *req)
{
	struct buf b;
	buf_init(&b);
	http_problem_body(&b, 503, "shutting-down", "the coordinator is shutting down");
	http_response_header(req, "Retry-After", "1");
	http_respond(req, 503, "application/problem+json", b.data, b.len);
	buf_close(&b);
}

static void server_close_now(struct http_server *s);

/* Whether the client of a request that waited long has closed its connection meanwhile (a
 * heartbeat whose deadline passed, a curl that timed out). Under overload a queue fills with
 * such requests; running their handlers, and rendering answers nobody reads, is what kept an
 * overloaded leader overloaded (the queue grew to 24 s, then connections were refused). The
 * server thread is not reading the socket while the loop holds the request (as for the direct
 * write), so a peek sees the FIN: 0 bytes. Plain HTTP only: on TLS the peer's close_notify is
 * data. A client that half-closes after its request and waits for the answer is taken for
 * gone too, and only when its request waited HTTP_STALE_NS. */
static bool client_gone(const struct http_request *req)
{
	char byte;
	if (req->fd < 0 || uv_hrtime() - req->queued_ns < HTTP_STALE_NS)
		return false;
	ssize_t n = recv(req->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void respond_gone(struct http_request *req)
{
	struct buf b;
	buf_init(&b);
	http_problem_body(&b, 503, "client-gone",
	                  "the client closed the connection while the request waited for the "
	                  "coordinator (overloaded); it was not run");
	http_request_set_tag(req, "gone");
	http_response_header(req, "Retry-After", "1");
	http_respond(req, 503, "application/problem+json", b.data, b.len);
	buf_close(&b);
}

static void handle(struct http_server *s, struct http_request *req)
{
	if (req->early) {
		complete(s, req);
		http_request_free(req);
		return;
	}
	pending_add(s, req);
	if (s->close_requested) {
		respond_shutting_down(req);
		return;
	}
	if (s->o.prepare != NULL)
		s->o.prepare(req, s->o.arg);
	if (client_gone(req)) {
		respond_gone(req);
		return;
	}
	s->o.handler(req, s->o.arg);
}

static void on_wake(uv_async_t *a)
{
	struct http_server *s = a->data;
	uint64_t start = uv_hrtime();
	bool more = false;
	s->in_drain = true;
	for (unsigned n = 0; n < HTTP_DRAIN_MAX && uv_hrtime() - start < HTTP_DRAIN_NS; n++) {
		pthread_mutex_lock(&s->mu);
		struct http_request *req = queue_pop(&s->in_head, &s->in_tail);
		more = s->in_head != NULL;
		pthread_mutex_unlock(&s->mu);
		if (req == NULL)
			break;
		handle(s, req);
	}
	s->in_drain = false;
	if (s->close_requested) {
		server_close_now(s);
		return;
	}
	/* The rest waits for the next iteration: raft's timers and I/O come first. */
	if (more)
		uv_async_send(&s->wake);
}

static void drain_early(struct http_server *s)
{
	struct http_request *req;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		req = queue_pop(&s->in_head, &s->in_tail);
		pthread_mutex_unlock(&s->mu);
		if (req == NULL)
			return;
		if (req->early) {
			complete(s, req);
			http_request_free(req);
		} else {
			pending_add(s, req);
			respond_shutting_down(req);
		}
	}
}

/* After the server thread has gone: only its "early" notices can be queued (dispatch refuses
 * everything else once stopping), but nothing may be answered now, since the answer queue
 * has no thread left to write it. Anything else is dropped with its dead connection. */
static void drain_stopped(struct http_server *s)
{
	struct http_request *req;
	while ((req = queue_pop(&s->in_head, &s->in_tail)) != NULL) {
		struct http_conn *c = req->early ? NULL : req->conn;
		if (req->early)
			complete(s, req);
		http_request_free(req);
		if (c != NULL && c->dead)
			conn_free(c);
	}
}

static void on_wake_closed(uv_handle_t *h)
{
	struct http_server *s = h->data;
	pthread_mutex_destroy(&s->mu);
	free(s->snap);
	free(s->tls_scratch);
	free(s);
}

static void server_close_now(struct http_server *s)
{
	if (s->closed)
		return;
	s->closed = true;
	s->close_requested = false;
	unsigned held = s->pending;
	pthread_mutex_lock(&s->mu);
	s->closing = true;
	pthread_mutex_unlock(&s->mu);
	while (s->pending_head != NULL)
		respond_shutting_down(s->pending_head);
	drain_early(s);
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_mutex_unlock(&s->mu);
	uv_async_send(&s->hwake);
	/* Bounded by HTTP_CLOSE_FLUSH_MS (stop_tick). */
	pthread_join(s->thread, NULL);
	int rv = uv_loop_close(&s->hloop);
	if (rv != 0)
		log_warn("http server loop closed with handles open", "port=%u error=%s", s->port,
		         uv_strerror(rv));
	s->in_drain = true; /* close must not be re-entered from complete */
	drain_stopped(s);
	log_info("http server stopped", "port=%u answered_pending=%u", s->port, held);
	uv_close((uv_handle_t *)&s->wake, on_wake_closed);
}

void http_server_close(struct http_server *s)
{
	if (s == NULL || s->closed)
		return;
	if (s->in_drain) {
		/* Called from a handler: finish once the drain returns. */
		s->close_requested = true;
		return;
	}
	server_close_now(s);
}

unsigned http_server_port(const struct http_server *s)
{
	return s->port;
}

unsigned http_server_pending(const struct http_server *s)
{
	return s->pending;
}

uint64_t http_server_backlog_ms(struct http_server *s)
{
	uint64_t queued = 0;
	pthread_mutex_lock(&s->mu);
	if (s->in_head != NULL)
		queued = s->in_head->queued_ns;
	pthread_mutex_unlock(&s->mu);
	uint64_t now = uv_hrtime();
	return queued != 0 && now > queued ? (now - queued) / 1000000 : 0;
}

/* ---- start-up -------------------------------------------------------------------------- */

/* Splits "host:port" / "[v6]:port" / ":port" and resolves it for bind(). */
static int parse_addr(const char *addr, struct addrinfo **out, char *err, size_t errlen)
{
	const char *colon = strrchr(addr, ':');
	if (colon == NULL) {
		snprintf(err, errlen, "listen address \"%s\" is not host:port", addr);
		return -1;
	}
	char host[256];
	size_t hlen = (size_t)(colon - addr);
	const char *h = addr;
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen >= sizeof host) {
		snprintf(err, errlen, "listen address \"%s\" has a host name too long", addr);
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';

	const char *port = colon + 1;
	char *end;
	errno = 0;
	unsigned long p = strtoul(port, &end, 10);
	if (port[0] == '\0' || port[0] == '-' || port[0] == '+' || *end != '\0' || errno != 0 ||
	    p > 65535) {
		snprintf(err, errlen, "listen address \"%s\" has a bad port", addr);
		return -1;
	}

	struct addrinfo hints = {0};
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rv = getaddrinfo(hlen ? host : NULL, port, &hints, out);
	if (rv != 0) {
		snprintf(err, errlen, "cannot resolve listen address \"%s\": %s", addr,
		         gai_strerror(rv));
		return -1;
	}
	return 0;
}

static void defaults(struct http_server_options *o)
{
	if (o->max_connections == 0)
		o->max_connections = 10000;
	if (o->max_connections_per_ip == 0)
		o->max_connections_per_ip = 1024;
	if (o->max_buffered == 0)
		o->max_buffered = 64u * 1024 * 1024;
	if (o->header_timeout_ms == 0)
		o->header_timeout_ms = 10000;
	if (o->body_timeout_ms == 0)
		o->body_timeout_ms = 10000;
	if (o->idle_timeout_ms == 0)
		o->idle_timeout_ms = 120000;
}

/* Binds on the server thread's loop, from this thread (it does not run yet). */
static int listen_on(struct http_server *s, const char *addr, char *err, size_t errlen)
{
	struct addrinfo *ai;
	uv_tcp_init(&s->hloop, &s->listener);
	s->listener.data = s;
	if (parse_addr(addr, &ai, err, errlen) != 0)
		return -1;
	int rv = uv_tcp_bind(&s->listener, ai->ai_addr, 0);
	freeaddrinfo(ai);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
	if (rv != 0) {
		snprintf(err, errlen, "cannot start http server on %s: %s", addr, uv_strerror(rv));
		return -1;
	}
	struct sockaddr_storage ss;
	int len = sizeof ss;
	uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
	s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
	                                   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

int http_server_init(struct http_server **out, uv_loop_t *loop,
                     const struct http_server_options *opts, char *err, size_t errlen)
{
	*out = NULL;
	if (opts->handler == NULL || opts->addr == NULL) {
		snprintf(err, errlen, "http server needs an address and a handler");
		return -1;
	}
	struct http_server *s = calloc(1, sizeof *s);
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->loop = loop;
	s->o = *opts;
	s->o.addr = NULL;
	snprintf(s->addr, sizeof s->addr, "%s", opts->addr);
	defaults(&s->o);
	if (s->o.tls != NULL && (s->tls_scratch = malloc(HTTP_TLS_SCRATCH)) == NULL)
		abort();
	pthread_mutex_init(&s->mu, NULL);
	uv_loop_init(&s->hloop);
	uv_async_init(&s->hloop, &s->hwake, on_hwake);
	s->hwake.data = s;
	if (listen_on(s, opts->addr, err, errlen) != 0) {
		uv_close((uv_handle_t *)&s->listener, NULL);
		uv_close((uv_handle_t *)&s->hwake, NULL);
		uv_run(&s->hloop, UV_RUN_DEFAULT);
		uv_loop_close(&s->hloop);
		pthread_mutex_destroy(&s->mu);
		free(s->tls_scratch);
		free(s);
		return -1;
	}
	uv_async_init(loop, &s->wake, on_wake);
	s->wake.data = s;
	int rv = pthread_create(&s->thread, NULL, thread_main, s);
	if (rv != 0) {
		snprintf(err, errlen, "http server on %s: cannot start its thread: %s", opts->addr,
		         strerror(rv));
		uv_close((uv_handle_t *)&s->listener, NULL);
		uv_close((uv_handle_t *)&s->hwake, NULL);
		uv_run(&s->hloop, UV_RUN_DEFAULT);
		uv_loop_close(&s->hloop);
		s->closed = true;
		uv_close((uv_handle_t *)&s->wake, on_wake_closed);
		return -1;
	}
	log_info("http server listening", "addr=%s port=%u", opts->addr, s->port);
	*out = s;
	return 0;
}
