"""A compromised node's facts never become names (issue 14, part 1) and odd inventory host
names are refused before the CA is touched (part 5), over a real fleet (a CA host, 2 nodes).

Every node returns forged ansible_facts from a module (names and addresses of the CA host and
of the other node, ansible_host, the certs role's profile and name variables) and the fact
cache (.cache/facts/<host>, the shipped ansible.cfg keeps it 24 h) is planted with forged
values too; the CA still signs exactly what the inventory grants, and a CSR that asks for
the forged names is refused with a line naming the host and the field.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from conftest import REPO, VENV_BIN, ansible_env, fleet_prefix, recap

PREFIX = fleet_prefix("tzforged")
ZONE = "fx"
DIR = "/etc/trustzone/%s" % ZONE
CA_DIR = "/var/lib/trustzone/%s" % ZONE
CACHE = REPO / ".cache" / "facts"
PLAYBOOKS = REPO / "tests" / "e2e" / "playbooks"
OUTPUTS = []


@pytest.fixture(scope="module")
def fleet(make_fleet):
    fleet = make_fleet(PREFIX, nodes=2, zone=ZONE)
    for host in ("ca", "node1", "node2"):
        drop_cache(host)
    yield fleet
    for host in ("ca", "node1", "node2"):
        drop_cache(host)


def hostvars(fleet, host):
    data = fleet.hosts["all"]["children"]
    for group in ("trustzone_ca", "trustzone_nodes"):
        if host in data[group]["hosts"]:
            return data[group]["hosts"][host]
    raise KeyError(host)


def address(fleet, host):
    return hostvars(fleet, host)["trustzone_node_addresses"][0]


def playbook(fleet, path, *args, inventory=None):
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory or fleet.inventory), str(path),
         *args], cwd=REPO, env=ansible_env(), capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=900, check=False)
    proc.output = proc.stdout + proc.stderr
    OUTPUTS.append(proc.output)
    return proc


def forged_facts(fleet, host):
    other = "node2" if host == "node1" else "node1"
    names = [fleet.fqdn("ca"), fleet.fqdn(other), "pki01.example.com"]
    addresses = [address(fleet, "ca"), address(fleet, other), "203.0.113.66"]
    return {
        "trustzone_node_fqdn": fleet.fqdn("ca"),
        "trustzone_node_addresses": addresses,
        "trustzone_certs_extra_names": names,
        "ansible_host": address(fleet, "ca"),
        "trustzone_certs_profiles": [
            {"name": "server", "dns": names, "ip": addresses, "common_name": fleet.fqdn("ca"),
             "extended_key_usage": ["server_auth", "client_auth"]},
            {"name": "client", "extended_key_usage": ["client_auth"]}],
    }


def cache_files(host):
    """The jsonfile fact cache's files of ``host``: ``<host>`` (ansible-core before 2.19) and
    ``s<schema>_<host>`` holding ``{"__payload__": JSON}`` (2.19)."""
    try:
        from ansible._internal._json._profiles import _cache_persistence
        schema = _cache_persistence._Profile.schema_id
    except ImportError:
        schema = 1
    return CACHE / host, CACHE / ("s%s_%s" % (schema, host))


def write_cache(host, facts):
    """A previous run's fact cache for ``host``, as the jsonfile cache plugin writes it."""
    CACHE.mkdir(parents=True, exist_ok=True)
    old, new = cache_files(host)
    old.write_text(json.dumps(facts))
    new.write_text(json.dumps({"__payload__": json.dumps(facts)}))


def drop_cache(host):
    for path in cache_files(host):
        path.unlink(missing_ok=True)


def plant_cache(fleet, hosts=("node1", "node2")):
    for host in hosts:
        write_cache(host, forged_facts(fleet, host))


def sans(fleet, host, profile="server"):
    text = fleet.sh(host, "openssl x509 -in %s/%s.crt -noout -ext subjectAltName"
                    % (DIR, profile)).stdout
    return sorted(part.strip() for part in text.splitlines()[-1].split(","))


def subject_cn(fleet, host, profile="server"):
    text = fleet.sh(host, "openssl x509 -in %s/%s.crt -noout -subject -nameopt "
                    "sep_multiline,sname" % (DIR, profile)).stdout
    return [line.split("=", 1)[1] for line in text.splitlines() if line.strip().startswith("CN=")]


