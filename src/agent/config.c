/* config: the agent's flag table (see config.h).
 *
 * Every setting is one row of `options`, parsed, defaulted and documented by the shared
 * flags/ library as the coordinator's and cloudlessctl's are: argv left to right (a repeated
 * flag overwrites; --coordinators and --labels append), then for each setting no flag set its
 * variable (an empty one counts as unset), then its default. This file adds the agent's own
 * kinds (an agent id, bounded text, labels), the checks flags/ has no kind for, and the
 * defaults computed from the machine (node id, capacity). */
#include "agent/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum kind {
	K_ID = FLAGS_CUSTOM, /* char *: 1-64 of [A-Za-z0-9._-] */
	K_NAME,              /* char *: any text up to 255 bytes */
	K_LABEL,             /* char *: region, zone: up to 63 bytes */
	K_LABELS,            /* label_keys/label_values: k=v,..., appended */
	K_MEMORY,            /* size_t bytes, >= 1, k/m/g suffix (a machine's memory is GiB) */
};

#define F(field) offsetof(struct agent_config, field)

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

/* Rows give the eight fields every setting has in order and name the optional ones; the
 * others are zero, which is what the warning is about. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct flags_option options[] = {
    {"--coordinators", "CLOUDLESS_COORDINATOR_ADDRESSES", FLAGS_LIST, F(coordinators),
     "HOST:PORT[,...]", "127.0.0.1:8080", NULL,
     "HTTP addresses of coordinators to enroll and heartbeat with (any of them: followers "
     "forward to the leader). The agent learns the full list and the leader from their "
     "answers, so a few seeds are enough. Comma-separated and repeatable, at most 16.",
     .max_items = AGENT_CONFIG_MAX_COORDINATORS, .item_noun = "address",
     .check = flags_check_hostport},
    {"--node-id", "CLOUDLESS_NODE_ID", K_ID, F(node_id), "ID", NULL, "the host name",
     "This agent's id: unique among the agents and the same across restarts (its replicas "
     "are assigned to it by id); 1-64 characters of A-Z a-z 0-9 . _ -"},
    {"--name", "CLOUDLESS_NODE_NAME", K_NAME, F(name), "NAME", NULL, "the id",
     "A display name for the agent."},
    {"--region", "CLOUDLESS_REGION", K_LABEL, F(region), "REGION", NULL, "none",
     "The region the machine is in."},
    {"--zone", "CLOUDLESS_ZONE", K_LABEL, F(zone), "ZONE", NULL, "none",
     "The zone the machine is in: spread placement balances a workload's replicas over "
     "zones, and placement.zones selects them."},
    {"--labels", "CLOUDLESS_LABELS", K_LABELS, F(label_keys), "K=V[,...]", NULL, "none",
     "Labels for placement.node_selector: keys 1-63 characters of A-Z a-z 0-9 . _ / -, "
     "values up to 255 characters; comma-separated and repeatable, at most 64."},
    {"--cpu-millicores", "CLOUDLESS_CPU_MILLICORES", FLAGS_UINT_POS, F(cpu_millicores), "N", NULL,
     "1000 per online CPU", "CPU the scheduler may place on this agent (1000 = one core)."},
    {"--memory-bytes", "CLOUDLESS_MEMORY_BYTES", K_MEMORY, F(memory_bytes), "BYTES", NULL,
     "MemTotal of /proc/meminfo",
     "Memory the scheduler may place on this agent: bytes, or with a k, m or g suffix "
     "(KiB, MiB, GiB)."},
    {"--data-dir", "CLOUDLESS_DATA_DIR", FLAGS_STRING, F(data_dir), "DIR", "./agent-data", NULL,
     "Holds state.json (the replicas and their process ids, so that a restarted agent "
     "re-adopts them) and replicas/<namespace>/<name>/<N>/, each replica's working "
     "directory with its stdout.log and stderr.log; created (mode 0700) if missing."},
    {"--heartbeat-ms", "CLOUDLESS_HEARTBEAT_MS", FLAGS_UINT, F(heartbeat_ms), "MS", NULL,
     "the coordinator's",
     "Heartbeat interval; by default the one the coordinator's answers give (keep it: the "
     "coordinator marks an agent offline after its own timeout)."},
    {"--metrics-addr", "CLOUDLESS_METRICS_ADDR", FLAGS_HOSTPORT, F(metrics_addr), "HOST:PORT", NULL,
     "none", "Address of an HTTP listener for GET /metrics (Prometheus) and GET /status."},
    {"--log-level", "CLOUDLESS_LOG_LEVEL", FLAGS_CHOICE, F(log_level), "LEVEL", "info", NULL,
     "One of debug, info, warn, error (each heartbeat is logged at debug).", .choices = levels},
    {"--replica-log-max-bytes", "CLOUDLESS_REPLICA_LOG_MAX_BYTES", FLAGS_SIZE,
     F(replica_log_max_bytes), "BYTES", "10m", NULL,
     "Size at which a replica's stdout.log or stderr.log is rotated."},
    {"--replica-log-max-files", "CLOUDLESS_REPLICA_LOG_MAX_FILES", FLAGS_UINT_POS,
     F(replica_log_max_files), "N", "5", NULL,
     "Files kept per stream and replica, the current one included (1-100): at most "
     "max-bytes x max-files of each stream."},
    {"--assignments-wait", "CLOUDLESS_ASSIGNMENTS_WAIT", FLAGS_UINT, F(assignments_wait_s),
     "SECONDS", "30", NULL,
     "Between heartbeats, a blocking query for this agent's assignments waits up to this "
     "long, so new work starts as soon as it is placed; 0 = only heartbeats."},
    {"--stop-replicas-on-exit", "CLOUDLESS_STOP_REPLICAS_ON_EXIT", FLAGS_BOOL,
     F(stop_replicas_on_exit), NULL, "false", NULL,
     "On SIGTERM or SIGINT, stop every replica (as a drain would) before exiting. By default "
     "the agent exits alone and its replicas keep running: restarted, it re-adopts them."},
    {"--ca-file", "CLOUDLESS_CA_FILE", FLAGS_STRING, F(ca_file), "FILE", NULL, "plain HTTP",
     "Talk https to the coordinators (started with --tls-cert) and verify their "
     "certificates against these PEM CA certificates (for a public CA, the system bundle: "
     "/etc/ssl/certs/ca-certificates.crt)."},
    {"--cert-file", "CLOUDLESS_CERT_FILE", FLAGS_STRING, F(cert_file), "FILE", NULL, "none",
     "PEM client certificate to present to coordinators that require one "
     "(--tls-client-ca); implies https."},
    {"--key-file", "CLOUDLESS_KEY_FILE", FLAGS_STRING, F(key_file), "FILE", NULL, "in --cert-file",
     "PEM private key of --cert-file."},
    {"--token", "CLOUDLESS_TOKEN", FLAGS_STRING, F(token), "NAME.SECRET", NULL, "none",
     "An enroll token for coordinators started with --auth-file. Enrolling with it gets this "
     "agent a secret of its own, kept in --data-dir/agent-token and sent from then on; the "
     "token is used again only if that secret is refused (the agent was removed). Prefer the "
     "variable: a flag shows in ps."},
};
#pragma GCC diagnostic pop

#undef F

#define N_OPTIONS (sizeof options / sizeof options[0])

static bool id_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '_' || ch == '-';
}

static bool valid_id(const char *s)
{
	size_t n = strlen(s);
	for (const char *p = s; *p != '\0'; p++)
		if (!id_char(*p))
			return false;
	return n >= 1 && n <= 64;
}

struct label_append {
	struct agent_config *c;
	const char *name;
	char *err;
	size_t errlen;
};

static int append_label(char *entry, void *arg)
{
	struct label_append *la = arg;
	struct agent_config *c = la->c;
	char q[96];
	char *eq = strchr(entry, '=');
	size_t klen = eq != NULL ? (size_t)(eq - entry) : 0;
	bool ok = eq != NULL && klen >= 1 && klen <= 63 && strlen(eq + 1) <= 255;
	for (size_t i = 0; ok && i < klen; i++)
		ok = id_char(entry[i]) || entry[i] == '/';
	int rc = 0;
	if (!ok)
		rc = flags_fail(
		    la->err, la->errlen,
		    "%s: expected key=value with a key of 1-63 characters of A-Z a-z 0-9 "
		    ". _ / - and a value of at most 255, got %s",
		    la->name, flags_quote(q, sizeof q, entry));
	else if (c->n_labels == AGENT_CONFIG_MAX_LABELS)
		rc = flags_fail(la->err, la->errlen, "%s: too many labels (at most %d)", la->name,
		                AGENT_CONFIG_MAX_LABELS);
	if (rc == 0) {
		*eq = '\0';
		for (size_t i = 0; i < c->n_labels && rc == 0; i++)
			if (strcmp(c->label_keys[i], entry) == 0)
				rc = flags_fail(la->err, la->errlen, "%s: label %s given twice",
				                la->name, flags_quote(q, sizeof q, entry));
	}
	char *value = rc == 0 ? strdup(eq + 1) : NULL;
	if (rc == 0 && value == NULL)
		rc = flags_fail(la->err, la->errlen, "out of memory");
	if (rc != 0) {
		free(entry);
		return -1;
	}
	c->label_keys[c->n_labels] = entry; /* the key is the entry's first part */
	c->label_values[c->n_labels++] = value;
	return 0;
}

