"""_issue: pairing node requests with inventory profiles, unique names, batch signing."""

from __future__ import annotations

import copy
import datetime

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _issue as I
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as ID
from ansible_collections.trustzone.pki.plugins.module_utils import _assess as A
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NAMES, NOW, OTHER_NAMES, make_root)


def profiles_for(names, spec=None):
    return ID.resolve_profiles(spec, "prod", "/etc/trustzone/prod", copy.deepcopy(names))


# --------------------------------------------------------------------------- collect_requests

def node_result(**requests):
    return {"changed": True, "requests": {
        name: {"csr": "CSR-%s" % name, "reasons": [{"reason": "missing_key", "detail": "x"},
                                                   {"reason": "missing_certificate"}]}
        for name in requests}}


def test_collect_requests_pairs_csrs_with_inventory_profiles():
    wanted = {"web1": profiles_for(NAMES), "web2": profiles_for(OTHER_NAMES)}
    results = {"web1": node_result(server=1, client=1), "web2": node_result(client=1)}
    requests, refused = I.collect_requests(["web1", "web2"], results, wanted)
    assert refused == {}
    assert [(r["host"], r["profile"]["name"], r["csr"]) for r in requests] == [
        ("web1", "client", "CSR-client"), ("web1", "server", "CSR-server"),
        ("web2", "client", "CSR-client")]
    # the profile is the controller's, never the node's
    assert requests[0]["profile"] is wanted["web1"][1]
    assert requests[0]["reasons"] == ["missing_key", "missing_certificate"]


def test_collect_requests_skips_failed_skipped_and_absent_hosts():
    wanted = {h: profiles_for(NAMES) for h in ("a", "b", "c", "d", "e")}
    results = {"a": {"failed": True, **node_result(server=1)},
               "b": {"skipped": True},
               "c": None,
               "d": "not a dict",
               "e": {"changed": False, "requests": {}}}
    assert I.collect_requests(["a", "b", "c", "d", "e", "f"], results, wanted) == ([], {})


def test_collect_requests_refuses_profiles_the_inventory_does_not_define():
    wanted = {"web1": profiles_for(NAMES, [{"name": "server"}])}
    results = {"web1": node_result(server=1, admin=1)}
    requests, refused = I.collect_requests(["web1"], results, wanted)
    assert [r["profile"]["name"] for r in requests] == ["server"]
    assert refused == {"web1": ["profile admin: the inventory defines no such profile for web1"]}
    # a host without any profile gets nothing
    requests, refused = I.collect_requests(["web1"], results, {})
    assert requests == [] and len(refused["web1"]) == 2


def test_collect_requests_skips_junk_reasons_and_refuses_empty_items():
    wanted = {"web1": profiles_for(NAMES)}
    client = {"csr": "x", "reasons": ["junk", {"reason": "expired"}]}
    results = {"web1": {"requests": {"server": None, "client": client}}}
    requests, refused = I.collect_requests(["web1"], results, wanted)
    assert refused == {"web1": ["profile server: the node's request is malformed"]}
    assert [(r["profile"]["name"], r["csr"], r["reasons"]) for r in requests] == [
        ("client", "x", ["expired"])]


@pytest.mark.parametrize("result", [
    {"requests": ["server"]},
    {"requests": {"server": "-----BEGIN CERTIFICATE REQUEST-----"}},
    {"requests": {"server": {"csr": "x", "reasons": None}}},
])
def test_collect_requests_malformed_node_result_is_refused(result):
    wanted = {"web1": profiles_for(NAMES), "web2": profiles_for(OTHER_NAMES)}
    requests, refused = I.collect_requests(["web1", "web2"],
                                           {"web1": result, "web2": node_result(server=1)},
                                           wanted)
    assert "web1" in refused
    assert [r["host"] for r in requests] == ["web2"]


# --------------------------------------------------------------------------- sign_requests

