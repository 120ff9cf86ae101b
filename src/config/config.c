/* config: the coordinator's settings from command-line flags and CLOUDLESS_* environment
 * variables (see config.h for the fields).
 *
 * Every setting is one row of the `options` table below: flag, variable, kind, default and
 * help text. Parsing, defaults, error messages and the --help text are all driven by that
 * table, so a flag cannot be documented with one default and applied with another.
 *
 * Order of resolution, which gives "flag > env > default":
 *   1. argv, left to right (a repeated flag overwrites, except --join which appends);
 *   2. for every setting no flag set, its environment variable (an empty one counts as unset,
 *      as shells and compose files make "VAR=" easy to produce by accident);
 *   3. for everything still unset, the default, parsed by the same code as user input;
 *   4. checks that involve several settings (bootstrap vs join, election vs heartbeat,
 *      advertise address).
 * A variable is therefore only looked at, and only validated, when no flag overrides it.
 *
 * config.c is a leaf: it links nothing else from the project (not even util/buf, so the
 * config unit test stays a single small library), and it never prints; main() does. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

enum kind {
	K_NODE_ID,   /* char *: 1..64 of [A-Za-z0-9._-] */
	K_RAFT_ADDR, /* char *: numeric IPv4 a.b.c.d:port */
	K_HOSTPORT,  /* char *: host:port, host a name, IPv4 or [IPv6] */
	K_PATH,      /* char *: non-empty path */
	K_BOOL,      /* bool */
	K_JOIN,      /* char *[CONFIG_MAX_JOIN] + n_join, comma-separated host:port list */
	K_UINT_POS,  /* unsigned, >= 1 */
	K_UINT,      /* unsigned, >= 0 */
	K_SIZE,      /* size_t bytes, >= 1, optional k/K/m/M suffix */
	K_LOG_LEVEL, /* char *: debug|info|warn|error, stored lower-case */
};

struct option {
	const char *flag;
	const char *env;
	enum kind kind;
	size_t off; /* offsetof(struct config, field) */
	const char *metavar;
	const char *def;      /* the default as a user would type it; NULL = none */
	const char *def_text; /* how --help describes the default when it is not `def` */
	const char *help;
};

#define F(field)      offsetof(struct config, field)
#define STRINGIFY_(x) #x
#define STRINGIFY(x)  STRINGIFY_(x)

