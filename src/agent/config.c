/* config: the agent's flag table and its parser (see config.h).
 *
 * Every setting is one row of `options`: flag, variable, kind, field, metavar, default, how
 * --help describes a computed default, and the help text; parsing, defaults, messages and
 * --help all come from that row. Resolution order, as in the coordinator: argv left to right
 * (a repeated flag overwrites; --coordinators and --labels append), then for each setting no
 * flag set its variable (an empty one counts as unset), then its default, parsed by the same
 * code as user input; last the defaults computed from the machine (node id, capacity).
 *
 * The rows have the shape of the shared flags/ library's rows (flag, env, kind, off, metavar,
 * def, def_text, help), so that moving onto it replaces only the engine below the table. */
#include "agent/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/config.h"
#include "util/text.h"
#include "util/errmsg.h"

enum kind {
	K_ADDRS,  /* coordinators: comma-separated host:port, appended */
	K_ID,     /* 1-64 of [A-Za-z0-9._-] */
	K_NAME,   /* any text up to 255 bytes */
	K_LABEL,  /* region, zone: up to 63 bytes */
	K_LABELS, /* k=v,...: appended */
	K_COUNT,  /* uint64 >= 1 */
	K_BYTES,  /* uint64 >= 1, optional k/m/g (KiB, MiB, GiB) suffix */
	K_PATH,   /* non-empty */
	K_UINT,   /* unsigned >= 0 */
	K_FILES,  /* unsigned 1..100 */
	K_LEVEL,  /* debug|info|warn|error */
	K_ADDR,   /* host:port */
	K_BOOL,   /* true|1|yes|false|0|no; the bare flag means true */
};

struct option {
	const char *flag, *env;
	enum kind kind;
	size_t off;
	const char *metavar, *def, *def_text, *help;
};

#define F(field) offsetof(struct agent_config, field)

static const struct option options[] = {
    {"--coordinators", "CLOUDLESS_COORDINATOR_ADDRESSES", K_ADDRS, F(coordinators),
     "HOST:PORT[,...]", "127.0.0.1:8080", NULL,
     "HTTP addresses of coordinators to enroll and heartbeat with (any of them: followers "
     "forward to the leader). The agent learns the full list and the leader from their "
     "answers, so a few seeds are enough. Comma-separated and repeatable, at most 16."},
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
    {"--cpu-millicores", "CLOUDLESS_CPU_MILLICORES", K_COUNT, F(cpu_millicores), "N", NULL,
     "1000 per online CPU", "CPU the scheduler may place on this agent (1000 = one core)."},
    {"--memory-bytes", "CLOUDLESS_MEMORY_BYTES", K_BYTES, F(memory_bytes), "BYTES", NULL,
     "MemTotal of /proc/meminfo",
     "Memory the scheduler may place on this agent: bytes, or with a k, m or g suffix "
     "(KiB, MiB, GiB)."},
    {"--data-dir", "CLOUDLESS_DATA_DIR", K_PATH, F(data_dir), "DIR", "./agent-data", NULL,
     "Holds state.json (the replicas and their process ids, so that a restarted agent "
     "re-adopts them) and replicas/<namespace>/<name>/<N>/, each replica's working "
     "directory with its stdout.log and stderr.log; created (mode 0700) if missing."},
    {"--heartbeat-ms", "CLOUDLESS_HEARTBEAT_MS", K_UINT, F(heartbeat_ms), "MS", NULL,
     "the coordinator's",
     "Heartbeat interval; by default the one the coordinator's answers give (keep it: the "
     "coordinator marks an agent offline after its own timeout)."},
    {"--metrics-addr", "CLOUDLESS_METRICS_ADDR", K_ADDR, F(metrics_addr), "HOST:PORT", NULL, "none",
     "Address of an HTTP listener for GET /metrics (Prometheus) and GET /status."},
    {"--log-level", "CLOUDLESS_LOG_LEVEL", K_LEVEL, F(log_level), "LEVEL", "info", NULL,
     "One of debug, info, warn, error (each heartbeat is logged at debug)."},
    {"--replica-log-max-bytes", "CLOUDLESS_REPLICA_LOG_MAX_BYTES", K_BYTES,
     F(replica_log_max_bytes), "BYTES", "10m", NULL,
     "Size at which a replica's stdout.log or stderr.log is rotated."},
    {"--replica-log-max-files", "CLOUDLESS_REPLICA_LOG_MAX_FILES", K_FILES,
     F(replica_log_max_files), "N", "5", NULL,
     "Files kept per stream and replica, the current one included (1-100): at most "
     "max-bytes x max-files of each stream."},
    {"--assignments-wait", "CLOUDLESS_ASSIGNMENTS_WAIT", K_UINT, F(assignments_wait_s), "SECONDS",
     "30", NULL,
     "Between heartbeats, a blocking query for this agent's assignments waits up to this "
     "long, so new work starts as soon as it is placed; 0 = only heartbeats."},
    {"--stop-replicas-on-exit", "CLOUDLESS_STOP_REPLICAS_ON_EXIT", K_BOOL, F(stop_replicas_on_exit),
     NULL, "false", NULL,
     "On SIGTERM or SIGINT, stop every replica (as a drain would) before exiting. By default "
     "the agent exits alone and its replicas keep running: restarted, it re-adopts them."},
};

