"""_rootplan.plan: the CA host's wanted state, planned in memory from a ``_ca.Draft``.

The whole module (load, plan, commit, CRL) is driven through ``zone_root.run`` in test_ca.py,
test_revocation.py and tests/unit/plugins/modules/test_ca_crash.py; these tests call the
plan alone, with a fixed clock, and check that it never touches the disk.
"""

from __future__ import annotations

import ipaddress
import os

import pytest
from cryptography import x509

from ansible_collections.trustzone.pki.plugins.module_utils import _constraints as N
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


# --------------------------------------------------------------------------- name constraints

ZONE_NAMES = {"node1": ["node1.lab.example.com"], "node2": ["node2.lab.example.com", "10.0.0.2"]}


def constrained(draft, now=NOW, names=None, **params):
    return plan(draft, now=now, intermediate=True, name_constraints=True,
                zone_names=ZONE_NAMES if names is None else names, **params)


def test_the_intermediate_carries_the_zones_name_constraints(empty):
    _wanted, facts = constrained(empty)
    inter = facts["intermediates"][C.fingerprint(facts["cert"])]
    ext = inter.extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical is True
    assert [n.value for n in ext.value.permitted_subtrees] == [
        "lab.example.com", ipaddress.ip_network("10.0.0.2/32")]
    assert facts["name_constraints"]["excluded_ip"] == ["::/0"]
    with pytest.raises(x509.ExtensionNotFound):  # the root stays unconstrained (anchors)
        facts["cert"].extensions.get_extension_for_class(x509.NameConstraints)


def test_unchanged_names_change_nothing_and_a_new_domain_reissues_the_intermediate(empty):
    wanted, facts = constrained(empty)
    first = facts["intermediates"][C.fingerprint(facts["cert"])]
    again, facts = constrained(wanted, now=NOW + DAY, names=dict(ZONE_NAMES, node3=[
        "node3.lab.example.com"]))  # same domain: nothing to do
    assert facts["changed"] is False and again.files == wanted.files and facts["reissued"] == {}
    grown, facts = constrained(wanted, now=NOW + DAY, names=dict(ZONE_NAMES, node3=[
        "node3.lab2.example.com"]))
    assert facts["reissued"] == {"intermediate": "name constraints changed: +lab2.example.com"}
    new = facts["intermediates"][C.fingerprint(facts["cert"])]
    assert C.fingerprint(new) != C.fingerprint(first) and C.is_signed_by(new, facts["cert"])
    assert facts["trusted"] == [facts["cert"]]  # the root, hence every trust store, unchanged
    assert any(name.startswith("retired/intermediate-") for name in grown.files)


def test_turning_constraints_on_reissues_an_unconstrained_intermediate(empty):
    wanted, _facts = plan(empty, intermediate=True)
    _again, facts = constrained(wanted, now=NOW + DAY)
    assert facts["reissued"]["intermediate"].startswith("name constraints added: ")
    _off, facts = plan(_again, now=NOW + 2 * DAY, intermediate=True)
    assert facts["reissued"] == {"intermediate": "name constraints removed"}


def test_constraints_without_an_intermediate_or_zone_names_are_refused(empty):
    with pytest.raises(TrustzoneError, match="trustzone_ca_intermediate is false"):
        plan(empty, name_constraints=True, zone_names=ZONE_NAMES)
    with pytest.raises(TrustzoneError, match="zone_names is missing"):
        plan(empty, intermediate=True, name_constraints=True)


def test_a_rotations_next_intermediate_is_constrained_too(empty):
    wanted, _facts = constrained(empty)
    _trust, facts = constrained(wanted, now=NOW + DAY, rotate="trust", rotate_force=True)
    nfp = C.fingerprint(facts["ncert"])
    assert N.of_certificate(facts["intermediates"][nfp]) == facts["name_constraints"]


# --------------------------------------------------------------------------- distribution points

def test_the_intermediate_names_its_roots_crl_and_certificate_and_follows_the_url(empty):
    from ansible_collections.trustzone.pki.plugins.module_utils import _publish
    url = "http://pki.example.com/tz/prod"
    wanted, facts = plan(empty, intermediate=True, publish_url=url)
    root = facts["cert"]
    inter = facts["intermediates"][C.fingerprint(root)]
    assert _publish.urls_of(inter) == {"crl": ["%s/%s.crl" % (url, _publish.ca_id(root))],
                                       "ca_issuers": ["%s/%s.crt" % (url, _publish.ca_id(root))]}
    _same, facts = plan(wanted, now=NOW + DAY, intermediate=True, publish_url=url)
    assert facts["reissued"] == {}
    _moved, facts = plan(wanted, now=NOW + DAY, intermediate=True,
                         publish_url="http://pki2.example.com/tz")
    assert facts["reissued"]["intermediate"].startswith("distribution point ")
