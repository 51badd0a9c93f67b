"""NSS databases of a zone with an intermediate CA refuse the leaves that CA signed once the
zone revokes them.

NSS imports a CRL only when its issuer's certificate is in the database (``crlutil -I``
refuses an intermediate's CRL with SEC_ERROR_UNKNOWN_ISSUER otherwise), so the stores role
holds the zone's intermediate there, untrusted (``,,``: trust still comes from the root), and
its CRL next to the root's. One small fleet (a CA host and two nodes) with
``trustzone_ca_intermediate: true`` and only the NSS store; the tests run in file order and
each builds on the state the previous one left. Proof by NSS's classic verifier
(``vfychain`` without ``-pp``, as in test_stores.py), handed the leaf alone.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import REPO, fleet_prefix, recap

PREFIX = fleet_prefix("tzsi")
ZONE = "si"
DIR = "/etc/trustzone/%s" % ZONE
NSSDB = "/etc/pki/nssdb"
NSS_FILES = [NSSDB + "/cert9.db", NSSDB + "/key4.db", NSSDB + "/pkcs11.txt"]
STORES = str(REPO / "playbooks" / "stores.yml")
VARS = {"trustzone_ca_intermediate": True, "trustzone_stores_nss": True}
HOSTS = ("ca", "node1", "node2")


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=2, zone=ZONE)


def play(fleet, playbook, *args):
    """``playbook`` on the fleet with this zone's variables (an intermediate, the NSS store)."""
    return fleet.playbook(playbook, "-e", json.dumps(VARS), *args)


def certs_of(text):
    return x509.load_pem_x509_certificates(text.encode())


def fp16(cert):
    """The 16 hex the zone's nicknames carry: the start of the certificate's SHA-256."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]


def zone_cas(fleet, host):
    """``(root, intermediate)`` of the node: roots.pem and the CA after the leaf in
    server-fullchain.pem."""
    root, = certs_of(fleet.read(host, DIR + "/roots.pem"))
    chain = certs_of(fleet.read(host, DIR + "/server-fullchain.pem"))
    assert len(chain) == 2, "server-fullchain.pem should be leaf + intermediate"
    return root, chain[1]


def nicknames(root, intermediate):
    return ("trustzone-%s-%s" % (ZONE, fp16(root)),
            "trustzone-%s-%s-intermediate" % (ZONE, fp16(intermediate)))


def nss_entries(fleet, host):
    """``{nickname: trust flags}`` of the NSS database."""
    out = fleet.sh(host, "certutil -L -d sql:%s" % NSSDB).stdout
    return {m.group(1): m.group(2) for m in re.finditer(
        r"^(trustzone-\S+)\s+([pPcCTuw]*,[pPcCTuw]*,[pPcCTuw]*)\s*$", out, re.M)}


def nss_crls(fleet, host):
    """``{nickname: crl number}`` of the CRLs the NSS database holds."""
    out = fleet.sh(host, "crlutil -L -d sql:%s" % NSSDB).stdout
    numbers = {}
    for name in re.findall(r"^(\S+)\s+CRL\s*$", out, re.M):
        info = fleet.sh(host, "crlutil -L -n %s -d sql:%s" % (name, NSSDB)).stdout
        numbers[name] = int(re.search(r"Name: CRL Number\s*\n\s*Data: (\d+) ", info).group(1))
    return numbers


def zone_crl_numbers(fleet, host, *cas):
    """The number of the CRL each CA of ``cas`` signed, in the node's crl.pem."""
    text = fleet.read(host, DIR + "/crl.pem")
    crls = [x509.load_pem_x509_crl(b.encode()) for b in re.findall(
        r"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", text, re.S)]
    numbers = []
    for ca in cas:
        found = [c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
                 for c in crls if c.issuer == ca.subject and c.is_signature_valid(ca.public_key())]
        assert len(found) == 1, (ca.subject, text)
        numbers.append(found[0])
    return numbers


def vfychain_pem(fleet, host, pem):
    """vfychain (NSS's classic verification, which checks the CRLs the database holds), given
    the leaf only: the intermediate must come from the database."""
    return fleet.sh(host, "cat > /tmp/peer.crt && vfychain -d sql:%s -u 1 -a /tmp/peer.crt"
                    % NSSDB, check=False, input=pem)


def snapshot(fleet, host):
    out = fleet.sh(host, "stat -c '%%n %%i %%Y.%%y %%s' %s" % " ".join(NSS_FILES)).stdout
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}


def assert_no_change(proc, hosts=HOSTS):
    stats = recap(proc.output)
    assert set(stats) == set(hosts), proc.output[-3000:]
    assert {h: s["changed"] for h, s in stats.items()} == dict.fromkeys(hosts, 0), \
        proc.output[-6000:]