@pytest.fixture
def batch(keys, zone):
    """web1 (server + client, EC), web2 (server, RSA), and web3 forging web1's name."""
    web1 = profiles_for(NAMES)
    web2 = profiles_for(OTHER_NAMES, [{"name": "server", "key_type": "rsa", "key_size": 2048,
                                       "lifetime": "90d"}])
    web3_names = {"common_name": "web3.prod.example", "dns": ["web3.prod.example"], "ip": []}
    web3 = profiles_for(web3_names, [{"name": "server"}])
    k1s, k1c, k2, k3 = (keys.get("p256#b1s"), keys.get("p256#b1c"), keys.get("rsa#b2"),
                        keys.get("p256#b3"))

    def req(host, profile, key, **kw):
        csr = C.build_csr(key, kw.get("cn", profile["common_name"]),
                          kw.get("dns", profile["dns"]), kw.get("ip", profile["ip"]))
        return {"host": host, "profile": profile, "csr": C.csr_pem(csr),
                "reasons": ["missing_key"]}

    requests = [
        req("web1", web1[0], k1s),
        req("web1", web1[1], k1c),
        req("web2", web2[0], k2),
        req("web3", web3[0], k3, dns=["web3.prod.example", "web1.prod.example"]),
    ]
    return {"requests": requests, "keys": {"web1": k1s, "web2": k2}, "web2": web2[0]}


def test_sign_requests_batch(batch, zone):
    issued, refused = I.sign_requests(batch["requests"], zone.cert, zone.key, [], NOW)
    assert sorted(issued) == ["web1", "web2"]
    assert sorted(issued["web1"]) == ["client", "server"]
    assert refused == {"web3": ["profile server: subjectAltName: web1.prod.example not allowed "
                                "for this host"]}

    item = issued["web1"]["server"]
    cert = C.load_certificate(item["certificate"])
    assert C.chain_to(cert, [], [zone.cert]) == [cert, zone.cert]
    assert C.same_public_key(cert.public_key(), batch["keys"]["web1"])
    assert item["serial"] == "%x" % cert.serial_number
    assert item["fingerprint"] == C.fingerprint(cert)
    assert item["not_after"] == "2026-06-01T12:00:00Z"  # 365d from NOW
    assert item["chain"] == []
    assert C.not_before(cert) == NOW - datetime.timedelta(minutes=5)
    assert C.names_of(cert) == {"dns": ["web1", "web1.prod.example"],
                                "ip": ["10.0.0.11", "2001:db8::11"]}
    assert C.extended_key_usages_of(cert) == ["server_auth"]
    assert C.basic_constraints_of(cert) == (False, None)
    client = C.load_certificate(issued["web1"]["client"]["certificate"])
    assert C.extended_key_usages_of(client) == ["client_auth"]

    rsa_cert = C.load_certificate(issued["web2"]["server"]["certificate"])
    assert C.key_usages_of(rsa_cert) == ["digital_signature", "key_encipherment"]
    assert C.not_after(rsa_cert) == NOW + 90 * DAY
    # every issued certificate satisfies its own profile: the next run finds nothing to do
    assert A.assess(batch["web2"], batch["keys"]["web2"], None, rsa_cert, None, [], [zone.cert],
                    NOW) == []


def test_issued_subject_and_usages_come_from_the_profile(keys, zone):
    """The CSR asks for a fancy subject and no usages at all; the certificate carries the
    profile's subject (O=trustzone, OU=<zone>, CN) and usages."""
    profile = profiles_for(NAMES, [{"name": "server", "key_type": "rsa", "key_size": 2048}])[0]
    key = keys.get("rsa#subject")
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([
               x509.NameAttribute(NameOID.COMMON_NAME, "web1.prod.example"),
               x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"),
               x509.NameAttribute(NameOID.COUNTRY_NAME, "XX")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("web1")]), critical=False)
           .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                        key_encipherment=False, data_encipherment=False,
                                        key_agreement=False, key_cert_sign=False,
                                        crl_sign=False, encipher_only=False,
                                        decipher_only=False), critical=True)
           .sign(key, C.signature_hash(key)))
    issued, refused = I.sign_requests(
        [{"host": "web1", "profile": profile, "csr": C.csr_pem(csr)}], zone.cert, zone.key,
        [], NOW)
    assert refused == {}
    cert = C.load_certificate(issued["web1"]["server"]["certificate"])
    assert cert.subject == C.zone_name_attributes("prod", "web1.prod.example")
    assert C.key_usages_of(cert) == ["digital_signature", "key_encipherment"]
    assert C.extended_key_usages_of(cert) == ["server_auth"]
    assert C.names_of(cert) == {"dns": ["web1"], "ip": []}  # what the CSR asked, within policy


