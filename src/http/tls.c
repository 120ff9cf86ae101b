/* tls: GnuTLS credentials with reload, and a session per connection over buffers (tls.h).
 *
 * Credentials. `cur` is what a new connection gets; each connection holds a reference to the
 * credentials its session was made with (GnuTLS needs them for the session's lifetime), so a
 * reload swaps `cur` under the mutex and the old set goes with its last connection. The files
 * are read in full before anything is swapped: a missing, unreadable or mismatched
 * certificate or key, or a client CA file without a certificate in it, leaves the old set.
 *
 * Sessions. GnuTLS reads through `pull` from the bytes the server fed (`src`, `src_len`,
 * `src_off`): first from what an earlier feed left (`held`), and otherwise straight from the
 * caller's read buffer, so the common case copies nothing. `pull` says EAGAIN when nothing is
 * left, which is how the non-blocking handshake and reads return to the server's read
 * callback. GnuTLS keeps a partial record inside the session, so whatever is left unconsumed
 * after a call is only what the server chose not to decrypt yet (the loop holds a request on
 * that connection): that is copied into `held`. `push` appends to `out`, which never refuses,
 * so GnuTLS never sees EAGAIN on writes and the server writes `out` with uv_write.
 *
 * Priorities are the system's (gnutls_set_default_priority: Debian's TLS 1.2 and 1.3 with the
 * administrator's /etc/gnutls/config applied). The handshake has no timeout of GnuTLS's own:
 * the server's header timeout bounds it. ALPN offers only http/1.1; session tickets are on. */
#include "http/tls.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct creds {
	gnutls_certificate_credentials_t x;
	atomic_uint refs;
	bool client_ca; /* require and verify client certificates */
	char describe[256];
};

struct http_tls {
	pthread_mutex_t mu;
	struct creds *cur; /* under mu */
	/* Session tickets (resumption without a full handshake); GnuTLS rotates the keys it
	 * derives from this one. Fixed after init, read by every session. */
	gnutls_datum_t ticket_key;
	char *cert_file, *key_file, *client_ca_file;
};

struct http_tls_conn {
	gnutls_session_t s;
	struct creds *creds;
	const char *src; /* what pull reads from */
	size_t src_len, src_off;
	char *held; /* unconsumed ciphertext kept between feeds */
	size_t held_len;
	struct buf out;
	bool established;
	bool corked;
	char error[160];
};

static void creds_put(struct creds *c)
{
	if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1) {
		gnutls_certificate_free_credentials(c->x);
		free(c);
	}
}

/* "sha256=... serial=... not_after=..." of the node's own certificate. */
static void describe(struct creds *c, gnutls_x509_crt_t crt)
{
	unsigned char fp[32], serial[64];
	size_t fp_len = sizeof fp, serial_len = sizeof serial;
	char fph[2 * sizeof fp + 1] = "", serh[2 * sizeof serial + 1] = "", when[32] = "?";
	if (gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &fp_len) == 0)
		for (size_t i = 0; i < fp_len; i++)
			snprintf(fph + 2 * i, 3, "%02x", fp[i]);
	if (gnutls_x509_crt_get_serial(crt, serial, &serial_len) == 0)
		for (size_t i = 0; i < serial_len; i++)
			snprintf(serh + 2 * i, 3, "%02x", serial[i]);
	time_t t = gnutls_x509_crt_get_expiration_time(crt);
	struct tm tm;
	if (t != (time_t)-1 && gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(c->describe, sizeof c->describe, "sha256=%s serial=%s not_after=%s%s", fph, serh,
	         when, t != (time_t)-1 && t < time(NULL) ? " expired=true" : "");
}

/* The certificate chain and the key, parsed here rather than by
 * gnutls_certificate_set_x509_key_file2, which in GnuTLS 3.7.9 leaks a certificate on a
 * malformed PEM file (and a bad file on SIGHUP must cost nothing). */
