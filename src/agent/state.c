/* state: the replica record under --data-dir (see state.h). */
#include "agent/state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/proc.h"
#include "util/errmsg.h"

#define STATE_VERSION 1

static json_t *encode_replica(const struct agent_state_replica *r)
{
	json_t *times = json_array();
	for (size_t i = 0; i < r->n_restart_times; i++)
		json_array_append_new(times, json_integer((json_int_t)r->restart_times[i]));
	json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:i, s:I, s:i, s:o}", "id", r->id, "workload",
	                      r->workload, "epoch", (json_int_t)r->epoch, "phase",
	                      agent_phase_name(r->phase), "pid", (int)r->pid, "start_time",
	                      (json_int_t)r->start_time, "restarts", (int)r->restarts,
	                      "restart_times", times);
	if (o == NULL)
		abort();
	json_object_set_new(o, "exit_code",
	                    r->has_exit_code ? json_integer(r->exit_code) : json_null());
	json_object_set(o, "spec", r->spec != NULL ? r->spec : json_null());
	return o;
}

/* Writes all of buf to fd, through short writes. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int agent_state_save(const char *dir, const struct agent_state *st, char *err, size_t errlen)
{
	json_t *doc = json_pack("{s:i, s:s, s:[]}", "version", STATE_VERSION, "agent_id",
	                        st->agent_id != NULL ? st->agent_id : "", "replicas");
	if (doc == NULL)
		abort();
	json_t *arr = json_object_get(doc, "replicas");
	for (size_t i = 0; i < st->n; i++)
		json_array_append_new(arr, encode_replica(&st->replicas[i]));
	char *text = json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(doc);
	if (text == NULL)
		abort();

	char tmp[4096], path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, AGENT_STATE_FILE);
	snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, AGENT_STATE_FILE);
	int rc = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		errmsg_set(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_all(fd, text, strlen(text)) != 0 || write_all(fd, "\n", 1) != 0 ||
	    fsync(fd) != 0) {
		errmsg_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) != 0) {
		errmsg_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, path) != 0) {
		errmsg_set(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	/* The rename is durable only once the directory entry is. */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		errmsg_set(err, errlen, "cannot sync %s: %s", dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		goto out;
	}
	close(dfd);
	rc = 0;
out:
	free(text);
	return rc;
}

static char *dup_member(json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));
	char *d = strdup(s != NULL ? s : "");
	if (d == NULL)
		abort();
	return d;
}

static int decode_replica(json_t *o, struct agent_state_replica *r, char *err, size_t errlen)
{
	json_int_t epoch, pid, start, restarts;
	const char *id, *workload, *phase;
	json_t *times, *spec, *code;
	json_error_t jerr;
	memset(r, 0, sizeof *r);
	if (json_unpack_ex(o, &jerr, 0, "{s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:o, s:o, s:o}", "id",
	                   &id, "workload", &workload, "epoch", &epoch, "phase", &phase, "pid",
	                   &pid, "start_time", &start, "restarts", &restarts, "restart_times",
	                   &times, "spec", &spec, "exit_code", &code) != 0)
		return errmsg_set(err, errlen, "replica record: %s", jerr.text);
	if (agent_phase_parse(phase, &r->phase) != 0)
		return errmsg_set(err, errlen, "replica %s: unknown phase \"%s\"", id, phase);
	if (epoch < 0 || pid < 0 || start < 0 || restarts < 0 || !json_is_array(times) ||
	    !(json_is_integer(code) || json_is_null(code)))
		return errmsg_set(err, errlen, "replica %s: malformed record", id);
	r->id = dup_member(o, "id");
	r->workload = dup_member(o, "workload");
	r->epoch = (uint64_t)epoch;
	r->pid = (pid_t)pid;
	r->start_time = (uint64_t)start;
	r->restarts = (unsigned)restarts;
	r->has_exit_code = json_is_integer(code);
	r->exit_code = r->has_exit_code ? (int)json_integer_value(code) : 0;
	r->spec = json_is_object(spec) ? json_incref(spec) : NULL;
	r->n_restart_times = json_array_size(times);
	r->restart_times = calloc(r->n_restart_times + 1, sizeof *r->restart_times);
	if (r->restart_times == NULL)
		abort();
	for (size_t i = 0; i < r->n_restart_times; i++)
		r->restart_times[i] = (uint64_t)json_integer_value(json_array_get(times, i));
	return 0;
}

static void free_replica(struct agent_state_replica *r)
{
	free(r->id);
	free(r->workload);
	json_decref(r->spec);
	free(r->restart_times);
	memset(r, 0, sizeof *r);
}

static int decode(json_t *doc, struct agent_state *st, char *err, size_t errlen)
{
	json_int_t version;
	const char *agent_id;
	json_t *arr;
	json_error_t jerr;
	if (json_unpack_ex(doc, &jerr, 0, "{s:I, s:s, s:o}", "version", &version, "agent_id",
	                   &agent_id, "replicas", &arr) != 0)
		return errmsg_set(err, errlen, "%s", jerr.text);
	if (version != STATE_VERSION)
		return errmsg_set(err, errlen, "unknown version %lld", (long long)version);
	if (!json_is_array(arr))
		return errmsg_set(err, errlen, "replicas is not an array");
	st->agent_id = dup_member(doc, "agent_id");
	st->replicas = calloc(json_array_size(arr) + 1, sizeof *st->replicas);
	if (st->replicas == NULL)
		abort();
	for (size_t i = 0; i < json_array_size(arr); i++) {
		if (decode_replica(json_array_get(arr, i), &st->replicas[st->n], err, errlen) != 0)
			return -1;
		st->n++;
	}
	return 0;
}

/* Keeps a file we could not read for whoever investigates, out of the next start's way. */
static void move_aside(const char *path)
{
	char aside[4200];
	snprintf(aside, sizeof aside, "%s.corrupt-%lld", path, (long long)time(NULL));
	rename(path, aside);
}

int agent_state_load(const char *dir, struct agent_state *st, char *err, size_t errlen)
{
	char path[4096], why[256];
	json_error_t jerr;
	memset(st, 0, sizeof *st);
	snprintf(path, sizeof path, "%s/%s", dir, AGENT_STATE_FILE);
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL) {
		struct stat sb;
		if (stat(path, &sb) != 0 && errno == ENOENT)
			return 0;
		errmsg_set(err, errlen, "%s: %s (moved aside)", path, jerr.text);
		move_aside(path);
		return -1;
	}
	int rc = decode(doc, st, why, sizeof why);
	json_decref(doc);
	if (rc != 0) {
		agent_state_close(st);
		errmsg_set(err, errlen, "%s: %s (moved aside)", path, why);
		move_aside(path);
		return -1;
	}
	return 0;
}

void agent_state_close(struct agent_state *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < st->n; i++)
		free_replica(&st->replicas[i]);
	free(st->replicas);
	free(st->agent_id);
	memset(st, 0, sizeof *st);
}

bool agent_state_adoptable(const struct agent_state_replica *r)
{
	struct agent_proc_stat ps;
	if (r->pid <= 1 || agent_proc_read_stat(r->pid, &ps) != 0)
		return false;
	return ps.state != 'Z' && ps.state != 'X' && ps.start_time == r->start_time &&
	       ps.pgrp == r->pid && ps.session == r->pid;
}
