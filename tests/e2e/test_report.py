"""The fleet report (playbooks/report.yml) and the rollout plan (playbooks/plan.yml) over a
real fleet: a CA host and three nodes.

The tests run in file order and build on each other:

1. site.yml enrols node1 and node2 (node2's server certificate lives 10 days; the CA signs
   CRLs that live one hour); node3 never runs. An unknown certificate is planted on node1
   and node2's client certificate is deleted. report.yml must describe exactly that - the
   JSON field by field, both ledger cross-check findings, the CRL flagged as near - and the
   HTML page must load in headless Chromium and show every host.
2. node1's client key is replaced. site.yml --check, with plan.yml imported at its end,
   must print one plan and write it as JSON with exact counts: 3 certificates issued
   (node2/client, node3/server, node3/client), 2 renewed (node1/client key_mismatch,
   node2/server expiring), node3's trust store changing, ...
3. plan.yml outside check mode writes nothing; report.yml in check mode (it is read-only)
   shows the planted key, and the one-hour CRL is no longer flagged with a 30-minute window.
4. The exit-status contract (issue 19): the runs above show report-only mode (exit 0, the
   failing findings in the files) and a failing run (exit 2, one line per finding, files
   written); after site.yml heals the zone report.yml exits 0, and with a threshold longer
   than node2's server certificate has left and node3 unreachable it exits 2 naming both.
   The HTML page's expiry timeline is checked in headless Chromium (rows, SVG, screenshot).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
import yaml

from conftest import fleet_prefix, REPO, recap

PREFIX = fleet_prefix("tzrep")
ZONE = "rep"
DIR = "/etc/trustzone/%s" % ZONE
CA_DIR = "/var/lib/trustzone/%s" % ZONE


def in_force(ca_dir, name):
    """Shell path of ``name`` in the CA state in force (the generation ``current`` names)."""
    return "%s/$(cat %s/current)/%s" % (ca_dir, ca_dir, name)


NODES = ("node1", "node2", "node3")
SHORT_SERVER = [{"name": "server", "extended_key_usage": ["server_auth"], "lifetime": "10d",
                 "renew_before": "1d"},
                {"name": "client", "extended_key_usage": ["client_auth"]}]
# in the check-mode run node2's server certificate (10 days left) is inside renew_before
EXPIRING_SERVER = [{"name": "server", "extended_key_usage": ["server_auth"],
                    "lifetime": "30d", "renew_before": "20d"},
                   {"name": "client", "extended_key_usage": ["client_auth"]}]
TIMINGS = {}


@pytest.fixture(scope="module")
def fleet(make_fleet):
    start = time.monotonic()
    fleet = make_fleet(PREFIX, nodes=3, zone=ZONE)
    TIMINGS["fleet up"] = time.monotonic() - start
    return fleet


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("tzrep")


@pytest.fixture(scope="module")
def chromium():
    """The Debian chromium package, installed with apt when missing."""
    path = shutil.which("chromium")
    if path is None:
        proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                               "chromium"], capture_output=True, text=True, timeout=900,
                              env={"DEBIAN_FRONTEND": "noninteractive",
                                   "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, check=False)
        path = shutil.which("chromium")
        if path is None:
            pytest.fail("cannot install chromium with apt-get:\n%s" % proc.stdout[-2000:]
                        + proc.stderr[-2000:])
    return path


def inventory(fleet, work, name, node2_profiles=None, node1_reload=None):
    inv = yaml.safe_load(fleet.inventory.read_text())
    hosts = inv["all"]["children"]["trustzone_nodes"]["hosts"]
    if node2_profiles is not None:
        hosts["node2"]["trustzone_certs_profiles"] = node2_profiles
    if node1_reload is not None:
        hosts["node1"]["trustzone_certs_reload_services"] = node1_reload
    path = work / ("%s.yml" % name)
    path.write_text(yaml.safe_dump(inv))
    return path


def site_with_plan(work):
    """site.yml, which imports plan.yml as its last play."""
    path = REPO / "playbooks" / "site.yml"
    assert "import_playbook: plan.yml" in path.read_text()
    return path


def timed(label, fleet, *args, **kwargs):
    start = time.monotonic()
    proc = fleet.playbook(*args, **kwargs)
    TIMINGS[label] = time.monotonic() - start
    return proc


def cert_ids(fleet, host, path):
    """``(serial, sha256 fingerprint)`` as the report writes them, read with openssl."""
    out = fleet.sh(host, "openssl x509 -in %s -noout -serial -fingerprint -sha256" % path).stdout
    serial = re.search(r"serial=([0-9A-F]+)", out).group(1)
    fingerprint = re.search(r"Fingerprint=([0-9A-F:]+)", out).group(1)
    return "%x" % int(serial, 16), fingerprint.replace(":", "").lower()


def address(fleet, host):
    return fleet.hosts["all"]["children"]["trustzone_nodes"]["hosts"][host][
        "trustzone_node_addresses"][0]


def files_digest(fleet, host):
    return fleet.sh(host, "find /etc/trustzone /var/lib/trustzone /usr/local/share/"
                          "ca-certificates -type f 2>/dev/null | sort | xargs -r stat -c "
                          "'%n %a %Y %s' ; find /etc/trustzone /var/lib/trustzone -type f "
                          "2>/dev/null | sort | xargs -r sha256sum", check=False).stdout


def test_report_describes_the_fleet_exactly(fleet, work):
    inv = inventory(fleet, work, "short", node2_profiles=SHORT_SERVER)
    timed("site.yml (ca, node1, node2)", fleet, "site.yml", "--limit", "ca,node1,node2",
          "-e", "trustzone_ca_crl_lifetime=1h", "-e", "trustzone_ca_crl_refresh_before=10m",
          inventory=inv)
    fleet.sh("node1", (
        "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-keyout rogue.key -out rogue.crt -subj /CN=rogue.example -days 3 2>/dev/null && "
        "chmod 0644 rogue.crt && chmod 0600 rogue.key").format(d=DIR))
    rogue = cert_ids(fleet, "node1", DIR + "/rogue.crt")
    deleted = cert_ids(fleet, "node2", DIR + "/client.crt")
    fleet.sh("node2", "rm %s/client.crt" % DIR)
    ids = {(h, p): cert_ids(fleet, h, "%s/%s.crt" % (DIR, p))
           for h, p in (("node1", "server"), ("node1", "client"), ("node2", "server"))}
    root_fp = cert_ids(fleet, "ca", in_force(CA_DIR, "root.crt"))[1]
    before = {h: files_digest(fleet, h) for h in ("ca",) + NODES}

    proc = timed("report.yml", fleet, "report.yml", "-e", "trustzone_report_json=%s" % (
        work / "out" / "rep.json"), "-e", "trustzone_report_html=%s" % (
        work / "out" / "rep.html"), "-e", "trustzone_report_crl_near=2h",
        "-e", "trustzone_report_fail=false", inventory=inv)
    stats = recap(proc.output)
    assert {h: (s["changed"], s["failed"]) for h, s in stats.items()} == {
        "ca": (0, 0), "node1": (0, 0), "node2": (0, 0), "node3": (0, 0)}
    assert {h: files_digest(fleet, h) for h in ("ca",) + NODES} == before  # read-only
    report = json.loads((work / "out" / "rep.json").read_text())

    assert report["zone"] == ZONE
    assert (report["soon_days"], report["crl_near"], report["phase"], report["ledger_error"]) \
        == (30, "2h", "stable", None)
    assert report["hosts"] == {
        "node1": {"inspected": True, "error": None, "certificates": 3},
        "node2": {"inspected": True, "error": None, "certificates": 1},
        "node3": {"inspected": True, "error": None, "certificates": 0}}
    root = report["cas"][0]
    assert (len(report["cas"]), root["name"], root["fingerprint"], root["trusted"],
            root["signing"]) == (1, "root", root_fp, True, True)
    assert re.fullmatch(r"serialNumber=[0-9a-f]{16},CN=trustzone rep root CA,OU=rep,O=trustzone",
                        root["subject"])

    rows = report["certificates"]
    assert [(r["host"], r["profile"], r["status"], r["days_left"]) for r in rows] == [
        ("node2", "client", "missing", None), ("node3", "client", "missing", None),
        ("node3", "server", "missing", None), ("node1", None, "soon", 2),
        ("node2", "server", "soon", 9), ("node1", "client", "ok", 364),
        ("node1", "server", "ok", 364)]
    by_key = {(r["host"], r["profile"]): r for r in rows}
    for (host, profile), (serial, fingerprint) in ids.items():
        row = by_key[(host, profile)]
        fqdn = fleet.fqdn(host)
        assert {k: v for k, v in row.items() if k not in ("not_before", "not_after")} == {
            "host": host, "profile": profile, "path": "%s/%s.crt" % (DIR, profile),
            "kind": "profile", "status": "soon" if host == "node2" else "ok", "problems": [],
            "error": None, "subject": "CN=%s,OU=%s,O=trustzone" % (fqdn, ZONE),
            "common_name": fqdn, "sans": {"dns": [host, fqdn], "ip": [address(fleet, host)]},
            "issuer": root["subject"], "serial": serial, "fingerprint": fingerprint,
            "days_left": 9 if host == "node2" else 364, "chain_valid": True,
            "chain_root": root_fp, "key_path": "%s/%s.key" % (DIR, profile),
            "key_match": True,
            "modes": {"certificate": "0644", "key": "0600", "chain": "0644"},
            "modes_ok": True,
            "ledger": {"status": "valid", "host": host, "profile": profile,
                       "issued_at": row["ledger"]["issued_at"], "revocation_reason": None}}
    planted = by_key[("node1", None)]
    assert {k: planted[k] for k in ("path", "kind", "status", "problems", "subject", "issuer",
                                    "serial", "fingerprint", "chain_valid", "chain_root",
                                    "key_match", "modes", "modes_ok", "ledger")} == {
        "path": DIR + "/rogue.crt", "kind": "extra", "status": "soon",
        "problems": ["chain_invalid"], "subject": "CN=rogue.example",
        "issuer": "CN=rogue.example", "serial": rogue[0], "fingerprint": rogue[1],
        "chain_valid": False, "chain_root": None, "key_match": True,
        "modes": {"certificate": "0644", "key": "0600", "chain": None}, "modes_ok": True,
        "ledger": {"status": "unknown"}}
    missing = by_key[("node2", "client")]
    assert (missing["problems"], missing["fingerprint"], missing["key_path"],
            missing["modes"]) == (["missing"], None, DIR + "/client.key",
                                  {"certificate": None, "key": "0600", "chain": "0644"})

    assert [(f["kind"], f["host"], f["profile"], f["path"], f["serial"])
            for f in report["findings"]] == [
        ("unknown_to_ledger", "node1", None, DIR + "/rogue.crt", rogue[0]),
        ("missing_from_node", "node2", "client", None, deleted[0]),
        ("crl_near", None, None, CA_DIR + "/crl.pem", None),
        ("crl_near", "node1", None, DIR + "/crl.pem", None),
        ("crl_near", "node2", None, DIR + "/crl.pem", None)]
    crl = report["crl"]
    assert (crl["status"], crl["ca"]["status"], crl["ca"]["number"]) == ("near", "near", 1)
    assert {h: n["status"] for h, n in crl["nodes"].items()} == {
        "node1": "near", "node2": "near", "node3": "missing"}
    assert crl["next_update"] == crl["ca"]["next_update"]

    summary = report["zones"][ZONE]
    assert {k: v for k, v in summary.items() if k not in ("crl_next_update", "soonest")} == {
        "health": "critical", "hosts": 3, "hosts_inspected": 3, "certificates": 7,
        "by_status": {"unreadable": 0, "missing": 3, "expired": 0, "soon": 2, "ok": 2},
        "problems": {"unreadable": 0, "missing": 3, "expired": 0, "not_yet_valid": 0,
                     "chain_invalid": 1, "key_mismatch": 0, "key_missing": 0, "modes": 0},
        "findings": {"unknown_to_ledger": 1, "missing_from_node": 1, "crl_near": 3},
        "ledger": {"valid": 4, "revoked": 0, "superseded": 0, "total": 4},
        "crl_status": "near", "phase": "stable"}
    assert (summary["soonest"]["host"], summary["soonest"]["path"]) == ("node1",
                                                                        DIR + "/rogue.crt")
    assert "Findings: unknown_to_ledger 1, missing_from_node 1, crl_near 3" in proc.output
    # report-only mode: exit 0, and what would fail the run is in the files all the same
    assert proc.returncode == 0
    assert "Fails the run: 6 (threshold 7d; report-only mode" in proc.output
    assert [(f["kind"], f["host"], f["profile"]) for f in report["failures"]] == [
        ("missing", "node2", "client"), ("missing", "node3", "client"),
        ("missing", "node3", "server"), ("crl_near", None, None), ("crl_near", "node1", None),
        ("crl_near", "node2", None)]
    assert report["failures"][0]["line"] == "node2/client: %s/client.crt missing" % DIR
    assert "timeline" not in report  # coordinates are for the page only


def test_report_html_loads_in_chromium_and_shows_every_host(fleet, work, chromium):
    page = work / "out" / "rep.html"
    html = page.read_text()
    assert not re.search(r"(?i)<(script|link|img|iframe)\b|@import|url\(|src=|href=", html)
    profile = work / "chromium-profile"
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--user-data-dir=%s" % profile, "--window-size=1400,1800"]
    start = time.monotonic()
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=180, check=False)
    shot = subprocess.run(base + ["--screenshot=%s" % (work / "rep.png"), page.as_uri()],
                          capture_output=True, text=True, timeout=180, check=False)
    TIMINGS["chromium"] = time.monotonic() - start
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert shot.returncode == 0, shot.stderr[-2000:]
    text = dom.stdout
    assert "<title>trustzone rep: fleet report" in text
    for host in NODES:
        assert '<tr data-host-row="%s"><td>%s</td>' % (host, host) in text
    assert re.findall(r'<tr class="status-(\w+)" data-host="(\w+)" data-profile="(\w*)"',
                      text) == [
        ("missing", "node2", "client"), ("missing", "node3", "client"),
        ("missing", "node3", "server"), ("soon", "node1", ""), ("soon", "node2", "server"),
        ("ok", "node1", "client"), ("ok", "node1", "server")]
    assert '<tr class="crl-near" data-crl="ca">' in text
    assert text.count('data-finding="crl_near"') == 3
    assert 'data-finding="unknown_to_ledger"' in text
    assert 'data-finding="missing_from_node"' in text
    png = (work / "rep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1400, 1800)
    assert len(png) > 20000  # a rendered page, not a blank one
    # the expiry timeline: CA host (root, CRL), node1 (client, server, rogue.crt, CRL),
    # node2 (client missing, server, CRL), node3 (client and server missing, no CRL)
    assert '<div class="timeline" data-rows="11">' in text
    body = re.search(r'<svg class="tl-body" width="(\d+)" height="(\d+)"(.*?)</svg>', text, re.S)
    assert (int(body.group(1)), int(body.group(2))) == (1160, 11 * 14)
    rows = re.findall(r'<g class="tl-row tl-(\w+)" data-host="(\w*)">', body.group(3))
    assert rows == [("ca", ""), ("crl", ""), ("certificate", "node1"), ("certificate", "node1"),
                    ("certificate", "node1"), ("crl", "node1"), ("certificate", "node2"),
                    ("certificate", "node2"), ("crl", "node2"), ("certificate", "node3"),
                    ("certificate", "node3")]
    assert body.group(3).count('class="renew"') == 3 + 3  # 3 certificates, 3 CRL windows
    assert len(re.findall(r'<rect class="bar-', body.group(3))) == 1 + 4
    assert "now &#183; phase stable" in text or "now · phase stable" in text
    assert re.findall(r'<li data-failure="(\w+)"', text) == [
        "missing", "missing", "missing", "crl_near", "crl_near", "crl_near"]


def test_check_mode_plan_counts_exactly(fleet, work):
    fleet.sh("node1", "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
                      "-out %s/client.key 2>/dev/null && chmod 0600 %s/client.key" % (DIR, DIR))
    planted = fleet.read("node1", DIR + "/client.key")
    inv = inventory(fleet, work, "expiring", node2_profiles=EXPIRING_SERVER,
                    node1_reload=["nginx"])
    plan_path = work / "out" / "plan.json"
    proc = timed("site.yml --check + plan", fleet, str(site_with_plan(work)), "--check",
                 "-e", "trustzone_plan_json=%s" % plan_path, inventory=inv)
    assert fleet.read("node1", DIR + "/client.key") == planted
    assert not fleet.exists("node3", "/etc/trustzone")
    assert proc.output.count("TASK [Show the plan]") == 1
    plan = json.loads(plan_path.read_text())
    root_fp = cert_ids(fleet, "ca", in_force(CA_DIR, "root.crt"))[1]

    certs = plan["certificates"]
    assert (certs["total"], certs["issue"], certs["renew"]) == (5, 3, 2)
    assert certs["by_reason"] == {"expiring": 1, "key_mismatch": 1, "missing_certificate": 3,
                                  "missing_key": 2}
    assert [(i["host"], i["profile"], i["action"], i["reasons"]) for i in certs["items"]] == [
        ("node1", "client", "renew", ["key_mismatch"]),
        ("node2", "client", "issue", ["missing_certificate"]),
        ("node2", "server", "renew", ["expiring"]),
        ("node3", "client", "issue", ["missing_key", "missing_certificate"]),
        ("node3", "server", "issue", ["missing_key", "missing_certificate"])]
    assert plan["hosts"] == {"inventory": list(NODES), "inspected": list(NODES),
                             "not_inspected": [], "failed": {}}
    assert plan["reload"] == {"hosts": list(NODES), "by_host": {
        "node1": {"services": ["nginx"], "commands": []},
        "node2": {"services": [], "commands": []},
        "node3": {"services": [], "commands": []}}}
    assert plan["trust"] == {"hosts": ["node3"], "by_host": {"node3": {
        "added": ["trustzone-%s-%s.crt" % (ZONE, root_fp[:16])], "removed": [],
        "roots_bundle": True}}}
    assert plan["crl_distribution"] == {"hosts": list(NODES)}
    assert plan["refused"] == {}
    ca = plan["ca"]
    assert (ca["error"], ca["root_created"], ca["phase"], ca["intermediate"]) == (
        None, False, "stable", None)
    assert [(r["state"], r["fingerprint"]) for r in ca["roots"]] == [("current", root_fp)]
    assert ca["rotation"]["phase_after"] == "stable"
    assert plan["crl"]["status"] == "ok"
    assert re.fullmatch(r"next update \S+Z is near", plan["crl"]["would_sign"])
    assert "Certificates: 5 (3 issued, 2 renewed)" in proc.output
    assert "Trust stores change: node3 (+1 anchor, roots.pem)" in proc.output
    stats = recap(proc.output)
    assert stats["ca"]["changed"] == 1  # the CRL would be signed again; the plan changes nothing


def test_plan_is_check_mode_only_and_report_is_check_mode_safe(fleet, work):
    plan_path = work / "out" / "plan.json"
    plan_path.unlink()
    inv = inventory(fleet, work, "short", node2_profiles=SHORT_SERVER)
    proc = timed("plan.yml (not check mode)", fleet, "plan.yml",
                 "-e", "trustzone_plan_json=%s" % plan_path, inventory=inv)
    assert not plan_path.exists()
    assert "TASK [Show the plan]" not in proc.output

    before = {h: files_digest(fleet, h) for h in ("ca",) + NODES}
    (work / "out" / "check.json").unlink(missing_ok=True)
    proc = timed("report.yml --check", fleet, "report.yml", "--check",
                 "-e", "trustzone_report_json=%s" % (work / "out" / "check.json"),
                 "-e", "trustzone_report_html=%s" % (work / "out" / "check.html"),
                 "-e", "trustzone_report_crl_near=30m", inventory=inv, check=False)
    # the run fails on its findings, one line each, after writing the report
    assert proc.returncode == 2, proc.output[-3000:]
    assert "TASK [Fail on the report's findings]" in proc.output
    assert "Zone %s: 4 finding(s) fail this run" % ZONE in proc.output
    for line in ("node1/client: %s/client.crt key_mismatch" % DIR,
                 "node2/client: %s/client.crt missing" % DIR,
                 "node3/client: %s/client.crt missing" % DIR):
        assert line in proc.output
    assert {h: files_digest(fleet, h) for h in ("ca",) + NODES} == before
    assert all(s["changed"] == 0 for s in recap(proc.output).values())
    report = json.loads((work / "out" / "check.json").read_text())
    # the CRL signed for an hour is fine with a 30 minute window ...
    assert (report["crl"]["status"], report["crl"]["ca"]["status"]) == ("ok", "ok")
    assert [f["kind"] for f in report["findings"]] == ["unknown_to_ledger",
                                                       "missing_from_node"]
    # ... and the key planted on node1 shows up
    client = next(r for r in report["certificates"]
                  if (r["host"], r["profile"]) == ("node1", "client"))
    assert (client["key_match"], client["problems"], client["status"]) == (
        False, ["key_mismatch"], "ok")
    summary = report["zones"][ZONE]
    assert (summary["health"], summary["problems"]["key_mismatch"], summary["crl_status"]) == (
        "critical", 1, "ok")
    assert (work / "out" / "check.html").read_text().count('data-host-row="') == 3


def test_exit_status_healthy_zone_then_threshold_and_unreachable_node(fleet, work):
    fleet.sh("node1", "rm %s/rogue.crt %s/rogue.key" % (DIR, DIR))
    inv = inventory(fleet, work, "short", node2_profiles=SHORT_SERVER)
    timed("site.yml (heal the zone)", fleet, "site.yml", inventory=inv)
    out = work / "exit"
    paths = ["-e", "trustzone_report_json=%s" % (out / "r.json"),
             "-e", "trustzone_report_html=%s" % (out / "r.html")]
    proc = timed("report.yml (healthy)", fleet, "report.yml", *paths, inventory=inv,
                 check=False)
    assert proc.returncode == 0, proc.output[-3000:]
    assert "Fails the run: 0 (threshold 7d)" in proc.output
    assert json.loads((out / "r.json").read_text())["failures"] == []

    # node2's server certificate lives 10 days (9 left): inside a 10-day threshold; node3
    # cannot be reached
    bad = yaml.safe_load(inv.read_text())
    bad["all"]["children"]["trustzone_nodes"]["hosts"]["node3"]["ansible_port"] = 1
    (work / "unreachable.yml").write_text(yaml.safe_dump(bad))
    (out / "r.json").unlink()
    proc = timed("report.yml (threshold, unreachable)", fleet, "report.yml", *paths,
                 "-e", "trustzone_report_fail_within=10d", inventory=work / "unreachable.yml",
                 check=False)
    assert proc.returncode == 2, proc.output[-3000:]
    report = json.loads((out / "r.json").read_text())  # written before the run failed
    assert [(f["kind"], f["host"], f["profile"]) for f in report["failures"]] == [
        ("not_inspected", "node3", None), ("expiring", "node2", "server")]
    assert re.search(r"node2/server: %s/server\.crt expires \S+Z, 9d left \(threshold 10d\)"
                     % DIR, proc.output)
    assert "node3: not inspected: " in proc.output
    assert "Zone %s: 2 finding(s) fail this run" % ZONE in proc.output


def test_timings():
    """Not a check: prints how long each step took (pytest -s shows it)."""
    print("\n" + "\n".join("%-32s %6.1f s" % item for item in TIMINGS.items()))
