"""_crypto: key specs, key generation, signature digests, key (de)serialization, CSRs."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

# label in the session key cache -> the spec it was generated from
SPECS = {
    "p256": {"type": "ec", "curve": "secp256r1"},
    "p384": {"type": "ec", "curve": "secp384r1"},
    "rsa2048": {"type": "rsa", "size": 2048},
    "rsa3072": {"type": "rsa", "size": 3072},
    "rsa4096": {"type": "rsa", "size": 4096},
    "ed25519": {"type": "ed25519"},
}
FAST = ["p256", "p384", "rsa2048", "ed25519"]


# --------------------------------------------------------------------------- specs

@pytest.mark.parametrize("args, expected", [
    ((), {"type": "ec", "curve": "secp256r1"}),
    ((None, None, None), {"type": "ec", "curve": "secp256r1"}),
    (("EC",), {"type": "ec", "curve": "secp256r1"}),
    (("ec", None, "P-256"), {"type": "ec", "curve": "secp256r1"}),
    (("ec", None, "prime256v1"), {"type": "ec", "curve": "secp256r1"}),
    (("ec", None, "p-384"), {"type": "ec", "curve": "secp384r1"}),
    (("ec", None, "P384"), {"type": "ec", "curve": "secp384r1"}),
    (("ec", None, "secp384r1"), {"type": "ec", "curve": "secp384r1"}),
    (("rsa",), {"type": "rsa", "size": 3072}),
    (("RSA", 2048), {"type": "rsa", "size": 2048}),
    (("rsa", "4096"), {"type": "rsa", "size": 4096}),
    (("ed25519",), {"type": "ed25519"}),
    (("Ed25519", 4096, "secp384r1"), {"type": "ed25519"}),
])
def test_normalize_key_spec(args, expected):
    assert C.normalize_key_spec(*args) == expected


@pytest.mark.parametrize("args, words", [
    (("dsa",), "unknown key type"),
    (("ecdsa",), "unknown key type"),
    (("rsa", 1024), "RSA key size 1024"),
    (("rsa", 8192), "RSA key size 8192"),
    (("rsa", 2047), "RSA key size 2047"),
    (("ec", None, "secp521r1"), "EC curve"),
    (("ec", None, "secp256k1"), "EC curve"),
    (("ec", None, "ed25519"), "EC curve"),
])
def test_normalize_key_spec_refuses_with_fix(args, words):
    with pytest.raises(TrustzoneError) as info:
        C.normalize_key_spec(*args)
    assert words in str(info.value)
    assert info.value.fix, "every spec error says how to fix it"
    assert "Fix: use" in str(info.value)


@pytest.mark.parametrize("size", ["2k", "big", "2048 bits"])
def test_normalize_key_spec_non_numeric_size_is_a_trustzone_error(size):
    with pytest.raises(TrustzoneError, match="RSA key size"):
        C.normalize_key_spec("rsa", size)


@pytest.mark.parametrize("spec, text", [
    ({"type": "rsa", "size": 2048}, "RSA 2048"),
    ({"type": "ec", "curve": "secp384r1"}, "EC secp384r1"),
    ({"type": "ed25519"}, "ed25519"),
])
def test_key_spec_text(spec, text):
    assert C.key_spec_text(spec) == text


# --------------------------------------------------------------------------- generation

@pytest.mark.parametrize("label", list(SPECS))
def test_generate_and_describe_every_key_type(keys, label):
    """generate_key makes what the spec says; describe_key gives the spec back, for the
    private and the public half. RSA 3072/4096 are generated once per session."""
    key = keys.get(label)
    spec = SPECS[label]
    assert C.describe_key(key) == spec
    assert C.describe_key(key.public_key()) == spec
    assert C.normalize_key_spec(spec["type"], spec.get("size"), spec.get("curve")) == spec


@pytest.mark.parametrize("spec, cls", [
    ({"type": "ec"}, ec.EllipticCurvePrivateKey),
    ({"type": "ed25519"}, ed25519.Ed25519PrivateKey),
    ({"type": "rsa", "size": 2048}, rsa.RSAPrivateKey),
])
def test_generate_key_normalizes_partial_spec(spec, cls):
    key = C.generate_key(spec)
    assert isinstance(key, cls)
    if spec["type"] == "ec":
        assert key.curve.name == "secp256r1"
    if spec["type"] == "rsa":
        assert key.public_key().public_numbers().e == 65537


def test_generate_key_refuses_bad_spec():
    with pytest.raises(TrustzoneError):
        C.generate_key({"type": "rsa", "size": 1024})


def test_describe_key_unsupported_type():
    from cryptography.hazmat.primitives.asymmetric import x25519
    described = C.describe_key(x25519.X25519PrivateKey.generate())
    assert described["type"].startswith("unsupported:")
    assert described != C.normalize_key_spec("ed25519")


@pytest.mark.parametrize("label, digest", [
    ("p256", hashes.SHA256), ("p384", hashes.SHA384), ("rsa2048", hashes.SHA256),
    ("rsa3072", hashes.SHA256), ("rsa4096", hashes.SHA256),
])
def test_signature_hash(keys, label, digest):
    algorithm = C.signature_hash(keys.get(label))
    assert isinstance(algorithm, digest)
    assert not isinstance(algorithm, hashes.SHA1)


def test_signature_hash_ed25519_is_none(keys):
    assert C.signature_hash(keys.get("ed25519")) is None


# --------------------------------------------------------------------------- key PEM

@pytest.mark.parametrize("label", FAST)
def test_private_key_pem_plain_round_trip(keys, label):
    key = keys.get(label)
    pem = C.private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    loaded = C.load_private_key(pem)
    assert C.same_public_key(loaded, key)
    assert C.describe_key(loaded) == C.describe_key(key)
    # text in, same key out
    assert C.same_public_key(C.load_private_key(pem.decode("ascii")), key)


@pytest.mark.parametrize("label", FAST)
@pytest.mark.parametrize("passphrase", ["correct horse battery", b"bytes passphrase"])
def test_private_key_pem_encrypted_round_trip(keys, label, passphrase):
    key = keys.get(label)
    pem = C.private_key_pem(key, passphrase)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert C.private_key_pem(key) not in pem
    loaded = C.load_private_key(pem, passphrase, path="/var/lib/trustzone/prod/root.key")
    assert C.same_public_key(loaded, key)


def test_wrong_passphrase(keys):
    pem = C.private_key_pem(keys.get("p256"), "right passphrase")
    path = "/var/lib/trustzone/prod/root.key"
    with pytest.raises(TrustzoneError) as info:
        C.load_private_key(pem, "wrong passphrase!", path=path)
    text = str(info.value)
    assert "wrong passphrase" in text
    assert path in text
    assert info.value.fix
    assert "\n" not in text


def test_missing_passphrase_for_encrypted_key(keys):
    pem = C.private_key_pem(keys.get("p256"), "right passphrase")
    for passphrase in (None, ""):
        with pytest.raises(TrustzoneError) as info:
            C.load_private_key(pem, passphrase, path="/k.key")
        assert "encrypted" in str(info.value) and "no passphrase" in str(info.value)
        assert "/k.key" in str(info.value)
        assert info.value.fix


def test_traditional_openssl_encrypted_key(keys):
    """'Proc-Type: 4,ENCRYPTED' keys (openssl's legacy format) are recognised as encrypted."""
    key = keys.get("p256")
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.BestAvailableEncryption(b"legacy pass"))
    assert b"ENCRYPTED" in pem
    assert C.same_public_key(C.load_private_key(pem, "legacy pass"), key)
    with pytest.raises(TrustzoneError, match="no passphrase"):
        C.load_private_key(pem)
    with pytest.raises(TrustzoneError, match="wrong passphrase"):
        C.load_private_key(pem, "not it")


