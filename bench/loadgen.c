/* cloudless-loadgen: a closed-loop HTTP load generator for Cloudless and etcd.
 *
 * N virtual clients each keep exactly one request in flight over their own keep-alive
 * connection (one curl easy handle per client, all driven by one curl multi handle on one
 * thread). A client sends its next request as soon as the previous one completes, so the
 * offered load adapts to the server (closed loop), like wrk does.
 *
 * It speaks two APIs:
 *   cloudless  PUT /v1/kv/{key} (raw body), GET /v1/kv/{key}[?consistency=stale]
 *   etcd       POST /v3/kv/put {"key":b64,"value":b64},
 *              POST /v3/kv/range {"key":b64[,"serializable":true]}
 * and three operations: put (distinct keys), get (linearizable read) and stale (stale or
 * serializable read) of keys a previous put run created (--keys N: keys 0..N-1 of the prefix).
 *
 * Results: one JSON line on stdout (throughput, latency percentiles from the sorted samples,
 * error counts) and one human-readable line on stderr. With --ack-log FILE every completion
 * is also written as "send_ns done_ns status" (CLOCK_MONOTONIC, the clock Python's
 * time.monotonic() reads), which the driver uses to measure failover gaps. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "samples.h"

#define MAX_URLS    16
#define MAX_CLIENTS 4096
/* After a failed request a client waits this long before its next one, so a refused
 * connection does not turn into a busy loop. */
#define ERROR_BACKOFF_NS (5 * 1000000ULL)

enum api { API_CLOUDLESS, API_ETCD };
enum op { OP_PUT, OP_GET, OP_STALE };

struct opts {
	enum api api;
	enum op op;
	const char *urls[MAX_URLS];
	int n_urls;
	int concurrency;
	double duration_s;
	double warmup_s;
	long long requests; /* stop after this many requests (0: run for duration_s) */
	long long keys;     /* reads: key space 0..keys-1 */
	long long key_offset;
	int value_size;
	const char *prefix;
	const char *label;
	const char *ack_log;
	const char *cacert; /* https:// URLs: the CA to verify the server against */
	const char *token;  /* sent as Authorization: Bearer (a coordinator with --auth-file) */
	long timeout_ms;
	bool idempotent;
	bool quiet;
};

struct client {
	int id;
	CURL *easy;
	struct curl_slist *headers;
	const char *base;
	char url[512];
	char body[2048];
	size_t body_len;
	uint64_t sent_ns;
	uint64_t next_ns; /* when idle: earliest time to send again */
	bool busy;
	long long n; /* requests sent by this client */
};

struct stats {
	struct samples lat;
	long long ok, non2xx, transport;
	long long status_counts[6]; /* 1xx..5xx, index 0 unused */
	uint64_t first_ns, last_ns;
};

static void die(const char *msg)
{
	fprintf(stderr, "cloudless-loadgen: %s\n", msg);
	exit(2);
}

static void b64(const char *in, size_t len, char *out)
{
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)(unsigned char)in[i + 1] << 8;
		if (i + 2 < len)
			v |= (uint32_t)(unsigned char)in[i + 2];
		out[o++] = tbl[(v >> 18) & 63];
		out[o++] = tbl[(v >> 12) & 63];
		out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? tbl[v & 63] : '=';
	}
	out[o] = '\0';
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * nmemb;
}

