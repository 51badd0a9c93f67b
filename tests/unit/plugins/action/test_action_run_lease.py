"""Action plugin trustzone.pki.run_lease: the zone's inventory is checked before the lease -
the first thing a run writes on the CA host - is taken."""

from __future__ import annotations

import types
from unittest import mock

import pytest

from ansible_collections.trustzone.pki.plugins.action.run_lease import ActionModule
from ansible_collections.trustzone.pki.tests.unit.plugins.action.tz_fakeinventory import (
    FakeInventory)

ZONE = {"ca": {"trustzone_node_fqdn": "ca.lab.test"},
        "node1": {"trustzone_node_fqdn": "node1.lab.test"}}
LEASE = {"path": "/var/lib/trustzone/lab.lease", "holder": {"controller": "c", "pid": 1}}


def make_action(args, zone=None):
    task = types.SimpleNamespace(args=dict(args), async_val=0, check_mode=False,
                                 action="trustzone.pki.run_lease")
    connection = types.SimpleNamespace(_shell=types.SimpleNamespace(tmpdir="/tmp/remote"))
    action = ActionModule(task, connection, play_context=None, loader=None, templar=None,
                          shared_loader_obj=None)  # required before ansible-core 2.19
    action._load_name = "trustzone.pki.run_lease"
    action.inventory = FakeInventory(zone or ZONE, ca_hosts=["ca"])
    action._inventory_source = lambda: action.inventory
    action._execute_module = mock.Mock(return_value={"changed": True, "acquired": True})
    return action


def test_a_good_zone_takes_the_lease_and_zone_is_not_passed_on():
    action = make_action(dict(LEASE, zone="lab"))
    result = action.run(task_vars={"inventory_hostname": "ca"})
    args = action._execute_module.call_args.kwargs["module_args"]
    assert "zone" not in args and args["path"] == LEASE["path"]
    assert result["acquired"] is True


@pytest.mark.parametrize("bad", ["node/1", "../node1", "node 1", "n\u00f6de1"])
def test_a_bad_host_name_stops_before_the_lease_is_taken(bad):
    action = make_action(dict(LEASE, zone="lab"), zone=dict(ZONE, **{bad: {}}))
    result = action.run(task_vars={"inventory_hostname": "ca"})
    action._execute_module.assert_not_called()
    assert result["failed"] is True
    assert "inventory host %r is not a valid host name" % bad in result["msg"]


def test_a_bad_zone_name_stops_before_the_lease_is_taken():
    action = make_action(dict(LEASE, zone="NO"))
    result = action.run(task_vars={"inventory_hostname": "ca"})
    action._execute_module.assert_not_called()
    assert "trustzone_name 'NO' is not a valid zone name" in result["msg"]


def test_releasing_checks_nothing():
    action = make_action(dict(LEASE, zone="lab", state="released"),
                         zone=dict(ZONE, **{"node/1": {}}))
    action.run(task_vars={"inventory_hostname": "ca"})
    action._execute_module.assert_called_once()
