"""CA keys in a PKCS#11 token (SoftHSM2 on the CA host), over a real fleet.

The zone's root and intermediate keys are made in the token by the CA play and never exist
in a file on the CA host; leaves, CRLs and a full root rotation are signed through the
token; the PIN never appears in the output; a backup says what it cannot carry, and a
restore onto a new CA host that reaches the same token (its token directory moved over, as
an HSM would be re-attached) signs again. The lab image has softhsm2 and python3-asn1crypto;
python-pkcs11, which Debian does not package, is copied from this machine's venv.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from cryptography import x509

from conftest import (assert_nothing_changed, fleet_prefix, mtls_status, recap,
                      recreate_ca_container, REPO)

PREFIX = fleet_prefix("tzhsm")
ZONE = "hsm"
DIR = "/etc/trustzone/%s" % ZONE
CA_DIR = "/var/lib/trustzone/%s" % ZONE
TOKEN = "tz-hsm"
PIN, SO_PIN = "hsm-user-pin-2718", "hsm-so-pin-3141"
HOSTS = ("ca", "node1", "node2")
TOKENS_DIR = "/var/lib/softhsm/tokens"
OUTPUTS = []
# Run on the CA host from stdin (never argv): softhsm2-util reads PINs from a terminal only.
INIT_TOKEN = r"""
import os, pty, subprocess
master, slave = pty.openpty()
proc = subprocess.Popen(["softhsm2-util", "--init-token", "--free", "--label", %(label)r],
                        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
os.close(slave)
os.write(master, (%(so)r + "\n" + %(so)r + "\n" + %(pin)r + "\n" + %(pin)r + "\n").encode())
out = proc.communicate(timeout=60)[0]
os.close(master)
print(out.decode(errors="replace"))
raise SystemExit(proc.returncode)
"""
# Lists the token's private keys (labels) with the PIN read from stdin's script text.
LIST_KEYS = r"""
import pkcs11
lib = pkcs11.lib("/usr/lib/softhsm/libsofthsm2.so")
token = lib.get_token(token_label=%(label)r)
with token.open(user_pin=%(pin)r) as session:
    keys = session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY})
    print(sorted(k.label for k in keys))
    for k in session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY}):
        assert k[pkcs11.Attribute.SENSITIVE] and not k[pkcs11.Attribute.EXTRACTABLE]
"""


def install_pkcs11(fleet):
    """python-pkcs11 from this machine's venv into the CA host (same Python 3.11 ABI)."""
    site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    fleet.sh("ca", "mkdir -p /usr/local/lib/python3.11/dist-packages")
    subprocess.run(["podman", "cp", str(site / "pkcs11"),
                    "%s:/usr/local/lib/python3.11/dist-packages/" % fleet.container("ca")],
                   check=True, capture_output=True)
    fleet.sh("ca", "python3 -c 'import pkcs11'")


@pytest.fixture(scope="module")
def fleet(make_fleet):
    fleet = make_fleet(PREFIX, nodes=2, zone=ZONE)
    install_pkcs11(fleet)
    fleet.sh("ca", "python3 -", input=INIT_TOKEN % {"label": TOKEN, "so": SO_PIN, "pin": PIN})
    return fleet


@pytest.fixture(scope="module")
def hsm(fleet):
    """``-e @file`` with the token settings; the PIN only in this 0600 file."""
    path = fleet.inventory.parent / "hsm.yml"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump({"trustzone_ca_pkcs11_token": TOKEN, "trustzone_ca_pkcs11_pin": PIN,
                        "trustzone_ca_intermediate": True,
                        "trustzone_backup_passphrase": "backup passphrase for the hsm zone"},
                       handle)
    return ("-e", "@%s" % path)


def play(fleet, *args, **kwargs):
    proc = fleet.playbook(*args, **kwargs)
    OUTPUTS.append(proc.output)
    return proc


def token_keys(fleet):
    out = fleet.sh("ca", "python3 -", input=LIST_KEYS % {"label": TOKEN, "pin": PIN}).stdout
    return json.loads(out.strip().replace("'", '"'))


def assert_no_key_file(fleet):
    """No CA key exists in a file: no file under the CA directory holds a private key."""
    tree = fleet.tree("ca", CA_DIR)
    assert not [n for n, data in tree.items() if b"PRIVATE KEY" in data or n.endswith(".key")]
    current = fleet.read("ca", CA_DIR + "/current").strip()
    labels = {tree["./%s/%s.pkcs11" % (current, stem)].decode() for stem in
              ("root", "intermediate")}
    assert labels <= set(token_keys(fleet))
    return labels


