/* offline: restore and recover on a data dir no coordinator is running on (see offline.h). */
#include "raft/offline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <raft/uv.h>

#include "config/config.h"
#include "raft/node.h"

/* ---- raft's own I/O, on a private loop ---- */

struct rio {
	uv_loop_t loop;
	struct raft_uv_transport transport;
	struct raft_io io;
	bool loop_open, transport_open, io_open, io_init;
	bool done; /* the request being waited for completed */
	int status;
};

static int rio_open(struct rio *r, const char *dir, raft_id id, const char *addr, char *err,
                    size_t errlen)
{
	memset(r, 0, sizeof *r);
	int rv = uv_loop_init(&r->loop);
	if (rv != 0) {
		snprintf(err, errlen, "cannot start an event loop: %s", uv_strerror(rv));
		return -1;
	}
	r->loop_open = true;
	/* The transport is raft_uv's requirement; nothing listens or connects without io->start. */
	rv = raft_uv_tcp_init(&r->transport, &r->loop);
	if (rv == 0) {
		r->transport_open = true;
		rv = raft_uv_init(&r->io, &r->loop, dir, &r->transport);
	}
	if (rv == 0) {
		r->io_open = true;
		rv = r->io.init(&r->io, id, addr);
	}
	if (rv != 0) {
		snprintf(err, errlen, "cannot open the raft log in %s: %s", dir,
		         r->io_open && r->io.errmsg[0] ? r->io.errmsg : raft_strerror(rv));
		return -1;
	}
	r->io_init = true;
	return 0;
}

static void rio_closed(struct raft_io *io)
{
	struct rio *r = (struct rio *)((char *)io - offsetof(struct rio, io));
	r->done = true;
}

static void rio_close(struct rio *r)
{
	if (r->io_init) {
		r->done = false;
		r->io.close(&r->io, rio_closed);
		while (!r->done && uv_run(&r->loop, UV_RUN_ONCE) != 0)
			;
	}
	if (r->io_open)
		raft_uv_close(&r->io);
	if (r->transport_open)
		raft_uv_tcp_close(&r->transport);
	if (r->loop_open) {
		uv_run(&r->loop, UV_RUN_DEFAULT);
		uv_loop_close(&r->loop);
	}
	memset(r, 0, sizeof *r);
}

/* What raft_uv's load found: the last configuration, and where the log ends. */
struct rio_state {
	raft_term term;
	raft_index snapshot_index, last_index;
	raft_term last_term;
	struct raft_configuration conf; /* the most recent one, in the log or the snapshot */
	bool have_conf;
};

int offline_decode_configuration(const struct raft_buffer *buf, struct raft_configuration *c)
{
	const uint8_t *p = buf->base, *end = p + buf->len;
	uint64_t n = 0;
	if (buf->len < 9 || p[0] != 1)
		return -1;
	p++;
	for (int i = 0; i < 8; i++)
		n |= (uint64_t)p[i] << (8 * i);
	p += 8;
	for (uint64_t k = 0; k < n; k++) {
		uint64_t id = 0;
		if (end - p < 8)
			return -1;
		for (int i = 0; i < 8; i++)
			id |= (uint64_t)p[i] << (8 * i);
		p += 8;
		const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
		if (nul == NULL || end - nul < 2)
			return -1;
		int rv = raft_configuration_add(c, id, (const char *)p, nul[1]);
		if (rv != 0)
			return -1;
		p = nul + 2;
	}
	return 0;
}

static int copy_configuration(const struct raft_configuration *from, struct raft_configuration *to)
{
	for (unsigned i = 0; i < from->n; i++)
		if (raft_configuration_add(to, from->servers[i].id, from->servers[i].address,
		                           from->servers[i].role) != 0)
			return -1;
	return 0;
}

static void free_snapshot(struct raft_snapshot *s)
{
	if (s == NULL)
		return;
	raft_configuration_close(&s->configuration);
	for (unsigned i = 0; i < s->n_bufs; i++)
		raft_free(s->bufs[i].base);
	raft_free(s->bufs);
	raft_free(s);
}

static void free_entries(struct raft_entry *entries, size_t n)
{
	void *batch = NULL;
	for (size_t i = 0; i < n; i++)
		if (entries[i].batch != batch) {
			batch = entries[i].batch;
			raft_free(batch);
		}
	raft_free(entries);
}

