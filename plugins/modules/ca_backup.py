#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ca_backup
short_description: Write an encrypted, authenticated backup archive of a zone's CA directory
version_added: 0.1.0
description:
  - Runs on the CA host. Reads every regular file under the zone's CA directory (root and
    intermediate keys and certificates, the next root during a rotation, C(rotation.json),
    C(retired/), the ledger, the CRL, whatever else is there) and writes one archive to
    O(dest) on the CA host, mode V(0600). C(playbooks/backup.yml) fetches it to the controller
    and removes it.
  - A symbolic link or special file anywhere in the directory is refused. Leftover temporary
    files of interrupted writes are skipped. SQLite databases are copied through SQLite's
    online backup, and the whole directory is read under the ledger's lock, so no signing or
    revocation run changes it half-way.
  - The archive is encrypted with AES-256-GCM under a key derived from O(passphrase) with
    scrypt, and carries a manifest (zone, root fingerprints, creation time, collection
    version, every file with its mode, size and SHA-256). Private keys stay encrypted with the
    CA passphrase inside it. Nothing secret is returned.
  - With O(ca_passphrase), every key in the directory must open with it and match its
    certificate, so that a backup is never made of keys nobody can open.
  - In check mode the archive is built in memory and nothing is written.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.zone, trustzone.pki.ca, trustzone.pki.attributes]
options:
  dest:
    description:
      - Where to write the archive on the CA host. Its directory must exist; a private
        temporary directory is best.
    type: path
    required: true
  passphrase:
    description:
      - Passphrase the archive is encrypted with (at least 12 characters). Keep it in Ansible
        Vault; without it the archive cannot be restored.
    type: str
    required: true
  ca_passphrase:
    description: The CA passphrase, to check that every key in the directory opens with it.
    type: str
  collection_version:
    description: Version of the collection making the archive, recorded in the manifest.
    type: str
    default: unknown
attributes:
  check_mode:
    description: Builds the archive in memory and writes nothing.
    support: full
requirements:
  - cryptography >= 3.4 on the CA host (Scrypt, AESGCM)
"""

EXAMPLES = r"""
- name: Back up the zone's CA directory
  trustzone.pki.ca_backup:
    zone: prod
    dest: /root/prod.tzbackup
    passphrase: "{{ trustzone_backup_passphrase }}"
    ca_passphrase: "{{ trustzone_ca_passphrase }}"
  register: backup
"""

RETURN = r"""
dest:
  description: Path of the archive on the CA host (not written in check mode).
  returned: success
  type: str
size:
  description: Size of the archive in bytes.
  returned: success
  type: int
sha256:
  description: SHA-256 of the archive, to compare with the copy kept elsewhere.
  returned: success
  type: str
manifest:
  description: What the archive holds (no file contents).
  returned: success
  type: dict
  contains:
    zone:
      description: The zone.
      type: str
    created_at:
      description: When the archive was made, ISO 8601 UTC.
      type: str
    collection_version:
      description: Version of the collection that made it.
      type: str
    roots:
      description: Fingerprints of the current, next and retired roots and of the
        intermediates.
      type: dict
    files:
      description: Every file with path, mode, size and sha256.
      type: list
      elements: dict
not_carried:
  description: What the archive cannot carry, one line each - keys in a PKCS#11 token (not
    exportable; restore onto a CA host that reaches the same token) and offline root keys
    (kept in the controller's offline root store).
  returned: success
  type: list
  elements: str
skipped:
  description: Files left out (leftover temporary files, SQLite journals folded into their
    database's snapshot).
  returned: success
  type: list
  elements: str
"""

import datetime
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _archive as A
from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _catree as T
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger as L
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module


def run(module):
    params = module.params
    zone, path = _args.zone_and_ca_dir(params)
    A.check_passphrase(params["passphrase"])
    if _fs.refuse_symlink(path) is None or not os.path.isdir(path):
        raise TrustzoneError("the CA directory does not exist", path,
                             fix="check trustzone_ca_dir, or run playbooks/site.yml first")
    with L.locked(path):  # no signing or revocation run changes the files meanwhile
        files, skipped, warnings = T.read_tree(path, snapshot_sqlite=True)
    now = _layout.iso(datetime.datetime.now(datetime.timezone.utc))
    manifest = A.make_manifest(zone, files, now, params["collection_version"], ca_dir=path)
    A.check_ca_files(files, params["ca_passphrase"], where="directory")
    data = A.build(manifest, files, params["passphrase"])
    if not module.check_mode:
        _fs.atomic_write(params["dest"], data, 0o600, os.getuid(), os.getgid())
    for warning in warnings:
        module.warn(warning)
    return {
        "changed": True,
        "dest": params["dest"],
        "size": len(data),
        "sha256": A.sha256_hex(data),
        "manifest": A.describe(manifest),
        "skipped": skipped,
        "not_carried": A.not_carried(files),
    }


def main():
    module = AnsibleModule(**_args.module_args(
        _args.ZONE_CA,
        dest=dict(type="path", required=True),
        passphrase=dict(type="str", required=True, no_log=True),
        ca_passphrase=dict(type="str", no_log=True),
        collection_version=dict(type="str", default="unknown"),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
