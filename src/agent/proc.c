/* proc: process identity from /proc/PID/stat (see proc.h). */
#include "agent/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The fields after the command name, from field 3 on, are space-separated numbers (and the
 * one-letter state). The name itself is in parentheses and may contain anything, including
 * ") ", so the parser starts after the last ')'. */
int agent_proc_parse_stat(const char *text, struct agent_proc_stat *out)
{
	const char *close = strrchr(text, ')');
	if (close == NULL || close[1] != ' ' || close[2] == '\0') {
		errno = EPROTO;
		return -1;
	}
	const char *p = close + 2;
	memset(out, 0, sizeof *out);
	out->state = *p++;
	/* field 4 is the next one; we need 4, 5, 6 and 22 */
	for (int field = 4; field <= 22; field++) {
		while (*p == ' ')
			p++;
		char *end;
		errno = 0;
		long long v = strtoll(p, &end, 10);
		if (end == p || errno != 0) {
			errno = EPROTO;
			return -1;
		}
		if (field == 4)
			out->ppid = (pid_t)v;
		else if (field == 5)
			out->pgrp = (pid_t)v;
		else if (field == 6)
			out->session = (pid_t)v;
		else if (field == 22) {
			if (v < 0) {
				errno = EPROTO;
				return -1;
			}
			out->start_time = (uint64_t)v;
		}
		p = end;
	}
	return 0;
}

int agent_proc_read_stat(pid_t pid, struct agent_proc_stat *out)
{
	char path[64], text[1024];
	if (pid <= 0) {
		errno = ESRCH;
		return -1;
	}
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, text, sizeof text - 1);
	int e = errno;
	close(fd);
	if (n <= 0) {
		/* a process that exits between open and read gives ESRCH */
		errno = n < 0 ? e : ESRCH;
		return -1;
	}
	text[n] = '\0';
	return agent_proc_parse_stat(text, out);
}

bool agent_proc_same(pid_t pid, uint64_t start_time)
{
	struct agent_proc_stat st;
	if (agent_proc_read_stat(pid, &st) != 0)
		return false;
	return st.state != 'Z' && st.state != 'X' && st.start_time == start_time;
}

/* kill(-pgid, 0) succeeds as long as the group has any member, zombies included, and an init
 * that does not reap (some container runtimes' pid 1) leaves the zombies of a replica's
 * orphaned children in the group for good. So a group that still answers is looked up in
 * /proc: it is alive while one of its members is not a zombie. */
bool agent_proc_group_alive(pid_t pgid)
{
	if (pgid <= 1)
		return false;
	if (kill(-pgid, 0) != 0 && errno == ESRCH)
		return false;
	DIR *dir = opendir("/proc");
	if (dir == NULL)
		return true;
	bool alive = false;
	struct dirent *e;
	while (!alive && (e = readdir(dir)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		struct agent_proc_stat st;
		if (*end != '\0' || pid <= 0 || agent_proc_read_stat((pid_t)pid, &st) != 0)
			continue;
		alive = st.pgrp == pgid && st.state != 'Z' && st.state != 'X';
	}
	closedir(dir);
	return alive;
}
