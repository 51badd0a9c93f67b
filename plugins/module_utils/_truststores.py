# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Trust stores with named entries (a Java PKCS#12 truststore, an NSS database): what to add,
remove and re-flag so that a store trusts exactly the zone's current roots.

The rule is the same for every store. A store entry is identified by its certificate, not its
name: a current root that is already in the store under any name counts as present (NSS keeps
one entry per certificate and would silently ignore a second name). An entry named the way the
zone names its roots (``trustzone-<zone>-<16 hex>``) whose certificate is no longer a current
root is removed; entries of other zones and anything else in the store are never touched.

Also here: parsers for ``keytool -list -rfc`` and ``certutil -L`` output (run with LC_ALL=C)
and NSS trust-flag handling. Pure functions; the modules run the tools.
"""

from __future__ import annotations

import re

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _parse
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

_NSS_FLAG_CHARS = "pPcCTuw"  # NSS trust letters (certutil -t); 'u' and 'w' are set by NSS
_NSS_TRUST_RE = re.compile(r"^[%s]*,[%s]*,[%s]*$" % ((_NSS_FLAG_CHARS,) * 3))
_CERTUTIL_LINE_RE = re.compile(r"^(?P<name>\S.*?)\s+(?P<trust>[%s]*,[%s]*,[%s]*)\s*$"
                               % ((_NSS_FLAG_CHARS,) * 3))
_ALIAS_LINE_RE = re.compile(r"^Alias name: (?P<alias>.*)$", re.M)


def alias_prefix(zone):
    return "trustzone-%s-" % zone


def entry_prefix(prefix, zone, option):
    """The prefix of the zone's entry names in a store: ``prefix`` (the module's ``option``)
    when given, else the zone's (``zone`` checked)."""
    if prefix:
        return prefix
    if not zone:
        raise TrustzoneError("neither zone nor %s is set" % option, fix="pass the zone name")
    return alias_prefix(_parse.validate_name(zone, "zone name"))


def alias_for(prefix, cert, suffix=""):
    """The entry name a root gets: ``<prefix><first 16 hex of its SHA-256><suffix>``."""
    return "%s%s%s" % (prefix, C.fingerprint(cert)[:16], suffix)


def is_zone_entry(name, prefix, suffix=""):
    """True for exactly the names ``alias_for`` makes: zone ``lab`` never claims ``lab-x``'s."""
    return re.fullmatch(re.escape(prefix) + "[0-9a-f]{16}" + re.escape(suffix), name) is not None


def plan_store(entries, roots, prefix, add=True, suffix=""):
    """What to change so that the store trusts exactly ``roots`` among the zone's entries.

    ``entries`` is a list of ``(name, fingerprint)`` pairs, one per certificate in the store
    (a name may appear more than once in NSS). ``roots`` are certificates. An entry is the
    zone's when its name is ``<prefix><16 hex><suffix>``. Returns
    ``{'add': {name: cert}, 'remove': [name, ...], 'keep': {fingerprint: name}}``: ``keep``
    maps each current root found in the store (under any name) to the entry that holds it.
    With ``add=False`` (a store someone else fills, such as Debian's Java ``cacerts``) nothing
    is added.
    """
    if not prefix:
        raise TrustzoneError("an empty entry prefix would claim every entry of the store",
                             fix="use the zone's prefix, e.g. trustzone-<zone>-")
    wanted = {C.fingerprint(cert): cert for cert in roots}
    keep, remove = {}, []
    for name, fingerprint in entries:
        fingerprint = fingerprint.lower().replace(":", "")
        if fingerprint in wanted:
            keep.setdefault(fingerprint, name)
        elif is_zone_entry(name, prefix, suffix) and name not in remove:
            remove.append(name)
    # a name holding both a current and a retired root (NSS) is not removed wholesale
    remove = [n for n in remove if n not in keep.values()]
    additions = {}
    if add:
        additions = {alias_for(prefix, cert, suffix): cert
                     for fp, cert in sorted(wanted.items()) if fp not in keep}
    return {"add": additions, "remove": sorted(remove), "keep": keep}


# --------------------------------------------------------------------------- keytool

