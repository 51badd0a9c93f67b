"""playbooks/proxy.yml over a real fleet and a real ACME server (pebble).

One fleet: a CA host, node1 (the proxy: a node of zone lab and the one host of group
trustzone_proxies) and node2 (a backend: nginx that demands a zone client certificate).
pebble and pebble-challtestsrv run on this machine, bound to the fleet network's gateway; the
test itself is the user: it talks to the proxy from outside the zone, trusting only pebble's
root. The tests run in file order, each building on the state the previous ones left.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time

import pytest
import yaml
from cryptography import x509

from conftest import fleet_prefix, recap
from pebble import Pebble

PREFIX = fleet_prefix("tzprx")
ZONE = "lab"
DIR = "/etc/trustzone/%s" % ZONE
ACME = "/etc/trustzone-acme"
WEB = "web.public.test"                       # HTTP-01
APPS = ["apps.public.test", "*.apps.public.test"]  # DNS-01 (a wildcard: DNS-01 only)
DASH = "dash.apps.public.test"                # served with the wildcard certificate
ROGUE = "rogue.apps.public.test"              # forwarded to a backend outside the zone
BODY = "hello from the zone backend"
OUTPUTS = []  # every playbook output of this module, checked for secrets at the end

BACKEND_CONF = r"""
# the zone's service: only clients with a certificate from zone lab get an answer
server {
    listen 8443 ssl;
    server_name node2.lab.trustzone.test;
    ssl_certificate /etc/trustzone/lab/server-fullchain.pem;
    ssl_certificate_key /etc/trustzone/lab/server.key;
    ssl_client_certificate /etc/trustzone/lab/roots.pem;
    ssl_verify_client on;
    location / {
        default_type text/plain;
        return 200 "hello from the zone backend; proto=$http_x_forwarded_proto host=$host client=$ssl_client_s_dn\n";
    }
}
"""

ROGUE_CONF = r"""
# a service that is not in zone lab (its certificate comes from zone dev)
server {
    listen 9443 ssl;
    server_name node2.lab.trustzone.test;
    ssl_certificate /etc/trustzone/dev/server-fullchain.pem;
    ssl_certificate_key /etc/trustzone/dev/server.key;
    access_log /var/log/nginx/rogue.log;
    location / {
        default_type text/plain;
        return 200 "rogue\n";
    }
}
"""


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=2, zone=ZONE)


def ip_of(fleet, host):
    return fleet.hosts["all"]["children"]["trustzone_nodes"]["hosts"][host][
        "trustzone_node_addresses"][0]


@pytest.fixture(scope="module")
def pebble(fleet, tmp_path_factory):
    """pebble + challtestsrv on the fleet network's gateway; stopped even when a test fails."""
    net = json.loads(subprocess.run(["podman", "network", "inspect", "%s-net" % PREFIX],
                                    capture_output=True, text=True, check=True).stdout)
    gateway = net[0]["subnets"][0]["gateway"]
    # 90 days, like Let's Encrypt: the default renewal window (30 days) is not reached.
    with Pebble(tmp_path_factory.mktemp("pebble"), gateway, validity_seconds=90 * 86400) as p:
        p.add_a(WEB, ip_of(fleet, "node1"))
        yield p


@pytest.fixture(scope="module")
def zone(fleet):
    """Zone lab on every host, and node2's backend service."""
    OUTPUTS.append(fleet.playbook("site.yml").output)
    fleet.sh("node2", "cat > /etc/nginx/conf.d/backend.conf && nginx -t -q && nginx",
             input=BACKEND_CONF)
    return fleet


ROUTES_HTTP = [{"name": "web", "server_names": [WEB],
                "backends": ["node2.lab.trustzone.test:8443"]}]
ROUTES_ALL = ROUTES_HTTP + [
    {"name": "dash", "server_names": [DASH], "certificate": "apps",
     "backends": ["node2.lab.trustzone.test:8443"]},
    {"name": "rogue", "server_names": [ROGUE], "certificate": "apps",
     "backends": ["node2.lab.trustzone.test:9443"]},
]
CERTS_ALL = [{"name": "apps", "domains": APPS, "challenge": "dns-01"}]


