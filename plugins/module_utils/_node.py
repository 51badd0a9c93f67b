# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""One run of the ``node`` module (``run``): the zone directory, trust, then every identity;
and the ``node_info`` module's read-only description of the same files (``describe_zone``).

``run`` is the whole of the module but its argument spec: it finishes switches a crash
interrupted (``Identity.recover``), then either rolls back, installs, or inspects - writes
the roots bundle and the CRL copy, syncs the OS trust store, and judges every identity
(``_backend``), staging a key and CSR only where one must be (re)issued. The host's two
services, ``run_command`` and ``get_bin_path``, come in as functions, so nothing here
imports Ansible.
"""

from __future__ import annotations

import datetime
import os

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _backend as B
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _anchors
from ansible_collections.trustzone.pki.plugins.module_utils import _assess
from ansible_collections.trustzone.pki.plugins.module_utils import _metrics
from ansible_collections.trustzone.pki.plugins.module_utils import _report as R
from ansible_collections.trustzone.pki.plugins.module_utils import _stamp
from ansible_collections.trustzone.pki.plugins.module_utils import _trust as T
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

ROOTS_BUNDLE = "roots.pem"
CRL_FILE = _layout.CRL_FILE


class Node:
    """The zone's files on this node. ``params``: the node module's parameters."""

    def __init__(self, params, check, run_command, get_bin_path):
        self.check = check
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        self.zone, self.dir = _args.zone_and_node_dir(params)
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
        self.changes = B.Changes(check)
        self.crl_changed = False  # crl.pem's content changed (or would): reload its readers
        self.metric_items = []  # per profile, what the metrics file says (metric_item)

    def identity(self, profile):
        return B.Identity(profile, self.dir, self.changes, self.now)

    def by_name(self):
        return {p["name"]: p for p in self.profiles}

    # ------------------------------------------------------------------ zone directory
    def ensure_zone_dir(self):
        if _fs.ensure_dir(self.dir, 0o755, 0, 0, check_mode=self.check):
            self.changes.note(self.dir + "/")

    def _sync_file(self, name, content):
        """Write ``<dir>/<name>`` (0644 root) unless it holds the same PEM; True if written."""
        path = os.path.join(self.dir, name)
        have = None if (self.check and not os.path.isdir(self.dir)) else _fs.read_file(path)
        if have is None or not _anchors.same_pem(have, content):
            self.changes.write(path, content, 0o644, 0, 0)
            return True
        self.changes.ensure_meta(path, 0o644, 0, 0)
        return False

    def sync_roots_bundle(self):
        self._sync_file(ROOTS_BUNDLE, "".join(C.certificate_pem(c) for c in self.roots))
        if self.crl is not None and self._sync_file(CRL_FILE, self.crl):
            self.crl_changed = True

    # ------------------------------------------------------------------ trust
    def trust_layout(self, given):
        """The OS trust-store layout: what the caller set, the rest detected on this node."""
        return T.node_layout(given, self.get_bin_path)

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
            self.changes.ensure_meta(os.path.join(anchor_dir, name), 0o644, 0, 0)
        for name, pem in plan["write"].items():
            self.changes.write(os.path.join(anchor_dir, name), pem, 0o644, 0, 0)
        for name in plan["remove"]:
            self.changes.remove(os.path.join(anchor_dir, name))
        rebuilt = False
        if plan["write"] or plan["remove"]:
            command = trust["update_command"]
            if plan["remove"] and trust.get("fresh_command"):
                command = trust["fresh_command"]
            if not self.check:
                rc, out, err = self.run_command(command)
                if rc != 0:
                    raise TrustzoneError("%s failed with exit code %d: %s" % (
                        " ".join(command), rc, (err or out).strip()[:300]), anchor_dir,
                        fix="run the command by hand on the node to see why")
            rebuilt = True
        return {"added": sorted(plan["write"]), "removed": plan["remove"],
                "kept": plan["keep"], "rebuilt": rebuilt, "anchor_dir": anchor_dir}

    # ------------------------------------------------------------------ identities
    def inspect(self):
        identities, requests, installed = {}, {}, {}
        for profile in self.profiles:
            identity = self.identity(profile)
            uid, gid = identity.preflight()
            identity.load()
            holds = identity.installed()
            if holds is not None:
                installed[identity.name] = holds
            reasons = identity.needs_regeneration(self.issuers, self.revoked)
            identities[identity.name] = identity.facts(reasons, self.roots)
            self.metric_items.append(self.metric_item(identity, reasons))
            if reasons:
                requests[identity.name] = identity.request(reasons)
            else:
                identity.keep(uid, gid)
        return identities, requests, installed

    def install(self, certificates):
        by_name = self.by_name()
        installed = []
        for name in sorted(certificates):
            if name not in by_name:
                raise TrustzoneError("a certificate arrived for unknown profile %r" % name,
                                     fix="pass the same profiles to inspect and install")
            self.identity(by_name[name]).install(certificates[name] or {}, self.roots,
                                                 self.zone)
            installed.append(name)
        return installed

    # ------------------------------------------------------------------ metrics
    def metric_item(self, identity, reasons):
        """What the metrics file says of one loaded identity (module_utils/_metrics.py)."""
        cert, key = identity.loaded["cert"], identity.loaded["key"]
        item = {"profile": identity.name, "path": identity.profile["cert_path"],
                "reasons": [r["reason"] for r in reasons]}
        if cert is not None:
            begins, ends = C.not_before(cert), C.not_after(cert)
            renew_at = ends - datetime.timedelta(seconds=identity.profile["renew_before"])
            item.update(
                not_before=_layout.iso(begins), not_after=_layout.iso(ends),
                renew_at=_layout.iso(renew_at),
                valid=begins <= self.now < ends,
                chain_valid=C.chain_to(cert, identity.loaded["chain"], self.roots) is not None,
                key_match=key is not None and C.same_public_key(key, cert))
        return item

    def assess_all(self):
        """``metric_item`` of every profile as it is now (after an install or a rollback)."""
        revoked = self.revoked_on_node()
        self.metric_items = []
        for profile in self.profiles:
            identity = self.identity(profile)
            identity.load()
            self.metric_items.append(
                self.metric_item(identity, identity.needs_regeneration(self.issuers, revoked)))

    def rotation_phase(self):
        """The root rotation phase as the node sees it: one root is V(stable); with two (the
        current root, then the next), the one that signs now says V(trust) or V(use)."""
        if len(self.roots) < 2:
            return "stable"
        prints = [C.fingerprint(root) for root in self.roots]
        for issuer in self.issuers:
            found = C.fingerprint(issuer)
            if found not in prints:
                path = C.chain_to(issuer, [], self.roots)
                found = C.fingerprint(path[-1]) if path else None
            if found in prints:
                return "trust" if prints.index(found) == 0 else "use"
        return None

    def crl_facts(self):
        """Issuer and nextUpdate of every CRL of the node's copy (the one given, else
        ``<dir>/crl.pem``)."""
        path = os.path.join(self.dir, CRL_FILE)
        return _metrics.crl_facts(self.crl if self.crl is not None else _fs.read_file(path),
                                  path)

    def metrics(self):
        return {"certificates": self.metric_items, "crls": self.crl_facts(),
                "phase": self.rotation_phase()}

    def recover(self):
        """Finish (or discard) every identity switch a crash interrupted."""
        for profile in self.profiles:
            self.identity(profile).recover()

    def revoked_on_node(self):
        """The revoked serials: from the CRL given, else the one kept as <dir>/crl.pem."""
        if self.crl is not None:
            return self.revoked
        path = os.path.join(self.dir, CRL_FILE)
        data = _fs.read_file(path)
        return _assess.revoked_set(C.load_crls(data, path=path)) if data else set()

    def rollback(self, names):
        """Roll ``names`` back; ``{profile: SHA-256 fingerprint of the certificate put back}``.
        With roots given, a previous certificate that does not chain to one of them (a root
        the zone retired) is refused: a rollback never undoes a root rotation."""
        by_name = self.by_name()
        for name in names:
            if name not in by_name:
                raise TrustzoneError("no profile %r on this node" % name,
                                     fix="name one of %s" % ", ".join(sorted(by_name)))
        restored = {}
        for name in names:
            restored[name] = self.identity(by_name[name]).rollback(self.revoked_on_node,
                                                                   self.roots)
        return restored


def run(params, check, diff, run_command, get_bin_path):
    """The node module's result for ``params`` (its parameters)."""
    node = Node(params, check, run_command, get_bin_path)
    node.ensure_zone_dir()
    node.recover()
    result = {"zone": node.zone, "dir": node.dir}
    inspected = False
    if params["rollback"]:
        result["restored"] = node.rollback(params["rollback"])
        result["rolled_back"] = list(result["restored"])
    elif params["certificates"] is not None:
        result["installed"] = node.install(params["certificates"])
    else:
        inspected = True
        node.sync_roots_bundle()
        if params["trust"] is not None:
            result["trust"] = node.sync_trust(params["trust"])
        result["identities"], result["requests"], result["installed"] = node.inspect()
    if inspected or (params.get("metrics_dir") and not check):
        if not inspected:
            node.assess_all()
        result["metrics"] = node.metrics()
    result["changed"] = node.changes.changed
    result["crl_changed"] = node.crl_changed
    result["files"] = node.changes.files
    if diff:
        _stamp.with_diff(result, node.changes.files)
    return result


