# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The identity backend: one identity (key, certificate, full chain of one profile) on a node.

In the manner of community.crypto's module backends, one home for every job on one identity,
shared by the ``node`` module (through ``_node.py``), ``node_info`` and the fleet report:

* ``load`` (and ``read``/``read_state``): what is there - the parsed key, certificate and
  the chain file's intermediates, with why a file could not be read (I/O through ``_fs``);
* ``needs_regeneration``: why the identity must be (re)issued - ``_assess.assess`` of what is
  there, what the profile wants and now (pure);
* ``certificate_facts`` / ``identity_facts`` / ``describe``: the facts ``node_info``, the
  node's inspect result and the fleet report print (``certificate_facts`` and
  ``identity_facts`` are pure);
* ``acme_reasons``: the same assessment for a certificate of the acme role (pure);
* ``Identity.request`` (stage the next key, return a CSR), ``Identity.install``,
  ``Identity.rollback`` and ``Identity.recover``: the writes, each through ``Changes`` (which
  honours check mode) and the one-unit switch of ``_switch.py``.

Nothing here may need more than cryptography 38.0.4, nor import Ansible.
"""

from __future__ import annotations

import os

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _assess
from ansible_collections.trustzone.pki.plugins.module_utils import _switch as I
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.plugins.module_utils._report import (
    days_left, iso, mode_text)

try:
    import grp
    import pwd
except ImportError:  # pragma: no cover
    grp = pwd = None

PENDING_SUFFIX = I.LEGACY_PENDING  # the pending key's name before pending keys had tags
STALE_PENDING = 3600  # seconds: a pending key older than this, of a valid identity, is removed


# --------------------------------------------------------------------------- reading

def read(path, loader):
    """``(object, error)`` from a file; ``(None, None)`` when it does not exist."""
    try:
        data = _fs.read_file(path)
        if data is None:
            return None, None
        return loader(data, path=path), None
    except TrustzoneError as exc:
        return None, str(exc)


def read_state(path):
    """``(file_state, error)``; a symlink or unreadable entry is an error, never followed."""
    if not path:
        return {"exists": False}, None
    try:
        return _fs.file_state(path), None
    except (TrustzoneError, OSError) as exc:
        return {"exists": True}, str(exc)


def owner_text(state):
    """``user:group`` of a ``file_state`` (numbers when the names are unknown), or None."""
    if "uid" not in state:
        return None
    try:
        user = pwd.getpwuid(state["uid"]).pw_name
    except (KeyError, AttributeError):
        user = str(state["uid"])
    try:
        group = grp.getgrgid(state["gid"]).gr_name
    except (KeyError, AttributeError):
        group = str(state["gid"])
    return "%s:%s" % (user, group)


def load(cert_path, key_path, chain_path):
    """What is there: ``{key, key_error, cert, cert_error, chain}``, ``chain`` being the
    intermediates of the full-chain file (an unreadable chain file, or none given, counts as
    none)."""
    key, key_error = read(key_path, C.load_private_key)
    cert, cert_error = read(cert_path, C.load_certificate)
    bundle, _error = read(chain_path, C.load_certificates) if chain_path else (None, None)
    return {"key": key, "key_error": key_error, "cert": cert, "cert_error": cert_error,
            "chain": list((bundle or [])[1:])}


# --------------------------------------------------------------------------- deciding (pure)

def needs_regeneration(profile, loaded, issuers, now, revoked=None):
    """Why the identity must be (re)issued (``_assess.assess`` of what ``load`` found, the
    profile, the roots that sign now, now and the revoked serials); ``[]`` when it is fine."""
    return _assess.assess(profile, loaded["key"], loaded["key_error"], loaded["cert"],
                          loaded["cert_error"], loaded["chain"], issuers, now,
                          revoked=revoked)


def _validity_facts(cert, chain, roots, now):
    """Serial, fingerprint, issuer, validity and the root it chains to (with the path)."""
    path = C.chain_to(cert, chain or [], roots or [])
    return path, {
        "issuer": C.issuer_text(cert),
        "serial": "%x" % cert.serial_number,
        "fingerprint": C.fingerprint(cert),
        "not_after": iso(C.not_after(cert)),
        "days_left": days_left(C.not_after(cert), now),
    }


def certificate_facts(cert, chain, roots, key, now):
    """Facts about one parsed certificate: names, validity, chain and key.

    ``chain``: intermediates to try (the full-chain file's extra certificates and the zone's
    intermediates); ``roots``: the zone's roots; ``key``: the private key found beside it, or
    None. ``key_match`` is None when there is no key to compare with.
    """
    path, validity = _validity_facts(cert, chain, roots, now)
    facts = {
        "subject": C.subject_text(cert),
        "common_name": C.common_name(cert),
        "sans": C.names_of(cert),
        "issuer": validity["issuer"],
        "serial": validity["serial"],
        "fingerprint": validity["fingerprint"],
        "not_before": iso(C.not_before(cert)),
        "not_after": validity["not_after"],
        "days_left": validity["days_left"],
        "key_type": C.key_spec_text(C.describe_key(cert.public_key())),
        "extended_key_usage": C.extended_key_usages_of(cert),
        "is_ca": bool((C.basic_constraints_of(cert) or (False, None))[0]),
        "chain_valid": path is not None,
        "chain_root": C.fingerprint(path[-1]) if path else None,
        "chain_length": len(path) if path else None,
        "key_match": None if key is None else C.same_public_key(key, cert),
    }
    return facts


def identity_facts(cert, chain, reasons, roots, now):
    """The node's inspect result for one identity: ``state`` (``valid``/``renew``),
    ``reasons`` and, with a certificate, its root, serial, fingerprint, end and issuer."""
    facts = {"state": "renew" if reasons else "valid", "reasons": reasons}
    if cert is not None:
        path, validity = _validity_facts(cert, chain, roots, now)
        facts["root_fingerprint"] = C.fingerprint(path[-1]) if path else None
        facts.update(validity)
    return facts


def describe(path, profile, key_path, chain_path, roots, intermediates, now, kind):
    """What ``node_info`` reports of one certificate file and the key and chain beside it:
    the files' modes and owners, and ``certificate_facts`` when the certificate reads."""
    cert_state, cert_state_error = read_state(path)
    key_state, _e = read_state(key_path)
    chain_state, _e = read_state(chain_path)
    item = {"path": path, "profile": profile["name"] if profile else None, "kind": kind,
            "exists": bool(cert_state.get("exists")), "error": cert_state_error,
            "key_path": key_path if key_state.get("exists") else None,
            "chain_path": chain_path if chain_state.get("exists") else None,
            "mode": mode_text(cert_state.get("mode")), "owner": owner_text(cert_state),
            "key_mode": mode_text(key_state.get("mode")), "key_owner": owner_text(key_state),
            "chain_mode": mode_text(chain_state.get("mode")),
            "expected_mode": profile["mode"] if profile else None,
            "expected_key_mode": profile["key_mode"] if profile else None,
            "key_error": None}
    if not item["exists"] or item["error"]:
        return item
    cert, error = read(path, C.load_certificate)
    if cert is None:
        item["error"] = error or "the file disappeared while it was read"
        return item
    chain = []
    if chain_path and chain_state.get("exists"):
        bundle, _error = read(chain_path, C.load_certificates)
        chain = list((bundle or [])[1:])
    key = None
    if key_state.get("exists"):
        key, item["key_error"] = read(key_path, C.load_private_key)
    item.update(certificate_facts(cert, chain + list(intermediates), roots, key, now))
    return item


