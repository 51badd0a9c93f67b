"""Pebble (Let's Encrypt's ACME test server) and pebble-challtestsrv for end-to-end tests.

Both run on this machine (Debian package ``pebble``), bound to one address only: the gateway
of a lab fleet's podman network. The fleet's containers reach the ACME directory there, the
test reaches the management interfaces there, and pebble's validation authority reaches the
containers' port 80 directly (this machine routes to the fleet network). Nothing listens on a
wildcard address, so two fleets' pebbles never collide.

    with Pebble(workdir, "10.89.7.1", validity_seconds=90 * 86400) as pebble:
        pebble.add_a("www.example.test", "10.89.7.11")
        pebble.directory        # https://10.89.7.1:<port>/dir
        pebble.listener_ca_pem  # what an ACME client must trust to talk to the directory
        pebble.root_pem()       # the root that signs the issued certificates
        pebble.orders()         # how many orders pebble has received

The listener certificate is made here by a throw-away CA (pebble's package does not ship one).
Pebble makes a new issuing root on every start, so ``root_pem`` is fetched from the running
server.
"""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEBBLE = "pebble"
CHALLTESTSRV = "pebble-challtestsrv"
# Deterministic: no random validation sleeps, no rejected nonces, every order validated anew.
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}


class PebbleError(Exception):
    pass


