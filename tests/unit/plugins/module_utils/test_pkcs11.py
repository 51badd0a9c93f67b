"""The PKCS#11 signer (_pkcs11.py) against a real SoftHSM2 token.

A throw-away token directory per test session: SOFTHSM2_CONF points at a config in a tmp
directory, and ``softhsm2-util --init-token`` gets its SO and user PINs on a pseudo-terminal
(it reads PINs only from a terminal), so no PIN is ever on a command line or in the
environment. Everything the token signs is checked by ``cryptography`` and by ``openssl``.

Skips (with the reason) only where SoftHSM2 or python-pkcs11 is missing; scripts/bootstrap
--tests installs both, so the project's own test run never skips.
"""

from __future__ import annotations

import datetime
import os
import pty
import shutil
import subprocess

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _pkcs11 as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

SOFTHSM_MODULES = ("/usr/lib/softhsm/libsofthsm2.so",
                   "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                   "/usr/lib64/pkcs11/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so")
TOKEN, OTHER_TOKEN = "tz-ca", "tz-spare"
PIN, SO_PIN = "user-pin-4711", "so-pin-0815"
UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


def _softhsm_module():
    if shutil.which("softhsm2-util") is None:
        return None
    return next((path for path in SOFTHSM_MODULES if os.path.isfile(path)), None)


def _init_token(label):
    """``softhsm2-util --init-token`` with both PINs typed on a pseudo-terminal."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(["softhsm2-util", "--init-token", "--free", "--label", label],
                                stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        os.close(slave)
        slave = None
        os.write(master, ("%s\n%s\n%s\n%s\n" % (SO_PIN, SO_PIN, PIN, PIN)).encode())
        out = proc.communicate(timeout=60)[0]
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    assert proc.returncode == 0, out.decode(errors="replace")


@pytest.fixture(scope="module")
def module_path(tmp_path_factory):
    """A SoftHSM2 token directory of its own with two initialised tokens."""
    yield from softhsm_tokens(tmp_path_factory, (TOKEN, OTHER_TOKEN))


def softhsm_tokens(tmp_path_factory, labels):
    """Generator for a module fixture: a SoftHSM2 token directory of its own with the tokens
    ``labels`` initialised; yields the PKCS#11 module path (skips without SoftHSM2).

    In pytest's own temporary directory, which pytest prunes: ``ansible-test units`` runs
    each test in a forked process, where a module fixture's teardown never runs."""
    path = _softhsm_module()
    if path is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    if not P.HAS_PKCS11:
        pytest.skip("python-pkcs11 is not installed (%s)" % P.PKCS11_IMPORT_ERROR)
    top = tmp_path_factory.mktemp("softhsm")
    (top / "tokens").mkdir()
    conf = top / "softhsm2.conf"
    conf.write_text("directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
                    "log.level = ERROR\n" % top)
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        for label in labels:
            _init_token(label)
        # SoftHSM reads its configuration when the module is initialised: start afresh
        P.pkcs11.lib(path).reinitialize()
        yield path
    finally:
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved
        P.pkcs11.lib(path).reinitialize()


@pytest.fixture(scope="module")
def ca(module_path):
    """Three keys generated in the token (P-384 root, P-256 intermediate, RSA-2048 root),
    a self-signed root and an intermediate it signed; the session is closed again, as a
    later run on the CA host would find it."""
    with P.Token(module_path, TOKEN, PIN, rw=True) as token:
        root = token.generate("root", {"type": "ec", "curve": "secp384r1"})
        root_cert = root.sign(ca_builder("token root", root.public_key(), None, None))
        inter = token.generate("intermediate", {"type": "ec", "curve": "secp256r1"})
        int_cert = root.sign(ca_builder("token intermediate", inter.public_key(), root_cert,
                                        root.public_key(), path_length=0))
        token.generate("rsa-root", {"type": "rsa", "size": 2048})
    return {"root": root_cert, "intermediate": int_cert}


@pytest.fixture
def token(module_path, ca):
    """The token, logged in (PKCS#11 logs in once per process: one Token at a time)."""
    with P.Token(module_path, TOKEN, PIN) as opened:
        yield opened


# --------------------------------------------------------------------------- builders

def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustzone test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ca_builder(common_name, public_key, issuer_cert, issuer_public_key, path_length=None):
    subject = name(common_name)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key or public_key)
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
            .public_key(public_key)
            .serial_number(C.random_serial())
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + 365 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(aki, critical=False))


