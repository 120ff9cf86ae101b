/* tls: TLS for the HTTP server (http.h), with GnuTLS.
 *
 * Two halves. The credentials (struct http_tls) are what the coordinator makes from
 * --tls-cert, --tls-key and --tls-client-ca, hands to every server that should speak TLS, and
 * reloads on SIGHUP: http_tls_reload reads the same files again and, only if all of them load,
 * makes them the ones new connections get. Connections keep the credentials they started
 * with (reference counted), so a reload never drops or disturbs a live connection, and a bad
 * new certificate leaves the old one in place.
 *
 * The session (struct http_tls_conn) is one connection's TLS state on the server thread. It
 * never touches a socket: the server hands it the ciphertext it read (http_tls_conn_feed)
 * and takes back the ciphertext to write (http_tls_conn_take), so GnuTLS runs non-blocking
 * over buffers (its push and pull functions) and the server's libuv read and write callbacks
 * stay the only I/O. Whatever is fed is consumed as far as GnuTLS wants it; the rest is kept
 * for the next call (a pipelined request behind one the loop holds).
 *
 * http_tls_init, http_tls_reload and http_tls_close run on one thread (the coordinator's
 * loop); everything else on the server thread. */
#ifndef CLOUDLESS_HTTP_TLS_H
#define CLOUDLESS_HTTP_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

struct http_tls;

struct http_tls_options {
	const char *cert_file;      /* PEM certificate chain, the server's own first */
	const char *key_file;       /* PEM private key (unencrypted) */
	const char *client_ca_file; /* NULL: no client certificates asked for; else required
	                               and verified against these CAs */
};

/* Loads the credentials. On failure returns -1 with a one-line reason in err. */
int http_tls_init(struct http_tls **out, const struct http_tls_options *o, char *err,
                  size_t errlen);
/* Reads the same files again. 0: new handshakes use them; -1: nothing changed, err says why. */
int http_tls_reload(struct http_tls *t, char *err, size_t errlen);
/* Drops the caller's reference; the credentials go once no connection uses them. */
void http_tls_close(struct http_tls *t);
/* "sha256=<hex> serial=<hex> not_after=<date>" of the certificate new handshakes get. */
void http_tls_describe(struct http_tls *t, char *out, size_t len);

/* ---- one connection (server thread) ---------------------------------------------------- */

struct http_tls_conn;

enum http_tls_status {
	HTTP_TLS_AGAIN = 0,   /* needs more input */
	HTTP_TLS_DONE = 1,    /* the handshake completed */
	HTTP_TLS_CLOSED = -1, /* the peer sent close_notify */
	HTTP_TLS_ERROR = -2,  /* fatal: http_tls_conn_error says what */
};

struct http_tls_conn *http_tls_conn_new(struct http_tls *t);
void http_tls_conn_free(struct http_tls_conn *c);
/* Hands ciphertext to the session (copied only if GnuTLS does not consume it all). */
void http_tls_conn_feed(struct http_tls_conn *c, const char *data, size_t len);
/* True while fed bytes wait to be consumed. */
bool http_tls_conn_has_input(const struct http_tls_conn *c);
bool http_tls_conn_established(const struct http_tls_conn *c);
/* Advances the handshake over what was fed. */
enum http_tls_status http_tls_conn_handshake(struct http_tls_conn *c);
/* Decrypts into dst: the number of bytes (> 0), or HTTP_TLS_AGAIN, _CLOSED or _ERROR. */
long http_tls_conn_read(struct http_tls_conn *c, char *dst, size_t cap);
/* Encrypts len bytes into the output (several calls make one record when they fit). */
void http_tls_conn_write(struct http_tls_conn *c, const void *data, size_t len);
/* Ends the records written since the last flush (see http_tls_conn_write). */
void http_tls_conn_flush(struct http_tls_conn *c);
/* Appends a close_notify alert to the output. */
void http_tls_conn_bye(struct http_tls_conn *c);
/* The ciphertext produced so far, handed over (free() it); NULL when there is none. */
char *http_tls_conn_take(struct http_tls_conn *c, size_t *len);
/* The last fatal error, for the log. */
const char *http_tls_conn_error(const struct http_tls_conn *c);

#endif
