# -*- coding: utf-8 -*-
"""module_utils/_probe.py, the probe module, and _batches.py (issue 21): real mutual-TLS
handshakes against a local server, the endpoint list, the prober, the reload lines, the
batches and the halt."""

from __future__ import annotations

import datetime
import socket
import threading

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _batches as B
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _probe as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.modules import probe as probe_module
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    TlsServer, server_context)

UTC = datetime.timezone.utc
NAME = "node1.lab.trustzone.test"


def _zone(label):
    now = datetime.datetime.now(UTC)
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    root = C.build_ca_certificate(key, C.zone_name_attributes(label, "%s root" % label),
                                  now - datetime.timedelta(days=1),
                                  now + datetime.timedelta(days=30))

    def leaf(cn, dns, eku):
        leaf_key = C.generate_key({"type": "ec", "curve": "secp256r1"})
        cert = C.build_leaf_certificate(
            leaf_key.public_key(), C.zone_name_attributes(label, cn), dns, [], root, key,
            now - datetime.timedelta(hours=1), now + datetime.timedelta(days=5),
            ["digital_signature"], [eku])
        return cert, leaf_key
    return root, leaf


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


@pytest.fixture(scope="module")
def zones():
    return {"prod": _zone("prod"), "other": _zone("other")}


@pytest.fixture
def files(tmp_path, zones):
    root, leaf = zones["prod"]
    other_root, other_leaf = zones["other"]
    server, server_key = leaf(NAME, [NAME], "server_auth")
    client, client_key = leaf("node2", ["node2.lab.trustzone.test"], "client_auth")
    stranger, stranger_key = other_leaf("x", ["x.test"], "client_auth")
    f = {
        "roots": _write(tmp_path, "roots.pem", C.certificate_pem(root)),
        "other_roots": _write(tmp_path, "other.pem", C.certificate_pem(other_root)),
        "server": _write(tmp_path, "server.pem", C.certificate_pem(server)),
        "server_key": _write(tmp_path, "server.key", C.private_key_pem(server_key)),
        "client": _write(tmp_path, "client.pem", C.certificate_pem(client)),
        "client_key": _write(tmp_path, "client.key", C.private_key_pem(client_key)),
        "stranger": _write(tmp_path, "stranger.pem", C.certificate_pem(stranger)),
        "stranger_key": _write(tmp_path, "stranger.key", C.private_key_pem(stranger_key)),
        "server_fp": C.fingerprint(server),
    }
    return f


def _endpoint(port):
    return {"host": "127.0.0.1", "port": port, "server_name": NAME, "profile": "server"}


def test_a_zone_server_that_takes_the_client_certificate_passes(files):
    server = TlsServer(files["server"], files["server_key"], client_ca=files["roots"])
    try:
        seen = P.probe(_endpoint(server.port), files["roots"], files["client"],
                       files["client_key"], timeout=5, retries=0,
                       expect_fingerprint=files["server_fp"])
    finally:
        server.close()
    assert seen["ok"], seen
    assert seen["accepted"] and seen["fingerprint"] == files["server_fp"]
    assert seen["attempts"] == 1
    assert server.peers and server.peers[0]["subject"]  # the server saw our client cert


def test_a_server_presenting_another_certificate_fails_naming_both(files):
    server = TlsServer(files["server"], files["server_key"], client_ca=files["roots"])
    try:
        seen = P.probe(_endpoint(server.port), files["roots"], files["client"],
                       files["client_key"], timeout=5, retries=0, expect_fingerprint="ab" * 32)
    finally:
        server.close()
    assert not seen["ok"]
    assert "not the one just installed" in seen["line"]
    assert files["server_fp"][:16] in seen["line"] and seen["line"].startswith("127.0.0.1:")


