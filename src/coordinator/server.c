/* server: process wiring and orderly shutdown (see server.h). */
#include "coordinator/server.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api/api.h"
#include "auth/auth.h"
#include "domain/domain.h"
#include "forward/forward.h"
#include "http/http.h"
#include "http/tls.h"
#include "log/log.h"
#include "metrics/metrics.h"
#include "raft/identity.h"
#include "raft/node.h"

struct server {
	uv_loop_t loop;
	const struct config *cfg;
	struct metrics *metrics;
	struct fwd *fwd;
	struct node node;
	struct domain domain;
	bool domain_open;
	struct api api;
	struct http_server *http;
	struct http_server *metrics_http;
	struct http_tls *tls;   /* --tls-cert: both listeners' credentials (reloaded on SIGHUP) */
	struct auth_file *auth; /* --auth-file (reloaded on SIGHUP); NULL = protected mode */
	uv_signal_t sigterm, sigint;
	uv_signal_t sighup;    /* reloads what can change without a restart (reload_on_sighup) */
	uv_timer_t stop_timer; /* bounds the leadership hand-over */
	uv_check_t publish;    /* api_publish_headers, api_follow_leader: once per iteration */
	uv_timer_t lag_timer;  /* measures how late the loop runs timers (cloudless_loop_lag_*) */
	uint64_t lag_last_ns;
	bool was_leader; /* append_sent: leading since leader_since_ns */
	uint64_t leader_since_ns;
	struct raft_transfer transfer;
	bool stopping;
	bool closing;
	bool node_started;
	bool removed; /* the cluster removed this node: only the HTTP listeners run */
	int exit_code;
};

static void fwd_closed(void *arg)
{
	(void)arg;
}

static void close_listeners(struct server *s)
{
	if (s->fwd != NULL)
		fwd_close(s->fwd, fwd_closed, s);
	s->fwd = NULL;
	uv_close((uv_handle_t *)&s->publish, NULL);
	uv_close((uv_handle_t *)&s->lag_timer, NULL);
	http_server_close(s->http);
	s->http = NULL;
	if (s->metrics_http != NULL)
		http_server_close(s->metrics_http);
	s->metrics_http = NULL;
	/* After the servers: their connections held references to it. */
	http_tls_close(s->tls);
	s->tls = NULL;
	if (s->auth != NULL) {
		auth_file_close(s->auth);
		free(s->auth);
		s->auth = NULL;
		s->api.auth = NULL;
	}
	uv_close((uv_handle_t *)&s->sigterm, NULL);
	uv_close((uv_handle_t *)&s->sigint, NULL);
	uv_close((uv_handle_t *)&s->sighup, NULL);
	uv_close((uv_handle_t *)&s->stop_timer, NULL);
}

static void node_closed(struct node *n)
{
	struct server *s = (struct server *)((char *)n - offsetof(struct server, node));
	close_listeners(s);
}

/* Removed: raft is gone, but the listeners stay and tell whoever asks (health 503, every
 * request refused saying so) until the operator stops the process. Exiting instead would
 * make a supervisor restart it, and the restart would find itself removed again. */
static void node_closed_removed(struct node *n)
{
	struct server *s = (struct server *)((char *)n - offsetof(struct server, node));
	log_info("Raft stopped; serving only the removal notice", "node_id=%s", s->cfg->node_id);
}

static void close_everything(struct server *s)
{
	if (s->closing)
		return;
	s->closing = true;
	uv_timer_stop(&s->stop_timer);
	log_info("Shutting down", "node_id=%s", s->cfg->node_id);
	if (s->removed) {
		close_listeners(s);
		return;
	}
	api_cancel_all(&s->api);
	if (s->domain_open) {
		domain_close(&s->domain);
		s->domain_open = false;
	}
	node_close(&s->node, node_closed);
}