@pytest.fixture(scope="module")
def inventories(fleet, pebble, tmp_path_factory):
    """{'http': only the HTTP-01 route, 'all': plus the DNS-01 wildcard routes}."""
    base = yaml.safe_load(fleet.inventory.read_text())
    proxy_vars = {
        "trustzone_acme_directory": pebble.directory,
        "trustzone_acme_directory_cacert": pebble.listener_ca_pem,
        "trustzone_acme_terms_agreed": True,
        "trustzone_acme_email": "pki-team@public.test",
        "trustzone_acme_dns_provider": "challtestsrv",
        "trustzone_acme_dns_challtestsrv_url": pebble.challtestsrv_url,
    }
    out = {}
    tmp = tmp_path_factory.mktemp("inventories")
    for name, routes, certs in (("http", ROUTES_HTTP, []), ("all", ROUTES_ALL, CERTS_ALL)):
        inv = json.loads(json.dumps(base))
        inv["all"]["children"]["trustzone_proxies"] = {
            "hosts": {"node1": {}},
            "vars": dict(proxy_vars, trustzone_proxy_routes=routes,
                         trustzone_acme_certificates=certs),
        }
        out[name] = tmp / ("%s.yml" % name)
        out[name].write_text(yaml.safe_dump(inv))
    return out


def proxy(fleet, inventory, *args, check=True):
    proc = fleet.playbook("proxy.yml", *args, inventory=inventory, check=check)
    OUTPUTS.append(proc.output)
    return proc


def user_get(fleet, name, path="/", cafile=None, port=443, address=None):
    """The user's side: curl on this machine (outside the zone), the name pinned to the proxy."""
    address = address or ip_of(fleet, "node1")
    cmd = ["curl", "-sS", "--max-time", "20", "--resolve", "%s:%d:%s" % (name, port, address),
           "-w", "\n%{http_code}"]
    if cafile:
        cmd += ["--cacert", str(cafile)]
    scheme = "http" if port == 80 else "https"
    proc = subprocess.run(cmd + ["%s://%s%s" % (scheme, name, path)], capture_output=True,
                          text=True, timeout=60, check=False)
    body, code = proc.stdout.rpartition("\n")[::2]
    proc.body, proc.code = body, code
    return proc


def served_certificate(fleet, name, cafile):
    """The certificate the proxy presents for name, verified against cafile (Python's ssl)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((ip_of(fleet, "node1"), 443), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=name) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def pem_serial(pem):
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def nginx_workers(fleet, host="node1"):
    """PIDs of nginx's workers: a reload replaces them, nothing else does."""
    return fleet.sh(host, "pgrep -P \"$(cat /run/nginx.pid)\" | sort").stdout.split()


