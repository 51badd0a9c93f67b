# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The issuance ledger: every certificate the zone's CA signed, in SQLite on the CA host.

One row per certificate (serial, zone, host, profile, subject, SANs, validity, SHA-256
fingerprint, issuer, status valid/revoked/superseded, revocation reason and time). Writes are
transactions; ``locked()`` holds an exclusive lock on ``ledger.lock`` for a whole signing or
revocation run, so two playbook runs against one CA never interleave.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3

from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

LEDGER_FILE = _layout.LEDGER_FILE
LOCK_FILE = "ledger.lock"
REASONS = ("unspecified", "key_compromise", "ca_compromise", "affiliation_changed",
           "superseded", "cessation_of_operation", "certificate_hold", "privilege_withdrawn")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS issuance (
    serial TEXT PRIMARY KEY,
    zone TEXT NOT NULL,
    host TEXT NOT NULL,
    profile TEXT NOT NULL,
    subject TEXT NOT NULL,
    sans TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    issuer TEXT NOT NULL,
    issuer_fingerprint TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('valid', 'revoked', 'superseded')),
    revocation_reason TEXT,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS issuance_host ON issuance (zone, host, profile, status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    zone TEXT NOT NULL,
    host TEXT NOT NULL,
    profile TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('rolled_back', 'rollback_refused')),
    fingerprint TEXT,
    restored_fingerprint TEXT,
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
"""
EVENT_COLUMNS = ("zone", "host", "profile", "event", "fingerprint", "restored_fingerprint",
                 "detail", "at")
COLUMNS = ("serial", "zone", "host", "profile", "subject", "sans", "not_before", "not_after",
           "fingerprint", "issuer", "issuer_fingerprint", "issued_at", "status",
           "revocation_reason", "revoked_at")


@contextlib.contextmanager
def locked(ca_dir, timeout_hint="another trustzone.pki run"):
    """Exclusive lock for a whole run against this CA (blocks until the other run ends)."""
    path = os.path.join(ca_dir, LOCK_FILE)
    with _fs.flocked(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                             0o600)):
        yield


def connect(ca_dir, create=True):
    """An open ledger; created (0600) when missing. A damaged file is a clear error."""
    path = os.path.join(ca_dir, LEDGER_FILE)
    if os.path.islink(path):
        raise TrustzoneError("is a symbolic link; refusing to use it", path,
                             fix="replace it with the real ledger file")
    exists = os.path.exists(path)
    if not exists and not create:
        return None
    if not exists:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        row = conn.execute("PRAGMA quick_check").fetchone()
        if not row or row[0] != "ok":
            raise sqlite3.DatabaseError(row[0] if row else "quick_check failed")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise TrustzoneError("the issuance ledger is damaged (%s)" % exc, path,
                             fix="restore it from a backup (playbooks/restore.yml); the CA "
                                 "refuses to sign until it has a readable ledger") from exc
    return conn


@contextlib.contextmanager
def transaction(conn):
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def record(conn, entries, issued_at):
    """Record new certificates; the host/profile's previous valid ones become superseded."""
    entries = list(entries)
    with transaction(conn):
        conn.executemany(
            "UPDATE issuance SET status = 'superseded' WHERE zone = ? AND host = ? AND "
            "profile = ? AND status = 'valid'",
            [(e["zone"], e["host"], e["profile"]) for e in entries])
        conn.executemany(
            "INSERT INTO issuance (%s) VALUES (%s)" % (", ".join(COLUMNS),
                                                       ", ".join("?" * len(COLUMNS))),
            [(e["serial"], e["zone"], e["host"], e["profile"], e["subject"],
              json.dumps(e["sans"], sort_keys=True), e["not_before"], e["not_after"],
              e["fingerprint"], e["issuer"], e["issuer_fingerprint"], issued_at, "valid",
              None, None) for e in entries])


