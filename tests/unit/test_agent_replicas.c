/* test_agent_replicas: supervision of real processes from coordinator answers.
 *
 * Answers are built here as the coordinator would send them and applied to a replica table
 * over a real driver; the processes (/bin/sh scripts) are then checked by pid in /proc. The
 * cases: what a replica is started with (directory, environment); the same assignments again
 * restart nothing; a replica no longer assigned is stopped, reported and forgotten; a new
 * epoch replaces the old process only once it is gone; restart policies end `failed` or
 * `exited`; and a table rebuilt from the state file (an agent restart) re-adopts the same
 * processes without restarting any, while one whose process died waits for the coordinator
 * to confirm it before it is started again. */
#include "agent/replicas.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/metrics.h"
#include "agent_testlib.h"
#include "testlib.h"

static uv_loop_t loop;
static struct agent_driver *driver;
static struct metrics *metrics;
static const char *base;
static char *base_env[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "CLOUDLESS_EPOCH=forged", NULL};

/* ---- building answers ----------------------------------------------------------------- */

static json_t *spec(const char *script, const char *policy, int attempts, int delay_ms, int kill_ms)
{
	return json_pack("{s:[s,s,s], s:{s:s}, s:s, s:{s:I, s:I}, s:{s:s, s:i, s:i, s:i}, s:i, "
	                 "s:i}",
	                 "command", "sh", "-c", script, "env", "FOO", "bar", "image", "",
	                 "resources", "cpu_millicores", (json_int_t)100, "memory_bytes",
	                 (json_int_t)1000, "restart", "policy", policy, "attempts", attempts,
	                 "interval_s", 60, "delay_ms", delay_ms, "kill_timeout_ms", kill_ms,
	                 "spec_version", 1);
}

struct item {
	const char *id;
	uint64_t epoch;
	bool run;
	json_t *spec; /* stolen */
};

static struct agent_answer answer(uint64_t index, const struct item *items, size_t n)
{
	struct agent_answer a = {0};
	a.items = calloc(n + 1, sizeof *a.items);
	for (size_t i = 0; i < n; i++) {
		char workload[128];
		snprintf(workload, sizeof workload, "%s", items[i].id);
		*strrchr(workload, '/') = '\0';
		a.items[i] = (struct agent_assignment){strdup(items[i].id), strdup(workload),
		                                       items[i].epoch, items[i].run, items[i].spec};
	}
	a.n = n;
	a.index = index;
	return a;
}

static void apply(struct agent_replicas *r, uint64_t index, const struct item *items, size_t n)
{
	struct agent_answer a = answer(index, items, n);
	agent_replicas_apply(r, &a);
	agent_answer_close(&a);
}

/* ---- tables and conditions ------------------------------------------------------------ */

static struct agent_replicas *table(const char *dir)
{
	struct agent_replicas *r;
	struct agent_replicas_options o = {.loop = &loop,
	                                   .driver = driver,
	                                   .metrics = metrics,
	                                   .data_dir = dir,
	                                   .agent_id = "agent-t",
	                                   .base_env = base_env};
	CHECK(agent_replicas_init(&r, &o) == 0);
	return r;
}

static void close_table(struct agent_replicas *r)
{
	agent_replicas_close(r);
	uv_run(&loop, UV_RUN_NOWAIT);
}

struct want_phase {
	struct agent_replicas *r;
	const char *id;
	uint64_t epoch;
	enum agent_phase phase;
};

static bool has_phase(void *arg)
{
	struct want_phase *w = arg;
	struct agent_replica_info info;
	return agent_replicas_info(w->r, w->id, w->epoch, &info) == 0 && info.phase == w->phase;
}

static bool wait_phase(struct agent_replicas *r, const char *id, uint64_t epoch,
                       enum agent_phase phase, unsigned ms)
{
	struct want_phase w = {r, id, epoch, phase};
	bool ok = run_until(&loop, has_phase, &w, ms);
	if (!ok) {
		struct agent_replica_info info;
		int rc = agent_replicas_info(r, id, epoch, &info);
		fprintf(stderr, "%s@%llu: wanted %s, have %s\n", id, (unsigned long long)epoch,
		        agent_phase_name(phase),
		        rc == 0 ? agent_phase_name(info.phase) : "nothing");
	}
	return ok;
}

