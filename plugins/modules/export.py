#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: export
short_description: Export a node identity as a PKCS#12 bundle or a set of PEM files
version_added: 0.1.0
description:
  - Copies one of the node's zone identities (key, certificate, intermediates, zone root) into
    the form a consumer wants, on the node itself; the key never leaves the node.
  - V(pkcs12) writes one passphrase-protected PKCS#12 (PFX) bundle - for Windows and Qlik
    imports, and as a Java keystore (Java reads PKCS#12 keystores; the friendly name is the
    alias).
  - V(pem) writes a set of PEM files named as the consumer expects, for example QlikView's
    C(root.pem), C(server.pem) and C(server_key.pem).
  - A file is rewritten only when its decoded contents would change - key, certificates and
    their order, friendly name, encryption scheme, passphrase - never because PKCS#12 output is
    randomised. Writes are atomic; symbolic links are refused.
  - Key material never appears in the module's result or diff.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.files, trustzone.pki.store]
options:
  format:
    description: What to write.
    type: str
    required: true
    choices: [pkcs12, pem]
  cert_path:
    description: The identity's certificate on the node (for example
      C(/etc/trustzone/prod/server.crt)).
    type: path
    required: true
  key_path:
    description: The identity's private key on the node.
    type: path
    required: true
  chain_path:
    description: The identity's full chain (certificate first); its other certificates are the
      intermediates. Optional.
    type: path
  path:
    description: The PKCS#12 file (O(format=pkcs12)).
    type: path
  passphrase:
    description: Passphrase of the PKCS#12 file, at least 12 characters (O(format=pkcs12)).
      A Java keystore uses it as store and key password.
    type: str
  encryption:
    description:
      - V(modern) - PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, HMAC-SHA256 MAC (OpenSSL 3,
        Java 17, NSS, Windows Server 2019 and later).
      - V(legacy) - 3DES with SHA-1 and a SHA-1 MAC, for Windows Server 2016 and older and
        other old importers.
    type: str
    choices: [modern, legacy]
    default: modern
  friendly_name:
    description: Friendly name of the key and certificate (the Java alias, the name Windows
      shows). Default - the certificate file's name without its extension.
    type: str
  include_chain:
    description: Put the intermediates in the PKCS#12 bundle.
    type: bool
    default: true
  include_root:
    description: Put the zone root the certificate chains to in the PKCS#12 bundle.
    type: bool
    default: true
  dir:
    description: Directory of the PEM set (O(format=pem)); created (one level) if missing.
    type: path
  files:
    description:
      - The PEM set (O(format=pem)) - file name (in O(dir)) to kind. Kinds - V(cert), V(key),
        V(fullchain) (certificate and intermediates), V(root) (the root the certificate chains
        to), V(roots) (every current zone root), V(combined) (key, certificate,
        intermediates).
    type: dict
  key_passphrase:
    description: Encrypt the private key in a PEM set with this passphrase (PKCS#8). Default -
      unencrypted, protected by its file mode.
    type: str
  mode:
    description: Mode of a PKCS#12 file (default V(0600)) or of the PEM files without a key
      (default V(0644)).
    type: str
  key_mode:
    description: Mode of the PEM files that hold the key. Never world-accessible.
    type: str
    default: "0600"
attributes:
  check_mode:
    description: Plans every file and writes nothing; sources that do not exist yet (a node
      joining in the same run) are reported as a change.
    support: full
  diff_mode:
    description: Lists each file it writes (or would write) and why.
    support: full
requirements:
  - cryptography >= 38.0 on the node
"""

EXAMPLES = r"""
- name: A PFX of the server identity for a Windows import
  trustzone.pki.export:
    format: pkcs12
    cert_path: /etc/trustzone/prod/server.crt
    key_path: /etc/trustzone/prod/server.key
    chain_path: /etc/trustzone/prod/server-fullchain.pem
    roots_path: /etc/trustzone/prod/roots.pem
    path: /etc/trustzone/prod/server-legacy.pfx
    passphrase: "{{ vault_pfx_passphrase }}"
    encryption: legacy

- name: QlikView's PEM layout
  trustzone.pki.export:
    format: pem
    cert_path: /etc/trustzone/prod/server.crt
    key_path: /etc/trustzone/prod/server.key
    roots_path: /etc/trustzone/prod/roots.pem
    dir: /opt/qlikview/certs
    files:
      root.pem: roots
      server.pem: cert
      server_key.pem: key
"""

RETURN = r"""
files:
  description: Files written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
reasons:
  description: Per file written, why (V(missing), V(unreadable), V(key), V(certificate),
    V(ca_certificates), V(friendly_name), V(encryption) for PKCS#12; V(missing),
    V(unreadable), V(content), V(key_encryption) for PEM files).
  returned: always
  type: dict
certificate:
  description: SHA-256 fingerprint and end of validity of the exported certificate.
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _export as E
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _pkcs12 as PK
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils import _sources
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import listed_diff, run_module


class Exporter:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.files = []
        self.reasons = {}
        self.changed = False
        self.uid, self.gid = _fs.resolve_owner(self.params["owner"], self.params["group"])

    def private_mode(self, value, what):
        mode = _parse.parse_mode(value, what)
        if mode & 0o007:
            raise TrustzoneError("%s %s would let every user read a private key" % (what, value),
                                 fix="use a mode without permissions for others, e.g. 0600 "
                                     "or 0640 with a group")
        return mode

    def write(self, path, data, mode, reasons):
        self.changed = True
        self.files.append(path)
        self.reasons[path] = reasons
        if not self.check:
            _fs.atomic_write(path, data, mode, self.uid, self.gid)

    def ensure_meta(self, path, mode):
        st = _fs.file_state(path)
        if st["exists"] and (st["mode"], st["uid"], st["gid"]) != (mode, self.uid, self.gid):
            self.changed = True
            self.files.append(path)
            self.reasons[path] = ["metadata"]
            if not self.check:
                _fs.set_meta(path, mode, self.uid, self.gid)

    def parent_exists(self, path):
        parent = os.path.dirname(path) or "."
        _fs.refuse_symlink(parent)
        if not os.path.isdir(parent):
            raise TrustzoneError("the directory does not exist", parent,
                                 fix="create it first, or choose another path")

    # ------------------------------------------------------------------ pkcs12
    def pkcs12(self, key, cert, intermediates, root):
        params = self.params
        path = params["path"]
        passphrase = params["passphrase"] or ""
        if len(passphrase) < PK.MIN_PASSPHRASE:
            raise TrustzoneError("the PKCS#12 passphrase must have at least %d characters"
                                 % PK.MIN_PASSPHRASE, path,
                                 fix="use a long random passphrase from Ansible Vault (the "
                                     "bundle's MAC is computed with one KDF iteration)")
        mode = self.private_mode(params["mode"] or "0600", "mode")
        name = params["friendly_name"]
        if not name:
            name = os.path.splitext(os.path.basename(params["cert_path"]))[0]
        cas = list(intermediates) if params["include_chain"] else []
        if params["include_root"]:
            cas.append(root)
        self.parent_exists(path)
        existing = _fs.read_file(path)
        wanted = PK.contents(key, cert, cas, name)
        reasons = PK.assess(existing, passphrase, wanted, params["encryption"])
        if reasons:
            data = PK.build(key, cert, cas, name, passphrase, params["encryption"])
            self.write(path, data, mode, reasons)
        else:
            self.ensure_meta(path, mode)

    # ------------------------------------------------------------------ pem
    def pem(self, key, cert, intermediates, root, roots):
        params = self.params
        directory = params["dir"]
        files = params["files"] or {}
        mode = _parse.parse_mode(params["mode"] or "0644", "mode")
        key_mode = self.private_mode(params["key_mode"], "key_mode")
        passphrase = params["key_passphrase"]
        texts = E.pem_set(files, key, cert, intermediates, root, roots, passphrase)
        _fs.refuse_symlink(directory)
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise TrustzoneError("exists and is not a directory", directory,
                                 fix="move the file away or choose another directory")
        if not os.path.isdir(directory):  # an existing directory is left as it is
            self.changed = True
            self.files.append(directory.rstrip("/") + "/")
            if not self.check:
                _fs.ensure_dir(directory, 0o755, self.uid, self.gid)
        for name, text in sorted(texts.items()):
            path = os.path.join(directory, name)
            file_mode = key_mode if files[name] in E.KEY_KINDS else mode
            existing = None if self.check and not os.path.isdir(directory) else \
                _fs.read_file(path)
            reason = E.pem_reason(existing, text, passphrase)
            if reason:
                self.write(path, text, file_mode, [reason])
            else:
                self.ensure_meta(path, file_mode)


def run(module):
    params = module.params
    exporter = Exporter(module)
    roots = _sources.roots(params["roots"], params["roots_path"])
    key, cert, chain = _sources.identity(params["cert_path"], params["key_path"],
                                         params["chain_path"])
    intermediates, root = E.identity_chain(key, cert, chain, roots, where=params["cert_path"])
    if params["format"] == "pkcs12":
        exporter.pkcs12(key, cert, intermediates, root)
    else:
        exporter.pem(key, cert, intermediates, root, roots)
    end = C.not_after(cert)
    result = {
        "changed": exporter.changed,
        "files": exporter.files,
        "reasons": exporter.reasons,
        "certificate": {"fingerprint": C.fingerprint(cert),
                        "not_after": _layout.iso(end)},
    }
    if module._diff:
        lines = ["write %s (%s)\n" % (path, ", ".join(exporter.reasons.get(path, [])))
                 for path in exporter.files]
        result["diff"] = listed_diff(lines, "exports on this node")
    return result


def main():
    module = AnsibleModule(**_args.module_args(
        _args.STORE_ROOTS, _args.OWNER_GROUP,
        format=dict(type="str", required=True, choices=["pkcs12", "pem"]),
        cert_path=dict(type="path", required=True),
        key_path=dict(type="path", required=True, no_log=False),
        chain_path=dict(type="path"),
        path=dict(type="path"),
        passphrase=dict(type="str", no_log=True),
        encryption=dict(type="str", default="modern", choices=["modern", "legacy"]),
        friendly_name=dict(type="str"),
        include_chain=dict(type="bool", default=True),
        include_root=dict(type="bool", default=True),
        dir=dict(type="path"),
        files=dict(type="dict"),
        key_passphrase=dict(type="str", no_log=True),
        mode=dict(type="str"),
        key_mode=dict(type="str", default="0600", no_log=False),
        required_if=[
            ("format", "pkcs12", ("path", "passphrase")),
            ("format", "pem", ("dir", "files")),
        ],
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
