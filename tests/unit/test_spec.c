/* domain/spec.c: a table of bad workload specs, enrollments and heartbeats, each refused with
 * a message naming the field; good ones come back canonical with their defaults. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/spec.h"
#include "testlib.h"

struct bad {
	const char *body;
	const char *needle; /* the message must contain this */
};

static const struct bad BAD_WORKLOADS[] = {
    {"", "JSON object"},
    {"not json", "malformed JSON"},
    {"[1,2]", "JSON object"},
    {"{\"name\":\"web\"}", "missing command"},
    {"{\"name\":\"web\",\"command\":[]}", "command must be an array of 1 to"},
    {"{\"name\":\"web\",\"command\":\"sleep 1\"}", "command must be an array"},
    {"{\"name\":\"web\",\"command\":[1]}", "command[0]"},
    {"{\"name\":\"web\",\"command\":[\"\"]}", "command[0]"},
    {"{\"command\":[\"x\"]}", "missing name"},
    {"{\"name\":\"Web\",\"command\":[\"x\"]}", "name \"Web\" must be a DNS label"},
    {"{\"name\":\"-web\",\"command\":[\"x\"]}", "DNS label"},
    {"{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"command\":["
     "\"x\"]}",
     "DNS label"},
    {"{\"name\":\"web\",\"namespace\":\"a_b\",\"command\":[\"x\"]}", "namespace \"a_b\""},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"replicas\":1001}",
     "replicas must be an integer from 0 to 1000"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"replicas\":-1}", "replicas must be"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"replicas\":\"3\"}", "replicas must be"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"replicas\":1.5}", "replicas must be"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"replica\":3}", "unknown field \"replica\""},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"env\":[]}", "field \"env\" must be an object"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"env\":{\"1A\":\"v\"}}", "not a variable name"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"env\":{\"A\":1}}", "the value of \"A\""},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"labels\":{\"a b\":\"v\"}}", "field \"labels\": key"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"resources\":{\"cpu\":1}}",
     "resources: unknown field \"cpu\""},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"resources\":{\"cpu_millicores\":-5}}",
     "resources.cpu_millicores"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"resources\":7}",
     "field \"resources\" must be an object"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"placement\":{\"strategy\":\"random\"}}",
     "placement.strategy"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"placement\":{\"zones\":\"z1\"}}", "placement.zones"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"placement\":{\"zones\":[\"\"]}}",
     "placement.zones[0]"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"placement\":{\"node_selector\":{\"k\":2}}}",
     "node_selector"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"placement\":{\"spread\":true}}",
     "placement: unknown field"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"restart\":{\"policy\":\"sometimes\"}}",
     "restart.policy"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"restart\":{\"attempts\":1001}}", "restart.attempts"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"restart\":{\"interval_s\":0}}", "restart.interval_s"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"kill_timeout_ms\":700000}", "kill_timeout_ms"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"image\":5}", "image must be a string"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"stop_after_disconnect_s\":86401}",
     "stop_after_disconnect_s must be an integer from 0 to 86400"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"stop_after_disconnect_s\":-1}",
     "stop_after_disconnect_s"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"stop_after_disconnect_s\":\"5\"}",
     "stop_after_disconnect_s"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"placement\":{\"exclusive\":1}}",
     "placement.exclusive must be true or false"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"placement\":{\"exclusive\":true}}",
     "placement.exclusive needs stop_after_disconnect_s"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"placement\":{\"exclusive\":true},"
     "\"stop_after_disconnect_s\":0}",
     "placement.exclusive needs stop_after_disconnect_s"},
    {"{\"name\":\"web\",\"command\":[\"x\"],\"name\":\"web\"}", "duplicate"},
};

static void test_bad_workloads(void)
{
	char err[256];
	for (size_t i = 0; i < sizeof BAD_WORKLOADS / sizeof BAD_WORKLOADS[0]; i++) {
		const struct bad *b = &BAD_WORKLOADS[i];
		err[0] = '\0';
		json_t *w = spec_workload(b->body, strlen(b->body), NULL, NULL, err, sizeof err);
		CHECK(w == NULL);
		if (strstr(err, b->needle) == NULL) {
			fprintf(stderr, "case %zu: %s\n  error \"%s\" lacks \"%s\"\n", i, b->body,
			        err, b->needle);
			CHECK(0);
		}
		json_decref(w);
	}
	/* The path names the workload: the body may repeat it, never contradict it. */
	const char *body = "{\"name\":\"other\",\"command\":[\"x\"]}";
	CHECK(spec_workload(body, strlen(body), "default", "web", err, sizeof err) == NULL);
	CHECK(strstr(err, "differs from the path") != NULL);
}

