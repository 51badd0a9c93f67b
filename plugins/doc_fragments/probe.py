# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """How long a probe may take: each attempt's bound, the further attempts and the pause
    between them (argument spec: module_utils/_args.py probe_bounds). The defaults differ per
    module, so each module's own documentation adds C(default) to these options (a module's
    option overrides the fragment's key by key)."""

    DOCUMENTATION = r"""
options:
  timeout:
    description: Seconds for each connection and handshake.
    type: float
  retries:
    description: Further attempts after a failed one.
    type: int
  delay:
    description: Seconds between attempts.
    type: float
"""
