# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""CRL Distribution Points and AIA caIssuers: where a leaf says its CA's CRL and certificate
are, and the files that put them there (pure).

The zone has one base URL (``trustzone_ca_publish_url``, unset: no URLs, as before). A leaf
signed by a CA carries ``<base>/<id>.crl`` (CRL Distribution Points, RFC 5280 4.2.1.13) and
``<base>/<id>.crt`` (Authority Information Access caIssuers, 4.2.2.1), where ``<id>`` is the
hex of that CA's subject key identifier, which is also the leaf's authority key identifier:
the URLs follow from the issuing CA's certificate alone, and a node can tell from its own
certificate whether they are the ones wanted. The files are DER (a CRL, one certificate).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import AuthorityInformationAccessOID
except ImportError:  # pragma: no cover - reported by the modules via missing_required_lib
    pass

URL_VARIABLE = "trustzone_ca_publish_url"
URL_FIX = ("set %s to a base URL such as http://pki.example.com/trustzone/prod (http or https, "
           "a host, an optional path, no query, fragment or user name), or leave it unset for "
           "certificates without distribution points" % URL_VARIABLE)
_SAFE_PATH_RE = re.compile(r"^[A-Za-z0-9._~/%-]*$")
_ID_RE = re.compile(r"^[0-9a-f]{2,128}$")