def test_nss_holds_the_intermediate_untrusted_with_its_crl_and_accepts_the_zones_leaves(
        fleet):
    play(fleet, "site.yml")
    root, intermediate = zone_cas(fleet, "node1")
    assert intermediate.issuer == root.subject
    root_nick, int_nick = nicknames(root, intermediate)
    for host in ("node1", "node2"):
        # the root is the trust anchor; the intermediate only a path element
        assert nss_entries(fleet, host) == {root_nick: "CT,,", int_nick: ",,"}
        assert nss_crls(fleet, host) == dict(zip(
            (root_nick, int_nick), zone_crl_numbers(fleet, host, root, intermediate)))
    for peer, host in (("node2", "node1"), ("node1", "node2")):
        proc = vfychain_pem(fleet, host, fleet.read(peer, DIR + "/server.crt"))
        assert proc.returncode == 0 and "Chain is good" in proc.output, proc.output
    # again: nothing changes, on any host, in any NSS file
    before = {h: snapshot(fleet, h) for h in ("node1", "node2")}
    assert_no_change(play(fleet, "site.yml"))
    assert_no_change(play(fleet, STORES), ("node1", "node2"))
    assert {h: snapshot(fleet, h) for h in ("node1", "node2")} == before


def test_a_leaf_the_intermediate_signed_is_refused_after_its_revocation(fleet):
    root, intermediate = zone_cas(fleet, "node1")
    root_nick, int_nick = nicknames(root, intermediate)
    revoked = fleet.read("node2", DIR + "/server.crt")
    assert vfychain_pem(fleet, "node1", revoked).returncode == 0  # valid until revoked
    play(fleet, "revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node2"]}')
    _root_number, int_number = zone_crl_numbers(fleet, "node1", root, intermediate)
    assert nss_crls(fleet, "node1")[int_nick] < int_number  # revoke.yml wrote crl.pem only
    assert vfychain_pem(fleet, "node1", revoked).returncode == 0  # ... so NSS still accepts
    # check mode says the intermediate's CRL would be imported, and imports nothing
    before = snapshot(fleet, "node1")
    proc = play(fleet, STORES, "--check", "--diff")
    assert "+ CRL of %s" % int_nick in proc.output
    assert recap(proc.output)["node1"]["changed"] > 0
    assert snapshot(fleet, "node1") == before
    assert nss_crls(fleet, "node1")[int_nick] < int_number
    # site.yml (its node play ends with the stores role) imports the new CRL
    proc = play(fleet, "site.yml", "--diff")
    assert "+ CRL of %s" % int_nick in proc.output
    for host in ("node1", "node2"):
        assert nss_entries(fleet, host) == {root_nick: "CT,,", int_nick: ",,"}
        assert nss_crls(fleet, host) == dict(zip(
            (root_nick, int_nick), zone_crl_numbers(fleet, host, root, intermediate)))
    # NSS refuses node2's revoked leaf ...
    proc = vfychain_pem(fleet, "node1", revoked)
    assert proc.returncode != 0, proc.output
    assert "Certificate has been revoked" in proc.output, proc.output
    # ... and accepts node1's, and the one site.yml gave node2 after the revocation
    fresh = fleet.read("node2", DIR + "/server.crt")
    assert fresh != revoked
    for host, pem in (("node1", fresh), ("node2", fleet.read("node1", DIR + "/server.crt"))):
        proc = vfychain_pem(fleet, host, pem)
        assert proc.returncode == 0 and "Chain is good" in proc.output, proc.output
    # a second run changes nothing
    before = {h: snapshot(fleet, h) for h in ("node1", "node2")}
    assert_no_change(play(fleet, "site.yml"))
    assert_no_change(play(fleet, STORES), ("node1", "node2"))
    assert {h: snapshot(fleet, h) for h in ("node1", "node2")} == before
    assert vfychain_pem(fleet, "node1", revoked).returncode != 0


def test_a_replaced_intermediate_stays_while_the_zone_publishes_its_crl(fleet):
    old_root, old = zone_cas(fleet, "node1")
    play(fleet, "site.yml", "-e", "trustzone_ca_intermediate_force=true")
    root, new = zone_cas(fleet, "node1")
    assert root == old_root and new != old
    root_nick, old_nick = nicknames(root, old)
    _root_nick, new_nick = nicknames(root, new)
    # the previous leaves (.prev) still chain through the old intermediate, so the zone still
    # publishes its CRL: the database keeps it, untrusted, and gets the new one too
    for host in ("node1", "node2"):
        assert nss_entries(fleet, host) == {root_nick: "CT,,", old_nick: ",,", new_nick: ",,"}
        assert nss_crls(fleet, host) == dict(zip(
            (root_nick, old_nick, new_nick), zone_crl_numbers(fleet, host, root, old, new)))
    for peer, host in (("node2", "node1"), ("node1", "node2")):
        proc = vfychain_pem(fleet, host, fleet.read(peer, DIR + "/server.crt"))
        assert proc.returncode == 0 and "Chain is good" in proc.output, proc.output
    assert_no_change(play(fleet, "site.yml"))
