/* flags: table-driven flag, environment and default parsing (see flags.h).
 *
 * Order of resolution, which gives "flag > env > default":
 *   1. argv, left to right (a repeated flag overwrites, a list appends);
 *   2. for every setting no flag set, its environment variable (empty counts as unset);
 *   3. for everything still unset, the default, parsed by the same code as user input;
 *   4. rows marked `required` that nothing set are an error.
 * A variable is therefore only looked at, and only validated, when no flag overrides it, and
 * -h/--help or --version stop everything (a bad variable cannot keep --help from working).
 *
 * This machinery came out of the coordinator's config.c when cloudlessctl needed the same;
 * config.c keeps its option rows and the checks that involve several of them. */
#include "flags/flags.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *flags_quote(char *dst, size_t size, const char *s)
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

const char *flags_who(char *dst, size_t size, const struct flags_option *o, enum flags_origin from)
{
	if (from == FLAGS_FROM_ENV && o->env != NULL)
		snprintf(dst, size, "%s (from %s)", o->flag, o->env);
	else
		snprintf(dst, size, "%s", o->flag);
	return dst;
}

int flags_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
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

bool flags_parse_bool(const char *s, bool *out)
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

int flags_parse_duration_ms(const char *s, uint64_t max_ms, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	uint64_t total = 0;
	bool big = false;

	if (strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	if (*s == '\0')
		return -1;
	while (*s != '\0') {
		size_t digits = strspn(s, "0123456789");
		uint64_t v;
		if (digits == 0)
			return -1;
		int rc = flags_parse_u64(s, digits, UINT64_MAX, &v);
		if (rc == -2)
			big = true;
		s += digits;
		size_t u;
		for (u = 0; u < sizeof units / sizeof units[0]; u++)
			if (strncmp(s, units[u].unit, strlen(units[u].unit)) == 0 &&
			    /* "m" must not take the "m" of "ms" */
			    !(units[u].ms == 60000 && s[1] == 's'))
				break;
		if (u == sizeof units / sizeof units[0])
			return -1; /* a unit is required: "5" could mean seconds or milliseconds */
		s += strlen(units[u].unit);
		if (!big && v > (max_ms - total) / units[u].ms)
			big = true;
		if (!big)
			total += v * units[u].ms;
	}
	if (big)
		return -2;
	*out = total;
	return 0;
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

int flags_split_hostport(const char *s, char *host, size_t hostlen, unsigned *port, bool allow_zero,
                         char *why, size_t whylen)
{
	char q[96];
	const char *h, *colon;
	size_t hl;

	if (s == NULL || host == NULL || hostlen == 0 || port == NULL)
		return flags_fail(why, whylen, "no address given");
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL)
			return flags_fail(why, whylen, "missing ']' in %s",
			                  flags_quote(q, sizeof q, s));
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
		if (*colon != ':')
			return flags_fail(why, whylen, "expected [IPv6]:port, got %s",
			                  flags_quote(q, sizeof q, s));
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return flags_fail(why, whylen, "expected host:port, got %s",
			                  flags_quote(q, sizeof q, s));
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return flags_fail(
			    why, whylen,
			    "IPv6 addresses must be in brackets, as [::1]:8080, got %s",
			    flags_quote(q, sizeof q, s));
		h = s;
		hl = (size_t)(colon - s);
	}
	if (hl == 0)
		return flags_fail(why, whylen, "missing host in %s", flags_quote(q, sizeof q, s));
	if (hl >= hostlen || hl > 253)
		return flags_fail(why, whylen, "host name too long in %s",
		                  flags_quote(q, sizeof q, s));
	memcpy(host, h, hl);
	host[hl] = '\0';

	if (s[0] == '[') {
		struct in6_addr a6;
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return flags_fail(why, whylen, "not an IPv6 address: %s",
			                  flags_quote(q, sizeof q, host));
	} else if (!valid_host(host)) {
		return flags_fail(why, whylen, "invalid host %s", flags_quote(q, sizeof q, host));
	}

	const char *p = colon + 1;
	uint64_t v;
	if (*p == '\0')
		return flags_fail(why, whylen, "missing port in %s", flags_quote(q, sizeof q, s));
	int rc = flags_parse_u64(p, strlen(p), 65535, &v);
	if (rc == -1)
		return flags_fail(why, whylen, "invalid port %s", flags_quote(q, sizeof q, p));
	if (rc == -2 || (v == 0 && !allow_zero))
		return flags_fail(why, whylen, "port %s out of range (%d-65535)", p,
		                  allow_zero ? 0 : 1);
	*port = (unsigned)v;
	return 0;
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

bool flags_hostport_is_wildcard(const char *addr)
{
	char host[256];
	unsigned port;
	return addr != NULL &&
	       flags_split_hostport(addr, host, sizeof host, &port, false, NULL, 0) == 0 &&
	       is_wildcard_host(host);
}

int flags_check_hostport(const char *item, char *why, size_t whylen)
{
	char host[256];
	unsigned port;
	return flags_split_hostport(item, host, sizeof host, &port, false, why, whylen);
}

int flags_set_string(char **field, const char *value, char *err, size_t errlen)
{
	char *copy = strdup(value);
	if (copy == NULL)
		return flags_fail(err, errlen, "out of memory");
	free(*field);
	*field = copy;
	return 0;
}

int flags_set_choice(char **field, const char *value, const char *const *choices, const char *name,
                     char *err, size_t errlen)
{
	char q[96], list[256];
	size_t n = 0, len = 0;

	for (size_t i = 0; choices[i] != NULL; i++)
		if (strcasecmp(value, choices[i]) == 0)
			return flags_set_string(field, choices[i], err, errlen);
	while (choices[n] != NULL)
		n++;
	list[0] = '\0';
	for (size_t i = 0; i < n && len < sizeof list; i++)
		len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
		                        i == 0       ? ""
		                        : i + 1 == n ? " or "
		                                     : ", ",
		                        choices[i]);
	return flags_fail(err, errlen, "%s: must be %s, got %s", name, list,
	                  flags_quote(q, sizeof q, value));
}