def eventually(probe, seconds=15.0):
    """probe() until it is true: `nginx -s reload` returns before the new workers run."""
    deadline = time.monotonic() + seconds
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def pebble_root(pebble, tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "pebble-root.pem"
    path.write_text(pebble.root_pem())
    return path


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------

def test_check_mode_plans_the_request_and_asks_the_ca_nothing(zone, pebble, inventories):
    requests = pebble.requests()
    proc = proxy(zone, inventories["http"], "--check", "--diff")
    assert recap(proc.output)["node1"]["failed"] == 0
    assert "request web (%s) by http-01: no readable certificate" % WEB in proc.output
    assert "proxy_ssl_verify on;" in proc.output  # the diff of the configuration it would write
    assert pebble.requests() == requests
    assert not zone.exists("node1", ACME)
    assert not zone.exists("node1", "/etc/nginx/conf.d/trustzone-proxy.conf")
    assert zone.exists("node1", "/etc/nginx/sites-enabled/default")
    assert not zone.exists("node1", "/run/nginx.pid")


def test_http01_issues_the_certificate_and_the_user_reaches_the_backend(
        zone, pebble, inventories, pebble_root):
    proc = proxy(zone, inventories["http"])
    assert "request web (%s) by http-01: no readable certificate" % WEB in proc.output
    assert pebble.orders() == 1 and pebble.issued() == 1
    # the user, outside the zone, trusting only pebble's root, gets the backend's answer ...
    assert eventually(lambda: user_get(zone, WEB, cafile=pebble_root).code == "200")
    got = user_get(zone, WEB, cafile=pebble_root)
    assert got.returncode == 0 and got.code == "200", got.stderr
    assert got.body.startswith(BODY)
    assert "proto=https" in got.body and "host=%s" % WEB in got.body
    # ... which the backend gave to the proxy's zone client certificate (mutual TLS)
    assert "client=CN=node1.lab.trustzone.test" in got.body
    cert = served_certificate(zone, WEB, pebble_root)
    assert cert.serial_number == pem_serial(zone.read("node1", ACME + "/web/cert.pem"))
    assert cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [WEB]


def test_http_redirects_to_https_but_serves_acme_challenges(zone):
    got = user_get(zone, WEB, path="/hub/?x=1", port=80)
    assert got.code == "301"
    headers = subprocess.run(
        ["curl", "-sSI", "--resolve", "%s:80:%s" % (WEB, ip_of(zone, "node1")),
         "http://%s/hub/?x=1" % WEB],
        capture_output=True, text=True, timeout=30, check=False).stdout
    assert re.search(r"(?im)^location: https://%s/hub/\?x=1\r?$" % re.escape(WEB), headers)
    # challenge responses are answered on port 80 itself (a missing one: 404, not a redirect)
    zone.sh("node1", "echo probe > /var/www/trustzone-acme/.well-known/acme-challenge/probe")
    got = user_get(zone, WEB, path="/.well-known/acme-challenge/probe", port=80)
    assert (got.code, got.body.strip()) == ("200", "probe")
    zone.sh("node1", "rm /var/www/trustzone-acme/.well-known/acme-challenge/probe")
    assert user_get(zone, WEB, path="/.well-known/acme-challenge/none", port=80).code == "404"


def s_client(fleet, name, *args):
    return subprocess.run(["openssl", "s_client", "-connect", "%s:443" % ip_of(fleet, "node1"),
                           "-servername", name, *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30, check=False)


def test_tls_settings_for_users(zone, pebble_root):
    ca = ["-CAfile", str(pebble_root), "-verify_return_error"]
    tls13 = s_client(zone, WEB, "-tls1_3", *ca)
    assert tls13.returncode == 0, tls13.stderr
    assert "New, TLSv1.3, Cipher is TLS_" in tls13.stdout
    tls12 = s_client(zone, WEB, "-tls1_2", *ca)
    assert tls12.returncode == 0, tls12.stderr
    assert "New, TLSv1.2, Cipher is ECDHE-" in tls12.stdout  # forward secrecy
    # older protocols and ciphers without forward secrecy are refused
    assert s_client(zone, WEB, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0").returncode != 0
    assert s_client(zone, WEB, "-tls1_2", "-cipher", "AES128-SHA").returncode != 0
    hsts = subprocess.run(["curl", "-sSI", "--cacert", str(pebble_root), "--resolve",
                           "%s:443:%s" % (WEB, ip_of(zone, "node1")), "https://%s/" % WEB],
                          capture_output=True, text=True, timeout=30, check=False)
    assert re.search(r"(?im)^strict-transport-security: max-age=63072000", hsts.stdout)
    # a name no route serves: no certificate at all, the handshake is refused
    unknown = s_client(zone, "other.public.test")
    assert unknown.returncode != 0 and "unrecognized name" in unknown.stderr, unknown.stderr


def test_second_run_asks_the_ca_nothing_and_does_not_reload(zone, pebble, inventories):
    requests, workers = pebble.requests(), nginx_workers(zone)
    stats = recap(proxy(zone, inventories["http"]).output)
    assert stats["node1"]["changed"] == 0 and stats["node1"]["failed"] == 0
    assert pebble.requests() == requests  # not even the directory was fetched
    assert nginx_workers(zone) == workers


def test_files_have_the_documented_layout_and_modes(zone):
    listing = zone.sh("node1", "stat -c '%n %a %U:%G' {a} {a}/account {a}/account/account.key "
                      "{a}/web {a}/web/*".format(a=ACME)).stdout
    modes = dict(line.split(" ")[0:2] for line in listing.splitlines())
    assert modes[ACME + "/account"] == "700"
    assert modes[ACME + "/account/account.key"] == "600"
    assert modes[ACME + "/web/privkey.pem"] == "600"
    for name in ("cert.pem", "chain.pem", "fullchain.pem", "state.json"):
        assert modes["%s/web/%s" % (ACME, name)] == "644"
    assert set(n.rsplit("/", 1)[-1] for n in modes if n.startswith(ACME + "/web/")) == {
        "privkey.pem", "cert.pem", "chain.pem", "fullchain.pem", "state.json"}
    assert all(line.endswith("root:root") for line in listing.splitlines())
    assert not zone.exists("node1", "/etc/nginx/sites-enabled/default")
    # nginx forwards into the zone over mutual TLS, verifying the backend against the zone roots
    conf = zone.read("node1", "/etc/nginx/conf.d/trustzone-proxy.conf")
    for line in ("proxy_ssl_verify on;", "proxy_ssl_trusted_certificate %s/roots.pem;" % DIR,
                 "proxy_ssl_crl %s/crl.pem;" % DIR,
                 "proxy_ssl_certificate %s/client-fullchain.pem;" % DIR,
                 "proxy_ssl_name node2.lab.trustzone.test;", "ssl_protocols TLSv1.2 TLSv1.3;",
                 "proxy_set_header X-Forwarded-Proto https;"):
        assert line in conf


def test_backend_refuses_clients_without_a_zone_client_certificate(zone, fleet, tmp_path):
    url = "https://node2.lab.trustzone.test:8443/"
    curl = ("curl -sS -o /dev/null -w '%{{http_code}}' --cacert {d}/roots.pem {cert} " + url)
    # control: node1's zone client certificate is accepted
    ok = zone.sh("node1", curl.format(d=DIR, cert="--cert %s/client.crt --key %s/client.key"
                                      % (DIR, DIR)))
    assert ok.stdout == "200"
    # no client certificate: nginx completes the handshake and answers 400
    assert zone.sh("node1", curl.format(d=DIR, cert=""), check=False).stdout == "400"
    # a client certificate from a second zone (dev, on node2): 400 too
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["vars"]["trustzone_name"] = "dev"
    nodes = inv["all"]["children"]["trustzone_nodes"]["hosts"]
    inv["all"]["children"]["trustzone_nodes"]["hosts"] = {"node2": nodes["node2"]}
    dev = tmp_path / "dev.yml"
    dev.write_text(yaml.safe_dump(inv))
    OUTPUTS.append(fleet.playbook("site.yml", inventory=dev).output)
    dev_cert = "--cert /etc/trustzone/dev/client.crt --key /etc/trustzone/dev/client.key"
    assert zone.sh("node2", curl.format(d=DIR, cert=dev_cert), check=False).stdout == "400"
    # node2 now also runs a service with its dev identity (used by the DNS-01 test below)
    zone.sh("node2", "cat > /etc/nginx/conf.d/rogue.conf && nginx -t -q && nginx -s reload",
            input=ROGUE_CONF)


def test_dns01_issues_a_wildcard_certificate(zone, pebble, inventories, pebble_root):
    orders, txt = pebble.orders(), len(pebble.txt_records_set())
    workers = nginx_workers(zone)
    web_serial = pem_serial(zone.read("node1", ACME + "/web/cert.pem"))
    proc = proxy(zone, inventories["all"])
    assert "request apps (%s) by dns-01: no readable certificate" % ", ".join(APPS) in proc.output
    assert "request web" not in proc.output
    assert pebble.orders() == orders + 1  # the HTTP-01 certificate is still good: not renewed
    assert pem_serial(zone.read("node1", ACME + "/web/cert.pem")) == web_serial
    # both names share the _acme-challenge record: two values set, the record cleared after
    records = pebble.txt_records_set()[txt:]
    assert [record[0] for record in records] == ["_acme-challenge.apps.public.test."] * 2
    assert "_acme-challenge.apps.public.test." in pebble.txt_records_cleared()
    assert eventually(lambda: nginx_workers(zone) != workers)  # reloaded for the new routes
    got = user_get(zone, DASH, cafile=pebble_root)
    assert got.code == "200" and got.body.startswith(BODY), got.stderr
    cert = served_certificate(zone, DASH, pebble_root)
    assert sorted(cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)) == sorted(APPS)


def test_proxy_refuses_a_backend_outside_the_zone(zone, pebble_root):
    """ROGUE is routed to node2:9443, which presents a zone-dev certificate: 502, no request."""
    got = user_get(zone, ROGUE, cafile=pebble_root)
    assert got.code == "502", got.body
    assert "rogue" not in got.body
    assert zone.read("node2", "/var/log/nginx/rogue.log").strip() == ""
    log = zone.read("node1", "/var/log/nginx/error.log")
    assert "upstream SSL certificate verify error" in log


def test_proxy_refuses_a_revoked_backend_until_it_is_renewed(zone, inventories, pebble_root):
    """revoke.yml for the backend: every node gets the new CRLs and revoke.yml ends with
    proxy.yml, which reloads nginx with them (crl.pem is one of the configuration's inputs):
    the proxy refuses the revoked backend (502). Renewed, it is let in again."""
    assert user_get(zone, WEB, cafile=pebble_root).code == "200"
    proc = zone.playbook("revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node2"]}',
                         inventory=inventories["all"])
    OUTPUTS.append(proc.output)
    assert eventually(lambda: user_get(zone, WEB, cafile=pebble_root).code == "502")
    assert "certificate revoked" in zone.read("node1", "/var/log/nginx/error.log")
    OUTPUTS.append(zone.playbook("site.yml", inventory=inventories["all"]).output)
    zone.sh("node2", "nginx -s reload")  # the backend serves its renewed certificate
    assert eventually(lambda: user_get(zone, WEB, cafile=pebble_root).code == "200")


