/* problem: problem+json and JSON response helpers (see problem.h). */
#include "cloudless/protocol.h"
#include "http/problem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/text.h"

const char *http_reason(unsigned status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 307:
		return "Temporary Redirect";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Payload Too Large";
	case 415:
		return "Unsupported Media Type";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 507:
		return "Insufficient Storage";
	default:
		return "Error";
	}
}

void http_respond_json(struct http_request *req, unsigned status, json_t *value)
{
	char *s = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(value);
	if (s == NULL) {
		static const char fallback[] =
		    "{\"type\":\"https://cloudless.dev/problems/internal\","
		    "\"title\":\"Internal Server Error\",\"status\":500,"
		    "\"detail\":\"cannot encode response\"}";
		http_respond(req, 500, "application/problem+json", fallback, sizeof fallback - 1);
		return;
	}
	http_respond(req, status, "application/json", s, strlen(s));
	free(s);
}

/* Replaces every byte that is not part of a valid UTF-8 sequence with '?'. Details quote client
 * input (the percent-decoded path of a 404, a JSON field name) and vsnprintf may cut a
 * multi-byte character in half; jansson rejects invalid UTF-8, and the whole problem document
 * would be lost (the client got "{}"). */
static void scrub_utf8(char *s)
{
	size_t len = strlen(s);
	for (size_t i = 0; i < len;) {
		size_t n = text_utf8_char_len(s + i, len - i);
		if (n > 0)
			i += n;
		else
			s[i++] = '?';
	}
}

void http_problem_extra(struct http_request *req, unsigned status, const char *slug, json_t *extra,
                        const char *detail_fmt, ...)
{
	char detail[512];
	char type[128];
	va_list ap;
	va_start(ap, detail_fmt);
	vsnprintf(detail, sizeof detail, detail_fmt, ap);
	va_end(ap);
	scrub_utf8(detail);
	snprintf(type, sizeof type, CLOUDLESS_PROBLEM_BASE "%s", slug);
	json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", http_reason(status),
	                      "status", (int)status, "detail", detail);
	/* The RFC 7807 members win over extra ones of the same name: the readiness report, for
	 * one, has its own "status" ("unavailable") that must not replace the numeric status. */
	if (o != NULL && extra != NULL)
		json_object_update_missing(o, extra);
	json_decref(extra);
	char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (s == NULL) {
		http_respond(req, status, "application/problem+json", "{}", 2);
		return;
	}
	http_respond(req, status, "application/problem+json", s, strlen(s));
	free(s);
}
