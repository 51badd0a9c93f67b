# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The zone's secrets key (QlikView's SecretsKey): the one file that knows it.

- **The keyring.** The CA host keeps the zone's secrets keys as a *keyring*: generations of
  Fernet keys (256 bits: 128 to sign, 128 to encrypt), each bound to the zone root it was
  made under. A root rotation adds a generation (``plan``); old generations stay so that
  values sealed before still open, until the operator retires them after re-sealing.
- **At rest** the keyring is one file in the CA's state generations (``secrets.keyring``,
  0600), encrypted with the CA passphrase: scrypt derives a key from it, and the keyring is a
  Fernet token under that key (``lock`` / ``unlock``). Backups carry it with the CA state.
- **To a node** the keyring travels as CMS EnvelopedData (RFC 5652) addressed to the node's
  ``secrets`` certificate (RSA key transport, AES-256-CBC): ``wrap`` on the controller,
  ``unwrap_with_cryptography`` or ``openssl cms -decrypt`` on the node. The controller wraps
  only to a certificate whose SHA-256 fingerprint the CA's ledger lists as the host's valid
  one (``recipient``): what a node says about its certificate decides nothing.
- **Values** are Fernet tokens (``seal`` / ``open_token`` / ``reseal``, MultiFernet: newest
  key seals, every generation opens). Nothing here invents a format: the envelope is CMS,
  the tokens are Fernet, the JSON inside either is plain data.

Pure apart from the crypto; no Ansible I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os

from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

KEYRING_FILE = _layout.SECRETS_KEYRING  # in a CA generation (see _ca.GENERATION_FILES)
ENVELOPE_FILE = _layout.SECRETS_ENVELOPE  # on a node, in the zone's directory
PROFILE = "secrets"  # the node profile whose certificate the keyring is wrapped to
KEYRING_FORMAT = "trustzone.pki/secrets-keyring/1"
CONTENT_FORMAT = "trustzone.pki/secrets-envelope/1"
# scrypt parameters for the keyring at rest (RFC 7914's interactive figures, doubled)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
MAX_GENERATIONS = 64

RSA_FIX = ("give the node a dedicated secrets profile with an RSA key, e.g. {name: secrets, "
           "key_type: rsa, key_size: 3072, key_usage: [key_encipherment], "
           "extended_key_usage: []} in trustzone_certs_profiles, and run playbooks/site.yml")


def _fernet():
    from cryptography.fernet import Fernet, MultiFernet, InvalidToken  # pylint: disable=import-outside-toplevel
    return Fernet, MultiFernet, InvalidToken


# ---------------------------------------------------------------------- keys and keyrings

