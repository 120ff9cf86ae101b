/* driver: the process driver. Starts a replica's command in a session and process group of
 * its own, watches it until it exits, and stops it: SIGTERM to the whole group, SIGKILL to
 * the group once the kill timeout passes.
 *
 * Watching works the same for a process the agent started and for one it re-adopted after a
 * restart (which is not its child, so SIGCHLD and waitpid know nothing of it): each process
 * is watched through a pidfd (pidfd_open, polled by the loop), which becomes readable when the
 * process exits. For its own children the agent then reaps them with waitid(P_PIDFD) and
 * learns the exit status; for adopted ones the status is unknown. Without pidfds (old
 * kernels, or the no_pidfd option the tests use) a timer polls: waitpid for children,
 * /proc start time for adopted processes.
 *
 * A replica is its process group: when its main process exits, whatever it left in the group
 * is killed, and the exit is reported only once the group is empty (a drain completes only
 * when the old processes are really gone). Output goes to rotating files through a log
 * writer (logs.h). Everything runs on the loop thread. */
#ifndef CLOUDLESS_AGENT_DRIVER_H
#define CLOUDLESS_AGENT_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct agent_driver;
struct agent_proc;

struct agent_driver_options {
	size_t log_max_bytes;   /* per file; 0 = 10 MiB */
	unsigned log_max_files; /* per stream, current one included; 0 = 5 */
	bool no_pidfd;          /* watch by polling only */
	unsigned poll_ms;       /* period of that polling; 0 = 100 */
};

struct agent_launch {
	const char *dir;   /* working directory (created if missing); logs go there too */
	char *const *argv; /* argv[0] without '/' is looked up in `path` */
	char *const *envp; /* the whole environment */
	const char *path;  /* PATH for that lookup; NULL = /usr/local/bin:/usr/bin:/bin */
};

struct agent_exit {
	bool status_known; /* false for an adopted process: it was not our child */
	int code;          /* exit status, when it exited */
	int signal;        /* the signal that ended it, 0 when it exited */
	bool stopped;      /* agent_driver_stop had been called */
};

/* Called once, after the process exited and its group is empty (or did not empty within a
 * grace period after SIGKILL: zombies of an init that does not reap). The proc is freed
 * when the callback returns. */
typedef void (*agent_exit_fn)(struct agent_proc *p, const struct agent_exit *e, void *arg);

int agent_driver_init(struct agent_driver **out, uv_loop_t *loop,
                      const struct agent_driver_options *o);
/* Stops watching everything (nothing is killed: replicas outlive the agent) and frees the
 * driver once its handles are closed; `done` (may be NULL) then runs. */
void agent_driver_close(struct agent_driver *d, void (*done)(void *arg), void *arg);

/* Starts a process. Returns 0, or -1 with the reason in err when nothing runs: the command
 * was not found, exec failed, the directory could not be created. */
int agent_driver_spawn(struct agent_driver *d, const struct agent_launch *l, agent_exit_fn cb,
                       void *arg, struct agent_proc **out, char *err, size_t errlen);
/* Watches a process started by an earlier agent. -1 when pid is no longer the process that
 * started at start_time (then it is gone). */
int agent_driver_adopt(struct agent_driver *d, pid_t pid, uint64_t start_time, agent_exit_fn cb,
                       void *arg, struct agent_proc **out);
/* SIGTERM to the group now, SIGKILL after kill_timeout_ms (0: SIGKILL at once). The exit
 * callback follows. Calling it again changes nothing. */
void agent_driver_stop(struct agent_proc *p, uint64_t kill_timeout_ms);
/* Stops watching the process without touching it; no callback. */
void agent_driver_release(struct agent_proc *p);

pid_t agent_proc_pid(const struct agent_proc *p);
uint64_t agent_proc_start_time(const struct agent_proc *p);
bool agent_proc_adopted(const struct agent_proc *p);
/* Replicas watched (log writers not counted). */
unsigned agent_driver_count(const struct agent_driver *d);

#endif
