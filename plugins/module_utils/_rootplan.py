# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The CA host's plan: which roots and intermediates the zone wants this run, and where its
root rotation stands.

``plan`` is a function of (the state in force, a ``_ca.Draft``; the zone_root task's
parameters; now): it changes a copy of the draft in memory and says what it did, and
``_ca.CaDir.commit`` writes the result. Nothing here reads or writes files; new keys are
generated here (randomness, not I/O).
"""

from __future__ import annotations

import datetime
import secrets

from ansible_collections.trustzone.pki.plugins.module_utils import _constraints
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _detached
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils import _publish
from ansible_collections.trustzone.pki.plugins.module_utils import _rotation as R
from ansible_collections.trustzone.pki.plugins.module_utils import _signing
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


class RootNeeded(Exception):
    """The plan needs a new root (``stem`` ``root`` or ``next``) that only the holder of the
    offline root store can make: the controller makes it and runs the task again."""

    def __init__(self, stem):
        super().__init__(stem)
        self.stem = stem


def supplied_root(ca, params, stem, now, after=None):
    """With an offline root, the new root for ``stem`` out of the certificates of the
    controller's root store (``root_certs``): one this zone does not know yet (not in force,
    not next, not retired), unexpired, self-signed, not issued before ``after`` (the root it
    follows) - the newest. Raises RootNeeded when there is none."""
    known = {C.fingerprint(C.load_certificate(data)) for rel, data in ca.files.items()
             if rel.endswith(".crt")}
    candidates = []
    for pem in params.get("root_certs") or []:
        cert = C.load_certificate(pem)
        if (C.fingerprint(cert) in known or C.not_after(cert) <= now
                or not C.is_signed_by(cert, cert) or not C.can_sign_certificates(cert)
                or (after is not None and C.not_before(cert) < after)):
            continue
        candidates.append(cert)
    if not candidates:
        raise RootNeeded(stem)
    cert = max(candidates, key=C.not_before)
    return _detached.DeferredKey(cert, ca.debts), cert


def root_facts(cert, now):
    """What zone_root reports of one CA certificate."""
    end = C.not_after(cert)
    return {
        "fingerprint": C.fingerprint(cert),
        "subject": C.subject_text(cert),
        "not_after": _layout.iso(end),
        "days_left": int((end - now).total_seconds() // 86400),
    }


def new_key(ca, params, zone, role):
    """A new CA key for ``role`` (``root`` or ``intermediate``): in the zone's PKCS#11 token
    when it has one for that role (``_pkcs11.TokenAccess``), else in memory (written
    encrypted with the CA passphrase)."""
    spec = C.normalize_key_spec(params["key_type"], params["key_size"], params["key_curve"])
    token = getattr(ca, "token", None)
    if token is None or not token.holds(role):
        return C.generate_key(spec)
    if spec["type"] == "ed25519":
        raise TrustzoneError("an ed25519 key cannot be made in the PKCS#11 token",
                             fix="set trustzone_ca_key_type to ec or rsa")
    return token.generate("trustzone-%s-%s-%s" % (zone, role, secrets.token_hex(6)), spec)


def new_root(params, zone, now, key=None):
    spec = C.normalize_key_spec(params["key_type"], params["key_size"], params["key_curve"])
    key = key if key is not None else C.generate_key(spec)
    cn = params["common_name"] or "trustzone %s root CA" % zone
    subject = C.zone_name_attributes(zone, cn, unique=secrets.token_hex(8))
    lifetime = _parse.parse_duration(params["lifetime"], "lifetime")
    cert = C.build_ca_certificate(key, subject, now - datetime.timedelta(minutes=5),
                                  now + datetime.timedelta(seconds=lifetime))
    return key, cert


def wanted_constraints(params):
    """The name constraints the zone's intermediates must carry (``_constraints.plan``), or
    None when the zone signs without them."""
    if not params.get("name_constraints"):
        return None
    if not params["intermediate"]:
        raise TrustzoneError("name constraints sit on the intermediate CA, but "
                             "trustzone_ca_intermediate is false",
                             fix="set trustzone_ca_intermediate: true, or "
                                 "trustzone_ca_name_constraints: false to sign with the root")
    if params.get("zone_names") is None:
        raise TrustzoneError("zone_names is missing: it is filled from the inventory by the "
                             "zone_root action plugin",
                             fix="run the module through its action (the trustzone.pki.ca role)")
    return _constraints.plan(params["zone_names"], params.get("name_constraints_permitted"),
                             params.get("name_constraints_pinned", False))


def new_intermediate(params, zone, root_key, root_cert, now, constraints=None, key=None):
    spec = C.normalize_key_spec(params["key_type"], params["key_size"], params["key_curve"])
    key = key if key is not None else C.generate_key(spec)
    subject = C.zone_name_attributes(zone, "trustzone %s intermediate CA" % zone,
                                     unique=secrets.token_hex(8))
    lifetime = _parse.parse_duration(params["intermediate_lifetime"], "intermediate_lifetime")
    start, end = _signing.validity_window(now, lifetime, root_cert)
    cert = C.build_ca_certificate(
        key, subject, start, end, path_length=0, issuer_cert=root_cert, issuer_key=root_key,
        name_constraints=_constraints.extension(constraints) if constraints else None,
        extensions=_publish.leaf_extensions(params.get("publish_url"), root_cert))
    return key, cert


def extended_root(params, key, cert, now):
    """The same root - same key, same subject - with a new validity, so every leaf it signed
    keeps validating against it."""
    lifetime = _parse.parse_duration(params["lifetime"], "lifetime")
    return C.build_ca_certificate(key, cert.subject, now - datetime.timedelta(minutes=5),
                                  now + datetime.timedelta(seconds=lifetime))


def ensure_intermediate(ca, stem, params, zone, root_key, root_cert, now, constraints=None):
    """The intermediate of ``root_cert`` (stem ``intermediate`` or ``next-intermediate``) in
    the planned state ``ca``: made when missing, not signed by that root, due, or carrying
    other name constraints than ``constraints``; the one it replaces is archived. Returns
    ``(key, cert, why)``: why it was made, or None."""
    ikey, icert = ca.load_pair(stem, params["passphrase"])
    why = "missing" if icert is None else None
    if icert is not None and not C.is_signed_by(icert, root_cert):
        why = "not signed by its root"
    elif icert is not None:
        left = (C.not_after(icert) - now).total_seconds()
        if params["intermediate_force"]:
            why = "forced"
        elif left < _parse.parse_duration(params["intermediate_rotate_before"],
                                          "intermediate_rotate_before"):
            why = "due"
        else:
            why = _constraints.difference(_constraints.of_certificate(icert), constraints) \
                or _publish.distribution_reason(icert, params.get("publish_url"))
    if why is None:
        return ikey, icert, None
    ca.archive(stem)
    ikey, icert = new_intermediate(params, zone, root_key, root_cert, now, constraints,
                                   key=new_key(ca, params, zone, "intermediate"))
    ca.write_pair(stem, ikey, icert, params["passphrase"])
    return ikey, icert, why


def plan(current, params, zone, now):
    """The CA state this run wants, from the state in force (``current``, a ``_ca.Draft``),
    the task's parameters and ``now``: ``(wanted, facts)``. ``wanted`` is a changed copy
    (or an equal one: nothing to do); nothing is written here. New keys are generated here
    (randomness, not I/O)."""
    passphrase = params["passphrase"]
    constraints = wanted_constraints(params)
    ca = current.copy()
    if current.source == "legacy":
        ca.validate(passphrase)  # migrated once: whatever does not fit is reported, not guessed
        if ca.promotion_started():  # a confirmed retire of the old code stopped half-way
            ca.promote_next()
            ca.write_state(None)
    offline = bool(params.get("root_offline"))
    if offline and "root.key" in ca.files:
        raise TrustzoneError("the zone's root key is on the CA host, but "
                             "trustzone_ca_root_offline is true", ca.file("root.key"),
                             fix="keep trustzone_ca_root_offline false for this zone (a zone "
                                 "created with an offline root keeps its root key off the "
                                 "CA host from the start)")
    key, cert = ca.load_pair("root", passphrase)
    state = ca.load_state()
    created = False
    if cert is None:
        if state is not None:
            raise TrustzoneError("a rotation is recorded but the root is missing",
                                 ca.file("root.crt"),
                                 fix="restore the CA directory from a backup")
        key, cert = supplied_root(ca, params, "root", now) if offline else new_root(
            params, zone, now, key=new_key(ca, params, zone, "root"))
        created = True
        ca.write_pair("root", key, cert, passphrase)

    left = C.not_after(cert) - now
    due = params["rotate_force"] or left.total_seconds() < _parse.parse_duration(
        params["rotate_before"], "rotate_before")
    step = R.plan(state, params["rotate"], due=due)
    extended = False
    if params["extend"] and _parse.parse_duration(params["rotate_before"], "rotate_before") >= \
            _parse.parse_duration(params["lifetime"], "lifetime"):
        raise TrustzoneError("rotate_before (%s) must be shorter than lifetime (%s) when "
                             "extending: the extended root would be due again at once"
                             % (params["rotate_before"], params["lifetime"]),
                             fix="set trustzone_ca_rotate_before below trustzone_ca_lifetime")
    if params["extend"] and due and R.phase_of(state) == "stable" and params["rotate"] == "none":
        cert = extended_root(params, key, cert, now)
        extended = True
        ca.archive("root")
        ca.write_pair("root", key, cert, passphrase)
    nkey, ncert = ca.load_pair("next", passphrase)
    if step["create_next"]:
        if ncert is None:
            nkey, ncert = supplied_root(ca, params, "next", now, after=C.not_before(
                cert)) if offline else new_root(params, zone, now,
                                                key=new_key(ca, params, zone, "root"))
            ca.write_pair("next", nkey, ncert, passphrase)
        state = {"phase": "trust", "old": C.fingerprint(cert), "new": C.fingerprint(ncert),
                 "started": _layout.iso(now)}
    elif step["changed"] and step["phase_after"] == "use":
        state = dict(state, phase="use")
    elif step["promote"]:
        if not params["retire_confirmed"]:
            raise TrustzoneError("refusing to retire the old root without proof that no leaf "
                                 "still chains to it", ca.file("root.crt"),
                                 fix="run playbooks/rotate_root.yml, which inspects every node "
                                     "first")
        if ncert is not None:
            key, cert = nkey, ncert
        elif C.fingerprint(cert) != state.get("new"):
            raise TrustzoneError("the next root is missing", ca.file("next.crt"),
                                 fix="restore the CA directory from a backup")
        nkey = ncert = None
        ca.promote_next()
        state = None
    if step["changed"]:
        ca.write_state(state)

    phase = R.phase_of(state)
    trusted, issuer = R.roots_for(phase, cert, ncert)
    intermediates = {}
    cas = [(key, cert)] + ([(nkey, ncert)] if ncert is not None else [])
    reissued = {}
    if params["intermediate"]:
        for stem, rkey, rcert in (("intermediate", key, cert), ("next-intermediate", nkey, ncert)):
            if rcert is None:
                continue
            ikey, icert, why = ensure_intermediate(ca, stem, params, zone, rkey, rcert, now,
                                                   constraints)
            intermediates[C.fingerprint(rcert)] = icert
            cas.append((ikey, icert))
            if why is not None:
                reissued[stem] = why
    if C.not_after(issuer) <= now:
        raise TrustzoneError("the zone's issuing root expired on %s" % C.not_after(issuer).date(),
                             ca.file("root.crt"),
                             fix="rotate the root with playbooks/rotate_root.yml")
    facts = {"created": created, "extended": extended, "step": step, "phase": phase,
             "cert": cert, "ncert": ncert, "trusted": trusted, "issuer": issuer,
             "intermediates": intermediates, "cas": cas, "reissued": reissued,
             "name_constraints": constraints,
             "changed": created or extended or step["changed"] or bool(reissued)}
    return ca, facts
