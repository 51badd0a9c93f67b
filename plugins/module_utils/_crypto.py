# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The crypto core: keys, CSRs, certificates, parsing. Pure functions over ``cryptography``.

Runs on the controller (recent ``cryptography``) and on nodes and CA hosts, which use their
distribution's package: Debian 12 ships cryptography 38.0.4, so nothing here may rely on
newer APIs (``not_valid_after_utc``, ``load_pem_x509_certificates``,
``verify_directly_issued_by``...). No file or Ansible I/O happens here.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError as exc:  # pragma: no cover - reported by the modules via missing_required_lib
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = exc
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None

UTC = datetime.timezone.utc

KEY_TYPES = ("ec", "rsa", "ed25519")
EC_CURVES = ("secp256r1", "secp384r1")
CURVE_ALIASES = {"p-256": "secp256r1", "p256": "secp256r1", "prime256v1": "secp256r1",
                 "secp256r1": "secp256r1", "p-384": "secp384r1", "p384": "secp384r1",
                 "secp384r1": "secp384r1"}
RSA_SIZES = (2048, 3072, 4096)

KEY_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
              "key_agreement", "key_cert_sign", "crl_sign")
KEY_USAGE_ALIASES = {
    "digitalsignature": "digital_signature", "nonrepudiation": "content_commitment",
    "contentcommitment": "content_commitment", "keyencipherment": "key_encipherment",
    "dataencipherment": "data_encipherment", "keyagreement": "key_agreement",
    "keycertsign": "key_cert_sign", "crlsign": "crl_sign",
}
EXTENDED_KEY_USAGES = ("server_auth", "client_auth")
EKU_ALIASES = {"serverauth": "server_auth", "clientauth": "client_auth"}

_PEM_CERT_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----", re.S)
PEM_CERT_BEGIN = "-----BEGIN CERTIFICATE-----"


# --------------------------------------------------------------------------- names & specs

def _canonical(name, aliases, what, names):
    """The canonical spelling of ``name`` (case, spaces, ``-`` and ``_`` do not count)."""
    key = re.sub(r"[\s_-]", "", str(name)).lower()
    if key in aliases:
        return aliases[key]
    raise TrustzoneError("unknown %s %r" % (what, name), fix="use one of %s" % ", ".join(names))


def canonical_key_usage(name):
    return _canonical(name, KEY_USAGE_ALIASES, "key usage", KEY_USAGES)


def canonical_eku(name):
    return _canonical(name, EKU_ALIASES, "extended key usage", EXTENDED_KEY_USAGES)


def normalize_key_spec(key_type="ec", key_size=None, curve=None):
    """Validate and complete a key specification: ``{'type', 'size'}`` / ``{'type', 'curve'}``."""
    key_type = str(key_type or "ec").lower()
    if key_type not in KEY_TYPES:
        raise TrustzoneError("unknown key type %r" % key_type,
                             fix="use one of %s" % ", ".join(KEY_TYPES))
    if key_type == "rsa":
        try:
            if isinstance(key_size, bool):
                raise ValueError(key_size)
            size = int(key_size or 3072)
        except (TypeError, ValueError):
            size = key_size
        if size not in RSA_SIZES:
            raise TrustzoneError("RSA key size %s is not supported" % size,
                                 fix="use one of %s" % ", ".join(str(s) for s in RSA_SIZES))
        return {"type": "rsa", "size": size}
    if key_type == "ec":
        name = CURVE_ALIASES.get(str(curve or "secp256r1").lower())
        if name is None:
            raise TrustzoneError("EC curve %r is not supported" % curve,
                                 fix="use secp256r1 (P-256) or secp384r1 (P-384)")
        return {"type": "ec", "curve": name}
    return {"type": "ed25519"}


def describe_key(key):
    """The key specification of a private or public key (same shape as ``normalize_key_spec``)."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return {"type": "rsa", "size": key.key_size}
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {"type": "ec", "curve": key.curve.name}
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return {"type": "ed25519"}
    return {"type": "unsupported:%s" % type(key).__name__}


def key_spec_text(spec):
    if spec.get("type") == "rsa":
        return "RSA %s" % spec["size"]
    if spec.get("type") == "ec":
        return "EC %s" % spec["curve"]
    return str(spec.get("type"))


def generate_key(spec):
    spec = normalize_key_spec(spec.get("type"), spec.get("size"), spec.get("curve"))
    if spec["type"] == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=spec["size"])
    if spec["type"] == "ec":
        curve = ec.SECP256R1() if spec["curve"] == "secp256r1" else ec.SECP384R1()
        return ec.generate_private_key(curve)
    return ed25519.Ed25519PrivateKey.generate()


def sign_with(builder, key, what):
    """``builder`` (certificate or CRL) signed by ``key``: a private key ``cryptography``
    holds, or a key that is elsewhere (``_detached.DeferredKey``: a placeholder whose real
    signature the key's holder makes; ``what`` says what it is for)."""
    if hasattr(key, "sign_builder"):
        return key.sign_builder(builder, what)
    return builder.sign(key, signature_hash(key))


def signature_hash(key):
    """The digest to sign with for ``key`` (private or public): never SHA-1; None for
    Ed25519."""
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, ed25519.Ed25519PublicKey):
        return None
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1":
        return hashes.SHA384()
    return hashes.SHA256()


