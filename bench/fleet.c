/* cloudless-fleet: a fleet simulator: N agents enrolled across zones, heartbeating as
 * cloudless-agent does, without starting processes (docs/benchmarks.md, "Fleet").
 *
 * Every simulated agent enrolls (POST /v1/agents) and then heartbeats at the interval the
 * coordinator gives it (or --interval-ms) through a random coordinator, with the replica
 * reports cloudless-agent would send: every replica of the last answer is reported `running`
 * (desired run) or `stopped` (desired stop) in the next heartbeat, i.e. one heartbeat after it
 * was assigned. As the agent does for a replica that started or stopped, an answer that brings
 * something new to report brings that next heartbeat forward (AGENT_REPORT_SOON_MS after the
 * answer, AGENT_REPORT_GAP_MS after the previous heartbeat at the soonest, agent/wire.h): the
 * simulated start takes no time. The documents are built and read by the agent's own wire code
 * (src/agent/ wire.c, the cl_agent_wire leaf library), so the coordinators see exactly what real
 * agents send. Like the agent, a failed heartbeat (transport error, timeout, 5xx) is sent again at
 * once to the next coordinator, a 404 re-enrolls, and a full round of failures backs off
 * (capped at one interval). With --watch S each agent also runs the blocking assignments query
 * between heartbeats as the agent does (--assignments-wait S, its default 30); without it, it
 * behaves like --assignments-wait 0. What the simulator does not do: leader following (every
 * heartbeat picks a random coordinator, so two thirds of them are forwarded, the expensive
 * path).
 *
 * All agents share one libcurl multi handle and a pool of --connections keep-alive connections
 * (a real fleet holds one connection per agent; the coordinators' per-request cost is the
 * same). One thread drives everything; a min-heap orders the agents by their next heartbeat.
 *
 * It is driven over stdin by bench/fleet.py, one command a line, each answered with one JSON
 * line on stdout:
 *   status        enrolled / live agents, replicas assigned to live agents (desired run) and
 *                 reported running (a heartbeat that said so was answered), heartbeats and
 *                 errors so far
 *   stats         heartbeats answered since the last stats, their rate and latency percentiles,
 *                 and how late they left against their due time (the simulator's own limit)
 *   silence K     K random live agents stop heartbeating (a SIGKILL as the coordinators see
 *                 it); the replicas they held are watched until every one is assigned to a live
 *                 agent and reported running there, then {"event":"replaced",...} is printed
 *   revive        the silenced agents heartbeat again
 *   mark          remembers now; `recovery` then tells, per live agent, how long until a
 *                 heartbeat sent after the mark was answered (leader failover)
 *   recovery      that figure (answered agents, p50, max)
 *   quit          exit */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "agent/wire.h"
#include "samples.h"
#include "util/buf.h"
#include "util/hmap.h"

#define MAX_URLS 16
/* A failed round (every coordinator tried) waits this long before the next, doubled up to
 * one interval (the agent's capped backoff, src/agent/client.c). */
#define BACKOFF_MS 50

struct opts {
	const char *urls[MAX_URLS];
	int n_urls;
	int agents;
	int zones;
	int connections;
	unsigned interval_ms; /* 0: the coordinator's */
	unsigned watch_s;     /* wait of the assignments query; 0: no query */
	const char *prefix;
	uint64_t cpu, mem;
	bool quiet;
};

struct replica {
	char *id;
	uint64_t epoch;
	bool run;
	bool acked; /* a heartbeat reporting it (at this epoch) was answered */
};

struct agent {
	int idx;
	char id[64];
	char *enrollment;
	size_t enrollment_len;
	bool enrolled, silent, busy, in_heap;
	unsigned interval_ms;
	uint64_t next_ns;
	size_t heap_pos;          /* its place in the heap while in_heap */
	uint64_t last_hb_ns;      /* when its last heartbeat was sent */
	struct agent_early early; /* its early heartbeats' budget (agent/wire.h) */
	int target;               /* index into urls of the next attempt */
	int attempts;             /* failures in this round */
	unsigned backoff_ms;
	struct replica *reps;
	size_t n_reps;
	size_t n_sent;         /* reps[0..n_sent) were in the heartbeat in flight */
	uint64_t recovered_ns; /* first answer to a heartbeat sent after the mark, 0: none */
	uint64_t index;        /* of the last answer applied */
	uint64_t watch_index;  /* the index the query in flight waits past */
	bool watching;
};

