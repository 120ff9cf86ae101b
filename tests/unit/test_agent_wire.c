/* test_agent_wire: the API documents the agent reads and writes, and ReplicaSpec decoding.
 *
 * Good documents decode to what they say; a table of malformed ones is refused with the
 * field named; the bodies the agent sends have exactly the schema's members. */
#include "agent/spec.h"
#include "agent/wire.h"

#include <string.h>

#include "testlib.h"

static const char *const ANSWER =
    "{\"assignments\":[{\"id\":\"ns/w/0\",\"workload\":\"ns/w\",\"slot\":0,\"agent\":\"a1\","
    "\"epoch\":17,\"desired\":\"run\",\"state\":\"running\",\"restarts\":0,\"exit_code\":null,"
    "\"pending_reason\":\"\",\"version\":17,\"spec\":{\"command\":[\"sleep\",\"30\"],"
    "\"env\":{\"A\":\"1\"},\"image\":\"\",\"resources\":{\"cpu_millicores\":100,"
    "\"memory_bytes\":1024},\"restart\":{\"policy\":\"on-failure\",\"attempts\":2,"
    "\"interval_s\":60,\"delay_ms\":50},\"kill_timeout_ms\":700,\"spec_version\":12}},"
    "{\"id\":\"ns/w/1\",\"workload\":\"ns/w\",\"slot\":1,\"agent\":\"a1\",\"epoch\":9,"
    "\"desired\":\"stop\",\"state\":\"running\",\"restarts\":0,\"exit_code\":null,"
    "\"pending_reason\":\"\",\"version\":9}],"
    "\"index\":21,\"heartbeat_interval_ms\":1000,\"leader\":\"127.0.0.1:8081\","
    "\"coordinators\":[\"127.0.0.1:8081\",\"127.0.0.1:8082\"]}";

static void test_heartbeat_answer(void)
{
	struct agent_answer a;
	char err[256];
	CHECK(agent_wire_decode_heartbeat(ANSWER, strlen(ANSWER), &a, err, sizeof err) == 0);
	CHECK_EQ_INT(a.n, 2);
	CHECK_EQ_INT(a.index, 21);
	CHECK_EQ_INT(a.heartbeat_interval_ms, 1000);
	CHECK_EQ_STR(a.leader, "127.0.0.1:8081");
	CHECK_EQ_INT(a.n_coordinators, 2);
	if (a.n == 2 && a.n_coordinators == 2) {
		CHECK_EQ_STR(a.coordinators[1], "127.0.0.1:8082");
		CHECK_EQ_STR(a.items[0].id, "ns/w/0");
		CHECK_EQ_STR(a.items[0].workload, "ns/w");
		CHECK_EQ_INT(a.items[0].epoch, 17);
		CHECK(a.items[0].run && !a.items[1].run);
		CHECK(a.items[0].spec != NULL && a.items[1].spec == NULL);
		struct agent_spec s;
		CHECK(agent_spec_decode(a.items[0].spec, &s, err, sizeof err) == 0);
		CHECK_EQ_INT(s.argc, 2);
		CHECK_EQ_STR(s.argv[0], "sleep");
		CHECK(s.argv[2] == NULL);
		CHECK_EQ_INT(s.n_env, 1);
		CHECK_EQ_STR(s.env[0], "A=1");
		CHECK(s.restart.mode == AGENT_RESTART_ON_FAILURE && s.restart.attempts == 2 &&
		      s.restart.interval_s == 60 && s.restart.delay_ms == 50);
		CHECK_EQ_INT(s.kill_timeout_ms, 700);
		CHECK_EQ_INT(s.spec_version, 12);
		CHECK_EQ_INT(s.cpu_millicores, 100);
		agent_spec_close(&s);
	}
	agent_answer_close(&a);

	const char *nulls = "{\"assignments\":[],\"index\":0,\"heartbeat_interval_ms\":5,"
	                    "\"leader\":null,\"coordinators\":[]}";
	CHECK(agent_wire_decode_heartbeat(nulls, strlen(nulls), &a, err, sizeof err) == 0);
	CHECK(a.leader == NULL && a.n == 0 && a.n_coordinators == 0);
	CHECK(!a.unchanged);
	agent_answer_close(&a);

	/* The answer to an agent that named the current index: no assignments at all. */
	const char *same = "{\"unchanged\":true,\"index\":21,\"heartbeat_interval_ms\":1000,"
	                   "\"leader\":\"127.0.0.1:8081\",\"coordinators\":[\"127.0.0.1:8081\"]}";
	CHECK(agent_wire_decode_heartbeat(same, strlen(same), &a, err, sizeof err) == 0);
	CHECK(a.unchanged && a.n == 0 && a.index == 21 && a.n_coordinators == 1);
	agent_answer_close(&a);
}

