# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""A no-op run in one round: the CA's check and every node's check at the same time.

``site.yml`` begins with ``zone_check.yml``: one play over the CA host and the nodes with the
free strategy, in check mode. The CA host runs its ``zone_root`` task; each node, at the same
time, runs its node call against the CA outputs (roots, issuer, CRL) this controller kept
from the zone's last run (``cache_path``: written by the zone_root action after every run
that was not in check mode). The zone is **settled** (``settled``) when

- the CA would change nothing, and its outputs are the ones each node was checked against
  (``checked_digest``: the node action puts it in each node's result, on the controller, from
  the arguments it sent; a node cannot set it, and a node checked against outputs kept before
  an overlapping run changed the CA does not pass);
- every node of the run was checked, would change nothing and asks for nothing;
- the ledger already holds, as the one valid row, exactly what each node holds (the signing
  step would learn nothing), and
- no node keeps Java, NSS or exported stores (their role runs only on the full path).

A settled run is over after that round: no lease is taken because nothing is written, and
the lease, CA, node and lease-release plays end at their first task. Otherwise the run goes
on as before, under the lease, from the CA's real outputs: the first round wrote nothing
(check mode) and cost one node call. The cache is a guess to check against, never an input
of what is written: a wrong, stale or foreign cache only makes the run take the full path.
"""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

FORMAT = 1
DEFAULT_DIR = "~/.cache/trustzone"
OUTPUTS = ("roots", "issuer", "crl")
CACHE_VARS = ("ansible_host", "ansible_port", "trustzone_zone_cache_dir")
STORE_VARS = ("trustzone_stores_java", "trustzone_stores_nss", "trustzone_stores_pkcs12",
              "trustzone_stores_pem_sets")


def cache_path(base, zone, ca_host, address, port):
    """The controller's file for ``zone`` served by ``ca_host`` (its inventory name, address
    and port: two lab fleets with the same zone name do not share it)."""
    key = json.dumps([zone, ca_host, address, port], default=str)
    name = "%s-%s.json" % (zone, hashlib.sha256(key.encode("utf-8")).hexdigest()[:16])
    return os.path.join(os.path.expanduser(base or DEFAULT_DIR), name)


def cache_path_of(zone, ca_host, host_vars):
    """``cache_path`` from the CA host's variables (``ansible_host``, ``ansible_port`` and
    ``trustzone_zone_cache_dir``)."""
    host_vars = host_vars or {}
    return cache_path(host_vars.get("trustzone_zone_cache_dir"), zone, ca_host,
                      host_vars.get("ansible_host") or ca_host, host_vars.get("ansible_port"))


def outputs(ca_result):
    """What a node call takes from the CA's result: its roots, issuer and CRL."""
    ca_result = ca_result if isinstance(ca_result, dict) else {}
    return {name: ca_result.get(name) for name in OUTPUTS}


def checked_digest(roots, issuers, crl):
    """One digest of the CA outputs a node call carried: its roots, issuers and CRL (an empty
    list or CRL is the same as none)."""
    body = json.dumps([list(roots or []), list(issuers or []), crl or ""])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def outputs_digest(ca_result):
    """``checked_digest`` of what the certs role sends a node from this CA result: its roots,
    its issuer as the one issuer, its CRL."""
    kept = outputs(ca_result)
    return checked_digest(kept["roots"], [kept["issuer"]] if kept["issuer"] else [],
                          kept["crl"])


def read_cache(path):
    """The outputs kept at ``path``, or None (missing, unreadable, another format)."""
    try:
        data = _fs.read_file(path)
        kept = json.loads(data.decode("utf-8")) if data else None
    except (OSError, ValueError, TrustzoneError):
        return None
    if not isinstance(kept, dict) or kept.get("format") != FORMAT:
        return None
    return outputs(kept)


def write_cache(path, ca_result):
    """Keep the CA's outputs at ``path`` (0600); a cache that cannot be written is none."""
    try:
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        body = dict(outputs(ca_result), format=FORMAT)
        _fs.atomic_write(path, json.dumps(body, sort_keys=True), 0o600, os.geteuid(),
                         os.getegid())
    except (OSError, TrustzoneError):
        return False
    return True


def _valid_rows(ledger_valid, host):
    return (ledger_valid or {}).get(host) or {}


def would_change(result):
    """A node's check-round result says it would write, remove or ask for something. The
    check round registers it as not changed (so that it notifies no handler):
    what it lists decides."""
    trust = result.get("trust") if isinstance(result.get("trust"), dict) else {}
    return bool(result.get("changed") or result.get("files") or result.get("requests") or result.get("crl_changed")
                or trust.get("rebuilt"))


def settled(ca_result, checked, nodes, node_results, node_vars, ledger_valid):
    """``(True, [])`` when the zone needs nothing this run (see the module docstring), else
    ``(False, [why, ...])``.

    ``ca_result``: the CA host's zone_root result of the check round; ``checked``: the hosts
    the check round ran on;
    ``nodes``: the zone's nodes in this run; ``node_results[host]``: each node's result of the
    check round; ``node_vars[host]``: its store variables; ``ledger_valid[host][profile]``:
    the fingerprints of the ledger's valid rows (from the CA's result).
    """
    why = []
    if not isinstance(ca_result, dict) or ca_result.get("failed") or ca_result.get("skipped"):
        return False, ["the CA host was not checked"]
    if ca_result.get("would_change") or ca_result.get("changed"):
        why.append("the CA would change")
    current = outputs_digest(ca_result)
    if "ledger_valid" not in ca_result:
        why.append("the CA did not report its ledger")
    for host in nodes:
        result = node_results.get(host)
        if host not in checked or not isinstance(result, dict):
            why.append("%s was not checked" % host)
            continue
        if result.get("failed") or result.get("skipped") or result.get("unreachable"):
            why.append("%s was not checked" % host)
            continue
        if result.get("checked_against") != current:
            why.append("%s was checked against other roots, issuer or CRL than the CA's" % host)
            continue
        if would_change(result):
            why.append("%s would change" % host)
            continue
        rows = _valid_rows(ledger_valid, host)
        for profile, item in sorted((result.get("installed") or {}).items()):
            fingerprint = item.get("fingerprint") if isinstance(item, dict) else None
            if rows.get(profile) != [fingerprint]:
                why.append("the ledger would learn %s's %s certificate" % (host, profile))
        variables = node_vars.get(host) or {}
        if any(variables.get(name) for name in STORE_VARS):
            why.append("%s keeps Java, NSS or exported stores" % host)
    return not why, why
