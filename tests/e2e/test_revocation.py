"""Issuance policy, the issuance ledger and revocation, over a real fleet.

A compromised node cannot get another node's name; every issuance is in the SQLite ledger,
concurrent runs do not corrupt it; revocation reaches a real nginx through the CRL.
"""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from conftest import curl_status, fleet_prefix, nginx_conf, REPO, VENV_BIN, ansible_env, recap

PREFIX = fleet_prefix("tzrev")
ZONE = "rev"
DIR = "/etc/trustzone/%s" % ZONE
CA_DIR = "/var/lib/trustzone/%s" % ZONE
OUTPUTS = []


@pytest.fixture(scope="module")
def fleet(make_fleet):
    fleet = make_fleet(PREFIX, nodes=3, zone=ZONE)
    OUTPUTS.append(fleet.playbook("site.yml").output)
    return fleet


def ledger(fleet, sql="SELECT host, profile, status, serial, fingerprint, revocation_reason "
                      "FROM issuance ORDER BY host, profile, issued_at"):
    script = ("import json, sqlite3; c = sqlite3.connect('%s/ledger.db'); "
              "print(json.dumps(c.execute(%r).fetchall()))" % (CA_DIR, sql))
    return json.loads(fleet.sh("ca", "python3 -c %s" % json.dumps(script)).stdout)


def serial_of(fleet, host, path):
    out = fleet.sh(host, "openssl x509 -in %s -noout -serial" % path).stdout
    return out.strip().split("=", 1)[1].lower().lstrip("0")


def forge(fleet, kind, host="node2", victim="node1"):
    fleet.sh(host, "rm -f %s/server.crt" % DIR)  # so that the node has a request to forge
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory),
         str(REPO / "tests" / "e2e" / "playbooks" / "forged_csr.yml"),
         "-e", "forge_host=%s" % host, "-e", "forge_as=%s" % victim, "-e", "forge_kind=%s" % kind],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=600, check=False)
    OUTPUTS.append(proc.stdout + proc.stderr)
    return proc.returncode, proc.stdout + proc.stderr


def test_every_issuance_is_in_the_ledger(fleet):
    rows = ledger(fleet)
    assert sorted((h, p, s) for h, p, s, *_rest in rows) == sorted(
        (h, p, "valid") for h in ("node1", "node2", "node3") for p in ("client", "server"))
    for host, profile, _status, serial, fingerprint, _reason in rows:
        assert serial_of(fleet, host, "%s/%s.crt" % (DIR, profile)) == serial.lstrip("0")
        der = fleet.sh(host, "openssl x509 -in %s/%s.crt -outform DER | sha256sum"
                       % (DIR, profile)).stdout.split()[0]
        assert der == fingerprint
    assert fleet.sh("ca", "stat -c %%a %s/ledger.db" % CA_DIR).stdout.strip() == "600"


@pytest.mark.parametrize("kind, refusal", [
    ("name", "subjectAltName: node1.rev.trustzone.test not allowed for this host"),
    ("cn", "subject: common name 'node1.rev.trustzone.test', this host may only be "
           "'node2.rev.trustzone.test'"),
    ("ca", "basicConstraints: the CSR asks to be a CA"),
    ("eku", "extendedKeyUsage: client_auth outside the profile"),
])
def test_a_compromised_node_cannot_get_another_identity(fleet, kind, refusal):
    before = ledger(fleet, "SELECT count(*) FROM issuance")[0][0]
    rc, output = forge(fleet, kind)
    assert rc != 0
    assert "refused to sign for node2" in output
    assert refusal in output, output[-3000:]
    assert ledger(fleet, "SELECT count(*) FROM issuance")[0][0] == before  # nothing issued
    assert not fleet.exists("node2", DIR + "/server.crt")
    assert "Traceback" not in output


def test_honest_nodes_heal_after_the_refusals(fleet):
    stats = recap(fleet.playbook("site.yml").output)
    assert all(s["failed"] == 0 for s in stats.values())
    assert fleet.sh("node2", "openssl verify %s/server.crt" % DIR).stdout.strip().endswith(": OK")


