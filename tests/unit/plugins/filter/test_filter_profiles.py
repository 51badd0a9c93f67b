"""Filters trustzone.pki.profiles and trustzone.pki.node_names: Ansible errors, not tracebacks."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.trustzone.pki.plugins.filter import profiles as F

NAMES = {"common_name": "web1.prod.example", "dns": ["web1", "web1.prod.example"],
         "ip": ["10.0.0.11"]}


def test_filter_module_exports_both():
    filters = F.FilterModule().filters()
    assert filters == {"profiles": F.profiles, "node_names": F.node_names}


def test_profiles_resolves():
    out = F.profiles([{"name": "server"}], "prod", "/etc/trustzone/prod", NAMES)
    assert [p["name"] for p in out] == ["server"]
    assert out[0]["cert_path"] == "/etc/trustzone/prod/server.crt"
    assert out[0]["dns"] == ["web1", "web1.prod.example"]
    assert [p["name"] for p in F.profiles(None, "prod", "/x", NAMES)] == ["server", "client"]
    assert [p["name"] for p in F.profiles({"server": {}}, "prod", "/x", NAMES)] == ["server"]


@pytest.mark.parametrize("value, words", [
    ([{"name": "server", "key_usage": ["key_cert_sign"]}], "CA key usage"),
    ([{"name": "server", "dns": ["db1.prod.example"]}], "db1.prod.example"),
    ([{"name": "server", "key_mode": "0644"}], "lets every user read the key"),
    ([{"name": "server"}, {"name": "server"}], "defined twice"),
    ([{"name": "server", "bogus": 1}], "unknown keys: bogus"),
    ([{"name": "server", "key_type": "rsa", "key_size": 1024}], "RSA key size 1024"),
])
def test_profiles_errors_are_filter_errors(value, words):
    with pytest.raises(AnsibleFilterError) as info:
        F.profiles(value, "prod", "/etc/trustzone/prod", NAMES)
    assert words in str(info.value)
    assert "Fix:" in str(info.value)


def test_profiles_non_numeric_key_size_is_a_filter_error():
    with pytest.raises(AnsibleFilterError):
        F.profiles([{"name": "server", "key_type": "rsa", "key_size": "4k"}], "prod", "/x",
                   NAMES)


def test_node_names_from_host_vars():
    names = F.node_names("web1", {"trustzone_node_fqdn": "web1.prod.example",
                                  "trustzone_node_addresses": ["10.0.0.11", "127.0.0.1"],
                                  "trustzone_certs_extra_names": ["www.prod.example"],
                                  "ansible_host": "192.0.2.11", "unrelated": "x"})
    assert names == {"common_name": "web1.prod.example",
                     "dns": ["web1", "web1.prod.example", "www.prod.example"],
                     "ip": ["10.0.0.11", "192.0.2.11"]}


def test_node_names_extra_names_argument_wins():
    host_vars = {"trustzone_certs_extra_names": ["old.example"]}
    assert F.node_names("web1", host_vars, ["new.example"])["dns"] == ["new.example", "web1"]
    assert F.node_names("web1", host_vars, [])["dns"] == ["web1"]
    assert F.node_names("web1", host_vars)["dns"] == ["old.example", "web1"]


def test_node_names_without_host_vars():
    assert F.node_names("web1") == {"common_name": "web1", "dns": ["web1"], "ip": []}
    assert F.node_names("web1", None) == F.node_names("web1", {})


def test_node_names_error_names_the_host():
    with pytest.raises(AnsibleFilterError) as info:
        F.node_names("web1", {"trustzone_node_addresses": ["not valid!"]})
    assert str(info.value).startswith("host web1: ")
    assert "neither a DNS name nor an IP address" in str(info.value)
