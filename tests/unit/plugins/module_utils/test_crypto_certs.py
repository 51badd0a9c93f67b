"""_crypto: building roots, intermediates and leaves; PEM parsing; inspection; chains."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _signing as S
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW, Zone, make_root)

ROOT_LABELS = ["p384#root", "p256#root2", "rsa#root", "ed25519#root"]


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def ski_of(cert):
    return ext(cert, x509.SubjectKeyIdentifier).value.digest


def aki_of(cert):
    return ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier


def assert_no_sha1(cert):
    assert not isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    assert "sha1" not in cert.signature_algorithm_oid._name.lower()


# --------------------------------------------------------------------------- roots

@pytest.mark.parametrize("label", ROOT_LABELS)
def test_root_certificate(keys, label):
    key = keys.get(label)
    root = make_root(key)
    bc = ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length is None
    ku = ext(root, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.key_encipherment
    assert C.key_usages_of(root) == ["crl_sign", "digital_signature", "key_cert_sign"]
    assert ext(root, x509.SubjectKeyIdentifier).critical is False
    assert ski_of(root) == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert aki_of(root) == ski_of(root)
    assert root.issuer == root.subject
    assert C.same_public_key(root.public_key(), key)
    assert C.is_signed_by(root, root)
    assert C.basic_constraints_of(root) == (True, None)
    assert C.extended_key_usages_of(root) == []
    assert C.names_of(root) == {"dns": [], "ip": []}
    assert_no_sha1(root)
    assert C.not_before(root) == NOW - 30 * DAY
    assert C.not_after(root) == NOW + 3650 * DAY


@pytest.mark.parametrize("label, digest", [
    ("p384#root", hashes.SHA384), ("p256#root2", hashes.SHA256), ("rsa#root", hashes.SHA256),
])
def test_root_signature_digest(keys, label, digest):
    root = make_root(keys.get(label))
    assert isinstance(root.signature_hash_algorithm, digest)


def test_ed25519_root_has_no_digest(keys):
    root = make_root(keys.get("ed25519#root"))
    assert root.signature_hash_algorithm is None
    assert root.signature_algorithm_oid == x509.SignatureAlgorithmOID.ED25519


def test_root_serials_are_random_and_in_range(zone):
    serials = [make_root(zone.key).serial_number for _i in range(6)] + [zone.cert.serial_number]
    assert len(set(serials)) == len(serials)
    for serial in serials:
        assert 0 < serial < 2 ** 159  # positive, at most 20 octets (RFC 5280)
        # 159 random bits: below 2**64 with probability 2**-95
        assert serial.bit_length() > 64


def test_random_serial():
    values = {C.random_serial() for _i in range(50)}
    assert len(values) == 50
    assert all(0 < v < 2 ** 159 for v in values)


def test_zone_name_attributes():
    name = C.zone_name_attributes("prod", "trustzone prod root CA", unique="abcd")
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "trustzone"
    assert name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "prod"
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "trustzone prod root CA"
    assert name.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "abcd"
    assert not C.zone_name_attributes("prod", "x").get_attributes_for_oid(NameOID.SERIAL_NUMBER)


def test_subject_text_and_common_name(zone):
    assert C.common_name(zone.cert) == "trustzone prod root CA"
    text = C.subject_text(zone.cert)
    assert "CN=trustzone prod root CA" in text and "OU=prod" in text and "O=trustzone" in text


def test_common_name_absent(keys):
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")]))
           .sign(keys.get("p256"), hashes.SHA256()))
    assert C.common_name(csr) is None


# --------------------------------------------------------------------------- intermediates

@pytest.fixture(scope="module")
def intermediate(keys, zone):
    key = keys.get("p256#intermediate")
    cert = C.build_ca_certificate(
        key, C.zone_name_attributes("prod", "trustzone prod issuing CA"), NOW - 10 * DAY,
        NOW + 1000 * DAY, path_length=0, issuer_cert=zone.cert, issuer_key=zone.key)
    return Zone("prod", key, cert)


def test_intermediate_certificate(intermediate, zone):
    cert = intermediate.cert
    assert cert.issuer == zone.cert.subject
    assert cert.subject != zone.cert.subject
    assert C.basic_constraints_of(cert) == (True, 0)
    assert ext(cert, x509.BasicConstraints).critical
    assert ski_of(cert) == x509.SubjectKeyIdentifier.from_public_key(
        intermediate.key.public_key()).digest
    assert aki_of(cert) == ski_of(zone.cert)
    assert C.is_signed_by(cert, zone.cert)
    assert not C.is_signed_by(cert, cert)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)  # the P-384 root signed it


def test_intermediate_from_issuer_without_ski(keys):
    """An issuer without SKI (foreign, old) still yields an AKI: from the issuer's key."""
    key = keys.get("p256#noski")
    old = (x509.CertificateBuilder()
           .subject_name(C.zone_name_attributes("old", "old root"))
           .issuer_name(C.zone_name_attributes("old", "old root"))
           .public_key(key.public_key()).serial_number(1)
           .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(key, hashes.SHA256()))
    child_key = keys.get("p256#noski-child")
    child = C.build_ca_certificate(child_key, C.zone_name_attributes("old", "child"),
                                   NOW - DAY, NOW + DAY, issuer_cert=old, issuer_key=key)
    assert aki_of(child) == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert C.chain_to(child, [], [old]) == [child, old]