/* xorshift64*: cheap per-process randomness for picking read keys. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static long long next_key_no = 0;

/* Builds the client's next request (URL, body) and adds it to the multi handle. */
static void client_send(const struct opts *o, CURLM *multi, struct client *c, const char *value)
{
	long long k;
	char key[128], kb64[200];
	if (o->op == OP_PUT)
		k = o->key_offset + next_key_no++;
	else
		k = o->key_offset + (long long)(rng() % (uint64_t)o->keys);
	snprintf(key, sizeof key, "%s-%lld", o->prefix, k);
	if (o->api == API_CLOUDLESS) {
		snprintf(c->url, sizeof c->url, "%s/v1/kv/%s%s", c->base, key,
		         o->op == OP_STALE ? "?consistency=stale" : "");
		curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
		if (o->op == OP_PUT) {
			curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, "PUT");
			curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, value);
			curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)o->value_size);
		} else {
			curl_easy_setopt(c->easy, CURLOPT_HTTPGET, 1L);
		}
		if (o->idempotent) {
			/* Each request a new Idempotency-Key, so a follower may retry a forwarded
			 * write whose outcome is unknown (the leader died) without applying it
			 * twice: the failover phases measure availability, not error handling. */
			char h[160];
			curl_slist_free_all(c->headers);
			c->headers = curl_slist_append(NULL, "Expect:");
			c->headers =
			    curl_slist_append(c->headers, "Content-Type: application/octet-stream");
			snprintf(h, sizeof h, "Idempotency-Key: %s-%lld", o->prefix, k);
			c->headers = curl_slist_append(c->headers, h);
			curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
		}
	} else {
		b64(key, strlen(key), kb64);
		if (o->op == OP_PUT) {
			int n =
			    snprintf(c->body, sizeof c->body, "{\"key\":\"%s\",\"value\":\"", kb64);
			char vb64[1400];
			b64(value, (size_t)o->value_size, vb64);
			n += snprintf(c->body + n, sizeof c->body - (size_t)n, "%s\"}", vb64);
			c->body_len = (size_t)n;
			snprintf(c->url, sizeof c->url, "%s/v3/kv/put", c->base);
		} else {
			c->body_len =
			    (size_t)snprintf(c->body, sizeof c->body, "{\"key\":\"%s\"%s}", kb64,
			                     o->op == OP_STALE ? ",\"serializable\":true" : "");
			snprintf(c->url, sizeof c->url, "%s/v3/kv/range", c->base);
		}
		curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)c->body_len);
	}
	c->n++;
	c->busy = true;
	c->sent_ns = samples_now_ns();
	curl_multi_add_handle(multi, c->easy);
}

static void client_init(const struct opts *o, struct client *c, int id)
{
	c->id = id;
	c->base = o->urls[id % o->n_urls];
	c->easy = curl_easy_init();
	if (c->easy == NULL)
		die("curl_easy_init failed");
	/* curl only adds "Expect: 100-continue" to large bodies, but never wait a round trip. */
	c->headers = curl_slist_append(NULL, "Expect:");
	c->headers = curl_slist_append(c->headers, o->api == API_ETCD
	                                               ? "Content-Type: application/json"
	                                               : "Content-Type: application/octet-stream");
	curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c->easy, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	if (o->cacert != NULL)
		curl_easy_setopt(c->easy, CURLOPT_CAINFO, o->cacert);
	if (o->token != NULL) {
		/* curl writes the header itself, so the per-request header lists stay as they are.
		 */
		curl_easy_setopt(c->easy, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(c->easy, CURLOPT_XOAUTH2_BEARER, o->token);
	}
	curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
	/* Every client keeps one connection of its own for the whole run. */
	curl_easy_setopt(c->easy, CURLOPT_FORBID_REUSE, 0L);
}

static const char *op_name(enum op op)
{
	return op == OP_PUT ? "put" : op == OP_GET ? "get" : "stale";
}

static void usage(void)
{
	fputs("Usage: cloudless-loadgen --url URL[,URL...] [options]\n"
	      "  --api cloudless|etcd     API to speak (default cloudless)\n"
	      "  --op put|get|stale       writes of distinct keys, linearizable or stale reads\n"
	      "  --url URL[,URL...]       base URLs; client i uses URL i mod count\n"
	      "  --concurrency N          virtual clients, one request in flight each (1)\n"
	      "  --duration S             measured seconds (5)\n"
	      "  --warmup S               unmeasured seconds before that (0)\n"
	      "  --requests N             stop after N requests instead of a duration\n"
	      "  --keys N                 reads: pick keys 0..N-1 of the prefix (1000)\n"
	      "  --key-offset N           first key number (0)\n"
	      "  --value-size B           value bytes for writes (100)\n"
	      "  --prefix P               key prefix (bench)\n"
	      "  --label L                free text copied into the JSON line\n"
	      "  --timeout-ms MS          per-request timeout (10000)\n"
	      "  --idempotent             cloudless writes carry a unique Idempotency-Key\n"
	      "  --ack-log FILE           write \"send_ns done_ns status\" per completion\n"
	      "  --cacert FILE            CA certificates for https:// URLs\n"
	      "  --token NAME.SECRET      send Authorization: Bearer (cloudless --auth-file)\n"
	      "  --quiet                  no human-readable line on stderr\n",
	      stderr);
}

static void parse_urls(struct opts *o, char *list)
{
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (o->n_urls == MAX_URLS)
			die("too many URLs");
		size_t n = strlen(t);
		while (n > 0 && t[n - 1] == '/')
			t[--n] = '\0';
		o->urls[o->n_urls++] = t;
	}
}

