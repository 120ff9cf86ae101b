/* snapshot: the image of the store at one applied index, and restoring one.
 *
 * The same image is raft's snapshot (InstallSnapshot, fsm.c), a backup (GET /v1/snapshot,
 * api/snapshot_route.c) and what `cloudless-coordinator restore` seeds a new cluster with
 * (raft/offline.c). Layout (big-endian):
 *   "CLSNAP02" | u64 index | u64 count | count x (u32 klen | key | u32 vlen | value) | u64 sum
 * Keys are in byte order, each once. The trailing sum (fsm_snapshot_sum) covers every byte
 * before it. Version 1 images ("CLSNAP01", older backups) are the same with a byte-wise
 * FNV-1a hash as the sum; they are still read, never written: FNV-1a costs one dependent
 * multiply per byte, which made the checksum an eighth of a 100k-key catch-up on both ends
 * (docs/benchmarks.md).
 * Restore parses and checks the whole image first and only then replaces the store in a
 * single WriteBatch (delete everything, put everything, set m/applied), so a torn or hostile
 * image never leaves a half state; fsm_snapshot_check is that check alone, for a file an
 * operator hands us. Writing can compute the state digests of exactly what it wrote, so a
 * backup carries the digests of its own content, not of a store that moved on meanwhile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "fsm/domain.h"
#include "fsm/fsm.h"
#include "log/log.h"

static const char MAGIC[8] = {'C', 'L', 'S', 'N', 'A', 'P', '0', '2'};
static const char MAGIC_V1[8] = {'C', 'L', 'S', 'N', 'A', 'P', '0', '1'};

/* FNV-1a's step a word at a time (little-endian words, then the tail bytes), with a
 * shift-xor so high bits reach the low ones: each step is a bijection of the state, so a
 * change confined to one word always changes the sum. A checksum against torn and corrupt
 * files, not against an adversary (who could as well write a valid image). */
uint64_t fsm_snapshot_sum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = COMMAND_HASH_INIT ^ len;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w = 0;
		for (int b = 7; b >= 0; b--)
			w = w << 8 | p[i + (size_t)b];
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 32;
	}
	for (; i < len; i++) {
		h = (h ^ p[i]) * 0x100000001b3ULL;
		h ^= h >> 32;
	}
	return h;
}

int fsm_snapshot_write(const struct store_snap *snap, uint64_t index, struct buf *out,
                       struct fsm_digest *digest)
{
	struct store_iter it;
	uint64_t count = 0;
	if (digest != NULL)
		fsm_digest_init(digest);
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
		if (digest != NULL)
			fsm_digest_add(digest, k, kl, v, vl);
		count++;
	}
	/* A read error part-way would make a short image that still checks out: fail instead. */
	if (store_iter_close(&it) != 0)
		return -1;
	for (int i = 0; i < 8; i++)
		((uint8_t *)out->data)[count_at + i] = (uint8_t)(count >> (56 - 8 * i));
	buf_put_u64(out, fsm_snapshot_sum(out->data, out->len));
	return 0;
}

/* What the fsm keeps in memory about the idempotency records of an image (see fsm.h): its
 * m/idem_count (0 when it has none) and the oldest age entry (UINT64_MAX: none); the number
 * of internal records, the first (in byte order, whatever the image's order) and its
 * timestamp, and m/idem_internal_floor. Pointers into the image. */
struct image_idem {
	uint64_t count;
	uint64_t oldest_ts;
	uint64_t internal_count;
	const uint8_t *first, *floor;
	size_t first_len, floor_len;
	uint64_t first_ts;
};

static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = al == 0 || bl == 0 ? 0 : memcmp(a, b, al < bl ? al : bl);
	return c != 0 ? c : (al < bl ? -1 : al > bl);
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Walks the records; with a batch, also stages them. -1 on any inconsistency. */
static int walk_records(struct buf_reader *r, uint64_t count, struct store_batch *b,
                        struct image_idem *idem)
{
	const uint8_t *prev = NULL;
	uint32_t prev_len = 0;
	memset(idem, 0, sizeof *idem);
	idem->oldest_ts = UINT64_MAX;
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
		/* In store order, each key once (what fsm_snapshot_write writes): what the fsm
		 * derives from an image (counts, first records) is then what a restart derives
		 * from the store it became. */
		if (prev != NULL && bytes_cmp(k, kl, prev, prev_len) <= 0)
			return -1;
		prev = k;
		prev_len = kl;
		if (b == NULL && !dom_record_valid(k, kl, v, vl))
			return -1;
		if (kl == 12 && memcmp(k, "m/idem_count", 12) == 0 && vl == 8)
			idem->count = get_be64(v);
		if (kl >= 10 && k[0] == 't' && k[1] == '/' && get_be64(k + 2) < idem->oldest_ts)
			idem->oldest_ts = get_be64(k + 2);
		if (kl == 21 && memcmp(k, "m/idem_internal_floor", 21) == 0) {
			idem->floor = v;
			idem->floor_len = vl;
		}
		if (kl >= 2 && k[0] == 'j' && k[1] == '/') {
			if (idem->internal_count++ == 0 ||
			    bytes_cmp(k + 2, kl - 2, idem->first, idem->first_len) < 0) {
				idem->first = k + 2;
				idem->first_len = kl - 2;
				idem->first_ts = vl >= 8 ? get_be64(v) : 0;
			}
		}
		if (b != NULL)
			store_batch_put(b, k, kl, v, vl);
	}
	return 0;
}