# --------------------------------------------------------------------------- leaves

@pytest.fixture(scope="module")
def leaf_key(keys):
    return keys.get("p256#leaf")


@pytest.fixture(scope="module")
def leaf(zone, leaf_key):
    return zone.leaf(leaf_key.public_key(), cn="web1.prod.example",
                     dns=["web1.prod.example", "web1"], ip=["10.0.0.11", "2001:db8::11"],
                     key_usage=["digital_signature"], eku=["server_auth", "client_auth"])


def test_leaf_certificate(leaf, zone, leaf_key):
    bc = ext(leaf, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False and bc.value.path_length is None
    ku = ext(leaf, x509.KeyUsage)
    assert ku.critical
    assert C.key_usages_of(leaf) == ["digital_signature"]
    eku = ext(leaf, x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert C.extended_key_usages_of(leaf) == ["client_auth", "server_auth"]
    san = ext(leaf, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["web1.prod.example", "web1"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.11"),
                                                       ipaddress.ip_address("2001:db8::11")]
    assert C.names_of(leaf) == {"dns": ["web1", "web1.prod.example"],
                                "ip": ["10.0.0.11", "2001:db8::11"]}
    assert aki_of(leaf) == ski_of(zone.cert)
    assert ski_of(leaf) == x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()).digest
    assert leaf.issuer == zone.cert.subject
    assert C.common_name(leaf) == "web1.prod.example"
    assert C.is_signed_by(leaf, zone.cert)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA384)
    assert_no_sha1(leaf)
    assert C.basic_constraints_of(leaf) == (False, None)


@pytest.mark.parametrize("usages", [
    ["digital_signature", "key_encipherment"],
    ["key_agreement"],
    ["digitalSignature", "nonRepudiation"],
])
def test_leaf_key_usage_flags_exactly(zone, leaf_key, usages):
    cert = zone.leaf(leaf_key.public_key(), key_usage=usages)
    wanted = sorted({C.canonical_key_usage(u) for u in usages})
    assert C.key_usages_of(cert) == wanted
    ku = ext(cert, x509.KeyUsage).value
    assert not ku.key_cert_sign and not ku.crl_sign


def test_leaf_without_eku_or_names(zone, leaf_key):
    cert = zone.leaf(leaf_key.public_key(), eku=[], dns=[], ip=[])
    for cls in (x509.ExtendedKeyUsage, x509.SubjectAlternativeName):
        with pytest.raises(x509.ExtensionNotFound):
            ext(cert, cls)
    assert C.extended_key_usages_of(cert) == []
    assert C.names_of(cert) == {"dns": [], "ip": []}
    assert C.other_san_types(cert) == []


def test_leaf_explicit_serial(zone, leaf_key):
    cert = C.build_leaf_certificate(
        leaf_key.public_key(), C.zone_name_attributes("prod", "x"), [], [], zone.cert, zone.key,
        NOW - DAY, NOW + DAY, ["digital_signature"], ["server_auth"], serial=4242)
    assert cert.serial_number == 4242


@pytest.mark.parametrize("issuer_label", ["rsa#root", "ed25519#root"])
def test_leaf_under_rsa_and_ed25519_roots(keys, leaf_key, issuer_label):
    zone = Zone("prod", keys.get(issuer_label), make_root(keys.get(issuer_label)))
    cert = zone.leaf(leaf_key.public_key(), dns=["a.example"])
    assert C.is_signed_by(cert, zone.cert)
    assert C.chain_to(cert, [], [zone.cert]) == [cert, zone.cert]
    assert_no_sha1(cert)


def test_leaf_validity_from_validity_window(zone, leaf_key):
    """Backdated 5 minutes, lifetime from the profile, capped at the issuer's not_after."""
    start, end = S.validity_window(NOW, 90 * 86400, zone.cert)
    cert = zone.leaf(leaf_key.public_key(), not_before=start, not_after=end)
    assert C.not_before(cert) == NOW - datetime.timedelta(minutes=5)
    assert C.not_after(cert) == NOW + 90 * DAY
    # an issuer that ends in 10 days caps the leaf at its own end
    short_root = make_root(zone.key, not_after=NOW + 10 * DAY)
    start, end = S.validity_window(NOW, 90 * 86400, short_root)
    capped = zone.leaf(leaf_key.public_key(), not_before=start, not_after=end,
                       issuer_cert=short_root)
    assert C.not_after(capped) == C.not_after(short_root) == NOW + 10 * DAY


def test_not_before_after_are_aware_utc(leaf):
    for value in (C.not_before(leaf), C.not_after(leaf)):
        assert value.tzinfo is not None
        assert value.utcoffset() == datetime.timedelta(0)


def test_fingerprint(zone):
    fp = C.fingerprint(zone.cert)
    assert fp == zone.cert.fingerprint(hashes.SHA256()).hex()
    assert len(fp) == 64 and fp == fp.lower()


# --------------------------------------------------------------------------- inspection helpers

def test_other_san_types_and_names_of(keys):
    key = keys.get("p256")
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("B.example"), x509.DNSName("a.example"), x509.DNSName("b.example"),
               x509.IPAddress(ipaddress.ip_address("10.0.0.2")),
               x509.IPAddress(ipaddress.ip_address("10.0.0.10")),
               x509.UniformResourceIdentifier("https://evil.example/"),
               x509.RFC822Name("root@evil.example")]), critical=False)
           .sign(key, hashes.SHA256()))
    assert C.names_of(csr) == {"dns": ["a.example", "b.example"],
                               "ip": ["10.0.0.10", "10.0.0.2"]}
    assert C.other_san_types(csr) == ["RFC822Name", "UniformResourceIdentifier"]


