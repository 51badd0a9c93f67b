"""One front door, two zones (issue 18, part 2): the documented multi-zone layout over a real
fleet, with nginx.

One fleet: the CA host holds zones prod and dev (a CA directory each); node1 is the proxy and
a node of both zones; node2 is a prod backend, node3 a dev backend (nginx demanding a client
certificate of its own zone and checking its CRLs). The layout is docs/proxy.md's "Several
zones": an inventory per zone, the proxy in group trustzone_proxies of both, its variables
(the routes of both zones, trustzone_proxy_zones) in one group_vars file beside the two
inventories. The public certificate is one the test makes (routes with ssl_certificate), so
no ACME server is needed here (test_proxy.py covers ACME). The test is the user: it talks to
the proxy from this machine, trusting only its own public CA. The tests run in file order,
each building on the state the previous ones left.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time

import pytest
import yaml
from conftest import fleet_prefix, recap
from pebble import make_listener_pki

PREFIX = fleet_prefix("tzpxz")
ZONES = ("prod", "dev")
BACKEND = {"prod": "node2", "dev": "node3"}
PUBLIC = {"prod": "prod.public.test", "dev": "dev.public.test"}
PUBLIC_DIR = "/etc/ssl/trustzone-public"
RELOAD = "nginx -s reload 2>/dev/null || nginx"  # the backends' trustzone_certs_reload_commands
FORCE = ("-e", "trustzone_ca_rotate_force=true")
OUTPUTS = []  # every playbook output of this module, checked for secrets at the end
STATE = {}

# A zone's service on port 8443: only clients with a certificate of that zone (and not on its
# CRLs) get an answer, which names the client certificate the backend saw.
BACKEND_CONF = r"""
server {
    listen 8443 ssl;
    server_name %(host)s.lab.trustzone.test;
    ssl_certificate /etc/trustzone/%(zone)s/server-fullchain.pem;
    ssl_certificate_key /etc/trustzone/%(zone)s/server.key;
    ssl_client_certificate /etc/trustzone/%(zone)s/roots.pem;
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_crl /etc/trustzone/%(zone)s/crl.pem;
    location / {
        default_type text/plain;
        return 200 "zone=%(zone)s client=$ssl_client_s_dn issuer=$ssl_client_i_dn fp=$ssl_client_fingerprint\n";
    }
}
"""


# --------------------------------------------------------------------------------------------
# the fleet, the public certificate, the two inventories
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=3, zone="lab")


def ip_of(fleet, host):
    return fleet.hosts["all"]["children"]["trustzone_nodes"]["hosts"][host][
        "trustzone_node_addresses"][0]


def public_certificate(fleet):
    """(CA PEM, certificate PEM, key PEM): the users' public CA, and the proxy's certificate
    for both public names (made the way pebble's listener certificate is)."""
    return make_listener_pki(ip_of(fleet, "node1"), names=tuple(PUBLIC.values()))


ROUTES = [{"name": zone, "zone": zone, "server_names": [PUBLIC[zone]],
           "backends": ["%s.lab.trustzone.test:8443" % BACKEND[zone]],
           "ssl_certificate": PUBLIC_DIR + "/fullchain.pem",
           "ssl_certificate_key": PUBLIC_DIR + "/privkey.pem"} for zone in ZONES]


def write_inventories(fleet, where):
    """docs/proxy.md, "Several zones": zones/prod.yml, zones/dev.yml and the proxy's variables
    once, in zones/group_vars/trustzone_proxies.yml (read with either inventory)."""
    base = yaml.safe_load(fleet.inventory.read_text())
    nodes = base["all"]["children"]["trustzone_nodes"]["hosts"]
    (where / "group_vars").mkdir(parents=True)
    (where / "group_vars" / "trustzone_proxies.yml").write_text(yaml.safe_dump({
        "trustzone_proxy_zones": list(ZONES),
        "trustzone_proxy_acme": False,
        "trustzone_proxy_hsts_max_age": 0,
        "trustzone_proxy_routes": ROUTES,
    }))
    out = {}
    for zone in ZONES:
        inv = json.loads(json.dumps(base))
        inv["all"]["vars"]["trustzone_name"] = zone
        members = {"node1": nodes["node1"],
                   BACKEND[zone]: dict(nodes[BACKEND[zone]],
                                       trustzone_certs_reload_commands=[["sh", "-c", RELOAD]])}
        inv["all"]["children"]["trustzone_nodes"]["hosts"] = members
        inv["all"]["children"]["trustzone_proxies"] = {"hosts": {"node1": {}}}
        out[zone] = where / ("%s.yml" % zone)
        out[zone].write_text(yaml.safe_dump(inv))
    return out


@pytest.fixture(scope="module")
def zones(fleet, tmp_path_factory):
    """Both zones built (site.yml with each inventory), both backends serving, the public
    certificate on the proxy. Returns {zone: inventory path}."""
    work = tmp_path_factory.mktemp("zones")
    inventories = write_inventories(fleet, work / "zones")
    for zone in ZONES:
        OUTPUTS.append(fleet.playbook("site.yml", inventory=inventories[zone]).output)
        host = BACKEND[zone]
        fleet.sh(host, "cat > /etc/nginx/conf.d/backend.conf && nginx -t -q && (%s)" % RELOAD,
                 input=BACKEND_CONF % {"host": host, "zone": zone})
    ca_pem, chain, key = public_certificate(fleet)
    fleet.sh("node1", "mkdir -p %s && umask 077 && cat > %s/privkey.pem" % (PUBLIC_DIR, PUBLIC_DIR),
             input=key)
    fleet.sh("node1", "cat > %s/fullchain.pem" % PUBLIC_DIR, input=chain)
    STATE["public_ca"] = work / "public-ca.pem"
    STATE["public_ca"].write_text(ca_pem)
    STATE["public_key"] = key
    return inventories


def proxy(fleet, inventory, *args, check=True):
    proc = fleet.playbook("proxy.yml", *args, inventory=inventory, check=check)
    OUTPUTS.append(proc.output)
    return proc


# --------------------------------------------------------------------------------------------
# the user's side
# --------------------------------------------------------------------------------------------

def user_get(fleet, name, timeout=10):
    """(status, body) of GET https://name/ through the proxy, as a user outside both zones
    sees it (trusting only the public CA). Any failure (refused, handshake, timeout) raises."""
    ctx = ssl.create_default_context(cafile=str(STATE["public_ca"]))
    with socket.create_connection((ip_of(fleet, "node1"), 443), timeout=timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname=name) as tls:
            tls.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                         % name).encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, body = data.decode(errors="replace").split("\r\n\r\n", 1)
    return head.split(" ", 2)[1], body


