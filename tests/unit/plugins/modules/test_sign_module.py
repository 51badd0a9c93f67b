"""The sign module on the CA host, with a fake AnsibleModule: the ledger learns what the
nodes have installed (issue 14, I4), without the CA key when nothing is to be signed."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.modules import sign

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


class Exit(Exception):
    pass


def fake_module(params, check_mode=False):
    class Module:
        def __init__(self, argument_spec, supports_check_mode, **_rules):
            self.params = {name: spec.get("default") for name, spec in argument_spec.items()}
            self.params.update(params)
            self.check_mode = check_mode

        def exit_json(self, **result):
            raise Exit(dict(result, failed=False))

        def fail_json(self, **result):
            raise Exit(dict(result, failed=True))
    return Module


def run(monkeypatch, params, check_mode=False):
    monkeypatch.setattr(sign, "AnsibleModule", fake_module(params, check_mode))
    monkeypatch.setattr(sign.CaDir, "issuer", lambda *a, **k: pytest.fail("CA key was read"))
    with pytest.raises(Exit) as info:
        sign.main()
    return info.value.args[0]


def certificate(serial_days=300):
    key = C.generate_key({"type": "ec", "curve": "secp256r1"})
    cert = C.build_ca_certificate(key, C.zone_name_attributes("prod", "x", unique="01"),
                                  NOW - DAY, NOW + serial_days * DAY)
    return C.certificate_pem(cert), C.fingerprint(cert)


def entry(serial, host, fingerprint):
    return {"serial": serial, "zone": "prod", "host": host, "profile": "server",
            "subject": "CN=%s" % host, "sans": {"dns": [host], "ip": []},
            "not_before": "2026-01-01T00:00:00Z",
            "not_after": (NOW + 100 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fingerprint": fingerprint, "issuer": "CN=root", "issuer_fingerprint": "00" * 32}


def test_the_installed_certificate_becomes_valid_without_reading_the_ca_key(monkeypatch, tmp_path):
    old_pem, old_fp = certificate()
    _new_pem, new_fp = certificate()
    conn = _ledger.connect(str(tmp_path))
    _ledger.record(conn, [entry("1", "web1", old_fp)], "2026-01-01T00:00:00Z")
    _ledger.record(conn, [entry("2", "web1", new_fp)], "2026-01-02T00:00:00Z")
    conn.close()
    stranger_pem, stranger_fp = certificate()
    params = {"zone": "prod", "dir": str(tmp_path), "passphrase": "x" * 12,
              "installed": {"web1": {"server": {"certificate": old_pem,
                                                "fingerprint": new_fp}},  # the node lies
                            "web2": {"server": {"certificate": stranger_pem}}}}
    result = run(monkeypatch, params)
    assert result["failed"] is False and result["changed"] is True
    assert result["issued"] == 0 and result["certificates"] == {}
    assert [(c["serial"], c["status"]) for c in result["reconciled"]] == [
        ("1", "valid"), ("2", "superseded")]
    assert result["unrecorded"] == {"web2": {"server": stranger_fp}}
    conn = _ledger.connect(str(tmp_path))
    assert {r["serial"]: r["status"] for r in _ledger.rows(conn)} == {
        "1": "valid", "2": "superseded"}
    # again: nothing to learn
    result = run(monkeypatch, params)
    assert result["changed"] is False and result["reconciled"] == []


def test_check_mode_learns_nothing_and_writes_nothing(monkeypatch, tmp_path):
    pem, _fp = certificate()
    result = run(monkeypatch, {"zone": "prod", "dir": str(tmp_path), "passphrase": "x" * 12,
                               "installed": {"web1": {"server": {"certificate": pem}}}},
                 check_mode=True)
    assert result["changed"] is False and result["reconciled"] == []
    assert list(tmp_path.iterdir()) == []


def test_no_ledger_yet_reports_everything_unrecorded_and_creates_nothing(monkeypatch, tmp_path):
    pem, fp = certificate()
    result = run(monkeypatch, {"zone": "prod", "dir": str(tmp_path), "passphrase": "x" * 12,
                               "installed": {"web1": {"server": {"certificate": pem}}}})
    assert result["unrecorded"] == {"web1": {"server": fp}}
    assert not (tmp_path / "ledger.db").exists()
