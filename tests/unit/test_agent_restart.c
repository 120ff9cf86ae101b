/* test_agent_restart: the restart policy as a table (policy x exit history -> verdict, delay).
 *
 * Every row starts from a history of restarts at given times (seconds before "now") and asks
 * what one more exit does. The doubling, the window that forgets old restarts, the cap, and
 * the three modes each have rows that would fail if the rule broke. */
#include "agent/restart.h"

#include <stdint.h>

#include "testlib.h"

#define NOW 1000000000ull /* wall ms; any large value */

struct row {
	const char *what;
	enum agent_restart_mode mode;
	unsigned attempts, interval_s;
	uint64_t delay_ms;
	int history_s[8]; /* restarts this many seconds ago, -1 ends */
	bool success;
	enum agent_restart_verdict want;
	uint64_t want_delay_ms;
};

static const struct row rows[] = {
    {"always, first crash: the first delay",
     AGENT_RESTART_ALWAYS,
     3,
     300,
     1000,
     {-1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     1000},
    {"always, clean exit restarts too",
     AGENT_RESTART_ALWAYS,
     3,
     300,
     1000,
     {-1},
     true,
     AGENT_RESTART_AFTER_DELAY,
     1000},
    {"always, second in the window: doubled",
     AGENT_RESTART_ALWAYS,
     3,
     300,
     1000,
     {10, -1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     2000},
    {"always, third in the window: doubled twice",
     AGENT_RESTART_ALWAYS,
     3,
     300,
     1000,
     {20, 10, -1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     4000},
    {"always, attempts used up in the window: failed",
     AGENT_RESTART_ALWAYS,
     3,
     300,
     1000,
     {30, 20, 10, -1},
     false,
     AGENT_RESTART_FAILED,
     0},
    {"always, old restarts left the window",
     AGENT_RESTART_ALWAYS,
     3,
     300,
     1000,
     {900, 800, 700, -1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     1000},
    {"always, one old and one recent",
     AGENT_RESTART_ALWAYS,
     2,
     60,
     500,
     {120, 5, -1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     1000},
    {"always, exactly interval ago is outside",
     AGENT_RESTART_ALWAYS,
     1,
     60,
     500,
     {60, -1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     500},
    {"always, zero attempts: fails at once",
     AGENT_RESTART_ALWAYS,
     0,
     300,
     1000,
     {-1},
     false,
     AGENT_RESTART_FAILED,
     0},
    {"always, the doubling is capped",
     AGENT_RESTART_ALWAYS,
     20,
     86400,
     100000,
     {9, 8, 7, 6, 5, 4, 3, -1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     AGENT_RESTART_MAX_DELAY_MS},
    {"always, a first delay above the cap is kept",
     AGENT_RESTART_ALWAYS,
     5,
     86400,
     600000,
     {5, -1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     600000},
    {"always, zero delay stays zero",
     AGENT_RESTART_ALWAYS,
     5,
     300,
     0,
     {3, 2, -1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     0},
    {"on-failure, clean exit: done",
     AGENT_RESTART_ON_FAILURE,
     3,
     300,
     1000,
     {-1},
     true,
     AGENT_RESTART_DONE,
     0},
    {"on-failure, crash: restarted",
     AGENT_RESTART_ON_FAILURE,
     3,
     300,
     1000,
     {-1},
     false,
     AGENT_RESTART_AFTER_DELAY,
     1000},
    {"on-failure, clean exit even with attempts used up",
     AGENT_RESTART_ON_FAILURE,
     1,
     300,
     1000,
     {5, -1},
     true,
     AGENT_RESTART_DONE,
     0},
    {"on-failure, out of attempts: failed",
     AGENT_RESTART_ON_FAILURE,
     1,
     300,
     1000,
     {5, -1},
     false,
     AGENT_RESTART_FAILED,
     0},
    {"never, clean exit: done",
     AGENT_RESTART_NEVER,
     3,
     300,
     1000,
     {-1},
     true,
     AGENT_RESTART_DONE,
     0},
    {"never, crash: failed",
     AGENT_RESTART_NEVER,
     3,
     300,
     1000,
     {-1},
     false,
     AGENT_RESTART_FAILED,
     0},
};

static void check_row(const struct row *r)
{
	struct agent_restart_policy p = {r->mode, r->attempts, r->interval_s, r->delay_ms};
	struct agent_restart_history h;
	uint64_t delay = 12345;
	agent_restart_history_init(&h);
	for (int i = 0; r->history_s[i] >= 0; i++)
		agent_restart_history_add(&h, NOW - (uint64_t)r->history_s[i] * 1000);
	unsigned total_before = h.total;
	enum agent_restart_verdict v = agent_restart_decide(&p, &h, r->success, NOW, &delay);
	if (v != r->want || delay != r->want_delay_ms)
		fprintf(stderr, "row \"%s\": verdict %d delay %llu\n", r->what, (int)v,
		        (unsigned long long)delay);
	CHECK_EQ_INT(v, r->want);
	CHECK_EQ_INT(delay, r->want_delay_ms);
	/* Only a restart is recorded, and it is recorded at now. */
	if (r->want == AGENT_RESTART_AFTER_DELAY) {
		CHECK_EQ_INT(h.total, total_before + 1);
		CHECK(h.n > 0 && h.times[h.n - 1] == NOW);
	} else {
		CHECK_EQ_INT(h.total, total_before);
	}
	agent_restart_history_close(&h);
}

/* A crash loop from scratch: delays 1, 2, 4 s, then failed; the total counts every restart. */
static void test_crash_loop(void)
{
	struct agent_restart_policy p = {AGENT_RESTART_ALWAYS, 3, 300, 1000};
	struct agent_restart_history h;
	uint64_t delay, now = NOW;
	agent_restart_history_init(&h);
	uint64_t want[] = {1000, 2000, 4000};
	for (int i = 0; i < 3; i++) {
		CHECK_EQ_INT(agent_restart_decide(&p, &h, false, now, &delay),
		             AGENT_RESTART_AFTER_DELAY);
		CHECK_EQ_INT(delay, want[i]);
		now += delay + 100;
	}
	CHECK_EQ_INT(agent_restart_decide(&p, &h, false, now, &delay), AGENT_RESTART_FAILED);
	CHECK_EQ_INT(h.total, 3);
	/* Much later the window is clear again. */
	CHECK_EQ_INT(agent_restart_decide(&p, &h, false, now + 301000, &delay),
	             AGENT_RESTART_AFTER_DELAY);
	CHECK_EQ_INT(delay, 1000);
	CHECK_EQ_INT(h.total, 4);
	CHECK_EQ_INT(h.n, 1);
	agent_restart_history_close(&h);
}

static void test_names(void)
{
	enum agent_restart_mode m;
	CHECK(agent_restart_mode_parse("on-failure", &m) == 0 && m == AGENT_RESTART_ON_FAILURE);
	CHECK(agent_restart_mode_parse("always", &m) == 0 && m == AGENT_RESTART_ALWAYS);
	CHECK(agent_restart_mode_parse("never", &m) == 0 && m == AGENT_RESTART_NEVER);
	CHECK(agent_restart_mode_parse("sometimes", &m) == -1);
	CHECK(agent_restart_mode_parse("Always", &m) == -1);
	CHECK_EQ_STR(agent_restart_mode_name(AGENT_RESTART_ON_FAILURE), "on-failure");
	struct agent_restart_policy d;
	agent_restart_policy_default(&d);
	CHECK(d.mode == AGENT_RESTART_ALWAYS && d.attempts == 3 && d.interval_s == 300 &&
	      d.delay_ms == 1000);
}

int main(void)
{
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		check_row(&rows[i]);
	test_crash_loop();
	test_names();
	TEST_DONE();
}
