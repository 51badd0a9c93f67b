#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: revoke
short_description: Revoke zone certificates in the CA's issuance ledger
version_added: 0.1.0
description:
  - Marks certificates revoked in the zone's issuance ledger on the CA host - by serial, by
    host, or every host the ledger knows that is not in O(keep_hosts) (pruning hosts that
    left the inventory). The ca role signs new CRLs on its next run, which
    C(playbooks/revoke.yml) does right away and distributes to every node.
  - An unknown serial is an error and nothing is revoked. Revoking an already revoked
    certificate changes nothing.
  - Nodes still in the inventory get new certificates on their next C(site.yml) run (their
    revoked ones are renewed with reason C(revoked)); take a host out of the inventory first
    if it must not get any.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.ca, trustzone.pki.attributes]
options:
  serials:
    description: Serials (hex, as the report and ledger show them) to revoke.
    type: list
    elements: str
    default: []
  hosts:
    description:
      - Hosts whose certificates are all revoked - every one the ledger holds for them that
        has not expired, whatever its status - V(valid), or V(superseded) by a renewal (the
        node keeps that one as C(.prev) and still serves it if an install failed).
    type: list
    elements: str
    default: []
  keep_hosts:
    description:
      - Prune - revoke every unexpired certificate (valid or superseded) of every host in
        the ledger that is not in this list (normally C(groups['trustzone_nodes'])). Omit to prune nothing.
    type: list
    elements: str
  reason:
    description: Revocation reason recorded in the ledger and the CRL.
    type: str
    default: unspecified
    choices: [unspecified, key_compromise, ca_compromise, affiliation_changed, superseded,
              cessation_of_operation, certificate_hold, privilege_withdrawn]
attributes:
  check_mode:
    support: full
    description: In check mode it reports what would be revoked and changes nothing.
"""

EXAMPLES = r"""
- name: Revoke everything node2 holds
  trustzone.pki.revoke:
    zone: prod
    hosts: [node2.example.com]
    reason: key_compromise

- name: Prune hosts that left the inventory
  trustzone.pki.revoke:
    zone: prod
    keep_hosts: "{{ groups['trustzone_nodes'] }}"
    reason: cessation_of_operation
"""

RETURN = r"""
revoked:
  description: The certificates revoked by this run (host, profile, serial, subject,
    not_after, status before the revocation).
  returned: always
  type: list
  elements: dict
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _revocation as R
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module

ROW_KEYS = ("host", "profile", "serial", "subject", "not_after", "status")


def run(module):
    params = module.params
    zone, ca_dir = _args.zone_and_ca_dir(params)
    if not CaDir(ca_dir).has_root():
        raise TrustzoneError("the zone has no CA here", ca_dir,
                             fix="run it on the zone's CA host")
    now = datetime.datetime.now(datetime.timezone.utc)
    with _ledger.locked(ca_dir):
        conn = _ledger.connect(ca_dir)
        chosen = R.select(_ledger.rows(conn, zone=zone), params["serials"],
                          params["hosts"], params["keep_hosts"], now)
        if chosen and not module.check_mode:
            _ledger.revoke(conn, [row["serial"] for row in chosen], params["reason"],
                           _layout.iso(now))
        conn.close()
    return {"changed": bool(chosen),
            "revoked": [{k: row[k] for k in ROW_KEYS} for row in chosen]}


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_CA,
        serials=dict(type="list", elements="str", default=[]),
        hosts=dict(type="list", elements="str", default=[]),
        keep_hosts=dict(type="list", elements="str"),
        reason=dict(type="str", default="unspecified", choices=list(_ledger.REASONS)),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