def test_forged_requests_name_host_and_field(keys, zone):
    profile = profiles_for(NAMES, [{"name": "server"}])[0]
    key = keys.get("p256#forger")
    ca_csr = (x509.CertificateSigningRequestBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                          "web1.prod.example")]))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(key, C.signature_hash(key)))
    requests = [
        {"host": "web1", "profile": profile, "csr": C.csr_pem(ca_csr)},
        {"host": "web9", "profile": profile,
         "csr": C.csr_pem(C.build_csr(key, "web2.prod.example", ["web1"], ["10.0.0.12"]))},
    ]
    issued, refused = I.sign_requests(requests, zone.cert, zone.key, [], NOW)
    assert issued == {}
    assert refused["web1"] == ["profile server: basicConstraints: the CSR asks to be a CA"]
    assert refused["web9"] == [
        "profile server: subject: common name 'web2.prod.example', this host may only be "
        "'web1.prod.example'",
        "profile server: subjectAltName: 10.0.0.12 not allowed for this host"]


@pytest.mark.parametrize("csr", [None, "", "garbage", {"pem": "x"}, 42,
                                 "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                 "-----END CERTIFICATE REQUEST-----\n"])
def test_malformed_csr_is_refused_not_raised(batch, zone, csr):
    requests = [dict(batch["requests"][0], csr=csr)] + batch["requests"][1:3]
    issued, refused = I.sign_requests(requests, zone.cert, zone.key, [], NOW)
    assert sorted(issued) == ["web1", "web2"] and list(issued["web1"]) == ["client"]
    assert len(refused["web1"]) == 1
    assert refused["web1"][0].startswith("profile server: CSR of web1/server: malformed "
                                         "certificate signing request")


def test_certificate_instead_of_csr_is_refused(zone):
    profile = profiles_for(NAMES, [{"name": "server"}])[0]
    issued, refused = I.sign_requests(
        [{"host": "web1", "profile": profile, "csr": C.certificate_pem(zone.cert)}],
        zone.cert, zone.key, [], NOW)
    assert issued == {} and "malformed" in refused["web1"][0]


def test_csr_with_undecodable_extension_is_refused(batch, zone, keys):
    key = keys.get("p256#b1s")
    bad = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                       "web1.prod.example")]))
           .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                                                     b"\x30\x03\x82\x05ab"), critical=False)
           .sign(key, C.signature_hash(key)))
    requests = [dict(batch["requests"][0], csr=C.csr_pem(bad))] + batch["requests"][1:3]
    issued, refused = I.sign_requests(requests, zone.cert, zone.key, [], NOW)
    assert "web1" in refused
    assert sorted(issued) == ["web1", "web2"]


def test_chain_is_passed_through(keys, zone, batch):
    ikey = keys.get("p256#issue-intermediate")
    inter = C.build_ca_certificate(ikey, C.zone_name_attributes("prod", "issuing"), NOW - DAY,
                                   NOW + 900 * DAY, path_length=0, issuer_cert=zone.cert,
                                   issuer_key=zone.key)
    issued, _refused = I.sign_requests(batch["requests"][:1], inter, ikey, [inter], NOW)
    item = issued["web1"]["server"]
    assert item["chain"] == [C.certificate_pem(inter)]
    cert = C.load_certificate(item["certificate"])
    assert C.chain_to(cert, [inter], [zone.cert]) == [cert, inter, zone.cert]


def test_issuer_ending_soon_caps_the_certificate(keys, batch, zone):
    short = make_root(zone.key, not_after=NOW + 10 * DAY)
    issued, _refused = I.sign_requests(batch["requests"][:1], short, zone.key, [], NOW)
    assert issued["web1"]["server"]["not_after"] == "2025-06-11T12:00:00Z"