int flags_split_list(const char *value, const char *name, const char *noun,
                     int (*each)(char *entry, void *arg), void *arg, char *err, size_t errlen)
{
	char q[96];
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
			return flags_fail(err, errlen, "%s: empty %s in %s", name, noun,
			                  flags_quote(q, sizeof q, value));
		char *entry = strndup(s, n);
		if (entry == NULL)
			return flags_fail(err, errlen, "out of memory");
		if (each(entry, arg) != 0)
			return -1;
		if (end == NULL)
			return 0;
		s = end + 1;
	}
}

/* ---- the built-in kinds ------------------------------------------------------------------ */

struct list_append {
	const struct flags_option *o;
	struct flags_list *list;
	const char *name;
	char *err;
	size_t errlen;
};

static int list_each(char *entry, void *arg)
{
	struct list_append *la = arg;
	char why[160];
	if (la->o->max_items > 0 && la->list->n >= la->o->max_items) {
		free(entry);
		return flags_fail(la->err, la->errlen, "%s: at most %zu entries", la->name,
		                  la->o->max_items);
	}
	if (la->o->check != NULL && la->o->check(entry, why, sizeof why) != 0) {
		free(entry);
		return flags_fail(la->err, la->errlen, "%s: %s", la->name, why);
	}
	char **items = realloc(la->list->items, (la->list->n + 1) * sizeof *items);
	if (items == NULL) {
		free(entry);
		return flags_fail(la->err, la->errlen, "out of memory");
	}
	items[la->list->n++] = entry;
	la->list->items = items;
	return 0;
}

static int set_uint(const char *value, bool positive, unsigned *field, const char *name, char *err,
                    size_t errlen)
{
	char q[96];
	uint64_t v;
	int rc = flags_parse_u64(value, strlen(value), UINT_MAX, &v);
	if (rc == -2)
		return flags_fail(err, errlen, "%s: too large (at most %u): %s", name, UINT_MAX,
		                  flags_quote(q, sizeof q, value));
	if (rc != 0 || (positive && v == 0))
		return flags_fail(err, errlen, "%s: not a %s integer: %s", name,
		                  positive ? "positive" : "non-negative",
		                  flags_quote(q, sizeof q, value));
	*field = (unsigned)v;
	return 0;
}

static int set_size(const char *value, size_t *field, const char *name, char *err, size_t errlen)
{
	char q[96];
	size_t n = strlen(value);
	uint64_t mult = 1, v;
	char last = value[n - 1];
	if (last == 'k' || last == 'K')
		mult = 1024;
	else if (last == 'm' || last == 'M')
		mult = 1024 * 1024;
	if (mult != 1)
		n--;
	int rc = flags_parse_u64(value, n, SIZE_MAX / mult, &v);
	if (rc == -2)
		return flags_fail(err, errlen, "%s: too large: %s", name,
		                  flags_quote(q, sizeof q, value));
	if (rc != 0 || v == 0)
		return flags_fail(err, errlen,
		                  "%s: not a positive size in bytes (e.g. 524288, 512k, 1m): %s",
		                  name, flags_quote(q, sizeof q, value));
	*field = (size_t)(v * mult);
	return 0;
}

