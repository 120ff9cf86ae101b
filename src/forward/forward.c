/* forward: asynchronous HTTP client on a libuv loop (see forward.h).
 *
 * This is the canonical curl multi_socket integration (curl's docs/examples/multi-uv.c):
 *
 *  - CURLMOPT_SOCKETFUNCTION tells us which sockets curl wants watched; each gets a uv_poll_t
 *    (a struct fwd_sock, remembered with curl_multi_assign) that is started, updated and
 *    closed as curl asks.
 *  - CURLMOPT_TIMERFUNCTION arms the single uv_timer_t. A 0 ms timeout is armed as a 0 ms
 *    uv timer, i.e. it fires from the loop, never synchronously from inside curl.
 *  - Poll events and timer expiry call curl_multi_socket_action(); afterwards we drain
 *    curl_multi_info_read() and complete finished transfers.
 *
 * Because fwd_send() only adds an easy handle to the multi handle (which merely arms the
 * timer), every completion, including one for a transfer that fails at once (bad URL,
 * refused connection), is delivered from a loop callback, never from inside fwd_send().
 *
 * Connections live in the multi handle's connection cache, so keep-alive connections to the
 * leader are reused by later requests regardless of which easy handle runs them; we also keep
 * a few reset easy handles around to save their allocation.
 *
 * Users of this module: follower→leader write forwarding (api/proxy.c), the auto-join /
 * removal-check logic (raft/autojoin.c), and cloudlessctl (ctl/client.c), which runs it on a
 * private loop and names itself with fwd_set_user_agent. They rely on the result classification:
 * FWD_CONNECT_FAILED only when nothing can have reached the peer, so it is safe to retry.
 * CURLE_OPERATION_TIMEDOUT maps to FWD_TIMEOUT ("outcome unknown") once a connection was
 * established, and to FWD_CONNECT_FAILED when the connect timeout fired before it was: then
 * nothing was sent and the caller may safely retry elsewhere. */
#include "forward/forward.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log/log.h"

#ifndef CLOUDLESS_VERSION
#define CLOUDLESS_VERSION "dev"
#endif

#define FWD_DEFAULT_TIMEOUT_MS 10000u
#define FWD_MAX_CONNECT_MS     2000u
/* Idle connections kept by the multi handle. A follower forwards each concurrent client
 * request on its own HTTP/1.1 connection to the leader, so this must cover the forwarding
 * concurrency we expect: past it, every completed forward closes its connection and the
 * next one pays a new TCP handshake (at 256 clients on a follower with 64 cached, throughput
 * fell to a third of the leader's). Far more than the number of peers, too, so the leader
 * connection is never evicted by an auto-join burst. */
#define FWD_MAX_CONNECTS 512L
/* Reset easy handles kept for reuse. Only saves allocations; connections are pooled by the
 * multi handle regardless. */
#define FWD_EASY_CACHE 64

/* One socket curl asked us to watch. */
struct fwd_sock {
	uv_poll_t poll; /* poll.data points back to this struct */
	struct fwd *f;
	curl_socket_t fd;
	struct fwd_sock *prev, *next; /* in f->socks while open; unlinked once uv_close'd */
};

/* One request in flight. */
struct fwd_xfer {
	struct fwd *f;
	CURL *easy;
	struct fwd_xfer *prev, *next; /* in f->xfers */
	uint64_t id;                  /* for fwd_cancel */
	fwd_cb cb;
	void *arg;
	char *method; /* copies, for log lines */
	char *url;
	char *body; /* request body copy, NULL when there is none */
	struct curl_slist *req_headers;
	uint64_t start_ns;
	bool oom;          /* a response callback ran out of memory; curl reports a write error */
	unsigned sends;    /* times curl was about to send the request (see on_prereq) */
	bool at_most_once; /* fwd_request.fresh_connection: refuse curl's re-send */

	/* Response being collected. */
	char *resp_body;
	size_t resp_len, resp_cap;
	struct fwd_header *resp_headers; /* name/value point into one malloc'd block each */
	size_t n_resp_headers, cap_resp_headers;

	char errbuf[CURL_ERROR_SIZE];
	char errmsg[CURL_ERROR_SIZE + 128];
};

