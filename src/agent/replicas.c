/* replicas: the replica table and its supervision (see replicas.h).
 *
 * Records are kept in an array in the order they were created (the order reports and
 * reconciliation see them). One timer serves every scheduled restart: it is armed for the
 * earliest restart_at. A record's process is watched by the driver; its exit callback gets
 * the record itself as argument, so the record must outlive its process: a record is only
 * forgotten once it has none. */
#include "agent/replicas.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/orphans.h"
#include "agent/reconcile.h"
#include "agent/restart.h"
#include "agent/spec.h"
#include "agent/state.h"
#include "log/log.h"
#include "util/clock.h"

struct replica {
	struct agent_replicas *r;
	char *id, *workload;
	uint64_t epoch;
	json_t *spec_json; /* NULL when unknown (then it cannot be started) */
	struct agent_spec spec;
	bool has_spec;
	enum agent_phase phase;
	struct agent_proc *proc; /* while its process is watched */
	pid_t pid;
	uint64_t start_time;
	bool has_exit_code;
	int exit_code;
	struct agent_restart_history hist;
	uint64_t restart_at; /* mono ms, in BACKOFF */
	bool confirmed;
	uint64_t seq, sent_seq; /* phase changes; the one the last heartbeat carried */
	bool reported;
};

struct agent_replicas {
	struct agent_replicas_options o;
	struct replica **recs;
	size_t n, cap;
	uv_timer_t restart_timer;
	uv_timer_t fence_timer;
	uint64_t contact_ms;      /* the fence counts from here (mono ms) */
	unsigned open_timers;     /* while closing */
	struct agent_answer last; /* the latest answer, reconciled again after each stop */
	bool have_last;
	uint64_t seq;
	struct agent_report *reports;
	size_t reports_cap;
	bool stopping_all;
	void (*stop_done)(void *arg);
	void *stop_arg;
	bool closing;
};

static void schedule_restarts(struct agent_replicas *r);
static void reconcile_last(struct agent_replicas *r);

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		abort();
	return d;
}

/* ---- records -------------------------------------------------------------------------- */

static struct replica *rec_new(struct agent_replicas *r, const char *id, const char *workload,
                               uint64_t epoch)
{
	struct replica *x = calloc(1, sizeof *x);
	if (x == NULL)
		abort();
	x->r = r;
	x->id = xstrdup(id);
	x->workload = xstrdup(workload);
	x->epoch = epoch;
	agent_restart_history_init(&x->hist);
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct replica **a = realloc(r->recs, cap * sizeof *a);
		if (a == NULL)
			abort();
		r->recs = a;
		r->cap = cap;
	}
	r->recs[r->n++] = x;
	return x;
}

static void rec_free(struct replica *x)
{
	free(x->id);
	free(x->workload);
	json_decref(x->spec_json);
	agent_spec_close(&x->spec);
	agent_restart_history_close(&x->hist);
	free(x);
}

static void rec_remove(struct agent_replicas *r, struct replica *x)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->recs[i] == x) {
			memmove(r->recs + i, r->recs + i + 1, (r->n - i - 1) * sizeof *r->recs);
			r->n--;
			break;
		}
	rec_free(x);
}

static struct replica *rec_find(const struct agent_replicas *r, const char *id, uint64_t epoch)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->recs[i]->epoch == epoch && strcmp(r->recs[i]->id, id) == 0)
			return r->recs[i];
	return NULL;
}

/* Takes the spec (a reference) and decodes it; a record without a valid spec cannot run. */
static void rec_set_spec(struct replica *x, json_t *spec)
{
	char err[256];
	if (spec == NULL || x->has_spec)
		return;
	json_decref(x->spec_json);
	x->spec_json = json_incref(spec);
	if (agent_spec_decode(spec, &x->spec, err, sizeof err) == 0)
		x->has_spec = true;
	else
		log_error("Replica spec rejected", "id=%s epoch=%llu error=\"%s\"", x->id,
		          (unsigned long long)x->epoch, err);
}

