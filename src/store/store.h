/* store: the RocksDB database under <data-dir>/db that holds the replicated state.
 *
 * Only the fsm writes here (handlers never do); it applies every raft entry as one WriteBatch
 * that also carries the applied index, so the database is always the state "as of" exactly
 * one log index. Writes are not fsynced: the raft log is the durable record, and after a
 * machine crash raft replays whatever RocksDB lost. Reads may come from any point in time
 * through a store_snap (used to stream raft snapshots off the loop thread). */
#ifndef CLOUDLESS_STORE_STORE_H
#define CLOUDLESS_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include <rocksdb/c.h>

/* Test-only fault injection (store_set_fault_hook). */
enum store_fault_op {
	STORE_FAULT_GET,  /* store_get; key is the key read */
	STORE_FAULT_ITER, /* store_iter_init; key is the prefix */
};
typedef int (*store_fault_fn)(void *arg, enum store_fault_op op, const void *key, size_t klen);

struct store {
	rocksdb_t *db;
	rocksdb_options_t *options;
	rocksdb_writeoptions_t *wopts;
	rocksdb_writeoptions_t *wopts_sync;
	rocksdb_readoptions_t *ropts;
	char *path;
	bool wal_unflushed; /* non-sync writes sit in RocksDB's WAL buffer (store_flush_wal) */
	store_fault_fn fault;
	void *fault_arg;
};

struct store_batch {
	rocksdb_writebatch_t *wb;
};

/* A consistent point-in-time view of the database. */
struct store_snap {
	struct store *store;
	const rocksdb_snapshot_t *snap;
	rocksdb_readoptions_t *ropts;
};

struct store_iter {
	rocksdb_iterator_t *it;
	rocksdb_readoptions_t *ropts; /* owned when the iterator needed its own bounds */
	char *prefix;
	size_t prefix_len;
	bool failed; /* an injected fault: the iterator yields nothing and closes with -1 */
};

int store_open(struct store *s, const char *path, char *err, size_t errlen);
void store_close(struct store *s);

/* Makes reads fail on demand, for tests of the callers' error paths (there is no other way
 * to make RocksDB fail a read): every store_get and store_iter_init first asks fn, and a
 * non-zero answer fails that read as a RocksDB error would (logged, -1; an iterator yields
 * nothing and store_iter_close returns -1). Compiled in always, inert until set; NULL
 * removes it. Never set outside tests. */
void store_set_fault_hook(struct store *s, store_fault_fn fn, void *arg);

/* 0 and a malloc'd *val (free() it) when found, 1 when absent, -1 on error. */
int store_get(struct store *s, const void *key, size_t klen, char **val, size_t *vlen);

void store_batch_init(struct store_batch *b);
void store_batch_close(struct store_batch *b);
void store_batch_put(struct store_batch *b, const void *k, size_t kl, const void *v, size_t vl);
void store_batch_delete(struct store_batch *b, const void *k, size_t kl);
/* Deletes every key (used by snapshot restore, in the same batch as the new state). */
void store_batch_delete_all(struct store_batch *b);
/* Applies the batch atomically; `sync` fsyncs the WAL. -1 and a reason in err on failure.
 * A non-sync write stays in RocksDB's WAL buffer (manual WAL flush) until store_flush_wal or
 * the next sync write: a crash may lose it, together with the applied index written in the
 * same batch, which raft's durable log then replays. */
int store_write(struct store *s, struct store_batch *b, bool sync, char *err, size_t errlen);
/* Writes the buffered WAL tail to the file (no fsync); a no-op when nothing is buffered.
 * -1 and a reason in err on failure. */
int store_flush_wal(struct store *s, char *err, size_t errlen);

void store_snap_take(struct store_snap *snap, struct store *s);
void store_snap_release(struct store_snap *snap);

/* Iterates keys starting with `prefix` (may be empty), from `start` (>= prefix; NULL = the
 * first key of the prefix), in byte order. `snap` may be NULL for the latest state. An
 * iterator stops (valid() false) at the end or on a read error; only store_iter_close tells
 * which: -1 (logged) when the iteration stopped on an error, 0 otherwise. */
void store_iter_init(struct store_iter *it, struct store *s, const struct store_snap *snap,
                     const void *prefix, size_t plen, const void *start, size_t slen);
bool store_iter_valid(struct store_iter *it);
void store_iter_next(struct store_iter *it);
const char *store_iter_key(struct store_iter *it, size_t *len);
const char *store_iter_value(struct store_iter *it, size_t *len);
int store_iter_close(struct store_iter *it);

#endif