struct fwd {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct fwd_sock *socks;
	struct fwd_xfer *xfers;
	unsigned n_xfers;
	uint64_t last_id;
	CURL *easy_cache[FWD_EASY_CACHE];
	unsigned n_easy_cache;
	char *user_agent; /* NULL: the coordinator's own */
	bool tls;         /* fwd_set_tls was called */
	char *ca_file, *cert_file, *key_file;
	bool closing;
	unsigned handles_closing; /* uv_close()d handles whose close callback has not run */
	void (*done)(void *arg);
	void *done_arg;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const char *result_name(enum fwd_result r)
{
	switch (r) {
	case FWD_OK:
		return "ok";
	case FWD_CONNECT_FAILED:
		return "connect_failed";
	case FWD_TIMEOUT:
		return "timeout";
	case FWD_FAILED:
		return "failed";
	case FWD_CANCELED:
		return "canceled";
	}
	return "unknown";
}

/* ---- handle lifetime ------------------------------------------------------------------ */

static void maybe_finish(struct fwd *f)
{
	if (!f->closing || f->handles_closing > 0)
		return;
	void (*done)(void *) = f->done;
	void *arg = f->done_arg;
	free(f->user_agent);
	free(f->ca_file);
	free(f->cert_file);
	free(f->key_file);
	free(f);
	if (done != NULL)
		done(arg);
}

static void on_sock_closed(uv_handle_t *h)
{
	struct fwd_sock *s = h->data;
	struct fwd *f = s->f;
	free(s);
	f->handles_closing--;
	maybe_finish(f);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct fwd *f = h->data;
	f->handles_closing--;
	maybe_finish(f);
}

/* Stops watching a socket and closes its poll handle. Must run before curl closes the fd:
 * libuv removes the fd from epoll here, and a later socket that reuses the same fd number
 * then gets a fresh, independent registration. */
static void sock_close(struct fwd *f, struct fwd_sock *s)
{
	int rc = uv_poll_stop(&s->poll);
	if (rc != 0)
		log_warn("Forward poll stop failed", "fd=%d error=%s", (int)s->fd, uv_strerror(rc));
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		f->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	f->handles_closing++;
	uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* ---- transfers ------------------------------------------------------------------------ */

static void xfer_unlink(struct fwd *f, struct fwd_xfer *x)
{
	if (x->prev != NULL)
		x->prev->next = x->next;
	else
		f->xfers = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
	f->n_xfers--;
}

static void xfer_reset_headers(struct fwd_xfer *x)
{
	for (size_t i = 0; i < x->n_resp_headers; i++)
		free((char *)x->resp_headers[i].name); /* value lives in the same block */
	x->n_resp_headers = 0;
}

static void xfer_free(struct fwd_xfer *x)
{
	xfer_reset_headers(x);
	free(x->resp_headers);
	free(x->resp_body);
	curl_slist_free_all(x->req_headers);
	free(x->body);
	free(x->method);
	free(x->url);
	free(x);
}

/* Returns an easy handle to the cache, or frees it. The handle must not be in the multi. */
static void easy_release(struct fwd *f, CURL *easy)
{
	if (easy == NULL)
		return;
	if (!f->closing && f->n_easy_cache < FWD_EASY_CACHE) {
		/* Reset drops every option (including pointers into the finished xfer) but, as
		 * the connection belongs to the multi handle's cache, no connection. */
		curl_easy_reset(easy);
		f->easy_cache[f->n_easy_cache++] = easy;
		return;
	}
	curl_easy_cleanup(easy);
}

/* CURLOPT_PREREQFUNCTION: called each time curl is about to send the request on a (new or
 * reused) connection. A second call is curl's silent re-send after a reused connection died:
 * at-most-once requests refuse it, the first copy may have been acted on. Every request counts
 * its sends, so that a re-send that cannot connect is never reported as "not sent". */
static int on_prereq(void *arg, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
	struct fwd_xfer *x = arg;
	(void)conn_primary_ip;
	(void)conn_local_ip;
	(void)conn_primary_port;
	(void)conn_local_port;
	return x->sends++ == 0 || !x->at_most_once ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

static CURL *easy_acquire(struct fwd *f)
{
	if (f->n_easy_cache > 0)
		return f->easy_cache[--f->n_easy_cache];
	return curl_easy_init();
}

static enum fwd_result classify(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return FWD_OK;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return FWD_CONNECT_FAILED;
	case CURLE_OPERATION_TIMEDOUT:
		/* Also when the connect timeout fired (see the top of the file). */
		return FWD_TIMEOUT;
	default:
		return FWD_FAILED;
	}
}

/* Finishes a transfer: detaches it from curl and from f, runs the callback, frees it.
 * `rc` is curl's result, ignored when `canceled`. The easy handle is released before the
 * callback so that the callback may call fwd_send() (reusing it) or fwd_close(). */
static void xfer_complete(struct fwd_xfer *x, CURLcode rc, bool canceled)
{
	struct fwd *f = x->f;
	struct fwd_response resp = {0};
	long status = 0;

	long sent = 0;
	if (!canceled) {
		/* Bytes of request issued; 0 means a timeout fired before anything was sent. */
		curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent);
		CURLcode irc = curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		if (irc != CURLE_OK) {
			log_warn("Forward response code unavailable",
			         "method=%s url=%s error=\"%s\"", x->method, x->url,
			         curl_easy_strerror(irc));
			status = 0;
		}
	}
	CURLMcode mc = curl_multi_remove_handle(f->multi, x->easy);
	if (mc != CURLM_OK) {
		/* Should not happen; do not recycle a handle curl may still consider busy. */
		log_error("Forward remove handle failed", "method=%s url=%s error=\"%s\"",
		          x->method, x->url, curl_multi_strerror(mc));
		curl_easy_cleanup(x->easy);
	} else {
		easy_release(f, x->easy);
	}
	x->easy = NULL;
	xfer_unlink(f, x);

	resp.status = status;
	resp.seconds = (double)(uv_hrtime() - x->start_ns) / 1e9;
	resp.headers = x->resp_headers;
	resp.n_headers = x->n_resp_headers;
	resp.body = x->resp_body != NULL ? x->resp_body : "";
	resp.body_len = x->resp_body != NULL ? x->resp_len : 0;

	if (canceled) {
		resp.result = FWD_CANCELED;
		resp.error = f->closing ? "canceled: forward client closed" : "canceled";
	} else if (x->oom) {
		resp.result = FWD_FAILED;
		resp.error = "out of memory buffering the response";
	} else {
		resp.result = classify(rc);
		if (resp.result == FWD_TIMEOUT && sent == 0)
			resp.result = FWD_CONNECT_FAILED;
		/* The request went out once already and curl's re-send could not connect (or was
		 * refused by on_prereq): it may have reached the peer, so never "not sent". */
		if (x->sends > 0 && resp.result == FWD_CONNECT_FAILED)
			resp.result = FWD_FAILED;
		if (resp.result != FWD_OK) {
			if (x->errbuf[0] != '\0')
				snprintf(x->errmsg, sizeof x->errmsg, "%s: %s",
				         curl_easy_strerror(rc), x->errbuf);
			else
				snprintf(x->errmsg, sizeof x->errmsg, "%s", curl_easy_strerror(rc));
			resp.error = x->errmsg;
		}
	}

	if (resp.result == FWD_CANCELED)
		log_debug("Forward request canceled", "method=%s url=%s", x->method, x->url);
	else if (resp.result != FWD_OK)
		/* Debug only: every caller reports the failure with its own context (join attempt,
		 * forwarded write), and a retry loop would otherwise log each attempt twice. */
		log_debug("Forward request failed",
		          "method=%s url=%s result=%s seconds=%.3f error=\"%s\"", x->method, x->url,
		          result_name(resp.result), resp.seconds, resp.error);
	else
		log_debug("Forward request done", "method=%s url=%s status=%ld seconds=%.3f",
		          x->method, x->url, status, resp.seconds);

	x->cb(&resp, x->arg);
	xfer_free(x);
}

/* Completes every transfer curl reports as done. Stops early if a callback closed f (the
 * multi handle is gone then; f itself stays allocated until its handles are closed). */
static void drain_done(struct fwd *f)
{
	CURLMsg *msg;
	int left;
	while (!f->closing && (msg = curl_multi_info_read(f->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		/* msg is invalidated by curl_multi_remove_handle: copy what we need first. */
		CURL *easy = msg->easy_handle;
		CURLcode rc = msg->data.result;
		char *priv = NULL;
		CURLcode irc = curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		if (irc != CURLE_OK || priv == NULL) {
			log_error("Forward transfer without context", "error=\"%s\"",
			          curl_easy_strerror(irc));
			curl_multi_remove_handle(f->multi, easy);
			curl_easy_cleanup(easy);
			continue;
		}
		xfer_complete((struct fwd_xfer *)priv, rc, false);
	}
}

static void socket_action(struct fwd *f, curl_socket_t fd, int flags)
{
	int running = 0;
	CURLMcode mc = curl_multi_socket_action(f->multi, fd, flags, &running);
	if (mc != CURLM_OK)
		log_error("Forward socket action failed", "fd=%d flags=%d error=\"%s\"", (int)fd,
		          flags, curl_multi_strerror(mc));
	/* Even after an error: transfers curl aborted are reported through info_read. */
	drain_done(f);
}

/* ---- curl → libuv glue ---------------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct fwd_sock *s = h->data;
	struct fwd *f = s->f;
	int flags = 0;

	if (f->closing)
		return;
	if (status < 0) {
		/* Let curl find out what is wrong with the socket and fail the transfer. */
		log_debug("Forward poll error", "fd=%d error=%s", (int)s->fd, uv_strerror(status));
		flags = CURL_CSELECT_ERR;
	} else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	/* s may be closed (not yet freed) by this call; do not touch it afterwards. */
	socket_action(f, s->fd, flags);
}

static void on_timer(uv_timer_t *t)
{
	struct fwd *f = t->data;
	if (f->closing)
		return;
	socket_action(f, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct fwd *f = userp;
	struct fwd_sock *s = socketp;
	(void)easy;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			sock_close(f, s);
			/* Not while closing: curl_multi_cleanup may be tearing the hash down. */
			if (!f->closing)
				curl_multi_assign(f->multi, fd, NULL);
		}
		return 0;
	}
	if (f->closing)
		return 0; /* no new watches while closing; fwd_close closes leftovers */

