/* command: encoder/decoder for raft entry payloads (format in command.h). */
#include "fsm/command.h"

#include <string.h>

static void put_str(struct buf *out, struct command_str s)
{
	buf_put_u32(out, (uint32_t)s.len);
	buf_append(out, s.p, s.len);
}

#define FLAG_CAS      0x01
#define FLAG_INTERNAL 0x02
#define FLAG_RESENT   0x04

/* The idempotency part of a version 2 kv or domain entry. */
static void put_idem_v2(struct buf *out, const struct command *c)
{
	buf_put_u32(out, c->idem_ttl_s);
	buf_put_u32(out, c->idem_max);
	put_str(out, c->idem_key);
	buf_put_u8(out,
	           (uint8_t)((c->has_cas ? FLAG_CAS : 0) | (c->idem_internal ? FLAG_INTERNAL : 0) |
	                     (c->resent ? FLAG_RESENT : 0)));
}

static void put_kv_header(struct buf *out, uint8_t version, const struct command *c)
{
	buf_put_u64(out, c->ts_ms);
	if (version == 1) {
		put_str(out, c->idem_key);
		buf_put_u8(out, c->has_cas ? 1 : 0);
	} else {
		put_idem_v2(out, c);
	}
	buf_put_u64(out, c->cas);
	put_str(out, c->key);
}

void command_encode(const struct command *c, struct buf *out)
{
	uint8_t version = c->version != 0 ? c->version : COMMAND_VERSION;
	buf_put_u8(out, version);
	buf_put_u8(out, (uint8_t)c->type);
	switch (c->type) {
	case COMMAND_KV_PUT:
		put_kv_header(out, version, c);
		put_str(out, c->value);
		break;
	case COMMAND_KV_DELETE:
		put_kv_header(out, version, c);
		break;
	case COMMAND_MEMBER_SET:
	case COMMAND_MEMBER_PUT:
		put_str(out, c->node_id);
		buf_put_u64(out, c->raft_id);
		put_str(out, c->raft_addr);
		put_str(out, c->http_addr);
		if (c->type == COMMAND_MEMBER_PUT)
			put_str(out, c->incarnation);
		break;
	case COMMAND_MEMBER_DEL:
		put_str(out, c->node_id);
		break;
	case COMMAND_CLUSTER_SET:
		put_str(out, c->cluster_id);
		break;
	case COMMAND_DOMAIN:
		buf_put_u64(out, c->ts_ms);
		put_idem_v2(out, c);
		put_str(out, c->value);
		break;
	}
}

static int get_str(struct buf_reader *r, struct command_str *s, size_t max)
{
	return buf_get_str(r, max, &s->p, &s->len);
}

/* Idempotency keys are visible ASCII (what the API accepts): a byte outside that range is
 * free for the fsm to tell internal keys apart with (fsm.c). */
static bool valid_idem_key(struct command_str k)
{
	for (size_t i = 0; i < k.len; i++)
		if ((unsigned char)k.p[i] < 0x21 || (unsigned char)k.p[i] > 0x7e)
			return false;
	return true;
}

/* The idempotency part of a version 2 entry; `cas` allows FLAG_CAS. */
static int get_idem_v2(struct buf_reader *r, struct command *c, bool cas)
{
	uint8_t flags;
	uint8_t allowed = (cas ? FLAG_CAS : 0) | FLAG_INTERNAL | FLAG_RESENT;
	if (buf_get_u32(r, &c->idem_ttl_s) != 0 || c->idem_ttl_s == 0 ||
	    buf_get_u32(r, &c->idem_max) != 0 || c->idem_max == 0 ||
	    get_str(r, &c->idem_key, COMMAND_MAX_IDEM) != 0 || buf_get_u8(r, &flags) != 0 ||
	    (flags & ~allowed) != 0)
		return -1;
	c->has_cas = (flags & FLAG_CAS) != 0;
	c->idem_internal = (flags & FLAG_INTERNAL) != 0;
	c->resent = (flags & FLAG_RESENT) != 0;
	if ((c->idem_internal && c->idem_key.len == 0) || (c->resent && !c->idem_internal) ||
	    !valid_idem_key(c->idem_key))
		return -1;
	return 0;
}

