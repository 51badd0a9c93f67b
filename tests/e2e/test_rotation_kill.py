"""rotate_root.yml killed (SIGKILL, the whole process group) at several points, then run again.

One fleet (a CA host and three nodes) of its own. For each kill point a rotation is started,
killed there, and the zone is checked while it is half-way (the CA state is whole, every
ordered pair of nodes still completes an mTLS handshake), then the same command is run again
and must finish the rotation: the CA stable on the new root, no leftover of an interrupted
write in the CA directory, every node trusting the new root only, and all six handshakes
working. The kill points: when the CA task of the trust, use and retire phases starts (and
a moment later, while the CA host may be writing its new state), and in the middle of the
node part of the trust and use phases.

Killing the controller does not stop a module already running on the CA host (SSH, no
terminal): it runs to its end and may still switch the CA state after the kill - under the
CA's lock, as docs/ca-state.md says. So what the killed run left is read once nothing of it
runs on the CA host any more; the state seen right after the kill is only checked for being
whole. One kill point makes that late switch certain: it holds the CA's lock from the start
of the retire play, so the killed run's retire is still waiting when the controller dies and
switches afterwards.
"""

from __future__ import annotations

import re
import time

import pytest

from conftest import fleet_prefix, recap, run_and_kill
from test_rotation import anchor_name, ca_state, fp, probe_all_pairs

PREFIX = fleet_prefix("tzrkill")
ZONE = "rot2"  # test_rotation's helpers read this zone's paths
CA_DIR = "/var/lib/trustzone/%s" % ZONE
ANCHORS = "/usr/local/share/ca-certificates"
NODES = ("node1", "node2", "node3")
FORCE = ("-e", "trustzone_ca_rotate_force=true")
CA_TASK = "Ensure the zone's root CA exists and is valid"
RETIRE_CA = "Rotate, phase retire: the CA retires the old root"
HOLD = 5  # seconds the CA's lock is held from the start of the play, for the kill point below

# (name, play that must have started, line that triggers the kill, seconds to wait after it)
KILL_POINTS = [
    ("CA task of the trust phase", "Rotate, phase trust: the CA makes the next root",
     r"^TASK \[.*%s\]" % re.escape(CA_TASK), 0.0),
    ("CA task of the trust phase, a moment later",
     "Rotate, phase trust: the CA makes the next root",
     r"^TASK \[.*%s\]" % re.escape(CA_TASK), 0.7),
    ("node part of the trust phase",
     "Rotate, phase trust: every node trusts the next root beside the current one",
     r"^(changed|ok): \[node\d\]", 0.0),
    ("CA task of the use phase", "Rotate, phase use: the next root signs",
     r"^TASK \[.*%s\]" % re.escape(CA_TASK), 0.0),
    ("CA task of the use phase, a moment later", "Rotate, phase use: the next root signs",
     r"^TASK \[.*%s\]" % re.escape(CA_TASK), 0.7),
    ("node part of the use phase", "Rotate, phase use: every leaf moves to the next root",
     r"^(changed|ok): \[node\d\]", 0.0),
    ("CA task of the retire phase", "Rotate, phase retire: the CA retires the old root",
     r"^TASK \[.*%s\]" % re.escape(CA_TASK), 0.0),
    ("CA task of the retire phase, a moment later",
     "Rotate, phase retire: the CA retires the old root",
     r"^TASK \[.*%s\]" % re.escape(CA_TASK), 0.7),
]
# The retire's module outlives the controller: it waits for the CA's lock (held by the test
# from the start of the play for HOLD seconds) when the controller is killed.
OUTLIVED = ("CA task of the retire phase, its module outliving the kill", RETIRE_CA,
            r"^TASK \[.*%s\]" % re.escape(CA_TASK), 0.7)
KILL_POINTS.append(OUTLIVED)


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=3, zone=ZONE)


def hold_ca_lock(fleet, seconds):
    """Hold the CA's lock (the one every CA writer takes, ledger.lock) for ``seconds`` in the
    background on the CA host; returns once it is held."""
    fleet.sh("ca", "cd %s && rm -f /tmp/tz-held && (nohup flock ledger.lock sh -c "
                   "'touch /tmp/tz-held; sleep %d' >/dev/null 2>&1 &) && "
                   "for i in $(seq 100); do test -e /tmp/tz-held && exit 0; sleep 0.1; done; "
                   "exit 1" % (CA_DIR, seconds))


