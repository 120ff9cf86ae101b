/* offline: the `restore` and `recover` sub-commands (see offline.h; the data-dir work is
 * raft/offline.c). Each has its own flags table, parsed by flags/ as config.c parses the
 * server's, with the node id and raft address checked by config's own rules. */
#include "coordinator/offline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "flags/flags.h"
#include "log/log.h"
#include "raft/offline.h"

enum { K_NODE_ID = FLAGS_CUSTOM, K_RAFT_ADDR };

struct offline_args {
	char *from;
	char *data_dir;
	char *node_id;
	char *raft_addr;
};

#define A(f) offsetof(struct offline_args, f)
/* --data-dir, the same for both but for what it is. */
#define DATA_DIR_OPTION(text)                                                            \
	{                                                                                \
		.flag = "--data-dir", .env = "CLOUDLESS_DATA_DIR", .kind = FLAGS_STRING, \
		.off = A(data_dir), .metavar = "DIR", .required = true, .help = text     \
	}
static const struct flags_option restore_opts[] = {
    {.flag = "--from",
     .kind = FLAGS_STRING,
     .off = A(from),
     .metavar = "FILE",
     .required = true,
     .help = "The snapshot to restore: a file saved from GET /v1/snapshot (curl -o FILE). "
             "It is checked completely (header, checksum, every record) before anything "
             "is written."},
    DATA_DIR_OPTION("The new node's data dir: it must not exist, or be empty. It is built "
                    "beside it and renamed into place when complete."),
    {.flag = "--node-id",
     .env = "CLOUDLESS_RAFT_ID",
     .kind = K_NODE_ID,
     .off = A(node_id),
     .metavar = "ID",
     .required = true,
     .help = "The new node's --node-id (the one it will be started with)."},
    {.flag = "--raft-addr",
     .env = "CLOUDLESS_RAFT_ADDR",
     .kind = K_RAFT_ADDR,
     .off = A(raft_addr),
     .metavar = "IP:PORT",
     .required = true,
     .help = "The new node's --raft-addr: its address in the restored cluster's "
             "configuration (a numeric IPv4 address and port)."},
};
static const struct flags_option recover_opts[] = {
    DATA_DIR_OPTION("The surviving node's data dir. The node must be stopped."),
};
#undef DATA_DIR_OPTION
#undef A

struct offline_command {
	const char *name;
	const char *synopsis;
	const char *about;
	const struct flags_option *opts;
	size_t n_opts;
	int (*run)(const struct offline_args *a);
};

static int run_restore(const struct offline_args *a);
static int run_recover(const struct offline_args *a);

