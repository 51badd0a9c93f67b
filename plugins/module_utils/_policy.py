# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Decisions: pure functions of (what is there, what is wanted, now).

Nothing here touches files, the network or Ansible. Parsed objects come in, verdicts go out.
"""

from __future__ import annotations

import datetime
import ipaddress
import re

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_DNS_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DURATION_RE = re.compile(r"(\d+)\s*([smhdwy])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}

# Renewal reasons, in the order they are checked and reported.
REASONS = (
    "missing_key", "unreadable_key", "missing_certificate", "unreadable_certificate",
    "key_mismatch", "key_type", "not_yet_valid", "expired", "expiring", "names", "subject",
    "key_usage", "extended_key_usage", "issuer", "revoked",
)


# --------------------------------------------------------------------------- small parsers

def parse_duration(value, what="duration"):
    """``'90d'``, ``'12h'``, ``'1d12h'``, ``'10m'``, ``3600`` -> seconds (int, > 0)."""
    if isinstance(value, bool):
        raise TrustzoneError("%s must be a duration, not a boolean" % what)
    if isinstance(value, (int, float)):
        seconds = int(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        if text.isdigit():
            seconds = int(text)
        else:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise TrustzoneError("%s %r is not a duration" % (what, value),
                                     fix="write it like 90d, 12h, 30m, 1d12h or a number of "
                                         "seconds")
            seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise TrustzoneError("%s %r must be longer than zero" % (what, value))
    return seconds


def validate_name(value, what):
    text = str(value or "")
    if not NAME_RE.fullmatch(text):
        raise TrustzoneError("%s %r is not a valid name" % (what, value),
                             fix="use 1-32 characters of a-z, 0-9, '-' and '_', starting "
                                 "with a letter or digit")
    return text


def parse_mode(value, what="mode"):
    if isinstance(value, bool):
        raise TrustzoneError("%s must be an octal file mode, not a boolean" % what,
                             fix="quote it as a string, e.g. '0640'")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not re.match(r"^0?[0-7]{3,4}$", text):
            raise TrustzoneError("%s %r is not an octal file mode" % (what, value),
                                 fix="quote it as a string, e.g. '0640'")
        mode = int(text, 8)
    if mode & ~0o7777:
        raise TrustzoneError("%s %r is not a file mode" % (what, value))
    return mode


def is_dns_name(name):
    name = name.rstrip(".")
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if labels[-1].isdigit():
        return False  # an all-numeric top label is a mistyped address, not a name (RFC 3696)
    return all(_DNS_LABEL_RE.fullmatch(label) for label in labels)


# --------------------------------------------------------------------------- renewal

def assess(profile, key, key_error, cert, cert_error, chain, roots, now, revoked=None):
    """Why the identity described by ``profile`` must be (re)issued; ``[]`` when it is fine.

    ``key``/``cert`` are parsed objects or None; ``*_error`` is a message when the file exists
    but could not be read. ``chain`` holds intermediates; ``roots`` the zone's current roots.
    ``revoked`` is a set of ``(issuer DN, serial)`` from the zone's CRLs.
    Returns a list of ``{'reason', 'detail'}`` in the order of ``REASONS``.
    """
    out = []

    def add(reason, detail):
        out.append({"reason": reason, "detail": detail})

    if key_error:
        add("unreadable_key", key_error)
    elif key is None:
        add("missing_key", "no private key at %s" % profile["key_path"])
    if cert_error:
        add("unreadable_certificate", cert_error)
    elif cert is None:
        add("missing_certificate", "no certificate at %s" % profile["cert_path"])
    if key is not None and C.describe_key(key) != profile["key"]:
        add("key_type", "key is %s, profile wants %s" % (
            C.key_spec_text(C.describe_key(key)), C.key_spec_text(profile["key"])))
    if cert is None:
        return out
    if key is not None and not C.same_public_key(key, cert.public_key()):
        add("key_mismatch", "the certificate does not belong to the private key")
    for reason, detail in certificate_reasons(cert, chain, profile, roots, now):
        if reason == "key_type" and any(r["reason"] == "key_type" for r in out):
            continue
        add(reason, detail)
    if revoked and (cert.issuer.rfc4514_string(), cert.serial_number) in revoked:
        add("revoked", "serial %x is on the zone's CRL" % cert.serial_number)
    order = {r: i for i, r in enumerate(REASONS)}
    return sorted(out, key=lambda r: order[r["reason"]])


def certificate_reasons(cert, chain, profile, roots, now):
    """The reasons that come from the certificate alone (no key), as ``(reason, detail)``."""
    found = []
    checks = (lifetime_reason, names_reason, subject_reason, cert_key_type_reason,
              key_usage_reason, eku_reason, issuer_reason)
    for check in checks:
        result = check(cert, chain, profile, roots, now)
        if result:
            found.append(result)
    return found


def lifetime_reason(cert, chain, profile, roots, now):
    start, end = C.not_before(cert), C.not_after(cert)
    if now < start:
        return ("not_yet_valid", "valid only from %s" % _iso(start))
    if now >= end:
        return ("expired", "expired %s" % _iso(end))
    left = end - now
    if left < datetime.timedelta(seconds=profile["renew_before"]):
        return ("expiring", "%s left, renew within %s" % (
            _human(left.total_seconds()), _human(profile["renew_before"])))
    return None


def names_reason(cert, chain, profile, roots, now):
    have = C.names_of(cert)
    if have["dns"] != sorted(profile["dns"]) or have["ip"] != sorted(profile["ip"]):
        return ("names", "certificate names %s, profile wants %s" % (
            _names_text(have), _names_text(profile)))
    return None


def subject_reason(cert, chain, profile, roots, now):
    cn = C.common_name(cert)
    if cn != profile["common_name"]:
        return ("subject", "common name %r, profile wants %r" % (cn, profile["common_name"]))
    return None


def cert_key_type_reason(cert, chain, profile, roots, now):
    have = C.describe_key(cert.public_key())
    if have != profile["key"]:
        return ("key_type", "certificate key is %s, profile wants %s" % (
            C.key_spec_text(have), C.key_spec_text(profile["key"])))
    return None


def key_usage_reason(cert, chain, profile, roots, now):
    have = C.key_usages_of(cert)
    if have != sorted(profile["key_usage"]):
        return ("key_usage", "key usage %s, profile wants %s" % (
            ",".join(have) or "none", ",".join(profile["key_usage"])))
    return None


def eku_reason(cert, chain, profile, roots, now):
    have = C.extended_key_usages_of(cert)
    if have != sorted(profile["extended_key_usage"]):
        return ("extended_key_usage", "extended key usage %s, profile wants %s" % (
            ",".join(have) or "none", ",".join(profile["extended_key_usage"])))
    return None


def issuer_reason(cert, chain, profile, roots, now):
    if not roots:
        return None  # nothing to compare with (e.g. a check-mode run before the root exists)
    if C.chain_to(cert, chain or [], roots) is None:
        return ("issuer", "issued by %r, which is not the issuing root of zone %s" % (
            cert.issuer.rfc4514_string(), profile["zone"]))
    return None


# --------------------------------------------------------------------------- CA-side policy

def csr_violations(csr, profile, facts=None):
    """Why the CA must refuse ``csr`` for ``profile`` (resolved on the controller from the
    inventory, never from the node). ``[]`` means it may be signed. ``facts`` is
    ``_crypto.csr_facts(csr)`` when the caller already decoded it."""
    if facts is None:
        facts = C.csr_facts(csr)
    problems = []
    if not C.csr_signature_valid(csr, facts["public_key"]):
        problems.append("signature: the CSR is not signed by its own key")
    cn = facts["cn"]
    if cn != profile["common_name"]:
        problems.append("subject: common name %r, this host may only be %r"
                        % (cn, profile["common_name"]))
    extra_dns = sorted(set(facts["dns"]) - set(profile["dns"]))
    extra_ip = sorted(set(facts["ip"]) - set(profile["ip"]))
    if extra_dns or extra_ip:
        problems.append("subjectAltName: %s not allowed for this host"
                        % ", ".join(extra_dns + extra_ip))
    others = facts["other_san_types"]
    if others:
        problems.append("subjectAltName: entry types %s are never signed" % ", ".join(others))
    bc = facts["basic_constraints"]
    if bc is not None and bc[0]:
        problems.append("basicConstraints: the CSR asks to be a CA")
    ku = set(facts["key_usage"]) - set(profile["key_usage"])
    if ku:
        problems.append("keyUsage: %s outside the profile" % ", ".join(sorted(ku)))
    eku = set(facts["extended_key_usage"]) - set(profile["extended_key_usage"])
    if eku:
        problems.append("extendedKeyUsage: %s outside the profile" % ", ".join(sorted(eku)))
    have = C.describe_key(facts["public_key"])
    if have != profile["key"]:
        problems.append("key: %s, the profile wants %s" % (C.key_spec_text(have),
                                                           C.key_spec_text(profile["key"])))
    return problems


def validity_window(now, lifetime_seconds, issuer_cert, backdate_seconds=300):
    """``(not_before, not_after)`` for a new leaf, never outside the issuer's validity."""
    if C.not_after(issuer_cert) <= now:
        raise TrustzoneError("the issuing CA %r expired on %s" % (
            issuer_cert.subject.rfc4514_string(), _iso(C.not_after(issuer_cert))),
            fix="rotate the zone root (playbooks/rotate_root.yml) before issuing more")
    start = max(now - datetime.timedelta(seconds=backdate_seconds), C.not_before(issuer_cert))
    end = min(now + datetime.timedelta(seconds=lifetime_seconds), C.not_after(issuer_cert))
    if end <= start:
        raise TrustzoneError("the issuing CA %r is not valid yet" % (
            issuer_cert.subject.rfc4514_string(),), fix="check the CA host's clock")
    return start, end


