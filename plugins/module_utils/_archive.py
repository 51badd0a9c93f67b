# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The CA backup archive: build, encrypt, decrypt, verify. Pure functions, no file I/O.

An archive holds every regular file of a zone's CA directory with its mode, plus a manifest,
encrypted and authenticated with a key derived from a passphrase::

    offset  size  field
    0       8     magic  b"TZBACKUP"
    8       1     format version (1)
    9       4     header length H, big-endian
    13      4     CRC-32 of the header, big-endian
    17      H     header: canonical JSON (sorted keys, no spaces), UTF-8
                    {"body_length": B, "check": hex, "cipher": {"name": "AES-256-GCM",
                     "nonce": b64}, "compression": "zlib", "format": 1,
                     "kdf": {"name": "scrypt", "salt": b64, "n": N, "r": R, "p": P}}
    17+H    B     body: AES-256-GCM(zlib(payload)) with its 16-byte tag at the end;
                  the associated data is bytes 0 .. 17+H (everything before the body),
                  so no header field can be changed without the body failing to open
    17+H+B  32    SHA-256 of everything before it (a plain checksum)

scrypt(passphrase, salt, N, r, p) gives 64 bytes: the first 32 are the AES key; the last 32
only feed ``check`` (HMAC-SHA256 of a fixed label), which tells a wrong passphrase apart from
an altered body without revealing anything about the AES key. The CRC and the checksum tell
accidental damage and truncation apart from both, before the (deliberately slow) key
derivation. Neither is a security measure: authenticity rests on AES-GCM alone.

The payload (after zlib decompression) is::

    4 bytes  manifest length M, big-endian
    M bytes  manifest: canonical JSON
    ...      the files' bytes, concatenated in the manifest's order

The manifest names the zone, its root fingerprints (current, next, retired), when the archive
was made, by which collection version, and every file (path relative to the CA directory,
mode, size, SHA-256). Private keys stay as they are in the CA directory: PKCS#8, encrypted with
the CA passphrase. Nothing here decrypts them except :func:`check_ca_files`, which only proves
they open.

Runs on the CA host, so only ``cryptography`` 3.4+ APIs that Debian 12's 38.0.4 has are used
(Scrypt, AESGCM).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import posixpath
import re
import struct
import zlib

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _ca as CA
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _secrets as SECRETS
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
except ImportError:  # pragma: no cover - reported by the modules via _crypto.HAS_CRYPTOGRAPHY
    pass

MAGIC = b"TZBACKUP"
FORMAT = 1
PREFIX_LEN = len(MAGIC) + 1 + 4 + 4
CHECKSUM_LEN = 32
TAG_LEN = 16
MAX_HEADER = 4096
SUFFIX = ".tzbackup"

# scrypt cost for new archives: 128 * r * n = 128 MiB of memory, about 0.3-0.5 s.
DEFAULT_KDF = {"n": 2 ** 17, "r": 8, "p": 1}
# An archive asking for more than this is refused before deriving anything (1 GiB).
MAX_KDF_MEMORY = 1024 * 1024 * 1024
CHECK_LABEL = b"trustzone.pki backup passphrase check"
MIN_PASSPHRASE = _layout.MIN_PASSPHRASE

SQLITE_MAGIC = b"SQLite format 3\x00"
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_@%+=:,.-]+$")


# --------------------------------------------------------------------------- errors

class ArchiveError(TrustzoneError):
    """The archive cannot be used; subclasses say why."""


class ArchiveInvalid(ArchiveError):
    """Not a trustzone backup, an unsupported format, or inconsistent contents."""


class ArchiveTruncated(ArchiveError):
    """Shorter than its header says: an interrupted copy or download."""


class ArchiveDamaged(ArchiveError):
    """The checksum does not match: bytes changed after the archive was made."""


class ArchiveWrongPassphrase(ArchiveError):
    """The passphrase does not open this archive."""


class ArchiveTampered(ArchiveError):
    """The checksum matches but authentication fails: altered on purpose."""


# --------------------------------------------------------------------------- helpers

