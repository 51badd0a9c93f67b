"""Root rotation over a real fleet, with mTLS between every pair of nodes after every phase.

The tests run in file order against one fleet (a CA host and three nodes) and build on each
other: the zone is built, its root rotated phase by phase (the use phase first on two nodes
only, so that nodes on the new root talk to a node still on the old one), retiring is refused
while a leaf still chains to the old root, the rotation finishes, and a second rotation is
killed (SIGKILL) in the middle of its use phase and finished by running the playbook again.
``probe_all_pairs`` runs six real handshakes (every ordered pair of nodes, both sides
verifying) and must find no failure at any point.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from conftest import assert_nothing_changed, fleet_prefix, recap, run_and_kill, start_s_server

PREFIX = fleet_prefix("tzrotn")
ZONE = "rot2"
DIR = "/etc/trustzone/%s" % ZONE
CA_DIR = "/var/lib/trustzone/%s" % ZONE
ANCHORS = "/usr/local/share/ca-certificates"
NODES = ("node1", "node2", "node3")
FORCE = ("-e", "trustzone_ca_rotate_force=true")

ROOTS = {}  # name -> PEM of each root this module has seen: r1, r2, r3


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=3, zone=ZONE)


# --------------------------------------------------------------------------- helpers

def rotate(fleet, *args, check=True):
    return fleet.playbook("rotate_root.yml", *args, check=check)


def fp(pem):
    """SHA-256 fingerprint (lower-case hex) of a PEM certificate, as the collection names it."""
    body = "".join(pem.strip().splitlines()[1:-1])
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def ca_state(fleet):
    """The CA directory in one exec: ``{'root': pem, 'next': pem or None, 'phase', 'state',
    'files': [names, retired/ included]}``."""
    out = fleet.sh("ca", (
        "cd {d}/$(cat {d}/current) && echo '#root' && cat root.crt && echo '#next' && (cat next.crt 2>/dev/null;"
        " true) && echo '#state' && (cat rotation.json 2>/dev/null; echo) && echo '#files' && "
        "ls && (ls retired 2>/dev/null | sed 's|^|retired/|'; true)").format(d=CA_DIR)).stdout
    parts = dict(re.findall(r"^#(\w+)\n(.*?)(?=^#\w+\n|\Z)", out, re.S | re.M))
    state = json.loads(parts["state"]) if parts["state"].strip() else None
    return {"root": parts["root"], "next": parts["next"] if parts["next"].strip() else None,
            "state": state, "phase": state["phase"] if state else "stable",
            "files": parts["files"].split()}


def anchor_name(pem):
    return "trustzone-%s-%s.crt" % (ZONE, fp(pem)[:16])


PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def nodes(fleet, names=()):
    """Every node in one exec each: ``{host: {'anchors': [file names], 'bundle': [root
    fingerprints in roots.pem], 'leaves': {profile: sha256}, 'chains': {profile: [root
    names]}}}``. ``chains`` lists which of the roots ``names`` (keys of ROOTS) each leaf
    verifies against on its own: no OS store, no other root (``-no-CApath -no-CAstore``)."""
    script = "".join("cat > /tmp/tzroot-%s.pem <<'EOF'\n%s\nEOF\n" % (n, ROOTS[n].strip())
                     for n in names)
    script += (
        "echo '#anchors'; cd {a} && ls trustzone-{z}-*.crt 2>/dev/null; "
        "echo '#bundle'; cat {d}/roots.pem; "
        "echo '#leaves'; for p in server client; do echo $p $(openssl x509 -in {d}/$p.crt "
        "-noout -fingerprint -sha256 | cut -d= -f2); done; "
        "echo '#chains'; for p in server client; do for r in {names}; do "
        "openssl verify -no-CApath -no-CAstore -CAfile /tmp/tzroot-$r.pem {d}/$p.crt "
        ">/dev/null 2>&1 && echo $p $r; done; done; true").format(
            a=ANCHORS, z=ZONE, d=DIR, names=" ".join(names))
    result = {}
    for host in NODES:
        out = fleet.sh(host, script).stdout
        parts = dict(re.findall(r"^#(\w+)\n(.*?)(?=^#\w+\n|\Z)", out, re.S | re.M))
        leaves = dict(line.split() for line in parts["leaves"].splitlines() if line.strip())
        chains = {"server": [], "client": []}
        for line in parts["chains"].splitlines():
            if line.strip():
                profile, root = line.split()
                chains[profile].append(root)
        result[host] = {"anchors": sorted(parts["anchors"].split()),
                        "bundle": sorted(fp(b) for b in PEM_RE.findall(parts["bundle"])),
                        "leaves": leaves, "chains": chains}
    return result


def leaves(view):
    return {(h, p): v for h, n in view.items() for p, v in n["leaves"].items()}


def chains(view):
    return {(h, p): v for h, n in view.items() for p, v in n["chains"].items()}


def start_servers(fleet, port=8443):
    """(Re)start s_server on every node: it reads roots.pem only when it starts."""
    for host in NODES:
        start_s_server(fleet, host, DIR, port)


def probe_all_pairs(fleet, port=8443):
    """mTLS between every ordered pair of nodes (6 handshakes); the failures, if any.

    The server demands a client certificate that chains to its roots.pem; the client checks
    the server's name and chain against the OS trust store. One exec per client runs its
    two handshakes.
    """
    start_servers(fleet, port)
    failures = []
    for client in NODES:
        servers = [s for s in NODES if s != client]
        script = "".join((
            "echo '#{srv}'; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 20 openssl s_client "
            "-connect {fqdn}:{port} -cert {d}/client.crt -key {d}/client.key "
            "-CAfile /etc/ssl/certs/ca-certificates.crt -verify_return_error "
            "-verify_hostname {fqdn} -quiet 2>&1; ").format(
                srv=srv, fqdn=fleet.fqdn(srv), port=port, d=DIR) for srv in servers)
        out = fleet.sh(client, script + "true").stdout
        parts = dict(re.findall(r"^#(node\d)\n(.*?)(?=^#node\d\n|\Z)", out, re.S | re.M))
        for server in servers:
            if "HTTP/1.0 200 ok" not in parts.get(server, ""):
                failures.append("%s -> %s: %s" % (client, server,
                                                  parts.get(server, out).strip()[-400:]))
    return failures


def assert_rotated_to(fleet, name, retired):
    """The zone is stable on root ``name``: the CA's files, every node's trust, every leaf.
    Returns the nodes' view."""
    pem = ROOTS[name]
    ca = ca_state(fleet)
    assert ca["phase"] == "stable" and ca["next"] is None
    assert fp(ca["root"]) == fp(pem)
    assert "next.key" not in ca["files"]
    for old in retired:
        for ext in (".crt", ".key"):
            assert "retired/%s%s" % (fp(ROOTS[old])[:16], ext) in ca["files"]
    view = nodes(fleet, [name] + list(retired))
    for host in NODES:
        assert view[host]["anchors"] == [anchor_name(pem)]
        assert view[host]["bundle"] == [fp(pem)]
    assert set(map(tuple, chains(view).values())) == {(name,)}
    return view


