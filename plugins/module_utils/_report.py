# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The fleet report and the rollout plan: what the zone holds, and what a run would change.

Pure functions. Two halves:

* node and CA side (``certificate_facts``, ``crl_facts``, ``mode_problems``): facts about
  parsed certificates, keys and CRLs, used by the ``node_info`` and ``ledger_info`` modules
  (so nothing here may need more than cryptography 38.0.4);
* controller side (``fleet_report``, ``rollout_plan``, ``plan_lines``): plain data in (what
  those modules and the node/sign/zone_root modules returned, the ledger's rows, ``now``),
  plain JSON-ready data out. No file, network or Ansible I/O happens here.

Times are ISO 8601 UTC strings (``2025-06-01T12:00:00Z``) everywhere in the output.
"""

from __future__ import annotations

import datetime

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

UTC = datetime.timezone.utc
ISO = "%Y-%m-%dT%H:%M:%SZ"
DAY = 86400

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
# Reasons that mean "there is no usable certificate yet": the CA issues rather than renews.
ISSUE_REASONS = ("missing_certificate", "unreadable_certificate")


# --------------------------------------------------------------------------- small helpers

def iso(value):
    return value.astimezone(UTC).strftime(ISO) if value is not None else None


def parse_time(value):
    """An aware UTC datetime from an ISO string (``...Z`` or with an offset) or datetime."""
    if value is None or isinstance(value, datetime.datetime):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise TrustzoneError("%r is not an ISO 8601 time" % (value,),
                             fix="write it like 2025-06-01T12:00:00Z") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def days_left(not_after, now):
    """Whole days until ``not_after``, rounded down (negative once expired), as the node
    module counts them."""
    return int((parse_time(not_after) - parse_time(now)).total_seconds() // DAY)


def expiry_status(not_after, now, soon_seconds):
    """``expired`` (at or past notAfter), ``soon`` (less than ``soon_seconds`` left) or ``ok``."""
    left = (parse_time(not_after) - parse_time(now)).total_seconds()
    if left <= 0:
        return "expired"
    if left < soon_seconds:
        return "soon"
    return "ok"


def crl_status(next_update, now, near_seconds):
    """``past`` (at or past nextUpdate: relying parties that check it refuse every client),
    ``near`` (less than ``near_seconds`` left), ``ok``, or ``missing`` without a CRL."""
    if next_update is None:
        return "missing"
    left = (parse_time(next_update) - parse_time(now)).total_seconds()
    if left <= 0:
        return "past"
    if left < near_seconds:
        return "near"
    return "ok"


def worst(values, order):
    ranked = [v for v in values if v in order]
    return min(ranked, key=order.index) if ranked else None


def mode_text(mode):
    return None if mode is None else "%04o" % mode


# --------------------------------------------------------------------------- node / CA side

def certificate_facts(cert, chain, roots, key, now):
    """Facts about one parsed certificate: names, validity, chain and key.

    ``chain``: intermediates to try (the full-chain file's extra certificates and the zone's
    intermediates); ``roots``: the zone's roots; ``key``: the private key found beside it, or
    None. ``key_match`` is None when there is no key to compare with.
    """
    path = C.chain_to(cert, chain or [], roots or [])
    facts = {
        "subject": C.subject_text(cert),
        "common_name": C.common_name(cert),
        "sans": C.names_of(cert),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": "%x" % cert.serial_number,
        "fingerprint": C.fingerprint(cert),
        "not_before": iso(C.not_before(cert)),
        "not_after": iso(C.not_after(cert)),
        "days_left": days_left(C.not_after(cert), now),
        "key_type": C.key_spec_text(C.describe_key(cert.public_key())),
        "extended_key_usage": C.extended_key_usages_of(cert),
        "is_ca": bool((C.basic_constraints_of(cert) or (False, None))[0]),
        "chain_valid": path is not None,
        "chain_root": C.fingerprint(path[-1]) if path else None,
        "chain_length": len(path) if path else None,
        "key_match": None if key is None else C.same_public_key(key, cert),
    }
    return facts


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


def fleet_report(zone, hosts, nodes, ledger, now, soon_days=30, crl_near="1d"):
    """The whole report as JSON-ready data.

    ``hosts``: the zone's nodes in the inventory; ``nodes[host]``: that node's ``node_info``
    result (None, or one with ``failed``/``unreachable``, when it could not be inspected);
    ``ledger``: the CA host's ``ledger_info`` result (``rows``, ``crl``, ``cas``, ``phase``);
    ``now``: the report's time.
    """
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
    }
    report["zones"] = {zone: zone_summary(report, ledger_rows)}
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


# --------------------------------------------------------------------------- rollout plan

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


def merge_results(results):
    """One node (or trust role) result from the several a run registered in turn - a root
    rotation inspects a node once per phase. Requests per profile from the latest result
    that asks for it; files and anchor changes of all of them; a failure of the last one
    wins. None when there is nothing usable."""
    results = [r for r in results or [] if isinstance(r, dict)]
    if results and _failed(results[-1]):
        return results[-1]
    usable = [r for r in results if _usable(r)]
    if not usable:
        return next((r for r in reversed(results) if _failed(r)), None)
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
    results = [r for r in results or [] if isinstance(r, dict)]
    if results and _failed(results[-1]):
        return results[-1]
    usable = [r for r in results if _usable(r)]
    if not usable:
        return next((r for r in reversed(results) if _failed(r)), None)
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