def test_a_server_refusing_the_zone_client_certificate_fails(files):
    # the server trusts only the other zone: our client certificate is refused (TLS 1.3
    # says so after the handshake, on the first read)
    server = TlsServer(files["server"], files["server_key"], client_ca=files["other_roots"])
    try:
        seen = P.probe(_endpoint(server.port), files["roots"], files["client"],
                       files["client_key"], timeout=5, retries=0)
    finally:
        server.close()
    assert not seen["ok"]
    assert "client certificate" in seen["line"] or "handshake failed" in seen["line"], seen


def test_a_server_outside_the_zone_does_not_verify(files):
    server = TlsServer(files["server"], files["server_key"], client_ca=files["roots"])
    try:
        seen = P.probe(_endpoint(server.port), files["other_roots"], files["client"],
                       files["client_key"], timeout=5, retries=0)
    finally:
        server.close()
    assert not seen["ok"] and "does not verify" in seen["line"]


def test_the_wrong_name_does_not_verify(files):
    server = TlsServer(files["server"], files["server_key"], client_ca=files["roots"])
    try:
        endpoint = dict(_endpoint(server.port), server_name="node9.lab.trustzone.test")
        seen = P.probe(endpoint, files["roots"], files["client"], files["client_key"],
                       timeout=5, retries=0)
    finally:
        server.close()
    assert not seen["ok"] and "does not verify" in seen["line"]


def test_nothing_listening_is_retried_then_fails(files):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    sleeps = []
    seen = P.probe(_endpoint(port), files["roots"], files["client"], files["client_key"],
                   timeout=2, retries=2, delay=0.5, sleep=sleeps.append)
    assert not seen["ok"] and "no connection" in seen["line"]
    assert seen["attempts"] == 3 and sleeps == [0.5, 0.5]


def test_a_service_still_reloading_passes_on_a_later_attempt(files):
    answers = [{"endpoint": "h:1", "error": "no connection: refused"},
               {"endpoint": "h:1", "accepted": True, "fingerprint": "aa"}]
    seen = P.probe(_endpoint(1), "r", "c", "k", retries=3, delay=0, sleep=lambda s: None,
                   expect_fingerprint="AA", look=lambda *a: answers.pop(0))
    assert seen["ok"] and seen["attempts"] == 2


def test_unusable_prober_files_fail_in_one_line(files, tmp_path):
    seen = P.observe(_endpoint(1), files["roots"], str(tmp_path / "missing.pem"),
                     files["client_key"], 1)
    assert seen["error"].startswith("the prober's zone files cannot be used")


def test_the_module_probes_every_endpoint_and_never_fails_on_a_bad_probe(files):
    server = TlsServer(files["server"], files["server_key"], client_ca=files["roots"])
    try:
        result = probe_module.run({
            "endpoints": [server.port, "127.0.0.1:%d" % server.port],
            "default_host": "127.0.0.1", "allowed": ["127.0.0.1", NAME],
            "expect": {"server": files["server_fp"]}, "cafile": files["roots"],
            "client_cert": files["client"], "client_key": files["client_key"],
            "timeout": 5, "retries": 0, "delay": 0})
    finally:
        server.close()
    # the server name defaults to the host, 127.0.0.1, which the certificate does not carry
    assert result["changed"] is False and result["ok"] is False
    assert len(result["probes"]) == 2 and len(result["lines"]) == 2
    assert all("does not verify" in line for line in result["lines"])


# ------------------------------------------------------------------ endpoints

def test_endpoints_in_every_form():
    found = P.endpoints([8443, "node1.z:9443", {"port": "5432", "profile": "db"},
                         {"host": "10.0.0.1", "port": 1, "server_name": "node1.z"}],
                        "node1.z", allowed={"node1.z", "10.0.0.1"})
    assert found == [
        {"host": "node1.z", "port": 8443, "server_name": "node1.z", "profile": "server"},
        {"host": "node1.z", "port": 9443, "server_name": "node1.z", "profile": "server"},
        {"host": "node1.z", "port": 5432, "server_name": "node1.z", "profile": "db"},
        {"host": "10.0.0.1", "port": 1, "server_name": "node1.z", "profile": "server"}]
    assert P.endpoints(None, "x") == []


