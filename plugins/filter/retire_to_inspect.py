# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which nodes the retire phase of a rotation must still look at."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: retire_to_inspect
short_description: List the nodes the retire phase of a rotation must still look at
version_added: 0.1.0
description:
  - "Used by C(playbooks/rotate_root.yml) to choose the hosts of its read-only inspect play
    before the retire phase. A node whose use phase finished in this run (the certs role's
    node call, and the install of every certificate it asked for) is known already and is
    left out; every other node of the input is listed, so that it is looked at as before."
author: trustzone.pki maintainers (!UNKNOWN)
positional: hostvars
options:
  _input:
    description: The zone's nodes (e.g. C(groups['trustzone_nodes'])).
    required: true
    type: list
    elements: str
  hostvars:
    description:
      - The C(hostvars) magic variable, from which each node's use phase results (the certs
        role's registered variables) and its O(var) are read.
    required: true
    type: raw
  var:
    description:
      - Per-host variable in which the inspect play records what a node holds (the node
        module's C(identities)); a host that has it was looked at already.
    default: __trustzone_rotate_identities
    type: str
seealso:
  - plugin: trustzone.pki.retire_offenders
    plugin_type: filter
"""

EXAMPLES = r"""
- name: "Rotate, phase retire: look at the nodes this run's use phase did not"
  hosts: "{{ groups['trustzone_nodes'] | trustzone.pki.retire_to_inspect(hostvars) }}"
  gather_facts: false
  tasks:
    - name: Inspect this node's identities (read-only)
      ansible.builtin.import_role:
        name: trustzone.pki.certs
        tasks_from: inspect
      check_mode: true
"""

RETURN = r"""
_value:
  description: The hosts still to inspect, in input order.
  type: list
  elements: str
"""

from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as R


def retire_to_inspect(hosts, hostvars, var="__trustzone_rotate_identities"):
    todo = []
    for host in hosts:
        host_vars = hostvars.get(host) or {}
        if isinstance(host_vars.get(var), dict):
            continue
        node, _signed, installed = (host_vars.get(name) for name in R.USE_PHASE_VARS)
        if R.use_phase_holdings(node, installed, {}, host_vars.get(R.ROLLBACK_VAR)) is None:
            todo.append(host)
    return todo


class FilterModule:
    def filters(self):
        return {"retire_to_inspect": retire_to_inspect}
