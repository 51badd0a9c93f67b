#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node
short_description: Keep a node's trust anchors and zone identities right, in one call
version_added: 0.1.0
description:
  - B(Inspect) (no O(certificates) given) - writes the zone's roots bundle, makes the OS trust
    store hold exactly the zone's current roots (running the update command only when an anchor
    changed), and checks every profile's key and certificate. For each identity that must be
    (re)issued it reports why and, only then, makes a private key on the node (kept beside the
    live key as C(<key>.next-<tag>) until its certificate arrives) and returns a CSR. The key never
    leaves the node.
  - B(Install) (O(certificates) given) - checks each signed certificate against its pending key
    and the zone roots, then switches key, certificate and full chain as one unit, keeping the
    previous generation as C(.prev). New chain and certificate are first staged (fsynced) as
    C(<file>.new-<tag>) beside the live files, then the pending key, the chain and the
    certificate are renamed into place. Every run of the module first finishes a switch that
    a crash interrupted after the certificate was staged (or removes what was staged before),
    so after a crash the node holds the old identity or the new one, complete.
  - Pending keys are named C(<key>.next-<tag>), the tag being the first 16 hex digits of the
    SHA-256 of the public key, so that overlapping runs never overwrite each other's key;
    install picks the one that matches the certificate.
  - Everything that would stop an install - a link or non-regular file where the key,
    certificate, chain or their C(.prev) go, an unknown owner or group, a missing or
    unwritable directory - stops the inspection with one line, before a CSR goes to the CA.
  - A renewal whose reasons include C(revoked) always makes a new key, whatever the
    profile's C(regenerate_key) says.
  - A run with nothing to do changes nothing, in check mode and for real.
  - An action plugin of the same name runs first on the controller. Given O(inventory_profiles)
    it resolves the node's profiles from the inventory (the node's names come from
    C(inventory_hostname), C(trustzone_node_fqdn), C(trustzone_node_addresses), C(ansible_host)
    and O(extra_names), never from the node) and returns them as RV(profiles); it checks its
    inputs (O(ca_hosts), O(reload_services), O(reload_commands), the roots) and stops a host
    with one line naming the host, the variable and the fix; and given O(signed) it installs
    that host's certificates from the P(trustzone.pki.sign#module) result, fails the host
    the CA refused, and does nothing for a host with nothing signed.