def mtls(fleet):
    assert mtls_status(fleet, "node1", "node2", DIR) == "200"


def test_site_makes_the_ca_keys_in_the_token(fleet, hsm):
    assert token_keys(fleet) == []
    play(fleet, "site.yml", *hsm)
    labels = assert_no_key_file(fleet)
    assert len(token_keys(fleet)) == 2 and all(l.startswith("trustzone-hsm-") for l in labels)
    mtls(fleet)


def test_a_second_run_changes_nothing(fleet, hsm):
    assert_nothing_changed(play(fleet, "site.yml", *hsm), hosts=HOSTS)


def test_revocation_crl_is_signed_by_the_token(fleet, hsm):
    revoked = x509.load_pem_x509_certificate(fleet.read("node2", DIR + "/server.crt").encode())
    play(fleet, "revoke.yml", *hsm, "-e", json.dumps({"trustzone_revoke_hosts": ["node2"]}))
    inter = x509.load_pem_x509_certificate(
        fleet.sh("ca", 'cd %s && cat "$(cat current)/intermediate.crt"' % CA_DIR).stdout.encode())
    crls = [x509.load_pem_x509_crl(("-----BEGIN" + b).encode())
            for b in fleet.read("node1", DIR + "/crl.pem").split("-----BEGIN")[1:]]
    mine = [crl for crl in crls if crl.issuer == inter.subject]
    assert len(mine) == 1 and mine[0].is_signature_valid(inter.public_key())
    assert mine[0].get_revoked_certificate_by_serial_number(revoked.serial_number)
    play(fleet, "site.yml", *hsm)  # node2 heals: new leaves signed through the token
    mtls(fleet)


def test_a_full_rotation_makes_the_next_root_in_the_token(fleet, hsm):
    before = set(token_keys(fleet))
    play(fleet, "rotate_root.yml", *hsm, "-e", "trustzone_ca_rotate_force=true", timeout=1500)
    after = set(token_keys(fleet))
    assert len(after - before) == 2  # the next root and its intermediate
    labels = assert_no_key_file(fleet)
    assert labels <= after - before
    mtls(fleet)


@pytest.mark.parametrize("variable, value, text", [
    ("trustzone_ca_pkcs11_pin", "not-the-pin-0000",
     "the PIN does not open PKCS#11 token 'tz-hsm'"),
    ("trustzone_ca_pkcs11_token", "no-such-token", "no PKCS#11 token labelled 'no-such-token'"),
])
def test_a_wrong_pin_or_token_is_one_line_naming_the_variable_and_writes_nothing(
        fleet, hsm, tmp_path, variable, value, text):
    pointer = fleet.read("ca", CA_DIR + "/current")
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(yaml.safe_dump({variable: value}))
    proc = play(fleet, "site.yml", *hsm, "-e", "@%s" % wrong, "-e",
                "trustzone_ca_intermediate_force=true", check=False)
    assert proc.returncode != 0
    assert text in proc.output and "check %s" % variable in proc.output
    assert "Traceback" not in proc.output
    assert fleet.read("ca", CA_DIR + "/current") == pointer


def test_backup_says_what_it_cannot_carry_and_a_new_ca_host_with_the_token_signs(
        fleet, hsm, tmp_path):
    proc = play(fleet, "backup.yml", *hsm, "-e",
                "trustzone_backup_dest=%s/hsm.tzbackup" % tmp_path)
    assert "not in the archive:" in proc.output
    assert "stays in the PKCS#11 token (not exportable)" in proc.output
    tokens = fleet.sh("ca", "tar -C %s -cf - . | base64 -w0" % TOKENS_DIR).stdout
    recreate_ca_container(fleet)  # the CA host is lost; the HSM is attached to the new one
    install_pkcs11(fleet)
    fleet.sh("ca", "mkdir -p %s && base64 -d | tar -C %s -xf -" % (TOKENS_DIR, TOKENS_DIR),
             input=tokens)
    play(fleet, "restore.yml", *hsm, "-e", "trustzone_backup_src=%s/hsm.tzbackup" % tmp_path)
    assert_no_key_file(fleet)
    assert recap(play(fleet, "site.yml", *hsm).output)["ca"]["changed"] == 0
    before = fleet.read("node1", DIR + "/server.crt")
    play(fleet, "site.yml", *hsm, "-e", "trustzone_ca_intermediate_force=true")
    assert fleet.read("node1", DIR + "/server.crt") != before  # signed through the token
    mtls(fleet)


def test_the_pin_never_appears_in_any_output(fleet):
    assert len(OUTPUTS) >= 8
    for output in OUTPUTS:
        assert PIN not in output and SO_PIN not in output