def test_renewal_when_the_window_exceeds_the_remaining_lifetime(zone, pebble, inventories,
                                                                pebble_root):
    before = {n: pem_serial(zone.read("node1", "%s/%s/cert.pem" % (ACME, n)))
              for n in ("web", "apps")}
    key_before = zone.read("node1", ACME + "/web/privkey.pem")
    account_before = zone.read("node1", ACME + "/account/account.key")
    orders, workers = pebble.orders(), nginx_workers(zone)
    # pebble issues for 90 days: a 100-day window makes both certificates due
    proc = proxy(zone, inventories["all"], "-e",
                 json.dumps({"trustzone_acme_renew_before_days": 100}))
    assert re.search(r"request web \(%s\) by http-01: expires [^,]+ UTC, within 100 days" % WEB,
                     proc.output)
    assert "request apps" in proc.output
    assert pebble.orders() == orders + 2
    after = {n: pem_serial(zone.read("node1", "%s/%s/cert.pem" % (ACME, n)))
             for n in ("web", "apps")}
    assert all(after[n] != before[n] for n in before)
    assert zone.read("node1", ACME + "/web/privkey.pem") != key_before  # a new key each time
    assert zone.read("node1", ACME + "/account/account.key") == account_before  # kept
    assert eventually(lambda: nginx_workers(zone) != workers)
    # users get the renewed certificates
    assert eventually(lambda: served_certificate(zone, WEB, pebble_root).serial_number
                      == after["web"])
    assert served_certificate(zone, DASH, pebble_root).serial_number == after["apps"]
    assert user_get(zone, WEB, cafile=pebble_root).body.startswith(BODY)


