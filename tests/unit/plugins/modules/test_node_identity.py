"""The node module's identity switch, run on real files in a temporary directory (a fake
module object carries the parameters): crashes between any two steps, overlapping runs,
refusals found before a CSR leaves the node, rollback of a revoked generation, rekey after
a revocation, and the inspect result's ``installed`` (interface I3)."""

from __future__ import annotations

import datetime
import os
import stat
import types

import pytest
from cryptography import x509

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _switch as I
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as ID
from ansible_collections.trustzone.pki.plugins.module_utils import _anchors as A
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.modules import node as N

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)
DAY = datetime.timedelta(days=1)
NAMES = {"common_name": "web1.prod.example", "dns": ["web1", "web1.prod.example"],
         "ip": ["10.0.0.11"]}


def crash_at(index, seen):
    """A step hook that records the steps and dies at step ``index`` (0-based)."""
    def hook(name, _path):
        seen.append(name)
        if len(seen) == index + 1:
            raise Crash(name)
    return hook


class Crash(BaseException):
    """A process dying: not an Exception, so nothing in the module catches it."""


@pytest.fixture(scope="module")
def ca():
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    cert = C.build_ca_certificate(key, C.zone_name_attributes("prod", "trustzone prod root CA",
                                                              unique="01"),
                                  NOW - DAY, NOW + 3650 * DAY)
    return types.SimpleNamespace(key=key, cert=cert, pem=C.certificate_pem(cert))


def sign(ca, public_key, profile, days=300, start=None):
    start = start or NOW - DAY
    return C.build_leaf_certificate(
        public_key, C.zone_name_attributes("prod", profile["common_name"]), profile["dns"],
        profile["ip"], ca.cert, ca.key, start, start + days * DAY, profile["key_usage"],
        profile["extended_key_usage"])


def fake_module(params, check=False):
    def run_command(*_args, **_kwargs):
        return 0, "", ""
    return types.SimpleNamespace(params=params, check_mode=check, _diff=False,
                                 get_bin_path=lambda _name: None, run_command=run_command)


@pytest.fixture
def zone(tmp_path, ca):
    directory = tmp_path / "prod"
    profiles = ID.resolve_profiles(None, "prod", str(directory), dict(NAMES))

    def run(check=False, **extra):
        params = dict(zone="prod", dir=str(directory), roots=[ca.pem], issuers=None, crl=None,
                      trust=None, profiles=profiles, certificates=None, rollback=[])
        params.update(extra)
        return N.run(fake_module(params, check))

    def sign_requests(result, **kwargs):
        out = {}
        for name, item in result["requests"].items():
            csr = x509.load_pem_x509_csr(item["csr"].encode())
            profile = [p for p in profiles if p["name"] == name][0]
            out[name] = {"certificate": C.certificate_pem(
                sign(ca, csr.public_key(), profile, **kwargs)), "chain": []}
        return out

    return types.SimpleNamespace(dir=directory, profiles=profiles, run=run, sign=sign_requests,
                                 server=profiles[0])


def issue_all(zone):
    first = zone.run()
    zone.run(certificates=zone.sign(first))
    return zone.run()


def renew_all(run, profiles, **extra):
    """Inspect with every profile due (its renew window longer than the certificates' life):
    the live files stay a complete identity while the new one is requested."""
    saved = [p["renew_before"] for p in profiles]
    for profile in profiles:
        profile["renew_before"] = 10 * 365 * 86400
    try:
        return run(**extra)
    finally:
        for profile, value in zip(profiles, saved):
            profile["renew_before"] = value


def identity(profile):
    """(cert PEM, key matches cert, fullchain starts with cert) of the live files."""
    cert = C.load_certificate(open(profile["cert_path"], "rb").read())
    key = C.load_private_key(open(profile["key_path"], "rb").read())
    chain = C.load_certificates(open(profile["chain_path"], "rb").read())
    return C.fingerprint(cert), C.same_public_key(key, cert), C.fingerprint(chain[0])


# --------------------------------------------------------------------------- I3

def test_inspect_reports_installed_certificates(zone):
    result = issue_all(zone)
    assert result["changed"] is False and result["requests"] == {}
    assert sorted(result["installed"]) == ["client", "server"]
    for profile in zone.profiles:
        pem = open(profile["cert_path"]).read()
        item = result["installed"][profile["name"]]
        assert A.same_pem(item["certificate"], pem)
        assert item["fingerprint"] == C.fingerprint(C.load_certificate(pem))
        assert item["fingerprint"] == item["fingerprint"].lower() and len(item["fingerprint"]) == 64