struct conn {
	CURL *easy;
	struct agent *ag;
	char url[512];
	char *body;
	struct buf resp;
	uint64_t sent_ns;
	enum { K_ENROLL, K_HEARTBEAT, K_WATCH } kind;
	struct conn *next_free;
};

/* Where each replica id last ran: the agent that reported it running and when. */
struct where {
	int agent;
	uint64_t epoch;
	uint64_t running_ns;
};

static struct opts o;
static struct agent *agents;
static struct agent **heap;
static size_t heap_n;
static struct conn *free_conns;
static CURLM *multi;
static struct hmap where; /* replica id -> struct where */
static struct samples window;
/* How late heartbeats left against their due time: the simulator's own queueing (all
 * connections busy, or its thread behind). Large values mean the figures are the
 * simulator's limit, not the coordinators'. */
static struct samples late;
static uint64_t window_start;
static long long hb_ok, hb_err, enroll_ok, enroll_err, reenrolls;
static long long win_ok, win_err, win_5xx, win_transport;
static uint64_t mark_ns;
/* The silence trial in progress: the replica ids the silenced agents held. */
static char **trial_ids;
static size_t trial_n;
static uint64_t trial_t0;
static int trial_agents;

static void die(const char *msg)
{
	fprintf(stderr, "cloudless-fleet: %s\n", msg);
	exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (p == NULL)
		die("out of memory");
	return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* ---- the heap of agents by next_ns ------------------------------------------------------ */

static void heap_swap(size_t a, size_t b)
{
	struct agent *t = heap[a];
	heap[a] = heap[b];
	heap[b] = t;
	heap[a]->heap_pos = a;
	heap[b]->heap_pos = b;
}

static void heap_up(size_t i)
{
	while (i > 0 && heap[(i - 1) / 2]->next_ns > heap[i]->next_ns) {
		heap_swap(i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_push(struct agent *a)
{
	size_t i = heap_n++;
	heap[i] = a;
	a->heap_pos = i;
	a->in_heap = true;
	heap_up(i);
}

static struct agent *heap_pop(void)
{
	struct agent *top = heap[0];
	heap[0] = heap[--heap_n];
	heap[0]->heap_pos = 0;
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < heap_n && heap[l]->next_ns < heap[m]->next_ns)
			m = l;
		if (r < heap_n && heap[r]->next_ns < heap[m]->next_ns)
			m = r;
		if (m == i)
			break;
		heap_swap(i, m);
		i = m;
	}
	top->in_heap = false;
	return top;
}

static void schedule(struct agent *a, uint64_t at)
{
	a->next_ns = at;
	heap_push(a);
}

/* When an answer brought something to report: the agent's early heartbeat (wire.h). */
static uint64_t report_soon_at(const struct agent *a, uint64_t now)
{
	uint64_t soon = now + AGENT_REPORT_SOON_MS * 1000000ULL;
	uint64_t gap_end = a->last_hb_ns + AGENT_REPORT_GAP_MS * 1000000ULL;
	return soon > gap_end ? soon : gap_end;
}

static bool has_news(const struct agent *a)
{
	for (size_t i = 0; i < a->n_reps; i++)
		if (!a->reps[i].acked)
			return true;
	return false;
}

/* When its next heartbeat goes, due at next: earlier when it has news and its budget allows
 * an early one (which the budget is then charged for, agent/wire.h). */
static uint64_t early(struct agent *a, uint64_t now, uint64_t next)
{
	uint64_t at = report_soon_at(a, now);
	if (!has_news(a) || at >= next ||
	    !agent_early_take(&a->early, at / 1000000ULL, (unsigned)a->interval_ms))
		return next;
	return at;
}

/* Moves a scheduled heartbeat earlier (never later). */
static void bring_forward(struct agent *a, uint64_t at)
{
	if (!a->in_heap || at >= a->next_ns)
		return;
	a->next_ns = at;
	heap_up(a->heap_pos);
}

/* ---- requests --------------------------------------------------------------------------- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct conn *c = arg;
	buf_append(&c->resp, ptr, size * nmemb);
	return size * nmemb;
}

static struct curl_slist *json_headers;

static struct conn *conn_get(void)
{
	struct conn *c = free_conns;
	if (c != NULL)
		free_conns = c->next_free;
	return c;
}

static void send_request(struct conn *c, struct agent *a)
{
	c->ag = a;
	a->busy = true;
	buf_reset(&c->resp);
	free(c->body);
	c->body = NULL;
	size_t len = 0;
	const char *base = o.urls[a->target % o.n_urls];
	if (!a->enrolled) {
		c->kind = K_ENROLL;
		snprintf(c->url, sizeof c->url, "%s/v1/agents", base);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, a->enrollment);
		len = a->enrollment_len;
	} else {
		c->kind = K_HEARTBEAT;
		struct agent_report *r = xcalloc(a->n_reps, sizeof *r);
		for (size_t i = 0; i < a->n_reps; i++)
			r[i] =
			    (struct agent_report){.id = a->reps[i].id,
			                          .epoch = a->reps[i].epoch,
			                          .state = a->reps[i].run ? "running" : "stopped"};
		c->body = agent_wire_heartbeat(r, a->n_reps, a->index, &len);
		free(r);
		a->n_sent = a->n_reps;
		snprintf(c->url, sizeof c->url, "%s/v1/agents/%s/heartbeat", base, a->id);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
	}
	curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
	curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)len);
	/* The agent's deadline: one interval (a third of the coordinator's agent timeout). */
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS,
	                 (long)(a->interval_ms ? a->interval_ms : 1000));
	c->sent_ns = samples_now_ns();
	if (c->kind == K_HEARTBEAT)
		a->last_hb_ns = c->sent_ns;
	curl_multi_add_handle(multi, c->easy);
}

