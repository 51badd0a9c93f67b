#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nss_trust
short_description: Make an NSS database trust exactly the zone's current roots
version_added: 0.1.0
description:
  - Adds the zone's current roots to an NSS certificate database (C(cert9.db), as used by
    Firefox, Chromium on Linux, curl built with NSS and other NSS clients) with the trust
    flags given, fixes the flags of roots already there, and deletes the entries whose
    nickname carries O(nickname_prefix) but whose certificate is no longer a current root.
    Other entries are never touched.
  - A root already in the database under any nickname counts as present (NSS keeps one entry
    per certificate); only its trust flags are set.
  - Creates the database (empty password) when it does not exist and O(create) is true.
  - Keeps the CRLs of those roots in the database (C(crlutil)), so that NSS verifiers
    (C(vfychain), C(tstclnt), applications using NSS's default certificate verification)
    refuse certificates the zone revoked. For each current root the newest CRL it signed
    in O(crls) or O(crl_path) is imported when the database holds none or an older one (a
    lower CRL number); a newer one already there is kept; the CRL of a root that leaves the
    database, or that no longer has a CRL, is deleted.
  - Does the same for the zone's intermediate CAs, whose CRLs cover the leaves they sign.
    NSS imports a CRL only when its issuer's certificate is in the database, so each
    intermediate that chains up to a current root and has a CRL in O(crls) or O(crl_path) is
    added B(untrusted) (trust flags C(,,) - trust still comes from the root only) as
    C(<nickname_prefix><16 hex>-intermediate), then its CRL is imported. The intermediates
    are taken from O(intermediates), O(chain_dir) and the database's own entries of that
    name, so a replaced intermediate stays while the zone still publishes its CRL. An
    intermediate of the zone without a CRL any more (its leaves expired, or its root was
    retired) is deleted, its CRL first; a zone intermediate entry given other trust flags
    gets C(,,) again.
  - Uses C(certutil) from the NSS tools (Debian C(libnss3-tools), RHEL C(nss-tools)). No
    Ansible module manages NSS databases.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.store]
options:
  db:
    description: Directory of the NSS database (an optional C(sql:) prefix is accepted).
    type: str
    required: true
  trust:
    description:
      - Trust flags for the roots, C(certutil -t) syntax - three fields (TLS, S/MIME, code
        signing). V(C) trusts the CA to issue server certificates, V(T) to issue client
        certificates.
    type: str
    default: "CT,,"
  zone:
    description: Name of the zone; the default O(nickname_prefix) is C(trustzone-<zone>-).
    type: str
  nickname_prefix:
    description: Nicknames with this prefix belong to the zone.
    type: str
  crls:
    description: PEM CRLs of the zone. Default - read O(crl_path).
    type: list
    elements: str
  crl_path:
    description:
      - The zone's CRLs on the node (C(crl.pem), written by the trust role). A missing file
        means the zone publishes no CRL, and the roots' CRLs are deleted from the database.
      - When neither O(crls) nor O(crl_path) is given, the database's CRLs are not touched.
    type: path
  intermediates:
    description:
      - PEM certificates that may be the zone's intermediate CAs (see the description). Only
        CA certificates that chain up to a current root are used; others are ignored.
      - Used only when CRLs are managed (O(crls) or O(crl_path)).
    type: list
    elements: str
  chain_dir:
    description:
      - A directory whose C(*-fullchain.pem) files (the node's identities, written by the
        certs role - the certificate, then its intermediates) give the intermediates, as
        O(intermediates) does. Used only when CRLs are managed.
    type: path
  crlutil:
    description: The C(crlutil) command (NSS tools).
    type: str
    default: crlutil
  create:
    description: Create the directory (one level) and an empty database when missing.
    type: bool
    default: true
  certutil:
    description: The C(certutil) command.
    type: str
    default: certutil
  owner:
    description: Owner of the database files (and of a directory this module creates).
      Default - unchanged (C(root) when created).
    type: str
  group:
    description: Group of the database files. Default - unchanged (C(root) when created).
    type: str
  mode:
    description: Mode of the database files C(cert9.db), C(key4.db), C(pkcs11.txt). Default -
      unchanged (NSS creates them V(0600)).
    type: str
