"""Verify every store on the converged node (testinfra). Shared by the stores scenario and
the debian13 scenario (its molecule.yml adds this file); TRUSTZONE_MOLECULE_ZONE names the zone."""

import os

import pytest

ZONE = os.environ.get("TRUSTZONE_MOLECULE_ZONE", "molstores")
ZONE_DIR = "/etc/trustzone/" + ZONE
TRUSTSTORE_PASSWORD = "molecule-truststore"
KEYSTORE_PASSWORD = "molecule-keystore-password"
PFX_PASSPHRASE = "molecule-pfx-passphrase"


@pytest.fixture
def node(container):
    return container("node")


def root_alias(node):
    fingerprint = node.check_output(
        "openssl x509 -in %s/roots.pem -noout -fingerprint -sha256" % ZONE_DIR)
    return "trustzone-%s-" % ZONE + fingerprint.split("=")[1].replace(":", "").lower()[:16]


def test_java_truststore_holds_the_zone_root(node):
    out = node.check_output("keytool -list -keystore %s/truststore.p12 -storepass %s"
                            % (ZONE_DIR, TRUSTSTORE_PASSWORD))
    assert "%s, " % root_alias(node) in out
    assert "trustedCertEntry" in out
    assert node.file(ZONE_DIR + "/truststore.p12").mode == 0o644


def test_java_keystores_hold_each_identity_with_its_chain(node):
    for name in ("server", "client"):
        path = "%s/%s.keystore.p12" % (ZONE_DIR, name)
        out = node.check_output("keytool -list -v -keystore %s -storepass %s"
                                % (path, KEYSTORE_PASSWORD))
        assert "Alias name: %s" % name in out
        assert "Certificate chain length: 2" in out
        assert node.file(path).mode == 0o600


def test_nss_database_validates_the_server_certificate(node):
    out = node.check_output("certutil -L -d sql:/etc/pki/nssdb")
    assert root_alias(node) in out and "CT,," in out
    result = node.run("vfychain -d sql:/etc/pki/nssdb -u 1 -a %s/server.crt" % ZONE_DIR)
    assert result.rc == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name,cipher", [("server.pfx", "AES-256-CBC"),
                                         ("server-legacy.pfx", "TripleDES")])
def test_pkcs12_exports_open_with_the_passphrase(node, name, cipher):
    path = "%s/%s" % (ZONE_DIR, name)
    info = node.run("openssl pkcs12 -in %s -passin pass:%s -info -noout" % (path, PFX_PASSPHRASE))
    assert info.rc == 0, info.stderr
    assert cipher in info.stdout + info.stderr
    assert node.run("pk12util -l %s -W %s" % (path, PFX_PASSPHRASE)).rc == 0
    assert node.file(path).mode == 0o600


def test_pem_set_is_laid_out_as_configured(node):
    qlik = ZONE_DIR + "/qlikview"
    assert node.file(qlik + "/root.pem").content == node.file(ZONE_DIR + "/roots.pem").content
    assert node.file(qlik + "/server.pem").content == node.file(ZONE_DIR + "/server.crt").content
    key = node.file(qlik + "/server_key.pem")
    assert key.mode == 0o600 and key.content == node.file(ZONE_DIR + "/server.key").content