def test_concurrent_runs_against_one_ca_neither_corrupt_nor_duplicate(fleet):
    for host in ("node1", "node2", "node3"):
        fleet.sh(host, "rm -f %s/server.crt %s/client.crt" % (DIR, DIR))
    results = {}

    def run(limit):
        results[limit] = fleet.playbook("site.yml", "--limit", limit, check=False)

    threads = [threading.Thread(target=run, args=(limit,))
               for limit in ("ca,node1", "ca,node2,node3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for limit, proc in results.items():
        OUTPUTS.append(proc.output)
        assert proc.returncode == 0, proc.output[-3000:]
    check = ledger(fleet, "PRAGMA integrity_check")
    assert check == [["ok"]]
    serials = ledger(fleet, "SELECT serial FROM issuance")
    assert len(serials) == len({s[0] for s in serials})
    valid = ledger(fleet, "SELECT host, profile, serial FROM issuance WHERE status = 'valid'")
    assert sorted((h, p) for h, p, _status in valid) == sorted(
        (h, p) for h in ("node1", "node2", "node3") for p in ("client", "server"))
    for host, profile, serial in valid:
        assert serial_of(fleet, host, "%s/%s.crt" % (DIR, profile)) == serial.lstrip("0")


NGINX = nginx_conf(DIR)


def client_status(fleet, client, cert_path, expect):
    return curl_status(fleet, client, DIR, cert_path, "%s/client.key" % DIR, expect=expect)


def test_revoked_client_certificate_is_refused_by_nginx(fleet):
    fleet.sh("node1", "cat > /etc/nginx/conf.d/trustzone.conf && nginx -t && "
                      "(nginx -s reload 2>/dev/null || nginx)", input=NGINX)
    fleet.sh("node2", "cp %s/client.crt /tmp/old-client.crt && cp %s/client.key /tmp/old-client.key"
             % (DIR, DIR))
    assert client_status(fleet, "node2", "/tmp/old-client.crt", "200") == "200"
    proc = fleet.playbook("revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node2"]}',
                          "-e", "trustzone_revoke_reason=key_compromise")
    OUTPUTS.append(proc.output)
    rows = ledger(fleet, "SELECT profile, status, revocation_reason FROM issuance "
                         "WHERE host = 'node2' AND status = 'revoked'")
    # every certificate node2 held is revoked: the valid ones and the ones earlier runs
    # superseded (they have not expired)
    assert sorted({tuple(r) for r in rows}) == [("client", "revoked", "key_compromise"),
                                                ("server", "revoked", "key_compromise")]
    assert ledger(fleet, "SELECT count(*) FROM issuance WHERE host = 'node2' AND "
                         "status IN ('valid', 'superseded')") == [[0]]
    serial = serial_of(fleet, "node2", "/tmp/old-client.crt")
    crl = fleet.sh("node1", "openssl crl -in %s/crl.pem -noout -text" % DIR).stdout.lower()
    assert serial in crl.replace(":", "")
    fleet.sh("node1", "nginx -s reload")
    assert client_status(fleet, "node2", "/tmp/old-client.crt", "400") == "400"
    # node3 was not revoked and is still let in
    assert client_status(fleet, "node3", "%s/client.crt" % DIR, "200") == "200"
    # node2 is still in the inventory: site.yml gives it fresh certificates
    proc = fleet.playbook("site.yml", "--diff")
    OUTPUTS.append(proc.output)
    assert "request client: revoked" in proc.output
    fleet.sh("node1", "nginx -s reload")
    assert client_status(fleet, "node2", "%s/client.crt" % DIR, "200") == "200"


def test_unknown_serial_is_a_clear_error_and_revokes_nothing(fleet):
    before = ledger(fleet, "SELECT count(*) FROM issuance WHERE status = 'revoked'")
    proc = fleet.playbook("revoke.yml", "-e", '{"trustzone_revoke_serials": ["deadbeef"]}',
                          check=False)
    OUTPUTS.append(proc.output)
    assert proc.returncode != 0
    assert "no certificate with serial deadbeef in the zone's ledger" in proc.output
    assert ledger(fleet, "SELECT count(*) FROM issuance WHERE status = 'revoked'") == before


def test_pruning_revokes_hosts_that_left_the_inventory(fleet, tmp_path):
    import yaml
    inv = yaml.safe_load(fleet.inventory.read_text())
    del inv["all"]["children"]["trustzone_nodes"]["hosts"]["node3"]
    smaller = tmp_path / "without-node3.yml"
    smaller.write_text(yaml.safe_dump(inv))
    check = fleet.playbook("prune.yml", "--check", inventory=smaller)
    OUTPUTS.append(check.output)
    assert ledger(fleet, "SELECT count(*) FROM issuance WHERE host = 'node3' AND "
                         "status = 'valid'") == [[2]]
    proc = fleet.playbook("prune.yml", inventory=smaller)
    OUTPUTS.append(proc.output)
    rows = ledger(fleet, "SELECT profile, revocation_reason FROM issuance WHERE host = 'node3' "
                         "AND status = 'revoked' ORDER BY profile")
    assert sorted({tuple(r) for r in rows}) == [
        ("client", "cessation_of_operation"), ("server", "cessation_of_operation")]
    # superseded but unexpired ones too: nothing node3 held stays live
    assert ledger(fleet, "SELECT count(*) FROM issuance WHERE host = 'node3' AND "
                         "status IN ('valid', 'superseded')") == [[0]]
    # nodes still in the zone have the new CRL, which lists node3's serials
    serial = serial_of(fleet, "node3", "%s/server.crt" % DIR)
    assert serial in fleet.sh("node1", "openssl crl -in %s/crl.pem -noout -text" % DIR
                              ).stdout.lower().replace(":", "")