static const struct offline_command commands[] = {
    {"restore", "--from FILE --data-dir DIR --node-id ID --raft-addr IP:PORT",
     "Writes a new data dir from a backup (GET /v1/snapshot) whose node, started normally\n"
     "(no --bootstrap, no --join), is a one-voter cluster holding exactly the backed-up\n"
     "state; other nodes then join it with --join. The restored cluster is a new cluster:\n"
     "it gets a new cluster id, and the backed-up cluster's member records are dropped.\n"
     "A corrupt, truncated or foreign file is refused and nothing is written.",
     restore_opts, sizeof restore_opts / sizeof restore_opts[0], run_restore},
    {"recover", "--data-dir DIR",
     "After the permanent loss of a quorum (e.g. two of three data dirs gone for good),\n"
     "makes the stopped survivor the only voter of its cluster, keeping every entry its\n"
     "raft log holds; started normally it then leads alone, and new nodes join it with\n"
     "--join. Refused while a coordinator runs on the data dir. Run it on one survivor\n"
     "only (the one with the highest last index); wipe the others before they rejoin.",
     recover_opts, sizeof recover_opts / sizeof recover_opts[0], run_recover},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static int parse_custom(const struct flags_option *o, void *target, const char *value,
                        const char *name, char *err, size_t errlen)
{
	char why[160], q[96];
	char **field = (char **)((char *)target + o->off);
	if (o->kind == K_NODE_ID && !config_valid_node_id(value))
		return flags_fail(
		    err, errlen, "%s: invalid node id %s: use 1-64 characters of A-Z a-z 0-9 . _ -",
		    name, flags_quote(q, sizeof q, value));
	if (o->kind == K_RAFT_ADDR && config_check_raft_addr(value, why, sizeof why) != 0)
		return flags_fail(err, errlen, "%s: %s", name, why);
	return flags_set_string(field, value, err, errlen);
}

static void free_args(const struct offline_command *c, struct offline_args *a)
{
	flags_free(c->opts, c->n_opts, a);
	free(a->node_id);
	free(a->raft_addr);
	memset(a, 0, sizeof *a);
}

static void print_help(const struct offline_command *c)
{
	static char text[8192];
	struct flags_text t = {text, 0, sizeof text};
	flags_text_add(&t, "Usage: cloudless-coordinator %s %s\n\n%s\n\nOptions:\n", c->name,
	               c->synopsis, c->about);
	flags_text_options(&t, c->opts, c->n_opts);
	flags_text_option(&t, "-h, --help", "Print this help and exit.");
	flags_text_add(&t, "\nExit status: 0 done; 1 refused or failed (nothing was changed); 2 "
	                   "wrong usage.\nThe procedure: docs/operations.md.\n");
	fputs(text, stdout);
}

/* ---- restore ---- */

/* The whole file: images are read into memory by raft anyway. */
static int read_file(const char *path, char **data, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open --from %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "--from %s is not a regular file", path);
		close(fd);
		return -1;
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *buf = malloc(cap);
	if (buf == NULL) {
		snprintf(err, errlen, "--from %s: out of memory (%zu bytes)", path, cap);
		close(fd);
		return -1;
	}
	for (;;) {
		if (n == cap) {
			char *p = realloc(buf, cap *= 2);
			if (p == NULL)
				break;
			buf = p;
		}
		ssize_t got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			if (got < 0) {
				snprintf(err, errlen, "cannot read --from %s: %s", path,
				         strerror(errno));
				free(buf);
				close(fd);
				return -1;
			}
			break;
		}
		n += (size_t)got;
	}
	close(fd);
	*data = buf;
	*len = n;
	return 0;
}

static int run_restore(const struct offline_args *a)
{
	char err[512];
	char *image;
	size_t len;
	if (read_file(a->from, &image, &len, err, sizeof err) != 0) {
		fprintf(stderr, "cloudless-coordinator restore: %s; nothing was written\n", err);
		return 1;
	}
	struct offline_restore r = {.image = image,
	                            .image_len = len,
	                            .data_dir = a->data_dir,
	                            .node_id = a->node_id,
	                            .raft_addr = a->raft_addr};
	int rv = offline_restore(&r, err, sizeof err);
	free(image);
	if (rv != 0) {
		fprintf(stderr, "cloudless-coordinator restore: %s; nothing was written\n", err);
		return 1;
	}
	printf("Restored snapshot index %llu (%zu bytes) into %s\n", (unsigned long long)r.index,
	       len, a->data_dir);
	printf("  backup digests:     state %016llx (X-Cloudless-State-Digest), data %016llx "
	       "(X-Cloudless-Data-Digest)\n",
	       (unsigned long long)r.backup_digest.state, (unsigned long long)r.backup_digest.data);
	printf("  restored:           %llu records, data digest %016llx; the backed-up "
	       "cluster's member records dropped\n",
	       (unsigned long long)r.records, (unsigned long long)r.digest.data);
	printf("  new cluster:        %s, one voter: %s at %s (incarnation %s)\n", r.cluster_id,
	       a->node_id, a->raft_addr, r.incarnation);
	printf("Start it normally, without --bootstrap or --join:\n"
	       "  cloudless-coordinator --node-id %s --raft-addr %s --data-dir %s --http-addr "
	       "HOST:PORT\n"
	       "It leads alone; add the other nodes with --join HOST:PORT (its HTTP address).\n",
	       a->node_id, a->raft_addr, a->data_dir);
	return 0;
}

/* ---- recover ---- */

static const char *role_name(int role)
{
	return role == RAFT_VOTER ? "voter" : role == RAFT_STANDBY ? "standby" : "spare";
}