static const struct option options[] = {
    {"--node-id", "CLOUDLESS_RAFT_ID", K_NODE_ID, F(node_id), "ID", NULL, "required",
     "This node's raft ID: unique in the cluster and the same across restarts; 1-64 "
     "characters of A-Z a-z 0-9 . _ -"},
    {"--raft-addr", "CLOUDLESS_RAFT_ADDR", K_RAFT_ADDR, F(raft_addr), "IP:PORT", "127.0.0.1:7000",
     NULL,
     "Raft listen address. It is also this node's address in the cluster configuration, so "
     "the other nodes must reach it there: a numeric IPv4 address (not 0.0.0.0) and port."},
    {"--http-addr", "CLOUDLESS_HTTP_ADDR", K_HOSTPORT, F(http_addr), "HOST:PORT", "127.0.0.1:8080",
     NULL, "HTTP API listen address."},
    {"--advertise-http", "CLOUDLESS_ADVERTISE_HTTP", K_HOSTPORT, F(advertise_http), "HOST:PORT",
     NULL, "--http-addr",
     "HTTP address other nodes and clients use to reach this node. Required when --http-addr "
     "listens on 0.0.0.0 or [::]."},
    {"--metrics-addr", "CLOUDLESS_METRICS_ADDR", K_HOSTPORT, F(metrics_addr), "HOST:PORT", NULL,
     "none", "Address of an optional second HTTP listener for Prometheus scrapes."},
    {"--data-dir", "CLOUDLESS_DATA_DIR", K_PATH, F(data_dir), "DIR", "./data", NULL,
     "Directory for the raft log, snapshots and the store; created (mode 0700) if missing."},
    {"--bootstrap", "CLOUDLESS_BOOTSTRAP", K_BOOL, F(bootstrap), NULL, "false", NULL,
     "Start a new cluster with this node as its only voter: for the first node only, "
     "and not together with --join. --bootstrap=false turns it off."},
    {"--join", "CLOUDLESS_RAFT_JOIN_ADDR", K_JOIN, F(join), "HOST:PORT[,...]", NULL, "none",
     "HTTP addresses of existing members to ask for admission to the cluster. "
     "Comma-separated and repeatable, at most " STRINGIFY(CONFIG_MAX_JOIN) " in all."},
    {"--heartbeat-ms", "CLOUDLESS_HEARTBEAT_MS", K_UINT_POS, F(heartbeat_ms), "MS", "50", NULL,
     "Raft heartbeat interval in milliseconds."},
    {"--election-ms", "CLOUDLESS_ELECTION_MS", K_UINT_POS, F(election_ms), "MS", "300", NULL,
     "Raft election timeout in milliseconds; at least twice --heartbeat-ms."},
    {"--log-level", "CLOUDLESS_LOG_LEVEL", K_LOG_LEVEL, F(log_level), "LEVEL", "info", NULL,
     "One of debug, info, warn, error."},
    /* 131072, not libraft's 8192: every snapshot serialises the whole store on every node, so
     * with hundreds of thousands of keys a small threshold makes snapshotting the largest
     * cost under write load (docs/benchmarks.md: at 400k keys, iterating the store for the
     * image was about 40% of a follower's CPU per write at 32768). The price is up to 131072
     * + trailing entries of raft log held in memory (about 25 MB of RSS per node with
     * 100-byte values) and a longer log replay at start-up; etcd's default is 100,000. */
    {"--snapshot-threshold", "CLOUDLESS_SNAPSHOT_THRESHOLD", K_UINT_POS, F(snapshot_threshold), "N",
     "131072", NULL, "Take a raft snapshot after this many new log entries."},
    /* 8192 (etcd keeps 5000): a node restarted gracefully under a few thousand writes/s is
     * away for a second or so; with the log kept it catches up from entries instead of a
     * whole snapshot image, which with a large state costs the leader far more. */
    {"--snapshot-trailing", "CLOUDLESS_SNAPSHOT_TRAILING", K_UINT, F(snapshot_trailing), "N",
     "8192", NULL,
     "Log entries kept behind a snapshot, so a follower that lags a little catches up from "
     "the log instead of receiving a whole snapshot."},
    {"--health-max-lag", "CLOUDLESS_HEALTH_MAX_LAG", K_UINT, F(health_max_lag), "N", "1000", NULL,
     "Log entries this node may lag behind before its health check reports it unhealthy."},
    {"--max-body", "CLOUDLESS_MAX_BODY", K_SIZE, F(max_body), "BYTES", "512k", NULL,
     "Largest request body accepted (larger ones get 413). Plain bytes, or with a k/K or m/M "
     "suffix for KiB or MiB."},
    {"--min-free-disk", "CLOUDLESS_MIN_FREE_DISK", K_SIZE, F(min_free_disk), "BYTES", "64m", NULL,
     "Writes are refused (507) while the file system of --data-dir has less free space than "
     "this, so the raft log never runs out of room mid-append. Same units as --max-body."},
    {"--forward-timeout-ms", "CLOUDLESS_FORWARD_TIMEOUT_MS", K_UINT_POS, F(forward_timeout_ms),
     "MS", "10000", NULL, "Deadline for a request a follower forwards to the leader."},
    {"--idempotency-ttl", "CLOUDLESS_IDEMPOTENCY_TTL", K_UINT_POS, F(idempotency_ttl_s), "SECONDS",
     "86400", NULL, "How long the result of a request with an Idempotency-Key is kept."},
    {"--idempotency-max", "CLOUDLESS_IDEMPOTENCY_MAX", K_UINT_POS, F(idempotency_max), "N",
     "100000", NULL, "Most Idempotency-Key results kept at once."},
    {"--connect-retry-ms", "CLOUDLESS_CONNECT_RETRY_MS", K_UINT_POS, F(connect_retry_ms), "MS",
     "100", NULL, "Delay before retrying a failed connection to a peer."},
    /* The HTTP server's limits (src/http/http.h). Nothing a well-behaved client does comes near
     * them; they bound what a misbehaving or hostile one can make a node hold. */
    {"--http-max-connections", "CLOUDLESS_HTTP_MAX_CONNECTIONS", K_UINT_POS,
     F(http_max_connections), "N", "10000", NULL,
     "Most HTTP connections open at once; more are closed as soon as they are accepted."},
    {"--http-max-connections-per-ip", "CLOUDLESS_HTTP_MAX_CONNECTIONS_PER_IP", K_UINT_POS,
     F(http_max_connections_per_ip), "N", "1024", NULL,
     "Most HTTP connections open at once from one client address; more are closed at once."},
    {"--http-max-buffered", "CLOUDLESS_HTTP_MAX_BUFFERED", K_SIZE, F(http_max_buffered), "BYTES",
     "64m", NULL,
     "Request bodies larger than 64 KiB share this much memory; one that does not fit is "
     "refused with 503 before it is read. Same units as --max-body."},
    {"--http-header-timeout-ms", "CLOUDLESS_HTTP_HEADER_TIMEOUT_MS", K_UINT_POS,
     F(http_header_timeout_ms), "MS", "10000", NULL,
     "A request head must arrive within this many milliseconds of its first byte (408 after), "
     "and a new connection must start one within it."},
    {"--http-body-timeout-ms", "CLOUDLESS_HTTP_BODY_TIMEOUT_MS", K_UINT_POS,
     F(http_body_timeout_ms), "MS", "10000", NULL,
     "A request body must arrive within this many milliseconds of its head (408 after)."},
    {"--http-idle-timeout-ms", "CLOUDLESS_HTTP_IDLE_TIMEOUT_MS", K_UINT_POS,
     F(http_idle_timeout_ms), "MS", "120000", NULL,
     "An idle keep-alive HTTP connection is closed after this many milliseconds; so is one "
     "whose client stops reading an answer."},
};