def ca_state(fleet):
    return fleet.sh("ca", "ls -la --time-style=full-iso %s 2>&1; find /var/lib/trustzone "
                    "-type f -exec sha256sum {} + 2>/dev/null | sort; true" % CA_DIR).stdout


@pytest.mark.parametrize("bad", ["node/1", "../node1", "node 1", "nöde1"])
def test_a_bad_inventory_host_name_fails_before_the_ca_is_touched(fleet, bad, tmp_path):
    data = yaml.safe_load(fleet.inventory.read_text())
    nodes = data["all"]["children"]["trustzone_nodes"]["hosts"]
    nodes[bad] = dict(nodes["node1"], trustzone_node_fqdn="bad.example.test",
                      trustzone_node_addresses=["192.0.2.99"])
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(data, allow_unicode=True))
    before = ca_state(fleet)
    proc = fleet.playbook("site.yml", "--limit", "ca,node1", inventory=inventory, check=False)
    OUTPUTS.append(proc.output)
    assert proc.returncode != 0
    assert "inventory host %r is not a valid host name or address" % bad in proc.output, \
        proc.output[-3000:]
    assert "rename the host" in proc.output
    assert ca_state(fleet) == before
    assert not fleet.exists("ca", "/var/lib/trustzone/%s/root.crt" % ZONE)
    assert not fleet.exists("node1", DIR)
    assert "Traceback" not in proc.output


def test_forged_facts_and_fact_cache_change_nothing_the_ca_signs(fleet):
    plant_cache(fleet)
    proc = playbook(fleet, PLAYBOOKS / "forged_facts.yml")
    assert proc.returncode == 0, proc.output[-4000:]
    stats = recap(proc.output)
    assert all(s["failed"] == 0 and s["unreachable"] == 0 for s in stats.values())
    for host in ("node1", "node2"):
        assert sans(fleet, host) == sorted(["DNS:%s" % host, "DNS:%s" % fleet.fqdn(host),
                                            "IP Address:%s" % address(fleet, host)])
        assert sans(fleet, host, "client") == sans(fleet, host)
        assert subject_cn(fleet, host) == [fleet.fqdn(host)]
        eku = fleet.sh(host, "openssl x509 -in %s/server.crt -noout -ext extendedKeyUsage"
                       % DIR).stdout
        assert "TLS Web Client Authentication" not in eku
    # the forged values were really this run's host variables, and are in the cache
    assert "pki01.example.com" in cache_files("node2")[1].read_text()


def test_a_second_run_with_the_forged_cache_changes_nothing(fleet):
    plant_cache(fleet)
    proc = fleet.playbook("site.yml", check=False)
    OUTPUTS.append(proc.output)
    assert proc.returncode == 0, proc.output[-4000:]
    stats = recap(proc.output)
    assert all(s["changed"] == 0 for h, s in stats.items() if h != "localhost"), proc.output[-3000:]


def test_one_compromised_node_with_a_forged_cache_gets_only_its_own_names(fleet):
    # only node2 is compromised; it claims the CA host's name and address and a foreign name
    # (no other node's, so no clash inside the play gives it away)
    drop_cache("node1")
    facts = forged_facts(fleet, "node2")
    names = [fleet.fqdn("ca"), "pki01.example.com"]
    facts.update(trustzone_certs_extra_names=names,
                 trustzone_node_addresses=[address(fleet, "ca")],
                 trustzone_certs_profiles=[{"name": "server", "dns": names},
                                           {"name": "client"}])
    write_cache("node2", facts)
    fleet.sh("node2", "rm -f %s/server.crt %s/client.crt" % (DIR, DIR))
    proc = fleet.playbook("site.yml", check=False)
    OUTPUTS.append(proc.output)
    assert proc.returncode == 0, proc.output[-4000:]
    for profile in ("server", "client"):
        assert sans(fleet, "node2", profile) == sorted([
            "DNS:node2", "DNS:%s" % fleet.fqdn("node2"),
            "IP Address:%s" % address(fleet, "node2")])
        assert subject_cn(fleet, "node2", profile) == [fleet.fqdn("node2")]


