"""_signing.csr_violations (what the CA refuses) and validity_window."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.plugins.module_utils import _signing as S
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW, make_root)


def custom_csr(key, cn="web1.prod.example", dns=("web1.prod.example",), ip=(), others=(),
               extensions=()):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    sans = [x509.DNSName(d) for d in dns] + [
        x509.IPAddress(ipaddress.ip_address(i)) for i in ip] + list(others)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, C.signature_hash(key))


@pytest.fixture
def key(keys):
    return keys.get("p256#csr")


@pytest.fixture
def good_csr(key, server_profile):
    p = server_profile
    return C.build_csr(key, p["common_name"], p["dns"], p["ip"])


def test_valid_csr(good_csr, server_profile):
    assert S.csr_violations(good_csr, server_profile) == []


def test_subset_of_names_is_valid(key, server_profile):
    assert S.csr_violations(custom_csr(key, dns=["web1"], ip=[]), server_profile) == []
    assert S.csr_violations(custom_csr(key, dns=[]), server_profile) == []


def test_names_are_compared_case_insensitively(key, server_profile):
    csr = custom_csr(key, dns=["WEB1.Prod.Example"], ip=["2001:db8:0::11"])
    assert S.csr_violations(csr, server_profile) == []


def test_another_hosts_name(key, server_profile):
    csr = custom_csr(key, dns=["web1.prod.example", "web2.prod.example"])
    assert S.csr_violations(csr, server_profile) == [
        "subjectAltName: web2.prod.example not allowed for this host"]


def test_extra_ip(key, server_profile):
    csr = custom_csr(key, ip=["10.0.0.11", "10.0.0.12", "2001:db8::12"])
    assert S.csr_violations(csr, server_profile) == [
        "subjectAltName: 10.0.0.12, 2001:db8::12 not allowed for this host"]


def test_wrong_common_name(key, server_profile):
    out = S.csr_violations(custom_csr(key, cn="web2.prod.example"), server_profile)
    assert out == ["subject: common name 'web2.prod.example', this host may only be "
                   "'web1.prod.example'"]


def test_missing_common_name(key, server_profile):
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")]))
           .sign(key, C.signature_hash(key)))
    assert S.csr_violations(csr, server_profile) == [
        "subject: common name None, this host may only be 'web1.prod.example'"]


@pytest.mark.parametrize("path_length", [None, 0])
def test_csr_asking_to_be_a_ca(key, server_profile, path_length):
    csr = custom_csr(key, extensions=[(x509.BasicConstraints(ca=True, path_length=path_length),
                                       True)])
    assert S.csr_violations(csr, server_profile) == [
        "basicConstraints: the CSR asks to be a CA"]


def test_csr_with_ca_false_is_fine(key, server_profile):
    csr = custom_csr(key, extensions=[(x509.BasicConstraints(ca=False, path_length=None), True)])
    assert S.csr_violations(csr, server_profile) == []


def ku(**flags):
    base = {n: False for n in C.KEY_USAGES}
    base.update(flags)
    return x509.KeyUsage(encipher_only=False, decipher_only=False, **base)


def test_key_usage_outside_profile(key, server_profile):
    csr = custom_csr(key, extensions=[(ku(digital_signature=True, key_cert_sign=True,
                                          crl_sign=True), True)])
    assert S.csr_violations(csr, server_profile) == [
        "keyUsage: crl_sign, key_cert_sign outside the profile"]


def test_key_usage_inside_profile(key, server_profile):
    csr = custom_csr(key, extensions=[(ku(digital_signature=True), True)])
    assert S.csr_violations(csr, server_profile) == []


@pytest.mark.parametrize("oids, words", [
    ([ExtendedKeyUsageOID.CLIENT_AUTH], "client_auth"),
    ([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING],
     ExtendedKeyUsageOID.CODE_SIGNING.dotted_string),
])
def test_eku_outside_profile(key, server_profile, oids, words):
    csr = custom_csr(key, extensions=[(x509.ExtendedKeyUsage(oids), False)])
    assert S.csr_violations(csr, server_profile) == [
        "extendedKeyUsage: %s outside the profile" % words]


@pytest.mark.parametrize("label, text", [("p384", "EC secp384r1"), ("rsa", "RSA 2048"),
                                         ("ed25519", "ed25519")])
def test_wrong_key_type(keys, server_profile, label, text):
    p = server_profile
    csr = C.build_csr(keys.get(label), p["common_name"], p["dns"], p["ip"])
    assert S.csr_violations(csr, p) == ["key: %s, the profile wants EC secp256r1" % text]


def test_rsa_key_of_the_wrong_size(keys, names):
    profile = I.resolve_profile({"name": "s", "key_type": "rsa", "key_size": 3072}, "prod", "/x",
                                names)
    csr = C.build_csr(keys.get("rsa"), profile["common_name"], profile["dns"], profile["ip"])
    assert S.csr_violations(csr, profile) == ["key: RSA 2048, the profile wants RSA 3072"]


@pytest.mark.parametrize("other, name", [
    (x509.UniformResourceIdentifier("spiffe://prod/web2"), "UniformResourceIdentifier"),
    (x509.RFC822Name("admin@web1.prod.example"), "RFC822Name"),
    (x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])),
     "DirectoryName"),
])
def test_other_san_types_are_never_signed(key, server_profile, other, name):
    csr = custom_csr(key, others=[other])
    assert S.csr_violations(csr, server_profile) == [
        "subjectAltName: entry types %s are never signed" % name]


def test_broken_signature(good_csr, server_profile):
    der = bytearray(good_csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # flip a bit of the signature
    broken = x509.load_der_x509_csr(bytes(der))
    assert S.csr_violations(broken, server_profile) == [
        "signature: the CSR is not signed by its own key"]


def test_everything_wrong_reports_everything(keys, server_profile):
    csr = custom_csr(keys.get("p384"), cn="db1", dns=["db1.prod.example"], ip=["10.9.9.9"],
                     others=[x509.RFC822Name("a@b.example")],
                     extensions=[(x509.BasicConstraints(ca=True, path_length=None), True),
                                 (ku(key_cert_sign=True), True),
                                 (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  False)])
    out = S.csr_violations(csr, server_profile)
    assert [p.split(":")[0] for p in out] == [
        "subject", "subjectAltName", "subjectAltName", "basicConstraints", "keyUsage",
        "extendedKeyUsage", "key"]


# --------------------------------------------------------------------------- validity_window

def test_validity_window_backdates_five_minutes(zone):
    start, end = S.validity_window(NOW, 365 * 86400, zone.cert)
    assert start == NOW - datetime.timedelta(minutes=5)
    assert end == NOW + 365 * DAY


def test_validity_window_custom_backdate(zone):
    start, _end = S.validity_window(NOW, 3600, zone.cert, backdate_seconds=0)
    assert start == NOW


def test_validity_window_capped_by_issuer(zone):
    root = make_root(zone.key, not_before=NOW - datetime.timedelta(seconds=60),
                     not_after=NOW + 10 * DAY)
    start, end = S.validity_window(NOW, 365 * 86400, root)
    assert start == NOW - datetime.timedelta(seconds=60)  # never before the issuer
    assert end == NOW + 10 * DAY                           # never after the issuer


@pytest.mark.parametrize("label", ["p256#facts", "p384#facts", "rsa#facts", "ed25519#facts"])
def test_csr_facts_match_the_helpers(keys, label):
    key = keys.get(label)
    csr = custom_csr(key, dns=["Web1.prod.example", "web1"], ip=["10.0.0.11"],
                     others=[x509.RFC822Name("a@example.org")],
                     extensions=[(x509.BasicConstraints(ca=False, path_length=None), True),
                                 (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  False)])
    facts = C.csr_facts(csr)
    assert facts["cn"] == C.common_name(csr)
    assert {"dns": facts["dns"], "ip": facts["ip"]} == C.names_of(csr)
    assert facts["other_san_types"] == C.other_san_types(csr)
    assert facts["basic_constraints"] == C.basic_constraints_of(csr)
    assert facts["key_usage"] == C.key_usages_of(csr)
    assert facts["extended_key_usage"] == C.extended_key_usages_of(csr)
    assert C.describe_key(facts["public_key"]) == C.describe_key(key)
    assert C.csr_signature_valid(csr, facts["public_key"]) is True


@pytest.mark.parametrize("label", ["p256#facts", "rsa#facts", "ed25519#facts"])
def test_broken_signature_with_a_decoded_key(keys, label):
    csr = custom_csr(keys.get(label))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    broken = x509.load_der_x509_csr(bytes(der))
    assert C.csr_signature_valid(broken, broken.public_key()) is False
    assert C.csr_signature_valid(broken) is False


def test_load_csr_facts_refuses_garbage():
    with pytest.raises(Exception) as info:
        C.load_csr_facts("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                         "-----END CERTIFICATE REQUEST-----\n", path="CSR of web1/server")
    assert "malformed certificate signing request" in str(info.value)
