/* cloudlessctl: entry point. Global flags, dispatch to a verb group, and --help at each
 * level (the program, a group, a verb).
 *
 * The command line is `cloudlessctl [flags] GROUP VERB [args] [flags]`: global flags may come
 * before or after the command, a verb's own flags after the verb. flags_positional_index()
 * finds GROUP and VERB first (skipping global flags and their values), then one
 * flags_parse() reads the verb's table and the global one together, so a flag is parsed,
 * defaulted and reported the same wherever it stands. Every usage error is one line on stderr
 * pointing at the right --help, exit status 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "log/log.h"

#ifndef CLOUDLESS_VERSION
#define CLOUDLESS_VERSION "dev"
#endif

/* Verb groups, in --help order. A new group is one file and one line here. */
static const struct ctl_group *const groups[] = {&ctl_group_cluster, &ctl_group_kv,
                                                 &ctl_group_workload, &ctl_group_agent};
#define N_GROUPS (sizeof groups / sizeof groups[0])

static const char *const output_choices[] = {"table", "json", NULL};

#define G(f) offsetof(struct ctl_globals, f)
static const struct flags_option global_opts[] = {
    {.flag = "--endpoints",
     .env = "CLOUDLESS_ENDPOINTS",
     .kind = FLAGS_LIST,
     .off = G(endpoints),
     .metavar = "HOST:PORT[,...]",
     .def = "127.0.0.1:8080",
     .help = "Coordinators to talk to: HTTP addresses (or http:// and https:// URLs), "
             "comma-separated, tried in turn when one cannot be reached or has no leader. "
             "Any member will do: followers forward what the leader must serve.",
     .max_items = 32,
     .item_noun = "endpoint",
     .check = ctl_check_endpoint},
    {.flag = "--output",
     .short_name = 'o',
     .kind = FLAGS_CHOICE,
     .off = G(output),
     .metavar = "FORMAT",
     .def = "table",
     .help = "table (aligned columns for people) or json (the API's JSON documents "
             "unchanged, for jq and scripts).",
     .choices = output_choices},
    {.flag = "--timeout",
     .kind = FLAGS_DURATION_MS,
     .off = G(timeout_ms),
     .metavar = "DURATION",
     .def = "10s",
     .help = "Deadline of a command's requests, failover included: 500ms, 5s, 1m. Writes "
             "and membership changes pass it on as their ?timeout, so the cluster answers "
             "504 rather than being cut off; a membership change that started is waited "
             "for until its outcome."},
    {.flag = "--ca-file",
     .env = "CLOUDLESS_CA_FILE",
     .kind = FLAGS_STRING,
     .off = G(ca_file),
     .metavar = "FILE",
     .def_text = "the system's CAs",
     .help = "PEM CA certificates to verify the coordinators' TLS certificates against. "
             "With it (or --cert-file), host:port endpoints are https."},
    {.flag = "--cert-file",
     .env = "CLOUDLESS_CERT_FILE",
     .kind = FLAGS_STRING,
     .off = G(cert_file),
     .metavar = "FILE",
     .help = "PEM client certificate, for coordinators that require one (--tls-client-ca)."},
    {.flag = "--key-file",
     .env = "CLOUDLESS_KEY_FILE",
     .kind = FLAGS_STRING,
     .off = G(key_file),
     .metavar = "FILE",
     .def_text = "in --cert-file",
     .help = "PEM private key of --cert-file."},
    {.flag = "--token",
     .env = "CLOUDLESS_TOKEN",
     .kind = FLAGS_STRING,
     .off = G(token),
     .metavar = "NAME.SECRET",
     .def_text = "none",
     .help = "Token for coordinators started with --auth-file, sent as Authorization: "
             "Bearer on every request. Prefer the variable: a flag shows in ps."},
};
#undef G
#define N_GLOBAL (sizeof global_opts / sizeof global_opts[0])

/* ---- --help ------------------------------------------------------------------------------ */

static char help_buf[32768];

static void help_globals(struct flags_text *t)
{
	flags_text_add(t, "\nGlobal flags (before or after the command):\n");
	flags_text_options(t, global_opts, N_GLOBAL);
	flags_text_option(t, "-h, --help", "Print help: of the program, a group or a verb.");
	flags_text_option(t, "--version", "Print the version and exit.");
}

