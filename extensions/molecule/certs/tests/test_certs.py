"""Verify the certs role (and the trust role) on the converged node and CA host (testinfra)."""

import pytest

ZONE_DIR = "/etc/trustzone/mol"


@pytest.fixture
def node(container):
    return container("node")


@pytest.fixture
def ca(container):
    return container("ca")


def test_identities_verify_against_the_os_trust_store(node):
    for name in ("server", "client"):
        result = node.run("openssl verify %s/%s.crt" % (ZONE_DIR, name))
        assert result.rc == 0, result.stderr
        assert result.stdout.strip() == "%s/%s.crt: OK" % (ZONE_DIR, name)


def test_keys_are_private_and_match_their_certificates(node):
    for name in ("server", "client"):
        key = node.file("%s/%s.key" % (ZONE_DIR, name))
        assert key.mode == 0o600 and key.user == "root" and key.group == "root"
        cert_pub = node.check_output("openssl x509 -in %s/%s.crt -pubkey -noout" % (ZONE_DIR, name))
        key_pub = node.check_output("openssl pkey -in %s/%s.key -pubout" % (ZONE_DIR, name))
        assert cert_pub == key_pub


def test_certificates_carry_the_inventory_names(node):
    text = node.check_output("openssl x509 -in %s/server.crt -noout -text" % ZONE_DIR)
    assert "DNS:node.mol.trustzone.test" in text
    assert "IP Address:192.0.2.7" in text
    assert "TLS Web Server Authentication" in text
    client = node.check_output("openssl x509 -in %s/client.crt -noout -text" % ZONE_DIR)
    assert "TLS Web Client Authentication" in client


def test_exactly_one_zone_anchor_and_it_is_world_readable(node):
    anchors = node.check_output("ls /usr/local/share/ca-certificates").split()
    zone = [a for a in anchors if a.startswith("trustzone-mol-")]
    assert len(zone) == 1
    anchor = node.file("/usr/local/share/ca-certificates/" + zone[0])
    assert anchor.mode == 0o644 and anchor.user == "root"
    bundle = node.file("/etc/ssl/certs/ca-certificates.crt").content_string
    assert anchor.content_string.strip() in bundle


def test_ca_key_is_encrypted_and_locked_away(ca):
    directory = ca.file("/var/lib/trustzone/mol")
    assert directory.mode == 0o700
    generation = ca.file("/var/lib/trustzone/mol/current").content_string.strip()  # gen/NNNNNN
    key = ca.file("/var/lib/trustzone/mol/%s/root.key" % generation)
    assert key.mode == 0o600
    assert key.content_string.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_the_root_key_never_reached_the_node(node):
    assert node.run("grep -rl 'ENCRYPTED PRIVATE KEY' /etc /root /tmp 2>/dev/null").stdout == ""


# A server that demands a zone client certificate and answers one HTTP request (-www); the
# client sends the request and reads until the server closes (-ign_eof). Only a handshake the
# server accepted gets the answer: the client's exit status alone cannot tell, since in TLS 1.3
# the client may finish before the server's refusal arrives.
MTLS = ("openssl s_server -naccept 1 -www -accept 127.0.0.1:8443 -cert {d}/server.crt"
        " -key {d}/server.key -CAfile {d}/roots.pem -Verify 1 -verify_return_error"
        " >/dev/null 2>&1 & sleep 1; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 10"
        " openssl s_client -brief -ign_eof -connect 127.0.0.1:8443 -CAfile {d}/roots.pem"
        " -verify_return_error -verify_hostname node.mol.trustzone.test {client}; rc=$?;"
        " wait; exit $rc")
ANSWER = "HTTP/1.0 200 ok"


def test_mutual_tls_handshake_between_the_two_identities(node):
    client = "-cert %s/client.crt -key %s/client.key" % (ZONE_DIR, ZONE_DIR)
    result = node.run(MTLS.format(d=ZONE_DIR, client=client))
    assert result.rc == 0, result.stdout + result.stderr
    assert "Verification: OK" in result.stdout + result.stderr
    assert ANSWER in result.stdout, result.stdout + result.stderr


def test_no_handshake_without_a_zone_client_certificate(node):
    result = node.run(MTLS.format(d=ZONE_DIR, client=""))
    assert "Verification: OK" in result.stdout + result.stderr  # the server is fine
    assert ANSWER not in result.stdout, result.stdout  # but it answers no one without one
