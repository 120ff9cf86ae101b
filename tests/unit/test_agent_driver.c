/* test_agent_driver: the process driver with real short-lived processes (/bin/sh scripts).
 *
 * Each case starts processes through the driver on a uv loop and checks them from outside,
 * by pid and process group in /proc: their own session and group, working directory,
 * environment, output files; that stop signals the whole group (SIGTERM, then SIGKILL after
 * the kill timeout); that the exit is reported only once the group is empty; exit statuses;
 * commands that cannot run; adoption of a process started elsewhere; the polling fallback
 * without pidfds; log rotation by size x count. Only the groups a case created are killed at
 * the end. */
#include "agent/driver.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/proc.h"
#include "agent_testlib.h"
#include "testlib.h"

static uv_loop_t loop;
static const char *base;

struct outcome {
	bool done;
	struct agent_exit e;
	uint64_t at;
	unsigned calls;
};

static void on_exit_cb(struct agent_proc *p, const struct agent_exit *e, void *arg)
{
	struct outcome *o = arg;
	(void)p;
	o->done = true;
	o->e = *e;
	o->at = now_ms();
	o->calls++;
}

static bool is_done(void *arg)
{
	return ((struct outcome *)arg)->done;
}

static struct agent_driver *new_driver(bool no_pidfd, size_t log_bytes, unsigned log_files)
{
	struct agent_driver *d;
	struct agent_driver_options o = {.log_max_bytes = log_bytes,
	                                 .log_max_files = log_files,
	                                 .no_pidfd = no_pidfd,
	                                 .poll_ms = 20};
	CHECK(agent_driver_init(&d, &loop, &o) == 0);
	return d;
}

static bool closed_flag;

static void on_closed(void *arg)
{
	(void)arg;
	closed_flag = true;
}

static bool is_closed(void *arg)
{
	(void)arg;
	return closed_flag;
}

static void close_driver(struct agent_driver *d)
{
	closed_flag = false;
	agent_driver_close(d, on_closed, NULL);
	CHECK(run_until(&loop, is_closed, NULL, 5000));
}

static int spawn_sh(struct agent_driver *d, const char *dir, const char *script, char **env,
                    struct outcome *o, struct agent_proc **p)
{
	char *argv[] = {"sh", "-c", (char *)script, NULL};
	char *noenv[] = {NULL};
	struct agent_launch l = {.dir = dir, .argv = argv, .envp = env ? env : noenv};
	char err[256];
	int rc = agent_driver_spawn(d, &l, on_exit_cb, o, p, err, sizeof err);
	if (rc == 0) {
		track_group(agent_proc_pid(*p));
		CHECK(proc_wait_exec(agent_proc_pid(*p)));
	} else
		fprintf(stderr, "spawn: %s\n", err);
	return rc;
}

static void subdir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", base, name);
}

static bool file_has(const char *path, const char *text)
{
	char *s = read_file(path, NULL);
	bool ok = s != NULL && strstr(s, text) != NULL;
	free(s);
	return ok;
}

struct file_wait {
	const char *path, *text;
};

static bool file_ready(void *arg)
{
	struct file_wait *w = arg;
	return file_has(w->path, w->text);
}