def new_key():
    """A fresh 256-bit Fernet key (url-safe base64 text)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def key_id(key):
    """A public name for a key: 16 hex digits of SHA-256 over a label and the key."""
    return hashlib.sha256(b"trustzone.pki secrets key id\0" + key.encode("ascii")).hexdigest()[:16]


def _check_key(key, where):
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, ValueError, AttributeError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise TrustzoneError("holds a secrets key that is not a 256-bit Fernet key", where,
                             fix="restore the CA directory from a backup")
    return key


def check_keyring(keyring, zone, where):
    """``keyring`` as parsed from JSON, checked: ``{zone, generations: [...]}`` with
    generations ``{generation, key, root, created}`` in increasing generation order."""
    if not isinstance(keyring, dict) or keyring.get("format") != KEYRING_FORMAT:
        raise TrustzoneError("is not a trustzone.pki secrets keyring", where,
                             fix="restore the CA directory from a backup")
    if zone is not None and keyring.get("zone") != zone:
        raise TrustzoneError("is the secrets keyring of zone %r, not of zone %r"
                             % (keyring.get("zone"), zone), where,
                             fix="point trustzone_ca_dir at this zone's CA directory")
    gens = keyring.get("generations")
    if not isinstance(gens, list) or not gens or len(gens) > MAX_GENERATIONS:
        raise TrustzoneError("holds no usable secrets key generations", where,
                             fix="restore the CA directory from a backup")
    last = 0
    for gen in gens:
        if (not isinstance(gen, dict) or not isinstance(gen.get("generation"), int)
                or isinstance(gen.get("generation"), bool) or gen["generation"] <= last):
            raise TrustzoneError("lists its secrets key generations out of order", where,
                                 fix="restore the CA directory from a backup")
        last = gen["generation"]
        _check_key(gen.get("key"), where)
    return keyring


def keys_newest_first(keyring):
    return [g["key"] for g in reversed(keyring["generations"])]


def public_view(keyring):
    """What may be shown of a keyring: generation numbers, key ids, roots, times."""
    return [{"generation": g["generation"], "key_id": key_id(g["key"]), "root": g.get("root", ""),
             "created": g.get("created", "")} for g in keyring["generations"]]


def plan(keyring, zone, root_fingerprint, now, retire_before=0):
    """The keyring the zone wants, and what changes: ``(keyring, [change text])``.

    - no keyring yet: generation 1, bound to the zone's current root;
    - the newest generation belongs to another root (a rotation's use phase made a new one
      the zone's root): a new generation, the old ones kept;
    - ``retire_before`` N > 0: generations below N are dropped (the operator re-sealed every
      value sealed with them); the newest generation is never dropped.

    Pure apart from drawing new keys; re-running on its own result changes nothing."""
    if not root_fingerprint:
        raise TrustzoneError("zone %r has no root yet, so it has no secrets key" % zone,
                             fix="run playbooks/site.yml first")
    if isinstance(retire_before, bool) or not isinstance(retire_before, int) or retire_before < 0:
        raise TrustzoneError("trustzone_secrets_retire_before must be a generation number "
                             "(0: retire none), got %r" % (retire_before,),
                             fix="set it to the oldest generation to keep")
    changes = []
    when = now.strftime(_layout.ISO_TIME)
    if keyring is None:
        keyring = {"format": KEYRING_FORMAT, "zone": zone, "generations": []}
        changes.append("create secrets key generation 1 for root %s" % root_fingerprint[:16])
        gens = []
    else:
        gens = [dict(g) for g in keyring["generations"]]
        if gens[-1].get("root") != root_fingerprint:
            changes.append("add secrets key generation %d for the new root %s (older "
                           "generations still open what they sealed)"
                           % (gens[-1]["generation"] + 1, root_fingerprint[:16]))
    if not gens or gens[-1].get("root") != root_fingerprint:
        number = gens[-1]["generation"] + 1 if gens else 1
        gens.append({"generation": number, "key": new_key(), "root": root_fingerprint,
                     "created": when})
    if retire_before:
        newest = gens[-1]["generation"]
        if retire_before > newest:
            raise TrustzoneError("trustzone_secrets_retire_before is %d but the newest secrets "
                                 "key generation is %d: it would retire every key"
                                 % (retire_before, newest),
                                 fix="set it to %d at most (values sealed with the newest "
                                     "generation must stay readable)" % newest)
        gone = [g["generation"] for g in gens if g["generation"] < retire_before]
        if gone:
            changes.append("retire secrets key generation(s) %s"
                           % ", ".join(str(n) for n in gone))
            gens = [g for g in gens if g["generation"] >= retire_before]
    wanted = {"format": KEYRING_FORMAT, "zone": zone, "generations": gens}
    return wanted, changes


# ---------------------------------------------------------------------- at rest

def _kek(passphrase, salt, n, r, p):
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # pylint: disable=import-outside-toplevel
    if not isinstance(passphrase, str) or not passphrase:
        raise TrustzoneError("the zone secrets key is kept under the CA passphrase, and none "
                             "was given", fix="set trustzone_ca_passphrase (Ansible Vault)")
    raw = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


def lock(keyring, passphrase):
    """The keyring as its file's bytes: JSON naming scrypt's parameters and salt, and the
    keyring itself as a Fernet token under the key scrypt derives from ``passphrase``."""
    Fernet, _multi, _invalid = _fernet()
    salt = os.urandom(16)
    token = Fernet(_kek(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(
        json.dumps(keyring, sort_keys=True).encode("utf-8"))
    kdf = {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
           "salt": base64.b64encode(salt).decode("ascii")}
    outer = {"format": KEYRING_FORMAT, "kdf": kdf, "fernet": token.decode("ascii")}
    return (json.dumps(outer, sort_keys=True, indent=1) + "\n").encode("ascii")


def unlock(data, passphrase, zone, where):
    """The keyring in ``data`` (a file written by ``lock``); a clear error when it is damaged
    or ``passphrase`` does not open it."""
    _fernet_cls, _multi, InvalidToken = _fernet()
    try:
        outer = json.loads(bytes(data).decode("ascii"))
        kdf = outer["kdf"]
        if outer.get("format") != KEYRING_FORMAT or kdf.get("name") != "scrypt":
            raise ValueError("format")
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if not (2 ** 10 <= n <= 2 ** 20 and 1 <= r <= 32 and 1 <= p <= 16):
            raise ValueError("kdf")
        salt = base64.b64decode(kdf["salt"], validate=True)
        token = outer["fernet"].encode("ascii")
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, UnicodeError):
        raise TrustzoneError("is not a readable trustzone.pki secrets keyring", where,
                             fix="restore the CA directory from a backup "
                                 "(playbooks/restore.yml)") from None
    fernet = _fernet_cls(_kek(passphrase, salt, n, r, p))
    try:
        inner = fernet.decrypt(token)
    except InvalidToken:
        raise TrustzoneError("the CA passphrase does not open the zone's secrets keyring "
                             "(or the file was altered)", where,
                             fix="check trustzone_ca_passphrase; restore the CA directory "
                                 "from a backup if the file was damaged") from None
    try:
        keyring = json.loads(inner.decode("utf-8"))
    except (ValueError, UnicodeError):
        raise TrustzoneError("is not a readable trustzone.pki secrets keyring", where,
                             fix="restore the CA directory from a backup") from None
    return check_keyring(keyring, zone, where)


# ---------------------------------------------------------------------- to the nodes

def recipient(host, cert_pem, valid_fingerprints, profile=PROFILE):
    """The certificate the keyring may be wrapped to for ``host``, or a TrustzoneError.

    ``cert_pem`` is what the node sent (untrusted). It is used only when its SHA-256
    fingerprint is one the CA's ledger lists as ``host``'s valid ``profile`` certificate
    (``valid_fingerprints``: ``{profile: [fp, ...]}`` for the host), and when it can take a
    key by key transport (RSA, keyEncipherment)."""
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import rsa  # pylint: disable=import-outside-toplevel
    where = "host %s" % host
    fps = set((valid_fingerprints or {}).get(profile) or [])
    if not fps:
        raise TrustzoneError("%s holds no valid %r certificate in the CA's ledger, so the zone "
                             "secrets key is not sent to it" % (where, profile), fix=RSA_FIX)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii")
                                              if isinstance(cert_pem, str) else bytes(cert_pem))
    except (ValueError, TypeError, UnicodeError):
        raise TrustzoneError("%s sent no readable %r certificate" % (where, profile),
                             fix="run playbooks/site.yml so that the node holds one") from None
    fp = cert.fingerprint(hashes.SHA256()).hex()
    if fp not in fps:
        raise TrustzoneError("%s sent a %r certificate (sha256 %s) that is not its valid one in "
                             "the CA's ledger" % (where, profile, fp[:16]),
                             fix="run playbooks/site.yml so that the node holds the certificate "
                                 "the zone issued to it")
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise TrustzoneError("%s: the %r certificate's key is not RSA; CMS key transport "
                             "needs one" % (where, profile), fix=RSA_FIX)
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_encipherment:
            raise x509.ExtensionNotFound("no keyEncipherment", x509.KeyUsage.oid)
    except x509.ExtensionNotFound:
        raise TrustzoneError("%s: the %r certificate does not allow key encipherment"
                             % (where, profile), fix=RSA_FIX) from None
    return cert


def content(keyring):
    """The plaintext a node's envelope carries: the zone and its keys, newest first."""
    return json.dumps({"format": CONTENT_FORMAT, "zone": keyring["zone"],
                       "keys": [{"generation": g["generation"], "key": g["key"]}
                                for g in reversed(keyring["generations"])]},
                      sort_keys=True).encode("ascii")


def wrap(keyring, cert):
    """CMS EnvelopedData (PEM) of ``content(keyring)`` to ``cert`` (AES-256-CBC content
    encryption, RSA key transport): what ``openssl cms -decrypt`` opens with the node's key.
    Needs cryptography 44 or newer (the controller's)."""
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.ciphers import algorithms  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.serialization import pkcs7  # pylint: disable=import-outside-toplevel
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(content(keyring)).add_recipient(cert)
    if hasattr(builder, "set_content_encryption_algorithm"):
        builder = builder.set_content_encryption_algorithm(algorithms.AES256)
    return builder.encrypt(serialization.Encoding.PEM, [pkcs7.PKCS7Options.Binary]).decode("ascii")


def can_unwrap_with_cryptography():
    try:
        from cryptography.hazmat.primitives.serialization import pkcs7  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover
        return False
    return hasattr(pkcs7, "pkcs7_decrypt_pem")


def _pem_body(data):
    """The DER inside one PEM block, whatever its label (openssl writes ``CMS``,
    cryptography ``PKCS7``)."""
    lines = bytes(data).strip().splitlines()
    if len(lines) < 3 or not lines[0].startswith(b"-----BEGIN ") or \
            not lines[-1].startswith(b"-----END "):
        raise ValueError("not a PEM envelope")
    try:
        return base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except binascii.Error:
        raise ValueError("not a PEM envelope") from None


def unwrap_with_cryptography(envelope_pem, cert_pem, key_pem):
    """The plaintext of ``envelope_pem`` for the holder of ``key_pem`` (cryptography >= 45)."""
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.serialization import pkcs7  # pylint: disable=import-outside-toplevel
    cert = x509.load_pem_x509_certificate(bytes(cert_pem))
    key = serialization.load_pem_private_key(bytes(key_pem), password=None)
    try:
        return pkcs7.pkcs7_decrypt_der(_pem_body(envelope_pem), cert, key, [])
    except ValueError as exc:
        raise TrustzoneError("the zone secrets envelope does not open with this node's "
                             "secrets key (%s)" % exc, fix=OPEN_FIX) from None


OPEN_FIX = "run playbooks/secrets.yml so that this node receives the zone's secrets key"


def openssl_decrypt_argv(openssl, key_path, cert_path):
    """``openssl cms -decrypt`` reading the envelope on stdin: only paths on the command line."""
    return [openssl, "cms", "-decrypt", "-binary", "-inform", "PEM", "-inkey", key_path,
            "-recip", cert_path]


def parse_content(plaintext, zone, where):
    """``[(generation, key), ...]`` newest first, from an envelope's plaintext for ``zone``."""
    try:
        data = json.loads(bytes(plaintext).decode("ascii"))
        if data.get("format") != CONTENT_FORMAT:
            raise ValueError("format")
        keys = [(int(k["generation"]), _check_key(k["key"], where)) for k in data["keys"]]
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError):
        raise TrustzoneError("is not a trustzone.pki secrets envelope", where,
                             fix=OPEN_FIX) from None
    if data.get("zone") != zone:
        raise TrustzoneError("holds the secrets key of zone %r, not of zone %r"
                             % (data.get("zone"), zone), where, fix=OPEN_FIX)
    if not keys:
        raise TrustzoneError("holds no secrets key", where, fix=OPEN_FIX)
    return keys