static void set_phase(struct replica *x, enum agent_phase p)
{
	if (x->phase == p)
		return;
	bool news = strcmp(agent_phase_report(x->phase), agent_phase_report(p)) != 0;
	x->phase = p;
	x->seq = ++x->r->seq;
	x->reported = false;
	if (news && x->r->o.changed != NULL)
		x->r->o.changed(x->r->o.changed_arg);
}

/* ---- state file ----------------------------------------------------------------------- */

static void save(struct agent_replicas *r)
{
	char err[512];
	struct agent_state st = {.agent_id = (char *)r->o.agent_id, .n = r->n};
	st.replicas = calloc(r->n + 1, sizeof *st.replicas);
	if (st.replicas == NULL)
		abort();
	for (size_t i = 0; i < r->n; i++) {
		struct replica *x = r->recs[i];
		st.replicas[i] = (struct agent_state_replica){
		    .id = x->id,
		    .workload = x->workload,
		    .epoch = x->epoch,
		    .spec = x->spec_json,
		    .phase = x->phase,
		    .pid = agent_phase_has_process(x->phase) ? x->pid : 0,
		    .start_time = agent_phase_has_process(x->phase) ? x->start_time : 0,
		    .has_exit_code = x->has_exit_code,
		    .exit_code = x->exit_code,
		    .restarts = x->hist.total,
		    .restart_times = x->hist.times,
		    .n_restart_times = x->hist.n,
		};
	}
	/* A failed write is not fatal: the replicas still run; only a restart of the agent
	 * would miss them, so say so loudly. */
	if (agent_state_save(r->o.data_dir, &st, err, sizeof err) != 0)
		log_error("Cannot write the agent state file", "error=\"%s\"", err);
	free(st.replicas);
}

/* ---- starting ------------------------------------------------------------------------- */

/* <data-dir>/replicas/<namespace>/<name>/<N>: the id's three segments must be plain names,
 * so that no id can point the working directory anywhere else. */
static int replica_dir(const struct agent_replicas *r, const char *id, char *out, size_t outlen)
{
	int segments = 1;
	size_t seglen = 0;
	for (const char *p = id; *p != '\0'; p++) {
		char c = *p;
		if (c == '/') {
			if (seglen == 0)
				return -1;
			segments++;
			seglen = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || (c == '.' && seglen > 0)))
			return -1;
		seglen++;
	}
	if (segments != 3 || seglen == 0)
		return -1;
	return snprintf(out, outlen, "%s/replicas/%s", r->o.data_dir, id) < (int)outlen ? 0 : -1;
}

