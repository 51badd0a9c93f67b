"""plugin_utils/_inventory.InventoryVars + module_utils/_identity.resolve_identities against a
real ansible-core inventory and VariableManager, with every variable source Ansible has.

Only the inventory (inventory files, group_vars/host_vars files), play vars and extra vars may
decide a host's names. Facts (a module's ansible_facts, the fact cache), set_fact, registered
results and include_vars are planted with forged values everywhere and must change nothing.
"""

from __future__ import annotations

import os
import types

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play import Play
from ansible.plugins.loader import cache_loader
from ansible.inventory.manager import InventoryManager
from ansible.vars.manager import VariableManager

from ansible_collections.trustzone.pki.plugins.module_utils import _identity
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.plugin_utils._inventory import InventoryVars

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

INVENTORY = """
all:
  vars:
    trustzone_name: lab
  children:
    trustzone_ca:
      hosts:
        ca: {trustzone_node_fqdn: ca.lab.test, ansible_host: 10.1.0.2}
    trustzone_nodes:
      vars:
        trustzone_certs_profiles:
          - {name: server, extended_key_usage: [server_auth]}
      hosts:
        n1: {trustzone_node_fqdn: n1.lab.test, trustzone_node_addresses: [10.1.0.11]}
        n2:
          trustzone_node_fqdn: "{{ inventory_hostname }}.lab.test"
          ansible_host: 127.0.0.1
"""
# Every forged value a node (or a play's own tasks) could plant.
FORGED = {"trustzone_node_fqdn": "ca.lab.test",
          "trustzone_node_addresses": ["10.1.0.2", "203.0.113.9"],
          "trustzone_certs_extra_names": ["pki01.example.com", "n1.lab.test"],
          "ansible_host": "198.51.100.7",
          "trustzone_certs_profiles": [{"name": "server", "dns": ["pki01.example.com"],
                                        "common_name": "pki01.example.com"}],
          "trustzone_certs_dir": "/tmp/evil"}


@pytest.fixture
def zone(tmp_path):
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "trustzone_nodes.yml").write_text(
        "trustzone_certs_extra_names: []\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "n2.yml").write_text(
        "trustzone_certs_extra_names: [n2-alias.lab.test]\n")
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(tmp_path / "hosts.yml")])
    manager = VariableManager(loader=loader, inventory=inventory)
    # an in-memory fact cache of the kind this ansible-core uses (its own, from ansible.cfg,
    # would write into the checkout)
    manager._fact_cache = cache_loader.get("memory") if hasattr(manager._fact_cache, "set") else {}
    manager._extra_vars = {"trustzone_certs_dir": "/srv/tz"}
    play = Play.load({"hosts": "trustzone_nodes", "gather_facts": False,
                      "vars": {"trustzone_node_addresses_unused": 1}},
                     variable_manager=manager, loader=loader)
    task = types.SimpleNamespace(get_variable_manager=lambda: manager, get_play=lambda: play,
                                 action="trustzone.pki.node")
    return types.SimpleNamespace(loader=loader, inventory=inventory, manager=manager,
                                 play=play, task=task)


def plant_everywhere(zone, values):
    for host in ("n1", "n2", "ca"):
        # a module's ansible_facts and a previous run's fact cache (the same cache)
        zone.manager.set_host_facts(host, dict(values, ansible_fqdn="pki01.example.com"))
        # set_fact and register
        zone.manager.set_nonpersistent_facts(host, dict(values, __trustzone_certs_node={
            "profiles": values["trustzone_certs_profiles"]}))
        # include_vars
        for name, value in values.items():
            zone.manager.set_host_variable(host, name, value)


def resolved(zone):
    nodes, ca_hosts, inventory = InventoryVars(zone.task, zone.loader).zone()
    return nodes, ca_hosts, _identity.resolve_identities(inventory, "lab", nodes, ca_hosts)


