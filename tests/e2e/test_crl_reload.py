"""A new CRL reaches the services that read it, without a manual reload (issue 14).

nginx (ssl_crl) reads crl.pem only when it (re)loads. Each node runs
trustzone_certs_reload_commands; after revoke.yml (the trust role) or a site.yml that puts
back the zone's CRL (the certs role) the nodes whose crl.pem changed - and only those - run
them, so nginx refuses the revoked client at once. A run with nothing to do reloads nothing;
check mode says it would and runs nothing.
"""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import curl_status, fleet_prefix, nginx_conf

PREFIX = fleet_prefix("tzcrl")
ZONE = "crl"
DIR = "/etc/trustzone/%s" % ZONE
RELOAD = "date >> /tmp/reloaded; nginx -s reload 2>/dev/null || nginx"
OUTPUTS = []

NGINX = nginx_conf(DIR)


@pytest.fixture(scope="module")
def fleet(make_fleet, tmp_path_factory):
    fleet = make_fleet(PREFIX, nodes=2, zone=ZONE)
    fleet.passphrase = (fleet.inventory.parent / "ca-passphrase").read_text().strip()
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["children"]["trustzone_nodes"]["vars"] = {
        "trustzone_certs_reload_commands": [["sh", "-c", RELOAD]]}
    path = tmp_path_factory.mktemp("crl-reload") / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    fleet.inventory = path
    OUTPUTS.append(fleet.playbook("site.yml").output)
    fleet.sh("node1", "cat > /etc/nginx/conf.d/trustzone.conf && nginx -t && nginx -s reload",
             input=NGINX)
    return fleet


def reloads(fleet, host):
    """How many times the node's reload command ran."""
    return int(fleet.sh(host, "cat /tmp/reloaded 2>/dev/null | wc -l").stdout.strip())


def counts(fleet):
    return {h: reloads(fleet, h) for h in ("node1", "node2")}


def status(fleet, client, cert, key, expect):
    return curl_status(fleet, client, DIR, cert, key, expect=expect)


def test_the_first_run_reloaded_and_a_noop_run_reloads_nothing(fleet):
    before = counts(fleet)
    assert before["node1"] >= 1 and before["node2"] >= 1  # the first site.yml: new certs, CRL
    proc = fleet.playbook("site.yml")
    OUTPUTS.append(proc.output)
    assert counts(fleet) == before
    assert "RUNNING HANDLER" not in proc.output  # nothing notified, not even a skipped reload


def test_revocation_reloads_nginx_which_refuses_the_revoked_client_at_once(fleet):
    fleet.sh("node1", "cp %s/crl.pem /tmp/crl.before" % DIR)
    fleet.sh("node2", "cp %s/client.crt /tmp/old-client.crt && "
                      "cp %s/client.key /tmp/old-client.key" % (DIR, DIR))
    assert status(fleet, "node2", "/tmp/old-client.crt", "/tmp/old-client.key", "200") == "200"
    before = counts(fleet)
    proc = fleet.playbook("revoke.yml", "-e", '{"trustzone_revoke_hosts": ["node2"]}',
                          "-e", "trustzone_revoke_reason=key_compromise")
    OUTPUTS.append(proc.output)
    # every node's crl.pem changed: each reloaded once, and nothing reloaded nginx by hand
    assert counts(fleet) == {h: n + 1 for h, n in before.items()}
    assert status(fleet, "node2", "/tmp/old-client.crt", "/tmp/old-client.key", "400") == "400"
    # node1's own client certificate, not revoked, is still let in
    assert status(fleet, "node1", DIR + "/client.crt", DIR + "/client.key", "200") == "200"


def test_renewing_the_revoked_host_does_not_reload_the_others_and_a_rerun_nothing(fleet):
    before = counts(fleet)
    OUTPUTS.append(fleet.playbook("site.yml").output)  # node2 gets new certificates
    after = counts(fleet)
    assert after["node1"] == before["node1"]  # its crl.pem and certificates did not change
    assert after["node2"] == before["node2"] + 1  # its certificates did
    assert status(fleet, "node2", DIR + "/client.crt", DIR + "/client.key", "200") == "200"
    proc = fleet.playbook("site.yml")
    OUTPUTS.append(proc.output)
    assert counts(fleet) == after


def test_site_puts_back_a_stale_crl_and_reloads_only_that_node(fleet):
    # node1 serves with an old CRL again (a lost update): nginx lets the revoked client in
    fleet.sh("node1", "cp %s/crl.pem /tmp/crl.current && cp /tmp/crl.before %s/crl.pem && "
                      "nginx -s reload" % (DIR, DIR))
    assert status(fleet, "node2", "/tmp/old-client.crt", "/tmp/old-client.key", "200") == "200"
    before = counts(fleet)
    check = fleet.playbook("site.yml", "--check", "-v")
    OUTPUTS.append(check.output)
    # node1 would reload (the command is not run in check mode), and the plan says so
    handler = re.split(r"\n(?:TASK|RUNNING HANDLER|PLAY) \[", check.output.split(
        "RUNNING HANDLER [trustzone.pki.certs : Run commands that pick up the zone's files"
    )[1])[0]
    assert "[node1]" in handler and "Command would have run if not in check mode" in handler
    assert "[node2]" not in handler
    assert '"Reload: node1 (' in check.output
    assert counts(fleet) == before  # check mode ran nothing
    assert fleet.read("node1", DIR + "/crl.pem") == fleet.read("node1", "/tmp/crl.before")
    proc = fleet.playbook("site.yml")
    OUTPUTS.append(proc.output)
    assert fleet.read("node1", DIR + "/crl.pem") == fleet.read("node1", "/tmp/crl.current")
    assert counts(fleet) == {"node1": before["node1"] + 1, "node2": before["node2"]}
    assert status(fleet, "node2", "/tmp/old-client.crt", "/tmp/old-client.key", "400") == "400"


def test_no_secret_in_any_output(fleet):
    outputs = "\n".join(OUTPUTS)
    assert len(OUTPUTS) >= 7
    assert fleet.passphrase not in outputs
    assert "PRIVATE KEY" not in outputs
    assert "Traceback" not in outputs