struct restarted {
	struct agent_replicas *r;
	const char *id;
	uint64_t epoch;
	pid_t old;
};

static bool is_restarted(void *arg)
{
	struct restarted *w = arg;
	struct agent_replica_info i;
	return agent_replicas_info(w->r, w->id, w->epoch, &i) == 0 &&
	       i.phase == AGENT_PHASE_RUNNING && i.pid != w->old && i.pid > 0;
}

/* Waits until the replica runs again as another process than old; returns its pid or 0. */
static pid_t wait_restarted(struct agent_replicas *r, const char *id, uint64_t epoch, pid_t old)
{
	struct restarted w = {r, id, epoch, old};
	if (!run_until(&loop, is_restarted, &w, 5000))
		return 0;
	struct agent_replica_info i;
	agent_replicas_info(r, id, epoch, &i);
	track_group(i.pid);
	CHECK(proc_wait_exec(i.pid));
	return i.pid;
}

static struct agent_replica_info info_of(struct agent_replicas *r, const char *id, uint64_t epoch)
{
	struct agent_replica_info info = {0};
	CHECK(agent_replicas_info(r, id, epoch, &info) == 0);
	if (info.pid > 0) {
		track_group(info.pid);
		CHECK(proc_wait_exec(info.pid)); /* what it runs with is set in the child */
	}
	return info;
}

static double restarts_metric(void)
{
	return metrics_counter_get(metrics, "cloudless_agent_replica_restarts_total", NULL);
}

static void subdir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", base, name);
	mkdir(out, 0700);
}

/* ---- cases ---------------------------------------------------------------------------- */