static void help_exit_status(struct flags_text *t)
{
	flags_text_add(t,
	               "\nExit status: 0 success; 1 the cluster answered with an error (4xx/5xx)\n"
	               "or a health check failed; 2 wrong usage; 3 no endpoint could be reached,\n"
	               "or none answered in time.\n");
}

static void verb_left(char *left, size_t size, const struct ctl_group *g, const struct ctl_verb *v)
{
	snprintf(left, size, "%s %s%s%s", g->name, v->name, v->args[0] ? " " : "", v->args);
}

static const char *top_help(void)
{
	struct flags_text t = {help_buf, 0, sizeof help_buf};
	char left[96];
	flags_text_add(
	    &t, "Usage: cloudlessctl [flags] GROUP VERB [arguments] [flags]\n\n"
	        "Operates a Cloudless cluster over its HTTP API. Any member will do as an\n"
	        "endpoint: followers forward what only the leader serves, and cloudlessctl\n"
	        "moves on to the next endpoint when one cannot be reached or has no leader.\n"
	        "\nCommands:\n");
	for (size_t i = 0; i < N_GROUPS; i++)
		for (size_t k = 0; k < groups[i]->n_verbs; k++) {
			verb_left(left, sizeof left, groups[i], &groups[i]->verbs[k]);
			flags_text_option(&t, left, groups[i]->verbs[k].summary);
		}
	help_globals(&t);
	help_exit_status(&t);
	flags_text_add(&t, "\nExamples:\n"
	                   "  cloudlessctl --endpoints 10.0.0.1:8080,10.0.0.2:8080 cluster status\n"
	                   "  cloudlessctl kv put config/mode fast\n"
	                   "  printf 'hello' | cloudlessctl kv put greeting -\n"
	                   "  cloudlessctl kv ls config/ -o json | jq -r '.items[].key'\n"
	                   "  cloudlessctl workload apply -f web.json\n"
	                   "  cloudlessctl workload scale default/web --replicas 5\n"
	                   "  cloudlessctl agent drain worker-3 --wait\n"
	                   "\nRun 'cloudlessctl GROUP VERB --help' for a verb's own flags.\n");
	return help_buf;
}

static const char *group_help(const struct ctl_group *g)
{
	struct flags_text t = {help_buf, 0, sizeof help_buf};
	char left[96];
	flags_text_add(&t, "Usage: cloudlessctl %s VERB [arguments] [flags]\n\n%s\n\nVerbs:\n",
	               g->name, g->summary);
	for (size_t k = 0; k < g->n_verbs; k++) {
		verb_left(left, sizeof left, g, &g->verbs[k]);
		flags_text_option(&t, left, g->verbs[k].summary);
	}
	help_globals(&t);
	flags_text_add(&t, "\nRun 'cloudlessctl %s VERB --help' for a verb's own flags.\n",
	               g->name);
	return help_buf;
}

/* "Usage: cloudlessctl GROUP VERB ARGS [flags]", wrapped before the 80th column. */
static void usage_line(struct flags_text *t, const char *synopsis)
{
	static const char lead[] = "Usage: cloudlessctl ";
	size_t col = sizeof lead - 1;
	char words[256];
	snprintf(words, sizeof words, "%s [flags]", synopsis);
	flags_text_add(t, "%s", lead);
	for (char *save, *w = strtok_r(words, " ", &save); w != NULL;
	     w = strtok_r(NULL, " ", &save)) {
		size_t n = strlen(w);
		if (col > sizeof lead - 1 && col + 1 + n > FLAGS_HELP_WIDTH) {
			flags_text_add(t, "\n%*s", (int)(sizeof lead - 1), "");
			col = sizeof lead - 1;
		} else if (col > sizeof lead - 1) {
			flags_text_add(t, " ");
			col++;
		}
		flags_text_add(t, "%s", w);
		col += n;
	}
	flags_text_add(t, "\n");
}

