"""The file layer under attack: between every pair of steps of every operation, something
that owns the directory plants a symlink, replaces a file or swaps the directory itself.
Whatever happens, a file outside the directory (``secret``, mode 0600) keeps its bytes, mode
and owner, and the target holds the old or the new bytes, never a link's target."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

OLD, NEW = b"old certificate\n", b"new certificate\n"


def _record(op, tmp_path):
    steps = []
    _fs._STEP_HOOK = lambda name, _path: steps.append(name)
    try:
        op(tmp_path)
    finally:
        _fs._STEP_HOOK = None
    return steps


def _setup(tmp_path):
    zone = tmp_path / "zone"
    zone.mkdir(exist_ok=True)
    (zone / "server.crt").write_bytes(OLD)
    os.chmod(zone / "server.crt", 0o640)
    secret = tmp_path / "secret"
    secret.write_bytes(b"the shadow file\n")
    os.chmod(secret, 0o600)
    other = tmp_path / "elsewhere"
    other.mkdir(exist_ok=True)
    (other / "server.crt").write_bytes(b"someone else's file\n")
    os.chmod(other / "server.crt", 0o600)
    return zone, secret, other


def op_write(tmp_path):
    _fs.atomic_write(str(tmp_path / "zone" / "server.crt"), NEW, 0o644, 0, 0)


def op_write_prev(tmp_path):
    _fs.atomic_write(str(tmp_path / "zone" / "server.crt"), NEW, 0o644, 0, 0,
                     keep_previous=True)


def op_meta(tmp_path):
    _fs.set_meta(str(tmp_path / "zone" / "server.crt"), 0o644, 0, 1)


def op_rename(tmp_path):
    (tmp_path / "zone" / "server.crt.next").write_bytes(NEW)
    _fs.atomic_rename(str(tmp_path / "zone" / "server.crt.next"),
                      str(tmp_path / "zone" / "server.crt"), keep_previous=True)


def op_ensure_dir(tmp_path):
    _fs.ensure_dir(str(tmp_path / "zone" / "sub"), 0o755, 0, 1)


def _link_target(tmp_path, secret, other):
    target = tmp_path / "zone" / "server.crt"
    if target.exists() or target.is_symlink():
        target.unlink()
    target.symlink_to(secret)


def _replace_target(tmp_path, secret, other):
    target = tmp_path / "zone" / "server.crt"
    swap = tmp_path / "zone" / "swap"
    swap.write_bytes(b"attacker's file\n")
    os.replace(swap, target)


def _swap_dir(tmp_path, secret, other):
    zone = tmp_path / "zone"
    os.rename(zone, tmp_path / "zone.moved")
    zone.symlink_to(other)


def _link_temp(tmp_path, secret, other):
    zone = tmp_path / "zone"
    for name in os.listdir(zone):
        if name.endswith(".tmp") or name.endswith(".next"):
            os.rename(zone / name, tmp_path / ("stolen-" + name))
            (zone / name).symlink_to(secret)


def _link_prev(tmp_path, secret, other):
    prev = tmp_path / "zone" / "server.crt.prev"
    if prev.exists() or prev.is_symlink():
        prev.unlink()
    prev.symlink_to(secret)


def _link_subdir(tmp_path, secret, other):
    sub = tmp_path / "zone" / "sub"
    if sub.is_dir() and not sub.is_symlink():
        os.rename(sub, tmp_path / "sub.moved")
    elif sub.exists() or sub.is_symlink():
        sub.unlink()
    sub.symlink_to(other)


ATTACKS = {"link-target": _link_target, "replace-target": _replace_target,
           "swap-dir": _swap_dir, "link-temp": _link_temp, "link-prev": _link_prev,
           "link-subdir": _link_subdir}
OPS = {"atomic_write": op_write, "atomic_write+prev": op_write_prev, "set_meta": op_meta,
       "atomic_rename": op_rename, "ensure_dir": op_ensure_dir}


def _fingerprint(path):
    st = os.lstat(path)
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_ino


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("op", sorted(OPS))
def test_swap_between_every_step(tmp_path, op, attack):
    run = OPS[op]
    probe = tmp_path / "probe"
    probe.mkdir()
    _setup(probe)
    steps = _record(run, probe)
    assert steps, "the operation passes no step: nothing to inject between"
    for index, step in enumerate(["before"] + steps):
        case = tmp_path / ("case%d" % index)
        case.mkdir()
        zone, secret, other = _setup(case)
        outside = {p: _fingerprint(p) for p in (secret, other / "server.crt")}

        def hook(name, _path, step=step, case=case):
            if name == step:
                ATTACKS[attack](case, secret, other)

        if step == "before":
            ATTACKS[attack](case, secret, other)
        _fs._STEP_HOOK = hook
        try:
            run(case)
        except TrustzoneError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), exc
        finally:
            _fs._STEP_HOOK = None
        for path, before in outside.items():
            assert _fingerprint(path) == before, (op, attack, step, path)
        # Whatever now sits at the target name: the old bytes, the new bytes, the attacker's
        # own file, or the attacker's link; never a link whose target was written.
        for top in (case / "zone", case / "zone.moved"):
            target = top / "server.crt"
            if top.is_symlink() or target.is_symlink() or not target.exists():
                continue
            assert target.read_bytes() in (OLD, NEW, b"attacker's file\n"), (op, attack, step)
        for top in (case / "zone", case / "zone.moved"):
            if top.is_dir() and not top.is_symlink():
                assert not [n for n in os.listdir(top) if n.endswith(".tmp")
                            and not (top / n).is_symlink()], (op, attack, step)


def test_steps_cover_every_write_phase(tmp_path):
    _setup(tmp_path)
    assert _record(op_write_prev, tmp_path) == ["write:checked", "write:temp", "write:previous",
                                                "write:renamed"]
    _setup(tmp_path)
    assert _record(op_meta, tmp_path) == ["meta:checked", "meta:opened", "meta:owned"]


def test_link_planted_between_chown_and_chmod_is_not_followed(tmp_path, monkeypatch):
    """The reproduced defect: a 0600 file outside became 0644 through chmod(path)."""
    zone, secret, _other = _setup(tmp_path)
    real_fchown, real_chown = os.fchown, os.chown

    def swap():
        (zone / "server.crt").unlink()
        (zone / "server.crt").symlink_to(secret)

    def fchown(*args, **kwargs):
        swap()
        return real_fchown(*args, **kwargs)

    def chown(*args, **kwargs):
        swap()
        return real_chown(*args, **kwargs)

    monkeypatch.setattr(_fs.os, "fchown", fchown)
    monkeypatch.setattr(_fs.os, "chown", chown)
    _fs.set_meta(str(zone / "server.crt"), 0o644, 0, 1)
    monkeypatch.undo()
    assert stat.S_IMODE(os.lstat(secret).st_mode) == 0o600
    assert os.lstat(secret).st_gid == 0


def test_set_meta_refuses_link_and_reports_missing(tmp_path):
    zone, secret, _other = _setup(tmp_path)
    (zone / "link").symlink_to(secret)
    with pytest.raises(TrustzoneError, match="symbolic link"):
        _fs.set_meta(str(zone / "link"), 0o644, 0, 0)
    assert _fs.set_meta(str(zone / "absent"), 0o644, 0, 0) is False
    with pytest.raises(TrustzoneError, match="symbolic link"):
        _fs.atomic_write(str(tmp_path / "zlink" / "x"), b"x", 0o644, 0, 0) if \
            (tmp_path / "zlink").symlink_to(zone) is None else None


def test_write_detects_a_swapped_temp_file(tmp_path):
    zone, secret, other = _setup(tmp_path)
    _fs._STEP_HOOK = lambda name, _p: _link_temp(tmp_path, secret, other) \
        if name == "write:temp" else None
    try:
        with pytest.raises(TrustzoneError, match="replaced"):
            _fs.atomic_write(str(zone / "server.crt"), NEW, 0o644, 0, 0)
    finally:
        _fs._STEP_HOOK = None
    assert (zone / "server.crt").read_bytes() == OLD
    assert (secret.read_bytes(), stat.S_IMODE(secret.stat().st_mode)) == \
        (b"the shadow file\n", 0o600)


def test_check_writable(tmp_path):
    zone, secret, _other = _setup(tmp_path)
    _fs.check_writable(str(zone / "server.crt"))
    _fs.check_writable(str(zone / "absent.crt"))
    (zone / "key.pem").symlink_to(secret)
    with pytest.raises(TrustzoneError, match="symbolic link"):
        _fs.check_writable(str(zone / "key.pem"))
    (zone / "dir.pem").mkdir()
    with pytest.raises(TrustzoneError, match="not a regular file"):
        _fs.check_writable(str(zone / "dir.pem"))
    with pytest.raises(TrustzoneError, match="does not exist"):
        _fs.check_writable(str(zone / "missing" / "x.pem"))
