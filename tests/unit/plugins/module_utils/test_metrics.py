"""module_utils/_metrics.py: the node's and the CA host's metrics files in the Prometheus
text exposition format - HELP and TYPE lines, the trustzone_ prefix, label values escaped,
timestamps as seconds since the epoch, the same bytes for the same state - checked with
`promtool check metrics` (and the example alert rules with `promtool check rules`) when
promtool is on PATH."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.trustzone.pki.plugins.module_utils import _metrics as M
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

UTC = datetime.timezone.utc
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
# Debian's promtool, unpacked into the venv by scripts/bootstrap --tests
PROMTOOL = shutil.which("promtool") or shutil.which(os.path.join(ROOT, ".venv", "bin", "promtool"))

NODE = {
    "certificates": [
        {"profile": "server", "path": "/etc/trustzone/prod/server.crt", "reasons": [],
         "not_before": "2026-01-01T00:00:00Z", "not_after": "2026-04-01T00:00:00Z",
         "renew_at": "2026-03-02T00:00:00Z", "valid": True, "chain_valid": True, "key_match": True},
        {"profile": "client", "path": "/etc/trustzone/prod/client.crt",
         "reasons": ["revoked", "expiring"],
         "not_before": "2026-01-01T00:00:00Z", "not_after": "2026-02-01T00:00:00Z",
         "valid": True, "chain_valid": False, "key_match": False},
        {"profile": "db", "path": '/srv/we"ird\\path\n.crt', "reasons": ["missing"]},
    ],
    "crls": [{"issuer": "CN=trustzone prod root CA,O=trustzone", "path":
              "/etc/trustzone/prod/crl.pem", "next_update": "2026-01-08T00:00:00Z"}],
    "phase": "trust",
}
CA = {"ledger": {"valid": 4, "superseded": 2}, "phase": "stable",
      "crls": [{"issuer": "CN=trustzone prod root CA", "path": "/var/lib/trustzone/prod",
                "next_update": "2026-01-08T00:00:00Z"}],
      "last_success": "2026-01-02T03:04:05Z"}


def epoch(text):
    return int(datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC).timestamp())


def lines_of(text):
    return text.splitlines()


def test_node_series_carry_the_certificate_times_as_seconds_since_the_epoch():
    text = M.node_text("prod", NODE)
    labels = 'zone="prod",profile="server",path="/etc/trustzone/prod/server.crt"'
    assert "trustzone_certificate_not_after_seconds{%s} %d" % (
        labels, epoch("2026-04-01T00:00:00Z")) in lines_of(text)
    assert "trustzone_certificate_not_before_seconds{%s} %d" % (
        labels, epoch("2026-01-01T00:00:00Z")) in lines_of(text)
    assert "trustzone_certificate_renew_at_seconds{%s} %d" % (
        labels, epoch("2026-03-02T00:00:00Z")) in lines_of(text)
    for name in ("valid", "chain_valid", "key_match", "present"):
        assert "trustzone_certificate_%s{%s} 1" % (name, labels) in lines_of(text)
    assert "trustzone_certificate_renewal_pending{%s} 0" % labels in lines_of(text)


CLIENT = 'zone="prod",profile="client",path="/etc/trustzone/prod/client.crt"'
DB = 'zone="prod",profile="db",path="/srv/we\\"ird\\\\path\\n.crt"'


@pytest.mark.parametrize("line", [
    # a pending renewal names each reason; the facts that are wrong are 0
    "trustzone_certificate_renewal_pending{%s} 1" % CLIENT,
    'trustzone_certificate_renewal_reason{%s,reason="expiring"} 1' % CLIENT,
    'trustzone_certificate_renewal_reason{%s,reason="revoked"} 1' % CLIENT,
    "trustzone_certificate_chain_valid{%s} 0" % CLIENT,
    "trustzone_certificate_key_match{%s} 0" % CLIENT,
    # label values escaped; a missing certificate is not present, and why
    "trustzone_certificate_present{%s} 0" % DB,
    'trustzone_certificate_renewal_reason{%s,reason="missing"} 1' % DB,
])
def test_renewals_broken_facts_and_escaped_labels(line):
    assert line in lines_of(M.node_text("prod", NODE))


def test_a_missing_certificate_has_no_times():
    text = M.node_text("prod", NODE)
    assert not [line for line in lines_of(text) if 'profile="db"' in line and "_seconds" in line]
    assert M.escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_crl_and_rotation_phase_series():
    text = M.node_text("prod", NODE)
    assert ('trustzone_crl_next_update_seconds{zone="prod",issuer="CN=trustzone prod root CA,'
            'O=trustzone",path="/etc/trustzone/prod/crl.pem"} %d'
            % epoch("2026-01-08T00:00:00Z")) in lines_of(text)
    assert 'trustzone_rotation_phase{zone="prod",phase="trust"} 1' in lines_of(text)
    assert 'trustzone_rotation_phase{zone="prod",phase="stable"} 0' in lines_of(text)
    assert 'trustzone_rotation_phase{zone="prod",phase="use"} 0' in lines_of(text)


def test_every_series_has_help_and_type_once_and_the_same_state_gives_the_same_bytes():
    text = M.node_text("prod", NODE)
    names = {line.split("{")[0] for line in lines_of(text) if not line.startswith("#")}
    for name in names:
        assert name.startswith("trustzone_")
        assert lines_of(text).count("# TYPE %s gauge" % name) == 1
        assert sum(1 for line in lines_of(text) if line.startswith("# HELP %s " % name)) == 1
    assert text.endswith("\n")
    assert M.node_text("prod", NODE) == text
    assert M.node_text("prod", {}) == ""


def test_ca_series():
    text = M.ca_text("prod", CA)
    assert 'trustzone_ledger_certificates{zone="prod",status="valid"} 4' in lines_of(text)
    assert 'trustzone_ledger_certificates{zone="prod",status="superseded"} 2' in lines_of(text)
    assert 'trustzone_ledger_certificates{zone="prod",status="revoked"} 0' in lines_of(text)
    assert 'trustzone_rotation_phase{zone="prod",phase="stable"} 1' in lines_of(text)
    assert 'trustzone_last_success_timestamp_seconds{zone="prod"} %d' % epoch(
        "2026-01-02T03:04:05Z") in lines_of(text)
    assert "last_success" not in M.ca_text("prod", dict(CA, last_success=None))


def test_file_names_never_meet():
    assert M.node_file("prod") == "trustzone_prod.prom"
    assert M.ca_file("prod") == "trustzone_prod.ca.prom"
    assert M.ca_file("prod") != M.node_file("prod_ca")


# --------------------------------------------------------------------------- the directory

def test_no_directory_or_an_optional_missing_one_writes_nothing(tmp_path):
    assert M.target("", False) is None
    assert M.target(None, True) is None
    assert M.target(str(tmp_path / "absent"), True) is None
    assert M.target(str(tmp_path), False) == str(tmp_path)


def test_an_explicit_missing_directory_fails_in_one_line_naming_the_variable(tmp_path):
    with pytest.raises(TrustzoneError) as err:
        M.target(str(tmp_path / "absent"), False)
    message = str(err.value)
    assert "\n" not in message and M.VARIABLE in message and "Fix:" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_directory_fails(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(TrustzoneError, match="not writable"):
            M.target(str(tmp_path), False)
    finally:
        tmp_path.chmod(0o700)


def test_publish_writes_0644_atomically_and_only_when_the_content_differs(tmp_path):
    assert M.publish(str(tmp_path), "trustzone_prod.prom", "a 1\n")
    path = tmp_path / "trustzone_prod.prom"
    assert path.read_text() == "a 1\n" and (path.stat().st_mode & 0o777) == 0o644
    before = path.stat()
    assert not M.publish(str(tmp_path), "trustzone_prod.prom", "a 1\n")
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_ino == before.st_ino
    assert M.publish(str(tmp_path), "trustzone_prod.prom", "a 2\n")
    assert path.read_text() == "a 2\n"
    assert sorted(os.listdir(tmp_path)) == ["trustzone_prod.prom"]  # no temporary file left


# --------------------------------------------------------------------------- promtool

@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")
@pytest.mark.parametrize("text", [M.node_text("prod", NODE), M.ca_text("prod", CA)],
                         ids=["node", "ca"])
def test_promtool_check_metrics_accepts_the_files(text):
    run = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=60, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()
    assert not run.stdout.strip() and not run.stderr.strip(), (run.stdout + run.stderr).decode()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_check_rules_accepts_the_example_alerts():
    rules = os.path.join(ROOT, "docs", "examples", "trustzone-alerts.yml")
    run = subprocess.run([PROMTOOL, "check", "rules", rules], capture_output=True, timeout=60,
                         check=False)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()
    assert b"SUCCESS: 7 rules found" in run.stdout, run.stdout.decode()


def test_every_series_an_example_alert_uses_is_one_we_write():
    rules = os.path.join(ROOT, "docs", "examples", "trustzone-alerts.yml")
    with open(rules, encoding="utf-8") as handle:
        groups = yaml.safe_load(handle)["groups"]
    used = {name for group in groups for rule in group["rules"]
            for name in re.findall(r"trustzone_[a-z_]+", rule["expr"])}
    written = {M.PREFIX + name for name, _help in M.NODE_SERIES + M.CA_SERIES}
    assert used and used <= written, used - written
