"""The zone secrets key (module_utils/_secrets.py): keyring decisions, the keyring at rest,
the CMS envelope (with the real openssl both ways), Fernet tokens, and the modules that keep
the keyring on the CA host and open values on a node."""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import subprocess

import pytest

pytest.importorskip("ansible.module_utils.basic")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from ansible_collections.trustzone.pki.plugins.module_utils import _archive as A  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils import _secrets as S  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import ca_passphrase  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import secret  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import secrets_install  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import zone_root  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import zone_secrets  # noqa: E402
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (  # noqa: E402
    module_runner)

NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.timezone.utc)
ROOT1, ROOT2 = "a1" * 32, "b2" * 32
PASS = "ca passphrase for units"
UID, GID = str(os.getuid()), str(os.getgid())
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch):
    monkeypatch.setattr(S, "SCRYPT_N", 2 ** 10)


def keyring(*roots):
    ring, _changes = S.plan(None, "prod", roots[0], NOW)
    for root in roots[1:]:
        ring, _changes = S.plan(ring, "prod", root, NOW)
    return ring


def make_cert(tmp_path, name="n1", key_type="rsa", usage="key_encipherment"):
    key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if key_type == "rsa"
           else ec.generate_private_key(ec.SECP256R1()))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                 data_encipherment=False, key_agreement=False, key_cert_sign=False,
                 crl_sign=False, encipher_only=False, decipher_only=False)
    if usage:
        flags[usage] = True
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.KeyUsage(**flags), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / ("%s.crt" % name), tmp_path / ("%s.key" % name)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, str(cert_path), str(key_path)


def fp(cert):
    return cert.fingerprint(hashes.SHA256()).hex()


# ---------------------------------------------------------------------- the keyring's decisions

def test_first_plan_makes_generation_one_bound_to_the_root():
    ring, changes = S.plan(None, "prod", ROOT1, NOW)
    assert [g["generation"] for g in ring["generations"]] == [1]
    assert ring["generations"][0]["root"] == ROOT1
    assert len(base64.urlsafe_b64decode(ring["generations"][0]["key"])) == 32
    assert changes and "generation 1" in changes[0]


def test_plan_on_its_own_result_changes_nothing():
    ring = keyring(ROOT1)
    again, changes = S.plan(ring, "prod", ROOT1, NOW + datetime.timedelta(days=400))
    assert again == ring and changes == []


def test_a_new_signing_root_adds_a_generation_and_keeps_the_old_one():
    ring = keyring(ROOT1)
    rotated, changes = S.plan(ring, "prod", ROOT2, NOW)
    assert [g["generation"] for g in rotated["generations"]] == [1, 2]
    assert rotated["generations"][0] == ring["generations"][0]
    assert rotated["generations"][1]["key"] != ring["generations"][0]["key"]
    assert "generation 2" in changes[0]
    assert S.plan(rotated, "prod", ROOT2, NOW)[1] == []


def test_retire_drops_older_generations_never_the_newest():
    ring = keyring(ROOT1, ROOT2, "c3" * 32)
    kept, changes = S.plan(ring, "prod", "c3" * 32, NOW, retire_before=3)
    assert [g["generation"] for g in kept["generations"]] == [3]
    assert "retire" in changes[0]
    with pytest.raises(TrustzoneError, match="would retire every key"):
        S.plan(ring, "prod", "c3" * 32, NOW, retire_before=4)
    for bad in (-1, True, "2"):
        with pytest.raises(TrustzoneError, match="retire_before"):
            S.plan(ring, "prod", "c3" * 32, NOW, retire_before=bad)


def test_no_root_no_keyring():
    with pytest.raises(TrustzoneError, match="no root yet"):
        S.plan(None, "prod", "", NOW)