/* What a replica runs with, and that the same assignments again touch nothing. */
static void test_start_and_keep(void)
{
	char dir[PATH_MAX], cwd[PATH_MAX], link[64], want_cwd[PATH_MAX + 32];
	subdir(dir, sizeof dir, "keep");
	struct agent_replicas *r = table(dir);
	struct item items[] = {{"ns/web/0", 5, true, spec("exec sleep 30", "always", 3, 10, 1000)},
	                       {"ns/web/1", 5, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(r, 10, items, 2);
	struct agent_replica_info a = info_of(r, "ns/web/0", 5), b = info_of(r, "ns/web/1", 5);
	CHECK(a.phase == AGENT_PHASE_RUNNING && b.phase == AGENT_PHASE_RUNNING);
	CHECK(a.pid > 0 && b.pid > 0 && a.pid != b.pid);
	CHECK(pid_alive(a.pid) && pid_alive(b.pid));
	CHECK(a.confirmed);
	CHECK(proc_has_env(a.pid, "CLOUDLESS_REPLICA_ID=ns/web/0"));
	CHECK(proc_has_env(a.pid, "CLOUDLESS_WORKLOAD=ns/web"));
	CHECK(proc_has_env(a.pid, "CLOUDLESS_AGENT_ID=agent-t"));
	CHECK(proc_has_env(a.pid, "CLOUDLESS_EPOCH=5")); /* the agent's, not the base env's */
	CHECK(!proc_has_env(a.pid, "CLOUDLESS_EPOCH=forged"));
	CHECK(proc_has_env(a.pid, "FOO=bar"));
	CHECK(proc_has_env(a.pid, "PATH=/usr/bin:/bin"));
	CHECK(proc_has_env(b.pid, "CLOUDLESS_REPLICA_ID=ns/web/1"));
	snprintf(link, sizeof link, "/proc/%d/cwd", (int)a.pid);
	ssize_t n = readlink(link, cwd, sizeof cwd - 1);
	cwd[n > 0 ? n : 0] = '\0';
	snprintf(want_cwd, sizeof want_cwd, "%s/replicas/ns/web/0", dir);
	CHECK_EQ_STR(cwd, want_cwd);

	/* The same answer, again and again (heartbeats, a failover, an outage's end). */
	for (int i = 0; i < 3; i++) {
		struct item again[] = {
		    {"ns/web/0", 5, true, spec("exec sleep 30", "always", 3, 10, 1000)},
		    {"ns/web/1", 5, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
		apply(r, 10 + (uint64_t)i, again, 2);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	struct agent_replica_info a2 = info_of(r, "ns/web/0", 5), b2 = info_of(r, "ns/web/1", 5);
	CHECK_EQ_INT(a2.pid, a.pid);
	CHECK_EQ_INT(b2.pid, b.pid);
	CHECK_EQ_INT(a2.restarts, 0);
	CHECK(a2.phase == AGENT_PHASE_RUNNING);

	const struct agent_report *rep;
	size_t nr = agent_replicas_report(r, &rep);
	CHECK_EQ_INT(nr, 2);
	CHECK(nr == 2 && strcmp(rep[0].state, "running") == 0 && rep[0].epoch == 5 &&
	      !rep[0].has_exit_code && rep[0].restarts == 0);
	agent_replicas_reported(r);

	/* Scaled down: ns/web/1 is no longer listed. Stopped, reported, then forgotten. */
	struct item down[] = {{"ns/web/0", 5, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(r, 20, down, 1);
	CHECK(wait_phase(r, "ns/web/1", 5, AGENT_PHASE_STOPPED, 5000));
	CHECK(!pid_alive(b.pid));
	nr = agent_replicas_report(r, &rep);
	CHECK(nr == 2 && strcmp(rep[1].state, "stopped") == 0);
	agent_replicas_reported(r);
	struct item down2[] = {{"ns/web/0", 5, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(r, 20, down2, 1);
	CHECK_EQ_INT(agent_replicas_size(r), 1);
	CHECK_EQ_INT(info_of(r, "ns/web/0", 5).pid, a.pid);

	/* desired: stop */
	struct item stop[] = {{"ns/web/0", 5, false, NULL}};
	apply(r, 21, stop, 1);
	CHECK(wait_phase(r, "ns/web/0", 5, AGENT_PHASE_STOPPED, 5000));
	CHECK(!pid_alive(a.pid));
	close_table(r);
}

/* A new epoch of a slot: the old process is stopped first, the new one waits as pending and
 * starts once the old one is gone; at no moment do both run. */
static void test_new_epoch(void)
{
	char dir[PATH_MAX];
	subdir(dir, sizeof dir, "epoch");
	struct agent_replicas *r = table(dir);
	/* the old one takes ~300 ms to stop after SIGTERM */
	struct item v1[] = {{"ns/app/0", 5, true,
	                     spec("trap 'sleep 0.3; exit 0' TERM; while :; do sleep 0.05; done",
	                          "always", 3, 10, 5000)}};
	apply(r, 10, v1, 1);
	struct agent_replica_info old = info_of(r, "ns/app/0", 5);
	CHECK(old.phase == AGENT_PHASE_RUNNING);
	struct item v2[] = {{"ns/app/0", 9, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(r, 11, v2, 1);
	CHECK(info_of(r, "ns/app/0", 5).phase == AGENT_PHASE_STOPPING);
	CHECK(info_of(r, "ns/app/0", 9).phase == AGENT_PHASE_PENDING);
	CHECK(pid_alive(old.pid));
	/* while the old one stops, the new one stays pending */
	while (pid_alive(old.pid)) {
		CHECK(info_of(r, "ns/app/0", 9).phase == AGENT_PHASE_PENDING);
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	CHECK(wait_phase(r, "ns/app/0", 9, AGENT_PHASE_RUNNING, 5000));
	struct agent_replica_info nw = info_of(r, "ns/app/0", 9);
	CHECK(nw.pid != old.pid && pid_alive(nw.pid));
	CHECK(proc_has_env(nw.pid, "CLOUDLESS_EPOCH=9"));
	CHECK(info_of(r, "ns/app/0", 5).phase == AGENT_PHASE_STOPPED);
	const struct agent_report *rep;
	CHECK_EQ_INT(agent_replicas_report(r, &rep), 2);
	agent_replicas_reported(r);
	apply(r, 11, v2, 0); /* nothing listed now: the new one stops, the old one goes */
	CHECK(wait_phase(r, "ns/app/0", 9, AGENT_PHASE_STOPPED, 5000));
	CHECK(agent_replicas_info(r, "ns/app/0", 5, &(struct agent_replica_info){0}) == -1);
	close_table(r);
}

/* Restart policies, with real crashing commands. */
static void test_policies(void)
{
	char dir[PATH_MAX];
	subdir(dir, sizeof dir, "policies");
	struct agent_replicas *r = table(dir);
	double before = restarts_metric();
	struct item items[] = {
	    {"ns/crash/0", 3, true, spec("exit 1", "always", 2, 20, 1000)},
	    {"ns/done/0", 3, true, spec("exit 0", "on-failure", 3, 20, 1000)},
	    {"ns/once/0", 3, true, spec("exit 2", "never", 3, 20, 1000)},
	    {"ns/bad/0", 3, true, json_pack("{s:[]}", "command")},
	    {"ns/missing/0", 3, true, spec("x", "never", 0, 0, 0)},
	};
	/* a command that does not exist: a failed start, exit 127, through the policy */
	json_array_set_new(json_object_get(items[4].spec, "command"), 0,
	                   json_string("no-such-command-cloudless"));
	apply(r, 10, items, 5);
	CHECK(wait_phase(r, "ns/crash/0", 3, AGENT_PHASE_FAILED, 5000));
	struct agent_replica_info c = info_of(r, "ns/crash/0", 3);
	CHECK_EQ_INT(c.restarts, 2);
	CHECK(c.has_exit_code && c.exit_code == 1);
	CHECK(restarts_metric() - before == 2);
	CHECK(wait_phase(r, "ns/done/0", 3, AGENT_PHASE_EXITED, 5000));
	CHECK_EQ_INT(info_of(r, "ns/done/0", 3).restarts, 0);
	CHECK(wait_phase(r, "ns/once/0", 3, AGENT_PHASE_FAILED, 5000));
	struct agent_replica_info o = info_of(r, "ns/once/0", 3);
	CHECK(o.restarts == 0 && o.has_exit_code && o.exit_code == 2);
	CHECK(info_of(r, "ns/bad/0", 3).phase == AGENT_PHASE_FAILED);
	CHECK(wait_phase(r, "ns/missing/0", 3, AGENT_PHASE_FAILED, 5000));
	CHECK_EQ_INT(info_of(r, "ns/missing/0", 3).exit_code, 127);
	/* failed is reported as such, with its exit code */
	const struct agent_report *rep;
	size_t n = agent_replicas_report(r, &rep);
	for (size_t i = 0; i < n; i++)
		if (strcmp(rep[i].id, "ns/crash/0") == 0)
			CHECK(strcmp(rep[i].state, "failed") == 0 && rep[i].has_exit_code &&
			      rep[i].exit_code == 1 && rep[i].restarts == 2);
	/* a crash in backoff is reported starting, with the code of the last exit */
	struct item slow[] = {{"ns/slow/0", 4, true, spec("exit 5", "always", 5, 3000, 1000)}};
	apply(r, 11, slow, 1);
	CHECK(wait_phase(r, "ns/slow/0", 4, AGENT_PHASE_BACKOFF, 5000));
	n = agent_replicas_report(r, &rep);
	bool seen = false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(rep[i].id, "ns/slow/0") == 0)
			seen = strcmp(rep[i].state, "starting") == 0 && rep[i].has_exit_code &&
			       rep[i].exit_code == 5;
	CHECK(seen);
	close_table(r);
}

/* The agent restarts (its table is rebuilt from the state file): running processes are
 * re-adopted by pid and start time, and none is restarted; the first answer confirms them. */
static void test_readopt(void)
{
	char dir[PATH_MAX];
	subdir(dir, sizeof dir, "readopt");
	struct agent_replicas *a = table(dir);
	struct item items[] = {{"ns/svc/0", 7, true, spec("exec sleep 30", "always", 3, 10, 1000)},
	                       {"ns/svc/1", 7, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(a, 10, items, 2);
	pid_t p0 = info_of(a, "ns/svc/0", 7).pid, p1 = info_of(a, "ns/svc/1", 7).pid;
	close_table(a); /* the agent dies; its processes do not */
	CHECK(pid_alive(p0) && pid_alive(p1));

	double before = restarts_metric();
	struct agent_replicas *b = table(dir);
	char err[256];
	CHECK(agent_replicas_load(b, err, sizeof err) == 0);
	struct agent_replica_info i0 = info_of(b, "ns/svc/0", 7);
	CHECK(i0.phase == AGENT_PHASE_RUNNING && i0.pid == p0 && !i0.confirmed);
	CHECK_EQ_INT(info_of(b, "ns/svc/1", 7).pid, p1);
	/* reported running before any coordinator answered */
	const struct agent_report *rep;
	size_t n = agent_replicas_report(b, &rep);
	CHECK(n == 2 && strcmp(rep[0].state, "running") == 0 &&
	      strcmp(rep[1].state, "running") == 0);
	/* the coordinator still assigns ns/svc/0 only */
	struct item still[] = {{"ns/svc/0", 7, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(b, 12, still, 1);
	CHECK_EQ_INT(info_of(b, "ns/svc/0", 7).pid, p0);
	CHECK(info_of(b, "ns/svc/0", 7).confirmed);
	CHECK(wait_phase(b, "ns/svc/1", 7, AGENT_PHASE_STOPPED, 5000));
	CHECK(!pid_alive(p1));
	CHECK(pid_alive(p0));
	CHECK_EQ_INT(info_of(b, "ns/svc/0", 7).restarts, 0);
	CHECK(restarts_metric() == before);

	/* An adopted process that dies is noticed (not our child: exit status unknown) and,
	 * being confirmed, restarted by its policy. */
	kill(-p0, SIGKILL);
	struct want_phase w = {b, "ns/svc/0", 7, AGENT_PHASE_RUNNING};
	uint64_t deadline = now_ms() + 5000;
	pid_t p0b = 0;
	while (now_ms() < deadline) {
		uv_run(&loop, UV_RUN_NOWAIT);
		struct agent_replica_info i;
		if (has_phase(&w) && agent_replicas_info(b, "ns/svc/0", 7, &i) == 0 &&
		    i.pid != p0) {
			p0b = i.pid;
			break;
		}
		usleep(2000);
	}
	CHECK(p0b > 0 && pid_alive(p0b));
	track_group(p0b);
	struct agent_replica_info after = info_of(b, "ns/svc/0", 7);
	CHECK_EQ_INT(after.restarts, 1);
	CHECK(!after.has_exit_code);
	close_table(b);

	/* The agent dies again, and so does the process while it is away. */
	kill(-p0b, SIGKILL);
	while (pid_alive(p0b))
		usleep(2000);
	struct agent_replicas *c = table(dir);
	CHECK(agent_replicas_load(c, err, sizeof err) == 0);
	struct agent_replica_info ci = info_of(c, "ns/svc/0", 7);
	/* gone, and not restarted before a coordinator confirms it is still ours */
	CHECK(ci.phase == AGENT_PHASE_PENDING);
	for (int i = 0; i < 20; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	CHECK(info_of(c, "ns/svc/0", 7).phase == AGENT_PHASE_PENDING);
	n = agent_replicas_report(c, &rep);
	CHECK(n >= 1 && strcmp(rep[0].state, "pending") == 0);
	struct item again[] = {{"ns/svc/0", 7, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(c, 13, again, 1);
	struct agent_replica_info ri = info_of(c, "ns/svc/0", 7);
	CHECK(ri.phase == AGENT_PHASE_RUNNING && ri.pid != p0b && pid_alive(ri.pid));
	CHECK_EQ_INT(ri.restarts, 2);
	close_table(c);

	/* Moved elsewhere while the agent was away (a machine that came back): the first
	 * answer does not list it, so the re-adopted process is stopped and nothing starts. */
	struct agent_replicas *d = table(dir);
	CHECK(agent_replicas_load(d, err, sizeof err) == 0);
	CHECK_EQ_INT(info_of(d, "ns/svc/0", 7).pid, ri.pid);
	apply(d, 30, NULL, 0);
	CHECK(wait_phase(d, "ns/svc/0", 7, AGENT_PHASE_STOPPED, 5000));
	CHECK(!pid_alive(ri.pid));
	close_table(d);
}

/* A process like a replica: its own session, in a slot directory, with an identity. */
static pid_t spawn_like_replica(const char *cwd, char *const env[])
{
	pid_t pid = fork();
	if (pid == 0) {
		setsid();
		if (chdir(cwd) != 0)
			_exit(126);
		execle("/bin/sleep", "sleep", "30", (char *)NULL, env);
		_exit(127);
	}
	track_group(pid);
	for (int i = 0; i < 2500 && !proc_has_env(pid, env[0]); i++)
		usleep(2000);
	return pid;
}

/* The state file is lost (a wiped data dir): the replicas still running are found by their
 * identity and re-adopted, so the first answer restarts nothing and no slot gets a second
 * process. Processes of another agent id are left alone. */
static void test_orphans(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 32], slot[PATH_MAX + 64];
	subdir(dir, sizeof dir, "orphans");
	struct agent_replicas *a = table(dir);
	struct item items[] = {{"ns/o/0", 4, true, spec("exec sleep 30", "always", 3, 10, 1000)},
	                       {"ns/o/1", 4, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(a, 10, items, 2);
	pid_t p0 = info_of(a, "ns/o/0", 4).pid, p1 = info_of(a, "ns/o/1", 4).pid;
	close_table(a);
	snprintf(path, sizeof path, "%s/state.json", dir);
	CHECK(unlink(path) == 0);
	snprintf(slot, sizeof slot, "%s/replicas/ns/o/1", dir);
	char *other[] = {"CLOUDLESS_AGENT_ID=agent-other", "CLOUDLESS_REPLICA_ID=ns/o/9",
	                 "CLOUDLESS_WORKLOAD=ns/o", "CLOUDLESS_EPOCH=4", NULL};
	pid_t decoy = spawn_like_replica(slot, other);

	struct agent_replicas *b = table(dir);
	char err[256];
	CHECK(agent_replicas_load(b, err, sizeof err) == 0);
	CHECK_EQ_INT(agent_replicas_size(b), 2);
	struct agent_replica_info i0 = info_of(b, "ns/o/0", 4), i1 = info_of(b, "ns/o/1", 4);
	CHECK(i0.phase == AGENT_PHASE_RUNNING && i0.pid == p0 && !i0.confirmed);
	CHECK(i1.phase == AGENT_PHASE_RUNNING && i1.pid == p1);
	CHECK(agent_replicas_info(b, "ns/o/9", 4, &i0) == -1);
	struct item still[] = {{"ns/o/0", 4, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(b, 12, still, 1);
	CHECK_EQ_INT(info_of(b, "ns/o/0", 4).pid, p0);
	CHECK_EQ_INT(info_of(b, "ns/o/0", 4).restarts, 0);
	CHECK(wait_phase(b, "ns/o/1", 4, AGENT_PHASE_STOPPED, 5000));
	CHECK(!pid_alive(p1));
	CHECK(pid_alive(decoy)); /* not ours */
	/* the spec came with the answer: a crash is restarted by its policy */
	kill(-p0, SIGKILL);
	CHECK(wait_restarted(b, "ns/o/0", 4, p0) > 0);
	close_table(b);
	kill(-decoy, SIGKILL);
}

static json_t *fenced_spec(int fence_s)
{
	json_t *s = spec("exec sleep 30", "always", 3, 10, 1000);
	json_object_set_new(s, "stop_after_disconnect_s", json_integer(fence_s));
	return s;
}

/* The fence: a replica with stop_after_disconnect_s stops once no heartbeat was answered for
 * that long, is not started again by answers while the agent stays cut off (a lagging
 * follower's assignments query), and runs again with the same epoch once a heartbeat is
 * answered; a replica without it keeps running throughout. */
static void test_fence(void)
{
	char dir[PATH_MAX];
	subdir(dir, sizeof dir, "fence");
	struct agent_replicas *r = table(dir);
	struct item items[] = {{"ns/x/0", 3, true, fenced_spec(1)},
	                       {"ns/y/0", 3, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(r, 10, items, 2);
	pid_t fx = info_of(r, "ns/x/0", 3).pid, fy = info_of(r, "ns/y/0", 3).pid;
	CHECK(fx > 0 && fy > 0);
	/* Answered heartbeats every 100 ms for 1.5 s: longer than the fence, nothing stops. */
	for (uint64_t until = now_ms() + 1500; now_ms() < until;) {
		agent_replicas_contact(r, now_ms());
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(100 * 1000);
	}
	CHECK(info_of(r, "ns/x/0", 3).phase == AGENT_PHASE_RUNNING);
	CHECK_EQ_INT(info_of(r, "ns/x/0", 3).pid, fx);
	/* Cut off from here. */
	uint64_t contact = now_ms();
	agent_replicas_contact(r, contact);
	CHECK(wait_phase(r, "ns/x/0", 3, AGENT_PHASE_STOPPED, 4000));
	uint64_t fenced_after = now_ms() - contact;
	CHECK(fenced_after >= 1000);
	CHECK(fenced_after < 1000 + 2 * AGENT_FENCE_TICK_MS + 1000); /* + the stop itself */
	CHECK(!pid_alive(fx));
	CHECK(info_of(r, "ns/y/0", 3).phase == AGENT_PHASE_RUNNING);
	CHECK_EQ_INT(info_of(r, "ns/y/0", 3).pid, fy);
	/* An answer while still cut off starts nothing. */
	struct item again[] = {{"ns/x/0", 3, true, fenced_spec(1)},
	                       {"ns/y/0", 3, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(r, 11, again, 2);
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK(!agent_phase_has_process(info_of(r, "ns/x/0", 3).phase));
	/* A heartbeat answered: the next answer that still assigns it starts it again. */
	agent_replicas_contact(r, now_ms());
	struct item back[] = {{"ns/x/0", 3, true, fenced_spec(1)},
	                      {"ns/y/0", 3, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(r, 12, back, 2);
	struct agent_replica_info x2 = info_of(r, "ns/x/0", 3);
	CHECK(x2.phase == AGENT_PHASE_RUNNING && x2.pid > 0 && x2.pid != fx);
	CHECK_EQ_INT(info_of(r, "ns/y/0", 3).pid, fy);
	close_table(r);
}

static bool stop_done;

static void on_stopped(void *arg)
{
	(void)arg;
	stop_done = true;
}

static bool is_stop_done(void *arg)
{
	(void)arg;
	return stop_done;
}

static void test_stop_all(void)
{
	char dir[PATH_MAX];
	subdir(dir, sizeof dir, "stopall");
	struct agent_replicas *r = table(dir);
	struct item items[] = {{"ns/a/0", 1, true, spec("exec sleep 30", "always", 3, 10, 1000)},
	                       {"ns/a/1", 1, true, spec("exec sleep 30", "always", 3, 10, 1000)}};
	apply(r, 10, items, 2);
	pid_t p0 = info_of(r, "ns/a/0", 1).pid, p1 = info_of(r, "ns/a/1", 1).pid;
	agent_replicas_stop_all(r, on_stopped, NULL);
	CHECK(run_until(&loop, is_stop_done, NULL, 5000));
	CHECK(!pid_alive(p0) && !pid_alive(p1));
	close_table(r);
}

int main(void)
{
	base = agent_test_mkdir("replicas");
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&loop);
	CHECK(metrics_init(&metrics) == 0);
	agent_metrics_define(metrics);
	struct agent_driver_options o = {.poll_ms = 20};
	CHECK(agent_driver_init(&driver, &loop, &o) == 0);
	test_start_and_keep();
	test_new_epoch();
	test_policies();
	test_readopt();
	test_orphans();
	test_stop_all();
	test_fence();
	agent_driver_close(driver, NULL, NULL);
	for (int i = 0; i < 10; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	CHECK(uv_loop_close(&loop) == 0);
	metrics_close(metrics);
	TEST_DONE();
}
