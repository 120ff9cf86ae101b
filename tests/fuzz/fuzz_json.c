/* fuzz_json: every JSON request-body decoder.
 *
 * Input: a selector byte, then the body. The selector picks the decoder:
 *   0  POST /raft/join             (api_decode_join)
 *   1  POST /raft/remove           (api_decode_node_id, node_id required)
 *   2  POST /raft/transfer-leader  (api_decode_node_id, node_id optional, empty body ok)
 *   3  the util/json.h primitives directly: json_parse_object, json_check_fields and
 *      json_get_string with bounds and "required" taken from the selector's high bits
 * The body is handed over in an exact-size, unterminated buffer (the decoders take a length;
 * ASan catches any read past it). Every decoder must answer 200 with a well-formed result or
 * 400 with a message, never anything else. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/decode.h"
#include "fsm/command.h"
#include "fuzz_common.h"
#include "util/json.h"

static bool node_id_ok(const char *id, bool empty_ok)
{
	size_t len = strnlen(id, COMMAND_MAX_ID + 1);
	if (len > COMMAND_MAX_ID || (len == 0 && !empty_ok))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)id[i]) && !strchr("-_.", id[i]))
			return false;
	return true;
}

static void check_status(unsigned status, const char *err)
{
	FUZZ_ASSERT(status == 200 || status == 400, "status %u", status);
	if (status == 400)
		FUZZ_ASSERT(err[0] != '\0', "400 without a reason");
}

static void fuzz_join(const char *body, size_t len)
{
	struct node_change c;
	char err[256] = "";
	unsigned status = api_decode_join(body, len, &c, err, sizeof err);
	check_status(status, err);
	if (status != 200)
		return;
	FUZZ_ASSERT(c.kind == NODE_CHANGE_JOIN, "kind %d", (int)c.kind);
	FUZZ_ASSERT(node_id_ok(c.node_id, false), "accepted node_id \"%s\"", c.node_id);
	FUZZ_ASSERT(strnlen(c.raft_addr, sizeof c.raft_addr) < sizeof c.raft_addr &&
	                strnlen(c.http_addr, sizeof c.http_addr) < sizeof c.http_addr,
	            "unterminated address");
	FUZZ_ASSERT(strchr(c.raft_addr, ':') != NULL && strchr(c.http_addr, ':') != NULL,
	            "accepted an address without a port");
}

static void fuzz_node_id(const char *body, size_t len, enum node_change_kind kind)
{
	struct node_change c;
	char err[256] = "";
	unsigned status = api_decode_node_id(body, len, kind, &c, err, sizeof err);
	check_status(status, err);
	if (status != 200)
		return;
	FUZZ_ASSERT(c.kind == kind, "kind %d", (int)c.kind);
	FUZZ_ASSERT(node_id_ok(c.node_id, kind == NODE_CHANGE_TRANSFER), "accepted node_id \"%s\"",
	            c.node_id);
}

static void fuzz_primitives(uint8_t sel, const char *body, size_t len)
{
	static const char *const fields[] = {"node_id", "raft_addr", "http_addr", "a", "", NULL};
	static const char *const names[] = {"node_id", "raft_addr", "http_addr", "a", ""};
	char err[256] = "";
	json_t *o = json_parse_object(body, len, err, sizeof err);
	if (o == NULL) {
		FUZZ_ASSERT(err[0] != '\0', "parse failure without a reason");
		return;
	}
	FUZZ_ASSERT(json_is_object(o), "not an object");
	if (json_check_fields(o, fields, err, sizeof err) != 0)
		FUZZ_ASSERT(err[0] != '\0', "unknown field without a reason");
	bool required = sel & 0x10;
	size_t min = (sel >> 5) & 3, max = min + ((sel >> 7) ? COMMAND_MAX_ADDR : 8);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const char *s = (const char *)1;
		err[0] = '\0';
		int rv = json_get_string(o, names[i], required, min, max, &s, err, sizeof err);
		if (rv != 0) {
			FUZZ_ASSERT(s == NULL && err[0] != '\0', "failure without a reason");
		} else if (s != NULL) {
			size_t n = strlen(s);
			FUZZ_ASSERT(n >= min && n <= max, "length %zu outside [%zu, %zu]", n, min,
			            max);
		} else {
			FUZZ_ASSERT(!required, "required field reported absent without an error");
		}
	}
	size_t n;
	char *enc = json_encode(o, &n);
	FUZZ_ASSERT(enc != NULL, "cannot re-encode a parsed object");
	/* What we print we must be able to read back. */
	json_t *again = json_parse_object(enc, n, err, sizeof err);
	FUZZ_ASSERT(again != NULL && json_equal(o, again), "re-encoded object differs: %s", err);
	json_decref(again);
	free(enc);
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	size_t len = size - 1;
	char *body = malloc(len ? len : 1);
	memcpy(body, data + 1, len);
	switch (sel & 3) {
	case 0:
		fuzz_join(body, len);
		break;
	case 1:
		fuzz_node_id(body, len, NODE_CHANGE_REMOVE);
		break;
	case 2:
		fuzz_node_id(body, len, NODE_CHANGE_TRANSFER);
		break;
	default:
		fuzz_primitives(sel, body, len);
	}
	free(body);
	return 0;
}