static int load_key_pair(struct creds *c, const struct http_tls *t, char *err, size_t errlen)
{
	gnutls_datum_t cert = {NULL, 0}, key = {NULL, 0};
	gnutls_x509_crt_t *crts = NULL;
	unsigned n = 0;
	gnutls_x509_privkey_t pk = NULL;
	int rv = gnutls_load_file(t->cert_file, &cert);
	if (rv < 0) {
		snprintf(err, errlen, "cannot read --tls-cert %s: %s", t->cert_file,
		         gnutls_strerror(rv));
		goto out;
	}
	rv = gnutls_x509_crt_list_import2(&crts, &n, &cert, GNUTLS_X509_FMT_PEM,
	                                  GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
	if (rv < 0) {
		snprintf(err, errlen, "--tls-cert %s: %s", t->cert_file, gnutls_strerror(rv));
		n = 0;
		goto out;
	}
	if ((rv = gnutls_load_file(t->key_file, &key)) < 0) {
		snprintf(err, errlen, "cannot read --tls-key %s: %s", t->key_file,
		         gnutls_strerror(rv));
		goto out;
	}
	if ((rv = gnutls_x509_privkey_init(&pk)) < 0 ||
	    (rv = gnutls_x509_privkey_import2(pk, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		snprintf(err, errlen, "--tls-key %s: %s", t->key_file, gnutls_strerror(rv));
		goto out;
	}
	if ((rv = gnutls_certificate_set_x509_key(c->x, crts, n, pk)) < 0) {
		snprintf(err, errlen, "--tls-cert %s with --tls-key %s: %s", t->cert_file,
		         t->key_file, gnutls_strerror(rv));
		goto out;
	}
	describe(c, crts[0]);
out:
	for (unsigned i = 0; i < n; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	if (pk != NULL)
		gnutls_x509_privkey_deinit(pk);
	/* The key's bytes are secret: not left behind in freed memory. */
	if (key.data != NULL)
		gnutls_memset(key.data, 0, key.size);
	gnutls_free(key.data);
	gnutls_free(cert.data);
	return rv < 0 ? -1 : 0;
}

static struct creds *creds_load(const struct http_tls *t, char *err, size_t errlen)
{
	struct creds *c = calloc(1, sizeof *c);
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	int rv = gnutls_certificate_allocate_credentials(&c->x);
	if (rv < 0) {
		snprintf(err, errlen, "cannot allocate TLS credentials: %s", gnutls_strerror(rv));
		free(c);
		return NULL;
	}
	atomic_init(&c->refs, 1);
	if (load_key_pair(c, t, err, errlen) != 0) {
		creds_put(c);
		return NULL;
	}
	if (t->client_ca_file != NULL) {
		rv = gnutls_certificate_set_x509_trust_file(c->x, t->client_ca_file,
		                                            GNUTLS_X509_FMT_PEM);
		if (rv <= 0) {
			snprintf(err, errlen, "cannot load --tls-client-ca %s: %s",
			         t->client_ca_file,
			         rv == 0 ? "no certificate in it" : gnutls_strerror(rv));
			creds_put(c);
			return NULL;
		}
		c->client_ca = true;
	}
	return c;
}

static char *dup_or_null(const char *s, bool *oom)
{
	if (s == NULL)
		return NULL;
	char *d = strdup(s);
	if (d == NULL)
		*oom = true;
	return d;
}

int http_tls_init(struct http_tls **out, const struct http_tls_options *o, char *err, size_t errlen)
{
	*out = NULL;
	if (o->cert_file == NULL || o->key_file == NULL) {
		snprintf(err, errlen, "TLS needs a certificate and a key");
		return -1;
	}
	struct http_tls *t = calloc(1, sizeof *t);
	bool oom = t == NULL;
	if (t != NULL) {
		pthread_mutex_init(&t->mu, NULL);
		t->cert_file = dup_or_null(o->cert_file, &oom);
		t->key_file = dup_or_null(o->key_file, &oom);
		t->client_ca_file = dup_or_null(o->client_ca_file, &oom);
	}
	if (oom) {
		snprintf(err, errlen, "out of memory");
		http_tls_close(t);
		return -1;
	}
	int rv = gnutls_session_ticket_key_generate(&t->ticket_key);
	if (rv < 0) {
		snprintf(err, errlen, "cannot make a session ticket key: %s", gnutls_strerror(rv));
		http_tls_close(t);
		return -1;
	}
	t->cur = creds_load(t, err, errlen);
	if (t->cur == NULL) {
		http_tls_close(t);
		return -1;
	}
	*out = t;
	return 0;
}

int http_tls_reload(struct http_tls *t, char *err, size_t errlen)
{
	struct creds *c = creds_load(t, err, errlen);
	if (c == NULL)
		return -1;
	pthread_mutex_lock(&t->mu);
	struct creds *old = t->cur;
	t->cur = c;
	pthread_mutex_unlock(&t->mu);
	creds_put(old);
	return 0;
}

void http_tls_close(struct http_tls *t)
{
	if (t == NULL)
		return;
	creds_put(t->cur);
	pthread_mutex_destroy(&t->mu);
	if (t->ticket_key.data != NULL) {
		gnutls_memset(t->ticket_key.data, 0, t->ticket_key.size);
		gnutls_free(t->ticket_key.data);
	}
	free(t->cert_file);
	free(t->key_file);
	free(t->client_ca_file);
	free(t);
}

void http_tls_describe(struct http_tls *t, char *out, size_t len)
{
	pthread_mutex_lock(&t->mu);
	snprintf(out, len, "%s", t->cur->describe);
	pthread_mutex_unlock(&t->mu);
}

/* ---- sessions ------------------------------------------------------------------------ */

static ssize_t pull(gnutls_transport_ptr_t p, void *data, size_t len)
{
	struct http_tls_conn *c = p;
	size_t avail = c->src_len - c->src_off;
	if (avail == 0) {
		gnutls_transport_set_errno(c->s, EAGAIN);
		return -1;
	}
	size_t n = avail < len ? avail : len;
	memcpy(data, c->src + c->src_off, n);
	c->src_off += n;
	return (ssize_t)n;
}

static int pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
	struct http_tls_conn *c = p;
	(void)ms;
	return c->src_len > c->src_off ? 1 : 0;
}

static ssize_t push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
	struct http_tls_conn *c = p;
	buf_append(&c->out, data, len);
	return (ssize_t)len;
}

struct http_tls_conn *http_tls_conn_new(struct http_tls *t)
{
	static const gnutls_datum_t alpn = {(unsigned char *)"http/1.1", 8};
	struct http_tls_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	buf_init(&c->out);
	if (gnutls_init(&c->s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
		free(c);
		return NULL;
	}
	pthread_mutex_lock(&t->mu);
	c->creds = t->cur;
	atomic_fetch_add(&c->creds->refs, 1);
	pthread_mutex_unlock(&t->mu);
	if (gnutls_set_default_priority(c->s) < 0 ||
	    gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, c->creds->x) < 0) {
		http_tls_conn_free(c);
		return NULL;
	}
	if (c->creds->client_ca) {
		gnutls_certificate_server_set_request(c->s, GNUTLS_CERT_REQUIRE);
		/* Verified during the handshake, which fails without a valid certificate. */
		gnutls_session_set_verify_cert(c->s, NULL, 0);
	}
	gnutls_alpn_set_protocols(c->s, &alpn, 1, GNUTLS_ALPN_SERVER_PRECEDENCE);
	/* Besides resumption, the TLS 1.3 ticket is what the server sends right after the
	 * client's Finished: without it the client's first request, written behind Finished,
	 * waits for our delayed ACK (40 ms) if the client leaves Nagle on. */
	gnutls_session_ticket_enable_server(c->s, &t->ticket_key);
	gnutls_handshake_set_timeout(c->s, 0);
	gnutls_transport_set_ptr(c->s, c);
	gnutls_transport_set_pull_function(c->s, pull);
	gnutls_transport_set_pull_timeout_function(c->s, pull_timeout);
	gnutls_transport_set_push_function(c->s, push);
	return c;
}

void http_tls_conn_free(struct http_tls_conn *c)
{
	if (c == NULL)
		return;
	gnutls_deinit(c->s);
	creds_put(c->creds);
	free(c->held);
	buf_close(&c->out);
	free(c);
}

/* What pull did not take of the current source is kept for the next feed. */
static void keep_rest(struct http_tls_conn *c)
{
	size_t rest = c->src_len - c->src_off;
	if (c->src == c->held) {
		if (rest > 0 && c->src_off > 0)
			memmove(c->held, c->held + c->src_off, rest);
		c->held_len = rest;
	} else if (rest > 0) {
		char *p = realloc(c->held, c->held_len + rest);
		if (p == NULL)
			abort();
		memcpy(p + c->held_len, c->src + c->src_off, rest);
		c->held = p;
		c->held_len += rest;
	}
	if (c->held_len == 0) {
		free(c->held);
		c->held = NULL;
	}
	c->src = c->held;
	c->src_len = c->held_len;
	c->src_off = 0;
}

void http_tls_conn_feed(struct http_tls_conn *c, const char *data, size_t len)
{
	if (c->held_len > 0) {
		/* Behind what is held: the bytes must reach GnuTLS in order. */
		char *p = realloc(c->held, c->held_len + len);
		if (p == NULL)
			abort();
		memcpy(p + c->held_len, data, len);
		c->held = p;
		c->held_len += len;
		c->src = c->held;
		c->src_len = c->held_len;
	} else {
		c->src = data;
		c->src_len = len;
	}
	c->src_off = 0;
}

bool http_tls_conn_has_input(const struct http_tls_conn *c)
{
	return c->src_len > c->src_off || gnutls_record_check_pending(c->s) > 0;
}

bool http_tls_conn_established(const struct http_tls_conn *c)
{
	return c->established;
}

static enum http_tls_status fatal(struct http_tls_conn *c, const char *what, int rv)
{
	if (rv == GNUTLS_E_FATAL_ALERT_RECEIVED)
		snprintf(c->error, sizeof c->error, "%s: the client sent the alert \"%s\"", what,
		         gnutls_alert_get_name(gnutls_alert_get(c->s)));
	else
		snprintf(c->error, sizeof c->error, "%s: %s", what, gnutls_strerror(rv));
	return HTTP_TLS_ERROR;
}

/* GNUTLS_E_AGAIN means "need more input" only once pull has run dry: after a record that
 * carried no data for the caller (a TLS 1.3 key update, a warning alert) GnuTLS returns it
 * with input still waiting, which no read event would bring back. */
static bool again_with_input(const struct http_tls_conn *c, ssize_t rv, size_t off_before)
{
	return rv == GNUTLS_E_AGAIN && c->src_off > off_before && c->src_off < c->src_len;
}

enum http_tls_status http_tls_conn_handshake(struct http_tls_conn *c)
{
	int rv;
	size_t off;
	do {
		off = c->src_off;
		rv = gnutls_handshake(c->s);
	} while ((rv < 0 && rv != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(rv)) ||
	         again_with_input(c, rv, off));
	keep_rest(c);
	if (rv == GNUTLS_E_AGAIN)
		return HTTP_TLS_AGAIN;
	if (rv < 0) {
		/* Tells the client why (no certificate, a bad one, no common cipher). */
		gnutls_alert_send_appropriate(c->s, rv);
		return fatal(c, "TLS handshake failed", rv);
	}
	c->established = true;
	return HTTP_TLS_DONE;
}

long http_tls_conn_read(struct http_tls_conn *c, char *dst, size_t cap)
{
	ssize_t n;
	size_t off;
	do {
		off = c->src_off;
		n = gnutls_record_recv(c->s, dst, cap);
	} while ((n < 0 && n != GNUTLS_E_AGAIN && !gnutls_error_is_fatal((int)n) &&
	          n != GNUTLS_E_REHANDSHAKE) ||
	         again_with_input(c, n, off));
	keep_rest(c);
	if (n > 0)
		return (long)n;
	if (n == 0)
		return HTTP_TLS_CLOSED;
	if (n == GNUTLS_E_AGAIN)
		return HTTP_TLS_AGAIN;
	/* A TLS 1.2 renegotiation is refused: nothing we serve needs it. */
	return fatal(c, "TLS read failed", (int)n);
}

void http_tls_conn_write(struct http_tls_conn *c, const void *data, size_t len)
{
	const char *p = data;
	if (!c->corked) {
		gnutls_record_cork(c->s);
		c->corked = true;
	}
	while (len > 0) {
		ssize_t n = gnutls_record_send(c->s, p, len);
		if (n < 0) {
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
				continue;
			/* Only a broken session gets here; the peer sees a truncated answer. */
			fatal(c, "TLS write failed", (int)n);
			return;
		}
		p += n;
		len -= (size_t)n;
	}
}

void http_tls_conn_flush(struct http_tls_conn *c)
{
	if (!c->corked)
		return;
	c->corked = false;
	int rv = gnutls_record_uncork(c->s, GNUTLS_RECORD_WAIT);
	if (rv < 0)
		fatal(c, "TLS write failed", rv);
}

void http_tls_conn_bye(struct http_tls_conn *c)
{
	http_tls_conn_flush(c);
	if (c->established)
		gnutls_bye(c->s, GNUTLS_SHUT_WR);
}

char *http_tls_conn_take(struct http_tls_conn *c, size_t *len)
{
	if (c->out.len == 0) {
		*len = 0;
		return NULL;
	}
	return buf_detach(&c->out, len);
}

const char *http_tls_conn_error(const struct http_tls_conn *c)
{
	return c->error;
}
