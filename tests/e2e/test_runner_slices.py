"""site.yml the way AWX and Automation Platform run it (docs/awx.md): through ansible-runner,
as two slices of one zone started at the same moment, each its own runner job with its own
private data directory, as the jobs of a sliced workflow are.

Slice k holds the nodes ``NODES[k::2]`` and, because every run of a zone needs its CA host
(the run lease, the zone's root, the signing delegate), the CA host as well: each slice is
limited to ``trustzone_ca:<its nodes>``. First over an empty fleet, then again as a no-op.
Afterwards every node holds a zone identity that verifies against the zone's roots on the
node, the ledger on the CA host has exactly one valid row per identity, matching what the
node installed, and no serial twice; both runs of each pass succeeded; the runs overlapped;
slices that took the zone's run lease took turns (one waited for the other, seen in its
retry events, which name the other slice's run as the holder) - on the no-op pass a slice
may instead end in site.yml's check round without the lease; the no-op pass changed nothing
on any host of either slice.

AWX's own slicing puts the CA host in one slice only (each slice job gets the inventory pared
down to its hosts: every N-th enabled host by name). The last test runs that too: the slice
without the CA host fails before anything is written, and the other one is a normal run.
"""

from __future__ import annotations

import datetime
import tempfile
import threading

import pytest
import yaml

from conftest import REPO, ansible_env, fleet_prefix

PREFIX = fleet_prefix("tzrun")
ZONE = "run"
DIR = "/etc/trustzone/%s" % ZONE
CA_DIR = "/var/lib/trustzone/%s" % ZONE
NODES = ("node1", "node2", "node3", "node4")
PROFILES = ("client", "server")
PURPOSE = {"server": "sslserver", "client": "sslclient"}
SLICES = tuple(NODES[k::2] for k in range(2))  # AWX's split: every 2nd host, from host k
TAKE = "Take the zone's run lease (waits while another run of this zone holds it)"
GIVE = "Give back the zone's run lease"


@pytest.fixture(scope="module")
def runner():
    try:
        import ansible_runner  # pylint: disable=import-outside-toplevel
    except ImportError:
        pytest.fail("ansible-runner is not installed in .venv: run scripts/bootstrap "
                    "(requirements.txt lists it)")
    return ansible_runner


@pytest.fixture(scope="module")
def fleet(make_fleet):
    return make_fleet(PREFIX, nodes=len(NODES), zone=ZONE)


def runner_env():
    """The lab's Ansible environment, less the result format: runner's own callback writes
    the events."""
    env = ansible_env()
    del env["ANSIBLE_CALLBACK_RESULT_FORMAT"]
    return env


class Slice:
    """One slice's runner job: its result and the events ansible-runner recorded."""

    def __init__(self, index, nodes, inventory=None):
        """Over the fleet's inventory limited to the CA host and ``nodes``, or over
        ``inventory`` (a file) as it is."""
        self.index = index
        self.nodes = nodes
        self.inventory = inventory
        self.limit = None if inventory else ":".join(("trustzone_ca",) + nodes)
        self.result = None
        self.events = []
        self.error = None

    def run(self, runner, fleet, private_data_dir, barrier):
        private_data_dir.mkdir(parents=True)
        try:
            barrier.wait(timeout=60)  # both slices start together, as a workflow's jobs do
            self.result = runner.run(
                private_data_dir=str(private_data_dir), project_dir=str(REPO),
                playbook=str(REPO / "playbooks" / "site.yml"),
                inventory=str(self.inventory or fleet.inventory), limit=self.limit,
                envvars=runner_env(), quiet=True, timeout=1200)
            self.events = list(self.result.events)
        except Exception as exc:  # pylint: disable=broad-except  # reported by the test
            self.error = exc

    def tasks(self, event, task):
        return [e for e in self.events
                if e["event"] == event and e.get("event_data", {}).get("task") == task]

    def when(self, event):
        """The time of this slice's first ``event`` (``playbook_on_start``, ...)."""
        stamps = [e["created"] for e in self.events if e["event"] == event]
        assert stamps, (self.index, event)
        return datetime.datetime.fromisoformat(stamps[0])

    def when_task(self, event, task):
        return datetime.datetime.fromisoformat(self.tasks(event, task)[0]["created"])

    def holder(self):
        """The one-line name of this slice's run, as its lease take reported it."""
        taken = self.tasks("runner_on_ok", TAKE)
        assert len(taken) == 1, (self.index, self.tail())
        return taken[0]["event_data"]["res"]["holder"]

    def waited_for(self):
        """The holders this slice's lease task waited for (one per retry)."""
        return [e["event_data"]["res"].get("holder")
                for e in self.tasks("runner_retry", TAKE)]

    def said_nothing_to_do(self):
        """Whether site.yml's check round told this run that the zone needs nothing."""
        return any("nothing to do" in str(e["event_data"]["res"].get("msg"))
                   for e in self.tasks("runner_on_ok", "Say so"))

    def tail(self):
        return "".join(e.get("stdout", "") + "\n" for e in self.events[-40:])


