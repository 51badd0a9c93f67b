"""_parse: durations, names, modes, DNS names; _identity: node names and duplicate names."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.plugins.module_utils import _parse as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


# --------------------------------------------------------------------------- parse_duration

@pytest.mark.parametrize("value, seconds", [
    ("90d", 90 * 86400), ("12h", 43200), ("10m", 600), ("45s", 45), ("2w", 14 * 86400),
    ("1y", 365 * 86400), ("1d12h", 129600), ("1d 12h", 129600), (" 30D ", 30 * 86400),
    ("1h30m15s", 5415), ("3600", 3600), (3600, 3600), (90.9, 90), ("0d1s", 1),
])
def test_parse_duration(value, seconds):
    assert P.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "d", "90", "1.5d", "90 days", "-5", "-5d", "5x",
                                   "1d-2h", "1d12", None, "P90D", "10mo"])
def test_parse_duration_refuses_garbage(value):
    if value == "90":
        assert P.parse_duration(value) == 90  # a plain number of seconds is fine
        return
    with pytest.raises(TrustzoneError) as info:
        P.parse_duration(value, "lifetime of profile 'server'")
    assert "lifetime of profile 'server'" in str(info.value)


@pytest.mark.parametrize("value", [0, "0", "0d", "0h0m", -1, 0.5])
def test_parse_duration_must_be_positive(value):
    with pytest.raises(TrustzoneError, match="longer than zero"):
        P.parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_parse_duration_refuses_booleans(value):
    with pytest.raises(TrustzoneError, match="not a boolean"):
        P.parse_duration(value, "renew_before")


def test_parse_duration_error_has_fix():
    with pytest.raises(TrustzoneError) as info:
        P.parse_duration("soon")
    assert "90d" in info.value.fix


# --------------------------------------------------------------------------- validate_name

@pytest.mark.parametrize("value", ["prod", "a", "0", "lab-1", "zone_2", "x" * 32, "9lives"])
def test_validate_name_accepts(value):
    assert P.validate_name(value, "zone name") == value


def test_validate_name_stringifies():
    assert P.validate_name(42, "zone name") == "42"


@pytest.mark.parametrize("value", ["", None, "Prod", "-lead", "_lead", "x" * 33, "a.b", "a b",
                                   "a/b", "../etc", "zoné", "a:b", " prod"])
def test_validate_name_refuses(value):
    with pytest.raises(TrustzoneError) as info:
        P.validate_name(value, "zone name")
    assert "zone name" in str(info.value)
    assert info.value.fix


@pytest.mark.parametrize("value", ["prod\n", "server\n"])
def test_validate_name_refuses_trailing_newline(value):
    with pytest.raises(TrustzoneError):
        P.validate_name(value, "zone name")


# --------------------------------------------------------------------------- parse_mode

@pytest.mark.parametrize("value, mode", [
    ("0644", 0o644), ("644", 0o644), ("0600", 0o600), ("0640", 0o640), ("2750", 0o2750),
    ("07777", 0o7777), (" 0640 ", 0o640), (0o640, 0o640), (0, 0), (420, 0o644),
])
def test_parse_mode(value, mode):
    assert P.parse_mode(value) == mode


@pytest.mark.parametrize("value", ["rw-r--r--", "0o644", "0x1a4", "64", "0888", "17777",
                                   "u=rw", "", 0o10000, -1])
def test_parse_mode_refuses(value):
    with pytest.raises(TrustzoneError) as info:
        P.parse_mode(value, "key_mode of profile 'server'")
    assert "key_mode of profile 'server'" in str(info.value)


def test_parse_mode_refuses_booleans():
    with pytest.raises(TrustzoneError):
        P.parse_mode(True)


# --------------------------------------------------------------------------- is_dns_name

@pytest.mark.parametrize("name, ok", [
    ("web1", True), ("web1.prod.example", True), ("web1.prod.example.", True),
    ("a-b.c", True), ("xn--bcher-kva.example", True), ("a" * 63, True), ("a" * 64, False),
    (".".join(["a" * 63] * 4), False), ("", False), ("-web", False), ("web-", False),
    ("we_b", False), ("web..example", False), ("*.example", False), ("web 1", False),
])
def test_is_dns_name(name, ok):
    assert P.is_dns_name(name) is ok


# --------------------------------------------------------------------------- node_names

def test_node_names_basic():
    names = I.node_names("web1", fqdn="web1.prod.example", addresses=["10.0.0.11"])
    assert names == {"common_name": "web1.prod.example", "dns": ["web1", "web1.prod.example"],
                     "ip": ["10.0.0.11"]}


@pytest.mark.parametrize("loopback", ["localhost", "LOCALHOST", "localhost.localdomain",
                                      "localhost.", "127.0.0.1", "127.1.2.3", "::1", "0.0.0.0",
                                      "::", "169.254.1.1", "fe80::1"])
def test_node_names_drops_loopback_and_local(loopback):
    names = I.node_names("web1", fqdn="web1.prod.example", addresses=[loopback],
                         extra_names=[loopback], ansible_host=loopback)
    assert names["dns"] == ["web1", "web1.prod.example"]
    assert names["ip"] == []


def test_node_names_normalises_ips_and_case():
    names = I.node_names("Web1", fqdn="WEB1.Prod.Example.",
                         addresses=["2001:DB8:0:0::11", "10.0.0.11", " 10.0.0.9 "],
                         extra_names=["Alias.Prod.Example", "2001:db8::11"])
    assert names["common_name"] == "web1.prod.example"
    assert names["dns"] == ["alias.prod.example", "web1", "web1.prod.example"]
    # duplicates dropped, canonical text, IPv4 before IPv6, numeric order
    assert names["ip"] == ["10.0.0.9", "10.0.0.11", "2001:db8::11"]


def test_node_names_ip_order_is_numeric():
    names = I.node_names("h", addresses=["10.0.0.100", "10.0.0.20", "2001:db8::2", "10.0.0.3",
                                         "2001:db8::10"])
    assert names["ip"] == ["10.0.0.3", "10.0.0.20", "10.0.0.100", "2001:db8::2", "2001:db8::10"]


def test_node_names_ipv6_only():
    names = I.node_names("v6node", fqdn="v6node.example", addresses="2001:db8::abcd")
    assert names == {"common_name": "v6node.example", "dns": ["v6node", "v6node.example"],
                     "ip": ["2001:db8::abcd"]}


def test_node_names_duplicates_dropped():
    names = I.node_names("web1.prod.example", fqdn="web1.prod.example",
                         addresses=["10.0.0.11", "10.0.0.11"],
                         extra_names=["web1.prod.example", "WEB1.PROD.EXAMPLE"],
                         ansible_host="10.0.0.11")
    assert names == {"common_name": "web1.prod.example", "dns": ["web1.prod.example"],
                     "ip": ["10.0.0.11"]}


def test_node_names_ansible_host_counts():
    names = I.node_names("web1", ansible_host="192.0.2.7")
    assert names == {"common_name": "web1", "dns": ["web1"], "ip": ["192.0.2.7"]}
    names = I.node_names("web1", ansible_host="web1.lan")
    assert names["dns"] == ["web1", "web1.lan"]


def test_node_names_common_name_without_fqdn():
    # the first DNS name in inventory order, not the alphabetically first
    names = I.node_names("zed", extra_names=["alpha.example"])
    assert names["common_name"] == "zed"
    # an alias that is no DNS name is skipped; then the first real DNS name is the CN
    names = I.node_names("Web_01", extra_names=["web01.example"])
    assert names == {"common_name": "web01.example", "dns": ["web01.example"], "ip": []}
    # no DNS name at all: the CN is still a name the node holds, its address
    names = I.node_names("Web_01", addresses=["10.1.1.1"])
    assert names == {"common_name": "10.1.1.1", "dns": [], "ip": ["10.1.1.1"]}
    # nothing usable: the inventory name itself
    assert I.node_names("Web_01")["common_name"] == "Web_01"


def test_node_names_aliases_need_not_be_dns_names():
    # (since issue 14 an inventory name must still be a host name: no spaces or slashes)
    names = I.node_names("db_server-old", ansible_host="db_server")
    assert names["dns"] == [] and names["ip"] == []


@pytest.mark.parametrize("kwargs", [
    {"fqdn": "web_1.example"},
    {"addresses": ["not an address"]},
    {"extra_names": ["*.example"]},
    {"extra_names": ["-bad.example"]},
    {"extra_names": ["a..b"]},
])
def test_node_names_invalid_names_are_errors(kwargs):
    with pytest.raises(TrustzoneError) as info:
        I.node_names("web1", **kwargs)
    assert "neither a DNS name nor an IP address" in str(info.value)
    assert "trustzone_certs_extra_names" in info.value.fix


@pytest.mark.parametrize("typo", ["10.0.0.300", "10.0.0", "192.168.1.1.1"])
def test_node_names_mistyped_ip_is_an_error(typo):
    with pytest.raises(TrustzoneError):
        I.node_names("web1", addresses=[typo])


def test_node_names_empty_and_none_inputs_are_skipped():
    names = I.node_names("web1", fqdn="", addresses=None, extra_names=["", "  ", None])
    assert names == {"common_name": "web1", "dns": ["web1"], "ip": []}


def test_node_names_localhost_fqdn_is_not_the_common_name():
    names = I.node_names("web1", fqdn="localhost")
    assert names["common_name"] != "localhost"


# --------------------------------------------------------------------------- duplicate_names

def test_duplicate_names():
    clashes = I.duplicate_names({
        "web1": {"dns": ["web1", "shared.example"], "ip": ["10.0.0.1"]},
        "web2": {"dns": ["web2", "shared.example"], "ip": ["10.0.0.1"]},
        "web3": {"dns": ["web3"], "ip": ["10.0.0.3"]},
        "web0": {"dns": ["shared.example"], "ip": []},
    })
    assert clashes == {"shared.example": ["web0", "web1", "web2"], "10.0.0.1": ["web1", "web2"]}


def test_duplicate_names_none():
    assert I.duplicate_names({"a": {"dns": ["a"], "ip": []}, "b": {"dns": ["b"]}, "c": {}}) == {}
    assert I.duplicate_names({}) == {}