def ids_of(keys):
    return [key_id(k) for _gen, k in keys]


def install_decision(installed_ids, wanted_ids):
    """Whether a node's envelope must be replaced: ``None`` when it opens (``installed_ids``:
    the ids of the keys it holds, newest first; ``None`` when it is missing or does not open
    with the node's key) to exactly ``wanted_ids``, else the reason."""
    if installed_ids is None:
        return "no envelope this node can open"
    if list(installed_ids) != list(wanted_ids):
        return "the zone's secrets key generations changed"
    return None


def check_not_older(held, offered, where):
    """Refuse to replace the keys a node holds (``held``: ``[(generation, key)]`` or None)
    with ``offered`` when that would lose one: a newer generation than any offered, or a
    generation number offered with another key. That is a CA restored from an old backup (or
    another zone's CA): installing it would make every value sealed with the lost key
    unreadable. Retiring old generations (a subset, the same newest) passes."""
    if not held:
        return
    offered_by_gen = dict(offered)
    newest_held = max(g for g, _k in held)
    newest_offered = max(offered_by_gen) if offered_by_gen else 0
    clash = [g for g, k in held if g in offered_by_gen and offered_by_gen[g] != k]
    if newest_held > newest_offered or clash:
        raise TrustzoneError(
            "this node holds zone secrets key generation %d%s, which the CA's keyring lacks: "
            "the CA was probably restored from an older backup; installing its keyring would "
            "make values sealed with the lost key unreadable"
            % (max(clash) if clash else newest_held,
               " with another key" if clash else ""), where,
            fix="restore the CA from its newest backup (playbooks/restore.yml); the node's "
                "envelope was left as it was")


