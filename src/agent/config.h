/* config: the agent's settings from command-line flags and CLOUDLESS_* environment variables
 * (a flag wins over its variable, a variable over the default), with --help built from the
 * same table as the parsing, as the coordinator's config does.
 *
 * Parsing validates everything without side effects and reports the first problem as one
 * line naming the flag (and the variable, when the value came from it); main() prints it. */
#ifndef CLOUDLESS_AGENT_CONFIG_H
#define CLOUDLESS_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flags/flags.h"

#define AGENT_CONFIG_MAX_COORDINATORS 16
#define AGENT_CONFIG_MAX_LABELS       64

struct agent_config {
	struct flags_list coordinators; /* --coordinators a,b,c (host:port) */
	char *node_id;                  /* --node-id; default: the host name */
	char *name;                     /* --name; NULL: the coordinator names it after the id */
	char *region, *zone;
	char *label_keys[AGENT_CONFIG_MAX_LABELS], *label_values[AGENT_CONFIG_MAX_LABELS];
	size_t n_labels;
	unsigned cpu_millicores; /* default: 1000 per online CPU */
	size_t memory_bytes;     /* default: MemTotal */
	char *data_dir;          /* default ./agent-data */
	unsigned heartbeat_ms;   /* 0: the interval the coordinator gives */
	char *log_level;
	char *metrics_addr; /* NULL: no listener */
	size_t replica_log_max_bytes;
	unsigned replica_log_max_files;
	unsigned assignments_wait_s; /* 0: no blocking query between heartbeats */
	bool stop_replicas_on_exit;
	/* TLS towards the coordinators: any of these makes the agent speak https (fwd_set_tls). */
	char *ca_file;   /* --ca-file: verifies the coordinators' certificates */
	char *cert_file; /* --cert-file: client certificate, for --tls-client-ca coordinators */
	char *key_file;  /* --key-file: its key (default: in cert_file) */
	char *token;     /* --token, CLOUDLESS_TOKEN: an enroll token (client.h, identity) */
};

enum agent_config_result {
	AGENT_CONFIG_OK = 0,
	AGENT_CONFIG_HELP = 1,
	AGENT_CONFIG_VERSION = 2,
	AGENT_CONFIG_ERROR = -1,
};

/* `envp` may be NULL (then the process environment is used). */
enum agent_config_result agent_config_parse(struct agent_config *c, int argc, char *const argv[],
                                            char *const envp[], char *err, size_t errlen);
void agent_config_close(struct agent_config *c);
const char *agent_config_usage(void);

/* This machine's capacity, the defaults of --cpu-millicores and --memory-bytes. */
unsigned agent_config_machine_millicores(void);
size_t agent_config_machine_memory(void);

#endif
