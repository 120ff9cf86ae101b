/* watch: blocking queries (see domain.h).
 *
 * A watcher waits on a topic until the topic's index passes the one the client already has,
 * or until its wait runs out. Watchers are kept in one list per topic (a hash map from topic to
 * list), so an apply wakes only those whose topic it changed: domain_on_apply calls watch_fire
 * for the workload, its namespace, the workload list and the agents whose assignments it
 * changed. Each watcher has its own uv_timer for the wait; it is freed once the timer handle
 * is closed, after its callback ran.
 *
 * A woken watcher answers after the apply, not inside it: the fsm calls its hook in the middle
 * of an entry (one replica.report entry carries the states of many replicas, each a workload
 * event), and an answer rendered there showed the first change with the entry's index, so the
 * client's next query waited past the rest of the entry and missed it until something else
 * changed. watch_fire marks the watcher fired (it stays in its topic's list, skipped by later
 * fires) and restarts its timer at 0 ms; the loop runs it once the callback that applies
 * entries returned. */
#include <stdlib.h>
#include <string.h>

#include "domain/domain.h"

uint64_t watch_topic_index(struct domain *d, const char *topic)
{
	struct fsm_domain *dom = &d->node->fsm.domain;
	if (strncmp(topic, "agent:", 6) == 0) {
		/* An agent never assigned anything is at 1, not at the domain's index: a blocking
		 * query for its first assignment must wait for that, not answer at once. */
		struct dom_agent *a = dom_agent_get(dom, topic + 6);
		if (a == NULL)
			return dom->index;
		return a->assign_index > 0 ? a->assign_index : 1;
	}
	if (strncmp(topic, "workload:", 9) == 0) {
		struct dom_workload *w = dom_workload_get(dom, topic + 9);
		return w != NULL ? w->index : dom->index;
	}
	return dom->index;
}

static void unlink_watch(struct domain *d, struct dom_watch *w)
{
	if (!w->armed)
		return;
	w->armed = false;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else if (w->next != NULL)
		hmap_put(&d->watches.topics, w->topic, w->next);
	else
		hmap_del(&d->watches.topics, w->topic);
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	d->watches.n--;
}

static void closed_cb(uv_handle_t *h)
{
	free(h->data);
}

static void finish(struct dom_watch *w, bool fired, bool call)
{
	unlink_watch(w->d, w);
	uv_timer_stop(&w->timer);
	if (call)
		w->cb(w, fired);
	w->timer.data = w;
	uv_close((uv_handle_t *)&w->timer, closed_cb);
}

static void timer_cb(uv_timer_t *t)
{
	struct dom_watch *w = t->data;
	finish(w, w->fired, true);
}

struct dom_watch *watch_add(struct domain *d, const char *topic, uint64_t index, uint64_t wait_ms,
                            dom_watch_cb cb, void *data)
{
	struct dom_watch *w = calloc(1, sizeof *w);
	if (w == NULL)
		abort();
	snprintf(w->topic, sizeof w->topic, "%s", topic);
	w->index = index;
	w->cb = cb;
	w->data = data;
	w->d = d;
	uv_timer_init(d->loop, &w->timer);
	w->timer.data = w;
	uv_timer_start(&w->timer, timer_cb, wait_ms, 0);
	struct dom_watch *head = hmap_get(&d->watches.topics, w->topic);
	w->next = head;
	if (head != NULL)
		head->prev = w;
	hmap_put(&d->watches.topics, w->topic, w);
	w->armed = true;
	d->watches.n++;
	return w;
}

void watch_cancel(struct dom_watch *w)
{
	if (w != NULL)
		finish(w, false, false);
}

void watch_fire(struct domain *d, const char *topic, uint64_t index)
{
	struct dom_watch *w = hmap_get(&d->watches.topics, topic);
	while (w != NULL) {
		struct dom_watch *next = w->next;
		if (!w->fired && index > w->index) {
			w->fired = true;
			uv_timer_stop(&w->timer);
			uv_timer_start(&w->timer, timer_cb, 0, 0);
		}
		w = next;
	}
}

void watch_close_all(struct domain *d)
{
	const char *k;
	void *v;
	for (;;) {
		size_t i = 0;
		if (!hmap_next(&d->watches.topics, &i, &k, &v))
			break;
		struct dom_watch *w = v;
		finish(w, w->fired, true);
	}
}