def test_bound_root_is_the_signing_root():
    fps = {"root": ROOT1, "next": ROOT2}
    assert S.bound_root("stable", {"root": ROOT1}) == ROOT1
    assert S.bound_root("trust", fps) == ROOT1
    assert S.bound_root("use", fps) == ROOT2


# ---------------------------------------------------------------------- at rest

def test_keyring_at_rest_opens_only_with_the_passphrase():
    ring = keyring(ROOT1, ROOT2)
    data = S.lock(ring, PASS)
    for g in ring["generations"]:
        assert g["key"].encode() not in data
    assert PASS.encode() not in data
    assert S.unlock(data, PASS, "prod", "f") == ring
    with pytest.raises(TrustzoneError, match="passphrase does not open"):
        S.unlock(data, PASS + "x", "prod", "f")
    with pytest.raises(TrustzoneError, match="of zone 'prod', not of zone 'dev'"):
        S.unlock(data, PASS, "dev", "f")
    assert S.lock(ring, PASS) != data  # a fresh salt every time


def test_keyring_at_rest_tampered_or_damaged_is_refused():
    data = S.lock(keyring(ROOT1), PASS)
    outer = json.loads(data)
    token = outer["fernet"]
    outer["fernet"] = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    with pytest.raises(TrustzoneError, match="does not open|altered"):
        S.unlock(json.dumps(outer).encode(), PASS, "prod", "f")
    for damaged in (b"", b"{", data[:50], json.dumps(dict(outer, kdf={"name": "md5"})).encode(),
                    json.dumps(dict(json.loads(data), kdf=dict(json.loads(data)["kdf"],
                                                               n=2 ** 30))).encode()):
        with pytest.raises(TrustzoneError, match="not a readable"):
            S.unlock(damaged, PASS, "prod", "f")


def test_keyring_generations_out_of_order_are_refused():
    ring = keyring(ROOT1, ROOT2)
    ring["generations"].reverse()
    with pytest.raises(TrustzoneError, match="out of order"):
        S.check_keyring(ring, "prod", "f")
    bad = keyring(ROOT1)
    bad["generations"][0]["key"] = "short"
    with pytest.raises(TrustzoneError, match="256-bit"):
        S.check_keyring(bad, "prod", "f")


def test_rekey_moves_the_keyring_to_the_new_passphrase_once():
    ring = keyring(ROOT1)
    data = S.lock(ring, PASS)
    new = S.rekey(data, PASS, "the new passphrase", "prod", "f")
    assert S.unlock(new, "the new passphrase", "prod", "f") == ring
    assert S.rekey(new, PASS, "the new passphrase", "prod", "f") is None
    with pytest.raises(TrustzoneError, match="passphrase does not open"):
        S.rekey(data, "neither one", "nor this one", "prod", "f")


# ---------------------------------------------------------------------- values

def test_seal_and_open_round_trip_and_name_the_generation():
    ring = keyring(ROOT1)
    keys = S.keys_newest_first(ring)
    token = S.seal("p\u00e4ss word", keys, "prod")
    assert "p" not in token.split("gAAAA", 1)[0]
    assert S.open_token(token, keys, "prod") == "p\u00e4ss word".encode()
    assert S.generation_of(token, [(1, keys[0])], "prod") == 1


def test_values_sealed_before_a_rotation_open_after_it_and_new_ones_use_the_new_key():
    ring = keyring(ROOT1)
    old_token = S.seal("before", S.keys_newest_first(ring), "prod")
    rotated, _changes = S.plan(ring, "prod", ROOT2, NOW)
    keys = S.keys_newest_first(rotated)
    assert S.open_token(old_token, keys, "prod") == b"before"
    by_gen = [(g["generation"], g["key"]) for g in reversed(rotated["generations"])]
    assert S.generation_of(old_token, by_gen, "prod") == 1
    new_token = S.seal("after", keys, "prod")
    assert S.generation_of(new_token, by_gen, "prod") == 2
    with pytest.raises(TrustzoneError, match="does not open"):
        S.open_token(new_token, S.keys_newest_first(ring), "prod")  # the old keyring