# --------------------------------------------------------------------------- serialization

def private_key_pem(key, passphrase=None):
    """PKCS#8 PEM; encrypted with the best available scheme when a passphrase is given."""
    if passphrase:
        encryption = serialization.BestAvailableEncryption(_to_bytes(passphrase))
    else:
        encryption = serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def load_private_key(data, passphrase=None, path=None):
    data = _to_bytes(data)
    encrypted = b"ENCRYPTED" in data
    if encrypted and not passphrase:
        raise TrustzoneError("the private key is encrypted and no passphrase was given", path,
                             fix="supply the passphrase (e.g. from Ansible Vault)")
    try:
        return serialization.load_pem_private_key(
            data, password=_to_bytes(passphrase) if (passphrase and encrypted) else None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if encrypted:
            raise TrustzoneError("cannot decrypt the private key: wrong passphrase or damaged "
                                 "key", path,
                                 fix="check the passphrase variable; if it is right, restore "
                                     "the key from a backup") from exc
        raise TrustzoneError("not a readable PEM private key (%s)" % _short(exc), path,
                             fix="remove the file so a new key is generated, or restore it "
                                 "from a backup") from exc


def certificate_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(data, path=None):
    certs = load_certificates(data, path=path)
    if len(certs) != 1:
        raise TrustzoneError("expected one certificate, found %d" % len(certs), path,
                             fix="keep only the leaf certificate in this file")
    return certs[0]


def load_certificates(data, path=None):
    """Every certificate of a PEM bundle; anything malformed is an error, not skipped."""
    text = _to_text(data)
    blocks = _PEM_CERT_RE.findall(text)
    if not blocks:
        raise TrustzoneError("no PEM certificate found", path,
                             fix="the file must hold '%s' blocks" % PEM_CERT_BEGIN)
    if text.count("-----BEGIN") != len(blocks):
        raise TrustzoneError("the file holds PEM blocks that are not certificates", path,
                             fix="keep only certificates in this file")
    certs = []
    for block in blocks:
        try:
            certs.append(x509.load_pem_x509_certificate(block.encode("ascii")))
        except ValueError as exc:
            raise TrustzoneError("malformed certificate (%s)" % _short(exc), path,
                                 fix="remove or replace the file") from exc
    return certs


def csr_pem(csr):
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_csr(data, path=None):
    return load_csr_facts(data, path)[0]


def load_csr_facts(data, path=None):
    """``(csr, csr_facts(csr))``: the CSR, its extensions and public key decoded once, so that
    a broken extension or key is refused here."""
    try:
        csr = x509.load_pem_x509_csr(_to_bytes(data))
        return csr, csr_facts(csr)
    except (ValueError, x509.DuplicateExtension, UnsupportedAlgorithm) as exc:
        raise TrustzoneError("malformed certificate signing request (%s)" % _short(exc), path,
                             fix="re-run so the node makes a new one") from exc


def same_public_key(a, b):
    """True if two keys (private or public) share one public key."""
    return _spki(a) == _spki(b)


def _spki(key):
    if hasattr(key, "public_key"):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


# --------------------------------------------------------------------------- inspection

def not_after(cert):
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=UTC)


def not_before(cert):
    value = getattr(cert, "not_valid_before_utc", None)
    return value if value is not None else cert.not_valid_before.replace(tzinfo=UTC)


