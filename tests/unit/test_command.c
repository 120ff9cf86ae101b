/* test_command: unit tests for src/fsm/command (the binary codec of raft entry payloads).
 *
 * Entries come off disk and the network, so the decoder must accept exactly the encoder's
 * output (plus the up-to-7 zero bytes of padding the raft layer adds) and refuse everything
 * else without reading out of bounds: every prefix of a valid encoding, other versions and
 * types, oversized lengths, non-zero or over-long padding. Each decode below runs on a
 * malloc'd copy of exactly the bytes under test, so ASan flags any overread. The fingerprint
 * decides idempotent replays, so what it must and must not depend on is pinned too. Entries
 * of version 1 (before the idempotency limits travelled in the entry) stay in existing logs
 * and snapshots: they must keep decoding, with the fixed default limits, and re-encode to
 * their own bytes. */
#include "fsm/command.h"

#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static struct command_str S(const char *s) {
	struct command_str r = {s, strlen(s)};
	return r;
}

static struct command_str
SN(const char *s, size_t n) {
	struct command_str r = {s, n};
	return r;
}

static bool
str_eq(struct command_str a, struct command_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Decodes len bytes from a private heap copy (so overreads hit the redzone under ASan). The
 * decoded strings point into the copy; *copy is returned for the caller to free. */
static int decode_copy(struct command *c, const void *data, size_t len, void **copy)
{
	*copy = malloc(len ? len : 1);
	if (len > 0)
		memcpy(*copy, data, len);
	return command_decode(c, *copy, len);
}

static int decode_n(const void *data, size_t len)
{
	struct command c;
	void *copy;
	int rv = decode_copy(&c, data, len, &copy);
	free(copy);
	return rv;
}

static bool same_command(const struct command *a, const struct command *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case COMMAND_KV_PUT:
		if (!str_eq(a->value, b->value))
			return false;
		/* fall through */
	case COMMAND_KV_DELETE:
		return a->ts_ms == b->ts_ms && a->idem_ttl_s == b->idem_ttl_s &&
		       a->idem_max == b->idem_max && str_eq(a->idem_key, b->idem_key) &&
		       a->idem_internal == b->idem_internal && a->resent == b->resent &&
		       a->has_cas == b->has_cas && a->cas == b->cas && str_eq(a->key, b->key);
	case COMMAND_MEMBER_SET:
		return str_eq(a->node_id, b->node_id) && a->raft_id == b->raft_id &&
		       str_eq(a->raft_addr, b->raft_addr) && str_eq(a->http_addr, b->http_addr);
	case COMMAND_MEMBER_PUT:
		return str_eq(a->node_id, b->node_id) && a->raft_id == b->raft_id &&
		       str_eq(a->raft_addr, b->raft_addr) && str_eq(a->http_addr, b->http_addr) &&
		       str_eq(a->incarnation, b->incarnation);
	case COMMAND_MEMBER_DEL:
		return str_eq(a->node_id, b->node_id);
	case COMMAND_CLUSTER_SET:
		return str_eq(a->cluster_id, b->cluster_id);
	case COMMAND_DOMAIN:
		return a->ts_ms == b->ts_ms && a->idem_ttl_s == b->idem_ttl_s &&
		       a->idem_max == b->idem_max && str_eq(a->idem_key, b->idem_key) &&
		       a->idem_internal == b->idem_internal && a->resent == b->resent &&
		       str_eq(a->value, b->value);
	}
	return false;
}

static const char BIN_VALUE[] = "\0bin\0ary\xff\x00";
#define BIN_VALUE_LEN (sizeof BIN_VALUE - 1)

