/* test_flags: unit tests for src/flags (the table-driven flag parser every binary uses).
 *
 * A small settings struct with one row of every built-in kind, plus a second table standing
 * in for a sub-command's flags, is parsed from rows of argv + environment (passed as envp, so
 * the environment of whoever runs the test cannot leak in). Each row names either field
 * values to check or phrases the one-line error must contain. Run under ASan/LSan this also
 * proves that flags_free releases what parsing allocated, error paths included. The
 * coordinator's own table is covered through config/ by test_config. */
#include "flags/flags.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

struct settings {
	char *name;
	bool verbose;
	unsigned count, workers;
	size_t max_body;
	unsigned timeout_ms;
	struct flags_opt_u64 cas;
	char *addr;
	char *output;
	struct flags_list endpoints;
	char *color; /* a program kind: "red" or "blue", stored upper-case */
};

struct sub {
	bool stale;
	char *key_id;
};

static const char *const outputs[] = {"table", "json", NULL};

static int check_no_x(const char *item, char *why, size_t whylen)
{
	if (strchr(item, 'x') != NULL)
		return flags_fail(why, whylen, "no x allowed in \"%s\"", item);
	return 0;
}

#define COLOR FLAGS_CUSTOM

#define S(f) offsetof(struct settings, f)
static const struct flags_option opts[] = {
    {"--name", "T_NAME", FLAGS_STRING, S(name), "NAME", "anon", NULL, .help = "A name."},
    {"--verbose", "T_VERBOSE", FLAGS_BOOL, S(verbose), NULL, "false", NULL, "Talk more.",
     .short_name = 'v'},
    {"--count", "T_COUNT", FLAGS_UINT, S(count), "N", "0", NULL, .help = "How many."},
    {"--workers", NULL, FLAGS_UINT_POS, S(workers), "N", "4", NULL, .help = "Threads."},
    {"--max-body", "T_MAX_BODY", FLAGS_SIZE, S(max_body), "BYTES", "1k", NULL, .help = "Bytes."},
    {"--timeout", "T_TIMEOUT", FLAGS_DURATION_MS, S(timeout_ms), "DURATION", "10s", NULL,
     .help = "How long."},
    {"--cas", NULL, FLAGS_OPT_U64, S(cas), "INDEX", NULL, NULL, .help = "Compare-and-set."},
    {"--addr", "T_ADDR", FLAGS_HOSTPORT, S(addr), "HOST:PORT", NULL, "none", .help = "Where."},
    {"--output", "T_OUTPUT", FLAGS_CHOICE, S(output), "FORMAT", "table", NULL, "Format.",
     .short_name = 'o', .choices = outputs},
    {"--endpoints", "T_ENDPOINTS", FLAGS_LIST, S(endpoints), "A,B", "d:1", NULL, "Servers.",
     .max_items = 4, .item_noun = "endpoint", .check = check_no_x},
    {"--color", NULL, COLOR, S(color), "COLOR", NULL, NULL, .help = "red or blue."},
};
#undef S
#define N_OPTS (sizeof opts / sizeof opts[0])

static const struct flags_option sub_opts[] = {
    {"--stale", NULL, FLAGS_BOOL, offsetof(struct sub, stale), NULL, NULL, NULL,
     .help = "Stale read."},
    {"--key-id", "T_KEY_ID", FLAGS_STRING, offsetof(struct sub, key_id), "ID", NULL, NULL,
     "Which key.", .required = true},
};
#define N_SUB (sizeof sub_opts / sizeof sub_opts[0])

static int set_color(const struct flags_option *o, void *target, const char *value,
                     const char *name, char *err, size_t errlen)
{
	char **field = (char **)((char *)target + o->off);
	if (strcmp(value, "red") == 0)
		return flags_set_string(field, "RED", err, errlen);
	if (strcmp(value, "blue") == 0)
		return flags_set_string(field, "BLUE", err, errlen);
	return flags_fail(err, errlen, "%s: not a color: %s", name, value);
}

enum tri { ANY, NO, YES };

struct row {
	const char *name;
	const char *argv[16];
	const char *env[8];
	bool positionals, with_sub;
	enum flags_result want;
	const char *err[3];
	/* successes: NULL / 0 / ANY = don't care */
	const char *sname, *addr, *output, *endpoints, *color, *pos;
	enum tri verbose;
	unsigned count, timeout_ms;
	size_t max_body;
	const char *cas; /* "absent", or the value in decimal */
	enum tri stale;
	const char *key_id;
};

