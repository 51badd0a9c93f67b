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
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.zone.node_dir, trustzone.pki.attributes.info,
  trustzone.pki.attributes]
options:
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _node
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module


def run(module):
    """Everything is in module_utils/_node.py (describe_zone) and _backend.py (describe)."""
    return _node.describe_zone(module.params)


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_NODE,
        profiles=dict(type="list", elements="dict", default=[]),
        roots=dict(type="list", elements="str"),
        intermediates=dict(type="list", elements="str", default=[]),
        scan=dict(type="bool", default=True),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