/* Session, group, working directory, environment and output of a replica. */
static void test_spawn_identity(void)
{
	struct agent_driver *d = new_driver(false, 0, 0);
	char dir[PATH_MAX], path[PATH_MAX + 32], cwd[PATH_MAX], link[64];
	subdir(dir, sizeof dir, "replicas/ns/web/0");
	char *env[] = {"CLOUDLESS_REPLICA_ID=ns/web/0", "GREETING=hello there",
	               "PATH=/usr/bin:/bin", NULL};
	struct outcome o = {0};
	struct agent_proc *p;
	CHECK(spawn_sh(d, dir, "touch here; echo out:$GREETING; echo err >&2; exec sleep 30", env,
	               &o, &p) == 0);
	pid_t pid = agent_proc_pid(p);
	struct agent_proc_stat st;
	CHECK(agent_proc_read_stat(pid, &st) == 0);
	CHECK_EQ_INT(st.pgrp, pid);    /* its own process group */
	CHECK_EQ_INT(st.session, pid); /* and session */
	CHECK_EQ_INT(st.ppid, getpid());
	CHECK_EQ_INT(agent_proc_start_time(p), st.start_time);
	CHECK(!agent_proc_adopted(p));
	CHECK(agent_driver_count(d) == 1);
	snprintf(link, sizeof link, "/proc/%d/cwd", (int)pid);
	ssize_t n = readlink(link, cwd, sizeof cwd - 1);
	CHECK(n > 0);
	cwd[n > 0 ? n : 0] = '\0';
	CHECK_EQ_STR(cwd, dir);
	CHECK(proc_has_env(pid, "GREETING=hello there"));
	CHECK(proc_has_env(pid, "CLOUDLESS_REPLICA_ID=ns/web/0"));
	CHECK(!proc_has_env(pid, "HOME=/root")); /* only what it was given */
	snprintf(path, sizeof path, "%s/stdout.log", dir);
	struct file_wait w = {path, "out:hello there"};
	CHECK(wait_until(file_ready, &w, 5000));
	snprintf(path, sizeof path, "%s/stderr.log", dir);
	struct file_wait w2 = {path, "err"};
	CHECK(wait_until(file_ready, &w2, 5000));
	snprintf(path, sizeof path, "%s/here", dir);
	CHECK(access(path, F_OK) == 0);
	/* Signals start at their defaults even though this process ignores SIGPIPE. */
	char status[PATH_MAX];
	snprintf(status, sizeof status, "/proc/%d/status", (int)pid);
	char *s = read_file(status, NULL);
	CHECK(s != NULL && strstr(s, "SigIgn:\t0000000000000000") != NULL);
	free(s);

	uint64_t t0 = now_ms();
	agent_driver_stop(p, 5000);
	CHECK(run_until(&loop, is_done, &o, 5000));
	CHECK(o.at - t0 < 2000); /* sleep dies of SIGTERM at once */
	CHECK(o.e.stopped);
	CHECK(o.e.status_known);
	CHECK_EQ_INT(o.e.signal, SIGTERM);
	CHECK(!pid_alive(pid));
	CHECK(!agent_proc_group_alive(pid));
	CHECK(agent_driver_count(d) == 0);
	close_driver(d);
}