static void reps_free(struct agent *a)
{
	for (size_t i = 0; i < a->n_reps; i++)
		free(a->reps[i].id);
	free(a->reps);
	a->reps = NULL;
	a->n_reps = a->n_sent = 0;
}

static struct where *where_get(const char *id, bool create)
{
	struct where *w = hmap_get(&where, id);
	if (w == NULL && create) {
		w = xcalloc(1, sizeof *w);
		w->agent = -1;
		hmap_put(&where, id, w);
	}
	return w;
}

/* The heartbeat that reported reps[0..n_sent) was answered with `ans`: those reports are
 * acknowledged, and the answer's list is what the next heartbeat reports. */
static void apply_answer(struct agent *a, struct agent_answer *ans, uint64_t done)
{
	struct replica *old = a->reps;
	size_t n_old = a->n_reps, n_sent = a->n_sent;
	for (size_t i = 0; i < n_sent; i++) {
		old[i].acked = true;
		if (!old[i].run)
			continue;
		struct where *w = where_get(old[i].id, true);
		if (w->agent != a->idx || w->epoch != old[i].epoch) {
			w->agent = a->idx;
			w->epoch = old[i].epoch;
			w->running_ns = done;
		}
	}
	if (ans->unchanged)
		return; /* it holds the current assignments already */
	struct replica *reps = xcalloc(ans->n, sizeof *reps);
	for (size_t i = 0; i < ans->n; i++) {
		reps[i].id = ans->items[i].id;
		ans->items[i].id = NULL; /* taken */
		reps[i].epoch = ans->items[i].epoch;
		reps[i].run = ans->items[i].run;
		for (size_t j = 0; j < n_old; j++)
			if (old[j].acked && old[j].epoch == reps[i].epoch &&
			    old[j].run == reps[i].run && strcmp(old[j].id, reps[i].id) == 0) {
				reps[i].acked = true;
				break;
			}
	}
	reps_free(a);
	a->reps = reps;
	a->n_reps = ans->n;
	if (ans->index > a->index)
		a->index = ans->index;
}