#undef F
#undef STRINGIFY
#undef STRINGIFY_

#define N_OPTIONS (sizeof options / sizeof options[0])

enum origin { FROM_NONE, FROM_FLAG, FROM_ENV, FROM_DEFAULT };

struct parser {
	struct config *c;
	enum origin origin[N_OPTIONS];
	char *err;
	size_t errlen;
};

/* Writes the one-line error and returns -1, so error paths read `return fail(...)`. */
static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Quotes a user-supplied value for an error message: printable ASCII as is, anything else
 * (a newline above all, since the message must stay one line) as \xNN, long values cut. */
static const char *quote(char *dst, size_t size, const char *s)
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

/* "--flag" or "--flag (from CLOUDLESS_X)": how errors name a setting, so that a bad value
 * coming from the environment is not blamed on a flag nobody typed. */
static const char *who(char *dst, size_t size, const struct option *o, enum origin origin)
{
	if (origin == FROM_ENV)
		snprintf(dst, size, "%s (from %s)", o->flag, o->env);
	else
		snprintf(dst, size, "%s", o->flag);
	return dst;
}

/* Strict unsigned decimal in s[0..n): digits only (no sign, space or base prefix), value
 * <= max. Returns 0, -1 when it is not a number, -2 when it is larger than max. */
static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	bool big = false;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		/* keep scanning after an overflow so "99999999999x" is "not a number" */
		if (big || v > (max - d) / 10)
			big = true;
		else
			v = v * 10 + d;
	}
	if (big)
		return -2;
	*out = v;
	return 0;
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "1", "yes"};
	static const char *const no[] = {"false", "0", "no"};
	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool valid_node_id(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 64)
		return false;
	for (; *s != '\0'; s++) {
		char ch = *s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* A DNS-ish host name (underscores allowed, as container runtimes hand them out), or a
 * dotted IPv4 address. Anything made only of digits and dots must be a proper a.b.c.d, so
 * "10.0.1" is refused rather than resolved by inet_aton's legacy rules. */
static bool valid_host(const char *h)
{
	size_t n = strlen(h);
	bool numeric = true;
	if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-' || strstr(h, "..") != NULL)
		return false;
	for (const char *p = h; *p != '\0'; p++) {
		char ch = *p;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_'))
			return false;
		if (ch != '.' && (ch < '0' || ch > '9'))
			numeric = false;
	}
	if (numeric) {
		struct in_addr a;
		return inet_pton(AF_INET, h, &a) == 1;
	}
	return true;
}

/* The parser behind config_split_hostport; `why` (may be NULL) gets the reason, without the
 * flag name, e.g. "port 70000 out of range (1-65535)". */
static int split_hostport(const char *s, char *host, size_t hostlen, unsigned *port,
                          bool allow_zero, char *why, size_t whylen)
{
	char q[96];
	const char *h, *colon;
	size_t hl;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL)
			return fail(why, whylen, "missing ']' in %s", quote(q, sizeof q, s));
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
		if (*colon != ':')
			return fail(why, whylen, "expected [IPv6]:port, got %s",
			            quote(q, sizeof q, s));
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return fail(why, whylen, "expected host:port, got %s",
			            quote(q, sizeof q, s));
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return fail(why, whylen,
			            "IPv6 addresses must be in brackets, as [::1]:8080, got %s",
			            quote(q, sizeof q, s));
		h = s;
		hl = (size_t)(colon - s);
	}
	if (hl == 0)
		return fail(why, whylen, "missing host in %s", quote(q, sizeof q, s));
	if (hl >= hostlen || hl > 253)
		return fail(why, whylen, "host name too long in %s", quote(q, sizeof q, s));
	memcpy(host, h, hl);
	host[hl] = '\0';

	if (s[0] == '[') {
		struct in6_addr a6;
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return fail(why, whylen, "not an IPv6 address: %s",
			            quote(q, sizeof q, host));
	} else if (!valid_host(host)) {
		return fail(why, whylen, "invalid host %s", quote(q, sizeof q, host));
	}

	const char *p = colon + 1;
	uint64_t v;
	if (*p == '\0')
		return fail(why, whylen, "missing port in %s", quote(q, sizeof q, s));
	int rc = parse_u64(p, strlen(p), 65535, &v);
	if (rc == -1)
		return fail(why, whylen, "invalid port %s", quote(q, sizeof q, p));
	if (rc == -2 || (v == 0 && !allow_zero))
		return fail(why, whylen, "port %s out of range (%d-65535)", p, allow_zero ? 0 : 1);
	*port = (unsigned)v;
	return 0;
}

