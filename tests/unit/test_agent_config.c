/* test_agent_config: the agent's flags and CLOUDLESS_* variables.
 *
 * Defaults (the machine's capacity, the host name, ./agent-data), flag over variable over
 * default, lists that append, and a table of bad values, each refused with one line naming
 * the flag (and the variable when the value came from it). --help lists every flag with its
 * variable. */
#include "agent/config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

static enum agent_config_result parse(struct agent_config *c, char *const *argv, char *const *env,
                                      char *err, size_t errlen)
{
	int argc = 0;
	while (argv[argc] != NULL)
		argc++;
	static char *const noenv[] = {NULL};
	return agent_config_parse(c, argc, argv, env != NULL ? env : noenv, err, errlen);
}

static void test_defaults(void)
{
	struct agent_config c;
	char err[512];
	char *argv[] = {"cloudless-agent", NULL};
	CHECK(parse(&c, argv, NULL, err, sizeof err) == AGENT_CONFIG_OK);
	CHECK_EQ_INT(c.coordinators.n, 1);
	CHECK_EQ_STR(c.coordinators.items[0], "127.0.0.1:8080");
	CHECK_EQ_STR(c.data_dir, "./agent-data");
	CHECK_EQ_STR(c.log_level, "info");
	CHECK_EQ_INT(c.heartbeat_ms, 0);
	CHECK(c.metrics_addr == NULL && c.name == NULL && c.zone == NULL && c.n_labels == 0);
	CHECK_EQ_INT(c.cpu_millicores, 1000 * sysconf(_SC_NPROCESSORS_ONLN));
	CHECK_EQ_INT(c.memory_bytes, agent_config_machine_memory());
	CHECK(c.memory_bytes > 1024 * 1024);
	CHECK_EQ_INT(c.replica_log_max_bytes, 10 * 1024 * 1024);
	CHECK_EQ_INT(c.replica_log_max_files, 5);
	CHECK_EQ_INT(c.assignments_wait_s, 30);
	CHECK(!c.stop_replicas_on_exit);
	/* the host name, as an id */
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	host[strcspn(host, ".")] = '\0';
	CHECK(c.node_id != NULL && strncmp(c.node_id, host, 64) == 0);
	agent_config_close(&c);
}

static void test_flags_and_env(void)
{
	struct agent_config c;
	char err[512];
	char *argv[] = {"cloudless-agent",
	                "--coordinators",
	                "10.0.0.1:8080, 10.0.0.2:8080",
	                "--coordinators=[::1]:8081",
	                "--node-id=worker-1",
	                "--zone",
	                "z1",
	                "--labels",
	                "disk=ssd,rack=r1",
	                "--labels",
	                "gpu=",
	                "--cpu-millicores",
	                "1500",
	                "--memory-bytes",
	                "2g",
	                "--heartbeat-ms",
	                "250",
	                "--stop-replicas-on-exit",
	                "--log-level",
	                "DEBUG",
	                NULL};
	char *env[] = {"CLOUDLESS_NODE_ID=from-env",
	               "CLOUDLESS_REGION=eu",
	               "CLOUDLESS_ZONE=ignored",
	               "CLOUDLESS_METRICS_ADDR=",
	               "CLOUDLESS_NODE_NAME=Worker One",
	               "CLOUDLESS_DATA_DIR=/var/lib/x",
	               NULL};
	CHECK(parse(&c, argv, env, err, sizeof err) == AGENT_CONFIG_OK);
	CHECK_EQ_INT(c.coordinators.n, 3);
	CHECK_EQ_STR(c.coordinators.items[1], "10.0.0.2:8080");
	CHECK_EQ_STR(c.coordinators.items[2], "[::1]:8081");
	CHECK_EQ_STR(c.node_id, "worker-1"); /* the flag wins */
	CHECK_EQ_STR(c.zone, "z1");
	CHECK_EQ_STR(c.region, "eu"); /* the variable, no flag */
	CHECK_EQ_STR(c.name, "Worker One");
	CHECK_EQ_STR(c.data_dir, "/var/lib/x");
	CHECK(c.metrics_addr == NULL); /* empty counts as unset */
	CHECK_EQ_INT(c.n_labels, 3);
	CHECK_EQ_STR(c.label_keys[1], "rack");
	CHECK_EQ_STR(c.label_values[1], "r1");
	CHECK_EQ_STR(c.label_keys[2], "gpu");
	CHECK_EQ_STR(c.label_values[2], "");
	CHECK_EQ_INT(c.cpu_millicores, 1500);
	CHECK_EQ_INT(c.memory_bytes, 2ull * 1024 * 1024 * 1024);
	CHECK_EQ_INT(c.heartbeat_ms, 250);
	CHECK(c.stop_replicas_on_exit);
	CHECK_EQ_STR(c.log_level, "debug");
	agent_config_close(&c);

	char *argv2[] = {"cloudless-agent", NULL};
	char *env2[] = {"CLOUDLESS_COORDINATOR_ADDRESSES=a:1,b:2", "CLOUDLESS_LABELS=k=v",
	                "CLOUDLESS_STOP_REPLICAS_ON_EXIT=yes", "CLOUDLESS_ASSIGNMENTS_WAIT=0",
	                NULL};
	CHECK(parse(&c, argv2, env2, err, sizeof err) == AGENT_CONFIG_OK);
	CHECK(c.coordinators.n == 2 && strcmp(c.coordinators.items[1], "b:2") == 0);
	CHECK(c.n_labels == 1 && c.stop_replicas_on_exit && c.assignments_wait_s == 0);
	agent_config_close(&c);
}

