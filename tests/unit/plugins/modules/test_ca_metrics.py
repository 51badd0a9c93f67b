"""zone_root's metrics file on the CA host (docs/metrics.md): the ledger's counts by status,
the rotation phase, the CRL's nextUpdate and the time of the run, written to
<metrics_dir>/trustzone_<zone>.ca.prom by every run that is not check mode - and by the check
round's (metrics_in_check_mode), the CA host's only call on a run with nothing to do - never
counted as a change; a directory set on purpose that is missing stops the run before
anything is written."""

from __future__ import annotations

import datetime
import os
import re

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.modules import sign
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.tz_modulelib import (
    module_runner, zone_root_runner)

UTC = datetime.timezone.utc
PASS = "correct horse battery staple"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the CA directory is owned by root")


@pytest.fixture
def run():
    return zone_root_runner(passphrase=PASS, key_type="ec", key_curve="secp256r1")


def series(path, name):
    return {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1])
            for line in path.read_text().splitlines()
            if line.startswith("trustzone_%s{" % name)}


def test_a_run_writes_the_ca_file_and_is_no_change_for_it(run, tmp_path):
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    ca_dir = str(tmp_path / "ca")
    first = run(ca_dir, metrics_dir=str(textfiles))
    prom = textfiles / "trustzone_prod.ca.prom"
    assert first["changed"] and prom.exists() and (prom.stat().st_mode & 0o777) == 0o644
    assert series(prom, "ledger_certificates") == {
        'trustzone_ledger_certificates{zone="prod",status="%s"}' % s: 0
        for s in ("valid", "superseded", "revoked")}
    assert series(prom, "rotation_phase")[
        'trustzone_rotation_phase{zone="prod",phase="stable"}'] == 1
    (crl_line, crl_next), = series(prom, "crl_next_update_seconds").items()
    assert 'path="%s/crl.pem"' % ca_dir in crl_line and crl_next == int(
        datetime.datetime.strptime(first["crl_next_update"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC).timestamp())
    (last,) = series(prom, "last_success_timestamp_seconds").values()
    assert abs(last - datetime.datetime.now(UTC).timestamp()) < 60
    again = run(ca_dir, metrics_dir=str(textfiles))
    assert not again["changed"]


def test_ledger_counts_by_status(run, tmp_path):
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    ca_dir = str(tmp_path / "ca")
    run(ca_dir)
    conn = _ledger.connect(ca_dir)
    entry = dict(zone="prod", host="node1", profile="server", subject="CN=node1", sans=[],
                 not_before="2026-01-01T00:00:00Z", not_after="2027-01-01T00:00:00Z",
                 issuer="CN=root", issuer_fingerprint="00")
    _ledger.record(conn, [dict(entry, serial="01", fingerprint="aa")], "2026-01-01T00:00:00Z")
    _ledger.record(conn, [dict(entry, serial="02", fingerprint="bb")], "2026-01-02T00:00:00Z")
    # another zone's row in the same ledger is not counted
    _ledger.record(conn, [dict(entry, zone="dev", serial="03", fingerprint="cc")],
                   "2026-01-02T00:00:00Z")
    conn.close()
    run(ca_dir, metrics_dir=str(textfiles))
    counts = series(textfiles / "trustzone_prod.ca.prom", "ledger_certificates")
    assert counts['trustzone_ledger_certificates{zone="prod",status="valid"}'] == 1
    assert counts['trustzone_ledger_certificates{zone="prod",status="superseded"}'] == 1


def test_check_mode_writes_only_in_the_check_round(run, tmp_path):
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    ca_dir = str(tmp_path / "ca")
    run(ca_dir)
    run(ca_dir, check=True, metrics_dir=str(textfiles))
    assert os.listdir(textfiles) == []
    result = run(ca_dir, check=True, metrics_dir=str(textfiles), metrics_in_check_mode=True)
    assert not result["changed"] and os.listdir(textfiles) == ["trustzone_prod.ca.prom"]


def test_an_explicit_missing_directory_stops_before_anything_is_written(run, tmp_path):
    ca_dir = tmp_path / "ca"
    with pytest.raises(TrustzoneError, match=re.escape("trustzone_metrics_textfile_dir")):
        run(str(ca_dir), metrics_dir=str(tmp_path / "absent"))
    assert not ca_dir.exists()
    run(str(ca_dir), metrics_dir=str(tmp_path / "absent"), metrics_dir_optional=True)
    assert ca_dir.exists() and not (tmp_path / "absent").exists()


def test_the_sign_step_writes_the_ledger_counts_as_they_are_after_it(run, tmp_path):
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    ca_dir = str(tmp_path / "ca")
    run(ca_dir, metrics_dir=str(textfiles))
    conn = _ledger.connect(ca_dir)
    _ledger.record(conn, [dict(zone="prod", host="node1", profile="server", subject="CN=n",
                               sans=[], not_before="2026-01-01T00:00:00Z",
                               not_after="2027-01-01T00:00:00Z", issuer="CN=root",
                               issuer_fingerprint="00", serial="01", fingerprint="aa")],
                   "2026-01-01T00:00:00Z")
    conn.close()
    module_runner()(sign, zone="prod", dir=ca_dir, passphrase=PASS, metrics_dir=str(textfiles))
    counts = series(textfiles / "trustzone_prod.ca.prom", "ledger_certificates")
    assert counts['trustzone_ledger_certificates{zone="prod",status="valid"}'] == 1