static int set_duration(const char *value, unsigned *field, const char *name, char *err,
                        size_t errlen)
{
	char q[96];
	uint64_t v;
	int rc = flags_parse_duration_ms(value, UINT_MAX, &v);
	if (rc == -2)
		return flags_fail(err, errlen, "%s: too long (at most %u ms): %s", name, UINT_MAX,
		                  flags_quote(q, sizeof q, value));
	if (rc != 0 || v == 0)
		return flags_fail(err, errlen,
		                  "%s: not a positive duration with a unit (e.g. 500ms, 5s, 2m, "
		                  "1m30s): %s",
		                  name, flags_quote(q, sizeof q, value));
	*field = (unsigned)v;
	return 0;
}

static int set_opt_u64(const char *value, struct flags_opt_u64 *field, const char *name, char *err,
                       size_t errlen)
{
	char q[96];
	uint64_t v;
	int rc = flags_parse_u64(value, strlen(value), UINT64_MAX, &v);
	if (rc == -2)
		return flags_fail(err, errlen, "%s: too large (at most %llu): %s", name,
		                  (unsigned long long)UINT64_MAX, flags_quote(q, sizeof q, value));
	if (rc != 0)
		return flags_fail(err, errlen, "%s: not a non-negative integer: %s", name,
		                  flags_quote(q, sizeof q, value));
	field->set = true;
	field->value = v;
	return 0;
}

/* Parses `value` for row `o` into its field; the error names the setting (and the variable
 * when the value came from the environment). */
static int set_option(const struct flags_spec *spec, const struct flags_option *o, void *target,
                      const char *value, enum flags_origin from, char *err, size_t errlen)
{
	void *field = (char *)target + o->off;
	char name[96], q[96], why[160];

	flags_who(name, sizeof name, o, from);
	if (value[0] == '\0' && o->kind != FLAGS_BOOL)
		return flags_fail(err, errlen, "%s: empty value", name);

	switch (o->kind) {
	case FLAGS_STRING:
		return flags_set_string(field, value, err, errlen);
	case FLAGS_BOOL:
		if (!flags_parse_bool(value, field))
			return flags_fail(err, errlen,
			                  "%s: not a boolean (true|1|yes|false|0|no): %s", name,
			                  flags_quote(q, sizeof q, value));
		return 0;
	case FLAGS_UINT:
	case FLAGS_UINT_POS:
		return set_uint(value, o->kind == FLAGS_UINT_POS, field, name, err, errlen);
	case FLAGS_SIZE:
		return set_size(value, field, name, err, errlen);
	case FLAGS_DURATION_MS:
		return set_duration(value, field, name, err, errlen);
	case FLAGS_OPT_U64:
		return set_opt_u64(value, field, name, err, errlen);
	case FLAGS_HOSTPORT:
		if (flags_check_hostport(value, why, sizeof why) != 0)
			return flags_fail(err, errlen, "%s: %s", name, why);
		return flags_set_string(field, value, err, errlen);
	case FLAGS_CHOICE:
		return flags_set_choice(field, value, o->choices, name, err, errlen);
	case FLAGS_LIST: {
		struct list_append la = {o, field, name, err, errlen};
		return flags_split_list(value, name, o->item_noun ? o->item_noun : "entry",
		                        list_each, &la, err, errlen);
	}
	default:
		if (o->kind >= FLAGS_CUSTOM && spec->custom != NULL)
			return spec->custom(o, target, value, name, err, errlen);
	}
	return flags_fail(err, errlen, "%s: internal error: unknown option kind", name);
}

void flags_free(const struct flags_option *opts, size_t n, void *target)
{
	if (target == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		void *field = (char *)target + opts[i].off;
		switch (opts[i].kind) {
		case FLAGS_STRING:
		case FLAGS_HOSTPORT:
		case FLAGS_CHOICE:
			free(*(char **)field);
			*(char **)field = NULL;
			break;
		case FLAGS_LIST: {
			struct flags_list *l = field;
			for (size_t k = 0; k < l->n; k++)
				free(l->items[k]);
			free(l->items);
			l->items = NULL;
			l->n = 0;
			break;
		}
		default:
			break;
		}
	}
}