/* Parses a value of one of the agent's own kinds (flags_parse calls it). */
static int set_option(const struct flags_option *o, void *target, const char *value,
                      const char *name, char *err, size_t errlen)
{
	struct agent_config *c = target;
	void *field = (char *)c + o->off;
	char q[96];
	switch (o->kind) {
	case K_ID:
		if (!valid_id(value))
			return flags_fail(
			    err, errlen,
			    "%s: invalid id %s: use 1-64 characters of A-Z a-z 0-9 . _ -", name,
			    flags_quote(q, sizeof q, value));
		return flags_set_string(field, value, err, errlen);
	case K_NAME:
	case K_LABEL: {
		size_t max = o->kind == K_NAME ? 255 : 63;
		if (strlen(value) > max)
			return flags_fail(err, errlen, "%s: longer than %zu characters", name, max);
		return flags_set_string(field, value, err, errlen);
	}
	case K_LABELS: {
		struct label_append la = {c, name, err, errlen};
		return flags_split_list(value, name, "label", append_label, &la, err, errlen);
	}
	case K_MEMORY: {
		size_t n = strlen(value);
		uint64_t mult = 1, v;
		const char *units = "kKmMgG";
		const char *u = strchr(units, value[n - 1]);
		if (u != NULL) {
			mult = (uint64_t)1 << (10 * (1 + (u - units) / 2));
			n--;
		}
		int rc = flags_parse_u64(value, n, SIZE_MAX / mult, &v);
		if (rc == -2)
			return flags_fail(err, errlen, "%s: too large: %s", name,
			                  flags_quote(q, sizeof q, value));
		if (rc != 0 || v == 0)
			return flags_fail(
			    err, errlen,
			    "%s: not a positive size in bytes (e.g. 1073741824, 512m, "
			    "16g): %s",
			    name, flags_quote(q, sizeof q, value));
		*(size_t *)field = (size_t)(v * mult);
		return 0;
	}
	}
	return flags_fail(err, errlen, "%s: internal error: unknown option kind", name);
}