attributes:
  check_mode:
    description: Lists the database and reports what it would add, remove and re-flag, and
      which CRLs it would import and delete; before the NSS tools are installed, reports
      every root, intermediate and CRL as to be added.
    support: full
  diff_mode:
    description: Lists the nicknames added, removed and re-flagged (intermediates marked as
      such), and the CRLs imported and deleted.
    support: full
requirements:
  - certutil and crlutil (NSS tools) and cryptography >= 3.4 on the node
"""

EXAMPLES = r"""
- name: The zone's roots in the system NSS database
  trustzone.pki.nss_trust:
    db: /etc/pki/nssdb
    zone: prod
    roots_path: /etc/trustzone/prod/roots.pem
    crl_path: /etc/trustzone/prod/crl.pem
    chain_dir: /etc/trustzone/prod
    trust: "CT,,"
    mode: "0644"
"""

RETURN = r"""
added:
  description: Nicknames added.
  returned: always
  type: list
  elements: str
removed:
  description: Nicknames removed (retired roots of the zone).
  returned: always
  type: list
  elements: str
retrusted:
  description: Nicknames whose trust flags were set.
  returned: always
  type: list
  elements: str
intermediates_added:
  description: Nicknames of the zone's intermediate CAs added (untrusted) to hold their CRLs.
  returned: always
  type: list
  elements: str
intermediates_removed:
  description: Nicknames of the zone's intermediate CAs removed (no CRL published any more).
  returned: always
  type: list
  elements: str
crls_imported:
  description: Nicknames of the roots and intermediates whose CRL was imported (new or newer).
  returned: always
  type: list
  elements: str
crls_deleted:
  description: Nicknames of the roots and intermediates whose CRL was deleted.
  returned: always
  type: list
  elements: str
created:
  description: Whether the database was created.
  returned: always
  type: bool
