/* client: enrollment, heartbeats with failover, and the assignments query (see client.h).
 *
 * One request of the enroll/heartbeat kind is in flight at a time; the assignments query runs
 * beside it. A single timer schedules the next one (the next heartbeat, a retry after a full
 * round failed). A round is the attempts of one heartbeat: the first goes to the current
 * coordinator, each failure moves on at once, and after as many failures as there are
 * coordinators the round ends in backoff. */
#include "agent/client.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "util/clock.h"

#define BACKOFF_MIN_MS 100u
/* Enrollment that is refused (400: a bad flag the coordinator rejects) retries slowly. */
#define REFUSED_RETRY_MS 10000u
/* Before the first answer we do not know the interval: the coordinator's default. */
#define DEFAULT_INTERVAL_MS 1000u
/* A deadline shorter than this times out on a loaded machine without telling anything. */
#define MIN_DEADLINE_MS 200u
/* The coordinator marks an agent offline after this many intervals without a heartbeat. */
#define TIMEOUT_INTERVALS 3u

enum phase { PH_IDLE, PH_ENROLL, PH_HEARTBEAT };

struct agent_client {
	struct agent_client_options o;
	char **seeds;
	char **list; /* coordinators, seeds included */
	size_t n_list;
	size_t cur;
	enum phase phase;
	bool enrolled, connected, failing, closing, busy, watching;
	bool soon; /* news arrived while a heartbeat was in flight: send the next one early */
	uint64_t watch_index; /* the index the assignments query in flight waits past */
	unsigned pending;     /* requests in flight + the open timer handle */
	unsigned interval_ms;
	unsigned round_failures;
	unsigned backoff_ms;
	uint64_t round_start;     /* mono ms of this round's first attempt */
	uint64_t sent_ms;         /* mono ms the heartbeat in flight was sent */
	struct agent_early early; /* the early heartbeats' budget (wire.h) */
	uint64_t contact_ms;      /* mono ms the last answered heartbeat was sent (the fence) */
	uint64_t index;           /* of the last answer applied */
	char *last_answered;      /* the coordinator that answered the last heartbeat */
	char *identity;           /* "Bearer agent~ID.SECRET" from the enrollment, or NULL */
	char *bearer;             /* "Bearer " --token, or NULL */
	uint64_t rng;
	uv_timer_t timer;
};

static void send_next(struct agent_client *c);
static void start_watch(struct agent_client *c);
static void arm(struct agent_client *c, uint64_t delay_ms);
static void forget_identity(struct agent_client *c, bool remove_file);

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		abort();
	return d;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static const char *current(const struct agent_client *c)
{
	return c->list[c->cur];
}

static void maybe_free(struct agent_client *c)
{
	if (!c->closing || c->pending > 0)
		return;
	free_strv(c->seeds, c->o.n_coordinators);
	free_strv(c->list, c->n_list);
	free(c->last_answered);
	forget_identity(c, false);
	free(c->bearer);
	free(c);
}

/* ---- identity ------------------------------------------------------------------------ */

#define IDENTITY_FILE "agent-token"

static void forget_identity(struct agent_client *c, bool remove_file)
{
	if (c->identity != NULL)
		memset(c->identity, 0, strlen(c->identity));
	free(c->identity);
	c->identity = NULL;
	if (remove_file && c->o.data_dir != NULL) {
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s/" IDENTITY_FILE, c->o.data_dir);
		unlink(path);
	}
}

static void set_identity(struct agent_client *c, const char *token, size_t len)
{
	forget_identity(c, false);
	c->identity = malloc(len + 8);
	if (c->identity == NULL)
		abort();
	snprintf(c->identity, len + 8, "Bearer %.*s", (int)len, token);
}

