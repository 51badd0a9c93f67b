# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn inventory variables into the names and profiles of a node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: profiles
short_description: Resolve a node's certificate profiles
version_added: 0.1.0
description:
  - Completes each profile with the collection's defaults, validates it, and fills in the
    node's names (from P(trustzone.pki.node_names#filter)) and file paths.
  - The result is what the node module checks against and what the CA signs by.
author: trustzone.pki maintainers
options:
  _input:
    description: Profiles, as a list of dicts with a C(name) each, or a dict keyed by name.
    type: raw
    required: true
  zone:
    description: The zone name.
    type: str
    required: true
  base_dir:
    description: Directory of the zone's files on the node.
    type: str
    required: true
  names:
    description: The node's names, as returned by P(trustzone.pki.node_names#filter).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Show the resolved profiles
  ansible.builtin.debug:
    msg: "{{ [{'name': 'server'}] | trustzone.pki.profiles('prod', '/etc/trustzone/prod',
              inventory_hostname | trustzone.pki.node_names(hostvars[inventory_hostname])) }}"
"""

RETURN = r"""
_value:
  description: Resolved profiles.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.trustzone.pki.plugins.module_utils import _policy as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def profiles(value, zone, base_dir, names):
    try:
        return P.resolve_profiles(value, zone, base_dir, names)
    except TrustzoneError as exc:
        raise AnsibleFilterError(str(exc)) from None


def node_names(hostname, host_vars=None, extra_names=None):
    host_vars = host_vars or {}
    try:
        return P.node_names(
            hostname,
            fqdn=host_vars.get("trustzone_node_fqdn"),
            addresses=host_vars.get("trustzone_node_addresses"),
            extra_names=(extra_names if extra_names is not None
                         else host_vars.get("trustzone_certs_extra_names")),
            ansible_host=host_vars.get("ansible_host"),
        )
    except TrustzoneError as exc:
        raise AnsibleFilterError("host %s: %s" % (hostname, exc)) from None


class FilterModule:
    def filters(self):
        return {"profiles": profiles, "node_names": node_names}
