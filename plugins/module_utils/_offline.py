# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The offline root: a zone root whose key never sits on the CA host.

With ``trustzone_ca_root_offline`` the root keys live in a store on the controller side
(``Store``: ``<fingerprint>.crt`` and ``<fingerprint>.key``, the key encrypted with its own
passphrase; files are never renamed or removed), and the CA host keeps the root
certificates and a marker (``root.offline``, ``_ca.OFFLINE``) in their place. The CA host
plans as always; where the plan needs the root key, it gets a ``_detached.DeferredKey``
that makes placeholders. The zone_root action and module then talk in rounds:

1. The module plans. A new root the store does not hold yet -> request ``create``. Anything
   the root must sign (an intermediate, an extended root, a root's CRL) -> the wanted state
   is saved as pending (``PENDING_FILE``: never in force) and the module returns ``sign``
   requests: the placeholders' DER.
2. The action (controller) creates the root in the store, or signs the placeholders with
   the root key (``fulfill``), and runs the module again with the signed objects.
3. The module accepts a signed object only when its to-be-signed bytes are the placeholder's
   and the root's certificate verifies its signature (``apply``), commits the pending state
   (a new generation, one rename) or publishes the pending CRLs, and plans again.

A crash between rounds leaves a pending file the next run discards (it names the generation
it was planned from) or a root in the store the CA host does not know yet (the next
``create`` takes it: ``_rootplan.supplied_root``). A root's CRL has its own long schedule
(``_revocation.deferred_due``), so revoking a leaf never needs the root key.
"""

from __future__ import annotations

import base64
import json
import os

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _detached
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

PENDING_FILE = "pending-root.json"
ROUNDS = 6  # create, sign the CA certificates, sign the CRLs - and room for a retry


# --------------------------------------------------------------------------- the CA host

def requests_for(debts):
    """The ``sign`` requests for ``debts`` (``_detached.DeferredKey.debts``)."""
    return [{"op": "sign", "id": str(i), "signer": d["signer"], "what": d["what"],
             "der": base64.b64encode(_detached.der(d["draft"])).decode("ascii")}
            for i, d in enumerate(debts)]


def save_pending(ca, kind, base, payload, debts):
    """Save what waits for the root's signatures (``kind`` ``state`` or ``crl``)."""
    record = dict(payload, kind=kind, base=base, debts=requests_for(debts))
    _fs.atomic_write(ca.file(PENDING_FILE), json.dumps(record, sort_keys=True), 0o600,
                     ca.uid, ca.gid)


def load_pending(ca):
    data = _fs.read_file(ca.file(PENDING_FILE))
    if data is None:
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except ValueError:
        return {"kind": "damaged"}
    return record if isinstance(record, dict) else {"kind": "damaged"}


def clear_pending(ca):
    if _fs.refuse_symlink(ca.file(PENDING_FILE)) is not None:
        _fs.remove(ca.file(PENDING_FILE))


def encode_files(files):
    return {rel: base64.b64encode(data).decode("ascii") for rel, data in files.items()}


def decode_files(files):
    return {rel: base64.b64decode(data) for rel, data in files.items()}


def signed_objects(pending, signed, signer_certs):
    """``{placeholder PEM: final PEM}`` for every request of ``pending``, from the
    controller's ``signed`` (``{id: base64 DER}``); raises TrustzoneError when one is missing
    or is not the placeholder signed by its root."""
    by_fp = {C.fingerprint(c): c for c in signer_certs}
    out = {}
    for request in pending.get("debts") or []:
        given = (signed or {}).get(request["id"])
        signer = by_fp.get(request["signer"])
        if given is None or signer is None:
            raise TrustzoneError("the controller did not sign %s" % request["what"],
                                 fix="run the play again; the offline root store must hold "
                                     "the root %s" % request["signer"][:16])
        placeholder = base64.b64decode(request["der"])
        try:
            final = _detached.accept(placeholder, base64.b64decode(given), signer)
        except ValueError as exc:
            raise TrustzoneError("refused the signed %s: %s" % (request["what"], exc)) from None
        out[_pem(_detached.load(placeholder))] = _pem(final)
    return out


def _pem(obj):
    if isinstance(obj, C.x509.CertificateRevocationList):
        return C.crl_pem(obj)
    return C.certificate_pem(obj)


def splice_files(files, replacements):
    """``files`` with every placeholder replaced by its signed object."""
    out = {}
    for rel, data in files.items():
        text = data.decode("ascii", "replace") if rel.endswith(".crt") else None
        out[rel] = replacements[text].encode("ascii") if text in replacements else data
    return out


def splice_text(text, replacements):
    for placeholder, final in replacements.items():
        text = text.replace(placeholder, final)
    return text


# --------------------------------------------------------------------------- the controller

class Store:
    """The offline root store: a directory on the controller side, mode 0700, with
    ``<fingerprint>.crt`` and ``<fingerprint>.key`` (PKCS#8, encrypted with the root
    passphrase, 0600) per root. Files are written once and never renamed or removed."""

    def __init__(self, path, passphrase):
        self.path = os.path.abspath(os.path.expanduser(str(path)))
        self.passphrase = passphrase

    def certificates(self):
        """PEM of every root the store holds (public)."""
        if not os.path.isdir(self.path):
            return []
        out = []
        for name in sorted(os.listdir(self.path)):
            if name.endswith(".crt") and not name.startswith("."):
                data = _fs.read_file(os.path.join(self.path, name))
                if data is not None:
                    out.append(data.decode("ascii"))
        return out

    def key(self, fingerprint):
        path = os.path.join(self.path, "%s.key" % fingerprint)
        data = _fs.read_file(path)
        if data is None:
            raise TrustzoneError("the offline root store has no key for root %s"
                                 % fingerprint[:16], path,
                                 fix="point trustzone_ca_root_dir at the zone's offline root "
                                     "store (restore it from where you keep it)")
        try:
            return C.load_private_key(data, self.passphrase, path=path)
        except TrustzoneError:
            raise TrustzoneError("trustzone_ca_root_passphrase does not open the offline root "
                                 "key", path,
                                 fix="give the passphrase the offline root was made with "
                                     "(from Ansible Vault)") from None

    def create(self, key, cert):
        """Write a new root (``key`` encrypted with the root passphrase)."""
        parent = os.path.dirname(self.path)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        uid, gid = os.getuid(), os.getgid()
        _fs.ensure_dir(self.path, 0o700, uid, gid)
        fp = C.fingerprint(cert)
        _fs.atomic_write(os.path.join(self.path, fp + ".key"),
                         C.private_key_pem(key, self.passphrase), 0o600, uid, gid)
        _fs.atomic_write(os.path.join(self.path, fp + ".crt"), C.certificate_pem(cert),
                         0o644, uid, gid)
        return fp


def fulfill(requests, store, make_root):
    """Do what the CA host asked with the offline root: ``(signed {id: base64 DER},
    [what the root key did])``. ``make_root()`` returns a new ``(key, cert)``."""
    signed, used = {}, []
    for request in requests:
        if request["op"] == "create":
            key, cert = make_root()
            fp = store.create(key, cert)
            used.append("made the %s root %s (key kept in %s)" % (
                "new" if request["stem"] == "root" else "next", fp[:16], store.path))
        elif request["op"] == "sign":
            key = store.key(request["signer"])
            final = _detached.sign_placeholder(base64.b64decode(request["der"]), key)
            signed[request["id"]] = base64.b64encode(final).decode("ascii")
            used.append("signed the %s with root %s" % (request["what"], request["signer"][:16]))
        else:
            raise TrustzoneError("unknown request %r from the CA host" % request.get("op"))
    return signed, used


def resume(ca, signed, signer_certs, ledger):
    """On the CA host, at the start of a round (under the CA's lock): apply the pending
    state or CRLs with the controller's ``signed`` objects; a pending file without them, or
    planned from another generation than the one in force, is discarded (a crashed or
    abandoned round: planning again redoes it). Returns what was applied: ``"state"``,
    ``"crl"`` or None."""
    # pylint: disable=import-outside-toplevel
    from ansible_collections.trustzone.pki.plugins.module_utils import _ca
    from ansible_collections.trustzone.pki.plugins.module_utils import _revocation
    pending = load_pending(ca)
    if pending is None:
        return None
    if not signed or pending.get("kind") not in ("state", "crl") or \
            pending.get("base") != ca.pointer():
        clear_pending(ca)
        return None
    if pending["kind"] == "state":
        files = decode_files(pending["files"])
        certs = [C.load_certificate(data) for rel, data in files.items() if rel.endswith(".crt")]
        replacements = signed_objects(pending, signed, list(signer_certs) + certs)
        ca.commit(_ca.Draft(splice_files(files, replacements), ca.path))
    else:
        replacements = signed_objects(pending, signed, signer_certs)
        conn = ledger.connect(ca.path)
        try:
            _revocation.publish(ca, conn, pending["number"], pending["generation"],
                                splice_text(pending["text"], replacements))
        finally:
            conn.close()
    clear_pending(ca)
    return pending["kind"]