def _b(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def check_passphrase(passphrase, what="backup passphrase"):
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE:
        raise TrustzoneError("the %s must be at least %d characters" % (what, MIN_PASSPHRASE),
                             fix="set trustzone_backup_passphrase (Ansible Vault)")


def check_relpath(path):
    """A path inside the CA directory: relative, '/'-separated, no '.', '..' or empty
    segment, only plain characters. Returns it unchanged or raises ArchiveInvalid."""
    if not isinstance(path, str) or not path or len(path) > 255:
        raise ArchiveInvalid("invalid file name %r in the archive" % (path,))
    if path.startswith("/") or posixpath.normpath(path) != path:
        raise ArchiveInvalid("file name %r in the archive is not a plain relative path" % path)
    for segment in path.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT_RE.match(segment):
            raise ArchiveInvalid("file name %r in the archive is not a plain relative path"
                                 % path)
    return path


def _kdf_memory(params):
    return 128 * params["r"] * params["n"]


def _derive(passphrase, salt, params):
    out = Scrypt(salt=salt, length=64, n=params["n"], r=params["r"], p=params["p"]).derive(
        _b(passphrase))
    return out[:32], hmac.new(out[32:], CHECK_LABEL, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- manifest

def root_fingerprints(files):
    """``{'current', 'next', 'retired', 'intermediate', 'next_intermediate'}`` from the
    certificates among ``files`` ({path: (mode, bytes)}) of the CA state in force (the
    generation ``current`` names, or the legacy flat files); absent ones are None / []."""
    files = CA.logical_files(files)

    def fp(path):
        if path not in files:
            return None
        return C.fingerprint(C.load_certificate(files[path][1], path=path))

    retired = []
    for path in sorted(files):
        if path.startswith("retired/") and path.endswith(".crt") \
                and not posixpath.basename(path).startswith("intermediate-"):
            retired.append(fp(path))
    return {"current": fp("root.crt"), "next": fp("next.crt"), "retired": retired,
            "intermediate": fp("intermediate.crt"),
            "next_intermediate": fp("next-intermediate.crt")}


def make_manifest(zone, files, created_at, collection_version, ca_dir=None):
    """The manifest of ``files`` ({relative path: (mode, bytes)}): refuses a directory without
    a root and names every file with its mode, size and SHA-256."""
    if "root.crt" not in CA.logical_files(files):
        raise TrustzoneError("the CA directory has no root.crt: nothing worth backing up",
                             ca_dir, fix="run playbooks/site.yml first, or point "
                                         "trustzone_ca_dir at the zone's CA directory")
    entries = []
    for path in sorted(files):
        mode, data = files[path]
        check_relpath(path)
        entries.append({"path": path, "mode": int(mode) & 0o777, "size": len(data),
                        "sha256": sha256_hex(data)})
    return {
        "format": FORMAT,
        "zone": zone,
        "created_at": created_at,
        "collection_version": collection_version,
        "ca_dir": ca_dir,
        "roots": root_fingerprints(files),
        "files": entries,
    }


# --------------------------------------------------------------------------- build

def build(manifest, files, passphrase, kdf=None, urandom=os.urandom):
    """Archive bytes for ``files`` described by ``manifest`` (from :func:`make_manifest`)."""
    check_passphrase(passphrase)
    kdf = dict(DEFAULT_KDF, **(kdf or {}))
    parts = [_canonical(manifest)]
    for entry in manifest["files"]:
        data = files[entry["path"]][1]
        if len(data) != entry["size"] or sha256_hex(data) != entry["sha256"]:
            raise ArchiveInvalid("file %s changed while the archive was being made"
                                 % entry["path"], fix="run the backup again")
        parts.append(data)
    payload = struct.pack(">I", len(parts[0])) + b"".join(parts)
    body_plain = zlib.compress(payload, 6)

    salt, nonce = urandom(16), urandom(12)
    key, check = _derive(passphrase, salt, kdf)
    header = _canonical({
        "format": FORMAT,
        "kdf": {"name": "scrypt", "salt": base64.b64encode(salt).decode("ascii"),
                "n": kdf["n"], "r": kdf["r"], "p": kdf["p"]},
        "cipher": {"name": "AES-256-GCM", "nonce": base64.b64encode(nonce).decode("ascii")},
        "compression": "zlib",
        "check": check,
        "body_length": len(body_plain) + TAG_LEN,
    })
    prefix = MAGIC + struct.pack(">BII", FORMAT, len(header), zlib.crc32(header)) + header
    body = AESGCM(key).encrypt(nonce, body_plain, prefix)
    data = prefix + body
    return data + hashlib.sha256(data).digest()


# --------------------------------------------------------------------------- open

def read_header(data):
    """Parse and sanity-check everything before the body, without a passphrase.

    Returns ``(header, prefix_length)``; raises ArchiveInvalid / ArchiveTruncated /
    ArchiveDamaged."""
    data = bytes(data)
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            raise ArchiveTruncated("the archive is truncated: %d bytes, not even a header"
                                   % len(data), fix="copy the archive again from where it "
                                                    "is kept")
        raise ArchiveInvalid("not a trustzone backup archive (no TZBACKUP signature)",
                             fix="give the .tzbackup file made by playbooks/backup.yml")
    if data[:len(MAGIC)] != MAGIC:
        raise ArchiveInvalid("not a trustzone backup archive (no TZBACKUP signature)",
                             fix="give the .tzbackup file made by playbooks/backup.yml")
    if len(data) < PREFIX_LEN:
        raise ArchiveTruncated("the archive is truncated: %d bytes, not even a header"
                               % len(data), fix="copy the archive again from where it is kept")
    version, header_len, header_crc = struct.unpack(">BII", data[len(MAGIC):PREFIX_LEN])
    intact = hashlib.sha256(data[:-CHECKSUM_LEN]).digest() == data[-CHECKSUM_LEN:]
    if version != FORMAT:
        if not intact:
            raise _damaged()
        raise ArchiveInvalid("archive format %d is not supported (this collection reads "
                             "format %d)" % (version, FORMAT),
                             fix="restore with the collection version that made it")
    if header_len > MAX_HEADER:
        raise _damaged() if not intact else ArchiveInvalid("archive header too long")
    end = PREFIX_LEN + header_len
    if len(data) < end:
        raise ArchiveTruncated("the archive is truncated: %d bytes, its header alone needs %d"
                               % (len(data), end),
                               fix="copy the archive again from where it is kept")
    if zlib.crc32(data[PREFIX_LEN:end]) != header_crc:
        raise _damaged()
    try:
        header = json.loads(data[PREFIX_LEN:end].decode("utf-8"))
        kdf, cipher = header["kdf"], header["cipher"]
        params = {"n": int(kdf["n"]), "r": int(kdf["r"]), "p": int(kdf["p"])}
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        body_length = int(header["body_length"])
        valid = (kdf["name"] == "scrypt" and cipher["name"] == "AES-256-GCM"
                 and header.get("compression") == "zlib" and len(nonce) == 12
                 and len(salt) >= 16 and body_length >= TAG_LEN and params["n"] > 1
                 and params["n"] & (params["n"] - 1) == 0 and params["r"] > 0
                 and params["p"] > 0)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise _damaged() if not intact else ArchiveInvalid(
            "the archive header is not understood", fix="give a .tzbackup file made by "
                                                        "playbooks/backup.yml")
    expected = end + body_length + CHECKSUM_LEN
    if len(data) < expected:
        raise ArchiveTruncated("the archive is truncated: %d bytes, expected %d (an "
                               "interrupted copy?)" % (len(data), expected),
                               fix="copy the archive again from where it is kept")
    if len(data) > expected:
        raise ArchiveDamaged("the archive has %d unexpected bytes at its end"
                             % (len(data) - expected),
                             fix="use an unaltered copy of the archive")
    if not intact:
        raise _damaged()
    if _kdf_memory(params) > MAX_KDF_MEMORY or params["p"] > 16:
        raise ArchiveInvalid("the archive asks for scrypt parameters beyond the limit "
                             "(n=%(n)d r=%(r)d p=%(p)d)" % params,
                             fix="use an archive made by playbooks/backup.yml")
    header["_params"], header["_salt"], header["_nonce"] = params, salt, nonce
    return header, end


def _damaged():
    return ArchiveDamaged("the archive is damaged or was altered: its checksum does not match",
                          fix="use an unaltered copy of the archive (compare its sha256 with "
                              "the one backup.yml printed)")


def open_archive(data, passphrase):
    """Verify and decrypt: ``(manifest, {path: (mode, bytes)})``.

    Raises ArchiveTruncated, ArchiveDamaged, ArchiveWrongPassphrase, ArchiveTampered or
    ArchiveInvalid, each with a message meant for the operator."""
    data = bytes(data)
    header, end = read_header(data)
    key, check = _derive(passphrase, header["_salt"], header["_params"])
    if not hmac.compare_digest(check.encode("ascii"), str(header["check"]).encode("utf-8")):
        raise ArchiveWrongPassphrase(
            "wrong backup passphrase: it does not open this archive",
            fix="give the trustzone_backup_passphrase that was in effect when the archive was "
                "made (it defaults to trustzone_ca_passphrase)")
    body = data[end:len(data) - CHECKSUM_LEN]
    try:
        plain = AESGCM(key).decrypt(header["_nonce"], body, data[:end])
    except InvalidTag:
        raise ArchiveTampered("the archive failed authentication: it was altered after it "
                              "was made", fix="use an unaltered copy of the archive") from None
    try:
        payload = zlib.decompress(plain)
    except zlib.error:
        raise ArchiveInvalid("the archive's contents cannot be decompressed") from None
    return _unpack(payload)


def _unpack(payload):
    if len(payload) < 4:
        raise ArchiveInvalid("the archive's contents are empty")
    (mlen,) = struct.unpack(">I", payload[:4])
    try:
        manifest = json.loads(payload[4:4 + mlen].decode("utf-8"))
        entries = manifest["files"]
        if manifest.get("format") != FORMAT or not isinstance(entries, list):
            raise ValueError("format")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ArchiveInvalid("the archive's manifest is not understood") from None
    files = {}
    offset = 4 + mlen
    for entry in entries:
        try:
            path, mode, size, digest = (entry["path"], int(entry["mode"]), int(entry["size"]),
                                        str(entry["sha256"]))
        except (KeyError, TypeError, ValueError):
            raise ArchiveInvalid("the archive's manifest has a malformed file entry") from None
        check_relpath(path)
        if path in files or size < 0 or mode & ~0o777:
            raise ArchiveInvalid("the archive's manifest has an invalid entry for %s" % path)
        data = payload[offset:offset + size]
        offset += size
        if len(data) != size or sha256_hex(data) != digest:
            raise ArchiveInvalid("%s in the archive does not match its manifest entry" % path)
        files[path] = (mode, data)
    if offset != len(payload):
        raise ArchiveInvalid("the archive holds data its manifest does not describe")
    _check_tree(files)
    return manifest, files


def _check_tree(files):
    """No path may be both a file and a directory."""
    dirs = set()
    for path in files:
        parts = path.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    clash = sorted(dirs & set(files))
    if clash:
        raise ArchiveInvalid("%s is both a file and a directory in the archive" % clash[0])


def describe(manifest):
    """What an operator needs to know about an archive (no file contents)."""
    return {
        "zone": manifest.get("zone"),
        "created_at": manifest.get("created_at"),
        "collection_version": manifest.get("collection_version"),
        "roots": manifest.get("roots"),
        "files": [{"path": e["path"], "mode": "%04o" % e["mode"], "size": e["size"],
                   "sha256": e["sha256"]} for e in manifest.get("files", [])],
    }


# --------------------------------------------------------------------------- CA contents

def not_carried(files):
    """What a backup of ``files`` (a whole CA tree) cannot carry, one line each: keys in a
    PKCS#11 token (never exportable) and offline root keys (on the controller), by the
    markers the state in force keeps in their place (``_ca.PKCS11``, ``_ca.OFFLINE``)."""
    out = []
    for rel, value in sorted(CA.logical_files(files).items()):
        data = bytes(value[1] if isinstance(value, tuple) else value).decode("utf-8", "replace")
        stem = rel.rsplit(".", 1)[0]
        if rel.endswith(CA.PKCS11):
            out.append("%s: the key labelled %s stays in the PKCS#11 token (not exportable): "
                       "restore onto a CA host that reaches the same token" % (stem, data.strip()))
        elif rel.endswith(CA.OFFLINE):
            out.append("%s: the offline root key %s stays in the controller's offline root "
                       "store: keep that store yourself" % (stem, data.strip()[:16]))
    return out


def _key_pairs(files):
    """``[(stem path, key path or None, cert path or None)]`` for every .key/.crt stem."""
    stems = {}
    for path in files:
        for ext in (".key", ".crt"):
            if path.endswith(ext):
                stems.setdefault(path[:-len(ext)], {})[ext] = path
    return [(stem, parts.get(".key"), parts.get(".crt")) for stem, parts in
            sorted(stems.items())]


def check_ca_files(files, ca_passphrase=None, where="archive"):
    """Prove the CA files are usable: root.crt present and readable, every certificate
    parses, and (with ``ca_passphrase``) every key opens and belongs to its certificate.
    ``where`` is ``'archive'`` (restoring) or ``'directory'`` (backing up), for the messages.

    Raises TrustzoneError naming the first file that fails."""
    if "root.crt" not in CA.logical_files(files):
        raise ArchiveInvalid("the %s has no root.crt" % where,
                             fix="use a backup of a working CA")
    for stem, key_path, cert_path in _key_pairs(files):
        cert = None
        if cert_path is not None:
            cert = C.load_certificate(files[cert_path][1], path=cert_path)
        if key_path is None or not ca_passphrase:
            continue
        try:
            key = C.load_private_key(files[key_path][1], ca_passphrase, path=key_path)
        except TrustzoneError:
            if where == "archive":
                fix = ("the archive was made before a passphrase change: restore it with the "
                       "passphrase of that time (-e trustzone_ca_passphrase=...), then run "
                       "playbooks/change_passphrase.yml")
            else:
                fix = ("check trustzone_ca_passphrase; a backup of keys nobody can open would "
                       "be worthless")
            raise TrustzoneError("the key in the %s does not open with trustzone_ca_passphrase"
                                 % where, key_path, fix=fix) from None
        if cert is not None and not C.same_public_key(key, cert):
            raise TrustzoneError("the key does not belong to its certificate", key_path,
                                 fix="use a backup of a working CA")
    for path in sorted(files):
        if ca_passphrase and path.rsplit("/", 1)[-1] == _layout.SECRETS_KEYRING:
            # the zone secrets keyring is under the CA passphrase too (_secrets.unlock)
            SECRETS.unlock(files[path][1], ca_passphrase, None, path)


def same_contents(files, existing):
    """True when ``existing`` ({path: (mode, bytes)}) holds exactly ``files``."""
    if set(files) != set(existing):
        return False
    return all(files[p][1] == existing[p][1] and (files[p][0] & 0o777) ==
               (existing[p][0] & 0o777) for p in files)


def plan_restore(manifest, files, existing, zone, force=False, target=None):
    """What restoring into a CA directory holding ``existing`` does.

    ``existing`` is None for a missing or empty directory, else its {path: (mode, bytes)}.
    Returns ``{'action': 'create' | 'replace' | 'none', 'reason': str}``; refuses (raises)
    a directory that holds anything else unless ``force``."""
    if manifest.get("zone") != zone:
        raise TrustzoneError("the archive is a backup of zone %r, not of zone %r"
                             % (manifest.get("zone"), zone), target,
                             fix="restore it with the inventory of zone %r, or pick the "
                                 "archive of this zone" % manifest.get("zone"))
    if not existing:
        return {"action": "create", "reason": "the CA directory is empty"}
    if same_contents(files, existing):
        return {"action": "none", "reason": "the CA directory already holds this archive"}
    want = (manifest.get("roots") or {}).get("current")
    have = None
    in_force = CA.logical_files(existing)
    if "root.crt" in in_force:
        try:
            have = C.fingerprint(C.load_certificate(in_force["root.crt"][1]))
        except TrustzoneError:
            have = "unreadable"
    if have is None:
        reason = "the CA directory is not empty (%d files, no root.crt)" % len(existing)
    elif have != want:
        reason = ("the CA directory holds a different root (%s, the archive's is %s)"
                  % (have[:16], (want or "none")[:16]))
    else:
        differ = sorted(p for p in set(files) | set(existing)
                        if p not in files or p not in existing
                        or files[p] != existing[p])
        reason = ("the CA directory holds the same root but differs from the archive in %s "
                  "(restoring would roll it back)" % ", ".join(differ[:8])
                  + (" and %d more" % (len(differ) - 8) if len(differ) > 8 else ""))
    if not force:
        raise TrustzoneError("refusing to restore: " + reason, target,
                             fix="restore onto an empty CA host, or set "
                                 "trustzone_backup_force=true to move the current directory "
                                 "aside (it is kept) and restore the archive")
    return {"action": "replace", "reason": reason}
