/* logs: the log-writer process of a replica (see logs.h). */
#include "agent/logs.h"
#include "util/errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

int agent_logs_plan_init(struct agent_logs_plan *p, const char *dir, size_t max_bytes,
                         unsigned max_files, char *err, size_t errlen)
{
	static const char *const streams[2] = {"stdout", "stderr"};
	memset(p, 0, sizeof *p);
	p->dir_fd = -1;
	if (max_bytes == 0 || max_files == 0 || max_files > AGENT_LOGS_MAX_FILES)
		return errmsg_set(err, errlen, "log limits out of range (%zu bytes x %u files)",
		                  max_bytes, max_files);
	p->max_bytes = max_bytes;
	p->max_files = max_files;
	for (int s = 0; s < 2; s++)
		for (unsigned g = 0; g < max_files; g++) {
			if (g == 0)
				snprintf(p->names[s][g], sizeof p->names[s][g], "%s.log",
				         streams[s]);
			else
				snprintf(p->names[s][g], sizeof p->names[s][g], "%s.log.%u",
				         streams[s], g);
		}
	/* Kept at or above 3 so that it never lands on a standard stream of a child. */
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errmsg_set(err, errlen, "cannot open %s: %s", dir, strerror(errno));
	p->dir_fd = fd;
	return 0;
}

void agent_logs_plan_close(struct agent_logs_plan *p)
{
	if (p->dir_fd >= 0)
		close(p->dir_fd);
	p->dir_fd = -1;
}

/* ---- the writer (async-signal-safe from here on) ------------------------------------- */

struct stream {
	int in;  /* pipe read end, -1 at EOF */
	int out; /* current file, -1 when it could not be opened */
	size_t size;
};

static int open_current(const struct agent_logs_plan *p, int dir_fd, int s, bool truncate)
{
	int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0);
	return openat(dir_fd, p->names[s][0], flags, 0640);
}

static void rotate(const struct agent_logs_plan *p, int dir_fd, int s, struct stream *st)
{
	if (st->out >= 0)
		close(st->out);
	for (unsigned g = p->max_files - 1; g >= 1; g--)
		renameat(dir_fd, p->names[s][g - 1], dir_fd, p->names[s][g]);
	st->out = open_current(p, dir_fd, s, true);
	st->size = 0;
}

/* Writes data, rotating whenever the current file is full: no file exceeds max_bytes. A
 * failed write (disk full) drops the data: the replica must never block on its output. */
static void put(const struct agent_logs_plan *p, int dir_fd, int s, struct stream *st,
                const char *data, size_t n)
{
	while (n > 0) {
		if (st->size >= p->max_bytes)
			rotate(p, dir_fd, s, st);
		size_t k = p->max_bytes - st->size;
		if (k > n)
			k = n;
		size_t done = 0;
		while (done < k && st->out >= 0) {
			ssize_t w = write(st->out, data + done, k - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			done += (size_t)w;
		}
		st->size += k;
		data += k;
		n -= k;
	}
}

int agent_logs_run(const struct agent_logs_plan *p, int dir_fd, int out_fd, int err_fd)
{
	static char buf[65536];
	struct stream st[2] = {{out_fd, -1, 0}, {err_fd, -1, 0}};
	for (int s = 0; s < 2; s++) {
		struct stat sb;
		st[s].out = open_current(p, dir_fd, s, false);
		if (st[s].out >= 0 && fstat(st[s].out, &sb) == 0)
			st[s].size = (size_t)sb.st_size;
	}
	while (st[0].in >= 0 || st[1].in >= 0) {
		struct pollfd fds[2];
		for (int s = 0; s < 2; s++)
			fds[s] = (struct pollfd){.fd = st[s].in, .events = POLLIN};
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int s = 0; s < 2; s++) {
			if (st[s].in < 0 || fds[s].revents == 0)
				continue;
			ssize_t n = read(st[s].in, buf, sizeof buf);
			if (n > 0) {
				put(p, dir_fd, s, &st[s], buf, (size_t)n);
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(st[s].in);
				st[s].in = -1;
			}
		}
	}
	for (int s = 0; s < 2; s++)
		if (st[s].out >= 0)
			close(st[s].out);
	return 0;
}

pid_t agent_logs_spawn(const struct agent_logs_plan *p, int out_fd, int err_fd)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* A session of its own: no terminal signal reaches it, and the agent's death or a
	 * signal to the replica's group leaves it to drain what the replica wrote last. */
	setsid();
	prctl(PR_SET_NAME, "cloudless-logs"); /* what ps shows instead of the agent's name */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	static const int ignored[] = {SIGHUP, SIGINT, SIGTERM, SIGPIPE, SIGQUIT, SIGUSR1, SIGUSR2};
	struct sigaction ign = {.sa_handler = SIG_IGN};
	for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
		sigaction(ignored[i], &ign, NULL);
	/* Only the two pipes and the directory stay open: the agent's sockets (its metrics
	 * listener above all) must not outlive it in here. Moved high first so that dup2 onto
	 * 3-5 never overwrites one of them. */
	int a = fcntl(out_fd, F_DUPFD, 10), b = fcntl(err_fd, F_DUPFD, 10);
	int c = fcntl(p->dir_fd, F_DUPFD, 10);
	if (a < 0 || b < 0 || c < 0 || dup2(a, 3) < 0 || dup2(b, 4) < 0 || dup2(c, 5) < 0)
		_exit(1);
	close_range(6, ~0U, 0);
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 5)
			close(null);
	}
	_exit(agent_logs_run(p, 5, 3, 4));
}
