/* test_agent_client: enrollment, heartbeats and failover against fake coordinators.
 *
 * Each fake coordinator is a libmicrohttpd server on loopback (a thread per connection, so it
 * can be slow or block) that speaks the agent API of openapi.yaml: POST /v1/agents,
 * POST /v1/agents/{id}/heartbeat and the blocking GET /v1/agents/{id}/assignments. A test
 * sets how each behaves (answer, 503 with a leader hint, answer too late, 404, not listen at
 * all) and checks where the agent's requests went, in what order and how fast. The client
 * runs on a uv loop in the main thread with the real forward client, as in the agent. */
#include "agent/client.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/metrics.h"
#include "agent_testlib.h"
#include "testlib.h"

enum mode { ANSWER, UNAVAILABLE, SLOW, NOT_ENROLLED };

struct fake {
	struct MHD_Daemon *d;
	unsigned port;
	char addr[32];
	pthread_mutex_t mu;
	enum mode mode;
	char hint[64];          /* leader_http_addr of a 503 */
	char leader[64];        /* "leader" of answers; "" = null */
	char coordinators[256]; /* the answers' list, as JSON */
	unsigned interval_ms;
	uint64_t index;
	unsigned assigned;  /* replicas listed in answers */
	uint64_t query_lag; /* the query answers this much behind (a lagging follower) */
	atomic_int enrolls, heartbeats, queries, blocked;
	int unchanged; /* answers that said "unchanged" (under mu) */
	atomic_bool stopping;
	char last_body[2048];
	uint64_t first_heartbeat_ms;
};

static struct fake fakes[4];
static char order[512]; /* where requests went: "E0 H1 ..." (E enroll, H heartbeat) */
static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;

static void note(char kind, struct fake *f)
{
	pthread_mutex_lock(&order_mu);
	size_t n = strlen(order);
	if (n + 4 < sizeof order)
		snprintf(order + n, sizeof order - n, "%s%c%d", n ? " " : "", kind,
		         (int)(f - fakes));
	pthread_mutex_unlock(&order_mu);
}

struct body {
	char *p;
	size_t len;
};

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *json)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, "Content-Type",
	                        status < 300 ? "application/json" : "application/problem+json");
	enum MHD_Result rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static void assignments_json(struct fake *f, char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "[");
	for (unsigned i = 0; i < f->assigned; i++)
		n += (size_t)snprintf(out + n, len - n,
		                      "%s{\"id\":\"ns/w/%u\",\"workload\":\"ns/w\",\"slot\":%u,"
		                      "\"agent\":\"agent-t\",\"epoch\":%llu,\"desired\":\"run\","
		                      "\"state\":\"pending\",\"restarts\":0,\"exit_code\":null,"
		                      "\"pending_reason\":\"\",\"version\":1,\"spec\":{\"command\":"
		                      "[\"true\"],\"env\":{},\"image\":\"\",\"resources\":{"
		                      "\"cpu_millicores\":0,\"memory_bytes\":0},\"restart\":{"
		                      "\"policy\":\"always\",\"attempts\":3,\"interval_s\":300,"
		                      "\"delay_ms\":1000},\"kill_timeout_ms\":5000,"
		                      "\"spec_version\":1}}",
		                      i ? "," : "", i, i, (unsigned long long)f->index);
	snprintf(out + n, len - n, "]");
}

