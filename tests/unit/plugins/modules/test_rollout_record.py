# -*- coding: utf-8 -*-
"""The ledger's rollout events and the rollout_record module (issue 21): a node rolled back
after its probe failed is recorded with why, the ledger's rows follow what it holds again,
check mode writes nothing, and an old ledger without the events table still reads."""

from __future__ import annotations

import datetime
import sqlite3

from ansible_collections.trustzone.pki.plugins.module_utils import _ledger as L
from ansible_collections.trustzone.pki.plugins.modules import ledger_info
from ansible_collections.trustzone.pki.plugins.modules import rollout_record as RR

NOW = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
OLD, NEW = "aa" * 32, "bb" * 32


def row(serial, fingerprint, issued):
    return {"serial": serial, "zone": "prod", "host": "node3", "profile": "server",
            "subject": "CN=node3", "sans": {"dns": ["node3"], "ip": []},
            "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z",
            "fingerprint": fingerprint, "issuer": "CN=root", "issuer_fingerprint": "00" * 32,
            "status": "valid", "issued_at": issued}


def ledger(tmp_path):
    conn = L.connect(str(tmp_path))
    L.record(conn, [row("1", OLD, "x")], "2026-01-01T00:00:00Z")
    L.record(conn, [row("2", NEW, "x")], "2026-05-01T00:00:00Z")
    return conn


def params(tmp_path, **extra):
    out = {"zone": "prod", "dir": str(tmp_path), "host": "node3", "abandoned": {"server": NEW},
           "restored": {"server": OLD}, "refused": "",
           "detail": "node3.z:8443: presents certificate bbbb, not the one just installed"}
    out.update(extra)
    return out


def test_a_rollback_is_recorded_and_the_ledger_follows_what_the_node_holds(tmp_path):
    conn = ledger(tmp_path)
    result = RR.run(params(tmp_path), check=False, now=NOW)
    assert result["changed"] is True
    assert [(e["profile"], e["event"], e["fingerprint"], e["restored_fingerprint"])
            for e in L.events(conn, "prod")] == [("server", "rolled_back", NEW, OLD)]
    assert L.events(conn, "prod")[0]["at"] == "2026-06-01T12:00:00Z"
    assert "not the one just installed" in L.events(conn, "prod")[0]["detail"]
    assert {r["serial"]: r["status"] for r in L.rows(conn)} == {"1": "valid", "2": "superseded"}
    assert [(c["serial"], c["status"]) for c in result["reconciled"]] == [
        ("1", "valid"), ("2", "superseded")]
    # another zone sees none of it
    assert L.events(conn, "dev") == []


def test_a_refused_rollback_is_recorded_as_such_and_changes_no_row(tmp_path):
    conn = ledger(tmp_path)
    RR.run(params(tmp_path, restored={}, refused="there is no previous certificate"),
           check=False, now=NOW)
    (event,) = L.events(conn, "prod")
    assert event["event"] == "rollback_refused"
    assert event["detail"].endswith("; not rolled back: there is no previous certificate")
    assert {r["serial"]: r["status"] for r in L.rows(conn)} == {"1": "superseded", "2": "valid"}


def test_a_crash_between_the_event_and_the_ledger_rows_leaves_neither(tmp_path, monkeypatch):
    """The event and the rows' new status are one transaction: a process dying after the
    event's insert and before the status update leaves the ledger as it was, and the same
    call afterwards records both (and only once)."""
    conn = ledger(tmp_path)
    real = L._reconcile_in

    def dies(*args):
        real(*args)  # the updates are made inside the transaction...
        raise KeyboardInterrupt("killed")  # ...and the process dies before the commit

    monkeypatch.setattr(L, "_reconcile_in", dies)
    try:
        RR.run(params(tmp_path), check=False, now=NOW)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the injected crash did not happen")
    assert L.events(conn, "prod") == []
    assert {r["serial"]: r["status"] for r in L.rows(conn)} == {"1": "superseded", "2": "valid"}
    monkeypatch.setattr(L, "_reconcile_in", real)
    RR.run(params(tmp_path), check=False, now=NOW)
    assert [e["event"] for e in L.events(conn, "prod")] == ["rolled_back"]
    assert {r["serial"]: r["status"] for r in L.rows(conn)} == {"1": "valid", "2": "superseded"}


def test_check_mode_records_nothing(tmp_path):
    conn = ledger(tmp_path)
    result = RR.run(params(tmp_path), check=True, now=NOW)
    assert result["changed"] is True and len(result["events"]) == 1
    assert L.events(conn, "prod") == []


def test_a_ledger_written_before_the_events_table_still_reads(tmp_path):
    path = tmp_path / L.LEDGER_FILE
    conn = sqlite3.connect(str(path))
    conn.executescript(L._SCHEMA.split("CREATE TABLE IF NOT EXISTS events", maxsplit=1)[0])
    conn.close()
    exists, rows, events = ledger_info.read_ledger(str(tmp_path), "prod")
    assert (exists, rows, events) == (True, [], [])
    assert "events" not in [r[0] for r in sqlite3.connect(str(path)).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")]  # read-only: not created
