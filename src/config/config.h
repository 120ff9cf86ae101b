/* config: the coordinator's settings from command-line flags and CLOUDLESS_* environment
 * variables (a flag wins over its variable, a variable over the default).
 *
 * Parsing validates everything it can without side effects and reports the first problem as
 * one line naming the flag; config_prepare_data_dir() then creates the data dir and proves it
 * writable. main() prints the line and exits non-zero. */
#ifndef CLOUDLESS_CONFIG_CONFIG_H
#define CLOUDLESS_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_MAX_JOIN 16

struct config {
	char *node_id; /* --node-id, CLOUDLESS_RAFT_ID (required) */
	char *
	    raft_addr; /* --raft-addr, CLOUDLESS_RAFT_ADDR, default 127.0.0.1:7000 (IPv4 ip:port) */
	char *http_addr;      /* --http-addr, CLOUDLESS_HTTP_ADDR, default 127.0.0.1:8080 */
	char *advertise_http; /* --advertise-http, CLOUDLESS_ADVERTISE_HTTP; default = http_addr;
	                         required when http_addr binds 0.0.0.0 */
	char *metrics_addr; /* --metrics-addr, CLOUDLESS_METRICS_ADDR; NULL = no second listener */
	char *data_dir;     /* --data-dir, CLOUDLESS_DATA_DIR, default ./data */
	bool bootstrap;     /* --bootstrap, CLOUDLESS_BOOTSTRAP=true|1|yes */
	unsigned bootstrap_expect;   /* --bootstrap-expect, CLOUDLESS_BOOTSTRAP_EXPECT, 0 = off */
	char *join[CONFIG_MAX_JOIN]; /* --join a,b,c, CLOUDLESS_RAFT_JOIN_ADDR (HTTP host:port) */
	size_t n_join;
	unsigned heartbeat_ms; /* --heartbeat-ms, CLOUDLESS_HEARTBEAT_MS, default 50 */
	unsigned
	    election_ms; /* --election-ms, CLOUDLESS_ELECTION_MS, default 300; >= 2*heartbeat */
	char *log_level; /* --log-level, CLOUDLESS_LOG_LEVEL: debug|info|warn|error, default info */
	unsigned snapshot_threshold; /* --snapshot-threshold, CLOUDLESS_SNAPSHOT_THRESHOLD, default
	                                131072 */
	unsigned
	    snapshot_trailing; /* --snapshot-trailing, CLOUDLESS_SNAPSHOT_TRAILING, default 8192 */
	unsigned
	    health_max_lag;   /* --health-max-lag, CLOUDLESS_HEALTH_MAX_LAG, default 1000 entries */
	size_t max_body;      /* --max-body, CLOUDLESS_MAX_BODY, bytes, default 524288 (512 KiB) */
	size_t min_free_disk; /* --min-free-disk, CLOUDLESS_MIN_FREE_DISK, bytes, default 64 MiB */
	unsigned forward_timeout_ms; /* --forward-timeout-ms, CLOUDLESS_FORWARD_TIMEOUT_MS, default
	                                10000 */
	unsigned idempotency_ttl_s;  /* --idempotency-ttl, CLOUDLESS_IDEMPOTENCY_TTL, seconds,
	                                default 86400 */
	unsigned idempotency_max; /* --idempotency-max, CLOUDLESS_IDEMPOTENCY_MAX, default 100000 */
	unsigned agent_timeout_ms;   /* --agent-timeout-ms, CLOUDLESS_AGENT_TIMEOUT_MS, 3000 */
	unsigned agent_heartbeat_ms; /* --agent-heartbeat-ms, CLOUDLESS_AGENT_HEARTBEAT_MS, 1000 */
	unsigned
	    catch_up_timeout_ms;   /* --catch-up-timeout-ms, CLOUDLESS_CATCH_UP_TIMEOUT_MS, 60000 */
	unsigned connect_retry_ms; /* --connect-retry-ms, CLOUDLESS_CONNECT_RETRY_MS, default 100 */
	/* HTTP server limits (http/http.h): */
	unsigned http_max_connections; /* --http-max-connections, CLOUDLESS_HTTP_MAX_CONNECTIONS,
	                                  default 10000 */
	unsigned http_max_connections_per_ip; /* --http-max-connections-per-ip,
	                                         CLOUDLESS_HTTP_MAX_CONNECTIONS_PER_IP, 1024 */
	size_t http_max_buffered; /* --http-max-buffered, CLOUDLESS_HTTP_MAX_BUFFERED, 64 MiB */
	unsigned http_header_timeout_ms; /* --http-header-timeout-ms,
	                                    CLOUDLESS_HTTP_HEADER_TIMEOUT_MS, default 10000 */
	unsigned http_body_timeout_ms;   /* --http-body-timeout-ms, CLOUDLESS_HTTP_BODY_TIMEOUT_MS,
	                                    default 10000 */
	unsigned http_idle_timeout_ms;   /* --http-idle-timeout-ms, CLOUDLESS_HTTP_IDLE_TIMEOUT_MS,
	                                    default 120000 */
	/* TLS (http/tls.h; docs/operations.md "TLS"). With a certificate the HTTP API is https
	 * only, and so is everything this node sends its peers. */
	char *tls_cert;      /* --tls-cert, CLOUDLESS_TLS_CERT; NULL = plain HTTP */
	char *tls_key;       /* --tls-key, CLOUDLESS_TLS_KEY; given with tls_cert or not at all */
	char *tls_client_ca; /* --tls-client-ca, CLOUDLESS_TLS_CLIENT_CA; NULL = no client certs */
	char *ca_file;       /* --ca-file, CLOUDLESS_CA_FILE: verifies peers; NULL = system store */
	bool metrics_tls;    /* --metrics-tls, CLOUDLESS_METRICS_TLS: --metrics-addr is TLS too */
	/* Tokens (auth/auth.h; docs/operations.md "Authentication"). */
	char *auth_file;     /* --auth-file, CLOUDLESS_AUTH_FILE; NULL = protected mode */
	bool insecure;       /* --insecure, CLOUDLESS_INSECURE: no auth file, any client address */
	char *join_token;    /* --join-token, CLOUDLESS_JOIN_TOKEN: NAME.SECRET shown to peers */
	unsigned rate_limit; /* --rate-limit, CLOUDLESS_RATE_LIMIT: requests/s per token, 0 = off */
};

