# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The zone's CA directory on the CA host: one place that knows its files.

``root.crt``/``root.key``  the current root (key PKCS#8, encrypted)
``next.crt``/``next.key``  the next root, during a rotation
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


class CaDir:
    def __init__(self, path, uid=0, gid=0):
        self.path = path
        self.uid, self.gid = uid, gid

    def file(self, name):
        return os.path.join(self.path, name)

    # ------------------------------------------------------------------ reading
    def load_pair(self, stem, passphrase, required=False):
        """``(key, cert)`` for ``stem`` ('root', 'next'); ``(None, None)`` when both are absent."""
        key_path, cert_path = self.file(stem + ".key"), self.file(stem + ".crt")
        key_data, cert_data = _fs.read_file(key_path), _fs.read_file(cert_path)
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

    def issuer(self, passphrase):
        """``(key, cert, chain)`` that signs leaves now, following the rotation phase."""
        state = self.load_state()
        phase = R.phase_of(state)
        key, cert = self.load_pair("root", passphrase, required=True)
        if phase == "use":
            nkey, ncert = self.load_pair("next", passphrase)
            if ncert is not None:
                return nkey, ncert, []
            if C.fingerprint(cert) != state.get("new"):
                raise TrustzoneError("the rotation is in phase 'use' but the next root is "
                                     "missing", self.file("next.crt"),
                                     fix="restore the CA directory from a backup")
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

    def promote_next(self):
        """Archive the current root in ``retired/`` and make the next root current.

        Each step can be repeated: a run interrupted half-way finishes on the next try.
        """
        retired = self.file("retired")
        _fs.ensure_dir(retired, 0o700, self.uid, self.gid)
        root_crt = _fs.read_file(self.file("root.crt"))
        next_crt = _fs.read_file(self.file("next.crt"))
        if next_crt is not None:  # not promoted yet: archive the old root, then promote
            old = C.load_certificate(root_crt, path=self.file("root.crt"))
            stem = os.path.join(retired, C.fingerprint(old)[:16])
            _fs.atomic_write(stem + ".crt", root_crt, 0o644, self.uid, self.gid)
            _fs.atomic_write(stem + ".key", _fs.read_file(self.file("root.key")), 0o600,
                             self.uid, self.gid)
            _fs.atomic_rename(self.file("next.crt"), self.file("root.crt"))
        if _fs.read_file(self.file("next.key")) is not None:
            _fs.atomic_rename(self.file("next.key"), self.file("root.key"))
