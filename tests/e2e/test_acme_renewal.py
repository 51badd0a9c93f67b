"""ACME renewal against pebble: the window is a fraction of the certificate's lifetime, and a
failed order keeps the current certificate and fails the run with one clear line.

One small fleet: a CA host and node1 (the proxy). pebble issues 6-day certificates, as Let's
Encrypt's short-lived profile does: with the old fixed 30-day window every run would renew
them; with the default third of the lifetime, a run two minutes after issuance asks the CA
nothing. Setting trustzone_acme_renew_before_days (it wins over the fraction) makes the
certificate due, and the tests make the order fail three ways - the challenge fails (the name
resolves to another host), the directory cannot be read, the CA does not offer the profile
asked for - and show each time: the run fails, with one line naming the certificate and what the CA
said; the key and certificate are byte-identical; nginx was not reloaded and still serves the
old certificate.

What pebble offers is read from its directory and recorded in state.json: Debian 12's pebble
2.4.0 offers neither renewalInfo (ARI, RFC 9773) nor profiles, so those paths are unit-tested
(tests/unit/plugins/module_utils/test_acme.py) and not run here.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess

import pytest
import yaml
from cryptography import x509

from conftest import fleet_prefix, recap
from pebble import Pebble

PREFIX = fleet_prefix("tzacr")
ZONE = "lab"
ACME = "/etc/trustzone-acme"
WEB = "web.public.test"
CHALLENGES = "/var/www/trustzone-acme/.well-known/acme-challenge"
SIX_DAYS = 6 * 86400
OUTPUTS = []


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=1, zone=ZONE)


def ip_of(fleet, host):
    return subprocess.run(
        ["podman", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         fleet.container(host)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def pebble(fleet, tmp_path_factory):
    net = json.loads(subprocess.run(["podman", "network", "inspect", "%s-net" % PREFIX],
                                    capture_output=True, text=True, check=True).stdout)
    gateway = net[0]["subnets"][0]["gateway"]
    with Pebble(tmp_path_factory.mktemp("pebble"), gateway, validity_seconds=SIX_DAYS) as p:
        p.add_a(WEB, ip_of(fleet, "node1"))
        yield p


@pytest.fixture(scope="module")
def inventory(fleet, pebble, tmp_path_factory):
    OUTPUTS.append(fleet.playbook("site.yml").output)
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["children"]["trustzone_proxies"] = {"hosts": {"node1": {}}, "vars": {
        "trustzone_acme_directory": pebble.directory,
        "trustzone_acme_directory_cacert": pebble.listener_ca_pem,
        "trustzone_acme_terms_agreed": True,
        "trustzone_proxy_hsts_max_age": 0,
        # the route's backend does not matter here: users' TLS ends at the proxy
        "trustzone_proxy_routes": [{"name": "web", "server_names": [WEB],
                                    "backends": ["node1.lab.trustzone.test:8443"]}],
    }}
    path = tmp_path_factory.mktemp("inventory") / "proxy.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def proxy(fleet, inventory, extra=None, check=True):
    args = ["-e", json.dumps(extra)] if extra else []
    proc = fleet.playbook("proxy.yml", *args, inventory=inventory, check=check)
    OUTPUTS.append(proc.output)
    return proc


def served_serial(fleet, cafile):
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((ip_of(fleet, "node1"), 443), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=WEB) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def nginx_workers(fleet):
    return fleet.sh("node1", "pgrep -P \"$(cat /run/nginx.pid)\" | sort").stdout.split()


def fatal_lines(output):
    return [line for line in output.splitlines() if "FAILED!" in line]


@pytest.fixture(scope="module")
def pebble_root(pebble):
    """What the user trusts: the root that signs pebble's certificates, beside its logs."""
    (pebble.workdir / "issuing-root.pem").write_text(pebble.root_pem())
    return pebble.workdir / "issuing-root.pem"


# --------------------------------------------------------------------------------------------

