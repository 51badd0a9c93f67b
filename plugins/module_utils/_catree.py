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

import contextlib
import ctypes
import datetime
import errno
import os
import re
import secrets
import shutil
import stat
import tempfile

from ansible_collections.trustzone.pki.plugins.module_utils import _archive as A
from ansible_collections.trustzone.pki.plugins.module_utils import _ca
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


class Fs(_ca.Fs):
    """Every filesystem step of ``write_tree`` and ``recover``, one call each (tests wrap it
    to crash at any step). ``_ca.Fs`` plus an atomic swap of two directories."""

    def write(self, path, data, mode, uid, gid):
        _fs.atomic_write(path, data, mode, uid, gid)

    def exchange(self, one, other):
        """Swap two names in ONE step (``renameat2(RENAME_EXCHANGE)``). Raises OSError with
        ENOSYS/EINVAL/ENOTSUP where the kernel, libc or filesystem cannot do it."""
        fn = _renameat2()
        if fn is None:
            raise OSError(errno.ENOSYS, "renameat2 is not available", one)
        if fn(_AT_FDCWD, os.fsencode(one), _AT_FDCWD, os.fsencode(other),
              _RENAME_EXCHANGE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), one)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_NO_EXCHANGE = (errno.ENOSYS, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP),
                errno.EOPNOTSUPP)


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


# Beside the target ``<parent>/<name>`` a restore uses two kinds of names (docs/backup.md):
#   .<name>.restore-<random>  the new tree being written; never anything else
#   .<name>.aside-<inode>     the complete new tree about to be swapped with the target, whose
#                             inode number is <inode>; after the swap the same name holds the
#                             old directory, recognised by that inode number
def _staging_re(name):
    return re.compile(r"^\.%s\.restore-[A-Za-z0-9_]+$" % re.escape(name))


def _aside_re(name):
    return re.compile(r"^\.%s\.aside-([0-9]+)$" % re.escape(name))


def _replaced_name(target, now):
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return "%s.replaced-%s" % (target, stamp)


@contextlib.contextmanager
def _parent_locked(parent):
    """One restore at a time beside one target (an flock on the parent directory itself:
    no lock file is left behind)."""
    with _fs.flocked(os.open(parent, os.O_RDONLY | os.O_DIRECTORY)):
        yield


def interrupted(target, now=None):
    """What an interrupted ``write_tree`` left beside ``target`` and what ``recover`` does with
    each: ``[(action, path, destination)]``, action ``"keep"`` (the directory a forced restore
    swapped out: renamed to ``<target>.replaced-<UTC time>``) or ``"remove"`` (a new tree that
    never became the target: the restore writes it again). Reads only."""
    target = target.rstrip("/") or "/"
    parent = os.path.dirname(target) or "."
    name = os.path.basename(target)
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    staging, aside = _staging_re(name), _aside_re(name)
    out = []
    for entry in names:
        full = os.path.join(parent, entry)
        if staging.match(entry):
            out.append(("remove", full, None))
            continue
        match = aside.match(entry)
        if match is None:
            continue
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode) and st.st_ino == int(match.group(1)):
            out.append(("keep", full, _replaced_name(target, now)))
        else:
            out.append(("remove", full, None))
    return out


def _remove_tree(fs, path):
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        fs.unlink(path)
        return
    for base, dirs, names in os.walk(path, topdown=False):
        for entry in names:
            fs.unlink(os.path.join(base, entry))
        for entry in dirs:
            full = os.path.join(base, entry)
            if os.path.islink(full):
                fs.unlink(full)
            else:
                fs.rmdir(full)
    fs.rmdir(path)


def _recover(target, now, fs):
    done = []
    for action, path, destination in interrupted(target, now):
        if action == "keep":
            if os.path.lexists(destination):
                raise TrustzoneError("exists already", destination,
                                     fix="move it away and run the restore again")
            fs.rename(path, destination)
        else:
            _remove_tree(fs, path)
        done.append((action, path, destination))
    if done:
        fs.fsync_dir(os.path.dirname(target.rstrip("/")) or ".")
    return done


def recover(target, now=None, fs=None):
    """Finish what an interrupted ``write_tree`` left beside ``target`` (see ``interrupted``);
    returns the same list. Never touches ``target`` itself."""
    target = target.rstrip("/") or "/"
    parent = os.path.dirname(target) or "."
    if not os.path.isdir(parent):
        return []
    with _parent_locked(parent):
        return _recover(target, now, fs or Fs())


def restored_marker(target):
    """``<parent>/.<name>.from-archive``: which archive ``target`` was restored from, and
    whether it learned from the fleet since (outside the CA directory, so that backups and
    comparisons never see it)."""
    target = target.rstrip("/") or "/"
    return os.path.join(os.path.dirname(target) or ".",
                        ".%s.from-archive" % os.path.basename(target))


PENDING = "learning-pending"


def _marker(target):
    data = _fs.read_file(restored_marker(target), max_bytes=4096)
    return data.decode("ascii", "replace").split() if data is not None else []


