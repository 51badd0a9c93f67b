# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller half of trustzone.pki.sign: gather the play's requests, sign them on the CA.

What each host may hold is re-derived here, once for the whole zone, by the identity resolver
over inventory-only variables (every host of trustzone_nodes and trustzone_ca, whatever
--limit says, plus the hosts being signed for), with every name checked unique zone-wide.
The node results are the protocol with the node task, written down in module_utils/_issue.py:
each host's result in the one variable ``result_var`` names (``__trustzone_certs_node``, what
roles/certs registers), of which only ``requests`` (the CSRs) and ``installed`` (for the
ledger) are read (untrusted data); the profiles a result may carry are ignored."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.trustzone.pki.plugins.module_utils import _issue
from ansible_collections.trustzone.pki.plugins.module_utils import _identity
from ansible_collections.trustzone.pki.plugins.module_utils import _publish
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.plugin_utils._inventory import InventoryActionMixin

ARGUMENT_SPEC = _issue.sign_module_args()["argument_spec"]


class ActionModule(InventoryActionMixin, ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        # The running batch, not the play: under serial (a rollout's batches, docs/rollout.md)
        # the nodes of earlier batches still hold this play's node results, requests that
        # their own batch signed and installed; signing them again would put certificates
        # in the ledger that no node holds. Without serial the batch is the whole play.
        hosts = args["hosts"] or list(task_vars.get("ansible_play_batch")
                                      or task_vars.get("ansible_play_hosts") or [])
        hostvars = task_vars.get("hostvars", {})
        try:
            identities = self._resolve(args["zone"], hosts)
            source = self._inventory_source()
            publish_url = _publish.zone_url(source.host_vars, source.group("trustzone_ca"))
        except TrustzoneError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        node_results, wanted = {}, {}
        for host in hosts:
            host_vars = hostvars.get(host) or {}
            node_results[host] = host_vars.get(args["result_var"])
            wanted[host] = (identities.get(host) or {}).get("profiles") or []
        requests, refused = _issue.collect_requests(hosts, node_results, wanted)
        result.update(changed=False, certificates={}, refused=refused, issued=0)
        if self._task.check_mode:
            would = {}
            for req in requests:
                would.setdefault(req["host"], {})[req["profile"]["name"]] = req["reasons"]
            result.update(changed=bool(would), would_issue=would)
            return result
        installed = _issue.installed_certificates(hosts, node_results, wanted)
        if not requests and not installed:
            return result  # nothing to sign or to learn: the CA host is not contacted
        module_args = {k: args[k] for k in ("zone", "dir", "passphrase")}
        if args.get("pkcs11_token"):  # the CA keys are in a PKCS#11 token
            module_args.update({k: args[k] for k in ("pkcs11_module", "pkcs11_token",
                                                     "pkcs11_pin", "pkcs11_keys")})
        module_args["requests"] = requests
        if args.get("metrics_dir"):  # the CA host's metrics file follows the ledger
            module_args.update(metrics_dir=args["metrics_dir"],
                               metrics_dir_optional=args["metrics_dir_optional"])
        if publish_url:  # from the inventory, on the controller: never from a node
            module_args["publish_url"] = publish_url
        if installed:
            module_args["installed"] = installed
        signed = self._execute_module(module_name="trustzone.pki.sign", module_args=module_args,
                                      task_vars=task_vars)
        signed.pop("invocation", None)  # carries every CSR; keep the result readable
        if signed.get("failed"):
            result.update(failed=True, msg=signed.get("msg", "signing failed on the CA host"))
            return result
        for host, problems in (signed.get("refused") or {}).items():
            refused.setdefault(host, []).extend(problems)
        result.update(changed=bool(signed.get("changed")),
                      certificates=signed.get("certificates") or {},
                      refused=refused, issued=signed.get("issued", 0),
                      reconciled=signed.get("reconciled") or [],
                      unrecorded=signed.get("unrecorded") or {})
        return result

    def _resolve(self, zone, hosts):
        """Every host's identity from the inventory alone, names unique across the zone."""
        source = self._inventory_source()
        nodes, ca_hosts = source.group("trustzone_nodes"), source.group("trustzone_ca")
        nodes += [h for h in hosts if h not in nodes]
        inventory = {h: source.host_vars(h) for h in nodes + [c for c in ca_hosts
                                                              if c not in nodes]}
        return _identity.resolve_identities(inventory, zone, nodes, ca_hosts)
