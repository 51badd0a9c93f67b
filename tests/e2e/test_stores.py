"""The stores role over a real fleet: Java, NSS, PKCS#12 and PEM exports.

Fails before, passes after, unchanged again - then a renewal, a second zone and a root
rotation. The tests run in file order against one fleet (a CA host and two nodes); each step
builds on the state the previous ones left. node1 runs the mTLS servers, node2 the clients.

Proof by real consumers: a Java TLS client (compiled here with the Debian JDK's javac, run on
the node's JRE) with the node's keystore and truststore against ``openssl s_server -Verify 1
-verify_return_error``; ``vfychain`` against the NSS database; ``openssl pkcs12``, ``keytool``
and ``pk12util`` opening the PKCS#12 exports with their passphrases.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import REPO, fleet_prefix, recap

PREFIX = fleet_prefix("tzst")
ZONE = "lab"
DIR = "/etc/trustzone/%s" % ZONE
NSSDB = "/etc/pki/nssdb"
CACERTS = "/etc/ssl/certs/java/cacerts"
QLIK = DIR + "/qlikview"
HERE = Path(__file__).resolve().parent
STORES = str(REPO / "playbooks" / "stores.yml")

TRUSTSTORE_PASSWORD = "lab-truststore-password"
KEYSTORE_PASSWORD = "lab-keystore-password-1"
PFX_PASSPHRASE = "lab-pfx-passphrase-modern"
LEGACY_PASSPHRASE = "lab-pfx-passphrase-legacy"
SECRETS = (TRUSTSTORE_PASSWORD, KEYSTORE_PASSWORD, PFX_PASSPHRASE, LEGACY_PASSPHRASE)

STORES_VARS = {
    "trustzone_stores_java": True,
    "trustzone_stores_java_truststore_password": TRUSTSTORE_PASSWORD,
    "trustzone_stores_java_keystore_password": KEYSTORE_PASSWORD,
    "trustzone_stores_nss": True,
    "trustzone_stores_pkcs12_passphrase": PFX_PASSPHRASE,
    "trustzone_stores_pkcs12": [
        {"profile": "server", "path": DIR + "/server.pfx"},
        {"profile": "server", "path": DIR + "/server-legacy.pfx", "encryption": "legacy",
         "passphrase": LEGACY_PASSPHRASE},
    ],
    "trustzone_stores_pem_sets": [
        {"profile": "server", "dir": QLIK,
         "files": {"root.pem": "roots", "server.pem": "cert", "server_key.pem": "key"}},
    ],
}
STORE_FILES = [DIR + "/truststore.p12", DIR + "/server.keystore.p12",
               DIR + "/client.keystore.p12", DIR + "/server.pfx", DIR + "/server-legacy.pfx",
               QLIK + "/root.pem", QLIK + "/server.pem", QLIK + "/server_key.pem",
               NSSDB + "/cert9.db", NSSDB + "/key4.db", NSSDB + "/pkcs11.txt"]
OUTPUTS = []  # every playbook output of this module, checked for secrets at the end
KEYS_SEEN = set()  # base64 lines of every private key the nodes held during the tests


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=2, zone=ZONE)


@pytest.fixture(scope="module")
def vars_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "stores.yml"
    path.write_text(yaml.safe_dump(STORES_VARS))
    return path


@pytest.fixture(scope="module")
def probe(fleet, tmp_path_factory):
    """TlsProbe.class, compiled on the test host and copied to node2."""
    javac = shutil.which("javac")
    if javac is None:
        pytest.fail("javac not found: install openjdk-17-jdk-headless on the test host")
    out = tmp_path_factory.mktemp("java")
    subprocess.run([javac, "--release", "17", "-d", str(out), str(HERE / "java" / "TlsProbe.java")],
                   check=True, capture_output=True, timeout=180)
    subprocess.run(["podman", "cp", str(out / "TlsProbe.class"),
                    "%s:/tmp/TlsProbe.class" % fleet.container("node2")], check=True,
                   timeout=60)
    return "/tmp"


def run(fleet, playbook, *args, **kwargs):
    proc = fleet.playbook(playbook, *args, **kwargs)
    OUTPUTS.append(proc.output)
    return proc


def remember_keys(fleet):
    for host in ("node1", "node2"):
        for name in ("server", "client"):
            text = fleet.read(host, "%s/%s.key" % (DIR, name))
            KEYS_SEEN.update(line for line in text.splitlines() if "-----" not in line)


def snapshot(fleet, host, paths=tuple(STORE_FILES)):
    """``{path: 'inode mtime size'}``: a rewrite changes the inode (atomic rename) or mtime."""
    out = fleet.sh(host, "stat -c '%%n %%i %%Y.%%y %%s' %s" % " ".join(paths)).stdout
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}


def start_server(fleet, host="node1", zone_dir=DIR, port=8443, ca_names=True):
    """openssl s_server demanding a client certificate of the zone (mutual TLS).

    Without ``ca_names`` the server does not tell clients which CAs it accepts, so a Java
    client presents whatever certificate it holds instead of declining to send one. That
    needs TLS 1.2: under TLS 1.3 OpenSSL sends an empty certificate_authorities extension,
    which Java rejects as malformed before it gets to choose a certificate.
    """
    fleet.sh(host, "pkill -x openssl; rm -f /tmp/s_server.log; true")
    fleet.sh(host, (
        "nohup openssl s_server -accept {port} -cert {d}/server.crt -key {d}/server.key "
        "-CAfile {d}/roots.pem -Verify 1 -verify_return_error -www {extra} "
        "> /tmp/s_server.log 2>&1 &").format(
            port=port, d=zone_dir, extra="" if ca_names else "-tls1_2 -no_ca_names"))
    for _try in range(100):
        if fleet.sh(host, "grep -q ACCEPT /tmp/s_server.log", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("openssl s_server did not start on %s" % host)


def java_connect(fleet, probe, keystore=None, keystore_password=KEYSTORE_PASSWORD,
                 truststore=None, truststore_password=TRUSTSTORE_PASSWORD, server="node1"):
    props = []
    if keystore:
        props += ["-Djavax.net.ssl.keyStore=%s" % keystore,
                  "-Djavax.net.ssl.keyStorePassword=%s" % keystore_password]
    if truststore:
        props += ["-Djavax.net.ssl.trustStore=%s" % truststore,
                  "-Djavax.net.ssl.trustStorePassword=%s" % truststore_password]
    return fleet.sh("node2", "timeout 90 java %s -cp %s TlsProbe %s 8443" % (
        " ".join(props), probe, fleet.fqdn(server)), check=False, timeout=120)


def vfychain(fleet, host="node1", cert_from="node2"):
    cert = fleet.read(cert_from, DIR + "/server.crt")
    return fleet.sh(host, "cat > /tmp/peer.crt && vfychain -d sql:%s -u 1 -a /tmp/peer.crt"
                    % NSSDB, check=False, input=cert)


def nss_nicknames(fleet, host="node1"):
    out = fleet.sh(host, "certutil -L -d sql:%s" % NSSDB).stdout
    return sorted(re.findall(r"^(trustzone-\S+)\s+(\S+)\s*$", out, re.M))


def java_aliases(fleet, host, store, password, prefix):
    out = fleet.sh(host, "keytool -list -keystore %s -storepass '%s' 2>/dev/null" % (
        store, password)).stdout
    return sorted(re.findall(r"^(%s[^,]*)," % re.escape(prefix), out, re.M))


def root_fingerprints(fleet, host="node1"):
    """First 16 hex of the SHA-256 of each root in the node's roots.pem, sorted."""
    pem = fleet.read(host, DIR + "/roots.pem").encode()
    return sorted(hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]
                  for c in x509.load_pem_x509_certificates(pem))


