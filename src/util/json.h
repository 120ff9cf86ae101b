/* json: strict helpers for decoding JSON request bodies with jansson.
 *
 * Every JSON decoder in the API goes through these, so malformed input, wrong types and
 * unknown fields are reported the same way everywhere (one message naming the field). */
#ifndef CLOUDLESS_UTIL_JSON_H
#define CLOUDLESS_UTIL_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The deepest nesting of arrays and objects a request body may have. */
#define JSON_MAX_DEPTH 32

/* Parses body as a JSON object. NULL and a message in err when it is not one, or when it nests
 * deeper than JSON_MAX_DEPTH. */
json_t *json_parse_object(const char *body, size_t len, char *err, size_t errlen);
/* Fails when the object has a member whose name is not in the NULL-terminated list. */
int json_check_fields(json_t *obj, const char *const allowed[], char *err, size_t errlen);
/* Reads a string member into *out (borrowed). Missing: -1 when required, else 0 with NULL.
 * Wrong type or length outside [min_len, max_len]: -1 with a message. */
int json_get_string(json_t *obj, const char *name, bool required, size_t min_len, size_t max_len,
                    const char **out, char *err, size_t errlen);
/* Serialises compactly into a malloc'd string (free() it). */
char *json_encode(json_t *value, size_t *len);

#endif
