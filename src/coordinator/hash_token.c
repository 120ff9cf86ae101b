/* hash_token: `cloudless-coordinator hash-token --name NAME --scopes a,b [--rounds N]` reads a
 * token's secret on standard input and prints the auth-file line for it (auth/auth.h), so the
 * secret never appears on a command line or in the file. */
#include "coordinator/hash_token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

static const char USAGE[] =
    "Usage: cloudless-coordinator hash-token --name NAME --scopes SCOPES [--rounds N]\n"
    "\n"
    "Reads a token's secret on standard input (one line) and prints the line to put in\n"
    "--auth-file for it: NAME SCOPES pbkdf2-sha256$ROUNDS$SALT$HASH. Clients then send\n"
    "Authorization: Bearer NAME.SECRET. The secret is 16-512 characters of\n"
    "[A-Za-z0-9_~+/-], for instance:\n"
    "  openssl rand -hex 32 > ci.secret\n"
    "  cloudless-coordinator hash-token --name ci --scopes read,write < ci.secret >> auth\n"
    "\n"
    "Options:\n"
    "  --name NAME                 The token's name: 1-64 characters of [A-Za-z0-9_-].\n"
    "                              required\n"
    "  --scopes SCOPES             Comma-separated: read, write, operator, enroll,\n"
    "                              metrics.\n"
    "                              required\n"
    "  --rounds N                  PBKDF2-HMAC-SHA256 rounds, 1000..10000000.\n"
    "                              default 4096\n";

int hash_token_main(int argc, char *const argv[])
{
	const char *name = NULL, *scopes_s = NULL;
	unsigned rounds = AUTH_DEFAULT_ROUNDS;
	char err[256];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(USAGE, stdout);
			return 0;
		}
		if (i + 1 >= argc || (strcmp(a, "--name") != 0 && strcmp(a, "--scopes") != 0 &&
		                      strcmp(a, "--rounds") != 0)) {
			fprintf(
			    stderr,
			    "cloudless-coordinator hash-token: unknown or incomplete argument %s "
			    "(see cloudless-coordinator hash-token --help)\n",
			    a);
			return 2;
		}
		const char *v = argv[++i];
		if (strcmp(a, "--name") == 0) {
			name = v;
		} else if (strcmp(a, "--scopes") == 0) {
			scopes_s = v;
		} else {
			char *end;
			unsigned long r = strtoul(v, &end, 10);
			if (*v < '0' || *v > '9' || *end != '\0' || r < 1000 ||
			    r > AUTH_MAX_ROUNDS) {
				fprintf(
				    stderr,
				    "cloudless-coordinator hash-token: --rounds must be 1000..%u\n",
				    AUTH_MAX_ROUNDS);
				return 2;
			}
			rounds = (unsigned)r;
		}
	}
	if (name == NULL || scopes_s == NULL) {
		fprintf(stderr,
		        "cloudless-coordinator hash-token: --name and --scopes are required "
		        "(see cloudless-coordinator hash-token --help)\n");
		return 2;
	}
	unsigned scopes;
	if (auth_parse_scopes(scopes_s, strlen(scopes_s), &scopes, err, sizeof err) != 0) {
		fprintf(stderr, "cloudless-coordinator hash-token: --scopes: %s\n", err);
		return 2;
	}
	char secret[AUTH_SECRET_MAX + 3];
	size_t len = fread(secret, 1, sizeof secret - 1, stdin);
	secret[len] = '\0';
	if (len > 0 && secret[len - 1] == '\n')
		secret[--len] = '\0';
	if (len > 0 && secret[len - 1] == '\r')
		secret[--len] = '\0';
	char line[512];
	int rv =
	    auth_hash_line(name, scopes, secret, len, rounds, line, sizeof line, err, sizeof err);
	memset(secret, 0, sizeof secret);
	if (rv != 0) {
		fprintf(stderr, "cloudless-coordinator hash-token: %s\n", err);
		return 2;
	}
	printf("%s\n", line);
	return 0;
}
