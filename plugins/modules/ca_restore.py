#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ca_restore
short_description: Restore a zone's CA directory from an encrypted backup archive
version_added: 0.1.0
description:
  - Runs on the CA host. Verifies and decrypts an archive made by M(trustzone.pki.ca_backup)
    and writes every file it holds, with its mode, into the zone's CA directory.
  - Before anything is written the archive must be intact (a truncated, damaged or altered
    archive is refused, each with its own message), open with O(passphrase), belong to
    O(zone), and (with O(ca_passphrase)) every key in it must open with the CA passphrase and
    match its certificate.
  - The directory must be missing or empty. One that already holds exactly the archive's
    files is left alone (a re-run changes nothing). Anything else - another root, or the same
    root with other files (restoring would roll the ledger back) - is refused unless
    O(force); then the current directory is moved aside to
    C(<dir>.replaced-<UTC time>) and kept.
  - A directory restored from this very archive before (noted in
    C(<parent>/.<name>.from-archive) beside it) whose root is still the archive's counts as
    restored, forced or not - the learning that follows a restore
    (M(trustzone.pki.ledger_learn), new CRLs) changes its ledger, and running
    C(playbooks/restore.yml) again after it stopped must not roll that back.
  - Until M(trustzone.pki.ledger_learn) ran on the restored directory, the note says
    C(learning-pending) and the zone signs no CRL from it (a CRL signed from a ledger that
    knows only the archive would drop the revocations made after the backup).
  - The files are written into a new directory beside the target and put in place in one
    step (renamed over a missing or empty directory; with O(force) swapped with the current
    one by C(renameat2(RENAME_EXCHANGE))), so an interrupted restore leaves the old directory
    or the whole restored one, never a mix. The next run finishes what an interrupted one
    left beside the directory (see RV(recovered)).
author: trustzone.pki maintainers (!UNKNOWN)
options:
  zone:
    description: Name of the trust zone; the archive must be a backup of this zone.
    type: str
    required: true
  dir:
    description: The zone's CA directory. Defaults to C(/var/lib/trustzone/<zone>).
    type: path
  src:
    description: Path of the archive on the CA host.
    type: path
    required: true
  src_name:
    description: How to name the archive in messages (its path on the controller). Defaults
      to O(src).
    type: str
  passphrase:
    description: Passphrase the archive was encrypted with.
    type: str
    required: true
  ca_passphrase:
    description: The CA passphrase, to check that the restored keys will open with it.
    type: str
  force:
    description: Restore over a CA directory that holds something else (it is kept aside).
    type: bool
    default: false
  owner:
    description: Owner of the restored directory and files.
    type: str
    default: root
  group:
    description: Group of the restored directory and files.
    type: str
    default: root
attributes:
  check_mode:
    description: Verifies and decrypts the archive and says what would be written; writes
      nothing.
    support: full
  diff_mode:
    description: Lists the files (path, mode, SHA-256) before and after.
    support: full
requirements:
  - cryptography >= 3.4 on the CA host (Scrypt, AESGCM)
"""

EXAMPLES = r"""
- name: Restore the zone's CA directory
  trustzone.pki.ca_restore:
    zone: prod
    src: /root/prod-20260101T000000Z.tzbackup
    passphrase: "{{ trustzone_backup_passphrase }}"
    ca_passphrase: "{{ trustzone_ca_passphrase }}"
"""

RETURN = r"""
action:
  description: V(create) (restored into an empty directory), V(replace) (forced over another
    one, kept in RV(replaced)) or V(none) (already restored).
  returned: success
  type: str
reason:
  description: Why, in words.
  returned: success
  type: str
replaced:
  description: Where the directory that was replaced now is, or null.
  returned: success
  type: str
recovered:
  description: What an interrupted earlier restore had left beside the directory and this
    run finished, one line each - C(keep <path> -> <dir>.replaced-<UTC time>) (the directory
    a forced restore had swapped out, kept) or C(remove <path>) (a new tree that never got
    in place). In check mode, what would be done.
  returned: success
  type: list
  elements: str
dir:
  description: The CA directory.
  returned: success
  type: str
archive:
  description: What the archive holds (zone, created_at, collection_version, roots, files);
    no file contents.
  returned: success
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _archive as A
from ansible_collections.trustzone.pki.plugins.module_utils import _catree as T
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module

MAX_ARCHIVE = 1024 * 1024 * 1024


