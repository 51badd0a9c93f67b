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

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _policy as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


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


def check_unique_names(wanted_profiles):
    """Raise when two hosts would hold the same name: one node must never get another's."""
    names_by_host = {}
    for host, profiles in wanted_profiles.items():
        merged = {"dns": set(), "ip": set()}
        for profile in profiles or []:
            merged["dns"].update(profile["dns"])
            merged["ip"].update(profile["ip"])
        names_by_host[host] = merged
    clashes = P.duplicate_names(names_by_host)
    if clashes:
        text = "; ".join("%s claimed by %s" % (n, ", ".join(h)) for n, h in sorted(clashes.items()))
        raise TrustzoneError("two hosts would hold the same name: %s" % text,
                             fix="give each host its own trustzone_node_fqdn, "
                                 "trustzone_node_addresses and trustzone_certs_extra_names")


def sign_requests(requests, issuer_cert, issuer_key, chain, now):
    """Sign every acceptable request. Returns ``(issued, refused)``.

    ``issued[host][profile] = {'certificate', 'chain', 'serial', 'not_after', 'fingerprint'}``;
    ``refused[host] = ['profile server: subjectAltName: ... not allowed', ...]``.
    """
    issued, refused = {}, {}
    chain_pems = [C.certificate_pem(c) for c in chain]
    for req in requests:
        host, profile = req["host"], req["profile"]
        try:
            csr = C.load_csr(req.get("csr") or "", path="CSR of %s/%s" % (host, profile["name"]))
        except TrustzoneError as exc:
            refused.setdefault(host, []).append("profile %s: %s" % (profile["name"], exc))
            continue
        problems = P.csr_violations(csr, profile)
        if problems:
            refused.setdefault(host, []).extend(
                "profile %s: %s" % (profile["name"], p) for p in problems)
            continue
        start, end = P.validity_window(now, profile["lifetime"], issuer_cert)
        names = C.names_of(csr)
        cert = C.build_leaf_certificate(
            csr.public_key(),
            C.zone_name_attributes(profile["zone"], profile["common_name"]),
            names["dns"], names["ip"], issuer_cert, issuer_key, start, end,
            profile["key_usage"], profile["extended_key_usage"])
        issued.setdefault(host, {})[profile["name"]] = {
            "certificate": C.certificate_pem(cert),
            "chain": chain_pems,
            "serial": "%x" % cert.serial_number,
            "not_after": C.not_after(cert).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fingerprint": C.fingerprint(cert),
        }
    return issued, refused


def ledger_entries(issued, zone, issuer_cert):
    """Rows for the issuance ledger, one per certificate in ``sign_requests``' result."""
    entries = []
    for host in sorted(issued):
        for profile in sorted(issued[host]):
            item = issued[host][profile]
            cert = C.load_certificate(item["certificate"])
            entries.append({
                "serial": item["serial"], "zone": zone, "host": host, "profile": profile,
                "subject": C.subject_text(cert), "sans": C.names_of(cert),
                "not_before": C.not_before(cert).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "not_after": item["not_after"], "fingerprint": item["fingerprint"],
                "issuer": C.subject_text(issuer_cert),
                "issuer_fingerprint": C.fingerprint(issuer_cert),
            })
    return entries
