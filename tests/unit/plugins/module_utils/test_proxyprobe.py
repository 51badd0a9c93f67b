"""The proxy's front-door probe, pure parts (module_utils/_proxyprobe.py)."""

from __future__ import annotations

import hashlib
import ssl

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _proxyprobe as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    make_root)

ACME = "/etc/trustzone-acme"


def route(name, names, acme=True, cert=None):
    cert = cert or name
    if acme:
        return {"name": name, "server_names": names, "acme": True,
                "ssl_certificate": "%s/%s/fullchain.pem" % (ACME, cert),
                "ssl_certificate_key": "%s/%s/privkey.pem" % (ACME, cert)}
    return {"name": name, "server_names": names, "acme": False,
            "ssl_certificate": "/etc/ssl/%s.crt" % name,
            "ssl_certificate_key": "/etc/ssl/%s.key" % name}


@pytest.mark.parametrize("name, sni", [
    ("web.example.com", "web.example.com"),
    ("Web.Example.COM.", "web.example.com"),
    ("*.apps.example.com", "trustzone-probe.apps.example.com"),
    ("~^www\\d+\\.example\\.com$", None),
    ("www.*", None),
    ("_", None),
    ("", None),
])
def test_sni_for_a_server_name(name, sni):
    assert P.sni_for(name) == sni


def test_targets_one_per_distinct_name_with_the_route_certificate():
    routes = [route("web", ["web.example.com", "www.example.com"]),
              route("dash", ["dash.apps.example.com", "web.example.com"], cert="apps"),
              route("own", ["*.own.example.com", "~regex"], acme=False)]
    got = P.targets(routes, "127.0.0.1", 8443)
    assert [(t["server_name"], t["route"]) for t in got] == [
        ("web.example.com", "web"), ("www.example.com", "web"),
        ("dash.apps.example.com", "dash"), ("trustzone-probe.own.example.com", "own")]
    assert got[2]["certificate"] == ACME + "/apps/fullchain.pem"
    assert got[3]["certificate"] == "/etc/ssl/own.crt"
    assert all(t["host"] == "127.0.0.1" and t["port"] == 8443 for t in got)
    assert P.targets([], "127.0.0.1", 443) == []


def test_pin_is_the_sha256_of_the_first_certificate_der(keys):
    leaf = make_root(keys.get("p256#lab-root"), zone="lab", cn="leaf")
    other = make_root(keys.get("p384#root"))
    from cryptography.hazmat.primitives.serialization import Encoding
    pem = leaf.public_bytes(Encoding.PEM) + other.public_bytes(Encoding.PEM)
    der = leaf.public_bytes(Encoding.DER)
    assert P.pin(pem) == hashlib.sha256(der).hexdigest()
    assert P.pin(b"junk\n" + pem) == hashlib.sha256(der).hexdigest()
    assert ssl.PEM_cert_to_DER_cert(leaf.public_bytes(Encoding.PEM).decode()) == der
    assert P.pin(b"") is None and P.pin(None) is None
    assert P.pin(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n") is None


def test_generation_files_an_acme_directory_whole_then_own_files_then_configs():
    routes = [route("web", ["a"]), route("dash", ["b"], cert="apps"),
              route("rogue", ["c"], cert="apps"), route("own", ["d"], acme=False)]
    got = P.generation_files(routes, ["/etc/nginx/conf.d/trustzone-proxy.conf"])
    assert got[:5] == ["%s/web/%s" % (ACME, n) for n in P.ACME_FILES]
    assert got[5:10] == ["%s/apps/%s" % (ACME, n) for n in P.ACME_FILES]
    assert got[10:] == ["/etc/ssl/own.crt", "/etc/ssl/own.key",
                        "/etc/nginx/conf.d/trustzone-proxy.conf"]
    assert len(got) == len(set(got))


def test_kept_names_are_flat_and_differ_by_path_and_content():
    a = P.kept_name("/etc/trustzone-acme/web/privkey.pem", "aa" * 32)
    assert "/" not in a and a.endswith("-privkey.pem")
    assert a != P.kept_name("/etc/trustzone-acme/apps/privkey.pem", "aa" * 32)
    assert a != P.kept_name("/etc/trustzone-acme/web/privkey.pem", "bb" * 32)


def test_manifest_round_trip_and_a_damaged_one_is_refused():
    entry = {"path": "/x/y.pem", "mode": 0o600, "uid": 0, "gid": 0, "sha256": "ab" * 32}
    made = P.manifest([entry])
    assert made["files"][0]["name"] == P.kept_name("/x/y.pem", "ab" * 32)
    assert P.read_manifest(made, "/m") == made["files"]
    for bad in (None, [], {"files": "x"}, {"files": [{"path": "/x"}]}):
        with pytest.raises(TrustzoneError, match="not a served-generation manifest"):
            P.read_manifest(bad, "/m")


TARGET = {"host": "127.0.0.1", "port": 443, "server_name": "web.example.com", "route": "web",
          "certificate": ACME + "/web/fullchain.pem"}


def test_verdict_lines_name_the_proxy_the_endpoint_and_what_was_seen():
    ok, line = P.verdict("edge01", TARGET, {"fingerprint": "AB" * 32}, "ab" * 32)
    assert ok and line == "proxy edge01: web.example.com:443 (route web): serves abababababababab"
    ok, line = P.verdict("edge01", TARGET, {"fingerprint": "cd" * 32}, "ab" * 32)
    assert not ok and line == (
        "proxy edge01: web.example.com:443 (route web): serves certificate cdcdcdcdcdcdcdcd, "
        "not abababababababab (%s/web/fullchain.pem)" % ACME)
    ok, line = P.verdict("edge01", TARGET, {"error": "no connection: Connection refused"},
                         "ab" * 32)
    assert not ok and line.endswith("(route web): no connection: Connection refused")
    ok, line = P.verdict("edge01", TARGET, {"fingerprint": "ab" * 32}, None)
    assert not ok and line.endswith("%s/web/fullchain.pem holds no certificate" % ACME)
    ok, line = P.verdict("edge01", TARGET, {"fingerprint": None}, "ab" * 32)
    assert not ok and "serves certificate none" in line


def test_failure_line_says_what_was_done():
    first = ["proxy e: a:443 (route a): serves certificate x, not y (f)"]
    line = P.failure_line("e", first, kept=False)
    assert line.startswith(first[0] + " - ") and "no previous generation is kept" in line
    line = P.failure_line("e", first, kept=True, second=[])
    assert line == first[0] + (" - the previous certificates and configuration were put back, "
                               "the proxy reloaded and serves them again")
    line = P.failure_line("e", first, kept=True, second=["proxy e: a:443 (route a): boom"])
    assert "but it still fails: proxy e: a:443 (route a): boom" in line
    assert "\n" not in line
    assert P.failure_line("e", [], kept=False).startswith("proxy e: the probe failed")