def test_a_retired_generation_no_longer_opens_and_reseal_saves_the_value_first():
    ring = keyring(ROOT1)
    old_token = S.seal("kept", S.keys_newest_first(ring), "prod")
    rotated, _c = S.plan(ring, "prod", ROOT2, NOW)
    resealed = S.reseal(old_token, S.keys_newest_first(rotated), "prod")
    retired, _c = S.plan(rotated, "prod", ROOT2, NOW, retire_before=2)
    keys = S.keys_newest_first(retired)
    assert S.open_token(resealed, keys, "prod") == b"kept"
    with pytest.raises(TrustzoneError, match="retired generation"):
        S.open_token(old_token, keys, "prod")


def test_another_zones_key_and_a_tampered_token_are_refused_naming_the_zone():
    token = S.seal("x", S.keys_newest_first(keyring(ROOT1)), "prod")
    with pytest.raises(TrustzoneError, match="zone 'dev'"):
        S.open_token(token, S.keys_newest_first(keyring(ROOT1)), "dev")
    keys = S.keys_newest_first(keyring(ROOT1))
    token = S.seal("x", keys, "prod")
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[-40] ^= 1
    with pytest.raises(TrustzoneError, match="altered"):
        S.open_token(base64.urlsafe_b64encode(bytes(raw)).decode(), keys, "prod")
    for bad in ("", None, 5):
        with pytest.raises(TrustzoneError):
            S.open_token(bad, keys, "prod")
    with pytest.raises(TrustzoneError, match="must be a string"):
        S.seal(5, keys, "prod")


# ---------------------------------------------------------------------- the envelope

def test_recipient_is_only_the_ledgers_valid_certificate(tmp_path):
    cert, _c, _k = make_cert(tmp_path)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert fp(S.recipient("n1", pem, {"secrets": [fp(cert)]})) == fp(cert)
    with pytest.raises(TrustzoneError, match="no valid 'secrets' certificate"):
        S.recipient("n1", pem, {})
    with pytest.raises(TrustzoneError, match="not its valid one"):
        S.recipient("n1", pem, {"secrets": ["00" * 32]})
    with pytest.raises(TrustzoneError, match="no readable"):
        S.recipient("n1", b"garbage", {"secrets": [fp(cert)]})


@pytest.mark.parametrize("key_type, usage, error", [
    ("ec", "key_agreement", "not RSA"), ("rsa", "digital_signature", "key encipherment"),
    ("rsa", None, "key encipherment")])
def test_recipient_needs_an_rsa_key_transport_certificate(tmp_path, key_type, usage, error):
    cert, _c, _k = make_cert(tmp_path, key_type=key_type, usage=usage)
    with pytest.raises(TrustzoneError, match=error):
        S.recipient("n1", cert.public_bytes(serialization.Encoding.PEM),
                    {"secrets": [fp(cert)]})


@needs_openssl
def test_our_envelope_opens_with_openssl_cms(tmp_path):
    cert, cert_path, key_path = make_cert(tmp_path)
    ring = keyring(ROOT1, ROOT2)
    envelope = S.wrap(ring, cert)
    out = subprocess.run(S.openssl_decrypt_argv(OPENSSL, key_path, cert_path),
                         input=envelope.encode(), capture_output=True, check=True).stdout
    keys = S.parse_content(out, "prod", "e")
    assert [k for _g, k in keys] == S.keys_newest_first(ring)
    printed = subprocess.run([OPENSSL, "cms", "-cmsout", "-print", "-inform", "PEM"],
                             input=envelope.encode(), capture_output=True, check=True).stdout
    assert b"aes-256-cbc" in printed and b"rsaEncryption" in printed


