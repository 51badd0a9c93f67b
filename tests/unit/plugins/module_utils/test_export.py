"""_export: which chain an export carries, PEM-set contents, and the decoded-content comparison."""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _export as E
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NAMES, NOW)

PASS = "a key passphrase for tests"


@pytest.fixture(scope="module")
def identity(keys, zone):
    key = keys.get("p256#export-leaf")
    return key, zone.leaf(key.public_key(), NAMES)


@pytest.fixture(scope="module")
def intermediate(keys, zone):
    key = keys.get("p256#export-intermediate")
    cert = C.build_ca_certificate(key, C.zone_name_attributes("prod", "issuing CA"),
                                  NOW - DAY, NOW + 900 * DAY, path_length=0,
                                  issuer_cert=zone.cert, issuer_key=zone.key)
    return key, cert


def pem(*certs):
    return "".join(C.certificate_pem(c) for c in certs)


# --------------------------------------------------------------------------- identity_chain

def test_a_leaf_directly_under_the_root(identity, zone, other_zone):
    key, cert = identity
    assert E.identity_chain(key, cert, [], [other_zone.cert, zone.cert]) == ([], zone.cert)


def test_intermediates_on_the_path_are_kept_and_others_dropped(keys, zone, other_zone,
                                                               intermediate):
    ikey, icert = intermediate
    key = keys.get("p256#export-leaf2")
    cert = zone.leaf(key.public_key(), NAMES, issuer_cert=icert, issuer_key=ikey)
    inter, root = E.identity_chain(key, cert, [other_zone.cert, icert], [zone.cert])
    assert (inter, root) == ([icert], zone.cert)


def test_a_key_of_another_certificate_is_refused(keys, identity):
    _key, cert = identity
    with pytest.raises(TrustzoneError, match="server.crt: the private key does not belong"):
        E.identity_chain(keys.get("p256#export-other"), cert, [], [], where="server.crt")


def test_a_certificate_of_another_zone_is_refused(identity, other_zone):
    key, cert = identity
    with pytest.raises(TrustzoneError, match="does not chain to a current root"):
        E.identity_chain(key, cert, [], [other_zone.cert])


# --------------------------------------------------------------------------- file names

@pytest.mark.parametrize("name", ["root.pem", "server_key.pem", "a", "tls-1.crt", "_x"])
def test_plain_file_names_are_accepted(name):
    assert E.check_file_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "/etc/passwd", ".hidden",
                                  "a b", "x" * 129])
def test_paths_and_odd_names_are_refused(name):
    with pytest.raises(TrustzoneError, match="is not a plain file name"):
        E.check_file_name(name)


# --------------------------------------------------------------------------- pem_set

def test_qlikview_layout(identity, zone, other_zone):
    key, cert = identity
    files = E.pem_set({"root.pem": "root", "server.pem": "cert", "server_key.pem": "key"},
                      key, cert, [], zone.cert, [zone.cert, other_zone.cert])
    assert files == {"root.pem": C.certificate_pem(zone.cert),
                     "server.pem": C.certificate_pem(cert),
                     "server_key.pem": C.private_key_pem(key).decode()}


def test_every_kind(identity, zone, other_zone, intermediate):
    key, cert = identity
    _ikey, icert = intermediate
    files = E.pem_set({k + ".pem": k for k in E.PEM_KINDS}, key, cert, [icert], zone.cert,
                      [zone.cert, other_zone.cert])
    key_pem = C.private_key_pem(key).decode()
    assert files["fullchain.pem"] == pem(cert, icert)
    assert files["roots.pem"] == pem(zone.cert, other_zone.cert)
    assert files["combined.pem"] == key_pem + pem(cert, icert)
    assert set(E.KEY_KINDS) <= set(E.PEM_KINDS)


def test_a_key_passphrase_encrypts_the_key(identity, zone):
    key, cert = identity
    files = E.pem_set({"k.pem": "key", "c.pem": "cert"}, key, cert, [], zone.cert, [zone.cert],
                      key_passphrase=PASS)
    assert files["k.pem"].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert C.same_public_key(C.load_private_key(files["k.pem"], PASS), cert)


