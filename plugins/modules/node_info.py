#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_info
short_description: Describe every certificate of a trust zone on a node, read-only
version_added: 0.1.0
description:
  - Reads, and never changes, the zone's files on a node - every profile's certificate, key
    and full chain, plus any other C(*.crt) in the zone directory - and reports for each
    certificate its subject, SANs, issuer, serial, SHA-256 fingerprint, validity and days
    left, whether it chains to the zone's roots, whether the key beside it matches, and the
    files' modes and owners.
  - Also describes the node's copy of the zone's CRLs (C(crl.pem)) and its roots bundle
    (C(roots.pem)).
  - Used by C(playbooks/report.yml); the P(trustzone.pki.fleet_report#filter) filter turns
    the results of every node into the fleet report.
author: trustzone.pki maintainers (!UNKNOWN)
options:
  zone:
    description: Name of the trust zone.
    type: str
    required: true
  dir:
    description: The zone's directory on the node. Defaults to C(/etc/trustzone/<zone>).
    type: path
  profiles:
    description:
      - Resolved profiles (output of the P(trustzone.pki.profiles#filter) filter). Their
        C(cert_path), C(key_path), C(chain_path), C(mode) and C(key_mode) say which files
        to read and which modes they should have.
    type: list
    elements: dict
    default: []
  roots:
    description:
      - PEM certificates of the zone's roots to check chains against. Defaults to the node's
        own C(<dir>/roots.pem).
    type: list
    elements: str
  intermediates:
    description:
      - PEM certificates of the zone's intermediate CAs, tried when a chain file lacks them.
    type: list
    elements: str
    default: []
  scan:
    description: Also describe every other C(*.crt) file in O(dir).
    type: bool
    default: true
attributes:
  check_mode:
    description: Read-only; runs the same in check mode.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
requirements:
  - cryptography >= 3.4 on the node
notes:
  - Private keys are read only to compare their public half with the certificate; nothing
    about them but that comparison, their path and their mode is returned.
"""

EXAMPLES = r"""
- name: Describe this node's zone certificates
  trustzone.pki.node_info:
    zone: prod
    profiles: "{{ __trustzone_certs_profiles }}"
  register: node_certificates
"""

RETURN = r"""
certificates:
  description:
    - One entry per certificate file, profiles first (in profile order), then other
      C(*.crt) files by name.
  returned: success
  type: list
  elements: dict
  contains:
    path:
      description: "The certificate file."
      type: str
    profile:
      description: "The profile it belongs to; null for other files."
      type: str
    kind:
      description: "V(profile) or V(extra) (a C(*.crt) no profile describes)."
      type: str
    exists:
      description: "Whether the certificate file exists."
      type: bool
    error:
      description: "Why it could not be read (a symlink is never followed), or null."
      type: str
    subject:
      description: "Subject in RFC 4514 form."
      type: str
    sans:
      description: "The subject alternative names, as C(dns) and C(ip) lists."
      type: dict
    issuer:
      description: "Issuer in RFC 4514 form."
      type: str
    serial:
      description: "Serial number in lower-case hex."
      type: str
    fingerprint:
      description: "SHA-256 fingerprint in lower-case hex."
      type: str
    not_after:
      description: "End of validity in ISO 8601 UTC."
      type: str
    days_left:
      description: "Whole days of validity left, negative once expired."
      type: int
    chain_valid:
      description: "Whether it chains to one of the roots."
      type: bool
    chain_root:
      description: "Fingerprint of the root it chains to, or null."
      type: str
    key_path:
      description: "The private key file beside it, or null."
      type: str
    key_match:
      description: "Whether that key belongs to the certificate; null without a key."
      type: bool
    mode:
      description: "Mode of the certificate file, like V(0644)."
      type: str
    key_mode:
      description: "Mode of the key file."
      type: str
    chain_mode:
      description: "Mode of the full-chain file."
      type: str
    expected_mode:
      description: "The profile's mode, or null for other files."
      type: str
    expected_key_mode:
      description: "The profile's key_mode, or null for other files."
      type: str
crl:
  description:
    - The node's CRL copy - C(path), C(exists), C(error), C(next_update), C(number) and
      C(crls).
  returned: success
  type: dict
roots_bundle:
  description:
    - SHA-256 fingerprints of the certificates in C(<dir>/roots.pem); null when the file
      does not exist.
  returned: success
  type: list
  elements: str
roots_source:
  description:
    - Where the roots that chains were checked against came from (V(parameter),
      V(roots.pem) or V(none)).
  returned: success
  type: str
"""

import datetime
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils import _report as R
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module

try:
    import grp
    import pwd
except ImportError:  # pragma: no cover
    grp = pwd = None


def _owner(state):
    if "uid" not in state:
        return None
    try:
        user = pwd.getpwuid(state["uid"]).pw_name
    except (KeyError, AttributeError):
        user = str(state["uid"])
    try:
        group = grp.getgrgid(state["gid"]).gr_name
    except (KeyError, AttributeError):
        group = str(state["gid"])
    return "%s:%s" % (user, group)


def _state(path):
    """``(file_state, error)``; a symlink or unreadable entry is an error, never followed."""
    if not path:
        return {"exists": False}, None
    try:
        return _fs.file_state(path), None
    except (TrustzoneError, OSError) as exc:
        return {"exists": True}, str(exc)


def _read(path, loader):
    """``(object, error)`` from a file; ``(None, None)`` when it does not exist."""
    try:
        data = _fs.read_file(path)
        if data is None:
            return None, None
        return loader(data, path=path), None
    except TrustzoneError as exc:
        return None, str(exc)


def describe(path, profile, key_path, chain_path, roots, intermediates, now, kind):
    cert_state, cert_state_error = _state(path)
    key_state, _e = _state(key_path)
    chain_state, _e = _state(chain_path)
    item = {"path": path, "profile": profile["name"] if profile else None, "kind": kind,
            "exists": bool(cert_state.get("exists")), "error": cert_state_error,
            "key_path": key_path if key_state.get("exists") else None,
            "chain_path": chain_path if chain_state.get("exists") else None,
            "mode": R.mode_text(cert_state.get("mode")), "owner": _owner(cert_state),
            "key_mode": R.mode_text(key_state.get("mode")), "key_owner": _owner(key_state),
            "chain_mode": R.mode_text(chain_state.get("mode")),
            "expected_mode": profile["mode"] if profile else None,
            "expected_key_mode": profile["key_mode"] if profile else None,
            "key_error": None}
    if not item["exists"] or item["error"]:
        return item
    cert, error = _read(path, C.load_certificate)
    if cert is None:
        item["error"] = error or "the file disappeared while it was read"
        return item
    chain = []
    if chain_path and chain_state.get("exists"):
        bundle, _error = _read(chain_path, C.load_certificates)
        chain = list((bundle or [])[1:])
    key = None
    if key_state.get("exists"):
        key, item["key_error"] = _read(key_path, C.load_private_key)
    item.update(R.certificate_facts(cert, chain + list(intermediates), roots, key, now))
    return item


def run(module):
    params = module.params
    zone = _parse.validate_name(params["zone"], "zone name")
    zone_dir = (params["dir"] or "/etc/trustzone/%s" % zone).rstrip("/")
    now = datetime.datetime.now(datetime.timezone.utc)

    roots, source = [], "none"
    if params["roots"]:
        for index, pem in enumerate(params["roots"]):
            roots.extend(C.load_certificates(pem, path="roots[%d]" % index))
        source = "parameter"
    bundle_certs, _error = _read(os.path.join(zone_dir, "roots.pem"), C.load_certificates)
    roots_bundle = None
    if bundle_certs is not None:
        roots_bundle = sorted(C.fingerprint(c) for c in bundle_certs)
        if not roots:
            roots, source = bundle_certs, "roots.pem"
    intermediates = []
    for index, pem in enumerate(params["intermediates"] or []):
        intermediates.extend(C.load_certificates(pem, path="intermediates[%d]" % index))

    certificates, seen = [], set()
    for profile in params["profiles"] or []:
        for key in ("name", "cert_path", "key_path", "chain_path", "mode", "key_mode"):
            if key not in profile:
                raise TrustzoneError("profile %r lacks %r" % (profile.get("name"), key),
                                     fix="pass resolved profiles (trustzone.pki.profiles)")
        certificates.append(describe(profile["cert_path"], profile, profile["key_path"],
                                     profile["chain_path"], roots, intermediates, now,
                                     "profile"))
        seen.add(os.path.normpath(profile["cert_path"]))
    if params["scan"]:
        for name in _fs.list_dir(zone_dir):
            path = os.path.join(zone_dir, name)
            if not name.endswith(".crt") or os.path.normpath(path) in seen:
                continue
            stem = path[:-len(".crt")]
            certificates.append(describe(path, None, stem + ".key", stem + "-fullchain.pem",
                                         roots, intermediates, now, "extra"))

    crl_path = os.path.join(zone_dir, "crl.pem")
    crl = {"path": crl_path, "exists": False, "error": None, "next_update": None,
           "number": None, "crls": []}
    crls, error = _read(crl_path, C.load_crls)
    if error:
        crl.update(exists=True, error=error)
    elif crls is not None:
        crl["exists"] = True
        crl.update(R.crl_facts(crls, roots + intermediates, now))
    return {"changed": False, "zone": zone, "dir": zone_dir, "certificates": certificates,
            "crl": crl, "roots_bundle": roots_bundle, "roots_source": source}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            zone=dict(type="str", required=True),
            dir=dict(type="path"),
            profiles=dict(type="list", elements="dict", default=[]),
            roots=dict(type="list", elements="str"),
            intermediates=dict(type="list", elements="str", default=[]),
            scan=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