def crl_due(crls, ca_certs, now, refresh_seconds, generation, written_generation,
            committed_number=None):
    """Why the CA must sign its CRLs again, or None.

    ``crls`` are the CRLs on disk, ``ca_certs`` every CA of the zone that needs a CRL (roots
    and intermediates, in use or retired with live leaves: ``_revocation.crl_signers``),
    ``generation`` the ledger's revocation counter, ``written_generation`` the counter the
    CRLs on disk were made from and ``committed_number`` the highest CRL number the ledger
    committed (CRLs on disk below it were never completed: a crash, or a restore that learned
    a higher number from the fleet).
    """
    if not crls:
        return "no CRL yet"
    if str(generation) != str(written_generation):
        return "revocations changed"
    if committed_number is not None and max(
            (C.crl_number(crl) or 0) for crl in crls) < int(committed_number):
        return "CRL number %s was committed but is not on disk" % committed_number
    # the same set: every CA has exactly one CRL it signed, and every CRL belongs to a CA
    matched = set()
    for ca in ca_certs:
        mine = [i for i, crl in enumerate(crls) if C.crl_signed_by(crl, ca)]
        if len(mine) != 1 or mine[0] in matched:
            return "the zone's CAs changed"
        matched.add(mine[0])
    if len(matched) != len(crls):
        return "the zone's CAs changed"
    soonest = min(C.crl_next_update(crl) for crl in crls)
    if soonest - now < datetime.timedelta(seconds=refresh_seconds):
        return "next update %s is near" % _iso(soonest)
    return None


