"""site.yml over a real fleet: fails before, passes after, unchanged again.

The tests run in file order against one fleet (a CA host and three nodes); each step builds on
the state the previous ones left, as an operator's runs would.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest
import yaml

from conftest import assert_nothing_changed, fleet_prefix, recap

PREFIX = fleet_prefix("tze2e")
ZONE = "lab"
DIR = "/etc/trustzone/%s" % ZONE


def in_force(ca_dir, name):
    """Shell path of ``name`` in the CA state in force (the generation ``current`` names)."""
    return "%s/$(cat %s/current)/%s" % (ca_dir, ca_dir, name)


ANCHORS = "/usr/local/share/ca-certificates"
OUTPUTS = []  # every playbook output of this module, checked for secrets at the end


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=3, zone=ZONE)


def run(fleet, *args, **kwargs):
    proc = fleet.playbook("site.yml", *args, **kwargs)
    OUTPUTS.append(proc.output)
    return proc


def start_server(fleet, host, zone_dir=DIR, port=8443):
    fleet.sh(host, "pkill -x openssl; rm -f /tmp/s_server.log; true")
    fleet.sh(host, (
        "nohup openssl s_server -accept {port} -cert {d}/server.crt -key {d}/server.key "
        "-CAfile {d}/roots.pem -Verify 1 -verify_return_error -www "
        "> /tmp/s_server.log 2>&1 &").format(port=port, d=zone_dir))
    for _try in range(50):
        if fleet.sh(host, "grep -q ACCEPT /tmp/s_server.log", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("openssl s_server did not start on %s" % host)


def connect(fleet, client, server, cert_dir=DIR, with_cert=True, port=8443):
    cert = "-cert {d}/client.crt -key {d}/client.key".format(d=cert_dir) if with_cert else ""
    return fleet.sh(client, (
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 20 openssl s_client -connect {fqdn}:{port} "
        "{cert} -CAfile /etc/ssl/certs/ca-certificates.crt -verify_return_error "
        "-verify_hostname {fqdn} -quiet 2>&1").format(
            fqdn=fleet.fqdn(server), port=port, cert=cert), check=False)


def sha256_of(fleet, host, path):
    return hashlib.sha256(fleet.read(host, path).encode()).hexdigest()


def test_check_mode_before_first_apply_plans_and_writes_nothing(fleet):
    proc = run(fleet, "--check", "--diff")
    stats = recap(proc.output)
    assert set(stats) == {"ca", "node1", "node2", "node3"}
    for host in ("node1", "node2", "node3"):
        assert stats[host]["changed"] > 0, proc.output
        assert stats[host]["failed"] == 0
        assert not fleet.exists(host, "/etc/trustzone")
        assert fleet.sh(host, "ls %s | grep -c trustzone" % ANCHORS, check=False).stdout.strip() == "0"
    assert stats["ca"]["changed"] == 1
    assert not fleet.exists("ca", "/var/lib/trustzone")
    assert "request server: missing_key, missing_certificate" in proc.output
    assert "request client: missing_key, missing_certificate" in proc.output


def test_node_does_not_trust_the_zone_before_it_joins(fleet):
    run(fleet, "--limit", "ca,node2")
    assert fleet.exists("node2", DIR + "/server.crt")
    assert not fleet.exists("node1", "/etc/trustzone")
    cert = fleet.read("node2", DIR + "/server.crt")
    proc = fleet.sh("node1", "cat > /tmp/node2.crt && openssl verify /tmp/node2.crt",
                    check=False, input=cert)
    assert proc.returncode != 0
    assert ": OK" not in proc.output
    assert "unable to get local issuer certificate" in proc.output


def test_site_issues_every_node_its_identities(fleet):
    proc = run(fleet)
    stats = recap(proc.output)
    assert all(s["failed"] == 0 and s["unreachable"] == 0 for s in stats.values())
    for host in ("node1", "node3"):
        assert stats[host]["changed"] >= 2  # trust store + keys (one call), install
    assert stats["node2"]["changed"] == 0  # joined in the previous step; nothing to do


def test_node_trusts_the_zone_after_it_joins(fleet):
    cert = fleet.read("node2", DIR + "/server.crt")
    proc = fleet.sh("node1", "cat > /tmp/node2.crt && openssl verify /tmp/node2.crt",
                    input=cert)
    assert proc.stdout.strip() == "/tmp/node2.crt: OK"


def test_files_have_the_documented_layout_and_modes(fleet):
    listing = fleet.sh("node1", "stat -c '%n %a %U:%G' {d} {d}/*.crt {d}/*.key {d}/*.pem "
                       "{a}/trustzone-{z}-*.crt".format(d=DIR, a=ANCHORS, z=ZONE)).stdout
    modes = dict(line.rsplit(" ", 2)[0:2] for line in listing.splitlines())
    assert modes[DIR] == "755"
    for name in ("server.crt", "client.crt", "server-fullchain.pem", "client-fullchain.pem",
                 "roots.pem"):
        assert modes["%s/%s" % (DIR, name)] == "644"
    assert modes[DIR + "/server.key"] == "600"
    assert modes[DIR + "/client.key"] == "600"
    anchors = [n for n in modes if n.startswith(ANCHORS)]
    assert len(anchors) == 1 and modes[anchors[0]] == "644"
    assert "root:root" in listing and all("root:root" in l for l in listing.splitlines())
    ca = fleet.sh("ca", "stat -c '%a' /var/lib/trustzone/lab "
                  + in_force("/var/lib/trustzone/lab", "root.key")
                  ).stdout.split()
    assert ca == ["700", "600"]
    assert fleet.read("ca", in_force("/var/lib/trustzone/lab", "root.key")).startswith(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # the certificates carry what the profiles say
    text = fleet.sh("node1", "openssl x509 -in %s/client.crt -noout -text" % DIR).stdout
    assert "TLS Web Client Authentication" in text and "TLS Web Server" not in text
    assert "DNS:%s" % fleet.fqdn("node1") in text
    assert "CA:FALSE" in text
    text = fleet.sh("node1", "openssl x509 -in %s/server.crt -noout -text" % DIR).stdout
    assert "TLS Web Server Authentication" in text


def test_nodes_talk_over_mutual_tls_and_see_each_others_identity(fleet):
    for server, client in (("node1", "node2"), ("node3", "node1")):
        start_server(fleet, server)
        proc = connect(fleet, client, server)
        assert "HTTP/1.0 200 ok" in proc.output, proc.output
        assert "CN = %s" % fleet.fqdn(server) in proc.output  # client verified the server
        log = fleet.read(server, "/tmp/s_server.log")
        assert "CN = %s" % fleet.fqdn(client) in log  # server verified the client


def test_connection_without_client_certificate_is_refused(fleet):
    start_server(fleet, "node1")
    proc = connect(fleet, "node2", "node1", with_cert=False)
    assert "HTTP/1.0 200" not in proc.output
    assert "alert certificate required" in proc.output or "alert number 116" in proc.output


def test_second_run_changes_nothing(fleet):
    stats = recap(run(fleet).output)
    assert {h: s["changed"] for h, s in stats.items()} == {
        "ca": 0, "node1": 0, "node2": 0, "node3": 0}


def test_check_mode_after_apply_reports_no_change(fleet):
    stats = recap(run(fleet, "--check").output)
    assert all(s["changed"] == 0 and s["failed"] == 0 for s in stats.values())


def test_a_second_zone_is_never_trusted(fleet, tmp_path):
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["vars"]["trustzone_name"] = "dev"
    nodes = inv["all"]["children"]["trustzone_nodes"]["hosts"]
    inv["all"]["children"]["trustzone_nodes"]["hosts"] = {"node3": nodes["node3"]}
    dev_inventory = tmp_path / "dev.yml"
    dev_inventory.write_text(yaml.safe_dump(inv))
    OUTPUTS.append(fleet.playbook("site.yml", inventory=dev_inventory).output)
    dev_dir = "/etc/trustzone/dev"
    assert fleet.exists("node3", dev_dir + "/client.crt")
    # node1 (zone lab) refuses node3's dev client certificate ...
    start_server(fleet, "node1")
    proc = connect(fleet, "node3", "node1", cert_dir=dev_dir)
    assert "HTTP/1.0 200" not in proc.output
    assert "unknown ca" in proc.output or "alert number 48" in proc.output, proc.output
    # ... and does not trust the dev root at all
    cert = fleet.read("node3", dev_dir + "/server.crt")
    verify = fleet.sh("node1", "cat > /tmp/dev.crt && openssl verify /tmp/dev.crt", check=False,
                      input=cert)
    assert verify.returncode != 0
    # the lab zone on node3 is untouched by the dev zone, and vice versa
    stats = recap(run(fleet).output)
    assert all(s["changed"] == 0 for s in stats.values())
    assert fleet.exists("node3", dev_dir + "/client.crt")


def test_wrong_ca_passphrase_is_a_clear_error_and_changes_nothing(fleet):
    before = sha256_of(fleet, "ca", in_force("/var/lib/trustzone/lab", "root.key"))
    proc = run(fleet, "-e", "trustzone_ca_passphrase=not-the-right-passphrase", check=False)
    assert proc.returncode != 0
    assert "cannot decrypt the private key: wrong passphrase" in proc.output
    assert re.search(r"/var/lib/trustzone/lab/gen/[0-9]{6}/root\.key", proc.output)
    assert "Traceback" not in proc.output
    assert sha256_of(fleet, "ca", in_force("/var/lib/trustzone/lab", "root.key")) == before


def test_two_ca_hosts_are_refused(fleet, tmp_path):
    inv = yaml.safe_load(fleet.inventory.read_text())
    node1 = inv["all"]["children"]["trustzone_nodes"]["hosts"]["node1"]
    inv["all"]["children"]["trustzone_ca"]["hosts"]["node1"] = node1
    bad = tmp_path / "two-cas.yml"
    bad.write_text(yaml.safe_dump(inv))
    proc = fleet.playbook("site.yml", inventory=bad, check=False)
    OUTPUTS.append(proc.output)
    assert proc.returncode != 0
    assert "trustzone_ca must hold exactly one host, it holds 2 (ca, node1)" in proc.output
    assert not fleet.exists("node1", "/var/lib/trustzone")


def test_malformed_certificate_on_a_node_is_reissued(fleet):
    fleet.sh("node1", "echo 'not a certificate' > %s/server.crt" % DIR)
    proc = run(fleet, "--diff")
    assert "request server: unreadable_certificate" in proc.output
    stats = recap(proc.output)
    assert stats["node1"]["changed"] > 0
    assert stats["node2"]["changed"] == 0 and stats["node3"]["changed"] == 0
    assert fleet.sh("node1", "openssl verify %s/server.crt" % DIR).stdout.strip().endswith(": OK")
    assert fleet.read("node1", DIR + "/server.crt.prev").strip() == "not a certificate"


def test_symlinked_certificate_is_refused_not_followed(fleet):
    fleet.sh("node2", "cp /etc/hostname /tmp/victim && rm %s/client.crt && "
                      "ln -s /tmp/victim %s/client.crt" % (DIR, DIR))
    before = fleet.read("node2", "/tmp/victim")
    proc = run(fleet, check=False)
    assert proc.returncode != 0
    assert "%s/client.crt: is a symbolic link; refusing to follow or replace it" % DIR in proc.output
    assert "Traceback" not in proc.output
    assert fleet.read("node2", "/tmp/victim") == before
    assert fleet.sh("node2", "test -L %s/client.crt" % DIR, check=False).returncode == 0
    fleet.sh("node2", "rm %s/client.crt" % DIR)
    run(fleet)  # with the link gone the node heals
    assert fleet.sh("node2", "openssl verify %s/client.crt" % DIR).stdout.strip().endswith(": OK")


# --------------------------------------------------------------------------- the no-op round
# (docs/performance.md): the CA host and every node check themselves at once; a zone needing
# nothing ends there without the lease, the nodes answering from their stamps.

NOTHING = "zone lab: nothing to do (the CA host and every node checked at once)"
STAMP = DIR + "/.trustzone-stamp.json"
CRYPTO = "/usr/lib/python3/dist-packages/cryptography"


def ca_files(fleet):
    """Every file under /var/lib/trustzone on the CA host: path, mtime and SHA-256."""
    return fleet.sh("ca", "cd /var/lib/trustzone && find . -type f -printf '%p %T@ ' "
                          "-exec sha256sum {} \\; | sort").stdout


def test_a_settled_zone_ends_after_the_check_round_without_the_lease(fleet):
    run(fleet)  # whatever the tests above left, made right
    run(fleet)  # the nodes' stamps written
    before = ca_files(fleet), {h: fleet.tree(h, DIR) for h in ("node1", "node2", "node3")}
    time.sleep(1.1)
    proc = run(fleet)
    assert NOTHING in proc.output
    assert_nothing_changed(proc)
    assert "TASK [Take the zone's run lease (waits" not in proc.output
    assert "TASK [trustzone.pki.certs : Sign every pending request" not in proc.output
    assert (ca_files(fleet), {h: fleet.tree(h, DIR) for h in ("node1", "node2", "node3")}) \
        == before  # nothing written on the CA host (no lease taken) nor on a node
    for host in ("node1", "node2", "node3"):
        assert fleet.sh(host, "stat -c '%a %U' " + STAMP).stdout.split() == ["600", "root"]


def test_a_stamped_node_answers_without_cryptography(fleet):
    """Only the stamp can answer with cryptography gone from the node: a full check fails."""
    fleet.sh("node1", "mv %s %s.off" % (CRYPTO, CRYPTO))
    try:
        proc = run(fleet)
        assert NOTHING in proc.output
        assert_nothing_changed(proc)
        fleet.sh("node1", "touch %s/server.crt" % DIR)  # the stamp no longer stands
        proc = run(fleet, check=False)
        assert proc.returncode != 0
        assert "cryptography" in proc.output and "Traceback" not in proc.output
    finally:
        fleet.sh("node1", "mv %s.off %s" % (CRYPTO, CRYPTO))
    # with it back, the check round's full check finds the node right and stamps it again
    before = fleet.read("node1", STAMP)
    assert NOTHING in run(fleet).output
    assert fleet.read("node1", STAMP) != before


FLIP = """
import os
p = "%s/server.crt"
st = os.stat(p)
data = bytearray(open(p, "rb").read())
i = data.index(b"\\n") + 40
data[i] = ord("A") if data[i] != ord("A") else ord("B")
open(p, "wb").write(bytes(data))
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
""" % DIR

LEDGER = """
import sqlite3, sys
c = sqlite3.connect("/var/lib/trustzone/lab/ledger.db")
where = "host = 'node3' AND profile = 'client' AND status = 'valid'"
if sys.argv[1] == "spoil":
    c.execute("UPDATE issuance SET status = 'superseded' WHERE " + where)
    c.commit()
