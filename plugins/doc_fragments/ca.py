# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """On the CA host: C(trustzone.pki.ca) (the zone's CA directory),
    C(trustzone.pki.ca.passphrase) (the CA passphrase), C(trustzone.pki.ca.pkcs11) (a PKCS#11
    token for the CA keys). Argument spec: module_utils/_args.py CA_DIR, CA_PASSPHRASE,
    PKCS11."""

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

    PKCS11 = r"""
options:
  pkcs11_token:
    description:
      - The label of a PKCS#11 token that holds the zone's CA keys (C(docs/pkcs11.md)). New keys
        of the roles in O(pkcs11_keys) are made in the token (sensitive, never extractable)
        and never exist in a file; the CA directory keeps their label. Unset, keys are files
        encrypted with the CA passphrase.
    type: str
  pkcs11_module:
    description: The PKCS#11 module (shared library) of the token, on the CA host.
    type: path
    default: /usr/lib/softhsm/libsofthsm2.so
  pkcs11_pin:
    description:
      - The token's user PIN; required with O(pkcs11_token). Never logged, never on a command
        line. Keep it in Ansible Vault.
    type: str
  pkcs11_keys:
    description: Which new CA keys are made in the token.
    type: list
    elements: str
    choices: [root, intermediate]
    default: [root, intermediate]
"""
