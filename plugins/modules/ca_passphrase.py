#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ca_passphrase
short_description: Change the passphrase that encrypts a zone's CA keys
version_added: 0.1.0
description:
  - Runs on the CA host. Re-encrypts every private key under the zone's CA directory - the
    root, the next root and the intermediates during a rotation, and the retired keys - from
    O(passphrase) to O(new_passphrase) (PKCS#8, best available encryption).
  - Every key is opened before anything is written; if the current passphrase does not open
    one of them, the task fails naming it and changes nothing.
  - The re-encrypted keys are written, with the rest of the CA state, as a new generation of
    the CA directory, which one rename makes the one in force (see docs/ca-state.md), so a
    crash leaves either every key under the old passphrase or every key under the new one. The
    older generations, whose keys are under the old passphrase, are then removed, so no copy
    under the old passphrase is kept. A CA directory still in the flat layout of earlier
    releases is converted on the way.
  - A key that already opens with the new passphrase is left alone, so re-running the same
    change does nothing, and a run interrupted before the old generations were removed is
    finished by running it again.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.ca, trustzone.pki.ca.passphrase, trustzone.pki.attributes]
options:
  new_passphrase:
    description: The new CA passphrase, at least 12 characters, different from the current one.
    type: str
    required: true
attributes:
  check_mode:
    description: Opens every key with the current passphrase and lists those it would
      re-encrypt; writes nothing.
    support: full
requirements:
  - cryptography >= 3.4 on the CA host
"""

EXAMPLES = r"""
- name: Change the CA passphrase
  trustzone.pki.ca_passphrase:
    zone: prod
    passphrase: "{{ trustzone_ca_passphrase }}"
    new_passphrase: "{{ trustzone_ca_new_passphrase }}"
"""

RETURN = r"""
keys:
  description: Keys re-encrypted (or that would be, in check mode), relative to RV(dir).
  returned: success
  type: list
  elements: str
already:
  description: Keys that already opened with the new passphrase and were left alone.
  returned: success
  type: list
  elements: str
dir:
  description: The CA directory whose keys were re-encrypted.
  returned: success
  type: str
"""

import contextlib

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger as L
from ansible_collections.trustzone.pki.plugins.module_utils import _rekey as K
from ansible_collections.trustzone.pki.plugins.module_utils import _secrets as S
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module


def run(module):
    params = module.params
    zone, path = _args.zone_and_ca_dir(params)
    ca = CaDir.existing(path)
    # Generations never change once written, so reading needs no lock; the lock keeps two
    # writers apart (and is a file: check mode does not create it).
    with (contextlib.nullcontext() if module.check_mode else L.locked(path)):
        current = ca.load(params["passphrase"])
        keys = {rel: data for rel, data in current.files.items() if K.is_private_key(data)}
        todo, already = K.plan_rekey(keys, params["passphrase"], params["new_passphrase"])
        if S.KEYRING_FILE in current.files:  # the zone secrets keyring is under it too
            keyring = S.rekey(current.files[S.KEYRING_FILE], params["passphrase"],
                              params["new_passphrase"], zone, current.file(S.KEYRING_FILE))
            if keyring is None:
                already.append(S.KEYRING_FILE)
            else:
                todo[S.KEYRING_FILE] = keyring
        changed = bool(todo)
        if module.check_mode:
            changed |= bool(ca.would_clean(keep=1))
        elif todo:
            wanted = current.copy()
            wanted.files.update(todo)
            ca.commit(wanted, keep=1)  # one switch; older generations (old passphrase) go
            done = ca.load(params["new_passphrase"])
            for rel in todo:  # read back what is in force now
                if rel == S.KEYRING_FILE:
                    S.unlock(done.files[rel], params["new_passphrase"], zone, done.file(rel))
                else:
                    C.load_private_key(done.files[rel], params["new_passphrase"],
                                       path=done.file(rel))
        else:
            changed |= ca.cleanup(keep=1)
    return {"changed": changed, "keys": sorted(todo), "already": already, "dir": path}


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_CA_KEYS, new_passphrase=dict(type="str", required=True, no_log=True)))
    run_module(module, run)


if __name__ == "__main__":
    main()
