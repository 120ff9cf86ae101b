/* assign: replica documents for agents, and their cached text (see assign.h). */
#include "domain/assign.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ENCODE_FLAGS JSON_COMPACT

struct assign_text {
	uint64_t replica_version, workload_version;
	size_t len;
	char text[];
};

void assign_cache_init(struct assign_cache *c)
{
	memset(c, 0, sizeof *c);
	hmap_init(&c->texts);
}

void assign_cache_clear(struct assign_cache *c)
{
	hmap_clear(&c->texts, free);
}

void assign_cache_close(struct assign_cache *c)
{
	assign_cache_clear(c);
	hmap_close(&c->texts);
}

static json_t *replica_spec(const struct dom_workload *w)
{
	static const char *const fields[] = {"command",      "env",
	                                     "image",        "resources",
	                                     "restart",      "kill_timeout_ms",
	                                     "spec_version", "stop_after_disconnect_s"};
	json_t *spec = json_object();
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		json_object_set(spec, fields[i], json_object_get(w->doc, fields[i]));
	return spec;
}

json_t *assign_replica_doc(struct fsm_domain *dom, const struct dom_replica *r, bool with_spec)
{
	static const char *const fields[] = {"id",        "workload",       "slot",      "agent",
	                                     "epoch",     "desired",        "state",     "restarts",
	                                     "exit_code", "pending_reason", "failed_on", "version"};
	json_t *o = json_object();
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		json_t *v = json_object_get(r->doc, fields[i]);
		if (v != NULL)
			json_object_set(o, fields[i], v);
	}
	struct dom_workload *w = with_spec ? dom_workload_get(dom, r->workload) : NULL;
	if (w != NULL)
		json_object_set_new(o, "spec", replica_spec(w));
	return o;
}

static int cmp_replica(const void *a, const void *b)
{
	const struct dom_replica *x = *(const struct dom_replica *const *)a;
	const struct dom_replica *y = *(const struct dom_replica *const *)b;
	int c = strcmp(x->workload, y->workload);
	if (c != 0)
		return c;
	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

const struct dom_replica **assign_sorted(const struct dom_agent *a, size_t *n)
{
	const struct dom_replica **list = calloc(a->n_replicas + 1, sizeof *list);
	if (list == NULL)
		abort();
	*n = 0;
	for (const struct dom_replica *r = a->replicas; r != NULL && *n < a->n_replicas;
	     r = r->anext)
		list[(*n)++] = r;
	qsort(list, *n, sizeof *list, cmp_replica);
	return list;
}

/* The cached text of r's document, rendered again when r or its workload changed. */
static const struct assign_text *text_of(struct assign_cache *c, struct fsm_domain *dom,
                                         const struct dom_replica *r)
{
	struct dom_workload *w = dom_workload_get(dom, r->workload);
	uint64_t wv = w != NULL ? w->version : 0;
	struct assign_text *t = hmap_get(&c->texts, r->id);
	if (t != NULL && t->replica_version == r->version && t->workload_version == wv) {
		c->hits++;
		return t;
	}
	c->misses++;
	json_t *doc = assign_replica_doc(dom, r, true);
	char *s = json_dumps(doc, ENCODE_FLAGS);
	json_decref(doc);
	if (s == NULL) /* a record holds only what jansson decoded: it always encodes */
		abort();
	size_t len = strlen(s);
	free(t);
	t = malloc(sizeof *t + len + 1);
	if (t == NULL)
		abort();
	t->replica_version = r->version;
	t->workload_version = wv;
	t->len = len;
	memcpy(t->text, s, len + 1);
	free(s);
	hmap_put(&c->texts, r->id, t);
	return t;
}

void assign_list_text(struct assign_cache *c, struct fsm_domain *dom, const struct dom_agent *a,
                      struct buf *out)
{
	/* Texts of deleted replicas are never looked up again: start over rather than let
	 * them pile up (a new render per replica, once). */
	if (hmap_size(&c->texts) > 2 * hmap_size(&dom->replicas) + 1024)
		assign_cache_clear(c);
	size_t n;
	const struct dom_replica **list = assign_sorted(a, &n);
	buf_put_u8(out, '[');
	for (size_t i = 0; i < n; i++) {
		const struct assign_text *t = text_of(c, dom, list[i]);
		if (i > 0)
			buf_put_u8(out, ',');
		buf_append(out, t->text, t->len);
	}
	buf_put_u8(out, ']');
	free(list);
}

char *assign_answer_text(struct assign_cache *c, struct fsm_domain *dom, json_t *head,
                         const struct dom_agent *a, size_t *len)
{
	char *h = json_dumps(head, ENCODE_FLAGS);
	json_decref(head);
	size_t hl = h != NULL ? strlen(h) : 0;
	if (hl < 2 || h[hl - 1] != '}') {
		free(h);
		return NULL;
	}
	struct buf out;
	buf_init(&out);
	buf_append(&out, h, hl - 1); /* without its closing brace */
	buf_puts(&out, hl > 2 ? ",\"assignments\":" : "\"assignments\":");
	free(h);
	assign_list_text(c, dom, a, &out);
	buf_put_u8(&out, '}');
	buf_put_u8(&out, '\0');
	char *s = buf_detach(&out, len);
	(*len)--; /* the NUL is not part of the text */
	return s;
}
