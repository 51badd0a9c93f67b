#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secrets_install
short_description: Install the zone secrets keyring, wrapped to this node, on a node
version_added: 0.1.0
description:
  - Installs the CMS EnvelopedData that M(trustzone.pki.zone_secrets) made for this node
    (the zone's secrets keys, wrapped to its C(secrets) certificate) at O(path), atomically,
    with O(mode) and owner set before the rename; symbolic links are refused.
  - The installed envelope is kept when it opens with the node's key to exactly the key ids
    the zone holds now (O(key_ids)); CMS encryption is randomised, so a new envelope is
    written only when the keys changed or the installed one does not open (a new
    certificate, a damaged file). A new envelope is opened before it is installed.
  - Opening uses cryptography 45 or newer when the node has it, else C(openssl cms -decrypt)
    with only file paths on its command line.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.zone.node_dir, trustzone.pki.files, trustzone.pki.secrets, trustzone.pki.attributes]
options:
  envelope:
    description: The PEM envelope for this node (RV(trustzone.pki.zone_secrets#module:envelopes)).
    type: str
    required: true
  key_ids:
    description: The ids of the zone's secrets keys, newest first
      (RV(trustzone.pki.zone_secrets#module:key_ids)).
    type: list
    elements: str
    required: true
  path:
    description: Where the envelope goes. Default - C(keyring.p7m) in the zone's directory.
    type: path
attributes:
  check_mode:
    description: Says whether the envelope would be replaced; writes nothing.
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Install the zone's secrets keyring
  trustzone.pki.secrets_install:
    zone: prod
    envelope: "{{ hostvars[ca]['__zone_secrets']['envelopes'][inventory_hostname] }}"
    key_ids: "{{ hostvars[ca]['__zone_secrets']['key_ids'] }}"
    owner: qlik
"""

RETURN = r"""
path:
  description: The envelope's path.
  returned: success
  type: str
reason:
  description: Why the envelope was (or would be) replaced; empty when it was kept.
  returned: success
  type: str
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils import _secrets as S
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module


def run(module):
    params = module.params
    zone, zone_dir = _args.zone_and_node_dir(params)
    path, cert_path, key_path = S.node_paths(zone_dir, params["path"], params["cert_path"],
                                             params["key_path"])
    mode = _parse.parse_mode(params["mode"], "mode")
    if mode & 0o007:
        raise TrustzoneError("mode %s lets every user read the zone's secrets keys"
                             % params["mode"], path, fix="use 0600, or 0640 with a dedicated group")
    uid, gid = _fs.resolve_owner(params["owner"], params["group"])
    wanted = list(params["key_ids"])
    installed = _fs.read_file(path)
    held = None
    if installed is not None:
        try:
            held = S.unwrap_on_node(installed, cert_path, key_path, S.command_runner(module), zone, path)
        except TrustzoneError:
            held = None  # not ours to open (a new certificate, a damaged file): replaced
    reason = S.install_decision(None if held is None else S.ids_of(held), wanted)
    changed = False
    if reason:
        new = params["envelope"].encode("ascii")
        got = S.unwrap_on_node(new, cert_path, key_path, S.command_runner(module), zone, path)
        if S.ids_of(got) != wanted:
            raise TrustzoneError("the envelope from the controller holds other keys than the "
                                 "zone's", path, fix=S.OPEN_FIX)
        S.check_not_older(held, got, path)
        changed = True
        if not module.check_mode:
            _fs.atomic_write(path, new, mode, uid, gid)
    else:
        state = _fs.file_state(path)
        if (state["mode"], state["uid"], state["gid"]) != (mode, uid, gid):
            changed = True
            reason = "owner or mode"
            if not module.check_mode:
                _fs.set_meta(path, mode, uid, gid)
    return {"changed": changed, "path": path, "reason": reason or ""}


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_NODE, _args.OWNER_GROUP, _args.SECRETS_NODE,
        envelope=dict(type="str", required=True),
        key_ids=dict(type="list", elements="str", required=True, no_log=False),
        path=dict(type="path"),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
