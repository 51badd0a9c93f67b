"""_report: the fleet report, every pure function, with a fixed clock.

Only pytest and cryptography are needed (runs against Debian 12's cryptography 38.0.4 too).
"""

from __future__ import annotations

import copy
import datetime
import json

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _report as R
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

HOUR = datetime.timedelta(hours=1)
SOON = 30 * 86400
T = R.iso  # NOW -> '2025-06-01T12:00:00Z'


# --------------------------------------------------------------------------- helpers

def test_iso_and_parse_time_round_trip():
    assert R.iso(NOW) == "2025-06-01T12:00:00Z"
    assert R.iso(None) is None
    assert R.parse_time("2025-06-01T12:00:00Z") == NOW
    assert R.parse_time("2025-06-01T14:00:00+02:00") == NOW
    assert R.parse_time("2025-06-01T12:00:00") == NOW  # naive means UTC
    assert R.parse_time(NOW) is NOW
    assert R.parse_time(NOW.replace(tzinfo=None)) == NOW
    assert R.parse_time(None) is None


def test_parse_time_refuses_garbage():
    with pytest.raises(TrustzoneError, match="is not an ISO 8601 time"):
        R.parse_time("yesterday")


@pytest.mark.parametrize("delta, days", [
    (DAY * 10, 10), (DAY * 10 - datetime.timedelta(seconds=1), 9), (datetime.timedelta(0), 0),
    (-datetime.timedelta(seconds=1), -1), (-DAY, -1), (-DAY - HOUR, -2)])
def test_days_left_rounds_down(delta, days):
    assert R.days_left(NOW + delta, NOW) == days
    assert R.days_left(T(NOW + delta), T(NOW)) == days


@pytest.mark.parametrize("delta, status", [
    (-DAY, "expired"), (datetime.timedelta(0), "expired"),
    (datetime.timedelta(seconds=1), "soon"), (DAY * 30 - datetime.timedelta(seconds=1), "soon"),
    (DAY * 30, "ok"), (DAY * 300, "ok")])
def test_expiry_status(delta, status):
    assert R.expiry_status(T(NOW + delta), NOW, SOON) == status


@pytest.mark.parametrize("delta, status", [
    (None, "missing"), (-HOUR, "past"), (datetime.timedelta(0), "past"),
    (HOUR, "near"), (DAY - datetime.timedelta(seconds=1), "near"), (DAY, "ok"), (7 * DAY, "ok")])
def test_crl_status(delta, status):
    value = None if delta is None else T(NOW + delta)
    assert R.crl_status(value, NOW, 86400) == status


def test_worst_and_mode_text():
    assert R.worst(["ok", "near", "past"], R.CRL_STATUSES) == "past"
    assert R.worst(["ok", "soon"], R.STATUSES) == "soon"
    assert R.worst(["strange"], R.STATUSES) is None
    assert R.mode_text(0o644) == "0644"
    assert R.mode_text(0o600) == "0600"
    assert R.mode_text(None) is None


# --------------------------------------------------------------------------- node / CA side

@pytest.mark.parametrize("facts, mode, key_mode, problems", [
    ({"mode": "0644", "key_mode": "0600", "chain_mode": "0644"}, "0644", "0600", []),
    ({"mode": "0640", "key_mode": "0644", "chain_mode": "0644"}, "0644", "0600",
     ["certificate mode 0640, profile wants 0644", "key mode 0644, profile wants 0600"]),
    ({"mode": "0644", "key_mode": None, "chain_mode": None}, "0644", "0600", []),
    ({"mode": "0644", "key_mode": "0600"}, None, None, []),
    ({"mode": "0666", "key_mode": "0604", "chain_mode": "0644"}, None, None,
     ["certificate mode 0666: anyone may write it", "key mode 0604: anyone may read it"]),
    ({"mode": "0644", "key_mode": "0640"}, None, None, []),
])
def test_mode_problems(facts, mode, key_mode, problems):
    assert R.mode_problems(facts, mode, key_mode) == problems


