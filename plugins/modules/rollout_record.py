#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_record
short_description: Record in the zone's ledger that a node was rolled back, and why
version_added: 0.1.0
description:
  - Runs on the CA host when the certs role rolled a node back after its services failed
    their probe (C(docs/rollout.md)). Adds one row per profile to the ledger's C(events)
    table - C(rolled_back) or C(rollback_refused), the certificate given up, the one put
    back, what the probe saw and when - and makes the ledger say at once what the node holds
    now (the certificate put back V(valid) again, the one given up V(superseded)), as the
    next run's reconciliation would.
  - The report (C(playbooks/report.yml)) lists these events.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.ca, trustzone.pki.attributes]
options:
  host:
    description: The node (inventory name).
    type: str
    required: true
  abandoned:
    description: Per profile, the SHA-256 fingerprint of the certificate installed and given up.
    type: dict
    default: {}
  restored:
    description: Per profile, the SHA-256 fingerprint of the certificate put back.
    type: dict
    default: {}
  refused:
    description:
      - Why the node could not roll back (one line). Every profile of O(abandoned) is then
        recorded as C(rollback_refused) with this reason, and no ledger row changes.
    type: str
    default: ""
  detail:
    description: What the probe or the reload saw (one line).
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: Says what it would record and writes nothing.
"""

EXAMPLES = r"""
- name: Record the rollback
  trustzone.pki.rollout_record:
    zone: prod
    host: node1
    abandoned: {server: "{{ new_fingerprint }}"}
    restored: {server: "{{ rollback.restored.server }}"}
    detail: "node1.example.test:8443: presents another certificate"
  delegate_to: ca1
"""

RETURN = r"""
events:
  description: The rows recorded (C(profile), C(event), C(fingerprint), C(restored_fingerprint), C(detail), C(at)).
  returned: always
  type: list
  elements: dict
reconciled:
  description: Ledger rows whose status changed to match what the node holds now.
  returned: always
  type: list
  elements: dict
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def run(params, check, now=None):
    zone, ca_dir = _args.zone_and_ca_dir(params)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    events = _ledger.rollout_events(zone, params["host"], params["abandoned"],
                                    params["restored"], params["refused"], params["detail"], at)
    result = {"changed": bool(events), "events": events, "reconciled": []}
    if check or not events:
        return result
    with _ledger.locked(ca_dir):
        conn = _ledger.connect(ca_dir, create=False)
        if conn is None:
            return result  # no ledger to record in (a CA that never signed)
        try:
            result["reconciled"] = _ledger.record_rollback(conn, zone, params["host"], events,
                                                           params["restored"], at)
        finally:
            conn.close()
    return result


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_CA,
        host=dict(type="str", required=True),
        abandoned=dict(type="dict", default={}),
        restored=dict(type="dict", default={}),
        refused=dict(type="str", default=""),
        detail=dict(type="str", required=True),
    ))
    try:
        module.exit_json(**run(module.params, module.check_mode))
    except TrustzoneError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
