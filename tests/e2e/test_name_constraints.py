"""Name constraints: the zone's signing CA can vouch for the zone's names only.

A zone with ``trustzone_ca_name_constraints: true`` signs leaves with an intermediate whose
critical nameConstraints are computed from the inventory. The test plays the thief who
holds that intermediate's key (read from the CA host and decrypted with the CA passphrase):
it signs leaves for names outside the zone (www.google.com, 8.8.8.8, an IPv6 address) and,
as a control signed the same way, one for a zone name. Five independent verifiers, each
handed the zone's root as its only anchor, must refuse every outside leaf for the name
constraints and accept the control and every real leaf of the zone:

- OpenSSL: ``openssl verify`` and a curl handshake;
- GnuTLS: ``certtool --verify`` and a ``gnutls-cli`` handshake;
- NSS: ``vfychain`` (classic verifier, the root trusted in an NSS database);
- Java 17 JSSE: the TlsProbe client of the stores tests, the root in a PKCS#12 truststore;
- pyca/cryptography's path validator (``cryptography.x509.verification``).

Then the inventory grows into a new domain: ``--check --diff`` says the intermediate will be
re-issued and why, the real run re-issues it (the root and every trust store unchanged),
and the next run changes nothing. Pinned constraints that leave out an inventory name stop
the run before anything is written.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from conftest import assert_nothing_changed, fleet_prefix, mtls_status, recap, REPO

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = fleet_prefix("tznc")
ZONE = "nc"
DIR = "/etc/trustzone/%s" % ZONE
CA_DIR = "/var/lib/trustzone/%s" % ZONE
ON = ("-e", json.dumps({"trustzone_ca_name_constraints": True}))
HOSTS = ("ca", "node1", "node2")
# What the verifiers say when a name constraint refuses a chain.
REFUSALS = {
    "openssl verify": "permitted subtree violation",
    "curl (OpenSSL)": "permitted subtree violation",
    "certtool (GnuTLS)": "violates the signer's constraints",
    "gnutls-cli (GnuTLS)": "violates the signer's constraints",
    "vfychain (NSS)": "not permitted to issue a certificate with this name",
    "Java JSSE": "name constraints check failed",
    "pyca verifier": "no permitted name constraints matched",
}
OUTSIDE = [("www.google.com", "dns"), ("8.8.8.8", "ip"), ("2001:4860:4860::8888", "ip")]


@pytest.fixture(scope="module")
def fleet(make_fleet):
    fleet = make_fleet(PREFIX, nodes=2, zone=ZONE)
    fleet.playbook("site.yml", *ON)
    return fleet


def ca_file(fleet, name):
    return fleet.sh("ca", 'cd %s && cat "$(cat current)/%s"' % (CA_DIR, name)).stdout


def intermediate(fleet):
    return x509.load_pem_x509_certificate(ca_file(fleet, "intermediate.crt").encode())


def constraints(cert):
    ext = cert.extensions.get_extension_for_class(x509.NameConstraints)
    return ext.critical, ext.value


def test_the_intermediate_carries_the_inventorys_names_and_the_root_none(fleet):
    critical, value = constraints(intermediate(fleet))
    assert critical is True
    dns = sorted(n.value for n in value.permitted_subtrees if isinstance(n, x509.DNSName))
    assert dns == ["ca", "nc.trustzone.test", "node1", "node2"]  # a domain, machine names
    ips = sorted(str(n.value) for n in value.permitted_subtrees if isinstance(n, x509.IPAddress))
    addresses = [ipaddress.ip_network(h["trustzone_node_addresses"][0]) for h in (
        fleet.hosts["all"]["children"][g]["hosts"][name]
        for g, name in (("trustzone_ca", "ca"), ("trustzone_nodes", "node1"),
                        ("trustzone_nodes", "node2")))]
    assert ips == sorted(str(n) for n in ipaddress.collapse_addresses(addresses))
    assert [str(n.value) for n in value.excluded_subtrees] == ["::/0"]
    roots = fleet.read("node1", DIR + "/roots.pem")
    root = x509.load_pem_x509_certificate(roots.encode())
    assert roots.count("BEGIN CERTIFICATE") == 1
    with pytest.raises(x509.ExtensionNotFound):  # anchors stay unconstrained: see the README
        root.extensions.get_extension_for_class(x509.NameConstraints)


# --------------------------------------------------------------------------- the verifiers

class Stacks:
    """The five verifiers, each with the zone's root as its only anchor."""

    def __init__(self, tmp, root_pem, inter_pem):
        self.tmp, self.root_pem, self.inter_pem = tmp, root_pem, inter_pem
        self.root = tmp / "root.pem"
        self.root.write_text(root_pem)
        self.inter = tmp / "intermediate.pem"
        self.inter.write_text(inter_pem)
        self.nssdb = tmp / "nssdb"
        self.nssdb.mkdir()
        run(["certutil", "-N", "-d", "sql:%s" % self.nssdb, "--empty-password"])
        run(["certutil", "-A", "-d", "sql:%s" % self.nssdb, "-n", "zone-root", "-t", "CT,C,",
             "-a", "-i", str(self.root)])
        self.truststore = tmp / "trust.p12"
        run(["keytool", "-importcert", "-noprompt", "-alias", "zone-root", "-file",
             str(self.root), "-keystore", str(self.truststore), "-storetype", "PKCS12",
             "-storepass", "changeit"])
        self.java = tmp / "java"
        run(["javac", "--release", "17", "-d", str(self.java),
             os.path.join(HERE, "java", "TlsProbe.java")])

    def _file(self, name, pem):
        path = self.tmp / name
        path.write_text(pem)
        return path

    def verify(self, leaf_pem, name, usage):
        """``{stack: (accepted, output)}`` of the verifiers that need no key."""
        leaf = self._file("leaf.pem", leaf_pem)
        out = {}
        proc = run(["openssl", "verify", "-CAfile", str(self.root), "-untrusted",
                    str(self.inter), str(leaf)], check=False)
        out["openssl verify"] = (proc.returncode == 0, proc.output)
        bundle = self._file("bundle.pem", leaf_pem + self.inter_pem)
        proc = run(["certtool", "--verify", "--load-ca-certificate", str(self.root),
                    "--infile", str(bundle)], check=False)
        out["certtool (GnuTLS)"] = (proc.returncode == 0 and "Verified." in proc.output,
                                    proc.output)
        proc = run(["vfychain", "-d", "sql:%s" % self.nssdb, "-u",
                    "1" if usage == "server" else "0", "-a", str(leaf), "-a", str(self.inter)],
                   check=False)
        out["vfychain (NSS)"] = (proc.returncode == 0 and "Chain is good" in proc.output,
                                 proc.output)
        out["pyca verifier"] = pyca(self.root_pem, self.inter_pem, leaf_pem, name, usage)
        return out

    def handshake(self, leaf_pem, key_pem, name):
        """``{stack: (accepted, output)}`` of curl, gnutls-cli and Java against an
        ``openssl s_server`` on loopback presenting the leaf and the intermediate. ``name``
        (a DNS name) resolves to loopback for each client: no traffic leaves the machine."""
        leaf = self._file("server.pem", leaf_pem)
        key = self._file("server.key", key_pem)
        os.chmod(key, 0o600)
        hosts = self._file("hosts", "127.0.0.1 %s\n" % name)
        port = 18443
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-cert", str(leaf),
             "-key", str(key), "-cert_chain", str(self.inter), "-www"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            out = {}
            proc = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                        str(self.root), "--resolve", "%s:%d:127.0.0.1" % (name, port),
                        "https://%s:%d/" % (name, port)], check=False)
            out["curl (OpenSSL)"] = (proc.stdout.strip() == "200", proc.output)
            proc = run(["gnutls-cli", "--x509cafile=%s" % self.root, "--port=%d" % port,
                        "--verify-hostname=%s" % name, "127.0.0.1"],
                       check=False, stdin="")
            out["gnutls-cli (GnuTLS)"] = (proc.returncode == 0 and "Handshake was completed"
                                          in proc.output, proc.output)
            proc = run(["java", "-Djdk.net.hosts.file=%s" % hosts,
                        "-Djavax.net.ssl.trustStore=%s" % self.truststore,
                        "-Djavax.net.ssl.trustStorePassword=changeit",
                        "-Djavax.net.ssl.trustStoreType=PKCS12",
                        "-cp", str(self.java), "TlsProbe", name, str(port)], check=False)
            out["Java JSSE"] = (proc.returncode == 0, proc.output)
            return out
        finally:
            server.kill()
            server.wait()