static void test_bad_answers(void)
{
	static const struct {
		const char *body, *field;
	} bad[] = {
	    {"", "JSON object"},
	    {"[]", "JSON object"},
	    {"{\"assignments\":{},\"index\":1,\"heartbeat_interval_ms\":1}", "assignments"},
	    {"{\"assignments\":[],\"heartbeat_interval_ms\":1}", "index"},
	    {"{\"assignments\":[],\"index\":-1,\"heartbeat_interval_ms\":1}", "index"},
	    {"{\"assignments\":[],\"index\":1}", "heartbeat_interval_ms"},
	    {"{\"assignments\":[],\"index\":1,\"heartbeat_interval_ms\":0}",
	     "heartbeat_interval_ms"},
	    {"{\"assignments\":[{\"epoch\":1,\"desired\":\"run\"}],\"index\":1,"
	     "\"heartbeat_interval_ms\":1}",
	     "assignments[0].id"},
	    {"{\"assignments\":[{\"id\":\"a/b/0\",\"epoch\":1,\"desired\":\"go\"}],\"index\":1,"
	     "\"heartbeat_interval_ms\":1}",
	     "assignments[0].desired"},
	    {"{\"assignments\":[{\"id\":\"a/b/0\",\"epoch\":\"1\",\"desired\":\"run\"}],"
	     "\"index\":1,\"heartbeat_interval_ms\":1}",
	     "epoch"},
	    {"{\"assignments\":[],\"index\":1,\"heartbeat_interval_ms\":1,\"leader\":5}", "leader"},
	    {"{\"assignments\":[],\"index\":1,\"heartbeat_interval_ms\":1,\"coordinators\":[1]}",
	     "coordinators[0]"},
	    /* Neither the assignments nor "unchanged": the agent cannot know what to run. */
	    {"{\"index\":1,\"heartbeat_interval_ms\":1}", "assignments"},
	    {"{\"unchanged\":false,\"index\":1,\"heartbeat_interval_ms\":1}", "assignments"},
	    {"{\"unchanged\":1,\"assignments\":[],\"index\":1,\"heartbeat_interval_ms\":1}",
	     "unchanged"},
	    {"{\"unchanged\":true,\"assignments\":[],\"index\":1,\"heartbeat_interval_ms\":1}",
	     "unchanged"},
	    {"{\"unchanged\":true,\"heartbeat_interval_ms\":1}", "index"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct agent_answer a;
		char err[256] = "";
		CHECK(agent_wire_decode_heartbeat(bad[i].body, strlen(bad[i].body), &a, err,
		                                  sizeof err) == -1);
		if (strstr(err, bad[i].field) == NULL)
			fprintf(stderr, "bad[%zu]: %s\n", i, err);
		CHECK(strstr(err, bad[i].field) != NULL);
		CHECK(a.n == 0 && a.items == NULL);
	}
}

static void test_assignments_and_agent(void)
{
	struct agent_answer a;
	char err[256];
	const char *doc = "{\"agent\":\"a1\",\"assignments\":[{\"id\":\"x/y/3\",\"epoch\":4,"
	                  "\"desired\":\"run\"}],\"index\":33}";
	CHECK(agent_wire_decode_assignments(doc, strlen(doc), &a, err, sizeof err) == 0);
	CHECK(a.n == 1 && a.index == 33 && a.heartbeat_interval_ms == 0);
	agent_answer_close(&a);
	const char *noidx = "{\"agent\":\"a1\",\"assignments\":[]}";
	CHECK(agent_wire_decode_assignments(noidx, strlen(noidx), &a, err, sizeof err) == -1);

	unsigned hb = 0;
	const char *agent = "{\"id\":\"a1\",\"heartbeat_interval_ms\":250}";
	CHECK(agent_wire_decode_agent(agent, strlen(agent), &hb, err, sizeof err) == 0);
	CHECK_EQ_INT(hb, 250);
	CHECK(agent_wire_decode_agent("{}", 2, &hb, err, sizeof err) == -1);

	const char *problem = "{\"type\":\"https://cloudless.dev/problems/no-leader\",\"status\":"
	                      "503,\"leader_http_addr\":\"10.0.0.2:8080\"}";
	char *hint = agent_wire_leader_hint(problem, strlen(problem));
	CHECK_EQ_STR(hint, "10.0.0.2:8080");
	free(hint);
	CHECK(agent_wire_leader_hint("{\"status\":503}", 14) == NULL);
	CHECK(agent_wire_leader_hint("garbage", 7) == NULL);
	CHECK(agent_wire_leader_hint(NULL, 0) == NULL);
}

static void test_bad_specs(void)
{
	static const struct {
		const char *json, *field;
	} bad[] = {
	    {"{}", "command"},
	    {"{\"command\":[]}", "command"},
	    {"{\"command\":[\"\"]}", "command[0]"},
	    {"{\"command\":[\"a\", 3]}", "command[1]"},
	    {"{\"command\":\"sleep\"}", "command"},
	    {"{\"command\":[\"a\"],\"env\":[]}", "env"},
	    {"{\"command\":[\"a\"],\"env\":{\"A\":1}}", "env.A"},
	    {"{\"command\":[\"a\"],\"env\":{\"A=B\":\"x\"}}", "env"},
	    {"{\"command\":[\"a\"],\"env\":{\"\":\"x\"}}", "env"},
	    {"{\"command\":[\"a\"],\"restart\":{\"policy\":\"sometimes\"}}", "restart.policy"},
	    {"{\"command\":[\"a\"],\"restart\":{\"attempts\":-1}}", "attempts"},
	    {"{\"command\":[\"a\"],\"restart\":{\"attempts\":1001}}", "attempts"},
	    {"{\"command\":[\"a\"],\"restart\":{\"interval_s\":0}}", "interval_s"},
	    {"{\"command\":[\"a\"],\"restart\":{\"delay_ms\":\"1s\"}}", "delay_ms"},
	    {"{\"command\":[\"a\"],\"kill_timeout_ms\":600001}", "kill_timeout_ms"},
	    {"{\"command\":[\"a\"],\"resources\":5}", "resources"},
	    {"{\"command\":[\"a\"],\"image\":5}", "image"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *j = json_loads(bad[i].json, 0, NULL);
		struct agent_spec s;
		char err[256] = "";
		CHECK(j != NULL && agent_spec_decode(j, &s, err, sizeof err) == -1);
		if (strstr(err, bad[i].field) == NULL)
			fprintf(stderr, "spec[%zu]: %s\n", i, err);
		CHECK(strstr(err, bad[i].field) != NULL);
		CHECK(s.argv == NULL && s.env == NULL);
		json_decref(j);
	}
	/* The schema's defaults fill what is absent. */
	json_t *j = json_loads("{\"command\":[\"a\"]}", 0, NULL);
	struct agent_spec s;
	char err[256];
	CHECK(agent_spec_decode(j, &s, err, sizeof err) == 0);
	CHECK(s.restart.mode == AGENT_RESTART_ALWAYS && s.restart.attempts == 3 &&
	      s.restart.interval_s == 300 && s.restart.delay_ms == 1000);
	CHECK_EQ_INT(s.kill_timeout_ms, 5000);
	CHECK(s.n_env == 0 && s.env != NULL && s.env[0] == NULL);
	agent_spec_close(&s);
	json_decref(j);
}

static void test_bodies(void)
{
	char *keys[] = {"rack", "disk"}, *values[] = {"r1", "ssd"};
	struct agent_enrollment e = {.id = "a1",
	                             .name = "",
	                             .zone = "z1",
	                             .label_keys = keys,
	                             .label_values = values,
	                             .n_labels = 2,
	                             .cpu_millicores = 2000,
	                             .memory_bytes = 4096};
	size_t len;
	char *body = agent_wire_enrollment(&e, &len);
	json_t *j = json_loadb(body, len, 0, NULL);
	CHECK(j != NULL);
	CHECK_EQ_STR(json_string_value(json_object_get(j, "id")), "a1");
	CHECK_EQ_STR(json_string_value(json_object_get(j, "zone")), "z1");
	CHECK(json_object_get(j, "name") == NULL);   /* empty: the coordinator's default */
	CHECK(json_object_get(j, "region") == NULL); /* unset */
	CHECK_EQ_INT(
	    json_integer_value(json_object_get(json_object_get(j, "capacity"), "memory_bytes")),
	    4096);
	CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(j, "labels"), "disk")),
	             "ssd");
	CHECK_EQ_INT(json_object_size(j), 4);
	json_decref(j);
	free(body);

	struct agent_report r[] = {{"ns/w/0", 5, "running", false, 0, 0},
	                           {"ns/w/1", 6, "failed", true, 3, 2}};
	body = agent_wire_heartbeat(r, 2, 0, &len);
	j = json_loadb(body, len, 0, NULL);
	json_t *arr = json_object_get(j, "replicas");
	CHECK(json_array_size(arr) == 2);
	json_t *a = json_array_get(arr, 0), *b = json_array_get(arr, 1);
	CHECK(json_is_null(json_object_get(a, "exit_code")));
	CHECK_EQ_INT(json_integer_value(json_object_get(b, "exit_code")), 3);
	CHECK_EQ_INT(json_integer_value(json_object_get(b, "restarts")), 2);
	CHECK_EQ_STR(json_string_value(json_object_get(b, "state")), "failed");
	CHECK_EQ_INT(json_object_size(a), 5);
	CHECK(json_object_get(j, "index") == NULL); /* none held: omitted */
	json_decref(j);
	free(body);
	body = agent_wire_heartbeat(NULL, 0, 0, &len);
	CHECK_EQ_STR(body, "{\"replicas\":[]}");
	free(body);
	body = agent_wire_heartbeat(NULL, 0, 42, &len);
	CHECK_EQ_STR(body, "{\"replicas\":[],\"index\":42}");
	free(body);
}

/* The early heartbeats' budget: AGENT_EARLY_BURST at once, then one per interval, and idle
 * time never saves up more than the burst. */
static void test_early_budget(void)
{
	struct agent_early e = {0};
	unsigned taken = 0;
	for (int i = 0; i < 10; i++)
		taken += agent_early_take(&e, 5000, 1000);
	CHECK_EQ_INT(taken, AGENT_EARLY_BURST);
	CHECK(!agent_early_take(&e, 5400, 1000));
	CHECK(agent_early_take(&e, 5500, 1000)); /* half an interval later: one more */
	CHECK(!agent_early_take(&e, 5600, 1000));
	taken = 0;
	for (int i = 0; i < 10; i++)
		taken += agent_early_take(&e, 60000, 1000); /* a long quiet spell */
	CHECK_EQ_INT(taken, AGENT_EARLY_BURST);
}

int main(void)
{
	test_early_budget();
	test_heartbeat_answer();
	test_bad_answers();
	test_assignments_and_agent();
	test_bad_specs();
	test_bodies();
	TEST_DONE();
}
