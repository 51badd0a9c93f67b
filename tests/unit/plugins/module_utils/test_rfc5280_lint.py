"""Every certificate and CRL the collection issues is clean under pkilint's RFC 5280 linter.

Each artifact is made by the collection's own code - the CA host's plan (``_rootplan``:
``new_root``, ``new_intermediate``, ``extended_root``), the node's key and CSR (``_crypto``,
as ``_backend`` makes them) for the certs role's default ``server`` and ``client`` profiles
resolved from inventory names by ``_identity``, the CA's batch signing (``_issue.sign_batch``),
and the CA's CRLs (``_revocation.crl_signers`` / ``plan_crl`` / ``build``) - for every key
type, and is linted with pkilint's "pkix" validators: the certificate linter of
``lint_pkix_cert`` plus the issuer/subject checks of ``lint_pkix_signer_signee_cert_chain``
(names binary equal, AKI = issuer's SKI, signature), and the CRL linter of ``lint_crl``
(profile PKIX). pkilint's pkix linter has no document-type switch for certificates: it reads
the type from the certificate (basicConstraints cA, self-issued), so each row also states
the type it expects and the test checks that pkilint sees the certificate as that type.

A finding of any severity fails the test unless ACCEPTED lists it, with the reason, and only
where its predicate holds. What is accepted today (docs/rfc5280-lint.md has the table):

* ``pkix.subject_key_identifier_method_1_identified`` (INFO): pkilint reports which method
  made the subjectKeyIdentifier; ours is RFC 5280 4.2.1.2 method (1), the SHA-1 of the
  subjectPublicKey, which is what the RFC describes (and what OpenSSL makes).
* ``pkix.invalid_domain_name_syntax`` (ERROR), only for a dNSName that is one LDH label
  (``web1``): pkilint checks dNSNames with the ``validators`` package, which requires a
  top-level domain, but RFC 5280 4.2.1.6 asks for the "preferred name syntax" of RFC 1034
  3.5 (as modified by RFC 1123 2.1), whose ``<subdomain> ::= <label> | ...`` makes a single
  label valid. Single-label machine names are deliberate (Qlik deployments address servers
  by machine name; issue 16 keeps them as exact permitted subtrees), so this finding is not
  fixed. Any other dNSName (multi-label, wildcard) that pkilint refuses still fails.

To cover a new kind of certificate or CRL, add one row to ARTIFACTS (and, if it needs new
material, a line to ``_Kit``).
"""

from __future__ import annotations

import os
import re

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ansible_collections.trustzone.pki.plugins.module_utils import _constraints
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as I
from ansible_collections.trustzone.pki.plugins.module_utils import _issue
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _revocation
from ansible_collections.trustzone.pki.plugins.module_utils import _rootplan
from ansible_collections.trustzone.pki.plugins.module_utils import _signing
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

try:
    from pkilint import loader, pkix
    from pkilint.bin import lint_pkix_signer_signee_cert_chain as chain_cli
    from pkilint.pkix import certificate, crl, extension, name
except ImportError:  # requirements.txt installs it; the support matrix's venvs do not
    pytest.skip("pkilint is not installed", allow_module_level=True)

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..",
                   "docs", "rfc5280-lint.md")

ZONE = "prod"
# A node named by machine name (inventory_hostname, single label), FQDN, IPv4 and IPv6 - and
# one known only by its address.
NODE = {"hostname": "web1", "fqdn": "web1.prod.example", "addresses": ["10.0.0.11", "2001:db8::11"]}
IP_NODE = {"hostname": "10.0.0.12"}
# a zone with an intermediate, one without, one whose intermediate carries the name
# constraints computed from the zone's names (trustzone_ca_name_constraints), and one whose
# intermediate and leaves carry CRL distribution points and AIA (trustzone_ca_publish_url)
ISSUERS = ("intermediate", "root", "constrained", "published")
PUBLISH_URL = "http://pki.prod.example/trustzone/prod"
REVOKED_REASONS = sorted(C.CRL_REASONS)  # every reason the CA records, "unspecified" included

