# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""PKCS#12 (PFX) bundles: build them, read them back, and decide whether one is what is wanted.

PKCS#12 output is randomised (salts, IVs), so two bundles of the same key and certificates
never compare equal byte for byte. Whether an existing bundle is right is decided on its
*decoded* contents - key, certificate, CA certificates in order, friendly name - and on the
encryption it was written with, which is read from the file's own algorithm identifiers.

Two encryption choices:

``modern``  PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for key and certificates, HMAC-SHA256 MAC.
            Read by OpenSSL 3, Java 11.0.12+/17, NSS, Windows Server 2019 (1809) and later.
``legacy``  pbeWithSHAAnd3-KeyTripleDES-CBC for key and certificates, HMAC-SHA1 MAC: what
            older Windows (Server 2016 and earlier) and some appliances can import.

cryptography writes the MAC with an iteration count of 1 (on purpose, for compatibility), so
the passphrase is only as strong as itself: use a long random one.

Works with cryptography 38.0.4 (Debian 12): ``PrivateFormat.PKCS12.encryption_builder()``
and ``pkcs12.load_pkcs12`` exist from 38.0 on. No file or Ansible I/O happens here.
"""

from __future__ import annotations

import hashlib

# the same text/bytes and error-summary helpers as the rest of the crypto core
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils._crypto import (
    _short, _to_bytes, _to_text)
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
except ImportError:  # pragma: no cover - reported by the modules via missing_required_lib
    pass

ENCRYPTIONS = ("modern", "legacy")
# PBKDF2 / PKCS#12-KDF iterations for key and certificate encryption: Java's own PKCS#12
# default (10000) and OpenSSL's (2048). More would not help: the MAC, which checks a guessed
# passphrase just as well, is computed with one iteration (see above).
KDF_ROUNDS = {"modern": 10000, "legacy": 2048}
MIN_PASSPHRASE = _layout.MIN_PASSPHRASE

# Reasons an existing bundle is rewritten, in the order they are checked.
REASONS = ("missing", "unreadable", "key", "certificate", "ca_certificates", "friendly_name",
           "encryption")

# --------------------------------------------------------------------------- OIDs (DER bodies)
_OID = {
    "data": "1.2.840.113549.1.7.1",
    "encrypted_data": "1.2.840.113549.1.7.6",
    "shrouded_key_bag": "1.2.840.113549.1.12.10.1.2",
    "key_bag": "1.2.840.113549.1.12.10.1.1",
    "pbes2": "1.2.840.113549.1.5.13",
    "pbkdf2": "1.2.840.113549.1.5.12",
}
_CIPHERS = {
    "1.2.840.113549.1.12.1.3": "3des-sha1",      # pbeWithSHAAnd3-KeyTripleDES-CBC
    "1.2.840.113549.1.12.1.6": "rc2-40-sha1",    # pbeWithSHAAnd40BitRC2-CBC
    "1.2.840.113549.1.12.1.5": "rc2-128-sha1",
    "1.2.840.113549.1.12.1.1": "rc4-128-sha1",
    "2.16.840.1.101.3.4.1.42": "aes256-cbc",
    "2.16.840.1.101.3.4.1.22": "aes192-cbc",
    "2.16.840.1.101.3.4.1.2": "aes128-cbc",
    "1.2.840.113549.3.7": "3des-cbc",
}
_PRFS = {
    "1.2.840.113549.2.7": "hmac-sha1",
    "1.2.840.113549.2.9": "hmac-sha256",
    "1.2.840.113549.2.10": "hmac-sha384",
    "1.2.840.113549.2.11": "hmac-sha512",
}
_DIGESTS = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
# What each encryption choice looks like in a file written by build().
EXPECTED = {
    "modern": {"key": "pbes2/hmac-sha256/aes256-cbc", "certs": "pbes2/hmac-sha256/aes256-cbc",
               "mac": "sha256"},
    "legacy": {"key": "3des-sha1", "certs": "3des-sha1", "mac": "sha1"},
}


# --------------------------------------------------------------------------- building

def encryption(choice, passphrase):
    """The ``cryptography`` encryption object for ``choice`` (modern or legacy)."""
    if choice not in ENCRYPTIONS:
        raise TrustzoneError("unknown PKCS#12 encryption %r" % (choice,),
                             fix="use one of %s" % ", ".join(ENCRYPTIONS))
    if not passphrase:
        raise TrustzoneError("a PKCS#12 bundle needs a passphrase",
                             fix="set the passphrase (keep it in Ansible Vault)")
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(
        KDF_ROUNDS[choice])
    if choice == "modern":
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(
            hashes.SHA256())
    else:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(
            hashes.SHA1())
    return builder.build(_to_bytes(passphrase))


def build(key, cert, cas, friendly_name, passphrase, choice="modern"):
    """DER bytes of a PKCS#12 holding ``key``, ``cert`` (named ``friendly_name``) and ``cas``."""
    return pkcs12.serialize_key_and_certificates(
        _to_bytes(friendly_name) if friendly_name else None, key, cert, list(cas) or None,
        encryption(choice, passphrase))