	int events = 0;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;

	if (s == NULL) {
		s = calloc(1, sizeof *s);
		if (s == NULL) {
			/* Returning -1 makes curl abort the transfers of this multi handle (7.85+);
			 * without a watch the socket would hang until its timeout anyway. */
			log_error("Forward socket watch failed", "fd=%d error=\"out of memory\"",
			          (int)fd);
			return -1;
		}
		int rc = uv_poll_init_socket(f->loop, &s->poll, fd);
		if (rc != 0) {
			log_error("Forward socket watch failed", "fd=%d error=%s", (int)fd,
			          uv_strerror(rc));
			free(s);
			return -1;
		}
		s->poll.data = s;
		s->f = f;
		s->fd = fd;
		s->next = f->socks;
		if (f->socks != NULL)
			f->socks->prev = s;
		f->socks = s;
		CURLMcode mc = curl_multi_assign(f->multi, fd, s);
		if (mc != CURLM_OK) {
			log_error("Forward socket assign failed", "fd=%d error=\"%s\"", (int)fd,
			          curl_multi_strerror(mc));
			sock_close(f, s);
			return -1;
		}
	}
	int rc = uv_poll_start(&s->poll, events, on_poll);
	if (rc != 0) {
		log_error("Forward poll start failed", "fd=%d events=%d error=%s", (int)fd, events,
		          uv_strerror(rc));
		return -1;
	}
	return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct fwd *f = userp;
	(void)multi;