/* The host name as an agent id: its first label, anything outside the id alphabet made '-'. */
static char *hostname_id(void)
{
	char host[256] = "";
	if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
		snprintf(host, sizeof host, "agent");
	host[strcspn(host, ".")] = '\0';
	host[64] = '\0';
	for (char *h = host; *h != '\0'; h++)
		if (!id_char(*h))
			*h = '-';
	return strdup(host[0] != '\0' ? host : "agent");
}

unsigned agent_config_machine_millicores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return (unsigned)(n > 0 ? n : 1) * 1000;
}

size_t agent_config_machine_memory(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	unsigned long long kib = 0;
	while (f != NULL && fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
			break;
	if (f != NULL)
		fclose(f);
	if (kib == 0) {
		long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
		return pages > 0 && size > 0 ? (size_t)pages * (size_t)size : 1;
	}
	return (size_t)kib * 1024;
}

/* The row of a field, for checks flags/ has no kind for. */
static const struct flags_option *row(size_t off)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].off == off)
			return &options[i];
	abort();
}

static int finish(struct agent_config *c, const enum flags_origin *origin, char *err, size_t errlen)
{
	char who[96];
	const struct flags_option *files =
	    row(offsetof(struct agent_config, replica_log_max_files));
	if (c->replica_log_max_files > 100)
		return flags_fail(err, errlen, "%s: at most 100, got %u",
		                  flags_who(who, sizeof who, files, origin[files - options]),
		                  c->replica_log_max_files);
	if (c->key_file != NULL && c->cert_file == NULL)
		return flags_fail(err, errlen,
		                  "--key-file needs --cert-file: the certificate of the key");
	if (c->node_id == NULL && (c->node_id = hostname_id()) == NULL)
		return flags_fail(err, errlen, "out of memory");
	if (c->cpu_millicores == 0)
		c->cpu_millicores = agent_config_machine_millicores();
	if (c->memory_bytes == 0)
		c->memory_bytes = agent_config_machine_memory();
	return 0;
}