static int rio_load(struct rio *r, struct rio_state *st, char *err, size_t errlen)
{
	raft_id voted_for;
	struct raft_snapshot *snap = NULL;
	raft_index start = 1;
	struct raft_entry *entries = NULL;
	size_t n = 0;
	memset(st, 0, sizeof *st);
	raft_configuration_init(&st->conf);
	int rv = r->io.load(&r->io, &st->term, &voted_for, &snap, &start, &entries, &n);
	if (rv != 0) {
		snprintf(err, errlen, "cannot load the raft log: %s",
		         r->io.errmsg[0] ? r->io.errmsg : raft_strerror(rv));
		return -1;
	}
	if (snap != NULL) {
		st->snapshot_index = st->last_index = snap->index;
		st->last_term = snap->term;
	}
	if (n > 0) {
		st->last_index = start + n - 1;
		st->last_term = entries[n - 1].term;
	}
	rv = 0;
	for (size_t i = n; i-- > 0 && !st->have_conf;)
		if (entries[i].type == RAFT_CHANGE) {
			if (offline_decode_configuration(&entries[i].buf, &st->conf) != 0)
				rv = -1;
			st->have_conf = true;
		}
	if (!st->have_conf && snap != NULL) {
		rv = copy_configuration(&snap->configuration, &st->conf);
		st->have_conf = true;
	}
	free_snapshot(snap);
	if (entries != NULL)
		free_entries(entries, n);
	if (rv != 0)
		snprintf(err, errlen, "cannot read the raft configuration (libraft format 1)");
	return rv;
}

static void put_done(struct raft_io_snapshot_put *req, int status)
{
	struct rio *r = req->data;
	r->status = status;
	r->done = true;
}

/* A snapshot at `index` with `conf` and `data`, replacing whatever log there is (trailing 0:
 * what raft does when it installs one). */
static int rio_put_snapshot(struct rio *r, raft_index index, raft_term term,
                            const struct raft_configuration *conf, void *data, size_t len,
                            char *err, size_t errlen)
{
	struct raft_buffer buf = {.base = data, .len = len};
	struct raft_snapshot s = {.index = index,
	                          .term = term,
	                          .configuration = *conf,
	                          .configuration_index = index,
	                          .bufs = &buf,
	                          .n_bufs = 1};
	struct raft_io_snapshot_put req = {.data = r};
	r->done = false;
	int rv = r->io.snapshot_put(&r->io, 0, &req, &s, put_done);
	while (rv == 0 && !r->done && uv_run(&r->loop, UV_RUN_ONCE) != 0)
		;
	if (rv == 0)
		rv = r->done ? r->status : RAFT_IOERR;
	if (rv != 0) {
		snprintf(err, errlen, "cannot write the raft snapshot: %s",
		         r->io.errmsg[0] ? r->io.errmsg : raft_strerror(rv));
		return -1;
	}
	return 0;
}

/* ---- files ---- */

static char *path_join(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);
	if (p == NULL)
		abort();
	snprintf(p, len, "%s/%s", dir, name);
	return p;
}

static bool exists_in(const char *dir, const char *name)
{
	char *p = path_join(dir, name);
	bool ok = access(p, F_OK) == 0;
	free(p);
	return ok;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int sync_dir(const char *dir, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "cannot sync directory %s: %s", dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* 1 when dir does not exist, 0 when it is an empty directory, -1 (with a reason) otherwise. */
static int check_target(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(dir, &st) != 0) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "--data-dir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "--data-dir %s exists and is not a directory", dir);
		return -1;
	}
	DIR *d = opendir(dir);
	if (d == NULL) {
		snprintf(err, errlen, "--data-dir %s: %s", dir, strerror(errno));
		return -1;
	}
	struct dirent *e;
	int rv = 0;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			snprintf(
			    err, errlen,
			    "--data-dir %s is not empty (it holds %s): restore writes a new data "
			    "dir; give a new or empty directory",
			    dir, e->d_name);
			rv = -1;
			break;
		}
	closedir(d);
	return rv;
}

/* ---- restore ---- */

/* The store of the new data dir: the image restored, then made a new cluster's (no members,
 * the new cluster id), and the image of exactly that for raft's snapshot. */
