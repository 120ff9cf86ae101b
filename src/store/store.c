/* store: thin ownership-safe wrapper over the RocksDB C API (see store.h). */
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"

int store_open(struct store *s, const char *path, char *err, size_t errlen)
{
	char *rerr = NULL;
	memset(s, 0, sizeof *s);
	s->options = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(s->options, 1);
	/* Small control-plane state: keep the memory footprint lean rather than tuning for
	 * bulk ingest. */
	rocksdb_options_set_max_background_jobs(s->options, 2);
	rocksdb_options_set_write_buffer_size(s->options, 8 << 20);
	rocksdb_options_set_max_open_files(s->options, 256);
	rocksdb_options_set_keep_log_file_num(s->options, 2);
	/* A bloom filter (10 bits per key, ~1% false positives) in every table file. Each write's
	 * apply first reads the key's current record (create index, version), and a write of a
	 * new key is a miss; without a filter a miss probes the index and a data block of every
	 * L0 file and level: 9% of the leader's CPU under write load with 250k keys. The table
	 * options are copied into the factory; the filter policy is owned by them. */
	rocksdb_block_based_table_options_t *bbo = rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_filter_policy(bbo,
	                                              rocksdb_filterpolicy_create_bloom_full(10));
	rocksdb_options_set_block_based_table_factory(s->options, bbo);
	rocksdb_block_based_options_destroy(bbo);
	/* Header level: RocksDB's own LOG file (in the data dir) gets the options dump at open
	 * and nothing after. On a full disk its logger fails one append and then aborts the
	 * process on the next one (assertion in WritableFileWriter, Debian's RocksDB 7.8 keeps
	 * assertions), and a failing flush is exactly what makes it log; errors that matter reach
	 * us as failed writes, which we log. */
	rocksdb_options_set_info_log_level(s->options, 5 /* HEADER */);
	/* Every applied entry is one WriteBatch; with RocksDB's default each one is a write()
	 * of its WAL record, a syscall per entry on every node. The WAL need not reach the file
	 * per entry: raft's log is the durable record, and the applied index travels in the same
	 * batch, so a WAL tail lost in a crash is re-applied from the raft log on restart. The
	 * fsm flushes once per loop iteration instead (fsm_flush, driven by node.c). */
	rocksdb_options_set_manual_wal_flush(s->options, 1);
	/* Every write's apply first looks its key up; a new key is in no memtable, and the
	 * skiplist search to find that out was a large part of a follower's apply. A whole-key
	 * bloom filter over each memtable (2% of the write buffer) answers most misses. */
	rocksdb_options_set_memtable_prefix_bloom_size_ratio(s->options, 0.02);
	rocksdb_options_set_memtable_whole_key_filtering(s->options, 1);
	/* RocksDB's per-thread perf counters (on by default) cost a thread-local lookup in every
	 * Get and Write, 3-5% of a follower's CPU; nothing reads them. This applies to the
	 * calling thread, the loop thread that does every read and apply. */
	rocksdb_set_perf_level(rocksdb_disable);
	s->db = rocksdb_open(s->options, path, &rerr);
	if (s->db == NULL) {
		snprintf(err, errlen, "cannot open RocksDB at %s: %s", path, rerr ? rerr : "?");
		rocksdb_free(rerr);
		rocksdb_options_destroy(s->options);
		s->options = NULL;
		return -1;
	}
	s->wopts = rocksdb_writeoptions_create();
	s->wopts_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(s->wopts_sync, 1);
	s->ropts = rocksdb_readoptions_create();
	s->path = strdup(path);
	return 0;
}

void store_close(struct store *s)
{
	char err[256];
	if (s->db == NULL)
		return;
	if (store_flush_wal(s, err, sizeof err) != 0)
		log_error("RocksDB WAL flush at close failed", "error=\"%s\"", err);
	rocksdb_close(s->db);
	rocksdb_writeoptions_destroy(s->wopts);
	rocksdb_writeoptions_destroy(s->wopts_sync);
	rocksdb_readoptions_destroy(s->ropts);
	rocksdb_options_destroy(s->options);
	free(s->path);
	memset(s, 0, sizeof *s);
}

void store_set_fault_hook(struct store *s, store_fault_fn fn, void *arg)
{
	s->fault = fn;
	s->fault_arg = arg;
}

static bool injected(struct store *s, enum store_fault_op op, const void *key, size_t klen)
{
	return s->fault != NULL && s->fault(s->fault_arg, op, key, klen) != 0;
}

int store_get(struct store *s, const void *key, size_t klen, char **val, size_t *vlen)
{
	char *rerr = NULL;
	size_t len = 0;
	if (injected(s, STORE_FAULT_GET, key, klen)) {
		log_error("RocksDB read failed", "path=%s error=\"injected fault\"", s->path);
		return -1;
	}
	char *v = rocksdb_get(s->db, s->ropts, key, klen, &len, &rerr);
	if (rerr != NULL) {
		log_error("RocksDB read failed", "path=%s error=\"%s\"", s->path, rerr);
		rocksdb_free(rerr);
		return -1;
	}
	if (v == NULL)
		return 1;
	/* Hand out memory from our own allocator so callers just free() it. */
	*val = malloc(len + 1);
	if (*val == NULL) {
		rocksdb_free(v);
		return -1;
	}
	memcpy(*val, v, len);
	(*val)[len] = '\0';
	*vlen = len;
	rocksdb_free(v);
	return 0;
}