def leaf_builder(public_key, issuer_cert, issuer_public_key, dns_name="web1.prod.example"):
    return (x509.CertificateBuilder()
            .subject_name(name(dns_name))
            .issuer_name(issuer_cert.subject)
            .public_key(public_key)
            .serial_number(C.random_serial())
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key),
                           critical=False))


def crl_builder(issuer_cert, issuer_public_key, revoked_serials, number=1):
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer_cert.subject)
               .last_update(NOW - DAY)
               .next_update(NOW + 7 * DAY)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_public_key), critical=False))
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - DAY)
            .build())
    return builder


def write_pems(tmp_path, **items):
    paths = {}
    for key, objs in items.items():
        objs = objs if isinstance(objs, list) else [objs]
        paths[key] = str(tmp_path / ("%s.pem" % key))
        with open(paths[key], "w") as handle:
            handle.write("".join(C.crl_pem(o) if isinstance(o, x509.CertificateRevocationList)
                                 else C.certificate_pem(o) for o in objs))
    return paths


def openssl(*argv):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    out = subprocess.run(["openssl"] + list(argv), capture_output=True, text=True, check=False)
    return out.returncode, (out.stdout + out.stderr).strip()


# --------------------------------------------------------------------------- keys

def test_generated_key_is_sensitive_and_never_extractable(token):
    signer = token.signer("root")
    private = signer._private  # pylint: disable=protected-access
    A = P.Attribute
    assert private[A.TOKEN] is True and private[A.PRIVATE] is True
    assert private[A.SENSITIVE] is True and private[A.ALWAYS_SENSITIVE] is True
    assert private[A.EXTRACTABLE] is False and private[A.NEVER_EXTRACTABLE] is True
    assert private[A.SIGN] is True and private[A.DECRYPT] is False
    assert private[A.DERIVE] is False and private[A.UNWRAP] is False
    with pytest.raises(P.pkcs11.exceptions.AttributeSensitive):
        private[A.VALUE]  # pylint: disable=pointless-statement
    assert isinstance(signer.public_key(), ec.EllipticCurvePublicKey)
    assert signer.public_key().curve.name == "secp384r1"
    assert signer.hash.name == "sha384"


def test_a_new_session_finds_the_same_key_by_label(token, ca):
    """What a restore onto a new CA host with the same token does: open, find by label."""
    found = token.signer("root")
    assert C.same_public_key(found.public_key(), ca["root"].public_key())
    crl = found.sign(crl_builder(ca["root"], found.public_key(), []))
    assert C.crl_signed_by(crl, ca["root"])


# --------------------------------------------------------------------------- signing

def test_root_intermediate_and_leaf_verify_with_cryptography_and_openssl(token, ca, tmp_path):
    root_cert, int_cert = ca["root"], ca["intermediate"]
    int_signer = token.signer("intermediate")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = int_signer.sign(leaf_builder(leaf_key.public_key(), int_cert, int_signer.public_key()))

    assert root_cert.signature_hash_algorithm.name == "sha384"
    assert int_cert.signature_hash_algorithm.name == "sha384"   # signed by the P-384 root
    assert leaf.signature_hash_algorithm.name == "sha256"
    assert C.is_signed_by(root_cert, root_cert)
    assert C.is_signed_by(int_cert, root_cert)
    assert C.is_signed_by(leaf, int_cert)
    assert not C.is_signed_by(leaf, root_cert)
    assert C.chain_to(leaf, [int_cert], [root_cert])

    files = write_pems(tmp_path, root=root_cert, intermediate=int_cert, leaf=leaf)
    rc, out = openssl("verify", "-x509_strict", "-CAfile", files["root"], files["root"])
    assert rc == 0, out
    rc, out = openssl("verify", "-x509_strict", "-CAfile", files["root"], "-untrusted",
                      files["intermediate"], files["leaf"])
    assert rc == 0 and out.endswith(": OK"), out