@needs_openssl
def test_an_openssl_envelope_opens_with_our_code_both_ways(tmp_path, monkeypatch):
    _cert, cert_path, key_path = make_cert(tmp_path)
    ring = keyring(ROOT1)
    made = subprocess.run([OPENSSL, "cms", "-encrypt", "-binary", "-aes256", "-outform", "PEM",
                           cert_path], input=S.content(ring), capture_output=True,
                          check=True).stdout
    plain = S.unwrap_with_cryptography(made, open(cert_path, "rb").read(),
                                       open(key_path, "rb").read())
    assert S.parse_content(plain, "prod", "e")[0][1] == S.keys_newest_first(ring)[0]

    def run(argv, data):
        done = subprocess.run(argv, input=data, capture_output=True, check=False)
        return done.returncode, done.stdout, done.stderr
    for with_cryptography in (True, False):
        monkeypatch.setattr(S, "can_unwrap_with_cryptography", lambda w=with_cryptography: w)
        keys = S.unwrap_on_node(made, cert_path, key_path, run, "prod", "e")
        assert [k for _g, k in keys] == S.keys_newest_first(ring)


@needs_openssl
@pytest.mark.parametrize("with_cryptography", [True, False])
def test_an_envelope_for_another_node_or_zone_does_not_open(
        tmp_path, monkeypatch, with_cryptography):
    monkeypatch.setattr(S, "can_unwrap_with_cryptography", lambda: with_cryptography)
    other, _oc, _ok = make_cert(tmp_path, name="other")
    _cert, cert_path, key_path = make_cert(tmp_path)

    def run(argv, data):
        done = subprocess.run(argv, input=data, capture_output=True, check=False)
        return done.returncode, done.stdout, done.stderr
    with pytest.raises(TrustzoneError, match="does not open with this node's secrets key"):
        S.unwrap_on_node(S.wrap(keyring(ROOT1), other).encode(), cert_path, key_path, run,
                         "prod", "e")
    mine = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
    with pytest.raises(TrustzoneError, match="of zone 'prod', not of zone 'dev'"):
        S.unwrap_on_node(S.wrap(keyring(ROOT1), mine).encode(), cert_path, key_path, run,
                         "dev", "e")


def test_install_decision():
    assert S.install_decision(["a", "b"], ["a", "b"]) is None
    assert "can open" in S.install_decision(None, ["a"])
    assert "changed" in S.install_decision(["a"], ["b", "a"])


# ---------------------------------------------------------------------- the modules

@pytest.fixture
def call():
    return module_runner()


@pytest.fixture
def ca(tmp_path, call):
    path = str(tmp_path / "ca" / "prod")
    os.makedirs(os.path.dirname(path))
    call(zone_root, zone="prod", dir=path, passphrase=PASS, owner=UID, group=GID,
         key_curve="secp256r1")
    return path


def secrets(call, path, check=False, **params):
    return call(zone_secrets, check, zone="prod", dir=path, passphrase=PASS, **params)


def test_zone_secrets_keeps_one_keyring_in_the_ca_state(call, ca):
    check = secrets(call, ca, check=True)
    assert check["changed"] and "keys" not in check
    assert CaDir(ca).load().files.get(S.KEYRING_FILE) is None
    first = secrets(call, ca)
    assert first["changed"] and len(first["keys"]) == 1
    state = CaDir(ca).load()
    assert state.stats[S.KEYRING_FILE][0] == 0o600
    assert S.keys_newest_first(S.unlock(state.files[S.KEYRING_FILE], PASS, "prod", "f")) \
        == first["keys"]
    again = secrets(call, ca)
    assert not again["changed"] and again["keys"] == first["keys"]
    assert CaDir(ca).load().source == state.source  # nothing written
    assert not secrets(call, ca, check=True)["changed"]


