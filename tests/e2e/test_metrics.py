"""The zone's state as Prometheus metrics, scraped from Debian's real prometheus-node-exporter
(issue 19, docs/metrics.md).

One fleet (a CA host and one node). node_exporter (Debian's prometheus-node-exporter binary,
unpacked into .venv/bin by scripts/bootstrap --tests) is copied into the node and the CA host and started
with its textfile collector on the directory the roles write to: the node's is Debian's
default (trustzone_metrics_textfile_dir unset, the directory exists), the CA host's is set
in the inventory. The test scrapes http://<host>:9100/metrics and finds every series with
the value it reads itself (cryptography on the certificates and CRL, the ledger's rows).
Then: a renewal changes the scrape; a run with nothing to do leaves the node's file alone
(same mtime and inode) and changes nothing; a directory set to one that does not exist stops
the run in one line naming the host and the variable, with nothing written.
"""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import time
import urllib.request

import pytest
import yaml
from cryptography import x509

from conftest import REPO, assert_nothing_changed, fleet_prefix

PREFIX = fleet_prefix("tzmetr")
ZONE = "mx"
DIR = "/etc/trustzone/%s" % ZONE
NODE_TEXTFILES = "/var/lib/prometheus/node-exporter"  # Debian's default: the variable unset
CA_TEXTFILES = "/srv/metrics"                          # set in the inventory for the CA host
# Debian's node_exporter, unpacked into the venv by scripts/bootstrap --tests
EXPORTER = str(REPO / ".venv" / "bin" / "prometheus-node-exporter")
PORT = 9100
HOSTS = ("ca", "node1")


def sample_re(name):
    return re.compile(r"^trustzone_%s\{(?P<labels>[^}]*)\} (?P<value>\S+)$" % name)


def scrape(fleet, host):
    """``{(name, frozenset(labels)): value}`` of the trustzone_ series node_exporter serves,
    and the whole text."""
    url = "http://%s:%d/metrics" % (fleet.ip(host), PORT)
    with urllib.request.urlopen(url, timeout=20) as answer:
        text = answer.read().decode()
    out = {}
    for line in text.splitlines():
        match = re.match(r"^(trustzone_\w+)\{([^}]*)\} (\S+)$", line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2)))
            out[(match.group(1), labels)] = float(match.group(3))
    return out, text


def value(samples, name, **labels):
    found = [v for (n, ls), v in samples.items()
             if n == name and set(labels.items()) <= set(ls)]
    assert len(found) == 1, (name, labels, sorted(n for n, _ls in samples))
    return found[0]


def start_exporter(fleet, host, directory):
    fleet.sh(host, (
        "mkdir -p {d}; pkill -x node-exporter; "
        "nohup /usr/local/bin/node-exporter --web.listen-address=:{p} "
        "--collector.disable-defaults --collector.textfile "
        "--collector.textfile.directory={d} > /tmp/node-exporter.log 2>&1 & "
        "for i in $(seq 100); do grep -q 'Listening on' /tmp/node-exporter.log && exit 0; "
        "sleep 0.1; done; cat /tmp/node-exporter.log; exit 1").format(d=directory, p=PORT))


@pytest.fixture(scope="module")
def fleet(make_fleet, tmp_path_factory):
    if shutil.which(EXPORTER) is None:
        pytest.fail("%s is missing: run scripts/bootstrap --tests (it unpacks Debian's "
                    "prometheus-node-exporter)" % EXPORTER)
    fleet = make_fleet(PREFIX, nodes=1, zone=ZONE)
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["all"]["children"]["trustzone_ca"]["hosts"]["ca"]["trustzone_metrics_textfile_dir"] = \
        CA_TEXTFILES
    path = tmp_path_factory.mktemp("metrics") / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    fleet.inventory = path

    def ip(host):
        return subprocess.run(
            ["podman", "inspect", "-f", '{{index .Config.Labels "trustzone.lab.ip"}}',
             fleet.container(host)], capture_output=True, text=True, check=True).stdout.strip()
    fleet.ip = ip
    for host, directory in (("node1", NODE_TEXTFILES), ("ca", CA_TEXTFILES)):
        subprocess.run(["podman", "cp", EXPORTER,
                        "%s:/usr/local/bin/node-exporter" % fleet.container(host)], check=True)
        start_exporter(fleet, host, directory)
    fleet.playbook("site.yml")
    return fleet


def certificate(fleet, host, name):
    return x509.load_pem_x509_certificate(fleet.read(host, "%s/%s.crt" % (DIR, name)).encode())


def epoch(moment):
    return int(moment.replace(tzinfo=datetime.timezone.utc).timestamp()) \
        if moment.tzinfo is None else int(moment.timestamp())