def revoked_set(crls):
    """``{(issuer DN, serial)}`` for every entry of ``crls``."""
    return {(crl.issuer.rfc4514_string(), serial) for crl in crls for serial in C.crl_serials(crl)}


# --------------------------------------------------------------------------- trust anchors

def anchor_name(zone, cert, suffix=".crt"):
    return "trustzone-%s-%s%s" % (zone, C.fingerprint(cert)[:16], suffix)


def anchor_prefix(zone):
    return "trustzone-%s-" % zone


def is_zone_anchor(name, zone, suffix=".crt"):
    """True for exactly the anchor file names ``anchor_name`` makes for ``zone``."""
    return re.fullmatch(r"trustzone-%s-[0-9a-f]{16}%s" % (re.escape(zone), re.escape(suffix)),
                        name) is not None


def plan_anchors(existing, roots, zone, suffix=".crt"):
    """What to write and remove so that the zone's anchors are exactly ``roots``.

    ``existing`` maps file names that start with the zone's anchor prefix to their content
    (bytes or text); other zones' anchors are never touched. Returns
    ``{'write': {name: pem}, 'remove': [name, ...], 'keep': [name, ...]}``.
    """
    wanted = {anchor_name(zone, cert, suffix): C.certificate_pem(cert) for cert in roots}
    write, keep = {}, []
    for name, pem in sorted(wanted.items()):
        have = existing.get(name)
        if have is not None and same_pem(have, pem):
            keep.append(name)
        else:
            write[name] = pem
    remove = sorted(n for n in existing if is_zone_anchor(n, zone, suffix) and n not in wanted)
    return {"write": write, "remove": remove, "keep": keep}


# --------------------------------------------------------------------------- helpers

def same_pem(a, b):
    """True when two PEM texts (bytes or str) differ at most in line endings and spacing."""
    return _norm_pem(a) == _norm_pem(b)


def _norm_pem(value):
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return "\n".join(line.strip() for line in value.strip().splitlines())


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return list(value)
    return [value]


def _ip_sort_key(value):
    ip = ipaddress.ip_address(value)
    return (ip.version, int(ip))


def _iso(value):
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _names_text(names):
    return ",".join(list(names["dns"]) + list(names["ip"])) or "none"


def _human(seconds):
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds
