/* server: wires one coordinator process together on a single libuv loop.
 *
 * Owns the metrics registry, the forwarding client, the raft node, the api and the HTTP
 * listener(s), starts them in dependency order and tears them down in reverse. Shutdown on
 * SIGTERM/SIGINT first hands leadership to the most caught-up voter (bounded by the election
 * timeout) so writes resume on another node within milliseconds, then answers every pending
 * request, closes raft and exits 0. A node that learns it was removed from the cluster shuts
 * down the same way. */
#ifndef CLOUDLESS_COORDINATOR_SERVER_H
#define CLOUDLESS_COORDINATOR_SERVER_H

#include "config/config.h"

/* Runs until shutdown; returns the process exit code. Start-up failures print one line to
 * stderr naming the problem. */
int server_run(const struct config *cfg);

#endif
