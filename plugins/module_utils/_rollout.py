# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The rollout plan: what a check-mode run would change in the whole zone.

Pure functions, controller side: plain data in (what the node, trust and zone_root modules
and the sign action returned in a check-mode run, ``now``), plain JSON-ready data out
(``rollout_plan``), and the lines its summary prints (``plan_lines``). No file, network or
Ansible I/O happens here. Times are ISO 8601 UTC strings, as in the fleet report
(``_report.py``).
"""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils._report import (
    crl_status, iso, parse_time)

# Reasons that mean "there is no usable certificate yet": the CA issues rather than renews.
ISSUE_REASONS = ("missing_certificate", "unreadable_certificate")


def _usable(result):
    return isinstance(result, dict) and not result.get("failed") and \
        not result.get("unreachable") and not result.get("skipped")


def root_states(ca):
    """The zone's roots after this run, each ``current`` (signs), ``incoming`` (trusted,
    signs after the use phase) or ``retiring`` (trusted, no longer signs)."""
    if not isinstance(ca, dict) or not ca.get("root"):
        return []
    phase = ca.get("phase") or "stable"
    root, nxt = ca["root"], ca.get("next")
    states = []
    if phase == "use" and nxt:
        states.append(dict(nxt, state="current"))
        states.append(dict(root, state="retiring"))
    else:
        states.append(dict(root, state="current"))
        if nxt:
            states.append(dict(nxt, state="incoming"))
    return states


def _failed(result):
    return isinstance(result, dict) and bool(result.get("failed") or result.get("unreachable"))


def _usable_or_failure(results):
    """``(usable results, None)``, or ``([], the failure to report)``: a failure of the last
    result wins; with nothing usable, the latest failure (None without one)."""
    results = [r for r in results or [] if isinstance(r, dict)]
    if results and _failed(results[-1]):
        return [], results[-1]
    usable = [r for r in results if _usable(r)]
    if not usable:
        return [], next((r for r in reversed(results) if _failed(r)), None)
    return usable, None


def merge_results(results):
    """One node (or trust role) result from the several a run registered in turn - a root
    rotation inspects a node once per phase. Requests per profile from the latest result
    that asks for it; files and anchor changes of all of them; a failure of the last one
    wins. None when there is nothing usable."""
    usable, failure = _usable_or_failure(results)
    if not usable:
        return failure
    merged = dict(usable[-1])
    requests, files, added, removed, has_trust = {}, set(), set(), set(), False
    for result in usable:
        requests.update(result.get("requests") or {})
        files.update(result.get("files") or [])
        if isinstance(result.get("trust"), dict):
            has_trust = True
            added.update(result["trust"].get("added") or [])
            removed.update(result["trust"].get("removed") or [])
    if any("requests" in r for r in usable):
        merged["requests"] = requests
    merged["files"] = sorted(files)
    if has_trust:
        merged["trust"] = {"added": sorted(added), "removed": sorted(removed)}
    return merged


def merge_ca_results(results):
    """The zone_root result that says most about a run that called it several times (a
    rotation does, once per phase): the last one whose rotation step changes something,
    else the last one; with the first reason to sign the CRLs again and the latest CRL."""
    usable, failure = _usable_or_failure(results)
    if not usable:
        return failure
    stepping = [r for r in usable if (r.get("rotation") or {}).get("changed")]
    merged = dict(stepping[-1] if stepping else usable[-1])
    merged["created"] = any(r.get("created") for r in usable)
    merged["crl_signed"] = next((r["crl_signed"] for r in usable if r.get("crl_signed")), None)
    merged["crl_next_update"] = usable[-1].get("crl_next_update")
    return merged


def rollout_plan(zone, hosts, nodes, ca, now, signed=None, trust_results=None, reload=None,
                 crl_near="1d", history=None):
    """What a check-mode run would do to the whole zone, as JSON-ready data.

    ``nodes[host]``: the node module's inspect result of that host (``identities``,
    ``requests``, ``trust``, ``files``, ``dir``); ``trust_results[host]``: the trust role's
    own result when it ran apart from the certs role; ``signed``: the sign action's result
    (``refused``); ``ca``: the zone_root result; ``reload[host]``: ``{'services',
    'commands'}`` the host reloads when its certificates or its crl.pem change.
    ``history[host]``: earlier results of the same run, ``[{'node', 'trust', 'ca'}, ...]``
    oldest first, that later plays overwrote (``rotate_root.yml`` keeps one per phase); they
    are merged in.
    """
    now = parse_time(now)
    history = history or {}
    nodes = {h: merge_results([s.get("node") for s in history.get(h) or []]
                              + [(nodes or {}).get(h)]) for h in hosts or []}
    trust_results = {h: merge_results([s.get("trust") for s in history.get(h) or []]
                                      + [(trust_results or {}).get(h)]) for h in hosts or []}
    ca = merge_ca_results([s.get("ca") for steps in history.values() for s in steps or []]
                          + [ca])
    near_seconds = _parse.parse_duration(crl_near, "CRL warning window")
    items, by_reason, failed, inspected, not_inspected = [], {}, {}, [], []
    trust, crl_hosts, reloading = {}, [], {}
    for host in hosts or []:
        result = (nodes or {}).get(host)
        own_trust = (trust_results or {}).get(host)
        if not _usable(result) or "requests" not in result:
            if isinstance(result, dict) and (result.get("failed") or result.get("unreachable")):
                failed[host] = result.get("msg") or "failed"
            else:
                not_inspected.append(host)
            continue
        inspected.append(host)
        for profile, request in sorted((result.get("requests") or {}).items()):
            reasons = [r.get("reason") for r in (request or {}).get("reasons") or []
                       if isinstance(r, dict)]
            action = "issue" if set(reasons) & set(ISSUE_REASONS) else "renew"
            items.append({"host": host, "profile": profile, "action": action,
                          "reasons": reasons,
                          "details": [r.get("detail") for r in request.get("reasons") or []
                                      if isinstance(r, dict)]})
            for reason in reasons:
                by_reason[reason] = by_reason.get(reason, 0) + 1
        # a new certificate, or a new CRL (crl.pem's readers reload too: issue 14)
        crl_changed = any(_usable(s) and s.get("crl_changed") for s in (result, own_trust))
        if result.get("requests") or crl_changed:
            wanted = (reload or {}).get(host) or {}
            reloading[host] = {"services": list(wanted.get("services") or []),
                               "commands": [c if isinstance(c, str) else " ".join(c)
                                            for c in wanted.get("commands") or []]}
        added, removed = set(), set()
        for source in (result, own_trust):
            if _usable(source) and isinstance(source.get("trust"), dict):
                added.update(source["trust"].get("added") or [])
                removed.update(source["trust"].get("removed") or [])
        files = set()
        for source in (result, own_trust):
            if _usable(source):
                files.update(source.get("files") or [])
        zone_dir = (result.get("dir") or "").rstrip("/")
        bundle = (zone_dir + "/roots.pem") in files
        if added or removed or bundle:
            trust[host] = {"added": sorted(added), "removed": sorted(removed),
                           "roots_bundle": bundle}
        if (zone_dir + "/crl.pem") in files:
            crl_hosts.append(host)
    ca_ok = _usable(ca)
    crl_next = ca.get("crl_next_update") if ca_ok else None
    issue = sum(1 for i in items if i["action"] == "issue")
    plan = {
        "zone": zone,
        "generated_at": iso(now),
        "check_mode": True,
        "hosts": {"inventory": list(hosts or []), "inspected": inspected,
                  "not_inspected": not_inspected, "failed": failed},
        "certificates": {"total": len(items), "issue": issue, "renew": len(items) - issue,
                         "by_reason": dict(sorted(by_reason.items())), "items": items},
        "refused": dict((signed or {}).get("refused") or {}) if _usable(signed) else {},
        "reload": {"hosts": sorted(reloading), "by_host": reloading},
        "trust": {"hosts": sorted(trust), "by_host": trust},
        "crl_distribution": {"hosts": sorted(crl_hosts)},
        "ca": {
            "error": None if ca_ok else ((ca or {}).get("msg") or "the CA was not inspected"),
            "root_created": bool(ca.get("created")) if ca_ok else False,
            "roots": root_states(ca) if ca_ok else [],
            "intermediate": ca.get("intermediate") if ca_ok else None,
            "phase": ca.get("phase") if ca_ok else None,
            "rotation": ca.get("rotation") if ca_ok else None,
        },
        "crl": {"next_update": crl_next,
                "status": crl_status(crl_next, now, near_seconds) if ca_ok else None,
                "would_sign": ca.get("crl_signed") if ca_ok else None},
    }
    return plan


def _host_list(hosts, detail=None):
    if not hosts:
        return "none"
    if detail is None:
        return ", ".join(hosts)
    return ", ".join("%s (%s)" % (h, detail(h)) for h in hosts)


def plan_lines(plan):
    """The plan as the lines one summary prints at the end of a check-mode run."""
    certs = plan["certificates"]
    hosts = plan["hosts"]
    lines = ["Zone %s: what this run would do on %d node(s) (%d inspected)" % (
        plan["zone"], len(hosts["inventory"]), len(hosts["inspected"]))]
    lines.append("Certificates: %d (%d issued, %d renewed)" % (certs["total"], certs["issue"],
                                                               certs["renew"]))
    if certs["by_reason"]:
        lines.append("  why: " + ", ".join("%s %d" % (r, n)
                                           for r, n in sorted(certs["by_reason"].items())))
    for item in certs["items"]:
        lines.append("  %s/%s: %s (%s)" % (item["host"], item["profile"], item["action"],
                                           ", ".join(item["reasons"])))
    by_host = plan["reload"]["by_host"]

    def reload_detail(host):
        what = by_host[host]["services"] + by_host[host]["commands"]
        return ", ".join(what) if what else "no reload configured"
    lines.append("Reload: " + _host_list(plan["reload"]["hosts"], reload_detail))
    trust = plan["trust"]["by_host"]

    def trust_detail(host):
        parts = []
        if trust[host]["added"]:
            parts.append("+%d anchor" % len(trust[host]["added"]))
        if trust[host]["removed"]:
            parts.append("-%d anchor" % len(trust[host]["removed"]))
        if trust[host]["roots_bundle"]:
            parts.append("roots.pem")
        return ", ".join(parts)
    lines.append("Trust stores change: " + _host_list(plan["trust"]["hosts"], trust_detail))
    lines.append("CRL copies change: " + _host_list(plan["crl_distribution"]["hosts"]))
    ca = plan["ca"]
    if ca["error"]:
        lines.append("CA: %s" % ca["error"])
    else:
        if ca["root_created"]:
            lines.append("Root: would be created")
        for root in ca["roots"]:
            lines.append("Root %s: %s (%s, %s days left)" % (
                root["state"], root["fingerprint"][:16], root["subject"], root["days_left"]))
        if ca["intermediate"]:
            lines.append("Intermediate: %s (%s days left)" % (
                ca["intermediate"]["fingerprint"][:16], ca["intermediate"]["days_left"]))
        step = ca.get("rotation") or {}
        lines.append("Rotation phase: %s%s" % (ca["phase"], " (this run: %s -> %s)" % (
            step.get("phase_before"), step.get("phase_after")) if step.get("changed") else ""))
    crl = plan["crl"]
    lines.append("CRL next update: %s (%s)%s" % (
        crl["next_update"], crl["status"],
        "; would be signed again: %s" % crl["would_sign"] if crl["would_sign"] else ""))
    if plan["refused"]:
        for host, problems in sorted(plan["refused"].items()):
            lines.append("Refused for %s: %s" % (host, "; ".join(problems)))
    if hosts["failed"]:
        lines.append("Failed: " + ", ".join("%s (%s)" % (h, m)
                                            for h, m in sorted(hosts["failed"].items())))
    if hosts["not_inspected"]:
        lines.append("Not inspected in this run: " + ", ".join(hosts["not_inspected"]))
    return lines
