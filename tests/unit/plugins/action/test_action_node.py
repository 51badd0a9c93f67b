"""Action plugin trustzone.pki.node, run with a fake task and connection.

``_execute_module`` (the call to the node) is replaced by a mock: these tests show what the
controller checks and resolves before a node is contacted, and what it adds afterwards.
"""

from __future__ import annotations

import types
from unittest import mock

import pytest

from ansible_collections.trustzone.pki.plugins.action.node import ActionModule
from ansible_collections.trustzone.pki.plugins.module_utils import _zonecheck as ZC
from ansible_collections.trustzone.pki.tests.unit.plugins.action.tz_fakeinventory import (
    FakeInventory)

HOST_VARS = {"inventory_hostname": "web1", "trustzone_node_fqdn": "web1.prod.example",
             "trustzone_node_addresses": ["10.0.0.11"], "ansible_host": "127.0.0.1"}


class Templar:
    def template(self, value):
        return value


def inventory_of(args):
    """web1's inventory: HOST_VARS, and the profiles and extra names a test's task arguments
    name (in a play both are the same inventory variables; the action reads the inventory's)."""
    own = {k: v for k, v in HOST_VARS.items() if k != "inventory_hostname"}
    if (args or {}).get("inventory_profiles") is not None:
        own["trustzone_certs_profiles"] = args["inventory_profiles"]
    if (args or {}).get("extra_names") is not None:
        own["trustzone_certs_extra_names"] = args["extra_names"]
    return FakeInventory({"web1": own})


def make_action(args=None, check_mode=False, remote=None, inventory=None):
    base = {"zone": "prod", "dir": "/etc/trustzone/prod", "roots": ["ROOT PEM"]}
    task = types.SimpleNamespace(args=dict(base, **(args or {})), async_val=0,
                                 check_mode=check_mode, action="trustzone.pki.node")
    connection = types.SimpleNamespace(_shell=types.SimpleNamespace(tmpdir="/tmp/remote"))
    action = ActionModule(task, connection, play_context=None, loader=None, templar=Templar(),
                          shared_loader_obj=None)  # required before ansible-core 2.19
    action._load_name = "trustzone.pki.node"
    action.inventory = inventory or inventory_of(args)
    action._inventory_source = lambda: action.inventory
    action._execute_module = mock.Mock(
        return_value=remote if remote is not None else {"changed": False, "requests": {}})
    return action


def run(action, **extra_vars):
    return action.run(task_vars=dict(HOST_VARS, **extra_vars))


def module_args(action):
    return action._execute_module.call_args.kwargs["module_args"]


def test_profiles_are_resolved_on_the_controller_and_returned():
    action = make_action({"inventory_profiles": [{"name": "server"}],
                          "extra_names": ["api.prod.example"], "ca_hosts": ["ca"],
                          "reload_services": [], "reload_commands": []})
    result = run(action)
    args = module_args(action)
    for own in ("inventory_profiles", "extra_names", "ca_hosts", "reload_services",
                "reload_commands", "signed"):
        assert own not in args
    assert [p["name"] for p in args["profiles"]] == ["server"]
    assert set(args["profiles"][0]["dns"]) == {"web1", "web1.prod.example", "api.prod.example"}
    assert args["profiles"][0]["ip"] == ["10.0.0.11"]  # loopback ansible_host dropped
    assert result["profiles"] == args["profiles"]
    assert result["changed"] is False


def test_profiles_the_node_returns_are_replaced_by_the_controllers():
    remote = {"changed": False, "requests": {}, "profiles": [{"name": "server", "dns": ["*"]}]}
    action = make_action({"inventory_profiles": [{"name": "server"}]}, remote=remote)
    result = run(action)
    assert result["profiles"] == module_args(action)["profiles"]
    assert result["profiles"][0]["dns"] != ["*"]


def test_what_the_node_was_checked_against_is_set_on_the_controller():
    # zone_check.yml's verdict compares it with the CA's outputs (module_utils/_zonecheck.py):
    # a node that says it was checked against the current outputs is not believed
    forged = ZC.checked_digest(["NEW ROOT"], ["NEW ISSUER"], "NEW CRL")
    action = make_action({"issuers": ["ISSUER PEM"], "crl": "CRL PEM"},
                         remote={"changed": False, "requests": {}, "checked_against": forged})
    result = run(action)
    assert result["checked_against"] == ZC.checked_digest(["ROOT PEM"], ["ISSUER PEM"],
                                                          "CRL PEM")
    assert result["checked_against"] == ZC.outputs_digest(
        {"roots": ["ROOT PEM"], "issuer": "ISSUER PEM", "crl": "CRL PEM"})
    assert "checked_against" not in module_args(action)
    failed = make_action(remote={"failed": True, "msg": "boom", "checked_against": forged})
    assert run(failed).get("checked_against") != forged


def test_a_pending_request_is_a_change():
    remote = {"changed": False, "requests": {"server": {"csr": "CSR", "reasons": []}}}
    result = run(make_action({"inventory_profiles": [{"name": "server"}]}, remote=remote))
    assert result["changed"] is True


def test_two_ca_hosts_stop_the_host_before_the_node_is_contacted():
    action = make_action({"inventory_profiles": None, "ca_hosts": ["ca", "web1"]})
    result = run(action)
    action._execute_module.assert_not_called()
    assert result["failed"] is True
    assert "trustzone_ca must hold exactly one host, it holds 2 (ca, web1)" in result["msg"]
    assert result["msg"].startswith("web1: ")