def run(cmd, check=True, stdin=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
    proc.output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc=%d): %s" % (cmd[0], proc.returncode, proc.output))
    return proc


def wait_for_port(port):
    for _attempt in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("s_server did not listen on %d" % port)


def pyca(root_pem, inter_pem, leaf_pem, name, usage):
    root = x509.load_pem_x509_certificate(root_pem.encode())
    inter = x509.load_pem_x509_certificate(inter_pem.encode())
    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    builder = PolicyBuilder().store(Store([root]))
    try:
        if usage == "server":
            try:
                subject = x509.IPAddress(ipaddress.ip_address(name))
            except ValueError:
                subject = x509.DNSName(name)
            builder.build_server_verifier(subject).verify(leaf, [inter])
        else:
            builder.build_client_verifier().verify(leaf, [inter])
    except VerificationError as exc:
        return False, str(exc)
    return True, "verified"


def sign_as_the_thief(key, inter, name, kind):
    """A leaf for ``name`` signed with the zone's signing key, as a thief of it would."""
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    san = (x509.DNSName(name) if kind == "dns" else x509.IPAddress(ipaddress.ip_address(name)))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(inter.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                key.public_key()), critical=False)
            .sign(key, hashes.SHA384()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            leaf_key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode())


def table(results):
    stacks = list(REFUSALS)
    lines = ["%-34s %s" % ("leaf", " | ".join(stacks))]
    for leaf, by_stack in results.items():
        lines.append("%-34s %s" % (leaf, " | ".join(
            ("accepted" if by_stack[s][0] else "refused") if s in by_stack else "-"
            for s in stacks)))
    return "\n".join(lines)


