"""Disaster recovery over a real fleet: back up the CA, lose the CA host, restore onto a new
one, and carry on as if nothing happened.

One fleet (prefix tzbak): a CA host and three nodes, of which node3 stays out of the inventory
until a new node joins after the restore. The tests run in file order, each building on the
state the previous ones left, as an operator's runs would.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
import yaml

from conftest import fleet_prefix, recreate_ca_container, REPO, VENV_BIN, ansible_env, recap

PREFIX = fleet_prefix("tzbak")
ZONE = "lab"
CA_DIR = "/var/lib/trustzone/%s" % ZONE


def in_force(ca_dir, name):
    """Shell path of ``name`` in the CA state in force (the generation ``current`` names)."""
    return "%s/$(cat %s/current)/%s" % (ca_dir, ca_dir, name)


NODE_DIR = "/etc/trustzone/%s" % ZONE
BACKUP_PASSPHRASE = "backup passphrase for tzbak e2e 7d41"
WRONG_PASSPHRASE = "not the backup passphrase 0000"
NEW_CA_PASSPHRASE = "new ca passphrase for tzbak e2e 93b2"
OUTPUTS = []  # every playbook output of this module, checked for secrets at the end
STATE = {}  # what the first steps saw, for the later ones to compare with


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=3, zone=ZONE)


@pytest.fixture(scope="module")
def work(fleet):
    """Private files of this module: the two-node inventory, vars files holding secrets (so
    they never appear on a command line) and the controller's backup directory."""
    base = fleet.inventory.parent
    inventory = yaml.safe_load(fleet.inventory.read_text())
    del inventory["all"]["children"]["trustzone_nodes"]["hosts"]["node3"]
    paths = {"two_nodes": base / "hosts-two-nodes.yml", "backups": base / "backups",
             "bp": base / "backup-passphrase.yml", "wrong": base / "wrong-passphrase.yml",
             "new": base / "new-ca-passphrase.yml", "new_ca": base / "ca-passphrase-new.yml",
             "wrong_ca": base / "ca-passphrase-wrong.yml"}
    paths["two_nodes"].write_text(yaml.safe_dump(inventory))
    paths["backups"].mkdir(mode=0o700, exist_ok=True)
    for key, data in (("bp", {"trustzone_backup_passphrase": BACKUP_PASSPHRASE}),
                      ("wrong", {"trustzone_backup_passphrase": WRONG_PASSPHRASE}),
                      ("new", {"trustzone_ca_new_passphrase": NEW_CA_PASSPHRASE}),
                      ("new_ca", {"trustzone_ca_passphrase": NEW_CA_PASSPHRASE}),
                      ("wrong_ca", {"trustzone_ca_passphrase": WRONG_PASSPHRASE})):
        fd = os.open(str(paths[key]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(data, fh)
    return paths


def play(fleet, playbook, *args, **kwargs):
    proc = fleet.playbook(playbook, *args, **kwargs)
    OUTPUTS.append(proc.output)
    return proc


def changed(proc):
    return changed_in(proc.output)


def changed_in(output):
    return {host: stats["changed"] for host, stats in recap(output).items()}


def ca_listing(fleet):
    """``{path: 'mode owner sha256'}`` of every file under the CA directory (the ledger by its
    rows, since SQLite may rewrite its header without changing any row)."""
    out = fleet.sh("ca", "cd %s && find . -type f ! -name 'ledger.db*' -printf '%%P\\n' | sort "
                         "| while read f; do echo \"$f $(stat -c '%%a %%U:%%G' \"$f\") "
                         "$(sha256sum < \"$f\" | cut -c1-64)\"; done" % CA_DIR).stdout
    listing = dict(line.split(" ", 1) for line in out.splitlines())
    listing["ledger rows"] = ledger_rows(fleet)
    return listing


def ledger_rows(fleet):
    return fleet.sh("ca", "python3 -c \"import sqlite3; print(sorted(sqlite3.connect("
                          "'%s/ledger.db').execute('select serial, host, profile, status from "
                          "issuance').fetchall()))\"" % CA_DIR).stdout.strip()


def root_fingerprint(fleet, host, path):
    return fleet.sh(host, "openssl x509 -in %s -noout -fingerprint -sha256 | cut -d= -f2 "
                          "| tr -d : | tr A-F a-f" % path).stdout.strip()


# --------------------------------------------------------------------------- before the loss

def test_zone_runs_with_two_nodes(fleet, work):
    proc = play(fleet, "site.yml", inventory=work["two_nodes"])
    assert set(recap(proc.output)) == {"ca", "node1", "node2"}
    STATE["root_pem"] = fleet.read("ca", in_force(CA_DIR, "root.crt"))
    STATE["root_fp"] = root_fingerprint(fleet, "ca", in_force(CA_DIR, "root.crt"))
    STATE["ca"] = ca_listing(fleet)
    STATE["nodes"] = {h: fleet.sh(h, "sha256sum %s/*" % NODE_DIR).stdout
                      for h in ("node1", "node2")}
    assert "node1" in STATE["ca"]["ledger rows"]


def test_backup_lands_on_the_controller_encrypted_and_0600(fleet, work, tmp_path_factory):
    # run from another directory: by default the archive goes to ./backups/<zone>-<time>
    cwd = tmp_path_factory.mktemp("operator")
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(work["two_nodes"]),
           str(REPO / "playbooks" / "backup.yml"), "-vvv", "-e", "@%s" % work["bp"]]
    proc = subprocess.run(cmd, cwd=cwd, env=ansible_env(), capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL, check=False)
    output = proc.stdout + proc.stderr
    OUTPUTS.append(output)
    assert proc.returncode == 0, output[-4000:]
    assert changed_in(output)["ca"] >= 1
    archives = list((cwd / "backups").glob("lab-*.tzbackup"))
    assert len(archives) == 1
    dest = archives[0]
    data = dest.read_bytes()
    assert data.startswith(b"TZBACKUP")
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    assert oct(dest.parent.stat().st_mode & 0o777) == "0o700"
    for plain in (b"PRIVATE KEY", b"CERTIFICATE", b"SQLite", b"issuance", b"phase"):
        assert plain not in data
    assert hashlib.sha256(data).hexdigest() in output  # the report names its sha256
    assert STATE["root_fp"] in output  # and the zone's root
    assert fleet.sh("ca", "ls -d /tmp/ansible.*trustzone-backup", check=False).returncode != 0
    STATE["archive"] = dest


def test_backup_never_overwrites_an_archive(fleet, work):
    before = STATE["archive"].read_bytes()
    proc = play(fleet, "backup.yml", "-e", "@%s" % work["bp"],
                "-e", "trustzone_backup_dest=%s" % STATE["archive"],
                inventory=work["two_nodes"], check=False)
    assert proc.returncode != 0
    assert "exists already; archives are never overwritten" in proc.output
    assert STATE["archive"].read_bytes() == before


def test_tampered_archive_is_refused_and_changes_nothing(fleet, work):
    data = STATE["archive"].read_bytes()
    tampered = work["backups"] / "tampered.tzbackup"
    middle = len(data) // 2
    tampered.write_bytes(data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1:])
    proc = play(fleet, "restore.yml", "-e", "@%s" % work["bp"],
                "-e", "trustzone_backup_src=%s" % tampered, inventory=work["two_nodes"],
                check=False)
    assert proc.returncode != 0
    assert "%s: refusing to restore: the archive is damaged or was altered" % tampered \
        in proc.output, proc.output[-3000:]
    assert ca_listing(fleet) == STATE["ca"]


