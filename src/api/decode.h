/* decode: the request-body decoders of the membership routes, kept apart from the HTTP
 * plumbing so they can be fuzzed and tested on plain bytes.
 *
 * Each returns the HTTP status to answer with: 200 when the body is valid (out filled in),
 * 400 with a one-line reason in err otherwise (the route answers 400 "bad-request" with it).
 * `body` is `len` bytes; it need not be NUL-terminated. */
#ifndef CLOUDLESS_API_DECODE_H
#define CLOUDLESS_API_DECODE_H

#include <stddef.h>

#include "raft/node.h"

/* POST /raft/join: {"node_id", "raft_addr" (numeric IPv4:port), "http_addr" (host:port)}. */
unsigned api_decode_join(const char *body, size_t len, struct node_change *out, char *err,
                         size_t errlen);
/* POST /raft/remove (node_id required) and /raft/transfer-leader (node_id optional, an empty
 * body means "any voter"): {"node_id"}. `kind` selects which. */
unsigned api_decode_node_id(const char *body, size_t len, enum node_change_kind kind,
                            struct node_change *out, char *err, size_t errlen);

#endif