def test_a_csr_asking_for_the_forged_names_is_refused_naming_host_and_field(fleet):
    # node2 believes the forged cache and asks for the CA host's name in its CSR (the node's
    # module output is all the controller sees of it)
    drop_cache("node1")
    plant_cache(fleet, hosts=("node2",))
    fleet.sh("node2", "rm -f %s/server.crt" % DIR)
    proc = playbook(fleet, PLAYBOOKS / "forged_csr.yml", "-e", "forge_host=node2",
                    "-e", "forge_as=node1", "-e", "forge_kind=name")
    assert proc.returncode != 0
    assert "The CA of zone %s refused to sign for node2" % ZONE in proc.output
    # the forged fqdn (the CA host's) and node1's name, taken by forged_csr.yml
    assert ("profile server: subjectAltName: %s, %s not allowed for this host"
            % (fleet.fqdn("ca"), fleet.fqdn("node1")) in proc.output), proc.output[-4000:]
    assert ("subject: common name '%s', this host may only be '%s'"
            % (fleet.fqdn("ca"), fleet.fqdn("node2")) in proc.output)
    assert not fleet.exists("node2", DIR + "/server.crt")
    assert "Traceback" not in proc.output
    drop_cache("node2")
    assert fleet.playbook("site.yml").returncode == 0
    assert sans(fleet, "node2") == sorted(["DNS:node2", "DNS:%s" % fleet.fqdn("node2"),
                                           "IP Address:%s" % address(fleet, "node2")])


def ledger(fleet, sql="SELECT serial, status FROM issuance WHERE host = 'node2' AND "
                      "profile = 'server' ORDER BY issued_at"):
    script = ("import json, sqlite3; c = sqlite3.connect('%s/ledger.db'); "
              "print(json.dumps(c.execute(%r).fetchall()))" % (CA_DIR, sql))
    return [tuple(r) for r in json.loads(fleet.sh("ca", "python3 -c %s" % json.dumps(script)).stdout)]


def serial_of(fleet, pem):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, text=True,
                         capture_output=True, check=True).stdout
    return out.strip().split("=", 1)[1].lower().lstrip("0")


def report_installed(fleet, pem, tmp_path):
    extra = tmp_path / "installed.json"
    extra.write_text(json.dumps({"installed": {"server": {"certificate": pem}}}))
    return playbook(fleet, PLAYBOOKS / "reported_installed.yml", "-e", "report_host=node2",
                    "-e", "@%s" % extra)


def test_the_ledger_learns_which_certificate_a_node_really_holds(fleet, tmp_path):
    for host in ("node1", "node2"):
        drop_cache(host)
    old = fleet.read("node2", DIR + "/server.crt")
    fleet.sh("node2", "rm -f %s/server.crt" % DIR)
    assert fleet.playbook("site.yml").returncode == 0
    new = fleet.read("node2", DIR + "/server.crt")
    old_serial, new_serial = serial_of(fleet, old), serial_of(fleet, new)
    rows = dict((s.lstrip("0"), status) for s, status in ledger(fleet))
    assert (rows[old_serial], rows[new_serial]) == ("superseded", "valid")
    # the install "failed": node2 still serves the old certificate - the ledger follows it
    proc = report_installed(fleet, old, tmp_path)
    assert proc.returncode == 0, proc.output[-3000:]
    rows = dict((s.lstrip("0"), status) for s, status in ledger(fleet))
    assert (rows[old_serial], rows[new_serial]) == ("valid", "superseded")
    assert recap(proc.output)["node1"]["changed"] == 1, proc.output[-3000:]  # the sign task
    # again: nothing to learn, nothing changes
    proc = report_installed(fleet, old, tmp_path)
    assert recap(proc.output)["node1"]["changed"] == 0, proc.output[-3000:]
    # and back to the certificate really installed
    assert report_installed(fleet, new, tmp_path).returncode == 0
    rows = dict((s.lstrip("0"), status) for s, status in ledger(fleet))
    assert (rows[old_serial], rows[new_serial]) == ("superseded", "valid")
    # a certificate the ledger never issued for node2 (node1's) changes nothing
    before = ledger(fleet, "SELECT serial, status FROM issuance ORDER BY serial")
    proc = report_installed(fleet, fleet.read("node1", DIR + "/server.crt"), tmp_path)
    assert proc.returncode == 0, proc.output[-3000:]
    assert ledger(fleet, "SELECT serial, status FROM issuance ORDER BY serial") == before


def test_no_secret_in_any_output(fleet):
    passphrase_file = fleet.hosts["all"]["vars"]["trustzone_ca_passphrase"].split("'")[3]
    with open(passphrase_file) as handle:
        secret = handle.read().strip()
    for output in OUTPUTS:
        assert secret not in output
        assert "PRIVATE KEY" not in output