def fingerprint(cert):
    """SHA-256 fingerprint, lower-case hex without separators."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def common_name(obj):
    attrs = obj.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return attrs[0].value if attrs else None


# Attribute names for the name attributes RFC 4514 leaves as dotted OIDs (cryptography names
# only CN, L, ST, O, OU, C, STREET, DC and UID): a zone root's subject reads
# ``serialNumber=...,CN=...``, never ``2.5.4.5=...``. An OID not listed stays dotted.
NAME_ATTRIBUTES = (
    ("SERIAL_NUMBER", "serialNumber"), ("EMAIL_ADDRESS", "emailAddress"),
    ("SURNAME", "SN"), ("GIVEN_NAME", "givenName"), ("TITLE", "title"),
    ("INITIALS", "initials"), ("GENERATION_QUALIFIER", "generationQualifier"),
    ("DN_QUALIFIER", "dnQualifier"), ("PSEUDONYM", "pseudonym"),
    ("BUSINESS_CATEGORY", "businessCategory"), ("POSTAL_ADDRESS", "postalAddress"),
    ("POSTAL_CODE", "postalCode"), ("ORGANIZATION_IDENTIFIER", "organizationIdentifier"),
    ("UNSTRUCTURED_NAME", "unstructuredName"),
    ("X500_UNIQUE_IDENTIFIER", "x500UniqueIdentifier"),
    ("JURISDICTION_COUNTRY_NAME", "jurisdictionC"),
    ("JURISDICTION_LOCALITY_NAME", "jurisdictionL"),
    ("JURISDICTION_STATE_OR_PROVINCE_NAME", "jurisdictionST"),
)


def name_text(name):
    """An X.509 name as people read it: RFC 4514 with attribute names (``serialNumber=``)
    where cryptography would write dotted OIDs. The one place names are put into words."""
    overrides = {getattr(NameOID, oid): text for oid, text in NAME_ATTRIBUTES
                 if hasattr(NameOID, oid)}
    return name.rfc4514_string(attr_name_overrides=overrides)


def subject_text(obj):
    return name_text(obj.subject)


def issuer_text(obj):
    return name_text(obj.issuer)


def names_of(obj):
    """SANs of a certificate or CSR as ``{'dns': [...], 'ip': [...]}``, sorted, lower-case."""
    try:
        san = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {"dns": [], "ip": []}
    return {
        "dns": sorted({n.lower() for n in san.get_values_for_type(x509.DNSName)}),
        "ip": sorted({str(ip) for ip in san.get_values_for_type(x509.IPAddress)}),
    }


def other_san_types(obj):
    """SAN entries other than DNS and IP (e-mail, URI, ...), which we never sign."""
    try:
        san = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return sorted({type(n).__name__ for n in san
                   if not isinstance(n, (x509.DNSName, x509.IPAddress))})


def key_usages_of(obj):
    try:
        ku = obj.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return sorted(name for name in KEY_USAGES if getattr(ku, name))


def extended_key_usages_of(obj):
    try:
        eku = obj.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    names = {ExtendedKeyUsageOID.SERVER_AUTH: "server_auth",
             ExtendedKeyUsageOID.CLIENT_AUTH: "client_auth"}
    return sorted(names.get(oid, oid.dotted_string) for oid in eku)


def csr_facts(csr):
    """Everything the CA's policy check and builder need from a CSR, decoded once: ``cn``,
    ``dns``/``ip`` (sorted, as ``names_of``), ``other_san_types``, ``basic_constraints``,
    ``key_usage``, ``extended_key_usage`` (as the ``*_of`` helpers) and ``public_key``."""
    dns, ips, others = set(), set(), set()
    ku, eku, bc = [], [], None
    for ext in csr.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            for entry in value:
                if isinstance(entry, x509.DNSName):
                    dns.add(entry.value.lower())
                elif isinstance(entry, x509.IPAddress):
                    ips.add(str(entry.value))
                else:
                    others.add(type(entry).__name__)
        elif isinstance(value, x509.BasicConstraints):
            bc = (value.ca, value.path_length)
        elif isinstance(value, x509.KeyUsage):
            ku = sorted(name for name in KEY_USAGES if getattr(value, name))
        elif isinstance(value, x509.ExtendedKeyUsage):
            names = {ExtendedKeyUsageOID.SERVER_AUTH: "server_auth",
                     ExtendedKeyUsageOID.CLIENT_AUTH: "client_auth"}
            eku = sorted(names.get(oid, oid.dotted_string) for oid in value)
    return {"cn": common_name(csr), "dns": sorted(dns), "ip": sorted(ips),
            "other_san_types": sorted(others), "basic_constraints": bc, "key_usage": ku,
            "extended_key_usage": eku, "public_key": csr.public_key()}


class LeafSigner:
    """Signs leaves for one issuer, with everything that is the same for every leaf of a
    batch (issuer name, AKI, digest, constant extensions) worked out once."""

    def __init__(self, issuer_cert, issuer_key):
        if getattr(issuer_key, "deferred", False):
            raise TrustzoneError("leaves are never signed with a key that is not on the CA "
                                 "host (the offline root)",
                                 fix="keep trustzone_ca_intermediate on with an offline root")
        self.issuer_cert, self.issuer_key = issuer_cert, issuer_key
        self.issuer_name = issuer_cert.subject
        self.aki = _aki(issuer_cert, issuer_key)
        self.basic = x509.BasicConstraints(ca=False, path_length=None)
        self._usages = {}

    def _usage_extensions(self, key_usage, extended_key_usage):
        cache_key = (tuple(key_usage), tuple(extended_key_usage or ()))
        if cache_key not in self._usages:
            self._usages[cache_key] = (_key_usage(key_usage),
                                       _eku(extended_key_usage) if extended_key_usage else None)
        return self._usages[cache_key]

    def sign(self, public_key, subject, dns_names, ip_addresses, not_before_value,
             not_after_value, key_usage, extended_key_usage, serial=None, extensions=()):
        """``extensions``: further ``(extension, critical)`` pairs (CDP/AIA, _publish.py)."""
        ku, eku = self._usage_extensions(key_usage, extended_key_usage)
        sans = _san_list(dns_names, ip_addresses)
        builder = (x509.CertificateBuilder()
                   .subject_name(subject)
                   .issuer_name(self.issuer_name)
                   .public_key(public_key)
                   .serial_number(serial or random_serial())
                   .not_valid_before(not_before_value)
                   .not_valid_after(not_after_value)
                   .add_extension(self.basic, critical=True)
                   .add_extension(ku, critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                                  critical=False)
                   .add_extension(self.aki, critical=False))
        if eku is not None:
            builder = builder.add_extension(eku, critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return sign_with(builder, self.issuer_key, "leaf %s" % subject.rfc4514_string())


def basic_constraints_of(obj):
    """``(ca, path_length)`` or None when the extension is absent."""
    try:
        bc = obj.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
    return bc.ca, bc.path_length


def is_signed_by(cert, issuer):
    """True when ``issuer``'s key made ``cert``'s signature and the names chain up."""
    if cert.issuer != issuer.subject:
        return False
    pub = issuer.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def csr_signature_valid(csr, public_key=None):
    """True when the CSR is signed by its own key (``public_key``: already decoded)."""
    if public_key is None:
        return bool(csr.is_signature_valid)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(csr.signature, csr.tbs_certrequest_bytes,
                              ec.ECDSA(csr.signature_hash_algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(csr.signature, csr.tbs_certrequest_bytes, padding.PKCS1v15(),
                              csr.signature_hash_algorithm)
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(csr.signature, csr.tbs_certrequest_bytes)
        else:
            return bool(csr.is_signature_valid)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return bool(csr.is_signature_valid)
    return True


def can_sign_certificates(cert, below=0):
    """True if ``cert`` is a CA allowed to sign certificates with ``below`` CAs under it."""
    bc = basic_constraints_of(cert)
    if bc is None or not bc[0]:
        return False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            return False
    except x509.ExtensionNotFound:
        pass
    return bc[1] is None or bc[1] >= below


def chain_to(cert, intermediates, roots):
    """The path ``[cert, intermediate..., root]`` to one of ``roots``, or None.

    Only CA certificates (basicConstraints CA=True, keyCertSign) may sign, within their path
    length: a leaf's key can never vouch for another certificate.
    """
    path = [cert]
    current = cert
    pool = list(intermediates)
    for _depth in range(len(pool) + 1):
        below = len(path) - 1  # CA certificates between the leaf and the next signer
        for root in roots:
            if can_sign_certificates(root, below) and is_signed_by(current, root):
                return path + [root]
        nxt = next((c for c in pool
                    if can_sign_certificates(c, below) and is_signed_by(current, c)), None)
        if nxt is None:
            return None
        pool.remove(nxt)
        path.append(nxt)
        current = nxt
    return None


# --------------------------------------------------------------------------- building

def build_csr(key, common_name_value, dns_names=(), ip_addresses=()):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name_value)]))
    sans = _san_list(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, signature_hash(key))


def zone_name_attributes(zone, common_name_value, unique=None):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustzone"),
             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, zone),
             x509.NameAttribute(NameOID.COMMON_NAME, common_name_value)]
    if unique:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, unique))
    return x509.Name(attrs)


def random_serial():
    """A positive serial with 159 random bits (RFC 5280 allows at most 20 octets)."""
    return x509.random_serial_number()


def build_ca_certificate(key, subject, not_before_value, not_after_value, path_length=None,
                         issuer_cert=None, issuer_key=None, name_constraints=None,
                         extensions=()):
    """A CA certificate: self-signed root when no issuer is given, otherwise an intermediate;
    ``name_constraints`` (an ``x509.NameConstraints``) is added as a critical extension,
    ``extensions`` (``[(extension, critical)]``, such as distribution points) as given."""
    signer_key = issuer_key or key
    issuer_name = issuer_cert.subject if issuer_cert is not None else subject
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_name)
               .public_key(key.public_key())
               .serial_number(random_serial())
               .not_valid_before(not_before_value)
               .not_valid_after(not_after_value)
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                              critical=True)
               .add_extension(_key_usage(["digital_signature", "key_cert_sign", "crl_sign"]),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    builder = builder.add_extension(
        _aki(issuer_cert, signer_key) if issuer_cert is not None else
        x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    if name_constraints is not None:
        builder = builder.add_extension(name_constraints, critical=True)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return sign_with(builder, signer_key, "CA certificate %s" % subject.rfc4514_string())


def build_leaf_certificate(public_key, subject, dns_names, ip_addresses, issuer_cert, issuer_key,
                           not_before_value, not_after_value, key_usage, extended_key_usage,
                           serial=None, extensions=()):
    """One leaf: a LeafSigner batch of one."""
    return LeafSigner(issuer_cert, issuer_key).sign(
        public_key, subject, dns_names, ip_addresses, not_before_value, not_after_value,
        key_usage, extended_key_usage, serial=serial, extensions=extensions)


def _aki(issuer_cert, issuer_key):
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())


def _key_usage(names):
    wanted = {canonical_key_usage(n) for n in names}
    flags = {name: name in wanted for name in KEY_USAGES}
    return x509.KeyUsage(encipher_only=False, decipher_only=False, **flags)


def _eku(names):
    oids = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
            "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}
    return x509.ExtendedKeyUsage([oids[canonical_eku(n)] for n in names])


def _san_list(dns_names, ip_addresses):
    sans = [x509.DNSName(n) for n in dns_names]
    sans.extend(x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses)
    return sans


# --------------------------------------------------------------------------- CRLs

_PEM_CRL_RE = re.compile(r"-----BEGIN X509 CRL-----\s*[A-Za-z0-9+/=\s]*?-----END X509 CRL-----",
                         re.S)
CRL_REASONS = {
    "unspecified": "unspecified", "key_compromise": "key_compromise",
    "ca_compromise": "ca_compromise", "affiliation_changed": "affiliation_changed",
    "superseded": "superseded", "cessation_of_operation": "cessation_of_operation",
    "certificate_hold": "certificate_hold", "privilege_withdrawn": "privilege_withdrawn",
}


def build_crl(issuer_cert, issuer_key, revoked, this_update, next_update, number):
    """A CRL signed by ``issuer_key``; ``revoked`` is ``[(serial_int, when, reason)]``."""
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer_cert.subject)
               .last_update(this_update)
               .next_update(next_update)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(_aki(issuer_cert, issuer_key), critical=False))
    for serial, when, reason in revoked:
        entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                 .revocation_date(when))
        if reason and reason != "unspecified":
            entry = entry.add_extension(
                x509.CRLReason(getattr(x509.ReasonFlags, CRL_REASONS[reason])), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return sign_with(builder, issuer_key,
                     "CRL %d of %s" % (number, issuer_cert.subject.rfc4514_string()))


def crl_pem(crl):
    return crl.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_crls(data, path=None):
    """Every CRL of a PEM bundle (empty text gives ``[]``); malformed ones are an error."""
    text = _to_text(data)
    crls = []
    for block in _PEM_CRL_RE.findall(text):
        try:
            crls.append(x509.load_pem_x509_crl(block.encode("ascii")))
        except ValueError as exc:
            raise TrustzoneError("malformed CRL (%s)" % _short(exc), path,
                                 fix="remove the file; the CA writes a new one") from exc
    if text.strip() and not crls:
        raise TrustzoneError("no PEM CRL found", path,
                             fix="remove the file; the CA writes a new one")
    return crls


def crl_next_update(crl):
    value = getattr(crl, "next_update_utc", None)
    if value is not None:
        return value
    return crl.next_update.replace(tzinfo=UTC) if crl.next_update else None


def crl_number(crl):
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def crl_signed_by(crl, issuer_cert):
    return crl.issuer == issuer_cert.subject and crl.is_signature_valid(issuer_cert.public_key())


def crl_serials(crl):
    return sorted(r.serial_number for r in crl)


# --------------------------------------------------------------------------- helpers

def _to_bytes(value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _to_text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _short(exc):
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
