/* decode: request-body decoders for /raft/join, /raft/remove, /raft/transfer-leader (see
 * decode.h). Bodies are strict JSON: unknown fields, wrong types and bad addresses are 400
 * before anything happens. */
#include "cloudless/protocol.h"
#include "util/text.h"
#include "http/problem.h"
#include "api/decode.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "fsm/command.h"
#include "util/json.h"

static bool valid_node_id(const char *id)
{
	size_t len = strlen(id);
	if (len == 0 || len > COMMAND_MAX_ID)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* The rules of --raft-addr: a numeric IPv4 address other nodes can dial (not 0.0.0.0). */
static bool valid_raft_addr(const char *s)
{
	char host[256];
	unsigned port;
	struct in_addr a;
	return config_split_hostport(s, host, sizeof host, &port, false) == 0 &&
	       inet_pton(AF_INET, host, &a) == 1 && a.s_addr != htonl(INADDR_ANY);
}

/* The rules of --advertise-http: host:port, and not a wildcard nobody can dial. */
static bool valid_http_addr(const char *s)
{
	char host[256];
	unsigned port;
	struct in_addr a4;
	struct in6_addr a6;
	if (config_split_hostport(s, host, sizeof host, &port, false) != 0)
		return false;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return a4.s_addr != htonl(INADDR_ANY);
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return memcmp(&a6, &in6addr_any, sizeof a6) != 0;
	return true;
}

static bool valid_hex_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > COMMAND_MAX_INCARNATION)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

/* Parses the body as an object with only `allowed` fields; NULL with err set otherwise. An
 * empty body is an empty object when `empty_ok`. */