author: trustzone.pki maintainers (!UNKNOWN)
options:
  zone:
    description: Name of the trust zone.
    type: str
    required: true
  dir:
    description: Directory for the zone's files on the node. Defaults to C(/etc/trustzone/<zone>).
    type: path
  roots:
    description: PEM certificates of the zone's current roots.
    type: list
    elements: str
    required: true
  issuers:
    description:
      - PEM certificates of the roots that sign now. A certificate that does not chain to one
        of them is renewed (reason C(issuer)) - during a root rotation's C(use) phase this
        moves every leaf to the new root while both roots stay trusted. Defaults to O(roots).
    type: list
    elements: str
  crl:
    description:
      - The zone's CRLs (PEM). Kept as C(<dir>/crl.pem) for services (nginx C(ssl_crl),
        C(openssl -CRLfile)); an identity whose serial is on it is renewed (reason
        C(revoked)).
      - Services read a CRL when they (re)load; the result's RV(crl_changed) says when the
        content of C(crl.pem) changed, and the certs and trust roles then reload the
        services that read it.
    type: str
  trust:
    description:
      - How to install the roots into the OS trust store. Omit to leave the OS store alone.
      - Every setting left out (or null) comes from the layout of the node's OS family, which
        the module works out on the node from C(/etc/os-release) (C(ID), then C(ID_LIKE)) or,
        failing that, from whether C(update-ca-certificates) or C(update-ca-trust) is
        installed - no fact gathering needed. Debian family -
        C(/usr/local/share/ca-certificates), C(.crt), C(update-ca-certificates) (C(--fresh)
        after a removal); RHEL family - C(/etc/pki/ca-trust/source/anchors), C(.pem),
        C(update-ca-trust extract). An empty dict means "the OS store, detected".
    type: dict
    suboptions:
      anchor_dir:
        description: Directory of local trust anchors.
        type: path
      suffix:
        description: File name suffix the update command picks up.
        type: str
      update_command:
        description: Command (argv list) that rebuilds the store after an anchor was added.
        type: list
        elements: str
      fresh_command:
        description: Command (argv list) that rebuilds the store after an anchor was removed.
        type: list
        elements: str
  profiles:
    description:
      - Resolved profiles (output of the P(trustzone.pki.profiles#filter) filter).
    type: list
    elements: dict
    default: []
  certificates:
    description:
      - Signed certificates to install, keyed by profile name; each has C(certificate) (PEM)
        and C(chain) (list of PEM intermediates).
    type: dict
  rollback:
    description:
      - Profiles whose certificate, full chain and (when it changed) key go back to the
        previous generation, kept as C(.prev) on every renewal. The current files become the
        C(.prev) ones, so rolling back twice rolls forward again. Refused when the previous
        certificate expired, is on the zone's CRL (O(crl), else the C(<dir>/crl.pem) the node
        keeps) or no key matches it.
    type: list
    elements: str
    default: []
  inventory_profiles:
    description:
      - Given at all, it asks the action plugin to resolve this host's profiles and names
        from the inventory and pass them on as O(profiles). The value itself is not used;
        the action plugin reads C(trustzone_certs_profiles), C(trustzone_node_fqdn),
        C(trustzone_node_addresses), C(trustzone_certs_extra_names) and C(ansible_host) from
        the inventory's host and group variables, the play's vars and extra vars only -
        never from facts, the fact cache, C(set_fact) or registered results, which a node
        can forge (see C(docs/identity.md)). Exclusive with O(profiles).
    type: raw
  extra_names:
    description:
      - Kept for compatibility; ignored like the value of O(inventory_profiles)
        (C(trustzone_certs_extra_names) is read from the inventory).
    type: list
    elements: str
    default: []
  resolve_only:
    description:
      - Return this host's resolved O(profiles) (as RV(profiles)) without contacting the
        node; used by the certs role's C(tasks_from=resolve).
    type: bool
    default: false
  ca_hosts:
    description:
      - The hosts of group C(trustzone_ca). When given, the action plugin refuses to run unless
        there is exactly one.
    type: list
    elements: str
  reload_services:
    description: Checked to be a list (C(trustzone_certs_reload_services)); not used otherwise.
    type: raw
  reload_commands:
    description: Checked to be a list (C(trustzone_certs_reload_commands)); not used otherwise.
    type: raw
  role_spec:
    description:
      - Path of a role (C({{ role_path }})) whose C(meta/argument_specs.yml) (entry point
        C(main)) the action plugin checks against the task's variables before anything else,
        as Ansible's own role argument validation does; for a play that imports the role with
        C(rolespec_validate=false) (C(playbooks/site.yml) does, so that a node costs one task).
    type: path
  signed:
    description:
      - The registered result of P(trustzone.pki.sign#module). Installs this host's entry of
        its C(certificates) (as O(certificates)); fails when the CA refused this host; does
        nothing, without contacting the node, when nothing was signed for it.
    type: dict
attributes:
  action:
    description: An action plugin on the controller resolves profiles, checks inputs and picks this host's signed certificates.
    support: full
  check_mode:
    description: In check mode nothing is written and no key is made; the result says what would change and why.
    support: full
  diff_mode:
    description: With C(--diff), lists the files that change and each identity it requests, with the reasons.
    support: full
requirements:
  - cryptography >= 3.4 on the node
"""

EXAMPLES = r"""
- name: Trust the zone and inspect the node's identities (profiles resolved from the inventory)
  trustzone.pki.node:
    zone: prod
    roots: "{{ trustzone_ca_root.roots }}"
    inventory_profiles: [{name: server, extended_key_usage: [server_auth]}]
    trust: {}
  register: inspected

- name: Inspect the node with profiles resolved beforehand
  trustzone.pki.node:
    zone: prod
    roots: "{{ trustzone_ca_root.roots }}"
    profiles: "{{ trustzone_certs_profiles | trustzone.pki.profiles('prod', '/etc/trustzone/prod',
                  inventory_hostname | trustzone.pki.node_names(hostvars[inventory_hostname])) }}"
  register: inspected
"""

RETURN = r"""
profiles:
  description: The profiles resolved on the controller from the inventory (set by the action plugin).
  returned: always
  type: list
  elements: dict
requests:
  description: CSRs to sign, keyed by profile (CSR is null in check mode).
  returned: inspect
  type: dict