INSPECT_PLAY = "PLAY [Rotate, phase retire: look at every node the use phase did not]"


def inspected_again(output):
    """The hosts the retire phase's read-only inspect play ran on (None: it matched none)."""
    part = output.split(INSPECT_PLAY, 1)[1].split("PLAY [", 1)[0]
    if "skipping: no hosts matched" in part:
        return None
    return sorted(set(re.findall(r"^(?:ok|changed|skipping|fatal): \[(node\d)\]", part, re.M)))


# --------------------------------------------------------------------------- the tests

def test_site_builds_the_zone_and_every_pair_talks(fleet):
    proc = fleet.playbook("site.yml")
    assert all(s["failed"] == 0 for s in recap(proc.output).values())
    ca = ca_state(fleet)
    assert ca["phase"] == "stable" and ca["next"] is None
    ROOTS["r1"] = ca["root"]
    view = nodes(fleet, ["r1"])
    for host in NODES:
        assert view[host]["anchors"] == [anchor_name(ROOTS["r1"])]
    assert set(map(tuple, chains(view).values())) == {("r1",)}
    assert probe_all_pairs(fleet) == []


def test_trust_phase_adds_the_next_root_beside_the_current_one(fleet):
    before = leaves(nodes(fleet))
    rotate(fleet, *FORCE, "-e", "trustzone_rotate_stop_after=trust")
    ca = ca_state(fleet)
    assert ca["phase"] == "trust" and ca["next"] is not None
    ROOTS["r2"] = ca["next"]
    assert (ca["state"]["old"], ca["state"]["new"]) == (fp(ROOTS["r1"]), fp(ROOTS["r2"]))
    assert fp(ca["root"]) == fp(ROOTS["r1"])
    view = nodes(fleet, ["r1", "r2"])
    for host in NODES:
        assert view[host]["anchors"] == sorted([anchor_name(ROOTS["r1"]),
                                                anchor_name(ROOTS["r2"])])
        assert view[host]["bundle"] == sorted([fp(ROOTS["r1"]), fp(ROOTS["r2"])])
    # nothing is signed with the next root yet
    assert leaves(view) == before
    assert set(map(tuple, chains(view).values())) == {("r1",)}
    assert probe_all_pairs(fleet) == []


