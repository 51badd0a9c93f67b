"""_assess.assess: every renewal reason on its own, their order, and the clock as a parameter."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.plugins.module_utils import _assess as A
from ansible_collections.trustzone.pki.plugins.module_utils import _parse as P
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture
def ident(keys, zone, server_profile):
    """A valid identity: key, certificate (NOW-1d .. NOW+300d) and the zone's roots."""
    key = keys.get("p256#identity")
    cert = zone.leaf(key.public_key(), server_profile)

    class Ident:
        pass

    i = Ident()
    i.key, i.cert, i.profile, i.roots, i.zone = key, cert, server_profile, [zone.cert], zone

    def run(**kw):
        args = dict(profile=i.profile, key=i.key, key_error=None, cert=i.cert, cert_error=None,
                    chain=[], roots=i.roots, now=NOW)
        args.update(kw)
        return A.assess(**args)

    def leaf(**kw):
        return zone.leaf(kw.pop("public_key", key.public_key()), i.profile, **kw)

    i.run, i.leaf = run, leaf
    return i


def reasons(result):
    return [r["reason"] for r in result]


def test_valid_identity_needs_nothing(ident):
    assert ident.run() == []
    assert ident.run(roots=[]) == []  # nothing to compare the issuer with


def test_missing_key(ident):
    out = ident.run(key=None)
    assert reasons(out) == ["missing_key"]
    assert ident.profile["key_path"] in out[0]["detail"]


def test_unreadable_key(ident):
    out = ident.run(key=None, key_error="/etc/trustzone/prod/server.key: not a readable key")
    assert out == [{"reason": "unreadable_key",
                    "detail": "/etc/trustzone/prod/server.key: not a readable key"}]


def test_missing_certificate(ident):
    out = ident.run(cert=None)
    assert reasons(out) == ["missing_certificate"]
    assert ident.profile["cert_path"] in out[0]["detail"]


def test_unreadable_certificate(ident):
    assert reasons(ident.run(cert=None, cert_error="broken")) == ["unreadable_certificate"]


def test_key_mismatch(ident, keys):
    cert = ident.leaf(public_key=keys.get("p256#identity-other").public_key())
    out = ident.run(cert=cert)
    assert reasons(out) == ["key_mismatch"]
    assert "does not belong" in out[0]["detail"]


def test_key_type(ident, keys, names):
    """The profile now wants P-384; key and certificate are a matching P-256 pair. Reported
    once, not once for the key and once for the certificate."""
    ident.profile = I.resolve_profile({"name": "server", "key_curve": "secp384r1"}, "prod",
                                      "/etc/trustzone/prod", names)
    out = ident.run()
    assert reasons(out) == ["key_type"]
    assert "EC secp256r1" in out[0]["detail"] and "EC secp384r1" in out[0]["detail"]


def test_key_type_from_the_certificate_alone(ident, keys, names):
    ident.profile = I.resolve_profile({"name": "server", "key_type": "ed25519"}, "prod",
                                      "/etc/trustzone/prod", names)
    out = ident.run(key=None)
    assert reasons(out) == ["missing_key", "key_type"]
    assert out[1]["detail"].startswith("certificate key is EC secp256r1")


def test_key_type_without_certificate(ident, names):
    ident.profile = I.resolve_profile({"name": "server", "key_type": "rsa", "key_size": 2048},
                                      "prod", "/etc/trustzone/prod", names)
    assert reasons(ident.run(cert=None)) == ["missing_certificate", "key_type"]


def test_not_yet_valid(ident):
    out = ident.run(now=NOW - 2 * DAY)
    assert reasons(out) == ["not_yet_valid"]
    assert "2025-05-31T12:00:00Z" in out[0]["detail"]


def test_expired(ident):
    out = ident.run(now=NOW + 301 * DAY)
    assert reasons(out) == ["expired"]
    assert "2026-03-28T12:00:00Z" in out[0]["detail"]


