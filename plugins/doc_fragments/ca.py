# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """On the CA host: C(trustzone.pki.ca) (the zone's CA directory),
    C(trustzone.pki.ca.passphrase) (the CA passphrase). Argument spec: module_utils/_args.py
    CA_DIR, CA_PASSPHRASE."""

    DOCUMENTATION = r"""
options:
  dir:
    description: The zone's CA directory on the CA host. Defaults to C(/var/lib/trustzone/<zone>).
    type: path
"""

    PASSPHRASE = r"""
options:
  passphrase:
    description:
      - The CA passphrase, which encrypts the zone's CA keys at rest (at least 12 characters).
        Keep it in Ansible Vault.
    type: str
    required: true
"""
