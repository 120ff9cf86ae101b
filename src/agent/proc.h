/* proc: what /proc says about a process, for telling the same process from a new one.
 *
 * A pid alone does not name a process: after a replica dies its pid may be handed to any
 * later process. The kernel's start time (field 22 of /proc/PID/stat, clock ticks since boot)
 * never changes for a process and differs between two processes that held the same pid, so
 * (pid, start time) is the identity the agent records and re-adopts by (state.c). */
#ifndef CLOUDLESS_AGENT_PROC_H
#define CLOUDLESS_AGENT_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct agent_proc_stat {
	char state;          /* R, S, D, Z, T, ... (field 3) */
	pid_t ppid;          /* field 4 */
	pid_t pgrp;          /* field 5 */
	pid_t session;       /* field 6 */
	uint64_t start_time; /* field 22 */
};

/* Reads /proc/PID/stat. 0 on success; -1 when the process does not exist (or /proc could
 * not be parsed, which errno tells apart: ENOENT/ESRCH for gone, EPROTO for garbage). */
int agent_proc_read_stat(pid_t pid, struct agent_proc_stat *out);
/* Parses the text of a /proc/PID/stat file (exposed for tests: the command name in field 2
 * may hold spaces and parentheses). */
int agent_proc_parse_stat(const char *text, struct agent_proc_stat *out);
/* True when pid is alive (not a zombie) and started at start_time. */
bool agent_proc_same(pid_t pid, uint64_t start_time);
/* True while a process of the group is alive (zombies do not count). */
bool agent_proc_group_alive(pid_t pgid);

#endif
