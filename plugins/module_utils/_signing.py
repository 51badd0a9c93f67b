# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""What the CA signs: which CSRs it refuses for a profile, and the validity it gives a new
certificate. Pure: the profile comes from the inventory (resolved on the controller), never
from the node.
"""

from __future__ import annotations

import datetime

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


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
            issuer_cert.subject.rfc4514_string(), _layout.iso(C.not_after(issuer_cert))),
            fix="rotate the zone root (playbooks/rotate_root.yml) before issuing more")
    start = max(now - datetime.timedelta(seconds=backdate_seconds), C.not_before(issuer_cert))
    end = min(now + datetime.timedelta(seconds=lifetime_seconds), C.not_after(issuer_cert))
    if end <= start:
        raise TrustzoneError("the issuing CA %r is not valid yet" % (
            issuer_cert.subject.rfc4514_string(),), fix="check the CA host's clock")
    return start, end
