"""_fs: atomic writes with owner/mode, .prev, symlink refusal, reads that never follow links.

The suite runs as root (like the modules on the nodes), so ownership changes work and
permission-denied cannot be provoked with modes: failures are injected with monkeypatch.
"""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")

UID, GID = 1234, 2345  # need not exist: numeric ids are fine for chown


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def entries(directory):
    return sorted(os.listdir(directory))


# --------------------------------------------------------------------------- atomic_write

def test_atomic_write_creates_with_mode_and_owner(tmp_path):
    target = tmp_path / "server.key"
    _fs.atomic_write(str(target), b"secret\n", 0o640, UID, GID)
    assert target.read_bytes() == b"secret\n"
    st = os.lstat(target)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (UID, GID)
    assert entries(tmp_path) == ["server.key"]  # no temp file, no .prev


def test_atomic_write_text_is_utf8(tmp_path):
    target = tmp_path / "x.pem"
    _fs.atomic_write(str(target), "héllo", 0o644, 0, 0)
    assert target.read_bytes() == "héllo".encode("utf-8")


def test_atomic_write_mode_ignores_umask(tmp_path):
    old = os.umask(0o077)
    try:
        _fs.atomic_write(str(tmp_path / "a.crt"), b"x", 0o644, 0, 0)
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "a.crt") == 0o644


def test_atomic_write_replaces_mode_and_owner_of_existing(tmp_path):
    target = tmp_path / "a.crt"
    target.write_bytes(b"old")
    os.chmod(target, 0o666)
    _fs.atomic_write(str(target), b"new", 0o600, UID, GID)
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o600
    assert os.lstat(target).st_uid == UID


def test_atomic_write_keeps_previous(tmp_path):
    target = tmp_path / "server.crt"
    _fs.atomic_write(str(target), b"one", 0o644, 0, 0, keep_previous=True)
    assert entries(tmp_path) == ["server.crt"]  # nothing to keep yet
    _fs.atomic_write(str(target), b"two", 0o644, 0, 0, keep_previous=True)
    assert target.read_bytes() == b"two"
    assert (tmp_path / "server.crt.prev").read_bytes() == b"one"
    _fs.atomic_write(str(target), b"three", 0o644, 0, 0, keep_previous=True)
    assert (tmp_path / "server.crt.prev").read_bytes() == b"two"
    assert entries(tmp_path) == ["server.crt", "server.crt.prev"]


def test_atomic_write_without_keep_previous(tmp_path):
    target = tmp_path / "server.crt"
    _fs.atomic_write(str(target), b"one", 0o644, 0, 0)
    _fs.atomic_write(str(target), b"two", 0o644, 0, 0)
    assert entries(tmp_path) == ["server.crt"]


def test_atomic_write_readers_see_old_or_new(tmp_path):
    target = tmp_path / "roots.pem"
    target.write_bytes(b"old content")
    with open(target, "rb") as reader:
        _fs.atomic_write(str(target), b"new content", 0o644, 0, 0)
        assert reader.read() == b"old content"  # the old inode, whole
    assert target.read_bytes() == b"new content"


def test_atomic_write_refuses_symlink_target(tmp_path):
    real = tmp_path / "real.key"
    real.write_bytes(b"do not touch")
    link = tmp_path / "server.key"
    link.symlink_to(real)
    with pytest.raises(TrustzoneError) as info:
        _fs.atomic_write(str(link), b"evil", 0o600, 0, 0)
    assert "symbolic link" in str(info.value) and str(link) in str(info.value)
    assert real.read_bytes() == b"do not touch"
    assert link.is_symlink()
    assert entries(tmp_path) == ["real.key", "server.key"]


def test_atomic_write_refuses_dangling_symlink(tmp_path):
    link = tmp_path / "server.key"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(TrustzoneError, match="symbolic link"):
        _fs.atomic_write(str(link), b"x", 0o600, 0, 0)
    assert not (tmp_path / "nowhere").exists()


def test_atomic_write_refuses_symlinked_directory(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "zone").symlink_to(real)
    with pytest.raises(TrustzoneError) as info:
        _fs.atomic_write(str(tmp_path / "zone" / "server.crt"), b"x", 0o644, 0, 0)
    assert "symbolic link" in str(info.value)
    assert entries(real) == []


def test_atomic_write_refuses_symlinked_prev(tmp_path):
    target = tmp_path / "server.crt"
    target.write_bytes(b"current")
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    (tmp_path / "server.crt.prev").symlink_to(victim)
    with pytest.raises(TrustzoneError, match="symbolic link"):
        _fs.atomic_write(str(target), b"new", 0o644, 0, 0, keep_previous=True)
    assert target.read_bytes() == b"current"
    assert victim.read_bytes() == b"victim"
    assert entries(tmp_path) == ["server.crt", "server.crt.prev", "victim"]


def test_atomic_write_refuses_directory_target(tmp_path):
    (tmp_path / "server.crt").mkdir()
    with pytest.raises(TrustzoneError, match="not a regular file"):
        _fs.atomic_write(str(tmp_path / "server.crt"), b"x", 0o644, 0, 0)


