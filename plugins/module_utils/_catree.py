# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The CA directory as a whole, for backup, restore and passphrase changes.

``_ca.CaDir`` knows what each file of the CA directory means; this module only knows that it
is a tree of regular files: read every one of them (refusing symlinks and special files),
write a whole tree so that it appears at once, and replace a set of files together.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
import tempfile

from ansible_collections.trustzone.pki.plugins.module_utils import _archive as A
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

MAX_FILE = 512 * 1024 * 1024
# leftovers of an interrupted _fs.atomic_write (".<name>.<random>.tmp") or of a CA generation
# write (gen/.<NNNNNN>.tmp/): never worth keeping
TEMP_RE = re.compile(r"^\..+\.tmp$")
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def read_tree(path, snapshot_sqlite=False):
    """``(files, skipped, warnings)``: ``files`` is {relative path: (mode, bytes)} of every
    regular file under ``path``. A symlink or special file anywhere is refused.

    With ``snapshot_sqlite`` every SQLite database is read through SQLite's online backup,
    so a ledger being written meanwhile is copied consistently, and its -wal/-shm/-journal
    files are left out (the snapshot already holds their contents)."""
    st = _fs.refuse_symlink(path)
    if st is None:
        raise TrustzoneError("the CA directory does not exist", path,
                             fix="check trustzone_ca_dir, or run playbooks/site.yml first")
    if not stat.S_ISDIR(st.st_mode):
        raise TrustzoneError("is not a directory", path, fix="check trustzone_ca_dir")
    files, skipped, warnings = {}, [], []

    def walk(rel):
        here = os.path.join(path, rel) if rel else path
        for name in sorted(os.listdir(here)):
            relp = name if not rel else rel + "/" + name
            full = os.path.join(path, relp)
            est = os.lstat(full)
            if stat.S_ISLNK(est.st_mode):
                raise TrustzoneError("is a symbolic link; the CA directory must hold only "
                                     "regular files", full,
                                     fix="replace the link with the file it points to")
            if stat.S_ISDIR(est.st_mode):
                if TEMP_RE.match(name):  # a generation whose write was interrupted (_ca)
                    skipped.append(relp + "/")
                    continue
                walk(relp)
                continue
            if not stat.S_ISREG(est.st_mode):
                raise TrustzoneError("is not a regular file", full, fix="remove it")
            if TEMP_RE.match(name):
                skipped.append(relp)
                continue
            try:
                A.check_relpath(relp)
            except TrustzoneError:
                raise TrustzoneError("has a name a backup cannot carry", full,
                                     fix="rename it (letters, digits and ._-+=@%:, only)"
                                     ) from None
            data = _fs.read_file(full, max_bytes=MAX_FILE)
            if data is None:  # removed meanwhile
                continue
            files[relp] = (stat.S_IMODE(est.st_mode) & 0o777, data)

    walk("")
    if snapshot_sqlite:
        for relp in sorted(files):
            if relp not in files:  # a journal of a database snapshotted just before
                continue
            mode, data = files[relp]
            if not data.startswith(A.SQLITE_MAGIC):
                continue
            try:
                files[relp] = (mode, sqlite_snapshot(os.path.join(path, relp)))
            except Exception as exc:  # sqlite3.Error or no sqlite3 module
                warnings.append("%s: copied as is, SQLite could not snapshot it (%s)"
                                % (relp, exc))
                continue
            for suffix in SQLITE_COMPANIONS:
                if files.pop(relp + suffix, None) is not None:
                    skipped.append(relp + suffix)
    return files, sorted(skipped), warnings


def sqlite_snapshot(path):
    """A consistent copy of a SQLite database, through SQLite's online backup API."""
    import sqlite3

    tmp = tempfile.mkdtemp(prefix="trustzone-backup-")  # 0700
    try:
        copy = os.path.join(tmp, "snapshot.db")
        src = sqlite3.connect(path, timeout=30)
        try:
            dst = sqlite3.connect(copy)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        with open(copy, "rb") as fh:
            return fh.read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_tree(target, files, uid, gid, replace=False, now=None):
    """Make ``target`` hold exactly ``files`` ({relative path: (mode, bytes)}).

    The tree is written into a fresh directory beside ``target`` (every file atomically, with
    its mode and owner) and renamed into place in one step, so an interrupted restore leaves
    no half-written CA directory. ``target`` must be missing or empty, unless ``replace``:
    then it is moved aside to ``<target>.replaced-<UTC time>`` and kept. Returns that path
    (or None)."""
    target = target.rstrip("/") or "/"
    parent = os.path.dirname(target) or "."
    _fs.refuse_symlink(target)
    if not os.path.isdir(parent):
        _fs.ensure_dir(parent, 0o755, 0, 0)
    _fs.refuse_symlink(parent)
    staging = tempfile.mkdtemp(prefix=".%s.restore-" % os.path.basename(target), dir=parent)
    try:
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
        try:  # mkdtemp made it 0700; owner and mode through its descriptor
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        for relp in sorted(files):
            mode, data = files[relp]
            parts = A.check_relpath(relp).split("/")
            here = staging
            for part in parts[:-1]:
                here = os.path.join(here, part)
                _fs.ensure_dir(here, 0o700, uid, gid)
            _fs.atomic_write(os.path.join(here, parts[-1]), data, mode & 0o777, uid, gid)
        _fsync_dir(staging)
        replaced = None
        if os.path.lexists(target):
            if replace:
                stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime(
                    "%Y%m%dT%H%M%SZ")
                replaced = "%s.replaced-%s" % (target, stamp)
                if os.path.lexists(replaced):
                    raise TrustzoneError("exists already", replaced,
                                         fix="move it away and run the restore again")
                os.rename(target, replaced)
            elif os.listdir(target):
                raise TrustzoneError("is not empty", target,
                                     fix="restore onto an empty CA directory")
        try:
            os.rename(staging, target)  # over an empty directory too
        except OSError as exc:
            if replaced is not None:
                os.rename(replaced, target)
            raise TrustzoneError("cannot move the restored directory into place (%s)"
                                 % exc.strerror, target) from exc
        staging = None
        _fsync_dir(parent)
        return replaced
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def replace_files(updates):
    """Replace several files together: ``{path: bytes}``, each keeping its mode and owner.

    Every new version is written and flushed to a temporary file beside its target first; only
    when all of them are on disk are they renamed over the targets, one after another. A
    failure before the renames changes nothing."""
    staged = []
    try:
        for path in sorted(updates):
            st = _fs.refuse_symlink(path)
            if st is None or not stat.S_ISREG(st.st_mode):
                raise TrustzoneError("is no longer a regular file", path,
                                     fix="run the task again")
            directory = os.path.dirname(path) or "."
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path),
                                       suffix=".tmp")
            staged.append((tmp, path))
            try:
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                os.fchown(fd, st.st_uid, st.st_gid)
                view = memoryview(bytes(updates[path]))
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        for tmp, path in staged:
            os.replace(tmp, path)
        for directory in sorted({os.path.dirname(p) or "." for _t, p in staged}):
            _fsync_dir(directory)
        staged = []
    except OSError as exc:
        raise TrustzoneError("cannot write (%s)" % exc.strerror, exc.filename,
                             fix="check free space and permissions") from exc
    finally:
        for tmp, _path in staged:
            try:
                os.unlink(tmp)
            except OSError:
                pass
