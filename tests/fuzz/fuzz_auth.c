/* fuzz_auth: the auth file's parser and the Authorization header (src/auth/).
 *
 * Input: a selector byte, then the text. The selector picks what reads it:
 *   0  auth_file_parse (an exact-size, unterminated buffer): success means every token has a
 *      valid name, scopes within the five, a round count in range, and no two share a name;
 *      failure means a reason and an empty file
 *   1  auth_parse_bearer on the text as a header value, then auth_check of the credential
 *      against a one-token file (1000 rounds, so a full check stays cheap): a parsed
 *      credential's name and secret lie inside the value, are non-empty and the secret has no
 *      '.'; the token's own secret is accepted and nothing else is
 *   2  auth_agent_secret_ok with the text as a stored hash: never true for a secret that is
 *      not the one hashed
 *   3  auth_peer_is_loopback: true only for 127.x and ::1 forms */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "fuzz_common.h"

static const char SECRET[] = "0123456789abcdef-secret";
static struct auth_file one;
static bool ready;

static void close_one(void)
{
	auth_file_close(&one);
}

static void setup(void)
{
	char line[512], err[256];
	if (ready)
		return;
	fuzz_log_setup();
	if (auth_hash_line("ci", AUTH_READ, SECRET, strlen(SECRET), 1000, line, sizeof line, err,
	                   sizeof err) != 0 ||
	    auth_file_parse(&one, line, strlen(line), err, sizeof err) != 0)
		abort();
	atexit(close_one);
	ready = true;
}

static void file(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	char err[256] = "";
	struct auth_file f;
	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	if (auth_file_parse(&f, buf, size, err, sizeof err) == 0) {
		for (size_t i = 0; i < f.n; i++) {
			const struct auth_token *t = &f.tokens[i];
			FUZZ_ASSERT(auth_valid_name(t->name, strlen(t->name)), "name %s", t->name);
			FUZZ_ASSERT(t->scopes != 0 && (t->scopes & ~AUTH_ALL_SCOPES) == 0,
			            "scopes %x", t->scopes);
			FUZZ_ASSERT(t->rounds >= 1000 && t->rounds <= AUTH_MAX_ROUNDS, "rounds %u",
			            t->rounds);
			for (size_t j = 0; j < i; j++)
				FUZZ_ASSERT(strcmp(f.tokens[j].name, t->name) != 0, "twice: %s",
				            t->name);
		}
		auth_file_close(&f);
	} else {
		FUZZ_ASSERT(err[0] != '\0', "failure without a reason");
		FUZZ_ASSERT(f.n == 0 && f.tokens == NULL, "a failed parse left tokens");
	}
	free(buf);
}

/* The input as a NUL-terminated string (an embedded NUL just ends it early). */
static char *input_str(const uint8_t *data, size_t size)
{
	char *v = malloc(size + 1);
	if (v == NULL)
		abort();
	memcpy(v, data, size);
	v[size] = '\0';
	return v;
}

static void bearer(const uint8_t *data, size_t size)
{
	char *v = input_str(data, size);
	struct auth_bearer b;
	const char *why = NULL;
	if (auth_parse_bearer(v, &b, &why) == 0) {
		size_t len = strlen(v);
		FUZZ_ASSERT(b.name_len > 0 && b.secret_len > 0, "empty part");
		FUZZ_ASSERT(b.name >= v && b.secret + b.secret_len <= v + len, "outside the value");
		FUZZ_ASSERT(memchr(b.secret, '.', b.secret_len) == NULL, "a dot in the secret");
		struct auth_token *t;
		/* A new second each time: every secret gets its full check. */
		static uint64_t clock_ms;
		clock_ms += 1000;
		enum auth_result r = auth_check(&one, &b, clock_ms, &t);
		bool right = b.name_len == 2 && memcmp(b.name, "ci", 2) == 0 &&
		             b.secret_len == strlen(SECRET) &&
		             memcmp(b.secret, SECRET, b.secret_len) == 0;
		if (r == AUTH_OK)
			FUZZ_ASSERT(right && t == &one.tokens[0],
			            "a wrong credential was accepted");
		else if (r == AUTH_DENIED)
			FUZZ_ASSERT(!right && t == NULL, "the right credential was refused");
	} else {
		FUZZ_ASSERT(why != NULL && why[0] != '\0', "refused without a reason");
	}
	free(v);
}

static void agent_hash(const uint8_t *data, size_t size)
{
	char *v = input_str(data, size);
	/* Nobody knows the secret behind an arbitrary hash; a fixed guess must never match one
	 * that is not its own (the chance of a real match is 2^-256). */
	FUZZ_ASSERT(!auth_agent_secret_ok(v, SECRET, strlen(SECRET)), "a guess matched");
	free(v);
}

static void peer(const uint8_t *data, size_t size)
{
	char *v = input_str(data, size);
	if (auth_peer_is_loopback(v))
		FUZZ_ASSERT(strncmp(v, "127.", 4) == 0 || strncmp(v, "[::1]:", 6) == 0 ||
		                strncasecmp(v, "[::ffff:127.", 12) == 0,
		            "loopback: %s", v);
	free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (size == 0)
		return 0;
	switch (data[0] & 3) {
	case 0:
		file(data + 1, size - 1);
		break;
	case 1:
		bearer(data + 1, size - 1);
		break;
	case 2:
		agent_hash(data + 1, size - 1);
		break;
	default:
		peer(data + 1, size - 1);
	}
	return 0;
}
