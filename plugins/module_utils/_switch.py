# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""A node's identity (key, certificate, full chain) switches as one unit: the pure decisions.

How a switch runs (module_utils/_backend.py, Identity, does the I/O through _fs):

1. inspect makes the next key as ``<key>.next-<h>``, ``h`` the first 16 hex digits of the
   SHA-256 of its public key: two overlapping runs never overwrite each other's pending key,
   and install finds the one that matches the certificate it got.
2. install stages the new full chain, then the new certificate, as ``<chain>.new-<h>`` and
   ``<cert>.new-<h>`` (fsynced). The staged certificate is the commit point: once it exists
   the new identity is complete on disk.
3. it renames the pending key over the key, the staged chain over the chain, the staged
   certificate over the certificate (each keeping ``.prev``).
4. every run of the node module first finishes (or, before the commit point, discards) a
   switch a crash interrupted, so after a crash between any two steps the node holds the
   old identity or the new one, complete.
"""

from __future__ import annotations

import hashlib
import re

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

PENDING = ".next-"
STAGED = ".new-"
LEGACY_PENDING = ".next"
_TAG = re.compile(r"^[0-9a-f]{16}$")

# Reasons that say the live key must not sign the next certificate.
NEW_KEY_REASONS = frozenset({"key_type", "unreadable_key", "missing_key", "revoked",
                             "key_mismatch"})


def key_tag(key):
    """16 hex digits naming a key by its public key (private key, public key or cert)."""
    if hasattr(key, "public_key"):
        key = key.public_key()
    return hashlib.sha256(C._spki(key)).hexdigest()[:16]


def pending_key_path(key_path, key):
    return key_path + PENDING + key_tag(key)


def staged_path(path, key):
    return path + STAGED + key_tag(key)


def tag_of(name, base, marker):
    """The tag of ``<base><marker><tag>`` or None (the basename of ``base`` is compared)."""
    if not name.startswith(base + marker):
        return None
    tag = name[len(base + marker):]
    return tag if _TAG.match(tag) else None


def needs_new_key(profile, reasons, have_live_key):
    """True when the next certificate must carry a new key.

    A renewal because the certificate was revoked always makes a new key, whatever
    ``regenerate_key`` says: the revoked certificate's key is treated as compromised."""
    codes = {r["reason"] if isinstance(r, dict) else r for r in reasons}
    if not have_live_key or codes & NEW_KEY_REASONS:
        return True
    return bool(profile.get("regenerate_key", True))


def rollback_refusal(cert, now, revoked):
    """Why the previous certificate must not come back (one line), or None.

    ``revoked`` is ``{(issuer DN, serial)}`` from the zone's CRL kept on the node."""
    if (cert.issuer.rfc4514_string(), cert.serial_number) in (revoked or set()):
        return ("the previous certificate (serial %x) is on the zone's CRL; rolling back to "
                "it would reinstate a revoked identity" % cert.serial_number)
    if C.not_after(cert) <= now:
        return ("the previous certificate expired on %s; rolling back to it would break the "
                "service" % C.not_after(cert).date())
    return None


def plan_recovery(staged_certs, staged_chains, keys):
    """What to do with a switch a crash interrupted, for one profile.

    ``staged_certs``/``staged_chains``: ``{tag: certificate or None (unreadable)}`` /
    ``{tag: True}`` of the staged files; ``keys``: ``{tag: path}`` of the keys present
    (pending keys and the live key, by their public key's tag).
    Returns ``{"finish": tag or None, "discard": [("cert"|"chain", tag), ...]}``: finish the
    newest complete staged identity (a certificate whose key is here), discard the rest.
    """
    finish = None
    complete = sorted((C.not_before(cert), tag) for tag, cert in staged_certs.items()
                      if cert is not None and tag in keys and key_tag(cert) == tag)
    if complete:
        finish = complete[-1][1]
    discard = [("cert", tag) for tag in sorted(staged_certs) if tag != finish]
    discard += [("chain", tag) for tag in sorted(staged_chains)
                if tag != finish and tag not in staged_certs]
    # A chain staged with its certificate goes (or stays) with it.
    discard += [("chain", tag) for tag in sorted(staged_chains)
                if tag != finish and tag in staged_certs]
    return {"finish": finish, "discard": discard}


def require_match(found, name, path):
    if found is None:
        raise TrustzoneError("no key on this node matches the new %s certificate" % name, path,
                             fix="re-run the play: the node makes a new key and request")
    return found