def test_atomic_write_missing_directory(tmp_path):
    with pytest.raises(TrustzoneError) as info:
        _fs.atomic_write(str(tmp_path / "missing" / "x"), b"x", 0o644, 0, 0)
    assert "cannot write in" in str(info.value) and info.value.fix


@pytest.mark.parametrize("failing", ["replace", "write", "fsync", "fchown"])
def test_atomic_write_failure_leaves_no_temp_file(tmp_path, monkeypatch, failing):
    target = tmp_path / "server.crt"
    target.write_bytes(b"old")

    def boom(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_fs.os, failing, boom)
    with pytest.raises(TrustzoneError) as info:
        _fs.atomic_write(str(target), b"new", 0o644, 0, 0)
    monkeypatch.undo()
    assert "No space left on device" in str(info.value)
    assert str(target) in str(info.value)
    assert target.read_bytes() == b"old"
    assert entries(tmp_path) == ["server.crt"]


def test_atomic_write_failure_with_keep_previous(tmp_path, monkeypatch):
    target = tmp_path / "server.crt"
    target.write_bytes(b"old")

    def boom(*_args, **_kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    real_replace = os.replace

    def replace(src, dst, **kwargs):
        if os.path.basename(str(dst)) == target.name:
            boom()
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(_fs.os, "replace", replace)
    with pytest.raises(TrustzoneError):
        _fs.atomic_write(str(target), b"new", 0o644, 0, 0, keep_previous=True)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert not [n for n in entries(tmp_path) if n.endswith(".tmp") or n.endswith(".new")]


# --------------------------------------------------------------------------- atomic_rename

def test_atomic_rename_keeps_previous(tmp_path):
    (tmp_path / "server.key.next").write_bytes(b"new key")
    (tmp_path / "server.key").write_bytes(b"old key")
    _fs.atomic_rename(str(tmp_path / "server.key.next"), str(tmp_path / "server.key"),
                      keep_previous=True)
    assert (tmp_path / "server.key").read_bytes() == b"new key"
    assert (tmp_path / "server.key.prev").read_bytes() == b"old key"
    assert entries(tmp_path) == ["server.key", "server.key.prev"]


def test_atomic_rename_without_previous(tmp_path):
    (tmp_path / "a").write_bytes(b"a")
    _fs.atomic_rename(str(tmp_path / "a"), str(tmp_path / "b"), keep_previous=True)
    assert entries(tmp_path) == ["b"]


@pytest.mark.parametrize("which", ["src", "dst"])
def test_atomic_rename_refuses_symlinks(tmp_path, which):
    real = tmp_path / "real"
    real.write_bytes(b"real")
    src, dst = tmp_path / "src", tmp_path / "dst"
    if which == "src":
        src.symlink_to(real)
    else:
        src.write_bytes(b"src")
        dst.symlink_to(real)
    with pytest.raises(TrustzoneError, match="symbolic link"):
        _fs.atomic_rename(str(src), str(dst))
    assert real.read_bytes() == b"real"


def test_atomic_rename_missing_source(tmp_path):
    with pytest.raises(TrustzoneError, match="cannot move"):
        _fs.atomic_rename(str(tmp_path / "nope"), str(tmp_path / "dst"))


# --------------------------------------------------------------------------- read_file

def test_read_file(tmp_path):
    (tmp_path / "a").write_bytes(b"\x00data\xff")
    assert _fs.read_file(str(tmp_path / "a")) == b"\x00data\xff"
    (tmp_path / "empty").write_bytes(b"")
    assert _fs.read_file(str(tmp_path / "empty")) == b""


def test_read_file_missing_is_none(tmp_path):
    assert _fs.read_file(str(tmp_path / "missing")) is None


def test_read_file_refuses_symlinks(tmp_path):
    (tmp_path / "real").write_bytes(b"secret")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name in ("link", "dangling"):
        with pytest.raises(TrustzoneError) as info:
            _fs.read_file(str(tmp_path / name))
        assert "symbolic link" in str(info.value)
        assert str(tmp_path / name) in str(info.value)


def test_read_file_refuses_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(TrustzoneError, match="not a regular file"):
        _fs.read_file(str(tmp_path / "d"))


def test_read_file_refuses_character_device():
    with pytest.raises(TrustzoneError, match="not a regular file"):
        _fs.read_file("/dev/null")


def test_read_file_refuses_fifo_without_blocking(tmp_path):
    fifo = str(tmp_path / "server.crt")
    os.mkfifo(fifo)
    outcome = {}

    def read():
        try:
            outcome["data"] = _fs.read_file(fifo)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            outcome["error"] = exc

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(1.0)
    blocked = thread.is_alive()
    if blocked:  # release the reader so no thread is left hanging
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
    assert not blocked, "read_file blocked on a FIFO"
    assert isinstance(outcome.get("error"), TrustzoneError)


def test_read_file_size_limit(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 101)
    (tmp_path / "ok").write_bytes(b"x" * 100)
    assert _fs.read_file(str(tmp_path / "ok"), max_bytes=100) == b"x" * 100
    with pytest.raises(TrustzoneError, match="larger than 100 bytes"):
        _fs.read_file(str(tmp_path / "big"), max_bytes=100)


def test_read_file_other_errors(tmp_path, monkeypatch):
    def denied(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(_fs.os, "open", denied)
    with pytest.raises(TrustzoneError) as info:
        _fs.read_file(str(tmp_path / "x"))
    assert "cannot read (Permission denied)" in str(info.value)


# --------------------------------------------------------------------------- file_state etc.

def test_file_state(tmp_path):
    assert _fs.file_state(str(tmp_path / "missing")) == {"exists": False}
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.chmod(f, 0o640)
    os.chown(f, UID, GID)
    assert _fs.file_state(str(f)) == {"exists": True, "mode": 0o640, "uid": UID, "gid": GID}
    (tmp_path / "l").symlink_to(f)
    with pytest.raises(TrustzoneError, match="symbolic link"):
        _fs.file_state(str(tmp_path / "l"))


def test_remove(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    assert _fs.remove(str(f)) is True
    assert not f.exists()
    assert _fs.remove(str(f)) is False


def test_remove_refuses_symlink(tmp_path):
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(TrustzoneError, match="symbolic link"):
        _fs.remove(str(tmp_path / "link"))
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real").exists()


def test_remove_directory_is_an_error(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(TrustzoneError, match="cannot remove"):
        _fs.remove(str(tmp_path / "d"))


def test_list_dir(tmp_path):
    for name in ("trustzone-prod-b.crt", "trustzone-prod-a.crt", "trustzone-lab-a.crt", "x"):
        (tmp_path / name).write_bytes(b"")
    assert _fs.list_dir(str(tmp_path), "trustzone-prod-") == [
        "trustzone-prod-a.crt", "trustzone-prod-b.crt"]
    assert len(_fs.list_dir(str(tmp_path))) == 4
    assert _fs.list_dir(str(tmp_path / "missing"), "x") == []


# --------------------------------------------------------------------------- ensure_dir

def test_ensure_dir_check_mode_does_not_create(tmp_path):
    target = tmp_path / "zone"
    assert _fs.ensure_dir(str(target), 0o750, UID, GID, check_mode=True) is True
    assert not target.exists()
    deep = tmp_path / "a" / "b"
    assert _fs.ensure_dir(str(deep), 0o750, 0, 0, check_mode=True) is True
    assert entries(tmp_path) == []


def test_ensure_dir_creates_with_mode_and_owner(tmp_path):
    target = tmp_path / "zone"
    assert _fs.ensure_dir(str(target), 0o750, UID, GID) is True
    st = os.lstat(target)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert (st.st_uid, st.st_gid) == (UID, GID)
    assert _fs.ensure_dir(str(target), 0o750, UID, GID) is False  # idempotent


def test_ensure_dir_fixes_mode_and_owner(tmp_path):
    target = tmp_path / "zone"
    target.mkdir(mode=0o777)
    os.chmod(target, 0o777)
    assert _fs.ensure_dir(str(target), 0o700, UID, GID, check_mode=True) is True
    assert mode_of(target) == 0o777  # check mode changed nothing
    assert _fs.ensure_dir(str(target), 0o700, UID, GID) is True
    assert mode_of(target) == 0o700 and os.lstat(target).st_uid == UID
    assert _fs.ensure_dir(str(target), 0o700, UID, GID) is False


def test_ensure_dir_creates_missing_parent(tmp_path):
    target = tmp_path / "etc" / "trustzone"
    assert _fs.ensure_dir(str(target), 0o755, 0, 0) is True
    assert mode_of(tmp_path / "etc") == 0o755
    assert target.is_dir()


def test_ensure_dir_refuses_file_and_symlink(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(TrustzoneError, match="not a directory"):
        _fs.ensure_dir(str(tmp_path / "file"), 0o755, 0, 0)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(TrustzoneError, match="symbolic link"):
        _fs.ensure_dir(str(tmp_path / "link"), 0o755, 0, 0)


def test_ensure_dir_mkdir_failure(tmp_path, monkeypatch):
    def boom(*_args, **_kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(_fs.os, "mkdir", boom)
    with pytest.raises(TrustzoneError, match="cannot create directory"):
        _fs.ensure_dir(str(tmp_path / "zone"), 0o755, 0, 0)


# --------------------------------------------------------------------------- resolve_owner

@pytest.mark.parametrize("owner, group, ids", [
    ("root", "root", (0, 0)), ("0", "0", (0, 0)), (1234, "2345", (1234, 2345)),
    ("root", 5, (0, 5)),
])
def test_resolve_owner(owner, group, ids):
    assert _fs.resolve_owner(owner, group) == ids


def test_resolve_owner_unknown_names():
    with pytest.raises(TrustzoneError) as info:
        _fs.resolve_owner("no-such-user-tz", "root")
    assert "user 'no-such-user-tz' does not exist" in str(info.value) and info.value.fix
    with pytest.raises(TrustzoneError) as info:
        _fs.resolve_owner("root", "no-such-group-tz")
    assert "group 'no-such-group-tz' does not exist" in str(info.value) and info.value.fix
