# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Revocation and CRLs: the one place that decides what is revoked and what is published.

Guarantees (each pinned by tests/unit/plugins/module_utils/test_revocation.py):

* revoking a host revokes every UNEXPIRED certificate the ledger holds for it, whatever its
  status (``valid`` or ``superseded``: a renewal keeps the previous one on the node as
  ``.prev``, still served when an install failed) - ``select``;
* a CRL is published for every CA certificate that still has unexpired leaves in the ledger -
  the CAs in use now and the retired ones (replaced intermediates, retired or extended roots)
  - until those leaves expire; certificates that share one subject and key (an extended root)
  share one CRL - ``plan_crl``;
* CRL numbers strictly increase, across crashes and restores: the number is committed to the
  ledger before ``crl.pem`` is written (a crash skips a number, never repeats one with other
  content) and is always above every number on disk and every number the fleet was seen
  holding - ``ensure_crl``, ``plan_learn``;
* a restore from an old backup learns from the fleet what happened after the backup: the
  revocations in the nodes' CRLs (when a zone CA signed them) and the certificates installed
  on the nodes (when a zone CA signed them and their names fit the node that holds them) -
  ``plan_learn``, applied by ``_ledger.merge``.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._parse import parse_duration

CRL_FILE = _layout.CRL_FILE
LIVE = ("valid", "superseded")
_ISO = _layout.ISO_TIME
_PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_iso(text):
    return datetime.datetime.strptime(text, _ISO).replace(tzinfo=datetime.timezone.utc)


def unexpired(row, now):
    return parse_iso(row["not_after"]) > now


# --------------------------------------------------------------------------- selection

def select(rows, serials, hosts, keep_hosts, now):
    """The ledger rows to revoke (pure). Unknown serials raise.

    ``serials`` are revoked whatever their status (already revoked ones are left out);
    ``hosts`` and hosts outside ``keep_hosts`` (prune) lose every certificate that is not
    expired and not revoked - valid and superseded alike.
    """
    known = {row["serial"]: row for row in rows}
    chosen = {}
    for serial in serials:
        key = serial.lower().lstrip("0") or "0"
        match = known.get(key) or known.get(serial.lower())
        if match is None:
            raise TrustzoneError("no certificate with serial %s in the zone's ledger" % serial,
                                 fix="check the serial with playbooks/report.yml")
        chosen[match["serial"]] = match
    hosts = set(hosts or ())
    keep = set(keep_hosts) if keep_hosts is not None else None
    for row in rows:
        if row["status"] not in LIVE or not unexpired(row, now):
            continue
        if row["host"] in hosts or (keep is not None and row["host"] not in keep):
            chosen[row["serial"]] = row
    return [chosen[s] for s in sorted(chosen) if chosen[s]["status"] != "revoked"]


# --------------------------------------------------------------------------- CRL plan

def _identity(cert):
    """Certificates with one subject and one key are one CA for a CRL (an extended root)."""
    return (cert.subject.public_bytes(), C._spki(cert))


def crl_signers(cas, retired, live_issuers):
    """``[(key, cert, {issuer fingerprints})]``: one entry per CA that needs a CRL (pure).

    ``cas`` are the ``(key, cert)`` pairs in use now (always published), ``retired`` the
    retired ones (published while ``live_issuers`` - the issuer fingerprints of the ledger's
    unexpired leaves, in any status - names one of them). Pairs sharing subject and key are
    merged: the CRL is signed once, by the pair in use when there is one, and lists the
    revocations of all of them.
    """
    groups, order = {}, []
    for in_use, pairs in ((True, cas), (False, retired)):
        for key, cert in pairs:
            ident = _identity(cert)
            fp = C.fingerprint(cert)
            if ident not in groups:
                groups[ident] = {"key": key, "cert": cert, "fps": set(), "in_use": in_use,
                                 "live": False}
                order.append(ident)
            group = groups[ident]
            group["fps"].add(fp)
            group["in_use"] |= in_use
            group["live"] |= fp in live_issuers
            if not in_use and not group["in_use"] and C.not_after(cert) > C.not_after(
                    group["cert"]):
                group["key"], group["cert"] = key, cert
    return [(groups[i]["key"], groups[i]["cert"], groups[i]["fps"]) for i in order
            if groups[i]["in_use"] or groups[i]["live"]]