static void transfer_done(struct raft_transfer *req)
{
	struct server *s = req->data;
	raft_id leader = 0;
	const char *addr;
	raft_leader(&s->node.raft, &leader, &addr);
	if (leader != 0 && leader != s->node.id) {
		log_info("Lost leadership", "node_id=%s reason=shutdown-transfer", s->cfg->node_id);
		log_info("Leadership transferred before shutdown", "new_leader=%s", addr);
	} else
		log_warn("Leadership transfer before shutdown did not complete", "node_id=%s",
		         s->cfg->node_id);
	close_everything(s);
}

static void stop_timeout(uv_timer_t *t)
{
	struct server *s = t->data;
	log_warn("Leadership transfer timed out", "node_id=%s", s->cfg->node_id);
	close_everything(s);
}

static void begin_shutdown(struct server *s, const char *why)
{
	if (s->stopping) {
		log_warn("Shutdown already in progress", "reason=%s", why);
		return;
	}
	s->stopping = true;
	log_info("Stopping", "node_id=%s reason=%s", s->cfg->node_id, why);
	raft_id target = !s->removed && node_is_leader(&s->node) ? node_best_voter(&s->node) : 0;
	if (target == 0) {
		close_everything(s);
		return;
	}
	s->transfer.data = s;
	int rv = raft_transfer(&s->node.raft, &s->transfer, target, transfer_done);
	if (rv != 0) {
		log_warn("Leadership transfer refused", "error=%s", raft_strerror(rv));
		close_everything(s);
		return;
	}
	/* raft gives up after one election timeout; the timer only guards against a lost cb. */
	uv_timer_start(&s->stop_timer, stop_timeout, 2 * (uint64_t)s->cfg->election_ms + 100, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
	begin_shutdown(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* The TLS credentials: the same files read again; a bad set keeps the one in use. */
static void reload_tls(struct server *s)
{
	char err[512], what[256];
	if (http_tls_reload(s->tls, err, sizeof err) != 0) {
		log_error("TLS certificate reload failed; still serving the previous one",
		          "error=\"%s\"", err);
		return;
	}
	http_tls_describe(s->tls, what, sizeof what);
	log_info("TLS certificate reloaded", "%s", what);
}

/* --auth-file, read on the loop (a few KiB). start: a bad file stops the start; reload: it
 * keeps the tokens in use. The api reads s->auth through its own pointer, swapped here; no
 * request holds a token between loop callbacks, so the old set is freed at once. */
static int load_auth(struct server *s, bool reload)
{
	char err[512];
	struct auth_file *f = calloc(1, sizeof *f);
	if (f == NULL)
		abort();
	if (auth_file_load(f, s->cfg->auth_file, err, sizeof err) != 0) {
		free(f);
		if (!reload) {
			fprintf(stderr, "cloudless-coordinator: %s\n", err);
			return -1;
		}
		log_error("Auth file reload failed; still using the previous tokens",
		          "error=\"%s\"", err);
		return -1;
	}
	if (s->auth != NULL) {
		auth_file_close(s->auth);
		free(s->auth);
	}
	s->auth = f;
	s->api.auth = f;
	if (reload)
		log_info("Auth file reloaded", "file=%s tokens=%zu", s->cfg->auth_file, f->n);
	return 0;
}

/* SIGHUP, as daemons do: re-read what can change without a restart. Files are read on the
 * loop; they are a few KiB. */
static void on_sighup(uv_signal_t *h, int signum)
{
	struct server *s = h->data;
	(void)signum;
	if (s->tls != NULL)
		reload_tls(s);
	if (s->cfg->auth_file != NULL)
		load_auth(s, true);
	if (s->tls == NULL && s->cfg->auth_file == NULL)
		log_info("SIGHUP: nothing to reload", "node_id=%s", s->cfg->node_id);
}

/* Says at start who may talk to this node. */
static void log_access_mode(const struct server *s)
{
	const struct config *c = s->cfg;
	if (c->auth_file != NULL) {
		log_info("Auth file loaded", "file=%s tokens=%zu", c->auth_file, s->auth->n);
		return;
	}
	if (c->insecure)
		log_warn(
		    "No --auth-file and --insecure: every client on any address may do anything, "
		    "run commands on every agent included",
		    "http_addr=%s", c->http_addr);
	else
		log_warn("No --auth-file: protected mode, only clients on loopback addresses are "
		         "answered (others get 403 protected-mode)",
		         "http_addr=%s", c->http_addr);
}

static void on_removed(void *arg)
{
	struct server *s = arg;
	if (s->removed || s->stopping)
		return;
	s->removed = true;
	api_enter_removed(&s->api);
	if (s->domain_open) {
		domain_close(&s->domain);
		s->domain_open = false;
	}
	node_close(&s->node, node_closed_removed);
}

static void on_failed(void *arg)
{
	struct server *s = arg;
	/* 1: a supervisor's restart recovers (storage); 2: it cannot (configuration). */
	s->exit_code = s->node.fatal_code != 0 ? s->node.fatal_code : 1;
	begin_shutdown(s, s->exit_code == 2 ? "refused-to-start" : "raft-unavailable");
}

static void publish_cb(uv_check_t *h)
{
	struct server *s = h->data;
	struct http_server *servers[] = {s->http, s->metrics_http};
	api_publish_headers(&s->api, servers, 2);
	api_follow_leader(&s->api);
}

#define LAG_TICK_MS 10

static void lag_tick(uv_timer_t *t)
{
	struct server *s = t->data;
	uint64_t now = uv_hrtime();
	if (s->lag_last_ns != 0) {
		double lag = (double)(now - s->lag_last_ns) / 1e9 - LAG_TICK_MS / 1000.0;
		if (lag < 0)
			lag = 0;
		metrics_observe(s->metrics, "cloudless_loop_lag_seconds", NULL, lag);
		api_window_max_note(&s->api.loop_lag_max, lag);
	}
	s->lag_last_ns = now;
}

static void append_sent(void *arg, raft_id id, uint64_t since_ns)
{
	struct server *s = arg;
	uint64_t now = uv_hrtime();
	(void)id;
	if (!node_is_leader(&s->node)) {
		s->was_leader = false;
		return;
	}
	if (!s->was_leader) {
		s->was_leader = true;
		s->leader_since_ns = now;
	}
	/* The previous send to this peer from an earlier term says nothing about this one. */
	if (since_ns == 0 || since_ns > now - s->leader_since_ns)
		return;
	double v = (double)since_ns / 1e9;
	metrics_observe(s->metrics, "cloudless_raft_append_send_interval_seconds", NULL, v);
	api_window_max_note(&s->api.append_interval_max, v);
}

/* The domain's liveness asks how far the API listener's queue is behind (domain.h). */
static uint64_t api_backlog_ms(void *arg)
{
	struct server *s = arg;
	return s->http != NULL ? http_server_backlog_ms(s->http) : 0;
}

static int start_http(struct server *s, struct http_server **out, const char *addr,
                      http_handler_fn handler, const char *flag, bool tls)
{
	char err[256];
	struct http_server_options o = {.addr = addr,
	                                .max_body = s->cfg->max_body,
	                                .handler = handler,
	                                .complete = api_request_complete,
	                                .prepare = api_prepare,
	                                .arg = &s->api,
	                                .max_connections = s->cfg->http_max_connections,
	                                .max_connections_per_ip =
	                                    s->cfg->http_max_connections_per_ip,
	                                .max_buffered = s->cfg->http_max_buffered,
	                                .header_timeout_ms = s->cfg->http_header_timeout_ms,
	                                .body_timeout_ms = s->cfg->http_body_timeout_ms,
	                                .idle_timeout_ms = s->cfg->http_idle_timeout_ms,
	                                .tls = tls ? s->tls : NULL};
	if (http_server_init(out, &s->loop, &o, err, sizeof err) != 0) {
		fprintf(stderr, "cloudless-coordinator: %s %s: %s\n", flag, addr, err);
		return -1;
	}
	return 0;
}

/* The API listener and, with --metrics-addr, the metrics one (TLS with --tls-cert, the
 * metrics one only with --metrics-tls). */
static int start_listeners(struct server *s)
{
	const struct config *c = s->cfg;
	if (start_http(s, &s->http, c->http_addr, api_handle, "--http-addr", s->tls != NULL) != 0)
		return -1;
	if (c->metrics_addr != NULL &&
	    start_http(s, &s->metrics_http, c->metrics_addr, api_handle_metrics_listener,
	               "--metrics-addr", c->metrics_tls) != 0)
		return -1;
	return 0;
}

/* --tls-cert: the listeners' credentials, and https with verification towards the peers,
 * presenting the same certificate to those that ask for one (--tls-client-ca). */
static int start_tls(struct server *s)
{
	const struct config *c = s->cfg;
	char err[512], what[256];
	if (c->tls_cert == NULL)
		return 0;
	struct http_tls_options o = {
	    .cert_file = c->tls_cert, .key_file = c->tls_key, .client_ca_file = c->tls_client_ca};
	if (http_tls_init(&s->tls, &o, err, sizeof err) != 0) {
		fprintf(stderr, "cloudless-coordinator: %s\n", err);
		return -1;
	}
	struct fwd_tls ft = {
	    .ca_file = c->ca_file, .cert_file = c->tls_cert, .key_file = c->tls_key};
	if (fwd_set_tls(s->fwd, &ft) != 0) {
		fprintf(stderr, "cloudless-coordinator: out of memory\n");
		return -1;
	}
	http_tls_describe(s->tls, what, sizeof what);
	log_info("TLS certificate loaded", "%s client_certificates=%s metrics_tls=%s", what,
	         c->tls_client_ca != NULL ? "required" : "no", c->metrics_tls ? "yes" : "no");
	return 0;
}

/* Removed earlier: no raft at all, only the listeners, which say so on every request. */
static int start_removed(struct server *s)
{
	const struct config *c = s->cfg;
	log_warn("This node was removed from the cluster and stays out",
	         "node_id=%s hint=\"stop it, delete --data-dir %s and start it again with --join "
	         "(or its --bootstrap-expect command) to add this machine again; --join with this "
	         "data dir will not help\"",
	         c->node_id, c->data_dir);
	s->removed = true;
	api_init(&s->api, &s->loop, NULL, s->fwd, s->metrics, c);
	s->api.auth = s->auth;
	api_enter_removed(&s->api);
	if (start_listeners(s) != 0)
		return -1;
	log_access_mode(s);
	/* Once: what the HTTP thread's own refusals carry never changes in this mode. */
	struct http_server *servers[] = {s->http, s->metrics_http};
	api_publish_headers(&s->api, servers, 2);
	return 0;
}

static int start(struct server *s)
{
	const struct config *c = s->cfg;
	char err[512];
	if (metrics_init(&s->metrics) != 0 || fwd_init(&s->fwd, &s->loop) != 0) {
		fprintf(stderr, "cloudless-coordinator: cannot initialise metrics/forwarding\n");
		return -1;
	}
	api_metrics_define(s->metrics);
	if (start_tls(s) != 0)
		return -1;
	if (c->auth_file != NULL && load_auth(s, false) != 0)
		return -1;
	/* Initialised here, started below: close_listeners closes them in every mode. */
	uv_check_init(&s->loop, &s->publish);
	s->publish.data = s;
	uv_timer_init(&s->loop, &s->lag_timer);
	s->lag_timer.data = s;
	struct identity id;
	int found = identity_load(&id, c->data_dir, c->node_id, err, sizeof err);
	if (found < 0) {
		fprintf(stderr, "cloudless-coordinator: %s\n", err);
		return -1;
	}
	if (found == 0 && id.removed)
		return start_removed(s);
	struct node_options o = {.node_id = c->node_id,
	                         .raft_addr = c->raft_addr,
	                         .http_addr = c->advertise_http,
	                         .data_dir = c->data_dir,
	                         .bootstrap = c->bootstrap,
	                         .join = (const char *const *)c->join,
	                         .n_join = c->n_join,
	                         .heartbeat_ms = c->heartbeat_ms,
	                         .election_ms = c->election_ms,
	                         .snapshot_threshold = c->snapshot_threshold,
	                         .snapshot_trailing = c->snapshot_trailing,
	                         .connect_retry_ms = c->connect_retry_ms,
	                         .bootstrap_expect = c->bootstrap_expect,
	                         .health_max_lag = c->health_max_lag,
	                         .catch_up_timeout_ms = c->catch_up_timeout_ms,
	                         .peer_token = c->join_token};
	if (node_init(&s->node, &s->loop, &o, s->fwd, s->metrics, err, sizeof err) != 0) {
		fprintf(stderr, "cloudless-coordinator: %s\n", err);
		return -1;
	}
	s->node.on_removed = on_removed;
	s->node.on_failed = on_failed;
	s->node.event_arg = s;
	struct domain_options dopts = {.agent_timeout_ms = c->agent_timeout_ms,
	                               .heartbeat_ms = c->agent_heartbeat_ms,
	                               /* the fence's tick, a deposed leader's last answers
	                                * (it steps down within an election timeout), slack */
	                               .fence_margin_ms = 2 * c->election_ms + 1000,
	                               .idem_ttl_s = c->idempotency_ttl_s,
	                               .idem_max = c->idempotency_max,
	                               .backlog_ms = api_backlog_ms,
	                               .backlog_arg = s};
	domain_init(&s->domain, &s->loop, &s->node, s->metrics, &dopts);
	s->domain_open = true;
	api_init(&s->api, &s->loop, &s->node, s->fwd, s->metrics, c);
	s->api.auth = s->auth;
	s->api.domain = &s->domain;
	if (start_listeners(s) != 0)
		return -1;
	s->api.http = s->http;
	transport_watch_sends(&s->node.transport, append_sent, s);
	uv_timer_start(&s->lag_timer, lag_tick, LAG_TICK_MS, LAG_TICK_MS);
	uv_check_start(&s->publish, publish_cb);
	publish_cb(&s->publish);
	if (node_start(&s->node, err, sizeof err) != 0) {
		fprintf(stderr, "cloudless-coordinator: %s\n", err);
		return -1;
	}
	s->node_started = true;
	/* Once the start can no longer fail: a failed start says one line, its error. */
	log_access_mode(s);
	log_info("Coordinator started",
	         "node_id=%s raft_addr=%s http_addr=%s advertise_http=%s data_dir=%s version=%s",
	         c->node_id, c->raft_addr, c->http_addr, c->advertise_http, c->data_dir,
	         CLOUDLESS_VERSION);
	return 0;
}

int server_run(const struct config *cfg)
{
	struct server *s = calloc(1, sizeof *s);
	if (s == NULL)
		return 1;
	s->cfg = cfg;
	uv_loop_init(&s->loop);
	uv_signal_init(&s->loop, &s->sigterm);
	uv_signal_init(&s->loop, &s->sigint);
	uv_signal_init(&s->loop, &s->sighup);
	uv_timer_init(&s->loop, &s->stop_timer);
	s->sigterm.data = s->sigint.data = s->sighup.data = s->stop_timer.data = s;
	uv_signal_start(&s->sigterm, on_signal, SIGTERM);
	uv_signal_start(&s->sigint, on_signal, SIGINT);
	uv_signal_start(&s->sighup, on_sighup, SIGHUP);
	if (start(s) != 0) {
		/* Start-up failed part-way: exit without an orderly close; nothing was served and
		 * raft's files are consistent on disk at every step. */
		return 1;
	}
	uv_run(&s->loop, UV_RUN_DEFAULT);
	int rv = uv_loop_close(&s->loop);
	if (rv != 0)
		log_warn("Event loop closed with handles still open", "error=%s", uv_strerror(rv));
	metrics_close(s->metrics);
	log_info("Stopped", "node_id=%s", cfg->node_id);
	rv = s->exit_code;
	free(s);
	return rv;
}