EXPECTED = {
    "n1": {"common_name": "n1.lab.test", "dns": ["n1", "n1.lab.test"], "ip": ["10.1.0.11"]},
    "n2": {"common_name": "n2.lab.test", "dns": ["n2", "n2-alias.lab.test", "n2.lab.test"],
           "ip": []},
    "ca": {"common_name": "ca.lab.test", "dns": ["ca", "ca.lab.test"], "ip": ["10.1.0.2"]},
}


def test_inventory_play_and_extra_vars_decide(zone):
    nodes, ca_hosts, out = resolved(zone)
    assert (nodes, ca_hosts) == (["n1", "n2"], ["ca"])
    assert {h: out[h]["names"] for h in out} == EXPECTED
    assert out["ca"]["profiles"] is None  # a CA host that is no node: names only
    server = out["n2"]["profiles"][0]
    assert [p["name"] for p in out["n2"]["profiles"]] == ["server"]  # group var
    assert server["cert_path"] == "/srv/tz/server.crt"  # extra vars
    assert server["common_name"] == "n2.lab.test"  # templated from the inventory


def test_facts_cache_set_fact_register_and_include_vars_change_nothing(zone):
    plant_everywhere(zone, FORGED)
    # the forged values are really there for Ansible's own task variables
    seen = zone.manager.get_vars(play=zone.play, host=zone.inventory.get_host("n1"))
    assert seen["trustzone_node_fqdn"] == "ca.lab.test"
    assert seen["trustzone_certs_extra_names"] == FORGED["trustzone_certs_extra_names"]
    _nodes, _cas, out = resolved(zone)
    assert {h: out[h]["names"] for h in out} == EXPECTED
    assert out["n1"]["profiles"][0]["dns"] == ["n1", "n1.lab.test"]
    assert out["n1"]["profiles"][0]["cert_path"] == "/srv/tz/server.crt"
    # and the task's own variable manager was not touched
    assert zone.manager.get_vars(play=zone.play, host=zone.inventory.get_host("n1"))[
        "trustzone_node_fqdn"] == "ca.lab.test"


def test_play_vars_count(zone):
    zone.play.vars["trustzone_certs_extra_names"] = ["shared-play.lab.test"]
    with pytest.raises(TrustzoneError) as info:  # every node (and the CA) would claim it
        resolved(zone)
    assert "shared-play.lab.test claimed by ca, n1" in str(info.value)


def test_a_template_that_needs_a_fact_is_an_error_not_a_fact(zone, tmp_path):
    (tmp_path / "host_vars" / "n1.yml").write_text(
        "trustzone_node_fqdn: \"{{ ansible_fqdn }}\"\n")
    zone.inventory.refresh_inventory()
    plant_everywhere(zone, FORGED)
    with pytest.raises(TrustzoneError) as info:
        InventoryVars(zone.task, zone.loader).host_vars("n1")
    text = str(info.value)
    assert text.startswith("n1: trustzone_node_fqdn cannot be resolved from the inventory alone")
    assert "facts and registered results do not count" in text


def test_limit_does_not_shrink_the_zone(zone):
    zone.inventory.subset("n1")
    zone.inventory.restrict_to_hosts([zone.inventory.get_host("n1")])
    nodes, ca_hosts, _out = resolved(zone)
    assert (nodes, ca_hosts) == (["n1", "n2"], ["ca"])


def test_a_clash_with_a_host_outside_the_limit_is_found(zone, tmp_path):
    (tmp_path / "host_vars" / "n2.yml").write_text(
        "trustzone_certs_extra_names: [n1.lab.test]\n")
    zone.inventory.refresh_inventory()
    zone.inventory.subset("n1")
    with pytest.raises(TrustzoneError) as info:
        resolved(zone)
    assert "n1.lab.test claimed by n1, n2" in str(info.value)


def test_role_defaults_are_the_resolvers():
    with open(os.path.join(REPO, "roles", "certs", "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    for name, value in _identity.ROLE_DEFAULTS.items():
        assert defaults[name] == value, name
    assert defaults["trustzone_certs_dir"] == "/etc/trustzone/{{ trustzone_name }}"
    assert set(_identity.ROLE_DEFAULTS) | {"trustzone_certs_dir"} == {
        v for v in _identity.IDENTITY_VARS if v in defaults}