static void test_good_workload_defaults(void)
{
	char err[256];
	const char *body = "{\"command\":[\"sleep\",\"100\"]}";
	json_t *w = spec_workload(body, strlen(body), "prod", "web", err, sizeof err);
	CHECK(w != NULL);
	char *s = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK_EQ_STR(
	    s, "{\"command\":[\"sleep\",\"100\"],\"env\":{},\"image\":\"\",\"kill_timeout_ms\":"
	       "5000,\"labels\":{},\"name\":\"web\",\"namespace\":\"prod\",\"placement\":{"
	       "\"exclusive\":false,\"node_selector\":{},\"strategy\":\"spread\",\"zones\":[]},"
	       "\"replicas\":1,\"resources\":{\"cpu_millicores\":0,\"memory_bytes\":0},"
	       "\"restart\":{\"attempts\":3,\"delay_ms\":1000,\"interval_s\":300,\"policy\":"
	       "\"always\"},\"stop_after_disconnect_s\":0}");
	free(s);
	json_decref(w);
	body = "{\"namespace\":\"default\",\"name\":\"db\",\"command\":[\"x\"],\"replicas\":0,"
	       "\"env\":{\"A_1\":\"v\"},\"placement\":{\"zones\":[\"z1\"],\"strategy\":\"binpack\","
	       "\"node_selector\":{\"disk\":\"ssd\"}},\"restart\":{\"policy\":\"never\"}}";
	w = spec_workload(body, strlen(body), NULL, NULL, err, sizeof err);
	CHECK(w != NULL);
	CHECK_EQ_INT(json_integer_value(json_object_get(w, "replicas")), 0);
	CHECK_EQ_STR(
	    json_string_value(json_object_get(json_object_get(w, "placement"), "strategy")),
	    "binpack");
	CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(w, "restart"), "policy")),
	             "never");
	json_decref(w);
	/* At most one copy: the fence and the flag together. */
	body = "{\"name\":\"lock\",\"command\":[\"x\"],\"placement\":{\"exclusive\":true},"
	       "\"stop_after_disconnect_s\":10}";
	w = spec_workload(body, strlen(body), NULL, NULL, err, sizeof err);
	CHECK(w != NULL);
	CHECK(json_is_true(json_object_get(json_object_get(w, "placement"), "exclusive")));
	CHECK_EQ_INT(json_integer_value(json_object_get(w, "stop_after_disconnect_s")), 10);
	json_decref(w);
}

static void test_enrollment(void)
{
	char err[256];
	static const struct bad bad[] = {
	    {"{}", "missing required field \"id\""},
	    {"{\"id\":\"a b\",\"capacity\":{\"cpu_millicores\":1,\"memory_bytes\":1}}",
	     "id must be"},
	    {"{\"id\":\"a1\"}", "missing capacity"},
	    {"{\"id\":\"a1\",\"capacity\":{\"cpu_millicores\":0,\"memory_bytes\":1}}",
	     "capacity.cpu_millicores"},
	    {"{\"id\":\"a1\",\"capacity\":{\"cpu_millicores\":1}}", "missing capacity"},
	    {"{\"id\":\"a1\",\"capacity\":{\"cpu_millicores\":1,\"memory_bytes\":1},\"zone\":7}",
	     "zone"},
	    {"{\"id\":\"a1\",\"capacity\":{\"cpu_millicores\":1,\"memory_bytes\":1},\"extra\":1}",
	     "unknown field \"extra\""},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		json_t *e =
		    spec_enrollment(bad[i].body, strlen(bad[i].body), 1000, err, sizeof err);
		CHECK(e == NULL);
		if (strstr(err, bad[i].needle) == NULL) {
			fprintf(stderr, "enroll case %zu: \"%s\" lacks \"%s\"\n", i, err,
			        bad[i].needle);
			CHECK(0);
		}
	}
	const char *good = "{\"id\":\"agent-1\",\"zone\":\"z1\",\"labels\":{\"disk\":\"ssd\"},"
	                   "\"capacity\":{\"cpu_millicores\":2000,\"memory_bytes\":4096}}";
	json_t *e = spec_enrollment(good, strlen(good), 750, err, sizeof err);
	CHECK(e != NULL);
	CHECK_EQ_STR(json_string_value(json_object_get(e, "name")), "agent-1");
	CHECK_EQ_INT(json_integer_value(json_object_get(e, "heartbeat_interval_ms")), 750);
	json_decref(e);
}

