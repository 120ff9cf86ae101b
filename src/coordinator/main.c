/* cloudless-coordinator: entry point. Parses the configuration and hands over to server.c,
 * or runs an offline sub-command (restore, recover: offline.c) on a stopped node's data dir.
 *
 * SIGPIPE is ignored before anything else: libraft's TCP transport writes to peers that may
 * have died, and the default action would kill the survivors of a leader crash.
 *
 * Memory comes from jemalloc (meson.build), tuned by malloc_conf below; a sanitizer build uses
 * glibc's malloc through the sanitizer, with its mmap threshold pinned (pin_mmap_threshold). */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "coordinator/hash_token.h"
#include "coordinator/offline.h"
#include "coordinator/server.h"
#include "log/log.h"

#ifdef CLOUDLESS_JEMALLOC
/* Read by jemalloc at start-up (MALLOC_CONF in the environment is applied after it). Two
 * arenas: one loop thread does nearly all allocation, and every arena keeps its own pages.
 * Freed pages go back to the kernel within about a second, not the default ten: large blocks
 * are transient (snapshot images, libraft's compression and AppendEntries buffers), and a
 * control plane should not sit on them after a burst. */
const char *malloc_conf = "narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0";
#endif

/* By default glibc raises its mmap threshold (up to 32 MiB) each time a large mmapped block
 * is freed, so later large blocks come from the heap and stay resident after free. Our large
 * blocks are transient (snapshot images built on a worker thread, libraft's compression and
 * AppendEntries buffers): with the default, RSS after a write benchmark was ~190 MB per node
 * against ~70 MB with the threshold pinned at its initial 128 KiB, for the same throughput.
 * Pinning it also pins the trim threshold. MALLOC_MMAP_THRESHOLD_ in the environment wins. */
static void pin_mmap_threshold(void)
{
#ifndef CLOUDLESS_JEMALLOC
	if (getenv("MALLOC_MMAP_THRESHOLD_") == NULL)
		mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}

int main(int argc, char *argv[])
{
	struct config cfg;
	char err[512];
	pin_mmap_threshold();
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1 && strcmp(argv[1], "hash-token") == 0)
		return hash_token_main(argc, argv);
	if (offline_is_command(argc, argv))
		return offline_main(argc, argv);
	switch (config_parse(&cfg, argc, argv, NULL, err, sizeof err)) {
	case CONFIG_HELP:
		fputs(config_usage(), stdout);
		return 0;
	case CONFIG_VERSION:
		printf("cloudless-coordinator %s\n", CLOUDLESS_VERSION);
		return 0;
	case CONFIG_ERROR:
		/* The messages about unknown flags and stray arguments carry the hint already;
		 * adding it again would print "(see --help) (see --help)". */
		fprintf(stderr, "cloudless-coordinator: %s%s\n", err,
		        strstr(err, "(see --help)") != NULL ? "" : " (see --help)");
		return 2;
	case CONFIG_OK:
		break;
	}
	if (config_prepare_data_dir(&cfg, err, sizeof err) != 0) {
		fprintf(stderr, "cloudless-coordinator: %s\n", err);
		config_close(&cfg);
		return 2;
	}
	log_set_level(log_level_parse(cfg.log_level));
	int rv = server_run(&cfg);
	config_close(&cfg);
	return rv;
}
