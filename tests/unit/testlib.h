/* testlib: the few assertion macros our C unit tests use.
 *
 * Each test file is one executable registered with meson (suite "unit"); a failed check
 * prints file:line and the expression, and the process exits 1 at the end of main via
 * TEST_DONE(). Checks keep going after a failure so one run shows every broken case. */
#ifndef CLOUDLESS_TESTLIB_H
#define CLOUDLESS_TESTLIB_H

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int testlib_failures;
static int testlib_checks;

#define CHECK(expr)                                                                              \
	do {                                                                                     \
		testlib_checks++;                                                                \
		if (!(expr)) {                                                                   \
			testlib_failures++;                                                      \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
		}                                                                                \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                                  \
	do {                                                                                \
		long long va_ = (long long)(a), vb_ = (long long)(b);                       \
		testlib_checks++;                                                           \
		if (va_ != vb_) {                                                           \
			testlib_failures++;                                                 \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, \
			        __LINE__, #a, #b, va_, vb_);                                \
		}                                                                           \
	} while (0)

#define CHECK_EQ_STR(a, b)                                                                      \
	do {                                                                                    \
		const char *sa_ = (a), *sb_ = (b);                                              \
		testlib_checks++;                                                               \
		if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {                      \
			testlib_failures++;                                                     \
			fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, \
			        __LINE__, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");  \
		}                                                                               \
	} while (0)

#define TEST_DONE()                                                                          \
	do {                                                                                 \
		if (testlib_checks == 0) {                                                   \
			fprintf(stderr, "no checks ran\n");                                  \
			return 1;                                                            \
		}                                                                            \
		fprintf(stderr, "%d checks, %d failed\n", testlib_checks, testlib_failures); \
		return testlib_failures ? 1 : 0;                                             \
	} while (0)

static int testlib_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* rm -rf dir (a test's temporary directory); 0 on success. */
static inline int test_rmtree(const char *dir)
{
	return nftw(dir, testlib_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