def test_expired_issuer_is_a_clear_error(batch, zone):
    expired = make_root(zone.key, not_before=NOW - 20 * DAY, not_after=NOW - DAY)
    with pytest.raises(TrustzoneError, match="expired"):
        I.sign_requests(batch["requests"][:1], expired, zone.key, [], NOW)


def test_empty_batch(zone):
    assert I.sign_requests([], zone.cert, zone.key, [], NOW) == ({}, {})


# --------------------------------------------------------------------------- sign_batch

def test_sign_batch_ledger_rows_match_the_certificates(batch, zone):
    """The rows made from the data at hand equal the rows read back from the certificates."""
    issued, refused, entries = I.sign_batch(batch["requests"], zone.cert, zone.key, [], NOW,
                                            zone="prod")
    assert set(refused) == {"web3"}
    assert entries == I.ledger_entries(issued, "prod", zone.cert)
    assert [(e["host"], e["profile"]) for e in entries] == [
        ("web1", "client"), ("web1", "server"), ("web2", "server")]


def test_sign_batch_zone_defaults_to_the_profiles(batch, zone):
    _issued, _refused, entries = I.sign_batch(batch["requests"][:1], zone.cert, zone.key, [],
                                              NOW)
    assert [e["zone"] for e in entries] == ["prod"]


def test_sign_batch_issues_what_sign_requests_issues(batch, zone):
    issued, refused, _entries = I.sign_batch(batch["requests"], zone.cert, zone.key, [], NOW)
    again, refused_again = I.sign_requests(batch["requests"], zone.cert, zone.key, [], NOW)
    assert refused == refused_again
    for host in issued:
        for name, item in issued[host].items():
            mine = C.load_certificate(item["certificate"])
            other = C.load_certificate(again[host][name]["certificate"])
            assert mine.subject == other.subject
            assert [(e.oid, e.critical) for e in mine.extensions] == [
                (e.oid, e.critical) for e in other.extensions]
            assert C.names_of(mine) == C.names_of(other)
            assert C.not_after(mine) == C.not_after(other)
            assert item["not_after"] == C.not_after(mine).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert item["serial"] == "%x" % mine.serial_number
            assert item["fingerprint"] == C.fingerprint(mine)


def test_sign_batch_with_a_publish_url_puts_cdp_and_aia_in_every_leaf(batch, zone):
    """The zone's base URL (from the controller) gives every leaf the issuer's CRL and
    certificate URLs; the node's assessment of such a leaf is clean for that URL."""
    from ansible_collections.trustzone.pki.plugins.module_utils import _publish as P
    base = "http://pki.prod.example/tz"
    issued, _refused, _entries = I.sign_batch(batch["requests"], zone.cert, zone.key, [], NOW,
                                              publish_url=base + "/")
    cid = P.ca_id(zone.cert)
    assert sum(len(v) for v in issued.values()) == 3
    for host in issued:
        for item in issued[host].values():
            cert = C.load_certificate(item["certificate"])
            assert P.urls_of(cert) == {"crl": ["%s/%s.crl" % (base, cid)],
                                       "ca_issuers": ["%s/%s.crt" % (base, cid)]}
            assert P.distribution_reason(cert, base) is None
    plain, _refused, _entries = I.sign_batch(batch["requests"], zone.cert, zone.key, [], NOW)
    for host in plain:
        for item in plain[host].values():
            assert P.urls_of(C.load_certificate(item["certificate"])) == {
                "crl": [], "ca_issuers": []}


def test_sign_batch_refuses_a_bad_publish_url_before_signing(batch, zone):
    with pytest.raises(TrustzoneError, match="trustzone_ca_publish_url"):
        I.sign_batch(batch["requests"], zone.cert, zone.key, [], NOW,
                     publish_url="http://pki.example/x?y=1")


def test_sign_module_takes_publish_url_from_the_action_only():
    assert "publish_url" in I.sign_module_args(module=True)["argument_spec"]
    assert "publish_url" not in I.sign_module_args()["argument_spec"]