static struct command sample(int i)
{
	struct command c;
	memset(&c, 0, sizeof c);
	switch (i) {
	case 0: /* plain put */
		c.type = COMMAND_KV_PUT;
		c.ts_ms = 1700000000123ULL;
		c.idem_ttl_s = 86400;
		c.idem_max = 100000;
		c.key = S("a/b");
		c.value = S("hello");
		break;
	case 1: /* put with CAS, idempotency key and a binary value with NULs */
		c.type = COMMAND_KV_PUT;
		c.ts_ms = UINT64_MAX;
		c.idem_ttl_s = UINT32_MAX;
		c.idem_max = UINT32_MAX;
		c.idem_key = S("req-1");
		c.has_cas = true;
		c.cas = 0x0102030405060708ULL;
		c.key = SN("k\0ey", 4);
		c.value = SN(BIN_VALUE, BIN_VALUE_LEN);
		break;
	case 2: /* create-only put (cas 0) with an empty value and an internal key */
		c.type = COMMAND_KV_PUT;
		c.ts_ms = 5;
		c.idem_ttl_s = 1;
		c.idem_max = 1;
		c.idem_key = S("0123456789abcdef0123456789abcdef.7");
		c.idem_internal = true;
		c.has_cas = true;
		c.cas = 0;
		c.key = S("x");
		c.value = S("");
		break;
	case 3: /* delete */
		c.type = COMMAND_KV_DELETE;
		c.ts_ms = 9;
		c.idem_ttl_s = 60;
		c.idem_max = 3;
		c.key = S("gone");
		break;
	case 4: /* delete with CAS and idempotency key */
		c.type = COMMAND_KV_DELETE;
		c.ts_ms = 10;
		c.idem_ttl_s = 2;
		c.idem_max = 5;
		c.idem_key = S("del-7");
		c.has_cas = true;
		c.cas = 77;
		c.key = S("gone");
		break;
	case 5:
		c.type = COMMAND_MEMBER_SET;
		c.node_id = S("node-1");
		c.raft_id = 0xdeadbeefcafeULL;
		c.raft_addr = S("10.0.0.1:7000");
		c.http_addr = S("10.0.0.1:8080");
		break;
	case 6: /* member set with empty addresses (allowed by the codec) */
		c.type = COMMAND_MEMBER_SET;
		c.node_id = S("n");
		c.raft_id = 1;
		c.raft_addr = S("");
		c.http_addr = S("");
		break;
	case 7:
		c.type = COMMAND_MEMBER_DEL;
		c.node_id = S("node-1");
		break;
	case 8: /* maximum key and idempotency key lengths */
	{
		static char key[COMMAND_MAX_KEY], idem[COMMAND_MAX_IDEM];
		memset(key, 'k', sizeof key);
		memset(idem, 'i', sizeof idem);
		c.type = COMMAND_KV_PUT;
		c.ts_ms = 1;
		c.idem_ttl_s = 7;
		c.idem_max = 8;
		c.idem_key = SN(idem, sizeof idem);
		c.key = SN(key, sizeof key);
		c.value = S("v");
		break;
	}
	case 9: /* maximum id and address lengths */
	{
		static char id[COMMAND_MAX_ID], addr[COMMAND_MAX_ADDR];
		memset(id, 'n', sizeof id);
		memset(addr, 'a', sizeof addr);
		c.type = COMMAND_MEMBER_SET;
		c.node_id = SN(id, sizeof id);
		c.raft_id = UINT64_MAX;
		c.raft_addr = SN(addr, sizeof addr);
		c.http_addr = SN(addr, sizeof addr);
		break;
	}
	case 10: /* a version 1 put with CAS and idempotency key, as older logs hold it */
		c.version = 1;
		c.type = COMMAND_KV_PUT;
		c.ts_ms = 1700000000999ULL;
		c.idem_ttl_s = COMMAND_V1_IDEM_TTL_S; /* what decoding a version 1 entry gives */
		c.idem_max = COMMAND_V1_IDEM_MAX;
		c.idem_key = S("old-req");
		c.has_cas = true;
		c.cas = 12;
		c.key = S("old/key");
		c.value = S("old value");
		break;
	case 11: /* a version 1 delete */
		c.version = 1;
		c.type = COMMAND_KV_DELETE;
		c.ts_ms = 3;
		c.idem_ttl_s = COMMAND_V1_IDEM_TTL_S;
		c.idem_max = COMMAND_V1_IDEM_MAX;
		c.key = S("gone");
		break;
	case 13: /* a follower's re-send of a forwarded delete */
		c.type = COMMAND_KV_DELETE;
		c.ts_ms = 11;
		c.idem_ttl_s = 60;
		c.idem_max = 100;
		c.idem_key =
		    S("0000018bcfe56800.0123456789abcdef0123456789abcdef.000000000000002a");
		c.idem_internal = true;
		c.resent = true;
		c.key = S("gone");
		break;
	case 12: /* a version 1 member change */
		c.version = 1;
		c.type = COMMAND_MEMBER_SET;
		c.node_id = S("node-9");
		c.raft_id = 9;
		c.raft_addr = S("10.0.0.9:7000");
		c.http_addr = S("10.0.0.9:8080");
		break;
	case 14: /* member record with its data dir's incarnation */
		c.type = COMMAND_MEMBER_PUT;
		c.node_id = S("node-2");
		c.raft_id = 42;
		c.raft_addr = S("10.0.0.2:7000");
		c.http_addr = S("10.0.0.2:8080");
		c.incarnation = S("0123456789abcdef0123456789abcdef");
		break;
	case 15: /* ... and one from a node that did not send its incarnation */
		c.type = COMMAND_MEMBER_PUT;
		c.node_id = S("n3");
		c.raft_id = 3;
		c.raft_addr = S("10.0.0.3:7000");
		c.http_addr = S("h:1");
		c.incarnation = S("");
		break;
	case 16:
		c.type = COMMAND_CLUSTER_SET;
		c.cluster_id = S("fedcba9876543210fedcba9876543210");
		break;
	case 17: /* a domain op with an idempotency key */
		c.type = COMMAND_DOMAIN;
		c.ts_ms = 1700000000999ULL;
		c.idem_ttl_s = 600;
		c.idem_max = 1000;
		c.idem_key = S("wl-1");
		c.value = S("{\"op\":\"workload.scale\",\"key\":\"default/web\",\"replicas\":3}");
		break;
	}
	return c;
}
#define N_SAMPLES 18

