# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""What an export of a node identity holds, and whether an existing one already holds it.

An *export* is a copy of one identity (key, certificate, chain) in the form a consumer wants:
a PKCS#12 bundle (see ``_pkcs12``) or a *PEM set* - files named and laid out as the consumer
expects, such as QlikView's ``root.pem``, ``server.pem`` and ``server_key.pem``.

Every decision compares decoded contents: certificates by their DER, keys by their unencrypted
PKCS#8 DER (an encrypted key is decrypted first), so re-encoding or random salts never cause a
rewrite and a different key always does. Pure functions; no file or Ansible I/O.
"""

from __future__ import annotations

import base64
import binascii
import re

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

try:
    from cryptography.hazmat.primitives import serialization
except ImportError:  # pragma: no cover - reported by the modules via missing_required_lib
    pass

# What a file of a PEM set can hold.
PEM_KINDS = {
    "cert": "the certificate",
    "key": "the private key",
    "fullchain": "the certificate, then its intermediates",
    "root": "the zone root the certificate chains to",
    "roots": "every current root of the zone (two during a root rotation)",
    "combined": "the private key, then the certificate and its intermediates",
}
KEY_KINDS = ("key", "combined")
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_PEM_BLOCK_RE = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\s*(?P<body>[A-Za-z0-9+/=\s]*?)\s*"
    r"-----END (?P=label)-----",
    re.S)


def identity_chain(key, cert, intermediates, roots, where="certificate"):
    """``(intermediates, root)`` of a node identity, after checking it is usable for export.

    The key must belong to the certificate and the certificate must chain to one of the zone's
    current ``roots`` through ``intermediates`` (in any order; only the ones on the path are
    returned, leaf-side first).
    """
    if not C.same_public_key(key, cert):
        raise TrustzoneError("the private key does not belong to the certificate", where,
                             fix="run the certs role: it reissues a mismatched identity")
    path = C.chain_to(cert, intermediates, roots)
    if path is None:
        raise TrustzoneError("the certificate does not chain to a current root of the zone",
                             where, fix="run the trust and certs roles first (playbooks/site.yml)")
    return path[1:-1], path[-1]


def check_file_name(name):
    """A PEM-set file name: a plain name inside the set's directory, never a path."""
    text = str(name)
    if not _FILE_NAME_RE.match(text) or text in (".", ".."):
        raise TrustzoneError("%r is not a plain file name" % (name,),
                             fix="use letters, digits, '.', '_' and '-' only; the set's "
                                 "directory is given separately")
    return text


def pem_set(files, key, cert, intermediates, root, roots, key_passphrase=None):
    """``{name: pem_text}`` for a PEM set described by ``files`` (``{name: kind}``)."""
    if not files:
        raise TrustzoneError("a PEM set needs at least one file",
                             fix="map file names to kinds, e.g. {server.pem: cert}")
    key_pem = C.private_key_pem(key, key_passphrase).decode("ascii")
    cert_pem = C.certificate_pem(cert)
    chain_pem = "".join(C.certificate_pem(c) for c in intermediates)
    texts = {
        "cert": cert_pem,
        "key": key_pem,
        "fullchain": cert_pem + chain_pem,
        "root": C.certificate_pem(root),
        "roots": "".join(C.certificate_pem(c) for c in roots),
        "combined": key_pem + cert_pem + chain_pem,
    }
    out = {}
    for name, kind in sorted(files.items()):
        name = check_file_name(name)
        if kind not in PEM_KINDS:
            raise TrustzoneError("file %s: unknown kind %r" % (name, kind),
                                 fix="use one of %s" % ", ".join(sorted(PEM_KINDS)))
        out[name] = texts[kind]
    return out


def decoded_blocks(data, passphrase=None):
    """The PEM blocks of ``data`` as ``[(kind, der), ...]`` with keys decrypted and normalised.

    ``kind`` is ``certificate`` or ``key``; a key becomes its unencrypted PKCS#8 DER, so the
    same key compares equal however it is encoded or encrypted. TrustzoneError for anything
    that cannot be decoded (including an encrypted key the passphrase does not open).
    """
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
    blocks = []
    matches = list(_PEM_BLOCK_RE.finditer(text))
    if text.count("-----BEGIN") != len(matches):
        raise TrustzoneError("holds a malformed PEM block")
    for match in matches:
        label = match.group("label")
        if label == "CERTIFICATE":
            try:
                der = base64.b64decode("".join(match.group("body").split()), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise TrustzoneError("holds a malformed certificate") from exc
            blocks.append(("certificate", der))
        elif label.endswith("PRIVATE KEY"):
            key = C.load_private_key(match.group(0), passphrase=passphrase)
            blocks.append(("key", key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())))
        else:
            raise TrustzoneError("holds a %s block" % label)
    return blocks


def pem_reason(existing, wanted, passphrase=None):
    """Why the file content ``existing`` (bytes or None) must be rewritten as ``wanted``.

    None when it already holds the same certificates and keys in the same order, and any key
    in it is encrypted exactly when ``passphrase`` is set (and opens with it).
    """
    if existing is None:
        return "missing"
    try:
        have = decoded_blocks(existing, passphrase)
    except TrustzoneError:
        return "unreadable"
    if have != decoded_blocks(wanted, passphrase):
        return "content"
    text = existing.decode("utf-8", errors="replace") if isinstance(existing, bytes) else existing
    has_key = "PRIVATE KEY-----" in text
    if has_key and ("ENCRYPTED PRIVATE KEY" in text) != bool(passphrase):
        return "key_encryption"
    return None
