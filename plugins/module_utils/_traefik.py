# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""What the proxy role reads from Traefik (trustzone_proxy_engine: traefik).

Traefik has no ``nginx -t``. After writing a dynamic file the role reads Traefik's
``/api/rawdata``: each file names an unused middleware after its own content (the marker), so
the marker shows once Traefik runs that very file; then every router of the file must be
enabled without errors. :func:`problems` says what is wrong, in words for the one line the run
fails with.

Traefik's serversTransport reads no CRL: the role fetches each backend's certificate and
checks it against the zone's CRLs; :func:`backends` turns those checks into the servers each
service keeps.

Pure: data in, data out.
"""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

KINDS = (("routers", "router"), ("services", "service"), ("middlewares", "middleware"))


def _errors(item):
    errors = item.get("error") or []
    if isinstance(errors, str):
        errors = [errors]
    return "; ".join(" ".join(str(e).split()) for e in errors)


def problems(raw, marker, routers, last_error="", seconds=30):
    """``[]`` when Traefik runs the file whose marker middleware is ``marker`` and each of
    ``routers`` (names in that file) is enabled without errors; otherwise one entry per
    problem. Anything of the file provider with errors is a problem too."""
    raw = raw if isinstance(raw, dict) else {}
    if "%s@file" % marker not in (raw.get("middlewares") or {}):
        said = " ".join(str(last_error or "").split())
        return ["Traefik did not take it within %s s%s" % (seconds, ": " + said if said else "")]
    out = []
    known = raw.get("routers") or {}
    for name in routers or []:
        router = known.get("%s@file" % name)
        if router is None:
            out.append("router %s is missing" % name)
        elif router.get("status") != "enabled" or _errors(router):
            out.append("router %s is %s: %s" % (name, router.get("status", "?"), _errors(router)))
    for kind, word in KINDS:
        for name, item in sorted((raw.get(kind) or {}).items()):
            if not name.endswith("@file") or not _errors(item):
                continue
            if kind == "routers" and name[:-5] in (routers or []):
                continue
            out.append("%s %s: %s" % (word, name[:-5], _errors(item)))
    return out


def problem_line(found):
    """The problems as one line."""
    return " | ".join(" ".join(p.split()) for p in found or [])


def backends(routes, checks=None):
    """``{'live': {route: [backend]}, 'revoked': {route: [backend]}, 'dead': [route]}``.

    ``checks``: per route (same order), the lines of the role's check - ``ok <backend>``,
    ``revoked <backend>``, ``unreachable <backend>``; ``None`` when the check is off. Only a
    backend the zone's CRLs revoke is left out (an unreachable or untrusted one stays: Traefik
    itself refuses a backend its zone's roots do not vouch for). ``dead``: routes left with no
    backend."""
    if checks is None:
        checks = [[]] * len(routes)
    if len(checks) != len(routes):
        raise TrustzoneError("the backend check covers %d routes, not the %d routes"
                             % (len(checks), len(routes)), fix="check every route once")
    live, revoked, dead = {}, {}, []
    for route, lines in zip(routes, checks):
        gone = [line.split(" ", 1)[1] for line in lines or [] if line.startswith("revoked ")]
        revoked[route["name"]] = gone
        live[route["name"]] = [b for b in route["backends"] if b not in gone]
        if not live[route["name"]]:
            dead.append(route["name"])
    return {"live": live, "revoked": revoked, "dead": dead}
