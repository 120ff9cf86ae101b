/* test_agent_state: the state file and process identity.
 *
 * A round trip keeps every field; a crash between writes never leaves a torn file (the
 * temporary file is renamed over the old one); a corrupt file is moved aside and reported;
 * and re-adoption accepts a process only while it is the same process: same pid, same start
 * time, alive, leader of its own session and group. Real processes, cleaned up by group. */
#include "agent/proc.h"
#include "agent/state.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_testlib.h"
#include "testlib.h"

static void test_parse_stat(void)
{
	struct agent_proc_stat st;
	/* The command name may hold spaces and ") " itself. */
	const char *text = "4242 (we ird) (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 "
	                   "0 987654 1000 10 18446744073709551615\n";
	CHECK(agent_proc_parse_stat(text, &st) == 0);
	CHECK(st.state == 'S');
	CHECK_EQ_INT(st.ppid, 1);
	CHECK_EQ_INT(st.pgrp, 4242);
	CHECK_EQ_INT(st.session, 4242);
	CHECK_EQ_INT(st.start_time, 987654);
	CHECK(agent_proc_parse_stat("4242 (cut", &st) == -1);
	CHECK(agent_proc_parse_stat("4242 (x) S 1 2", &st) == -1);
	CHECK(agent_proc_parse_stat("", &st) == -1);

	/* Our own: alive, and its start time identifies it. */
	CHECK(agent_proc_read_stat(getpid(), &st) == 0);
	CHECK(st.start_time > 0);
	CHECK(agent_proc_same(getpid(), st.start_time));
	CHECK(!agent_proc_same(getpid(), st.start_time + 1));
	CHECK(agent_proc_read_stat(0, &st) == -1);
}

static json_t *spec(void)
{
	return json_pack("{s:[s,s], s:{s:s}, s:I}", "command", "sleep", "30", "env", "A", "b",
	                 "spec_version", (json_int_t)7);
}

static void test_round_trip(const char *dir)
{
	uint64_t times[] = {1000, 2000};
	json_t *sp = spec();
	struct agent_state_replica reps[2] = {
	    {.id = "default/web/0",
	     .workload = "default/web",
	     .epoch = 17,
	     .spec = sp,
	     .phase = AGENT_PHASE_RUNNING,
	     .pid = 1234,
	     .start_time = 99,
	     .restarts = 2,
	     .restart_times = times,
	     .n_restart_times = 2},
	    {.id = "default/web/1",
	     .workload = "default/web",
	     .epoch = 18,
	     .phase = AGENT_PHASE_FAILED,
	     .has_exit_code = true,
	     .exit_code = 3},
	};
	struct agent_state st = {.agent_id = "agent-1", .replicas = reps, .n = 2}, back;
	char err[512];
	CHECK(agent_state_save(dir, &st, err, sizeof err) == 0);
	CHECK(agent_state_load(dir, &back, err, sizeof err) == 0);
	CHECK_EQ_STR(back.agent_id, "agent-1");
	CHECK_EQ_INT(back.n, 2);
	if (back.n == 2) {
		struct agent_state_replica *a = &back.replicas[0], *b = &back.replicas[1];
		CHECK_EQ_STR(a->id, "default/web/0");
		CHECK_EQ_STR(a->workload, "default/web");
		CHECK_EQ_INT(a->epoch, 17);
		CHECK(a->phase == AGENT_PHASE_RUNNING);
		CHECK_EQ_INT(a->pid, 1234);
		CHECK_EQ_INT(a->start_time, 99);
		CHECK_EQ_INT(a->restarts, 2);
		CHECK_EQ_INT(a->n_restart_times, 2);
		CHECK(a->n_restart_times == 2 && a->restart_times[1] == 2000);
		CHECK(!a->has_exit_code);
		CHECK(json_equal(a->spec, sp));
		CHECK(b->phase == AGENT_PHASE_FAILED && b->has_exit_code && b->exit_code == 3);
		CHECK(b->spec == NULL);
	}
	agent_state_close(&back);

	/* No temporary file is left behind, and a leftover one from a crash mid-write does
	 * not count: the file read is always the last complete one. */
	char tmp[512];
	snprintf(tmp, sizeof tmp, "%s/state.json.tmp", dir);
	CHECK(access(tmp, F_OK) != 0);
	FILE *f = fopen(tmp, "w");
	fputs("{\"version\":1, \"agent_id\": \"torn", f);
	fclose(f);
	CHECK(agent_state_load(dir, &back, err, sizeof err) == 0);
	CHECK_EQ_INT(back.n, 2);
	agent_state_close(&back);
	json_decref(sp);
}

static void test_missing_and_corrupt(const char *base)
{
	char dir[512], path[600], err[512];
	struct agent_state st;
	snprintf(dir, sizeof dir, "%s/corrupt", base);
	mkdir(dir, 0700);
	CHECK(agent_state_load(dir, &st, err, sizeof err) == 0); /* missing: empty */
	CHECK_EQ_INT(st.n, 0);
	agent_state_close(&st);

	static const char *const bad[] = {
	    "not json",
	    "{\"version\":2,\"agent_id\":\"a\",\"replicas\":[]}",
	    "{\"version\":1,\"agent_id\":\"a\",\"replicas\":[{\"id\":\"x\"}]}",
	    "{\"version\":1,\"agent_id\":\"a\",\"replicas\":[{\"id\":\"x\",\"workload\":\"w\","
	    "\"epoch\":1,\"phase\":\"dancing\",\"pid\":0,\"start_time\":0,\"restarts\":0,"
	    "\"restart_times\":[],\"spec\":null,\"exit_code\":null}]}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(path, sizeof path, "%s/state.json", dir);
		FILE *f = fopen(path, "w");
		fputs(bad[i], f);
		fclose(f);
		err[0] = '\0';
		CHECK(agent_state_load(dir, &st, err, sizeof err) == -1);
		CHECK(strstr(err, "moved aside") != NULL);
		CHECK_EQ_INT(st.n, 0);
		/* moved aside: the next start does not trip over it again */
		CHECK(access(path, F_OK) != 0);
		CHECK(agent_state_load(dir, &st, err, sizeof err) == 0);
	}
}

static bool gone(void *arg)
{
	return !pid_alive(*(pid_t *)arg);
}

static void test_adoptable(void)
{
	uint64_t start;
	pid_t pid = spawn_session("exec sleep 30", &start);
	struct agent_proc_stat st;
	struct agent_state_replica r = {.pid = pid, .start_time = start};
	CHECK(agent_state_adoptable(&r));
	r.start_time++; /* the pid now names another process */
	CHECK(!agent_state_adoptable(&r));
	r.start_time--;

	/* Alive but not a session leader of its own (a pid reused by something else). */
	struct agent_state_replica me = {.pid = getpid()};
	CHECK(agent_proc_read_stat(getpid(), &st) == 0);
	me.start_time = st.start_time;
	CHECK(agent_proc_same(getpid(), st.start_time));
	CHECK(!agent_state_adoptable(&me) || st.session == getpid());

	kill(-pid, SIGKILL);
	/* A zombie is not alive either. */
	CHECK(wait_until(gone, &pid, 5000));
	CHECK(!agent_state_adoptable(&r));
	waitpid(pid, NULL, 0);
	CHECK(!agent_state_adoptable(&r));
	CHECK(!agent_proc_group_alive(pid));
}

int main(void)
{
	const char *dir = agent_test_mkdir("state");
	test_parse_stat();
	test_round_trip(dir);
	test_missing_and_corrupt(dir);
	test_adoptable();
	TEST_DONE();
}
