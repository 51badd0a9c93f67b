# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test only: what a compromised node can do through any module it runs - return arbitrary
ansible_facts. Ansible makes them host variables that outrank the inventory's host variables
and keeps them in the fact cache for the next runs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: forge_facts
short_description: Test only - return the given facts as ansible_facts, as a hostile node could
description:
  - Used by tests/e2e/test_forged_facts.py. Never part of the collection.
options:
  facts:
    description: The facts to return.
    type: dict
    required: true
author: trustzone.pki maintainers (!UNKNOWN)
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}},
                           supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts=module.params["facts"])


if __name__ == "__main__":
    main()
