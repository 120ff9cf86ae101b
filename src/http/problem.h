/* problem: RFC 9457 `application/problem+json` error responses.
 *
 * Every error the coordinator returns goes through http_problem so the shape is uniform:
 * {type, title, status, detail} plus optional extra members. `type` is a stable URI per kind of
 * problem (https://cloudless.dev/problems/<slug>) that clients can switch on; `title` is the
 * HTTP reason phrase. */
#ifndef CLOUDLESS_HTTP_PROBLEM_H
#define CLOUDLESS_HTTP_PROBLEM_H

#include <jansson.h>

#include "http/http.h"

/* Responds with a problem document; `extra` (may be NULL) is merged in and stolen. */
void http_problem_extra(struct http_request *req, unsigned status, const char *slug, json_t *extra,
                        const char *detail_fmt, ...) __attribute__((format(printf, 5, 6)));
#define http_problem(req, status, slug, ...) \
	http_problem_extra(req, status, slug, NULL, __VA_ARGS__)
/* Responds with a JSON value (stolen), compact. */
void http_respond_json(struct http_request *req, unsigned status, json_t *value);
const char *http_reason(unsigned status);

#endif