static void load_identity(struct agent_client *c)
{
	char path[PATH_MAX], buf[600];
	if (c->o.data_dir == NULL)
		return;
	snprintf(path, sizeof path, "%s/" IDENTITY_FILE, c->o.data_dir);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n == 0 || memchr(buf, '\n', n) != NULL || strncmp(buf, "agent~", 6) != 0) {
		log_warn("agent identity file unreadable: enrolling with --token", "file=%s", path);
		return;
	}
	set_identity(c, buf, n);
	memset(buf, 0, sizeof buf);
}

/* Writes the secret to <data dir>/agent-token (tmp + fsync + rename, mode 0600). */
static void save_identity(struct agent_client *c, const char *token)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	if (c->o.data_dir == NULL)
		return;
	mkdir(c->o.data_dir, 0700);
	snprintf(path, sizeof path, "%s/" IDENTITY_FILE, c->o.data_dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t len = strlen(token);
	bool ok = fd >= 0 && write(fd, token, len) == (ssize_t)len && write(fd, "\n", 1) == 1 &&
	          fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	if (!ok || rename(tmp, path) != 0) {
		log_error(
		    "cannot save the agent's secret: it will enroll with --token again after a "
		    "restart",
		    "file=%s error=\"%s\"", path, strerror(errno));
		unlink(tmp);
	}
}

/* The Authorization value of the next request: the agent's own secret, else --token. */
static const char *authorization(const struct agent_client *c)
{
	return c->identity != NULL ? c->identity : c->bearer;
}

/* A 401 to the agent's own secret: it was revoked (DELETE /v1/agents/{id}) or belongs to
 * another cluster. Back to --token. */
static bool identity_refused(struct agent_client *c, const struct fwd_response *r)
{
	if (r->status != 401 || c->identity == NULL)
		return false;
	log_warn("the coordinators refused this agent's secret: enrolling again with --token",
	         "id=%s coordinator=%s", c->o.agent_id, current(c));
	forget_identity(c, true);
	c->enrolled = false;
	c->phase = PH_ENROLL;
	c->round_failures = 0;
	arm(c, 0);
	return true;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct agent_client *c = h->data;
	c->pending--;
	maybe_free(c);
}

/* ---- the coordinator list ------------------------------------------------------------- */

static size_t find(const struct agent_client *c, const char *addr)
{
	for (size_t i = 0; i < c->n_list; i++)
		if (strcmp(c->list[i], addr) == 0)
			return i;
	return SIZE_MAX;
}

/* Makes addr the current coordinator, adding it to the list if it is new. */
static void go_to(struct agent_client *c, const char *addr)
{
	size_t i = find(c, addr);
	if (i == SIZE_MAX) {
		char **l = realloc(c->list, (c->n_list + 1) * sizeof *l);
		if (l == NULL)
			abort();
		c->list = l;
		c->list[c->n_list] = xstrdup(addr);
		i = c->n_list++;
	}
	c->cur = i;
}

/* The answer's list, then the seeds it lacks; the current coordinator stays current. */
static void refresh_list(struct agent_client *c, char *const *addrs, size_t n)
{
	if (n == 0)
		return;
	char *cur = xstrdup(current(c));
	char **l = calloc(n + c->o.n_coordinators + 1, sizeof *l);
	if (l == NULL)
		abort();
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = strcmp(l[j], addrs[i]) == 0;
		if (!dup)
			l[k++] = xstrdup(addrs[i]);
	}
	for (size_t s = 0; s < c->o.n_coordinators; s++) {
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = strcmp(l[j], c->seeds[s]) == 0;
		if (!dup)
			l[k++] = xstrdup(c->seeds[s]);
	}
	free_strv(c->list, c->n_list);
	c->list = l;
	c->n_list = k;
	c->cur = 0;
	go_to(c, cur);
	free(cur);
}

/* ---- scheduling ----------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
	send_next(t->data);
}

static void arm(struct agent_client *c, uint64_t delay_ms)
{
	if (!c->closing)
		uv_timer_start(&c->timer, on_timer, delay_ms, 0);
}

/* A delay within +-20% of ms, so that agents restarted together do not stay in step. */
static uint64_t jitter(struct agent_client *c, unsigned ms)
{
	c->rng = c->rng * 6364136223846793005ull + 1442695040888963407ull;
	uint64_t spread = ms / 5;
	return spread == 0 ? ms : ms - spread + (c->rng >> 33) % (2 * spread + 1);
}

