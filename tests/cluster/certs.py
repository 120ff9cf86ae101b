"""Test certificates made with the openssl command (Debian's `openssl` package): a CA, and
certificates it issues for servers (with IP subject alternative names) and clients. Everything
is written under the directory given; nothing is left anywhere else. EC P-256 keys, so a
certificate costs milliseconds. Pki puts them together for a TLS cluster (test_tls.py,
bench/ab.py --b-tls)."""
import hashlib
import os
import shutil
import ssl
import subprocess

_serial = [0x1000]


def _run(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


class Cert:
    def __init__(self, cert, key, serial):
        self.cert = cert
        self.key = key
        self.serial = serial

    def fingerprint(self):
        """SHA-256 of the DER certificate, lower-case hex (what ssl's getpeercert gives)."""
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, stdout=subprocess.PIPE).stdout
        return hashlib.sha256(der).hexdigest()


def make_ca(directory, name="cloudless-test-ca"):
    key = os.path.join(directory, name + ".key")
    cert = os.path.join(directory, name + ".pem")
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Cert(cert, key, None)


def make_cert(directory, ca, name, ips=("127.0.0.1",), days=2):
    """A certificate for name, issued by ca, usable by a server and a client (the coordinators
    present theirs to each other under --tls-client-ca). Returns a Cert with its serial."""
    _serial[0] += 1
    serial = _serial[0]
    key = os.path.join(directory, "%s-%x.key" % (name, serial))
    csr = os.path.join(directory, "%s-%x.csr" % (name, serial))
    cert = os.path.join(directory, "%s-%x.pem" % (name, serial))
    ext = os.path.join(directory, "%s-%x.ext" % (name, serial))
    san = ",".join(["IP:%s" % ip for ip in ips] + ["DNS:localhost"])
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth,clientAuth\n"
                "subjectAltName=%s\n" % san)
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    _run("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial",
         str(serial), "-days", str(days), "-extfile", ext, "-out", cert)
    return Cert(cert, key, serial)


class Pki:
    """A CA, a client certificate and one certificate per node, under directory/pki."""

    def __init__(self, directory):
        self.dir = os.path.join(directory, "pki")
        os.makedirs(self.dir)
        self.ca = make_ca(self.dir)
        self.client = make_cert(self.dir, self.ca, "client")

    def context(self, client_cert=False, ca=True):
        """A client's ssl context: our CA, and the client certificate if asked."""
        ctx = ssl.create_default_context(cafile=self.ca.cert if ca else None)
        if client_cert:
            ctx.load_cert_chain(self.client.cert, self.client.key)
        return ctx

    def node_args(self, node, client_ca=False):
        """A node's TLS flags, with a certificate of its own at fixed paths (what SIGHUP
        reads again): node.cert_path, node.key_path, and node.served (the Cert)."""
        c = make_cert(self.dir, self.ca, node.node_id)
        node.cert_path = os.path.join(self.dir, node.node_id + ".pem")
        node.key_path = os.path.join(self.dir, node.node_id + ".key")
        shutil.copy(c.cert, node.cert_path)
        shutil.copy(c.key, node.key_path)
        node.served = c
        args = ["--tls-cert", node.cert_path, "--tls-key", node.key_path,
                "--ca-file", self.ca.cert]
        if client_ca:
            args += ["--tls-client-ca", self.ca.cert]
        return args
