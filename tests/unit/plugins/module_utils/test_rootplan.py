"""_rootplan.plan: the CA host's wanted state, planned in memory from a ``_ca.Draft``.

The whole module (load, plan, commit, CRL) is driven through ``zone_root.run`` in test_ca.py,
test_revocation.py and tests/unit/plugins/modules/test_ca_crash.py; these tests call the
plan alone, with a fixed clock, and check that it never touches the disk.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _rootplan
from ansible_collections.trustzone.pki.plugins.module_utils._ca import Draft
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

PASS = "correct horse battery staple"
# zone_root's defaults (its argument spec), with a fast curve
PARAMS = {
    "passphrase": PASS, "key_type": "ec", "key_curve": "secp256r1", "key_size": 4096,
    "lifetime": "3650d", "common_name": None, "rotate": "none", "retire_confirmed": False,
    "rotate_before": "365d", "rotate_force": False, "extend": False, "intermediate": False,
    "intermediate_lifetime": "1825d", "intermediate_rotate_before": "180d",
    "intermediate_force": False,
}


def plan(draft, now=NOW, **params):
    return _rootplan.plan(draft, dict(PARAMS, **params), "prod", now)


@pytest.fixture
def empty(tmp_path):
    return Draft({}, str(tmp_path), source=None)


def test_an_empty_zone_gets_a_root_in_memory_only(empty, tmp_path):
    wanted, facts = plan(empty)
    assert facts["created"] is True and facts["changed"] is True
    assert sorted(wanted.files) == ["root.crt", "root.key"]
    assert empty.files == {}  # the state in force is not changed: a copy is
    assert os.listdir(str(tmp_path)) == []  # nothing written
    cert = facts["cert"]
    assert facts["trusted"] == [cert] and facts["issuer"] is cert
    assert (facts["phase"], facts["ncert"], facts["intermediates"]) == ("stable", None, {})
    assert C.common_name(cert) == "trustzone prod root CA"
    assert C.not_after(cert) == NOW + 3650 * DAY


def test_planning_the_planned_state_again_changes_nothing(empty):
    wanted, _facts = plan(empty)
    again, facts = plan(wanted, now=NOW + DAY)
    assert facts["changed"] is False and facts["created"] is False
    assert again.files == wanted.files


def test_an_intermediate_is_made_once_and_kept_until_due(empty):
    wanted, facts = plan(empty, intermediate=True)
    root = facts["cert"]
    inter = facts["intermediates"][C.fingerprint(root)]
    assert C.is_signed_by(inter, root)
    assert [cert for _key, cert in facts["cas"]] == [root, inter]
    again, facts = plan(wanted, now=NOW + DAY, intermediate=True)
    assert facts["changed"] is False and again.files == wanted.files
    forced, facts = plan(wanted, now=NOW + DAY, intermediate=True, intermediate_force=True)
    assert facts["changed"] is True
    assert C.fingerprint(facts["intermediates"][C.fingerprint(root)]) != C.fingerprint(inter)
    assert any(name.startswith("retired/intermediate-") for name in forced.files)


def test_extend_needs_rotate_before_shorter_than_lifetime(empty):
    wanted, _facts = plan(empty)
    with pytest.raises(TrustzoneError) as err:
        plan(wanted, extend=True, rotate_before="3650d")
    assert "must be shorter than lifetime" in str(err.value)


def test_retire_without_confirmation_is_refused(empty):
    wanted, _facts = plan(empty)
    trust, facts = plan(wanted, rotate="trust", rotate_force=True)
    assert facts["phase"] == "trust" and facts["ncert"] is not None
    use, facts = plan(trust, rotate="use")
    assert facts["phase"] == "use" and facts["issuer"] is facts["ncert"]
    with pytest.raises(TrustzoneError) as err:
        plan(use, rotate="retire")
    assert "refusing to retire the old root" in str(err.value)
    _done, facts = plan(use, rotate="retire", retire_confirmed=True)
    assert facts["phase"] == "stable" and facts["ncert"] is None


def test_root_facts(empty):
    _wanted, facts = plan(empty)
    out = _rootplan.root_facts(facts["cert"], NOW + DAY)
    assert out["fingerprint"] == C.fingerprint(facts["cert"])
    assert out["days_left"] == 3649  # 3650 days from NOW, asked one day later
    assert out["not_after"] == (NOW + 3650 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
