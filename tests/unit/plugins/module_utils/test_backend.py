"""_backend: one identity on a node - the facts of a certificate (moved here from
test_report.py with ``certificate_facts``), the renewal decision over what ``load`` found,
the inspect result's facts, the ACME reasons, and the writes through ``Changes``.

Only pytest and cryptography are needed (runs against Debian 12's cryptography 38.0.4 too).
"""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _backend as B
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as ID
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NAMES, NOW)

DIRECTORY = "https://acme.example/directory"
WWW = ["www.example.org", "example.org"]


# --------------------------------------------------------------------------- certificate facts

@pytest.fixture
def leaf(keys, zone, server_profile):
    key = keys.get("p256#report-leaf")
    return key, zone.leaf(key.public_key(), server_profile)


def test_certificate_facts_of_a_good_leaf(leaf, zone, server_profile):
    key, cert = leaf
    facts = B.certificate_facts(cert, [], [zone.cert], key, NOW)
    assert facts == {
        "subject": "CN=web1.prod.example,OU=prod,O=trustzone",
        "common_name": "web1.prod.example",
        "sans": {"dns": ["web1", "web1.prod.example"], "ip": ["10.0.0.11", "2001:db8::11"]},
        "issuer": "serialNumber=0123456789abcdef,CN=trustzone prod root CA,OU=prod,O=trustzone",
        "serial": "%x" % cert.serial_number,
        "fingerprint": C.fingerprint(cert),
        "not_before": "2025-05-31T12:00:00Z",
        "not_after": "2026-03-28T12:00:00Z",
        "days_left": 300,
        "key_type": "EC secp256r1",
        "extended_key_usage": ["server_auth"],
        "is_ca": False,
        "chain_valid": True,
        "chain_root": C.fingerprint(zone.cert),
        "chain_length": 2,
        "key_match": True,
    }


def test_certificate_facts_other_zone_wrong_key_no_key(leaf, keys, other_zone, zone):
    key, cert = leaf
    facts = B.certificate_facts(cert, [], [other_zone.cert], keys.get("p256#other"), NOW)
    assert (facts["chain_valid"], facts["chain_root"], facts["chain_length"]) == (False, None,
                                                                                  None)
    assert facts["key_match"] is False
    assert B.certificate_facts(cert, [], [zone.cert], None, NOW)["key_match"] is None
    assert B.certificate_facts(cert, [], [], key, NOW)["chain_valid"] is False


def test_certificate_facts_chains_through_an_intermediate(keys, zone, server_profile):
    ikey = keys.get("p256#report-intermediate")
    inter = C.build_ca_certificate(ikey, C.zone_name_attributes("prod", "inter"), NOW - DAY,
                                   NOW + 400 * DAY, path_length=0, issuer_cert=zone.cert,
                                   issuer_key=zone.key)
    key = keys.get("p256#report-leaf")
    cert = zone.leaf(key.public_key(), server_profile, issuer_cert=inter, issuer_key=ikey)
    assert B.certificate_facts(cert, [], [zone.cert], key, NOW)["chain_valid"] is False
    facts = B.certificate_facts(cert, [inter], [zone.cert], key, NOW)
    assert (facts["chain_valid"], facts["chain_length"]) == (True, 3)
    assert B.certificate_facts(inter, [], [zone.cert], None, NOW)["is_ca"] is True


# --------------------------------------------------------------------------- deciding

def loaded(key=None, cert=None, chain=(), key_error=None, cert_error=None):
    return {"key": key, "key_error": key_error, "cert": cert, "cert_error": cert_error,
            "chain": list(chain)}


def test_needs_regeneration_is_assess_of_what_was_loaded(leaf, keys, zone, server_profile):
    key, cert = leaf
    assert B.needs_regeneration(server_profile, loaded(key, cert), [zone.cert], NOW) == []
    out = B.needs_regeneration(server_profile, loaded(None, cert), [zone.cert], NOW)
    assert [r["reason"] for r in out] == ["missing_key"]
    out = B.needs_regeneration(server_profile, loaded(key, None, cert_error="bad PEM"),
                               [zone.cert], NOW)
    assert out == [{"reason": "unreadable_certificate", "detail": "bad PEM"}]
    revoked = {(cert.issuer.rfc4514_string(), cert.serial_number)}
    out = B.needs_regeneration(server_profile, loaded(key, cert), [zone.cert], NOW, revoked)
    assert [r["reason"] for r in out] == ["revoked"]
    out = B.needs_regeneration(server_profile, loaded(key, cert), [zone.cert], NOW + 290 * DAY)
    assert [r["reason"] for r in out] == ["expiring"]