#undef F

#define N_OPTIONS (sizeof options / sizeof options[0])

enum origin { FROM_NONE, FROM_FLAG, FROM_ENV, FROM_DEFAULT };

struct parser {
	struct agent_config *c;
	enum origin origin[N_OPTIONS];
	char *err;
	size_t errlen;
};

/* A value a user typed, in quotes, with anything unprintable escaped: one line always. */
static const char *quoted(char *dst, size_t size, const char *s)
{
	size_t n = 0;
	dst[n++] = '"';
	for (; *s != '\0' && n + 8 < size; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			dst[n++] = (char)ch;
		else
			n += (size_t)snprintf(dst + n, size - n, "\\x%02x", ch);
	}
	if (*s != '\0') {
		memcpy(dst + n, "...", 3);
		n += 3;
	}
	dst[n++] = '"';
	dst[n] = '\0';
	return dst;
}

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

static int set_string(struct parser *p, char **field, const char *value)
{
	char *copy = strdup(value);
	if (copy == NULL)
		return errmsg_set(p->err, p->errlen, "out of memory");
	free(*field);
	*field = copy;
	return 0;
}

/* Calls add(entry) for every comma-separated entry (blanks around entries trimmed). */
static int each_entry(struct parser *p, const char *name, const char *value,
                      int (*add)(struct parser *p, const char *name, char *entry))
{
	char q[96];
	for (const char *s = value;;) {
		const char *end = strchr(s, ',');
		size_t n = end != NULL ? (size_t)(end - s) : strlen(s);
		while (n > 0 && (*s == ' ' || *s == '\t')) {
			s++;
			n--;
		}
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (n == 0)
			return errmsg_set(p->err, p->errlen, "%s: empty entry in %s", name,
			                  quoted(q, sizeof q, value));
		char *entry = strndup(s, n);
		if (entry == NULL)
			return errmsg_set(p->err, p->errlen, "out of memory");
		if (add(p, name, entry) != 0)
			return -1;
		if (end == NULL)
			return 0;
		s = end + 1;
	}
}

static int add_coordinator(struct parser *p, const char *name, char *entry)
{
	char host[256], q[96];
	unsigned port;
	if (config_split_hostport(entry, host, sizeof host, &port, false) != 0) {
		errmsg_set(p->err, p->errlen, "%s: not a host:port address: %s", name,
		           quoted(q, sizeof q, entry));
		free(entry);
		return -1;
	}
	if (p->c->n_coordinators == AGENT_CONFIG_MAX_COORDINATORS) {
		free(entry);
		return errmsg_set(p->err, p->errlen, "%s: too many addresses (at most %d)", name,
		                  AGENT_CONFIG_MAX_COORDINATORS);
	}
	p->c->coordinators[p->c->n_coordinators++] = entry;
	return 0;
}

static bool label_key_char(char ch)
{
	return id_char(ch) || ch == '/';
}

