/* test_metrics: unit tests for src/metrics (Prometheus text exposition 0.0.4).
 *
 * The exposition is a wire format other tools parse, so most checks compare whole rendered
 * strings rather than probing pieces. When promtool (Debian package "prometheus") is on the
 * machine the full output is also fed to `promtool check metrics`; without it that check is
 * skipped, so the test never depends on it. Misuse aborts by design, which we check in forked
 * children. */
#include "metrics/metrics.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

static const double latency_buckets[] = {0.005, 0.1, 1, 2.5};

/* Families are declared out of name order and series added out of label order, so the
 * expected text also proves both sorts. Observations are exact binary fractions so _sum has
 * no rounding noise. */
static void test_render_exact(void)
{
	struct metrics *m;
	CHECK_EQ_INT(metrics_init(&m), 0);
	metrics_define(m, "zz_requests_total", METRICS_COUNTER, "Requests by route.", NULL, 0);
	metrics_define(m, "aa_latency_seconds", METRICS_HISTOGRAM, "Latency.", latency_buckets, 4);
	metrics_define(m, "mm_events_total", METRICS_COUNTER, "Events.", NULL, 0);

	metrics_counter_add(m, "zz_requests_total", "route=\"/b\",code=\"200\"", 2);
	metrics_counter_add(m, "zz_requests_total", "route=\"/a\",code=\"200\"", 1.5);
	metrics_counter_add(m, "zz_requests_total", "route=\"/a\",code=\"200\"", 1);
	metrics_counter_touch(m, "mm_events_total", NULL);

	metrics_observe(m, "aa_latency_seconds", "op=\"get\"", 0.00390625);
	metrics_observe(m, "aa_latency_seconds", "op=\"get\"", 0.0625);
	metrics_observe(m, "aa_latency_seconds", "op=\"get\"", 0.5);
	metrics_observe(m, "aa_latency_seconds", "op=\"get\"", 3);
	metrics_observe(m, "aa_latency_seconds", "", 1); /* on a bound: le is inclusive */

	struct buf out;
	buf_init(&out);
	metrics_render(m, &out);
	CHECK_EQ_STR(out.data, "# HELP aa_latency_seconds Latency.\n"
	                       "# TYPE aa_latency_seconds histogram\n"
	                       "aa_latency_seconds_bucket{le=\"0.005\"} 0\n"
	                       "aa_latency_seconds_bucket{le=\"0.1\"} 0\n"
	                       "aa_latency_seconds_bucket{le=\"1\"} 1\n"
	                       "aa_latency_seconds_bucket{le=\"2.5\"} 1\n"
	                       "aa_latency_seconds_bucket{le=\"+Inf\"} 1\n"
	                       "aa_latency_seconds_sum 1\n"
	                       "aa_latency_seconds_count 1\n"
	                       "aa_latency_seconds_bucket{op=\"get\",le=\"0.005\"} 1\n"
	                       "aa_latency_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n"
	                       "aa_latency_seconds_bucket{op=\"get\",le=\"1\"} 3\n"
	                       "aa_latency_seconds_bucket{op=\"get\",le=\"2.5\"} 3\n"
	                       "aa_latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
	                       "aa_latency_seconds_sum{op=\"get\"} 3.56640625\n"
	                       "aa_latency_seconds_count{op=\"get\"} 4\n"
	                       "# HELP mm_events_total Events.\n"
	                       "# TYPE mm_events_total counter\n"
	                       "mm_events_total 0\n"
	                       "# HELP zz_requests_total Requests by route.\n"
	                       "# TYPE zz_requests_total counter\n"
	                       "zz_requests_total{route=\"/a\",code=\"200\"} 2.5\n"
	                       "zz_requests_total{route=\"/b\",code=\"200\"} 2\n");
	buf_close(&out);
	metrics_close(m);
}

