/* driver: replicas as process groups, watched through pidfds (see driver.h).
 *
 * Each watched process is one struct agent_proc with three handles: a uv_poll on its pidfd
 * (absent without pidfds), a kill timer (SIGKILL at the stop deadline) and a group timer
 * (polls, every GROUP_POLL_MS, whether the group has emptied once the main process exited).
 * The log writer of each replica is watched the same way, only to be reaped, so it never
 * stays a zombie of the agent.
 *
 * Spawning forks twice (the log writer, then the replica) and runs only async-signal-safe
 * calls in the children; argv, envp and the program's path are ready before the fork. The
 * replica's child reports a failed chdir or exec through a close-on-exec pipe, so a command
 * that cannot run is an error of agent_driver_spawn, not a mysterious exit 127. */
#include "agent/driver.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/logs.h"
#include "agent/proc.h"
#include "log/log.h"
#include "util/clock.h"
#include "util/errmsg.h"

#define DEFAULT_LOG_MAX_BYTES (10u * 1024 * 1024)
#define DEFAULT_LOG_MAX_FILES 5u
#define DEFAULT_POLL_MS       100u
#define DEFAULT_PATH          "/usr/local/bin:/usr/bin:/bin"
#define GROUP_POLL_MS         20u
/* How long a group may keep members after SIGKILL before the exit is reported anyway:
 * SIGKILLed processes are gone within milliseconds, so what remains are zombies nobody
 * reaps (an init in a container that does not). */
#define GROUP_GRACE_MS 2000u

struct agent_proc {
	struct agent_driver *d;
	struct agent_proc *prev, *next; /* in d->procs while watched */
	bool logger;                    /* a log writer: reaped, never reported */
	bool child;                     /* ours: waitid gives the status */
	pid_t pid;
	uint64_t start_time;
	int pidfd; /* -1 without */
	uv_poll_t poll;
	uv_timer_t kill_timer, group_timer;
	unsigned open_handles;
	bool main_exited, stopping, killed, finished;
	uint64_t killed_at;
	struct agent_exit exit;
	agent_exit_fn cb;
	void *arg;
};

struct agent_driver {
	uv_loop_t *loop;
	struct agent_driver_options o;
	uv_timer_t poll_timer; /* for procs without a pidfd */
	struct agent_proc *procs;
	unsigned n_replicas;
	unsigned n_polled; /* procs watched by the poll timer, which runs only while there are */
	unsigned pending_closes; /* handles being closed, the driver's own included */
	bool closing;
	void (*done)(void *arg);
	void *done_arg;
};

/* ---- lifetime ------------------------------------------------------------------------- */

static void maybe_free_driver(struct agent_driver *d)
{
	if (!d->closing || d->pending_closes > 0 || d->procs != NULL)
		return;
	void (*done)(void *) = d->done;
	void *arg = d->done_arg;
	free(d);
	if (done != NULL)
		done(arg);
}

static void on_proc_handle_closed(uv_handle_t *h)
{
	struct agent_proc *p = h->data;
	struct agent_driver *d = p->d;
	d->pending_closes--;
	if (--p->open_handles == 0) {
		if (p->pidfd >= 0)
			close(p->pidfd);
		free(p);
	}
	maybe_free_driver(d);
}

/* Unlinks p and closes its handles; p is freed once they are closed. */
static void unpoll(struct agent_proc *p);

static void proc_dispose(struct agent_proc *p)
{
	struct agent_driver *d = p->d;
	unpoll(p);
	p->main_exited = true; /* watched no more */
	if (p->prev != NULL)
		p->prev->next = p->next;
	else if (d->procs == p)
		d->procs = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
	if (!p->logger)
		d->n_replicas--;
	if (p->pidfd >= 0) {
		uv_poll_stop(&p->poll);
		d->pending_closes++;
		uv_close((uv_handle_t *)&p->poll, on_proc_handle_closed);
	}
	uv_timer_stop(&p->kill_timer);
	uv_timer_stop(&p->group_timer);
	d->pending_closes += 2;
	uv_close((uv_handle_t *)&p->kill_timer, on_proc_handle_closed);
	uv_close((uv_handle_t *)&p->group_timer, on_proc_handle_closed);
}

/* Reports the exit (once) and disposes of p. */
static void proc_finish(struct agent_proc *p)
{
	if (p->finished)
		return;
	p->finished = true;
	struct agent_exit e = p->exit;
	e.stopped = p->stopping;
	agent_exit_fn cb = p->cb;
	void *arg = p->arg;
	proc_dispose(p);
	if (cb != NULL)
		cb(p, &e, arg);
}

/* ---- exit detection ------------------------------------------------------------------- */