static unsigned deadline_ms(const struct agent_client *c)
{
	unsigned d = c->interval_ms * TIMEOUT_INTERVALS / 3;
	return d < MIN_DEADLINE_MS ? MIN_DEADLINE_MS : d;
}

/* A request failed: move on at once, to the hinted leader or the next coordinator; after a
 * whole round of failures, back off. */
static void failed(struct agent_client *c, const char *why, const char *hint)
{
	const char *was = current(c);
	char from[300];
	snprintf(from, sizeof from, "%s", was);
	if (c->phase == PH_HEARTBEAT)
		metrics_counter_add(c->o.metrics, "cloudless_agent_heartbeat_failures_total", NULL,
		                    1);
	c->round_failures++;
	if (hint != NULL && strcmp(hint, was) != 0)
		go_to(c, hint);
	else
		c->cur = (c->cur + 1) % c->n_list;
	log_debug(c->phase == PH_ENROLL ? "enrollment failed" : "heartbeat failed",
	          "coordinator=%s error=\"%s\" next=%s", from, why, current(c));
	if (c->round_failures < c->n_list) {
		arm(c, 0);
		return;
	}
	/* One line when the agent loses every coordinator, not one per round. */
	if (!c->failing)
		log_warn(c->phase == PH_ENROLL ? "enrollment failing: no coordinator answers"
		                               : "heartbeat failing: no coordinator answers",
		         "coordinators=%zu last_error=\"%s\" retry_max_ms=%u", c->n_list, why,
		         c->interval_ms);
	c->failing = true;
	c->connected = false;
	c->round_failures = 0;
	uint64_t delay = jitter(c, c->backoff_ms);
	unsigned cap = c->interval_ms;
	c->backoff_ms = c->backoff_ms * 2 > cap ? cap : c->backoff_ms * 2;
	arm(c, delay);
}

/* The error of an answer that is not the one we wanted, and the leader it names. */
static void answer_failed(struct agent_client *c, const struct fwd_response *r, const char *what)
{
	char why[256];
	char *hint = agent_wire_leader_hint(r->body, r->body_len);
	snprintf(why, sizeof why, "%s answered %ld", what, r->status);
	failed(c, why, hint);
	free(hint);
}

/* The bookkeeping every completion starts with: true when the client was closed (or the
 * request canceled) and the answer must be dropped. */
static bool request_done(struct agent_client *c, const struct fwd_response *r)
{
	c->pending--;
	if (c->closing || r->result == FWD_CANCELED) {
		maybe_free(c);
		return true;
	}
	return false;
}

/* ---- enrollment ----------------------------------------------------------------------- */

static void on_enrolled(const struct fwd_response *r, void *arg)
{
	struct agent_client *c = arg;
	char err[256];
	unsigned interval = 0;
	c->busy = false;
	if (request_done(c, r))
		return;
	if (r->result != FWD_OK) {
		failed(c, r->error, NULL);
		return;
	}
	if (identity_refused(c, r))
		return;
	if (r->status == 400 || r->status == 401 || r->status == 403 || r->status == 409 ||
	    r->status == 413) {
		log_error("enrollment refused", "coordinator=%s status=%ld detail=%.*s", current(c),
		          r->status, (int)(r->body_len < 400 ? r->body_len : 400), r->body);
		c->round_failures = 0;
		arm(c, REFUSED_RETRY_MS);
		return;
	}
	if (r->status != 200 && r->status != 201) {
		answer_failed(c, r, "enrollment");
		return;
	}
	if (agent_wire_decode_agent(r->body, r->body_len, &interval, err, sizeof err) != 0) {
		failed(c, err, NULL);
		return;
	}
	c->enrolled = true;
	c->index = 0; /* a new record (or a new cluster): its indexes start afresh */
	json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
	const char *token = json_string_value(json_object_get(doc, "token"));
	if (token != NULL && strncmp(token, "agent~", 6) == 0) {
		set_identity(c, token, strlen(token));
		save_identity(c, token);
		log_info("agent secret received and saved", "id=%s", c->o.agent_id);
	}
	json_decref(doc);
	if (c->o.heartbeat_ms == 0)
		c->interval_ms = interval;
	log_info("agent enrolled", "id=%s coordinator=%s heartbeat_ms=%u", c->o.agent_id,
	         current(c), c->interval_ms);
	c->phase = PH_HEARTBEAT;
	c->failing = false;
	c->round_failures = 0;
	c->backoff_ms = BACKOFF_MIN_MS;
	arm(c, 0);
}