def check_url(value, variable=URL_VARIABLE):
    """The zone's base URL without a trailing ``/``, or None when ``value`` is unset/empty.

    One-line TrustzoneError naming ``variable`` and the fix for anything but an http(s) URL
    with a host and an optional plain path (no query, fragment, user info or spaces)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise TrustzoneError("%s must be a URL, got %s" % (variable, type(value).__name__),
                             fix=URL_FIX)
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise TrustzoneError("%s: %r is not a URL (%s)" % (variable, text, exc), fix=URL_FIX)
    problem = None
    if parts.scheme.lower() not in ("http", "https"):
        problem = "its scheme is %r, not http or https" % parts.scheme
    elif not parts.hostname:
        problem = "it names no host"
    elif "@" in parts.netloc:
        problem = "it carries a user name"
    elif parts.query or "?" in text:
        problem = "it has a query"
    elif parts.fragment or "#" in text:
        problem = "it has a fragment"
    elif not _SAFE_PATH_RE.match(parts.path) or "/../" in parts.path + "/" \
            or "/./" in parts.path + "/":
        problem = "its path %r is not a plain path" % parts.path
    elif port == 0:
        problem = "its port is 0"
    if problem:
        raise TrustzoneError("%s: %r is not usable as the publication URL: %s"
                             % (variable, text, problem), fix=URL_FIX)
    return "%s://%s%s" % (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"))


def url_parts(base):
    """``{'url', 'host', 'port', 'path'}`` of a checked base URL (``base`` None: a clear
    error): what a web server that serves the files needs; ``path`` is ``/`` when empty."""
    if not base:
        raise TrustzoneError("%s is not set: there is nothing to publish at" % URL_VARIABLE,
                             fix=URL_FIX)
    parts = urlsplit(base)
    return {"url": base, "host": parts.hostname,
            "port": parts.port or (443 if parts.scheme == "https" else 80),
            "path": parts.path or "/"}


def ca_id(cert):
    """The id of a CA in URLs and file names: hex of its subject key identifier (computed from
    its public key, RFC 5280 method 1, when the certificate has none)."""
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    return ski.digest.hex()


def authority_id(obj):
    """Hex of the authority key identifier of a certificate or CRL, or None."""
    try:
        aki = obj.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return aki.key_identifier.hex() if aki.key_identifier else None


def urls_for(base, issuer_id):
    """``{'crl': <base>/<id>.crl, 'ca_issuers': <base>/<id>.crt}``."""
    return {"crl": "%s/%s.crl" % (base, issuer_id), "ca_issuers": "%s/%s.crt" % (base, issuer_id)}


def leaf_extensions(base, issuer_cert):
    """``[(extension, critical)]`` a leaf signed by ``issuer_cert`` carries for ``base``
    (nothing when ``base`` is None): CRL Distribution Points with one full name, and AIA with
    one caIssuers access description; both non-critical (RFC 5280)."""
    if not base:
        return []
    urls = urls_for(base, ca_id(issuer_cert))
    cdp = x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(urls["crl"])], relative_name=None,
        reasons=None, crl_issuer=None)])
    aia = x509.AuthorityInformationAccess([x509.AccessDescription(
        AuthorityInformationAccessOID.CA_ISSUERS,
        x509.UniformResourceIdentifier(urls["ca_issuers"]))])
    return [(cdp, False), (aia, False)]


def urls_of(cert):
    """``{'crl': [...], 'ca_issuers': [...]}``: the URIs a certificate carries."""
    out = {"crl": [], "ca_issuers": []}
    try:
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        for point in cdp:
            out["crl"].extend(n.value for n in point.full_name or []
                              if isinstance(n, x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        pass
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        out["ca_issuers"].extend(
            d.access_location.value for d in aia
            if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(d.access_location, x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        pass
    return out


def distribution_reason(cert, base):
    """Why the leaf ``cert`` does not carry what the zone's ``base`` URL asks for (a one-line
    detail), or None when it does. The issuer's id is the leaf's authority key identifier."""
    have = urls_of(cert)
    if base:
        issuer = authority_id(cert)
        want = ({"crl": [], "ca_issuers": []} if issuer is None else
                {k: [v] for k, v in urls_for(base, issuer).items()})
    else:
        want = {"crl": [], "ca_issuers": []}
    if have == want:
        return None
    return "distribution point %s and caIssuers %s, the zone wants %s and %s" % (
        _text(have["crl"]), _text(have["ca_issuers"]), _text(want["crl"]),
        _text(want["ca_issuers"]))


def _text(urls):
    return ",".join(urls) or "none"


def publication(ca_certs, crls):
    """``{file name: DER bytes}`` to publish: ``<id>.crt`` for every CA certificate and
    ``<id>.crl`` for every CRL (named by its authority key identifier; one without it cannot be
    found by any leaf and is left out). Where two certificates share an id (a root extended
    with the same key) the one valid longest wins, as a client wants it."""
    files, chosen = {}, {}
    for cert in ca_certs:
        name = "%s.crt" % ca_id(cert)
        if name not in chosen or _not_after(cert) > _not_after(chosen[name]):
            chosen[name] = cert
    for name, cert in chosen.items():
        files[name] = cert.public_bytes(serialization.Encoding.DER)
    for crl in crls:
        issuer = authority_id(crl)
        if issuer is not None:
            files["%s.crl" % issuer] = crl.public_bytes(serialization.Encoding.DER)
    return files


def _not_after(cert):
    return getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after


def is_published_name(name):
    """Whether ``name`` is a file this layer writes (``<hex id>.crt`` or ``.crl``): only those
    are ever removed from the publication directory."""
    stem, dot, ext = name.rpartition(".")
    return bool(dot) and ext in ("crt", "crl") and bool(_ID_RE.match(stem))


def plan(wanted, present):
    """``(write, remove)``: the names of ``wanted`` ({name: bytes}) whose bytes differ from
    ``present`` ({name: bytes or None}), and the published-looking names of ``present`` that
    are no longer wanted (a retired CA's certificate and CRL stay only while the CA host
    publishes them)."""
    write = sorted(n for n, data in wanted.items() if present.get(n) != data)
    remove = sorted(n for n in present if n not in wanted and is_published_name(n))
    return write, remove


def zone_url(host_vars, ca_hosts):
    """The zone's base URL (checked, or None): ``trustzone_ca_publish_url`` as the inventory
    (host and group variables, play vars, extra vars) gives it to the zone's CA host.
    ``host_vars(host, names)`` reads inventory-only variables (plugin_utils/_inventory.py);
    the sign action and the node action both ask here, so the CA and the nodes agree."""
    if not ca_hosts:
        return None
    return check_url(host_vars(ca_hosts[0], (URL_VARIABLE,)).get(URL_VARIABLE))
