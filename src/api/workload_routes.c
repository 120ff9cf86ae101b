/* workload_routes: /v1/workloads and /v1/replicas (openapi/openapi.yaml, tag workloads).
 *
 * Writes validate the body with domain/spec.c (400 naming the field, nothing changed) and
 * become one workload.put / workload.delete / workload.scale entry (domain_ops.c); the
 * answer is the workload as the fsm left it, with `ETag` = its version for If-Match. Reads
 * render the mirror (domain/view.c); GET of one workload and the list are blocking queries
 * with ?index. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudless/protocol.h"
#include "api/api.h"
#include "api/decode.h"
#include "domain/spec.h"
#include "fsm/fsm.h"
#include "http/problem.h"
#include "store/store.h"
#include "util/text.h"

static void etag(struct api_op *op, uint64_t version)
{
	char v[32];
	snprintf(v, sizeof v, "\"%llu\"", (unsigned long long)version);
	http_response_header(op->req, "ETag", v);
}

static void set_index(struct http_request *req, uint64_t index)
{
	char v[24];
	snprintf(v, sizeof v, "%llu", (unsigned long long)index);
	http_response_header(req, CLOUDLESS_HDR_INDEX, v);
}

/* The workload as it is now (after an apply, or for a read). */
static void respond_workload(struct api_op *op, unsigned status, uint64_t index)
{
	struct domain *d = op->api->domain;
	struct dom_workload *w = dom_workload_get(&d->node->fsm.domain, op->dom_key);
	if (w == NULL) {
		api_domain_gone(op, status, index, "workload");
		return;
	}
	api_common_headers(op->api, op->req);
	set_index(op->req, index != 0 ? index : w->index);
	etag(op, w->version);
	http_respond_json(op->req, status, view_workload(d, w, true));
	op->req = NULL;
	api_op_release(op);
}

static void version_mismatch(struct api_op *op)
{
	struct dom_workload *w = dom_workload_get(&op->api->domain->node->fsm.domain, op->dom_key);
	uint64_t cur = w != NULL ? w->version : 0;
	api_common_headers(op->api, op->req);
	http_problem_extra(op->req, 412, "version-mismatch",
	                   json_pack("{s:I}", "current_version", (json_int_t)cur),
	                   "If-Match named another version; workload %s is at version %llu%s",
	                   op->dom_key, (unsigned long long)cur,
	                   cur == 0 ? " (it does not exist)" : "");
	op->req = NULL;
	api_op_release(op);
}

static void answer_put(struct api_op *op, unsigned code, uint64_t index)
{
	switch (code) {
	case FSM_OK_CREATED:
		respond_workload(op, 201, index);
		break;
	case FSM_OK_UPDATED:
	case FSM_OK_UNCHANGED:
		respond_workload(op, 200, index);
		break;
	case FSM_CAS_MISMATCH:
		if (json_is_true(json_object_get(op->dom_op, "create")))
			api_domain_problem(
			    op, 409, "exists",
			    "workload %s exists; replace it with PUT /v1/workloads/%s", op->dom_key,
			    op->dom_key);
		else
			version_mismatch(op);
		break;
	case FSM_NOT_FOUND:
		api_domain_problem(op, 404, "not-found", "no workload %s", op->dom_key);
		break;
	default:
		api_domain_problem(op, 500, "internal", "the state machine refused the workload");
	}
}

static void answer_delete(struct api_op *op, unsigned code, uint64_t index)
{
	if (code == FSM_OK_DELETED) {
		api_common_headers(op->api, op->req);
		set_index(op->req, index);
		http_respond_json(
		    op->req, 200,
		    json_pack("{s:b, s:I}", "deleted", 1, "index", (json_int_t)index));
		op->req = NULL;
		api_op_release(op);
	} else if (code == FSM_CAS_MISMATCH) {
		version_mismatch(op);
	} else if (code == FSM_NOT_FOUND) {
		api_domain_problem(op, 404, "not-found", "no workload %s", op->dom_key);
	} else {
		api_domain_problem(op, 500, "internal", "the state machine refused the deletion");
	}
}

/* If-Match: "<version>" or <version>; 0 = must not exist. -1 after answering 400. */
static int if_match(struct http_request *req, json_t *op)
{
	const char *h = http_request_header(req, "If-Match");
	if (h == NULL)
		return 0;
	char digits[32];
	size_t n = strlen(h);
	if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
		h++;
		n -= 2;
	}
	uint64_t v;
	if (n == 0 || n >= sizeof digits) {
		http_problem(req, 400, "bad-header", "If-Match must be a workload version");
		return -1;
	}
	memcpy(digits, h, n);
	digits[n] = '\0';
	if (text_parse_u64(digits, &v) != 0) {
		http_problem(req, 400, "bad-header", "If-Match must be a workload version");
		return -1;
	}
	json_object_set_new(op, "if_version", json_integer((json_int_t)v));
	return 0;
}