# ---------------------------------------------------------------------- values

def _multi(keys, zone):
    Fernet, MultiFernet, _invalid = _fernet()
    if not keys:
        raise TrustzoneError("zone %r has no secrets key" % zone,
                             fix="run playbooks/secrets.yml first")
    return MultiFernet([Fernet(k.encode("ascii")) for k in keys])


def _as_bytes(value, what):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TrustzoneError("%s must be a string, got %s" % (what, type(value).__name__),
                         fix="seal text (quote numbers in YAML)")


def seal(value, keys, zone):
    """A Fernet token of ``value`` under the newest of ``keys`` (newest first)."""
    return _multi(keys, zone).encrypt(_as_bytes(value, "the value to seal")).decode("ascii")


def _token(token):
    if not isinstance(token, str) or not token.strip():
        raise TrustzoneError("the sealed value is empty or not text",
                             fix="pass the token trustzone.pki.seal produced")
    return token.strip().encode("ascii", "replace")


def open_token(token, keys, zone):
    """The value sealed in ``token`` with any of ``keys``; a clear error when none opens it."""
    _f, _m, InvalidToken = _fernet()
    try:
        return _multi(keys, zone).decrypt(_token(token))
    except InvalidToken:
        raise TrustzoneError("the sealed value does not open with zone %r's secrets key (any "
                             "of its %d generation(s)): it was sealed for another zone, with "
                             "a retired generation, or altered" % (zone, len(keys)),
                             fix="seal the value again for zone %r (playbooks/seal.yml)"
                                 % zone) from None


