# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Each option is written once; the fragments below are the combinations the modules use, and
# match the argument-spec fragments of module_utils/_args.py (ZONE_NODE, ZONE_CA,
# ZONE_CA_KEYS).
_ZONE = r"""
  zone:
    description: Name of the trust zone (V(a-z), V(0-9), V(-), V(_); at most 32 characters).
    type: str
    required: true
"""

_NODE_DIR = r"""
  dir:
    description: The zone's directory on the node. Defaults to C(/etc/trustzone/<zone>).
    type: path
"""

_CA_DIR = r"""
  dir:
    description: The zone's CA directory on the CA host. Defaults to C(/var/lib/trustzone/<zone>).
    type: path
"""

_CA_PASSPHRASE = r"""
  passphrase:
    description:
      - The CA passphrase, which encrypts the zone's CA keys at rest (at least 12 characters).
        Keep it in Ansible Vault.
    type: str
    required: true
"""


class ModuleDocFragment:
    """The zone a module works on, and where: C(trustzone.pki.zone) on a node,
    C(trustzone.pki.zone.ca) on the CA host, C(trustzone.pki.zone.ca_keys) on the CA host with
    the CA keys."""

    DOCUMENTATION = "options:" + _ZONE + _NODE_DIR

    CA = "options:" + _ZONE + _CA_DIR

    CA_KEYS = "options:" + _ZONE + _CA_DIR + _CA_PASSPHRASE