def start_together(runner, fleet, slices, top):
    """Run ``slices`` at once (a thread and a runner job each, private data directories under
    ``top``) and wait for all of them."""
    barrier = threading.Barrier(len(slices))
    threads = [threading.Thread(target=one.run, args=(runner, fleet, top / str(one.index), barrier))
               for one in slices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=1500)
    for one in slices:
        assert one.error is None, (one.index, repr(one.error))
        assert one.result is not None, one.index


def run_slices(runner, fleet, tmp_path, name):
    """Both slices of the recommended shape at once; both must succeed."""
    slices = [Slice(k, nodes) for k, nodes in enumerate(SLICES)]
    start_together(runner, fleet, slices, tmp_path / name)
    for one in slices:
        # runner's verdict and ansible-playbook's exit status
        assert (one.result.status, one.result.rc) == ("successful", 0), \
            (one.index, one.result.status, one.result.rc, one.tail())
        # the slice ran over its own nodes and the CA host, nothing else
        assert set(one.result.stats["processed"]) == {"ca", *one.nodes}, one.result.stats
    return slices


def durations(slices):
    return " and ".join("%.1f" % (s.when("playbook_on_stats") - s.when("playbook_on_start"))
                        .total_seconds() for s in slices)


def assert_overlapped_and_took_turns(slices, settled_allowed=False):
    """Both runs were alive at the same time, and each slice that had something to do took
    the zone's run lease in turn: when both took it, exactly one slice's lease task retried,
    naming the other slice's run as the holder, and got the lease only after the other
    started giving it back. With ``settled_allowed``, a slice may instead have found the
    zone settled in site.yml's check round and ended without the lease (it printed "nothing
    to do" and never retried). Returns what happened, for the log."""
    first, second = slices
    assert first.when("playbook_on_start") < second.when("playbook_on_stats")
    assert second.when("playbook_on_start") < first.when("playbook_on_stats")
    takers = [s for s in slices if s.tasks("runner_on_ok", TAKE)]
    for one in slices:
        if one not in takers:
            assert settled_allowed, (one.index, one.tail())
            assert not one.waited_for() and one.said_nothing_to_do(), (one.index, one.tail())
    if len(takers) < 2:
        return "slice(s) %s found the zone settled and took no lease; the runs took %s s" % (
            [s.index for s in slices if s not in takers], durations(slices))
    waiters = [s for s in slices if s.waited_for()]
    assert len(waiters) == 1, [(s.index, s.waited_for()) for s in slices]
    waiter = waiters[0]
    holder = slices[1 - waiter.index]
    assert set(waiter.waited_for()) == {holder.holder()}, (waiter.waited_for(), holder.holder())
    assert holder.holder() != waiter.holder()
    # the waiter's take returned only after the holder had started giving the lease back
    assert waiter.tasks("runner_on_ok", TAKE)[0]["created"] > \
        holder.tasks("runner_on_start", GIVE)[0]["created"]
    waited = (waiter.when_task("runner_on_ok", TAKE) - waiter.when_task("runner_on_start", TAKE))
    return "slice %d waited %.1f s (%d retries) for slice %d; the runs took %s s" % (
        waiter.index, waited.total_seconds(), len(waiter.waited_for()), holder.index,
        durations(slices))


