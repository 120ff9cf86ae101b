/* auth: the auth file, Bearer credentials and secret hashing (see auth.h). */
#include "auth/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/pbkdf2.h>
#include <nettle/sha2.h>

#include "util/errmsg.h"
#include "util/text.h"

#define PBKDF2_PREFIX "pbkdf2-sha256$"
#define SHA256_PREFIX "sha256$"

static const struct {
	const char *name;
	unsigned bit;
} SCOPES[] = {{"read", AUTH_READ},
              {"write", AUTH_WRITE},
              {"operator", AUTH_OPERATOR},
              {"enroll", AUTH_ENROLL},
              {"metrics", AUTH_METRICS}};
#define N_SCOPES (sizeof SCOPES / sizeof SCOPES[0])

static int fill_random(void *p, size_t n)
{
	uint8_t *b = p;
	while (n > 0) {
		ssize_t got = getrandom(b, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b += got;
		n -= (size_t)got;
	}
	return 0;
}

bool auth_valid_name(const char *s, size_t len)
{
	if (len == 0 || len > AUTH_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool secret_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '~' || c == '+' || c == '/' || c == '-';
}

bool auth_valid_secret(const char *s, size_t len)
{
	if (len < AUTH_SECRET_MIN || len > AUTH_SECRET_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!secret_char(s[i]))
			return false;
	return true;
}

int auth_parse_scopes(const char *s, size_t len, unsigned *out, char *err, size_t errlen)
{
	unsigned bits = 0;
	size_t i = 0;
	if (len == 0) {
		errmsg_set(err, errlen, "no scopes");
		return -1;
	}
	while (i <= len) {
		size_t j = i;
		while (j < len && s[j] != ',')
			j++;
		bool found = false;
		for (size_t k = 0; k < N_SCOPES; k++)
			if (strlen(SCOPES[k].name) == j - i &&
			    memcmp(SCOPES[k].name, s + i, j - i) == 0) {
				bits |= SCOPES[k].bit;
				found = true;
			}
		if (!found) {
			errmsg_set(err, errlen,
			           "unknown scope \"%.*s\" (scopes: read, write, operator, enroll, "
			           "metrics)",
			           (int)(j - i > 32 ? 32 : j - i), s + i);
			return -1;
		}
		i = j + 1;
	}
	*out = bits;
	return 0;
}

void auth_format_scopes(unsigned scopes, char *out, size_t outlen)
{
	size_t used = 0;
	if (outlen == 0)
		return;
	out[0] = '\0';
	for (size_t k = 0; k < N_SCOPES; k++)
		if (scopes & SCOPES[k].bit) {
			int w = snprintf(out + used, outlen - used, "%s%s", used ? "," : "",
			                 SCOPES[k].name);
			if (w < 0 || (size_t)w >= outlen - used)
				return;
			used += (size_t)w;
		}
}

static void hex_encode(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Exactly 2*n hex digits. */
static int hex_decode(const char *s, size_t len, uint8_t *out, size_t n)
{
	if (len != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = text_hex_value(s[2 * i]), lo = text_hex_value(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static void derive(const uint8_t *salt, unsigned rounds, const char *secret, size_t len,
                   uint8_t out[AUTH_HASH_LEN])
{
	pbkdf2_hmac_sha256(len, (const uint8_t *)secret, rounds, AUTH_SALT_LEN, salt, AUTH_HASH_LEN,
	                   out);
}

/* "pbkdf2-sha256$ROUNDS$SALT$HASH" */
static int parse_hash(const char *s, size_t len, struct auth_token *t, char *err, size_t errlen)
{
	size_t pl = strlen(PBKDF2_PREFIX);
	if (len < pl || memcmp(s, PBKDF2_PREFIX, pl) != 0) {
		errmsg_set(err, errlen,
		           "the hash must start with " PBKDF2_PREFIX
		           " (make the line with cloudless-coordinator hash-token)");
		return -1;
	}
	const char *p = s + pl, *end = s + len;
	const char *d1 = memchr(p, '$', (size_t)(end - p));
	const char *d2 = d1 ? memchr(d1 + 1, '$', (size_t)(end - d1 - 1)) : NULL;
	if (d1 == NULL || d2 == NULL) {
		errmsg_set(err, errlen, "the hash must be " PBKDF2_PREFIX "ROUNDS$SALT$HASH");
		return -1;
	}
	uint64_t rounds = 0;
	if (d1 == p || d1 - p > 9) {
		errmsg_set(err, errlen, "bad round count");
		return -1;
	}
	for (const char *q = p; q < d1; q++) {
		if (*q < '0' || *q > '9') {
			errmsg_set(err, errlen, "bad round count");
			return -1;
		}
		rounds = rounds * 10 + (uint64_t)(*q - '0');
	}
	if (rounds < 1000 || rounds > AUTH_MAX_ROUNDS) {
		errmsg_set(err, errlen, "round count must be 1000..%u", AUTH_MAX_ROUNDS);
		return -1;
	}
	if (hex_decode(d1 + 1, (size_t)(d2 - d1 - 1), t->salt, AUTH_SALT_LEN) != 0 ||
	    hex_decode(d2 + 1, (size_t)(end - d2 - 1), t->hash, AUTH_HASH_LEN) != 0) {
		errmsg_set(err, errlen, "salt must be %d and hash %d hex digits", 2 * AUTH_SALT_LEN,
		           2 * AUTH_HASH_LEN);
		return -1;
	}
	t->rounds = (unsigned)rounds;
	return 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The next whitespace-separated field of [*p, end). */
static bool next_field(const char **p, const char *end, const char **f, size_t *flen)
{
	const char *q = *p;
	while (q < end && is_space(*q))
		q++;
	if (q == end)
		return false;
	*f = q;
	while (q < end && !is_space(*q))
		q++;
	*flen = (size_t)(q - *f);
	*p = q;
	return true;
}

static int parse_line(const char *line, size_t len, struct auth_token *t, char *err, size_t errlen)
{
	const char *p = line, *end = line + len, *f[4];
	size_t fl[4];
	int n = 0;
	while (n < 4 && next_field(&p, end, &f[n], &fl[n]))
		n++;
	if (n != 3) {
		errmsg_set(err, errlen, "expected NAME SCOPES HASH, found %d field%s", n,
		           n == 1 ? "" : "s");
		return -1;
	}
	if (!auth_valid_name(f[0], fl[0])) {
		errmsg_set(err, errlen, "token names are 1-%d characters of [A-Za-z0-9_-]",
		           AUTH_NAME_MAX);
		return -1;
	}
	memset(t, 0, sizeof *t);
	memcpy(t->name, f[0], fl[0]);
	if (auth_parse_scopes(f[1], fl[1], &t->scopes, err, errlen) != 0)
		return -1;
	return parse_hash(f[2], fl[2], t, err, errlen);
}

int auth_file_parse(struct auth_file *f, const char *text, size_t len, char *err, size_t errlen)
{
	memset(f, 0, sizeof *f);
	size_t cap = 0;
	unsigned lineno = 0;
	const char *p = text, *end = text + len;
	if (memchr(text, '\0', len) != NULL) {
		errmsg_set(err, errlen, "the file contains a NUL byte");
		return -1;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		lineno++;
		const char *q = p;
		while (q < le && is_space(*q))
			q++;
		if (q < le && *q != '#') {
			char why[200];
			if (f->n == cap) {
				cap = cap ? 2 * cap : 8;
				struct auth_token *nt = realloc(f->tokens, cap * sizeof *nt);
				if (nt == NULL)
					abort();
				f->tokens = nt;
			}
			struct auth_token *t = &f->tokens[f->n];
			if (parse_line(q, (size_t)(le - q), t, why, sizeof why) != 0) {
				errmsg_set(err, errlen, "line %u: %s", lineno, why);
				auth_file_close(f);
				return -1;
			}
			for (size_t i = 0; i < f->n; i++)
				if (strcmp(f->tokens[i].name, t->name) == 0) {
					errmsg_set(err, errlen, "line %u: token %s is named twice",
					           lineno, t->name);
					auth_file_close(f);
					return -1;
				}
			f->n++;
		}
		p = nl ? nl + 1 : end;
	}
	if (fill_random(f->mac_key, sizeof f->mac_key) != 0) {
		errmsg_set(err, errlen, "no randomness: %s", strerror(errno));
		auth_file_close(f);
		return -1;
	}
	return 0;
}

#define AUTH_FILE_MAX (4u << 20)

int auth_file_load(struct auth_file *f, const char *path, char *err, size_t errlen)
{
	char why[256];
	memset(f, 0, sizeof *f);
	FILE *fp = fopen(path, "rb");
	if (fp == NULL) {
		errmsg_set(err, errlen, "cannot open auth file %s: %s", path, strerror(errno));
		return -1;
	}
	char *text = malloc(AUTH_FILE_MAX + 1);
	if (text == NULL)
		abort();
	size_t len = fread(text, 1, AUTH_FILE_MAX + 1, fp);
	bool failed = ferror(fp);
	fclose(fp);
	if (failed || len > AUTH_FILE_MAX) {
		errmsg_set(err, errlen, "auth file %s: %s", path,
		           failed ? "read error" : "larger than 4 MiB");
		free(text);
		return -1;
	}
	int rv = auth_file_parse(f, text, len, why, sizeof why);
	free(text);
	if (rv != 0)
		errmsg_set(err, errlen, "auth file %s: %s", path, why);
	return rv;
}

void auth_file_close(struct auth_file *f)
{
	if (f->tokens != NULL)
		memset(f->tokens, 0, f->n * sizeof *f->tokens);
	free(f->tokens);
	memset(f, 0, sizeof *f);
}

static bool token68_char(char c)
{
	return secret_char(c) || c == '.' || c == '=';
}

int auth_parse_bearer(const char *value, struct auth_bearer *out, const char **why)
{
	if (strncasecmp(value, "Bearer", 6) != 0 || value[6] != ' ') {
		*why = "the Authorization header must be \"Bearer NAME.SECRET\"";
		return -1;
	}
	const char *t = value + 6;
	while (*t == ' ')
		t++;
	size_t len = strlen(t);
	while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\t'))
		len--;
	const char *dot = NULL;
	for (size_t i = 0; i < len; i++) {
		if (!token68_char(t[i])) {
			*why = "the bearer token has a character outside token68";
			return -1;
		}
		if (t[i] == '.')
			dot = t + i;
	}
	if (dot == NULL || dot == t || dot == t + len - 1) {
		*why = "the bearer token must be NAME.SECRET";
		return -1;
	}
	out->name = t;
	out->name_len = (size_t)(dot - t);
	out->secret = dot + 1;
	out->secret_len = len - out->name_len - 1;
	return 0;
}

static void mac_secret(const struct auth_file *f, const char *s, size_t len,
                       uint8_t out[AUTH_HASH_LEN])
{
	struct hmac_sha256_ctx ctx;
	hmac_sha256_set_key(&ctx, sizeof f->mac_key, f->mac_key);
	hmac_sha256_update(&ctx, len, (const uint8_t *)s);
	hmac_sha256_digest(&ctx, AUTH_HASH_LEN, out);
}

enum auth_result auth_check(struct auth_file *f, const struct auth_bearer *b, uint64_t now_ms,
                            struct auth_token **out)
{
	struct auth_token *t = NULL;
	*out = NULL;
	if (b->secret_len > AUTH_SECRET_MAX)
		return AUTH_DENIED;
	for (size_t i = 0; i < f->n; i++)
		if (strlen(f->tokens[i].name) == b->name_len &&
		    memcmp(f->tokens[i].name, b->name, b->name_len) == 0)
			t = &f->tokens[i];
	if (t == NULL)
		return AUTH_DENIED;
	uint8_t mac[AUTH_HASH_LEN], h[AUTH_HASH_LEN];
	mac_secret(f, b->secret, b->secret_len, mac);
	if (t->seen && memeql_sec(mac, t->seen_mac, AUTH_HASH_LEN)) {
		*out = t;
		return AUTH_OK;
	}
	for (unsigned i = 0; i < t->n_bad; i++)
		if (memeql_sec(mac, t->bad_mac[i], AUTH_HASH_LEN))
			return AUTH_DENIED;
	if (t->slow_second != now_ms / 1000) {
		t->slow_second = now_ms / 1000;
		t->slow_checks = 0;
	}
	if (t->slow_checks >= AUTH_SLOW_PER_SEC)
		return AUTH_BUSY;
	t->slow_checks++;
	derive(t->salt, t->rounds, b->secret, b->secret_len, h);
	if (!memeql_sec(h, t->hash, AUTH_HASH_LEN)) {
		memcpy(t->bad_mac[t->next_bad], mac, AUTH_HASH_LEN);
		t->next_bad = (t->next_bad + 1) % AUTH_BAD_REMEMBERED;
		if (t->n_bad < AUTH_BAD_REMEMBERED)
			t->n_bad++;
		return AUTH_DENIED;
	}
	memcpy(t->seen_mac, mac, AUTH_HASH_LEN);
	t->seen = true;
	*out = t;
	return AUTH_OK;
}

int auth_hash_line(const char *name, unsigned scopes, const char *secret, size_t secret_len,
                   unsigned rounds, char *out, size_t outlen, char *err, size_t errlen)
{
	uint8_t salt[AUTH_SALT_LEN], h[AUTH_HASH_LEN];
	char salt_hex[2 * AUTH_SALT_LEN + 1], h_hex[2 * AUTH_HASH_LEN + 1], sc[64];
	if (!auth_valid_name(name, strlen(name))) {
		errmsg_set(err, errlen, "--name must be 1-%d characters of [A-Za-z0-9_-]",
		           AUTH_NAME_MAX);
		return -1;
	}
	if (scopes == 0 || (scopes & ~AUTH_ALL_SCOPES) != 0) {
		errmsg_set(err, errlen,
		           "--scopes needs at least one of read, write, operator, enroll, "
		           "metrics");
		return -1;
	}
	if (!auth_valid_secret(secret, secret_len)) {
		errmsg_set(err, errlen,
		           "the secret must be %d-%d characters of [A-Za-z0-9_~+/-] (for instance "
		           "`openssl rand -hex 32`)",
		           AUTH_SECRET_MIN, AUTH_SECRET_MAX);
		return -1;
	}
	if (rounds < 1000 || rounds > AUTH_MAX_ROUNDS) {
		errmsg_set(err, errlen, "rounds must be 1000..%u", AUTH_MAX_ROUNDS);
		return -1;
	}
	if (fill_random(salt, sizeof salt) != 0) {
		errmsg_set(err, errlen, "no randomness: %s", strerror(errno));
		return -1;
	}
	derive(salt, rounds, secret, secret_len, h);
	hex_encode(salt, sizeof salt, salt_hex);
	hex_encode(h, sizeof h, h_hex);
	auth_format_scopes(scopes, sc, sizeof sc);
	int w = snprintf(out, outlen, "%s %s " PBKDF2_PREFIX "%u$%s$%s", name, sc, rounds, salt_hex,
	                 h_hex);
	if (w < 0 || (size_t)w >= outlen) {
		errmsg_set(err, errlen, "line too long");
		return -1;
	}
	return 0;
}

static void sha256_salted(const uint8_t *salt, const char *secret, size_t len,
                          uint8_t out[AUTH_HASH_LEN])
{
	struct sha256_ctx ctx;
	sha256_init(&ctx);
	sha256_update(&ctx, AUTH_SALT_LEN, salt);
	sha256_update(&ctx, len, (const uint8_t *)secret);
	sha256_digest(&ctx, AUTH_HASH_LEN, out);
}

int auth_agent_secret_new(char secret[AUTH_AGENT_SECRET_LEN + 1], char hash[AUTH_AGENT_HASH_LEN])
{
	static const char b64url[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8_t raw[33], salt[AUTH_SALT_LEN], h[AUTH_HASH_LEN];
	char salt_hex[2 * AUTH_SALT_LEN + 1], h_hex[2 * AUTH_HASH_LEN + 1];
	if (fill_random(raw, 32) != 0 || fill_random(salt, sizeof salt) != 0)
		return -1;
	raw[32] = 0;
	/* 32 bytes = 256 bits -> 43 characters of 6 bits (the last one holds 4). */
	for (size_t i = 0; i < AUTH_AGENT_SECRET_LEN; i++) {
		size_t bit = i * 6, byte = bit / 8, off = bit % 8;
		unsigned v =
		    ((unsigned)raw[byte] << 8 | (byte + 1 < 33 ? raw[byte + 1] : 0)) >> (10 - off);
		secret[i] = b64url[v & 63];
	}
	secret[AUTH_AGENT_SECRET_LEN] = '\0';
	sha256_salted(salt, secret, AUTH_AGENT_SECRET_LEN, h);
	hex_encode(salt, sizeof salt, salt_hex);
	hex_encode(h, sizeof h, h_hex);
	snprintf(hash, AUTH_AGENT_HASH_LEN, SHA256_PREFIX "%s$%s", salt_hex, h_hex);
	memset(raw, 0, sizeof raw);
	return 0;
}

bool auth_agent_secret_ok(const char *stored, const char *secret, size_t secret_len)
{
	uint8_t salt[AUTH_SALT_LEN], want[AUTH_HASH_LEN], got[AUTH_HASH_LEN];
	size_t pl = strlen(SHA256_PREFIX);
	if (stored == NULL || strlen(stored) != AUTH_AGENT_HASH_LEN - 1 ||
	    strncmp(stored, SHA256_PREFIX, pl) != 0 || stored[pl + 2 * AUTH_SALT_LEN] != '$' ||
	    hex_decode(stored + pl, 2 * AUTH_SALT_LEN, salt, AUTH_SALT_LEN) != 0 ||
	    hex_decode(stored + pl + 2 * AUTH_SALT_LEN + 1, 2 * AUTH_HASH_LEN, want,
	               AUTH_HASH_LEN) != 0)
		return false;
	if (secret_len > AUTH_SECRET_MAX)
		return false;
	sha256_salted(salt, secret, secret_len, got);
	return memeql_sec(got, want, AUTH_HASH_LEN);
}

bool auth_peer_is_loopback(const char *peer)
{
	if (peer == NULL)
		return false;
	if (strncmp(peer, "127.", 4) == 0)
		return true;
	if (strncmp(peer, "[::1]:", 6) == 0)
		return true;
	/* An IPv4 client of a dual-stack socket. */
	return strncasecmp(peer, "[::ffff:127.", 12) == 0;
}
