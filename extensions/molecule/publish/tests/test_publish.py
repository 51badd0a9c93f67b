"""Verify the publish role (testinfra): DER files named by the CA's key identifier, served
over plain HTTP at the URL's path, the same bytes as the CA's own certificate and CRL."""

import pytest

DIR = "/var/www/trustzone/molpub"
URL = "http://pki.molpub.test/trustzone/molpub"
CA_DIR = "/var/lib/trustzone/molpub"


@pytest.fixture
def pub(container):
    return container("pub")


@pytest.fixture
def ca(container):
    return container("ca")


def ca_id(ca):
    """Hex of the root's subject key identifier (the name the leaves' URLs use)."""
    generation = ca.file(CA_DIR + "/current").content_string.strip()
    text = ca.check_output("openssl x509 -in %s/%s/root.crt -noout -ext subjectKeyIdentifier"
                           % (CA_DIR, generation))
    return text.splitlines()[-1].strip().replace(":", "").lower()


def test_files_are_der_named_by_the_ca_and_world_readable(pub, ca):
    ident = ca_id(ca)
    for ext in ("crt", "crl"):
        path = "%s/%s.%s" % (DIR, ident, ext)
        assert pub.file(path).mode == 0o644
        assert not pub.file(path).content.startswith(b"-----BEGIN")  # DER, not PEM
    assert pub.run("openssl x509 -inform DER -in %s/%s.crt -noout" % (DIR, ident)).rc == 0
    assert pub.run("openssl crl -inform DER -in %s/%s.crl -noout" % (DIR, ident)).rc == 0


def test_nginx_serves_them_at_the_urls_path(pub, ca):
    ident = ca_id(ca)
    served = pub.check_output(
        "curl -fsS --resolve pki.molpub.test:80:127.0.0.1 %s/%s.crl | sha256sum" % (URL, ident))
    on_disk = pub.check_output("sha256sum < %s/%s.crl" % (DIR, ident))
    assert served.split()[0] == on_disk.split()[0]
    missing = pub.run("curl -s -o /dev/null -w '%%{http_code}' --resolve "
                      "pki.molpub.test:80:127.0.0.1 %s/nothing.crl" % URL)
    assert missing.stdout.strip() == "404"


def test_the_served_crl_is_the_cas(pub, ca):
    ident = ca_id(ca)
    crl_der = pub.check_output("base64 -w0 %s/%s.crl" % (DIR, ident))
    ca_crl = ca.check_output("openssl crl -in %s/crl.pem -outform DER | base64 -w0" % CA_DIR)
    assert crl_der == ca_crl
