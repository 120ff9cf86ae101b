/* spec: request-body validation for workloads, enrollments and heartbeats (see spec.h). */
#include "domain/spec.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/json.h"
#include "util/text.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

bool spec_dns_label(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

bool spec_agent_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool label_key(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == '/'))
			return false;
	}
	return true;
}

static bool env_key(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 255 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

/* A JSON string without NUL, valid UTF-8 (jansson guarantees), at most max bytes. */
static bool plain_string(json_t *v, size_t max)
{
	return json_is_string(v) && json_string_length(v) <= max &&
	       strlen(json_string_value(v)) == json_string_length(v);
}

/* An optional map of string to string; returns a copy (an empty map when absent). */
static json_t *string_map(json_t *o, const char *field, bool env, size_t max_entries,
                          size_t max_value, char *err, size_t errlen)
{
	json_t *m = json_object_get(o, field);
	if (m == NULL || json_is_null(m))
		return json_object();
	if (!json_is_object(m)) {
		fail(err, errlen, "field \"%s\" must be an object of strings", field);
		return NULL;
	}
	if (json_object_size(m) > max_entries) {
		fail(err, errlen, "field \"%s\" has more than %zu entries", field, max_entries);
		return NULL;
	}
	const char *k;
	json_t *v;
	size_t total = 0;
	json_object_foreach(m, k, v)
	{
		total += strlen(k) + 2 + (json_is_string(v) ? json_string_length(v) : 0);
		if (env && total > SPEC_MAX_ENV_BYTES) {
			fail(err, errlen, "field \"%s\" is over %d bytes in all", field,
			     SPEC_MAX_ENV_BYTES);
			return NULL;
		}
		if (env ? !env_key(k) : !label_key(k)) {
			fail(err, errlen,
			     env ? "field \"%s\": \"%.64s\" is not a variable name "
			           "([A-Za-z_][A-Za-z0-9_]*)"
			         : "field \"%s\": key \"%.64s\" must be 1-63 characters of "
			           "[A-Za-z0-9._/-]",
			     field, k);
			return NULL;
		}
		if (!plain_string(v, max_value)) {
			fail(err, errlen,
			     "field \"%s\": the value of \"%.64s\" must be a string of at most "
			     "%zu bytes",
			     field, k, max_value);
			return NULL;
		}
	}
	return json_deep_copy(m);
}

/* An optional integer in [min, max]; *out keeps its default when absent. */
static int get_uint(json_t *o, const char *field, const char *prefix, uint64_t min, uint64_t max,
                    uint64_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, field);
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) < min || (uint64_t)json_integer_value(v) > max)
		return fail(err, errlen, "%s%s must be an integer from %llu to %llu", prefix, field,
		            (unsigned long long)min, (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int check_object(json_t *o, const char *field, const char *const allowed[], char *err,
                        size_t errlen)
{
	if (o == NULL || json_is_null(o))
		return 0;
	if (!json_is_object(o))
		return fail(err, errlen, "field \"%s\" must be an object", field);
	char inner[256];
	if (json_check_fields(o, allowed, inner, sizeof inner) != 0)
		return fail(err, errlen, "%s: %s", field, inner);
	return 0;
}

static json_t *resources(json_t *o, const char *field, uint64_t min, char *err, size_t errlen)
{
	static const char *const allowed[] = {"cpu_millicores", "memory_bytes", NULL};
	json_t *r = json_object_get(o, field);
	uint64_t cpu = 0, mem = 0;
	char prefix[64];
	snprintf(prefix, sizeof prefix, "%s.", field);
	if (check_object(r, field, allowed, err, errlen) != 0 ||
	    get_uint(r, "cpu_millicores", prefix, min, (uint64_t)1 << 40, &cpu, err, errlen) != 0 ||
	    get_uint(r, "memory_bytes", prefix, min, (uint64_t)1 << 62, &mem, err, errlen) != 0)
		return NULL;
	if (min > 0 && (r == NULL || json_object_get(r, "cpu_millicores") == NULL ||
	                json_object_get(r, "memory_bytes") == NULL)) {
		fail(err, errlen, "missing %s (cpu_millicores and memory_bytes, positive integers)",
		     field);
		return NULL;
	}
	return json_pack("{s:I, s:I}", "cpu_millicores", (json_int_t)cpu, "memory_bytes",
	                 (json_int_t)mem);
}

static json_t *command(json_t *o, char *err, size_t errlen)
{
	json_t *c = json_object_get(o, "command");
	if (c == NULL || json_is_null(c)) {
		fail(err, errlen,
		     "missing command (an array of strings: the program and its arguments)");
		return NULL;
	}
	if (!json_is_array(c) || json_array_size(c) == 0 || json_array_size(c) > SPEC_MAX_COMMAND) {
		fail(err, errlen, "command must be an array of 1 to %d strings", SPEC_MAX_COMMAND);
		return NULL;
	}
	size_t i, total = 0;
	json_t *v;
	json_array_foreach(c, i, v)
	{
		if (!plain_string(v, SPEC_MAX_ARG) || json_string_length(v) == 0) {
			fail(err, errlen,
			     "command[%zu] must be a non-empty string of at most %d bytes", i,
			     SPEC_MAX_ARG);
			return NULL;
		}
		total += json_string_length(v) + 1;
	}
	if (total > SPEC_MAX_COMMAND_BYTES) {
		fail(err, errlen, "command is %zu bytes in all; at most %d", total,
		     SPEC_MAX_COMMAND_BYTES);
		return NULL;
	}
	return json_deep_copy(c);
}

static json_t *zones(json_t *p, char *err, size_t errlen)
{
	json_t *z = json_object_get(p, "zones");
	if (z == NULL || json_is_null(z))
		return json_array();
	if (!json_is_array(z) || json_array_size(z) > 64) {
		fail(err, errlen, "placement.zones must be an array of at most 64 zone names");
		return NULL;
	}
	size_t i;
	json_t *v;
	json_array_foreach(z, i, v)
	{
		if (!plain_string(v, 63) || json_string_length(v) == 0) {
			fail(err, errlen, "placement.zones[%zu] must be a zone name of 1-63 bytes",
			     i);
			return NULL;
		}
	}
	return json_deep_copy(z);
}

static json_t *placement(json_t *o, char *err, size_t errlen)
{
	static const char *const allowed[] = {"node_selector", "zones", "strategy", "exclusive",
	                                      NULL};
	json_t *p = json_object_get(o, "placement");
	if (check_object(p, "placement", allowed, err, errlen) != 0)
		return NULL;
	json_t *ex = json_object_get(p, "exclusive");
	if (ex != NULL && !json_is_null(ex) && !json_is_boolean(ex)) {
		fail(err, errlen, "placement.exclusive must be true or false");
		return NULL;
	}
	const char *strategy = "spread";
	json_t *s = json_object_get(p, "strategy");
	if (s != NULL && !json_is_null(s)) {
		strategy = json_string_value(s);
		if (strategy == NULL ||
		    (strcmp(strategy, "spread") != 0 && strcmp(strategy, "binpack") != 0)) {
			fail(err, errlen, "placement.strategy must be \"spread\" or \"binpack\"");
			return NULL;
		}
	}
	json_t *sel = string_map(p, "node_selector", false, SPEC_MAX_LABELS, 255, err, errlen);
	json_t *zs = sel != NULL ? zones(p, err, errlen) : NULL;
	if (zs == NULL) {
		json_decref(sel);
		return NULL;
	}
	return json_pack("{s:o, s:o, s:s, s:b}", "node_selector", sel, "zones", zs, "strategy",
	                 strategy, "exclusive", json_is_true(ex));
}

static json_t *restart(json_t *o, char *err, size_t errlen)
{
	static const char *const allowed[] = {"policy", "attempts", "interval_s", "delay_ms", NULL};
	json_t *r = json_object_get(o, "restart");
	uint64_t attempts = 3, interval = 300, delay = 1000;
	const char *policy = "always";
	if (check_object(r, "restart", allowed, err, errlen) != 0)
		return NULL;
	json_t *p = json_object_get(r, "policy");
	if (p != NULL && !json_is_null(p)) {
		policy = json_string_value(p);
		if (policy == NULL ||
		    (strcmp(policy, "always") != 0 && strcmp(policy, "on-failure") != 0 &&
		     strcmp(policy, "never") != 0)) {
			fail(err, errlen,
			     "restart.policy must be \"always\", \"on-failure\" or \"never\"");
			return NULL;
		}
	}
	if (get_uint(r, "attempts", "restart.", 0, 1000, &attempts, err, errlen) != 0 ||
	    get_uint(r, "interval_s", "restart.", 1, 86400, &interval, err, errlen) != 0 ||
	    get_uint(r, "delay_ms", "restart.", 0, 3600000, &delay, err, errlen) != 0)
		return NULL;
	return json_pack("{s:s, s:I, s:I, s:I}", "policy", policy, "attempts", (json_int_t)attempts,
	                 "interval_s", (json_int_t)interval, "delay_ms", (json_int_t)delay);
}

/* namespace and name: from the path, the body, or both (then equal). */
static int naming(json_t *o, const char *field, const char *from_path, const char *def,
                  const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, field);
	const char *body = NULL;
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_string(v))
			return fail(err, errlen, "field \"%s\" must be a string", field);
		body = json_string_value(v);
	}
	if (body != NULL && from_path != NULL && strcmp(body, from_path) != 0)
		return fail(err, errlen,
		            "field \"%s\" (\"%.63s\") differs from the path (\"%.63s\")", field,
		            body, from_path);
	*out = from_path != NULL ? from_path : body != NULL ? body : def;
	if (*out == NULL)
		return fail(err, errlen, "missing %s", field);
	if (!spec_dns_label(*out))
		return fail(
		    err, errlen,
		    "%s \"%.80s\" must be a DNS label: 1-63 characters of [a-z0-9-], starting "
		    "and ending with a letter or digit",
		    field, *out);
	return 0;
}

