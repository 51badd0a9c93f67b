# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The zone's CA directory on the CA host: one place that knows its files.

``root.crt``/``root.key``  the current root (key PKCS#8, encrypted)
``next.crt``/``next.key``  the next root, during a rotation
``intermediate.crt|key``   the current root's intermediate, when the zone uses one
``next-intermediate.*``    the next root's intermediate, during a rotation
``rotation.json``          the rotation phase (absent: stable)
``retired/<fp16>.crt|key`` roots retired by a finished rotation, kept (encrypted) for audit
"""

from __future__ import annotations

import json
import os

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as R
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

STATE_FILE = "rotation.json"
# A pair and the pair that replaces it when a rotation is retired.
PENDING = {"root": "next", "intermediate": "next-intermediate"}


class CaDir:
    def __init__(self, path, uid=0, gid=0):
        self.path = path
        self.uid, self.gid = uid, gid

    def file(self, name):
        return os.path.join(self.path, name)

    # ------------------------------------------------------------------ reading
    def load_pair(self, stem, passphrase, required=False):
        """``(key, cert)`` for ``stem`` ('root', 'next'); ``(None, None)`` when both are absent.

        Pairs are written certificate first, key second, and promoted the same way, so an
        interrupted run can leave two states behind, both repaired here: a certificate whose
        key was never written (it can never have signed anything: removed, unless it is the
        root), and a promoted certificate whose key still waits as ``next*.key`` (renamed).
        """
        key_path, cert_path = self.file(stem + ".key"), self.file(stem + ".crt")
        key_data, cert_data = _fs.read_file(key_path), _fs.read_file(cert_path)
        if cert_data is not None and key_data is None and stem != "root" and (
                stem != "next" or self.load_state() is None):
            _fs.remove(cert_path)  # half-written: no key ever existed for it
            return self.load_pair(stem, passphrase, required)
        if stem in PENDING and cert_data is not None and key_data is not None:
            pending_key_path = self.file(PENDING[stem] + ".key")
            pending = _fs.read_file(pending_key_path)
            if pending is not None and _fs.read_file(self.file(PENDING[stem] + ".crt")) is None:
                cert = C.load_certificate(cert_data, path=cert_path)
                waiting = C.load_private_key(pending, passphrase, path=pending_key_path)
                if C.same_public_key(waiting, cert):  # promotion stopped between the renames
                    _fs.atomic_rename(pending_key_path, key_path)
                    key_data = _fs.read_file(key_path)
        if key_data is None and cert_data is None:
            if required:
                raise TrustzoneError("the zone has no root CA here", self.path,
                                     fix="run the trustzone.pki.ca role (playbooks/site.yml) "
                                         "first")
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

    def load_state(self):
        data = _fs.read_file(self.file(STATE_FILE))
        if data is None:
            return None
        try:
            state = json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise TrustzoneError("the rotation state is not valid JSON (%s)" % exc,
                                 self.file(STATE_FILE),
                                 fix="restore it from a backup") from exc
        if not isinstance(state, dict):
            raise TrustzoneError("the rotation state is not a JSON object",
                                 self.file(STATE_FILE), fix="restore it from a backup")
        R.phase_of(state)
        return state

    def has_root(self):
        """Whether the zone has a root here (read-only)."""
        return _fs.read_file(self.file("root.crt")) is not None

    def retired_pairs(self, passphrase):
        """``[(key, cert), ...]`` of every CA certificate the zone used and no longer uses
        (retired roots, replaced or extended ones, replaced intermediates), from ``retired/``.
        Read-only: a certificate without its key, or a key that does not match, is skipped."""
        retired = self.file("retired")
        try:
            names = sorted(os.listdir(retired))
        except OSError:
            return []
        pairs = []
        for name in names:
            if not name.endswith(".crt"):
                continue
            cert_path = os.path.join(retired, name)
            key_path = cert_path[:-len(".crt")] + ".key"
            cert_data, key_data = _fs.read_file(cert_path), _fs.read_file(key_path)
            if cert_data is None or key_data is None:
                continue
            cert = C.load_certificate(cert_data, path=cert_path)
            key = C.load_private_key(key_data, passphrase, path=key_path)
            if C.same_public_key(key, cert):
                pairs.append((key, cert))
        return pairs

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

    # ------------------------------------------------------------------ writing
    def write_pair(self, stem, key, cert, passphrase):
        """Certificate first, then key: a crash leaves a certificate without a key, which
        ``load_pair`` reports, never a key nobody can identify."""
        _fs.atomic_write(self.file(stem + ".crt"), C.certificate_pem(cert), 0o644,
                         self.uid, self.gid)
        _fs.atomic_write(self.file(stem + ".key"), C.private_key_pem(key, passphrase), 0o600,
                         self.uid, self.gid)

    def write_state(self, state):
        if state is None:
            _fs.remove(self.file(STATE_FILE))
            return
        _fs.atomic_write(self.file(STATE_FILE), json.dumps(state, sort_keys=True, indent=1),
                         0o600, self.uid, self.gid)

    def archive(self, stem):
        """Copy ``stem.crt``/``stem.key`` to ``retired/<fp16>.*`` (repeatable)."""
        crt = _fs.read_file(self.file(stem + ".crt"))
        if crt is None:
            return
        retired = self.file("retired")
        _fs.ensure_dir(retired, 0o700, self.uid, self.gid)
        cert = C.load_certificate(crt, path=self.file(stem + ".crt"))
        prefix = "" if stem in ("root", "next") else "intermediate-"
        target = os.path.join(retired, prefix + C.fingerprint(cert)[:16])
        _fs.atomic_write(target + ".crt", crt, 0o644, self.uid, self.gid)
        key = _fs.read_file(self.file(stem + ".key"))
        if key is not None:
            _fs.atomic_write(target + ".key", key, 0o600, self.uid, self.gid)

    def promote_next(self):
        """Archive the current root (and intermediate) in ``retired/`` and make the next ones
        current. Each step can be repeated: a run interrupted half-way finishes on the next
        try."""
        if _fs.read_file(self.file("next.crt")) is not None:  # not promoted yet
            self.archive("root")
            if _fs.read_file(self.file("next-intermediate.crt")) is not None:
                self.archive("intermediate")
                _fs.atomic_rename(self.file("next-intermediate.crt"),
                                  self.file("intermediate.crt"))
            if _fs.read_file(self.file("next-intermediate.key")) is not None:
                _fs.atomic_rename(self.file("next-intermediate.key"),
                                  self.file("intermediate.key"))
            _fs.atomic_rename(self.file("next.crt"), self.file("root.crt"))
        if _fs.read_file(self.file("next-intermediate.key")) is not None:
            _fs.atomic_rename(self.file("next-intermediate.key"), self.file("intermediate.key"))
        if _fs.read_file(self.file("next.key")) is not None:
            _fs.atomic_rename(self.file("next.key"), self.file("root.key"))
