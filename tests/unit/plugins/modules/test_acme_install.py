"""acme_install: key, certificate, chains and state switch as one unit; a crash between any
two steps is finished by the next run's ``recovered`` call; a staged key that does not match
is refused before anything moves."""

from __future__ import annotations

import datetime
import os
import types

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.modules import acme_install as A

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)
DAY = datetime.timedelta(days=1)


def crash_at(index, seen):
    """A step hook that records the steps and dies at step ``index`` (0-based)."""
    def hook(name, _path):
        seen.append(name)
        if len(seen) == index + 1:
            raise Crash(name)
    return hook


class Crash(BaseException):
    pass


@pytest.fixture(scope="module")
def ca():
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    cert = C.build_ca_certificate(key, C.zone_name_attributes("acme", "pebble", unique="01"),
                                  NOW - DAY, NOW + 300 * DAY)
    return key, cert


def pair(ca, name):
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    cert = C.build_leaf_certificate(key.public_key(), C.zone_name_attributes("acme", name),
                                    [name], [], ca[1], ca[0], NOW - DAY, NOW + 90 * DAY,
                                    ["digital_signature"], ["server_auth"])
    return key, cert


def stage(directory, ca, key, cert, suffix_key=".next", suffix=".new"):
    files = {"privkey.pem" + suffix_key: C.private_key_pem(key),
             "cert.pem" + suffix: C.certificate_pem(cert),
             "chain.pem" + suffix: C.certificate_pem(ca[1]),
             "fullchain.pem" + suffix: C.certificate_pem(cert) + C.certificate_pem(ca[1]),
             "state.json" + suffix: '{"domains": ["%s"]}\n' % C.common_name(cert)}
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(data if isinstance(data, bytes) else data.encode())


def module(directory, state="installed", check=False):
    return types.SimpleNamespace(params=dict(dir=str(directory), state=state, key_group="root",
                                             key_mode="0600"), check_mode=check)


def live(directory):
    key = C.load_private_key(open(os.path.join(directory, "privkey.pem"), "rb").read())
    cert = C.load_certificate(open(os.path.join(directory, "cert.pem"), "rb").read())
    full = C.load_certificates(open(os.path.join(directory, "fullchain.pem"), "rb").read())
    state = open(os.path.join(directory, "state.json")).read()
    assert C.same_public_key(key, cert) and C.fingerprint(full[0]) == C.fingerprint(cert)
    assert C.common_name(cert) in state
    return C.fingerprint(cert)


def test_install_switches_and_sets_modes(tmp_path, ca):
    stage(tmp_path, ca, *pair(ca, "old.example"))
    A.run(module(tmp_path))
    assert oct(os.stat(tmp_path / "privkey.pem").st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(tmp_path)) == ["cert.pem", "chain.pem", "fullchain.pem",
                                            "privkey.pem", "state.json"]
    assert A.run(module(tmp_path, state="recovered"))["changed"] is False


def test_mismatched_staged_key_moves_nothing(tmp_path, ca):
    stage(tmp_path, ca, *pair(ca, "old.example"))
    A.run(module(tmp_path))
    old = live(tmp_path)
    key, _cert = pair(ca, "x.example")
    _other_key, cert = pair(ca, "new.example")
    stage(tmp_path, ca, key, cert)
    with pytest.raises(TrustzoneError, match="does not match"):
        A.run(module(tmp_path))
    assert live(tmp_path) == old