static void test_counter_get_touch_negative(void)
{
	struct metrics *m;
	CHECK_EQ_INT(metrics_init(&m), 0);
	metrics_define(m, "x_total", METRICS_COUNTER, "X.", NULL, 0);
	CHECK(metrics_counter_get(m, "x_total", "a=\"1\"") == 0); /* absent */
	CHECK(metrics_counter_get(m, "x_total", NULL) == 0);

	metrics_counter_touch(m, "x_total", "a=\"1\"");
	CHECK(metrics_counter_get(m, "x_total", "a=\"1\"") == 0);
	metrics_counter_add(m, "x_total", "a=\"1\"", 3);
	metrics_counter_touch(m, "x_total", "a=\"1\""); /* touching again keeps the value */
	CHECK(metrics_counter_get(m, "x_total", "a=\"1\"") == 3);

	/* NULL and "" name the same unlabelled series */
	metrics_counter_add(m, "x_total", NULL, 1);
	metrics_counter_add(m, "x_total", "", 1);
	CHECK(metrics_counter_get(m, "x_total", NULL) == 2);
	CHECK(metrics_counter_get(m, "x_total", "") == 2);

	/* counters only go up: negative and NaN increments are dropped (and logged) */
	metrics_counter_add(m, "x_total", "a=\"1\"", -1);
	metrics_counter_add(m, "x_total", "a=\"1\"", NAN);
	CHECK(metrics_counter_get(m, "x_total", "a=\"1\"") == 3);
	metrics_counter_add(m, "x_total", "a=\"1\"", 0);
	CHECK(metrics_counter_get(m, "x_total", "a=\"1\"") == 3);

	struct buf out;
	buf_init(&out);
	metrics_render(m, &out);
	CHECK_EQ_STR(out.data, "# HELP x_total X.\n"
	                       "# TYPE x_total counter\n"
	                       "x_total 2\n"
	                       "x_total{a=\"1\"} 3\n");
	buf_close(&out);
	metrics_close(m);
}

/* Many series inserted in scrambled order come out sorted; exercises array growth. */
static void test_many_series_sorted(void)
{
	struct metrics *m;
	CHECK_EQ_INT(metrics_init(&m), 0);
	metrics_define(m, "n_total", METRICS_COUNTER, "N.", NULL, 0);
	for (int i = 0; i < 300; i++) {
		char labels[32];
		snprintf(labels, sizeof labels, "k=\"%03d\"", (i * 7) % 300);
		metrics_counter_add(m, "n_total", labels, i);
	}
	/* also many families, defined in reverse */
	for (int i = 40; i > 0; i--) {
		char name[32];
		snprintf(name, sizeof name, "f%02d_total", i);
		metrics_define(m, name, METRICS_COUNTER, "F.", NULL, 0);
	}
	struct buf out;
	buf_init(&out);
	metrics_render(m, &out);
	const char *prev = NULL;
	int samples = 0, sorted = 1;
	for (const char *p = strstr(out.data, "n_total{"); p != NULL;
	     p = strstr(p + 1, "\nn_total{")) {
		const char *k = strchr(p, '{');
		if (prev != NULL && strncmp(prev, k, 10) >= 0)
			sorted = 0;
		prev = k;
		samples++;
	}
	CHECK_EQ_INT(samples, 300);
	CHECK(sorted);
	CHECK(metrics_counter_get(m, "n_total", "k=\"007\"") == 1);
	const char *f01 = strstr(out.data, "# TYPE f01_total counter");
	const char *f40 = strstr(out.data, "# TYPE f40_total counter");
	const char *n = strstr(out.data, "# TYPE n_total counter");
	CHECK(f01 != NULL && f40 != NULL && n != NULL && f01 < f40 && f40 < n);
	buf_close(&out);
	metrics_close(m);
}

static void test_histogram_edges(void)
{
	struct metrics *m;
	CHECK_EQ_INT(metrics_init(&m), 0);
	metrics_define(m, "h_seconds", METRICS_HISTOGRAM, "H.", latency_buckets, 4);
	metrics_define(m, "nob_seconds", METRICS_HISTOGRAM, "No buckets.", NULL, 0);
	metrics_observe(m, "h_seconds", "", 0.1);   /* exactly on a bound */
	metrics_observe(m, "h_seconds", "", 100);   /* only in +Inf */
	metrics_observe(m, "h_seconds", "", -1);    /* below the first bound */
	metrics_observe(m, "h_seconds", "", NAN);   /* ignored */
	metrics_observe(m, "nob_seconds", "", 0.5); /* only +Inf */
	struct buf out;
	buf_init(&out);
	metrics_render(m, &out);
	CHECK_EQ_STR(out.data, "# HELP h_seconds H.\n"
	                       "# TYPE h_seconds histogram\n"
	                       "h_seconds_bucket{le=\"0.005\"} 1\n"
	                       "h_seconds_bucket{le=\"0.1\"} 2\n"
	                       "h_seconds_bucket{le=\"1\"} 2\n"
	                       "h_seconds_bucket{le=\"2.5\"} 2\n"
	                       "h_seconds_bucket{le=\"+Inf\"} 3\n"
	                       "h_seconds_sum 99.1\n"
	                       "h_seconds_count 3\n"
	                       "# HELP nob_seconds No buckets.\n"
	                       "# TYPE nob_seconds histogram\n"
	                       "nob_seconds_bucket{le=\"+Inf\"} 1\n"
	                       "nob_seconds_sum 0.5\n"
	                       "nob_seconds_count 1\n");
	buf_close(&out);
	metrics_close(m);
}

