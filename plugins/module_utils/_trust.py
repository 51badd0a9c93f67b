# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The OS trust-store layout of a node, worked out on the node itself (no facts needed).

Pure: the text of ``/etc/os-release`` and the update commands found on the node in, the
layout out. The node module does the reading.
"""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

# Debian family: PEM anchors named *.crt, rebuilt by update-ca-certificates; --fresh drops
# the links of removed anchors. RHEL family (untested here: no RHEL images on our build
# machines): anchors in /etc/pki/ca-trust/source/anchors, update-ca-trust regenerates every
# extracted bundle.
LAYOUTS = {
    "debian": {
        "anchor_dir": "/usr/local/share/ca-certificates",
        "suffix": ".crt",
        "update_command": ["update-ca-certificates"],
        "fresh_command": ["update-ca-certificates", "--fresh"],
    },
    "redhat": {
        "anchor_dir": "/etc/pki/ca-trust/source/anchors",
        "suffix": ".pem",
        "update_command": ["update-ca-trust", "extract"],
        "fresh_command": ["update-ca-trust", "extract"],
    },
}
# os-release IDs (ID and ID_LIKE) of each family.
FAMILY_IDS = {
    "debian": ("debian", "ubuntu", "raspbian", "linuxmint", "devuan", "kali", "pop"),
    "redhat": ("rhel", "centos", "fedora", "rocky", "almalinux", "ol", "amzn", "redhat",
               "scientific", "eurolinux", "cloudlinux", "nobara"),
}
# The command that tells a family apart when os-release names neither.
FAMILY_COMMANDS = (("debian", "update-ca-certificates"), ("redhat", "update-ca-trust"))
SETTINGS = ("anchor_dir", "suffix", "update_command", "fresh_command")
COMMANDS = tuple(command for _family, command in FAMILY_COMMANDS)
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")


def parse_os_release(text):
    """``/etc/os-release`` as a dict (shell-style ``KEY=value``, quotes removed)."""
    values = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def detect_family(os_release_text, commands_found):
    """``'debian'``, ``'redhat'`` or None. ``commands_found``: names of FAMILY_COMMANDS on
    the node's PATH. os-release decides first (ID, then ID_LIKE); the command found decides
    when it names neither family."""
    release = parse_os_release(os_release_text)
    ids = [release.get("ID", "").lower()] + release.get("ID_LIKE", "").lower().split()
    for os_id in ids:
        for family, members in FAMILY_IDS.items():
            if os_id in members:
                return family
    for family, command in FAMILY_COMMANDS:
        if command in (commands_found or ()):
            return family
    return None


def needs_detection(given):
    """True when some part of the layout is not set by the caller."""
    given = given or {}
    return any(given.get(name) in (None, "", []) for name in SETTINGS)


def trust_layout(given, family):
    """The layout to use: every setting the caller gave (``trustzone_trust_anchor_dir``
    etc.), the rest from the detected family. Raises when a required part stays unknown."""
    given = given or {}
    base = LAYOUTS.get(family) or {}
    layout = {}
    for name in SETTINGS:
        value = given.get(name)
        if isinstance(value, list) and not any(value):
            value = None  # [""]: an unset part as older ansible-core hands it over
        layout[name] = value if value not in (None, "") else base.get(name)
    if not layout["anchor_dir"] or not layout["update_command"]:
        raise TrustzoneError(
            "cannot tell this node's OS trust-store layout: /etc/os-release names neither the "
            "Debian nor the RHEL family and neither update-ca-certificates nor update-ca-trust "
            "is installed",
            fix="install the ca-certificates package, or set trustzone_trust_anchor_dir and "
                "trustzone_trust_update_command (and trustzone_trust_anchor_suffix, "
                "trustzone_trust_fresh_command) for this host")
    if not layout["suffix"]:
        layout["suffix"] = ".crt"
    return layout


def node_layout(given, get_bin_path):
    """This node's layout: what the caller set, the rest detected from ``/etc/os-release``
    and the commands ``get_bin_path`` finds (the module's; None when absent); ``family`` is
    what was detected (None when nothing needed detecting)."""
    family = None
    if needs_detection(given):
        text = None
        for path in OS_RELEASE:  # read only; /etc/os-release is a link on most systems
            try:
                with open(path, "rb") as handle:
                    text = handle.read(65536).decode("utf-8", "replace")
                break
            except OSError:
                continue
        family = detect_family(text, [c for c in COMMANDS if get_bin_path(c)])
    layout = trust_layout(given, family)
    layout["family"] = family
    return layout