def rows(conn, zone=None, host=None, serial=None, status=None):
    where, args = [], []
    for column, value in (("zone", zone), ("host", host), ("serial", serial),
                          ("status", status)):
        if value is not None:
            where.append("%s = ?" % column)
            args.append(value)
    sql = "SELECT %s FROM issuance" % ", ".join(COLUMNS)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY issued_at, serial"
    out = []
    for row in conn.execute(sql, args):
        item = dict(zip(COLUMNS, row))
        item["sans"] = json.loads(item["sans"])
        out.append(item)
    return out


def counts_by_status(conn, zone):
    """``{status: count}`` of ``zone``'s rows (statuses without rows left out)."""
    return dict(conn.execute(
        "SELECT status, COUNT(*) FROM issuance WHERE zone = ? GROUP BY status", (zone,)))


def valid_fingerprints(conn, zone):
    """``{host: {profile: [fingerprint, ...]}}``: the fingerprints of ``zone``'s valid rows
    (one per host and profile in a ledger in step with its nodes)."""
    out = {}
    for host, profile, fingerprint in conn.execute(
            "SELECT host, profile, fingerprint FROM issuance WHERE zone = ? AND status = "
            "'valid' ORDER BY host, profile, fingerprint", (zone,)):
        out.setdefault(host, {}).setdefault(profile, []).append(fingerprint)
    return out


def valid_in(ca_dir, zone):
    """``valid_fingerprints`` of the ledger in ``ca_dir``; ``{}`` when there is none yet."""
    conn = connect(ca_dir, create=False) if os.path.isdir(ca_dir) else None
    if conn is None:
        return {}
    try:
        return valid_fingerprints(conn, zone)
    finally:
        conn.close()


def live_issuers(conn, now_text):
    """Issuer fingerprints of every certificate that has not expired at ``now_text`` (ISO
    8601 UTC, compared as text: every row uses the same format), in any status."""
    return {row[0] for row in conn.execute(
        "SELECT DISTINCT issuer_fingerprint FROM issuance WHERE not_after > ?", (now_text,))}


def revoke(conn, serials, reason, when):
    """Mark certificates revoked. Unknown serials are an error and change nothing."""
    if reason not in REASONS:
        raise TrustzoneError("unknown revocation reason %r" % reason,
                             fix="use one of %s" % ", ".join(REASONS))
    with transaction(conn):
        changed = []
        for serial in serials:
            row = conn.execute("SELECT status FROM issuance WHERE serial = ?",
                               (serial,)).fetchone()
            if row is None:
                raise TrustzoneError("no certificate with serial %s in the ledger" % serial,
                                     fix="list serials with playbooks/report.yml")
            if row[0] == "revoked":
                continue
            conn.execute("UPDATE issuance SET status = 'revoked', revocation_reason = ?, "
                         "revoked_at = ? WHERE serial = ?", (reason, when, serial))
            changed.append(serial)
        if changed:
            bump(conn, "crl_generation")
    return changed


def meta(conn, key, default=None):
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


def bump(conn, key):
    value = int(meta(conn, key, "0")) + 1
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))
    return value


def set_meta(conn, key, value):
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))


def commit_crl(conn, number, generation):
    """Commit the number of the CRLs about to be written, and the revocation generation they
    are made from, BEFORE they are written: a crash then skips a number, never repeats one.
    The committed number only grows."""
    with transaction(conn):
        if int(meta(conn, "crl_number", "0")) >= int(number):
            raise TrustzoneError("CRL number %s is not above the committed %s" % (
                number, meta(conn, "crl_number")), LEDGER_FILE,
                fix="re-run: another run published CRLs meanwhile")
        set_meta(conn, "crl_number", number)
        set_meta(conn, "crl_written_generation", generation)