/* ---- argv ---------------------------------------------------------------------------------- */

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
	return flags_quote(dst, size, tmp);
}

/* A row found in the spec: which set, which option. */
struct found {
	const struct flags_set *set;
	size_t i;
};

static bool find_long(const struct flags_spec *spec, const char *arg, size_t len, struct found *f)
{
	for (size_t s = 0; s < spec->n_sets; s++)
		for (size_t i = 0; i < spec->sets[s].n; i++) {
			const char *flag = spec->sets[s].opts[i].flag;
			if (strlen(flag) == len && strncmp(flag, arg, len) == 0) {
				*f = (struct found){&spec->sets[s], i};
				return true;
			}
		}
	return false;
}

static bool find_short(const struct flags_spec *spec, char c, struct found *f)
{
	for (size_t s = 0; s < spec->n_sets; s++)
		for (size_t i = 0; i < spec->sets[s].n; i++)
			if (spec->sets[s].opts[i].short_name == c) {
				*f = (struct found){&spec->sets[s], i};
				return true;
			}
	return false;
}

/* One flag's value: attached ("--f=v", "-fv", "-f=v"), implied (a boolean), or the next
 * argument. A following "--flag" is taken as a forgotten value, not as the value: "--join
 * --bootstrap" should not join a host called --bootstrap. NULL when it is missing. */
static const char *take_value(const struct flags_option *o, const char *attached, int argc,
                              char *const argv[], int *a)
{
	if (attached != NULL)
		return attached;
	if (o->kind == FLAGS_BOOL)
		return "true";
	if (*a + 1 < argc && strncmp(argv[*a + 1], "--", 2) != 0)
		return argv[++*a];
	return NULL;
}

struct state {
	const struct flags_spec *spec;
	enum flags_origin *origin[8]; /* per set */
	char *err;
	size_t errlen;
	const char *hint;
};

static enum flags_origin *origin_of(struct state *st, const struct found *f)
{
	return &st->origin[f->set - st->spec->sets][f->i];
}

static int apply(struct state *st, const struct found *f, const char *value)
{
	if (set_option(st->spec, &f->set->opts[f->i], f->set->target, value, FLAGS_FROM_FLAG,
	               st->err, st->errlen) != 0)
		return -1;
	*origin_of(st, f) = FLAGS_FROM_FLAG;
	return 0;
}

/* "-x", "-xVALUE" or "-x=VALUE". Returns 0, or -1 with err set. */
static int parse_short(struct state *st, int argc, char *const argv[], int *a)
{
	const char *arg = argv[*a];
	char q[96];
	struct found f;
	if (!find_short(st->spec, arg[1], &f))
		return flags_fail(st->err, st->errlen, "unknown flag %s (see %s)",
		                  flag_name(q, sizeof q, arg, strlen(arg)), st->hint);
	const struct flags_option *o = &f.set->opts[f.i];
	const char *attached = arg[2] == '\0' ? NULL : arg[2] == '=' ? arg + 3 : arg + 2;
	if (attached != NULL && o->kind == FLAGS_BOOL && arg[2] != '=')
		return flags_fail(st->err, st->errlen, "unknown flag %s (see %s)",
		                  flag_name(q, sizeof q, arg, strlen(arg)), st->hint);
	const char *value = take_value(o, attached, argc, argv, a);
	if (value == NULL)
		return flags_fail(st->err, st->errlen, "%s: missing value", o->flag);
	return apply(st, &f, value);
}

/* "--flag", "--flag value" or "--flag=value". */
static int parse_long(struct state *st, int argc, char *const argv[], int *a)
{
	const char *arg = argv[*a];
	char q[96];
	const char *eq = strchr(arg, '=');
	size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
	struct found f;
	if (!find_long(st->spec, arg, len, &f)) {
		if ((len == 6 && strncmp(arg, "--help", 6) == 0) ||
		    (len == 9 && strncmp(arg, "--version", 9) == 0))
			return flags_fail(st->err, st->errlen, "%.*s takes no value", (int)len,
			                  arg);
		return flags_fail(st->err, st->errlen, "unknown flag %s (see %s)",
		                  flag_name(q, sizeof q, arg, len), st->hint);
	}
	const struct flags_option *o = &f.set->opts[f.i];
	const char *value = take_value(o, eq != NULL ? eq + 1 : NULL, argc, argv, a);
	if (value == NULL)
		return flags_fail(st->err, st->errlen, "%s: missing value", o->flag);
	return apply(st, &f, value);
}