def test_passphrase_for_plain_key_is_ignored(keys):
    key = keys.get("p256")
    assert C.same_public_key(C.load_private_key(C.private_key_pem(key), "unused"), key)


@pytest.mark.parametrize("data", [
    b"",
    b"garbage",
    b"\x00\xff\xfe binary junk",
    "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
])
def test_garbage_key_is_a_clear_error(data):
    with pytest.raises(TrustzoneError) as info:
        C.load_private_key(data, path="/etc/trustzone/prod/server.key")
    assert info.type is TrustzoneError
    assert "not a readable PEM private key" in str(info.value)
    assert "/etc/trustzone/prod/server.key" in str(info.value)
    assert info.value.fix


def test_certificate_is_not_a_key(zone):
    with pytest.raises(TrustzoneError, match="not a readable PEM private key"):
        C.load_private_key(C.certificate_pem(zone.cert))


def test_damaged_encrypted_key(keys):
    pem = C.private_key_pem(keys.get("p256"), "right passphrase")
    lines = pem.splitlines()
    damaged = b"\n".join(lines[:2] + lines[3:])  # drop a line of the body
    with pytest.raises(TrustzoneError) as info:
        C.load_private_key(damaged, "right passphrase", path="/k")
    assert info.type is TrustzoneError
    assert "wrong passphrase or damaged key" in str(info.value)


