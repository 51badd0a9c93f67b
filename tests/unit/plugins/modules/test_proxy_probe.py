"""proxy_probe: the front door passes and its generation is kept; it fails and the kept
generation is written back byte for byte, with its owner and mode; nothing kept says so."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _proxyprobe as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.modules import tz_modulelib

M = pytest.importorskip("ansible_collections.trustzone.pki.plugins.modules.proxy_probe")

CERT = (b"-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n")


def pem(tag):
    import base64
    return CERT % base64.b64encode(tag.encode() * 8)


def setup(tmp_path):
    acme = tmp_path / "acme"
    (acme / "web").mkdir(parents=True)
    for name in P.ACME_FILES:
        (acme / "web" / name).write_bytes(pem("old") if name.endswith("chain.pem")
                                          or name == "cert.pem" else b"old " + name.encode())
    os.chmod(acme / "web" / "privkey.pem", 0o600)
    conf = tmp_path / "trustzone-proxy.conf"
    conf.write_text("# old\n")
    routes = [{"name": "web", "server_names": ["web.example.test", "www.example.test"],
               "acme": True, "ssl_certificate": str(acme / "web" / "fullchain.pem"),
               "ssl_certificate_key": str(acme / "web" / "privkey.pem")}]
    return acme / "web", conf, routes


def looking(serving):
    """A stand-in for _probe.observe: the door serves ``serving()`` (PEM bytes) to every name."""
    calls = []

    def look(endpoint, cafile, certfile, keyfile, timeout):
        calls.append((endpoint["server_name"], cafile, certfile, keyfile))
        return {"endpoint": "x", "error": None, "fingerprint": P.pin(serving())}
    look.calls = calls
    return look


def run(tmp_path, look, check=False, **params):
    merged = dict(tz_modulelib.module_defaults(M), dir=str(tmp_path / "served"),
                  proxy="edge01", delay=0, retries=2)
    merged.update(params)
    return M.run(tz_modulelib.FakeModule(merged, check), look=look)


def test_a_passing_door_keeps_its_generation_once(tmp_path):
    web, conf, routes = setup(tmp_path)
    look = looking((web / "fullchain.pem").read_bytes)
    got = run(tmp_path, look, routes=routes, configs=[str(conf)], keep=True)
    assert got["ok"] and got["changed"] and got["kept"] and got["failure"] == ""
    assert [c[0] for c in look.calls] == ["web.example.test", "www.example.test"]
    assert all(c[1:] == (None, None, None) for c in look.calls)  # no client certificate
    served = tmp_path / "served"
    assert stat.S_IMODE(os.stat(served).st_mode) == 0o700
    manifest = json.loads((served / P.MANIFEST).read_text())
    assert [f["path"] for f in manifest["files"]] == [
        str(web / n) for n in P.ACME_FILES] + [str(conf)]
    assert all(stat.S_IMODE(os.stat(served / f["name"]).st_mode) == 0o600
               for f in manifest["files"])
    # again: nothing changes
    assert not run(tmp_path, look, routes=routes, configs=[str(conf)], keep=True)["changed"]


def test_check_mode_keeps_nothing(tmp_path):
    web, conf, routes = setup(tmp_path)
    look = looking((web / "fullchain.pem").read_bytes)
    got = run(tmp_path, look, check=True, routes=routes, configs=[str(conf)], keep=True)
    assert got["ok"] and got["changed"]
    assert not (tmp_path / "served").exists()


def test_a_failing_door_is_put_back_to_the_kept_generation(tmp_path):
    web, conf, routes = setup(tmp_path)
    old = {n: (web / n).read_bytes() for n in P.ACME_FILES}
    serving = {"pem": old["fullchain.pem"]}
    look = looking(lambda: serving["pem"])
    run(tmp_path, look, routes=routes, configs=[str(conf)], keep=True)
    # a renewal writes new files; the door keeps serving the old certificate
    for name in P.ACME_FILES:
        (web / name).write_bytes(pem("new") if name.endswith("chain.pem") or name == "cert.pem"
                                 else b"new " + name.encode())
    conf.write_text("# new\n")
    os.chmod(web / "privkey.pem", 0o640)
    look.calls.clear()
    got = run(tmp_path, look, routes=routes, configs=[str(conf)], keep=True)
    assert not got["ok"] and got["kept"] and not got["changed"]
    assert len(look.calls) == 2 * 3  # each name: one attempt and two retries
    assert len(got["lines"]) == 2 and got["lines"][0].startswith(
        "proxy edge01: web.example.test:443 (route web): serves certificate ")
    manifest_before = (tmp_path / "served" / P.MANIFEST).read_bytes()
    restored = run(tmp_path, look, state="restored")
    assert restored["changed"] and set(restored["restored"]) == {
        str(web / n) for n in P.ACME_FILES} | {str(conf)}
    assert {n: (web / n).read_bytes() for n in P.ACME_FILES} == old
    assert conf.read_text() == "# old\n"
    assert stat.S_IMODE(os.stat(web / "privkey.pem").st_mode) == 0o600
    assert (tmp_path / "served" / P.MANIFEST).read_bytes() == manifest_before
    # probed again after the reload: it serves the previous generation
    again = run(tmp_path, look, routes=routes, rolled_back=got["lines"])
    assert again["ok"] and not again["changed"]
    assert again["failure"] == got["lines"][0] + "; " + got["lines"][1] + (
        " - the previous certificates and configuration were put back, the proxy reloaded "
        "and serves them again")
    # and when the door still fails, the line says so
    serving["pem"] = pem("other")
    still = run(tmp_path, look, routes=routes, rolled_back=got["lines"])
    assert not still["ok"] and "but it still fails: proxy edge01: web.example.test:443" in (
        still["failure"])


def test_nothing_kept_fails_in_one_line(tmp_path):
    _web, conf, routes = setup(tmp_path)
    got = run(tmp_path, looking(lambda: pem("other")), routes=routes, configs=[str(conf)],
              keep=True)
    assert not got["ok"] and not got["kept"]
    assert "no previous generation is kept to go back to" in got["failure"]
    assert "\n" not in got["failure"]
    with pytest.raises(TrustzoneError, match="no served generation is kept"):
        run(tmp_path, None, state="restored")


def test_a_damaged_copy_is_refused_and_nothing_is_written(tmp_path):
    web, conf, routes = setup(tmp_path)
    look = looking((web / "fullchain.pem").read_bytes)
    run(tmp_path, look, routes=routes, configs=[str(conf)], keep=True)
    manifest = json.loads((tmp_path / "served" / P.MANIFEST).read_text())
    (tmp_path / "served" / manifest["files"][-1]["name"]).write_text("tampered")
    (web / "privkey.pem").write_bytes(b"new key")
    with pytest.raises(TrustzoneError, match="missing or damaged"):
        run(tmp_path, None, state="restored")
    assert (web / "privkey.pem").read_bytes() == b"new key"  # every copy checked first
    assert conf.read_text() == "# old\n"


def test_an_unreadable_certificate_file_fails_without_retrying(tmp_path):
    web, conf, routes = setup(tmp_path)
    (web / "fullchain.pem").write_bytes(b"no certificate")
    look = looking(lambda: pem("x"))
    got = run(tmp_path, look, routes=routes, configs=[str(conf)], keep=True)
    assert not got["ok"] and len(look.calls) == 2
    assert got["lines"][0].endswith("fullchain.pem holds no certificate")
