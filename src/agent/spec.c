/* spec: ReplicaSpec decoding (see spec.h). */
#include "agent/spec.h"
#include "util/errmsg.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		abort();
	return d;
}

/* An optional non-negative integer member no larger than max. */
static int get_uint(json_t *obj, const char *name, uint64_t max, uint64_t *out, char *err,
                    size_t errlen)
{
	json_t *v = json_object_get(obj, name);
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return errmsg_set(err, errlen, "%s must be an integer from 0 to %llu", name,
		                  (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int decode_command(json_t *obj, struct agent_spec *s, char *err, size_t errlen)
{
	json_t *cmd = json_object_get(obj, "command");
	if (!json_is_array(cmd) || json_array_size(cmd) == 0)
		return errmsg_set(err, errlen, "command must be a non-empty array of strings");
	s->argc = json_array_size(cmd);
	s->argv = calloc(s->argc + 1, sizeof *s->argv);
	if (s->argv == NULL)
		abort();
	for (size_t i = 0; i < s->argc; i++) {
		json_t *a = json_array_get(cmd, i);
		if (!json_is_string(a) || (i == 0 && json_string_length(a) == 0))
			return errmsg_set(err, errlen, "command[%zu] must be a%s string", i,
			                  i == 0 ? " non-empty" : "");
		if (strlen(json_string_value(a)) != json_string_length(a))
			return errmsg_set(err, errlen, "command[%zu] holds a NUL byte", i);
		s->argv[i] = xstrdup(json_string_value(a));
	}
	return 0;
}

static int decode_env(json_t *obj, struct agent_spec *s, char *err, size_t errlen)
{
	json_t *env = json_object_get(obj, "env");
	if (env == NULL || json_is_null(env)) {
		s->env = calloc(1, sizeof *s->env);
		if (s->env == NULL)
			abort();
		return 0;
	}
	if (!json_is_object(env))
		return errmsg_set(err, errlen, "env must be an object of strings");
	s->env = calloc(json_object_size(env) + 1, sizeof *s->env);
	if (s->env == NULL)
		abort();
	const char *k;
	json_t *v;
	json_object_foreach(env, k, v)
	{
		if (k[0] == '\0' || strchr(k, '=') != NULL)
			return errmsg_set(err, errlen, "env: invalid variable name \"%s\"", k);
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
			return errmsg_set(err, errlen, "env.%s must be a string without NUL bytes",
			                  k);
		size_t n = strlen(k) + 1 + json_string_length(v) + 1;
		char *e = malloc(n);
		if (e == NULL)
			abort();
		snprintf(e, n, "%s=%s", k, json_string_value(v));
		s->env[s->n_env++] = e;
	}
	return 0;
}

static int decode_restart(json_t *obj, struct agent_spec *s, char *err, size_t errlen)
{
	json_t *r = json_object_get(obj, "restart");
	uint64_t v;
	agent_restart_policy_default(&s->restart);
	if (r == NULL || json_is_null(r))
		return 0;
	if (!json_is_object(r))
		return errmsg_set(err, errlen, "restart must be an object");
	json_t *policy = json_object_get(r, "policy");
	if (policy != NULL &&
	    (!json_is_string(policy) ||
	     agent_restart_mode_parse(json_string_value(policy), &s->restart.mode) != 0))
		return errmsg_set(err, errlen,
		                  "restart.policy must be always, on-failure or never");
	v = s->restart.attempts;
	if (get_uint(r, "attempts", 1000, &v, err, errlen) != 0)
		return -1;
	s->restart.attempts = (unsigned)v;
	v = s->restart.interval_s;
	if (get_uint(r, "interval_s", 86400, &v, err, errlen) != 0)
		return -1;
	if (v == 0)
		return errmsg_set(err, errlen, "restart.interval_s must be at least 1");
	s->restart.interval_s = (unsigned)v;
	return get_uint(r, "delay_ms", 3600000, &s->restart.delay_ms, err, errlen);
}

static int decode_resources(json_t *obj, struct agent_spec *s, char *err, size_t errlen)
{
	json_t *r = json_object_get(obj, "resources");
	if (r == NULL || json_is_null(r))
		return 0;
	if (!json_is_object(r))
		return errmsg_set(err, errlen, "resources must be an object");
	if (get_uint(r, "cpu_millicores", INT64_MAX, &s->cpu_millicores, err, errlen) != 0)
		return -1;
	return get_uint(r, "memory_bytes", INT64_MAX, &s->memory_bytes, err, errlen);
}

int agent_spec_decode(json_t *obj, struct agent_spec *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	out->kill_timeout_ms = AGENT_SPEC_DEFAULT_KILL_TIMEOUT_MS;
	if (!json_is_object(obj)) {
		errmsg_set(err, errlen, "spec must be an object");
		goto fail;
	}
	if (decode_command(obj, out, err, errlen) != 0 || decode_env(obj, out, err, errlen) != 0 ||
	    decode_restart(obj, out, err, errlen) != 0 ||
	    decode_resources(obj, out, err, errlen) != 0 ||
	    get_uint(obj, "kill_timeout_ms", 600000, &out->kill_timeout_ms, err, errlen) != 0 ||
	    get_uint(obj, "spec_version", INT64_MAX, &out->spec_version, err, errlen) != 0 ||
	    get_uint(obj, "stop_after_disconnect_s", 86400, &out->stop_after_disconnect_s, err,
	             errlen) != 0)
		goto fail;
	json_t *image = json_object_get(obj, "image");
	if (image != NULL && !json_is_null(image) && !json_is_string(image)) {
		errmsg_set(err, errlen, "image must be a string");
		goto fail;
	}
	out->image = xstrdup(json_is_string(image) ? json_string_value(image) : "");
	return 0;
fail:
	agent_spec_close(out);
	return -1;
}

static void free_strv(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

void agent_spec_close(struct agent_spec *s)
{
	if (s == NULL)
		return;
	free_strv(s->argv);
	free_strv(s->env);
	free(s->image);
	memset(s, 0, sizeof *s);
}