/* A whole image checked: its header, and every record walked. */
struct image {
	uint64_t index, count;
	struct buf_reader body; /* the records */
	struct image_idem idem;
};

static int image_parse(const void *data, size_t len, struct image *im, char *err, size_t errlen)
{
	struct buf_reader r;
	const uint8_t *magic;
	uint64_t sum;
	/* The magic first: a file that is not an image at all gets the plainest message. */
	if (len == 0) {
		snprintf(err, errlen, "the snapshot image is empty");
		return -1;
	}
	bool v1 = len >= sizeof MAGIC_V1 && memcmp(data, MAGIC_V1, sizeof MAGIC_V1) == 0;
	if (!v1 && (len < sizeof MAGIC || memcmp(data, MAGIC, sizeof MAGIC) != 0)) {
		snprintf(err, errlen,
		         "not a Cloudless snapshot image (it does not start with %.8s or %.8s)",
		         MAGIC, MAGIC_V1);
		return -1;
	}
	if (len < sizeof MAGIC + 24) {
		snprintf(err, errlen, "snapshot image too short (%zu bytes): truncated", len);
		return -1;
	}
	buf_reader_init(&r, (const uint8_t *)data + len - 8, 8);
	buf_get_u64(&r, &sum);
	if (sum != (v1 ? command_hash(COMMAND_HASH_INIT, data, len - 8)
	               : fsm_snapshot_sum(data, len - 8))) {
		snprintf(err, errlen,
		         "snapshot image checksum mismatch (%zu bytes): the file is corrupt or "
		         "truncated",
		         len);
		return -1;
	}
	buf_reader_init(&r, data, len - 8);
	if (buf_get_bytes(&r, sizeof MAGIC, &magic) != 0 || buf_get_u64(&r, &im->index) != 0 ||
	    buf_get_u64(&r, &im->count) != 0) {
		snprintf(err, errlen, "snapshot image has a bad header");
		return -1;
	}
	im->body = r;
	if (walk_records(&r, im->count, NULL, &im->idem) != 0 || r.left != 0) {
		snprintf(err, errlen, "snapshot image records are malformed");
		return -1;
	}
	return 0;
}

int fsm_snapshot_check(const void *data, size_t len, uint64_t *index, uint64_t *count, char *err,
                       size_t errlen)
{
	struct image im;
	if (image_parse(data, len, &im, err, errlen) != 0)
		return -1;
	*index = im.index;
	*count = im.count;
	return 0;
}

int fsm_snapshot_restore(struct fsm *f, const void *data, size_t len, char *err, size_t errlen)
{
	struct image im;
	uint64_t start_ns = uv_hrtime();
	if (image_parse(data, len, &im, err, errlen) != 0)
		return -1;
	uint64_t index = im.index, count = im.count;
	struct buf_reader body = im.body;
	struct image_idem idem;
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
	walk_records(&body, count, &b, &idem);
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
	/* m/idem_count and the age index came in with the image, which is what the store now
	 * holds: taken from there, nothing is read back (a read error would leave them wrong,
	 * see fsm.c). */
	f->idem_count = idem.count;
	f->idem_oldest_ts = idem.oldest_ts;
	f->internal_count = idem.internal_count;
	f->internal_first_ts = idem.first_ts;
	buf_reset(&f->internal_first);
	buf_append(&f->internal_first, idem.first, idem.first_len);
	buf_reset(&f->internal_floor);
	buf_append(&f->internal_floor, idem.floor, idem.floor_len);
	/* The domain mirror is derived from the records the image installed (checked above:
	 * only a read error gets here). */
	if (dom_rebuild(f) != 0) {
		f->failed = true;
		snprintf(err, errlen, "the restored domain records cannot be read back");
		return -1;
	}
	f->stats.restores_ok++;
	log_info("Snapshot restored", "index=%llu keys=%llu bytes=%zu ms=%.1f",
	         (unsigned long long)index, (unsigned long long)count, len,
	         (double)(uv_hrtime() - start_ns) / 1e6);
	return 0;
}
