"""Shared builders for the unit tests: fixed clock, names, key cache, zones, leaves, and a
TLS server on loopback (``TlsServer``, for the probes).

Import it by its collection name (works in every pytest import mode):
``from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils import tz_testlib``.
Needs only cryptography (and the standard library).
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C

UTC = datetime.timezone.utc
# A fixed "now": every time-dependent decision takes ``now`` as a parameter, so no test sleeps
# and none depends on the wall clock.
NOW = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY = datetime.timedelta(days=1)

NAMES = {"common_name": "web1.prod.example", "dns": ["web1", "web1.prod.example"],
         "ip": ["10.0.0.11", "2001:db8::11"]}
OTHER_NAMES = {"common_name": "web2.prod.example", "dns": ["web2", "web2.prod.example"],
               "ip": ["10.0.0.12"]}


class Keys:
    """Session cache of generated keys, keyed by a label, so tests share the slow ones."""

    def __init__(self):
        self._cache = {}

    def get(self, label, spec=None):
        if label not in self._cache:
            spec = spec or _spec_for(label)
            self._cache[label] = C.generate_key(spec)
        return self._cache[label]


def _spec_for(label):
    kind = label.split("#")[0]
    return {
        "ec": {"type": "ec", "curve": "secp256r1"},
        "p256": {"type": "ec", "curve": "secp256r1"},
        "p384": {"type": "ec", "curve": "secp384r1"},
        "rsa": {"type": "rsa", "size": 2048},
        "rsa2048": {"type": "rsa", "size": 2048},
        "rsa3072": {"type": "rsa", "size": 3072},
        "rsa4096": {"type": "rsa", "size": 4096},
        "ed25519": {"type": "ed25519"},
    }[kind]


class Zone:
    """A zone's root CA (key + certificate) with helpers to issue leaves under it."""

    def __init__(self, name, key, cert):
        self.name, self.key, self.cert = name, key, cert

    def leaf(self, public_key, profile=None, *, cn=None, dns=None, ip=None, key_usage=None,
             eku=None, not_before=None, not_after=None, issuer_cert=None, issuer_key=None):
        profile = profile or {}
        return C.build_leaf_certificate(
            public_key,
            C.zone_name_attributes(self.name, cn if cn is not None else
                                   profile.get("common_name", "leaf")),
            dns if dns is not None else profile.get("dns", []),
            ip if ip is not None else profile.get("ip", []),
            issuer_cert if issuer_cert is not None else self.cert,
            issuer_key if issuer_key is not None else self.key,
            not_before if not_before is not None else NOW - DAY,
            not_after if not_after is not None else NOW + 300 * DAY,
            key_usage if key_usage is not None else profile.get("key_usage",
                                                                ["digital_signature"]),
            eku if eku is not None else profile.get("extended_key_usage", ["server_auth"]))


def make_root(key, zone="prod", cn="trustzone prod root CA", not_before=None, not_after=None,
              unique="0123456789abcdef"):
    return C.build_ca_certificate(
        key, C.zone_name_attributes(zone, cn, unique=unique),
        not_before if not_before is not None else NOW - 30 * DAY,
        not_after if not_after is not None else NOW + 3650 * DAY)


def server_context(cert, key, client_ca=None):
    """A server-side TLS context serving ``cert`` (PEM chain file) with ``key``; with
    ``client_ca`` (a PEM file) it demands a client certificate that chains to it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


class TlsServer:
    """A TLS server on 127.0.0.1 (an ephemeral ``port``), one connection at a time in a thread.

    It serves ``cert`` and ``key`` (PEM files); with ``client_ca`` it demands a client
    certificate of that CA (a mutual-TLS zone service), without it asks for none (a front
    door). ``by_name`` maps a server name (SNI) to another ``(cert, key)`` served for that name,
    as nginx's server blocks do. After each handshake it waits up to ``hold`` seconds for the
    client to speak or go, so a client that reads after the handshake sees the connection
    kept. ``peers`` collects what ``getpeercert()`` gave for each handshake. Use it in a
    ``with`` block, or call ``close()``."""

    def __init__(self, cert, key, client_ca=None, by_name=None, hold=3.0):
        self.ctx = server_context(cert, key, client_ca)
        if by_name:
            contexts = {name: server_context(c, k, client_ca) for name, (c, k) in by_name.items()}

            def choose(sock, name, _ctx):
                if name in contexts:
                    sock.context = contexts[name]
            self.ctx.sni_callback = choose
        self.hold = hold
        self.peers = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn = self.sock.accept()[0]
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(self.hold)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.peers.append(tls.getpeercert())
                    try:
                        tls.recv(1)
                    except (OSError, ssl.SSLError):
                        pass
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(self.hold + 2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()