# The zone_root parameters new_root / new_intermediate / extended_root read, per key type
# (the ca role's defaults: EC P-384, RSA 4096, 3650d root, 1825d intermediate).
CA_PARAMS = {
    "ec": {"key_type": "ec", "key_size": None, "key_curve": "secp384r1"},
    "rsa": {"key_type": "rsa", "key_size": 4096, "key_curve": None},
    "ed25519": {"key_type": "ed25519", "key_size": None, "key_curve": None},
}
# The node key of each type (profile defaults: EC P-256, RSA 3072).
LEAF_KEY = {"ec": {"key_type": "ec"}, "rsa": {"key_type": "rsa"},
            "ed25519": {"key_type": "ed25519"}}

_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")  # RFC 1034 / RFC 1123 label

# code -> (predicate on the finding, why we accept it). Keep in step with docs/rfc5280-lint.md.
ACCEPTED = {
    "pkix.subject_key_identifier_method_1_identified": (
        lambda f: f.severity == "INFO",
        "SKI is RFC 5280 4.2.1.2 method (1), SHA-1 of the subjectPublicKey"),
    "pkix.invalid_domain_name_syntax": (
        lambda f: f.severity == "ERROR" and bool(_LABEL_RE.fullmatch(f.value)),
        "single-label machine name: valid RFC 1034 3.5 preferred name syntax, which RFC 5280 "
        "4.2.1.6 asks for; pkilint's domain check wants a top-level domain"),
}


class Finding(tuple):
    """``(severity, code, value, path)`` of one pkilint finding."""

    severity = property(lambda self: self[0])
    code = property(lambda self: self[1])
    value = property(lambda self: self[2])


# --------------------------------------------------------------------------- pkilint

def _findings(results):
    out = []
    for result in results:
        for desc in result.finding_descriptions:
            value = str(result.node.pdu)[:80]
            out.append(Finding((desc.finding.severity.name, desc.finding.code, value,
                                str(result.node.path))))
    return out


def _cert_validator():
    """lint_pkix_cert's validator: RFC 5280 for one certificate."""
    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS,
                                               extension.EXTENSION_MAPPINGS),
        [certificate.create_issuer_validator_container([]),
         certificate.create_validity_validator_container(),
         certificate.create_subject_validator_container([]),
         certificate.create_extensions_validator_container([]),
         certificate.create_spki_validator_container([])])


def _crl_validator():
    """lint_crl's validator, profile PKIX (the type CRL/ARL only matters to the BR profile)."""
    return crl.create_pkix_crl_validator_container(
        [pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
         pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS)],
        [crl.create_issuer_validator_container([]),
         crl.create_validity_validator_container([]),
         crl.create_extensions_validator_container([])])


def _der(obj):
    return obj.public_bytes(serialization.Encoding.DER)


def lint_certificate(cert):
    """``(pkilint's document, findings)`` for one certificate."""
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(_der(cert), "cert")
    return doc, _findings(_cert_validator().validate(doc.root))


def lint_chain(issuer, subject):
    """lint_pkix_signer_signee_cert_chain's checks for one issuer/subject pair (its own
    validator containers: decoding, then the issuer's and the subject's checks)."""
    docs = {}
    load = loader.RFC5280CertificateDocumentLoader().load_der_document
    docs["issuer"] = load(_der(issuer), "issuer", "issuer", docs)
    docs["subject"] = load(_der(subject), "subject", "subject", docs)
    results = chain_cli.create_decoder_validation_container().validate(docs["issuer"].root)
    results += chain_cli.create_decoder_validation_container().validate(docs["subject"].root)
    results += chain_cli.create_issuer_validation_container().validate(docs["issuer"].root)
    results += chain_cli.create_subject_validation_container().validate(docs["subject"].root)
    return _findings(results)


