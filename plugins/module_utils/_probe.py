# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Probes after a reload: does a node still serve, with its new certificate, to the zone?

``endpoints`` (pure) reads the inventory's endpoint list of a node; ``observe`` makes one
real mutual-TLS handshake (standard library ``ssl``: the prober's zone client certificate,
the zone's roots, the endpoint's DNS name) and reports what it saw; ``verdict`` (pure) says
whether that is what the rollout expected, in one line. The module ``trustzone.pki.probe``
runs ``observe`` on the prober; the certs role decides with ``verdict`` what to roll back.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
import urllib.error
import urllib.parse

from ansible.module_utils.urls import open_url

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

DEFAULT_PROFILE = "server"
# How long the prober waits, after the handshake, for the server to refuse its client
# certificate (TLS 1.3 sends that alert after the handshake, on the first read).
REFUSAL_WAIT = 1.0


def endpoints(raw, default_host, allowed=None, where="trustzone_rollout_endpoints"):
    """The node's endpoints, each ``{'host', 'port', 'server_name', 'profile'}``.

    ``allowed``: the names and addresses the zone knows this node by (its profiles' names,
    its inventory address); an endpoint elsewhere is refused - probes reach only the zone's
    own hosts. None: not checked (the caller checked).

    ``raw`` is the inventory's list: a port (``8443``), ``"host:port"``, or a dict with
    ``port`` and optionally ``host`` (where to connect; default ``default_host``, the node's
    first DNS name), ``server_name`` (the name the certificate must carry; default the host)
    and ``profile`` (whose certificate it must present; default ``server``).
    """
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise TrustzoneError("%s must be a list of endpoints, not %s" % (where, type(raw).__name__),
                             fix="write e.g. [8443, 'node1.example.test:9443', {port: 5432}]")
    out = []
    for index, item in enumerate(raw):
        here = "%s[%d]" % (where, index)
        if isinstance(item, bool):
            raise TrustzoneError("%s is %r, not an endpoint" % (here, item),
                                 fix="give a port, 'host:port' or {host, port}")
        if isinstance(item, int):
            item = {"port": item}
        elif isinstance(item, str):
            host, sep, port = item.rpartition(":")
            if not sep:
                host, port = "", item
            item = {"port": port}
            if host:
                item["host"] = host
        elif not isinstance(item, dict):
            raise TrustzoneError("%s is %r, not an endpoint" % (here, item),
                                 fix="give a port, 'host:port' or {host, port}")
        unknown = sorted(set(item) - {"host", "port", "server_name", "profile"})
        if unknown:
            raise TrustzoneError("%s has unknown keys %s" % (here, ", ".join(unknown)),
                                 fix="use host, port, server_name and profile")
        try:
            port = int(str(item.get("port")).strip())
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise TrustzoneError("%s has port %r; a port is 1-65535" % (here, item.get("port")),
                                 fix="give the port the service listens on")
        host = str(item.get("host") or default_host or "").strip()
        if not host:
            raise TrustzoneError("%s names no host and the node has no DNS name" % here,
                                 fix="give the endpoint a host")
        server_name = str(item.get("server_name") or host)
        if allowed is not None:
            outside = [n for n in (host, server_name) if n not in allowed]
            if outside:
                raise TrustzoneError(
                    "%s names %s, which is not this node in the zone (its names: %s); probes "
                    "reach only the zone's own hosts" % (here, outside[0],
                                                         ", ".join(sorted(allowed)) or "none"),
                    fix="name one of the node's own names or addresses")
        out.append({"host": host, "port": port, "server_name": server_name,
                    "profile": str(item.get("profile") or DEFAULT_PROFILE)})
    return out


def label(endpoint):
    return "%s:%d" % (endpoint["host"], endpoint["port"])


def fingerprint(der):
    return hashlib.sha256(der).hexdigest()