def test_identity_facts_are_the_certificates_facts(leaf, zone):
    key, cert = leaf
    facts = B.identity_facts(cert, [], [], [zone.cert], NOW)
    full = B.certificate_facts(cert, [], [zone.cert], key, NOW)
    assert facts == {"state": "valid", "reasons": [], "root_fingerprint": full["chain_root"],
                     "serial": full["serial"], "fingerprint": full["fingerprint"],
                     "not_after": full["not_after"], "days_left": full["days_left"],
                     "issuer": full["issuer"]}
    reasons = [{"reason": "issuer", "detail": "x"}]
    facts = B.identity_facts(cert, [], reasons, [], NOW)
    assert (facts["state"], facts["reasons"], facts["root_fingerprint"]) == ("renew", reasons,
                                                                             None)
    assert B.identity_facts(None, [], reasons, [zone.cert], NOW) == {"state": "renew",
                                                                     "reasons": reasons}


# --------------------------------------------------------------------------- ACME

def acme(keys, zone, domains=tuple(WWW), key_label="p256#acme", not_after=None, key=True, **kw):
    private = keys.get(key_label)
    cert = zone.leaf(private.public_key(), cn=domains[0], dns=list(domains), not_after=not_after)
    args = dict(domains=WWW, key_spec=B.acme_key_spec("ec", "secp256r1", 3072),
                renew_before_days=30, directory=DIRECTORY, state={"directory": DIRECTORY},
                now=NOW)
    args.update(kw)
    return cert, B.acme_reasons(loaded(private if key else None, cert), **args)


def test_acme_a_good_certificate_needs_nothing(keys, zone):
    assert acme(keys, zone)[1] == []
    # names compare without case or order
    assert acme(keys, zone, domains=["EXAMPLE.org", "www.example.org"])[1] == []


def test_acme_no_certificate_is_the_only_reason():
    assert B.acme_reasons(loaded(), WWW, B.acme_key_spec("ec", "secp256r1", 3072), 30,
                          DIRECTORY, {}, NOW) == ["no readable certificate"]
    assert B.acme_reasons(loaded(cert_error="bad"), WWW, {}, 30, DIRECTORY, {},
                          NOW) == ["no readable certificate"]


def test_acme_expiry_names_key_and_directory_in_the_roles_words(keys, zone):
    end = NOW + 10 * DAY
    cert, out = acme(keys, zone, domains=["old.example.org"], not_after=end, key=False,
                     state={})
    assert out == ["expires %s UTC, within 30 days" % end.strftime("%Y-%m-%d %H:%M"),
                   "names differ: has DNS:old.example.org",
                   "no readable key",
                   "issued by another ACME directory (unknown)"]
    assert acme(keys, zone, not_after=NOW - DAY)[1][0].startswith("expires ")
    good, out = acme(keys, zone, renew_before_days=301)
    assert out == ["expires %s UTC, within 301 days" % C.not_after(good).strftime(
        "%Y-%m-%d %H:%M")]
    assert acme(keys, zone, renew_before_days=299)[1] == []
    assert acme(keys, zone, state={"directory": "https://other/dir"})[1] == [
        "issued by another ACME directory (https://other/dir)"]


def test_acme_key_mismatch_then_key_type(keys, zone):
    private = keys.get("p256#acme")
    other = keys.get("p256#acme-other")
    cert = zone.leaf(private.public_key(), cn=WWW[0], dns=WWW)
    spec = B.acme_key_spec("ec", "secp256r1", 3072)
    assert B.acme_reasons(loaded(other, cert), WWW, spec, 30, DIRECTORY,
                          {"directory": DIRECTORY}, NOW) == ["key does not match the certificate"]
    for wanted in (B.acme_key_spec("ec", "secp384r1", 3072), B.acme_key_spec("rsa", "x", 2048)):
        assert B.acme_reasons(loaded(private, cert), WWW, wanted, 30, DIRECTORY,
                              {"directory": DIRECTORY}, NOW) == ["key type differs"]


