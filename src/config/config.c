/* config: the coordinator's settings from command-line flags and CLOUDLESS_* environment
 * variables (see config.h for the fields).
 *
 * Every setting is one row of the `options` table below: flag, variable, kind, default and
 * help text. Parsing, defaults, error messages and the --help text are all driven by that
 * table (the machinery is the shared flags/ library), so a flag cannot be documented with one
 * default and applied with another.
 *
 * Order of resolution, which gives "flag > env > default":
 *   1. argv, left to right (a repeated flag overwrites, except --join which appends);
 *   2. for every setting no flag set, its environment variable (an empty one counts as unset,
 *      as shells and compose files make "VAR=" easy to produce by accident);
 *   3. for everything still unset, the default, parsed by the same code as user input;
 *   4. checks that involve several settings (bootstrap vs join, election vs heartbeat,
 *      advertise address).
 * Steps 1-3 are flags_parse(); this file adds the coordinator's own kinds (node id, raft
 * address, the --join list, log level) and step 4. A variable is therefore only looked at,
 * and only validated, when no flag overrides it.
 *
 * config.c is a leaf: it links nothing else from the project but flags/ (not even util/buf,
 * so the config unit test stays small), and it never prints; main() does. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "flags/flags.h"

/* The kinds of the rows below: the coordinator's own (parsed by set_option) and the shared
 * ones of flags/. */
enum kind {
	K_NODE_ID = FLAGS_CUSTOM, /* char *: 1..64 of [A-Za-z0-9._-] */
	K_RAFT_ADDR,              /* char *: numeric IPv4 a.b.c.d:port */
	K_JOIN,      /* char *[CONFIG_MAX_JOIN] + n_join, comma-separated host:port list */
	K_LOG_LEVEL, /* char *: debug|info|warn|error, stored lower-case */
	K_HOSTPORT = FLAGS_HOSTPORT, /* char *: host:port, host a name, IPv4 or [IPv6] */
	K_PATH = FLAGS_STRING,       /* char *: non-empty path */
	K_BOOL = FLAGS_BOOL,         /* bool */
	K_UINT_POS = FLAGS_UINT_POS, /* unsigned, >= 1 */
	K_UINT = FLAGS_UINT,         /* unsigned, >= 0 */
	K_SIZE = FLAGS_SIZE,         /* size_t bytes, >= 1, optional k/K/m/M suffix */
};

#define F(field)      offsetof(struct config, field)
#define STRINGIFY_(x) #x
#define STRINGIFY(x)  STRINGIFY_(x)

