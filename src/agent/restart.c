/* restart: the restart policy as a pure function (see restart.h). */
#include "agent/restart.h"

#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {"always", "on-failure", "never"};

void agent_restart_policy_default(struct agent_restart_policy *p)
{
	p->mode = AGENT_RESTART_ALWAYS;
	p->attempts = 3;
	p->interval_s = 300;
	p->delay_ms = 1000;
}

int agent_restart_mode_parse(const char *name, enum agent_restart_mode *out)
{
	for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++)
		if (strcmp(name, mode_names[i]) == 0) {
			*out = (enum agent_restart_mode)i;
			return 0;
		}
	return -1;
}

const char *agent_restart_mode_name(enum agent_restart_mode mode)
{
	return (unsigned)mode < sizeof mode_names / sizeof mode_names[0] ? mode_names[mode] : "?";
}

void agent_restart_history_init(struct agent_restart_history *h)
{
	memset(h, 0, sizeof *h);
}

void agent_restart_history_close(struct agent_restart_history *h)
{
	free(h->times);
	memset(h, 0, sizeof *h);
}

void agent_restart_history_add(struct agent_restart_history *h, uint64_t at)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 4;
		uint64_t *t = realloc(h->times, cap * sizeof *t);
		if (t == NULL)
			abort(); /* as util/buf: a few bytes we cannot allocate leave nothing to do
			          */
		h->times = t;
		h->cap = cap;
	}
	h->times[h->n++] = at;
	h->total++;
}

/* Forgets the restarts that happened before the window ending now. */
static void prune(struct agent_restart_history *h, uint64_t window_ms, uint64_t now_ms)
{
	size_t keep = 0;
	while (keep < h->n && h->times[keep] + window_ms <= now_ms)
		keep++;
	if (keep > 0) {
		memmove(h->times, h->times + keep, (h->n - keep) * sizeof *h->times);
		h->n -= keep;
	}
}

enum agent_restart_verdict agent_restart_decide(const struct agent_restart_policy *p,
                                                struct agent_restart_history *h, bool success,
                                                uint64_t now_ms, uint64_t *delay_ms)
{
	*delay_ms = 0;
	if (p->mode == AGENT_RESTART_NEVER)
		return success ? AGENT_RESTART_DONE : AGENT_RESTART_FAILED;
	if (p->mode == AGENT_RESTART_ON_FAILURE && success)
		return AGENT_RESTART_DONE;
	prune(h, (uint64_t)p->interval_s * 1000, now_ms);
	if (h->n >= p->attempts)
		return AGENT_RESTART_FAILED;
	uint64_t cap =
	    p->delay_ms > AGENT_RESTART_MAX_DELAY_MS ? p->delay_ms : AGENT_RESTART_MAX_DELAY_MS;
	uint64_t d = p->delay_ms;
	for (size_t i = 0; i < h->n && d < cap; i++)
		d *= 2;
	*delay_ms = d < cap ? d : cap;
	agent_restart_history_add(h, now_ms);
	return AGENT_RESTART_AFTER_DELAY;
}
