#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ledger_learn
short_description: After a restore, learn from the fleet what happened after the backup
version_added: 0.1.0
description:
  - Runs on the CA host, after M(trustzone.pki.ca_restore) and before the CA signs anything.
    A backup is older than the fleet - revocations, issuances and CRL numbers made after it
    are on the nodes, not in the archive. This module merges what the nodes hold back into
    the restored issuance ledger, so that a restore loses no revocation and no ledger row and
    no CRL number is ever published twice.
  - Nodes are untrusted. A CRL counts only when a CA of the zone signed it; then every entry
    is put back into the ledger as revoked (reason and date from the CRL entry; an entry for
    a certificate nobody shows gets a placeholder row, so the CRL keeps listing it), and the
    CRL number continues above the highest number seen. An installed certificate counts only
    when a CA of the zone signed it, it has not expired, and every name in it is one that
    the C(names) of each O(fleet) entry (resolved from the inventory on the controller) grants the node holding
    it; then it is recorded for that node (the newest one per profile V(valid), older ones
    V(superseded)). Everything else is listed in RV(ignored).
  - A CA directory restored by M(trustzone.pki.ca_restore) signs no CRL until this module ran
    on it (the note C(<parent>/.<name>.from-archive) says C(learning-pending) until then) -
    CRLs signed from a ledger that knows only the archive would drop the revocations made
    after the backup. This module clears the note.
  - The CA signs its CRLs again on the next run of the ca role (C(playbooks/restore.yml)
    does that right away), with a number above every number the fleet was seen holding.
author: trustzone.pki maintainers (!UNKNOWN)
options:
  zone:
    description: Name of the trust zone.
    type: str
    required: true
  dir:
    description: The CA directory. Defaults to C(/var/lib/trustzone/<zone>).
    type: path
  passphrase:
    description: The CA passphrase (to read the zone's retired CA certificates with their
      keys).
    type: str
    required: true
  ca_certs:
    description:
      - PEM certificates of the zone's CAs that certificates and CRLs may be signed by (the
        roots and the issuing CA from the C(trustzone.pki.zone_root) result). The CA
        directory's own CA certificates (roots, intermediates, retired ones) are always
        added.
    type: list
    elements: str
    default: []
  fleet:
    description:
      - One entry per node - C(host) (inventory name), C(names) (C(common_name), C(dns) and
        C(ip) - what the inventory grants it, resolved on the controller) and C(files), a list
        of C({profile, content}) where C(content) is what the node holds (PEM certificates
        and/or CRLs; a C(content_b64) key is decoded instead when given).
    type: list
    elements: dict
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what it would learn and writes nothing.
  diff_mode:
    support: none
    description: Returns no diff.
"""

EXAMPLES = r"""
- name: Learn from the fleet what happened after the backup
  trustzone.pki.ledger_learn:
    zone: prod
    passphrase: "{{ trustzone_ca_passphrase }}"
    fleet:
      - host: node1
        names: {common_name: node1.example.com, dns: [node1, node1.example.com], ip: []}
        files:
          - {profile: crl, content: "{{ node1_crl_pem }}"}
          - {profile: server, content: "{{ node1_server_crt }}"}
"""

RETURN = r"""
learned:
  description: Certificates added to the ledger (host, profile, serial, status).
  returned: always
  type: list
  elements: dict
revoked:
  description: Revocations put back (serial, reason, revoked_at, known - whether the ledger
    or a node had the certificate).
  returned: always
  type: list
  elements: dict
crl_number:
  description: The CRL number the ledger now holds as committed; the next CRLs are above it.
  returned: always
  type: int
seen_crl_number:
  description: The highest number of a zone CRL seen on a node (0 for none).
  returned: always
  type: int
ignored:
  description: What the nodes showed that was not taken, and why (one line each).
  returned: always
  type: list
  elements: str
msg:
  description: One line saying what was recovered.
  returned: always
  type: str
"""

import base64
import binascii
import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _catree as T
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils import _revocation as R
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module

MAX_FILE = 1024 * 1024
CA_FILES = ("root.crt", "next.crt", "intermediate.crt", "next-intermediate.crt")


def _fleet(raw):
    """The module's ``fleet`` option in plan_learn's shape; undecodable files are dropped."""
    out = []
    for node in raw or []:
        if not isinstance(node, dict) or not isinstance(node.get("host"), str):
            continue
        files = []
        for item in node.get("files") or []:
            if not isinstance(item, dict):
                continue
            content = item.get("content")
            if item.get("content_b64"):
                try:
                    content = base64.b64decode(item["content_b64"][:2 * MAX_FILE],
                                               validate=True).decode("ascii")
                except (binascii.Error, ValueError, TypeError):
                    content = None
            if isinstance(content, str) and len(content) <= MAX_FILE:
                files.append({"profile": str(item.get("profile") or ""), "content": content})
        names = node.get("names") if isinstance(node.get("names"), dict) else {}
        out.append({"host": node["host"], "names": names, "files": files})
    return out


def _learn(ca, zone, certs, fleet, now, check):
    conn = _ledger.connect(ca.path, create=not check)
    try:
        rows = _ledger.rows(conn) if conn else []
        committed = int(_ledger.meta(conn, "crl_number", "0")) if conn else 0
        plan = R.plan_learn(rows, zone, list(certs.values()), _fleet(fleet), committed, now)
        changed = bool(plan["rows"] or plan["revoke"] or plan["supersede"]
                       or plan["crl_number"] > committed)
        if changed and not check:
            changed = _ledger.merge(conn, plan)
    finally:
        if conn:
            conn.close()
    return changed, plan


def run(module):
    params = module.params
    zone = _parse.validate_name(params["zone"], "zone name")
    ca = CaDir(params["dir"] or "/var/lib/trustzone/%s" % zone)
    if not ca.has_root():
        raise TrustzoneError("the zone has no CA here", ca.path,
                             fix="restore it first (trustzone.pki.ca_restore)")
    now = datetime.datetime.now(datetime.timezone.utc)
    certs = [C.load_certificate(pem, path="ca_certs") for pem in params["ca_certs"]]
    _key, issuer, chain = ca.issuer(params["passphrase"])
    certs += [issuer] + list(chain)
    certs += [cert for _key, cert in ca.retired_pairs(params["passphrase"])]
    for name in CA_FILES:  # read-only; whatever of them the directory holds
        data = _fs.read_file(ca.file(name))
        if data is not None:
            certs.append(C.load_certificate(data, path=ca.file(name)))
    unique = {C.fingerprint(c): c for c in certs}
    check = module.check_mode
    if check:
        changed, plan = _learn(ca, zone, unique, params["fleet"], now, check)
    else:
        with _ledger.locked(ca.path):
            changed, plan = _learn(ca, zone, unique, params["fleet"], now, check)
            # the restore is complete: CRLs may be signed from the ledger again
            changed |= T.mark_learned(ca.path)
    if check and T.learning_pending(ca.path):
        changed = True
    return {
        "changed": changed,
        "learned": [{k: r[k] for k in ("host", "profile", "serial", "status", "not_after")}
                    for r in plan["rows"]],
        "revoked": [{k: r[k] for k in ("serial", "reason", "revoked_at", "known")}
                    for r in plan["revoke"]],
        "crl_number": plan["crl_number"],
        "seen_crl_number": plan["seen_number"],
        "ignored": plan["ignored"],
        "msg": R.summary(plan),
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            zone=dict(type="str", required=True),
            dir=dict(type="path"),
            passphrase=dict(type="str", required=True, no_log=True),
            ca_certs=dict(type="list", elements="str", default=[]),
            fleet=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