/* The assignments query, as cloudless-agent runs it between heartbeats (client.c): it
 * returns as soon as this agent's assignments change, so new work is known (and reported
 * running in the next heartbeat) without waiting for a heartbeat to bring it. */
static void start_watch(struct agent *a)
{
	if (o.watch_s == 0 || a->watching || a->silent || !a->enrolled)
		return;
	struct conn *c = conn_get();
	if (c == NULL)
		return; /* every connection busy: the next heartbeat tries again */
	c->ag = a;
	c->kind = K_WATCH;
	buf_reset(&c->resp);
	a->watch_index = a->index > 0 ? a->index : 1; /* index=0 answers at once */
	snprintf(c->url, sizeof c->url, "%s/v1/agents/%s/assignments?index=%llu&wait=%us&stale",
	         o.urls[a->target % o.n_urls], a->id, (unsigned long long)a->watch_index,
	         o.watch_s);
	curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
	curl_easy_setopt(c->easy, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS,
	                 (long)(o.watch_s * 1000 + a->interval_ms + 2000));
	c->sent_ns = samples_now_ns();
	a->watching = true;
	curl_multi_add_handle(multi, c->easy);
}

/* A newer answer is applied only while no heartbeat is in flight (that heartbeat's reports
 * are the list it was sent with; its own answer is at least as new). Failures wait for the
 * next heartbeat, as in the agent; a query that fired is asked again at once. */
static void watch_done(struct conn *c, struct agent *a, CURLcode res, long status)
{
	char err[256];
	struct agent_answer ans;
	a->watching = false;
	if (a->silent || res != CURLE_OK || status != 200 ||
	    agent_wire_decode_assignments(c->resp.data, c->resp.len, &ans, err, sizeof err) != 0)
		return;
	bool fired = ans.index > a->watch_index;
	if (ans.index > a->index && !a->busy) {
		uint64_t now = samples_now_ns();
		a->n_sent = 0; /* acknowledges nothing */
		apply_answer(a, &ans, now);
		bring_forward(a, a->in_heap ? early(a, now, a->next_ns) : UINT64_MAX);
	}
	agent_answer_close(&ans);
	if (fired)
		start_watch(a);
}

static void failed(struct agent *a, uint64_t now, bool server_error)
{
	hb_err++;
	win_err++;
	if (server_error)
		win_5xx++;
	else
		win_transport++;
	a->attempts++;
	a->target = (a->target + 1) % o.n_urls;
	if (a->attempts < o.n_urls) {
		schedule(a, now); /* at once, to the next coordinator */
		return;
	}
	a->attempts = 0;
	unsigned cap = a->interval_ms ? a->interval_ms : 1000;
	a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : BACKOFF_MS;
	if (a->backoff_ms > cap)
		a->backoff_ms = cap;
	schedule(a,
	         now + (uint64_t)(a->backoff_ms / 2 + rng() % (a->backoff_ms / 2 + 1)) * 1000000);
}