void store_batch_init(struct store_batch *b)
{
	b->wb = rocksdb_writebatch_create();
}

void store_batch_close(struct store_batch *b)
{
	if (b->wb != NULL)
		rocksdb_writebatch_destroy(b->wb);
	b->wb = NULL;
}

void store_batch_put(struct store_batch *b, const void *k, size_t kl, const void *v, size_t vl)
{
	rocksdb_writebatch_put(b->wb, k, kl, v, vl);
}

void store_batch_delete(struct store_batch *b, const void *k, size_t kl)
{
	rocksdb_writebatch_delete(b->wb, k, kl);
}

void store_batch_delete_all(struct store_batch *b)
{
	/* Every key we write starts with a printable namespace byte, so [0x00, 0xff 0xff...) covers
	 * the whole keyspace. */
	static const char lo[1] = {0};
	static const char hi[8] = {'\xff', '\xff', '\xff', '\xff', '\xff', '\xff', '\xff', '\xff'};
	rocksdb_writebatch_delete_range(b->wb, lo, 0, hi, sizeof hi);
	(void)lo;
}

int store_write(struct store *s, struct store_batch *b, bool sync, char *err, size_t errlen)
{
	char *rerr = NULL;
	rocksdb_write(s->db, sync ? s->wopts_sync : s->wopts, b->wb, &rerr);
	if (rerr != NULL) {
		snprintf(err, errlen, "RocksDB write to %s failed: %s", s->path, rerr);
		rocksdb_free(rerr);
		return -1;
	}
	/* A sync write flushes the buffer before its fsync. */
	s->wal_unflushed = !sync;
	return 0;
}

int store_flush_wal(struct store *s, char *err, size_t errlen)
{
	char *rerr = NULL;
	if (!s->wal_unflushed)
		return 0;
	rocksdb_flush_wal(s->db, 0, &rerr);
	if (rerr != NULL) {
		snprintf(err, errlen, "RocksDB WAL flush in %s failed: %s", s->path, rerr);
		rocksdb_free(rerr);
		return -1;
	}
	s->wal_unflushed = false;
	return 0;
}

void store_snap_take(struct store_snap *snap, struct store *s)
{
	snap->store = s;
	snap->snap = rocksdb_create_snapshot(s->db);
	snap->ropts = rocksdb_readoptions_create();
	rocksdb_readoptions_set_snapshot(snap->ropts, snap->snap);
	/* A pinned view is read once, front to back (the raft snapshot image): its blocks would
	 * only push the ones live reads and applies use out of the block cache. */
	rocksdb_readoptions_set_fill_cache(snap->ropts, 0);
	rocksdb_readoptions_set_readahead_size(snap->ropts, 2 << 20);
}

void store_snap_release(struct store_snap *snap)
{
	if (snap->snap == NULL)
		return;
	rocksdb_readoptions_destroy(snap->ropts);
	rocksdb_release_snapshot(snap->store->db, snap->snap);
	snap->snap = NULL;
	snap->ropts = NULL;
}

void store_iter_init(struct store_iter *it, struct store *s, const struct store_snap *snap,
                     const void *prefix, size_t plen, const void *start, size_t slen)
{
	it->ropts = NULL;
	it->failed = injected(s, STORE_FAULT_ITER, prefix, plen);
	it->it = rocksdb_create_iterator(s->db, snap != NULL ? snap->ropts : s->ropts);
	it->prefix = malloc(plen + 1);
	memcpy(it->prefix, prefix, plen);
	it->prefix_len = plen;
	if (start != NULL && slen > 0)
		rocksdb_iter_seek(it->it, start, slen);
	else if (plen > 0)
		rocksdb_iter_seek(it->it, prefix, plen);
	else
		rocksdb_iter_seek_to_first(it->it);
}

bool store_iter_valid(struct store_iter *it)
{
	if (it->failed || !rocksdb_iter_valid(it->it))
		return false;
	size_t kl;
	const char *k = rocksdb_iter_key(it->it, &kl);
	return kl >= it->prefix_len && memcmp(k, it->prefix, it->prefix_len) == 0;
}

void store_iter_next(struct store_iter *it)
{
	rocksdb_iter_next(it->it);
}

const char *store_iter_key(struct store_iter *it, size_t *len)
{
	return rocksdb_iter_key(it->it, len);
}

const char *store_iter_value(struct store_iter *it, size_t *len)
{
	return rocksdb_iter_value(it->it, len);
}

int store_iter_close(struct store_iter *it)
{
	char *rerr = NULL;
	int rv = 0;
	rocksdb_iter_get_error(it->it, &rerr);
	if (rerr != NULL || it->failed) {
		log_error("RocksDB iteration failed", "error=\"%s\"",
		          rerr != NULL ? rerr : "injected fault");
		rocksdb_free(rerr);
		rv = -1;
	}
	rocksdb_iter_destroy(it->it);
	if (it->ropts != NULL)
		rocksdb_readoptions_destroy(it->ropts);
	free(it->prefix);
	return rv;
}