/* Rows give the eight fields every setting has in order; the optional ones of struct
 * flags_option (short name, choices, ...) are zero here, which is what the warning is about. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct flags_option options[] = {
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
     "Deliberately start a new cluster with this node as its only voter (an empty data dir "
     "only). With --join as well, it first asks those peers and refuses to start if any of "
     "them already belongs to a cluster. Prefer --bootstrap-expect, which makes every "
     "node's command safe to re-run. --bootstrap=false turns it off."},
    {"--bootstrap-expect", "CLOUDLESS_BOOTSTRAP_EXPECT", K_UINT, F(bootstrap_expect), "N", "0",
     NULL,
     "Form a new cluster once N nodes started with the same --join list see each other "
     "(all of them become its voters); a node whose --join peers already form a cluster "
     "joins it instead, and a node whose data dir was lost rejoins as a replacement. Give "
     "every node the same --join a,b,c --bootstrap-expect N: re-running any node's own "
     "command is then always safe. 0 = off."},
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
     "the log instead of receiving a whole snapshot. A joining node that would replay more "
     "than this many entries gets a snapshot the leader takes for it."},
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
     "86400", NULL,
     "How long the result of a request with an Idempotency-Key is kept. The "
     "leader's value travels in each write it proposes, so nodes may differ (e.g. during a "
     "rolling change) without their states diverging."},
    {"--idempotency-max", "CLOUDLESS_IDEMPOTENCY_MAX", K_UINT_POS, F(idempotency_max), "N",
     "100000", NULL,
     "Most Idempotency-Key results kept at once (the leader's value applies, "
     "as for --idempotency-ttl)."},
    {"--agent-timeout-ms", "CLOUDLESS_AGENT_TIMEOUT_MS", K_UINT_POS, F(agent_timeout_ms), "MS",
     "3000", NULL,
     "An agent that has not heartbeated for this long is marked offline and its replicas "
     "are placed elsewhere (a new leader first gives every agent this long from its "
     "election)."},
    {"--agent-heartbeat-ms", "CLOUDLESS_AGENT_HEARTBEAT_MS", K_UINT_POS, F(agent_heartbeat_ms),
     "MS", "1000", NULL,
     "The heartbeat interval agents are told to use (at most a third of --agent-timeout-ms "
     "is sensible)."},
    {"--catch-up-timeout-ms", "CLOUDLESS_CATCH_UP_TIMEOUT_MS", K_UINT_POS, F(catch_up_timeout_ms),
     "MS", "60000", NULL,
     "A joining node whose catch-up makes no progress for this long (it never came up, or "
     "cannot keep up) is removed from the configuration again and its join answered 504."},
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
    /* TLS. One switch for the whole node: with a certificate the HTTP API serves only https,
     * and the node speaks https to its peers (forwarding, joins, discovery), so every member
     * of a cluster must be started the same way. */
    {"--tls-cert", "CLOUDLESS_TLS_CERT", K_PATH, F(tls_cert), "FILE", NULL, "none (plain HTTP)",
     "PEM certificate chain (this node's certificate first) to serve the HTTP API over TLS "
     "with; needs --tls-key. It must name the address others reach this node at "
     "(--advertise-http) as a subject alternative name (an IP or DNS entry). The node then "
     "also speaks https to the other coordinators, so give all of them a certificate. "
     "Read again on SIGHUP: new connections get the new one, a bad one keeps the old."},
    {"--tls-key", "CLOUDLESS_TLS_KEY", K_PATH, F(tls_key), "FILE", NULL, "none",
     "PEM private key (unencrypted) of --tls-cert. Read again on SIGHUP with it."},
    {"--tls-client-ca", "CLOUDLESS_TLS_CLIENT_CA", K_PATH, F(tls_client_ca), "FILE", NULL, "none",
     "PEM CA certificates: every HTTPS client must present a certificate issued by one of "
     "them (mutual TLS), the other coordinators included, which present their --tls-cert. "
     "Read again on SIGHUP."},
    {"--ca-file", "CLOUDLESS_CA_FILE", K_PATH, F(ca_file), "FILE", NULL, "the system's CAs",
     "PEM CA certificates the other coordinators' certificates are verified against when "
     "this node forwards, joins or asks them anything (needs --tls-cert). Read for each new "
     "connection."},
    {"--metrics-tls", "CLOUDLESS_METRICS_TLS", K_BOOL, F(metrics_tls), NULL, "false", NULL,
     "Serve --metrics-addr over TLS too, with the same certificate (and --tls-client-ca). "
     "Off by default: the second listener is for a scraper that may not speak TLS."},
    /* Tokens (src/auth/auth.h; docs/operations.md "Authentication"). Without an auth file
     * the node is in protected mode: it answers loopback clients only. */
    {"--auth-file", "CLOUDLESS_AUTH_FILE", K_PATH, F(auth_file), "FILE", NULL,
     "none (protected mode: loopback clients only)",
     "Tokens the HTTP API accepts, one `NAME SCOPES HASH` line each as `cloudless-coordinator "
     "hash-token` prints them; clients send `Authorization: Bearer NAME.SECRET`. Give every "
     "coordinator the same file. Read again on SIGHUP: a bad file keeps the one in use."},
    {"--insecure", "CLOUDLESS_INSECURE", K_BOOL, F(insecure), NULL, "false", NULL,
     "Without --auth-file, answer clients on any address, not only loopback ones. Needed to "
     "listen on a non-loopback address without an auth file; anyone who can reach the port "
     "can then do anything, run commands on every agent included."},
    {"--rate-limit", "CLOUDLESS_RATE_LIMIT", K_UINT, F(rate_limit), "N", "0", "0 (no limit)",
     "Requests a second each token of --auth-file may send to this node (bursts of up to N); "
     "more are answered 429 with Retry-After. Forwarded requests count on the leader too."},
    {"--join-token", "CLOUDLESS_JOIN_TOKEN", K_PATH, F(join_token), "NAME.SECRET", NULL, "none",
     "An operator token (NAME.SECRET) this node presents to the other coordinators: to join "
     "them, and when it asks them for their status. Needed when the cluster has an auth file."},
};

