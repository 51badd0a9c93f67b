"""_pkcs12: building, reading back, the encryption actually used, and the rewrite decision.

Runs against Debian 12's cryptography 38.0.4 as well as the controller's newer one.
"""

from __future__ import annotations

import pytest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _pkcs12 as PK
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import NAMES

PASS = "correct horse battery staple"


@pytest.fixture(scope="module")
def identity(keys, zone):
    key = keys.get("p256#pkcs12-leaf")
    return key, zone.leaf(key.public_key(), NAMES)


def bundle(identity, zone, choice="modern", name="server", passphrase=PASS, cas=None):
    key, cert = identity
    return PK.build(key, cert, [zone.cert] if cas is None else cas, name, passphrase, choice)


def wanted(identity, zone, name="server", cas=None):
    key, cert = identity
    return PK.contents(key, cert, [zone.cert] if cas is None else cas, name)


# --------------------------------------------------------------------------- build / load

@pytest.mark.parametrize("choice", PK.ENCRYPTIONS)
def test_round_trip_keeps_key_certificate_chain_and_name(identity, zone, choice):
    data = bundle(identity, zone, choice)
    assert PK.load(data, PASS) == wanted(identity, zone)
    loaded = pkcs12.load_pkcs12(data, PASS.encode())
    assert C.same_public_key(loaded.key, identity[1])
    assert loaded.cert.friendly_name == b"server"
    assert [c.certificate for c in loaded.additional_certs] == [zone.cert]


@pytest.mark.parametrize("label", ["rsa4096#pkcs12", "ed25519#pkcs12", "p384#pkcs12"])
def test_round_trip_for_every_key_type(keys, zone, label):
    key = keys.get(label)
    cert = zone.leaf(key.public_key(), NAMES)
    data = PK.build(key, cert, [zone.cert], "client", PASS, "modern")
    assert PK.load(data, PASS) == PK.contents(key, cert, [zone.cert], "client")
    assert PK.matches_encryption(PK.encryption_of(data), "modern")


def test_bundle_without_friendly_name_or_chain(identity, zone):
    key, cert = identity
    data = PK.build(key, cert, [], None, PASS, "legacy")
    assert PK.load(data, PASS) == PK.contents(key, cert, [], None)


def test_unknown_encryption_and_empty_passphrase_are_refused(identity, zone):
    with pytest.raises(TrustzoneError, match="unknown PKCS#12 encryption 'aes'"):
        bundle(identity, zone, "aes")
    with pytest.raises(TrustzoneError, match="needs a passphrase"):
        bundle(identity, zone, passphrase="")


def test_load_with_the_wrong_passphrase_or_garbage_is_an_error(identity, zone):
    data = bundle(identity, zone)
    with pytest.raises(TrustzoneError, match="not a PKCS#12 bundle this passphrase opens"):
        PK.load(data, "not the passphrase")
    with pytest.raises(TrustzoneError):
        PK.load(b"\x30\x03\x02\x01\x03", PASS)


def test_contents_hold_digests_never_key_material(identity, zone):
    key, cert = identity
    summary = PK.contents(key, cert, [zone.cert], "server")
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    text = repr(summary)
    assert der.hex() not in text
    assert C.private_key_pem(key).decode() not in text
    assert summary["key"] != summary["certificate"]
    assert len(summary["key"]) == 64


def test_two_builds_differ_in_bytes_but_not_in_contents(identity, zone):
    first, second = bundle(identity, zone), bundle(identity, zone)
    assert first != second  # random salts and IVs
    assert PK.load(first, PASS) == PK.load(second, PASS)


# --------------------------------------------------------------------------- encryption_of

def test_modern_bundle_uses_pbes2_aes256_and_a_sha256_mac(identity, zone):
    found = PK.encryption_of(bundle(identity, zone, "modern"))
    assert found == {"key": "pbes2/hmac-sha256/aes256-cbc",
                     "certs": "pbes2/hmac-sha256/aes256-cbc", "mac": "sha256"}
    assert PK.matches_encryption(found, "modern")
    assert not PK.matches_encryption(found, "legacy")


def test_legacy_bundle_uses_3des_and_a_sha1_mac(identity, zone):
    found = PK.encryption_of(bundle(identity, zone, "legacy"))
    assert found == {"key": "3des-sha1", "certs": "3des-sha1", "mac": "sha1"}
    assert PK.matches_encryption(found, "legacy")
    assert not PK.matches_encryption(found, "modern")


def test_unencrypted_bundle_is_recognised(identity, zone):
    key, cert = identity
    data = pkcs12.serialize_key_and_certificates(b"x", key, cert, None,
                                                 serialization.NoEncryption())
    found = PK.encryption_of(data)
    assert (found["key"], found["certs"]) == ("none", None)  # OpenSSL 3 still adds a MAC
    assert not PK.matches_encryption(found, "modern")
    assert not PK.matches_encryption(found, "legacy")