# --------------------------------------------------------------------------- before

def test_check_mode_on_a_fresh_fleet_plans_and_writes_nothing(fleet, vars_file):
    # site.yml (its node play ends with the stores role), before anything exists anywhere
    proc = run(fleet, "site.yml", "-e", "@%s" % vars_file, "--check", "--diff")
    stats = recap(proc.output)
    assert all(s["failed"] == 0 for s in stats.values()), proc.output
    for host in ("node1", "node2"):
        assert stats[host]["changed"] > 0
        assert not fleet.exists(host, "/etc/trustzone") and not fleet.exists(host, NSSDB)


def test_check_mode_plans_every_store_and_writes_nothing(fleet, vars_file):
    run(fleet, "site.yml")
    remember_keys(fleet)
    proc = run(fleet, STORES, "-e", "@%s" % vars_file, "--check", "--diff")
    stats = recap(proc.output)
    for host in ("node1", "node2"):
        assert stats[host]["changed"] > 0 and stats[host]["failed"] == 0, proc.output
        for path in STORE_FILES + [QLIK]:
            assert not fleet.exists(host, path), path
        assert fleet.sh(host, "command -v keytool || command -v certutil",
                        check=False).returncode != 0
    assert "write %s/server.pfx (missing)" % DIR in proc.output
    assert "write %s/server_key.pem (missing)" % QLIK in proc.output