def answer(fleet, zone):
    """The backend's answer for zone's public name, as {'zone', 'client', 'issuer', 'fp'}."""
    status, body = user_get(fleet, PUBLIC[zone])
    assert status == "200", body
    match = re.search(r"zone=(\S+) client=(.*) issuer=(.*) fp=(\S*)$", body.strip())
    assert match, body
    return dict(zip(("zone", "client", "issuer", "fp"), match.groups()))


class Users(threading.Thread):
    """Requests both public names every ``interval`` seconds until stopped; each result is
    (name, True) or (name, what went wrong)."""

    def __init__(self, fleet, interval=0.2):
        super().__init__(daemon=True)
        self.fleet, self.interval = fleet, interval
        self.results = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for zone in ZONES:
                try:
                    status, body = user_get(self.fleet, PUBLIC[zone])
                    ok = status == "200" and body.startswith("zone=%s " % zone)
                    self.results.append((zone, True if ok else "%s %s" % (status, body[:200])))
                except (OSError, ValueError, IndexError) as exc:
                    self.results.append((zone, "%s: %s" % (type(exc).__name__, exc)))
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(timeout=60)

    def failures(self):
        return [(zone, what) for zone, what in self.results if what is not True]


def sha256(fleet, host, *paths):
    return fleet.sh(host, "sha256sum %s" % " ".join(paths)).stdout


def cert_fp_sha1(fleet, host, path):
    """nginx's $ssl_client_fingerprint of the certificate at path (SHA-1, lower-case hex)."""
    out = fleet.sh(host, "openssl x509 -in %s -noout -fingerprint -sha1" % path).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def issuer_of(fleet, host, path):
    return fleet.sh(host, "openssl x509 -in %s -noout -issuer -nameopt RFC2253" % path
                    ).stdout.strip().split("=", 1)[1]


