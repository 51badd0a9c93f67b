"""Overlapping runs over a real fleet (docs/concurrency.md): two site.yml started together
over the whole inventory, after the nodes' certificates were deleted, end with every node
holding exactly the ledger's valid certificates, every valid row installed, key and
certificate matching, and a third run changing nothing. Runs serialize on the zone's run
lease; the second one says that it waits. On the same fleet: a run killed while holding the
lease does not block the next, and a revoked identity is renewed with a new key and never
rolled back to."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import REPO, VENV_BIN, ansible_env, fleet_prefix, recap

PREFIX = fleet_prefix("tzcon")
ZONE = "con"
DIR = "/etc/trustzone/%s" % ZONE
CA_DIR = "/var/lib/trustzone/%s" % ZONE
NODES = ("node1", "node2", "node3")
PROFILES = ("client", "server")
TRIALS = int(os.environ.get("TRUSTZONE_CONCURRENCY_TRIALS", "3"))


@pytest.fixture(scope="module")
def fleet(make_fleet):
    fleet = make_fleet(PREFIX, nodes=3, zone=ZONE)
    fleet.playbook("site.yml")
    return fleet


def valid_rows(fleet):
    script = ("import json, sqlite3; c = sqlite3.connect('%s/ledger.db'); print(json.dumps("
              "c.execute(\"SELECT host, profile, fingerprint FROM issuance WHERE status = "
              "'valid' ORDER BY host, profile\").fetchall()))" % CA_DIR)
    return json.loads(fleet.sh("ca", "python3 -c %s" % json.dumps(script)).stdout)


def installed(fleet, host, profile):
    return fleet.sh(host, "openssl x509 -in %s/%s.crt -outform DER | sha256sum"
                    % (DIR, profile)).stdout.split()[0]


def key_matches(fleet, host, profile):
    out = fleet.sh(host, "a=$(openssl x509 -in {d}/{p}.crt -noout -pubkey | sha256sum); "
                         "b=$(openssl pkey -in {d}/{p}.key -pubout | sha256sum); "
                         "test \"$a\" = \"$b\" && echo same".format(d=DIR, p=profile),
                   check=False)
    return out.stdout.strip() == "same"


def start(fleet, *extra):
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory),
           str(REPO / "playbooks" / "site.yml"), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=ansible_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_two_site_runs_started_together_converge(fleet, trial):
    for host in NODES:
        fleet.sh(host, "rm -f %s/server.crt %s/client.crt" % (DIR, DIR))
    runs = [start(fleet), start(fleet)]
    outputs = [run.communicate(timeout=1200)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-6000:]
    # One run waited for the other, and said so.
    assert any("RETRYING" in out and "run lease" in out for out in outputs), \
        "\n----\n".join(o[-3000:] for o in outputs)

    rows = valid_rows(fleet)
    by_key = {}
    for host, profile, fingerprint in rows:
        by_key.setdefault((host, profile), []).append(fingerprint)
    for host in NODES:
        for profile in PROFILES:
            assert len(by_key.get((host, profile), [])) == 1, (host, profile, rows)
            assert installed(fleet, host, profile) == by_key[(host, profile)][0], \
                (trial, host, profile)
            assert key_matches(fleet, host, profile), (trial, host, profile)
    assert {h for h, _p, _f in rows} <= set(NODES) | {"proxy1"}

    third = fleet.playbook("site.yml")
    stats = recap(third.output)
    assert stats and all(s["changed"] == 0 and s["failed"] == 0 for s in stats.values()), \
        third.output[-4000:]
    assert not fleet.exists("ca", "%s.lease" % CA_DIR)  # given back


def test_a_dead_run_does_not_block_the_next(fleet):
    """A run killed while it holds the lease: the next run from this controller takes the
    lease over at once (its process is gone) instead of waiting for the TTL. (The zone needs
    nothing by now, which the check round would settle without a lease: it is turned off.)"""
    run = start(fleet, "-e", "trustzone_zone_check=false")
    try:
        for _attempt in range(600):
            if fleet.exists("ca", "%s.lease" % CA_DIR):
                break
            import time
            time.sleep(0.2)
        assert fleet.exists("ca", "%s.lease" % CA_DIR)
    finally:
        run.kill()
        run.communicate(timeout=60)
    assert fleet.exists("ca", "%s.lease" % CA_DIR)
    # a run that finds the zone settled takes no lease and leaves this one alone; the next
    # run that must write takes it over
    settled = fleet.playbook("site.yml")
    assert "nothing to do" in settled.output and fleet.exists("ca", "%s.lease" % CA_DIR)
    after = fleet.playbook("site.yml", "-v", "-e", "trustzone_zone_check=false")
    assert "no longer alive on this controller" in after.output
    assert not fleet.exists("ca", "%s.lease" % CA_DIR)


def pubkey(fleet, host, path):
    return fleet.sh(host, "openssl pkey -in %s -pubout | sha256sum" % path).stdout.split()[0]


def test_revocation_rekeys_and_rollback_refuses_the_revoked_generation(fleet):
    """A certificate revoked for key compromise is renewed with a new key even when the
    profile says regenerate_key: false, and rollback.yml refuses to bring it back."""
    fleet.playbook("site.yml")
    old_key = pubkey(fleet, "node1", "%s/server.key" % DIR)
    old_cert = fleet.read("node1", "%s/server.crt" % DIR)
    fleet.playbook("revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node1"]}',
                   "-e", "trustzone_revoke_reason=key_compromise")
    keep_keys = json.dumps({"trustzone_certs_profiles": [
        {"name": "server", "extended_key_usage": ["server_auth"], "regenerate_key": False},
        {"name": "client", "extended_key_usage": ["client_auth"], "regenerate_key": False}]})
    renewed = fleet.playbook("site.yml", "-e", keep_keys, "--diff")
    assert "request server: revoked" in renewed.output, renewed.output[-3000:]
    assert pubkey(fleet, "node1", "%s/server.key" % DIR) != old_key
    assert key_matches(fleet, "node1", "server")
    assert fleet.read("node1", "%s/server.crt.prev" % DIR) == old_cert
    current = fleet.read("node1", "%s/server.crt" % DIR)
    proc = fleet.playbook("rollback.yml", "--limit", "node1", "-e",
                          '{"trustzone_certs_rollback_profiles": ["server"]}', check=False)
    assert proc.returncode != 0
    assert "is on the zone's CRL; rolling back to it would reinstate a revoked identity" in \
        proc.output, proc.output[-3000:]
    assert fleet.read("node1", "%s/server.crt" % DIR) == current
    assert key_matches(fleet, "node1", "server")