def test_before_the_stores_exist_java_and_nss_cannot_use_the_zone(fleet, vars_file, probe):
    # only the role's package step: the JRE and the NSS tools, no store yet
    run(fleet, STORES, "-e", "@%s" % vars_file, "--tags", "trustzone_stores_install")
    start_server(fleet)
    # a Java client without the node's keystore is refused by the mTLS server
    proc = java_connect(fleet, probe)
    assert proc.returncode != 0 and "HTTP/1.0 200" not in proc.output
    assert "certificate_required" in proc.output, proc.output
    # an NSS database (a browser profile, say) does not know the zone's root
    fleet.sh("node1", "mkdir -p %s && certutil -N -d sql:%s --empty-password" % (NSSDB, NSSDB))
    proc = vfychain(fleet)
    assert proc.returncode != 0
    assert "issuer is not recognized" in proc.output, proc.output


# --------------------------------------------------------------------------- after

def test_apply_makes_every_store(fleet, vars_file):
    proc = run(fleet, STORES, "-e", "@%s" % vars_file, "--diff")
    stats = recap(proc.output)
    for host in ("node1", "node2"):
        assert stats[host]["changed"] >= 5 and stats[host]["failed"] == 0, proc.output
        for path in STORE_FILES:
            assert fleet.exists(host, path), path
    modes = fleet.sh("node1", "stat -c '%%n %%a %%U:%%G' %s" % " ".join(STORE_FILES)).stdout
    modes = dict(line.split(" ", 1) for line in modes.splitlines())
    assert modes[DIR + "/truststore.p12"] == "644 root:root"
    for private in ("/server.keystore.p12", "/client.keystore.p12", "/server.pfx",
                    "/server-legacy.pfx"):
        assert modes[DIR + private] == "600 root:root"
    assert modes[QLIK + "/server_key.pem"] == "600 root:root"
    assert modes[QLIK + "/server.pem"] == "644 root:root"
    assert modes[NSSDB + "/cert9.db"] == "644 root:root"


def test_java_client_with_the_nodes_keystore_and_truststore_gets_through(fleet, probe):
    start_server(fleet)
    proc = java_connect(fleet, probe, keystore=DIR + "/client.keystore.p12",
                        truststore=DIR + "/truststore.p12")
    assert proc.returncode == 0, proc.output
    assert "response: HTTP/1.0 200 ok" in proc.output
    assert "server: CN=%s" % fleet.fqdn("node1") in proc.output  # the client verified node1
    assert "CN = %s" % fleet.fqdn("node2") in fleet.read("node1", "/tmp/s_server.log")


def test_truststore_and_nss_hold_exactly_the_zone_roots(fleet):
    roots = root_fingerprints(fleet)
    assert len(roots) == 1
    assert java_aliases(fleet, "node1", DIR + "/truststore.p12", TRUSTSTORE_PASSWORD,
                        "trustzone-") == ["trustzone-lab-%s" % r for r in roots]
    assert nss_nicknames(fleet) == [("trustzone-lab-%s" % r, "CT,,") for r in roots]
    proc = vfychain(fleet)
    assert proc.returncode == 0, proc.output


def test_keystores_hold_each_identity_with_its_chain(fleet):
    for name in ("server", "client"):
        out = fleet.sh("node1", "keytool -list -v -keystore %s/%s.keystore.p12 -storepass '%s'"
                       % (DIR, name, KEYSTORE_PASSWORD)).stdout
        assert "Alias name: %s\n" % name in out
        assert "Entry type: PrivateKeyEntry" in out
        assert "Certificate chain length: 2" in out
        assert "Owner: CN=%s" % fleet.fqdn("node1") in out