# --------------------------------------------------------------------------- ACME (pure)

# The renewal reasons of an ACME certificate (the acme role prints them) are the same
# assessment as a zone identity's, told in the role's words. Reasons an ACME certificate is
# not judged by (subject, key usages, issuer, revocation) are left out.
ACME_EXPIRY = frozenset({"not_yet_valid", "expired", "expiring"})
ACME_NO_KEY = frozenset({"missing_key", "unreadable_key"})


def acme_key_spec(key_type, key_curve, key_size):
    """The key specification an ACME certificate's settings ask for."""
    if key_type == "ec":
        return {"type": "ec", "curve": key_curve}
    return {"type": "rsa", "size": int(key_size)}


def san_texts(cert):
    """The subject alternative names as community.crypto writes them (``DNS:a``, ``IP:b``),
    in the certificate's order."""
    try:
        san = cert.extensions.get_extension_for_class(C.x509.SubjectAlternativeName).value
    except C.x509.ExtensionNotFound:
        return []
    prefixes = ((C.x509.DNSName, "DNS"), (C.x509.IPAddress, "IP"),
                (C.x509.RFC822Name, "email"), (C.x509.UniformResourceIdentifier, "URI"))
    out = []
    for name in san:
        prefix = next((p for kind, p in prefixes if isinstance(name, kind)), None)
        out.append("%s:%s" % (prefix, name.value) if prefix else str(name.value))
    return out


