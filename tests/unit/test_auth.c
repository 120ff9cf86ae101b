/* test_auth: the auth file's parser, the Bearer header's parser, secret checks (the cached
 * path included), agent secrets and the loopback test of protected mode (src/auth/). */
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "testlib.h"

static const char SECRET[] = "0123456789abcdef-secret";

static void test_hash_and_check(void)
{
	char line[512], err[256], file[1200];
	CHECK_EQ_INT(auth_hash_line("ci", AUTH_READ | AUTH_WRITE, SECRET, strlen(SECRET), 1000,
	                            line, sizeof line, err, sizeof err),
	             0);
	CHECK(strncmp(line, "ci read,write pbkdf2-sha256$1000$", 33) == 0);
	CHECK(strstr(line, SECRET) == NULL);
	snprintf(file, sizeof file, "# tokens\n\n  \t# indented comment\n%s\r\n", line);
	struct auth_file f;
	CHECK_EQ_INT(auth_file_parse(&f, file, strlen(file), err, sizeof err), 0);
	CHECK_EQ_INT(f.n, 1);
	CHECK_EQ_INT(f.tokens[0].scopes, AUTH_READ | AUTH_WRITE);
	char hdr[256];
	snprintf(hdr, sizeof hdr, "bearer   ci.%s ", SECRET);
	struct auth_bearer b;
	const char *why;
	CHECK_EQ_INT(auth_parse_bearer(hdr, &b, &why), 0);
	struct auth_token *t;
	/* Twice: the second check takes the cached path, and must agree. */
	CHECK_EQ_INT(auth_check(&f, &b, 1000, &t), AUTH_OK);
	CHECK(t == &f.tokens[0]);
	CHECK_EQ_INT(auth_check(&f, &b, 1000, &t), AUTH_OK);
	CHECK(t == &f.tokens[0]);
	snprintf(hdr, sizeof hdr, "Bearer ci.%sx", SECRET);
	CHECK_EQ_INT(auth_parse_bearer(hdr, &b, &why), 0);
	CHECK_EQ_INT(auth_check(&f, &b, 1000, &t), AUTH_DENIED);
	CHECK(t == NULL);
	/* Wrong secrets cost a full check each, AUTH_SLOW_PER_SEC a second, then none. */
	char wrong[64];
	for (int i = 2; i < AUTH_SLOW_PER_SEC; i++) { /* 2 spent above */
		snprintf(wrong, sizeof wrong, "Bearer ci.wrong-secret-%04d", i);
		CHECK_EQ_INT(auth_parse_bearer(wrong, &b, &why), 0);
		CHECK_EQ_INT(auth_check(&f, &b, 1500, &t), AUTH_DENIED);
	}
	/* The same wrong secret again is remembered: refused without a full check. */
	CHECK_EQ_INT(auth_check(&f, &b, 1600, &t), AUTH_DENIED);
	CHECK_EQ_INT(auth_parse_bearer("Bearer ci.another-wrong-one", &b, &why), 0);
	CHECK_EQ_INT(auth_check(&f, &b, 1900, &t), AUTH_BUSY);
	snprintf(hdr, sizeof hdr, "Bearer ci.%s", SECRET);
	CHECK_EQ_INT(auth_parse_bearer(hdr, &b, &why), 0);
	CHECK_EQ_INT(auth_check(&f, &b, 1900, &t), AUTH_OK); /* the verified secret goes on */
	snprintf(hdr, sizeof hdr, "Bearer ci.%sx", SECRET);
	CHECK_EQ_INT(auth_parse_bearer(hdr, &b, &why), 0);
	CHECK_EQ_INT(auth_check(&f, &b, 2000, &t), AUTH_DENIED); /* a new second */
	snprintf(hdr, sizeof hdr, "Bearer cj.%s", SECRET);
	CHECK_EQ_INT(auth_parse_bearer(hdr, &b, &why), 0);
	CHECK_EQ_INT(auth_check(&f, &b, 2000, &t), AUTH_DENIED);
	auth_file_close(&f);
}

static void test_bad_files(void)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
	    {"ci read\n", "line 1: expected NAME SCOPES HASH"},
	    {"ci read x y\n", "line 1: expected"},
	    {"c.i read pbkdf2-sha256$1000$"
	     "00000000000000000000000000000000$"
	     "0000000000000000000000000000000000000000000000000000000000000000\n",
	     "token names"},
	    {"\nci reed pbkdf2-sha256$1000$00$00\n", "line 2: unknown scope"},
	    {"ci read sha1$00\n", "hash must start"},
	    {"ci read pbkdf2-sha256$10$"
	     "00000000000000000000000000000000$"
	     "0000000000000000000000000000000000000000000000000000000000000000\n",
	     "round count"},
	    {"ci read pbkdf2-sha256$1000$00$00\n", "hex digits"},
	    {"ci read pbkdf2-sha256$1000$"
	     "0000000000000000000000000000000g$"
	     "0000000000000000000000000000000000000000000000000000000000000000\n",
	     "hex digits"},
	    {"ci read pbkdf2-sha256$1000$"
	     "00000000000000000000000000000000$"
	     "0000000000000000000000000000000000000000000000000000000000000000\n"
	     "ci write pbkdf2-sha256$1000$"
	     "00000000000000000000000000000000$"
	     "0000000000000000000000000000000000000000000000000000000000000000\n",
	     "line 2: token ci is named twice"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct auth_file f;
		char err[256] = "";
		CHECK_EQ_INT(
		    auth_file_parse(&f, cases[i].text, strlen(cases[i].text), err, sizeof err), -1);
		if (strstr(err, cases[i].why) == NULL)
			fprintf(stderr, "case %zu: %s\n", i, err);
		CHECK(strstr(err, cases[i].why) != NULL);
		CHECK(f.n == 0 && f.tokens == NULL);
	}
	struct auth_file f;
	char err[256];
	CHECK_EQ_INT(auth_file_parse(&f, "a\0b", 3, err, sizeof err), -1);
	CHECK_EQ_INT(auth_file_parse(&f, "", 0, err, sizeof err), 0);
	CHECK_EQ_INT(f.n, 0);
	auth_file_close(&f);
}

