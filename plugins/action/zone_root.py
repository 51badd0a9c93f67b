# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller half of trustzone.pki.zone_root: the ca role's input checks (zone name, one CA
host, passphrase length), done here instead of as assert tasks, so that the CA play is one
task. The module shares its documentation.

It also resolves every host of the zone (group trustzone_nodes and trustzone_ca, whatever
--limit says) with the identity resolver over inventory-only variables: a bad host name, a
name two hosts claim or a bad common name fails the CA play, before anything is written.
The same resolution gives the module every host's names (``zone_names``), from which the
intermediate's name constraints are computed (``_constraints``): never from a node's word."""

from __future__ import annotations

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.trustzone.pki.plugins.module_utils import _constraints
from ansible_collections.trustzone.pki.plugins.module_utils import _preflight as F
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.plugin_utils._inventory import InventoryActionMixin


class ActionModule(InventoryActionMixin, ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars, result, args, own, host = self._begin(tmp, task_vars,
                                                         ("ca_hosts", "role_spec"))
        try:
            self._check_role_spec(host, own.get("role_spec"), task_vars)
            zone = F.check_zone(host, args.get("zone"))
            if own.get("ca_hosts") is not None:
                F.check_ca_hosts(host, zone, own["ca_hosts"])
            F.check_passphrase(host, args.get("passphrase"))
            names = _constraints.zone_names(self._resolve_zone(zone))
            if boolean(args.get("name_constraints", False), strict=False):
                _constraints.plan(names, args.get("name_constraints_permitted"),
                                  boolean(args.get("name_constraints_pinned", False),
                                          strict=False))
            args["zone_names"] = names
        except TrustzoneError as exc:
            return self._failed(result, exc)
        return self._run_remote(result, "trustzone.pki.zone_root", args, task_vars)
