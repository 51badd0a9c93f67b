"""The ca_backup, ca_restore and ca_passphrase modules' whole logic (their ``run``), over
real CA directories made by zone_root, with a stand-in for AnsibleModule.

Needs Ansible (skipped without it) and cryptography.
"""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

pytest.importorskip("ansible.module_utils.basic")

from ansible_collections.trustzone.pki.plugins.module_utils import _archive as A  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils import _catree as T  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils._errors import (  # noqa: E402
    TrustzoneError)
from ansible_collections.trustzone.pki.plugins.modules import ca_backup  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import ca_passphrase  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import ca_restore  # noqa: E402
from ansible_collections.trustzone.pki.plugins.modules import zone_root  # noqa: E402
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (  # noqa: E402
    module_runner)

CA_PASS = "ca passphrase for units"
BACKUP_PASS = "backup passphrase for units"
UID, GID = str(os.getuid()), str(os.getgid())


@pytest.fixture
def call():
    """``call(module, check_mode=False, **params)`` -> run()'s result, module defaults applied."""
    return module_runner(diff=True)


@pytest.fixture
def fast_kdf(monkeypatch):
    monkeypatch.setattr(A, "DEFAULT_KDF", {"n": 2 ** 4, "r": 8, "p": 1})


@pytest.fixture
def ca(tmp_path, call, fast_kdf):
    """A CA directory made by zone_root, in a root rotation (phase trust) with an
    intermediate, and rows in its ledger."""
    path = str(tmp_path / "ca" / "prod")
    os.makedirs(os.path.dirname(path))
    common = dict(zone="prod", dir=path, passphrase=CA_PASS, owner=UID, group=GID,
                  key_curve="secp256r1", intermediate=True)
    call(zone_root, **common)
    call(zone_root, rotate="trust", rotate_force=True, **common)
    db = sqlite3.connect(os.path.join(path, "ledger.db"))  # zone_root made it
    db.execute("CREATE TABLE unit_rows (serial TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO unit_rows VALUES (?)", [("%x" % i,) for i in range(20)])
    db.commit()
    db.close()
    return path


def backup(call, ca, tmp_path, **params):
    dest = str(tmp_path / "archive.tzbackup")
    return call(ca_backup, zone="prod", dir=ca, dest=dest, passphrase=BACKUP_PASS,
                ca_passphrase=CA_PASS, collection_version="9.9.9", **params), dest


def restore(call, src, target, **params):
    return call(ca_restore, zone="prod", dir=target, src=src, passphrase=BACKUP_PASS,
                ca_passphrase=CA_PASS, owner=UID, group=GID, **params)


def test_backup_then_restore_reproduces_the_directory(call, ca, tmp_path):
    result, dest = backup(call, ca, tmp_path)
    assert result["changed"] and os.path.exists(dest)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    manifest = result["manifest"]
    assert manifest["zone"] == "prod" and manifest["collection_version"] == "9.9.9"
    assert manifest["roots"]["current"] and manifest["roots"]["next"]
    assert manifest["roots"]["intermediate"] and manifest["roots"]["next_intermediate"]
    pointer = open(os.path.join(ca, "current")).read().strip() + "/"
    paths = {f["path"] for f in manifest["files"]}
    assert {"current", "ledger.db"} <= paths
    paths = {p[len(pointer):] for p in paths if p.startswith(pointer)} | {"ledger.db"}
    assert {"root.key", "root.crt", "next.key", "next.crt", "intermediate.key",
            "next-intermediate.key", "rotation.json", "ledger.db"} <= paths
    assert "PRIVATE KEY" not in repr(result)

    target = str(tmp_path / "new" / "prod")
    done = restore(call, dest, target)
    assert (done["changed"], done["action"], done["replaced"]) == (True, "create", None)
    assert T.read_tree(target, snapshot_sqlite=True)[0] == T.read_tree(
        ca, snapshot_sqlite=True)[0]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    rows = sqlite3.connect(os.path.join(target, "ledger.db")).execute(
        "select count(*) from unit_rows").fetchone()[0]
    assert rows == 20
    # the restored CA works: zone_root reads it, in the same rotation phase, unchanged
    again = call(zone_root, zone="prod", dir=target, passphrase=CA_PASS, owner=UID, group=GID,
                 key_curve="secp256r1", intermediate=True)
    assert again["changed"] is False and again["phase"] == "trust"
    assert again["root"]["fingerprint"] == manifest["roots"]["current"]
    # and restoring again changes nothing
    assert restore(call, dest, target)["action"] == "none"


def test_restore_check_mode_writes_nothing(call, ca, tmp_path):
    _result, dest = backup(call, ca, tmp_path)
    target = str(tmp_path / "new" / "prod")
    done = restore(call, dest, target, check_mode=True)
    assert done["changed"] and done["action"] == "create"
    assert "root.key 0600" in done["diff"]["after"]
    assert not os.path.exists(target)