def test_a_six_day_certificate_is_not_renewed_two_minutes_later(fleet, pebble, inventory):
    proc = proxy(fleet, inventory)
    assert "request web (%s) by http-01: no readable certificate" % WEB in proc.output
    assert pebble.issued() == 1
    # what the CA offered is recorded: Debian 12's pebble 2.4.0 has no renewalInfo, no profiles
    directory = json.loads(pebble._get(pebble.directory))  # pylint: disable=protected-access
    state = json.loads(fleet.read("node1", ACME + "/web/state.json"))
    assert state["ari"] == ("renewalInfo" in directory) and state["profile"] == ""
    assert "renewalInfo" not in directory and "profiles" not in directory.get("meta", {})
    # second run: the window is a third of 6 days - nothing is due, the CA is not asked
    requests = pebble.requests()
    again = proxy(fleet, inventory)
    assert recap(again.output)["node1"]["changed"] == 0
    assert pebble.requests() == requests and "request web" not in again.output


@pytest.fixture
def before(fleet, pebble_root):
    """The certificate's files, nginx's workers and the served certificate before a run."""
    return {"files": fleet.tree("node1", ACME + "/web"), "workers": nginx_workers(fleet),
            "serial": served_serial(fleet, pebble_root)}


def assert_kept(fleet, pebble_root, before, proc):
    assert proc.returncode != 0
    assert fleet.tree("node1", ACME + "/web") == before["files"]  # byte-identical, no leftovers
    assert nginx_workers(fleet) == before["workers"]             # not reloaded
    assert served_serial(fleet, pebble_root) == before["serial"]
    assert fleet.sh("node1", "ls -A %s" % CHALLENGES).stdout.strip() == ""
    [line] = fatal_lines(proc.output)
    assert "\\n" not in line  # one line, also inside the message
    return line


def test_a_failed_challenge_keeps_the_current_certificate(fleet, pebble, inventory,
                                                          pebble_root, before):
    """The name now resolves to the CA host, where nothing answers on port 80."""
    issued, orders = pebble.issued(), pebble.orders()
    pebble.set_a(WEB, ip_of(fleet, "ca"))
    try:
        # 30 days win over the fraction: a 6-day certificate is due at once
        proc = proxy(fleet, inventory, {"trustzone_acme_renew_before_days": 30}, check=False)
    finally:
        pebble.set_a(WEB, ip_of(fleet, "node1"))
    assert "request web (%s) by http-01: expires " % WEB in proc.output
    assert ", within 30 days" in proc.output
    line = assert_kept(fleet, pebble_root, before, proc)
    assert pebble.orders() == orders + 1 and pebble.issued() == issued
    assert "ACME certificate web (%s) not obtained - the http-01 challenge failed: " % WEB in line
    assert "urn:ietf:params:acme:error:" in line  # what the CA said
    assert "the current key and certificate are kept, nothing was reloaded" in line


def test_a_directory_that_cannot_be_read_keeps_the_current_certificate(fleet, pebble, inventory,
                                                                       pebble_root, before):
    """The directory URL answers 404. (An address where nothing listens gives the same line,
    after community.crypto's 20 retries 10 seconds apart - too slow for the suite.)"""
    wrong = pebble.directory.replace("/dir", "/no-such-directory")
    orders = pebble.orders()
    proc = proxy(fleet, inventory, {"trustzone_acme_directory": wrong}, check=False)
    assert "issued by another ACME directory (%s)" % pebble.directory in proc.output
    line = assert_kept(fleet, pebble_root, before, proc)
    assert pebble.orders() == orders
    assert ("ACME certificate web not obtained - the directory %s could not be read: " % wrong
            in line)
    assert "nothing was ordered, the current keys and certificates are kept" in line


def test_a_profile_the_ca_does_not_offer_is_refused_before_any_order(fleet, pebble, inventory,
                                                                     pebble_root, before):
    orders = pebble.orders()
    proc = proxy(fleet, inventory, {"trustzone_acme_profile": "shortlived"}, check=False)
    assert "issued without a profile, not for profile shortlived" in proc.output
    line = assert_kept(fleet, pebble_root, before, proc)
    assert pebble.orders() == orders
    assert ("ACME certificate web: the directory %s does not offer the profile shortlived "
            "(it offers no profiles)" % pebble.directory) in line


def test_no_secret_in_any_output(fleet):
    key = "".join(fleet.read("node1", ACME + "/web/privkey.pem").strip().splitlines()[1:-1])
    account = "".join(fleet.read("node1", ACME + "/account/account.key").strip()
                      .splitlines()[1:-1])
    assert len(OUTPUTS) >= 5
    for output in OUTPUTS:
        assert "PRIVATE KEY" not in output
        assert key[:40] not in output and account[:40] not in output
