"""Action plugin trustzone.pki.sign, run with a fake task and connection.

``_execute_module`` (the call to the CA host) is replaced by a mock, so these tests show
when the CA host is contacted and how its answer is merged.
"""

from __future__ import annotations

import copy
import types
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.trustzone.pki.plugins.action.sign import ActionModule
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.tests.unit.plugins.action.tz_fakeinventory import (
    FakeInventory)

NAMES = {
    "web1": {"common_name": "web1.prod.example", "dns": ["web1", "web1.prod.example"],
             "ip": ["10.0.0.11"]},
    "web2": {"common_name": "web2.prod.example", "dns": ["web2", "web2.prod.example"],
             "ip": ["10.0.0.12"]},
    "web3": {"common_name": "web3.prod.example", "dns": ["web3.prod.example"], "ip": []},
}
# The inventory that gives those names (what the action resolves for itself).
INVENTORY = {
    "web1": {"trustzone_node_fqdn": "web1.prod.example", "trustzone_node_addresses": ["10.0.0.11"],
             "ansible_host": "127.0.0.1"},
    "web2": {"trustzone_node_fqdn": "web2.prod.example", "trustzone_node_addresses": ["10.0.0.12"]},
    "web3": {"trustzone_node_fqdn": "web3.prod.example"},
    "ca": {"trustzone_node_fqdn": "ca.prod.example", "ansible_host": "10.0.0.2"},
}
REASONS = [{"reason": "missing_certificate", "detail": "no certificate at /x"}]


def profiles(host, names=None):
    return I.resolve_profiles(None, "prod", "/etc/trustzone/prod",
                              copy.deepcopy(names or NAMES[host]))


def node(**requests):
    """A node module result; ``requests`` maps profile names to CSR text (None in check mode)."""
    return {"changed": bool(requests), "identities": {},
            "requests": {name: {"csr": csr, "reasons": REASONS} for name, csr in requests.items()}}


def hostvars(**results):
    return {host: {"__trustzone_certs_node": result, "inventory_hostname": host}
            for host, result in results.items()}


def inventory(**changes):
    hosts = copy.deepcopy(INVENTORY)
    for host, variables in changes.items():
        hosts.setdefault(host, {}).update(variables)
    return FakeInventory(hosts, ca_hosts=["ca"])


def make_action(args=None, check_mode=False, remote=None, inv=None):
    task = types.SimpleNamespace(
        args=dict({"zone": "prod", "passphrase": "correct horse battery"}, **(args or {})),
        async_val=0, check_mode=check_mode, action="trustzone.pki.sign")
    connection = types.SimpleNamespace(_shell=types.SimpleNamespace(tmpdir="/tmp/remote"))
    action = ActionModule(task, connection, play_context=None, loader=None, templar=None,
                          shared_loader_obj=None)  # required before ansible-core 2.19
    action._load_name = "trustzone.pki.sign"
    action.inventory = inv or inventory()
    action._inventory_source = lambda: action.inventory
    action._execute_module = mock.Mock(return_value=remote if remote is not None else {})
    return action


def run(action, hv, play_hosts=None, play_batch=None):
    task_vars = {"hostvars": hv, "ansible_play_hosts": play_hosts or sorted(hv)}
    if play_batch is not None:
        task_vars["ansible_play_batch"] = play_batch
    return action.run(task_vars=task_vars)


def test_nothing_pending_does_not_contact_the_ca():
    action = make_action()
    result = run(action, hostvars(web1=node(), web2=node()))
    action._execute_module.assert_not_called()
    assert result["changed"] is False
    assert result == {"changed": False, "certificates": {}, "refused": {}, "issued": 0}


def test_failed_or_unreachable_nodes_are_skipped():
    action = make_action()
    hv = hostvars(web1={"failed": True, "msg": "boom"}, web2={"skipped": True}, web3=None)
    result = run(action, hv)
    action._execute_module.assert_not_called()
    assert result["issued"] == 0 and not result.get("failed")


def test_only_refused_requests_do_not_contact_the_ca():
    action = make_action()
    result = run(action, hostvars(web1=node(admin="CSR")))
    action._execute_module.assert_not_called()
    assert result["refused"] == {
        "web1": ["profile admin: the inventory defines no such profile for web1"]}
    assert result["changed"] is False


def test_check_mode_returns_would_issue_without_contacting_the_ca():
    action = make_action(check_mode=True)
    result = run(action, hostvars(web1=node(server=None, client=None), web2=node()))
    action._execute_module.assert_not_called()
    assert result["changed"] is True
    assert result["would_issue"] == {"web1": {"client": ["missing_certificate"],
                                              "server": ["missing_certificate"]}}
    assert result["certificates"] == {} and result["issued"] == 0


def test_check_mode_nothing_pending():
    action = make_action(check_mode=True)
    result = run(action, hostvars(web1=node()))
    action._execute_module.assert_not_called()
    assert result["changed"] is False and result["would_issue"] == {}