@pytest.mark.parametrize("raw, says", [
    ("8443", "must be a list"),
    ([True], "not an endpoint"),
    ([0], "port 0"),
    ([70000], "port 70000"),
    (["node1.z:http"], "port 'http'"),
    ([{"port": 1, "colour": "red"}], "unknown keys colour"),
    ([3.5], "not an endpoint"),
])
def test_bad_endpoints_fail_in_one_line(raw, says):
    with pytest.raises(TrustzoneError) as err:
        P.endpoints(raw, "node1.z")
    assert says in str(err.value) and "\n" not in str(err.value)
    assert "trustzone_rollout_endpoints" in str(err.value)


def test_probes_reach_only_the_nodes_own_names():
    with pytest.raises(TrustzoneError) as err:
        P.endpoints(["example.org:443"], "node1.z", allowed={"node1.z"})
    assert "not this node in the zone" in str(err.value)
    with pytest.raises(TrustzoneError):
        P.endpoints([{"port": 443, "server_name": "bank.example"}], "node1.z",
                    allowed={"node1.z"})


# ------------------------------------------------------------------ prober, reloads

def test_the_prober_is_a_node_of_an_earlier_batch_when_there_is_one():
    hosts = ["n3", "n1", "n2"]  # batch order: canary n3, then n1, then n2
    assert P.choose_prober("n1", hosts, ["n1"], active=hosts) == "n3"
    assert P.choose_prober("n2", hosts, ["n2"], active=["n1", "n2"]) == "n1"  # n3 failed
    # the canary of a first run: nobody else holds certificates yet, so itself
    assert P.choose_prober("n3", hosts, ["n3"], active=hosts) == "n3"
    # every node at once: another node of the batch (it installed in this same step)
    assert P.choose_prober("n1", hosts, hosts) == "n3"
    assert P.choose_prober("n3", hosts, hosts) == "n1"
    assert P.choose_prober("n1", hosts, ["n1"], configured="bastion") == "bastion"


def test_reload_errors_name_each_failed_reload():
    services = {"results": [{"item": "nginx", "failed": False},
                            {"item": "app", "failed": True, "msg": "Unit app.service not found."}]}
    commands = {"results": [{"item": ["svc", "reload"], "failed": True, "rc": 3,
                             "stderr": "line one\nkey type not supported"}]}
    assert P.reload_errors(services, commands) == [
        "reload 'app' failed: Unit app.service not found.",
        "reload 'svc reload' failed (rc=3): key type not supported"]
    assert P.reload_errors({"skipped": True}, None) == []
    assert P.reload_errors({}, {"results": [{"item": "x", "failed": False}]}) == []


# ------------------------------------------------------------------ batches

NODES = ["n1", "n2", "n3", "n4", "n5"]


def test_without_a_plan_every_node_is_one_batch():
    planned = B.plan(NODES)
    assert planned["batches"] == [NODES] and planned["serial"] == [5]
    assert planned["canary"] is False
    assert B.plan([])["serial"] == [0]


def test_a_canary_group_goes_first_then_batches_of_two():
    planned = B.plan(NODES, canary="canary", batches=2, groups={"canary": ["n4", "x9"]})
    assert planned["batches"] == [["n4"], ["n1", "n2"], ["n3", "n5"]]
    assert planned["hosts"] == ["n4", "n1", "n2", "n3", "n5"]
    assert planned["serial"] == [1, 2, 2]
    assert B.lines(planned)[0] == "batch 1 of 3 (canary): n4"


def test_a_canary_count_and_shares_with_the_last_size_repeating():
    planned = B.plan(NODES, canary=1, batches=["25%", 3])
    assert planned["batches"] == [["n1"], ["n2", "n3"], ["n4", "n5"]]
    assert B.plan(NODES, batches=["40%"])["serial"] == [2, 2, 1]
    assert B.plan(NODES, canary="2")["batches"] == [["n1", "n2"], ["n3", "n4", "n5"]]


