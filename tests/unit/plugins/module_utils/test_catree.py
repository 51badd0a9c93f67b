"""_catree and _rekey: reading a whole CA directory (symlinks refused, SQLite snapshotted),
writing a restored tree in one step, and changing the CA passphrase all-or-nothing.

Needs only cryptography and the standard library.
"""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _archive as A
from ansible_collections.trustzone.pki.plugins.module_utils import _catree as T
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _rekey as K
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

OLD = "old ca passphrase 1"
NEW = "new ca passphrase 2"
UID, GID = os.getuid(), os.getgid()


def write(path, data, mode=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


@pytest.fixture
def ca(tmp_path, keys):
    """A CA directory with a root, a retired root and a ledger in WAL mode."""
    path = tmp_path / "prod"
    path.mkdir(mode=0o700)
    key = keys.get("p256#tree-root")
    cert = C.build_ca_certificate(key, C.zone_name_attributes("prod", "root", unique="1"),
                                  NOW - DAY, NOW + 10 * DAY)
    write(str(path / "root.crt"), C.certificate_pem(cert).encode(), 0o644)
    write(str(path / "root.key"), C.private_key_pem(key, OLD))
    retired = keys.get("p256#tree-retired")
    write(str(path / "retired" / "aaaa.key"), C.private_key_pem(retired, OLD))
    write(str(path / "retired" / "aaaa.crt"), C.certificate_pem(C.build_ca_certificate(
        retired, C.zone_name_attributes("prod", "root", unique="2"), NOW - DAY,
        NOW + 10 * DAY)).encode(), 0o644)
    return path


def ledger(path, rows):
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS issued (serial TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO issued VALUES (?)", [(str(r),) for r in rows])
    db.commit()
    return db


# --------------------------------------------------------------------------- read_tree

def test_read_tree_reads_every_regular_file_with_its_mode(ca):
    files, skipped, warnings = T.read_tree(str(ca))
    assert sorted(files) == ["retired/aaaa.crt", "retired/aaaa.key", "root.crt", "root.key"]
    assert files["root.key"][0] == 0o600 and files["root.crt"][0] == 0o644
    assert skipped == [] and warnings == []


def test_read_tree_refuses_a_symlink_anywhere(ca, tmp_path):
    write(str(tmp_path / "elsewhere"), b"x")
    os.symlink(str(tmp_path / "elsewhere"), str(ca / "retired" / "link.crt"))
    with pytest.raises(TrustzoneError, match="symbolic link"):
        T.read_tree(str(ca))


def test_read_tree_refuses_a_symlinked_directory(ca, tmp_path):
    os.symlink(str(ca), str(tmp_path / "alias"))
    with pytest.raises(TrustzoneError, match="symbolic link"):
        T.read_tree(str(tmp_path / "alias"))


def test_read_tree_refuses_a_fifo(ca):
    os.mkfifo(str(ca / "pipe"))
    with pytest.raises(TrustzoneError, match="not a regular file"):
        T.read_tree(str(ca))


def test_read_tree_skips_leftover_temporary_files(ca):
    write(str(ca / ".root.key.abc123.tmp"), b"half")
    files, skipped, _w = T.read_tree(str(ca))
    assert ".root.key.abc123.tmp" not in files and skipped == [".root.key.abc123.tmp"]


def test_read_tree_missing_directory(tmp_path):
    with pytest.raises(TrustzoneError, match="does not exist"):
        T.read_tree(str(tmp_path / "nope"))


def test_sqlite_ledger_is_snapshotted_with_uncheckpointed_rows(ca):
    db = ledger(ca / "ledger.db", range(50))  # still open: rows sit in ledger.db-wal
    try:
        assert (ca / "ledger.db-wal").exists()
        files, skipped, warnings = T.read_tree(str(ca), snapshot_sqlite=True)
    finally:
        db.close()
    assert "ledger.db-wal" not in files and "ledger.db-wal" in skipped
    assert warnings == []
    copy = ca.parent / "copy.db"
    copy.write_bytes(files["ledger.db"][1])
    got = sqlite3.connect(str(copy)).execute("SELECT count(*) FROM issued").fetchone()[0]
    assert got == 50
    assert sqlite3.connect(str(copy)).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --------------------------------------------------------------------------- write_tree

def test_write_tree_into_a_missing_or_empty_directory(ca, tmp_path):
    files, _s, _w = T.read_tree(str(ca))
    for target in (tmp_path / "new" / "prod", tmp_path / "empty"):
        if target.name == "empty":
            target.mkdir(mode=0o755)
        assert T.write_tree(str(target), files, UID, GID) is None
        again, _s, _w = T.read_tree(str(target))
        assert again == files
        assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(str(target / "retired")).st_mode) == 0o700
    assert not [n for n in os.listdir(str(tmp_path)) if ".restore-" in n]


def test_write_tree_refuses_a_non_empty_directory_and_leaves_no_staging(ca, tmp_path):
    files, _s, _w = T.read_tree(str(ca))
    with pytest.raises(TrustzoneError, match="is not empty"):
        T.write_tree(str(ca), {"x": (0o600, b"y")}, UID, GID)
    assert T.read_tree(str(ca))[0] == files
    assert not [n for n in os.listdir(str(tmp_path)) if ".restore-" in n]


def test_write_tree_replace_keeps_the_old_directory(ca, tmp_path):
    old, _s, _w = T.read_tree(str(ca))
    replaced = T.write_tree(str(ca), {"root.crt": (0o644, b"new")}, UID, GID, replace=True,
                            now=NOW)
    assert replaced == str(ca) + ".replaced-20250601T120000Z"
    assert T.read_tree(replaced)[0] == old
    assert T.read_tree(str(ca))[0] == {"root.crt": (0o644, b"new")}


def test_write_tree_failure_half_way_leaves_the_target_untouched(ca, tmp_path, monkeypatch):
    target = tmp_path / "target"
    calls = []

    def failing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise TrustzoneError("disk full", path)
        return real(path, *args, **kwargs)

    real = T._fs.atomic_write
    monkeypatch.setattr(T._fs, "atomic_write", failing)
    with pytest.raises(TrustzoneError, match="disk full"):
        T.write_tree(str(target), T.read_tree(str(ca))[0], UID, GID)
    assert not target.exists()
    assert not [n for n in os.listdir(str(tmp_path)) if ".restore-" in n]


# --------------------------------------------------------------------------- passphrase

def keys_of(path):
    files, _s, _w = T.read_tree(str(path))
    return {p: d for p, (_m, d) in files.items() if K.is_private_key(d)}


def test_rekey_reencrypts_every_key_and_a_rerun_does_nothing(ca):
    keys = keys_of(ca)
    assert sorted(keys) == ["retired/aaaa.key", "root.key"]
    todo, done = K.plan_rekey(keys, OLD, NEW)
    assert sorted(todo) == sorted(keys) and done == []
    T.replace_files({str(ca / p): pem for p, pem in todo.items()})
    for path in keys:
        C.load_private_key((ca / path).read_bytes(), NEW)
        with pytest.raises(TrustzoneError, match="wrong passphrase"):
            C.load_private_key((ca / path).read_bytes(), OLD)
        assert stat.S_IMODE(os.stat(str(ca / path)).st_mode) == 0o600
    todo, done = K.plan_rekey(keys_of(ca), OLD, NEW)
    assert todo == {} and sorted(done) == sorted(keys)


def test_rekey_with_a_wrong_current_passphrase_plans_nothing(ca):
    before = keys_of(ca)
    with pytest.raises(TrustzoneError, match="does not open .*nothing was changed"):
        K.plan_rekey(before, "not the passphrase", NEW)
    assert keys_of(ca) == before


def test_rekey_finishes_an_interrupted_change(ca):
    keys = keys_of(ca)
    todo, _done = K.plan_rekey(keys, OLD, NEW)
    T.replace_files({str(ca / "root.key"): todo["root.key"]})  # crash after the first rename
    todo, done = K.plan_rekey(keys_of(ca), OLD, NEW)
    assert sorted(todo) == ["retired/aaaa.key"] and done == ["root.key"]


def test_rekey_refuses_a_mixed_directory_it_cannot_explain(ca, keys):
    write(str(ca / "next.key"), C.private_key_pem(keys.get("p256#tree-next"), "third passphrase"))
    with pytest.raises(TrustzoneError, match="next.key"):
        K.plan_rekey(keys_of(ca), OLD, NEW)


@pytest.mark.parametrize("new", ["short", OLD])
def test_rekey_refuses_a_weak_or_unchanged_new_passphrase(ca, new):
    with pytest.raises(TrustzoneError, match="at least 12|same as the current"):
        K.plan_rekey(keys_of(ca), OLD, new)


def test_replace_files_failure_before_the_renames_changes_nothing(ca, monkeypatch):
    before = keys_of(ca)
    real = os.fsync
    count = []

    def failing(fd):
        count.append(fd)
        if len(count) == 2:
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(T.os, "fsync", failing)
    with pytest.raises(TrustzoneError, match="No space left"):
        T.replace_files({str(ca / p): b"new" for p in before})
    monkeypatch.undo()
    assert keys_of(ca) == before
    assert not [n for n in os.listdir(str(ca)) if n.endswith(".tmp")]
    assert not [n for n in os.listdir(str(ca / "retired")) if n.endswith(".tmp")]


def test_archive_of_a_tree_round_trips_through_write_tree(ca, tmp_path):
    files, _s, _w = T.read_tree(str(ca))
    manifest = A.make_manifest("prod", files, "2025-06-01T12:00:00Z", "0.2.0")
    data = A.build(manifest, files, "archive passphrase", kdf={"n": 16})
    _m, restored = A.open_archive(data, "archive passphrase")
    T.write_tree(str(tmp_path / "restored"), restored, UID, GID)
    assert T.read_tree(str(tmp_path / "restored"))[0] == files


def test_read_tree_skips_an_interrupted_generation(tmp_path):
    ca = tmp_path / "ca"
    (ca / "gen" / ".000002.tmp").mkdir(parents=True)
    write(str(ca / "gen" / ".000002.tmp" / "root.key"), b"-----BEGIN ENCRYPTED PRIV")  # cut
    write(str(ca / "current"), b"gen/000001\n", 0o644)
    files, skipped, _warnings = T.read_tree(str(ca))
    assert sorted(files) == ["current"] and skipped == ["gen/.000002.tmp/"]