def merge(conn, plan):
    """Apply ``_revocation.plan_learn``'s plan in one transaction: learned certificates are
    added, the older valid ones superseded, revocations put back (a revocation of a
    certificate nobody showed us gets a placeholder row, so that the CRL keeps it), and the
    CRL number floor raised. Returns whether anything changed."""
    changed = False
    with transaction(conn):
        for row in plan["rows"]:
            if conn.execute("SELECT 1 FROM issuance WHERE serial = ? OR fingerprint = ?",
                            (row["serial"], row["fingerprint"])).fetchone():
                continue
            conn.execute(
                "INSERT INTO issuance (%s) VALUES (%s)" % (", ".join(COLUMNS),
                                                           ", ".join("?" * len(COLUMNS))),
                tuple(json.dumps(row[c], sort_keys=True) if c == "sans" else row[c]
                      for c in COLUMNS))
            changed = True
        for serial in plan["supersede"]:
            changed |= conn.execute(
                "UPDATE issuance SET status = 'superseded' WHERE serial = ? AND "
                "status = 'valid'", (serial,)).rowcount > 0
        revoked = False
        for item in plan["revoke"]:
            if item["reason"] not in REASONS:
                item = dict(item, reason="unspecified")
            row = conn.execute("SELECT status FROM issuance WHERE serial = ?",
                               (item["serial"],)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO issuance (%s) VALUES (%s)" % (
                        ", ".join(COLUMNS), ", ".join("?" * len(COLUMNS))),
                    (item["serial"], item["zone"], "(unknown)", "unknown", "",
                     json.dumps({"dns": [], "ip": []}), item["revoked_at"], item["not_after"],
                     "unknown:%s:%s" % (item["issuer_fingerprint"], item["serial"]),
                     item["issuer"], item["issuer_fingerprint"], item["revoked_at"], "revoked",
                     item["reason"], item["revoked_at"]))
                revoked = True
            elif row[0] != "revoked":
                conn.execute("UPDATE issuance SET status = 'revoked', revocation_reason = ?, "
                             "revoked_at = ? WHERE serial = ?",
                             (item["reason"], item["revoked_at"], item["serial"]))
                revoked = True
        if revoked:
            bump(conn, "crl_generation")
            changed = True
        if int(plan["crl_number"]) > int(meta(conn, "crl_number", "0")):
            set_meta(conn, "crl_number", plan["crl_number"])
            changed = True
    return changed


# --------------------------------------------------------------------------- what is installed
# (issue 14, I4: the ledger learns what the nodes actually hold)

def reconcile_decisions(ledger_rows, installed, now_text):
    """What the ledger must learn from what the nodes have installed (pure).

    ``ledger_rows``: the ledger's rows (every status) of the hosts in ``installed``;
    ``installed[host][profile]``: the SHA-256 fingerprint of the certificate that host holds
    for that profile (untrusted: a node can only point at one of its own rows);
    ``now_text``: ISO time ``YYYY-MM-DDTHH:MM:SSZ``.

    Returns ``(changes, unrecorded)``: ``changes`` is a list of ``{'serial', 'host',
    'profile', 'status'}`` (the new status: the installed row becomes ``valid`` when it is
    that host/profile's, unexpired and not revoked; the host/profile's other ``valid`` rows
    become ``superseded``); ``unrecorded[host][profile]`` is an installed fingerprint that is no
    ledger row of that host/profile (left alone, reported).
    """
    by_key = {}
    for row in ledger_rows:
        by_key.setdefault((row["host"], row["profile"]), []).append(row)
    changes, unrecorded = [], {}
    for host in sorted(installed):
        for profile in sorted(installed[host] or {}):
            fingerprint = installed[host][profile]
            rows_here = by_key.get((host, profile), [])
            match = [r for r in rows_here if r["fingerprint"] == fingerprint]
            if not match:
                unrecorded.setdefault(host, {})[profile] = fingerprint
                continue
            row = match[0]
            if row["status"] == "revoked" or row["not_after"] <= now_text:
                continue  # a revoked or expired certificate is never made valid again
            if row["status"] != "valid":
                changes.append({"serial": row["serial"], "host": host, "profile": profile,
                                "status": "valid"})
            for other in rows_here:
                if other is not row and other["status"] == "valid":
                    changes.append({"serial": other["serial"], "host": host,
                                    "profile": profile, "status": "superseded"})
    return changes, unrecorded


