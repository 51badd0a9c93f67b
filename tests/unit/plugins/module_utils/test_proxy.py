"""The proxy's routes and zones (module_utils/_proxy.py): one front door, several zones."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _proxy as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

DEFAULT = {"name": "lab", "dir": "/etc/trustzone/lab"}
ACME = "/etc/trustzone-acme"


def resolve(routes, zones=None, acme=True, certs=()):
    return P.resolve(routes, P.resolve_zones(zones, DEFAULT), acme, ACME, list(certs))


def test_one_zone_by_default_with_its_files():
    out = resolve([{"name": "web", "server_names": ["Web.Example.com"],
                    "backends": ["node2.lab.test:8443"]}])
    route = out["routes"][0]
    assert route["zone"] == "lab" and route["server_names"] == ["web.example.com"]
    assert route["client_cert"] == "/etc/trustzone/lab/client-fullchain.pem"
    assert route["client_key"] == "/etc/trustzone/lab/client.key"
    assert route["roots"] == "/etc/trustzone/lab/roots.pem"
    assert route["crl"] == "/etc/trustzone/lab/crl.pem"
    assert route["backend_name"] == "node2.lab.test"
    assert route["ssl_certificate"] == ACME + "/web/fullchain.pem" and route["acme"]
    assert out["acme_certificates"] == [{"name": "web", "domains": ["web.example.com"]}]
    assert [z["name"] for z in out["zones"]] == ["lab"]


def test_the_single_zone_variables_are_kept():
    zones = P.resolve_zones([], {"name": "lab", "dir": "/x", "client_cert": "/c.pem",
                                 "client_key": "/k", "roots": "/r", "crl": "/l"})
    assert zones == [{"name": "lab", "dir": "/x", "client_cert": "/c.pem", "client_key": "/k",
                      "roots": "/r", "crl": "/l"}]


def test_each_route_reaches_its_own_zone_with_that_zones_identity_only():
    out = resolve([
        {"name": "prod", "server_names": ["qs.example.com"], "backends": ["qs1.prod.test:443"]},
        {"name": "dev", "server_names": ["qsdev.example.com"], "backends": ["qs1.dev.test:443"],
         "zone": "dev"}], zones=["prod", {"name": "dev", "dir": "/srv/dev"}])
    prod, dev = out["routes"]
    assert prod["zone"] == "prod" and prod["client_cert"].startswith("/etc/trustzone/prod/")
    assert prod["roots"] == "/etc/trustzone/prod/roots.pem"
    assert dev["zone"] == "dev"
    assert {dev[k] for k in ("client_cert", "client_key", "roots", "crl")} == {
        "/srv/dev/client-fullchain.pem", "/srv/dev/client.key", "/srv/dev/roots.pem",
        "/srv/dev/crl.pem"}
    assert [z["name"] for z in out["zones"]] == ["prod", "dev"]


def test_only_the_zones_routes_use_are_fingerprinted():
    out = resolve([{"name": "a", "server_names": ["a.example.com"], "backends": ["a:1"],
                    "zone": "dev"}], zones=["prod", "dev"])
    assert [z["name"] for z in out["zones"]] == ["dev"]


@pytest.mark.parametrize("routes, zones, error", [
    ([], None, "at least one route"),
    ("web", None, "at least one route"),
    ([{"name": "Web", "server_names": ["a"], "backends": ["a:1"]}], None, "a-z, 0-9"),
    ([{"name": "w", "server_names": "a", "backends": ["a:1"]}], None, "server_names"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a"]}], None, "not host:port"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:70000"]}], None, "not host:port"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:1", "b:1"]}], None, "backend_name"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:1"], "zone": "dev"}], ["prod"],
     "zone 'dev' is not one the proxy bridges into"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:1"], "ssl_certificate": "/c"}],
     None, "go together"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:1"], "colour": "red"}], None,
     "unknown keys: colour"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:1"]}] * 2, None, "listed twice"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:1"]}], ["prod", "prod"], "twice"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:1"]}], ["Prod"], "not a zone name"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:1"]}], "prod", "must be a list"),
    ([{"name": "w", "server_names": ["a"], "backends": ["a:1"]}], [{"name": "p", "x": 1}],
     "unknown keys: x"),
])
def test_bad_routes_and_zones_are_one_clear_line(routes, zones, error):
    with pytest.raises(TrustzoneError, match=error):
        resolve(routes, zones)


def test_without_acme_a_route_needs_its_own_certificate():
    with pytest.raises(TrustzoneError, match="no certificate"):
        resolve([{"name": "w", "server_names": ["a"], "backends": ["a:1"]}], acme=False)
    out = resolve([{"name": "w", "server_names": ["a"], "backends": ["a:1"],
                    "ssl_certificate": "/c.pem", "ssl_certificate_key": "/k.pem"}], acme=False)
    assert out["routes"][0]["ssl_certificate"] == "/c.pem" and out["acme_certificates"] == []


def test_shared_and_wildcard_certificates_must_cover_the_routes_names():
    certs = [{"name": "apps", "domains": ["apps.example.com", "*.apps.example.com"]}]
    out = resolve([{"name": "dash", "server_names": ["dash.apps.example.com"],
                    "backends": ["a:1"], "certificate": "apps"}], certs=certs)
    assert out["acme_certificates"] == certs
    with pytest.raises(TrustzoneError, match="x.other.com, which ACME certificate apps"):
        resolve([{"name": "dash", "server_names": ["x.other.com"], "backends": ["a:1"],
                  "certificate": "apps"}], certs=certs)
    with pytest.raises(TrustzoneError, match="a.b.apps.example.com"):
        resolve([{"name": "deep", "server_names": ["a.b.apps.example.com"], "backends": ["a:1"],
                  "certificate": "apps"}], certs=certs)