static void on_group_timer(uv_timer_t *t);
static void kill_group(struct agent_proc *p);

/* The main process is gone: wait for the rest of its group, killing it unless a stop is
 * under way (that one keeps its deadline). */
static void unpoll(struct agent_proc *p)
{
	struct agent_driver *d = p->d;
	if (p->pidfd < 0 && !p->main_exited && --d->n_polled == 0)
		uv_timer_stop(&d->poll_timer);
}

static void main_exited(struct agent_proc *p)
{
	unpoll(p);
	p->main_exited = true;
	if (p->pidfd >= 0)
		uv_poll_stop(&p->poll);
	if (p->logger || !agent_proc_group_alive(p->pid)) {
		proc_finish(p);
		return;
	}
	if (!p->stopping && !p->killed)
		kill_group(p);
	uv_timer_start(&p->group_timer, on_group_timer, GROUP_POLL_MS, GROUP_POLL_MS);
}

static void on_group_timer(uv_timer_t *t)
{
	struct agent_proc *p = t->data;
	if (!agent_proc_group_alive(p->pid)) {
		proc_finish(p);
		return;
	}
	if (p->killed && clock_mono_ms() - p->killed_at >= GROUP_GRACE_MS) {
		log_warn("Replica process group still has members after SIGKILL",
		         "pgid=%d grace_ms=%u", (int)p->pid, GROUP_GRACE_MS);
		proc_finish(p);
	}
}

static void record_status(struct agent_proc *p, int code, bool signaled)
{
	p->exit.status_known = true;
	p->exit.code = signaled ? 0 : code;
	p->exit.signal = signaled ? code : 0;
}

/* Checks a child through its pidfd; true when it exited (and is reaped). */
static bool reap_pidfd(struct agent_proc *p)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) != 0) {
		/* ECHILD: somebody else reaped it; it is gone all the same */
		return errno == ECHILD;
	}
	if (si.si_pid == 0)
		return false;
	record_status(p, si.si_status, si.si_code != CLD_EXITED);
	return true;
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
	struct agent_proc *p = h->data;
	(void)events;
	if (p->main_exited)
		return;
	if (status < 0)
		log_warn("Process watch failed", "pid=%d error=%s", (int)p->pid,
		         uv_strerror(status));
	/* For a process that is not our child readable means exited; for a child it means
	 * exited and waiting to be reaped. */
	if (!p->child || reap_pidfd(p))
		main_exited(p);
}

/* The polling fallback, for procs without a pidfd. */
static bool poll_exited(struct agent_proc *p)
{
	if (!p->child)
		return !agent_proc_same(p->pid, p->start_time);
	int st;
	pid_t r = waitpid(p->pid, &st, WNOHANG);
	if (r == 0)
		return false;
	if (r == p->pid)
		record_status(p, WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), !WIFEXITED(st));
	return true; /* reaped now, or ECHILD: gone */
}

static void on_poll_timer(uv_timer_t *t)
{
	struct agent_driver *d = t->data;
	struct agent_proc *p = d->procs;
	while (p != NULL) {
		struct agent_proc *next = p->next; /* main_exited may dispose of p */
		if (p->pidfd < 0 && !p->main_exited && poll_exited(p))
			main_exited(p);
		p = next;
	}
}

/* ---- watching ------------------------------------------------------------------------- */

static struct agent_proc *proc_watch(struct agent_driver *d, pid_t pid, uint64_t start_time,
                                     bool child, bool logger)
{
	struct agent_proc *p = calloc(1, sizeof *p);
	if (p == NULL)
		abort();
	p->d = d;
	p->pid = pid;
	p->start_time = start_time;
	p->child = child;
	p->logger = logger;
	p->pidfd = -1;
	uv_timer_init(d->loop, &p->kill_timer);
	uv_timer_init(d->loop, &p->group_timer);
	p->kill_timer.data = p->group_timer.data = p;
	p->open_handles = 2;
	if (!d->o.no_pidfd) {
		int fd = pidfd_open(pid, 0);
		if (fd >= 0 && uv_poll_init(d->loop, &p->poll, fd) == 0) {
			p->pidfd = fd;
			p->poll.data = p;
			p->open_handles++;
			uv_poll_start(&p->poll, UV_READABLE, on_pidfd);
		} else if (fd >= 0) {
			close(fd);
		}
	}
	if (p->pidfd < 0 && d->n_polled++ == 0)
		uv_timer_start(&d->poll_timer, on_poll_timer, d->o.poll_ms, d->o.poll_ms);
	p->next = d->procs;
	if (d->procs != NULL)
		d->procs->prev = p;
	d->procs = p;
	if (!logger)
		d->n_replicas++;
	return p;
}