static int restore_store(struct offline_restore *r, const char *db_dir, struct buf *image,
                         char *err, size_t errlen)
{
	struct fsm f;
	struct store_snap snap;
	if (fsm_init(&f, db_dir, err, errlen) != 0)
		return -1;
	int rv = fsm_snapshot_restore(&f, r->image, r->image_len, err, errlen);
	if (rv == 0) {
		fsm_digests(&f, &r->backup_digest);
		rv = fsm_reset_cluster(&f, r->cluster_id, err, errlen);
	}
	if (rv == 0) {
		store_snap_take(&snap, &f.store);
		rv = fsm_snapshot_write(&snap, f.applied_index, image, &r->digest);
		store_snap_release(&snap);
		if (rv != 0)
			snprintf(err, errlen, "cannot read back the restored store");
	}
	if (rv == 0 && r->digest.data != r->backup_digest.data) {
		snprintf(err, errlen, "the restored data differs from the snapshot's");
		rv = -1;
	}
	if (rv == 0 && f.applied_index != r->index) {
		snprintf(err, errlen, "the restored store is at index %llu, not %llu",
		         (unsigned long long)f.applied_index, (unsigned long long)r->index);
		rv = -1;
	}
	r->records = r->digest.state_keys;
	fsm_close(&f);
	return rv;
}

static int restore_raft(struct offline_restore *r, const char *raft_dir, struct buf *image,
                        char *err, size_t errlen)
{
	struct rio io;
	struct rio_state st;
	raft_id id = node_raft_id(r->node_id);
	struct raft_configuration conf;
	if (mkdir(raft_dir, 0700) != 0) {
		snprintf(err, errlen, "cannot create %s: %s", raft_dir, strerror(errno));
		return -1;
	}
	raft_configuration_init(&conf);
	raft_configuration_init(&st.conf);
	int rv = rio_open(&io, raft_dir, id, r->raft_addr, err, errlen);
	if (rv == 0) {
		raft_configuration_close(&st.conf);
		rv = rio_load(&io, &st, err, errlen);
	}
	raft_configuration_close(&st.conf);
	if (rv == 0 && raft_configuration_add(&conf, id, r->raft_addr, RAFT_VOTER) != 0) {
		snprintf(err, errlen, "out of memory");
		rv = -1;
	}
	/* Term 1, as a bootstrap writes it: the snapshot's entry is of that term. */
	if (rv == 0 && (rv = io.io.set_term(&io.io, 1)) != 0) {
		snprintf(err, errlen, "cannot write the raft term: %s", raft_strerror(rv));
		rv = -1;
	}
	if (rv == 0)
		rv =
		    rio_put_snapshot(&io, r->index, 1, &conf, image->data, image->len, err, errlen);
	raft_configuration_close(&conf);
	rio_close(&io);
	return rv;
}

static int restore_identity(struct offline_restore *r, const char *dir, char *err, size_t errlen)
{
	struct identity id;
	memset(&id, 0, sizeof id);
	snprintf(id.node_id, sizeof id.node_id, "%s", r->node_id);
	snprintf(id.raft_addr, sizeof id.raft_addr, "%s", r->raft_addr);
	snprintf(id.incarnation, sizeof id.incarnation, "%s", r->incarnation);
	snprintf(id.cluster_id, sizeof id.cluster_id, "%s", r->cluster_id);
	/* It founded the restored cluster: a later start with --join is refused, as for
	 * --bootstrap. */
	id.bootstrapped = true;
	return identity_save(&id, dir, err, errlen);
}

/* The temporary directory beside data_dir: same file system, so the final rename is atomic. */
static char *make_temp_beside(const char *data_dir, char *err, size_t errlen)
{
	char *copy = strdup(data_dir), *copy2 = strdup(data_dir);
	if (copy == NULL || copy2 == NULL)
		abort();
	char *parent = dirname(copy), *base = basename(copy2);
	char *tmp = NULL;
	if (config_make_dirs(parent, err, errlen) == 0) {
		size_t len = strlen(parent) + strlen(base) + 32;
		tmp = malloc(len);
		if (tmp == NULL)
			abort();
		snprintf(tmp, len, "%s/.%s.restore-XXXXXX", parent, base);
		if (mkdtemp(tmp) == NULL) {
			snprintf(err, errlen, "cannot create a temporary directory beside %s: %s",
			         data_dir, strerror(errno));
			free(tmp);
			tmp = NULL;
		}
	}
	free(copy);
	free(copy2);
	return tmp;
}