def test_every_stack_refuses_a_leaf_outside_the_zone_and_accepts_the_zones(fleet, tmp_path):
    for tool in ("certtool", "gnutls-cli", "vfychain", "certutil", "keytool", "javac", "java",
                 "curl"):
        assert shutil.which(tool), "%s missing: run scripts/bootstrap --tests" % tool
    root_pem = fleet.read("node1", DIR + "/roots.pem")
    inter_pem = ca_file(fleet, "intermediate.crt")
    passphrase = (fleet.inventory.parent / "ca-passphrase").read_text().strip().encode()
    key = serialization.load_pem_private_key(ca_file(fleet, "intermediate.key").encode(),
                                             passphrase)
    inter = x509.load_pem_x509_certificate(inter_pem.encode())
    stacks = Stacks(tmp_path, root_pem, inter_pem)
    results, expected = {}, {}
    # the zone's real leaves (keys stay on the nodes: verified as certificates) ...
    for host in ("node1", "node2"):
        for profile, usage in (("server", "server"), ("client", "client")):
            label = "%s %s.crt (zone)" % (host, profile)
            results[label] = stacks.verify(fleet.read(host, "%s/%s.crt" % (DIR, profile)),
                                           fleet.fqdn(host), usage)
            expected[label] = True
    # ... a control signed by the test like the thief's, for a zone name, and the thief's
    control = fleet.fqdn("node1")
    for name, kind, inside in [(control, "dns", True)] + [o + (False,) for o in OUTSIDE]:
        cert, leaf_key = sign_as_the_thief(key, inter, name, kind)
        label = "%s (%s)" % (name, "control" if inside else "outside")
        results[label] = stacks.verify(cert, name, "server")
        if kind == "dns":  # an address cannot be pointed at loopback: certificates only
            results[label].update(stacks.handshake(cert, leaf_key, name))
        expected[label] = inside
    report = table(results)
    print("\n" + report)
    (REPO / ".lab" / PREFIX / "stacks.txt").write_text(report + "\n")
    for label, by_stack in results.items():
        for stack, (accepted, output) in by_stack.items():
            assert accepted is expected[label], (label, stack, output, report)
            if not expected[label]:  # refused for the name constraint, not something else
                assert REFUSALS[stack] in output, (label, stack, output)
    assert all(len(results[label]) == len(REFUSALS)
               for label in ("%s (control)" % control, "www.google.com (outside)"))


