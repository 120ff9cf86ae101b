/* test_config: unit tests for src/config (flags, CLOUDLESS_* variables, data dir).
 *
 * Most cases are rows of one table: an argv, an environment (passed as envp, so the real
 * environment of whoever runs the test cannot leak in) and the expected outcome, either some
 * field values or a phrase the one-line error must contain. Run under ASan/LSan this also
 * proves the error paths free what they allocated. Data-dir cases work under a mkdtemp
 * directory; since CI runs as root, permission cases that root bypasses are only run for
 * other users. */
#include "config/config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

enum tri { ANY, NO, YES };

struct row {
	const char *name;
	const char *argv[24]; /* after argv[0]; NULL-terminated */
	const char *env[14];  /* NAME=value; NULL-terminated */
	enum config_result want;
	/* errors: phrases the message must contain */
	const char *err[3];
	/* successes: fields to check (NULL / 0 / ANY = don't care) */
	const char *node_id, *raft_addr, *http_addr, *advertise_http, *metrics_addr, *data_dir;
	const char *log_level;
	const char *join; /* entries joined with '|'; "" = none */
	enum tri bootstrap;
	unsigned bootstrap_expect;
	unsigned heartbeat_ms, election_ms;
	size_t max_body;
};

static const struct row rows[] = {
    /* ---- valid combinations ---- */
    {"minimal",
     {"--node-id", "n1"},
     {NULL},
     CONFIG_OK,
     .node_id = "n1",
     .raft_addr = "127.0.0.1:7000",
     .http_addr = "127.0.0.1:8080",
     .advertise_http = "127.0.0.1:8080",
     .data_dir = "./data",
     .log_level = "info",
     .join = "",
     .bootstrap = NO,
     .heartbeat_ms = 50,
     .election_ms = 300,
     .max_body = 524288},
    {"equals form",
     {"--node-id=n-1.a_b", "--raft-addr=10.1.2.3:7001", "--http-addr=node1.example:8081",
      "--heartbeat-ms=20", "--election-ms=40", "--log-level=DEBUG", "--data-dir=/var/x",
      "--insecure=true"},
     {NULL},
     CONFIG_OK,
     .node_id = "n-1.a_b",
     .raft_addr = "10.1.2.3:7001",
     .http_addr = "node1.example:8081",
     .advertise_http = "node1.example:8081",
     .data_dir = "/var/x",
     .log_level = "debug",
     .heartbeat_ms = 20,
     .election_ms = 40},
    {"all from env",
     {NULL},
     {"CLOUDLESS_RAFT_ID=e1", "CLOUDLESS_RAFT_ADDR=192.168.0.9:3000",
      "CLOUDLESS_HTTP_ADDR=0.0.0.0:8080", "CLOUDLESS_ADVERTISE_HTTP=coord-1:8080",
      "CLOUDLESS_METRICS_ADDR=[::1]:9090", "CLOUDLESS_DATA_DIR=/data", "CLOUDLESS_BOOTSTRAP=Yes",
      "CLOUDLESS_HEARTBEAT_MS=100", "CLOUDLESS_ELECTION_MS=1000", "CLOUDLESS_LOG_LEVEL=warn",
      "CLOUDLESS_MAX_BODY=1m", "CLOUDLESS_INSECURE=true", NULL},
     CONFIG_OK,
     .node_id = "e1",
     .raft_addr = "192.168.0.9:3000",
     .http_addr = "0.0.0.0:8080",
     .advertise_http = "coord-1:8080",
     .metrics_addr = "[::1]:9090",
     .data_dir = "/data",
     .log_level = "warn",
     .join = "",
     .bootstrap = YES,
     .heartbeat_ms = 100,
     .election_ms = 1000,
     .max_body = 1048576},
    {"flag beats env beats default",
     {"--node-id", "flag", "--heartbeat-ms", "80"},
     {"CLOUDLESS_RAFT_ID=env", "CLOUDLESS_HEARTBEAT_MS=70", "CLOUDLESS_ELECTION_MS=500", NULL},
     CONFIG_OK,
     .node_id = "flag",
     .heartbeat_ms = 80,
     .election_ms = 500,
     .raft_addr = "127.0.0.1:7000"},
    {"a bad variable a flag overrides is never looked at",
     {"--node-id", "n1", "--heartbeat-ms", "60", "--bootstrap=false"},
     {"CLOUDLESS_HEARTBEAT_MS=abc", "CLOUDLESS_BOOTSTRAP=maybe", NULL},
     CONFIG_OK,
     .heartbeat_ms = 60,
     .bootstrap = NO},
    {"empty variable counts as unset",
     {"--node-id", "n1"},
     {"CLOUDLESS_HEARTBEAT_MS=", "CLOUDLESS_DATA_DIR=", NULL},
     CONFIG_OK,
     .heartbeat_ms = 50,
     .data_dir = "./data"},
    {"bootstrap flag", {"--node-id", "n1", "--bootstrap"}, {NULL}, CONFIG_OK, .bootstrap = YES},
    {"bootstrap=TRUE",
     {"--node-id", "n1", "--bootstrap=TRUE"},
     {NULL},
     CONFIG_OK,
     .bootstrap = YES},
    {"bootstrap=0", {"--node-id", "n1", "--bootstrap=0"}, {NULL}, CONFIG_OK, .bootstrap = NO},
    {"env bootstrap 1",
     {"--node-id", "n1"},
     {"CLOUDLESS_BOOTSTRAP=1", NULL},
     CONFIG_OK,
     .bootstrap = YES},
    {"env bootstrap No",
     {"--node-id", "n1"},
     {"CLOUDLESS_BOOTSTRAP=No", NULL},
     CONFIG_OK,
     .bootstrap = NO},
    {"--bootstrap=false overrides env and allows env join",
     {"--node-id", "n1", "--bootstrap=false"},
     {"CLOUDLESS_BOOTSTRAP=true", "CLOUDLESS_RAFT_JOIN_ADDR=a:1", NULL},
     CONFIG_OK,
     .bootstrap = NO,
     .join = "a:1"},
    {"join list and repeated --join append",
     {"--node-id", "n1", "--join", "a:1,10.0.0.2:8080", "--join=[fe80::1]:8080", "--join",
      " c.example:3 , d_e:4"},
     {NULL},
     CONFIG_OK,
     .join = "a:1|10.0.0.2:8080|[fe80::1]:8080|c.example:3|d_e:4"},
    {"join from env",
     {"--node-id", "n1"},
     {"CLOUDLESS_RAFT_JOIN_ADDR=x:1,y:2", NULL},
     CONFIG_OK,
     .join = "x:1|y:2"},
    {"--join replaces the env list",
     {"--node-id", "n1", "--join", "z:9"},
     {"CLOUDLESS_RAFT_JOIN_ADDR=x:1,y:2", NULL},
     CONFIG_OK,
     .join = "z:9"},
    {"sixteen joins",
     {"--node-id", "n1", "--join", "a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8",
      "--join=a:9,a:10,a:11,a:12,a:13,a:14,a:15,a:16"},
     {NULL},
     CONFIG_OK,
     .join = "a:1|a:2|a:3|a:4|a:5|a:6|a:7|a:8|a:9|a:10|a:11|a:12|a:13|a:14|a:15|a:16"},
    {"wildcard http with advertise",
     {"--node-id", "n1", "--http-addr", "[::]:8080", "--advertise-http", "[2001:db8::1]:8080"},
     {"CLOUDLESS_AUTH_FILE=/etc/cloudless/auth", NULL},
     CONFIG_OK,
     .http_addr = "[::]:8080",
     .advertise_http = "[2001:db8::1]:8080"},
    {"election exactly twice heartbeat",
     {"--node-id", "n1", "--heartbeat-ms", "150"},
     {NULL},
     CONFIG_OK,
     .heartbeat_ms = 150,
     .election_ms = 300},
    {"max-body bytes",
     {"--node-id", "n1", "--max-body", "1000"},
     {NULL},
     CONFIG_OK,
     .max_body = 1000},
    {"max-body 4K", {"--node-id", "n1", "--max-body=4K"}, {NULL}, CONFIG_OK, .max_body = 4096},
    {"max-body 2M",
     {"--node-id", "n1", "--max-body", "2M"},
     {NULL},
     CONFIG_OK,
     .max_body = 2097152},
    {"64-char node id",
     {"--node-id", "abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHIJ0123456789abcd"},
     {NULL},
     CONFIG_OK,
     .node_id = "abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHIJ0123456789abcd"},
    {"last repeated flag wins",
     {"--node-id", "a", "--node-id", "b"},
     {NULL},
     CONFIG_OK,
     .node_id = "b"},

    /* ---- help and version ---- */
    {"--help", {"--help"}, {NULL}, .want = CONFIG_HELP},
    {"-h after flags, bad env ignored",
     {"--node-id", "n1", "-h"},
     {"CLOUDLESS_HEARTBEAT_MS=abc", NULL},
     .want = CONFIG_HELP},
    {"--version", {"--version"}, {NULL}, .want = CONFIG_VERSION},
    {"--help=x", {"--help=x"}, {NULL}, CONFIG_ERROR, .err = {"--help takes no value"}},

    /* ---- invalid ---- */
    {"node id required",
     {NULL},
     {NULL},
     CONFIG_ERROR,
     .err = {"--node-id is required (or CLOUDLESS_RAFT_ID)"}},
    {"node id bad char",
     {"--node-id", "a b"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--node-id", "\"a b\""}},
    {"node id slash", {"--node-id", "a/b"}, {NULL}, CONFIG_ERROR, .err = {"--node-id"}},
    {"node id 65 chars",
     {"--node-id", "abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHIJ0123456789abcde"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--node-id", "1-64"}},
    {"node id empty", {"--node-id="}, {NULL}, CONFIG_ERROR, .err = {"--node-id: empty value"}},
    {"node id from env",
     {NULL},
     {"CLOUDLESS_RAFT_ID=bad id!", NULL},
     CONFIG_ERROR,
     .err = {"--node-id", "CLOUDLESS_RAFT_ID"}},
    {"raft port out of range",
     {"--node-id", "n1", "--raft-addr", "10.0.0.1:70000"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr: port 70000 out of range (1-65535)"}},
    {"raft port 0",
     {"--node-id", "n1", "--raft-addr", "10.0.0.1:0"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr: port 0 out of range"}},
    {"raft port junk",
     {"--node-id", "n1", "--raft-addr", "10.0.0.1:7000x"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr", "invalid port"}},
    {"raft port negative",
     {"--node-id", "n1", "--raft-addr", "10.0.0.1:-1"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr", "invalid port"}},
    {"raft port huge",
     {"--node-id", "n1", "--raft-addr", "10.0.0.1:99999999999999999999999"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr", "out of range"}},
    {"raft hostname",
     {"--node-id", "n1", "--raft-addr", "localhost:7000"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr", "numeric IPv4"}},
    {"raft ipv6",
     {"--node-id", "n1", "--raft-addr", "[::1]:7000"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr", "numeric IPv4"}},
    {"raft short ipv4",
     {"--node-id", "n1", "--raft-addr", "10.0.1:7000"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr"}},
    {"raft wildcard",
     {"--node-id", "n1", "--raft-addr", "0.0.0.0:7000"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr", "0.0.0.0"}},
    {"raft no port",
     {"--node-id", "n1", "--raft-addr", "10.0.0.1"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr", "expected host:port"}},
    {"raft port from env",
     {"--node-id", "n1"},
     {"CLOUDLESS_RAFT_ADDR=1.2.3.4:65536", NULL},
     CONFIG_ERROR,
     .err = {"--raft-addr (from CLOUDLESS_RAFT_ADDR): port 65536 out of range"}},
    {"http unbracketed v6",
     {"--node-id", "n1", "--http-addr", "::1:8080"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--http-addr", "brackets"}},
    {"http missing bracket",
     {"--node-id", "n1", "--http-addr", "[::1:8080"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--http-addr", "']'"}},
    {"http bad v6",
     {"--node-id", "n1", "--http-addr", "[nothex]:8080"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--http-addr", "IPv6"}},
    {"http bad host",
     {"--node-id", "n1", "--http-addr", "my host:8080"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--http-addr", "invalid host"}},
    {"http missing host",
     {"--node-id", "n1", "--http-addr", ":8080"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--http-addr", "missing host"}},
    {"http missing port",
     {"--node-id", "n1", "--http-addr", "h:"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--http-addr", "missing port"}},
    {"wildcard http needs advertise",
     {"--node-id", "n1", "--http-addr", "0.0.0.0:8080"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--advertise-http is required", "--http-addr"}},
    {"wildcard v6 http needs advertise",
     {"--node-id", "n1"},
     {"CLOUDLESS_HTTP_ADDR=[::]:8080", NULL},
     CONFIG_ERROR,
     .err = {"--advertise-http is required", "CLOUDLESS_HTTP_ADDR"}},
    {"advertise wildcard",
     {"--node-id", "n1", "--http-addr", "0.0.0.0:8080", "--advertise-http", "0.0.0.0:8080"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--advertise-http", "wildcard"}},
    {"non-loopback http needs an auth file or --insecure",
     {"--node-id", "n1", "--http-addr", "10.0.0.1:8080"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--http-addr 10.0.0.1:8080 is not a loopback address", "--insecure"}},
    {"non-loopback metrics needs an auth file or --insecure",
     {"--node-id", "n1", "--metrics-addr", "0.0.0.0:9090"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--metrics-addr", "--auth-file"}},
    {"non-loopback http with --insecure",
     {"--node-id", "n1", "--http-addr", "10.0.0.1:8080", "--insecure"},
     {NULL},
     CONFIG_OK,
     .err = {NULL}},
    {"non-loopback http with an auth file",
     {"--node-id", "n1", "--http-addr", "10.0.0.1:8080"},
     {"CLOUDLESS_AUTH_FILE=/etc/cloudless/auth", NULL},
     CONFIG_OK,
     .err = {NULL}},
    {"loopback names need nothing",
     {"--node-id", "n1", "--http-addr", "localhost:8080", "--metrics-addr", "127.0.0.2:9090"},
     {NULL},
     CONFIG_OK,
     .err = {NULL}},
    {"metrics same as http",
     {"--node-id", "n1", "--metrics-addr", "127.0.0.1:8080"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--metrics-addr", "--http-addr"}},
    {"metrics bad port",
     {"--node-id", "n1", "--metrics-addr", "h:100000"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--metrics-addr: port 100000 out of range (1-65535)"}},
    {"unknown flag",
     {"--node-id", "n1", "--foo"},
     {NULL},
     CONFIG_ERROR,
     .err = {"unknown flag --foo"}},
    {"unknown flag with value",
     {"--foo=bar", "--node-id", "n1"},
     {NULL},
     CONFIG_ERROR,
     .err = {"unknown flag --foo ("}},
    {"unknown short flag", {"-x"}, {NULL}, CONFIG_ERROR, .err = {"unknown flag -x"}},
    {"unknown flag with newline",
     {"--fo\no"},
     {NULL},
     CONFIG_ERROR,
     .err = {"unknown flag \"--fo\\x0ao\""}},
    {"positional argument",
     {"--node-id", "n1", "extra"},
     {NULL},
     CONFIG_ERROR,
     .err = {"unexpected argument \"extra\""}},
    {"bare --",
     {"--node-id", "n1", "--"},
     {NULL},
     CONFIG_ERROR,
     .err = {"unexpected argument \"--\""}},
    {"missing value at end",
     {"--node-id"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--node-id: missing value"}},
    {"flag where value expected",
     {"--node-id", "n1", "--join", "--bootstrap"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--join: missing value"}},
    {"bootstrap and join flags (asks the peers first)",
     {"--node-id", "n1", "--bootstrap", "--join", "a:1"},
     {NULL},
     CONFIG_OK,
     .join = "a:1",
     .bootstrap = YES},
    {"bootstrap-expect with join",
     {"--node-id", "n1", "--bootstrap-expect", "3", "--join", "a:1,b:2,c:3"},
     {NULL},
     CONFIG_OK,
     .join = "a:1|b:2|c:3",
     .bootstrap = NO,
     .bootstrap_expect = 3},
    {"bootstrap-expect from env",
     {"--node-id", "n1"},
     {"CLOUDLESS_BOOTSTRAP_EXPECT=5", "CLOUDLESS_RAFT_JOIN_ADDR=a:1", NULL},
     CONFIG_OK,
     .join = "a:1",
     .bootstrap_expect = 5},
    {"bootstrap and bootstrap-expect",
     {"--node-id", "n1", "--bootstrap", "--bootstrap-expect", "3", "--join", "a:1"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--bootstrap and --bootstrap-expect are mutually exclusive"}},
    {"bootstrap env and bootstrap-expect flag",
     {"--node-id", "n1", "--bootstrap-expect", "3", "--join", "a:1"},
     {"CLOUDLESS_BOOTSTRAP=true", NULL},
     CONFIG_ERROR,
     .err = {"--bootstrap (from CLOUDLESS_BOOTSTRAP) and --bootstrap-expect",
             "mutually exclusive"}},
    {"bootstrap-expect without join",
     {"--node-id", "n1", "--bootstrap-expect", "3"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--bootstrap-expect needs --join"}},
    {"bootstrap-expect too large",
     {"--node-id", "n1", "--bootstrap-expect", "99", "--join", "a:1"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--bootstrap-expect: at most 17 nodes"}},
    {"bootstrap-expect not a number",
     {"--node-id", "n1", "--bootstrap-expect", "three", "--join", "a:1"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--bootstrap-expect"}},
    {"bad env boolean",
     {"--node-id", "n1"},
     {"CLOUDLESS_BOOTSTRAP=maybe", NULL},
     CONFIG_ERROR,
     .err = {"CLOUDLESS_BOOTSTRAP", "not a boolean", "\"maybe\""}},
    {"bad flag boolean",
     {"--node-id", "n1", "--bootstrap=on"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--bootstrap: not a boolean"}},
    {"heartbeat abc",
     {"--node-id", "n1", "--heartbeat-ms", "abc"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--heartbeat-ms: not a positive integer: \"abc\""}},
    {"heartbeat negative",
     {"--node-id", "n1", "--heartbeat-ms", "-5"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--heartbeat-ms: not a positive integer: \"-5\""}},
    {"heartbeat zero",
     {"--node-id", "n1", "--heartbeat-ms=0"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--heartbeat-ms: not a positive integer"}},
    {"heartbeat trailing junk",
     {"--node-id", "n1", "--heartbeat-ms", "10ms"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--heartbeat-ms: not a positive integer"}},
    {"heartbeat leading space",
     {"--node-id", "n1", "--heartbeat-ms", " 10"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--heartbeat-ms"}},
    {"heartbeat plus sign",
     {"--node-id", "n1", "--heartbeat-ms", "+10"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--heartbeat-ms"}},
    {"heartbeat overflow",
     {"--node-id", "n1", "--heartbeat-ms", "4294967296"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--heartbeat-ms: too large"}},
    {"heartbeat env",
     {"--node-id", "n1"},
     {"CLOUDLESS_HEARTBEAT_MS=abc", NULL},
     CONFIG_ERROR,
     .err = {"--heartbeat-ms (from CLOUDLESS_HEARTBEAT_MS): not a positive integer"}},
    {"election below twice heartbeat",
     {"--node-id", "n1", "--heartbeat-ms", "100", "--election-ms", "199"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--election-ms must be at least twice --heartbeat-ms"}},
    {"huge heartbeat, no overflow in the check",
     {"--node-id", "n1", "--heartbeat-ms", "4294967295", "--election-ms", "4294967295"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--election-ms must be at least twice"}},
    {"snapshot threshold zero",
     {"--node-id", "n1", "--snapshot-threshold", "0"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--snapshot-threshold"}},
    {"snapshot trailing negative",
     {"--node-id", "n1", "--snapshot-trailing", "-1"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--snapshot-trailing: not a non-negative integer"}},
    {"idempotency ttl junk",
     {"--node-id", "n1", "--idempotency-ttl", "1d"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--idempotency-ttl"}},
    {"forward timeout env",
     {"--node-id", "n1"},
     {"CLOUDLESS_FORWARD_TIMEOUT_MS=1.5", NULL},
     CONFIG_ERROR,
     .err = {"--forward-timeout-ms", "CLOUDLESS_FORWARD_TIMEOUT_MS"}},
    {"max-body G suffix",
     {"--node-id", "n1", "--max-body", "1g"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--max-body"}},
    {"max-body kb",
     {"--node-id", "n1", "--max-body", "12kb"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--max-body"}},
    {"max-body bare suffix",
     {"--node-id", "n1", "--max-body", "k"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--max-body"}},
    {"max-body zero",
     {"--node-id", "n1", "--max-body", "0"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--max-body"}},
    {"max-body negative",
     {"--node-id", "n1", "--max-body", "-1"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--max-body"}},
    {"max-body overflow",
     {"--node-id", "n1", "--max-body", "18014398509481984k"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--max-body: too large"}},
    {"log level",
     {"--node-id", "n1", "--log-level", "verbose"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--log-level", "\"verbose\""}},
    {"data dir empty",
     {"--node-id", "n1", "--data-dir", ""},
     {NULL},
     CONFIG_ERROR,
     .err = {"--data-dir: empty value"}},
    {"join empty entry",
     {"--node-id", "n1", "--join", "a:1,,b:2"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--join: empty address"}},
    {"join trailing comma",
     {"--node-id", "n1", "--join", "a:1,"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--join: empty address"}},
    {"join only comma",
     {"--node-id", "n1"},
     {"CLOUDLESS_RAFT_JOIN_ADDR=,", NULL},
     CONFIG_ERROR,
     .err = {"--join (from CLOUDLESS_RAFT_JOIN_ADDR): empty address"}},
    {"join bad entry",
     {"--node-id", "n1", "--join", "a:1,b"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--join: expected host:port"}},
    {"join bad port",
     {"--node-id", "n1", "--join", "a:1,b:0"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--join: port 0 out of range"}},
    {"seventeen joins",
     {"--node-id", "n1", "--join", "a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10",
      "--join=a:11,a:12,a:13,a:14,a:15,a:16,a:17"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--join: too many addresses"}},
    {"newline in a value stays on one line",
     {"--node-id", "n1", "--log-level", "x\ny"},
     {NULL},
     CONFIG_ERROR,
     .err = {"--log-level", "\"x\\x0ay\""}},
};

/* Joins the join entries with '|' for comparison with a row. */
static void joined(const struct config *c, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t i = 0; i < c->n_join; i++) {
		if (i > 0)
			strncat(out, "|", len - strlen(out) - 1);
		strncat(out, c->join[i], len - strlen(out) - 1);
	}
}

static bool all_zero(const struct config *c)
{
	static const struct config zero;
	return memcmp(c, &zero, sizeof zero) == 0;
}

static void run_row(const struct row *r)
{
	char *argv[26];
	int argc = 0;
	argv[argc++] = "cloudless-coordinator";
	for (size_t i = 0; r->argv[i] != NULL; i++)
		argv[argc++] = (char *)r->argv[i];
	argv[argc] = NULL;

	struct config c;
	char err[512];
	memset(&c, 0xa5, sizeof c); /* config_parse must not rely on a zeroed struct */
	strcpy(err, "untouched");
	enum config_result got =
	    config_parse(&c, argc, argv, (char *const *)r->env, err, sizeof err);

	int before = testlib_failures;
	CHECK_EQ_INT(got, r->want);
	if (r->want == CONFIG_ERROR && got == CONFIG_ERROR) {
		for (size_t i = 0; i < 3; i++)
			if (r->err[i] != NULL)
				CHECK(strstr(err, r->err[i]) != NULL);
		CHECK(strchr(err, '\n') == NULL);
		CHECK(err[0] != '\0');
	}
	if (r->want != CONFIG_OK && got != CONFIG_OK)
		CHECK(all_zero(&c)); /* nothing left to free, nothing to misuse */
	if (r->want == CONFIG_OK && got == CONFIG_OK) {
		char buf[1024];
		if (r->node_id)
			CHECK_EQ_STR(c.node_id, r->node_id);
		if (r->raft_addr)
			CHECK_EQ_STR(c.raft_addr, r->raft_addr);
		if (r->http_addr)
			CHECK_EQ_STR(c.http_addr, r->http_addr);
		if (r->advertise_http)
			CHECK_EQ_STR(c.advertise_http, r->advertise_http);
		if (r->metrics_addr)
			CHECK_EQ_STR(c.metrics_addr, r->metrics_addr);
		if (r->data_dir)
			CHECK_EQ_STR(c.data_dir, r->data_dir);
		if (r->log_level)
			CHECK_EQ_STR(c.log_level, r->log_level);
		if (r->join) {
			joined(&c, buf, sizeof buf);
			CHECK_EQ_STR(buf, r->join);
		}
		if (r->bootstrap != ANY)
			CHECK_EQ_INT(c.bootstrap, r->bootstrap == YES);
		if (r->bootstrap_expect != 0)
			CHECK_EQ_INT(c.bootstrap_expect, r->bootstrap_expect);
		if (r->heartbeat_ms)
			CHECK_EQ_INT(c.heartbeat_ms, r->heartbeat_ms);
		if (r->election_ms)
			CHECK_EQ_INT(c.election_ms, r->election_ms);
		if (r->max_body)
			CHECK_EQ_INT(c.max_body, r->max_body);
	}
	if (testlib_failures != before)
		fprintf(stderr, "  in row \"%s\" (err: %s)\n", r->name, err);
	config_close(&c);
	config_close(&c); /* idempotent */
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		run_row(&rows[i]);
}

static void test_all_defaults(void)
{
	char *argv[] = {"x", "--node-id", "n1", NULL};
	char *env[] = {NULL};
	struct config c;
	char err[256];
	CHECK_EQ_INT(config_parse(&c, 3, argv, env, err, sizeof err), CONFIG_OK);
	CHECK_EQ_STR(c.node_id, "n1");
	CHECK_EQ_STR(c.raft_addr, "127.0.0.1:7000");
	CHECK_EQ_STR(c.http_addr, "127.0.0.1:8080");
	CHECK_EQ_STR(c.advertise_http, "127.0.0.1:8080");
	CHECK(c.advertise_http != c.http_addr); /* owned separately */
	CHECK(c.metrics_addr == NULL);
	CHECK_EQ_STR(c.data_dir, "./data");
	CHECK(!c.bootstrap);
	CHECK_EQ_INT(c.n_join, 0);
	CHECK_EQ_INT(c.heartbeat_ms, 50);
	CHECK_EQ_INT(c.election_ms, 300);
	CHECK_EQ_STR(c.log_level, "info");
	CHECK_EQ_INT(c.snapshot_threshold, 131072);
	CHECK_EQ_INT(c.snapshot_trailing, 8192);
	CHECK_EQ_INT(c.health_max_lag, 1000);
	CHECK_EQ_INT(c.max_body, 524288);
	CHECK_EQ_INT(c.forward_timeout_ms, 10000);
	CHECK_EQ_INT(c.idempotency_ttl_s, 86400);
	CHECK_EQ_INT(c.idempotency_max, 100000);
	CHECK_EQ_INT(c.connect_retry_ms, 100);
	config_close(&c);
	CHECK(all_zero(&c));
}

static void test_every_variable(void)
{
	char *argv[] = {"x", NULL};
	char *env[] = {"CLOUDLESS_RAFT_ID=n9",
	               "CLOUDLESS_SNAPSHOT_THRESHOLD=10",
	               "CLOUDLESS_SNAPSHOT_TRAILING=11",
	               "CLOUDLESS_HEALTH_MAX_LAG=12",
	               "CLOUDLESS_FORWARD_TIMEOUT_MS=13",
	               "CLOUDLESS_IDEMPOTENCY_TTL=14",
	               "CLOUDLESS_IDEMPOTENCY_MAX=15",
	               "CLOUDLESS_CONNECT_RETRY_MS=16",
	               "CLOUDLESS_MAX_BODY=17",
	               "OTHER=1",
	               "CLOUDLESS_RAFT_ID_EXTRA=no", /* a longer name must not match */
	               NULL};
	struct config c;
	char err[256];
	CHECK_EQ_INT(config_parse(&c, 1, argv, env, err, sizeof err), CONFIG_OK);
	CHECK_EQ_STR(c.node_id, "n9");
	CHECK_EQ_INT(c.snapshot_threshold, 10);
	CHECK_EQ_INT(c.snapshot_trailing, 11);
	CHECK_EQ_INT(c.health_max_lag, 12);
	CHECK_EQ_INT(c.forward_timeout_ms, 13);
	CHECK_EQ_INT(c.idempotency_ttl_s, 14);
	CHECK_EQ_INT(c.idempotency_max, 15);
	CHECK_EQ_INT(c.connect_retry_ms, 16);
	CHECK_EQ_INT(c.max_body, 17);
	config_close(&c);

	/* and every flag */
	char *argv2[] = {"x",
	                 "--node-id=f",
	                 "--snapshot-threshold",
	                 "20",
	                 "--snapshot-trailing",
	                 "21",
	                 "--health-max-lag",
	                 "22",
	                 "--forward-timeout-ms",
	                 "23",
	                 "--idempotency-ttl",
	                 "24",
	                 "--idempotency-max",
	                 "25",
	                 "--connect-retry-ms",
	                 "26",
	                 "--metrics-addr",
	                 "127.0.0.1:9090",
	                 "--advertise-http",
	                 "me:8080",
	                 NULL};
	CHECK_EQ_INT(config_parse(&c, 20, argv2, env, err, sizeof err), CONFIG_OK);
	CHECK_EQ_STR(c.node_id, "f");
	CHECK_EQ_INT(c.snapshot_threshold, 20);
	CHECK_EQ_INT(c.snapshot_trailing, 21);
	CHECK_EQ_INT(c.health_max_lag, 22);
	CHECK_EQ_INT(c.forward_timeout_ms, 23);
	CHECK_EQ_INT(c.idempotency_ttl_s, 24);
	CHECK_EQ_INT(c.idempotency_max, 25);
	CHECK_EQ_INT(c.connect_retry_ms, 26);
	CHECK_EQ_STR(c.metrics_addr, "127.0.0.1:9090");
	CHECK_EQ_STR(c.advertise_http, "me:8080");
	CHECK_EQ_INT(c.max_body, 17); /* from the environment */
	config_close(&c);

	/* the settings that may be 0 */
	char *argv3[] = {"x", "--snapshot-trailing", "0", "--health-max-lag=0", NULL};
	CHECK_EQ_INT(config_parse(&c, 4, argv3, env, err, sizeof err), CONFIG_OK);
	CHECK_EQ_INT(c.snapshot_trailing, 0);
	CHECK_EQ_INT(c.health_max_lag, 0);
	config_close(&c);
}

/* envp == NULL reads the process environment. */
static void test_getenv(void)
{
	char *argv[] = {"x", NULL};
	struct config c;
	char err[256];
	setenv("CLOUDLESS_RAFT_ID", "from-getenv", 1);
	setenv("CLOUDLESS_ELECTION_MS", "777", 1);
	CHECK_EQ_INT(config_parse(&c, 1, argv, NULL, err, sizeof err), CONFIG_OK);
	CHECK_EQ_STR(c.node_id, "from-getenv");
	CHECK_EQ_INT(c.election_ms, 777);
	config_close(&c);
	unsetenv("CLOUDLESS_RAFT_ID");
	unsetenv("CLOUDLESS_ELECTION_MS");
}

static void test_split_hostport(void)
{
	char host[256];
	unsigned port = 1234;
	CHECK_EQ_INT(config_split_hostport("10.0.0.1:7000", host, sizeof host, &port, false), 0);
	CHECK_EQ_STR(host, "10.0.0.1");
	CHECK_EQ_INT(port, 7000);
	CHECK_EQ_INT(config_split_hostport("[::1]:80", host, sizeof host, &port, false), 0);
	CHECK_EQ_STR(host, "::1");
	CHECK_EQ_INT(port, 80);
	CHECK_EQ_INT(config_split_hostport("coord-1.svc_x:65535", host, sizeof host, &port, false),
	             0);
	CHECK_EQ_STR(host, "coord-1.svc_x");
	CHECK_EQ_INT(port, 65535);
	CHECK_EQ_INT(config_split_hostport("h:0", host, sizeof host, &port, true), 0);
	CHECK_EQ_INT(port, 0);
	CHECK_EQ_INT(config_split_hostport("h:0", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("h:65536", host, sizeof host, &port, true), -1);
	CHECK_EQ_INT(config_split_hostport("h", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("h:", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport(":80", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("::1:80", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("[::1]80", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("[::1", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("[1.2.3.4]:80", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("1.2.3:80", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("256.1.1.1:80", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("a..b:80", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("h:8 0", host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("h:+80", host, sizeof host, &port, false), -1);
	char small[4];
	CHECK_EQ_INT(config_split_hostport("abcd:80", small, sizeof small, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport("abc:80", small, sizeof small, &port, false), 0);
	CHECK_EQ_STR(small, "abc");
	char longname[300];
	memset(longname, 'a', 260);
	strcpy(longname + 260, ":80");
	CHECK_EQ_INT(config_split_hostport(longname, host, sizeof host, &port, false), -1);
	CHECK_EQ_INT(config_split_hostport(NULL, host, sizeof host, &port, false), -1);
}

static void test_usage(void)
{
	static const char *const needles[] = {
	    "--node-id",
	    "CLOUDLESS_RAFT_ID",
	    "--raft-addr",
	    "CLOUDLESS_RAFT_ADDR",
	    "--http-addr",
	    "CLOUDLESS_HTTP_ADDR",
	    "--advertise-http",
	    "CLOUDLESS_ADVERTISE_HTTP",
	    "--metrics-addr",
	    "CLOUDLESS_METRICS_ADDR",
	    "--data-dir",
	    "CLOUDLESS_DATA_DIR",
	    "--bootstrap",
	    "CLOUDLESS_BOOTSTRAP",
	    "--join",
	    "CLOUDLESS_RAFT_JOIN_ADDR",
	    "--heartbeat-ms",
	    "CLOUDLESS_HEARTBEAT_MS",
	    "--election-ms",
	    "CLOUDLESS_ELECTION_MS",
	    "--log-level",
	    "CLOUDLESS_LOG_LEVEL",
	    "--snapshot-threshold",
	    "CLOUDLESS_SNAPSHOT_THRESHOLD",
	    "--snapshot-trailing",
	    "CLOUDLESS_SNAPSHOT_TRAILING",
	    "--health-max-lag",
	    "CLOUDLESS_HEALTH_MAX_LAG",
	    "--max-body",
	    "CLOUDLESS_MAX_BODY",
	    "--forward-timeout-ms",
	    "CLOUDLESS_FORWARD_TIMEOUT_MS",
	    "--idempotency-ttl",
	    "CLOUDLESS_IDEMPOTENCY_TTL",
	    "--idempotency-max",
	    "CLOUDLESS_IDEMPOTENCY_MAX",
	    "--connect-retry-ms",
	    "CLOUDLESS_CONNECT_RETRY_MS",
	    "--help",
	    "--version",
	    "default 127.0.0.1:7000",
	    "default 127.0.0.1:8080",
	    "default ./data",
	    "default 50",
	    "default 300",
	    "default info",
	    "default 131072",
	    "default 8192",
	    "default 1000",
	    "default 512k",
	    "default 10000",
	    "default 86400",
	    "default 100000",
	    "default 100",
	    "Examples:",
	    "--bootstrap\n",
	    "--join 10.0.0.1:8080",
	};
	const char *u = config_usage();
	CHECK(u != NULL && strncmp(u, "Usage: ", 7) == 0);
	for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++) {
		if (strstr(u, needles[i]) == NULL) {
			fprintf(stderr, "usage lacks \"%s\"\n", needles[i]);
			CHECK(0);
		}
	}
	/* fits an 80-column terminal and ends cleanly */
	size_t col = 0, widest = 0;
	for (const char *p = u; *p != '\0'; p++) {
		col = *p == '\n' ? 0 : col + 1;
		if (col > widest)
			widest = col;
	}
	CHECK(widest <= 80);
	CHECK(u[strlen(u) - 1] == '\n');
	CHECK(config_usage() == u); /* built once */
}

/* ---- data dir ---- */

static int prepare(const char *dir, char *err, size_t errlen)
{
	struct config c;
	memset(&c, 0, sizeof c);
	c.data_dir = (char *)dir;
	return config_prepare_data_dir(&c, err, errlen);
}

static bool is_dir_mode(const char *path, mode_t mode)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == mode;
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return false;
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n == 0;
}

static void test_data_dir(void)
{
	char tmpl[] = "/tmp/test_config_XXXXXX";
	char *base = mkdtemp(tmpl);
	CHECK(base != NULL);
	if (base == NULL)
		return;
	char path[1024], want[1200], err[512];
	mode_t old = umask(022);

	/* nested creation, mode 0700, probe file removed */
	snprintf(path, sizeof path, "%s/a/b/c", base);
	CHECK_EQ_INT(prepare(path, err, sizeof err), 0);
	CHECK(is_dir_mode(path, 0700));
	snprintf(path, sizeof path, "%s/a", base);
	CHECK(is_dir_mode(path, 0700));
	snprintf(path, sizeof path, "%s/a/b/c", base);
	CHECK(dir_is_empty(path));
	/* existing dir is fine, and so are doubled and trailing slashes */
	CHECK_EQ_INT(prepare(path, err, sizeof err), 0);
	snprintf(path, sizeof path, "%s//a//d/", base);
	CHECK_EQ_INT(prepare(path, err, sizeof err), 0);
	snprintf(path, sizeof path, "%s/a/d", base);
	CHECK(is_dir_mode(path, 0700));

	/* an existing dir keeps its mode */
	snprintf(path, sizeof path, "%s/open", base);
	CHECK(mkdir(path, 0755) == 0);
	CHECK_EQ_INT(prepare(path, err, sizeof err), 0);
	CHECK(is_dir_mode(path, 0755));

	/* a regular file where the dir should be, or on the way to it */
	char file[1024];
	snprintf(file, sizeof file, "%s/file", base);
	int fd = open(file, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	CHECK_EQ_INT(prepare(file, err, sizeof err), -1);
	snprintf(want, sizeof want, "--data-dir: %s exists and is not a directory", file);
	CHECK_EQ_STR(err, want);
	snprintf(path, sizeof path, "%s/file/sub/dir", base);
	CHECK_EQ_INT(prepare(path, err, sizeof err), -1);
	CHECK_EQ_STR(err, want);

	/* a component no file system accepts fails for root too */
	char longname[300];
	memset(longname, 'n', 299);
	longname[299] = '\0';
	snprintf(path, sizeof path, "%s/%s/x", base, longname);
	CHECK_EQ_INT(prepare(path, err, sizeof err), -1);
	snprintf(want, sizeof want, "--data-dir: cannot create %s/%s: %s", base, longname,
	         strerror(ENAMETOOLONG));
	CHECK_EQ_STR(err, want);

	/* a read-only dir: root writes anyway, so only meaningful for other users */
	if (geteuid() != 0) {
		snprintf(path, sizeof path, "%s/ro", base);
		CHECK(mkdir(path, 0500) == 0);
		CHECK_EQ_INT(prepare(path, err, sizeof err), -1);
		CHECK(strstr(err, "is not writable") != NULL);
		snprintf(path, sizeof path, "%s/ro/sub", base);
		CHECK_EQ_INT(prepare(path, err, sizeof err), -1);
		CHECK(strstr(err, "--data-dir: cannot create") != NULL);
		CHECK(strstr(err, "Permission denied") != NULL);
	} else {
		fprintf(stderr, "running as root: skipping the read-only data dir cases\n");
	}

	/* no directory at all */
	CHECK_EQ_INT(prepare(NULL, err, sizeof err), -1);
	CHECK(strstr(err, "--data-dir") != NULL);
	CHECK_EQ_INT(prepare("", err, sizeof err), -1);
	CHECK(strstr(err, "--data-dir") != NULL);

	/* relative paths work from the current directory */
	char cwd[1024];
	CHECK(getcwd(cwd, sizeof cwd) != NULL);
	CHECK(chdir(base) == 0);
	CHECK_EQ_INT(prepare("rel/data", err, sizeof err), 0);
	CHECK(is_dir_mode("rel/data", 0700));
	CHECK_EQ_INT(prepare(".", err, sizeof err), 0);
	CHECK(chdir(cwd) == 0);

	umask(old);
	CHECK(test_rmtree(base) == 0);
}

int main(void)
{
	test_table();
	test_all_defaults();
	test_every_variable();
	test_getenv();
	test_split_hostport();
	test_usage();
	test_data_dir();
	TEST_DONE();
}