static void done(struct conn *c, CURLcode res)
{
	struct agent *a = c->ag;
	uint64_t now = samples_now_ns();
	long status = 0;
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	c->ag = NULL;
	char err[256];
	if (c->kind == K_WATCH) {
		watch_done(c, a, res, status);
		return;
	}
	a->busy = false;
	if (c->kind == K_ENROLL) {
		unsigned interval = 0;
		if (res == CURLE_OK && (status == 200 || status == 201) &&
		    agent_wire_decode_agent(c->resp.data, c->resp.len, &interval, err,
		                            sizeof err) == 0) {
			enroll_ok++;
			a->enrolled = true;
			a->attempts = 0;
			a->backoff_ms = 0;
			a->interval_ms = o.interval_ms ? o.interval_ms : interval;
			/* Spread the fleet over the interval's phase, as agents started at random
			 * times are. */
			schedule(a, now + (rng() % a->interval_ms) * 1000000ULL);
		} else {
			enroll_err++;
			failed(a, now, res == CURLE_OK && status >= 500);
		}
		return;
	}
	if (a->silent) {
		/* Silenced while in flight: as if the answer never arrived. */
		return;
	}
	if (res == CURLE_OK && status == 404) {
		reenrolls++;
		a->enrolled = false;
		a->index = 0; /* a new record: it holds none of its assignments */
		reps_free(a);
		schedule(a, now);
		return;
	}
	struct agent_answer ans;
	if (res != CURLE_OK || status != 200 ||
	    agent_wire_decode_heartbeat(c->resp.data, c->resp.len, &ans, err, sizeof err) != 0) {
		if (res == CURLE_OK && status != 200 && status < 500 && !o.quiet)
			fprintf(stderr, "cloudless-fleet: %s: heartbeat answered %ld\n", a->id,
			        status);
		failed(a, now, res == CURLE_OK && status >= 500);
		return;
	}
	hb_ok++;
	win_ok++;
	samples_add(&window, now - c->sent_ns);
	if (mark_ns != 0 && a->recovered_ns == 0 && c->sent_ns >= mark_ns)
		a->recovered_ns = now;
	a->attempts = 0;
	a->backoff_ms = 0;
	if (o.interval_ms == 0 && ans.heartbeat_interval_ms != 0)
		a->interval_ms = ans.heartbeat_interval_ms;
	apply_answer(a, &ans, now);
	agent_answer_close(&ans);
	a->target = (int)(rng() % (uint64_t)o.n_urls);
	schedule(a, early(a, now, c->sent_ns + (uint64_t)a->interval_ms * 1000000ULL));
	start_watch(a);
}

/* ---- commands --------------------------------------------------------------------------- */

static void cmd_status(void)
{
	long long enrolled = 0, live = 0, assigned = 0, running = 0;
	for (int i = 0; i < o.agents; i++) {
		struct agent *a = &agents[i];
		enrolled += a->enrolled;
		live += a->enrolled && !a->silent;
		if (a->silent)
			continue; /* what it held is the coordinators' to move */
		for (size_t j = 0; j < a->n_reps; j++) {
			assigned += a->reps[j].run;
			running += a->reps[j].run && a->reps[j].acked;
		}
	}
	printf("{\"status\":true,\"agents\":%d,\"enrolled\":%lld,\"live\":%lld,\"assigned\":%lld,"
	       "\"running\":%lld,\"heartbeats\":%lld,\"errors\":%lld,\"enroll_errors\":%lld,"
	       "\"reenrolls\":%lld}\n",
	       o.agents, enrolled, live, assigned, running, hb_ok, hb_err, enroll_err, reenrolls);
}

static void cmd_stats(void)
{
	uint64_t now = samples_now_ns();
	double secs = (double)(now - window_start) / 1e9;
	samples_sort(&window);
	samples_sort(&late);
	printf(
	    "{\"stats\":true,\"seconds\":%.3f,\"heartbeats\":%lld,\"per_s\":%.1f,\"errors\":%lld,"
	    "\"errors_5xx\":%lld,\"errors_transport\":%lld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
	    "\"max_ms\":%.3f,\"late_p99_ms\":%.3f,\"late_max_ms\":%.3f}\n",
	    secs, win_ok, secs > 0 ? (double)win_ok / secs : 0, win_err, win_5xx, win_transport,
	    samples_pct_ms(&window, 50), samples_pct_ms(&window, 99), samples_max_ms(&window),
	    samples_pct_ms(&late, 99), samples_max_ms(&late));
	late.n = 0;
	window.n = 0;
	win_ok = win_err = win_5xx = win_transport = 0;
	window_start = now;
}

static void trial_clear(void)
{
	for (size_t i = 0; i < trial_n; i++)
		free(trial_ids[i]);
	free(trial_ids);
	trial_ids = NULL;
	trial_n = 0;
}