def test_crl_facts(zone, other_zone):
    first = C.build_crl(zone.cert, zone.key, [(0x1234, NOW - DAY, "key_compromise"),
                                              (0x99, NOW - DAY, "unspecified")],
                        NOW - HOUR, NOW + 7 * DAY, 4)
    second = C.build_crl(other_zone.cert, other_zone.key, [], NOW - HOUR, NOW + 2 * DAY, 5)
    facts = R.crl_facts([first, second], [zone.cert], NOW)
    assert facts == {
        "crls": [
            {"issuer": zone.cert.subject.rfc4514_string(), "number": 4,
             "this_update": "2025-06-01T11:00:00Z", "next_update": "2025-06-08T12:00:00Z",
             "revoked": 2, "signed_by": C.fingerprint(zone.cert)},
            {"issuer": other_zone.cert.subject.rfc4514_string(), "number": 5,
             "this_update": "2025-06-01T11:00:00Z", "next_update": "2025-06-03T12:00:00Z",
             "revoked": 0, "signed_by": None},
        ],
        "next_update": "2025-06-03T12:00:00Z",
        "number": 5,
    }
    assert R.crl_facts([], [zone.cert], NOW) == {"crls": [], "next_update": None,
                                                 "number": None}


# --------------------------------------------------------------------------- fleet report

def item(profile="server", host_dir="/etc/trustzone/prod", exists=True, error=None,
         days=300, fingerprint="aa", serial="1f", chain_valid=True, key_match=True,
         mode="0644", key_mode="0600", chain_mode="0644", kind="profile", not_before=None):
    """One certificate entry as node_info returns it."""
    name = profile or "extra"
    entry = {"path": "%s/%s.crt" % (host_dir, name), "profile": profile, "kind": kind,
             "exists": exists, "error": error, "key_path": "%s/%s.key" % (host_dir, name),
             "chain_path": None, "mode": mode if exists else None, "owner": "root:root",
             "key_mode": key_mode, "key_owner": "root:root", "chain_mode": chain_mode,
             "expected_mode": "0644" if kind == "profile" else None,
             "expected_key_mode": "0600" if kind == "profile" else None, "key_error": None}
    if exists and not error:
        entry.update({
            "subject": "CN=%s" % name, "common_name": name,
            "sans": {"dns": [name], "ip": []}, "issuer": "CN=root", "serial": serial,
            "fingerprint": fingerprint,
            "not_before": not_before or T(NOW - DAY), "not_after": T(NOW + DAY * days),
            "days_left": days, "key_type": "EC secp256r1", "extended_key_usage": [],
            "is_ca": False, "chain_valid": chain_valid, "chain_root": "ff" if chain_valid
            else None, "chain_length": 2 if chain_valid else None, "key_match": key_match})
    return entry


def test_report_rows_statuses_and_problems():
    node = {"certificates": [
        item("server", days=300),
        item("client", days=10, fingerprint="bb"),
        item("old", days=-3, fingerprint="cc", chain_valid=False, key_match=False),
        item("gone", exists=False),
        item("bad", error="/x: no PEM certificate found"),
        item("loose", key_mode="0644", fingerprint="dd"),
        item("nokey", key_match=None, fingerprint="ee"),
        item(None, kind="extra", key_match=None, fingerprint="ff", key_mode=None),
        item("future", fingerprint="11", not_before=T(NOW + DAY)),
    ]}
    rows = R.report_rows("web1", node, NOW, SOON)
    got = {(r["profile"] or r["kind"]): (r["status"], r["days_left"], r["problems"])
           for r in rows}
    assert got == {
        "server": ("ok", 300, []),
        "client": ("soon", 10, []),
        "old": ("expired", -3, ["expired", "chain_invalid", "key_mismatch"]),
        "gone": ("missing", None, ["missing"]),
        "bad": ("unreadable", None, ["unreadable"]),
        "loose": ("ok", 300, ["modes"]),
        "nokey": ("ok", 300, ["key_missing"]),
        "extra": ("ok", 300, []),
        "future": ("ok", 300, ["not_yet_valid"]),
    }
    loose = next(r for r in rows if r["profile"] == "loose")
    assert loose["modes_ok"] is False
    assert loose["mode_problems"] == ["key mode 0644, profile wants 0600"]
    assert loose["modes"] == {"certificate": "0644", "key": "0644", "chain": "0644"}
    server = rows[0]
    assert server == {
        "host": "web1", "profile": "server", "path": "/etc/trustzone/prod/server.crt",
        "kind": "profile", "status": "ok", "problems": [], "error": None,
        "subject": "CN=server", "common_name": "server", "sans": {"dns": ["server"], "ip": []},
        "issuer": "CN=root", "serial": "1f", "fingerprint": "aa",
        "not_before": "2025-05-31T12:00:00Z", "not_after": "2026-03-28T12:00:00Z",
        "days_left": 300, "chain_valid": True, "chain_root": "ff",
        "key_path": "/etc/trustzone/prod/server.key", "key_match": True,
        "modes": {"certificate": "0644", "key": "0600", "chain": "0644"}, "modes_ok": True,
        "ledger": None}