/* Exit statuses, and the exit callback comes exactly once. */
static void test_exit_status(bool no_pidfd)
{
	struct agent_driver *d = new_driver(no_pidfd, 0, 0);
	char dir[PATH_MAX];
	subdir(dir, sizeof dir, "exit");
	struct outcome a = {0}, b = {0};
	struct agent_proc *pa, *pb;
	CHECK(spawn_sh(d, dir, "exit 3", NULL, &a, &pa) == 0);
	CHECK(spawn_sh(d, dir, "kill -KILL $$", NULL, &b, &pb) == 0);
	CHECK(run_until(&loop, is_done, &a, 5000));
	CHECK(run_until(&loop, is_done, &b, 5000));
	CHECK(a.e.status_known && a.e.code == 3 && a.e.signal == 0 && !a.e.stopped);
	CHECK(b.e.status_known && b.e.signal == SIGKILL);
	/* nothing more arrives */
	for (int i = 0; i < 20; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	CHECK_EQ_INT(a.calls, 1);
	CHECK_EQ_INT(b.calls, 1);
	close_driver(d);
}

struct group_gone {
	pid_t pgid;
};

/* Stop reaches every process of the group, and the exit waits for all of them. A child that
 * ignores SIGTERM keeps the stop going until SIGKILL at the kill timeout. */
static void test_stop_group(void)
{
	struct agent_driver *d = new_driver(false, 0, 0);
	char dir[PATH_MAX], pidfile[PATH_MAX + 16];
	subdir(dir, sizeof dir, "group");
	snprintf(pidfile, sizeof pidfile, "%s/child.pid", dir);
	struct outcome o = {0};
	struct agent_proc *p;
	/* The main process dies of SIGTERM; its background child ignores it. */
	CHECK(
	    spawn_sh(d, dir,
	             "sh -c 'trap \"\" TERM; echo $$ > child.pid; while :; do sleep 0.05; done' & "
	             "exec sleep 30",
	             NULL, &o, &p) == 0);
	pid_t pid = agent_proc_pid(p);
	struct file_wait w = {pidfile, "\n"};
	CHECK(wait_until(file_ready, &w, 5000));
	char *s = read_file(pidfile, NULL);
	pid_t child = s != NULL ? (pid_t)atoi(s) : 0;
	free(s);
	struct agent_proc_stat st;
	CHECK(child > 0 && agent_proc_read_stat(child, &st) == 0 && st.pgrp == pid);

	uint64_t t0 = now_ms();
	agent_driver_stop(p, 600);
	agent_driver_stop(p, 1); /* a second stop changes nothing */
	/* The main process is gone soon, but the exit is not reported while the child lives. */
	for (int i = 0; i < 100 && pid_alive(pid); i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(2000);
	}
	CHECK(!pid_alive(pid));
	CHECK(pid_alive(child));
	CHECK(!o.done);
	CHECK(run_until(&loop, is_done, &o, 5000));
	uint64_t took = o.at - t0;
	CHECK(took >= 600); /* SIGKILL only at the kill timeout */
	CHECK(took < 3000);
	CHECK(o.e.stopped);
	CHECK(!pid_alive(child));
	CHECK(!agent_proc_group_alive(pid));
	close_driver(d);
}

/* kill_timeout 0: SIGKILL at once, even for a process that ignores SIGTERM. */
static void test_stop_immediate(void)
{
	struct agent_driver *d = new_driver(false, 0, 0);
	char dir[PATH_MAX];
	subdir(dir, sizeof dir, "immediate");
	struct outcome o = {0};
	struct agent_proc *p;
	CHECK(spawn_sh(d, dir, "trap '' TERM; while :; do sleep 0.05; done", NULL, &o, &p) == 0);
	uint64_t t0 = now_ms();
	agent_driver_stop(p, 0);
	CHECK(run_until(&loop, is_done, &o, 5000));
	CHECK(o.at - t0 < 1000);
	CHECK(o.e.signal == SIGKILL && o.e.stopped);
	close_driver(d);
}

/* A main process that exits leaving children behind: they are killed with it, and the exit
 * is reported once they are gone (the replica is its group). */
static void test_leftovers_killed(void)
{
	struct agent_driver *d = new_driver(false, 0, 0);
	char dir[PATH_MAX], pidfile[PATH_MAX + 16];
	subdir(dir, sizeof dir, "leftover");
	snprintf(pidfile, sizeof pidfile, "%s/bg.pid", dir);
	struct outcome o = {0};
	struct agent_proc *p;
	CHECK(spawn_sh(d, dir, "sleep 30 & echo $! > bg.pid; exit 4", NULL, &o, &p) == 0);
	CHECK(run_until(&loop, is_done, &o, 5000));
	CHECK(o.e.status_known && o.e.code == 4 && !o.e.stopped);
	char *s = read_file(pidfile, NULL);
	pid_t bg = s != NULL ? (pid_t)atoi(s) : 0;
	free(s);
	CHECK(bg > 0 && !pid_alive(bg));
	close_driver(d);
}

/* Commands that cannot run are errors of spawn: nothing is left running. */
static void test_spawn_errors(void)
{
	struct agent_driver *d = new_driver(false, 0, 0);
	char dir[PATH_MAX], err[256];
	subdir(dir, sizeof dir, "errors");
	struct outcome o = {0};
	struct agent_proc *p = NULL;
	char *missing[] = {"no-such-command-cloudless", NULL};
	char *notexec[] = {"/etc/hostname", NULL};
	char *noenv[] = {NULL};
	struct agent_launch l = {.dir = dir, .argv = missing, .envp = noenv};
	CHECK(agent_driver_spawn(d, &l, on_exit_cb, &o, &p, err, sizeof err) == -1);
	CHECK(strstr(err, "command not found: no-such-command-cloudless") != NULL);
	l.argv = notexec;
	CHECK(agent_driver_spawn(d, &l, on_exit_cb, &o, &p, err, sizeof err) == -1);
	CHECK(strstr(err, "exec /etc/hostname") != NULL);
	char *ok[] = {"true", NULL};
	l.argv = ok;
	l.dir = "/proc/1/no/such/dir";
	CHECK(agent_driver_spawn(d, &l, on_exit_cb, &o, &p, err, sizeof err) == -1);
	CHECK(strstr(err, "cannot create") != NULL);
	CHECK(agent_driver_count(d) == 0);
	/* PATH lookup uses the launch's PATH. */
	l.dir = dir;
	l.path = "/nonexistent";
	CHECK(agent_driver_spawn(d, &l, on_exit_cb, &o, &p, err, sizeof err) == -1);
	l.path = "/nonexistent:/bin:/usr/bin";
	CHECK(agent_driver_spawn(d, &l, on_exit_cb, &o, &p, err, sizeof err) == 0);
	CHECK(run_until(&loop, is_done, &o, 5000));
	CHECK(o.e.status_known && o.e.code == 0);
	close_driver(d);
}

/* A process started by an earlier agent is watched by pid; its status is unknown. */
static void test_adopt(bool no_pidfd)
{
	struct agent_driver *d = new_driver(no_pidfd, 0, 0);
	uint64_t start;
	pid_t pid = spawn_session("exec sleep 30", &start);
	struct outcome o = {0};
	struct agent_proc *p;
	CHECK(agent_driver_adopt(d, pid, start + 1, on_exit_cb, &o, &p) == -1);
	CHECK(agent_driver_adopt(d, pid, start, on_exit_cb, &o, &p) == 0);
	CHECK(agent_proc_adopted(p));
	CHECK_EQ_INT(agent_proc_pid(p), pid);
	/* it dies by someone else's hand; our test process reaps it as its real parent */
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	CHECK(run_until(&loop, is_done, &o, 5000));
	CHECK(!o.e.status_known);
	CHECK(!o.e.stopped);

	/* Stop of an adopted process signals its group just the same. */
	pid_t pid2 = spawn_session("exec sleep 30", &start);
	struct outcome o2 = {0};
	CHECK(agent_driver_adopt(d, pid2, start, on_exit_cb, &o2, &p) == 0);
	agent_driver_stop(p, 2000);
	/* reap it as its parent would; the driver only sees it vanish */
	for (int i = 0; i < 1000 && waitpid(pid2, NULL, WNOHANG) == 0; i++)
		usleep(2000);
	CHECK(run_until(&loop, is_done, &o2, 5000));
	CHECK(o2.e.stopped);
	close_driver(d);
}

/* release() stops watching and leaves the process alone (agent shutdown). */
static void test_release(void)
{
	struct agent_driver *d = new_driver(false, 0, 0);
	char dir[PATH_MAX];
	subdir(dir, sizeof dir, "release");
	struct outcome o = {0};
	struct agent_proc *p;
	CHECK(spawn_sh(d, dir, "exec sleep 30", NULL, &o, &p) == 0);
	pid_t pid = agent_proc_pid(p);
	agent_driver_release(p);
	close_driver(d);
	CHECK(pid_alive(pid));
	CHECK(!o.done);
	kill(-pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static long file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* stdout rotates at the size limit and keeps count-1 old files; nothing exceeds the limit
 * and the newest bytes are in the current file. The writer outlives nothing: it exits once
 * the replica is gone. */
static void test_log_rotation(void)
{
	struct agent_driver *d = new_driver(false, 1000, 3);
	char dir[PATH_MAX], path[PATH_MAX + 32];
	subdir(dir, sizeof dir, "rotate");
	struct outcome o = {0};
	struct agent_proc *p;
	/* 100 lines of 50 bytes = 5000 bytes */
	CHECK(spawn_sh(d, dir,
	               "i=0; while [ $i -lt 100 ]; do printf 'line %03d %039d\\n' $i 0; "
	               "i=$((i+1)); done; echo last-line",
	               NULL, &o, &p) == 0);
	CHECK(run_until(&loop, is_done, &o, 5000));
	snprintf(path, sizeof path, "%s/stdout.log", dir);
	struct file_wait w = {path, "last-line"};
	CHECK(wait_until(file_ready, &w, 5000));
	const char *names[] = {"stdout.log", "stdout.log.1", "stdout.log.2"};
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		long n = file_size(path);
		CHECK(n > 0 && n <= 1000);
	}
	snprintf(path, sizeof path, "%s/stdout.log.3", dir);
	CHECK(access(path, F_OK) != 0);
	snprintf(path, sizeof path, "%s/stdout.log.2", dir);
	CHECK(!file_has(path, "line 000")); /* the oldest were dropped */
	snprintf(path, sizeof path, "%s/stdout.log.1", dir);
	CHECK(file_size(path) == 1000);
	/* The writer sees end of file and is reaped: only the loop's own handles remain. */
	CHECK(agent_driver_count(d) == 0);
	close_driver(d);
}

/* A restarted replica appends to its files; output survives the death of the agent's pipe
 * reader because there is none: the writer is its own process. */
static void test_logs_append(void)
{
	struct agent_driver *d = new_driver(false, 0, 0);
	char dir[PATH_MAX], path[PATH_MAX + 32];
	subdir(dir, sizeof dir, "append");
	for (int i = 0; i < 2; i++) {
		struct outcome o = {0};
		struct agent_proc *p;
		CHECK(spawn_sh(d, dir, i == 0 ? "echo first-run" : "echo second-run", NULL, &o,
		               &p) == 0);
		CHECK(run_until(&loop, is_done, &o, 5000));
	}
	snprintf(path, sizeof path, "%s/stdout.log", dir);
	struct file_wait w = {path, "second-run"};
	CHECK(wait_until(file_ready, &w, 5000));
	CHECK(file_has(path, "first-run\nsecond-run\n"));
	close_driver(d);
}

int main(void)
{
	base = agent_test_mkdir("driver");
	signal(SIGPIPE, SIG_IGN); /* as the agent does */
	uv_loop_init(&loop);
	test_spawn_identity();
	test_exit_status(false);
	test_exit_status(true);
	test_stop_group();
	test_stop_immediate();
	test_leftovers_killed();
	test_spawn_errors();
	test_adopt(false);
	test_adopt(true);
	test_release();
	test_log_rotation();
	test_logs_append();
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK(uv_loop_close(&loop) == 0);
	TEST_DONE();
}