static int post(struct agent_client *c, const char *method, const char *path, const char *body,
                unsigned timeout_ms, fwd_cb cb)
{
	char url[512];
	snprintf(url, sizeof url, "%s://%s%s", fwd_scheme(c->o.fwd), current(c), path);
	struct fwd_header h[2] = {{"Content-Type", "application/json"}};
	size_t nh = 1;
	if (authorization(c) != NULL)
		h[nh++] = (struct fwd_header){"Authorization", authorization(c)};
	struct fwd_request req = {.method = method,
	                          .url = url,
	                          .headers = h,
	                          .n_headers = nh,
	                          .body = body,
	                          .body_len = body != NULL ? strlen(body) : 0,
	                          .timeout_ms = timeout_ms};
	if (fwd_send(c->o.fwd, &req, cb, c) != 0)
		return -1;
	c->pending++;
	return 0;
}

static void enroll(struct agent_client *c)
{
	log_debug("enrolling", "id=%s coordinator=%s", c->o.agent_id, current(c));
	c->busy = true;
	if (post(c, "POST", "/v1/agents", c->o.enrollment, deadline_ms(c), on_enrolled) != 0) {
		c->busy = false;
		failed(c, "request not started", NULL);
	}
}

/* ---- heartbeats ----------------------------------------------------------------------- */

/* Applies an answer unless an answer with a newer index was applied already. */
static void apply(struct agent_client *c, const struct agent_answer *a, const char *source)
{
	if (a->index < c->index) {
		log_debug("answer ignored: older than the last one",
		          "source=%s index=%llu last=%llu", source, (unsigned long long)a->index,
		          (unsigned long long)c->index);
		return;
	}
	c->index = a->index;
	c->o.cb.assignments(c->o.cb.arg, a);
}

static void heartbeat_ok(struct agent_client *c, struct agent_answer *a)
{
	const char *answered = current(c);
	if (c->last_answered != NULL && strcmp(c->last_answered, answered) != 0) {
		metrics_counter_add(c->o.metrics, "cloudless_agent_coordinator_switches_total",
		                    NULL, 1);
		log_info("coordinator switched", "from=%s to=%s", c->last_answered, answered);
	}
	if (c->last_answered == NULL || strcmp(c->last_answered, answered) != 0) {
		free(c->last_answered);
		c->last_answered = xstrdup(answered);
	}
	if (!c->connected)
		log_info("heartbeat ok",
		         "id=%s coordinator=%s leader=%s interval_ms=%u assigned=%zu unchanged=%s",
		         c->o.agent_id, answered, a->leader != NULL ? a->leader : "unknown",
		         c->o.heartbeat_ms != 0 ? c->o.heartbeat_ms : a->heartbeat_interval_ms,
		         a->n, a->unchanged ? "true" : "false");
	else
		log_debug("heartbeat answered",
		          "coordinator=%s index=%llu assigned=%zu unchanged=%s", answered,
		          (unsigned long long)a->index, a->n, a->unchanged ? "true" : "false");
	c->connected = true;
	c->failing = false;
	c->contact_ms = c->sent_ms;
	metrics_counter_add(c->o.metrics, "cloudless_agent_heartbeats_total", NULL, 1);
	if (c->o.heartbeat_ms == 0)
		c->interval_ms = a->heartbeat_interval_ms;
	refresh_list(c, a->coordinators, a->n_coordinators);
	c->o.cb.reported(c->o.cb.arg);
	apply(c, a, "heartbeat");
	/* Follow the leader: the next heartbeat skips the follower's forwarding hop. */
	if (a->leader != NULL && strcmp(a->leader, current(c)) != 0)
		go_to(c, a->leader);
	c->round_failures = 0;
	c->backoff_ms = BACKOFF_MIN_MS;
	uint64_t due = c->round_start + c->interval_ms, now = clock_mono_ms();
	arm(c, due > now ? due - now : 0);
	if (c->soon) {
		c->soon = false;
		agent_client_report_soon(c);
	}
	start_watch(c);
}

