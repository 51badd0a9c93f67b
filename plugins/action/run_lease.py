# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller half of trustzone.pki.run_lease: before the lease is taken - the first thing a
run writes on the CA host - the zone's inventory is checked with the identity resolver (host
names, names, uniqueness across the whole zone), so a bad inventory stops the run before
anything is written anywhere. The module shares its documentation."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.trustzone.pki.plugins.module_utils import _preflight as F
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.plugin_utils._inventory import InventoryActionMixin


class ActionModule(InventoryActionMixin, ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars, result, args, own, host = self._begin(tmp, task_vars, ("zone",))
        zone = own.get("zone")
        if zone is not None and args.get("state", "acquired") == "acquired":
            try:
                zone = F.check_zone(host, zone)
                self._resolve_zone(zone)
            except TrustzoneError as exc:
                return self._failed(result, exc)
        return self._run_remote(result, "trustzone.pki.run_lease", args, task_vars)