def rotation_phase(fleet, zone):
    """The zone's rotation phase on the CA host (rotation.json; none: stable)."""
    out = fleet.sh("ca", "d=/var/lib/trustzone/%s; cat $d/$(cat $d/current)/rotation.json "
                         "2>/dev/null || true" % zone).stdout
    return json.loads(out)["phase"] if out.strip() else "stable"


def nginx_workers(fleet):
    """The proxy's nginx worker PIDs: only a reload (or restart) replaces them."""
    return sorted(fleet.sh("node1", "pgrep -P \"$(cat /run/nginx.pid)\"").stdout.split())


def wait_for(probe, tries=75):
    """probe() until it is true, 0.2 s apart (`nginx -s reload` returns before its workers
    run): how many tries it took, or false."""
    for attempt in range(tries):
        if probe():
            return attempt + 1
        time.sleep(0.2)
    return probe()


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------

def test_each_public_name_reaches_its_zone_with_that_zones_client_certificate(fleet, zones):
    proc = proxy(fleet, zones["prod"])
    assert recap(proc.output)["node1"]["failed"] == 0
    conf = fleet.read("node1", "/etc/nginx/conf.d/trustzone-proxy.conf")
    for zone in ZONES:
        assert "proxy_ssl_certificate /etc/trustzone/%s/client-fullchain.pem;" % zone in conf
        assert "proxy_ssl_trusted_certificate /etc/trustzone/%s/roots.pem;" % zone in conf
    assert wait_for(lambda: user_get(fleet, PUBLIC["dev"])[0] == "200")
    for zone in ZONES:
        got = answer(fleet, zone)
        assert got["zone"] == zone
        assert got["client"] == "CN=node1.lab.trustzone.test,OU=%s,O=trustzone" % zone
        # the client certificate the backend saw is the proxy's identity in THIS zone
        client = "/etc/trustzone/%s/client.crt" % zone
        assert got["fp"] == cert_fp_sha1(fleet, "node1", client)
        assert got["issuer"] == issuer_of(fleet, "node1", client)
    assert answer(fleet, "prod")["issuer"] != answer(fleet, "dev")["issuer"]


def test_a_second_run_changes_nothing_and_does_not_reload(fleet, zones):
    workers = nginx_workers(fleet)
    stats = recap(proxy(fleet, zones["prod"]).output)
    assert stats["node1"]["changed"] == 0 and stats["node1"]["failed"] == 0
    # the other zone's inventory holds the same proxy variables: the same configuration
    stats = recap(proxy(fleet, zones["dev"]).output)
    assert stats["node1"]["changed"] == 0 and stats["node1"]["failed"] == 0
    assert nginx_workers(fleet) == workers


def test_a_backend_refuses_the_other_zones_client_certificate(fleet, zones):
    curl = ("curl -sS -o /dev/null -w '%{{http_code}}' --cacert /etc/trustzone/{server}/roots.pem "
            "--cert /etc/trustzone/{client}/client-fullchain.pem "
            "--key /etc/trustzone/{client}/client.key https://{host}.lab.trustzone.test:8443/")
    for server in ZONES:
        for client in ZONES:
            got = fleet.sh("node1", curl.format(server=server, client=client,
                                                host=BACKEND[server]), check=False).stdout
            # nginx ssl_verify_client: 400 for a client certificate it does not accept
            assert got == ("200" if server == client else "400"), (server, client, got)


def test_a_route_into_a_zone_the_proxy_does_not_bridge_fails_in_one_line(fleet, zones):
    conf = fleet.read("node1", "/etc/nginx/conf.d/trustzone-proxy.conf")
    workers = nginx_workers(fleet)
    routes = ROUTES + [dict(ROUTES[0], name="qa", zone="qa", server_names=["qa.public.test"])]
    proc = proxy(fleet, zones["prod"], "-e", json.dumps({"trustzone_proxy_routes": routes}),
                 check=False)
    assert proc.returncode != 0
    # the task's result: one line that names the host, the route, the zone and the fix
    fatal = re.findall(r"^fatal: \[node1\]: FAILED! => (\{.*\})$", proc.output, re.M)
    assert len(fatal) == 1, proc.output[-3000:]
    assert ("host node1: route qa: zone 'qa' is not one the proxy bridges into (prod, dev) "
            "Fix: add it to trustzone_proxy_zones") in json.loads(fatal[0])["msg"]
    assert "Traceback" not in proc.output
    assert fleet.read("node1", "/etc/nginx/conf.d/trustzone-proxy.conf") == conf
    assert nginx_workers(fleet) == workers