def test_unknown_kind_and_empty_set_are_refused(identity, zone):
    key, cert = identity
    with pytest.raises(TrustzoneError, match="file x.pem: unknown kind 'chain'"):
        E.pem_set({"x.pem": "chain"}, key, cert, [], zone.cert, [zone.cert])
    with pytest.raises(TrustzoneError, match="at least one file"):
        E.pem_set({}, key, cert, [], zone.cert, [zone.cert])
    with pytest.raises(TrustzoneError, match="not a plain file name"):
        E.pem_set({"../x.pem": "cert"}, key, cert, [], zone.cert, [zone.cert])


# --------------------------------------------------------------------------- decoded compare

def test_decoded_blocks_normalise_keys_and_certificates(identity, zone):
    key, cert = identity
    plain = C.private_key_pem(key).decode() + C.certificate_pem(cert)
    encrypted = C.private_key_pem(key, PASS).decode() + C.certificate_pem(cert)
    assert E.decoded_blocks(plain) == E.decoded_blocks(encrypted, PASS)
    assert [kind for kind, _der in E.decoded_blocks(plain)] == ["key", "certificate"]


@pytest.mark.parametrize("text,message", [
    ("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", "malformed"),
    ("-----BEGIN CERTIFICATE-----\nQUJD\n", "malformed PEM block"),
    ("-----BEGIN PUBLIC KEY-----\nQUJD\n-----END PUBLIC KEY-----\n", "PUBLIC KEY block"),
])
def test_decoded_blocks_refuse_what_they_cannot_decode(text, message):
    with pytest.raises(TrustzoneError, match=message):
        E.decoded_blocks(text)


def test_an_identical_file_needs_no_rewrite(identity, zone):
    key, cert = identity
    text = C.private_key_pem(key).decode() + C.certificate_pem(cert)
    assert E.pem_reason(text.encode(), text) is None
    # line endings and spacing do not matter, the decoded contents do
    assert E.pem_reason(text.replace("\n", "\r\n").encode() + b"\n\n", text) is None


def test_a_missing_or_damaged_file_is_rewritten(identity, zone):
    _key, cert = identity
    assert E.pem_reason(None, C.certificate_pem(cert)) == "missing"
    assert E.pem_reason(b"not pem at all -----BEGIN CERTIFICATE-----",
                        C.certificate_pem(cert)) == "unreadable"


def test_other_certificates_or_order_is_content(identity, zone, other_zone):
    _key, cert = identity
    assert E.pem_reason(pem(other_zone.cert).encode(), pem(zone.cert)) == "content"
    assert E.pem_reason(pem(zone.cert, other_zone.cert).encode(),
                        pem(other_zone.cert, zone.cert)) == "content"
    assert E.pem_reason(pem(zone.cert).encode(), pem(zone.cert, other_zone.cert)) == "content"
    assert E.pem_reason(b"", pem(zone.cert)) == "content"


def test_another_key_is_content(keys, identity):
    key, _cert = identity
    other = C.private_key_pem(keys.get("p256#export-other"))
    assert E.pem_reason(other, C.private_key_pem(key).decode()) == "content"


def test_an_encrypted_key_is_compared_decrypted(identity):
    key, _cert = identity
    first = C.private_key_pem(key, PASS)
    second = C.private_key_pem(key, PASS).decode()
    assert first.decode() != second  # random salt and IV
    assert E.pem_reason(first, second, PASS) is None


def test_key_encryption_changes_are_noticed(identity):
    key, _cert = identity
    plain = C.private_key_pem(key)
    encrypted = C.private_key_pem(key, PASS)
    # a passphrase was added: the plain key decodes to the same key but must be encrypted
    assert E.pem_reason(plain, encrypted.decode(), PASS) == "key_encryption"
    # the passphrase was removed or changed: the encrypted key no longer opens
    assert E.pem_reason(encrypted, plain.decode(), None) == "unreadable"
    assert E.pem_reason(encrypted, C.private_key_pem(key, "another one").decode(),
                        "another one") == "unreadable"
