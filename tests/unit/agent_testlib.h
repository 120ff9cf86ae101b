/* agent_testlib: what the agent's unit tests share: a scratch directory, the process groups a
 * test created (and kills at the end, nothing else), running the loop until a condition holds
 * with a deadline, and reading what /proc says about a process.
 *
 * Header-only, like testlib.h: each test is one executable. */
#ifndef CLOUDLESS_AGENT_TESTLIB_H
#define CLOUDLESS_AGENT_TESTLIB_H

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "agent/proc.h"

static pid_t agent_test_groups[256];
static size_t agent_test_n_groups;
static char agent_test_dir[256];

/* Remembers a process group this test created (a replica is the leader of its own). */
static inline void track_group(pid_t pgid)
{
	for (size_t i = 0; i < agent_test_n_groups; i++)
		if (agent_test_groups[i] == pgid)
			return;
	if (pgid > 1 && agent_test_n_groups < sizeof agent_test_groups / sizeof *agent_test_groups)
		agent_test_groups[agent_test_n_groups++] = pgid;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Kills the groups this test created and removes its scratch directory. */
static inline void agent_test_cleanup(void)
{
	for (size_t i = 0; i < agent_test_n_groups; i++)
		kill(-agent_test_groups[i], SIGKILL);
	if (agent_test_dir[0] != '\0' && getenv("CLOUDLESS_KEEP") == NULL)
		nftw(agent_test_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline const char *agent_test_mkdir(const char *name)
{
	snprintf(agent_test_dir, sizeof agent_test_dir, "/tmp/cloudless-%s-XXXXXX", name);
	if (mkdtemp(agent_test_dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(agent_test_cleanup);
	return agent_test_dir;
}

static inline uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop until cond(arg) holds or timeout_ms passes; returns cond's last value. */
static inline bool run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, unsigned timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	while (!cond(arg)) {
		if (now_ms() >= deadline)
			return false;
		uv_run(loop, UV_RUN_NOWAIT);
		usleep(2000);
	}
	return true;
}

/* Polls cond (no loop) until it holds or timeout_ms passes. */
static inline bool wait_until(bool (*cond)(void *), void *arg, unsigned timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	while (!cond(arg)) {
		if (now_ms() >= deadline)
			return false;
		usleep(2000);
	}
	return true;
}

static inline bool pid_alive(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	char buf[512];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *close = strrchr(buf, ')');
	return close != NULL && close[1] == ' ' && close[2] != 'Z' && close[2] != 'X';
}

/* A file's whole content (malloc'd, NUL-terminated; NULs inside kept), NULL when missing. */
static inline char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (n == cap)
			buf = realloc(buf, (cap *= 2) + 1);
		ssize_t r = read(fd, buf + n, cap - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

/* True when /proc/PID/environ holds exactly the entry "NAME=value". */
static inline bool proc_has_env(pid_t pid, const char *entry)
{
	char path[64];
	size_t len;
	snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
	char *env = read_file(path, &len);
	bool found = false;
	for (size_t i = 0; env != NULL && i < len; i += strlen(env + i) + 1)
		if (strcmp(env + i, entry) == 0)
			found = true;
	free(env);
	return found;
}

/* Waits (up to 5 s) until pid has run execve: the driver returns from its fork before the
 * child has set up its session, directory and environment, and until it execs,
 * /proc/pid/environ and cwd are still this test's. A child that has not exec'd yet runs this
 * test's own executable. Returns false if it still had not after the deadline. */
static inline bool proc_wait_exec(pid_t pid)
{
	char self[PATH_MAX], link[64], exe[PATH_MAX];
	ssize_t ns = readlink("/proc/self/exe", self, sizeof self - 1);
	if (ns <= 0)
		return false;
	self[ns] = '\0';
	snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
	for (uint64_t deadline = now_ms() + 5000; now_ms() < deadline; usleep(1000)) {
		ssize_t n = readlink(link, exe, sizeof exe - 1);
		if (n <= 0)
			return true; /* gone (or a zombie): nothing left to wait for */
		exe[n] = '\0';
		if (strcmp(exe, self) != 0)
			return true;
	}
	return false;
}

/* Starts `sh -c script` in a session of its own, as an earlier agent would have: the
 * stand-in for a replica that outlived its agent. Returns once the child leads its session,
 * with its start time (proc.h) in *start_time. */
static inline pid_t spawn_session(const char *script, uint64_t *start_time)
{
	pid_t pid = fork();
	if (pid == 0) {
		setsid();
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	track_group(pid);
	struct agent_proc_stat st = {0};
	for (int i = 0; i < 2500; i++) {
		if (agent_proc_read_stat(pid, &st) == 0 && st.session == pid)
			break;
		usleep(2000);
	}
	*start_time = st.start_time;
	return pid;
}

#endif
