#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sign
short_description: Sign every pending CSR of a play on the zone's CA host, in one batch
version_added: 0.1.0
description:
  - An action plugin on the controller collects, from every host of the play, the CSRs that the
    M(trustzone.pki.node) module returned (registered as O(result_var)); nothing else is taken
    from those results. It then runs this module once on the CA host (use C(delegate_to) and
    C(run_once)).
  - What each host may hold is resolved by the action plugin itself, from the inventory alone
    (host and group variables, play vars and extra vars; never facts, the fact cache,
    C(set_fact) or registered results), for every host of the groups C(trustzone_nodes) and
    C(trustzone_ca) whatever C(--limit) says; a DNS name, address or common name that two
    hosts would hold fails the task before the CA host is contacted (see docs/identity.md).
  - Every certificate issued is recorded, in the same run and under an exclusive lock held for
    the whole batch, in the zone's SQLite issuance ledger on the CA host (C(ledger.db)), and
    the host/profile's previous certificate is marked superseded.
  - Each CSR is checked against its host's profile - common name, every SAN, key type, no CA
    flag, key usages - and refused with a message naming the host and the field when it asks
    for anything else. Certificates take their subject, usages and lifetime from the profile,
    never from the CSR.
  - When no host needs a certificate and no node reported an installed certificate, the CA
    host is not contacted at all; otherwise it is contacted once per play, and when nothing is
    to be signed the CA key is not even read.
  - In check mode nothing is signed; RV(would_issue) lists what would be.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.ca, trustzone.pki.ca.passphrase,
  trustzone.pki.ca.pkcs11, trustzone.pki.attributes]
