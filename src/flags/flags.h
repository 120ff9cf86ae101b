/* flags: table-driven command-line parsing shared by every Cloudless binary (the coordinator's
 * config/, cloudlessctl, and the agent to come).
 *
 * A program describes each setting once, as a row of a `struct flags_option` table: the flag,
 * its environment variable, its kind, where the value goes (an offset into the program's own
 * settings struct), the default as a user would type it, and the help text. From that one row
 * flags_parse() reads `--flag value` and `--flag=value` (and `-x value` for a row with a short
 * name), falls back to the variable when no flag set the setting (an empty variable counts as
 * unset: shells and compose files make "VAR=" easy to produce by accident), then to the
 * default, parsed by the same code as user input; and flags_text_options() writes the --help
 * lines. So a flag cannot be documented with one default and applied with another.
 *
 * Every problem is reported as one line naming the setting: "--flag: why", or
 * "--flag (from VAR): why" when the value came from the environment, so a bad value is never
 * blamed on a flag nobody typed. Values a user typed are quoted with anything unprintable
 * escaped, so the message stays one line.
 *
 * Parsing never prints and never exits; the program decides what --help, --version and an
 * error do. flags is a leaf: it links nothing else from the project. */
#ifndef CLOUDLESS_FLAGS_FLAGS_H
#define CLOUDLESS_FLAGS_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/errmsg.h"

enum flags_kind {
	FLAGS_STRING,      /* char *: any non-empty value */
	FLAGS_BOOL,        /* bool: true|1|yes|false|0|no; the bare flag means true */
	FLAGS_UINT,        /* unsigned: decimal digits, >= 0 */
	FLAGS_UINT_POS,    /* unsigned: decimal digits, >= 1 */
	FLAGS_SIZE,        /* size_t bytes, >= 1, optional k/K (KiB) or m/M (MiB) suffix */
	FLAGS_DURATION_MS, /* unsigned milliseconds, >= 1: "250ms", "5s", "2m", "1h", "1m30s" */
	FLAGS_OPT_U64,     /* struct flags_opt_u64: a uint64 that may be absent (0 is a value) */
	FLAGS_HOSTPORT,    /* char *: host:port, the host a name, an IPv4 address or [IPv6] */
	FLAGS_CHOICE,      /* char *: one of `choices` (any case), stored as spelled there */
	FLAGS_LIST,        /* struct flags_list: comma-separated, each entry passed to `check`;
	                      a repeated flag appends */
	/* Kinds from here up are the program's own: flags_spec.custom parses them. */
	FLAGS_CUSTOM = 64,
};

struct flags_opt_u64 {
	bool set;
	uint64_t value;
};

struct flags_list {
	char **items;
	size_t n;
};

struct flags_option {
	const char *flag;     /* "--name" */
	const char *env;      /* NULL: no variable */
	int kind;             /* enum flags_kind, or a program kind >= FLAGS_CUSTOM */
	size_t off;           /* offsetof(settings struct, field) */
	const char *metavar;  /* "HOST:PORT" in --help; NULL for booleans */
	const char *def;      /* the default as a user would type it; NULL = none */
	const char *def_text; /* how --help describes the default when it is not `def` */
	const char *help;
	/* Optional, by designated initializer: */
	char short_name;            /* 'o' for -o */
	bool required;              /* "--name is required" when nothing set it */
	const char *const *choices; /* FLAGS_CHOICE: NULL-terminated */
	size_t max_items;           /* FLAGS_LIST: 0 = no limit */
	const char *item_noun;      /* FLAGS_LIST: "empty <noun> in ..."; default "entry" */
	/* FLAGS_LIST: validates one entry; fills `why` (without the flag's name) and returns -1
	 * to refuse it. NULL accepts any non-empty entry. */
	int (*check)(const char *item, char *why, size_t whylen);
};

/* Where a setting's value came from. */
enum flags_origin { FLAGS_FROM_NONE, FLAGS_FROM_FLAG, FLAGS_FROM_ENV, FLAGS_FROM_DEFAULT };

/* One table and the struct its rows point into. `origin` (n entries, may be NULL) receives
 * where each setting came from, for messages about combinations of settings. */
struct flags_set {
	const struct flags_option *opts;
	size_t n;
	void *target;
	enum flags_origin *origin;
};

/* Parses `value` for a row of a program kind into its field (`target` + o->off; the whole
 * struct is at hand for kinds that fill more than one field). `name` is how to call the
 * setting in a message ("--flag" or "--flag (from VAR)"); on error write "name: why" to err
 * (flags_fail) and return -1. The value is never empty (that is refused before). */
typedef int (*flags_custom_fn)(const struct flags_option *o, void *target, const char *value,
                               const char *name, char *err, size_t errlen);

struct flags_spec {
	const struct flags_set *sets;
	size_t n_sets;
	flags_custom_fn custom; /* for kinds >= FLAGS_CUSTOM */
	/* false: any argument that is not a flag is an error ("unexpected argument"). true: such
	 * arguments, "-" and everything after "--", are handed back as positionals. */
	bool positionals;
	/* What error messages point to: "(see HINT)". NULL means "--help". */
	const char *help_hint;
};