static int add_label(struct parser *p, const char *name, char *entry)
{
	char q[96];
	char *eq = strchr(entry, '=');
	size_t klen = eq != NULL ? (size_t)(eq - entry) : 0;
	bool ok = eq != NULL && klen >= 1 && klen <= 63 && strlen(eq + 1) <= 255;
	for (size_t i = 0; ok && i < klen; i++)
		ok = label_key_char(entry[i]);
	if (!ok) {
		errmsg_set(
		    p->err, p->errlen,
		    "%s: expected key=value with a key of 1-63 characters of A-Z a-z 0-9 . _ / - "
		    "and a value of at most 255, got %s",
		    name, quoted(q, sizeof q, entry));
		free(entry);
		return -1;
	}
	*eq = '\0';
	struct agent_config *c = p->c;
	for (size_t i = 0; i < c->n_labels; i++)
		if (strcmp(c->label_keys[i], entry) == 0) {
			errmsg_set(p->err, p->errlen, "%s: label %s given twice", name,
			           quoted(q, sizeof q, entry));
			free(entry);
			return -1;
		}
	if (c->n_labels == AGENT_CONFIG_MAX_LABELS) {
		free(entry);
		return errmsg_set(p->err, p->errlen, "%s: too many labels (at most %d)", name,
		                  AGENT_CONFIG_MAX_LABELS);
	}
	char *value = strdup(eq + 1);
	if (value == NULL) {
		free(entry);
		return errmsg_set(p->err, p->errlen, "out of memory");
	}
	c->label_keys[c->n_labels] = entry; /* the key is the entry's first part */
	c->label_values[c->n_labels++] = value;
	return 0;
}

/* uint64 with an optional binary suffix; -1 when not a positive number, -2 when too large. */
static int parse_bytes(const char *value, uint64_t *out)
{
	size_t n = strlen(value);
	uint64_t mult = 1, v;
	char last = n > 0 ? value[n - 1] : '\0';
	if (last == 'k' || last == 'K')
		mult = 1024;
	else if (last == 'm' || last == 'M')
		mult = 1024 * 1024;
	else if (last == 'g' || last == 'G')
		mult = 1024 * 1024 * 1024;
	char digits[32];
	size_t dn = n - (mult != 1);
	if (dn == 0 || dn >= sizeof digits)
		return dn == 0 ? -1 : -2;
	memcpy(digits, value, dn);
	digits[dn] = '\0';
	if (text_parse_u64(digits, &v) != 0)
		return strspn(digits, "0123456789") == dn ? -2 : -1;
	if (v == 0)
		return -1;
	if (v > UINT64_MAX / mult || v * mult > (uint64_t)INT64_MAX)
		return -2;
	*out = v * mult;
	return 0;
}

