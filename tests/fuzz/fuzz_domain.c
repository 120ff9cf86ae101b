/* fuzz_domain: the domain's JSON decoders, coordinator and agent side.
 *
 * Input: a selector byte, then the body (an exact-size, unterminated buffer: ASan catches any
 * read past it). The selector picks the decoder:
 *   0  a workload spec (spec_workload, POST /v1/workloads)
 *   1  an enrollment (spec_enrollment, POST /v1/agents)
 *   2  a heartbeat body (spec_heartbeat, POST /v1/agents/{id}/heartbeat)
 *   3  a scale body (spec_scale)
 *   4  a heartbeat answer, as the agent reads it (agent_wire_decode_heartbeat)
 *   5  a ReplicaSpec, as the agent reads it (agent_spec_decode)
 * Properties: a failure always names its reason; an accepted workload is canonical (decoding
 * its own encoding gives the same document) and keeps its bounds (replicas, the fence, an
 * exclusive workload always fenced); an accepted ReplicaSpec has a NULL-ended command of
 * non-empty first argument and a fence within 0-86400 s. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/spec.h"
#include "agent/wire.h"
#include "domain/spec.h"
#include "fuzz_common.h"
#include "util/json.h"

static void fuzz_workload(const char *body, size_t len)
{
	char err[256] = "";
	json_t *w = spec_workload(body, len, NULL, NULL, err, sizeof err);
	if (w == NULL) {
		FUZZ_ASSERT(err[0] != '\0', "workload refused without a reason");
		return;
	}
	json_int_t replicas = json_integer_value(json_object_get(w, "replicas"));
	json_int_t fence = json_integer_value(json_object_get(w, "stop_after_disconnect_s"));
	FUZZ_ASSERT(replicas >= 0 && replicas <= SPEC_MAX_REPLICAS, "replicas %lld",
	            (long long)replicas);
	FUZZ_ASSERT(fence >= 0 && fence <= SPEC_MAX_FENCE_S, "fence %lld", (long long)fence);
	if (json_is_true(json_object_get(json_object_get(w, "placement"), "exclusive")))
		FUZZ_ASSERT(fence > 0, "an exclusive workload without a fence");
	size_t n;
	char *enc = json_encode(w, &n);
	FUZZ_ASSERT(enc != NULL, "cannot encode an accepted workload");
	json_t *again = spec_workload(enc, n, NULL, NULL, err, sizeof err);
	FUZZ_ASSERT(again != NULL && json_equal(w, again), "not canonical: %s", err);
	json_decref(again);
	free(enc);
	json_decref(w);
}

static void fuzz_simple(uint8_t which, const char *body, size_t len)
{
	char err[256] = "";
	if (which == 3) {
		unsigned replicas = 0;
		if (spec_scale(body, len, &replicas, err, sizeof err) != 0)
			FUZZ_ASSERT(err[0] != '\0', "scale refused without a reason");
		else
			FUZZ_ASSERT(replicas <= SPEC_MAX_REPLICAS, "replicas %u", replicas);
		return;
	}
	uint64_t index = 0;
	json_t *o = which == 1 ? spec_enrollment(body, len, 1000, err, sizeof err)
	                       : spec_heartbeat(body, len, &index, err, sizeof err);
	if (o == NULL)
		FUZZ_ASSERT(err[0] != '\0', "refused without a reason");
	else
		FUZZ_ASSERT(which == 1 ? json_is_object(o) : json_is_array(o), "wrong type");
	json_decref(o);
}

static void fuzz_answer(const char *body, size_t len)
{
	char err[256] = "";
	struct agent_answer a = {0};
	if (agent_wire_decode_heartbeat(body, len, &a, err, sizeof err) != 0) {
		FUZZ_ASSERT(err[0] != '\0', "answer refused without a reason");
		return;
	}
	for (size_t i = 0; i < a.n; i++)
		FUZZ_ASSERT(a.items[i].id != NULL && a.items[i].workload != NULL, "item %zu", i);
	FUZZ_ASSERT(!a.unchanged || a.n == 0, "an unchanged answer with %zu assignments", a.n);
	agent_answer_close(&a);
}

static void fuzz_replica_spec(const char *body, size_t len)
{
	char err[256] = "";
	json_t *o = json_parse_object(body, len, err, sizeof err);
	if (o == NULL)
		return;
	struct agent_spec s;
	if (agent_spec_decode(o, &s, err, sizeof err) != 0) {
		FUZZ_ASSERT(err[0] != '\0', "spec refused without a reason");
	} else {
		FUZZ_ASSERT(s.argc > 0 && s.argv[s.argc] == NULL && s.argv[0][0] != '\0',
		            "bad command");
		FUZZ_ASSERT(s.stop_after_disconnect_s <= 86400, "fence %llu",
		            (unsigned long long)s.stop_after_disconnect_s);
		agent_spec_close(&s);
	}
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0] % 6;
	size_t len = size - 1;
	char *body = malloc(len ? len : 1);
	memcpy(body, data + 1, len);
	switch (sel) {
	case 0:
		fuzz_workload(body, len);
		break;
	case 4:
		fuzz_answer(body, len);
		break;
	case 5:
		fuzz_replica_spec(body, len);
		break;
	default:
		fuzz_simple(sel, body, len);
	}
	free(body);
	return 0;
}
