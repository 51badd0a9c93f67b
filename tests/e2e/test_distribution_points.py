"""CRL distribution points and AIA caIssuers (issue 16, part 4), over a real fleet.

One fleet: a CA host, node1 (a node that also publishes: group trustzone_publish, nginx) and
node2. With trustzone_ca_publish_url set, every leaf names its issuer's CRL and certificate
under that URL, node1 serves them, and a client that fetches CRLs by the distribution point
(``openssl verify -crl_check -crl_download``, handed only the root) accepts a leaf and, after
revoke.yml, refuses it - without ever being handed a CRL. The tests run in file order, each
building on the state the previous ones left.
"""

from __future__ import annotations

import base64

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import assert_nothing_changed, fleet_prefix, recap

PREFIX = fleet_prefix("tzcdp")
ZONE = "cdp"
DIR = "/etc/trustzone/%s" % ZONE
HOSTS = ("ca", "node1", "node2")
# the publisher's name as every host of the fleet resolves it (podman --add-host)
BASE = "http://node1.%s.trustzone.test/pki/%s" % (ZONE, ZONE)
PUBLISHED = "/var/www/trustzone/%s" % ZONE
VERIFY = ("openssl verify -no-CApath -no-CAstore -CAfile {d}/roots.pem -crl_check "
          "-crl_download {d}/server.crt 2>&1").format(d=DIR)
STATE = {}


@pytest.fixture(scope="module")
def fleet(make_fleet):
    fleet = make_fleet(PREFIX, nodes=2, zone=ZONE)
    hosts = yaml.safe_load(fleet.inventory.read_text())
    hosts["all"].setdefault("vars", {})["trustzone_ca_publish_url"] = BASE
    hosts["all"]["children"]["trustzone_publish"] = {"hosts": {"node1": None}}
    STATE["inventory"] = fleet.inventory.with_name("hosts-publish.yml")
    STATE["inventory"].write_text(yaml.safe_dump(hosts))
    return fleet


def published(fleet, *args, **kw):
    return fleet.playbook(*args, inventory=STATE["inventory"], **kw)


def root_of(fleet):
    return x509.load_pem_x509_certificate(fleet.read("node2", DIR + "/roots.pem").encode())


def urls_of(fleet, host, name="server"):
    cert = x509.load_pem_x509_certificate(fleet.read(host, "%s/%s.crt" % (DIR, name)).encode())
    out = {"crl": [], "ca_issuers": []}
    for ext in cert.extensions:
        if isinstance(ext.value, x509.CRLDistributionPoints):
            out["crl"] = [n.value for p in ext.value for n in p.full_name]
            assert not ext.critical
        if isinstance(ext.value, x509.AuthorityInformationAccess):
            out["ca_issuers"] = [d.access_location.value for d in ext.value]
            assert not ext.critical
    return out


def test_without_the_url_leaves_carry_no_distribution_point(fleet):
    proc = fleet.playbook("site.yml")
    assert all(s["failed"] == 0 for s in recap(proc.output).values())
    assert urls_of(fleet, "node2") == {"crl": [], "ca_issuers": []}


def test_check_mode_says_the_url_reissues_every_leaf(fleet):
    proc = published(fleet, "site.yml", "--check", "--diff")
    assert "request server: distribution_point" in proc.output
    assert "request client: distribution_point" in proc.output
    assert not fleet.exists("node1", PUBLISHED)


def test_setting_the_url_reissues_every_leaf_with_cdp_and_aia(fleet):
    proc = published(fleet, "site.yml")
    stats = recap(proc.output)
    assert set(stats) == set(HOSTS)
    assert all(s["failed"] == 0 for s in stats.values()), proc.output[-4000:]
    assert stats["node2"]["changed"] >= 2  # one request, one install
    ski = root_of(fleet).extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    cid = ski.value.digest.hex()
    for host in ("node1", "node2"):
        for name in ("server", "client"):
            assert urls_of(fleet, host, name) == {"crl": ["%s/%s.crl" % (BASE, cid)],
                                                  "ca_issuers": ["%s/%s.crt" % (BASE, cid)]}
    STATE["cid"] = cid


def test_the_publisher_holds_der_files_named_by_the_ca(fleet):
    listing = fleet.sh("node1", "stat -c '%%n %%a' %s/*" % PUBLISHED).stdout.split()
    cid = STATE["cid"]
    assert listing == ["%s/%s.crl" % (PUBLISHED, cid), "644",
                       "%s/%s.crt" % (PUBLISHED, cid), "644"]


def test_aia_ca_issuers_url_serves_the_issuers_der_certificate(fleet):
    url = urls_of(fleet, "node2")["ca_issuers"][0]
    der = fleet.sh("node2", "curl -fsS %s | base64 -w0" % url).stdout.strip()
    got = x509.load_der_x509_certificate(base64.b64decode(der))
    assert got == root_of(fleet)
    kind = fleet.sh("node2", "curl -fsS -o /dev/null -w '%%{content_type}' %s" % url).stdout
    assert kind.strip() == "application/pkix-cert"