/* Returns 0 to go on, FLAGS_HELP/FLAGS_VERSION to stop, or -1 with err set. */
static int parse_argv(struct state *st, int argc, char *const argv[], char **pos, size_t *n_pos)
{
	char q[96];
	bool only_positionals = false;
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a];
		if (only_positionals) {
			pos[(*n_pos)++] = argv[a];
			continue;
		}
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
			return FLAGS_HELP;
		if (strcmp(arg, "--version") == 0)
			return FLAGS_VERSION;
		if (arg[0] == '-' && arg[1] != '\0' && arg[1] != '-') {
			if (parse_short(st, argc, argv, &a) != 0)
				return -1;
			continue;
		}
		if (strncmp(arg, "--", 2) == 0 && arg[2] != '\0') {
			if (parse_long(st, argc, argv, &a) != 0)
				return -1;
			continue;
		}
		if (!st->spec->positionals)
			return flags_fail(
			    st->err, st->errlen,
			    "unexpected argument %s: settings are given as --flag value "
			    "or --flag=value (see %s)",
			    flags_quote(q, sizeof q, arg), st->hint);
		if (strcmp(arg, "--") == 0)
			only_positionals = true;
		else
			pos[(*n_pos)++] = argv[a];
	}
	return 0;
}

/* Steps 2 to 4 of the resolution order (see the top of the file). */
static int fill_unset(struct state *st, char *const envp[])
{
	const struct flags_spec *spec = st->spec;
	for (size_t s = 0; s < spec->n_sets; s++)
		for (size_t i = 0; i < spec->sets[s].n; i++) {
			const struct flags_option *o = &spec->sets[s].opts[i];
			if (st->origin[s][i] != FLAGS_FROM_NONE || o->env == NULL)
				continue;
			const char *v = env_lookup(envp, o->env);
			if (v == NULL || v[0] == '\0')
				continue;
			if (set_option(spec, o, spec->sets[s].target, v, FLAGS_FROM_ENV, st->err,
			               st->errlen) != 0)
				return -1;
			st->origin[s][i] = FLAGS_FROM_ENV;
		}
	for (size_t s = 0; s < spec->n_sets; s++)
		for (size_t i = 0; i < spec->sets[s].n; i++) {
			const struct flags_option *o = &spec->sets[s].opts[i];
			if (st->origin[s][i] != FLAGS_FROM_NONE || o->def == NULL)
				continue;
			if (set_option(spec, o, spec->sets[s].target, o->def, FLAGS_FROM_DEFAULT,
			               st->err, st->errlen) != 0)
				return -1;
			st->origin[s][i] = FLAGS_FROM_DEFAULT;
		}
	for (size_t s = 0; s < spec->n_sets; s++)
		for (size_t i = 0; i < spec->sets[s].n; i++) {
			const struct flags_option *o = &spec->sets[s].opts[i];
			if (!o->required || st->origin[s][i] != FLAGS_FROM_NONE)
				continue;
			if (o->env != NULL)
				return flags_fail(st->err, st->errlen, "%s is required (or %s)",
				                  o->flag, o->env);
			return flags_fail(st->err, st->errlen, "%s is required", o->flag);
		}
	return 0;
}

enum flags_result flags_parse(const struct flags_spec *spec, int argc, char *const argv[],
                              char *const envp[], char **pos, size_t *n_pos, char *err,
                              size_t errlen)
{
	struct state st = {.spec = spec,
	                   .err = err,
	                   .errlen = errlen,
	                   .hint = spec->help_hint != NULL ? spec->help_hint : "--help"};
	enum flags_origin *owned[8] = {0};
	size_t ignored = 0;
	int rc = -1;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (n_pos == NULL)
		n_pos = &ignored;
	*n_pos = 0;
	if (spec->n_sets > sizeof st.origin / sizeof st.origin[0] ||
	    (spec->positionals && pos == NULL)) {
		flags_fail(err, errlen, "internal error: bad flags spec");
		return FLAGS_ERROR;
	}
	for (size_t s = 0; s < spec->n_sets; s++) {
		st.origin[s] = spec->sets[s].origin;
		if (st.origin[s] == NULL) {
			st.origin[s] = owned[s] = calloc(spec->sets[s].n + 1, sizeof *owned[s]);
			if (owned[s] == NULL) {
				flags_fail(err, errlen, "out of memory");
				goto out;
			}
		} else {
			memset(st.origin[s], 0, spec->sets[s].n * sizeof *st.origin[s]);
		}
	}
	rc = parse_argv(&st, argc, argv, pos, n_pos);
	if (rc == 0)
		rc = fill_unset(&st, envp);
out:
	for (size_t s = 0; s < spec->n_sets; s++)
		free(owned[s]);
	if (rc == FLAGS_HELP || rc == FLAGS_VERSION || rc == 0)
		return (enum flags_result)rc;
	return FLAGS_ERROR;
}

