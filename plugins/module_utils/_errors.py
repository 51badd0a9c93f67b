# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.

from __future__ import annotations


class TrustzoneError(Exception):
    """An error a user can act on: what went wrong, where, and how to fix it.

    ``str(err)`` is a single line meant to be shown as-is (Ansible prefixes it with the host).
    """

    def __init__(self, message, path=None, fix=None):
        self.message = message
        self.path = path
        self.fix = fix
        super().__init__(self.render())

    def render(self):
        parts = []
        if self.path:
            parts.append("%s: %s" % (self.path, self.message))
        else:
            parts.append(self.message)
        if self.fix:
            parts.append("Fix: %s" % self.fix)
        return " ".join(parts)