def test_wrong_backup_passphrase_is_refused(fleet, work):
    proc = play(fleet, "restore.yml", "-e", "@%s" % work["wrong"],
                "-e", "trustzone_backup_src=%s" % STATE["archive"],
                inventory=work["two_nodes"], check=False)
    assert proc.returncode != 0
    assert "wrong backup passphrase: it does not open this archive" in proc.output
    assert ca_listing(fleet) == STATE["ca"]


# --------------------------------------------------------------------------- loss and restore

def test_ca_host_is_lost_and_a_new_empty_one_takes_its_place(fleet):
    recreate_ca_container(fleet)
    assert not fleet.exists("ca", "/var/lib/trustzone")


def test_restore_check_mode_verifies_and_writes_nothing(fleet, work):
    proc = play(fleet, "restore.yml", "--check", "--diff", "-e", "@%s" % work["bp"],
                "-e", "trustzone_backup_src=%s" % STATE["archive"],
                inventory=work["two_nodes"])
    # the nodes are in the recap (restore.yml reads them after a real restore), unchanged
    assert changed(proc) == {"ca": 1, "node1": 0, "node2": 0}
    assert "create: the CA directory is empty (check mode: nothing written)" in proc.output
    assert "root.key 0600" in proc.output  # the diff lists files, never their contents
    assert not fleet.exists("ca", CA_DIR)


def test_restore_onto_the_new_ca_host(fleet, work):
    proc = play(fleet, "restore.yml", "-vvv", "-e", "@%s" % work["bp"],
                "-e", "trustzone_backup_src=%s" % STATE["archive"],
                inventory=work["two_nodes"])
    # restore.yml also read the nodes and learned nothing: they hold what the archive knows.
    # Two changes on the CA: the restore, and ledger_learn clearing the restore's
    # "learning pending" note (until then the restored CA signs no CRL)
    assert changed(proc) == {"ca": 2, "node1": 0, "node2": 0}
    assert "learned from the fleet: 0 certificate(s) added to the ledger, 0 revocation(s) " \
        "put back" in proc.output
    assert ca_listing(fleet) == STATE["ca"]  # every file, mode and owner; ledger rows
    assert fleet.sh("ca", "stat -c '%%a %%U:%%G' %s" % CA_DIR).stdout.strip() == "700 root:root"
    assert fleet.sh("ca", "ls -d /tmp/ansible.*trustzone-restore", check=False).returncode != 0
    assert not fleet.sh("ca", "ls -a /var/lib/trustzone | grep restore", check=False).stdout