def test_a_root_rotation_in_prod_never_breaks_either_path(fleet, zones):
    """rotate_root.yml (all three phases) in zone prod while users request both names every
    0.2 s: every request succeeds. The backends reload themselves when their certificates or
    CRLs change (trustzone_certs_reload_commands); the proxy's nginx is kept in step by the
    proxy.yml runs rotate_root.yml ends each phase with. Zone dev is not touched."""
    dev_files = ["/etc/trustzone/dev/%s" % f for f in
                 ("client.crt", "client.key", "client-fullchain.pem", "roots.pem", "crl.pem")]
    dev_before = (sha256(fleet, "node1", *dev_files),
                  sha256(fleet, "node3", "/etc/trustzone/dev/server.crt",
                         "/etc/trustzone/dev/server.key"))
    dev_answer, prod_answer = answer(fleet, "dev"), answer(fleet, "prod")
    users = Users(fleet)
    users.start()
    phases = []
    try:
        started = time.monotonic()
        # phase by phase, as an operator may (and as test_rotation.py drives it)
        for stop_after in ("trust", "use", "retire"):
            proc = fleet.playbook("rotate_root.yml", *FORCE, "-e",
                                  "trustzone_rotate_stop_after=%s" % stop_after,
                                  inventory=zones["prod"], check=False)
            OUTPUTS.append(proc.output)
            assert proc.returncode == 0, proc.output[-6000:]
            phases.append(rotation_phase(fleet, "prod"))
        elapsed = time.monotonic() - started
        time.sleep(3)  # the last reloads' new workers answer too
    finally:
        users.stop()
    assert phases == ["trust", "use", "stable"]
    assert rotation_phase(fleet, "dev") == "stable"
    failures = users.failures()
    counts = {z: [result[0] for result in users.results].count(z) for z in ZONES}
    print("rotation %.0f s, requests %s, failures %d" % (elapsed, counts, len(failures)))
    assert failures == [], failures[:10]
    # the loop ran all along: at least two requests a second for each name (about 3.5 here)
    assert min(counts.values()) >= max(100, 2 * elapsed), (counts, elapsed)
    # prod moved to the next root: the backend now sees the proxy's renewed prod identity
    client = "/etc/trustzone/prod/client.crt"
    assert wait_for(lambda: answer(fleet, "prod")["fp"] == cert_fp_sha1(fleet, "node1", client))
    after = answer(fleet, "prod")
    assert after["issuer"] != prod_answer["issuer"] and after["fp"] != prod_answer["fp"]
    # dev: the same files, the same identity presented
    assert (sha256(fleet, "node1", *dev_files),
            sha256(fleet, "node3", "/etc/trustzone/dev/server.crt",
                   "/etc/trustzone/dev/server.key")) == dev_before
    assert answer(fleet, "dev") == dev_answer
    # the rotation left the proxy in step: proxy.yml has nothing left to do
    workers = nginx_workers(fleet)
    stats = recap(proxy(fleet, zones["prod"]).output)
    assert stats["node1"]["changed"] == 0
    assert nginx_workers(fleet) == workers


def test_no_secret_ever_appears_in_output(fleet, zones):
    passphrase = (fleet.inventory.parent / "ca-passphrase").read_text().strip()
    keys = [STATE["public_key"]] + [fleet.read("node1", "/etc/trustzone/%s/client.key" % z)
                                    for z in ZONES]
    assert len(OUTPUTS) >= 8
    for output in OUTPUTS:
        assert passphrase not in output
        assert "PRIVATE KEY" not in output
        flat = output.replace("\\n", "")
        for key in keys:
            body = "".join(key.strip().splitlines()[1:-1])
            assert body[:40] not in flat