def test_inspect_installed_leaves_out_missing_and_unparsable(zone):
    first = zone.run()
    assert first["installed"] == {}
    zone.run(certificates=zone.sign(first))
    with open(zone.server["cert_path"], "w") as handle:
        handle.write("garbage")
    assert sorted(zone.run()["installed"]) == ["client"]


# --------------------------------------------------------------------------- crash safety

def _count_steps(zone):
    steps = []
    _fs._STEP_HOOK = lambda name, _path: steps.append(name)
    try:
        first = zone.run()
        zone.run(certificates=zone.sign(first))
    finally:
        _fs._STEP_HOOK = None
    return steps


def test_a_crash_between_any_two_steps_leaves_old_or_new_identity(tmp_path, ca):
    """Renew the server identity with a new key; crash at every step of the install; the
    files at rest hold the old identity or the new one complete (live, or staged with its
    key), and the next run of the module ends with the new one, complete."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    cases = 0
    for index in range(40):
        case = tmp_path / ("case%d" % index)
        case.mkdir()
        directory = case / "prod"
        profiles = ID.resolve_profiles(None, "prod", str(directory), dict(NAMES))
        z = types.SimpleNamespace(dir=directory, profiles=profiles, server=profiles[0])

        def run(check=False, z=z, **extra):
            params = dict(zone="prod", dir=str(z.dir), roots=[ca.pem], issuers=None, crl=None,
                          trust=None, profiles=z.profiles, certificates=None, rollback=[])
            params.update(extra)
            return N.run(fake_module(params, check))

        def signed(result, z=z):
            out = {}
            for name, item in result["requests"].items():
                csr = x509.load_pem_x509_csr(item["csr"].encode())
                profile = [p for p in z.profiles if p["name"] == name][0]
                out[name] = {"certificate": C.certificate_pem(sign(ca, csr.public_key(),
                                                                   profile)), "chain": []}
            return out

        first = run()
        run(certificates=signed(first))
        old = identity(z.server)
        requested = renew_all(run, z.profiles)  # a renewal with a new key (regenerate_key)
        certificates = signed(requested)
        new_fp = C.fingerprint(C.load_certificate(certificates["server"]["certificate"]))
        seen = []
        _fs._STEP_HOOK = crash_at(index, seen)
        try:
            run(certificates=certificates)
            crashed = False
        except Crash:
            crashed = True
        finally:
            _fs._STEP_HOOK = None
        if not crashed:
            assert identity(z.server) == (new_fp, True, new_fp)
            break
        cases += 1
        # At rest: the live files hold a complete identity, or the new one is staged complete.
        try:
            live = identity(z.server)
        except (TrustzoneError, OSError):
            live = None
        staged = os.path.exists(z.server["cert_path"] + I.STAGED + new_fp[:0] +
                                I.key_tag(C.load_certificate(
                                    certificates["server"]["certificate"])))
        live_complete = live is not None and live[1] and live[0] == live[2]
        assert live_complete or staged, ("step", seen[-1])
        if live_complete and not staged:
            assert live[0] in (old[0], new_fp), seen[-1]
        # The next run finishes the switch (or leaves the old one whole) and then installs.
        after = run()
        live = identity(z.server)
        assert live[1] and live[0] == live[2], ("after recovery", seen[-1])
        if staged:
            assert live[0] == new_fp, ("a staged identity must be finished", seen[-1])
        if after["requests"]:
            run(certificates=signed(after))
        final = identity(z.server)
        assert final[1] and final[0] == final[2]
        assert run()["changed"] is False
        leftovers = [n for n in os.listdir(z.dir) if ".new-" in n or n.endswith(".tmp")]
        assert leftovers == [], (seen[-1], leftovers)
    assert cases >= 8  # every step of both profiles' installs was crashed at once


def test_overlapping_runs_keep_each_others_pending_keys(zone, ca):
    issue_all(zone)
    # Run A made a pending key; run B, started before A's key was written, makes its own.
    a = renew_all(zone.run, zone.profiles)["requests"]["server"]["csr"]
    key_b = C.generate_key(zone.server["key"])
    path_b = I.pending_key_path(zone.server["key_path"], key_b)
    _fs.atomic_write(path_b, C.private_key_pem(key_b), 0o600, 0, 0)
    csr_a = x509.load_pem_x509_csr(a.encode())
    pending = sorted(n for n in os.listdir(zone.dir) if n.startswith("server.key.next-"))
    assert len(pending) == 2
    cert_a = sign(ca, csr_a.public_key(), zone.server)
    cert_b = sign(ca, key_b.public_key(), zone.server)
    zone.run(certificates={"server": {"certificate": C.certificate_pem(cert_a), "chain": []}})
    assert identity(zone.server)[0] == C.fingerprint(cert_a)
    assert os.path.exists(path_b)  # B's key survives A's install
    zone.run(certificates={"server": {"certificate": C.certificate_pem(cert_b), "chain": []}})
    assert identity(zone.server) == (C.fingerprint(cert_b), True, C.fingerprint(cert_b))


def test_install_refuses_a_certificate_no_key_matches_and_writes_nothing(zone, ca):
    issue_all(zone)
    before = {n: open(os.path.join(zone.dir, n), "rb").read() for n in os.listdir(zone.dir)}
    stranger = sign(ca, C.generate_key(zone.server["key"]).public_key(), zone.server)
    with pytest.raises(TrustzoneError, match="no key on this node matches"):
        zone.run(certificates={"server": {"certificate": C.certificate_pem(stranger),
                                          "chain": []}})
    after = {n: open(os.path.join(zone.dir, n), "rb").read() for n in os.listdir(zone.dir)}
    assert after == before


# --------------------------------------------------------------------------- preflight

@pytest.mark.parametrize("what", ["key_link", "cert_dir", "prev_link", "owner"])
def test_install_blockers_stop_inspection_before_any_csr(zone, tmp_path, what):
    issue_all(zone)
    os.unlink(zone.server["cert_path"])  # the server identity must be renewed
    target = tmp_path / "elsewhere"
    target.write_text("x")
    os.chmod(target, 0o600)
    if what == "key_link":
        os.unlink(zone.server["key_path"])
        os.symlink(target, zone.server["key_path"])
    elif what == "cert_dir":
        os.mkdir(zone.server["cert_path"])
    elif what == "prev_link":
        if os.path.lexists(zone.server["chain_path"] + ".prev"):
            os.unlink(zone.server["chain_path"] + ".prev")
        os.symlink(target, zone.server["chain_path"] + ".prev")
    else:
        zone.server["owner"] = "no-such-user-tz"
    listing = sorted(os.listdir(zone.dir))
    with pytest.raises(TrustzoneError) as info:
        zone.run()
    assert "\n" not in str(info.value) and info.value.fix
    assert sorted(os.listdir(zone.dir)) == listing  # no pending key, no CSR
    assert (target.read_text(), stat.S_IMODE(target.stat().st_mode)) == ("x", 0o600)


def test_ensure_meta_does_not_follow_a_link_planted_after_the_check(zone, tmp_path, monkeypatch):
    """The defect of every module: lstat, chown, then chmod(path) followed a planted link."""
    issue_all(zone)
    os.chmod(zone.server["cert_path"], 0o600)  # ask for a metadata fix
    secret = tmp_path / "secret"
    secret.write_text("s")
    os.chmod(secret, 0o600)
    real_fchown, real_chown = os.fchown, os.chown

    def plant():
        os.unlink(zone.server["cert_path"])
        os.symlink(secret, zone.server["cert_path"])

    def fchown(*args, **kwargs):
        plant()
        return real_fchown(*args, **kwargs)

    def chown(*args, **kwargs):
        plant()
        return real_chown(*args, **kwargs)

    monkeypatch.setattr(os, "fchown", fchown)
    monkeypatch.setattr(os, "chown", chown)
    try:
        zone.run()
    except TrustzoneError:
        pass
    monkeypatch.undo()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- revocation

def _crl(ca, serials):
    return C.crl_pem(C.build_crl(ca.cert, ca.key, [(s, NOW - DAY, "key_compromise")
                                                   for s in serials],
                                 NOW - DAY, NOW + 2 * DAY, 5))


def test_rollback_refuses_a_revoked_previous_generation(zone, ca):
    issue_all(zone)
    old_cert = C.load_certificate(open(zone.server["cert_path"], "rb").read())
    requested = renew_all(zone.run, zone.profiles)
    zone.run(certificates=zone.sign(requested))
    # The previous generation is revoked: the CRL kept on the node says so.
    crl = _crl(ca, [old_cert.serial_number])
    zone.run(crl=crl)
    assert os.path.exists(os.path.join(str(zone.dir), "crl.pem"))
    live = identity(zone.server)
    with pytest.raises(TrustzoneError) as info:
        zone.run(rollback=["server"])
    assert "is on the zone's CRL" in str(info.value) and "%x" % old_cert.serial_number in \
        str(info.value)
    assert identity(zone.server) == live


def test_rollback_still_works_for_an_unrevoked_generation(zone, ca):
    issue_all(zone)
    old_fp = identity(zone.server)[0]
    zone.run(certificates=zone.sign(renew_all(zone.run, zone.profiles)))
    zone.run(crl=_crl(ca, [12345]))
    assert zone.run(rollback=["server"])["rolled_back"] == ["server"]
    assert identity(zone.server) == (old_fp, True, old_fp)


@pytest.mark.parametrize("regenerate", [True, False])
def test_renewal_for_revocation_always_makes_a_new_key(zone, ca, regenerate):
    for profile in zone.profiles:
        profile["regenerate_key"] = regenerate
    issue_all(zone)
    live_key = C.load_private_key(open(zone.server["key_path"], "rb").read())
    cert = C.load_certificate(open(zone.server["cert_path"], "rb").read())
    result = zone.run(crl=_crl(ca, [cert.serial_number]))
    assert [r["reason"] for r in result["requests"]["server"]["reasons"]] == ["revoked"]
    csr = x509.load_pem_x509_csr(result["requests"]["server"]["csr"].encode())
    assert not C.same_public_key(csr.public_key(), live_key)


@pytest.mark.parametrize("reasons, regenerate, have, expected", [
    (["revoked"], False, True, True), (["expiring"], False, True, False),
    (["expiring"], True, True, True), (["expiring"], False, False, True),
    (["key_mismatch"], False, True, True), (["names", "revoked"], False, True, True),
])
def test_needs_new_key(reasons, regenerate, have, expected):
    assert I.needs_new_key({"regenerate_key": regenerate}, [{"reason": r} for r in reasons],
                           have) is expected


def test_rollback_twice_rolls_forward_and_switches_as_a_unit(zone, ca):
    issue_all(zone)
    old = identity(zone.server)
    zone.run(certificates=zone.sign(renew_all(zone.run, zone.profiles)))
    new = identity(zone.server)
    assert new != old
    assert zone.run(rollback=["server"])["rolled_back"] == ["server"]
    assert identity(zone.server) == old
    zone.run(rollback=["server"])
    assert identity(zone.server) == new
    assert [n for n in os.listdir(zone.dir) if ".new-" in n or ".next-" in n] == []


# --------------------------------------------------------------------------- issue 21

def test_rollback_returns_the_fingerprint_it_put_back(zone, ca):
    issue_all(zone)
    old_fp = identity(zone.server)[0]
    zone.run(certificates=zone.sign(renew_all(zone.run, zone.profiles)))
    result = zone.run(rollback=["server"], roots=[ca.pem])
    assert result["restored"] == {"server": old_fp} and result["rolled_back"] == ["server"]


def test_rollback_never_puts_back_a_leaf_of_a_retired_root(zone, ca):
    # the previous certificate chains to the zone's old root; the roots the zone trusts now
    # are only the new one: rolling back would undo the rotation's retire phase
    issue_all(zone)
    zone.run(certificates=zone.sign(renew_all(zone.run, zone.profiles)))
    live = identity(zone.server)
    new_key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    new_root = C.build_ca_certificate(new_key, C.zone_name_attributes(
        "prod", "trustzone prod root CA", unique="02"), NOW - DAY, NOW + 3650 * DAY)
    with pytest.raises(TrustzoneError) as info:
        zone.run(rollback=["server"], roots=[C.certificate_pem(new_root)])
    assert "does not chain to a root the zone trusts now" in str(info.value)
    assert identity(zone.server) == live  # nothing switched
    # with the old root still trusted (the use phase), the same rollback goes through
    assert zone.run(rollback=["server"], roots=[ca.pem, C.certificate_pem(new_root)])[
        "rolled_back"] == ["server"]