	if (f->closing)
		return 0;
	if (timeout_ms < 0) {
		uv_timer_stop(&f->timer);
		return 0;
	}
	/* 0 ms still goes through the loop: socket_action must not recurse into curl, and a
	 * completion must never run inside fwd_send(). */
	int rc = uv_timer_start(&f->timer, on_timer, (uint64_t)timeout_ms, 0);
	if (rc != 0) {
		log_error("Forward timer start failed", "timeout_ms=%ld error=%s", timeout_ms,
		          uv_strerror(rc));
		return -1;
	}
	return 0;
}

/* ---- response collection -------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct fwd_xfer *x = userp;
	size_t n = size * nmemb;

	if (n == 0)
		return 0;
	if (x->resp_len + n + 1 > x->resp_cap) {
		size_t cap = x->resp_cap != 0 ? x->resp_cap : 4096;
		while (cap < x->resp_len + n + 1) {
			if (cap > SIZE_MAX / 2) {
				x->oom = true;
				return 0;
			}
			cap *= 2;
		}
		char *p = realloc(x->resp_body, cap);
		if (p == NULL) {
			x->oom = true;
			return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
		}
		x->resp_body = p;
		x->resp_cap = cap;
	}
	memcpy(x->resp_body + x->resp_len, data, n);
	x->resp_len += n;
	x->resp_body[x->resp_len] = '\0';
	return n;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Appends one header; returns false on out of memory. */