def test_a_crash_between_any_two_steps_is_finished_by_the_next_run(tmp_path, ca):
    crashed_at = []
    for index in range(60):
        directory = tmp_path / ("case%d" % index)
        directory.mkdir()
        stage(directory, ca, *pair(ca, "old.example"))
        A.run(module(directory))
        old = live(directory)
        new_key, new_cert = pair(ca, "new.example")
        stage(directory, ca, new_key, new_cert)
        seen = []
        _fs._STEP_HOOK = crash_at(index, seen)
        try:
            A.run(module(directory))
            done = True
        except Crash:
            done = False
        finally:
            _fs._STEP_HOOK = None
        if done:
            assert live(directory) == C.fingerprint(new_cert)
            break
        crashed_at.append(seen[-1])
        A.run(module(directory, state="recovered"))
        now = live(directory)  # complete, whichever it is
        if os.path.exists(directory / "privkey.pem.next"):
            assert now == old  # crashed before the commit marker: nothing moved
        else:
            assert now == C.fingerprint(new_cert)
        assert not [n for n in os.listdir(directory) if n.endswith(".tmp")]
        assert not os.path.exists(directory / A.MARKER)
    assert len(crashed_at) >= 6


def assessed(directory, **kw):
    params = dict(dir=str(directory), state="assessed", key_group="root", key_mode="0600",
                  domains=["www.example.org"], key_type="ec", key_curve="secp256r1",
                  key_size=3072, renew_before_days=30, directory="https://acme/dir")
    params.update(kw)
    return A.run(types.SimpleNamespace(params=params, check_mode=True))


def test_assessed_reads_the_installed_certificate_and_changes_nothing(tmp_path, ca):
    assert assessed(tmp_path / "absent") == {"changed": False, "files": [],
                                             "reasons": ["no readable certificate"]}
    key, cert = pair(ca, "www.example.org")
    stage(str(tmp_path), ca, key, cert)
    A.run(module(tmp_path))
    before = sorted(os.listdir(str(tmp_path)))
    assert assessed(tmp_path)["reasons"] == ["issued by another ACME directory (unknown)"]
    with open(str(tmp_path / "state.json"), "w") as handle:
        handle.write('{"directory": "https://acme/dir"}\n')
    assert assessed(tmp_path) == {"changed": False, "files": [], "reasons": []}
    assert assessed(tmp_path, domains=["other.example.org"], key_curve="secp384r1",
                    renew_before_days=100)["reasons"] == [
        "expires %s UTC, within 100 days" % C.not_after(cert).strftime("%Y-%m-%d %H:%M"),
        "names differ: has DNS:www.example.org", "key type differs"]
    os.remove(str(tmp_path / "privkey.pem"))
    assert assessed(tmp_path)["reasons"] == ["no readable key"]
    assert sorted(os.listdir(str(tmp_path))) == [n for n in before if n != "privkey.pem"]


def test_assessed_renews_by_a_fraction_of_the_lifetime_unless_days_are_set(tmp_path, ca):
    """Without renew_before_days the window is renew_fraction of the certificate's lifetime
    (91 days here: a third is 30.3 days, 89 are left); the CA's renewal information and a
    changed ACME profile are reasons too."""
    key, cert = pair(ca, "www.example.org")
    stage(str(tmp_path), ca, key, cert)
    A.run(module(tmp_path))
    with open(str(tmp_path / "state.json"), "w") as handle:
        handle.write('{"directory": "https://acme/dir"}\n')
    end = C.not_after(cert).strftime("%Y-%m-%d %H:%M")
    assert assessed(tmp_path, renew_before_days=None)["reasons"] == []
    assert assessed(tmp_path, renew_before_days=None, renew_fraction=0.99)["reasons"] == [
        "expires %s UTC, within the last 99%% of its lifetime of 91 days (90.1 days)" % end]
    # days win over the fraction
    assert assessed(tmp_path, renew_before_days=30, renew_fraction=0.99)["reasons"] == []
    ari = {"supports_ari": True, "should_renew": True, "msg": "the window began"}
    assert assessed(tmp_path, renew_before_days=None, renewal_info=ari,
                    profile="shortlived")["reasons"] == [
        "the CA's renewal information (RFC 9773) says renew now: the window began",
        "issued without a profile, not for profile shortlived"]
    with pytest.raises(TrustzoneError, match="renew_fraction"):
        assessed(tmp_path, renew_before_days=None, renew_fraction=1.0)
