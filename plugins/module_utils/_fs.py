# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The edge where decisions meet the disk: the ONE file layer every module writes through.

Promises (docs/files.md):
- The directory of a path is opened once with ``O_DIRECTORY|O_NOFOLLOW`` and every
  operation inside it goes through that descriptor (``dir_fd=``), so swapping the directory
  for a link half-way changes nothing outside it.
- Files are opened with ``O_NOFOLLOW``; a symlink (or any non-regular file) at a target is
  refused, never followed or replaced.
- Owner and mode are set with ``fchown``/``fchmod`` on the open descriptor: on the new file
  before it is renamed into place, and on an existing file only after ``fstat`` shows it is
  the regular file that was inspected (no ``chmod(path)`` that a planted link redirects).
- Data and directory are ``fsync``-ed: after a crash a reader finds the old file or the
  new one, complete. After the rename the layer checks that the name holds the inode it
  wrote; a swap under it is reported, not silently accepted.
- With ``keep_previous`` the current file stays reachable as ``<name>.prev`` (hard link).

``_STEP_HOOK`` (tests only) is called between the steps with the step's name, so a test can
plant a link or replace a file at every point and show the target untouched or refused.
"""

from __future__ import annotations

import binascii
import contextlib
import errno
import fcntl
import grp
import os
import pwd
import stat

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


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


PREVIOUS_SUFFIX = ".prev"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_STEP_HOOK = None


def _step(name, path):
    """Between two steps of a write (a no-op outside the tests' fault injection)."""
    if _STEP_HOOK is not None:
        _STEP_HOOK(name, path)


def _refused_link(path):
    return TrustzoneError("is a symbolic link; refusing to follow or replace it", path,
                          fix="replace the link with a regular file or directory, or point "
                              "the setting at the real path")


def _split(path):
    path = os.fspath(path)
    directory, name = os.path.split(path.rstrip("/") if path.rstrip("/") else path)
    return directory or ".", name


def open_dir(directory):
    """A descriptor of ``directory`` itself (never of a link's target)."""
    try:
        return os.open(directory, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(directory):
            raise _refused_link(directory) from None
        if exc.errno == errno.ENOTDIR:
            raise TrustzoneError("is not a directory", directory,
                                 fix="move the file away or choose another directory") from None
        raise


def _lstat_at(dfd, name):
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def refuse_symlink(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise _refused_link(path)
    return st


def read_file(path, max_bytes=4 * 1024 * 1024):
    """Bytes of a regular file, None if it does not exist. Symlinks are refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC)
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


def check_writable(path, kind="file"):
    """Everything that would stop a later write of ``path``, found now (no write happens):
    the directory must exist, be a real directory and writable; the target must be absent
    or a regular file (a ``kind='dir'`` target a directory)."""
    directory, _name = _split(path)
    st = refuse_symlink(directory)
    if st is None:
        raise TrustzoneError("the directory for %s does not exist" % path, directory,
                             fix="create it, or change the setting to an existing directory")
    if not stat.S_ISDIR(st.st_mode):
        raise TrustzoneError("is not a directory", directory, fix="move the file away")
    current = refuse_symlink(path)
    if current is not None:
        want = stat.S_ISDIR if kind == "dir" else stat.S_ISREG
        if not want(current.st_mode):
            raise TrustzoneError("exists and is not a regular %s" % kind, path,
                                 fix="remove it or choose another path")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise TrustzoneError("the directory is not writable", directory,
                             fix="make it writable for the user Ansible becomes")


def set_meta(path, mode, uid, gid, kind="file"):
    """Give an existing regular file (or directory) ``mode`` and owner, through its own
    descriptor: a link planted at ``path`` is refused, a file swapped after the check is
    never the one changed. Returns False when ``path`` does not exist."""
    directory, name = _split(path)
    dfd = open_dir(directory)
    try:
        return _set_meta_at(dfd, name, path, mode, uid, gid, kind)
    finally:
        os.close(dfd)


def _set_meta_at(dfd, name, path, mode, uid, gid, kind="file"):
    want = stat.S_ISDIR if kind == "dir" else stat.S_ISREG
    st = _lstat_at(dfd, name)
    if st is None:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise _refused_link(path)
    if not want(st.st_mode):
        raise TrustzoneError("exists and is not a regular %s" % kind, path, fix="remove it")
    _step("meta:checked", path)
    flags = os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NOCTTY", 0)
    if kind == "dir":
        flags |= _DIRECTORY
    try:
        fd = os.open(name, flags, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused_link(path) from None
        if exc.errno == errno.ENOENT:
            raise TrustzoneError("disappeared while its owner and mode were being set", path,
                                 fix="re-run; if it repeats, find what replaces the file"
                                 ) from None
        raise TrustzoneError("cannot open (%s)" % exc.strerror, path) from exc
    try:
        now = os.fstat(fd)
        if not want(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise TrustzoneError("was replaced while its owner and mode were being set", path,
                                 fix="re-run; if it repeats, find what replaces the file")
        _step("meta:opened", path)
        try:
            if (now.st_uid, now.st_gid) != (uid, gid):
                os.fchown(fd, uid, gid)
            _step("meta:owned", path)
            if stat.S_IMODE(now.st_mode) != mode:
                os.fchmod(fd, mode)
        except OSError as exc:
            raise TrustzoneError("cannot set owner and mode (%s)" % exc.strerror, path) from exc
    finally:
        os.close(fd)
    return True


def fsync_file(path):
    """Flush an existing regular file (written by someone else) to disk; links refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused_link(path) from None
        raise TrustzoneError("cannot open (%s)" % exc.strerror, path) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TrustzoneError("is not a regular file", path, fix="remove it")
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory):
    """Flush a directory's entries (a rename, a new name) to disk; best effort: a directory
    that cannot be opened or flushed is passed over."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        _fsync(fd)
    finally:
        os.close(fd)


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
        directory, name = _split(path)
        dfd = open_dir(directory)
        try:
            try:
                os.mkdir(name, 0o700, dir_fd=dfd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise TrustzoneError("cannot create directory (%s)" % exc.strerror, path,
                                     fix="check that the parent directory is writable") from exc
            _step("dir:created", path)
            _set_meta_at(dfd, name, path, mode, uid, gid, kind="dir")
            _fsync(dfd)
        finally:
            os.close(dfd)
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise TrustzoneError("exists and is not a directory", path,
                             fix="move the file away or choose another directory")
    if stat.S_IMODE(st.st_mode) != mode or st.st_uid != uid or st.st_gid != gid:
        if not check_mode:
            set_meta(path, mode, uid, gid, kind="dir")
        return True
    return False


def atomic_write(path, data, mode, uid, gid, keep_previous=False):
    """Write ``data`` to ``path`` atomically with owner and mode set before the rename.

    With ``keep_previous`` the current file (if any) stays reachable as ``path + '.prev'``.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory, name = _split(path)
    try:
        dfd = open_dir(directory)
    except TrustzoneError:
        raise
    except OSError as exc:
        raise TrustzoneError("cannot write in %s (%s)" % (directory, exc.strerror), path,
                             fix="make the directory writable for the user Ansible becomes"
                             ) from exc
    try:
        _write_at(dfd, directory, name, path, data, mode, uid, gid, keep_previous)
    finally:
        os.close(dfd)


def _temp_name(name):
    return ".%s.%s.tmp" % (name, binascii.hexlify(os.urandom(6)).decode("ascii"))


def _write_at(dfd, directory, name, path, data, mode, uid, gid, keep_previous):
    current = _lstat_at(dfd, name)
    if current is not None and stat.S_ISLNK(current.st_mode):
        raise _refused_link(path)
    if current is not None and not stat.S_ISREG(current.st_mode):
        raise TrustzoneError("exists and is not a regular file", path, fix="remove it")
    _step("write:checked", path)
    tmp = _temp_name(name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600,
                     dir_fd=dfd)
    except OSError as exc:
        raise TrustzoneError("cannot write in %s (%s)" % (directory, exc.strerror), path,
                             fix="make the directory writable for the user Ansible becomes"
                             ) from exc
    created = None
    try:
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            created = os.fstat(fd)
        finally:
            os.close(fd)
        _step("write:temp", path)
        if keep_previous and current is not None:
            _link_previous_at(dfd, name, path, current)
            _step("write:previous", path)
        _same_inode_at(dfd, tmp, created, path)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        tmp = None
        _step("write:renamed", path)
        _fsync(dfd)
        _same_inode_at(dfd, name, created, path)
    except OSError as exc:
        raise TrustzoneError("cannot write (%s)" % exc.strerror, path,
                             fix="check free space and permissions of %s" % directory) from exc
    finally:
        if tmp is not None:
            _unlink_quietly(dfd, tmp)


def _same_inode_at(dfd, name, want, path):
    st = _lstat_at(dfd, name)
    if st is None or (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
        raise TrustzoneError("was replaced by something else while being written", path,
                             fix="find what writes into this directory (its owner can swap "
                                 "files in it) and re-run")


def atomic_rename(src, dst, keep_previous=False):
    """Move ``src`` over ``dst`` in one step (same directory), keeping ``dst.prev``."""
    directory, name = _split(dst)
    src_dir, src_name = _split(src)
    if os.path.abspath(src_dir) != os.path.abspath(directory):
        raise TrustzoneError("cannot move %s into place: not in the same directory" % src, dst)
    dfd = open_dir(directory)
    try:
        moving = _lstat_at(dfd, src_name)
        if moving is not None and stat.S_ISLNK(moving.st_mode):
            raise _refused_link(src)
        current = _lstat_at(dfd, name)
        if current is not None and stat.S_ISLNK(current.st_mode):
            raise _refused_link(dst)
        if keep_previous and current is not None:
            _link_previous_at(dfd, name, dst, current)
        _step("rename:checked", dst)
        try:
            if moving is not None:
                _same_inode_at(dfd, src_name, moving, src)
            os.replace(src_name, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            raise TrustzoneError("cannot move %s into place (%s)" % (src, exc.strerror),
                                 dst) from exc
        _fsync(dfd)
    finally:
        os.close(dfd)


def remove(path):
    """Remove a file (not following symlinks). Returns True if it existed."""
    st = refuse_symlink(path)
    if st is None:
        return False
    directory, name = _split(path)
    dfd = open_dir(directory)
    try:
        os.unlink(name, dir_fd=dfd)
        _fsync(dfd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise TrustzoneError("cannot remove (%s)" % exc.strerror, path) from exc
    finally:
        os.close(dfd)
    return True


def list_dir(path, prefix=""):
    try:
        return sorted(n for n in os.listdir(path) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _link_previous_at(dfd, name, path, current):
    """Make ``<name>.prev`` a hard link to the inode ``current`` (the file now in place)."""
    prev = name + PREVIOUS_SUFFIX
    st = _lstat_at(dfd, prev)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise _refused_link(path + PREVIOUS_SUFFIX)
    if st is not None and (st.st_dev, st.st_ino) == (current.st_dev, current.st_ino):
        return  # already kept (a switch finished after a crash): rename() would be a no-op
    tmp_prev = _temp_name(prev)
    os.link(name, tmp_prev, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    try:
        _same_inode_at(dfd, tmp_prev, current, path)
        os.replace(tmp_prev, prev, src_dir_fd=dfd, dst_dir_fd=dfd)
        if _lstat_at(dfd, tmp_prev) is None:
            tmp_prev = None
    finally:
        if tmp_prev is not None:
            _unlink_quietly(dfd, tmp_prev)


@contextlib.contextmanager
def flocked(fd):
    """An exclusive ``flock`` on the open descriptor ``fd`` for the block (waiting for any
    holder); ``fd`` is closed afterwards, whatever happens."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _unlink_quietly(dfd, name):
    """Remove ``name`` in directory ``dfd`` if it is there (a leftover temporary name)."""
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _fsync(fd):
    try:
        os.fsync(fd)
    except OSError:
        pass