def test_zone_secrets_adds_a_generation_when_a_rotation_makes_a_new_root_sign(call, ca):
    first = secrets(call, ca)
    common = dict(zone="prod", dir=ca, passphrase=PASS, owner=UID, group=GID,
                  key_curve="secp256r1")
    call(zone_root, rotate="trust", rotate_force=True, **common)
    assert not secrets(call, ca)["changed"]  # trust phase: the old root still signs
    call(zone_root, rotate="use", **common)
    used = secrets(call, ca)
    assert used["changed"] and [g["generation"] for g in used["generations"]] == [1, 2]
    assert used["keys"][1] == first["keys"][0]
    assert not secrets(call, ca)["changed"]
    retired = secrets(call, ca, retire_before=2)
    assert retired["keys"] == used["keys"][:1]


def test_zone_secrets_survives_a_crash_between_any_two_writes(call, ca, monkeypatch):
    from ansible_collections.trustzone.pki.plugins.module_utils import _ca  # noqa: PLC0415
    before = CaDir(ca).load()
    real_rename = _ca.Fs.rename
    steps = {"n": 0}

    def crashing(self, src, dst):
        steps["n"] += 1
        raise OSError("crash before rename %d" % steps["n"])
    monkeypatch.setattr(_ca.Fs, "rename", crashing)
    with pytest.raises(OSError):
        secrets(call, ca)
    assert CaDir(ca).load().files == before.files  # still the old state, no keyring
    monkeypatch.setattr(_ca.Fs, "rename", real_rename)
    assert secrets(call, ca)["changed"]
    assert S.KEYRING_FILE in CaDir(ca).load().files


def test_zone_secrets_wrong_passphrase_is_one_clear_error(call, ca):
    secrets(call, ca)
    with pytest.raises(TrustzoneError):
        call(zone_secrets, zone="prod", dir=ca, passphrase="not the CA passphrase")


def test_a_passphrase_change_takes_the_keyring_along(call, ca):
    keys = secrets(call, ca)["keys"]
    new = "a brand new CA passphrase"
    done = call(ca_passphrase, zone="prod", dir=ca, passphrase=PASS, new_passphrase=new)
    assert S.KEYRING_FILE in done["keys"]
    data = CaDir(ca).load().files[S.KEYRING_FILE]
    assert S.keys_newest_first(S.unlock(data, new, "prod", "f")) == keys
    with pytest.raises(TrustzoneError):
        S.unlock(data, PASS, "prod", "f")
    again = call(ca_passphrase, zone="prod", dir=ca, passphrase=PASS, new_passphrase=new)
    assert not again["changed"] and S.KEYRING_FILE in again["already"]


def test_a_backup_check_opens_the_keyring_with_the_ca_passphrase(call, ca):
    secrets(call, ca)
    files = {}
    for base, _dirs, names in os.walk(ca):
        for name in names:
            full = os.path.join(base, name)
            files[os.path.relpath(full, ca)] = (0o600, open(full, "rb").read())
    A.check_ca_files(files, PASS, where="directory")
    with pytest.raises(TrustzoneError):
        A.check_ca_files(files, "some other passphrase", where="directory")


@pytest.fixture
def node(tmp_path, call, ca):
    """A node directory holding a secrets certificate the ledger does not know, and the
    keyring wrapped to it (as the action plugin would, given the ledger's word)."""
    zone_dir = tmp_path / "node"
    zone_dir.mkdir()
    cert, cert_path, key_path = make_cert(zone_dir, name="secrets")
    keys = secrets(call, ca)["keys"]
    ring = {"zone": "prod", "generations": [{"generation": 1, "key": keys[0]}]}
    return {"dir": str(zone_dir), "envelope": S.wrap(ring, cert), "key_ids": [S.key_id(keys[0])],
            "keys": keys, "cert_path": cert_path}


def install(call, node, check=False, **params):
    return call(secrets_install, check, zone="prod", dir=node["dir"], envelope=node["envelope"],
                key_ids=node["key_ids"], owner=UID, group=GID, **params)


