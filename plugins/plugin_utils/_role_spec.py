# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""A role's ``meta/argument_specs.yml`` checked inside an action plugin (controller side).

Ansible validates a role's arguments with a task of its own per host; a play that imports the
role with ``rolespec_validate: false`` (playbooks/site.yml) has the role's one real task check
the same spec here instead, as ``validate_argument_spec`` does, at no extra task.
"""

from __future__ import annotations

import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def validate_role(host, role_path, task_vars, loader, templar, entry_point="main"):
    """Raise TrustzoneError (one line: host, role, every error, the fix) unless the task's
    variables satisfy the role's argument spec for ``entry_point``."""
    path = os.path.join(role_path, "meta", "argument_specs.yml")
    data = loader.load_from_file(path) or {}
    spec = ((data.get("argument_specs") or {}).get(entry_point) or {}).get("options") or {}
    provided = templar.template({name: task_vars[name] for name in spec if name in task_vars})
    validator = ArgumentSpecValidator(spec)
    try:
        outcome = validator.validate(provided, validate_role_argument_spec=True)
    except TypeError:  # ansible-core without that keyword
        outcome = validator.validate(provided)
    if outcome.error_messages:
        role = os.path.basename(os.path.normpath(role_path))
        raise TrustzoneError("%s: role %s: %s" % (host, role, "; ".join(outcome.error_messages)),
                             fix="correct these variables in the inventory (ansible-doc -t role "
                                 "trustzone.pki.%s lists them)" % role)
