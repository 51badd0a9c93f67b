"""Leaf renewal over a real fleet: each trigger renews exactly the affected certificates.

The tests run in file order against one fleet (a CA host and three nodes) and build on each
other, as an operator's runs would: short lifetimes, a changed SAN list on one node, a changed
key type, a key planted on one node, a rollback, and renew.yml on its own. After every renewal
a second run must change nothing. Certificates are compared by fingerprint before and after,
and the reasons come from ``--diff`` (``request <profile>: <reason>, ...`` per node).
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import assert_nothing_changed, fleet_prefix, recap, start_s_server

PREFIX = fleet_prefix("tzrenw")
ZONE = "ren"
DIR = "/etc/trustzone/%s" % ZONE
ANCHORS = "/usr/local/share/ca-certificates"
NODES = ("node1", "node2", "node3")
PROFILES = ("server", "client")
ALIAS = "alias2.%s.trustzone.test" % ZONE

# Lifetimes of minutes. SHORT first (10m); then WIDER's renew window (15m) is larger than
# anything SHORT issued, so every server certificate is 'expiring'. What WIDER issues lives
# 2h, so the rest of the module (which runs with WIDER) stays clear of its window for 1h45m,
# however slow a loaded machine makes the playbook runs.
SHORT = {"lifetime": "10m", "renew_before": "5m"}
WIDER = {"lifetime": "2h", "renew_before": "15m"}

# What the later tests run with; the tests change it as the operator would.
CONFIG = {"server": dict(WIDER), "inventory": None}


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=3, zone=ZONE)


def profiles_var(server):
    return json.dumps({"trustzone_certs_profiles": [
        dict({"name": "server", "extended_key_usage": ["server_auth"]}, **server),
        {"name": "client", "extended_key_usage": ["client_auth"]},
    ]})


def run(fleet, *args, playbook="site.yml", server=None, check=True):
    return fleet.playbook(playbook, "-e", profiles_var(server or CONFIG["server"]), *args,
                          inventory=CONFIG["inventory"], check=check)


def changed(proc):
    return {host: s["changed"] for host, s in recap(proc.output).items()}


def requests(output):
    """``{host: {profile: [reasons]}}`` from the node module's ``--diff`` output."""
    found, pending = {}, {}
    for line in output.splitlines():
        match = re.match(r"^\+request (\S+): (.*)$", line)
        if match:
            pending[match.group(1)] = match.group(2).split(", ")
            continue
        match = re.match(r"^(?:changed|ok): \[(\S+?)\]", line)
        if match:
            if pending:
                found.setdefault(match.group(1), {}).update(pending)
            pending = {}
    return found


def changed_hosts(output):
    """``{host: [task, ...]}`` of every changed result. A delegated result (``node1 -> ca``)
    counts for the host it ran on: the CA's signing task is ``run_once`` and would otherwise
    show up in the recap of whichever node comes first."""
    found, task = {}, None
    for line in output.splitlines():
        match = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]", line)
        if match:
            task = match.group(1)
            continue
        match = re.match(r"^changed: \[(\S+)(?: -> (\w+)\(.*\))?\]", line)
        if match:
            found.setdefault(match.group(2) or match.group(1), []).append(task)
    return found


def inspect(fleet):
    """Every identity of every node, one exec per node: ``{(host, profile): {'cert': sha256,
    'key': sha256 of the key file, 'left': seconds of validity left, 'match': key belongs to
    the certificate, 'text': openssl's text of the certificate}}``; ``-`` for a missing
    certificate."""
    out = {}
    script = (
        "now=$(date +%s); for p in server client; do c={d}/$p.crt; k={d}/$p.key; "
        "echo \"#$p $(openssl x509 -in $c -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2"
        " | grep . || echo -) $(sha256sum < $k | cut -c1-64) "
        "$(( $(date -d \"$(openssl x509 -in $c -noout -enddate 2>/dev/null | cut -d= -f2)\" +%s)"
        " - now )) "
        "$([ \"$(openssl x509 -in $c -pubkey -noout 2>/dev/null)\" = "
        "\"$(openssl pkey -in $k -pubout)\" ] && echo yes || echo no)\"; "
        "openssl x509 -in $c -noout -text 2>/dev/null; done; true").format(d=DIR)
    for host in NODES:
        text = fleet.sh(host, script).stdout
        for head, body in re.findall(r"^#(\w+ \S+ \S+ \S+ \w+)\n(.*?)(?=^#\w+ |\Z)", text,
                                     re.S | re.M):
            profile, cert_fp, key_fp, left, match = head.split()
            out[(host, profile)] = {"cert": cert_fp, "key": key_fp, "left": int(left),
                                    "match": match == "yes", "text": body}
    assert len(out) == 6, out
    return out