int config_split_hostport(const char *s, char *host, size_t hostlen, unsigned *port,
                          bool allow_zero)
{
	if (s == NULL || host == NULL || hostlen == 0 || port == NULL)
		return -1;
	return split_hostport(s, host, hostlen, port, allow_zero, NULL, 0);
}

/* True for the "any address" hosts a server may bind but nobody can dial. */
static bool is_wildcard_host(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return a4.s_addr == htonl(INADDR_ANY);
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return memcmp(&a6, &in6addr_any, sizeof a6) == 0;
	return false;
}

/* The host part of an address we already validated. */
static bool addr_is_wildcard(const char *addr)
{
	char host[256];
	unsigned port;
	return addr != NULL &&
	       split_hostport(addr, host, sizeof host, &port, false, NULL, 0) == 0 &&
	       is_wildcard_host(host);
}

static int set_string(struct parser *p, char **field, const char *value)
{
	char *copy = strdup(value);
	if (copy == NULL)
		return fail(p->err, p->errlen, "out of memory");
	free(*field);
	*field = copy;
	return 0;
}

static int append_join(struct parser *p, const char *name, const char *value)
{
	char q[96], why[160], host[256];
	unsigned port;
	const char *s = value;
	for (;;) {
		const char *end = strchr(s, ',');
		size_t n = end != NULL ? (size_t)(end - s) : strlen(s);
		/* tolerate "a, b": spaces around entries are a common way to write lists */
		while (n > 0 && (*s == ' ' || *s == '\t')) {
			s++;
			n--;
		}
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (n == 0)
			return fail(p->err, p->errlen, "%s: empty address in %s", name,
			            quote(q, sizeof q, value));
		if (p->c->n_join == CONFIG_MAX_JOIN)
			return fail(p->err, p->errlen, "%s: too many addresses (at most %d)", name,
			            CONFIG_MAX_JOIN);
		char *entry = strndup(s, n);
		if (entry == NULL)
			return fail(p->err, p->errlen, "out of memory");
		if (split_hostport(entry, host, sizeof host, &port, false, why, sizeof why) != 0) {
			free(entry);
			return fail(p->err, p->errlen, "%s: %s", name, why);
		}
		p->c->join[p->c->n_join++] = entry;
		if (end == NULL)
			return 0;
		s = end + 1;
	}
}

/* Parses `value` for option `i` and stores it; the error names the flag (and the variable
 * when the value came from the environment). */
