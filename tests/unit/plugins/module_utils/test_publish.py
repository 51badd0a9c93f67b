"""_publish: the zone's base URL, a CA's id, the CDP/AIA extensions of a leaf, the files."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _publish as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW, make_root)

BASE = "http://pki.prod.example/trustzone/prod"


# --------------------------------------------------------------------------- check_url

@pytest.mark.parametrize("value, want", [
    (None, None), ("", None), ("  ", None),
    (BASE, BASE),
    (BASE + "/", BASE),
    ("HTTP://PKI.prod.example:8080/a/b/", "http://pki.prod.example:8080/a/b"),
    ("https://pki.prod.example", "https://pki.prod.example"),
    ("http://10.0.0.5/crl", "http://10.0.0.5/crl"),
    ("http://[2001:db8::5]/crl", "http://[2001:db8::5]/crl"),
])
def test_check_url_accepts_http_base_urls(value, want):
    assert P.check_url(value) == want


@pytest.mark.parametrize("value, problem", [
    ("ftp://pki.example/x", "scheme"),
    ("pki.example/x", "scheme"),
    ("http:///x", "no host"),
    ("http://user:pw@pki.example/x", "user name"),
    ("http://pki.example/x?a=1", "query"),
    ("http://pki.example/x?", "query"),
    ("http://pki.example/x#top", "fragment"),
    ("http://pki.example/a b", "plain path"),
    ("http://pki.example/a/../b", "plain path"),
    ("http://pki.example:99999/x", "not a URL"),
    (42, "must be a URL"),
])
def test_check_url_refuses_anything_else_in_one_line_naming_the_variable(value, problem):
    with pytest.raises(TrustzoneError) as err:
        P.check_url(value)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("trustzone_ca_publish_url")
    assert problem in text
    assert "Fix: set trustzone_ca_publish_url" in text


def test_url_parts():
    assert P.url_parts(BASE) == {"url": BASE, "host": "pki.prod.example", "port": 80,
                                 "path": "/trustzone/prod"}
    assert P.url_parts("https://pki.example:8443") == {
        "url": "https://pki.example:8443", "host": "pki.example", "port": 8443, "path": "/"}
    assert P.url_parts("http://[2001:db8::5]/x")["host"] == "2001:db8::5"
    with pytest.raises(TrustzoneError, match="trustzone_ca_publish_url is not set"):
        P.url_parts(None)


# --------------------------------------------------------------------------- ids

def test_ca_id_is_the_hex_subject_key_identifier(zone):
    ski = zone.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert P.ca_id(zone.cert) == ski.digest.hex()
    assert len(P.ca_id(zone.cert)) == 40


def bare_certificate(key, label):
    """A self-signed certificate without key identifiers (SKI, AKI)."""
    name = C.zone_name_attributes("prod", label)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
            .sign(key, C.signature_hash(key)))


def test_ca_id_without_the_extension_is_computed_from_the_key(keys):
    key = keys.get("p256#noski")
    cert = bare_certificate(key, "no ski")
    assert P.ca_id(cert) == x509.SubjectKeyIdentifier.from_public_key(
        key.public_key()).digest.hex()


def test_a_leaf_and_its_crl_name_their_issuer_by_the_same_id(keys, zone):
    leaf = zone.leaf(keys.get("p256#leaf").public_key())
    crl = C.build_crl(zone.cert, zone.key, [], NOW, NOW + DAY, 1)
    assert P.authority_id(leaf) == P.authority_id(crl) == P.ca_id(zone.cert)


def test_authority_id_of_a_certificate_without_aki_is_none(keys):
    assert P.authority_id(bare_certificate(keys.get("p256#noaki"), "bare")) is None


# --------------------------------------------------------------------------- extensions

def test_leaf_extensions_point_at_the_issuers_crl_and_certificate(keys, zone):
    exts = P.leaf_extensions(BASE, zone.cert)
    cid = P.ca_id(zone.cert)
    assert [critical for _e, critical in exts] == [False, False]
    cdp, aia = exts[0][0], exts[1][0]
    assert isinstance(cdp, x509.CRLDistributionPoints)
    assert [n.value for n in cdp[0].full_name] == ["%s/%s.crl" % (BASE, cid)]
    assert cdp[0].reasons is None and cdp[0].crl_issuer is None
    assert isinstance(aia, x509.AuthorityInformationAccess)
    assert [(d.access_method, d.access_location.value) for d in aia] == [
        (AuthorityInformationAccessOID.CA_ISSUERS, "%s/%s.crt" % (BASE, cid))]


def test_no_base_url_no_extensions(zone):
    assert P.leaf_extensions(None, zone.cert) == []
    assert P.leaf_extensions("", zone.cert) == []


def test_a_leaf_signed_with_them_carries_them_non_critical(keys, zone):
    leaf = C.build_leaf_certificate(
        keys.get("p256#leaf").public_key(), C.zone_name_attributes("prod", "web1"), ["web1"], [],
        zone.cert, zone.key, NOW - DAY, NOW + DAY, ["digital_signature"], ["server_auth"],
        extensions=P.leaf_extensions(BASE, zone.cert))
    for oid in (ExtensionOID.CRL_DISTRIBUTION_POINTS, ExtensionOID.AUTHORITY_INFORMATION_ACCESS):
        assert leaf.extensions.get_extension_for_oid(oid).critical is False
    cid = P.ca_id(zone.cert)
    assert P.urls_of(leaf) == {"crl": ["%s/%s.crl" % (BASE, cid)],
                               "ca_issuers": ["%s/%s.crt" % (BASE, cid)]}
    assert P.distribution_reason(leaf, BASE) is None
    assert P.distribution_reason(leaf, "http://elsewhere.example/x") is not None
    assert "none" in P.distribution_reason(leaf, None)


def test_distribution_reason_of_a_leaf_without_urls(keys, zone):
    leaf = zone.leaf(keys.get("p256#leaf").public_key())
    assert P.urls_of(leaf) == {"crl": [], "ca_issuers": []}
    assert P.distribution_reason(leaf, None) is None
    detail = P.distribution_reason(leaf, BASE)
    assert detail.startswith("distribution point none and caIssuers none, the zone wants ")
    assert "%s/%s.crl" % (BASE, P.ca_id(zone.cert)) in detail


def test_an_intermediate_signed_leaf_names_the_intermediate(keys, zone):
    ikey = keys.get("p256#intermediate")
    inter = C.build_ca_certificate(ikey, C.zone_name_attributes("prod", "intermediate"),
                                   NOW - DAY, NOW + 100 * DAY, path_length=0,
                                   issuer_cert=zone.cert, issuer_key=zone.key)
    leaf = C.build_leaf_certificate(
        keys.get("p256#leaf").public_key(), C.zone_name_attributes("prod", "web1"), ["web1"], [],
        inter, ikey, NOW - DAY, NOW + DAY, ["digital_signature"], ["server_auth"],
        extensions=P.leaf_extensions(BASE, inter))
    assert P.ca_id(inter) != P.ca_id(zone.cert)
    assert P.urls_of(leaf)["crl"] == ["%s/%s.crl" % (BASE, P.ca_id(inter))]
    assert P.distribution_reason(leaf, BASE) is None


# --------------------------------------------------------------------------- files

def test_publication_is_der_named_by_id(keys, zone):
    crl = C.build_crl(zone.cert, zone.key, [(5, NOW, "key_compromise")], NOW, NOW + DAY, 3)
    files = P.publication([zone.cert], [crl])
    cid = P.ca_id(zone.cert)
    assert sorted(files) == ["%s.crl" % cid, "%s.crt" % cid]
    assert x509.load_der_x509_certificate(files["%s.crt" % cid]) == zone.cert
    loaded = x509.load_der_x509_crl(files["%s.crl" % cid])
    assert loaded.get_revoked_certificate_by_serial_number(5) is not None
    assert files["%s.crt" % cid] == zone.cert.public_bytes(serialization.Encoding.DER)


def test_publication_of_an_extended_root_keeps_the_longest_lived(keys, zone):
    longer = make_root(zone.key, not_after=NOW + 5000 * DAY)
    assert P.ca_id(longer) == P.ca_id(zone.cert)
    for order in ([zone.cert, longer], [longer, zone.cert]):
        files = P.publication(order, [])
        assert x509.load_der_x509_certificate(files["%s.crt" % P.ca_id(longer)]) == longer


@pytest.mark.parametrize("name, published", [
    ("ab12.crt", True), ("ab12.crl", True), ("AB12.crt", False), ("index.html", False),
    ("ab12.crt.tmp", False), (".crt", False), ("x.crl", False),
])
def test_is_published_name(name, published):
    assert P.is_published_name(name) is published


def test_plan_writes_what_differs_and_removes_only_published_names():
    wanted = {"aa.crt": b"1", "aa.crl": b"2", "bb.crt": b"3"}
    present = {"aa.crt": b"1", "aa.crl": b"old", "cc.crl": b"retired", "index.html": b"x"}
    assert P.plan(wanted, present) == (["aa.crl", "bb.crt"], ["cc.crl"])
    assert P.plan(wanted, dict(wanted)) == ([], [])


# --------------------------------------------------------------------------- zone_url

def test_zone_url_reads_the_ca_hosts_inventory_variable():
    seen = []

    def host_vars(host, names):
        seen.append((host, tuple(names)))
        return {"trustzone_ca_publish_url": BASE + "/"} if host == "ca1" else {}

    assert P.zone_url(host_vars, ["ca1"]) == BASE
    assert seen == [("ca1", ("trustzone_ca_publish_url",))]
    assert P.zone_url(host_vars, []) is None
    assert P.zone_url(lambda h, n: {}, ["ca1"]) is None
    with pytest.raises(TrustzoneError, match="trustzone_ca_publish_url"):
        P.zone_url(lambda h, n: {"trustzone_ca_publish_url": "ldap://x/y"}, ["ca1"])
