# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller half of trustzone.pki.secret: a result that carries the opened value is hidden
(no_log) whatever the task says, so the value never reaches a callback or a log. The module
returns the value sealed under a one-time transport key this plugin gives it (a no_log
argument), because -vvv prints a module's raw output before this plugin sees it."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.trustzone.pki.plugins.module_utils import _secrets as S
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        module_args = dict(self._task.args)
        # the value comes back sealed under a key of this task alone: -vvv prints the
        # module's raw output before anything here could hide it
        module_args["transport_key"] = transport_key = S.new_key()
        done = self._execute_module(module_name="trustzone.pki.secret",
                                    module_args=module_args, task_vars=task_vars)
        done.pop("invocation", None)
        hidden = "sealed_value" in done
        try:
            value = S.from_module(done, "sealed_value", "value", transport_key)
        except TrustzoneError as exc:
            done.update(failed=True, msg=str(exc))
            value = None
        result.update(done)
        if hidden:
            result["_ansible_no_log"] = True
        if value is not None:
            result["value"] = value
        return result