static int set_option(struct parser *p, size_t i, const char *value, enum origin origin)
{
	const struct option *o = &options[i];
	void *field = (char *)p->c + o->off;
	char name[96], q[96], why[160], host[256];
	unsigned port;
	uint64_t v;
	int rc;

	who(name, sizeof name, o, origin);
	if (value[0] == '\0' && o->kind != K_BOOL)
		return fail(p->err, p->errlen, "%s: empty value", name);

	switch (o->kind) {
	case K_NODE_ID:
		if (!valid_node_id(value))
			return fail(
			    p->err, p->errlen,
			    "%s: invalid node id %s: use 1-64 characters of A-Z a-z 0-9 . _ -",
			    name, quote(q, sizeof q, value));
		return set_string(p, field, value);
	case K_RAFT_ADDR: {
		struct in_addr a4;
		if (split_hostport(value, host, sizeof host, &port, false, why, sizeof why) != 0)
			return fail(p->err, p->errlen, "%s: %s", name, why);
		/* libraft 0.15's TCP transport parses only numeric IPv4, and the address is
		 * what peers dial, so a name, IPv6 or the wildcard would fail later and worse. */
		if (inet_pton(AF_INET, host, &a4) != 1)
			return fail(
			    p->err, p->errlen,
			    "%s: must be a numeric IPv4 address and port (a.b.c.d:port), got %s",
			    name, quote(q, sizeof q, value));
		if (a4.s_addr == htonl(INADDR_ANY))
			return fail(p->err, p->errlen,
			            "%s: 0.0.0.0 cannot be used: peers dial this address, so give "
			            "this node's own IPv4 address",
			            name);
		return set_string(p, field, value);
	}
	case K_HOSTPORT:
		if (split_hostport(value, host, sizeof host, &port, false, why, sizeof why) != 0)
			return fail(p->err, p->errlen, "%s: %s", name, why);
		return set_string(p, field, value);
	case K_PATH:
		return set_string(p, field, value);
	case K_BOOL:
		if (!parse_bool(value, field))
			return fail(p->err, p->errlen,
			            "%s: not a boolean (true|1|yes|false|0|no): %s", name,
			            quote(q, sizeof q, value));
		return 0;
	case K_JOIN:
		return append_join(p, name, value);
	case K_UINT_POS:
	case K_UINT:
		rc = parse_u64(value, strlen(value), UINT_MAX, &v);
		if (rc == -2)
			return fail(p->err, p->errlen, "%s: too large (at most %u): %s", name,
			            UINT_MAX, quote(q, sizeof q, value));
		if (rc != 0 || (o->kind == K_UINT_POS && v == 0))
			return fail(p->err, p->errlen, "%s: not a %s integer: %s", name,
			            o->kind == K_UINT_POS ? "positive" : "non-negative",
			            quote(q, sizeof q, value));
		*(unsigned *)field = (unsigned)v;
		return 0;
	case K_SIZE: {
		size_t n = strlen(value);
		uint64_t mult = 1;
		char last = value[n - 1];
		if (last == 'k' || last == 'K')
			mult = 1024;
		else if (last == 'm' || last == 'M')
			mult = 1024 * 1024;
		if (mult != 1)
			n--;
		rc = parse_u64(value, n, SIZE_MAX / mult, &v);
		if (rc == -2)
			return fail(p->err, p->errlen, "%s: too large: %s", name,
			            quote(q, sizeof q, value));
		if (rc != 0 || v == 0)
			return fail(p->err, p->errlen,
			            "%s: not a positive size in bytes (e.g. 524288, 512k, 1m): %s",
			            name, quote(q, sizeof q, value));
		*(size_t *)field = (size_t)(v * mult);
		return 0;
	}
	case K_LOG_LEVEL: {
		static const char *const levels[] = {"debug", "info", "warn", "error"};
		for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++)
			if (strcasecmp(value, levels[l]) == 0)
				return set_string(p, field, levels[l]);
		return fail(p->err, p->errlen, "%s: must be debug, info, warn or error, got %s",
		            name, quote(q, sizeof q, value));
	}
	}
	return fail(p->err, p->errlen, "%s: internal error: unknown option kind", name);
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

/* An unknown flag as typed, for "unknown flag --foo"; quoted only when it holds characters
 * that would make the message ambiguous or break it across lines. */
static const char *flag_name(char *dst, size_t size, const char *arg, size_t len)
{
	char tmp[64];
	bool plain = len < sizeof tmp;
	for (size_t i = 0; i < len && plain; i++)
		plain = arg[i] > 0x20 && arg[i] < 0x7f && arg[i] != '"';
	if (plain) {
		snprintf(dst, size, "%.*s", (int)len, arg);
		return dst;
	}
	snprintf(tmp, sizeof tmp, "%.*s", (int)(len < sizeof tmp - 1 ? len : sizeof tmp - 1), arg);
	return quote(dst, size, tmp);
}