static void test_round_trip(void)
{
	for (int i = 0; i < N_SAMPLES; i++) {
		struct command in = sample(i), out;
		struct buf b;
		void *copy;
		buf_init(&b);
		command_encode(&in, &b);
		CHECK(b.len >= 2);
		CHECK_EQ_INT((uint8_t)b.data[0], in.version ? in.version : COMMAND_VERSION);
		CHECK_EQ_INT((uint8_t)b.data[1], in.type);
		int rv = decode_copy(&out, b.data, b.len, &copy);
		if (rv != 0 || !same_command(&in, &out))
			fprintf(stderr, "round trip of sample %d failed\n", i);
		CHECK_EQ_INT(rv, 0);
		CHECK(same_command(&in, &out));
		CHECK_EQ_INT(out.version, in.version ? in.version : COMMAND_VERSION);
		/* Canonical: the decoded command encodes to the same bytes, version included. */
		struct buf again;
		buf_init(&again);
		command_encode(&out, &again);
		CHECK(again.len == b.len && memcmp(again.data, b.data, b.len) == 0);
		buf_close(&again);
		/* Decoded strings point into the input, not at the caller's originals. */
		if (rv == 0 && out.type <= COMMAND_KV_DELETE)
			CHECK(out.key.p >= (char *)copy && out.key.p < (char *)copy + b.len);
		free(copy);
		buf_close(&b);
	}

	/* Spot-check the wire layout of a small put against the format in command.h. */
	struct command c;
	memset(&c, 0, sizeof c);
	c.type = COMMAND_KV_PUT;
	c.ts_ms = 0x0102;
	c.idem_ttl_s = 0x0304;
	c.idem_max = 0x05060708;
	c.idem_key = S("i");
	c.idem_internal = true;
	c.has_cas = true;
	c.cas = 3;
	c.key = S("k");
	c.value = S("vv");
	struct buf b;
	buf_init(&b);
	command_encode(&c, &b);
	static const uint8_t want[] = {2, 1, 0, 0, 0, 0, 0,   0,   1, 2, 0, 0,   3,  4, 5,
	                               6, 7, 8, 0, 0, 0, 1,   'i', 3, 0, 0, 0,   0,  0, 0,
	                               0, 3, 0, 0, 0, 1, 'k', 0,   0, 0, 2, 'v', 'v'};
	CHECK_EQ_INT(b.len, sizeof want);
	CHECK(b.len == sizeof want && memcmp(b.data, want, sizeof want) == 0);
	buf_close(&b);
}

/* Version 1, byte for byte as older nodes wrote it (the layout before the limits): it still
 * decodes, with the fixed default limits whatever the flags, and no internal key. */