void agent_client_report_soon(struct agent_client *c)
{
	if (c->closing || c->phase != PH_HEARTBEAT || !c->connected || c->failing)
		return;
	if (c->busy) {
		c->soon = true;
		return;
	}
	uint64_t now = clock_mono_ms(), gap_end = c->sent_ms + AGENT_REPORT_GAP_MS;
	uint64_t delay =
	    gap_end > now + AGENT_REPORT_SOON_MS ? gap_end - now : AGENT_REPORT_SOON_MS;
	/* The timer is the next regular heartbeat: only ever brought forward. */
	if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= delay)
		return;
	if (!agent_early_take(&c->early, now + delay, c->interval_ms))
		return; /* its budget is spent: the regular heartbeat carries the news (wire.h) */
	arm(c, delay);
}

static void on_heartbeat(const struct fwd_response *r, void *arg)
{
	struct agent_client *c = arg;
	struct agent_answer a;
	char err[256];
	c->busy = false;
	if (request_done(c, r))
		return;
	if (r->result != FWD_OK) {
		failed(c, r->error, NULL);
		return;
	}
	if (identity_refused(c, r))
		return;
	if (r->status == 404) {
		log_info("agent not enrolled at the coordinator: enrolling again",
		         "id=%s coordinator=%s", c->o.agent_id, current(c));
		c->enrolled = false;
		c->phase = PH_ENROLL;
		c->round_failures = 0;
		arm(c, 0);
		return;
	}
	if (r->status != 200) {
		answer_failed(c, r, "heartbeat");
		return;
	}
	if (agent_wire_decode_heartbeat(r->body, r->body_len, &a, err, sizeof err) != 0) {
		failed(c, err, NULL);
		return;
	}
	heartbeat_ok(c, &a);
	agent_answer_close(&a);
}

static void heartbeat(struct agent_client *c)
{
	char path[256];
	const struct agent_report *reports;
	size_t n = c->o.cb.report(c->o.cb.arg, &reports);
	size_t len;
	char *body = agent_wire_heartbeat(reports, n, c->index, &len);
	snprintf(path, sizeof path, "/v1/agents/%s/heartbeat", c->o.agent_id);
	log_debug("heartbeat", "coordinator=%s replicas=%zu", current(c), n);
	c->busy = true;
	c->sent_ms = clock_mono_ms();
	int rc = post(c, "POST", path, body, deadline_ms(c), on_heartbeat);
	free(body);
	if (rc != 0) {
		c->busy = false;
		failed(c, "request not started", NULL);
	}
}

static void send_next(struct agent_client *c)
{
	if (c->closing || c->busy)
		return;
	if (c->round_failures == 0)
		c->round_start = clock_mono_ms();
	if (c->phase == PH_ENROLL)
		enroll(c);
	else
		heartbeat(c);
}

/* ---- the assignments query ------------------------------------------------------------ */