static bool add_resp_header(struct fwd_xfer *x, const char *name, size_t nlen, const char *value,
                            size_t vlen)
{
	if (x->n_resp_headers == x->cap_resp_headers) {
		size_t cap = x->cap_resp_headers != 0 ? x->cap_resp_headers * 2 : 16;
		struct fwd_header *h = realloc(x->resp_headers, cap * sizeof *h);
		if (h == NULL)
			return false;
		x->resp_headers = h;
		x->cap_resp_headers = cap;
	}
	char *block = malloc(nlen + 1 + vlen + 1);
	if (block == NULL)
		return false;
	memcpy(block, name, nlen);
	block[nlen] = '\0';
	memcpy(block + nlen + 1, value, vlen);
	block[nlen + 1 + vlen] = '\0';
	x->resp_headers[x->n_resp_headers].name = block;
	x->resp_headers[x->n_resp_headers].value = block + nlen + 1;
	x->n_resp_headers++;
	return true;
}

/* Continuation line (obsolete line folding): append to the previous header's value. */
static bool fold_resp_header(struct fwd_xfer *x, const char *more, size_t mlen)
{
	struct fwd_header *h = &x->resp_headers[x->n_resp_headers - 1];
	size_t nlen = strlen(h->name), vlen = strlen(h->value);
	char *block = malloc(nlen + 1 + vlen + 1 + mlen + 1);
	if (block == NULL)
		return false;
	memcpy(block, h->name, nlen + 1);
	memcpy(block + nlen + 1, h->value, vlen);
	block[nlen + 1 + vlen] = ' ';
	memcpy(block + nlen + 1 + vlen + 1, more, mlen);
	block[nlen + 1 + vlen + 1 + mlen] = '\0';
	free((char *)h->name);
	h->name = block;
	h->value = block + nlen + 1;
	return true;
}

/* curl passes each header line separately, CRLF included, status lines too. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct fwd_xfer *x = userp;
	size_t n = size * nmemb;
	const char *p = data, *end = data + n;

	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		/* A new response begins (e.g. after a 1xx): only the final one counts. */
		xfer_reset_headers(x);
		x->resp_len = 0;
		if (x->resp_body != NULL)
			x->resp_body[0] = '\0';
		return n;
	}
	bool folded = n > 0 && (data[0] == ' ' || data[0] == '\t');
	while (end > p && is_ows(end[-1]))
		end--;
	while (p < end && is_ows(*p))
		p++;
	if (p == end)
		return n; /* the blank line ending the header block */

	bool ok;
	if (folded) {
		if (x->n_resp_headers == 0)
			return n; /* nothing to continue; ignore */
		ok = fold_resp_header(x, p, (size_t)(end - p));
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		if (colon == NULL || colon == p)
			return n; /* not a header line; ignore it rather than fail */
		const char *nend = colon;
		while (nend > p && is_ows(nend[-1]))
			nend--;
		const char *v = colon + 1;
		while (v < end && is_ows(*v))
			v++;
		ok = add_resp_header(x, p, (size_t)(nend - p), v, (size_t)(end - v));
	}
	if (!ok) {
		x->oom = true;
		return 0;
	}
	return n;
}

/* ---- public API ----------------------------------------------------------------------- */

int fwd_init(struct fwd **out, uv_loop_t *loop)
{
	*out = NULL;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		log_error("Forward client init failed", "step=curl_global_init error=\"%s\"",
		          curl_easy_strerror(global_rc));
		return -1;
	}

	struct fwd *f = calloc(1, sizeof *f);
	if (f == NULL) {
		log_error("Forward client init failed", "step=alloc error=\"out of memory\"");
		return -1;
	}
	f->loop = loop;
	f->multi = curl_multi_init();
	if (f->multi == NULL) {
		log_error("Forward client init failed", "step=curl_multi_init error=\"%s\"",
		          "curl_multi_init returned NULL");
		free(f);
		return -1;
	}

	CURLMcode mc;
	const char *opt;
#define MSETOPT(o, v)                                                     \
	do {                                                              \
		opt = #o;                                                 \
		if ((mc = curl_multi_setopt(f->multi, o, v)) != CURLM_OK) \
			goto fail;                                        \
	} while (0)
	MSETOPT(CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	MSETOPT(CURLMOPT_SOCKETDATA, f);
	MSETOPT(CURLMOPT_TIMERFUNCTION, on_curl_timer);
	MSETOPT(CURLMOPT_TIMERDATA, f);
	MSETOPT(CURLMOPT_MAXCONNECTS, FWD_MAX_CONNECTS);
#undef MSETOPT

	int rc = uv_timer_init(loop, &f->timer);
	if (rc != 0) {
		log_error("Forward client init failed", "step=uv_timer_init error=%s",
		          uv_strerror(rc));
		curl_multi_cleanup(f->multi);
		free(f);
		return -1;
	}
	f->timer.data = f;
	*out = f;
	return 0;

fail:
	log_error("Forward client init failed", "step=curl_multi_setopt option=%s error=\"%s\"",
	          opt, curl_multi_strerror(mc));
	curl_multi_cleanup(f->multi);
	free(f);
	return -1;
}

