"""module_utils/_identity.resolve_identities: who may hold which name (pure, inventory data)."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

ZONE = {
    "ca": {"trustzone_node_fqdn": "ca.prod.example", "ansible_host": "10.0.0.2"},
    "web1": {"trustzone_node_fqdn": "web1.prod.example", "trustzone_node_addresses": ["10.0.0.11"],
             "ansible_host": "127.0.0.1"},
    "web2": {"trustzone_node_fqdn": "web2.prod.example", "trustzone_node_addresses": ["10.0.0.12"],
             "trustzone_certs_extra_names": ["api.prod.example"]},
}
NODES = ("web1", "web2")


def resolve(changes=None, nodes=NODES, ca_hosts=("ca",)):
    inventory = copy.deepcopy(ZONE)
    for host, variables in (changes or {}).items():
        inventory.setdefault(host, {}).update(variables)
    return I.resolve_identities(inventory, "prod", list(nodes), list(ca_hosts))


def error(changes=None, **kwargs):
    with pytest.raises(TrustzoneError) as info:
        resolve(changes, **kwargs)
    text = str(info.value)
    assert "\n" not in text and "Fix:" in text
    return text


def test_every_host_is_resolved_from_its_variables_and_the_role_defaults():
    out = resolve()
    assert out["web1"]["names"] == {"common_name": "web1.prod.example",
                                    "dns": ["web1", "web1.prod.example"], "ip": ["10.0.0.11"]}
    assert out["web2"]["names"]["dns"] == ["api.prod.example", "web2", "web2.prod.example"]
    assert [p["name"] for p in out["web1"]["profiles"]] == ["server", "client"]
    assert out["web1"]["profiles"][0]["cert_path"] == "/etc/trustzone/prod/server.crt"
    assert out["ca"]["profiles"] is None
    assert out["ca"]["names"]["ip"] == ["10.0.0.2"]


def test_the_ca_host_can_be_a_node_too():
    out = resolve(nodes=("web1", "web2", "ca"))
    assert [p["name"] for p in out["ca"]["profiles"]] == ["server", "client"]


# --------------------------------------------------------------------------- host names

@pytest.mark.parametrize("host", ["node/1", "../node1", "node 1", "nöde1", "-node1", "node1.",
                                  "node..1", "", "node1;rm", "a" * 64, "node\n1"])
def test_bad_inventory_host_names_are_refused_naming_the_host_and_the_fix(host):
    text = error({host: {"trustzone_node_fqdn": "x.prod.example"}}, nodes=NODES + (host,))
    assert "inventory host %r is not a valid host name or address" % host in text
    assert "rename the host" in text and "ansible_host" in text


@pytest.mark.parametrize("host", ["node1", "Node-1", "node1.prod.example", "node_1", "10.0.0.99",
                                  "2001:db8::99"])
def test_good_inventory_host_names(host):
    out = resolve({host: {"trustzone_node_fqdn": "x.prod.example"}}, nodes=NODES + (host,))
    assert out[host]["names"]["common_name"] == "x.prod.example"


def test_an_underscore_name_identifies_the_host_but_is_never_a_certificate_name():
    out = resolve({"web_3": {"trustzone_node_fqdn": "web3.prod.example"}},
                  nodes=NODES + ("web_3",))
    assert out["web_3"]["names"]["dns"] == ["web3.prod.example"]
    text = error({"web_3": {}}, nodes=NODES + ("web_3",))
    assert "web_3: profile 'server': the inventory gives this host no DNS name" in text


# --------------------------------------------------------------------------- common name

def profile(**keys):
    return {"trustzone_certs_profiles": [dict({"name": "server"}, **keys)]}


def test_common_name_must_be_one_of_the_hosts_names():
    assert resolve({"web2": profile(common_name="API.prod.example")})["web2"]["profiles"][0][
        "common_name"] == "api.prod.example"
    text = error({"web2": profile(common_name="other.prod.example")})
    assert text.startswith("web2: profile 'server': common_name other.prod.example is not one "
                           "of this host's names")
    assert "common_name_outside_names: true" in text


@pytest.mark.parametrize("cn", ["*.prod.example", "*", "web2 .prod.example", "a..b", "-x.example",
                                "web2.prod.example/x", ""])
def test_common_name_is_validated_even_outside_the_names(cn):
    if cn == "":
        # empty means "the default"
        assert resolve({"web2": profile(common_name=cn)})["web2"]["profiles"][0][
            "common_name"] == "web2.prod.example"
        return
    for outside in (False, True):
        text = error({"web2": profile(common_name=cn, common_name_outside_names=outside)})
        assert "web2: profile 'server': common_name %r is not a DNS name or IP address" % cn in text


def test_a_label_common_name_outside_the_names_when_the_profile_says_so():
    changes = {h: profile(common_name="QlikClient", common_name_outside_names=True)
               for h in NODES}
    out = resolve(changes)
    # several hosts may share a label; it is kept as written
    assert {out[h]["profiles"][0]["common_name"] for h in NODES} == {"QlikClient"}


@pytest.mark.parametrize("cn", ["web1.prod.example", "ca.prod.example", "10.0.0.2", "CA.prod.example"])
def test_a_common_name_outside_the_names_is_never_another_hosts_name(cn):
    text = error({"web2": profile(common_name=cn, common_name_outside_names=True)})
    assert "two hosts would hold the same name: %s claimed by" % cn.lower() in text


def test_common_name_outside_names_must_be_a_boolean():
    text = error({"web2": profile(common_name="QlikClient", common_name_outside_names="yes")})
    assert "common_name_outside_names must be true or false" in text


# --------------------------------------------------------------------------- the whole zone

@pytest.mark.parametrize("changes, clash", [
    ({"web2": {"trustzone_certs_extra_names": ["web1.prod.example"]}},
     "web1.prod.example claimed by web1, web2"),
    ({"web2": {"trustzone_node_addresses": ["10.0.0.11"]}}, "10.0.0.11 claimed by web1, web2"),
    ({"web2": {"ansible_host": "10.0.0.11"}}, "10.0.0.11 claimed by web1, web2"),
    ({"web1": {"trustzone_certs_extra_names": ["ca.prod.example"]}},
     "ca.prod.example claimed by ca, web1"),
    ({"web1": {"trustzone_certs_extra_names": ["CA.Prod.Example."]}},
     "ca.prod.example claimed by ca, web1"),
    ({"web1": {"trustzone_node_addresses": ["10.0.0.2"]}}, "10.0.0.2 claimed by ca, web1"),
])
def test_names_are_unique_across_every_node_and_the_ca_host(changes, clash):
    text = error(changes)
    assert text.startswith("zone prod: two hosts would hold the same name: ")
    assert clash in text


def test_a_host_whose_names_are_only_loopback_shares_nothing():
    out = resolve({"web3": {"ansible_host": "127.0.0.1", "trustzone_node_fqdn": "web3.prod.example"}},
                  nodes=NODES + ("web3",))
    assert out["web3"]["names"]["ip"] == []


@pytest.mark.parametrize("changes, words", [
    ({"web1": {"trustzone_certs_extra_names": "api.prod.example"}},
     "web1: trustzone_certs_extra_names must be a list"),
    ({"web1": {"trustzone_node_addresses": {"a": 1}}},
     "web1: trustzone_node_addresses must be a list"),
    ({"web1": {"trustzone_certs_extra_names": ["not a name"]}},
     "web1: trustzone_certs_extra_names: 'not a name' is neither a DNS name nor an IP address"),
    ({"web1": {"trustzone_certs_profiles": "server"}},
     "web1: trustzone_certs_profiles must be a list of profiles"),
    ({"web1": profile(dns=["web2.prod.example"])},
     "web1: profile 'server' asks for names the inventory does not give this node"),
])
def test_bad_variables_name_the_host_and_the_variable(changes, words):
    assert words in error(changes)
