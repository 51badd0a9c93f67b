# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""A host's variables as the inventory and the operator set them - nothing a node said.

``task_vars`` hold facts (a node's module can return ``ansible_facts`` that outrank inventory
host variables), the fact cache (kept 24 h by the shipped ansible.cfg), ``set_fact``,
registered results and ``include_vars``. The identity resolver (module_utils/_identity.py)
must see none of them. ``InventoryVars`` asks the task's VariableManager again, through a
shallow copy whose fact cache, non-persistent fact cache (set_fact, register) and vars cache
(include_vars) are empty, with the play but without the task: what is left is the
inventory's host and group variables (inventory files, group_vars/host_vars files), the
play's vars and extra vars. Values are templated over those same variables only, so a
template that refers to a fact is undefined: a clear error, not a silent fact.

Hosts come from the inventory with ``ignore_limits`` and ``ignore_restrictions``: --limit
never shrinks the zone the names are checked against.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from ansible.errors import AnsibleError
from ansible.template import Templar

from ansible_collections.trustzone.pki.plugins.module_utils import _identity
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.plugin_utils._role_spec import validate_role

NODES_GROUP = "trustzone_nodes"
CA_GROUP = "trustzone_ca"


class _NoFacts(dict):
    """An empty fact cache: ``get`` without a default raises KeyError, as cache plugins do."""

    _MISSING = object()

    def get(self, key, default=_MISSING):  # pylint: disable=arguments-differ
        if default is self._MISSING:
            raise KeyError(key)
        return default

    def keys(self):
        return []


def plain(value):
    """Templated data as plain Python containers and scalars (ansible-core 2.19 tags them;
    hostvars hand out lazy mappings)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (str, bytes)):
        return str(value) if isinstance(value, str) else bytes(value)
    return value


class InventoryVars:
    """Inventory-only variables of the zone's hosts, for the action plugins."""

    def __init__(self, task, loader):
        manager = task.get_variable_manager() if hasattr(task, "get_variable_manager") else None
        manager = manager or getattr(task, "_variable_manager", None)
        if manager is None:
            raise TrustzoneError("%s: no variable manager: cannot read the inventory"
                                 % getattr(task, "action", "task"),
                                 fix="run this action from a playbook")
        self._inventory = manager._inventory
        # a shallow copy by hand: copy.copy goes through __getstate__, which before
        # ansible-core 2.19 leaves out the loader
        self._manager = object.__new__(type(manager))
        self._manager.__dict__.update(manager.__dict__)
        self._manager._fact_cache = _NoFacts()
        self._manager._nonpersistent_fact_cache = {}
        self._manager._vars_cache = {}
        self._play = task.get_play() if hasattr(task, "get_play") else None
        self._loader = loader
        params = inspect.signature(self._manager.get_vars).parameters
        self._options = {"include_hostvars": False}
        if "include_delegate_to" in params:  # ansible-core before 2.19
            self._options["include_delegate_to"] = False

    def group(self, name):
        """Every host of group ``name`` in the inventory, whatever --limit says."""
        if name not in self._inventory.groups:
            return []
        return [h.name for h in self._inventory.get_hosts(name, ignore_limits=True,
                                                          ignore_restrictions=True)]

    def host_vars(self, host, names=_identity.IDENTITY_VARS):
        """``{variable: templated value}`` of ``host`` for the variables ``names`` it has."""
        entry = self._inventory.get_host(host)
        if entry is None:
            raise TrustzoneError("%s: no such host in the inventory" % host,
                                 fix="add it to the inventory")
        variables = self._manager.get_vars(play=self._play, host=entry, **self._options)
        templar = Templar(loader=self._loader, variables=variables)
        out = {}
        for name in names:
            if name not in variables:
                continue
            try:
                out[name] = plain(templar.template(variables[name]))
            except AnsibleError as exc:
                message = str(getattr(exc, "message", None) or exc).splitlines()[0]
                raise TrustzoneError(
                    "%s: %s cannot be resolved from the inventory alone: %s"
                    % (host, name, message),
                    fix="set %s in the inventory, play vars or extra vars from values that are "
                        "there too (facts and registered results do not count)" % name) from None
        return out

    def zone(self):
        """``(nodes, ca_hosts, {host: variables})`` for every host of the zone."""
        nodes, ca_hosts = self.group(NODES_GROUP), self.group(CA_GROUP)
        hosts = nodes + [h for h in ca_hosts if h not in nodes]
        return nodes, ca_hosts, {h: self.host_vars(h) for h in hosts}


def resolve_host(task, loader, host, zone):
    """One host's ``{'names', 'profiles'}`` (the node action: O(1) per host)."""
    source = InventoryVars(task, loader)
    variables = source.host_vars(host)
    return _identity.resolve_identities({host: variables}, zone, [host])[host]


def resolve_zone(task, loader, zone):
    """Every host of the zone resolved, names unique zone-wide: ``(nodes, ca_hosts,
    {host: {'names', 'profiles'}})``."""
    nodes, ca_hosts, inventory = InventoryVars(task, loader).zone()
    return nodes, ca_hosts, _identity.resolve_identities(inventory, zone, nodes, ca_hosts)


class InventoryActionMixin:
    """For the action plugins that resolve names: their shared first lines (``_begin``,
    ``_check_role_spec``), where the inventory-only variables come from (unit tests replace
    ``_inventory_source``) and the whole zone's check."""

    def _begin(self, tmp, task_vars, consumed):
        """The first lines of the action's ``run``: ``(task_vars, result, args, own, host)``
        - ``args`` the task's arguments less the ``consumed`` ones, which are in ``own`` (the
        names given), and ``host`` the inventory host the task runs for."""
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        own = {name: args.pop(name) for name in consumed if name in args}
        host = task_vars.get("inventory_hostname") or "this host"
        return task_vars, result, args, own, host

    def _check_role_spec(self, host, role_path, task_vars):
        """With ``role_path`` (the task's ``role_spec``), the role's argument spec checked
        against the task's variables, for a play that imported the role with
        ``rolespec_validate: false`` (playbooks/site.yml); raises TrustzoneError."""
        if role_path:
            validate_role(host, role_path, task_vars, self._loader, self._templar)

    @staticmethod
    def _failed(result, exc):
        """``result`` failed with the one-line message of ``exc`` (a TrustzoneError)."""
        result.update(failed=True, msg=str(exc))
        return result

    def _run_remote(self, result, module_name, args, task_vars):
        """``result`` with the module's own result on the target host."""
        result.update(self._execute_module(module_name=module_name, module_args=args,
                                           task_vars=task_vars))
        return result

    def _inventory_source(self):
        """The hosts' inventory-only variables."""
        return InventoryVars(self._task, self._loader)

    def _resolve_zone(self, zone):
        """Every host of the zone resolved with the identity resolver (host names, names,
        uniqueness across trustzone_nodes and trustzone_ca, whatever --limit says); raises
        TrustzoneError naming the host and the fix."""
        nodes, cas, inventory = self._inventory_source().zone()
        return _identity.resolve_identities(inventory, zone, nodes, cas)
