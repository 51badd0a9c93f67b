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