static void cmd_silence(int k)
{
	int live = 0;
	for (int i = 0; i < o.agents; i++)
		live += agents[i].enrolled && !agents[i].silent;
	if (k > live)
		k = live;
	trial_clear();
	size_t cap = 0;
	for (int chosen = 0; chosen < k;) {
		struct agent *a = &agents[rng() % (uint64_t)o.agents];
		if (!a->enrolled || a->silent)
			continue;
		a->silent = true;
		chosen++;
		for (size_t j = 0; j < a->n_reps; j++) {
			if (!a->reps[j].run)
				continue;
			if (trial_n == cap) {
				cap = cap ? cap * 2 : 64;
				trial_ids = realloc(trial_ids, cap * sizeof *trial_ids);
				if (trial_ids == NULL)
					die("out of memory");
			}
			trial_ids[trial_n++] = strdup(a->reps[j].id);
		}
	}
	trial_t0 = samples_now_ns();
	trial_agents = k;
	printf("{\"silenced\":%d,\"replicas\":%zu}\n", k, trial_n);
}

/* The trial is over once every watched replica last ran on a live agent, since the silence. */
static void trial_check(void)
{
	if (trial_agents == 0)
		return;
	uint64_t latest = 0;
	for (size_t i = 0; i < trial_n; i++) {
		struct where *w = where_get(trial_ids[i], false);
		if (w == NULL || w->agent < 0 || agents[w->agent].silent ||
		    w->running_ns < trial_t0)
			return;
		if (w->running_ns > latest)
			latest = w->running_ns;
	}
	printf("{\"event\":\"replaced\",\"agents\":%d,\"replicas\":%zu,\"seconds\":%.3f}\n",
	       trial_agents, trial_n, trial_n ? (double)(latest - trial_t0) / 1e9 : 0.0);
	fflush(stdout);
	trial_agents = 0;
	trial_clear();
}

static void cmd_revive(void)
{
	int n = 0;
	uint64_t now = samples_now_ns();
	for (int i = 0; i < o.agents; i++) {
		struct agent *a = &agents[i];
		if (!a->silent)
			continue;
		a->silent = false;
		n++;
		/* It kept its old list: a restarted agent reports what it still runs. */
		if (!a->busy && !a->in_heap)
			schedule(a, now);
	}
	printf("{\"revived\":%d}\n", n);
}

static void cmd_recovery(void)
{
	uint64_t *v = xcalloc((size_t)o.agents, sizeof *v);
	size_t n = 0, live = 0;
	for (int i = 0; i < o.agents; i++) {
		struct agent *a = &agents[i];
		if (!a->enrolled || a->silent)
			continue;
		live++;
		if (a->recovered_ns != 0)
			v[n++] = a->recovered_ns - mark_ns;
	}
	struct samples sorted = {.v = v, .n = n, .cap = n};
	samples_sort(&sorted);
	printf(
	    "{\"recovery\":true,\"live\":%zu,\"answered\":%zu,\"p50_ms\":%.1f,\"max_ms\":%.1f}\n",
	    live, n, samples_pct_ms(&sorted, 50), samples_max_ms(&sorted));
	free(v);
}

/* Returns false on quit or end of input. */
static bool command(char *line)
{
	line[strcspn(line, "\r\n")] = '\0';
	if (strcmp(line, "status") == 0)
		cmd_status();
	else if (strcmp(line, "stats") == 0)
		cmd_stats();
	else if (strncmp(line, "silence ", 8) == 0)
		cmd_silence(atoi(line + 8));
	else if (strcmp(line, "revive") == 0)
		cmd_revive();
	else if (strcmp(line, "mark") == 0) {
		mark_ns = samples_now_ns();
		for (int i = 0; i < o.agents; i++)
			agents[i].recovered_ns = 0;
		printf("{\"marked\":true}\n");
	} else if (strcmp(line, "recovery") == 0)
		cmd_recovery();
	else if (strcmp(line, "quit") == 0)
		return false;
	else if (line[0] != '\0')
		printf("{\"error\":\"unknown command\"}\n");
	fflush(stdout);
	return true;
}

