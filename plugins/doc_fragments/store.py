# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The zone's roots a store module puts in a store (argument spec: module_utils/_args.py
    STORE_ROOTS)."""

    DOCUMENTATION = r"""
options:
  roots:
    description:
      - PEM certificates of the zone's current roots. Default - read O(roots_path).
      - Exactly one of O(roots) and O(roots_path) is given.
    type: list
    elements: str
  roots_path:
    description: The zone's roots bundle on the node (written by the trust role).
    type: path
"""