/* As the coordinator does: a body naming the current index gets "unchanged" and no list. */
static enum MHD_Result heartbeat_answer(struct fake *f, struct MHD_Connection *c, const char *body)
{
	char assigned[8192], json[10000], leader[80], named[48];
	pthread_mutex_lock(&f->mu);
	snprintf(named, sizeof named, "\"index\":%llu}", (unsigned long long)f->index);
	const char *end = body != NULL ? body + strlen(body) - strlen(named) : NULL;
	if (end != NULL && end >= body && strcmp(end, named) == 0) {
		snprintf(assigned, sizeof assigned, "true");
		f->unchanged++;
	} else {
		assignments_json(f, assigned, sizeof assigned);
	}
	if (f->leader[0] != '\0')
		snprintf(leader, sizeof leader, "\"%s\"", f->leader);
	else
		snprintf(leader, sizeof leader, "null");
	snprintf(json, sizeof json,
	         "{\"%s\":%s,\"index\":%llu,\"heartbeat_interval_ms\":%u,\"leader\":%s,"
	         "\"coordinators\":%s}",
	         strcmp(assigned, "true") == 0 ? "unchanged" : "assignments", assigned,
	         (unsigned long long)f->index, f->interval_ms, leader,
	         f->coordinators[0] ? f->coordinators : "[]");
	pthread_mutex_unlock(&f->mu);
	return respond(c, 200, json);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
	struct fake *f = cls;
	struct body *b = *con_cls;
	(void)version;
	if (b == NULL) {
		*con_cls = calloc(1, sizeof *b);
		return MHD_YES;
	}
	if (*upload_size > 0) {
		b->p = realloc(b->p, b->len + *upload_size + 1);
		memcpy(b->p + b->len, upload, *upload_size);
		b->len += *upload_size;
		b->p[b->len] = '\0';
		*upload_size = 0;
		return MHD_YES;
	}
	enum mode mode = f->mode;
	if (mode == SLOW)
		usleep(1500 * 1000);
	if (mode == UNAVAILABLE) {
		char json[256];
		snprintf(json, sizeof json,
		         "{\"type\":\"https://cloudless.dev/problems/no-leader\",\"title\":"
		         "\"Service Unavailable\",\"status\":503,\"detail\":\"no leader\"%s%s%s}",
		         f->hint[0] ? ",\"leader_http_addr\":\"" : "", f->hint,
		         f->hint[0] ? "\"" : "");
		return respond(c, 503, json);
	}
	if (strcmp(method, "POST") == 0 && strcmp(url, "/v1/agents") == 0) {
		atomic_fetch_add(&f->enrolls, 1);
		note('E', f);
		if (f->mode == NOT_ENROLLED)
			f->mode = ANSWER;
		char json[256];
		snprintf(json, sizeof json,
		         "{\"id\":\"agent-t\",\"heartbeat_interval_ms\":%u,\"state\":\"ready\"}",
		         f->interval_ms);
		return respond(c, 201, json);
	}
	if (strcmp(method, "POST") == 0 && strstr(url, "/heartbeat") != NULL) {
		if (atomic_fetch_add(&f->heartbeats, 1) == 0)
			f->first_heartbeat_ms = now_ms();
		note('H', f);
		pthread_mutex_lock(&f->mu);
		snprintf(f->last_body, sizeof f->last_body, "%s", b->p ? b->p : "");
		pthread_mutex_unlock(&f->mu);
		if (mode == NOT_ENROLLED)
			return respond(c, 404,
			               "{\"type\":\"https://cloudless.dev/problems/not-found\","
			               "\"title\":\"Not Found\",\"status\":404,\"detail\":\"x\"}");
		return heartbeat_answer(f, c, b->p);
	}
	if (strcmp(method, "GET") == 0 && strstr(url, "/assignments") != NULL) {
		atomic_fetch_add(&f->queries, 1);
		const char *idx = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "index");
		uint64_t want = idx ? strtoull(idx, NULL, 10) : 0;
		/* Blocks until the index passes the one asked for, up to 3 s here. */
		atomic_fetch_add(&f->blocked, 1);
		for (int i = 0; i < 300 && f->index <= want && !f->stopping; i++)
			usleep(10000);
		atomic_fetch_sub(&f->blocked, 1);
		char assigned[8192], json[9000];
		pthread_mutex_lock(&f->mu);
		assignments_json(f, assigned, sizeof assigned);
		snprintf(json, sizeof json,
		         "{\"agent\":\"agent-t\",\"assignments\":%s,\"index\":%llu}", assigned,
		         (unsigned long long)(f->index - f->query_lag));
		pthread_mutex_unlock(&f->mu);
		return respond(c, 200, json);
	}
	return respond(c, 404, "{}");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
	struct body *b = *con_cls;
	(void)cls;
	(void)c;
	(void)toe;
	if (b != NULL) {
		free(b->p);
		free(b);
	}
	*con_cls = NULL;
}

static void fake_listen(struct fake *f)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->stopping = false;
	f->d =
	    MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD, 0, NULL,
	                     NULL, handler, f, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	                     MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
	CHECK(f->d != NULL);
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
	f->port = info != NULL ? info->port : 0;
	snprintf(f->addr, sizeof f->addr, "127.0.0.1:%u", f->port);
}

static void fake_start(struct fake *f, enum mode mode)
{
	memset(f, 0, sizeof *f);
	pthread_mutex_init(&f->mu, NULL);
	f->mode = mode;
	f->interval_ms = 150;
	f->index = 10;
	fake_listen(f);
}

