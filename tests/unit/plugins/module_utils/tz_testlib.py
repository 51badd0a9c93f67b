"""Shared builders for the unit tests: fixed clock, names, key cache, zones, leaves.

Import it by its collection name (works in every pytest import mode):
``from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils import tz_testlib``.
Needs only cryptography.
"""

from __future__ import annotations

import datetime

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