def live_issuers(rows, now):
    """Issuer fingerprints of the unexpired rows (pure; ``_ledger.live_issuers`` in SQL)."""
    return {row["issuer_fingerprint"] for row in rows if unexpired(row, now)}


def needs_retired(cas, issuers):
    """Whether a live leaf was signed by a CA not in ``cas`` (cheap: lets the caller skip
    decrypting retired keys on an ordinary run)."""
    return bool(set(issuers) - {C.fingerprint(cert) for _key, cert in cas})


def entries_for(fps, rows):
    """``[(serial_int, revoked_at, reason)]`` of the revoked rows issued by ``fps``."""
    return [(int(row["serial"], 16), parse_iso(row["revoked_at"]), row["revocation_reason"])
            for row in rows
            if row["status"] == "revoked" and row["issuer_fingerprint"] in fps]


def highest_number(crls):
    numbers = [C.crl_number(crl) or 0 for crl in crls]
    return max(numbers) if numbers else 0


def crl_due(crls, ca_certs, now, refresh_seconds, generation, written_generation,
            committed_number=None):
    """Why the CA must sign its CRLs again, or None.

    ``crls`` are the CRLs on disk, ``ca_certs`` every CA of the zone that needs a CRL (roots
    and intermediates, in use or retired with live leaves: ``crl_signers``),
    ``generation`` the ledger's revocation counter, ``written_generation`` the counter the
    CRLs on disk were made from and ``committed_number`` the highest CRL number the ledger
    committed (CRLs on disk below it were never completed: a crash, or a restore that learned
    a higher number from the fleet).
    """
    if not crls:
        return "no CRL yet"
    if str(generation) != str(written_generation):
        return "revocations changed"
    if committed_number is not None and max(
            (C.crl_number(crl) or 0) for crl in crls) < int(committed_number):
        return "CRL number %s was committed but is not on disk" % committed_number
    # the same set: every CA has exactly one CRL it signed, and every CRL belongs to a CA
    matched = set()
    for ca in ca_certs:
        mine = [i for i, crl in enumerate(crls) if C.crl_signed_by(crl, ca)]
        if len(mine) != 1 or mine[0] in matched:
            return "the zone's CAs changed"
        matched.add(mine[0])
    if len(matched) != len(crls):
        return "the zone's CAs changed"
    soonest = min(C.crl_next_update(crl) for crl in crls)
    if soonest - now < datetime.timedelta(seconds=refresh_seconds):
        return "next update %s is near" % _layout.iso(soonest)
    return None


def is_deferred(key):
    """Whether ``key`` is kept off the CA host (the offline root: ``_detached.DeferredKey``)."""
    return getattr(key, "deferred", False)


def deferred_due(crls, cert, entries, now, refresh_seconds):
    """Why the CRL of a CA whose key is kept elsewhere (the offline root) must be signed
    again, or None. It has its own schedule - a long lifetime, signed again only when it runs
    low, when its own entries changed or when it is missing - so that revoking a leaf never
    needs the offline key."""
    mine = [crl for crl in crls if C.crl_signed_by(crl, cert)]
    if len(mine) != 1:
        return "no CRL of the offline root %s yet" % C.fingerprint(cert)[:16]
    if sorted(C.crl_serials(mine[0])) != sorted(serial for serial, _w, _r in entries):
        return "revocations by the offline root %s changed" % C.fingerprint(cert)[:16]
    left = C.crl_next_update(mine[0]) - now
    if left < datetime.timedelta(seconds=refresh_seconds):
        return "next update %s of the offline root's CRL is near" % _layout.iso(
            C.crl_next_update(mine[0]))
    return None


def plan_crl(disk_crls, reason, signers, rows, meta, kept=()):
    """What to publish (pure), once ``reason`` (``crl_due``) says the CRLs on disk do
    not stand: ``{"reason", "number", "generation", "crls": [(key, cert, entries)],
    "kept": [crl]}`` - ``kept`` are CRLs on disk published again as they are (an offline
    root's that is not due).

    ``meta`` holds the ledger's ``crl_generation`` (revocation counter) and ``crl_number``
    (the highest number ever committed). The new number is above the committed one and above
    every number on disk.
    """
    committed = int(meta.get("crl_number") or 0)
    number = max(committed, highest_number(disk_crls)) + 1
    return {"reason": reason, "number": number,
            "generation": str(meta.get("crl_generation") or "0"),
            "crls": [(key, cert, entries_for(fps, rows)) for key, cert, fps in signers],
            "kept": list(kept)}