static void fake_stop(struct fake *f)
{
	if (f->d == NULL)
		return;
	f->stopping = true;
	MHD_stop_daemon(f->d);
	f->d = NULL;
}

/* An address nobody listens on: a port bound once, then released. */
static void dead_addr(char *out, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof sa;
	bind(fd, (struct sockaddr *)&sa, sizeof sa);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	close(fd);
	snprintf(out, len, "127.0.0.1:%u", ntohs(sa.sin_port));
}

/* ---- the client under test ------------------------------------------------------------ */

static uv_loop_t loop;
static struct metrics *metrics;
static struct fwd *fwd;

static struct agent_report reports[] = {{"ns/w/0", 10, "running", false, 0, 0}};
static atomic_int applied;
static uint64_t applied_index;
static size_t applied_n;
static uint64_t applied_at;
static int reported_calls;
static int unchanged_calls; /* assignments callbacks with an unchanged answer */

static size_t cb_report(void *arg, const struct agent_report **out)
{
	(void)arg;
	*out = reports;
	return 1;
}

static void cb_reported(void *arg)
{
	(void)arg;
	reported_calls++;
}

static void cb_assignments(void *arg, const struct agent_answer *a)
{
	(void)arg;
	if (a->unchanged) { /* it holds these already: nothing to take from it */
		unchanged_calls++;
		return;
	}
	applied++;
	applied_index = a->index;
	applied_n = a->n;
	applied_at = now_ms();
}

static struct agent_client *client_start(char *const *coords, size_t n, unsigned heartbeat_ms,
                                         unsigned watch_s)
{
	struct agent_client *c;
	struct agent_client_options o = {.loop = &loop,
	                                 .fwd = fwd,
	                                 .metrics = metrics,
	                                 .coordinators = coords,
	                                 .n_coordinators = n,
	                                 .agent_id = "agent-t",
	                                 .enrollment =
	                                     "{\"id\":\"agent-t\",\"capacity\":{"
	                                     "\"cpu_millicores\":1000,\"memory_bytes\":1}}",
	                                 .heartbeat_ms = heartbeat_ms,
	                                 .watch_wait_s = watch_s,
	                                 .cb = {cb_report, cb_reported, cb_assignments, NULL}};
	order[0] = '\0';
	applied = 0;
	applied_index = 0;
	reported_calls = 0;
	unchanged_calls = 0;
	CHECK(agent_client_init(&c, &o) == 0);
	agent_client_start(c);
	return c;
}

static void client_stop(struct agent_client *c)
{
	agent_client_close(c);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
}

static bool heartbeats_at(void *arg)
{
	struct fake *f = arg;
	return f->heartbeats >= 3;
}

static void run_for(unsigned ms)
{
	uint64_t end = now_ms() + ms;
	while (now_ms() < end) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(2000);
	}
}

static double metric(const char *name)
{
	return metrics_counter_get(metrics, name, NULL);
}

struct metric_at_least {
	const char *name;
	double value;
};

static bool metric_reached(void *arg)
{
	struct metric_at_least *m = arg;
	return metric(m->name) >= m->value;
}

/* ---- cases ---------------------------------------------------------------------------- */

/* Enrollment, then heartbeats at the coordinator's interval carrying the reports; the
 * answer's assignments reach the callback. */
static void test_steady(void)
{
	fake_start(&fakes[0], ANSWER);
	fakes[0].assigned = 2;
	char *coords[] = {fakes[0].addr};
	struct agent_client *c = client_start(coords, 1, 0, 0);
	CHECK(run_until(&loop, heartbeats_at, &fakes[0], 3000));
	CHECK_EQ_INT(fakes[0].enrolls, 1);
	CHECK(applied >= 1 && applied_index == 10 && applied_n == 2);
	CHECK(reported_calls >= 1);
	CHECK(strstr(fakes[0].last_body, "\"id\":\"ns/w/0\"") != NULL);
	CHECK(strstr(fakes[0].last_body, "\"state\":\"running\"") != NULL);
	/* The interval is the coordinator's: about 150 ms between beats. */
	int before = fakes[0].heartbeats;
	run_for(750);
	int beats = fakes[0].heartbeats - before;
	CHECK(beats >= 3 && beats <= 7);
	struct agent_client_status st;
	agent_client_status(c, &st);
	CHECK(st.enrolled && st.connected && st.interval_ms == 150);
	CHECK_EQ_STR(st.coordinator, fakes[0].addr);
	CHECK_EQ_INT(metric("cloudless_agent_coordinator_switches_total"), 0);
	client_stop(c);
	fake_stop(&fakes[0]);
}

