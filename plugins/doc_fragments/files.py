# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Who owns the files a module writes (argument spec: module_utils/_args.py
    OWNER_GROUP)."""

    DOCUMENTATION = r"""
options:
  owner:
    description: Owner of the directories and files written.
    type: str
    default: root
  group:
    description: Group of the directories and files written.
    type: str
    default: root
"""
