# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""CA keys in a PKCS#11 token: open the token, find or generate a key, sign with it.

A key in a token never leaves it, and ``cryptography`` cannot sign with a key it does not
hold. So a signer here lets ``cryptography`` build the whole certificate or CRL with a
throw-away software key of the same algorithm (the to-be-signed bytes do not depend on the
signing key, only on the algorithm), has the token sign the digest of those bytes, and puts
the token's signature in place of the throw-away one. The result is parsed back and verified
with the token's public key before it is returned.

``TokenSigner`` and ``SoftwareSigner`` have the same shape (``public_key()``, ``hash``,
``sign(builder)``), so the CA can sign with either without knowing where its key lives.

Runs on the CA host: Debian 12's cryptography 38.0.4 must do (no ``verify_directly_issued_by``).
Needs python-pkcs11 (which brings asn1crypto). The PIN is a parameter: it is passed to the
token's login and kept nowhere, and no message here ever contains it.
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
except ImportError:  # pragma: no cover - reported by the modules via missing_required_lib
    pass

try:
    import pkcs11
    from asn1crypto import core as asn1
    from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
    PKCS11_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - the error says what to install
    PKCS11_IMPORT_ERROR = exc
HAS_PKCS11 = PKCS11_IMPORT_ERROR is None

TOKEN_KEY_TYPES = ("ec", "rsa")
TOKEN_CURVES = ("secp256r1", "secp384r1")
TOKEN_RSA_SIZES = (2048, 3072, 4096)

# DigestInfo prefixes (RFC 8017, 9.2 note 1): the token's raw RSA_PKCS signs DigestInfo.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_THROWAWAY = {}


# --------------------------------------------------------------------------- the token

