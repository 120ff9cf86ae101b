/* test_http_tls: the server's TLS half (src/http/tls.c) without sockets.
 *
 * Certificates are made here with GnuTLS's own x509 API (a CA, two server certificates, a
 * client certificate) into a temp dir. The credentials tests load good and bad files and
 * reload over them; the session tests run a GnuTLS client against http_tls_conn entirely in
 * memory, the client's push and pull being two byte queues, and feed the server in awkward
 * pieces (one byte at a time, several records at once, a read that stops half-way) to check
 * that nothing is lost or reordered when the server holds ciphertext back. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/tls.h"
#include "testlib.h"

static char dir[] = "/tmp/cloudless-test-http-tls-XXXXXX";

struct pair {
	char cert[256], key[256];
	gnutls_x509_crt_t crt;
	gnutls_x509_privkey_t pk;
};

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void must(int rv, const char *what)
{
	if (rv < 0) {
		fprintf(stderr, "%s: %s\n", what, gnutls_strerror(rv));
		exit(1);
	}
}

/* A certificate for name, signed by ca (self-signed when ca is NULL). */
static void make(struct pair *p, const char *name, struct pair *ca, unsigned serial)
{
	gnutls_datum_t out;
	unsigned char ser[2] = {0x10, (unsigned char)serial};
	must(gnutls_x509_privkey_init(&p->pk), "privkey_init");
	must(gnutls_x509_privkey_generate(p->pk, GNUTLS_PK_ECDSA,
	                                  GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
	     "generate");
	must(gnutls_x509_crt_init(&p->crt), "crt_init");
	gnutls_x509_crt_set_version(p->crt, 3);
	gnutls_x509_crt_set_serial(p->crt, ser, sizeof ser);
	gnutls_x509_crt_set_activation_time(p->crt, time(NULL) - 60);
	gnutls_x509_crt_set_expiration_time(p->crt, time(NULL) + 86400);
	gnutls_x509_crt_set_dn_by_oid(p->crt, GNUTLS_OID_X520_COMMON_NAME, 0, name, strlen(name));
	gnutls_x509_crt_set_key(p->crt, p->pk);
	if (ca == NULL) {
		gnutls_x509_crt_set_basic_constraints(p->crt, 1, -1);
		gnutls_x509_crt_set_key_usage(p->crt, GNUTLS_KEY_KEY_CERT_SIGN);
	} else {
		gnutls_x509_crt_set_basic_constraints(p->crt, 0, -1);
		gnutls_x509_crt_set_key_usage(p->crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
		gnutls_x509_crt_set_subject_alt_name(p->crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
		                                     GNUTLS_FSAN_SET);
	}
	must(gnutls_x509_crt_sign2(p->crt, ca != NULL ? ca->crt : p->crt,
	                           ca != NULL ? ca->pk : p->pk, GNUTLS_DIG_SHA256, 0),
	     "sign");
	snprintf(p->cert, sizeof p->cert, "%s/%s.pem", dir, name);
	snprintf(p->key, sizeof p->key, "%s/%s.key", dir, name);
	must(gnutls_x509_crt_export2(p->crt, GNUTLS_X509_FMT_PEM, &out), "export");
	write_file(p->cert, out.data, out.size);
	gnutls_free(out.data);
	must(gnutls_x509_privkey_export2(p->pk, GNUTLS_X509_FMT_PEM, &out), "export key");
	write_file(p->key, out.data, out.size);
	gnutls_free(out.data);
}

static void drop(struct pair *p)
{
	gnutls_x509_crt_deinit(p->crt);
	gnutls_x509_privkey_deinit(p->pk);
	unlink(p->cert);
	unlink(p->key);
}

static void copy_file(const char *from, const char *to)
{
	gnutls_datum_t d;
	must(gnutls_load_file(from, &d), from);
	write_file(to, d.data, d.size);
	gnutls_free(d.data);
}

static struct pair ca, srv, srv2, cli;

/* ---- credentials ------------------------------------------------------------------------ */

static void test_load_errors(void)
{
	struct http_tls *t = NULL;
	char err[512], path[300];
	struct http_tls_options o = {srv.cert, srv.key, NULL};
	CHECK_EQ_INT(http_tls_init(&t, &o, err, sizeof err), 0);
	http_tls_close(t);

	o.key_file = "/nonexistent/key.pem";
	CHECK_EQ_INT(http_tls_init(&t, &o, err, sizeof err), -1);
	CHECK(t == NULL && strstr(err, "--tls-key /nonexistent/key.pem") != NULL);
	o.key_file = srv2.key; /* another certificate's key */
	CHECK_EQ_INT(http_tls_init(&t, &o, err, sizeof err), -1);
	CHECK(strstr(err, "do not match") != NULL);
	snprintf(path, sizeof path, "%s/garbage.pem", dir);
	write_file(path, "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n", 56);
	o = (struct http_tls_options){path, srv.key, NULL};
	CHECK_EQ_INT(http_tls_init(&t, &o, err, sizeof err), -1);
	CHECK(strstr(err, "--tls-cert") != NULL);
	o = (struct http_tls_options){srv.cert, srv.key, path};
	CHECK_EQ_INT(http_tls_init(&t, &o, err, sizeof err), -1);
	CHECK(strstr(err, "--tls-client-ca") != NULL);
	unlink(path);
}

static void test_reload(void)
{
	struct http_tls *t = NULL;
	char err[512], before[256], after[256], cert[300], key[300];
	snprintf(cert, sizeof cert, "%s/live.pem", dir);
	snprintf(key, sizeof key, "%s/live.key", dir);
	copy_file(srv.cert, cert);
	copy_file(srv.key, key);
	struct http_tls_options o = {cert, key, NULL};
	CHECK_EQ_INT(http_tls_init(&t, &o, err, sizeof err), 0);
	http_tls_describe(t, before, sizeof before);
	CHECK(strncmp(before, "sha256=", 7) == 0 && strstr(before, "serial=1002") != NULL);
	/* A session made now keeps its credentials across the reloads below. */
	struct http_tls_conn *c = http_tls_conn_new(t);
	CHECK(c != NULL);

	copy_file(srv2.cert, cert); /* srv.key stays: a mismatch */
	CHECK_EQ_INT(http_tls_reload(t, err, sizeof err), -1);
	http_tls_describe(t, after, sizeof after);
	CHECK_EQ_STR(after, before);
	copy_file(srv2.key, key);
	CHECK_EQ_INT(http_tls_reload(t, err, sizeof err), 0);
	http_tls_describe(t, after, sizeof after);
	CHECK(strcmp(after, before) != 0 && strstr(after, "serial=1003") != NULL);
	http_tls_close(t); /* the session still holds the first set */
	http_tls_conn_free(c);
	unlink(cert);
	unlink(key);
}

/* ---- sessions in memory ----------------------------------------------------------------- */

struct client {
	gnutls_session_t s;
	gnutls_certificate_credentials_t x;
	char in[1 << 16]; /* from the server */
	size_t in_len, in_off;
	char out[1 << 16]; /* to the server */
	size_t out_len;
};

static ssize_t client_push(gnutls_transport_ptr_t p, const void *d, size_t n)
{
	struct client *c = p;
	if (c->out_len + n > sizeof c->out)
		abort();
	memcpy(c->out + c->out_len, d, n);
	c->out_len += n;
	return (ssize_t)n;
}

static ssize_t client_pull(gnutls_transport_ptr_t p, void *d, size_t n)
{
	struct client *c = p;
	size_t left = c->in_len - c->in_off;
	if (left == 0) {
		gnutls_transport_set_errno(c->s, EAGAIN);
		return -1;
	}
	if (n > left)
		n = left;
	memcpy(d, c->in + c->in_off, n);
	c->in_off += n;
	return (ssize_t)n;
}

static void client_init(struct client *c, bool with_cert)
{
	memset(c, 0, sizeof *c);
	must(gnutls_certificate_allocate_credentials(&c->x), "client creds");
	must(gnutls_certificate_set_x509_trust_file(c->x, ca.cert, GNUTLS_X509_FMT_PEM), "trust");
	if (with_cert)
		must(gnutls_certificate_set_x509_key_file(c->x, cli.cert, cli.key,
		                                          GNUTLS_X509_FMT_PEM),
		     "client cert");
	must(gnutls_init(&c->s, GNUTLS_CLIENT | GNUTLS_NONBLOCK), "client init");
	gnutls_set_default_priority(c->s);
	gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, c->x);
	gnutls_server_name_set(c->s, GNUTLS_NAME_DNS, "localhost", 9);
	gnutls_session_set_verify_cert(c->s, "localhost", 0);
	gnutls_transport_set_ptr(c->s, c);
	gnutls_transport_set_push_function(c->s, client_push);
	gnutls_transport_set_pull_function(c->s, client_pull);
}

static void client_close(struct client *c)
{
	gnutls_deinit(c->s);
	gnutls_certificate_free_credentials(c->x);
}

/* Moves what the server produced to the client. */
static void to_client(struct client *c, struct http_tls_conn *s)
{
	size_t n;
	char *p = http_tls_conn_take(s, &n);
	if (p == NULL)
		return;
	if (c->in_len + n > sizeof c->in)
		abort();
	memcpy(c->in + c->in_len, p, n);
	c->in_len += n;
	free(p);
}

/* Moves what the client produced to the server, `step` bytes per feed. */
static enum http_tls_status to_server(struct client *c, struct http_tls_conn *s, size_t step,
                                      bool handshake)
{
	enum http_tls_status st = HTTP_TLS_AGAIN;
	for (size_t off = 0; off < c->out_len; off += step) {
		size_t n = c->out_len - off < step ? c->out_len - off : step;
		http_tls_conn_feed(s, c->out + off, n);
		if (handshake && !http_tls_conn_established(s))
			st = http_tls_conn_handshake(s);
		if (st == HTTP_TLS_ERROR)
			break;
	}
	c->out_len = 0;
	return st;
}

/* Runs the handshake to its end; the server's status. */
static enum http_tls_status handshake(struct client *c, struct http_tls_conn *s, size_t step)
{
	enum http_tls_status st = HTTP_TLS_AGAIN;
	for (int round = 0; round < 20 && st == HTTP_TLS_AGAIN; round++) {
		int rv = gnutls_handshake(c->s);
		if (rv < 0 && rv != GNUTLS_E_AGAIN)
			return HTTP_TLS_ERROR;
		st = to_server(c, s, step, true);
		if (st == HTTP_TLS_ERROR)
			return st; /* the alert stays with the server, for the test to see */
		to_client(c, s);
	}
	return st;
}

/* gnutls_record_recv on the client, past records with no data for it (the server's session
 * ticket): AGAIN only once its input ran dry. */
static ssize_t client_recv(struct client *c, char *buf, size_t len)
{
	ssize_t n;
	do
		n = gnutls_record_recv(c->s, buf, len);
	while (n == GNUTLS_E_AGAIN && c->in_off < c->in_len);
	return n;
}

static void client_send(struct client *c, const char *text)
{
	CHECK_EQ_INT(gnutls_record_send(c->s, text, strlen(text)), (long long)strlen(text));
}

/* Everything the server can decrypt now, read `cap` bytes at a time. */
static size_t server_read(struct http_tls_conn *s, char *out, size_t max, size_t cap)
{
	size_t len = 0;
	for (;;) {
		long n = http_tls_conn_read(s, out + len, cap < max - len ? cap : max - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	return len;
}

static struct http_tls *server_creds(bool client_ca)
{
	struct http_tls *t = NULL;
	char err[512];
	struct http_tls_options o = {srv.cert, srv.key, client_ca ? ca.cert : NULL};
	if (http_tls_init(&t, &o, err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return t;
}

static void test_session_byte_by_byte(void)
{
	struct http_tls *t = server_creds(false);
	struct http_tls_conn *s = http_tls_conn_new(t);
	struct client c;
	client_init(&c, false);
	CHECK_EQ_INT(handshake(&c, s, 1), HTTP_TLS_DONE);
	CHECK(http_tls_conn_established(s));

	/* Two requests in two records, fed one byte at a time, read 7 bytes at a time. */
	char got[256];
	client_send(&c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
	client_send(&c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
	size_t len = 0;
	for (size_t off = 0; off < c.out_len; off++) {
		http_tls_conn_feed(s, c.out + off, 1);
		len += server_read(s, got + len, sizeof got - 1 - len, 7);
	}
	c.out_len = 0;
	CHECK_EQ_STR(got, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");

	/* The answer in one record, then close_notify: the client reads both. */
	http_tls_conn_write(s, "HTTP/1.1 200 OK\r\n", 17);
	http_tls_conn_write(s, "Content-Length: 0\r\n\r\n", 21);
	http_tls_conn_flush(s);
	http_tls_conn_bye(s);
	to_client(&c, s);
	char resp[128];
	ssize_t n = client_recv(&c, resp, sizeof resp - 1);
	CHECK_EQ_INT(n, 38);
	CHECK_EQ_INT(client_recv(&c, resp, sizeof resp), 0); /* close_notify */
	client_close(&c);
	http_tls_conn_free(s);
	http_tls_close(t);
}

static void test_session_holds_back(void)
{
	struct http_tls *t = server_creds(false);
	struct http_tls_conn *s = http_tls_conn_new(t);
	struct client c;
	client_init(&c, false);
	CHECK_EQ_INT(handshake(&c, s, 4096), HTTP_TLS_DONE);
	/* A TLS 1.3 key update first: a record with nothing for the server's caller, which
	 * must not make the read stop before the data behind it. */
	CHECK_EQ_INT(gnutls_session_key_update(c.s, GNUTLS_KU_PEER), 0);
	/* Two records at once; the server reads only part of the first (as when the loop then
	 * holds the request): the rest must be kept, and come out in order after more input. */
	client_send(&c, "first-record;");
	client_send(&c, "second-record;");
	http_tls_conn_feed(s, c.out, c.out_len);
	c.out_len = 0;
	char got[256];
	CHECK_EQ_INT(http_tls_conn_read(s, got, 5), 5);
	CHECK(http_tls_conn_has_input(s));
	client_send(&c, "third-record");
	http_tls_conn_feed(s, c.out, c.out_len);
	c.out_len = 0;
	size_t len = 5 + server_read(s, got + 5, sizeof got - 6, sizeof got);
	got[len] = '\0';
	CHECK_EQ_STR(got, "first-record;second-record;third-record");
	CHECK(!http_tls_conn_has_input(s));
	CHECK_EQ_INT(http_tls_conn_read(s, got, sizeof got), HTTP_TLS_AGAIN);
	/* The client's close_notify reads as CLOSED. */
	gnutls_bye(c.s, GNUTLS_SHUT_WR);
	http_tls_conn_feed(s, c.out, c.out_len);
	c.out_len = 0;
	CHECK_EQ_INT(http_tls_conn_read(s, got, sizeof got), HTTP_TLS_CLOSED);
	client_close(&c);
	http_tls_conn_free(s);
	http_tls_close(t);
}

static void test_client_certificates(void)
{
	struct http_tls *t = server_creds(true);
	struct client c;
	struct http_tls_conn *s = http_tls_conn_new(t);
	client_init(&c, false);
	CHECK_EQ_INT(handshake(&c, s, 4096), HTTP_TLS_ERROR);
	CHECK(strstr(http_tls_conn_error(s), "TLS handshake failed") != NULL);
	/* The alert that says why is there to be sent, and the client reads it. */
	to_client(&c, s);
	char buf[64];
	CHECK_EQ_INT(client_recv(&c, buf, sizeof buf), GNUTLS_E_FATAL_ALERT_RECEIVED);
	CHECK_EQ_INT(gnutls_alert_get(c.s), GNUTLS_A_CERTIFICATE_REQUIRED);
	client_close(&c);
	http_tls_conn_free(s);

	s = http_tls_conn_new(t);
	client_init(&c, true);
	CHECK_EQ_INT(handshake(&c, s, 4096), HTTP_TLS_DONE);
	client_close(&c);
	http_tls_conn_free(s);
	http_tls_close(t);
}

static void test_garbage(void)
{
	struct http_tls *t = server_creds(false);
	struct http_tls_conn *s = http_tls_conn_new(t);
	/* A handshake record holding an empty ClientHello. */
	static const char junk[] = "\x16\x03\x01\x00\x04\x01\x00\x00\x00";
	http_tls_conn_feed(s, junk, sizeof junk - 1);
	CHECK_EQ_INT(http_tls_conn_handshake(s), HTTP_TLS_ERROR);
	CHECK(!http_tls_conn_established(s));
	http_tls_conn_free(s);
	http_tls_close(t);
}

int main(void)
{
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	make(&ca, "ca", NULL, 1);
	make(&srv, "server", &ca, 2);
	make(&srv2, "server2", &ca, 3);
	make(&cli, "client", &ca, 4);
	test_load_errors();
	test_reload();
	test_session_byte_by_byte();
	test_session_holds_back();
	test_client_certificates();
	test_garbage();
	drop(&ca);
	drop(&srv);
	drop(&srv2);
	drop(&cli);
	rmdir(dir);
	TEST_DONE();
}