static int move_into_place(const char *tmp, const char *data_dir, bool exists, char *err,
                           size_t errlen)
{
	if (exists && rmdir(data_dir) != 0) {
		snprintf(err, errlen, "cannot replace the empty %s: %s", data_dir, strerror(errno));
		return -1;
	}
	if (rename(tmp, data_dir) != 0) {
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, data_dir, strerror(errno));
		return -1;
	}
	char *copy = strdup(data_dir);
	if (copy == NULL)
		abort();
	int rv = sync_dir(dirname(copy), err, errlen);
	free(copy);
	return rv;
}

int offline_restore(struct offline_restore *r, char *err, size_t errlen)
{
	uint64_t count;
	char why[256];
	if (fsm_snapshot_check(r->image, r->image_len, &r->index, &count, why, sizeof why) != 0) {
		snprintf(err, errlen, "refusing the snapshot: %s", why);
		return -1;
	}
	if (r->index == 0) {
		snprintf(err, errlen,
		         "the snapshot is at index 0 (a cluster that never applied anything): "
		         "there is nothing to restore");
		return -1;
	}
	int target = check_target(r->data_dir, err, errlen);
	if (target < 0)
		return -1;
	if (identity_random_hex(r->cluster_id) != 0 || identity_random_hex(r->incarnation) != 0) {
		snprintf(err, errlen, "cannot draw random ids: %s", strerror(errno));
		return -1;
	}
	char *tmp = make_temp_beside(r->data_dir, err, errlen);
	if (tmp == NULL)
		return -1;
	char *db_dir = path_join(tmp, NODE_DB_DIR), *raft_dir = path_join(tmp, NODE_RAFT_DIR);
	struct buf image;
	buf_init(&image);
	int rv = restore_store(r, db_dir, &image, err, errlen);
	if (rv == 0)
		rv = restore_raft(r, raft_dir, &image, err, errlen);
	if (rv == 0)
		rv = restore_identity(r, tmp, err, errlen);
	if (rv == 0)
		rv = sync_dir(tmp, err, errlen);
	if (rv == 0)
		rv = move_into_place(tmp, r->data_dir, target == 0, err, errlen);
	if (rv != 0)
		remove_tree(tmp);
	buf_close(&image);
	free(db_dir);
	free(raft_dir);
	free(tmp);
	return rv;
}

/* ---- recover ---- */