/* Reads what stdin has (non-blocking); false once it is closed or says quit. */
static bool read_commands(struct buf *in)
{
	char chunk[4096];
	for (;;) {
		ssize_t n = read(0, chunk, sizeof chunk);
		if (n == 0)
			return false;
		if (n < 0)
			break;
		buf_append(in, chunk, (size_t)n);
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return false;
	char *start = in->data, *nl;
	while (in->len > 0 && (nl = memchr(start, '\n', in->len - (size_t)(start - in->data)))) {
		*nl = '\0';
		if (!command(start))
			return false;
		start = nl + 1;
	}
	if (in->len == 0)
		return true;
	size_t rest = in->len - (size_t)(start - in->data);
	memmove(in->data, start, rest);
	in->len = rest;
	return true;
}

/* ---- setup ------------------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: cloudless-fleet --url http://H:P[,http://H:P...] [--agents N] [--zones Z]\n"
	    "         [--connections C] [--interval-ms MS] [--watch S] [--prefix P] [--cpu MILLI]\n"
	    "         [--memory BYTES] [--quiet]\n"
	    "Simulates N agents; commands on stdin (status, stats, silence K, revive, mark,\n"
	    "recovery, quit), one JSON answer line each on stdout.\n");
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"url", required_argument, NULL, 'u'},
	    {"agents", required_argument, NULL, 'n'},
	    {"zones", required_argument, NULL, 'z'},
	    {"connections", required_argument, NULL, 'c'},
	    {"interval-ms", required_argument, NULL, 'i'},
	    {"watch", required_argument, NULL, 'w'},
	    {"prefix", required_argument, NULL, 'p'},
	    {"cpu", required_argument, NULL, 'C'},
	    {"memory", required_argument, NULL, 'M'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	o = (struct opts){.agents = 100,
	                  .zones = 3,
	                  .connections = 256,
	                  .prefix = "sim",
	                  .cpu = 16000,
	                  .mem = 64ULL << 30};
	int ch;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			for (char *s = strtok(optarg, ","); s != NULL; s = strtok(NULL, ",")) {
				if (o.n_urls == MAX_URLS)
					die("at most 16 --url entries");
				o.urls[o.n_urls++] = s;
			}
			break;
		case 'n':
			o.agents = atoi(optarg);
			break;
		case 'z':
			o.zones = atoi(optarg);
			break;
		case 'c':
			o.connections = atoi(optarg);
			break;
		case 'i':
			o.interval_ms = (unsigned)atoi(optarg);
			break;
		case 'w':
			o.watch_s = (unsigned)atoi(optarg);
			break;
		case 'p':
			o.prefix = optarg;
			break;
		case 'C':
			o.cpu = strtoull(optarg, NULL, 10);
			break;
		case 'M':
			o.mem = strtoull(optarg, NULL, 10);
			break;
		case 'q':
			o.quiet = true;
			break;
		case 'h':
			usage();
			exit(0);
		default:
			usage();
			exit(2);
		}
	}
	if (o.n_urls == 0)
		die("--url is required");
	if (o.agents < 1 || o.agents > 1000000)
		die("--agents must be 1..1000000");
	if (o.zones < 1 || o.zones > 100)
		die("--zones must be 1..100");
	if (o.connections < 1 || o.connections > 8192)
		die("--connections must be 1..8192");
	if (o.cpu == 0 || o.mem == 0)
		die("--cpu and --memory must be positive");
}

/* Labels: tier=a on even agents, tier=b on odd ones (for node_selector workloads). */
static void agent_init(struct agent *a, int idx)
{
	char zone[16];
	char *keys[] = {"tier", "sim"};
	char *values[] = {idx % 2 == 0 ? "a" : "b", "true"};
	a->idx = idx;
	snprintf(a->id, sizeof a->id, "%s-%06d", o.prefix, idx);
	snprintf(zone, sizeof zone, "z%d", idx % o.zones + 1);
	struct agent_enrollment e = {.id = a->id,
	                             .region = "r1",
	                             .zone = zone,
	                             .label_keys = keys,
	                             .label_values = values,
	                             .n_labels = 2,
	                             .cpu_millicores = o.cpu,
	                             .memory_bytes = o.mem};
	a->enrollment = agent_wire_enrollment(&e, &a->enrollment_len);
	a->target = (int)(rng() % (uint64_t)o.n_urls);
	a->interval_ms = o.interval_ms;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		die("curl_global_init failed");
	rng_state ^= samples_now_ns() ^ ((uint64_t)getpid() << 32);
	hmap_init(&where);
	if (fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK) != 0)
		die("cannot make stdin non-blocking");

	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)o.connections + 16);
	/* A hard cap too: a timed-out request's connection is closed and replaced, and without
	 * the cap replacements could pile up faster than the servers notice the closes. */
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)o.connections);
	json_headers = curl_slist_append(NULL, "Content-Type: application/json");
	json_headers = curl_slist_append(json_headers, "Expect:");

	struct conn *conns = xcalloc((size_t)o.connections, sizeof *conns);
	for (int i = 0; i < o.connections; i++) {
		struct conn *c = &conns[i];
		c->easy = curl_easy_init();
		if (c->easy == NULL)
			die("curl_easy_init failed");
		buf_init(&c->resp);
		curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, json_headers);
		curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
		curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c->easy, CURLOPT_TCP_NODELAY, 1L);
		curl_easy_setopt(c->easy, CURLOPT_NOPROXY, "*");
		curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
		curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
		c->next_free = free_conns;
		free_conns = c;
	}

	agents = xcalloc((size_t)o.agents, sizeof *agents);
	heap = xcalloc((size_t)o.agents, sizeof *heap);
	uint64_t start = samples_now_ns();
	for (int i = 0; i < o.agents; i++) {
		agent_init(&agents[i], i);
		schedule(&agents[i], start);
	}
	window_start = start;

	struct buf in;
	buf_init(&in);
	struct curl_waitfd extra = {.fd = 0, .events = CURL_WAIT_POLLIN};
	bool go = true;
	while (go) {
		uint64_t now = samples_now_ns();
		struct conn *c;
		while (heap_n > 0 && heap[0]->next_ns <= now && (c = free_conns) != NULL) {
			struct agent *a = heap_pop();
			if (a->silent)
				continue; /* revive reschedules it */
			conn_get();
			if (a->enrolled)
				samples_add(&late, now - a->next_ns);
			send_request(c, a);
		}
		int running = 0;
		curl_multi_perform(multi, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct conn *dc;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&dc);
			CURLcode res = msg->data.result;
			curl_multi_remove_handle(multi, dc->easy);
			done(dc, res);
			dc->next_free = free_conns;
			free_conns = dc;
		}
		trial_check();
		int wait_ms = 10;
		if (heap_n > 0 && free_conns != NULL) {
			uint64_t t = samples_now_ns();
			wait_ms =
			    heap[0]->next_ns <= t ? 0 : (int)((heap[0]->next_ns - t) / 1000000);
			if (wait_ms > 10)
				wait_ms = 10;
		}
		extra.revents = 0;
		curl_multi_poll(multi, &extra, 1, wait_ms, NULL);
		if (extra.revents != 0)
			go = read_commands(&in);
	}

	for (int i = 0; i < o.connections; i++) {
		curl_multi_remove_handle(multi, conns[i].easy);
		curl_easy_cleanup(conns[i].easy);
		buf_close(&conns[i].resp);
		free(conns[i].body);
	}
	free(conns);
	for (int i = 0; i < o.agents; i++) {
		reps_free(&agents[i]);
		free(agents[i].enrollment);
	}
	free(agents);
	free(heap);
	const char *k;
	void *v;
	for (size_t i = 0; hmap_next(&where, &i, &k, &v);)
		free(v);
	hmap_close(&where);
	trial_clear();
	samples_close(&window);
	samples_close(&late);
	buf_close(&in);
	curl_slist_free_all(json_headers);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	return 0;
}
