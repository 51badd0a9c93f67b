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
intermediate's name constraints are computed (``_constraints``): never from a node's word.

With ``root_offline`` it holds the offline root store (``_offline.Store``) and runs the
module in rounds: whatever the module asks of the root key, it does here, says so, and runs
the module again with the result; the store's path and passphrase never reach the CA host."""

from __future__ import annotations

import datetime

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _metrics
from ansible_collections.trustzone.pki.plugins.module_utils import _constraints
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _offline
from ansible_collections.trustzone.pki.plugins.module_utils import _rootplan
from ansible_collections.trustzone.pki.plugins.module_utils import _preflight as F
from ansible_collections.trustzone.pki.plugins.module_utils import _publish
from ansible_collections.trustzone.pki.plugins.module_utils import _zonecheck
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.plugin_utils._inventory import InventoryActionMixin


class ActionModule(InventoryActionMixin, ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars, result, args, own, host = self._begin(
            tmp, task_vars, ("ca_hosts", "role_spec", "root_dir", "root_passphrase"))
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
            source = self._inventory_source()  # the intermediate's distribution points
            url = _publish.zone_url(source.host_vars, source.group("trustzone_ca"))
            if url:
                args["publish_url"] = url
            store = None
            if boolean(args.get("root_offline", False), strict=False):
                if not boolean(args.get("intermediate", False), strict=False):
                    raise TrustzoneError("%s: an offline root signs only intermediates, but "
                                         "trustzone_ca_intermediate is false" % host,
                                         fix="set trustzone_ca_intermediate: true")
                if not own.get("root_dir"):
                    raise TrustzoneError("%s: trustzone_ca_root_dir is not set" % host,
                                         fix="give the directory on the controller that "
                                             "keeps the zone's offline root")
                store = _offline.Store(own["root_dir"], F.check_passphrase(
                    host, own.get("root_passphrase"), "trustzone_ca_root_passphrase"))
                if store.passphrase == args.get("passphrase"):
                    raise TrustzoneError("%s: trustzone_ca_root_passphrase is the CA "
                                         "passphrase" % host,
                                         fix="give the offline root a passphrase of its own")
        except TrustzoneError as exc:
            return self._failed(result, exc)
        if store is None:
            result = self._run_remote(result, "trustzone.pki.zone_root", args, task_vars)
        else:
            try:
                result = self._rounds(result, args, task_vars, store, zone)
            except TrustzoneError as exc:
                return self._failed(result, exc)
        if result.get("failed") and _metrics.VARIABLE in str(result.get("msg", "")):
            result["msg"] = "%s: %s" % (host, result["msg"])  # one line naming the host
        if not result.get("failed") and not self._task.check_mode:
            # what the nodes of the next run's check round are checked against
            _zonecheck.write_cache(_zonecheck.cache_path_of(zone, host, task_vars), result)
        # kept when the task overrides changed (site.yml's check round: changed_when: false)
        result["would_change"] = bool(result.get("changed"))
        return result

    def _rounds(self, result, args, task_vars, store, zone):
        """The module, run until it asks nothing more of the offline root."""
        used, changed, ephemeral = [], False, []
        args = dict(args, root_signed={})
        for _round in range(_offline.ROUNDS):
            args["root_certs"] = store.certificates() + ephemeral
            answer = self._execute_module(module_name="trustzone.pki.zone_root",
                                          module_args=args, task_vars=task_vars)
            if answer.get("failed"):
                result.update(answer)
                return result
            changed |= bool(answer.get("changed"))
            requests = answer.get("root_requests") or []
            if not requests or (self._task.check_mode and not any(
                    r["op"] == "create" for r in requests)):
                break
            now = datetime.datetime.now(datetime.timezone.utc)
            if self._task.check_mode:  # a root made in memory only, to plan against
                for _request in requests:
                    ephemeral.append(C.certificate_pem(
                        _rootplan.new_root(args_params(args), zone, now)[1]))
                continue
            signed, done = _offline.fulfill(
                requests, store, lambda: _rootplan.new_root(args_params(args), zone, now))
            for line in done:
                Display().display("zone %s: the offline root key %s" % (zone, line))
            used += done
            args["root_signed"] = signed
        else:
            raise TrustzoneError("the CA host kept asking for the offline root key after %d "
                                 "rounds" % _offline.ROUNDS,
                                 fix="run the play again; report it if it repeats")
        result.update(answer)
        result["changed"] = changed
        result["root_key_used"] = used
        if self._task.check_mode and answer.get("root_requests"):
            result["root_key_used"] = ["would sign the %s" % r["what"]
                                       for r in answer["root_requests"] if r["op"] == "sign"]
            # said once per run: not by site.yml's check round, whose run goes on to say it
            if not task_vars.get("__trustzone_check_round"):
                for line in result["root_key_used"]:
                    Display().display("zone %s: the offline root key %s" % (zone, line))
        return result


def args_params(args):
    """The module arguments new_root reads, with the module's own defaults
    (``_args.NEW_ROOT``, the fragment its argument spec is built from)."""
    out = {name: args.get(name, spec.get("default"))
           for name, spec in _args.NEW_ROOT["options"].items()}
    out["key_size"] = int(out["key_size"]) if out["key_size"] else None
    return out