def build(plan, now, lifetime, deferred_lifetime=None):
    """The PEM text of ``plan``'s CRLs (pure apart from signing); an offline root's CRL
    lives ``deferred_lifetime``."""
    return "".join(
        C.crl_pem(C.build_crl(cert, key, entries, now - datetime.timedelta(minutes=5),
                              now + datetime.timedelta(seconds=deferred_lifetime if (
                                  deferred_lifetime and is_deferred(key)) else lifetime),
                              plan["number"]))
        for key, cert, entries in plan["crls"]) + "".join(
        C.crl_pem(crl) for crl in plan.get("kept", ()))


def _meta(conn):
    return {k: _ledger.meta(conn, k) for k in ("crl_number", "crl_generation",
                                               "crl_written_generation")} if conn else {}


def ensure_crl(ca, cas, params, now, check, passphrase=None):
    """The zone's CRLs in ``<ca dir>/crl.pem`` - one per CA with live leaves, see
    ``crl_signers`` - signed again when missing, damaged, due, when revocations or the set of
    CAs changed, or when a number was committed that is not on disk. Returns
    ``(pem_text, reason_or_None)``.

    Apply order: (1) commit the new number and generation in one ledger transaction,
    (2) write crl.pem atomically. A crash after (1) leaves the old CRLs with a lower number
    than the committed one, so the next run signs again with a higher number.
    """
    passphrase = passphrase if passphrase is not None else params.get("passphrase")
    refresh = parse_duration(params["crl_refresh_before"], "crl_refresh_before")
    lifetime = parse_duration(params["crl_lifetime"], "crl_lifetime")
    if refresh >= lifetime:
        raise TrustzoneError("crl_refresh_before must be shorter than crl_lifetime",
                             fix="e.g. crl_lifetime 7d with crl_refresh_before 2d")
    deferred = (parse_duration(params.get("root_crl_refresh_before") or "60d",
                               "root_crl_refresh_before"),
                parse_duration(params.get("root_crl_lifetime") or "365d", "root_crl_lifetime"))
    if deferred[0] >= deferred[1]:
        raise TrustzoneError("root_crl_refresh_before must be shorter than root_crl_lifetime",
                             fix="e.g. trustzone_ca_root_crl_lifetime 365d with "
                                 "trustzone_ca_root_crl_refresh_before 60d")
    path = ca.file(CRL_FILE)
    args = (ca, cas, path, passphrase, (refresh, lifetime), deferred, now, check)
    if check:
        conn = _ledger.connect(ca.path, create=False)
        try:
            return _decide(conn, *args)
        finally:
            if conn:
                conn.close()
    with _ledger.locked(ca.path):
        conn = _ledger.connect(ca.path)
        try:
            return _decide(conn, *args)
        finally:
            conn.close()


def publish(ca, conn, number, generation, text):
    """Apply order: (1) commit the number and generation in one ledger transaction, (2) write
    crl.pem atomically."""
    _ledger.commit_crl(conn, number, generation)                       # (1)
    _fs.atomic_write(ca.file(CRL_FILE), text, 0o644, ca.uid, ca.gid)   # (2)