identities:
  description: Per profile, C(state) (V(valid) or V(renew)), C(reasons), and facts about the
    current certificate.
  returned: inspect
  type: dict
trust:
  description: Anchors added and removed, and whether the store was rebuilt.
  returned: inspect
  type: dict
rolled_back:
  description: Profiles rolled back to their previous generation.
  returned: rollback
  type: list
  elements: str
installed:
  description:
    - In install mode, the profiles whose certificates were installed (a list).
    - In inspect mode (a dict), for every profile whose certificate file exists and parses,
      the profile's name mapped to C(certificate) (PEM) and C(fingerprint) (SHA-256 of the
      DER, lower-case hex). It is what the node says it holds - untrusted data for the
      controller.
  returned: install, inspect
  type: raw
crl_changed:
  description:
    - Whether the content of C(<dir>/crl.pem) changed (in check mode, would change). Its
      mode or owner alone being put right is not a change. The certs and trust roles reload
      the services that read the CRL (C(trustzone_certs_reload_services) and
      C(_reload_commands)) on the nodes where it is true, and only there.
  returned: always
  type: bool
files:
  description: Files written or removed.
  returned: always
  type: list
  elements: str
"""

import datetime
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _switch as I
from ansible_collections.trustzone.pki.plugins.module_utils import _anchors
from ansible_collections.trustzone.pki.plugins.module_utils import _assess
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils import _trust as T
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")

PENDING_SUFFIX = I.LEGACY_PENDING  # the pending key's name before pending keys had tags
STALE_PENDING = 3600  # seconds: a pending key older than this, of a valid identity, is removed
ROOTS_BUNDLE = "roots.pem"
CRL_FILE = "crl.pem"


class Node:
    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        params = module.params
        self.zone = _parse.validate_name(params["zone"], "zone name")
        self.dir = params["dir"] or "/etc/trustzone/%s" % self.zone
        self.roots = []
        for index, pem in enumerate(params["roots"]):
            self.roots.extend(C.load_certificates(pem, path="roots[%d]" % index))
        self.issuers = []
        for index, pem in enumerate(params["issuers"] or []):
            self.issuers.extend(C.load_certificates(pem, path="issuers[%d]" % index))
        self.issuers = self.issuers or self.roots
        self.crl = params["crl"]
        self.revoked = _assess.revoked_set(C.load_crls(self.crl, path="crl")) if self.crl else set()
        self.profiles = params["profiles"] or []
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.files = []
        self.changed = False
        self.crl_changed = False  # crl.pem's content changed (or would): reload its readers

    # ------------------------------------------------------------------ shared
    def write(self, path, data, mode, uid, gid, keep_previous=False):
        self.changed = True
        self.files.append(path)
        if not self.check:
            _fs.atomic_write(path, data, mode, uid, gid, keep_previous=keep_previous)

    def ensure_zone_dir(self):
        if _fs.ensure_dir(self.dir, 0o755, 0, 0, check_mode=self.check):
            self.changed = True
            self.files.append(self.dir + "/")

    def ensure_meta(self, path, mode, uid, gid):
        st = _fs.file_state(path)
        if st["exists"] and (st["mode"], st["uid"], st["gid"]) != (mode, uid, gid):
            self.changed = True
            self.files.append(path)
            if not self.check:
                _fs.set_meta(path, mode, uid, gid)

    # ------------------------------------------------------------------ trust
    def sync_roots_bundle(self):
        bundle = "".join(C.certificate_pem(c) for c in self.roots)
        path = os.path.join(self.dir, ROOTS_BUNDLE)
        if self.check and not os.path.isdir(self.dir):
            have = None
        else:
            have = _fs.read_file(path)
        if have is None or not _anchors.same_pem(have, bundle):
            self.write(path, bundle, 0o644, 0, 0)
        else:
            self.ensure_meta(path, 0o644, 0, 0)
        if self.crl is not None:
            path = os.path.join(self.dir, CRL_FILE)
            have = None if (self.check and not os.path.isdir(self.dir)) else _fs.read_file(path)
            if have is None or not _anchors.same_pem(have, self.crl):
                self.crl_changed = True
                self.write(path, self.crl, 0o644, 0, 0)
            else:
                self.ensure_meta(path, 0o644, 0, 0)

    def trust_layout(self, given):
        """The OS trust-store layout: what the caller set, the rest detected on this node."""
        family = None
        if T.needs_detection(given):
            text = None
            for path in OS_RELEASE:  # read only; /etc/os-release is a link on most systems
                try:
                    with open(path, "rb") as handle:
                        text = handle.read(65536).decode("utf-8", "replace")
                    break
                except OSError:
                    continue
            found = [c for c in T.COMMANDS if self.module.get_bin_path(c)]
            family = T.detect_family(text, found)
        layout = T.trust_layout(given, family)
        layout["family"] = family
        return layout

    def sync_trust(self, trust):
        trust = self.trust_layout(trust)
        anchor_dir = trust["anchor_dir"]
        if not os.path.isdir(anchor_dir):
            raise TrustzoneError("the trust anchor directory does not exist", anchor_dir,
                                 fix="install the ca-certificates package, or set the trust "
                                     "role's anchor directory for this OS")
        prefix = _anchors.anchor_prefix(self.zone)
        existing = {}
        for name in _fs.list_dir(anchor_dir, prefix):
            existing[name] = _fs.read_file(os.path.join(anchor_dir, name)) or b""
        plan = _anchors.plan_anchors(existing, self.roots, self.zone, trust["suffix"])
        for name in plan["keep"]:
            self.ensure_meta(os.path.join(anchor_dir, name), 0o644, 0, 0)
        for name, pem in plan["write"].items():
            self.write(os.path.join(anchor_dir, name), pem, 0o644, 0, 0)
        for name in plan["remove"]:
            self.changed = True
            self.files.append(os.path.join(anchor_dir, name))
            if not self.check:
                _fs.remove(os.path.join(anchor_dir, name))
        rebuilt = False
        if plan["write"] or plan["remove"]:
            command = trust["update_command"]
            if plan["remove"] and trust.get("fresh_command"):
                command = trust["fresh_command"]
            if not self.check:
                rc, out, err = self.module.run_command(command)
                if rc != 0:
                    raise TrustzoneError("%s failed with exit code %d: %s" % (
                        " ".join(command), rc, (err or out).strip()[:300]), anchor_dir,
                        fix="run the command by hand on the node to see why")
            rebuilt = True
        return {"added": sorted(plan["write"]), "removed": plan["remove"],
                "kept": plan["keep"], "rebuilt": rebuilt, "anchor_dir": anchor_dir}

    # ------------------------------------------------------------------ inspect
    def read_identity(self, profile):
        key = key_error = cert = cert_error = None
        chain = []
        try:
            data = _fs.read_file(profile["key_path"])
            if data is not None:
                key = C.load_private_key(data, path=profile["key_path"])
        except TrustzoneError as exc:
            key_error = str(exc)
        try:
            data = _fs.read_file(profile["cert_path"])
            if data is not None:
                cert = C.load_certificate(data, path=profile["cert_path"])
        except TrustzoneError as exc:
            cert_error = str(exc)
        try:
            data = _fs.read_file(profile["chain_path"])
            if data is not None:
                chain = C.load_certificates(data, path=profile["chain_path"])[1:]
        except TrustzoneError:
            chain = []
        return key, key_error, cert, cert_error, chain

    def pending_keys(self, profile):
        """``[(path, key)]`` of the readable pending keys of a profile (tagged ones, then the
        legacy ``<key>.next``)."""
        directory, base = os.path.split(profile["key_path"])
        found = []
        names = [n for n in _fs.list_dir(directory, base + I.PENDING)
                 if I.tag_of(n, base, I.PENDING)]
        names.append(base + PENDING_SUFFIX)
        for name in names:
            path = os.path.join(directory, name)
            try:
                data = _fs.read_file(path)
                if data is not None:
                    found.append((path, C.load_private_key(data, path=path)))
            except TrustzoneError:
                continue
        return found

    def pending_key(self, profile, current_key, reasons):
        """The key the next certificate will carry: the live one (key reuse, never after a
        revocation), a pending one from an interrupted or overlapping run, or a new one,
        kept as ``<key>.next-<public key tag>`` so that no run overwrites another's."""
        if not I.needs_new_key(profile, reasons, current_key is not None):
            return current_key, None
        for path, key in self.pending_keys(profile):
            if C.describe_key(key) == profile["key"] and (
                    current_key is None or not C.same_public_key(key, current_key)):
                return key, path
        key = C.generate_key(profile["key"])
        uid, gid = _fs.resolve_owner(profile["owner"], profile["group"])
        pending_path = I.pending_key_path(profile["key_path"], key)
        self.write(pending_path, C.private_key_pem(key), int(profile["key_mode"], 8), uid, gid)
        return key, pending_path

    def preflight(self, profile):
        """Everything that would stop this profile's install, found before a CSR goes to the
        CA: an unknown owner or group, a missing or unwritable directory, a link or a
        non-regular file where the key, certificate, chain (or their .prev) will go."""
        uid, gid = _fs.resolve_owner(profile["owner"], profile["group"])
        for path in (profile["cert_path"], profile["key_path"], profile["chain_path"]):
            parent = os.path.dirname(path)
            if parent != self.dir.rstrip("/") and not os.path.isdir(parent):
                raise TrustzoneError("the directory for %s does not exist" % path, parent,
                                     fix="create it, or change the profile's paths")
            if self.check and not os.path.isdir(parent):
                continue  # the zone directory itself, created by this run
            _fs.check_writable(path)
            _fs.check_writable(path + _fs.PREVIOUS_SUFFIX)
        return uid, gid

    def remove_stale_pending(self, profile):
        for path, _key in self.pending_keys(profile):
            try:
                age = self.now.timestamp() - os.lstat(path).st_mtime
            except OSError:
                continue
            if age > STALE_PENDING:
                self.changed = True
                self.files.append(path)
                if not self.check:
                    _fs.remove(path)

    def inspect(self):
        identities, requests, installed = {}, {}, {}
        for profile in self.profiles:
            uid, gid = self.preflight(profile)
            key, key_error, cert, cert_error, chain = self.read_identity(profile)
            if cert is not None:
                installed[profile["name"]] = {"certificate": C.certificate_pem(cert),
                                              "fingerprint": C.fingerprint(cert)}
            reasons = _assess.assess(profile, key, key_error, cert, cert_error, chain,
                                     self.issuers, self.now, revoked=self.revoked)
            identities[profile["name"]] = identity_facts(cert, chain, reasons, self.roots,
                                                         self.now)
            if reasons:
                if self.check:
                    requests[profile["name"]] = {"csr": None, "reasons": reasons}
                    self.changed = True
                    continue
                next_key, _path = self.pending_key(profile, key, reasons)
                csr = C.build_csr(next_key, profile["common_name"], profile["dns"],
                                  profile["ip"])
                requests[profile["name"]] = {"csr": C.csr_pem(csr), "reasons": reasons}
            else:
                self.ensure_meta(profile["cert_path"], int(profile["mode"], 8), uid, gid)
                self.ensure_meta(profile["chain_path"], int(profile["mode"], 8), uid, gid)
                self.ensure_meta(profile["key_path"], int(profile["key_mode"], 8), uid, gid)
                self.remove_stale_pending(profile)
        return identities, requests, installed

    # ------------------------------------------------------------------ install
    def install(self, certificates):
        by_name = {p["name"]: p for p in self.profiles}
        installed = []
        for name in sorted(certificates):
            if name not in by_name:
                raise TrustzoneError("a certificate arrived for unknown profile %r" % name,
                                     fix="pass the same profiles to inspect and install")
            profile = by_name[name]
            item = certificates[name] or {}
            cert = C.load_certificate(item.get("certificate") or "",
                                      path="certificate for profile %s" % name)
            chain = []
            for pem in item.get("chain") or []:
                chain.extend(C.load_certificates(pem, path="chain for profile %s" % name))
            if C.chain_to(cert, chain, self.roots) is None:
                raise TrustzoneError("the new %s certificate does not chain to a current root of "
                                     "zone %s" % (name, self.zone), profile["cert_path"],
                                     fix="re-run the play so that the CA signs a fresh request")
            uid, gid = self.preflight(profile)
            key_path = self.matching_key(profile, cert)
            I.require_match(key_path, name, profile["cert_path"])
            mode = int(profile["mode"], 8)
            fullchain = C.certificate_pem(cert) + "".join(C.certificate_pem(c) for c in chain)
            # Staged chain, then staged certificate: the commit point of the switch.
            self.write(I.staged_path(profile["chain_path"], cert), fullchain, mode, uid, gid)
            self.write(I.staged_path(profile["cert_path"], cert), C.certificate_pem(cert), mode,
                       uid, gid)
            self.finish_switch(profile, I.key_tag(cert), key_path)
            installed.append(name)
        return installed

    def matching_key(self, profile, cert):
        """Path of the key on this node that matches ``cert``: its tagged pending key, the
        legacy pending key or the live key; None if none does."""
        candidates = [I.pending_key_path(profile["key_path"], cert),
                      profile["key_path"] + PENDING_SUFFIX, profile["key_path"]]
        for candidate in candidates:
            try:
                data = _fs.read_file(candidate)
                if data is not None and C.same_public_key(
                        C.load_private_key(data, path=candidate), cert):
                    return candidate
            except TrustzoneError:
                continue
        return None

    def finish_switch(self, profile, tag, key_path):
        """Renames after the commit point: key, chain, certificate (each keeping .prev).
        Every step is skipped when already done, so a crashed switch is finished by
        calling it again."""
        if key_path != profile["key_path"]:
            self.rename(key_path, profile["key_path"])
        staged_chain = profile["chain_path"] + I.STAGED + tag
        if _fs.file_state(staged_chain)["exists"] or self.check:
            self.rename(staged_chain, profile["chain_path"])
        self.rename(profile["cert_path"] + I.STAGED + tag, profile["cert_path"])

    def rename(self, src, dst):
        self.changed = True
        self.files.append(dst)
        if not self.check:
            _fs.atomic_rename(src, dst, keep_previous=True)

    def recover(self):
        """Finish (or discard) an identity switch a crash interrupted, before anything else."""
        for profile in self.profiles:
            cert_dir, cert_base = os.path.split(profile["cert_path"])
            chain_dir, chain_base = os.path.split(profile["chain_path"])
            if not os.path.isdir(cert_dir) or not os.path.isdir(chain_dir):
                continue
            staged_certs, staged_chains = {}, {}
            for name in _fs.list_dir(cert_dir, cert_base + I.STAGED):
                tag = I.tag_of(name, cert_base, I.STAGED)
                if tag:
                    try:
                        staged_certs[tag] = C.load_certificate(
                            _fs.read_file(os.path.join(cert_dir, name)) or b"",
                            path=os.path.join(cert_dir, name))
                    except TrustzoneError:
                        staged_certs[tag] = None
            for name in _fs.list_dir(chain_dir, chain_base + I.STAGED):
                tag = I.tag_of(name, chain_base, I.STAGED)
                if tag:
                    staged_chains[tag] = True
            if not staged_certs and not staged_chains:
                continue
            keys = {}
            for path, key in self.pending_keys(profile):
                keys.setdefault(I.key_tag(key), path)
            try:
                live = _fs.read_file(profile["key_path"])
                if live is not None:
                    key = C.load_private_key(live, path=profile["key_path"])
                    keys[I.key_tag(key)] = profile["key_path"]
            except TrustzoneError:
                pass
            plan = I.plan_recovery(staged_certs, staged_chains, keys)
            for kind, tag in plan["discard"]:
                path = (profile["cert_path"] if kind == "cert" else profile["chain_path"]) \
                    + I.STAGED + tag
                self.changed = True
                self.files.append(path)
                if not self.check:
                    _fs.remove(path)
            if plan["finish"]:
                self.preflight(profile)
                self.finish_switch(profile, plan["finish"], keys[plan["finish"]])

    # ------------------------------------------------------------------ rollback
    def revoked_on_node(self):
        """The revoked serials: from the CRL given, else the one kept as <dir>/crl.pem."""
        if self.crl is not None:
            return self.revoked
        path = os.path.join(self.dir, CRL_FILE)
        data = _fs.read_file(path)
        return _assess.revoked_set(C.load_crls(data, path=path)) if data else set()

    def rollback(self, names):
        """Swap each profile's certificate, chain and (if it changed) key with the previous
        generation kept as ``.prev``. Doing it twice rolls forward again."""
        by_name = {p["name"]: p for p in self.profiles}
        rolled = []
        for name in names:
            if name not in by_name:
                raise TrustzoneError("no profile %r on this node" % name,
                                     fix="name one of %s" % ", ".join(sorted(by_name)))
            profile = by_name[name]
            prev_cert_path = profile["cert_path"] + _fs.PREVIOUS_SUFFIX
            data = _fs.read_file(prev_cert_path)
            if data is None:
                raise TrustzoneError("there is no previous certificate to roll back to",
                                     prev_cert_path, fix="nothing to undo for this profile")
            cert = C.load_certificate(data, path=prev_cert_path)
            refusal = I.rollback_refusal(cert, self.now, self.revoked_on_node())
            if refusal:
                raise TrustzoneError(refusal, prev_cert_path,
                                     fix="renew instead (playbooks/renew.yml)")
            prev_key_path = profile["key_path"] + _fs.PREVIOUS_SUFFIX
            swap_key = None
            for candidate in (prev_key_path, profile["key_path"]):
                key_data = _fs.read_file(candidate)
                if key_data is not None and C.same_public_key(
                        C.load_private_key(key_data, path=candidate), cert):
                    swap_key = key_data if candidate == prev_key_path else None
                    break
            else:
                raise TrustzoneError("no key on this node matches the previous certificate",
                                     prev_cert_path, fix="renew instead (playbooks/renew.yml)")
            uid, gid = self.preflight(profile)
            mode = int(profile["mode"], 8)
            chain = _fs.read_file(profile["chain_path"] + _fs.PREVIOUS_SUFFIX) or data
            # The same one-unit switch as an install: the previous key as a pending key, the
            # previous chain and certificate staged, then the renames (current -> .prev).
            key_src = profile["key_path"]
            if swap_key is not None:
                key_src = I.pending_key_path(profile["key_path"], cert)
                self.write(key_src, swap_key, int(profile["key_mode"], 8), uid, gid)
            self.write(I.staged_path(profile["chain_path"], cert), chain, mode, uid, gid)
            self.write(I.staged_path(profile["cert_path"], cert), data, mode, uid, gid)
            self.finish_switch(profile, I.key_tag(cert), key_src)
            rolled.append(name)
        return rolled