def test_sort_rows_puts_missing_first_then_fewest_days():
    rows = [
        {"host": "b", "profile": "server", "path": "p", "days_left": 30, "status": "ok"},
        {"host": "a", "profile": "server", "path": "p", "days_left": 30, "status": "ok"},
        {"host": "c", "profile": "client", "path": "p", "days_left": -2, "status": "expired"},
        {"host": "c", "profile": "server", "path": "p", "days_left": None, "status": "missing"},
        {"host": "a", "profile": "client", "path": "p", "days_left": None,
         "status": "unreadable"},
        {"host": "a", "profile": None, "path": "q", "days_left": 30, "status": "ok"},
    ]
    order = [(r["host"], r["profile"]) for r in R.sort_rows(rows)]
    assert order == [("a", "client"), ("c", "server"), ("c", "client"), ("a", "server"),
                     ("a", None), ("b", "server")]


def ledger_row(host, profile, fingerprint, status="valid", serial=None, zone="prod"):
    return {"serial": serial or "s-" + fingerprint, "zone": zone, "host": host,
            "profile": profile, "subject": "CN=%s" % host, "sans": {"dns": [], "ip": []},
            "not_before": T(NOW - DAY), "not_after": T(NOW + 300 * DAY),
            "fingerprint": fingerprint, "issuer": "CN=root", "issuer_fingerprint": "ff",
            "issued_at": T(NOW - DAY), "status": status,
            "revocation_reason": "key_compromise" if status == "revoked" else None,
            "revoked_at": T(NOW - HOUR) if status == "revoked" else None}


def rows_for(host, *pairs):
    return [{"host": host, "profile": p, "path": "/z/%s.crt" % (p or "x"), "serial": "s-" + f,
             "fingerprint": f, "subject": "CN=%s" % host, "issuer": "CN=root", "ledger": None}
            for p, f in pairs]


def test_cross_check_finds_both_directions_and_the_rest():
    rows = (rows_for("web1", ("server", "a1"), ("client", "a2"), (None, "zz"))
            + rows_for("web2", ("server", "b1"), ("client", "a3"))
            + rows_for("web3", ("server", "c1"), ("client", "c2")))
    ledger = [
        ledger_row("web1", "server", "a1"), ledger_row("web1", "client", "a2"),
        ledger_row("web2", "server", "b0", status="superseded"),
        ledger_row("web2", "server", "b1", status="revoked"),
        ledger_row("web1", "client", "a3", status="superseded"),
        ledger_row("web2", "client", "b2"),            # valid, not on web2: missing
        ledger_row("web3", "server", "c1", status="superseded"),
        ledger_row("web3", "server", "c9"),            # valid, not on web3: missing
        ledger_row("web3", "client", "c2"),
        ledger_row("gone", "server", "g1"),            # host left the inventory
        ledger_row("gone", "client", "g2", status="revoked"),
        ledger_row("web4", "server", "d1"),            # web4 not inspected: no finding
    ]
    findings = R.cross_check(rows, ledger, ["web1", "web2", "web3", "web4"],
                             ["web1", "web2", "web3"])
    got = sorted((f["kind"], f["host"], f["profile"], f["serial"]) for f in findings)
    assert got == sorted([
        ("unknown_to_ledger", "web1", None, "s-zz"),
        ("revoked_in_use", "web2", "server", "s-b1"),
        ("ledger_host_mismatch", "web2", "client", "s-a3"),
        ("superseded_in_use", "web2", "client", "s-a3"),
        ("missing_from_node", "web2", "client", "s-b2"),
        ("superseded_in_use", "web3", "server", "s-c1"),
        ("missing_from_node", "web3", "server", "s-c9"),
        ("host_not_in_inventory", "gone", "server", "s-g1"),
    ])
    by_fp = {r["fingerprint"]: r["ledger"] for r in rows}
    assert by_fp["zz"] == {"status": "unknown"}
    assert by_fp["a1"] == {"status": "valid", "host": "web1", "profile": "server",
                           "issued_at": T(NOW - DAY), "revocation_reason": None}
    assert by_fp["b1"]["status"] == "revoked"
    assert by_fp["b1"]["revocation_reason"] == "key_compromise"
    unknown = next(f for f in findings if f["kind"] == "unknown_to_ledger")
    assert unknown == {"kind": "unknown_to_ledger", "host": "web1", "profile": None,
                       "path": "/z/x.crt", "serial": "s-zz",
                       "detail": "CN=web1 (issuer CN=root) is not in the zone's issuance "
                                 "ledger"}
    missing = next(f for f in findings if f["serial"] == "s-b2")
    assert missing["detail"] == ("issued 2025-05-31T12:00:00Z, valid until "
                                 "2026-03-28T12:00:00Z, not found on the node")