def parse_keytool_list(text):
    """``[(alias, entry_type, [pem, ...]), ...]`` from ``keytool -list -rfc`` output."""
    entries = []
    starts = list(_ALIAS_LINE_RE.finditer(text))
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        body = text[match.end():end]
        kind = re.search(r"^Entry type: (.*)$", body, re.M)
        pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", body,
                          re.S)
        entries.append((match.group("alias").strip(), kind.group(1).strip() if kind else "",
                        pems))
    if not entries and not re.search(r"Your keystore contains 0 entries", text):
        raise TrustzoneError("cannot read the keytool listing: no 'Alias name:' lines",
                             fix="run keytool -list on the node to see what it prints")
    return entries


def keytool_trusted_entries(listing):
    """``(alias, fingerprint)`` of the trustedCertEntry entries of a parsed listing."""
    pairs = []
    for alias, kind, pems in listing:
        if kind != "trustedCertEntry" or not pems:
            continue
        cert = C.load_certificate(pems[0], path="keystore entry %s" % alias)
        pairs.append((alias, C.fingerprint(cert)))
    return pairs


# --------------------------------------------------------------------------- NSS

def parse_certutil_list(text):
    """``{nickname: trust}`` from ``certutil -L`` output (the table of nicknames and flags)."""
    entries = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("Certificate Nickname") or \
                line.strip() == "SSL,S/MIME,JAR/XPI":
            continue
        match = _CERTUTIL_LINE_RE.match(line)
        if match:
            entries[match.group("name")] = match.group("trust")
    return entries


def normalize_trust(flags):
    """NSS trust flags in a canonical form: each of the three fields' letters sorted.

    ``'TC,c,'`` and ``'CT,c,'`` are the same trust. The letters ``u`` and ``w`` (NSS adds them
    for certificates with a key / for warnings) are kept: they are part of what NSS reports.
    """
    text = str(flags).strip()
    if not _NSS_TRUST_RE.match(text):
        raise TrustzoneError("%r is not an NSS trust setting" % (flags,),
                             fix="three comma-separated fields of the letters p, P, c, C, T "
                                 "(SSL,S/MIME,code signing), e.g. 'CT,C,C' or 'C,,'")
    return ",".join("".join(sorted(field)) for field in text.split(","))


def same_trust(have, want):
    return normalize_trust(have) == normalize_trust(want)


# --------------------------------------------------------------------------- NSS CRLs
#
# NSS keeps at most one CRL per issuer and addresses it by the nickname of the issuer's
# certificate in the database (crlutil -L/-D -n NICK). A CRL whose issuer is not in the
# database cannot be imported without bypassing the signature check (crlutil -I refuses it
# with SEC_ERROR_UNKNOWN_ISSUER), nor listed or deleted by name. So the CRLs an NSS database
# holds for the zone are those of the CAs it holds: the roots (trusted), and the intermediate
# CAs of the zone that publish a CRL, held UNTRUSTED (",,": trust still comes from the root
# only) under ``<prefix><16 hex>-intermediate``, each with the newest CRL the zone published.

# NSS prints an integer of up to 4 bytes as "2 (0x2)", a longer one as colon-separated hex
_CRL_NUMBER_RE = re.compile(r"Name: CRL Number\s*\n\s*Data:\s*(?:(?P<dec>\d+) \(0x[0-9a-fA-F]+\)"
                            r"|(?P<hex>[0-9a-fA-F]{2}(?::\s*[0-9a-fA-F]{2})*))")


def parse_crlutil_crl(text):
    """The CRL number shown by ``crlutil -L -n NICK`` (LC_ALL=C); -1 for a CRL without one."""
    match = _CRL_NUMBER_RE.search(text)
    if match is None:
        if "CRL Info:" not in text:
            raise TrustzoneError("cannot read the crlutil listing: no 'CRL Info:'",
                                 fix="run crlutil -L -n NICKNAME on the node to see what it "
                                     "prints")
        return -1
    if match.group("dec") is not None:
        return int(match.group("dec"))
    return int(re.sub(r"[^0-9a-fA-F]", "", match.group("hex")), 16)


def crl_number_of(crl):
    """A CRL's number, -1 when it has none (as ``parse_crlutil_crl`` reports it)."""
    number = C.crl_number(crl)
    return -1 if number is None else number


