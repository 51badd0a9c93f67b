#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: java_truststore
short_description: Make a Java truststore trust exactly the zone's current roots
version_added: 0.1.0
description:
  - Lists the truststore once with C(keytool), then adds the zone's current roots that are
    missing (alias C(<alias_prefix><fingerprint[:16]>)) and deletes the entries whose alias
    carries O(alias_prefix) but whose certificate is no longer a current root - the retired
    roots after a rotation. Entries of other zones and every other entry are left alone.
  - A root already in the store under any alias counts as present.
  - Changes are made on a copy next to the store and moved over it in one step, so a reader
    never sees a half-written store. Nothing changes (and only one C(keytool) call runs) when
    the store is already right.
  - A new store is PKCS#12. An existing store keeps its type (Debian's C(cacerts) is JKS).
  - The password is passed to C(keytool) through the environment, never on its command line.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.store]
options:
  path:
    description: The truststore file.
    type: path
    required: true
  password:
    description: The store password (at least 6 characters, a C(keytool) rule).
    type: str
    required: true
  zone:
    description: Name of the zone; the default O(alias_prefix) is C(trustzone-<zone>-).
    type: str
  alias_prefix:
    description: The zone's aliases are C(<alias_prefix><16 hex><alias_suffix>); an entry named
      so whose certificate is not a current root is removed.
    type: str
  alias_suffix:
    description: See O(alias_prefix). Debian's C(cacerts) names the zone's roots
      C(debian:trustzone-<zone>-<16 hex>.pem).
    type: str
    default: ""
  add:
    description: Add missing roots. V(false) only removes retired ones, for a store another
      tool fills (Debian's Java C(cacerts), filled from the OS anchors by ca-certificates-java).
    type: bool
    default: true
  keytool:
    description: The C(keytool) command.
    type: str
    default: keytool
  owner:
    description: Owner of the store. Default - unchanged (C(root) for a new store).
    type: str
  group:
    description: Group of the store. Default - unchanged (C(root) for a new store).
    type: str
  mode:
    description: Mode of the store. Default - unchanged (V(0644) for a new store).
    type: str
attributes:
  check_mode:
    description: Lists the store and reports what it would add and remove; before the Java
      runtime is installed, reports every root as to be added.
    support: full
  diff_mode:
    description: Lists the aliases added (+) and removed (-).
    support: full
requirements:
  - a Java runtime (C(keytool)) and cryptography >= 3.4 on the node
"""

EXAMPLES = r"""
- name: The zone's roots in a Java truststore
  trustzone.pki.java_truststore:
    path: /etc/trustzone/prod/truststore.p12
    password: "{{ vault_truststore_password }}"
    zone: prod
    roots_path: /etc/trustzone/prod/roots.pem
"""

RETURN = r"""
added:
  description: Aliases added.
  returned: always
  type: list
  elements: str
removed:
  description: Aliases removed (retired roots of the zone).
  returned: always
  type: list
  elements: str
kept:
  description: Aliases that already held a current root.
  returned: always
  type: list
  elements: str
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils import _sources
from ansible_collections.trustzone.pki.plugins.module_utils import _truststores as T
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import listed_diff, run_module

# A short-lived JVM: the fastest start for a one-shot tool (about 0.3 s instead of 0.5-1 s).
JVM_FLAGS = ["-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-Duser.language=en",
             "-J-Duser.country=US"]
PASSWORD_ENV = "TRUSTZONE_STOREPASS"


class Keytool:
    def __init__(self, module, command, password):
        self.module = module
        self.command = module.get_bin_path(command, required=False) or command
        if not os.path.isabs(self.command):
            raise TrustzoneError("keytool not found (%s)" % command,
                                 fix="install a Java runtime (the stores role does when "
                                     "trustzone_stores_java_install is true)")
        self.env = {PASSWORD_ENV: password, "LC_ALL": "C", "LANG": "C"}

    def run(self, args, store, data=None, what="keytool"):
        argv = [self.command] + JVM_FLAGS + args + ["-keystore", store,
                                                    "-storepass:env", PASSWORD_ENV]
        rc, out, err = self.module.run_command(argv, data=data, environ_update=self.env,
                                               binary_data=data is not None)
        if rc != 0:
            text = (out + err).strip()
            if "password was incorrect" in text:
                raise TrustzoneError("the truststore password does not open the store", store,
                                     fix="set the store's current password, or remove the "
                                         "file so that it is rebuilt")
            raise TrustzoneError("%s failed with exit code %d: %s" % (what, rc, text[-300:]),
                                 store, fix="run keytool on the node to see why")
        return out


def run(module):
    params = module.params
    check = module.check_mode
    path = params["path"]
    if len(params["password"]) < 6:
        raise TrustzoneError("a Java store password needs at least 6 characters", path,
                             fix="use a long random password from Ansible Vault")
    prefix = T.entry_prefix(params["alias_prefix"], params["zone"], "alias_prefix")
    roots = _sources.roots(params["roots"], params["roots_path"])
    if check and module.get_bin_path(params["keytool"]) is None:
        # check mode before the Java runtime is installed: everything would be added
        state = _fs.file_state(path)
        added = [] if state["exists"] or not params["add"] else sorted(
            T.alias_for(prefix, r, params["alias_suffix"]) for r in roots)
        return {"changed": bool(added), "added": added, "removed": [], "kept": [], "path": path,
                "msg": "keytool is not installed yet"}
    keytool = Keytool(module, params["keytool"], params["password"])

    parent = os.path.dirname(path) or "."
    _fs.refuse_symlink(parent)
    if not os.path.isdir(parent):
        raise TrustzoneError("the directory does not exist", parent,
                             fix="create it first, or choose another path")
    state = _fs.file_state(path)
    entries = []
    if state["exists"]:
        listing = T.parse_keytool_list(keytool.run(["-list", "-rfc"], path, what="keytool -list"))
        entries = T.keytool_trusted_entries(listing)
    plan = T.plan_store(entries, roots, prefix, add=params["add"], suffix=params["alias_suffix"])
    if not state["exists"] and not plan["add"]:
        return {"changed": False, "added": [], "removed": [], "kept": [], "path": path}

    uid, gid = (state.get("uid", 0), state.get("gid", 0))
    if params["owner"] is not None or params["group"] is not None:
        uid, gid = _fs.resolve_owner(params["owner"] or "root", params["group"] or "root")
    mode = state.get("mode", 0o644)
    if params["mode"] is not None:
        mode = _parse.parse_mode(params["mode"])

    changed = bool(plan["add"] or plan["remove"])
    if changed and not check:
        rewrite(keytool, path, state["exists"], plan, mode, uid, gid)
    elif state["exists"] and (state["mode"], state["uid"], state["gid"]) != (mode, uid, gid):
        changed = True
        if not check:
            _fs.set_meta(path, mode, uid, gid)
    result = {"changed": changed, "added": sorted(plan["add"]), "removed": plan["remove"],
              "kept": sorted(plan["keep"].values()), "path": path}
    if module._diff:
        lines = ["+ %s\n" % a for a in result["added"]] + ["- %s\n" % r for r in plan["remove"]]
        result["diff"] = listed_diff(lines, "%s (aliases)" % path)
    return result


def rewrite(keytool, path, exists, plan, mode, uid, gid):
    """Apply the plan to a copy in a private directory (0700, root's temporary directory:
    whoever owns the store's directory cannot swap it), then write the copy over the store
    through the file layer."""
    work = tempfile.mkdtemp(prefix="trustzone-keystore-")
    try:
        copy = os.path.join(work, "store")
        if exists:
            with open(copy, "wb") as fh:
                fh.write(_fs.read_file(path, max_bytes=64 * 1024 * 1024))
        for alias in plan["remove"]:
            keytool.run(["-delete", "-alias", alias], copy, what="keytool -delete")
        for alias, cert in sorted(plan["add"].items()):
            args = ["-importcert", "-noprompt", "-alias", alias]
            if not exists:
                args += ["-storetype", "PKCS12"]
            keytool.run(args, copy, data=C.certificate_pem(cert).encode("ascii"),
                        what="keytool -importcert")
            exists = True
        data = _fs.read_file(copy, max_bytes=64 * 1024 * 1024)
        _fs.atomic_write(path, data, mode, uid, gid)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    module = AnsibleModule(**_args.module_args(
        _args.STORE_ROOTS,
        path=dict(type="path", required=True),
        password=dict(type="str", required=True, no_log=True),
        zone=dict(type="str"),
        alias_prefix=dict(type="str"),
        alias_suffix=dict(type="str", default=""),
        add=dict(type="bool", default=True),
        keytool=dict(type="str", default="keytool", no_log=False),
        owner=dict(type="str"),
        group=dict(type="str"),
        mode=dict(type="str"),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