int agent_driver_init(struct agent_driver **out, uv_loop_t *loop,
                      const struct agent_driver_options *o)
{
	struct agent_driver *d = calloc(1, sizeof *d);
	if (d == NULL)
		return -1;
	d->loop = loop;
	if (o != NULL)
		d->o = *o;
	if (d->o.log_max_bytes == 0)
		d->o.log_max_bytes = DEFAULT_LOG_MAX_BYTES;
	if (d->o.log_max_files == 0)
		d->o.log_max_files = DEFAULT_LOG_MAX_FILES;
	if (d->o.poll_ms == 0)
		d->o.poll_ms = DEFAULT_POLL_MS;
	uv_timer_init(loop, &d->poll_timer);
	d->poll_timer.data = d;
	*out = d;
	return 0;
}

static void on_driver_timer_closed(uv_handle_t *h)
{
	struct agent_driver *d = h->data;
	d->pending_closes--;
	maybe_free_driver(d);
}

void agent_driver_close(struct agent_driver *d, void (*done)(void *arg), void *arg)
{
	if (d == NULL || d->closing)
		return;
	d->closing = true;
	d->done = done;
	d->done_arg = arg;
	while (d->procs != NULL)
		proc_dispose(d->procs);
	uv_timer_stop(&d->poll_timer);
	d->pending_closes++;
	uv_close((uv_handle_t *)&d->poll_timer, on_driver_timer_closed);
}

/* ---- spawning ------------------------------------------------------------------------- */

static int mkdir_p(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
		return errmsg_set(err, errlen, "path too long: %s", dir);
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(path, 0750) != 0 && errno != EEXIST)
			return errmsg_set(err, errlen, "cannot create %s: %s", path,
			                  strerror(errno));
		*p = saved;
		if (saved == '\0')
			break;
	}
	struct stat sb;
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return errmsg_set(err, errlen, "%s is not a directory", dir);
	return 0;
}

/* The program execve runs: argv[0] itself when it holds a '/', else the first executable
 * regular file of that name in an absolute directory of path. */
static int find_program(const char *name, const char *path, char *out, size_t outlen)
{
	if (strchr(name, '/') != NULL) {
		snprintf(out, outlen, "%s", name);
		return 0;
	}
	const char *p = path != NULL ? path : DEFAULT_PATH;
	while (*p != '\0') {
		size_t n = strcspn(p, ":");
		struct stat sb;
		if (n > 0 && p[0] == '/' &&
		    snprintf(out, outlen, "%.*s/%s", (int)n, p, name) < (int)outlen &&
		    stat(out, &sb) == 0 && S_ISREG(sb.st_mode) && access(out, X_OK) == 0)
			return 0;
		p += n;
		if (*p == ':')
			p++;
	}
	return -1;
}

struct exec_report {
	int stage; /* 1 chdir, 2 exec */
	int error;
};

/* The replica's child, between fork and execve: async-signal-safe calls only. */
static void child_exec(const char *file, const struct agent_launch *l, int in, int out, int errf,
                       int report)
{
	struct exec_report rep = {0, 0};
	setsid();
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* The agent ignores SIGPIPE and the sanitizers catch others: a replica starts with
	 * every disposition at its default. */
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &dfl, NULL);
	int a = fcntl(in, F_DUPFD, 10), b = fcntl(out, F_DUPFD, 10), c = fcntl(errf, F_DUPFD, 10);
	int r = fcntl(report, F_DUPFD_CLOEXEC, 10);
	if (a < 0 || b < 0 || c < 0 || r < 0 || dup2(a, 0) < 0 || dup2(b, 1) < 0 ||
	    dup2(c, 2) < 0 || dup3(r, 3, O_CLOEXEC) < 0)
		_exit(126);
	close_range(4, ~0U, 0);
	if (chdir(l->dir) != 0) {
		rep = (struct exec_report){1, errno};
	} else {
		execve(file, l->argv, l->envp);
		rep = (struct exec_report){2, errno};
	}
	ssize_t w = write(3, &rep, sizeof rep);
	(void)w;
	_exit(127);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Reads what the child reported before exec: 0 when exec succeeded (the pipe closed). */
static int read_report(int fd, struct exec_report *rep)
{
	for (;;) {
		ssize_t n = read(fd, rep, sizeof *rep);
		if (n < 0 && errno == EINTR)
			continue;
		return n == (ssize_t)sizeof *rep ? -1 : 0;
	}
}