def test_acme_key_spec():
    assert B.acme_key_spec("ec", "secp384r1", 2048) == {"type": "ec", "curve": "secp384r1"}
    assert B.acme_key_spec("rsa", "secp384r1", "4096") == {"type": "rsa", "size": 4096}


# --------------------------------------------------------------------------- files

def test_load_read_and_state(tmp_path, leaf, zone):
    key, cert = leaf
    (tmp_path / "c.crt").write_text(C.certificate_pem(cert) + "\n")
    (tmp_path / "c-full.pem").write_text(C.certificate_pem(cert) + C.certificate_pem(zone.cert))
    (tmp_path / "c.key").write_text("not a key")
    got = B.load(str(tmp_path / "c.crt"), str(tmp_path / "c.key"), str(tmp_path / "c-full.pem"))
    assert C.fingerprint(got["cert"]) == C.fingerprint(cert) and got["cert_error"] is None
    assert got["key"] is None and "c.key" in got["key_error"]
    assert [C.fingerprint(c) for c in got["chain"]] == [C.fingerprint(zone.cert)]
    assert B.load(str(tmp_path / "none"), str(tmp_path / "none.key"), None) == loaded()
    os.symlink(str(tmp_path / "c.crt"), str(tmp_path / "link.crt"))
    state, error = B.read_state(str(tmp_path / "link.crt"))
    assert state == {"exists": True} and error
    assert B.read_state(None) == ({"exists": False}, None)
    assert B.owner_text({"exists": False}) is None
    assert B.owner_text({"uid": 4242424, "gid": 4242424}) == "4242424:4242424"


def test_changes_in_check_mode_write_nothing_but_say_what(tmp_path):
    changes = B.Changes(check=True)
    path = str(tmp_path / "f")
    changes.write(path, "x", 0o644, os.getuid(), os.getgid())
    changes.remove(str(tmp_path / "g"))
    assert changes.changed and changes.files == [path, str(tmp_path / "g")]
    assert not os.path.exists(path)
    real = B.Changes(check=False)
    real.write(path, "x", 0o600, os.getuid(), os.getgid())
    assert open(path).read() == "x" and real.files == [path]
    again = B.Changes(check=False)
    again.ensure_meta(path, 0o600, os.getuid(), os.getgid())
    assert not again.changed
    again.ensure_meta(path, 0o644, os.getuid(), os.getgid())
    assert again.files == [path] and os.stat(path).st_mode & 0o777 == 0o644


def test_identity_request_in_check_mode_makes_no_key(tmp_path):
    profile = ID.resolve_profile({"name": "server"}, "prod", str(tmp_path), dict(NAMES))
    changes = B.Changes(check=True)
    identity = B.Identity(profile, str(tmp_path), changes, NOW)
    identity.load()
    reasons = identity.needs_regeneration([], set())
    assert [r["reason"] for r in reasons] == ["missing_key", "missing_certificate"]
    assert identity.request(reasons) == {"csr": None, "reasons": reasons}
    assert changes.changed and changes.files == [] and os.listdir(str(tmp_path)) == []
    assert identity.installed() is None
    assert identity.facts(reasons, []) == {"state": "renew", "reasons": reasons}


def test_identity_request_stages_a_tagged_key_and_a_csr(tmp_path):
    profile = ID.resolve_profile({"name": "server"}, "prod", str(tmp_path), dict(NAMES))
    profile.update(owner=str(os.getuid()), group=str(os.getgid()))
    changes = B.Changes(check=False)
    identity = B.Identity(profile, str(tmp_path), changes, datetime.datetime.now(
        datetime.timezone.utc))
    identity.load()
    request = identity.request(identity.needs_regeneration([], set()))
    csr = C.load_csr(request["csr"])
    (pending,) = [p for p, _k in identity.pending_keys()]
    assert pending.startswith(profile["key_path"] + ".next-") and changes.files == [pending]
    assert C.common_name(csr) == NAMES["common_name"]
    assert C.same_public_key(identity.pending_keys()[0][1], csr.public_key())
