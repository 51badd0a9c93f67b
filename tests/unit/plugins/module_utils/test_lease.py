"""The zone run lease: pure decisions, the controller's run from a fake /proc, and the
run_lease module against a real lease file (two runs, a dead holder, expiry, release)."""

from __future__ import annotations

import types

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _lease as L
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.modules import run_lease

T0 = 1_800_000_000.0


def run(controller="ctl/boot1", pid=100, start=5, live=None, playbook="site.yml"):
    return L.check_holder({"controller": controller, "pid": pid, "start": start,
                           "playbook": playbook,
                           "live": live if live is not None else ["%d:%d" % (pid, start)]})


def test_free_lease_is_taken_and_own_lease_renewed():
    me = run()
    assert L.decide(None, me, T0, 60)[0] == "take"
    lease = L.new_lease(me, T0, 60)
    assert L.decide(lease, me, T0 + 10, 60)[0] == "renew"
    assert L.parse(L.render(lease)) == lease


def test_a_live_run_is_waited_for_and_named():
    first = run(pid=100)
    second = run(pid=200, live=["100:5", "200:7"], start=7)
    action, why = L.decide(L.new_lease(first, T0, 3600), second, T0 + 5, 3600)
    assert action == "wait"
    assert "ctl" in why and "pid 100" in why and "site.yml" in why


def test_a_dead_run_on_this_controller_is_taken_over_at_once():
    first = run(pid=100)
    second = run(pid=200, start=7, live=["200:7"])
    action, why = L.decide(L.new_lease(first, T0, 3600), second, T0 + 5, 3600)
    assert action == "take" and "no longer alive" in why


def test_a_reused_pid_is_not_the_same_run():
    first = run(pid=100, start=5)
    second = run(pid=100, start=9, live=["100:9"])
    assert L.decide(L.new_lease(first, T0, 3600), second, T0 + 5, 3600)[0] == "take"


def test_another_controller_is_trusted_until_the_ttl():
    first = run(controller="other/boot9", pid=100)
    second = run(pid=200, start=7, live=["200:7"])
    lease = L.new_lease(first, T0, 3600)
    assert L.decide(lease, second, T0 + 3599, 3600)[0] == "wait"
    action, why = L.decide(lease, second, T0 + 3600, 3600)
    assert action == "take" and "expired" in why


def test_release_only_by_the_holder():
    lease = L.new_lease(run(pid=100), T0, 60)
    assert L.may_release(lease, run(pid=100))
    assert not L.may_release(lease, run(pid=101))
    assert not L.may_release(None, run())


@pytest.mark.parametrize("bad", [None, {}, {"controller": "a b", "pid": 1, "start": 1},
                                 {"controller": "x", "pid": "nan", "start": 1}])
def test_bad_holders_are_refused(bad):
    with pytest.raises(TrustzoneError):
        L.check_holder(bad)


@pytest.mark.parametrize("data", [b"", b"{", b'{"holder": {}}', b"\xff", b'{"holder": {'
                                  b'"controller": "c", "pid": 1, "start": 2}, "expires": "x"}'])
def test_unreadable_leases_are_free(data):
    assert L.parse(data) is None


def _proc(tmp_path, procs, boot="0123456789abcdef"):
    (tmp_path / "sys/kernel/random").mkdir(parents=True)
    (tmp_path / "sys/kernel/random/boot_id").write_text(boot + "\n")
    for pid, (ppid, start, argv) in procs.items():
        d = tmp_path / str(pid)
        d.mkdir()
        fields = ["S", str(ppid)] + ["0"] * 17 + [str(start)] + ["0"] * 10
        (d / "stat").write_text("%d (py (x)) %s\n" % (pid, " ".join(fields)))
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return str(tmp_path)


def test_controller_run_finds_the_topmost_playbook_process(tmp_path):
    book = ["/venv/bin/python3", "/venv/bin/ansible-playbook", "-i", "hosts", "site.yml"]
    proc = _proc(tmp_path, {
        1: (0, 1, ["/sbin/init"]), 50: (1, 40, ["bash"]),
        60: (50, 77, book), 61: (60, 78, book),  # the worker is a fork: same argv
        62: (61, 79, ["/bin/sh", "-c", "python3 module"]),
        90: (1, 88, ["/venv/bin/ansible-playbook", "renew.yml"]),
    })
    me = L.controller_run(proc=proc, hostname="ctl", pid=62)
    assert (me["controller"], me["pid"], me["start"], me["playbook"]) == (
        "ctl/01234567", 60, 77, "site.yml")
    assert me["live"] == ["60:77", "61:78", "90:88"]


def test_controller_run_outside_a_playbook_is_refused(tmp_path):
    proc = _proc(tmp_path, {1: (0, 1, ["/sbin/init"]), 5: (1, 2, ["python3"])})
    with pytest.raises(TrustzoneError, match="ansible-playbook"):
        L.controller_run(proc=proc, hostname="ctl", pid=5)


# --------------------------------------------------------------------------- the module

def _module(path, holder, state="acquired", check=False, wait=0, ttl="2h"):
    return types.SimpleNamespace(params=dict(path=str(path), holder=holder, state=state,
                                             ttl=ttl, wait=wait), check_mode=check)


def test_module_two_runs_take_turns(tmp_path):
    path = tmp_path / "zone" / "prod.lease"
    first = dict(run(pid=100), live=["100:5", "200:7"])
    second = dict(run(pid=200, start=7), live=["100:5", "200:7"])
    got = run_lease.run(_module(path, first))
    assert got["acquired"] and got["taken"] and not got["changed"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    waiting = run_lease.run(_module(path, second))
    assert waiting["acquired"] is False and "pid 100" in waiting["msg"]
    assert run_lease.run(_module(path, second, check=True))["acquired"] is True  # no wait
    assert run_lease.run(_module(path, second, state="released"))["released"] is False
    assert run_lease.run(_module(path, first))["taken"] is False  # renewed
    assert run_lease.run(_module(path, first, state="released"))["released"] is True
    assert not path.exists()
    assert run_lease.run(_module(path, second))["acquired"] is True


def test_module_takes_over_from_a_dead_run(tmp_path):
    path = tmp_path / "prod.lease"
    run_lease.run(_module(path, run(pid=100)))
    taken = run_lease.run(_module(path, run(pid=200, start=7, live=["200:7"])))
    assert taken["acquired"] and "no longer alive" in taken["why"]


def test_module_check_mode_writes_nothing(tmp_path):
    path = tmp_path / "prod.lease"
    assert run_lease.run(_module(path, run(), check=True))["changed"] is False
    assert not path.exists()