"""

import os
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

DB_FILES = ("cert9.db", "key4.db", "pkcs11.txt")
CHAIN_SUFFIX = "-fullchain.pem"  # a node's identity chains (certs role): leaf, intermediates
NO_PLAN = {"add": {}, "remove": [], "keep": {}, "retrust": [], "crls": {}}


class Certutil:
    tool = "certutil"

    def __init__(self, module, command, directory):
        self.module = module
        self.command = module.get_bin_path(command, required=False) or command
        if not os.path.isabs(self.command):
            raise TrustzoneError("%s not found (%s)" % (self.tool, command),
                                 fix="install the NSS tools (Debian libnss3-tools, RHEL "
                                     "nss-tools); the stores role does when "
                                     "trustzone_stores_nss_install is true")
        self.directory = directory
        self.db = "sql:%s" % directory

    def run(self, args, data=None, check_rc=True):
        argv = [self.command] + args + ["-d", self.db]
        rc, out, err = self.module.run_command(argv, data=data, binary_data=data is not None,
                                               environ_update={"LC_ALL": "C", "LANG": "C"})
        if check_rc and rc != 0:
            raise TrustzoneError("%s %s failed with exit code %d: %s" % (
                self.tool, args[0], rc, (err or out).strip()[-300:]), self.directory,
                fix="run %s -L -d %s on the node to see why" % (self.tool, self.db))
        return (rc, out, err) if self.tool == "crlutil" else (rc, out)

    def nicknames(self):
        return T.parse_certutil_list(self.run(["-L"])[1])

    def certificates(self, nickname):
        rc, out = self.run(["-L", "-n", nickname, "-a"], check_rc=False)
        if rc != 0:
            return []
        return C.load_certificates(out, path=nickname)

    def fingerprints(self, nickname):
        return [C.fingerprint(c) for c in self.certificates(nickname)]


class Crlutil(Certutil):
    tool = "crlutil"

    def number(self, nickname):
        """The CRL number of the CRL held for the root ``nickname``; None when it has none."""
        rc, out, err = self.run(["-L", "-n", nickname], check_rc=False)
        if rc != 0:
            if "SEC_ERROR_CRL_NOT_FOUND" in (err + out):
                return None
            raise TrustzoneError("crlutil -L -n %s failed with exit code %d: %s" % (
                nickname, rc, (err or out).strip()[-300:]), self.directory,
                fix="run crlutil -L -d %s on the node to see why" % self.db)
        return T.parse_crlutil_crl(out)

    def load(self, nickname, crl):
        """Import ``crl`` (NSS checks its signature with the root ``nickname``)."""
        fd, path = tempfile.mkstemp(prefix="crl-", suffix=".der", dir=self.module.tmpdir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(crl.public_bytes(C.serialization.Encoding.DER))
            rc, out, err = self.run(["-I", "-i", path], check_rc=False)
            if rc != 0 and "SEC_ERROR_OLD_CRL" in (err + out):
                # a higher CRL number with a this-update no later than the one there (NSS
                # compares dates only): replace it
                self.run(["-D", "-n", nickname])
                rc, out, err = self.run(["-I", "-i", path], check_rc=False)
            if rc != 0:
                raise TrustzoneError("crlutil -I failed for the CRL of %s with exit code %d: %s"
                                     % (nickname, rc, (err or out).strip()[-300:]),
                                     self.directory,
                                     fix="check that the CRLs given (crl_path, written by "
                                         "the trust role) are the zone's")
        finally:
            os.unlink(path)


def wanted_crls(params):
    """The zone's CRLs from the parameters, or None when CRLs are not managed."""
    if params["crls"] is not None:
        found = []
        for index, pem in enumerate(params["crls"]):
            found.extend(C.load_crls(pem, path="crls[%d]" % index))
        return found
    if params["crl_path"]:
        data = _fs.read_file(params["crl_path"])
        return [] if data is None else C.load_crls(data, path=params["crl_path"])
    return None


def chain_certificates(params):
    """Certificates that may be the zone's intermediates: O(intermediates), and every
    certificate after the first of each ``*-fullchain.pem`` in O(chain_dir)."""
    found = []
    for index, pem in enumerate(params["intermediates"] or []):
        found.extend(C.load_certificates(pem, path="intermediates[%d]" % index))
    if params["chain_dir"]:
        for name in sorted(_fs.list_dir(params["chain_dir"])):
            if name.endswith(CHAIN_SUFFIX):
                path = os.path.join(params["chain_dir"], name)
                data = _fs.read_file(path)
                if data is not None:
                    found.extend(C.load_certificates(data, path=path)[1:])
    return found