def ids(view):
    """What identifies each generation: certificate and key fingerprints."""
    return {k: (v["cert"], v["key"]) for k, v in view.items()}


def renewed(before, after):
    return {k for k in before if before[k]["cert"] != after[k]["cert"]}


def start_server(fleet, host, port=8443):
    """(Re)start s_server: it reads roots.pem only when it starts."""
    start_s_server(fleet, host, DIR, port)


def handshakes(fleet, client, servers, hostname=None, port=8443):
    """``{server: output}`` of one mTLS request from ``client`` to each server (one exec)."""
    script = "".join((
        "echo '#{srv}'; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 20 openssl s_client "
        "-connect {fqdn}:{port} -cert {d}/client.crt -key {d}/client.key "
        "-CAfile /etc/ssl/certs/ca-certificates.crt -verify_return_error "
        "-verify_hostname {name} -quiet 2>&1; ").format(
            srv=srv, fqdn=fleet.fqdn(srv), port=port, d=DIR,
            name=hostname or fleet.fqdn(srv)) for srv in servers)
    out = fleet.sh(client, script + "true").stdout
    return dict(re.findall(r"^#(node\d)\n(.*?)(?=^#node\d\n|\Z)", out, re.S | re.M))


def probe_all_pairs(fleet):
    """mTLS between every ordered pair of nodes (6 handshakes); the failures, if any. The
    server demands a client certificate that chains to its roots.pem, the client checks the
    server's name and chain against the OS trust store."""
    for host in NODES:
        start_server(fleet, host)
    failures = []
    for client in NODES:
        servers = [s for s in NODES if s != client]
        for server, out in handshakes(fleet, client, servers).items():
            if "HTTP/1.0 200 ok" not in out:
                failures.append("%s -> %s: %s" % (client, server, out.strip()[-400:]))
    return failures


# --------------------------------------------------------------------------- the tests

def test_short_lifetime_is_renewed_inside_the_renew_window(fleet):
    proc = run(fleet, server=SHORT)
    assert all(s["failed"] == 0 and s["unreachable"] == 0 for s in recap(proc.output).values())
    first = inspect(fleet)
    for host in NODES:
        assert 500 < first[(host, "server")]["left"] <= 600
        assert first[(host, "client")]["left"] > 300 * 86400
    assert_nothing_changed(run(fleet, server=SHORT))  # 10m left > 5m: nothing is due

    proc = run(fleet, "--diff", server=WIDER)  # < 10m left, renewed 15m before: all expiring
    assert requests(proc.output) == {h: {"server": ["expiring"]} for h in NODES}, proc.output
    after = inspect(fleet)
    assert renewed(first, after) == {(h, "server") for h in NODES}
    for host in NODES:
        assert after[(host, "server")]["key"] != first[(host, "server")]["key"]  # a new key
        assert 7000 < after[(host, "server")]["left"] <= 7200
        assert after[(host, "server")]["match"]
    assert_nothing_changed(run(fleet, server=WIDER))
    assert ids(inspect(fleet)) == ids(after)
    CONFIG["server"] = dict(WIDER)


def test_changed_san_list_on_one_node_renews_only_that_node(fleet, tmp_path_factory):
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["children"]["trustzone_nodes"]["hosts"]["node2"][
        "trustzone_certs_extra_names"] = [ALIAS]
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    CONFIG["inventory"] = path

    before = inspect(fleet)
    proc = run(fleet, "--diff")
    assert requests(proc.output) == {"node2": {"server": ["names"], "client": ["names"]}}, \
        proc.output
    assert set(changed_hosts(proc.output)) == {"node2", "ca"}  # ca: it signed
    after = inspect(fleet)
    assert renewed(before, after) == {("node2", "server"), ("node2", "client")}
    for profile in PROFILES:
        text = after[("node2", profile)]["text"]
        assert "DNS:%s" % ALIAS in text and "DNS:%s" % fleet.fqdn("node2") in text
    assert "DNS:%s" % ALIAS not in after[("node1", "server")]["text"]
    # a client that asks for the new name accepts node2's server certificate
    start_server(fleet, "node2")
    out = handshakes(fleet, "node1", ["node2"], hostname=ALIAS)["node2"]
    assert "HTTP/1.0 200 ok" in out, out
    assert_nothing_changed(run(fleet))
    assert ids(inspect(fleet)) == ids(after)


