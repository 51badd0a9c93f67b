"""_probe.observe / probe without a client certificate (the proxy's front door: users have
none), against a real TLS server on loopback; the mutual-TLS path keeps loading the prober's
client certificate."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.trustzone.pki.plugins.module_utils import _probe
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import TlsServer


def self_signed(tmp_path, name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    crt, pem_key = tmp_path / (name + ".crt"), tmp_path / (name + ".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(crt), str(pem_key), cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def server(tmp_path):
    """A TLS server on 127.0.0.1 with a certificate per SNI name (like nginx's server
    blocks); yields (port, {name: sha256 of its DER})."""
    certs = {n: self_signed(tmp_path, n) for n in ("web.example.test", "other.example.test")}
    crt, key, _der = certs["web.example.test"]
    with TlsServer(crt, key, by_name={n: c[:2] for n, c in certs.items()}, hold=0.5) as tls:
        yield tls.port, {n: _probe.fingerprint(c[2]) for n, c in certs.items()}


def test_observe_without_a_client_certificate_sees_the_certificate_for_each_sni(server):
    port, fps = server
    for name in fps:
        seen = _probe.observe({"host": "127.0.0.1", "port": port, "server_name": name},
                              None, None, None, 5)
        assert seen["error"] is None, seen
        assert seen["connected"] and seen["handshake"] and seen["accepted"]
        assert seen["fingerprint"] == fps[name]


def test_probe_without_a_client_certificate_pins_the_exact_certificate(server):
    port, fps = server
    endpoint = {"host": "127.0.0.1", "port": port, "server_name": "web.example.test"}
    sleeps = []
    got = _probe.probe(endpoint, None, None, None, timeout=5, retries=2, delay=0.5,
                       expect_fingerprint=fps["web.example.test"], sleep=sleeps.append)
    assert got["ok"] and got["attempts"] == 1 and sleeps == []
    got = _probe.probe(endpoint, None, None, None, timeout=5, retries=2, delay=0.5,
                       expect_fingerprint=fps["other.example.test"], sleep=sleeps.append)
    assert not got["ok"] and got["attempts"] == 3 and sleeps == [0.5, 0.5]
    assert "not the one just installed" in got["line"]


def test_no_client_certificate_but_a_cafile_still_verifies(server, tmp_path):
    port, _fps = server
    crt, _key, _der = self_signed(tmp_path, "unrelated.example.test")
    seen = _probe.observe({"host": "127.0.0.1", "port": port, "server_name": "web.example.test"},
                          crt, None, None, 5)
    assert not seen["handshake"] and "does not verify" in seen["error"]


def test_client_context_loads_the_client_certificate_when_given(tmp_path):
    crt, key, _der = self_signed(tmp_path, "client.example.test")
    calls = []

    class Spy(ssl.SSLContext):
        def load_cert_chain(self, *args, **kwargs):
            calls.append(args)
            return super().load_cert_chain(*args, **kwargs)

    real = ssl.create_default_context

    def spying(cafile=None):
        ctx = Spy(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile)
        return ctx

    ssl.create_default_context = spying
    try:
        ctx = _probe.client_context(crt, crt, key)
        assert calls == [(crt, key)] and ctx.verify_mode == ssl.CERT_REQUIRED
        calls.clear()
        _probe.client_context(crt, None, None)
        assert calls == []
    finally:
        ssl.create_default_context = real
    bare = _probe.client_context(None, None, None)
    assert bare.verify_mode == ssl.CERT_NONE and not bare.check_hostname


def test_observe_with_unusable_client_files_says_so_and_never_connects(tmp_path):
    def connect(*_a, **_k):
        raise AssertionError("must not connect")
    seen = _probe.observe({"host": "127.0.0.1", "port": 1, "server_name": "x"}, None,
                          str(tmp_path / "missing.crt"), str(tmp_path / "missing.key"), 1,
                          connect=connect)
    assert "cannot be used" in seen["error"] and not seen["connected"]