def restored_from(target):
    """The archive digest (``sha256:<hex>``) ``target`` was restored from, or None. Reads
    only."""
    words = _marker(target)
    return words[0] if words else None


def learning_pending(target):
    """Whether ``target`` was restored and has not learned from the fleet since
    (``ledger_learn``): until then its ledger knows only the archive, and CRLs signed from it
    would drop the revocations made after the backup. Reads only."""
    return PENDING in _marker(target)[1:]


def mark_restored(target, digest, uid, gid, pending=True, fs=None):
    """Note (atomically) that ``target`` now holds the archive ``digest`` (``sha256:<hex>``)
    names, and whether the learning from the fleet is still to come."""
    text = "%s%s\n" % (digest, " " + PENDING if pending else "")
    (fs or Fs()).write(restored_marker(target), text.encode("ascii"), 0o600, uid, gid)


def mark_learned(target, fs=None):
    """After ``ledger_learn`` merged the fleet into the ledger: the restore is complete. Keeps
    the note's owner. Returns whether it changed anything."""
    if not learning_pending(target):
        return False
    st = os.lstat(restored_marker(target))
    mark_restored(target, restored_from(target), st.st_uid, st.st_gid, pending=False, fs=fs)
    return True


def write_tree(target, files, uid, gid, replace=False, now=None, fs=None):
    """Make ``target`` hold exactly ``files`` ({relative path: (mode, bytes)}).

    The tree is written into a fresh directory beside ``target`` (every file atomically, with
    its mode and owner) and put in place in one step: renamed over a missing or empty
    ``target``, or - with ``replace`` - swapped with it (``renameat2(RENAME_EXCHANGE)``), the
    old directory then renamed to ``<target>.replaced-<UTC time>`` and kept. Whenever it
    stops, ``target`` is the old directory or the complete new one; what is left beside it is
    finished by ``recover`` (called first). Returns the replaced path (or None)."""
    fs = fs or Fs()
    target = target.rstrip("/") or "/"
    parent = os.path.dirname(target) or "."
    name = os.path.basename(target)
    _fs.refuse_symlink(target)
    if not os.path.isdir(parent):
        _fs.ensure_dir(parent, 0o755, 0, 0)
    _fs.refuse_symlink(parent)
    with _parent_locked(parent):
        _recover(target, now, fs)
        occupied = os.path.lexists(target) and (
            not os.path.isdir(target) or bool(os.listdir(target)))
        replaced = None
        if occupied:
            if not replace:
                raise TrustzoneError("is not empty", target,
                                     fix="restore onto an empty CA directory")
            replaced = _replaced_name(target, now)
            if os.path.lexists(replaced):
                raise TrustzoneError("exists already", replaced,
                                     fix="move it away and run the restore again")
        staging = os.path.join(parent, ".%s.restore-%s" % (name, secrets.token_hex(8)))
        try:
            fs.mkdir(staging, 0o700, uid, gid)
            made = []
            for relp in sorted(files):
                mode, data = files[relp]
                parts = A.check_relpath(relp).split("/")
                here = staging
                for part in parts[:-1]:
                    here = os.path.join(here, part)
                    if not os.path.isdir(here):
                        fs.mkdir(here, 0o700, uid, gid)
                        made.append(here)
                fs.write(os.path.join(here, parts[-1]), data, mode & 0o777, uid, gid)
            for sub in reversed(made):
                fs.fsync_dir(sub)
            fs.fsync_dir(staging)
            if not occupied:
                fs.rename(staging, target)  # over an empty directory too
                staging = None
                fs.fsync_dir(parent)
                return None
            aside = os.path.join(parent, ".%s.aside-%d" % (name, os.lstat(target).st_ino))
            fs.rename(staging, aside)
            staging = aside
            fs.fsync_dir(parent)
            try:
                fs.exchange(aside, target)  # the one step that puts the new tree in place
            except OSError as exc:
                if exc.errno not in _NO_EXCHANGE:
                    raise
                # no atomic swap here: two renames; a crash between them leaves no target
                # (the old one is kept, the re-run writes the new one)
                fs.rename(target, replaced)
                try:
                    fs.rename(aside, target)
                except OSError:
                    os.rename(replaced, target)  # put the old one back
                    raise
                staging = None
                fs.fsync_dir(parent)
                return replaced
            staging = None  # ``aside`` holds the old directory now
            fs.rename(aside, replaced)
            fs.fsync_dir(parent)
            return replaced
        except OSError as exc:
            raise TrustzoneError("cannot write the restored directory or move it into place "
                                 "(%s)" % exc.strerror, exc.filename or target,
                                 fix="check free space and permissions, then run the "
                                     "restore again") from exc
        finally:
            if staging is not None and os.path.lexists(staging):
                try:
                    _remove_tree(Fs(), staging)
                except OSError:
                    pass


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
            _fs.fsync_dir(directory)
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
