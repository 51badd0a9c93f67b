"""The offline root over a real fleet: the root key never sits on the CA host.

A zone with ``trustzone_ca_root_offline: true`` keeps its root keys in a store on the
controller (here: under the fleet's own .lab directory) and the CA host holds only the root
certificates and the intermediate that signs leaves. After every step - site.yml, an
intermediate re-issue, a revocation, a full root rotation, a backup and a restore - the
whole CA directory is searched for the private key of any root the store holds (under any
name, encrypted with the CA passphrase or not), the plays say what the root key did, and
the zone's nodes still complete mutual TLS with each other.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import assert_nothing_changed, fleet_prefix, mtls_status, recap

PREFIX = fleet_prefix("tzoff")
ZONE = "off"
DIR = "/etc/trustzone/%s" % ZONE
CA_DIR = "/var/lib/trustzone/%s" % ZONE
ROOT_PASSPHRASE = "offline root passphrase, kept apart"
BACKUP_PASSPHRASE = "backup passphrase for the offline zone"
HOSTS = ("ca", "node1", "node2")
SAID = "zone %s: the offline root key " % ZONE


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=2, zone=ZONE)


@pytest.fixture(scope="module")
def offline(fleet):
    """``-e @file`` arguments: the offline settings, the root passphrase in a 0600 file."""
    base = fleet.inventory.parent
    store = base / "offline-root"
    path = base / "offline.yml"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump({"trustzone_ca_root_offline": True, "trustzone_ca_root_dir": str(store),
                        "trustzone_ca_root_passphrase": ROOT_PASSPHRASE,
                        "trustzone_backup_passphrase": BACKUP_PASSPHRASE}, handle)
    return {"args": ("-e", "@%s" % path), "store": store}


def ca_files(fleet):
    """``{path: bytes}`` of every file under the CA directory on the CA host."""
    return fleet.tree("ca", CA_DIR)


def assert_no_root_key_on_the_ca_host(fleet, store):
    roots = [x509.load_pem_x509_certificate(p.read_bytes()) for p in store.glob("*.crt")]
    assert roots, "the store holds no root"
    assert all((store / (p.stem + ".key")).exists() for p in store.glob("*.crt"))
    assert oct(store.stat().st_mode & 0o777) == "0o700"
    spki = {r.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
            for r in roots}
    passphrase = (fleet.inventory.parent / "ca-passphrase").read_text().strip().encode()
    files = ca_files(fleet)
    assert any(name.endswith("root.offline") for name in files)
    keys = 0
    for name, data in files.items():
        assert not name.endswith(("/root.key", "/next.key")), name
        if b"PRIVATE KEY" not in data:
            continue
        keys += 1
        key = serialization.load_pem_private_key(data, passphrase)
        assert key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo) not in spki, name
    assert keys >= 1  # the intermediate's key is there (the search found keys to check)
    return files


def mtls_both_ways(fleet):
    for server, client in (("node1", "node2"), ("node2", "node1")):
        assert mtls_status(fleet, server, client, DIR) == "200", (server, client)


def said(output):
    return [line.split(SAID, 1)[1].strip() for line in output.splitlines() if SAID in line]


def test_site_makes_the_root_on_the_controller_and_says_so(fleet, offline):
    proc = fleet.playbook("site.yml", *offline["args"])
    lines = said(proc.output)
    assert lines[0].startswith("made the new root ")
    assert any(line.startswith("signed the CA certificate") and "intermediate" in line
               for line in lines)
    assert any(line.startswith("signed the CRL ") for line in lines)
    files = assert_no_root_key_on_the_ca_host(fleet, offline["store"])
    roots = fleet.read("node1", DIR + "/roots.pem")
    assert C_fp(roots) == [p.stem for p in offline["store"].glob("*.crt")]
    assert len([n for n in files if n.endswith("intermediate.key")]) >= 1
    mtls_both_ways(fleet)


def C_fp(pem_text):
    from cryptography.hazmat.primitives import hashes
    return [x509.load_pem_x509_certificate(("-----BEGIN" + block).encode()).fingerprint(
        hashes.SHA256()).hex() for block in pem_text.split("-----BEGIN")[1:]]


def test_a_second_run_needs_nothing_of_the_root(fleet, offline):
    proc = fleet.playbook("site.yml", *offline["args"])
    assert said(proc.output) == []
    assert_nothing_changed(proc, hosts=HOSTS)


def test_an_intermediate_reissue_uses_the_root_on_the_controller_only(fleet, offline):
    proc = fleet.playbook("site.yml", *offline["args"], "-e",
                          "trustzone_ca_intermediate_force=true")
    lines = said(proc.output)
    assert len(lines) == 1 and lines[0].startswith("signed the CA certificate")
    assert_no_root_key_on_the_ca_host(fleet, offline["store"])
    mtls_both_ways(fleet)


def test_revoking_a_node_needs_no_root_key(fleet, offline):
    revoked = x509.load_pem_x509_certificate(fleet.read("node2", DIR + "/server.crt").encode())
    proc = fleet.playbook("revoke.yml", *offline["args"], "-e",
                          json.dumps({"trustzone_revoke_hosts": ["node2"]}))
    assert said(proc.output) == []  # the intermediate's CRL: signed on the CA host
    crls = [x509.load_pem_x509_crl(("-----BEGIN" + block).encode()) for block in
            fleet.read("node1", DIR + "/crl.pem").split("-----BEGIN")[1:]]
    assert any(crl.get_revoked_certificate_by_serial_number(revoked.serial_number)
               for crl in crls)
    fleet.playbook("site.yml", *offline["args"])  # node2 gets new certificates
    assert_no_root_key_on_the_ca_host(fleet, offline["store"])
    mtls_both_ways(fleet)


def test_a_full_rotation_never_puts_a_root_key_on_the_ca_host(fleet, offline):
    before = set(p.stem for p in offline["store"].glob("*.crt"))
    proc = fleet.playbook("rotate_root.yml", *offline["args"], "-e",
                          "trustzone_ca_rotate_force=true", timeout=1500)
    lines = said(proc.output)
    assert any(line.startswith("made the next root ") for line in lines)
    after = set(p.stem for p in offline["store"].glob("*.crt"))
    new = (after - before).pop()
    assert C_fp(fleet.read("node1", DIR + "/roots.pem")) == [new]
    current = fleet.read("ca", CA_DIR + "/current").strip()
    assert ca_files(fleet)["./%s/root.offline" % current].decode() == new
    assert_no_root_key_on_the_ca_host(fleet, offline["store"])
    mtls_both_ways(fleet)
    again = fleet.playbook("site.yml", *offline["args"])
    assert said(again.output) == []
    assert_nothing_changed(again, hosts=HOSTS)


def test_backup_and_restore_cover_the_layout(fleet, offline, tmp_path):
    proc = fleet.playbook("backup.yml", *offline["args"], "-e",
                          "trustzone_backup_dest=%s/zone.tzbackup" % tmp_path)
    assert (tmp_path / "zone.tzbackup").exists(), proc.output[-2000:]
    fleet.sh("ca", "rm -rf %s" % CA_DIR)
    fleet.playbook("restore.yml", *offline["args"], "-e",
                   "trustzone_backup_src=%s/zone.tzbackup" % tmp_path)
    assert_no_root_key_on_the_ca_host(fleet, offline["store"])
    again = fleet.playbook("site.yml", *offline["args"])
    assert said(again.output) == []
    assert recap(again.output)["ca"]["changed"] == 0
    mtls_both_ways(fleet)


def test_a_wrong_root_passphrase_is_one_line_and_writes_nothing(fleet, offline):
    pointer = fleet.read("ca", CA_DIR + "/current")
    wrong = offline["store"].parent / "wrong-root.yml"
    fd = os.open(str(wrong), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump({"trustzone_ca_root_passphrase": "not the offline root passphrase"},
                       handle)
    proc = fleet.playbook("site.yml", *offline["args"], "-e", "@%s" % wrong, "-e",
                          "trustzone_ca_intermediate_force=true", check=False)
    assert proc.returncode != 0
    assert "trustzone_ca_root_passphrase does not open the offline root key" in proc.output
    assert "Traceback" not in proc.output
    assert fleet.read("ca", CA_DIR + "/current") == pointer
    assert "not the offline root passphrase" not in proc.output
    assert ROOT_PASSPHRASE not in proc.output
