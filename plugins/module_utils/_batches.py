# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The rollout's batches: which nodes change together, canaries first (issue 21).

Pure: the play's nodes in order (``--limit`` already applied), the inventory's canary and
batch sizes in; the batches out, with the host order and the ``serial`` sizes that make
Ansible run exactly those batches (the CA signs once per batch). ``halted`` says whether a
batch may start after what the earlier batches did.
"""

from __future__ import annotations

import math

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def _size(value, total, where):
    """A batch size: a count (``3``) or a share of the nodes (``"25%"``, rounded up, at
    least 1)."""
    if isinstance(value, bool):
        raise TrustzoneError("%s is %r, not a batch size" % (where, value),
                             fix="give a count (3) or a share of the nodes ('25%')")
    text = str(value).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return max(1, int(math.ceil(total * share / 100.0)))
        count = int(text)
        if count < 1:
            raise ValueError
        return count
    except ValueError:
        raise TrustzoneError("%s is %r, not a batch size" % (where, value),
                             fix="give a count of at least 1 (3) or a share of the nodes "
                                 "from 1%% to 100%% ('25%%')") from None


def plan(hosts, canary=None, batches=None, groups=None):
    """``{'batches': [[host, ...], ...], 'hosts': [...], 'serial': [size, ...]}``.

    ``hosts``: the play's nodes, in order. ``canary``: none, a count, or the name of an
    inventory group (``groups``: the ``groups`` magic variable) whose nodes go first, alone.
    ``batches``: none (the rest at once), a size or a list of sizes for the batches after the
    canary (a count or ``"N%"`` of the nodes; the last size repeats, as with Ansible's
    ``serial``). Without a canary and batches: one batch of every node (today's run).
    """
    hosts = list(hosts or [])
    rest = list(hosts)
    out = []
    has_canary = False
    if canary not in (None, "", 0):
        if isinstance(canary, str) and not canary.strip().rstrip("%").isdigit():
            members = (groups or {}).get(canary)
            if members is None:
                raise TrustzoneError("trustzone_rollout_canary names group %r, which the "
                                     "inventory does not have" % canary,
                                     fix="name an inventory group, or give a count")
            first = [h for h in hosts if h in set(members)]
        else:
            first = hosts[:_size(canary, len(hosts), "trustzone_rollout_canary")]
        if first:
            has_canary = True
            out.append(first)
            rest = [h for h in hosts if h not in set(first)]
    if batches in (None, "", []):
        sizes = [len(rest) or 1]
    else:
        raw = batches if isinstance(batches, (list, tuple)) else [batches]
        sizes = [_size(v, len(hosts), "trustzone_rollout_batches[%d]" % i)
                 for i, v in enumerate(raw)]
    index = 0
    while rest:
        size = sizes[min(index, len(sizes) - 1)]
        out.append(rest[:size])
        rest = rest[size:]
        index += 1
    return {"batches": out, "hosts": [h for b in out for h in b], "canary": has_canary,
            "serial": [len(b) for b in out] or [0]}


def halted(earlier, failed):
    """The nodes of earlier batches that failed or were rolled back (``failed``: every such
    node of the play), in order: a batch starts only when this is empty."""
    failed = set(failed or [])
    return [h for h in earlier if h in failed]


def lines(planned):
    """One line per batch of ``plan()``'s result, for the run's output and ``--check``."""
    batches = planned["batches"]
    return ["batch %d of %d%s: %s" % (i + 1, len(batches),
                                      " (canary)" if i == 0 and planned["canary"] else "",
                                      ", ".join(b))
            for i, b in enumerate(batches)]