def test_backup_check_mode_writes_nothing(call, ca, tmp_path):
    result, dest = backup(call, ca, tmp_path, check_mode=True)
    assert result["sha256"] and not os.path.exists(dest)


def test_backup_refuses_keys_the_ca_passphrase_cannot_open(call, ca, tmp_path):
    with pytest.raises(TrustzoneError, match="key in the directory does not open"):
        call(ca_backup, zone="prod", dir=ca, dest=str(tmp_path / "a"), passphrase=BACKUP_PASS,
             ca_passphrase="another passphrase")


def test_backup_refuses_a_symlink_in_the_ca_directory(call, ca, tmp_path):
    os.symlink("/etc/hostname", os.path.join(ca, "retired.crt"))
    with pytest.raises(TrustzoneError, match="symbolic link"):
        backup(call, ca, tmp_path)


def test_restore_over_a_different_root_refuses_then_forced_keeps_it(call, ca, tmp_path):
    _result, dest = backup(call, ca, tmp_path)
    other = str(tmp_path / "other" / "prod")
    os.makedirs(os.path.dirname(other))
    call(zone_root, zone="prod", dir=other, passphrase=CA_PASS, owner=UID, group=GID,
         key_curve="secp256r1")
    before = T.read_tree(other)[0]
    with pytest.raises(TrustzoneError, match="holds a different root"):
        restore(call, dest, other)
    assert T.read_tree(other)[0] == before
    done = restore(call, dest, other, force=True)
    assert done["action"] == "replace" and done["replaced"].startswith(other + ".replaced-")
    assert T.read_tree(done["replaced"])[0] == before


def test_restore_refuses_a_newer_ledger_of_the_same_root(call, ca, tmp_path):
    _result, dest = backup(call, ca, tmp_path)
    db = sqlite3.connect(os.path.join(ca, "ledger.db"))
    db.execute("INSERT INTO unit_rows VALUES ('ffff')")
    db.commit()
    db.close()
    with pytest.raises(TrustzoneError, match="same root but differs .*ledger.db"):
        restore(call, dest, ca)


def test_restore_of_another_zone_is_refused(call, ca, tmp_path):
    _result, dest = backup(call, ca, tmp_path)
    with pytest.raises(TrustzoneError, match="backup of zone 'prod', not of zone 'lab'"):
        call(ca_restore, zone="lab", dir=str(tmp_path / "lab"), src=dest,
             passphrase=BACKUP_PASS, owner=UID, group=GID)


@pytest.mark.parametrize("damage, error", [
    (lambda d: d[:-1], A.ArchiveTruncated),
    (lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:], A.ArchiveDamaged),
])
def test_restore_refuses_a_damaged_archive_naming_it(call, ca, tmp_path, damage, error):
    _result, dest = backup(call, ca, tmp_path)
    with open(dest, "rb") as fh:
        data = fh.read()
    with open(dest, "wb") as fh:
        fh.write(damage(data))
    with pytest.raises(error, match="refusing to restore") as info:
        call(ca_restore, zone="prod", dir=str(tmp_path / "new"), src=dest,
             src_name="backups/prod.tzbackup", passphrase=BACKUP_PASS, owner=UID, group=GID)
    assert str(info.value).startswith("backups/prod.tzbackup: ")
    assert not os.path.exists(str(tmp_path / "new"))


def test_restore_with_the_wrong_ca_passphrase_refuses_before_writing(call, ca, tmp_path):
    _result, dest = backup(call, ca, tmp_path)
    with pytest.raises(TrustzoneError, match="before a passphrase change"):
        call(ca_restore, zone="prod", dir=str(tmp_path / "new"), src=dest,
             passphrase=BACKUP_PASS, ca_passphrase="a newer ca passphrase", owner=UID,
             group=GID)
    assert not os.path.exists(str(tmp_path / "new"))


def test_change_passphrase_module(call, ca):
    new = "the new ca passphrase"
    keys = sorted(p for p in CaDir(ca).load().files if p.endswith(".key"))
    assert "root.key" in keys and len(keys) >= 4
    checked = call(ca_passphrase, check_mode=True, zone="prod", dir=ca, passphrase=CA_PASS,
                   new_passphrase=new)
    assert checked["changed"] and checked["keys"] == keys
    C.load_private_key(CaDir(ca).load().files["root.key"], CA_PASS)  # untouched
    with pytest.raises(TrustzoneError, match="nothing was changed"):
        call(ca_passphrase, zone="prod", dir=ca, passphrase="wrong passphrase!", new_passphrase=new)
    done = call(ca_passphrase, zone="prod", dir=ca, passphrase=CA_PASS, new_passphrase=new)
    assert done["changed"] and done["keys"] == keys
    again = call(ca_passphrase, zone="prod", dir=ca, passphrase=CA_PASS, new_passphrase=new)
    assert not again["changed"] and again["already"] == keys
    result = call(zone_root, zone="prod", dir=ca, passphrase=new, owner=UID, group=GID,
                  key_curve="secp256r1", intermediate=True)
    assert result["changed"] is False
