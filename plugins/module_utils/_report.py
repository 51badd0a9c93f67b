# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The fleet report: what the zone holds (the rollout plan, what a run would change, is
``_rollout.py``).

Pure functions. Two halves:

* node and CA side (``crl_facts``, ``mode_problems``, the time helpers): facts about parsed
  CRLs and file modes, used by the ``node_info`` and ``ledger_info`` modules and by the
  identity backend (``_backend.py``, whose ``certificate_facts`` are the facts of one
  certificate a report row is made of), so nothing here may need more than cryptography
  38.0.4;
* controller side (``fleet_report``): plain data in (what those modules returned, the
  ledger's rows, ``now``), plain JSON-ready data out. No file, network or Ansible I/O
  happens here.

Times are ISO 8601 UTC strings (``2025-06-01T12:00:00Z``) everywhere in the output.
"""

from __future__ import annotations

import datetime

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils import _timeline
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._layout import days_left, parse_time  # noqa: F401  (re-exported)

UTC = datetime.timezone.utc
ISO = _layout.ISO_TIME
DAY = _layout.DAY

# Certificate states, worst first; the report's table is coloured by them.
STATUSES = ("unreadable", "missing", "expired", "soon", "ok")
# CRL states, worst first.
CRL_STATUSES = ("unreadable", "past", "near", "missing", "ok")
# Findings of the report, in the order they are listed.
FINDINGS = (
    "not_inspected",          # a host of the inventory could not be looked at
    "revoked_in_use",         # a node holds a certificate the ledger says is revoked
    "unknown_to_ledger",      # a node holds a zone certificate the CA never recorded
    "ledger_host_mismatch",   # a node holds a certificate the ledger gives another host
    "superseded_in_use",      # a node holds a certificate that a newer one replaced
    "missing_from_node",      # a valid ledger entry is not on its node
    "host_not_in_inventory",  # valid certificates of a host that left the inventory
    "roots_differ",           # a node's roots.pem is not the zone's current roots
    "crl_past",               # a CRL (the CA's or a node's copy) is past its nextUpdate
    "crl_near",               # ... or has less than the warning window left
    "crl_missing",            # a node that holds zone certificates has no CRL copy
    "crl_stale",              # a node's CRL copy is older than the CA's
)
# Problems of one certificate (a row of the table).
PROBLEMS = ("unreadable", "missing", "expired", "not_yet_valid", "chain_invalid",
            "key_mismatch", "key_missing", "modes")
# What fails report.yml (its exit-status contract, docs/report.md), in the order listed.
# Everything else the report finds is a warning: in the files, never in the exit status.
FAILURES = (
    "ledger_unreadable",  # the CA host's ledger could not be read
    "not_inspected",      # a node could not be reached or failed its inspection
    "missing", "unreadable", "expired", "not_yet_valid", "chain_invalid", "key_mismatch",
    "key_missing",        # a profile's certificate is unusable (worst problem first)
    "expiring",           # a profile's certificate has less than the threshold left
    "revoked_in_use",     # a node holds a certificate the ledger says is revoked
    "crl_unreadable",     # the CA's CRL or a node's copy does not parse
    "crl_past",           # ... is past its nextUpdate
    "crl_near",           # ... is within trustzone_report_crl_near of it
    "ca_expiring",        # a trusted CA certificate expired or has less than the threshold
)
FAIL_WITHIN = "7d"  # the default threshold (trustzone_report_fail_within)


# --------------------------------------------------------------------------- small helpers

def iso(value):
    return value.astimezone(UTC).strftime(ISO) if value is not None else None


def _countdown(deadline, now, near_seconds, past, near):
    """``past`` at or after ``deadline``, ``near`` with less than ``near_seconds`` left, else
    ``ok``."""
    left = (parse_time(deadline) - parse_time(now)).total_seconds()
    if left <= 0:
        return past
    return near if left < near_seconds else "ok"


def expiry_status(not_after, now, soon_seconds):
    """``expired`` (at or past notAfter), ``soon`` (less than ``soon_seconds`` left) or ``ok``."""
    return _countdown(not_after, now, soon_seconds, "expired", "soon")


def crl_status(next_update, now, near_seconds):
    """``past`` (at or past nextUpdate: relying parties that check it refuse every client),
    ``near`` (less than ``near_seconds`` left), ``ok``, or ``missing`` without a CRL."""
    if next_update is None:
        return "missing"
    return _countdown(next_update, now, near_seconds, "past", "near")


def worst(values, order):
    ranked = [v for v in values if v in order]
    return min(ranked, key=order.index) if ranked else None


def mode_text(mode):
    return None if mode is None else "%04o" % mode


# --------------------------------------------------------------------------- node / CA side

def mode_problems(facts, mode=None, key_mode=None):
    """What is wrong with the modes in ``facts`` (``mode``, ``key_mode``, ``chain_mode``,
    each ``'0644'``-style or None when the file is absent).

    With a profile's ``mode``/``key_mode`` the files must have exactly those. Without (a
    certificate the profiles do not describe) only the dangerous cases count: a key anyone
    may read, or a file anyone may write.
    """
    problems = []
    checks = (("certificate", facts.get("mode"), mode),
              ("chain", facts.get("chain_mode"), mode),
              ("key", facts.get("key_mode"), key_mode))
    for what, have, want in checks:
        if have is None:
            continue
        if want is not None:
            if int(have, 8) != int(want, 8):
                problems.append("%s mode %s, profile wants %s" % (what, have, want))
            continue
        if int(have, 8) & 0o002:
            problems.append("%s mode %s: anyone may write it" % (what, have))
        if what == "key" and int(have, 8) & 0o004:
            problems.append("key mode %s: anyone may read it" % have)
    return problems


def crl_facts(crls, ca_certs, now):
    """Facts about parsed CRLs: one entry per CRL, plus the earliest nextUpdate.

    ``ca_certs`` are the zone's CA certificates (roots and intermediates), used to name the
    CA that signed each CRL (``signed_by``: fingerprint, or None when none of them did).
    """
    entries = []
    for crl in crls:
        signer = next((ca for ca in ca_certs or [] if C.crl_signed_by(crl, ca)), None)
        nxt = C.crl_next_update(crl)
        last = getattr(crl, "last_update_utc", None) or crl.last_update.replace(tzinfo=UTC)
        entries.append({
            "issuer": crl.issuer.rfc4514_string(),
            "number": C.crl_number(crl),
            "this_update": iso(last),
            "next_update": iso(nxt),
            "revoked": len(C.crl_serials(crl)),
            "signed_by": C.fingerprint(signer) if signer is not None else None,
        })
    nexts = [e["next_update"] for e in entries if e["next_update"]]
    numbers = [e["number"] for e in entries if e["number"] is not None]
    return {"crls": entries, "next_update": min(nexts) if nexts else None,
            "number": max(numbers) if numbers else None}


# --------------------------------------------------------------------------- fleet report

def report_rows(host, node, now, soon_seconds):
    """The table rows of one node (its ``node_info`` result): one per certificate file,
    with ``status`` and ``problems``."""
    rows = []
    for item in node.get("certificates") or []:
        row = {
            "host": host,
            "profile": item.get("profile"),
            "path": item.get("path"),
            "kind": item.get("kind", "profile"),
            "status": None,
            "problems": [],
            "error": item.get("error"),
            "subject": item.get("subject"),
            "common_name": item.get("common_name"),
            "sans": item.get("sans"),
            "issuer": item.get("issuer"),
            "serial": item.get("serial"),
            "fingerprint": item.get("fingerprint"),
            "not_before": item.get("not_before"),
            "not_after": item.get("not_after"),
            "days_left": None,
            "chain_valid": item.get("chain_valid"),
            "chain_root": item.get("chain_root"),
            "key_path": item.get("key_path"),
            "key_match": item.get("key_match"),
            "modes": {"certificate": item.get("mode"), "key": item.get("key_mode"),
                      "chain": item.get("chain_mode")},
            "modes_ok": True,
            "ledger": None,
        }
        problems = row["problems"]
        if not item.get("exists"):
            row["status"] = "missing"
            problems.append("missing")
        elif item.get("error") or not item.get("not_after"):
            row["status"] = "unreadable"
            problems.append("unreadable")
        else:
            row["days_left"] = days_left(item["not_after"], now)
            row["status"] = expiry_status(item["not_after"], now, soon_seconds)
            if row["status"] == "expired":
                problems.append("expired")
            if item.get("not_before") and parse_time(item["not_before"]) > parse_time(now):
                problems.append("not_yet_valid")
            if not item.get("chain_valid"):
                problems.append("chain_invalid")
            if item.get("key_match") is False:
                problems.append("key_mismatch")
            elif item.get("key_match") is None and row["kind"] == "profile":
                problems.append("key_missing")
        mode_issues = mode_problems(item, item.get("expected_mode"),
                                    item.get("expected_key_mode"))
        if mode_issues:
            row["modes_ok"] = False
            row["mode_problems"] = mode_issues
            problems.append("modes")
        rows.append(row)
    return rows


def sort_rows(rows):
    """Most urgent first: no usable certificate, then fewest days left; then host, profile."""
    def key(row):
        days = row.get("days_left")
        return (0 if days is None else 1, days if days is not None else 0,
                STATUSES.index(row["status"]) if row.get("status") in STATUSES else 0,
                row.get("host") or "", row.get("profile") or "~", row.get("path") or "")
    return sorted(rows, key=key)


def _finding(kind, host=None, profile=None, path=None, serial=None, detail=""):
    return {"kind": kind, "host": host, "profile": profile, "path": path, "serial": serial,
            "detail": detail}


def cross_check(rows, ledger_rows, inventory_hosts, inspected_hosts):
    """Compare what the nodes hold with the ledger. Sets each row's ``ledger`` and returns
    the findings: certificates on a node the ledger does not know (or gives another host, or
    revoked/superseded), and valid ledger entries missing from their node."""
    findings = []
    by_fingerprint = {r["fingerprint"]: r for r in ledger_rows or [] if r.get("fingerprint")}
    present = set()
    for row in rows:
        if not row.get("fingerprint"):
            continue
        present.add((row["host"], row["fingerprint"]))
        entry = by_fingerprint.get(row["fingerprint"])
        if entry is None:
            row["ledger"] = {"status": "unknown"}
            findings.append(_finding(
                "unknown_to_ledger", row["host"], row["profile"], row["path"], row["serial"],
                "%s (issuer %s) is not in the zone's issuance ledger"
                % (row["subject"], row["issuer"])))
            continue
        row["ledger"] = {"status": entry.get("status"), "host": entry.get("host"),
                         "profile": entry.get("profile"), "issued_at": entry.get("issued_at"),
                         "revocation_reason": entry.get("revocation_reason")}
        if entry.get("host") != row["host"]:
            findings.append(_finding(
                "ledger_host_mismatch", row["host"], row["profile"], row["path"], row["serial"],
                "the ledger records it as issued to %s/%s" % (entry.get("host"),
                                                              entry.get("profile"))))
        if entry.get("status") == "revoked":
            findings.append(_finding(
                "revoked_in_use", row["host"], row["profile"], row["path"], row["serial"],
                "revoked %s (%s)" % (entry.get("revoked_at"), entry.get("revocation_reason"))))
        elif entry.get("status") == "superseded":
            findings.append(_finding(
                "superseded_in_use", row["host"], row["profile"], row["path"], row["serial"],
                "a newer certificate replaced it in the ledger"))
    inventory = set(inventory_hosts or [])
    inspected = set(inspected_hosts or [])
    for entry in ledger_rows or []:
        if entry.get("status") != "valid":
            continue
        host = entry.get("host")
        if host not in inventory:
            findings.append(_finding(
                "host_not_in_inventory", host, entry.get("profile"), None, entry.get("serial"),
                "valid until %s; prune it with playbooks/prune.yml" % entry.get("not_after")))
        elif host in inspected and (host, entry.get("fingerprint")) not in present:
            findings.append(_finding(
                "missing_from_node", host, entry.get("profile"), None, entry.get("serial"),
                "issued %s, valid until %s, not found on the node"
                % (entry.get("issued_at"), entry.get("not_after"))))
    return findings


def crl_section(ca_crl, node_crls, now, near_seconds, hosts_with_certificates=()):
    """CRL status of the zone: the CA's CRLs and every node's copy, each ``ok``, ``near``,
    ``past`` or ``missing``; the zone's status is the worst of the CA's and the copies
    that exist. Returns ``(section, findings)``."""
    findings = []
    ca_crl = ca_crl or {}
    ca = {"path": ca_crl.get("path"), "next_update": ca_crl.get("next_update"),
          "number": ca_crl.get("number"), "error": ca_crl.get("error")}
    ca["status"] = "unreadable" if ca["error"] else crl_status(ca["next_update"], now,
                                                               near_seconds)
    if ca["status"] in ("past", "near"):
        findings.append(_finding(
            "crl_" + ca["status"], None, None, ca["path"], None,
            "the CA's CRL %s its nextUpdate %s" % (
                "passed" if ca["status"] == "past" else "is close to", ca["next_update"])))
    nodes = {}
    for host in sorted(node_crls or {}):
        facts = node_crls[host] or {}
        entry = {"path": facts.get("path"), "next_update": facts.get("next_update"),
                 "number": facts.get("number"), "error": facts.get("error")}
        entry["status"] = ("unreadable" if entry["error"] else
                           crl_status(entry["next_update"], now, near_seconds))
        nodes[host] = entry
        if entry["status"] in ("past", "near"):
            findings.append(_finding(
                "crl_" + entry["status"], host, None, entry["path"], None,
                "the node's CRL copy %s its nextUpdate %s" % (
                    "passed" if entry["status"] == "past" else "is close to",
                    entry["next_update"])))
        elif entry["status"] == "missing" and host in hosts_with_certificates:
            findings.append(_finding("crl_missing", host, None, entry["path"], None,
                                     "the node holds zone certificates but no CRL"))
        if (entry["number"] is not None and ca["number"] is not None
                and entry["number"] < ca["number"]):
            findings.append(_finding(
                "crl_stale", host, None, entry["path"], None,
                "CRL number %s, the CA is at %s" % (entry["number"], ca["number"])))
    statuses = [ca["status"]] + [n["status"] for n in nodes.values() if n["status"] != "missing"]
    section = {"status": worst(statuses, CRL_STATUSES) or "missing",
               "next_update": min([e["next_update"] for e in [ca] + list(nodes.values())
                                   if e["next_update"]] or [None]),
               "near_seconds": near_seconds, "ca": ca, "nodes": nodes}
    return section, findings


def roots_findings(node_roots, zone_roots):
    """Nodes whose roots.pem differs from the zone's current roots (by fingerprint)."""
    findings = []
    wanted = sorted(zone_roots or [])
    if not wanted:
        return findings
    for host in sorted(node_roots or {}):
        have = node_roots[host]
        if have is None:
            continue  # no zone directory: the node has not joined the zone yet
        if sorted(have) != wanted:
            findings.append(_finding(
                "roots_differ", host, None, None, None,
                "roots.pem holds %s, the zone's roots are %s" % (
                    ", ".join(f[:16] for f in sorted(have)) or "nothing",
                    ", ".join(f[:16] for f in wanted))))
    return findings