#pragma GCC diagnostic pop

#undef F
#undef STRINGIFY
#undef STRINGIFY_

#define N_OPTIONS (sizeof options / sizeof options[0])

struct parser {
	struct config *c;
	enum flags_origin origin[N_OPTIONS];
	char *err;
	size_t errlen;
};

/* The shared helpers under the names the messages below were written with. */
#define fail  flags_fail
#define quote flags_quote
#define who   flags_who

bool config_valid_node_id(const char *s)
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

int config_split_hostport(const char *s, char *host, size_t hostlen, unsigned *port,
                          bool allow_zero)
{
	return flags_split_hostport(s, host, hostlen, port, allow_zero, NULL, 0);
}

int config_check_raft_addr(const char *value, char *why, size_t whylen)
{
	struct in_addr a4;
	char host[256], q[96];
	unsigned port;
	if (flags_split_hostport(value, host, sizeof host, &port, false, why, whylen) != 0)
		return -1;
	/* libraft 0.15's TCP transport parses only numeric IPv4, and the address is what peers
	 * dial, so a name, IPv6 or the wildcard would fail later and worse. */
	if (inet_pton(AF_INET, host, &a4) != 1)
		return fail(why, whylen,
		            "must be a numeric IPv4 address and port (a.b.c.d:port), got %s",
		            quote(q, sizeof q, value));
	if (a4.s_addr == htonl(INADDR_ANY))
		return fail(why, whylen,
		            "0.0.0.0 cannot be used: peers dial this address, so give this node's "
		            "own IPv4 address");
	return 0;
}

struct join_append {
	struct config *c;
	const char *name;
	char *err;
	size_t errlen;
};

static int append_join(char *entry, void *arg)
{
	struct join_append *j = arg;
	char why[160];
	if (j->c->n_join == CONFIG_MAX_JOIN) {
		free(entry);
		return fail(j->err, j->errlen, "%s: too many addresses (at most %d)", j->name,
		            CONFIG_MAX_JOIN);
	}
	if (flags_check_hostport(entry, why, sizeof why) != 0) {
		free(entry);
		return fail(j->err, j->errlen, "%s: %s", j->name, why);
	}
	j->c->join[j->c->n_join++] = entry;
	return 0;
}

/* Parses `value` for a row of one of the coordinator's own kinds (flags_parse calls it; the
 * shared kinds are parsed there). */
static int set_option(const struct flags_option *o, void *target, const char *value,
                      const char *name, char *err, size_t errlen)
{
	static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
	struct config *c = target;
	void *field = (char *)c + o->off;
	char q[96], why[160];

	switch (o->kind) {
	case K_NODE_ID:
		if (!config_valid_node_id(value))
			return fail(
			    err, errlen,
			    "%s: invalid node id %s: use 1-64 characters of A-Z a-z 0-9 . _ -",
			    name, quote(q, sizeof q, value));
		return flags_set_string(field, value, err, errlen);
	case K_RAFT_ADDR:
		if (config_check_raft_addr(value, why, sizeof why) != 0)
			return fail(err, errlen, "%s: %s", name, why);
		return flags_set_string(field, value, err, errlen);
	case K_JOIN: {
		/* --join accumulates over repeated flags. */
		struct join_append j = {c, name, err, errlen};
		return flags_split_list(value, name, "address", append_join, &j, err, errlen);
	}
	case K_LOG_LEVEL:
		return flags_set_choice(field, value, levels, name, err, errlen);
	}
	return fail(err, errlen, "%s: internal error: unknown option kind", name);
}

