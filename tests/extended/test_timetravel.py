"""Short-lived certificates proven by time travel (issue 19, part 3): an EXTENDED check.

Run by ``scripts/extended`` only (never by scripts/test or CI): it walks a lab zone through
``TRUSTZONE_TIMETRAVEL_DAYS`` (default 14) simulated days.

The clock: Debian's libfaketime (unpacked into .venv/lib/faketime by scripts/bootstrap
--tests, never installed) is copied into every container of the fleet. ``/etc/faketimerc``
holds the simulated offset from the real clock (``+<seconds>``); sshd hands every session
``LD_PRELOAD`` of the library with ``FAKETIME_NO_CACHE=1`` (``SetEnv`` in sshd_config), so
every process Ansible starts - modules, openssl, the s_server a reload command starts - reads
the offset each time it asks for the time, while sshd itself runs on the real clock.
(``/etc/ld.so.preload`` does not work here: sshd's seccomp sandbox kills its pre-auth child
with SIGSYS once the library is in it.) The controller's ansible-playbook runs with
``LD_PRELOAD`` and ``FAKETIME=+<seconds>``, so controller-side decisions see the same time.
Offsets rather than ``@`` start dates: with ``@`` every new process starts again at the
date given, so the processes of one step would not agree on the time. The monotonic clock
is faked too: with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` Python's ``time.sleep`` fails (EINVAL).

The zone: one-day leaves renewed 8 hours before they run out (a third of their life), CRLs
valid 12 hours and signed again 6 hours before their nextUpdate; a CA host and three nodes,
each serving ``openssl s_server -Verify 2 -verify_return_error -crl_check`` with its zone
server certificate, restarted by trustzone_certs_reload_commands whenever a certificate or
the CRL changes (as a service's reload would).

The walk: every STEP (4 hours, the schedule's interval) renew.yml runs as the schedule would,
then every ordered pair of nodes completes an mTLS handshake, every certificate is inside
its validity and no CRL copy is past its nextUpdate. Then the runs stop: the nodes' metrics
files, the CA host's, the example alert rules evaluated over them by ``promtool test rules``
and report.yml's exit status flag the zone one step or more before the handshakes break,
and past every notAfter the handshake breaks on the certificate too.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("tz_e2e_conftest",
                                               REPO / "tests" / "e2e" / "conftest.py")
E2E = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(E2E)

PREFIX = E2E.fleet_prefix("tztime")
ZONE = "tt"
DIR = "/etc/trustzone/%s" % ZONE
NODES = ("node1", "node2", "node3")
HOSTS = ("ca",) + NODES
LIB = REPO / ".venv" / "lib" / "faketime" / "libfaketime.so.1"
LIB_IN = "/usr/local/lib/libfaketime.so.1"
TEXTFILES = "/var/lib/prometheus/node-exporter"   # Debian's default: metrics on
S_SERVER = "/usr/local/sbin/tz-s-server"
PORT = 8443
HOUR = 3600
STEP = 4 * HOUR                     # the schedule's interval
LIFETIME, RENEW_BEFORE = 24 * HOUR, 8 * HOUR
CRL_LIFETIME, CRL_REFRESH = 12 * HOUR, 6 * HOUR
DAYS = float(os.environ.get("TRUSTZONE_TIMETRAVEL_DAYS", "14"))
# a scheduled run that has not been seen for this long is late (docs/examples: the
# TrustzoneRunNotSeen rule, its threshold set to this zone's schedule)
RUN_LATE = STEP + STEP // 2

PROMTOOL = REPO / ".venv" / "bin" / "promtool"
ALERT_RULES = REPO / "docs" / "examples" / "trustzone-alerts.yml"
# The example rules' thresholds are for the default lifetimes; for this zone: a leaf within
# half its renew window, a CRL copy inside its refresh window, no run for 1.5 intervals.
SCALED = {"< 2 * 86400": "< 4 * 3600", "< 86400": "< 6 * 3600", "> 26 * 3600": "> 6 * 3600"}

ZONE_VARS = {
    "trustzone_certs_profiles": [
        {"name": "server", "lifetime": "1d", "renew_before": "8h",
         "extended_key_usage": ["server_auth"]},
        {"name": "client", "lifetime": "1d", "renew_before": "8h",
         "extended_key_usage": ["client_auth"]},
    ],
    "trustzone_ca_crl_lifetime": "12h",
    "trustzone_ca_crl_refresh_before": "6h",
    "trustzone_certs_reload_commands": [S_SERVER],
}

# (Re)starts the node's s_server with its current certificate, roots and CRL: what a
# service's reload does. Run by the certs role's handler (over SSH, so on simulated time).
S_SERVER_SCRIPT = """#!/bin/sh
D=%(dir)s
if [ -f /run/tz-s-server.pid ]; then
    pid=$(cat /run/tz-s-server.pid); kill "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
fi
rm -f /var/log/tz-s-server.log
setsid nohup openssl s_server -accept %(port)d -cert $D/server.crt -key $D/server.key \\
    -CAfile $D/roots.pem -CRL $D/crl.pem -crl_check -Verify 2 -verify_return_error -www \\
    </dev/null >/var/log/tz-s-server.log 2>&1 &
echo $! > /run/tz-s-server.pid
for i in $(seq 100); do grep -q ACCEPT /var/log/tz-s-server.log && exit 0; sleep 0.05; done
cat /var/log/tz-s-server.log; exit 1
""" % {"dir": DIR, "port": PORT}

# One command per node: the simulated now, its certificates' and CRLs' dates, and an mTLS
# handshake with every other node (JSON on stdout).
OBSERVE = r"""
import datetime, json, subprocess, sys
from cryptography import x509
D, peers, crl_check = sys.argv[1], sys.argv[2].split(","), sys.argv[3] == "1"
def ts(moment): return moment.replace(tzinfo=datetime.timezone.utc).timestamp()
out = {"now": datetime.datetime.now(datetime.timezone.utc).timestamp(), "certs": {}, "crls": [],
       "handshakes": {}}
for name in ("server", "client"):
    cert = x509.load_pem_x509_certificate(open("%s/%s.crt" % (D, name), "rb").read())
    out["certs"][name] = [ts(cert.not_valid_before), ts(cert.not_valid_after),
                          format(cert.serial_number, "x")]
pem = open(D + "/crl.pem").read()
for block in pem.split("-----END X509 CRL-----")[:-1]:
    crl = x509.load_pem_x509_crl((block + "-----END X509 CRL-----\n").strip().encode())
    out["crls"].append(ts(crl.next_update))
for peer in peers:
    cmd = ["openssl", "s_client", "-connect", peer + ":@PORT@", "-servername", peer,
           "-cert", D + "/client.crt", "-key", D + "/client.key", "-CAfile", D + "/roots.pem",
           "-verify_return_error", "-ign_eof"]
    if crl_check:
        cmd += ["-CRL", D + "/crl.pem", "-crl_check"]
    try:
        proc = subprocess.run(cmd, input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True,
                              timeout=20)
        text = (proc.stdout + proc.stderr).decode(errors="replace")
    except subprocess.TimeoutExpired:
        text = "timeout"
    errors = sorted(set(l.strip() for l in text.splitlines()
                        if "verif" in l.lower() and "error" in l.lower()
                        or "alert" in l.lower() or l == "timeout")
                    - set(l.strip() for l in text.splitlines() if ":error:0A000086:" in l))
    out["handshakes"][peer] = {"verify_ok": "Verify return code: 0 (ok)" in text,
                               "accepted": "HTTP/1.0 200 ok" in text, "errors": errors[:4]}
print(json.dumps(out))
""".replace("@PORT@", str(PORT))


class Clock:
    """The simulated clock of the whole lab: an offset from the real one, in seconds."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.offset = 0

    def set(self, offset):
        self.offset = int(offset)
        for host in HOSTS:
            podman_sh(self.fleet, host, "printf '%%+d\\n' %d > /etc/faketimerc.new && "
                      "mv /etc/faketimerc.new /etc/faketimerc" % self.offset)

    def now(self):
        return time.time() + self.offset

    def env(self):
        env = E2E.ansible_env()
        # not FAKETIME_DONT_FAKE_MONOTONIC: with it, Python's time.sleep fails with EINVAL
        # (clock_nanosleep on an absolute monotonic deadline)
        env.update(LD_PRELOAD=str(LIB), FAKETIME="%+d" % self.offset)
        return env


def podman_sh(fleet, host, script, faked=False, timeout=120):
    """``script`` in ``host``'s container; with ``faked``, on the simulated clock."""
    if faked:
        script = ("export LD_PRELOAD=%s FAKETIME_NO_CACHE=1; "
                  % LIB_IN) + script
    proc = subprocess.run(["podman", "exec", "-i", fleet.container(host), "sh", "-c", script],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError("on %s: %s failed (rc=%d):\n%s%s" % (
            host, script[:300], proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc.stdout


def run(clock, playbook, *args, check=True, timeout=900):
    """``playbook`` (or the ad-hoc ``ansible`` with ``playbook=None``) on the simulated clock."""
    fleet = clock.fleet
    if playbook is None:
        cmd = [str(E2E.VENV_BIN / "ansible"), "-i", str(fleet.inventory), *args]
    else:
        cmd = [str(E2E.VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory),
               str(REPO / "playbooks" / playbook), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=clock.env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    proc.output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError("%s %s failed (rc=%d):\n%s" % (
            playbook or "ansible", " ".join(args), proc.returncode, proc.output[-6000:]))
    return proc


def observe(clock, crl_check=True):
    """``{node: the OBSERVE result}``, one command per node."""
    fleet = clock.fleet
    out = {}
    for node in NODES:
        peers = ",".join(fleet.fqdn(p) for p in NODES if p != node)
        text = podman_sh(fleet, node, "python3 -c %s %s %s %s" % (
            shlex.quote(OBSERVE), DIR, peers, "1" if crl_check else "0"), faked=True)
        out[node] = json.loads(text)
    return out


def handshakes(state):
    """``{(client, server fqdn): ok}`` for every ordered pair."""
    return {(node, peer): hs["verify_ok"] and hs["accepted"]
            for node, s in state.items() for peer, hs in s["handshakes"].items()}


def prom(fleet, host, name):
    """``[(series, {label: value}, value)]`` of a trustzone metrics file on ``host``."""
    out = []
    text = podman_sh(fleet, host, "cat %s/%s" % (TEXTFILES, name))
    for line in text.splitlines():
        match = re.match(r"^(trustzone_\w+)\{([^}]*)\} (\S+)$", line)
        if match:
            out.append((match.group(1), dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"',
                                                        match.group(2))),
                        float(match.group(3))))
    return out


def metric_flags(fleet, now):
    """What an alerting rule evaluated at ``now`` says about the zone's metrics files (the
    example rules of docs/examples/trustzone-alerts.yml, thresholds set to this zone's
    windows): certificates in their renew window, CRL copies inside their refresh window,
    a CA host whose last run is late."""
    flags = []
    for node in NODES:
        for series, labels, value in prom(fleet, node, "trustzone_%s.prom" % ZONE):
            if series == "trustzone_certificate_renew_at_seconds" and now > value:
                flags.append("%s %s in its renew window" % (node, labels["profile"]))
            if series == "trustzone_crl_next_update_seconds" and value - now < CRL_REFRESH:
                flags.append("%s CRL %.1fh before nextUpdate" % (node, (value - now) / HOUR))
    for series, _labels, value in prom(fleet, "ca", "trustzone_%s.ca.prom" % ZONE):
        if series == "trustzone_last_success_timestamp_seconds" and now - value > RUN_LATE:
            flags.append("ca: no run for %.1fh" % ((now - value) / HOUR))
    return flags


def rules(scaled):
    """The example alert rules (docs/examples/trustzone-alerts.yml) as shipped, or with their
    thresholds scaled to this zone (docs/schedule.md, "Proven by time travel")."""
    text = ALERT_RULES.read_text()
    if scaled:
        for shipped, zone in SCALED.items():
            assert text.count(shipped) == 1, shipped
            text = text.replace(shipped, zone)
    return text


def firing(fleet, now, rules_text, tmp_path):
    """``{(alert, instance)}`` the rules fire at ``now`` over the metrics files as they are,
    evaluated by ``promtool test rules``: every series held constant for a day before ``now``
    (the files change only when a run writes them), timestamps shifted onto promtool's clock."""
    files = [(n, "trustzone_%s.prom" % ZONE) for n in NODES] + [
        ("ca", "trustzone_%s.ca.prom" % ZONE)]
    series = []
    for host, name in files:
        for metric, labels, value in prom(fleet, host, name):
            if metric.endswith("_seconds"):
                value = value - now + 86400
            labels = dict(labels, instance=host)
            series.append({"series": "%s{%s}" % (metric, ",".join(
                '%s="%s"' % item for item in sorted(labels.items()))),
                "values": "%.3f+0x288" % value})
    names = [r["alert"] for g in yaml.safe_load(rules_text)["groups"] for r in g["rules"]]
    (tmp_path / "rules.yml").write_text(rules_text)
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "5m", "input_series": series, "alert_rule_test": [
            {"eval_time": "1d", "alertname": n, "exp_alerts": []} for n in names]}]}))
    proc = subprocess.run([str(PROMTOOL), "test", "rules", "test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    text = proc.stdout + proc.stderr
    got = set(re.findall(r'Labels:\{alertname="(\w+)", instance="([^"]+)"', text))
    assert proc.returncode == 0 or got, text
    return got


def report(clock, tmp_path):
    """report.yml at the simulated now, with its exit-status contract (docs/report.md) set to
    this zone: a leaf with less than a quarter of its life left, or a CRL copy inside its
    refresh window, fails the run. ``(exit status, the zone's summary, the failure lines)``."""
    path = tmp_path / ("report-%d.json" % clock.offset)
    proc = run(clock, "report.yml", "-e", "trustzone_report_json=%s" % path,
               "-e", "trustzone_report_html=%s" % path.with_suffix(".html"),
               "-e", "trustzone_report_soon_days=0", "-e", "trustzone_report_crl_near=6h",
               "-e", "trustzone_report_fail_within=25%", check=False)
    assert proc.returncode in (0, 2), proc.output[-4000:]
    data = json.loads(path.read_text())
    lines = [f["line"] for f in data["failures"]]
    assert (proc.returncode == 2) == bool(lines), (proc.returncode, lines)
    return proc.returncode, data["zones"][ZONE], lines


def iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%MZ")


def summary(step, clock, state, proc=None, wall=None):
    certs_left = min(c[1] - s["now"] for s in state.values() for c in s["certs"].values())
    crl_left = min(n - s["now"] for s in state.values() for n in s["crls"])
    ok = sum(handshakes(state).values())
    parts = ["step %3s" % step, "sim %s" % iso(clock.now())]
    if proc is not None:
        stats = E2E.recap(proc.output)
        parts.append("renew.yml %4.0fs changed=%d" % (
            wall, sum(s.get("changed", 0) for s in stats.values())))
    parts += ["mTLS %d/%d" % (ok, len(handshakes(state))),
              "leaf left min %.1fh" % (certs_left / HOUR), "CRL left min %.1fh" % (crl_left / HOUR)]
    print(" | ".join(parts), flush=True)


@pytest.fixture(scope="module")
def clock(tmp_path_factory):
    for need in (LIB, PROMTOOL):
        if not need.is_file():
            pytest.fail("%s is missing: run scripts/bootstrap --tests (it unpacks Debian's "
                        "libfaketime and promtool)" % need)
    inventory = REPO / ".lab" / PREFIX / "hosts.yml"
    E2E.lab("down", "--prefix", PREFIX)
    E2E.lab("up", "--prefix", PREFIX, "--nodes", str(len(NODES)), "--zone", ZONE,
            "--inventory", str(inventory))
    fleet = E2E.Fleet(PREFIX, inventory, ZONE)
    inv = yaml.safe_load(inventory.read_text())
    inv["all"]["vars"].update(ZONE_VARS)
    path = tmp_path_factory.mktemp("timetravel") / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    fleet.inventory = path
    for host in HOSTS:
        subprocess.run(["podman", "cp", str(LIB), "%s:%s" % (fleet.container(host), LIB_IN)],
                       check=True)
        subprocess.run(["podman", "exec", "-i", fleet.container(host), "sh", "-c",
                        "mkdir -p %s && printf '+0\\n' > /etc/faketimerc && "
                        "printf 'SetEnv LD_PRELOAD=%s FAKETIME_NO_CACHE=1\\n' "
                        "> /etc/ssh/sshd_config.d/faketime.conf"
                        " && cat > %s && chmod 0755 %s && kill -HUP 1"
                        % (TEXTFILES, LIB_IN, S_SERVER, S_SERVER)],
                       input=S_SERVER_SCRIPT, text=True, check=True)
    time.sleep(1)  # sshd re-executes itself on SIGHUP
    yield Clock(fleet)
    if os.environ.get("TRUSTZONE_KEEP_FLEET") != "1":
        E2E.lab("down", "--prefix", PREFIX)


def test_every_process_sees_the_simulated_time(clock):
    """Before anything is issued: three days ahead, a shell over SSH, a Python module, openssl
    and the controller's templating all see the simulated time; the real clock is back after."""
    clock.set(3 * 86400)
    want = clock.now()
    proc = run(clock, None, "all", "-m", "ansible.builtin.shell", "-a",
               "date +%s; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
               "-keyout /dev/null -subj /CN=t -days 1 2>/dev/null | openssl x509 -noout "
               "-startdate -dateopt iso_8601")
    dates = re.findall(r"^(\d{10})$", proc.output, re.M)
    assert len(dates) == len(HOSTS) and all(abs(int(d) - want) < 120 for d in dates), proc.output
    starts = re.findall(r"notBefore=(\S+ \S+)Z", proc.output)
    assert len(starts) == len(HOSTS), proc.output
    for start in starts:
        moment = datetime.datetime.fromisoformat(start).replace(tzinfo=datetime.timezone.utc)
        assert abs(moment.timestamp() - want) < 120, proc.output
    proc = run(clock, None, "all", "-m", "ansible.builtin.setup", "-a",
               "filter=ansible_date_time gather_subset=!all,!min,date_time")
    epochs = re.findall(r'"epoch": "(\d+)"', proc.output)
    assert len(epochs) == len(HOSTS) and all(abs(int(e) - want) < 120 for e in epochs), \
        proc.output
    proc = run(clock, None, "localhost", "-m", "ansible.builtin.debug", "-a",
               "msg={{ now(utc=true).timestamp() | int }}")
    assert abs(int(re.search(r'"msg": "?(\d+)', proc.output).group(1)) - want) < 120
    clock.set(0)
    real = podman_sh(clock.fleet, "node1", "date +%s", faked=True)
    assert abs(int(real) - time.time()) < 60
    print("simulated +3d seen by sshd sessions (date), openssl, python modules and the "
          "controller; back at the real time after")


def test_the_zone_stays_valid_across_the_walk(clock, tmp_path):
    """site.yml at the real time, then renew.yml every STEP for DAYS simulated days: every
    ordered pair of nodes completes mTLS, every certificate is inside its validity and no
    CRL copy is past its nextUpdate at every step."""
    started = time.monotonic()
    run(clock, "site.yml")
    state = observe(clock)
    summary(0, clock, state)
    assert all(handshakes(state).values()), state
    serials = {(n, p): {c[2]} for n, s in state.items() for p, c in s["certs"].items()}
    crls = set()
    steps = int(DAYS * 86400 // STEP)
    for step in range(1, steps + 1):
        clock.set(step * STEP)
        began = time.monotonic()
        proc = run(clock, "renew.yml")
        wall = time.monotonic() - began
        state = observe(clock)
        summary(step, clock, state, proc, wall)
        for node, seen in state.items():
            now = seen["now"]
            assert abs(now - clock.now()) < 300, (node, now, clock.now())
            for profile, (not_before, not_after, serial) in seen["certs"].items():
                assert not_before <= now < not_after, (step, node, profile, seen)
                serials[(node, profile)].add(serial)
            assert seen["crls"] and all(now < n for n in seen["crls"]), (step, node, seen)
            crls.update(seen["crls"])
        bad = {pair: state[pair[0]]["handshakes"][pair[1]]
               for pair, ok in handshakes(state).items() if not ok}
        assert not bad, (step, bad)
    elapsed = time.monotonic() - started
    # while the schedule runs, the example rules scaled to the zone stay silent; as shipped
    # (thresholds for year-long leaves and week-long CRLs) they fire all the time
    quiet = firing(clock.fleet, clock.now(), rules(scaled=True), tmp_path)
    loud = firing(clock.fleet, clock.now(), rules(scaled=False), tmp_path)
    print("alert rules at the last step: scaled %s; as shipped %s" % (
        sorted(quiet) or "none", sorted({a for a, _i in loud})))
    assert not quiet, quiet
    status, health, lines = report(clock, tmp_path)
    print("report.yml at the last step: exit %d, health %s, CRL %s" % (
        status, health["health"], health["crl_status"]))
    assert status == 0 and health["crl_status"] == "ok", (status, health, lines)
    assert {"TrustzoneCrlNearNextUpdate", "TrustzoneCertificateExpiresSoon"} <= {
        a for a, _i in loud}, loud
    # every leaf was renewed about once per 16 to 20 simulated hours; every CRL signed again
    renewals = min(len(s) for s in serials.values())
    assert renewals >= int(DAYS * 24 // 20), serials
    assert len(crls) >= int(DAYS * 24 // 8), sorted(crls)
    print("walk: %d steps of %dh over %.1f simulated days in %.0f s wall (%.0f s per "
          "simulated day); fewest issuances of one identity %d, CRLs seen %d" % (
              steps, STEP // HOUR, DAYS, elapsed, elapsed / DAYS, renewals, len(crls)))


def test_skipped_runs_are_flagged_before_the_zone_breaks(clock, tmp_path):
    """No more renew.yml: the metrics files and report.yml flag the zone at least one step
    before the first handshake fails; past every notAfter the handshake fails on the
    certificate itself (the check can fail)."""
    first_flag = first_alert = broken = None
    step = 0
    while broken is None:
        step += 1
        assert step <= 6, "the zone neither broke nor was flagged within a day"
        clock.set(clock.offset + STEP)
        state = observe(clock)
        summary("s%d" % step, clock, state)
        flags = metric_flags(clock.fleet, clock.now())
        alerts = firing(clock.fleet, clock.now(), rules(scaled=True), tmp_path)
        ok = all(handshakes(state).values())
        print("  skipped %d: alert rules (scaled) firing: %s" % (step, sorted(
            {a for a, _i in alerts}) or "none"), flush=True)
        if alerts and first_alert is None and ok:
            first_alert = step
        print("  skipped %d: metrics flag %d: %s" % (step, len(flags), "; ".join(
            sorted({re.sub(r"^node\d ", "", f) for f in flags})) or "none"), flush=True)
        if not ok:
            broken = step
            errors = sorted({e for s in state.values() for hs in s["handshakes"].values()
                             for e in hs["errors"]})
            print("  broken at skipped step %d: %s" % (step, errors), flush=True)
            assert any("CRL has expired" in e or "certificate has expired" in e
                       for e in errors), errors
            status, health, lines = report(clock, tmp_path)
            print("  report.yml: exit %d, health %s, CRL %s; %s" % (
                status, health["health"], health["crl_status"], lines[:2]), flush=True)
            assert status == 2 and health["health"] == "critical", (health, lines)
        elif flags and first_flag is None:
            first_flag = step
            status, health, lines = report(clock, tmp_path)
            print("  report.yml: exit %d, health %s, CRL %s; %s" % (
                status, health["health"], health["crl_status"], lines[:2]), flush=True)
            # the zone still works, and the report says so with its exit status
            assert status == 2 and health["health"] == "warning", (health, lines)
    assert first_flag is not None and first_flag < broken, (first_flag, broken)
    assert first_alert is not None and first_alert < broken, (first_alert, broken)
    # past every notAfter: without the CRL check too, the certificates themselves fail
    last = max(c[1] for s in state.values() for c in s["certs"].values())
    clock.set(last - time.time() + HOUR)
    state = observe(clock, crl_check=False)
    summary("end", clock, state)
    assert not any(handshakes(state).values()), state
    errors = {e for s in state.values() for hs in s["handshakes"].values() for e in hs["errors"]}
    assert any("certificate has expired" in e for e in errors), errors
    status, health, lines = report(clock, tmp_path)
    assert status == 2 and health["health"] == "critical", (health, lines)
    assert health["by_status"]["expired"] == 2 * len(NODES), health
    print("flagged after %d skipped step(s) (alert rules: %d), broken after %d; past notAfter "
          "every handshake fails: %s" % (first_flag, first_alert, broken, sorted(errors)[:3]))