def assert_every_node_holds_its_zone_identity(fleet):
    serials = []
    for host in NODES:
        for profile in PROFILES:
            proc = fleet.sh(host, (
                "openssl verify -purpose {u} -CAfile {d}/roots.pem "
                "-untrusted {d}/{p}-fullchain.pem {d}/{p}.crt").format(
                    u=PURPOSE[profile], d=DIR, p=profile), check=False)
            assert proc.stdout.strip() == "%s/%s.crt: OK" % (DIR, profile), (host, proc.output)
            serials.append(fleet.sh(host, "openssl x509 -in %s/%s.crt -noout -serial"
                                    % (DIR, profile)).stdout.strip())
    assert len(set(serials)) == len(serials), serials


@pytest.fixture(scope="module")
def ledger(runner, fleet, tmp_path_factory):
    """``ledger()`` -> the rows of the zone's ledger now (``ledger_rows``)."""
    top = tmp_path_factory.mktemp("ledger")
    return lambda: ledger_rows(runner, fleet, top)


def ledger_rows(runner, fleet, top):
    """``[(host, profile, serial, fingerprint, status)]`` of the zone's ledger, read on the CA
    host by trustzone.pki.ledger_info (read-only), run as an ad hoc runner job."""
    result = runner.run(private_data_dir=str(tempfile.mkdtemp(dir=top)), project_dir=str(REPO),
                        inventory=str(fleet.inventory), host_pattern="ca",
                        module="trustzone.pki.ledger_info", module_args="zone=%s" % ZONE,
                        envvars=runner_env(), quiet=True, timeout=300)
    assert (result.status, result.rc) == ("successful", 0), result.status
    [res] = [e["event_data"]["res"] for e in result.events if e["event"] == "runner_on_ok"]
    return sorted((r["host"], r["profile"], r["serial"], r["fingerprint"], r["status"])
                  for r in res["rows"])


def installed(fleet, host, profile):
    return fleet.sh(host, "openssl x509 -in %s/%s.crt -outform DER | sha256sum"
                    % (DIR, profile)).stdout.split()[0]


def assert_ledger_has_one_valid_row_per_identity(fleet, rows):
    serials = [serial for _h, _p, serial, _f, _s in rows]
    assert len(set(serials)) == len(serials), rows
    valid = {}
    for host, profile, _serial, fingerprint, status in rows:
        if status == "valid":
            valid.setdefault((host, profile), []).append(fingerprint)
    assert set(valid) == {(h, p) for h in NODES for p in PROFILES}, rows
    for (host, profile), fingerprints in valid.items():
        assert len(fingerprints) == 1, (host, profile, rows)
        # the ledger's fingerprint is the SHA-256 of the DER the node holds
        assert installed(fleet, host, profile) == fingerprints[0], (host, profile, fingerprints)


def test_two_slices_at_once_build_the_zone_on_an_empty_fleet(runner, fleet, ledger,
                                                             tmp_path_factory):
    assert not fleet.exists("ca", CA_DIR)
    slices = run_slices(runner, fleet, tmp_path_factory.mktemp("slices"), "first")
    print(assert_overlapped_and_took_turns(slices))
    for one in slices:
        for host in one.nodes:
            assert one.result.stats["changed"].get(host, 0) > 0, (one.index, one.result.stats)
    assert_every_node_holds_its_zone_identity(fleet)
    assert_ledger_has_one_valid_row_per_identity(fleet, ledger())
    assert not fleet.exists("ca", "%s.lease" % CA_DIR)  # given back


