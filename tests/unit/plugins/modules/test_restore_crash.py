"""A crash at every filesystem step of a restore (ca_restore -> _catree.write_tree).

The restore runs from a fresh copy of its starting state - no CA directory, an empty one, or
(with force) another zone CA's directory - with ``_catree.Fs`` (mkdir, write, fsync_dir,
rename, exchange, unlink, rmdir) replaced by a counter that crashes at step k, once by
raising and once by ``os._exit`` in a forked child, for k = 1, 2, ... until the restore runs
to its end. After each crash:

(a) the CA directory is the one before or the complete restored one - never a mix, never
    missing while the old one sits aside (where the kernel can swap two directories);
(b) the directory a forced restore replaces is never lost: it is the target, or kept beside
    it byte for byte;
(c) check mode says the restore is not finished and writes nothing;
(d) the same restore run again completes it with nothing for the operator to do: the target
    is the archive, the old directory is kept once as ``<dir>.replaced-<time>``, nothing
    else is left beside it, and one more run changes nothing.

Needs Ansible (the modules' run()) and cryptography.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

import pytest

pytest.importorskip("ansible.module_utils.basic")

from ansible_collections.trustzone.pki.plugins.module_utils import _archive as A  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils import _catree as T  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import ca_backup  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import ca_restore  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import zone_root  # noqa: E402
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (  # noqa: E402
    counting_fs, crashed, module_runner, walk)

CA_PASS = "ca passphrase for units"
BACKUP_PASS = "backup passphrase for units"
UID, GID = str(os.getuid()), str(os.getgid())
STEPS = ("mkdir", "write", "fsync_dir", "rename", "exchange", "unlink", "rmdir")


class Crash(Exception):
    pass


call = module_runner()


def make_ca(path, unique):
    os.makedirs(path)
    common = dict(zone="prod", dir=path, passphrase=CA_PASS, owner=UID, group=GID,
                  key_curve="secp256r1", intermediate=True)
    call(zone_root, **common)
    call(zone_root, rotate="trust", rotate_force=True, **common)


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    """A crash is a process dying, not a power cut: flushing only costs time (the flushes
    still count as steps, ``Fs.fsync_dir``)."""
    monkeypatch.setattr(A, "DEFAULT_KDF", {"n": 2 ** 4, "r": 8, "p": 1})
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The archive to restore, the tree it restores to, and another zone CA (the directory a
    forced restore replaces)."""
    base = tmp_path_factory.mktemp("restore-crash")
    saved = A.DEFAULT_KDF
    A.DEFAULT_KDF = {"n": 2 ** 4, "r": 8, "p": 1}
    try:
        make_ca(str(base / "source" / "prod"), "a")
        make_ca(str(base / "other" / "prod"), "b")
        archive = str(base / "archive.tzbackup")
        call(ca_backup, zone="prod", dir=str(base / "source" / "prod"), dest=archive,
             passphrase=BACKUP_PASS, ca_passphrase=CA_PASS, collection_version="9.9.9")
    finally:
        A.DEFAULT_KDF = saved
    reference = str(base / "reference" / "prod")
    call(ca_restore, zone="prod", dir=reference, src=archive, passphrase=BACKUP_PASS,
         owner=UID, group=GID)
    return {"archive": archive, "want": T.read_tree(reference)[0],
            "other": str(base / "other" / "prod")}


def restore(world, target, check_mode=False, force=False):
    return call(ca_restore, check_mode=check_mode, zone="prod", dir=target,
                src=world["archive"], passphrase=BACKUP_PASS, owner=UID, group=GID,
                force=force)


def listing(path):
    """{relative path: (mode, sha256)} of everything under ``path`` (or None: missing)."""
    if not os.path.lexists(path):
        return None
    return {name: (st.st_mode, digest) for name, (st, digest) in walk(path).items()}


def content(path):
    """The tree's files as read_tree reads them, {} for an empty directory, None: missing."""
    if not os.path.lexists(path):
        return None
    return T.read_tree(path)[0]


def beside(target):
    """What is beside the target, but the note of the archive it was restored from."""
    parent, name = os.path.split(target)
    return sorted(n for n in os.listdir(parent)
                  if n not in (name, os.path.basename(T.restored_marker(target))))


# --------------------------------------------------------------------------- starting states

def start_missing(world, target):
    os.makedirs(os.path.dirname(target))


def start_empty(world, target):
    os.makedirs(target, mode=0o700)


def start_other(world, target):
    os.makedirs(os.path.dirname(target))
    shutil.copytree(world["other"], target, symlinks=True)


STARTS = {"missing": (start_missing, False), "empty": (start_empty, False),
          "force-over-another-ca": (start_other, True)}


# --------------------------------------------------------------------------- crashing