def lint_crl(crl_obj):
    doc = loader.RFC5280CertificateListDocumentLoader().load_der_document(_der(crl_obj), "crl")
    return _findings(_crl_validator().validate(doc.root))


def unaccepted(findings):
    return [f for f in findings if f.code not in ACCEPTED or not ACCEPTED[f.code][0](f)]


# --------------------------------------------------------------------------- the zone

class _Kit:
    """Everything one zone of one key type issues, made by the collection's code."""

    def __init__(self, key_type):
        params = dict(CA_PARAMS[key_type], common_name=None, lifetime="3650d",
                      intermediate_lifetime="1825d")
        self.key_type = key_type
        self.root_key, self.root = _rootplan.new_root(params, ZONE, NOW)
        self.extended_root = _rootplan.extended_root(params, self.root_key, self.root,
                                                     NOW + 3000 * DAY)
        self.int_key, self.intermediate = _rootplan.new_intermediate(
            params, ZONE, self.root_key, self.root, NOW)
        zone_names = {spec["hostname"]: [spec["hostname"], spec.get("fqdn", spec["hostname"])]
                      + list(spec.get("addresses", ())) for spec in (NODE, IP_NODE)}
        self.constrained_key, self.constrained = _rootplan.new_intermediate(
            params, ZONE, self.root_key, self.root, NOW, _constraints.plan(zone_names))
        self.published_key, self.published = _rootplan.new_intermediate(
            dict(params, publish_url=PUBLISH_URL), ZONE, self.root_key, self.root, NOW)
        pairs = {"root": (self.root_key, self.root),
                 "intermediate": (self.int_key, self.intermediate),
                 "constrained": (self.constrained_key, self.constrained),
                 "published": (self.published_key, self.published)}
        self.issued = {}
        for via in ISSUERS:
            for node in ("node", "ip-node"):
                self.issued.update({("leaf", via, node, profile): cert for profile, cert in
                                    self._sign(node, pairs[via][1], pairs[via][0],
                                               PUBLISH_URL if via == "published" else None
                                               ).items()})
        for ca in ISSUERS:
            key, cert = pairs[ca]
            self.issued[("crl", ca, "empty")] = self._crl(key, cert, [], 1)
            # the leaves this CA signed, then serials of leaves signed before (4 < 8 reasons)
            serials = [c.serial_number for ref, c in sorted(self.issued.items())
                       if ref[:2] == ("leaf", ca)]
            serials += [C.random_serial() for _i in range(len(REVOKED_REASONS) - len(serials))]
            rows = [_ledger_row(serial, cert, reason, i)
                    for i, (serial, reason) in enumerate(zip(serials, REVOKED_REASONS))]
            self.issued[("crl", ca, "revoked")] = self._crl(key, cert, rows, 2)

    def _sign(self, node, issuer, issuer_key, publish_url=None):
        """The node's CSRs for the certs role's default profiles, signed by the CA's batch."""
        spec = NODE if node == "node" else IP_NODE
        names = I.node_names(spec["hostname"], fqdn=spec.get("fqdn"),
                             addresses=spec.get("addresses", ()))
        profiles = [dict(p, **LEAF_KEY[self.key_type])
                    for p in I.ROLE_DEFAULTS["trustzone_certs_profiles"]]
        requests = []
        for profile in I.resolve_profiles(profiles, ZONE, "/etc/trustzone/prod", names):
            key = C.generate_key(profile["key"])
            csr = C.build_csr(key, profile["common_name"], profile["dns"], profile["ip"])
            requests.append({"host": spec["hostname"], "profile": profile,
                             "csr": C.csr_pem(csr), "reasons": []})
        issued, refused, _entries = _issue.sign_batch(requests, issuer, issuer_key,
                                                      [issuer], NOW, zone=ZONE,
                                                      publish_url=publish_url)
        assert not refused, refused
        return {name_: C.load_certificate(item["certificate"])
                for name_, item in issued[spec["hostname"]].items()}

    @staticmethod
    def _crl(key, cert, rows, number):
        signers = _revocation.crl_signers([(key, cert)], [], set())
        plan = _revocation.plan_crl([], "no CRL yet", signers, rows,
                                    {"crl_number": number - 1, "crl_generation": "1"})
        return C.load_crls(_revocation.build(plan, NOW, 7 * 86400))[0]