def test_each_certificate_series_is_scraped_with_its_value(fleet):
    samples, text = scrape(fleet, "node1")
    assert "node_textfile_scrape_error 0" in text
    for name in ("server", "client"):
        cert = certificate(fleet, "node1", name)
        labels = {"zone": ZONE, "profile": name, "path": "%s/%s.crt" % (DIR, name)}
        assert value(samples, "trustzone_certificate_not_after_seconds", **labels) == epoch(
            cert.not_valid_after_utc)
        assert value(samples, "trustzone_certificate_not_before_seconds", **labels) == epoch(
            cert.not_valid_before_utc)
        for series in ("valid", "chain_valid", "key_match", "present"):
            assert value(samples, "trustzone_certificate_" + series, **labels) == 1
        assert value(samples, "trustzone_certificate_renewal_pending", **labels) == 0
    crl = x509.load_pem_x509_crl(fleet.read("node1", "%s/crl.pem" % DIR).encode())
    assert value(samples, "trustzone_crl_next_update_seconds", zone=ZONE) == epoch(
        crl.next_update_utc)
    assert value(samples, "trustzone_rotation_phase", zone=ZONE, phase="stable") == 1
    assert value(samples, "trustzone_rotation_phase", zone=ZONE, phase="use") == 0


def test_the_ca_hosts_series(fleet):
    samples, text = scrape(fleet, "ca")
    assert "node_textfile_scrape_error 0" in text
    assert value(samples, "trustzone_ledger_certificates", zone=ZONE, status="valid") == 2
    assert value(samples, "trustzone_ledger_certificates", zone=ZONE, status="revoked") == 0
    assert value(samples, "trustzone_rotation_phase", zone=ZONE, phase="stable") == 1
    last = value(samples, "trustzone_last_success_timestamp_seconds", zone=ZONE)
    assert abs(last - time.time()) < 900
    crl_next = value(samples, "trustzone_crl_next_update_seconds", zone=ZONE)
    node_crl = x509.load_pem_x509_crl(fleet.read("node1", "%s/crl.pem" % DIR).encode())
    assert crl_next == epoch(node_crl.next_update_utc)


def node_file_stat(fleet):
    return fleet.sh("node1", "stat -c '%%i %%Y %%y' %s/trustzone_%s.prom" % (
        NODE_TEXTFILES, ZONE)).stdout.strip()


def test_a_run_with_nothing_to_do_leaves_the_node_file_alone_and_moves_the_run_time(fleet):
    before = node_file_stat(fleet)
    ca_before = value(scrape(fleet, "ca")[0], "trustzone_last_success_timestamp_seconds",
                      zone=ZONE)
    time.sleep(1.1)
    proc = fleet.playbook("site.yml")
    assert "nothing to do" in proc.output
    assert_nothing_changed(proc, hosts=HOSTS)
    assert node_file_stat(fleet) == before
    ca_after = value(scrape(fleet, "ca")[0], "trustzone_last_success_timestamp_seconds",
                     zone=ZONE)
    assert ca_after > ca_before


def test_a_renewal_changes_the_scrape(fleet):
    labels = {"zone": ZONE, "profile": "client", "path": "%s/client.crt" % DIR}
    before = value(scrape(fleet, "node1")[0], "trustzone_certificate_not_before_seconds",
                   **labels)
    time.sleep(1.1)
    fleet.sh("node1", "rm %s/client.crt" % DIR)
    fleet.playbook("renew.yml")
    samples = scrape(fleet, "node1")[0]
    cert = certificate(fleet, "node1", "client")
    after = value(samples, "trustzone_certificate_not_before_seconds", **labels)
    assert after != before and after == epoch(cert.not_valid_before_utc)
    assert value(samples, "trustzone_certificate_not_after_seconds", **labels) == epoch(
        cert.not_valid_after_utc)
    assert value(samples, "trustzone_certificate_renewal_pending", **labels) == 0
    ca = scrape(fleet, "ca")[0]
    assert value(ca, "trustzone_ledger_certificates", zone=ZONE, status="valid") == 2
    assert value(ca, "trustzone_ledger_certificates", zone=ZONE, status="superseded") == 1


def test_a_missing_directory_set_on_purpose_fails_in_one_line_with_nothing_written(fleet):
    before = fleet.sh("node1", "ls -la --time-style=full-iso %s" % NODE_TEXTFILES).stdout
    zone_before = fleet.sh("node1", "ls -la --time-style=full-iso %s" % DIR).stdout
    proc = fleet.playbook("site.yml", "--limit", "node1,ca", "-e",
                          "trustzone_metrics_textfile_dir=/srv/no-such-dir", check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.output.splitlines()
             if "trustzone_metrics_textfile_dir" in line and "FAILED" in line]
    assert lines, proc.output[-4000:]
    for line in lines:
        host = re.search(r"\[(\w+)\]", line).group(1)
        assert re.search(r'"msg": "%s: /srv/no-such-dir: the metrics textfile directory '
                         r'\(trustzone_metrics_textfile_dir\) does not exist .*Fix: ' % host,
                         line), line
    assert fleet.sh("node1", "ls -la --time-style=full-iso %s" % NODE_TEXTFILES).stdout == before
    assert fleet.sh("node1", "ls -la --time-style=full-iso %s" % DIR).stdout == zone_before
    assert not fleet.exists("node1", "/srv/no-such-dir")
