/* wire: encoding and decoding of the agent API's documents (see wire.h). */
#include "agent/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"
#include "util/errmsg.h"

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		abort();
	return d;
}

static int get_index(json_t *o, const char *name, uint64_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, name);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return errmsg_set(err, errlen, "%s must be a non-negative integer", name);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int decode_replica(json_t *r, size_t i, struct agent_assignment *a, char *err, size_t errlen)
{
	const char *id = json_string_value(json_object_get(r, "id"));
	const char *desired = json_string_value(json_object_get(r, "desired"));
	const char *workload = json_string_value(json_object_get(r, "workload"));
	if (!json_is_object(r) || id == NULL || id[0] == '\0')
		return errmsg_set(err, errlen, "assignments[%zu].id must be a non-empty string", i);
	if (desired == NULL || (strcmp(desired, "run") != 0 && strcmp(desired, "stop") != 0))
		return errmsg_set(err, errlen, "assignments[%zu].desired must be run or stop", i);
	if (get_index(r, "epoch", &a->epoch, err, errlen) != 0)
		return -1;
	a->id = xstrdup(id);
	a->workload = xstrdup(workload != NULL ? workload : "");
	a->run = strcmp(desired, "run") == 0;
	json_t *spec = json_object_get(r, "spec");
	a->spec = json_is_object(spec) ? json_incref(spec) : NULL;
	return 0;
}

static int decode_assignment_list(json_t *arr, struct agent_answer *out, char *err, size_t errlen)
{
	if (!json_is_array(arr))
		return errmsg_set(err, errlen, "assignments must be an array");
	out->items = calloc(json_array_size(arr) + 1, sizeof *out->items);
	if (out->items == NULL)
		abort();
	for (size_t i = 0; i < json_array_size(arr); i++) {
		if (decode_replica(json_array_get(arr, i), i, &out->items[out->n], err, errlen) !=
		    0)
			return -1;
		out->n++;
	}
	return 0;
}

static int decode_coordinators(json_t *doc, struct agent_answer *out, char *err, size_t errlen)
{
	json_t *leader = json_object_get(doc, "leader");
	if (json_is_string(leader) && json_string_length(leader) > 0)
		out->leader = xstrdup(json_string_value(leader));
	else if (leader != NULL && !json_is_null(leader) && !json_is_string(leader))
		return errmsg_set(err, errlen, "leader must be a string or null");
	json_t *list = json_object_get(doc, "coordinators");
	if (list == NULL)
		return 0;
	if (!json_is_array(list))
		return errmsg_set(err, errlen, "coordinators must be an array");
	out->coordinators = calloc(json_array_size(list) + 1, sizeof *out->coordinators);
	if (out->coordinators == NULL)
		abort();
	for (size_t i = 0; i < json_array_size(list); i++) {
		const char *c = json_string_value(json_array_get(list, i));
		if (c == NULL || c[0] == '\0')
			return errmsg_set(err, errlen,
			                  "coordinators[%zu] must be a non-empty string", i);
		out->coordinators[out->n_coordinators++] = xstrdup(c);
	}
	return 0;
}

int agent_wire_decode_heartbeat(const char *body, size_t len, struct agent_answer *out, char *err,
                                size_t errlen)
{
	memset(out, 0, sizeof *out);
	json_t *doc = json_parse_object(body, len, err, errlen);
	if (doc == NULL)
		return -1;
	uint64_t interval = 0;
	int rc = -1;
	json_t *unchanged = json_object_get(doc, "unchanged");
	if (unchanged != NULL && !json_is_boolean(unchanged)) {
		errmsg_set(err, errlen, "unchanged must be a boolean");
		goto out;
	}
	out->unchanged = json_is_true(unchanged);
	if (out->unchanged && json_object_get(doc, "assignments") != NULL) {
		errmsg_set(err, errlen, "an unchanged answer lists no assignments");
		goto out;
	}
	if ((!out->unchanged &&
	     decode_assignment_list(json_object_get(doc, "assignments"), out, err, errlen) != 0) ||
	    get_index(doc, "index", &out->index, err, errlen) != 0 ||
	    decode_coordinators(doc, out, err, errlen) != 0)
		goto out;
	if (get_index(doc, "heartbeat_interval_ms", &interval, err, errlen) != 0 || interval == 0 ||
	    interval > 3600000) {
		errmsg_set(err, errlen,
		           "heartbeat_interval_ms must be an integer from 1 to 3600000");
		goto out;
	}
	out->heartbeat_interval_ms = (unsigned)interval;
	rc = 0;
out:
	json_decref(doc);
	if (rc != 0)
		agent_answer_close(out);
	return rc;
}