static void test_version1(void)
{
	static const uint8_t v1[] = {1, 1, 0, 0, 0, 0, 0, 0, 1, 2, 0,   0, 0, 1, 'i', 1,   0,  0,
	                             0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 'k', 0, 0, 0, 2,   'v', 'v'};
	struct command c;
	void *copy;
	CHECK_EQ_INT(decode_copy(&c, v1, sizeof v1, &copy), 0);
	CHECK_EQ_INT(c.version, 1);
	CHECK_EQ_INT(c.type, COMMAND_KV_PUT);
	CHECK_EQ_INT(c.ts_ms, 0x0102);
	CHECK_EQ_INT(c.idem_ttl_s, COMMAND_V1_IDEM_TTL_S);
	CHECK_EQ_INT(c.idem_ttl_s, 86400);
	CHECK_EQ_INT(c.idem_max, COMMAND_V1_IDEM_MAX);
	CHECK_EQ_INT(c.idem_max, 100000);
	CHECK(str_eq(c.idem_key, S("i")));
	CHECK(!c.idem_internal);
	CHECK(c.has_cas);
	CHECK_EQ_INT(c.cas, 3);
	CHECK(str_eq(c.key, S("k")));
	CHECK(str_eq(c.value, S("vv")));
	struct buf b;
	buf_init(&b);
	command_encode(&c, &b);
	CHECK(b.len == sizeof v1 && memcmp(b.data, v1, sizeof v1) == 0);
	free(copy);
	/* Every prefix is refused, padding is accepted as in version 2. */
	for (size_t len = 0; len < sizeof v1; len++)
		CHECK_EQ_INT(decode_n(v1, len), -1);
	buf_append(&b, "\0\0\0\0\0", 5);
	CHECK_EQ_INT(decode_n(b.data, b.len), 0);
	/* Version 1 has no internal keys: its flag byte is has_cas, 0 or 1. */
	memcpy(b.data, v1, sizeof v1);
	b.data[15] = 2;
	CHECK_EQ_INT(decode_n(b.data, sizeof v1), -1);
	b.data[15] = 3;
	CHECK_EQ_INT(decode_n(b.data, sizeof v1), -1);
	/* A version 1 delete and member commands, as older nodes wrote them. */
	static const uint8_t v1del[] = {1, 2,                    /* version, type */
	                                0, 0, 0, 0, 0,  0, 0, 9, /* ts_ms */
	                                0, 0, 0, 0,              /* idem_key: none */
	                                0,                       /* has_cas */
	                                0, 0, 0, 0, 0,  0, 0, 0, /* cas */
	                                0, 0, 0, 1, 'g'};        /* key */
	CHECK_EQ_INT(decode_copy(&c, v1del, sizeof v1del, &copy), 0);
	CHECK(c.version == 1 && c.type == COMMAND_KV_DELETE && c.ts_ms == 9 && !c.has_cas);
	CHECK(c.idem_ttl_s == COMMAND_V1_IDEM_TTL_S && c.idem_max == COMMAND_V1_IDEM_MAX);
	CHECK(str_eq(c.key, S("g")) && c.idem_key.len == 0);
	free(copy);
	static const uint8_t v1mdel[] = {1, 4, 0, 0, 0, 2, 'n', '1'};
	CHECK_EQ_INT(decode_copy(&c, v1mdel, sizeof v1mdel, &copy), 0);
	CHECK(c.version == 1 && c.type == COMMAND_MEMBER_DEL && str_eq(c.node_id, S("n1")));
	free(copy);
	buf_close(&b);
}

static void test_padding(void)
{
	for (int i = 0; i < N_SAMPLES; i++) {
		struct command in = sample(i);
		struct buf b;
		buf_init(&b);
		command_encode(&in, &b);
		size_t n = b.len;
		static const uint8_t zeros[16] = {0};
		buf_append(&b, zeros, sizeof zeros);
		for (size_t pad = 0; pad <= 7; pad++) {
			struct command out;
			void *copy;
			int rv = decode_copy(&out, b.data, n + pad, &copy);
			CHECK_EQ_INT(rv, 0);
			CHECK(rv == 0 && same_command(&in, &out));
			free(copy);
		}
		/* Eight or more trailing bytes mean a format disagreement. */
		CHECK_EQ_INT(decode_n(b.data, n + 8), -1);
		CHECK_EQ_INT(decode_n(b.data, n + 15), -1);
		/* The padding the raft layer would add (to a multiple of 8) is accepted. */
		CHECK_EQ_INT(decode_n(b.data, (n + 7) & ~(size_t)7), 0);
		/* Any non-zero byte in the padding is refused, wherever it is. */
		for (size_t pad = 1; pad <= 7; pad++) {
			for (size_t at = 0; at < pad; at++) {
				b.data[n + at] = 1;
				CHECK_EQ_INT(decode_n(b.data, n + pad), -1);
				b.data[n + at] = 0;
			}
		}
		buf_close(&b);
	}
}

