# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Changing the CA passphrase: which keys to re-encrypt, decided before anything is written.

Pure: takes ``{path: PEM bytes}`` of every private key of the CA directory and returns the
re-encrypted PEM of each key that still needs it. Every key is opened first; if any opens with
neither passphrase, nothing is returned (an error names the key), so a wrong current
passphrase changes nothing. A key that already opens with the new passphrase is left alone,
so a run interrupted half-way is finished by running it again.
"""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

MIN_PASSPHRASE = _layout.MIN_PASSPHRASE


def is_private_key(data):
    """True for a PEM private key (encrypted or not)."""
    head = bytes(data[:4096]).lstrip()
    return head.startswith(b"-----BEGIN") and b"PRIVATE KEY-----" in head


def _opens(data, passphrase, path):
    try:
        return C.load_private_key(data, passphrase, path=path)
    except TrustzoneError:
        return None


def plan_rekey(keys, current, new):
    """``{path: new PEM}`` for the keys to re-encrypt, and ``[path]`` of those already done.

    Raises TrustzoneError (and plans nothing) when a key opens with neither passphrase."""
    if not isinstance(new, str) or len(new) < MIN_PASSPHRASE:
        raise TrustzoneError("the new CA passphrase must be at least %d characters"
                             % MIN_PASSPHRASE,
                             fix="set trustzone_ca_new_passphrase (Ansible Vault)")
    if new == current:
        raise TrustzoneError("the new CA passphrase is the same as the current one",
                             fix="set trustzone_ca_new_passphrase to the new passphrase")
    if not keys:
        raise TrustzoneError("the CA directory holds no private key",
                             fix="run playbooks/site.yml first")
    todo, done, refused = {}, [], []
    for path in sorted(keys):
        data = bytes(keys[path])
        encrypted = b"ENCRYPTED" in data
        key = _opens(data, current, path)
        if key is not None:
            if not encrypted or _opens(data, new, path) is None:
                todo[path] = key
            else:  # pragma: no cover - two passphrases opening one key
                done.append(path)
            continue
        if encrypted and _opens(data, new, path) is not None:
            done.append(path)
            continue
        refused.append(path)
    if refused:
        raise TrustzoneError(
            "the current CA passphrase does not open %s; nothing was changed"
            % ", ".join(refused), refused[0] if len(refused) == 1 else None,
            fix="check trustzone_ca_passphrase (the passphrase in effect now)")
    result = {}
    for path, key in todo.items():
        pem = C.private_key_pem(key, new)
        again = C.load_private_key(pem, new, path=path)
        if not C.same_public_key(again, key):  # pragma: no cover - cryptography bug
            raise TrustzoneError("re-encrypting the key did not round-trip", path)
        result[path] = pem
    return result, done