def test_crl_from_the_token_verifies_and_revokes(token, ca, tmp_path):
    root_cert, int_cert = ca["root"], ca["intermediate"]
    int_signer = token.signer("intermediate")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = int_signer.sign(leaf_builder(leaf_key.public_key(), int_cert, int_signer.public_key()))
    crl = int_signer.sign(crl_builder(int_cert, int_signer.public_key(), [leaf.serial_number],
                                      number=7))

    assert isinstance(crl, x509.CertificateRevocationList)
    assert C.crl_signed_by(crl, int_cert)
    assert C.crl_number(crl) == 7 and C.crl_serials(crl) == [leaf.serial_number]
    files = write_pems(tmp_path, root=root_cert, intermediate=int_cert, leaf=leaf, crl=crl)
    rc, out = openssl("crl", "-in", files["crl"], "-noout", "-CAfile", files["intermediate"],
                      "-verify")
    assert rc == 0 and "verify OK" in out, out
    rc, out = openssl("verify", "-crl_check", "-CRLfile", files["crl"], "-CAfile", files["root"],
                      "-untrusted", files["intermediate"], files["leaf"])
    assert rc != 0 and "certificate revoked" in out, out


def test_rsa_key_in_the_token_signs_a_root_and_a_crl(token, tmp_path):
    signer = token.signer("rsa-root")
    assert isinstance(signer.public_key(), rsa.RSAPublicKey)
    assert signer.public_key().key_size == 2048
    cert = signer.sign(ca_builder("token RSA root", signer.public_key(), None, None))
    crl = signer.sign(crl_builder(cert, signer.public_key(), [12345]), hashes.SHA384())
    assert cert.signature_hash_algorithm.name == "sha256"
    assert crl.signature_hash_algorithm.name == "sha384"
    assert C.is_signed_by(cert, cert) and C.crl_signed_by(crl, cert)
    files = write_pems(tmp_path, root=cert, crl=crl)
    rc, out = openssl("verify", "-x509_strict", "-CAfile", files["root"], files["root"])
    assert rc == 0, out
    rc, out = openssl("crl", "-in", files["crl"], "-noout", "-CAfile", files["root"], "-verify")
    assert rc == 0 and "verify OK" in out, out


def test_the_signature_is_made_by_the_token_key_only(token, ca):
    signer = token.signer("root")
    stranger = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert P.signature_valid(ca["root"], signer.public_key())
    assert not P.signature_valid(ca["root"], stranger)
    # two signatures of one builder: one TBS, both verify, ECDSA makes them differ
    builder = ca_builder("token root", signer.public_key(), None, None)
    first, second = signer.sign(builder), signer.sign(builder)
    assert first.tbs_certificate_bytes == second.tbs_certificate_bytes
    assert first.signature != second.signature
    assert P.signature_valid(second, signer.public_key())


def test_software_signer_has_the_same_shape(token, ca, tmp_path):
    root_signer, root_cert = token.signer("root"), ca["root"]
    key = ec.generate_private_key(ec.SECP256R1())
    software = P.SoftwareSigner(key)
    int_cert = root_signer.sign(ca_builder("software intermediate", key.public_key(), root_cert,
                                           root_signer.public_key(), path_length=0))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = software.sign(leaf_builder(leaf_key.public_key(), int_cert, software.public_key()))
    crl = software.sign(crl_builder(int_cert, software.public_key(), [leaf.serial_number]))
    assert software.hash.name == "sha256"
    assert C.is_signed_by(leaf, int_cert) and C.crl_signed_by(crl, int_cert)
    files = write_pems(tmp_path, root=root_cert, intermediate=int_cert, leaf=leaf)
    rc, out = openssl("verify", "-CAfile", files["root"], "-untrusted", files["intermediate"],
                      files["leaf"])
    assert rc == 0, out


# --------------------------------------------------------------------------- errors