def test_a_client_fetching_the_crl_by_distribution_point_accepts_the_leaf(fleet):
    assert fleet.sh("node2", "ls %s/*.crl %s/crl.pem 2>/dev/null; true" % (DIR, DIR)).stdout \
        == "%s/crl.pem\n" % DIR  # the node has one, but the client below is not handed it
    proc = fleet.sh("node2", VERIFY, check=False)
    assert proc.returncode == 0, proc.output
    assert proc.stdout.strip() == "%s/server.crt: OK" % DIR


def test_a_no_op_run_changes_nothing(fleet):
    assert_nothing_changed(published(fleet, "site.yml"), hosts=HOSTS)


def test_after_revoke_the_same_client_refuses_the_leaf(fleet):
    fetch = "curl -fsS %s | base64 -w0" % urls_of(fleet, "node2")["crl"][0]
    serial = x509.load_pem_x509_certificate(
        fleet.read("node2", DIR + "/server.crt").encode()).serial_number
    crl = x509.load_der_x509_crl(base64.b64decode(fleet.sh("node2", fetch).stdout))
    assert crl.get_revoked_certificate_by_serial_number(serial) is None
    published(fleet, "revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node2"]}',
              "-e", "trustzone_revoke_reason=key_compromise")
    crl = x509.load_der_x509_crl(base64.b64decode(fleet.sh("node2", fetch).stdout))
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    proc = fleet.sh("node2", VERIFY, check=False)
    assert proc.returncode != 0, proc.output
    assert "certificate revoked" in proc.output
    # node1 was not revoked: the same client still accepts it
    assert fleet.sh("node1", VERIFY, check=False).returncode == 0


def test_with_an_intermediate_each_certificate_names_its_issuers_crl(fleet):
    """The intermediate names its root's CRL and certificate too: a client handed only the
    root verifies the intermediate, fetching the root's CRL by the intermediate's
    distribution point, and the leaf, fetching the intermediate's CRL by the leaf's - and
    refuses the leaf once it is revoked. (A root names no distribution point of its own,
    so ``-crl_check_all -crl_download`` cannot check the anchor itself.)"""
    published(fleet, "site.yml", "-e", "trustzone_ca_intermediate=true")
    chain = x509.load_pem_x509_certificates(
        fleet.read("node2", DIR + "/server-fullchain.pem").encode())
    assert len(chain) == 2
    root = root_of(fleet)
    inter_urls = {"crl": [], "ca_issuers": []}
    for ext in chain[1].extensions:
        if isinstance(ext.value, x509.CRLDistributionPoints):
            inter_urls["crl"] = [n.value for p in ext.value for n in p.full_name]
        if isinstance(ext.value, x509.AuthorityInformationAccess):
            inter_urls["ca_issuers"] = [d.access_location.value for d in ext.value]
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    assert inter_urls == {"crl": ["%s/%s.crl" % (BASE, ski)],
                          "ca_issuers": ["%s/%s.crt" % (BASE, ski)]}
    fleet.sh("node2", "cat > /tmp/inter.pem",
             input=chain[1].public_bytes(serialization.Encoding.PEM).decode())
    verify_int = ("openssl verify -no-CApath -no-CAstore -CAfile {d}/roots.pem -crl_check "
                  "-crl_download /tmp/inter.pem 2>&1").format(d=DIR)
    proc = fleet.sh("node2", verify_int, check=False)
    assert proc.returncode == 0 and "/tmp/inter.pem: OK" in proc.output, proc.output
    verify_leaf = ("openssl verify -no-CApath -no-CAstore -CAfile {d}/roots.pem -untrusted "
                   "/tmp/inter.pem -crl_check -crl_download {d}/server.crt 2>&1").format(d=DIR)
    proc = fleet.sh("node2", verify_leaf, check=False)
    assert proc.returncode == 0, proc.output
    published(fleet, "revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node2"]}',
              "-e", "trustzone_ca_intermediate=true")
    proc = fleet.sh("node2", verify_leaf, check=False)
    assert proc.returncode != 0 and "certificate revoked" in proc.output, proc.output
    assert fleet.sh("node2", verify_int, check=False).returncode == 0


def test_unsetting_the_url_reissues_leaves_without_it(fleet):
    proc = fleet.playbook("site.yml")
    assert all(s["failed"] == 0 for s in recap(proc.output).values())
    for host in ("node1", "node2"):
        assert urls_of(fleet, host) == {"crl": [], "ca_issuers": []}


def test_a_bad_url_is_one_clear_line(fleet):
    hosts = yaml.safe_load(STATE["inventory"].read_text())
    hosts["all"]["vars"]["trustzone_ca_publish_url"] = "http://node1/pki?x=1"
    bad = STATE["inventory"].with_name("hosts-bad-url.yml")
    bad.write_text(yaml.safe_dump(hosts))
    proc = fleet.playbook("site.yml", inventory=bad, check=False)
    assert proc.returncode != 0
    assert "trustzone_ca_publish_url: 'http://node1/pki?x=1' is not usable as the publication " \
           "URL: it has a query" in proc.output
    assert "Fix: set trustzone_ca_publish_url" in proc.output