def test_extended_key_usages_of_unknown_oid(zone, leaf_key):
    cert = (x509.CertificateBuilder()
            .subject_name(C.zone_name_attributes("prod", "x")).issuer_name(zone.cert.subject)
            .public_key(leaf_key.public_key()).serial_number(7)
            .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING,
                                                  ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(zone.key, hashes.SHA384()))
    assert C.extended_key_usages_of(cert) == [ExtendedKeyUsageOID.CODE_SIGNING.dotted_string,
                                              "server_auth"]
    assert C.key_usages_of(cert) == []
    assert C.basic_constraints_of(cert) is None


# --------------------------------------------------------------------------- PEM parsing

def test_certificate_pem_round_trip(leaf):
    pem = C.certificate_pem(leaf)
    assert isinstance(pem, str) and pem.startswith(C.PEM_CERT_BEGIN)
    assert C.load_certificate(pem) == leaf
    assert C.load_certificate(pem.encode("ascii")) == leaf


def test_load_certificates_bundle(leaf, zone, intermediate):
    bundle = "".join(C.certificate_pem(c) for c in (leaf, intermediate.cert, zone.cert))
    assert C.load_certificates(bundle) == [leaf, intermediate.cert, zone.cert]
    # CRLF, blank lines and explanatory text between blocks are fine
    crlf = ("# the zone's roots\r\n\r\n" + bundle.replace("\n", "\r\n")
            + "\r\n\r\n# end\r\n")
    assert C.load_certificates(crlf.encode("ascii")) == [leaf, intermediate.cert, zone.cert]
    assert C.load_certificates(C.certificate_pem(zone.cert)) == [zone.cert]