/* Returns 0 to go on, CONFIG_HELP/CONFIG_VERSION to stop, or -1 with err set. */
static int parse_flags(struct parser *p, int argc, char *const argv[])
{
	char q[96];
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a];
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
			return CONFIG_HELP;
		if (strcmp(arg, "--version") == 0)
			return CONFIG_VERSION;
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			if (arg[0] == '-' && arg[1] != '\0' && arg[1] != '-')
				return fail(p->err, p->errlen, "unknown flag %s (see --help)",
				            flag_name(q, sizeof q, arg, strlen(arg)));
			return fail(p->err, p->errlen,
			            "unexpected argument %s: settings are given as --flag value or "
			            "--flag=value (see --help)",
			            quote(q, sizeof q, arg));
		}

		const char *eq = strchr(arg, '=');
		size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
		size_t i;
		for (i = 0; i < N_OPTIONS; i++)
			if (strlen(options[i].flag) == len &&
			    strncmp(options[i].flag, arg, len) == 0)
				break;
		if (i == N_OPTIONS) {
			if ((len == 6 && strncmp(arg, "--help", 6) == 0) ||
			    (len == 9 && strncmp(arg, "--version", 9) == 0))
				return fail(p->err, p->errlen, "%.*s takes no value", (int)len,
				            arg);
			return fail(p->err, p->errlen, "unknown flag %s (see --help)",
			            flag_name(q, sizeof q, arg, len));
		}

		const char *value;
		if (eq != NULL) {
			value = eq + 1;
		} else if (options[i].kind == K_BOOL) {
			value = "true";
		} else if (a + 1 < argc && strncmp(argv[a + 1], "--", 2) != 0) {
			/* A following "--flag" is taken as a forgotten value, not as the value:
			 * "--join --bootstrap" should not join a host called --bootstrap. */
			value = argv[++a];
		} else {
			return fail(p->err, p->errlen, "%s: missing value", options[i].flag);
		}
		/* --join accumulates over repeated flags; any other flag simply overwrites. */
		if (set_option(p, i, value, FROM_FLAG) != 0)
			return -1;
		p->origin[i] = FROM_FLAG;
	}
	return 0;
}

/* The table row of a field, for messages about combinations of settings. */
static size_t option_index(size_t off)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].off == off)
			return i;
	abort(); /* every field named in check_combinations has a row */
}

static int check_combinations(struct parser *p)
{
	struct config *c = p->c;
	char n1[96], n2[96];
	size_t i_boot = option_index(offsetof(struct config, bootstrap));
	size_t i_join = option_index(offsetof(struct config, join));
	size_t i_hb = option_index(offsetof(struct config, heartbeat_ms));
	size_t i_el = option_index(offsetof(struct config, election_ms));
	size_t i_http = option_index(offsetof(struct config, http_addr));
	size_t i_adv = option_index(offsetof(struct config, advertise_http));
	size_t i_met = option_index(offsetof(struct config, metrics_addr));

	if (c->node_id == NULL)
		return fail(p->err, p->errlen, "--node-id is required (or CLOUDLESS_RAFT_ID)");
	if (c->bootstrap && c->n_join > 0)
		return fail(p->err, p->errlen,
		            "%s and %s are mutually exclusive: bootstrap the first node only and "
		            "join the others",
		            who(n1, sizeof n1, &options[i_boot], p->origin[i_boot]),
		            who(n2, sizeof n2, &options[i_join], p->origin[i_join]));
	/* Followers wait one election timeout without a heartbeat before campaigning; below
	 * 2x a single delayed heartbeat already triggers needless elections. */
	if ((uint64_t)c->election_ms < 2 * (uint64_t)c->heartbeat_ms)
		return fail(p->err, p->errlen, "%s must be at least twice %s (%u < 2 * %u)",
		            who(n1, sizeof n1, &options[i_el], p->origin[i_el]),
		            who(n2, sizeof n2, &options[i_hb], p->origin[i_hb]), c->election_ms,
		            c->heartbeat_ms);
	if (c->metrics_addr != NULL && strcmp(c->metrics_addr, c->http_addr) == 0)
		return fail(p->err, p->errlen, "%s must differ from %s (both are %s)",
		            who(n1, sizeof n1, &options[i_met], p->origin[i_met]),
		            who(n2, sizeof n2, &options[i_http], p->origin[i_http]), c->http_addr);
	if (c->advertise_http != NULL) {
		if (addr_is_wildcard(c->advertise_http))
			return fail(p->err, p->errlen,
			            "%s: %s is a wildcard address other nodes cannot dial",
			            who(n1, sizeof n1, &options[i_adv], p->origin[i_adv]),
			            c->advertise_http);
	} else {
		/* Followers forward writes to the leader's advertised address, so a wildcard
		 * would have them dial 0.0.0.0, i.e. themselves. */
		if (addr_is_wildcard(c->http_addr))
			return fail(p->err, p->errlen,
			            "--advertise-http is required when %s listens on a wildcard "
			            "address (%s): give the address other nodes reach this one at",
			            who(n1, sizeof n1, &options[i_http], p->origin[i_http]),
			            c->http_addr);
		c->advertise_http = strdup(c->http_addr);
		if (c->advertise_http == NULL)
			return fail(p->err, p->errlen, "out of memory");
	}
	return 0;
}

