# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The zone's trust anchors in a node's OS trust store: their file names, and what to write
and remove so that they are exactly the zone's roots. Pure: names and contents in, a plan out.
"""

from __future__ import annotations

import re

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _layout


def anchor_name(zone, cert, suffix=".crt"):
    return "trustzone-%s-%s%s" % (zone, C.fingerprint(cert)[:16], suffix)


def anchor_prefix(zone):
    return _layout.ANCHOR_PREFIX % zone


def is_zone_anchor(name, zone, suffix=".crt"):
    """True for exactly the anchor file names ``anchor_name`` makes for ``zone``."""
    return re.fullmatch(r"trustzone-%s-[0-9a-f]{16}%s" % (re.escape(zone), re.escape(suffix)),
                        name) is not None


def plan_anchors(existing, roots, zone, suffix=".crt"):
    """What to write and remove so that the zone's anchors are exactly ``roots``.

    ``existing`` maps file names that start with the zone's anchor prefix to their content
    (bytes or text); other zones' anchors are never touched. Returns
    ``{'write': {name: pem}, 'remove': [name, ...], 'keep': [name, ...]}``.
    """
    wanted = {anchor_name(zone, cert, suffix): C.certificate_pem(cert) for cert in roots}
    write, keep = {}, []
    for name, pem in sorted(wanted.items()):
        have = existing.get(name)
        if have is not None and same_pem(have, pem):
            keep.append(name)
        else:
            write[name] = pem
    remove = sorted(n for n in existing if is_zone_anchor(n, zone, suffix) and n not in wanted)
    return {"write": write, "remove": remove, "keep": keep}


def same_pem(a, b):
    """True when two PEM texts (bytes or str) differ at most in line endings and spacing."""
    return _norm_pem(a) == _norm_pem(b)


def _norm_pem(value):
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return "\n".join(line.strip() for line in value.strip().splitlines())