class Token:
    """A logged-in session on one token. Use as a context manager (closes the session)."""

    def __init__(self, module_path, token_label, pin, rw=False):
        self.module_path, self.token_label = module_path, token_label
        if not pin:
            raise TrustzoneError("no PIN given for PKCS#11 token %r" % token_label,
                                 fix="give the token's user PIN")
        token = _find_token(_load_module(module_path), module_path, token_label)
        try:
            self.session = token.open(rw=rw, user_pin=pin)
        except pkcs11.exceptions.PinIncorrect:
            raise TrustzoneError("the PIN does not open PKCS#11 token %r" % token_label,
                                 fix="give the token's user PIN") from None
        except pkcs11.exceptions.PinLocked:
            raise TrustzoneError("the user PIN of PKCS#11 token %r is locked" % token_label,
                                 fix="unlock it with the token's SO PIN") from None
        except (pkcs11.exceptions.PinLenRange, pkcs11.exceptions.PinInvalid):
            raise TrustzoneError("the PIN given for PKCS#11 token %r is not a valid PIN"
                                 % token_label, fix="give the token's user PIN") from None
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            # PKCS#11 logs in per process: a second login would skip checking this PIN
            raise TrustzoneError("PKCS#11 token %r is already open in this process"
                                 % token_label, fix="close the other Token first") from None
        except pkcs11.exceptions.UserPinNotInitialized:
            raise TrustzoneError("PKCS#11 token %r has no user PIN" % token_label,
                                 fix="set the user PIN with the token's SO PIN") from None
        except pkcs11.exceptions.PKCS11Error as exc:
            raise TrustzoneError("cannot log in to PKCS#11 token %r (%s)"
                                 % (token_label, type(exc).__name__)) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self.session.close()

    def _objects(self, object_class, label):
        return list(self.session.get_objects({Attribute.CLASS: object_class,
                                              Attribute.LABEL: label}))

    def signer(self, label):
        """The signer of the private key labelled ``label`` (exactly one must exist)."""
        found = self._objects(ObjectClass.PRIVATE_KEY, label)
        if not found:
            raise TrustzoneError("no private key labelled %r in PKCS#11 token %r"
                                 % (label, self.token_label),
                                 fix="generate the key in the token or correct the key label")
        if len(found) > 1:
            raise TrustzoneError("%d private keys are labelled %r in PKCS#11 token %r"
                                 % (len(found), label, self.token_label),
                                 fix="give each key of the token its own label")
        private = found[0]
        key_type = private[Attribute.KEY_TYPE]
        if key_type not in (KeyType.EC, KeyType.RSA):
            raise TrustzoneError("key %r in PKCS#11 token %r is neither EC nor RSA"
                                 % (label, self.token_label), fix="use an EC or RSA key")
        return TokenSigner(private, self._public_key(private, label))

    def _public_key(self, private, label):
        if private[Attribute.KEY_TYPE] == KeyType.RSA:
            return rsa.RSAPublicNumbers(_int(private[Attribute.PUBLIC_EXPONENT]),
                                        _int(private[Attribute.MODULUS])).public_key()
        found = self._objects(ObjectClass.PUBLIC_KEY, label)
        if len(found) != 1:
            raise TrustzoneError("PKCS#11 token %r holds %d public keys labelled %r, not one"
                                 % (self.token_label, len(found), label),
                                 fix="keep the public key next to the private key, same label")
        return serialization.load_der_public_key(encode_ec_public_key(found[0]))

    def generate(self, label, spec):
        """A new key pair IN the token (``spec``: ``{'type': 'ec', 'curve': ...}`` or
        ``{'type': 'rsa', 'size': ...}``): sensitive, never extractable, signing only.
        Refuses a label the token already uses. Needs a token opened with ``rw=True``."""
        spec = token_key_spec(spec)
        if self._objects(ObjectClass.PRIVATE_KEY, label) or \
                self._objects(ObjectClass.PUBLIC_KEY, label):
            raise TrustzoneError("PKCS#11 token %r already holds a key labelled %r"
                                 % (self.token_label, label),
                                 fix="use that key, or choose another key label")
        private_template = {Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                            Attribute.EXTRACTABLE: False}
        options = dict(id=os.urandom(16), label=label, store=True,
                       capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                       private_template=private_template)
        try:
            if spec["type"] == "ec":
                params = self.session.create_domain_parameters(
                    KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(spec["curve"])},
                    local=True)
                params.generate_keypair(**options)
            else:
                self.session.generate_keypair(KeyType.RSA, spec["size"], **options)
        except pkcs11.exceptions.SessionReadOnly:
            raise TrustzoneError("PKCS#11 token %r was opened read-only" % self.token_label,
                                 fix="open it with rw=True to generate a key") from None
        except pkcs11.exceptions.PKCS11Error as exc:
            raise TrustzoneError("PKCS#11 token %r cannot generate a %s key (%s)"
                                 % (self.token_label, describe_spec(spec), type(exc).__name__),
                                 fix="choose a key type the token supports") from None
        return self.signer(label)


def token_key_spec(spec):
    """``spec`` checked and completed for a token key (EC P-256/P-384 or RSA)."""
    key_type = str(spec.get("type") or "ec").lower()
    if key_type == "ec":
        curve = str(spec.get("curve") or "secp256r1").lower()
        curve = {"p-256": "secp256r1", "prime256v1": "secp256r1", "p-384": "secp384r1"}.get(
            curve, curve)
        if curve in TOKEN_CURVES:
            return {"type": "ec", "curve": curve}
        raise TrustzoneError("EC curve %r is not supported in a token" % spec.get("curve"),
                             fix="use secp256r1 or secp384r1")
    if key_type == "rsa":
        size = spec.get("size") or 3072
        if size in TOKEN_RSA_SIZES and not isinstance(size, bool):
            return {"type": "rsa", "size": size}
        raise TrustzoneError("RSA key size %r is not supported in a token" % size,
                             fix="use one of %s" % ", ".join(str(s) for s in TOKEN_RSA_SIZES))
    raise TrustzoneError("key type %r is not supported in a token" % key_type,
                         fix="use one of %s" % ", ".join(TOKEN_KEY_TYPES))


def describe_spec(spec):
    return "EC %s" % spec["curve"] if spec["type"] == "ec" else "RSA %d" % spec["size"]


def _load_module(module_path):
    if not HAS_PKCS11:
        raise TrustzoneError("python-pkcs11 is not installed (%s)" % PKCS11_IMPORT_ERROR,
                             fix="install python-pkcs11 on the CA host")
    if not os.path.isfile(module_path):
        raise TrustzoneError("PKCS#11 module not found", module_path,
                             fix="install the token's PKCS#11 library or correct the module path")
    try:
        return pkcs11.lib(module_path)
    except pkcs11.exceptions.PKCS11Error as exc:
        raise TrustzoneError("not a usable PKCS#11 module (%s)" % _first_line(exc), module_path,
                             fix="give the path of the token's PKCS#11 library") from None


