"""Verify the acme role's certificates on the converged node against the pebble running in it
(testinfra): files and modes, the chain up to pebble's issuing root, the names, and that the
idempotence run asked the CA nothing."""

import json

import pytest

ACME = "/etc/trustzone-acme"
CERTS = {"www": ["www.molacme.test", "molacme.test"], "wild": ["*.apps.molacme.test"]}
PEBBLE_HOST = "node"  # where pebble runs (the pebble_root fixture, ../../conftest.py)


@pytest.fixture
def node(container):
    return container("node")


def test_account_key_is_private(node):
    directory = node.file(ACME + "/account")
    assert directory.mode == 0o700 and directory.user == "root"
    key = node.file(ACME + "/account/account.key")
    assert key.mode == 0o600 and key.user == "root" and key.group == "root"


@pytest.mark.parametrize("name", sorted(CERTS))
def test_certificate_files_and_modes(node, name):
    directory = "%s/%s" % (ACME, name)
    key = node.file(directory + "/privkey.pem")
    assert key.mode == 0o600 and key.user == "root" and key.group == "root"
    for public in ("cert.pem", "chain.pem", "fullchain.pem", "state.json"):
        f = node.file("%s/%s" % (directory, public))
        assert f.is_file and f.user == "root", public
    for public in ("cert.pem", "chain.pem", "fullchain.pem"):
        assert node.file("%s/%s" % (directory, public)).mode == 0o644, public
    fullchain = node.file(directory + "/fullchain.pem").content_string
    assert fullchain.startswith(node.file(directory + "/cert.pem").content_string.strip())
    # nothing half-installed is left behind
    assert node.run("ls %s | grep -E '\\.(new|next)$'" % directory).stdout == ""


@pytest.mark.parametrize("name", sorted(CERTS))
def test_certificate_chains_to_pebbles_issuing_root(node, pebble_root, name):
    directory = "%s/%s" % (ACME, name)
    result = node.run("openssl verify -CAfile %s -untrusted %s/chain.pem %s/cert.pem"
                      % (pebble_root, directory, directory))
    assert result.rc == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "%s/cert.pem: OK" % directory


@pytest.mark.parametrize("name,domains", sorted(CERTS.items()))
def test_certificate_holds_exactly_the_configured_names(node, name, domains):
    text = node.check_output("openssl x509 -in %s/%s/cert.pem -noout -ext subjectAltName"
                             % (ACME, name))
    sans = sorted(s.strip()[len("DNS:"):] for s in text.splitlines()[1].split(","))
    assert sans == sorted(domains)
    state = json.loads(node.file("%s/%s/state.json" % (ACME, name)).content_string)
    assert state["domains"] == domains
    assert state["directory"] == "https://127.0.0.1:14000/dir"


@pytest.mark.parametrize("name,algorithm", [("www", "id-ecPublicKey"), ("wild", "rsaEncryption")])
def test_key_matches_its_certificate_and_type(node, name, algorithm):
    directory = "%s/%s" % (ACME, name)
    cert_pub = node.check_output("openssl x509 -in %s/cert.pem -pubkey -noout" % directory)
    key_pub = node.check_output("openssl pkey -in %s/privkey.pem -pubout" % directory)
    assert cert_pub == key_pub
    assert algorithm in node.check_output("openssl x509 -in %s/cert.pem -noout -text" % directory)


def test_challenges_were_withdrawn(node):
    assert node.run("ls -A /var/www/trustzone-acme/.well-known/acme-challenge").stdout == ""
    log = node.file("/var/log/challtestsrv.log").content_string
    assert "Removed DNS-01 TXT challenge for Host \"_acme-challenge.apps.molacme.test.\"" in log


def test_the_ca_issued_each_certificate_once(node):
    """converge obtained both, the idempotence run asked pebble for nothing."""
    log = node.file("/var/log/pebble.log").content_string
    assert log.count("Issued certificate serial") == len(CERTS)