def sort_findings(findings):
    return sorted(findings, key=lambda f: (FINDINGS.index(f["kind"]), f.get("host") or "",
                                           f.get("profile") or "", f.get("path") or "",
                                           f.get("serial") or ""))


def fleet_report(zone, hosts, nodes, ledger, now, soon_days=30, crl_near="1d",
                 fail_within=FAIL_WITHIN, renew_windows=None):
    """The whole report as JSON-ready data.

    ``hosts``: the zone's nodes in the inventory; ``nodes[host]``: that node's ``node_info``
    result (None, or one with ``failed``/``unreachable``, when it could not be inspected);
    ``ledger``: the CA host's ``ledger_info`` result (``rows``, ``crl``, ``cas``, ``phase``);
    ``now``: the report's time; ``fail_within``: the threshold of ``failures`` (a duration,
    or a percentage of each certificate's lifetime); ``renew_windows[host][profile]``: each
    profile's renew_before in seconds, shaded on the HTML page's timeline (``timeline``:
    coordinates for the page, left out of the JSON file).
    """
    threshold = fail_threshold(fail_within)
    now = parse_time(now)
    soon_seconds = int(soon_days) * DAY
    near_seconds = _parse.parse_duration(crl_near, "CRL warning window")
    ledger = ledger or {}
    ledger_rows = [r for r in ledger.get("rows") or [] if r.get("zone") in (None, zone)]
    host_list = list(hosts or [])
    rows, inspected, host_facts, findings = [], [], {}, []
    node_crls, node_roots = {}, {}
    for host in host_list:
        node = (nodes or {}).get(host)
        if not isinstance(node, dict) or node.get("failed") or node.get("unreachable") or \
                node.get("skipped") or "certificates" not in node:
            error = (node or {}).get("msg") if isinstance(node, dict) else None
            host_facts[host] = {"inspected": False, "error": error or "not inspected",
                                "certificates": 0}
            findings.append(_finding("not_inspected", host, detail=error or "not inspected"))
            continue
        inspected.append(host)
        host_rows = report_rows(host, node, now, soon_seconds)
        rows.extend(host_rows)
        host_facts[host] = {"inspected": True, "error": None,
                            "certificates": sum(1 for r in host_rows if r["fingerprint"])}
        node_crls[host] = node.get("crl")
        node_roots[host] = node.get("roots_bundle")
    ledger_error = ledger.get("msg") if ledger.get("failed") or ledger.get("unreachable") \
        else None
    findings.extend(cross_check(rows, ledger_rows, host_list, inspected) if not ledger_error
                    else [])
    holders = {h for h in inspected if host_facts[h]["certificates"]}
    crl, crl_findings = crl_section(ledger.get("crl"), node_crls, now, near_seconds, holders)
    findings.extend(crl_findings)
    zone_roots = [c["fingerprint"] for c in ledger.get("cas") or [] if c.get("trusted")]
    findings.extend(roots_findings(node_roots, zone_roots))
    rows = sort_rows(rows)
    findings = sort_findings(findings)
    report = {
        "zone": zone,
        "generated_at": iso(now),
        "soon_days": int(soon_days),
        "crl_near": crl_near,
        "hosts": host_facts,
        "certificates": rows,
        "findings": findings,
        "crl": crl,
        "cas": ledger.get("cas") or [],
        "phase": ledger.get("phase"),
        "ledger_error": ledger_error,
        # automatic rollbacks of rollouts (docs/rollout.md): what the probe saw, and when
        "rollbacks": [e for e in ledger.get("events") or []
                      if isinstance(e, dict) and e.get("zone") in (None, zone)],
    }
    report["zones"] = {zone: zone_summary(report, ledger_rows)}
    report["fail_within"] = str(fail_within)
    report["failures"] = failures(report, threshold)
    report["timeline"] = _timeline.timeline(report, renew_windows)
    return report