static void test_gauges_and_numbers(void)
{
	struct buf out;
	buf_init(&out);
	metrics_write_gauge(&out, "cloudless_coordinator_is_leader", "1 when this node is leader.",
	                    NULL, 1);
	CHECK_EQ_STR(out.data,
	             "# HELP cloudless_coordinator_is_leader 1 when this node is leader.\n"
	             "# TYPE cloudless_coordinator_is_leader gauge\n"
	             "cloudless_coordinator_is_leader 1\n");
	/* the HA check greps for exactly this line */
	CHECK(strstr(out.data, "\ncloudless_coordinator_is_leader 1\n") != NULL);

	buf_reset(&out);
	metrics_write_gauge_header(&out, "g", "Multi\\line\nhelp");
	metrics_write_sample(&out, "g", "node_id=\"n1\"", 2);
	metrics_write_sample(&out, "g", "", 0);
	CHECK_EQ_STR(out.data, "# HELP g Multi\\\\line\\nhelp\n"
	                       "# TYPE g gauge\n"
	                       "g{node_id=\"n1\"} 2\n"
	                       "g 0\n");

	static const struct {
		double v;
		const char *text;
	} numbers[] = {
	    {17, "17"},
	    {-3, "-3"},
	    {-0.0, "0"},
	    {0.1, "0.1"},
	    {2.5, "2.5"},
	    {0.005, "0.005"},
	    {1.0 / 3, "0.3333333333333333"},
	    {0.1 + 0.2, "0.30000000000000004"},
	    {1e20, "1e+20"},
	    {4294967296.0, "4294967296"},
	    {9007199254740991.0, "9007199254740991"},
	    {9007199254740992.0, "9007199254740992"},
	    {1e-7, "1e-07"},
	    {INFINITY, "+Inf"},
	    {-INFINITY, "-Inf"},
	    {NAN, "NaN"},
	};
	for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
		char want[64];
		snprintf(want, sizeof want, "x %s\n", numbers[i].text);
		buf_reset(&out);
		metrics_write_sample(&out, "x", NULL, numbers[i].v);
		CHECK_EQ_STR(out.data, want);
		/* what we print must parse back to the same double */
		if (!isnan(numbers[i].v))
			CHECK(strtod(out.data + 2, NULL) == numbers[i].v);
	}
	buf_close(&out);
}

static void test_escape_label(void)
{
	struct buf out;
	buf_init(&out);
	metrics_escape_label(&out, "a\\b\"c\nd/é");
	CHECK_EQ_STR(out.data, "a\\\\b\\\"c\\nd/é");
	buf_reset(&out);
	metrics_escape_label(&out, "");
	CHECK(out.len == 0);

	/* escaped values round-trip through a rendered series */
	struct metrics *m;
	CHECK_EQ_INT(metrics_init(&m), 0);
	metrics_define(m, "e_total", METRICS_COUNTER, "E.", NULL, 0);
	struct buf labels;
	buf_init(&labels);
	buf_puts(&labels, "path=\"");
	metrics_escape_label(&labels, "/v1/kv/\"quoted\"\\x");
	buf_puts(&labels, "\"");
	metrics_counter_add(m, "e_total", labels.data, 1);
	buf_reset(&out);
	metrics_render(m, &out);
	CHECK_EQ_STR(out.data, "# HELP e_total E.\n"
	                       "# TYPE e_total counter\n"
	                       "e_total{path=\"/v1/kv/\\\"quoted\\\"\\\\x\"} 1\n");
	buf_close(&labels);
	buf_close(&out);
	metrics_close(m);
}

/* Runs fn in a child and reports whether it died of SIGABRT. The child restores the default
 * action first: under ASan with handle_abort=1 (as scripts/test.sh runs it) the sanitizer's
 * handler would otherwise turn the abort into a report and exit status 1. */