def test_secrets_install_writes_once_and_keeps_a_randomised_envelope(call, node):
    path = os.path.join(node["dir"], S.ENVELOPE_FILE)
    assert install(call, node, check=True)["changed"] and not os.path.exists(path)
    assert install(call, node)["changed"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    first = open(path, "rb").read()
    cert = x509.load_pem_x509_certificate(open(node["cert_path"], "rb").read())
    ring = {"zone": "prod", "generations": [{"generation": 1, "key": node["keys"][0]}]}
    again = install(call, dict(node, envelope=S.wrap(ring, cert)))  # another random envelope
    assert not again["changed"] and open(path, "rb").read() == first
    os.chmod(path, 0o644)
    assert install(call, node)["reason"] == "owner or mode"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_secrets_install_replaces_an_envelope_when_the_keys_change(call, node):
    install(call, node)
    new_ids = ["0" * 16] + node["key_ids"]
    with pytest.raises(TrustzoneError, match="other keys"):
        install(call, dict(node, key_ids=new_ids))  # an envelope that lacks the new key
    with pytest.raises(TrustzoneError, match="lets every user read"):
        install(call, node, mode="0644")


def test_secret_opens_into_a_file_idempotently_and_refuses_other_zones(call, node, tmp_path):
    install(call, node)
    token = S.seal("db password", node["keys"], "prod")
    dest = str(tmp_path / "db.pass")
    common = dict(zone="prod", dir=node["dir"], token=token, owner=UID, group=GID)
    assert call(secret, True, dest=dest, **common)["changed"] and not os.path.exists(dest)
    done = call(secret, dest=dest, **common)
    assert done["changed"] and done["generation"] == 1 and "value" not in done
    assert open(dest, "rb").read() == b"db password"
    assert oct(os.stat(dest).st_mode & 0o777) == "0o600"
    assert not call(secret, dest=dest, **common)["changed"]
    assert call(secret, **common)["value"] == "db password"
    other = S.seal("x", S.keys_newest_first(keyring(ROOT1)), "dev")
    with pytest.raises(TrustzoneError, match="zone 'prod'"):
        call(secret, **dict(common, token=other))
    os.unlink(os.path.join(node["dir"], S.ENVELOPE_FILE))
    with pytest.raises(TrustzoneError, match="holds no zone secrets key"):
        call(secret, **common)


def test_check_not_older_refuses_to_lose_a_generation_a_node_holds():
    S.check_not_older(None, [(1, "a")], "f")
    S.check_not_older([(2, "b"), (1, "a")], [(2, "b")], "f")  # retiring gen 1 is fine
    S.check_not_older([(1, "a")], [(2, "b"), (1, "a")], "f")  # a new generation is fine
    with pytest.raises(TrustzoneError, match="generation 2, which the CA's keyring lacks"):
        S.check_not_older([(2, "b"), (1, "a")], [(1, "a")], "f")
    with pytest.raises(TrustzoneError, match="generation 1 with another key"):
        S.check_not_older([(1, "a")], [(1, "z")], "f")


def test_secrets_install_keeps_a_newer_keyring_than_a_restored_ca_offers(call, node):
    """A CA restored from an old backup offers generation 1 only; the node holds 1 and 2."""
    cert = x509.load_pem_x509_certificate(open(node["cert_path"], "rb").read())
    gens = [{"generation": 1, "key": node["keys"][0]}, {"generation": 2, "key": S.new_key()}]
    newer = {"zone": "prod", "generations": gens}
    path = os.path.join(node["dir"], S.ENVELOPE_FILE)
    ids = [S.key_id(g["key"]) for g in reversed(newer["generations"])]
    install(call, dict(node, envelope=S.wrap(newer, cert), key_ids=ids))
    before = open(path, "rb").read()
    with pytest.raises(TrustzoneError, match="restored from an older backup"):
        install(call, node)  # generation 1 only
    assert open(path, "rb").read() == before