def test_use_phase_on_some_nodes_leaves_a_mixed_zone_that_still_talks(fleet):
    before = leaves(nodes(fleet))
    rotate(fleet, "--limit", "ca,node1,node2", "-e", "trustzone_rotate_stop_after=use", *FORCE)
    ca = ca_state(fleet)
    assert ca["phase"] == "use"
    assert fp(ca["next"]) == fp(ROOTS["r2"])  # forcing did not start another rotation
    view = nodes(fleet, ["r1", "r2"])
    after = leaves(view)
    assert {k for k in before if before[k] != after[k]} == {
        (h, p) for h in ("node1", "node2") for p in ("server", "client")}
    assert chains(view) == {
        ("node1", "server"): ["r2"], ("node1", "client"): ["r2"],
        ("node2", "server"): ["r2"], ("node2", "client"): ["r2"],
        ("node3", "server"): ["r1"], ("node3", "client"): ["r1"],
    }
    for host in NODES:  # both roots still trusted everywhere
        assert len(view[host]["anchors"]) == 2 and len(view[host]["bundle"]) == 2
    # node3 (old root) <-> node1, node2 (new root), both directions, both ends verifying
    assert probe_all_pairs(fleet) == []


def assert_nothing_moved(fleet):
    ca = ca_state(fleet)
    assert ca["phase"] == "use"
    assert fp(ca["root"]) == fp(ROOTS["r1"]) and fp(ca["next"]) == fp(ROOTS["r2"])
    view = nodes(fleet, ["r1", "r2"])
    for host in NODES:
        assert len(view[host]["anchors"]) == 2
    assert chains(view)[("node3", "server")] == ["r1"]


def test_retire_refuses_while_a_leaf_still_chains_to_the_old_root_and_names_it(fleet):
    old16 = fp(ROOTS["r1"])[:16]
    # every phase but use: node3 is inspected and still holds old-root leaves
    proc = rotate(fleet, "--skip-tags", "rotate_use", check=False)
    assert proc.returncode != 0
    assert "not retiring the old root, these still depend on it:" in proc.output, \
        proc.output[-6000:]
    assert "node3/client: chains to %s; node3/server: chains to %s." % (old16, old16) \
        in proc.output
    assert "node1/" not in proc.output and "node2/" not in proc.output
    # no use phase in this run: every node is looked at, read-only
    assert inspected_again(proc.output) == list(NODES)
    # a node left out of the run blocks retiring too: nobody looked at it
    proc = rotate(fleet, "--skip-tags", "rotate_use", "--limit", "ca,node1,node2", check=False)
    assert proc.returncode != 0
    assert "these still depend on it: node3: not inspected in this run" in proc.output, \
        proc.output[-6000:]
    assert_nothing_moved(fleet)
    assert probe_all_pairs(fleet) == []


def test_retire_after_this_runs_use_phase_still_refuses_for_a_node_it_did_not_reach(fleet):
    """Issue 17: the retire phase no longer looks at every node a second time; a node this
    run's use phase finished on is known from that phase's results. The guarantee is the
    same: a node the use phase did not reach (left out by --limit) blocks retiring."""
    proc = rotate(fleet, "--limit", "ca,node1,node2", check=False)
    assert proc.returncode != 0
    assert "these still depend on it: node3: not inspected in this run" in proc.output, \
        proc.output[-6000:]
    # node1 and node2 went through the use phase of this run: not inspected again
    assert inspected_again(proc.output) is None, proc.output[-6000:]
    assert_nothing_moved(fleet)


def test_retire_selected_by_its_tag_refuses_and_names_the_offenders(fleet):
    """Found by this test: argument validation runs under any --tags and evaluated the
    roles' defaults that read hostvars[ca].trustzone_ca_root, so '--tags rotate_retire'
    failed in the trust phase's node play before reaching the retire phase (fixed in
    21f2b21)."""
    proc = rotate(fleet, "--tags", "rotate_retire", check=False)
    assert proc.returncode != 0
    assert "not retiring the old root, these still depend on it:" in proc.output, \
        proc.output[-3000:]
    assert "node3/server: chains to %s" % fp(ROOTS["r1"])[:16] in proc.output
    assert "node3/client: chains to %s" % fp(ROOTS["r1"])[:16] in proc.output
    assert_nothing_moved(fleet)