def _find_token(lib, module_path, token_label):
    labels = []
    for slot in lib.get_slots(token_present=True):
        try:
            token = slot.get_token()
        except pkcs11.exceptions.PKCS11Error:
            continue
        if token.label == token_label:
            return token
        if token.label:  # an uninitialised token has no label
            labels.append(token.label)
    raise TrustzoneError("no PKCS#11 token labelled %r (tokens: %s)"
                         % (token_label, ", ".join(repr(x) for x in sorted(labels)) or "none"),
                         module_path, fix="initialise the token or correct the token label")


# --------------------------------------------------------------------------- signers

class TokenSigner:
    """Signs certificates and CRLs with a private key that stays in the token."""

    def __init__(self, private, public):
        self._private = private
        self._public = public
        self.hash = default_hash(public)

    def public_key(self):
        return self._public

    def sign(self, builder, algorithm=None):
        """A Certificate for a CertificateBuilder, a CRL for a
        CertificateRevocationListBuilder, with the token's signature."""
        algorithm = algorithm or self.hash
        draft = builder.sign(_throwaway(self._public), algorithm)
        tbs = _tbs_bytes(draft)
        digest = hashlib.new(algorithm.name, tbs).digest()
        try:
            if isinstance(self._public, ec.EllipticCurvePublicKey):
                raw = self._private.sign(digest, mechanism=Mechanism.ECDSA)
                half = len(raw) // 2
                signature = encode_dss_signature(_int(raw[:half]), _int(raw[half:]))
            else:
                signature = self._private.sign(_DIGEST_INFO[algorithm.name] + digest,
                                               mechanism=Mechanism.RSA_PKCS)
        except pkcs11.exceptions.PKCS11Error as exc:
            raise TrustzoneError("the PKCS#11 token refused to sign (%s)"
                                 % type(exc).__name__) from None
        result = _load_signed(draft, _assemble(draft, signature))
        if _tbs_bytes(result) != tbs or not signature_valid(result, self._public):
            raise TrustzoneError("the PKCS#11 token's signature does not verify",
                                 fix="check that the token's public and private key belong "
                                     "together")
        return result


class SoftwareSigner:
    """The same shape as TokenSigner, for a key ``cryptography`` holds."""

    def __init__(self, private_key):
        self._private = private_key
        self.hash = default_hash(private_key.public_key())

    def public_key(self):
        return self._private.public_key()

    def sign(self, builder, algorithm=None):
        return builder.sign(self._private, algorithm or self.hash)


def default_hash(public_key):
    """SHA-384 for a P-384 key, SHA-256 otherwise (never SHA-1)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp384r1":
        return hashes.SHA384()
    return hashes.SHA256()


def signature_valid(signed, public_key):
    """True when ``public_key`` made the signature of a Certificate or CRL."""
    if isinstance(signed, x509.CertificateRevocationList):
        return signed.is_signature_valid(public_key)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signed.signature, signed.tbs_certificate_bytes,
                              ec.ECDSA(signed.signature_hash_algorithm))
        else:
            public_key.verify(signed.signature, signed.tbs_certificate_bytes,
                              padding.PKCS1v15(), signed.signature_hash_algorithm)
    except InvalidSignature:
        return False
    return True


def _throwaway(public_key):
    """A software key of the token key's algorithm, made once per process: it only lets
    ``cryptography`` encode the to-be-signed bytes; its signature is thrown away."""
    kind = "ec" if isinstance(public_key, ec.EllipticCurvePublicKey) else "rsa"
    if kind not in _THROWAWAY:
        _THROWAWAY[kind] = (ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else
                            rsa.generate_private_key(public_exponent=65537, key_size=1024))
    return _THROWAWAY[kind]


def _tbs_bytes(signed):
    if isinstance(signed, x509.CertificateRevocationList):
        return signed.tbs_certlist_bytes
    return signed.tbs_certificate_bytes


def _assemble(draft, signature):
    """The draft's DER with its signature replaced by ``signature``: Certificate and
    CertificateList alike are SEQUENCE {to-be-signed, algorithm, BIT STRING}; the first two
    are kept byte for byte as ``cryptography`` encoded them."""
    outer = asn1.Sequence.load(draft.public_bytes(serialization.Encoding.DER))
    return asn1.Sequence(contents=outer[0].dump() + outer[1].dump() +
                         asn1.OctetBitString(signature).dump()).dump()


def _load_signed(draft, der):
    if isinstance(draft, x509.CertificateRevocationList):
        return x509.load_der_x509_crl(der)
    return x509.load_der_x509_certificate(der)


def _int(data):
    return int.from_bytes(bytes(data), "big")


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- CA keys

class TokenAccess:
    """The zone's token for one module run: logged in (read-write) on first use and then
    reused - PKCS#11 allows one login per process. With ``check`` a new key is a software
    stand-in, so that check mode never writes to the token."""

    def __init__(self, module_path, token_label, pin, keys=("root", "intermediate"),
                 check=False):
        self.module_path, self.token_label, self._pin = module_path, token_label, pin
        self.keys, self.check = tuple(keys), check
        self._token = None

    def token(self):
        if self._token is None:
            try:
                self._token = Token(self.module_path, self.token_label, self._pin, rw=True)
            except TrustzoneError as exc:  # name the variable the operator sets
                variable = ("trustzone_ca_pkcs11_pin" if "PIN" in exc.message else
                            "trustzone_ca_pkcs11_token" if "token labelled" in exc.message else
                            "trustzone_ca_pkcs11_module")
                raise TrustzoneError(exc.message, exc.path,
                                     fix="check %s: %s" % (variable, exc.fix or "")) from None
        return self._token

    def holds(self, role):
        """Whether new keys of ``role`` (``root`` or ``intermediate``) go into the token."""
        return role in self.keys

    def generate(self, label, spec):
        """A new key in the token (or, in check mode, a software stand-in)."""
        if self.check:
            from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
            token_key_spec(spec)  # what the token would refuse is refused in check mode too
            return C.generate_key(spec)
        self.token().generate(label, spec)
        return TokenKey(self, label)

    def close(self):
        if self._token is not None:
            self._token.close()
            self._token = None


class TokenKey:
    """A CA key that lives in the token, named by its label: signs through the token (the
    ``sign_builder`` protocol of ``_crypto.sign_with``); checks once that the token's key is
    the one of the certificate it signs for."""

    in_token = True

    def __init__(self, access, label, cert=None, where=None):
        self.access, self.label, self.cert, self.where = access, label, cert, where
        self._signer = None

    def signer(self):
        if self.access is None:
            raise TrustzoneError("this key lives in a PKCS#11 token, but no token is given",
                                 self.where,
                                 fix="set trustzone_ca_pkcs11_token, trustzone_ca_pkcs11_module "
                                     "and trustzone_ca_pkcs11_pin")
        if self._signer is None:
            signer = self.access.token().signer(self.label)
            if self.cert is not None and signer.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ) != self.cert.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
                raise TrustzoneError("the key labelled %r in PKCS#11 token %r does not belong "
                                     "to the CA certificate %s" % (
                                         self.label, self.access.token_label,
                                         self.cert.subject.rfc4514_string()),
                                     fix="point trustzone_ca_pkcs11_token at the zone's token")
            self._signer = signer
        return self._signer

    def public_key(self):
        return self.cert.public_key() if self.cert is not None else self.signer().public_key()

    def sign_builder(self, builder, what):  # pylint: disable=unused-argument
        return self.signer().sign(builder)


def token_access(params, check=False):
    """The zone's PKCS#11 token (``TokenAccess``) of a module built with ``_args.PKCS11``, or
    None when it has none. Opened on first use; close it when the run ends. (Here, not in
    ``_args``: a node module, which AnsiballZ ships with every module_utils it might import,
    never carries the token code.)"""
    if not params.get("pkcs11_token"):
        return None
    return TokenAccess(params["pkcs11_module"], params["pkcs11_token"], params["pkcs11_pin"],
                       params["pkcs11_keys"], check=check)