int agent_driver_spawn(struct agent_driver *d, const struct agent_launch *l, agent_exit_fn cb,
                       void *arg, struct agent_proc **out, char *err, size_t errlen)
{
	char file[PATH_MAX];
	struct agent_logs_plan plan;
	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1}, null = -1;
	int rc = -1;

	if (l->argv == NULL || l->argv[0] == NULL || l->argv[0][0] == '\0')
		return errmsg_set(err, errlen, "empty command");
	if (find_program(l->argv[0], l->path, file, sizeof file) != 0)
		return errmsg_set(err, errlen, "command not found: %s", l->argv[0]);
	if (mkdir_p(l->dir, err, errlen) != 0)
		return -1;
	if (agent_logs_plan_init(&plan, l->dir, d->o.log_max_bytes, d->o.log_max_files, err,
	                         errlen) != 0)
		return -1;
	if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0 ||
	    pipe2(rep, O_CLOEXEC) != 0 || (null = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		errmsg_set(err, errlen, "cannot create pipes: %s", strerror(errno));
		goto out;
	}
	pid_t logger = agent_logs_spawn(&plan, outp[0], errp[0]);
	if (logger < 0) {
		errmsg_set(err, errlen, "cannot fork the log writer: %s", strerror(errno));
		goto out;
	}
	close_fd(&outp[0]);
	close_fd(&errp[0]);
	struct agent_proc_stat ls;
	proc_watch(d, logger, agent_proc_read_stat(logger, &ls) == 0 ? ls.start_time : 0, true,
	           true);

	pid_t pid = fork();
	if (pid < 0) {
		errmsg_set(err, errlen, "cannot fork: %s", strerror(errno));
		goto out; /* the writer sees EOF once the write ends close below, and exits */
	}
	if (pid == 0)
		child_exec(file, l, null, outp[1], errp[1], rep[1]);
	close_fd(&outp[1]);
	close_fd(&errp[1]);
	close_fd(&rep[1]);
	struct exec_report r;
	if (read_report(rep[0], &r) != 0) {
		waitpid(pid, NULL, 0);
		errmsg_set(err, errlen, "%s %s: %s", r.stage == 1 ? "chdir" : "exec",
		           r.stage == 1 ? l->dir : file, strerror(r.error));
		goto out;
	}
	struct agent_proc_stat st;
	uint64_t start = agent_proc_read_stat(pid, &st) == 0 ? st.start_time : 0;
	struct agent_proc *p = proc_watch(d, pid, start, true, false);
	p->cb = cb;
	p->arg = arg;
	*out = p;
	rc = 0;
out:
	close_fd(&outp[0]);
	close_fd(&outp[1]);
	close_fd(&errp[0]);
	close_fd(&errp[1]);
	close_fd(&rep[0]);
	close_fd(&rep[1]);
	close_fd(&null);
	agent_logs_plan_close(&plan);
	return rc;
}

int agent_driver_adopt(struct agent_driver *d, pid_t pid, uint64_t start_time, agent_exit_fn cb,
                       void *arg, struct agent_proc **out)
{
	if (!agent_proc_same(pid, start_time))
		return -1;
	struct agent_proc *p = proc_watch(d, pid, start_time, false, false);
	/* The pidfd now pins the process; if the pid was reused between the check above and
	 * pidfd_open, the start time tells. */
	if (!agent_proc_same(pid, start_time)) {
		proc_dispose(p);
		return -1;
	}
	p->cb = cb;
	p->arg = arg;
	*out = p;
	return 0;
}

/* ---- stopping ------------------------------------------------------------------------- */

static void kill_group(struct agent_proc *p)
{
	kill(-p->pid, SIGKILL);
	p->killed = true;
	p->killed_at = clock_mono_ms();
}

static void on_kill_timer(uv_timer_t *t)
{
	struct agent_proc *p = t->data;
	log_info("Replica did not stop in time: SIGKILL to its group", "pgid=%d", (int)p->pid);
	kill_group(p);
}

void agent_driver_stop(struct agent_proc *p, uint64_t kill_timeout_ms)
{
	if (p->stopping || p->finished)
		return;
	p->stopping = true;
	if (kill_timeout_ms == 0) {
		kill_group(p);
		return;
	}
	kill(-p->pid, SIGTERM);
	/* The loop's clock is the one of its last iteration; the deadline counts from now. */
	uv_update_time(p->d->loop);
	uv_timer_start(&p->kill_timer, on_kill_timer, kill_timeout_ms, 0);
}

void agent_driver_release(struct agent_proc *p)
{
	if (p->finished)
		return;
	p->finished = true;
	proc_dispose(p);
}

pid_t agent_proc_pid(const struct agent_proc *p)
{
	return p->pid;
}

uint64_t agent_proc_start_time(const struct agent_proc *p)
{
	return p->start_time;
}

bool agent_proc_adopted(const struct agent_proc *p)
{
	return !p->child;
}

unsigned agent_driver_count(const struct agent_driver *d)
{
	return d->n_replicas;
}
