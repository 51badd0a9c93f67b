# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which identities of a zone still block retiring its old root."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: retire_offenders
short_description: List the identities that still chain to anything but the new root
version_added: 0.1.0
description:
  - "Used by C(playbooks/rotate_root.yml) before the retire phase. Every host of the zone must
    have been inspected in this run, and every identity it holds must chain to the new root;
    anything else is listed (C(host/profile: chains to <fingerprint>), or the host when it
    was not inspected)."
author: trustzone.pki maintainers (!UNKNOWN)
options:
  _input:
    description: All hosts of the zone (e.g. C(groups['trustzone_nodes'])).
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: raw
    required: true
  new_fingerprint:
    description: SHA-256 fingerprint of the new root.
    type: str
    required: true
  var:
    description: Per-host variable holding the node module's C(identities).
    type: str
    default: __trustzone_rotate_identities
"""

EXAMPLES = r"""
- name: Refuse to retire while a leaf still chains to the old root
  ansible.builtin.assert:
    that: offenders | length == 0
  vars:
    offenders: "{{ groups['trustzone_nodes'] | trustzone.pki.retire_offenders(hostvars,
                   trustzone_ca_root.next.fingerprint) }}"
"""

RETURN = r"""
_value:
  description: Readable offender lines; empty when the old root may be retired.
  type: list
  elements: str
"""

from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as R


def retire_offenders(hosts, hostvars, new_fingerprint, var="__trustzone_rotate_identities"):
    identities = {}
    for host in hosts:
        host_vars = hostvars.get(host) or {}
        value = host_vars.get(var)
        identities[host] = value if isinstance(value, dict) else None
    return R.retire_offenders(hosts, identities, new_fingerprint)


class FilterModule:
    def filters(self):
        return {"retire_offenders": retire_offenders}
