"""_identity.resolve_profile(s): defaults, derived usages, and what a profile may not ask for."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

BASE = "/etc/trustzone/prod/"


def resolve(profile, names, zone="prod"):
    return I.resolve_profile(profile, zone, BASE, names)


def test_defaults(names):
    prof = resolve({"name": "server"}, names)
    assert prof == {
        "name": "server",
        "zone": "prod",
        "key": {"type": "ec", "curve": "secp256r1"},
        "lifetime": 365 * 86400,
        "renew_before": 30 * 86400,
        "key_usage": ["digital_signature"],
        "extended_key_usage": ["server_auth"],
        "common_name": "web1.prod.example",
        "dns": ["web1", "web1.prod.example"],
        "ip": ["10.0.0.11", "2001:db8::11"],
        "cert_path": "/etc/trustzone/prod/server.crt",
        "key_path": "/etc/trustzone/prod/server.key",
        "chain_path": "/etc/trustzone/prod/server-fullchain.pem",
        "owner": "root",
        "group": "root",
        "mode": "0644",
        "key_mode": "0600",
        "regenerate_key": True,
    }


def test_default_profiles_are_server_and_client(names):
    profiles = I.resolve_profiles(None, "prod", BASE, names)
    assert [p["name"] for p in profiles] == ["server", "client"]
    assert profiles[0]["extended_key_usage"] == ["server_auth"]
    assert profiles[1]["extended_key_usage"] == ["client_auth"]
    assert profiles[1]["cert_path"] == "/etc/trustzone/prod/client.crt"
    # the module-level defaults are not mutated by resolving
    assert I.DEFAULT_PROFILES == [{"name": "server", "extended_key_usage": ["server_auth"]},
                                  {"name": "client", "extended_key_usage": ["client_auth"]}]


def test_dict_form_profiles(names):
    profiles = I.resolve_profiles({"server": {"key_type": "rsa", "key_size": 2048},
                                   "client": None}, "prod", BASE, names)
    assert [p["name"] for p in profiles] == ["server", "client"]
    assert profiles[0]["key"] == {"type": "rsa", "size": 2048}
    assert profiles[1]["extended_key_usage"] == ["server_auth"]  # the profile default


def test_list_form_profiles(names):
    profiles = I.resolve_profiles([{"name": "a"}, {"name": "b", "key_type": "ed25519"}],
                                  "prod", BASE, names)
    assert [(p["name"], p["key"]["type"]) for p in profiles] == [("a", "ec"), ("b", "ed25519")]


@pytest.mark.parametrize("eku, ku", [
    (["server_auth"], ["digital_signature", "key_encipherment"]),
    (["server_auth", "client_auth"], ["digital_signature", "key_encipherment"]),
    (["client_auth"], ["digital_signature"]),
])
def test_rsa_server_gets_key_encipherment(names, eku, ku):
    prof = resolve({"name": "s", "key_type": "rsa", "key_size": 2048,
                    "extended_key_usage": eku}, names)
    assert prof["key_usage"] == ku


@pytest.mark.parametrize("key_type", ["ec", "ed25519"])
def test_non_rsa_server_gets_digital_signature_only(names, key_type):
    assert resolve({"name": "s", "key_type": key_type}, names)["key_usage"] == [
        "digital_signature"]


def test_explicit_usages_are_canonical_sorted_and_deduplicated(names):
    prof = resolve({"name": "s", "key_usage": ["keyEncipherment", "digitalSignature",
                                               "digital_signature"],
                    "extended_key_usage": ["clientAuth", "server-auth", "client_auth"]}, names)
    assert prof["key_usage"] == ["digital_signature", "key_encipherment"]
    assert prof["extended_key_usage"] == ["client_auth", "server_auth"]


def test_scalar_usages_and_no_eku(names):
    prof = resolve({"name": "s", "key_usage": "digital_signature", "extended_key_usage": []},
                   names)
    assert prof["key_usage"] == ["digital_signature"]
    assert prof["extended_key_usage"] == []


@pytest.mark.parametrize("ku", [["key_cert_sign"], ["digital_signature", "crl_sign"],
                                ["keyCertSign"]])
def test_ca_usages_are_refused(names, ku):
    with pytest.raises(TrustzoneError) as info:
        resolve({"name": "evil", "key_usage": ku}, names)
    assert "CA key usage" in str(info.value) and "'evil'" in str(info.value)
    assert info.value.fix


@pytest.mark.parametrize("profile", [
    {"name": "s", "key_usage": ["sign_all"]},
    {"name": "s", "extended_key_usage": ["code_signing"]},
])
def test_unknown_usages_are_refused(names, profile):
    with pytest.raises(TrustzoneError, match="unknown"):
        resolve(profile, names)


def test_unknown_keys_are_refused(names):
    with pytest.raises(TrustzoneError) as info:
        resolve({"name": "s", "lifetme": "30d", "ca": True}, names)
    assert "unknown keys: ca, lifetme" in str(info.value)
    assert "argument spec" in info.value.fix


@pytest.mark.parametrize("profile", [{}, {"name": None}, {"name": "Server"}, {"name": "a/b"},
                                     {"name": "../x"}])
def test_profile_name_is_validated(names, profile):
    with pytest.raises(TrustzoneError, match="profile name"):
        resolve(profile, names)


@pytest.mark.parametrize("profile", ["server", ["server"], None, 3])
def test_profile_must_be_a_mapping(names, profile):
    with pytest.raises(TrustzoneError, match="must be a mapping"):
        resolve(profile, names)


def test_zone_name_is_validated(names):
    with pytest.raises(TrustzoneError, match="zone name"):
        resolve({"name": "s"}, names, zone="Prod Zone")


def test_subset_of_names_is_fine(names):
    prof = resolve({"name": "s", "dns": ["web1.prod.example"], "ip": ["10.0.0.11"]}, names)
    assert prof["dns"] == ["web1.prod.example"] and prof["ip"] == ["10.0.0.11"]
    prof = resolve({"name": "s", "dns": [], "ip": []}, names)
    assert prof["dns"] == [] and prof["ip"] == []
    prof = resolve({"name": "s", "dns": "web1", "ip": "2001:db8::11"}, names)  # scalars
    assert prof["dns"] == ["web1"] and prof["ip"] == ["2001:db8::11"]


@pytest.mark.parametrize("profile, outside", [
    ({"dns": ["web2.prod.example"]}, "web2.prod.example"),
    ({"dns": ["web1", "db.prod.example"]}, "db.prod.example"),
    ({"ip": ["10.0.0.12"]}, "10.0.0.12"),
    ({"dns": ["x.example"], "ip": ["10.9.9.9"]}, "10.9.9.9, x.example"),
])
def test_names_outside_the_node_are_refused(names, profile, outside):
    with pytest.raises(TrustzoneError) as info:
        resolve(dict(profile, name="s"), names)
    assert "names the inventory does not give this node: %s" % outside in str(info.value)
    assert "trustzone_certs_extra_names" in info.value.fix


@pytest.mark.parametrize("profile", [{"dns": ["WEB1.prod.example"]},
                                     {"ip": ["2001:DB8::11"]},
                                     {"ip": ["2001:db8:0:0::11"]}])
def test_own_names_in_other_spelling_are_accepted(names, profile):
    prof = resolve(dict(profile, name="s"), names)
    assert set(prof["dns"]) <= set(names["dns"]) and set(prof["ip"]) <= set(names["ip"])


def test_common_name_override_is_free_form(names):
    # e.g. Qlik's client certificate is CN=QlikClient
    # (a CN that is none of the host's names is said so explicitly since issue 14)
    assert resolve({"name": "c", "common_name": "QlikClient",
                    "common_name_outside_names": True}, names)["common_name"] == "QlikClient"


def test_duplicate_profile_names_are_refused(names):
    with pytest.raises(TrustzoneError) as info:
        I.resolve_profiles([{"name": "server"}, {"name": "server", "key_type": "rsa"}],
                           "prod", BASE, names)
    assert "'server' is defined twice" in str(info.value)
    assert info.value.fix


@pytest.mark.parametrize("key_mode", ["0644", "0604", "0601", "0777", "0666", 0o644, "644"])
def test_world_readable_key_mode_is_refused(names, key_mode):
    with pytest.raises(TrustzoneError) as info:
        resolve({"name": "s", "key_mode": key_mode}, names)
    assert "lets every user read the key" in str(info.value)
    assert info.value.fix


@pytest.mark.parametrize("key_mode, text", [("0640", "0640"), ("600", "0600"), (0o400, "0400"),
                                            ("0660", "0660")])
def test_key_mode_accepted(names, key_mode, text):
    assert resolve({"name": "s", "key_mode": key_mode}, names)["key_mode"] == text


def test_paths_owner_mode_and_flags(names):
    prof = I.resolve_profile({"name": "qlik", "cert_path": "/opt/qlik/server.pem",
                              "key_path": "/opt/qlik/server_key.pem", "mode": 0o640,
                              "owner": 1000, "group": "qlik", "regenerate_key": 0,
                              "lifetime": "90d", "renew_before": "1w",
                              "key_type": "ec", "key_curve": "P-384"},
                             "prod", "/etc/trustzone/prod", names)
    assert prof["cert_path"] == "/opt/qlik/server.pem"
    assert prof["key_path"] == "/opt/qlik/server_key.pem"
    assert prof["chain_path"] == "/etc/trustzone/prod/qlik-fullchain.pem"
    assert prof["mode"] == "0640"
    assert (prof["owner"], prof["group"]) == ("1000", "qlik")
    assert prof["regenerate_key"] is False
    assert (prof["lifetime"], prof["renew_before"]) == (90 * 86400, 7 * 86400)
    assert prof["key"] == {"type": "ec", "curve": "secp384r1"}


def test_none_values_take_the_default(names):
    prof = resolve({"name": "s", "lifetime": None, "key_type": None, "mode": None}, names)
    assert prof["lifetime"] == 365 * 86400 and prof["key"]["type"] == "ec"
    assert prof["mode"] == "0644"


@pytest.mark.parametrize("profile, words", [
    ({"key_type": "dsa"}, "unknown key type"),
    ({"key_type": "rsa", "key_size": 1024}, "RSA key size"),
    ({"key_curve": "secp521r1"}, "EC curve"),
    ({"lifetime": "forever"}, "lifetime of profile 's'"),
    ({"renew_before": "0d"}, "renew_before of profile 's'"),
    ({"mode": "rw-r--r--"}, "mode of profile 's'"),
])
def test_bad_values_are_trustzone_errors(names, profile, words):
    with pytest.raises(TrustzoneError, match=words):
        resolve(dict(profile, name="s"), names)


@pytest.mark.parametrize("profile", [{"lifetime": "7d"}, {"lifetime": "30d"},
                                     {"lifetime": "1d", "renew_before": "2d"}])
def test_renew_before_must_be_shorter_than_lifetime(names, profile):
    with pytest.raises(TrustzoneError):
        resolve(dict(profile, name="s"), names)


def test_a_fqdn_longer_than_a_common_name_may_be_leaves_the_cn_to_a_shorter_name():
    long_fqdn = "a" * 50 + ".very-long-subdomain.example.com"  # 82 characters
    names = I.node_names("web1", fqdn=long_fqdn)
    profile = I.resolve_profile({"name": "server"}, "prod", "/etc/trustzone/prod", names)
    assert profile["common_name"] == "web1" and long_fqdn in profile["dns"]


def test_a_host_with_only_long_names_or_a_long_common_name_is_one_clear_line():
    long_fqdn = "a" * 50 + ".very-long-subdomain.example.com"
    names = I.node_names("10.0.0.1", fqdn=long_fqdn)
    names = dict(names, ip=[])
    with pytest.raises(TrustzoneError, match="longer than the 64 characters") as err:
        I.resolve_profile({"name": "server"}, "prod", "/etc/trustzone/prod", names)
    assert "\n" not in str(err.value) and "common_name" in str(err.value)
    with pytest.raises(TrustzoneError, match="common_name a{50}"):
        I.resolve_profile({"name": "server", "common_name": long_fqdn}, "prod",
                          "/etc/trustzone/prod", I.node_names("web1", fqdn=long_fqdn))