static bool env_named(const char *entry, const char *name)
{
	size_t n = strlen(name);
	return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static bool env_has(char *const *env, const char *entry)
{
	size_t n = strcspn(entry, "=");
	for (; env != NULL && *env != NULL; env++)
		if (strncmp(*env, entry, n) == 0 && (*env)[n] == '=')
			return true;
	return false;
}

static const char *const reserved_env[] = {"CLOUDLESS_REPLICA_ID", "CLOUDLESS_WORKLOAD",
                                           "CLOUDLESS_AGENT_ID", "CLOUDLESS_EPOCH"};
#define N_RESERVED (sizeof reserved_env / sizeof reserved_env[0])

static bool is_reserved(const char *entry)
{
	for (size_t i = 0; i < N_RESERVED; i++)
		if (env_named(entry, reserved_env[i]))
			return true;
	return false;
}

/* The replica's environment: the agent's base variables, overridden by the spec's env, then
 * the four CLOUDLESS_* variables, which nothing overrides. Entries point into x->spec and
 * r->o.base_env except the last four, which are written into `own`. */
static char **build_env(struct replica *x, char own[N_RESERVED][512])
{
	size_t n_base = 0;
	for (char *const *e = x->r->o.base_env; e != NULL && *e != NULL; e++)
		n_base++;
	char **env = calloc(n_base + x->spec.n_env + N_RESERVED + 1, sizeof *env);
	if (env == NULL)
		abort();
	size_t n = 0;
	for (size_t i = 0; i < n_base; i++) {
		char *e = x->r->o.base_env[i];
		if (!env_has(x->spec.env, e) && !is_reserved(e))
			env[n++] = e;
	}
	for (size_t i = 0; i < x->spec.n_env; i++)
		if (!is_reserved(x->spec.env[i]))
			env[n++] = x->spec.env[i];
	snprintf(own[0], sizeof own[0], "CLOUDLESS_REPLICA_ID=%s", x->id);
	snprintf(own[1], sizeof own[1], "CLOUDLESS_WORKLOAD=%s", x->workload);
	snprintf(own[2], sizeof own[2], "CLOUDLESS_AGENT_ID=%s", x->r->o.agent_id);
	snprintf(own[3], sizeof own[3], "CLOUDLESS_EPOCH=%llu", (unsigned long long)x->epoch);
	for (size_t i = 0; i < N_RESERVED; i++)
		env[n++] = own[i];
	return env;
}

static const char *env_value(char **env, const char *name)
{
	for (; *env != NULL; env++)
		if (env_named(*env, name))
			return *env + strlen(name) + 1;
	return NULL;
}

static void on_proc_exit(struct agent_proc *p, const struct agent_exit *e, void *arg);
static void after_exit(struct replica *x, bool status_known, int code, bool success);

/* Whether x's fence has fired: it has one and no heartbeat sent in its last
 * stop_after_disconnect_s seconds was answered. */
static bool fence_fired(const struct replica *x, uint64_t now)
{
	uint64_t f = x->has_spec ? x->spec.stop_after_disconnect_s : 0;
	return f > 0 && now > x->r->contact_ms && now - x->r->contact_ms > f * 1000;
}

/* Starts x's process now. A start that fails (no spec, command not found, exec error)
 * counts as an exit with status 127, as a shell reports it, and goes through the policy. */
static void start_process(struct replica *x, const char *why)
{
	struct agent_replicas *r = x->r;
	char dir[PATH_MAX], err[512], own[N_RESERVED][512];
	if (fence_fired(x, clock_mono_ms())) {
		/* Started again by the first answer that still assigns it. */
		log_info("Replica start held by its fence",
		         "id=%s epoch=%llu disconnected_ms=%llu stop_after_disconnect_s=%llu",
		         x->id, (unsigned long long)x->epoch,
		         (unsigned long long)(clock_mono_ms() - r->contact_ms),
		         (unsigned long long)x->spec.stop_after_disconnect_s);
		set_phase(x, AGENT_PHASE_PENDING);
		save(r);
		return;
	}
	if (!x->has_spec) {
		log_error("Replica cannot start", "id=%s epoch=%llu error=\"no valid spec\"", x->id,
		          (unsigned long long)x->epoch);
		x->has_exit_code = false;
		set_phase(x, AGENT_PHASE_FAILED);
		save(r);
		return;
	}
	if (replica_dir(r, x->id, dir, sizeof dir) != 0) {
		log_error("Replica cannot start", "id=%s error=\"id is not namespace/name/N\"",
		          x->id);
		set_phase(x, AGENT_PHASE_FAILED);
		save(r);
		return;
	}
	char **env = build_env(x, own);
	struct agent_launch l = {
	    .dir = dir, .argv = x->spec.argv, .envp = env, .path = env_value(env, "PATH")};
	struct agent_proc *p;
	int rc = agent_driver_spawn(r->o.driver, &l, on_proc_exit, x, &p, err, sizeof err);
	free(env);
	if (rc != 0) {
		log_warn("Replica start failed", "id=%s epoch=%llu error=\"%s\"", x->id,
		         (unsigned long long)x->epoch, err);
		after_exit(x, true, 127, false);
		return;
	}
	x->proc = p;
	x->pid = agent_proc_pid(p);
	x->start_time = agent_proc_start_time(p);
	x->has_exit_code = false;
	if (strcmp(why, "restart") == 0)
		metrics_counter_add(r->o.metrics, "cloudless_agent_replica_restarts_total", NULL,
		                    1);
	set_phase(x, AGENT_PHASE_RUNNING);
	save(r);
	log_info("Replica started", "id=%s epoch=%llu pid=%d reason=%s restarts=%u", x->id,
	         (unsigned long long)x->epoch, (int)x->pid, why, x->hist.total);
}

/* ---- exits and restarts --------------------------------------------------------------- */

static void after_exit(struct replica *x, bool status_known, int code, bool success)
{
	struct agent_replicas *r = x->r;
	uint64_t delay = 0;
	x->has_exit_code = status_known;
	x->exit_code = status_known ? code : 0;
	enum agent_restart_verdict v =
	    agent_restart_decide(&x->spec.restart, &x->hist, success, clock_wall_ms(), &delay);
	if (!x->has_spec)
		v = AGENT_RESTART_FAILED;
	switch (v) {
	case AGENT_RESTART_AFTER_DELAY:
		if (!x->confirmed) {
			set_phase(x, AGENT_PHASE_PENDING); /* restarted once confirmed */
			break;
		}
		x->restart_at = clock_mono_ms() + delay;
		set_phase(x, AGENT_PHASE_BACKOFF);
		log_info("Replica restart scheduled", "id=%s epoch=%llu delay_ms=%llu restarts=%u",
		         x->id, (unsigned long long)x->epoch, (unsigned long long)delay,
		         x->hist.total);
		break;
	case AGENT_RESTART_DONE:
		set_phase(x, AGENT_PHASE_EXITED);
		break;
	case AGENT_RESTART_FAILED:
		set_phase(x, AGENT_PHASE_FAILED);
		log_warn("Replica failed", "id=%s epoch=%llu policy=%s attempts=%u interval_s=%u",
		         x->id, (unsigned long long)x->epoch,
		         agent_restart_mode_name(x->spec.restart.mode), x->spec.restart.attempts,
		         x->spec.restart.interval_s);
		break;
	}
	save(r);
	schedule_restarts(r);
}

/* stopping_all stays set: a table that stopped everything never starts anything again. */
static void maybe_stop_done(struct agent_replicas *r)
{
	if (!r->stopping_all || r->stop_done == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		if (r->recs[i]->proc != NULL)
			return;
	void (*done)(void *) = r->stop_done;
	r->stop_done = NULL;
	done(r->stop_arg);
}

static void on_proc_exit(struct agent_proc *p, const struct agent_exit *e, void *arg)
{
	struct replica *x = arg;
	struct agent_replicas *r = x->r;
	(void)p;
	x->proc = NULL;
	/* A signal is reported as a shell would: 128 + its number. */
	int code = e->signal != 0 ? 128 + e->signal : e->code;
	char status[32] = "unknown";
	if (e->status_known)
		snprintf(status, sizeof status, "%d", code);
	log_info("Replica exited", "id=%s epoch=%llu pid=%d exit_code=%s signal=%d stopped=%s",
	         x->id, (unsigned long long)x->epoch, (int)x->pid, status, e->signal,
	         e->stopped ? "true" : "false");
	if (e->stopped || x->phase == AGENT_PHASE_STOPPING) {
		x->has_exit_code = e->status_known;
		x->exit_code = e->status_known ? code : 0;
		set_phase(x, AGENT_PHASE_STOPPED);
		save(r);
		maybe_stop_done(r);
		/* The slot is free: a newer epoch waiting for it can start now. */
		if (!r->stopping_all && !r->closing)
			reconcile_last(r);
		return;
	}
	after_exit(x, e->status_known, code, e->status_known && e->signal == 0 && e->code == 0);
}

static void on_restart_timer(uv_timer_t *t)
{
	struct agent_replicas *r = t->data;
	uint64_t now = clock_mono_ms();
	for (size_t i = 0; i < r->n; i++) {
		struct replica *x = r->recs[i];
		if (x->phase == AGENT_PHASE_BACKOFF && x->restart_at <= now)
			start_process(x, "restart");
	}
	schedule_restarts(r);
}

static void schedule_restarts(struct agent_replicas *r)
{
	uint64_t next = UINT64_MAX, now = clock_mono_ms();
	for (size_t i = 0; i < r->n; i++)
		if (r->recs[i]->phase == AGENT_PHASE_BACKOFF && r->recs[i]->restart_at < next)
			next = r->recs[i]->restart_at;
	uv_timer_stop(&r->restart_timer);
	uv_update_time(r->o.loop);
	if (next != UINT64_MAX && !r->stopping_all && !r->closing)
		uv_timer_start(&r->restart_timer, on_restart_timer, next > now ? next - now : 0, 0);
}

/* ---- stopping ------------------------------------------------------------------------- */

static void stop_replica(struct replica *x, const char *why)
{
	switch (x->phase) {
	case AGENT_PHASE_RUNNING:
		log_info("Replica stopping",
		         "id=%s epoch=%llu pid=%d reason=%s kill_timeout_ms=%llu", x->id,
		         (unsigned long long)x->epoch, (int)x->pid, why,
		         (unsigned long long)x->spec.kill_timeout_ms);
		set_phase(x, AGENT_PHASE_STOPPING);
		save(x->r);
		agent_driver_stop(x->proc, x->has_spec ? x->spec.kill_timeout_ms
		                                       : AGENT_SPEC_DEFAULT_KILL_TIMEOUT_MS);
		break;
	case AGENT_PHASE_PENDING:
	case AGENT_PHASE_BACKOFF:
		log_info("Replica stopped", "id=%s epoch=%llu reason=%s (it was not running)",
		         x->id, (unsigned long long)x->epoch, why);
		set_phase(x, AGENT_PHASE_STOPPED);
		save(x->r);
		break;
	default:
		break;
	}
}

/* ---- the fence ------------------------------------------------------------------------ */

void agent_replicas_contact(struct agent_replicas *r, uint64_t contact_ms)
{
	if (contact_ms > r->contact_ms)
		r->contact_ms = contact_ms;
}

void agent_replicas_fence(struct agent_replicas *r)
{
	uint64_t now = clock_mono_ms();
	if (r->stopping_all || r->closing)
		return;
	for (size_t i = 0; i < r->n; i++) {
		struct replica *x = r->recs[i];
		if (!fence_fired(x, now) ||
		    (x->phase != AGENT_PHASE_RUNNING && x->phase != AGENT_PHASE_BACKOFF &&
		     x->phase != AGENT_PHASE_PENDING))
			continue;
		log_warn("Replica fenced: no coordinator answered",
		         "id=%s epoch=%llu disconnected_ms=%llu stop_after_disconnect_s=%llu",
		         x->id, (unsigned long long)x->epoch,
		         (unsigned long long)(now - r->contact_ms),
		         (unsigned long long)x->spec.stop_after_disconnect_s);
		stop_replica(x, "fence");
	}
	schedule_restarts(r);
}

static void on_fence_timer(uv_timer_t *t)
{
	agent_replicas_fence(t->data);
}

/* ---- reconciliation ------------------------------------------------------------------- */

static void copy_answer(struct agent_answer *dst, const struct agent_answer *src)
{
	agent_answer_close(dst);
	dst->items = calloc(src->n + 1, sizeof *dst->items);
	if (dst->items == NULL)
		abort();
	for (size_t i = 0; i < src->n; i++) {
		dst->items[i] = src->items[i];
		dst->items[i].id = xstrdup(src->items[i].id);
		dst->items[i].workload = xstrdup(src->items[i].workload);
		if (dst->items[i].spec != NULL)
			json_incref(dst->items[i].spec);
	}
	dst->n = src->n;
	dst->index = src->index;
}

static void run_reconcile(struct agent_replicas *r, const struct agent_answer *a)
{
	size_t nw = a->n, nh = r->n;
	struct agent_want *wants = calloc(nw + 1, sizeof *wants);
	struct agent_have *haves = calloc(nh + 1, sizeof *haves);
	struct agent_action *acts = calloc(nw + nh + 1, sizeof *acts);
	struct replica **held = calloc(nh + 1, sizeof *held);
	if (wants == NULL || haves == NULL || acts == NULL || held == NULL)
		abort();
	for (size_t i = 0; i < nw; i++)
		wants[i] = (struct agent_want){a->items[i].id, a->items[i].epoch, a->items[i].run};
	for (size_t i = 0; i < nh; i++) {
		struct replica *x = held[i] = r->recs[i];
		haves[i] = (struct agent_have){x->id, x->epoch, x->phase, x->reported};
	}
	size_t n = agent_reconcile(wants, nw, haves, nh, acts);
	for (size_t i = 0; i < n; i++) {
		const struct agent_action *act = &acts[i];
		struct replica *x = act->have != SIZE_MAX ? held[act->have] : NULL;
		const struct agent_assignment *w =
		    act->want != SIZE_MAX ? &a->items[act->want] : NULL;
		switch (act->kind) {
		case AGENT_ACT_KEEP:
			break;
		case AGENT_ACT_STOP:
			stop_replica(x, w != NULL ? "desired-stop" : "not-assigned");
			break;
		case AGENT_ACT_FORGET:
			log_debug("Replica forgotten", "id=%s epoch=%llu", x->id,
			          (unsigned long long)x->epoch);
			rec_remove(r, x);
			save(r);
			break;
		case AGENT_ACT_PEND:
		case AGENT_ACT_START:
			if (x == NULL) {
				x = rec_new(r, w->id, w->workload, w->epoch);
				x->confirmed = true;
				rec_set_spec(x, w->spec);
			}
			if (act->kind == AGENT_ACT_PEND) {
				set_phase(x, AGENT_PHASE_PENDING);
				save(r);
			} else {
				start_process(x,
				              x->phase == AGENT_PHASE_PENDING && x->hist.total > 0
				                  ? "restart"
				                  : "assigned");
			}
			break;
		}
	}
	free(wants);
	free(haves);
	free(acts);
	free(held);
	schedule_restarts(r);
}

static void reconcile_last(struct agent_replicas *r)
{
	if (r->have_last)
		run_reconcile(r, &r->last);
}

void agent_replicas_apply(struct agent_replicas *r, const struct agent_answer *a)
{
	if (r->stopping_all || r->closing)
		return;
	/* The coordinator says the last answer still holds: reconcile against it again, as a
	 * full answer would (a stopped process is dropped, a failed one restarted, on the beat). */
	if (a->unchanged) {
		reconcile_last(r);
		return;
	}
	/* Everything the answer assigns with its epoch is confirmed ours for this run. */
	for (size_t i = 0; i < a->n; i++) {
		struct replica *x = rec_find(r, a->items[i].id, a->items[i].epoch);
		if (x != NULL && a->items[i].run) {
			x->confirmed = true;
			rec_set_spec(x, a->items[i].spec);
		}
	}
	if (&r->last != a) {
		copy_answer(&r->last, a);
		r->have_last = true;
	}
	run_reconcile(r, &r->last);
}

/* ---- loading -------------------------------------------------------------------------- */

static void adopt(struct agent_replicas *r, struct replica *x, const struct agent_state_replica *s)
{
	struct agent_proc *p;
	if (agent_state_adoptable(s) &&
	    agent_driver_adopt(r->o.driver, s->pid, s->start_time, on_proc_exit, x, &p) == 0) {
		x->proc = p;
		log_info("Replica re-adopted", "id=%s epoch=%llu pid=%d phase=%s", x->id,
		         (unsigned long long)x->epoch, (int)x->pid, agent_phase_name(x->phase));
		if (x->phase == AGENT_PHASE_STOPPING)
			agent_driver_stop(p, x->has_spec ? x->spec.kill_timeout_ms
			                                 : AGENT_SPEC_DEFAULT_KILL_TIMEOUT_MS);
		return;
	}
	log_info("Replica process gone after agent restart", "id=%s epoch=%llu pid=%d", x->id,
	         (unsigned long long)x->epoch, (int)x->pid);
	if (x->phase == AGENT_PHASE_STOPPING) {
		set_phase(x, AGENT_PHASE_STOPPED);
		return;
	}
	after_exit(x, false, 0, false);
}

/* A process of ours the state file does not account for (orphans.h). */
static void found_orphan(const struct agent_orphan *o, void *arg)
{
	struct agent_replicas *r = arg;
	for (size_t i = 0; i < r->n; i++)
		if (r->recs[i]->proc != NULL && r->recs[i]->pid == o->pid)
			return; /* known */
	struct replica *x = rec_find(r, o->replica_id, o->epoch);
	if (x != NULL && x->proc != NULL)
		return; /* a second process for a slot we hold: not ours to guess about */
	struct agent_proc *p;
	if (x == NULL)
		x = rec_new(r, o->replica_id, o->workload, o->epoch);
	if (agent_driver_adopt(r->o.driver, o->pid, o->start_time, on_proc_exit, x, &p) != 0)
		return;
	x->proc = p;
	x->pid = o->pid;
	x->start_time = o->start_time;
	set_phase(x, AGENT_PHASE_RUNNING);
	log_warn("Replica process found without a record: re-adopted",
	         "id=%s epoch=%llu pid=%d spec=%s", x->id, (unsigned long long)x->epoch,
	         (int)x->pid, x->has_spec ? "known" : "from the next answer");
}

int agent_replicas_load(struct agent_replicas *r, char *err, size_t errlen)
{
	struct agent_state st;
	int rc = agent_state_load(r->o.data_dir, &st, err, errlen);
	if (st.n > 0 && st.agent_id != NULL && strcmp(st.agent_id, r->o.agent_id) != 0)
		log_warn(
		    "State file belongs to another agent id; its replicas stop unless assigned",
		    "file_agent_id=%s agent_id=%s", st.agent_id, r->o.agent_id);
	for (size_t i = 0; i < st.n; i++) {
		const struct agent_state_replica *s = &st.replicas[i];
		struct replica *x = rec_new(r, s->id, s->workload, s->epoch);
		rec_set_spec(x, s->spec);
		x->phase = s->phase;
		x->pid = s->pid;
		x->start_time = s->start_time;
		x->has_exit_code = s->has_exit_code;
		x->exit_code = s->exit_code;
		for (size_t k = 0; k < s->n_restart_times; k++)
			agent_restart_history_add(&x->hist, s->restart_times[k]);
		x->hist.total = s->restarts > x->hist.n ? s->restarts : (unsigned)x->hist.n;
		x->seq = ++r->seq;
		if (agent_phase_has_process(x->phase))
			adopt(r, x, s);
		else if (x->phase == AGENT_PHASE_BACKOFF)
			set_phase(x, AGENT_PHASE_PENDING); /* restarted once confirmed */
	}
	agent_state_close(&st);
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/replicas", r->o.data_dir);
	agent_orphans_scan(r->o.agent_id, dir, found_orphan, r);
	save(r);
	return rc;
}

/* ---- reports and queries -------------------------------------------------------------- */

size_t agent_replicas_report(struct agent_replicas *r, const struct agent_report **out)
{
	if (r->n > r->reports_cap) {
		free(r->reports);
		r->reports_cap = r->n * 2;
		r->reports = calloc(r->reports_cap, sizeof *r->reports);
		if (r->reports == NULL)
			abort();
	}
	for (size_t i = 0; i < r->n; i++) {
		struct replica *x = r->recs[i];
		x->sent_seq = x->seq;
		r->reports[i] = (struct agent_report){
		    .id = x->id,
		    .epoch = x->epoch,
		    .state = agent_phase_report(x->phase),
		    .has_exit_code = x->has_exit_code && !agent_phase_has_process(x->phase),
		    .exit_code = x->exit_code,
		    .restarts = x->hist.total,
		};
	}
	*out = r->reports;
	return r->n;
}

void agent_replicas_reported(struct agent_replicas *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->recs[i]->sent_seq == r->recs[i]->seq)
			r->recs[i]->reported = true;
}

void agent_replicas_count(const struct agent_replicas *r, unsigned by_phase[AGENT_PHASE_COUNT])
{
	memset(by_phase, 0, AGENT_PHASE_COUNT * sizeof *by_phase);
	for (size_t i = 0; i < r->n; i++)
		by_phase[r->recs[i]->phase]++;
}

size_t agent_replicas_size(const struct agent_replicas *r)
{
	return r->n;
}

json_t *agent_replicas_status(const struct agent_replicas *r)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < r->n; i++) {
		const struct replica *x = r->recs[i];
		bool alive = agent_phase_has_process(x->phase);
		json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:i, s:i, s:b}", "id", x->id,
		                      "workload", x->workload, "epoch", (json_int_t)x->epoch,
		                      "state", agent_phase_report(x->phase), "phase",
		                      agent_phase_name(x->phase), "pid", alive ? (int)x->pid : 0,
		                      "restarts", (int)x->hist.total, "confirmed", x->confirmed);
		json_object_set_new(o, "exit_code",
		                    x->has_exit_code && !alive ? json_integer(x->exit_code)
		                                               : json_null());
		json_array_append_new(arr, o);
	}
	return arr;
}