static int get_kv_header(struct buf_reader *r, struct command *c)
{
	uint8_t flags;
	if (buf_get_u64(r, &c->ts_ms) != 0)
		return -1;
	if (c->version == 1) {
		c->idem_ttl_s = COMMAND_V1_IDEM_TTL_S;
		c->idem_max = COMMAND_V1_IDEM_MAX;
		if (get_str(r, &c->idem_key, COMMAND_MAX_IDEM) != 0 || buf_get_u8(r, &flags) != 0 ||
		    flags > FLAG_CAS || !valid_idem_key(c->idem_key))
			return -1;
		c->has_cas = flags == FLAG_CAS;
	} else if (get_idem_v2(r, c, true) != 0) {
		return -1;
	}
	if (buf_get_u64(r, &c->cas) != 0 || get_str(r, &c->key, COMMAND_MAX_KEY) != 0 ||
	    c->key.len == 0)
		return -1;
	return 0;
}

int command_decode(struct command *c, const void *data, size_t len)
{
	struct buf_reader r;
	uint8_t version, type;
	memset(c, 0, sizeof *c);
	buf_reader_init(&r, data, len);
	if (buf_get_u8(&r, &version) != 0 || version < 1 || version > COMMAND_VERSION ||
	    buf_get_u8(&r, &type) != 0)
		return -1;
	c->version = version;
	c->type = type;
	switch (type) {
	case COMMAND_KV_PUT:
		if (get_kv_header(&r, c) != 0 || get_str(&r, &c->value, UINT32_MAX) != 0)
			return -1;
		break;
	case COMMAND_KV_DELETE:
		if (get_kv_header(&r, c) != 0)
			return -1;
		break;
	case COMMAND_MEMBER_SET:
	case COMMAND_MEMBER_PUT:
		if (get_str(&r, &c->node_id, COMMAND_MAX_ID) != 0 || c->node_id.len == 0 ||
		    buf_get_u64(&r, &c->raft_id) != 0 || c->raft_id == 0 ||
		    get_str(&r, &c->raft_addr, COMMAND_MAX_ADDR) != 0 ||
		    get_str(&r, &c->http_addr, COMMAND_MAX_ADDR) != 0)
			return -1;
		if (type == COMMAND_MEMBER_PUT &&
		    get_str(&r, &c->incarnation, COMMAND_MAX_INCARNATION) != 0)
			return -1;
		break;
	case COMMAND_MEMBER_DEL:
		if (get_str(&r, &c->node_id, COMMAND_MAX_ID) != 0 || c->node_id.len == 0)
			return -1;
		break;
	case COMMAND_CLUSTER_SET:
		if (get_str(&r, &c->cluster_id, COMMAND_MAX_INCARNATION) != 0 ||
		    c->cluster_id.len == 0)
			return -1;
		break;
	case COMMAND_DOMAIN:
		if (version < 2 || buf_get_u64(&r, &c->ts_ms) != 0 ||
		    get_idem_v2(&r, c, false) != 0 ||
		    get_str(&r, &c->value, COMMAND_MAX_PAYLOAD) != 0 || c->value.len == 0)
			return -1;
		break;
	default:
		return -1;
	}
	/* Entries are padded with zeros to a multiple of 8 bytes (see node_propose); anything
	 * else trailing means writer and reader disagree on the format: refuse rather than
	 * silently ignore part of a command. */
	if (r.left >= 8)
		return -1;
	for (size_t i = 0; i < r.left; i++)
		if (r.p[i] != 0)
			return -1;
	return 0;
}

uint64_t command_hash(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t hash_str(uint64_t h, struct command_str s)
{
	uint8_t len[4] = {(uint8_t)(s.len >> 24), (uint8_t)(s.len >> 16), (uint8_t)(s.len >> 8),
	                  (uint8_t)s.len};
	h = command_hash(h, len, sizeof len);
	return command_hash(h, s.p, s.len);
}

uint64_t command_fingerprint(const struct command *c)
{
	uint64_t h = COMMAND_HASH_INIT;
	uint8_t head[2] = {(uint8_t)c->type, c->has_cas ? 1 : 0};
	uint8_t cas[8];
	for (int i = 0; i < 8; i++)
		cas[i] = (uint8_t)(c->cas >> (56 - 8 * i));
	h = command_hash(h, head, sizeof head);
	h = command_hash(h, cas, sizeof cas);
	h = hash_str(h, c->key);
	return hash_str(h, c->value);
}