def test_site_after_the_restore_changes_nothing_anywhere(fleet, work):
    proc = play(fleet, "site.yml", inventory=work["two_nodes"])
    assert changed(proc) == {"ca": 0, "node1": 0, "node2": 0}
    for host in ("node1", "node2"):
        assert fleet.sh(host, "sha256sum %s/*" % NODE_DIR).stdout == STATE["nodes"][host]


def test_restore_over_a_different_ca_is_refused_unless_forced(fleet, work):
    # an operator who ran site.yml on the new CA host first: it made a new, different root
    fleet.sh("ca", "rm -rf %s" % CA_DIR)
    play(fleet, "site.yml", "--limit", "ca", inventory=work["two_nodes"])
    other_fp = root_fingerprint(fleet, "ca", in_force(CA_DIR, "root.crt"))
    assert other_fp != STATE["root_fp"]
    proc = play(fleet, "restore.yml", "-e", "@%s" % work["bp"],
                "-e", "trustzone_backup_src=%s" % STATE["archive"],
                inventory=work["two_nodes"], check=False)
    assert proc.returncode != 0
    assert "refusing to restore: the CA directory holds a different root (%s, the archive's " \
           "is %s)" % (other_fp[:16], STATE["root_fp"][:16]) in proc.output
    assert root_fingerprint(fleet, "ca", in_force(CA_DIR, "root.crt")) == other_fp

    proc = play(fleet, "restore.yml", "-e", "@%s" % work["bp"],
                "-e", "trustzone_backup_src=%s" % STATE["archive"],
                "-e", "trustzone_backup_force=true", inventory=work["two_nodes"])
    assert changed(proc) == {"ca": 1, "node1": 0, "node2": 0}
    assert ca_listing(fleet) == STATE["ca"]
    kept = fleet.sh("ca", "ls -d %s.replaced-*" % CA_DIR).stdout.split()
    assert len(kept) == 1
    assert root_fingerprint(fleet, "ca", in_force(kept[0], "root.crt")) == other_fp
    assert "the previous directory is kept in %s" % kept[0] in proc.output


def test_a_new_node_joins_under_the_same_root(fleet, work):
    proc = play(fleet, "site.yml")  # the full inventory: node3 joins
    counts = changed(proc)
    assert counts["node3"] > 0
    # node1 carries the play's one signing task (run_once, delegated to the CA): it signed
    # node3's requests; nothing on node1 or node2 changed
    assert (counts["ca"], counts["node1"], counts["node2"]) == (0, 1, 0)
    for host in ("node1", "node2"):
        assert fleet.sh(host, "sha256sum %s/*" % NODE_DIR).stdout == STATE["nodes"][host]
    check = fleet.sh("node3", "cat > /tmp/original-root.pem && openssl verify -CAfile "
                              "/tmp/original-root.pem %s/server.crt %s/client.crt"
                     % (NODE_DIR, NODE_DIR), input=STATE["root_pem"]).stdout
    assert check.count(": OK") == 2
    anchors = fleet.sh("node3", "ls /usr/local/share/ca-certificates/").stdout.split()
    assert anchors == ["trustzone-%s-%s.crt" % (ZONE, STATE["root_fp"][:16])]
    # the ledger carried over and goes on: node3's two issuances follow the old rows
    rows = ledger_rows(fleet)
    assert rows.count("'node3'") == 2
    assert rows.count("'node1'") == STATE["ca"]["ledger rows"].count("'node1'")


# --------------------------------------------------------------------------- after the backup

def crl_number(fleet, host):
    """The CRL number of ``host``'s crl.pem (every CRL in it carries the same one)."""
    out = fleet.sh(host, "openssl crl -in %s/crl.pem -noout -crlnumber" % NODE_DIR).stdout
    return int(out.strip().split("=", 1)[1].lower().replace("0x", ""), 16)


def serial_of(fleet, host, path):
    out = fleet.sh(host, "openssl x509 -in %s -noout -serial" % path).stdout
    return out.strip().split("=", 1)[1].lower().lstrip("0")


def node3_rows(fleet):
    script = ("import json, sqlite3; print(json.dumps(sqlite3.connect('%s/ledger.db').execute("
              "\"select serial, status, revocation_reason from issuance where host = 'node3'"
              "\").fetchall()))" % CA_DIR)
    return {serial: (status, reason) for serial, status, reason in json.loads(
        fleet.sh("ca", "python3 -c %s" % json.dumps(script)).stdout)}