def no_exchange(_self, one, _other):
    """``Fs.exchange`` on a filesystem without RENAME_EXCHANGE."""
    raise OSError(errno.EINVAL, "Invalid argument", one)


def run_crashing(monkeypatch, world, target, force, at, how, swap):
    """Run the restore with a crash before filesystem step ``at``; True if it crashed."""
    replace = {"exchange": no_exchange} if swap == "no-exchange" else None
    with monkeypatch.context() as patch:
        patch.setattr(T, "Fs", counting_fs(T.Fs, STEPS, at, how, Crash, {"steps": 0}, replace))
        return crashed(lambda: restore(world, target, force=force), how, Crash, "the restore")


CASES = [(start, swap) for start in sorted(STARTS)
         for swap in (("exchange", "no-exchange") if STARTS[start][1] else ("exchange",))]


@pytest.mark.parametrize("how", ["raise", "exit"])
@pytest.mark.parametrize("start,swap", CASES)
def test_a_crash_at_every_step_of_a_restore(world, tmp_path, monkeypatch, start, swap, how):
    build, force = STARTS[start]
    want = world["want"]
    at, crashes = 1, 0
    while True:
        target = str(tmp_path / ("%d" % at) / "prod")
        build(world, target)
        before = content(target)
        before_listing = listing(target)
        if not run_crashing(monkeypatch, world, target, force, at, how, swap):
            break  # ran to its end: every step has had its crash
        crashes += 1
        now = content(target)
        # (a) the old directory or the whole restored one, never a mix
        assert now in (before, want) or (swap == "no-exchange" and now is None), \
            "%s: a crash before step %d left %r" % (start, at, sorted(now or {}))
        if force and swap == "exchange":
            assert CaDir(target).has_root(), "a crash before step %d left no CA" % at
        # (b) the replaced directory is the target or kept beside it, byte for byte
        if force:
            parent = os.path.dirname(target)
            copies = [listing(target)] + [listing(os.path.join(parent, n))
                                          for n in beside(target)]
            assert before_listing in copies, "a crash before step %d lost the old CA" % at
        # (c) check mode: not done (unless only a flush was missing), and nothing written
        done = (now == want and T.interrupted(target) == []
                and T.restored_from(target) is not None)
        parent_before = listing(os.path.dirname(target))
        result = restore(world, target, check_mode=True, force=force)
        assert result["changed"] is not done
        assert listing(os.path.dirname(target)) == parent_before
        # (d) the same restore again completes it
        result = restore(world, target, force=force)
        assert result["changed"] is not done
        assert content(target) == want
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
        assert T.restored_from(target) == "sha256:" + A.sha256_hex(
            open(world["archive"], "rb").read())
        left = beside(target)
        if force:
            assert len(left) == 1 and left[0].startswith("prod.replaced-"), left
            assert listing(os.path.join(os.path.dirname(target), left[0])) == before_listing
            kept = os.path.join(os.path.dirname(target), left[0])
            # this run moved it aside (the crashed one had not, or had only swapped it out)
            if now == before or any(r.startswith("keep ") for r in result["recovered"]):
                assert result["replaced"] == kept
        else:
            assert left == []
        steady = listing(os.path.dirname(target))
        again = restore(world, target, force=force)
        assert again["changed"] is False and again["recovered"] == []
        assert listing(os.path.dirname(target)) == steady
        at += 1
    assert crashes >= 5, "%s: only %d steps were crashed" % (start, crashes)
    print("%s/%s/%s: %d crash points" % (start, swap, how, crashes))
    # the crash-free run restored
    assert content(target) == want


def test_a_forced_restore_swaps_in_one_step_where_the_kernel_can(world, tmp_path, monkeypatch):
    """The swap is one renameat2(RENAME_EXCHANGE) here (tmp_path's filesystem), not the two
    renames of the fallback."""
    target = str(tmp_path / "x" / "prod")
    start_other(world, target)
    calls = []
    real = T.Fs.exchange

    def exchange(self, one, other):
        calls.append((one, other))
        return real(self, one, other)

    monkeypatch.setattr(T.Fs, "exchange", exchange)
    result = restore(world, target, force=True)
    assert result["action"] == "replace" and len(calls) == 1
    assert calls[0][1] == target and ".prod.aside-" in calls[0][0]
    assert content(target) == world["want"]


def test_an_aside_directory_that_is_not_the_old_one_is_removed(world, tmp_path):
    """``.<name>.aside-<inode>`` holds the old directory only when its inode is that number:
    a complete new tree that never got swapped in is removed, the old one kept."""
    target = str(tmp_path / "y" / "prod")
    start_other(world, target)
    parent = os.path.dirname(target)
    bogus = os.path.join(parent, ".prod.aside-1")
    os.makedirs(os.path.join(bogus, "gen"))
    kept = os.path.join(parent, ".prod.aside-%d")
    os.rename(target, os.path.join(parent, "old"))
    ino = os.lstat(os.path.join(parent, "old")).st_ino
    os.rename(os.path.join(parent, "old"), kept % ino)
    plan = T.interrupted(target)
    assert [(a, os.path.basename(p)) for a, p, _d in plan] == [
        ("remove", ".prod.aside-1"), ("keep", ".prod.aside-%d" % ino)]
    T.recover(target)
    left = beside(target)
    assert len(left) == 1 and left[0].startswith("prod.replaced-")
    assert content(os.path.join(parent, left[0])) == content(world["other"])


