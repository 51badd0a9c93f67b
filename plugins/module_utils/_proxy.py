# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The proxy's routes: which public names go to which backends, in which zone, with which
certificate. The one place that reads trustzone_proxy_routes / trustzone_proxy_zones.

One front door, several zones (seed 004's PROD and DEV behind one Traefik): the proxy is a
node of every zone it bridges into (one inventory per zone; ``site.yml`` with each one gives
it a client identity per zone). ``trustzone_proxy_zones`` lists them; each route names its
zone and is forwarded with that zone's client certificate, roots and CRLs only, so a route
can never reach a backend of another zone, and a backend never sees another zone's client
certificate. Whatever engine serves the routes (nginx, Traefik) renders this result.

Pure: data in, data out, TrustzoneError naming the route and the fix.
"""

from __future__ import annotations

import re

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ZONE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_BACKEND_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
ROUTE_KEYS = ("name", "server_names", "backends", "backend_name", "certificate",
              "ssl_certificate", "ssl_certificate_key", "host_header", "read_timeout", "zone")
ZONE_KEYS = ("name", "dir", "client_cert", "client_key", "roots", "crl")


def zone_files(zone, given=None):
    """A zone's identity on the proxy: ``{name, dir, client_cert, client_key, roots, crl}``,
    defaults from the certs and trust roles' layout under ``dir``."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(ZONE_KEYS))
    if unknown:
        raise TrustzoneError("trustzone_proxy_zones: zone %r has unknown keys: %s"
                             % (zone, ", ".join(unknown)),
                             fix="use " + ", ".join(ZONE_KEYS))
    if not isinstance(zone, str) or not _ZONE_RE.match(zone):
        raise TrustzoneError("trustzone_proxy_zones: %r is not a zone name" % (zone,),
                             fix="use the zone's trustzone_name (a-z, 0-9, _ and -)")
    base = str(given.get("dir") or "/etc/trustzone/%s" % zone).rstrip("/")
    return {"name": zone, "dir": base,
            "client_cert": str(given.get("client_cert") or base + "/client-fullchain.pem"),
            "client_key": str(given.get("client_key") or base + "/client.key"),
            "roots": str(given.get("roots") or base + "/roots.pem"),
            "crl": str(given.get("crl") or base + "/crl.pem")}


def resolve_zones(zones, default):
    """``[zone files]`` for ``trustzone_proxy_zones`` (names or mappings); empty means the one
    zone ``default`` (``{name, ...}`` from the single-zone variables)."""
    if zones in (None, "", []):
        return [zone_files(default["name"], default)]
    if isinstance(zones, (str, dict)) or not isinstance(zones, (list, tuple)):
        raise TrustzoneError("trustzone_proxy_zones must be a list of zone names or "
                             "{name: ..., dir: ...} mappings",
                             fix="e.g. trustzone_proxy_zones: [prod, dev]")
    out, seen = [], set()
    for item in zones:
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, dict):
            raise TrustzoneError("trustzone_proxy_zones: %r is not a zone" % (item,),
                                 fix="list zone names or {name: ..., dir: ...} mappings")
        files = zone_files(item.get("name"), {k: v for k, v in item.items() if k != "name"})
        if files["name"] in seen:
            raise TrustzoneError("trustzone_proxy_zones lists zone %r twice" % files["name"],
                                 fix="list each zone once")
        seen.add(files["name"])
        out.append(files)
    return out


def _strip_port(backend):
    host = _BACKEND_RE.match(backend).group(1)
    return host[1:-1] if host.startswith("[") else host


def _covers(domains, name):
    return name in domains or ("*." + name.split(".", 1)[-1]) in domains and "." in name