static void test_truncation(void)
{
	for (int i = 0; i < N_SAMPLES; i++) {
		struct command in = sample(i);
		struct buf b;
		buf_init(&b);
		command_encode(&in, &b);
		int accepted = 0;
		for (size_t len = 0; len < b.len; len++) {
			if (decode_n(b.data, len) != -1) {
				fprintf(stderr, "sample %d: prefix of %zu/%zu bytes decoded\n", i,
				        len, b.len);
				accepted++;
			}
		}
		CHECK_EQ_INT(accepted, 0);
		CHECK_EQ_INT(decode_n(b.data, b.len), 0);
		buf_close(&b);
	}
	CHECK_EQ_INT(command_decode(&(struct command){0}, NULL, 0), -1);
}

static void test_bad_header(void)
{
	struct command in = sample(1);
	struct buf b;
	buf_init(&b);
	command_encode(&in, &b);
	for (int v = 0; v < 256; v++) {
		if (v == COMMAND_VERSION || v == 1) /* version 1: test_version1 */
			continue;
		b.data[0] = (char)v;
		CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	}
	b.data[0] = COMMAND_VERSION;
	for (int t = 0; t < 256; t++) {
		if (t >= COMMAND_KV_PUT && t <= COMMAND_DOMAIN)
			continue;
		b.data[1] = (char)t;
		CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	}
	b.data[1] = COMMAND_KV_PUT;
	CHECK_EQ_INT(decode_n(b.data, b.len), 0);
	/* A type byte from another command makes the rest unparseable or mis-sized. */
	b.data[1] = COMMAND_MEMBER_DEL;
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	b.data[1] = COMMAND_KV_DELETE; /* the value would be trailing garbage */
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	buf_close(&b);
}

/* Hand-built encodings with field values the encoder would happily write but the decoder
 * must refuse. */
static void put_str(struct buf *b, const char *p, size_t n)
{
	buf_put_u32(b, (uint32_t)n);
	buf_append(b, p, n);
}

/* A kv command of `version` (version 2: with the given limits). */
struct kv_shape {
	uint8_t version;
	uint32_t ttl_s, max;
	const char *idem; /* idem_len bytes of it; NULL: 'x's */
	size_t idem_len;
	uint8_t flags; /* version 1: has_cas */
	size_t key_len;
};

static void build_kv_shape(struct buf *b, uint8_t type, struct kv_shape k)
{
	static char big[COMMAND_MAX_KEY + 2];
	memset(big, 'x', sizeof big);
	buf_reset(b);
	buf_put_u8(b, k.version);
	buf_put_u8(b, type);
	buf_put_u64(b, 1);
	if (k.version == 2) {
		buf_put_u32(b, k.ttl_s);
		buf_put_u32(b, k.max);
	}
	put_str(b, k.idem ? k.idem : big, k.idem_len);
	buf_put_u8(b, k.flags);
	buf_put_u64(b, 0);
	put_str(b, big, k.key_len);
	if (type == COMMAND_KV_PUT)
		put_str(b, "v", 1);
}

static void build_kv(struct buf *b, uint8_t version, uint8_t type, size_t idem_len, uint8_t flags,
                     size_t key_len)
{
	build_kv_shape(b, type,
	               (struct kv_shape){.version = version,
	                                 .ttl_s = 60,
	                                 .max = 10,
	                                 .idem_len = idem_len,
	                                 .flags = flags,
	                                 .key_len = key_len});
}

static void build_member(struct buf *b, size_t id_len, uint64_t raft_id, size_t addr_len)
{
	static char big[COMMAND_MAX_ADDR + 2];
	memset(big, 'a', sizeof big);
	buf_reset(b);
	buf_put_u8(b, COMMAND_VERSION);
	buf_put_u8(b, COMMAND_MEMBER_SET);
	put_str(b, big, id_len);
	buf_put_u64(b, raft_id);
	put_str(b, big, addr_len);
	put_str(b, big, 1);
}