def run(module):
    params = module.params
    check = module.check_mode
    directory = params["db"]
    if directory.startswith("sql:"):
        directory = directory[len("sql:"):]
    directory = directory.rstrip("/") or "/"
    trust = T.normalize_trust(params["trust"])
    prefix = T.entry_prefix(params["nickname_prefix"], params["zone"], "nickname_prefix")
    roots = _sources.roots(params["roots"], params["roots_path"])
    crls = wanted_crls(params)
    crl_by_root = T.crls_for_roots(crls or [], roots)
    chains = chain_certificates(params) if crls is not None else []
    # what a database without any entry of the zone would get
    fresh = T.plan_intermediates([], chains, roots, crls or [], prefix, {}) \
        if crls is not None else NO_PLAN
    fresh_crls = sorted([T.alias_for(prefix, r) for r in roots
                         if C.fingerprint(r) in crl_by_root] + list(fresh["add"]))
    if check and module.get_bin_path(params["certutil"]) is None:
        # check mode before the NSS tools are installed: everything would be added
        return {"changed": True, "created": not os.path.isfile(os.path.join(directory,
                                                                            "cert9.db")),
                "added": sorted(T.alias_for(prefix, r) for r in roots), "removed": [],
                "retrusted": [], "db": directory, "msg": "certutil is not installed yet",
                "intermediates_added": sorted(fresh["add"]), "intermediates_removed": [],
                "crls_imported": fresh_crls, "crls_deleted": []}
    certutil = Certutil(module, params["certutil"], directory)
    owner = None
    if params["owner"] is not None or params["group"] is not None:
        owner = _fs.resolve_owner(params["owner"] or "root", params["group"] or "root")
    mode = _parse.parse_mode(params["mode"]) if params["mode"] is not None else None

    result = {"changed": False, "created": False, "added": [], "removed": [], "retrusted": [],
              "intermediates_added": [], "intermediates_removed": [],
              "crls_imported": [], "crls_deleted": [], "db": directory}
    _fs.refuse_symlink(directory)
    exists = os.path.isfile(os.path.join(directory, "cert9.db"))
    if not exists:
        if not params["create"]:
            raise TrustzoneError("no NSS database (cert9.db) here", directory,
                                 fix="create it (certutil -N -d sql:DIR) or set create: true")
        result.update(changed=True, created=True,
                      added=sorted(T.alias_for(prefix, r) for r in roots),
                      intermediates_added=sorted(fresh["add"]), crls_imported=fresh_crls)
        if check:
            return result
        uid, gid = owner or (0, 0)
        if not os.path.isdir(directory):
            _fs.ensure_dir(directory, 0o755, uid, gid)
        certutil.run(["-N", "--empty-password"])

    # Entries of the zone first; the rest only if a root or intermediate is missing from them
    # (it may be in the database under a foreign nickname, and NSS would not add it twice).
    listed = certutil.nicknames()
    ours = [n for n in listed if n.startswith(prefix)]
    held = {n: certutil.certificates(n) for n in ours}
    entries = [(n, C.fingerprint(c)) for n in ours for c in held[n]]
    # a replaced intermediate the database holds stays while the zone publishes its CRL
    candidates = chains + [c for n in ours if T.is_zone_entry(n, prefix, T.INTERMEDIATE_SUFFIX)
                           for c in held[n]]

    def plans():
        roots_plan = T.plan_store(entries, roots, prefix)
        if crls is None:  # CRLs not managed: intermediates are there only to hold them
            return roots_plan, NO_PLAN
        return roots_plan, T.plan_intermediates(entries, candidates, roots, crls, prefix,
                                                listed)

    plan, iplan = plans()
    if plan["add"] or iplan["add"]:
        entries += [(n, fp) for n in listed if n not in ours for fp in certutil.fingerprints(n)]
        plan, iplan = plans()
    retrust = sorted(name for name in plan["keep"].values()
                     if not T.same_trust(listed.get(name, ",,"), trust))
    changed = bool(plan["add"] or plan["remove"] or retrust or iplan["add"] or
                   iplan["remove"] or iplan["retrust"])
    crl_plan = {"import": [], "delete": []}
    want_crl = {}
    if crls is not None:
        crlutil = Crlutil(module, params["crlutil"], directory) \
            if module.get_bin_path(params["crlutil"]) or not check else None
        # the entry that holds (or will hold) each current root and intermediate, and the
        # CRL it should have
        holder = dict(plan["keep"])
        holder.update(iplan["keep"])
        for name, cert in list(plan["add"].items()) + list(iplan["add"].items()):
            holder[C.fingerprint(cert)] = name
        by_ca = dict(crl_by_root)
        by_ca.update(iplan["crls"])
        want_crl = {holder[fp]: crl for fp, crl in by_ca.items()}
        have = {}
        for name in sorted((set(ours) | set(holder.values())) & set(listed)):
            number = crlutil.number(name) if crlutil is not None else None
            if number is not None:
                have[name] = number
        crl_plan = T.plan_crls(have, {n: T.crl_number_of(c) for n, c in want_crl.items()})
        changed = changed or bool(crl_plan["import"] or crl_plan["delete"])
    if not check:
        for name in crl_plan["delete"]:  # before its CA goes: NSS finds a CRL by its issuer
            crlutil.run(["-D", "-n", name])
        for name in iplan["remove"] + plan["remove"]:
            certutil.run(["-D", "-n", name])
        for name, cert in sorted(plan["add"].items()):
            certutil.run(["-A", "-n", name, "-t", trust],
                         data=C.certificate_pem(cert).encode("ascii"))
        for name in retrust:
            certutil.run(["-M", "-n", name, "-t", trust])
        for name, cert in sorted(iplan["add"].items()):  # a path element, not an anchor
            certutil.run(["-A", "-n", name, "-t", T.UNTRUSTED],
                         data=C.certificate_pem(cert).encode("ascii"))
        for name in iplan["retrust"]:
            certutil.run(["-M", "-n", name, "-t", T.UNTRUSTED])
        for name in crl_plan["import"]:  # after the CAs: NSS checks each CRL's signature
            crlutil.load(name, want_crl[name])
    if owner is not None or mode is not None:
        for name in DB_FILES:
            path = os.path.join(directory, name)
            st = _fs.file_state(path)
            if not st["exists"]:
                continue
            want_uid, want_gid = owner or (st["uid"], st["gid"])
            want_mode = mode if mode is not None else st["mode"]
            if (st["mode"], st["uid"], st["gid"]) != (want_mode, want_uid, want_gid):
                changed = True
                if not check:
                    _fs.set_meta(path, want_mode, want_uid, want_gid)
    result.update(changed=result["changed"] or changed,
                  added=sorted(set(result["added"]) | set(plan["add"])),
                  removed=plan["remove"], retrusted=sorted(retrust + iplan["retrust"]),
                  intermediates_added=sorted(set(result["intermediates_added"]) |
                                             set(iplan["add"])),
                  intermediates_removed=iplan["remove"],
                  crls_imported=crl_plan["import"], crls_deleted=crl_plan["delete"])
    if module._diff:
        lines = (["create %s\n" % directory] if result["created"] else []) + \
            ["+ %s (%s)\n" % (n, trust) for n in result["added"]] + \
            ["- %s\n" % n for n in result["removed"]] + \
            ["trust %s %s\n" % (n, trust) for n in retrust] + \
            ["+ %s (%s, intermediate)\n" % (n, T.UNTRUSTED)
             for n in result["intermediates_added"]] + \
            ["- %s\n" % n for n in result["intermediates_removed"]] + \
            ["trust %s %s\n" % (n, T.UNTRUSTED) for n in iplan["retrust"]] + \
            ["+ CRL of %s\n" % n for n in result["crls_imported"]] + \
            ["- CRL of %s\n" % n for n in result["crls_deleted"]]
        result["diff"] = listed_diff(lines, "NSS database %s" % directory)
    return result


def main():
    module = AnsibleModule(**_args.module_args(
        _args.STORE_ROOTS,
        db=dict(type="str", required=True),
        trust=dict(type="str", default="CT,,"),
        zone=dict(type="str"),
        nickname_prefix=dict(type="str"),
        crls=dict(type="list", elements="str"),
        crl_path=dict(type="path"),
        crlutil=dict(type="str", default="crlutil"),
        intermediates=dict(type="list", elements="str"),
        chain_dir=dict(type="path"),
        create=dict(type="bool", default=True),
        certutil=dict(type="str", default="certutil"),
        owner=dict(type="str"),
        group=dict(type="str"),
        mode=dict(type="str"),
        mutually_exclusive=[("crls", "crl_path")],
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