static void on_watch(const struct fwd_response *r, void *arg)
{
	struct agent_client *c = arg;
	struct agent_answer a;
	char err[256];
	c->watching = false;
	if (request_done(c, r))
		return;
	/* Failures wait for the next heartbeat: it knows where to go. */
	if (r->result != FWD_OK || r->status != 200) {
		log_debug("assignments query failed", "status=%ld error=\"%s\"", r->status,
		          r->result != FWD_OK ? r->error : "");
		return;
	}
	if (agent_wire_decode_assignments(r->body, r->body_len, &a, err, sizeof err) != 0) {
		log_warn("assignments answer rejected", "error=\"%s\"", err);
		return;
	}
	if (a.index > c->index) {
		log_debug("assignments changed", "index=%llu assigned=%zu",
		          (unsigned long long)a.index, a.n);
		apply(c, &a, "assignments");
	}
	/* A query that fired (its index passed the one asked for, whether or not a heartbeat
	 * brought the change first) is asked again at once; one that did not (the wait passed,
	 * or a coordinator that does not block) waits for the next heartbeat: no spinning. */
	bool fired = a.index > c->watch_index;
	agent_answer_close(&a);
	if (fired)
		start_watch(c);
}

static void start_watch(struct agent_client *c)
{
	char path[320];
	if (c->o.watch_wait_s == 0 || c->watching || c->closing || !c->enrolled)
		return;
	/* index=0 answers at once; every real change has an index far above 1 */
	c->watch_index = c->index > 0 ? c->index : 1;
	snprintf(path, sizeof path, "/v1/agents/%s/assignments?index=%llu&wait=%us&stale",
	         c->o.agent_id, (unsigned long long)c->watch_index, c->o.watch_wait_s);
	c->watching = true;
	if (post(c, "GET", path, NULL, c->o.watch_wait_s * 1000 + c->interval_ms + 2000,
	         on_watch) != 0)
		c->watching = false;
}

/* ---- lifetime ------------------------------------------------------------------------- */

int agent_client_init(struct agent_client **out, const struct agent_client_options *o)
{
	if (o->n_coordinators == 0)
		return -1;
	struct agent_client *c = calloc(1, sizeof *c);
	if (c == NULL)
		return -1;
	c->o = *o;
	c->seeds = calloc(o->n_coordinators, sizeof *c->seeds);
	c->list = calloc(o->n_coordinators, sizeof *c->list);
	if (c->seeds == NULL || c->list == NULL)
		abort();
	for (size_t i = 0; i < o->n_coordinators; i++) {
		c->seeds[i] = xstrdup(o->coordinators[i]);
		c->list[i] = xstrdup(o->coordinators[i]);
	}
	c->n_list = o->n_coordinators;
	c->interval_ms = o->heartbeat_ms != 0 ? o->heartbeat_ms : DEFAULT_INTERVAL_MS;
	c->backoff_ms = BACKOFF_MIN_MS;
	c->rng = (uint64_t)getpid() * 2654435761u ^ clock_wall_ms();
	if (o->token != NULL) {
		c->bearer = malloc(strlen(o->token) + 8);
		if (c->bearer == NULL)
			abort();
		sprintf(c->bearer, "Bearer %s", o->token);
	}
	load_identity(c);
	uv_timer_init(o->loop, &c->timer);
	c->timer.data = c;
	c->pending = 1; /* the timer handle */
	*out = c;
	return 0;
}

void agent_client_start(struct agent_client *c)
{
	c->phase = PH_ENROLL;
	log_info("connecting to coordinators", "id=%s coordinators=%zu first=%s", c->o.agent_id,
	         c->n_list, current(c));
	arm(c, 0);
}

void agent_client_close(struct agent_client *c)
{
	if (c == NULL || c->closing)
		return;
	c->closing = true;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void agent_client_status(const struct agent_client *c, struct agent_client_status *out)
{
	*out = (struct agent_client_status){.enrolled = c->enrolled,
	                                    .connected = c->connected,
	                                    .coordinator = current(c),
	                                    .interval_ms = c->interval_ms,
	                                    .index = c->index,
	                                    .contact_ms = c->contact_ms};
}