enum agent_config_result agent_config_parse(struct agent_config *c, int argc, char *const argv[],
                                            char *const envp[], char *err, size_t errlen)
{
	enum flags_origin origin[N_OPTIONS];
	struct flags_set set = {options, N_OPTIONS, c, origin};
	struct flags_spec spec = {.sets = &set, .n_sets = 1, .custom = set_option};
	memset(c, 0, sizeof *c);
	int rc = flags_parse(&spec, argc, argv, envp, NULL, NULL, err, errlen);
	if (rc == FLAGS_OK)
		rc = finish(c, origin, err, errlen);
	if (rc == 0)
		return AGENT_CONFIG_OK;
	/* On help, version and errors the caller gets an empty config and nothing to free. */
	agent_config_close(c);
	if (rc == FLAGS_HELP)
		return AGENT_CONFIG_HELP;
	if (rc == FLAGS_VERSION)
		return AGENT_CONFIG_VERSION;
	return AGENT_CONFIG_ERROR;
}

void agent_config_close(struct agent_config *c)
{
	if (c == NULL)
		return;
	flags_free(options, N_OPTIONS, c);
	for (size_t i = 0; i < c->n_labels; i++) {
		free(c->label_keys[i]);
		free(c->label_values[i]);
	}
	free(c->node_id);
	free(c->name);
	free(c->region);
	free(c->zone);
	memset(c, 0, sizeof *c);
}

const char *agent_config_usage(void)
{
	static char usage[16384];
	struct flags_text t = {usage, 0, sizeof usage};
	if (usage[0] != '\0')
		return usage;
	flags_text_add(
	    &t,
	    "Usage: cloudless-agent [options]\n\n"
	    "Runs the workloads a Cloudless coordinator cluster assigns to this machine. It\n"
	    "enrolls with the coordinators, heartbeats (moving to another coordinator at once\n"
	    "when one fails, and following the leader), starts each assigned replica's command\n"
	    "in a process group of its own and restarts it by its workload's policy, and stops\n"
	    "what is no longer assigned. Its replicas survive the agent: restarted, even after\n"
	    "SIGKILL, it re-adopts the processes still running and restarts none of them.\n\n"
	    "Every flag can also be set by the environment variable shown under it; a flag\n"
	    "wins over its variable, and a variable over the default. Give values as\n"
	    "--flag value or --flag=value; boolean variables take true|1|yes|false|0|no, and\n"
	    "an empty variable counts as unset.\n\nOptions:\n");
	flags_text_options(&t, options, N_OPTIONS);
	flags_text_option(&t, "-h, --help", "Print this help and exit.");
	flags_text_option(&t, "--version", "Print the version and exit.");
	flags_text_add(
	    &t, "\nExamples:\n"
	        "  # An agent in zone a of a three-coordinator cluster:\n"
	        "  cloudless-agent --coordinators 10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 \\\n"
	        "      --node-id worker-1 --zone a --labels disk=ssd \\\n"
	        "      --data-dir /var/lib/cloudless-agent --metrics-addr 0.0.0.0:9100\n"
	        "\n"
	        "  # The same with environment variables, e.g. in a container:\n"
	        "  CLOUDLESS_COORDINATOR_ADDRESSES=10.0.0.1:8080 CLOUDLESS_NODE_ID=worker-2 \\\n"
	        "      CLOUDLESS_ZONE=b cloudless-agent\n");
	return usage;
}