def client_context(cafile, certfile, keyfile):
    """The prober's TLS context. With ``certfile`` None no client certificate is loaded (a
    user at the proxy's front door has none); with ``cafile`` None as well nothing is
    verified - the caller pins the exact certificate by its fingerprint instead (the front
    door's public CA is not one the proxy trusts)."""
    if cafile is None and certfile is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=cafile)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def observe(endpoint, cafile, certfile, keyfile, timeout, connect=socket.create_connection):
    """One mutual-TLS handshake with ``endpoint``; what the prober saw (never raises).

    ``{'endpoint', 'connected', 'handshake', 'accepted', 'fingerprint', 'error'}``:
    ``fingerprint`` is the SHA-256 of the certificate the endpoint presented, ``accepted``
    whether the server kept the connection after it saw the prober's client certificate.
    With ``certfile`` None (the front door) no client certificate is presented, and
    ``accepted`` means the handshake completed (there is nothing for the server to refuse).
    """
    seen = {"endpoint": label(endpoint), "connected": False, "handshake": False,
            "accepted": False, "fingerprint": None, "error": None}
    try:
        context = client_context(cafile, certfile, keyfile)
    except (OSError, ssl.SSLError) as err:
        seen["error"] = "the prober's zone files cannot be used: %s" % (err,)
        return seen
    try:
        raw = connect((endpoint["host"], endpoint["port"]), timeout=timeout)
    except OSError as err:
        seen["error"] = "no connection: %s" % (getattr(err, "strerror", None) or err,)
        return seen
    seen["connected"] = True
    try:
        with context.wrap_socket(raw, server_hostname=endpoint["server_name"]) as tls:
            seen["handshake"] = True
            der = tls.getpeercert(binary_form=True)
            seen["fingerprint"] = fingerprint(der) if der else None
            if certfile is None:
                seen["accepted"] = True
                return seen
            tls.settimeout(REFUSAL_WAIT)
            try:
                tls.recv(1)
            except socket.timeout:
                pass  # the server waits for the client to speak: it took the certificate
            except ssl.SSLError as err:
                seen["error"] = "the server refused the zone client certificate: %s" % (
                    err.reason or err,)
                return seen
            except OSError as err:
                seen["error"] = "the server dropped the connection after the handshake: %s" % (
                    getattr(err, "strerror", None) or err,)
                return seen
            seen["accepted"] = True
    except ssl.SSLCertVerificationError as err:
        seen["error"] = "the certificate it presented does not verify: %s" % (
            err.verify_message or err.reason or err,)
    except ssl.SSLError as err:
        seen["error"] = "the handshake failed: %s" % (err.reason or err,)
    except OSError as err:
        seen["error"] = "the handshake failed: %s" % (getattr(err, "strerror", None) or err,)
    finally:
        raw.close()
    return seen


def verdict(seen, expect_fingerprint=None):
    """``(ok, line)``: whether what the prober saw is a node serving ``expect_fingerprint``
    (any zone certificate when None) to a zone client; ``line`` says what was seen."""
    where = seen.get("endpoint") or "?"
    if seen.get("error"):
        return False, "%s: %s" % (where, seen["error"])
    if not seen.get("accepted"):
        return False, "%s: the server did not take the zone client certificate" % where
    have = seen.get("fingerprint")
    if expect_fingerprint and (have or "").lower() != expect_fingerprint.lower():
        return False, ("%s: presents certificate %s, not the one just installed (%s); the "
                       "service did not load it" % (where, (have or "none")[:16],
                                                    expect_fingerprint.lower()[:16]))
    if seen.get("status") is not None:
        return True, "%s: answered HTTP %d" % (where, seen["status"])
    return True, "%s: serves %s to the zone" % (where, (have or "?")[:16])


def probe(endpoint, cafile, certfile, keyfile, timeout=5.0, retries=3, delay=2.0,
          expect_fingerprint=None, sleep=time.sleep, look=observe):
    """Probe until the verdict is good or ``retries`` more attempts have failed (a service
    that is still reloading gets ``delay`` seconds each time). Returns the last ``seen`` with
    ``ok``, ``line`` and ``attempts`` added."""
    attempts = 0
    while True:
        attempts += 1
        seen = look(endpoint, cafile, certfile, keyfile, timeout)
        ok, line = verdict(seen, expect_fingerprint)
        if ok or attempts > max(0, int(retries)):
            return dict(seen, ok=ok, line=line, attempts=attempts)
        sleep(delay)


def choose_prober(host, candidates, batch, configured=None, active=None):
    """Who probes ``host``: ``configured`` when the inventory names one; else the first node
    of an earlier batch that is still ``active`` (its new certificates passed their probes),
    then the first other node of the running ``batch`` (it installed its certificates in
    this same step), then the node itself. ``candidates``: the play's nodes in batch order.
    Nodes of later batches are never chosen: on a zone's first run they hold nothing yet."""
    if configured:
        return configured
    batch = set(batch or [])
    first = next((i for i, c in enumerate(candidates) if c in batch), len(candidates))
    earlier = [c for c in candidates[:first] if active is None or c in set(active)]
    others = [c for c in candidates if c in batch and c != host]
    return (earlier or others or [host])[0]