def test_a_bundle_from_another_writer_is_judged_by_its_algorithms(identity, zone):
    key, cert = identity
    data = pkcs12.serialize_key_and_certificates(
        b"x", key, cert, None, serialization.BestAvailableEncryption(PASS.encode()))
    found = PK.encryption_of(data)
    # OpenSSL 3 builds: PBES2/AES-256 (modern); older OpenSSL: 3DES - either way it is read
    assert found["key"] in ("pbes2/hmac-sha256/aes256-cbc", "3des-sha1")
    assert found["certs"] == found["key"]
    assert found["mac"] in ("sha256", "sha1")


@pytest.mark.parametrize("data", [b"", b"\x04\x02ab", b"\x30\x82\xff\xff\x02",
                                  b"-----BEGIN CERTIFICATE-----", b"\x30\x03\x02\x01\x03"])
def test_encryption_of_garbage_is_an_error(data):
    with pytest.raises(TrustzoneError, match="not a PKCS#12 bundle"):
        PK.encryption_of(data)


def test_encryption_of_a_truncated_bundle_is_an_error(identity, zone):
    data = bundle(identity, zone)
    with pytest.raises(TrustzoneError, match="not a PKCS#12 bundle"):
        PK.encryption_of(data[: len(data) // 2])


@pytest.mark.parametrize("body,oid", [
    (bytes.fromhex("2a864886f70d010701"), "1.2.840.113549.1.7.1"),
    (bytes.fromhex("60864801650304012a"), "2.16.840.1.101.3.4.1.42"),
    (bytes.fromhex("2b0e03021a"), "1.3.14.3.2.26"),
])
def test_oid_decoding(body, oid):
    assert PK._oid(body) == oid


def test_der_long_lengths_are_read():
    content = b"\x00" * 300
    tag, body, end = PK._read(b"\x04\x82\x01\x2c" + content, 0)
    assert (tag, body, end) == (0x04, content, 304)
    with pytest.raises(ValueError, match="indefinite"):
        PK._read(b"\x30\x80\x00\x00", 0)
    with pytest.raises(ValueError, match="truncated"):
        PK._read(b"\x04\x05ab", 0)


def test_constructed_octet_strings_are_joined():
    assert PK._octets(b"\x24\x08\x04\x02ab\x04\x02cd") == b"abcd"
    with pytest.raises(ValueError, match="expected OCTET STRING"):
        PK._octets(b"\x02\x01\x00")


# --------------------------------------------------------------------------- assess

def test_a_missing_bundle_must_be_written(identity, zone):
    assert PK.assess(None, PASS, wanted(identity, zone), "modern") == ["missing"]


def test_the_same_contents_need_no_rewrite(identity, zone):
    for choice in PK.ENCRYPTIONS:
        assert PK.assess(bundle(identity, zone, choice), PASS, wanted(identity, zone),
                         choice) == []


def test_a_changed_passphrase_makes_the_bundle_unreadable(identity, zone):
    assert PK.assess(bundle(identity, zone), "the old passphrase", wanted(identity, zone),
                     "modern") == ["unreadable"]
    assert PK.assess(b"garbage", PASS, wanted(identity, zone), "modern") == ["unreadable"]


def test_a_renewed_certificate_with_a_new_key_is_noticed(keys, identity, zone):
    key = keys.get("p256#pkcs12-renewed")
    cert = zone.leaf(key.public_key(), NAMES)
    reasons = PK.assess(bundle(identity, zone), PASS, PK.contents(key, cert, [zone.cert],
                                                                  "server"), "modern")
    assert reasons == ["key", "certificate"]


def test_a_renewed_certificate_with_the_same_key_is_noticed(identity, zone):
    key, _cert = identity
    renewed = zone.leaf(key.public_key(), NAMES)
    reasons = PK.assess(bundle(identity, zone), PASS,
                        PK.contents(key, renewed, [zone.cert], "server"), "modern")
    assert reasons == ["certificate"]


def test_a_new_root_order_of_cas_or_name_is_noticed(identity, zone, other_zone):
    existing = bundle(identity, zone)
    assert PK.assess(existing, PASS, wanted(identity, zone, cas=[other_zone.cert]),
                     "modern") == ["ca_certificates"]
    assert PK.assess(existing, PASS, wanted(identity, zone, cas=[]), "modern") == [
        "ca_certificates"]
    two = bundle(identity, zone, cas=[zone.cert, other_zone.cert])
    assert PK.assess(two, PASS, wanted(identity, zone, cas=[other_zone.cert, zone.cert]),
                     "modern") == ["ca_certificates"]
    assert PK.assess(existing, PASS, wanted(identity, zone, name="client"), "modern") == [
        "friendly_name"]


def test_a_changed_encryption_choice_is_noticed(identity, zone):
    assert PK.assess(bundle(identity, zone, "legacy"), PASS, wanted(identity, zone),
                     "modern") == ["encryption"]
    assert PK.assess(bundle(identity, zone, "modern"), PASS, wanted(identity, zone),
                     "legacy") == ["encryption"]


def test_assess_refuses_an_unknown_choice(identity, zone):
    with pytest.raises(TrustzoneError, match="unknown PKCS#12 encryption"):
        PK.assess(None, PASS, wanted(identity, zone), "strong")