def crls_for_roots(crls, roots):
    """``{CA fingerprint: crl}``: for each CA of ``roots`` (roots, or intermediates) the
    newest CRL (highest number) it signed.

    A CRL none of them signed (another CA's, a forged one) is left out; so is a CA the zone
    published no CRL for.
    """
    found = {}
    for root in roots:
        signed = [crl for crl in crls if C.crl_signed_by(crl, root)]
        if signed:
            found[C.fingerprint(root)] = max(signed, key=crl_number_of)
    return found


def plan_crls(have, want):
    """What to change so that an NSS database holds exactly the zone's current CRLs.

    ``have``: ``{nickname: crl number}`` of the zone's root entries that hold a CRL now.
    ``want``: ``{nickname: crl number}`` of the CRL each current root should have. Returns
    ``{'import': [...], 'delete': [...], 'keep': [...]}`` (nicknames, sorted). A CRL is
    imported when the root has none or an older one (a lower number), and kept when the one
    there is as new or newer (nothing published goes backwards); a root that should have no
    CRL (a retired root, or one the zone publishes none for) loses the one it has.
    """
    plan = {"import": [], "delete": [], "keep": []}
    for name, number in sorted(want.items()):
        if name in have and have[name] >= number:
            plan["keep"].append(name)
        else:
            plan["import"].append(name)
    plan["delete"] = sorted(name for name in have if name not in want)
    return plan


# --------------------------------------------------------------------------- NSS intermediates

INTERMEDIATE_SUFFIX = "-intermediate"  # nickname of a zone intermediate: <prefix><16 hex><this>
UNTRUSTED = ",,"  # an intermediate is a path element, never a trust anchor


def zone_intermediates(candidates, roots):
    """The zone's intermediate CAs among ``candidates``: each CA certificate that chains up to
    one of ``roots`` (directly or through another candidate), once, sorted by fingerprint.

    Roots themselves, leaves, and CAs of other zones or of retired roots are left out, so a
    node's chain files and the database's own entries can be passed as they are.
    """
    root_fps = {C.fingerprint(root) for root in roots}
    pool = {}
    for cert in candidates:
        fingerprint = C.fingerprint(cert)
        if fingerprint not in root_fps and C.can_sign_certificates(cert):
            pool.setdefault(fingerprint, cert)
    found = []
    for fingerprint, cert in sorted(pool.items()):
        others = [c for f, c in pool.items() if f != fingerprint]
        if C.chain_to(cert, others, roots) is not None:
            found.append(cert)
    return found


def plan_intermediates(entries, candidates, roots, crls, prefix, trust_of):
    """What to change so that an NSS database holds exactly the zone's intermediate CAs that
    publish a CRL, untrusted, so that their CRLs can be imported and checked.

    ``entries``: ``(nickname, fingerprint)`` pairs of the database (as for ``plan_store``);
    ``candidates``: certificates that may be zone intermediates (the node's chain files and
    the database's ``<prefix><16 hex>-intermediate`` entries, so that a replaced intermediate
    stays while the zone still publishes its CRL); ``crls``: the zone's CRLs; ``trust_of``:
    ``{nickname: flags}`` from ``certutil -L``. Returns ``plan_store``'s ``add``, ``remove``
    and ``keep`` for the intermediates, plus ``retrust`` (the zone's intermediate entries whose
    flags are not ``,,``: none is ever a trust anchor) and ``crls`` (``{fingerprint: crl}``,
    the CRL each kept or added intermediate should hold). An intermediate the zone publishes
    no CRL for any more (retired, or under a retired root) is removed.
    """
    cas = zone_intermediates(candidates, roots)
    crl_by_ca = crls_for_roots(crls, cas)
    plan = plan_store(entries, [ca for ca in cas if C.fingerprint(ca) in crl_by_ca], prefix,
                      suffix=INTERMEDIATE_SUFFIX)
    plan["retrust"] = sorted(
        name for name in set(plan["keep"].values())
        if is_zone_entry(name, prefix, INTERMEDIATE_SUFFIX)
        and not same_trust(trust_of.get(name, UNTRUSTED), UNTRUSTED))
    plan["crls"] = crl_by_ca
    return plan