/* The table row of a field, for messages about combinations of settings. */
static size_t option_index(size_t off)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].off == off)
			return i;
	abort(); /* every field named in check_combinations has a row */
}

/* "--a needs --b (...)" for a setting given without the one it depends on. */
static int needs(struct parser *p, size_t off_a, size_t off_b, const char *why)
{
	char n1[96];
	size_t ia = option_index(off_a), ib = option_index(off_b);
	return fail(p->err, p->errlen, "%s needs %s: %s",
	            who(n1, sizeof n1, &options[ia], p->origin[ia]), options[ib].flag, why);
}

static int check_tls(struct parser *p)
{
	const struct config *c = p->c;
	if (c->tls_cert != NULL && c->tls_key == NULL)
		return needs(p, offsetof(struct config, tls_cert), offsetof(struct config, tls_key),
		             "the private key of the certificate");
	if (c->tls_key != NULL && c->tls_cert == NULL)
		return needs(p, offsetof(struct config, tls_key), offsetof(struct config, tls_cert),
		             "the certificate of the key");
	if (c->tls_client_ca != NULL && c->tls_cert == NULL)
		return needs(p, offsetof(struct config, tls_client_ca),
		             offsetof(struct config, tls_cert),
		             "client certificates are asked for only over TLS");
	if (c->ca_file != NULL && c->tls_cert == NULL)
		return needs(p, offsetof(struct config, ca_file), offsetof(struct config, tls_cert),
		             "the other coordinators are spoken to over https only when this one "
		             "serves TLS itself");
	if (c->metrics_tls && c->tls_cert == NULL)
		return needs(p, offsetof(struct config, metrics_tls),
		             offsetof(struct config, tls_cert), "the certificate to serve");
	if (c->metrics_tls && c->metrics_addr == NULL)
		return needs(p, offsetof(struct config, metrics_tls),
		             offsetof(struct config, metrics_addr),
		             "the listener to serve over TLS");
	return 0;
}

bool config_host_is_loopback(const char *hostport)
{
	char host[256];
	unsigned port;
	if (config_split_hostport(hostport, host, sizeof host, &port, true) != 0)
		return false;
	if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
	    strcmp(host, "[::1]") == 0)
		return true;
	struct in_addr a;
	return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* Protected mode (as Redis does): without an auth file the node answers loopback clients
 * only, so a listener anyone else can reach would refuse everyone; --insecure says that
 * everyone is meant to get in. */
static int check_protected(struct parser *p)
{
	struct config *c = p->c;
	if (c->auth_file != NULL || c->insecure)
		return 0;
	const char *addrs[] = {c->http_addr, c->metrics_addr};
	const char *flag[] = {"--http-addr", "--metrics-addr"};
	for (int i = 0; i < 2; i++)
		if (addrs[i] != NULL && !config_host_is_loopback(addrs[i]))
			return fail(
			    p->err, p->errlen,
			    "%s %s is not a loopback address and there is no --auth-file: give "
			    "one (cloudless-coordinator hash-token makes its lines), or "
			    "--insecure to let anyone who reaches the port do anything",
			    flag[i], addrs[i]);
	return 0;
}