struct at_least {
	struct fake *f;
	int n;
	atomic_int *counter;
};

static bool enrolled_at(void *arg)
{
	return ((struct fake *)arg)->heartbeats >= 1;
}

static bool fake_has_heartbeats(void *arg);

/* After its first full answer the agent names that index in every heartbeat; the "unchanged"
 * answers reach the callback as such (to reconcile again) and change nothing it holds. */
static void test_unchanged_answers(void)
{
	fake_start(&fakes[0], ANSWER);
	fakes[0].assigned = 2;
	char *coords[] = {fakes[0].addr};
	struct agent_client *c = client_start(coords, 1, 0, 0);
	CHECK(run_until(&loop, heartbeats_at, &fakes[0], 3000));
	run_for(400);
	pthread_mutex_lock(&fakes[0].mu);
	int unchanged = fakes[0].unchanged;
	CHECK(strstr(fakes[0].last_body, "\"index\":10") != NULL);
	pthread_mutex_unlock(&fakes[0].mu);
	CHECK(unchanged >= 2);
	CHECK(unchanged_calls >= 2);
	CHECK_EQ_INT(applied, 1); /* the one full answer */
	CHECK(applied_index == 10 && applied_n == 2);
	/* A new index: the next answer is in full again and is applied. */
	pthread_mutex_lock(&fakes[0].mu);
	fakes[0].index = 11;
	fakes[0].assigned = 1;
	pthread_mutex_unlock(&fakes[0].mu);
	int before = fakes[0].heartbeats;
	struct at_least w = {&fakes[0], before + 2, NULL};
	CHECK(run_until(&loop, fake_has_heartbeats, &w, 3000));
	CHECK(applied == 2 && applied_index == 11 && applied_n == 1);
	client_stop(c);
	fake_stop(&fakes[0]);
}

/* News all the time (a replica changing state every 20 ms): early heartbeats come from a
 * budget (AGENT_EARLY_BURST at once, then one per interval), not one every
 * AGENT_REPORT_GAP_MS. */
static void test_early_reports_capped(void)
{
	fake_start(&fakes[0], ANSWER);
	fakes[0].interval_ms = 600;
	char *coords[] = {fakes[0].addr};
	struct agent_client *c = client_start(coords, 1, 0, 0);
	struct at_least one = {&fakes[0], 1, NULL};
	CHECK(run_until(&loop, fake_has_heartbeats, &one, 3000));
	run_for(50);
	int before = fakes[0].heartbeats;
	uint64_t t0 = now_ms();
	agent_client_report_soon(c);
	struct at_least next = {&fakes[0], before + 1, NULL};
	CHECK(run_until(&loop, fake_has_heartbeats, &next, 3000));
	CHECK(now_ms() - t0 < 300); /* the first one goes early */
	before = fakes[0].heartbeats;
	t0 = now_ms();
	while (now_ms() - t0 < 1800) { /* three intervals */
		agent_client_report_soon(c);
		run_for(20);
	}
	int beats = fakes[0].heartbeats - before;
	/* What is left of the burst and two per interval (each early beat also restarts the
	 * regular cadence): 12 at most, where a beat every 100 ms would be 18. */
	CHECK(beats >= 3 && beats <= 12);
	if (beats > 12)
		fprintf(stderr, "early reports: %d heartbeats in 1.8 s\n", beats);
	client_stop(c);
	fake_stop(&fakes[0]);
}

/* A dead coordinator, then one without a leader that hints at the leader: the agent moves on
 * at once and enrolls at the hinted leader, without waiting for any interval. */
static void test_failover_on_start(void)
{
	char dead[32];
	dead_addr(dead, sizeof dead);
	fake_start(&fakes[1], UNAVAILABLE);
	fake_start(&fakes[2], ANSWER);
	snprintf(fakes[1].hint, sizeof fakes[1].hint, "%s", fakes[2].addr);
	char *coords[] = {dead, fakes[1].addr};
	uint64_t t0 = now_ms();
	struct agent_client *c = client_start(coords, 2, 0, 0);
	CHECK(run_until(&loop, enrolled_at, &fakes[2], 3000));
	CHECK(now_ms() - t0 < 1000);
	CHECK_EQ_INT(fakes[2].enrolls, 1);
	CHECK_EQ_STR(order, "E2 H2");
	client_stop(c);
	fake_stop(&fakes[1]);
	fake_stop(&fakes[2]);
}