static void put_workload(struct api *a, struct http_request *req, const char *ns, const char *name,
                         bool create)
{
	char err[256], key[160];
	size_t len = 0;
	const char *body = http_request_body(req, &len);
	json_t *spec = spec_workload(body, len, ns, name, err, sizeof err);
	if (spec == NULL) {
		http_problem(req, 400, "bad-workload", "%s", err);
		return;
	}
	snprintf(key, sizeof key, "%s/%s", json_string_value(json_object_get(spec, "namespace")),
	         json_string_value(json_object_get(spec, "name")));
	json_t *op = json_pack("{s:s, s:o}", "op", "workload.put", "workload", spec);
	if (create)
		json_object_set_new(op, "create", json_true());
	else if (if_match(req, op) != 0) {
		json_decref(op);
		return;
	}
	api_domain_write(a, req, op, key, answer_put);
}

static void render_one(struct api_op *op)
{
	respond_workload(op, 200, 0);
}

static bool selected(const struct dom_workload *w, const char *sel_key, const char *sel_val)
{
	if (sel_key[0] == '\0')
		return true;
	const char *v =
	    json_string_value(json_object_get(json_object_get(w->doc, "labels"), sel_key));
	return v != NULL && strcmp(v, sel_val) == 0;
}

static void render_list(struct api_op *op)
{
	struct api *a = op->api;
	struct domain *d = a->domain;
	struct http_request *req = op->req;
	const char *ns = http_request_query(req, "namespace");
	const char *sel = http_request_query(req, "selector");
	char listing[400], sk[80] = "", sv[260] = "", prefix[80];
	unsigned limit;
	struct buf start;
	buf_init(&start);
	snprintf(listing, sizeof listing, "workloads|%s|%s", ns ? ns : "", sel ? sel : "");
	if (sel != NULL && spec_selector(sel, sk, sizeof sk, sv, sizeof sv) != 0) {
		buf_close(&start);
		api_domain_problem(op, 400, "bad-parameter", "selector must be key=value");
		return;
	}
	if (api_domain_page(req, listing, &limit, &start) != 0) {
		buf_close(&start);
		op->req = NULL;
		api_op_release(op);
		return;
	}
	snprintf(prefix, sizeof prefix, ns != NULL ? "w/%s/" : "w/", ns ? ns : "");
	struct buf from;
	buf_init(&from);
	if (start.len > 0)
		buf_printf(&from, "w/%.*s", (int)start.len, start.data);
	json_t *items = json_array();
	json_t *next = json_null();
	struct store_iter it;
	store_iter_init(&it, &d->node->fsm.store, NULL, prefix, strlen(prefix), from.data,
	                from.len);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl;
		const char *k = store_iter_key(&it, &kl);
		char key[320];
		snprintf(key, sizeof key, "%.*s", (int)(kl - 2), k + 2);
		struct dom_workload *w = dom_workload_get(&d->node->fsm.domain, key);
		if (w == NULL || !selected(w, sk, sv))
			continue;
		if (json_array_size(items) == limit) {
			json_decref(next);
			next = api_domain_token(listing, key);
			break;
		}
		json_array_append_new(items, view_workload(d, w, false));
	}
	store_iter_close(&it);
	buf_close(&from);
	buf_close(&start);
	api_domain_respond(op, 200, json_pack("{s:o, s:o}", "items", items, "continue", next));
}

static void scale(struct api *a, struct http_request *req, const char *key)
{
	char err[256];
	size_t len = 0;
	unsigned n;
	const char *body = http_request_body(req, &len);
	if (spec_scale(body, len, &n, err, sizeof err) != 0) {
		http_problem(req, 400, "bad-request", "%s", err);
		return;
	}
	json_t *op =
	    json_pack("{s:s, s:s, s:i}", "op", "workload.scale", "key", key, "replicas", (int)n);
	if (if_match(req, op) != 0) {
		json_decref(op);
		return;
	}
	api_domain_write(a, req, op, key, answer_put);
}

static void delete_workload(struct api *a, struct http_request *req, const char *key)
{
	json_t *op = json_pack("{s:s, s:s}", "op", "workload.delete", "key", key);
	if (if_match(req, op) != 0) {
		json_decref(op);
		return;
	}
	api_domain_write(a, req, op, key, answer_delete);
}