# --------------------------------------------------------------------------- usages

@pytest.mark.parametrize("name, canonical", [
    ("digital_signature", "digital_signature"), ("digitalSignature", "digital_signature"),
    ("Digital Signature", "digital_signature"), ("key-encipherment", "key_encipherment"),
    ("nonRepudiation", "content_commitment"), ("contentCommitment", "content_commitment"),
    ("keyAgreement", "key_agreement"), ("dataEncipherment", "data_encipherment"),
    ("keyCertSign", "key_cert_sign"), ("cRLSign", "crl_sign"),
])
def test_canonical_key_usage(name, canonical):
    assert C.canonical_key_usage(name) == canonical


@pytest.mark.parametrize("name, canonical", [
    ("server_auth", "server_auth"), ("serverAuth", "server_auth"),
    ("client-auth", "client_auth"), ("Client Auth", "client_auth"),
])
def test_canonical_eku(name, canonical):
    assert C.canonical_eku(name) == canonical


@pytest.mark.parametrize("func, name", [
    (C.canonical_key_usage, "sign_everything"), (C.canonical_key_usage, "encipher_only"),
    (C.canonical_eku, "code_signing"), (C.canonical_eku, "any"),
])
def test_unknown_usage_is_refused(func, name):
    with pytest.raises(TrustzoneError) as info:
        func(name)
    assert repr(name) in str(info.value)
    assert info.value.fix


# --------------------------------------------------------------------------- public keys, CSRs

def test_same_public_key(keys):
    a, b = keys.get("p256"), keys.get("p256#other")
    assert C.same_public_key(a, a.public_key())
    assert C.same_public_key(a.public_key(), a)
    assert not C.same_public_key(a, b)
    assert not C.same_public_key(a, keys.get("ed25519"))


@pytest.mark.parametrize("label", FAST)
def test_build_csr(keys, label):
    key = keys.get(label)
    csr = C.build_csr(key, "web1.prod.example", ["web1.prod.example", "WEB1"],
                      ["10.0.0.11", "2001:db8::11"])
    assert C.csr_signature_valid(csr)
    assert C.common_name(csr) == "web1.prod.example"
    assert C.names_of(csr) == {"dns": ["web1", "web1.prod.example"],
                               "ip": ["10.0.0.11", "2001:db8::11"]}
    assert C.same_public_key(csr.public_key(), key)
    assert C.basic_constraints_of(csr) is None
    assert C.key_usages_of(csr) == [] and C.extended_key_usages_of(csr) == []
    algorithm = csr.signature_hash_algorithm
    if label == "ed25519":
        assert algorithm is None
    else:
        assert isinstance(algorithm, type(C.signature_hash(key)))
    # PEM round trip
    again = C.load_csr(C.csr_pem(csr))
    assert again.public_bytes(serialization.Encoding.DER) == csr.public_bytes(
        serialization.Encoding.DER)
    assert C.load_csr(C.csr_pem(csr).encode("ascii")).subject == csr.subject


def test_build_csr_without_names(keys):
    csr = C.build_csr(keys.get("p256"), "only-cn")
    assert C.names_of(csr) == {"dns": [], "ip": []}
    assert C.other_san_types(csr) == []
    with pytest.raises(x509.ExtensionNotFound):
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)


@pytest.mark.parametrize("data", ["", "garbage",
                                  "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                  "-----END CERTIFICATE REQUEST-----\n"])
def test_load_csr_garbage(data):
    with pytest.raises(TrustzoneError) as info:
        C.load_csr(data, path="CSR of web1/server")
    assert "malformed certificate signing request" in str(info.value)
    assert "CSR of web1/server" in str(info.value)


def test_load_csr_refuses_a_certificate(zone):
    with pytest.raises(TrustzoneError, match="malformed certificate signing request"):
        C.load_csr(C.certificate_pem(zone.cert))


def test_to_bytes_and_text_helpers():
    assert C._to_bytes("é") == "é".encode("utf-8")
    assert C._to_bytes(b"x") == b"x"
    assert C._to_text(b"\xffa") == "\ufffda"
    assert C._short(ValueError("first line\nsecond")) == "first line"
    assert C._short(ValueError("")) == "ValueError"
    assert len(C._short(ValueError("x" * 500))) == 160