static void test_bearer(void)
{
	static const char *const bad[] = {"",
	                                  "Bearer",
	                                  "Bearer ",
	                                  "Basic abc.def",
	                                  "Bearerx a.b",
	                                  "Bearer nodot",
	                                  "Bearer .secret",
	                                  "Bearer name.",
	                                  "Bearer a.b c",
	                                  "Bearer a.b\"",
	                                  "Bearer a:b.c"};
	struct auth_bearer b;
	const char *why;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK_EQ_INT(auth_parse_bearer(bad[i], &b, &why), -1);
	CHECK_EQ_INT(auth_parse_bearer("Bearer agent~web.1.SEC", &b, &why), 0);
	CHECK(b.name_len == 11 && memcmp(b.name, "agent~web.1", 11) == 0);
	CHECK(b.secret_len == 3 && memcmp(b.secret, "SEC", 3) == 0);
}

static void test_scopes_and_names(void)
{
	unsigned s;
	char err[128], out[64];
	CHECK_EQ_INT(
	    auth_parse_scopes("read,write,operator,enroll,metrics", 34, &s, err, sizeof err), 0);
	CHECK_EQ_INT(s, AUTH_ALL_SCOPES);
	auth_format_scopes(s, out, sizeof out);
	CHECK_EQ_STR(out, "read,write,operator,enroll,metrics");
	CHECK_EQ_INT(auth_parse_scopes("read,", 5, &s, err, sizeof err), -1);
	CHECK_EQ_INT(auth_parse_scopes("", 0, &s, err, sizeof err), -1);
	CHECK_EQ_INT(auth_parse_scopes("Read", 4, &s, err, sizeof err), -1);
	CHECK(auth_valid_name("a-b_C9", 6));
	CHECK(!auth_valid_name("a.b", 3));
	CHECK(!auth_valid_secret("short", 5));
	CHECK(!auth_valid_secret("0123456789abcdef.", 17));
	CHECK(auth_valid_secret("0123456789abcdef~+/-_", 21));
	char line[512];
	CHECK_EQ_INT(auth_hash_line("ci", 0, SECRET, strlen(SECRET), 1000, line, sizeof line, err,
	                            sizeof err),
	             -1);
	CHECK_EQ_INT(auth_hash_line("ci", AUTH_READ, SECRET, strlen(SECRET), 999, line, sizeof line,
	                            err, sizeof err),
	             -1);
}

static void test_agent_secret(void)
{
	char secret[AUTH_AGENT_SECRET_LEN + 1], hash[AUTH_AGENT_HASH_LEN],
	    hash2[AUTH_AGENT_HASH_LEN];
	char secret2[AUTH_AGENT_SECRET_LEN + 1];
	CHECK_EQ_INT(auth_agent_secret_new(secret, hash), 0);
	CHECK_EQ_INT(auth_agent_secret_new(secret2, hash2), 0);
	CHECK(strcmp(secret, secret2) != 0 && strcmp(hash, hash2) != 0);
	CHECK_EQ_INT(strlen(secret), AUTH_AGENT_SECRET_LEN);
	CHECK(auth_valid_secret(secret, strlen(secret)));
	CHECK(strstr(hash, secret) == NULL);
	CHECK(auth_agent_secret_ok(hash, secret, strlen(secret)));
	CHECK(!auth_agent_secret_ok(hash, secret2, strlen(secret2)));
	CHECK(!auth_agent_secret_ok(hash2, secret, strlen(secret)));
	CHECK(!auth_agent_secret_ok(NULL, secret, strlen(secret)));
	CHECK(!auth_agent_secret_ok("sha256$00", secret, strlen(secret)));
}

static void test_loopback(void)
{
	CHECK(auth_peer_is_loopback("127.0.0.1:5000"));
	CHECK(auth_peer_is_loopback("127.3.2.1:1"));
	CHECK(auth_peer_is_loopback("[::1]:80"));
	CHECK(auth_peer_is_loopback("[::ffff:127.0.0.1]:80"));
	CHECK(!auth_peer_is_loopback("10.0.0.1:80"));
	CHECK(!auth_peer_is_loopback("128.0.0.1:80"));
	CHECK(!auth_peer_is_loopback("[::2]:80"));
	CHECK(!auth_peer_is_loopback("synthetic"));
	CHECK(!auth_peer_is_loopback(NULL));
}

int main(void)
{
	test_hash_and_check();
	test_bad_files();
	test_bearer();
	test_scopes_and_names();
	test_agent_secret();
	test_loopback();
	TEST_DONE();
}