json_t *spec_workload(const char *body, size_t len, const char *ns, const char *name, char *err,
                      size_t errlen)
{
	static const char *const allowed[] = {
	    "namespace", "name",     "command",         "env",
	    "image",     "replicas", "resources",       "placement",
	    "restart",   "labels",   "kill_timeout_ms", "stop_after_disconnect_s",
	    NULL};
	json_t *o = json_parse_object(body, len, err, errlen);
	if (o == NULL)
		return NULL;
	json_t *out = NULL, *cmd = NULL, *env = NULL, *res = NULL, *pl = NULL, *rs = NULL;
	json_t *labels = NULL;
	const char *wns, *wname, *image = "";
	uint64_t replicas = 1, kill = 5000, fence = 0;
	json_t *img = json_object_get(o, "image");
	if (json_check_fields(o, allowed, err, errlen) != 0 ||
	    naming(o, "namespace", ns, "default", &wns, err, errlen) != 0 ||
	    naming(o, "name", name, NULL, &wname, err, errlen) != 0 ||
	    (cmd = command(o, err, errlen)) == NULL ||
	    (env = string_map(o, "env", true, SPEC_MAX_ENV, SPEC_MAX_VALUE, err, errlen)) == NULL ||
	    get_uint(o, "replicas", "", 0, SPEC_MAX_REPLICAS, &replicas, err, errlen) != 0 ||
	    get_uint(o, "kill_timeout_ms", "", 0, 600000, &kill, err, errlen) != 0 ||
	    get_uint(o, "stop_after_disconnect_s", "", 0, SPEC_MAX_FENCE_S, &fence, err, errlen) !=
	        0 ||
	    (res = resources(o, "resources", 0, err, errlen)) == NULL ||
	    (pl = placement(o, err, errlen)) == NULL || (rs = restart(o, err, errlen)) == NULL ||
	    (labels = string_map(o, "labels", false, SPEC_MAX_LABELS, 255, err, errlen)) == NULL)
		goto out;
	if (img != NULL && !json_is_null(img)) {
		if (!plain_string(img, 1024)) {
			fail(err, errlen, "image must be a string of at most 1024 bytes");
			goto out;
		}
		image = json_string_value(img);
	}
	/* At most one copy needs the agent's fence: without it nothing bounds how long a copy
	 * on an agent cut off from the coordinators keeps running, so the coordinators could
	 * never safely start its replacement. */
	if (json_is_true(json_object_get(pl, "exclusive")) && fence == 0) {
		fail(err, errlen,
		     "placement.exclusive needs stop_after_disconnect_s (1-%d): without the "
		     "agent's fence a cut-off copy runs for as long as its agent is cut off",
		     SPEC_MAX_FENCE_S);
		goto out;
	}
	out = json_pack("{s:s, s:s, s:O, s:O, s:s, s:I, s:O, s:O, s:O, s:I, s:I, s:O}", "namespace",
	                wns, "name", wname, "command", cmd, "env", env, "image", image, "replicas",
	                (json_int_t)replicas, "resources", res, "placement", pl, "restart", rs,
	                "kill_timeout_ms", (json_int_t)kill, "stop_after_disconnect_s",
	                (json_int_t)fence, "labels", labels);
out:
	json_decref(cmd);
	json_decref(env);
	json_decref(res);
	json_decref(pl);
	json_decref(rs);
	json_decref(labels);
	json_decref(o);
	return out;
}