def reload_errors(*registered):
    """One line per failed reload, from the registered results of the reload loops (a service
    or a command each); skipped or missing results count as nothing."""
    out = []
    for result in registered:
        if not isinstance(result, dict) or result.get("skipped"):
            continue
        for item in result.get("results") or []:
            if not isinstance(item, dict) or not item.get("failed"):
                continue
            what = item.get("item")
            if isinstance(what, (list, tuple)):
                what = " ".join(str(w) for w in what)
            said = (item.get("stderr") or item.get("msg") or "").strip().splitlines()
            rc = item.get("rc")
            out.append("reload %r failed%s%s" % (
                str(what), " (rc=%s)" % rc if rc is not None else "",
                ": %s" % said[-1][:200] if said else ""))
    return out


def failure_line(seen, rollback=None, after=None, not_rolled_back=None):
    """The one line a node that failed its probe fails the run with.

    ``seen``: what the reloads and probes saw (lines); ``rollback``: the registered result
    of the node module's rollback (None or skipped: none was tried, and ``not_rolled_back``
    says why, if anything); ``after``: what the reloads and probes saw after the rollback.
    """
    line = "; ".join(seen or []) or "the node's services failed their probe"
    if not isinstance(rollback, dict) or rollback.get("skipped"):
        return line + ("; not rolled back: %s" % not_rolled_back if not_rolled_back else "")
    if rollback.get("failed"):
        return line + "; could not roll back: %s" % (rollback.get("msg") or "the rollback failed")
    profiles = ", ".join(rollback.get("rolled_back") or []) or "nothing"
    if after:
        return line + "; rolled back %s to the previous certificates, which do not serve " \
                      "either: %s" % (profiles, "; ".join(after))
    return line + "; rolled back %s to the previous certificates, which serve again" % profiles


def health_url(url, allowed, where="trustzone_rollout_health_url"):
    """``url`` checked: HTTPS, on one of the node's own names (``allowed``). Returns it."""
    parts = urllib.parse.urlsplit(str(url or ""))
    if parts.scheme != "https" or not parts.hostname:
        raise TrustzoneError("%s is %r, not an https:// URL" % (where, url),
                             fix="give e.g. https://node1.example.test:8443/health")
    if allowed is not None and parts.hostname not in allowed:
        raise TrustzoneError("%s names %s, which is not this node in the zone (its names: %s); "
                             "probes reach only the zone's own hosts"
                             % (where, parts.hostname, ", ".join(sorted(allowed)) or "none"),
                             fix="name one of the node's own names or addresses")
    return str(url)


def fetch(url, cafile, certfile, keyfile, timeout):
    """GET ``url`` with the prober's zone client certificate; what it saw (never raises):
    ``{'endpoint', 'accepted', 'status', 'error'}`` - ``accepted`` when the answer is 2xx."""
    seen = {"endpoint": url, "connected": False, "handshake": False, "accepted": False,
            "fingerprint": None, "status": None, "error": None}
    try:
        client_context(cafile, certfile, keyfile)  # the same files the handshake loads
    except (OSError, ssl.SSLError) as err:
        seen["error"] = "the prober's zone files cannot be used: %s" % (err,)
        return seen
    try:
        # straight to the node (no proxy, no .netrc), verified against the zone's roots
        with open_url(url, method="GET", timeout=timeout, validate_certs=True, ca_path=cafile,
                      client_cert=certfile, client_key=keyfile, use_proxy=False,
                      use_netrc=False) as answer:
            seen["status"] = answer.status
    except urllib.error.HTTPError as err:
        seen["status"] = err.code
    except (urllib.error.URLError, OSError, ssl.SSLError, ValueError) as err:
        reason = getattr(err, "reason", err)
        seen["error"] = "no answer: %s" % (getattr(reason, "strerror", None) or reason,)
        return seen
    seen["connected"] = seen["handshake"] = True
    if 200 <= seen["status"] < 300:
        seen["accepted"] = True
    else:
        seen["error"] = "answered HTTP %d, not 2xx" % seen["status"]
    return seen