static const struct row rows[] = {
    /* ---- defaults, flags, environment ---- */
    {"defaults",
     {NULL},
     {NULL},
     .want = FLAGS_OK,
     .sname = "anon",
     .output = "table",
     .endpoints = "d:1",
     .verbose = NO,
     .count = 0,
     .timeout_ms = 10000,
     .max_body = 1024,
     .cas = "absent"},
    {"both value forms",
     {"--name", "a", "--count=3", "--timeout", "1m30s", "--max-body=2M", "--addr", "h:1"},
     {NULL},
     .want = FLAGS_OK,
     .sname = "a",
     .count = 3,
     .timeout_ms = 90000,
     .max_body = 2 * 1024 * 1024,
     .addr = "h:1"},
    {"flag beats env beats default",
     {"--count", "7"},
     {"T_COUNT=5", "T_NAME=from-env", "T_TIMEOUT=250ms", NULL},
     .want = FLAGS_OK,
     .count = 7,
     .sname = "from-env",
     .timeout_ms = 250},
    {"a bad variable a flag overrides is never looked at",
     {"--count", "1", "--verbose=no"},
     {"T_COUNT=abc", "T_VERBOSE=maybe", NULL},
     .want = FLAGS_OK,
     .count = 1,
     .verbose = NO},
    {"empty variable counts as unset",
     {NULL},
     {"T_NAME=", "T_TIMEOUT=", NULL},
     .want = FLAGS_OK,
     .sname = "anon",
     .timeout_ms = 10000},
    {"bare bool, short bool", {"-v"}, {NULL}, .want = FLAGS_OK, .verbose = YES},
    {"bool from env", {NULL}, {"T_VERBOSE=YES", NULL}, .want = FLAGS_OK, .verbose = YES},
    {"last repeated flag wins",
     {"--name", "a", "--name=b"},
     {NULL},
     .want = FLAGS_OK,
     .sname = "b"},
    {"short forms", {"-o", "JSON"}, {NULL}, .want = FLAGS_OK, .output = "json"},
    {"short attached", {"-ojson"}, {NULL}, .want = FLAGS_OK, .output = "json"},
    {"short with =", {"-o=json"}, {NULL}, .want = FLAGS_OK, .output = "json"},
    {"choice from env", {NULL}, {"T_OUTPUT=Json", NULL}, .want = FLAGS_OK, .output = "json"},
    {"optional u64 zero is a value", {"--cas", "0"}, {NULL}, .want = FLAGS_OK, .cas = "0"},
    {"optional u64 max",
     {"--cas=18446744073709551615"},
     {NULL},
     .want = FLAGS_OK,
     .cas = "18446744073709551615"},
    {"list: repeated flags append, blanks trimmed",
     {"--endpoints", "a:1, b:2", "--endpoints=c:3"},
     {"T_ENDPOINTS=e:5", NULL},
     .want = FLAGS_OK,
     .endpoints = "a:1|b:2|c:3"},
    {"list from env",
     {NULL},
     {"T_ENDPOINTS=e:5,f:6", NULL},
     .want = FLAGS_OK,
     .endpoints = "e:5|f:6"},
    {"custom kind", {"--color", "blue"}, {NULL}, .want = FLAGS_OK, .color = "BLUE"},
    {"durations", {"--timeout", "2h"}, {NULL}, .want = FLAGS_OK, .timeout_ms = 7200000},

    /* ---- positionals and sub-command tables ---- */
    {"positionals in order, '-' is one, '--' ends the flags",
     {"get", "-v", "k1", "-", "--", "--name", "-x"},
     {NULL},
     .positionals = true,
     .want = FLAGS_OK,
     .pos = "get|k1|-|--name|-x",
     .verbose = YES,
     .sname = "anon"},
    {"two tables share the command line",
     {"--stale", "--name", "n", "--key-id=k"},
     {NULL},
     .with_sub = true,
     .want = FLAGS_OK,
     .sname = "n",
     .stale = YES,
     .key_id = "k"},
    {"required from env",
     {NULL},
     {"T_KEY_ID=e", NULL},
     .with_sub = true,
     .want = FLAGS_OK,
     .key_id = "e",
     .stale = NO},
    {"required missing",
     {"--stale"},
     {NULL},
     .with_sub = true,
     .want = FLAGS_ERROR,
     .err = {"--key-id is required (or T_KEY_ID)"}},

    /* ---- help and version stop everything ---- */
    {"--help", {"--name", "x", "--help"}, {"T_COUNT=abc", NULL}, .want = FLAGS_HELP},
    {"-h", {"-h", "--nope"}, {NULL}, .want = FLAGS_HELP},
    {"--version", {"--version"}, {NULL}, .want = FLAGS_VERSION},
    {"--help=x", {"--help=x"}, {NULL}, .want = FLAGS_ERROR, .err = {"--help takes no value"}},

    /* ---- errors: one line naming the setting ---- */
    {"unknown flag",
     {"--nope"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"unknown flag --nope (see --help)"}},
    {"unknown flag with value",
     {"--nope=1"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"unknown flag --nope ("}},
    {"unknown short flag", {"-q"}, {NULL}, .want = FLAGS_ERROR, .err = {"unknown flag -q"}},
    {"short bool with junk", {"-vx"}, {NULL}, .want = FLAGS_ERROR, .err = {"unknown flag -vx"}},
    {"unknown flag quoted", {"--a\nb"}, {NULL}, .want = FLAGS_ERROR, .err = {"\"--a\\x0ab\""}},
    {"positional refused",
     {"extra"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"unexpected argument \"extra\"", "--flag=value"}},
    {"bare -- refused", {"--"}, {NULL}, .want = FLAGS_ERROR, .err = {"unexpected argument \"--\""}},
    {"missing value at end",
     {"--name"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--name: missing value"}},
    {"flag where a value belongs",
     {"--name", "--verbose"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--name: missing value"}},
    {"short flag missing value",
     {"-o"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--output: missing value"}},
    {"empty value", {"--name="}, {NULL}, .want = FLAGS_ERROR, .err = {"--name: empty value"}},
    {"bad bool",
     {"--verbose=on"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--verbose: not a boolean"}},
    {"bad bool from env",
     {NULL},
     {"T_VERBOSE=maybe", NULL},
     .want = FLAGS_ERROR,
     .err = {"--verbose (from T_VERBOSE): not a boolean", "\"maybe\""}},
    {"negative uint",
     {"--count", "-1"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--count: not a non-negative integer: \"-1\""}},
    {"uint with unit",
     {"--count", "10ms"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--count: not a non-negative integer"}},
    {"uint overflow",
     {"--count", "4294967296"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--count: too large"}},
    {"positive uint zero",
     {"--workers", "0"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--workers: not a positive integer"}},
    {"size suffix",
     {"--max-body", "1g"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--max-body: not a positive size"}},
    {"duration without unit",
     {"--timeout", "5"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--timeout: not a positive duration", "\"5\""}},
    {"duration zero",
     {"--timeout", "0s"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--timeout: not a positive duration"}},
    {"duration bad unit", {"--timeout", "5d"}, {NULL}, .want = FLAGS_ERROR, .err = {"--timeout"}},
    {"duration negative", {"--timeout", "-5s"}, {NULL}, .want = FLAGS_ERROR, .err = {"--timeout"}},
    {"duration fraction", {"--timeout", "1.5s"}, {NULL}, .want = FLAGS_ERROR, .err = {"--timeout"}},
    {"duration too long",
     {"--timeout", "2000h"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--timeout: too long"}},
    {"duration from env",
     {NULL},
     {"T_TIMEOUT=soon", NULL},
     .want = FLAGS_ERROR,
     .err = {"--timeout (from T_TIMEOUT)"}},
    {"u64 overflow",
     {"--cas", "18446744073709551616"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--cas: too large"}},
    {"u64 junk",
     {"--cas", "1e3"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--cas: not a non-negative integer"}},
    {"hostport",
     {"--addr", "h:70000"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--addr: port 70000 out of range (1-65535)"}},
    {"hostport v6 brackets",
     {"--addr", "::1:80"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--addr", "brackets"}},
    {"choice",
     {"-o", "yaml"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--output: must be table or json, got \"yaml\""}},
    {"list empty entry",
     {"--endpoints", "a:1,,b:2"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--endpoints: empty endpoint in \"a:1,,b:2\""}},
    {"list entry refused",
     {"--endpoints", "a:1,x:2"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--endpoints: no x allowed in \"x:2\""}},
    {"list too long",
     {"--endpoints", "a:1,b:2,c:3", "--endpoints", "d:4,e:5"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--endpoints: at most 4 entries"}},
    {"custom kind error",
     {"--color", "green"},
     {NULL},
     .want = FLAGS_ERROR,
     .err = {"--color: not a color: green"}},
    {"error of a sub-command's flag",
     {"--key-id"},
     {NULL},
     .with_sub = true,
     .want = FLAGS_ERROR,
     .err = {"--key-id: missing value"}},
};

static void join_list(const struct flags_list *l, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		if (i > 0)
			strncat(out, "|", len - strlen(out) - 1);
		strncat(out, l->items[i], len - strlen(out) - 1);
	}
}

static void run_row(const struct row *r)
{
	char *argv[20];
	int argc = 0;
	argv[argc++] = "prog";
	for (size_t i = 0; r->argv[i] != NULL; i++)
		argv[argc++] = (char *)r->argv[i];
	argv[argc] = NULL;

	struct settings s = {0};
	struct sub sub = {0};
	enum flags_origin origin[N_OPTS];
	struct flags_set sets[2] = {{opts, N_OPTS, &s, origin}, {sub_opts, N_SUB, &sub, NULL}};
	struct flags_spec spec = {.sets = sets,
	                          .n_sets = r->with_sub ? 2 : 1,
	                          .custom = set_color,
	                          .positionals = r->positionals};
	char *pos[20];
	size_t n_pos = 99;
	char err[512] = "untouched";
	enum flags_result got =
	    flags_parse(&spec, argc, argv, (char *const *)r->env, pos, &n_pos, err, sizeof err);

	int before = testlib_failures;
	CHECK_EQ_INT(got, r->want);
	if (r->want == FLAGS_ERROR && got == FLAGS_ERROR) {
		for (size_t i = 0; i < 3; i++)
			if (r->err[i] != NULL)
				CHECK(strstr(err, r->err[i]) != NULL);
		CHECK(strchr(err, '\n') == NULL);
	}
	if (r->want == FLAGS_OK && got == FLAGS_OK) {
		char buf[256];
		if (r->sname)
			CHECK_EQ_STR(s.name, r->sname);
		if (r->addr)
			CHECK_EQ_STR(s.addr, r->addr);
		if (r->output)
			CHECK_EQ_STR(s.output, r->output);
		if (r->color)
			CHECK_EQ_STR(s.color, r->color);
		if (r->endpoints) {
			join_list(&s.endpoints, buf, sizeof buf);
			CHECK_EQ_STR(buf, r->endpoints);
		}
		if (r->verbose != ANY)
			CHECK_EQ_INT(s.verbose, r->verbose == YES);
		if (r->count)
			CHECK_EQ_INT(s.count, r->count);
		if (r->timeout_ms)
			CHECK_EQ_INT(s.timeout_ms, r->timeout_ms);
		if (r->max_body)
			CHECK_EQ_INT(s.max_body, r->max_body);
		if (r->cas != NULL && strcmp(r->cas, "absent") == 0)
			CHECK(!s.cas.set);
		else if (r->cas != NULL)
			CHECK(s.cas.set && s.cas.value == strtoull(r->cas, NULL, 10));
		if (r->stale != ANY)
			CHECK_EQ_INT(sub.stale, r->stale == YES);
		if (r->key_id)
			CHECK_EQ_STR(sub.key_id, r->key_id);
		buf[0] = '\0';
		for (size_t i = 0; i < n_pos; i++) {
			if (i > 0)
				strcat(buf, "|");
			strcat(buf, pos[i]);
		}
		CHECK_EQ_STR(buf, r->pos ? r->pos : "");
		CHECK(s.workers == 4); /* a row without an env var still gets its default */
	}
	if (testlib_failures != before)
		fprintf(stderr, "  in row \"%s\" (err: %s)\n", r->name, err);
	flags_free(opts, N_OPTS, &s);
	flags_free(sub_opts, N_SUB, &sub);
	flags_free(opts, N_OPTS, &s); /* idempotent */
	free(s.color);                /* a program kind is the program's to free */
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		run_row(&rows[i]);
}

/* Where each setting came from, for messages about combinations of settings. */
static void test_origins(void)
{
	char *argv[] = {"prog", "--count", "2", NULL};
	char *env[] = {"T_NAME=e", NULL};
	struct settings s = {0};
	enum flags_origin origin[N_OPTS];
	struct flags_set set = {opts, N_OPTS, &s, origin};
	struct flags_spec spec = {.sets = &set, .n_sets = 1, .custom = set_color};
	char err[256], who[96];
	CHECK_EQ_INT(flags_parse(&spec, 3, argv, env, NULL, NULL, err, sizeof err), FLAGS_OK);
	CHECK_EQ_INT(origin[0], FLAGS_FROM_ENV);     /* --name */
	CHECK_EQ_INT(origin[2], FLAGS_FROM_FLAG);    /* --count */
	CHECK_EQ_INT(origin[3], FLAGS_FROM_DEFAULT); /* --workers */
	CHECK_EQ_INT(origin[6], FLAGS_FROM_NONE);    /* --cas */
	CHECK_EQ_STR(flags_who(who, sizeof who, &opts[0], origin[0]), "--name (from T_NAME)");
	CHECK_EQ_STR(flags_who(who, sizeof who, &opts[2], origin[2]), "--count");
	flags_free(opts, N_OPTS, &s);
}

/* The help hint of a program with sub-commands, and the process environment. */
static void test_hint_and_getenv(void)
{
	char *argv[] = {"prog", "--bogus", NULL};
	struct settings s = {0};
	struct flags_set set = {opts, N_OPTS, &s, NULL};
	struct flags_spec spec = {
	    .sets = &set, .n_sets = 1, .custom = set_color, .help_hint = "'prog kv get --help'"};
	char err[256];
	CHECK_EQ_INT(flags_parse(&spec, 2, argv, NULL, NULL, NULL, err, sizeof err), FLAGS_ERROR);
	CHECK_EQ_STR(err, "unknown flag --bogus (see 'prog kv get --help')");
	flags_free(opts, N_OPTS, &s);

	setenv("T_NAME", "from-getenv", 1);
	CHECK_EQ_INT(flags_parse(&spec, 1, argv, NULL, NULL, NULL, err, sizeof err), FLAGS_OK);
	CHECK_EQ_STR(s.name, "from-getenv");
	unsetenv("T_NAME");
	flags_free(opts, N_OPTS, &s);
}

static void test_positional_index(void)
{
	struct settings s = {0};
	struct flags_set set = {opts, N_OPTS, &s, NULL};
	struct flags_spec spec = {.sets = &set, .n_sets = 1, .positionals = true};
	char *a1[] = {"prog", "--name", "x", "-o", "json", "-v", "kv", "--count=1", "get", NULL};
	CHECK_EQ_INT(flags_positional_index(&spec, 9, a1, 0), 6);
	CHECK_EQ_INT(flags_positional_index(&spec, 9, a1, 1), 8);
	CHECK_EQ_INT(flags_positional_index(&spec, 9, a1, 2), 9);
	/* unknown flags are skipped alone; a known one's value is never a positional */
	char *a2[] = {"prog", "--unknown", "kv", "-ojson", "get", NULL};
	CHECK_EQ_INT(flags_positional_index(&spec, 5, a2, 0), 2);
	CHECK_EQ_INT(flags_positional_index(&spec, 5, a2, 1), 4);
	char *a3[] = {"prog", "--", "--name", "x", NULL};
	CHECK_EQ_INT(flags_positional_index(&spec, 4, a3, 0), 2);
	CHECK_EQ_INT(flags_positional_index(&spec, 4, a3, 1), 3);
	CHECK_EQ_INT(flags_positional_index(&spec, 4, a3, 2), 4);
	char *a4[] = {"prog", "--name", "--verbose", "kv", NULL};
	CHECK_EQ_INT(flags_positional_index(&spec, 4, a4, 0), 3);
}

static void test_parsers(void)
{
	uint64_t v = 0;
	CHECK_EQ_INT(flags_parse_duration_ms("0", 1000, &v), 0);
	CHECK_EQ_INT(v, 0);
	CHECK_EQ_INT(flags_parse_duration_ms("1h2m3s4ms", UINT64_MAX, &v), 0);
	CHECK_EQ_INT(v, 3723004);
	CHECK_EQ_INT(flags_parse_duration_ms("500ms", 1000, &v), 0);
	CHECK_EQ_INT(v, 500);
	CHECK_EQ_INT(flags_parse_duration_ms("2s", 1000, &v), -2);
	CHECK_EQ_INT(flags_parse_duration_ms("99999999999999999999s", UINT64_MAX, &v), -2);
	CHECK_EQ_INT(flags_parse_duration_ms("", 1000, &v), -1);
	CHECK_EQ_INT(flags_parse_duration_ms("s", 1000, &v), -1);
	CHECK_EQ_INT(flags_parse_duration_ms("1s ", 1000, &v), -1);
	CHECK_EQ_INT(flags_parse_duration_ms("1 s", 1000, &v), -1);
	CHECK_EQ_INT(flags_parse_duration_ms("1m", 60000, &v), 0);
	CHECK_EQ_INT(v, 60000);

	CHECK_EQ_INT(flags_parse_u64("18446744073709551615", 20, UINT64_MAX, &v), 0);
	CHECK(v == UINT64_MAX);
	CHECK_EQ_INT(flags_parse_u64("18446744073709551616", 20, UINT64_MAX, &v), -2);
	CHECK_EQ_INT(flags_parse_u64("99999999999x", 12, UINT64_MAX, &v), -1);
	CHECK_EQ_INT(flags_parse_u64("", 0, 10, &v), -1);
	CHECK_EQ_INT(flags_parse_u64("11", 2, 10, &v), -2);

	bool b = false;
	CHECK(flags_parse_bool("YES", &b) && b);
	CHECK(flags_parse_bool("0", &b) && !b);
	CHECK(!flags_parse_bool("", &b));

	char why[160], host[256];
	unsigned port;
	CHECK_EQ_INT(
	    flags_split_hostport("[::1]:80", host, sizeof host, &port, false, why, sizeof why), 0);
	CHECK_EQ_STR(host, "::1");
	CHECK_EQ_INT(
	    flags_split_hostport("10.0.1:80", host, sizeof host, &port, false, why, sizeof why),
	    -1);
	CHECK_EQ_STR(why, "invalid host \"10.0.1\"");
	CHECK_EQ_INT(flags_check_hostport("h", why, sizeof why), -1);
	CHECK_EQ_STR(why, "expected host:port, got \"h\"");
	CHECK(flags_hostport_is_wildcard("0.0.0.0:80"));
	CHECK(flags_hostport_is_wildcard("[::]:80"));
	CHECK(!flags_hostport_is_wildcard("127.0.0.1:80"));
	CHECK(!flags_hostport_is_wildcard("not valid"));

	char q[16];
	CHECK_EQ_STR(flags_quote(q, sizeof q, "a\"b"), "\"a\\x22b\"");
	CHECK_EQ_STR(flags_quote(q, sizeof q, "abcdefghijklmnop"), "\"abcdefg...\"");
}

/* --help lines: the flag (with its short name), the wrapped help, the variable and default. */
static void test_help_text(void)
{
	static const struct flags_option help_opts[] = {
	    {"--output", "T_OUTPUT", FLAGS_CHOICE, 0, "FORMAT", "table", NULL,
	     "How to print results: table for people, json for programs (the API's documents "
	     "unchanged).",
	     .short_name = 'o', .choices = outputs},
	    {"--a-very-long-flag-name", NULL, FLAGS_STRING, 0, "VALUE", NULL, NULL,
	     .help = "Short."},
	    {"--id", NULL, FLAGS_STRING, 0, "ID", NULL, NULL, "Required one.", .required = true},
	    {"--cas", NULL, FLAGS_OPT_U64, 0, "INDEX", NULL, "none", .help = "Compare."},
	};
	static char buf[2048];
	struct flags_text t = {buf, 0, sizeof buf};
	flags_text_options(&t, help_opts, 4);
	CHECK_EQ_STR(
	    buf, "  -o, --output FORMAT         How to print results: table for people, json for\n"
	         "                              programs (the API's documents unchanged).\n"
	         "                              env T_OUTPUT; default table\n"
	         "  --a-very-long-flag-name VALUE\n"
	         "                              Short.\n"
	         "  --id ID                     Required one.\n"
	         "                              required\n"
	         "  --cas INDEX                 Compare.\n"
	         "                              default none\n");
	size_t col = 0, widest = 0;
	for (const char *p = buf; *p != '\0'; p++) {
		col = *p == '\n' ? 0 : col + 1;
		if (col > widest)
			widest = col;
	}
	CHECK(widest <= FLAGS_HELP_WIDTH);
}

int main(void)
{
	test_table();
	test_origins();
	test_hint_and_getenv();
	test_positional_index();
	test_parsers();
	test_help_text();
	TEST_DONE();
}