json_t *spec_enrollment(const char *body, size_t len, unsigned heartbeat_ms, char *err,
                        size_t errlen)
{
	static const char *const allowed[] = {"id",     "name",     "region", "zone",
	                                      "labels", "capacity", NULL};
	json_t *o = json_parse_object(body, len, err, errlen);
	if (o == NULL)
		return NULL;
	json_t *out = NULL, *labels = NULL, *cap = NULL;
	const char *id, *name = NULL, *region = NULL, *zone = NULL;
	if (json_check_fields(o, allowed, err, errlen) != 0 ||
	    json_get_string(o, "id", true, 1, 64, &id, err, errlen) != 0 ||
	    json_get_string(o, "name", false, 1, 255, &name, err, errlen) != 0 ||
	    json_get_string(o, "region", false, 0, 63, &region, err, errlen) != 0 ||
	    json_get_string(o, "zone", false, 0, 63, &zone, err, errlen) != 0)
		goto out;
	if (!spec_agent_id(id)) {
		fail(err, errlen, "id must be 1-64 characters of [A-Za-z0-9._-]");
		goto out;
	}
	if ((labels = string_map(o, "labels", false, SPEC_MAX_LABELS, 255, err, errlen)) == NULL ||
	    (cap = resources(o, "capacity", 1, err, errlen)) == NULL)
		goto out;
	out = json_pack("{s:s, s:s, s:s, s:s, s:O, s:O, s:i}", "id", id, "name", name ? name : id,
	                "region", region ? region : "", "zone", zone ? zone : "", "labels", labels,
	                "capacity", cap, "heartbeat_interval_ms", (int)heartbeat_ms);
out:
	json_decref(labels);
	json_decref(cap);
	json_decref(o);
	return out;
}