static int aborts(void (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (freopen("/dev/null", "w", stderr) == NULL)
			_exit(2);
		signal(SIGABRT, SIG_DFL);
		fn();
		_exit(0);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void misuse_unknown_add(void)
{
	struct metrics *m;
	if (metrics_init(&m) == 0)
		metrics_counter_add(m, "nope_total", NULL, 1);
}

static void misuse_unknown_observe(void)
{
	struct metrics *m;
	if (metrics_init(&m) == 0)
		metrics_observe(m, "nope_seconds", NULL, 1);
}

static void misuse_wrong_type(void)
{
	struct metrics *m;
	if (metrics_init(&m) != 0)
		return;
	metrics_define(m, "c_total", METRICS_COUNTER, "C.", NULL, 0);
	metrics_observe(m, "c_total", NULL, 1);
}

static void misuse_define_twice(void)
{
	struct metrics *m;
	if (metrics_init(&m) != 0)
		return;
	metrics_define(m, "c_total", METRICS_COUNTER, "C.", NULL, 0);
	metrics_define(m, "c_total", METRICS_COUNTER, "C.", NULL, 0);
}

static void misuse_bad_name(void)
{
	struct metrics *m;
	if (metrics_init(&m) == 0)
		metrics_define(m, "1bad-name", METRICS_COUNTER, "C.", NULL, 0);
}

static void misuse_unsorted_buckets(void)
{
	static const double b[] = {1, 0.5};
	struct metrics *m;
	if (metrics_init(&m) == 0)
		metrics_define(m, "h_seconds", METRICS_HISTOGRAM, "H.", b, 2);
}

static void test_misuse_aborts(void)
{
	CHECK_EQ_INT(aborts(misuse_unknown_add), 1);
	CHECK_EQ_INT(aborts(misuse_unknown_observe), 1);
	CHECK_EQ_INT(aborts(misuse_wrong_type), 1);
	CHECK_EQ_INT(aborts(misuse_define_twice), 1);
	CHECK_EQ_INT(aborts(misuse_bad_name), 1);
	CHECK_EQ_INT(aborts(misuse_unsorted_buckets), 1);
}

/* Feeds a representative exposition to `promtool check metrics` when promtool exists. */
static void test_promtool(void)
{
	const char *promtool = NULL;
	static const char *const candidates[] = {"/usr/bin/promtool", "/usr/local/bin/promtool"};
	for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
		if (access(candidates[i], X_OK) == 0)
			promtool = candidates[i];
	if (promtool == NULL) {
		fprintf(stderr, "promtool not found; skipping the promtool check\n");
		return;
	}

	struct metrics *m;
	CHECK_EQ_INT(metrics_init(&m), 0);
	metrics_define(m, "cloudless_http_requests_total", METRICS_COUNTER,
	               "HTTP requests by route and status code.", NULL, 0);
	metrics_define(m, "cloudless_http_request_duration_seconds", METRICS_HISTOGRAM,
	               "HTTP request latency.\nSecond line with a \\ backslash.", latency_buckets,
	               4);
	metrics_counter_add(m, "cloudless_http_requests_total", "route=\"/v1/kv\",code=\"200\"", 3);
	metrics_counter_touch(m, "cloudless_http_requests_total", "route=\"/v1/kv\",code=\"500\"");
	metrics_observe(m, "cloudless_http_request_duration_seconds", "route=\"/v1/kv\"", 0.02);
	metrics_observe(m, "cloudless_http_request_duration_seconds", "", 0.3);
	struct buf out;
	buf_init(&out);
	metrics_render(m, &out);
	metrics_write_gauge(&out, "cloudless_coordinator_is_leader", "Whether this node leads.",
	                    NULL, 1);
	metrics_write_gauge_header(&out, "cloudless_raft_node_state", "Raft state of the node.");
	struct buf labels;
	buf_init(&labels);
	buf_puts(&labels, "node_id=\"");
	metrics_escape_label(&labels, "we\"ird\\node\nid");
	buf_puts(&labels, "\"");
	metrics_write_sample(&out, "cloudless_raft_node_state", labels.data, 2);
	buf_close(&labels);
	metrics_close(m);

	char path[] = "/tmp/test_metrics_XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0) {
		buf_close(&out);
		return;
	}
	CHECK((size_t)write(fd, out.data, out.len) == out.len);
	close(fd);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "%s check metrics < %s", promtool, path);
	int rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "promtool rejected:\n%s", out.data);
	CHECK_EQ_INT(rc, 0);
	unlink(path);
	buf_close(&out);
}

int main(void)
{
	test_render_exact();
	test_counter_get_touch_negative();
	test_many_series_sorted();
	test_histogram_edges();
	test_gauges_and_numbers();
	test_escape_label();
	test_misuse_aborts();
	test_promtool();
	TEST_DONE();
}