def test_load_certificate_single_vs_many(leaf, zone):
    bundle = C.certificate_pem(leaf) + C.certificate_pem(zone.cert)
    with pytest.raises(TrustzoneError) as info:
        C.load_certificate(bundle, path="/etc/trustzone/prod/server.crt")
    assert "expected one certificate, found 2" in str(info.value)
    assert "/etc/trustzone/prod/server.crt" in str(info.value)


def test_non_certificate_blocks_are_rejected(leaf, keys):
    key_pem = C.private_key_pem(keys.get("p256")).decode("ascii")
    for text in (C.certificate_pem(leaf) + key_pem, key_pem + C.certificate_pem(leaf),
                 C.certificate_pem(leaf) + C.csr_pem(C.build_csr(keys.get("p256"), "x"))):
        with pytest.raises(TrustzoneError) as info:
            C.load_certificates(text, path="/b.pem")
        assert "not certificates" in str(info.value)
        assert "/b.pem" in str(info.value)
    with pytest.raises(TrustzoneError, match="no PEM certificate found"):
        C.load_certificates(key_pem)


@pytest.mark.parametrize("data", [b"", "garbage", b"\x00\x01\xff\xfe",
                                  "-----BEGIN CERTIFICATE-----\nno end marker\n"])
def test_garbage_is_rejected(data):
    with pytest.raises(TrustzoneError) as info:
        C.load_certificates(data, path="/x.crt")
    assert info.type is TrustzoneError
    assert "/x.crt" in str(info.value) and info.value.fix


def test_malformed_certificate_block(leaf):
    pem = C.certificate_pem(leaf)
    lines = pem.splitlines()
    truncated = "\n".join(lines[:3] + lines[-1:]) + "\n"  # valid base64, truncated DER
    with pytest.raises(TrustzoneError) as info:
        C.load_certificates(truncated)
    assert "malformed certificate" in str(info.value)
    broken = pem.replace(lines[2], "!!!!" + lines[2][4:])  # not base64: the block is no match
    with pytest.raises(TrustzoneError):
        C.load_certificates(broken)
    # one bad block spoils the bundle: nothing is silently skipped
    with pytest.raises(TrustzoneError):
        C.load_certificates(pem + truncated)


# --------------------------------------------------------------------------- signatures & chains

def test_chain_to_direct_root(leaf, zone):
    assert C.chain_to(leaf, [], [zone.cert]) == [leaf, zone.cert]


