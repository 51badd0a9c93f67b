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
  - "With O(roots), a host that was not inspected but went through this run's use phase
    (the certs role's node call, and the install of every certificate it asked for) counts
    as inspected: a leaf it did not renew chains to the root its node call reported, a
    renewed one to the root the certificate the CA signed for it chains to (worked out on
    the controller from the CA's result and O(roots))."
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
  roots:
    description:
      - PEM certificates of the zone's current roots (the ca role's C(trustzone_ca_root.roots)).
      - Without it, only hosts with O(var) count as inspected.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Refuse to retire while a leaf still chains to the old root
  ansible.builtin.assert:
    that: offenders | length == 0
  vars:
    offenders: "{{ groups['trustzone_nodes'] | trustzone.pki.retire_offenders(hostvars,
                   trustzone_ca_root.next.fingerprint, roots=trustzone_ca_root.roots) }}"
"""

RETURN = r"""
_value:
  description: Readable offender lines; empty when the old root may be retired.
  type: list
  elements: str
"""

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as R
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def _signed_roots(signed, host, roots):
    """``{profile: fingerprint of the root (of ``roots``) the certificate the CA signed for
    ``host`` chains to, or None}``, read on the controller from the CA's own result."""
    certificates = ((signed or {}).get("certificates") or {}).get(host) or {}
    trusted = [cert for pem in roots or [] for cert in C.load_certificates(pem, path="roots")]
    found = {}
    for name, item in certificates.items():
        try:
            cert = C.load_certificate((item or {}).get("certificate") or "")
            chain = [c for pem in (item or {}).get("chain") or []
                     for c in C.load_certificates(pem)]
            path = C.chain_to(cert, chain, trusted)
        except TrustzoneError:
            path = None
        found[name] = C.fingerprint(path[-1]) if path else None
    return found


def _use_holdings(host, host_vars, roots):
    node, signed, installed = (host_vars.get(name) for name in R.USE_PHASE_VARS)
    rolled_back = host_vars.get(R.ROLLBACK_VAR)
    if not isinstance(node, dict) or not node.get("requests"):
        return R.use_phase_holdings(node, installed, {}, rolled_back)
    return R.use_phase_holdings(node, installed, _signed_roots(signed, host, roots), rolled_back)


def retire_offenders(hosts, hostvars, new_fingerprint, var="__trustzone_rotate_identities",
                     roots=None):
    identities = {}
    for host in hosts:
        host_vars = hostvars.get(host) or {}
        value = host_vars.get(var)
        if isinstance(value, dict):
            identities[host] = value
        elif roots is not None:
            identities[host] = _use_holdings(host, host_vars, roots)
        else:
            identities[host] = None
    return R.retire_offenders(hosts, identities, new_fingerprint)


class FilterModule:
    def filters(self):
        return {"retire_offenders": retire_offenders}