int agent_replicas_info(const struct agent_replicas *r, const char *id, uint64_t epoch,
                        struct agent_replica_info *out)
{
	const struct replica *x = rec_find(r, id, epoch);
	if (x == NULL)
		return -1;
	*out = (struct agent_replica_info){x->phase,         x->pid,       x->hist.total,
	                                   x->has_exit_code, x->exit_code, x->confirmed};
	return 0;
}

/* ---- lifetime ------------------------------------------------------------------------- */

int agent_replicas_init(struct agent_replicas **out, const struct agent_replicas_options *o)
{
	struct agent_replicas *r = calloc(1, sizeof *r);
	if (r == NULL)
		return -1;
	r->o = *o;
	r->contact_ms = clock_mono_ms(); /* nothing answered yet: count from our start */
	uv_timer_init(o->loop, &r->restart_timer);
	r->restart_timer.data = r;
	uv_timer_init(o->loop, &r->fence_timer);
	r->fence_timer.data = r;
	uv_timer_start(&r->fence_timer, on_fence_timer, AGENT_FENCE_TICK_MS, AGENT_FENCE_TICK_MS);
	*out = r;
	return 0;
}

void agent_replicas_stop_all(struct agent_replicas *r, void (*done)(void *arg), void *arg)
{
	for (size_t i = 0; i < r->n; i++)
		stop_replica(r->recs[i], "agent-shutdown");
	r->stopping_all = true;
	r->stop_done = done;
	r->stop_arg = arg;
	schedule_restarts(r); /* cancels them */
	maybe_stop_done(r);
}

/* Two timers: the table is freed when the second has closed. */
static void on_timer_closed(uv_handle_t *h)
{
	struct agent_replicas *r = h->data;
	if (--r->open_timers == 0)
		free(r);
}

void agent_replicas_close(struct agent_replicas *r)
{
	if (r == NULL)
		return;
	r->closing = true;
	for (size_t i = 0; i < r->n; i++) {
		if (r->recs[i]->proc != NULL)
			agent_driver_release(r->recs[i]->proc);
		rec_free(r->recs[i]);
	}
	free(r->recs);
	free(r->reports);
	agent_answer_close(&r->last);
	uv_timer_stop(&r->restart_timer);
	uv_timer_stop(&r->fence_timer);
	r->open_timers = 2;
	uv_close((uv_handle_t *)&r->restart_timer, on_timer_closed);
	uv_close((uv_handle_t *)&r->fence_timer, on_timer_closed);
}