def _die_with_parent():
    """In the child, before exec: get SIGTERM when the test process dies, however it dies
    (Linux prctl PR_SET_PDEATHSIG), so that a killed test run leaves no pebble behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port(address):
    """A TCP port that is free on address right now (the servers bind it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_listener_pki(address, names=("localhost",)):
    """(ca_pem, cert_pem, key_pem): a CA and the directory's server certificate for address
    (and the DNS names ``names``)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder()
          .subject_name(_name("trustzone test pebble listener CA"))
          .issuer_name(_name("trustzone test pebble listener CA"))
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if address != "127.0.0.1":
        sans.append(x509.IPAddress(ipaddress.ip_address(address)))
    cert = (x509.CertificateBuilder()
            .subject_name(_name("pebble"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem).decode(), cert.public_bytes(pem).decode(),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


class Pebble:
    """pebble + pebble-challtestsrv on one address; a context manager that always stops both."""

    def __init__(self, workdir, address, validity_seconds=90 * 86400, http_port=80,
                 dns_server=None):
        """dns_server: "host:port" of a real DNS server for pebble's lookups (no challtestsrv)."""
        for tool in (PEBBLE, CHALLTESTSRV):
            if shutil.which(tool) is None:
                raise PebbleError("%s is not installed: apt-get install -y pebble" % tool)
        self.workdir = Path(workdir)
        self.address = address
        self.validity_seconds = validity_seconds
        self.http_port = http_port
        self.dns_server = dns_server
        self.procs = []
        self.log = self.workdir / "pebble.log"
        self.challtestsrv_log = self.workdir / "challtestsrv.log"

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        a = self.address
        self.acme_port, self.mgmt_port = free_port(a), free_port(a)
        self.dns_port, self.challtest_port = free_port(a), free_port(a)
        self.listener_ca_pem, cert_pem, key_pem = make_listener_pki(a)
        (self.workdir / "listener-ca.pem").write_text(self.listener_ca_pem)
        (self.workdir / "listener.pem").write_text(cert_pem)
        key = self.workdir / "listener.key"
        key.write_text(key_pem)
        key.chmod(0o600)
        config = {"pebble": {
            "listenAddress": "%s:%d" % (a, self.acme_port),
            "managementListenAddress": "%s:%d" % (a, self.mgmt_port),
            "certificate": str(self.workdir / "listener.pem"),
            "privateKey": str(key),
            "httpPort": self.http_port,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "certificateValidityPeriod": self.validity_seconds,
        }}
        (self.workdir / "pebble-config.json").write_text(json.dumps(config, indent=2))
        if self.dns_server is None:
            self._spawn([CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                         "-dns01", "%s:%d" % (a, self.dns_port), "-http01", "", "-https01", "",
                         "-tlsalpn01", "", "-management", "%s:%d" % (a, self.challtest_port)],
                        self.challtestsrv_log)
            self._wait(lambda: self._challtest("/clear-request-history",
                                               {"host": "x", "type": "dns"}),
                       "pebble-challtestsrv")
        dns = self.dns_server or "%s:%d" % (a, self.dns_port)
        self._spawn([PEBBLE, "-config", str(self.workdir / "pebble-config.json"),
                     "-dnsserver", dns, "-strict=false"], self.log, env=PEBBLE_ENV)
        self._wait(lambda: self._get(self.directory), "pebble")
        return self

    def _spawn(self, argv, log, env=None):
        fh = open(log, "ab")
        try:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.workdir,
                                    env=dict(os.environ, **(env or {})),
                                    start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            fh.close()
        self.procs.append(proc)

    def _wait(self, probe, what, seconds=20.0):
        deadline = time.monotonic() + seconds
        last = None
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise PebbleError("%s exited (%s):\n%s\n%s" % (
                        proc.args[0], proc.returncode, self._tail(self.log),
                        self._tail(self.challtestsrv_log)))
            try:
                probe()
                return
            except OSError as exc:
                last = exc
                time.sleep(0.1)
        raise PebbleError("%s did not answer within %.0f s: %s" % (what, seconds, last))

    def stop(self):
        """Stop both servers (SIGTERM, then SIGKILL); safe to call more than once."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs = []

    @staticmethod
    def _tail(path, lines=30):
        try:
            return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- HTTP helpers ----------------------------------------------------------------------

    def _context(self):
        return ssl.create_default_context(cadata=self.listener_ca_pem)

    def _get(self, url):
        with urllib.request.urlopen(url, context=self._context(), timeout=5) as resp:
            return resp.read().decode()

    def _challtest(self, path, body):
        req = urllib.request.Request("http://%s:%d%s" % (self.address, self.challtest_port, path),
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.read().decode()

    # -- what tests use --------------------------------------------------------------------

    @property
    def directory(self):
        return "https://%s:%d/dir" % (self.address, self.acme_port)

    @property
    def challtestsrv_url(self):
        """challtestsrv's management API (the role's challtestsrv DNS provider posts here)."""
        return "http://%s:%d" % (self.address, self.challtest_port)

    def root_pem(self):
        """The root that signs issued certificates (new on every pebble start)."""
        return self._get("https://%s:%d/roots/0" % (self.address, self.mgmt_port))

    def intermediate_pem(self):
        return self._get("https://%s:%d/intermediates/0" % (self.address, self.mgmt_port))

    def add_a(self, host, address):
        """Make challtestsrv's DNS answer host's A query with address."""
        self._challtest("/add-a", {"host": host.rstrip(".") + ".", "addresses": [address]})

    def set_a(self, host, address):
        """Make challtestsrv's DNS answer host's A query with address alone (add_a adds an
        address to those it already answers with)."""
        self._challtest("/clear-a", {"host": host.rstrip(".") + "."})
        self.add_a(host, address)

    def txt_records_set(self):
        """TXT records set through challtestsrv's management API so far: [(host, value)]."""
        return re.findall(r'Added DNS-01 TXT challenge for Host "([^"]+)" - Value "([^"]+)"',
                          self.challtestsrv_log.read_text(errors="replace"))

    def txt_records_cleared(self):
        """Hosts whose TXT records were cleared through the management API so far."""
        return re.findall(r'Removed DNS-01 TXT challenge for Host "([^"]+)"',
                          self.challtestsrv_log.read_text(errors="replace"))

    def requests(self):
        """How many HTTP requests the ACME server has answered since it started (from its log)."""
        return len(re.findall(r" -> calling handler\(\)", self.log.read_text(errors="replace")))

    def orders(self):
        """How many orders pebble has received since it started (from its log)."""
        counts = re.findall(r"There are now (\d+) orders in the db",
                            self.log.read_text(errors="replace"))
        return int(counts[-1]) if counts else 0

    def issued(self):
        """How many certificates pebble has issued since it started (from its log)."""
        return len(re.findall(r"Issued certificate serial", self.log.read_text(errors="replace")))

    def log_text(self):
        return self.log.read_text(errors="replace")