def test_wrong_pin_is_one_line_without_the_pin(module_path, ca):
    with pytest.raises(TrustzoneError) as err:
        P.Token(module_path, TOKEN, "not-the-pin-1234")
    text = str(err.value)
    assert text == ("the PIN does not open PKCS#11 token 'tz-ca' Fix: give the token's "
                    "user PIN")
    assert "not-the-pin-1234" not in text and PIN not in text


def test_empty_pin_is_refused(module_path):
    with pytest.raises(TrustzoneError, match="no PIN given for PKCS#11 token 'tz-ca'"):
        P.Token(module_path, TOKEN, "")


def test_missing_token_names_the_tokens_there_are(module_path):
    with pytest.raises(TrustzoneError) as err:
        P.Token(module_path, "tz-nope", PIN)
    assert str(err.value) == (
        "%s: no PKCS#11 token labelled 'tz-nope' (tokens: 'tz-ca', 'tz-spare') "
        "Fix: initialise the token or correct the token label" % module_path)
    assert "\n" not in str(err.value)


def test_missing_module(tmp_path):
    if not P.HAS_PKCS11:
        pytest.skip("python-pkcs11 is not installed (%s)" % P.PKCS11_IMPORT_ERROR)
    path = str(tmp_path / "libnothere.so")
    with pytest.raises(TrustzoneError) as err:
        P.Token(path, TOKEN, PIN)
    assert str(err.value) == ("%s: PKCS#11 module not found Fix: install the token's PKCS#11 "
                              "library or correct the module path" % path)


def test_a_file_that_is_no_pkcs11_module(tmp_path, module_path):
    path = tmp_path / "junk.so"
    path.write_bytes(b"not a shared object")
    with pytest.raises(TrustzoneError, match="junk.so: not a usable PKCS#11 module"):
        P.Token(str(path), TOKEN, PIN)


def test_missing_key(token):
    with pytest.raises(TrustzoneError) as err:
        token.signer("no-such-key")
    assert str(err.value) == ("no private key labelled 'no-such-key' in PKCS#11 token 'tz-ca' "
                              "Fix: generate the key in the token or correct the key label")


def test_generate_refuses_a_label_in_use(module_path, ca):
    with P.Token(module_path, TOKEN, PIN, rw=True) as token:
        with pytest.raises(TrustzoneError, match="already holds a key labelled 'root'"):
            token.generate("root", {"type": "ec", "curve": "secp256r1"})


def test_second_login_in_one_process_is_refused(token, module_path):
    """PKCS#11 logs in once per process: a second Token would not have its PIN checked."""
    with pytest.raises(TrustzoneError, match="'tz-ca' is already open in this process"):
        P.Token(module_path, TOKEN, "any-pin-at-all")


def test_generate_needs_a_read_write_session(module_path):
    with P.Token(module_path, OTHER_TOKEN, PIN) as read_only:
        with pytest.raises(TrustzoneError, match="'tz-spare' was opened read-only"):
            read_only.generate("k1", {"type": "ec"})


@pytest.mark.parametrize("spec, message", [
    ({"type": "ed25519"}, "key type 'ed25519' is not supported in a token"),
    ({"type": "ec", "curve": "secp521r1"}, "EC curve 'secp521r1' is not supported in a token"),
    ({"type": "rsa", "size": 1024}, "RSA key size 1024 is not supported in a token"),
])
def test_unsupported_key_specs(spec, message):
    with pytest.raises(TrustzoneError, match=message):
        P.token_key_spec(spec)


def test_key_spec_defaults_and_aliases():
    assert P.token_key_spec({}) == {"type": "ec", "curve": "secp256r1"}
    assert P.token_key_spec({"type": "EC", "curve": "P-384"}) == {"type": "ec",
                                                                  "curve": "secp384r1"}
    assert P.token_key_spec({"type": "rsa"}) == {"type": "rsa", "size": 3072}


def test_a_signature_that_does_not_verify_is_refused(token, ca):
    """The token's private key and the public key a signer checks with must match."""
    mismatched = P.TokenSigner(token.signer("intermediate")._private,  # pylint: disable=W0212
                               ca["root"].public_key())
    with pytest.raises(TrustzoneError, match="the PKCS#11 token's signature does not verify"):
        mismatched.sign(crl_builder(ca["root"], ca["root"].public_key(), []))
