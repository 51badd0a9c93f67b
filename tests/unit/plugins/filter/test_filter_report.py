"""Filters trustzone.pki.fleet_report, rollout_plan and plan_summary (reading hostvars), and
the HTML template of playbooks/report.yml rendered with Jinja2 as Ansible renders it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import pytest
from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import FilterModule as CoreFilters

from ansible_collections.trustzone.pki.plugins.filter import report as F
from ansible_collections.trustzone.pki.plugins.module_utils import _zonecheck as ZC

REPO = Path(__file__).resolve().parents[4]
NOW = "2025-06-01T12:00:00Z"


def node_info(host, fingerprint, cn=None, days_after="2026-03-28T12:00:00Z"):
    return {"changed": False, "certificates": [{
        "path": "/etc/trustzone/prod/server.crt", "profile": "server", "kind": "profile",
        "exists": True, "error": None, "key_path": "/etc/trustzone/prod/server.key",
        "mode": "0644", "key_mode": "0600", "chain_mode": "0644", "expected_mode": "0644",
        "expected_key_mode": "0600", "subject": "CN=%s" % (cn or host),
        "common_name": cn or host, "sans": {"dns": [host], "ip": []}, "issuer": "CN=root",
        "serial": "1" + fingerprint, "fingerprint": fingerprint,
        "not_before": "2025-05-01T12:00:00Z", "not_after": days_after, "chain_valid": True,
        "chain_root": "ff", "key_match": True}],
        "crl": {"path": "/etc/trustzone/prod/crl.pem", "exists": True, "error": None,
                "next_update": "2025-06-05T12:00:00Z", "number": 1, "crls": []},
        "roots_bundle": ["ff"]}


LEDGER = {"changed": False, "rows": [
    {"serial": "1a1", "zone": "prod", "host": "web1", "profile": "server", "fingerprint": "a1",
     "status": "valid", "issued_at": "2025-05-01T12:00:00Z", "not_after": "2026-03-28T12:00:00Z"},
    {"serial": "1b1", "zone": "prod", "host": "web2", "profile": "server", "fingerprint": "b1",
     "status": "valid", "issued_at": "2025-05-01T12:00:00Z", "not_after": "2026-03-28T12:00:00Z"}],
    "cas": [{"name": "root", "fingerprint": "ff", "subject": "CN=root",
             "not_after": "2035-01-01T00:00:00Z", "days_left": 3500, "trusted": True,
             "signing": True}],
    "phase": "stable",
    "crl": {"path": "/var/lib/trustzone/prod/crl.pem", "next_update": "2025-06-05T12:00:00Z",
            "number": 1, "error": None}}


def hostvars(**extra):
    hv = {"ca": {"trustzone_name": "prod", "__trustzone_report_ledger": LEDGER},
          "web1": {"__trustzone_report_node": node_info("web1", "a1")},
          "web2": {"__trustzone_report_node": node_info("web2", "b1",
                                                        cn="<script>alert(1)</script>",
                                                        days_after="2025-06-03T12:00:00Z")}}
    for host, values in extra.items():
        hv.setdefault(host, {}).update(values)
    return hv


def test_filter_module_exports():
    assert F.FilterModule().filters() == {"fleet_report": F.fleet_report,
                                          "rollout_plan": F.rollout_plan,
                                          "plan_summary": F.plan_summary,
                                          "zone_settled": F.zone_settled}


def test_zone_settled_reads_the_check_round_from_hostvars():
    fp = "aa" * 32
    ca = {"roots": ["R"], "issuer": "I", "crl": "C", "would_change": False,
          "ledger_valid": {"n1": {"server": [fp]}}}
    node = {"files": [], "requests": {}, "installed": {"server": {"fingerprint": fp}},
            "checked_against": ZC.checked_digest(["R"], ["I"], "C")}
    hv = {"ca": {"trustzone_ca_root": ca}, "n1": {"__trustzone_certs_node": node}}
    assert F.zone_settled("ca", hv, ["ca", "n1"], ["n1"]) == {"settled": True, "why": []}
    hv["n1"]["trustzone_stores_java"] = True
    assert F.zone_settled("ca", hv, ["ca", "n1"], ["n1"]) == {
        "settled": False, "why": ["n1 keeps Java, NSS or exported stores"]}


def test_fleet_report_reads_hostvars():
    report = F.fleet_report(["web1", "web2", "web3"], hostvars(), "ca", now=NOW)
    assert report["zone"] == "prod"
    assert [(r["host"], r["status"]) for r in report["certificates"]] == [
        ("web2", "soon"), ("web1", "ok")]
    assert report["hosts"]["web3"] == {"inspected": False, "error": "not inspected",
                                       "certificates": 0}
    assert json.loads(json.dumps(report)) == report


def test_fleet_report_errors_are_filter_errors():
    with pytest.raises(AnsibleFilterError, match="fleet_report: CRL warning window"):
        F.fleet_report(["web1"], hostvars(), "ca", crl_near="later", now=NOW)


def test_rollout_plan_reads_results_and_reload_settings():
    request = {"csr": None, "reasons": [{"reason": "expiring", "detail": "5d left"}]}
    hv = hostvars(
        ca={"trustzone_ca_root": {"phase": "stable", "root": {
            "fingerprint": "f" * 64, "subject": "CN=root", "not_after": "2035-01-01T00:00:00Z",
            "days_left": 3500}, "next": None, "crl_next_update": "2025-06-05T12:00:00Z",
            "crl_signed": None, "created": False}},
        web1={"__trustzone_certs_node": {"dir": "/etc/trustzone/prod", "files": [],
                                         "requests": {"server": request}, "identities": {}},
              "__trustzone_certs_signed": {"changed": True, "refused": {}, "would_issue": {}},
              "trustzone_certs_reload_services": ["nginx"]},
        web2={"__trustzone_certs_node": {"dir": "/etc/trustzone/prod", "files": [],
                                         "requests": {}, "identities": {}},
              "trustzone_trust_result": {"skipped": True}})
    plan = F.rollout_plan(["web1", "web2"], hv, "ca", now=NOW)
    assert plan["certificates"]["by_reason"] == {"expiring": 1}
    assert plan["reload"]["by_host"] == {"web1": {"services": ["nginx"], "commands": []}}
    assert plan["ca"]["roots"][0]["state"] == "current"
    lines = F.plan_summary(plan)
    assert lines[1] == "Certificates: 1 (0 issued, 1 renewed)"
    assert "Reload: web1 (nginx)" in lines
    # what earlier plays of the run registered (plan_step.yml) is merged in
    hv["web2"]["__trustzone_plan_steps"] = [
        {"node": {"dir": "/etc/trustzone/prod", "files": [], "identities": {},
                  "requests": {"client": request}}, "trust": None, "ca": None}]
    plan = F.rollout_plan(["web1", "web2"], hv, "ca", now=NOW)
    assert [(i["host"], i["profile"]) for i in plan["certificates"]["items"]] == [
        ("web1", "server"), ("web2", "client")]


def render_html(report):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(REPO / "playbooks" / "templates")),
                             undefined=jinja2.StrictUndefined)
    env.filters.update(CoreFilters().filters())
    return env.get_template("report.html.j2").render(__trustzone_report=report)


def test_html_escapes_and_is_self_contained():
    report = F.fleet_report(["web1", "web2", "web3"], hostvars(), "ca", now=NOW)
    html = render_html(report)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.lstrip().startswith("<!DOCTYPE html>")
    # nothing is loaded from anywhere: no links, scripts, images or imports
    assert not re.search(r"(?i)<(script|link|img|iframe)\b|@import|url\(|src=|href=", html)
    # sorted by days left, coloured by status, every host present
    rows = re.findall(r'<tr class="status-(\w+)" data-host="(\w+)"', html)
    assert rows == [("soon", "web2"), ("ok", "web1")]
    for host in ("web1", "web2", "web3"):
        assert 'data-host-row="%s"' % host in html
    assert '<tr class="crl-ok" data-crl="ca">' in html
    assert '<header class="health-warning">' in html


def test_html_of_an_unreadable_ca():
    hv = hostvars(ca={"__trustzone_report_ledger": {"failed": True, "msg": "ledger damaged"}})
    html = render_html(F.fleet_report(["web1"], hv, "ca", now=NOW))
    assert "The CA host could not be read: ledger damaged" in html
    assert '<header class="health-critical">' in html


def test_fleet_report_passes_the_fail_threshold():
    # web2's server certificate has 2 days left: outside a 1d threshold, inside 3d
    report = F.fleet_report(["web1", "web2"], hostvars(), "ca", now=NOW, fail_within="1d")
    assert (report["fail_within"], report["failures"]) == ("1d", [])
    report = F.fleet_report(["web1", "web2"], hostvars(), "ca", now=NOW, fail_within="3d")
    assert [(f["kind"], f["host"], f["profile"]) for f in report["failures"]] == [
        ("expiring", "web2", "server")]
    with pytest.raises(AnsibleFilterError, match="fleet_report: trustzone_report_fail_within"):
        F.fleet_report(["web1"], hostvars(), "ca", now=NOW, fail_within="soon")


def test_fleet_report_shades_the_renew_windows_of_resolved_profiles():
    hv = hostvars(web1={"__trustzone_certs_profiles": [{"name": "server",
                                                        "renew_before": 30 * 86400}]})
    rows = F.fleet_report(["web1", "web2"], hv, "ca", now=NOW)["timeline"]["rows"]
    shaded = [(r["host"], r["label"], r["renew"] is not None) for r in rows
              if r["kind"] == "certificate"]
    assert shaded == [("web1", "server", True), ("web2", "server", False)]


def test_html_draws_the_timeline_and_lists_what_fails_the_run():
    report = F.fleet_report(["web1", "web2", "web3"], hostvars(), "ca", now=NOW,
                            fail_within="3d")
    html = render_html(report)
    rows = report["timeline"]["rows"]
    assert html.count('<g class="tl-row') == len(rows) == 7  # root, CA CRL, 2 x (cert, CRL), web3
    assert '<div class="timeline" data-rows="7">' in html
    assert "now &#183; phase stable" in html
    assert re.findall(r'<li data-failure="(\w+)"', html) == ["not_inspected", "expiring"]
    assert "&lt;script&gt;" not in re.search(r'<svg class="tl-body".*?</svg>', html, re.S).group(0)
