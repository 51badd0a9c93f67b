# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Whether an identity on a node must be (re)issued, and why: pure functions of (the key and
certificate found, the profile wanted, the zone's roots and CRLs, now).
"""

from __future__ import annotations

import datetime

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _publish
from ansible_collections.trustzone.pki.plugins.module_utils._parse import _human

# Renewal reasons, in the order they are checked and reported.
REASONS = (
    "missing_key", "unreadable_key", "missing_certificate", "unreadable_certificate",
    "key_mismatch", "key_type", "not_yet_valid", "expired", "expiring", "names", "subject",
    "key_usage", "extended_key_usage", "issuer", "distribution_point", "revoked",
)


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
              key_usage_reason, eku_reason, issuer_reason, distribution_point_reason)
    for check in checks:
        result = check(cert, chain, profile, roots, now)
        if result:
            found.append(result)
    return found


def lifetime_reason(cert, chain, profile, roots, now):
    start, end = C.not_before(cert), C.not_after(cert)
    if now < start:
        return ("not_yet_valid", "valid only from %s" % _layout.iso(start))
    if now >= end:
        return ("expired", "expired %s" % _layout.iso(end))
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
    return _usage_reason("key_usage", "key usage", C.key_usages_of(cert), profile)


def eku_reason(cert, chain, profile, roots, now):
    return _usage_reason("extended_key_usage", "extended key usage",
                         C.extended_key_usages_of(cert), profile)


def _usage_reason(reason, what, have, profile):
    """``(reason, detail)`` when the certificate's usages ``have`` (sorted) are not exactly the
    profile's ``profile[reason]``."""
    if have != sorted(profile[reason]):
        return (reason, "%s %s, profile wants %s" % (
            what, ",".join(have) or "none", ",".join(profile[reason])))
    return None


def issuer_reason(cert, chain, profile, roots, now):
    if not roots:
        return None  # nothing to compare with (e.g. a check-mode run before the root exists)
    if C.chain_to(cert, chain or [], roots) is None:
        return ("issuer", "issued by %r, which is not the issuing root of zone %s" % (
            cert.issuer.rfc4514_string(), profile["zone"]))
    return None


def distribution_point_reason(cert, chain, profile, roots, now):
    """The leaf's CRL distribution point and AIA caIssuers are not the ones the zone's base URL
    (``profile['publish_url']``, set by the node action from the inventory; None: none) names
    for its issuer. A profile without the key (resolved elsewhere) is not checked."""
    if "publish_url" not in profile:
        return None
    detail = _publish.distribution_reason(cert, profile["publish_url"])
    return ("distribution_point", detail) if detail else None


def revoked_set(crls):
    """``{(issuer DN, serial)}`` for every entry of ``crls``."""
    return {(crl.issuer.rfc4514_string(), serial) for crl in crls for serial in C.crl_serials(crl)}


def _names_text(names):
    return ",".join(list(names["dns"]) + list(names["ip"])) or "none"