static bool fake_has_heartbeats(void *arg)
{
	struct at_least *w = arg;
	return w->f->heartbeats >= w->n;
}

/* Heartbeats follow the leader named in the answers; the answers' coordinator list replaces
 * the seeds: when the leader dies the agent moves to a coordinator it learnt from them,
 * within the same interval, and counts one switch per change of coordinator. */
static void test_follow_leader_and_list(void)
{
	fake_start(&fakes[0], ANSWER);
	fake_start(&fakes[1], ANSWER);
	fake_start(&fakes[2], ANSWER);
	for (int i = 0; i < 3; i++) {
		snprintf(fakes[i].leader, sizeof fakes[i].leader, "%s", fakes[1].addr);
		snprintf(fakes[i].coordinators, sizeof fakes[i].coordinators,
		         "[\"%s\",\"%s\",\"%s\"]", fakes[0].addr, fakes[1].addr, fakes[2].addr);
		fakes[i].interval_ms = 200;
	}
	char *coords[] = {fakes[0].addr}; /* only one seed */
	double switches = metric("cloudless_agent_coordinator_switches_total");
	struct agent_client *c = client_start(coords, 1, 0, 0);
	struct at_least w = {&fakes[1], 2, NULL};
	CHECK(run_until(&loop, fake_has_heartbeats, &w, 3000));
	CHECK_EQ_INT(fakes[0].heartbeats, 1); /* one beat at the seed, then the leader */
	CHECK(metric("cloudless_agent_coordinator_switches_total") - switches == 1);

	/* The leader dies; the others now name fakes[2] as leader. */
	for (int i = 0; i < 3; i++)
		snprintf(fakes[i].leader, sizeof fakes[i].leader, "%s", fakes[2].addr);
	int hb0 = fakes[0].heartbeats;
	fake_stop(&fakes[1]);
	uint64_t t0 = now_ms();
	struct at_least w2 = {&fakes[2], 1, NULL};
	CHECK(run_until(&loop, fake_has_heartbeats, &w2, 3000));
	/* next coordinator in the learnt list is fakes[2] itself: within one interval */
	CHECK(now_ms() - t0 < 200 + 150);
	CHECK_EQ_INT(fakes[0].heartbeats, hb0);
	CHECK(metric("cloudless_agent_heartbeat_failures_total") >= 1);
	/* the fake counts the request when it arrives; the client counts once answered */
	struct metric_at_least m = {"cloudless_agent_coordinator_switches_total", switches + 2};
	CHECK(run_until(&loop, metric_reached, &m, 1000));
	run_for(50);
	CHECK(metric("cloudless_agent_coordinator_switches_total") - switches == 2);
	client_stop(c);
	fake_stop(&fakes[0]);
	fake_stop(&fakes[2]);
}

/* A coordinator that answers after the deadline (a third of the agent timeout: one
 * interval) is left for the next one. */
static void test_deadline(void)
{
	fake_start(&fakes[0], SLOW);
	fake_start(&fakes[1], ANSWER);
	fakes[0].interval_ms = fakes[1].interval_ms = 300;
	char *coords[] = {fakes[0].addr, fakes[1].addr};
	uint64_t t0 = now_ms();
	struct agent_client *c = client_start(coords, 2, 300, 0);
	CHECK(run_until(&loop, enrolled_at, &fakes[1], 5000));
	uint64_t took = now_ms() - t0;
	CHECK(took >= 300 && took < 1200);
	client_stop(c);
	fake_stop(&fakes[0]);
	fake_stop(&fakes[1]);
}

static bool enrolled_twice(void *arg)
{
	return ((struct fake *)arg)->enrolls >= 2 && ((struct fake *)arg)->heartbeats >= 3;
}

/* 404 on a heartbeat: the coordinators do not know this agent; it enrolls again at once. */
static void test_reenroll(void)
{
	fake_start(&fakes[0], ANSWER);
	char *coords[] = {fakes[0].addr};
	struct agent_client *c = client_start(coords, 1, 0, 0);
	CHECK(run_until(&loop, enrolled_at, &fakes[0], 3000));
	fakes[0].mode = NOT_ENROLLED;
	CHECK(run_until(&loop, enrolled_twice, &fakes[0], 3000));
	if (strstr(order, "H0 E0 H0") == NULL)
		fprintf(stderr, "order: %s\n", order);
	CHECK(strstr(order, "H0 E0 H0") != NULL);
	client_stop(c);
	fake_stop(&fakes[0]);
}

