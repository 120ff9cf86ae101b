/* json: request-body decoding helpers (see json.h). */
#include "util/json.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The deepest nesting of arrays and objects in text (strings skipped), stopping past max. */
static unsigned nesting_depth(const char *s, size_t len, unsigned max)
{
	unsigned depth = 0, deepest = 0;
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (in_string) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = false;
		} else if (ch == '"') {
			in_string = true;
		} else if (ch == '[' || ch == '{') {
			if (++depth > deepest && (deepest = depth) > max)
				return deepest;
		} else if ((ch == ']' || ch == '}') && depth > 0) {
			depth--;
		}
	}
	return deepest;
}

json_t *json_parse_object(const char *body, size_t len, char *err, size_t errlen)
{
	json_error_t jerr;
	if (body == NULL || len == 0) {
		snprintf(err, errlen, "request body must be a JSON object");
		return NULL;
	}
	/* jansson allows 2048 levels; no request needs more than a handful, and deep documents
	 * cost recursion everywhere they are walked (copies, comparisons, encoding). */
	if (nesting_depth(body, len, JSON_MAX_DEPTH) > JSON_MAX_DEPTH) {
		snprintf(err, errlen, "JSON nested deeper than %d levels", JSON_MAX_DEPTH);
		return NULL;
	}
	json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (v == NULL) {
		snprintf(err, errlen, "malformed JSON at line %d column %d: %s", jerr.line,
		         jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(v)) {
		snprintf(err, errlen, "request body must be a JSON object");
		json_decref(v);
		return NULL;
	}
	return v;
}

int json_check_fields(json_t *obj, const char *const allowed[], char *err, size_t errlen)
{
	const char *name;
	json_t *value;
	json_object_foreach(obj, name, value)
	{
		bool known = false;
		for (size_t i = 0; allowed[i] != NULL && !known; i++)
			known = strcmp(allowed[i], name) == 0;
		if (!known) {
			snprintf(err, errlen, "unknown field \"%.64s\"", name);
			return -1;
		}
	}
	return 0;
}

int json_get_string(json_t *obj, const char *name, bool required, size_t min_len, size_t max_len,
                    const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, name);
	*out = NULL;
	if (v == NULL || (json_is_null(v) && !required)) {
		if (required) {
			snprintf(err, errlen, "missing required field \"%s\"", name);
			return -1;
		}
		return 0;
	}
	if (!json_is_string(v)) {
		snprintf(err, errlen, "field \"%s\" must be a string", name);
		return -1;
	}
	size_t len = json_string_length(v);
	const char *s = json_string_value(v);
	if (len < min_len || len > max_len || strlen(s) != len) {
		snprintf(err, errlen, "field \"%s\" must be %zu to %zu characters", name, min_len,
		         max_len);
		return -1;
	}
	*out = s;
	return 0;
}

char *json_encode(json_t *value, size_t *len)
{
	char *s = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
	if (len != NULL)
		*len = s != NULL ? strlen(s) : 0;
	return s;
}