def test_damaged_ledger_stops_the_ca_and_is_not_overwritten(fleet):
    fleet.sh("ca", "cp %s/ledger.db /tmp/ledger.good && "
                   "head -c 4096 /dev/urandom > %s/ledger.db" % (CA_DIR, CA_DIR))
    damaged = fleet.sh("ca", "sha256sum %s/ledger.db" % CA_DIR).stdout
    proc = fleet.playbook("site.yml", check=False)
    OUTPUTS.append(proc.output)
    assert proc.returncode != 0
    assert "the issuance ledger is damaged" in proc.output
    assert "restore it from a backup" in proc.output
    assert "Traceback" not in proc.output
    assert fleet.sh("ca", "sha256sum %s/ledger.db" % CA_DIR).stdout == damaged
    fleet.sh("ca", "cp /tmp/ledger.good %s/ledger.db" % CA_DIR)
    fleet.playbook("site.yml")


def test_unparsable_crl_on_the_ca_is_signed_again(fleet):
    fleet.sh("ca", "echo garbage > %s/crl.pem" % CA_DIR)
    proc = fleet.playbook("site.yml", "-v")
    OUTPUTS.append(proc.output)
    assert "the CRL on disk does not parse" in proc.output
    assert fleet.sh("node1", "openssl crl -in %s/crl.pem -noout -nextupdate" % DIR
                    ).stdout.startswith("nextUpdate=")


# --------------------------------------------------------------------------- every cert held

NGINX_DEPTH2 = nginx_conf(DIR, port=8445, verify_depth=2)


def held(fleet, host):
    """``{name: (certificate PEM, full chain PEM, serial)}`` of every certificate ``host``
    holds: each profile's current one and the previous one a renewal kept (``.prev``)."""
    out = {}
    for profile in ("server", "client"):
        for suffix in ("", ".prev"):
            path = "%s/%s.crt%s" % (DIR, profile, suffix)
            if fleet.exists(host, path):
                out[profile + suffix] = (
                    fleet.read(host, path),
                    fleet.read(host, "%s/%s-fullchain.pem%s" % (DIR, profile, suffix)),
                    serial_of(fleet, host, path))
    return out


def openssl_verify(fleet, verifier, cert, chain):
    """``openssl verify -crl_check_all`` on ``verifier`` with its own roots.pem and crl.pem
    (what the zone distributed to it)."""
    fleet.sh(verifier, "cat > /tmp/verify-leaf.pem", input=cert)
    fleet.sh(verifier, "cat > /tmp/verify-chain.pem", input=chain)
    return fleet.sh(verifier, "openssl verify -crl_check_all -CAfile %s/roots.pem -CRLfile "
                              "%s/crl.pem -untrusted /tmp/verify-chain.pem /tmp/verify-leaf.pem"
                    % (DIR, DIR), check=False)


def nginx_status(fleet, client, cert_path, port):
    """HTTP status nginx (ssl_verify_client on, ssl_crl) on node1 answers ``client``
    presenting ``cert_path`` with whichever of its client keys matches it."""
    script = (
        "want=$(openssl x509 -in %(c)s -noout -pubkey); key=; "
        "for k in %(d)s/client.key %(d)s/client.key.prev; do "
        "  [ -f $k ] && [ \"$(openssl pkey -in $k -pubout)\" = \"$want\" ] && key=$k && break; "
        "done; [ -n \"$key\" ] || { echo nokey; exit 0; }; "
        "curl -s -o /dev/null -w '%%{http_code}' --cacert %(d)s/roots.pem --cert %(c)s "
        "--key $key https://%(h)s:%(p)d/"
    ) % {"c": cert_path, "d": DIR, "h": fleet.fqdn("node1"), "p": port}
    return fleet.sh(client, script, check=False).stdout.strip()


