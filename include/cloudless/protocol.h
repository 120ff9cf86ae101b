/* protocol: the names of Cloudless's HTTP protocol that every binary shares (the coordinator
 * today; cloudlessctl and cloudless-agent read the same headers and problem types).
 * openapi/openapi.yaml is the full contract; these are the strings code must agree on. */
#ifndef CLOUDLESS_PROTOCOL_H
#define CLOUDLESS_PROTOCOL_H

/* Response headers on every coordinator answer. */
#define CLOUDLESS_HDR_INDEX        "X-Cloudless-Index"
#define CLOUDLESS_HDR_LEADER       "X-Cloudless-Leader"
#define CLOUDLESS_HDR_KNOWN_LEADER "X-Cloudless-Known-Leader"
#define CLOUDLESS_HDR_SERVED_BY    "X-Cloudless-Served-By"
/* Stale reads: milliseconds since this node last heard from the leader. */
#define CLOUDLESS_HDR_LAST_CONTACT "X-Cloudless-Last-Contact"
/* A write answered from its idempotency record. */
#define CLOUDLESS_HDR_REPLAY "X-Cloudless-Idempotent-Replay"
/* Request header: makes a retried write apply at most once. */
#define CLOUDLESS_HDR_IDEMPOTENCY_KEY "Idempotency-Key"
/* Between coordinators only: a forwarded request, and a re-sent membership change. */
#define CLOUDLESS_HDR_FORWARDED_BY "X-Cloudless-Forwarded-By"
#define CLOUDLESS_HDR_RETRY        "X-Cloudless-Retry"
/* A forwarded membership change: the wall-clock time (ms since the epoch) by which it must
 * have started, so a leader that reads it late (it was paused) never starts it after the
 * caller was told it would not be. */
#define CLOUDLESS_HDR_START_BY "X-Cloudless-Start-By"
/* Between coordinators only: the idempotency key a follower gives a forwarded write that has
 * none of its own, so that its retries are deduplicated (api/proxy.c). Honoured only together
 * with X-Cloudless-Forwarded-By, kept apart from clients' Idempotency-Keys by the fsm, and
 * never echoed in a response. */
#define CLOUDLESS_HDR_FORWARD_KEY "X-Cloudless-Forward-Key"

/* application/problem+json "type" URIs are this prefix plus a slug (not-found, no-leader,
 * leadership-lost, not-leader, cas-mismatch, ...). */
#define CLOUDLESS_PROBLEM_BASE "https://cloudless.dev/problems/"

#endif