def test_duplicate_names_across_hosts_fail_naming_both_hosts():
    hv = hostvars(web1=node(server="CSR1"), web2=node(server="CSR2"))
    clash = inventory(web2={"trustzone_certs_extra_names": ["web1.prod.example"]})
    for check_mode in (False, True):
        action = make_action(check_mode=check_mode, inv=clash)
        result = run(action, hv)
        action._execute_module.assert_not_called()
        assert result["failed"] is True
        assert "web1.prod.example claimed by web1, web2" in result["msg"]


def test_signs_in_one_call_and_merges_refusals():
    remote = {
        "changed": True, "issued": 1,
        "certificates": {"web1": {"server": {"certificate": "PEM", "chain": [],
                                             "serial": "ab", "not_after": "2026-01-01T00:00:00Z",
                                             "fingerprint": "00"}}},
        "refused": {"web2": ["profile server: subjectAltName: web1 not allowed for this host"]},
        "invocation": {"module_args": {"requests": "every CSR"}},
    }
    action = make_action(args={"dir": "/srv/ca"}, remote=remote)
    hv = hostvars(web1=node(server="CSR-web1"), web2=node(server="CSR-web2"),
                  web3=node(admin="CSR-web3"))
    result = run(action, hv)

    action._execute_module.assert_called_once()
    kwargs = action._execute_module.call_args.kwargs
    assert kwargs["module_name"] == "trustzone.pki.sign"
    module_args = kwargs["module_args"]
    assert set(module_args) == {"zone", "dir", "passphrase", "requests"}
    assert (module_args["zone"], module_args["dir"], module_args["passphrase"]) == (
        "prod", "/srv/ca", "correct horse battery")
    assert [(r["host"], r["profile"]["name"], r["csr"]) for r in module_args["requests"]] == [
        ("web1", "server", "CSR-web1"), ("web2", "server", "CSR-web2")]
    # the profile sent to the CA is the controller's, from the inventory
    assert module_args["requests"][0]["profile"] == profiles("web1")[0]

    assert result["changed"] is True
    assert result["issued"] == 1
    assert result["certificates"] == remote["certificates"]
    assert result["refused"] == {
        "web3": ["profile admin: the inventory defines no such profile for web3"],
        "web2": ["profile server: subjectAltName: web1 not allowed for this host"]}
    assert "invocation" not in result and "would_issue" not in result


def test_refusals_for_the_same_host_are_merged():
    remote = {"changed": False, "issued": 0, "certificates": {},
              "refused": {"web1": ["profile server: key: RSA 2048, the profile wants EC"]}}
    action = make_action(remote=remote)
    result = run(action, hostvars(web1=node(server="CSR", admin="CSR")))
    assert result["refused"] == {"web1": [
        "profile admin: the inventory defines no such profile for web1",
        "profile server: key: RSA 2048, the profile wants EC"]}
    assert result["changed"] is False


def test_remote_failure_is_reported():
    action = make_action(remote={"failed": True, "msg": "root.key: wrong passphrase"})
    result = run(action, hostvars(web1=node(server="CSR")))
    assert result["failed"] is True
    assert result["msg"] == "root.key: wrong passphrase"
    action = make_action(remote={"failed": True})
    assert run(action, hostvars(web1=node(server="CSR")))["msg"] == \
        "signing failed on the CA host"


def test_hosts_argument_limits_the_batch():
    action = make_action(args={"hosts": ["web2"]}, remote={"changed": True, "issued": 1})
    run(action, hostvars(web1=node(server="CSR1"), web2=node(server="CSR2")),
        play_hosts=["web1", "web2"])
    requests = action._execute_module.call_args.kwargs["module_args"]["requests"]
    assert [r["host"] for r in requests] == ["web2"]


def test_under_serial_only_the_running_batch_is_signed():
    # web1's batch ran first: its node result still carries the requests that batch signed
    # and installed. The second batch must not sign them again (issue 21).
    action = make_action(remote={"changed": True, "issued": 1})
    run(action, hostvars(web1=node(server="CSR1"), web2=node(server="CSR2")),
        play_hosts=["web1", "web2"], play_batch=["web2"])
    requests = action._execute_module.call_args.kwargs["module_args"]["requests"]
    assert [r["host"] for r in requests] == ["web2"]


def test_play_hosts_are_the_default():
    action = make_action(remote={"changed": True, "issued": 1})
    run(action, hostvars(web1=node(server="CSR1"), web2=node(server="CSR2")),
        play_hosts=["web1"])
    requests = action._execute_module.call_args.kwargs["module_args"]["requests"]
    assert [r["host"] for r in requests] == ["web1"]


def test_custom_variable_names():
    hv = {"web1": {"my_result": node(server="CSR1")}}
    action = make_action(args={"result_var": "my_result"},
                         remote={"changed": True, "issued": 1})
    run(action, hv)
    assert len(action._execute_module.call_args.kwargs["module_args"]["requests"]) == 1


def test_host_without_profiles_gets_nothing_signed():
    hv = hostvars(web1=node(server="CSR1"))
    action = make_action(inv=inventory(web1={"trustzone_certs_profiles": []}))
    result = run(action, hv)
    action._execute_module.assert_not_called()
    assert result["refused"] == {
        "web1": ["profile server: the inventory defines no such profile for web1"]}