def zone_summary(report, ledger_rows):
    """Counts for the top of the report (one zone)."""
    rows = report["certificates"]
    by_status = dict.fromkeys(STATUSES, 0)
    for row in rows:
        by_status[row["status"]] += 1
    by_problem = dict.fromkeys(PROBLEMS, 0)
    for row in rows:
        for problem in row["problems"]:
            by_problem[problem] += 1
    findings = {}
    for finding in report["findings"]:
        findings[finding["kind"]] = findings.get(finding["kind"], 0) + 1
    ledger = dict.fromkeys(("valid", "revoked", "superseded"), 0)
    for entry in ledger_rows:
        if entry.get("status") in ledger:
            ledger[entry["status"]] += 1
    ledger["total"] = len(ledger_rows)
    dated = [r for r in rows if r["days_left"] is not None]
    soonest = dated[0] if dated else None
    hosts = report["hosts"]
    # critical: a profile's identity is unusable, a revoked certificate is in use, the CRL
    # ran out, or the ledger cannot be read; anything else worth a look is a warning
    # (certificates no profile describes only ever warn)
    broken = {"expired", "missing", "unreadable", "chain_invalid", "key_mismatch"}
    critical = (any(r["kind"] == "profile" and broken & set(r["problems"]) for r in rows)
                or findings.get("revoked_in_use") or report["crl"]["status"] in
                ("past", "unreadable") or report.get("ledger_error"))
    warning = (by_status["soon"] or any(r["problems"] for r in rows) or findings
               or report["crl"]["status"] in ("near", "missing"))
    return {
        "health": "critical" if critical else ("warning" if warning else "ok"),
        "hosts": len(hosts),
        "hosts_inspected": sum(1 for h in hosts.values() if h["inspected"]),
        "certificates": len(rows),
        "by_status": by_status,
        "problems": by_problem,
        "findings": findings,
        "ledger": ledger,
        "soonest": None if soonest is None else {
            "host": soonest["host"], "profile": soonest["profile"], "path": soonest["path"],
            "not_after": soonest["not_after"], "days_left": soonest["days_left"]},
        "crl_status": report["crl"]["status"],
        "crl_next_update": report["crl"]["next_update"],
        "phase": report.get("phase"),
    }


