/* auth: API tokens (issue 14). A leaf library: the auth file's parser, the Bearer header's
 * parser, secret hashing (nettle's PBKDF2-HMAC-SHA256 and SHA-256) and constant-time checks.
 * The api layer (api/auth_check.c) decides which scope each route needs; this file knows
 * nothing about routes.
 *
 * An auth file is lines of `NAME SCOPES HASH` (`#` starts a comment line, blank lines are
 * skipped), one per token, as `cloudless-coordinator hash-token` prints them:
 *
 *   ci read,write pbkdf2-sha256$4096$<salt hex>$<hash hex>
 *
 * NAME is 1-64 characters of [A-Za-z0-9_-]; SCOPES a comma-separated subset of read, write,
 * operator, enroll, metrics; HASH the salted PBKDF2 of the secret, never the secret. A client
 * sends `Authorization: Bearer NAME.SECRET`: the name picks the line, so one request costs one
 * hash, not one per token. A secret is 16-512 characters of [A-Za-z0-9_~+/-] (token68 without
 * '.', which separates it from the name).
 *
 * Checking a secret costs ITERATIONS rounds of HMAC-SHA256 (about a millisecond at 4096) the
 * first time; a token whose secret was verified remembers an HMAC of it under a key random to
 * the process, so later requests with it cost one HMAC. */
#ifndef CLOUDLESS_AUTH_AUTH_H
#define CLOUDLESS_AUTH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum auth_scope {
	AUTH_READ = 1u << 0,
	AUTH_WRITE = 1u << 1,
	AUTH_OPERATOR = 1u << 2,
	AUTH_ENROLL = 1u << 3,
	AUTH_METRICS = 1u << 4,
};
#define AUTH_ALL_SCOPES 0x1fu

#define AUTH_NAME_MAX       64
#define AUTH_SECRET_MIN     16
#define AUTH_SECRET_MAX     512
#define AUTH_SALT_LEN       16
#define AUTH_HASH_LEN       32
#define AUTH_DEFAULT_ROUNDS 4096
#define AUTH_MAX_ROUNDS     10000000u
#define AUTH_BAD_REMEMBERED 4

struct auth_token {
	char name[AUTH_NAME_MAX + 1];
	unsigned scopes;
	unsigned rounds;
	uint8_t salt[AUTH_SALT_LEN];
	uint8_t hash[AUTH_HASH_LEN];
	bool seen; /* seen_mac holds the HMAC of the verified secret */
	uint8_t seen_mac[AUTH_HASH_LEN];
	/* HMACs of the last wrong secrets: the same wrong secret again is refused at once. */
	uint8_t bad_mac[AUTH_BAD_REMEMBERED][AUTH_HASH_LEN];
	unsigned n_bad, next_bad;
	/* Full PBKDF2 checks in the current second (AUTH_SLOW_PER_SEC bounds them). */
	uint64_t slow_second;
	unsigned slow_checks;
	/* The request rate limit's bucket (the api's, api/auth_check.c): requests left, and when
	 * it was last filled (ms). */
	double bucket;
	uint64_t bucket_ms;
};

struct auth_file {
	struct auth_token *tokens;
	size_t n;
	uint8_t mac_key[32]; /* random per load: the key of seen_mac */
};

/* Parses an auth file's text (len bytes; need not be NUL-terminated). On error returns -1 with
 * "line N: why" in err and leaves f empty. */
int auth_file_parse(struct auth_file *f, const char *text, size_t len, char *err, size_t errlen);
/* Reads and parses path; errors name the file. */
int auth_file_load(struct auth_file *f, const char *path, char *err, size_t errlen);
void auth_file_close(struct auth_file *f);

/* "read,write" -> bits; -1 with the unknown name in err. Empty is an error. */
int auth_parse_scopes(const char *s, size_t len, unsigned *out, char *err, size_t errlen);
/* Bits -> "read,write" (in the order of enum auth_scope). */
void auth_format_scopes(unsigned scopes, char *out, size_t outlen);

bool auth_valid_name(const char *s, size_t len);
bool auth_valid_secret(const char *s, size_t len);

/* A credential from an Authorization header value. */
struct auth_bearer {
	const char *name, *secret; /* into the header value; not NUL-terminated */
	size_t name_len, secret_len;
};
/* "Bearer NAME.SECRET" (scheme case-insensitive, one or more spaces): 0, or -1 with why. The
 * name is what precedes the last '.', so it may itself hold dots (agent ids do). */
int auth_parse_bearer(const char *value, struct auth_bearer *out, const char **why);

/* Full (PBKDF2) checks of one token per second, beyond which a secret not seen before is not
 * checked at all: a flood of wrong secrets for a known name costs the loop at most this many
 * hashes a second (a few ms each), while clients whose secret was verified once go on. */
#define AUTH_SLOW_PER_SEC 20

enum auth_result { AUTH_OK, AUTH_DENIED, AUTH_BUSY };
/* AUTH_OK with the token the credential names when its secret matches; AUTH_DENIED for an
 * unknown name or a wrong secret (the caller cannot tell which); AUTH_BUSY when the secret
 * was not checked because the token had its AUTH_SLOW_PER_SEC this second (now_ms: a
 * monotonic clock). */
enum auth_result auth_check(struct auth_file *f, const struct auth_bearer *b, uint64_t now_ms,
                            struct auth_token **out);

/* The auth-file line (no newline) for a new token: a random salt, `rounds` rounds. -1 with
 * why in err when name, scopes or secret are not valid. */
int auth_hash_line(const char *name, unsigned scopes, const char *secret, size_t secret_len,
                   unsigned rounds, char *out, size_t outlen, char *err, size_t errlen);

/* Agent secrets (high-entropy, made by the coordinator) are stored as one salted SHA-256:
 * "sha256$<salt hex>$<hash hex>" (AUTH_AGENT_HASH_LEN characters with the NUL). */
#define AUTH_AGENT_HASH_LEN   (7 + 2 * AUTH_SALT_LEN + 1 + 2 * AUTH_HASH_LEN + 1)
#define AUTH_AGENT_SECRET_LEN 43 /* 32 random bytes as base64url without padding */
/* A fresh random secret and its stored form; -1 if the system has no randomness. */
int auth_agent_secret_new(char secret[AUTH_AGENT_SECRET_LEN + 1], char hash[AUTH_AGENT_HASH_LEN]);
/* Constant-time check of a presented secret against a stored form. */
bool auth_agent_secret_ok(const char *stored, const char *secret, size_t secret_len);

/* True when peer ("ip:port", "[v6]:port") is a loopback address: 127.0.0.0/8 or ::1. */
bool auth_peer_is_loopback(const char *peer);

#endif
