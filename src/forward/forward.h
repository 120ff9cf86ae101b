/* forward: asynchronous HTTP client requests with libcurl's multi interface on a libuv loop.
 *
 * Used by followers to forward writes to the leader, and by the auto-join and removal-check
 * logic to talk to peers (which cancel their requests with fwd_cancel when they close). curl's
 * socket callbacks are wired to uv_poll handles and its timer to a uv_timer (the canonical
 * multi_socket pattern), so there is no thread per request and keep-alive connections to the leader
 * are reused across requests. */
#ifndef CLOUDLESS_FORWARD_FORWARD_H
#define CLOUDLESS_FORWARD_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct fwd;

struct fwd_header {
	const char *name;
	const char *value;
};

struct fwd_request {
	const char *method; /* "GET", "PUT", "POST", "DELETE", ... */
	const char *url;    /* absolute http:// or https:// URL */
	const struct fwd_header *headers;
	size_t n_headers;
	const void *body; /* may be NULL */
	size_t body_len;
	unsigned timeout_ms; /* whole-request deadline; 0 means 10000 */
	/* Send the request at most once. libcurl silently re-sends a request whose reused
	 * connection dies before any response byte arrives, although the peer may have acted on
	 * it. With this set that re-send is refused (the transfer fails as FWD_FAILED: outcome
	 * unknown) while kept-alive connections are still reused: opening a connection per
	 * forwarded write instead cost a third of the forwarding throughput. (The name predates
	 * that; it no longer forces a new connection.) */
	bool fresh_connection;
};

enum fwd_result {
	FWD_OK = 0,         /* a response arrived (any HTTP status) */
	FWD_CONNECT_FAILED, /* nothing was sent: DNS, refused or timed-out connect (safe to retry)
	                     */
	FWD_TIMEOUT,        /* the deadline passed; the request may or may not have run */
	FWD_FAILED,         /* other transport error after sending; outcome unknown */
	FWD_CANCELED,       /* fwd_close() was called */
};

struct fwd_response {
	enum fwd_result result;
	const char *error; /* curl's message when result != FWD_OK */
	long status;
	const struct fwd_header *headers; /* response headers, in order received */
	size_t n_headers;
	const char *body; /* NUL-terminated for convenience; body_len excludes the NUL */
	size_t body_len;
	double seconds; /* total time */
};

/* The value of the first response header called `name` (any case), or NULL. */
const char *fwd_response_header(const struct fwd_response *resp, const char *name);

/* Called exactly once per fwd_send, never from inside fwd_send. The response and everything
 * it points to is freed when the callback returns. */
typedef void (*fwd_cb)(const struct fwd_response *resp, void *arg);

int fwd_init(struct fwd **out, uv_loop_t *loop);
/* The User-Agent of every later request (copied; "cloudless-coordinator/VERSION" until set),
 * so a leader's logs and metrics can tell the CLI or an agent from a forwarding follower.
 * Returns -1 (keeping the old one) when it holds CR or LF or memory runs out. */
int fwd_set_user_agent(struct fwd *f, const char *user_agent);
/* TLS for every later request. */
struct fwd_tls {
	const char *ca_file;   /* CA bundle the server's certificate must chain to (PEM); NULL:
	                          the system's trust store */
	const char *cert_file; /* optional client certificate (PEM), for servers that ask */
	const char *key_file;  /* its key; NULL: in cert_file */
};
/* From now on the peers are spoken to over https (fwd_scheme) and their certificates are
 * verified, host name included. The files are read for each new connection, so replacing
 * them on disk takes effect without a restart. Copied; -1 when memory runs out. */
int fwd_set_tls(struct fwd *f, const struct fwd_tls *tls);
/* "https" after fwd_set_tls, "http" before: the scheme of URLs built from host:port. */
const char *fwd_scheme(const struct fwd *f);
/* Copies everything from req. Returns 0, or -1 if the request could not be started (the
 * callback is then not called). */
int fwd_send(struct fwd *f, const struct fwd_request *req, fwd_cb cb, void *arg);
/* fwd_send that also names the request for fwd_cancel: *id gets a number no other request of
 * this client ever gets (never 0; left alone when the request could not be started). */
int fwd_send_cancellable(struct fwd *f, const struct fwd_request *req, fwd_cb cb, void *arg,
                         uint64_t *id);
/* Cancels one request in flight: its callback runs with FWD_CANCELED before this returns,
 * and true is returned. False (and nothing runs) when no request by that id is in flight any
 * more - it completed or was cancelled already - or id is 0, so an owner may cancel whatever
 * it last started without tracking whether it finished. Whoever frees what a callback's
 * argument points to cancels that callback's requests first. */
bool fwd_cancel(struct fwd *f, uint64_t id);
/* Number of requests in flight. */
unsigned fwd_inflight(const struct fwd *f);
/* Cancels in-flight requests (their callbacks run with FWD_CANCELED before this returns),
 * then closes the uv handles; `done` runs once they are closed and the struct is freed. */
void fwd_close(struct fwd *f, void (*done)(void *arg), void *arg);

#endif