def test_users_do_not_trust_the_zone_and_the_zone_does_not_trust_the_acme_ca(
        zone, pebble, pebble_root, tmp_path):
    # the user (pebble's root only) cannot verify a zone service ...
    direct = subprocess.run(["curl", "-sS", "--cacert", str(pebble_root), "--resolve",
                             "node2.lab.trustzone.test:8443:%s" % ip_of(zone, "node2"),
                             "https://node2.lab.trustzone.test:8443/"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert direct.returncode == 60, direct.stderr  # peer certificate cannot be authenticated
    # ... and the zone's root does not vouch for the proxy's public certificate
    roots = tmp_path / "zone-roots.pem"
    roots.write_text(zone.read("node1", DIR + "/roots.pem"))
    assert user_get(zone, WEB, cafile=roots).returncode == 60
    # no node trusts pebble's root: the ACME certificate does not verify on any of them
    fullchain = zone.read("node1", ACME + "/web/fullchain.pem")
    root_pem = pebble.root_pem().strip()
    for host in ("node1", "node2", "ca"):
        zone.sh(host, "cat > /tmp/acme-fullchain.pem", input=fullchain)
        proc = zone.sh(host, "openssl verify -untrusted /tmp/acme-fullchain.pem "
                             "/tmp/acme-fullchain.pem", check=False)
        assert proc.returncode != 0 and "unable to get local issuer certificate" in proc.output
        bundle = zone.read(host, "/etc/ssl/certs/ca-certificates.crt")
        assert root_pem not in bundle
        assert zone.sh(host, "grep -rl 'Pebble' /usr/local/share/ca-certificates/ || true"
                       ).stdout.strip() == ""
        if host != "ca":  # the zone's roots.pem (nodes only) holds the zone's root alone
            roots_pem = zone.read(host, DIR + "/roots.pem")
            assert roots_pem.count("BEGIN CERTIFICATE") == 1 and root_pem not in roots_pem


def test_a_configuration_nginx_refuses_is_rolled_back(zone, pebble, inventories, pebble_root):
    conf = zone.read("node1", "/etc/nginx/conf.d/trustzone-proxy.conf")
    workers, requests = nginx_workers(zone), pebble.requests()
    proc = proxy(zone, inventories["all"], "-e", "trustzone_proxy_read_timeout=forever",
                 check=False)
    assert proc.returncode != 0
    # with the default window again, no certificate was due (renewed ones included)
    assert not re.search(r"request \S+ \(", proc.output) and pebble.requests() == requests
    assert "nginx refused the new configuration" in proc.output
    assert '"proxy_read_timeout" directive invalid value' in proc.output
    assert zone.read("node1", "/etc/nginx/conf.d/trustzone-proxy.conf") == conf
    assert zone.sh("node1", "ls /etc/nginx/conf.d/").stdout.split() == [
        "trustzone-proxy-http.conf", "trustzone-proxy.conf"]
    assert nginx_workers(zone) == workers and pebble.requests() == requests
    assert user_get(zone, WEB, cafile=pebble_root).body.startswith(BODY)


SERVED = "/var/lib/trustzone-proxy/served"
SHADOW = "/etc/nginx/conf.d/00-shadow.conf"
SHADOW_CONF = r"""
# an operator's server for the same public name, with a copy of the certificate of the day;
# conf.d is read in name order and nginx gives a name to the first server that claims it
# (nginx -t only warns: conflicting server name ... ignored)
server {
    listen 443 ssl;
    server_name web.public.test;
    ssl_certificate /etc/ssl/shadow/fullchain.pem;
    ssl_certificate_key /etc/ssl/shadow/privkey.pem;
    return 200 "shadow\n";
}
"""


def test_a_reload_that_leaves_the_door_serving_another_certificate_is_rolled_back(
        zone, pebble, inventories, pebble_root):
    """nginx -t passes and nginx reloads, but the door does not serve the certificate just
    installed: a stray server block (00-shadow.conf, with a copy of today's web certificate)
    claims the name before the role's file does. A forced renewal installs new certificates;
    the probe after the reload sees the copy instead of the new file, the role puts back the
    last generation that passed a probe (certificates, keys, configuration), reloads, probes
    again and fails the run with one line. Without the shadow the door then serves the
    previous generation, and the next run changes nothing."""
    assert zone.exists("node1", SERVED + "/manifest.json")  # kept by an earlier passing probe
    before = {n: zone.read("node1", "%s/%s/cert.pem" % (ACME, n)) for n in ("web", "apps")}
    files_before = {p: zone.read("node1", p) for p in (
        ACME + "/web/privkey.pem", ACME + "/web/fullchain.pem", ACME + "/web/state.json",
        ACME + "/apps/privkey.pem", "/etc/nginx/conf.d/trustzone-proxy.conf")}
    zone.sh("node1", "mkdir -p /etc/ssl/shadow && cp %s/web/fullchain.pem %s/web/privkey.pem "
            "/etc/ssl/shadow/ && cat > %s" % (ACME, ACME, SHADOW), input=SHADOW_CONF)
    test = zone.sh("node1", "nginx -t 2>&1")
    assert test.returncode == 0 and "conflicting server name" in test.stdout
    orders = pebble.orders()
    proc = proxy(zone, inventories["all"], "-e",
                 json.dumps({"trustzone_acme_renew_before_days": 100}), check=False)
    assert proc.returncode != 0 and recap(proc.output)["node1"]["failed"] == 1
    assert pebble.orders() == orders + 2  # both were renewed, then rolled back
    assert proc.output.count("fatal: [node1]") == 1, proc.output
    fatal = " ".join(proc.output.split("fatal: [node1]")[1].split())  # the result, unwrapped
    line = re.search(
        r"proxy node1: %s:443 \(route web\): serves certificate [0-9a-f]{16}, not "
        r"[0-9a-f]{16} \(%s/web/fullchain.pem\) - the previous certificates and configuration "
        r"were put back, the proxy reloaded and serves them again" % (re.escape(WEB), ACME),
        fatal)
    assert line, fatal
    assert DASH not in fatal.rsplit("msg:", maxsplit=1)[-1]  # served with its new certificate
    # the previous generation is back, byte for byte
    for name, pem in before.items():
        assert zone.read("node1", "%s/%s/cert.pem" % (ACME, name)) == pem
    for path, data in files_before.items():
        assert zone.read("node1", path) == data, path
    assert served_certificate(zone, DASH, pebble_root).serial_number == pem_serial(before["apps"])
    # without the shadow, a real client gets the route's (previous) certificate and the backend
    zone.sh("node1", "rm -r %s /etc/ssl/shadow && nginx -s reload" % SHADOW)
    assert eventually(lambda: user_get(zone, WEB, cafile=pebble_root).body.startswith(BODY))
    shown = s_client(zone, WEB, "-CAfile", str(pebble_root), "-verify_return_error")
    assert shown.returncode == 0, shown.stderr
    first = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", shown.stdout,
                      re.S).group(0)
    assert pem_serial(first) == pem_serial(before["web"])
    stats = recap(proxy(zone, inventories["all"]).output)
    assert stats["node1"]["changed"] == 0 and stats["node1"]["failed"] == 0


def test_no_secret_ever_appears_in_output(zone):
    account = zone.read("node1", ACME + "/account/account.key")
    key = zone.read("node1", ACME + "/web/privkey.pem")
    assert len(OUTPUTS) >= 8
    for output in OUTPUTS:
        assert "PRIVATE KEY" not in output
        for secret in (account, key):
            body = "".join(secret.strip().splitlines()[1:-1])
            assert body[:40] not in output.replace("\\n", "")
