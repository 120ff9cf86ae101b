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
 * changed. watch_fire moves the watcher to the fired list and restarts its timer at 0 ms; the
 * loop runs it once the callback that applies entries returned. */
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

/* Out of the list w is in; the caller has moved the list's head past w when w was it. */
static void unlink_node(struct dom_watch *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
}

static void unlink_watch(struct domain *d, struct dom_watch *w)
{
	if (!w->armed)
		return;
	w->armed = false;
	if (w->prev == NULL && w->next != NULL)
		hmap_put(&d->watches.topics, w->topic, w->next);
	else if (w->prev == NULL)
		hmap_del(&d->watches.topics, w->topic);
	unlink_node(w);
	d->watches.n--;
}

static void unlink_fired(struct domain *d, struct dom_watch *w)
{
	if (!w->fired)
		return;
	w->fired = false;
	if (w->prev == NULL)
		d->watches.fired = w->next;
	unlink_node(w);
}

static void closed_cb(uv_handle_t *h)
{
	free(h->data);
}

static void finish(struct dom_watch *w, bool fired, bool call)
{
	unlink_watch(w->d, w);
	unlink_fired(w->d, w);
	uv_timer_stop(&w->timer);
	if (call)
		w->cb(w, fired);
	w->timer.data = w;
	uv_close((uv_handle_t *)&w->timer, closed_cb);
}

static void timer_cb(uv_timer_t *t)
{
	finish(t->data, false, true);
}

static void fired_cb(uv_timer_t *t)
{
	finish(t->data, true, true);
}

/* Out of its topic's list into the fired list, to answer on the loop's next timer pass. */
static void wake(struct domain *d, struct dom_watch *w)
{
	unlink_watch(d, w);
	w->fired = true;
	w->prev = NULL;
	w->next = d->watches.fired;
	if (w->next != NULL)
		w->next->prev = w;
	d->watches.fired = w;
	uv_timer_stop(&w->timer);
	uv_timer_start(&w->timer, fired_cb, 0, 0);
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
		if (index > w->index)
			wake(d, w);
		w = next;
	}
}

void watch_close_all(struct domain *d)
{
	const char *k;
	void *v;
	while (d->watches.fired != NULL)
		finish(d->watches.fired, true, true);
	for (;;) {
		size_t i = 0;
		if (!hmap_next(&d->watches.topics, &i, &k, &v))
			break;
		finish(v, false, true);
	}
}
