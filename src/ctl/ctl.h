/* ctl: what cloudlessctl's verb groups share.
 *
 * cloudlessctl is `cloudlessctl [global flags] GROUP VERB [args] [flags]`. main.c owns the
 * global flags (--endpoints, --output, --timeout), the dispatch and --help; each verb group
 * is one file that exports a struct ctl_group (cluster.c, kv.c, workload.c, agent.c) listing
 * its verbs: name, arguments, help, its own flag table and the function that runs it. Adding a
 * group is that file, its line in main.c's group list and in meson.build.
 *
 * A verb builds requests, sends them through ctl/client.c (endpoint failover) and prints:
 * with -o json the API's JSON documents unchanged, so jq pipelines see what curl would;
 * otherwise a table made by a pure renderer (JSON in, text out), declared below so that
 * tests/unit/test_ctl_output.c can check each one against golden files.
 *
 * Exit status: 0 success; 1 the cluster answered with an error (a 4xx/5xx, or a health
 * check that failed); 2 wrong usage (one line on stderr with a hint); 3 no endpoint could
 * be reached or none answered in time. A verb that catches SIGINT (workload watch) ends with
 * CTL_EXIT_INTERRUPTED from its requests and decides what that means (watch: success). */
#ifndef CLOUDLESS_CTL_CTL_H
#define CLOUDLESS_CTL_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ctl/client.h"
#include "flags/flags.h"
#include "util/buf.h"

enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_ERROR = 1,
	CTL_EXIT_USAGE = 2,
	CTL_EXIT_UNREACHABLE = 3,
	CTL_EXIT_INTERRUPTED = 130, /* 128 + SIGINT, as a shell reports a command it stopped */
};

enum ctl_output { CTL_OUTPUT_TABLE, CTL_OUTPUT_JSON };

/* The global flags (main.c's table points into this). */
struct ctl_globals {
	struct flags_list endpoints;
	char *output;
	unsigned timeout_ms;
	/* TLS (main.c, tls_setup): any of these makes host:port endpoints https. */
	char *ca_file, *cert_file, *key_file;
	char *token; /* --token, CLOUDLESS_TOKEN: NAME.SECRET sent as Authorization: Bearer */
};

struct ctl {
	struct ctl_globals g;
	enum ctl_output output;
	struct ctl_client client;
	bool timeout_given;       /* --timeout was on the command line (not the default) */
	const char *group, *verb; /* for messages */
};

struct ctl_verb {
	const char *name;
	const char *args;    /* the synopsis of its arguments, e.g. "KEY VALUE|-" */
	const char *summary; /* one line for the command list */
	const char *help;    /* a paragraph for its --help */
	const struct flags_option *opts;
	size_t n_opts;
	size_t opts_size; /* the struct opts point into; zeroed and passed to run */
	size_t min_args, max_args;
	int (*run)(struct ctl *c, void *opts, char **args, size_t n_args);
};

struct ctl_group {
	const char *name;
	const char *summary;
	const struct ctl_verb *verbs;
	size_t n_verbs;
};

extern const struct ctl_group ctl_group_cluster;
extern const struct ctl_group ctl_group_kv;
extern const struct ctl_group ctl_group_workload;
extern const struct ctl_group ctl_group_agent;

/* Flag rows more than one verb has: `type` is the verb's options struct. */
#define CTL_OPT_IDEMPOTENCY_KEY(type, field)                                                       \
	{                                                                                          \
		.flag = "--idempotency-key", .kind = FLAGS_STRING, .off = offsetof(type, field),   \
		.metavar = "KEY",                                                                  \
		.help =                                                                            \
		    "Names this write so that repeating it (by you, or by cloudlessctl at "        \
		    "another "                                                                     \
		    "endpoint after a timeout) applies it once and answers with the first result." \
	}
#define CTL_OPT_STALE(type, field)                                                               \
	{                                                                                        \
		.flag = "--stale", .kind = FLAGS_BOOL, .off = offsetof(type, field),             \
		.help =                                                                          \
		    "Read the answering member's local state (maybe behind the leader) instead " \
		    "of a linearizable read through the leader."                                 \
	}

/* ---- helpers for verbs (verb.c) ---------------------------------------------------------- */

/* Prints "cloudlessctl: GROUP VERB: message (see 'cloudlessctl GROUP VERB --help')" and
 * returns CTL_EXIT_USAGE. */
