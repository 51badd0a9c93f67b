"""The node module's metrics file (module_utils/_metrics.py, docs/metrics.md) on real files,
driven as modules/node.py's main() drives it: a full run writes
<metrics_dir>/trustzone_<zone>.prom; a no-op run answered from the stamp keeps it right (and
rewrites it, without cryptography, when it went missing) but never touches an unchanged
file; a renewal updates it; check mode writes it only in site.yml's check round; a directory
set on purpose that is missing stops the run before anything is written."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _metrics as M
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.modules import node as N
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.test_node_identity import sign
# pylint: disable-next=unused-import
from ansible_collections.trustzone.pki.tests.unit.plugins.modules.test_node_stamp import (
    Zone, ca)

UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="profiles are owned by root")


class MetricsZone(Zone):
    """A zone whose node writes its metrics file into ``textfiles``."""

    def __init__(self, tmp_path, ca):
        super().__init__(tmp_path, ca)
        self.textfiles = tmp_path / "textfiles"
        self.textfiles.mkdir()
        self.params.update(metrics_dir=str(self.textfiles), metrics_dir_optional=False)

    def call(self, check=False, now=None, **extra):
        """(answered from the stamp, result), as modules/node.py's main() does it."""
        params = dict(self.params, **extra)
        fast = N.answer(params, check, False, lambda _name: None, now)
        if fast is not None:
            return True, fast
        return False, N.run(self.module(params, check))

    @property
    def prom(self):
        return self.textfiles / "trustzone_prod.prom"

    def cert(self, name="server"):
        profile = [p for p in self.profiles if p["name"] == name][0]
        with open(profile["cert_path"], "rb") as handle:
            return profile, C.load_certificate(handle.read())

    def series(self, name, profile="server"):
        profile, _cert = self.cert(profile)
        prefix = 'trustzone_%s{zone="prod",profile="%s",path="%s"' % (
            name, profile["name"], profile["cert_path"])
        return [line for line in self.prom.read_text().splitlines() if line.startswith(prefix)]


@pytest.fixture
def zone(tmp_path, ca):
    return MetricsZone(tmp_path, ca)


def value(lines):
    assert len(lines) == 1, lines
    return int(lines[0].rsplit(" ", 1)[1])


def test_a_full_run_writes_each_certificates_series(zone):
    zone.issue()
    fast, result = zone.call()
    assert not fast and not result["changed"]
    for name in ("server", "client"):
        _profile, cert = zone.cert(name)
        assert value(zone.series("certificate_not_after_seconds", name)) == int(
            C.not_after(cert).timestamp())
        assert value(zone.series("certificate_not_before_seconds", name)) == int(
            C.not_before(cert).timestamp())
        for series in ("valid", "chain_valid", "key_match", "present"):
            assert value(zone.series("certificate_" + series, name)) == 1
        assert value(zone.series("certificate_renewal_pending", name)) == 0
        profile, _cert = zone.cert(name)
        assert value(zone.series("certificate_renew_at_seconds", name)) == int(
            C.not_after(cert).timestamp()) - profile["renew_before"]
    assert 'trustzone_rotation_phase{zone="prod",phase="stable"} 1' in zone.prom.read_text()
    assert (zone.prom.stat().st_mode & 0o777) == 0o644


def test_a_no_op_run_through_the_stamp_leaves_the_file_alone_and_right(zone):
    zone.stamped()
    before = zone.prom.stat()
    text = zone.prom.read_text()
    fast, result = zone.call()
    assert fast and not result["changed"] and result["files"] == []
    after = zone.prom.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    # the stamp carries what the file says: removed, it comes back the same from the stamp
    zone.prom.unlink()
    fast, result = zone.call()
    assert fast and not result["changed"]
    assert zone.prom.read_text() == text


def test_the_stamp_rewrites_the_file_without_cryptography(zone):
    zone.stamped()
    text = zone.prom.read_text()
    zone.prom.unlink()
    script = r"""
import json, sys
params = json.loads(sys.stdin.read())
from ansible_collections.trustzone.pki.plugins.modules import node
result = node.answer(params, False, False, lambda _name: None)
print(json.dumps({"answered": result is not None,
                  "crypto": sorted(m for m in sys.modules if m.split(".")[0] == "cryptography")}))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", script], input=json.dumps(zone.params),
                         capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout) == {"answered": True, "crypto": []}
    assert zone.prom.read_text() == text


def test_a_renewal_updates_the_file(zone):
    before = zone.stamped()
    _profile, old = zone.cert()
    serial = int(before["identities"]["server"]["serial"], 16)
    now = datetime.datetime.now(UTC)
    crl = C.crl_pem(C.build_crl(zone.ca.cert, zone.ca.key, [(serial, now, None)], now,
                                now + DAY, 1))
    fast, inspected = zone.call(crl=crl)
    assert not fast and inspected["requests"]
    assert value(zone.series("certificate_renewal_pending")) == 1
    assert 'reason="revoked"' in zone.series("certificate_renewal_reason")[0]
    assert value([line for line in zone.prom.read_text().splitlines()
                  if line.startswith("trustzone_crl_next_update_seconds")]) == int(
                      (now + DAY).timestamp())
    certificates = {}
    for name, item in inspected["requests"].items():
        profile = [p for p in zone.profiles if p["name"] == name][0]
        certificates[name] = {"certificate": C.certificate_pem(sign(
            zone.ca, C.load_csr(item["csr"]).public_key(), profile, days=100)), "chain": []}
    _fast, installed = zone.call(certificates=certificates)
    assert installed["installed"] == ["server"]
    _profile, new = zone.cert()
    assert C.not_after(new) != C.not_after(old)
    assert value(zone.series("certificate_not_after_seconds")) == int(
        C.not_after(new).timestamp())
    assert value(zone.series("certificate_renewal_pending")) == 0


def test_check_mode_writes_no_metrics_but_the_check_round_does(zone):
    zone.issue()
    zone.prom.unlink()
    zone.call(check=True)
    assert not zone.prom.exists()
    zone.call(check=True, stamp_in_check_mode=True)
    assert zone.prom.exists()


def test_an_explicit_missing_directory_stops_the_run_before_anything_is_written(zone, tmp_path):
    missing = str(tmp_path / "no-such-dir")
    with pytest.raises(TrustzoneError) as err:
        zone.call(metrics_dir=missing)
    assert M.VARIABLE in str(err.value) and "\n" not in str(err.value)
    assert not os.path.exists(zone.dir)  # not even the zone directory


def test_an_optional_missing_directory_writes_nothing(zone, tmp_path):
    missing = tmp_path / "no-such-dir"
    zone.issue()
    _fast, result = zone.call(metrics_dir=str(missing), metrics_dir_optional=True)
    assert not result["changed"] and not missing.exists()