print(c.execute("SELECT count(*) FROM issuance WHERE " + where).fetchone()[0])
"""


def test_a_changed_byte_with_the_same_size_and_mtime_is_found(fleet):
    others = {h: fleet.tree(h, DIR) for h in ("node1", "node3")}
    fleet.sh("node2", "python3 -", input=FLIP)
    proc = run(fleet)
    assert NOTHING not in proc.output
    stats = recap(proc.output)
    # (node1's count includes the run-once signing task, which recap puts on the first host)
    assert stats["node2"]["changed"] > 0 and stats["node3"]["changed"] == 0
    assert {h: fleet.tree(h, DIR) for h in ("node1", "node3")} == others
    assert fleet.sh("node2", "openssl verify %s/server.crt" % DIR).stdout.strip().endswith(": OK")
    assert NOTHING in run(fleet).output


def test_a_ledger_out_of_step_takes_the_full_path_and_is_reconciled(fleet):
    assert fleet.sh("ca", "python3 - spoil", input=LEDGER).stdout.strip() == "0"
    proc = run(fleet)
    assert NOTHING not in proc.output
    assert "TASK [Take the zone's run lease (waits" in proc.output
    assert fleet.sh("ca", "python3 - count", input=LEDGER).stdout.strip() == "1"
    assert NOTHING in run(fleet).output


def test_nodes_checked_against_outputs_the_ca_no_longer_gives_take_the_full_path(fleet, tmp_path):
    """Another controller re-signs the CRL on the CA host alone: the nodes still hold the old
    one, which is what this controller kept. Each node answers "nothing to change" against
    that, but its result says (from the controller) what it was checked against, and the
    verdict compares that with the CA's outputs, node by node."""
    assert NOTHING in run(fleet).output
    old = fleet.read("node1", DIR + "/crl.pem")
    run(fleet, "--limit", "ca", "-e", "trustzone_zone_cache_dir=%s" % (tmp_path / "other"),
        "-e", "trustzone_ca_crl_lifetime=8d", "-e", "trustzone_ca_crl_refresh_before=7d")
    assert fleet.read("node1", DIR + "/crl.pem") == old
    proc = run(fleet, "-v")
    assert NOTHING not in proc.output
    for host in ("node1", "node2", "node3"):
        assert "%s was checked against other roots, issuer or CRL than the CA's" % host \
            in proc.output
    new = fleet.read("node1", DIR + "/crl.pem")
    assert new != old and new == fleet.read("node2", DIR + "/crl.pem")
    assert NOTHING in run(fleet).output


def test_check_mode_on_a_settled_zone_ends_early_and_writes_nothing(fleet):
    before = {h: fleet.tree(h, DIR) for h in ("node1", "node2", "node3")}
    proc = run(fleet, "--check")
    assert NOTHING in proc.output
    assert_nothing_changed(proc)
    assert {h: fleet.tree(h, DIR) for h in ("node1", "node2", "node3")} == before


def test_trustzone_zone_check_false_takes_the_full_path(fleet):
    proc = run(fleet, "-e", "trustzone_zone_check=false")
    assert NOTHING not in proc.output
    assert "TASK [Take the zone's run lease (waits" in proc.output
    assert_nothing_changed(proc)


def test_no_secret_ever_appears_in_output(fleet):
    OUTPUTS.append(run(fleet, "-vvv").output)
    passphrase = (fleet.inventory.parent / "ca-passphrase").read_text().strip()
    assert len(OUTPUTS) >= 10
    for output in OUTPUTS:
        assert passphrase not in output
        assert "PRIVATE KEY" not in output
