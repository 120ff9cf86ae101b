/* orphans: this agent's replicas found through /proc (see orphans.h). */
#include "agent/orphans.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/proc.h"

/* /proc/PID/environ as read (NUL-separated), at most 64 KiB; NULL when unreadable. */
static char *read_environ(pid_t pid, size_t *len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap + 1);
	if (buf == NULL)
		abort();
	ssize_t r;
	while (n < cap && (r = read(fd, buf + n, cap - n)) > 0)
		n += (size_t)r;
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static const char *env_get(const char *env, size_t len, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < len; i += strlen(env + i) + 1)
		if (strncmp(env + i, name, nl) == 0 && env[i + nl] == '=')
			return env + i + nl + 1;
	return NULL;
}

static bool under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Fills o from pid when it is one of ours. */
static bool inspect(pid_t pid, const char *agent_id, const char *dir, struct agent_orphan *o)
{
	struct agent_proc_stat st;
	if (agent_proc_read_stat(pid, &st) != 0 || st.session != pid || st.pgrp != pid ||
	    st.state == 'Z' || st.state == 'X')
		return false;
	char link[64], cwd[PATH_MAX];
	snprintf(link, sizeof link, "/proc/%d/cwd", (int)pid);
	ssize_t n = readlink(link, cwd, sizeof cwd - 1);
	if (n <= 0)
		return false;
	cwd[n] = '\0';
	if (!under(cwd, dir))
		return false;
	size_t len;
	char *env = read_environ(pid, &len);
	if (env == NULL)
		return false;
	const char *agent = env_get(env, len, "CLOUDLESS_AGENT_ID");
	const char *id = env_get(env, len, "CLOUDLESS_REPLICA_ID");
	const char *workload = env_get(env, len, "CLOUDLESS_WORKLOAD");
	const char *epoch = env_get(env, len, "CLOUDLESS_EPOCH");
	char *end = NULL;
	bool ok = agent != NULL && strcmp(agent, agent_id) == 0 && id != NULL && id[0] != '\0' &&
	          workload != NULL && epoch != NULL && strlen(id) < sizeof o->replica_id &&
	          strlen(workload) < sizeof o->workload;
	if (ok) {
		o->epoch = strtoull(epoch, &end, 10);
		ok = end != epoch && *end == '\0';
	}
	if (ok) {
		o->pid = pid;
		o->start_time = st.start_time;
		snprintf(o->replica_id, sizeof o->replica_id, "%s", id);
		snprintf(o->workload, sizeof o->workload, "%s", workload);
	}
	free(env);
	return ok;
}

unsigned agent_orphans_scan(const char *agent_id, const char *replicas_dir,
                            void (*found)(const struct agent_orphan *o, void *arg), void *arg)
{
	char dir[PATH_MAX];
	/* cwd links are absolute and resolved: compare with the resolved directory */
	if (realpath(replicas_dir, dir) == NULL)
		return 0;
	DIR *d = opendir("/proc");
	if (d == NULL)
		return 0;
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		struct agent_orphan o;
		if (*end != '\0' || pid <= 1 || pid == getpid())
			continue;
		if (inspect((pid_t)pid, agent_id, dir, &o)) {
			found(&o, arg);
			n++;
		}
	}
	closedir(d);
	return n;
}