def acme_reasons(loaded, domains, key_spec, renew_before_days, directory, state, now):
    """Why an ACME certificate must be requested again, as the lines the acme role prints;
    ``[]`` when it is fine.

    ``loaded``: what ``load`` found (``cert.pem``, ``privkey.pem``); ``domains``: the names it
    must hold; ``key_spec``: ``acme_key_spec``; ``state``: its ``state.json`` (``directory``:
    the ACME directory that issued it), ``{}`` when unknown; ``directory``: the one in use.
    """
    cert = loaded["cert"]
    if cert is None:
        return ["no readable certificate"]
    profile = {"name": "acme", "zone": "acme", "cert_path": "cert.pem",
               "key_path": "privkey.pem", "key": key_spec,
               "renew_before": int(renew_before_days) * 86400,
               "dns": sorted({d.lower() for d in domains}), "ip": [],
               "common_name": C.common_name(cert), "key_usage": [],
               "extended_key_usage": []}
    codes = {r["reason"] for r in needs_regeneration(profile, loaded, [], now)}
    out = []
    if codes & ACME_EXPIRY:
        out.append("expires %s UTC, within %s days" % (
            C.not_after(cert).strftime("%Y-%m-%d %H:%M"), renew_before_days))
    if "names" in codes:
        out.append("names differ: has " + ",".join(san_texts(cert)))
    if codes & ACME_NO_KEY:
        out.append("no readable key")
    elif "key_mismatch" in codes:
        out.append("key does not match the certificate")
    elif "key_type" in codes:
        out.append("key type differs")
    issued_by = state.get("directory") if isinstance(state, dict) else None
    if (issued_by or "") != directory:
        out.append("issued by another ACME directory (%s)" % (issued_by or "unknown"))
    return out


# --------------------------------------------------------------------------- writing

class Changes:
    """Every write of one module run goes through here: it records what changed (``changed``,
    ``files``) and, in check mode, writes nothing."""

    def __init__(self, check):
        self.check = check
        self.changed = False
        self.files = []

    def note(self, path):
        self.changed = True
        self.files.append(path)

    def write(self, path, data, mode, uid, gid, keep_previous=False):
        self.note(path)
        if not self.check:
            _fs.atomic_write(path, data, mode, uid, gid, keep_previous=keep_previous)

    def rename(self, src, dst):
        self.note(dst)
        if not self.check:
            _fs.atomic_rename(src, dst, keep_previous=True)

    def remove(self, path):
        self.note(path)
        if not self.check:
            _fs.remove(path)

    def ensure_meta(self, path, mode, uid, gid):
        st = _fs.file_state(path)
        if st["exists"] and (st["mode"], st["uid"], st["gid"]) != (mode, uid, gid):
            self.note(path)
            if not self.check:
                _fs.set_meta(path, mode, uid, gid)