static bool beats_after(void *arg)
{
	return ((struct fake *)arg)->heartbeats >= 1;
}

/* Every coordinator down: retries back off (capped at one interval), and the first one that
 * comes back is used within about an interval. */
static void test_all_down(void)
{
	fake_start(&fakes[0], ANSWER);
	fake_start(&fakes[1], ANSWER);
	fakes[0].interval_ms = fakes[1].interval_ms = 200;
	char *coords[] = {fakes[0].addr, fakes[1].addr};
	struct agent_client *c = client_start(coords, 2, 0, 0);
	CHECK(run_until(&loop, enrolled_at, &fakes[0], 3000));
	fake_stop(&fakes[0]);
	fake_stop(&fakes[1]);
	double f0 = metric("cloudless_agent_heartbeat_failures_total");
	run_for(1500);
	double failures = metric("cloudless_agent_heartbeat_failures_total") - f0;
	/* 2 coordinators per round, rounds 100, 200, 200, ... ms apart: not a busy loop */
	CHECK(failures >= 6 && failures <= 40);
	struct agent_client_status st;
	agent_client_status(c, &st);
	CHECK(!st.connected && st.enrolled);
	int answers_before = applied + unchanged_calls;
	fakes[1].heartbeats = 0;
	fake_listen(&fakes[1]);
	uint64_t t0 = now_ms();
	CHECK(run_until(&loop, beats_after, &fakes[1], 3000));
	CHECK(now_ms() - t0 < 600);
	CHECK_EQ_INT(fakes[1].enrolls, 0); /* it was known all along */
	run_for(50);
	CHECK(applied + unchanged_calls > answers_before); /* its answers reach the replicas */
	client_stop(c);
	fake_stop(&fakes[1]);
}

static bool applied_newer(void *arg)
{
	return applied_index >= *(uint64_t *)arg;
}

static bool query_blocked(void *arg)
{
	return ((struct fake *)arg)->blocked > 0;
}

/* The assignments query: a change reaches the agent long before the next heartbeat; an
 * answer older than what a heartbeat already brought is ignored. */
static void test_watch(void)
{
	fake_start(&fakes[0], ANSWER);
	fakes[0].interval_ms = 2000;
	char *coords[] = {fakes[0].addr};
	struct agent_client *c = client_start(coords, 1, 0, 30);
	CHECK(run_until(&loop, enrolled_at, &fakes[0], 3000));
	CHECK(run_until(&loop, query_blocked, &fakes[0], 3000));
	int beats = fakes[0].heartbeats;
	pthread_mutex_lock(&fakes[0].mu);
	fakes[0].assigned = 3;
	fakes[0].index = 42;
	pthread_mutex_unlock(&fakes[0].mu);
	uint64_t t0 = now_ms();
	uint64_t want = 42;
	CHECK(run_until(&loop, applied_newer, &want, 3000));
	CHECK(now_ms() - t0 < 500);
	CHECK(applied_n == 3);
	CHECK_EQ_INT(fakes[0].heartbeats, beats); /* it came through the query */
	/* the query is armed again at once, with the new index */
	CHECK(run_until(&loop, query_blocked, &fakes[0], 3000));
	struct agent_client_status st;
	agent_client_status(c, &st);
	CHECK_EQ_INT(st.index, 42);
	/* an answer older than the one applied (a lagging follower) is not applied */
	int before = applied;
	pthread_mutex_lock(&fakes[0].mu);
	fakes[0].query_lag = 10;
	fakes[0].index = 43; /* wakes the query, which answers 33 */
	fakes[0].assigned = 0;
	pthread_mutex_unlock(&fakes[0].mu);
	run_for(300);
	CHECK(applied == before);
	CHECK(applied_index == 42 && applied_n == 3);
	client_stop(c);
	fake_stop(&fakes[0]);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&loop);
	CHECK(metrics_init(&metrics) == 0);
	agent_metrics_define(metrics);
	CHECK(fwd_init(&fwd, &loop) == 0);
	test_steady();
	test_unchanged_answers();
	test_early_reports_capped();
	test_failover_on_start();
	test_follow_leader_and_list();
	test_deadline();
	test_reenroll();
	test_all_down();
	test_watch();
	fwd_close(fwd, NULL, NULL);
	for (int i = 0; i < 20; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	CHECK(uv_loop_close(&loop) == 0);
	metrics_close(metrics);
	TEST_DONE();
}
