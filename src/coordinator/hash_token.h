/* hash_token: the `hash-token` sub-command (makes an --auth-file line; see hash_token.c). */
#ifndef CLOUDLESS_COORDINATOR_HASH_TOKEN_H
#define CLOUDLESS_COORDINATOR_HASH_TOKEN_H

/* argv[1] is "hash-token". The exit status. */
int hash_token_main(int argc, char *const argv[]);

#endif