int ctl_usage_error(const struct ctl *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Sends req with failover. CTL_EXIT_OK with *resp filled when a 2xx answer came; otherwise
 * the error is printed (one line) and its exit status returned, *resp freed - except that
 * with `keep_errors` an answered 4xx/5xx is kept in *resp (for verbs that print it). */
int ctl_send(struct ctl *c, const struct ctl_request *req, struct ctl_response *resp,
             bool keep_errors);
/* ctl_send for verbs that wait on the cluster (watch, drain --wait): what an election or a
 * restart gives - no endpoint reachable, 503, 504, 429 - is asked again, quietly and with
 * backoff, until --timeout passed; only then is it the verb's error. */
int ctl_send_patient(struct ctl *c, const struct ctl_request *req, struct ctl_response *resp,
                     bool keep_errors);
/* A write: `path` (which may have a query) gets ?timeout=--timeout, so the cluster answers 504
 * at the deadline rather than being cut off; the key becomes Idempotency-Key and if_version
 * (when set) If-Match. It is repeated at another endpoint after an attempt whose outcome is
 * unknown only when it carries a key: the leader then answers a repeat with the first
 * result, while a plain repeat could apply twice, or fail a comparison its own first attempt
 * changed and report a conflict that is not one. */
struct ctl_write {
	const char *method;
	const char *path;
	const void *body; /* NULL: none */
	size_t body_len;
	bool json_body; /* sent as application/json */
	const char *idempotency_key;
	const struct flags_opt_u64 *if_version;
};
int ctl_send_write(struct ctl *c, const struct ctl_write *w, struct ctl_response *resp);
/* Prints a write's 2xx answer and frees it: its body unchanged with -o json, else the line
 * of ctl_render_write for `key` and `action`. `answer` is the parsed body (NULL: parsed
 * here). */
int ctl_print_write(const struct ctl *c, struct ctl_response *resp, const json_t *answer,
                    const char *key, const char *action);
/* Prints the error line for an answered 4xx/5xx and returns CTL_EXIT_ERROR. */
int ctl_report_answer(const struct ctl *c, const struct ctl_response *resp);
/* Prints "cloudlessctl: message" on stderr and returns `code`. */
int ctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes the bytes to stdout (and a newline when `newline`); CTL_EXIT_ERROR if that fails
 * (a closed pipe, a full disk). */
int ctl_print(const char *data, size_t len, bool newline);
/* Runs a renderer on doc and prints what it made. */
int ctl_print_rendered(void (*render)(const json_t *, struct buf *), const json_t *doc);
/* Prints a 2xx answer: its body unchanged with -o json, else `render` of it. Frees resp. */
int ctl_print_answer(const struct ctl *c, struct ctl_response *resp,
                     void (*render)(const json_t *, struct buf *));
/* Prints a JSON value compactly, as the coordinator encodes its own answers. */
int ctl_print_json(const json_t *v);
/* Parses an answer's body as JSON; prints an error and returns NULL when it is not. */
json_t *ctl_parse_answer(const struct ctl_response *resp);
/* Appends the whole of file `path` ("-": stdin) to out. */
int ctl_read_input(struct ctl *c, const char *path, struct buf *out);

/* A listing (kv ls, workload list, agent list): GETs `path` (which has a query already:
 * "...?timeout=5000ms") with &limit and &continue, page after page, until the listing's
 * continue token is null or `max` items were listed (0: no limit), then prints it: with -o
 * json the only page's answer unchanged, or of several pages one listing document of the
 * API's shape ({"items": [...], "continue": <token or null>}); otherwise `render` of that
 * document, or `none` on stderr when there are no items (as kubectl get says "No resources
 * found"). */
int ctl_list_show(struct ctl *c, const char *path, unsigned max,
                  void (*render)(const json_t *, struct buf *), const char *none);
/* Appends s percent-encoded for a path segment or query value (every byte but A-Z a-z 0-9
 * - _ ~, so a key can hold '/', '.', '?' or '%' and stay one segment). */
void ctl_put_escaped(struct buf *b, const char *s, size_t len);

/* ---- renderers: JSON in, text out ------------------------------------------------------- */

/* cluster status: `status` is /raft/status (the leader's when it could be had: only the
 * leader reports each server's lag); `members` maps node ids to that member's own
 * /raft/status, for its applied index (a member missing from it was not reachable). */
void ctl_render_cluster_status(const json_t *status, const json_t *members, struct buf *out);
/* cluster leader and cluster members: from any member's /raft/status. */
void ctl_render_cluster_leader(const json_t *status, struct buf *out);
void ctl_render_cluster_members(const json_t *status, struct buf *out);
/* cluster health: the document cluster health prints with -o json (see cluster.c). */
void ctl_render_cluster_health(const json_t *report, struct buf *out);
/* cluster join, remove and transfer: the membership result of /raft/join & co. */
void ctl_render_membership(const json_t *result, struct buf *out);
/* kv put and kv del: their JSON answer. */
void ctl_render_kv_write(const json_t *result, struct buf *out);
/* kv ls: a listing, {"items":[...], "continue": ...}. */
void ctl_render_kv_list(const json_t *list, struct buf *out);
/* workload list: a listing of workloads. */
void ctl_render_workload_list(const json_t *list, struct buf *out);
/* workload get (and each change workload watch prints): the workload, its replicas. */
void ctl_render_workload(const json_t *workload, struct buf *out);
/* A table of replicas: for a workload with their agent and pending reason, for an agent
 * without. */
void ctl_render_replicas(const json_t *replicas, bool of_workload, struct buf *out);
/* agent list: a listing of agents. */
void ctl_render_agent_list(const json_t *list, struct buf *out);
/* agent get: the agent and the replicas assigned to it. */
void ctl_render_agent(const json_t *agent, struct buf *out);
/* agent drain --wait: the progress line for the agent's document as it is now. */
void ctl_render_drain_progress(const json_t *agent, struct buf *out);

#endif