static void parse_args(struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"api", required_argument, NULL, 'a'},
	    {"op", required_argument, NULL, 'o'},
	    {"url", required_argument, NULL, 'u'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"duration", required_argument, NULL, 'd'},
	    {"warmup", required_argument, NULL, 'w'},
	    {"requests", required_argument, NULL, 'n'},
	    {"keys", required_argument, NULL, 'k'},
	    {"key-offset", required_argument, NULL, 'K'},
	    {"value-size", required_argument, NULL, 'v'},
	    {"prefix", required_argument, NULL, 'p'},
	    {"label", required_argument, NULL, 'l'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"idempotent", no_argument, NULL, 'i'},
	    {"ack-log", required_argument, NULL, 'L'},
	    {"cacert", required_argument, NULL, 'C'},
	    {"token", required_argument, NULL, 'T'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	*o = (struct opts){.api = API_CLOUDLESS,
	                   .op = OP_PUT,
	                   .concurrency = 1,
	                   .duration_s = 5,
	                   .keys = 1000,
	                   .value_size = 100,
	                   .prefix = "bench",
	                   .label = "",
	                   .timeout_ms = 10000};
	int ch;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (strcmp(optarg, "cloudless") == 0)
				o->api = API_CLOUDLESS;
			else if (strcmp(optarg, "etcd") == 0)
				o->api = API_ETCD;
			else
				die("--api must be cloudless or etcd");
			break;
		case 'o':
			if (strcmp(optarg, "put") == 0)
				o->op = OP_PUT;
			else if (strcmp(optarg, "get") == 0)
				o->op = OP_GET;
			else if (strcmp(optarg, "stale") == 0)
				o->op = OP_STALE;
			else
				die("--op must be put, get or stale");
			break;
		case 'u':
			parse_urls(o, optarg);
			break;
		case 'c':
			o->concurrency = atoi(optarg);
			break;
		case 'd':
			o->duration_s = atof(optarg);
			break;
		case 'w':
			o->warmup_s = atof(optarg);
			break;
		case 'n':
			o->requests = atoll(optarg);
			break;
		case 'k':
			o->keys = atoll(optarg);
			break;
		case 'K':
			o->key_offset = atoll(optarg);
			break;
		case 'v':
			o->value_size = atoi(optarg);
			break;
		case 'p':
			o->prefix = optarg;
			break;
		case 'l':
			o->label = optarg;
			break;
		case 't':
			o->timeout_ms = atol(optarg);
			break;
		case 'i':
			o->idempotent = true;
			break;
		case 'L':
			o->ack_log = optarg;
			break;
		case 'C':
			o->cacert = optarg;
			break;
		case 'T':
			o->token = optarg;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			usage();
			exit(0);
		default:
			usage();
			exit(2);
		}
	}
	if (o->n_urls == 0)
		die("--url is required");
	if (o->concurrency < 1 || o->concurrency > MAX_CLIENTS)
		die("--concurrency must be 1..4096");
	if (o->value_size < 0 || o->value_size > 1024)
		die("--value-size must be 0..1024");
	if (o->keys < 1)
		die("--keys must be at least 1");
	if (o->requests == 0 && o->duration_s <= 0)
		die("--duration must be positive");
}

