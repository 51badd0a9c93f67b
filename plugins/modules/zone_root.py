#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zone_root
short_description: Ensure a trust zone's root CA exists and is valid on the CA host
version_added: 0.1.0
description:
  - Creates the zone's root CA key and self-signed certificate on the CA host when they do not
    exist, and checks them on every later run (key decrypts, key matches certificate, root not
    expired).
  - The private key is stored as PKCS#8, encrypted with O(passphrase), in a directory of mode
    V(0700); the key file is V(0600). The key never leaves the CA host.
  - In check mode a missing root is generated in memory only, so that later tasks can plan
    against it; nothing is written.
  - The CA state (roots, intermediates, rotation phase, retired CAs) is kept as immutable
    generations under C(<dir>/gen/) and put in force by one rename of C(<dir>/current), so a
    crash leaves the old state or the new one, and running the same task again finishes the
    change. A directory in the flat layout of earlier releases becomes generation 1 on the
    first run that is not in check mode. See C(docs/ca-state.md).
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.ca, trustzone.pki.ca.passphrase,
  trustzone.pki.ca.pkcs11, trustzone.pki.files, trustzone.pki.action.role_spec]
options:
  key_type:
    description: Key algorithm of a new root.
    type: str
    choices: [ec, rsa, ed25519]
    default: ec
  key_curve:
    description: Curve of a new EC root key.
    type: str
    choices: [secp256r1, secp384r1]
    default: secp384r1
  key_size:
    description: Size of a new RSA root key.
    type: int
    choices: [2048, 3072, 4096]
    default: 4096
  lifetime:
    description: Validity of a new root, as a duration such as V(3650d).
    type: str
    default: 3650d
  common_name:
    description: Common name of a new root. Defaults to C(trustzone <zone> root CA).
    type: str
  rotate:
    description:
      - Advance a root rotation by one phase. V(none) only reports the state.
      - V(trust) makes a next root (once) that nodes must trust beside the current one.
      - V(use) makes the next root sign new leaves.
      - V(retire) makes the next root the root and archives the old one in C(retired/) of the
        new generation;
        it requires O(retire_confirmed).
      - Steps never go backwards and repeating one is a no-op, so an interrupted rotation is
        finished by running it again. Use C(playbooks/rotate_root.yml) rather than this
        option directly.
    type: str
    choices: [none, trust, use, retire]
    default: none
  rotate_before:
    description:
      - With O(rotate=trust), a new rotation starts only when the root has less than this
        left (or O(rotate_force) is set). A rotation already under way always continues.
    type: str
    default: 365d
  rotate_force:
    description: Start a new rotation now, whatever the root's remaining lifetime.
    type: bool
    default: false
  extend:
    description:
      - When the root is due (less than O(rotate_before) left, or O(rotate_force)) and no
        rotation is under way, re-issue it with the same key and subject and a new validity
        of O(lifetime), instead of rotating. Leaves keep validating; nodes get the extended
        root as a new anchor on their next run. The old certificate is archived.
    type: bool
    default: false
  intermediate:
    description:
      - Sign leaves with an intermediate CA (path length 0) that the root signs, instead of
        with the root itself. Each root gets its own intermediate, kept beside it; leaves
        carry it in their full chain. Turning this on re-issues every leaf.
    type: bool
    default: false
  intermediate_lifetime:
    description: Validity of a new intermediate (never beyond the root's).
    type: str
    default: 1825d
  intermediate_rotate_before:
    description: Replace the intermediate when it has less than this left.
    type: str
    default: 180d
  intermediate_force:
    description:
      - Replace the intermediate now. Leaves are re-issued by the new one on the same run; they
        chain to the same root, so no trust store changes. Replaces it again every time it is
        given.
    type: bool
    default: false
  name_constraints:
    description:
      - Put critical name constraints (RFC 5280 4.2.1.10) on the intermediates, so that the
        key that signs leaves can vouch for the zone's names only. Needs O(intermediate).
      - The permitted subtrees are computed from the inventory's names of every host of the
        zone (O(zone_names)) and O(name_constraints_permitted); an intermediate whose
        constraints differ from them is re-issued in the same run (leaves follow; no trust
        store changes). See C(docs/name-constraints.md).
    type: bool
    default: false
  name_constraints_permitted:
    description:
      - Subtrees the constraints permit besides those derived from the zone's names - DNS
        domains, single-label machine names, addresses or networks such as V(10.20.0.0/16).
    type: list
    elements: str
    default: []
  name_constraints_pinned:
    description:
      - Permit exactly O(name_constraints_permitted) and derive nothing. A name of the zone
        outside them fails the run, naming the host, before anything is written.
    type: bool
    default: false
  zone_names:
    description:
      - Every host's names, as the identity resolver derives them from the inventory. Set by
        the action plugin on the controller; a value given in the task is replaced.
    type: dict
  publish_url:
    description:
      - The zone's base URL for distribution points (C(trustzone_ca_publish_url), read from the
        inventory by the action plugin). Intermediates then carry a CRL distribution point
        and AIA caIssuers for their root's CRL and certificate, and are re-issued when it
        changes.
    type: str
  root_offline:
    description:
      - Keep the root key off the CA host. The root keys live in O(root_dir) on the
        controller, encrypted with O(root_passphrase); the CA host holds the root
        certificates and the intermediate that signs leaves (O(intermediate) is required).
      - Whenever the root key is needed (a new root, an intermediate, a rotation step, the
        root's CRL), the action plugin signs on the controller and says so in its output
        (RV(root_key_used)). See C(docs/offline-root.md).
    type: bool
    default: false
  root_dir:
    description:
      - The offline root store, a directory on the controller (mode V(0700)); consumed by the
        action plugin, never sent to the CA host.
    type: path
  root_passphrase:
    description:
      - Encrypts the offline root keys (at least 12 characters; keep it in Ansible Vault).
        Consumed by the action plugin, never sent to the CA host.
    type: str
  root_certs:
    description: The offline root store's certificates. Set by the action plugin.
    type: list
    elements: str
    default: []
  root_signed:
    description: What the offline root signed in the previous round. Set by the action plugin.
    type: dict
    default: {}
  root_crl_lifetime:
    description: Validity of an offline root's CRL (it is signed again only when it runs low,
      when its entries change, or when it is missing).
    type: str
    default: 365d
  root_crl_refresh_before:
    description: Sign an offline root's CRL again when its nextUpdate is closer than this.
    type: str
    default: 60d
  crl_lifetime:
    description: Validity (nextUpdate) of the CRLs the CA signs; one CRL per CA of the zone.
    type: str
    default: 7d
  crl_refresh_before:
    description:
      - Sign the CRLs again when their nextUpdate is closer than this. They are also signed
        again when a certificate was revoked or the zone's CAs changed.
    type: str
    default: 2d
  metrics_dir:
    description:
      - Directory of node_exporter's textfile collector. When set, every run that gets as far
        as the CRL writes the ledger's counts by status, the rotation phase, the CRLs'
        nextUpdate and the time of this run to C(<metrics_dir>/trustzone_<zone>.ca.prom)
        (0644, atomically; never counted as a change). See C(docs/metrics.md). The ca role
        sets it from C(trustzone_metrics_textfile_dir).
      - A directory that does not exist or is not writable stops the run before anything is
        written, unless O(metrics_dir_optional) is set.
    type: path
  metrics_dir_optional:
    description: When O(metrics_dir) does not exist, write nothing instead of failing.
    type: bool
    default: false
  metrics_in_check_mode:
    description:
      - Also write the metrics file in check mode. C(playbooks/zone_check.yml)'s check round
        sets it (through the ca role), so that a run that ends there still records its time.
    type: bool
    default: false
  retire_confirmed:
    description:
      - Set by C(playbooks/rotate_root.yml) after it checked that no leaf of the zone still
        chains to the old root.
    type: bool
    default: false
  ca_hosts:
    description:
      - The hosts of group C(trustzone_ca). When given, an action plugin on the controller
        refuses to run unless there is exactly one. It also checks O(zone) and that
        O(passphrase) has at least 12 characters, each failure one line naming the host, the
        variable and the fix, before the CA host is contacted.
    type: list
    elements: str
