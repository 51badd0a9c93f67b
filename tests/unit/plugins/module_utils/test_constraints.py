"""_constraints: what the zone's intermediate may vouch for, derived from inventory names."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509

from ansible_collections.trustzone.pki.plugins.module_utils import _constraints as N
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

ZONE = {
    "node1": ["node1.lab.example.com", "10.20.0.11"],
    "node2": ["node2.lab.example.com", "10.20.0.12", "qlikserver2"],
    "ca": ["pki.ops.example.com"],
}


def test_names_fall_under_their_domain_machine_names_and_addresses_stay_exact():
    plan = N.plan(ZONE)
    assert plan == {"dns": ["lab.example.com", "ops.example.com", "qlikserver2"],
                    "ip": ["10.20.0.11/32", "10.20.0.12/32"],
                    "excluded_ip": ["::/0"]}


@pytest.mark.parametrize("name, subtree", [
    ("node1.lab.example.com", ("dns", "lab.example.com")),
    ("example.com", ("dns", "example.com")),  # never the top-level domain
    ("qlikserver1", ("dns", "qlikserver1")),
    ("*.apps.example.com", ("dns", "apps.example.com")),
    ("10.0.0.1", ("ip", ipaddress.ip_network("10.0.0.1/32"))),
    ("fd00::1", ("ip", ipaddress.ip_network("fd00::1/128"))),
])
def test_subtree_of(name, subtree):
    assert N.subtree_of(name) == subtree


def test_a_subtree_inside_another_is_dropped_and_adjacent_addresses_merge():
    plan = N.plan({"a": ["x.lab.example.com", "y.eu.lab.example.com", "10.0.0.0", "10.0.0.1"]},
                  permitted=["example.com"])
    assert plan["dns"] == ["example.com"]
    assert plan["ip"] == ["10.0.0.0/31"]


def test_a_zone_without_addresses_excludes_every_address():
    plan = N.plan({"a": ["a.lab.example.com"]})
    assert plan["ip"] == [] and plan["excluded_ip"] == ["0.0.0.0/0", "::/0"]


def test_a_zone_without_dns_names_permits_only_the_reserved_invalid_domain():
    assert N.plan({"a": ["10.0.0.1"]})["dns"] == ["invalid"]


def test_operator_subtrees_are_added():
    plan = N.plan(ZONE, permitted=["10.30.0.0/16", ".svc.example.org", "fd00::/64"])
    assert "svc.example.org" in plan["dns"]
    assert plan["ip"] == ["10.20.0.11/32", "10.20.0.12/32", "10.30.0.0/16", "fd00::/64"]
    assert plan["excluded_ip"] == []


def test_pinned_permits_exactly_the_given_subtrees():
    plan = N.plan(ZONE, permitted=["example.com", "qlikserver2", "10.20.0.0/16"], pinned=True)
    assert plan == {"dns": ["example.com", "qlikserver2"], "ip": ["10.20.0.0/16"],
                    "excluded_ip": ["::/0"]}


def test_pinned_subtrees_that_leave_out_an_inventory_name_name_the_host_and_the_variable():
    with pytest.raises(TrustzoneError) as err:
        N.plan(ZONE, permitted=["lab.example.com", "10.20.0.0/16", "qlikserver2"], pinned=True)
    text = str(err.value)
    assert "ca: pki.ops.example.com is outside the pinned name constraints" in text
    assert N.PERMITTED_VAR in text and N.PINNED_VAR in text and "\n" not in text


def test_pinned_without_subtrees_is_refused():
    with pytest.raises(TrustzoneError, match="is empty"):
        N.plan(ZONE, pinned=True)


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "300.1.1.1", "*.example.com", "exa mple.com",
                                 "http://x"])
def test_bad_operator_subtrees_are_one_line_naming_the_variable(bad):
    with pytest.raises(TrustzoneError) as err:
        N.plan(ZONE, permitted=[bad])
    assert N.PERMITTED_VAR in str(err.value) and "\n" not in str(err.value)


def test_permitted_must_be_a_list():
    with pytest.raises(TrustzoneError, match="must be a list"):
        N.plan(ZONE, permitted="example.com")


@pytest.mark.parametrize("name, inside", [
    ("node1.lab.example.com", True), ("lab.example.com", True), ("*.lab.example.com", True),
    ("evillab.example.com", False), ("example.com", False), ("www.google.com", False),
    ("10.20.0.11", True), ("10.20.0.13", False), ("fd00::1", False),
])
def test_covers_matches_like_rfc_5280(name, inside):
    plan = N.plan(ZONE)
    subtrees = [N.parse_subtree(s) for s in plan["dns"] + plan["ip"]]
    assert any(N.covers(s, name) for s in subtrees) is inside


def test_extension_round_trips_through_a_certificate_value():
    plan = N.plan(ZONE)
    ext = N.extension(plan)
    assert x509.DNSName("lab.example.com") in ext.permitted_subtrees
    assert x509.IPAddress(ipaddress.ip_network("::/0")) in ext.excluded_subtrees


def test_zone_names_take_every_profile_name_and_a_dns_like_common_name():
    identities = {"n": {"names": {"dns": ["n.lab.example.com"], "ip": []},
                        "profiles": [{"dns": ["n.lab.example.com"], "ip": ["10.0.0.5"],
                                      "common_name": "svc.other.example"},
                                     {"dns": [], "ip": [], "common_name": "QlikClient"}]},
                  "ca": {"names": {"dns": ["ca.lab.example.com"], "ip": []}, "profiles": None}}
    assert N.zone_names(identities) == {
        "n": ["10.0.0.5", "n.lab.example.com", "svc.other.example"],
        "ca": ["ca.lab.example.com"]}


def test_difference_says_what_changes():
    before = N.plan({"a": ["a.lab.example.com"]})
    after = N.plan({"a": ["a.lab.example.com"], "b": ["b.lab2.example.com"]})
    assert N.difference(before, before) is None
    assert N.difference(before, after) == "name constraints changed: +lab2.example.com"
    assert N.difference(None, after).startswith("name constraints added: lab.example.com")
    assert N.difference(after, None) == "name constraints removed"