def reconcile_installed(conn, zone, installed, now_text):
    """Apply ``reconcile_decisions`` for ``zone`` in one transaction (call it under
    ``locked()``). Returns ``(changes, unrecorded)``. Nothing installed: no transaction."""
    if not any((installed or {}).values()):
        return [], {}
    with transaction(conn):
        return _reconcile_in(conn, zone, installed, now_text)


def _reconcile_in(conn, zone, installed, now_text):
    """``reconcile_installed`` inside the caller's transaction."""
    installed = {h: p for h, p in (installed or {}).items() if p}
    if not installed:
        return [], {}
    marks = ", ".join("?" * len(installed))
    found = []
    for row in conn.execute("SELECT %s FROM issuance WHERE zone = ? AND host IN (%s)"
                            % (", ".join(COLUMNS), marks), [zone] + sorted(installed)):
        found.append(dict(zip(COLUMNS, row)))
    changes, unrecorded = reconcile_decisions(found, installed, now_text)
    for change in changes:
        conn.execute("UPDATE issuance SET status = ? WHERE serial = ? AND zone = ? AND "
                     "status != 'revoked'", (change["status"], change["serial"], zone))
    return changes, unrecorded


# --------------------------------------------------------------------------- rollout events
# (issue 21: a node whose services failed their probe after an install was rolled back)

def rollout_events(zone, host, abandoned, restored, refused, detail, at):
    """The ``events`` rows for one node's automatic rollback (pure).

    ``abandoned[profile]``: fingerprint of the certificate installed and then given up;
    ``restored[profile]``: fingerprint of the one put back; ``refused``: why the node could
    not roll back (one line; every profile given up is then ``rollback_refused``), else
    empty; ``detail``: what the probe saw (one line)."""
    out = []
    for profile in sorted(set(abandoned or {}) | set(restored or {})):
        out.append({"zone": zone, "host": host, "profile": profile,
                    "event": "rollback_refused" if refused else "rolled_back",
                    "fingerprint": (abandoned or {}).get(profile),
                    "restored_fingerprint": (restored or {}).get(profile),
                    "detail": ("%s; not rolled back: %s" % (detail, refused)) if refused
                    else detail,
                    "at": at})
    return out


def record_rollback(conn, zone, host, events, restored, at):
    """Insert ``events`` (``rollout_events`` rows) and make ``host``'s rows follow what it
    holds again (``restored[profile]``: the fingerprint put back), in one transaction: a
    crash leaves both or neither. Call it under ``locked()``. Returns the status changes."""
    with transaction(conn):
        for event in events:
            conn.execute("INSERT INTO events (%s) VALUES (%s)" % (
                ", ".join(EVENT_COLUMNS), ", ".join("?" * len(EVENT_COLUMNS))),
                [event.get(c) for c in EVENT_COLUMNS])
        restored = {p: f for p, f in (restored or {}).items() if f}
        changes, _unrecorded = _reconcile_in(conn, zone, {host: restored}, at)
    return changes


def events(conn, zone, host=None):
    """``zone``'s events (optionally one host's), oldest first; none in a ledger written
    before the events table existed (opened read-only, nothing is created)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'events'").fetchone():
        return []
    query = "SELECT %s FROM events WHERE zone = ?" % ", ".join(EVENT_COLUMNS)
    args = [zone]
    if host:
        query += " AND host = ?"
        args.append(host)
    return [dict(zip(EVENT_COLUMNS, row))
            for row in conn.execute(query + " ORDER BY id", args)]