def open_with_generation(token, keys_by_generation, zone):
    """``(generation, value)``: ``token`` opened by the key of ``keys_by_generation``
    (``[(gen, key)]``, newest first) that sealed it; ``open_token``'s error when none does."""
    Fernet, _m, InvalidToken = _fernet()
    raw = _token(token)
    for gen, key in keys_by_generation:
        try:
            return gen, Fernet(key.encode("ascii")).decrypt(raw)
        except InvalidToken:
            continue
    return None, open_token(token, [k for _g, k in keys_by_generation], zone)  # raises


def generation_of(token, keys_by_generation, zone):
    """The generation whose key opens ``token`` (``keys_by_generation``: [(gen, key)])."""
    return open_with_generation(token, keys_by_generation, zone)[0]


def reseal(token, keys, zone):
    """``token`` sealed again under the newest key (MultiFernet.rotate); the value never
    leaves this function."""
    _f, _m, InvalidToken = _fernet()
    try:
        return _multi(keys, zone).rotate(_token(token)).decode("ascii")
    except InvalidToken:
        raise TrustzoneError("the sealed value does not open with zone %r's secrets key, so "
                             "it cannot be sealed again" % zone,
                             fix="seal the cleartext again (playbooks/seal.yml)") from None


def bound_root(phase, fingerprints):
    """The root a new generation belongs to: the one that signs now (``next`` in a rotation's
    use phase, ``root`` otherwise). ``fingerprints``: ``{'root': fp, 'next': fp}``."""
    if phase == "use" and fingerprints.get("next"):
        return fingerprints["next"]
    return fingerprints.get("root") or ""


def node_paths(zone_dir, envelope_path=None, cert_path=None, key_path=None):
    """``(envelope, certificate, key)`` paths on a node: the given ones, or the zone
    directory's ``keyring.p7m``, ``secrets.crt`` and ``secrets.key``."""
    return (envelope_path or os.path.join(zone_dir, ENVELOPE_FILE),
            cert_path or os.path.join(zone_dir, PROFILE + ".crt"),
            key_path or os.path.join(zone_dir, PROFILE + ".key"))