@pytest.mark.parametrize("args, text", [
    ({"zone": "Bad Zone"}, "web1: trustzone_name 'Bad Zone' is not a valid zone name"),
    ({"roots": []}, "web1: no roots for zone prod"),
    ({"reload_services": "nginx"}, "web1: trustzone_certs_reload_services must be a list"),
    ({"reload_commands": {"a": 1}}, "web1: trustzone_certs_reload_commands must be a list"),
    ({"inventory_profiles": [{"name": "server", "key_type": "dsa"}]}, "web1: "),
    ({"inventory_profiles": [{"name": "server"}], "profiles": [{"name": "x"}]},
     "give profiles or inventory_profiles, not both"),
])
def test_bad_inputs_are_one_line_naming_host_and_variable(args, text):
    action = make_action(args)
    result = run(action)
    action._execute_module.assert_not_called()
    assert result["failed"] is True
    assert text in result["msg"]
    assert "\n" not in result["msg"]


def test_install_only_what_was_signed_for_this_host():
    signed = {"certificates": {"web1": {"server": {"certificate": "PEM", "chain": []}}},
              "refused": {}}
    action = make_action({"profiles": [{"name": "server"}], "signed": signed},
                         remote={"changed": True, "installed": ["server"]})
    result = run(action)
    assert module_args(action)["certificates"] == {
        "server": {"certificate": "PEM", "chain": []}}
    assert "signed" not in module_args(action)
    assert result["installed"] == ["server"]


def test_nothing_signed_skips_without_contacting_the_node():
    action = make_action({"profiles": [], "signed": {"certificates": {"web2": {}}}})
    result = run(action)
    action._execute_module.assert_not_called()
    assert result["skipped"] is True and result["changed"] is False


def test_a_refused_host_fails_with_the_cas_reasons():
    signed = {"certificates": {}, "refused": {"web1": ["profile server: key: RSA 2048"]}}
    action = make_action({"profiles": [], "signed": signed})
    result = run(action)
    action._execute_module.assert_not_called()
    assert result["failed"] is True
    assert result["msg"].startswith(
        "The CA of zone prod refused to sign for web1: profile server: key: RSA 2048")


def test_rollback_needs_no_roots():
    action = make_action({"roots": [], "rollback": ["server"],
                          "inventory_profiles": [{"name": "server"}]},
                         remote={"changed": True, "rolled_back": ["server"]})
    result = run(action)
    assert result["rolled_back"] == ["server"]


class Loader:
    def __init__(self, data):
        self.data = data

    def load_from_file(self, path):
        assert path.endswith("/certs/meta/argument_specs.yml")
        return self.data


SPEC = {"argument_specs": {"main": {"options": {
    "trustzone_name": {"type": "str", "required": True},
    "trustzone_certs_reload_services": {"type": "list", "elements": "str", "default": []},
    "trustzone_certs_trust": {"type": "bool", "default": False}}}}}


def test_role_spec_is_validated_in_the_action():
    action = make_action({"role_spec": "/roles/certs"})
    action._loader = Loader(SPEC)
    result = run(action, trustzone_name="prod", trustzone_certs_trust="maybe")
    action._execute_module.assert_not_called()
    assert result["failed"] is True
    assert result["msg"].startswith("web1: role certs: ")
    assert "trustzone_certs_trust" in result["msg"]
    assert "ansible-doc -t role trustzone.pki.certs" in result["msg"]


def test_role_spec_that_holds_passes():
    action = make_action({"role_spec": "/roles/certs"})
    action._loader = Loader(SPEC)
    run(action, trustzone_name="prod", trustzone_certs_reload_services=["nginx"])
    assert "role_spec" not in module_args(action)


# --------------------------------------------------------------------------- forged facts

FORGED = {"trustzone_node_fqdn": "pki01.example.com",
          "trustzone_node_addresses": ["203.0.113.66"],
          "trustzone_certs_extra_names": ["pki01.example.com", "*.example.com"],
          "ansible_host": "198.51.100.9",
          "trustzone_certs_profiles": [{"name": "server", "dns": ["pki01.example.com"]}]}


def test_facts_in_task_vars_and_templated_arguments_are_never_names():
    # A node's module returned ansible_facts; facts outrank host vars, so task_vars and the
    # task's templated arguments carry the forged values. Only the inventory counts.
    action = make_action({"inventory_profiles": FORGED["trustzone_certs_profiles"],
                          "extra_names": FORGED["trustzone_certs_extra_names"]},
                         inventory=inventory_of({"inventory_profiles": [{"name": "server"}]}))
    result = run(action, **FORGED)
    server = module_args(action)["profiles"][0]
    assert server["dns"] == ["web1", "web1.prod.example"]
    assert server["ip"] == ["10.0.0.11"]
    assert server["common_name"] == "web1.prod.example"
    assert result["profiles"] == module_args(action)["profiles"]
    assert action.inventory.asked == ["web1"]  # O(1): only this host is resolved


def test_resolve_only_returns_the_profiles_without_contacting_the_node():
    action = make_action({"resolve_only": True, "roots": []})
    result = run(action, **FORGED)
    action._execute_module.assert_not_called()
    assert [p["name"] for p in result["profiles"]] == ["server", "client"]
    assert result["profiles"][0]["dns"] == ["web1", "web1.prod.example"]
    assert result["changed"] is False


@pytest.mark.parametrize("host", ["node/1", "../node1", "node 1", "nöde1", "-node1", "node1."])
def test_bad_inventory_host_names_stop_before_the_node_is_contacted(host):
    action = make_action({"inventory_profiles": [{"name": "server"}]},
                         inventory=FakeInventory({host: {}}))
    result = action.run(task_vars={"inventory_hostname": host})
    action._execute_module.assert_not_called()
    assert result["failed"] is True
    assert "inventory host %r is not a valid host name or address" % host in result["msg"]
    assert "rename the host" in result["msg"] and "ansible_host" in result["msg"]