enum flags_result {
	FLAGS_OK = 0,
	FLAGS_HELP = 1,    /* -h or --help was given (nothing else was looked at after it) */
	FLAGS_VERSION = 2, /* --version */
	FLAGS_ERROR = -1,  /* err holds one line */
};

/* Parses argv[1..argc) against every set of the spec, then fills what no flag set from the
 * environment (`envp`, or the process environment when NULL), then from the defaults. A
 * repeated flag overwrites (a list appends). Positionals, when the spec allows them, are
 * stored in order in `pos` (room for argc entries; may be NULL otherwise) and counted in
 * *n_pos. On anything but FLAGS_OK the targets may hold partial values: free them with
 * flags_free(). Targets must start zeroed. */
enum flags_result flags_parse(const struct flags_spec *spec, int argc, char *const argv[],
                              char *const envp[], char **pos, size_t *n_pos, char *err,
                              size_t errlen);
/* Frees the strings and lists the rows of built-in kinds own in `target`, and zeroes them.
 * Program kinds are the program's to free. */
void flags_free(const struct flags_option *opts, size_t n, void *target);
/* The argv index of the nth (0-based) positional argument, found by skipping flags and
 * their values as flags_parse would with the spec's sets (unknown flags are skipped; parsing
 * reports them); argc when there is none. Lets a program pick a sub-command before it knows
 * the sub-command's own flags. */
int flags_positional_index(const struct flags_spec *spec, int argc, char *const argv[], size_t nth);

/* ---- building blocks for program kinds and checks -------------------------------------- */

/* Writes the formatted line to err and returns -1, so error paths read `return flags_fail()`:
 * the util library's errmsg_set under the name this module's callers know. */
#define flags_fail errmsg_set
/* Quotes a user-supplied value: printable ASCII as is, anything else as \xNN, long values
 * cut with "...". Returns dst. */
const char *flags_quote(char *dst, size_t size, const char *s);
/* "--flag" or "--flag (from VAR)". Returns dst. */
const char *flags_who(char *dst, size_t size, const struct flags_option *o, enum flags_origin from);
/* Strict unsigned decimal in s[0..n): digits only (no sign, space or base prefix), value <= max.
 * 0, -1 when it is not a number, -2 when it is larger than max. */
int flags_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out);
/* true|1|yes|false|0|no in any case. */
bool flags_parse_bool(const char *s, bool *out);
/* "250ms", "5s", "2m", "1h" and sums of them ("1m30s") into milliseconds. 0, -1 when it is
 * not a duration, -2 when it is larger than max_ms. "0" alone is 0. */
int flags_parse_duration_ms(const char *s, uint64_t max_ms, uint64_t *out);
/* Splits "host:port" (IPv4, hostname or [v6]) into host and port; -1 when malformed or the
 * port is not 1..65535 (0 allowed when allow_zero), with the reason in `why` (may be NULL),
 * e.g. "port 70000 out of range (1-65535)". host must hold at least 256 bytes to take any
 * valid name. */
int flags_split_hostport(const char *s, char *host, size_t hostlen, unsigned *port, bool allow_zero,
                         char *why, size_t whylen);
/* True when host:port (already valid) names a wildcard ("any") address nobody can dial. */
bool flags_hostport_is_wildcard(const char *addr);
/* A FLAGS_LIST check: host:port. */
int flags_check_hostport(const char *item, char *why, size_t whylen);
/* Replaces *field with a copy of value. */
int flags_set_string(char **field, const char *value, char *err, size_t errlen);
/* Stores the entry of `choices` (NULL-terminated) that equals value in any case, or fails
 * with "name: must be a, b or c, got "value"". */
int flags_set_choice(char **field, const char *value, const char *const *choices, const char *name,
                     char *err, size_t errlen);
/* Calls each(entry) for every entry of a comma-separated list, blanks around entries
 * trimmed; an empty entry fails with "name: empty <noun> in "value"". `each` gets a NUL-
 * terminated copy it may keep (ownership passes to it: it frees it when it refuses it). */
int flags_split_list(const char *value, const char *name, const char *noun,
                     int (*each)(char *entry, void *arg), void *arg, char *err, size_t errlen);

/* ---- --help text ----------------------------------------------------------------------- */

/* Help text is fixed at compile time, so running out of room is a bug the unit tests catch:
 * the writers abort rather than hand out a silently truncated text. */
struct flags_text {
	char *p;
	size_t len, cap;
};

#define FLAGS_HELP_WIDTH  80
#define FLAGS_HELP_INDENT 30

void flags_text_add(struct flags_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "  LEFT" then `help` wrapped into the help column. */
void flags_text_option(struct flags_text *t, const char *left, const char *help);
/* One entry per row: "  -x, --flag METAVAR", the help, and a line naming the variable and
 * the default ("env VAR; default D", "env VAR; required", "default D"). */
void flags_text_options(struct flags_text *t, const struct flags_option *opts, size_t n);

#endif