class Identity:
    """One profile's key, certificate and full chain on this node.

    ``zone_dir``: the zone's directory (created by the run, so in check mode it may not exist
    yet); ``changes``: the run's ``Changes``; ``now``: the run's time.
    """

    def __init__(self, profile, zone_dir, changes, now):
        self.profile = profile
        self.name = profile["name"]
        self.dir = zone_dir
        self.changes = changes
        self.check = changes.check
        self.now = now
        self.loaded = None

    # ------------------------------------------------------------------ what is there
    def load(self):
        p = self.profile
        self.loaded = load(p["cert_path"], p["key_path"], p["chain_path"])
        return self.loaded

    def needs_regeneration(self, issuers, revoked):
        return needs_regeneration(self.profile, self.loaded, issuers, self.now, revoked)

    def facts(self, reasons, roots):
        return identity_facts(self.loaded["cert"], self.loaded["chain"], reasons, roots,
                              self.now)

    def installed(self):
        """What the node says it holds (untrusted for the controller), or None."""
        cert = self.loaded["cert"]
        if cert is None:
            return None
        return {"certificate": C.certificate_pem(cert), "fingerprint": C.fingerprint(cert)}

    def pending_keys(self):
        """``[(path, key)]`` of the readable pending keys of a profile (tagged ones, then the
        legacy ``<key>.next``)."""
        directory, base = os.path.split(self.profile["key_path"])
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

    def preflight(self):
        """Everything that would stop this profile's install, found before a CSR goes to the
        CA: an unknown owner or group, a missing or unwritable directory, a link or a
        non-regular file where the key, certificate, chain (or their .prev) will go."""
        profile = self.profile
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

    # ------------------------------------------------------------------ request
    def pending_key(self, current_key, reasons):
        """The key the next certificate will carry: the live one (key reuse, never after a
        revocation), a pending one from an interrupted or overlapping run, or a new one,
        kept as ``<key>.next-<public key tag>`` so that no run overwrites another's."""
        profile = self.profile
        if not I.needs_new_key(profile, reasons, current_key is not None):
            return current_key, None
        for path, key in self.pending_keys():
            if C.describe_key(key) == profile["key"] and (
                    current_key is None or not C.same_public_key(key, current_key)):
                return key, path
        key = C.generate_key(profile["key"])
        uid, gid = _fs.resolve_owner(profile["owner"], profile["group"])
        pending_path = I.pending_key_path(profile["key_path"], key)
        self.changes.write(pending_path, C.private_key_pem(key), int(profile["key_mode"], 8),
                           uid, gid)
        return key, pending_path

    def request(self, reasons):
        """``{csr, reasons}``: the next key staged beside the live one and its CSR (in check
        mode no key is made and the CSR is None)."""
        if self.check:
            self.changes.changed = True
            return {"csr": None, "reasons": reasons}
        profile = self.profile
        next_key, _path = self.pending_key(self.loaded["key"], reasons)
        csr = C.build_csr(next_key, profile["common_name"], profile["dns"], profile["ip"])
        return {"csr": C.csr_pem(csr), "reasons": reasons}

    def keep(self, uid, gid):
        """A valid identity: its files get the profile's modes and owner, and pending keys
        left over by an old run go."""
        profile = self.profile
        self.changes.ensure_meta(profile["cert_path"], int(profile["mode"], 8), uid, gid)
        self.changes.ensure_meta(profile["chain_path"], int(profile["mode"], 8), uid, gid)
        self.changes.ensure_meta(profile["key_path"], int(profile["key_mode"], 8), uid, gid)
        self.remove_stale_pending()

    def remove_stale_pending(self):
        for path, _key in self.pending_keys():
            try:
                age = self.now.timestamp() - os.lstat(path).st_mtime
            except OSError:
                continue
            if age > STALE_PENDING:
                self.changes.remove(path)

    # ------------------------------------------------------------------ install
    def install(self, item, roots, zone):
        """Check the signed certificate against the zone's roots and its pending key, then
        switch key, certificate and full chain as one unit."""
        profile, name = self.profile, self.name
        cert = C.load_certificate(item.get("certificate") or "",
                                  path="certificate for profile %s" % name)
        chain = []
        for pem in item.get("chain") or []:
            chain.extend(C.load_certificates(pem, path="chain for profile %s" % name))
        if C.chain_to(cert, chain, roots) is None:
            raise TrustzoneError("the new %s certificate does not chain to a current root of "
                                 "zone %s" % (name, zone), profile["cert_path"],
                                 fix="re-run the play so that the CA signs a fresh request")
        uid, gid = self.preflight()
        key_path = self.matching_key(cert)
        I.require_match(key_path, name, profile["cert_path"])
        mode = int(profile["mode"], 8)
        fullchain = C.certificate_pem(cert) + "".join(C.certificate_pem(c) for c in chain)
        # Staged chain, then staged certificate: the commit point of the switch.
        self.changes.write(I.staged_path(profile["chain_path"], cert), fullchain, mode, uid,
                           gid)
        self.changes.write(I.staged_path(profile["cert_path"], cert),
                           C.certificate_pem(cert), mode, uid, gid)
        self.finish_switch(I.key_tag(cert), key_path)

    def matching_key(self, cert):
        """Path of the key on this node that matches ``cert``: its tagged pending key, the
        legacy pending key or the live key; None if none does."""
        key_path = self.profile["key_path"]
        candidates = [I.pending_key_path(key_path, cert), key_path + PENDING_SUFFIX, key_path]
        for candidate in candidates:
            try:
                data = _fs.read_file(candidate)
                if data is not None and C.same_public_key(
                        C.load_private_key(data, path=candidate), cert):
                    return candidate
            except TrustzoneError:
                continue
        return None

    def finish_switch(self, tag, key_path):
        """Renames after the commit point: key, chain, certificate (each keeping .prev).
        Every step is skipped when already done, so a crashed switch is finished by
        calling it again."""
        profile = self.profile
        if key_path != profile["key_path"]:
            self.changes.rename(key_path, profile["key_path"])
        staged_chain = profile["chain_path"] + I.STAGED + tag
        if _fs.file_state(staged_chain)["exists"] or self.check:
            self.changes.rename(staged_chain, profile["chain_path"])
        self.changes.rename(profile["cert_path"] + I.STAGED + tag, profile["cert_path"])

    def recover(self):
        """Finish (or discard) a switch a crash interrupted, before anything else."""
        profile = self.profile
        cert_dir, cert_base = os.path.split(profile["cert_path"])
        chain_dir, chain_base = os.path.split(profile["chain_path"])
        if not os.path.isdir(cert_dir) or not os.path.isdir(chain_dir):
            return
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
            return
        keys = {}
        for path, key in self.pending_keys():
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
            self.changes.remove(path)
        if plan["finish"]:
            self.preflight()
            self.finish_switch(plan["finish"], keys[plan["finish"]])

    # ------------------------------------------------------------------ rollback
    def rollback(self, revoked, roots=()):
        """Swap the certificate, chain and (if it changed) key with the previous generation
        kept as ``.prev``. Doing it twice rolls forward again. ``revoked()`` gives the revoked
        serials (read only when there is a previous certificate to judge); ``roots``, when
        given, the roots the previous certificate must still chain to. Returns the SHA-256
        fingerprint of the certificate put back."""
        profile = self.profile
        prev_cert_path = profile["cert_path"] + _fs.PREVIOUS_SUFFIX
        data = _fs.read_file(prev_cert_path)
        if data is None:
            raise TrustzoneError("there is no previous certificate to roll back to",
                                 prev_cert_path, fix="nothing to undo for this profile")
        cert = C.load_certificate(data, path=prev_cert_path)
        chain = _fs.read_file(profile["chain_path"] + _fs.PREVIOUS_SUFFIX) or data
        refusal = I.rollback_refusal(cert, self.now, revoked())
        if not refusal and roots and C.chain_to(
                cert, [c for c in C.load_certificates(chain, path=prev_cert_path)
                       if C.fingerprint(c) != C.fingerprint(cert)], list(roots)) is None:
            refusal = ("the previous certificate (serial %x) does not chain to a root the zone "
                       "trusts now (its root was retired); rolling back to it would undo the "
                       "root rotation" % cert.serial_number)
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
        uid, gid = self.preflight()
        mode = int(profile["mode"], 8)
        # The same one-unit switch as an install: the previous key as a pending key, the
        # previous chain and certificate staged, then the renames (current -> .prev).
        key_src = profile["key_path"]
        if swap_key is not None:
            key_src = I.pending_key_path(profile["key_path"], cert)
            self.changes.write(key_src, swap_key, int(profile["key_mode"], 8), uid, gid)
        self.changes.write(I.staged_path(profile["chain_path"], cert), chain, mode, uid, gid)
        self.changes.write(I.staged_path(profile["cert_path"], cert), data, mode, uid, gid)
        self.finish_switch(I.key_tag(cert), key_src)
        return C.fingerprint(cert)
