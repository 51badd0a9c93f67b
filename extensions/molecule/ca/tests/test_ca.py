"""Verify the ca role on the converged CA host (testinfra)."""

import pytest

CA_DIR = "/var/lib/trustzone/molca"
PASSPHRASE = "molecule-only-passphrase"


@pytest.fixture
def ca(container):
    return container("ca")


def in_force(ca, name):
    generation = ca.file(CA_DIR + "/current").content_string.strip()  # gen/NNNNNN
    return "%s/%s/%s" % (CA_DIR, generation, name)


def test_ca_directory_is_private(ca):
    directory = ca.file(CA_DIR)
    assert directory.is_directory and directory.mode == 0o700
    assert directory.user == "root" and directory.group == "root"


def test_root_is_a_self_signed_ca(ca):
    root = in_force(ca, "root.crt")
    assert ca.run("openssl verify -CAfile %s %s" % (root, root)).rc == 0
    text = ca.check_output("openssl x509 -in %s -noout -text" % root)
    assert "CA:TRUE" in text
    assert "Certificate Sign, CRL Sign" in text
    assert "CN = trustzone molca root CA" in text
    assert "ASN1 OID: secp384r1" in text


def test_root_key_is_encrypted_private_and_matches(ca):
    key = ca.file(in_force(ca, "root.key"))
    assert key.mode == 0o600 and key.user == "root"
    assert key.content_string.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert ca.run("openssl pkey -in %s -passin pass:wrong-passphrase -noout" % key.path).rc != 0
    key_pub = ca.check_output("openssl pkey -in %s -passin pass:%s -pubout"
                              % (key.path, PASSPHRASE))
    cert_pub = ca.check_output("openssl x509 -in %s -pubkey -noout" % in_force(ca, "root.crt"))
    assert key_pub == cert_pub


def test_crl_is_signed_by_the_root(ca):
    result = ca.run("openssl crl -in %s/crl.pem -CAfile %s -noout"
                    % (CA_DIR, in_force(ca, "root.crt")))
    assert result.rc == 0 and "verify OK" in result.stdout + result.stderr


def test_ledger_is_private(ca):
    assert ca.file(CA_DIR + "/ledger.db").mode == 0o600