int flags_positional_index(const struct flags_spec *spec, int argc, char *const argv[], size_t nth)
{
	size_t seen = 0;
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a];
		struct found f;
		if (strcmp(arg, "--") == 0) {
			/* everything after it is a positional */
			size_t want = (size_t)(a + 1) + (nth - seen);
			return want < (size_t)argc ? (int)want : argc;
		}
		bool is_short = arg[0] == '-' && arg[1] != '\0' && arg[1] != '-';
		bool is_long = strncmp(arg, "--", 2) == 0;
		if (!is_short && !is_long) {
			if (seen++ == nth)
				return a;
			continue;
		}
		/* A known flag that takes its value from the next argument skips it. */
		bool known =
		    is_short ? arg[2] == '\0' && find_short(spec, arg[1], &f)
		             : strchr(arg, '=') == NULL && find_long(spec, arg, strlen(arg), &f);
		if (known && f.set->opts[f.i].kind != FLAGS_BOOL && a + 1 < argc &&
		    strncmp(argv[a + 1], "--", 2) != 0)
			a++;
	}
	return argc;
}

/* ---- --help ------------------------------------------------------------------------------- */

void flags_text_add(struct flags_text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= t->cap - t->len) {
		fprintf(stderr, "flags: usage text buffer too small\n");
		abort();
	}
	t->len += (size_t)n;
}

/* Greedy word wrap of `s` into the help column; the first line continues the current one. */
static void text_wrap(struct flags_text *t, const char *s, size_t col)
{
	size_t used = col;
	while (*s != '\0') {
		size_t w = strcspn(s, " ");
		if (used > FLAGS_HELP_INDENT && used + 1 + w > FLAGS_HELP_WIDTH) {
			flags_text_add(t, "\n%*s", FLAGS_HELP_INDENT, "");
			used = FLAGS_HELP_INDENT;
		} else if (used > FLAGS_HELP_INDENT) {
			flags_text_add(t, " ");
			used++;
		}
		flags_text_add(t, "%.*s", (int)w, s);
		used += w;
		s += w;
		while (*s == ' ')
			s++;
	}
	flags_text_add(t, "\n");
}

void flags_text_option(struct flags_text *t, const char *left, const char *help)
{
	size_t col = (size_t)snprintf(NULL, 0, "  %s", left);
	flags_text_add(t, "  %s", left);
	if (col + 2 > FLAGS_HELP_INDENT)
		flags_text_add(t, "\n%*s", FLAGS_HELP_INDENT, "");
	else
		flags_text_add(t, "%*s", (int)(FLAGS_HELP_INDENT - col), "");
	text_wrap(t, help, FLAGS_HELP_INDENT);
}

void flags_text_options(struct flags_text *t, const struct flags_option *opts, size_t n)
{
	char left[64], shortf[8] = "", line[160];
	for (size_t i = 0; i < n; i++) {
		const struct flags_option *o = &opts[i];
		bool required = o->required || (o->def == NULL && o->def_text != NULL &&
		                                strcmp(o->def_text, "required") == 0);
		const char *def = o->def != NULL ? o->def : o->def_text;
		if (o->short_name != '\0')
			snprintf(shortf, sizeof shortf, "-%c, ", o->short_name);
		else
			shortf[0] = '\0';
		snprintf(left, sizeof left, "%s%s%s%s", shortf, o->flag, o->metavar ? " " : "",
		         o->metavar ? o->metavar : "");
		flags_text_option(t, left, o->help);
		if (o->env != NULL && required)
			snprintf(line, sizeof line, "env %s; required", o->env);
		else if (o->env != NULL)
			snprintf(line, sizeof line, "env %s; default %s", o->env,
			         def != NULL ? def : "none");
		else if (required)
			snprintf(line, sizeof line, "required");
		else if (def != NULL)
			snprintf(line, sizeof line, "default %s", def);
		else
			continue;
		flags_text_add(t, "%*s", FLAGS_HELP_INDENT, "");
		text_wrap(t, line, FLAGS_HELP_INDENT);
	}
}