static const char *verb_help(const struct ctl_group *g, const struct ctl_verb *v)
{
	struct flags_text t = {help_buf, 0, sizeof help_buf};
	char left[96];
	verb_left(left, sizeof left, g, v);
	usage_line(&t, left);
	flags_text_add(&t, "\n%s\n", v->help);
	if (v->n_opts > 0) {
		flags_text_add(&t, "\nFlags:\n");
		flags_text_options(&t, v->opts, v->n_opts);
	}
	help_globals(&t);
	help_exit_status(&t);
	return help_buf;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static const struct ctl_group *find_group(const char *name)
{
	for (size_t i = 0; i < N_GROUPS; i++)
		if (strcmp(groups[i]->name, name) == 0)
			return groups[i];
	return NULL;
}

static const struct ctl_verb *find_verb(const struct ctl_group *g, const char *name)
{
	for (size_t k = 0; k < g->n_verbs; k++)
		if (strcmp(g->verbs[k].name, name) == 0)
			return &g->verbs[k];
	return NULL;
}

/* "a, b or c": the names a group offers, for "unknown verb" messages. */
static void names(char *dst, size_t size, const struct ctl_group *g)
{
	size_t n = g != NULL ? g->n_verbs : N_GROUPS, len = 0;
	dst[0] = '\0';
	for (size_t i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(dst + len, size - len, "%s%s",
		                        i == 0       ? ""
		                        : i + 1 == n ? " or "
		                                     : ", ",
		                        g != NULL ? g->verbs[i].name : groups[i]->name);
}

static int usage(const char *hint, const char *fmt, const char *a, const char *b)
{
	char msg[512];
	snprintf(msg, sizeof msg, fmt, a, b);
	return ctl_fail(CTL_EXIT_USAGE, "%s (see %s)", msg, hint);
}

/* Checks the argument count against the verb's synopsis. */
static int check_args(const struct ctl *c, const struct ctl_verb *v, size_t n)
{
	if (n < v->min_args)
		return ctl_usage_error(c, "missing arguments: expected %s", v->args);
	if (n > v->max_args && v->max_args == 0)
		return ctl_usage_error(c, "takes no arguments, got %zu", n);
	if (n > v->max_args)
		return ctl_usage_error(c, "too many arguments: expected %s, got %zu", v->args, n);
	return CTL_EXIT_OK;
}

/* Parses the command line for verb v of group g (either may be NULL: not given or not known)
 * and runs it. */
/* ---- TLS --------------------------------------------------------------------------------- */

static bool tls_wanted(const struct ctl *c)
{
	return c->g.ca_file != NULL || c->g.cert_file != NULL;
}

/* With --ca-file or --cert-file, a host:port endpoint means https://host:port (an explicit
 * http:// stays as given). */
static int tls_endpoints(struct ctl *c)
{
	struct flags_list *l = &c->g.endpoints;
	for (size_t i = 0; tls_wanted(c) && i < l->n; i++) {
		if (strstr(l->items[i], "://") != NULL)
			continue;
		size_t n = strlen(l->items[i]) + sizeof "https://";
		char *url = malloc(n);
		if (url == NULL)
			return -1;
		snprintf(url, n, "https://%s", l->items[i]);
		free(l->items[i]);
		l->items[i] = url;
	}
	return 0;
}

static int tls_setup(struct ctl *c)
{
	struct fwd_tls tls = {c->g.ca_file, c->g.cert_file, c->g.key_file};
	return tls_wanted(c) ? fwd_set_tls(c->client.fwd, &tls) : 0;
}

static int parse_and_run(int argc, char *argv[], struct ctl *c, const struct ctl_group *g,
                         const struct ctl_verb *v, void *opts, char **pos)
{
	enum flags_origin origin[N_GLOBAL] = {FLAGS_FROM_NONE};
	struct flags_set sets[2] = {{global_opts, N_GLOBAL, &c->g, origin}};
	struct flags_spec spec = {.sets = sets, .n_sets = 1, .positionals = true};
	char hint[160] = "'cloudlessctl --help'", err[512], list[256];
	size_t n_pos = 0;

	if (v != NULL) {
		sets[1] = (struct flags_set){v->opts, v->n_opts, opts, NULL};
		spec.n_sets = 2;
		snprintf(hint, sizeof hint, "'cloudlessctl %s %s --help'", g->name, v->name);
	} else if (g != NULL) {
		snprintf(hint, sizeof hint, "'cloudlessctl %s --help'", g->name);
	}
	spec.help_hint = hint;

	switch (flags_parse(&spec, argc, argv, NULL, pos, &n_pos, err, sizeof err)) {
	case FLAGS_HELP:
		fputs(v != NULL ? verb_help(g, v) : g != NULL ? group_help(g) : top_help(), stdout);
		return CTL_EXIT_OK;
	case FLAGS_VERSION:
		printf("cloudlessctl %s\n", CLOUDLESS_VERSION);
		return CTL_EXIT_OK;
	case FLAGS_ERROR:
		/* The messages about unknown flags carry the hint already. */
		if (strstr(err, "(see ") != NULL)
			return ctl_fail(CTL_EXIT_USAGE, "%s", err);
		return ctl_fail(CTL_EXIT_USAGE, "%s (see %s)", err, hint);
	case FLAGS_OK:
		break;
	}
	names(list, sizeof list, g);
	if (n_pos == 0)
		return usage(hint, "missing command: a group (%s%s) and a verb", list, "");
	if (g == NULL)
		return usage(hint, "unknown command \"%s\": expected a group, one of %s", pos[0],
		             list);
	if (n_pos == 1)
		return usage(hint, "%s: missing verb: one of %s", g->name, list);
	if (v == NULL)
		return usage(hint, "%s: unknown verb \"%s\"", g->name, pos[1]);

	c->group = g->name;
	c->verb = v->name;
	for (size_t i = 0; i < N_GLOBAL; i++)
		if (strcmp(global_opts[i].flag, "--timeout") == 0)
			c->timeout_given = origin[i] == FLAGS_FROM_FLAG;
	c->output = strcmp(c->g.output, "json") == 0 ? CTL_OUTPUT_JSON : CTL_OUTPUT_TABLE;
	int rc = check_args(c, v, n_pos - 2);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (tls_endpoints(c) != 0)
		return ctl_fail(CTL_EXIT_ERROR, "out of memory");
	if (c->g.key_file != NULL && c->g.cert_file == NULL)
		return usage(hint, "--key-file needs --cert-file%s%s",
		             ": the certificate of the key", "");
	if (ctl_client_init(&c->client, &c->g.endpoints, c->g.timeout_ms, err, sizeof err) != 0)
		return ctl_fail(CTL_EXIT_USAGE, "%s (see %s)", err, hint);
	if (tls_setup(c) != 0 ||
	    (c->g.token != NULL && ctl_client_set_token(&c->client, c->g.token) != 0)) {
		ctl_client_close(&c->client);
		return ctl_fail(CTL_EXIT_ERROR, "out of memory");
	}
	rc = v->run(c, opts, pos + 2, n_pos - 2);
	ctl_client_close(&c->client);
	return rc;
}

int main(int argc, char *argv[])
{
	struct flags_set global = {global_opts, N_GLOBAL, NULL, NULL};
	struct flags_spec spec = {.sets = &global, .n_sets = 1, .positionals = true};
	struct ctl c;
	void *opts = NULL;
	char **pos = calloc((size_t)argc + 1, sizeof *pos);

	memset(&c, 0, sizeof c);
	/* forward/ logs its own failures for the coordinator's operators; here every failure
	 * is reported once, as the command's one line on stderr. */
	log_set_level(LOG_ERROR);
	if (pos == NULL)
		return ctl_fail(CTL_EXIT_ERROR, "out of memory");

	/* GROUP and VERB first: the verb decides which flags there are. */
	int gi = flags_positional_index(&spec, argc, argv, 0);
	int vi = flags_positional_index(&spec, argc, argv, 1);
	const struct ctl_group *g = gi < argc ? find_group(argv[gi]) : NULL;
	const struct ctl_verb *v = g != NULL && vi < argc ? find_verb(g, argv[vi]) : NULL;
	if (v != NULL && (opts = calloc(1, v->opts_size > 0 ? v->opts_size : 1)) == NULL)
		return ctl_fail(CTL_EXIT_ERROR, "out of memory");

	int rc = parse_and_run(argc, argv, &c, g, v, opts, pos);
	flags_free(global_opts, N_GLOBAL, &c.g);
	if (v != NULL)
		flags_free(v->opts, v->n_opts, opts);
	free(opts);
	free(pos);
	return rc;
}