def test_cross_check_without_rows_or_ledger():
    assert R.cross_check([], [], ["a"], ["a"]) == []
    rows = rows_for("a", ("server", "x"))
    assert [f["kind"] for f in R.cross_check(rows, None, ["a"], ["a"])] == ["unknown_to_ledger"]
    # a row without a fingerprint (missing file) is not cross-checked
    assert R.cross_check([{"host": "a", "fingerprint": None}], [], ["a"], ["a"]) == []


def crl(next_delta, number=3, error=None, path="/p/crl.pem"):
    return {"path": path, "next_update": None if next_delta is None else T(NOW + next_delta),
            "number": number, "error": error}


def test_crl_section_zone_status_is_the_worst_copy():
    section, findings = R.crl_section(
        crl(5 * DAY), {"web1": crl(5 * DAY), "web2": crl(-HOUR, number=2),
                       "web3": crl(None, number=None), "web4": crl(None, number=None)},
        NOW, 86400, hosts_with_certificates={"web3"})
    assert section["status"] == "past"
    assert section["next_update"] == T(NOW - HOUR)
    assert section["ca"] == {"path": "/p/crl.pem", "next_update": T(NOW + 5 * DAY),
                             "number": 3, "error": None, "status": "ok"}
    assert {h: n["status"] for h, n in section["nodes"].items()} == {
        "web1": "ok", "web2": "past", "web3": "missing", "web4": "missing"}
    assert [(f["kind"], f["host"]) for f in findings] == [
        ("crl_past", "web2"), ("crl_stale", "web2"), ("crl_missing", "web3")]
    assert findings[0]["detail"] == ("the node's CRL copy passed its nextUpdate "
                                     "2025-06-01T11:00:00Z")


def test_crl_section_near_ca_and_unreadable_copy():
    section, findings = R.crl_section(crl(HOUR), {"web1": crl(None, error="bad CRL")}, NOW,
                                      2 * 3600)
    assert section["ca"]["status"] == "near"
    assert section["nodes"]["web1"]["status"] == "unreadable"
    assert section["status"] == "unreadable"
    assert [(f["kind"], f["host"]) for f in findings] == [("crl_near", None)]
    assert findings[0]["detail"] == ("the CA's CRL is close to its nextUpdate "
                                     "2025-06-01T13:00:00Z")
    # the same CRL with a smaller window is fine
    section, findings = R.crl_section(crl(HOUR), {}, NOW, 1800)
    assert (section["status"], findings) == ("ok", [])
    # no CRL anywhere
    section, findings = R.crl_section(None, {}, NOW, 1800)
    assert (section["status"], section["next_update"], findings) == ("missing", None, [])


def test_roots_findings():
    assert R.roots_findings({"a": ["f1"], "b": None, "c": ["f1", "f2"], "d": []},
                            ["f1"]) == [
        {"kind": "roots_differ", "host": "c", "profile": None, "path": None, "serial": None,
         "detail": "roots.pem holds f1, f2, the zone's roots are f1"},
        {"kind": "roots_differ", "host": "d", "profile": None, "path": None, "serial": None,
         "detail": "roots.pem holds nothing, the zone's roots are f1"}]
    assert R.roots_findings({"a": ["x"]}, []) == []