def describe_zone(params, now=None):
    """The ``node_info`` module's result: every profile's certificate (and, with ``scan``,
    every other ``*.crt`` of the zone directory) described by ``_backend.describe``, the
    node's CRL copy and its roots bundle. Reads, never writes."""
    zone, zone_dir = _args.zone_and_node_dir(params)
    zone_dir = zone_dir.rstrip("/")
    now = now or datetime.datetime.now(datetime.timezone.utc)

    roots, source = [], "none"
    if params["roots"]:
        for index, pem in enumerate(params["roots"]):
            roots.extend(C.load_certificates(pem, path="roots[%d]" % index))
        source = "parameter"
    bundle_certs, _error = B.read(os.path.join(zone_dir, ROOTS_BUNDLE), C.load_certificates)
    roots_bundle = None
    if bundle_certs is not None:
        roots_bundle = sorted(C.fingerprint(c) for c in bundle_certs)
        if not roots:
            roots, source = bundle_certs, ROOTS_BUNDLE
    intermediates = []
    for index, pem in enumerate(params["intermediates"] or []):
        intermediates.extend(C.load_certificates(pem, path="intermediates[%d]" % index))

    certificates, seen = [], set()
    for profile in params["profiles"] or []:
        for key in ("name", "cert_path", "key_path", "chain_path", "mode", "key_mode"):
            if key not in profile:
                raise TrustzoneError("profile %r lacks %r" % (profile.get("name"), key),
                                     fix="pass resolved profiles (trustzone.pki.profiles)")
        certificates.append(B.describe(profile["cert_path"], profile, profile["key_path"],
                                       profile["chain_path"], roots, intermediates, now,
                                       "profile"))
        seen.add(os.path.normpath(profile["cert_path"]))
    if params["scan"]:
        for name in _fs.list_dir(zone_dir):
            path = os.path.join(zone_dir, name)
            if not name.endswith(".crt") or os.path.normpath(path) in seen:
                continue
            stem = path[:-len(".crt")]
            certificates.append(B.describe(path, None, stem + ".key", stem + "-fullchain.pem",
                                           roots, intermediates, now, "extra"))

    crl_path = os.path.join(zone_dir, CRL_FILE)
    crl = {"path": crl_path, "exists": False, "error": None, "next_update": None,
           "number": None, "crls": []}
    crls, error = B.read(crl_path, C.load_crls)
    if error:
        crl.update(exists=True, error=error)
    elif crls is not None:
        crl["exists"] = True
        crl.update(R.crl_facts(crls, roots + intermediates, now))
    return {"changed": False, "zone": zone, "dir": zone_dir, "certificates": certificates,
            "crl": crl, "roots_bundle": roots_bundle, "roots_source": source}