def test_zone_leaves_complete_mutual_tls_through_the_intermediate(fleet):
    assert mtls_status(fleet, "node1", "node2", DIR) == "200"


# --------------------------------------------------------------------------- the zone grows

def grown_inventory(fleet):
    data = yaml.safe_load(fleet.inventory.read_text())
    node2 = data["all"]["children"]["trustzone_nodes"]["hosts"]["node2"]
    node2["trustzone_certs_extra_names"] = ["api.grown.example"]
    path = fleet.inventory.parent / "grown.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_name_in_a_new_domain_reissues_the_intermediate_in_the_same_run(fleet):
    grown = grown_inventory(fleet)
    before = ca_file(fleet, "intermediate.crt")
    roots = {h: fleet.read(h, DIR + "/roots.pem") for h in ("node1", "node2")}
    check = fleet.playbook("site.yml", *ON, "--check", "--diff", inventory=grown)
    assert "intermediate re-issued: name constraints changed: +grown.example" in check.output
    assert ca_file(fleet, "intermediate.crt") == before  # check mode wrote nothing
    proc = fleet.playbook("site.yml", *ON, "--diff", inventory=grown)
    assert "intermediate re-issued: name constraints changed: +grown.example" in proc.output
    after = x509.load_pem_x509_certificate(ca_file(fleet, "intermediate.crt").encode())
    _critical, value = constraints(after)
    assert x509.DNSName("grown.example") in value.permitted_subtrees
    assert {h: fleet.read(h, DIR + "/roots.pem") for h in ("node1", "node2")} == roots
    leaf = x509.load_pem_x509_certificate(fleet.read("node2", DIR + "/server.crt").encode())
    assert "api.grown.example" in leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    fleet.sh("node1", "cat > /tmp/n2.pem && openssl verify -CAfile %s/roots.pem -untrusted "
                      "%s/server-fullchain.pem /tmp/n2.pem" % (DIR, DIR),
             input=fleet.read("node2", DIR + "/server.crt"))
    again = fleet.playbook("site.yml", *ON, inventory=grown)
    assert_nothing_changed(again, hosts=HOSTS)


def test_pinned_constraints_that_leave_out_a_name_stop_before_anything_is_written(fleet):
    pointer = fleet.read("ca", CA_DIR + "/current")
    addresses = [h["trustzone_node_addresses"][0] for group in ("trustzone_ca", "trustzone_nodes")
                 for h in fleet.hosts["all"]["children"][group]["hosts"].values()]
    permitted = ["nc.trustzone.test", "ca", "node2"] + addresses  # leaves out node1's label
    pinned = json.dumps({"trustzone_ca_name_constraints": True,
                         "trustzone_ca_name_constraints_pinned": True,
                         "trustzone_ca_name_constraints_permitted": permitted})
    proc = fleet.playbook("site.yml", "-e", pinned, check=False)
    assert proc.returncode != 0
    assert "node1: node1 is outside the pinned name constraints (nc.trustzone.test, ca, " \
        in proc.output
    assert "trustzone_ca_name_constraints_permitted" in proc.output
    assert "Traceback" not in proc.output
    assert fleet.read("ca", CA_DIR + "/current") == pointer
    assert recap(proc.output)["ca"]["changed"] == 0