@pytest.mark.parametrize("name,passphrase,cipher,mac", [
    ("server.pfx", PFX_PASSPHRASE, "PBES2, PBKDF2, AES-256-CBC", "MAC: sha256"),
    ("server-legacy.pfx", LEGACY_PASSPHRASE, "pbeWithSHA1And3-KeyTripleDES-CBC", "MAC: sha1"),
])
def test_pkcs12_exports_open_in_openssl_keytool_and_pk12util(fleet, name, passphrase, cipher,
                                                             mac):
    path = "%s/%s" % (DIR, name)
    env = "P='%s'" % passphrase
    info = fleet.sh("node1", "%s openssl pkcs12 -in %s -passin env:P -info -noout 2>&1"
                    % (env, path)).stdout
    assert "Shrouded Keybag: %s" % cipher in info and mac in info, info
    # the key inside is the node's key, and the certificate the node's certificate
    key = fleet.sh("node1", "%s openssl pkcs12 -in %s -passin env:P -nocerts -nodes | "
                   "openssl pkey -pubout" % (env, path)).stdout
    assert key == fleet.sh("node1", "openssl pkey -in %s/server.key -pubout" % DIR).stdout
    certs = fleet.sh("node1", "%s openssl pkcs12 -in %s -passin env:P -nokeys | "
                     "grep -c 'BEGIN CERTIFICATE'" % (env, path)).stdout.strip()
    assert certs == "2"  # the certificate and the zone root
    out = fleet.sh("node1", "keytool -list -keystore %s -storepass '%s'"
                   % (path, passphrase)).stdout
    assert "server, " in out and "PrivateKeyEntry" in out
    out = fleet.sh("node1", "pk12util -l %s -W '%s'" % (path, passphrase)).stdout
    assert "Friendly Name: server" in out
    wrong = fleet.sh("node1", "pk12util -l %s -W 'not the passphrase'" % path, check=False)
    assert wrong.returncode != 0


def test_pem_set_is_laid_out_as_configured(fleet):
    assert fleet.read("node1", QLIK + "/root.pem") == fleet.read("node1", DIR + "/roots.pem")
    assert fleet.read("node1", QLIK + "/server.pem") == fleet.read("node1", DIR + "/server.crt")
    assert fleet.read("node1", QLIK + "/server_key.pem") == \
        fleet.read("node1", DIR + "/server.key")
    verify = fleet.sh("node1", "openssl verify -CAfile %s/root.pem %s/server.pem" % (QLIK, QLIK))
    assert verify.stdout.strip().endswith(": OK")


# --------------------------------------------------------------------------- unchanged again

def test_second_run_rewrites_nothing(fleet, vars_file):
    before = {h: snapshot(fleet, h) for h in ("node1", "node2")}
    proc = run(fleet, STORES, "-e", "@%s" % vars_file, "-vvv")
    stats = recap(proc.output)
    assert {h: s["changed"] for h, s in stats.items()} == {"node1": 0, "node2": 0}
    assert {h: snapshot(fleet, h) for h in ("node1", "node2")} == before


def test_check_mode_after_apply_reports_no_change(fleet, vars_file):
    stats = recap(run(fleet, STORES, "-e", "@%s" % vars_file, "--check").output)
    assert all(s["changed"] == 0 and s["failed"] == 0 for s in stats.values())


def test_a_new_encryption_choice_rewrites_only_that_export(fleet, vars_file, tmp_path):
    changed = dict(STORES_VARS, trustzone_stores_pkcs12=[
        STORES_VARS["trustzone_stores_pkcs12"][0],
        dict(STORES_VARS["trustzone_stores_pkcs12"][1], encryption="modern")])
    other = tmp_path / "modern.yml"
    other.write_text(yaml.safe_dump(changed))
    before = snapshot(fleet, "node1")
    proc = run(fleet, STORES, "-e", "@%s" % other, "--diff", "--limit", "node1")
    assert "write %s/server-legacy.pfx (encryption)" % DIR in proc.output
    after = snapshot(fleet, "node1")
    assert [p for p in STORE_FILES if before[p] != after[p]] == [DIR + "/server-legacy.pfx"]
    info = fleet.sh("node1", "P='%s' openssl pkcs12 -in %s/server-legacy.pfx -passin env:P "
                    "-info -noout 2>&1" % (LEGACY_PASSPHRASE, DIR)).stdout
    assert "AES-256-CBC" in info and "MAC: sha256" in info
    # (the next step runs with the legacy setting again and turns it back)


