# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the proxy role reads from Traefik, decided by module_utils/_traefik.py."""

from __future__ import annotations

# Documented in the sidecar files traefik_problems.yml and traefik_backends.yml.

from ansible.errors import AnsibleFilterError

from ansible_collections.trustzone.pki.plugins.module_utils import _traefik as T
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def traefik_problems(raw, marker, routers=None, last_error="", seconds=30):
    return T.problem_line(T.problems(raw, marker, routers or [], last_error, seconds))


def traefik_backends(routes, checks=None):
    try:
        return T.backends(routes, checks)
    except TrustzoneError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"traefik_problems": traefik_problems, "traefik_backends": traefik_backends}
