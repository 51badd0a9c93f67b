# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Batch issuance on the CA: check every request against its host's policy, then sign.

Pure: parsed CA material and request data in, certificates and refusals out. The caller
does the I/O (reading the CA key, writing records).
"""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils import _args
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _publish
from ansible_collections.trustzone.pki.plugins.module_utils import _signing
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


# The protocol between the node task and the sign task. Each host's node result (what
# trustzone.pki.node returned, registered under NODE_RESULT_VAR unless the sign task's
# result_var names another variable) is untrusted; the sign action reads exactly two keys of
# it - ``requests`` ({profile: {'csr', 'reasons'}}, collect_requests) and ``installed``
# ({profile: {'certificate', 'fingerprint'}}, installed_certificates) - and nothing else
# (what may be signed comes from the inventory). A failed, skipped or absent result
# contributes nothing.
NODE_RESULT_VAR = "__trustzone_certs_node"


def sign_module_args(module=False):
    """The sign task's ``AnsibleModule`` keyword arguments: the action plugin's options on the
    controller, plus (``module=True``) the two the action sets for the module on the CA host."""
    own = dict(
        hosts=dict(type="list", elements="str"),
        result_var=dict(type="str", default=NODE_RESULT_VAR),
        # the CA host's metrics file, rewritten after the ledger changed (docs/metrics.md)
        metrics_dir=dict(type="path"),
        metrics_dir_optional=dict(type="bool", default=False),
    )
    if module:
        own.update(requests=dict(type="list", elements="dict", default=[]),
                   installed=dict(type="dict", default={}),
                   publish_url=dict(type="str"))
    return _args.module_args(_args.ZONE_CA_KEYS, _args.PKCS11, **own)


def collect_requests(hosts, node_results, wanted_profiles):
    """Pair what nodes asked for with what the inventory allows them.

    ``node_results[host]`` is the node module's result (untrusted: only CSRs are taken from it);
    ``wanted_profiles[host]`` the profiles resolved on the controller from the inventory.
    Returns ``(requests, refused)``: requests as ``{'host', 'profile', 'csr', 'reasons'}``.
    """
    requests, refused = [], {}
    for host in hosts:
        result = node_results.get(host)
        if not isinstance(result, dict) or result.get("failed") or result.get("skipped"):
            continue
        wanted = {p["name"]: p for p in (wanted_profiles.get(host) or [])}
        pending = result.get("requests") or {}
        if not isinstance(pending, dict):
            refused.setdefault(host, []).append(
                "requests: the node returned %s, not a mapping of profiles" % type(pending).__name__)
            continue
        for name, item in sorted(pending.items()):
            if name not in wanted:
                refused.setdefault(host, []).append(
                    "profile %s: the inventory defines no such profile for %s" % (name, host))
                continue
            reasons = item.get("reasons") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(reasons, list):
                refused.setdefault(host, []).append(
                    "profile %s: the node's request is malformed" % name)
                continue
            requests.append({"host": host, "profile": wanted[name], "csr": item.get("csr"),
                             "reasons": [r.get("reason") for r in reasons
                                         if isinstance(r, dict)]})
    return requests, refused


def installed_certificates(hosts, node_results, wanted):
    """``{host: {profile: {'certificate', 'fingerprint'}}}``: what each node reported as
    installed (``installed`` of the node result, untrusted) for the profiles the inventory
    gives it; the sign module reconciles the ledger with it. A result without ``installed``
    (a node module before issue 14) contributes nothing."""
    out = {}
    for host in hosts:
        result = node_results.get(host)
        if not isinstance(result, dict) or result.get("failed") or result.get("skipped"):
            continue
        reported = result.get("installed")
        if not isinstance(reported, dict):
            continue
        names = {p["name"] for p in wanted.get(host) or []}
        for profile, item in reported.items():
            if profile in names and isinstance(item, dict):
                out.setdefault(host, {})[profile] = {
                    "certificate": str(item.get("certificate") or ""),
                    "fingerprint": str(item.get("fingerprint") or "")}
    return out


def sign_requests(requests, issuer_cert, issuer_key, chain, now):
    """Sign every acceptable request. Returns ``(issued, refused)``.

    ``issued[host][profile] = {'certificate', 'chain', 'serial', 'not_after', 'fingerprint'}``;
    ``refused[host] = ['profile server: subjectAltName: ... not allowed', ...]``.
    """
    issued, refused, _entries = sign_batch(requests, issuer_cert, issuer_key, chain, now)
    return issued, refused


def sign_batch(requests, issuer_cert, issuer_key, chain, now, zone=None, publish_url=None):
    """``sign_requests`` plus the issuance ledger's rows for what it signed, made from the data
    at hand (no certificate is parsed again). Returns ``(issued, refused, entries)``; the
    rows' zone is ``zone``, or each profile's zone when None. ``publish_url`` (the zone's
    base URL, checked by ``_publish.check_url``; from the controller, never from a node) puts
    CRL Distribution Points and AIA caIssuers naming the issuer into every leaf."""
    issued, refused, entries = {}, {}, []
    chain_pems = [C.certificate_pem(c) for c in chain]
    signer = C.LeafSigner(issuer_cert, issuer_key)
    extensions = _publish.leaf_extensions(_publish.check_url(publish_url), issuer_cert)
    issuer_text = C.subject_text(issuer_cert)
    issuer_fingerprint = C.fingerprint(issuer_cert)
    windows = {}
    for req in requests:
        host, profile = req["host"], req["profile"]
        try:
            csr, facts = C.load_csr_facts(req.get("csr") or "",
                                          path="CSR of %s/%s" % (host, profile["name"]))
        except TrustzoneError as exc:
            refused.setdefault(host, []).append("profile %s: %s" % (profile["name"], exc))
            continue
        problems = _signing.csr_violations(csr, profile, facts)
        if problems:
            refused.setdefault(host, []).extend(
                "profile %s: %s" % (profile["name"], p) for p in problems)
            continue
        lifetime = profile["lifetime"]
        if lifetime not in windows:
            start, end = _signing.validity_window(now, lifetime, issuer_cert)
            windows[lifetime] = (start, end, _layout.iso(start), _layout.iso(end))
        start, end, not_before, not_after = windows[lifetime]
        subject = C.zone_name_attributes(profile["zone"], profile["common_name"])
        serial = C.random_serial()
        cert = signer.sign(facts["public_key"], subject, facts["dns"], facts["ip"], start, end,
                           profile["key_usage"], profile["extended_key_usage"], serial=serial,
                           extensions=extensions)
        serial_hex = "%x" % serial
        fingerprint = C.fingerprint(cert)
        issued.setdefault(host, {})[profile["name"]] = {
            "certificate": C.certificate_pem(cert),
            "chain": chain_pems,
            "serial": serial_hex,
            "not_after": not_after,
            "fingerprint": fingerprint,
        }
        entries.append({
            "serial": serial_hex, "zone": zone if zone is not None else profile["zone"],
            "host": host, "profile": profile["name"], "subject": subject.rfc4514_string(),
            "sans": {"dns": facts["dns"], "ip": facts["ip"]},
            "not_before": not_before, "not_after": not_after,
            "fingerprint": fingerprint, "issuer": issuer_text,
            "issuer_fingerprint": issuer_fingerprint,
        })
    entries.sort(key=lambda e: (e["host"], e["profile"]))
    return issued, refused, entries


def ledger_entries(issued, zone, issuer_cert):
    """Rows for the issuance ledger, one per certificate in ``sign_requests``' result, read
    back from the certificates (``sign_batch`` returns the same rows without parsing)."""
    entries = []
    for host in sorted(issued):
        for profile in sorted(issued[host]):
            item = issued[host][profile]
            cert = C.load_certificate(item["certificate"])
            entries.append({
                "serial": item["serial"], "zone": zone, "host": host, "profile": profile,
                "subject": C.subject_text(cert), "sans": C.names_of(cert),
                "not_before": _layout.iso(C.not_before(cert)),
                "not_after": item["not_after"], "fingerprint": item["fingerprint"],
                "issuer": C.subject_text(issuer_cert),
                "issuer_fingerprint": C.fingerprint(issuer_cert),
            })
    return entries


def installed_fingerprints(installed, pending=()):
    """``{host: {profile: fingerprint}}`` from the nodes' ``installed`` results (untrusted).

    The fingerprint is computed here from the certificate a node returned (the node's own
    ``fingerprint`` is used only when it sent no certificate, and only when it is 64 hex
    digits); anything malformed is dropped. ``pending`` holds ``(host, profile)`` pairs being
    signed in this batch: what they hold now is about to be replaced, so they are left out.
    """
    out = {}
    pending = set(pending)
    for host, profiles in (installed or {}).items():
        if not isinstance(profiles, dict):
            continue
        for profile, item in profiles.items():
            if (host, profile) in pending or not isinstance(item, dict):
                continue
            fingerprint = None
            if item.get("certificate"):
                try:
                    fingerprint = C.fingerprint(C.load_certificate(item["certificate"]))
                except (TrustzoneError, ValueError, TypeError):
                    fingerprint = None
            else:
                given = str(item.get("fingerprint") or "").lower()
                if len(given) == 64 and all(c in "0123456789abcdef" for c in given):
                    fingerprint = given
            if fingerprint:
                out.setdefault(str(host), {})[str(profile)] = fingerprint
    return out