static void print_server(const struct offline_server *s, const char *self)
{
	printf("    %-24s %-8s %s%s\n", s->node_id[0] ? s->node_id : "(no member record)",
	       role_name(s->role), s->raft_addr,
	       strcmp(s->node_id, self) == 0 ? "  (this node)" : "");
}

static unsigned voters(const struct offline_recover *r)
{
	unsigned v = 0;
	for (unsigned i = 0; i < r->n_old; i++)
		v += r->old_conf[i].role == RAFT_VOTER;
	return v;
}

static int run_recover(const struct offline_args *a)
{
	char err[512];
	struct offline_recover r = {.data_dir = a->data_dir};
	if (offline_recover(&r, err, sizeof err) != 0) {
		fprintf(stderr, "cloudless-coordinator recover: %s; nothing was changed\n", err);
		return 1;
	}
	const char *self = r.ident.node_id;
	printf("%s %s in %s (cluster %s)\n", r.unchanged ? "Checked" : "Recovered", self,
	       a->data_dir, r.ident.cluster_id[0] ? r.ident.cluster_id : "unknown");
	printf("  raft log:           term %llu, last entry %llu (term %llu)",
	       (unsigned long long)r.term, (unsigned long long)r.last_index,
	       (unsigned long long)r.last_term);
	if (r.snapshot_index > 0)
		printf(", snapshot at %llu", (unsigned long long)r.snapshot_index);
	printf("; the store has applied %llu\n", (unsigned long long)r.applied_index);
	unsigned v = voters(&r);
	printf("  old configuration:  %u server%s, %u voter%s\n", r.n_old, r.n_old == 1 ? "" : "s",
	       v, v == 1 ? "" : "s");
	for (unsigned i = 0; i < r.n_old; i++)
		print_server(&r.old_conf[i], self);
	if (r.unchanged) {
		printf("%s is already the only voter: nothing to do.\n", self);
		return 0;
	}
	printf("  new configuration:  1 server, 1 voter, written as entry %llu\n",
	       (unsigned long long)r.conf_index);
	print_server(&r.new_conf, self);
	printf("  last index kept:    %llu (every entry of the log, committed or not; nothing "
	       "dropped)\n",
	       (unsigned long long)r.last_index);
	printf("Start %s with its usual command: it elects itself and leads alone, and its first\n"
	       "leadership drops the member records of the others. Add new nodes with --join.\n"
	       "Never start a lost member on its old data dir again: wipe it first.\n",
	       self);
	return 0;
}

/* ---- dispatch ---- */

static const struct offline_command *find(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

bool offline_is_command(int argc, char *const argv[])
{
	return argc > 1 && find(argv[1]) != NULL;
}

int offline_main(int argc, char *const argv[])
{
	const struct offline_command *c = find(argv[1]);
	struct offline_args a = {0};
	char err[512], hint[64];
	snprintf(hint, sizeof hint, "cloudless-coordinator %s --help", c->name);
	struct flags_set set = {c->opts, c->n_opts, &a, NULL};
	struct flags_spec spec = {
	    .sets = &set, .n_sets = 1, .custom = parse_custom, .help_hint = hint};
	/* argv[1], the sub-command, stands where flags_parse expects the program name. */
	enum flags_result rc =
	    flags_parse(&spec, argc - 1, argv + 1, NULL, NULL, NULL, err, sizeof err);
	if (rc == FLAGS_HELP) {
		print_help(c);
		free_args(c, &a);
		return 0;
	}
	if (rc == FLAGS_VERSION) {
		printf("cloudless-coordinator %s\n", CLOUDLESS_VERSION);
		free_args(c, &a);
		return 0;
	}
	if (rc != FLAGS_OK) {
		/* Messages about unknown flags carry the hint already. */
		bool hinted = strstr(err, "(see ") != NULL;
		fprintf(stderr, "cloudless-coordinator %s: %s%s%s%s\n", c->name, err,
		        hinted ? "" : " (see ", hinted ? "" : hint, hinted ? "" : ")");
		free_args(c, &a);
		return 2;
	}
	/* Offline work: the library's progress lines (store opened, snapshot restored) are not
	 * what the operator asked about; warnings and errors still show. */
	log_set_level(LOG_WARN);
	int status = c->run(&a);
	free_args(c, &a);
	return status;
}
