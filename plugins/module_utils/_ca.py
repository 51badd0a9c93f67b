# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The zone's CA directory on the CA host: one place that knows its files.

The CA's state lives in immutable *generations* and one pointer (docs/ca-state.md)::

    <dir>/current              one line, "gen/<NNNNNN>": the generation in force
    <dir>/gen/<NNNNNN>/        one complete state, never changed once written:
        root.crt|key           the current root (key PKCS#8, encrypted)
        next.crt|key           the next root, during a rotation
        intermediate.crt|key   the current root's intermediate, when the zone uses one
        next-intermediate.*    the next root's intermediate, during a rotation
        rotation.json          the rotation phase (absent: stable)
        retired/<fp16>.crt|key retired roots (and ``intermediate-<fp16>`` intermediates)
    <dir>/ledger.db, ledger.lock, crl.pem   outside the generations (the ledger's own)

A change writes a whole new generation under a temporary name (every file and directory
fsynced), renames it to its number, then switches ``current`` in ONE rename. A crash before
that rename leaves the previous state in force; leftovers are ignored by readers and removed
by the next apply. Reading never writes, renames or removes anything.

Before generations the same names lay flat in ``<dir>`` ("legacy layout"). Such a directory
is read as is, including the half-done states an interrupted run of the old code could
leave (``legacy_draft``), and becomes generation 1 on the first apply.
"""

from __future__ import annotations

import json
import os
import re
import stat

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as R
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

STATE_FILE = "rotation.json"
POINTER = "current"
POINTER_TMP = ".current.tmp"
GENERATIONS = "gen"
KEEP = 3  # generations kept (the one in force and the previous ones) for audit / rollback
GEN_RE = re.compile(r"^[0-9]{6}$")
STAGING_RE = re.compile(r"^\.([0-9]{6})\.tmp$")
# A pair and the pair that replaces it when a rotation is retired.
PENDING = {"root": "next", "intermediate": "next-intermediate"}
STEMS = ("root", "next", "intermediate", "next-intermediate")
LEGACY_FILES = tuple(s + e for s in STEMS for e in (".crt", ".key")) + (STATE_FILE,)
# A root whose key is kept off the CA host (trustzone_ca_root_offline) has ``<stem>.offline``
# in place of ``<stem>.key``: its fingerprint, a marker that the key is elsewhere on purpose.
OFFLINE = ".offline"
# A key in a PKCS#11 token (trustzone_ca_pkcs11_token) has ``<stem>.pkcs11`` in place of
# ``<stem>.key``: the key's label in the token.
PKCS11 = ".pkcs11"
MARKERS = (OFFLINE, PKCS11)
# The zone secrets keyring (module_utils/_secrets.py) lives in the generations too, so that a
# generation is the whole CA state (and a backup of it carries the keyring).
SECRETS_KEYRING = _layout.SECRETS_KEYRING
GENERATION_FILES = LEGACY_FILES + tuple(s + OFFLINE for s in ("root", "next")) + tuple(
    s + PKCS11 for s in STEMS) + (SECRETS_KEYRING,)
RETIRED = "retired"
MAX_FILES = 10000


def _mode_of(rel):
    return 0o600 if rel.endswith(".key") or rel in (STATE_FILE, SECRETS_KEYRING) else 0o644


def _valid_rel(rel):
    parts = rel.split("/")
    if len(parts) == 1:
        return rel in GENERATION_FILES
    return (len(parts) == 2 and parts[0] == RETIRED and re.match(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*\.(crt|key|offline|pkcs11)$", parts[1]) is not None)


# ---------------------------------------------------------------------- the state in memory

class Draft:
    """One CA state in memory: ``{relative name: bytes}`` with the names of a generation.

    Reading and "writing" here never touch the disk: zone_root plans the next state by
    changing a copy, and ``CaDir.commit`` writes it as a new generation. ``base`` is where the
    files live (for error messages)."""

    def __init__(self, files, base, source=None, stats=None, debts=None, token=None):
        self.files = dict(files)
        self.base = base
        self.source = source  # "gen/NNNNNN", "legacy" or None (nothing there)
        self.stats = dict(stats or {})
        # what keys kept elsewhere (the offline root) must sign: _detached.DeferredKey
        self.debts = debts if debts is not None else []
        self.token = token  # the zone's PKCS#11 token (_pkcs11.TokenAccess), if it has one

    def copy(self):
        return Draft(self.files, self.base, self.source, self.stats, self.debts, self.token)

    def file(self, name):
        return os.path.join(self.base, name)

    # ------------------------------------------------------------------ reading
    def load_pair(self, stem, passphrase, required=False):
        """``(key, cert)`` for ``stem`` ('root', 'next', ...); ``(None, None)`` when both are
        absent."""
        key_path, cert_path = self.file(stem + ".key"), self.file(stem + ".crt")
        key_data, cert_data = self.files.get(stem + ".key"), self.files.get(stem + ".crt")
        if key_data is None and cert_data is not None and stem + OFFLINE in self.files:
            return self._deferred(stem), C.load_certificate(cert_data, path=cert_path)
        if key_data is None and cert_data is not None and stem + PKCS11 in self.files:
            return self._in_token(stem), C.load_certificate(cert_data, path=cert_path)
        if key_data is None and cert_data is None:
            if required:
                raise TrustzoneError("the zone has no root CA here", self.base,
                                     fix="run the trustzone.pki.ca role (playbooks/site.yml) first")
            return None, None
        if key_data is None:
            raise TrustzoneError("the certificate exists but its key is missing", key_path,
                                 fix="restore the CA directory from a backup "
                                     "(playbooks/restore.yml)")
        if cert_data is None:
            raise TrustzoneError("the key exists but its certificate is missing", cert_path,
                                 fix="restore the CA directory from a backup "
                                     "(playbooks/restore.yml)")
        key = C.load_private_key(key_data, passphrase, path=key_path)
        cert = C.load_certificate(cert_data, path=cert_path)
        if not C.same_public_key(key, cert):
            raise TrustzoneError("the certificate does not belong to the key", cert_path,
                                 fix="restore the matching pair from a backup")
        return key, cert

    def _deferred(self, stem):
        """The key of ``stem``, kept off this host: a ``_detached.DeferredKey``."""
        from ansible_collections.trustzone.pki.plugins.module_utils import _detached
        cert = C.load_certificate(self.files[stem + ".crt"], path=self.file(stem + ".crt"))
        marker = self.files[stem + OFFLINE].decode("ascii", "replace").strip()
        if marker != C.fingerprint(cert):
            raise TrustzoneError("the offline-key marker names another certificate",
                                 self.file(stem + OFFLINE),
                                 fix="restore the CA directory from a backup")
        return _detached.DeferredKey(cert, self.debts)

    def _in_token(self, stem):
        """The key of ``stem`` in the zone's PKCS#11 token (``_pkcs11.TokenKey``)."""
        from ansible_collections.trustzone.pki.plugins.module_utils import _pkcs11
        cert = C.load_certificate(self.files[stem + ".crt"], path=self.file(stem + ".crt"))
        label = self.files[stem + PKCS11].decode("utf-8", "replace").strip()
        # without a token, reading certificates works; signing says what is missing
        return _pkcs11.TokenKey(self.token, label, cert, where=self.file(stem + PKCS11))

    def offline(self, stem):
        """Whether ``stem``'s key is kept off this host (an offline root)."""
        return stem + OFFLINE in self.files

    def cert(self, stem):
        data = self.files.get(stem + ".crt")
        return None if data is None else C.load_certificate(data, path=self.file(stem + ".crt"))

    def load_state(self):
        data = self.files.get(STATE_FILE)
        if data is None:
            return None
        return parse_state(data, self.file(STATE_FILE))

    def has_root(self):
        return "root.crt" in self.files

    def issuer(self, passphrase):
        """``(key, cert, chain)`` that signs leaves now, following the rotation phase: the
        issuing root, or its intermediate when the zone has one (then ``chain`` holds it)."""
        state = self.load_state()
        phase = R.phase_of(state)
        key, cert = self.load_pair("root", passphrase, required=True)
        stem = "intermediate"
        if phase == "use":
            nkey, ncert = self.load_pair("next", passphrase)
            if ncert is not None:
                key, cert, stem = nkey, ncert, "next-intermediate"
            elif C.fingerprint(cert) != state.get("new"):
                raise TrustzoneError("the rotation is in phase 'use' but the next root is "
                                     "missing", self.file("next.crt"),
                                     fix="restore the CA directory from a backup")
        ikey, icert = self.load_pair(stem, passphrase)
        if icert is not None and C.is_signed_by(icert, cert):
            return ikey, icert, [icert]
        return key, cert, []

    def validate(self, passphrase):
        """Open every pair (current, next, intermediates, retired): before a state read from
        the legacy layout is written as a generation, whatever does not fit is reported."""
        for stem in STEMS:
            self.load_pair(stem, passphrase)
        self.load_state()
        self.retired_pairs(passphrase)

    def promotion_started(self):
        """In the legacy layout: a retire that began promoting the next root and stopped.
        The old code archived the root in ``retired/`` only as the first step of a promotion
        (which only a confirmed retire runs) when a rotation was under way, so an archived
        copy of the root in force during phase 'use' is that, and nothing else."""
        if self.source != "legacy" or R.phase_of(self.load_state()) != "use":
            return False
        root = self.files.get("root.crt")
        if root is None or "next.crt" not in self.files:
            return False
        archived = "%s/%s.crt" % (RETIRED, C.fingerprint(self.cert("root"))[:16])
        return self.files.get(archived) == root

    def in_use(self):
        """Fingerprints of the CA certificates this state uses (roots and intermediates)."""
        return {C.fingerprint(c) for c in (self.cert(s) for s in STEMS) if c is not None}

    def retired_pairs(self, passphrase):
        """``[(key, cert)]`` of every CA certificate the zone used and no longer uses
        (retired roots, replaced intermediates), key None when it was not kept."""
        in_use = self.in_use()
        out, seen = [], set()
        for rel in sorted(self.files):
            if not (rel.startswith(RETIRED + "/") and rel.endswith(".crt")):
                continue
            cert = C.load_certificate(self.files[rel], path=self.file(rel))
            fp = C.fingerprint(cert)
            if fp in in_use or fp in seen:
                continue
            seen.add(fp)
            key_rel = rel[:-4] + ".key"
            key = None
            if rel[:-4] + OFFLINE in self.files:
                key = self._deferred(rel[:-4])
            elif rel[:-4] + PKCS11 in self.files:
                key = self._in_token(rel[:-4])
            elif key_rel in self.files:
                key = C.load_private_key(self.files[key_rel], passphrase,
                                         path=self.file(key_rel))
                if not C.same_public_key(key, cert):
                    raise TrustzoneError("the certificate does not belong to the key",
                                         self.file(rel), fix="restore the matching pair "
                                                             "from a backup")
            out.append((key, cert))
        return out

    # ------------------------------------------------------------------ changing (memory)
    def write_pair(self, stem, key, cert, passphrase):
        self.files[stem + ".crt"] = C.certificate_pem(cert).encode("ascii")
        for ext in (".key",) + MARKERS:
            self.files.pop(stem + ext, None)
        if getattr(key, "in_token", False):  # in the token: its label only
            self.files[stem + PKCS11] = key.label.encode("utf-8")
        elif getattr(key, "deferred", False):  # kept elsewhere: only its marker is here
            self.files[stem + OFFLINE] = C.fingerprint(cert).encode("ascii")
        else:
            self.files[stem + ".key"] = C.private_key_pem(key, passphrase)

    def write_state(self, state):
        if state is None:
            self.files.pop(STATE_FILE, None)
            return
        self.files[STATE_FILE] = json.dumps(state, sort_keys=True, indent=1).encode("utf-8")

    def archive(self, stem):
        """Copy ``stem.crt``/``stem.key`` to ``retired/<fp16>.*`` (repeatable)."""
        crt = self.files.get(stem + ".crt")
        if crt is None:
            return
        cert = C.load_certificate(crt, path=self.file(stem + ".crt"))
        prefix = "" if stem in ("root", "next") else "intermediate-"
        target = "%s/%s%s" % (RETIRED, prefix, C.fingerprint(cert)[:16])
        self.files[target + ".crt"] = crt
        for ext in (".key",) + MARKERS:
            if stem + ext in self.files:
                self.files[target + ext] = self.files[stem + ext]

    def promote_next(self):
        """Archive the current root (and intermediate) in ``retired/`` and make the next ones
        current."""
        if "next.crt" not in self.files:
            return
        self.archive("root")
        if "next-intermediate.crt" in self.files:
            self.archive("intermediate")
            for ext in (".crt", ".key", PKCS11):
                self._move("next-intermediate" + ext, "intermediate" + ext)
        for ext in (".crt", ".key") + MARKERS:
            self._move("next" + ext, "root" + ext)

    def _move(self, src, dst):
        if src in self.files:
            self.files[dst] = self.files.pop(src)
        else:
            self.files.pop(dst, None)


def parse_state(data, path):
    try:
        state = json.loads(bytes(data).decode("utf-8"))
    except ValueError as exc:
        raise TrustzoneError("the rotation state is not valid JSON (%s)" % exc, path,
                             fix="restore it from a backup") from exc
    if not isinstance(state, dict):
        raise TrustzoneError("the rotation state is not a JSON object", path,
                             fix="restore it from a backup")
    R.phase_of(state)
    return state


def _try_key(data, passphrase):
    """The key, or None when ``passphrase`` does not open it (an interrupted passphrase change
    of the old code leaves keys under both: such a key is judged by whoever opens it)."""
    try:
        return C.load_private_key(data, passphrase)
    except TrustzoneError:
        return None


def legacy_draft(files, base, passphrase=None):
    """The state a flat (pre-generation) CA directory holds, as a clean ``Draft``. Pure.

    The old code wrote pairs certificate first and promoted a rotation by renames, so an
    interrupted run could leave, and the old ``load_pair`` repaired by renaming/removing:

    * a promotion stopped between renaming ``next*.crt`` and ``next*.key``: ``root.crt`` (or
      ``intermediate.crt``) is the new certificate, its key still waits as ``next*.key``;
    * a certificate whose key was never written (a first intermediate, or a next root before
      the rotation was recorded): it never signed anything, it is left out;
    * an intermediate re-issue stopped between the certificate and the key: the key is the
      old intermediate's, whose certificate was archived first: the old pair is kept;
    * a promotion finished but ``rotation.json`` still in phase 'use' naming the root in
      force as the new one: the rotation is over;
    * a promotion stopped after archiving the root (``Draft.promotion_started``): zone_root
      finishes it when it migrates the directory.

    Anything else that does not fit (a root certificate without key, a key matching no
    certificate) is reported by ``load_pair`` with the file and the fix, never guessed.
    Recognising a waiting key needs the passphrase; without one only certificates are
    interpreted (what backups and reports read)."""
    files = dict(files)
    state = parse_state(files[STATE_FILE], os.path.join(base, STATE_FILE)) \
        if STATE_FILE in files else None
    if passphrase is not None:
        for stem, pending in PENDING.items():
            if (stem + ".crt" in files and stem + ".key" in files
                    and pending + ".key" in files and pending + ".crt" not in files):
                cert = C.load_certificate(files[stem + ".crt"],
                                          path=os.path.join(base, stem + ".crt"))
                waiting = _try_key(files[pending + ".key"], passphrase)
                if waiting is not None and C.same_public_key(waiting, cert):
                    files[stem + ".key"] = files.pop(pending + ".key")
        for stem in ("intermediate", "next-intermediate"):
            if stem + ".crt" in files and stem + ".key" in files:
                cert = C.load_certificate(files[stem + ".crt"],
                                          path=os.path.join(base, stem + ".crt"))
                key = _try_key(files[stem + ".key"], passphrase)
                if key is None or C.same_public_key(key, cert):
                    continue
                for rel in sorted(files):
                    if rel.startswith(RETIRED + "/intermediate-") and rel.endswith(".crt"):
                        old = C.load_certificate(files[rel], path=os.path.join(base, rel))
                        if C.same_public_key(key, old):
                            files[stem + ".crt"] = files[rel]
                            break
    for stem in ("next", "intermediate", "next-intermediate"):
        if stem + ".crt" in files and stem + ".key" not in files and (
                stem != "next" or state is None):
            del files[stem + ".crt"]
    if (state is not None and R.phase_of(state) == "use" and "next.crt" not in files
            and "next.key" not in files and "root.crt" in files):
        root = C.load_certificate(files["root.crt"], path=os.path.join(base, "root.crt"))
        if C.fingerprint(root) == state.get("new"):
            del files[STATE_FILE]
    return Draft(files, base, source="legacy")


# ---------------------------------------------------------------------- the filesystem layer

class Fs:
    """Every filesystem change ``CaDir`` makes, one call per step (tests wrap it to crash at
    any step)."""

    def mkdir(self, path, mode, uid, gid):
        os.mkdir(path, 0o700)
        # owner and mode on the directory just made, through its descriptor: a name swapped
        # for a link meanwhile is refused (O_NOFOLLOW), never followed
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def write(self, path, data, mode, uid, gid):
        """A new file (never an existing one), flushed to disk before it is closed."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(bytes(data))
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def fsync_dir(self, path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src, dst):
        os.rename(src, dst)

    def unlink(self, path):
        os.unlink(path)

    def rmdir(self, path):
        os.rmdir(path)


def _read_tree(root):
    """``({rel: bytes}, {rel: (mode, uid, gid)})`` of a generation directory (read only)."""
    files, stats = {}, {}
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            full = os.path.join(base, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            st = _fs.refuse_symlink(full)
            if st is None:
                continue
            if not _valid_rel(rel):
                raise TrustzoneError("is not part of a CA generation", full,
                                     fix="move it out of the CA directory")
            data = _fs.read_file(full)
            if data is None:
                continue
            files[rel] = data
            stats[rel] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if len(files) > MAX_FILES:
                raise TrustzoneError("holds too many files", root,
                                     fix="restore the CA directory from a backup")
    return files, stats


# ---------------------------------------------------------------------- the directory

class CaDir:
    @classmethod
    def existing(cls, path):
        """The CA directory at ``path``, owned as it is; a clear error when there is none (or
        a symbolic link stands there)."""
        st = _fs.refuse_symlink(path)
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise TrustzoneError("the CA directory does not exist", path,
                                 fix="check trustzone_ca_dir, or run playbooks/site.yml first")
        return cls(path, st.st_uid, st.st_gid)

    def __init__(self, path, uid=0, gid=0, fs=None, token=None):
        self.path = path
        self.uid, self.gid = uid, gid
        self.fs = fs or Fs()
        self.debts = []  # shared by every Draft this loads (see Draft.debts)
        self.token = token  # the zone's PKCS#11 token, if any (Draft.token)

    def file(self, name):
        return os.path.join(self.path, name)

    # ------------------------------------------------------------------ reading
    def pointer(self):
        """The generation in force (``gen/NNNNNN``), or None (legacy layout or empty)."""
        data = _fs.read_file(self.file(POINTER), max_bytes=4096)
        if data is None:
            return None
        text = data.decode("ascii", "replace").strip()
        parts = text.split("/")
        if len(parts) != 2 or parts[0] != GENERATIONS or not GEN_RE.match(parts[1]):
            raise TrustzoneError("the CA state pointer is damaged (%r)" % text[:40],
                                 self.file(POINTER),
                                 fix="restore the CA directory from a backup "
                                     "(playbooks/restore.yml)")
        st = _fs.refuse_symlink(self.file(text))
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise TrustzoneError("the CA state pointer names %s, which does not exist" % text,
                                 self.file(POINTER),
                                 fix="restore the CA directory from a backup "
                                     "(playbooks/restore.yml)")
        return text

    def load(self, passphrase=None):
        """The state in force as a ``Draft``. Reads only."""
        gen = self.pointer()
        if gen is not None:
            files, stats = _read_tree(self.file(gen))
            return Draft(files, self.file(gen), source=gen, stats=stats, debts=self.debts,
                         token=self.token)
        legacy = {}
        for name in LEGACY_FILES:
            data = _fs.read_file(self.file(name))
            if data is not None:
                legacy[name] = data
        retired = self.file(RETIRED)
        st = _fs.refuse_symlink(retired)
        if st is not None and stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(retired)):
                if name.endswith((".crt", ".key")) and not name.startswith("."):
                    data = _fs.read_file(os.path.join(retired, name))
                    if data is not None:
                        legacy[RETIRED + "/" + name] = data
        if legacy:
            return legacy_draft(legacy, self.path, passphrase)
        self._refuse_lost_pointer()
        return Draft({}, self.path, source=None, debts=self.debts, token=self.token)

    def _refuse_lost_pointer(self):
        """Without ``current`` and without legacy files, a generation is only the leftover
        of an interrupted first write (generation 1, nothing signed yet: no ledger). Anything
        more means the pointer was lost: never read as "no CA" (a new root) nor cleaned."""
        done, _staging = self._numbers()
        if not done or (done == [1] and _fs.refuse_symlink(self.file(_layout.LEDGER_FILE)) is None):
            return
        raise TrustzoneError("the CA state pointer is missing but %d generation(s) exist "
                             "under gen/" % len(done), self.file(POINTER),
                             fix="restore the CA directory from a backup, or write the name "
                                 "of the newest generation (gen/%06d) into %s"
                                 % (done[-1], self.file(POINTER)))

    def load_pair(self, stem, passphrase, required=False):
        return self.load(passphrase).load_pair(stem, passphrase, required)

    def load_state(self):
        return self.load().load_state()

    def has_root(self):
        return self.load().has_root()

    def issuer(self, passphrase):
        return self.load(passphrase).issuer(passphrase)

    def retired_pairs(self, passphrase):
        return self.load(passphrase).retired_pairs(passphrase)

    def needs_commit(self, current, wanted):
        """Whether ``wanted`` must be written as a new generation: its files differ, the
        directory is still in the legacy layout, or a file has the wrong mode or owner."""
        if not wanted.files:
            return False
        if current.source in (None, "legacy") or wanted.files != current.files:
            return True
        return any(current.stats.get(rel) != (_mode_of(rel), self.uid, self.gid)
                   for rel in wanted.files)

    # ------------------------------------------------------------------ writing
    def _numbers(self):
        root = self.file(GENERATIONS)
        if _fs.refuse_symlink(root) is None:
            return [], []
        done, staging = [], []
        for name in os.listdir(root):
            if GEN_RE.match(name):
                done.append(int(name))
            elif STAGING_RE.match(name):
                staging.append(int(STAGING_RE.match(name).group(1)))
        return sorted(done), sorted(staging)

    def commit(self, draft, keep=KEEP):
        """Write ``draft`` as a new generation and make it the one in force (one rename), then
        clean up. Returns the new generation's name."""
        fs = self.fs
        gen_root = self.file(GENERATIONS)
        st = _fs.refuse_symlink(gen_root)
        if st is None:
            fs.mkdir(gen_root, 0o700, self.uid, self.gid)
            fs.fsync_dir(self.path)
        done, staging = self._numbers()
        current = self.pointer()
        number = max(done + staging + [int(current[4:]) if current else 0]) + 1
        name = "%06d" % number
        tmp = os.path.join(gen_root, ".%s.tmp" % name)
        fs.mkdir(tmp, 0o700, self.uid, self.gid)
        made = set()
        for rel in sorted(draft.files):
            if not _valid_rel(rel):
                raise TrustzoneError("is not part of a CA generation", rel)
            if "/" in rel:
                sub = rel.split("/")[0]
                if sub not in made:
                    fs.mkdir(os.path.join(tmp, sub), 0o700, self.uid, self.gid)
                    made.add(sub)
            fs.write(os.path.join(tmp, rel), draft.files[rel], _mode_of(rel), self.uid,
                     self.gid)
        for sub in sorted(made):
            fs.fsync_dir(os.path.join(tmp, sub))
        fs.fsync_dir(tmp)
        fs.rename(tmp, os.path.join(gen_root, name))
        fs.fsync_dir(gen_root)
        pointer_tmp = self.file(POINTER_TMP)
        if _fs.refuse_symlink(pointer_tmp) is not None:
            fs.unlink(pointer_tmp)
        fs.write(pointer_tmp, ("%s/%s\n" % (GENERATIONS, name)).encode("ascii"), 0o644,
                 self.uid, self.gid)
        fs.rename(pointer_tmp, self.file(POINTER))  # the one step that switches the state
        fs.fsync_dir(self.path)
        self.cleanup(keep)
        return "%s/%s" % (GENERATIONS, name)

    def _remove_tree(self, path):
        for base, dirs, names in os.walk(path, topdown=False):
            for name in names:
                self.fs.unlink(os.path.join(base, name))
            for name in dirs:
                full = os.path.join(base, name)
                if os.path.islink(full):
                    self.fs.unlink(full)
                else:
                    self.fs.rmdir(full)
        self.fs.rmdir(path)

    def leftovers(self):
        """What a crashed or finished change left that no reader uses: staging directories,
        generations newer than the one in force (written, never switched to), generations
        beyond the ones kept, the pointer's temporary file, and - once generations are in
        force - the files of the legacy layout they were migrated from. Reads only."""
        current = self.pointer()
        out = []
        if _fs.refuse_symlink(self.file(POINTER_TMP)) is not None:
            out.append(self.file(POINTER_TMP))
        done, staging = self._numbers()
        gen_root = self.file(GENERATIONS)
        out += [os.path.join(gen_root, ".%06d.tmp" % n) for n in staging]
        if current is None:
            self._refuse_lost_pointer()
            out += [os.path.join(gen_root, "%06d" % n) for n in done]
            return out
        number = int(current[4:])
        out += [os.path.join(gen_root, "%06d" % n) for n in done if n > number]
        out += [self.file(name) for name in LEGACY_FILES
                if _fs.refuse_symlink(self.file(name)) is not None]
        if _fs.refuse_symlink(self.file(RETIRED)) is not None:
            out.append(self.file(RETIRED))
        return out

    def cleanup(self, keep=KEEP):
        """Remove the leftovers (never in check mode) and all but the ``keep`` newest
        generations. Returns True when something was removed."""
        removed = False
        current = self.pointer()
        for path in self.leftovers():
            removed = True
            if os.path.isdir(path) and not os.path.islink(path):
                self._remove_tree(path)
            else:
                self.fs.unlink(path)
        if current is not None:
            number = int(current[4:])
            older = sorted(n for n in self._numbers()[0] if n < number)
            for n in older[:max(0, len(older) - (keep - 1))]:
                removed = True
                self._remove_tree(os.path.join(self.file(GENERATIONS), "%06d" % n))
        if removed:
            self.fs.fsync_dir(self.path)
            if _fs.refuse_symlink(self.file(GENERATIONS)) is not None:
                self.fs.fsync_dir(self.file(GENERATIONS))
        return removed

    def would_clean(self, keep=KEEP):
        """What ``cleanup`` would remove (for check mode). Reads only."""
        paths = self.leftovers()
        current = self.pointer()
        if current is not None:
            number = int(current[4:])
            older = sorted(n for n in self._numbers()[0] if n < number)
            paths += [os.path.join(self.file(GENERATIONS), "%06d" % n)
                      for n in older[:max(0, len(older) - (keep - 1))]]
        return paths


def logical_files(files):
    """From a whole CA directory tree ``{rel: value}`` (a backup, a restore), the files of the
    state in force under their names in a generation (``root.crt``, ``retired/...``): those
    of the generation ``current`` names, or the flat legacy ones. Pure."""
    pointer = files.get(POINTER)
    if pointer is not None:
        data = pointer[1] if isinstance(pointer, tuple) else pointer
        prefix = bytes(data).decode("ascii", "replace").strip() + "/"
        return {rel[len(prefix):]: value for rel, value in files.items()
                if rel.startswith(prefix)}
    return {rel: value for rel, value in files.items() if _valid_rel(rel)}
