"""Verify the trust role on the converged node (testinfra): the OS trust store holds the
user's root, and nothing else of the zone."""

import os

import pytest

ZONE_DIR = "/etc/trustzone/moltrust"
ROOT = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "root.pem")


@pytest.fixture
def node(container):
    return container("node")


def read_root():
    with open(ROOT, encoding="ascii") as fh:
        return fh.read().strip()


def test_a_certificate_the_root_signed_verifies_against_the_os_store(node):
    result = node.run("openssl verify /root/leaf.pem")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "/root/leaf.pem: OK"


def test_exactly_one_zone_anchor_holding_the_root(node):
    anchors = node.check_output("ls /usr/local/share/ca-certificates").split()
    zone = [a for a in anchors if a.startswith("trustzone-moltrust-")]
    assert len(zone) == 1 and zone[0].endswith(".crt")
    anchor = node.file("/usr/local/share/ca-certificates/" + zone[0])
    assert anchor.mode == 0o644 and anchor.user == "root" and anchor.group == "root"
    assert anchor.content_string.strip() == read_root()
    assert read_root() in node.file("/etc/ssl/certs/ca-certificates.crt").content_string


def test_roots_bundle_for_services(node):
    roots = node.file(ZONE_DIR + "/roots.pem")
    assert roots.mode == 0o644 and roots.user == "root"
    assert roots.content_string.strip() == read_root()
    assert node.file(ZONE_DIR).mode == 0o755


def test_no_private_key_reached_the_node(node):
    assert node.run("grep -rl 'PRIVATE KEY' /etc/trustzone /usr/local/share/ca-certificates"
                    ).stdout == ""