def test_sort_findings_by_kind_then_host():
    findings = [R._finding("crl_near", "b"), R._finding("unknown_to_ledger", "b"),
                R._finding("crl_near", None), R._finding("not_inspected", "z"),
                R._finding("unknown_to_ledger", "a")]
    assert [(f["kind"], f["host"]) for f in R.sort_findings(findings)] == [
        ("not_inspected", "z"), ("unknown_to_ledger", "a"), ("unknown_to_ledger", "b"),
        ("crl_near", None), ("crl_near", "b")]


def ledger_info(rows, crl_next=7 * DAY, cas=None):
    return {"rows": rows, "phase": "stable",
            "cas": cas if cas is not None else [
                {"name": "root", "fingerprint": "ff", "subject": "CN=root",
                 "not_after": T(NOW + 3000 * DAY), "days_left": 3000, "trusted": True,
                 "signing": True}],
            "crl": {"path": "/var/lib/trustzone/prod/crl.pem",
                    "next_update": T(NOW + crl_next), "number": 2, "error": None}}


def node_info(*items, crl_next=7 * DAY, roots=("ff",)):
    return {"certificates": list(items),
            "crl": {"path": "/etc/trustzone/prod/crl.pem", "exists": True, "error": None,
                    "next_update": T(NOW + crl_next), "number": 2, "crls": []},
            "roots_bundle": list(roots)}


def test_fleet_report_healthy_zone():
    nodes = {"web1": node_info(item("server", fingerprint="a1"),
                               item("client", fingerprint="a2", days=200)),
             "web2": node_info(item("server", fingerprint="b1", days=100))}
    ledger = ledger_info([ledger_row("web1", "server", "a1"), ledger_row("web1", "client", "a2"),
                          ledger_row("web2", "server", "b1"),
                          ledger_row("web9", "server", "x1", zone="other")])
    report = R.fleet_report("prod", ["web1", "web2"], nodes, ledger, NOW)
    assert [(r["host"], r["profile"], r["days_left"]) for r in report["certificates"]] == [
        ("web2", "server", 100), ("web1", "client", 200), ("web1", "server", 300)]
    assert report["findings"] == []
    assert report["hosts"] == {"web1": {"inspected": True, "error": None, "certificates": 2},
                               "web2": {"inspected": True, "error": None, "certificates": 1}}
    assert (report["zone"], report["generated_at"], report["soon_days"], report["crl_near"],
            report["phase"], report["ledger_error"]) == (
        "prod", "2025-06-01T12:00:00Z", 30, "1d", "stable", None)
    assert report["zones"] == {"prod": {
        "health": "ok", "hosts": 2, "hosts_inspected": 2, "certificates": 3,
        "by_status": {"unreadable": 0, "missing": 0, "expired": 0, "soon": 0, "ok": 3},
        "problems": dict.fromkeys(R.PROBLEMS, 0), "findings": {},
        "ledger": {"valid": 3, "revoked": 0, "superseded": 0, "total": 3},
        "soonest": {"host": "web2", "profile": "server",
                    "path": "/etc/trustzone/prod/server.crt",
                    "not_after": T(NOW + 100 * DAY), "days_left": 100},
        "crl_status": "ok", "crl_next_update": T(NOW + 7 * DAY), "phase": "stable"}}


def test_fleet_report_lists_this_zones_rollbacks():
    nodes = {"web1": node_info(item("server", fingerprint="a1"))}
    ledger = ledger_info([ledger_row("web1", "server", "a1")])
    event = {"zone": "prod", "host": "web1", "profile": "server", "event": "rolled_back",
             "fingerprint": "b1", "restored_fingerprint": "a1", "at": T(NOW),
             "detail": "web1:8443: no connection: Connection refused"}
    ledger["events"] = [event, dict(event, zone="other", host="web9")]
    report = R.fleet_report("prod", ["web1"], nodes, ledger, NOW)
    assert report["rollbacks"] == [event]
    assert R.fleet_report("prod", ["web1"], nodes, ledger_info([]), NOW)["rollbacks"] == []