# --------------------------------------------------------------------------- reading

def contents(key, cert, cas, friendly_name):
    """A comparable summary of a bundle's contents. Holds digests only, never key material.

    ``key`` is the SHA-256 of the unencrypted PKCS#8 DER, so two different private keys with
    the same public key (a damaged key) still differ.
    """
    return {
        "key": _key_digest(key) if key is not None else None,
        "certificate": _cert_digest(cert) if cert is not None else None,
        "ca_certificates": [_cert_digest(c) for c in cas],
        "friendly_name": _to_text(friendly_name) if friendly_name else None,
    }


def load(data, passphrase):
    """``contents()`` of an existing bundle. TrustzoneError when it cannot be decoded."""
    try:
        bundle = pkcs12.load_pkcs12(bytes(data), _to_bytes(passphrase) if passphrase else None)
    except (ValueError, TypeError) as exc:
        raise TrustzoneError("not a PKCS#12 bundle this passphrase opens (%s)" % _short(exc)
                             ) from exc
    cert = bundle.cert.certificate if bundle.cert is not None else None
    name = bundle.cert.friendly_name if bundle.cert is not None else None
    return contents(bundle.key, cert, [c.certificate for c in bundle.additional_certs], name)


def encryption_of(data):
    """How an existing bundle is protected, read from its algorithm identifiers.

    ``{'key': ..., 'certs': ..., 'mac': ...}``: ``key`` for the shrouded key bag (None without
    one; ``'none'`` for an unencrypted key bag), ``certs`` for the encrypted certificate
    content (None when the certificates are not encrypted), ``mac`` for the MAC digest (None
    without a MAC). A PBES2 scheme reads ``pbes2/<prf>/<cipher>``. TrustzoneError if the
    outer structure is not PKCS#12.
    """
    found = {"key": None, "certs": None, "mac": None}
    try:
        pfx = _children(_expect(data, 0x30))
        if len(pfx) < 2 or pfx[0][0] != 0x02:
            raise ValueError("not a PFX")
        auth_oid, auth_content = _content_info(pfx[1][1])
        if auth_oid != _OID["data"]:
            raise ValueError("authSafe is not data (public-key protected bundles are "
                             "not supported)")
        for _tag, info in _children(_expect(_octets(auth_content), 0x30)):
            oid, content = _content_info(info)
            if oid == _OID["data"]:
                for bag in _children(_expect(_octets(content), 0x30)):
                    _read_bag(_children(bag[1]), found)
            elif oid == _OID["encrypted_data"]:
                encrypted = _children(_children(content)[0][1])  # EncryptedData SEQUENCE
                eci = _children(encrypted[1][1])                  # EncryptedContentInfo
                found["certs"] = _algorithm(eci[1][1])
        if len(pfx) > 2:
            mac_data = _children(pfx[2][1])
            digest_info = _children(mac_data[0][1])
            alg = _children(digest_info[0][1])
            found["mac"] = _DIGESTS.get(_oid(alg[0][1]), _oid(alg[0][1]))
    except (ValueError, IndexError, TypeError) as exc:
        raise TrustzoneError("not a PKCS#12 bundle (%s)" % _short(exc)) from exc
    return found


def matches_encryption(found, choice):
    """True when ``encryption_of()`` output is what ``build(..., choice)`` writes."""
    return found == EXPECTED[choice]


