"""Shared by every scenario's testinfra tests: reach a container of this scenario by its
short name (the platform names are <prefix>-<scenario>-<name>, see config.yml)."""

import os

import pytest

PREFIX = os.environ.get("TRUSTZONE_MOLECULE_PREFIX", "tzmol")


@pytest.fixture
def container(host):
    """container("node") is the testinfra host of this scenario's platform "node"."""
    scenario = os.environ["MOLECULE_SCENARIO_NAME"]

    def get(name):
        return host.get_host("podman://%s-%s-%s" % (PREFIX, scenario, name))
    return get


@pytest.fixture
def pebble_root(request, container):
    """Path, inside the platform the test module names in PEBBLE_HOST, of pebble's issuing root
    (the acme and proxy scenarios run pebble there; acme/tasks/pebble.yml). Fetched from the
    running server: pebble makes a new root on every start."""
    path = "/root/pebble-root.pem"
    container(request.module.PEBBLE_HOST).check_output(
        "curl -fsS --cacert /etc/pebble/listener-ca.pem -o %s https://127.0.0.1:15000/roots/0"
        % path)
    return path