# --------------------------------------------------------------------------- renewal

def test_a_renewed_identity_updates_the_stores_that_hold_it(fleet, vars_file, probe):
    old_serial = fleet.sh("node1", "openssl x509 -in %s/server.crt -noout -serial" % DIR).stdout
    before = snapshot(fleet, "node1")
    fleet.sh("node1", "rm %s/server.crt" % DIR)
    run(fleet, "site.yml", "-e", "@%s" % vars_file)
    remember_keys(fleet)
    after = snapshot(fleet, "node1")
    assert fleet.sh("node1", "openssl x509 -in %s/server.crt -noout -serial"
                    % DIR).stdout != old_serial
    rewritten = sorted(p for p in STORE_FILES if before[p] != after[p])
    assert rewritten == sorted([DIR + "/server.keystore.p12", DIR + "/server.pfx",
                                DIR + "/server-legacy.pfx", QLIK + "/server.pem",
                                QLIK + "/server_key.pem"])
    # the keystore holds the new certificate (keytool prints the serial in lower-case hex)
    keystore_serial = fleet.sh("node1", "keytool -list -v -keystore %s/server.keystore.p12 "
                               "-storepass '%s' | grep -m1 '^Serial number'"
                               % (DIR, KEYSTORE_PASSWORD)).stdout.split(":")[1].strip()
    new_serial = fleet.sh("node1", "openssl x509 -in %s/server.crt -noout -serial"
                          % DIR).stdout.split("=")[1].strip()
    assert keystore_serial.lstrip("0") == new_serial.lower().lstrip("0")
    start_server(fleet)  # with the renewed certificate
    proc = java_connect(fleet, probe, keystore=DIR + "/client.keystore.p12",
                        truststore=DIR + "/truststore.p12")
    assert proc.returncode == 0, proc.output


# --------------------------------------------------------------------------- second zone

def test_a_keystore_from_a_second_zone_is_refused(fleet, probe, tmp_path):
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["vars"]["trustzone_name"] = "dev"
    nodes = inv["all"]["children"]["trustzone_nodes"]["hosts"]
    inv["all"]["children"]["trustzone_nodes"]["hosts"] = {"node2": nodes["node2"]}
    dev_inventory = tmp_path / "dev.yml"
    dev_inventory.write_text(yaml.safe_dump(inv))
    dev_vars = tmp_path / "dev-vars.yml"
    dev_vars.write_text(yaml.safe_dump({
        "trustzone_stores_java": True,
        "trustzone_stores_java_truststore_password": TRUSTSTORE_PASSWORD,
        "trustzone_stores_java_keystore_password": KEYSTORE_PASSWORD,
        "trustzone_stores_java_keystores": [{"profile": "client"}]}))
    lab_before = snapshot(fleet, "node2")
    run(fleet, "site.yml", "-e", "@%s" % dev_vars, inventory=dev_inventory)
    dev = "/etc/trustzone/dev"
    assert fleet.exists("node2", dev + "/client.keystore.p12")
    # node1 (zone lab) names its CAs: Java finds no matching key and sends no certificate
    start_server(fleet)
    proc = java_connect(fleet, probe, keystore=dev + "/client.keystore.p12",
                        truststore=DIR + "/truststore.p12")
    assert proc.returncode != 0 and "HTTP/1.0 200" not in proc.output
    assert "certificate_required" in proc.output, proc.output
    # node1 does not name its CAs: Java presents the dev chain and node1 refuses it
    start_server(fleet, ca_names=False)
    proc = java_connect(fleet, probe, keystore=dev + "/client.keystore.p12",
                        truststore=DIR + "/truststore.p12")
    assert proc.returncode != 0 and "HTTP/1.0 200" not in proc.output, proc.output
    log = fleet.read("node1", "/tmp/s_server.log")
    assert "OU = dev, CN = trustzone dev root CA" in log, log  # it saw the dev chain ...
    assert "certificate verify failed" in log, log             # ... and refused it
    # the same server takes node2's lab keystore
    proc = java_connect(fleet, probe, keystore=DIR + "/client.keystore.p12",
                        truststore=DIR + "/truststore.p12")
    assert proc.returncode == 0, proc.output
    # ... and the dev truststore does not trust node1's lab server certificate
    proc = java_connect(fleet, probe, keystore=DIR + "/client.keystore.p12",
                        truststore=dev + "/truststore.p12")
    assert proc.returncode != 0
    assert "PKIX path building failed" in proc.output, proc.output
    # the lab zone's stores on node2 did not change
    assert snapshot(fleet, "node2") == lab_before


# --------------------------------------------------------------------------- rotation

def test_a_root_rotation_updates_every_store(fleet, vars_file, probe):
    rotate = REPO / "playbooks" / "rotate_root.yml"
    if not rotate.exists():
        pytest.fail("playbooks/rotate_root.yml is missing")
    force = ("-e", "trustzone_ca_rotate_force=true")  # the lab root is far from expiry
    old = root_fingerprints(fleet)
    old_alias = "trustzone-lab-%s" % old[0]
    assert java_aliases(fleet, "node1", CACERTS, "changeit", "debian:trustzone-lab-") == [
        "debian:%s.pem" % old_alias]
    # trust phase: the rotation itself puts the next root beside the current one in every
    # store (rotate_root.yml's node plays end with the stores role)
    run(fleet, str(rotate), *force, "-e", "trustzone_rotate_stop_after=trust",
        "-e", "@%s" % vars_file)
    both = root_fingerprints(fleet)
    assert len(both) == 2 and old[0] in both
    for host in ("node1", "node2"):
        assert java_aliases(fleet, host, DIR + "/truststore.p12", TRUSTSTORE_PASSWORD,
                            "trustzone-lab-") == ["trustzone-lab-%s" % r for r in both]
        assert [n for n, _t in nss_nicknames(fleet, host)] == [
            "trustzone-lab-%s" % r for r in both]
    # use and retire: leaves move to the new root, the old root goes from every store
    proc = run(fleet, str(rotate), *force, "-e", "@%s" % vars_file, "--diff")
    remember_keys(fleet)
    new = root_fingerprints(fleet)
    assert len(new) == 1 and new != old
    for host in ("node1", "node2"):
        assert java_aliases(fleet, host, DIR + "/truststore.p12", TRUSTSTORE_PASSWORD,
                            "trustzone-lab-") == ["trustzone-lab-%s" % new[0]]
        assert nss_nicknames(fleet, host) == [("trustzone-lab-%s" % new[0], "CT,,")]
        # the JRE's system cacerts lost the retired root (Debian's hook never removes it)
        assert java_aliases(fleet, host, CACERTS, "changeit", "debian:trustzone-lab-") == [
            "debian:trustzone-lab-%s.pem" % new[0]]
        # the keystores hold leaves of the new root: they verify against roots.pem, which
        # holds only the new root now
        for name in ("server", "client"):
            fleet.sh(host, "openssl pkcs12 -in %s/%s.keystore.p12 -nokeys -clcerts "
                     "-passin 'pass:%s' | openssl verify -CAfile %s/roots.pem"
                     % (DIR, name, KEYSTORE_PASSWORD, DIR))
    assert "- %s" % old_alias in proc.output
    assert vfychain(fleet).returncode == 0
    start_server(fleet)
    proc = java_connect(fleet, probe, keystore=DIR + "/client.keystore.p12",
                        truststore=DIR + "/truststore.p12")
    assert proc.returncode == 0, proc.output
    # unchanged again: the stores on their own, and the whole zone
    for playbook in (STORES, "site.yml"):
        stats = recap(run(fleet, playbook, "-e", "@%s" % vars_file).output)
        assert all(s["changed"] == 0 for s in stats.values()), playbook


# --------------------------------------------------------------------------- revocation

def vfychain_pem(fleet, host, pem):
    """vfychain (NSS's classic verification, which checks the CRLs the database holds)."""
    return fleet.sh(host, "cat > /tmp/peer.crt && vfychain -d sql:%s -u 1 -a /tmp/peer.crt"
                    % NSSDB, check=False, input=pem)


def nss_crls(fleet, host):
    """``{nickname: crl number}`` of the CRLs the NSS database holds."""
    out = fleet.sh(host, "crlutil -L -d sql:%s" % NSSDB).stdout
    names = re.findall(r"^(\S+)\s+CRL\s*$", out, re.M)
    numbers = {}
    for name in names:
        info = fleet.sh(host, "crlutil -L -n %s -d sql:%s" % (name, NSSDB)).stdout
        numbers[name] = int(re.search(r"Name: CRL Number\s*\n\s*Data: (\d+) ", info).group(1))
    return numbers