def test_full_rotation_finishes_the_rotation_under_way(fleet):
    before = leaves(nodes(fleet))
    # the force flag is ignored: a rotation under way is continued, not restarted
    proc = rotate(fleet, *FORCE)
    # every node went through this run's use phase: the retire phase reads its results
    assert inspected_again(proc.output) is None
    view = assert_rotated_to(fleet, "r2", retired=["r1"])
    after = leaves(view)
    assert {k for k in before if before[k] != after[k]} == {("node3", "server"),
                                                            ("node3", "client")}
    assert probe_all_pairs(fleet) == []


def test_a_finished_rotation_run_again_changes_nothing(fleet):
    assert_nothing_changed(rotate(fleet))
    assert_nothing_changed(fleet.playbook("site.yml"))
    assert ca_state(fleet)["phase"] == "stable"


def run_and_kill_in_use_phase(fleet, *args, deadline=300):
    """Run rotate_root.yml and SIGKILL its whole process group as soon as the use phase
    reports its first installed certificate. Returns the output read so far."""
    seen = {"in_use": False, "installing": False}

    def kill_here(line):
        if "PLAY [Rotate, phase use: every leaf moves to the next root]" in line:
            seen["in_use"] = True
        elif (seen["in_use"] and line.startswith(("TASK [", "RUNNING HANDLER ["))
              and "Install the new certificates" in line):  # a handler since issue 9
            seen["installing"] = True
        elif seen["installing"] and re.match(r"^(changed|ok): \[node\d\]", line):
            return True
        return False

    output, killed = run_and_kill(fleet, "rotate_root.yml", args, kill_here, deadline)
    assert killed, "the use phase never installed a certificate:\n" + output[-6000:]
    return output


def test_killed_mid_use_phase_a_rerun_converges(fleet):
    before = leaves(nodes(fleet))
    output = run_and_kill_in_use_phase(fleet, *FORCE)
    assert "PLAY RECAP" not in output and "phase retire" not in output
    # killed in the middle: the CA is in phase use, both roots trusted, the zone still talks
    ca = ca_state(fleet)
    assert ca["phase"] == "use"
    ROOTS["r3"] = ca["next"]
    assert fp(ca["root"]) == fp(ROOTS["r2"])
    view = nodes(fleet, ["r2", "r3"])
    for host in NODES:
        assert view[host]["anchors"] == sorted([anchor_name(ROOTS["r2"]),
                                                anchor_name(ROOTS["r3"])])
    assert all(roots in (["r2"], ["r3"]) for roots in chains(view).values()), chains(view)
    assert probe_all_pairs(fleet) == []

    # the same command again finishes the rotation
    rotate(fleet, *FORCE)
    view = assert_rotated_to(fleet, "r3", retired=["r1", "r2"])
    after = leaves(view)
    assert all(after[k] != before[k] for k in before)  # every leaf re-issued by r3
    assert probe_all_pairs(fleet) == []
    # and a third run has nothing left to do (without the force flag: on a stable zone it
    # would rightly start the next rotation)
    assert_nothing_changed(rotate(fleet))


def test_use_phase_selected_by_its_tag_runs(fleet):
    """The README's runbook command (same bug as '--tags rotate_retire', fixed in 21f2b21)."""
    proc = rotate(fleet, "--tags", "rotate_use", "--limit", "ca,node1", check=False)
    assert proc.returncode == 0, proc.output[-3000:]
    stats = recap(proc.output)
    assert {h: s["changed"] for h, s in stats.items()} == {"ca": 0, "node1": 0}


def test_check_mode_plans_a_whole_rotation_and_writes_nothing(fleet):
    """A forced rotation in check mode: one plan for the three phases, every node inspected
    (by the use phase's read-only node call), nothing written on the CA host or any node."""
    ca_before, view_before = ca_state(fleet), nodes(fleet, ["r3"])
    proc = rotate(fleet, *FORCE, "--check", "--diff")
    assert "Rotation phase: trust (this run: stable -> trust)" in proc.output, \
        proc.output[-6000:]
    assert "what this run would do on 3 node(s) (3 inspected)" in proc.output
    assert ca_state(fleet) == ca_before
    assert nodes(fleet, ["r3"]) == view_before