def test_expiring(ident):
    out = ident.run(now=NOW + 290 * DAY)  # 10 days left, renew_before 30d
    assert reasons(out) == ["expiring"]
    assert out[0]["detail"] == "10d left, renew within 30d"


def test_short_lived_certificate_is_expiring(ident, names):
    ident.profile = I.resolve_profile({"name": "server", "lifetime": "2h",
                                       "renew_before": "1h"}, "prod", "/etc/trustzone/prod",
                                      names)
    ident.cert = ident.leaf(not_before=NOW, not_after=NOW + 10 * MINUTE)
    out = ident.run()
    assert reasons(out) == ["expiring"]
    assert out[0]["detail"] == "10m left, renew within 1h"


@pytest.mark.parametrize("now, expected", [
    (NOW - DAY, []),                               # exactly not_before: valid
    (NOW - DAY - datetime.timedelta(seconds=1), ["not_yet_valid"]),
    (NOW + 270 * DAY, []),                         # exactly renew_before left: not yet
    (NOW + 270 * DAY + datetime.timedelta(seconds=1), ["expiring"]),
    (NOW + 300 * DAY - datetime.timedelta(seconds=1), ["expiring"]),
    (NOW + 300 * DAY, ["expired"]),                # exactly not_after: expired
])
def test_lifetime_boundaries(ident, now, expected):
    assert reasons(ident.run(now=now)) == expected


@pytest.mark.parametrize("override", [
    {"dns": ["web1"]},
    {"dns": ["web1", "web1.prod.example", "web2.prod.example"]},
    {"ip": ["10.0.0.11"]},
    {"ip": []},
])
def test_names(ident, override):
    out = ident.run(cert=ident.leaf(**override))
    assert reasons(out) == ["names"]
    assert "profile wants web1,web1.prod.example,10.0.0.11,2001:db8::11" in out[0]["detail"]


def test_names_order_and_case_do_not_matter(ident):
    cert = ident.leaf(dns=["WEB1.prod.example", "web1"], ip=["2001:db8::11", "10.0.0.11"])
    assert ident.run(cert=cert) == []


def test_subject(ident):
    out = ident.run(cert=ident.leaf(cn="web2.prod.example"))
    assert reasons(out) == ["subject"]
    assert "'web2.prod.example'" in out[0]["detail"]


def test_key_usage(ident):
    out = ident.run(cert=ident.leaf(key_usage=["digital_signature", "key_encipherment"]))
    assert reasons(out) == ["key_usage"]
    assert out[0]["detail"] == ("key usage digital_signature,key_encipherment, "
                                "profile wants digital_signature")


def test_extended_key_usage(ident):
    out = ident.run(cert=ident.leaf(eku=["client_auth"]))
    assert reasons(out) == ["extended_key_usage"]
    assert out[0]["detail"] == "extended key usage client_auth, profile wants server_auth"
    assert reasons(ident.run(cert=ident.leaf(eku=[]))) == ["extended_key_usage"]


def test_issuer(ident, other_zone):
    out = ident.run(roots=[other_zone.cert])
    assert reasons(out) == ["issuer"]
    assert "not the issuing root of zone prod" in out[0]["detail"]


def test_issuer_via_chain(ident, keys, zone):
    from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
    ikey = keys.get("p256#assess-intermediate")
    inter = C.build_ca_certificate(ikey, C.zone_name_attributes("prod", "issuing"), NOW - DAY,
                                   NOW + 900 * DAY, path_length=0, issuer_cert=zone.cert,
                                   issuer_key=zone.key)
    cert = ident.leaf(issuer_cert=inter, issuer_key=ikey)
    assert ident.run(cert=cert, chain=[inter]) == []
    assert reasons(ident.run(cert=cert, chain=[])) == ["issuer"]
    assert reasons(ident.run(cert=cert, chain=None)) == ["issuer"]