attributes:
  action:
    description: An action plugin on the controller checks the inputs before the CA host is contacted.
    support: full
  check_mode:
    description: In check mode a missing root is generated in memory only; nothing is written.
    support: full
  diff_mode:
    description: With C(--diff), shows the fingerprint of the root before and after.
    support: full
requirements:
  - cryptography >= 3.4 on the CA host
"""

EXAMPLES = r"""
- name: Ensure the zone root exists
  trustzone.pki.zone_root:
    zone: prod
    passphrase: "{{ vault_trustzone_ca_passphrase }}"
  register: trustzone_ca_root
"""

RETURN = r"""
phase:
  description: Rotation phase after this run - V(stable), V(trust) or V(use).
  returned: success
  type: str
issuer:
  description: PEM certificate of the CA that signs new leaves now (the issuing root, or its
    intermediate).
  returned: success
  type: str
next:
  description: Facts about the next root during a rotation (same keys as RV(root)), else null.
  returned: success
  type: dict
intermediate:
  description: Facts about the issuing intermediate, or null when the zone has none.
  returned: success
  type: dict
crl:
  description: The zone's CRLs (PEM, one per CA), which nodes keep as C(<dir>/crl.pem).
  returned: success
  type: str
crl_signed:
  description: Why the CRLs were signed again in this run, or null.
  returned: success
  type: str