def _decide(conn, ca, cas, path, passphrase, online_times, deferred_times, now, check):
    refresh, lifetime = online_times
    data = _fs.read_file(path)
    damaged = None
    try:
        disk = C.load_crls(data or b"", path=path)
    except TrustzoneError as exc:
        disk, damaged = [], "the CRL on disk does not parse (%s)" % exc  # derived: sign again
    issuers = _ledger.live_issuers(conn, _layout.iso(now)) if conn else set()
    # a retired CA whose key was not kept cannot sign a CRL any more
    retired = [(key, cert) for key, cert in ca.retired_pairs(passphrase)
               if key is not None] if needs_retired(cas, issuers) else []
    signers = crl_signers(cas, retired, issuers)
    meta = _meta(conn)
    # CAs whose key is here, and an offline root's (its CRL has a schedule of its own)
    online = [s for s in signers if not is_deferred(s[0])]
    offline = [s for s in signers if is_deferred(s[0])]
    revoked = (_ledger.rows(conn, status="revoked") if conn else []) if offline else None
    theirs = [crl for crl in disk if any(C.crl_signed_by(crl, s[1]) for s in offline)]
    ours = [crl for crl in disk if all(crl is not t for t in theirs)]
    committed = int(meta.get("crl_number") or 0)
    online_reason = damaged or crl_due(
        ours, [cert for _k, cert, _f in online], now, refresh,
        str(meta.get("crl_generation") or "0"), str(meta.get("crl_written_generation") or "0"))
    if online_reason is None and disk and highest_number(disk) < committed:
        online_reason = "CRL number %s was committed but is not on disk" % committed
    due_offline = []
    for signer in offline:
        why = damaged or deferred_due(disk, signer[1], entries_for(signer[2], revoked), now,
                                      deferred_times[0])
        if why:
            due_offline.append((signer, why))
    if online_reason is None and not due_offline:
        return data.decode("ascii"), None
    reason = "; ".join(([online_reason] if online_reason else []) + [w for _s, w in due_offline])
    if not check:
        from ansible_collections.trustzone.pki.plugins.module_utils import _catree
        if _catree.learning_pending(ca.path):
            raise TrustzoneError(
                "the CA directory was restored and has not learned from the fleet yet: CRLs "
                "signed now would drop the revocations made after the backup", ca.path,
                fix="run playbooks/restore.yml again (its ledger_learn step)")
    if revoked is None:
        revoked = _ledger.rows(conn, status="revoked") if conn else []
    sign = (online if online_reason else []) + [signer for signer, _w in due_offline]
    kept = [crl for crl in disk if not online_reason or any(crl is t for t in theirs)]
    kept = [crl for crl in kept if not any(C.crl_signed_by(crl, s[1]) for s in sign)]
    plan = plan_crl(disk, reason, sign, revoked, meta, kept=kept)
    debts = len(ca.debts)
    text = build(plan, now, lifetime, deferred_times[1])
    if not check and len(ca.debts) == debts:
        publish(ca, conn, plan["number"], plan["generation"], text)
    elif not check:  # the offline root signs first: the module hands its CRL to the controller
        ca.pending_crl = {"number": plan["number"], "generation": plan["generation"],
                          "text": text}
    return text, plan["reason"]


# --------------------------------------------------------------------------- restore

def _reason_of(entry):
    try:
        flag = entry.extensions.get_extension_for_class(C.x509.CRLReason).value.reason
    except C.x509.ExtensionNotFound:
        return "unspecified"
    for name, attr in C.CRL_REASONS.items():
        if getattr(C.x509.ReasonFlags, attr) == flag:
            return name
    return "unspecified"


def _revocation_date(entry):
    value = getattr(entry, "revocation_date_utc", None)
    if value is None:
        value = entry.revocation_date.replace(tzinfo=datetime.timezone.utc)
    return value


def _fits(cert, names):
    """Whether every name of ``cert`` (SANs and CN) is one the inventory grants the host."""
    granted_dns = {n.lower() for n in names.get("dns") or []}
    granted_ip = set(names.get("ip") or [])
    if names.get("common_name"):
        granted_dns.add(str(names["common_name"]).lower())
    have = C.names_of(cert)
    if not have["dns"] and not have["ip"]:
        return False
    cn = C.common_name(cert)
    return (set(have["dns"]) <= granted_dns and set(have["ip"]) <= granted_ip
            and (cn is None or cn.lower() in granted_dns or cn in granted_ip))