static json_t *parse_body(const char *body, size_t len, const char *const allowed[], bool empty_ok,
                          char *err, size_t errlen)
{
	if (len == 0 && empty_ok)
		return json_object();
	json_t *o = json_parse_object(body, len, err, errlen);
	if (o == NULL || json_check_fields(o, allowed, err, errlen) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

unsigned api_decode_join(const char *body, size_t len, struct node_change *out, char *err,
                         size_t errlen)
{
	static const char *const fields[] = {"node_id",     "raft_addr",  "http_addr",
	                                     "incarnation", "cluster_id", NULL};
	const char *id, *raddr, *haddr, *inc = NULL, *cluster = NULL;
	unsigned status = 400;
	json_t *o = parse_body(body, len, fields, false, err, errlen);
	if (o == NULL)
		return 400;
	if (json_get_string(o, "node_id", true, 1, COMMAND_MAX_ID, &id, err, errlen) != 0 ||
	    json_get_string(o, "raft_addr", true, 1, COMMAND_MAX_ADDR, &raddr, err, errlen) != 0 ||
	    json_get_string(o, "http_addr", true, 1, COMMAND_MAX_ADDR, &haddr, err, errlen) != 0 ||
	    json_get_string(o, "incarnation", false, 1, COMMAND_MAX_INCARNATION, &inc, err,
	                    errlen) != 0 ||
	    json_get_string(o, "cluster_id", false, 1, COMMAND_MAX_INCARNATION, &cluster, err,
	                    errlen) != 0) {
		/* err says which field */
	} else if (!valid_node_id(id)) {
		snprintf(err, errlen, "node_id must be 1 to %d characters of [A-Za-z0-9._-]",
		         COMMAND_MAX_ID);
	} else if (!valid_raft_addr(raddr)) {
		snprintf(err, errlen,
		         "raft_addr must be a numeric IPv4 address other nodes can dial (not "
		         "0.0.0.0) with a port, e.g. 10.0.0.1:7000");
	} else if (!valid_http_addr(haddr)) {
		snprintf(err, errlen,
		         "http_addr must be host:port with a port from 1 to 65535, and not a "
		         "wildcard address");
	} else if ((inc != NULL && !valid_hex_id(inc)) ||
	           (cluster != NULL && !valid_hex_id(cluster))) {
		snprintf(err, errlen,
		         "incarnation and cluster_id must be lower-case hex (as /raft/status shows "
		         "them)");
	} else {
		memset(out, 0, sizeof *out);
		out->kind = NODE_CHANGE_JOIN;
		snprintf(out->node_id, sizeof out->node_id, "%s", id);
		snprintf(out->raft_addr, sizeof out->raft_addr, "%s", raddr);
		snprintf(out->http_addr, sizeof out->http_addr, "%s", haddr);
		snprintf(out->incarnation, sizeof out->incarnation, "%s", inc ? inc : "");
		snprintf(out->cluster_id, sizeof out->cluster_id, "%s", cluster ? cluster : "");
		status = 200;
	}
	json_decref(o);
	return status;
}

unsigned api_decode_node_id(const char *body, size_t len, enum node_change_kind kind,
                            struct node_change *out, char *err, size_t errlen)
{
	static const char *const fields[] = {"node_id", NULL};
	const char *id;
	unsigned status = 400;
	bool required = kind == NODE_CHANGE_REMOVE;
	json_t *o = parse_body(body, len, fields, !required, err, errlen);
	if (o == NULL)
		return 400;
	if (json_get_string(o, "node_id", required, 1, COMMAND_MAX_ID, &id, err, errlen) != 0) {
		/* err says why */
	} else if (id != NULL && !valid_node_id(id)) {
		snprintf(err, errlen, "node_id must be 1 to %d characters of [A-Za-z0-9._-]",
		         COMMAND_MAX_ID);
	} else {
		memset(out, 0, sizeof *out);
		out->kind = kind;
		snprintf(out->node_id, sizeof out->node_id, "%s", id ? id : "");
		status = 200;
	}
	json_decref(o);
	return status;
}

/* ---- request line validation shared by the routes ---- */

bool api_valid_idem_key(const char *k)
{
	size_t len = strlen(k);
	if (len == 0 || len > COMMAND_MAX_IDEM)
		return false;
	for (size_t i = 0; i < len; i++)
		if (k[i] < 0x21 || k[i] > 0x7e)
			return false;
	return true;
}

bool api_check_key(struct http_request *req, const char *key)
{
	size_t len = strlen(key);
	if (len == 0) {
		http_problem(req, 400, "bad-key", "the key must not be empty");
		return false;
	}
	if (len > COMMAND_MAX_KEY) {
		http_problem(req, 400, "bad-key", "the key is %zu bytes; the limit is %d", len,
		             COMMAND_MAX_KEY);
		return false;
	}
	if (!text_valid_utf8(key, len)) {
		http_problem(req, 400, "bad-key", "the key must be valid UTF-8");
		return false;
	}
	return true;
}

static void method_not_allowed(struct http_request *req, const char *allow)
{
	http_response_header(req, "Allow", allow);
	http_problem(req, 405, "method-not-allowed", "method %s is not allowed here; allowed: %s",
	             http_request_method(req), allow);
}

static bool method_is(struct http_request *req, const char *m)
{
	return strcmp(http_request_method(req), m) == 0;
}

bool api_allow_method(struct http_request *req, const char *allowed)
{
	char list[64];
	snprintf(list, sizeof list, "%s", allowed);
	for (char *save, *m = strtok_r(list, ", ", &save); m; m = strtok_r(NULL, ", ", &save))
		if (method_is(req, m) || (strcmp(m, "GET") == 0 && method_is(req, "HEAD")))
			return true;
	method_not_allowed(req, allowed);
	return false;
}

/* The internal key a follower gave the forwarded write (proxy.c): only from a forward, never
 * next to a client's own key. NULL when there is none; false after answering 400. */
bool api_forward_key(struct http_request *req, const char *idem, const char **out)
{
	const char *k = http_request_header(req, CLOUDLESS_HDR_FORWARD_KEY);
	*out = NULL;
	if (k == NULL || http_request_header(req, CLOUDLESS_HDR_FORWARDED_BY) == NULL)
		return true;
	if (idem != NULL || !api_valid_idem_key(k)) {
		http_problem(req, 400, "bad-header",
		             CLOUDLESS_HDR_FORWARD_KEY " must be 1 to %d visible ASCII characters, "
		                                       "on a write without an Idempotency-Key",
		             COMMAND_MAX_IDEM);
		return false;
	}
	*out = k;
	return true;
}

bool api_check_write_params(struct http_request *req, bool *has_cas, uint64_t *cas)
{
	const char *cas_s = http_request_query(req, "cas");
	const char *idem = http_request_header(req, CLOUDLESS_HDR_IDEMPOTENCY_KEY);
	*has_cas = cas_s != NULL;
	*cas = 0;
	if (cas_s != NULL && text_parse_u64(cas_s, cas) != 0) {
		http_problem(req, 400, "bad-parameter",
		             "cas must be a non-negative integer index (0 = create only)");
		return false;
	}
	if (idem != NULL && !api_valid_idem_key(idem)) {
		http_problem(req, 400, "bad-header",
		             "Idempotency-Key must be 1 to %d visible ASCII characters",
		             COMMAND_MAX_IDEM);
		return false;
	}
	return true;
}
