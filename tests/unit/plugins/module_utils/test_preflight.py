"""_preflight: the controller-side checks of the node and zone_root action plugins."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _preflight as F
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def one_line(exc):
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("zone", ["prod", "lab-1", "a_b", "0zone"])
def test_valid_zone(zone):
    assert F.check_zone("node1", zone) == zone


@pytest.mark.parametrize("zone", ["", None, "Prod", "-x", "a" * 33, "with space", 5])
def test_invalid_zone_names_the_host_and_variable(zone):
    with pytest.raises(TrustzoneError) as info:
        F.check_zone("node1", zone)
    text = one_line(info)
    assert text.startswith("node1: trustzone_name")
    assert "Fix:" in text


def test_exactly_one_ca_host():
    assert F.check_ca_hosts("node1", "lab", ["ca"]) == "ca"
    with pytest.raises(TrustzoneError) as info:
        F.check_ca_hosts("node1", "lab", ["ca", "node1"])
    assert "trustzone_ca must hold exactly one host, it holds 2 (ca, node1)" in one_line(info)
    with pytest.raises(TrustzoneError) as info:
        F.check_ca_hosts("node1", "lab", [])
    assert "it holds 0 (none)" in one_line(info)


def test_roots_must_be_known():
    assert F.check_roots("node1", "lab", ["PEM"]) == ["PEM"]
    for bad in ([], None, "PEM", {}):
        with pytest.raises(TrustzoneError) as info:
            F.check_roots("node1", "lab", bad, "ca")
        text = one_line(info)
        assert text.startswith("node1: no roots for zone lab")
        assert "trustzone.pki.ca role on ca" in text


def test_lists():
    assert F.check_list("node1", ["nginx"], "trustzone_certs_reload_services") == ["nginx"]
    assert F.check_list("node1", None, "x") == []
    for bad in ("nginx", {"a": 1}, 3):
        with pytest.raises(TrustzoneError) as info:
            F.check_list("node1", bad, "trustzone_certs_reload_services")
        assert one_line(info).startswith(
            "node1: trustzone_certs_reload_services must be a list")


def test_passphrase():
    assert F.check_passphrase("ca", "x" * 12) == "x" * 12
    for bad in ("short", None, 123456789012345):
        with pytest.raises(TrustzoneError) as info:
            F.check_passphrase("ca", bad)
        text = one_line(info)
        assert "ca: trustzone_ca_passphrase must be set, at least 12 characters" in text
        assert "bad" not in text or bad != "short"


def test_install_step():
    signed = {"certificates": {"web1": {"server": {"certificate": "PEM"}}}, "refused": {}}
    assert F.install_step("web1", signed, "prod") == ("install",
                                                      {"server": {"certificate": "PEM"}})
    assert F.install_step("web2", signed, "prod") == ("skip", None)
    assert F.install_step("web2", None, "prod") == ("skip", None)
    assert F.install_step("web2", {}, "prod") == ("skip", None)


def test_install_step_refusal_is_the_cas_message():
    signed = {"certificates": {}, "refused": {"node2": [
        "profile server: subjectAltName: node1.lab.trustzone.test not allowed for this host"]}}
    with pytest.raises(TrustzoneError) as info:
        F.install_step("node2", signed, "lab")
    text = one_line(info)
    assert text.startswith("The CA of zone lab refused to sign for node2: profile server: "
                           "subjectAltName: node1.lab.trustzone.test not allowed for this host")
    assert "investigate the node" in text