static void test_heartbeat(void)
{
	char err[256];
	static const struct bad bad[] = {
	    {"{}", "replicas must be an array"},
	    {"{\"replicas\":{}}", "replicas must be an array"},
	    {"{\"replicas\":[1]}", "replicas[0] must be an object"},
	    {"{\"replicas\":[{\"id\":\"a/b/0\",\"epoch\":3}]}",
	     "replicas[0].missing required field \"state\""},
	    {"{\"replicas\":[{\"id\":\"a/b/0\",\"epoch\":3,\"state\":\"dancing\"}]}",
	     "replicas[0].state must be one of"},
	    {"{\"replicas\":[{\"id\":\"a/b/0\",\"state\":\"running\"}]}",
	     "replicas[0].epoch is required"},
	    {"{\"replicas\":[{\"id\":\"a/b/0\",\"epoch\":-1,\"state\":\"running\"}]}",
	     "replicas[0].epoch"},
	    {"{\"replicas\":[{\"id\":\"a/b/"
	     "0\",\"epoch\":1,\"state\":\"running\",\"exit_code\":\"0\"}]}",
	     "exit_code must be an integer or null"},
	    {"{\"replicas\":[],\"extra\":1}", "unknown field"},
	    {"{\"replicas\":[],\"index\":-1}", "index must be an integer"},
	    {"{\"replicas\":[],\"index\":\"7\"}", "index must be an integer"},
	    {"{\"replicas\":[],\"index\":1.5}", "index must be an integer"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		uint64_t index = 99;
		json_t *h =
		    spec_heartbeat(bad[i].body, strlen(bad[i].body), &index, err, sizeof err);
		CHECK(h == NULL);
		if (strstr(err, bad[i].needle) == NULL) {
			fprintf(stderr, "heartbeat case %zu: \"%s\" lacks \"%s\"\n", i, err,
			        bad[i].needle);
			CHECK(0);
		}
	}
	const char *good =
	    "{\"replicas\":[{\"id\":\"default/web/0\",\"epoch\":12,\"state\":\"running\","
	    "\"exit_code\":null,\"restarts\":2}]}";
	uint64_t index = 99;
	json_t *h = spec_heartbeat(good, strlen(good), &index, err, sizeof err);
	CHECK(h != NULL && json_array_size(h) == 1);
	CHECK_EQ_INT(index, 0); /* none named */
	json_decref(h);
	const char *held = "{\"replicas\":[],\"index\":1234}";
	h = spec_heartbeat(held, strlen(held), &index, err, sizeof err);
	CHECK(h != NULL && json_array_size(h) == 0);
	CHECK_EQ_INT(index, 1234);
	json_decref(h);
}

static void test_scale_and_selector(void)
{
	char err[256], k[64], v[64];
	unsigned n = 99;
	CHECK_EQ_INT(spec_scale("{\"replicas\":5}", 14, &n, err, sizeof err), 0);
	CHECK_EQ_INT(n, 5);
	CHECK_EQ_INT(spec_scale("{\"replicas\":5000}", 17, &n, err, sizeof err), -1);
	CHECK(strstr(err, "replicas must be") != NULL);
	CHECK_EQ_INT(spec_scale("{}", 2, &n, err, sizeof err), -1);
	CHECK(strstr(err, "missing replicas") != NULL);
	CHECK_EQ_INT(spec_selector("tier=web", k, sizeof k, v, sizeof v), 0);
	CHECK_EQ_STR(k, "tier");
	CHECK_EQ_STR(v, "web");
	CHECK_EQ_INT(spec_selector("=web", k, sizeof k, v, sizeof v), -1);
	CHECK_EQ_INT(spec_selector("tier", k, sizeof k, v, sizeof v), -1);
	CHECK(spec_dns_label("a") && spec_dns_label("web-1") && !spec_dns_label("") &&
	      !spec_dns_label("A") && !spec_dns_label("web-") && !spec_dns_label("a.b"));
	CHECK(spec_agent_id("agent_1.x-2") && !spec_agent_id("a/b") && !spec_agent_id(""));
}

int main(void)
{
	test_bad_workloads();
	test_good_workload_defaults();
	test_enrollment();
	test_heartbeat();
	test_scale_and_selector();
	TEST_DONE();
}