static void test_limits(void)
{
	struct buf b;
	buf_init(&b);
	for (uint8_t v = 1; v <= 2; v++) {
		for (uint8_t type = COMMAND_KV_PUT; type <= COMMAND_KV_DELETE; type++) {
			build_kv(&b, v, type, 0, 0, 1);
			CHECK_EQ_INT(decode_n(b.data, b.len), 0); /* the baseline is valid */
			build_kv(&b, v, type, COMMAND_MAX_IDEM, 1, COMMAND_MAX_KEY);
			CHECK_EQ_INT(decode_n(b.data, b.len), 0);
			build_kv(&b, v, type, COMMAND_MAX_IDEM + 1, 0, 1);
			CHECK_EQ_INT(decode_n(b.data, b.len), -1);
			build_kv(&b, v, type, 0, 0, COMMAND_MAX_KEY + 1);
			CHECK_EQ_INT(decode_n(b.data, b.len), -1);
			build_kv(&b, v, type, 0, 0, 0); /* empty key */
			CHECK_EQ_INT(decode_n(b.data, b.len), -1);
			build_kv(&b, v, type, 0, 8, 1); /* no such flag */
			CHECK_EQ_INT(decode_n(b.data, b.len), -1);
			build_kv(&b, v, type, 0, 0xff, 1);
			CHECK_EQ_INT(decode_n(b.data, b.len), -1);
			/* An idempotency key is visible ASCII (the fsm relies on it, fsm.c). */
			static const char *const bad_keys[] = {"a b",   "a\x01",   "\x01internal",
			                                       "tab\t", "del\x7f", "\xc3\xa9"};
			for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
				build_kv_shape(&b, type,
				               (struct kv_shape){.version = v,
				                                 .ttl_s = 60,
				                                 .max = 10,
				                                 .idem = bad_keys[i],
				                                 .idem_len = strlen(bad_keys[i]),
				                                 .key_len = 1});
				CHECK_EQ_INT(decode_n(b.data, b.len), -1);
			}
			build_kv_shape(&b, type,
			               (struct kv_shape){.version = v,
			                                 .ttl_s = 60,
			                                 .max = 10,
			                                 .idem = "!~",
			                                 .idem_len = 2,
			                                 .key_len = 1});
			CHECK_EQ_INT(decode_n(b.data, b.len), 0);
		}
	}
	/* Version 2 only: limits of at least 1, and an internal key is a key. */
	for (uint8_t type = COMMAND_KV_PUT; type <= COMMAND_KV_DELETE; type++) {
		struct kv_shape k = {.version = 2, .ttl_s = 1, .max = 1, .key_len = 1};
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), 0);
		k.ttl_s = 0;
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), -1);
		k.ttl_s = 1;
		k.max = 0;
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), -1);
		k.max = 1;
		k.flags = 2; /* internal, but no key */
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), -1);
		k.idem = "abc.1";
		k.idem_len = 5;
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), 0);
		k.flags = 3; /* internal key and CAS */
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), 0);
		k.flags = 6; /* a re-sent internal key */
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), 0);
		k.flags = 7;
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), 0);
		k.flags = 4; /* re-sent means nothing without an internal key */
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), -1);
		k.flags = 5;
		build_kv_shape(&b, type, k);
		CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	}

	build_member(&b, 1, 1, 0);
	CHECK_EQ_INT(decode_n(b.data, b.len), 0);
	build_member(&b, COMMAND_MAX_ID, 1, COMMAND_MAX_ADDR);
	CHECK_EQ_INT(decode_n(b.data, b.len), 0);
	build_member(&b, COMMAND_MAX_ID + 1, 1, 1);
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	build_member(&b, 0, 1, 1); /* empty node id */
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	build_member(&b, 1, 0, 1); /* raft id 0 is not an id */
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	build_member(&b, 1, 1, COMMAND_MAX_ADDR + 1);
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);

	/* A member delete with an oversized or empty id. */
	static char id[COMMAND_MAX_ID + 1];
	memset(id, 'n', sizeof id);
	buf_reset(&b);
	buf_put_u8(&b, COMMAND_VERSION);
	buf_put_u8(&b, COMMAND_MEMBER_DEL);
	put_str(&b, id, COMMAND_MAX_ID + 1);
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	buf_reset(&b);
	buf_put_u8(&b, COMMAND_VERSION);
	buf_put_u8(&b, COMMAND_MEMBER_DEL);
	put_str(&b, id, COMMAND_MAX_ID);
	CHECK_EQ_INT(decode_n(b.data, b.len), 0);
	buf_reset(&b);
	buf_put_u8(&b, COMMAND_VERSION);
	buf_put_u8(&b, COMMAND_MEMBER_DEL);
	put_str(&b, id, 0);
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);

	/* A value length prefix larger than the entry (the value has no size cap, so only the
	 * bounds check stands between it and an overread). */
	buf_reset(&b);
	buf_put_u8(&b, COMMAND_VERSION);
	buf_put_u8(&b, COMMAND_KV_PUT);
	buf_put_u64(&b, 1);
	buf_put_u32(&b, 60);
	buf_put_u32(&b, 10);
	put_str(&b, "", 0);
	buf_put_u8(&b, 0);
	buf_put_u64(&b, 0);
	put_str(&b, "k", 1);
	buf_put_u32(&b, UINT32_MAX);
	buf_append(&b, "abc", 3);
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	b.len -= 7;
	buf_put_u32(&b, 4); /* one byte short */
	buf_append(&b, "abc", 3);
	CHECK_EQ_INT(decode_n(b.data, b.len), -1);
	buf_close(&b);
}

