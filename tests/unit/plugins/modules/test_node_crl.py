"""The node module reports whether the zone's crl.pem changed (``crl_changed``), so that the
certs and trust roles reload the services that read it - only then, also in check mode
("would change"), and never on a re-run with the same CRL."""

from __future__ import annotations

import datetime
import os
import types

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _node
from ansible_collections.trustzone.pki.plugins.modules import node as N

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def ca():
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    cert = C.build_ca_certificate(key, C.zone_name_attributes("prod", "trustzone prod root CA",
                                                              unique="01"),
                                  NOW - DAY, NOW + 3650 * DAY)
    return types.SimpleNamespace(key=key, cert=cert, pem=C.certificate_pem(cert))


def _crl(ca, serials, number):
    return C.crl_pem(C.build_crl(ca.cert, ca.key, [(s, NOW - DAY, "key_compromise")
                                                   for s in serials],
                                 NOW - DAY, NOW + 2 * DAY, number))


@pytest.fixture
def run(tmp_path, ca):
    directory = tmp_path / "prod"

    def run(check=False, **extra):
        params = dict(zone="prod", dir=str(directory), roots=[ca.pem], issuers=None, crl=None,
                      trust=None, profiles=[], certificates=None, rollback=[])
        params.update(extra)
        module = types.SimpleNamespace(params=params, check_mode=check, _diff=False,
                                       get_bin_path=lambda _name: None,
                                       run_command=lambda *a, **k: (0, "", ""))
        return N.run(module)
    run.crl_path = os.path.join(str(directory), _node.CRL_FILE)
    return run


def test_first_crl_is_a_change_and_a_rerun_is_not(run, ca):
    crl = _crl(ca, [11], 1)
    first = run(crl=crl)
    assert first["crl_changed"] is True and first["changed"] is True
    assert open(run.crl_path).read() == crl
    again = run(crl=crl)
    assert again["crl_changed"] is False and again["changed"] is False


def test_a_new_crl_is_a_change(run, ca):
    run(crl=_crl(ca, [11], 1))
    newer = _crl(ca, [11, 12], 2)
    result = run(crl=newer)
    assert result["crl_changed"] is True
    assert run.crl_path in result["files"]
    assert open(run.crl_path).read() == newer


def test_check_mode_says_would_change_and_writes_nothing(run, ca):
    # no zone directory yet: the CRL would be written
    result = run(check=True, crl=_crl(ca, [11], 1))
    assert result["crl_changed"] is True and not os.path.exists(run.crl_path)
    old = _crl(ca, [11], 1)
    run(crl=old)
    result = run(check=True, crl=_crl(ca, [11, 12], 2))
    assert result["crl_changed"] is True
    assert open(run.crl_path).read() == old
    assert run(check=True, crl=old)["crl_changed"] is False


def test_only_the_mode_of_crl_pem_changed_is_not_a_new_crl(run, ca):
    crl = _crl(ca, [11], 1)
    run(crl=crl)
    os.chmod(run.crl_path, 0o600)
    result = run(crl=crl)
    assert result["changed"] is True and result["crl_changed"] is False
    assert os.stat(run.crl_path).st_mode & 0o777 == 0o644


def test_no_crl_given_leaves_crl_pem_and_reports_no_change(run, ca):
    crl = _crl(ca, [11], 1)
    run(crl=crl)
    result = run()
    assert result["crl_changed"] is False
    assert open(run.crl_path).read() == crl


def test_roots_change_alone_is_not_a_crl_change(run, ca):
    crl = _crl(ca, [11], 1)
    run(crl=crl)
    os.remove(os.path.join(os.path.dirname(run.crl_path), _node.ROOTS_BUNDLE))
    result = run(crl=crl)
    assert result["changed"] is True and result["crl_changed"] is False


def test_an_install_call_reports_no_crl_change(run, ca):
    run(crl=_crl(ca, [11], 1))
    # the install call (the certs role's handler) never carries the CRL
    assert run(certificates={})["crl_changed"] is False
