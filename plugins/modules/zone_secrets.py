#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zone_secrets
short_description: Keep a trust zone's secrets key on its CA host and wrap it to every node
version_added: 0.1.0
description:
  - The zone secrets key (QlikView's SecretsKey) - a 256-bit Fernet key - is kept on the CA
    host in the CA's state, encrypted with the CA passphrase (scrypt, then Fernet), and
    travels with the CA's backups.
  - The first run makes generation 1, bound to the zone's signing root. When a root rotation
    makes another root the one that signs (its use phase), the next run adds a generation;
    values are then sealed with the new key, and every older generation still opens what it
    sealed until O(retire_before) retires it.
  - The controller half (an action plugin) wraps the keyring as CMS EnvelopedData (RFC 5652)
    to each node's O(profile) certificate - only to the certificate whose SHA-256 fingerprint
    the CA's ledger lists as that host's valid one; what a node sends decides nothing. Hosts
    without one are listed in RV(refused) and get nothing.
  - The keys themselves are never in the result, unless O(return_keys) asks for them (for
    C(playbooks/seal.yml)), and then the whole result is hidden (no_log).
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.ca, trustzone.pki.ca.passphrase, trustzone.pki.attributes]
options:
  profile:
    description: The node profile whose certificate the keyring is wrapped to (an RSA key
      with keyEncipherment usage, see the README's "Zone secrets").
    type: str
    default: secrets
  nodes:
    description: The hosts to wrap the keyring to. Each one's certificate is read from the
      host variable O(cert_var) (what C(ansible.builtin.slurp) of the certificate returned).
    type: list
    elements: str
    default: []
  cert_var:
    description: The host variable holding each node's slurped certificate.
    type: str
    default: __trustzone_secrets_cert
  retire_before:
    description: Retire the generations older than this one (0 - none). Do it only after
      every value sealed with them was sealed again (the C(trustzone.pki.reseal) filter).
    type: int
    default: 0
  return_keys:
    description: Also return the keys, newest first, in RV(keys) (hides the whole result).
    type: bool
    default: false
  transport_key:
    description:
      - Set by the action plugin, not by hand - a one-time Fernet key. With it the module
        returns the keys only sealed under it, so that even C(-vvv), which prints a module's
        raw output, shows no key.
    type: str
attributes:
  check_mode:
    description: Says what would change; writes nothing and wraps nothing that would change.
    support: full
  diff_mode:
    support: none
requirements:
  - cryptography >= 38.0 on the CA host; cryptography >= 44 on the controller (CMS)
"""

EXAMPLES = r"""
- name: Keep the zone secrets key and wrap it to the nodes
  trustzone.pki.zone_secrets:
    zone: prod
    passphrase: "{{ trustzone_ca_passphrase }}"
    nodes: "{{ groups['trustzone_nodes'] }}"
  register: zone_secrets
"""

RETURN = r"""
generations:
  description: The keyring's generations (no keys).
  returned: success
  type: list
  elements: dict
  sample: [{generation: 1, key_id: 3f0c9d1e2a7b4c55, root: "9a1f...", created: "2026-12-05T13:00:00Z"}]
key_ids:
  description: Public ids of the keys, newest first (what each node's envelope must hold).
  returned: success
  type: list
  elements: str
changes:
  description: What changed (or would change) in the keyring.
  returned: success
  type: list
  elements: str
envelopes:
  description: Host to the PEM CMS envelope of the keyring addressed to its certificate.
  returned: success
  type: dict
refused:
  description: Host to the reason it got no envelope.
  returned: success
  type: dict
keys:
  description: The keys, newest first (only with O(return_keys); the result is then hidden).
  returned: when O(return_keys=true)
  type: list
  elements: str
"""

import contextlib
import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger as L
from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as ROT
from ansible_collections.trustzone.pki.plugins.module_utils import _secrets as S
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module


def run(module):
    params = module.params
    zone, path = _args.zone_and_ca_dir(params)
    ca = CaDir.existing(path)
    now = datetime.datetime.now(datetime.timezone.utc)
    with (contextlib.nullcontext() if module.check_mode else L.locked(path)):
        current = ca.load(params["passphrase"])
        phase = ROT.phase_of(current.load_state())
        fps = {stem: C.fingerprint(cert) for stem in ("root", "next")
               for cert in [current.cert(stem)] if cert is not None}
        where = current.file(S.KEYRING_FILE)
        data = current.files.get(S.KEYRING_FILE)
        keyring = None if data is None else S.unlock(data, params["passphrase"], zone, where)
        wanted, changes = S.plan(keyring, zone, S.bound_root(phase, fps), now,
                                 params["retire_before"])
        changed = bool(changes)
        if changed and not module.check_mode:
            draft = current.copy()
            draft.files[S.KEYRING_FILE] = S.lock(wanted, params["passphrase"])
            ca.commit(draft)
            written = ca.load(params["passphrase"])  # read back what is in force now
            wanted = S.unlock(written.files[S.KEYRING_FILE], params["passphrase"], zone, where)
        valid = L.valid_in(path, zone)
    result = {"changed": changed, "changes": changes, "generations": S.public_view(wanted),
              "key_ids": [S.key_id(k) for k in S.keys_newest_first(wanted)],
              "valid": {host: (profiles.get(params["profile"]) or [])
                        for host, profiles in valid.items()}}
    if not (changed and module.check_mode):  # keys that exist (check mode plans new ones)
        keys = S.keys_newest_first(wanted)
        if params.get("transport_key"):
            result["sealed_keys"] = S.seal_for_transport(keys, params["transport_key"])
        else:
            result["keys"] = keys
    return result


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_CA_KEYS,
        profile=dict(type="str", default=S.PROFILE),
        nodes=dict(type="list", elements="str", default=[]),
        cert_var=dict(type="str", default="__trustzone_secrets_cert"),
        retire_before=dict(type="int", default=0),
        return_keys=dict(type="bool", default=False),
        transport_key=dict(type="str", no_log=True),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