enum config_result config_parse(struct config *c, int argc, char *const argv[], char *const envp[],
                                char *err, size_t errlen)
{
	struct parser p = {.c = c, .err = err, .errlen = errlen};
	int rc;

	memset(c, 0, sizeof *c);
	if (err != NULL && errlen > 0)
		err[0] = '\0';

	rc = parse_flags(&p, argc, argv);
	if (rc != 0)
		goto out;

	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (p.origin[i] != FROM_NONE)
			continue;
		const char *v = env_lookup(envp, options[i].env);
		if (v == NULL || v[0] == '\0')
			continue;
		rc = set_option(&p, i, v, FROM_ENV);
		if (rc != 0)
			goto out;
		p.origin[i] = FROM_ENV;
	}

	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (p.origin[i] != FROM_NONE || options[i].def == NULL)
			continue;
		rc = set_option(&p, i, options[i].def, FROM_DEFAULT);
		if (rc != 0)
			goto out;
		p.origin[i] = FROM_DEFAULT;
	}

	rc = check_combinations(&p);
out:
	if (rc == 0)
		return CONFIG_OK;
	/* On help, version and errors the caller gets an empty config and nothing to free. */
	config_close(c);
	if (rc == CONFIG_HELP || rc == CONFIG_VERSION)
		return (enum config_result)rc;
	return CONFIG_ERROR;
}

void config_close(struct config *c)
{
	if (c == NULL)
		return;
	free(c->node_id);
	free(c->raft_addr);
	free(c->http_addr);
	free(c->advertise_http);
	free(c->metrics_addr);
	free(c->data_dir);
	free(c->log_level);
	for (size_t i = 0; i < CONFIG_MAX_JOIN; i++)
		free(c->join[i]);
	memset(c, 0, sizeof *c);
}

/* --help: built from the options table on first use. */

#define USAGE_WIDTH  80
#define USAGE_INDENT 30

struct text {
	char *p;
	size_t len, cap;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	/* The text is fixed at compile time, so running out of room is a bug the unit test
	 * catches; abort rather than hand out a silently truncated help. */
	if (n < 0 || (size_t)n >= t->cap - t->len) {
		fprintf(stderr, "config: usage text buffer too small\n");
		abort();
	}
	t->len += (size_t)n;
}

/* Greedy word wrap of `s` into the help column; the first line continues the current one. */
static void text_wrap(struct text *t, const char *s, size_t col)
{
	size_t used = col;
	while (*s != '\0') {
		size_t w = strcspn(s, " ");
		if (used > USAGE_INDENT && used + 1 + w > USAGE_WIDTH) {
			text_add(t, "\n%*s", USAGE_INDENT, "");
			used = USAGE_INDENT;
		} else if (used > USAGE_INDENT) {
			text_add(t, " ");
			used++;
		}
		text_add(t, "%.*s", (int)w, s);
		used += w;
		s += w;
		while (*s == ' ')
			s++;
	}
	text_add(t, "\n");
}

static void text_option(struct text *t, const char *left, const char *help)
{
	size_t col = (size_t)snprintf(NULL, 0, "  %s", left);
	text_add(t, "  %s", left);
	if (col + 2 > USAGE_INDENT) {
		text_add(t, "\n%*s", USAGE_INDENT, "");
		col = USAGE_INDENT;
	} else {
		text_add(t, "%*s", (int)(USAGE_INDENT - col), "");
		col = USAGE_INDENT;
	}
	text_wrap(t, help, col);
}