def assert_everything_refused(fleet, before, port):
    for name, (cert, chain, serial) in sorted(before.items()):
        proc = openssl_verify(fleet, "node1", cert, chain)
        assert proc.returncode != 0 and "certificate revoked" in proc.output, (name, proc.output)
    for path in ("client-fullchain.pem", "client-fullchain.pem.prev"):
        assert nginx_status(fleet, "node2", "%s/%s" % (DIR, path), port) == "400", path
    # controls: node3, not revoked, passes the same verifiers
    ok = openssl_verify(fleet, "node1", fleet.read("node3", DIR + "/server.crt"),
                        fleet.read("node3", DIR + "/server-fullchain.pem"))
    assert ok.returncode == 0, ok.output
    assert nginx_status(fleet, "node3", DIR + "/client-fullchain.pem", port) == "200"


def revoke_node2(fleet, *args):
    proc = fleet.playbook("revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node2"]}',
                          "-e", "trustzone_revoke_reason=key_compromise", *args)
    OUTPUTS.append(proc.output)
    return proc


def test_revoking_a_host_after_a_renewal_refuses_every_certificate_it_held(fleet, tmp_path):
    import yaml
    OUTPUTS.append(fleet.playbook("site.yml").output)  # a healthy zone to start from
    # a renewal (node2 gets a new name): node2 keeps its previous certificates as .prev. The
    # name is node2's alone (a host var: names are unique in the zone, extra vars are not)
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["children"]["trustzone_nodes"]["hosts"]["node2"][
        "trustzone_certs_extra_names"] = ["alias2.rev.trustzone.test"]
    alias = tmp_path / "with-alias2.yml"
    alias.write_text(yaml.safe_dump(inv))
    proc = fleet.playbook("site.yml", "--limit", "ca,node2", inventory=alias)
    OUTPUTS.append(proc.output)
    before = held(fleet, "node2")
    assert set(before) == {"server", "server.prev", "client", "client.prev"}
    status = dict((s.lstrip("0"), st) for s, st in ledger(
        fleet, "SELECT serial, status FROM issuance WHERE host = 'node2'"))
    assert status[before["server.prev"][2]] == "superseded"
    assert status[before["client.prev"][2]] == "superseded"
    proc = revoke_node2(fleet)
    status = dict((s.lstrip("0"), st) for s, st in ledger(
        fleet, "SELECT serial, status FROM issuance WHERE host = 'node2'"))
    assert {name: status[serial] for name, (_c, _ch, serial) in before.items()} == {
        name: "revoked" for name in before}
    for _name, (_cert, _chain, serial) in before.items():
        assert serial in proc.output  # the play says what it revoked
    fleet.sh("node1", "cat > /etc/nginx/conf.d/trustzone.conf && nginx -t && "
                      "(nginx -s reload 2>/dev/null || nginx)", input=NGINX)
    assert_everything_refused(fleet, before, 8444)
    OUTPUTS.append(fleet.playbook("site.yml").output)  # node2 heals


def intermediate(fleet):
    """The CA's current intermediate (in the generation ``current`` names, docs/ca-state.md)."""
    return fleet.sh("ca", "cd %s && cat \"$(cat current)/intermediate.crt\"" % CA_DIR).stdout


def test_revoking_a_host_after_an_intermediate_rotation_refuses_every_certificate_it_held(
        fleet):
    with_int = ("-e", "trustzone_ca_intermediate=true")
    OUTPUTS.append(fleet.playbook("site.yml", *with_int).output)
    first_int = intermediate(fleet)
    proc = fleet.playbook("site.yml", *with_int, "-e", "trustzone_ca_intermediate_force=true")
    OUTPUTS.append(proc.output)
    assert intermediate(fleet) != first_int
    before = held(fleet, "node2")
    assert set(before) == {"server", "server.prev", "client", "client.prev"}
    # the previous certificates chain through the replaced intermediate
    assert first_int.strip() in before["server.prev"][1]
    assert first_int.strip() not in before["server"][1]
    revoke_node2(fleet, *with_int)
    # the distributed crl.pem holds the root's, the new and the replaced intermediate's CRLs
    crl = fleet.read("node1", DIR + "/crl.pem")
    assert crl.count("BEGIN X509 CRL") == 3
    fleet.sh("node1", "cat > /etc/nginx/conf.d/trustzone-depth2.conf && nginx -t && "
                      "nginx -s reload", input=NGINX_DEPTH2)
    assert_everything_refused(fleet, before, 8445)
    OUTPUTS.append(fleet.playbook("site.yml", *with_int).output)  # node2 heals


def test_no_secret_in_any_output(fleet):
    passphrase = (fleet.inventory.parent / "ca-passphrase").read_text().strip()
    assert len(OUTPUTS) >= 10
    for output in OUTPUTS:
        assert passphrase not in output
        assert "PRIVATE KEY" not in output