def zone_crl_number(fleet, host):
    """Number of the CRL the zone's current root signed, in the node's crl.pem (which also
    holds the CRLs of CAs that left roots.pem but still have unexpired leaves)."""
    root, = x509.load_pem_x509_certificates(fleet.read(host, DIR + "/roots.pem").encode())
    text = fleet.read(host, DIR + "/crl.pem")
    blocks = re.findall(r"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", text, re.S)
    numbers = [crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
               for crl in (x509.load_pem_x509_crl(b.encode()) for b in blocks)
               if crl.issuer == root.subject]
    assert len(numbers) == 1, text
    return numbers[0]


def test_nss_databases_hold_the_zones_crl_and_refuse_a_revoked_certificate(fleet, vars_file):
    roots = root_fingerprints(fleet)
    alias = "trustzone-lab-%s" % roots[0]
    # after site.yml/stores.yml every database holds the CRL of the zone's root, exactly once;
    # the retired root's CRL left with it in the rotation (NSS would keep it, listed by DN)
    for host in ("node1", "node2"):
        assert nss_crls(fleet, host) == {alias: zone_crl_number(fleet, host)}
    revoked = fleet.read("node2", DIR + "/server.crt")
    assert vfychain_pem(fleet, "node1", revoked).returncode == 0  # valid until revoked
    run(fleet, "revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node2"]}')
    number = zone_crl_number(fleet, "node1")
    assert nss_crls(fleet, "node1")[alias] < number  # revoke.yml wrote crl.pem only ...
    assert vfychain_pem(fleet, "node1", revoked).returncode == 0  # ... so NSS still accepts
    # check mode says the CRL would be imported and imports nothing
    before = snapshot(fleet, "node1")
    stats = recap(run(fleet, STORES, "-e", "@%s" % vars_file, "--check", "--diff").output)
    assert stats["node1"]["changed"] > 0 and stats["node1"]["failed"] == 0
    assert snapshot(fleet, "node1") == before
    assert nss_crls(fleet, "node1")[alias] < number
    # site.yml (its node play ends with the stores role): the new CRL replaces the old one
    proc = run(fleet, "site.yml", "-e", "@%s" % vars_file, "--diff")
    assert "+ CRL of %s" % alias in proc.output
    remember_keys(fleet)
    for host in ("node1", "node2"):
        assert nss_crls(fleet, host) == {alias: zone_crl_number(fleet, host)}
    assert zone_crl_number(fleet, "node1") >= number
    # NSS refuses node2's revoked server certificate ...
    proc = vfychain_pem(fleet, "node1", revoked)
    assert proc.returncode != 0, proc.output
    assert "Certificate has been revoked" in proc.output, proc.output
    # ... and accepts the one site.yml issued after the revocation, and node1's own
    fresh = fleet.read("node2", DIR + "/server.crt")
    assert fresh != revoked
    proc = vfychain_pem(fleet, "node1", fresh)
    assert proc.returncode == 0, proc.output
    proc = vfychain_pem(fleet, "node2", fleet.read("node1", DIR + "/server.crt"))
    assert proc.returncode == 0, proc.output
    # a second run changes nothing: no host, no NSS file
    before = {h: snapshot(fleet, h) for h in ("node1", "node2")}
    for playbook in ("site.yml", STORES):
        stats = recap(run(fleet, playbook, "-e", "@%s" % vars_file).output)
        assert all(s["changed"] == 0 for s in stats.values()), playbook
    assert {h: snapshot(fleet, h) for h in ("node1", "node2")} == before
    assert vfychain_pem(fleet, "node1", revoked).returncode != 0


# --------------------------------------------------------------------------- secrets

def test_no_private_key_or_secret_ever_appears_in_output(fleet):
    remember_keys(fleet)
    assert len(OUTPUTS) >= 10 and len(KEYS_SEEN) >= 8
    for output in OUTPUTS:
        assert "PRIVATE KEY" not in output
        for secret in SECRETS:
            assert secret not in output
        for line in KEYS_SEEN:
            assert line not in output