crl_next_update:
  description: The earliest nextUpdate of the zone's CRLs (ISO 8601 UTC).
  returned: success
  type: str
name_constraints:
  description: The subtrees the intermediates carry, or null without O(name_constraints).
  returned: success
  type: dict
  contains:
    dns:
      description: Permitted DNS subtrees (domains and machine names).
      type: list
      elements: str
    ip:
      description: Permitted networks.
      type: list
      elements: str
    excluded_ip:
      description: Excluded networks (an address family the zone does not use).
      type: list
      elements: str
pkcs11:
  description: The PKCS#11 module and token label of the zone's CA keys (never the PIN), or
    null; the certs role's sign step reads it.
  returned: success
  type: dict
root_key_used:
  description: What the offline root key did in this run, one line each (set by the action
    plugin), for example V(signed the CA certificate ... with root 3f2a...).
  returned: with O(root_offline)
  type: list
  elements: str
root_requests:
  description: In check mode with O(root_offline), what the offline root key would have to
    do; empty otherwise.
  returned: success
  type: list
  elements: dict
reissued:
  description: Intermediates made in this run and why (for example V(name constraints
    changed +lab2.example.com)), by stem (V(intermediate), V(next-intermediate)).
  returned: success
  type: dict
extended:
  description: Whether the root was re-issued with the same key (O(extend)).
  returned: success
  type: bool
rotation:
  description: What the O(rotate) step did (phase_before, phase_after, changed, ...).
  returned: success
  type: dict
roots:
  description: PEM certificates of the zone's current roots (what nodes must trust).
  returned: success
  type: list
  elements: str