def resolve(routes, zones, acme, acme_dir, explicit_certificates=(), read_timeout="3600s"):
    """``{'routes', 'zones', 'acme_certificates'}``: every route checked and completed, the
    zones it uses, and the ACME certificates the acme role must hold.

    A route: ``name``, ``server_names``, ``backends`` (host:port), ``backend_name`` (required
    with several backends), ``zone`` (default the first of ``zones``), ``certificate`` (an
    ACME certificate name, default the route's name), or ``ssl_certificate`` and
    ``ssl_certificate_key`` (files of the operator's own), ``host_header``, ``read_timeout``.
    Each resolved route carries its zone's files (``client_cert``, ``client_key``, ``roots``,
    ``crl``): the engine templates use nothing else to reach a backend."""
    if isinstance(routes, (str, dict)) or not isinstance(routes, (list, tuple)) or not routes:
        raise TrustzoneError("trustzone_proxy_routes must list at least one route",
                             fix="see the proxy role's argument spec for a route's keys")
    by_zone = {z["name"]: z for z in zones}
    explicit = [dict(c) for c in (explicit_certificates or [])]
    explicit_names = [c.get("name") for c in explicit]
    out, certs, seen, used = [], list(explicit), set(), []
    for route in routes:
        if not isinstance(route, dict):
            raise TrustzoneError("trustzone_proxy_routes: %r is not a route" % (route,),
                                 fix="each route is a mapping with name, server_names, "
                                     "backends")
        name = route.get("name")
        where = "route %s" % (name if isinstance(name, str) else "(no name)")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise TrustzoneError("%s: the name must be a-z, 0-9, _ and -" % where,
                                 fix="name every route")
        if name in seen:
            raise TrustzoneError("%s is listed twice" % where, fix="give each route its own name")
        seen.add(name)
        unknown = sorted(set(route) - set(ROUTE_KEYS))
        if unknown:
            raise TrustzoneError("%s has unknown keys: %s" % (where, ", ".join(unknown)),
                                 fix="see the proxy role's argument spec for a route's keys")
        names = route.get("server_names")
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise TrustzoneError("%s needs server_names (a list of public DNS names)" % where,
                                 fix="e.g. server_names: [qliksense.example.com]")
        backends = route.get("backends")
        if isinstance(backends, str) or not isinstance(backends, (list, tuple)) or not backends:
            raise TrustzoneError("%s needs backends (a list of host:port)" % where,
                                 fix="e.g. backends: [qs-central.example.com:443]")
        for backend in backends:
            match = _BACKEND_RE.match(str(backend))
            if not match or not 0 < int(match.group(2)) < 65536:
                raise TrustzoneError("%s: backend %r is not host:port" % (where, backend),
                                     fix="write it as host:port, [IPv6]:port")
        if len(backends) > 1 and not route.get("backend_name"):
            raise TrustzoneError("%s has %d backends and no backend_name" % (where, len(backends)),
                                 fix="set backend_name to a name every backend's certificate "
                                     "holds (trustzone_certs_extra_names)")
        zone = route.get("zone") or zones[0]["name"]
        if zone not in by_zone:
            raise TrustzoneError("%s: zone %r is not one the proxy bridges into (%s)"
                                 % (where, zone, ", ".join(by_zone)),
                                 fix="add it to trustzone_proxy_zones (and make the proxy a "
                                     "node of that zone) or fix the route's zone")
        if zone not in used:
            used.append(zone)
        own = route.get("ssl_certificate") is not None
        if own != (route.get("ssl_certificate_key") is not None):
            raise TrustzoneError("%s: ssl_certificate and ssl_certificate_key go together"
                                 % where, fix="set both, or neither to use ACME")
        if not own and not acme:
            raise TrustzoneError("%s has no certificate: trustzone_proxy_acme is false and it "
                                 "sets no ssl_certificate" % where,
                                 fix="set ssl_certificate and ssl_certificate_key, or enable "
                                     "trustzone_proxy_acme")
        lower = [str(n).lower() for n in names]
        cert = route.get("certificate") or name
        resolved = dict(by_zone[zone])
        resolved.pop("dir", None)
        resolved.pop("name", None)
        resolved.update({
            "name": name, "zone": zone, "server_names": lower,
            "backends": [str(b) for b in backends],
            "backend_name": str(route.get("backend_name") or _strip_port(str(backends[0]))),
            "certificate": cert, "acme": not own,
            "ssl_certificate": str(route.get("ssl_certificate")
                                   or "%s/%s/fullchain.pem" % (acme_dir, cert)),
            "ssl_certificate_key": str(route.get("ssl_certificate_key")
                                       or "%s/%s/privkey.pem" % (acme_dir, cert)),
            "host_header": str(route.get("host_header") or "$host"),
            "read_timeout": str(route.get("read_timeout") or read_timeout),
        })
        out.append(resolved)
        if not own and cert not in explicit_names:
            explicit_names.append(cert)
            certs.append({"name": cert, "domains": lower})
    if acme:
        by_cert = {c.get("name"): [str(d).lower() for d in c.get("domains") or []] for c in certs}
        for route in out:
            if not route["acme"]:
                continue
            missing = [n for n in route["server_names"]
                       if not _covers(by_cert.get(route["certificate"], []), n)]
            if missing:
                raise TrustzoneError("route %s serves %s, which ACME certificate %s does not hold"
                                     % (route["name"], ", ".join(missing), route["certificate"]),
                                     fix="add the names to that certificate's domains in "
                                         "trustzone_acme_certificates")
    return {"routes": out, "zones": [by_zone[z] for z in used], "acme_certificates": certs}
