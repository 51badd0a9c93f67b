# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn what a run collected on every host into the fleet report and the
rollout plan (playbooks/report.yml, playbooks/plan.yml)."""

from __future__ import annotations

# Each filter of this file is documented in its own sidecar file (fleet_report.yml,
# rollout_plan.yml, plan_summary.yml, zone_settled.yml): ansible-doc reads those when the .py has none.

import datetime

from ansible.errors import AnsibleFilterError

from ansible_collections.trustzone.pki.plugins.module_utils import _report as R
from ansible_collections.trustzone.pki.plugins.module_utils import _rollout as RO
from ansible_collections.trustzone.pki.plugins.module_utils import _zonecheck as ZC
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.plugin_utils._inventory import plain


def _var(hostvars, host, name):
    host_vars = hostvars.get(host) if host in hostvars else None
    if host_vars is None:
        return None
    value = host_vars.get(name)
    return plain(value) if value is not None else None


def _now(now):
    return R.parse_time(now) if now else datetime.datetime.now(datetime.timezone.utc)


def _zone(hostvars, ca_host, zone):
    return zone or _var(hostvars, ca_host, "trustzone_name")


def fleet_report(hosts, hostvars, ca_host, soon_days=30, crl_near="1d", now=None, zone=None,
                 node_var="__trustzone_report_node", ledger_var="__trustzone_report_ledger",
                 fail_within=R.FAIL_WITHIN, profiles_var="__trustzone_certs_profiles"):
    hosts = [str(h) for h in hosts or []]
    try:
        nodes = {h: _var(hostvars, h, node_var) for h in hosts}
        windows = {}
        for host in hosts:
            profiles = _var(hostvars, host, profiles_var)
            windows[host] = {p["name"]: p["renew_before"] for p in profiles or []
                             if isinstance(p, dict) and isinstance(p.get("renew_before"), int)}
        return R.fleet_report(_zone(hostvars, ca_host, zone), hosts, nodes,
                              _var(hostvars, ca_host, ledger_var), _now(now),
                              soon_days=int(soon_days), crl_near=crl_near,
                              fail_within=fail_within, renew_windows=windows)
    except TrustzoneError as exc:
        raise AnsibleFilterError("fleet_report: %s" % exc) from None


def rollout_plan(hosts, hostvars, ca_host, crl_near="1d", now=None, zone=None,
                 node_var="__trustzone_certs_node", trust_var="trustzone_trust_result",
                 signed_var="__trustzone_certs_signed", ca_var="trustzone_ca_root",
                 steps_var="__trustzone_plan_steps"):
    hosts = [str(h) for h in hosts or []]
    try:
        history = {}
        for host in hosts + [ca_host]:
            steps = _var(hostvars, host, steps_var)
            if isinstance(steps, list) and steps:
                history[host] = [s for s in steps if isinstance(s, dict)]
        nodes = {h: _var(hostvars, h, node_var) for h in hosts}
        trust = {h: _var(hostvars, h, trust_var) for h in hosts}
        signed = next((s for s in (_var(hostvars, h, signed_var) for h in hosts)
                       if isinstance(s, dict) and not s.get("skipped")), None)
        reload = {}
        for host in hosts:
            reload[host] = {
                "services": _var(hostvars, host, "trustzone_certs_reload_services") or [],
                "commands": _var(hostvars, host, "trustzone_certs_reload_commands") or [],
            }
        return RO.rollout_plan(_zone(hostvars, ca_host, zone), hosts, nodes,
                               _var(hostvars, ca_host, ca_var), _now(now), signed=signed,
                               trust_results=trust, reload=reload, crl_near=crl_near,
                               history=history)
    except TrustzoneError as exc:
        raise AnsibleFilterError("rollout_plan: %s" % exc) from None


def plan_summary(plan):
    return RO.plan_lines(plain(plan))


def zone_settled(ca_host, hostvars, checked, nodes):
    """``{'settled', 'why'}`` of the check round (module_utils/_zonecheck.py)."""
    ca_result = _var(hostvars, ca_host, "trustzone_ca_root")
    node_results = {h: _var(hostvars, h, "__trustzone_certs_node") for h in nodes}
    node_vars = {h: {v: _var(hostvars, h, v) for v in ZC.STORE_VARS} for h in nodes}
    ledger = (ca_result or {}).get("ledger_valid") if isinstance(ca_result, dict) else None
    done, why = ZC.settled(ca_result, list(checked or []), list(nodes or []), node_results,
                           node_vars, ledger)
    return {"settled": done, "why": why}


class FilterModule:
    def filters(self):
        return {"fleet_report": fleet_report, "rollout_plan": rollout_plan,
                "plan_summary": plan_summary, "zone_settled": zone_settled}
