# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""What an input means: durations, names, file modes, DNS names, and the few ways a value
is written back in a message. Pure: text in, values out (or a ``TrustzoneError`` that says how
to write it).
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_DNS_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DURATION_RE = re.compile(r"(\d+)\s*([smhdwy])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(value, what="duration"):
    """``'90d'``, ``'12h'``, ``'1d12h'``, ``'10m'``, ``3600`` -> seconds (int, > 0)."""
    if isinstance(value, bool):
        raise TrustzoneError("%s must be a duration, not a boolean" % what)
    if isinstance(value, (int, float)):
        seconds = int(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        if text.isdigit():
            seconds = int(text)
        else:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise TrustzoneError("%s %r is not a duration" % (what, value),
                                     fix="write it like 90d, 12h, 30m, 1d12h or a number of "
                                         "seconds")
            seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise TrustzoneError("%s %r must be longer than zero" % (what, value))
    return seconds


def validate_name(value, what):
    text = str(value or "")
    if not NAME_RE.fullmatch(text):
        raise TrustzoneError("%s %r is not a valid name" % (what, value),
                             fix="use 1-32 characters of a-z, 0-9, '-' and '_', starting "
                                 "with a letter or digit")
    return text


def parse_mode(value, what="mode"):
    if isinstance(value, bool):
        raise TrustzoneError("%s must be an octal file mode, not a boolean" % what,
                             fix="quote it as a string, e.g. '0640'")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not re.match(r"^0?[0-7]{3,4}$", text):
            raise TrustzoneError("%s %r is not an octal file mode" % (what, value),
                                 fix="quote it as a string, e.g. '0640'")
        mode = int(text, 8)
    if mode & ~0o7777:
        raise TrustzoneError("%s %r is not a file mode" % (what, value))
    return mode


def is_dns_name(name):
    name = name.rstrip(".")
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if labels[-1].isdigit():
        return False  # an all-numeric top label is a mistyped address, not a name (RFC 3696)
    return all(_DNS_LABEL_RE.fullmatch(label) for label in labels)


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return list(value)
    return [value]


def _ip_sort_key(value):
    ip = ipaddress.ip_address(value)
    return (ip.version, int(ip))


def _human(seconds):
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds
