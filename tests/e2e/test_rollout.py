"""Rollouts that protect the services: canary batches, probes, automatic rollback (issue 21).

Every node runs a real service that demands a zone client certificate: ``openssl s_server``
on :8443 with the node's server certificate and the zone's roots, restarted by the node's
reload command (``tz-svc reload``). The inventory names the endpoint, a canary group (node3)
and batches of one, so a rollout is three batches: node3, node1, node2.

The canary's service can use only EC keys (``/etc/tz-svc/ec-only``, a property a new
certificate may lack); a renewal from the lab's EC keys to RSA keys breaks it there: the reload fails, the canary is
rolled back automatically to its previous certificates, reloaded and probed again, the other
nodes are never touched, the zone keeps handshaking, the ledger records why, and the run fails
with one line naming what was seen. A service whose reload "works" but keeps the old
certificate is caught by the probe itself. A healthy rollout changes every node in three
batches and probes each; a second run changes nothing and probes nothing.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import fleet_prefix, recap

PREFIX = fleet_prefix("tzrollout")
ZONE = "rollout"
DIR = "/etc/trustzone/%s" % ZONE
OUTPUTS = []

SERVICE = r"""#!/bin/sh
# tz-svc reload: (re)start the zone service with the node's current server certificate.
set -e
D=/etc/trustzone/rollout
if [ -e /etc/tz-svc/ec-only ] && ! openssl pkey -in $D/server.key -noout -text 2>/dev/null \
     | grep -q 'ASN1 OID'; then
  echo "tz-svc: this service cannot use an RSA key ($D/server.key)" >&2
  exit 1
fi
if [ -e /etc/tz-svc/pinned-issuer ] && [ "$(openssl x509 -in $D/server.crt -noout -issuer)" \
     != "$(cat /etc/tz-svc/pinned-issuer)" ]; then
  echo "tz-svc: this service accepts only certificates of $(cat /etc/tz-svc/pinned-issuer)" >&2
  exit 1
fi
date +%s.%N >> /tmp/tz-svc-reloads
if [ -e /etc/tz-svc/stale ]; then exit 0; fi  # says it reloaded, keeps the old certificate
pkill -f 'openssl s_server -accept 8443' || true
sleep 0.3
nohup openssl s_server -accept 8443 -cert $D/server.crt -cert_chain $D/server-fullchain.pem \
  -key $D/server.key -CAfile $D/roots.pem -Verify 1 -verify_return_error -www -quiet \
  </dev/null >/var/log/tz-svc.log 2>&1 &
sleep 0.3
"""

RSA_PROFILES = {"trustzone_certs_profiles": [
    {"name": "server", "extended_key_usage": ["server_auth"], "key_type": "rsa"},
    {"name": "client", "extended_key_usage": ["client_auth"]}]}
NODES = ("node1", "node2", "node3")


@pytest.fixture(scope="module")
def fleet(make_fleet, tmp_path_factory):
    fleet = make_fleet(PREFIX, nodes=3, zone=ZONE)
    fleet.passphrase = (fleet.inventory.parent / "ca-passphrase").read_text().strip()
    inv = yaml.safe_load(fleet.inventory.read_text())
    children = inv["all"]["children"]
    children["trustzone_nodes"].setdefault("vars", {}).update({
        "trustzone_certs_reload_commands": [["/usr/local/bin/tz-svc"]],
        "trustzone_rollout_endpoints": [8443],
        # s_server -www answers GET / with a status page: a health URL on the node's own name
        "trustzone_rollout_health_url": "https://{{ inventory_hostname }}.%s.trustzone.test:8443/"
                                        % ZONE,
        "trustzone_rollout_canary": "rollout_canary",
        "trustzone_rollout_batches": 1,
        "trustzone_rollout_probe_retries": 2,
        "trustzone_rollout_probe_delay": 1,
        "trustzone_rollout_probe_timeout": 3})
    children["rollout_canary"] = {"hosts": {"node3": None}}
    path = tmp_path_factory.mktemp("rollout") / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    fleet.inventory = path
    for host in NODES:
        fleet.sh(host, "mkdir -p /etc/tz-svc && cat > /usr/local/bin/tz-svc && "
                       "chmod 0755 /usr/local/bin/tz-svc", input=SERVICE)
    fleet.sh("node3", "touch /etc/tz-svc/ec-only")
    return fleet


def run(fleet, playbook="site.yml", *args, check=True):
    proc = fleet.playbook(playbook, *args, check=check)
    OUTPUTS.append(proc.output)
    return proc


def served(fleet, client, host):
    """SHA-256 of the certificate ``host`` serves on :8443 to ``client``'s zone client
    certificate, and whether the service answered (it demands that certificate)."""
    proc = fleet.sh(client, (
        "echo 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect %s:8443 "
        "-servername %s -CAfile %s/roots.pem -cert %s/client.crt -key %s/client.key "
        "-verify_return_error -ign_eof >/tmp/probe.out 2>/dev/null; openssl x509 "
        "-in /tmp/probe.out -noout -fingerprint -sha256; grep -ac 'HTTP/1.0 200 ok' "
        "/tmp/probe.out || true")
        % ((fleet.fqdn(host),) * 2 + (DIR,) * 3), check=False)
    match = re.search(r"Fingerprint=([0-9A-F:]+)", proc.stdout)
    answered = proc.stdout.strip().splitlines()[-1:] != ["0"]
    return (match.group(1).replace(":", "").lower() if match else None), answered


def cert_fp(fleet, host, name="server"):
    out = fleet.sh(host, "openssl x509 -in %s/%s.crt -noout -fingerprint -sha256"
                   % (DIR, name)).stdout
    return out.split("=", 1)[1].strip().replace(":", "").lower()


def ledger(fleet, query):
    """Rows of ``query`` on the CA host's ledger."""
    return json.loads(fleet.sh("ca", "python3 -c \"import json, sqlite3, sys; print(json.dumps("
                                     "[list(r) for r in sqlite3.connect('/var/lib/trustzone/"
                                     "%s/ledger.db').execute(sys.stdin.read())]))\"" % ZONE,
                               input=query).stdout)


def reloads(fleet, host):
    return int(fleet.sh(host, "cat /tmp/tz-svc-reloads 2>/dev/null | wc -l").stdout.strip())


def probes(output):
    """``[(probed node, prober), ...]`` of every probe that ran, in order."""
    found = re.findall(r"HANDLER \[trustzone\.pki\.certs : Probe the node's endpoints[^\n]*\n"
                       r"ok: \[(node\d)(?: -> (node\d)[^\]]*)?\]", output)
    return [(probed, prober or probed) for probed, prober in found]


def batch_order(output):
    """The hosts of each node play's batches, in the order they ran."""
    return re.findall(r'"batch \d of \d[^"]*"', output)


def test_the_first_run_builds_the_zone_in_three_batches_and_probes_every_node(fleet):
    proc = run(fleet)
    assert batch_order(proc.output) == ['"batch 1 of 3 (canary): node3"',
                                        '"batch 2 of 3: node1"', '"batch 3 of 3: node2"']
    # one probe per node, each from the right prober: node3 (the first, alone) itself, node1
    # from node3 (an earlier batch), node2 from node3
    assert probes(proc.output) == [("node3", "node3"), ("node1", "node3"), ("node2", "node3")], \
        proc.output
    for host in NODES:
        fp, answered = served(fleet, "node1", host)
        assert answered and fp == cert_fp(fleet, host), host
    stats = recap(proc.output)
    assert all(stats[h]["failed"] == 0 for h in stats)
    # the CA signed each batch's requests once: one row per identity, every one valid
    # (a later batch signing an earlier batch's requests again left extra rows)
    assert ledger(fleet, "SELECT host, profile, status FROM issuance ORDER BY host, profile") \
        == [[h, p, "valid"] for h in NODES for p in ("client", "server")]


def test_a_second_run_changes_nothing_and_probes_nothing(fleet):
    before = {h: reloads(fleet, h) for h in NODES}
    proc = run(fleet)
    assert {h: s["changed"] for h, s in recap(proc.output).items()} == \
        dict.fromkeys(recap(proc.output), 0), proc.output[-8000:]
    assert "Probe the node's endpoints" not in proc.output
    assert "RUNNING HANDLER" not in proc.output
    assert {h: reloads(fleet, h) for h in NODES} == before


def test_check_mode_shows_the_batches_and_changes_nothing(fleet):
    proc = run(fleet, "site.yml", "--check", "-e", json.dumps(RSA_PROFILES))
    assert '"batch 1 of 3 (canary): node3"' in proc.output
    assert "Probe the node's endpoints" not in proc.output or "skipping" in proc.output
    assert fleet.sh("node3", "openssl pkey -in %s/server.key -noout -text | head -1"
                    % DIR).stdout.startswith("Private-Key: (256 bit")


def test_a_canary_its_new_certificate_breaks_is_rolled_back_and_nothing_else_moves(fleet):
    before = {h: cert_fp(fleet, h) for h in NODES}
    reloads_before = {h: reloads(fleet, h) for h in NODES}
    proc = run(fleet, "renew.yml", "-e", json.dumps(RSA_PROFILES), check=False)
    assert proc.returncode != 0
    # the run fails on the canary only, with one line naming the reload and the rollback
    fatal = [line for line in proc.output.splitlines() if line.startswith("fatal: [node3]")]
    assert fatal, proc.output[-4000:]
    verdict = proc.output.split("TASK [Stop with what the probe saw]")[1]
    assert "cannot use an RSA key" in verdict
    # only the server certificate changed (its key type); the client one was left alone
    assert "rolled back server to the previous certificates, which serve again" in verdict, \
        verdict
    assert "fatal: [node1]" not in verdict and "fatal: [node2]" not in verdict
    assert "Rollout stopped: node3 failed in an earlier batch" in proc.output
    # the canary holds and serves its previous certificate again; the others were never touched
    assert cert_fp(fleet, "node3") == before["node3"]
    for host in NODES:
        fp, answered = served(fleet, "node2" if host != "node2" else "node1", host)
        assert answered and fp == before[host], host
    assert {h: cert_fp(fleet, h) for h in ("node1", "node2")} == \
        {h: before[h] for h in ("node1", "node2")}
    assert {h: reloads(fleet, h) for h in ("node1", "node2")} == \
        {h: reloads_before[h] for h in ("node1", "node2")}
    stats = recap(proc.output)
    assert stats["node1"]["changed"] == 0 and stats["node2"]["changed"] == 0
    # the ledger says what happened: the abandoned certificate superseded, the old one valid
    rows = ledger(fleet, "SELECT host, profile, event, restored_fingerprint, detail FROM events")
    assert [(r[0], r[1], r[2]) for r in rows] == [("node3", "server", "rolled_back")]
    assert all("cannot use an RSA key" in r[4] for r in rows)
    assert [r[3] for r in rows if r[1] == "server"] == [before["node3"]]
    assert ledger(fleet, "SELECT fingerprint FROM issuance WHERE host = 'node3' AND "
                         "profile = 'server' AND status = 'valid'") == [[before["node3"]]]


def test_the_report_lists_the_rollback(fleet, tmp_path):
    out = tmp_path / "report.json"
    proc = run(fleet, "report.yml", "-e", "trustzone_report_json=%s" % out,
               "-e", "trustzone_report_html=%s" % (tmp_path / "report.html"),
               "-e", "trustzone_report_fail=false")
    assert re.search(r"Rollbacks: \S+ node3 server rolled_back reload '/usr/local/bin/tz-svc' "
                     r"failed \(rc=1\): tz-svc: this service cannot use an RSA key", proc.output), \
        proc.output[-3000:]
    rollbacks = json.loads(out.read_text())["rollbacks"]
    assert [(e["host"], e["profile"], e["event"]) for e in rollbacks] == \
        [("node3", "server", "rolled_back")]


def test_a_reload_that_keeps_the_old_certificate_is_caught_by_the_probe(fleet):
    fleet.sh("node3", "rm -f /etc/tz-svc/ec-only && touch /etc/tz-svc/stale")
    before = cert_fp(fleet, "node3")
    proc = run(fleet, "renew.yml", "-e", json.dumps(RSA_PROFILES), check=False)
    assert proc.returncode != 0
    verdict = proc.output.split("TASK [Stop with what the probe saw]")[1]
    assert "node3.rollout.trustzone.test:8443: presents certificate %s" % before[:16] in verdict
    assert "not the one just installed" in verdict and "which serve again" in verdict
    assert cert_fp(fleet, "node3") == before
    fp, answered = served(fleet, "node1", "node3")
    assert answered and fp == before


def test_a_healthy_rollout_changes_every_node_in_three_batches_and_probes_each(fleet):
    fleet.sh("node3", "rm -f /etc/tz-svc/stale")
    before = {h: cert_fp(fleet, h) for h in NODES}
    proc = run(fleet, "renew.yml", "-e", json.dumps(RSA_PROFILES))
    assert batch_order(proc.output) == ['"batch 1 of 3 (canary): node3"',
                                        '"batch 2 of 3: node1"', '"batch 3 of 3: node2"']
    # each from a node of an earlier batch: node3's from node1 (the last batch of the
    # previous rollout is no earlier batch here; node3 goes first, alone: itself)
    assert [p[0] for p in probes(proc.output)] == ["node3", "node1", "node2"]
    for host in NODES:
        now = cert_fp(fleet, host)
        assert now != before[host]
        fp, answered = served(fleet, "node1" if host != "node1" else "node2", host)
        assert answered and fp == now
    again = run(fleet, "renew.yml", "-e", json.dumps(RSA_PROFILES))
    assert "Probe the node's endpoints" not in again.output
    assert all(s["changed"] == 0 for s in recap(again.output).values())


def anchors(fleet, host):
    return fleet.sh(host, "ls /usr/local/share/ca-certificates/ | grep -c trustzone-%s-" % ZONE,
                    check=False).stdout.strip()


def test_a_rotation_whose_canary_fails_keeps_the_old_root_and_does_not_retire(fleet):
    # node3's service now takes only certificates of the current root: the use phase's new
    # leaf breaks it. The canary is rolled back to its old-root leaf, the other nodes keep
    # theirs, every node keeps trusting the old root, and the retire phase does not run.
    fleet.sh("node3", "openssl x509 -in %s/server.crt -noout -issuer > /etc/tz-svc/pinned-issuer"
             % DIR)
    before = {h: cert_fp(fleet, h) for h in NODES}
    proc = run(fleet, "rotate_root.yml", "-e", "trustzone_ca_rotate_force=true",
               "-e", json.dumps(RSA_PROFILES), check=False)
    assert proc.returncode != 0
    verdict = proc.output.split("TASK [Stop with what the probe saw]")[1]
    assert "this service accepts only certificates of" in verdict
    assert "rolled back client, server to the previous certificates, which serve again" \
        in verdict, verdict
    assert "Rollout stopped: node3 failed in an earlier batch" in proc.output
    assert "Rotate, phase retire: the CA retires the old root" in proc.output
    assert "not retiring the old root" not in proc.output  # it stopped before, cleanly
    assert {h: cert_fp(fleet, h) for h in NODES} == before
    for host in NODES:
        assert anchors(fleet, host) == "2", host  # the old root and the next one
        fp, answered = served(fleet, "node2" if host != "node2" else "node1", host)
        assert answered and fp == before[host], host
    ca_dir = "/var/lib/trustzone/%s" % ZONE
    assert json.loads(fleet.sh("ca", "cat %s/$(cat %s/current)/rotation.json" % (ca_dir, ca_dir))
                      .stdout)["phase"] == "use"
    # the service is fixed: the same command finishes the rotation, batch by batch
    fleet.sh("node3", "rm -f /etc/tz-svc/pinned-issuer")
    proc = run(fleet, "rotate_root.yml", "-e", json.dumps(RSA_PROFILES))
    assert [p[0] for p in probes(proc.output)] == ["node3", "node1", "node2"]
    for host in NODES:
        assert anchors(fleet, host) == "1", host
        now = cert_fp(fleet, host)
        assert now != before[host]
        fp, answered = served(fleet, "node1" if host != "node1" else "node2", host)
        assert answered and fp == now, host


def test_a_manual_rollback_whose_reload_fails_fails_at_once(fleet):
    # rollback.yml has no rollout: the reload's failure stops the node in the play itself
    fleet.sh("node1", "touch /etc/tz-svc/ec-only")
    try:
        proc = run(fleet, "rollback.yml", "--limit", "node1",
                   "-e", '{"trustzone_certs_rollback_profiles": ["server"]}', check=False)
        assert proc.returncode != 0
        fatal = proc.output.split("[trustzone.pki.certs : Stop here with what the probe saw")
        assert len(fatal) == 2 and "fatal: [node1]" in fatal[1], proc.output[-3000:]
        assert "this service cannot use an RSA key" in fatal[1]
    finally:
        fleet.sh("node1", "rm -f /etc/tz-svc/ec-only")


def test_no_secret_in_any_output(fleet):
    outputs = "\n".join(OUTPUTS)
    assert len(OUTPUTS) >= 11
    assert fleet.passphrase not in outputs
    assert "PRIVATE KEY" not in outputs
    assert "Traceback" not in outputs
