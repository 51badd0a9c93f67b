"""Action plugin trustzone.pki.zone_root: the ca role's input checks, before the CA host."""

from __future__ import annotations

import types
from unittest import mock

import pytest

from ansible_collections.trustzone.pki.plugins.action.zone_root import ActionModule
from ansible_collections.trustzone.pki.tests.unit.plugins.action.tz_fakeinventory import (
    FakeInventory)

ZONE = {"ca": {"trustzone_node_fqdn": "ca.lab.test"},
        "node1": {"trustzone_node_fqdn": "node1.lab.test"},
        "node2": {"trustzone_node_fqdn": "node2.lab.test"}}


def make_action(args=None, zone=None):
    base = {"zone": "lab", "passphrase": "a long enough passphrase", "ca_hosts": ["ca"]}
    task = types.SimpleNamespace(args=dict(base, **(args or {})), async_val=0,
                                 check_mode=False, action="trustzone.pki.zone_root")
    connection = types.SimpleNamespace(_shell=types.SimpleNamespace(tmpdir="/tmp/remote"))
    action = ActionModule(task, connection, play_context=None, loader=None, templar=None,
                          shared_loader_obj=None)  # required before ansible-core 2.19
    action._load_name = "trustzone.pki.zone_root"
    action.inventory = FakeInventory(zone or ZONE, ca_hosts=["ca"])
    action._inventory_source = lambda: action.inventory
    action._execute_module = mock.Mock(return_value={"changed": False, "phase": "stable"})
    return action


def test_good_inputs_reach_the_module_without_ca_hosts():
    action = make_action()
    result = action.run(task_vars={"inventory_hostname": "ca"})
    args = action._execute_module.call_args.kwargs["module_args"]
    assert "ca_hosts" not in args and args["zone"] == "lab"
    assert result["phase"] == "stable"


@pytest.mark.parametrize("args, text", [
    ({"ca_hosts": ["ca", "node1"]},
     "trustzone_ca must hold exactly one host, it holds 2 (ca, node1)"),
    ({"passphrase": "short"}, "ca: trustzone_ca_passphrase must be set, at least 12 characters"),
    ({"zone": "NO"}, "ca: trustzone_name 'NO' is not a valid zone name"),
])
def test_bad_inputs_stop_before_the_ca_host(args, text):
    action = make_action(args)
    result = action.run(task_vars={"inventory_hostname": "ca"})
    action._execute_module.assert_not_called()
    assert result["failed"] is True and text in result["msg"]
    assert "short" not in result["msg"]


class Loader:
    def load_from_file(self, path):
        assert path.endswith("/ca/meta/argument_specs.yml")
        return {"argument_specs": {"main": {"options": {
            "trustzone_ca_lifetime": {"type": "str", "default": "3650d"},
            "trustzone_ca_intermediate": {"type": "bool", "default": False}}}}}


class Templar:
    def template(self, value):
        return value


def test_role_spec_is_checked_before_the_ca_host():
    action = make_action({"role_spec": "/roles/ca"})
    action._loader, action._templar = Loader(), Templar()
    result = action.run(task_vars={"inventory_hostname": "ca",
                                   "trustzone_ca_intermediate": "perhaps"})
    action._execute_module.assert_not_called()
    assert result["failed"] is True
    assert result["msg"].startswith("ca: role ca: ")
    assert "trustzone_ca_intermediate" in result["msg"]


def test_role_spec_that_holds_is_not_passed_on():
    action = make_action({"role_spec": "/roles/ca"})
    action._loader, action._templar = Loader(), Templar()
    action.run(task_vars={"inventory_hostname": "ca", "trustzone_ca_intermediate": True})
    assert "role_spec" not in action._execute_module.call_args.kwargs["module_args"]


@pytest.mark.parametrize("zone, text", [
    (dict(ZONE, **{"node/1": {}}), "inventory host 'node/1' is not a valid host name"),
    (dict(ZONE, **{"../node1": {}}), "inventory host '../node1' is not a valid host name"),
    (dict(ZONE, node2={"trustzone_certs_extra_names": ["ca.lab.test"]}),
     "ca.lab.test claimed by ca, node2"),
    (dict(ZONE, node2={"trustzone_node_fqdn": "node2.lab.test", "trustzone_certs_profiles": [
        {"name": "server", "common_name": "node1.lab.test"}]}),
     "node2: profile 'server': common_name node1.lab.test is not one of this host's names"),
    (dict(ZONE, node2={"trustzone_node_fqdn": "node2.lab.test", "trustzone_certs_profiles": [
        {"name": "server", "common_name": "*.lab.test", "common_name_outside_names": True}]}),
     "common_name '*.lab.test' is not a DNS name or IP address"),
])
def test_a_bad_zone_inventory_stops_the_ca_play_before_the_ca_host(zone, text):
    action = make_action(zone=zone)
    result = action.run(task_vars={"inventory_hostname": "ca"})
    action._execute_module.assert_not_called()
    assert result["failed"] is True
    assert text in result["msg"] and "Fix:" in result["msg"]


def test_the_module_gets_every_hosts_inventory_names_and_a_task_value_is_replaced():
    action = make_action({"zone_names": {"node1": ["www.google.com"]}})
    action.run(task_vars={"inventory_hostname": "ca",
                          "ansible_facts": {"trustzone_node_fqdn": "evil.example.com"}})
    args = action._execute_module.call_args.kwargs["module_args"]
    assert args["zone_names"] == {"ca": ["ca", "ca.lab.test"], "node1": ["node1", "node1.lab.test"],
                                  "node2": ["node2", "node2.lab.test"]}


@pytest.mark.parametrize("args, text", [
    ({"name_constraints": "true", "name_constraints_pinned": True,
      "name_constraints_permitted": ["lab.test", "node1", "node2"]},
     "ca: ca is outside the pinned name constraints (lab.test, node1, node2)"),
    ({"name_constraints": True, "name_constraints_permitted": ["10.0.0.1/8"]},
     "trustzone_ca_name_constraints_permitted: '10.0.0.1/8' is not an address or a network"),
])
def test_name_constraints_that_cannot_hold_stop_before_the_ca_host(args, text):
    action = make_action(args)
    result = action.run(task_vars={"inventory_hostname": "ca"})
    action._execute_module.assert_not_called()
    assert result["failed"] is True and text in result["msg"]


def test_pinned_constraints_are_not_checked_when_constraints_are_off():
    action = make_action({"name_constraints": "false", "name_constraints_pinned": True})
    action.run(task_vars={"inventory_hostname": "ca"})
    action._execute_module.assert_called_once()


def test_the_zones_publish_url_comes_from_the_inventory_and_a_bad_one_stops_the_play():
    zone = dict(ZONE, ca=dict(ZONE["ca"], trustzone_ca_publish_url="http://pki.lab.test/tz"))
    action = make_action(zone=zone)
    action.run(task_vars={"inventory_hostname": "ca"})
    assert action._execute_module.call_args.kwargs["module_args"]["publish_url"] == \
        "http://pki.lab.test/tz"
    bad = dict(ZONE, ca=dict(ZONE["ca"], trustzone_ca_publish_url="ftp://x/?y"))
    action = make_action(zone=bad)
    result = action.run(task_vars={"inventory_hostname": "ca"})
    action._execute_module.assert_not_called()
    assert result["failed"] is True and "trustzone_ca_publish_url" in result["msg"]