@pytest.mark.parametrize("missing", ["zone", "passphrase"])
def test_required_arguments(missing):
    action = make_action()
    del action._task.args[missing]
    with pytest.raises(AnsibleActionFail, match=missing):
        run(action, hostvars(web1=node()))


def test_profiles_in_node_results_are_ignored():
    """A registered node result is untrusted: only its CSRs are taken, never its profiles."""
    result = node(server="CSR1")
    forged = profiles("web1", {"common_name": "ca.prod.example",
                               "dns": ["ca.prod.example", "web1"], "ip": ["10.0.0.2"]})
    result["profiles"] = forged
    hv = {"web1": {"__trustzone_certs_node": result, "inventory_hostname": "web1",
                   "__trustzone_certs_profiles": forged}}
    action = make_action(remote={"changed": True, "issued": 1, "certificates": {}})
    run(action, hv)
    requests = action._execute_module.call_args.kwargs["module_args"]["requests"]
    assert [(r["host"], r["profile"]["name"]) for r in requests] == [("web1", "server")]
    assert requests[0]["profile"] == profiles("web1")[0]
    assert "ca.prod.example" not in requests[0]["profile"]["dns"]


# --------------------------------------------------------------------------- the whole zone

@pytest.mark.parametrize("changes, words", [
    # web2 is outside the play (--limit web1) and still counts
    ({"web2": {"trustzone_certs_extra_names": ["web1.prod.example"]}},
     "web1.prod.example claimed by web1, web2"),
    # the CA host's own names count
    ({"web1": {"trustzone_certs_extra_names": ["ca.prod.example"]}},
     "ca.prod.example claimed by ca, web1"),
    ({"web1": {"trustzone_node_addresses": ["10.0.0.2"]}}, "10.0.0.2 claimed by ca, web1"),
    # a common name outside the host's names is still unique across the zone
    ({"web2": {"trustzone_certs_profiles": [{"name": "server", "common_name": "web1.prod.example",
                                             "common_name_outside_names": True}]}},
     "web1.prod.example claimed by web1, web2"),
    ({"web2": {"trustzone_certs_profiles": [{"name": "server", "common_name": "*.prod.example",
                                             "common_name_outside_names": True}]}},
     "web2: profile 'server': common_name '*.prod.example' is not a DNS name"),
])
def test_names_are_unique_across_the_whole_zone_whatever_limit_says(changes, words):
    for check_mode in (False, True):
        action = make_action(check_mode=check_mode, inv=inventory(**changes))
        result = run(action, hostvars(web1=node(server="CSR1")), play_hosts=["web1"])
        action._execute_module.assert_not_called()
        assert result["failed"] is True
        assert words in result["msg"]
        assert "\n" not in result["msg"]


# --------------------------------------------------------------------------- installed (I3/I4)

def installed(**profiles):
    return {name: {"certificate": "PEM-" + name, "fingerprint": "ab" * 32} for name in profiles}


def test_installed_certificates_go_to_the_ca_once_even_on_a_no_op_run():
    remote = {"changed": True, "issued": 0, "certificates": {}, "refused": {},
              "reconciled": [{"serial": "1", "host": "web1", "profile": "server",
                              "status": "valid"}],
              "unrecorded": {"web2": {"server": "cd" * 32}}}
    action = make_action(remote=remote)
    web1, web2 = node(), node()
    web1["installed"] = installed(server=1, client=1, admin=1)  # admin: no such profile
    web2["installed"] = installed(server=1)
    result = run(action, {"web1": {"__trustzone_certs_node": web1},
                          "web2": {"__trustzone_certs_node": web2}})
    action._execute_module.assert_called_once()
    module_args = action._execute_module.call_args.kwargs["module_args"]
    assert module_args["requests"] == []
    assert module_args["installed"] == {
        "web1": {"server": {"certificate": "PEM-server", "fingerprint": "ab" * 32},
                 "client": {"certificate": "PEM-client", "fingerprint": "ab" * 32}},
        "web2": {"server": {"certificate": "PEM-server", "fingerprint": "ab" * 32}}}
    assert result["reconciled"] == remote["reconciled"]
    assert result["unrecorded"] == remote["unrecorded"]
    assert result["changed"] is True


def test_results_without_installed_do_not_contact_the_ca():
    # a node module from before issue 14, a failed node, a malformed answer
    web2 = node()
    web2["installed"] = "garbage"
    hv = {"web1": {"__trustzone_certs_node": node()},
          "web2": {"__trustzone_certs_node": web2},
          "web3": {"__trustzone_certs_node": {"failed": True, "installed": installed(server=1)}}}
    action = make_action()
    result = run(action, hv)
    action._execute_module.assert_not_called()
    assert result["changed"] is False


def test_check_mode_never_contacts_the_ca_for_installed_certificates():
    web1 = node()
    web1["installed"] = installed(server=1)
    action = make_action(check_mode=True)
    run(action, {"web1": {"__trustzone_certs_node": web1}})
    action._execute_module.assert_not_called()