def plan_learn(rows, zone, ca_certs, fleet, committed_number, now):
    """What a restored ledger learns from the fleet (pure). Nodes are untrusted: only CRLs a
    zone CA signed and certificates a zone CA signed whose names fit the node count.

    ``fleet`` is ``[{"host", "names": {"common_name", "dns", "ip"} (from the inventory, on the
    controller), "files": [{"profile", "content"}]}]``; a file's content may hold
    certificates and CRLs (PEM). Returns ``{"rows": [...], "revoke": [...], "crl_number",
    "ignored": [...], "seen_number"}``.
    """
    ca_certs = list(ca_certs)
    by_fp = {row["fingerprint"]: row for row in rows}
    by_serial = {row["serial"]: row for row in rows}
    ignored, learned, crls = [], {}, []
    for node in fleet:
        host = node["host"]
        for item in node.get("files") or []:
            text = item.get("content") or ""
            label = "%s:%s" % (host, item.get("profile") or "file")
            try:
                found_crls = C.load_crls(text) if "X509 CRL" in text else []
                found_certs = C.load_certificates(text) if "CERTIFICATE-----" in text else []
            except TrustzoneError as exc:
                ignored.append("%s: %s" % (label, exc))
                continue
            for crl in found_crls:
                signer = next((ca for ca in ca_certs if C.crl_signed_by(crl, ca)), None)
                if signer is None:
                    ignored.append("%s: a CRL no zone CA signed" % label)
                else:
                    crls.append((signer, crl))
            for cert in found_certs[:1]:  # the leaf; a chain's CAs follow it
                issuer = next((ca for ca in ca_certs if C.is_signed_by(cert, ca)), None)
                fp = C.fingerprint(cert)
                if issuer is None:
                    ignored.append("%s: a certificate no zone CA signed" % label)
                    continue
                if fp in by_fp or fp in learned:
                    continue
                serial = "%x" % cert.serial_number
                if serial in by_serial:
                    ignored.append("%s: serial %s is in the ledger with another certificate"
                                   % (label, serial))
                    continue
                if not _fits(cert, node.get("names") or {}):
                    ignored.append("%s: certificate %s names %s, which the inventory does not "
                                   "grant this host" % (label, serial, C.names_of(cert)))
                    continue
                if C.not_after(cert) <= now:
                    continue
                profile = str(item.get("profile") or "")
                learned[fp] = {
                    "serial": serial, "zone": zone, "host": host,
                    "profile": profile if _PROFILE_RE.match(profile) else "unknown",
                    "subject": C.subject_text(cert), "sans": C.names_of(cert),
                    "not_before": _layout.iso(C.not_before(cert)), "not_after": _layout.iso(C.not_after(cert)),
                    "fingerprint": fp, "issuer": C.subject_text(issuer),
                    "issuer_fingerprint": C.fingerprint(issuer), "issued_at": _layout.iso(now),
                    "status": "valid", "revocation_reason": None, "revoked_at": None,
                }
    new_rows = sorted(learned.values(), key=lambda r: (r["host"], r["profile"], r["not_before"]))
    # the newest certificate of a host/profile is valid, every other one superseded
    newest = {}
    for row in [r for r in rows if r["status"] == "valid"] + new_rows:
        k = (row["host"], row["profile"])
        if k not in newest or row["not_before"] > newest[k]["not_before"]:
            newest[k] = row
    touched = {(r["host"], r["profile"]) for r in new_rows}  # only where something was learned
    supersede = sorted({r["serial"] for r in rows if r["status"] == "valid"
                        and (r["host"], r["profile"]) in touched
                        and newest[(r["host"], r["profile"])] is not r})
    for row in new_rows:
        if newest[(row["host"], row["profile"])] is not row:
            row["status"] = "superseded"
    known = dict(by_serial, **{r["serial"]: r for r in new_rows})
    revoke, seen = {}, 0
    for signer, crl in crls:
        seen = max(seen, C.crl_number(crl) or 0)
        signer_fp = C.fingerprint(signer)
        for entry in crl:
            serial = "%x" % entry.serial_number
            row = known.get(serial)
            if row is not None and row["status"] == "revoked":
                continue
            if serial in revoke:
                continue
            revoke[serial] = {"serial": serial, "reason": _reason_of(entry),
                              "revoked_at": _layout.iso(_revocation_date(entry)),
                              "known": row is not None,
                              # an entry for a certificate nobody shows us: kept on the CRL
                              # until the CA that signed it expires
                              "issuer": C.subject_text(signer), "issuer_fingerprint": signer_fp,
                              "not_after": _layout.iso(C.not_after(signer)), "zone": zone}
    return {"rows": new_rows, "supersede": supersede,
            "revoke": [revoke[s] for s in sorted(revoke)],
            "seen_number": seen, "crl_number": max(int(committed_number or 0), seen),
            "ignored": ignored}


def summary(plan):
    """One line for the play output."""
    return ("learned from the fleet: %d certificate(s) added to the ledger, %d revocation(s) "
            "put back, CRL number continues above %d; %d item(s) ignored"
            % (len(plan["rows"]), len(plan["revoke"]), plan["crl_number"],
               len(plan["ignored"])))