def _ledger_row(serial, issuer, reason, index):
    return {"serial": "%x" % serial, "status": "revoked",
            "revoked_at": _layout.iso(NOW - (index + 1) * DAY),
            "revocation_reason": reason, "issuer_fingerprint": C.fingerprint(issuer)}


_KITS = {}


@pytest.fixture(scope="module")
def kit():
    def get(key_type):
        if key_type not in _KITS:
            _KITS[key_type] = _Kit(key_type)
        return _KITS[key_type]
    return get


# --------------------------------------------------------------------------- the table

# (id, document type, artifact, issuer): the artifact and its issuer are a _Kit attribute or a
# key of _Kit.issued. Document types: "root" (self-issued CA), "sub-ca" (CA signed by the
# root), "end-entity", "crl" (no issuer: CRLs are linted alone). Each row runs for every key
# type; a new kind of artifact is one more row.
ARTIFACTS = [
    ("root", "root", "root", "root"),
    ("root-extended", "root", "extended_root", "extended_root"),
    ("intermediate", "sub-ca", "intermediate", "root"),
    ("intermediate-under-extended-root", "sub-ca", "intermediate", "extended_root"),
    ("intermediate-name-constrained", "sub-ca", "constrained", "root"),
    ("intermediate-with-distribution-points", "sub-ca", "published", "root"),
] + [
    ("%s%s-via-%s" % (profile, "-ip-only" if node == "ip-node" else "", via), "end-entity",
     ("leaf", via, node, profile), via)
    for via in ISSUERS for node in ("node", "ip-node") for profile in ("server", "client")
] + [
    ("crl-%s-%s" % (ca, kind), "crl", ("crl", ca, kind), None)
    for ca in ISSUERS for kind in ("empty", "revoked")
]


def _artifact(k, ref):
    return getattr(k, ref) if isinstance(ref, str) else k.issued[ref]


@pytest.mark.parametrize("key_type", sorted(CA_PARAMS))
@pytest.mark.parametrize("row", ARTIFACTS, ids=[r[0] for r in ARTIFACTS])
def test_artifact_is_clean(kit, key_type, row):
    _id, doc_type, ref, issuer = row
    k = kit(key_type)
    obj = _artifact(k, ref)
    if doc_type == "crl":
        findings = lint_crl(obj)
    else:
        doc, findings = lint_certificate(obj)
        assert (doc_type, doc.is_ca, doc.is_self_issued) in {
            ("root", True, True), ("sub-ca", True, False), ("end-entity", False, False)}
        findings += lint_chain(_artifact(k, issuer), obj)
    assert unaccepted(findings) == []


def test_the_table_covers_what_the_zone_issues(kit):
    """The rows hold what the description says: single-label, FQDN, IPv4 and IPv6 names, both
    EKUs, every revocation reason, and a CA of every key type."""
    k = kit("ec")
    names = C.names_of(k.issued[("leaf", "intermediate", "node", "server")])
    assert names == {"dns": ["web1", "web1.prod.example"], "ip": ["10.0.0.11", "2001:db8::11"]}
    ip_only = C.names_of(k.issued[("leaf", "root", "ip-node", "server")])
    assert ip_only == {"dns": [], "ip": ["10.0.0.12"]}
    assert C.extended_key_usages_of(k.issued[("leaf", "root", "node", "client")]) == ["client_auth"]
    from ansible_collections.trustzone.pki.plugins.module_utils import _publish
    assert _publish.urls_of(k.issued[("leaf", "published", "node", "server")])["crl"] == [
        "%s/%s.crl" % (PUBLISH_URL, _publish.ca_id(k.published))]
    assert _publish.urls_of(k.published)["ca_issuers"] == [
        "%s/%s.crt" % (PUBLISH_URL, _publish.ca_id(k.root))]
    assert k.constrained.extensions.get_extension_for_class(x509.NameConstraints).critical
    revoked = k.issued[("crl", "intermediate", "revoked")]
    assert len(C.crl_serials(revoked)) == len(REVOKED_REASONS)
    assert len(C.crl_serials(k.issued[("crl", "root", "empty")])) == 0
    assert C.crl_signed_by(revoked, k.intermediate)
    for key_type, params in CA_PARAMS.items():
        assert C.describe_key(kit(key_type).root.public_key())["type"] == params["key_type"]