would_change:
  description:
    - The same as C(changed), set by the action plugin so that it survives a task's
      C(changed_when) (the ca role's task is not counted as changed in
      C(playbooks/zone_check.yml)'s check round, which reads this instead).
  returned: always
  type: bool
ledger_valid:
  description:
    - Per host and profile, the SHA-256 fingerprints of the issuance ledger's C(valid) rows
      of the zone (one each when the ledger is in step with the nodes). C(site.yml)'s check
      round compares them with what every node holds.
  returned: success
  type: dict
root:
  description: Facts about the current root.
  returned: success
  type: dict
  contains:
    fingerprint:
      description: SHA-256 fingerprint, lower-case hex.
      type: str
    subject:
      description: Subject in RFC 4514 form.
      type: str
    not_after:
      description: End of validity, ISO 8601 UTC.
      type: str
    days_left:
      description: Whole days of validity left.
      type: int
dir:
  description: The CA directory.
  returned: success
  type: str
zone:
  description: The zone name.
  returned: success
  type: str
created:
  description: Whether a new root was made (or would be, in check mode).
  returned: success
  type: bool
"""

import contextlib
import datetime
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _constraints
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _ca_metrics
from ansible_collections.trustzone.pki.plugins.module_utils import _metrics
from ansible_collections.trustzone.pki.plugins.module_utils import _pkcs11
from ansible_collections.trustzone.pki.plugins.module_utils import _offline
from ansible_collections.trustzone.pki.plugins.module_utils import _rootplan
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir
from ansible_collections.trustzone.pki.plugins.module_utils._revocation import ensure_crl
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module


def run(module):
    """load -> plan -> apply (unless check mode) -> result; then the metrics file."""
    params = module.params
    check = module.check_mode
    zone, ca_dir = _args.zone_and_ca_dir(params)
    # a bad metrics directory stops the run before anything is written
    metrics_dir = _metrics.target(params["metrics_dir"], params["metrics_dir_optional"])
    uid, gid = _fs.resolve_owner(params["owner"], params["group"])
    if params["pkcs11_token"] and params["root_offline"] and "root" in params["pkcs11_keys"]:
        raise TrustzoneError("the root key cannot be both offline and in the PKCS#11 token",
                             fix="set trustzone_ca_pkcs11_keys to [intermediate] with an "
                                 "offline root")
    token = _pkcs11.token_access(params, check)
    try:
        result = _run(module, params, check, zone, ca_dir, uid, gid, token)
    finally:
        if token is not None:
            token.close()
    if metrics_dir and (not check or params["metrics_in_check_mode"]) \
            and not result.get("root_requests") and os.path.isdir(ca_dir):
        _ca_metrics.publish_ca(metrics_dir, zone, ca_dir,
                               datetime.datetime.now(datetime.timezone.utc))
    return result


def _run(module, params, check, zone, ca_dir, uid, gid, token):
    ca = CaDir(ca_dir, uid, gid, token=token)
    now = datetime.datetime.now(datetime.timezone.utc)
    changed = _fs.ensure_dir(ca.path, 0o700, uid, gid, check_mode=check)

    # One writer at a time plans from the state in force and switches to its own (a run
    # killed on the controller may leave its module running here); readers need no lock.
    # With an offline root, a round may first apply what the controller signed for the last
    # one, and end by asking the controller for the root key's work (module_utils/_offline).
    signer_certs = [C.load_certificate(pem) for pem in params["root_certs"] or []]
    with (contextlib.nullcontext() if check else _ledger.locked(ca.path)):
        applied = None if check else _offline.resume(ca, params["root_signed"], signer_certs,
                                                     _ledger)
        changed |= applied is not None
        if applied == "state":  # what was forced is done: planning again must not redo it
            params = dict(params, intermediate_force=False, rotate_force=False)
        current = ca.load(params["passphrase"])
        try:
            wanted, facts = _rootplan.plan(current, params, zone, now)
        except _rootplan.RootNeeded as need:
            return {"changed": changed, "root_requests": [{"op": "create", "stem": need.stem}]}
        if ca.debts and not params["root_offline"]:
            raise TrustzoneError("the zone's root key is kept off the CA host (an offline "
                                 "root), but trustzone_ca_root_offline is false", ca.path,
                                 fix="set trustzone_ca_root_offline: true and give "
                                     "trustzone_ca_root_dir and trustzone_ca_root_passphrase")
        commit = ca.needs_commit(current, wanted)
        changed |= commit or facts["changed"]
        if ca.debts and not check:
            _offline.save_pending(ca, "state", current.source,
                                  {"files": _offline.encode_files(wanted.files)}, ca.debts)
            return {"changed": True, "root_requests": _offline.requests_for(ca.debts)}
        if check:
            changed |= bool(ca.would_clean())
        elif commit:
            ca.commit(wanted)
        else:
            changed |= ca.cleanup()

    cert, ncert, issuer = facts["cert"], facts["ncert"], facts["issuer"]
    intermediates, trusted, step = facts["intermediates"], facts["trusted"], facts["step"]
    state_debts = len(ca.debts)
    crl, crl_reason = ensure_crl(ca, facts["cas"], params, now, check)
    changed |= crl_reason is not None
    if getattr(ca, "pending_crl", None) is not None:  # the offline root signs its CRL first
        _offline.save_pending(ca, "crl", ca.pointer(), ca.pending_crl, ca.debts[state_debts:])
        return {"changed": True,
                "root_requests": _offline.requests_for(ca.debts[state_debts:])}
    result = {
        "changed": changed,
        "created": facts["created"],
        "zone": zone,
        "dir": ca.path,
        "phase": facts["phase"],
        "rotation": step,
        "roots": [C.certificate_pem(c) for c in trusted],
        "issuer": C.certificate_pem(intermediates.get(C.fingerprint(issuer), issuer)),
        "intermediate": (_rootplan.root_facts(intermediates[C.fingerprint(issuer)], now)
                         if C.fingerprint(issuer) in intermediates else None),
        "extended": facts["extended"],
        "name_constraints": facts["name_constraints"],
        "reissued": facts["reissued"],
        "pkcs11": ({"module": params["pkcs11_module"], "token": params["pkcs11_token"]}
                   if params["pkcs11_token"] else None),
        "root_requests": _offline.requests_for(ca.debts) if check else [],
        "crl": crl,
        "crl_signed": crl_reason,
        "crl_next_update": _layout.iso(min(C.crl_next_update(c) for c in C.load_crls(crl))),
        "root": _rootplan.root_facts(cert, now),
        "next": _rootplan.root_facts(ncert, now) if ncert is not None else None,
        # what the signing step's reconcile would compare with (module_utils/_zonecheck)
        "ledger_valid": _ledger.valid_in(ca.path, zone),
    }
    if module._diff:
        before = "" if facts["created"] else "root %s\nphase %s\n" % (
            C.fingerprint(current.cert("root")), step["phase_before"])
        after = "".join("trust %s\n" % C.fingerprint(c) for c in trusted)
        after += "issue with %s\nphase %s\n" % (C.fingerprint(issuer), facts["phase"])
        before += "".join("%s %s\n" % (stem, C.fingerprint(current.cert(stem)))
                          for stem in facts["reissued"] if current.cert(stem) is not None)
        after += "".join("%s re-issued: %s\n" % item for item in sorted(facts["reissued"].items()))
        if facts["name_constraints"]:
            after += "permit %s\n" % _constraints.describe(facts["name_constraints"])
        result["diff"] = {"before": before, "after": after}
    return result


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_CA_KEYS, _args.OWNER_GROUP, _args.ROLE_SPEC, _args.PKCS11, _args.NEW_ROOT,
        rotate=dict(type="str", default="none", choices=["none", "trust", "use", "retire"]),
        retire_confirmed=dict(type="bool", default=False),
        rotate_before=dict(type="str", default="365d"),
        rotate_force=dict(type="bool", default=False),
        extend=dict(type="bool", default=False),
        intermediate=dict(type="bool", default=False),
        intermediate_lifetime=dict(type="str", default="1825d"),
        intermediate_rotate_before=dict(type="str", default="180d"),
        intermediate_force=dict(type="bool", default=False),
        name_constraints=dict(type="bool", default=False),
        name_constraints_permitted=dict(type="list", elements="str", default=[]),
        name_constraints_pinned=dict(type="bool", default=False),
        zone_names=dict(type="dict"),
        publish_url=dict(type="str"),
        root_offline=dict(type="bool", default=False),
        root_dir=dict(type="path"),
        root_passphrase=dict(type="str", no_log=True),
        root_certs=dict(type="list", elements="str", default=[]),
        root_signed=dict(type="dict", default={}),
        root_crl_lifetime=dict(type="str", default="365d"),
        root_crl_refresh_before=dict(type="str", default="60d"),
        crl_lifetime=dict(type="str", default="7d"),
        crl_refresh_before=dict(type="str", default="2d"),
        # Consumed by the action plugin on the controller; listed so that the module's
        # documentation and argument spec agree.
        ca_hosts=dict(type="list", elements="str"),
        metrics_dir=dict(type="path"),
        metrics_dir_optional=dict(type="bool", default=False),
        metrics_in_check_mode=dict(type="bool", default=False),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
