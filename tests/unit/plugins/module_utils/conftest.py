"""Fixtures for the module_utils tests: keys, zones (roots) and profiles.

Only pytest and cryptography are needed here (no Ansible), so this directory also runs
against Debian 12's cryptography 38.0.4. Key generation is the slow part: every key that
more than one test can share is made once per session.
"""

from __future__ import annotations

import copy

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    NAMES, Keys, Zone, make_root)


@pytest.fixture(scope="session")
def keys():
    return Keys()


@pytest.fixture(scope="session")
def zone(keys):
    """The zone ``prod`` with a P-384 root (the ca role's default key)."""
    key = keys.get("p384#root")
    return Zone("prod", key, make_root(key))


@pytest.fixture(scope="session")
def other_zone(keys):
    """A second, unrelated zone (``lab``) with its own root."""
    key = keys.get("p256#lab-root")
    return Zone("lab", key, make_root(key, zone="lab", cn="trustzone lab root CA"))


@pytest.fixture
def names():
    return copy.deepcopy(NAMES)


@pytest.fixture
def server_profile(names):
    """The default ``server`` profile of web1 in zone prod (EC P-256, server_auth)."""
    return I.resolve_profile({"name": "server"}, "prod", "/etc/trustzone/prod", names)


@pytest.fixture
def client_profile(names):
    return I.resolve_profile({"name": "client", "extended_key_usage": ["client_auth"]},
                             "prod", "/etc/trustzone/prod", names)