const char *config_usage(void)
{
	static char usage[8192];
	static bool built;
	struct text t = {usage, 0, sizeof usage};
	char left[64], line[160];

	if (built)
		return usage;
	text_add(&t, "Usage: cloudless-coordinator --node-id ID [options]\n\n");
	text_add(&t,
	         "Runs one member of a Cloudless coordinator cluster: a key-value store\n"
	         "replicated with raft and served over HTTP. Start the first node with\n"
	         "--bootstrap, then each other node with --join naming the HTTP address of any\n"
	         "running member, which asks the cluster to add it. A restarted node resumes\n"
	         "from the state in --data-dir.\n"
	         "\n"
	         "Every flag can also be set by the environment variable shown under it; a flag\n"
	         "wins over its variable, and a variable over the default. Give values as\n"
	         "--flag value or --flag=value; boolean variables take true|1|yes|false|0|no,\n"
	         "and an empty variable counts as unset.\n\n");
	text_add(&t, "Options:\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];
		if (o->metavar != NULL)
			snprintf(left, sizeof left, "%s %s", o->flag, o->metavar);
		else
			snprintf(left, sizeof left, "%s", o->flag);
		text_option(&t, left, o->help);
		if (o->def == NULL && o->def_text != NULL && strcmp(o->def_text, "required") == 0)
			snprintf(line, sizeof line, "env %s; required", o->env);
		else
			snprintf(line, sizeof line, "env %s; default %s", o->env,
			         o->def != NULL ? o->def
			                        : (o->def_text != NULL ? o->def_text : "none"));
		text_add(&t, "%*s", USAGE_INDENT, "");
		text_wrap(&t, line, USAGE_INDENT);
	}
	text_option(&t, "-h, --help", "Print this help and exit.");
	text_option(&t, "--version", "Print the version and exit.");
	text_add(
	    &t,
	    "\nExamples:\n"
	    "  # Bootstrap the first node of a new cluster:\n"
	    "  cloudless-coordinator --node-id n1 --raft-addr 10.0.0.1:7000 \\\n"
	    "      --http-addr 10.0.0.1:8080 --data-dir /var/lib/cloudless --bootstrap\n"
	    "\n"
	    "  # Join the other nodes through any member's HTTP address:\n"
	    "  cloudless-coordinator --node-id n2 --raft-addr 10.0.0.2:7000 \\\n"
	    "      --http-addr 10.0.0.2:8080 --data-dir /var/lib/cloudless \\\n"
	    "      --join 10.0.0.1:8080\n"
	    "  cloudless-coordinator --node-id n3 --raft-addr 10.0.0.3:7000 \\\n"
	    "      --http-addr 0.0.0.0:8080 --advertise-http 10.0.0.3:8080 \\\n"
	    "      --data-dir /var/lib/cloudless --join 10.0.0.1:8080,10.0.0.2:8080\n"
	    "\n"
	    "  # The same with environment variables, e.g. in a container:\n"
	    "  CLOUDLESS_RAFT_ID=n2 CLOUDLESS_RAFT_ADDR=10.0.0.2:7000 \\\n"
	    "      CLOUDLESS_HTTP_ADDR=10.0.0.2:8080 CLOUDLESS_RAFT_JOIN_ADDR=10.0.0.1:8080 \\\n"
	    "      cloudless-coordinator\n");
	built = true;
	return usage;
}

/* Makes one directory level exist; `path` is a prefix of the data dir. */
static int ensure_dir(const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return fail(err, errlen, "--data-dir: %s exists and is not a directory",
			            path);
		return 0;
	}
	if (errno == ENOENT) {
		/* 0700: the directory holds the whole replicated state; umask can only narrow it */
		if (mkdir(path, 0700) == 0)
			return 0;
		if (errno == EEXIST) /* somebody raced us to it: judge what is there now */
			return ensure_dir(path, err, errlen);
	}
	return fail(err, errlen, "--data-dir: cannot create %s: %s", path, strerror(errno));
}

int config_prepare_data_dir(const struct config *c, char *err, size_t errlen)
{
	if (c == NULL || c->data_dir == NULL || c->data_dir[0] == '\0')
		return fail(err, errlen, "--data-dir: no directory given");

	/* mkdir -p: walk the path, making each prefix exist in turn. */
	char *path = strdup(c->data_dir);
	if (path == NULL)
		return fail(err, errlen, "--data-dir: out of memory");
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		/* skip the empty components of "a//b" and a trailing slash */
		if (p[-1] != '/' && ensure_dir(path, err, errlen) != 0) {
			free(path);
			return -1;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	/* the root "/" or a path of only slashes never went through ensure_dir */
	int rc = ensure_dir(path, err, errlen);
	free(path);
	if (rc != 0)
		return -1;

	/* access(W_OK) says yes to root on a read-only mount and no to nothing we can see
	 * coming (quota, full disk), so prove writability by creating and writing a file. */
	size_t n = strlen(c->data_dir) + sizeof "/.cloudless-write-test-XXXXXX";
	char *probe = malloc(n);
	if (probe == NULL)
		return fail(err, errlen, "--data-dir: out of memory");
	snprintf(probe, n, "%s/.cloudless-write-test-XXXXXX", c->data_dir);
	int fd = mkostemp(probe, O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		free(probe);
		return fail(err, errlen, "--data-dir: %s is not writable: %s", c->data_dir,
		            strerror(e));
	}
	rc = 0;
	ssize_t w = write(fd, "x", 1);
	int e = w < 0 ? errno : ENOSPC;
	if (w != 1)
		rc = fail(err, errlen, "--data-dir: %s is not writable: %s", c->data_dir,
		          strerror(e));
	if (close(fd) != 0 && rc == 0)
		rc = fail(err, errlen, "--data-dir: %s is not writable: %s", c->data_dir,
		          strerror(errno));
	if (unlink(probe) != 0 && rc == 0)
		rc = fail(err, errlen, "--data-dir: cannot remove %s: %s", probe, strerror(errno));
	free(probe);
	return rc;
}
