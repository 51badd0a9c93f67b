"""The ledger learns what the nodes have installed (issue 14, I4): _ledger.reconcile_decisions
(pure), _ledger.reconcile_installed (SQLite) and _issue.installed_fingerprints."""

from __future__ import annotations

import sqlite3

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _issue
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger as L

NOW = "2026-06-01T00:00:00Z"
FP = {name: ("%02x" % i) * 32 for i, name in enumerate(["a", "b", "c", "d", "e", "f"], 1)}


def row(serial, host, profile, fingerprint, status="valid", not_after="2027-01-01T00:00:00Z"):
    return {"serial": serial, "zone": "prod", "host": host, "profile": profile,
            "subject": "CN=%s" % host, "sans": {"dns": [host], "ip": []},
            "not_before": "2026-01-01T00:00:00Z", "not_after": not_after,
            "fingerprint": fingerprint, "issuer": "CN=root", "issuer_fingerprint": "00" * 32,
            "status": status}


def test_the_installed_superseded_row_becomes_valid_and_the_uninstalled_valid_one_superseded():
    # two overlapping runs: the node ended up serving the older certificate
    rows = [row("1", "node2", "server", FP["a"], "superseded"),
            row("2", "node2", "server", FP["b"], "valid")]
    changes, unrecorded = L.reconcile_decisions(rows, {"node2": {"server": FP["a"]}}, NOW)
    assert changes == [
        {"serial": "1", "host": "node2", "profile": "server", "status": "valid"},
        {"serial": "2", "host": "node2", "profile": "server", "status": "superseded"}]
    assert unrecorded == {}


def test_nothing_changes_when_the_ledger_already_agrees():
    rows = [row("1", "node2", "server", FP["a"], "superseded"),
            row("2", "node2", "server", FP["b"], "valid")]
    assert L.reconcile_decisions(rows, {"node2": {"server": FP["b"]}}, NOW) == ([], {})


@pytest.mark.parametrize("status, not_after", [("revoked", "2027-01-01T00:00:00Z"),
                                               ("superseded", "2026-05-01T00:00:00Z")])
def test_a_revoked_or_expired_certificate_is_never_made_valid(status, not_after):
    rows = [row("1", "node2", "server", FP["a"], status, not_after),
            row("2", "node2", "server", FP["b"], "valid")]
    assert L.reconcile_decisions(rows, {"node2": {"server": FP["a"]}}, NOW) == ([], {})


def test_unknown_or_foreign_certificates_are_reported_and_left_alone():
    rows = [row("1", "node1", "server", FP["a"]), row("2", "node2", "server", FP["b"]),
            row("3", "node2", "client", FP["c"])]
    # node2 claims node1's certificate, and its client certificate for the server profile
    installed = {"node2": {"server": FP["a"], "client": FP["b"]}, "node3": {"server": FP["d"]}}
    changes, unrecorded = L.reconcile_decisions(rows, installed, NOW)
    assert changes == []
    assert unrecorded == {"node2": {"server": FP["a"], "client": FP["b"]},
                          "node3": {"server": FP["d"]}}


def test_reconcile_installed_writes_under_one_transaction(tmp_path):
    conn = L.connect(str(tmp_path))
    L.record(conn, [row("1", "node2", "server", FP["a"])], "2026-01-01T00:00:00Z")
    L.record(conn, [row("2", "node2", "server", FP["b"])], "2026-01-02T00:00:00Z")
    L.record(conn, [row("3", "node1", "server", FP["c"])], "2026-01-02T00:00:00Z")
    assert {r["serial"]: r["status"] for r in L.rows(conn)} == {
        "1": "superseded", "2": "valid", "3": "valid"}
    changes, unrecorded = L.reconcile_installed(
        conn, "prod", {"node2": {"server": FP["a"]}, "node1": {"server": FP["e"]}}, NOW)
    assert [(c["serial"], c["status"]) for c in changes] == [("1", "valid"), ("2", "superseded")]
    assert unrecorded == {"node1": {"server": FP["e"]}}
    assert {r["serial"]: r["status"] for r in L.rows(conn)} == {
        "1": "valid", "2": "superseded", "3": "valid"}
    # re-running with nothing new changes nothing
    assert L.reconcile_installed(conn, "prod", {"node2": {"server": FP["a"]}}, NOW) == ([], {})
    assert L.reconcile_installed(conn, "prod", {}, NOW) == ([], {})
    # another zone's rows are not this zone's
    assert L.reconcile_installed(conn, "dev", {"node2": {"server": FP["a"]}}, NOW) == (
        [], {"node2": {"server": FP["a"]}})


def test_installed_fingerprints_are_computed_from_the_certificate(keys, zone, server_profile):
    cert = zone.leaf(keys.get("ec").public_key(), server_profile)
    pem = C.certificate_pem(cert)
    installed = {
        "web1": {"server": {"certificate": pem, "fingerprint": "ff" * 32},  # the node lies
                 "client": {"certificate": "not a certificate"},
                 "admin": {"fingerprint": FP["f"].upper()},
                 "bad": {"fingerprint": "xyz"},
                 "odd": "text"},
        "web2": {"server": {"certificate": pem}},
        "web3": ["not", "a", "mapping"],
    }
    out = _issue.installed_fingerprints(installed, pending={("web2", "server")})
    assert out == {"web1": {"server": C.fingerprint(cert), "admin": FP["f"]}}


def test_nothing_installed_takes_no_write_lock(tmp_path):
    """A run that installed nothing reconciles nothing and never waits for the ledger's
    write lock (another run may hold it)."""
    L.connect(str(tmp_path)).close()
    holder = sqlite3.connect(str(tmp_path / L.LEDGER_FILE), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        conn = sqlite3.connect(str(tmp_path / L.LEDGER_FILE), timeout=0.1, isolation_level=None)
        assert L.reconcile_installed(conn, "prod", {}, NOW) == ([], {})
        assert L.reconcile_installed(conn, "prod", {"node1": {}}, NOW) == ([], {})
        with pytest.raises(sqlite3.OperationalError):  # a real reconciliation would wait
            L.reconcile_installed(conn, "prod", {"node1": {"server": FP["a"]}}, NOW)
    finally:
        holder.execute("ROLLBACK")