enum config_result {
	CONFIG_OK = 0,
	CONFIG_HELP = 1,    /* --help was given: print config_usage() and exit 0 */
	CONFIG_VERSION = 2, /* --version */
	CONFIG_ERROR = -1,  /* err holds one line naming the problem */
};

/* `envp` may be NULL (then getenv is used). The config owns every string it holds. */
enum config_result config_parse(struct config *c, int argc, char *const argv[], char *const envp[],
                                char *err, size_t errlen);
void config_close(struct config *c);
/* The --help text. */
const char *config_usage(void);
/* Creates data_dir (with parents) if needed and checks it is a writable directory. */
int config_prepare_data_dir(const struct config *c, char *err, size_t errlen);
/* Creates dir and its missing parents (mode 0700), failing when a part is not a directory;
 * the errors name --data-dir. */
int config_make_dirs(const char *dir, char *err, size_t errlen);
/* True when host:port names a loopback host (127.0.0.0/8, ::1, localhost). */
bool config_host_is_loopback(const char *hostport);
/* A --node-id: 1-64 characters of A-Z a-z 0-9 . _ - */
bool config_valid_node_id(const char *s);
/* A --raft-addr: a numeric IPv4 address (not 0.0.0.0) and a port; -1 with why (no flag name)
 * otherwise. */
int config_check_raft_addr(const char *value, char *why, size_t whylen);
/* Splits "host:port" (IPv4, hostname or [v6]) into host and port; -1 when malformed or the port
 * is not 1..65535 (0 allowed when allow_zero). host must hold at least 256 bytes. */
int config_split_hostport(const char *s, char *host, size_t hostlen, unsigned *port,
                          bool allow_zero);

#endif