def test_unspecified_reason_leaves_the_reason_code_out(kit):
    """RFC 5280 5.3.1: reasonCode SHOULD be absent rather than unspecified (0); pkilint's
    pkix profile does not check it, so this does. Every other reason is carried."""
    k = kit("ec")
    codes = {}
    for entry in k.issued[("crl", "root", "revoked")]:
        try:
            codes[entry.serial_number] = entry.extensions.get_extension_for_class(
                x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            codes[entry.serial_number] = None
    assert sorted(codes.values(), key=str) == sorted(
        [None] + [getattr(x509.ReasonFlags, r).name for r in REVOKED_REASONS
                  if r != "unspecified"], key=str)


def test_wildcards_are_never_issued(names):
    """No wildcard reaches a certificate: the resolver refuses one from the inventory and the
    CA refuses a CSR that asks for one (so no wildcard row is in the table)."""
    with pytest.raises(TrustzoneError, match="neither a DNS name nor an IP address"):
        I.node_names("web1", extra_names=["*.prod.example"])
    profile = I.resolve_profiles(None, ZONE, "/etc/trustzone/prod", names)[0]
    key = C.generate_key(profile["key"])
    csr = C.build_csr(key, profile["common_name"], profile["dns"] + ["*.prod.example"],
                      profile["ip"])
    assert any("*.prod.example" in p for p in _signing.csr_violations(csr, profile))


# --------------------------------------------------------------------------- the harness

def test_the_linter_catches_what_it_must(kit):
    """The harness is not blind: a wildcard leaf made by the builder outside the CA's
    policy, a leaf paired with the wrong issuer and a CRL without a CRL number fail."""
    k = kit("ec")
    leaf_key = C.generate_key({"type": "ec"})
    wildcard = C.build_leaf_certificate(
        leaf_key.public_key(), C.zone_name_attributes(ZONE, "web1.prod.example"),
        ["*.prod.example", "web1", "-bad.prod.example"], [], k.intermediate, k.int_key,
        NOW, NOW + 30 * DAY, ["digital_signature"], ["server_auth"])
    _doc, findings = lint_certificate(wildcard)
    assert sorted(f.value for f in unaccepted(findings)) == ["*.prod.example",
                                                             "-bad.prod.example"]
    leaf = k.issued[("leaf", "intermediate", "node", "server")]
    wrong_issuer = unaccepted(lint_chain(k.root, leaf))
    assert {"pkix.issuer_and_subject_key_identifier_not_equal",
            "pkix.signature_verification_failed"} <= {f.code for f in wrong_issuer}
    no_number = (x509.CertificateRevocationListBuilder().issuer_name(k.root.subject)
                 .last_update(NOW).next_update(NOW + DAY)
                 .sign(k.root_key, C.signature_hash(k.root_key)))
    assert "pkix.crl_number_missing" in {f.code for f in unaccepted(lint_crl(no_number))}


def test_every_accepted_finding_is_documented():
    with open(DOC, encoding="utf-8") as handle:
        text = handle.read()
    for code in ACCEPTED:
        assert code in text
