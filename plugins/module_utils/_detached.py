# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Detached signing: a certificate or CRL whose signature a key elsewhere makes.

``cryptography`` signs only with keys it holds. For a key that is not here - the zone's
offline root on the controller (``DeferredKey``) - the CA host encodes the certificate or
CRL with a throw-away key of the same algorithm (its to-be-signed part is then final), the
controller signs those bytes with the real key and puts its signature in place of the
throw-away one (``sign_placeholder``, asn1crypto), and the CA host accepts the result only
when its to-be-signed bytes are the ones it made and the signature verifies against the
real key's certificate (``accept``). The CA host never needs the key, nor asn1crypto.
"""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
except ImportError:  # pragma: no cover - reported by _crypto
    pass

_THROWAWAY = {}


class DeferredKey:
    """A CA key that is not on this host: signing with it makes a placeholder (signed with
    a throw-away key) and records what the real key must sign in ``debts``."""

    deferred = True

    def __init__(self, cert, debts):
        self.cert = cert
        self.fingerprint = C.fingerprint(cert)
        self._public = cert.public_key()
        self.debts = debts

    def public_key(self):
        return self._public

    def sign_builder(self, builder, what):
        draft = builder.sign(throwaway(self._public), C.signature_hash(self._public))
        self.debts.append({"signer": self.fingerprint, "what": what, "draft": draft})
        return draft


def throwaway(public_key):
    """A software key of ``public_key``'s algorithm (made once per process): the signature
    algorithm identifier depends on the algorithm and digest only, never on the key."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        kind = "ed25519"
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        kind = "ec"
    elif isinstance(public_key, rsa.RSAPublicKey):
        kind = "rsa"
    else:
        raise TypeError("unsupported CA key type %s" % type(public_key).__name__)
    if kind not in _THROWAWAY:
        _THROWAWAY[kind] = {
            "ed25519": ed25519.Ed25519PrivateKey.generate,
            "ec": lambda: ec.generate_private_key(ec.SECP256R1()),
            "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        }[kind]()
    return _THROWAWAY[kind]


def der(obj):
    return obj.public_bytes(serialization.Encoding.DER)


def load(der_bytes):
    """A Certificate or a CRL from DER (whichever it is)."""
    try:
        return x509.load_der_x509_certificate(der_bytes)
    except ValueError:
        return x509.load_der_x509_crl(der_bytes)


def tbs(obj):
    if isinstance(obj, x509.CertificateRevocationList):
        return obj.tbs_certlist_bytes
    return obj.tbs_certificate_bytes


def signature_valid(obj, public_key):
    """True when ``public_key`` made the signature of a Certificate or CRL."""
    if isinstance(obj, x509.CertificateRevocationList):
        return obj.is_signature_valid(public_key)
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(obj.signature, obj.tbs_certificate_bytes)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(obj.signature, obj.tbs_certificate_bytes,
                              ec.ECDSA(obj.signature_hash_algorithm))
        else:
            public_key.verify(obj.signature, obj.tbs_certificate_bytes, padding.PKCS1v15(),
                              obj.signature_hash_algorithm)
    except InvalidSignature:
        return False
    return True


def sign_placeholder(placeholder_der, private_key):
    """On the key's side (the controller): the placeholder's to-be-signed bytes signed with
    ``private_key``, assembled into the final DER. Needs asn1crypto."""
    from asn1crypto import core as asn1  # pylint: disable=import-outside-toplevel

    draft = load(placeholder_der)
    data = tbs(draft)
    algorithm = draft.signature_hash_algorithm
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        signature = private_key.sign(data)
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        signature = private_key.sign(data, ec.ECDSA(algorithm))
    else:
        signature = private_key.sign(data, padding.PKCS1v15(), algorithm)
    outer = asn1.Sequence.load(placeholder_der)
    final = asn1.Sequence(contents=outer[0].dump() + outer[1].dump()
                          + asn1.OctetBitString(signature).dump()).dump()
    if not signature_valid(load(final), private_key.public_key()):
        raise ValueError("the assembled signature does not verify")
    return final


def accept(placeholder_der, final_der, signer_cert):
    """On the CA host: the final object when ``final_der`` is ``placeholder_der`` with a
    signature ``signer_cert``'s key made; raises ValueError otherwise."""
    draft, final = load(placeholder_der), load(final_der)
    if type(draft) is not type(final) or tbs(draft) != tbs(final):
        raise ValueError("the signed object is not the one that was asked for")
    if not signature_valid(final, signer_cert.public_key()):
        raise ValueError("its signature was not made by %s" % C.subject_text(signer_cert))
    return final