/* rest: what follows "/v1/workloads" ("", "/ns/name", "/ns/name/scale"). */
void api_route_workloads(struct api *a, struct http_request *req, const char *rest)
{
	char ns[80], name[80], key[200], topic[320];
	const char *m = http_request_method(req);
	if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
		http_request_set_tag(req, "/v1/workloads");
		if (!api_allow_method(req, "GET, POST"))
			return;
		if (strcmp(m, "POST") == 0) {
			put_workload(a, req, NULL, NULL, true);
			return;
		}
		const char *ns_q = http_request_query(req, "namespace");
		if (ns_q != NULL && !spec_dns_label(ns_q)) {
			http_problem(req, 400, "bad-parameter", "namespace must be a DNS label");
			return;
		}
		snprintf(topic, sizeof topic, "workloads:%s", ns_q ? ns_q : "*");
		api_domain_read(a, req, NULL, topic, render_list);
		return;
	}
	const char *p = rest + 1, *s1 = strchr(p, '/');
	const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
	size_t nslen = s1 ? (size_t)(s1 - p) : 0;
	size_t namelen = s1 ? (s2 ? (size_t)(s2 - s1 - 1) : strlen(s1 + 1)) : 0;
	const char *tail = s2 ? s2 : "";
	if (s1 == NULL || nslen >= sizeof ns || namelen >= sizeof name ||
	    (tail[0] != '\0' && strcmp(tail, "/scale") != 0)) {
		http_request_set_tag(req, "other");
		http_problem(req, 404, "not-found", "no route for %s /v1/workloads%s", m, rest);
		return;
	}
	memcpy(ns, p, nslen);
	ns[nslen] = '\0';
	memcpy(name, s1 + 1, namelen);
	name[namelen] = '\0';
	if (!spec_dns_label(ns) || !spec_dns_label(name)) {
		http_request_set_tag(req, "/v1/workloads/{namespace}/{name}");
		http_problem(req, 400, "bad-parameter",
		             "namespace and name must be DNS labels (1-63 characters of [a-z0-9-], "
		             "starting and ending with a letter or digit)");
		return;
	}
	snprintf(key, sizeof key, "%s/%s", ns, name);
	if (tail[0] != '\0') {
		http_request_set_tag(req, "/v1/workloads/{namespace}/{name}/scale");
		if (api_allow_method(req, "POST"))
			scale(a, req, key);
		return;
	}
	http_request_set_tag(req, "/v1/workloads/{namespace}/{name}");
	if (!api_allow_method(req, "GET, PUT, DELETE"))
		return;
	if (strcmp(m, "PUT") == 0) {
		put_workload(a, req, ns, name, false);
	} else if (strcmp(m, "DELETE") == 0) {
		delete_workload(a, req, key);
	} else {
		snprintf(topic, sizeof topic, "workload:%s", key);
		api_domain_read(a, req, key, topic, render_one);
	}
}

/* ---- /v1/replicas ---- */

static void render_replicas(struct api_op *op)
{
	struct domain *d = op->api->domain;
	struct fsm_domain *dom = &d->node->fsm.domain;
	const char *agent = http_request_query(op->req, "agent");
	const char *wl = http_request_query(op->req, "workload");
	json_t *items = json_array();
	if (agent != NULL) {
		struct dom_agent *a = dom_agent_get(dom, agent);
		if (a != NULL) {
			json_t *all = view_assignments(d, a);
			size_t i;
			json_t *r;
			json_array_foreach(all, i, r)
			{
				json_object_del(r, "spec");
				const char *w = json_string_value(json_object_get(r, "workload"));
				if (wl == NULL || (w != NULL && strcmp(w, wl) == 0))
					json_array_append(items, r);
			}
			json_decref(all);
		}
	} else {
		char prefix[320];
		snprintf(prefix, sizeof prefix, wl != NULL ? "r/%s/" : "r/", wl ? wl : "");
		struct store_iter it;
		store_iter_init(&it, &d->node->fsm.store, NULL, prefix, strlen(prefix), NULL, 0);
		for (; store_iter_valid(&it); store_iter_next(&it)) {
			size_t vl;
			const char *v = store_iter_value(&it, &vl);
			json_error_t jerr;
			json_t *doc = json_loadb(v, vl, 0, &jerr);
			struct dom_replica *r =
			    dom_replica_get(dom, json_string_value(json_object_get(doc, "id")));
			json_decref(doc);
			if (r != NULL)
				json_array_append_new(items, view_replica(d, r, false));
		}
		store_iter_close(&it);
	}
	api_domain_respond(op, 200, json_pack("{s:o}", "items", items));
}

void api_route_replicas(struct api *a, struct http_request *req)
{
	http_request_set_tag(req, "/v1/replicas");
	if (!api_allow_method(req, "GET"))
		return;
	const char *wl = http_request_query(req, "workload");
	if (wl != NULL) {
		const char *slash = strchr(wl, '/');
		char ns[80], name[80];
		if (slash == NULL || (size_t)(slash - wl) >= sizeof ns ||
		    strlen(slash + 1) >= sizeof name) {
			http_problem(req, 400, "bad-parameter", "workload must be namespace/name");
			return;
		}
		snprintf(ns, sizeof ns, "%.*s", (int)(slash - wl), wl);
		snprintf(name, sizeof name, "%s", slash + 1);
		if (!spec_dns_label(ns) || !spec_dns_label(name)) {
			http_problem(req, 400, "bad-parameter", "workload must be namespace/name");
			return;
		}
	}
	api_domain_read(a, req, NULL, NULL, render_replicas);
}