def command_runner(module):
    """``run(argv, data)`` for ``unwrap_on_node``: the module's run_command, bytes in and out."""
    def run(argv, data):
        return module.run_command(argv, data=data, binary_data=True, encoding=None)
    return run


def unwrap_on_node(envelope_pem, cert_path, key_path, run, zone, where):
    """``[(generation, key)]`` from ``envelope_pem`` opened with the node's secrets key: by
    cryptography when it can (45 and newer), else by ``openssl cms -decrypt`` through
    ``run(argv, data) -> (rc, stdout bytes, stderr bytes)`` (only paths on its command line;
    the envelope goes in on stdin, the keys come out on stdout)."""
    from ansible_collections.trustzone.pki.plugins.module_utils import _fs  # pylint: disable=import-outside-toplevel
    cert_pem = _fs.read_file(cert_path)
    if cert_pem is None:
        raise TrustzoneError("the node's %r certificate is missing" % PROFILE, cert_path,
                             fix=RSA_FIX)
    if can_unwrap_with_cryptography():
        key_pem = _fs.read_file(key_path)
        if key_pem is None:
            raise TrustzoneError("the node's %r key is missing" % PROFILE, key_path, fix=RSA_FIX)
        plaintext = unwrap_with_cryptography(envelope_pem, cert_pem, key_pem)
    else:
        _fs.refuse_symlink(key_path)
        rc, out, err = run(openssl_decrypt_argv("openssl", key_path, cert_path),
                           bytes(envelope_pem))
        if rc != 0:
            first = (err or b"").decode("utf-8", "replace").strip().splitlines()[:1]
            raise TrustzoneError("the zone secrets envelope does not open with this node's "
                                 "secrets key (openssl cms: %s)" % (first[0] if first else rc),
                                 where, fix=OPEN_FIX)
        plaintext = out
    return parse_content(plaintext, zone, where)


def rekey(data, current, new, zone, where):
    """The keyring file ``data`` under the ``new`` CA passphrase, or None when it already
    opens with ``new`` (a re-run after a change of passphrase). Raises when neither opens
    it, so a passphrase change never leaves the keyring behind."""
    try:
        keyring = unlock(data, current, zone, where)
    except TrustzoneError:
        unlock(data, new, zone, where)  # raises the clear error when this fails too
        return None
    return lock(keyring, new)


# ---------------------------------------------------------------------- to the controller

def seal_for_transport(data, transport_key):
    """``data`` (JSON-able) as a Fernet token under ``transport_key``: how a module hands a
    secret part of its result to its action plugin. ``-vvv`` prints a module's raw output
    before the action plugin can hide anything; the transport key came in as a no_log
    argument (like the CA passphrase), so that output shows only this token."""
    Fernet, _multi, _invalid = _fernet()
    return Fernet(transport_key.encode("ascii")).encrypt(
        json.dumps(data, sort_keys=True).encode("utf-8")).decode("ascii")


def open_from_transport(token, transport_key):
    """What ``seal_for_transport`` sealed; a clear error when ``transport_key`` does not open
    ``token``."""
    _fernet_cls, _multi, InvalidToken = _fernet()
    try:
        return json.loads(_fernet_cls(transport_key.encode("ascii")).decrypt(
            str(token).encode("ascii", "replace")).decode("utf-8"))
    except (InvalidToken, ValueError, UnicodeError):
        raise TrustzoneError("the module's result did not open with this task's transport key",
                             fix="run the task again (the module and its action plugin must "
                                 "come from the same trustzone.pki)") from None


def from_module(done, sealed_field, clear_field, transport_key):
    """Pop the sealed part of a module's result ``done`` (``sealed_field``) and open it with
    ``transport_key``; None when the module returned none. A clear copy (``clear_field``,
    what the module answers without a transport key) is dropped whatever it holds."""
    done.pop(clear_field, None)
    sealed = done.pop(sealed_field, None)
    return None if sealed is None else open_from_transport(sealed, transport_key)
