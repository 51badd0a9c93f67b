# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller half of trustzone.pki.node: the checks and profile resolution that used to be a
dozen assert/set_fact tasks per host, done here from the task's arguments and the host's
inventory variables, so that a node costs one task. The module shares its documentation.

The profiles come from the identity resolver (module_utils/_identity.py) over this host's
inventory-only variables (plugin_utils/_inventory.py): never from ``task_vars``, which hold
facts a node can forge. ``inventory_profiles`` and ``extra_names`` only say "resolve from the
inventory"; their values (templated with facts) are not used."""

from __future__ import annotations

import glob
import hashlib
import os

from ansible.plugins.action import ActionBase

from ansible_collections.trustzone.pki.plugins.module_utils import _identity
from ansible_collections.trustzone.pki.plugins.module_utils import _metrics
from ansible_collections.trustzone.pki.plugins.module_utils import _preflight as F
from ansible_collections.trustzone.pki.plugins.module_utils import _publish
from ansible_collections.trustzone.pki.plugins.module_utils import _zonecheck as ZC
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.plugin_utils._inventory import InventoryActionMixin

# Arguments this plugin consumes; everything else goes to the module as it is.
ACTION_ARGS = ("inventory_profiles", "extra_names", "ca_hosts", "reload_services",
               "reload_commands", "signed", "role_spec", "resolve_only")


PLUGINS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CODE = []


def code_digest():
    """SHA-256 over the node module and every module_utils file it can load: a node's stamp
    written by other code of the collection does not stand (module_utils/_stamp.py)."""
    if not _CODE:
        digest = hashlib.sha256()
        files = [os.path.join(PLUGINS, "modules", "node.py")]
        files += sorted(glob.glob(os.path.join(PLUGINS, "module_utils", "*.py")))
        for path in files:
            with open(path, "rb") as handle:
                digest.update(os.path.basename(path).encode() + b"\0" + handle.read())
        _CODE.append(digest.hexdigest())
    return _CODE[0]


class ActionModule(InventoryActionMixin, ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars, result, args, own, host = self._begin(tmp, task_vars, ACTION_ARGS)
        try:
            self._check_role_spec(host, own.get("role_spec"), task_vars)
            module_args, skip = self._prepare(host, args, own, task_vars)
        except TrustzoneError as exc:
            return self._failed(result, exc)
        if skip:
            result.update(changed=False, skipped=True,
                          skip_reason="nothing was signed for %s" % host)
            return result
        if own.get("resolve_only"):
            # roles/certs/tasks/resolve.yml: the profiles only; the node is not contacted
            result.update(changed=False, profiles=module_args.get("profiles") or [])
            return result
        if module_args.get("fast_path", True) and not module_args.get("certificates") \
                and not module_args.get("rollback"):
            module_args["code"] = code_digest()
        remote = self._execute_module(module_name="trustzone.pki.node",
                                      module_args=module_args, task_vars=task_vars)
        result.update(remote)
        result.pop("profiles", None)
        # The CA outputs this call carried, from the arguments sent, never from the node:
        # playbooks/zone_check.yml's verdict compares it with the CA's (module_utils/_zonecheck.py).
        result["checked_against"] = ZC.checked_digest(args.get("roots"), args.get("issuers"),
                                                      args.get("crl"))
        if result.get("failed"):
            if _metrics.VARIABLE in str(result.get("msg", "")):
                result["msg"] = "%s: %s" % (host, result["msg"])  # one line naming the host
            return result
        # Set here, on the controller, after the node answered: what the CA signs by comes
        # from the inventory, never from anything the node returned.
        result["profiles"] = module_args.get("profiles") or []
        if result.get("requests"):
            result["changed"] = True  # a certificate will be issued for this node
        return result

    def _prepare(self, host, args, own, task_vars):
        """The module's arguments, and whether there is nothing to do on the node."""
        zone = F.check_zone(host, args.get("zone"))
        ca_host = None
        if own.get("ca_hosts") is not None:
            ca_host = F.check_ca_hosts(host, zone, own["ca_hosts"])
        for name, variable in (("reload_services", "trustzone_certs_reload_services"),
                               ("reload_commands", "trustzone_certs_reload_commands")):
            if name in own:
                F.check_list(host, own[name], variable)
        if "signed" in own:
            step, certificates = F.install_step(host, own["signed"], zone)
            if step == "skip":
                return None, True
            args["certificates"] = certificates
        elif not args.get("rollback") and not own.get("resolve_only"):
            F.check_roots(host, zone, args.get("roots"), ca_host)
        if own.get("inventory_profiles") is not None or own.get("resolve_only"):
            if args.get("profiles"):
                raise TrustzoneError("%s: give profiles or inventory_profiles, not both" % host)
            source = self._inventory_source()
            variables = source.host_vars(host)
            if args.get("dir"):  # the node's own directory: only paths on the node follow it
                variables.setdefault("trustzone_certs_dir", args["dir"])
            args["profiles"] = _identity.resolve_identities(
                {host: variables}, zone, [host])[host]["profiles"]
            # the zone's CRL/AIA base URL, as the sign action reads it (_assess compares)
            publish_url = _publish.zone_url(source.host_vars, source.group("trustzone_ca"))
            for profile in args["profiles"]:
                profile["publish_url"] = publish_url
        return args, False