int agent_wire_decode_assignments(const char *body, size_t len, struct agent_answer *out, char *err,
                                  size_t errlen)
{
	memset(out, 0, sizeof *out);
	json_t *doc = json_parse_object(body, len, err, errlen);
	if (doc == NULL)
		return -1;
	int rc = decode_assignment_list(json_object_get(doc, "assignments"), out, err, errlen);
	if (rc == 0)
		rc = get_index(doc, "index", &out->index, err, errlen);
	json_decref(doc);
	if (rc != 0)
		agent_answer_close(out);
	return rc;
}

void agent_answer_close(struct agent_answer *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++) {
		free(a->items[i].id);
		free(a->items[i].workload);
		json_decref(a->items[i].spec);
	}
	free(a->items);
	for (size_t i = 0; i < a->n_coordinators; i++)
		free(a->coordinators[i]);
	free(a->coordinators);
	free(a->leader);
	memset(a, 0, sizeof *a);
}

int agent_wire_decode_agent(const char *body, size_t len, unsigned *heartbeat_interval_ms,
                            char *err, size_t errlen)
{
	json_t *doc = json_parse_object(body, len, err, errlen);
	if (doc == NULL)
		return -1;
	uint64_t v = 0;
	int rc = get_index(doc, "heartbeat_interval_ms", &v, err, errlen);
	if (rc == 0 && (v == 0 || v > 3600000))
		rc = errmsg_set(err, errlen,
		                "heartbeat_interval_ms must be an integer from 1 to 3600000");
	json_decref(doc);
	if (rc == 0)
		*heartbeat_interval_ms = (unsigned)v;
	return rc;
}

char *agent_wire_leader_hint(const char *body, size_t len)
{
	char err[128];
	if (body == NULL || len == 0)
		return NULL;
	json_t *doc = json_parse_object(body, len, err, sizeof err);
	if (doc == NULL)
		return NULL;
	const char *addr = json_string_value(json_object_get(doc, "leader_http_addr"));
	char *out = addr != NULL && addr[0] != '\0' ? xstrdup(addr) : NULL;
	json_decref(doc);
	return out;
}

static char *encode(json_t *doc, size_t *len)
{
	char *s = json_encode(doc, len);
	json_decref(doc);
	if (s == NULL)
		abort();
	return s;
}

char *agent_wire_enrollment(const struct agent_enrollment *e, size_t *len)
{
	json_t *doc =
	    json_pack("{s:s, s:{s:I, s:I}}", "id", e->id, "capacity", "cpu_millicores",
	              (json_int_t)e->cpu_millicores, "memory_bytes", (json_int_t)e->memory_bytes);
	if (doc == NULL)
		abort();
	if (e->name != NULL && e->name[0] != '\0')
		json_object_set_new(doc, "name", json_string(e->name));
	if (e->region != NULL && e->region[0] != '\0')
		json_object_set_new(doc, "region", json_string(e->region));
	if (e->zone != NULL && e->zone[0] != '\0')
		json_object_set_new(doc, "zone", json_string(e->zone));
	json_t *labels = json_object();
	for (size_t i = 0; i < e->n_labels; i++)
		json_object_set_new(labels, e->label_keys[i], json_string(e->label_values[i]));
	json_object_set_new(doc, "labels", labels);
	return encode(doc, len);
}

bool agent_early_take(struct agent_early *e, uint64_t now_ms, unsigned interval_ms)
{
	uint64_t cost = interval_ms / AGENT_EARLY_PER_INTERVAL;
	uint64_t cap = (uint64_t)AGENT_EARLY_BURST * cost;
	if (e->last_ms == 0)
		e->credit_ms = cap;
	else if (now_ms > e->last_ms)
		e->credit_ms += now_ms - e->last_ms;
	if (e->credit_ms > cap)
		e->credit_ms = cap;
	e->last_ms = now_ms > 0 ? now_ms : 1;
	if (e->credit_ms < cost)
		return false;
	e->credit_ms -= cost;
	return true;
}

char *agent_wire_heartbeat(const struct agent_report *r, size_t n, uint64_t index, size_t *len)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_pack("{s:s, s:I, s:s, s:i}", "id", r[i].id, "epoch",
		                      (json_int_t)r[i].epoch, "state", r[i].state, "restarts",
		                      (int)r[i].restarts);
		if (o == NULL)
			abort();
		json_object_set_new(o, "exit_code",
		                    r[i].has_exit_code ? json_integer(r[i].exit_code)
		                                       : json_null());
		json_array_append_new(arr, o);
	}
	json_t *doc = json_pack("{s:o}", "replicas", arr);
	if (doc == NULL)
		abort();
	if (index > 0)
		json_object_set_new(doc, "index", json_integer((json_int_t)index));
	return encode(doc, len);
}