def test_a_canary_group_outside_the_limit_leaves_no_empty_batch():
    assert B.plan(["n1", "n2"], canary="canary", groups={"canary": ["n9"]})["batches"] == \
        [["n1", "n2"]]


@pytest.mark.parametrize("kwargs, says", [
    ({"canary": "nosuchgroup", "groups": {}}, "does not have"),
    ({"batches": 0}, "trustzone_rollout_batches[0]"),
    ({"batches": ["150%"]}, "not a batch size"),
    ({"batches": [True]}, "not a batch size"),
    ({"canary": -1}, "trustzone_rollout_canary"),
])
def test_bad_plans_fail_in_one_line(kwargs, says):
    with pytest.raises(TrustzoneError) as err:
        B.plan(NODES, **kwargs)
    assert says in str(err.value)


def test_a_failed_node_of_an_earlier_batch_halts_the_rollout():
    assert B.halted(["n1", "n2"], ["n2", "n5"]) == ["n2"]
    assert B.halted(["n1", "n2"], []) == []


def test_the_failure_line_says_what_was_seen_and_what_the_rollback_did():
    seen = ["n1.z:8443: no connection: Connection refused"]
    assert P.failure_line(seen, {"changed": True, "rolled_back": ["server", "client"]}, []) == (
        "n1.z:8443: no connection: Connection refused; rolled back server, client to the "
        "previous certificates, which serve again")
    assert P.failure_line(seen, {"rolled_back": ["server"]}, ["n1.z:8443: no connection"]) \
        .endswith("which do not serve either: n1.z:8443: no connection")
    assert P.failure_line(seen, {"failed": True, "msg": "there is no previous certificate"}) \
        .endswith("; could not roll back: there is no previous certificate")
    assert P.failure_line(seen, {"skipped": True}, None, "trustzone_rollout_rollback is false") \
        .endswith("; not rolled back: trustzone_rollout_rollback is false")
    assert P.failure_line(seen, None) == seen[0]


# ------------------------------------------------------------------ health URL

class Health:
    """An HTTPS server on loopback demanding a zone client certificate, answering ``code``."""

    def __init__(self, files, code):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the standard library's name)
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        ctx = server_context(files["server"], files["server_key"], files["roots"])
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("code, ok", [(200, True), (503, False)])
def test_the_health_url_answers_2xx_to_the_zone_client(files, code, ok):
    server = Health(files, code)
    try:
        # the certificate names NAME; connect to loopback under that name
        url = "https://%s:%d/health" % (NAME, server.port)
        real = socket.getaddrinfo

        def loopback(host, *args, **kwargs):
            return real("127.0.0.1" if host == NAME else host, *args, **kwargs)
        socket.getaddrinfo = loopback
        try:
            seen = P.fetch(url, files["roots"], files["client"], files["client_key"], 5)
        finally:
            socket.getaddrinfo = real
    finally:
        server.close()
    assert seen["status"] == code
    assert P.verdict(seen)[0] is ok
    assert P.verdict(seen)[1] == ("%s: answered HTTP 200" % url if ok else
                                  "%s: answered HTTP 503, not 2xx" % url)


def test_a_health_url_without_a_zone_client_certificate_gets_no_answer(files, tmp_path):
    server = Health(files, 200)
    try:
        seen = P.fetch("https://127.0.0.1:%d/" % server.port, files["roots"],
                       files["stranger"], files["stranger_key"], 5)
    finally:
        server.close()
    assert not P.verdict(seen)[0] and seen["error"].startswith("no answer")


@pytest.mark.parametrize("url, says", [
    ("http://node1.z/health", "not an https:// URL"),
    ("https://bank.example/health", "not this node in the zone"),
    ("node1.z", "not an https:// URL"),
])
def test_bad_health_urls_fail_in_one_line(url, says):
    with pytest.raises(TrustzoneError) as err:
        P.health_url(url, {"node1.z"})
    assert says in str(err.value)
    assert P.health_url("https://node1.z:8443/h", {"node1.z"}) == "https://node1.z:8443/h"