def test_fleet_report_with_every_kind_of_trouble():
    nodes = {
        "web1": node_info(item("server", fingerprint="a1", days=5),
                          item("client", exists=False),
                          item(None, kind="extra", fingerprint="rogue", key_match=None),
                          crl_next=HOUR),
        "web2": {"failed": True, "msg": "web2: unreachable"},
        "web3": node_info(item("server", fingerprint="c1"), roots=["ee"]),
    }
    ledger = ledger_info([ledger_row("web1", "server", "a1"), ledger_row("web1", "client", "a2"),
                          ledger_row("web3", "server", "c1")])
    report = R.fleet_report("prod", ["web1", "web2", "web3", "web4"], nodes, ledger, NOW,
                            soon_days=10, crl_near="2h")
    assert [(f["kind"], f["host"], f["profile"]) for f in report["findings"]] == [
        ("not_inspected", "web2", None), ("not_inspected", "web4", None),
        ("unknown_to_ledger", "web1", None), ("missing_from_node", "web1", "client"),
        ("roots_differ", "web3", None), ("crl_near", "web1", None)]
    assert report["hosts"]["web2"] == {"inspected": False, "error": "web2: unreachable",
                                       "certificates": 0}
    assert report["hosts"]["web4"] == {"inspected": False, "error": "not inspected",
                                       "certificates": 0}
    summary = report["zones"]["prod"]
    assert summary["health"] == "critical"
    assert summary["by_status"] == {"unreadable": 0, "missing": 1, "expired": 0, "soon": 1,
                                    "ok": 2}
    assert summary["findings"] == {"not_inspected": 2, "unknown_to_ledger": 1,
                                   "missing_from_node": 1, "roots_differ": 1, "crl_near": 1}
    assert summary["crl_status"] == "near"
    assert [(r["host"], r["profile"], r["status"]) for r in report["certificates"]] == [
        ("web1", "client", "missing"), ("web1", "server", "soon"), ("web1", None, "ok"),
        ("web3", "server", "ok")]


def test_fleet_report_when_the_ledger_could_not_be_read():
    nodes = {"web1": node_info(item("server", fingerprint="a1"))}
    report = R.fleet_report("prod", ["web1"], nodes,
                            {"failed": True, "msg": "ledger.db: the issuance ledger is damaged"},
                            NOW)
    assert report["ledger_error"] == "ledger.db: the issuance ledger is damaged"
    assert report["findings"] == []  # nothing to cross-check against
    assert report["cas"] == []
    assert report["crl"]["ca"]["status"] == "missing"
    assert report["zones"]["prod"]["health"] == "critical"


def test_fleet_report_warning_and_bad_window():
    nodes = {"web1": node_info(item("server", fingerprint="a1", days=20))}
    ledger = ledger_info([ledger_row("web1", "server", "a1")])
    assert R.fleet_report("prod", ["web1"], nodes, ledger, NOW)["zones"]["prod"]["health"] == \
        "warning"
    with pytest.raises(TrustzoneError, match="CRL warning window"):
        R.fleet_report("prod", ["web1"], nodes, ledger, NOW, crl_near="soon")


def test_health_of_certificates_no_profile_describes_is_at_most_a_warning():
    nodes = {"web1": node_info(item("server", fingerprint="a1"),
                               item(None, kind="extra", fingerprint="x", days=-1,
                                    chain_valid=False, key_match=False))}
    ledger = ledger_info([ledger_row("web1", "server", "a1")])
    report = R.fleet_report("prod", ["web1"], nodes, ledger, NOW)
    assert report["certificates"][0]["problems"] == ["expired", "chain_invalid",
                                                     "key_mismatch"]
    assert report["zones"]["prod"]["health"] == "warning"
    # the same trouble on a profile's certificate is critical
    nodes = {"web1": node_info(item("server", fingerprint="a1", chain_valid=False))}
    report = R.fleet_report("prod", ["web1"], nodes, ledger, NOW)
    assert report["zones"]["prod"]["health"] == "critical"


def test_zone_summary_without_dated_rows():
    report = {"certificates": [], "findings": [], "hosts": {},
              "crl": {"status": "ok", "next_update": None}, "phase": None}
    summary = R.zone_summary(report, [])
    assert summary["soonest"] is None
    assert summary["health"] == "ok"
    assert summary["ledger"] == {"valid": 0, "revoked": 0, "superseded": 0, "total": 0}


def test_report_is_plain_json():
    report = R.fleet_report("prod", ["web1"], {"web1": node_info(item("server"))},
                            ledger_info([]), NOW)
    assert json.loads(json.dumps(report)) == report
    assert copy.deepcopy(report) == report