# --------------------------------------------------------------------------- exit status

def fail_threshold(value):
    """``trustzone_report_fail_within``: ``('seconds', n)`` for a duration (``7d``, ``12h``)
    or ``('share', f)`` for a percentage of each certificate's lifetime (``25%``)."""
    text = str(value).strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            share = 0.0
        if not 0 < share <= 100:
            raise TrustzoneError(
                "trustzone_report_fail_within %r is not a percentage from 1%% to 100%%"
                % (value,))
        return ("share", share / 100.0, text)
    try:
        return ("seconds", _parse.parse_duration(text, "trustzone_report_fail_within"), text)
    except TrustzoneError as exc:
        raise TrustzoneError("%s (or a percentage of the lifetime, like 25%%)" % exc) from None


def _left_text(seconds):
    seconds = max(int(seconds), 0)
    for unit, size in (("d", DAY), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def _inside(threshold, not_before, not_after, now):
    """``(inside, left seconds, threshold text)``: whether less than the threshold is left."""
    left = (parse_time(not_after) - now).total_seconds()
    kind, amount, text = threshold
    if kind == "seconds":
        return left < amount, left, text
    if not not_before:
        return False, left, text
    window = (parse_time(not_after) - parse_time(not_before)).total_seconds() * amount
    return left < window, left, "%s of its lifetime, %s" % (text, _left_text(window))


def _failure(kind, host, profile, path, line):
    return {"kind": kind, "host": host, "profile": profile, "path": path, "line": line}


def _certificate_failures(rows, threshold, now):
    out = []
    for row in rows:
        if row["kind"] != "profile":
            continue  # a certificate no profile describes only ever warns
        who = "%s/%s: %s" % (row["host"], row["profile"], row["path"])
        broken = [p for p in FAILURES if p in row["problems"]]
        if broken:
            parts = ["%s %s" % (p, row["not_after"]) if p == "expired" else
                     "%s: %s" % (p, row["error"]) if p == "unreadable" and row.get("error")
                     else p for p in broken]
            out.append(_failure(broken[0], row["host"], row["profile"], row["path"],
                                "%s %s" % (who, "; ".join(parts))))
            continue
        inside, left, text = _inside(threshold, row.get("not_before"), row["not_after"], now)
        if inside:
            out.append(_failure("expiring", row["host"], row["profile"], row["path"],
                                "%s expires %s, %s left (threshold %s)"
                                % (who, row["not_after"], _left_text(left), text)))
    return out


def _crl_failures(crl, near_text):
    out = []
    copies = [("CA host", None, crl.get("ca") or {})] + [
        (host, host, entry) for host, entry in sorted((crl.get("nodes") or {}).items())]
    for label, host, entry in copies:
        status, path = entry.get("status"), entry.get("path")
        if status == "unreadable":
            line = "%s: CRL %s unreadable: %s" % (label, path, entry.get("error"))
        elif status == "past":
            line = "%s: CRL %s past its nextUpdate %s" % (label, path, entry["next_update"])
        elif status == "near":
            line = "%s: CRL %s within %s of its nextUpdate %s" % (
                label, path, near_text, entry["next_update"])
        else:
            continue
        out.append(_failure("crl_" + status, host, None, path, line))
    return out


def failures(report, threshold):
    """What fails report.yml: one entry per finding (``kind``, ``host``, ``profile``,
    ``path`` and ``line``, the sentence printed), in ``FAILURES`` order. Empty for a zone
    that is safe to leave alone. ``threshold``: ``fail_threshold``'s answer."""
    now = parse_time(report["generated_at"])
    out = []
    if report.get("ledger_error"):
        out.append(_failure("ledger_unreadable", None, None, None,
                            "CA host: the issuance ledger could not be read: %s"
                            % report["ledger_error"]))
    for host, facts in sorted(report["hosts"].items()):
        if not facts["inspected"]:
            out.append(_failure("not_inspected", host, None, None,
                                "%s: not inspected: %s" % (host, facts["error"])))
    out.extend(_certificate_failures(report["certificates"], threshold, now))
    for finding in report["findings"]:
        if finding["kind"] == "revoked_in_use":
            out.append(_failure("revoked_in_use", finding["host"], finding["profile"],
                                finding["path"], "%s/%s: %s revoked in use: %s" % (
                                    finding["host"], finding["profile"], finding["path"],
                                    finding["detail"])))
    out.extend(_crl_failures(report["crl"], report.get("crl_near")))
    for ca in report.get("cas") or []:
        if not ca.get("trusted") or not ca.get("not_after"):
            continue
        inside, left, text = _inside(threshold, ca.get("not_before"), ca["not_after"], now)
        if left <= 0:
            line = "CA %s: %s expired %s" % (ca.get("name"), ca.get("subject"), ca["not_after"])
        elif inside:
            line = "CA %s: %s expires %s, %s left (threshold %s)" % (
                ca.get("name"), ca.get("subject"), ca["not_after"], _left_text(left), text)
        else:
            continue
        out.append(_failure("ca_expiring", None, None, None, line))
    return sorted(out, key=lambda f: (FAILURES.index(f["kind"]), f["host"] or "",
                                      f["profile"] or "", f["path"] or ""))