def wait_for_ca_modules(fleet, timeout=180):
    """Wait until no module runs on the CA host any more (a killed run's module runs on)."""
    fleet.sh("ca", "for i in $(seq %d); do pgrep python >/dev/null || exit 0; sleep 0.1; "
                   "done; exit 1" % (timeout * 10), timeout=timeout + 30)


def run_and_kill_at(fleet, play, trigger, delay, *args, deadline=600, hold=0):
    """Run rotate_root.yml and SIGKILL its process group ``delay`` seconds after a line
    matching ``trigger`` appears once ``play`` has started; with ``hold``, the CA's lock is
    held for that many seconds from the start of ``play``. Returns the output so far."""
    seen = {"in_play": False}

    def kill_here(line):
        if line.startswith("PLAY ["):
            seen["in_play"] = ("PLAY [%s]" % play) in line
            if seen["in_play"] and hold:
                hold_ca_lock(fleet, hold)
        elif seen["in_play"] and re.match(trigger, line):
            if delay:
                time.sleep(delay)
            return True
        return False

    output, killed = run_and_kill(fleet, "rotate_root.yml", args, kill_here, deadline)
    assert killed, "never reached %r / %r:\n%s" % (play, trigger, output[-6000:])
    return output


def ca_leftovers(fleet):
    """What an interrupted write left in the CA directory, and the generation in force."""
    out = fleet.sh("ca", "cd %s && cat current && ls -a gen && ls -a ." % CA_DIR).stdout
    current, _sep, rest = out.partition("\n")
    names = rest.split()
    number = int(current.strip().split("/")[1])
    return current.strip(), [n for n in names if n.endswith(".tmp")
                             or (n.isdigit() and int(n) > number)]


def anchors(fleet, host):
    return sorted(fleet.sh(host, "cd %s && ls trustzone-%s-*.crt 2>/dev/null; true"
                           % (ANCHORS, ZONE)).stdout.split())


def test_site_builds_the_zone_and_every_pair_talks(fleet):
    proc = fleet.playbook("site.yml")
    assert all(s["failed"] == 0 for s in recap(proc.output).values())
    assert ca_state(fleet)["phase"] == "stable"
    assert probe_all_pairs(fleet) == []


@pytest.mark.parametrize("point", KILL_POINTS, ids=[p[0] for p in KILL_POINTS])
def test_killed_rotation_keeps_the_zone_talking_and_a_rerun_finishes_it(fleet, point):
    _name, play, trigger, delay = point
    old = ca_state(fleet)
    assert old["phase"] == "stable"
    output = run_and_kill_at(fleet, play, trigger, delay, *FORCE,
                             hold=HOLD if point is OUTLIVED else 0)
    assert "PLAY RECAP" not in output
    # right after the kill, while a module of the killed run may still run on the CA host:
    # the CA state is whole (one of the phases, its files readable)
    early = ca_state(fleet)
    assert early["phase"] in ("stable", "trust", "use")
    # what the killed run left, once its module (if any) ended: a late switch only ever
    # finishes the step that run started, with the next root it made
    wait_for_ca_modules(fleet)
    half = ca_state(fleet)
    if early["next"] is not None and half["next"] is None:
        assert half["phase"] == "stable" and fp(half["root"]) == fp(early["next"])
    if point is OUTLIVED:  # the retire waited for the lock through the kill, then switched
        assert early["phase"] == "use" and early["next"] is not None
        assert fp(half["root"]) == fp(early["next"])
    # half-way: the CA state is whole (one of the phases, its files readable), the zone talks
    assert half["phase"] in ("stable", "trust", "use")
    if fp(half["root"]) != fp(old["root"]):  # killed after the retire switched the state
        assert half["phase"] == "stable"
        assert "retired/%s.crt" % fp(old["root"])[:16] in half["files"]
    assert probe_all_pairs(fleet) == []

    # the same command again finishes the rotation
    proc = fleet.playbook("rotate_root.yml", *FORCE)
    assert all(s["failed"] == 0 for s in recap(proc.output).values())
    done = ca_state(fleet)
    assert done["phase"] == "stable" and done["next"] is None
    assert fp(done["root"]) != fp(old["root"])
    assert "retired/%s.crt" % fp(old["root"])[:16] in done["files"]
    if half["next"] is not None:  # the next root the killed run made is the one finished
        assert fp(done["root"]) == fp(half["next"])
    _current, left = ca_leftovers(fleet)
    assert left == []
    for host in NODES:
        assert anchors(fleet, host) == [anchor_name(done["root"])]
    assert probe_all_pairs(fleet) == []