def test_reasons_come_out_in_reasons_order(ident, keys, other_zone):
    cert = ident.leaf(public_key=keys.get("p384#assess-other").public_key(), cn="other",
                      dns=["web1"], key_usage=["key_agreement"], eku=["client_auth"],
                      not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    out = ident.run(cert=cert, roots=[other_zone.cert])
    assert reasons(out) == ["key_mismatch", "key_type", "expired", "names", "subject",
                            "key_usage", "extended_key_usage", "issuer"]
    assert reasons(out) == sorted(reasons(out), key=A.REASONS.index)


def test_unreadable_and_missing_together(ident):
    assert reasons(ident.run(key=None, key_error="x", cert=None, cert_error="y")) == [
        "unreadable_key", "unreadable_certificate"]
    assert reasons(ident.run(key=None, cert=None)) == ["missing_key", "missing_certificate"]


def test_every_reason_is_covered():
    """The tests above trigger each reason of REASONS; this pins the list itself."""
    assert A.REASONS == (
        "missing_key", "unreadable_key", "missing_certificate", "unreadable_certificate",
        "key_mismatch", "key_type", "not_yet_valid", "expired", "expiring", "names", "subject",
        "key_usage", "extended_key_usage", "issuer", "distribution_point", "revoked")


def test_revoked_certificate_is_reissued(ident, zone):
    crl = C.build_crl(zone.cert, zone.key, [(ident.cert.serial_number, NOW, "key_compromise")],
                      NOW, NOW + DAY, 1)
    revoked = A.revoked_set([crl])
    out = ident.run(revoked=revoked)
    assert reasons(out) == ["revoked"]
    assert out[0]["detail"] == "serial %x is on the zone's CRL" % ident.cert.serial_number
    # another CA's CRL listing the same serial does not count
    assert ident.run(revoked={("CN=someone else", ident.cert.serial_number)}) == []
    assert ident.run(revoked=set()) == []


def test_certificate_reasons_directly(ident, other_zone):
    assert A.certificate_reasons(ident.cert, [], ident.profile, ident.roots, NOW) == []
    found = A.certificate_reasons(ident.cert, [], ident.profile, [other_zone.cert],
                                  NOW + 400 * DAY)
    assert [r for r, _detail in found] == ["expired", "issuer"]


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"),
                                           (3600, "1h"), (86399, "23h"), (86400, "1d"),
                                           (90 * 86400 + 5, "90d")])
def test_human(seconds, text):
    assert P._human(seconds) == text


def test_distribution_point_reason(keys, ident, zone):
    """A profile the node action gave the zone's base URL: a leaf without (or with other)
    CDP/AIA is re-issued; one with the right ones, or a profile without the key, is not."""
    from ansible_collections.trustzone.pki.plugins.module_utils import _publish as P
    base = "http://pki.prod.example/tz"
    with_url = dict(ident.profile, publish_url=base)
    out = ident.run(profile=with_url)
    assert reasons(out) == ["distribution_point"]
    assert "%s/%s.crl" % (base, P.ca_id(zone.cert)) in out[0]["detail"]
    assert ident.run(profile=dict(ident.profile, publish_url=None)) == []
    good = C.build_leaf_certificate(
        ident.key.public_key(), C.zone_name_attributes("prod", ident.profile["common_name"]),
        ident.profile["dns"], ident.profile["ip"], zone.cert, zone.key, NOW - DAY,
        NOW + 300 * DAY, ident.profile["key_usage"], ident.profile["extended_key_usage"],
        extensions=P.leaf_extensions(base, zone.cert))
    assert ident.run(profile=with_url, cert=good) == []
    assert ident.run(cert=good) == []  # no publish_url key: not checked
    out = ident.run(profile=dict(ident.profile, publish_url=None), cert=good)
    assert reasons(out) == ["distribution_point"]  # the operator unset the URL
    out = ident.run(profile=dict(ident.profile, publish_url="http://new.example/tz"), cert=good)
    assert reasons(out) == ["distribution_point"]  # the URL changed