static bool has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

int fwd_set_user_agent(struct fwd *f, const char *user_agent)
{
	if (f == NULL || user_agent == NULL || has_crlf(user_agent))
		return -1;
	char *copy = strdup(user_agent);
	if (copy == NULL)
		return -1;
	free(f->user_agent);
	f->user_agent = copy;
	return 0;
}

static int set_path(char **field, const char *path)
{
	char *copy = NULL;
	if (path != NULL && (copy = strdup(path)) == NULL)
		return -1;
	free(*field);
	*field = copy;
	return 0;
}

int fwd_set_tls(struct fwd *f, const struct fwd_tls *tls)
{
	if (set_path(&f->ca_file, tls->ca_file) != 0 ||
	    set_path(&f->cert_file, tls->cert_file) != 0 ||
	    set_path(&f->key_file, tls->key_file) != 0)
		return -1;
	f->tls = true;
	return 0;
}

const char *fwd_scheme(const struct fwd *f)
{
	return f->tls ? "https" : "http";
}

/* Verification is curl's default and stays on; this names what to verify against. */
static CURLcode set_tls_options(const struct fwd *f, CURL *easy, const char **opt)
{
	CURLcode ec = CURLE_OK;
#define TLSOPT(o, v)                                                 \
	do {                                                         \
		*opt = #o;                                           \
		if ((ec = curl_easy_setopt(easy, o, v)) != CURLE_OK) \
			return ec;                                   \
	} while (0)
	if (f->ca_file != NULL)
		TLSOPT(CURLOPT_CAINFO, f->ca_file);
	/* Read the CA file for every new connection rather than for a day (curl's cache): a
	 * rotated CA is trusted at once, and connections are long-lived anyway. */
	TLSOPT(CURLOPT_CA_CACHE_TIMEOUT, 0L);
	if (f->cert_file != NULL) {
		TLSOPT(CURLOPT_SSLCERT, f->cert_file);
		TLSOPT(CURLOPT_SSLKEY, f->key_file != NULL ? f->key_file : f->cert_file);
	}
#undef TLSOPT
	return ec;
}

const char *fwd_response_header(const struct fwd_response *resp, const char *name)
{
	for (size_t i = 0; resp != NULL && i < resp->n_headers; i++)
		if (strcasecmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value;
	return NULL;
}

/* Appends to *list; on failure the list is left intact and false returned. */
static bool slist_add(struct curl_slist **list, const char *line)
{
	struct curl_slist *l = curl_slist_append(*list, line);
	if (l == NULL)
		return false;
	*list = l;
	return true;
}

/* Builds the request header list. Returns NULL with *err set on failure. */
static struct curl_slist *build_headers(const struct fwd_request *req, bool with_body,
                                        bool bodyless_post, const char **err)
{
	struct curl_slist *list = NULL;
	bool has_ct = false;
	char line[1024];
	char *big = NULL;

	/* Never wait for "100 Continue": MHD answers it, but it costs a round trip per write
	 * and some proxies never send it (curl would then stall for a second). */
	if (!slist_add(&list, "Expect:"))
		goto oom;
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct fwd_header *h = &req->headers[i];
		if (strcasecmp(h->name, "Expect") == 0)
			continue; /* ours above wins */
		if (strcasecmp(h->name, "Content-Type") == 0)
			has_ct = true;
		/* "Name:" would make curl drop the header; "Name;" sends it with no value. */
		bool empty = h->value[0] == '\0';
		size_t need = strlen(h->name) + strlen(h->value) + 3;
		char *buf = line;
		if (need > sizeof line) {
			big = malloc(need);
			if (big == NULL)
				goto oom;
			buf = big;
		}
		if (empty)
			snprintf(buf, need, "%s;", h->name);
		else
			snprintf(buf, need, "%s: %s", h->name, h->value);
		bool ok = slist_add(&list, buf);
		free(big);
		big = NULL;
		if (!ok)
			goto oom;
	}
	if (!has_ct) {
		/* curl would label a POSTFIELDS body application/x-www-form-urlencoded. */
		if (with_body && !slist_add(&list, "Content-Type: application/octet-stream"))
			goto oom;
		if (bodyless_post && !slist_add(&list, "Content-Type:"))
			goto oom;
	}
	return list;
oom:
	curl_slist_free_all(list);
	*err = "out of memory building headers";
	return NULL;
}

