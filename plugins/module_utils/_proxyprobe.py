# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The proxy's front door after a reload: does it serve the certificates just installed?

After the proxy role reloaded nginx because a certificate or its configuration changed, the
module ``trustzone.pki.proxy_probe`` makes, on the proxy, one real TLS handshake per distinct
server name of the routes (``targets``) with that name as SNI, no client certificate (users
have none), and compares the certificate served with the route's certificate file (``pin``:
SHA-256 of the DER of its first certificate). When every name passes, the files the door was
proven to serve with - each route's certificate and key (for an ACME certificate its whole
directory, so key, certificate, chains and ``state.json`` stay one unit) and the nginx
configuration - are kept as the *served generation* (``generation_files``, ``manifest``).
When a name fails, the role puts that generation back, reloads, probes again and fails the
host with one line (``failure_line``).

Pure: data in, data out; the module does the reading, writing and handshakes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

# The files of an ACME certificate's directory (trustzone.pki.acme_install), kept together.
ACME_FILES = ("privkey.pem", "cert.pem", "chain.pem", "fullchain.pem", "state.json")
MANIFEST = "manifest.json"
_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s(.*?)-----END CERTIFICATE-----", re.S)
# The SNI sent for a wildcard server name (*.apps.example.com): a name the wildcard covers.
WILDCARD_LABEL = "trustzone-probe"


def sni_for(server_name):
    """The name to send as SNI for an nginx ``server_name``; None for one no client can send
    (a regular expression, ``_``)."""
    name = str(server_name).strip().lower()
    if name.startswith("*."):
        return "%s.%s" % (WILDCARD_LABEL, name[2:])
    if not name or name.startswith("~") or "*" in name or name == "_":
        return None
    return name.rstrip(".")


def targets(routes, address, port):
    """One probe per distinct server name of the routes (bounded: a name two routes list is
    probed once, for the first): ``{'host', 'port', 'server_name', 'route', 'certificate'}``,
    ``certificate`` being the file the name must be served with."""
    out, seen = [], set()
    for route in routes or []:
        for name in route.get("server_names") or []:
            sni = sni_for(name)
            if sni is None or sni in seen:
                continue
            seen.add(sni)
            out.append({"host": str(address), "port": int(port), "server_name": sni,
                        "route": route["name"], "certificate": route["ssl_certificate"]})
    return out


def pin(pem):
    """SHA-256 (hex) of the DER of the first certificate in ``pem`` (bytes), as a TLS client
    sees it; None when ``pem`` holds no certificate."""
    match = _PEM_RE.search(pem or b"")
    if not match:
        return None
    body = b"".join(match.group(1).split())
    try:
        der = base64.b64decode(body, validate=True)
    except (ValueError, binascii.Error):
        return None
    return hashlib.sha256(der).hexdigest() if der else None


def generation_files(routes, configs):
    """The files that make up what the door serves: for a route with an ACME certificate
    every file of its directory (``ACME_FILES``), for one with its own files its certificate
    and key, then the configuration files ``configs``. Each path once, in this order."""
    out = []
    for route in routes or []:
        if route.get("acme"):
            base = route["ssl_certificate"].rsplit("/", 1)[0]
            paths = ["%s/%s" % (base, name) for name in ACME_FILES]
        else:
            paths = [route["ssl_certificate"], route["ssl_certificate_key"]]
        out.extend(p for p in paths if p not in out)
    out.extend(p for p in configs or [] if p not in out)
    return out


def kept_name(path, sha256):
    """The name of ``path``'s copy in the served generation's directory: flat, unique per path
    and content, so keeping a new generation never overwrites a copy the current manifest
    names (the manifest's rename is the switch; a crash before it leaves the old one whole)."""
    return "%s-%s-%s" % (hashlib.sha256(path.encode("utf-8")).hexdigest()[:16], sha256[:16],
                         path.rstrip("/").rsplit("/", 1)[-1])


def manifest(entries):
    """The served generation's manifest: ``entries`` is ``[{'path', 'mode', 'uid', 'gid',
    'sha256'}]`` (a file that does not exist is left out: an ACME directory without a chain
    file, say); each entry gets its ``name`` in the directory."""
    return {"version": 1,
            "files": [dict(e, name=kept_name(e["path"], e["sha256"])) for e in entries]}


def read_manifest(data, where):
    """The files of a manifest (``manifest()``'s output as JSON-decoded data); a manifest that
    is not one is refused, naming ``where``."""
    files = (data or {}).get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and {"path", "name", "mode", "uid", "gid", "sha256"} <= set(f)
            for f in files):
        raise TrustzoneError("is not a served-generation manifest", where,
                             fix="remove the directory; the next passing probe keeps a new one")
    return files


def verdict(host, target, seen, expect):
    """``(ok, line)`` for one name at the front door: ``seen`` is ``_probe.observe``'s result
    (no client certificate), ``expect`` the pin of the certificate file (None: unreadable)."""
    where = "%s:%d" % (target["server_name"], target["port"])
    head = "proxy %s: %s (route %s)" % (host, where, target["route"])
    if expect is None:
        return False, "%s: %s holds no certificate" % (head, target["certificate"])
    if seen.get("error"):
        return False, "%s: %s" % (head, seen["error"])
    have = seen.get("fingerprint")
    if (have or "").lower() != expect.lower():
        return False, ("%s: serves certificate %s, not %s (%s)"
                       % (head, (have or "none")[:16], expect.lower()[:16],
                          target["certificate"]))
    return True, "%s: serves %s" % (head, expect.lower()[:16])


def failure_line(host, first, kept, second=None):
    """The one line a host fails with after a failed probe. ``first``: the failed probes'
    lines; ``kept``: whether a served generation existed to go back to; ``second``: after
    putting it back and reloading, the lines of the probe that still failed (empty: the door
    serves the previous generation again)."""
    what = "; ".join(first) or "proxy %s: the probe failed" % host
    if not kept:
        return ("%s - the front door failed its probe after the reload, and no previous "
                "generation is kept to go back to (none passed a probe yet): fix the "
                "certificate or configuration and run proxy.yml again" % what)
    if second:
        return ("%s - the previous certificates and configuration were put back and the "
                "proxy reloaded, but it still fails: %s" % (what, "; ".join(second)))
    return ("%s - the previous certificates and configuration were put back, the proxy "
            "reloaded and serves them again" % what)
