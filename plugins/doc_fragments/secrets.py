# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The node's secrets identity and the modes of what the node-side secrets modules write
    (argument spec: module_utils/_args.py SECRETS_NODE)."""

    DOCUMENTATION = r"""
options:
  cert_path:
    description: The node's C(secrets) certificate. Default - C(secrets.crt) in the zone's directory.
    type: path
  key_path:
    description: The node's C(secrets) key. Default - C(secrets.key) in the zone's directory.
    type: path
  mode:
    description: Mode of the file written. Never accessible to other users.
    type: str
    default: "0600"
requirements:
  - cryptography >= 45 or the openssl command on the node
"""
