# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Attributes several modules share: C(trustzone.pki.attributes) (no diff) and
    C(trustzone.pki.attributes.info) (read-only)."""

    DOCUMENTATION = r"""
attributes:
  diff_mode:
    description: Returns no diff.
    support: none
"""

    INFO = r"""
attributes:
  check_mode:
    description: Read-only; runs the same in check mode.
    support: full
"""