def test_a_revocation_made_after_a_backup_survives_restoring_that_backup(fleet, work):
    archive = work["backups"] / "before-the-revocation.tzbackup"
    play(fleet, "backup.yml", "-e", "@%s" % work["bp"],
         "-e", "trustzone_backup_dest=%s" % archive)
    backed_up = node3_rows(fleet)
    # after the backup: node3 gets a new server certificate, then everything node3 holds is
    # revoked and the nodes get the new CRLs
    fleet.sh("node3", "rm -f %s/server.crt" % NODE_DIR)
    play(fleet, "site.yml", "--limit", "ca,node3")
    new_serial = serial_of(fleet, "node3", NODE_DIR + "/server.crt")
    assert new_serial not in backed_up
    play(fleet, "revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node3"]}',
         "-e", "trustzone_revoke_reason=key_compromise")
    revoked = node3_rows(fleet)
    assert {status for status, _reason in revoked.values()} == {"revoked"}
    number_before = crl_number(fleet, "node1")
    # the CA host is restored from the archive made before all that
    proc = play(fleet, "restore.yml", "-e", "@%s" % work["bp"],
                "-e", "trustzone_backup_src=%s" % archive, "-e", "trustzone_backup_force=true")
    # nothing was lost: every node3 row is back, revoked with its reason, the new one too
    assert node3_rows(fleet) == revoked
    # and the CRL every node holds now is strictly newer and still lists the revocations
    for host in ("node1", "node2", "node3"):
        assert crl_number(fleet, host) > number_before
    # the play says what it recovered
    assert "learned from the fleet: 1 certificate(s) added to the ledger, %d revocation(s) " \
           "put back, CRL number continues above %d" % (len(revoked), number_before) \
        in proc.output, proc.output[-4000:]
    listed = fleet.sh("node1", "openssl crl -in %s/crl.pem -noout -text" % NODE_DIR
                      ).stdout.lower().replace(":", "")
    assert all(serial.lstrip("0") in listed for serial in revoked)
    fleet.sh("node1", "cat > /tmp/node3.pem",
             input=fleet.read("node3", NODE_DIR + "/server.crt"))
    check = fleet.sh("node1", "openssl verify -crl_check_all -CAfile %s/roots.pem -CRLfile "
                              "%s/crl.pem /tmp/node3.pem" % (NODE_DIR, NODE_DIR), check=False)
    assert check.returncode != 0 and "certificate revoked" in check.output, check.output
    # site.yml carries on: node3 gets new certificates, nothing published goes backwards
    number_restored = crl_number(fleet, "node1")
    play(fleet, "site.yml")
    assert crl_number(fleet, "node1") >= number_restored
    assert fleet.sh("node3", "openssl verify -CAfile %s/roots.pem %s/server.crt"
                    % (NODE_DIR, NODE_DIR)).stdout.strip().endswith(": OK")


# --------------------------------------------------------------------------- passphrase

def test_change_passphrase_refuses_a_wrong_current_one_and_re_encrypts_with_the_right_one(fleet, work):
    keys_before = fleet.sh("ca", "sha256sum %s" % in_force(CA_DIR, "root.key")).stdout
    proc = play(fleet, "change_passphrase.yml", "-e", "@%s" % work["wrong_ca"],
                "-e", "@%s" % work["new"], check=False)
    assert proc.returncode != 0
    assert "the current CA passphrase does not open root.key; nothing was changed" \
        in proc.output
    assert fleet.sh("ca", "sha256sum %s" % in_force(CA_DIR, "root.key")).stdout == keys_before

    proc = play(fleet, "change_passphrase.yml", "-e", "@%s" % work["new"])
    assert changed(proc) == {"ca": 1}
    assert "re-encrypted: root.key" in proc.output
    assert fleet.sh("ca", "stat -c '%%a %%U:%%G' %s"
                    % in_force(CA_DIR, "root.key")).stdout.strip() \
        == "600 root:root"
    # the CA works with the new passphrase (and a re-run of the change is a no-op: unit tests)
    proc = play(fleet, "site.yml", "--limit", "ca", "-e", "@%s" % work["new_ca"])
    assert changed(proc) == {"ca": 0}


# --------------------------------------------------------------------------- secrets

def test_no_secret_in_any_output(fleet):
    ca_passphrase = (fleet.inventory.parent / "ca-passphrase").read_text().strip()
    assert len(OUTPUTS) >= 13
    for output in OUTPUTS:
        for secret in (ca_passphrase, BACKUP_PASSPHRASE, NEW_CA_PASSPHRASE, WRONG_PASSPHRASE):
            assert secret not in output
        assert "PRIVATE KEY" not in output
