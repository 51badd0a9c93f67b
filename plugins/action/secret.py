# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller half of trustzone.pki.secret: a result that carries the opened value is hidden
(no_log) whatever the task says, so the value never reaches a callback or a log."""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        done = self._execute_module(module_name="trustzone.pki.secret",
                                    module_args=dict(self._task.args), task_vars=task_vars)
        done.pop("invocation", None)
        result.update(done)
        if "value" in result:
            result["_ansible_no_log"] = True
        return result
