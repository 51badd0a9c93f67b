"""Bugs the first run of the zone secrets key against a lab fleet found
(tests/e2e/test_secrets.py), each pinned here where the fix is in pure code or a module.

- ``-vvv`` prints a module's raw output before the action plugin sees it: zone_secrets
  returned the zone's keys, and secret the opened value, in clear there. The action plugins
  now hand the module a one-time transport key (a no_log argument, which travels like the CA
  passphrase) and the module returns the secret part of its result sealed under it."""

from __future__ import annotations

import datetime
import json
import os

import pytest

pytest.importorskip("ansible.module_utils.basic")

from ansible_collections.trustzone.pki.plugins.module_utils import _secrets as S  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import secret  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import zone_secrets  # noqa: E402
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (  # noqa: E402
    module_runner, zone_root_runner)

PASS = "ca passphrase for units"
UID, GID = str(os.getuid()), str(os.getgid())
NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch):
    monkeypatch.setattr(S, "SCRYPT_N", 2 ** 10)


def test_transport_round_trip_hides_the_data_and_needs_the_key():
    key = S.new_key()
    data = {"keys": ["k1-" + "x" * 40, "k2-" + "y" * 40], "value": "db password"}
    sealed = S.seal_for_transport(data, key)
    assert isinstance(sealed, str)
    for text in ("x" * 40, "y" * 40, "db password"):
        assert text not in sealed
    assert S.open_from_transport(sealed, key) == data
    with pytest.raises(TrustzoneError, match="transport"):
        S.open_from_transport(sealed, S.new_key())
    with pytest.raises(TrustzoneError, match="transport"):
        S.open_from_transport("not a token", key)
    done = {"changed": False, "sealed_value": sealed, "value": "a clear copy"}
    assert S.from_module(done, "sealed_value", "value", key) == data
    assert done == {"changed": False}
    assert S.from_module({"value": "a clear copy"}, "sealed_value", "value", key) is None


@pytest.fixture
def call():
    return module_runner()


def test_zone_secrets_returns_the_keys_only_sealed_under_the_transport_key(call, tmp_path):
    ca = str(tmp_path / "prod")
    zone_root_runner(passphrase=PASS, owner=UID, group=GID, key_curve="secp256r1")(ca)
    plain = call(zone_secrets, zone="prod", dir=ca, passphrase=PASS)["keys"]
    key = S.new_key()
    done = call(zone_secrets, zone="prod", dir=ca, passphrase=PASS, transport_key=key)
    assert "keys" not in done
    text = json.dumps(done)
    assert all(k not in text for k in plain)
    assert S.open_from_transport(done["sealed_keys"], key) == plain


def test_secret_returns_the_value_only_sealed_under_the_transport_key(call, tmp_path):
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415
    node = tmp_path / "node"
    node.mkdir()
    pkey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secrets")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(pkey.public_key()).serial_number(1)
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=365))
            .add_extension(x509.KeyUsage(False, False, True, False, False, False, False, False,
                                         False), critical=True)
            .sign(pkey, hashes.SHA256()))
    (node / "secrets.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (node / "secrets.key").write_bytes(pkey.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    keys = [S.new_key()]
    ring = {"zone": "prod", "generations": [{"generation": 1, "key": keys[0]}]}
    (node / S.ENVELOPE_FILE).write_text(S.wrap(ring, cert))
    token = S.seal("db password", keys, "prod")
    common = dict(zone="prod", dir=str(node), token=token, owner=UID, group=GID)
    key = S.new_key()
    done = call(secret, transport_key=key, **common)
    assert "value" not in done and "db password" not in json.dumps(done)
    assert done["generation"] == 1
    assert S.open_from_transport(done["sealed_value"], key) == "db password"
    assert call(secret, **common)["value"] == "db password"  # without one: as before
