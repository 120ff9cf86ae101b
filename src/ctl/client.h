/* client: cloudlessctl's requests to the cluster, with endpoint failover.
 *
 * A thin layer over forward/ (the coordinators' own libcurl client): each call runs a private
 * uv loop until its answers are in, so verbs read as plain sequential code. ctl_call() tries
 * the endpoints in turn, starting with the one that answered last:
 *   - a connect error (nothing was sent) always moves on to the next endpoint;
 *   - a 503 (no leader, shutting down, removed) moves on too, first to the leader the problem
 *     document names (`leader_http_addr`), and is the answer only when every endpoint gave
 *     one; a `leadership-lost` 503 (the write may have been applied) is the answer at once
 *     for a request that must not run twice;
 *   - a timeout or a broken connection after the request went out is final for such a
 *     request (its outcome is unknown), and moves on for the others (reads, membership
 *     changes, writes carrying an Idempotency-Key).
 * --timeout bounds the whole call. An attempt that may move on after a silent endpoint gets
 * a share of what is left (a paused member must not eat all of it); any other gets all that
 * is left, plus the time the server may legitimately hold the request (req.wait_ms: a
 * membership change that started and now waits for its outcome, a blocking query), plus a
 * second so that the server's own 504 arrives before we give up.
 *
 * A verb that waits for changes (workload watch) catches SIGINT on the client's loop: the
 * request in flight is cancelled, ctl_call answers CTL_INTERRUPTED, and every later call does
 * so at once, so the verb ends as it chooses instead of being killed mid-line. */
#ifndef CLOUDLESS_CTL_CLIENT_H
#define CLOUDLESS_CTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "flags/flags.h"
#include "forward/forward.h"

struct ctl_client {
	uv_loop_t loop;
	bool loop_open;
	struct fwd *fwd;  /* NULL once an interrupt cancelled everything */
	uv_timer_t pause; /* ctl_client_pause() */
	uv_signal_t sigint;
	bool sigint_open, interrupted, pause_done;
	char **bases; /* "http://host:port" per endpoint, in the order given */
	size_t n_bases;
	size_t first; /* the endpoint that answered last: tried first */
	unsigned timeout_ms;
	char *authorization; /* "Bearer NAME.SECRET" (--token) or NULL: added to every request */
};

struct ctl_request {
	const char *method;
	const char *path; /* with the query, already percent-encoded */
	const struct fwd_header *headers;
	size_t n_headers;
	const void *body;
	size_t body_len;
	unsigned wait_ms; /* how long the server may hold the request beyond --timeout */
	/* An attempt whose outcome is unknown may be repeated elsewhere: reads, idempotent
	 * changes, writes with an Idempotency-Key. */
	bool retry_unknown;
};

struct ctl_response {
	long status;
	char *body; /* NUL-terminated; body_len excludes the NUL */
	size_t body_len;
	struct fwd_header *headers; /* owned copies */
	size_t n_headers;
	char *base; /* the endpoint that answered */
};

enum ctl_result {
	CTL_ANSWERED,    /* *resp holds an HTTP answer (any status) */
	CTL_UNREACHABLE, /* no endpoint could be reached, or none answered in time */
	CTL_UNKNOWN,     /* sent, but no answer came: the outcome is unknown */
	CTL_INTERRUPTED, /* SIGINT arrived (see ctl_client_catch_interrupt) */
};

/* `endpoints` are host:port or http(s)://host:port entries (ctl_check_endpoint). */
int ctl_client_init(struct ctl_client *c, const struct flags_list *endpoints, unsigned timeout_ms,
                    char *err, size_t errlen);
void ctl_client_close(struct ctl_client *c);
/* --token: every request from now on carries Authorization: Bearer token. */
int ctl_client_set_token(struct ctl_client *c, const char *token);
/* From now on SIGINT interrupts the client instead of killing the process (see the top). */
int ctl_client_catch_interrupt(struct ctl_client *c);
/* Waits ms on the client's loop; false when SIGINT came first (or had come before). */
bool ctl_client_pause(struct ctl_client *c, unsigned ms);
/* The request with failover (see the top). On anything but CTL_ANSWERED `why` says what
 * happened at each endpoint, in one line. */
enum ctl_result ctl_call(struct ctl_client *c, const struct ctl_request *req,
                         struct ctl_response *resp, char *why, size_t whylen);
/* The same request to each of `addrs` (host:port, as the cluster names its members) at once,
 * without failover. resps[i].status is 0 when addrs[i] gave no answer, and whys[i] says why. */
void ctl_call_each(struct ctl_client *c, const char *const *addrs, size_t n,
                   const struct ctl_request *req, struct ctl_response *resps, char (*whys)[256]);
void ctl_response_free(struct ctl_response *r);
const char *ctl_response_header(const struct ctl_response *r, const char *name);

/* A FLAGS_LIST check for --endpoints: host:port, http://host:port or https://host:port. */
int ctl_check_endpoint(const char *item, char *why, size_t whylen);

#endif