int fwd_send(struct fwd *f, const struct fwd_request *req, fwd_cb cb, void *arg)
{
	return fwd_send_cancellable(f, req, cb, arg, NULL);
}

int fwd_send_cancellable(struct fwd *f, const struct fwd_request *req, fwd_cb cb, void *arg,
                         uint64_t *id)
{
	const char *method = req != NULL && req->method != NULL ? req->method : "(null)";
	const char *url = req != NULL && req->url != NULL ? req->url : "(null)";
	const char *err = NULL;

	if (f == NULL || req == NULL || cb == NULL || req->method == NULL ||
	    req->method[0] == '\0' || req->url == NULL || req->url[0] == '\0')
		err = "missing method, url or callback";
	else if (f->closing)
		err = "forward client is closing";
	else if (req->body_len > 0 && req->body == NULL)
		err = "body_len without body";
	else if (has_crlf(req->method) || strchr(req->method, ' ') != NULL || has_crlf(req->url))
		err = "invalid method or url";
	else if (req->n_headers > 0 && req->headers == NULL)
		err = "n_headers without headers";
	else if (strcmp(req->method, "HEAD") == 0 && req->body_len > 0)
		err = "HEAD request with a body";
	for (size_t i = 0; err == NULL && i < req->n_headers; i++) {
		const struct fwd_header *h = &req->headers[i];
		/* CR/LF would let a value smuggle extra headers or a second request. */
		if (h->name == NULL || h->value == NULL || h->name[0] == '\0' ||
		    strpbrk(h->name, "\r\n:; \t") != NULL || has_crlf(h->value))
			err = "invalid request header";
	}
	if (err != NULL) {
		log_warn("Forward request rejected", "method=%s url=%s error=\"%s\"", method, url,
		         err);
		return -1;
	}

	unsigned timeout = req->timeout_ms != 0 ? req->timeout_ms : FWD_DEFAULT_TIMEOUT_MS;
	unsigned connect_timeout = timeout < FWD_MAX_CONNECT_MS ? timeout : FWD_MAX_CONNECT_MS;
	bool is_head = strcmp(req->method, "HEAD") == 0;
	bool with_body = req->body_len > 0;
	bool plain_get = strcmp(req->method, "GET") == 0 && !with_body;
	/* Every other method goes out with a (possibly empty) body so a Content-Length is
	 * always present; servers may otherwise wait for a body or answer 411. */
	bool bodyless_post = !is_head && !plain_get && !with_body;

	struct fwd_xfer *x = calloc(1, sizeof *x);
	if (x == NULL) {
		err = "out of memory";
		goto fail;
	}
	x->f = f;
	x->cb = cb;
	x->arg = arg;
	x->method = strdup(req->method);
	x->url = strdup(req->url);
	if (x->method == NULL || x->url == NULL) {
		err = "out of memory";
		goto fail;
	}
	if (with_body) {
		x->body = malloc(req->body_len);
		if (x->body == NULL) {
			err = "out of memory copying body";
			goto fail;
		}
		memcpy(x->body, req->body, req->body_len);
	}
	x->req_headers = build_headers(req, with_body, bodyless_post, &err);
	if (x->req_headers == NULL)
		goto fail;
	x->easy = easy_acquire(f);
	if (x->easy == NULL) {
		err = "curl_easy_init failed";
		goto fail;
	}

	CURLcode ec;
	const char *opt;
#define SETOPT(o, v)                                                    \
	do {                                                            \
		opt = #o;                                               \
		if ((ec = curl_easy_setopt(x->easy, o, v)) != CURLE_OK) \
			goto setopt_fail;                               \
	} while (0)
	SETOPT(CURLOPT_URL, req->url);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_PRIVATE, x);
	SETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_TCP_NODELAY, 1L);
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	/* Cluster traffic is loopback/LAN: an http_proxy in the environment must not apply. */
	SETOPT(CURLOPT_NOPROXY, "*");
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	/* The path goes out as given. By default curl removes "." and ".." segments, and a
	 * forwarded write of key "a/../b" (sent by the client as a%2F..%2Fb) would write "b". */
	SETOPT(CURLOPT_PATH_AS_IS, 1L);
	x->at_most_once = req->fresh_connection;
	SETOPT(CURLOPT_PREREQFUNCTION, on_prereq);
	SETOPT(CURLOPT_PREREQDATA, x);
	SETOPT(CURLOPT_TIMEOUT_MS, (long)timeout);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout);
	SETOPT(CURLOPT_USERAGENT,
	       f->user_agent != NULL ? f->user_agent : "cloudless-coordinator/" CLOUDLESS_VERSION);
	SETOPT(CURLOPT_HTTPHEADER, x->req_headers);
	SETOPT(CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(CURLOPT_WRITEDATA, x);
	SETOPT(CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(CURLOPT_HEADERDATA, x);
	if (f->tls && (ec = set_tls_options(f, x->easy, &opt)) != CURLE_OK)
		goto setopt_fail;
	if (is_head) {
		SETOPT(CURLOPT_NOBODY, 1L);
	} else if (plain_get) {
		SETOPT(CURLOPT_HTTPGET, 1L);
	} else {
		/* The size first, so curl never strlen()s binary data. */
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		SETOPT(CURLOPT_POSTFIELDS, with_body ? x->body : "");
		SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
	}
#undef SETOPT

	/* Only arms the timer (synchronously, via on_curl_timer); the transfer starts from the
	 * loop, so the callback can never run inside this function. */
	CURLMcode mc = curl_multi_add_handle(f->multi, x->easy);
	if (mc != CURLM_OK) {
		log_warn("Forward request rejected", "method=%s url=%s error=\"%s\"", method, url,
		         curl_multi_strerror(mc));
		err = NULL;
		goto fail_logged;
	}
	x->start_ns = uv_hrtime();
	x->id = ++f->last_id;
	if (id != NULL)
		*id = x->id;
	x->next = f->xfers;
	if (f->xfers != NULL)
		f->xfers->prev = x;
	f->xfers = x;
	f->n_xfers++;
	return 0;

setopt_fail:
	log_warn("Forward request rejected", "method=%s url=%s option=%s error=\"%s\"", method, url,
	         opt, curl_easy_strerror(ec));
	goto fail_logged;
fail:
	log_warn("Forward request rejected", "method=%s url=%s error=\"%s\"", method, url, err);
fail_logged:
	if (x != NULL) {
		if (x->easy != NULL)
			easy_release(f, x->easy);
		xfer_free(x);
	}
	return -1;
}

unsigned fwd_inflight(const struct fwd *f)
{
	return f->n_xfers;
}

bool fwd_cancel(struct fwd *f, uint64_t id)
{
	if (f == NULL || f->closing || id == 0)
		return false;
	/* Linear: cancellations are rare (shutdown, a leader change) and few are in flight. */
	for (struct fwd_xfer *x = f->xfers; x != NULL; x = x->next) {
		if (x->id == id) {
			xfer_complete(x, CURLE_OK, true);
			return true;
		}
	}
	return false;
}

void fwd_close(struct fwd *f, void (*done)(void *arg), void *arg)
{
	if (f == NULL)
		return;
	if (f->closing) {
		log_error("Forward client closed twice", "inflight=%u", f->n_xfers);
		return;
	}
	/* Set first: callbacks below may call fwd_send (refused) or fwd_close (ignored). */
	f->closing = true;
	f->done = done;
	f->done_arg = arg;

	if (f->n_xfers > 0)
		log_info("Forward client closing", "inflight=%u", f->n_xfers);
	while (f->xfers != NULL)
		xfer_complete(f->xfers, CURLE_OK, true);

	/* easy_release frees (no caching) while closing; these are the ones cached before. */
	for (unsigned i = 0; i < f->n_easy_cache; i++)
		curl_easy_cleanup(f->easy_cache[i]);
	f->n_easy_cache = 0;

	/* Closes cached connections; curl reports their sockets with CURL_POLL_REMOVE, which
	 * closes the poll handles while the fds are still open. */
	CURLMcode mc = curl_multi_cleanup(f->multi);
	if (mc != CURLM_OK)
		log_error("Forward multi cleanup failed", "error=\"%s\"", curl_multi_strerror(mc));
	f->multi = NULL;

	/* Anything curl did not report: close it too so the loop can finish. */
	while (f->socks != NULL)
		sock_close(f, f->socks);

	uv_timer_stop(&f->timer);
	f->handles_closing++;
	uv_close((uv_handle_t *)&f->timer, on_timer_closed);
}
