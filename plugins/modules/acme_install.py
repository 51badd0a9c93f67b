#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: acme_install
short_description: Switch an ACME certificate's key, certificate and chains as one unit
version_added: 0.1.0
description:
  - Used by the P(trustzone.pki.acme#role) role. In O(dir), the new key is staged as
    C(privkey.pem.next) and the new C(cert.pem), C(chain.pem), C(fullchain.pem) and
    C(state.json) as C(<name>.new). V(installed) checks that the staged key matches the staged
    certificate and that C(fullchain.pem.new) starts with it, gives every staged file its
    owner and mode (on its descriptor) and flushes it, writes the commit marker
    C(.install.json), then renames key, certificate, chain, full chain and state into place
    through the collection's file layer (links refused, directory fsynced) and removes the
    marker.
  - V(recovered) (the role runs it before it inspects a certificate) finishes an install that
    a crash interrupted after the commit marker was written. Before the marker nothing was
    renamed, so the old files are whole; after it every staged file is complete on disk.
    Either way the next run finds the old pair or the new pair, complete, and never orders a
    certificate again because of a torn install.
  - Why renames in order and not one rename of a directory or a link? Web servers and the
    P(trustzone.pki.proxy#role) role name the files by their paths, the collection refuses
    symlinks wherever it reads or writes (a link is what a hostile service user would plant),
    and nginx reads key and certificate only when it is reloaded, which the role does after
    this task. The commit marker makes the five renames one unit across crashes.
  - V(assessed) reads and changes nothing. It says why the certificate in O(dir) must be
    requested again (RV(reasons), empty when it is fine) - no readable certificate, inside its
    renewal window (the last O(renew_fraction) of its lifetime, or fewer than
    O(renew_before_days) days left when that is set), other names than O(domains), no readable
    key, a key that does not match or is not the type asked for, another ACME directory than
    O(directory) or another O(profile) in C(state.json), or the CA's renewal information
    (O(renewal_info)) asking for renewal. It is the collection's renewal assessment, the one
    the P(trustzone.pki.node#module) module applies to zone certificates.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.attributes]
options:
  dir:
    description: The certificate's directory (C(<trustzone_acme_dir>/<name>)).
    type: path
    required: true
  state:
    description:
      - V(installed) switches to the staged files; V(recovered) only finishes an interrupted
        switch; V(assessed) only says why a certificate must be requested.
    type: str
    choices: [installed, recovered, assessed]
    default: installed
  domains:
    description: With V(assessed), the names the certificate must hold.
    type: list
    elements: str
    default: []
  key_type:
    description: With V(assessed), the key type the certificate's key must have.
    type: str
    choices: [ec, rsa]
    default: ec
  key_curve:
    description: With V(assessed), the curve of an V(ec) key.
    type: str
    default: secp256r1
  key_size:
    description: With V(assessed), the size of an V(rsa) key.
    type: int
    default: 3072
  renew_before_days:
    description:
      - With V(assessed), renew when fewer than this many days are left.
      - When set, it wins over O(renew_fraction).
    type: int
  renew_fraction:
    description:
      - With V(assessed) and no O(renew_before_days), renew in the last this much of the
        certificate's lifetime (more than 0, less than 1; a third when not set).
    type: float
  renewal_info:
    description:
      - With V(assessed), the result of M(community.crypto.acme_certificate_renewal_info) for
        the certificate, or empty. A renewal that the CA's renewal information (RFC 9773) asks
        for is a reason; the module's other rules are not used.
    type: dict
    default: {}
  profile:
    description: With V(assessed), the ACME profile in use; a certificate issued for another one is renewed.
    type: str
    default: ""
  directory:
    description: With V(assessed), the ACME directory in use; a certificate another one issued is renewed.
    type: str
    default: ""
  key_group:
    description: Group of the key (owner root).
    type: str
    default: root
  key_mode:
    description: Mode of the key.
    type: str
    default: "0600"
attributes:
  check_mode:
    description: Nothing is written; the result says what would be installed or finished.
    support: full
requirements:
  - cryptography on the host
"""

EXAMPLES = r"""
- name: Install the key and certificate together
  trustzone.pki.acme_install:
    dir: /etc/trustzone-acme/www

- name: Say why the certificate must be requested again
  trustzone.pki.acme_install:
    dir: /etc/trustzone-acme/www
    state: assessed
    domains: [www.example.org]
    renew_fraction: 0.3333
    directory: https://acme-v02.api.letsencrypt.org/directory
  register: assessed
"""

RETURN = r"""
files:
  description: Files moved into place.
  returned: always
  type: list
  elements: str
reasons:
  description: Why the certificate must be requested again; empty when it is fine.
  returned: when O(state=assessed)
  type: list
  elements: str
"""

import datetime
import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _acme
from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _backend as B
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _switch as I
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module

MARKER = ".install.json"
# (final name, staged name), in the order they are renamed: the key first, the state last.
FILES = (("privkey.pem", "privkey.pem.next"), ("cert.pem", "cert.pem.new"),
         ("chain.pem", "chain.pem.new"), ("fullchain.pem", "fullchain.pem.new"),
         ("state.json", "state.json.new"))


def validate(directory):
    """The staged set is one identity: key matches certificate, full chain starts with it."""
    def read(name, required=True):
        path = os.path.join(directory, name)
        data = _fs.read_file(path)
        if data is None and required:
            raise TrustzoneError("the staged file is missing", path,
                                 fix="re-run the play: the role orders a new certificate")
        return data, path

    key_data, key_path = read("privkey.pem.next")
    cert_data, cert_path = read("cert.pem.new")
    full_data, full_path = read("fullchain.pem.new")
    key = C.load_private_key(key_data, path=key_path)
    cert = C.load_certificate(cert_data, path=cert_path)
    if not C.same_public_key(key, cert):
        raise TrustzoneError("the staged key does not match the staged certificate", cert_path,
                             fix="re-run the play: the role orders a new certificate")
    first = C.load_certificates(full_data, path=full_path)[0]
    if C.fingerprint(first) != C.fingerprint(cert):
        raise TrustzoneError("the staged full chain does not start with the staged "
                             "certificate", full_path, fix="re-run the play")
    return cert


def finish(directory, check):
    moved = []
    for final, staged in FILES:
        src = os.path.join(directory, staged)
        if _fs.file_state(src)["exists"]:
            moved.append(os.path.join(directory, final))
            if not check:
                _fs.atomic_rename(src, os.path.join(directory, final))
    if not check:
        _fs.remove(os.path.join(directory, MARKER))
    return moved


def assess(directory, params, now):
    """Why the certificate in ``directory`` must be requested again (``_acme``)."""
    if _fs.refuse_symlink(directory) is None:
        loaded = {"key": None, "key_error": None, "cert": None, "cert_error": None,
                  "chain": []}
    else:
        loaded = B.load(os.path.join(directory, "cert.pem"),
                        os.path.join(directory, "privkey.pem"), None)
    state, _error = B.read(os.path.join(directory, "state.json"), _json)
    spec = B.acme_key_spec(params["key_type"], params["key_curve"], params["key_size"])
    return _acme.reasons(loaded, params["domains"], spec, params["directory"], state or {}, now,
                         fraction=params.get("renew_fraction"),
                         before_days=params.get("renew_before_days"),
                         renewal_info=params.get("renewal_info") or {},
                         profile=params.get("profile") or "")


def _json(data, path):
    try:
        value = json.loads(data)
    except ValueError:
        raise TrustzoneError("is not JSON", path) from None
    return value if isinstance(value, dict) else {}


def run(module):
    params = module.params
    directory = params["dir"].rstrip("/") or "/"
    check = module.check_mode
    marker = os.path.join(directory, MARKER)
    if params["state"] == "assessed":
        return {"changed": False, "files": [],
                "reasons": assess(directory, params,
                                  datetime.datetime.now(datetime.timezone.utc))}
    if _fs.refuse_symlink(directory) is None:
        if params["state"] == "recovered":
            return {"changed": False, "files": []}
        raise TrustzoneError("the directory does not exist", directory)
    if params["state"] == "recovered":
        if not _fs.file_state(marker)["exists"]:
            return {"changed": False, "files": []}
        moved = finish(directory, check)
        return {"changed": True, "files": moved + [marker], "msg": "finished an interrupted "
                "install"}
    cert = validate(directory)
    key_mode = _parse.parse_mode(params["key_mode"], "key_mode")
    _uid, key_gid = _fs.resolve_owner("root", params["key_group"])
    if not check:
        for final, staged in FILES:
            path = os.path.join(directory, staged)
            if not _fs.file_state(path)["exists"]:
                continue
            if final == "privkey.pem":
                _fs.set_meta(path, key_mode, 0, key_gid)
            else:
                _fs.set_meta(path, 0o644, 0, 0)
            _fs.fsync_file(path)
        _fs.atomic_write(marker, json.dumps({"certificate": C.fingerprint(cert),
                                             "key": I.key_tag(cert)}) + "\n", 0o600, 0, 0)
    return {"changed": True, "files": finish(directory, check)}


def main():
    module = AnsibleModule(**_args.module_args(
        dir=dict(type="path", required=True),
        state=dict(type="str", choices=["installed", "recovered", "assessed"],
                   default="installed"),
        key_group=dict(type="str", default="root", no_log=False),
        key_mode=dict(type="str", default="0600", no_log=False),
        domains=dict(type="list", elements="str", default=[]),
        key_type=dict(type="str", choices=["ec", "rsa"], default="ec", no_log=False),
        key_curve=dict(type="str", default="secp256r1", no_log=False),
        key_size=dict(type="int", default=3072, no_log=False),
        renew_before_days=dict(type="int"),
        renew_fraction=dict(type="float"),
        renewal_info=dict(type="dict", default={}),
        profile=dict(type="str", default=""),
        directory=dict(type="str", default=""),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
