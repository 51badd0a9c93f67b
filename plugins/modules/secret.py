#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secret
short_description: Open a value sealed with the zone secrets key, on a node of the zone
version_added: 0.1.0
description:
  - Opens a Fernet token made by the P(trustzone.pki.seal#filter) filter (for example a database
    password kept in the inventory) with the zone's secrets keys, which the node holds
    wrapped to its own C(secrets) certificate (M(trustzone.pki.secrets_install)). Every
    generation of the keyring opens what it sealed, so values sealed before a root rotation
    still open during and after it, until their generation is retired.
  - With O(dest) the value is written there atomically (owner and O(mode) set before the
    rename, symbolic links refused) and only when it differs; without O(dest) it is returned
    in RV(value) and the whole result is hidden (no_log).
  - A token sealed for another zone, with a retired generation, or altered, fails with one
    line naming the zone. The value never appears in the result, a diff or a log.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.zone.node_dir, trustzone.pki.files, trustzone.pki.secrets, trustzone.pki.attributes]
options:
  token:
    description: The sealed value.
    type: str
    required: true
  dest:
    description: Write the value to this file (instead of returning it).
    type: path
  envelope_path:
    description: The node's envelope. Default - C(keyring.p7m) in the zone's directory.
    type: path
  transport_key:
    description:
      - Set by the action plugin, not by hand - a one-time Fernet key. With it the module
        returns the value only sealed under it, so that even C(-vvv), which prints a module's
        raw output, does not show it.
    type: str
attributes:
  check_mode:
    description: Opens the value and says whether O(dest) would change; writes nothing.
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Hand the database password to the service
  trustzone.pki.secret:
    zone: prod
    token: "{{ app_db_password_sealed }}"
    dest: /etc/app/db.password
    owner: app
    group: app
"""

RETURN = r"""
generation:
  description: The keyring generation that opened the value.
  returned: success
  type: int
dest:
  description: Where the value was written.
  returned: with O(dest)
  type: str
value:
  description: The value (the result is hidden).
  returned: without O(dest)
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
    envelope_path, cert_path, key_path = S.node_paths(
        zone_dir, params["envelope_path"], params["cert_path"], params["key_path"])
    envelope = _fs.read_file(envelope_path)
    if envelope is None:
        raise TrustzoneError("this node holds no zone secrets key", envelope_path,
                             fix=S.OPEN_FIX)
    keys = S.unwrap_on_node(envelope, cert_path, key_path, S.command_runner(module), zone,
                            envelope_path)
    generation, value = S.open_with_generation(params["token"], keys, zone)
    if not params["dest"]:
        text = value.decode("utf-8", "surrogateescape")
        if params.get("transport_key"):
            return {"changed": False, "generation": generation,
                    "sealed_value": S.seal_for_transport(text, params["transport_key"])}
        return {"changed": False, "generation": generation, "value": text}
    dest = params["dest"]
    mode = _parse.parse_mode(params["mode"], "mode")
    if mode & 0o007:
        raise TrustzoneError("mode %s lets every user read the secret" % params["mode"], dest,
                             fix="use 0600, or 0640 with a dedicated group")
    uid, gid = _fs.resolve_owner(params["owner"], params["group"])
    _fs.check_writable(dest)
    current = _fs.read_file(dest)
    state = _fs.file_state(dest)
    changed = current != value or (state["mode"], state["uid"], state["gid"]) != (mode, uid, gid)
    if changed and not module.check_mode:
        if current != value:
            _fs.atomic_write(dest, value, mode, uid, gid)
        else:
            _fs.set_meta(dest, mode, uid, gid)
    return {"changed": changed, "generation": generation, "dest": dest}


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_NODE, _args.OWNER_GROUP, _args.SECRETS_NODE,
        token=dict(type="str", required=True, no_log=True),
        dest=dict(type="path"),
        envelope_path=dict(type="path"),
        transport_key=dict(type="str", no_log=True),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
