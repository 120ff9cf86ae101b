/* fuzz_common: helpers shared by the libFuzzer targets (temporary directories, quiet logs).
 *
 * Each target keeps its expensive state (a RocksDB, an HTTP server) for the whole process and
 * tears it down from an atexit handler, so LeakSanitizer's exit-time check (registered before
 * ours, so it runs after) sees a clean heap. */
#ifndef CLOUDLESS_FUZZ_COMMON_H
#define CLOUDLESS_FUZZ_COMMON_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"

/* Reports a violated property and aborts so libFuzzer saves the input as a crash. */
#define FUZZ_ASSERT(cond, ...)                                                                \
	do {                                                                                  \
		if (!(cond)) {                                                                \
			fprintf(stderr, "%s:%d: property violated: %s: ", __FILE__, __LINE__, \
			        #cond);                                                       \
			fprintf(stderr, __VA_ARGS__);                                         \
			fputc('\n', stderr);                                                  \
			abort();                                                              \
		}                                                                             \
	} while (0)

/* Logs at error level only (fuzzing produces a flood of expected warnings); FUZZ_LOG=debug
 * (or info, warn) shows more when reproducing a finding. */
static inline void fuzz_log_setup(void)
{
	const char *name = getenv("FUZZ_LOG");
	int level = name != NULL ? log_level_parse(name) : -1;
	log_set_level(level >= 0 ? (enum log_level)level : LOG_ERROR);
}

/* mkdtemp under $FUZZ_TMPDIR, else /dev/shm when writable (RocksDB's fsyncs cost nothing on
 * tmpfs, which matters at thousands of restores a second), else $TMPDIR or /tmp. Aborts on
 * failure. Returns a static buffer. */
static inline const char *fuzz_tmpdir(const char *name)
{
	static char path[4096];
	const char *base = getenv("FUZZ_TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	snprintf(path, sizeof path, "%s/cloudless-%s.XXXXXX", base, name);
	if (mkdtemp(path) == NULL) {
		perror("mkdtemp");
		abort();
	}
	return path;
}

static inline int fuzz_rm_one(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	remove(p);
	return 0;
}

static inline void fuzz_rmtree(const char *path)
{
	nftw(path, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