int main(int argc, char **argv)
{
	struct opts o;
	parse_args(&o, argc, argv);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		die("curl_global_init failed");
	rng_state ^= samples_now_ns();

	char value[1025];
	for (int i = 0; i < o.value_size; i++)
		value[i] = (char)('a' + i % 26);
	value[o.value_size] = '\0';

	FILE *ack = NULL;
	if (o.ack_log != NULL && (ack = fopen(o.ack_log, "w")) == NULL)
		die("cannot open --ack-log file");
	/* Line-buffered: the driver reads the log while we run. */
	if (ack != NULL)
		setvbuf(ack, NULL, _IOLBF, 0);

	CURLM *multi = curl_multi_init();
	/* Keep every client's connection cached between its requests (keep-alive). */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)o.concurrency + 16);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);

	struct client *clients = calloc((size_t)o.concurrency, sizeof *clients);
	if (clients == NULL)
		die("out of memory");
	for (int i = 0; i < o.concurrency; i++)
		client_init(&o, &clients[i], i);

	struct stats st = {0};
	uint64_t start = samples_now_ns();
	uint64_t measure_from = start + (uint64_t)(o.warmup_s * 1e9);
	uint64_t stop = measure_from + (uint64_t)(o.duration_s * 1e9);
	long long sent = 0;
	int busy = 0;

	for (int i = 0; i < o.concurrency; i++) {
		if (o.requests > 0 && sent >= o.requests)
			break;
		client_send(&o, multi, &clients[i], value);
		sent++;
		busy++;
	}

	for (;;) {
		uint64_t now = samples_now_ns();
		bool stopping = o.requests > 0 ? sent >= o.requests : now >= stop;
		if (stopping && busy == 0)
			break;
		int running = 0;
		curl_multi_perform(multi, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct client *c = NULL;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
			uint64_t done = samples_now_ns();
			long code = 0;
			CURLcode res = msg->data.result;
			if (res == CURLE_OK)
				curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
			curl_multi_remove_handle(multi, c->easy);
			c->busy = false;
			busy--;
			bool ok = res == CURLE_OK && code >= 200 && code < 300;
			if (ack != NULL)
				fprintf(ack, "%" PRIu64 " %" PRIu64 " %ld\n", c->sent_ns, done,
				        res == CURLE_OK ? code : -(long)res);
			/* A request counts in the window it was sent in (requests mode: all). */
			if (o.requests > 0 || (c->sent_ns >= measure_from && c->sent_ns < stop)) {
				if (st.first_ns == 0 || c->sent_ns < st.first_ns)
					st.first_ns = c->sent_ns;
				if (done > st.last_ns)
					st.last_ns = done;
				if (ok) {
					st.ok++;
					samples_add(&st.lat, done - c->sent_ns);
				} else if (res != CURLE_OK) {
					st.transport++;
				} else {
					st.non2xx++;
				}
				if (res == CURLE_OK && code >= 100 && code < 600)
					st.status_counts[code / 100]++;
			}
			c->next_ns = ok ? done : done + ERROR_BACKOFF_NS;
		}
		now = samples_now_ns();
		stopping = o.requests > 0 ? sent >= o.requests : now >= stop;
		uint64_t wait_ns = 100 * 1000000ULL;
		for (int i = 0; i < o.concurrency && !stopping; i++) {
			struct client *c = &clients[i];
			if (c->busy)
				continue;
			if (c->next_ns > now) {
				if (c->next_ns - now < wait_ns)
					wait_ns = c->next_ns - now;
				continue;
			}
			client_send(&o, multi, c, value);
			sent++;
			busy++;
			if (o.requests > 0 && sent >= o.requests)
				break;
		}
		if (busy > 0 || !stopping) {
			int ms = (int)(wait_ns / 1000000ULL);
			if (busy > 0 && ms > 10)
				ms = 10;
			curl_multi_poll(multi, NULL, 0, ms, NULL);
		}
	}

	samples_sort(&st.lat);
	double secs;
	if (o.requests > 0)
		secs = (double)(st.last_ns - st.first_ns) / 1e9;
	else
		secs = o.duration_s;
	if (secs <= 0)
		secs = 1e-9;
	double sum = 0;
	for (size_t i = 0; i < st.lat.n; i++)
		sum += (double)st.lat.v[i];
	double mean = st.lat.n ? sum / (double)st.lat.n / 1e6 : 0;
	double max = st.lat.n ? (double)st.lat.v[st.lat.n - 1] / 1e6 : 0;
	long long errors = st.non2xx + st.transport;
	double tput = (double)st.ok / secs;
	printf("{\"api\":\"%s\",\"op\":\"%s\",\"label\":\"%s\",\"concurrency\":%d,"
	       "\"seconds\":%.3f,\"ok\":%lld,\"errors\":%lld,\"non2xx\":%lld,\"transport\":%lld,"
	       "\"throughput\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
	       "\"mean_ms\":%.3f,\"max_ms\":%.3f,\"status_4xx\":%lld,\"status_5xx\":%lld}\n",
	       o.api == API_ETCD ? "etcd" : "cloudless", op_name(o.op), o.label, o.concurrency,
	       secs, st.ok, errors, st.non2xx, st.transport, tput, samples_pct_ms(&st.lat, 50),
	       samples_pct_ms(&st.lat, 99), samples_pct_ms(&st.lat, 99.9), mean, max,
	       st.status_counts[4], st.status_counts[5]);
	fflush(stdout);
	if (!o.quiet)
		fprintf(stderr,
		        "%-9s %-5s c=%-4d %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  p99.9 %7.3f ms"
		        "  errors %lld (non-2xx %lld, transport %lld)\n",
		        o.api == API_ETCD ? "etcd" : "cloudless", op_name(o.op), o.concurrency,
		        tput, samples_pct_ms(&st.lat, 50), samples_pct_ms(&st.lat, 99),
		        samples_pct_ms(&st.lat, 99.9), errors, st.non2xx, st.transport);

	for (int i = 0; i < o.concurrency; i++) {
		curl_easy_cleanup(clients[i].easy);
		curl_slist_free_all(clients[i].headers);
	}
	free(clients);
	free(st.lat.v);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	if (ack != NULL)
		fclose(ack);
	return 0;
}