def test_two_slices_at_once_again_change_nothing(runner, fleet, ledger, tmp_path_factory):
    before = {(h, p): installed(fleet, h, p) for h in NODES for p in PROFILES}
    rows_before = ledger()
    slices = run_slices(runner, fleet, tmp_path_factory.mktemp("slices"), "again")
    print(assert_overlapped_and_took_turns(slices, settled_allowed=True))
    for one in slices:
        changed = one.result.stats["changed"]
        assert {h: changed.get(h, 0) for h in ("ca", *one.nodes)} == \
            dict.fromkeys(("ca", *one.nodes), 0), (one.index, one.result.stats)
    assert {(h, p): installed(fleet, h, p) for h in NODES for p in PROFILES} == before
    assert ledger() == rows_before
    assert_every_node_holds_its_zone_identity(fleet)
    assert_ledger_has_one_valid_row_per_identity(fleet, ledger())
    assert not fleet.exists("ca", "%s.lease" % CA_DIR)


def awx_slice_inventory(inventory, number, count):
    """The inventory AWX gives slice ``number`` (from 1) of ``count``: its enabled hosts by
    name, every ``count``-th from ``number - 1``, in the groups they belong to; the other
    hosts left out (Inventory.get_script_data in AWX)."""
    groups = inventory["all"]["children"]
    names = sorted(h for group in groups.values() for h in group["hosts"])
    kept = set(names[number - 1::count])
    pared = {"all": {"vars": inventory["all"]["vars"], "children": {}}}
    for name, group in groups.items():
        pared["all"]["children"][name] = {"hosts": {
            h: v for h, v in group["hosts"].items() if h in kept}}
    return pared, kept


def test_awx_own_slicing_leaves_the_ca_host_to_one_slice_and_the_other_fails_safe(
        runner, fleet, ledger, tmp_path_factory):
    """What job_slice_count=2 on a job template over the whole inventory does: the slice
    without the CA host cannot sign, take the lease or read the zone's root, and stops at its
    first node task with nothing written; the slice holding the CA host works. Running the
    nodes again as a slice with the CA host (docs/awx.md) finishes the job."""
    inventory = yaml.safe_load(fleet.inventory.read_text())
    tmp = tmp_path_factory.mktemp("awx")
    fleet.sh("node1", "rm %s/server.crt" % DIR)
    before = {h: fleet.tree(h, DIR) for h in NODES}
    rows_before = ledger()
    slices = []
    for number in (1, 2):
        pared, kept = awx_slice_inventory(inventory, number, 2)
        path = tmp / ("slice%d.yml" % number)
        path.write_text(yaml.safe_dump(pared))
        slices.append(Slice(number - 1, tuple(sorted(kept - {"ca"})), inventory=path))
    assert [s.nodes for s in slices] == [("node2", "node4"), ("node1", "node3")]
    start_together(runner, fleet, slices, tmp / "awx")
    with_ca, without_ca = slices
    assert (with_ca.result.status, with_ca.result.rc) == ("successful", 0), with_ca.tail()
    assert without_ca.result.status == "failed" and without_ca.result.rc != 0
    assert set(without_ca.result.stats["failures"]) == {"node1", "node3"}, \
        without_ca.result.stats
    failures = sorted({(e["event_data"]["task"], e["event_data"]["res"].get("msg"))
                       for e in without_ca.events if e["event"] == "runner_on_failed"})
    print(failures)
    # one clear line per node: the group, what it holds, the fix (not a templating error)
    for _task, msg in failures:
        assert "inventory group trustzone_ca must hold exactly one host, it holds 0" in msg, \
            failures
    assert {h: fleet.tree(h, DIR) for h in NODES} == before  # nothing written anywhere
    assert ledger() == rows_before
    assert not fleet.exists("ca", "%s.lease" % CA_DIR)

    again = run_slices(runner, fleet, tmp, "repair")
    assert [one.result.stats["changed"].get("node1", 0) > 0 for one in again] == [True, False]
    assert_every_node_holds_its_zone_identity(fleet)
    assert_ledger_has_one_valid_row_per_identity(fleet, ledger())
