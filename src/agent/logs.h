/* logs: a replica's stdout and stderr, written to rotating files in its directory.
 *
 * The replica's output goes into two pipes read by a small log-writer process of its own
 * (forked from the agent, in a session of its own): <dir>/stdout.log and <dir>/stderr.log,
 * each rotated when it reaches max_bytes (stdout.log -> stdout.log.1 -> ... ->
 * stdout.log.<max_files-1>, the oldest dropped), so a replica never holds more than
 * max_bytes x max_files per stream. The writer is not the agent because the agent must be
 * able to die and restart under a running replica: a pipe read by the agent itself would
 * break with it (SIGPIPE on the replica's next write), and a file the replica writes directly
 * cannot be rotated without losing or duplicating lines. The writer exits when the replica
 * (and every process that inherited its output) has closed both pipes.
 *
 * Between fork and _exit the writer runs only async-signal-safe system calls (the agent may
 * have other threads: curl's resolver, libuv's pool), with every name computed beforehand. */
#ifndef CLOUDLESS_AGENT_LOGS_H
#define CLOUDLESS_AGENT_LOGS_H

#include <stddef.h>
#include <sys/types.h>

#define AGENT_LOGS_MAX_FILES 100

struct agent_logs_plan {
	int dir_fd;
	size_t max_bytes;
	unsigned max_files;                      /* files per stream, current one included */
	char names[2][AGENT_LOGS_MAX_FILES][24]; /* [stream][generation] */
};

/* Opens dir and fills in the names. -1 with the reason in err. */
int agent_logs_plan_init(struct agent_logs_plan *p, const char *dir, size_t max_bytes,
                         unsigned max_files, char *err, size_t errlen);
void agent_logs_plan_close(struct agent_logs_plan *p);

/* Forks the writer for the read ends out_fd and err_fd (the caller then closes its copies).
 * Returns its pid, or -1 with errno. */
pid_t agent_logs_spawn(const struct agent_logs_plan *p, int out_fd, int err_fd);

/* The writer's loop, exposed for tests: copies both fds into their files until both reach
 * end of file. Returns 0. */
int agent_logs_run(const struct agent_logs_plan *p, int dir_fd, int out_fd, int err_fd);

#endif
