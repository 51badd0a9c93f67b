# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schedule role's units, resolved by module_utils/_schedule.py."""

from __future__ import annotations

# Documented in the sidecar files schedule_units.yml and schedule_stale.yml.

from ansible.errors import AnsibleFilterError

from ansible_collections.trustzone.pki.plugins.module_utils import _schedule as S
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def schedule_units(jobs, zone, settings, host=""):
    try:
        return S.plan(zone, jobs, dict(settings or {}))
    except TrustzoneError as exc:
        raise AnsibleFilterError("%s%s" % ("host %s: " % host if host else "", exc)) from None


def schedule_stale(present, zone, wanted):
    return S.stale_units(zone, wanted or [], present or [])


class FilterModule:
    def filters(self):
        return {"schedule_units": schedule_units, "schedule_stale": schedule_stale}
