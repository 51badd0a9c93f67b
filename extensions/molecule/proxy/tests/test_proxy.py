"""Verify the proxy on the converged nodes (testinfra): a user's request goes through the
proxy, with pebble's certificate, into the zone's backend over mutual TLS."""

import pytest

ZONE_DIR = "/etc/trustzone/molproxy"
ACME = "/etc/trustzone-acme"
PUBLIC = "web.molproxy.test"
BACKEND = "backend.molproxy.trustzone.test"
PEBBLE_HOST = "proxy"  # where pebble runs; its root is the only one the user trusts


def user_get(host, url, *args):
    """curl as the user on the proxy node: the public name pinned to 127.0.0.1."""
    out = host.run("curl -sS --max-time 20 --resolve %s:443:127.0.0.1 --resolve %s:80:127.0.0.1"
                   " -w '\\n%%{http_code}' %s %s" % (PUBLIC, PUBLIC, " ".join(args), url))
    body, code = out.stdout.rsplit("\n", 1) if "\n" in out.stdout else ("", out.stdout)
    return out, body.strip(), code


@pytest.fixture
def proxy(container):
    return container("proxy")


def test_the_user_reaches_the_zone_backend_through_the_proxy(proxy, pebble_root):
    out, body, code = user_get(proxy, "https://%s/" % PUBLIC, "--cacert", pebble_root)
    assert out.rc == 0, out.stderr
    assert code == "200"
    assert body.startswith("hello from the zone backend; proto=https host=%s client=" % PUBLIC)
    # the backend saw the proxy's zone client certificate
    subject = proxy.check_output("openssl x509 -in %s/client.crt -noout -subject -nameopt RFC2253"
                                 % ZONE_DIR)
    assert body.endswith("client=" + subject[len("subject="):].strip())


def test_the_proxy_shows_pebbles_certificate_for_the_public_name(proxy, pebble_root):
    cert = "%s/web/cert.pem" % ACME
    result = proxy.run("openssl verify -CAfile %s -untrusted %s/web/chain.pem %s"
                       % (pebble_root, ACME, cert))
    assert result.rc == 0, result.stdout + result.stderr
    sans = proxy.check_output("openssl x509 -in %s -noout -ext subjectAltName" % cert)
    assert "DNS:%s" % PUBLIC in sans
    served = proxy.check_output(
        "echo | openssl s_client -connect 127.0.0.1:443 -servername %s 2>/dev/null"
        " | openssl x509 -noout -fingerprint -sha256" % PUBLIC)
    assert served == proxy.check_output("openssl x509 -in %s -noout -fingerprint -sha256" % cert)
    key = proxy.file("%s/web/privkey.pem" % ACME)
    assert key.mode == 0o600 and key.user == "root"


def test_the_zone_root_is_not_what_users_see(proxy):
    out = user_get(proxy, "https://%s/" % PUBLIC, "--cacert", ZONE_DIR + "/roots.pem")[0]
    assert out.rc != 0  # the public side is pebble's, not the zone's


def test_plain_http_redirects_to_https(proxy):
    out = proxy.run("curl -sS --max-time 20 --resolve %s:80:127.0.0.1 -o /dev/null"
                    " -w '%%{http_code} %%{redirect_url}' http://%s/some/path" % (PUBLIC, PUBLIC))
    assert out.rc == 0, out.stderr
    assert out.stdout == "301 https://%s/some/path" % PUBLIC


def test_a_name_no_route_serves_gets_no_handshake(proxy, pebble_root):
    out = proxy.run("curl -sS --max-time 20 --resolve other.molproxy.test:443:127.0.0.1"
                    " --cacert %s https://other.molproxy.test/" % pebble_root)
    assert out.rc != 0


def test_the_backend_refuses_clients_without_a_zone_certificate(proxy):
    def status(*client):
        return proxy.check_output(
            "curl -sS --max-time 20 -o /dev/null -w '%%{http_code}' --cacert %s/roots.pem %s"
            " https://%s:8443/" % (ZONE_DIR, " ".join(client), BACKEND))
    assert status() == "400"  # nginx: no required SSL certificate was sent
    assert status("--cert", ZONE_DIR + "/client-fullchain.pem",
                  "--key", ZONE_DIR + "/client.key") == "200"


def test_the_proxy_configuration_is_valid_and_mutual_tls(proxy):
    assert proxy.run("nginx -t -q").rc == 0
    conf = proxy.file("/etc/nginx/conf.d/trustzone-proxy.conf").content_string
    assert "proxy_ssl_verify on;" in conf
    assert "proxy_ssl_name %s;" % BACKEND in conf
    assert "proxy_ssl_certificate %s/client-fullchain.pem;" % ZONE_DIR in conf
    assert not proxy.file("/etc/nginx/sites-enabled/default").exists


def test_the_ca_issued_one_certificate(proxy):
    """converge obtained it, the idempotence run asked pebble for nothing."""
    log = proxy.file("/var/log/pebble.log").content_string
    assert log.count("Issued certificate serial") == 1


def test_the_backend_logged_the_proxied_request(container):
    log = container("backend").file("/var/log/nginx/access.log").content_string
    assert "GET / HTTP/1.1" in log