static int set_option(struct parser *p, size_t i, const char *value, enum origin origin)
{
	const struct option *o = &options[i];
	void *field = (char *)p->c + o->off;
	char name[96], q[96], host[256];
	unsigned port;
	uint64_t v;
	int rc;

	if (origin == FROM_ENV)
		snprintf(name, sizeof name, "%s (from %s)", o->flag, o->env);
	else
		snprintf(name, sizeof name, "%s", o->flag);
	if (value[0] == '\0' && o->kind != K_BOOL)
		return errmsg_set(p->err, p->errlen, "%s: empty value", name);

	switch (o->kind) {
	case K_ADDRS:
		return each_entry(p, name, value, add_coordinator);
	case K_LABELS:
		return each_entry(p, name, value, add_label);
	case K_ID:
		if (!valid_id(value))
			return errmsg_set(
			    p->err, p->errlen,
			    "%s: invalid id %s: use 1-64 characters of A-Z a-z 0-9 . _ -", name,
			    quoted(q, sizeof q, value));
		return set_string(p, field, value);
	case K_NAME:
	case K_LABEL: {
		size_t max = o->kind == K_NAME ? 255 : 63;
		if (strlen(value) > max)
			return errmsg_set(p->err, p->errlen, "%s: longer than %zu characters", name,
			                  max);
		return set_string(p, field, value);
	}
	case K_PATH:
		return set_string(p, field, value);
	case K_ADDR:
		if (config_split_hostport(value, host, sizeof host, &port, false) != 0)
			return errmsg_set(p->err, p->errlen, "%s: not a host:port address: %s",
			                  name, quoted(q, sizeof q, value));
		return set_string(p, field, value);
	case K_LEVEL: {
		static const char *const levels[] = {"debug", "info", "warn", "error"};
		for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++)
			if (strcasecmp(value, levels[l]) == 0)
				return set_string(p, field, levels[l]);
		return errmsg_set(p->err, p->errlen,
		                  "%s: must be debug, info, warn or error, got %s", name,
		                  quoted(q, sizeof q, value));
	}
	case K_BOOL: {
		static const char *const yes[] = {"true", "1", "yes"}, *const no[] = {"false", "0",
		                                                                      "no"};
		for (size_t b = 0; b < 3; b++) {
			if (strcasecmp(value, yes[b]) == 0 || strcasecmp(value, no[b]) == 0) {
				*(bool *)field = strcasecmp(value, yes[b]) == 0;
				return 0;
			}
		}
		return errmsg_set(p->err, p->errlen,
		                  "%s: not a boolean (true|1|yes|false|0|no): %s", name,
		                  quoted(q, sizeof q, value));
	}
	case K_COUNT:
	case K_UINT:
	case K_FILES:
		rc = text_parse_u64(value, &v);
		if (rc != 0 || (o->kind != K_UINT && v == 0))
			return errmsg_set(p->err, p->errlen, "%s: not a %s integer: %s", name,
			                  o->kind == K_UINT ? "non-negative" : "positive",
			                  quoted(q, sizeof q, value));
		if (o->kind == K_FILES && v > 100)
			return errmsg_set(p->err, p->errlen, "%s: at most 100, got %s", name,
			                  value);
		if (o->kind != K_COUNT && v > 0xffffffffu)
			return errmsg_set(p->err, p->errlen, "%s: too large: %s", name, value);
		if (o->kind == K_COUNT && v > (uint64_t)INT64_MAX)
			return errmsg_set(p->err, p->errlen, "%s: too large: %s", name, value);
		if (o->kind == K_COUNT)
			*(uint64_t *)field = v;
		else
			*(unsigned *)field = (unsigned)v;
		return 0;
	case K_BYTES:
		rc = parse_bytes(value, &v);
		if (rc == -2)
			return errmsg_set(p->err, p->errlen, "%s: too large: %s", name,
			                  quoted(q, sizeof q, value));
		if (rc != 0)
			return errmsg_set(
			    p->err, p->errlen,
			    "%s: not a positive size in bytes (e.g. 1048576, 512k, 64m, 2g): %s",
			    name, quoted(q, sizeof q, value));
		*(uint64_t *)field = v;
		return 0;
	}
	return errmsg_set(p->err, p->errlen, "%s: unknown kind", name);
}

static const char *env_lookup(char *const envp[], const char *name)
{
	if (envp == NULL)
		return getenv(name);
	size_t n = strlen(name);
	for (; *envp != NULL; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

static int parse_flags(struct parser *p, int argc, char *const argv[])
{
	char q[96];
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a];
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
			return AGENT_CONFIG_HELP;
		if (strcmp(arg, "--version") == 0)
			return AGENT_CONFIG_VERSION;
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
			return errmsg_set(p->err, p->errlen,
			                  arg[0] == '-'
			                      ? "unknown flag %s (see --help)"
			                      : "unexpected argument %s: settings are given as "
			                        "--flag value or --flag=value (see --help)",
			                  quoted(q, sizeof q, arg));
		const char *eq = strchr(arg, '=');
		size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
		size_t i = 0;
		while (i < N_OPTIONS &&
		       !(strlen(options[i].flag) == len && strncmp(options[i].flag, arg, len) == 0))
			i++;
		if (i == N_OPTIONS) {
			char flag[64];
			snprintf(flag, sizeof flag, "%.*s", (int)(len < 60 ? len : 60), arg);
			return errmsg_set(p->err, p->errlen, "unknown flag %s (see --help)",
			                  quoted(q, sizeof q, flag));
		}
		const char *value;
		if (eq != NULL)
			value = eq + 1;
		else if (options[i].kind == K_BOOL)
			value = "true";
		else if (a + 1 < argc && strncmp(argv[a + 1], "--", 2) != 0)
			value = argv[++a]; /* "--zone --labels x" is a forgotten value */
		else
			return errmsg_set(p->err, p->errlen, "%s: missing value", options[i].flag);
		if (set_option(p, i, value, FROM_FLAG) != 0)
			return -1;
		p->origin[i] = FROM_FLAG;
	}
	return 0;
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

uint64_t agent_config_machine_millicores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return (uint64_t)(n > 0 ? n : 1) * 1000;
}

uint64_t agent_config_machine_memory(void)
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
		return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 1;
	}
	return (uint64_t)kib * 1024;
}

