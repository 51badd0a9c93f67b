# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn inventory variables into the names and profiles of a node.

They apply the identity resolver's rules (module_utils/_identity.py) to the values they are
given. They are display helpers: ``hostvars`` hold facts a node can set, so nothing that
decides what the CA signs uses them - the node, sign and zone_root actions resolve every host
from inventory-only variables themselves."""

from __future__ import annotations

# Each filter of this file is documented in its own sidecar file, profiles.yml and
# node_names.yml (ansible-doc reads those only when the .py has no DOCUMENTATION).

from ansible.errors import AnsibleFilterError

from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def profiles(value, zone, base_dir, names):
    try:
        return I.resolve_profiles(value, zone, base_dir, names)
    except TrustzoneError as exc:
        raise AnsibleFilterError(str(exc)) from None


def node_names(hostname, host_vars=None, extra_names=None):
    host_vars = host_vars or {}
    try:
        return I.node_names(
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