# --------------------------------------------------------------------------- deciding

def assess(existing, passphrase, wanted, choice):
    """Why the bundle ``existing`` (bytes or None) must be rewritten; [] when it is right.

    ``wanted`` is a ``contents()`` summary. Reasons come from REASONS; ``unreadable`` (wrong
    passphrase, damaged file, not PKCS#12) stops further checks.
    """
    if choice not in ENCRYPTIONS:
        raise TrustzoneError("unknown PKCS#12 encryption %r" % (choice,),
                             fix="use one of %s" % ", ".join(ENCRYPTIONS))
    if existing is None:
        return ["missing"]
    try:
        have = load(existing, passphrase)
        found = encryption_of(existing)
    except TrustzoneError:
        return ["unreadable"]
    reasons = [field for field in ("key", "certificate", "ca_certificates", "friendly_name")
               if have[field] != wanted[field]]
    if not matches_encryption(found, choice):
        reasons.append("encryption")
    return reasons


# --------------------------------------------------------------------------- minimal DER

def _read(data, offset):
    """``(tag, content, next_offset)`` of the DER element at ``offset``."""
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tags are not used in PKCS#12")
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("indefinite or oversized length")
        length = int.from_bytes(bytes(data[offset:offset + count]), "big")
        offset += count
    end = offset + length
    if end > len(data):
        raise ValueError("truncated element")
    return tag, bytes(data[offset:end]), end


def _children(data):
    items, offset = [], 0
    while offset < len(data):
        tag, content, offset = _read(data, offset)
        items.append((tag, content))
    return items


def _expect(data, tag):
    got, content, end = _read(data, 0)
    if got != tag or end != len(data):
        raise ValueError("unexpected element 0x%02x" % got)
    return content


def _octets(data):
    """The bytes of an OCTET STRING (also the constructed BER form some writers use)."""
    tag, content, _end = _read(data, 0)
    if tag == 0x04:
        return content
    if tag == 0x24:
        return b"".join(c for t, c in _children(content) if t == 0x04)
    raise ValueError("expected OCTET STRING, got 0x%02x" % tag)


def _content_info(data):
    """``(oid, explicit [0] content)`` of a ContentInfo SEQUENCE body."""
    parts = _children(data)
    if parts[0][0] != 0x06:
        raise ValueError("ContentInfo without a type")
    oid = _oid(parts[0][1])
    content = parts[1][1] if len(parts) > 1 and parts[1][0] == 0xA0 else b""
    return oid, content


def _read_bag(bag, found):
    bag_oid = _oid(bag[0][1])
    if bag_oid == _OID["shrouded_key_bag"]:
        epki = _children(_expect(bag[1][1], 0x30))
        found["key"] = _algorithm(epki[0][1])
    elif bag_oid == _OID["key_bag"]:
        found["key"] = "none"


def _algorithm(alg_body):
    """Name of an encryption AlgorithmIdentifier (PBES2 spelled out as pbes2/prf/cipher)."""
    parts = _children(alg_body)
    oid = _oid(parts[0][1])
    if oid != _OID["pbes2"]:
        return _CIPHERS.get(oid, oid)
    params = _children(parts[1][1])                 # PBES2-params
    kdf = _children(params[0][1])                   # keyDerivationFunc AlgorithmIdentifier
    scheme = _children(params[1][1])                # encryptionScheme AlgorithmIdentifier
    cipher = _oid(scheme[0][1])
    prf = "hmac-sha1"                               # PBKDF2's default PRF
    if _oid(kdf[0][1]) == _OID["pbkdf2"]:
        for tag, body in _children(kdf[1][1]):
            if tag == 0x30:                         # prf AlgorithmIdentifier
                prf_oid = _oid(_children(body)[0][1])
                prf = _PRFS.get(prf_oid, prf_oid)
    else:
        prf = _oid(kdf[0][1])
    return "pbes2/%s/%s" % (prf, _CIPHERS.get(cipher, cipher))


def _oid(body):
    if not body:
        raise ValueError("empty OID")
    first = body[0]
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(str(a) for a in arcs)


# --------------------------------------------------------------------------- helpers

def _key_digest(key):
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return hashlib.sha256(der).hexdigest()


def _cert_digest(cert):
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
