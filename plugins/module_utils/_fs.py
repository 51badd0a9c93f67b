# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The edge where decisions meet the disk: atomic, symlink-refusing file operations.

Every write goes to a temporary file in the target directory, gets its owner and mode,
is flushed, and is renamed over the target, so readers see the old file or the new one,
never half of either. A symlink at the target (or as the directory) is refused, never
followed or replaced. The previous version can be kept as ``<name>.prev``.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
import tempfile

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

PREVIOUS_SUFFIX = ".prev"


def resolve_owner(owner, group):
    """``(uid, gid)`` for names or numbers; a clear error for unknown ones."""
    try:
        uid = int(owner) if str(owner).isdigit() else pwd.getpwnam(str(owner)).pw_uid
    except KeyError:
        raise TrustzoneError("user %r does not exist" % owner,
                             fix="create the user first or change the owner setting") from None
    try:
        gid = int(group) if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise TrustzoneError("group %r does not exist" % group,
                             fix="create the group first or change the group setting") from None
    return uid, gid


def refuse_symlink(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise TrustzoneError("is a symbolic link; refusing to follow or replace it", path,
                             fix="replace the link with a regular file or directory, or point "
                                 "the setting at the real path")
    return st


def read_file(path, max_bytes=4 * 1024 * 1024):
    """Bytes of a regular file, None if it does not exist. Symlinks are refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_symlink(path)
        raise TrustzoneError("cannot read (%s)" % exc.strerror, path,
                             fix="check the file's permissions") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TrustzoneError("is not a regular file", path, fix="remove it")
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(65536, remaining))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise TrustzoneError("is larger than %d bytes; not a certificate or key" % max_bytes,
                             path, fix="remove or replace it")
    return data


def file_state(path):
    """``{'exists', 'mode', 'uid', 'gid'}`` without following symlinks (which are refused)."""
    st = refuse_symlink(path)
    if st is None:
        return {"exists": False}
    return {"exists": True, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}


def ensure_dir(path, mode, uid, gid, check_mode=False):
    """Create ``path`` (one level; its parent must exist) or fix its mode/owner.

    Returns True if something changed (or would change in check mode).
    """
    st = refuse_symlink(path)
    if st is None:
        parent = os.path.dirname(path.rstrip("/")) or "/"
        if not os.path.isdir(parent):
            if check_mode:
                return True
            ensure_dir(parent, 0o755, 0, 0)
        if check_mode:
            return True
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise TrustzoneError("cannot create directory (%s)" % exc.strerror, path,
                                 fix="check that the parent directory is writable") from exc
        _set_meta(path, mode, uid, gid)
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise TrustzoneError("exists and is not a directory", path,
                             fix="move the file away or choose another directory")
    if stat.S_IMODE(st.st_mode) != mode or st.st_uid != uid or st.st_gid != gid:
        if not check_mode:
            _set_meta(path, mode, uid, gid)
        return True
    return False


def atomic_write(path, data, mode, uid, gid, keep_previous=False):
    """Write ``data`` to ``path`` atomically with owner and mode set before the rename.

    With ``keep_previous`` the current file (if any) stays reachable as ``path + '.prev'``.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(path) or "."
    refuse_symlink(directory)
    current = refuse_symlink(path)
    if current is not None and not stat.S_ISREG(current.st_mode):
        raise TrustzoneError("exists and is not a regular file", path, fix="remove it")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path),
                                   suffix=".tmp")
    except OSError as exc:
        raise TrustzoneError("cannot write in %s (%s)" % (directory, exc.strerror), path,
                             fix="make the directory writable for the user Ansible becomes"
                             ) from exc
    try:
        try:
            os.fchmod(fd, mode)
            os.fchown(fd, uid, gid)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if keep_previous and current is not None:
            _link_previous(path)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(directory)
    except OSError as exc:
        raise TrustzoneError("cannot write (%s)" % exc.strerror, path,
                             fix="check free space and permissions of %s" % directory) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_rename(src, dst, keep_previous=False):
    """Move ``src`` over ``dst`` in one step (same directory), keeping ``dst.prev``."""
    refuse_symlink(src)
    current = refuse_symlink(dst)
    if keep_previous and current is not None:
        _link_previous(dst)
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise TrustzoneError("cannot move %s into place (%s)" % (src, exc.strerror), dst) from exc
    _fsync_dir(os.path.dirname(dst) or ".")


def remove(path):
    """Remove a file (not following symlinks). Returns True if it existed."""
    st = refuse_symlink(path)
    if st is None:
        return False
    try:
        os.unlink(path)
    except OSError as exc:
        raise TrustzoneError("cannot remove (%s)" % exc.strerror, path) from exc
    return True


def list_dir(path, prefix=""):
    try:
        return sorted(n for n in os.listdir(path) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _link_previous(path):
    prev = path + PREVIOUS_SUFFIX
    refuse_symlink(prev)
    tmp_prev = prev + ".new"
    if os.path.lexists(tmp_prev):
        os.unlink(tmp_prev)
    os.link(path, tmp_prev)
    os.replace(tmp_prev, prev)


def _set_meta(path, mode, uid, gid):
    os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode)


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