def _listing(files):
    return "".join("%s %04o %s\n" % (p, files[p][0], A.sha256_hex(files[p][1])[:16])
                   for p in sorted(files))


def existing_files(path):
    """{path: (mode, bytes)} of the CA directory, or None when it is missing or empty."""
    st = _fs.refuse_symlink(path)
    if st is None:
        return None
    # SQLite databases are compared as snapshots, the form the archive holds them in
    files, skipped, _warnings = T.read_tree(path, snapshot_sqlite=True)
    if not files and not skipped and not _has_entries(path):
        return None
    for name in skipped:  # leftovers count as content: the directory is not empty
        files.setdefault(name, (0, b""))
    return files


def _root_of(existing):
    """SHA-256 fingerprint of the root in force in ``existing`` ({path: (mode, bytes)})."""
    data = A.CA.logical_files(existing).get("root.crt")
    if data is None:
        return None
    try:
        return C.fingerprint(C.load_certificate(data[1]))
    except TrustzoneError:
        return None


def _has_entries(path):
    for _root, dirs, names in os.walk(path):
        if dirs or names:
            return True
    return False


def run(module):
    params = module.params
    zone = _parse.validate_name(params["zone"], "zone name")
    path = (params["dir"] or "/var/lib/trustzone/%s" % zone).rstrip("/")
    uid, gid = _fs.resolve_owner(params["owner"], params["group"])
    name = params["src_name"] or params["src"]
    data = _fs.read_file(params["src"], max_bytes=MAX_ARCHIVE)
    if data is None:
        raise TrustzoneError("the archive does not exist", name,
                             fix="set trustzone_backup_src to the .tzbackup file to restore")
    try:
        manifest, files = A.open_archive(data, params["passphrase"])
    except A.ArchiveError as exc:
        raise type(exc)("refusing to restore: " + exc.message, exc.path or name,
                        fix=exc.fix) from None
    A.check_ca_files(files, params["ca_passphrase"])
    # an interrupted earlier restore is finished first: the directory it swapped out is kept
    # under its .replaced- name, a new tree that never got in place is removed
    if module.check_mode:
        recovered = T.interrupted(path)
    else:
        recovered = T.recover(path)
    existing = existing_files(path)
    digest = "sha256:" + A.sha256_hex(data)
    if existing and T.restored_from(path) == digest and _root_of(existing) == (
            manifest.get("roots") or {}).get("current"):
        # restored from this very archive before, then changed by the learning that follows a
        # restore (ledger_learn, CRLs): the restore is done, rolling back would lose that
        plan = {"action": "none", "reason": "the CA directory was restored from this archive; "
                                            "what it learned since is kept"}
    else:
        plan = A.plan_restore(manifest, files, existing, zone, force=params["force"],
                              target=path)
    replaced = next((dest for action, _p, dest in recovered if action == "keep"), None)
    if plan["action"] == "none":
        # the same files: only the directory's own mode and owner may need fixing
        changed = _fs.ensure_dir(path, 0o700, uid, gid, check_mode=module.check_mode)
        changed = changed or bool(recovered)
    else:
        changed = True
        if not module.check_mode:
            replaced = T.write_tree(path, files, uid, gid,
                                    replace=plan["action"] == "replace") or replaced
    if T.restored_from(path) != digest:
        # restored just now (or by a run that stopped before this note): the fleet has not
        # taught it anything yet - no CRL is signed from it until ledger_learn ran
        changed = True
        if not module.check_mode:
            T.mark_restored(path, digest, uid, gid, pending=True)
    result = {
        "changed": changed,
        "action": plan["action"],
        "reason": plan["reason"],
        "replaced": replaced,
        "recovered": ["%s %s" % (action, p) + (" -> %s" % dest if dest else "")
                      for action, p, dest in recovered],
        "dir": path,
        "archive": A.describe(manifest),
    }
    if module._diff:
        result["diff"] = {"before": _listing(existing or {}), "after": _listing(files),
                          "before_header": path, "after_header": name}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            zone=dict(type="str", required=True),
            dir=dict(type="path"),
            src=dict(type="path", required=True),
            src_name=dict(type="str"),
            passphrase=dict(type="str", required=True, no_log=True),
            ca_passphrase=dict(type="str", no_log=True),
            force=dict(type="bool", default=False),
            owner=dict(type="str", default="root"),
            group=dict(type="str", default="root"),
        ),
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