static void test_fingerprint(void)
{
	struct command a = sample(1), b = sample(1);
	uint64_t fa = command_fingerprint(&a);
	CHECK(fa == command_fingerprint(&b));

	/* Timestamp, limits and idempotency key (of either kind) are not part of "the same
	 * request", nor is the format version. */
	b.ts_ms = 42;
	b.idem_key = S("another-key");
	b.idem_internal = true;
	b.resent = true;
	b.idem_ttl_s = 1;
	b.idem_max = 2;
	b.version = 1;
	CHECK(fa == command_fingerprint(&b));

	/* Everything else is. */
	b = sample(1);
	b.value = S("other");
	CHECK(fa != command_fingerprint(&b));
	b = sample(1);
	b.value = SN(BIN_VALUE, BIN_VALUE_LEN - 1); /* a prefix of the value */
	CHECK(fa != command_fingerprint(&b));
	b = sample(1);
	b.key = S("k");
	CHECK(fa != command_fingerprint(&b));
	b = sample(1);
	b.cas = a.cas + 1;
	CHECK(fa != command_fingerprint(&b));
	b = sample(1);
	b.has_cas = false;
	CHECK(fa != command_fingerprint(&b));
	b = sample(1);
	b.type = COMMAND_KV_DELETE;
	CHECK(fa != command_fingerprint(&b));

	/* Key and value boundaries matter: ("ab","c") differs from ("a","bc"). */
	struct command x, y;
	memset(&x, 0, sizeof x);
	x.type = COMMAND_KV_PUT;
	y = x;
	x.key = S("ab");
	x.value = S("c");
	y.key = S("a");
	y.value = S("bc");
	CHECK(command_fingerprint(&x) != command_fingerprint(&y));

	/* The fingerprint survives an encode/decode round trip. */
	struct buf e;
	struct command d;
	buf_init(&e);
	command_encode(&a, &e);
	CHECK_EQ_INT(command_decode(&d, e.data, e.len), 0);
	CHECK(command_fingerprint(&d) == fa);
	buf_close(&e);

	/* command_hash is FNV-1a 64 (known vectors). */
	CHECK(command_hash(COMMAND_HASH_INIT, "", 0) == 0xcbf29ce484222325ULL);
	CHECK(command_hash(COMMAND_HASH_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
	CHECK(command_hash(COMMAND_HASH_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
	/* Chaining equals hashing the concatenation. */
	CHECK(command_hash(command_hash(COMMAND_HASH_INIT, "foo", 3), "bar", 3) ==
	      command_hash(COMMAND_HASH_INIT, "foobar", 6));
}

int main(void)
{
	test_round_trip();
	test_version1();
	test_padding();
	test_truncation();
	test_bad_header();
	test_limits();
	test_fingerprint();
	TEST_DONE();
}
