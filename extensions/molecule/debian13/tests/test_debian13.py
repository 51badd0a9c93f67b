"""Verify the zone on the converged Debian 13 node (testinfra); every store is verified by
../../stores/tests/test_stores.py, which molecule.yml adds to this scenario's tests."""

import pytest

ZONE_DIR = "/etc/trustzone/d13"


@pytest.fixture
def node(container):
    return container("node")


def test_it_is_debian_13(node):
    assert node.system_info.distribution == "debian"
    assert node.system_info.release.startswith("13")


def test_identities_verify_against_the_os_trust_store(node):
    for name in ("server", "client"):
        result = node.run("openssl verify %s/%s.crt" % (ZONE_DIR, name))
        assert result.rc == 0, result.stderr