static void test_bad(void)
{
	static const struct {
		const char *flag, *value, *env, *want;
	} rows[] = {
	    {"--coordinators", "nohost", NULL,
	     "--coordinators: expected host:port, got \"nohost\""},
	    {"--coordinators", "a:1,,b:2", NULL, "--coordinators: empty address in \"a:1,,b:2\""},
	    {"--coordinators", "a:99999", NULL, "--coordinators: port 99999 out of range"},
	    {"--coordinators",
	     "a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9,j:10,k:11,l:12,m:13,n:14,o:15,p:16,q:17", NULL,
	     "--coordinators: at most 16 entries"},
	    {"--node-id", "bad id", NULL, "--node-id: invalid id \"bad id\""},
	    {"--node-id", "x", "CLOUDLESS_NODE_ID=a/b", NULL},
	    {NULL, NULL, "CLOUDLESS_NODE_ID=a/b", "--node-id (from CLOUDLESS_NODE_ID): invalid id"},
	    {"--labels", "novalue", NULL, "--labels: expected key=value"},
	    {"--labels", "=v", NULL, "--labels: expected key=value"},
	    {"--labels", "a b=c", NULL, "--labels: expected key=value"},
	    {"--labels", "a=1,a=2", NULL, "--labels: label \"a\" given twice"},
	    {"--cpu-millicores", "0", NULL, "--cpu-millicores: not a positive integer: \"0\""},
	    {"--cpu-millicores", "-5", NULL, "--cpu-millicores: not a positive integer"},
	    {"--memory-bytes", "12q", NULL, "--memory-bytes: not a positive size"},
	    {"--memory-bytes", "0", NULL, "--memory-bytes: not a positive size"},
	    {"--memory-bytes", "99999999999999g", NULL, "--memory-bytes: too large"},
	    {NULL, NULL, "CLOUDLESS_MEMORY_BYTES=1x",
	     "--memory-bytes (from CLOUDLESS_MEMORY_BYTES): not a positive size"},
	    {"--heartbeat-ms", "1.5", NULL, "--heartbeat-ms: not a non-negative integer"},
	    {"--replica-log-max-files", "101", NULL, "--replica-log-max-files: at most 100"},
	    {"--replica-log-max-files", "0", NULL, "--replica-log-max-files: not a positive"},
	    {"--log-level", "loud", NULL, "--log-level: must be debug, info, warn or error"},
	    {"--metrics-addr", "9100", NULL, "--metrics-addr: expected host:port"},
	    {"--stop-replicas-on-exit=maybe", NULL, NULL, "--stop-replicas-on-exit: not a boolean"},
	    {"--zone", NULL, NULL, "--zone: missing value"},
	    {"--zone", "--labels", NULL, "--zone: missing value"},
	    {"--no-such-flag", "1", NULL, "unknown flag --no-such-flag"},
	    {"stray", NULL, NULL, "unexpected argument \"stray\""},
	    {"--zone", "", NULL, "--zone: empty value"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char *argv[4] = {"cloudless-agent", NULL, NULL, NULL};
		char *env[2] = {NULL, NULL};
		int n = 1;
		if (rows[i].flag != NULL)
			argv[n++] = (char *)rows[i].flag;
		if (rows[i].value != NULL)
			argv[n++] = (char *)rows[i].value;
		if (rows[i].env != NULL)
			env[0] = (char *)rows[i].env;
		struct agent_config c;
		char err[512] = "";
		enum agent_config_result r = parse(&c, argv, env, err, sizeof err);
		if (rows[i].want == NULL) { /* a valid flag hides a bad variable */
			CHECK(r == AGENT_CONFIG_OK);
			agent_config_close(&c);
			continue;
		}
		if (r != AGENT_CONFIG_ERROR || strstr(err, rows[i].want) == NULL)
			fprintf(stderr, "row %zu: got \"%s\"\n", i, err);
		CHECK(r == AGENT_CONFIG_ERROR);
		CHECK(strstr(err, rows[i].want) != NULL);
		CHECK(strchr(err, '\n') == NULL);
		CHECK(c.node_id == NULL && c.coordinators.n == 0); /* nothing left to free */
	}
}

static void test_help(void)
{
	struct agent_config c;
	char err[256];
	char *help[] = {"cloudless-agent", "--help", NULL};
	char *bad_env[] = {"CLOUDLESS_MEMORY_BYTES=junk", NULL};
	CHECK(parse(&c, help, bad_env, err, sizeof err) == AGENT_CONFIG_HELP);
	char *version[] = {"cloudless-agent", "--version", NULL};
	CHECK(parse(&c, version, NULL, err, sizeof err) == AGENT_CONFIG_VERSION);
	const char *u = agent_config_usage();
	static const char *const want[] = {"--coordinators HOST:PORT[,...]",
	                                   "CLOUDLESS_COORDINATOR_ADDRESSES",
	                                   "--node-id ID",
	                                   "CLOUDLESS_NODE_ID",
	                                   "--name NAME",
	                                   "--region",
	                                   "--zone",
	                                   "--labels K=V[,...]",
	                                   "--cpu-millicores N",
	                                   "--memory-bytes BYTES",
	                                   "--data-dir DIR",
	                                   "default ./agent-data",
	                                   "--heartbeat-ms MS",
	                                   "CLOUDLESS_HEARTBEAT_MS; default the",
	                                   "--log-level",
	                                   "--metrics-addr",
	                                   "CLOUDLESS_METRICS_ADDR",
	                                   "--stop-replicas-on-exit",
	                                   "--replica-log-max-bytes",
	                                   "--assignments-wait",
	                                   "-h, --help",
	                                   "--version"};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		if (strstr(u, want[i]) == NULL)
			fprintf(stderr, "help lacks %s\n", want[i]);
		CHECK(strstr(u, want[i]) != NULL);
	}
	/* no line wider than 100 columns (the env/default lines may pass 80) */
	for (const char *p = u; *p != '\0';) {
		size_t n = strcspn(p, "\n");
		CHECK(n <= 100);
		p += n + (p[n] == '\n');
	}
	CHECK(agent_config_usage() == u);
}

int main(void)
{
	test_defaults();
	test_flags_and_env();
	test_bad();
	test_help();
	TEST_DONE();
}
