# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller half of trustzone.pki.zone_secrets: keep the keyring on the CA host, wrap it here.

The module runs on the CA host and returns the keys to this process only. Each node's
certificate comes from the host variable ``cert_var`` (untrusted: what the node sent); it is
wrapped to only when its fingerprint is the host's valid one in the CA's ledger
(``_secrets.recipient``). The keys leave this plugin only with ``return_keys``, and then the
whole result is hidden."""

from __future__ import annotations

import base64
import binascii

from ansible.plugins.action import ActionBase

from ansible_collections.trustzone.pki.plugins.module_utils import _secrets as S
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        module_args = dict(self._task.args)
        return_keys = bool(module_args.get("return_keys", False))
        nodes = list(module_args.get("nodes") or [])
        cert_var = module_args.get("cert_var") or "__trustzone_secrets_cert"
        profile = module_args.get("profile") or S.PROFILE
        # the keys come back sealed under a key of this task alone: -vvv prints the module's
        # raw output before anything here could hide it
        module_args["transport_key"] = transport_key = S.new_key()
        done = self._execute_module(module_name="trustzone.pki.zone_secrets",
                                    module_args=module_args, task_vars=task_vars)
        done.pop("invocation", None)
        try:
            keys = S.from_module(done, "sealed_keys", "keys", transport_key)
        except TrustzoneError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        valid = done.pop("valid", None) or {}
        if done.get("failed"):
            result.update(done)
            return result
        result.update(changed=bool(done.get("changed")), changes=done.get("changes") or [],
                      generations=done.get("generations") or [],
                      key_ids=done.get("key_ids") or [], envelopes={}, refused={})
        hostvars = task_vars.get("hostvars", {})
        keyring = None
        if keys:
            gens = [g["generation"] for g in reversed(result["generations"])]
            keyring = {"zone": module_args.get("zone"),
                       "generations": [{"generation": g, "key": k}
                                       for g, k in reversed(list(zip(gens, keys)))]}
        for host in nodes:
            sent = (hostvars.get(host) or {}).get(cert_var)
            if not isinstance(sent, dict) or not sent.get("content"):
                continue  # not in this run (--limit) or nothing to read: nothing to send
            if keyring is None:
                result["refused"][host] = "check mode: the keyring would change first"
                continue
            try:
                pem = base64.b64decode(sent["content"], validate=True)
                cert = S.recipient(host, pem, {profile: valid.get(host) or []}, profile)
                result["envelopes"][host] = S.wrap(keyring, cert)
            except (binascii.Error, ValueError, TypeError):
                result["refused"][host] = "host %s sent no readable certificate" % host
            except TrustzoneError as exc:
                result["refused"][host] = str(exc)
        if return_keys and keys:
            result["keys"] = keys
            result["_ansible_no_log"] = True
        return result
