# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Root rotation as a state machine: trust first, use second, retire last.

The CA host keeps the rotation state (``rotation.json`` in the CA generation in force, see
``_ca``). Absent state means *stable*: one root, trusted and issuing. A rotation walks:

``stable --trust--> trust --use--> use --retire--> stable (with the new root)``

* trust: a next root exists and every node trusts it beside the current one; nothing is signed
  with it yet.
* use: the next root signs; leaves still issued by the old root are renewed.
* retire: allowed only when no leaf in the zone still chains to the old root; the next root
  becomes the root, the old one is archived, and nodes stop trusting it.

Every transition is idempotent and never goes backwards, so an interrupted run is simply run
again. Pure functions only: the module does the file work.
"""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

PHASES = ("stable", "trust", "use")
ACTIONS = ("none", "trust", "use", "retire")
_ORDER = {"stable": 0, "trust": 1, "use": 2}


def phase_of(state):
    if not state:
        return "stable"
    phase = state.get("phase")
    if phase not in ("trust", "use"):
        raise TrustzoneError("unknown rotation phase %r in the CA's rotation state" % (phase,),
                             fix="restore the CA directory (its rotation.json) from a backup "
                                 "(playbooks/restore.yml)")
    return phase


def plan(state, action, due=True):
    """What ``action`` does from ``state``: ``{'phase_after', 'create_next', 'promote',
    'changed'}``. Refuses transitions that would skip a phase or go backwards.

    ``due`` says whether a new rotation may start (the root is inside its rotate-before
    window, or the operator forced it); a rotation already under way always continues, so a
    finished rotation re-run is a no-op instead of a second rotation.
    """
    if action not in ACTIONS:
        raise TrustzoneError("unknown rotation step %r" % (action,),
                             fix="use one of %s" % ", ".join(ACTIONS))
    phase = phase_of(state)
    result = {"phase_before": phase, "phase_after": phase, "create_next": False,
              "promote": False, "changed": False}
    if action == "none":
        return result
    if action == "trust":
        if phase == "stable" and due:
            result.update(phase_after="trust", create_next=True, changed=True)
        return result
    if action == "use":
        if phase == "stable":
            return result  # no rotation under way: nothing to use
        if phase == "trust":
            result.update(phase_after="use", changed=True)
        return result
    # retire
    if phase == "stable":
        return result  # nothing to retire: a finished rotation re-run is a no-op
    if phase == "trust":
        raise TrustzoneError("cannot retire the old root: the next root does not sign yet",
                             fix="run the use phase first")
    result.update(phase_after="stable", promote=True, changed=True)
    return result


def roots_for(phase, current, nxt):
    """``(trusted, issuer)`` for a phase: what nodes trust and which root signs."""
    if phase == "stable" or nxt is None:
        return [current], current
    if phase == "trust":
        return [current, nxt], current
    return [current, nxt], nxt


def retire_offenders(expected_hosts, identities_by_host, new_fingerprint):
    """Every identity in the zone that does not chain to the new root, as readable strings.

    ``identities_by_host[host]`` is the node module's ``identities`` (``{profile: facts}``) or
    None when the host was not inspected in this run - which also blocks retiring: a node
    nobody looked at may still hold an old-root leaf.
    """
    offenders = []
    for host in sorted(expected_hosts):
        identities = identities_by_host.get(host)
        if identities is None:
            offenders.append("%s: not inspected in this run (unreachable or left out by "
                             "--limit)" % host)
            continue
        for name, facts in sorted(identities.items()):
            root = (facts or {}).get("root_fingerprint")
            if root != new_fingerprint:
                offenders.append("%s/%s: chains to %s" % (
                    host, name, (root or "no current root")[:16]))
    return offenders


# What the certs role registers on each node in the use phase: its node call, the CA's signing
# task (run once for the play, registered on every host) and the install handler.
USE_PHASE_VARS = ("__trustzone_certs_node", "__trustzone_certs_signed",
                  "__trustzone_certs_installed")


def _finished(result):
    """A registered task result that ran and did not fail."""
    return isinstance(result, dict) and not result.get("failed") and not result.get("skipped")


# set by the certs role's probe step when it rolled a node back (or tried to) in this run
ROLLBACK_VAR = "__trustzone_certs_rolled_back"


def use_phase_holdings(node_result, installed_result, signed_roots, rolled_back=None):
    """What a node holds once this run's use phase finished on it, from that phase's own
    results, in the shape ``retire_offenders`` reads (``{profile: {'root_fingerprint'}}``);
    None when the use phase did not finish there (the node must then be looked at).

    ``node_result`` is the use phase's node call (``identities``: what the node held,
    ``requests``: what it asked to be renewed), ``installed_result`` the install step's result
    on that node (``installed``: the profiles switched), ``signed_roots`` ``{profile: the root
    fingerprint the certificate the CA signed for it chains to, or None}``. A profile that
    was not renewed keeps the root the node reported; a renewed one holds what the CA signed,
    which the install step switched to after checking it against the node's roots. A request
    that was not installed (a failed or skipped install, check mode) leaves the node unknown.
    A node the probe step rolled back (``rolled_back``: that task's result, whatever its
    outcome) is unknown too: what it holds now is its previous generation, which the retire
    phase must look at (docs/rollout.md).
    """
    if isinstance(rolled_back, dict) and not rolled_back.get("skipped"):
        return None
    if not _finished(node_result) or not isinstance(node_result.get("identities"), dict):
        return None
    requests = node_result.get("requests") or {}
    if requests:
        if not _finished(installed_result):
            return None
        installed = installed_result.get("installed")
        if not isinstance(installed, list) or not set(requests) <= set(installed):
            return None
    holdings = {}
    for name, facts in node_result["identities"].items():
        if name in requests:
            holdings[name] = {"root_fingerprint": (signed_roots or {}).get(name)}
        else:
            holdings[name] = {"root_fingerprint": (facts or {}).get("root_fingerprint")}
    return holdings
