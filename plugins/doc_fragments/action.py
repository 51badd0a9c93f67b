# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options of the modules whose action plugin runs a role's one task
    (plugin_utils/_inventory.py InventoryActionMixin._check_role_spec)."""

    ROLE_SPEC = r"""
options:
  role_spec:
    description:
      - Path of a role (C({{ role_path }})) whose C(meta/argument_specs.yml) (entry point
        C(main)) the action plugin checks against the task's variables before anything else,
        as Ansible's own role argument validation does; for a play that imports the role with
        C(rolespec_validate=false) (C(playbooks/site.yml) does, so that the role costs one
        task per host).
    type: path
"""
