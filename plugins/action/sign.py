# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller half of trustzone.pki.sign: gather the play's requests, sign them on the CA."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.trustzone.pki.plugins.module_utils import _issue
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

ARGUMENT_SPEC = dict(
    zone=dict(type="str", required=True),
    dir=dict(type="path"),
    passphrase=dict(type="str", required=True, no_log=True),
    hosts=dict(type="list", elements="str"),
    result_var=dict(type="str", default="__trustzone_certs_node"),
    profiles_var=dict(type="str", default="__trustzone_certs_profiles"),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        hosts = args["hosts"] or list(task_vars.get("ansible_play_hosts") or [])
        hostvars = task_vars.get("hostvars", {})
        node_results, wanted = {}, {}
        for host in hosts:
            host_vars = hostvars.get(host) or {}
            node_results[host] = result_of_node = host_vars.get(args["result_var"])
            # trustzone.pki.node's action plugin puts the profiles it resolved from the
            # inventory into the result on the controller (never taken from the node);
            # otherwise they are a host variable of their own (profiles_var).
            profiles = result_of_node.get("profiles") if isinstance(result_of_node, dict) else None
            if isinstance(profiles, list):
                wanted[host] = result_of_node["profiles"]
            else:
                wanted[host] = host_vars.get(args["profiles_var"]) or []
        try:
            _issue.check_unique_names(wanted)
        except TrustzoneError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        requests, refused = _issue.collect_requests(hosts, node_results, wanted)
        result.update(changed=False, certificates={}, refused=refused, issued=0)
        if self._task.check_mode:
            would = {}
            for req in requests:
                would.setdefault(req["host"], {})[req["profile"]["name"]] = req["reasons"]
            result.update(changed=bool(would), would_issue=would)
            return result
        if not requests:
            return result  # nothing to sign: the CA host is not contacted
        module_args = {k: args[k] for k in ("zone", "dir", "passphrase")}
        module_args["requests"] = requests
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
                      refused=refused, issued=signed.get("issued", 0))
        return result
