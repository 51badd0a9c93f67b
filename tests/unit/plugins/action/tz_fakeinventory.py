"""A stand-in for plugin_utils/_inventory.InventoryVars in the action plugins' unit tests:
the hosts' inventory-only variables, given as plain data."""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils import _identity


class FakeInventory:
    def __init__(self, hosts, nodes=None, ca_hosts=()):
        self.hosts = hosts  # {host: {variable: value}}
        if nodes is None:
            nodes = [h for h in hosts if h not in ca_hosts]
        self.nodes = list(nodes)
        self.ca_hosts = list(ca_hosts)
        self.asked = []

    def group(self, name):
        return list({"trustzone_nodes": self.nodes, "trustzone_ca": self.ca_hosts}.get(name, []))

    def host_vars(self, host, names=_identity.IDENTITY_VARS):
        self.asked.append(host)
        return {k: v for k, v in (self.hosts.get(host) or {}).items() if k in names}

    def zone(self):
        hosts = self.nodes + [h for h in self.ca_hosts if h not in self.nodes]
        return self.nodes, self.ca_hosts, {h: self.host_vars(h) for h in hosts}