def identity_facts(cert, chain, reasons, roots, now):
    facts = {"state": "renew" if reasons else "valid", "reasons": reasons}
    if cert is not None:
        path = C.chain_to(cert, chain, roots)
        facts["root_fingerprint"] = C.fingerprint(path[-1]) if path else None
        end = C.not_after(cert)
        facts.update({
            "serial": "%x" % cert.serial_number,
            "fingerprint": C.fingerprint(cert),
            "not_after": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "days_left": int((end - now).total_seconds() // 86400),
            "issuer": cert.issuer.rfc4514_string(),
        })
    return facts


def run(module):
    node = Node(module)
    params = module.params
    node.ensure_zone_dir()
    node.recover()
    result = {"zone": node.zone, "dir": node.dir}
    if params["rollback"]:
        result["rolled_back"] = node.rollback(params["rollback"])
    elif params["certificates"] is not None:
        result["installed"] = node.install(params["certificates"])
    else:
        node.sync_roots_bundle()
        if params["trust"] is not None:
            result["trust"] = node.sync_trust(params["trust"])
        result["identities"], result["requests"], result["installed"] = node.inspect()
    result["changed"] = node.changed
    result["crl_changed"] = node.crl_changed
    result["files"] = node.files
    if module._diff:
        lines = ["file %s\n" % f for f in node.files]
        for name, item in sorted((result.get("requests") or {}).items()):
            lines.append("request %s: %s\n" % (
                name, ", ".join(r["reason"] for r in item["reasons"])))
        lines.extend("install %s\n" % name for name in result.get("installed", []))
        result["diff"] = {"before": "", "after": "".join(lines),
                          "after_header": "changes on this node"}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            zone=dict(type="str", required=True),
            dir=dict(type="path"),
            roots=dict(type="list", elements="str", required=True),
            issuers=dict(type="list", elements="str"),
            crl=dict(type="str"),
            trust=dict(type="dict", options=dict(
                anchor_dir=dict(type="path"),
                suffix=dict(type="str"),
                update_command=dict(type="list", elements="str"),
                fresh_command=dict(type="list", elements="str"),
            )),
            profiles=dict(type="list", elements="dict", default=[]),
            certificates=dict(type="dict", no_log=False),
            rollback=dict(type="list", elements="str", default=[]),
            # Consumed by the action plugin on the controller (never reach the node); listed
            # so that the module's documentation and argument spec agree.
            inventory_profiles=dict(type="raw"),
            extra_names=dict(type="list", elements="str", default=[]),
            ca_hosts=dict(type="list", elements="str"),
            reload_services=dict(type="raw"),
            reload_commands=dict(type="raw"),
            signed=dict(type="dict"),
            role_spec=dict(type="path"),
            resolve_only=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