/* The pid holding RocksDB's LOCK file (a POSIX record lock), 0 when nobody does. */
static pid_t lock_holder(const char *db_dir)
{
	char *path = path_join(db_dir, "LOCK");
	int fd = open(path, O_RDWR | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return 0;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	pid_t pid = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK ? fl.l_pid : 0;
	close(fd);
	return pid;
}

struct name_map {
	struct offline_server *servers;
	unsigned n;
};

static int name_server(const struct fsm_member *m, void *arg)
{
	struct name_map *map = arg;
	for (unsigned i = 0; i < map->n; i++)
		if (map->servers[i].id == m->raft_id)
			snprintf(map->servers[i].node_id, sizeof map->servers[i].node_id, "%s",
			         m->node_id);
	return 0;
}

/* The old configuration, named from the member records; the new one is this node alone. */
static int plan(struct offline_recover *r, const struct rio_state *st, struct fsm *f, char *err,
                size_t errlen)
{
	raft_id self = node_raft_id(r->ident.node_id);
	const struct raft_server *me = NULL;
	for (unsigned i = 0; i < st->conf.n && r->n_old < OFFLINE_MAX_SERVERS; i++) {
		const struct raft_server *s = &st->conf.servers[i];
		struct offline_server *o = &r->old_conf[r->n_old++];
		o->id = s->id;
		o->role = s->role;
		snprintf(o->raft_addr, sizeof o->raft_addr, "%s", s->address);
		if (s->id == self)
			me = s;
	}
	struct name_map map = {r->old_conf, r->n_old};
	fsm_members_each(f, name_server, &map);
	unsigned voters = 0;
	for (unsigned i = 0; i < st->conf.n; i++)
		voters += st->conf.servers[i].role == RAFT_VOTER;
	if (me == NULL || me->role != RAFT_VOTER) {
		snprintf(err, errlen,
		         "%s is %s of its last raft configuration: only a voter's log holds what "
		         "its cluster committed, so it cannot be made the only voter",
		         r->ident.node_id, me == NULL ? "not a member" : "not a voter");
		return -1;
	}
	r->new_conf.id = self;
	r->new_conf.role = RAFT_VOTER;
	snprintf(r->new_conf.node_id, sizeof r->new_conf.node_id, "%s", r->ident.node_id);
	snprintf(r->new_conf.raft_addr, sizeof r->new_conf.raft_addr, "%s", me->address);
	r->unchanged = voters == 1 && st->conf.n == 1;
	return 0;
}

static int check_data_dir(struct offline_recover *r, const char *raft_dir, const char *db_dir,
                          char *err, size_t errlen)
{
	if (!exists_in(raft_dir, "metadata1") && !exists_in(raft_dir, "metadata2")) {
		snprintf(err, errlen,
		         "%s holds no raft state (no %s/metadata1 or metadata2): not the data dir "
		         "of a coordinator that ever started",
		         r->data_dir, NODE_RAFT_DIR);
		return -1;
	}
	if (!exists_in(db_dir, "CURRENT")) {
		snprintf(err, errlen, "%s holds no store (%s/CURRENT is missing)", r->data_dir,
		         NODE_DB_DIR);
		return -1;
	}
	r->running_pid = lock_holder(db_dir);
	if (r->running_pid != 0) {
		snprintf(err, errlen,
		         "process %ld has %s open (it holds %s/LOCK): a coordinator is running on "
		         "this data dir; stop it first (recover rewrites its raft state offline)",
		         (long)r->running_pid, r->data_dir, NODE_DB_DIR);
		return -1;
	}
	int found = identity_load(&r->ident, r->data_dir, NULL, err, errlen);
	if (found == 1)
		snprintf(err, errlen, "%s has no identity.json: not a coordinator's data dir",
		         r->data_dir);
	if (found != 0)
		return -1;
	if (r->ident.removed) {
		snprintf(
		    err, errlen,
		    "%s was removed from its cluster (identity.json says so): its state is not "
		    "the cluster's",
		    r->ident.node_id);
		return -1;
	}
	return 0;
}

int offline_recover(struct offline_recover *r, char *err, size_t errlen)
{
	char *raft_dir = path_join(r->data_dir, NODE_RAFT_DIR);
	char *db_dir = path_join(r->data_dir, NODE_DB_DIR);
	struct fsm f;
	struct rio io;
	struct rio_state st;
	bool fsm_open = false, io_tried = false;
	int rv = check_data_dir(r, raft_dir, db_dir, err, errlen);
	/* Opening the store takes RocksDB's lock: a coordinator started meanwhile fails to open
	 * it and exits, instead of running on a log being rewritten. */
	if (rv == 0 && (rv = fsm_init(&f, db_dir, err, errlen)) == 0)
		fsm_open = true;
	raft_configuration_init(&st.conf);
	if (rv == 0) {
		r->applied_index = f.applied_index;
		rv = rio_open(&io, raft_dir, node_raft_id(r->ident.node_id), r->ident.raft_addr,
		              err, errlen);
		io_tried = true;
	}
	if (rv == 0) {
		raft_configuration_close(&st.conf);
		rv = rio_load(&io, &st, err, errlen);
	}
	if (rv == 0) {
		r->term = st.term;
		r->snapshot_index = st.snapshot_index;
		r->last_index = st.last_index;
		r->last_term = st.last_term;
		rv = plan(r, &st, &f, err, errlen);
	}
	if (rv == 0 && !r->unchanged) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		rv = raft_configuration_add(&conf, r->new_conf.id, r->new_conf.raft_addr,
		                            RAFT_VOTER);
		if (rv == 0)
			rv = io.io.recover(&io.io, &conf);
		raft_configuration_close(&conf);
		if (rv != 0)
			snprintf(err, errlen, "cannot write the new configuration: %s",
			         io.io.errmsg[0] ? io.io.errmsg : raft_strerror(rv));
		else
			r->conf_index = r->last_index + 1;
	}
	raft_configuration_close(&st.conf);
	if (io_tried)
		rio_close(&io);
	if (fsm_open)
		fsm_close(&f);
	free(raft_dir);
	free(db_dir);
	return rv == 0 ? 0 : -1;
}
