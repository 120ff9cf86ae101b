"""Test certificates made with the openssl command (Debian's `openssl` package): a CA, and
certificates it issues for servers (with IP subject alternative names) and clients. Everything
is written under the directory given; nothing is left anywhere else. EC P-256 keys, so a
certificate costs milliseconds."""
import os
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
        import hashlib
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