def test_changed_key_type_renews_only_the_server_certificates(fleet):
    CONFIG["server"] = dict(WIDER, key_type="rsa")
    before = inspect(fleet)
    proc = run(fleet, "--diff")
    # the profile's key usage follows its key type (RSA servers add keyEncipherment)
    assert requests(proc.output) == {h: {"server": ["key_type", "key_usage"]} for h in NODES}, \
        proc.output
    after = inspect(fleet)
    assert renewed(before, after) == {(h, "server") for h in NODES}
    for host in NODES:
        server = after[(host, "server")]
        assert "Public Key Algorithm: rsaEncryption" in server["text"]
        assert "Public-Key: (3072 bit)" in server["text"]
        assert "Key Encipherment" in server["text"]
        assert server["match"]
        assert "id-ecPublicKey" in after[(host, "client")]["text"]
    assert probe_all_pairs(fleet) == []
    assert_nothing_changed(run(fleet))
    assert ids(inspect(fleet)) == ids(after)


def test_key_planted_on_one_node_renews_only_that_certificate(fleet):
    # a valid key of the right type, but not the one the certificate holds
    fleet.sh("node3", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 "
                      "-out /tmp/planted.key 2>/dev/null && cat /tmp/planted.key > %s/server.key"
             % DIR)
    before = inspect(fleet)
    assert not before[("node3", "server")]["match"]
    proc = run(fleet, "--diff")
    assert requests(proc.output) == {"node3": {"server": ["key_mismatch"]}}, proc.output
    assert set(changed_hosts(proc.output)) == {"node3", "ca"}
    after = inspect(fleet)
    assert renewed(before, after) == {("node3", "server")}
    assert after[("node3", "server")]["match"]
    assert_nothing_changed(run(fleet))
    assert ids(inspect(fleet)) == ids(after)


def test_rollback_restores_the_previous_generation_and_rolls_forward_again(fleet):
    current = inspect(fleet)
    prev_fp = fleet.sh("node1", "openssl x509 -in %s/server.crt.prev -noout -fingerprint "
                                "-sha256 | cut -d= -f2" % DIR).stdout.strip()
    assert prev_fp and prev_fp != current[("node1", "server")]["cert"]

    rollback = ("--limit", "node1", "-e", '{"trustzone_certs_rollback_profiles": ["server"]}')
    proc = run(fleet, *rollback, playbook="rollback.yml")
    assert set(recap(proc.output)) == {"node1"} and changed(proc)["node1"] > 0
    back = inspect(fleet)
    assert back[("node1", "server")]["cert"] == prev_fp
    assert back[("node1", "server")]["match"]  # the EC key came back with it
    assert "id-ecPublicKey" in back[("node1", "server")]["text"]
    assert renewed(current, back) == {("node1", "server")}
    assert ids(back)[("node1", "client")] == ids(current)[("node1", "client")]
    # the rolled-back certificate still works in the zone
    start_server(fleet, "node1")
    out = handshakes(fleet, "node2", ["node1"])["node1"]
    assert "HTTP/1.0 200 ok" in out, out

    run(fleet, *rollback, playbook="rollback.yml")  # again: forward
    assert ids(inspect(fleet)) == ids(current)
    assert_nothing_changed(run(fleet))


def anchor_state(fleet):
    return {host: fleet.sh(host, "stat -c '%n %i %Y %s' {a}/trustzone-* "
                                 "/etc/ssl/certs/ca-certificates.crt".format(a=ANCHORS)).stdout
            for host in NODES}


def test_renew_playbook_renews_and_leaves_trust_stores_alone(fleet):
    stray = "%s/trustzone-%s-0000000000000000.crt" % (ANCHORS, ZONE)
    fleet.sh("node2", "rm %s/client.crt" % DIR)
    # an anchor site.yml would remove: renew.yml must not touch the trust store at all
    fleet.sh("node1", "cp %s/trustzone-%s-*.crt %s" % (ANCHORS, ZONE, stray))
    anchors = anchor_state(fleet)
    before = inspect(fleet)
    assert before[("node2", "client")]["cert"] == "-"

    proc = run(fleet, "--diff", playbook="renew.yml")
    assert requests(proc.output) == {"node2": {"client": ["missing_certificate"]}}, proc.output
    assert set(changed_hosts(proc.output)) == {"node2", "ca"}
    assert anchor_state(fleet) == anchors
    after = inspect(fleet)
    assert renewed(before, after) == {("node2", "client")}
    assert after[("node2", "client")]["match"]
    assert fleet.sh("node2", "openssl verify %s/client.crt" % DIR).stdout.strip().endswith(": OK")

    assert_nothing_changed(run(fleet, playbook="renew.yml"))
    assert fleet.exists("node1", stray)
    # site.yml does manage the trust store: it removes the stray anchor, and renews nothing
    proc = run(fleet, "--diff")
    assert set(changed_hosts(proc.output)) == {"node1"}, proc.output[-6000:]
    assert requests(proc.output) == {}
    assert not fleet.exists("node1", stray)
    assert ids(inspect(fleet)) == ids(after)
    assert probe_all_pairs(fleet) == []
