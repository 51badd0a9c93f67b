# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The zone a module works on: C(trustzone.pki.zone) (the zone), C(trustzone.pki.zone.node_dir)
    (its directory on a node). Argument spec: module_utils/_args.py ZONE, NODE_DIR."""

    DOCUMENTATION = r"""
options:
  zone:
    description: Name of the trust zone (V(a-z), V(0-9), V(-), V(_); at most 32 characters).
    type: str
    required: true
"""

    NODE_DIR = r"""
options:
  dir:
    description: The zone's directory on the node. Defaults to C(/etc/trustzone/<zone>).
    type: path
"""