def test_chain_to_via_intermediate(intermediate, zone, leaf_key, other_zone):
    leaf = intermediate.leaf(leaf_key.public_key(), cn="via-intermediate")
    assert leaf.issuer == intermediate.cert.subject
    assert C.is_signed_by(leaf, intermediate.cert)
    assert not C.is_signed_by(leaf, zone.cert)
    assert C.chain_to(leaf, [intermediate.cert], [zone.cert]) == [leaf, intermediate.cert,
                                                                  zone.cert]
    # unrelated certificates in the pool and extra roots do not matter
    assert C.chain_to(leaf, [other_zone.cert, intermediate.cert],
                      [other_zone.cert, zone.cert]) == [leaf, intermediate.cert, zone.cert]
    # without the intermediate there is no path
    assert C.chain_to(leaf, [], [zone.cert]) is None


def test_chain_to_foreign_root_is_none(leaf, other_zone, zone):
    assert not C.is_signed_by(leaf, other_zone.cert)
    assert C.chain_to(leaf, [], [other_zone.cert]) is None
    assert C.chain_to(leaf, [zone.cert], [other_zone.cert]) is None
    assert C.chain_to(leaf, [], []) is None


def test_same_subject_different_key_is_not_the_issuer(leaf, zone, keys):
    impostor = make_root(keys.get("p384#impostor"))  # same subject as zone.cert
    assert impostor.subject == zone.cert.subject
    assert not C.is_signed_by(leaf, impostor)
    assert C.chain_to(leaf, [], [impostor]) is None
    assert C.chain_to(leaf, [], [impostor, zone.cert]) == [leaf, zone.cert]


def test_rollover_old_and_new_roots(zone, keys, leaf_key):
    new_key = keys.get("p384#new-root")
    new_root = make_root(new_key, unique="fedcba9876543210")
    new_zone = Zone("prod", new_key, new_root)
    old_leaf = zone.leaf(leaf_key.public_key())
    new_leaf = new_zone.leaf(leaf_key.public_key())
    roots = [zone.cert, new_root]
    assert C.chain_to(old_leaf, [], roots)[-1] == zone.cert
    assert C.chain_to(new_leaf, [], roots)[-1] == new_root
    assert C.chain_to(old_leaf, [], [new_root]) is None


def test_is_signed_by_rejects_tampered_signature(leaf, zone):
    der = bytearray(leaf.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the signature
    tampered = x509.load_der_x509_certificate(bytes(der))
    assert tampered.issuer == zone.cert.subject
    assert not C.is_signed_by(tampered, zone.cert)
    assert C.chain_to(tampered, [], [zone.cert]) is None


def test_chain_to_refuses_a_leaf_as_intermediate(zone, leaf, leaf_key, keys):
    """A node holds a zone leaf and its key; anything it signs with that key must not count as
    issued by the zone."""
    forged = C.build_leaf_certificate(
        keys.get("p256#forged").public_key(), C.zone_name_attributes("prod", "forged"),
        ["db1.prod.example"], [], leaf, leaf_key, NOW - DAY, NOW + DAY,
        ["digital_signature"], ["server_auth"])
    assert C.is_signed_by(forged, leaf)  # the signature itself is fine
    assert C.chain_to(forged, [leaf], [zone.cert]) is None


def test_csr_signature_valid(keys):
    csr = C.build_csr(keys.get("p256"), "x", ["x.example"])
    assert C.csr_signature_valid(csr)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    assert not C.csr_signature_valid(x509.load_der_x509_csr(bytes(der)))


def test_names_show_attribute_names_never_dotted_oids_of_known_attributes():
    """Issue 19: ``serialNumber=...``, not ``2.5.4.5=...``; an OID nobody named stays dotted
    (RFC 4514 has no other way to write it)."""
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "abcd"),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, "pki@example.org"),
                      x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4.5"), "odd"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "trustzone prod root CA")])
    assert C.name_text(name) == ("CN=trustzone prod root CA,1.2.3.4.5=odd,"
                                 "emailAddress=pki@example.org,serialNumber=abcd")
    root = C.zone_name_attributes("prod", "trustzone prod root CA", unique="abcd")
    assert C.name_text(root) == "serialNumber=abcd,CN=trustzone prod root CA,OU=prod,O=trustzone"
