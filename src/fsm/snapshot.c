/* snapshot: the raft snapshot image of the store, and restoring one.
 *
 * Image layout (big-endian):
 *   "CLSNAP01" | u64 index | u64 count | count x (u32 klen | key | u32 vlen | value) | u64 fnv
 * The trailing FNV-1a hash covers every byte before it. Restore parses and checks the whole
 * image first and only then replaces the store in a single WriteBatch (delete everything,
 * put everything, set m/applied), so a torn or hostile image never leaves a half state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/domain.h"
#include "fsm/fsm.h"
#include "log/log.h"

static const char MAGIC[8] = {'C', 'L', 'S', 'N', 'A', 'P', '0', '1'};

int fsm_snapshot_write(const struct store_snap *snap, uint64_t index, struct buf *out)
{
	struct store_iter it;
	uint64_t count = 0;
	buf_append(out, MAGIC, sizeof MAGIC);
	buf_put_u64(out, index);
	size_t count_at = out->len;
	buf_put_u64(out, 0);
	store_iter_init(&it, snap->store, snap, "", 0, NULL, 0);
	for (; store_iter_valid(&it); store_iter_next(&it)) {
		size_t kl, vl;
		const char *k = store_iter_key(&it, &kl);
		/* The applied index travels in the header; everything else is copied verbatim. */
		if (kl == 9 && memcmp(k, "m/applied", 9) == 0)
			continue;
		const char *v = store_iter_value(&it, &vl);
		buf_put_u32(out, (uint32_t)kl);
		buf_append(out, k, kl);
		buf_put_u32(out, (uint32_t)vl);
		buf_append(out, v, vl);
		count++;
	}
	store_iter_close(&it);
	for (int i = 0; i < 8; i++)
		((uint8_t *)out->data)[count_at + i] = (uint8_t)(count >> (56 - 8 * i));
	buf_put_u64(out, command_hash(COMMAND_HASH_INIT, out->data, out->len));
	return 0;
}

/* Walks the records; with a batch, also stages them. -1 on any inconsistency. */
static int walk_records(struct buf_reader *r, uint64_t count, struct store_batch *b)
{
	for (uint64_t i = 0; i < count; i++) {
		uint32_t kl, vl;
		const uint8_t *k, *v;
		if (buf_get_u32(r, &kl) != 0 || kl == 0 || buf_get_bytes(r, kl, &k) != 0 ||
		    buf_get_u32(r, &vl) != 0 || buf_get_bytes(r, vl, &v) != 0)
			return -1;
		/* Every key we write starts with a printable namespace byte, and that is all
		 * store_batch_delete_all covers: a key outside it (0xff...) would survive every
		 * later restore and make this replica's state differ from its leader's. */
		if (k[0] < 0x21 || k[0] > 0x7e)
			return -1;
		if (b != NULL)
			store_batch_put(b, k, kl, v, vl);
	}
	return 0;
}

int fsm_snapshot_restore(struct fsm *f, const void *data, size_t len, char *err, size_t errlen)
{
	struct buf_reader r;
	const uint8_t *magic;
	uint64_t index, count, sum;
	if (len < sizeof MAGIC + 24) {
		snprintf(err, errlen, "snapshot image too short (%zu bytes)", len);
		return -1;
	}
	buf_reader_init(&r, (const uint8_t *)data + len - 8, 8);
	buf_get_u64(&r, &sum);
	if (sum != command_hash(COMMAND_HASH_INIT, data, len - 8)) {
		snprintf(err, errlen, "snapshot image checksum mismatch");
		return -1;
	}
	buf_reader_init(&r, data, len - 8);
	if (buf_get_bytes(&r, sizeof MAGIC, &magic) != 0 || memcmp(magic, MAGIC, sizeof MAGIC) ||
	    buf_get_u64(&r, &index) != 0 || buf_get_u64(&r, &count) != 0) {
		snprintf(err, errlen, "snapshot image has a bad header");
		return -1;
	}
	struct buf_reader body = r;
	if (walk_records(&r, count, NULL) != 0 || r.left != 0) {
		snprintf(err, errlen, "snapshot image records are malformed");
		return -1;
	}
	if (index <= f->applied_index) {
		/* Start-up: raft hands us its latest snapshot, but RocksDB already holds a newer
		 * state; the entries after the snapshot up to applied_index will be skipped. */
		log_info("Snapshot restore skipped", "snapshot_index=%llu applied_index=%llu",
		         (unsigned long long)index, (unsigned long long)f->applied_index);
		return 0;
	}
	struct store_batch b;
	store_batch_init(&b);
	store_batch_delete_all(&b);
	walk_records(&body, count, &b);
	uint8_t raw[8];
	for (int i = 0; i < 8; i++)
		raw[i] = (uint8_t)(index >> (56 - 8 * i));
	store_batch_put(&b, "m/applied", 9, raw, 8);
	int rv = store_write(&f->store, &b, true, err, errlen);
	store_batch_close(&b);
	if (rv != 0)
		return -1;
	f->applied_index = index;
	f->members_version++;
	/* m/idem_count came in with the image; reload it. */
	char *v;
	size_t vl;
	f->idem_count = 0;
	if (store_get(&f->store, "m/idem_count", 12, &v, &vl) == 0) {
		if (vl == 8)
			for (int i = 0; i < 8; i++)
				f->idem_count = f->idem_count << 8 | (uint8_t)v[i];
		free(v);
	}
	if (dom_rebuild(f) != 0) {
		snprintf(err, errlen, "the restored domain records do not parse");
		return -1;
	}
	f->stats.restores_ok++;
	log_info("Snapshot restored", "index=%llu keys=%llu", (unsigned long long)index,
	         (unsigned long long)count);
	return 0;
}
