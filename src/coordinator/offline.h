/* offline: the coordinator's offline sub-commands, run on a data dir no coordinator is
 * running on (the work itself is raft/offline.c):
 *
 *   cloudless-coordinator restore --from FILE --data-dir DIR --node-id ID --raft-addr IP:PORT
 *   cloudless-coordinator recover --data-dir DIR
 *
 * Flags are parsed with flags/ like config.c's (the same variables: CLOUDLESS_DATA_DIR,
 * CLOUDLESS_RAFT_ID, CLOUDLESS_RAFT_ADDR); what was done is printed on stdout, refusals on
 * stderr. Exit status: 0 done, 1 refused or failed (nothing changed), 2 wrong usage. */
#ifndef CLOUDLESS_COORDINATOR_OFFLINE_H
#define CLOUDLESS_COORDINATOR_OFFLINE_H

#include <stdbool.h>

/* Whether argv[1] names an offline sub-command. */
bool offline_is_command(int argc, char *const argv[]);
/* Runs it: argv[0] is the program, argv[1] the sub-command. Returns the exit status. */
int offline_main(int argc, char *const argv[]);

#endif
