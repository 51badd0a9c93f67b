#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ledger_info
short_description: Read a trust zone's issuance ledger, CAs and CRLs on the CA host
version_added: 0.1.0
description:
  - Reads, and never changes, the zone's CA directory on the CA host - the SQLite issuance
    ledger (C(ledger.db), opened read-only), the public certificates of the zone's CAs, the
    rotation phase and the CRLs (C(crl.pem)). No passphrase is needed, as no private key
    is read.
  - Used by C(playbooks/report.yml), which cross-checks the ledger against what every node
    holds.
  - A damaged ledger or rotation state is an error naming the file; a CRL that does not
    parse is reported in the C(error) key of RV(crl) rather than failing, so the report can show it.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.ca, trustzone.pki.attributes.info, trustzone.pki.attributes]
options:
  host:
    description: Only the ledger rows of this host.
    type: str
  status:
    description: Only the ledger rows with this status.
    type: str
    choices: [valid, revoked, superseded]
requirements:
  - cryptography >= 3.4 on the CA host
"""

EXAMPLES = r"""
- name: Read the zone's ledger
  trustzone.pki.ledger_info:
    zone: prod
  register: ledger

- name: Valid certificates of one host
  trustzone.pki.ledger_info:
    zone: prod
    host: qs-rim1.example.com
    status: valid
  register: rim1
"""

RETURN = r"""
ledger_exists:
  description: Whether the ledger file exists (a zone that never issued has none).
  returned: success
  type: bool
rows:
  description: Ledger rows (serial, zone, host, profile, subject, sans, not_before, not_after,
    fingerprint, issuer, issuer_fingerprint, issued_at, status, revocation_reason, revoked_at),
    oldest first.
  returned: success
  type: list
  elements: dict
events:
  description: Automatic rollbacks of rollouts (C(docs/rollout.md)), oldest first - C(zone),
    C(host), C(profile), C(event) (V(rolled_back) or V(rollback_refused)), C(fingerprint) (the
    certificate given up), C(restored_fingerprint), C(detail) (what the probe saw) and C(at).
  returned: success
  type: list
  elements: dict
cas:
  description: The zone's CA certificates - C(name) (V(root), V(next), V(intermediate),
    V(next-intermediate)), C(fingerprint), C(subject), C(not_after), C(days_left), C(trusted)
    (a root nodes must trust) and C(signing) (signs new leaves now).
  returned: success
  type: list
  elements: dict
roots:
  description: PEM certificates of the zone's current roots (what nodes trust).
  returned: success
  type: list
  elements: str
intermediates:
  description: PEM certificates of the zone's intermediate CAs.
  returned: success
  type: list
  elements: str
phase:
  description: Rotation phase - V(stable), V(trust) or V(use).
  returned: success
  type: str
crl:
  description: The CA's CRLs - C(path), C(exists), C(error), C(next_update) (earliest),
    C(number) (highest) and C(crls) (per CRL C(issuer), C(number), C(this_update),
    C(next_update), C(revoked), C(signed_by)).
  returned: success
  type: dict
"""

import datetime
import os
import sqlite3

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils import _report as R
from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as ROT
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module

CA_FILES = ("root", "next", "intermediate", "next-intermediate")


def read_ledger(ca_dir, zone, host=None, status=None):
    """``(exists, rows, events)``; the database is opened read-only and never created or
    migrated."""
    path = os.path.join(ca_dir, _ledger.LEDGER_FILE)
    if os.path.islink(path):
        raise TrustzoneError("is a symbolic link; refusing to use it", path,
                             fix="replace it with the real ledger file")
    if not os.path.exists(path):
        return False, [], []
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=60)
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
            if not row or row[0] != "ok":
                raise sqlite3.DatabaseError(row[0] if row else "quick_check failed")
            return (True, _ledger.rows(conn, zone=zone, host=host, status=status),
                    _ledger.events(conn, zone, host=host))
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise TrustzoneError("the issuance ledger is damaged (%s)" % exc, path,
                             fix="restore it from a backup (playbooks/restore.yml)") from exc


def read_phase(ca_dir):
    """The rotation phase of the CA state in force (read only, through CaDir)."""
    return ROT.phase_of(CaDir(ca_dir).load_state())


def run(module):
    params = module.params
    zone, ca_dir = _args.zone_and_ca_dir(params)
    now = datetime.datetime.now(datetime.timezone.utc)
    exists, rows, events = read_ledger(ca_dir, zone, params["host"], params["status"])
    state = CaDir(ca_dir).load()  # the CA state in force, read only
    phase = ROT.phase_of(state.load_state())

    certs = {}
    for stem in CA_FILES:
        cert = state.cert(stem)
        if cert is not None:
            certs[stem] = cert
    signing_root = "next" if phase == "use" and "next" in certs else "root"
    signing = {"root": "intermediate", "next": "next-intermediate"}[signing_root]
    if signing not in certs or not C.is_signed_by(certs[signing], certs[signing_root]):
        signing = signing_root
    cas = []
    for stem in CA_FILES:
        if stem not in certs:
            continue
        cert = certs[stem]
        cas.append({"name": stem, "fingerprint": C.fingerprint(cert),
                    "subject": C.subject_text(cert), "not_after": R.iso(C.not_after(cert)),
                    "days_left": R.days_left(C.not_after(cert), now),
                    "trusted": stem in ("root", "next"), "signing": stem == signing})
    roots = [certs[s] for s in ("root", "next") if s in certs]
    intermediates = [certs[s] for s in ("intermediate", "next-intermediate") if s in certs]

    path = os.path.join(ca_dir, _layout.CRL_FILE)
    crl = {"path": path, "exists": False, "error": None, "next_update": None, "number": None,
           "crls": []}
    try:
        data = _fs.read_file(path)
        if data is not None:
            crl["exists"] = True
            crl.update(R.crl_facts(C.load_crls(data, path=path), roots + intermediates, now))
    except TrustzoneError as exc:
        crl.update(exists=True, error=str(exc))
    return {"changed": False, "zone": zone, "dir": ca_dir, "ledger_exists": exists,
            "rows": rows, "events": events, "cas": cas, "phase": phase,
            "roots": [C.certificate_pem(c) for c in roots],
            "intermediates": [C.certificate_pem(c) for c in intermediates], "crl": crl}


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_CA,
        host=dict(type="str"),
        status=dict(type="str", choices=["valid", "revoked", "superseded"]),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