json_t *spec_heartbeat(const char *body, size_t len, uint64_t *index, char *err, size_t errlen)
{
	static const char *const top[] = {"replicas", "index", NULL};
	static const char *const item[] = {"id", "epoch", "state", "exit_code", "restarts", NULL};
	static const char *const states[] = {"pending", "starting", "running",
	                                     "exited",  "failed",   "stopped"};
	json_t *o = json_parse_object(body, len, err, errlen);
	if (o == NULL)
		return NULL;
	json_t *reps = json_object_get(o, "replicas");
	json_t *out = NULL;
	*index = 0;
	if (json_check_fields(o, top, err, errlen) != 0 ||
	    get_uint(o, "index", "", 0, UINT64_MAX >> 1, index, err, errlen) != 0)
		goto out;
	if (!json_is_array(reps) || json_array_size(reps) > 10000) {
		fail(err, errlen, "replicas must be an array of at most 10000 reports");
		goto out;
	}
	size_t i;
	json_t *r;
	json_array_foreach(reps, i, r)
	{
		char inner[200], where[32];
		const char *id, *state;
		uint64_t epoch = 0, restarts = 0;
		snprintf(where, sizeof where, "replicas[%zu].", i);
		if (!json_is_object(r) || json_check_fields(r, item, inner, sizeof inner) != 0) {
			fail(err, errlen,
			     "replicas[%zu] must be an object of id, epoch, state, "
			     "exit_code, restarts",
			     i);
			goto out;
		}
		if (json_get_string(r, "id", true, 1, 300, &id, inner, sizeof inner) != 0 ||
		    json_get_string(r, "state", true, 1, 16, &state, inner, sizeof inner) != 0) {
			fail(err, errlen, "%s%s", where, inner);
			goto out;
		}
		bool known = false;
		for (size_t k = 0; k < sizeof states / sizeof states[0]; k++)
			known = known || strcmp(states[k], state) == 0;
		json_t *ec = json_object_get(r, "exit_code");
		if (!known || (ec != NULL && !json_is_null(ec) && !json_is_integer(ec)) ||
		    json_object_get(r, "epoch") == NULL ||
		    get_uint(r, "epoch", where, 0, UINT64_MAX >> 1, &epoch, err, errlen) != 0 ||
		    get_uint(r, "restarts", where, 0, 1u << 30, &restarts, err, errlen) != 0) {
			if (!known)
				fail(err, errlen,
				     "%sstate must be one of pending, starting, running, "
				     "exited, failed, stopped",
				     where);
			else if (ec != NULL && !json_is_null(ec) && !json_is_integer(ec))
				fail(err, errlen, "%sexit_code must be an integer or null", where);
			else if (json_object_get(r, "epoch") == NULL)
				fail(err, errlen, "%sepoch is required", where);
			goto out;
		}
	}
	out = json_deep_copy(reps);
out:
	json_decref(o);
	return out;
}

int spec_scale(const char *body, size_t len, unsigned *replicas, char *err, size_t errlen)
{
	static const char *const allowed[] = {"replicas", NULL};
	json_t *o = json_parse_object(body, len, err, errlen);
	uint64_t n = 0;
	int rv = -1;
	if (o == NULL)
		return -1;
	if (json_check_fields(o, allowed, err, errlen) == 0) {
		if (json_object_get(o, "replicas") == NULL)
			fail(err, errlen, "missing replicas");
		else if (get_uint(o, "replicas", "", 0, SPEC_MAX_REPLICAS, &n, err, errlen) == 0)
			rv = 0;
	}
	json_decref(o);
	*replicas = (unsigned)n;
	return rv;
}

int spec_selector(const char *s, char *key, size_t klen, char *value, size_t vlen)
{
	const char *eq = strchr(s, '=');
	if (eq == NULL || eq == s || (size_t)(eq - s) >= klen || strlen(eq + 1) >= vlen)
		return -1;
	memcpy(key, s, (size_t)(eq - s));
	key[eq - s] = '\0';
	snprintf(value, vlen, "%s", eq + 1);
	return label_key(key) ? 0 : -1;
}