options:
  hosts:
    description: Hosts whose requests to sign. Defaults to the play's hosts.
    type: list
    elements: str
  result_var:
    description:
      - Name of the variable each host registered the M(trustzone.pki.node) result in (the
        certs role registers C(__trustzone_certs_node)). This is the whole protocol between the
        node task and this one - one variable per host, read from nowhere else.
      - Of each result only C(requests) (per profile the C(csr) and the C(reasons) it is wanted)
        and C(installed) (per profile the C(certificate) and its C(fingerprint), for the ledger)
        are read, as untrusted data; a failed, skipped or absent result contributes nothing.
        What may be signed for the host comes from the inventory, never from the result.
    type: str
    default: __trustzone_certs_node
  metrics_dir:
    description:
      - Directory of node_exporter's textfile collector on the CA host. When set, the CA host's
        metrics file C(<metrics_dir>/trustzone_<zone>.ca.prom) is written again after the
        ledger changed (the ledger's counts by status; see C(docs/metrics.md)). The certs role
        sets it from the CA host's C(trustzone_metrics_textfile_dir).
    type: path
  metrics_dir_optional:
    description: When O(metrics_dir) does not exist, write nothing instead of failing.
    type: bool
    default: false
  requests:
    description:
      - Set by the action plugin; do not pass it yourself.
    type: list
    elements: dict
    default: []
  installed:
    description:
      - Set by the action plugin; do not pass it yourself. Per host and profile, the
        certificate the node reported as installed (C(installed) of the
        M(trustzone.pki.node) result; untrusted).
      - Under the ledger's lock, a host/profile whose installed certificate is a ledger row of
        that host/profile, unexpired and not revoked, gets that row C(valid) and its other
        C(valid) rows C(superseded); an installed certificate the ledger does not know for that
        host/profile is reported in RV(unrecorded) and left alone. Host/profiles being signed
        in the same batch are left out (what they hold is about to be replaced).
    type: dict
    default: {}
  publish_url:
    description:
      - Set by the action plugin; do not pass it yourself. The zone's base URL
        (C(trustzone_ca_publish_url) of the CA host, from the inventory alone); when set, every
        certificate signed carries the CRL distribution point C(<publish_url>/<id>.crl) and the
        AIA caIssuers C(<publish_url>/<id>.crt), where C(<id>) is the hex subject key
        identifier of the issuing CA.
    type: str
attributes:
  action:
    description: An action plugin on the controller collects the play's requests and runs the module on the CA host.
    support: full
  check_mode:
    description: In check mode nothing is signed; RV(would_issue) lists what would be.
    support: full
requirements:
  - cryptography >= 3.4 on the CA host
"""

EXAMPLES = r"""
- name: Sign every pending request of the play
  trustzone.pki.sign:
    zone: prod
    passphrase: "{{ vault_trustzone_ca_passphrase }}"
  delegate_to: "{{ groups['trustzone_ca'] | first }}"
  run_once: true
  register: signed
"""

RETURN = r"""
certificates:
  description: "New certificates: C(certificates[host][profile]) has C(certificate), C(chain),
    C(serial), C(not_after) and C(fingerprint)."
  returned: always
  type: dict
refused:
  description: Per host, why its requests were refused.
  returned: always
  type: dict
would_issue:
  description: In check mode, per host, the profiles that would be issued and why.
  returned: check mode
  type: dict
issued:
  description: Number of certificates issued.
  returned: always
  type: int
reconciled:
  description: Ledger rows whose status changed to match what the nodes hold, each with
    C(serial), C(host), C(profile) and the new C(status) (C(valid) or C(superseded)).
  returned: always
  type: list
  elements: dict
unrecorded:
  description: Per host and profile, the SHA-256 fingerprint of an installed certificate that
    is no ledger row of that host/profile (not signed by this CA for it, or the ledger lost it).
  returned: always
  type: dict
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _issue
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils import _ca_metrics
from ansible_collections.trustzone.pki.plugins.module_utils import _metrics
from ansible_collections.trustzone.pki.plugins.module_utils import _pkcs11
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module


def run(module):
    params = module.params
    zone, ca_dir = _args.zone_and_ca_dir(params)
    requests = params["requests"]
    if module.check_mode:
        return {"changed": bool(requests), "certificates": {}, "refused": {}, "issued": 0,
                "reconciled": [], "unrecorded": {}}
    metrics_dir = _metrics.target(params["metrics_dir"], params["metrics_dir_optional"])
    token = _pkcs11.token_access(params)
    try:
        result = _sign(params, zone, ca_dir, requests, token)
    finally:
        if token is not None:
            token.close()
    if metrics_dir:  # the ledger's counts as they are now (docs/metrics.md)
        _ca_metrics.publish_ca(metrics_dir, zone, ca_dir,
                               datetime.datetime.now(datetime.timezone.utc))
    return result


def _sign(params, zone, ca_dir, requests, token):
    pending = {(r.get("host"), (r.get("profile") or {}).get("name")) for r in requests}
    installed = _issue.installed_fingerprints(params["installed"], pending)
    issued, refused, changes, unrecorded = {}, {}, [], {}
    if requests:  # the CA key is read only when something is to be signed
        key, cert, chain = CaDir(ca_dir, token=token).issuer(params["passphrase"])
    with _ledger.locked(ca_dir):
        conn = _ledger.connect(ca_dir, create=bool(requests))
        now = datetime.datetime.now(datetime.timezone.utc)
        now_text = _layout.iso(now)
        if conn is None:
            unrecorded = installed
        else:
            changes, unrecorded = _ledger.reconcile_installed(conn, zone, installed, now_text)
        if requests:
            issued, refused, entries = _issue.sign_batch(requests, cert, key, chain, now,
                                                         zone=zone,
                                                         publish_url=params["publish_url"])
            _ledger.record(conn, entries, now_text)
        if conn is not None:
            conn.close()
    count = sum(len(v) for v in issued.values())
    return {"changed": count > 0 or bool(changes), "certificates": issued, "refused": refused,
            "issued": count, "reconciled": changes, "unrecorded": unrecorded}


def main():
    module = AnsibleModule(**_issue.sign_module_args(module=True))
    run_module(module, run)


if __name__ == "__main__":
    main()