@pytest.mark.parametrize("force", [False, True])
def test_re_running_a_restore_after_learning_began_keeps_what_was_learned(world, tmp_path,
                                                                          force):
    """restore.yml stopped after ca_restore, during or after ledger_learn (which changes the
    restored ledger): running restore.yml again must not refuse ("would roll it back") nor,
    forced, roll the learned ledger back to the archive - the restore of this archive is
    done, the learning goes on from where it is."""
    import sqlite3

    target = str(tmp_path / "z" / "prod")
    start_other(world, target) if force else start_missing(world, target)
    restore(world, target, force=force)
    db = sqlite3.connect(os.path.join(target, "ledger.db"))
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('crl_number', '99')")
    db.commit()                                     # what ledger_learn's merge commits
    db.close()
    learned = content(target)
    kept = beside(target)
    for check_mode in (True, False):
        result = restore(world, target, check_mode=check_mode, force=force)
        assert (result["action"], result["changed"]) == ("none", False)
        assert "restored from this archive" in result["reason"]
        assert content(target) == learned and beside(target) == kept
    # without the note of which archive the directory was restored from (another archive
    # of the same root), the directory is refused: restoring would roll the ledger back
    os.unlink(T.restored_marker(target))
    with pytest.raises(Exception, match="would roll it back"):
        restore(world, target)


def test_a_restored_ca_signs_no_crl_until_it_learned_from_the_fleet(world, tmp_path):
    """restore.yml stopped between ca_restore and ledger_learn, and someone ran site.yml: the
    restored ledger knows only the archive, so a CRL signed from it would drop every
    revocation made after the backup (and reuse numbers the nodes hold). It is refused, with
    the fix, until ledger_learn ran."""
    from ansible_collections.trustzone.pki.plugins.modules import ledger_learn

    target = str(tmp_path / "w" / "prod")
    start_missing(world, target)
    restore(world, target)
    os.unlink(os.path.join(target, "crl.pem"))                 # a CRL is due
    ca_params = dict(zone="prod", dir=target, passphrase=CA_PASS, owner=UID, group=GID,
                     key_curve="secp256r1", intermediate=True)
    with pytest.raises(Exception, match="has not learned from the fleet yet") as err:
        call(zone_root, **ca_params)
    assert "run playbooks/restore.yml again" in str(err.value)
    assert not os.path.exists(os.path.join(target, "crl.pem"))
    assert call(zone_root, check_mode=True, **ca_params)["crl_signed"]  # says what is due
    learn = dict(zone="prod", dir=target, passphrase=CA_PASS, fleet=[])
    note = open(T.restored_marker(target), "rb").read()
    assert call(ledger_learn, check_mode=True, **learn)["changed"] is True
    assert open(T.restored_marker(target), "rb").read() == note    # check mode wrote nothing
    assert call(ledger_learn, **learn)["changed"] is True
    assert not T.learning_pending(target) and T.restored_from(target) == note.split()[0].decode()
    assert call(ledger_learn, **learn)["changed"] is False
    assert call(zone_root, **ca_params)["crl_signed"]
    # a re-run of the whole restore keeps it that way
    assert restore(world, target)["changed"] is False and not T.learning_pending(target)


def test_without_a_swap_a_failed_second_rename_puts_the_old_directory_back(
        world, tmp_path, monkeypatch):
    """The two-rename fallback: when the new tree cannot be renamed in after the old one was
    moved aside (an error, not a crash), the old one goes back and nothing is left beside."""
    target = str(tmp_path / "v" / "prod")
    start_other(world, target)
    before = listing(target)
    renames = []
    real = T.Fs.rename

    def rename(self, src, dst):
        renames.append((src, dst))
        if len(renames) == 3:  # staging -> aside, target -> replaced, aside -> target
            raise OSError(errno.EIO, "Input/output error", src)
        return real(self, src, dst)

    def no_exchange(self, one, _other):
        raise OSError(errno.EINVAL, "Invalid argument", one)

    monkeypatch.setattr(T.Fs, "rename", rename)
    monkeypatch.setattr(T.Fs, "exchange", no_exchange)
    with pytest.raises(Exception, match="Input/output error"):
        restore(world, target, force=True)
    assert renames[2][1] == target
    assert listing(target) == before and beside(target) == []