enum agent_config_result agent_config_parse(struct agent_config *c, int argc, char *const argv[],
                                            char *const envp[], char *err, size_t errlen)
{
	struct parser p = {.c = c, .err = err, .errlen = errlen};
	int rc;
	memset(c, 0, sizeof *c);
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	rc = parse_flags(&p, argc, argv);
	for (size_t i = 0; rc == 0 && i < N_OPTIONS; i++) {
		const char *v = p.origin[i] == FROM_NONE ? env_lookup(envp, options[i].env) : NULL;
		if (v != NULL && v[0] != '\0') {
			rc = set_option(&p, i, v, FROM_ENV);
			p.origin[i] = FROM_ENV;
		}
	}
	for (size_t i = 0; rc == 0 && i < N_OPTIONS; i++)
		if (p.origin[i] == FROM_NONE && options[i].def != NULL) {
			rc = set_option(&p, i, options[i].def, FROM_DEFAULT);
			p.origin[i] = FROM_DEFAULT;
		}
	if (rc == 0 && c->node_id == NULL && (c->node_id = hostname_id()) == NULL)
		rc = errmsg_set(err, errlen, "out of memory");
	if (rc == 0 && c->cpu_millicores == 0)
		c->cpu_millicores = agent_config_machine_millicores();
	if (rc == 0 && c->memory_bytes == 0)
		c->memory_bytes = agent_config_machine_memory();
	if (rc == 0)
		return AGENT_CONFIG_OK;
	agent_config_close(c);
	if (rc == AGENT_CONFIG_HELP || rc == AGENT_CONFIG_VERSION)
		return (enum agent_config_result)rc;
	return AGENT_CONFIG_ERROR;
}

void agent_config_close(struct agent_config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n_coordinators; i++)
		free(c->coordinators[i]);
	for (size_t i = 0; i < c->n_labels; i++) {
		free(c->label_keys[i]);
		free(c->label_values[i]);
	}
	free(c->node_id);
	free(c->name);
	free(c->region);
	free(c->zone);
	free(c->data_dir);
	free(c->log_level);
	free(c->metrics_addr);
	memset(c, 0, sizeof *c);
}

/* ---- --help ------------------------------------------------------------------------- */

#define WIDTH  80
#define INDENT 30

static void add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len)
		abort(); /* the text is fixed: the unit test would have caught it */
	*len += (size_t)n;
}

/* `left` in the first column, `text` word-wrapped into the second. */
static void column(char *buf, size_t cap, size_t *len, const char *left, const char *text)
{
	size_t col = strlen(left) + 2;
	add(buf, cap, len, "  %s", left);
	if (col + 2 > INDENT) {
		add(buf, cap, len, "\n%*s", INDENT, "");
	} else {
		add(buf, cap, len, "%*s", (int)(INDENT - col), "");
	}
	col = INDENT;
	for (const char *s = text; *s != '\0';) {
		size_t w = strcspn(s, " ");
		if (col > INDENT && col + 1 + w > WIDTH) {
			add(buf, cap, len, "\n%*s", INDENT, "");
			col = INDENT;
		} else if (col > INDENT) {
			add(buf, cap, len, " ");
			col++;
		}
		add(buf, cap, len, "%.*s", (int)w, s);
		col += w;
		s += w;
		s += strspn(s, " ");
	}
	add(buf, cap, len, "\n");
}

const char *agent_config_usage(void)
{
	static char usage[16384];
	size_t len = 0;
	char left[64], line[200];
	if (usage[0] != '\0')
		return usage;
	add(usage, sizeof usage, &len,
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
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];
		snprintf(left, sizeof left, "%s%s%s", o->flag, o->metavar ? " " : "",
		         o->metavar ? o->metavar : "");
		column(usage, sizeof usage, &len, left, o->help);
		snprintf(line, sizeof line, "env %s; default %s", o->env,
		         o->def != NULL ? o->def : o->def_text);
		add(usage, sizeof usage, &len, "%*s%s\n", INDENT, "", line);
	}
	column(usage, sizeof usage, &len, "-h, --help", "Print this help and exit.");
	column(usage, sizeof usage, &len, "--version", "Print the version and exit.");
	add(usage, sizeof usage, &len,
	    "\nExamples:\n"
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
