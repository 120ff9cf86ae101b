/* decode: request validation kept apart from the routes so it can be fuzzed directly: the
 * membership routes' body decoders, and the key, method and header checks of every route.
 *
 * Each returns the HTTP status to answer with: 200 when the body is valid (out filled in),
 * 400 with a one-line reason in err otherwise (the route answers 400 "bad-request" with it).
 * `body` is `len` bytes; it need not be NUL-terminated. */
#ifndef CLOUDLESS_API_DECODE_H
#define CLOUDLESS_API_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

#include "raft/node.h"

/* POST /raft/join: {"node_id", "raft_addr" (numeric IPv4:port), "http_addr" (host:port)}. */
unsigned api_decode_join(const char *body, size_t len, struct node_change *out, char *err,
                         size_t errlen);
/* POST /raft/remove (node_id required) and /raft/transfer-leader (node_id optional, an empty
 * body means "any voter"): {"node_id"}. `kind` selects which. */
unsigned api_decode_node_id(const char *body, size_t len, enum node_change_kind kind,
                            struct node_change *out, char *err, size_t errlen);

/* Idempotency-Key: 1..256 visible ASCII characters. */
bool api_valid_idem_key(const char *k);
/* A kv key: 1..1024 bytes of valid UTF-8; otherwise answers 400 and returns false. */
bool api_check_key(struct http_request *req, const char *key);
/* True when the request's method is in the comma-separated list (GET admits HEAD);
 * otherwise answers 405 with Allow and returns false. */
bool api_allow_method(struct http_request *req, const char *allowed);
/* The internal key (X-Cloudless-Forward-Key) a follower gave a forwarded write that has no
 * Idempotency-Key (api/proxy.c): honoured only with X-Cloudless-Forwarded-By and never next
 * to a client's key. *out NULL when there is none; false after answering 400. */
bool api_forward_key(struct http_request *req, const char *idem, const char **out);
/* The ?cas parameter and Idempotency-Key header of a write: false after answering 400. */
bool api_check_write_params(struct http_request *req, bool *has_cas, uint64_t *cas);

#endif
