/* identity: the data dir's identity file (see identity.h). */
#include "raft/identity.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define IDENTITY_FILE "identity.json"

int identity_random_hex(char out[IDENTITY_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[IDENTITY_HEX_LEN / 2];
	size_t got = 0;
	while (got < sizeof raw) {
		ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof raw; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[IDENTITY_HEX_LEN] = '\0';
	return 0;
}

bool identity_valid_hex(const char *s)
{
	if (s == NULL || strlen(s) != IDENTITY_HEX_LEN)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

static char *file_path(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);
	if (p != NULL)
		snprintf(p, len, "%s/%s", dir, name);
	return p;
}

static void copy_str(char *dst, size_t size, json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));
	snprintf(dst, size, "%s", s != NULL ? s : "");
}

static void load_founders(struct identity *id, json_t *arr)
{
	size_t i;
	json_t *f;
	json_array_foreach(arr, i, f)
	{
		if (id->n_founders == IDENTITY_MAX_FOUNDERS)
			break;
		struct identity_founder *d = &id->founders[id->n_founders++];
		copy_str(d->node_id, sizeof d->node_id, f, "node_id");
		copy_str(d->raft_addr, sizeof d->raft_addr, f, "raft_addr");
		copy_str(d->http_addr, sizeof d->http_addr, f, "http_addr");
		copy_str(d->incarnation, sizeof d->incarnation, f, "incarnation");
	}
}

static int fresh(struct identity *id, const char *node_id, char *err, size_t errlen)
{
	memset(id, 0, sizeof *id);
	snprintf(id->node_id, sizeof id->node_id, "%s", node_id);
	if (identity_random_hex(id->incarnation) != 0) {
		snprintf(err, errlen, "cannot draw a random incarnation id: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int identity_load(struct identity *id, const char *dir, const char *node_id, char *err,
                  size_t errlen)
{
	char *path = file_path(dir, IDENTITY_FILE);
	if (path == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	json_error_t jerr;
	json_t *o = json_load_file(path, 0, &jerr);
	if (o == NULL) {
		bool absent = access(path, F_OK) != 0 && errno == ENOENT;
		if (!absent)
			snprintf(err, errlen,
			         "%s is unreadable (%s at line %d); restore it or wipe "
			         "the data dir",
			         path, jerr.text, jerr.line);
		free(path);
		if (!absent)
			return -1;
		return fresh(id, node_id, err, errlen) == 0 ? 1 : -1;
	}
	memset(id, 0, sizeof *id);
	copy_str(id->node_id, sizeof id->node_id, o, "node_id");
	copy_str(id->raft_addr, sizeof id->raft_addr, o, "raft_addr");
	copy_str(id->incarnation, sizeof id->incarnation, o, "incarnation");
	copy_str(id->cluster_id, sizeof id->cluster_id, o, "cluster_id");
	id->bootstrapped = json_is_true(json_object_get(o, "bootstrapped"));
	id->removed = json_is_true(json_object_get(o, "removed"));
	load_founders(id, json_object_get(o, "founders"));
	json_decref(o);
	int rv = 0;
	if (id->node_id[0] != '\0' && strcmp(id->node_id, node_id) != 0) {
		snprintf(
		    err, errlen,
		    "--data-dir %s belongs to node \"%s\", not \"%s\" (use another data dir or "
		    "the original --node-id)",
		    dir, id->node_id, node_id);
		rv = -1;
	} else if (!identity_valid_hex(id->incarnation)) {
		/* Written before incarnations existed: the data is the member's own. */
		snprintf(id->node_id, sizeof id->node_id, "%s", node_id);
		if (identity_random_hex(id->incarnation) != 0) {
			snprintf(err, errlen, "cannot draw a random incarnation id: %s",
			         strerror(errno));
			rv = -1;
		}
	}
	if (id->cluster_id[0] != '\0' && !identity_valid_hex(id->cluster_id))
		id->cluster_id[0] = '\0';
	free(path);
	return rv;
}

json_t *identity_founders_json(const struct identity *id)
{
	json_t *arr = json_array();
	for (unsigned i = 0; i < id->n_founders; i++) {
		const struct identity_founder *f = &id->founders[i];
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "node_id", f->node_id,
		                                     "raft_addr", f->raft_addr, "http_addr",
		                                     f->http_addr, "incarnation", f->incarnation));
	}
	return arr;
}

/* write + fsync + rename + fsync(dir): the identity must be on disk before raft writes
 * anything that depends on it. */
static int write_durably(const char *dir, const char *text, char *err, size_t errlen)
{
	char *path = file_path(dir, IDENTITY_FILE);
	char *tmp = file_path(dir, IDENTITY_FILE ".tmp");
	int rv = -1;
	int fd = -1;
	if (path == NULL || tmp == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t len = strlen(text), done = 0;
	while (fd >= 0 && done < len) {
		ssize_t n = write(fd, text + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (fd < 0 || done < len || fsync(fd) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot replace %s: %s", path, strerror(errno));
		goto out;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		snprintf(err, errlen, "cannot sync directory %s: %s", dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		goto out;
	}
	close(dfd);
	rv = 0;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	free(tmp);
	return rv;
}

int identity_save(const struct identity *id, const char *dir, char *err, size_t errlen)
{
	json_t *o =
	    json_pack("{s:i, s:s, s:s, s:s, s:s, s:b, s:b}", "version", 2, "node_id", id->node_id,
	              "raft_addr", id->raft_addr, "incarnation", id->incarnation, "cluster_id",
	              id->cluster_id, "bootstrapped", id->bootstrapped, "removed", id->removed);
	if (o != NULL && id->n_founders > 0)
		json_object_set_new(o, "founders", identity_founders_json(id));
	char *text = o != NULL ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rv = write_durably(dir, text, err, errlen);
	free(text);
	return rv;
}