static int check_combinations(struct parser *p)
{
	struct config *c = p->c;
	char n1[96], n2[96];
	size_t i_boot = option_index(offsetof(struct config, bootstrap));
	size_t i_join = option_index(offsetof(struct config, join));
	size_t i_bx = option_index(offsetof(struct config, bootstrap_expect));
	size_t i_hb = option_index(offsetof(struct config, heartbeat_ms));
	size_t i_el = option_index(offsetof(struct config, election_ms));
	size_t i_http = option_index(offsetof(struct config, http_addr));
	size_t i_adv = option_index(offsetof(struct config, advertise_http));
	size_t i_met = option_index(offsetof(struct config, metrics_addr));

	if (c->node_id == NULL)
		return fail(p->err, p->errlen, "--node-id is required (or CLOUDLESS_RAFT_ID)");
	if (c->bootstrap && c->bootstrap_expect > 0)
		return fail(p->err, p->errlen,
		            "%s and %s are mutually exclusive: --bootstrap creates a one-node "
		            "cluster, --bootstrap-expect forms one from several nodes",
		            who(n1, sizeof n1, &options[i_boot], p->origin[i_boot]),
		            who(n2, sizeof n2, &options[i_bx], p->origin[i_bx]));
	if (c->bootstrap_expect > 0 && c->n_join == 0)
		return fail(p->err, p->errlen,
		            "%s needs %s: the HTTP addresses of the nodes that form the cluster",
		            who(n1, sizeof n1, &options[i_bx], p->origin[i_bx]),
		            who(n2, sizeof n2, &options[i_join], p->origin[i_join]));
	if (c->bootstrap_expect > CONFIG_MAX_JOIN + 1)
		return fail(p->err, p->errlen, "%s: at most %d nodes",
		            who(n1, sizeof n1, &options[i_bx], p->origin[i_bx]),
		            CONFIG_MAX_JOIN + 1);
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
	if (check_tls(p) != 0)
		return -1;
	if (c->advertise_http != NULL) {
		if (flags_hostport_is_wildcard(c->advertise_http))
			return fail(p->err, p->errlen,
			            "%s: %s is a wildcard address other nodes cannot dial",
			            who(n1, sizeof n1, &options[i_adv], p->origin[i_adv]),
			            c->advertise_http);
	} else {
		/* Followers forward writes to the leader's advertised address, so a wildcard
		 * would have them dial 0.0.0.0, i.e. themselves. */
		if (flags_hostport_is_wildcard(c->http_addr))
			return fail(p->err, p->errlen,
			            "--advertise-http is required when %s listens on a wildcard "
			            "address (%s): give the address other nodes reach this one at",
			            who(n1, sizeof n1, &options[i_http], p->origin[i_http]),
			            c->http_addr);
		c->advertise_http = strdup(c->http_addr);
		if (c->advertise_http == NULL)
			return fail(p->err, p->errlen, "out of memory");
	}
	return check_protected(p);
}

enum config_result config_parse(struct config *c, int argc, char *const argv[], char *const envp[],
                                char *err, size_t errlen)
{
	struct parser p = {.c = c, .err = err, .errlen = errlen};
	struct flags_set set = {options, N_OPTIONS, c, p.origin};
	struct flags_spec spec = {.sets = &set, .n_sets = 1, .custom = set_option};
	int rc;

	memset(c, 0, sizeof *c);
	rc = flags_parse(&spec, argc, argv, envp, NULL, NULL, err, errlen);
	if (rc == FLAGS_OK)
		rc = check_combinations(&p);
	if (rc == 0)
		return CONFIG_OK;
	/* On help, version and errors the caller gets an empty config and nothing to free. */
	config_close(c);
	if (rc == FLAGS_HELP)
		return CONFIG_HELP;
	if (rc == FLAGS_VERSION)
		return CONFIG_VERSION;
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
	free(c->tls_cert);
	free(c->auth_file);
	free(c->join_token);
	free(c->tls_key);
	free(c->tls_client_ca);
	free(c->ca_file);
	for (size_t i = 0; i < CONFIG_MAX_JOIN; i++)
		free(c->join[i]);
	memset(c, 0, sizeof *c);
}

/* --help: built from the options table on first use. */

const char *config_usage(void)
{
	static char usage[16384];
	static bool built;
	struct flags_text t = {usage, 0, sizeof usage};

	if (built)
		return usage;
	flags_text_add(&t, "Usage: cloudless-coordinator --node-id ID [options]\n"
	                   "       cloudless-coordinator restore|recover --help   (offline "
	                   "commands)\n\n");
	flags_text_add(
	    &t, "Runs one member of a Cloudless coordinator cluster: a key-value store\n"
	        "replicated with raft and served over HTTP. Start every node with the same\n"
	        "--join list of all nodes' HTTP addresses and --bootstrap-expect N: they form\n"
	        "one cluster once N of them see each other. A restarted node resumes from the\n"
	        "state in --data-dir; one whose data dir was lost rejoins as a replacement when\n"
	        "started with the same command. A node can also be added later with --join\n"
	        "naming any running member.\n"
	        "\n"
	        "Every flag can also be set by the environment variable shown under it; a flag\n"
	        "wins over its variable, and a variable over the default. Give values as\n"
	        "--flag value or --flag=value; boolean variables take true|1|yes|false|0|no,\n"
	        "and an empty variable counts as unset.\n\n");
	flags_text_add(&t, "Options:\n");
	flags_text_options(&t, options, N_OPTIONS);
	flags_text_option(&t, "-h, --help", "Print this help and exit.");
	flags_text_option(&t, "--version", "Print the version and exit.");
	flags_text_add(
	    &t,
	    "\nExamples:\n"
	    "  # Three nodes that form one cluster (the same command shape on each):\n"
	    "  cloudless-coordinator --node-id n1 --raft-addr 10.0.0.1:7000 \\\n"
	    "      --http-addr 10.0.0.1:8080 --data-dir /var/lib/cloudless \\\n"
	    "      --join 10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 --bootstrap-expect 3\n"
	    "  cloudless-coordinator --node-id n3 --raft-addr 10.0.0.3:7000 \\\n"
	    "      --http-addr 0.0.0.0:8080 --advertise-http 10.0.0.3:8080 \\\n"
	    "      --data-dir /var/lib/cloudless \\\n"
	    "      --join 10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 --bootstrap-expect 3\n"
	    "\n"
	    "  # A one-node cluster, then another node added through any member:\n"
	    "  cloudless-coordinator --node-id n1 --raft-addr 10.0.0.1:7000 \\\n"
	    "      --http-addr 10.0.0.1:8080 --data-dir /var/lib/cloudless --bootstrap\n"
	    "  cloudless-coordinator --node-id n4 --raft-addr 10.0.0.4:7000 \\\n"
	    "      --http-addr 10.0.0.4:8080 --data-dir /var/lib/cloudless \\\n"
	    "      --join 10.0.0.1:8080\n"
	    "\n"
	    "  # The same with environment variables, e.g. in a container:\n"
	    "  CLOUDLESS_RAFT_ID=n2 CLOUDLESS_RAFT_ADDR=10.0.0.2:7000 \\\n"
	    "      CLOUDLESS_HTTP_ADDR=10.0.0.2:8080 CLOUDLESS_RAFT_JOIN_ADDR=10.0.0.1:8080 \\\n"
	    "      cloudless-coordinator\n"
	    "\n"
	    "Offline commands, on the data dir of a node that is not running:\n"
	    "  restore   a new one-node cluster from a backup (GET /v1/snapshot)\n"
	    "  recover   make the survivor of a lost quorum the only voter\n");
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

int config_make_dirs(const char *dir, char *err, size_t errlen)
{
	/* mkdir -p: walk the path, making each prefix exist in turn. */
	char *path = strdup(dir);
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
	return rc;
}

int config_prepare_data_dir(const struct config *c, char *err, size_t errlen)
{
	if (c == NULL || c->data_dir == NULL || c->data_dir[0] == '\0')
		return fail(err, errlen, "--data-dir: no directory given");
	if (config_make_dirs(c->data_dir, err, errlen) != 0)
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
	int rc = 0;
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
